//! Trying hard to break it: a corpus of bad requests, crashes, shutdown under load, a full disk,
//! stalled and many clients, concurrent writers, keys in logs, backups and checks.

use crate::support::http_client::{Client, form, read_reply};
use crate::support::{TestServer, binary, path, run_ok, serving, start, terminate};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use unisender_local::store::packed::TagSet;

const CORPUS_KEY: &str = "corpus-key-0123456789";

fn counts(server: &TestServer) -> (i64, i64) {
    let db = server.db();
    let contacts = db
        .query_row("SELECT count(*) FROM contacts", [], |r| r.get(0))
        .unwrap();
    let lists = db
        .query_row("SELECT count(*) FROM lists", [], |r| r.get(0))
        .unwrap();
    (contacts, lists)
}

/// Sends raw bytes, half-closes, and reads whatever comes back until the server closes.
fn send_raw(address: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    // The server may answer and close before reading everything (a 413): a failed write is fine.
    let _ = stream.write_all(bytes);
    let _ = stream.shutdown(Shutdown::Write);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    answer
}

#[test]
fn a_corpus_of_bad_requests_answers_per_the_contract() {
    let server = TestServer::start_with(&[
        "--account",
        &format!("corpus:{CORPUS_KEY}"),
        "--read-timeout",
        "2",
    ]);
    let mut files: Vec<_> =
        std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/bad_requests"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
    files.sort();
    assert!(files.len() >= 60, "the corpus has {} requests", files.len());
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let expect = name
            .split(".expect-")
            .nth(1)
            .unwrap()
            .trim_end_matches(".http")
            .to_string();
        let before = counts(&server);
        let answer = send_raw(server.address, &std::fs::read(&path).unwrap());
        if expect == "close" {
            assert!(
                answer.is_empty(),
                "{name}: expected a close, got {}",
                String::from_utf8_lossy(&answer)
            );
        } else {
            let text = String::from_utf8_lossy(&answer);
            let status: u16 = text
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("{name}: no status in {text:.200}"));
            let wanted: u16 = if expect == "ok" {
                200
            } else {
                expect.parse().unwrap()
            };
            assert_eq!(status, wanted, "{name}: {text:.300}");
            let body_at = answer.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
            let body: Value = serde_json::from_slice(&answer[body_at..])
                .unwrap_or_else(|e| panic!("{name}: body is not JSON ({e}): {text:.300}"));
            assert!(
                text.contains("Content-Type: application/json; charset=utf-8"),
                "{name}"
            );
            if expect == "ok" {
                assert!(body.get("error").is_none(), "{name}: {body}");
            } else if body.get("error").is_some() {
                assert_eq!(body["result"], "", "{name}: an error's result is empty");
                assert!(
                    body["error"].is_string() && body["code"].is_string(),
                    "{name}: {body}"
                );
                assert_eq!(
                    counts(&server),
                    before,
                    "{name}: a refused request changed something"
                );
            }
        }
        // The server answers a normal request afterwards.
        let health = Client::new(server.address).send(b"GET /_local/health HTTP/1.1\r\n\r\n");
        assert_eq!(health.status, 200, "after {name}");
    }
}

#[test]
fn sql_and_formula_text_is_stored_and_returned_literally() {
    let server = TestServer::start();
    let nasty = [
        "'; DROP TABLE contacts; --",
        "=HYPERLINK(\"http://evil\",\"x\")",
        "+cmd|' /C calc'!A0",
        "@SUM(1+1)",
        "\" OR \"\"=\"",
        "-2+3",
    ];
    server.create_field("Note");
    for (i, text) in nasty.iter().enumerate() {
        let list = server.create_list(&format!("{text} {i}"));
        let email = format!("n{i}@example.com");
        let tag = text.replace(',', ";");
        let answer = server.import(
            &["email", "Note", "tags", "email_list_ids"],
            &[&[&email, text, &tag, &list.to_string()]],
            &[],
        );
        assert_eq!(answer["result"]["inserted"], 1, "{answer}");
        let row = server.ok(
            "exportContacts",
            &[
                ("email", &email),
                ("field_names[]", "Note"),
                ("field_names[]", "tags"),
            ],
        )["data"][0]
            .clone();
        assert_eq!(row, serde_json::json!([text, tag.trim()]));
    }
    let titles: Vec<String> = server
        .ok("getLists", &[])
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["title"].as_str().unwrap().to_string())
        .collect();
    for (i, text) in nasty.iter().enumerate() {
        assert!(titles.contains(&format!("{text} {i}")));
    }
    assert_eq!(counts(&server).0, nasty.len() as i64);
}

