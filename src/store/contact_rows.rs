//! The row-level writes and in-transaction reads that importContacts and subscribe share:
//! finding a contact by address, writing it back whole, tag ids, deletion. The writes are called
//! only from the writer thread; the contact row's shape (`Found`, `read_found`) is also how
//! exports read contacts.

use crate::error::Result;
use crate::import_plan::Channel;
use crate::model::{MAX_TAGS_PER_CONTACT, case_key, same_ignoring_case};
use crate::store::facets::FacetChanges;
use crate::store::packed::{FieldValues, Memberships, TagSet};
use rusqlite::types::{ToSql, ToSqlOutput, Value};
use rusqlite::{CachedStatement, Connection, OptionalExtension, params};
use std::cell::{RefCell, RefMut};
use std::collections::HashMap;

/// The writer's connection with the statements of one command held: a call runs the same dozen
/// statements thousands of times, and rusqlite's cache hashes each statement's text on every use
/// (that was 7% of the writer's time). Statements are found by their text's address, so they
/// must be `&'static str`.
///
/// It also gathers the command's changes to the per-block facet counts (`facets.rs`) from the
/// row writes below; `finish` writes them, and every command that writes contacts calls it last.
pub struct Db<'c> {
    pub conn: &'c Connection,
    held: RefCell<Vec<(usize, CachedStatement<'c>)>>,
    facets: RefCell<FacetChanges>,
    deleted_tags: RefCell<Option<(i64, Vec<i64>)>>,
}

