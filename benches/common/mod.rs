//! What the benchmarks of the control plane, of scale and of files share: a server on a fresh
//! durable database with one account, a call that must succeed, and one JSON line per measure.

// Each benchmark uses a part of this.
#![allow(dead_code)]

use crate::http_client::Client;
use std::time::Instant;
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
