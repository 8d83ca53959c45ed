//! One process owns a database for writing. The server keeps state in memory that assumes it is
//! the only writer (block counts, page ends, export tasks), so a second `serve`, a restore or an
//! `accounts add` beside it would make its answers wrong. The owner holds an exclusive `flock`
//! on `DB.lock` beside the database for as long as it runs; the kernel drops the lock when the
//! process ends, however it ends, so a crash leaves no stale lock. The file holds the owner's
//! pid, for the refusal to name.
//!
//! Why not SQLite's `locking_mode=EXCLUSIVE`: in WAL mode it shuts out readers too, and `backup`,
//! `check` and `accounts list` must keep working beside a running server. Why not a lock on the
//! database file itself: SQLite's POSIX locks on that file are dropped when any descriptor of it
//! closes in the process, so an extra descriptor is a hazard.

use crate::store::db::OpenError;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// The exclusive right to write a database; released when dropped (or the process ends).
#[derive(Debug)]
pub struct DatabaseOwner {
    file: File,
}

/// The lock file beside a database.
pub fn lock_path(db: &Path) -> PathBuf {
    let mut name = db.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".lock");
    db.with_file_name(name)
}

impl DatabaseOwner {
    /// Takes the database for `what` (`serve`, `restore`, ...), or says which process has it.
    pub fn acquire(db: &Path, what: &str) -> Result<DatabaseOwner, OpenError> {
        let path = lock_path(db);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| OpenError(format!("cannot open the lock file {}: {e}", path.display())))?;
        // SAFETY: flock on a descriptor this function owns.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            // The holder writes its pid just after taking the lock: give it a moment to.
            let mut holder = String::new();
            for _ in 0..50 {
                holder.clear();
                let _ = file.rewind();
                let _ = file.read_to_string(&mut holder);
                if !holder.trim().is_empty() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            let holder = holder.trim();
            let holder = if holder.is_empty() {
                "another process"
            } else {
                holder
            };
            return Err(OpenError(format!(
                "{} is in use by unisender-local {holder}; stop it first (read-only commands such as backup and check work beside it)",
                db.display()
            )));
        }
        let _ = file.set_len(0);
        let _ = file.rewind();
        let _ = write!(file, "pid {} ({what})", std::process::id());
        let _ = file.flush();
        Ok(DatabaseOwner { file })
    }
}

impl Drop for DatabaseOwner {
    /// Unlocks explicitly rather than by closing: a child process forked meanwhile (and not yet
    /// exec'd) shares the descriptor, and a lock released only by the last close would stay
    /// held until it execs.
    fn drop(&mut self) {
        // SAFETY: flock on the descriptor this value owns.
        unsafe {
            libc::flock(self.file.as_raw_fd(), libc::LOCK_UN);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_owner_is_refused_with_the_first_ones_pid_until_it_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("o.db");
        let first = DatabaseOwner::acquire(&db, "serve").unwrap();
        let refused = DatabaseOwner::acquire(&db, "restore").unwrap_err();
        assert!(
            refused
                .0
                .contains(&format!("pid {} (serve)", std::process::id())),
            "{}",
            refused.0
        );
        drop(first);
        assert!(DatabaseOwner::acquire(&db, "restore").is_ok());
    }
}
