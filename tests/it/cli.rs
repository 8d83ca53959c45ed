//! The command line: start-up output, accounts, refusing bad database files, clean shutdown.

use crate::support::{KEY, TestServer, binary, path, run_ok, start};
use std::io::Write;

#[test]
fn with_no_account_one_is_created_and_shown_once() {
    let mut server = TestServer::start_with(&[]);
    assert!(
        server
            .first_line
            .starts_with("listening on http://127.0.0.1:")
    );
    let db = server.db.clone();
    let listed = run_ok(&["accounts", "list", "--db", path(&db)]);
    assert!(listed.contains("local\t"), "{listed}");
    let key: String = rusqlite::Connection::open(&db)
        .unwrap()
        .query_row("SELECT api_key FROM accounts", [], |r| r.get(0))
        .unwrap();
    assert!(!listed.contains(&key), "accounts list masks keys");
    assert_eq!(
        server.call_as(&key, "getLists", &[])["result"],
        serde_json::json!([])
    );
    assert!(server.stop().success());
    // A second start finds the account and creates none.
    let again = TestServer::start_on(tempfile::tempdir().unwrap(), db, &[]);
    assert_eq!(
        again.call_as(&key, "getLists", &[])["result"],
        serde_json::json!([])
    );
    let accounts: i64 = again
        .db()
        .query_row("SELECT count(*) FROM accounts", [], |r| r.get(0))
        .unwrap();
    assert_eq!(accounts, 1);
}

#[test]
fn the_created_account_line_follows_the_listening_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut served = start(
        binary()
            .args(["serve", "--listen", "127.0.0.1:0", "--db"])
            .arg(dir.path().join("x.db"))
            .env_remove("UNISENDER_LOCAL_ACCOUNTS"),
    );
    let mut second = String::new();
    std::io::BufRead::read_line(&mut served.stdout, &mut second).unwrap();
    let lines = [served.first_line.clone(), second];
    let mut child = served.child;
    assert!(
        lines[0].starts_with("listening on http://127.0.0.1:"),
        "{lines:?}"
    );
    assert!(
        lines[1].contains("created account \"local\" with api_key "),
        "{lines:?}"
    );
    let status = crate::support::terminate(&mut child);
    assert!(status.success(), "{status:?}");
}

#[test]
fn accounts_add_creates_updates_and_the_server_accepts_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("accounts.db");
    let db_arg = db.to_string_lossy().into_owned();
    let add = |args: &[&str]| {
        let mut all = vec!["accounts", "add", "--db", &db_arg];
        all.extend_from_slice(args);
        run_ok(&all)
    };
    let created = add(&["third"]);
    let first_key = created.trim().rsplit(' ').next().unwrap().to_string();
    assert!(
        created.starts_with("created account \"third\""),
        "{created}"
    );
    assert_eq!(first_key.len(), 32);
    let updated = add(&["third", "--key", "third-new-key-123"]);
    assert!(updated.starts_with("updated account"), "{updated}");
    add(&["test", "--key", KEY]);
    // A key of another account cannot be taken.
    let output = binary()
        .args(["accounts", "add", "fourth", "--key", KEY, "--db"])
        .arg(&db)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let server = TestServer::start_on(dir, db, &[]);
    assert_eq!(
        server.call_as(&first_key, "getLists", &[])["code"],
        "invalid_api_key"
    );
    assert!(server.call_as("third-new-key-123", "getLists", &[])["result"].is_array());
}

#[test]
fn accounts_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let served = start(
        binary()
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("UNISENDER_LOCAL_DB", dir.path().join("env.db"))
            .env(
                "UNISENDER_LOCAL_ACCOUNTS",
                "one:key-one-123,two:key-two-456",
            ),
    );
    let (mut child, address) = (served.child, served.address);
    for key in ["key-one-123", "key-two-456"] {
        let reply = crate::support::http_client::Client::new(address)
            .send(format!("GET /en/api/getLists?api_key={key} HTTP/1.1\r\n\r\n").as_bytes());
        assert_eq!(reply.json()["result"], serde_json::json!([]), "{key}");
    }
    assert!(crate::support::terminate(&mut child).success());
    assert!(dir.path().join("env.db").exists());
}

fn serve_fails_on(path: &std::path::Path) -> String {
    let output = binary()
        .args(["serve", "--listen", "127.0.0.1:0", "--db"])
        .arg(path)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    stderr
}

#[test]
fn a_file_that_is_not_a_database_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    let content = b"these are my notes, not a database\n".repeat(200);
    std::fs::File::create(&path)
        .unwrap()
        .write_all(&content)
        .unwrap();
    let message = serve_fails_on(&path);
    assert!(message.contains("not a usable database"), "{message}");
    assert_eq!(std::fs::read(&path).unwrap(), content);
    assert!(!dir.path().join("notes.txt-wal").exists());
}

#[test]
fn another_programs_database_and_a_newer_schema_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let foreign = dir.path().join("foreign.db");
    rusqlite::Connection::open(&foreign)
        .unwrap()
        .execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
        .unwrap();
    let before = std::fs::read(&foreign).unwrap();
    assert!(serve_fails_on(&foreign).contains("another program"));
    assert_eq!(std::fs::read(&foreign).unwrap(), before);

    let newer = dir.path().join("newer.db");
    rusqlite::Connection::open(&newer)
        .unwrap()
        .execute_batch("PRAGMA user_version = 99;")
        .unwrap();
    let before = std::fs::read(&newer).unwrap();
    assert!(serve_fails_on(&newer).contains("newer"));
    assert_eq!(std::fs::read(&newer).unwrap(), before);

    assert!(serve_fails_on(dir.path()).contains("directory"));
    assert!(serve_fails_on(&dir.path().join("no/such/dir/x.db")).contains("cannot open"));
}

#[test]
fn sigterm_finishes_and_commits_then_exits_zero() {
    let mut server = TestServer::start();
    server.import(&["email"], &[&["kept@example.com"]], &[]);
    let db = server.db.clone();
    let dir = tempfile::tempdir().unwrap();
    assert!(server.stop().success());
    // Everything answered is in the file, readable by a fresh server.
    let again = TestServer::start_on(dir, db, &["--account", &format!("test:{KEY}")]);
    assert!(again.contact("kept@example.com").is_some());
}

#[test]
fn a_taken_port_is_a_one_line_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let output = binary()
        .args([
            "serve",
            "--listen",
            &listener.local_addr().unwrap().to_string(),
            "--db",
        ])
        .arg(dir.path().join("p.db"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot listen"));
}
