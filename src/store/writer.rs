//! The writer thread: it owns the only read-write connection, and every write of the server is a
//! `Command` it receives over a bounded queue.
//!
//! Group commit: the thread takes every command waiting in the queue (up to `BATCH_ROWS`),
//! applies them in one `IMMEDIATE` transaction with a savepoint per command (a failing command
//! rolls back alone and gets its own error), commits once, and only then answers each caller:
//! with `Durability::Full`, once `wal_sync` has fsynced the commit, while this thread goes on.

use crate::error::{Error, Result};
use crate::import_plan::ImportPlan;
use crate::model::Timestamp;
use crate::store::apply_catalog::{self as catalog, FieldUpdate, ListUpdate, NewField, NewList};
use crate::store::apply_contact::{
    MembershipChange, SubscribePlan, apply_membership_change, apply_subscribe,
};
use crate::store::apply_import::{ImportOutcome, apply_import};
use crate::store::catalog_cleanup;
use crate::store::confirmations::{self, Confirmed, Selector};
use crate::store::db::Durability;
use crate::store::db::{AccountRecord, ExportTask};
use crate::store::reset::{self, ResetOutcome};
use crate::store::wal_sync::{self, WalSync};
use crossbeam_channel::{Receiver, SendTimeoutError, Sender, bounded};
use prometheus_client::metrics::histogram::Histogram;
use rusqlite::Connection;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Commands waiting for the writer; a caller finding the queue full waits (backpressure).
pub const QUEUE_CAPACITY: usize = 64;
/// One transaction takes commands until they carry this many rows (group commit).
pub const BATCH_ROWS: usize = 4000;
/// How long a caller waits for room in the queue before answering `retry_later`.
pub const ENQUEUE_TIMEOUT: Duration = Duration::from_secs(10);

/// How the writer batches and how long callers wait for it.
#[derive(Clone, Copy, Debug)]
pub struct WriterOptions {
    /// Rows one transaction may take (group commit); 1 gives every command its own transaction.
    pub batch_rows: usize,
    /// Commands that may wait in the queue.
    pub queue_capacity: usize,
    /// How long a caller waits for room in a full queue before `retry_later`.
    pub enqueue_timeout: Duration,
}

impl Default for WriterOptions {
    fn default() -> WriterOptions {
        WriterOptions {
            batch_rows: BATCH_ROWS,
            queue_capacity: QUEUE_CAPACITY,
            enqueue_timeout: ENQUEUE_TIMEOUT,
        }
    }
}

/// What the writer has done, for tests, benchmarks and `/_local/metrics`.
#[derive(Debug)]
pub struct WriterStats {
    /// Transactions committed or rolled back.
    pub batches: AtomicU64,
    /// Commands run.
    pub commands: AtomicU64,
    /// Batches run a second time, with savepoints, because a command failed.
    pub retried_batches: AtomicU64,
    /// Transactions committed: anything read before a change of this number may be stale.
    pub commits: AtomicU64,
    /// Rows (by `Command::weight`) per committed transaction.
    pub batch_rows: Histogram,
    /// How long each commit took until it was durable (with `Durability::Full`, the COMMIT and
    /// the fsync after it).
    pub commit_seconds: Histogram,
    /// Committed transactions, as a metric.
    pub committed: prometheus_client::metrics::counter::Counter,
}

impl Default for WriterStats {
    fn default() -> WriterStats {
        WriterStats {
            batches: AtomicU64::new(0),
            commands: AtomicU64::new(0),
            retried_batches: AtomicU64::new(0),
            commits: AtomicU64::new(0),
            batch_rows: crate::metrics::batch_rows_histogram(),
            commit_seconds: crate::metrics::commit_histogram(),
            committed: crate::metrics::transactions_counter(),
        }
    }
}

pub type Reply<T> = Sender<Result<T>>;

