//! Storage: one SQLite file in WAL mode, a pool of read-only connections for reads, and one
//! writer thread that owns the only read-write connection (see ARCHITECTURE.md).

pub mod apply_catalog;
pub mod apply_contact;
pub mod apply_import;
pub mod contact_rows;
pub mod db;
pub mod export_reader;
pub mod migrate;
pub mod packed;
pub mod writer;

use crate::error::Result;
use db::{Durability, OpenError, ReaderPool};
use std::path::Path;
use writer::{Writer, WriterOptions};

/// Read-only connections: enough for the HTTP workers without holding many file handles.
const READERS: u32 = 8;

/// The database as the rest of the server sees it.
pub struct Store {
    readers: ReaderPool,
    writer: Writer,
    /// Where recent filtered export pages ended (see `export_reader`).
    pub page_ends: export_reader::PageEnds,
}

impl Store {
    /// Opens (creating if needed) the database and starts the writer thread.
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
        let conn = db::open_writer(path, durability, max_pages)?;
        let readers = db::open_readers(path, READERS)?;
        Ok(Store {
            readers,
            writer: Writer::start(conn, options),
            page_ends: export_reader::PageEnds::default(),
        })
    }

    /// Runs `read` on a read-only connection from the pool.
    pub fn read<T>(&self, read: impl FnOnce(&rusqlite::Connection) -> Result<T>) -> Result<T> {
        let conn = self.readers.get()?;
        read(&conn)
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

    /// Finishes the queued writes and closes the writer's connection.
    pub fn close(&self) {
        self.writer.stop();
    }
}