impl<'c> Db<'c> {
    pub fn new(conn: &'c Connection) -> Db<'c> {
        Db {
            conn,
            held: RefCell::new(Vec::with_capacity(24)),
            facets: RefCell::new(FacetChanges::default()),
            deleted_tags: RefCell::new(None),
        }
    }

    /// The account's deleted tags still on some contacts (`catalog_cleanup`), read once per
    /// command.
    pub fn deleted_tags(&self, account_id: i64) -> Result<Vec<i64>> {
        if let Some((account, tags)) = &*self.deleted_tags.borrow()
            && *account == account_id
        {
            return Ok(tags.clone());
        }
        let tags = crate::store::catalog_cleanup::deleted_tags(self.conn, account_id)?;
        *self.deleted_tags.borrow_mut() = Some((account_id, tags.clone()));
        Ok(tags)
    }

    /// Writes the facet counts the command's row writes changed.
    pub fn finish(&self) -> Result<()> {
        let changes: Vec<_> = self.facets.borrow_mut().take().collect();
        for ((account_id, facet, block), change) in changes {
            self.stmt(
                "INSERT INTO block_counts (account_id, facet, block, contacts)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (account_id, facet, block)
                 DO UPDATE SET contacts = contacts + excluded.contacts",
            )?
            .execute(params![account_id, facet, block, change])?;
        }
        Ok(())
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

/// A contact's row: its channels and its packed parts. A new contact is built with id 0.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Found {
    pub id: i64,
    pub email: ChannelColumns,
    pub phone: ChannelColumns,
    pub memberships: Memberships,
    pub tags: TagSet,
    pub fields: FieldValues,
}

/// The columns of a `Found`, as the start of a query (a macro, so that whole queries can be
/// `&'static str` constants for `Db::stmt`).
macro_rules! found_columns {
    () => {
        "id, email, email_status, email_availability, email_add_time, email_request_ip,
         email_confirm_time, email_confirm_ip, phone, phone_status, phone_availability,
         phone_add_time, phone_request_ip, memberships, tag_ids, field_values"
    };
}
macro_rules! select_found {
    () => {
        concat!(
            "SELECT ",
            crate::store::contact_rows::found_columns!(),
            " FROM contacts"
        )
    };
}
pub(crate) use found_columns;
pub(crate) use select_found;
const FIND_BY_EMAIL: &str = concat!(select_found!(), " WHERE account_id = ?1 AND email = ?2");
const FIND_BY_PHONE: &str = concat!(select_found!(), " WHERE account_id = ?1 AND phone = ?2");

/// Reads a `Found` from a row that starts with `select_found!()`'s columns.
pub fn read_found(row: &rusqlite::Row) -> rusqlite::Result<Found> {
    read_found_at(row, 0)
}

/// `read_found` for a row whose `found_columns!()` start at column `first`.
pub fn read_found_at(row: &rusqlite::Row, first: usize) -> rusqlite::Result<Found> {
    Ok(Found {
        id: row.get(first)?,
        email: ChannelColumns::read(row, first + 1, true)?,
        phone: ChannelColumns::read(row, first + 8, false)?,
        memberships: row.get(first + 13)?,
        tags: row.get(first + 14)?,
        fields: row.get(first + 15)?,
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

/// Whose a row's email and phone are.
pub enum Owner {
    Nobody,
    /// One contact has one or both of them.
    Contact(Box<Found>),
    /// The email is one contact's and the phone another's.
    TwoContacts,
}

/// The contact owning this email or this phone. The email is looked up first; when its contact
/// has this phone, it owns the phone too (a phone has one contact in an account), so the usual
/// update of a known contact costs one index probe.
pub fn find_owner(
    db: &Db,
    account_id: i64,
    email: Option<&str>,
    phone: Option<&str>,
) -> Result<Owner> {
    let by_email = match email {
        Some(email) => find(db, account_id, Channel::Email, email)?,
        None => None,
    };
    let by_phone = match (phone, &by_email) {
        (Some(phone), Some(contact)) if contact.phone.address.as_deref() == Some(phone) => None,
        (Some(phone), _) => find(db, account_id, Channel::Phone, phone)?,
        (None, _) => None,
    };
    Ok(match (by_email, by_phone) {
        (Some(_), Some(_)) => Owner::TwoContacts,
        (Some(contact), None) | (None, Some(contact)) => Owner::Contact(Box::new(contact)),
        (None, None) => Owner::Nobody,
    })
}

/// Creates the contact (its `id` is ignored) and answers the new id; the caller counts it into
/// `contact_blocks` with `NewContacts`.
pub fn insert_contact(db: &Db, account_id: i64, contact: &Found) -> Result<i64> {
    let id = insert_row(db, account_id, contact)?;
    db.facets
        .borrow_mut()
        .record(account_id, id, None, Some(contact));
    Ok(id)
}

/// The start of an INSERT of whole contact rows, the columns in `row_params`' order.
macro_rules! into_contacts {
    () => {
        " INTO contacts (account_id,
            email, email_status, email_availability, email_add_time, email_request_ip,
            email_confirm_time, email_confirm_ip,
            phone, phone_status, phone_availability, phone_add_time, phone_request_ip,
            memberships, tag_ids, field_values)
         VALUES "
    };
}

/// The INSERT of a whole contact row, its values in `row_params`' order.
const INSERT: &str = concat!(
    "INSERT",
    into_contacts!(),
    "(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)"
);

/// A row to create as a new contact (`insert_new_run`): the contact, its
/// tags' ids, its other facets (`facets::of_contact`), and its packed memberships and values
/// already encoded.
pub struct NewRow<'a> {
    pub contact: &'a Found,
    pub tags: &'a TagSet,
    pub facets: &'a [i64],
    pub packed: &'a PackedColumns,
}

/// A contact's memberships and field values as their columns store them, encoded ahead of the
/// writer (encoding them while binding was a twentieth of the writer's time per new contact).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackedColumns {
    /// NULL (`None`) when empty, as the sets store themselves.
    memberships: Option<Vec<u8>>,
    fields: Option<Vec<u8>>,
}

impl PackedColumns {
    pub fn of(contact: &Found) -> rusqlite::Result<PackedColumns> {
        let column = |packed: &dyn ToSql| -> rusqlite::Result<Option<Vec<u8>>> {
            match packed.to_sql()? {
                ToSqlOutput::Owned(Value::Blob(bytes)) => Ok(Some(bytes)),
                ToSqlOutput::Owned(Value::Null) => Ok(None),
                _ => Err(rusqlite::Error::ToSqlConversionFailure(
                    "a packed column is NULL or a BLOB".into(),
                )),
            }
        };
        Ok(PackedColumns {
            memberships: column(&contact.memberships)?,
            fields: column(&contact.fields)?,
        })
    }
}

/// The most new contacts one statement of `insert_new_run` writes.
pub const RUN_ROWS: usize = 1 << (RUN_STATEMENTS - 1);
const RUN_STATEMENTS: usize = 6;

/// `INSERT OR IGNORE` of 1, 2, 4 ... `RUN_ROWS` whole contact rows.
static RUN_INSERTS: std::sync::LazyLock<[String; RUN_STATEMENTS]> =
    std::sync::LazyLock::new(|| {
        std::array::from_fn(|power| {
            let row = format!("({})", ["?"; 16].join(", "));
            let rows = vec![row; 1 << power].join(", ");
            format!(concat!("INSERT OR IGNORE", into_contacts!(), "{}"), rows)
        })
    });

/// Creates `rows` as new contacts, in order, a statement per up to `RUN_ROWS` of them: the
/// first id (they have the ids after it in turn), or `None` with nothing left written when an
/// address of one of them already belongs to a contact (or to one of them before it). One
/// statement for many rows saves what SQLite spends per statement run (opening cursors,
/// halting, resetting). A run that finds a taken address is undone whole, so that no row after
/// it is written before the rows ahead of it are applied.
pub fn insert_new_run(db: &Db, account_id: i64, rows: &[NewRow]) -> Result<Option<i64>> {
    // Ids are left to SQLite, which appends each new row after the highest (giving them
    // explicitly made every insert seek and split pages as if in the middle), so that they are
    // known only while the highest id leaves room for them all.
    let highest: Option<i64> = db
        .stmt("SELECT max(id) FROM contacts")?
        .query_row([], |row| row.get(0))?;
    let first = highest.unwrap_or(0) + 1;
    if first.checked_add(rows.len() as i64).is_none() {
        return Ok(None);
    }
    let mut written = 0;
    let mut rest = rows;
    while !rest.is_empty() {
        // The largest statement that fits what is left: 13 rows are 8, 4 and 1.
        let power = (usize::BITS - 1 - rest.len().leading_zeros()) as usize;
        let power = power.min(RUN_STATEMENTS - 1);
        let (piece, after) = rest.split_at(1 << power);
        let mut values: Vec<&dyn ToSql> = Vec::with_capacity(16 * piece.len());
        for row in piece {
            values.extend(new_row_params(&account_id, row));
        }
        written += db.stmt(&RUN_INSERTS[power])?.execute(&values[..])?;
        rest = after;
    }
    if written < rows.len() {
        undo_new(db, account_id, first, written)?;
        return Ok(None);
    }
    let mut facets = db.facets.borrow_mut();
    for (row, id) in rows.iter().zip(first..) {
        facets.record_new(account_id, id, row.facets, row.tags);
    }
    Ok(Some(first))
}

/// Deletes the `written` contacts `insert_new_run` just created from id `first` on. They were
/// not counted yet, and the delete trigger uncounts them, so they are counted first: a
/// savepoint around the run instead cost more than the statements saved, as every page the
/// run touched was copied into its journal.
fn undo_new(db: &Db, account_id: i64, first: i64, written: usize) -> Result<()> {
    if written == 0 {
        return Ok(());
    }
    let mut counted = NewContacts::default();
    for id in first..first + written as i64 {
        counted.add(account_id, id);
    }
    counted.count(db)?;
    db.stmt("DELETE FROM contacts WHERE id >= ?1")?
        .execute([first])?;
    Ok(())
}

fn insert_row(db: &Db, account_id: i64, contact: &Found) -> Result<i64> {
    db.stmt(INSERT)?
        .execute(&row_params(&account_id, contact, &contact.tags)[..])?;
    Ok(db.conn.last_insert_rowid())
}

/// `key` as ?1, then the contact's columns as ?2 to ?16 (with `tags` for its tags), in the
/// order both the INSERT and the whole-row UPDATE name them.
fn row_params<'a>(key: &'a i64, contact: &'a Found, tags: &'a TagSet) -> [&'a dyn ToSql; 16] {
    let (e, p) = (&contact.email, &contact.phone);
    [
        key,
        &e.address,
        &e.status,
        &e.availability,
        &e.add_time,
        &e.request_ip,
        &e.confirm_time,
        &e.confirm_ip,
        &p.address,
        &p.status,
        &p.availability,
        &p.add_time,
        &p.request_ip,
        &contact.memberships,
        tags,
        &contact.fields,
    ]
}

/// `row_params` of a new row, with its packed columns as encoded.
fn new_row_params<'a>(account_id: &'a i64, row: &'a NewRow) -> [&'a dyn ToSql; 16] {
    let mut params = row_params(account_id, row.contact, row.tags);
    params[13] = &row.packed.memberships;
    params[15] = &row.packed.fields;
    params
}

