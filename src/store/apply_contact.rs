//! subscribe, exclude and unsubscribe inside the writer's transaction (spec §7). A refusal found
//! part-way returns an error, and the writer rolls the command's savepoint back whole.

use crate::error::{Error, Result};
use crate::import_plan::Channel;
use crate::model::{
    Availability, Email, EmailStatus, MAX_TAGS_PER_CONTACT, MembershipState, Phone, PhoneStatus,
    Timestamp,
};
use crate::store::contact_rows::{
    self, ChannelColumns, Db, Found, NewContacts, TagIds, union_ignoring_case,
};
use crate::store::db;
use rusqlite::{Connection, params};

/// subscribe's `double_optin`, as its effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptIn {
    /// `0`: a new address is `invited`, its email memberships `invited` until confirmed.
    Invite,
    /// `3` (and the legacy `1`, `2`): memberships `active` at once.
    Confirmed,
    /// `4`: `Confirmed` for an address that exists as `new` or `active`, else `Invite`.
    ConfirmedIfKnown,
}

/// subscribe's `overwrite`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overwrite {
    /// `0`: only fields without a value are set; tags are added.
    Missing,
    /// `1`: fields and tags replaced whole; lists not in `list_ids` left.
    All,
    /// `2`: the given fields replaced, the others kept; tags replaced only when given.
    Given,
}

/// A subscribe call, checked.
#[derive(Debug)]
pub struct SubscribePlan {
    pub account_id: i64,
    pub list_ids: Vec<i64>,
    pub email: Option<Email>,
    pub phone: Option<Phone>,
    /// User-field values by field id.
    pub fields: Vec<(i64, String)>,
    pub tags: Option<Vec<String>>,
    pub opt_in: OptIn,
    pub overwrite: Overwrite,
}

pub fn apply_subscribe(conn: &Connection, plan: &SubscribePlan, now: Timestamp) -> Result<i64> {
    let db = &Db::new(conn);
    let account_id = plan.account_id;
    let lists = db::list_ids(conn, account_id)?;
    if let Some(missing) = plan.list_ids.iter().find(|id| !lists.contains(id)) {
        return Err(Error::invalid_arg(format!("list_ids: no list {missing}")));
    }
    let (by_email, by_phone) = contact_rows::find_by_addresses(
        db,
        account_id,
        plan.email.as_ref().map(Email::as_str),
        plan.phone.as_ref().map(Phone::as_str),
    )?;
    let found = match (by_email, by_phone) {
        (Some(a), Some(b)) if a.id != b.id => {
            return Err(Error::unspecified(
                "The email and the phone belong to two different contacts",
            ));
        }
        (Some(a), _) => Some(a),
        (None, b) => b,
    };
    let known_email_status = found
        .as_ref()
        .filter(|f| f.email.address.as_deref() == plan.email.as_ref().map(Email::as_str))
        .and_then(|f| f.email.status);
    let invite = match plan.opt_in {
        OptIn::Confirmed => false,
        OptIn::Invite => true,
        OptIn::ConfirmedIfKnown => !matches!(
            known_email_status.and_then(EmailStatus::from_code),
            Some(EmailStatus::New | EmailStatus::Active)
        ),
    };
    let contact_id = match &found {
        Some(contact) => {
            add_channels(db, contact, plan, invite, now)?;
            contact.id
        }
        None => insert_contact(db, plan, invite, now)?,
    };

    if plan.email.is_some() {
        let state = if invite {
            MembershipState::Invited
        } else {
            MembershipState::Active
        };
        subscribe_channel(db, contact_id, Channel::Email, &plan.list_ids, state, now)?;
    }
    if plan.phone.is_some() {
        // Phones are never invited.
        subscribe_channel(
            db,
            contact_id,
            Channel::Phone,
            &plan.list_ids,
            MembershipState::Active,
            now,
        )?;
    }
    if plan.overwrite == Overwrite::All {
        leave_other_lists(db, contact_id, &plan.list_ids)?;
    }
    set_fields(db, contact_id, plan, found.is_some())?;
    set_tags(db, contact_id, plan)?;
    Ok(contact_id)
}

fn insert_contact(db: &Db, plan: &SubscribePlan, invite: bool, now: Timestamp) -> Result<i64> {
    let email_status = plan.email.as_ref().map(|_| new_email_status(invite));
    let phone_status = plan.phone.as_ref().map(|_| PhoneStatus::Active.code());
    let available = Availability::Available.code();
    db.conn.prepare_cached(
        "INSERT INTO contacts (account_id, email, email_status, email_availability, email_add_time,
                               phone, phone_status, phone_availability, phone_add_time)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        plan.account_id,
        plan.email.as_ref().map(Email::as_str),
        email_status,
        email_status.map(|_| available),
        email_status.map(|_| now.0),
        plan.phone.as_ref().map(Phone::as_str),
        phone_status,
        phone_status.map(|_| available),
        phone_status.map(|_| now.0),
    ])?;
    let id = db.conn.last_insert_rowid();
    let mut counted = NewContacts::default();
    counted.add(plan.account_id, id);
    counted.count(db)?;
    Ok(id)
}

fn new_email_status(invite: bool) -> i64 {
    if invite {
        EmailStatus::Invited.code()
    } else {
        EmailStatus::New.code()
    }
}

