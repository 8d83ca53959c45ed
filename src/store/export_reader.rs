//! exportContacts against a read-only connection: the contacts an `ExportQuery` selects, in id
//! order, rendered as rows of strings (§6.1). Pages at any offset cost about the same: an
//! unfiltered offset is found through `contact_blocks`, not by walking the contacts before it.

use crate::error::{Error, Result};
use crate::export_query::{ExportColumn, ExportFilters, ExportQuery, SystemColumn};
use crate::import_plan::Channel;
use crate::model::{Availability, EmailStatus, MembershipState, PhoneStatus, Timestamp, case_key};
use crate::store::contact_rows::{self, Found, read_found, select_found};
use crate::store::packed::{Memberships, TagSet};
use rusqlite::types::ToSql;
use rusqlite::{Connection, OptionalExtension};
use std::collections::HashMap;
use std::sync::Mutex;

/// Where recent filtered pages ended: a synchronisation walks the pages in order, and the next
/// page then starts after the last contact of the previous one instead of walking everything
/// before its offset. An end is used only while no write has committed since it was seen.
#[derive(Default)]
pub struct PageEnds(Mutex<HashMap<PageStart, PageEnd>>);

/// A filtered walk's page: account, filters, offset.
type PageStart = (i64, ExportFilters, u64);
/// The write generation a page was read at, and its last contact id.
type PageEnd = (u64, i64);

/// Pages remembered at the most; past that the memory starts afresh.
const PAGE_ENDS_KEPT: usize = 4096;

impl PageEnds {
    fn start_after(&self, query: &ExportQuery, offset: u64, generation: u64) -> Option<i64> {
        let ends = self.0.lock().ok()?;
        let key = (query.account_id, query.filters.clone(), offset);
        match ends.get(&key) {
            Some((seen, last_id)) if *seen == generation => Some(*last_id),
            _ => None,
        }
    }

    fn remember(&self, query: &ExportQuery, end: u64, generation: u64, last_id: i64) {
        if let Ok(mut ends) = self.0.lock() {
            if ends.len() >= PAGE_ENDS_KEPT {
                ends.clear();
            }
            ends.insert(
                (query.account_id, query.filters.clone(), end),
                (generation, last_id),
            );
        }
    }
}

/// One page of an export: at most `limit` rows from `offset`, in contact id order.
/// `generation` is the store's write generation, read before this read began.
pub fn export_page(
    conn: &Connection,
    query: &ExportQuery,
    offset: u64,
    limit: u64,
    ends: &PageEnds,
    generation: u64,
) -> Result<Vec<Vec<String>>> {
    let filtered = !query.filters.is_empty();
    let (from_id, skip) = if !filtered {
        seek(conn, query.account_id, offset)?
    } else if let Some(last_id) = ends.start_after(query, offset, generation) {
        (last_id + 1, 0)
    } else {
        (0, offset)
    };
    let contacts = select_contacts(conn, query, from_id, skip, limit)?;
    if let (true, Some(last)) = (filtered, contacts.last()) {
        ends.remember(query, offset + contacts.len() as u64, generation, last.id);
    }
    let tag_names = tag_names(conn, query)?;
    Ok(contacts
        .iter()
        .map(|c| render(query, c, &tag_names))
        .collect())
}

/// Every row of an export, `chunk` contacts at a time, handed to `sink` in id order. Run it
/// inside one read transaction for a consistent snapshot.
pub fn export_all(
    conn: &Connection,
    query: &ExportQuery,
    chunk: u64,
    mut sink: impl FnMut(Vec<String>) -> Result<()>,
) -> Result<u64> {
    let mut after = 0;
    let mut written = 0;
    let tag_names = tag_names(conn, query)?;
    loop {
        let contacts = select_contacts(conn, query, after + 1, 0, chunk)?;
        let Some(last) = contacts.last() else {
            return Ok(written);
        };
        after = last.id;
        for contact in &contacts {
            sink(render(query, contact, &tag_names))?;
            written += 1;
        }
    }
}

