//! subscribe, exclude and unsubscribe inside the writer's transaction (spec §7). A refusal found
//! part-way returns an error, and the writer rolls the command's savepoint back whole.

use crate::error::{Error, Result};
use crate::import_plan::Channel;
use crate::model::{
    Availability, Email, EmailStatus, MAX_TAGS_PER_CONTACT, MembershipState, Phone, PhoneStatus,
    Timestamp,
};
use crate::store::contact_rows::{self, ChannelColumns, Db, Found, NewContacts, Owner, TagIds};
use crate::store::packed::Membership;
use crate::store::{confirmations, db};
use rusqlite::Connection;

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
    let owner = contact_rows::find_owner(
        db,
        account_id,
        plan.email.as_ref().map(Email::as_str),
        plan.phone.as_ref().map(Phone::as_str),
    )?;
    let found = match owner {
        Owner::TwoContacts => {
            return Err(Error::unspecified(two_owners(
                plan.email.as_ref().map_or("", Email::as_str),
                plan.phone.as_ref().map_or("", Phone::as_str),
            )));
        }
        Owner::Contact(contact) => Some(*contact),
        Owner::Nobody => None,
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
    let before = found.unwrap_or_default();
    let mut after = before.clone();
    add_channels(&mut after, plan, invite, now);
    if plan.email.is_some() {
        let state = if invite {
            MembershipState::Invited
        } else {
            MembershipState::Active
        };
        subscribe_channel(&mut after, Channel::Email, &plan.list_ids, state, now);
    }
    if plan.phone.is_some() {
        // Phones are never invited.
        subscribe_channel(
            &mut after,
            Channel::Phone,
            &plan.list_ids,
            MembershipState::Active,
            now,
        );
    }
    if plan.overwrite == Overwrite::All {
        // The contact leaves every list not named, on both channels.
        after
            .memberships
            .retain(|m| plan.list_ids.contains(&m.list_id));
    }
    set_fields(&mut after, plan);
    set_tags(db, &mut after, plan)?;
    let id = if before.id == 0 {
        let id = contact_rows::insert_contact(db, account_id, &after)?;
        let mut counted = NewContacts::default();
        counted.add(account_id, id);
        counted.count(db)?;
        id
    } else {
        contact_rows::save_contact(db, account_id, &before, &after)?;
        before.id
    };
    if invite && let Some(email) = &plan.email {
        // What the real service would email: a link confirming the lists now awaiting it.
        let invited: Vec<i64> = plan
            .list_ids
            .iter()
            .copied()
            .filter(|list| {
                after
                    .memberships
                    .get(Channel::Email, *list)
                    .is_some_and(|m| m.state == MembershipState::Invited)
            })
            .collect();
        let status_invited = after.email.status == Some(EmailStatus::Invited.code());
        if !invited.is_empty() || status_invited {
            confirmations::record(db, account_id, id, email.as_str(), &invited, now)?;
        }
    }
    db.finish()?;
    Ok(id)
}

/// The real service's text when an email and a phone belong to two contacts (subscribe and
/// importContacts alike).
pub fn two_owners(email: &str, phone: &str) -> String {
    format!("Contacts {email} and {phone} already exist but owned by different subscribers")
}

fn new_email_status(invite: bool) -> i64 {
    if invite {
        EmailStatus::Invited.code()
    } else {
        EmailStatus::New.code()
    }
}

/// Gives the contact the channels it lacks, and the addresses given (a different address of a
/// kind replaces the old one, which keeps its status and memberships).
fn add_channels(contact: &mut Found, plan: &SubscribePlan, invite: bool, now: Timestamp) {
    let with_address = |current: &mut ChannelColumns, address: &str, new_status: i64| {
        if current.address.is_none() {
            current.status = Some(new_status);
            current.availability = Some(Availability::Available.code());
            current.add_time = Some(now.0);
        }
        current.address = Some(address.to_string());
    };
    if let Some(email) = &plan.email {
        with_address(&mut contact.email, email.as_str(), new_email_status(invite));
    }
    if let Some(phone) = &plan.phone {
        with_address(
            &mut contact.phone,
            phone.as_str(),
            PhoneStatus::Active.code(),
        );
    }
}

