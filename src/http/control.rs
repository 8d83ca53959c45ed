//! The control plane under `/_local/` (besides health and export downloads): the operator's,
//! not an account's. Answered only to a client on this machine (127.0.0.1 or ::1), or, with
//! `--admin-token`, to any client that sends `Authorization: Bearer TOKEN`; an account's key
//! never opens it. Every answer is JSON; a bad parameter is 400 `invalid_arg`.

use crate::app::App;
use crate::http::wire::{Body, HttpRequest, HttpResponse};
use crate::journal::JournalFilter;
use crate::params::Params;
use serde_json::{Value, json};
use std::net::IpAddr;

/// Answers a control-plane request at `path`.
pub fn handle(app: &App, request: &HttpRequest, path: &str) -> HttpResponse {
    if !allowed(app, request) {
        let why = match app.control.admin_token {
            Some(_) => "the control plane needs Authorization: Bearer <admin token>",
            None => {
                "the control plane answers clients on this machine only (or start the server with --admin-token)"
            }
        };
        return answer(403, &error(why, "access_denied"));
    }
    let query = request.target.split_once('?').map_or("", |(_, q)| q);
    let Ok(query) = Params::from_urlencoded(query.as_bytes()) else {
        return answer(400, &error("the query is not valid UTF-8", "invalid_arg"));
    };
    match (request.method.as_str(), path) {
        ("GET", "/_local/requests") => match journal_filter(&query) {
            Ok(filter) => {
                let entries: Vec<Value> = app
                    .journal
                    .list(&filter)
                    .iter()
                    .map(|entry| entry.to_json())
                    .collect();
                answer(200, &json!({"requests": entries}))
            }
            Err(why) => answer(400, &error(&why, "invalid_arg")),
        },
        ("DELETE", "/_local/requests") => answer(200, &json!({"deleted": app.journal.clear()})),
        (_, "/_local/requests") => answer(405, &error("GET or DELETE", "unknown_method")),
        _ => answer(404, &error("no such control endpoint", "unknown_method")),
    }
}

/// Whether the client may use the control plane.
fn allowed(app: &App, request: &HttpRequest) -> bool {
    if let Some(token) = &app.control.admin_token {
        let sent = request
            .header("authorization")
            .and_then(|value| value.strip_prefix("Bearer "))
            .unwrap_or_default();
        return crate::store::db::keys_equal(sent.as_bytes(), token.as_bytes());
    }
    // This machine's own address, not any of 127.0.0.0/8: a client bound to 127.0.0.2 stands
    // for another host in tests, as a container's bridge address does in use.
    request.peer.is_none_or(|peer| match peer.ip() {
        IpAddr::V4(ip) => ip == std::net::Ipv4Addr::LOCALHOST,
        IpAddr::V6(ip) => {
            ip == std::net::Ipv6Addr::LOCALHOST
                || ip.to_ipv4_mapped() == Some(std::net::Ipv4Addr::LOCALHOST)
        }
    })
}

fn journal_filter(query: &Params) -> Result<JournalFilter, String> {
    let text = |name: &str| query.value(name).filter(|v| !v.is_empty());
    let number = |name: &str| -> Result<Option<u64>, String> {
        text(name)
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|_| format!("{name} must be a whole number, not \"{v}\""))
            })
            .transpose()
    };
    Ok(JournalFilter {
        method: text("method").map(str::to_string),
        account: text("account").map(str::to_string),
        since_id: number("since_id")?,
        limit: number("limit")?.map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
    })
}

fn error(message: &str, code: &str) -> Value {
    json!({"error": message, "code": code})
}

fn answer(status: u16, body: &Value) -> HttpResponse {
    HttpResponse {
        status,
        headers: vec![(
            "Content-Type",
            "application/json; charset=utf-8".to_string(),
        )],
        body: Body::Bytes(serde_json::to_vec(body).expect("a JSON value always serialises")),
    }
}
