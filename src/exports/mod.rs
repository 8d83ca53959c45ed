//! async/exportContacts in the background (spec §6.2). Tasks wait in a queue that serves the
//! accounts in turn (`schedule.rs`); workers write each task's CSV file from a consistent
//! snapshot, record the outcome through the writer, and hand the task's `notify_url` to a small
//! pool of callback threads (`callbacks.rs`); expired files are removed (`worker.rs`). Files
//! live in a directory beside the database and, like the tasks, survive a restart; a task a
//! restart interrupted is run again.
//!
//! No account can take the disk or the workers: it may start 20 exports a minute (the real
//! service's limit on exportContacts), have 4 unfinished at once, and keep 20 files; the
//! directory has a quota, and when a file needs room the account keeping the most bytes loses
//! its oldest file first.

mod callbacks;
mod schedule;
mod worker;

pub use worker::write_csv;

use crate::error::{Error, Result};
use crate::store::Store;
use crate::store::db::ExportTask;
use schedule::Schedule;
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What one account, and the exports directory, may hold.
#[derive(Clone, Copy, Debug)]
pub struct ExportLimits {
    /// Bytes of finished and partial files in the exports directory.
    pub quota_bytes: u64,
    /// async/exportContacts calls an account may make in a minute.
    pub starts_per_minute: usize,
    /// Tasks of one account not finished yet.
    pub unfinished_per_account: usize,
    /// Finished files one account keeps; a newer one replaces its oldest.
    pub kept_per_account: usize,
    /// Tasks written at once (each by one account at a time).
    pub workers: usize,
}

impl Default for ExportLimits {
    fn default() -> ExportLimits {
        ExportLimits {
            quota_bytes: 2 * 1024 * 1024 * 1024,
            starts_per_minute: 20,
            unfinished_per_account: 4,
            kept_per_account: 20,
            workers: 2,
        }
    }
}

/// The handle the API holds: it admits and queues tasks, and finds their files.
pub struct Exporter {
    schedule: Arc<Schedule>,
    dir: PathBuf,
    limits: ExportLimits,
    /// When each account's recent exports started, for the per-minute limit.
    recent_starts: Mutex<HashMap<i64, VecDeque<Instant>>>,
}

impl Exporter {
    /// Starts the workers; files go to `dir`, which is created when needed, and their URLs
    /// start with `public_url`.
    pub fn start(
        store: Arc<Store>,
        dir: PathBuf,
        public_url: String,
        limits: ExportLimits,
    ) -> Exporter {
        let schedule = Arc::new(Schedule::default());
        let callbacks = callbacks::Callbacks::start(store.clone(), public_url);
        let workers = worker::ExportWorkers {
            store,
            dir: dir.clone(),
            limits,
            schedule: schedule.clone(),
            callbacks,
        };
        workers.start();
        Exporter {
            schedule,
            dir,
            limits,
            recent_starts: Mutex::new(HashMap::new()),
        }
    }

    /// Whether the account may start another export now, within its exports a minute; counts
    /// the start when it may. (Its unfinished tasks are counted by the writer, which records
    /// the task: `Command::CreateExportTask`.)
    pub fn admit(&self, account_id: i64) -> Result<()> {
        let mut recent = self
            .recent_starts
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let now = Instant::now();
        let starts = recent.entry(account_id).or_default();
        while starts
            .front()
            .is_some_and(|at| now.duration_since(*at) >= Duration::from_secs(60))
        {
            starts.pop_front();
        }
        if starts.len() >= self.limits.starts_per_minute {
            return Err(Error::Overloaded(
                "at most 20 exports a minute per account, as the real service allows",
            ));
        }
        starts.push_back(now);
        Ok(())
    }

    /// Takes back the start `admit` counted, for an export that was then refused.
    pub fn withdraw(&self, account_id: i64) {
        let mut recent = self
            .recent_starts
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if let Some(starts) = recent.get_mut(&account_id) {
            starts.pop_back();
        }
    }

    /// Removes the files no task names any more (after a reset or a restore).
    pub fn remove_unreferenced_files(&self, store: &Store) {
        worker::remove_unreferenced_files(store, &self.dir, false);
    }

    pub fn limits(&self) -> ExportLimits {
        self.limits
    }

    pub fn enqueue(&self, account_id: i64, uuid: String) {
        self.schedule.push(account_id, uuid);
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

/// A task as getTaskResult (and the callback) answers it; `base_url` is the server's public
/// address now, not when the task was made.
pub fn task_answer(task: &ExportTask, base_url: &str) -> serde_json::Value {
    let mut answer = serde_json::json!({
        "task_uuid": task.uuid,
        "task_type": "exportContacts",
        "status": task.status,
    });
    if let (Some(token), "completed") = (&task.file_token, task.status.as_str()) {
        answer["file_to_download"] = file_url(base_url, token).into();
    }
    answer
}
