//! §5.1 and §5.3: every column stored as the spec says, every row error and warning code.

use crate::support::{OTHER_KEY, TestServer};
use serde_json::{Value, json};

/// The `(index, code)` pairs of an answer's log.
fn log_codes(answer: &Value) -> Vec<(i64, String)> {
    answer["result"]["log"]
        .as_array()
        .unwrap_or_else(|| panic!("no log in {answer}"))
        .iter()
        .map(|e| {
            (
                e["index"].as_i64().unwrap(),
                e["code"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[test]
fn every_system_column_is_stored() {
    let server = TestServer::start();
    let [l1, l2, l3, l4] = server.create_lists(["A", "B", "C", "D"]);
    let columns = [
        "Email",
        "phone",
        "tags",
        "email_status",
        "phone_status",
        "email_availability",
        "phone_availability",
        "email_list_ids",
        "email_subscribe_times",
        "email_unsubscribed_list_ids",
        "email_excluded_list_ids",
        "phone_list_ids",
        "phone_subscribe_times",
        "phone_unsubscribed_list_ids",
        "phone_excluded_list_ids",
        "email_add_time",
        "phone_add_time",
        "email_request_ip",
        "email_confirm_time",
        "email_confirm_ip",
        "phone_request_ip",
        "delete",
    ];
    let lists = |a: i64, b: i64| format!("{a}, {b}");
    let row = [
        " Full@Example.COM ",
        "8 (916) 555-01-02",
        "Tag1, tag2",
        "active",
        "inactive",
        "mailbox_full",
        "unreachable",
        &lists(l1, l2),
        "2023-01-02 03:04:05,2023-01-03",
        &l3.to_string(),
        &l4.to_string(),
        &l1.to_string(),
        "2023-11-14T22:13:20+01:00",
        "",
        &l2.to_string(),
        "2020-05-06 07:08",
        "2021-01-01",
        "10.0.0.1",
        "2020-05-07 00:00:01",
        "10.0.0.2",
        "10.0.0.3",
        "0",
    ];
    let answer = server.import(&columns, &[&row], &[]);
    assert_eq!(answer["result"]["inserted"], 1, "{answer}");
    let contact = server
        .contact("full@example.com")
        .expect("stored lower-cased and trimmed");
    let t = |s: &str| {
        time::PrimitiveDateTime::parse(
            s,
            time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]"),
        )
        .unwrap()
        .assume_utc()
        .unix_timestamp()
    };
    let expected = json!({
        "email": "full@example.com", "email_status": "active", "email_availability": "mailbox_full",
        "email_add_time": t("2020-05-06 07:08:00"), "email_request_ip": "10.0.0.1",
        "email_confirm_time": t("2020-05-07 00:00:01"), "email_confirm_ip": "10.0.0.2",
        "phone": "+89165550102", "phone_status": "inactive", "phone_availability": "unreachable",
        "phone_add_time": t("2021-01-01 00:00:00"), "phone_request_ip": "10.0.0.3",
        "email_lists": [[l1, "active", t("2023-01-02 03:04:05")], [l2, "active", t("2023-01-03 00:00:00")], [l3, "unsubscribed", contact["email_lists"][2][2]], [l4, "excluded", contact["email_lists"][3][2]]],
        "phone_lists": [[l1, "active", t("2023-11-14 21:13:20")], [l2, "excluded", contact["phone_lists"][1][2]]],
        "tags": ["Tag1", "tag2"], "fields": {},
    });
    for (key, value) in expected.as_object().unwrap() {
        assert_eq!(&contact[key], value, "{key}");
    }
    let unsubscribed_time = contact["email_lists"][2][2].as_i64().unwrap();
    assert!(
        (unsubscribed_time - now()).abs() < 60,
        "a membership without a time is dated now"
    );
}

#[test]
fn a_new_contact_gets_the_defaults() {
    let server = TestServer::start();
    let answer = server.import(
        &["email", "phone"],
        &[&["d@example.com", "+15550001111"]],
        &[],
    );
    assert_eq!(
        answer["result"],
        json!({"total": 1, "inserted": 1, "updated": 0, "deleted": 0, "new_emails": 1, "invalid": 0, "log": []})
    );
    let contact = server.contact("d@example.com").unwrap();
    assert_eq!(contact["email_status"], "new");
    assert_eq!(contact["phone_status"], "active");
    assert_eq!(contact["email_availability"], "available");
    assert_eq!(contact["phone_availability"], "available");
    assert!((contact["email_add_time"].as_i64().unwrap() - now()).abs() < 60);
    assert!((contact["phone_add_time"].as_i64().unwrap() - now()).abs() < 60);
    assert_eq!(contact["email_request_ip"], Value::Null);
    assert_eq!(contact["email_confirm_time"], Value::Null);
    let phone_only = server.import(&["phone"], &[&["+15550002222"]], &[]);
    assert_eq!(phone_only["result"]["new_emails"], 0);
    assert_eq!(
        server.contact("+15550002222").unwrap()["email"],
        Value::Null
    );
}

/// Each row error: the row is rejected whole, counted as invalid, and logged with its code.
#[test]
fn every_row_error_code() {
    let server = TestServer::start();
    let list = server.create_list("Mine");
    let foreign = server.call_as(OTHER_KEY, "createList", &[("title", "Theirs")])["result"]["id"]
        .as_i64()
        .unwrap();
    let (list, foreign) = (list.to_string(), foreign.to_string());
    let long = "x".repeat(64 * 1024 + 1);
    let eleven = (0..11)
        .map(|i| format!("t{i}"))
        .collect::<Vec<_>>()
        .join(",");
    let cases: Vec<(&str, &str, &str)> = vec![
        ("email", "not-an-email", "invalid_email"),
        ("email", "a@b", "invalid_email"),
        ("phone", "12-34", "invalid_phone"),
        ("phone", "+1 800 FLOWERS", "invalid_phone"),
        ("email_status", "invited", "invalid_status"),
        ("email_status", "blocked", "invalid_status"),
        ("email_status", "bogus", "invalid_status"),
        ("phone_status", "blocked", "invalid_status"),
        ("email_availability", "gone", "invalid_availability"),
        ("phone_availability", "x", "invalid_availability"),
        ("email_list_ids", "abc", "invalid_list_id"),
        ("email_list_ids", "999999", "invalid_list_id"),
        ("email_list_ids", &foreign, "invalid_list_id"),
        ("email_list_ids", "-1", "invalid_list_id"),
        ("email_unsubscribed_list_ids", "999999", "invalid_list_id"),
        ("email_excluded_list_ids", "x", "invalid_list_id"),
        (
            "email_subscribe_times",
            "2023-01-01",
            "invalid_subscribe_times",
        ),
        ("email_add_time", "yesterday", "invalid_time"),
        ("email_confirm_time", "2023-13-01", "invalid_time"),
        ("phone_add_time", "soon", "invalid_time"),
        ("tags", &eleven, "too_many_tags"),
        ("delete", "2", "invalid_delete"),
        ("delete", "yes", "invalid_delete"),
        ("tags", &long, "value_too_long"),
    ];
    for (i, (column, value, code)) in cases.iter().enumerate() {
        let email = format!("row{i}@example.com");
        let (columns, row): (Vec<&str>, Vec<&str>) = match *column {
            "email" => (vec!["email", "phone"], vec![value, "+15550000000"]),
            "phone" => (vec!["email", "phone"], vec![&email, value]),
            _ => (vec!["email", "phone", column], vec![&email, "", value]),
        };
        let answer = server.import(&columns, &[&row], &[]);
        assert_eq!(
            log_codes(&answer),
            vec![(0, code.to_string())],
            "{column}={value:.20}: {answer}"
        );
        assert_eq!(answer["result"]["invalid"], 1);
        assert_eq!(answer["result"]["inserted"], 0);
        assert!(
            answer["result"]["log"][0]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
        assert_eq!(
            server.contact_count(),
            0,
            "{column}: a rejected row changes nothing"
        );
    }
    // Lists twice in one channel's columns, and mismatched times.
    let twice = format!("{list},{list}");
    for (columns, row, code) in [
        (
            vec!["email", "email_list_ids"],
            vec!["a@example.com", twice.as_str()],
            "invalid_list_id",
        ),
        (
            vec!["email", "email_list_ids", "email_excluded_list_ids"],
            vec!["a@example.com", &list, &list],
            "invalid_list_id",
        ),
        (
            vec!["email", "email_list_ids", "email_subscribe_times"],
            vec!["a@example.com", &list, "2023-01-01,2023-01-02"],
            "invalid_subscribe_times",
        ),
        (
            vec!["email", "email_list_ids", "email_subscribe_times"],
            vec!["a@example.com", &list, "Monday"],
            "invalid_subscribe_times",
        ),
        (vec!["email", "tags"], vec!["", "x"], "no_address"),
        (vec!["email", "phone"], vec!["", "  "], "no_address"),
    ] {
        let answer = server.import(&columns, &[&row], &[]);
        assert_eq!(
            log_codes(&answer),
            vec![(0, code.to_string())],
            "{row:?}: {answer}"
        );
    }
    assert_eq!(server.contact_count(), 0);
}

#[test]
fn a_cell_of_exactly_64_kib_is_accepted() {
    let server = TestServer::start();
    server.create_field("Notes");
    let big = "n".repeat(64 * 1024);
    let answer = server.import(&["email", "Notes"], &[&["big@example.com", &big]], &[]);
    assert_eq!(answer["result"]["inserted"], 1, "{answer}");
    assert_eq!(
        server.contact("big@example.com").unwrap()["fields"]["Notes"]
            .as_str()
            .unwrap()
            .len(),
        64 * 1024
    );
}

#[test]
fn duplicates_within_a_call_are_skipped_and_counted_nowhere() {
    let server = TestServer::start();
    let answer = server.import(
        &["email", "phone", "tags"],
        &[
            &["dup@example.com", "+15551110000", "first"],
            &["DUP@example.com ", "", "second"],
            &["other@example.com", "+1 555 111 0000", "third"],
            &["bad-email", "", ""],
            &["fine@example.com", "", ""],
        ],
        &[],
    );
    assert_eq!(
        log_codes(&answer),
        vec![
            (1, "duplicate_email".into()),
            (2, "duplicate_phone".into()),
            (3, "invalid_email".into())
        ]
    );
    let result = &answer["result"];
    assert_eq!(
        (
            result["total"].as_i64(),
            result["inserted"].as_i64(),
            result["invalid"].as_i64()
        ),
        (Some(5), Some(2), Some(1))
    );
    assert_eq!(result["log"][0]["message"], "Duplicate email address");
    assert_eq!(result["log"][1]["message"], "Duplicate telephone number");
    assert_eq!(
        server.contact("dup@example.com").unwrap()["tags"],
        json!(["first"])
    );
    assert!(server.contact("other@example.com").is_none());
}

#[test]
fn owned_by_different_subscribers() {
    let server = TestServer::start();
    server.import(&["email"], &[&["one@example.com"]], &[]);
    server.import(&["phone"], &[&["+15552220000"]], &[]);
    let answer = server.import(
        &["email", "phone", "tags"],
        &[&["one@example.com", "+15552220000", "x"]],
        &[],
    );
    assert_eq!(
        log_codes(&answer),
        vec![(0, "owned_by_different_subscribers".into())]
    );
    assert_eq!(answer["result"]["invalid"], 1);
    assert_eq!(
        server.contact("one@example.com").unwrap()["tags"],
        json!([])
    );
    assert_eq!(
        server.contact("one@example.com").unwrap()["phone"],
        Value::Null
    );
}

#[test]
fn status_not_changed_warning() {
    let server = TestServer::start();
    server.import(
        &["email", "email_status"],
        &[&["u@example.com", "unsubscribed"], &["n@example.com", ""]],
        &[],
    );
    let answer = server.import(
        &["email", "email_status", "tags"],
        &[
            &["u@example.com", "active", "seen"],
            &["n@example.com", "active", ""],
            &["u@example.com", "unsubscribed", ""],
        ],
        &[],
    );
    // u@ is unsubscribed: the status stays, the row is applied (its tag is set) with a warning;
    // n@ is new: neither active nor inactive, so it stays new too. Row 2 repeats u@: duplicate.
    assert_eq!(
        log_codes(&answer),
        vec![
            (0, "status_not_changed".into()),
            (1, "status_not_changed".into()),
            (2, "duplicate_email".into())
        ]
    );
    assert_eq!(answer["result"]["updated"], 2);
    assert_eq!(answer["result"]["invalid"], 0);
    let u = server.contact("u@example.com").unwrap();
    assert_eq!(
        (u["email_status"].as_str(), u["tags"].clone()),
        (Some("unsubscribed"), json!(["seen"]))
    );
    assert_eq!(
        server.contact("n@example.com").unwrap()["email_status"],
        "new"
    );
    // The same status as the current one is no change and no warning.
    let answer = server.import(
        &["email", "email_status"],
        &[&["u@example.com", "unsubscribed"]],
        &[],
    );
    assert_eq!(log_codes(&answer), vec![]);
}

#[test]
fn role_addresses_are_not_imported() {
    let server = TestServer::start();
    let answer = server.import(
        &["email"],
        &[
            &["info@example.com"],
            &["No-Reply@example.com"],
            &["ivan@example.com"],
        ],
        &[],
    );
    assert_eq!(
        log_codes(&answer),
        vec![(0, "role_address".into()), (1, "role_address".into())]
    );
    assert_eq!(
        answer["result"]["log"][0]["message"],
        "Role addresses (such as info@, sales@, no-reply@, all@) are not imported"
    );
    assert_eq!(answer["result"]["inserted"], 1);
    assert_eq!(answer["result"]["invalid"], 2);
    assert!(server.contact("info@example.com").is_none());
}

#[test]
fn overlimit_warning_and_top_level_warning() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("limited.db");
    crate::support::run_ok(&[
        "accounts",
        "add",
        "limited",
        "--key",
        "limited-key-1234",
        "--contact-limit",
        "2",
        "--db",
        crate::support::path(&db),
    ]);
    let server = TestServer::start_on(dir, db, &[]);
    let answer = server.call_as(
        "limited-key-1234",
        "importContacts",
        &[
            ("field_names[0]", "email"),
            ("data[0][0]", "a@example.com"),
            ("data[1][0]", "b@example.com"),
            ("data[2][0]", "c@example.com"),
            ("data[3][0]", "a@example.com"),
        ],
    );
    assert_eq!(
        log_codes(&answer),
        vec![(2, "overlimit".into()), (3, "duplicate_email".into())]
    );
    assert_eq!(answer["result"]["inserted"], 3, "inserted all the same");
    assert_eq!(
        answer["warnings"],
        json!([{"warning": "Addresses overlimit for current period"}])
    );
    assert_eq!(
        answer["result"]["log"][0]["message"],
        "The number of contacts for the current tariff plan has been exceeded (but the string has been added)"
    );
    // Updates of existing contacts are not inserts: no warning.
    let answer = server.call_as(
        "limited-key-1234",
        "importContacts",
        &[("field_names[0]", "email"), ("data[0][0]", "a@example.com")],
    );
    assert_eq!(answer.get("warnings"), None);
    assert_eq!(log_codes(&answer), vec![]);
}

#[test]
fn sparse_cells_leave_values_and_empty_cells_clear_them() {
    let server = TestServer::start();
    server.create_field("City");
    server.create_field("Age");
    server.import(
        &["email", "City", "Age", "tags", "email_availability"],
        &[&["s@example.com", "Paris", "33", "a,b", "spam_folder"]],
        &[],
    );
    // Row with the City cell absent and Age empty: City stays, Age is cleared; an empty
    // availability is "not given"; an empty tags cell without overwrite_tags adds nothing.
    let answer = server.import_sparse(
        &["email", "City", "Age", "tags", "email_availability"],
        &[vec![
            Some("s@example.com"),
            None,
            Some(""),
            Some(""),
            Some(""),
        ]],
        &[],
    );
    assert_eq!(answer["result"]["updated"], 1, "{answer}");
    let contact = server.contact("s@example.com").unwrap();
    assert_eq!(contact["fields"], json!({"City": "Paris"}));
    assert_eq!(contact["tags"], json!(["a", "b"]));
    assert_eq!(contact["email_availability"], "spam_folder");
    // With overwrite_tags=1 an empty cell clears the tags; an absent one leaves them.
    server.import_sparse(
        &["email", "tags"],
        &[vec![Some("s@example.com"), None]],
        &[("overwrite_tags", "1")],
    );
    assert_eq!(
        server.contact("s@example.com").unwrap()["tags"],
        json!(["a", "b"])
    );
    server.import(
        &["email", "tags"],
        &[&["s@example.com", ""]],
        &[("overwrite_tags", "1")],
    );
    assert_eq!(server.contact("s@example.com").unwrap()["tags"], json!([]));
    // User-field values are kept as text exactly as sent.
    server.import(
        &["email", "City"],
        &[&["s@example.com", "  Saint-Étienne, \"42\"  "]],
        &[],
    );
    assert_eq!(
        server.contact("s@example.com").unwrap()["fields"]["City"],
        "  Saint-Étienne, \"42\"  "
    );
}