/// Writes the contact back whole if it differs from `before` (a re-sync of unchanged data
/// writes nothing).
pub fn save_contact(db: &Db, account_id: i64, before: &Found, after: &Found) -> Result<()> {
    if before == after {
        return Ok(());
    }
    db.facets
        .borrow_mut()
        .record(account_id, after.id, Some(before), Some(after));
    if before.email == after.email && before.phone == after.phone {
        // Only the packed parts changed (a re-sync of lists, tags or values): the address
        // indexes need not be touched.
        db.stmt(
            "UPDATE contacts SET memberships = ?2, tag_ids = ?3, field_values = ?4 WHERE id = ?1",
        )?
        .execute(params![
            after.id,
            after.memberships,
            after.tags,
            after.fields
        ])?;
        return Ok(());
    }
    db.stmt(
        "UPDATE contacts SET email = ?2, email_status = ?3, email_availability = ?4,
            email_add_time = ?5, email_request_ip = ?6, email_confirm_time = ?7,
            email_confirm_ip = ?8, phone = ?9, phone_status = ?10, phone_availability = ?11,
            phone_add_time = ?12, phone_request_ip = ?13, memberships = ?14, tag_ids = ?15,
            field_values = ?16
         WHERE id = ?1",
    )?
    .execute(&row_params(&after.id, after, &after.tags)[..])?;
    Ok(())
}

