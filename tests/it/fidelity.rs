//! Behaviours of the real service, as its documentation states them (spec §2, §5.3, §6.1, §7),
//! and every message text the contract quotes, each checked as a client would read it.

use crate::support::http_client::Client;
use crate::support::{KEY, TestServer};
use serde_json::{Value, json};

/// The log entry of row `index`, as `(code, message)`.
fn row_note(answer: &Value, index: i64) -> (String, String) {
    let entry = answer["result"]["log"]
        .as_array()
        .unwrap_or_else(|| panic!("no log in {answer}"))
        .iter()
        .find(|e| e["index"] == index)
        .unwrap_or_else(|| panic!("no log entry {index} in {answer}"));
    (
        entry["code"].as_str().unwrap().to_string(),
        entry["message"].as_str().unwrap().to_string(),
    )
}

#[test]
fn exclude_and_unsubscribe_from_lists_the_address_is_not_in_answer_not_found_and_change_nothing() {
    let server = TestServer::start();
    let [a, b] = server.create_lists(["A", "B"]);
    server.import(
        &["email", "email_list_ids"],
        &[&["in@b.cd", &a.to_string()]],
        &[],
    );
    server.import(&["email"], &[&["nowhere@b.cd"]], &[]);
    let before = server.everything();
    for method in ["exclude", "unsubscribe"] {
        for (address, lists) in [
            ("in@b.cd", Some(b.to_string())),
            ("nowhere@b.cd", None),
            ("unknown@b.cd", None),
        ] {
            let mut pairs = vec![("contact_type", "email"), ("contact", address)];
            if let Some(lists) = &lists {
                pairs.push(("list_ids", lists));
            }
            assert_eq!(
                server.call(method, &pairs),
                json!({"error": format!("Contact \"{address}\" not found"), "code": "unspecified", "result": ""}),
                "{method} {address} {lists:?}"
            );
        }
    }
    assert_eq!(server.everything(), before, "nothing changed");
    // In the list: changed, and a second unsubscribe (still "in" the list) is harmless.
    let pairs = [
        ("contact_type", "email"),
        ("contact", "in@b.cd"),
        ("list_ids", &a.to_string()[..]),
    ];
    assert_eq!(server.call("unsubscribe", &pairs), json!({"result": {}}));
    assert_eq!(server.call("unsubscribe", &pairs), json!({"result": {}}));
    // Excluded is out of the list: excluding again finds nothing.
    assert_eq!(server.call("exclude", &pairs), json!({"result": {}}));
    assert_eq!(server.call("exclude", &pairs)["code"], "unspecified");
}

#[test]
fn subscribe_cannot_make_an_unsubscribed_membership_active() {
    let server = TestServer::start();
    let list = server.create_list("L").to_string();
    let first = server.ok(
        "subscribe",
        &[
            ("list_ids", &list),
            ("fields[email]", "p@b.cd"),
            ("double_optin", "3"),
        ],
    );
    server.ok(
        "unsubscribe",
        &[
            ("contact_type", "email"),
            ("contact", "p@b.cd"),
            ("list_ids", &list),
        ],
    );
    for double_optin in ["3", "4", "0"] {
        let again = server.ok(
            "subscribe",
            &[
                ("list_ids", &list),
                ("fields[email]", "p@b.cd"),
                ("double_optin", double_optin),
            ],
        );
        assert_eq!(
            again["person_id"], first["person_id"],
            "its person_id all the same"
        );
    }
    let row = server.ok(
        "exportContacts",
        &[
            ("field_names[]", "email_list_ids"),
            ("field_names[]", "email_unsubscribed_list_ids"),
        ],
    )["data"][0]
        .clone();
    assert_eq!(row, json!(["", list]), "still unsubscribed");
}

#[test]
fn delivery_history_columns_export_empty_and_are_not_import_columns() {
    let server = TestServer::start();
    server.import(&["email", "phone"], &[&["h@b.cd", "+79161234567"]], &[]);
    let history = [
        "email_last_delivered_at",
        "email_last_read_at",
        "email_last_clicked_at",
        "phone_last_delivered_at",
    ];
    let mut pairs: Vec<(&str, &str)> = vec![("field_names[]", "email")];
    pairs.extend(history.iter().map(|name| ("field_names[]", *name)));
    let exported = server.ok("exportContacts", &pairs);
    assert_eq!(exported["data"], json!([["h@b.cd", "", "", "", ""]]));
    let default = server.ok("exportContacts", &[]);
    let default_names = default["field_names"].as_array().unwrap();
    assert!(
        history
            .iter()
            .all(|name| !default_names.contains(&json!(name))),
        "not in the default columns"
    );
    for name in history {
        let answer = server.import(&["email", name], &[&["i@b.cd", ""]], &[]);
        assert_eq!(answer["code"], "invalid_arg", "{name}: {answer}");
    }
}