/// The first contact id of the block holding the `offset`-th contact of the account, and the
/// offset left within it.
fn seek(conn: &Connection, account_id: i64, offset: u64) -> Result<(i64, u64)> {
    let mut statement = conn.prepare_cached(
        "SELECT block, contacts FROM contact_blocks WHERE account_id = ?1 ORDER BY block",
    )?;
    let mut rows = statement.query([account_id])?;
    let mut before: u64 = 0;
    while let Some(row) = rows.next()? {
        let (block, contacts): (i64, i64) = (row.get(0)?, row.get(1)?);
        let contacts = contacts.max(0) as u64;
        if before + contacts > offset {
            return Ok((block << 10, offset - before));
        }
        before += contacts;
    }
    Ok((i64::MAX, 0))
}

fn select_contacts(
    conn: &Connection,
    query: &ExportQuery,
    from_id: i64,
    offset: u64,
    limit: u64,
) -> Result<Vec<Found>> {
    let filters = &query.filters;
    // Only constant fragments are joined here; every value is a bound parameter.
    let mut sql = String::from(concat!(
        select_found!(),
        " WHERE account_id = :account AND id >= :from"
    ));
    let mut values: Vec<(&str, &dyn ToSql)> =
        vec![(":account", &query.account_id), (":from", &from_id)];
    if let Some(email) = &filters.email {
        sql.push_str(" AND email = :email");
        values.push((":email", email));
    }
    if let Some(phone) = &filters.phone {
        sql.push_str(" AND phone = :phone");
        values.push((":phone", phone));
    }
    if let Some(status) = &filters.email_status {
        sql.push_str(" AND email IS NOT NULL AND email_status = :email_status");
        values.push((":email_status", status));
    }
    if let Some(status) = &filters.phone_status {
        sql.push_str(" AND phone IS NOT NULL AND phone_status = :phone_status");
        values.push((":phone_status", status));
    }
    // Lists and tags are packed in the row (see `packed`): those filters are applied here, on
    // the contacts SQLite walks in id order, testing the stored bytes without reading the rest of
    // each row; the page's rows are read afterwards.
    let tag = match &filters.tag {
        Some(name) => match tag_id(conn, query.account_id, name)? {
            Some(id) => Some(id),
            None => return Ok(Vec::new()),
        },
        None => None,
    };
    let list = filters.list_id;
    if list.is_none() && tag.is_none() {
        sql.push_str(" ORDER BY id LIMIT :limit OFFSET :offset");
        let (limit, offset) = (limit as i64, offset as i64);
        values.push((":limit", &limit));
        values.push((":offset", &offset));
        let mut statement = conn.prepare_cached(&sql)?;
        let rows = statement.query_map(values.as_slice(), read_found)?;
        return Ok(rows.collect::<rusqlite::Result<_>>()?);
    }
    let sql = sql.replacen(
        select_found!(),
        "SELECT id, memberships, tag_ids FROM contacts",
        1,
    ) + " ORDER BY id";
    let mut statement = conn.prepare_cached(&sql)?;
    let mut rows = statement.query(values.as_slice())?;
    let damaged = || Error::Internal("a contact's packed lists or tags are damaged".into());
    let mut ids = Vec::new();
    let mut skip = offset;
    while let Some(row) = rows.next()? {
        if let Some(list) = list
            && !Memberships::stored_in_list(row.get_ref(1)?, list, None).ok_or_else(damaged)?
        {
            continue;
        }
        if let Some(tag) = tag
            && !TagSet::stored_contains(row.get_ref(2)?, tag).ok_or_else(damaged)?
        {
            continue;
        }
        if skip > 0 {
            skip -= 1;
            continue;
        }
        ids.push(row.get::<_, i64>(0)?);
        if ids.len() as u64 >= limit {
            break;
        }
    }
    contacts_by_ids(conn, &ids)
}

/// The contacts with these ascending ids, read a run of nearby ids at a time: one range query
/// for a dense page, a few small ones for a sparse one.
fn contacts_by_ids(conn: &Connection, ids: &[i64]) -> Result<Vec<Found>> {
    let mut statement = conn.prepare_cached(concat!(
        select_found!(),
        " WHERE id BETWEEN ?1 AND ?2 ORDER BY id"
    ))?;
    let mut contacts = Vec::with_capacity(ids.len());
    let mut rest = ids;
    while let Some(&low) = rest.first() {
        // A run ends where the next id is more than 64 past the previous one.
        let run = rest
            .windows(2)
            .position(|pair| pair[1] - pair[0] > 64)
            .map_or(rest.len(), |at| at + 1);
        let (wanted, after) = rest.split_at(run);
        let high = wanted[wanted.len() - 1];
        for contact in statement.query_map([low, high], read_found)? {
            let contact = contact?;
            if wanted.binary_search(&contact.id).is_ok() {
                contacts.push(contact);
            }
        }
        rest = after;
    }
    Ok(contacts)
}

