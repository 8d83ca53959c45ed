//! What the commands beside the server do with a database file: read it without changing it
//! (`check`, `accounts list`), copy it whole while it is served (`backup`, export files
//! included), and put a copy back (`restore`, only while no server owns the database).

use crate::exports::export_dir;
use crate::store::db::{self, AccountRecord, OpenError, SCHEMA_VERSION};
use crate::store::owner::DatabaseOwner;
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Opens an existing database of this program read-only, without creating or changing
/// anything; a missing path, a directory, another file or another program's database is said
/// to be so.
pub fn open_existing_read_only(path: &Path) -> Result<Connection, OpenError> {
    let shown = path.display();
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(OpenError(format!("{shown} does not exist")));
        }
        Err(e) => return Err(OpenError(format!("cannot read {shown}: {e}"))),
        Ok(metadata) if !metadata.is_file() => {
            return Err(OpenError(format!("{shown} is not a file")));
        }
        Ok(_) => {}
    }
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| OpenError(format!("cannot open {shown}: {e}")))?;
    conn.busy_timeout(Duration::from_secs(30))
        .map_err(|e| OpenError(e.to_string()))?;
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(|_| OpenError(format!("{shown} is not a database file")))?;
    if version == 0 || version > SCHEMA_VERSION {
        return Err(OpenError(format!(
            "{shown} is not a unisender-local database this binary reads (schema version {version})"
        )));
    }
    Ok(conn)
}

/// The accounts of a database, read without taking it from a running server.
pub fn accounts(path: &Path) -> Result<Vec<AccountRecord>, OpenError> {
    let conn = open_existing_read_only(path)?;
    db::accounts(&conn).map_err(|e| OpenError(format!("cannot read accounts: {e}")))
}

/// What `PRAGMA integrity_check` finds wrong; empty when the database is sound.
pub fn integrity_problems(path: &Path) -> Result<Vec<String>, OpenError> {
    let conn = open_existing_read_only(path)?;
    let fail = |e: rusqlite::Error| OpenError(format!("cannot check {}: {e}", path.display()));
    let mut statement = conn.prepare("PRAGMA integrity_check").map_err(fail)?;
    let found: Vec<String> = statement
        .query_map([], |row| row.get(0))
        .map_err(fail)?
        .collect::<rusqlite::Result<_>>()
        .map_err(fail)?;
    Ok(found.into_iter().filter(|line| line != "ok").collect())
}

/// What a backup or a restore copied.
#[derive(Debug)]
pub struct Copied {
    /// The database file's size.
    pub bytes: u64,
    /// Export files carried with it.
    pub export_files: usize,
}

/// Writes a consistent copy of the database to `out` (`VACUUM INTO`, which reads one snapshot
/// and works while a server writes), and the export files its finished tasks point to into
/// `OUT.exports/`, so that a restored copy still serves their downloads.
pub fn backup(path: &Path, out: &Path) -> Result<Copied, OpenError> {
    let conn = open_existing_read_only(path)?;
    let target = out
        .to_str()
        .ok_or_else(|| OpenError("the backup path is not UTF-8".into()))?;
    conn.execute("VACUUM INTO ?1", [target])
        .map_err(|e| OpenError(format!("backup failed: {e}")))?;
    let bytes = std::fs::metadata(out)
        .map(|m| m.len())
        .map_err(|e| OpenError(format!("backup failed: {e}")))?;
    // The tokens the copy names: a file finished after the snapshot is not its to carry.
    let copy = open_existing_read_only(out)?;
    let tokens = db::export_file_tokens(&copy)
        .map_err(|e| OpenError(format!("backup failed reading export tasks: {e}")))?;
    let export_files = copy_export_files(&export_dir(path), &export_dir(out), &tokens)?;
    Ok(Copied {
        bytes,
        export_files,
    })
}

/// Puts `backup` (a file `backup` wrote, with its `.exports/` beside it) in place of the
/// database at `path`, refusing while a server owns it. The file is copied beside the target
/// and renamed over it, so the target is either the old database or the restored one.
pub fn restore(backup: &Path, path: &Path) -> Result<Copied, OpenError> {
    let _owner = DatabaseOwner::acquire(path, "restoring")?;
    let problems = integrity_problems(backup)?;
    if !problems.is_empty() {
        return Err(OpenError(format!(
            "{} is damaged ({}); nothing was restored",
            backup.display(),
            problems[0]
        )));
    }
    let tokens = db::export_file_tokens(&open_existing_read_only(backup)?)
        .map_err(|e| OpenError(format!("cannot read the backup's export tasks: {e}")))?;
    let fail = |what: &str, e: std::io::Error| OpenError(format!("restore failed {what}: {e}"));
    let staged = with_suffix(path, ".restoring");
    let bytes = std::fs::copy(backup, &staged).map_err(|e| fail("copying the file", e))?;
    std::fs::File::open(&staged)
        .and_then(|f| f.sync_all())
        .map_err(|e| fail("writing the copy", e))?;
    // A WAL left by the old database would be replayed into the restored one.
    for leftover in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(with_suffix(path, leftover));
    }
    std::fs::rename(&staged, path).map_err(|e| fail("putting the copy in place", e))?;
    let exports = export_dir(path);
    let staged_exports = with_suffix(&exports, ".restoring");
    let _ = std::fs::remove_dir_all(&staged_exports);
    let export_files = copy_export_files(&export_dir(backup), &staged_exports, &tokens)?;
    let _ = std::fs::remove_dir_all(&exports);
    if export_files > 0 {
        std::fs::rename(&staged_exports, &exports)
            .map_err(|e| fail("putting the export files in place", e))?;
    } else {
        let _ = std::fs::remove_dir_all(&staged_exports);
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(Copied {
        bytes,
        export_files,
    })
}

/// Copies the files named by `tokens` that exist in `from` into `to` (created when needed).
pub fn copy_export_files(from: &Path, to: &Path, tokens: &[String]) -> Result<usize, OpenError> {
    let mut copied = 0;
    for token in tokens {
        let source = from.join(format!("{token}.csv"));
        if !source.is_file() {
            continue;
        }
        std::fs::create_dir_all(to)
            .and_then(|()| std::fs::copy(&source, to.join(format!("{token}.csv"))))
            .map_err(|e| OpenError(format!("cannot copy export file {token}: {e}")))?;
        copied += 1;
    }
    Ok(copied)
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(suffix);
    PathBuf::from(name)
}
