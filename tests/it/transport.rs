//! §1 and §2: paths, verbs, every place and encoding parameters arrive in, sizes, the envelope.

use crate::support::http_client::{Client, form};
use crate::support::{KEY, TestServer};
use serde_json::json;
use std::io::Write;

fn post(path: &str, content_type: &str, extra_headers: &str, body: &[u8]) -> Vec<u8> {
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: {content_type}\r\n{extra_headers}Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    request
}

const FORM: &str = "application/x-www-form-urlencoded";

#[test]
fn health_needs_no_key() {
    let server = TestServer::start();
    let reply = server.raw(b"GET /_local/health HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json(), json!({"status": "ok"}));
}

#[test]
fn every_language_prefix_is_served_and_others_are_404() {
    let server = TestServer::start();
    for lang in ["en", "ru", "ua", "it"] {
        let reply = server.raw(
            format!("GET /{lang}/api/getLists?format=json&api_key={KEY} HTTP/1.1\r\n\r\n")
                .as_bytes(),
        );
        assert_eq!(reply.status, 200, "{lang}");
        assert_eq!(reply.json(), json!({"result": []}));
        assert_eq!(
            reply.header("content-type"),
            Some("application/json; charset=utf-8")
        );
    }
    for path in [
        "/de/api/getLists",
        "/en/getLists",
        "/",
        "/en/api/",
        "/en/api/a/b",
        "/favicon.ico",
    ] {
        let reply = server.raw(format!("GET {path} HTTP/1.1\r\n\r\n").as_bytes());
        assert_eq!(reply.status, 404, "{path}");
        assert_eq!(reply.json()["code"], "unknown_method", "{path}");
    }
}

#[test]
fn unknown_methods_and_case_sensitivity() {
    let server = TestServer::start();
    for method in ["noSuchMethod", "importcontacts", "GetLists"] {
        let answer = server.call(method, &[]);
        assert_eq!(answer["code"], "unknown_method", "{method}");
        assert!(answer["error"].as_str().unwrap().contains(method));
    }
}

#[test]
fn verbs_other_than_get_and_post_get_405() {
    let server = TestServer::start();
    // HEAD is answered without a body: `operating::health_answers_head_...` reads it.
    for verb in ["PUT", "DELETE", "PATCH", "OPTIONS"] {
        let reply = server.raw(
            format!("{verb} /en/api/getLists?api_key={KEY} HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
                .as_bytes(),
        );
        assert_eq!(reply.status, 405, "{verb}");
        assert_eq!(reply.header("allow"), Some("GET, POST"));
        assert_eq!(reply.json()["code"], "unknown_method");
    }
}

#[test]
fn query_and_body_are_merged_and_the_body_wins() {
    let server = TestServer::start();
    // The key only in the query, the title only in the body.
    let reply = server.raw(&post(
        &format!("/en/api/createList?format=json&api_key={KEY}"),
        FORM,
        "",
        b"title=A",
    ));
    assert_eq!(reply.json()["result"]["id"], 1);
    // A wrong key in the query is overridden by the right one in the body.
    let reply = server.raw(&post(
        "/en/api/createList?api_key=wrong",
        FORM,
        "",
        format!("api_key={KEY}&title=B").as_bytes(),
    ));
    assert!(reply.json()["result"]["id"].is_number());
    // And the other way round: the body's wrong key wins.
    let reply = server.raw(&post(
        &format!("/en/api/getLists?api_key={KEY}"),
        FORM,
        "",
        b"api_key=wrong",
    ));
    assert_eq!(reply.json()["code"], "invalid_api_key");
}

#[test]
fn get_with_everything_in_the_query_string() {
    let server = TestServer::start();
    let query = form(&[
        ("api_key", KEY),
        ("field_names[0]", "email"),
        ("data[0][0]", "q@example.com"),
    ]);
    let reply = server
        .raw(format!("GET /en/api/importContacts?format=json&{query} HTTP/1.1\r\n\r\n").as_bytes());
    assert_eq!(reply.json()["result"]["inserted"], 1);
    // A POST with a long query string and an empty body, as one client sends.
    let rows: String = (0..300)
        .map(|i| format!("&data%5B{i}%5D%5B0%5D=user{i}%40example.com"))
        .collect();
    let reply = server.raw(&post(
        &format!("/en/api/importContacts?api_key={KEY}&field_names%5B0%5D=email{rows}"),
        FORM,
        "",
        b"",
    ));
    assert_eq!(reply.json()["result"]["inserted"], 300);
}

#[test]
fn raw_and_encoded_brackets_plus_as_space_and_bare_keys() {
    let server = TestServer::start();
    let body = format!(
        "api_key={KEY}&field_names[0]=email&field_names%5B1%5D=phone&data[0][0]=a%40example.com&data%5B0%5D%5B1%5D=%2B7+916+000+00+01&test_mode"
    );
    let reply = server.raw(&post("/en/api/importContacts", FORM, "", body.as_bytes()));
    assert_eq!(reply.json()["result"]["inserted"], 1, "{}", reply.json());
    let contact = server.contact("a@example.com").expect("stored");
    assert_eq!(contact["phone"], "+79160000001");
    let reply = server.raw(&post(
        "/en/api/createList",
        "application/x-www-form-urlencoded; charset=UTF-8",
        "",
        format!("api_key={KEY}&title=My+big%20list").as_bytes(),
    ));
    assert!(reply.json()["result"]["id"].is_number());
    assert_eq!(server.ok("getLists", &[])[0]["title"], "My big list");
}

#[test]
fn appended_brackets_out_of_order_indexes_and_gaps() {
    let server = TestServer::start();
    let city = server.create_field("City");
    assert!(city > 0);
    // field_names[] appends; data[10] arrives before data[2]; row 2 skips its middle cell.
    let body = format!(
        "api_key={KEY}&field_names[]=email&field_names[]=City&field_names[]=tags\
         &data[10][0]=ten%40example.com&data[10][1]=Ten&data[10][2]=x\
         &data[2][0]=two%40example.com&data[2][2]=y\
         &data[10][0]=ten%40example.com"
    );
    let answer = server
        .raw(&post("/en/api/importContacts", FORM, "", body.as_bytes()))
        .json();
    assert_eq!(answer["result"]["total"], 2);
    assert_eq!(answer["result"]["inserted"], 2);
    let two = server.contact("two@example.com").unwrap();
    let ten = server.contact("ten@example.com").unwrap();
    assert!(
        two["id"].as_i64() < ten["id"].as_i64(),
        "rows are applied in index order"
    );
    assert_eq!(two["fields"], json!({}));
    assert_eq!(ten["fields"], json!({"City": "Ten"}));
    // Log indexes are the rows' own indexes.
    let answer = server.import(
        &["email"],
        &[],
        &[("data[7][0]", "bad"), ("data[3][0]", "also bad")],
    );
    let log = answer["result"]["log"].as_array().unwrap().clone();
    assert_eq!(
        log.iter()
            .map(|e| e["index"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        vec![3, 7]
    );
}

#[test]
fn gzip_and_bzip2_bodies() {
    let server = TestServer::start();
    let body = form(&[
        ("api_key", KEY),
        ("field_names[0]", "email"),
        ("data[0][0]", "gz@example.com"),
    ]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(body.as_bytes()).unwrap();
    let reply = server.raw(&post(
        "/en/api/importContacts",
        FORM,
        "Content-Encoding: gzip\r\n",
        &gz.finish().unwrap(),
    ));
    assert_eq!(reply.json()["result"]["inserted"], 1, "{}", reply.json());

    let body = form(&[
        ("api_key", KEY),
        ("field_names[0]", "email"),
        ("data[0][0]", "bz@example.com"),
    ]);
    let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
    bz.write_all(body.as_bytes()).unwrap();
    let reply = server.raw(&post(
        "/en/api/importContacts?format=json&request_compression=bzip2",
        FORM,
        "",
        &bz.finish().unwrap(),
    ));
    assert_eq!(reply.json()["result"]["inserted"], 1, "{}", reply.json());
    assert!(
        server.contact("bz@example.com").is_some() && server.contact("gz@example.com").is_some()
    );

    // A body that claims compression but is not compressed is an argument error, not a crash.
    let reply = server.raw(&post(
        "/en/api/importContacts?request_compression=bzip2",
        FORM,
        "",
        b"api_key=x",
    ));
    assert_eq!(
        (reply.status, reply.json()["code"].clone()),
        (200, json!("invalid_arg"))
    );
    let reply = server.raw(&post(
        "/en/api/getLists",
        FORM,
        "Content-Encoding: gzip\r\n",
        b"not gzip",
    ));
    assert_eq!(reply.json()["code"], "invalid_arg");
    let reply = server.raw(&post(
        "/en/api/getLists",
        FORM,
        "Content-Encoding: br\r\n",
        b"x",
    ));
    assert_eq!(reply.json()["code"], "invalid_arg");
}

#[test]
fn multipart_bodies() {
    let server = TestServer::start();
    let mut body = Vec::new();
    for (name, value) in [
        ("api_key", KEY),
        ("field_names[0]", "email"),
        ("field_names[1]", "tags"),
        ("data[0][0]", "mp@example.com"),
        ("data[0][1]", "a, b"),
    ] {
        write!(
            body,
            "--BOUNDARY42\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
        )
        .unwrap();
    }
    body.extend_from_slice(b"--BOUNDARY42--\r\n");
    let reply = server.raw(&post(
        "/en/api/importContacts?format=json",
        "multipart/form-data; boundary=BOUNDARY42",
        "",
        &body,
    ));
    assert_eq!(reply.json()["result"]["inserted"], 1, "{}", reply.json());
    assert_eq!(
        server.contact("mp@example.com").unwrap()["tags"],
        json!(["a", "b"])
    );
}

#[test]
fn a_junk_json_body_is_ignored() {
    let server = TestServer::start();
    let reply = server.raw(&post(
        &format!("/en/api/getLists?api_key={KEY}"),
        "application/json",
        "",
        b"{\"junk\": [1,2",
    ));
    assert_eq!(reply.json(), json!({"result": []}));
}

#[test]
fn stray_and_legacy_keys_are_ignored() {
    let server = TestServer::start();
    let answer = server.import(
        &["email"],
        &[&["s@example.com"]],
        &[
            ("format", "json"),
            ("platform", "x"),
            ("lang", "ru"),
            ("double_optin", "1"),
            ("force_import", "1"),
            ("whatever[0][x]", "y"),
            ("request_ip", "1.2.3.4"),
        ],
    );
    assert_eq!(answer["result"]["inserted"], 1, "{answer}");
}

#[test]
fn invalid_utf8_is_an_argument_error_and_changes_nothing() {
    let server = TestServer::start();
    for body in [
        format!("api_key={KEY}&field_names[0]=email&data[0][0]=a%FF%FE%40example.com"),
        format!("api_key={KEY}&field_names[0]=email&data[0][0]=a%40example.com&%C0%AF=1"),
    ] {
        let reply = server.raw(&post("/en/api/importContacts", FORM, "", body.as_bytes()));
        assert_eq!(reply.status, 200);
        assert_eq!(reply.json()["code"], "invalid_arg");
        assert!(reply.json()["error"].as_str().unwrap().contains("UTF-8"));
    }
    // Raw (not percent-encoded) invalid bytes too.
    let mut body = format!("api_key={KEY}&field_names[0]=email&data[0][0]=").into_bytes();
    body.extend_from_slice(&[0xC3, 0x28, b'@', b'x', b'.', b'y']);
    assert_eq!(
        server
            .raw(&post("/en/api/importContacts", FORM, "", &body))
            .json()["code"],
        "invalid_arg"
    );
    assert_eq!(server.contact_count(), 0);
}

#[test]
fn flags_in_every_spelling() {
    let server = TestServer::start();
    let spellings = [
        ("1", true),
        ("true", true),
        ("True", true),
        ("0", false),
        ("false", false),
        ("False", false),
        ("", false),
    ];
    for (i, (value, dry)) in spellings.into_iter().enumerate() {
        let email = format!("flag{i}@example.com");
        let answer = server.import(&["email"], &[&[&email]], &[("test_mode", value)]);
        assert_eq!(answer["result"]["inserted"], 1, "{value}: {answer}");
        assert_eq!(server.contact(&email).is_none(), dry, "test_mode={value:?}");
    }
    let answer = server.import(&["email"], &[&["x@example.com"]], &[("test_mode", "yes")]);
    assert_eq!(answer["code"], "invalid_arg");
    assert!(answer["error"].as_str().unwrap().contains("test_mode"));
}

#[test]
fn keep_alive_and_chunked_bodies() {
    let server = TestServer::start();
    let mut client = Client::new(server.address);
    for _ in 0..3 {
        let reply =
            client.send(format!("GET /en/api/getLists?api_key={KEY} HTTP/1.1\r\n\r\n").as_bytes());
        assert_eq!(reply.header("connection"), Some("keep-alive"));
    }
    let body = format!("api_key={KEY}&title=Chunked");
    let (a, b) = body.split_at(7);
    let request = format!(
        "POST /en/api/createList HTTP/1.1\r\nContent-Type: {FORM}\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
        a.len(),
        b.len()
    );
    assert!(client.send(request.as_bytes()).json()["result"]["id"].is_number());
    let reply = client.send(b"GET /_local/health HTTP/1.0\r\n\r\n");
    assert_eq!(reply.header("connection"), Some("close"));
}

#[test]
fn oversized_heads_and_bodies_get_413_in_the_envelope() {
    let server = TestServer::start();
    // A body announced larger than 32 MiB is refused before it is read.
    let reply = server.raw(
        format!(
            "POST /en/api/getLists HTTP/1.1\r\nContent-Type: {FORM}\r\nContent-Length: {}\r\n\r\n",
            33 * 1024 * 1024
        )
        .as_bytes(),
    );
    assert_eq!(reply.status, 413);
    assert_eq!(reply.json()["code"], "invalid_arg");
    // A head over 1 MiB.
    let long = "a".repeat(1024 * 1024 + 10);
    let reply = server.raw(format!("GET /en/api/getLists?x={long} HTTP/1.1\r\n\r\n").as_bytes());
    assert_eq!(reply.status, 413);
    // A gzip body that inflates past the limit.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![b'a'; 1024 * 1024];
    for _ in 0..33 {
        gz.write_all(&zeros).unwrap();
    }
    let reply = server.raw(&post(
        "/en/api/getLists",
        FORM,
        "Content-Encoding: gzip\r\n",
        &gz.finish().unwrap(),
    ));
    assert_eq!(reply.status, 413);
    // A query of close to 1 MiB is still fine, and so is the server.
    let fine = "b".repeat(900 * 1024);
    let reply = server
        .raw(format!("GET /en/api/getLists?api_key={KEY}&x={fine} HTTP/1.1\r\n\r\n").as_bytes());
    assert_eq!(reply.json(), json!({"result": []}));
}

#[test]
fn malformed_http_is_refused_in_the_envelope() {
    let server = TestServer::start();
    for request in [
        &b"NOT HTTP AT ALL\r\n\r\n"[..],
        b"GET /x HTTP/1.1\r\nContent-Length: nope\r\n\r\n",
        b"POST /en/api/getLists HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    ] {
        let reply = server.raw(request);
        assert_eq!(reply.status, 400, "{}", String::from_utf8_lossy(request));
        assert!(reply.json()["code"].is_string());
    }
    // The server still answers.
    assert_eq!(
        server.raw(b"GET /_local/health HTTP/1.1\r\n\r\n").status,
        200
    );
}

#[test]
fn a_stalled_client_blocks_nobody_and_is_cut_off() {
    use std::io::Read;
    use std::time::Duration;
    let server =
        TestServer::start_with(&["--account", &format!("test:{KEY}"), "--read-timeout", "2"]);
    let mut stalled: Vec<std::net::TcpStream> = (0..20)
        .map(|i| {
            let mut s = std::net::TcpStream::connect(server.address).unwrap();
            // Half a head, or a head promising a body that never comes.
            let partial: &[u8] = if i % 2 == 0 {
                b"POST /en/api/getLists HTTP/1.1\r\nHost: x"
            } else {
                b"POST /en/api/getLists HTTP/1.1\r\nContent-Length: 100\r\n\r\nab"
            };
            s.write_all(partial).unwrap();
            s
        })
        .collect();
    let reply =
        server.raw(format!("GET /en/api/getLists?api_key={KEY} HTTP/1.1\r\n\r\n").as_bytes());
    assert_eq!(reply.json(), json!({"result": []}));
    // The normal client was answered while the stalled ones were still held open.
    stalled[0].set_nonblocking(true).unwrap();
    let mut probe = [0u8; 1];
    let still_open =
        matches!(stalled[0].read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
    assert!(
        still_open,
        "the stalled connection was closed before the normal client was answered"
    );
    stalled[0].set_nonblocking(false).unwrap();
    // Then the read timeout closes each of them, without an answer.
    for s in &mut stalled {
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut rest = Vec::new();
        s.read_to_end(&mut rest)
            .expect("the server closes the stalled connection");
        assert!(
            rest.is_empty(),
            "a stalled request gets no answer, just a close"
        );
    }
}
