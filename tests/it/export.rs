//! §6.1: exportContacts's filters, columns, paging and isolation.

use crate::support::{OTHER_KEY, TestServer};
use serde_json::{Value, json};

fn export(server: &TestServer, pairs: &[(&str, &str)]) -> Value {
    server.call("exportContacts", pairs)
}

/// The emails (first column) of an export's rows.
fn emails(answer: &Value) -> Vec<String> {
    answer["result"]["data"]
        .as_array()
        .unwrap_or_else(|| panic!("no data in {answer}"))
        .iter()
        .map(|row| row[0].as_str().unwrap().to_string())
        .collect()
}

/// Five contacts: in list A active / unsubscribed / excluded, tagged, with statuses.
fn populated() -> (TestServer, i64, i64) {
    let server = TestServer::start();
    let [a, b] = server.create_lists(["A", "B"]);
    server.create_field("City");
    let (a_text, b_text) = (a.to_string(), b.to_string());
    let answer = server.import(
        &[
            "email",
            "phone",
            "email_status",
            "phone_status",
            "email_list_ids",
            "email_unsubscribed_list_ids",
            "email_excluded_list_ids",
            "phone_list_ids",
            "tags",
            "City",
        ],
        &[
            &[
                "one@example.com",
                "+15550000001",
                "active",
                "",
                &a_text,
                "",
                "",
                "",
                "VIP",
                "Paris",
            ],
            &[
                "two@example.com",
                "",
                "inactive",
                "",
                "",
                &a_text,
                "",
                "",
                "vip,Other",
                "",
            ],
            &[
                "three@example.com",
                "+15550000003",
                "",
                "inactive",
                "",
                "",
                &a_text,
                "",
                "",
                "Rome",
            ],
            &["", "+15550000004", "", "", "", "", "", &a_text, "Other", ""],
            &[
                "five@example.com",
                "",
                "unsubscribed",
                "",
                &b_text,
                "",
                "",
                "",
                "",
                "",
            ],
        ],
        &[],
    );
    assert_eq!(answer["result"]["inserted"], 5, "{answer}");
    (server, a, b)
}

