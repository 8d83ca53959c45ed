//! exportContacts against a read-only connection: the contacts an `ExportQuery` selects, in id
//! order, rendered as rows of strings (§6.1). Pages at any offset cost about the same: an
//! unfiltered offset is found through `contact_blocks`, not by walking the contacts before it.

use crate::error::{Error, Result};
use crate::export_query::{ExportColumn, ExportFilters, ExportQuery, SystemColumn};
use crate::import_plan::Channel;
use crate::model::{Availability, EmailStatus, MembershipState, PhoneStatus, Timestamp, case_key};
use crate::store::contact_rows::{self, Found, read_found, select_found};
use crate::store::db;
use crate::store::facets::Facet;
use crate::store::packed::{Memberships, TagSet};
use rusqlite::types::ToSql;
use rusqlite::{Connection, OptionalExtension};
use std::collections::{HashMap, HashSet};
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
    let contacts = if query.filters.is_empty() {
        let (from_id, skip) = seek(conn, query.account_id, offset)?;
        select_contacts(conn, query, &Packed::default(), whole(from_id), skip, limit)?
    } else {
        filtered_page(conn, query, offset, limit, ends, generation)?
    };
    let names = Names::of(conn, query)?;
    Ok(contacts.iter().map(|c| render(query, c, &names)).collect())
}

/// A filtered page. One filter by list, tag or status (the usual synchronisation) starts at
/// the block holding the offset, found from the facet's per-block counts, and reads only the
/// blocks that hold such contacts. Several filters walk the first one's blocks from where the
/// previous page ended when that is remembered, else from the start.
fn filtered_page(
    conn: &Connection,
    query: &ExportQuery,
    offset: u64,
    limit: u64,
    ends: &PageEnds,
    generation: u64,
) -> Result<Vec<Found>> {
    let filters = &query.filters;
    let Some(packed) = Packed::of(conn, query)? else {
        return Ok(Vec::new());
    };
    let tag = packed.tag;
    let facets: Vec<Facet> = [
        filters.list_id.map(Facet::List),
        tag.map(Facet::Tag),
        filters.email_status.map(Facet::EmailStatus),
        filters.phone_status.map(Facet::PhoneStatus),
    ]
    .into_iter()
    .flatten()
    .collect();
    let by_address = filters.email.is_some() || filters.phone.is_some();
    if let ([facet], false) = (facets.as_slice(), by_address) {
        let blocks = db::facet_blocks(conn, query.account_id, *facet, 0)?;
        let mut before = 0;
        for (at, (_, contacts)) in blocks.iter().enumerate() {
            let contacts = (*contacts).max(0) as u64;
            if before + contacts > offset {
                let ranges = block_ranges(&blocks[at..], 0);
                return select_contacts(conn, query, &packed, ranges, offset - before, limit);
            }
            before += contacts;
        }
        return Ok(Vec::new());
    }
    let (from_id, skip) = match ends.start_after(query, offset, generation) {
        Some(last_id) => (last_id + 1, 0),
        None => (0, offset),
    };
    let contacts = match facets.first().filter(|_| !by_address) {
        Some(facet) => {
            let blocks = db::facet_blocks(conn, query.account_id, *facet, from_id >> 10)?;
            select_contacts(
                conn,
                query,
                &packed,
                block_ranges(&blocks, from_id),
                skip,
                limit,
            )?
        }
        None => select_contacts(conn, query, &packed, whole(from_id), skip, limit)?,
    };
    if let Some(last) = contacts.last() {
        ends.remember(query, offset + contacts.len() as u64, generation, last.id);
    }
    Ok(contacts)
}

/// What a contact's packed columns must hold to be selected.
#[derive(Default)]
struct Packed {
    list: Option<i64>,
    tag: Option<i64>,
}

impl Packed {
    /// The query's list and tag filters; None when the tag does not exist (nothing matches).
    fn of(conn: &Connection, query: &ExportQuery) -> Result<Option<Packed>> {
        let tag = match &query.filters.tag {
            Some(name) => match tag_id(conn, query.account_id, name)? {
                Some(id) => Some(id),
                None => return Ok(None),
            },
            None => None,
        };
        Ok(Some(Packed {
            list: query.filters.list_id,
            tag,
        }))
    }
}

/// Ranges of contact ids to read, in order: [from, to).
type Ranges = Vec<(i64, i64)>;

fn whole(from_id: i64) -> Ranges {
    vec![(from_id, i64::MAX)]
}

