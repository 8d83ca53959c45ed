//! `POST /_local/reset`: emptying accounts in milliseconds at any size.
//!
//! A reset gives each account a new id, above every id used so far, and deletes its catalog
//! (lists, fields, tags, export tasks) at once. Its contacts keep the old id, which no account
//! has any more: no call can see them from that moment. The writer then deletes such orphaned
//! contacts a few blocks at a time whenever it has nothing else to do (`purge_step`), and
//! looks for them again at start-up, so an interrupted clean-up resumes.

use crate::error::{Error, Result};
use rusqlite::{Connection, OptionalExtension, params};

/// Blocks of `contact_blocks` (1024 ids each) one purge transaction deletes: about 2,000
/// contacts, a few milliseconds, so that a waiting write is never held up for long.
const BLOCKS_PER_STEP: i64 = 2;

/// What a reset did.
#[derive(Clone, Debug, Default)]
pub struct ResetOutcome {
    /// Logins of the accounts emptied.
    pub accounts: Vec<String>,
    /// Files of the export tasks that went, for the exporter to remove.
    pub file_tokens: Vec<String>,
}

/// Empties the account with `login`, or every account when `None`; keeps logins, keys and
/// contact limits. An unknown login is `invalid_arg`.
pub fn reset_accounts(conn: &Connection, login: Option<&str>) -> Result<ResetOutcome> {
    let targets: Vec<(i64, String)> = match login {
        Some(login) => {
            let id: Option<i64> = conn
                .prepare_cached("SELECT id FROM accounts WHERE login = ?1")?
                .query_row([login], |row| row.get(0))
                .optional()?;
            let id = id.ok_or_else(|| Error::invalid_arg(format!("no account \"{login}\"")))?;
            vec![(id, login.to_string())]
        }
        None => {
            let mut statement =
                conn.prepare_cached("SELECT id, login FROM accounts ORDER BY id")?;
            let rows = statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
            rows.collect::<rusqlite::Result<_>>()?
        }
    };
    let mut outcome = ResetOutcome::default();
    for (old_id, login) in targets {
        // Above every id any account has had: ids only grow (accounts are never deleted, and
        // a reset moves the largest up), so orphaned rows can never be taken for the new
        // account's.
        conn.prepare_cached(
            "UPDATE accounts SET id = (SELECT max(id) + 1 FROM accounts) WHERE id = ?1",
        )?
        .execute([old_id])?;
        outcome.file_tokens.extend(delete_catalog(conn, old_id)?);
        outcome.accounts.push(login);
    }
    Ok(outcome)
}

/// Deletes an old account id's lists, fields, tags, export tasks and double opt-in
/// confirmations; answers the tasks' files.
fn delete_catalog(conn: &Connection, account_id: i64) -> Result<Vec<String>> {
    let tokens = conn
        .prepare_cached(
            "SELECT file_token FROM export_tasks WHERE account_id = ?1 AND file_token IS NOT NULL",
        )?
        .query_map([account_id], |row| row.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    for table in [
        "lists",
        "fields",
        "tags",
        "export_tasks",
        "confirmations",
        "catalog_deletions",
    ] {
        // Table names cannot be bound; these four are fixed here, never a caller's text.
        conn.prepare_cached(&format!("DELETE FROM {table} WHERE account_id = ?1"))?
            .execute([account_id])?;
    }
    Ok(tokens)
}

pub fn account_exists(conn: &Connection, account_id: i64) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM accounts WHERE id = ?1")?
        .exists([account_id])?)
}

/// Account ids that rows still carry but no account has: left by resets, to be purged.
pub fn orphaned_accounts(conn: &Connection) -> Result<Vec<i64>> {
    let mut statement = conn.prepare_cached(
        "SELECT DISTINCT account_id FROM contact_blocks
         WHERE account_id NOT IN (SELECT id FROM accounts)
         UNION SELECT DISTINCT account_id FROM block_counts
         WHERE account_id NOT IN (SELECT id FROM accounts)
         UNION SELECT DISTINCT account_id FROM lists WHERE account_id NOT IN (SELECT id FROM accounts)
         UNION SELECT DISTINCT account_id FROM tags WHERE account_id NOT IN (SELECT id FROM accounts)
         UNION SELECT DISTINCT account_id FROM fields WHERE account_id NOT IN (SELECT id FROM accounts)",
    )?;
    let rows = statement.query_map([], |row| row.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Deletes the contacts of a few blocks of `account_id` (an orphaned id); when none are left,
/// whatever else still carries the id. Answers whether the id has rows left. Runs inside the
/// caller's transaction.
pub fn purge_step(conn: &Connection, account_id: i64) -> Result<bool> {
    let blocks: Vec<i64> = conn
        .prepare_cached(
            "SELECT block FROM contact_blocks WHERE account_id = ?1 ORDER BY block LIMIT ?2",
        )?
        .query_map(params![account_id, BLOCKS_PER_STEP], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for &block in &blocks {
        conn.prepare_cached("DELETE FROM contacts WHERE id >= ?1 AND id < ?2 AND account_id = ?3")?
            .execute(params![block << 10, (block + 1) << 10, account_id])?;
        conn.prepare_cached("DELETE FROM contact_blocks WHERE account_id = ?1 AND block = ?2")?
            .execute(params![account_id, block])?;
    }
    if !blocks.is_empty() {
        return Ok(true);
    }
    // Then the facet counts, one facet (at most a row per block) per step.
    let facet: Option<i64> = conn
        .prepare_cached("SELECT facet FROM block_counts WHERE account_id = ?1 LIMIT 1")?
        .query_row([account_id], |row| row.get(0))
        .optional()?;
    if let Some(facet) = facet {
        conn.prepare_cached("DELETE FROM block_counts WHERE account_id = ?1 AND facet = ?2")?
            .execute(params![account_id, facet])?;
        return Ok(true);
    }
    // A write planned before the reset and applied after it may have added to the old id.
    delete_catalog(conn, account_id)?;
    Ok(false)
}
