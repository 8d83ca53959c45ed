//! Storage: one SQLite file in WAL mode, a pool of read-only connections for reads, and one
//! writer thread that owns the only read-write connection (see ARCHITECTURE.md).

pub mod apply_catalog;
pub mod apply_contact;
pub mod apply_import;
pub mod catalog_cleanup;
pub mod confirmations;
pub mod contact_rows;
pub mod db;
pub mod export_reader;
pub mod facets;
pub mod maintenance;
pub mod migrate;
pub mod owner;
pub mod packed;
pub mod reset;
mod wal_sync;
pub mod writer;

use crate::error::{Error, Result};
use db::{Durability, OpenError, ReaderPool};
use owner::DatabaseOwner;
use std::path::Path;
use std::sync::{Mutex, RwLock};
use writer::{FileIdentity, Writer, WriterOptions};

/// Read-only connections: enough for the HTTP workers without holding many file handles.
const READERS: u32 = 8;

/// The database as the rest of the server sees it.
pub struct Store {
    /// Where the database file is (snapshots and export files live beside it).
    path: std::path::PathBuf,
    /// None once closed: the readers are closed before the writer, so that the writer's is
    /// the last connection and SQLite removes the emptied WAL with it.
    readers: RwLock<Option<ReaderPool>>,
    writer: Writer,
    /// The file the database was opened at, to tell when it is deleted or moved.
    file: Option<FileIdentity>,
    /// This process's exclusive right to write the database, given up at `close`.
    owner: Mutex<Option<DatabaseOwner>>,
    /// Where recent filtered export pages ended (see `export_reader`).
    pub page_ends: export_reader::PageEnds,
}

impl Store {
    /// Opens (creating if needed) the database and starts the writer thread; refused while
    /// another process owns the database (`owner.rs`).
    pub fn open(path: &Path, durability: Durability) -> Result<Store, OpenError> {
        Store::open_with(path, durability, WriterOptions::default(), None)
    }

    /// As `open`, with the writer's batching and queue options.
    pub fn open_with(
        path: &Path,
        durability: Durability,
        options: WriterOptions,
        max_pages: Option<u64>,
    ) -> Result<Store, OpenError> {
        let owner = DatabaseOwner::acquire(path, "serving")?;
        let conn = db::open_writer(path, durability, max_pages)?;
        let readers = db::open_readers(path, READERS)?;
        let file = FileIdentity::of(path);
        Ok(Store {
            path: path.to_path_buf(),
            readers: RwLock::new(Some(readers)),
            writer: Writer::start(conn, options, path, file.clone(), durability)
                .map_err(|e| OpenError(format!("cannot start the writer: {e}")))?,
            file,
            owner: Mutex::new(Some(owner)),
            page_ends: export_reader::PageEnds::default(),
        })
    }

    /// Runs `read` on a read-only connection from the pool.
    pub fn read<T>(&self, read: impl FnOnce(&rusqlite::Connection) -> Result<T>) -> Result<T> {
        // The pool is a handle on shared state: cloning it out of the lock costs a reference.
        let pool = self
            .readers
            .read()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone()
            .ok_or(Error::Overloaded("the server is stopping"))?;
        let conn = pool.get()?;
        read(&conn)
    }

    /// Whether the database file is still where it was opened (`FileIdentity::check`).
    pub fn file_in_place(&self) -> Result<()> {
        match &self.file {
            Some(file) => file.check().map_err(Error::Overloaded),
            None => Ok(()),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn writer(&self) -> &Writer {
        &self.writer
    }

    /// Changes whenever a write commits.
    pub fn write_generation(&self) -> u64 {
        self.writer
            .stats
            .commits
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Closes the readers, then finishes the queued writes, empties the WAL into the database
    /// and closes the writer's connection (a stopped server leaves one file); then lets go of
    /// the database for another process to own.
    pub fn close(&self) {
        self.readers
            .write()
            .unwrap_or_else(|poison| poison.into_inner())
            .take();
        self.writer.stop();
        self.owner
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .take();
    }
}