/// A server process on `db`, for tests that kill or stop it themselves.
fn spawn(db: &std::path::Path, extra: &[&str]) -> (Child, SocketAddr) {
    let served = start(serving(db, &format!("crash:{CORPUS_KEY}")).args(extra));
    (served.child, served.address)
}

/// One import call: `size` new contacts carrying the call's own tag.
fn import_call(address: SocketAddr, call: &str, size: usize) -> Option<u16> {
    let mut pairs = vec![
        ("api_key".to_string(), CORPUS_KEY.to_string()),
        ("field_names[0]".into(), "email".into()),
        ("field_names[1]".into(), "tags".into()),
    ];
    for k in 0..size {
        pairs.push((format!("data[{k}][0]"), format!("{call}-{k}@example.com")));
        pairs.push((format!("data[{k}][1]"), call.to_string()));
    }
    let body = form(
        &pairs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect::<Vec<_>>(),
    );
    let mut stream = TcpStream::connect(address).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .ok()?;
    let request = format!(
        "POST /en/api/importContacts HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).ok()?;
    let reply = read_reply(&mut stream)?;
    (reply.status != 200 || reply.json()["result"]["inserted"] == size).then_some(reply.status)
}

/// How many contacts each call's tag is on, straight from the file.
fn contacts_per_call(db: &std::path::Path) -> HashMap<String, i64> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let names: HashMap<i64, String> = conn
        .prepare("SELECT id, name FROM tags")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut counts = HashMap::new();
    let mut statement = conn.prepare("SELECT tag_ids FROM contacts").unwrap();
    for tags in statement.query_map([], |r| r.get::<_, TagSet>(0)).unwrap() {
        for tag in tags.unwrap().ids() {
            *counts.entry(names[tag].clone()).or_insert(0) += 1;
        }
    }
    counts
}

/// The contact total a freshly started server reports for the database.
fn served_total(db: &std::path::Path) -> i64 {
    let (mut child, address) = spawn(db, &[]);
    let total = Client::new(address)
        .post_form(
            "/en/api/getTotalContactsCount",
            &form(&[("api_key", CORPUS_KEY), ("login", "crash")]),
        )
        .json();
    assert!(terminate(&mut child).success());
    total["result"]["total"].as_i64().unwrap()
}

fn integrity_ok(db: &std::path::Path) {
    let checked = run_ok(&["check", "--db", path(db)]);
    assert!(checked.trim().ends_with(": ok"));
}

/// Clients import until told to stop, recording the calls answered 200.
fn importers(
    address: SocketAddr,
    prefix: &str,
    clients: usize,
    stop: Arc<AtomicBool>,
) -> Vec<std::thread::JoinHandle<(Vec<String>, Vec<String>)>> {
    (0..clients)
        .map(|c| {
            let (stop, prefix) = (stop.clone(), prefix.to_string());
            std::thread::spawn(move || {
                let (mut answered, mut sent) = (Vec::new(), Vec::new());
                for i in 0.. {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let call = format!("{prefix}c{c}n{i}");
                    sent.push(call.clone());
                    match import_call(address, &call, 20) {
                        Some(200) => answered.push(call),
                        Some(_) => {}
                        None => break,
                    }
                }
                (answered, sent)
            })
        })
        .collect()
}

