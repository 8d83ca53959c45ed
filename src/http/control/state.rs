//! `/_local/reset` and `/_local/snapshots`: emptying accounts, and saving and putting back
//! the whole database.

use super::{Routed, answer, error, failed, invalid, not_allowed};
use crate::app::App;
use crate::params::Params;
use serde_json::json;

/// `POST /_local/reset[?account=LOGIN]`: through the writer, like any write.
pub(super) fn reset(app: &App, method: &str, path: &str, query: &Params) -> Routed {
    if path != "/_local/reset" {
        return None;
    }
    if method != "POST" {
        return Some(not_allowed("POST"));
    }
    let login = query.value("account").map(str::to_string);
    if login.as_deref() == Some("") {
        return Some(invalid(
            "account is empty: name a login, or leave it out to reset every account",
        ));
    }
    Some(match app.reset(login.as_deref()) {
        Ok(done) => answer(
            200,
            &json!({"reset": done.accounts, "cleared_requests": done.cleared_requests}),
        ),
        Err(e) => failed(e),
    })
}

/// `GET /_local/snapshots`, `POST /_local/snapshots/NAME`, `POST .../NAME/restore`,
/// `DELETE /_local/snapshots/NAME`.
pub(super) fn snapshots(app: &App, method: &str, path: &str) -> Routed {
    let rest = path.strip_prefix("/_local/snapshots")?;
    if rest.is_empty() || rest == "/" {
        return Some(match method {
            "GET" => match app.snapshots.list() {
                Ok(list) => answer(200, &json!({"snapshots": list})),
                Err(e) => failed(e),
            },
            _ => not_allowed("GET"),
        });
    }
    let rest = rest.strip_prefix('/')?;
    let (name, action) = match rest.split_once('/') {
        Some((name, "restore")) => (name, Some("restore")),
        Some(_) => return None,
        None => (rest, None),
    };
    let Ok(name) = crate::params::percent_decode(name.as_bytes()) else {
        return Some(invalid("the snapshot name is not valid UTF-8"));
    };
    let missing = || answer(404, &error(&format!("no snapshot \"{name}\""), "not_found"));
    Some(match (method, action) {
        ("POST", None) => match app.save_snapshot(&name) {
            Ok(info) => answer(200, &json!({"snapshot": info})),
            Err(e) => failed(e),
        },
        ("DELETE", None) => match app.snapshots.delete(&name) {
            Ok(true) => answer(200, &json!({"deleted": name})),
            Ok(false) => missing(),
            Err(e) => failed(e),
        },
        (_, None) => not_allowed("POST or DELETE"),
        ("POST", Some(_)) => {
            let started = std::time::Instant::now();
            match app.restore_snapshot(&name) {
                Ok(true) => answer(
                    200,
                    &json!({"restored": name, "duration_ms": started.elapsed().as_secs_f64() * 1000.0}),
                ),
                Ok(false) => missing(),
                Err(e) => failed(e),
            }
        }
        (_, Some(_)) => not_allowed("POST"),
    })
}
