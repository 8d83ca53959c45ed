//! Single contacts (§7): subscribe, exclude, unsubscribe, getContact, getContactCount,
//! getTotalContactsCount, isContactInLists, getContactFieldValues.

use super::{Answer, Call};
use crate::error::{Error, ErrorCode, Result};
use crate::import_plan::Channel;
use crate::model::{
    Availability, Email, EmailStatus, MAX_TAGS_PER_CONTACT, MembershipState, Phone, Timestamp,
    normalise_tags,
};
use crate::params::Key;
use crate::store::apply_contact::{MembershipChange, OptIn, Overwrite, SubscribePlan};
use crate::store::db::{self, CountFilter};
use crate::store::writer::Command;
use serde_json::{Map, Value, json};

pub fn subscribe(call: &Call) -> Result<Answer> {
    let account_id = call.account.id;
    let list_ids = call.ids("list_ids")?;
    let given = call
        .params
        .get("fields")
        .and_then(|f| f.as_array())
        .ok_or_else(|| {
            Error::invalid_arg("fields must be given as fields[email], fields[phone], ...")
        })?;
    // By lower-cased name, looked up once per given field (a request may name thousands).
    let user_fields: std::collections::HashMap<String, i64> = call
        .store
        .read(|conn| db::field_names(conn, account_id))?
        .into_iter()
        .map(|field| (field.name.to_lowercase(), field.id))
        .collect();
    let (mut email, mut phone, mut fields) = (None, None, Vec::new());
    for (key, value) in given {
        let Key::Name(name) = key else {
            return Err(Error::invalid_arg(
                "fields must be named: fields[email], fields[phone], ...",
            ));
        };
        let value = value
            .as_value()
            .ok_or_else(|| Error::invalid_arg(format!("fields[{name}] must be a value")))?;
        let value = super::within_cell_limit(&format!("fields[{name}]"), value)?;
        match name.to_lowercase().as_str() {
            "email" if !value.trim().is_empty() => {
                email =
                    Some(Email::parse(value).ok_or_else(|| {
                        Error::invalid_arg("fields[email]: invalid email format")
                    })?);
            }
            "phone" if !value.trim().is_empty() => {
                phone =
                    Some(Phone::parse(value).ok_or_else(|| {
                        Error::invalid_arg("fields[phone]: invalid phone number")
                    })?);
            }
            "email" | "phone" => {}
            lower => {
                let field_id = user_fields.get(lower).ok_or_else(|| {
                    Error::invalid_arg(format!("fields[{name}]: no such user field"))
                })?;
                fields.push((*field_id, value.to_string()));
            }
        }
    }
    if email.is_none() && phone.is_none() {
        return Err(Error::invalid_arg("fields must have an email or a phone"));
    }
    let tags = match call.optional("tags")? {
        Some(text) => {
            let tags = normalise_tags(text);
            if tags.len() > MAX_TAGS_PER_CONTACT {
                return Err(Error::invalid_arg(format!(
                    "tags: at most {MAX_TAGS_PER_CONTACT}"
                )));
            }
            Some(tags)
        }
        None => None,
    };
    let opt_in = match call.optional("double_optin")?.unwrap_or("0") {
        "" | "0" => OptIn::Invite,
        "1" | "2" | "3" => OptIn::Confirmed,
        "4" => OptIn::ConfirmedIfKnown,
        other => {
            return Err(Error::invalid_arg(format!(
                "double_optin must be 0, 1, 2, 3 or 4, not \"{other}\""
            )));
        }
    };
    let overwrite = match call.optional("overwrite")?.unwrap_or("0") {
        "" | "0" => Overwrite::Missing,
        "1" => Overwrite::All,
        "2" => Overwrite::Given,
        other => {
            return Err(Error::invalid_arg(format!(
                "overwrite must be 0, 1 or 2, not \"{other}\""
            )));
        }
    };
    let plan = SubscribePlan {
        account_id,
        list_ids,
        email,
        phone,
        fields,
        tags,
        opt_in,
        overwrite,
    };
    let person_id = call
        .store
        .writer()
        .submit(|reply| Command::Subscribe(Box::new(plan), reply))?;
    Ok(Answer::new(json!({"person_id": person_id})))
}

