//! importContacts inside the writer's transaction: the steps of spec §5.4 that need the
//! database's current state. Rows arrive checked (see `import_plan`); here a row can still be
//! rejected for what only the database knows, and such a row changes nothing.

use crate::error::{Error, Result};
use crate::import_plan::{
    Channel, ChannelChanges, ImportPlan, ListChanges, PlannedRow, RowChanges, RowNote, Verdict,
    too_many_tags,
};
use crate::model::MAX_TAGS_PER_CONTACT;
use crate::model::{
    Availability, Email, EmailStatus, MembershipState, Phone, PhoneStatus, StatusCode, Timestamp,
};
use crate::store::contact_rows::{
    self, ChannelColumns, Db, Found, NewContacts, NewRow, Owner, PackedColumns, RUN_ROWS, TagIds,
};
use crate::store::facets;
use crate::store::packed::{Membership, Memberships, TagSet};
use rusqlite::{Connection, OptionalExtension, params};

/// One entry of the answer's `log`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEntry {
    pub index: u64,
    pub note: RowNote,
}

/// The answer of importContacts (§5.5), before it is put on the wire.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportOutcome {
    pub total: usize,
    pub inserted: usize,
    pub updated: usize,
    pub deleted: usize,
    pub new_emails: usize,
    pub invalid: usize,
    pub log: Vec<LogEntry>,
    /// Some insert took the account past its contact limit.
    pub overlimit: bool,
}

impl ImportOutcome {
    fn log(&mut self, index: u64, note: RowNote) {
        self.log.push(LogEntry { index, note });
    }

    /// Counts a row refused, and logs why.
    fn rejected(&mut self, index: u64, note: RowNote) {
        self.invalid += 1;
        self.log(index, note);
    }

    /// Counts what an applied row did, and logs its warnings.
    fn record(&mut self, index: u64, (applied, warnings, email_is_new): AppliedRow) {
        match applied {
            Applied::Inserted => self.inserted += 1,
            Applied::Updated => self.updated += 1,
            Applied::Deleted => self.deleted += 1,
        }
        if email_is_new {
            self.new_emails += 1;
        }
        for warning in warnings {
            self.overlimit |= warning.code == "overlimit";
            self.log(index, warning);
        }
    }
}

/// What an applied row did.
enum Applied {
    Inserted,
    Updated,
    Deleted,
}

/// A row as a new contact, built with its facets when the call is planned, on the connection's
/// thread: the writer then only inserts it (`CallState::insert_run`), which took a tenth of
/// its time per new contact. Its tags are left out, since only the writer can find their ids.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewContact {
    contact: Found,
    /// Its facets (`facets::of_contact`), tags left out.
    facets: Vec<i64>,
    packed: PackedColumns,
}

impl NewContact {
    fn row<'a>(&'a self, tags: &'a TagSet) -> NewRow<'a> {
        NewRow {
            contact: &self.contact,
            tags,
            facets: &self.facets,
            packed: &self.packed,
        }
    }
}

/// The row's contact were it new, with the call's time `now`; none for a row that deletes.
pub fn new_contact(row: &RowChanges, now: Timestamp) -> Option<Box<NewContact>> {
    if row.delete {
        return None;
    }
    // Whether lists are overwritten matters only for memberships a contact already has.
    let rules = Rules {
        now,
        overwrite_lists: false,
    };
    let mut warnings = Vec::new();
    let contact = rules.built(Found::default(), row, None, &mut warnings);
    debug_assert!(warnings.is_empty(), "a new contact has no status to keep");
    let mut facets = Vec::new();
    facets::of_contact(&contact, &mut facets);
    // Encoding cannot fail: the packed sets encode into a byte vector.
    let packed = PackedColumns::of(&contact).ok()?;
    Some(Box::new(NewContact {
        contact,
        facets,
        packed,
    }))
}

/// How a row's changes apply to a contact (§5.4 steps 1 and 3 to 5).
struct Rules {
    /// The call's time: the default of add and subscribe times.
    now: Timestamp,
    overwrite_lists: bool,
}

/// The state one call carries from row to row.
struct CallState<'a> {
    db: Db<'a>,
    account_id: i64,
    rules: Rules,
    overwrite_tags: bool,
    lists: foldhash::HashSet<i64>,
    tag_ids: TagIds,
    new_contacts: NewContacts,
    contact_limit: Option<i64>,
    contact_count: i64,
    /// The last row applied created a contact: the next one is tried as a new contact first.
    expect_new: bool,
    /// How many rows `insert_run` tries at once next: doubled after each run inserted, back to
    /// one when a run finds an address taken, so that a call of known contacts wastes at most a
    /// try of two rows.
    run_len: usize,
}

