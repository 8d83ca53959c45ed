//! What the speed work must not break: group commit isolates a failing command, concurrent
//! batched calls end as the same calls applied one by one, and a full queue answers 503 and loses
//! nothing. These drive an in-process server (real, on 127.0.0.1:0) so that the writer's options
//! can be set.

use crate::support::http_client::{Client, form};
use serde_json::Value;
use std::sync::atomic::Ordering;
use std::time::Duration;
use unisender_local::http::wire::Limits;
use unisender_local::server::{ServeConfig, Server};
use unisender_local::store::db::Durability;
use unisender_local::store::writer::WriterOptions;

const KEY: &str = "writer-test-key-1234";

fn server(dir: &tempfile::TempDir, writer: WriterOptions) -> Server {
    Server::start(ServeConfig {
        db: dir.path().join("w.db"),
        listen: "127.0.0.1:0".into(),
        accounts: vec![("w".into(), KEY.into())],
        durability: Durability::Relaxed,
        limits: Limits::default(),
        writer,
        max_pages: None,
        public_url: None,
        exports: Default::default(),
        control: unisender_local::app::ControlOptions::quiet(),
        seed: Vec::new(),
    })
    .expect("the server starts")
}

fn call(server: &Server, method: &str, pairs: &[(&str, &str)]) -> (u16, Value) {
    let mut all = vec![("api_key", KEY)];
    all.extend_from_slice(pairs);
    let reply = Client::new(server.address()).post_form(&format!("/en/api/{method}"), &form(&all));
    (reply.status, reply.json())
}

/// An import of `emails` with a tag, as form pairs.
fn import_pairs(emails: &[String], tag: &str) -> Vec<(String, String)> {
    let mut pairs = vec![
        ("field_names[0]".to_string(), "email".to_string()),
        ("field_names[1]".to_string(), "tags".to_string()),
        ("field_names[2]".to_string(), "email_add_time".to_string()),
    ];
    for (i, email) in emails.iter().enumerate() {
        pairs.push((format!("data[{i}][0]"), email.clone()));
        pairs.push((format!("data[{i}][1]"), tag.to_string()));
        pairs.push((format!("data[{i}][2]"), "2024-05-06 07:08:09".to_string()));
    }
    pairs
}

fn as_refs(pairs: &[(String, String)]) -> Vec<(&str, &str)> {
    pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

/// Holds the database's write lock from another connection until dropped, so that the writer
/// waits and commands pile up in its queue.
struct WriteLock(rusqlite::Connection);

impl WriteLock {
    fn take(dir: &tempfile::TempDir) -> WriteLock {
        let conn = rusqlite::Connection::open(dir.path().join("w.db")).unwrap();
        conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        WriteLock(conn)
    }
}

impl Drop for WriteLock {
    fn drop(&mut self) {
        let _ = self.0.execute_batch("ROLLBACK");
    }
}

#[test]
fn a_failing_command_in_a_batch_rolls_back_alone() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(&dir, WriterOptions::default());
    let (_, list) = call(&server, "createList", &[("title", "L")]);
    let list = list["result"]["id"].as_i64().unwrap().to_string();
    let full: Vec<String> = vec!["full@example.com".into()];
    let ten = import_pairs(&full, "1,2,3,4,5,6,7,8,9,10");
    assert_eq!(
        call(&server, "importContacts", &as_refs(&ten)).1["result"]["inserted"],
        1
    );

    let lock = WriteLock::take(&dir);
    let batches_before = server.store().writer().stats.batches.load(Ordering::SeqCst);
    std::thread::scope(|scope| {
        let mut handles = Vec::new();
        for (i, name) in ["a", "b", "fails", "d"].iter().enumerate() {
            let (server, list) = (&server, &list);
            handles.push(scope.spawn(move || {
                if *name == "fails" {
                    // Writes the membership, then finds an eleventh tag: refused after writing.
                    let pairs = [
                        ("list_ids", list.as_str()),
                        ("fields[email]", "full@example.com"),
                        ("tags", "eleven"),
                        ("double_optin", "3"),
                    ];
                    call(server, "subscribe", &pairs)
                } else {
                    let emails: Vec<String> =
                        (0..20).map(|n| format!("{name}{n}@example.com")).collect();
                    call(
                        server,
                        "importContacts",
                        &as_refs(&import_pairs(&emails, name)),
                    )
                }
            }));
            // Queued in this order behind the lock.
            std::thread::sleep(Duration::from_millis(100 + 20 * i as u64));
        }
        drop(lock);
        let answers: Vec<(u16, Value)> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        for (i, (status, answer)) in answers.iter().enumerate() {
            assert_eq!(*status, 200);
            if i == 2 {
                assert_eq!(answer["code"], "invalid_arg", "{answer}");
            } else {
                assert_eq!(answer["result"]["inserted"], 20, "{answer}");
            }
        }
    });
    let stats = &server.store().writer().stats;
    assert!(
        stats.retried_batches.load(Ordering::SeqCst) >= 1,
        "the failing command shared a batch"
    );
    assert!(
        stats.batches.load(Ordering::SeqCst) - batches_before < 4,
        "commands were batched"
    );
    let (_, export) = call(
        &server,
        "exportContacts",
        &[
            ("field_names[]", "email"),
            ("field_names[]", "email_list_ids"),
            ("field_names[]", "tags"),
        ],
    );
    let rows = export["result"]["data"].as_array().unwrap().clone();
    assert_eq!(rows.len(), 61);
    let full = rows.iter().find(|r| r[0] == "full@example.com").unwrap();
    assert_eq!(full[1], "", "the failed subscribe left no membership");
    assert_eq!(full[2].as_str().unwrap().split(',').count(), 10);
}

