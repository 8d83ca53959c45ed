//! Named copies of the whole database, saved and put back while serving
//! (`/_local/snapshots`): a test suite loads its fixture once, saves it, and restores it
//! before each test.
//!
//! A snapshot is `NAME.sqlite` in `<db>.snapshots/`, written by `VACUUM INTO` from one read
//! transaction (consistent while imports run), with the export files its tasks name in
//! `NAME.sqlite.exports/`. Restoring copies it over the live database through the writer
//! (`Command::Restore`), so the writes queued before it finish first and those after it see it.

use crate::error::{Error, Result};
use crate::exports::{Exporter, export_dir};
use crate::model::Timestamp;
use crate::store::maintenance;
use crate::store::writer::Command;
use crate::store::{Store, db};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The longest snapshot name.
const MAX_NAME: usize = 100;

/// The snapshots directory of one database; one operation on it at a time.
pub struct Snapshots {
    dir: PathBuf,
    busy: Mutex<()>,
}

/// A saved snapshot as `GET /_local/snapshots` lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SnapshotInfo {
    pub name: String,
    /// The database copy's size in bytes (export files not counted).
    pub size_bytes: u64,
    /// When it was saved, UTC.
    pub created: String,
}

impl Snapshots {
    /// The snapshots of the database at `db`: the directory `<db>.snapshots` beside it.
    pub fn beside(db: &Path) -> Snapshots {
        let mut name = db.file_name().map(|n| n.to_os_string()).unwrap_or_default();
        name.push(".snapshots");
        Snapshots {
            dir: db.with_file_name(name),
            busy: Mutex::new(()),
        }
    }

    /// Saves the database as `name`, replacing a snapshot of that name.
    pub fn save(&self, store: &Store, name: &str) -> Result<SnapshotInfo> {
        let file = self.file(name)?;
        let _busy = self.lock();
        std::fs::create_dir_all(&self.dir).map_err(io_error)?;
        remove(&file);
        maintenance::backup(store.path(), &file).map_err(|e| Error::Internal(e.0))?;
        self.info(name)?
            .ok_or_else(|| Error::Internal("the snapshot vanished as it was saved".into()))
    }

    /// Puts snapshot `name` back in place of the database; `Ok(false)` when there is none.
    pub fn restore(&self, store: &Store, exporter: &Exporter, name: &str) -> Result<bool> {
        let file = self.file(name)?;
        let _busy = self.lock();
        if !file.is_file() {
            return Ok(false);
        }
        // The snapshot's export files first, so that its tasks' downloads work the moment
        // the restored database is visible.
        let tokens = maintenance::open_existing_read_only(&file)
            .map_err(|e| Error::Internal(e.0))
            .and_then(|conn| db::export_file_tokens(&conn))?;
        maintenance::copy_export_files(&export_dir(&file), &export_dir(store.path()), &tokens)
            .map_err(|e| Error::Internal(e.0))?;
        store.writer().submit(|reply| Command::Restore {
            from: file.clone(),
            reply,
        })?;
        exporter.remove_unreferenced_files(store);
        Ok(true)
    }

    /// Deletes snapshot `name`; `Ok(false)` when there is none.
    pub fn delete(&self, name: &str) -> Result<bool> {
        let file = self.file(name)?;
        let _busy = self.lock();
        let existed = file.is_file();
        remove(&file);
        Ok(existed)
    }

    /// Every snapshot, by name.
    pub fn list(&self) -> Result<Vec<SnapshotInfo>> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Ok(Vec::new());
        };
        let mut found = Vec::new();
        for entry in entries.flatten() {
            let file_name = entry.file_name().to_string_lossy().into_owned();
            if let Some(name) = file_name.strip_suffix(".sqlite")
                && valid_name(name)
                && let Some(info) = self.info(name)?
            {
                found.push(info);
            }
        }
        found.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(found)
    }

    fn info(&self, name: &str) -> Result<Option<SnapshotInfo>> {
        let Ok(metadata) = std::fs::metadata(self.dir.join(format!("{name}.sqlite"))) else {
            return Ok(None);
        };
        let saved = metadata.modified().map_err(io_error)?;
        let seconds = saved
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        Ok(Some(SnapshotInfo {
            name: name.to_string(),
            size_bytes: metadata.len(),
            created: Timestamp(seconds).wire(),
        }))
    }

    /// The file of snapshot `name`, once the name is known to stay inside the directory.
    fn file(&self, name: &str) -> Result<PathBuf> {
        if !valid_name(name) {
            return Err(Error::invalid_arg(format!(
                "a snapshot name is 1 to {MAX_NAME} letters, digits, '.', '_' or '-', \
                 starting with a letter or digit; \"{}\" is not",
                name.escape_debug()
            )));
        }
        Ok(self.dir.join(format!("{name}.sqlite")))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.busy
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

/// Letters, digits, '.', '_' and '-', starting with a letter or digit: no separator, no
/// `..`, nothing a path could be escaped with.
pub fn valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && name.len() <= MAX_NAME
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Removes a snapshot's file and its export files.
fn remove(file: &Path) {
    let _ = std::fs::remove_file(file);
    let _ = std::fs::remove_dir_all(export_dir(file));
}

fn io_error(e: std::io::Error) -> Error {
    Error::Internal(format!("snapshots: {e}"))
}

#[cfg(test)]
mod tests {
    use super::valid_name;

    #[test]
    fn names_cannot_leave_the_directory() {
        for good in ["fixture", "a", "base-1.2_x", "0"] {
            assert!(valid_name(good), "{good}");
        }
        for bad in [
            "",
            "..",
            ".hidden",
            "a/b",
            "../x",
            "a\\b",
            "a b",
            "é",
            "-x",
            "a\0",
            "a/../../etc",
        ] {
            assert!(!valid_name(bad), "{bad:?}");
        }
        assert!(!valid_name(&"a".repeat(101)));
    }
}
