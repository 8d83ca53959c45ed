//! §5.4 step by step, §5.5's counters, and test_mode.

use crate::support::TestServer;
use serde_json::{Value, json};

fn lists_of(contact: &Value, channel: &str) -> Vec<(i64, String)> {
    contact[format!("{channel}_lists")]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m[0].as_i64().unwrap(), m[1].as_str().unwrap().to_string()))
        .collect()
}

fn time_of(contact: &Value, channel: &str, list: i64) -> i64 {
    contact[format!("{channel}_lists")]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m[0] == list)
        .map(|m| m[2].as_i64().unwrap())
        .expect("a membership in that list")
}

#[test]
fn step1_found_by_email_else_by_phone_and_addresses_replaced() {
    let server = TestServer::start();
    server.import(
        &["email", "phone", "email_status"],
        &[&["p@example.com", "+15550000001", "active"]],
        &[],
    );
    let id = server.contact("p@example.com").unwrap()["id"].clone();
    // Found by phone: the email is replaced, the channel keeps its status.
    let answer = server.import(
        &["email", "phone"],
        &[&["new-mailbox@example.com", "+15550000001"]],
        &[],
    );
    assert_eq!(answer["result"]["updated"], 1);
    let contact = server.contact("+15550000001").unwrap();
    assert_eq!(
        (
            contact["id"].clone(),
            contact["email"].as_str(),
            contact["email_status"].as_str()
        ),
        (id.clone(), Some("new-mailbox@example.com"), Some("active"))
    );
    assert!(server.contact("p@example.com").is_none());
    // Found by email: the phone is replaced.
    server.import(
        &["email", "phone"],
        &[&["new-mailbox@example.com", "+15550000002"]],
        &[],
    );
    let contact = server.contact("new-mailbox@example.com").unwrap();
    assert_eq!(
        (contact["id"].clone(), contact["phone"].as_str()),
        (id, Some("+15550000002"))
    );
    assert_eq!(server.contact_count(), 1);
}

#[test]
fn step2_delete_removes_everything_and_counts_whether_or_not_it_existed() {
    let server = TestServer::start();
    let list = server.create_list("L").to_string();
    server.create_field("City");
    server.import(
        &["email", "phone", "email_list_ids", "tags", "City"],
        &[&["del@example.com", "+15550000003", &list, "t", "x"]],
        &[],
    );
    let answer = server.import(
        &["phone", "delete"],
        &[&["+15550000003", "1"], &["+15550009999", "1"]],
        &[],
    );
    assert_eq!(answer["result"]["deleted"], 2, "{answer}");
    assert_eq!(server.contact_count(), 0);
    // Nothing of it is left: the same addresses come back as a blank contact.
    server.import(
        &["email", "phone"],
        &[&["del@example.com", "+15550000003"]],
        &[],
    );
    let again = server.contact("del@example.com").unwrap();
    assert_eq!(
        (&again["email_lists"], &again["tags"], &again["fields"]),
        (&json!([]), &json!([]), &json!({})),
        "{again}"
    );
    server.import(&["phone", "delete"], &[&["+15550000003", "1"]], &[]);
    // delete=0 and an empty delete cell are no delete.
    let answer = server.import(
        &["email", "delete"],
        &[&["keep@example.com", "0"], &["keep2@example.com", ""]],
        &[],
    );
    assert_eq!(answer["result"]["inserted"], 2);
}