/// The id ranges of these blocks, the first starting no lower than `from_id`.
fn block_ranges(blocks: &[(i64, i64)], from_id: i64) -> Ranges {
    blocks
        .iter()
        .map(|(block, _)| ((block << 10).max(from_id), (block + 1) << 10))
        .collect()
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
    let names = Names::of(conn, query)?;
    let Some(packed) = Packed::of(conn, query)? else {
        return Ok(0);
    };
    loop {
        let contacts = select_contacts(conn, query, &packed, whole(after + 1), 0, chunk)?;
        let Some(last) = contacts.last() else {
            return Ok(written);
        };
        after = last.id;
        for contact in &contacts {
            sink(render(query, contact, &names))?;
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

/// The account's contacts in `ranges` that pass the query's filters, skipping the first `skip`
/// of them, at most `limit`.
fn select_contacts(
    conn: &Connection,
    query: &ExportQuery,
    packed: &Packed,
    ranges: Ranges,
    skip: u64,
    limit: u64,
) -> Result<Vec<Found>> {
    let filters = &query.filters;
    // Only constant fragments are joined here; every value is a bound parameter.
    // By address, the address index finds the contact. Otherwise the rowid range is the way
    // in: the unary + keeps SQLite from walking an address index (partial on IS NOT NULL,
    // which a status filter implies) over the whole account instead.
    let account_term = if filters.email.is_some() || filters.phone.is_some() {
        " WHERE account_id = :account"
    } else {
        " WHERE +account_id = :account"
    };
    let mut sql = String::from(select_found!()) + account_term + " AND id >= :from AND id < :to";
    let (mut from, mut to): (i64, i64);
    let mut conditions: Vec<(&str, &dyn ToSql)> = Vec::new();
    if let Some(email) = &filters.email {
        sql.push_str(" AND email = :email");
        conditions.push((":email", email));
    }
    if let Some(phone) = &filters.phone {
        sql.push_str(" AND phone = :phone");
        conditions.push((":phone", phone));
    }
    if let Some(status) = &filters.email_status {
        sql.push_str(" AND email IS NOT NULL AND email_status = :email_status");
        conditions.push((":email_status", status));
    }
    if let Some(status) = &filters.phone_status {
        sql.push_str(" AND phone IS NOT NULL AND phone_status = :phone_status");
        conditions.push((":phone_status", status));
    }
    if packed.list.is_none() && packed.tag.is_none() {
        // No packed filter: SQLite selects and skips by itself.
        sql.push_str(" ORDER BY id LIMIT :limit OFFSET :offset");
        let mut statement = conn.prepare_cached(&sql)?;
        let (limit, skip) = (limit as i64, skip as i64);
        let mut found = Vec::new();
        let mut skipped = 0i64;
        for (low, high) in ranges {
            (from, to) = (low, high);
            let mut values = range_values(&query.account_id, &from, &to, &conditions);
            let wanted = limit - found.len() as i64;
            let offset = skip - skipped;
            values.push((":limit", &wanted));
            values.push((":offset", &offset));
            let rows: Vec<Found> = statement
                .query_map(values.as_slice(), read_found)?
                .collect::<rusqlite::Result<_>>()?;
            if rows.is_empty() && offset > 0 {
                // The skip is larger than this range: count what it holds and go on.
                skipped += count_in(conn, &sql, &values)?;
                continue;
            }
            skipped = skip;
            found.extend(rows);
            if found.len() as i64 >= limit {
                break;
            }
        }
        return Ok(found);
    }
    // Lists and tags are packed in the row (see `packed`): those filters are applied here,
    // testing the stored bytes without reading the rest of each row; the page's rows are read
    // afterwards.
    let sql = sql.replacen(
        select_found!(),
        "SELECT id, memberships, tag_ids FROM contacts",
        1,
    ) + " ORDER BY id";
    let mut statement = conn.prepare_cached(&sql)?;
    let damaged = || Error::Internal("a contact's packed lists or tags are damaged".into());
    let mut ids = Vec::new();
    let mut skip = skip;
    'ranges: for (low, high) in ranges {
        (from, to) = (low, high);
        let values = range_values(&query.account_id, &from, &to, &conditions);
        let mut rows = statement.query(values.as_slice())?;
        while let Some(row) = rows.next()? {
            if let Some(list) = packed.list
                && !Memberships::stored_in_list(row.get_ref(1)?, list, None).ok_or_else(damaged)?
            {
                continue;
            }
            if let Some(tag) = packed.tag
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
                break 'ranges;
            }
        }
    }
    contacts_by_ids(conn, &ids)
}

/// The bound values of one range's query: the account, the range, the row filters.
fn range_values<'a>(
    account: &'a i64,
    from: &'a i64,
    to: &'a i64,
    conditions: &[(&'a str, &'a dyn ToSql)],
) -> Vec<(&'a str, &'a dyn ToSql)> {
    let mut values: Vec<(&str, &dyn ToSql)> =
        vec![(":account", account), (":from", from), (":to", to)];
    values.extend(conditions.iter().copied());
    values
}

/// How many rows a range's query (without its LIMIT and OFFSET) selects.
fn count_in(conn: &Connection, sql: &str, values: &[(&str, &dyn ToSql)]) -> Result<i64> {
    let select = sql
        .split_once(" ORDER BY")
        .map_or(sql, |(select, _)| select)
        .replacen(select_found!(), "SELECT count(*) FROM contacts", 1);
    let values: Vec<(&str, &dyn ToSql)> = values
        .iter()
        .copied()
        .filter(|(name, _)| !matches!(*name, ":limit" | ":offset"))
        .collect();
    Ok(conn
        .prepare_cached(&select)?
        .query_row(values.as_slice(), |row| row.get(0))?)
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

/// The account's catalog as rows are rendered with it: tag names by id (when the columns show
/// tags) and the lists that exist. A deleted list or tag not yet taken off every contact
/// (`catalog_cleanup`) is in neither, so it is never shown.
struct Names {
    tags: HashMap<i64, String>,
    lists: HashSet<i64>,
}

impl Names {
    fn of(conn: &Connection, query: &ExportQuery) -> Result<Names> {
        Ok(Names {
            tags: if query.needs_tags() {
                contact_rows::tag_names(conn, query.account_id)?
            } else {
                HashMap::new()
            },
            lists: db::list_ids(conn, query.account_id)?.into_iter().collect(),
        })
    }
}

fn render(query: &ExportQuery, contact: &Found, names: &Names) -> Vec<String> {
    let list = |channel: Channel, state: MembershipState| -> String {
        join(
            contact
                .memberships
                .of(channel)
                .filter(|m| m.state == state && names.lists.contains(&m.list_id))
                .map(|m| m.list_id.to_string()),
        )
    };
    let times = |channel: Channel| -> String {
        join(
            contact
                .memberships
                .of(channel)
                .filter(|m| m.state == MembershipState::Active && names.lists.contains(&m.list_id))
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
                    Tags => contact_rows::names_of(&contact.tags, &names.tags).join(","),
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
