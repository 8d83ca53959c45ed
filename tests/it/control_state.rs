//! The control plane's state endpoints: reset and snapshots, alone and under concurrent imports.

use crate::support::{KEY, OTHER_KEY, TestServer};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// What an account's API shows: its contacts (every exported column), lists, fields and tags.
fn state(server: &TestServer, key: &str) -> Value {
    let call = |method: &str, pairs: &[(&str, &str)]| {
        let answer = server.call_as(key, method, pairs);
        assert!(answer.get("error").is_none(), "{method}: {answer}");
        answer["result"].clone()
    };
    json!({
        "contacts": call("exportContacts", &[("limit", "1000")]),
        "lists": call("getLists", &[]),
        "fields": call("getFields", &[]),
        "tags": call("getTags", &[]),
    })
}

fn fixture(server: &TestServer, key: &str, prefix: &str, count: usize) {
    let list = server.call_as(key, "createList", &[("title", &format!("{prefix} list"))])["result"]
        ["id"]
        .to_string();
    server.call_as(key, "createField", &[("name", "City"), ("type", "string")]);
    let mut pairs = vec![
        ("field_names[0]".to_string(), "email".to_string()),
        ("field_names[1]".to_string(), "email_list_ids".to_string()),
        ("field_names[2]".to_string(), "tags".to_string()),
        ("field_names[3]".to_string(), "City".to_string()),
    ];
    for row in 0..count {
        pairs.push((
            format!("data[{row}][0]"),
            format!("{prefix}{row}@example.com"),
        ));
        pairs.push((format!("data[{row}][1]"), list.clone()));
        pairs.push((format!("data[{row}][2]"), format!("t{}", row % 3)));
        pairs.push((format!("data[{row}][3]"), "Paris".to_string()));
    }
    let pairs: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let answer = server.call_as(key, "importContacts", &pairs);
    assert_eq!(answer["result"]["inserted"], count, "{answer}");
}

fn total(server: &TestServer, key: &str, login: &str) -> i64 {
    server.call_as(key, "getTotalContactsCount", &[("login", login)])["result"]["total"]
        .as_i64()
        .unwrap()
}