fn assert_all_or_nothing(db: &std::path::Path, answered: &[String], sent: &[String]) {
    let stored = contacts_per_call(db);
    for call in answered {
        assert_eq!(
            stored.get(call),
            Some(&20),
            "answered call {call} is not fully there"
        );
    }
    for call in sent {
        let n = stored.get(call).copied().unwrap_or(0);
        assert!(n == 0 || n == 20, "call {call} is half there ({n} of 20)");
    }
}

/// SIGKILL at a moment drawn per round while clients import; every answered call must be there
/// whole after a restart. `CRASH_ROUNDS=50 cargo test crash` runs the long version.
#[test]
fn crash_safety_every_answered_call_survives_sigkill() {
    let rounds: usize = std::env::var("CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("crash.db");
    let (mut all_answered, mut all_sent) = (Vec::new(), Vec::new());
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    for round in 0..rounds {
        let (mut child, address) = spawn(&db, &["--durability", "full"]);
        let stop = Arc::new(AtomicBool::new(false));
        let clients = importers(address, &format!("r{round}"), 4, stop.clone());
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        std::thread::sleep(Duration::from_millis(100 + (seed >> 33) % 400));
        child.kill().unwrap();
        child.wait().unwrap();
        stop.store(true, Ordering::SeqCst);
        for client in clients {
            let (answered, sent) = client.join().unwrap();
            all_answered.extend(answered);
            all_sent.extend(sent);
        }
        integrity_ok(&db);
        assert_all_or_nothing(&db, &all_answered, &all_sent);
    }
    assert!(
        !all_answered.is_empty(),
        "some calls were answered before the kills"
    );
    // And a restarted server serves the same data.
    assert_eq!(
        served_total(&db),
        contacts_per_call(&db).values().sum::<i64>()
    );
}

#[test]
fn sigterm_under_load_commits_what_was_answered_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("term.db");
    let (mut child, address) = spawn(&db, &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let clients = importers(address, "t", 4, stop.clone());
    std::thread::sleep(Duration::from_millis(400));
    let status = terminate(&mut child);
    stop.store(true, Ordering::SeqCst);
    assert!(status.success(), "{status:?}");
    let (mut answered, mut sent) = (Vec::new(), Vec::new());
    for client in clients {
        let (a, s) = client.join().unwrap();
        answered.extend(a);
        sent.extend(s);
    }
    assert!(!answered.is_empty());
    integrity_ok(&db);
    assert_all_or_nothing(&db, &answered, &sent);
}

#[test]
fn a_full_disk_fails_the_write_cleanly_and_recovers_with_room() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("full.db");
    let (mut child, address) = spawn(&db, &["--max-pages", "120"]);
    let mut refused = None;
    for i in 0..200 {
        let call = format!("f{i}");
        match import_call(address, &call, 50) {
            Some(200) => {}
            Some(status) => {
                refused = Some((call, status));
                break;
            }
            None => panic!("no answer"),
        }
    }
    let (call, status) = refused.expect("the disk filled up");
    assert_eq!(status, 503);
    assert_eq!(
        contacts_per_call(&db).get(&call),
        None,
        "the failing call left nothing behind"
    );
    // Reads keep working.
    let mut client = Client::new(address);
    let lists = client.post_form("/en/api/getLists", &form(&[("api_key", CORPUS_KEY)]));
    assert_eq!(lists.json()["result"], serde_json::json!([]));
    let export = client.post_form(
        "/en/api/exportContacts",
        &form(&[("api_key", CORPUS_KEY), ("limit", "5")]),
    );
    assert_eq!(export.json()["result"]["data"].as_array().unwrap().len(), 5);
    assert!(terminate(&mut child).success());
    integrity_ok(&db);
    // With room again, the same call goes through.
    let (mut child, address) = spawn(&db, &["--max-pages", "100000"]);
    assert_eq!(import_call(address, &call, 50), Some(200));
    assert!(terminate(&mut child).success());
}

