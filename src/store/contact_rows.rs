//! The row-level writes and in-transaction reads that importContacts and subscribe share:
//! finding a contact by address, memberships, tags, field values, deletion. Called only from the
//! writer thread.

use crate::error::Result;
use crate::import_plan::Channel;
use crate::model::{MembershipState, Timestamp};
use rusqlite::types::ToSql;
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::HashMap;

/// A contact found by one of its addresses.
pub struct Found {
    pub id: i64,
    pub email: Option<String>,
    pub email_status: Option<i64>,
    pub phone: Option<String>,
    pub phone_status: Option<i64>,
}

/// The account's contact with this address on `channel`.
pub fn find(
    conn: &Connection,
    account_id: i64,
    channel: Channel,
    address: &str,
) -> Result<Option<Found>> {
    let sql = match channel {
        Channel::Email => {
            "SELECT id, email, email_status, phone, phone_status FROM contacts
             WHERE account_id = ?1 AND email = ?2"
        }
        Channel::Phone => {
            "SELECT id, email, email_status, phone, phone_status FROM contacts
             WHERE account_id = ?1 AND phone = ?2"
        }
    };
    Ok(conn
        .prepare_cached(sql)?
        .query_row(params![account_id, address], |row| {
            Ok(Found {
                id: row.get(0)?,
                email: row.get(1)?,
                email_status: row.get(2)?,
                phone: row.get(3)?,
                phone_status: row.get(4)?,
            })
        })
        .optional()?)
}

/// Deletes a contact with everything it has.
pub fn delete_contact(conn: &Connection, contact_id: i64) -> Result<()> {
    for sql in [
        "DELETE FROM memberships WHERE contact_id = ?1",
        "DELETE FROM field_values WHERE contact_id = ?1",
        "DELETE FROM contact_tags WHERE contact_id = ?1",
        "DELETE FROM contacts WHERE id = ?1",
    ] {
        conn.prepare_cached(sql)?.execute([contact_id])?;
    }
    Ok(())
}

