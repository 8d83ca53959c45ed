//! The properties the fuzz targets check, as proptest cases that run in `cargo test`: whatever
//! bytes arrive as a request's query and body, the in-process handler answers in the envelope,
//! never panics, and an error changes nothing.

use proptest::prelude::*;
use std::net::SocketAddr;
use std::sync::Arc;
use unisender_local::app::App;
use unisender_local::exports::export_dir;
use unisender_local::http::routes;
use unisender_local::http::wire::{Body, HttpRequest};
use unisender_local::store::Store;
use unisender_local::store::db::Durability;
use unisender_local::store::writer::Command;

const KEY: &str = "property-key-123456";

fn app(dir: &tempfile::TempDir) -> App {
    let db = dir.path().join("p.db");
    let store = Arc::new(Store::open(&db, Durability::Relaxed).expect("opens"));
    store
        .writer()
        .submit(|reply| Command::UpsertAccount {
            login: "p".into(),
            api_key: Some(KEY.into()),
            contact_limit: None,
            reply,
        })
        .expect("an account");
    App::new(
        store,
        export_dir(&db),
        SocketAddr::from(([127, 0, 0, 1], 1)),
        "http://127.0.0.1:1".into(),
        Default::default(),
        unisender_local::app::ControlOptions::quiet(),
    )
}

fn contacts(app: &App) -> i64 {
    app.store
        .read(|conn| Ok(conn.query_row("SELECT count(*) FROM contacts", [], |r| r.get(0))?))
        .unwrap()
}

/// Form pieces an import request is made of, valid and not, to be shuffled together.
fn piece() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(format!("api_key={KEY}")),
        Just("api_key=wrong".to_string()),
        (
            0u8..6,
            prop::sample::select(vec![
                "email",
                "phone",
                "tags",
                "email_status",
                "email_list_ids",
                "delete",
                "nope",
                "EMAIL"
            ])
        )
            .prop_map(|(i, c)| format!("field_names[{i}]={c}")),
        Just("field_names[]=email".to_string()),
        (
            0u16..600,
            0u8..7,
            prop::sample::select(vec![
                "a@b.cd",
                "x%40y.zz",
                "+15550001111",
                "bad",
                "",
                "1",
                "vip,new",
                "%FF",
                "%",
                "active",
                "2024-01-01"
            ])
        )
            .prop_map(|(r, c, v)| format!("data[{r}][{c}]={v}")),
        "[a-z\\[\\]%0-9=&]{0,30}",
        Just("test_mode=1".to_string()),
        Just("overwrite_tags=1".to_string()),
        Just("data[0]=scalar".to_string()),
        Just(format!("data{}=deep", "[0]".repeat(40))),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn any_import_request_answers_in_the_envelope(
        pieces in prop::collection::vec(piece(), 0..40),
        noise in prop::collection::vec(any::<u8>(), 0..64),
        in_query in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let app = app(&dir);
        let mut body = pieces.join("&").into_bytes();
        body.extend_from_slice(&noise);
        let before = contacts(&app);
        let (target, body) = if in_query {
            (format!("/en/api/importContacts?{}", String::from_utf8_lossy(&body).replace([' ', '#'], "")), Vec::new())
        } else {
            ("/en/api/importContacts".to_string(), body)
        };
        let request = HttpRequest {
            method: "POST".into(),
            target,
            headers: vec![("Content-Type".into(), "application/x-www-form-urlencoded".into())],
            body,
            memory: Default::default(),
            peer: None,
        };
        let answer = routes::handle(&app, 32 * 1024 * 1024, request);
        prop_assert!(matches!(answer.status, 200 | 413), "status {}", answer.status);
        let Body::Bytes(bytes) = answer.body else { panic!("a JSON body") };
        let json: serde_json::Value = serde_json::from_slice(&bytes).expect("valid JSON");
        if json.get("error").is_some() {
            prop_assert!(json["error"].is_string() && json["code"].is_string(), "{}", json);
            prop_assert_eq!(contacts(&app), before);
        }
        app.store.close();
    }

    #[test]
    fn any_bytes_anywhere_answer_in_the_envelope(
        path in prop::sample::select(vec!["/en/api/importContacts", "/en/api/exportContacts", "/en/api/subscribe", "/en/api/getContactCount", "/ru/api/async/exportContacts", "/x"]),
        body in prop::collection::vec(any::<u8>(), 0..256),
        content_type in prop::sample::select(vec!["application/x-www-form-urlencoded", "multipart/form-data; boundary=a", "application/json", ""]),
        gzip in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let app = app(&dir);
        let mut headers = vec![("Content-Type".to_string(), content_type.to_string())];
        if gzip {
            headers.push(("Content-Encoding".into(), "gzip".into()));
        }
        let request = HttpRequest { method: "POST".into(), target: format!("{path}?api_key={KEY}"), headers, body, memory: Default::default(), peer: None };
        let answer = routes::handle(&app, 1024 * 1024, request);
        let Body::Bytes(bytes) = answer.body else { panic!("a JSON body") };
        let json: serde_json::Value = serde_json::from_slice(&bytes).expect("valid JSON");
        prop_assert!(json.get("result").is_some());
        prop_assert!(json.get("error").is_none() || (json["error"].is_string() && json["code"].is_string() && json["result"] == ""));
        app.store.close();
    }
}