pub fn apply_import(conn: &Connection, plan: &ImportPlan) -> Result<ImportOutcome> {
    let account_id = plan.account_id;
    check_fields_exist(conn, account_id, &plan.field_ids)?;
    // No row: a reset gave the account a new id after this call was planned. The call then
    // lands before the reset, on the old id, and the reset's clean-up deletes it with the rest.
    let contact_limit: Option<i64> = conn
        .prepare_cached("SELECT contact_limit FROM accounts WHERE id = ?1")?
        .query_row([account_id], |row| row.get(0))
        .optional()?
        .flatten();
    let contact_count = match contact_limit {
        Some(_) => crate::store::db::contact_total(conn, account_id)?,
        None => 0,
    };
    let mut state = CallState {
        db: Db::new(conn),
        account_id,
        rules: Rules {
            now: plan.now,
            overwrite_lists: plan.flags.overwrite_lists,
        },
        overwrite_tags: plan.flags.overwrite_tags,
        lists: crate::store::db::list_ids(conn, account_id)?
            .into_iter()
            .collect(),
        tag_ids: TagIds::default(),
        new_contacts: NewContacts::default(),
        contact_limit,
        contact_count,
        expect_new: true,
        run_len: 2,
    };
    let mut outcome = ImportOutcome {
        total: plan.rows.len(),
        ..ImportOutcome::default()
    };
    let mut at = 0;
    while at < plan.rows.len() {
        if let Some(inserted) = state.insert_run(&plan.rows[at..])? {
            let count = inserted.len();
            for (row, applied) in plan.rows[at..].iter().zip(inserted) {
                outcome.record(row.index, applied);
            }
            at += count;
            continue;
        }
        let row = &plan.rows[at];
        at += 1;
        match &row.verdict {
            Verdict::Reject(note) => outcome.rejected(row.index, note.clone()),
            Verdict::Duplicate(note) => outcome.log(row.index, note.clone()),
            Verdict::Apply(changes) => match state.apply_row(changes)? {
                Err(note) => outcome.rejected(row.index, note),
                Ok(applied) => outcome.record(row.index, applied),
            },
        }
    }
    state.new_contacts.count(&state.db)?;
    state.db.finish()?;
    Ok(outcome)
}

/// A field deleted between planning and writing must not get values.
fn check_fields_exist(conn: &Connection, account_id: i64, field_ids: &[i64]) -> Result<()> {
    let mut statement =
        conn.prepare_cached("SELECT 1 FROM fields WHERE id = ?1 AND account_id = ?2")?;
    for id in field_ids {
        if !statement.exists(params![id, account_id])? {
            return Err(Error::invalid_arg(
                "field_names: a user field was deleted while the call was being read",
            ));
        }
    }
    Ok(())
}

/// What an applied row did, the warnings it logs, and whether it left an email new.
type AppliedRow = (Applied, Vec<RowNote>, bool);
type RowResult = std::result::Result<AppliedRow, RowNote>;