pub fn exclude(call: &Call) -> Result<Answer> {
    change_memberships(call, MembershipState::Excluded)
}

pub fn unsubscribe(call: &Call) -> Result<Answer> {
    change_memberships(call, MembershipState::Unsubscribed)
}

fn change_memberships(call: &Call, state: MembershipState) -> Result<Answer> {
    let contact = call.required("contact")?;
    let (channel, address) = match call.required("contact_type")? {
        "email" => (
            Channel::Email,
            Email::parse(contact).map(|e| e.as_str().to_string()),
        ),
        "phone" => (
            Channel::Phone,
            Phone::parse(contact).map(|p| p.as_str().to_string()),
        ),
        other => {
            return Err(Error::invalid_arg(format!(
                "contact_type must be email or phone, not \"{other}\""
            )));
        }
    };
    let address = address.ok_or_else(|| {
        Error::invalid_arg(format!("contact: \"{contact}\" is not a valid address"))
    })?;
    let list_ids = match call.optional("list_ids")? {
        Some(text) if !text.is_empty() => Some(call.ids("list_ids")?),
        _ => None,
    };
    let change = MembershipChange {
        account_id: call.account.id,
        channel,
        address,
        list_ids,
        state,
    };
    call.store
        .writer()
        .submit(|reply| Command::SetMemberships(change, reply))?;
    Ok(Answer::empty())
}

/// The `email` parameter, normalised.
fn email_param(call: &Call) -> Result<Email> {
    let raw = call.required("email")?;
    Email::parse(raw)
        .ok_or_else(|| Error::invalid_arg(format!("email: \"{raw}\" is not a valid address")))
}

fn not_found(email: &Email) -> Error {
    Error::unspecified(format!("Contact \"{}\" not found", email.as_str()))
}

pub fn get_contact(call: &Call) -> Result<Answer> {
    let email = email_param(call)?;
    let (include_lists, include_fields, include_details) = (
        call.flag("include_lists")?,
        call.flag("include_fields")?,
        call.flag("include_details")?,
    );
    let account_id = call.account.id;
    call.store.read(|conn| {
        let channel = db::contact_by_email(conn, account_id, email.as_str())?
            .ok_or_else(|| not_found(&email))?;
        let mut email_object = json!({
            "email": channel.email,
            "added_at": channel.add_time.map(|t| Timestamp(t).wire()),
            "status": EmailStatus::from_code(channel.status).map(EmailStatus::wire),
            "availability": Availability::from_code(channel.availability).map(Availability::wire),
        });
        if include_details {
            for detail in [
                "last_send_datetime",
                "last_delivery_datetime",
                "last_read_datetime",
                "last_click_datetime",
                "rating",
            ] {
                email_object[detail] = Value::Null;
            }
        }
        let mut answer = json!({"email": email_object});
        if include_lists {
            // Only lists that exist: a deleted one may not be off every contact yet.
            let live = db::list_ids(conn, account_id)?;
            let lists: Vec<Value> = channel
                .memberships
                .of(Channel::Email)
                .filter(|m| live.contains(&m.list_id))
                .map(|m| {
                    json!({
                        "id": m.list_id,
                        "status": m.state.wire(),
                        "added_at": m.time.wire(),
                    })
                })
                .collect();
            answer["lists"] = Value::Array(lists);
        }
        if include_fields {
            let fields: Map<String, Value> = db::fields(conn, account_id)?
                .into_iter()
                .map(|f| (f.name, json!(channel.fields.get(f.id).unwrap_or_default())))
                .collect();
            answer["fields"] = Value::Object(fields);
        }
        Ok(Answer::new(answer))
    })
}

