//! §6.1's round trip, as a property: any account exported with every column but `id`, imported
//! into an empty account with the same lists and fields, exports identically. Through the
//! synchronous answer and through the async CSV file.

use crate::support::TestServer;
use proptest::prelude::*;
use serde_json::Value;
use std::time::{Duration, Instant};

const LISTS: usize = 3;
const FIELDS: [&str; 2] = ["City", "Note"];

#[derive(Clone, Debug)]
struct Channel {
    status: &'static str,
    availability: &'static str,
    add_time: Option<String>,
    request_ip: Option<String>,
    /// Per list: 0 none, 1 active, 2 unsubscribed, 3 excluded; and the subscribe time.
    memberships: Vec<(u8, String)>,
}

#[derive(Clone, Debug)]
struct Contact {
    email: Option<Channel>,
    phone: Option<Channel>,
    confirm: Option<(String, String)>,
    tags: Vec<&'static str>,
    fields: Vec<&'static str>,
}

fn time() -> impl Strategy<Value = String> {
    (
        2001u32..2030,
        1u32..13,
        1u32..29,
        0u32..24,
        0u32..60,
        0u32..60,
    )
        .prop_map(|(y, mo, d, h, mi, s)| format!("{y}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}"))
}

fn channel() -> impl Strategy<Value = Channel> {
    // Both channels take the same four statuses from import.
    let statuses = vec!["new", "active", "inactive", "unsubscribed"];
    (
        prop::sample::select(statuses),
        prop::sample::select(vec![
            "available",
            "unreachable",
            "temp_unreachable",
            "mailbox_full",
            "spam_rejected",
            "spam_folder",
        ]),
        prop::option::of(time()),
        prop::option::of((1u8..255, 0u8..255).prop_map(|(a, b)| format!("10.{a}.{b}.1"))),
        prop::collection::vec((0u8..4, time()), LISTS),
    )
        .prop_map(
            |(status, availability, add_time, request_ip, memberships)| Channel {
                status,
                availability,
                add_time,
                request_ip,
                memberships,
            },
        )
}

fn contact() -> impl Strategy<Value = Contact> {
    let tag_pool = vec![
        "vip",
        "VIP",
        "новый",
        "naïve",
        "b2b",
        "x y",
        "q\"uote",
        "2024",
        "z",
        "A",
        "b",
        "c",
    ];
    let value_pool = vec![
        "",
        "Paris",
        "Saint-Étienne",
        "a,b,c",
        "say \"hi\"",
        "  spaced  ",
        "=1+2",
        "line\nbreak",
        "日本語",
        "'; DROP TABLE contacts; --",
    ];
    (
        prop::option::of(channel()),
        prop::option::of(channel()),
        prop::option::of((time(), Just("192.0.2.7".to_string()))),
        prop::sample::subsequence(tag_pool, 0..=6),
        prop::collection::vec(prop::sample::select(value_pool), FIELDS.len()),
    )
        .prop_filter("a contact has a channel", |(e, p, ..)| {
            e.is_some() || p.is_some()
        })
        .prop_map(|(email, phone, confirm, tags, fields)| Contact {
            email,
            phone,
            confirm,
            tags,
            fields,
        })
}

/// A server with the test account's lists and fields created in a fixed order, so that two such
/// servers give them the same ids.
fn prepared() -> (TestServer, Vec<i64>) {
    let server = TestServer::start();
    let lists = (0..LISTS)
        .map(|i| server.create_list(&format!("List {i}")))
        .collect();
    for field in FIELDS {
        server.create_field(field);
    }
    (server, lists)
}

const COLUMNS: [&str; 23] = [
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
    "City",
    "Note",
];

