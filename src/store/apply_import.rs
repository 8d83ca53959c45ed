//! importContacts inside the writer's transaction: the steps of spec §5.4 that need the
//! database's current state. Rows arrive checked (see `import_plan`); here a row can still be
//! rejected for what only the database knows, and such a row changes nothing.

use crate::error::{Error, Result};
use crate::import_plan::{
    Channel, ChannelChanges, ImportPlan, ListChanges, RowChanges, RowNote, Verdict, too_many_tags,
};
use crate::model::{
    Availability, Email, EmailStatus, MAX_TAGS_PER_CONTACT, MembershipState, Phone, PhoneStatus,
    StatusCode, Timestamp,
};
use crate::store::contact_rows::{
    self, ChannelColumns, Db, Found, NewContacts, TagIds, union_ignoring_case,
};
use rusqlite::types::ToSql;
use rusqlite::{Connection, params};
use std::collections::{HashMap, HashSet};

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

/// What an applied row did.
enum Applied {
    Inserted,
    Updated,
    Deleted,
}

/// The state one call carries from row to row.
struct CallState<'a> {
    conn: &'a Connection,
    db: Db<'a>,
    account_id: i64,
    now: Timestamp,
    overwrite_tags: bool,
    overwrite_lists: bool,
    lists: HashSet<i64>,
    tag_ids: TagIds,
    fresh: FreshRows,
    new_contacts: NewContacts,
    contact_limit: Option<i64>,
    contact_count: i64,
}

