//! `/_local/ui`: the inspector page (one HTML file built into the binary: no build step, no
//! CDN) and the JSON it reads besides the control plane's own endpoints (journal, outbox,
//! faults): accounts with their counts, a page of an account's contacts, one contact whole,
//! export tasks. Contact pages are exportContacts pages, so they cost the same at any size.

use super::{Routed, answer, error, failed, invalid, not_allowed};
use crate::api;
use crate::app::App;
use crate::error::{Error, Result};
use crate::http::wire::{Body, HttpResponse};
use crate::params::Params;
use crate::store::contact_rows::{read_found, select_found};
use crate::store::db::{self, Account};
use crate::store::export_reader::export_page;
use rusqlite::OptionalExtension;
use serde_json::{Value, json};

const PAGE: &str = include_str!("../../ui/inspector.html");
/// Contacts on one page of the inspector.
const PAGE_SIZE: u64 = 50;

pub(super) fn handle(app: &App, method: &str, path: &str, query: &Params) -> Routed {
    let rest = path.strip_prefix("/_local/ui")?;
    if method != "GET" {
        return Some(not_allowed("GET"));
    }
    Some(match rest {
        "" | "/" => HttpResponse {
            status: 200,
            headers: vec![
                ("Content-Type", "text/html; charset=utf-8".to_string()),
                // The page's own script and style only; nothing from elsewhere.
                (
                    "Content-Security-Policy",
                    "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self' data:"
                        .to_string(),
                ),
            ],
            body: Body::Bytes(PAGE.as_bytes().to_vec()),
        },
        "/api/accounts" => json_or_error(accounts(app)),
        "/api/contacts" => json_or_error(contacts(app, query)),
        "/api/contact" => json_or_error(contact(app, query)),
        "/api/exports" => json_or_error(exports(app, query)),
        _ => return None,
    })
}

fn json_or_error(result: Result<Value>) -> HttpResponse {
    match result {
        Ok(value) => answer(200, &value),
        Err(Error::Api { message, .. }) if message.starts_with("no account") => {
            answer(404, &error(&message, "not_found"))
        }
        Err(Error::Api { message, .. }) => invalid(&message),
        Err(other) => failed(other),
    }
}

/// Every account with how many contacts, lists, fields and tags it has.
fn accounts(app: &App) -> Result<Value> {
    app.store.read(|conn| {
        let mut listed = Vec::new();
        for record in db::accounts(conn)? {
            let account = record.account;
            let count = |table: &str| -> Result<i64> {
                // The table names are this function's own, never a caller's text.
                Ok(conn
                    .prepare_cached(&format!(
                        "SELECT count(*) FROM {table} WHERE account_id = ?1"
                    ))?
                    .query_row([account.id], |row| row.get(0))?)
            };
            listed.push(json!({
                "login": account.login,
                "contacts": db::contact_total(conn, account.id)?,
                "lists": count("lists")?,
                "fields": count("fields")?,
                "tags": count("tags")?,
            }));
        }
        Ok(json!({"accounts": listed}))
    })
}

fn account(app: &App, query: &Params) -> Result<Account> {
    let login = query
        .value("account")
        .filter(|l| !l.is_empty())
        .ok_or_else(|| Error::invalid_arg("account is missing"))?;
    app.store
        .read(|conn| db::account_by_login(conn, login))?
        .ok_or_else(|| Error::invalid_arg(format!("no account \"{login}\"")))
}

/// A page of contacts, filtered as exportContacts filters them. `search` is an exact email or
/// phone (found through the address indexes), not a substring: a substring would walk the
/// account.
fn contacts(app: &App, query: &Params) -> Result<Value> {
    let account = account(app, query)?;
    let offset: u64 = match query.value("offset").filter(|v| !v.is_empty()) {
        Some(v) => v
            .parse()
            .map_err(|_| Error::invalid_arg("offset must be a whole number"))?,
        None => 0,
    };
    let mut params = Params::default();
    for (name, value) in ["list_id", "tag", "email_status", "phone_status"]
        .iter()
        .filter_map(|name| {
            query
                .value(name)
                .filter(|v| !v.is_empty())
                .map(|v| (*name, v))
        })
    {
        params
            .insert(name, value.to_string())
            .map_err(|e| Error::invalid_arg(e.to_string()))?;
    }
    if let Some(search) = query
        .value("search")
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let name = if search.contains('@') {
            "email"
        } else {
            "phone"
        };
        params
            .insert(name, search.to_string())
            .map_err(|e| Error::invalid_arg(e.to_string()))?;
    }
    for (i, column) in [
        "id",
        "email",
        "email_status",
        "phone",
        "phone_status",
        "email_list_ids",
        "phone_list_ids",
        "tags",
    ]
    .iter()
    .enumerate()
    {
        params
            .insert(&format!("field_names[{i}]"), column.to_string())
            .map_err(|e| Error::invalid_arg(e.to_string()))?;
    }
    let export = api::export_query_for(app, account, &params)?;
    let generation = app.store.write_generation();
    let rows = app.store.read(|conn| {
        export_page(
            conn,
            &export,
            offset,
            PAGE_SIZE + 1,
            &app.store.page_ends,
            generation,
        )
    })?;
    let more = rows.len() as u64 > PAGE_SIZE;
    let rows: Vec<_> = rows.into_iter().take(PAGE_SIZE as usize).collect();
    Ok(json!({
        "columns": export.headers(),
        "rows": rows,
        "offset": offset,
        "more": more,
    }))
}