fn rows_for(contacts: &[Contact], lists: &[i64]) -> Vec<Vec<String>> {
    contacts
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mut row = Vec::new();
            for (kind, ch) in [("email", &c.email), ("phone", &c.phone)] {
                let address = match kind {
                    "email" => format!("person{i}@example.com"),
                    _ => format!("+1555{i:07}"),
                };
                let lists_in = |state: u8| -> Vec<usize> {
                    ch.as_ref()
                        .map(|ch| {
                            (0..LISTS)
                                .filter(|l| ch.memberships[*l].0 == state)
                                .collect()
                        })
                        .unwrap_or_default()
                };
                let ids = |ls: &[usize]| {
                    ls.iter()
                        .map(|l| lists[*l].to_string())
                        .collect::<Vec<_>>()
                        .join(",")
                };
                let active = lists_in(1);
                let times = active
                    .iter()
                    .map(|l| ch.as_ref().unwrap().memberships[*l].1.clone())
                    .collect::<Vec<_>>()
                    .join(",");
                match ch {
                    None => row.extend(std::iter::repeat_n(
                        String::new(),
                        if kind == "email" { 11 } else { 9 },
                    )),
                    Some(ch) => {
                        row.push(address);
                        row.push(ch.status.into());
                        row.push(ch.availability.into());
                        row.push(ch.add_time.clone().unwrap_or_default());
                        row.push(ch.request_ip.clone().unwrap_or_default());
                        if kind == "email" {
                            let (t, ip) = c.confirm.clone().unwrap_or_default();
                            row.push(t);
                            row.push(ip);
                        }
                        row.push(ids(&active));
                        row.push(times);
                        row.push(ids(&lists_in(2)));
                        row.push(ids(&lists_in(3)));
                    }
                }
            }
            row.push(c.tags.join(","));
            row.extend(c.fields.iter().map(|v| v.to_string()));
            row
        })
        .collect()
}

fn import_rows(server: &TestServer, columns: &[String], rows: &[Vec<String>]) {
    let columns: Vec<&str> = columns.iter().map(String::as_str).collect();
    let rows: Vec<Vec<&str>> = rows
        .iter()
        .map(|r| r.iter().map(String::as_str).collect())
        .collect();
    let rows: Vec<&[&str]> = rows.iter().map(|r| &r[..]).collect();
    let answer = server.import(&columns, &rows, &[]);
    assert_eq!(answer["result"]["invalid"], 0, "{answer}");
    assert_eq!(
        answer["result"]["log"]
            .as_array()
            .map(|l| l.iter().all(|e| e["code"] == "role_address")),
        Some(true),
        "{answer}"
    );
}

/// The account's export with every column but id: field names, then rows.
fn export(server: &TestServer) -> (Vec<String>, Vec<Vec<String>>) {
    let names: Vec<(&str, &str)> = COLUMNS.iter().map(|c| ("field_names[]", *c)).collect();
    let answer = server.call("exportContacts", &names)["result"].clone();
    let strings = |v: &Value| {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    (
        strings(&answer["field_names"]),
        answer["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(strings)
            .collect(),
    )
}

fn export_csv(server: &TestServer) -> Vec<Vec<String>> {
    let names: Vec<(&str, &str)> = COLUMNS.iter().map(|c| ("field_names[]", *c)).collect();
    let uuid = server.call("async/exportContacts", &names)["result"]["task_uuid"]
        .as_str()
        .unwrap()
        .to_string();
    let until = Instant::now() + Duration::from_secs(60);
    let url = loop {
        let result = server.call("async/getTaskResult", &[("task_uuid", &uuid)])["result"].clone();
        if result["status"] == "completed" {
            break result["file_to_download"].as_str().unwrap().to_string();
        }
        assert!(
            Instant::now() < until && result["status"] != "failed",
            "{result}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let path = format!(
        "/{}",
        url.split_once("://").unwrap().1.split_once('/').unwrap().1
    );
    let reply = server
        .client()
        .send(format!("GET {path} HTTP/1.1\r\n\r\n").as_bytes());
    csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(&reply.body[..])
        .records()
        .map(|r| r.unwrap().iter().map(str::to_string).collect())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn export_import_export_is_identical(contacts in prop::collection::vec(contact(), 1..40)) {
        let (source, lists) = prepared();
        let columns: Vec<String> = COLUMNS.iter().map(|c| c.to_string()).collect();
        import_rows(&source, &columns, &rows_for(&contacts, &lists));
        let (names, first) = export(&source);
        prop_assert_eq!(first.len(), contacts.len());

        // Through the synchronous answer.
        let (target, target_lists) = prepared();
        prop_assert_eq!(&target_lists, &lists);
        import_rows(&target, &names, &first);
        let (names_again, second) = export(&target);
        prop_assert_eq!(&names_again, &names);
        prop_assert_eq!(&second, &first);

        // Through the async CSV file, read with a CSV library.
        let file = export_csv(&source);
        prop_assert_eq!(&file[0], &names);
        prop_assert_eq!(&file[1..], &first[..]);
        let (via_csv, _) = prepared();
        import_rows(&via_csv, &file[0], &file[1..]);
        let (_, third) = export(&via_csv);
        prop_assert_eq!(&third, &first);
    }
}
