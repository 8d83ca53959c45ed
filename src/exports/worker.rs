//! Writing export files: the workers that take tasks from the schedule, the exports
//! directory's quota and each account's share of it, and expiry.

use crate::error::{Error, Result};
use crate::export_query::ExportQuery;
use crate::exports::ExportLimits;
use crate::exports::callbacks::Callbacks;
use crate::exports::schedule::Schedule;
use crate::model::Timestamp;
use crate::store::Store;
use crate::store::db::{self, ExportTask, KeptExport};
use crate::store::export_reader::export_all;
use crate::store::writer::Command;
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How long a finished file stays downloadable (the contract asks for at least 24 hours).
const FILE_LIFETIME_SECONDS: i64 = 25 * 3600;
/// How often expired tasks and files are looked for.
const EXPIRY_PERIOD: Duration = Duration::from_secs(600);
/// Contacts read per query while writing a file.
const CHUNK: u64 = 2000;
/// Free space a file being written leaves on the disk, for the database to grow into.
const DISK_RESERVE: u64 = 256 * 1024 * 1024;
/// How often (in bytes written) the disk's free space is looked at.
const DISK_CHECK_EVERY: u64 = 16 * 1024 * 1024;

/// Everything the workers share.
#[derive(Clone)]
pub struct ExportWorkers {
    pub store: Arc<Store>,
    pub dir: PathBuf,
    pub limits: ExportLimits,
    pub schedule: Arc<Schedule>,
    pub callbacks: Callbacks,
}

