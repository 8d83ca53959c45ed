//! Upgrades a database written with an earlier schema version to this binary's, in place and in
//! one transaction: a failure leaves the file as it was.

use crate::import_plan::Channel;
use crate::model::{MembershipState, Timestamp, case_key};
use crate::store::packed::{FieldValues, Membership, Memberships, TagSet};
use rusqlite::{Connection, params};
use std::collections::HashMap;

/// Runs every step from `version` up to the current one.
pub fn upgrade(conn: &Connection, version: i64) -> rusqlite::Result<()> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let upgraded = (|| {
        if version < 2 {
            pack_contact_parts(conn)?;
        }
        if version < 3 {
            add_confirmations(conn)?;
        }
        if version < 4 {
            add_block_counts(conn)?;
        }
        conn.execute_batch("PRAGMA user_version = 4")
    })();
    match upgraded {
        Ok(()) => conn.execute_batch("COMMIT"),
        Err(error) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(error)
        }
    }
}

/// Version 2 to 3: the outbox of double opt-in confirmations.
fn add_confirmations(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(schema_part(
        "CREATE TABLE confirmations",
        "\n\nPRAGMA user_version",
    ))
}

/// Version 3 to 4: the per-block facet counts, counted from every contact once, and the
/// deletions of lists, tags and fields still to be taken off contacts.
fn add_block_counts(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(schema_part(
        "CREATE TABLE block_counts",
        "\n\n-- async/exportContacts",
    ))?;
    let counts = crate::store::facets::count_all(conn)?;
    let mut insert = conn.prepare(
        "INSERT INTO block_counts (account_id, facet, block, contacts) VALUES (?1, ?2, ?3, ?4)",
    )?;
    for ((account_id, facet, block), contacts) in counts {
        insert.execute(params![account_id, facet, block, contacts])?;
    }
    Ok(())
}

/// The statements of schema.sql from `start` up to `end`: later versions' tables as the schema
/// defines them, so that an upgraded database and a new one are the same.
fn schema_part(start: &str, end: &str) -> &'static str {
    let schema = include_str!("../../schema.sql");
    let from = schema.find(start).expect("schema.sql defines the table");
    let to = schema[from..]
        .find(end)
        .map_or(schema.len(), |to| from + to);
    &schema[from..to]
}

/// Version 1 to 2: memberships, tags and field values move from their own tables into the
/// contact row (see `packed`), the index by account goes (the rowid pages contacts), and tag
/// names are matched by a Unicode lower-cased key instead of ASCII-only NOCASE.
fn pack_contact_parts(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "ALTER TABLE contacts ADD COLUMN memberships BLOB;
         ALTER TABLE contacts ADD COLUMN tag_ids BLOB;
         ALTER TABLE contacts ADD COLUMN field_values BLOB;",
    )?;
    let merged = key_tags(conn)?;
    pack_by_contact(
        conn,
        "SELECT contact_id, channel, list_id, state, subscribed_at FROM memberships
         ORDER BY contact_id",
        "UPDATE contacts SET memberships = ?2 WHERE id = ?1",
        |set: &mut Memberships, row| {
            let channel = if row.get::<_, i64>(1)? == 1 {
                Channel::Phone
            } else {
                Channel::Email
            };
            set.put(Membership {
                channel,
                list_id: row.get(2)?,
                state: MembershipState::from_code(row.get(3)?).unwrap_or(MembershipState::Active),
                time: Timestamp(row.get(4)?),
            });
            Ok(())
        },
    )?;
    pack_by_contact(
        conn,
        "SELECT contact_id, tag_id FROM contact_tags ORDER BY contact_id",
        "UPDATE contacts SET tag_ids = ?2 WHERE id = ?1",
        |set: &mut TagSet, row| {
            let tag: i64 = row.get(1)?;
            set.insert(merged.get(&tag).copied().unwrap_or(tag));
            Ok(())
        },
    )?;
    pack_by_contact(
        conn,
        "SELECT contact_id, field_id, value FROM field_values ORDER BY contact_id",
        "UPDATE contacts SET field_values = ?2 WHERE id = ?1",
        |set: &mut FieldValues, row| {
            set.set(row.get(1)?, &row.get::<_, String>(2)?);
            Ok(())
        },
    )?;
    for duplicate in merged.keys() {
        conn.execute("DELETE FROM tags WHERE id = ?1", [duplicate])?;
    }
    conn.execute_batch(
        "DROP TABLE memberships; DROP TABLE contact_tags; DROP TABLE field_values;
         DROP INDEX contacts_by_account;
         CREATE UNIQUE INDEX tags_by_key ON tags (account_id, name_key);",
    )
}

/// Gives every tag its `name_key`. Names NOCASE told apart but equal in Unicode lower case (in
/// Cyrillic, say) become one tag, the oldest: answers each merged tag's id and the id it joins.
fn key_tags(conn: &Connection) -> rusqlite::Result<HashMap<i64, i64>> {
    conn.execute_batch(
        "ALTER TABLE tags ADD COLUMN name_key TEXT NOT NULL DEFAULT '';
         DROP INDEX tags_by_name;",
    )?;
    let tags: Vec<(i64, i64, String)> = conn
        .prepare("SELECT id, account_id, name FROM tags ORDER BY id")?
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut kept: HashMap<(i64, String), i64> = HashMap::new();
    let mut merged = HashMap::new();
    let mut set_key = conn.prepare("UPDATE tags SET name_key = ?2 WHERE id = ?1")?;
    for (id, account_id, name) in tags {
        let key = case_key(&name);
        match kept.get(&(account_id, key.clone())) {
            Some(first) => {
                merged.insert(id, *first);
            }
            None => {
                set_key.execute(params![id, key])?;
                kept.insert((account_id, key), id);
            }
        }
    }
    Ok(merged)
}

/// Streams `select` (contact id first, ordered by it), folds each contact's rows into a set with
/// `add`, and writes each set with `update` (?1 the contact, ?2 the set).
fn pack_by_contact<S: Default + rusqlite::types::ToSql>(
    conn: &Connection,
    select: &str,
    update: &str,
    mut add: impl FnMut(&mut S, &rusqlite::Row) -> rusqlite::Result<()>,
) -> rusqlite::Result<()> {
    let mut update = conn.prepare(update)?;
    let mut select = conn.prepare(select)?;
    let mut rows = select.query([])?;
    let mut current: Option<(i64, S)> = None;
    while let Some(row) = rows.next()? {
        let contact_id: i64 = row.get(0)?;
        if current.as_ref().is_none_or(|(id, _)| *id != contact_id) {
            if let Some((id, set)) = current.take() {
                update.execute(params![id, set])?;
            }
            current = Some((contact_id, S::default()));
        }
        if let Some((_, set)) = current.as_mut() {
            add(set, row)?;
        }
    }
    if let Some((id, set)) = current {
        update.execute(params![id, set])?;
    }
    Ok(())
}
