//! §3: for every method that takes an id or an address, another account's ids and addresses get
//! an error or nothing, and the owner's data is untouched.

use crate::support::{OTHER_KEY, TestServer};
use serde_json::Value;

#[test]
fn another_account_s_ids_and_addresses_get_nothing() {
    let server = TestServer::start();
    let list = server.create_list("Mine").to_string();
    let field = server.create_field("Secret").to_string();
    server.import(
        &["email", "phone", "email_list_ids", "Secret", "tags"],
        &[&[
            "owner@example.com",
            "+15550000042",
            &list,
            "s3cret",
            "private",
        ]],
        &[],
    );
    let tag = server.ok("getTags", &[])[0]["id"]
        .as_i64()
        .unwrap()
        .to_string();
    let task = server.ok("async/exportContacts", &[])["task_uuid"]
        .as_str()
        .unwrap()
        .to_string();
    let before = server.everything();
    let lists_before = server.ok("getLists", &[]);
    let fields_before = server.ok("getFields", &[]);

    let attempts: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("updateList", vec![("list_id", &list), ("title", "Taken")]),
        ("deleteList", vec![("list_id", &list)]),
        ("updateField", vec![("id", &field), ("name", "Stolen")]),
        ("deleteField", vec![("id", &field)]),
        ("deleteTag", vec![("id", &tag)]),
        ("exportContacts", vec![("list_id", &list)]),
        ("async/exportContacts", vec![("list_id", &list)]),
        ("async/getTaskResult", vec![("task_uuid", &task)]),
        ("getContactCount", vec![("list_id", &list)]),
        (
            "getContactCount",
            vec![("list_id", &list), ("params[tagId]", &tag)],
        ),
        (
            "isContactInLists",
            vec![("email", "owner@example.com"), ("list_ids", &list)],
        ),
        (
            "getContactFieldValues",
            vec![("email", "owner@example.com"), ("field_ids", &field)],
        ),
        ("getContact", vec![("email", "owner@example.com")]),
        (
            "exclude",
            vec![("contact_type", "email"), ("contact", "owner@example.com")],
        ),
        (
            "unsubscribe",
            vec![("contact_type", "phone"), ("contact", "+15550000042")],
        ),
        (
            "subscribe",
            vec![("list_ids", &list), ("fields[email]", "owner@example.com")],
        ),
        ("getTotalContactsCount", vec![("login", "test")]),
        (
            "importContacts",
            vec![
                ("field_names[0]", "email"),
                ("field_names[1]", "email_list_ids"),
                ("data[0][0]", "owner@example.com"),
                ("data[0][1]", &list),
            ],
        ),
        (
            "importContacts",
            vec![
                ("field_names[0]", "email"),
                ("field_names[1]", "Secret"),
                ("data[0][0]", "owner@example.com"),
                ("data[0][1]", "x"),
            ],
        ),
    ];
    for (method, pairs) in attempts {
        let answer = server.call_as(OTHER_KEY, method, &pairs);
        let refused = answer.get("error").is_some()
            || answer["result"] == Value::Bool(false)
            || answer["result"]["invalid"] == 1;
        assert!(refused, "{method} {pairs:?} answered {answer}");
        let text = answer.to_string();
        assert!(
            !text.contains("s3cret") && !text.contains("private") && !text.contains("Mine"),
            "{method} leaked: {text}"
        );
    }
    assert_eq!(
        server.everything(),
        before,
        "the owner's contacts are untouched"
    );
    assert_eq!(server.ok("getLists", &[]), lists_before);
    assert_eq!(server.ok("getFields", &[]), fields_before);
    // The other account sees none of it, and its own export is empty.
    assert_eq!(
        server.call_as(OTHER_KEY, "exportContacts", &[])["result"]["data"],
        serde_json::json!([])
    );
    assert_eq!(
        server.call_as(OTHER_KEY, "getTags", &[])["result"],
        serde_json::json!([])
    );
}
