//! §6.2: async/exportContacts, its task states, its file, its callback, and isolation.

use crate::support::http_client::Client;
use crate::support::{KEY, OTHER_KEY, TestServer};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

/// Starts a task and returns its uuid.
fn start(server: &TestServer, pairs: &[(&str, &str)]) -> String {
    let answer = server.call("async/exportContacts", pairs);
    assert_eq!(answer["result"]["status"], "new", "{answer}");
    answer["result"]["task_uuid"].as_str().unwrap().to_string()
}

/// Polls getTaskResult until the task is finished (bounded).
fn finished(server: &TestServer, uuid: &str) -> Value {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let answer = server.call("async/getTaskResult", &[("task_uuid", uuid)]);
        let status = answer["result"]["status"]
            .as_str()
            .unwrap_or_else(|| panic!("{answer}"))
            .to_string();
        assert!(["new", "processing", "completed", "failed"].contains(&status.as_str()));
        if status == "completed" || status == "failed" {
            return answer["result"].clone();
        }
        assert!(Instant::now() < until, "task {uuid} did not finish");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Downloads a file URL of this server (no key), returning the status and the body.
fn download(server: &TestServer, url: &str) -> (u16, Vec<u8>, Option<String>) {
    let path = url
        .split_once("://")
        .unwrap()
        .1
        .split_once('/')
        .map(|(_, p)| format!("/{p}"))
        .unwrap();
    let reply = Client::new(server.address)
        .send(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
    (
        reply.status,
        reply.body.clone(),
        reply.header("content-type").map(str::to_string),
    )
}

fn parse_csv(bytes: &[u8]) -> Vec<Vec<String>> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(bytes)
        .records()
        .map(|r| r.unwrap().iter().map(str::to_string).collect())
        .collect()
}

fn populate(server: &TestServer) {
    let list = server.create_list("L").to_string();
    server.create_field("Note");
    server.import(
        &["email", "phone", "email_list_ids", "tags", "Note"],
        &[
            &["a@example.com", "+15550000001", &list, "x,y", "plain"],
            &["b@example.com", "", "", "", "comma, \"quoted\"\nand a line"],
            &["", "+15550000003", "", "тег", "ünïcödé"],
        ],
        &[],
    );
}

#[test]
fn the_file_matches_the_synchronous_export() {
    let server = TestServer::start();
    populate(&server);
    let uuid = start(&server, &[]);
    let result = finished(&server, &uuid);
    assert_eq!(result["status"], "completed");
    assert_eq!(result["task_type"], "exportContacts");
    assert_eq!(result["task_uuid"], uuid.as_str());
    let url = result["file_to_download"].as_str().unwrap();
    assert!(
        url.starts_with("http://x/_local/exports/") || url.starts_with("http://"),
        "{url}"
    );
    let (status, body, content_type) = download(&server, url);
    assert_eq!(status, 200);
    assert_eq!(content_type.as_deref(), Some("text/csv; charset=utf-8"));
    assert!(!body.starts_with(&[0xEF, 0xBB, 0xBF]), "no BOM");
    let text = String::from_utf8(body.clone()).unwrap();
    assert!(text.ends_with("\r\n"));
    assert_eq!(
        text.matches("\r\n").count(),
        4,
        "a header and three rows; the note's own \\n stays as it is"
    );
    let sync = server.call("exportContacts", &[])["result"].clone();
    let mut expected = vec![
        sync["field_names"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect::<Vec<_>>(),
    ];
    for row in sync["data"].as_array().unwrap() {
        expected.push(
            row.as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_string())
                .collect(),
        );
    }
    let parsed = parse_csv(&body);
    // The CSV keeps the note's bare \n; the sync export too.
    assert_eq!(parsed, expected);
}

#[test]
fn filters_and_columns_apply_to_the_file() {
    let server = TestServer::start();
    populate(&server);
    let uuid = start(
        &server,
        &[
            ("field_names[]", "email"),
            ("field_names[]", "Note"),
            ("tag", "X"),
        ],
    );
    let result = finished(&server, &uuid);
    let (_, body, _) = download(&server, result["file_to_download"].as_str().unwrap());
    assert_eq!(
        parse_csv(&body),
        vec![vec!["email", "Note"], vec!["a@example.com", "plain"]]
    );
    // Bad arguments are refused at once, as for the synchronous form.
    assert_eq!(
        server.call("async/exportContacts", &[("field_names[]", "nope")])["code"],
        "invalid_arg"
    );
    assert_eq!(
        server.call("async/exportContacts", &[("notify_url", "ftp://x")])["code"],
        "invalid_arg"
    );
}

#[test]
fn tasks_and_files_of_one_account_are_not_another_s() {
    let server = TestServer::start();
    populate(&server);
    let uuid = start(&server, &[]);
    let result = finished(&server, &uuid);
    let other = server.call_as(OTHER_KEY, "async/getTaskResult", &[("task_uuid", &uuid)]);
    assert_eq!(other["code"], "invalid_arg");
    assert!(!other.to_string().contains("_local/exports"));
    assert_eq!(
        server.call("async/getTaskResult", &[("task_uuid", "no-such-task")])["code"],
        "invalid_arg"
    );
    assert_eq!(
        server.call("async/getTaskResult", &[])["code"],
        "invalid_arg"
    );
    // A guessed or malformed file name is not found.
    let url = result["file_to_download"].as_str().unwrap();
    let guessed = format!(
        "{}0123456789abcdef0123456789abcdef.csv",
        &url[..url.rfind('/').unwrap() + 1]
    );
    assert_eq!(download(&server, &guessed).0, 404);
    assert_eq!(
        download(&server, "http://x/_local/exports/..%2f..%2ftest.db").0,
        404
    );
    assert_eq!(download(&server, "http://x/_local/exports/").0, 404);
}

/// A loopback listener that answers each POST with the next status, recording the bodies.
fn callback_listener(statuses: Vec<u16>) -> (String, std::thread::JoinHandle<Vec<Value>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook?x=1", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        let mut bodies = Vec::new();
        for status in statuses {
            let (mut stream, _) = listener.accept().unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(30)))
                .unwrap();
            let mut buffer = Vec::new();
            let mut chunk = [0u8; 4096];
            let (head_end, length) = loop {
                let n = stream.read(&mut chunk).unwrap();
                buffer.extend_from_slice(&chunk[..n]);
                if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buffer[..at]).to_lowercase();
                    assert!(head.starts_with("post /hook?x=1 "), "{head}");
                    assert!(head.contains("content-type: application/json"), "{head}");
                    let length = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .map(|v| v.trim().parse::<usize>().unwrap())
                        .unwrap();
                    break (at + 4, length);
                }
            };
            while buffer.len() < head_end + length {
                let n = stream.read(&mut chunk).unwrap();
                buffer.extend_from_slice(&chunk[..n]);
            }
            bodies.push(serde_json::from_slice(&buffer[head_end..head_end + length]).unwrap());
            write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
            .unwrap();
        }
        bodies
    });
    (url, handle)
}

