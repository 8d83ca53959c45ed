//! The control plane under `/_local/` (besides health and export downloads): the operator's,
//! not an account's. Answered only to a client on this machine (127.0.0.1 or ::1), or, with
//! `--admin-token`, to any client that sends `Authorization: Bearer TOKEN`; an account's key
//! never opens it. Every answer is JSON (metrics aside); a bad parameter is 400 `invalid_arg`,
//! an unknown name or id 404 `not_found`.

use crate::app::App;
use crate::http::wire::{Body, HttpRequest, HttpResponse};
use crate::params::Params;
use serde_json::{Value, json};
use std::net::IpAddr;

mod chaos;
mod inspector;
mod journal;
mod outbox;
mod state;

/// An endpoint's answer, or None when the path is not one of its own (404).
type Routed = Option<HttpResponse>;

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
    let method = request.method.as_str();
    let found = match path.split('/').nth(2).unwrap_or_default() {
        "requests" => journal::handle(app, method, path, &query),
        "reset" => state::reset(app, method, path, &query),
        "snapshots" => state::snapshots(app, method, path),
        "faults" => chaos::faults(app, request, path),
        "rate-limits" => chaos::rate_limits(app, request, path),
        "outbox" => outbox::outbox(app, method, path, &query),
        "metrics" if path == "/_local/metrics" => Some(match method {
            "GET" => metrics(app),
            _ => not_allowed("GET"),
        }),
        "confirm" => outbox::confirm(app, request, path, &query),
        "ui" => inspector::handle(app, method, path, &query),
        _ => None,
    };
    found.unwrap_or_else(|| answer(404, &error("no such control endpoint", "not_found")))
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

pub(super) fn error(message: &str, code: &str) -> Value {
    json!({"error": message, "code": code})
}

pub(super) fn answer(status: u16, body: &Value) -> HttpResponse {
    HttpResponse {
        status,
        headers: vec![(
            "Content-Type",
            "application/json; charset=utf-8".to_string(),
        )],
        body: Body::Bytes(serde_json::to_vec(body).expect("a JSON value always serialises")),
    }
}

/// 405 naming what the endpoint answers.
pub(super) fn not_allowed(allowed: &str) -> HttpResponse {
    let mut response = answer(
        405,
        &error(&format!("this endpoint answers {allowed}"), "invalid_arg"),
    );
    response
        .headers
        .push(("Allow", allowed.replace(" or ", ", ")));
    response
}

/// 400 `invalid_arg`.
pub(super) fn invalid(why: &str) -> HttpResponse {
    answer(400, &error(why, "invalid_arg"))
}

/// An error from the store or the writer, in the control plane's JSON.
pub(super) fn failed(e: crate::error::Error) -> HttpResponse {
    match e {
        crate::error::Error::Api { message, .. } => invalid(&message),
        crate::error::Error::Overloaded(why) => answer(503, &error(why, "retry_later")),
        crate::error::Error::Internal(why) => answer(500, &error(&why, "internal")),
    }
}

/// The request's body as JSON; an empty body is `{}`.
pub(super) fn json_body(request: &HttpRequest) -> Result<Value, HttpResponse> {
    if request.body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    serde_json::from_slice(&request.body)
        .map_err(|e| invalid(&format!("the body is not valid JSON: {e}")))
}

fn metrics(app: &App) -> HttpResponse {
    let text = app.metrics.render(crate::metrics::Readings {
        queue_depth: app.store.writer().queue_depth(),
        database: app.store.path().to_path_buf(),
        connections: app.connections.open(),
        journal_entries: app.journal.len(),
    });
    HttpResponse {
        status: 200,
        headers: vec![("Content-Type", crate::metrics::CONTENT_TYPE.to_string())],
        body: Body::Bytes(text.into_bytes()),
    }
}