/// A channel's memberships: list id to state and subscribe time.
pub fn memberships(
    conn: &Connection,
    contact_id: i64,
    channel: Channel,
) -> Result<HashMap<i64, (MembershipState, Timestamp)>> {
    let mut statement = conn.prepare_cached(
        "SELECT list_id, state, subscribed_at FROM memberships WHERE contact_id = ?1 AND channel = ?2",
    )?;
    let rows = statement.query_map(params![contact_id, channel.code()], |row| {
        let state = MembershipState::from_code(row.get(1)?).unwrap_or(MembershipState::Active);
        Ok((row.get::<_, i64>(0)?, (state, Timestamp(row.get(2)?))))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Sets one membership's state and time, creating it if needed.
pub fn put_membership(
    conn: &Connection,
    contact_id: i64,
    channel: Channel,
    list_id: i64,
    state: MembershipState,
    time: Timestamp,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO memberships (contact_id, channel, list_id, state, subscribed_at)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (contact_id, channel, list_id)
         DO UPDATE SET state = excluded.state, subscribed_at = excluded.subscribed_at",
    )?
    .execute(params![
        contact_id,
        channel.code(),
        list_id,
        state.code(),
        time.0
    ])?;
    Ok(())
}

/// Removes every membership of a channel.
pub fn clear_memberships(conn: &Connection, contact_id: i64, channel: Channel) -> Result<()> {
    conn.prepare_cached("DELETE FROM memberships WHERE contact_id = ?1 AND channel = ?2")?
        .execute(params![contact_id, channel.code()])?;
    Ok(())
}

/// The contact's tag names, by name.
pub fn tags_of(conn: &Connection, contact_id: i64) -> Result<Vec<String>> {
    let mut statement = conn.prepare_cached(
        "SELECT t.name FROM contact_tags ct JOIN tags t ON t.id = ct.tag_id
         WHERE ct.contact_id = ?1 ORDER BY t.name",
    )?;
    let rows = statement.query_map([contact_id], |row| row.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Account tag ids by lower-cased name, looked up or created as a call meets them.
#[derive(Default)]
pub struct TagIds(HashMap<String, i64>);

impl TagIds {
    pub fn id(&mut self, conn: &Connection, account_id: i64, name: &str) -> Result<i64> {
        let key = name.to_lowercase();
        if let Some(id) = self.0.get(&key) {
            return Ok(*id);
        }
        let existing: Option<i64> = conn
            .prepare_cached(
                "SELECT id FROM tags WHERE account_id = ?1 AND name = ?2 COLLATE NOCASE",
            )?
            .query_row(params![account_id, name], |row| row.get(0))
            .optional()?;
        let id = match existing {
            Some(id) => id,
            None => {
                conn.prepare_cached("INSERT INTO tags (account_id, name) VALUES (?1, ?2)")?
                    .execute(params![account_id, name])?;
                conn.last_insert_rowid()
            }
        };
        self.0.insert(key, id);
        Ok(id)
    }

    /// Makes the contact's tags exactly `tags`, creating account tags for new names.
    pub fn set_tags(
        &mut self,
        conn: &Connection,
        account_id: i64,
        contact_id: i64,
        tags: &[String],
    ) -> Result<()> {
        clear_tags(conn, contact_id)?;
        self.add_tags(conn, account_id, contact_id, tags)
    }

    /// Adds `tags` to the contact, creating account tags for new names.
    pub fn add_tags(
        &mut self,
        conn: &Connection,
        account_id: i64,
        contact_id: i64,
        tags: &[String],
    ) -> Result<()> {
        for name in tags {
            let tag_id = self.id(conn, account_id, name)?;
            conn.prepare_cached(
                "INSERT OR IGNORE INTO contact_tags (contact_id, tag_id) VALUES (?1, ?2)",
            )?
            .execute(params![contact_id, tag_id])?;
        }
        Ok(())
    }
}

/// Takes every tag off the contact.
pub fn clear_tags(conn: &Connection, contact_id: i64) -> Result<()> {
    conn.prepare_cached("DELETE FROM contact_tags WHERE contact_id = ?1")?
        .execute([contact_id])?;
    Ok(())
}

/// The existing tags followed by the given ones not already there (compared ignoring case).
pub fn union_ignoring_case(existing: &[String], given: &[String]) -> Vec<String> {
    let mut all = existing.to_vec();
    for name in given {
        if !all
            .iter()
            .any(|tag| tag.to_lowercase() == name.to_lowercase())
        {
            all.push(name.clone());
        }
    }
    all
}

/// Sets a user-field value; an empty value clears it.
pub fn set_field(conn: &Connection, contact_id: i64, field_id: i64, value: &str) -> Result<()> {
    if value.is_empty() {
        conn.prepare_cached("DELETE FROM field_values WHERE contact_id = ?1 AND field_id = ?2")?
            .execute(params![contact_id, field_id])?;
    } else {
        conn.prepare_cached(
            "INSERT INTO field_values (contact_id, field_id, value) VALUES (?1, ?2, ?3)
             ON CONFLICT (contact_id, field_id) DO UPDATE SET value = excluded.value",
        )?
        .execute(params![contact_id, field_id, value])?;
    }
    Ok(())
}

/// The field ids that have a value on this contact.
pub fn fields_with_values(conn: &Connection, contact_id: i64) -> Result<Vec<i64>> {
    let mut statement =
        conn.prepare_cached("SELECT field_id FROM field_values WHERE contact_id = ?1")?;
    let rows = statement.query_map([contact_id], |row| row.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Rows per multi-row INSERT: enough to amortise a statement, few enough variables for SQLite.
const ROWS_PER_INSERT: usize = 64;

/// Inserts `rows` with `prefix` (`INSERT INTO t (a, b)`) in multi-row statements: chunks of 64,
/// then the rest in chunks of 32, 16, ..., 1, so that only seven statement shapes are cached.
pub fn insert_rows<const N: usize>(
    conn: &Connection,
    prefix: &str,
    rows: &[[&dyn ToSql; N]],
) -> Result<()> {
    let mut rest = rows;
    let mut size = ROWS_PER_INSERT;
    while !rest.is_empty() {
        while size > rest.len() {
            size /= 2;
        }
        let (chunk, after) = rest.split_at(size);
        let row = format!("({})", vec!["?"; N].join(", "));
        let sql = format!("{prefix} VALUES {}", vec![row.as_str(); size].join(", "));
        conn.prepare_cached(&sql)?
            .execute(rusqlite::params_from_iter(chunk.iter().flatten()))?;
        rest = after;
    }
    Ok(())
}
