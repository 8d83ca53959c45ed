//! Deleting a list, tag or field without holding the writer for a walk over the account.
//!
//! deleteList, deleteTag and deleteField delete the catalog row at once and record the id in
//! `catalog_deletions`; from then on no call can name the id, and what reads contacts leaves it
//! out (exports and getContact show only the account's lists, tags and fields; the tag limit
//! counts only live tags; exclude and unsubscribe look only at live lists). The writer then
//! takes the id off the account's contacts one block of 1024 ids per transaction whenever its
//! queue is empty, remembering how far it got, so that a restart resumes the clean-up.

use crate::error::Result;
use crate::store::contact_rows::{self, Db, Found, read_found, select_found};
use crate::store::facets::Facet;
use rusqlite::{Connection, OptionalExtension, params};

/// What was deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    List,
    Tag,
    Field,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::List => "list",
            Kind::Tag => "tag",
            Kind::Field => "field",
        }
    }

    fn parse(name: &str) -> Option<Kind> {
        [Kind::List, Kind::Tag, Kind::Field]
            .into_iter()
            .find(|k| k.name() == name)
    }

    /// Takes the id off one contact.
    fn take_off(self, contact: &mut Found, id: i64) {
        match self {
            Kind::List => contact.memberships.retain(|m| m.list_id != id),
            Kind::Tag => contact.tags.remove(id),
            Kind::Field => contact.fields.set(id, ""),
        }
    }

    /// The facet counts to drop once no contact carries the id.
    fn facets(self, id: i64) -> Vec<Facet> {
        match self {
            Kind::List => Facet::of_list(id).to_vec(),
            Kind::Tag => vec![Facet::Tag(id)],
            Kind::Field => Vec::new(),
        }
    }
}

/// A deletion whose clean-up is not finished.
#[derive(Clone, Debug)]
pub struct Pending {
    pub kind: Kind,
    pub id: i64,
    pub account_id: i64,
    /// Contacts up to this id are done.
    pub after_id: i64,
}

/// Records a deletion (the catalog row is deleted by the caller, in the same transaction).
pub fn record(conn: &Connection, kind: Kind, id: i64, account_id: i64) -> Result<()> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO catalog_deletions (kind, id, account_id, after_id)
         VALUES (?1, ?2, ?3, 0)",
    )?
    .execute(params![kind.name(), id, account_id])?;
    Ok(())
}

/// Every unfinished clean-up.
pub fn pending(conn: &Connection) -> Result<Vec<Pending>> {
    let mut statement = conn.prepare_cached(
        "SELECT kind, id, account_id, after_id FROM catalog_deletions ORDER BY rowid",
    )?;
    let rows = statement.query_map([], |row| {
        Ok((
            row.get::<_, String>(0)?,
            row.get(1)?,
            row.get(2)?,
            row.get(3)?,
        ))
    })?;
    let mut found = Vec::new();
    for row in rows {
        let (kind, id, account_id, after_id) = row?;
        if let Some(kind) = Kind::parse(&kind) {
            found.push(Pending {
                kind,
                id,
                account_id,
                after_id,
            });
        }
    }
    Ok(found)
}

/// The ids of an account's deleted tags whose clean-up is not finished (the tag limit must not
/// count them).
pub fn deleted_tags(conn: &Connection, account_id: i64) -> Result<Vec<i64>> {
    let mut statement = conn.prepare_cached(
        "SELECT id FROM catalog_deletions WHERE kind = 'tag' AND account_id = ?1",
    )?;
    let rows = statement.query_map([account_id], |row| row.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Cleans the next block of the account's contacts; answers whether any are left. Runs inside
/// the caller's transaction.
pub fn step(conn: &Connection, pending: &mut Pending) -> Result<bool> {
    let next_block: Option<i64> = conn
        .prepare_cached(
            "SELECT block FROM contact_blocks
             WHERE account_id = ?1 AND block >= ?2 AND contacts > 0 ORDER BY block LIMIT 1",
        )?
        .query_row(
            params![pending.account_id, (pending.after_id + 1) >> 10],
            |row| row.get(0),
        )
        .optional()?;
    let Some(block) = next_block else {
        finish(conn, pending)?;
        return Ok(false);
    };
    let end = ((block + 1) << 10) - 1;
    let db = Db::new(conn);
    let contacts: Vec<Found> = db
        .stmt(concat!(
            select_found!(),
            " WHERE id > ?1 AND id <= ?2 AND account_id = ?3"
        ))?
        .query_map(
            params![pending.after_id, end, pending.account_id],
            read_found,
        )?
        .collect::<rusqlite::Result<_>>()?;
    for before in &contacts {
        let mut after = before.clone();
        pending.kind.take_off(&mut after, pending.id);
        contact_rows::save_contact(&db, pending.account_id, before, &after)?;
    }
    db.finish()?;
    pending.after_id = end;
    conn.prepare_cached("UPDATE catalog_deletions SET after_id = ?3 WHERE kind = ?1 AND id = ?2")?
        .execute(params![pending.kind.name(), pending.id, end])?;
    Ok(true)
}

/// No contact carries the id any more: its counts and the record go.
fn finish(conn: &Connection, pending: &Pending) -> Result<()> {
    for facet in pending.kind.facets(pending.id) {
        conn.prepare_cached("DELETE FROM block_counts WHERE account_id = ?1 AND facet = ?2")?
            .execute(params![pending.account_id, facet.code()])?;
    }
    conn.prepare_cached("DELETE FROM catalog_deletions WHERE kind = ?1 AND id = ?2")?
        .execute(params![pending.kind.name(), pending.id])?;
    Ok(())
}