/// Every kind of write the server makes.
pub enum Command {
    /// The caller keeps a reference to the plan, so that its rows are freed on the caller's
    /// thread rather than the writer's (that was 4% of the writer's time).
    Import(Arc<ImportPlan>, Reply<ImportOutcome>),
    CreateList(NewList, Reply<i64>),
    UpdateList(ListUpdate, Reply<()>),
    DeleteList {
        account_id: i64,
        list_id: i64,
        reply: Reply<()>,
    },
    CreateField(NewField, Reply<i64>),
    UpdateField(FieldUpdate, Reply<i64>),
    DeleteField {
        account_id: i64,
        field_id: i64,
        reply: Reply<()>,
    },
    DeleteTag {
        account_id: i64,
        tag_id: i64,
        reply: Reply<()>,
    },
    /// subscribe: answers the contact's id.
    Subscribe(Box<SubscribePlan>, Reply<i64>),
    /// exclude and unsubscribe.
    SetMemberships(MembershipChange, Reply<()>),
    /// Creates the account, or sets the key and limit given for an existing one.
    UpsertAccount {
        login: String,
        api_key: Option<String>,
        contact_limit: Option<i64>,
        reply: Reply<UpsertedAccount>,
    },
    /// Records a new async export task.
    /// Records a new export task, unless its account already has `max_unfinished` tasks not
    /// finished (checked here, in the one writer, so that simultaneous calls cannot all pass).
    CreateExportTask {
        task: ExportTask,
        max_unfinished: usize,
        reply: Reply<()>,
    },
    /// Moves a task to `status`, with its file or the reason it failed.
    UpdateExportTask {
        uuid: String,
        status: &'static str,
        file_token: Option<String>,
        error: Option<String>,
        reply: Reply<()>,
    },
    /// Forgets tasks created before `created_before`; answers the tokens of their files.
    ExpireExportTasks {
        created_before: i64,
        reply: Reply<Vec<String>>,
    },
    /// Forgets one finished task (its file is removed by the exporter): an account's oldest
    /// kept export, to stay within its share or the exports directory's quota.
    ForgetExportTask {
        uuid: String,
        reply: Reply<()>,
    },
    /// Confirms double opt-in invitations as the person clicking the link (`confirmations.rs`).
    Confirm {
        selector: Selector,
        ip: String,
        reply: Reply<Confirmed>,
    },
    /// Empties one account (by login) or all of them (`reset.rs`).
    Reset {
        login: Option<String>,
        reply: Reply<ResetOutcome>,
    },
    /// Replaces the whole database with the copy at `from` (a snapshot), in one step between
    /// batches: the writes queued before it are committed first, and those after it see it.
    Restore {
        from: std::path::PathBuf,
        reply: Reply<()>,
    },
    /// Answers once the writer can run a transaction (the health check).
    Ping(Reply<()>),
    /// Ends the thread after the commands queued before it.
    Stop(Reply<()>),
}

impl Command {
    /// How much work the command is, in rows, for bounding a batch.
    fn weight(&self) -> usize {
        match self {
            Command::Import(plan, _) => plan.row_count().max(1),
            _ => 1,
        }
    }
}

/// The account `UpsertAccount` left, and whether it had to create it.
#[derive(Clone, Debug)]
pub struct UpsertedAccount {
    pub record: AccountRecord,
    pub created: bool,
}