/// Puts the channel in each list: active memberships stay active with their time; unsubscribed
/// ones stay unsubscribed (the real service: "it is impossible to restore the active status
/// through API"; only the person's confirmation can); the others become `state`, dated now.
fn subscribe_channel(
    contact: &mut Found,
    channel: Channel,
    list_ids: &[i64],
    state: MembershipState,
    now: Timestamp,
) {
    for list_id in list_ids {
        let current = contact.memberships.get(channel, *list_id);
        if current.is_some_and(|m| {
            matches!(
                m.state,
                MembershipState::Active | MembershipState::Unsubscribed
            )
        }) {
            continue;
        }
        contact.memberships.put(Membership {
            channel,
            list_id: *list_id,
            state,
            time: now,
        });
    }
}

fn set_fields(contact: &mut Found, plan: &SubscribePlan) {
    if plan.overwrite == Overwrite::All {
        let unnamed: Vec<i64> = contact
            .fields
            .all()
            .iter()
            .map(|(id, _)| *id)
            .filter(|id| !plan.fields.iter().any(|(f, _)| f == id))
            .collect();
        for field_id in unnamed {
            contact.fields.set(field_id, "");
        }
    }
    for (field_id, value) in &plan.fields {
        if plan.overwrite == Overwrite::Missing && contact.fields.has(*field_id) {
            continue;
        }
        contact.fields.set(*field_id, value);
    }
}

fn set_tags(db: &Db, contact: &mut Found, plan: &SubscribePlan) -> Result<()> {
    let (given, replace) = match (plan.overwrite, &plan.tags) {
        (Overwrite::All, given) => (given.clone().unwrap_or_default(), true),
        (Overwrite::Given, Some(given)) => (given.clone(), true),
        (Overwrite::Missing, Some(given)) => (given.clone(), false),
        (_, None) => return Ok(()),
    };
    let applied = TagIds::default().applied(db, plan.account_id, &contact.tags, &given, replace)?;
    contact.tags = applied.ok_or_else(|| {
        Error::invalid_arg(format!(
            "tags: a contact may have at most {MAX_TAGS_PER_CONTACT} tags"
        ))
    })?;
    Ok(())
}

fn not_found(address: &str) -> Error {
    Error::unspecified(format!("Contact \"{address}\" not found"))
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
    // Only lists that exist: a deleted one may not be off every contact yet.
    let lists = db::list_ids(conn, change.account_id)?;
    if let Some(list_ids) = &change.list_ids
        && let Some(missing) = list_ids.iter().find(|id| !lists.contains(id))
    {
        return Err(Error::invalid_arg(format!("list_ids: no list {missing}")));
    }
    let before = contact_rows::find(db, change.account_id, change.channel, &change.address)?
        .ok_or_else(|| not_found(&change.address))?;
    let mut after = before.clone();
    let named: Vec<Membership> = before
        .memberships
        .of(change.channel)
        .filter(|m| {
            lists.contains(&m.list_id)
                && change
                    .list_ids
                    .as_ref()
                    .is_none_or(|ids| ids.contains(&m.list_id))
        })
        .copied()
        .collect();
    // The real service answers "not found" for an address in none of the lists too, and
    // changes nothing. "In a list" is active or unsubscribed (§4).
    let in_a_list = |m: &Membership| {
        matches!(
            m.state,
            MembershipState::Active | MembershipState::Unsubscribed
        )
    };
    if !named.iter().any(in_a_list) {
        return Err(not_found(&change.address));
    }
    for membership in named {
        after.memberships.put(Membership {
            state: change.state,
            ..membership
        });
    }
    contact_rows::save_contact(db, change.account_id, &before, &after)?;
    db.finish()
}
