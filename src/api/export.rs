//! exportContacts, async/exportContacts and async/getTaskResult (§6).

use super::{Answer, Call};
use crate::error::{Error, Result};
use crate::export_query::{ExportField, ExportFilters, ExportQuery, parse_columns, parse_status};
use crate::exports::task_answer;
use crate::model::{Email, Phone};
use crate::params::Param;
use crate::store::db::{self, ExportTask};
use crate::store::export_reader::export_page;
use crate::store::writer::Command;
use serde_json::json;

const MAX_LIMIT: u64 = 1000;

pub fn export_contacts(call: &Call) -> Result<Answer> {
    let query = export_query(call)?;
    let offset = number(call, "offset")?.unwrap_or(0);
    let limit = number(call, "limit")?.unwrap_or(MAX_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(Error::invalid_arg(format!(
            "limit must be 1 to {MAX_LIMIT}, not {limit}"
        )));
    }
    // Read before the page, so that a page end remembered from it is never newer than it claims.
    let generation = call.store.write_generation();
    let data = call.store.read(|conn| {
        export_page(
            conn,
            &query,
            offset,
            limit,
            &call.store.page_ends,
            generation,
        )
    })?;
    Ok(Answer::new(
        json!({"field_names": query.headers(), "data": data}),
    ))
}

pub fn start_export(call: &Call) -> Result<Answer> {
    let query = export_query(call)?;
    call.app.exporter.admit(call.account.id)?;
    let notify_url = match call.optional("notify_url")? {
        Some(url) if !url.is_empty() => {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(Error::invalid_arg(
                    "notify_url must be an http:// or https:// URL",
                ));
            }
            Some(url.to_string())
        }
        _ => None,
    };
    let uuid = uuid::Uuid::new_v4().to_string();
    let task = ExportTask {
        uuid: uuid.clone(),
        account_id: call.account.id,
        status: "new".into(),
        request: serde_json::to_string(&query).map_err(|e| Error::Internal(e.to_string()))?,
        notify_url,
        base_url: call.base_url.to_string(),
        file_token: None,
    };
    let created = call
        .store
        .writer()
        .submit(|reply| Command::CreateExportTask {
            task,
            max_unfinished: call.app.exporter.limits().unfinished_per_account,
            reply,
        });
    if created.is_err() {
        call.app.exporter.withdraw(call.account.id);
    }
    created?;
    call.app.exporter.enqueue(call.account.id, uuid.clone());
    Ok(Answer::new(json!({"task_uuid": uuid, "status": "new"})))
}

pub fn task_result(call: &Call) -> Result<Answer> {
    let uuid = call.required("task_uuid")?;
    let task = call
        .store
        .read(|conn| db::export_task(conn, uuid))?
        .filter(|task| task.account_id == call.account.id)
        .ok_or_else(|| Error::invalid_arg(format!("task_uuid: no task \"{uuid}\"")))?;
    Ok(Answer::new(task_answer(&task, call.base_url)))
}

/// The columns and filters of an export call, checked against the account.
/// The query exportContacts would run for these parameters (filters and `field_names`), checked
/// as the API checks them: what the command line's `export` runs.
pub fn query_for(
    app: &crate::app::App,
    account: crate::store::db::Account,
    params: &crate::params::Params,
) -> Result<ExportQuery> {
    export_query(&Call {
        app,
        store: &app.store,
        account,
        params,
        base_url: &app.public_url,
    })
}

fn export_query(call: &Call) -> Result<ExportQuery> {
    let account_id = call.account.id;
    let fields: Vec<ExportField> = call
        .store
        .read(|conn| db::fields(conn, account_id))?
        .into_iter()
        .map(|f| ExportField {
            id: f.id,
            name: f.name,
        })
        .collect();
    let columns = parse_columns(&column_names(call.params.get("field_names"))?, &fields)
        .map_err(Error::invalid_arg)?;
    let mut filters = ExportFilters::default();
    if let Some(list_id) = number(call, "list_id")? {
        let lists = call.store.read(|conn| db::list_ids(conn, account_id))?;
        let list_id = i64::try_from(list_id).unwrap_or(-1);
        if !lists.contains(&list_id) {
            return Err(Error::invalid_arg(format!("list_id: no list {list_id}")));
        }
        filters.list_id = Some(list_id);
    }
    if let Some(email) = non_empty(call, "email")? {
        let email =
            Email::parse(email).ok_or_else(|| Error::invalid_arg("email: invalid email format"))?;
        filters.email = Some(email.as_str().to_string());
    }
    if let Some(phone) = non_empty(call, "phone")? {
        let phone =
            Phone::parse(phone).ok_or_else(|| Error::invalid_arg("phone: invalid phone number"))?;
        filters.phone = Some(phone.as_str().to_string());
    }
    filters.tag = non_empty(call, "tag")?.map(str::to_string);
    if let Some(status) = non_empty(call, "email_status")? {
        filters.email_status =
            Some(parse_status("email_status", status, true).map_err(Error::invalid_arg)?);
    }
    if let Some(status) = non_empty(call, "phone_status")? {
        filters.phone_status =
            Some(parse_status("phone_status", status, false).map_err(Error::invalid_arg)?);
    }
    Ok(ExportQuery {
        account_id,
        filters,
        columns,
    })
}

/// `field_names[]=a&field_names[]=b`, `field_names[0]=a`, or a comma-separated `field_names=a,b`.
fn column_names(param: Option<&Param>) -> Result<Vec<String>> {
    match param {
        None => Ok(Vec::new()),
        Some(Param::Value(list)) => Ok(crate::model::comma_items(list)
            .map(str::to_string)
            .collect()),
        Some(Param::Array(names)) => names
            .values()
            .map(|name| {
                name.as_value()
                    .map(|n| n.trim().to_string())
                    .ok_or_else(|| Error::invalid_arg("field_names must be a list of column names"))
            })
            .collect(),
    }
}

fn non_empty<'a>(call: &'a Call, name: &str) -> Result<Option<&'a str>> {
    Ok(call.optional(name)?.filter(|v| !v.is_empty()))
}

/// An optional whole number ≥ 0; anything else names the parameter.
fn number(call: &Call, name: &str) -> Result<Option<u64>> {
    match non_empty(call, name)? {
        None => Ok(None),
        Some(text) => text.parse::<u64>().map(Some).map_err(|_| {
            Error::invalid_arg(format!("{name} must be a whole number ≥ 0, not \"{text}\""))
        }),
    }
}
