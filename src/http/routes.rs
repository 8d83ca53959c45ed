//! Paths to methods (§1.1), and every answer put in the envelope of §2.

use crate::api::{self, Answer};
use crate::app::App;
use crate::error::{Error, ErrorCode};
use crate::http::body::{BodyError, request_params};
use crate::http::wire::{Body, HttpRequest, HttpResponse};
use serde_json::{Value, json};

const LANGUAGES: [&str; 4] = ["en", "ru", "ua", "it"];

/// Answers one request.
pub fn handle(app: &App, max_body: usize, request: HttpRequest) -> HttpResponse {
    let path = request
        .target
        .split_once('?')
        .map_or(request.target.as_str(), |(p, _)| p);
    if path == "/_local/health" {
        return match request.method.as_str() {
            "GET" => health(app),
            _ => method_not_allowed(),
        };
    }
    if let Some(file) = path.strip_prefix("/_local/exports/") {
        return match request.method.as_str() {
            "GET" => export_file(app, file),
            _ => method_not_allowed(),
        };
    }
    let Some(method) = api_method(path) else {
        return envelope(
            404,
            &json!({"error": "no such path", "code": "unknown_method"}),
            &[],
        );
    };
    if request.method != "GET" && request.method != "POST" {
        return method_not_allowed();
    }
    let params = match request_params(&request, max_body) {
        Ok(params) => params,
        Err(BodyError::TooLarge) => {
            return refusal(413, "the body is larger than 32 MiB once decompressed");
        }
        Err(BodyError::Invalid(why)) => return error_answer(Error::invalid_arg(why)),
    };
    let base_url = match request.header("host") {
        Some(host) if valid_host(host) => format!("http://{host}"),
        _ => format!("http://{}", app.address),
    };
    match api::call(app, &base_url, method, &params) {
        Ok(answer) => success(answer),
        Err(error) => error_answer(error),
    }
}

/// `/{lang}/api/{method}` or `/{lang}/api/async/{method}` to the method's name
/// (`async/` kept as part of it).
fn api_method(path: &str) -> Option<&str> {
    let rest = path.strip_prefix('/')?;
    let (lang, rest) = rest.split_once('/')?;
    let method = rest.strip_prefix("api/")?;
    let name = method.strip_prefix("async/").unwrap_or(method);
    let well_formed = LANGUAGES.contains(&lang)
        && !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    well_formed.then_some(method)
}

/// A Host header fit to build a URL on: a host name or address and an optional port.
fn valid_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 255
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
}

/// An async export's CSV file; no key is needed, the name is the secret (as with the real service).
fn export_file(app: &App, file: &str) -> HttpResponse {
    let opened = file
        .strip_suffix(".csv")
        .and_then(|token| app.exporter.file(token))
        .and_then(|path| std::fs::File::open(path).ok());
    match opened {
        Some(file) => HttpResponse {
            status: 200,
            headers: vec![
                ("Content-Type", "text/csv; charset=utf-8".to_string()),
                (
                    "Content-Disposition",
                    "attachment; filename=\"contacts.csv\"".to_string(),
                ),
            ],
            body: Body::File(file),
        },
        None => envelope(
            404,
            &json!({"error": "no such export file (it may have expired)", "code": "unspecified"}),
            &[],
        ),
    }
}

fn health(app: &App) -> HttpResponse {
    match api::health(&app.store) {
        Ok(()) => envelope(200, &json!({"status": "ok"}), &[]),
        Err(error) => error_answer(error),
    }
}

fn method_not_allowed() -> HttpResponse {
    let body = json!({"error": "only GET and POST are served", "code": "unknown_method"});
    envelope(405, &body, &[("Allow", "GET, POST".into())])
}

fn success(answer: Answer) -> HttpResponse {
    let mut body = json!({"result": answer.result});
    if !answer.warnings.is_empty() {
        let warnings: Vec<Value> = answer
            .warnings
            .iter()
            .map(|w| json!({"warning": w}))
            .collect();
        body["warnings"] = Value::Array(warnings);
    }
    envelope(200, &body, &[])
}

/// Every failure in its envelope: API errors are HTTP 200 as the contract says, overload is 503
/// with `Retry-After`, and a fault of the server is 500 with its details only in the log.
pub fn error_answer(error: Error) -> HttpResponse {
    match error {
        Error::Api { code, message } => {
            envelope(200, &json!({"error": message, "code": code.wire()}), &[])
        }
        Error::Overloaded(why) => envelope(
            503,
            &json!({"error": format!("the server is busy ({why}); retry later"), "code": ErrorCode::RetryLater.wire()}),
            &[("Retry-After", "1".into())],
        ),
        Error::Internal(detail) => {
            eprintln!("error: {detail}");
            refusal(500, "internal server error")
        }
    }
}

/// An answer outside the API's own errors (bad HTTP, a body too large, a fault), still in the
/// envelope so that a client can read it.
pub fn refusal(status: u16, message: &str) -> HttpResponse {
    let code = match status {
        413 | 400 | 501 | 505 => ErrorCode::InvalidArg,
        503 => ErrorCode::RetryLater,
        _ => ErrorCode::Unspecified,
    };
    let retry = match status {
        503 => vec![("Retry-After", "1".to_string())],
        _ => Vec::new(),
    };
    envelope(
        status,
        &json!({"error": message, "code": code.wire()}),
        &retry,
    )
}

fn envelope(status: u16, body: &Value, extra: &[(&'static str, String)]) -> HttpResponse {
    let mut headers = vec![(
        "Content-Type",
        "application/json; charset=utf-8".to_string(),
    )];
    headers.extend(extra.iter().cloned());
    HttpResponse {
        status,
        headers,
        body: Body::Bytes(serde_json::to_vec(body).expect("a JSON value always serialises")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(api_method("/en/api/importContacts"), Some("importContacts"));
        assert_eq!(
            api_method("/ru/api/async/exportContacts"),
            Some("async/exportContacts")
        );
        assert_eq!(api_method("/de/api/getLists"), None);
        assert_eq!(api_method("/en/api/"), None);
        assert_eq!(api_method("/en/api/a/b"), None);
        assert_eq!(api_method("/api/getLists"), None);
        assert_eq!(api_method("/"), None);
    }
}
