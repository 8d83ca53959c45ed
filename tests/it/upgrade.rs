//! A database written with schema 1 (memberships, tags and field values in their own tables) is
//! upgraded in place when the server opens it, and serves the same contacts.

use crate::support::{KEY, TestServer};
use serde_json::json;

/// A schema 1 database with one account, two contacts and everything they can have.
fn schema_1_database(db: &std::path::Path) {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.execute_batch(include_str!("../fixtures/schema_v1.sql"))
        .unwrap();
    conn.execute_batch(&format!(
        "INSERT INTO accounts (id, login, api_key) VALUES (1, 'test', '{KEY}');
         INSERT INTO lists (id, account_id, title) VALUES (10, 1, 'News'), (11, 1, 'Sales');
         INSERT INTO fields (id, account_id, name, type, public_name)
             VALUES (20, 1, 'City', 'string', 'City'), (21, 1, 'Age', 'number', 'Age');
         INSERT INTO tags (id, account_id, name)
             VALUES (30, 1, 'vip'), (31, 1, 'beta'), (32, 1, 'Клиент'), (33, 1, 'клиент');
         INSERT INTO contacts (id, account_id, email, email_status, email_availability,
                               email_add_time, phone, phone_status, phone_availability,
                               phone_add_time)
             VALUES (1, 1, 'a@example.com', 2, 0, 1700000000, '+15550000001', 2, 0, 1700000000),
                    (2, 1, 'b@example.com', 0, 0, 1700000100, NULL, NULL, NULL, NULL);
         INSERT INTO memberships (contact_id, channel, list_id, state, subscribed_at)
             VALUES (1, 0, 10, 0, 1700000001), (1, 0, 11, 1, 1700000002),
                    (1, 1, 10, 0, 1700000003), (2, 0, 11, 2, 1700000004);
         INSERT INTO contact_tags (contact_id, tag_id)
             VALUES (1, 31), (1, 30), (1, 32), (2, 30), (2, 33);
         INSERT INTO field_values (contact_id, field_id, value)
             VALUES (1, 21, '42'), (1, 20, 'Paris'), (2, 20, 'Oslo');
         INSERT INTO contact_blocks (account_id, block, contacts) VALUES (1, 0, 2);"
    ))
    .unwrap();
}

#[test]
fn a_schema_1_database_is_upgraded_and_keeps_every_contact_whole() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("old.db");
    schema_1_database(&db);
    let server = TestServer::start_on(dir, db, &[]);
    let conn = server.db();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 4);
    let old_tables: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master
             WHERE name IN ('memberships', 'contact_tags', 'field_values', 'contacts_by_account')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(old_tables, 0);

    let export = server.ok(
        "exportContacts",
        &[(
            "field_names",
            "email,email_list_ids,email_subscribe_times,email_unsubscribed_list_ids,\
             email_excluded_list_ids,phone,phone_list_ids,tags,City,Age",
        )],
    );
    assert_eq!(
        export["data"],
        json!([
            [
                "a@example.com",
                "10",
                "2023-11-14 22:13:21",
                "11",
                "",
                "+15550000001",
                "10",
                "beta,vip,Клиент",
                "Paris",
                "42"
            ],
            [
                "b@example.com",
                "",
                "",
                "",
                "11",
                "",
                "",
                "vip,Клиент",
                "Oslo",
                ""
            ]
        ])
    );
    // Filters by list and tag, and the counts, read the packed parts.
    let in_news = server.ok(
        "exportContacts",
        &[("field_names", "email"), ("list_id", "10")],
    );
    assert_eq!(in_news["data"], json!([["a@example.com"]]));
    let tagged = server.ok(
        "exportContacts",
        &[("field_names", "email"), ("tag", "VIP")],
    );
    assert_eq!(
        tagged["data"],
        json!([["a@example.com"], ["b@example.com"]])
    );
    // Names equal but for non-ASCII case, two tags in schema 1, became one, the oldest.
    assert_eq!(
        server.ok("getTags", &[]),
        json!([{"id": 30, "name": "vip"}, {"id": 31, "name": "beta"}, {"id": 32, "name": "Клиент"}])
    );
    let both = server.ok(
        "exportContacts",
        &[("field_names", "email"), ("tag", "КЛИЕНТ")],
    );
    assert_eq!(both["data"], json!([["a@example.com"], ["b@example.com"]]));
    let count = server.ok("getContactCount", &[("list_id", "11")]);
    assert_eq!(
        count["count"], 1,
        "b is excluded from Sales, a unsubscribed"
    );
    assert_eq!(
        server.ok("getTotalContactsCount", &[("login", "test")])["total"],
        2
    );
    // The upgraded contacts take writes like any other.
    server.ok("deleteTag", &[("id", "30")]);
    let tags = server.ok("exportContacts", &[("field_names", "email,tags")]);
    assert_eq!(
        tags["data"],
        json!([
            ["a@example.com", "beta,Клиент"],
            ["b@example.com", "Клиент"]
        ])
    );
}

/// A schema 2 database (before the double opt-in outbox) gains the outbox and keeps serving.
#[test]
fn a_schema_2_database_gains_the_outbox() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("v2.db");
    let schema = include_str!("../../schema.sql");
    let outbox = schema.find("-- Double opt-in confirmations").unwrap();
    let (counts, tasks) = (
        schema
            .find("-- How many of an account's contacts in each block")
            .unwrap(),
        schema.find("-- async/exportContacts tasks").unwrap(),
    );
    let version_2 = format!(
        "{}{}PRAGMA user_version = 2;",
        &schema[..counts],
        &schema[tasks..outbox]
    );
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(&version_2).unwrap();
    conn.execute_batch(&format!(
        "INSERT INTO accounts (id, login, api_key) VALUES (1, 'test', '{KEY}');
         INSERT INTO lists (id, account_id, title) VALUES (10, 1, 'News');"
    ))
    .unwrap();
    drop(conn);
    let server = TestServer::start_on(dir, db, &[]);
    let version: i64 = server
        .db()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 4);
    server.ok(
        "subscribe",
        &[("list_ids", "10"), ("fields[email]", "new@example.com")],
    );
    let outbox = server.control_ok("GET", "/_local/outbox", "")["outbox"].clone();
    assert_eq!(outbox[0]["to"], "new@example.com");
    assert_eq!(outbox[0]["list_ids"], json!([10]));
}