impl CallState<'_> {
    /// Applies one checked row by looking its contact up. The outer `Result` is a fault of the
    /// server; the inner one a rejection of the row, decided before anything of it is written.
    fn apply_row(&mut self, row: &RowChanges) -> Result<RowResult> {
        let applied = self.apply_found(row)?;
        self.expect_new = matches!(applied, Ok((Applied::Inserted, _, _)));
        Ok(applied)
    }

    /// The rows ahead, up to `run_len` of them, inserted as new contacts without looking their
    /// addresses up (`contact_rows::insert_new_run`), while rows keep creating contacts: an
    /// import of new contacts (the bulk of a first sync) then costs what the INSERT alone costs,
    /// since the INSERT's own uniqueness check is the lookup. What each row did, or `None` with
    /// nothing written when the next row needs what only `apply_found` decides (a delete, an
    /// unknown list, a tag to create, too many tags) or an address turns out taken; the rows
    /// are then applied one by one, with the same answer.
    fn insert_run(&mut self, rows: &[PlannedRow]) -> Result<Option<Vec<AppliedRow>>> {
        if !self.expect_new {
            return Ok(None);
        }
        let mut run: Vec<(&NewContact, TagSet)> = Vec::with_capacity(self.run_len);
        for row in rows.iter().take(self.run_len) {
            let (Verdict::Apply(changes), Some(as_new)) = (&row.verdict, row.as_new.as_deref())
            else {
                break;
            };
            match self.known_tags(changes)? {
                Some(tags) => run.push((as_new, tags)),
                None => break,
            }
        }
        if run.is_empty() {
            return Ok(None);
        }
        let new_rows: Vec<NewRow> = run.iter().map(|(as_new, tags)| as_new.row(tags)).collect();
        let Some(first) = contact_rows::insert_new_run(&self.db, self.account_id, &new_rows)?
        else {
            // Looked up one by one until a row creates a contact again.
            self.expect_new = false;
            self.run_len = 1;
            return Ok(None);
        };
        self.run_len = (self.run_len * 2).min(RUN_ROWS);
        let applied = run
            .iter()
            .zip(first..)
            .map(|((as_new, _), id)| self.inserted(id, &as_new.contact, Vec::new()))
            .collect();
        Ok(Some(applied))
    }

    /// The tag ids of a row that can be inserted as a new contact without `apply_found`: all
    /// its lists exist and all its tags exist, no more than a contact may have.
    fn known_tags(&mut self, row: &RowChanges) -> Result<Option<TagSet>> {
        if self.unknown_list(row).is_some() {
            return Ok(None);
        }
        match &row.tags {
            Some(given) => match self.tag_ids.known(&self.db, self.account_id, given)? {
                Some(tags) if tags.len() <= MAX_TAGS_PER_CONTACT => Ok(Some(tags)),
                _ => Ok(None),
            },
            None => Ok(Some(TagSet::default())),
        }
    }

    /// A row applied to the contact its addresses find, or to a new one if they find none.
    fn apply_found(&mut self, row: &RowChanges) -> Result<RowResult> {
        let owner = contact_rows::find_owner(
            &self.db,
            self.account_id,
            row.email.as_ref().map(Email::as_str),
            row.phone.as_ref().map(Phone::as_str),
        )?;
        let found = match owner {
            Owner::TwoContacts => {
                return Ok(Err(RowNote::new(
                    "owned_by_different_subscribers",
                    crate::store::apply_contact::two_owners(
                        row.email.as_ref().map_or("", Email::as_str),
                        row.phone.as_ref().map_or("", Phone::as_str),
                    ),
                )));
            }
            Owner::Contact(contact) => Some(*contact),
            Owner::Nobody => None,
        };
        if row.delete {
            if let Some(contact) = found {
                contact_rows::delete_contact(&self.db, self.account_id, &contact)?;
                self.contact_count -= 1;
            }
            return Ok(Ok((Applied::Deleted, Vec::new(), false)));
        }
        if let Some(note) = self.unknown_list(row) {
            return Ok(Err(note));
        }
        // A new contact starts as an empty row with id 0 and is built like an existing one.
        let before = found.unwrap_or_default();
        let tags = match &row.tags {
            Some(given) => {
                let applied = self.tag_ids.applied(
                    &self.db,
                    self.account_id,
                    &before.tags,
                    given,
                    self.overwrite_tags,
                )?;
                match applied {
                    Some(tags) => Some(tags),
                    None => return Ok(Err(too_many_tags())),
                }
            }
            None => None,
        };
        let mut warnings = Vec::new();
        let after = self.rules.built(before.clone(), row, tags, &mut warnings);
        if before.id == 0 {
            let id = contact_rows::insert_contact(&self.db, self.account_id, &after)?;
            return Ok(Ok(self.inserted(id, &after, warnings)));
        }
        contact_rows::save_contact(&self.db, self.account_id, &before, &after)?;
        let email_is_new = after.email.status == Some(EmailStatus::New.code());
        Ok(Ok((Applied::Updated, warnings, email_is_new)))
    }

    /// Counts a contact just created, with the tariff's warning when it is past the limit.
    fn inserted(
        &mut self,
        id: i64,
        contact: &Found,
        mut warnings: Vec<RowNote>,
    ) -> (Applied, Vec<RowNote>, bool) {
        self.new_contacts.add(self.account_id, id);
        self.contact_count += 1;
        if self
            .contact_limit
            .is_some_and(|limit| self.contact_count > limit)
        {
            warnings.push(RowNote::new(
                "overlimit",
                "The number of contacts for the current tariff plan has been exceeded (but the string has been added)",
            ));
        }
        let email_is_new = contact.email.status == Some(EmailStatus::New.code());
        (Applied::Inserted, warnings, email_is_new)
    }

    /// The first list id of an applied channel that is not one of the account's lists.
    fn unknown_list(&self, row: &RowChanges) -> Option<RowNote> {
        let channels = [
            (row.email.is_some(), &row.email_changes.lists, "email"),
            (row.phone.is_some(), &row.phone_changes.lists, "phone"),
        ];
        channels
            .into_iter()
            .filter(|(applied, _, _)| *applied)
            .find_map(|(_, lists, prefix)| {
                lists
                    .list_ids()
                    .find(|id| !self.lists.contains(id))
                    .map(|id| {
                        RowNote::new(
                            "invalid_list_id",
                            format!("{prefix} list columns: list {id} does not exist"),
                        )
                    })
            })
    }
}

