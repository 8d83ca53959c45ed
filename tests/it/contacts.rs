//! §7 single contacts: subscribe, exclude, unsubscribe, getContact, the counts, isContactInLists
//! and getContactFieldValues, with their effects seen through export and getContact.

use crate::support::{OTHER_KEY, TestServer};
use serde_json::{Value, json};

fn subscribe(server: &TestServer, pairs: &[(&str, &str)]) -> Value {
    server.call("subscribe", pairs)
}

/// The email memberships of a contact as `(list, status)`, from getContact.
fn lists(server: &TestServer, email: &str) -> Vec<(i64, String)> {
    server.ok("getContact", &[("email", email), ("include_lists", "1")])["lists"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["id"].as_i64().unwrap(),
                l["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn email_status(server: &TestServer, email: &str) -> String {
    server.ok("getContact", &[("email", email)])["email"]["status"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn subscribe_a_new_contact_with_each_double_optin() {
    let server = TestServer::start();
    let list = server.create_list("L").to_string();
    let id = list.parse::<i64>().unwrap();
    for (optin, status, membership) in [
        ("0", "invited", "invited"),
        ("", "invited", "invited"),
        ("1", "new", "active"),
        ("2", "new", "active"),
        ("3", "new", "active"),
        ("4", "invited", "invited"),
    ] {
        let email = format!(
            "new{}@example.com",
            optin.len() * 10 + optin.parse::<usize>().unwrap_or(9)
        );
        let answer = subscribe(
            &server,
            &[
                ("list_ids", &list),
                ("fields[email]", &email),
                ("double_optin", optin),
            ],
        );
        let person = answer["result"]["person_id"]
            .as_i64()
            .unwrap_or_else(|| panic!("{answer}"));
        assert!(person > 0);
        assert_eq!(
            email_status(&server, &email),
            status,
            "double_optin={optin}"
        );
        assert_eq!(
            lists(&server, &email),
            vec![(id, membership.to_string())],
            "double_optin={optin}"
        );
    }
    // An invited membership is not "in" the list.
    let in_list: Vec<String> = server.ok(
        "exportContacts",
        &[("list_id", &list), ("field_names[]", "email")],
    )["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[0].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        in_list,
        vec![
            "new11@example.com",
            "new12@example.com",
            "new13@example.com"
        ]
    );
    assert_eq!(
        server.ok(
            "isContactInLists",
            &[("email", "new10@example.com"), ("list_ids", &list)]
        ),
        json!(false)
    );
    assert_eq!(
        server.ok("getContactCount", &[("list_id", &list)])["count"],
        3
    );
    assert_eq!(
        server.ok(
            "exportContacts",
            &[
                ("email", "new10@example.com"),
                ("field_names[]", "email_list_ids")
            ]
        )["data"],
        json!([[""]])
    );
}

#[test]
fn subscribe_existing_contacts_of_each_status() {
    let server = TestServer::start();
    let list = server.create_list("L");
    let list_text = list.to_string();
    for status in ["new", "active", "inactive", "unsubscribed"] {
        for optin in ["0", "3", "4"] {
            let email = format!("{status}-{optin}@example.com");
            server.import(&["email", "email_status"], &[&[&email, status]], &[]);
            subscribe(
                &server,
                &[
                    ("list_ids", &list_text),
                    ("fields[email]", &email),
                    ("double_optin", optin),
                ],
            );
            assert_eq!(
                email_status(&server, &email),
                status,
                "the address's status never changes"
            );
            let expected = match (optin, status) {
                ("3", _) | ("4", "new" | "active") => "active",
                _ => "invited",
            };
            assert_eq!(
                lists(&server, &email),
                vec![(list, expected.to_string())],
                "{status} with double_optin={optin}"
            );
        }
    }
    // An active membership is never demoted to invited.
    subscribe(
        &server,
        &[
            ("list_ids", &list_text),
            ("fields[email]", "active-3@example.com"),
            ("double_optin", "0"),
        ],
    );
    assert_eq!(
        lists(&server, "active-3@example.com"),
        vec![(list, "active".to_string())]
    );
    // Phones are never invited.
    subscribe(
        &server,
        &[("list_ids", &list_text), ("fields[phone]", "+15550000009")],
    );
    let phone_lists = server.ok(
        "exportContacts",
        &[
            ("phone", "+15550000009"),
            ("field_names[]", "phone_list_ids"),
            ("field_names[]", "phone_status"),
        ],
    )["data"]
        .clone();
    assert_eq!(phone_lists, json!([[list_text, "active"]]));
}

#[test]
fn subscribe_overwrite_modes() {
    let server = TestServer::start();
    let [a, b] = server.create_lists(["A", "B"]);
    server.create_field("City");
    server.create_field("Zip");
    let setup = |email: &str| {
        server.import(
            &["email", "email_list_ids", "City", "Zip", "tags"],
            &[&[email, &a.to_string(), "Oslo", "0150", "old"]],
            &[],
        );
    };
    let fields_and_tags = |email: &str| {
        let contact = server.ok("getContact", &[("email", email), ("include_fields", "1")]);
        let tags = server.ok(
            "exportContacts",
            &[("email", email), ("field_names[]", "tags")],
        )["data"][0][0]
            .clone();
        (contact["fields"].clone(), tags)
    };
    let b_text = b.to_string();
    // overwrite=0: only empty fields are set, tags added, lists kept.
    setup("o0@example.com");
    server.import(&["email", "Zip"], &[&["o0@example.com", ""]], &[]);
    subscribe(
        &server,
        &[
            ("list_ids", &b_text),
            ("fields[email]", "o0@example.com"),
            ("fields[City]", "Bergen"),
            ("fields[Zip]", "5003"),
            ("tags", "new"),
            ("double_optin", "3"),
        ],
    );
    assert_eq!(
        fields_and_tags("o0@example.com"),
        (json!({"City": "Oslo", "Zip": "5003"}), json!("new,old"))
    );
    assert_eq!(
        lists(&server, "o0@example.com"),
        vec![(a, "active".into()), (b, "active".into())]
    );
    // overwrite=1: all fields and tags replaced, other lists left.
    setup("o1@example.com");
    subscribe(
        &server,
        &[
            ("list_ids", &b_text),
            ("fields[email]", "o1@example.com"),
            ("fields[City]", "Bergen"),
            ("double_optin", "3"),
            ("overwrite", "1"),
        ],
    );
    assert_eq!(
        fields_and_tags("o1@example.com"),
        (json!({"City": "Bergen", "Zip": ""}), json!(""))
    );
    assert_eq!(lists(&server, "o1@example.com"), vec![(b, "active".into())]);
    // overwrite=2: given fields replaced, others kept; tags only when given.
    setup("o2@example.com");
    subscribe(
        &server,
        &[
            ("list_ids", &b_text),
            ("fields[email]", "o2@example.com"),
            ("fields[City]", "Bergen"),
            ("double_optin", "3"),
            ("overwrite", "2"),
        ],
    );
    assert_eq!(
        fields_and_tags("o2@example.com"),
        (json!({"City": "Bergen", "Zip": "0150"}), json!("old"))
    );
    subscribe(
        &server,
        &[
            ("list_ids", &b_text),
            ("fields[email]", "o2@example.com"),
            ("tags", "x,y"),
            ("double_optin", "3"),
            ("overwrite", "2"),
        ],
    );
    assert_eq!(fields_and_tags("o2@example.com").1, json!("x,y"));
    assert_eq!(
        lists(&server, "o2@example.com"),
        vec![(a, "active".into()), (b, "active".into())]
    );
}

#[test]
fn subscribe_errors() {
    let server = TestServer::start();
    let list = server.create_list("L").to_string();
    let foreign = server.call_as(OTHER_KEY, "createList", &[("title", "T")])["result"]["id"]
        .as_i64()
        .unwrap()
        .to_string();
    for (pairs, mentions) in [
        (vec![("fields[email]", "a@example.com")], "list_ids"),
        (
            vec![("list_ids", "x"), ("fields[email]", "a@example.com")],
            "list_ids",
        ),
        (
            vec![("list_ids", "999999"), ("fields[email]", "a@example.com")],
            "list_ids",
        ),
        (
            vec![
                ("list_ids", foreign.as_str()),
                ("fields[email]", "a@example.com"),
            ],
            "list_ids",
        ),
        (vec![("list_ids", list.as_str())], "fields"),
        (
            vec![("list_ids", list.as_str()), ("fields[name]", "x")],
            "fields[name]",
        ),
        (
            vec![("list_ids", list.as_str()), ("fields[email]", "bad")],
            "email",
        ),
        (
            vec![("list_ids", list.as_str()), ("fields[phone]", "12")],
            "phone",
        ),
        (
            vec![
                ("list_ids", list.as_str()),
                ("fields[email]", "a@example.com"),
                ("double_optin", "5"),
            ],
            "double_optin",
        ),
        (
            vec![
                ("list_ids", list.as_str()),
                ("fields[email]", "a@example.com"),
                ("overwrite", "3"),
            ],
            "overwrite",
        ),
        (
            vec![
                ("list_ids", list.as_str()),
                ("fields[email]", "a@example.com"),
                ("tags", "1,2,3,4,5,6,7,8,9,10,11"),
            ],
            "tags",
        ),
    ] {
        let answer = subscribe(&server, &pairs);
        assert_eq!(answer["code"], "invalid_arg", "{pairs:?}: {answer}");
        assert!(
            answer["error"].as_str().unwrap().contains(mentions),
            "{answer}"
        );
    }
    assert_eq!(
        server.contact_count(),
        0,
        "no refused call changed anything"
    );
    // Adding tags past ten to an existing contact is refused and rolled back whole.
    server.import(
        &["email", "tags"],
        &[&["full@example.com", "1,2,3,4,5,6,7,8,9,10"]],
        &[],
    );
    let answer = subscribe(
        &server,
        &[
            ("list_ids", &list),
            ("fields[email]", "full@example.com"),
            ("tags", "eleven"),
            ("double_optin", "3"),
        ],
    );
    assert_eq!(answer["code"], "invalid_arg");
    assert_eq!(lists(&server, "full@example.com"), vec![]);
}

#[test]
fn exclude_and_unsubscribe_show_in_export() {
    let server = TestServer::start();
    let [a, b, c] = server.create_lists(["A", "B", "C"]);
    let all = format!("{a},{b},{c}");
    server.import(
        &[
            "email",
            "email_list_ids",
            "phone",
            "phone_list_ids",
            "email_status",
        ],
        &[&["x@example.com", &all, "+15550000001", &all, "active"]],
        &[],
    );
    assert_eq!(
        server.call(
            "unsubscribe",
            &[
                ("contact_type", "email"),
                ("contact", "X@example.com"),
                ("list_ids", &a.to_string())
            ]
        ),
        json!({"result": {}})
    );
    assert_eq!(
        server.call(
            "exclude",
            &[
                ("contact_type", "email"),
                ("contact", "x@example.com"),
                ("list_ids", &format!("{b}"))
            ]
        ),
        json!({"result": {}})
    );
    assert_eq!(
        server.call(
            "exclude",
            &[("contact_type", "phone"), ("contact", "+1 555 000 0001")]
        ),
        json!({"result": {}})
    );
    let row = server.ok(
        "exportContacts",
        &[
            ("field_names[]", "email_list_ids"),
            ("field_names[]", "email_unsubscribed_list_ids"),
            ("field_names[]", "email_excluded_list_ids"),
            ("field_names[]", "phone_list_ids"),
            ("field_names[]", "phone_excluded_list_ids"),
            ("field_names[]", "email_status"),
        ],
    )["data"][0]
        .clone();
    assert_eq!(
        row,
        json!([
            c.to_string(),
            a.to_string(),
            b.to_string(),
            "",
            all,
            "active"
        ]),
        "the status does not change"
    );
    // Unknown contacts, bad types, other accounts' lists.
    let answer = server.call(
        "unsubscribe",
        &[("contact_type", "email"), ("contact", "nobody@example.com")],
    );
    assert_eq!(
        answer,
        json!({"error": "Contact \"nobody@example.com\" not found", "code": "unspecified", "result": ""})
    );
    assert_eq!(
        server.call(
            "exclude",
            &[("contact_type", "fax"), ("contact", "x@example.com")]
        )["code"],
        "invalid_arg"
    );
    assert_eq!(
        server.call("exclude", &[("contact_type", "email")])["code"],
        "invalid_arg"
    );
    assert_eq!(
        server.call(
            "exclude",
            &[
                ("contact_type", "email"),
                ("contact", "x@example.com"),
                ("list_ids", "999999")
            ]
        )["code"],
        "invalid_arg"
    );
    assert_eq!(
        server.call_as(
            OTHER_KEY,
            "exclude",
            &[("contact_type", "email"), ("contact", "x@example.com")]
        )["code"],
        "unspecified"
    );
}

#[test]
fn get_contact_with_each_include_flag() {
    let server = TestServer::start();
    let list = server.create_list("L");
    server.create_field("City");
    server.create_field("Zip");
    server.import(
        &[
            "email",
            "email_list_ids",
            "email_subscribe_times",
            "email_add_time",
            "City",
            "email_availability",
        ],
        &[&[
            "gc@example.com",
            &list.to_string(),
            "2023-01-02 03:04:05",
            "2022-12-31",
            "Oslo",
            "mailbox_full",
        ]],
        &[],
    );
    let bare = server.call("getContact", &[("email", "GC@example.com")]);
    assert_eq!(
        bare,
        json!({"result": {"email": {"email": "gc@example.com", "added_at": "2022-12-31 00:00:00", "status": "new", "availability": "mailbox_full"}}})
    );
    let full = server.ok(
        "getContact",
        &[
            ("email", "gc@example.com"),
            ("include_lists", "1"),
            ("include_fields", "true"),
            ("include_details", "1"),
        ],
    );
    assert_eq!(
        full["lists"],
        json!([{"id": list, "status": "active", "added_at": "2023-01-02 03:04:05"}])
    );
    assert_eq!(full["fields"], json!({"City": "Oslo", "Zip": ""}));
    for detail in [
        "last_send_datetime",
        "last_delivery_datetime",
        "last_read_datetime",
        "last_click_datetime",
        "rating",
    ] {
        assert_eq!(full["email"][detail], Value::Null, "{detail}");
        assert!(full["email"].as_object().unwrap().contains_key(detail));
    }
    assert_eq!(
        server.call("getContact", &[("email", "none@example.com")]),
        json!({"error": "Contact \"none@example.com\" not found", "code": "unspecified", "result": ""})
    );
    assert_eq!(
        server.call("getContact", &[("email", "bad")])["code"],
        "invalid_arg"
    );
    assert_eq!(
        server.call_as(OTHER_KEY, "getContact", &[("email", "gc@example.com")])["code"],
        "unspecified"
    );
}

#[test]
fn get_contact_count_with_each_filter() {
    let server = TestServer::start();
    let list = server.create_list("L").to_string();
    server.import(
        &["email", "phone", "email_list_ids", "phone_list_ids", "tags"],
        &[
            &["alice@corp.com", "+15551110001", &list, &list, "vip"],
            &["bob@home.org", "", &list, "", ""],
            &["", "+15552220002", "", &list, "vip"],
            &["carol@corp.com", "", "", "", "vip"],
        ],
        &[],
    );
    let vip = server.ok("getTags", &[])[0]["id"]
        .as_i64()
        .unwrap()
        .to_string();
    let count = |extra: &[(&str, &str)]| {
        let mut pairs = vec![("list_id", list.as_str())];
        pairs.extend_from_slice(extra);
        server.ok("getContactCount", &pairs)
    };
    assert_eq!(
        count(&[]),
        json!({"count": 3, "listId": list.parse::<i64>().unwrap(), "searchParams": {}})
    );
    assert_eq!(count(&[("params[type]", "address")])["count"], 2);
    assert_eq!(count(&[("params[type]", "phone")])["count"], 2);
    assert_eq!(count(&[("params[tagId]", &vip)])["count"], 2);
    assert_eq!(count(&[("params[search]", "CORP")])["count"], 1);
    assert_eq!(
        count(&[("params[type]", "phone"), ("params[search]", "222")])["count"],
        1
    );
    let answer = count(&[
        ("params[tagId]", &vip),
        ("params[type]", "address"),
        ("params[search]", "corp"),
    ]);
    assert_eq!(answer["count"], 1);
    assert_eq!(
        answer["searchParams"],
        json!({"search": "corp", "tagId": vip, "type": "address"})
    );
    assert_eq!(server.call("getContactCount", &[])["code"], "invalid_arg");
    assert_eq!(
        server.call(
            "getContactCount",
            &[("list_id", &list), ("params[type]", "fax")]
        )["code"],
        "invalid_arg"
    );
    assert_eq!(
        server.call(
            "getContactCount",
            &[("list_id", &list), ("params[tagId]", "999999")]
        )["code"],
        "invalid_arg"
    );
    assert_eq!(
        server.call_as(OTHER_KEY, "getContactCount", &[("list_id", &list)])["code"],
        "invalid_arg"
    );
}

#[test]
fn total_contacts_count_and_access() {
    let server = TestServer::start();
    server.import(&["email"], &[&["a@example.com"], &["b@example.com"]], &[]);
    assert_eq!(
        server.call("getTotalContactsCount", &[("login", "test")]),
        json!({"result": {"total": 2}})
    );
    assert_eq!(
        server.call_as(OTHER_KEY, "getTotalContactsCount", &[("login", "other")]),
        json!({"result": {"total": 0}})
    );
    assert_eq!(
        server.call("getTotalContactsCount", &[("login", "other")])["code"],
        "access_denied"
    );
    assert_eq!(
        server.call("getTotalContactsCount", &[])["code"],
        "invalid_arg"
    );
    server.import(&["email", "delete"], &[&["a@example.com", "1"]], &[]);
    assert_eq!(
        server.ok("getTotalContactsCount", &[("login", "test")])["total"],
        1
    );
}

#[test]
fn is_contact_in_lists_with_both_conditions() {
    let server = TestServer::start();
    let [a, b, c] = server.create_lists(["A", "B", "C"]);
    server.import(
        &[
            "email",
            "email_list_ids",
            "email_unsubscribed_list_ids",
            "email_excluded_list_ids",
        ],
        &[&[
            "in@example.com",
            &a.to_string(),
            &b.to_string(),
            &c.to_string(),
        ]],
        &[],
    );
    let ask = |lists: String, condition: &str| {
        server.ok(
            "isContactInLists",
            &[
                ("email", "in@example.com"),
                ("list_ids", &lists),
                ("condition", condition),
            ],
        )
    };
    assert_eq!(
        ask(format!("{a},{b}"), "and"),
        json!(true),
        "unsubscribed is still in the list"
    );
    assert_eq!(
        ask(format!("{a},{c}"), "and"),
        json!(false),
        "excluded is not"
    );
    assert_eq!(ask(format!("{a},{c}"), "or"), json!(true));
    assert_eq!(ask(format!("{c}"), "or"), json!(false));
    assert_eq!(
        server.ok(
            "isContactInLists",
            &[
                ("email", "in@example.com"),
                ("list_ids", &format!("{c}, {a}"))
            ]
        ),
        json!(true),
        "or by default"
    );
    assert_eq!(
        server.ok(
            "isContactInLists",
            &[("email", "out@example.com"), ("list_ids", &a.to_string())]
        ),
        json!(false)
    );
    assert_eq!(
        server.call(
            "isContactInLists",
            &[
                ("email", "in@example.com"),
                ("list_ids", &a.to_string()),
                ("condition", "xor")
            ]
        )["code"],
        "invalid_arg"
    );
    assert_eq!(
        server.call(
            "isContactInLists",
            &[("email", "in@example.com"), ("list_ids", "999999")]
        )["code"],
        "invalid_arg"
    );
    assert_eq!(
        server.call_as(
            OTHER_KEY,
            "isContactInLists",
            &[("email", "in@example.com"), ("list_ids", &a.to_string())]
        )["code"],
        "invalid_arg"
    );
}

#[test]
fn get_contact_field_values() {
    let server = TestServer::start();
    let (city, zip) = (server.create_field("City"), server.create_field("Zip"));
    server.import(&["email", "City"], &[&["fv@example.com", "Oslo"]], &[]);
    let answer = server.call(
        "getContactFieldValues",
        &[
            ("email", "fv@example.com"),
            ("field_ids", &format!("{city},{zip}")),
        ],
    );
    assert_eq!(
        answer,
        json!({"result": {"fieldValues": {city.to_string(): "Oslo", zip.to_string(): ""}}})
    );
    assert_eq!(
        server.call(
            "getContactFieldValues",
            &[("email", "fv@example.com"), ("field_ids", "999999")]
        )["code"],
        "invalid_arg"
    );
    assert_eq!(
        server.call(
            "getContactFieldValues",
            &[
                ("email", "no@example.com"),
                ("field_ids", &city.to_string())
            ]
        )["code"],
        "unspecified"
    );
    assert_eq!(
        server.call_as(
            OTHER_KEY,
            "getContactFieldValues",
            &[
                ("email", "fv@example.com"),
                ("field_ids", &city.to_string())
            ]
        )["code"],
        "invalid_arg"
    );
}
