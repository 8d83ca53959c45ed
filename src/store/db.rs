//! Opening the database file (checks, pragmas, schema), the pool of read-only connections, and
//! the SELECTs that serve reads. Nothing here writes once the schema is in place.

use crate::error::{Error, Result};
use crate::import_plan::{Channel, FieldName};
use crate::store::facets::Facet;
use crate::store::packed::{FieldValues, Memberships, TagSet};
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use std::path::Path;
use std::time::Duration;

/// The schema this binary writes and understands.
pub const SCHEMA_VERSION: i64 = 4;
const SCHEMA: &str = include_str!("../../schema.sql");
/// Prepared statements kept per connection (export builds a few variants per filter set).
const STATEMENT_CACHE: usize = 128;

/// How hard a commit is pushed to disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// An answered write survives power loss: the writer fsyncs the WAL after each commit and
    /// answers only then (`wal_sync.rs`; the connection itself runs `synchronous=NORMAL`).
    Full,
    /// An answered write survives a crash of the process, not of the machine (`synchronous=NORMAL`).
    Relaxed,
}

/// Why the database could not be opened; said in one line by the CLI.
#[derive(Debug)]
pub struct OpenError(pub String);

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for OpenError {}

/// Opens (or creates) the database for writing. The file is only read until it has been found
/// to be this program's database of a version it knows, so a wrong file is left untouched.
pub fn open_writer(
    path: &Path,
    durability: Durability,
    max_pages: Option<u64>,
) -> Result<Connection, OpenError> {
    let shown = path.display();
    if path.is_dir() {
        return Err(OpenError(format!(
            "cannot open database {shown}: it is a directory"
        )));
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| OpenError(format!("cannot open database {shown}: {e}")))?;
    let not_ours = |e: rusqlite::Error| OpenError(format!("{shown} is not a usable database: {e}"));
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(not_ours)?;
    if version > SCHEMA_VERSION {
        return Err(OpenError(format!(
            "{shown} has schema version {version}, newer than this binary's {SCHEMA_VERSION}: use a newer unisender-local"
        )));
    }
    let tables: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_master", [], |row| row.get(0))
        .map_err(not_ours)?;
    if version == 0 && tables > 0 {
        return Err(OpenError(format!(
            "{shown} is an SQLite database of another program (no unisender-local schema)"
        )));
    }
    // FULL while the schema is created or upgraded below; the writer thread then turns it to
    // NORMAL and fsyncs its commits itself (`Writer::start`).
    let synchronous = match durability {
        Durability::Full => "FULL",
        Durability::Relaxed => "NORMAL",
    };
    conn.busy_timeout(Duration::from_secs(10))
        .map_err(not_ours)?;
    // The import path alone uses more statements than rusqlite's default cache of 16 keeps.
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    // 16 MiB of page cache: against 64 MiB, the writer alone imported fresh contacts 9–11 %
    // faster (800,000 rows, the file well past either size; the profile's one clear difference
    // is the cache's truncation at each commit, which walks its hash table), and updated
    // random contacts among a million alike (their cost is the pages they dirty). Past the
    // cache, pages come from the kernel's page cache.
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = {synchronous}; PRAGMA foreign_keys = OFF;
         PRAGMA cache_size = -16384; PRAGMA temp_store = MEMORY;"
    ))
    .map_err(not_ours)?;
    if version == 0 {
        conn.execute_batch(&format!("BEGIN IMMEDIATE; {SCHEMA} COMMIT;"))
            .map_err(|e| OpenError(format!("cannot create the schema in {shown}: {e}")))?;
    } else if version < SCHEMA_VERSION {
        crate::store::migrate::upgrade(&conn, version).map_err(|e| {
            OpenError(format!(
                "cannot upgrade {shown} from schema version {version}: {e}"
            ))
        })?;
    }
    if let Some(pages) = max_pages {
        // The page limit stands in for a small disk: past it, writes fail with SQLITE_FULL.
        conn.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(()))
            .map_err(not_ours)?;
    }
    Ok(conn)
}

pub type ReaderPool = r2d2::Pool<SqliteConnectionManager>;