impl Rules {
    /// The contact with the row's channels, lists and values applied, and its tags replaced by
    /// `tags` when the row has a tags cell.
    fn built(
        &self,
        mut after: Found,
        row: &RowChanges,
        tags: Option<TagSet>,
        warnings: &mut Vec<RowNote>,
    ) -> Found {
        if let Some(tags) = tags {
            after.tags = tags;
        }
        if let Some(address) = &row.email {
            after.email = self.channel_update(
                Channel::Email,
                &after.email,
                &row.email_changes,
                address.as_str(),
                warnings,
            );
            self.apply_lists(
                &mut after.memberships,
                Channel::Email,
                &row.email_changes.lists,
            );
        }
        if let Some(address) = &row.phone {
            after.phone = self.channel_update(
                Channel::Phone,
                &after.phone,
                &row.phone_changes,
                address.as_str(),
                warnings,
            );
            self.apply_lists(
                &mut after.memberships,
                Channel::Phone,
                &row.phone_changes.lists,
            );
        }
        for (field_id, value) in &row.fields {
            after.fields.set(*field_id, value);
        }
        after
    }

    /// A channel's columns as a new channel gets them: the given values, or the defaults.
    fn new_channel(
        &self,
        channel: Channel,
        given: &ChannelChanges,
        address: &str,
    ) -> ChannelColumns {
        let default_status = match channel {
            Channel::Email => EmailStatus::New.code(),
            Channel::Phone => PhoneStatus::Active.code(),
        };
        ChannelColumns {
            address: Some(address.to_string()),
            status: Some(given.status.unwrap_or(default_status)),
            availability: Some(given.availability.unwrap_or(Availability::Available).code()),
            add_time: Some(given.add_time.unwrap_or(self.now).0),
            request_ip: given.request_ip.clone(),
            confirm_time: given.confirm_time.map(|t| t.0),
            confirm_ip: given.confirm_ip.clone(),
        }
    }

    /// A channel's columns once the row is applied (§5.4 steps 1, 3 and 4). A channel the
    /// contact lacks is added as for a new contact; one it has keeps what the row does not give,
    /// and its status follows the rule of §5.4 step 4. A different address of this kind
    /// replaces the old one (the person changed it).
    fn channel_update(
        &self,
        channel: Channel,
        current: &ChannelColumns,
        given: &ChannelChanges,
        address: &str,
        warnings: &mut Vec<RowNote>,
    ) -> ChannelColumns {
        if current.address.is_none() {
            return self.new_channel(channel, given, address);
        }
        let mut status = None;
        if let (Some(wanted), Some(current)) = (given.status, current.status) {
            if StatusCode(current).may_be_replaced() {
                status = Some(wanted);
            } else if wanted != current {
                warnings.push(RowNote::new(
                    "status_not_changed",
                    format!(
                        "The status of {address} stays \"{}\"",
                        status_name(channel, current)
                    ),
                ));
            }
        }
        current.overlaid(&ChannelColumns {
            address: Some(address.to_string()),
            status,
            availability: given.availability.map(Availability::code),
            add_time: given.add_time.map(|t| t.0),
            request_ip: given.request_ip.clone(),
            confirm_time: given.confirm_time.map(|t| t.0),
            confirm_ip: given.confirm_ip.clone(),
        })
    }

    /// §5.4 step 5 for one channel.
    fn apply_lists(&self, memberships: &mut Memberships, channel: Channel, lists: &ListChanges) {
        if !lists.given {
            return;
        }
        let current: Vec<Membership> = memberships.of(channel).copied().collect();
        let current_of = |list_id: i64| current.iter().find(|m| m.list_id == list_id);
        let mut wanted: Vec<(i64, MembershipState, Timestamp)> = Vec::new();
        for (list_id, given_time) in &lists.subscribed {
            let kept_time = match current_of(*list_id) {
                Some(m) if m.state == MembershipState::Active && !self.overwrite_lists => {
                    Some(m.time)
                }
                _ => None,
            };
            let time = given_time.or(kept_time).unwrap_or(self.now);
            wanted.push((*list_id, MembershipState::Active, time));
        }
        for (ids, state) in [
            (&lists.unsubscribed, MembershipState::Unsubscribed),
            (&lists.excluded, MembershipState::Excluded),
        ] {
            for list_id in ids {
                let time = current_of(*list_id).map_or(self.now, |m| m.time);
                wanted.push((*list_id, state, time));
            }
        }
        if self.overwrite_lists {
            memberships.retain(|m| m.channel != channel || wanted.iter().any(|w| w.0 == m.list_id));
        }
        for (list_id, state, time) in wanted {
            memberships.put(Membership {
                channel,
                list_id,
                state,
                time,
            });
        }
    }
}

fn status_name(channel: Channel, code: i64) -> &'static str {
    match channel {
        Channel::Email => EmailStatus::from_code(code).map_or("unknown", EmailStatus::wire),
        Channel::Phone => PhoneStatus::from_code(code).map_or("unknown", PhoneStatus::wire),
    }
}