#[test]
fn step4_existing_contacts_status_rule_and_added_channels() {
    let server = TestServer::start();
    server.import(
        &["email", "email_status"],
        &[&["s4@example.com", "active"]],
        &[],
    );
    let answer = server.import(
        &[
            "email",
            "email_status",
            "email_availability",
            "email_request_ip",
            "phone",
            "phone_status",
        ],
        &[&[
            "s4@example.com",
            "inactive",
            "spam_rejected",
            "192.0.2.1",
            "+15550000004",
            "new",
        ]],
        &[],
    );
    assert_eq!(answer["result"]["updated"], 1);
    assert_eq!(answer["result"]["log"], json!([]));
    let contact = server.contact("s4@example.com").unwrap();
    assert_eq!(
        contact["email_status"], "inactive",
        "active may become inactive"
    );
    assert_eq!(contact["email_availability"], "spam_rejected");
    assert_eq!(contact["email_request_ip"], "192.0.2.1");
    assert_eq!(
        contact["phone"], "+15550000004",
        "a lacking channel is added"
    );
    assert_eq!(contact["phone_status"], "new");
    assert!(contact["phone_add_time"].is_number());
    // inactive may become unsubscribed; unsubscribed then stays.
    server.import(
        &["email", "email_status"],
        &[&["s4@example.com", "unsubscribed"]],
        &[],
    );
    server.import(
        &["email", "email_status"],
        &[&["s4@example.com", "active"]],
        &[],
    );
    assert_eq!(
        server.contact("s4@example.com").unwrap()["email_status"],
        "unsubscribed"
    );
    // The phone status rule is the same.
    server.import(
        &["phone", "phone_status"],
        &[&["+15550000004", "active"]],
        &[],
    );
    assert_eq!(
        server.contact("s4@example.com").unwrap()["phone_status"],
        "new"
    );
}

#[test]
fn step5_merging_memberships() {
    let server = TestServer::start();
    let [a, b, c] = server.create_lists(["A", "B", "C"]);
    server.import(
        &[
            "email",
            "email_list_ids",
            "email_subscribe_times",
            "phone",
            "phone_list_ids",
        ],
        &[&[
            "m@example.com",
            &format!("{a},{b}"),
            "2020-01-01,2020-01-02",
            "+15550000005",
            &a.to_string(),
        ]],
        &[],
    );
    let before = server.contact("m@example.com").unwrap();
    // Re-subscribing A without a time keeps its time; C is added now; B is unsubscribed.
    server.import(
        &["email", "email_list_ids", "email_unsubscribed_list_ids"],
        &[&["m@example.com", &format!("{a},{c}"), &b.to_string()]],
        &[],
    );
    let after = server.contact("m@example.com").unwrap();
    assert_eq!(
        lists_of(&after, "email"),
        vec![
            (a, "active".into()),
            (b, "unsubscribed".into()),
            (c, "active".into())
        ]
    );
    assert_eq!(
        time_of(&after, "email", a),
        time_of(&before, "email", a),
        "an active list keeps its time"
    );
    assert_eq!(
        time_of(&after, "email", b),
        time_of(&before, "email", b),
        "unsubscribing keeps the time"
    );
    assert_eq!(
        lists_of(&after, "phone"),
        vec![(a, "active".into())],
        "the phone channel is untouched"
    );
    // Excluded, then subscribed again with an explicit time.
    server.import(
        &["email", "email_excluded_list_ids"],
        &[&["m@example.com", &a.to_string()]],
        &[],
    );
    assert_eq!(
        lists_of(&server.contact("m@example.com").unwrap(), "email")[0],
        (a, "excluded".into())
    );
    server.import(
        &["email", "email_list_ids", "email_subscribe_times"],
        &[&["m@example.com", &a.to_string(), "2022-02-02 02:02:02"]],
        &[],
    );
    let contact = server.contact("m@example.com").unwrap();
    assert_eq!(lists_of(&contact, "email")[0], (a, "active".into()));
    assert_eq!(time_of(&contact, "email", a), 1643767322);
    // Memberships apply only to channels whose address the row carries.
    server.import(
        &["email", "phone_list_ids"],
        &[&["m@example.com", &c.to_string()]],
        &[],
    );
    assert_eq!(
        lists_of(&server.contact("m@example.com").unwrap(), "phone"),
        vec![(a, "active".into())]
    );
}