/// A pool of connections opened read-only: a reader can never write, whatever a bug asks of it.
pub fn open_readers(path: &Path, size: u32) -> Result<ReaderPool, OpenError> {
    let manager = SqliteConnectionManager::file(path)
        .with_flags(OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .with_init(|conn| {
            conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
            conn.execute_batch("PRAGMA cache_size = -8192;")?;
            conn.busy_timeout(Duration::from_secs(10))
        });
    r2d2::Pool::builder()
        .max_size(size)
        .min_idle(Some(1))
        .connection_timeout(Duration::from_secs(10))
        .build(manager)
        .map_err(|e| OpenError(format!("cannot open readers on {}: {e}", path.display())))
}

/// An account, as a request knows it once its key is checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub id: i64,
    pub login: String,
    pub contact_limit: Option<i64>,
}

/// An account with its key, for the CLI's listing.
#[derive(Clone, Debug)]
pub struct AccountRecord {
    pub account: Account,
    pub api_key: String,
}

/// The account this key belongs to. Every account's key is compared, each in constant time, so
/// that neither the time an answer takes nor an index search tells how much of a guess was right.
pub fn account_by_key(conn: &Connection, key: &str) -> Result<Option<Account>> {
    let mut found = None;
    for record in accounts(conn)? {
        if keys_equal(record.api_key.as_bytes(), key.as_bytes()) && found.is_none() {
            found = Some(record.account);
        }
    }
    Ok(found)
}

/// Compares two keys in time that depends on their lengths only.
pub fn keys_equal(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let difference = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(difference) == 0
}

/// The account with this login.
pub fn account_by_login(conn: &Connection, login: &str) -> Result<Option<Account>> {
    Ok(conn
        .prepare_cached("SELECT id, login, contact_limit FROM accounts WHERE login = ?1")?
        .query_row([login], |row| {
            Ok(Account {
                id: row.get(0)?,
                login: row.get(1)?,
                contact_limit: row.get(2)?,
            })
        })
        .optional()?)
}

