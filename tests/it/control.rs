//! The control plane under `/_local/`: who may use it, the request journal, and the request log.

use crate::support::attack::connect_from;
use crate::support::http_client::{Reply, form, read_reply};
use crate::support::{KEY, TestServer, binary, serving, start, terminate};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};

fn get(address: SocketAddr, target: &str, headers: &str) -> Reply {
    let mut stream = TcpStream::connect(address).unwrap();
    write!(stream, "GET {target} HTTP/1.1\r\nHost: x\r\n{headers}\r\n").unwrap();
    read_reply(&mut stream).expect("an answer")
}

fn requests(server: &TestServer, query: &str) -> Vec<Value> {
    let reply = get(server.address, &format!("/_local/requests{query}"), "");
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    reply.json()["requests"].as_array().unwrap().clone()
}

#[test]
fn the_journal_records_calls_newest_first_with_the_key_masked_and_data_cut() {
    let server = TestServer::start();
    server.create_list("L");
    let note = "n".repeat(150);
    let emails: Vec<String> = (0..500).map(|n| format!("row{n}@b.cd")).collect();
    let rows: Vec<Vec<Option<&str>>> = emails
        .iter()
        .map(|e| vec![Some(e.as_str()), Some(note.as_str())])
        .collect();
    let field = server.create_field("Note");
    assert!(field > 0);
    server.import_sparse(&["email", "Note"], &rows, &[]);
    server.call_as("wrong-key-0000", "getLists", &[]);
    let all = requests(&server, "");
    let methods: Vec<&str> = all.iter().map(|e| e["method"].as_str().unwrap()).collect();
    assert_eq!(
        methods,
        ["getLists", "importContacts", "createField", "createList"]
    );
    let ids: Vec<u64> = all.iter().map(|e| e["id"].as_u64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "{ids:?}");
    let (refused, import, create) = (&all[0], &all[1], &all[3]);
    assert_eq!(refused["outcome"], json!({"code": "invalid_api_key"}));
    assert_eq!(refused["account"], Value::Null);
    assert_eq!(
        create["params"]["api_key"],
        format!("…{}", &KEY[KEY.len() - 4..])
    );
    assert_eq!(create["params"]["title"], "L");
    assert_eq!(create["account"], "test");
    assert_eq!(create["status"], 200);
    assert_eq!(
        import["outcome"],
        json!({"total": 500, "inserted": 500, "updated": 0, "deleted": 0, "new_emails": 500, "invalid": 0})
    );
    let data = import["params"]["data"].as_object().unwrap();
    assert!(
        data.len() < 500,
        "data is cut at 64 KiB: {} rows kept",
        data.len()
    );
    assert_eq!(data["…"], "…cut at 64 KiB");
    assert!(import["duration_ms"].as_f64().unwrap() > 0.0);
    assert!(import["time"].as_str().unwrap().len() == 23);
    let text = String::from_utf8(get(server.address, "/_local/requests", "").body).unwrap();
    assert!(!text.contains(KEY), "the journal never holds a whole key");

    // Filters, and clearing.
    assert_eq!(requests(&server, "?method=createList").len(), 1);
    assert_eq!(requests(&server, "?account=test").len(), 3);
    let since = ids[1];
    assert_eq!(requests(&server, &format!("?since_id={since}")).len(), 1);
    assert_eq!(requests(&server, "?limit=2").len(), 2);
    let bad = get(server.address, "/_local/requests?limit=many", "");
    assert_eq!(
        (bad.status, bad.json()["code"].as_str()),
        (400, Some("invalid_arg"))
    );
    let mut stream = TcpStream::connect(server.address).unwrap();
    stream
        .write_all(b"DELETE /_local/requests HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let cleared = read_reply(&mut stream).unwrap();
    assert_eq!(cleared.json(), json!({"deleted": 4}));
    assert!(requests(&server, "").is_empty());
}

/// GET `target` from another host's address (127.0.0.2 stands for one).
fn get_from_elsewhere(address: SocketAddr, target: &str, headers: &str) -> Reply {
    let mut stream = connect_from(Ipv4Addr::new(127, 0, 0, 2), address).unwrap();
    write!(stream, "GET {target} HTTP/1.1\r\nHost: x\r\n{headers}\r\n").unwrap();
    read_reply(&mut stream).expect("an answer")
}

#[test]
fn the_control_plane_answers_this_machine_or_the_admin_token_never_an_api_key() {
    let server = TestServer::start();
    let elsewhere = get_from_elsewhere(server.address, "/_local/requests", "");
    assert_eq!(
        (elsewhere.status, elsewhere.json()["code"].as_str()),
        (403, Some("access_denied"))
    );
    let with_key = get_from_elsewhere(
        server.address,
        &format!("/_local/requests?api_key={KEY}"),
        "",
    );
    assert_eq!(with_key.status, 403);
    // Health and the export downloads are not the control plane.
    assert_eq!(
        get_from_elsewhere(server.address, "/_local/health", "").status,
        200
    );

    let guarded = TestServer::start_with(&[
        "--account",
        &format!("test:{KEY}"),
        "--admin-token",
        "s3cret-admin",
    ]);
    let address = guarded.address;
    assert_eq!(
        get(address, "/_local/requests", "").status,
        403,
        "the token is needed here too"
    );
    let bearer = "Authorization: Bearer s3cret-admin\r\n";
    assert_eq!(get(address, "/_local/requests", bearer).status, 200);
    assert_eq!(
        get_from_elsewhere(address, "/_local/requests", bearer).status,
        200
    );
    let key_as_token = format!("Authorization: Bearer {KEY}\r\n");
    assert_eq!(
        get_from_elsewhere(address, "/_local/requests", &key_as_token).status,
        403
    );
    assert_eq!(get(address, "/_local/nothing-here", bearer).status, 404);
}

fn log_lines(format: &str) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let mut command = serving(&dir.path().join("log.db"), &format!("test:{KEY}"));
    command
        .env_remove("UNISENDER_LOCAL_QUIET")
        .args(["--log-format", format])
        .stderr(std::process::Stdio::piped());
    let mut served = start(&mut command);
    let mut client = crate::support::http_client::Client::new(served.address);
    client.post_form(
        "/en/api/createList",
        &form(&[("api_key", KEY), ("title", "L")]),
    );
    client.post_form(
        "/en/api/importContacts",
        &form(&[
            ("api_key", KEY),
            ("field_names[0]", "email"),
            ("data[0][0]", "a@b.cd"),
            ("data[1][0]", "bad"),
        ]),
    );
    client.post_form("/en/api/getLists", &form(&[("api_key", "not-a-key")]));
    client.send(b"GET /_local/health HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(terminate(&mut served.child).success());
    let mut stderr = String::new();
    served
        .child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(!stderr.contains(KEY), "the log never holds a key: {stderr}");
    stderr.lines().map(str::to_string).collect()
}

#[test]
fn one_log_line_per_request_as_text_or_json() {
    let text = log_lines("text");
    assert_eq!(text.len(), 4, "{text:?}");
    assert!(text[0].contains(" createList test 200 - "), "{}", text[0]);
    assert!(
        text[1].contains(" importContacts test 200 - rows=2 "),
        "{}",
        text[1]
    );
    assert!(
        text[2].contains(" getLists - 200 invalid_api_key "),
        "{}",
        text[2]
    );
    assert!(text[3].contains(" /_local/health - 200 - "), "{}", text[3]);
    let json: Vec<Value> = log_lines("json")
        .iter()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    assert_eq!(json.len(), 4);
    assert_eq!(json[1]["method"], "importContacts");
    assert_eq!(json[1]["account"], "test");
    assert_eq!(json[1]["rows"], 2);
    assert_eq!(json[2]["code"], "invalid_api_key");
    assert!(json[0]["peer"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(json[0]["duration_ms"].as_f64().is_some());
    let quiet = binary().args(["serve", "--help"]).output().unwrap();
    assert!(String::from_utf8_lossy(&quiet.stdout).contains("--quiet"));
}

/// The value of the sample `name{labels}` in a metrics text, if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn metrics_count_calls_imports_and_the_writer_in_the_prometheus_format() {
    let server = TestServer::start();
    server.import(&["email"], &[&["m1@example.com"], &["m2@example.com"]], &[]);
    server.import(&["email"], &[&["m1@example.com"], &["not an email"]], &[]);
    server.call_as("wrong-key-0000", "getLists", &[]);
    let reply = get(server.address, "/_local/metrics", "");
    assert_eq!(reply.status, 200);
    assert!(
        reply
            .header("content-type")
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let text = String::from_utf8(reply.body).unwrap();
    let of = |series: &str| sample(&text, series).unwrap_or_else(|| panic!("{series} in\n{text}"));
    assert_eq!(
        of(r#"unisender_local_api_calls_total{method="importContacts",code="ok"}"#),
        2.0
    );
    assert_eq!(
        of(r#"unisender_local_api_calls_total{method="getLists",code="invalid_api_key"}"#),
        1.0
    );
    assert_eq!(
        of(r#"unisender_local_api_call_duration_seconds_count{method="importContacts"}"#),
        2.0
    );
    assert_eq!(
        of(
            r#"unisender_local_api_call_duration_seconds_bucket{le="+Inf",method="importContacts"}"#
        ),
        2.0
    );
    assert_eq!(
        of(r#"unisender_local_imported_contacts_total{outcome="inserted"}"#),
        2.0
    );
    assert_eq!(
        of(r#"unisender_local_imported_contacts_total{outcome="updated"}"#),
        1.0
    );
    assert_eq!(
        of(r#"unisender_local_imported_contacts_total{outcome="invalid"}"#),
        1.0
    );
    assert!(of("unisender_local_writer_transactions_total") >= 2.0);
    assert!(of("unisender_local_writer_batch_rows_count") >= 2.0);
    assert!(of("unisender_local_writer_commit_duration_seconds_count") >= 2.0);
    assert_eq!(of("unisender_local_writer_queue_depth"), 0.0);
    assert!(of("unisender_local_database_size_bytes") > 0.0);
    assert!(of("unisender_local_open_connections") >= 1.0);
    assert_eq!(of("unisender_local_journal_entries"), 3.0);
    assert!(text.contains("# TYPE unisender_local_api_calls counter"));
    assert!(text.trim_end().ends_with("# EOF"));
}

#[test]
fn the_journal_masks_keys_sent_in_the_query_or_a_gzip_body() {
    use std::io::Write as _;
    let server = TestServer::start();
    let mut client = server.client();
    client.post_form(&format!("/en/api/getLists?api_key={KEY}"), "");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(form(&[("api_key", KEY), ("title", "Zipped")]).as_bytes())
        .unwrap();
    let body = gz.finish().unwrap();
    let mut request = format!(
        "POST /en/api/createList HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(&body);
    assert_eq!(client.send(&request).status, 200);
    let all = requests(&server, "");
    let text = serde_json::to_string(&all).unwrap();
    assert!(!text.contains(KEY), "{text}");
    assert_eq!(all[0]["params"]["title"], "Zipped");
    assert_eq!(
        all[0]["answer"],
        json!({"result": {"id": 1}}),
        "the answer as sent"
    );
    assert_eq!(
        all[1]["params"]["api_key"],
        format!("…{}", &KEY[KEY.len() - 4..])
    );
}
