//! Durable answers without the writer waiting for the disk.
//!
//! With `Durability::Full` the writer commits with `synchronous=NORMAL`: SQLite writes the
//! transaction's WAL frames but does not fsync them. The batch's answers come here, and this
//! thread fsyncs the WAL and only then sends them. An answered write is therefore on the disk,
//! exactly as with `synchronous=FULL`, while the writer applies the next batch during the fsync
//! instead of after it. Batches that wait together share one fsync.
//!
//! What changes is only what other callers may *see*: a read can show a committed batch for the
//! fraction of a millisecond before its fsync ends. Should the machine lose power in that moment,
//! that batch is gone; its own callers were never answered. A crash of the process loses nothing
//! (the frames are in the kernel's page cache).

use crate::store::writer::{CommitFailure, PendingAnswer, WriterStats};
use crossbeam_channel::{Receiver, Sender, unbounded};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Instant;

/// Makes everything written to the WAL so far durable.
pub type SyncWal = Box<dyn FnMut() -> std::io::Result<()> + Send>;

/// The answers of one committed batch, waiting for their fsync.
struct Committed {
    answers: Vec<PendingAnswer>,
    /// When its COMMIT began: the commit time reported is until the data is durable. None for
    /// a restore, which is not a commit of the writer's.
    commit_started: Option<Instant>,
}

/// The thread that fsyncs the WAL after the writer's commits and then answers them.
pub struct WalSync {
    queue: Option<Sender<Committed>>,
    thread: Option<JoinHandle<()>>,
    failed: Arc<AtomicBool>,
}

impl WalSync {
    /// Starts the thread; `sync` is called for every group of waiting batches.
    pub fn start(sync: SyncWal, stats: Arc<WriterStats>) -> WalSync {
        let (queue, committed) = unbounded();
        let failed = Arc::new(AtomicBool::new(false));
        let thread_failed = failed.clone();
        let thread = std::thread::Builder::new()
            .name("wal-sync".into())
            .spawn(move || sync_loop(committed, sync, &stats, &thread_failed))
            .expect("the WAL sync thread can be spawned at start-up");
        WalSync {
            queue: Some(queue),
            thread: Some(thread),
            failed,
        }
    }

    /// Answers a committed batch once what it wrote is on the disk.
    pub fn answer_when_durable(
        &self,
        answers: Vec<PendingAnswer>,
        commit_started: Option<Instant>,
    ) {
        let committed = Committed {
            answers,
            commit_started,
        };
        // The thread only ends when this handle is dropped, so the queue is open here.
        if let Some(queue) = &self.queue {
            let _ = queue.send(committed);
        }
    }

    /// Whether an fsync has failed: the disk may have dropped committed data, and no write
    /// may be trusted to it until a restart.
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::SeqCst)
    }
}

