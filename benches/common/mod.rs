//! What the benchmarks of the control plane, of scale and of files share: a server on a fresh
//! durable database with one account, a call that must succeed, and one JSON line per measure.

// Each benchmark uses a part of this.
#![allow(dead_code)]

use crate::http_client::Client;
use std::path::Path;
use std::time::{Duration, Instant};
use unisender_local::server::{ServeConfig, Server};
use unisender_local::store::db::Durability;

pub const KEY: &str = "bench-key-0123456789";

/// Prints a measure as one JSON object.
pub fn report(name: &str, value: f64, unit: &str) {
    let value = (value * 1000.0).round() / 1000.0;
    println!(
        "{}",
        serde_json::json!({"name": name, "value": value, "unit": unit})
    );
}

/// POSTs a form; panics unless it is answered 200 without an API error.
pub fn post(client: &mut Client, path: &str, body: &str) -> serde_json::Value {
    let reply = client.post_form(path, body);
    assert_eq!(
        reply.status,
        200,
        "{path}: {}",
        String::from_utf8_lossy(&reply.body)
    );
    let json = reply.json();
    assert!(json.get("error").is_none(), "{path}: {json}");
    json
}

/// The number after `name` on the command line; `quick` (with `--quick`) or `full` without one.
pub fn size_arg(name: &str, quick: usize, full: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    let given = args
        .iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok());
    given.unwrap_or(if args.iter().any(|a| a == "--quick") {
        quick
    } else {
        full
    })
}

/// A quiet, durable server on `db` with the account `bench` (KEY).
pub fn server(db: std::path::PathBuf) -> Server {
    Server::start(ServeConfig {
        db,
        accounts: vec![("bench".into(), KEY.into())],
        durability: Durability::Full,
        control: unisender_local::app::ControlOptions::quiet(),
        ..ServeConfig::default()
    })
    .expect("the server starts")
}

/// How long `work` took, in milliseconds, with its value.
pub fn timed<T>(work: impl FnOnce() -> T) -> (T, f64) {
    let started = Instant::now();
    let value = work();
    (value, started.elapsed().as_secs_f64() * 1000.0)
}

/// The median of `runs` timings of `work`, in ms.
pub fn median_ms(runs: usize, mut work: impl FnMut()) -> f64 {
    let mut times: Vec<f64> = (0..runs).map(|_| timed(&mut work).1).collect();
    times.sort_by(f64::total_cmp);
    times[runs / 2]
}

/// One-row imports every 5 ms for as long as `pending_sql` (a count, read from the database at
/// `db`) is above 0: how long writes wait behind the writer's background work. Answers each
/// import's time in ms, sorted, and how long the work took in seconds.
pub fn writes_while(
    client: &mut Client,
    db: &Path,
    pending_sql: &str,
    prefix: &str,
) -> (Vec<f64>, f64) {
    let probe =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("opens the database to watch it");
    let pending = || -> i64 { probe.query_row(pending_sql, [], |r| r.get(0)).unwrap() };
    let started = Instant::now();
    let mut waits = Vec::new();
    while pending() > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(1800),
            "the background work ends"
        );
        let body = format!(
            "api_key={KEY}&field_names%5B0%5D=email&data%5B0%5D%5B0%5D={prefix}{}%40probe.example",
            waits.len()
        );
        waits.push(timed(|| post(client, "/en/api/importContacts", &body)).1);
        std::thread::sleep(Duration::from_millis(5));
    }
    waits.sort_by(f64::total_cmp);
    (waits, started.elapsed().as_secs_f64())
}
