//! The row-level writes and in-transaction reads that importContacts and subscribe share:
//! finding a contact by address, memberships, tags, field values, deletion. The writes are called
//! only from the writer thread; the contact row's shape (`Found`, `read_found`) is also how
//! exports read contacts.

use crate::error::Result;
use crate::import_plan::Channel;
use crate::model::{MembershipState, Timestamp, same_ignoring_case};
use rusqlite::types::ToSql;
use rusqlite::{CachedStatement, Connection, OptionalExtension, params};
use std::cell::{RefCell, RefMut};
use std::collections::HashMap;

/// The writer's connection with the statements of one command held: a call runs the same dozen
/// statements thousands of times, and rusqlite's cache hashes each statement's text on every use
/// (that was 7% of the writer's time). Statements are found by their text's address, so they
/// must be `&'static str`.
pub struct Db<'c> {
    pub conn: &'c Connection,
    held: RefCell<Vec<(usize, CachedStatement<'c>)>>,
}

impl<'c> Db<'c> {
    pub fn new(conn: &'c Connection) -> Db<'c> {
        Db {
            conn,
            held: RefCell::new(Vec::with_capacity(24)),
        }
    }

    /// The prepared statement for `sql`; one at a time (a second while the first is still in
    /// use is a bug, and panics, which fails only the command).
    pub fn stmt(&self, sql: &'static str) -> rusqlite::Result<RefMut<'_, CachedStatement<'c>>> {
        let key = sql.as_ptr() as usize;
        let mut held = self.held.borrow_mut();
        let at = match held.iter().position(|(k, _)| *k == key) {
            Some(at) => at,
            None => {
                held.push((key, self.conn.prepare_cached(sql)?));
                held.len() - 1
            }
        };
        Ok(RefMut::map(held, |held| &mut held[at].1))
    }
}

/// One channel's columns of a contact row (the phone has no confirm columns).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChannelColumns {
    pub address: Option<String>,
    pub status: Option<i64>,
    pub availability: Option<i64>,
    pub add_time: Option<i64>,
    pub request_ip: Option<String>,
    pub confirm_time: Option<i64>,
    pub confirm_ip: Option<String>,
}

impl ChannelColumns {
    /// Reads a channel's columns starting at `first` (address, status, availability, add time,
    /// request IP, then the confirm time and IP when the channel has them).
    fn read(row: &rusqlite::Row, first: usize, confirm: bool) -> rusqlite::Result<ChannelColumns> {
        let (confirm_time, confirm_ip) = if confirm {
            (row.get(first + 5)?, row.get(first + 6)?)
        } else {
            (None, None)
        };
        Ok(ChannelColumns {
            address: row.get(first)?,
            status: row.get(first + 1)?,
            availability: row.get(first + 2)?,
            add_time: row.get(first + 3)?,
            request_ip: row.get(first + 4)?,
            confirm_time,
            confirm_ip,
        })
    }

    /// These columns with every given (`Some`) value of `changes` laid over them.
    pub fn overlaid(&self, changes: &ChannelColumns) -> ChannelColumns {
        ChannelColumns {
            address: changes.address.clone().or_else(|| self.address.clone()),
            status: changes.status.or(self.status),
            availability: changes.availability.or(self.availability),
            add_time: changes.add_time.or(self.add_time),
            request_ip: changes
                .request_ip
                .clone()
                .or_else(|| self.request_ip.clone()),
            confirm_time: changes.confirm_time.or(self.confirm_time),
            confirm_ip: changes
                .confirm_ip
                .clone()
                .or_else(|| self.confirm_ip.clone()),
        }
    }
}

/// A contact found by one of its addresses, with its own columns.
#[derive(Clone, Debug)]
pub struct Found {
    pub id: i64,
    pub email: ChannelColumns,
    pub phone: ChannelColumns,
}