impl Drop for WalSync {
    /// Answers every batch still waiting before the writer's thread ends.
    fn drop(&mut self) {
        drop(self.queue.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn sync_loop(
    committed: Receiver<Committed>,
    mut sync: SyncWal,
    stats: &WriterStats,
    failed: &AtomicBool,
) {
    while let Ok(first) = committed.recv() {
        let mut waiting = vec![first];
        waiting.extend(committed.try_iter());
        let failure = sync().err().map(|e| {
            eprintln!("writer: syncing the write-ahead log failed: {e}; every write is refused until a restart");
            failed.store(true, Ordering::SeqCst);
            CommitFailure {
                disk_full: e.kind() == std::io::ErrorKind::StorageFull,
                message: format!("syncing the write-ahead log failed: {e}"),
            }
        });
        for batch in waiting {
            if failure.is_none()
                && let Some(started) = batch.commit_started
            {
                stats
                    .commit_seconds
                    .observe(started.elapsed().as_secs_f64());
            }
            for answer in batch.answers {
                answer(failure.as_ref());
            }
        }
    }
}

/// Syncs the database's WAL file (`<database>-wal`), opened once and again whenever the path
/// names another file (SQLite deletes the WAL when its last connection closes). When there is no
/// WAL at all, the database file itself is synced.
pub fn wal_file_sync(database: &Path) -> SyncWal {
    let mut wal_path = database.as_os_str().to_owned();
    wal_path.push("-wal");
    let wal_path = PathBuf::from(wal_path);
    let database = database.to_path_buf();
    let mut open: Option<(std::fs::File, u64)> = None;
    Box::new(move || {
        let inode = match std::fs::metadata(&wal_path) {
            Ok(metadata) => metadata.ino(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return std::fs::File::open(&database)?.sync_data();
            }
            Err(e) => return Err(e),
        };
        if open
            .as_ref()
            .is_none_or(|(_, open_inode)| *open_inode != inode)
        {
            open = Some((std::fs::File::open(&wal_path)?, inode));
        }
        let (file, _) = open.as_ref().expect("opened just above");
        file.sync_data()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A sync that records when it ran, and answers that record when they were sent.
    fn recorder() -> (Arc<Mutex<Vec<String>>>, SyncWal) {
        let events = Arc::new(Mutex::new(Vec::new()));
        let sync_events = events.clone();
        let sync: SyncWal = Box::new(move || {
            // Slow enough that the batches queued meanwhile wait for the next sync together.
            std::thread::sleep(std::time::Duration::from_millis(20));
            sync_events.lock().unwrap().push("sync".to_string());
            Ok(())
        });
        (events, sync)
    }

    fn answer(events: &Arc<Mutex<Vec<String>>>, name: &str) -> PendingAnswer {
        let events = events.clone();
        let name = name.to_string();
        Box::new(move |failure: Option<&CommitFailure>| {
            let outcome = if failure.is_some() { "failed" } else { "ok" };
            events.lock().unwrap().push(format!("{name} {outcome}"));
        })
    }

    #[test]
    fn batches_are_answered_in_order_and_only_after_a_sync_that_followed_their_commit() {
        let (events, sync) = recorder();
        let wal_sync = WalSync::start(sync, Arc::new(WriterStats::default()));
        wal_sync.answer_when_durable(
            vec![answer(&events, "a1"), answer(&events, "a2")],
            Some(Instant::now()),
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
        // Both arrive while the first sync runs: they share the next one.
        wal_sync.answer_when_durable(vec![answer(&events, "b")], Some(Instant::now()));
        wal_sync.answer_when_durable(vec![answer(&events, "c")], Some(Instant::now()));
        drop(wal_sync);
        let events = events.lock().unwrap().clone();
        assert_eq!(
            events,
            ["sync", "a1 ok", "a2 ok", "sync", "b ok", "c ok"],
            "each answer follows a sync begun after its commit"
        );
    }

    #[test]
    fn a_failed_sync_fails_every_waiting_answer_and_is_remembered() {
        let events = Arc::new(Mutex::new(Vec::new()));
        let sync: SyncWal = Box::new(|| Err(std::io::Error::other("the disk went away")));
        let wal_sync = WalSync::start(sync, Arc::new(WriterStats::default()));
        assert!(!wal_sync.failed());
        wal_sync.answer_when_durable(vec![answer(&events, "a")], Some(Instant::now()));
        let deadline = Instant::now() + std::time::Duration::from_secs(10);
        while !wal_sync.failed() && Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert!(
            wal_sync.failed(),
            "the failure is kept for the writer to see"
        );
        drop(wal_sync);
        assert_eq!(events.lock().unwrap().clone(), ["a failed"]);
    }

    #[test]
    fn without_a_wal_the_database_file_is_synced_and_without_either_the_sync_fails() {
        let dir = tempfile::tempdir().unwrap();
        let database = dir.path().join("db.sqlite");
        let mut sync = wal_file_sync(&database);
        assert!(
            sync().is_err(),
            "nothing to sync is an error, not a silent success"
        );
        std::fs::write(&database, b"db").unwrap();
        sync().unwrap();
        std::fs::write(dir.path().join("db.sqlite-wal"), b"frames").unwrap();
        std::fs::remove_file(&database).unwrap();
        sync().expect("the WAL is synced when there is one");
    }
}