/// The handle the rest of the server holds: a way to submit commands and wait for the answer.
pub struct Writer {
    queue: Sender<Command>,
    enqueue_timeout: Duration,
    pub stats: Arc<WriterStats>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Writer {
    /// Starts the thread on the database at `path` (`file` names it), which `conn` has open.
    /// `batch_rows` bounds a group commit; 1 gives every command its own transaction (the
    /// baseline the benchmark compares group commit with).
    pub fn start(
        conn: Connection,
        options: WriterOptions,
        path: &std::path::Path,
        file: Option<FileIdentity>,
        durability: Durability,
    ) -> rusqlite::Result<Writer> {
        let (queue, commands) = bounded(options.queue_capacity.max(1));
        let stats = Arc::new(WriterStats::default());
        let durable = match durability {
            // The commit writes the WAL without waiting for the disk; `wal_sync` waits for it
            // before anyone is answered.
            Durability::Full => {
                conn.execute_batch("PRAGMA synchronous = NORMAL")?;
                Some(WalSync::start(wal_sync::wal_file_sync(path), stats.clone()))
            }
            Durability::Relaxed => None,
        };
        let orphans = reset::orphaned_accounts(&conn).unwrap_or_else(|e| {
            eprintln!("writer: cannot look for rows left by resets: {e}");
            Vec::new()
        });
        let cleanups = catalog_cleanup::pending(&conn).unwrap_or_else(|e| {
            eprintln!("writer: cannot read the unfinished deletions: {e}");
            Vec::new()
        });
        let writer_loop = WriterLoop {
            orphans,
            cleanups,
            after_reset: false,
            conn,
            batch_rows: options.batch_rows.max(1),
            stats: stats.clone(),
            file,
            file_gone_said: false,
            durable,
        };
        let thread = std::thread::Builder::new()
            .name("writer".into())
            .spawn(move || writer_loop.run(commands))
            .expect("the writer thread can be spawned at start-up");
        Ok(Writer {
            queue,
            enqueue_timeout: options.enqueue_timeout,
            stats,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Sends a command built around its reply channel and waits for the committed answer.
    pub fn submit<T>(&self, command: impl FnOnce(Reply<T>) -> Command) -> Result<T> {
        let (reply, answer) = bounded(1);
        self.enqueue(command(reply))?;
        answer
            .recv()
            .unwrap_or_else(|_| Err(Error::Internal("the writer dropped a command".into())))
    }

    /// Queues a command without waiting for it: commands are applied in the order queued.
    pub fn enqueue(&self, command: Command) -> Result<()> {
        match self.queue.send_timeout(command, self.enqueue_timeout) {
            Ok(()) => Ok(()),
            Err(SendTimeoutError::Timeout(_)) => Err(Error::Overloaded("the write queue is full")),
            Err(SendTimeoutError::Disconnected(_)) => {
                Err(Error::Overloaded("the server is stopping"))
            }
        }
    }

    /// Commands waiting in the queue.
    pub fn queue_depth(&self) -> usize {
        self.queue.len()
    }

    /// Finishes the queued commands, then stops the thread and closes the connection.
    pub fn stop(&self) {
        let _ = self.submit(Command::Stop);
        let thread = self.thread.lock().map(|mut t| t.take()).unwrap_or(None);
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

/// A caller's answer, sent only after the transaction holding its command has ended.
pub(super) type PendingAnswer = Box<dyn FnOnce(Option<&CommitFailure>) + Send>;

/// Why a commit failed: every kept write of the batch is answered with it.
pub(super) struct CommitFailure {
    pub(super) disk_full: bool,
    pub(super) message: String,
}

impl CommitFailure {
    fn error(&self) -> Error {
        if self.disk_full {
            Error::Overloaded("the database's disk is full")
        } else {
            Error::Internal(self.message.clone())
        }
    }
}

struct WriterLoop {
    conn: Connection,
    batch_rows: usize,
    stats: Arc<WriterStats>,
    /// The file the connection has open, looked at before each batch.
    file: Option<FileIdentity>,
    /// Whether the file's disappearance has been logged.
    file_gone_said: bool,
    /// Account ids left behind by resets whose rows are still to be deleted.
    orphans: Vec<i64>,
    /// Deleted lists, tags and fields still to be taken off contacts (`catalog_cleanup`).
    cleanups: Vec<catalog_cleanup::Pending>,
    /// Whether a reset has run in this process: from then on, a write planned before a reset
    /// and applied after it may land on an id no account has, and its rows must be deleted
    /// as the rest of that id's were.
    after_reset: bool,
    /// With `Durability::Full`: the thread that fsyncs each commit and then answers it.
    durable: Option<WalSync>,
}

/// Which file a path named when the database was opened: (device, inode).
#[derive(Clone, Debug)]
pub struct FileIdentity {
    path: std::path::PathBuf,
    device: u64,
    inode: u64,
}

impl FileIdentity {
    pub fn of(path: &std::path::Path) -> Option<FileIdentity> {
        use std::os::unix::fs::MetadataExt;
        let metadata = std::fs::metadata(path).ok()?;
        Some(FileIdentity {
            path: path.to_path_buf(),
            device: metadata.dev(),
            inode: metadata.ino(),
        })
    }

    /// Whether the path still names the file that was opened. A database deleted or moved
    /// while serving would take every later write with it at the next restart.
    pub fn check(&self) -> std::result::Result<(), &'static str> {
        match FileIdentity::of(&self.path) {
            Some(now) if now.device == self.device && now.inode == self.inode => Ok(()),
            Some(_) => Err("the database file was replaced by another file"),
            None => Err("the database file was deleted or moved"),
        }
    }
}

impl WriterLoop {
    fn run(mut self, commands: Receiver<Command>) {
        // A command that must run alone, met while a batch was being gathered.
        let mut carried: Option<Command> = None;
        loop {
            let first = match carried.take() {
                Some(command) => command,
                None => match self.next_command(&commands) {
                    Some(command) => command,
                    None => break,
                },
            };
            if let Command::Restore { from, reply } = first {
                self.restore(&from, &reply);
                continue;
            }
            let mut rows = first.weight();
            let mut batch = vec![first];
            while rows < self.batch_rows {
                match commands.try_recv() {
                    Ok(next @ Command::Restore { .. }) => {
                        carried = Some(next);
                        break;
                    }
                    Ok(next) => {
                        rows += next.weight();
                        batch.push(next);
                    }
                    Err(_) => break,
                }
            }
            let resets = batch.iter().any(|c| matches!(c, Command::Reset { .. }));
            let deletes = batch.iter().any(|c| {
                matches!(
                    c,
                    Command::DeleteList { .. }
                        | Command::DeleteTag { .. }
                        | Command::DeleteField { .. }
                        | Command::Reset { .. }
                )
            });
            let late_writes = self.after_reset
                && batch
                    .iter()
                    .filter_map(Command::adds_to_account)
                    .any(|id| !reset::account_exists(&self.conn, id).unwrap_or(true));
            self.after_reset |= resets;
            if self.apply_batch(batch) {
                break;
            }
            if resets || late_writes {
                self.find_orphans();
            }
            if deletes {
                self.find_cleanups();
            }
        }
    }

    /// The next command. While rows left by resets, or ids of deleted lists, tags and fields
    /// remain on contacts, some of them are cleaned each time the queue is empty: a step is one
    /// short transaction, so a command arriving meanwhile waits for one step at most.
    fn next_command(&mut self, commands: &Receiver<Command>) -> Option<Command> {
        while !self.orphans.is_empty() || !self.cleanups.is_empty() {
            match commands.try_recv() {
                Ok(command) => return Some(command),
                Err(crossbeam_channel::TryRecvError::Disconnected) => return None,
                Err(crossbeam_channel::TryRecvError::Empty) => {}
            }
            if let Some(&orphan) = self.orphans.first() {
                match self.in_own_transaction(|conn| reset::purge_step(conn, orphan)) {
                    Ok(true) => {}
                    Ok(false) => {
                        self.orphans.remove(0);
                    }
                    Err(e) => {
                        // Left for the next start-up to find again, rather than retried in a loop.
                        eprintln!("writer: cannot delete rows left by a reset: {e}");
                        self.orphans.clear();
                    }
                }
                continue;
            }
            let mut pending = self.cleanups[0].clone();
            match self.in_own_transaction(|conn| catalog_cleanup::step(conn, &mut pending)) {
                Ok(true) => self.cleanups[0] = pending,
                Ok(false) => {
                    self.cleanups.remove(0);
                }
                Err(e) => {
                    eprintln!(
                        "writer: cannot take a deleted {:?} off contacts: {e}",
                        pending.kind
                    );
                    self.cleanups.clear();
                }
            }
        }
        commands.recv().ok()
    }

    /// Looks again for deletions to finish (after a batch that deleted a list, tag or field, a
    /// reset or a restore).
    fn find_cleanups(&mut self) {
        match catalog_cleanup::pending(&self.conn) {
            Ok(found) => self.cleanups = found,
            Err(e) => eprintln!("writer: cannot read the unfinished deletions: {e}"),
        }
    }

    fn find_orphans(&mut self) {
        match reset::orphaned_accounts(&self.conn) {
            Ok(found) => self.orphans = found,
            Err(e) => eprintln!("writer: cannot look for rows left by a reset: {e}"),
        }
    }

    /// Runs `work` in a transaction of its own and commits it.
    fn in_own_transaction<T>(&mut self, work: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        let result = work(&self.conn).and_then(|value| {
            self.conn.execute_batch("COMMIT")?;
            Ok(value)
        });
        if result.is_err() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
        result
    }

    /// Copies the database at `from` over this one with SQLite's backup, which writes it as
    /// one transaction: readers see the old database or the restored one, never a mixture.
    fn restore(&mut self, from: &std::path::Path, reply: &Reply<()>) {
        let result = self
            .conn
            .restore(
                rusqlite::MAIN_DB,
                from,
                None::<fn(rusqlite::backup::Progress)>,
            )
            .map_err(|e| Error::Internal(format!("restoring {} failed: {e}", from.display())));
        if result.is_ok() {
            self.stats.commits.fetch_add(1, Ordering::SeqCst);
            self.after_reset = true;
            self.find_orphans();
            self.find_cleanups();
        }
        let (_, answer) = answer_after_commit(reply, result, true);
        self.answer_when_durable(vec![answer], None, None);
    }

    /// Answers a transaction's callers: at once when its commit failed or when SQLite syncs
    /// commits itself, otherwise once `wal_sync` has made the commit durable. A commit timed
    /// from `commit_started` is observed in `commit_seconds` (a restore's is not).
    fn answer_when_durable(
        &self,
        answers: Vec<PendingAnswer>,
        commit_failure: Option<&CommitFailure>,
        commit_started: Option<std::time::Instant>,
    ) {
        match &self.durable {
            Some(wal_sync) if commit_failure.is_none() => {
                wal_sync.answer_when_durable(answers, commit_started)
            }
            _ => {
                if commit_failure.is_none()
                    && let Some(started) = commit_started
                {
                    self.stats
                        .commit_seconds
                        .observe(started.elapsed().as_secs_f64());
                }
                for answer in answers {
                    answer(commit_failure);
                }
            }
        }
    }

    /// Applies a batch in one transaction and answers its callers; true when told to stop.
    ///
    /// Savepoints are not free (a statement inside one journals every page it changes, which
    /// cost a quarter to a half of import throughput when measured), so the batch first runs
    /// without them. Should a command fail, the transaction is rolled back and the batch run
    /// again with a savepoint per command, so that the failing one rolls back alone. Dry runs
    /// (`test_mode`) always run in their own savepoint.
    fn apply_batch(&mut self, batch: Vec<Command>) -> bool {
        let rows: usize = batch.iter().map(Command::weight).sum();
        let stop = batch.iter().any(|c| matches!(c, Command::Stop(_)));
        if stop {
            // A clean stop leaves the database one file: everything the WAL holds goes into
            // it, and the WAL is emptied (a copy of the file alone is then the whole database).
            if let Err(e) = self.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)") {
                eprintln!("writer: the final checkpoint failed: {e}");
            }
        }
        if !stop
            && let Some(file) = &self.file
            && let Err(why) = file.check()
        {
            if !self.file_gone_said {
                eprintln!("writer: {why}; every write is refused until a restart");
                self.file_gone_said = true;
            }
            let why = Error::Overloaded(why);
            batch.iter().for_each(|command| fail_command(command, &why));
            return false;
        }
        if !stop && self.durable.as_ref().is_some_and(WalSync::failed) {
            let why = Error::Overloaded(
                "a sync of the database to the disk failed; every write is refused until a restart",
            );
            batch.iter().for_each(|command| fail_command(command, &why));
            return false;
        }
        self.stats.batches.fetch_add(1, Ordering::Relaxed);
        self.stats
            .commands
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        let ran = match self.run_in_transaction(&batch, false) {
            Ok(Ran::Retry) => {
                self.stats.retried_batches.fetch_add(1, Ordering::Relaxed);
                self.run_in_transaction(&batch, true)
            }
            other => other,
        };
        match ran {
            Ok(Ran::RolledBack(answers)) => answers.into_iter().for_each(|answer| answer(None)),
            Ok(Ran::Retry) => unreachable!("a run with savepoints never asks for a retry"),
            Ok(Ran::Open(answers)) => {
                let committing = std::time::Instant::now();
                let commit_failure = self.conn.execute_batch("COMMIT").err().map(|e| {
                    eprintln!("writer: commit failed: {e}");
                    let _ = self.conn.execute_batch("ROLLBACK");
                    CommitFailure {
                        disk_full: e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull),
                        message: format!("commit failed: {e}"),
                    }
                });
                // The writer lets go of the commands before answering, so that each caller,
                // holding the last reference to its plan, frees it on its own thread.
                drop(batch);
                if commit_failure.is_none() {
                    // Counted before anyone hears of the write, so that nothing remembered from
                    // before it is used after.
                    self.stats.commits.fetch_add(1, Ordering::SeqCst);
                    self.stats.batch_rows.observe(rows as f64);
                    self.stats.committed.inc();
                }
                self.answer_when_durable(answers, commit_failure.as_ref(), Some(committing));
            }
            Err(why) => {
                eprintln!("writer: {why}");
                let _ = self.conn.execute_batch("ROLLBACK");
                let why = Error::Internal(why);
                batch.iter().for_each(|command| fail_command(command, &why));
            }
        }
        stop
    }

    /// Begins a transaction and runs the batch in it, leaving it open for the commit. Without
    /// `savepoints`, a failing command rolls the whole transaction back.
    fn run_in_transaction(&mut self, batch: &[Command], savepoints: bool) -> Result<Ran, String> {
        self.conn
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(|e| format!("cannot begin a transaction: {e}"))?;
        let mut answers = Vec::with_capacity(batch.len());
        for command in batch {
            let own_savepoint = savepoints || command.is_dry_run();
            if own_savepoint {
                self.conn
                    .execute_batch("SAVEPOINT command")
                    .map_err(|e| format!("cannot open a savepoint: {e}"))?;
            }
            let conn = &self.conn;
            let outcome = catch_unwind(AssertUnwindSafe(|| apply_command(conn, command)));
            let (keep, answer) = outcome.unwrap_or_else(|_| {
                eprintln!("writer: a command panicked; it was rolled back");
                let dropped: PendingAnswer = Box::new(|_: Option<&CommitFailure>| {});
                (Applied::Failed, dropped)
            });
            if own_savepoint {
                let end = match keep {
                    Applied::Kept => "RELEASE command",
                    _ => "ROLLBACK TO command; RELEASE command",
                };
                self.conn
                    .execute_batch(end)
                    .map_err(|e| format!("cannot end a savepoint: {e}"))?;
            } else if keep == Applied::Failed {
                let _ = self.conn.execute_batch("ROLLBACK");
                // For a batch of one, rolling everything back is the command rolling back alone.
                return Ok(if batch.len() == 1 {
                    Ran::RolledBack(vec![answer])
                } else {
                    Ran::Retry
                });
            }
            answers.push(answer);
        }
        Ok(Ran::Open(answers))
    }
}

/// How a run of a batch ended.
enum Ran {
    /// Every command ran; the transaction is open, to be committed.
    Open(Vec<PendingAnswer>),
    /// The only command failed and the transaction was rolled back; answer it.
    RolledBack(Vec<PendingAnswer>),
    /// A command failed without a savepoint: run the batch again with savepoints.
    Retry,
}

/// What became of a command's effects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Applied {
    /// Succeeded: its effects stay.
    Kept,
    /// Succeeded as a dry run: its effects are rolled back.
    DryRun,
    /// Failed: its effects are rolled back and it answers its error.
    Failed,
}

impl Command {
    /// The account a command may add rows to (contacts or catalog entries).
    fn adds_to_account(&self) -> Option<i64> {
        match self {
            Command::Import(plan, _) => Some(plan.account_id),
            Command::Subscribe(plan, _) => Some(plan.account_id),
            Command::CreateList(list, _) => Some(list.account_id),
            Command::CreateField(field, _) => Some(field.account_id),
            _ => None,
        }
    }

