//! Per-block counts of what filters ask about (`block_counts`): how many of an account's
//! contacts in each block of 1024 ids are in a list (on either channel, or on one), have a tag,
//! or have an email or phone status. A count by list sums about a thousand rows per million
//! contacts instead of reading every contact, and a filtered export jumps to the block holding
//! its offset.
//!
//! The writer keeps them exact from the row writes themselves (`contact_rows::insert_contact`,
//! `save_contact`, `delete_contact` record each contact's facets before and after), gathered
//! per command and written once per (facet, block) when the command ends (`Db::finish`).

use crate::import_plan::Channel;
use crate::model::MembershipState;
use crate::store::contact_rows::{Found, found_columns, read_found_at};
use crate::store::packed::TagSet;
use rusqlite::Connection;
use std::collections::BTreeMap;

/// What is counted. Stored as `id * 8 + kind`, so that one account's counts for one facet are
/// a contiguous range of the primary key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Facet {
    /// In the list (active or unsubscribed) on either channel: exportContacts' `list_id`, and
    /// getContactCount without a type.
    List(i64),
    ListEmail(i64),
    ListPhone(i64),
    Tag(i64),
    EmailStatus(i64),
    PhoneStatus(i64),
}

impl Facet {
    pub fn code(self) -> i64 {
        let (id, kind) = match self {
            Facet::List(id) => (id, 0),
            Facet::ListEmail(id) => (id, 1),
            Facet::ListPhone(id) => (id, 2),
            Facet::Tag(id) => (id, 3),
            Facet::EmailStatus(code) => (code, 4),
            Facet::PhoneStatus(code) => (code, 5),
        };
        id * 8 + kind
    }

    /// The list facet for a channel, or for either.
    pub fn list(list_id: i64, channel: Option<Channel>) -> Facet {
        match channel {
            None => Facet::List(list_id),
            Some(Channel::Email) => Facet::ListEmail(list_id),
            Some(Channel::Phone) => Facet::ListPhone(list_id),
        }
    }

    /// The three facets of a list, for deleting its counts.
    pub fn of_list(list_id: i64) -> [Facet; 3] {
        [
            Facet::List(list_id),
            Facet::ListEmail(list_id),
            Facet::ListPhone(list_id),
        ]
    }
}

/// A contact's facets, sorted (codes), written into `out`.
pub fn of_contact(contact: &Found, out: &mut Vec<i64>) {
    out.clear();
    let mut last_list = None;
    for m in contact.memberships.all() {
        if !matches!(
            m.state,
            MembershipState::Active | MembershipState::Unsubscribed
        ) {
            continue;
        }
        out.push(Facet::list(m.list_id, Some(m.channel)).code());
        if last_list != Some(m.list_id) {
            out.push(Facet::List(m.list_id).code());
            last_list = Some(m.list_id);
        }
    }
    out.extend(contact.tags.ids().iter().map(|id| Facet::Tag(*id).code()));
    if contact.email.address.is_some()
        && let Some(status) = contact.email.status
    {
        out.push(Facet::EmailStatus(status).code());
    }
    if contact.phone.address.is_some()
        && let Some(status) = contact.phone.status
    {
        out.push(Facet::PhoneStatus(status).code());
    }
    out.sort_unstable();
    out.dedup();
}

/// Count changes gathered over a command: (account, facet code, block) → change.
#[derive(Default)]
pub struct FacetChanges {
    changes: foldhash::HashMap<(i64, i64, i64), i64>,
    /// The (account, block) changed last, and its changes by facet code, added to `changes`
    /// when another block is changed: a call's new contacts fill one block after another, and
    /// finding a facet among a few costs less than hashing each facet of each row.
    open: Option<(i64, i64)>,
    open_changes: Vec<(i64, i64)>,
    before: Vec<i64>,
    after: Vec<i64>,
}

/// Facets of the open block counted apart; more (an account with many lists and tags) are
/// counted in the map directly.
const OPEN_FACETS: usize = 32;