#[test]
fn two_hundred_stalled_connections_do_not_stop_a_normal_client() {
    let server = TestServer::start_with(&[
        "--account",
        &format!("corpus:{CORPUS_KEY}"),
        "--read-timeout",
        "3",
    ]);
    let mut stalled: Vec<TcpStream> = (0..200)
        .map(|i| {
            let mut s = TcpStream::connect(server.address).unwrap();
            if i % 2 == 0 {
                s.write_all(b"POST /en/api/getLists HTTP/1.1\r\nContent-Le")
                    .unwrap();
            }
            s
        })
        .collect();
    // One byte a second on a few of them, too.
    for s in stalled.iter_mut().take(10) {
        s.write_all(b"n").unwrap();
    }
    let reply = Client::new(server.address)
        .send(format!("GET /en/api/getLists?api_key={CORPUS_KEY} HTTP/1.1\r\n\r\n").as_bytes());
    assert_eq!(reply.json(), serde_json::json!({"result": []}));
    for s in &mut stalled {
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut rest = Vec::new();
        s.read_to_end(&mut rest)
            .expect("closed by the server's read timeout");
    }
}

/// 16 clients write overlapping contacts; the final state must be one that some serial order of
/// the calls gives: the calls that last wrote each contact never contradict each other.
/// `WRITERS_SECONDS=60 cargo test concurrent_writers` runs it for a minute.
#[test]
fn concurrent_writers_leave_a_serialisable_state() {
    let server = TestServer::start_with(&["--account", &format!("corpus:{CORPUS_KEY}")]);
    let field = server.call_as(
        CORPUS_KEY,
        "createField",
        &[("name", "Writer"), ("type", "string")],
    );
    assert!(field["result"]["id"].is_number());
    // A few seconds in `cargo test`; `WRITERS_SECONDS=60` for the long run.
    let seconds: u64 = std::env::var("WRITERS_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let address = server.address;
    let calls: Vec<Vec<(String, Vec<usize>)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..16)
            .map(|c| {
                scope.spawn(move || {
                    let mut done = Vec::new();
                    let mut state = c as u64 * 7919 + 1;
                    let mut client = Client::new(address);
                    let mut i = 0;
                    while Instant::now() < deadline {
                        let call = format!("w{c}-{i}");
                        i += 1;
                        let contacts: Vec<usize> = (0..15)
                            .map(|_| {
                                state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
                                (state >> 40) as usize % 60
                            })
                            .collect::<HashSet<_>>()
                            .into_iter()
                            .collect();
                        let mut pairs = vec![
                            ("api_key".to_string(), CORPUS_KEY.to_string()),
                            ("field_names[0]".into(), "email".into()),
                            ("field_names[1]".into(), "Writer".into()),
                        ];
                        for (k, n) in contacts.iter().enumerate() {
                            pairs.push((format!("data[{k}][0]"), format!("shared{n}@example.com")));
                            pairs.push((format!("data[{k}][1]"), call.clone()));
                        }
                        let body = form(
                            &pairs
                                .iter()
                                .map(|(k, v)| (k.as_str(), v.as_str()))
                                .collect::<Vec<_>>(),
                        );
                        let answer = client.post_form("/en/api/importContacts", &body).json();
                        assert_eq!(answer["result"]["invalid"], 0, "{answer}");
                        done.push((call, contacts));
                    }
                    done
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let calls: HashMap<String, Vec<usize>> = calls.into_iter().flatten().collect();
    let export = server.call_as(
        CORPUS_KEY,
        "exportContacts",
        &[("field_names[]", "email"), ("field_names[]", "Writer")],
    );
    let winners: HashMap<usize, String> = export["result"]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            let n = row[0]
                .as_str()
                .unwrap()
                .trim_start_matches("shared")
                .split('@')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            (n, row[1].as_str().unwrap().to_string())
        })
        .collect();
    // Every call that touched a contact but did not win it came before the winner.
    let mut before: HashMap<&str, HashSet<&str>> = HashMap::new();
    for (call, contacts) in &calls {
        for n in contacts {
            let winner = winners.get(n).expect("every touched contact exists");
            assert!(calls[winner].contains(n), "the winner touched the contact");
            if winner != call {
                before
                    .entry(winner.as_str())
                    .or_default()
                    .insert(call.as_str());
            }
        }
    }
    // No cycle: a serial order exists (depth-first search for a back edge).
    fn visit<'a>(
        node: &'a str,
        before: &HashMap<&'a str, HashSet<&'a str>>,
        state: &mut HashMap<&'a str, u8>,
    ) {
        match state.get(node) {
            Some(1) => panic!("a cycle through {node}: no serial order gives this state"),
            Some(2) => return,
            _ => {}
        }
        state.insert(node, 1);
        for next in before.get(node).into_iter().flatten() {
            visit(next, before, state);
        }
        state.insert(node, 2);
    }
    let mut state = HashMap::new();
    for call in calls.keys() {
        visit(call, &before, &mut state);
    }
    assert!(calls.len() > 16, "each client made several calls");
}

#[test]
fn keys_never_appear_in_the_output_and_other_addresses_warn() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "very-secret-key-0123456789abcdef";
    let served = start(
        binary()
            .args([
                "serve",
                "--listen",
                "0.0.0.0:0",
                "--account",
                &format!("me:{secret}"),
                "--db",
            ])
            .arg(dir.path().join("k.db"))
            .stderr(Stdio::piped()),
    );
    let (mut child, address, line, mut stdout) = (
        served.child,
        served.address,
        served.first_line,
        served.stdout,
    );
    let mut client = Client::new(address);
    for key in [secret, "a-wrong-key-9876543210", ""] {
        client.post_form(
            "/en/api/importContacts",
            &form(&[
                ("api_key", key),
                ("field_names[0]", "email"),
                ("data[0][0]", "x@example.com"),
            ]),
        );
        client.post_form(
            "/en/api/exportContacts",
            &form(&[("api_key", key), ("limit", "0")]),
        );
    }
    assert!(terminate(&mut child).success());
    let mut out = line;
    stdout.read_to_string(&mut out).unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(err.contains("warning: listening on 0.0.0.0"), "{err}");
    for text in [&out, &err] {
        assert!(
            !text.contains(secret) && !text.contains("a-wrong-key-9876543210"),
            "a key was printed: {text}"
        );
    }
    let db = dir.path().join("k.db");
    let listed = run_ok(&["accounts", "list", "--db", path(&db)]);
    assert!(!listed.contains(secret));
}