impl ExportWorkers {
    /// Removes what expired or was left half-written, queues the tasks a restart interrupted,
    /// and starts the workers and the expiry thread.
    pub fn start(self) {
        self.expire(true);
        match self.store.read(db::unfinished_export_tasks) {
            Ok(unfinished) => {
                for (account_id, uuid) in unfinished {
                    self.schedule.push(account_id, uuid);
                }
            }
            Err(e) => eprintln!("exporter: cannot list unfinished tasks: {e}"),
        }
        for _ in 0..self.limits.workers.max(1) {
            let worker = self.clone();
            std::thread::Builder::new()
                .name("exporter".into())
                .spawn(move || {
                    loop {
                        let (account_id, uuid) = worker.schedule.take();
                        worker.export(&uuid);
                        worker.schedule.done(account_id);
                    }
                })
                .expect("the exporter threads can be spawned at start-up");
        }
        std::thread::Builder::new()
            .name("export-expiry".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(EXPIRY_PERIOD);
                    self.expire(false);
                }
            })
            .expect("the expiry thread can be spawned at start-up");
    }

    fn export(&self, uuid: &str) {
        let task = match self.store.read(|conn| db::export_task(conn, uuid)) {
            // A task made while the workers started is both listed as unfinished and queued:
            // the second time round it is finished already.
            Ok(Some(task)) if task.status == "new" || task.status == "processing" => task,
            Ok(_) => return,
            Err(e) => return eprintln!("exporter: cannot read task {uuid}: {e}"),
        };
        if self.set_status(uuid, "processing", None, None).is_err() {
            return;
        }
        let token = uuid::Uuid::new_v4().simple().to_string();
        let finished = match self.write_file(&task, &token) {
            Ok(()) => self.set_status(uuid, "completed", Some(token.clone()), None),
            Err(e) => {
                eprintln!("exporter: task {uuid} failed: {e}");
                let why = match e {
                    Error::Api { message, .. } => message,
                    other => other.to_string(),
                };
                self.set_status(uuid, "failed", None, Some(why))
            }
        };
        if finished.is_err() {
            // The task went while its file was written (a reset or a restore): so does the file.
            let _ = std::fs::remove_file(self.file_path(&token));
            return;
        }
        self.keep_share(task.account_id);
        if let Some(url) = &task.notify_url {
            self.callbacks.send(uuid, url);
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
            let file = QuotaFile {
                file: File::create(&partial).map_err(io_error)?,
                workers: self,
                written: 0,
                allowed: self
                    .limits
                    .quota_bytes
                    .saturating_sub(directory_bytes(&self.dir)),
                next_disk_check: 0,
            };
            let file = write_csv(
                conn,
                &query,
                BufWriter::with_capacity(1 << 20, file),
                |_| {},
            )?;
            let file = file.into_inner().map_err(|e| io_error(e.into_error()))?;
            file.file.sync_all().map_err(io_error)
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

    fn file_path(&self, token: &str) -> PathBuf {
        self.dir.join(format!("{token}.csv"))
    }

    /// The kept files with their sizes, oldest first.
    fn kept(&self) -> Vec<(KeptExport, u64)> {
        let kept = self.store.read(db::kept_exports).unwrap_or_default();
        kept.into_iter()
            .map(|file| {
                let size =
                    std::fs::metadata(self.file_path(&file.file_token)).map_or(0, |m| m.len());
                (file, size)
            })
            .collect()
    }

    /// Forgets a kept file: its task first (so that no answer names a missing file), then
    /// the file.
    fn forget(&self, file: &KeptExport) -> bool {
        let forgotten = self
            .store
            .writer()
            .submit(|reply| Command::ForgetExportTask {
                uuid: file.uuid.clone(),
                reply,
            });
        if forgotten.is_err() {
            return false;
        }
        let _ = std::fs::remove_file(self.file_path(&file.file_token));
        true
    }

    /// An account keeps at most its share of files: a newer one replaces its oldest.
    fn keep_share(&self, account_id: i64) {
        let own: Vec<KeptExport> = self
            .store
            .read(db::kept_exports)
            .unwrap_or_default()
            .into_iter()
            .filter(|file| file.account_id == account_id)
            .collect();
        let surplus = own.len().saturating_sub(self.limits.kept_per_account);
        for file in &own[..surplus] {
            self.forget(file);
        }
    }

    /// Frees at least `needed` bytes of kept files, taking the oldest file of whichever account
    /// keeps the most bytes, again and again; answers the bytes freed.
    fn make_room(&self, needed: u64) -> u64 {
        let mut kept = self.kept();
        let mut freed = 0;
        while freed < needed {
            let mut by_account: HashMap<i64, u64> = HashMap::new();
            for (file, size) in &kept {
                *by_account.entry(file.account_id).or_default() += size;
            }
            let Some((&largest, _)) = by_account.iter().max_by_key(|(id, bytes)| (**bytes, **id))
            else {
                break;
            };
            let at = kept
                .iter()
                .position(|(file, _)| file.account_id == largest)
                .expect("the account keeps a file");
            let (file, size) = kept.remove(at);
            if !self.forget(&file) {
                break;
            }
            freed += size;
        }
        freed
    }

    /// Forgets expired tasks and removes their files, and any file no task names. Half-written
    /// files are removed only at start-up: later, a worker may be writing one.
    fn expire(&self, at_start: bool) {
        let created_before = Timestamp::now().0 - FILE_LIFETIME_SECONDS;
        let expired = self
            .store
            .writer()
            .submit(|reply| Command::ExpireExportTasks {
                created_before,
                reply,
            });
        if let Ok(expired) = expired {
            for token in expired {
                let _ = std::fs::remove_file(self.file_path(&token));
            }
        }
        remove_unreferenced_files(&self.store, &self.dir, at_start);
    }
}

/// Writes an export as async export files are written (a header of the column names, CRLF
/// lines), from one read snapshot; `progress` hears the rows written so far now and then.
/// Answers the writer back, flushed, for the caller to sync or close.
pub fn write_csv<W: std::io::Write>(
    conn: &rusqlite::Connection,
    query: &ExportQuery,
    out: W,
    mut progress: impl FnMut(u64),
) -> Result<W> {
    let mut csv = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(out);
    csv.write_record(query.headers()).map_err(csv_error)?;
    // One deferred transaction: every chunk reads the same snapshot.
    conn.execute_batch("BEGIN")?;
    let mut rows = 0;
    let written = export_all(conn, query, CHUNK, |row| {
        rows += 1;
        if rows % 10_000 == 0 {
            progress(rows);
        }
        csv.write_record(&row).map_err(csv_error)
    });
    let _ = conn.execute_batch("COMMIT");
    written?;
    progress(rows);
    csv.into_inner().map_err(|e| io_error(e.into_error()))
}

/// Removes the files in `dir` that no export task names (left by expired tasks, resets and
/// restores). Files still being written (`.part`) are kept unless `with_partial` (at start-up,
/// when none can be).
pub fn remove_unreferenced_files(store: &Store, dir: &Path, with_partial: bool) {
    let Ok(live) = store.read(db::export_file_tokens) else {
        return;
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".part") && !with_partial {
            continue;
        }
        let token = name.trim_end_matches(".part").trim_end_matches(".csv");
        if !live.iter().any(|t| t == token) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// The file being written, held to the directory's quota (making room when it can) and to the
/// disk's reserve.
struct QuotaFile<'a> {
    file: File,
    workers: &'a ExportWorkers,
    written: u64,
    /// How much this file may take before room must be made.
    allowed: u64,
    next_disk_check: u64,
}

impl Write for QuotaFile<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let after = self.written + bytes.len() as u64;
        if after > self.allowed {
            self.allowed += self.workers.make_room(after - self.allowed);
            if after > self.allowed {
                return Err(std::io::Error::other(format!(
                    "the exports directory is at its quota of {} MiB",
                    self.workers.limits.quota_bytes >> 20
                )));
            }
        }
        if after >= self.next_disk_check {
            if free_disk_bytes(&self.workers.dir).is_some_and(|free| free < DISK_RESERVE) {
                return Err(std::io::Error::other(
                    "the disk is nearly full: exports stop before the database's room",
                ));
            }
            self.next_disk_check = after + DISK_CHECK_EVERY;
        }
        let count = self.file.write(bytes)?;
        self.written += count as u64;
        Ok(count)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// Bytes of every file in `dir`: kept files and files being written.
fn directory_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .filter_map(|entry| entry.metadata().ok())
        .map(|metadata| metadata.len())
        .sum()
}

/// Bytes free for this process on the disk holding `dir`.
fn free_disk_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut stats: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: the path is NUL-terminated and `stats` is a valid out-pointer.
    if unsafe { libc::statvfs(path.as_ptr(), &mut stats) } != 0 {
        return None;
    }
    Some(stats.f_bavail.saturating_mul(stats.f_frsize))
}

fn io_error(e: std::io::Error) -> Error {
    Error::Internal(format!("export file: {e}"))
}

fn csv_error(e: csv::Error) -> Error {
    Error::Internal(format!("export file: {e}"))
}
