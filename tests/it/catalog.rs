//! §7 lists, fields and tags: answers, errors, and their effects on import and export.

use crate::support::{OTHER_KEY, TestServer};
use serde_json::{Value, json};

fn export_column(server: &TestServer, column: &str) -> Vec<String> {
    server.ok(
        "exportContacts",
        &[("field_names[]", "email"), ("field_names[]", column)],
    )["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row[1].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn update_list() {
    let server = TestServer::start();
    let a = server.create_list("A");
    server.create_list("B");
    assert_eq!(
        server.call(
            "updateList",
            &[
                ("list_id", &a.to_string()),
                ("title", "A2"),
                ("after_subscribe_url", "http://x/")
            ]
        ),
        json!({"result": {}})
    );
    assert_eq!(
        server.ok("getLists", &[])[0],
        json!({"id": a, "title": "A2"})
    );
    // Only the URL: the title stays.
    assert_eq!(
        server.call(
            "updateList",
            &[
                ("list_id", &a.to_string()),
                ("before_subscribe_url", "http://y/")
            ]
        ),
        json!({"result": {}})
    );
    assert_eq!(server.ok("getLists", &[])[0]["title"], "A2");
    for (pairs, mentions) in [
        (
            vec![("list_id", a.to_string()), ("title", "B".to_string())],
            "B",
        ),
        (
            vec![("list_id", a.to_string()), ("title", "".to_string())],
            "title",
        ),
        (vec![("list_id", "999999".to_string())], "list_id"),
        (vec![("list_id", "x".to_string())], "list_id"),
        (vec![("title", "C".to_string())], "list_id"),
    ] {
        let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let answer = server.call("updateList", &pairs);
        assert_eq!(answer["code"], "invalid_arg", "{pairs:?}");
        assert!(
            answer["error"].as_str().unwrap().contains(mentions),
            "{answer}"
        );
    }
    let answer = server.call_as(
        OTHER_KEY,
        "updateList",
        &[("list_id", &a.to_string()), ("title", "Stolen")],
    );
    assert_eq!(answer["code"], "invalid_arg");
    assert_eq!(server.ok("getLists", &[])[0]["title"], "A2");
}

#[test]
fn delete_list_leaves_every_export_column_and_filter() {
    let server = TestServer::start();
    let [a, b] = server.create_lists(["A", "B"]);
    let both = format!("{a},{b}");
    server.import(
        &[
            "email",
            "email_list_ids",
            "phone",
            "phone_excluded_list_ids",
        ],
        &[&["d@example.com", &both, "+15550000001", &a.to_string()]],
        &[],
    );
    assert_eq!(
        server.call_as(OTHER_KEY, "deleteList", &[("list_id", &a.to_string())])["code"],
        "invalid_arg"
    );
    assert_eq!(
        server.call("deleteList", &[("list_id", &a.to_string())]),
        json!({"result": {}})
    );
    assert_eq!(server.ok("getLists", &[]), json!([{"id": b, "title": "B"}]));
    assert_eq!(
        export_column(&server, "email_list_ids"),
        vec![b.to_string()]
    );
    assert_eq!(export_column(&server, "phone_excluded_list_ids"), vec![""]);
    assert_eq!(export_column(&server, "email_subscribe_times").len(), 1);
    assert!(!export_column(&server, "email_subscribe_times")[0].contains(','));
    assert_eq!(
        server.call("exportContacts", &[("list_id", &a.to_string())])["code"],
        "invalid_arg"
    );
    assert!(
        server.contact("d@example.com").is_some(),
        "the contact stays"
    );
    assert_eq!(
        server.call("deleteList", &[("list_id", &a.to_string())])["code"],
        "invalid_arg"
    );
}

#[test]
fn update_field_renames_for_import_and_export() {
    let server = TestServer::start();
    let city = server.create_field("City");
    server.create_field("Zip");
    server.import(&["email", "City"], &[&["f@example.com", "Oslo"]], &[]);
    assert_eq!(
        server.call(
            "updateField",
            &[
                ("id", &city.to_string()),
                ("name", "Town"),
                ("public_name", "Your town")
            ]
        ),
        json!({"result": {"id": city}})
    );
    let fields = server.ok("getFields", &[]);
    assert_eq!(
        (
            fields[0]["name"].as_str(),
            fields[0]["public_name"].as_str()
        ),
        (Some("Town"), Some("Your town"))
    );
    assert_eq!(export_column(&server, "Town"), vec!["Oslo"]);
    assert_eq!(
        server.call("exportContacts", &[("field_names[]", "City")])["code"],
        "invalid_arg"
    );
    assert_eq!(
        server.import(&["email", "City"], &[&["f@example.com", "x"]], &[])["code"],
        "invalid_arg"
    );
    server.import(&["email", "town"], &[&["f@example.com", "Bergen"]], &[]);
    assert_eq!(export_column(&server, "Town"), vec!["Bergen"]);
    // Renaming to its own name in another case is fine; to another field's name or a system name is not.
    assert!(
        server.call(
            "updateField",
            &[("id", &city.to_string()), ("name", "TOWN")]
        )["result"]
            .is_object()
    );
    for name in ["zip", "email", "9lives", ""] {
        assert_eq!(
            server.call("updateField", &[("id", &city.to_string()), ("name", name)])["code"],
            "invalid_arg",
            "{name}"
        );
    }
    assert_eq!(
        server.call("updateField", &[("id", "999999"), ("name", "Other")])["code"],
        "invalid_arg"
    );
    assert_eq!(
        server.call_as(
            OTHER_KEY,
            "updateField",
            &[("id", &city.to_string()), ("name", "Mine")]
        )["code"],
        "invalid_arg"
    );
}

#[test]
fn delete_field_takes_its_values() {
    let server = TestServer::start();
    let city = server.create_field("City");
    server.import(&["email", "City"], &[&["g@example.com", "Oslo"]], &[]);
    assert_eq!(
        server.call_as(OTHER_KEY, "deleteField", &[("id", &city.to_string())])["code"],
        "invalid_arg"
    );
    assert_eq!(
        server.call("deleteField", &[("id", &city.to_string())]),
        json!({"result": {}})
    );
    assert_eq!(server.ok("getFields", &[]), json!([]));
    assert_eq!(
        server.contact("g@example.com").unwrap()["fields"],
        json!({})
    );
    assert_eq!(
        server.ok("exportContacts", &[])["field_names"]
            .as_array()
            .unwrap()
            .len(),
        22
    );
    let values: i64 = server
        .db()
        .query_row(
            "SELECT count(*) FROM contacts WHERE field_values IS NOT NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(values, 0);
    // A new field of the same name starts empty.
    server.create_field("City");
    assert_eq!(export_column(&server, "City"), vec![""]);
}

#[test]
fn tags_listed_and_deleted_from_every_contact() {
    let server = TestServer::start();
    server.import(
        &["email", "tags"],
        &[&["t1@example.com", "red,blue"], &["t2@example.com", "Red"]],
        &[],
    );
    let tags = server.ok("getTags", &[]);
    assert_eq!(
        tags.as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect::<Vec<_>>(),
        vec!["red", "blue"]
    );
    let red = tags[0]["id"].as_i64().unwrap();
    assert_eq!(
        server.call_as(OTHER_KEY, "getTags", &[]),
        json!({"result": []})
    );
    assert_eq!(
        server.call_as(OTHER_KEY, "deleteTag", &[("id", &red.to_string())])["code"],
        "invalid_arg"
    );
    assert_eq!(
        server.call("deleteTag", &[("id", &red.to_string())]),
        json!({"result": {}})
    );
    assert_eq!(export_column(&server, "tags"), vec!["blue", ""]);
    assert_eq!(
        server.ok("exportContacts", &[("tag", "red")])["data"],
        json!([])
    );
    assert_eq!(
        server.call("deleteTag", &[("id", &red.to_string())])["code"],
        "invalid_arg"
    );
    assert_eq!(server.call("deleteTag", &[])["code"], "invalid_arg");
    let remaining: Value = server.ok("getTags", &[]);
    assert_eq!(remaining.as_array().unwrap().len(), 1);
}
