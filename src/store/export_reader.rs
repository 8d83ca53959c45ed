//! exportContacts against a read-only connection: the contacts an `ExportQuery` selects, in id
//! order, rendered as rows of strings (§6.1). Pages at any offset cost about the same: an
//! unfiltered offset is found through `contact_blocks`, not by walking the contacts before it.

use crate::error::Result;
use crate::export_query::{ExportColumn, ExportFilters, ExportQuery, SystemColumn};
use crate::model::{Availability, EmailStatus, MembershipState, PhoneStatus, Timestamp};
use crate::store::contact_rows::{Found, read_found, select_found};
use rusqlite::Connection;
use rusqlite::types::ToSql;
use std::collections::HashMap;
use std::sync::Mutex;

/// What a contact has besides its own columns, as far as the columns asked need it.
#[derive(Default)]
struct Details {
    /// (channel, list id, state, subscribed at), ordered by channel then list id.
    memberships: HashMap<i64, Vec<(i64, i64, i64, i64)>>,
    /// Tag names ordered by name.
    tags: HashMap<i64, Vec<String>>,
    /// Field id to value.
    fields: HashMap<i64, HashMap<i64, String>>,
}

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
    let details = details(conn, query, &contacts)?;
    Ok(contacts
        .iter()
        .map(|c| render(query, c, &details))
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
    loop {
        let contacts = select_contacts(conn, query, after + 1, 0, chunk)?;
        let Some(last) = contacts.last() else {
            return Ok(written);
        };
        after = last.id;
        let details = details(conn, query, &contacts)?;
        for contact in &contacts {
            sink(render(query, contact, &details))?;
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
        " c WHERE c.account_id = :account AND c.id >= :from"
    ));
    let mut values: Vec<(&str, &dyn ToSql)> =
        vec![(":account", &query.account_id), (":from", &from_id)];
    if let Some(list_id) = &filters.list_id {
        // EXISTS, not IN: SQLite walks the contacts in id order and stops at the page's end,
        // where IN (subquery) builds and sorts the whole list on every page.
        sql.push_str(
            " AND EXISTS (SELECT 1 FROM memberships m
                          WHERE m.contact_id = c.id AND m.list_id = :list AND m.state IN (0, 1))",
        );
        values.push((":list", list_id));
    }
    if let Some(email) = &filters.email {
        sql.push_str(" AND c.email = :email");
        values.push((":email", email));
    }
    if let Some(phone) = &filters.phone {
        sql.push_str(" AND c.phone = :phone");
        values.push((":phone", phone));
    }
    if let Some(tag) = &filters.tag {
        sql.push_str(
            " AND EXISTS (SELECT 1 FROM contact_tags ct
                          WHERE ct.contact_id = c.id
                            AND ct.tag_id = (SELECT t.id FROM tags t
                                             WHERE t.account_id = :account
                                               AND t.name = :tag COLLATE NOCASE))",
        );
        values.push((":tag", tag));
    }
    if let Some(status) = &filters.email_status {
        sql.push_str(" AND c.email IS NOT NULL AND c.email_status = :email_status");
        values.push((":email_status", status));
    }
    if let Some(status) = &filters.phone_status {
        sql.push_str(" AND c.phone IS NOT NULL AND c.phone_status = :phone_status");
        values.push((":phone_status", status));
    }
    sql.push_str(" ORDER BY c.id LIMIT :limit OFFSET :offset");
    let (limit, offset) = (limit as i64, offset as i64);
    values.push((":limit", &limit));
    values.push((":offset", &offset));
    let mut statement = conn.prepare_cached(&sql)?;
    let rows = statement.query_map(values.as_slice(), read_found)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Loads what the columns need for these contacts, a run of nearby ids at a time: one range
