//! async/exportContacts in the background (spec §6.2): one thread writes each task's CSV file
//! from a consistent snapshot, records the outcome through the writer, calls the task's
//! `notify_url`, and removes files once they expire. Files live in a directory beside the
//! database and, like the tasks, survive a restart; a task a restart interrupted is run again.

use crate::error::{Error, Result};
use crate::export_query::ExportQuery;
use crate::model::Timestamp;
use crate::store::Store;
use crate::store::db::{self, ExportTask};
use crate::store::export_reader::export_all;
use crate::store::writer::Command;
use crossbeam_channel::{Receiver, Sender, unbounded};
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How long a finished file stays downloadable (the contract asks for at least 24 hours).
const FILE_LIFETIME_SECONDS: i64 = 25 * 3600;
/// How often expired tasks and files are looked for.
const EXPIRY_PERIOD: Duration = Duration::from_secs(600);
/// Contacts read per query while writing a file.
const CHUNK: u64 = 2000;
/// The notify_url callback: a timeout per attempt, and the attempts.
const CALLBACK_TIMEOUT: Duration = Duration::from_secs(10);
const CALLBACK_ATTEMPTS: usize = 3;
const CALLBACK_PAUSE: Duration = Duration::from_secs(1);

/// The handle the API holds: it queues tasks, and finds their files.
pub struct Exporter {
    queue: Sender<String>,
    dir: PathBuf,
}

impl Exporter {
    /// Starts the export thread; files go to `dir`, which is created when needed.
    pub fn start(store: Arc<Store>, dir: PathBuf) -> Exporter {
        let (queue, tasks) = unbounded();
        let worker = ExportWorker {
            store,
            dir: dir.clone(),
        };
        std::thread::Builder::new()
            .name("exporter".into())
            .spawn(move || worker.run(tasks))
            .expect("the exporter thread can be spawned at start-up");
        Exporter { queue, dir }
    }

    pub fn enqueue(&self, uuid: String) {
        // The worker lives as long as the process; a failed send means it is gone and the task
        // stays `new`, to be run on the next start.
        let _ = self.queue.send(uuid);
    }

    /// The finished file with this token, if it exists. Tokens are 32 hex digits, so no path
    /// can be smuggled through one.
    pub fn file(&self, token: &str) -> Option<PathBuf> {
        let well_formed = token.len() == 32 && token.bytes().all(|b| b.is_ascii_hexdigit());
        let path = self.dir.join(format!("{token}.csv"));
        (well_formed && path.is_file()).then_some(path)
    }
}

/// The directory beside the database where export files are kept.
pub fn export_dir(db: &Path) -> PathBuf {
    let mut name = db.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".exports");
    db.with_file_name(name)
}

/// The download address of a finished file.
pub fn file_url(base_url: &str, token: &str) -> String {
    format!("{base_url}/_local/exports/{token}.csv")
}

/// A task as getTaskResult (and the callback) answers it.
pub fn task_answer(task: &ExportTask) -> serde_json::Value {
    let mut answer = serde_json::json!({
        "task_uuid": task.uuid,
        "task_type": "exportContacts",
        "status": task.status,
    });
    if let (Some(token), "completed") = (&task.file_token, task.status.as_str()) {
        answer["file_to_download"] = file_url(&task.base_url, token).into();
    }
    answer
}

struct ExportWorker {
    store: Arc<Store>,
    dir: PathBuf,
}

