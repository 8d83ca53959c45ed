//! One line per request on stderr: time, peer, method or path, account login (never a key),
//! HTTP status, API code, rows for imports, duration. Text for people, JSON for log shippers.

use serde_json::json;
use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

/// How requests are logged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
    /// No request lines (errors of the server are still logged).
    Quiet,
}

/// What a request came to, as the log and the journal tell it.
#[derive(Debug, Default)]
pub struct Seen {
    /// The API method (`importContacts`), when the path named one.
    pub method: Option<String>,
    /// The account whose valid key the call carried.
    pub account: Option<String>,
    /// The API error code, when the call failed.
    pub code: Option<&'static str>,
    /// Rows of an importContacts call.
    pub rows: Option<usize>,
}

pub fn write(
    format: LogFormat,
    peer: Option<SocketAddr>,
    path: &str,
    seen: &Seen,
    status: u16,
    elapsed: Duration,
) {
    if format == LogFormat::Quiet {
        return;
    }
    let time = crate::model::Timestamp::now_wire_ms();
    let peer = peer.map_or_else(|| "-".to_string(), |p| p.to_string());
    let what = seen.method.as_deref().unwrap_or(path);
    let millis = elapsed.as_secs_f64() * 1000.0;
    let line = match format {
        LogFormat::Quiet => return,
        LogFormat::Text => format!(
            "{time} {peer} {what} {} {status} {}{} {millis:.1}ms",
            seen.account.as_deref().unwrap_or("-"),
            seen.code.unwrap_or("-"),
            seen.rows
                .map_or(String::new(), |rows| format!(" rows={rows}")),
        ),
        LogFormat::Json => json!({
            "time": time,
            "peer": peer,
            "method": what,
            "account": seen.account,
            "status": status,
            "code": seen.code,
            "rows": seen.rows,
            "duration_ms": (millis * 1000.0).round() / 1000.0,
        })
        .to_string(),
    };
    // One write per line, so that lines of concurrent requests do not interleave.
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}