/// query for a dense page, a few small ones for a sparse (filtered) page.
fn details(conn: &Connection, query: &ExportQuery, contacts: &[Found]) -> Result<Details> {
    let mut details = Details::default();
    let (memberships, tags, fields) = (
        query.needs_memberships(),
        query.needs_tags(),
        query.needs_fields(),
    );
    if !(memberships || tags || fields) {
        return Ok(details);
    }
    for (low, high) in id_runs(contacts) {
        let range = rusqlite::params![query.account_id, low, high];
        if memberships {
            let mut statement = conn.prepare_cached(
                "SELECT m.contact_id, m.channel, m.list_id, m.state, m.subscribed_at
                 FROM contacts c JOIN memberships m ON m.contact_id = c.id
                 WHERE c.account_id = ?1 AND c.id BETWEEN ?2 AND ?3
                 ORDER BY m.contact_id, m.channel, m.list_id",
            )?;
            let mut rows = statement.query(range)?;
            while let Some(row) = rows.next()? {
                details.memberships.entry(row.get(0)?).or_default().push((
                    row.get(1)?,
                    row.get(2)?,
                    row.get(3)?,
                    row.get(4)?,
                ));
            }
        }
        if tags {
            let mut statement = conn.prepare_cached(
                "SELECT ct.contact_id, t.name
                 FROM contacts c JOIN contact_tags ct ON ct.contact_id = c.id JOIN tags t ON t.id = ct.tag_id
                 WHERE c.account_id = ?1 AND c.id BETWEEN ?2 AND ?3
                 ORDER BY ct.contact_id, t.name",
            )?;
            let mut rows = statement.query(range)?;
            while let Some(row) = rows.next()? {
                details
                    .tags
                    .entry(row.get(0)?)
                    .or_default()
                    .push(row.get(1)?);
            }
        }
        if fields {
            let mut statement = conn.prepare_cached(
                "SELECT v.contact_id, v.field_id, v.value
                 FROM contacts c JOIN field_values v ON v.contact_id = c.id
                 WHERE c.account_id = ?1 AND c.id BETWEEN ?2 AND ?3",
            )?;
            let mut rows = statement.query(range)?;
            while let Some(row) = rows.next()? {
                details
                    .fields
                    .entry(row.get(0)?)
                    .or_default()
                    .insert(row.get(1)?, row.get(2)?);
            }
        }
    }
    Ok(details)
}

/// Splits the (ascending) ids into runs whose neighbours are at most 64 apart.
fn id_runs(contacts: &[Found]) -> Vec<(i64, i64)> {
    let mut runs: Vec<(i64, i64)> = Vec::new();
    for contact in contacts {
        match runs.last_mut() {
            Some((_, high)) if contact.id - *high <= 64 => *high = contact.id,
            _ => runs.push((contact.id, contact.id)),
        }
    }
    runs
}

fn render(query: &ExportQuery, contact: &Found, details: &Details) -> Vec<String> {
    let memberships = details
        .memberships
        .get(&contact.id)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let list = |channel: i64, state: MembershipState| -> String {
        join(
            memberships
                .iter()
                .filter(|m| m.0 == channel && m.2 == state.code())
                .map(|m| m.1.to_string()),
        )
    };
    let times = |channel: i64| -> String {
        join(
            memberships
                .iter()
                .filter(|m| m.0 == channel && m.2 == MembershipState::Active.code())
                .map(|m| Timestamp(m.3).wire()),
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
            ExportColumn::Field { id, .. } => details
                .fields
                .get(&contact.id)
                .and_then(|values| values.get(id))
                .cloned()
                .unwrap_or_default(),
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
                    EmailListIds => list(0, MembershipState::Active),
                    EmailSubscribeTimes => times(0),
                    EmailUnsubscribedListIds => list(0, MembershipState::Unsubscribed),
                    EmailExcludedListIds => list(0, MembershipState::Excluded),
                    Phone => text(&contact.phone.address),
                    PhoneStatus => phone_status(contact.phone.status).to_string(),
                    PhoneAvailability => availability(contact.phone.availability).to_string(),
                    PhoneAddTime => time(contact.phone.add_time),
                    PhoneRequestIp => text(&contact.phone.request_ip),
                    PhoneListIds => list(1, MembershipState::Active),
                    PhoneSubscribeTimes => times(1),
                    PhoneUnsubscribedListIds => list(1, MembershipState::Unsubscribed),
                    PhoneExcludedListIds => list(1, MembershipState::Excluded),
                    Tags => details
                        .tags
                        .get(&contact.id)
                        .map(|t| t.join(","))
                        .unwrap_or_default(),
                }
            }
        })
        .collect()
}

fn join(items: impl Iterator<Item = String>) -> String {
    items.collect::<Vec<_>>().join(",")
}
