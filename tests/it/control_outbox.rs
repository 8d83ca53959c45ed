//! Double opt-in: subscribe's invitations land in the outbox, and their links confirm them.

use crate::support::TestServer;
use serde_json::{Value, json};

fn contact(server: &TestServer, email: &str) -> Value {
    server.ok("getContact", &[("email", email), ("include_lists", "1")])
}

fn exported(server: &TestServer, email: &str) -> Value {
    let answer = server.ok(
        "exportContacts",
        &[
            ("email", email),
            ("field_names[0]", "email_status"),
            ("field_names[1]", "email_confirm_time"),
            ("field_names[2]", "email_confirm_ip"),
            ("field_names[3]", "email_list_ids"),
        ],
    );
    answer["data"][0].clone()
}

fn invite(server: &TestServer, list: i64, pairs: &[(&str, &str)]) -> i64 {
    let list = list.to_string();
    let mut all = vec![("list_ids", list.as_str()), ("double_optin", "0")];
    all.extend_from_slice(pairs);
    server.ok("subscribe", &all)["person_id"].as_i64().unwrap()
}

#[test]
fn the_outbox_link_confirms_through_a_plain_get() {
    let server = TestServer::start();
    let list = server.create_list("News");
    invite(&server, list, &[("fields[email]", "Ann@Example.com")]);
    let before = contact(&server, "ann@example.com");
    assert_eq!(before["email"]["status"], "invited");
    assert_eq!(before["lists"][0]["status"], "invited");

    let outbox =
        server.control_ok("GET", "/_local/outbox?email=ANN@example.com", "")["outbox"].clone();
    assert_eq!(outbox.as_array().unwrap().len(), 1, "{outbox}");
    let entry = &outbox[0];
    assert_eq!(entry["to"], "ann@example.com");
    assert_eq!(entry["account"], "test");
    assert_eq!(entry["list_ids"], json!([list]));
    assert_eq!(entry["confirmed"], Value::Null);
    let link = entry["link"].as_str().unwrap();
    let path = &link[link.find("/_local/").unwrap()..];
    assert!(
        link.starts_with(&format!("http://{}", server.address)),
        "{link}"
    );

    let clicked = server.control("GET", path, "");
    assert_eq!(clicked.status, 200);
    assert_eq!(clicked.json()["confirmed"], json!([entry["token"]]));
    let after = contact(&server, "ann@example.com");
    assert_eq!(after["email"]["status"], "active");
    assert_eq!(after["lists"][0]["status"], "active");
    let row = exported(&server, "ann@example.com");
    assert_eq!(row[0], "active");
    assert!(
        row[1].as_str().unwrap().len() >= 19,
        "confirm time set: {row}"
    );
    assert_eq!(row[2], "127.0.0.1");
    assert_eq!(row[3], list.to_string());

    // Twice is harmless; the outbox shows when it was confirmed.
    let again = server.control("GET", path, "");
    assert_eq!(again.status, 200);
    assert_eq!(again.json()["already_confirmed"], json!([entry["token"]]));
    assert_eq!(contact(&server, "ann@example.com"), after);
    let shown = server.control_ok("GET", "/_local/outbox", "")["outbox"][0].clone();
    assert!(shown["confirmed"].is_string());
    assert_eq!(
        server.control_ok("GET", "/_local/outbox?pending=1", "")["outbox"],
        json!([])
    );

    // A person in a browser reads a page.
    let page = server
        .raw(format!("GET {path} HTTP/1.1\r\nHost: x\r\nAccept: text/html,*/*\r\n\r\n").as_bytes());
    assert_eq!(page.status, 200);
    assert!(String::from_utf8_lossy(&page.body).contains("already confirmed"));

    let unknown = server.control(
        "GET",
        "/_local/confirm/0123456789abcdef0123456789abcdef",
        "",
    );
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.json()["code"], "not_found");
    assert_eq!(
        server.control("GET", "/_local/confirm/../../x", "").status,
        404
    );
}

#[test]
fn post_confirm_by_email_or_phone_and_only_invitations_are_kept() {
    let server = TestServer::start();
    let list = server.create_list("News");
    // double_optin=3 confirms at once: nothing is sent.
    server.ok(
        "subscribe",
        &[
            ("list_ids", &list.to_string()),
            ("fields[email]", "direct@example.com"),
            ("double_optin", "3"),
        ],
    );
    assert_eq!(
        server.control_ok("GET", "/_local/outbox", "")["outbox"],
        json!([])
    );
    invite(&server, list, &[("fields[email]", "bob@example.com")]);
    invite(
        &server,
        list,
        &[
            ("fields[email]", "cat@example.com"),
            ("fields[phone]", "+79001234567"),
        ],
    );
    let done = server.control_ok(
        "POST",
        "/_local/confirm",
        r#"{"email": "Bob@example.com", "ip": "203.0.113.9"}"#,
    );
    assert_eq!(done["confirmed"].as_array().unwrap().len(), 1);
    assert_eq!(exported(&server, "bob@example.com")[2], "203.0.113.9");
    assert_eq!(
        contact(&server, "bob@example.com")["email"]["status"],
        "active"
    );
    let twice = server.control_ok("POST", "/_local/confirm", r#"{"email": "bob@example.com"}"#);
    assert_eq!(twice["confirmed"], json!([]));
    assert_eq!(twice["already_confirmed"].as_array().unwrap().len(), 1);

    let by_phone = server.control_ok(
        "POST",
        "/_local/confirm",
        r#"{"phone": "+7 900 123-45-67"}"#,
    );
    assert_eq!(by_phone["confirmed"].as_array().unwrap().len(), 1);
    assert_eq!(
        contact(&server, "cat@example.com")["email"]["status"],
        "active"
    );

    let nobody = server.control(
        "POST",
        "/_local/confirm",
        r#"{"email": "nobody@example.com"}"#,
    );
    assert_eq!(nobody.status, 404);
    let neither = server.control("POST", "/_local/confirm", "{}");
    assert_eq!(neither.status, 400);
    assert_eq!(neither.json()["code"], "invalid_arg");
    let other_account = server.control(
        "POST",
        "/_local/confirm",
        r#"{"email": "bob@example.com", "account": "other"}"#,
    );
    assert_eq!(other_account.status, 404);

    // A reset takes the account's outbox with it.
    server.control_ok("POST", "/_local/reset?account=test", "");
    assert_eq!(
        server.control_ok("GET", "/_local/outbox", "")["outbox"],
        json!([])
    );
}