/// Waits for the writer's background clean-up to delete the rows resets left behind.
fn wait_for_purge(server: &TestServer, expected_rows: i64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.contact_count() != expected_rows {
        assert!(Instant::now() < deadline, "the clean-up did not finish");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn reset_empties_one_account_or_all_and_keeps_keys() {
    let server = TestServer::start();
    fixture(&server, KEY, "a", 300);
    fixture(&server, OTHER_KEY, "b", 200);
    let other_before = state(&server, OTHER_KEY);
    let old_list = server.call("getLists", &[])["result"][0]["id"]
        .as_i64()
        .unwrap();

    let answer = server.control_ok("POST", "/_local/reset?account=test", "");
    assert_eq!(answer["reset"], json!(["test"]));
    let empty = json!({
        "contacts": {"field_names": state(&server, KEY)["contacts"]["field_names"], "data": []},
        "lists": [], "fields": [], "tags": [],
    });
    assert_eq!(state(&server, KEY), empty);
    assert_eq!(total(&server, KEY, "test"), 0);
    assert_eq!(
        state(&server, OTHER_KEY),
        other_before,
        "the other account is untouched"
    );
    wait_for_purge(&server, 200);

    // Ids are never reused: a list made after the reset gets a new one.
    let new_list = server.create_list("again");
    assert!(new_list > old_list, "{new_list} after {old_list}");
    fixture(&server, KEY, "c", 10);

    let answer = server.control_ok("POST", "/_local/reset", "");
    let mut logins: Vec<String> = answer["reset"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    logins.sort();
    assert_eq!(logins, ["other", "test"]);
    assert_eq!(total(&server, KEY, "test"), 0);
    assert_eq!(total(&server, OTHER_KEY, "other"), 0);
    assert_eq!(
        server.call_as(OTHER_KEY, "getLists", &[])["result"],
        json!([])
    );
    wait_for_purge(&server, 0);
    let leftovers: i64 = server
        .db()
        .query_row(
            "SELECT (SELECT count(*) FROM lists) + (SELECT count(*) FROM fields)
                  + (SELECT count(*) FROM tags) + (SELECT count(*) FROM contact_blocks)",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(leftovers, 0);

    let unknown = server.control("POST", "/_local/reset?account=nobody", "");
    assert_eq!(unknown.status, 400);
    assert_eq!(unknown.json()["code"], "invalid_arg");
    assert_eq!(server.control("GET", "/_local/reset", "").status, 405);
}

#[test]
fn a_reset_removes_the_accounts_export_files() {
    let server = TestServer::start();
    fixture(&server, KEY, "a", 20);
    let task = server.call("async/exportContacts", &[])["result"]["task_uuid"]
        .as_str()
        .unwrap()
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    let url = loop {
        let answer = server.call("async/getTaskResult", &[("task_uuid", &task)]);
        if let Some(url) = answer["result"]["file_to_download"].as_str() {
            break url.to_string();
        }
        assert!(Instant::now() < deadline, "{answer}");
        std::thread::sleep(Duration::from_millis(20));
    };
    let path = url.split_once("/_local/").unwrap().1;
    let file = format!("/_local/{path}");
    assert_eq!(server.control("GET", &file, "").status, 200);
    server.control_ok("POST", "/_local/reset?account=test", "");
    assert_eq!(server.control("GET", &file, "").status, 404);
    assert_eq!(
        server.call("async/getTaskResult", &[("task_uuid", &task)])["code"],
        "invalid_arg"
    );
}

#[test]
fn a_snapshot_saves_and_restores_the_whole_database() {
    let server = TestServer::start();
    fixture(&server, KEY, "a", 100);
    let saved = (state(&server, KEY), state(&server, OTHER_KEY));
    let answer = server.control_ok("POST", "/_local/snapshots/fixture", "");
    assert_eq!(answer["snapshot"]["name"], "fixture");
    assert!(answer["snapshot"]["size_bytes"].as_u64().unwrap() > 0);

    fixture(&server, KEY, "later", 50);
    fixture(&server, OTHER_KEY, "b", 5);
    server.control_ok("POST", "/_local/reset?account=test", "");
    fixture(&server, KEY, "after-reset", 7);

    let answer = server.control_ok("POST", "/_local/snapshots/fixture/restore", "");
    assert_eq!(answer["restored"], "fixture");
    assert_eq!((state(&server, KEY), state(&server, OTHER_KEY)), saved);
    // The restored data is written to like any other.
    fixture(&server, KEY, "more", 3);
    assert_eq!(total(&server, KEY, "test"), 103);
    // Restoring again puts back the same state: the snapshot itself is unchanged.
    server.control_ok("POST", "/_local/snapshots/fixture/restore", "");
    assert_eq!((state(&server, KEY), state(&server, OTHER_KEY)), saved);

    server.control_ok("POST", "/_local/snapshots/second", "");
    let listed = server.control_ok("GET", "/_local/snapshots", "");
    let names: Vec<&str> = listed["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["fixture", "second"]);
    assert!(listed["snapshots"][0]["created"].as_str().unwrap().len() >= 19);

    assert_eq!(
        server.control_ok("DELETE", "/_local/snapshots/second", "")["deleted"],
        "second"
    );
    for (method, target) in [
        ("DELETE", "/_local/snapshots/second"),
        ("POST", "/_local/snapshots/second/restore"),
    ] {
        let reply = server.control(method, target, "");
        assert_eq!(reply.status, 404, "{method} {target}");
        assert_eq!(reply.json()["code"], "not_found");
    }
    for bad in ["..", "%2E%2E", "a%2Fb", ".hidden", "%00", "a%20b"] {
        let reply = server.control("POST", &format!("/_local/snapshots/{bad}"), "");
        assert_eq!(reply.status, 400, "{bad}");
        assert_eq!(reply.json()["code"], "invalid_arg");
    }
    let snapshot_dir = server.db.with_file_name("test.db.snapshots");
    let mut files: Vec<String> = std::fs::read_dir(&snapshot_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files, ["fixture.sqlite"]);
}

/// Four clients import 100-row calls while the main thread resets and restores: every call is
/// applied whole or not at all, and the database stays sound.
#[test]
fn reset_and_restore_while_four_clients_import_leave_nothing_half_applied() {
    let server = TestServer::start();
    fixture(&server, KEY, "base", 50);
    server.control_ok("POST", "/_local/snapshots/base", "");
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        for client in 0..4 {
            let (server, stop) = (&server, &stop);
            scope.spawn(move || {
                let mut call = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let mut pairs = vec![
                        ("field_names[0]".to_string(), "email".to_string()),
                        ("field_names[1]".to_string(), "tags".to_string()),
                    ];
                    for row in 0..100 {
                        pairs.push((
                            format!("data[{row}][0]"),
                            format!("c{client}n{call}r{row}@x.io"),
                        ));
                        pairs.push((format!("data[{row}][1]"), format!("call-{client}-{call}")));
                    }
                    let pairs: Vec<(&str, &str)> = pairs
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.as_str()))
                        .collect();
                    let answer = server.call("importContacts", &pairs);
                    assert!(answer.get("error").is_none(), "{answer}");
                    call += 1;
                }
            });
        }
        for round in 0..6 {
            std::thread::sleep(Duration::from_millis(150));
            if round % 2 == 0 {
                server.control_ok("POST", "/_local/reset?account=test", "");
            } else {
                server.control_ok("POST", "/_local/snapshots/base/restore", "");
            }
        }
        std::thread::sleep(Duration::from_millis(150));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    // Every call's tag names its 100 rows: each call is wholly present or wholly absent.
    let mut exported = Vec::new();
    loop {
        let offset = exported.len().to_string();
        let page = server.call("exportContacts", &[("limit", "1000"), ("offset", &offset)])
            ["result"]["data"]
            .as_array()
            .unwrap()
            .clone();
        if page.is_empty() {
            break;
        }
        exported.extend(page);
    }
    let mut per_call = std::collections::HashMap::<String, usize>::new();
    for row in &exported {
        let email = row[1].as_str().unwrap();
        if let Some((call, _)) = email.rsplit_once('r')
            && email.starts_with('c')
        {
            *per_call.entry(call.to_string()).or_default() += 1;
        }
    }
    assert!(per_call.len() > 4, "the imports ran: {}", per_call.len());
    for (call, rows) in &per_call {
        assert_eq!(*rows, 100, "call {call} is half applied");
    }
    let problems: Vec<String> = server
        .db()
        .prepare("PRAGMA integrity_check")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(problems, ["ok"]);
}