/// Gives an existing contact the channels it lacks, and the addresses given (a different
/// address of a kind replaces the old one, which keeps its status and memberships).
fn add_channels(
    db: &Db,
    contact: &Found,
    plan: &SubscribePlan,
    invite: bool,
    now: Timestamp,
) -> Result<()> {
    let with_address = |current: &ChannelColumns, address: &str, new_status: i64| {
        let mut next = current.clone();
        next.address = Some(address.to_string());
        if current.address.is_none() {
            next.status = Some(new_status);
            next.availability = Some(Availability::Available.code());
            next.add_time = Some(now.0);
        }
        next
    };
    let email = match &plan.email {
        Some(email) => with_address(&contact.email, email.as_str(), new_email_status(invite)),
        None => contact.email.clone(),
    };
    let phone = match &plan.phone {
        Some(phone) => with_address(&contact.phone, phone.as_str(), PhoneStatus::Active.code()),
        None => contact.phone.clone(),
    };
    if email != contact.email || phone != contact.phone {
        contact_rows::update_channels(db, contact.id, &email, &phone)?;
    }
    Ok(())
}

/// Puts the channel in each list: active memberships stay active with their time; the others
/// become `state`, dated now.
fn subscribe_channel(
    db: &Db,
    contact_id: i64,
    channel: Channel,
    list_ids: &[i64],
    state: MembershipState,
    now: Timestamp,
) -> Result<()> {
    let current = contact_rows::memberships(db, contact_id, channel)?;
    for list_id in list_ids {
        if matches!(current.get(list_id), Some((MembershipState::Active, _))) {
            continue;
        }
        contact_rows::put_membership(db, contact_id, channel, *list_id, state, now)?;
    }
    Ok(())
}

/// `overwrite=1`: the contact leaves every list not named, on both channels.
fn leave_other_lists(db: &Db, contact_id: i64, list_ids: &[i64]) -> Result<()> {
    let mut statement = db
        .conn
        .prepare_cached("SELECT DISTINCT list_id FROM memberships WHERE contact_id = ?1")?;
    let current: Vec<i64> = statement
        .query_map([contact_id], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for list_id in current.into_iter().filter(|id| !list_ids.contains(id)) {
        db.conn
            .prepare_cached("DELETE FROM memberships WHERE contact_id = ?1 AND list_id = ?2")?
            .execute(params![contact_id, list_id])?;
    }
    Ok(())
}

fn set_fields(db: &Db, contact_id: i64, plan: &SubscribePlan, existed: bool) -> Result<()> {
    let with_values = if existed {
        contact_rows::fields_with_values(db, contact_id)?
    } else {
        Vec::new()
    };
    if plan.overwrite == Overwrite::All {
        for field_id in with_values
            .iter()
            .filter(|id| !plan.fields.iter().any(|(f, _)| f == *id))
        {
            contact_rows::set_field(db, contact_id, *field_id, "")?;
        }
    }
    for (field_id, value) in &plan.fields {
        if plan.overwrite == Overwrite::Missing && with_values.contains(field_id) {
            continue;
        }
        contact_rows::set_field(db, contact_id, *field_id, value)?;
    }
    Ok(())
}

fn set_tags(db: &Db, contact_id: i64, plan: &SubscribePlan) -> Result<()> {
    let tags = match (plan.overwrite, &plan.tags) {
        (Overwrite::All, given) => given.clone().unwrap_or_default(),
        (Overwrite::Given, Some(given)) => given.clone(),
        (Overwrite::Missing, Some(given)) => {
            union_ignoring_case(&contact_rows::tags_of(db, contact_id)?, given)
        }
        (_, None) => return Ok(()),
    };
    if tags.len() > MAX_TAGS_PER_CONTACT {
        return Err(Error::invalid_arg(format!(
            "tags: a contact may have at most {MAX_TAGS_PER_CONTACT} tags"
        )));
    }
    TagIds::default().set_tags(db, plan.account_id, contact_id, &tags)
}

/// exclude or unsubscribe: a channel's memberships in some lists (or all) change state.
#[derive(Debug)]
pub struct MembershipChange {
    pub account_id: i64,
    pub channel: Channel,
    /// The normalised address.
    pub address: String,
    /// `None`: every list.
    pub list_ids: Option<Vec<i64>>,
    pub state: MembershipState,
}

pub fn apply_membership_change(conn: &Connection, change: &MembershipChange) -> Result<()> {
    let db = &Db::new(conn);
    if let Some(list_ids) = &change.list_ids {
        let lists = db::list_ids(conn, change.account_id)?;
        if let Some(missing) = list_ids.iter().find(|id| !lists.contains(id)) {
            return Err(Error::invalid_arg(format!("list_ids: no list {missing}")));
        }
    }
    let contact = contact_rows::find(db, change.account_id, change.channel, &change.address)?
        .ok_or_else(|| Error::unspecified(format!("Contact \"{}\" not found", change.address)))?;
    let current = contact_rows::memberships(db, contact.id, change.channel)?;
    for (list_id, (_, time)) in current {
        let named = change
            .list_ids
            .as_ref()
            .is_none_or(|ids| ids.contains(&list_id));
        if named {
            contact_rows::put_membership(
                db,
                contact.id,
                change.channel,
                list_id,
                change.state,
                time,
            )?;
        }
    }
    Ok(())
}
