//! Operating it for real: one owner per database file, a deleted file noticed, a stopped server
//! leaving one file, whole backups and restores, read-only commands that create nothing, health
//! for containers, key rotation, every flag from the environment, and a server that stops when
//! dropped.

use crate::support::http_client::Client;
use crate::support::{KEY, TestServer, binary, path, run_ok, serving, start, terminate};
use serde_json::Value;
use std::net::{SocketAddr, TcpListener};
use std::process::Output;
use std::time::{Duration, Instant};
use unisender_local::server::{ServeConfig, Server};
use unisender_local::store::db::Durability;

fn run(args: &[&str]) -> Output {
    binary().args(args).output().expect("runs the binary")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn post_status(address: SocketAddr, method: &str, body: &str) -> (u16, Value) {
    let reply = Client::new(address).post_form(&format!("/en/api/{method}"), body);
    (reply.status, reply.json())
}

#[test]
fn a_database_has_one_owner_and_read_only_commands_work_beside_it() {
    let server = TestServer::start();
    let db = path(&server.db).to_string();
    let pid = format!("pid {}", server.pid());
    let second = run(&["serve", "--listen", "127.0.0.1:0", "--db", &db]);
    assert_eq!(second.status.code(), Some(1));
    assert!(stderr(&second).contains(&pid), "{}", stderr(&second));
    assert_eq!(
        stderr(&second).lines().count(),
        1,
        "one line: {}",
        stderr(&second)
    );
    let add = run(&["accounts", "add", "x", "--db", &db]);
    assert!(
        !add.status.success() && stderr(&add).contains(&pid),
        "{}",
        stderr(&add)
    );
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("copy.db");
    assert!(run_ok(&["backup", "--db", &db, path(&copy)]).contains("copied"));
    let restore = run(&["restore", path(&copy), "--db", &db]);
    assert!(
        !restore.status.success() && stderr(&restore).contains(&pid),
        "{}",
        stderr(&restore)
    );
    assert!(run_ok(&["check", "--db", &db]).contains("ok"));
    assert!(run_ok(&["accounts", "list", "--db", &db]).contains("test"));
    // The server was not disturbed.
    assert!(server.ok("getLists", &[]).is_array());
}

#[test]
fn two_servers_racing_for_one_file_leave_one_serving() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("race.db");
    let spawn = || {
        serving(&db, &format!("test:{KEY}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("starts")
    };
    let mut servers = [spawn(), spawn()];
    let until = Instant::now() + Duration::from_secs(20);
    let exited = loop {
        let exited: Vec<usize> = (0..2)
            .filter(|i| servers[*i].try_wait().unwrap().is_some())
            .collect();
        if !exited.is_empty() || Instant::now() > until {
            break exited;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(exited.len(), 1, "exactly one of the two gives up");
    let loser = &mut servers[exited[0]];
    assert_eq!(loser.wait().unwrap().code(), Some(1));
    let mut message = String::new();
    std::io::Read::read_to_string(loser.stderr.as_mut().unwrap(), &mut message).unwrap();
    let winner_pid = servers[1 - exited[0]].id();
    assert!(message.contains(&format!("pid {winner_pid}")), "{message}");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        servers[1 - exited[0]].try_wait().unwrap().is_none(),
        "the winner serves on"
    );
    assert!(terminate(&mut servers[1 - exited[0]]).success());
}

#[test]
fn a_database_deleted_while_serving_turns_writes_and_health_to_503() {
    let server = TestServer::start();
    server.create_list("Before");
    std::fs::remove_file(&server.db).unwrap();
    let (status, answer) = post_status(
        server.address,
        "createList",
        &format!("api_key={KEY}&title=After"),
    );
    assert_eq!(
        (status, answer["code"].as_str()),
        (503, Some("retry_later")),
        "{answer}"
    );
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("deleted or moved"),
        "{answer}"
    );
    let health = server.raw(b"GET /_local/health HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(health.status, 503);
}

#[test]
fn a_stopped_server_leaves_one_file_that_copies_alone() {
    let mut server = TestServer::start();
    server.import(&["email"], &[&["a@b.cd"], &["b@b.cd"], &["c@b.cd"]], &[]);
    assert!(server.stop().success());
    let wal = format!("{}-wal", server.db.display());
    let wal_bytes = std::fs::metadata(&wal).map_or(0, |m| m.len());
    assert_eq!(wal_bytes, 0, "the WAL is emptied into the database");
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("alone.db");
    std::fs::copy(&server.db, &copy).unwrap();
    let conn = rusqlite::Connection::open(&copy).unwrap();
    let contacts: i64 = conn
        .query_row("SELECT count(*) FROM contacts", [], |r| r.get(0))
        .unwrap();
    assert_eq!(contacts, 3);
}

fn wait_for_file(server_address: SocketAddr, uuid: &str) -> String {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, task) = post_status(
            server_address,
            "async/getTaskResult",
            &format!("api_key={KEY}&task_uuid={uuid}"),
        );
        if let Some(url) = task["result"]["file_to_download"].as_str() {
            return url.to_string();
        }
        assert!(Instant::now() < until, "{task}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn download(address: SocketAddr, url: &str) -> (u16, Vec<u8>) {
    let path = &url[url.find("/_local/").expect("a local URL")..];
    let reply =
        Client::new(address).send(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
    (reply.status, reply.body)
}

#[test]
fn a_backup_restored_still_serves_its_export_files() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("live.db");
    let backup = dir.path().join("backup.db");
    let mut served = start(&mut serving(&db, &format!("test:{KEY}")));
    let address = served.address;
    let client = |body: &str, method: &str| post_status(address, method, body);
    client(
        &format!("api_key={KEY}&field_names[0]=email&data[0][0]=a@b.cd&data[1][0]=b@b.cd"),
        "importContacts",
    );
    let (_, started) = client(&format!("api_key={KEY}"), "async/exportContacts");
    let uuid = started["result"]["task_uuid"].as_str().unwrap().to_string();
    let url = wait_for_file(address, &uuid);
    let (_, original) = download(address, &url);
    let said = run_ok(&["backup", "--db", path(&db), path(&backup)]);
    assert!(said.contains("1 export files"), "{said}");
    assert!(terminate(&mut served.child).success());
    std::fs::remove_file(&db).unwrap();
    std::fs::remove_dir_all(unisender_local::exports::export_dir(&db)).unwrap();
    let said = run_ok(&["restore", path(&backup), "--db", path(&db)]);
    assert!(said.contains("1 export files"), "{said}");
    let mut restored = start(&mut serving(&db, &format!("test:{KEY}")));
    let url = wait_for_file(restored.address, &uuid);
    assert!(
        url.starts_with(&format!("http://{}/", restored.address)),
        "{url}"
    );
    let (status, body) = download(restored.address, &url);
    assert_eq!((status, body), (200, original));
    assert!(terminate(&mut restored.child).success());
}

#[test]
fn read_only_commands_refuse_a_missing_file_and_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("typo.db");
    let out = dir.path().join("out.db");
    for args in [
        vec!["accounts", "list", "--db", path(&missing)],
        vec!["check", "--db", path(&missing)],
        vec!["backup", "--db", path(&missing), path(&out)],
        vec!["restore", path(&missing), "--db", path(&out)],
    ] {
        let output = run(&args);
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        assert!(
            stderr(&output).contains("typo.db does not exist"),
            "{args:?}: {}",
            stderr(&output)
        );
    }
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|name| name.to_string_lossy().starts_with("typo.db"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn health_answers_head_and_the_health_command_exits_0_or_1() {
    let server = TestServer::start();
    let mut raw = std::net::TcpStream::connect(server.address).unwrap();
    std::io::Write::write_all(
        &mut raw,
        b"HEAD /_local/health HTTP/1.1\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut head = String::new();
    std::io::Read::read_to_string(&mut raw, &mut head).unwrap();
    // The head alone: the status, a Content-Length for GET's body, and no body after it.
    assert!(head.starts_with("HTTP/1.1 200 "), "{head:?}");
    assert!(head.contains("Content-Length: 15\r\n"), "{head:?}");
    assert!(head.ends_with("\r\n\r\n"), "{head:?}");

    let up = run(&["health", "--url", &format!("http://{}", server.address)]);
    assert!(up.status.success(), "{}", stderr(&up));
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let down = run(&["health", "--url", &format!("http://{closed}")]);
    assert_eq!(down.status.code(), Some(1));
}

#[test]
fn accounts_key_gives_a_new_key_and_the_old_one_stops_working() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("keys.db");
    run_ok(&["accounts", "add", "test", "--key", KEY, "--db", path(&db)]);
    let said = run_ok(&["accounts", "key", "test", "--db", path(&db)]);
    let new_key = said
        .split("new api_key ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .to_string();
    assert_eq!(new_key.len(), 32);
    let unknown = run(&["accounts", "key", "nobody", "--db", path(&db)]);
    assert_eq!(unknown.status.code(), Some(1));
    let server = TestServer::start_on(dir, db, &[]);
    assert_eq!(
        server.call_as(KEY, "getLists", &[])["code"],
        "invalid_api_key"
    );
    assert!(server.call_as(&new_key, "getLists", &[])["result"].is_array());
}

#[test]
fn every_serve_flag_can_come_from_the_environment() {
    let help = run_ok(&["serve", "--help"]);
    let flags: Vec<&str> = help
        .lines()
        .map(str::trim_start)
        .filter(|line| line.starts_with("--"))
        .collect();
    assert!(flags.len() >= 8, "{help}");
    for flag in flags {
        assert!(flag.contains("[env: UNISENDER_LOCAL_"), "{flag}");
    }
}

#[test]
fn a_dropped_server_stops_and_lets_go_of_its_database() {
    let dir = tempfile::tempdir().unwrap();
    let config = ServeConfig {
        db: dir.path().join("dropped.db"),
        accounts: vec![("test".into(), KEY.into())],
        durability: Durability::Relaxed,
        ..ServeConfig::default()
    };
    let server = Server::start(config.clone()).expect("starts");
    let address = server.address();
    assert_eq!(
        post_status(address, "getLists", &format!("api_key={KEY}")).0,
        200
    );
    drop(server);
    assert!(
        std::net::TcpStream::connect(address).is_err(),
        "still listening"
    );
    let again = Server::start(config).expect("the database is free again");
    again.stop();
}