#[test]
fn the_default_columns_and_values_as_strings() {
    let (server, a, _) = populated();
    let answer = export(&server, &[]);
    let names: Vec<&str> = answer["result"]["field_names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        vec![
            "id",
            "email",
            "email_status",
            "email_availability",
            "email_add_time",
            "email_request_ip",
            "email_confirm_time",
            "email_confirm_ip",
            "email_list_ids",
            "email_subscribe_times",
            "email_unsubscribed_list_ids",
            "email_excluded_list_ids",
            "phone",
            "phone_status",
            "phone_availability",
            "phone_add_time",
            "phone_request_ip",
            "phone_list_ids",
            "phone_subscribe_times",
            "phone_unsubscribed_list_ids",
            "phone_excluded_list_ids",
            "tags",
            "City"
        ]
    );
    let data = answer["result"]["data"].as_array().unwrap();
    assert_eq!(data.len(), 5);
    for row in data {
        assert_eq!(row.as_array().unwrap().len(), names.len());
        assert!(
            row.as_array().unwrap().iter().all(Value::is_string),
            "every value is a string: {row}"
        );
    }
    let first = &data[0];
    let col = |name: &str| names.iter().position(|n| *n == name).unwrap();
    assert_eq!(first[col("email_list_ids")], a.to_string());
    assert_eq!(first[col("email_status")], "active");
    assert_eq!(first[col("tags")], "VIP");
    assert_eq!(first[col("City")], "Paris");
    assert_eq!(first[col("email_confirm_ip")], "");
    let fourth = &data[3];
    assert_eq!(fourth[col("email")], "");
    assert_eq!(
        fourth[col("email_status")],
        "",
        "a contact without the channel has empty channel columns"
    );
    assert_eq!(fourth[col("phone_list_ids")], a.to_string());
    // Tags by name, comma-joined; ids ascending by contact.
    assert_eq!(data[1][col("tags")], "Other,VIP");
    let ids: Vec<i64> = data
        .iter()
        .map(|r| r[0].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn both_field_names_spellings_and_unknown_names() {
    let (server, _, _) = populated();
    let indexed = export(
        &server,
        &[
            ("field_names[0]", "email"),
            ("field_names[1]", "city"),
            ("field_names[2]", "TAGS"),
        ],
    );
    let appended = export(
        &server,
        &[
            ("field_names[]", "email"),
            ("field_names[]", "city"),
            ("field_names[]", "TAGS"),
        ],
    );
    assert_eq!(indexed, appended);
    assert_eq!(
        indexed["result"]["field_names"],
        json!(["email", "City", "tags"])
    );
    assert_eq!(
        indexed["result"]["data"][0],
        json!(["one@example.com", "Paris", "VIP"])
    );
    for bad in ["nope", "delete"] {
        let answer = export(
            &server,
            &[("field_names[]", "email"), ("field_names[]", bad)],
        );
        assert_eq!(answer["code"], "invalid_arg", "{bad}");
        assert!(answer["error"].as_str().unwrap().contains(bad));
    }
}

#[test]
fn every_filter_alone() {
    let (server, a, b) = populated();
    let cols = [("field_names[]", "email"), ("field_names[]", "phone")];
    let with = |extra: &[(&str, &str)]| {
        let mut pairs = cols.to_vec();
        pairs.extend_from_slice(extra);
        emails(&export(&server, &pairs))
    };
    // "In a list" is active or unsubscribed, on either channel; excluded is not.
    assert_eq!(
        with(&[("list_id", &a.to_string())]),
        vec!["one@example.com", "two@example.com", ""]
    );
    assert_eq!(
        with(&[("list_id", &b.to_string())]),
        vec!["five@example.com"]
    );
    assert_eq!(
        with(&[("email", " TWO@example.com ")]),
        vec!["two@example.com"]
    );
    assert_eq!(
        with(&[("phone", "+1 (555) 000-0003")]),
        vec!["three@example.com"]
    );
    assert_eq!(
        with(&[("tag", "vip")]),
        vec!["one@example.com", "two@example.com"]
    );
    assert_eq!(with(&[("tag", "no-such-tag")]), Vec::<String>::new());
    assert_eq!(
        with(&[("email_status", "inactive")]),
        vec!["two@example.com"]
    );
    assert_eq!(with(&[("email_status", "new")]), vec!["three@example.com"]);
    assert_eq!(
        with(&[("phone_status", "inactive")]),
        vec!["three@example.com"]
    );
    assert_eq!(
        with(&[("phone_status", "active")]),
        vec!["one@example.com", ""]
    );
}

#[test]
fn filters_combined() {
    let (server, a, _) = populated();
    let answer = export(
        &server,
        &[
            ("field_names[]", "email"),
            ("list_id", &a.to_string()),
            ("tag", "other"),
        ],
    );
    assert_eq!(
        emails(&answer),
        vec!["two@example.com", ""],
        "two by email, the fourth by phone"
    );
    let answer = export(
        &server,
        &[
            ("field_names[]", "email"),
            ("list_id", &a.to_string()),
            ("email_status", "active"),
            ("tag", "VIP"),
        ],
    );
    assert_eq!(emails(&answer), vec!["one@example.com"]);
    let answer = export(
        &server,
        &[
            ("field_names[]", "email"),
            ("email", "one@example.com"),
            ("phone_status", "inactive"),
        ],
    );
    assert_eq!(emails(&answer), Vec::<String>::new());
}

#[test]
fn bad_filter_and_paging_arguments() {
    let (server, _, _) = populated();
    let foreign = server.call_as(OTHER_KEY, "createList", &[("title", "Theirs")])["result"]["id"]
        .as_i64()
        .unwrap()
        .to_string();
    for (name, value) in [
        ("list_id", foreign.as_str()),
        ("list_id", "999999"),
        ("list_id", "x"),
        ("email", "not-an-email"),
        ("phone", "12"),
        ("email_status", "sleepy"),
        ("phone_status", "invited"),
        ("limit", "0"),
        ("limit", "1001"),
        ("limit", "-1"),
        ("limit", "ten"),
        ("offset", "-1"),
        ("offset", "1.5"),
    ] {
        let answer = export(&server, &[(name, value)]);
        assert_eq!(answer["code"], "invalid_arg", "{name}={value}: {answer}");
        assert!(answer["error"].as_str().unwrap().contains(name), "{answer}");
    }
}

#[test]
fn paging_at_the_edges() {
    let (server, _, _) = populated();
    let all = emails(&export(&server, &[("field_names[]", "email")]));
    assert_eq!(
        emails(&export(
            &server,
            &[("field_names[]", "email"), ("limit", "1")]
        )),
        all[..1].to_vec()
    );
    assert_eq!(
        emails(&export(
            &server,
            &[("field_names[]", "email"), ("limit", "1000")]
        )),
        all
    );
    assert_eq!(
        emails(&export(
            &server,
            &[
                ("field_names[]", "email"),
                ("offset", "4"),
                ("limit", "1000")
            ]
        )),
        all[4..].to_vec()
    );
    assert_eq!(
        emails(&export(
            &server,
            &[("field_names[]", "email"), ("offset", "5")]
        )),
        Vec::<String>::new()
    );
    assert_eq!(
        emails(&export(
            &server,
            &[("field_names[]", "email"), ("offset", "99999999999")]
        )),
        Vec::<String>::new()
    );
    let answer = export(
        &server,
        &[("field_names[]", "email"), ("offset", "2"), ("limit", "2")],
    );
    assert_eq!(emails(&answer), all[2..4].to_vec());
}

#[test]
fn deep_pages_match_a_full_walk_across_blocks_and_deletions() {
    let server = TestServer::start();
    // Interleave another account's contacts so that ids are not dense for this one.
    for round in 0..4 {
        let mine: Vec<String> = (0..500)
            .map(|i| format!("m{round}-{i}@example.com"))
            .collect();
        let rows: Vec<[&str; 1]> = mine.iter().map(|e| [e.as_str()]).collect();
        let rows: Vec<&[&str]> = rows.iter().map(|r| &r[..]).collect();
        server.import(&["email"], &rows, &[]);
        let mut theirs = vec![("field_names[0]".to_string(), "email".to_string())];
        for i in 0..300 {
            theirs.push((format!("data[{i}][0]"), format!("t{round}-{i}@example.com")));
        }
        let pairs: Vec<(&str, &str)> = theirs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        server.call_as(OTHER_KEY, "importContacts", &pairs);
    }
    // Delete every seventh of ours.
    let doomed: Vec<String> = (0..500)
        .step_by(7)
        .map(|i| format!("m1-{i}@example.com"))
        .collect();
    let rows: Vec<[&str; 2]> = doomed.iter().map(|e| [e.as_str(), "1"]).collect();
    let rows: Vec<&[&str]> = rows.iter().map(|r| &r[..]).collect();
    assert_eq!(
        server.import(&["email", "delete"], &rows, &[])["result"]["deleted"],
        doomed.len()
    );

    let mut walk = Vec::new();
    for page in 0.. {
        let got = emails(&export(
            &server,
            &[
                ("field_names[]", "email"),
                ("offset", &(page * 1000).to_string()),
            ],
        ));
        if got.is_empty() {
            break;
        }
        walk.extend(got);
    }
    assert_eq!(walk.len(), 2000 - doomed.len());
    assert!(
        walk.iter().all(|e| e.starts_with('m')),
        "only this account's contacts"
    );
    for (offset, limit) in [
        (0, 3),
        (1023, 5),
        (1024, 1),
        (1100, 17),
        (1500, 1000),
        (1926, 10),
        (1927, 1),
    ] {
        let page = emails(&export(
            &server,
            &[
                ("field_names[]", "email"),
                ("offset", &offset.to_string()),
                ("limit", &limit.to_string()),
            ],
        ));
        let end = (offset + limit).min(walk.len());
        assert_eq!(
            page,
            walk[offset.min(end)..end].to_vec(),
            "offset {offset} limit {limit}"
        );
    }
}

#[test]
fn another_account_exports_nothing_of_this_one() {
    let (server, _, _) = populated();
    let answer = server.call_as(OTHER_KEY, "exportContacts", &[]);
    assert_eq!(answer["result"]["data"], json!([]));
    assert_eq!(
        answer["result"]["field_names"].as_array().unwrap().len(),
        22,
        "no user fields of the other account"
    );
    let answer = server.call_as(OTHER_KEY, "exportContacts", &[("email", "one@example.com")]);
    assert_eq!(answer["result"]["data"], json!([]));
    let answer = server.call_as(OTHER_KEY, "exportContacts", &[("field_names[]", "City")]);
    assert_eq!(answer["code"], "invalid_arg");
}

#[test]
fn filtered_pages_walked_in_order_match_and_a_write_resets_them() {
    let server = TestServer::start();
    let list = server.create_list("L").to_string();
    let mut rows = Vec::new();
    for i in 0..300 {
        // Every third contact is outside the list.
        let lists = if i % 3 == 0 {
            String::new()
        } else {
            list.clone()
        };
        rows.push([format!("p{i:03}@example.com"), lists]);
    }
    let rows_ref: Vec<[&str; 2]> = rows.iter().map(|[a, b]| [a.as_str(), b.as_str()]).collect();
    let rows_ref: Vec<&[&str]> = rows_ref.iter().map(|r| &r[..]).collect();
    server.import(&["email", "email_list_ids"], &rows_ref, &[]);
    let page = |offset: usize, limit: usize| {
        emails(&export(
            &server,
            &[
                ("field_names[]", "email"),
                ("list_id", &list),
                ("offset", &offset.to_string()),
                ("limit", &limit.to_string()),
            ],
        ))
    };
    let all = page(0, 1000);
    assert_eq!(all.len(), 200);
    // Walked in order, each page starts where the previous one ended.
    let mut walked = Vec::new();
    for offset in (0..210).step_by(7) {
        walked.extend(page(offset, 7));
    }
    assert_eq!(walked, all);
    // A contact leaves the list: pages after it shift, and no remembered end is used.
    server.import(
        &["email", "email_list_ids"],
        &[&["p001@example.com", ""]],
        &[("overwrite_lists", "1")],
    );
    let after: Vec<String> = all
        .iter()
        .filter(|e| *e != "p001@example.com")
        .cloned()
        .collect();
    assert_eq!(page(7, 7), after[7..14].to_vec());
    assert_eq!(page(14, 7), after[14..21].to_vec());
    // The same offsets with another filter are another walk.
    let tagged = emails(&export(
        &server,
        &[
            ("field_names[]", "email"),
            ("list_id", &list),
            ("email_status", "new"),
            ("offset", "14"),
            ("limit", "7"),
        ],
    ));
    assert_eq!(tagged, after[14..21].to_vec());
}

#[test]
fn sparse_and_dense_filtered_pages_match_the_filtered_full_walk() {
    let server = TestServer::start();
    let list = server.create_list("L").to_string();
    // Members every 97th contact (gaps wider than a read run) and a dense run of 20; a tag on
    // every 150th and on part of the dense run.
    let rows: Vec<[String; 3]> = (0..1000)
        .map(|i| {
            let member = i % 97 == 0 || (500..520).contains(&i);
            let tagged = i % 150 == 0 || (510..530).contains(&i);
            [
                format!("s{i:04}@example.com"),
                if member { list.clone() } else { String::new() },
                if tagged { "Mark".into() } else { String::new() },
            ]
        })
        .collect();
    for chunk in rows.chunks(500) {
        let cells: Vec<[&str; 3]> = chunk
            .iter()
            .map(|[a, b, c]| [a.as_str(), b.as_str(), c.as_str()])
            .collect();
        let cells: Vec<&[&str]> = cells.iter().map(|r| &r[..]).collect();
        server.import(&["email", "email_list_ids", "tags"], &cells, &[]);
    }
    let member = |r: &[String; 3]| !r[1].is_empty();
    let tagged = |r: &[String; 3]| !r[2].is_empty();
    let expected = |keep: &dyn Fn(&[String; 3]) -> bool| -> Vec<String> {
        rows.iter()
            .filter(|r| keep(r))
            .map(|r| r[0].clone())
            .collect()
    };
    for (filters, wanted) in [
        (vec![("list_id", list.as_str())], expected(&member)),
        (vec![("tag", "mark")], expected(&tagged)),
        (
            vec![("list_id", list.as_str()), ("tag", "MARK")],
            expected(&|r| member(r) && tagged(r)),
        ),
    ] {
        for (offset, limit) in [(0, 1000), (0, 1), (3, 4), (9, 100), (25, 5), (1000, 10)] {
            let (offset_text, limit_text) = (offset.to_string(), limit.to_string());
            let mut pairs = vec![
                ("field_names[]", "email"),
                ("offset", offset_text.as_str()),
                ("limit", limit_text.as_str()),
            ];
            pairs.extend(filters.iter().copied());
            let end = (offset + limit).min(wanted.len());
            assert_eq!(
                emails(&export(&server, &pairs)),
                wanted[offset.min(end)..end].to_vec(),
                "{filters:?} offset {offset} limit {limit}"
            );
        }
    }
}