    /// Whether the command's effects are always undone (test_mode, or a command that writes
    /// nothing): it runs in its own savepoint even on the fast path.
    fn is_dry_run(&self) -> bool {
        match self {
            Command::Import(plan, _) => plan.flags.test_mode,
            Command::Ping(_) | Command::Stop(_) => true,
            _ => false,
        }
    }
}

/// Answers a command that could not run at all.
fn fail_command(command: &Command, why: &Error) {
    fn error<T>(why: &Error) -> Result<T> {
        Err(why.clone())
    }
    match command {
        Command::Import(_, reply) => drop(reply.send(error(why))),
        Command::CreateList(_, reply)
        | Command::CreateField(_, reply)
        | Command::UpdateField(_, reply)
        | Command::Subscribe(_, reply) => drop(reply.send(error(why))),
        Command::UpdateList(_, reply)
        | Command::DeleteList { reply, .. }
        | Command::DeleteField { reply, .. }
        | Command::DeleteTag { reply, .. }
        | Command::SetMemberships(_, reply)
        | Command::CreateExportTask { reply, .. }
        | Command::UpdateExportTask { reply, .. }
        | Command::ForgetExportTask { reply, .. }
        | Command::Restore { reply, .. }
        | Command::Ping(reply)
        | Command::Stop(reply) => drop(reply.send(error(why))),
        Command::Reset { reply, .. } => drop(reply.send(error(why))),
        Command::Confirm { reply, .. } => drop(reply.send(error(why))),
        Command::UpsertAccount { reply, .. } => drop(reply.send(error(why))),
        Command::ExpireExportTasks { reply, .. } => drop(reply.send(error(why))),
    }
}

/// Applies one command; says what became of its effects, and how to answer once the
/// transaction ends (`Some(why)` when the commit failed).
fn apply_command(conn: &Connection, command: &Command) -> (Applied, PendingAnswer) {
    let now = Timestamp::now();
    match command {
        Command::Import(plan, reply) => {
            let dry_run = plan.flags.test_mode;
            answer_after_commit(reply, apply_import(conn, plan), !dry_run)
        }
        Command::CreateList(list, reply) => {
            answer_after_commit(reply, catalog::create_list(conn, list), true)
        }
        Command::UpdateList(update, reply) => {
            answer_after_commit(reply, catalog::update_list(conn, update), true)
        }
        Command::DeleteList {
            account_id,
            list_id,
            reply,
        } => answer_after_commit(
            reply,
            catalog::delete_list(conn, *account_id, *list_id),
            true,
        ),
        Command::CreateField(field, reply) => {
            answer_after_commit(reply, catalog::create_field(conn, field), true)
        }
        Command::UpdateField(update, reply) => {
            answer_after_commit(reply, catalog::update_field(conn, update), true)
        }
        Command::DeleteField {
            account_id,
            field_id,
            reply,
        } => answer_after_commit(
            reply,
            catalog::delete_field(conn, *account_id, *field_id),
            true,
        ),
        Command::DeleteTag {
            account_id,
            tag_id,
            reply,
        } => answer_after_commit(reply, catalog::delete_tag(conn, *account_id, *tag_id), true),
        Command::Subscribe(plan, reply) => {
            answer_after_commit(reply, apply_subscribe(conn, plan, now), true)
        }
        Command::SetMemberships(change, reply) => {
            answer_after_commit(reply, apply_membership_change(conn, change), true)
        }
        Command::UpsertAccount {
            login,
            api_key,
            contact_limit,
            reply,
        } => {
            let result = catalog::upsert_account(conn, login, api_key.clone(), *contact_limit);
            answer_after_commit(reply, result, true)
        }
        Command::CreateExportTask {
            task,
            max_unfinished,
            reply,
        } => answer_after_commit(
            reply,
            catalog::create_export_task(conn, task, *max_unfinished),
            true,
        ),
        Command::UpdateExportTask {
            uuid,
            status,
            file_token,
            error,
            reply,
        } => {
            let result =
                catalog::update_export_task(conn, uuid, status, file_token.clone(), error.clone());
            answer_after_commit(reply, result, true)
        }
        Command::ExpireExportTasks {
            created_before,
            reply,
        } => answer_after_commit(
            reply,
            catalog::expire_export_tasks(conn, *created_before),
            true,
        ),
        Command::ForgetExportTask { uuid, reply } => {
            answer_after_commit(reply, catalog::forget_export_task(conn, uuid), true)
        }
        Command::Reset { login, reply } => {
            answer_after_commit(reply, reset::reset_accounts(conn, login.as_deref()), true)
        }
        Command::Confirm {
            selector,
            ip,
            reply,
        } => answer_after_commit(reply, confirmations::confirm(conn, selector, ip, now), true),
        Command::Restore { reply, .. } => answer_after_commit(
            reply,
            Err(Error::Internal(
                "a restore runs alone, not in a batch".into(),
            )),
            true,
        ),
        Command::Ping(reply) | Command::Stop(reply) => answer_after_commit(reply, Ok(()), false),
    }
}

/// Holds a result until the transaction ends. A kept success whose commit then failed is
/// answered as a failure, so that no caller hears of a write that is not on disk.
fn answer_after_commit<T: Send + 'static>(
    reply: &Reply<T>,
    result: Result<T>,
    keep_on_success: bool,
) -> (Applied, PendingAnswer) {
    let applied = match (&result, keep_on_success) {
        (Err(_), _) => Applied::Failed,
        (Ok(_), true) => Applied::Kept,
        (Ok(_), false) => Applied::DryRun,
    };
    let reply = reply.clone();
    let answer: PendingAnswer = Box::new(move |commit_failure| {
        let result = match commit_failure {
            Some(failure) if applied == Applied::Kept => Err(failure.error()),
            _ => result,
        };
        let _ = reply.send(result);
    });
    (applied, answer)
}