pub fn apply_import(conn: &Connection, plan: &ImportPlan, now: Timestamp) -> Result<ImportOutcome> {
    let account_id = plan.account_id;
    check_fields_exist(conn, account_id, &plan.field_ids)?;
    let contact_limit: Option<i64> = conn
        .prepare_cached("SELECT contact_limit FROM accounts WHERE id = ?1")?
        .query_row([account_id], |row| row.get(0))?;
    let contact_count = match contact_limit {
        Some(_) => conn
            .prepare_cached("SELECT count(*) FROM contacts WHERE account_id = ?1")?
            .query_row([account_id], |row| row.get(0))?,
        None => 0,
    };
    let mut state = CallState {
        conn,
        db: Db::new(conn),
        account_id,
        now,
        overwrite_tags: plan.flags.overwrite_tags,
        overwrite_lists: plan.flags.overwrite_lists,
        lists: crate::store::db::list_ids(conn, account_id)?
            .into_iter()
            .collect(),
        tag_ids: TagIds::default(),
        fresh: FreshRows::default(),
        new_contacts: NewContacts::default(),
        contact_limit,
        contact_count,
    };
    let mut outcome = ImportOutcome {
        total: plan.rows.len(),
        ..ImportOutcome::default()
    };
    for row in &plan.rows {
        let log = |note: RowNote, outcome: &mut ImportOutcome| {
            outcome.log.push(LogEntry {
                index: row.index,
                note,
            })
        };
        match &row.verdict {
            Verdict::Reject(note) => {
                outcome.invalid += 1;
                log(note.clone(), &mut outcome);
            }
            Verdict::Duplicate(note) => log(note.clone(), &mut outcome),
            Verdict::Apply(changes) => match state.apply_row(changes)? {
                Err(note) => {
                    outcome.invalid += 1;
                    log(note, &mut outcome);
                }
                Ok((applied, warnings, email_is_new)) => {
                    match applied {
                        Applied::Inserted => outcome.inserted += 1,
                        Applied::Updated => outcome.updated += 1,
                        Applied::Deleted => outcome.deleted += 1,
                    }
                    if email_is_new {
                        outcome.new_emails += 1;
                    }
                    for warning in warnings {
                        outcome.overlimit |= warning.code == "overlimit";
                        log(warning, &mut outcome);
                    }
                }
            },
        }
    }
    state.fresh.insert(&state.db)?;
    state.new_contacts.count(&state.db)?;
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

type RowResult = std::result::Result<(Applied, Vec<RowNote>, bool), RowNote>;

impl CallState<'_> {
    /// Applies one checked row. The outer `Result` is a fault of the server; the inner one a
    /// rejection of the row, decided before anything of it is written.
    fn apply_row(&mut self, row: &RowChanges) -> Result<RowResult> {
        let (by_email, by_phone) = contact_rows::find_by_addresses(
            &self.db,
            self.account_id,
            row.email.as_ref().map(Email::as_str),
            row.phone.as_ref().map(Phone::as_str),
        )?;
        let found = match (by_email, by_phone) {
            (Some(a), Some(b)) if a.id != b.id => {
                return Ok(Err(RowNote::new(
                    "owned_by_different_subscribers",
                    "The email and the phone belong to two different contacts",
                )));
            }
            (Some(a), _) => Some(a),
            (None, b) => b,
        };
        if row.delete {
            if let Some(contact) = found {
                contact_rows::delete_contact(&self.db, contact.id)?;
                self.contact_count -= 1;
            }
            return Ok(Ok((Applied::Deleted, Vec::new(), false)));
        }
        if let Some(note) = self.unknown_list(row) {
            return Ok(Err(note));
        }
        let existing_tags = match &found {
            Some(contact) if row.tags.is_some() => {
                contact_rows::tags_with_ids(&self.db, contact.id)?
            }
            _ => Vec::new(),
        };
        let final_tags = row.tags.as_ref().map(|given| {
            if self.overwrite_tags {
                given.clone()
            } else {
                let names: Vec<String> =
                    existing_tags.iter().map(|(_, name)| name.clone()).collect();
                union_ignoring_case(&names, given)
            }
        });
        if final_tags
            .as_ref()
            .is_some_and(|tags| tags.len() > MAX_TAGS_PER_CONTACT)
        {
            return Ok(Err(too_many_tags()));
        }

        let mut warnings = Vec::new();
        let (contact_id, applied, email_status) = match found {
            None => {
                let (id, email_status) = self.insert_contact(row)?;
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
                (id, Applied::Inserted, email_status)
            }
            Some(contact) => {
                let email_status = self.update_contact(&contact, row, &mut warnings)?;
                (contact.id, Applied::Updated, email_status)
            }
        };
        // A contact created by this row has nothing yet to read or clear.
        let fresh = matches!(applied, Applied::Inserted);
        if row.email.is_some() {
            self.apply_lists(contact_id, Channel::Email, &row.email_changes.lists, fresh)?;
        }
        if row.phone.is_some() {
            self.apply_lists(contact_id, Channel::Phone, &row.phone_changes.lists, fresh)?;
        }
        if let Some(tags) = final_tags {
            if fresh {
                for name in &tags {
                    let tag_id = self.tag_ids.id(&self.db, self.account_id, name)?;
                    self.fresh.tags.push([contact_id, tag_id]);
                }
            } else {
                // Only the difference is written: a re-sync of unchanged tags writes nothing.
                let mut wanted = Vec::with_capacity(tags.len());
                for name in &tags {
                    wanted.push(self.tag_ids.id(&self.db, self.account_id, name)?);
                }
                for (tag_id, _) in existing_tags.iter().filter(|(id, _)| !wanted.contains(id)) {
                    contact_rows::remove_tag(&self.db, contact_id, *tag_id)?;
                }
                for tag_id in wanted
                    .iter()
                    .filter(|id| !existing_tags.iter().any(|(e, _)| e == *id))
                {
                    contact_rows::add_tag(&self.db, contact_id, *tag_id)?;
                }
            }
        }
        if fresh {
            for (field_id, value) in row.fields.iter().filter(|(_, v)| !v.is_empty()) {
                self.fresh
                    .fields
                    .push((contact_id, *field_id, value.clone()));
            }
        } else if !row.fields.is_empty() {
            // Likewise for values: read once, write what differs.
            let current = contact_rows::field_values(&self.db, contact_id)?;
            for (field_id, value) in &row.fields {
                let unchanged = match current.get(field_id) {
                    Some(old) => old == value,
                    None => value.is_empty(),
                };
                if !unchanged {
                    contact_rows::set_field(&self.db, contact_id, *field_id, value)?;
                }
            }
        }
        if row
            .email
            .as_ref()
            .is_some_and(|email| email.is_role_address())
        {
            warnings.insert(
                0,
                RowNote::new(
                    "role_address",
                    "The address is a role address, which harms deliverability",
                ),
            );
        }
        let email_is_new = email_status == Some(EmailStatus::New.code());
        Ok(Ok((applied, warnings, email_is_new)))
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

    /// Creates the contact with the row's channels (§5.4 step 3); returns its id and email status.
    fn insert_contact(&mut self, row: &RowChanges) -> Result<(i64, Option<i64>)> {
        let email = row
            .email
            .as_ref()
            .map(|e| self.new_channel(Channel::Email, &row.email_changes, e.as_str()));
        let phone = row
            .phone
            .as_ref()
            .map(|p| self.new_channel(Channel::Phone, &row.phone_changes, p.as_str()));
        let (e, p) = (email.unwrap_or_default(), phone.unwrap_or_default());
        self.db
            .stmt(
                "INSERT INTO contacts (account_id,
                    email, email_status, email_availability, email_add_time, email_request_ip,
                    email_confirm_time, email_confirm_ip,
                    phone, phone_status, phone_availability, phone_add_time, phone_request_ip)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            )?
            .execute(params![
                self.account_id,
                e.address,
                e.status,
                e.availability,
                e.add_time,
                e.request_ip,
                e.confirm_time,
                e.confirm_ip,
                p.address,
                p.status,
                p.availability,
                p.add_time,
                p.request_ip
            ])?;
        let id = self.conn.last_insert_rowid();
        self.new_contacts.add(self.account_id, id);
        Ok((id, e.status))
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

    /// Updates an existing contact's channels (§5.4 steps 1 and 4); returns its email status.
    /// The row is written only when something in it changes.
    fn update_contact(
        &self,
        contact: &Found,
        row: &RowChanges,
        warnings: &mut Vec<RowNote>,
    ) -> Result<Option<i64>> {
        let mut email = contact.email.clone();
        if let Some(address) = &row.email {
            let changes = self.channel_update(
                Channel::Email,
                &contact.email,
                &row.email_changes,
                address.as_str(),
                warnings,
            );
            email = contact.email.overlaid(&changes);
        }
        let mut phone = contact.phone.clone();
        if let Some(address) = &row.phone {
            let changes = self.channel_update(
                Channel::Phone,
                &contact.phone,
                &row.phone_changes,
                address.as_str(),
                warnings,
            );
            phone = contact.phone.overlaid(&changes);
        }
        if email != contact.email || phone != contact.phone {
            contact_rows::update_channels(&self.db, contact.id, &email, &phone)?;
        }
        Ok(email.status)
    }

    /// The values to write on an existing contact's channel. A channel it lacks is added as for a
    /// new contact; one it has keeps what the row does not give, and its status follows the rule
    /// of §5.4 step 4. A different address of this kind is replaced (the person changed it).
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
        ChannelColumns {
            address: Some(address.to_string()),
            status,
            availability: given.availability.map(Availability::code),
            add_time: given.add_time.map(|t| t.0),
            request_ip: given.request_ip.clone(),
            confirm_time: given.confirm_time.map(|t| t.0),
            confirm_ip: given.confirm_ip.clone(),
        }
    }

    /// §5.4 step 5 for one channel. A fresh contact's memberships are queued for the call's
    /// batched inserts; an existing one's are written at once.
    fn apply_lists(
        &mut self,
        contact_id: i64,
        channel: Channel,
        lists: &ListChanges,
        fresh: bool,
    ) -> Result<()> {
        if !lists.given {
            return Ok(());
        }
        let current = if fresh {
            HashMap::new()
        } else {
            contact_rows::memberships(&self.db, contact_id, channel)?
        };
        let mut wanted: Vec<(i64, MembershipState, Timestamp)> = Vec::new();
        for (list_id, given_time) in &lists.subscribed {
            let kept_time = match current.get(list_id) {
                Some((MembershipState::Active, time)) if !self.overwrite_lists => Some(*time),
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
                let time = current.get(list_id).map(|(_, t)| *t).unwrap_or(self.now);
                wanted.push((*list_id, state, time));
            }
        }
        if self.overwrite_lists {
            for list_id in current
                .keys()
                .filter(|id| !wanted.iter().any(|w| w.0 == **id))
            {
                contact_rows::remove_membership(&self.db, contact_id, channel, *list_id)?;
            }
        }
        for (list_id, state, time) in wanted {
            if fresh {
                let row = [contact_id, channel.code(), list_id, state.code(), time.0];
                self.fresh.memberships.push(row);
            } else if current.get(&list_id) != Some(&(state, time)) {
                contact_rows::put_membership(&self.db, contact_id, channel, list_id, state, time)?;
            }
        }
        Ok(())
    }
}

