//! §5.2 and §3: errors of the whole call answer `invalid_arg` (or `invalid_api_key`) and change
//! nothing.

use crate::support::{OTHER_KEY, TestServer};
use serde_json::Value;

fn assert_refused(server: &TestServer, answer: &Value, mentions: &str) {
    assert_eq!(answer["code"], "invalid_arg", "{answer}");
    let message = answer["error"].as_str().expect("a message");
    assert!(
        message.contains(mentions),
        "{message:?} should mention {mentions:?}"
    );
    assert_eq!(answer["result"], "", "an error's result is empty (§2)");
    assert_eq!(server.contact_count(), 0, "nothing is changed");
}

#[test]
fn missing_field_names_or_data() {
    let server = TestServer::start();
    let answer = server.call("importContacts", &[("data[0][0]", "a@example.com")]);
    assert_refused(&server, &answer, "field_names");
    let answer = server.call("importContacts", &[("field_names[0]", "email")]);
    assert_refused(&server, &answer, "data");
    let answer = server.call(
        "importContacts",
        &[("field_names", "email"), ("data[0][0]", "a@example.com")],
    );
    assert_refused(&server, &answer, "field_names");
    let answer = server.call(
        "importContacts",
        &[("field_names[0]", "email"), ("data", "a@example.com")],
    );
    assert_refused(&server, &answer, "data");
}

#[test]
fn no_email_or_phone_column() {
    let server = TestServer::start();
    let answer = server.import(&["tags", "email_status"], &[&["x", "active"]], &[]);
    assert_refused(&server, &answer, "email or a phone");
}

#[test]
fn unknown_column() {
    let server = TestServer::start();
    let answer = server.import(&["email", "Nickname"], &[&["a@example.com", "x"]], &[]);
    assert_refused(&server, &answer, "Nickname");
    // `id` is exportable but not importable.
    let answer = server.import(&["id", "email"], &[&["1", "a@example.com"]], &[]);
    assert_refused(&server, &answer, "id");
}

#[test]
fn the_same_column_twice_ignoring_case() {
    let server = TestServer::start();
    server.create_field("City");
    let answer = server.import(
        &["email", "EMAIL"],
        &[&["a@example.com", "b@example.com"]],
        &[],
    );
    assert_refused(&server, &answer, "twice");
    let answer = server.import(
        &["email", "City", "city"],
        &[&["a@example.com", "x", "y"]],
        &[],
    );
    assert_refused(&server, &answer, "twice");
}

#[test]
fn more_than_fifty_user_field_columns() {
    let server = TestServer::start();
    let names: Vec<String> = (0..51).map(|i| format!("f{i}")).collect();
    for name in &names {
        server.create_field(name);
    }
    let mut columns: Vec<&str> = vec!["email"];
    columns.extend(names.iter().map(String::as_str));
    let row: Vec<&str> = std::iter::once("a@example.com")
        .chain(names.iter().map(|_| "v"))
        .collect();
    let answer = server.import(&columns, &[&row], &[]);
    assert_refused(&server, &answer, "50");
    // Exactly fifty is fine.
    let answer = server.import(&columns[..51], &[&row[..51]], &[]);
    assert_eq!(answer["result"]["inserted"], 1, "{answer}");
}

#[test]
fn more_than_five_hundred_rows() {
    let server = TestServer::start();
    let emails: Vec<String> = (0..501).map(|i| format!("u{i}@example.com")).collect();
    let rows: Vec<[&str; 1]> = emails.iter().map(|e| [e.as_str()]).collect();
    let rows: Vec<&[&str]> = rows.iter().map(|r| &r[..]).collect();
    let answer = server.import(&["email"], &rows, &[]);
    assert_refused(&server, &answer, "500");
    let answer = server.import(&["email"], &rows[..500], &[]);
    assert_eq!(answer["result"]["inserted"], 500);
}

#[test]
fn a_cell_beyond_the_columns() {
    let server = TestServer::start();
    let answer = server.call(
        "importContacts",
        &[
            ("field_names[0]", "email"),
            ("data[0][0]", "a@example.com"),
            ("data[0][1]", "x"),
        ],
    );
    assert_refused(&server, &answer, "data[0][1]");
    let answer = server.call(
        "importContacts",
        &[("field_names[0]", "email"), ("data[0][x]", "a@example.com")],
    );
    assert_refused(&server, &answer, "data[0][x]");
    let answer = server.call(
        "importContacts",
        &[("field_names[0]", "email"), ("data[a][0]", "a@example.com")],
    );
    assert_refused(&server, &answer, "row index");
}

#[test]
fn api_key_missing_or_unknown() {
    let server = TestServer::start();
    for key in ["", "   ", "no-such-key"] {
        let answer = server.call_as(
            key,
            "importContacts",
            &[("field_names[0]", "email"), ("data[0][0]", "a@example.com")],
        );
        assert_eq!(answer["code"], "invalid_api_key", "{key:?}");
        assert_eq!(server.contact_count(), 0);
    }
    let reply = server.raw(b"GET /en/api/getLists HTTP/1.1\r\n\r\n");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["code"], "invalid_api_key");
    assert!(server.call_as(OTHER_KEY, "getLists", &[])["result"].is_array());
}

#[test]
fn list_and_field_arguments() {
    let server = TestServer::start();
    assert_eq!(server.call("createList", &[])["code"], "invalid_arg");
    assert_eq!(
        server.call("createList", &[("title", "  ")])["code"],
        "invalid_arg"
    );
    assert_eq!(
        server.call("createList", &[("title", &"t".repeat(256))])["code"],
        "invalid_arg"
    );
    server.create_list("News");
    let answer = server.call("createList", &[("title", "News")]);
    assert_eq!(answer["code"], "invalid_arg");
    assert!(answer["error"].as_str().unwrap().contains("News"));
    assert_eq!(
        server.call("createField", &[("name", "City")])["code"],
        "invalid_arg"
    );
    assert_eq!(
        server.call("createField", &[("name", "City"), ("type", "blob")])["code"],
        "invalid_arg"
    );
    assert_eq!(
        server.call("createField", &[("name", "1City"), ("type", "string")])["code"],
        "invalid_arg"
    );
    assert_eq!(
        server.call(
            "createField",
            &[("name", "email_status"), ("type", "string")]
        )["code"],
        "invalid_arg"
    );
    server.create_field("City");
    assert_eq!(
        server.call("createField", &[("name", "CITY"), ("type", "text")])["code"],
        "invalid_arg"
    );
}