impl ExportWorker {
    fn run(self, tasks: Receiver<String>) {
        self.expire();
        match self.store.read(db::unfinished_export_tasks) {
            Ok(unfinished) => unfinished.into_iter().for_each(|uuid| self.export(&uuid)),
            Err(e) => eprintln!("exporter: cannot list unfinished tasks: {e}"),
        }
        loop {
            match tasks.recv_timeout(EXPIRY_PERIOD) {
                Ok(uuid) => self.export(&uuid),
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => self.expire(),
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    fn export(&self, uuid: &str) {
        let task = match self.store.read(|conn| db::export_task(conn, uuid)) {
            // A task made while the worker started is both listed as unfinished and queued:
            // the second time round it is finished already.
            Ok(Some(task)) if task.status == "new" || task.status == "processing" => task,
            Ok(_) => return,
            Err(e) => return eprintln!("exporter: cannot read task {uuid}: {e}"),
        };
        if self.set_status(uuid, "processing", None, None).is_err() {
            return;
        }
        let token = uuid::Uuid::new_v4().simple().to_string();
        let outcome = self.write_file(&task, &token);
        let finished = match outcome {
            Ok(()) => self.set_status(uuid, "completed", Some(token), None),
            Err(e) => {
                eprintln!("exporter: task {uuid} failed: {e}");
                self.set_status(uuid, "failed", None, Some(e.to_string()))
            }
        };
        if finished.is_err() {
            return;
        }
        if let Some(url) = task.notify_url.clone() {
            let store = self.store.clone();
            let uuid = uuid.to_string();
            let _ = std::thread::Builder::new()
                .name("export-callback".into())
                .spawn(move || notify(&store, &uuid, &url));
        }
    }

    fn set_status(
        &self,
        uuid: &str,
        status: &'static str,
        file_token: Option<String>,
        error: Option<String>,
    ) -> Result<()> {
        self.store
            .writer()
            .submit(|reply| Command::UpdateExportTask {
                uuid: uuid.to_string(),
                status,
                file_token,
                error,
                reply,
            })
            .inspect_err(|e| eprintln!("exporter: cannot record task {uuid}: {e}"))
    }

    /// Writes the CSV under a temporary name in one read transaction, then renames it into place.
    fn write_file(&self, task: &ExportTask, token: &str) -> Result<()> {
        let query: ExportQuery = serde_json::from_str(&task.request)
            .map_err(|e| Error::Internal(format!("unreadable task request: {e}")))?;
        std::fs::create_dir_all(&self.dir).map_err(io_error)?;
        let partial = self.dir.join(format!("{token}.csv.part"));
        let result = self.store.read(|conn| {
            let file = File::create(&partial).map_err(io_error)?;
            let mut csv = csv::WriterBuilder::new()
                .terminator(csv::Terminator::CRLF)
                .from_writer(BufWriter::with_capacity(1 << 20, file));
            csv.write_record(query.headers()).map_err(csv_error)?;
            // One deferred transaction: every chunk reads the same snapshot.
            conn.execute_batch("BEGIN")?;
            let written = export_all(conn, &query, CHUNK, |row| {
                csv.write_record(&row).map_err(csv_error)
            });
            let _ = conn.execute_batch("COMMIT");
            written?;
            let file = csv
                .into_inner()
                .map_err(|e| io_error(e.into_error()))?
                .into_inner()
                .map_err(|e| io_error(e.into_error()))?;
            file.sync_all().map_err(io_error)
        });
        match result {
            Ok(()) => {
                std::fs::rename(&partial, self.dir.join(format!("{token}.csv"))).map_err(io_error)
            }
            Err(e) => {
                let _ = std::fs::remove_file(&partial);
                Err(e)
            }
        }
    }

    /// Forgets expired tasks and removes their files, and any file no task names.
    fn expire(&self) {
        let created_before = Timestamp::now().0 - FILE_LIFETIME_SECONDS;
        let expired = self
            .store
            .writer()
            .submit(|reply| Command::ExpireExportTasks {
                created_before,
                reply,
            });
        let (Ok(expired), Ok(live)) = (expired, self.store.read(db::export_file_tokens)) else {
            return;
        };
        for token in expired {
            let _ = std::fs::remove_file(self.dir.join(format!("{token}.csv")));
        }
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let token = name.trim_end_matches(".part").trim_end_matches(".csv");
            if !live.iter().any(|t| t == token) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

/// POSTs the task's getTaskResult answer to `url`; failures are logged, never fatal.
fn notify(store: &Store, uuid: &str, url: &str) {
    let Ok(Some(task)) = store.read(|conn| db::export_task(conn, uuid)) else {
        return;
    };
    let body = serde_json::json!({"result": task_answer(&task)}).to_string();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(CALLBACK_TIMEOUT))
        .http_status_as_error(true)
        .build()
        .into();
    for attempt in 1..=CALLBACK_ATTEMPTS {
        let sent = agent
            .post(url)
            .header("Content-Type", "application/json")
            .send(body.as_str());
        match sent {
            Ok(_) => return,
            Err(e) => eprintln!(
                "exporter: callback {attempt}/{CALLBACK_ATTEMPTS} for task {uuid} failed: {e}"
            ),
        }
        if attempt < CALLBACK_ATTEMPTS {
            std::thread::sleep(CALLBACK_PAUSE);
        }
    }
}

fn io_error(e: std::io::Error) -> Error {
    Error::Internal(format!("export file: {e}"))
}

fn csv_error(e: csv::Error) -> Error {
    Error::Internal(format!("export file: {e}"))
}