/// Rows belonging to contacts this call created, inserted together at the end of the call with
/// multi-row statements. A created contact's addresses appear in no later row of the call
/// (duplicates are skipped), so no later row can reach it, and deferring is invisible.
#[derive(Default)]
struct FreshRows {
    /// contact, channel, list, state, subscribed at.
    memberships: Vec<[i64; 5]>,
    /// contact, tag.
    tags: Vec<[i64; 2]>,
    /// contact, field, value.
    fields: Vec<(i64, i64, String)>,
}

impl FreshRows {
    fn insert(&self, db: &Db) -> Result<()> {
        let memberships: Vec<[&dyn ToSql; 5]> = self
            .memberships
            .iter()
            .map(|[a, b, c, d, e]| [a as &dyn ToSql, b, c, d, e])
            .collect();
        contact_rows::insert_rows(
            db,
            "INSERT INTO memberships (contact_id, channel, list_id, state, subscribed_at)",
            &memberships,
        )?;
        let tags: Vec<[&dyn ToSql; 2]> = self
            .tags
            .iter()
            .map(|[a, b]| [a as &dyn ToSql, b])
            .collect();
        contact_rows::insert_rows(
            db,
            "INSERT OR IGNORE INTO contact_tags (contact_id, tag_id)",
            &tags,
        )?;
        let fields: Vec<[&dyn ToSql; 3]> = self
            .fields
            .iter()
            .map(|(a, b, c)| [a as &dyn ToSql, b, c])
            .collect();
        contact_rows::insert_rows(
            db,
            "INSERT INTO field_values (contact_id, field_id, value)",
            &fields,
        )
    }
}

fn status_name(channel: Channel, code: i64) -> &'static str {
    match channel {
        Channel::Email => EmailStatus::from_code(code).map_or("unknown", EmailStatus::wire),
        Channel::Phone => PhoneStatus::from_code(code).map_or("unknown", PhoneStatus::wire),
    }
}