pub fn accounts(conn: &Connection) -> Result<Vec<AccountRecord>> {
    let mut statement =
        conn.prepare_cached("SELECT id, login, contact_limit, api_key FROM accounts ORDER BY id")?;
    let rows = statement.query_map([], |row| {
        Ok(AccountRecord {
            account: Account {
                id: row.get(0)?,
                login: row.get(1)?,
                contact_limit: row.get(2)?,
            },
            api_key: row.get(3)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// A mailing list as getLists answers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListRecord {
    pub id: i64,
    pub title: String,
}

pub fn lists(conn: &Connection, account_id: i64) -> Result<Vec<ListRecord>> {
    let mut statement =
        conn.prepare_cached("SELECT id, title FROM lists WHERE account_id = ?1 ORDER BY id")?;
    let rows = statement.query_map([account_id], |row| {
        Ok(ListRecord {
            id: row.get(0)?,
            title: row.get(1)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// A user field as getFields answers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldRecord {
    pub id: i64,
    pub name: String,
    pub kind: String,
    pub public_name: String,
    pub is_visible: i64,
    pub view_pos: i64,
}

pub fn fields(conn: &Connection, account_id: i64) -> Result<Vec<FieldRecord>> {
    let mut statement = conn.prepare_cached(
        "SELECT id, name, type, public_name, is_visible, view_pos FROM fields
         WHERE account_id = ?1 ORDER BY id",
    )?;
    let rows = statement.query_map([account_id], |row| {
        Ok(FieldRecord {
            id: row.get(0)?,
            name: row.get(1)?,
            kind: row.get(2)?,
            public_name: row.get(3)?,
            is_visible: row.get(4)?,
            view_pos: row.get(5)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The account's user fields by name, as importContacts maps columns.
pub fn field_names(conn: &Connection, account_id: i64) -> Result<Vec<FieldName>> {
    Ok(fields(conn, account_id)?
        .into_iter()
        .map(|field| FieldName {
            id: field.id,
            name: field.name,
        })
        .collect())
}

/// The ids of the account's lists, for checking the ids a write names.
pub fn list_ids(conn: &Connection, account_id: i64) -> Result<Vec<i64>> {
    let mut statement = conn.prepare_cached("SELECT id FROM lists WHERE account_id = ?1")?;
    let rows = statement.query_map(params![account_id], |row| row.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Whether the database can be read at all (the health check's reader half).
pub fn ping(conn: &Connection) -> Result<()> {
    conn.query_row("SELECT 1", [], |_| Ok(()))
        .map_err(|e| Error::Internal(format!("reader ping: {e}")))
}

/// An async export task as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportTask {
    pub uuid: String,
    pub account_id: i64,
    pub status: String,
    pub request: String,
    pub notify_url: Option<String>,
    pub base_url: String,
    pub file_token: Option<String>,
}

fn read_task(row: &rusqlite::Row) -> rusqlite::Result<ExportTask> {
    Ok(ExportTask {
        uuid: row.get(0)?,
        account_id: row.get(1)?,
        status: row.get(2)?,
        request: row.get(3)?,
        notify_url: row.get(4)?,
        base_url: row.get(5)?,
        file_token: row.get(6)?,
    })
}

const TASK_COLUMNS: &str =
    "SELECT uuid, account_id, status, request, notify_url, base_url, file_token FROM export_tasks";

/// The task with this uuid, whichever account it belongs to (for the exporter itself).
pub fn export_task(conn: &Connection, uuid: &str) -> Result<Option<ExportTask>> {
    Ok(conn
        .prepare_cached(&format!("{TASK_COLUMNS} WHERE uuid = ?1"))?
        .query_row([uuid], read_task)
        .optional()?)
}

/// The accounts and uuids of tasks not yet finished (to resume after a restart), oldest first.
pub fn unfinished_export_tasks(conn: &Connection) -> Result<Vec<(i64, String)>> {
    let mut statement = conn.prepare_cached(
        "SELECT account_id, uuid FROM export_tasks
         WHERE status IN ('new', 'processing') ORDER BY created_at",
    )?;
    let rows = statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// How many of the account's tasks are not finished yet.
pub fn unfinished_export_count(conn: &Connection, account_id: i64) -> Result<usize> {
    let count: i64 = conn
        .prepare_cached(
            "SELECT count(*) FROM export_tasks
             WHERE account_id = ?1 AND status IN ('new', 'processing')",
        )?
        .query_row([account_id], |row| row.get(0))?;
    Ok(usize::try_from(count).unwrap_or(0))
}

/// A finished export's file as kept on disk, for the exports directory's quota and shares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeptExport {
    pub uuid: String,
    pub account_id: i64,
    pub file_token: String,
}

/// Every kept file, oldest first.
pub fn kept_exports(conn: &Connection) -> Result<Vec<KeptExport>> {
    let mut statement = conn.prepare_cached(
        "SELECT uuid, account_id, file_token FROM export_tasks
         WHERE file_token IS NOT NULL ORDER BY created_at, rowid",
    )?;
    let rows = statement.query_map([], |row| {
        Ok(KeptExport {
            uuid: row.get(0)?,
            account_id: row.get(1)?,
            file_token: row.get(2)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The tokens of every finished file still listed, to tell leftovers on disk from live files.
pub fn export_file_tokens(conn: &Connection) -> Result<Vec<String>> {
    let mut statement =
        conn.prepare_cached("SELECT file_token FROM export_tasks WHERE file_token IS NOT NULL")?;
    let rows = statement.query_map([], |row| row.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The account's tags, by id.
pub fn tags(conn: &Connection, account_id: i64) -> Result<Vec<(i64, String)>> {
    let mut statement =
        conn.prepare_cached("SELECT id, name FROM tags WHERE account_id = ?1 ORDER BY id")?;
    let rows = statement.query_map([account_id], |row| Ok((row.get(0)?, row.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn tag_exists(conn: &Connection, account_id: i64, tag_id: i64) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM tags WHERE id = ?1 AND account_id = ?2")?
        .exists(params![tag_id, account_id])?)
}

/// A contact found by its email, as getContact and its kin show it.
#[derive(Clone, Debug)]
pub struct EmailChannel {
    pub contact_id: i64,
    pub email: String,
    pub status: i64,
    pub availability: i64,
    pub add_time: Option<i64>,
    pub memberships: Memberships,
    pub fields: FieldValues,
}

pub fn contact_by_email(
    conn: &Connection,
    account_id: i64,
    email: &str,
) -> Result<Option<EmailChannel>> {
    Ok(conn
        .prepare_cached(
            "SELECT id, email, email_status, email_availability, email_add_time, memberships,
                    field_values
             FROM contacts WHERE account_id = ?1 AND email = ?2",
        )?
        .query_row(params![account_id, email], |row| {
            Ok(EmailChannel {
                contact_id: row.get(0)?,
                email: row.get(1)?,
                status: row.get(2)?,
                availability: row.get(3)?,
                add_time: row.get(4)?,
                memberships: row.get(5)?,
                fields: row.get(6)?,
            })
        })
        .optional()?)
}

/// getContactCount's filters.
#[derive(Clone, Debug, Default)]
pub struct CountFilter {
    pub list_id: i64,
    pub tag_id: Option<i64>,
    /// `None`: either channel.
    pub channel: Option<Channel>,
    /// A substring of the address (of the channel, or of either).
    pub search: Option<String>,
}

/// How many of the account's contacts are "in" the list (active or unsubscribed) under the
/// filter. By list (and channel) alone it is a sum of the list's per-block counts
/// (`facets.rs`); with a tag or a search, the contacts of the blocks holding the list's members
/// are tested one by one.
pub fn count_in_list(conn: &Connection, account_id: i64, filter: &CountFilter) -> Result<i64> {
    let facet = Facet::list(filter.list_id, filter.channel);
    if filter.tag_id.is_none() && filter.search.is_none() {
        return Ok(conn
            .prepare_cached(
                "SELECT coalesce(sum(contacts), 0) FROM block_counts
                 WHERE account_id = ?1 AND facet = ?2",
            )?
            .query_row(params![account_id, facet.code()], |row| row.get(0))?);
    }
    let search = filter
        .search
        .as_ref()
        .map(|s| (s.to_lowercase(), s.as_str()));
    let damaged = || Error::Internal("a contact's packed lists or tags are damaged".into());
    let mut statement = conn.prepare_cached(
        "SELECT email, phone, memberships, tag_ids FROM contacts
         WHERE id >= ?2 AND id < ?3 AND account_id = ?1",
    )?;
    let mut count = 0;
    for (block, _) in facet_blocks(conn, account_id, facet, 0)? {
        let mut rows = statement.query(params![account_id, block << 10, (block + 1) << 10])?;
        while let Some(row) = rows.next()? {
            let in_list =
                Memberships::stored_in_list(row.get_ref(2)?, filter.list_id, filter.channel);
            if !in_list.ok_or_else(damaged)? {
                continue;
            }
            if let Some(tag_id) = filter.tag_id
                && !TagSet::stored_contains(row.get_ref(3)?, tag_id).ok_or_else(damaged)?
            {
                continue;
            }
            if let Some((lower, given)) = &search {
                let contains = |column: usize, wanted: &str| -> rusqlite::Result<bool> {
                    let address: Option<String> = row.get(column)?;
                    Ok(address.is_some_and(|a| a.contains(wanted)))
                };
                let found = (filter.channel != Some(Channel::Phone) && contains(0, lower)?)
                    || (filter.channel != Some(Channel::Email) && contains(1, given)?);
                if !found {
                    continue;
                }
            }
            count += 1;
        }
    }
    Ok(count)
}

/// The blocks from `from_block` on where some of the account's contacts have `facet`, with how
/// many, in order.
pub fn facet_blocks(
    conn: &Connection,
    account_id: i64,
    facet: Facet,
    from_block: i64,
) -> Result<Vec<(i64, i64)>> {
    let mut statement = conn.prepare_cached(
        "SELECT block, contacts FROM block_counts
         WHERE account_id = ?1 AND facet = ?2 AND block >= ?3 AND contacts > 0 ORDER BY block",
    )?;
    let rows = statement.query_map(params![account_id, facet.code(), from_block], |row| {
        Ok((row.get(0)?, row.get(1)?))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// How many contacts the account has.
pub fn contact_total(conn: &Connection, account_id: i64) -> Result<i64> {
    Ok(conn
        .prepare_cached(
            "SELECT coalesce(sum(contacts), 0) FROM contact_blocks WHERE account_id = ?1",
        )?
        .query_row([account_id], |row| row.get(0))?)
}

#[cfg(test)]
mod tests {
    use super::keys_equal;

    #[test]
    fn key_comparison() {
        assert!(keys_equal(b"abc123", b"abc123"));
        assert!(!keys_equal(b"abc123", b"abc124"));
        assert!(!keys_equal(b"abc123", b"abc12"));
        assert!(!keys_equal(b"", b"x"));
        assert!(keys_equal(b"", b""));
    }
}