/// One contact whole: both channels, memberships with states and times, tags, field values.
fn contact(app: &App, query: &Params) -> Result<Value> {
    let account = account(app, query)?;
    let id: i64 = query
        .value("id")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| Error::invalid_arg("id must be a contact id"))?;
    app.store.read(|conn| {
        let found = conn
            .prepare_cached(concat!(select_found!(), " WHERE id = ?1 AND account_id = ?2"))?
            .query_row([id, account.id], read_found)
            .optional()?
            .ok_or_else(|| Error::invalid_arg(format!("no contact {id}")))?;
        let lists: std::collections::HashMap<i64, String> = conn
            .prepare_cached("SELECT id, title FROM lists WHERE account_id = ?1")?
            .query_map([account.id], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        let tags: std::collections::HashMap<i64, String> =
            db::tags(conn, account.id)?.into_iter().collect();
        let time = |t: Option<i64>| t.map(|t| crate::model::Timestamp(t).wire());
        let channel = |c: &crate::store::contact_rows::ChannelColumns, email: bool| {
            let status = c.status.and_then(|s| {
                if email {
                    crate::model::EmailStatus::from_code(s).map(|s| s.wire())
                } else {
                    crate::model::PhoneStatus::from_code(s).map(|s| s.wire())
                }
            });
            json!({
                "address": c.address,
                "status": status,
                "availability": c.availability.and_then(crate::model::Availability::from_code).map(|a| a.wire()),
                "added": time(c.add_time),
                "request_ip": c.request_ip,
                "confirmed": time(c.confirm_time),
                "confirm_ip": c.confirm_ip,
            })
        };
        let memberships: Vec<Value> = found
            .memberships
            .all()
            .iter()
            .filter_map(|m| {
                let title = lists.get(&m.list_id)?;
                Some(json!({
                    "list_id": m.list_id,
                    "list": title,
                    "channel": match m.channel {
                        crate::import_plan::Channel::Email => "email",
                        crate::import_plan::Channel::Phone => "phone",
                    },
                    "state": m.state.wire(),
                    "time": m.time.wire(),
                }))
            })
            .collect();
        let fields: serde_json::Map<String, Value> = db::fields(conn, account.id)?
            .into_iter()
            .filter_map(|f| Some((f.name, json!(found.fields.get(f.id)?))))
            .collect();
        Ok(json!({
            "id": found.id,
            "email": channel(&found.email, true),
            "phone": channel(&found.phone, false),
            "memberships": memberships,
            "tags": found.tags.ids().iter().filter_map(|t| tags.get(t)).collect::<Vec<_>>(),
            "fields": fields,
        }))
    })
}

/// The account's export tasks, newest first, with their download links.
fn exports(app: &App, query: &Params) -> Result<Value> {
    let account = account(app, query)?;
    app.store.read(|conn| {
        let mut statement = conn.prepare_cached(
            "SELECT uuid, status, file_token, created_at, error FROM export_tasks
             WHERE account_id = ?1 ORDER BY created_at DESC, rowid DESC",
        )?;
        let rows = statement.query_map([account.id], |row| {
            let token: Option<String> = row.get(2)?;
            let status: String = row.get(1)?;
            Ok(json!({
                "task_uuid": row.get::<_, String>(0)?,
                "status": status,
                "file": token
                    .filter(|_| status == "completed")
                    .map(|t| crate::exports::file_url(&app.public_url, &t)),
                "created": crate::model::Timestamp(row.get(3)?).wire(),
                "error": row.get::<_, Option<String>>(4)?,
            }))
        })?;
        Ok(json!({"exports": rows.collect::<rusqlite::Result<Vec<_>>>()?}))
    })
}
