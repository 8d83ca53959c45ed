//! The server as a library: `unisender_local::TestServer` in a Rust test.

use crate::support::http_client::{Client, form};
use serde_json::json;
use std::net::TcpStream;
use unisender_local::TestServer;

fn call(server: &TestServer, key: &str, method: &str, pairs: &[(&str, &str)]) -> serde_json::Value {
    let mut all = vec![("api_key", key)];
    all.extend_from_slice(pairs);
    let address = server
        .base_url()
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    let reply = Client::new(address).post_form(&format!("/en/api/{method}"), &form(&all));
    assert_eq!(reply.status, 200);
    reply.json()
}

#[test]
fn a_test_server_serves_resets_and_stops_when_dropped() {
    let server = TestServer::builder()
        .account("shop", "shop-key-1234")
        .account("blog", "blog-key-5678")
        .start();
    assert_eq!(server.api_key(), "shop-key-1234");
    assert_eq!(server.key_of("blog"), Some("blog-key-5678"));
    call(&server, "shop-key-1234", "createList", &[("title", "A")]);
    call(&server, "blog-key-5678", "createList", &[("title", "B")]);
    let calls = server.requests();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0]["account"], "blog");
    assert_eq!(calls[1]["params"]["api_key"], "…1234");

    server.reset();
    assert!(server.requests().is_empty());
    assert_eq!(
        call(&server, "blog-key-5678", "getLists", &[])["result"],
        json!([])
    );

    let rule = server
        .add_fault(json!({"method": "getLists", "error": "access_denied", "account": "shop"}))
        .unwrap();
    assert_eq!(rule.method, "getLists");
    assert_eq!(
        call(&server, "shop-key-1234", "getLists", &[])["code"],
        "access_denied"
    );
    server.clear_faults();
    assert!(server.add_fault(json!({"method": "getLists"})).is_err());

    let address = server.base_url().trim_start_matches("http://").to_string();
    let db = server.database().to_path_buf();
    assert!(db.exists());
    drop(server);
    assert!(
        TcpStream::connect(&address).is_err(),
        "stopped when dropped"
    );
    assert!(!db.exists(), "the temporary database went with it");
}

#[test]
fn a_test_server_can_keep_its_database_at_a_given_path() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("kept.db");
    {
        let server = TestServer::builder().database(&db).start();
        let key = server.api_key().to_string();
        call(&server, &key, "createList", &[("title", "Kept")]);
        server.snapshot("one");
        call(&server, &key, "createList", &[("title", "Later")]);
        server.restore("one");
        assert_eq!(
            call(&server, &key, "getLists", &[])["result"][0]["title"],
            "Kept"
        );
        assert_eq!(
            call(&server, &key, "getLists", &[])["result"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
    }
    assert!(db.exists(), "a given database stays");
    let again = TestServer::builder()
        .database(&db)
        .account("test", "new-key-0000")
        .start();
    assert_eq!(
        call(&again, "new-key-0000", "getLists", &[])["result"][0]["title"],
        "Kept"
    );
}

#[test]
fn a_test_server_loads_a_fixture_csv_before_it_serves() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("fixture.csv");
    std::fs::write(&csv, "email,tags\na@example.com,vip\nb@example.com,\n").unwrap();
    let server = TestServer::builder()
        .fixture(&csv, Some("Customers"))
        .start();
    let key = server.api_key().to_string();
    let lists = call(&server, &key, "getLists", &[])["result"].clone();
    assert_eq!(lists[0]["title"], "Customers");
    let list = lists[0]["id"].to_string();
    assert_eq!(
        call(&server, &key, "getContactCount", &[("list_id", &list)])["result"]["count"],
        2
    );
}