#[test]
fn an_email_and_a_phone_of_two_contacts_get_the_documented_message() {
    let server = TestServer::start();
    let list = server.create_list("L").to_string();
    server.import(&["email"], &[&["one@b.cd"]], &[]);
    server.import(&["phone"], &[&["+7 916 123-45-67"]], &[]);
    let expected =
        "Contacts one@b.cd and +79161234567 already exist but owned by different subscribers";
    let answer = server.call(
        "subscribe",
        &[
            ("list_ids", &list),
            ("fields[email]", "one@b.cd"),
            ("fields[phone]", "+79161234567"),
        ],
    );
    assert_eq!(
        answer,
        json!({"error": expected, "code": "unspecified", "result": ""})
    );
    let answer = server.import(&["email", "phone"], &[&["One@b.cd", "79161234567"]], &[]);
    assert_eq!(
        row_note(&answer, 0),
        (
            "owned_by_different_subscribers".to_string(),
            expected.to_string()
        )
    );
}

#[test]
fn every_error_envelope_carries_an_empty_result() {
    let server = TestServer::start();
    let mut client = Client::new(server.address);
    let answers = [
        client.post_form("/en/api/getLists", "api_key=wrong"),
        client.post_form("/en/api/noSuchMethod", &format!("api_key={KEY}")),
        client.post_form("/xx/api/getLists", ""),
        client.send(b"PUT /en/api/getLists HTTP/1.1\r\nContent-Length: 0\r\n\r\n"),
        client.post_form(
            "/en/api/getLists",
            &format!("api_key={KEY}&{}", "a[]=&".repeat(100_001)),
        ),
        client.send(b"GET /_local/exports/00000000000000000000000000000000.csv HTTP/1.1\r\n\r\n"),
    ];
    let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
    assert_eq!(statuses, [200, 200, 404, 405, 413, 404]);
    for answer in answers {
        let body = answer.json();
        assert_eq!(body["result"], "", "{body}");
        assert!(
            body["error"].is_string() && body["code"].is_string(),
            "{body}"
        );
    }
}

#[test]
fn the_quoted_row_messages() {
    let server = TestServer::start();
    let answer = server.import(
        &["email", "phone"],
        &[
            &["bad-address", ""],
            &["d@b.cd", "+15550000001"],
            &["d@b.cd", "+15550000002"],
            &["e@b.cd", "+15550000001"],
        ],
        &[],
    );
    assert_eq!(
        row_note(&answer, 0),
        ("invalid_email".into(), "Invalid email format".into())
    );
    assert_eq!(
        row_note(&answer, 2),
        ("duplicate_email".into(), "Duplicate email address".into())
    );
    assert_eq!(
        row_note(&answer, 3),
        (
            "duplicate_phone".into(),
            "Duplicate telephone number".into()
        )
    );
    let got = server.call("getContact", &[("email", "zz@b.cd")]);
    assert_eq!(got["error"], "Contact \"zz@b.cd\" not found");
}

#[test]
fn the_quoted_overlimit_messages() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("limit.db");
    crate::support::run_ok(&[
        "accounts",
        "add",
        "test",
        "--key",
        KEY,
        "--contact-limit",
        "1",
        "--db",
        crate::support::path(&db),
    ]);
    let server = TestServer::start_on(dir, db, &[]);
    let answer = server.import(&["email"], &[&["f@b.cd"], &["g@b.cd"]], &[]);
    assert_eq!(
        row_note(&answer, 1),
        (
            "overlimit".into(),
            "The number of contacts for the current tariff plan has been exceeded (but the string has been added)".into()
        )
    );
    assert_eq!(
        answer["warnings"],
        json!([{"warning": "Addresses overlimit for current period"}])
    );
}

#[test]
fn a_national_phone_number_keeps_its_digits_and_finds_its_contact() {
    let server = TestServer::start();
    let list = server.create_list("L").to_string();
    server.import(
        &["phone", "phone_list_ids"],
        &[&["89091234567", &list]],
        &[],
    );
    let stored = server.ok("exportContacts", &[("field_names[]", "phone")]);
    assert_eq!(stored["data"], json!([["+89091234567"]]));
    let excluded = server.call(
        "exclude",
        &[
            ("contact_type", "phone"),
            ("contact", "8 (909) 123-45-67"),
            ("list_ids", &list),
        ],
    );
    assert_eq!(excluded, json!({"result": {}}));
}