/// The columns of a `Found`, as the start of a query (a macro, so that whole queries can be
/// `&'static str` constants for `Db::stmt`).
macro_rules! select_found {
    () => {
        "SELECT id, email, email_status, email_availability, email_add_time, email_request_ip,
         email_confirm_time, email_confirm_ip, phone, phone_status, phone_availability,
         phone_add_time, phone_request_ip FROM contacts"
    };
}
pub(crate) use select_found;
const FIND_BY_EMAIL: &str = concat!(select_found!(), " WHERE account_id = ?1 AND email = ?2");
const FIND_BY_PHONE: &str = concat!(select_found!(), " WHERE account_id = ?1 AND phone = ?2");
const FIND_BY_BOTH: &str = concat!(
    select_found!(),
    " WHERE account_id = ?1 AND (email = ?2 OR phone = ?3)"
);

/// Reads a `Found` from a row that starts with `select_found!()`'s columns.
pub fn read_found(row: &rusqlite::Row) -> rusqlite::Result<Found> {
    Ok(Found {
        id: row.get(0)?,
        email: ChannelColumns::read(row, 1, true)?,
        phone: ChannelColumns::read(row, 8, false)?,
    })
}

/// The account's contact with this address on `channel`.
pub fn find(db: &Db, account_id: i64, channel: Channel, address: &str) -> Result<Option<Found>> {
    let sql = match channel {
        Channel::Email => FIND_BY_EMAIL,
        Channel::Phone => FIND_BY_PHONE,
    };
    Ok(db
        .stmt(sql)?
        .query_row(params![account_id, address], read_found)
        .optional()?)
}

/// The contacts owning this email and this phone (the same one, two, or none), with one query
/// when both are given.
pub fn find_by_addresses(
    db: &Db,
    account_id: i64,
    email: Option<&str>,
    phone: Option<&str>,
) -> Result<(Option<Found>, Option<Found>)> {
    let (Some(email), Some(phone)) = (email, phone) else {
        let by_email = match email {
            Some(email) => find(db, account_id, Channel::Email, email)?,
            None => None,
        };
        let by_phone = match phone {
            Some(phone) => find(db, account_id, Channel::Phone, phone)?,
            None => None,
        };
        return Ok((by_email, by_phone));
    };
    let mut statement = db.stmt(FIND_BY_BOTH)?;
    let (mut by_email, mut by_phone) = (None, None);
    for found in statement.query_map(params![account_id, email, phone], read_found)? {
        let found = found?;
        if found.phone.address.as_deref() == Some(phone) {
            by_phone = Some(found.clone());
        }
        if found.email.address.as_deref() == Some(email) {
            by_email = Some(found);
        }
    }
    Ok((by_email, by_phone))
}

/// Writes every channel column of a contact.
pub fn update_channels(
    db: &Db,
    contact_id: i64,
    email: &ChannelColumns,
    phone: &ChannelColumns,
) -> Result<()> {
    db.stmt(
        "UPDATE contacts SET email = ?2, email_status = ?3, email_availability = ?4,
            email_add_time = ?5, email_request_ip = ?6, email_confirm_time = ?7,
            email_confirm_ip = ?8, phone = ?9, phone_status = ?10, phone_availability = ?11,
            phone_add_time = ?12, phone_request_ip = ?13
         WHERE id = ?1",
    )?
    .execute(params![
        contact_id,
        email.address,
        email.status,
        email.availability,
        email.add_time,
        email.request_ip,
        email.confirm_time,
        email.confirm_ip,
        phone.address,
        phone.status,
        phone.availability,
        phone.add_time,
        phone.request_ip
    ])?;
    Ok(())
}

/// Contacts a call created, counted into `contact_blocks` once per block when the call ends.
#[derive(Default)]
pub struct NewContacts(HashMap<(i64, i64), i64>);

impl NewContacts {
    pub fn add(&mut self, account_id: i64, contact_id: i64) {
        *self.0.entry((account_id, contact_id >> 10)).or_default() += 1;
    }