#[test]
fn backup_while_serving_and_check() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("live.db");
    let (mut child, address) = spawn(&db, &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let clients = importers(address, "b", 2, stop.clone());
    std::thread::sleep(Duration::from_millis(300));
    let copy = dir.path().join("copy.db");
    run_ok(&["backup", "--db", path(&db), path(&copy)]);
    stop.store(true, Ordering::SeqCst);
    clients.into_iter().for_each(|c| drop(c.join().unwrap()));
    assert!(terminate(&mut child).success());
    integrity_ok(&copy);
    // The copy is a consistent snapshot: whole calls only, and a server can serve it.
    let stored = contacts_per_call(&copy);
    assert!(!stored.is_empty());
    assert!(stored.values().all(|n| *n == 20), "{stored:?}");
    assert_eq!(served_total(&copy), stored.values().sum::<i64>());
    // A second backup to the same file is refused; a damaged file fails the check.
    let again = binary()
        .args(["backup", "--db"])
        .arg(&db)
        .arg(&copy)
        .output()
        .unwrap();
    assert!(!again.status.success());
    let mut bytes = std::fs::read(&copy).unwrap();
    for b in bytes.iter_mut().skip(8192).take(4096) {
        *b ^= 0x5a;
    }
    let damaged = dir.path().join("damaged.db");
    std::fs::write(&damaged, bytes).unwrap();
    let checked = binary()
        .args(["check", "--db"])
        .arg(&damaged)
        .output()
        .unwrap();
    assert_eq!(
        checked.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&checked.stdout)
    );
}
