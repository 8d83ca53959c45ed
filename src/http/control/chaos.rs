//! `/_local/faults` and `/_local/rate-limits`: what makes calls fail on purpose.

use super::{Routed, answer, error, invalid, json_body, not_allowed};
use crate::app::App;
use crate::http::wire::HttpRequest;
use crate::rate_limits::Limits;
use serde_json::{Value, json};

/// `GET|POST|DELETE /_local/faults`, `DELETE /_local/faults/ID`.
pub(super) fn faults(app: &App, request: &HttpRequest, path: &str) -> Routed {
    let rest = path.strip_prefix("/_local/faults")?;
    let method = request.method.as_str();
    if rest.is_empty() {
        return Some(match method {
            "GET" => answer(200, &json!({"faults": app.faults.list()})),
            "POST" => match json_body(request)
                .and_then(|body| app.faults.add(&body).map_err(|why| invalid(&why)))
            {
                Ok(rule) => answer(200, &json!({"fault": rule})),
                Err(refused) => refused,
            },
            "DELETE" => answer(200, &json!({"deleted": app.faults.remove(None)})),
            _ => not_allowed("GET, POST or DELETE"),
        });
    }
    let id = rest.strip_prefix('/')?;
    Some(match (method, id.parse::<u64>()) {
        ("DELETE", Ok(id)) => match app.faults.remove(Some(id)) {
            0 => answer(404, &error(&format!("no fault rule {id}"), "not_found")),
            deleted => answer(200, &json!({"deleted": deleted})),
        },
        ("DELETE", Err(_)) => invalid(&format!("\"{}\" is not a rule id", id.escape_debug())),
        _ => not_allowed("DELETE"),
    })
}

/// `GET /_local/rate-limits`; `POST` with `{"mode": "real"|"off"}` or the numbers themselves.
pub(super) fn rate_limits(app: &App, request: &HttpRequest, path: &str) -> Routed {
    if path != "/_local/rate-limits" {
        return None;
    }
    Some(match request.method.as_str() {
        "GET" => answer(200, &json!({"rate_limits": app.rate_limits.limits()})),
        "POST" => {
            let limits = json_body(request).and_then(|body| {
                parse_limits(&body, app.rate_limits.limits()).map_err(|why| invalid(&why))
            });
            match limits {
                Ok(limits) => match app.rate_limits.set(limits) {
                    Ok(()) => answer(200, &json!({"rate_limits": limits})),
                    Err(why) => invalid(&why),
                },
                Err(refused) => refused,
            }
        }
        _ => not_allowed("GET or POST"),
    })
}

/// `{"mode": "real"}` (the real service's numbers), `{"mode": "off"}`, or any of the fields
/// of `Limits` laid over the limits in force.
fn parse_limits(body: &Value, current: Limits) -> Result<Limits, String> {
    let mut object = body
        .as_object()
        .cloned()
        .ok_or("the body must be a JSON object")?;
    let base = match object.remove("mode") {
        None => current,
        Some(Value::String(mode)) if mode == "real" => Limits::REAL,
        Some(Value::String(mode)) if mode == "off" => Limits::OFF,
        Some(other) => return Err(format!("mode is \"real\" or \"off\", not {other}")),
    };
    let mut merged = serde_json::to_value(base).map_err(|e| e.to_string())?;
    for (name, value) in object {
        merged[name] = value;
    }
    serde_json::from_value(merged).map_err(|e| format!("rate limits: {e}"))
}
