//! Tags: getTags, deleteTag (§7).

use super::{Answer, Call};
use crate::error::Result;
use crate::store::db;
use crate::store::writer::Command;
use serde_json::json;

pub fn get_tags(call: &Call) -> Result<Answer> {
    let tags = call.store.read(|conn| db::tags(conn, call.account.id))?;
    let tags: Vec<_> = tags
        .into_iter()
        .map(|(id, name)| json!({"id": id, "name": name}))
        .collect();
    Ok(Answer::new(json!(tags)))
}

pub fn delete_tag(call: &Call) -> Result<Answer> {
    let (account_id, tag_id) = (call.account.id, call.id("id")?);
    call.store.writer().submit(|reply| Command::DeleteTag {
        account_id,
        tag_id,
        reply,
    })?;
    Ok(Answer::empty())
}
