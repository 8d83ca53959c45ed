//! Paths to methods (§1.1), and every answer put in the envelope of §2.

use crate::api::{self, Answer};
use crate::app::App;
use crate::error::{Error, ErrorCode};
use crate::faults::Failure;
use crate::http::body::{BodyError, Form};
use crate::http::control;
use crate::http::memory::Reservation;
use crate::http::request_log::{self, Seen};
use crate::http::wire::{Body, HttpRequest, HttpResponse};
use crate::journal::{BoundedParams, JournalEntry, RecordedParams, RecordedRequest};
use crate::params::Params;
use crate::store::db::Account;
use serde_json::{Value, json};
use std::time::Instant;

const LANGUAGES: [&str; 4] = ["en", "ru", "ua", "it"];

/// Answers one request, logs it, and records an API call in the journal.
pub fn handle(app: &App, max_body: usize, request: HttpRequest) -> HttpResponse {
    let started = Instant::now();
    let peer = request.peer;
    let path = request
        .target
        .split_once('?')
        .map_or(request.target.as_str(), |(p, _)| p)
        .to_string();
    let arrived = std::time::SystemTime::now();
    let mut seen = Seen::default();
    let mut journal = None;
    let response = route(app, max_body, request, &path, &mut seen, &mut journal);
    let elapsed = started.elapsed();
    request_log::write(
        app.control.log,
        peer,
        &path,
        &seen,
        response.status,
        elapsed,
    );
    if let Some(method) = seen.method.as_deref().filter(|_| app.control.metrics) {
        app.metrics.call(method, seen.code, elapsed.as_secs_f64());
    }
    if let Some((params, outcome)) = journal {
        app.journal.record(JournalEntry {
            id: 0,
            time: arrived,
            account: seen.account,
            method: seen.method.unwrap_or_default(),
            params,
            status: response.status,
            outcome,
            answer: match &response.body {
                Body::Bytes(bytes) => {
                    bytes[..bytes.len().min(crate::journal::ANSWER_BYTES)].to_vec()
                }
                Body::File(_) => Vec::new(),
            },
            duration_ms: (elapsed.as_secs_f64() * 1e6).round() / 1000.0,
        });
    }
    response
}

/// The answer to a request at `path`; what the log and the journal need is left in `seen` and
/// `journal` (an API call's rendered parameters and outcome).
fn route(
    app: &App,
    max_body: usize,
    mut request: HttpRequest,
    path: &str,
    seen: &mut Seen,
    journal: &mut Option<(Option<RecordedParams>, Value)>,
) -> HttpResponse {
    if path == "/_local/health" {
        return match request.method.as_str() {
            // HEAD too, for load balancers and container health checks (`wire` drops the body).
            "GET" | "HEAD" => health(app),
            _ => method_not_allowed(),
        };
    }
    if let Some(file) = path.strip_prefix("/_local/exports/") {
        // The API's own download links: keyless and unguessable, as the real service's.
        return match request.method.as_str() {
            "GET" => export_file(app, file),
            _ => method_not_allowed(),
        };
    }
    if path.starts_with("/_local/") {
        return control::handle(app, &request, path);
    }
    let Some(name) = api_method(path) else {
        return envelope(404, &error_body("no such path", "unknown_method"), &[]);
    };
    if request.method != "GET" && request.method != "POST" {
        return method_not_allowed();
    }
    seen.method = Some(name.to_string());
    let Some(method) = api::method(name) else {
        return error_answer(Error::api(
            ErrorCode::UnknownMethod,
            format!("unknown method \"{name}\""),
        ));
    };
    // The body's part of the memory budget, grown as it is decompressed and decoded.
    let mut memory = std::mem::take(&mut request.memory);
    let import_rows = name == "importContacts";
    let params = match read_params(app, &request, max_body, &mut memory, import_rows) {
        Ok(params) => params,
        Err(answer) => return answer,
    };
    // The parameters own their text now: the body's bytes can go before the call runs, or
    // into the journal, which decodes them again only when listed.
    let kept_request = (app.journal.is_enabled()
        && params.is_ok()
        && request.body.len() <= crate::journal::MAX_KEPT_BODY)
        .then(|| keep_for_journal(&mut request));
    drop(request);
    let (account, params) = match params {
        Ok(found) => found,
        Err(error) => {
            // Without a valid key the form is never decoded: the call is journaled without
            // its parameters.
            let code = error_code(&error);
            seen.code = Some(code);
            if app.journal.is_enabled() {
                *journal = Some((None, json!({"code": code})));
            }
            return error_answer(error);
        }
    };
    seen.account = Some(account.login.clone());
    if let Some(refused) = refused_on_purpose(app, name, &account.login, seen) {
        if app.journal.is_enabled() {
            let outcome = match seen.code {
                Some(code) => json!({"code": code, "status": refused.status}),
                None => json!({"status": refused.status}),
            };
            *journal = Some((Some(recorded(kept_request, params)), outcome));
        }
        return refused;
    }
    if name == "importContacts" {
        seen.rows = crate::import_plan::Data::of(&params).and_then(|data| data.row_count());
    }
    let result = api::call(app, method, account, &params);
    let outcome = match &result {
        Ok(answer) if name == "importContacts" => {
            // A dry run (test_mode) imports nothing.
            let counted = if params.value("test_mode") == Some("1") || !app.control.metrics {
                &[][..]
            } else {
                &["inserted", "updated", "deleted", "invalid"][..]
            };
            for &counter in counted {
                let rows = answer.result.get(counter).and_then(Value::as_u64);
                app.metrics.imported(counter, rows.unwrap_or(0));
            }
            summary(&answer.result)
        }
        Ok(_) => json!({"result": "ok"}),
        Err(error) => {
            let code = error_code(error);
            seen.code = Some(code);
            json!({"code": code})
        }
    };
    if app.journal.is_enabled() {
        *journal = Some((Some(recorded(kept_request, params)), outcome));
    }
    match result {
        Ok(answer) => success(answer),
        Err(error) => error_answer(error),
    }
}