#[test]
fn notify_url_receives_the_task_result() {
    let server = TestServer::start();
    populate(&server);
    let (url, listener) = callback_listener(vec![200]);
    let uuid = start(&server, &[("notify_url", &url)]);
    let result = finished(&server, &uuid);
    let bodies = listener.join().unwrap();
    assert_eq!(bodies, vec![json!({"result": result})]);
}

#[test]
fn notify_url_is_retried_up_to_three_times_and_never_fails_the_export() {
    let server = TestServer::start();
    populate(&server);
    let (url, listener) = callback_listener(vec![500, 503, 200]);
    let uuid = start(&server, &[("notify_url", &url)]);
    assert_eq!(finished(&server, &uuid)["status"], "completed");
    let bodies = listener.join().unwrap();
    assert_eq!(bodies.len(), 3);
    assert!(
        bodies
            .iter()
            .all(|b| b["result"]["task_uuid"] == uuid.as_str())
    );
    // A callback address where nobody listens: the export completes all the same.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let uuid = start(&server, &[("notify_url", &format!("http://{closed}/"))]);
    assert_eq!(finished(&server, &uuid)["status"], "completed");
}

#[test]
fn tasks_and_files_survive_a_restart() {
    let mut server = TestServer::start();
    populate(&server);
    let uuid = start(&server, &[]);
    let result = finished(&server, &uuid);
    assert!(server.stop().success());
    let again = TestServer::start_on(
        tempfile::tempdir().unwrap(),
        server.db.clone(),
        &["--account", &format!("test:{KEY}")],
    );
    let after = again.call("async/getTaskResult", &[("task_uuid", &uuid)])["result"].clone();
    assert_eq!(after["status"], "completed");
    let (status, body, _) = download(&again, after["file_to_download"].as_str().unwrap());
    assert_eq!(status, 200);
    assert_eq!(parse_csv(&body).len(), 4);
    assert_eq!(
        after["file_to_download"]
            .as_str()
            .unwrap()
            .rsplit('/')
            .next(),
        result["file_to_download"]
            .as_str()
            .unwrap()
            .rsplit('/')
            .next()
    );
}