/// Contacts a call created, counted into `contact_blocks` once per block when the call ends.
#[derive(Default)]
pub struct NewContacts(foldhash::HashMap<(i64, i64), i64>);

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

/// Deletes a contact with everything it has (all of it is in its row).
pub fn delete_contact(db: &Db, account_id: i64, contact: &Found) -> Result<()> {
    db.stmt("DELETE FROM contacts WHERE id = ?1")?
        .execute([contact.id])?;
    db.facets
        .borrow_mut()
        .record(account_id, contact.id, Some(contact), None);
    Ok(())
}

/// Account tag ids by lower-cased name, looked up or created as a call meets them; also by the
/// spelling met, so that a name seen before in the call is found without lower-casing it again.
#[derive(Default)]
pub struct TagIds {
    by_key: foldhash::HashMap<String, i64>,
    by_spelling: foldhash::HashMap<String, i64>,
}

impl TagIds {
    /// The id of the account's tag with this name (in any case), if there is one.
    fn existing(&mut self, db: &Db, account_id: i64, name: &str) -> Result<Option<i64>> {
        if let Some(id) = self.by_spelling.get(name) {
            return Ok(Some(*id));
        }
        let key = case_key(name);
        let found = match self.by_key.get(&key) {
            Some(id) => Some(*id),
            None => db
                .stmt("SELECT id FROM tags WHERE account_id = ?1 AND name_key = ?2")?
                .query_row(params![account_id, key], |row| row.get(0))
                .optional()?,
        };
        if let Some(id) = found {
            self.by_key.insert(key, id);
            self.by_spelling.insert(name.to_string(), id);
        }
        Ok(found)
    }

    /// The id of the account's tag with this name, created if there is none.
    pub fn id(&mut self, db: &Db, account_id: i64, name: &str) -> Result<i64> {
        if let Some(id) = self.existing(db, account_id, name)? {
            return Ok(id);
        }
        let key = case_key(name);
        db.stmt("INSERT INTO tags (account_id, name, name_key) VALUES (?1, ?2, ?3)")?
            .execute(params![account_id, name, key])?;
        let id = db.conn.last_insert_rowid();
        self.by_key.insert(key, id);
        self.by_spelling.insert(name.to_string(), id);
        Ok(id)
    }

    /// The ids of these tag names when every one of them exists, `None` otherwise.
    pub fn known(&mut self, db: &Db, account_id: i64, given: &[String]) -> Result<Option<TagSet>> {
        let mut tags = TagSet::default();
        for name in given {
            match self.existing(db, account_id, name)? {
                Some(id) => tags.insert(id),
                None => return Ok(None),
            }
        }
        Ok(Some(tags))
    }

    /// The contact's tags once `given` names are applied to `current`: replacing them, or added
    /// to them. `None` (and no tag created) when that would be more than a contact may have.
    pub fn applied(
        &mut self,
        db: &Db,
        account_id: i64,
        current: &TagSet,
        given: &[String],
        replace: bool,
    ) -> Result<Option<TagSet>> {
        let mut kept = if replace {
            TagSet::default()
        } else {
            current.clone()
        };
        // A deleted tag not yet taken off every contact does not count towards the limit.
        for deleted in db.deleted_tags(account_id)? {
            kept.remove(deleted);
        }
        let mut unknown: Vec<&str> = Vec::new();
        for name in given {
            match self.existing(db, account_id, name)? {
                Some(id) => kept.insert(id),
                None if !unknown.iter().any(|u| same_ignoring_case(u, name)) => unknown.push(name),
                None => {}
            }
        }
        if kept.len() + unknown.len() > MAX_TAGS_PER_CONTACT {
            return Ok(None);
        }
        for name in unknown {
            kept.insert(self.id(db, account_id, name)?);
        }
        Ok(Some(kept))
    }
}

/// The account's tag names by id, for rendering tag ids.
pub fn tag_names(conn: &Connection, account_id: i64) -> Result<HashMap<i64, String>> {
    let mut statement = conn.prepare_cached("SELECT id, name FROM tags WHERE account_id = ?1")?;
    let rows = statement.query_map([account_id], |row| Ok((row.get(0)?, row.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The names of a contact's tags, sorted, as exports and the contact's readers show them.
pub fn names_of(tags: &TagSet, names: &HashMap<i64, String>) -> Vec<String> {
    let mut named: Vec<String> = tags
        .ids()
        .iter()
        .filter_map(|id| names.get(id).cloned())
        .collect();
    named.sort();
    named
}