pub fn get_contact_count(call: &Call) -> Result<Answer> {
    let account_id = call.account.id;
    let list_id = call.id("list_id")?;
    let search_params = call.params.get("params").and_then(|p| p.as_array());
    let mut filter = CountFilter {
        list_id,
        ..CountFilter::default()
    };
    let mut echoed = Map::new();
    for (key, value) in search_params.into_iter().flatten() {
        let (Key::Name(name), Some(value)) = (key, value.as_value()) else {
            return Err(Error::invalid_arg(
                "params must be params[tagId], params[type] or params[search]",
            ));
        };
        let value = value.trim();
        match name.as_str() {
            "tagId" => {
                let tag_id = value.parse::<i64>().map_err(|_| {
                    Error::invalid_arg(format!("params[tagId]: \"{value}\" is not an id"))
                })?;
                if !call
                    .store
                    .read(|conn| db::tag_exists(conn, account_id, tag_id))?
                {
                    return Err(Error::invalid_arg(format!(
                        "params[tagId]: no tag {tag_id}"
                    )));
                }
                filter.tag_id = Some(tag_id);
            }
            "type" => {
                filter.channel = Some(match value {
                    "address" => Channel::Email,
                    "phone" => Channel::Phone,
                    other => {
                        return Err(Error::invalid_arg(format!(
                            "params[type] must be address or phone, not \"{other}\""
                        )));
                    }
                });
            }
            "search" => filter.search = Some(value.to_string()).filter(|s| !s.is_empty()),
            other => {
                return Err(Error::invalid_arg(format!(
                    "params[{other}] is not a search parameter"
                )));
            }
        }
        echoed.insert(name.clone(), json!(value));
    }
    let count = call.store.read(|conn| {
        if !db::list_ids(conn, account_id)?.contains(&list_id) {
            return Err(Error::invalid_arg(format!("list_id: no list {list_id}")));
        }
        db::count_in_list(conn, account_id, &filter)
    })?;
    Ok(Answer::new(
        json!({"count": count, "listId": list_id, "searchParams": echoed}),
    ))
}

pub fn get_total_contacts_count(call: &Call) -> Result<Answer> {
    let login = call.required("login")?;
    if login != call.account.login {
        return Err(Error::api(
            ErrorCode::AccessDenied,
            "the login is not the key's account",
        ));
    }
    let total = call
        .store
        .read(|conn| db::contact_total(conn, call.account.id))?;
    Ok(Answer::new(json!({"total": total})))
}

pub fn is_contact_in_lists(call: &Call) -> Result<Answer> {
    let email = email_param(call)?;
    let list_ids = call.ids("list_ids")?;
    let every = match call.optional("condition")?.unwrap_or("or") {
        "" | "or" => false,
        "and" => true,
        other => {
            return Err(Error::invalid_arg(format!(
                "condition must be or or and, not \"{other}\""
            )));
        }
    };
    let account_id = call.account.id;
    let inside = call.store.read(|conn| {
        let lists = db::list_ids(conn, account_id)?;
        if let Some(missing) = list_ids.iter().find(|id| !lists.contains(id)) {
            return Err(Error::invalid_arg(format!("list_ids: no list {missing}")));
        }
        let Some(channel) = db::contact_by_email(conn, account_id, email.as_str())? else {
            return Ok(false);
        };
        // "In a list" is an active or unsubscribed membership (§4).
        let is_in = |id: &i64| channel.memberships.in_list(*id, Some(Channel::Email));
        Ok(if every {
            list_ids.iter().all(is_in)
        } else {
            list_ids.iter().any(is_in)
        })
    })?;
    Ok(Answer::new(json!(inside)))
}

pub fn get_contact_field_values(call: &Call) -> Result<Answer> {
    let email = email_param(call)?;
    let field_ids = call.ids("field_ids")?;
    let account_id = call.account.id;
    call.store.read(|conn| {
        let known: Vec<i64> = db::fields(conn, account_id)?
            .into_iter()
            .map(|f| f.id)
            .collect();
        if let Some(missing) = field_ids.iter().find(|id| !known.contains(id)) {
            return Err(Error::invalid_arg(format!("field_ids: no field {missing}")));
        }
        let channel = db::contact_by_email(conn, account_id, email.as_str())?
            .ok_or_else(|| not_found(&email))?;
        let answer: Map<String, Value> = field_ids
            .iter()
            .map(|id| {
                (
                    id.to_string(),
                    json!(channel.fields.get(*id).unwrap_or_default()),
                )
            })
            .collect();
        Ok(Answer::new(json!({"fieldValues": answer})))
    })
}
