//! Hostile load: requests, with or without a key, that tried to take the server's memory, CPU,
//! threads or disk. Each test runs the attack against the real binary over loopback, bounded in
//! count and time, and asserts the bound that matters to a user: the server's CPU seconds and
//! memory, and a well-behaved client answered meanwhile. Figures are printed (`--nocapture`).

use crate::support::attack::{
    Probe, connect_from, one_attack_at_a_time, post_request, process_stats, send_once,
};
use crate::support::http_client::{Reply, form};
use crate::support::{KEY, TestServer, serving, start};
use serde_json::Value;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// Memory the server may take above idle under any of these attacks (the stated budget).
const MEMORY_BUDGET_MIB: f64 = 512.0;
const FORM: (&str, &str) = ("Content-Type", "application/x-www-form-urlencoded");
const ATTACKER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// `unit` repeated to `size` bytes.
fn repeated(prefix: &str, unit: &str, size: usize) -> Vec<u8> {
    let mut body = prefix.as_bytes().to_vec();
    while body.len() + unit.len() <= size {
        body.extend_from_slice(unit.as_bytes());
    }
    body
}

fn post(server: &TestServer, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    send_once(
        server.address,
        &post_request(path, headers, body),
        Duration::from_secs(120),
    )
    .expect("an answer")
}

