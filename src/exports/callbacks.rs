//! notify_url callbacks on a small pool of threads fed by a bounded queue: a thousand exports
//! whose callback host never answers cost four threads and a queue, not a thousand threads.

use crate::exports::task_answer;
use crate::store::Store;
use crate::store::db;
use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};
use std::sync::Arc;
use std::time::Duration;

/// Threads sending callbacks, and callbacks waiting for one.
const THREADS: usize = 4;
const WAITING: usize = 1024;
/// A timeout per attempt, and the attempts (§6.2).
const TIMEOUT: Duration = Duration::from_secs(10);
const ATTEMPTS: usize = 3;
const PAUSE: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct Callbacks {
    queue: Sender<(String, String)>,
}

impl Callbacks {
    pub fn start(store: Arc<Store>, public_url: String) -> Callbacks {
        let (queue, waiting) = bounded(WAITING);
        for _ in 0..THREADS {
            let (store, public_url, waiting): (_, _, Receiver<(String, String)>) =
                (store.clone(), public_url.clone(), waiting.clone());
            std::thread::Builder::new()
                .name("export-callback".into())
                .spawn(move || {
                    let agent: ureq::Agent = ureq::Agent::config_builder()
                        .timeout_global(Some(TIMEOUT))
                        .http_status_as_error(true)
                        .build()
                        .into();
                    for (uuid, url) in waiting {
                        notify(&agent, &store, &public_url, &uuid, &url);
                    }
                })
                .expect("callback threads can be spawned at start-up");
        }
        Callbacks { queue }
    }

    /// Queues the callback of task `uuid`; when the queue is full it is dropped and logged
    /// (a failed callback never fails the export, §6.2).
    pub fn send(&self, uuid: &str, url: &str) {
        match self.queue.try_send((uuid.to_string(), url.to_string())) {
            Ok(()) | Err(TrySendError::Disconnected(_)) => {}
            Err(TrySendError::Full(_)) => eprintln!(
                "exporter: {WAITING} callbacks are waiting; the callback for task {uuid} is dropped"
            ),
        }
    }
}

/// POSTs the task's getTaskResult answer to `url`; failures are logged, never fatal.
fn notify(agent: &ureq::Agent, store: &Store, public_url: &str, uuid: &str, url: &str) {
    let Ok(Some(task)) = store.read(|conn| db::export_task(conn, uuid)) else {
        return;
    };
    let body = serde_json::json!({"result": task_answer(&task, public_url)}).to_string();
    for attempt in 1..=ATTEMPTS {
        let sent = agent
            .post(url)
            .header("Content-Type", "application/json")
            .send(body.as_str());
        match sent {
            Ok(_) => return,
            Err(e) => {
                eprintln!("exporter: callback {attempt}/{ATTEMPTS} for task {uuid} failed: {e}")
            }
        }
        if attempt < ATTEMPTS {
            std::thread::sleep(PAUSE);
        }
    }
}
