//! Lists: getLists, createList, updateList, deleteList (§7).

use super::{Answer, Call};
use crate::error::{Error, Result};
use crate::store::apply_catalog::{ListUpdate, NewList};
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
    let list = NewList {
        account_id: call.account.id,
        title: check_title(call.required("title")?)?,
        before_subscribe_url: call
            .optional("before_subscribe_url")?
            .unwrap_or_default()
            .to_string(),
        after_subscribe_url: call
            .optional("after_subscribe_url")?
            .unwrap_or_default()
            .to_string(),
    };
    let id = call
        .store
        .writer()
        .submit(|reply| Command::CreateList(list, reply))?;
    Ok(Answer::new(json!({"id": id})))
}

pub fn update_list(call: &Call) -> Result<Answer> {
    let title = match call.optional("title")? {
        Some(title) => Some(check_title(title)?),
        None => None,
    };
    let update = ListUpdate {
        account_id: call.account.id,
        list_id: call.id("list_id")?,
        title,
        before_subscribe_url: call.optional("before_subscribe_url")?.map(str::to_string),
        after_subscribe_url: call.optional("after_subscribe_url")?.map(str::to_string),
    };
    call.store
        .writer()
        .submit(|reply| Command::UpdateList(update, reply))?;
    Ok(Answer::empty())
}

pub fn delete_list(call: &Call) -> Result<Answer> {
    let (account_id, list_id) = (call.account.id, call.id("list_id")?);
    call.store.writer().submit(|reply| Command::DeleteList {
        account_id,
        list_id,
        reply,
    })?;
    Ok(Answer::empty())
}

/// A title is 1 to 255 characters once trimmed.
fn check_title(title: &str) -> Result<String> {
    let length = title.chars().count();
    if !(1..=255).contains(&length) {
        return Err(Error::invalid_arg("title must be 1 to 255 characters"));
    }
    Ok(title.to_string())
}
