//! `/_local/outbox` and `/_local/confirm`: the double opt-in emails the real service would
//! have sent, and clicking their links.

use super::{Routed, answer, error, failed, invalid, json_body, not_allowed};
use crate::app::App;
use crate::http::wire::{Body, HttpRequest, HttpResponse};
use crate::params::Params;
use crate::store::confirmations::{self, Confirmed, Selector};
use crate::store::writer::Command;
use serde_json::{Value, json};

/// `GET /_local/outbox?email=&account=&pending=1&limit=`, newest first.
pub(super) fn outbox(app: &App, method: &str, path: &str, query: &Params) -> Routed {
    if path != "/_local/outbox" {
        return None;
    }
    if method != "GET" {
        return Some(not_allowed("GET"));
    }
    let text = |name: &str| query.value(name).filter(|v| !v.is_empty());
    let email = text("email").map(str::to_lowercase);
    let pending = match text("pending") {
        None | Some("0") => false,
        Some("1") => true,
        Some(other) => return Some(invalid(&format!("pending is 0 or 1, not \"{other}\""))),
    };
    let limit = match text("limit").map(str::parse::<i64>) {
        None => confirmations::MAX_LISTED,
        Some(Ok(n)) if n >= 0 => n,
        Some(_) => return Some(invalid("limit must be a whole number")),
    };
    let listed = app.store.read(|conn| {
        confirmations::outbox(conn, email.as_deref(), text("account"), pending, limit)
    });
    Some(match listed {
        Ok(entries) => {
            let entries: Vec<Value> = entries
                .into_iter()
                .map(|entry| {
                    let link = format!("{}/_local/confirm/{}", app.public_url, entry.token);
                    let mut shown = serde_json::to_value(entry).unwrap_or_default();
                    shown["link"] = link.into();
                    shown
                })
                .collect();
            answer(200, &json!({"outbox": entries}))
        }
        Err(e) => failed(e),
    })
}

/// `GET /_local/confirm/TOKEN` (the link) and `POST /_local/confirm` with `email` or `phone`
/// (and optionally `account` and `ip`), in a JSON body or the query.
pub(super) fn confirm(app: &App, request: &HttpRequest, path: &str, query: &Params) -> Routed {
    let rest = path.strip_prefix("/_local/confirm")?;
    let clicked_from = request
        .peer
        .map_or_else(|| "127.0.0.1".to_string(), |peer| peer.ip().to_string());
    if let Some(token) = rest.strip_prefix('/') {
        if !matches!(request.method.as_str(), "GET" | "POST") {
            return Some(not_allowed("GET or POST"));
        }
        let well_formed = token.len() == 32 && token.bytes().all(|b| b.is_ascii_hexdigit());
        if !well_formed {
            return Some(unknown_link(request));
        }
        let selector = Selector::Token(token.to_string());
        return Some(match run(app, selector, clicked_from) {
            Ok(done) if done.found_nothing() => unknown_link(request),
            Ok(done) => confirmed_answer(request, &done),
            Err(refused) => refused,
        });
    }
    if !rest.is_empty() {
        return None;
    }
    if request.method != "POST" {
        return Some(not_allowed("POST"));
    }
    let body = match json_body(request) {
        Ok(body) => body,
        Err(refused) => return Some(refused),
    };
    let field = |name: &str| -> Option<String> {
        body.get(name)
            .and_then(Value::as_str)
            .or_else(|| query.value(name))
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    let email = field("email").map(|e| e.to_lowercase());
    // As subscribe stores it: '+' and digits.
    let phone = match field("phone") {
        Some(raw) => match crate::model::Phone::parse(&raw) {
            Some(phone) => Some(phone.as_str().to_string()),
            None => {
                return Some(invalid(&format!(
                    "phone \"{}\" is not a phone number",
                    raw.escape_debug()
                )));
            }
        },
        None => None,
    };
    if email.is_none() && phone.is_none() {
        return Some(invalid("give email or phone: whose invitation to confirm"));
    }
    let ip = field("ip").unwrap_or(clicked_from);
    if ip.parse::<std::net::IpAddr>().is_err() {
        return Some(invalid(&format!(
            "ip \"{}\" is not an IP address",
            ip.escape_debug()
        )));
    }
    let selector = Selector::Address {
        account: field("account"),
        email,
        phone,
    };
    Some(match run(app, selector, ip) {
        Ok(done) if done.found_nothing() => answer(
            404,
            &error("no double opt-in invitation for that address", "not_found"),
        ),
        Ok(done) => answer(200, &json!(done)),
        Err(refused) => refused,
    })
}

fn run(app: &App, selector: Selector, ip: String) -> Result<Confirmed, HttpResponse> {
    app.store
        .writer()
        .submit(|reply| Command::Confirm {
            selector,
            ip,
            reply,
        })
        .map_err(failed)
}

/// A person opening the link in a browser reads a page; a program gets JSON.
fn wants_html(request: &HttpRequest) -> bool {
    request
        .header("accept")
        .is_some_and(|accept| accept.contains("text/html"))
}

fn confirmed_answer(request: &HttpRequest, done: &Confirmed) -> HttpResponse {
    if wants_html(request) {
        let text = if done.confirmed.is_empty() {
            "This subscription was already confirmed."
        } else {
            "Thank you: your subscription is confirmed."
        };
        return page(200, text);
    }
    answer(200, &json!(done))
}

fn unknown_link(request: &HttpRequest) -> HttpResponse {
    if wants_html(request) {
        return page(404, "This confirmation link is not known.");
    }
    answer(404, &error("no confirmation has that token", "not_found"))
}

fn page(status: u16, text: &str) -> HttpResponse {
    let html = format!(
        "<!doctype html><html lang=\"en\"><meta charset=\"utf-8\"><title>unisender-local</title>\
         <body style=\"font-family:sans-serif;margin:3em\"><p>{text}</p></body></html>"
    );
    HttpResponse {
        status,
        headers: vec![("Content-Type", "text/html; charset=utf-8".to_string())],
        body: Body::Bytes(html.into_bytes()),
    }
}