#[test]
fn step5_overwriting_memberships() {
    let server = TestServer::start();
    let [a, b, c] = server.create_lists(["A", "B", "C"]);
    server.import(
        &[
            "email",
            "email_list_ids",
            "email_excluded_list_ids",
            "phone",
            "phone_list_ids",
        ],
        &[&[
            "o@example.com",
            &format!("{a},{b}"),
            &c.to_string(),
            "+15550000006",
            &b.to_string(),
        ]],
        &[],
    );
    // overwrite_lists=1: exactly what the row gives, for the channel with list columns only.
    server.import(
        &["email", "email_list_ids", "email_subscribe_times"],
        &[&["o@example.com", &c.to_string(), "2021-06-01"]],
        &[("overwrite_lists", "1")],
    );
    let contact = server.contact("o@example.com").unwrap();
    assert_eq!(lists_of(&contact, "email"), vec![(c, "active".into())]);
    assert_eq!(time_of(&contact, "email", c), 1622505600);
    assert_eq!(lists_of(&contact, "phone"), vec![(b, "active".into())]);
    // An empty cell means none.
    server.import(
        &["phone", "phone_list_ids"],
        &[&["+15550000006", ""]],
        &[("overwrite_lists", "1")],
    );
    assert_eq!(
        lists_of(&server.contact("o@example.com").unwrap(), "phone"),
        vec![]
    );
    // A row without list columns leaves the memberships, even with overwrite_lists=1.
    server.import(
        &["email", "tags"],
        &[&["o@example.com", "x"]],
        &[("overwrite_lists", "1")],
    );
    assert_eq!(
        lists_of(&server.contact("o@example.com").unwrap(), "email"),
        vec![(c, "active".into())]
    );
    // overwrite_lists=0 with an empty cell changes nothing.
    server.import(
        &["email", "email_list_ids"],
        &[&["o@example.com", ""]],
        &[("overwrite_lists", "0")],
    );
    assert_eq!(
        lists_of(&server.contact("o@example.com").unwrap(), "email"),
        vec![(c, "active".into())]
    );
    // Overwriting with unsubscribed and excluded lists.
    server.import(
        &[
            "email",
            "email_unsubscribed_list_ids",
            "email_excluded_list_ids",
        ],
        &[&["o@example.com", &a.to_string(), &b.to_string()]],
        &[("overwrite_lists", "1")],
    );
    assert_eq!(
        lists_of(&server.contact("o@example.com").unwrap(), "email"),
        vec![(a, "unsubscribed".into()), (b, "excluded".into())]
    );
}