#[test]
fn concurrent_batched_calls_end_as_the_calls_applied_one_by_one() {
    let calls: Vec<Vec<(String, String)>> = (0..12)
        .map(|c| {
            // Overlapping addresses: each call touches half of its neighbour's contacts.
            let emails: Vec<String> = (c * 10..c * 10 + 20)
                .map(|n| format!("o{n}@example.com"))
                .collect();
            import_pairs(&emails, &format!("t{}", c % 3))
        })
        .collect();
    let grouped_dir = tempfile::tempdir().unwrap();
    let grouped = server(&grouped_dir, WriterOptions::default());
    std::thread::scope(|scope| {
        for pairs in &calls {
            let grouped = &grouped;
            scope
                .spawn(move || assert_eq!(call(grouped, "importContacts", &as_refs(pairs)).0, 200));
        }
    });
    let single_dir = tempfile::tempdir().unwrap();
    let single = server(
        &single_dir,
        WriterOptions {
            batch_rows: 1,
            ..WriterOptions::default()
        },
    );
    for pairs in &calls {
        call(&single, "importContacts", &as_refs(pairs));
    }
    let columns = [
        ("field_names[]", "email"),
        ("field_names[]", "email_add_time"),
        ("field_names[]", "email_status"),
    ];
    let grouped_export = call(&grouped, "exportContacts", &columns).1["result"]["data"].clone();
    let single_export = call(&single, "exportContacts", &columns).1["result"]["data"].clone();
    let sorted = |v: &Value| {
        let mut rows: Vec<String> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.to_string())
            .collect();
        rows.sort();
        rows
    };
    assert_eq!(sorted(&grouped_export), sorted(&single_export));
    // Tags depend on the order the calls ran in, but every contact carries the tags of every
    // call that named it: nothing was lost between batched calls.
    let (_, tags) = call(
        &grouped,
        "exportContacts",
        &[("field_names[]", "email"), ("field_names[]", "tags")],
    );
    for row in tags["result"]["data"].as_array().unwrap() {
        let n: usize = row[0]
            .as_str()
            .unwrap()
            .trim_start_matches('o')
            .split('@')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let callers: std::collections::BTreeSet<String> = (0..12usize)
            .filter(|c| (c * 10..c * 10 + 20).contains(&n))
            .map(|c| format!("t{}", c % 3))
            .collect();
        let got: std::collections::BTreeSet<String> = row[1]
            .as_str()
            .unwrap()
            .split(',')
            .map(str::to_string)
            .collect();
        assert_eq!(got, callers, "{row}");
    }
}

#[test]
fn a_full_queue_answers_503_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let options = WriterOptions {
        queue_capacity: 1,
        enqueue_timeout: Duration::from_millis(50),
        ..WriterOptions::default()
    };
    let server = server(&dir, options);
    let lock = WriteLock::take(&dir);
    let answers: Vec<(usize, u16, Value, Option<String>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..12)
            .map(|c| {
                let server = &server;
                scope.spawn(move || {
                    let emails: Vec<String> =
                        (0..10).map(|n| format!("q{c}-{n}@example.com")).collect();
                    let mut all = vec![("api_key".to_string(), KEY.to_string())];
                    all.extend(import_pairs(&emails, "x"));
                    let reply = Client::new(server.address())
                        .post_form("/en/api/importContacts", &form(&as_refs(&all)));
                    (
                        c,
                        reply.status,
                        reply.json(),
                        reply.header("retry-after").map(str::to_string),
                    )
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(500));
        drop(lock);
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let refused: Vec<_> = answers.iter().filter(|a| a.1 == 503).collect();
    let accepted: Vec<_> = answers.iter().filter(|a| a.1 == 200).collect();
    assert!(!refused.is_empty(), "the queue of one overflowed");
    assert!(
        !accepted.is_empty(),
        "the queued calls were applied once the lock went"
    );
    assert_eq!(refused.len() + accepted.len(), answers.len());
    for (_, _, answer, retry_after) in &refused {
        assert_eq!(answer["code"], "retry_later");
        assert_eq!(retry_after.as_deref(), Some("1"));
    }
    for (c, status, answer, _) in &answers {
        let (_, found) = call(
            &server,
            "exportContacts",
            &[
                ("email", &format!("q{c}-0@example.com")),
                ("field_names[]", "email"),
            ],
        );
        let stored = !found["result"]["data"].as_array().unwrap().is_empty();
        assert_eq!(
            stored,
            *status == 200,
            "call {c}: answered {status} {answer}"
        );
    }
    // The server is well afterwards.
    assert_eq!(call(&server, "getLists", &[]).0, 200);
}