fn code(reply: &Reply) -> String {
    reply.json()["code"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Runs `attack` with a well-behaved client calling meanwhile; asserts the client was served
/// and the server stayed within its memory budget; answers the server's CPU time spent.
fn under_attack(server: &TestServer, what: &str, attack: impl FnOnce()) -> Duration {
    let before = process_stats(server.pid());
    let probe = Probe::start(server.address, KEY);
    let started = Instant::now();
    attack();
    let elapsed = started.elapsed();
    // A short attack is followed by a moment of normal calls: the server must be well after.
    std::thread::sleep(Duration::from_millis(300).saturating_sub(elapsed));
    let report = probe.finish();
    let after = process_stats(server.pid());
    let cpu = after.cpu.saturating_sub(before.cpu);
    eprintln!(
        "{what}: {elapsed:?}, server CPU {cpu:?}, RSS {:.0} -> {:.0} MiB (peak {:.0}), threads {}",
        before.rss_mib, after.rss_mib, after.peak_rss_mib, after.threads
    );
    report.assert_served(what);
    assert!(
        after.peak_rss_mib - before.rss_mib < MEMORY_BUDGET_MIB,
        "{what}: peak RSS {:.0} MiB from {:.0} MiB",
        after.peak_rss_mib,
        before.rss_mib
    );
    cpu
}

/// Sends each request on its own connection, all at once; answers the replies in order.
fn all_at_once(address: SocketAddr, requests: Vec<Vec<u8>>) -> Vec<Reply> {
    let threads: Vec<_> = requests
        .into_iter()
        .map(|request| {
            std::thread::spawn(move || {
                send_once(address, &request, Duration::from_secs(120)).expect("an answer")
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

#[test]
fn gzip_form_bombs_cost_no_memory_without_a_key_and_stop_at_the_parameter_cap_with_one() {
    let _one = one_attack_at_a_time();
    let server = TestServer::start();
    let headers = [FORM, ("Content-Encoding", "gzip")];
    let keyless = post_request(
        "/en/api/importContacts",
        &headers,
        &gzip(&repeated("", &format!("a{}&", "[]".repeat(16)), 30 << 20)),
    );
    let keyed = post_request(
        "/en/api/importContacts",
        &headers,
        &gzip(&repeated(&format!("api_key={KEY}&"), "a[][]&", 30 << 20)),
    );
    let deep = post_request(
        "/en/api/importContacts",
        &headers,
        &gzip(&repeated(&format!("api_key={KEY}&"), "a[][][]&", 1 << 20)),
    );
    eprintln!("gzip bombs: {} bytes on the wire each", keyless.len());
    let mut replies = Vec::new();
    let cpu = under_attack(&server, "gzip form bombs", || {
        let mut requests = vec![keyless.clone(); 7];
        requests.extend(vec![keyed.clone(); 7]);
        replies = all_at_once(server.address, requests);
        // Too deep is refused at its first pair, once the budget is free again.
        replies.push(send_once(server.address, &deep, Duration::from_secs(60)).expect("an answer"));
    });
    // Each is refused for what it is, or, while the memory budget is taken by the others,
    // told to retry.
    let outcome = |reply: &Reply| (reply.status, code(reply));
    let busy = (503, "retry_later".to_string());
    let refused = |replies: &[Reply], wanted: (u16, &str)| {
        let wanted = (wanted.0, wanted.1.to_string());
        assert!(
            replies
                .iter()
                .all(|r| outcome(r) == wanted || outcome(r) == busy)
        );
        replies.iter().filter(|r| outcome(r) == wanted).count()
    };
    let keyless_refused = refused(&replies[..7], (200, "invalid_api_key"));
    let keyed_refused = refused(&replies[7..14], (413, "invalid_arg"));
    eprintln!(
        "gzip bombs: {keyless_refused}/7 keyless and {keyed_refused}/7 keyed refused outright, the rest told to retry"
    );
    assert!(keyless_refused >= 1 && keyed_refused >= 1);
    assert_eq!(refused(&replies[14..], (200, "invalid_arg")), 1);
    assert!(
        cpu < Duration::from_secs(15),
        "15 bombs took {cpu:?} of CPU"
    );
}

#[test]
fn keys_in_descending_order_decode_as_fast_as_ascending() {
    let _one = one_attack_at_a_time();
    let server = TestServer::start();
    let keys = |count: usize, descending: bool| {
        let mut body = format!("api_key={KEY}");
        let order: Box<dyn Iterator<Item = usize>> = if descending {
            Box::new((1..=count).rev())
        } else {
            Box::new(1..=count)
        };
        for n in order {
            body.push_str(&format!("&a[{n}]="));
        }
        body.into_bytes()
    };
    let mut timings = Vec::new();
    under_attack(&server, "descending keys", || {
        for descending in [false, true] {
            let started = Instant::now();
            let reply = post(
                &server,
                "/en/api/getLists",
                &[FORM],
                &keys(99_000, descending),
            );
            timings.push(started.elapsed());
            assert_eq!(reply.status, 200);
            assert!(reply.json().get("error").is_none(), "{:?}", reply.json());
        }
    });
    eprintln!(
        "99,000 keys: ascending {:?}, descending {:?}",
        timings[0], timings[1]
    );
    assert!(
        timings[1] < Duration::from_secs(3),
        "descending took {:?}",
        timings[1]
    );
    let too_many = post(&server, "/en/api/getLists", &[FORM], &keys(200_000, true));
    assert_eq!(too_many.status, 413);
}

#[test]
fn tag_lists_cost_what_eleven_tags_cost() {
    let _one = one_attack_at_a_time();
    let server = TestServer::start();
    let list = server.create_list("L").to_string();
    let names: Vec<String> = (0..20_000).map(|n| format!("t{n}")).collect();
    let mut wide_cell = String::new();
    for n in 0.. {
        let name = char::from_u32(0x4E00 + n).unwrap().to_string();
        if wide_cell.len() + name.len() + 1 > 64_000 {
            break;
        }
        wide_cell.push_str(&name);
        wide_cell.push(',');
    }
    let mut subscribe_time = Duration::ZERO;
    let mut import_time = Duration::ZERO;
    under_attack(&server, "tag lists", || {
        let started = Instant::now();
        let answer = server.call(
            "subscribe",
            &[
                ("list_ids", &list),
                ("fields[email]", "a@b.cd"),
                ("tags", &names.join(",")),
            ],
        );
        subscribe_time = started.elapsed();
        assert_eq!(answer["code"], "invalid_arg", "{answer}");

        let started = Instant::now();
        let rows: Vec<[String; 2]> = (0..100)
            .map(|n| [format!("r{n}@b.cd"), wide_cell.clone()])
            .collect();
        let rows: Vec<Vec<Option<&str>>> = rows
            .iter()
            .map(|[email, tags]| vec![Some(email.as_str()), Some(tags.as_str())])
            .collect();
        let answer = server.import_sparse(&["email", "tags"], &rows, &[]);
        import_time = started.elapsed();
        assert_eq!(answer["result"]["invalid"], 100, "{answer:.300}");
    });
    eprintln!(
        "20,000 tags in subscribe: {subscribe_time:?}; 100 rows of 64,000-byte tag cells: {import_time:?}"
    );
    assert!(subscribe_time < Duration::from_secs(1));
    assert!(import_time < Duration::from_secs(3));
    let over = "x,".repeat(40_000);
    let answer = server.call(
        "subscribe",
        &[
            ("list_ids", &list),
            ("fields[email]", "a@b.cd"),
            ("tags", &over),
        ],
    );
    assert_eq!(answer["code"], "invalid_arg");
    assert!(
        answer["error"].as_str().unwrap().contains("64 KiB"),
        "{answer}"
    );
}

#[test]
fn concatenated_bzip2_streams_are_refused_at_once() {
    let _one = one_attack_at_a_time();
    let server = TestServer::start();
    let mut one = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::best());
    one.write_all(b"a").unwrap();
    let one = one.finish().unwrap();
    let body = one.repeat(100_000);
    let mut elapsed = Duration::ZERO;
    let mut reply = None;
    under_attack(&server, "bzip2 streams", || {
        let started = Instant::now();
        reply = Some(post(
            &server,
            &format!("/en/api/getLists?request_compression=bzip2&api_key={KEY}"),
            &[FORM],
            &body,
        ));
        elapsed = started.elapsed();
    });
    let reply = reply.unwrap();
    eprintln!(
        "100,000 bzip2 streams ({} bytes): answered in {elapsed:?}",
        body.len()
    );
    assert_eq!(code(&reply), "invalid_arg", "{:?}", reply.json());
    assert!(elapsed < Duration::from_secs(1));
    // One stream, what the real clients send, still works.
    let mut single = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::best());
    single
        .write_all(format!("api_key={KEY}").as_bytes())
        .unwrap();
    let reply = post(
        &server,
        "/en/api/getLists?request_compression=bzip2",
        &[FORM],
        &single.finish().unwrap(),
    );
    assert!(reply.json().get("error").is_none(), "{:?}", reply.json());
}

/// Opens `count` connections from `source` that send the start of a request and then a byte
/// every 4 s, for `seconds`.
fn slowloris(address: SocketAddr, source: Ipv4Addr, count: usize, seconds: u64) -> usize {
    let mut sockets: Vec<TcpStream> = (0..count)
        .filter_map(|_| connect_from(source, address).ok())
        .collect();
    let opened = sockets.len();
    for socket in &mut sockets {
        socket.set_nonblocking(true).unwrap();
        let _ = socket.write(b"POST /en/api/getLists HTTP/1.1\r\nHost: x\r\n");
    }
    let until = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < until {
        std::thread::sleep(Duration::from_secs(4).min(until - Instant::now()));
        for socket in &mut sockets {
            let _ = socket.write(b"X");
        }
    }
    opened
}

#[test]
fn slowloris_cannot_starve_a_normal_client() {
    let _one = one_attack_at_a_time();
    let server = TestServer::start();
    let address = server.address;
    let cpu = under_attack(&server, "slowloris", || {
        let other_peer = std::thread::spawn(move || slowloris(address, ATTACKER, 1_100, 10));
        // Some from the normal client's own address too: its connections take the place of
        // that peer's longest-waiting ones.
        let same_peer = slowloris(address, Ipv4Addr::LOCALHOST, 300, 10);
        let opened = other_peer.join().unwrap();
        eprintln!("slowloris: {opened} + {same_peer} connections held open for 10 s");
        let stats = process_stats(server.pid());
        assert!(stats.threads < 1_100, "{} threads", stats.threads);
    });
    assert!(
        cpu < Duration::from_secs(5),
        "slowloris cost {cpu:?} of CPU"
    );
}

#[test]
fn at_the_descriptor_limit_the_server_answers_and_does_not_spin() {
    use std::os::unix::process::CommandExt;
    let _one = one_attack_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let mut command = serving(&dir.path().join("fd.db"), &format!("test:{KEY}"));
    // SAFETY: setrlimit is async-signal-safe, as pre_exec requires.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 128,
                rlim_max: 128,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut served = start(&mut command);
    let pid = served.child.id();
    let before = process_stats(pid);
    let probe = Probe::start_accepting(served.address, KEY, &[200, 503]);
    let address = served.address;
    let held: Vec<TcpStream> = (0..600)
        .filter_map(|_| connect_from(ATTACKER, address).ok())
        .collect();
    std::thread::sleep(Duration::from_secs(5));
    let report = probe.finish();
    let after = process_stats(pid);
    let cpu = after.cpu.saturating_sub(before.cpu);
    eprintln!(
        "descriptor limit 128, {} idle connections for 5 s: server CPU {cpu:?}",
        held.len()
    );
    report.assert_served("descriptor limit");
    assert!(
        cpu < Duration::from_millis(1500),
        "the accept loop spun: {cpu:?}"
    );
    drop(held);
    crate::support::terminate(&mut served.child);
}

/// A host that accepts connections and never answers.
fn black_hole() -> (SocketAddr, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    let thread = std::thread::spawn(move || {
        let mut held = Vec::new();
        let until = Instant::now() + Duration::from_secs(20);
        while Instant::now() < until {
            match listener.accept() {
                Ok((stream, _)) => held.push(stream),
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    });
    (address, thread)
}

#[test]
fn callbacks_to_a_host_that_never_answers_hold_a_few_threads() {
    let _one = one_attack_at_a_time();
    let accounts: Vec<(String, String)> = (0..10)
        .map(|n| (format!("cb{n}"), format!("callback-key-{n:04}")))
        .collect();
    let mut args = Vec::new();
    for (login, key) in &accounts {
        args.push("--account".to_string());
        args.push(format!("{login}:{key}"));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = TestServer::start_with(&args);
    let (hole, _hole_thread) = black_hole();
    let notify = format!("http://{hole}/callback");
    let idle = process_stats(server.pid());
    let mut refused = 0;
    under_attack(&server, "callbacks", || {
        for (_, key) in &accounts {
            let mut started = 0;
            loop {
                let reply = post(
                    &server,
                    "/en/api/async/exportContacts",
                    &[FORM],
                    form(&[("api_key", key), ("notify_url", &notify)]).as_bytes(),
                );
                if reply.json()["result"]["task_uuid"].is_string() {
                    started += 1;
                    continue;
                }
                assert_eq!((reply.status, code(&reply)), (503, "retry_later".into()));
                assert!(reply.header("retry-after").is_some());
                let why = reply.json()["error"].as_str().unwrap().to_string();
                if why.contains("earlier exports") {
                    // Four unfinished at once: wait for the workers.
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
                // The 21st export of a minute: the real service's limit too.
                assert!(why.contains("20 exports a minute"), "{why}");
                assert_eq!(started, 20);
                refused += 1;
                break;
            }
        }
        std::thread::sleep(Duration::from_secs(2));
    });
    let after = process_stats(server.pid());
    eprintln!(
        "200 exports calling back a black hole: threads {} -> {}, RSS {:.0} -> {:.0} MiB",
        idle.threads, after.threads, idle.rss_mib, after.rss_mib
    );
    assert_eq!(refused, 10);
    assert!(
        after.threads <= idle.threads + 8,
        "{} threads",
        after.threads
    );
}

/// Bytes of every file in the server's exports directory.
fn exports_bytes(server: &TestServer) -> u64 {
    let dir = unisender_local::exports::export_dir(&server.db);
    std::fs::read_dir(dir)
        .map(|entries| entries.flatten().map(|e| e.metadata().unwrap().len()).sum())
        .unwrap_or(0)
}

fn export_and_wait(server: &TestServer, key: &str) -> Value {
    let started = post(
        server,
        "/en/api/async/exportContacts",
        &[FORM],
        form(&[("api_key", key)]).as_bytes(),
    )
    .json();
    let uuid = started["result"]["task_uuid"]
        .as_str()
        .expect("a task")
        .to_string();
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let task = server.call_as(key, "async/getTaskResult", &[("task_uuid", &uuid)]);
        let status = task["result"]["status"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if status == "completed" || status == "failed" || Instant::now() > until {
            return task;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `count` contacts with a `Note` of `note_bytes` each, so that their export file is large.
fn import_with_notes(server: &TestServer, count: usize, note_bytes: usize) {
    server.create_field("Note");
    let note = "n".repeat(note_bytes);
    let emails: Vec<String> = (0..count).map(|n| format!("c{n}@b.cd")).collect();
    for call in emails.chunks(500) {
        let rows: Vec<Vec<Option<&str>>> = call
            .iter()
            .map(|email| vec![Some(email.as_str()), Some(note.as_str())])
            .collect();
        server.import_sparse(&["email", "Note"], &rows, &[]);
    }
}

#[test]
fn export_files_keep_to_the_quota_and_the_largest_holder_makes_room() {
    let _one = one_attack_at_a_time();
    let server = TestServer::start_with(&[
        "--account",
        &format!("test:{KEY}"),
        "--account",
        "small:small-key-0123456789",
        "--exports-quota-mb",
        "1",
    ]);
    import_with_notes(&server, 2_000, 200);
    let first = export_and_wait(&server, KEY);
    assert_eq!(first["result"]["status"], "completed", "{first}");
    for _ in 0..3 {
        export_and_wait(&server, KEY);
        assert!(
            exports_bytes(&server) <= 1 << 20,
            "{} bytes",
            exports_bytes(&server)
        );
    }
    // The oldest of the account keeping the most made room: gone, and said so.
    let uuid = first["result"]["task_uuid"].as_str().unwrap();
    let gone = server.call("async/getTaskResult", &[("task_uuid", uuid)]);
    assert_eq!(gone["code"], "invalid_arg", "{gone}");
    let small = export_and_wait(&server, "small-key-0123456789");
    assert_eq!(small["result"]["status"], "completed", "{small}");
    let latest = export_and_wait(&server, KEY);
    assert_eq!(latest["result"]["status"], "completed", "{latest}");
    let url = small["result"]["file_to_download"]
        .as_str()
        .unwrap()
        .to_string();
    let path = url.split_once("/_local/").unwrap().1;
    let download = server.raw(format!("GET /_local/{path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
    assert_eq!(download.status, 200, "the small account's file stays");
    eprintln!(
        "exports directory with a 1 MiB quota: {} bytes",
        exports_bytes(&server)
    );
    assert!(exports_bytes(&server) <= 1 << 20);
}

#[test]
fn export_file_larger_than_the_quota_fails_and_leaves_nothing() {
    let _one = one_attack_at_a_time();
    let server = TestServer::start_with(&[
        "--account",
        &format!("test:{KEY}"),
        "--exports-quota-mb",
        "1",
    ]);
    import_with_notes(&server, 1_500, 1_000);
    let task = export_and_wait(&server, KEY);
    assert_eq!(task["result"]["status"], "failed", "{task}");
    assert_eq!(exports_bytes(&server), 0);
}

#[test]
fn every_value_is_held_to_one_cell_and_times_to_years_1_to_9999() {
    let server = TestServer::start();
    let list = server.create_list("L").to_string();
    let field = server.create_field("City").to_string();
    let over = "x".repeat(64 * 1024 + 1);
    let huge = "u".repeat(8 << 20);
    let refusals = [
        (
            "subscribe",
            vec![
                ("list_ids", list.as_str()),
                ("fields[email]", "a@b.cd"),
                ("fields[City]", over.as_str()),
            ],
        ),
        (
            "subscribe",
            vec![
                ("list_ids", list.as_str()),
                ("fields[email]", "a@b.cd"),
                ("tags", over.as_str()),
            ],
        ),
        (
            "createList",
            vec![("title", "M"), ("before_subscribe_url", huge.as_str())],
        ),
        (
            "updateList",
            vec![
                ("list_id", list.as_str()),
                ("after_subscribe_url", huge.as_str()),
            ],
        ),
        (
            "createField",
            vec![
                ("name", "Other"),
                ("type", "string"),
                ("public_name", &huge[..4 << 20]),
            ],
        ),
        (
            "updateField",
            vec![
                ("id", field.as_str()),
                ("name", "City"),
                ("public_name", &huge[..4 << 20]),
            ],
        ),
    ];
    for (method, pairs) in refusals {
        let answer = server.call(method, &pairs);
        assert_eq!(answer["code"], "invalid_arg", "{method}: {answer:.200}");
        assert!(
            answer["error"].as_str().unwrap().contains("64 KiB"),
            "{method}: {answer:.200}"
        );
    }
    assert_eq!(server.contact_count(), 0);
    assert_eq!(server.ok("getLists", &[]).as_array().unwrap().len(), 1);
    let answer = server.import(
        &["email", "email_add_time"],
        &[
            &["late@b.cd", "9999-12-31T23:59:59-23:59"],
            &["fine@b.cd", "9999-12-31 23:59:59"],
        ],
        &[],
    );
    assert_eq!(answer["result"]["invalid"], 1, "{answer}");
    assert_eq!(
        answer["result"]["log"][0]["code"], "invalid_time",
        "{answer}"
    );
    let exported = server.ok("exportContacts", &[("field_names[]", "email_add_time")]);
    assert_eq!(
        exported["data"],
        serde_json::json!([["9999-12-31 23:59:59"]])
    );
}

#[test]
fn keys_compare_exactly_and_invisible_characters_make_no_address() {
    let server = TestServer::start();
    let padded = server.call_as(&format!(" {KEY}\t"), "getLists", &[]);
    assert_eq!(padded["code"], "invalid_api_key", "{padded}");
    let answer = server.import(
        &["email"],
        &[&["gnp\u{202E}moc.evil@b.cd"], &["ok@b.cd"]],
        &[],
    );
    assert_eq!(answer["result"]["invalid"], 1, "{answer}");
}

#[test]
fn download_urls_ignore_the_host_header() {
    let server = TestServer::start();
    let body = form(&[("api_key", KEY)]);
    let request = format!(
        "POST /en/api/async/exportContacts HTTP/1.1\r\nHost: evil.example\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let uuid = server.raw(request.as_bytes()).json()["result"]["task_uuid"]
        .as_str()
        .unwrap()
        .to_string();
    let until = Instant::now() + Duration::from_secs(30);
    let url = loop {
        let body = form(&[("api_key", KEY), ("task_uuid", &uuid)]);
        let request = format!(
            "POST /en/api/async/getTaskResult HTTP/1.1\r\nHost: evil.example\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let task = server.raw(request.as_bytes()).json();
        if let Some(url) = task["result"]["file_to_download"].as_str() {
            break url.to_string();
        }
        assert!(Instant::now() < until, "{task}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        url.starts_with(&format!("http://{}/_local/exports/", server.address)),
        "{url}"
    );

    let public = TestServer::start_with(&[
        "--account",
        &format!("test:{KEY}"),
        "--public-url",
        "https://contacts.test:9443/",
    ]);
    let task = export_and_wait(&public, KEY);
    let url = task["result"]["file_to_download"].as_str().unwrap();
    assert!(
        url.starts_with("https://contacts.test:9443/_local/exports/"),
        "{url}"
    );
}

#[test]
fn request_bodies_share_one_memory_budget() {
    let _one = one_attack_at_a_time();
    let server = TestServer::start();
    let body = repeated(&format!("api_key={KEY}&pad="), "p", 32 << 20);
    let request = post_request("/en/api/getLists", &[FORM], &body);
    let mut replies = Vec::new();
    under_attack(&server, "twenty 32 MiB bodies", || {
        replies = all_at_once(server.address, vec![request.clone(); 20]);
    });
    let busy = replies.iter().filter(|r| r.status == 503).count();
    let served = replies.iter().filter(|r| r.status == 200).count();
    eprintln!("twenty 32 MiB bodies at once: {served} served, {busy} told to retry");
    assert_eq!(busy + served, 20);
    assert!(served >= 1);
    for reply in replies.iter().filter(|r| r.status == 503) {
        assert_eq!(code(reply), "retry_later");
    }
}