/// The id of the account's tag with this name, in any case.
fn tag_id(conn: &Connection, account_id: i64, name: &str) -> Result<Option<i64>> {
    Ok(conn
        .prepare_cached("SELECT id FROM tags WHERE account_id = ?1 AND name_key = ?2")?
        .query_row(rusqlite::params![account_id, case_key(name)], |row| {
            row.get(0)
        })
        .optional()?)
}

/// The account's tag names by id, when the columns show tags.
fn tag_names(conn: &Connection, query: &ExportQuery) -> Result<HashMap<i64, String>> {
    if query.needs_tags() {
        contact_rows::tag_names(conn, query.account_id)
    } else {
        Ok(HashMap::new())
    }
}

fn render(query: &ExportQuery, contact: &Found, tag_names: &HashMap<i64, String>) -> Vec<String> {
    let list = |channel: Channel, state: MembershipState| -> String {
        join(
            contact
                .memberships
                .of(channel)
                .filter(|m| m.state == state)
                .map(|m| m.list_id.to_string()),
        )
    };
    let times = |channel: Channel| -> String {
        join(
            contact
                .memberships
                .of(channel)
                .filter(|m| m.state == MembershipState::Active)
                .map(|m| m.time.wire()),
        )
    };
    let time = |t: Option<i64>| t.map(|t| Timestamp(t).wire()).unwrap_or_default();
    let text = |t: &Option<String>| t.clone().unwrap_or_default();
    let email_status = |c: Option<i64>| {
        c.and_then(EmailStatus::from_code)
            .map(|s| s.wire())
            .unwrap_or_default()
    };
    let phone_status = |c: Option<i64>| {
        c.and_then(PhoneStatus::from_code)
            .map(|s| s.wire())
            .unwrap_or_default()
    };
    let availability = |c: Option<i64>| {
        c.and_then(Availability::from_code)
            .map(|a| a.wire())
            .unwrap_or_default()
    };
    query
        .columns
        .iter()
        .map(|column| match column {
            ExportColumn::Field { id, .. } => {
                contact.fields.get(*id).unwrap_or_default().to_string()
            }
            ExportColumn::System(system) => {
                use SystemColumn::*;
                match system {
                    Id => contact.id.to_string(),
                    Email => text(&contact.email.address),
                    EmailStatus => email_status(contact.email.status).to_string(),
                    EmailAvailability => availability(contact.email.availability).to_string(),
                    EmailAddTime => time(contact.email.add_time),
                    EmailRequestIp => text(&contact.email.request_ip),
                    EmailConfirmTime => time(contact.email.confirm_time),
                    EmailConfirmIp => text(&contact.email.confirm_ip),
                    EmailListIds => list(Channel::Email, MembershipState::Active),
                    EmailSubscribeTimes => times(Channel::Email),
                    EmailUnsubscribedListIds => list(Channel::Email, MembershipState::Unsubscribed),
                    EmailExcludedListIds => list(Channel::Email, MembershipState::Excluded),
                    Phone => text(&contact.phone.address),
                    PhoneStatus => phone_status(contact.phone.status).to_string(),
                    PhoneAvailability => availability(contact.phone.availability).to_string(),
                    PhoneAddTime => time(contact.phone.add_time),
                    PhoneRequestIp => text(&contact.phone.request_ip),
                    PhoneListIds => list(Channel::Phone, MembershipState::Active),
                    PhoneSubscribeTimes => times(Channel::Phone),
                    PhoneUnsubscribedListIds => list(Channel::Phone, MembershipState::Unsubscribed),
                    PhoneExcludedListIds => list(Channel::Phone, MembershipState::Excluded),
                    Tags => contact_rows::names_of(&contact.tags, tag_names).join(","),
                    EmailLastDeliveredAt | EmailLastReadAt | EmailLastClickedAt
                    | PhoneLastDeliveredAt => String::new(),
                }
            }
        })
        .collect()
}

fn join(items: impl Iterator<Item = String>) -> String {
    items.collect::<Vec<_>>().join(",")
}