    /// Adds the counts to `contact_blocks`.
    pub fn count(&self, db: &Db) -> Result<()> {
        for ((account_id, block), contacts) in &self.0 {
            db.stmt(
                "INSERT INTO contact_blocks (account_id, block, contacts) VALUES (?1, ?2, ?3)
                 ON CONFLICT (account_id, block) DO UPDATE SET contacts = contacts + excluded.contacts",
            )?
            .execute(params![account_id, block, contacts])?;
        }
        Ok(())
    }
}

/// Deletes a contact with everything it has.
pub fn delete_contact(db: &Db, contact_id: i64) -> Result<()> {
    for sql in [
        "DELETE FROM memberships WHERE contact_id = ?1",
        "DELETE FROM field_values WHERE contact_id = ?1",
        "DELETE FROM contact_tags WHERE contact_id = ?1",
        "DELETE FROM contacts WHERE id = ?1",
    ] {
        db.stmt(sql)?.execute([contact_id])?;
    }
    Ok(())
}

/// A channel's memberships: list id to state and subscribe time.
pub fn memberships(
    db: &Db,
    contact_id: i64,
    channel: Channel,
) -> Result<HashMap<i64, (MembershipState, Timestamp)>> {
    let mut statement = db.stmt(
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
    db: &Db,
    contact_id: i64,
    channel: Channel,
    list_id: i64,
    state: MembershipState,
    time: Timestamp,
) -> Result<()> {
    db.stmt(
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

/// Removes one membership.
pub fn remove_membership(db: &Db, contact_id: i64, channel: Channel, list_id: i64) -> Result<()> {
    db.stmt("DELETE FROM memberships WHERE contact_id = ?1 AND channel = ?2 AND list_id = ?3")?
        .execute(params![contact_id, channel.code(), list_id])?;
    Ok(())
}

/// The contact's tag names, by name.
pub fn tags_of(db: &Db, contact_id: i64) -> Result<Vec<String>> {
    let mut statement = db.stmt(
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
    pub fn id(&mut self, db: &Db, account_id: i64, name: &str) -> Result<i64> {
        let key = name.to_lowercase();
        if let Some(id) = self.0.get(&key) {
            return Ok(*id);
        }
        let existing: Option<i64> = db
            .stmt("SELECT id FROM tags WHERE account_id = ?1 AND name = ?2 COLLATE NOCASE")?
            .query_row(params![account_id, name], |row| row.get(0))
            .optional()?;
        let id = match existing {
            Some(id) => id,
            None => {
                db.stmt("INSERT INTO tags (account_id, name) VALUES (?1, ?2)")?
                    .execute(params![account_id, name])?;
                db.conn.last_insert_rowid()
            }
        };
        self.0.insert(key, id);
        Ok(id)
    }

    /// Makes the contact's tags exactly `tags`, creating account tags for new names.
    pub fn set_tags(
        &mut self,
        db: &Db,
        account_id: i64,
        contact_id: i64,
        tags: &[String],
    ) -> Result<()> {
        clear_tags(db, contact_id)?;
        self.add_tags(db, account_id, contact_id, tags)
    }

    /// Adds `tags` to the contact, creating account tags for new names.
    pub fn add_tags(
        &mut self,
        db: &Db,
        account_id: i64,
        contact_id: i64,
        tags: &[String],
    ) -> Result<()> {
        for name in tags {
            let tag_id = self.id(db, account_id, name)?;
            db.stmt("INSERT OR IGNORE INTO contact_tags (contact_id, tag_id) VALUES (?1, ?2)")?
                .execute(params![contact_id, tag_id])?;
        }
        Ok(())
    }
}

/// The contact's tags as (tag id, name), by name.
pub fn tags_with_ids(db: &Db, contact_id: i64) -> Result<Vec<(i64, String)>> {
    let mut statement = db.stmt(
        "SELECT t.id, t.name FROM contact_tags ct JOIN tags t ON t.id = ct.tag_id
         WHERE ct.contact_id = ?1 ORDER BY t.name",
    )?;
    let rows = statement.query_map([contact_id], |row| Ok((row.get(0)?, row.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Takes one tag off the contact.
pub fn remove_tag(db: &Db, contact_id: i64, tag_id: i64) -> Result<()> {
    db.stmt("DELETE FROM contact_tags WHERE contact_id = ?1 AND tag_id = ?2")?
        .execute(params![contact_id, tag_id])?;
    Ok(())
}

/// Puts one tag on the contact.
pub fn add_tag(db: &Db, contact_id: i64, tag_id: i64) -> Result<()> {
    db.stmt("INSERT OR IGNORE INTO contact_tags (contact_id, tag_id) VALUES (?1, ?2)")?
        .execute(params![contact_id, tag_id])?;
    Ok(())
}

/// Takes every tag off the contact.
pub fn clear_tags(db: &Db, contact_id: i64) -> Result<()> {
    db.stmt("DELETE FROM contact_tags WHERE contact_id = ?1")?
        .execute([contact_id])?;
    Ok(())
}

/// The existing tags followed by the given ones not already there (compared ignoring case).
pub fn union_ignoring_case(existing: &[String], given: &[String]) -> Vec<String> {
    let mut all = existing.to_vec();
    for name in given {
        if !all.iter().any(|tag| same_ignoring_case(tag, name)) {
            all.push(name.clone());
        }
    }
    all
}

/// Sets a user-field value; an empty value clears it.
pub fn set_field(db: &Db, contact_id: i64, field_id: i64, value: &str) -> Result<()> {
    if value.is_empty() {
        db.stmt("DELETE FROM field_values WHERE contact_id = ?1 AND field_id = ?2")?
            .execute(params![contact_id, field_id])?;
    } else {
        db.stmt(
            "INSERT INTO field_values (contact_id, field_id, value) VALUES (?1, ?2, ?3)
             ON CONFLICT (contact_id, field_id) DO UPDATE SET value = excluded.value",
        )?
        .execute(params![contact_id, field_id, value])?;
    }
    Ok(())
}

/// The contact's user-field values by field id.
pub fn field_values(db: &Db, contact_id: i64) -> Result<HashMap<i64, String>> {
    let mut statement =
        db.stmt("SELECT field_id, value FROM field_values WHERE contact_id = ?1")?;
    let rows = statement.query_map([contact_id], |row| Ok((row.get(0)?, row.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The field ids that have a value on this contact.
pub fn fields_with_values(db: &Db, contact_id: i64) -> Result<Vec<i64>> {
    let mut statement = db.stmt("SELECT field_id FROM field_values WHERE contact_id = ?1")?;
    let rows = statement.query_map([contact_id], |row| row.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Rows per multi-row INSERT: enough to amortise a statement, few enough variables for SQLite.
const ROWS_PER_INSERT: usize = 64;

/// Inserts `rows` with `prefix` (`INSERT INTO t (a, b)`) in multi-row statements: chunks of 64,
/// then the rest in chunks of 32, 16, ..., 1, so that only seven statement shapes are cached.
pub fn insert_rows<const N: usize>(db: &Db, prefix: &str, rows: &[[&dyn ToSql; N]]) -> Result<()> {
    let mut rest = rows;
    let mut size = ROWS_PER_INSERT;
    while !rest.is_empty() {
        while size > rest.len() {
            size /= 2;
        }
        let (chunk, after) = rest.split_at(size);
        let row = format!("({})", vec!["?"; N].join(", "));
        let sql = format!("{prefix} VALUES {}", vec![row.as_str(); size].join(", "));
        db.conn
            .prepare_cached(&sql)?
            .execute(rusqlite::params_from_iter(chunk.iter().flatten()))?;
        rest = after;
    }
    Ok(())
}