impl FacetChanges {
    /// Records that contact `id` of `account_id` went from `before` to `after` (None: it did
    /// not exist, or no longer does).
    pub fn record(
        &mut self,
        account_id: i64,
        id: i64,
        before: Option<&Found>,
        after: Option<&Found>,
    ) {
        let block = id >> 10;
        match before {
            Some(contact) => of_contact(contact, &mut self.before),
            None => self.before.clear(),
        }
        match after {
            Some(contact) => of_contact(contact, &mut self.after),
            None => self.after.clear(),
        }
        if self.before == self.after {
            return;
        }
        // Both sorted: one merge finds what went and what came.
        let (mut b, mut a) = (0, 0);
        while b < self.before.len() || a < self.after.len() {
            let (gone, came) = match (self.before.get(b), self.after.get(a)) {
                (Some(x), Some(y)) if x == y => {
                    b += 1;
                    a += 1;
                    continue;
                }
                (Some(x), Some(y)) if x < y => (Some(*x), None),
                (Some(_), Some(y)) => (None, Some(*y)),
                (Some(x), None) => (Some(*x), None),
                (None, Some(y)) => (None, Some(*y)),
                (None, None) => unreachable!("the loop ends first"),
            };
            if let Some(code) = gone {
                self.add(account_id, block, code, -1);
                b += 1;
            }
            if let Some(code) = came {
                self.add(account_id, block, code, 1);
                a += 1;
            }
        }
    }

    /// Records that contact `id` of `account_id` was created with `tags` and the other
    /// `facets` (as `of_contact` gives them, less tags): what `record(.., None, Some(contact))`
    /// records, without working the facets out again.
    pub fn record_new(&mut self, account_id: i64, id: i64, facets: &[i64], tags: &TagSet) {
        let block = id >> 10;
        for &code in facets {
            self.add(account_id, block, code, 1);
        }
        for &tag_id in tags.ids() {
            self.add(account_id, block, Facet::Tag(tag_id).code(), 1);
        }
    }

    fn add(&mut self, account_id: i64, block: i64, code: i64, change: i64) {
        if self.open != Some((account_id, block)) {
            self.close();
            self.open = Some((account_id, block));
        }
        if let Some((_, counted)) = self.open_changes.iter_mut().find(|(open, _)| *open == code) {
            *counted += change;
        } else if self.open_changes.len() < OPEN_FACETS {
            self.open_changes.push((code, change));
        } else {
            *self.changes.entry((account_id, code, block)).or_default() += change;
        }
    }

    /// Moves the open block's changes into the map.
    fn close(&mut self) {
        let Some((account_id, block)) = self.open.take() else {
            return;
        };
        for (code, change) in self.open_changes.drain(..) {
            *self.changes.entry((account_id, code, block)).or_default() += change;
        }
    }

    /// The non-zero changes, emptied out.
    pub fn take(&mut self) -> impl Iterator<Item = ((i64, i64, i64), i64)> + use<> {
        self.close();
        std::mem::take(&mut self.changes)
            .into_iter()
            .filter(|(_, change)| *change != 0)
    }
}

/// Every facet count, counted from the contacts' packed rows: what `block_counts` must hold
/// (less its zero rows). For the upgrade that creates the table, and for checking it.
pub fn count_all(conn: &Connection) -> rusqlite::Result<BTreeMap<(i64, i64, i64), i64>> {
    let mut counts = BTreeMap::new();
    let mut facets = Vec::new();
    let mut statement = conn.prepare(concat!(
        "SELECT account_id, ",
        found_columns!(),
        " FROM contacts"
    ))?;
    let mut rows = statement.query([])?;
    while let Some(row) = rows.next()? {
        let account_id: i64 = row.get(0)?;
        let contact = read_found_at(row, 1)?;
        of_contact(&contact, &mut facets);
        for facet in &facets {
            *counts
                .entry((account_id, *facet, contact.id >> 10))
                .or_default() += 1;
        }
    }
    Ok(counts)
}