#[test]
fn a_task_that_cannot_write_its_file_fails() {
    let server = TestServer::start();
    populate(&server);
    // A plain file where the export directory should be.
    let dir = {
        let mut name = server.db.file_name().unwrap().to_os_string();
        name.push(".exports");
        server.db.with_file_name(name)
    };
    std::fs::write(&dir, b"in the way").unwrap();
    let uuid = start(&server, &[]);
    let result = finished(&server, &uuid);
    assert_eq!(result["status"], "failed");
    assert!(result.get("file_to_download").is_none());
}

#[test]
fn the_file_is_a_snapshot_while_imports_go_on() {
    let server = TestServer::start();
    let emails: Vec<String> = (0..500).map(|i| format!("s{i}@example.com")).collect();
    let rows: Vec<[&str; 2]> = emails.iter().map(|e| [e.as_str(), "even"]).collect();
    let rows: Vec<&[&str]> = rows.iter().map(|r| &r[..]).collect();
    server.import(&["email", "tags"], &rows, &[]);
    // While the export runs, calls flip every contact's tag from "even" to "odd" and back, each
    // call all 500 at once. A snapshot sees one tag on all rows, never a mix.
    let address = server.address;
    let writer = std::thread::spawn(move || {
        let mut client = Client::new(address);
        for round in 0..20 {
            let tag = if round % 2 == 0 { "odd" } else { "even" };
            let mut pairs = vec![
                ("api_key".to_string(), KEY.to_string()),
                ("field_names[0]".into(), "email".into()),
                ("field_names[1]".into(), "tags".into()),
                ("overwrite_tags".into(), "1".into()),
            ];
            for i in 0..500 {
                pairs.push((format!("data[{i}][0]"), format!("s{i}@example.com")));
                pairs.push((format!("data[{i}][1]"), tag.to_string()));
            }
            let pairs: Vec<(&str, &str)> = pairs
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            client.post_form(
                "/en/api/importContacts",
                &crate::support::http_client::form(&pairs),
            );
        }
    });
    let mut uuids = Vec::new();
    // Four: an account may have at most four unfinished exports, and on a loaded machine all
    // of them may still be running when the last is asked for.
    for _ in 0..4 {
        uuids.push(start(
            &server,
            &[("field_names[]", "email"), ("field_names[]", "tags")],
        ));
    }
    writer.join().unwrap();
    for uuid in uuids {
        let result = finished(&server, &uuid);
        let (_, body, _) = download(&server, result["file_to_download"].as_str().unwrap());
        let rows = parse_csv(&body);
        assert_eq!(rows.len(), 501);
        let tags: std::collections::HashSet<&str> =
            rows[1..].iter().map(|r| r[1].as_str()).collect();
        assert_eq!(tags.len(), 1, "a mixed snapshot: {tags:?}");
    }
}

#[test]
fn expired_tasks_and_their_files_are_removed() {
    let mut server = TestServer::start();
    populate(&server);
    let old = start(&server, &[]);
    let old_url = finished(&server, &old)["file_to_download"]
        .as_str()
        .unwrap()
        .to_string();
    let fresh = start(&server, &[]);
    finished(&server, &fresh);
    assert!(server.stop().success());
    // Age the first task past its lifetime, and leave a stray file no task names.
    let exports = {
        let mut name = server.db.file_name().unwrap().to_os_string();
        name.push(".exports");
        server.db.with_file_name(name)
    };
    let conn = rusqlite::Connection::open(&server.db).unwrap();
    conn.execute(
        "UPDATE export_tasks SET created_at = created_at - 2 * 86400 WHERE uuid = ?1",
        [&old],
    )
    .unwrap();
    drop(conn);
    std::fs::write(
        exports.join("0123456789abcdef0123456789abcdef.csv.part"),
        b"leftover",
    )
    .unwrap();
    let again = TestServer::start_on(
        tempfile::tempdir().unwrap(),
        server.db.clone(),
        &["--account", &format!("test:{KEY}")],
    );
    // The janitor runs first thing on start; a call that waits for the exporter follows it.
    let probe = start(&again, &[]);
    finished(&again, &probe);
    assert_eq!(
        again.call("async/getTaskResult", &[("task_uuid", &old)])["code"],
        "invalid_arg"
    );
    assert_eq!(download(&again, &old_url).0, 404);
    assert_eq!(
        again.call("async/getTaskResult", &[("task_uuid", &fresh)])["result"]["status"],
        "completed"
    );
    let files: Vec<String> = std::fs::read_dir(&exports)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        files.len(),
        2,
        "the fresh task's file and the probe's: {files:?}, old was {old_url}"
    );
    assert!(files.iter().all(|f| f.ends_with(".csv")));
}
