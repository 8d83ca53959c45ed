//! §3 and §7's list and field methods: shapes, and accounts that never see each other.

use crate::support::{OTHER_KEY, TestServer};
use serde_json::json;

#[test]
fn lists_and_fields_answer_their_documented_shapes() {
    let server = TestServer::start();
    let a = server.create_list("Alpha");
    let b = server.ok(
        "createList",
        &[
            ("title", "Beta"),
            ("before_subscribe_url", "http://x/b"),
            ("after_subscribe_url", "http://x/a"),
        ],
    )["id"]
        .as_i64()
        .unwrap();
    assert_eq!(
        server.ok("getLists", &[]),
        json!([{"id": a, "title": "Alpha"}, {"id": b, "title": "Beta"}])
    );
    let city = server.create_field("City");
    let note = server.ok(
        "createField",
        &[
            ("name", "Note"),
            ("type", "text"),
            ("public_name", "Your note"),
        ],
    )["id"]
        .as_i64()
        .unwrap();
    assert_eq!(
        server.ok("getFields", &[]),
        json!([
            {"id": city, "name": "City", "type": "string", "is_visible": 1, "view_pos": 1, "public_name": "City"},
            {"id": note, "name": "Note", "type": "text", "is_visible": 1, "view_pos": 2, "public_name": "Your note"},
        ])
    );
}

#[test]
fn a_second_account_sees_nothing_of_the_first() {
    let server = TestServer::start();
    let list = server.create_list("Private").to_string();
    server.create_field("Secret");
    server.import(
        &["email", "phone", "email_list_ids", "Secret", "tags"],
        &[&[
            "shared@example.com",
            "+15550000010",
            &list,
            "s3cret",
            "mine",
        ]],
        &[],
    );

    assert_eq!(
        server.call_as(OTHER_KEY, "getLists", &[]),
        json!({"result": []})
    );
    assert_eq!(
        server.call_as(OTHER_KEY, "getFields", &[]),
        json!({"result": []})
    );
    // The other account cannot use the first one's list ids or field names...
    let import = |columns: &[&str], row: &[&str]| {
        let mut pairs = Vec::new();
        let names: Vec<String> = (0..columns.len())
            .map(|i| format!("field_names[{i}]"))
            .collect();
        let cells: Vec<String> = (0..row.len()).map(|i| format!("data[0][{i}]")).collect();
        for (name, column) in names.iter().zip(columns) {
            pairs.push((name.as_str(), *column));
        }
        for (cell, value) in cells.iter().zip(row) {
            pairs.push((cell.as_str(), *value));
        }
        server.call_as(OTHER_KEY, "importContacts", &pairs)
    };
    let answer = import(&["email", "email_list_ids"], &["x@example.com", &list]);
    assert_eq!(answer["result"]["log"][0]["code"], "invalid_list_id");
    let answer = import(&["email", "Secret"], &["x@example.com", "v"]);
    assert_eq!(answer["code"], "invalid_arg");
    // ...and the same addresses are different contacts there, with their own tags and titles.
    let answer = import(
        &["email", "phone", "tags"],
        &["shared@example.com", "+15550000010", "theirs"],
    );
    assert_eq!(answer["result"]["inserted"], 1, "{answer}");
    assert!(
        server.call_as(OTHER_KEY, "createList", &[("title", "Private")])["result"]["id"]
            .is_number()
    );
    assert_eq!(server.contact_count(), 2);
    let mine = server.everything()["contacts"][0].clone();
    assert_eq!(mine["tags"], json!(["mine"]));
    assert_eq!(mine["fields"], json!({"Secret": "s3cret"}));
    // Deleting in the other account leaves the first one's contact.
    let answer = import(&["email", "delete"], &["shared@example.com", "1"]);
    assert_eq!(answer["result"]["deleted"], 1);
    assert_eq!(
        server.contact("shared@example.com").unwrap()["tags"],
        json!(["mine"])
    );
}
