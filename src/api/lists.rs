//! Lists: getLists, createList (§7).

use super::{Answer, Call};
use crate::error::{Error, Result};
use crate::store::db;
use crate::store::writer::Command;
use serde_json::json;

pub fn get_lists(call: &Call) -> Result<Answer> {
    let lists = call.store.read(|conn| db::lists(conn, call.account.id))?;
    let lists: Vec<_> = lists
        .into_iter()
        .map(|list| json!({"id": list.id, "title": list.title}))
        .collect();
    Ok(Answer::new(json!(lists)))
}

pub fn create_list(call: &Call) -> Result<Answer> {
    let title = call.required("title")?.to_string();
    if title.chars().count() > 255 {
        return Err(Error::invalid_arg("title is longer than 255 characters"));
    }
    let before_subscribe_url = call
        .optional("before_subscribe_url")?
        .unwrap_or_default()
        .to_string();
    let after_subscribe_url = call
        .optional("after_subscribe_url")?
        .unwrap_or_default()
        .to_string();
    let id = call.store.writer().submit(|reply| Command::CreateList {
        account_id: call.account.id,
        title,
        before_subscribe_url,
        after_subscribe_url,
        reply,
    })?;
    Ok(Answer::new(json!({"id": id})))
}