#[test]
fn step6_tags() {
    let server = TestServer::start();
    server.import(
        &["email", "tags"],
        &[&["t@example.com", " VIP , ,vip,New "]],
        &[],
    );
    assert_eq!(
        server.contact("t@example.com").unwrap()["tags"],
        json!(["New", "VIP"])
    );
    // Adding merges case-insensitively with the account's existing tag names.
    server.import(&["email", "tags"], &[&["t@example.com", "new, Other"]], &[]);
    assert_eq!(
        server.contact("t@example.com").unwrap()["tags"],
        json!(["New", "Other", "VIP"])
    );
    let account_tags: i64 = server
        .db()
        .query_row("SELECT count(*) FROM tags", [], |r| r.get(0))
        .unwrap();
    assert_eq!(account_tags, 3);
    // Case is ignored beyond ASCII too, from one call to the next (Cyrillic here).
    server.import(&["email", "tags"], &[&["c1@example.com", "Клиент"]], &[]);
    server.import(&["email", "tags"], &[&["c2@example.com", "КЛИЕНТ"]], &[]);
    assert_eq!(
        server.contact("c2@example.com").unwrap()["tags"],
        json!(["Клиент"])
    );
    let tagged = server.ok(
        "exportContacts",
        &[("field_names", "email"), ("tag", "клиент")],
    );
    assert_eq!(
        tagged["data"],
        json!([["c1@example.com"], ["c2@example.com"]])
    );
    server.import(
        &["email", "delete"],
        &[&["c1@example.com", "1"], &["c2@example.com", "1"]],
        &[],
    );
    server.ok(
        "deleteTag",
        &[("id", &server.ok("getTags", &[])[3]["id"].to_string())],
    );
    // overwrite_tags=1 replaces.
    server.import(
        &["email", "tags"],
        &[&["t@example.com", "Only"]],
        &[("overwrite_tags", "1")],
    );
    assert_eq!(
        server.contact("t@example.com").unwrap()["tags"],
        json!(["Only"])
    );
    // Ten in all is the limit when adding.
    let nine = (0..9)
        .map(|i| format!("n{i}"))
        .collect::<Vec<_>>()
        .join(",");
    let answer = server.import(&["email", "tags"], &[&["t@example.com", &nine]], &[]);
    assert_eq!(answer["result"]["updated"], 1);
    let answer = server.import(&["email", "tags"], &[&["t@example.com", "one-more"]], &[]);
    assert_eq!(
        answer["result"]["log"][0]["code"], "too_many_tags",
        "{answer}"
    );
    assert_eq!(answer["result"]["invalid"], 1);
    assert_eq!(
        server.contact("t@example.com").unwrap()["tags"]
            .as_array()
            .unwrap()
            .len(),
        10
    );
    // ... but replacing with ten is fine.
    let ten = (0..10)
        .map(|i| format!("r{i}"))
        .collect::<Vec<_>>()
        .join(",");
    let answer = server.import(
        &["email", "tags"],
        &[&["t@example.com", &ten]],
        &[("overwrite_tags", "1")],
    );
    assert_eq!(answer["result"]["updated"], 1, "{answer}");
}

#[test]
fn counters() {
    let server = TestServer::start();
    server.import(
        &["email", "email_status"],
        &[&["c1@example.com", ""], &["c2@example.com", "active"]],
        &[],
    );
    let answer = server.import(
        &["email", "email_status", "delete"],
        &[
            &["c1@example.com", "", ""], // updated, still new: counts in new_emails
            &["c2@example.com", "", ""], // updated, active
            &["c3@example.com", "", ""], // inserted, new
            &["c4@example.com", "active", ""], // inserted, active
            &["c2@example.com", "", ""], // duplicate
            &["bad", "", ""],            // invalid
            &["c5@example.com", "", "1"], // deleted
        ],
        &[],
    );
    assert_eq!(
        answer["result"],
        json!({"total": 7, "inserted": 2, "updated": 2, "deleted": 1, "new_emails": 2, "invalid": 1,
               "log": [{"index": 4, "code": "duplicate_email", "message": "Duplicate email address"},
                       {"index": 5, "code": "invalid_email", "message": "Invalid email format"}]})
    );
}

#[test]
fn test_mode_answers_as_for_real_and_changes_nothing() {
    let server = TestServer::start();
    let list = server.create_list("L").to_string();
    server.create_field("City");
    server.import(
        &["email", "email_list_ids", "tags", "City"],
        &[&["e@example.com", &list, "a", "x"]],
        &[],
    );
    let columns = [
        "email",
        "phone",
        "email_list_ids",
        "tags",
        "City",
        "email_status",
        "delete",
    ];
    let rows: [&[&str]; 5] = [
        &[
            "e@example.com",
            "+15550000007",
            "",
            "b,c",
            "",
            "inactive",
            "",
        ],
        &["new@example.com", "", &list, "z", "y", "", ""],
        &["bad", "", "", "", "", "", ""],
        &["new@example.com", "", "", "", "", "", ""],
        &["gone@example.com", "", "", "", "", "", "1"],
    ];
    let before = server.everything();
    let dry = server.import(
        &columns,
        &rows,
        &[("test_mode", "1"), ("overwrite_tags", "1")],
    );
    assert_eq!(
        server.everything(),
        before,
        "test_mode changed the database"
    );
    let real = server.import(&columns, &rows, &[("overwrite_tags", "1")]);
    assert_eq!(dry, real, "test_mode answers exactly as the real call");
    assert_ne!(server.everything(), before);
}