/// The answer when a rate limit or a fault rule (`faults.rs`) stops the call before it runs;
/// a rule's delay is waited here.
fn refused_on_purpose(
    app: &App,
    method: &str,
    login: &str,
    seen: &mut Seen,
) -> Option<HttpResponse> {
    if let Err(error) = app.rate_limits.admit(login, method) {
        seen.code = Some(error_code(&error));
        return Some(error_answer(error));
    }
    let injected = app.faults.take(method, Some(login))?;
    if !injected.delay.is_zero() {
        std::thread::sleep(injected.delay);
    }
    let why = format!("injected by fault rule {}", injected.rule_id);
    let answer = match injected.failure {
        Failure::None => return None,
        Failure::Api(ErrorCode::RetryLater) => envelope(
            503,
            &error_body(ErrorCode::RetryLater.stock_message(), "retry_later"),
            &[("Retry-After", "1".into())],
        ),
        Failure::Api(code) => envelope(200, &error_body(code.stock_message(), code.wire()), &[]),
        Failure::Http(status) => refusal(status, &why),
        Failure::Drop => HttpResponse::dropped(),
    };
    seen.code = match injected.failure {
        Failure::Api(code) => Some(code.wire()),
        _ => None,
    };
    Some(answer)
}

/// What the journal needs to decode the call's form again: its query, form headers and body.
fn keep_for_journal(request: &mut HttpRequest) -> RecordedRequest {
    let headers = request
        .headers
        .iter()
        .filter(|(name, _)| {
            name.eq_ignore_ascii_case("content-type")
                || name.eq_ignore_ascii_case("content-encoding")
        })
        .cloned()
        .collect();
    RecordedRequest {
        target: std::mem::take(&mut request.target),
        headers,
        body: std::mem::take(&mut request.body),
    }
}

/// The journal's record of a call's parameters: the request as it came when it was kept, or
/// else the decoded parameters cut to bounds now.
fn recorded(kept: Option<RecordedRequest>, params: Params) -> RecordedParams {
    match kept {
        Some(request) => RecordedParams::Request(request),
        None => RecordedParams::Bounded(BoundedParams::new(params)),
    }
}

/// An import's counters, for the journal.
fn summary(result: &Value) -> Value {
    let mut counters = serde_json::Map::new();
    for name in [
        "total",
        "inserted",
        "updated",
        "deleted",
        "new_emails",
        "invalid",
    ] {
        if let Some(count) = result.get(name) {
            counters.insert(name.to_string(), count.clone());
        }
    }
    Value::Object(counters)
}

/// The wire code an error is answered with.
fn error_code(error: &Error) -> &'static str {
    match error {
        Error::Api { code, .. } => code.wire(),
        Error::Overloaded(_) => ErrorCode::RetryLater.wire(),
        Error::Internal(_) => ErrorCode::Unspecified.wire(),
    }
}

/// The key checked before the form is decoded, so that a request without a valid key never
/// costs a parameter tree; then the parameters. An HTTP-level refusal comes back as `Err`.
/// `import_rows`: an import call, whose cells are read as rows (`Form::decode`).
fn read_params(
    app: &App,
    request: &HttpRequest,
    max_body: usize,
    memory: &mut Reservation,
    import_rows: bool,
) -> Result<Result<(Account, Params), Error>, HttpResponse> {
    let form = Form::read(request, max_body, memory).map_err(body_refusal)?;
    let account = match api::authenticate(&app.store, form.plain_value("api_key").as_deref()) {
        Ok(account) => account,
        Err(error) => return Ok(Err(error)),
    };
    match form.decode(memory, import_rows) {
        Ok(params) => Ok(Ok((account, params))),
        Err(error) => Err(body_refusal(error)),
    }
}

fn body_refusal(error: BodyError) -> HttpResponse {
    match error {
        BodyError::TooLarge(why) => refusal(413, &why),
        BodyError::OverBudget => {
            refusal(503, "the server holds too many request bytes; retry later")
        }
        BodyError::Invalid(why) => error_answer(Error::invalid_arg(why)),
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
            &error_body("no such export file (it may have expired)", "unspecified"),
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
    let body = error_body("only GET and POST are served", "unknown_method");
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
        Error::Api { code, message } => envelope(200, &error_body(&message, code.wire()), &[]),
        Error::Overloaded(why) => envelope(
            503,
            &error_body(
                &format!("the server is busy ({why}); retry later"),
                ErrorCode::RetryLater.wire(),
            ),
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
    envelope(status, &error_body(message, code.wire()), &retry)
}

/// An error's body, as every documented error example of the real service shows it: the
/// message, the code, and an empty `result` (§2).
fn error_body(message: &str, code: &str) -> Value {
    json!({"error": message, "code": code, "result": ""})
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