/// What `block_counts` holds, zero rows left out.
pub fn stored(conn: &Connection) -> rusqlite::Result<BTreeMap<(i64, i64, i64), i64>> {
    let mut statement = conn.prepare(
        "SELECT account_id, facet, block, contacts FROM block_counts WHERE contacts <> 0",
    )?;
    let rows = statement.query_map([], |row| {
        Ok(((row.get(0)?, row.get(1)?, row.get(2)?), row.get(3)?))
    })?;
    rows.collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A contact with these tags and an email of this status.
    fn contact(tags: impl IntoIterator<Item = i64>, status: i64) -> Found {
        let mut found = Found::default();
        for tag in tags {
            found.tags.insert(tag);
        }
        found.email.address = Some("a@example.com".into());
        found.email.status = Some(status);
        found
    }

    /// The changes counted one by one in a map, as they were before the open block.
    fn expected(
        records: &[(i64, i64, Option<Found>, Option<Found>)],
    ) -> HashMap<(i64, i64, i64), i64> {
        let mut counts = HashMap::new();
        let (mut before, mut after) = (Vec::new(), Vec::new());
        for (account, id, old, new) in records {
            before.clear();
            after.clear();
            if let Some(old) = old {
                of_contact(old, &mut before);
            }
            if let Some(new) = new {
                of_contact(new, &mut after);
            }
            for code in &before {
                *counts.entry((*account, *code, id >> 10)).or_default() -= 1;
            }
            for code in &after {
                *counts.entry((*account, *code, id >> 10)).or_default() += 1;
            }
        }
        counts.retain(|_, change| *change != 0);
        counts
    }

    #[test]
    fn changes_sum_alike_across_blocks_accounts_and_many_facets() {
        let mut records = Vec::new();
        for i in 0..3000i64 {
            let account = 1 + i % 2;
            // Ids jump between blocks; a contact has up to 60 tags, past the open block's 32.
            let id = (i * 37) % 5000;
            let old = (i % 3 == 0).then(|| contact(0..(i % 7), 2));
            let new = (i % 5 != 0).then(|| contact((i % 60)..(i % 60 + i % 50), i % 4));
            records.push((account, id, old, new));
        }
        let mut changes = FacetChanges::default();
        for (account, id, old, new) in &records {
            changes.record(*account, *id, old.as_ref(), new.as_ref());
        }
        let counted: HashMap<_, _> = changes.take().collect();
        assert_eq!(counted, expected(&records));
        assert_eq!(changes.take().count(), 0);
    }

    #[test]
    fn a_new_contact_recorded_from_its_facets_and_tags_counts_as_recorded_whole() {
        let mut whole = FacetChanges::default();
        let mut from_parts = FacetChanges::default();
        for i in 0..2000i64 {
            let mut new = contact((i % 40)..(i % 40 + i % 9), i % 4);
            new.memberships.put(crate::store::packed::Membership {
                channel: Channel::Email,
                list_id: 1 + i % 3,
                state: MembershipState::Active,
                time: crate::model::Timestamp(1_700_000_000),
            });
            new.phone.address = (i % 2 == 0).then(|| "+15550001111".to_string());
            new.phone.status = Some(2);
            let id = i * 3;
            whole.record(1, id, None, Some(&new));
            let tags = std::mem::take(&mut new.tags);
            let mut facets = Vec::new();
            of_contact(&new, &mut facets);
            from_parts.record_new(1, id, &facets, &tags);
        }
        let whole: HashMap<_, _> = whole.take().collect();
        let from_parts: HashMap<_, _> = from_parts.take().collect();
        assert!(
            whole
                .keys()
                .any(|(_, code, _)| *code == Facet::Tag(5).code())
        );
        assert_eq!(from_parts, whole);
    }
}