#[test]
fn concurrent_imports_are_serialisable() {
    let server = TestServer::start();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let address = server.address;
            std::thread::spawn(move || {
                let server_rows: Vec<String> =
                    (0..200).map(|i| format!("shared{i}@example.com")).collect();
                let mut pairs = vec![
                    ("api_key".to_string(), crate::support::KEY.to_string()),
                    ("field_names[0]".into(), "email".into()),
                    ("field_names[1]".into(), "tags".into()),
                ];
                for (i, email) in server_rows.iter().enumerate() {
                    pairs.push((format!("data[{i}][0]"), email.clone()));
                    pairs.push((format!("data[{i}][1]"), format!("thread{t}")));
                }
                let pairs: Vec<(&str, &str)> = pairs
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                let body = crate::support::http_client::form(&pairs);
                crate::support::http_client::Client::new(address)
                    .post_form("/en/api/importContacts", &body)
                    .json()
            })
        })
        .collect();
    let answers: Vec<Value> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let inserted: i64 = answers
        .iter()
        .map(|a| a["result"]["inserted"].as_i64().unwrap())
        .sum();
    let updated: i64 = answers
        .iter()
        .map(|a| a["result"]["updated"].as_i64().unwrap())
        .sum();
    assert_eq!(
        (inserted, updated),
        (200, 600),
        "exactly one call inserted each contact"
    );
    assert_eq!(server.contact_count(), 200);
    // Every contact carries all four tags: no update was lost.
    for i in [0, 99, 199] {
        assert_eq!(
            server.contact(&format!("shared{i}@example.com")).unwrap()["tags"]
                .as_array()
                .unwrap()
                .len(),
            4
        );
    }
}

