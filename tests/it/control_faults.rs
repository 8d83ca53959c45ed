//! Faults on purpose and the real service's rate limits, as a client meets them.

use crate::support::http_client::{Client, form};
use crate::support::{KEY, OTHER_KEY, TestServer};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn total(server: &TestServer) -> i64 {
    server.call("getTotalContactsCount", &[("login", "test")])["result"]["total"]
        .as_i64()
        .unwrap()
}

fn import_one(server: &TestServer, email: &str) -> Value {
    server.call(
        "importContacts",
        &[("field_names[0]", "email"), ("data[0][0]", email)],
    )
}

#[test]
fn a_rule_with_times_2_fires_exactly_twice_and_writes_nothing() {
    let server = TestServer::start();
    let rule = server.control_ok(
        "POST",
        "/_local/faults",
        r#"{"method": "importContacts", "times": 2, "error": "invalid_arg"}"#,
    )["fault"]
        .clone();
    let id = rule["id"].as_u64().unwrap();
    for n in 0..2 {
        let answer = import_one(&server, &format!("f{n}@example.com"));
        assert_eq!(answer["code"], "invalid_arg", "{answer}");
        assert_eq!(answer["error"], "Invalid argument");
        assert_eq!(answer["result"], "");
    }
    assert_eq!(total(&server), 0, "an injected error writes nothing");
    assert_eq!(
        import_one(&server, "f3@example.com")["result"]["inserted"],
        1
    );
    assert_eq!(total(&server), 1);
    let listed = server.control_ok("GET", "/_local/faults", "")["faults"].clone();
    assert_eq!(listed[0]["id"], id);
    assert_eq!(listed[0]["fired"], 2);
    assert_eq!(listed[0]["times"], 0);
    let journal = server.control_ok("GET", "/_local/requests?method=importContacts", "");
    let outcomes: Vec<&Value> = journal["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["outcome"])
        .collect();
    assert_eq!(outcomes[1]["code"], "invalid_arg");
    assert_eq!(outcomes[2]["code"], "invalid_arg");

    assert_eq!(
        server.control_ok("DELETE", &format!("/_local/faults/{id}"), "")["deleted"],
        1
    );
    assert_eq!(
        server
            .control("DELETE", &format!("/_local/faults/{id}"), "")
            .status,
        404
    );
}

#[test]
fn rules_answer_http_statuses_drop_connections_and_delay_calls() {
    let server = TestServer::start();
    server.control_ok(
        "POST",
        "/_local/faults",
        r#"{"method": "getLists", "times": 1, "http_status": 503}"#,
    );
    server.control_ok(
        "POST",
        "/_local/faults",
        r#"{"method": "getLists", "times": 1, "http_status": 502}"#,
    );
    server.control_ok(
        "POST",
        "/_local/faults",
        r#"{"method": "getLists", "times": 1, "drop_connection": true}"#,
    );
    server.control_ok(
        "POST",
        "/_local/faults",
        r#"{"method": "createList", "times": 1, "delay_ms": 300}"#,
    );
    let body = form(&[("api_key", KEY)]);
    let mut client = Client::new(server.address);
    let first = client.post_form("/en/api/getLists", &body);
    assert_eq!(first.status, 503);
    assert_eq!(first.header("retry-after"), Some("1"));
    assert_eq!(first.json()["code"], "retry_later");
    let second = client.post_form("/en/api/getLists", &body);
    assert_eq!(second.status, 502);
    assert_eq!(second.header("retry-after"), None);

    let mut stream = TcpStream::connect(server.address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "POST /en/api/getLists HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut got = Vec::new();
    let read = stream.read_to_end(&mut got);
    assert!(
        got.is_empty(),
        "no answer at all, not {:?}",
        String::from_utf8_lossy(&got)
    );
    assert!(read.is_ok() || got.is_empty());

    // Every rule is used up: the method is answered normally again.
    assert_eq!(
        server.call("getLists", &[])["result"],
        serde_json::json!([])
    );
    let started = Instant::now();
    let created = server.call("createList", &[("title", "slow")]);
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(created["result"]["id"].as_i64().is_some(), "{created}");
}

#[test]
fn rules_can_name_an_account_or_every_method() {
    let server = TestServer::start();
    server.control_ok(
        "POST",
        "/_local/faults",
        r#"{"method": "*", "account": "other", "error": "access_denied"}"#,
    );
    assert!(server.call("getLists", &[])["result"].is_array());
    for method in ["getLists", "getFields", "getTags"] {
        assert_eq!(
            server.call_as(OTHER_KEY, method, &[])["code"],
            "access_denied"
        );
    }
    assert_eq!(
        server.control_ok("GET", "/_local/faults", "")["faults"][0]["fired"],
        3
    );
    assert_eq!(
        server.control_ok("DELETE", "/_local/faults", "")["deleted"],
        1
    );
    assert!(server.call_as(OTHER_KEY, "getLists", &[])["result"].is_array());
}

#[test]
fn a_bad_rule_is_refused_with_invalid_arg() {
    let server = TestServer::start();
    for bad in [
        "not json",
        "[]",
        r#"{"method": "getLists"}"#,
        r#"{"method": "getLists", "error": "no_such_code"}"#,
        r#"{"method": "getLists", "http_status": 418}"#,
    ] {
        let reply = server.control("POST", "/_local/faults", bad);
        assert_eq!(reply.status, 400, "{bad}");
        assert_eq!(reply.json()["code"], "invalid_arg");
        assert!(!reply.json()["error"].as_str().unwrap().is_empty());
    }
    assert_eq!(
        server.control_ok("GET", "/_local/faults", "")["faults"],
        serde_json::json!([])
    );
}

/// Sends `count` getLists calls on one connection; answers the codes of the refused ones.
fn burst(server: &TestServer, key: &str, method: &str, count: usize) -> Vec<String> {
    let mut client = Client::new(server.address);
    let body = form(&[("api_key", key)]);
    (0..count)
        .filter_map(|_| {
            let reply = client.post_form(&format!("/en/api/{method}"), &body);
            assert_eq!(reply.status, 200);
            reply.json()["code"].as_str().map(str::to_string)
        })
        .collect()
}

#[test]
fn real_rate_limits_refuse_the_1201st_call_and_recover() {
    let server = TestServer::start_with(&[
        "--account",
        &format!("test:{KEY}"),
        "--account",
        &format!("other:{OTHER_KEY}"),
        "--rate-limits",
        "real",
    ]);
    assert!(burst(&server, KEY, "getLists", 1200).is_empty());
    let refused = server.call("getLists", &[]);
    assert_eq!(refused["code"], "api_call_limit_exceeded_for_api_key");
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .starts_with("API call limit exceeded for API key")
    );
    assert!(
        burst(&server, OTHER_KEY, "getLists", 5).is_empty(),
        "per key"
    );

    // exportContacts has its own 20 a minute.
    assert!(burst(&server, OTHER_KEY, "exportContacts", 20).is_empty());
    assert_eq!(
        burst(&server, OTHER_KEY, "exportContacts", 1),
        ["api_call_limit_exceeded_for_api_key"]
    );

    // The same limits over a one-second window, to see the recovery without waiting a minute.
    let limits = server.control_ok(
        "POST",
        "/_local/rate-limits",
        r#"{"mode": "real", "window_seconds": 1}"#,
    );
    assert_eq!(limits["rate_limits"]["calls"], 1200);
    assert!(burst(&server, KEY, "getLists", 1200).is_empty());
    assert_eq!(
        burst(&server, KEY, "getLists", 1),
        ["api_call_limit_exceeded_for_api_key"]
    );
    std::thread::sleep(Duration::from_millis(1100));
    assert!(burst(&server, KEY, "getLists", 1).is_empty(), "recovered");

    server.control_ok("POST", "/_local/rate-limits", r#"{"mode": "off"}"#);
    assert!(burst(&server, KEY, "exportContacts", 30).is_empty());
    let bad = server.control("POST", "/_local/rate-limits", r#"{"calls": -1}"#);
    assert_eq!(bad.status, 400);
    let bad = server.control("POST", "/_local/rate-limits", r#"{"window_seconds": 0}"#);
    assert_eq!(bad.status, 400);
}
