//! User fields: getFields, createField (§7).

use super::{Answer, Call};
use crate::error::{Error, Result};
use crate::import_plan::Column;
use crate::store::apply_catalog::{FieldUpdate, NewField};
use crate::store::db;
use crate::store::writer::Command;
use serde_json::json;

const FIELD_TYPES: [&str; 5] = ["string", "text", "number", "date", "bool"];

/// Names that exportContacts and importContacts already give a meaning to.
const RESERVED_NAMES: [&str; 2] = ["id", "delete"];

pub fn get_fields(call: &Call) -> Result<Answer> {
    let fields = call.store.read(|conn| db::fields(conn, call.account.id))?;
    let fields: Vec<_> = fields
        .into_iter()
        .map(|field| {
            json!({
                "id": field.id,
                "name": field.name,
                "type": field.kind,
                "is_visible": field.is_visible,
                "view_pos": field.view_pos,
                "public_name": field.public_name,
            })
        })
        .collect();
    Ok(Answer::new(json!(fields)))
}

pub fn create_field(call: &Call) -> Result<Answer> {
    let name = check_field_name(call.required("name")?)?;
    let kind = call.required("type")?;
    if !FIELD_TYPES.contains(&kind) {
        return Err(Error::invalid_arg(format!(
            "type must be one of {}, not \"{kind}\"",
            FIELD_TYPES.join(", ")
        )));
    }
    let public_name = match call.optional("public_name")? {
        Some(given) if !given.is_empty() => given.to_string(),
        _ => name.clone(),
    };
    let field = NewField {
        account_id: call.account.id,
        name,
        kind: kind.to_string(),
        public_name,
    };
    let id = call
        .store
        .writer()
        .submit(|reply| Command::CreateField(field, reply))?;
    Ok(Answer::new(json!({"id": id})))
}

pub fn update_field(call: &Call) -> Result<Answer> {
    let update = FieldUpdate {
        account_id: call.account.id,
        field_id: call.id("id")?,
        name: check_field_name(call.required("name")?)?,
        public_name: call
            .optional("public_name")?
            .filter(|p| !p.is_empty())
            .map(str::to_string),
    };
    let id = call
        .store
        .writer()
        .submit(|reply| Command::UpdateField(update, reply))?;
    Ok(Answer::new(json!({"id": id})))
}

pub fn delete_field(call: &Call) -> Result<Answer> {
    let (account_id, field_id) = (call.account.id, call.id("id")?);
    call.store.writer().submit(|reply| Command::DeleteField {
        account_id,
        field_id,
        reply,
    })?;
    Ok(Answer::empty())
}

/// §7's rule: a Latin letter, then Latin letters, digits, `_` or `-`, 64 characters at most,
/// and not the name of a system column.
fn check_field_name(name: &str) -> Result<String> {
    let mut chars = name.chars();
    let well_formed = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && name.len() <= 64;
    if !well_formed {
        return Err(Error::invalid_arg(format!(
            "name \"{name}\": a Latin letter, then letters, digits, _ or -, at most 64 characters"
        )));
    }
    let lower = name.to_ascii_lowercase();
    if Column::system(&lower).is_some() || RESERVED_NAMES.contains(&lower.as_str()) {
        return Err(Error::invalid_arg(format!(
            "name \"{name}\" is the name of a system column"
        )));
    }
    Ok(name.to_string())
}

#[cfg(test)]
mod tests {
    use super::check_field_name;

    #[test]
    fn field_names() {
        for good in ["a", "City", "x_1-y", &"n".repeat(64)] {
            assert!(check_field_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "1a",
            "_a",
            "a b",
            "имя",
            &"n".repeat(65),
            "Email",
            "phone_status",
            "id",
            "delete",
        ] {
            assert!(check_field_name(bad).is_err(), "{bad}");
        }
    }
}