/// A call tries a row as a new contact first while the row before it created one, and falls
/// back to looking its addresses up when an address is taken, a tag is new or a list unknown:
/// every kind of row after every other answers as if each were looked up.
#[test]
fn rows_of_new_and_known_contacts_mixed_in_one_call() {
    let server = TestServer::start();
    server.import(
        &["email", "phone", "tags"],
        &[
            &["a@example.com", "+15550100001", "t1"],
            &["b@example.com", "+15550100002", "t1"],
            &["c@example.com", "", ""],
            &["", "+15550100004", ""],
        ],
        &[],
    );
    let b_id = server.contact("b@example.com").unwrap()["id"].clone();
    let answer = server.import(
        &["email", "phone", "tags", "email_list_ids"],
        &[
            // New, after new contacts: inserted without a lookup.
            &["n1@example.com", "+15550100011", "t1", ""],
            // Known by both addresses: the insert finds them taken, the row updates a.
            &["a@example.com", "+15550100001", "t2", ""],
            // A new email with b's phone: b's email is replaced.
            &["n2@example.com", "+15550100002", "", ""],
            // New again, with a tag to create.
            &["n3@example.com", "", "t1,t3", ""],
            // c's email with d's phone: two contacts.
            &["c@example.com", "+15550100004", "", ""],
            // New, after a refused row.
            &["n4@example.com", "", "t3", ""],
            // New, with a list that does not exist.
            &["n5@example.com", "", "", "999"],
            // New, after a refused row.
            &["n6@example.com", "+15550100099", "", ""],
        ],
        &[],
    );
    let result = &answer["result"];
    assert_eq!(
        (&result["inserted"], &result["updated"], &result["invalid"]),
        (&json!(4), &json!(2), &json!(2)),
        "{answer}"
    );
    let codes: Vec<(i64, &str)> = result["log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["index"].as_i64().unwrap(), e["code"].as_str().unwrap()))
        .collect();
    assert_eq!(
        codes,
        vec![
            (4, "owned_by_different_subscribers"),
            (6, "invalid_list_id")
        ]
    );
    let a = server.contact("a@example.com").unwrap();
    assert_eq!(
        (a["phone"].as_str(), &a["tags"]),
        (Some("+15550100001"), &json!(["t1", "t2"]))
    );
    // b, found by its phone, took n2's email; an empty tags cell adds none.
    let b = server.contact("+15550100002").unwrap();
    assert_eq!(
        (&b["id"], b["email"].as_str(), &b["tags"]),
        (&b_id, Some("n2@example.com"), &json!(["t1"]))
    );
    assert!(server.contact("b@example.com").is_none());
    assert_eq!(
        server.contact("n3@example.com").unwrap()["tags"],
        json!(["t1", "t3"])
    );
    assert_eq!(
        server.contact("n4@example.com").unwrap()["tags"],
        json!(["t3"])
    );
    assert!(server.contact("n5@example.com").is_none());
    assert!(server.contact("n6@example.com").is_some());
    assert_eq!(
        server.contact("c@example.com").unwrap()["phone"],
        Value::Null
    );
    // a, b, c, d, n1, n3, n4, n6.
    assert_eq!(server.contact_count(), 8);
}

/// Rows of new contacts go in a run at a time (one statement for up to 32 rows). A run that
/// meets a taken address is undone whole and its rows applied one by one: the answer is as if
/// each row were applied in turn, ids follow the rows' order, and the block counts stay exact.
#[test]
fn a_run_of_new_rows_that_meets_a_taken_address_answers_as_row_by_row() {
    let server = TestServer::start();
    server.import(
        &["email", "phone"],
        &[&["x@example.com", "+15550100001"]],
        &[],
    );
    let new_rows = |range: std::ops::Range<usize>| {
        range
            .map(|i| vec![format!("n{i}@example.com"), String::new()])
            .collect::<Vec<_>>()
    };
    // Runs grow 2, 4, 8, 16, 32 rows: the fifth (rows 30 to 61) holds x's row, which gives x a
    // new phone, and after it a new email with x's old phone, free once x's row is applied.
    let mut rows = new_rows(0..40);
    rows.push(vec!["x@example.com".into(), "+15550100002".into()]);
    rows.push(vec!["y@example.com".into(), "+15550100001".into()]);
    rows.extend(new_rows(40..80));
    let cells: Vec<Vec<&str>> = rows
        .iter()
        .map(|row| row.iter().map(String::as_str).collect())
        .collect();
    let cells: Vec<&[&str]> = cells.iter().map(Vec::as_slice).collect();
    let answer = server.import(&["email", "phone"], &cells, &[]);
    let result = &answer["result"];
    assert_eq!(
        (&result["inserted"], &result["updated"], &result["invalid"]),
        (&json!(81), &json!(1), &json!(0)),
        "{answer}"
    );
    assert_eq!(
        server.contact("x@example.com").unwrap()["phone"].as_str(),
        Some("+15550100002")
    );
    let y = server.contact("+15550100001").unwrap();
    assert_eq!(y["email"].as_str(), Some("y@example.com"));
    let id = |address: &str| server.contact(address).unwrap()["id"].as_i64().unwrap();
    let mut ids: Vec<i64> = (0..40).map(|i| id(&format!("n{i}@example.com"))).collect();
    ids.push(id("y@example.com"));
    ids.extend((40..80).map(|i| id(&format!("n{i}@example.com"))));
    assert!(ids.windows(2).all(|w| w[0] + 1 == w[1]), "{ids:?}");
    let db = server.db();
    let blocks = |sql: &str| -> Vec<(i64, i64)> {
        db.prepare(sql)
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    assert_eq!(
        blocks("SELECT block, contacts FROM contact_blocks ORDER BY block"),
        blocks("SELECT id >> 10, count(*) FROM contacts GROUP BY id >> 10 ORDER BY 1")
    );
    assert_eq!(server.contact_count(), 82);
}
