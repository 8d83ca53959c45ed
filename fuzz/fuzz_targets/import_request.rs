//! A whole importContacts request through the in-process handler: any body answers in the JSON
//! envelope of the contract, never panics, and a refused call changes nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use unisender_local::app::App;
use unisender_local::exports::export_dir;
use unisender_local::http::routes;
use unisender_local::http::wire::{Body, HttpRequest};
use unisender_local::store::Store;
use unisender_local::store::db::Durability;
use unisender_local::store::writer::Command;

const KEY: &str = "fuzz-key-0123456789";

/// One server for the whole run (a database per input would measure tempfile, not the handler).
fn app() -> &'static App {
    static APP: OnceLock<(App, tempfile::TempDir)> = OnceLock::new();
    &APP.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temp dir");
        let db = dir.path().join("fuzz.db");
        let store = Arc::new(Store::open(&db, Durability::Relaxed).expect("opens"));
        store
            .writer()
            .submit(|reply| Command::UpsertAccount {
                login: "fuzz".into(),
                api_key: Some(KEY.into()),
                contact_limit: None,
                reply,
            })
            .expect("an account");
        for title in ["One", "Two"] {
            let list = unisender_local::store::apply_catalog::NewList {
                account_id: 1,
                title: title.into(),
                before_subscribe_url: String::new(),
                after_subscribe_url: String::new(),
            };
            let _ = store
                .writer()
                .submit(|reply| Command::CreateList(list, reply));
        }
                let app = App::new(
            store,
            export_dir(&db),
            SocketAddr::from(([127, 0, 0, 1], 1)),
            "http://127.0.0.1:1".into(),
            Default::default(),
            unisender_local::app::ControlOptions::quiet(),
        );
        (app, dir)
    })
    .0
}

fn contacts(app: &App) -> i64 {
    app.store
        .read(|conn| Ok(conn.query_row("SELECT count(*) FROM contacts", [], |r| r.get(0))?))
        .expect("counts")
}

fuzz_target!(|data: &[u8]| {
    let app = app();
    // A valid key and the start of a plausible call, then the fuzzer's bytes.
    let mut body = format!("api_key={KEY}&field_names[0]=email&").into_bytes();
    body.extend_from_slice(data);
    let before = contacts(app);
    let request = HttpRequest {
        method: "POST".into(),
        target: "/en/api/importContacts".into(),
        headers: vec![(
            "Content-Type".into(),
            "application/x-www-form-urlencoded".into(),
        )],
        body,
        memory: Default::default(),
        peer: None,
    };
    let answer = routes::handle(app, 32 * 1024 * 1024, request);
    assert!(
        matches!(answer.status, 200 | 413),
        "status {}",
        answer.status
    );
    let Body::Bytes(bytes) = answer.body else {
        panic!("a JSON body")
    };
    let json: serde_json::Value = serde_json::from_slice(&bytes).expect("valid JSON");
    if json.get("error").is_some() {
        assert!(
            json["error"].is_string() && json["code"].is_string(),
            "{json}"
        );
        assert_eq!(contacts(app), before, "a refused call changed something");
    }
});
