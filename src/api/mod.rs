//! The methods of the contacts API: parameters in, the `result` value out. One file per group
//! of methods; this file checks the key and finds the method.

mod contacts;
mod export;
mod fields;
mod import;
mod lists;
mod tags;

pub use export::query_for as export_query_for;
pub use import::import_in_turn;

use crate::app::App;
use crate::error::{Error, ErrorCode, Result};
use crate::model::MAX_CELL_BYTES;
use crate::params::Params;
use crate::store::Store;
use crate::store::db::{self, Account};
use crate::store::writer::Command;
use serde_json::Value;

/// A successful call: its `result`, and the top-level `warnings` if any.
#[derive(Debug)]
pub struct Answer {
    pub result: Value,
    pub warnings: Vec<String>,
}

impl Answer {
    pub fn new(result: Value) -> Answer {
        Answer {
            result,
            warnings: Vec::new(),
        }
    }

    /// `{}`: what a method with nothing to return answers (never `0`, `""` or `null`).
    pub fn empty() -> Answer {
        Answer::new(Value::Object(serde_json::Map::new()))
    }
}

/// What a method sees: the server's parts, the account whose key the call carries, its
/// parameters, and the server's public address (for URLs in answers).
pub struct Call<'a> {
    pub app: &'a App,
    pub store: &'a Store,
    pub account: Account,
    pub params: &'a Params,
    pub base_url: &'a str,
}

/// A method of the API: its call in, its answer out.
pub type Method = fn(&Call) -> Result<Answer>;

/// The method named as in the path (`async/` included).
pub fn method(name: &str) -> Option<Method> {
    Some(match name {
        "importContacts" => import::import_contacts,
        "getLists" => lists::get_lists,
        "createList" => lists::create_list,
        "updateList" => lists::update_list,
        "deleteList" => lists::delete_list,
        "getFields" => fields::get_fields,
        "createField" => fields::create_field,
        "updateField" => fields::update_field,
        "deleteField" => fields::delete_field,
        "getTags" => tags::get_tags,
        "deleteTag" => tags::delete_tag,
        "subscribe" => contacts::subscribe,
        "exclude" => contacts::exclude,
        "unsubscribe" => contacts::unsubscribe,
        "getContact" => contacts::get_contact,
        "getContactCount" => contacts::get_contact_count,
        "getTotalContactsCount" => contacts::get_total_contacts_count,
        "isContactInLists" => contacts::is_contact_in_lists,
        "getContactFieldValues" => contacts::get_contact_field_values,
        "exportContacts" => export::export_contacts,
        "async/exportContacts" => export::start_export,
        "async/getTaskResult" => export::task_result,
        _ => return None,
    })
}

/// Runs `method` for `account` (whose key the call carried).
pub fn call(app: &App, method: Method, account: Account, params: &Params) -> Result<Answer> {
    method(&Call {
        app,
        store: &app.store,
        account,
        params,
        base_url: &app.public_url,
    })
}

/// The account whose key this is. The key is compared exactly as sent: `" key\t"` is not
/// `"key"`.
pub fn authenticate(store: &Store, key: Option<&str>) -> Result<Account> {
    let key = key.unwrap_or_default();
    if key.is_empty() {
        return Err(Error::api(ErrorCode::InvalidApiKey, "api_key is missing"));
    }
    store
        .read(|conn| db::account_by_key(conn, key))?
        .ok_or_else(|| Error::api(ErrorCode::InvalidApiKey, "invalid api_key"))
}

/// The database answers reads and the writer commits a transaction.
pub fn health(store: &Store) -> Result<()> {
    store.file_in_place()?;
    store.read(db::ping)?;
    store.writer().submit(Command::Ping)
}

impl Call<'_> {
    /// A required plain parameter, trimmed; `invalid_arg` naming it when missing or empty.
    pub fn required(&self, name: &str) -> Result<&str> {
        match self.optional(name)? {
            None => Err(Error::invalid_arg(format!("{name} is missing"))),
            Some("") => Err(Error::invalid_arg(format!("{name} is empty"))),
            Some(value) => Ok(value),
        }
    }

    /// A required positive id, `invalid_arg` naming it otherwise.
    pub fn id(&self, name: &str) -> Result<i64> {
        let text = self.required(name)?;
        text.parse::<i64>()
            .ok()
            .filter(|id| *id > 0)
            .ok_or_else(|| {
                Error::invalid_arg(format!("{name} must be a positive id, not \"{text}\""))
            })
    }

    /// A required comma-separated list of positive ids (`list_ids`, `field_ids`).
    pub fn ids(&self, name: &str) -> Result<Vec<i64>> {
        let text = self.required(name)?;
        let ids = crate::model::comma_items(text)
            .map(|item| item.parse::<i64>().ok().filter(|id| *id > 0))
            .collect::<Option<Vec<i64>>>()
            .filter(|ids| !ids.is_empty());
        ids.ok_or_else(|| {
            Error::invalid_arg(format!(
                "{name} must be comma-separated ids, not \"{text}\""
            ))
        })
    }

    /// An optional flag (`1`/`0`, `true`/`false`, empty).
    pub fn flag(&self, name: &str) -> Result<bool> {
        match self.optional(name)? {
            None => Ok(false),
            Some(raw) => crate::model::parse_flag(raw)
                .ok_or_else(|| Error::invalid_arg(format!("{name} must be 0 or 1, not \"{raw}\""))),
        }
    }

    /// An optional plain parameter, trimmed; an array in its place, or a value over the
    /// one-cell limit, is `invalid_arg`.
    pub fn optional(&self, name: &str) -> Result<Option<&str>> {
        match self.params.get(name) {
            None => Ok(None),
            Some(param) => {
                let value = param
                    .as_value()
                    .ok_or_else(|| Error::invalid_arg(format!("{name} must be a single value")))?;
                within_cell_limit(name, value).map(|v| Some(v.trim()))
            }
        }
    }
}

/// `value` if it fits in one cell (§8: 64 KiB), the same limit importContacts holds its cells to;
/// `invalid_arg` naming the parameter otherwise.
pub fn within_cell_limit<'v>(name: &str, value: &'v str) -> Result<&'v str> {
    if value.len() > MAX_CELL_BYTES {
        return Err(Error::invalid_arg(format!(
            "{name} is longer than {} KiB",
            MAX_CELL_BYTES / 1024
        )));
    }
    Ok(value)
}

impl Call<'_> {}
