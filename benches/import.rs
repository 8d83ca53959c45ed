//! importContacts throughput, every variant beside its baseline in one run (the machine is shared
//! and noisy: only ratios from one run count). Standard row shape: email, phone, two user fields,
//! two lists with subscribe times, two tags. Prints JSON lines `{"name", "value", "unit"}`.
//!
//! `cargo bench --bench import -- [--quick] [--calls N] [--stored N] [--storage-only] [--latency-only]
//! [--control-only] [--floor-only] [--http-only]`
//!
//! - validation of N rows on one thread versus rayon (to pick the threshold);
//! - storage alone: the writer applying pre-validated 500-row calls, fresh and updates;
//! - the whole HTTP path with 4 concurrent clients, fresh and updates, as a ratio to storage;
//! - group commit versus one transaction per call, 16 clients over HTTP, both durable;
//! - the latency of one 500-row call alone, p50 and p99;
//! - throughput with `--stored` contacts already stored versus an empty database;
//! - peak resident memory of the real binary with 16 clients importing;
//! - database bytes per contact versus the raw bytes of the rows.

#[path = "../tests/support/http_client.rs"]
mod http_client;
#[path = "../tests/support/served.rs"]
mod served;

use http_client::{Client, encode};
use std::time::{Duration, Instant};
use unisender_local::http::wire::Limits;
use unisender_local::import_plan::{
    Columns, FieldName, ImportFlags, ImportPlan, PARALLEL_THRESHOLD, plan_rows,
};
use unisender_local::params::{Key, Param};
use unisender_local::server::{ServeConfig, Server};
use unisender_local::store::db::{self, Durability};
use unisender_local::store::writer::{BATCH_ROWS, Command, WriterOptions};

const KEY: &str = "bench-key-0123456789";
const ROWS: usize = 500;
const COLUMNS: [&str; 7] = [
    "email",
    "phone",
    "City",
    "Score",
    "email_list_ids",
    "email_subscribe_times",
    "tags",
];

struct Options {
    quick: bool,
    /// Only the storage-alone rows: for profiling the writer.
    storage_only: bool,
    /// Only the single-call latency rows: for profiling one call end to end.
    latency_only: bool,
    /// Only the journal-and-metrics pair.
    control_only: bool,
    /// Only the storage floor against the HTTP path.
    floor_only: bool,
    /// Only the HTTP path, fresh then updates, once: for profiling the whole server.
    http_only: bool,
    calls: usize,
    stored: usize,
}

fn options() -> Options {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
    };
    let floor_only = args.iter().any(|a| a == "--floor-only");
    // The floor is compared at steady state: 200,000 contacts a phase. A run of the HTTP path
    // also holds its start (connections, the first calls decoded while the writer waits, the
    // last answers), which weighs on short runs: 25 calls ran at about four fifths of the speed
    // per contact of 100 or more.
    let default_calls = match (quick, floor_only) {
        (true, _) => 20,
        (false, true) => 400,
        (false, false) => 100,
    };
    Options {
        quick,
        storage_only: args.iter().any(|a| a == "--storage-only"),
        latency_only: args.iter().any(|a| a == "--latency-only"),
        control_only: args.iter().any(|a| a == "--control-only"),
        floor_only,
        http_only: args.iter().any(|a| a == "--http-only"),
        calls: value("--calls").unwrap_or(default_calls),
        stored: value("--stored").unwrap_or(if quick { 500_000 } else { 10_000_000 }),
    }
}

fn report(name: &str, value: f64, unit: &str) {
    let value = (value * 1000.0).round() / 1000.0;
    println!(
        "{}",
        serde_json::json!({"name": name, "value": value, "unit": unit})
    );
}

/// A server on a fresh database with the bench account, two lists and two fields.
struct Bench {
    server: Server,
    _dir: tempfile::TempDir,
    lists: (i64, i64),
    account_id: i64,
    fields: Vec<FieldName>,
}

impl Bench {
    fn start(durability: Durability, batch_rows: usize) -> Bench {
        Bench::start_observed(durability, batch_rows, 0, false)
    }

    /// A server whose request journal keeps `journal` calls (the binary's default is 1000),
    /// counting calls for `/_local/metrics` or not (the binary always does).
    fn start_observed(
        durability: Durability,
        batch_rows: usize,
        journal: usize,
        metrics: bool,
    ) -> Bench {
        let dir = tempfile::tempdir().expect("a temp dir");
        let server = Server::start(ServeConfig {
            db: dir.path().join("bench.db"),
            listen: "127.0.0.1:0".into(),
            accounts: vec![("bench".into(), KEY.into())],
            durability,
            limits: Limits::default(),
            writer: WriterOptions {
                batch_rows,
                ..WriterOptions::default()
            },
            max_pages: None,
            public_url: None,
            exports: Default::default(),
            seed: Vec::new(),
            control: unisender_local::app::ControlOptions {
                journal,
                metrics,
                ..unisender_local::app::ControlOptions::quiet()
            },
        })
        .expect("the server starts");
        let mut client = Client::new(server.address());
        let mut create = |method: &str, form: &str| {
            let answer = client.post_form(
                &format!("/en/api/{method}"),
                &format!("api_key={KEY}&{form}"),
            );
            answer.json()["result"]["id"].as_i64().expect("created")
        };
        let lists = (
            create("createList", "title=One"),
            create("createList", "title=Two"),
        );
        create("createField", "name=City&type=string");
        create("createField", "name=Score&type=number");
        let store = server.store();
        let account_id = store
            .read(|conn| db::account_by_key(conn, KEY))
            .expect("reads")
            .expect("the bench account")
            .id;
        let fields = store
            .read(|conn| db::field_names(conn, account_id))
            .expect("reads");
        Bench {
            server,
            _dir: dir,
            lists,
            account_id,
            fields,
        }
    }

    fn db_path(&self) -> std::path::PathBuf {
        self._dir.path().join("bench.db")
    }

    fn cells(&self, call: usize, round: usize) -> Vec<Vec<String>> {
        cells(self.lists, call, round)
    }

    fn body(&self, call: usize, round: usize) -> String {
        body(self.lists, call, round)
    }

    /// A call checked as the HTTP path checks it, ready for the writer.
    fn plan(&self, call: usize, round: usize) -> ImportPlan {
        let cells = self.cells(call, round);
        let columns = columns(&self.fields);
        let rows: Vec<(u64, Vec<Option<&str>>)> = cells
            .iter()
            .enumerate()
            .map(|(i, row)| (i as u64, row.iter().map(|c| Some(c.as_str())).collect()))
            .collect();
        let now = unisender_local::model::Timestamp::now();
        ImportPlan {
            account_id: self.account_id,
            flags: ImportFlags::default(),
            now,
            field_ids: columns.field_ids(),
            rows: plan_rows(&columns, &rows, true, now),
        }
    }

    /// The writer alone applying `plans` sent by `threads` threads: contacts per second.
    fn storage(&self, calls: std::ops::Range<usize>, round: usize, threads: usize) -> f64 {
        let plans: Vec<ImportPlan> = calls.clone().map(|c| self.plan(c, round)).collect();
        let mut queues: Vec<Vec<ImportPlan>> = (0..threads).map(|_| Vec::new()).collect();
        for (i, plan) in plans.into_iter().enumerate() {
            queues[i % threads].push(plan);
        }
        let started = Instant::now();
        std::thread::scope(|scope| {
            for queue in queues {
                let store = self.server.store();
                scope.spawn(move || {
                    for plan in queue {
                        // Held here as the HTTP path holds it, so that it is freed here.
                        let plan = std::sync::Arc::new(plan);
                        let outcome = store
                            .writer()
                            .submit(|reply| Command::Import(plan.clone(), reply))
                            .expect("the import applies");
                        assert_eq!(
                            outcome.inserted + outcome.updated,
                            ROWS,
                            "{:?}",
                            outcome.log.first()
                        );
                    }
                });
            }
        });
        (calls.len() * ROWS) as f64 / started.elapsed().as_secs_f64()
    }

    /// `calls` calls of 10 fresh rows each over `clients` connections: contacts per second.
    fn http_small(&self, calls: usize, clients: usize) -> f64 {
        let bodies: Vec<String> = (0..calls)
            .map(|c| {
                let mut body = format!("api_key={KEY}&field_names[0]=email&field_names[1]=tags");
                for row in 0..10 {
                    body.push_str(&format!(
                        "&data[{row}][0]=small{c}-{row}%40example.com&data[{row}][1]=t"
                    ));
                }
                body
            })
            .collect();
        let started = Instant::now();
        std::thread::scope(|scope| {
            for client in 0..clients {
                let (address, bodies) = (self.server.address(), &bodies);
                scope.spawn(move || {
                    let mut http = Client::new(address);
                    for body in bodies.iter().skip(client).step_by(clients) {
                        let answer = http.post_form("/en/api/importContacts", body).json();
                        assert_eq!(answer["result"]["inserted"], 10, "{answer:.200}");
                    }
                });
            }
        });
        (calls * 10) as f64 / started.elapsed().as_secs_f64()
    }

    /// The whole HTTP path with `clients` connections: contacts per second.
    fn http(&self, calls: std::ops::Range<usize>, round: usize, clients: usize) -> f64 {
        let bodies: Vec<String> = calls.clone().map(|c| self.body(c, round)).collect();
        let started = Instant::now();
        send_all(self.server.address(), &bodies, clients);
        (calls.len() * ROWS) as f64 / started.elapsed().as_secs_f64()
    }
}

/// The cells of one call for lists with these ids; `round` changes the values, not the addresses.
fn cells(lists: (i64, i64), call: usize, round: usize) -> Vec<Vec<String>> {
    (0..ROWS)
        .map(|row| {
            let n = call * ROWS + row;
            vec![
                format!("user{n}@example.com"),
                format!("+1{n:010}"),
                format!("City {}", (n + round) % 97),
                format!("{}", n * 7 + round),
                format!("{},{}", lists.0, lists.1),
                "2024-01-02 03:04:05,2024-02-03 04:05:06".to_string(),
                format!("tag{},group{}", (n + round) % 5, n % 3),
            ]
        })
        .collect()
}

/// The urlencoded body of one call.
fn body(lists: (i64, i64), call: usize, round: usize) -> String {
    let mut body = format!("api_key={KEY}");
    for (i, column) in COLUMNS.iter().enumerate() {
        body.push_str(&format!("&field_names%5B{i}%5D={column}"));
    }
    for (row, cells) in cells(lists, call, round).iter().enumerate() {
        for (col, cell) in cells.iter().enumerate() {
            body.push_str(&format!("&data%5B{row}%5D%5B{col}%5D={}", encode(cell)));
        }
    }
    body
}

fn columns(fields: &[FieldName]) -> Columns {
    let names = COLUMNS
        .iter()
        .enumerate()
        .map(|(i, c)| (Key::Index(i as u64), Param::Value(c.to_string())))
        .collect();
    Columns::parse(&Param::Array(names), fields).expect("the bench columns")
}

/// Sends every body over `clients` kept-alive connections, checking each answer.
fn send_all(address: std::net::SocketAddr, bodies: &[String], clients: usize) {
    std::thread::scope(|scope| {
        for client in 0..clients {
            scope.spawn(move || {
                let mut http = Client::new(address);
                for body in bodies.iter().skip(client).step_by(clients) {
                    let answer = http.post_form("/en/api/importContacts", body).json();
                    let result = &answer["result"];
                    let applied = result["inserted"].as_u64().unwrap_or(0)
                        + result["updated"].as_u64().unwrap_or(0);
                    assert_eq!(applied, ROWS as u64, "every row applied: {answer:.300}");
                }
            });
        }
    });
}

/// One thread versus rayon for calls of several sizes, in microseconds per call.
fn validation(bench: &Bench) {
    let columns = columns(&bench.fields);
    let cells = bench.cells(0, 0);
    let now = unisender_local::model::Timestamp::now();
    for size in [8, 16, 32, 64, 128, 500] {
        let rows: Vec<(u64, Vec<Option<&str>>)> = cells[..size]
            .iter()
            .enumerate()
            .map(|(i, row)| (i as u64, row.iter().map(|c| Some(c.as_str())).collect()))
            .collect();
        let rounds = 20_000 / size;
        for (variant, parallel) in [("sequential", false), ("rayon", true)] {
            let started = Instant::now();
            for _ in 0..rounds {
                std::hint::black_box(plan_rows(&columns, &rows, parallel, now));
            }
            let micros = started.elapsed().as_secs_f64() * 1e6 / rounds as f64;
            report(
                &format!("validate_{size}_rows_{variant}"),
                micros,
                "us/call",
            );
        }
    }
    report(
        "validate_parallel_threshold",
        PARALLEL_THRESHOLD as f64,
        "rows",
    );
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[at].as_secs_f64() * 1000.0
}

/// One client alone, one call at a time: the latency of a fresh 500-row call.
fn latency(bench: &Bench, calls: std::ops::Range<usize>) {
    let bodies: Vec<String> = calls.map(|c| bench.body(c, 0)).collect();
    let mut http = Client::new(bench.server.address());
    let mut times: Vec<Duration> = bodies
        .iter()
        .map(|body| {
            let started = Instant::now();
            let answer = http.post_form("/en/api/importContacts", body).json();
            let elapsed = started.elapsed();
            assert_eq!(answer["result"]["inserted"], ROWS, "{answer:.200}");
            elapsed
        })
        .collect();
    times.sort();
    report("latency_500_rows_p50", percentile(&times, 0.5), "ms");
    report("latency_500_rows_p99", percentile(&times, 0.99), "ms");
}

/// Peak resident memory of the real binary while 16 clients import.
fn peak_memory(calls: usize) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let served = served::start(&mut served::serving(
        &dir.path().join("rss.db"),
        &format!("bench:{KEY}"),
    ));
    let (mut child, address) = (served.child, served.address);
    let mut client = Client::new(address);
    for form in ["title=One", "title=Two"] {
        client.post_form("/en/api/createList", &format!("api_key={KEY}&{form}"));
    }
    for form in ["name=City&type=string", "name=Score&type=number"] {
        client.post_form("/en/api/createField", &format!("api_key={KEY}&{form}"));
    }
    // A fresh database: the two lists just made are ids 1 and 2.
    let bodies: Vec<String> = (0..calls).map(|c| body((1, 2), c, 0)).collect();
    send_all(address, &bodies, 16);
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap_or_default();
    let peak_kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(f64::NAN);
    report("peak_rss_16_clients", peak_kib / 1024.0, "MiB");
    let _ = child.kill();
    let _ = child.wait();
}

/// Database bytes per contact (after a checkpoint) against the raw bytes of the rows.
fn size(bench: &Bench, contacts: usize) {
    let path = bench.db_path();
    let conn = rusqlite::Connection::open(&path).expect("opens the db");
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .expect("checkpoints");
    let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0) as f64;
    let raw: usize = bench
        .cells(0, 0)
        .iter()
        .map(|row| row.iter().map(String::len).sum::<usize>())
        .sum();
    let raw_per_contact = raw as f64 / ROWS as f64;
    report("db_bytes_per_contact", bytes / contacts as f64, "bytes");
    report("raw_bytes_per_contact", raw_per_contact, "bytes");
    report(
        "db_size_vs_raw",
        bytes / contacts as f64 / raw_per_contact,
        "ratio",
    );
}

/// The time of one small durable commit (WAL, synchronous=FULL) on this disk, in milliseconds.
fn durable_commit_ms() -> f64 {
    let dir = tempfile::tempdir().expect("a temp dir");
    let conn = rusqlite::Connection::open(dir.path().join("commit.db")).expect("opens");
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; CREATE TABLE t (x INTEGER);",
    )
    .expect("sets up");
    let commits = 200;
    let started = Instant::now();
    for i in 0..commits {
        conn.execute("INSERT INTO t VALUES (?1)", [i])
            .expect("commits");
    }
    started.elapsed().as_secs_f64() * 1000.0 / commits as f64
}

/// Interleaved rounds of each side-by-side pair.
const ROUNDS: usize = 5;

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

/// Reports a baseline and a variant measured in interleaved rounds: each one's median, and the
/// median of the per-round ratios (variant / baseline).
fn report_pair(baseline: (&str, &[f64]), variant: (&str, &[f64]), ratio_name: &str) {
    report(baseline.0, median(baseline.1), "contacts/s");
    report(variant.0, median(variant.1), "contacts/s");
    report_ratio(baseline.1, variant.1, ratio_name);
}

/// The median of each round's `variant / baseline`.
fn report_ratio(baseline: &[f64], variant: &[f64], ratio_name: &str) {
    let ratios: Vec<f64> = baseline
        .iter()
        .zip(variant)
        .map(|(base, variant)| variant / base)
        .collect();
    report(ratio_name, median(&ratios), "ratio");
}

/// The contact columns in the order the floor writes them.
const ROW_COLUMNS: &str = "account_id, email, email_status, email_availability, email_add_time,
    email_request_ip, email_confirm_time, email_confirm_ip, phone, phone_status,
    phone_availability, phone_add_time, phone_request_ip, memberships, tag_ids, field_values";

/// The rows an import left, exactly as stored: what the floor inserts.
fn stored_rows(path: &std::path::Path) -> Vec<Vec<rusqlite::types::Value>> {
    let conn = rusqlite::Connection::open(path).expect("opens the db");
    let mut statement = conn
        .prepare(&format!("SELECT {ROW_COLUMNS} FROM contacts ORDER BY id"))
        .unwrap();
    statement
        .query_map([], |row| {
            (0..16)
                .map(|i| row.get::<_, rusqlite::types::Value>(i))
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// The storage floor: a bare rusqlite loop writing already-encoded rows into the same schema,
/// durable, 500 rows a transaction, with prepared statements. Fresh rows are inserted; updates
/// write each row back whole, as the import wrote it in its update pass. Contacts per second.
fn floor_run(
    fresh: &[Vec<rusqlite::types::Value>],
    updated: &[Vec<rusqlite::types::Value>],
) -> (f64, f64) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let conn = rusqlite::Connection::open(dir.path().join("floor.db")).unwrap();
    conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;")
        .unwrap();
    conn.execute_batch(include_str!("../schema.sql")).unwrap();
    conn.execute(
        "INSERT INTO accounts (id, login, api_key) VALUES (1, 'floor', 'k')",
        [],
    )
    .unwrap();
    let placeholders = (1..=16)
        .map(|i| format!("?{i}"))
        .collect::<Vec<_>>()
        .join(", ");
    let started = Instant::now();
    for chunk in fresh.chunks(ROWS) {
        conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        let mut insert = conn
            .prepare_cached(&format!(
                "INSERT INTO contacts ({ROW_COLUMNS}) VALUES ({placeholders})"
            ))
            .unwrap();
        for row in chunk {
            insert.execute(rusqlite::params_from_iter(row)).unwrap();
        }
        drop(insert);
        conn.execute_batch("COMMIT").unwrap();
    }
    let fresh_rate = fresh.len() as f64 / started.elapsed().as_secs_f64();
    let set = ROW_COLUMNS
        .split(',')
        .skip(1)
        .enumerate()
        .map(|(i, c)| format!("{} = ?{}", c.trim(), i + 2))
        .collect::<Vec<_>>()
        .join(", ");
    let started = Instant::now();
    for (n, chunk) in updated.chunks(ROWS).enumerate() {
        conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        let mut update = conn
            .prepare_cached(&format!("UPDATE contacts SET {set} WHERE id = ?1"))
            .unwrap();
        for (i, row) in chunk.iter().enumerate() {
            let id = (n * ROWS + i + 1) as i64;
            let mut values: Vec<&dyn rusqlite::ToSql> = vec![&id];
            values.extend(row[1..].iter().map(|v| v as &dyn rusqlite::ToSql));
            update.execute(values.as_slice()).unwrap();
        }
        drop(update);
        conn.execute_batch("COMMIT").unwrap();
    }
    (
        fresh_rate,
        updated.len() as f64 / started.elapsed().as_secs_f64(),
    )
}

/// The whole HTTP path (4 clients) against the storage floor, fresh and updates, in
/// interleaved rounds; and, for fresh rows, the writer alone (the same calls planned before the
/// clock starts), which tells the writer's own distance to the floor from what the HTTP path
/// adds on the same two cores.
fn storage_floor(calls: usize) {
    let (mut http_new, mut http_update, mut floor_new, mut floor_update) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut writer_alone_new = Vec::new();
    for _ in 0..ROUNDS {
        let writer_alone = Bench::start(Durability::Full, BATCH_ROWS);
        writer_alone_new.push(writer_alone.storage(0..calls, 0, 4));
        drop(writer_alone);
        let bench = Bench::start(Durability::Full, BATCH_ROWS);
        http_new.push(bench.http(0..calls, 0, 4));
        let fresh = stored_rows(&bench.db_path());
        http_update.push(bench.http(0..calls, 1, 4));
        let updated = stored_rows(&bench.db_path());
        drop(bench);
        let (new, update) = floor_run(&fresh, &updated);
        floor_new.push(new);
        floor_update.push(update);
    }
    report_pair(
        ("floor_new", &floor_new),
        ("http_new_4_clients", &http_new),
        "http_vs_floor_new",
    );
    report("writer_alone_new", median(&writer_alone_new), "contacts/s");
    report_ratio(&floor_new, &writer_alone_new, "writer_alone_vs_floor_new");
    report_pair(
        ("floor_update", &floor_update),
        ("http_update_4_clients", &http_update),
        "http_vs_floor_update",
    );
}

/// What the control plane's bookkeeping costs the whole HTTP path: the request journal (every
/// call's parameters, `data` up to 64 KiB) and the metrics, against neither, on fresh databases,
/// interleaved.
fn control_plane(calls: usize) {
    let (mut plain, mut observed) = (Vec::new(), Vec::new());
    // Twice the usual rounds, in A-B then B-A order, so that whichever side runs second in a
    // round (after a server was just torn down) is each side equally often.
    for round in 0..2 * ROUNDS {
        for observe in [round % 2 == 1, round % 2 == 0] {
            let (journal, metrics) = if observe { (1000, true) } else { (0, false) };
            let bench = Bench::start_observed(Durability::Full, BATCH_ROWS, journal, metrics);
            let rate = bench.http(0..calls, 0, 4);
            if observe {
                observed.push(rate);
            } else {
                plain.push(rate);
            }
        }
    }
    report_pair(
        ("http_new_4_clients_no_journal_no_metrics", &plain),
        ("http_new_4_clients_with_journal_and_metrics", &observed),
        "journal_and_metrics_vs_none",
    );
}

/// Reports `contacts_per_second` of pass 0 (new contacts), then of pass 1 (updates of them).
fn fresh_then_updates(names: [&str; 2], contacts_per_second: impl Fn(usize) -> f64) {
    for (pass, name) in names.into_iter().enumerate() {
        report(name, contacts_per_second(pass), "contacts/s");
    }
}

/// The binary's allocator, set up as `main.rs` sets it, so that in-process figures are the
/// binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    unisender_local::allocator::return_freed_memory_soon();
    let options = options();
    let calls = options.calls;
    let started = Instant::now();

    // Storage alone against the whole HTTP path, durable, in one database: fresh contacts, then
    // updates of the same contacts.
    let bench = Bench::start(Durability::Full, BATCH_ROWS);
    if options.latency_only {
        latency(&bench, 0..calls.max(50));
        return;
    }
    if options.storage_only {
        fresh_then_updates(["storage_new", "storage_update"], |pass| {
            bench.storage(0..calls, pass, 4)
        });
        return;
    }
    if options.control_only {
        drop(bench);
        control_plane(calls);
        return;
    }
    if options.http_only {
        fresh_then_updates(["http_new_4_clients", "http_update_4_clients"], |pass| {
            bench.http(0..calls, pass, 4)
        });
        return;
    }
    if options.floor_only {
        drop(bench);
        storage_floor(calls);
        return;
    }
    validation(&bench);
    // Each pair runs side by side ROUNDS times, interleaved, each round on its own contacts; the
    // medians are reported, since this machine is shared and one run of a variant can be slowed
    // by a neighbour.
    let round_calls = |round: usize, half: usize| {
        let first = (2 * round + half) * calls;
        first..first + calls
    };
    // Pass 0 creates the contacts, pass 1 updates them (its values differ).
    for (pass, names) in [
        (
            0,
            ["storage_new", "http_new_4_clients", "http_vs_storage_new"],
        ),
        (
            1,
            [
                "storage_update",
                "http_update_4_clients",
                "http_update_vs_storage",
            ],
        ),
    ] {
        let (mut storage, mut http) = (Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            storage.push(bench.storage(round_calls(round, 0), pass, 4));
            http.push(bench.http(round_calls(round, 1), pass, 4));
        }
        report_pair((names[0], &storage), (names[1], &http), names[2]);
    }
    let after = 2 * ROUNDS * calls;
    latency(&bench, after..after + calls.max(50));
    size(&bench, (after + calls.max(50)) * ROWS);
    // The binary returns freed memory to the system within 10 ms (`allocator.rs`, for a bounded
    // peak under hostile load): what that costs against mimalloc's default delay of a second.
    let base = after + calls.max(50);
    let (mut delayed, mut at_once) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let first = base + 2 * round * calls;
        unisender_local::allocator::set_purge_delay_ms(1000);
        delayed.push(bench.http(first..first + calls, 0, 4));
        unisender_local::allocator::return_freed_memory_soon();
        at_once.push(bench.http(first + calls..first + 2 * calls, 0, 4));
    }
    report_pair(
        ("http_new_4_clients_purge_delayed", &delayed),
        ("http_new_4_clients_purge_soon", &at_once),
        "purge_soon_vs_delayed",
    );
    drop(bench);

    control_plane(calls);

    // Group commit against one transaction per call: 16 clients, durable, fresh databases.
    let (mut group_commit, mut per_call) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let grouped = Bench::start(Durability::Full, BATCH_ROWS);
        group_commit.push(grouped.http(0..calls, 0, 16));
        drop(grouped);
        let single = Bench::start(Durability::Full, 1);
        per_call.push(single.http(0..calls, 0, 16));
        drop(single);
    }
    report_pair(
        ("one_transaction_per_call_16_clients", &per_call),
        ("group_commit_16_clients", &group_commit),
        "group_commit_vs_per_call",
    );
    // What group commit saves is mostly the durable commit of each call: its share of a call.
    let commit_ms = durable_commit_ms();
    let call_ms = ROWS as f64 / median(&per_call) * 1000.0;
    report("durable_commit_ms", commit_ms, "ms");
    report(
        "durable_commit_share_of_500_row_call",
        commit_ms / call_ms,
        "ratio",
    );
    // The same with small calls (10 rows), where a commit is a larger share of a call's cost.
    let small_calls = calls * 10;
    let grouped = Bench::start(Durability::Full, BATCH_ROWS);
    let group_small = grouped.http_small(small_calls, 16);
    drop(grouped);
    let single = Bench::start(Durability::Full, 1);
    let per_call_small = single.http_small(small_calls, 16);
    drop(single);
    report(
        "group_commit_16_clients_10_row_calls",
        group_small,
        "contacts/s",
    );
    report(
        "one_transaction_per_call_16_clients_10_row_calls",
        per_call_small,
        "contacts/s",
    );
    report(
        "group_commit_vs_per_call_10_row_calls",
        group_small / per_call_small,
        "ratio",
    );

    // A large database against an empty one: storage alone, fresh contacts, same call count.
    let empty = Bench::start(Durability::Full, BATCH_ROWS);
    let large = Bench::start(Durability::Relaxed, BATCH_ROWS);
    let stored_calls = options.stored / ROWS;
    let fill_started = Instant::now();
    for chunk in (0..stored_calls).step_by(200) {
        large.storage(chunk..(chunk + 200).min(stored_calls), 0, 2);
    }
    report(
        "fill_contacts_per_s",
        options.stored as f64 / fill_started.elapsed().as_secs_f64(),
        "contacts/s",
    );
    drop(large.server.store().writer().submit(Command::Ping));
    // Measured durable, like the empty baseline: reopen the same file with FULL sync.
    let path = large.db_path();
    let dir = large._dir;
    large.server.stopper().stop();
    large.server.wait();
    let reopened = Server::start(ServeConfig {
        db: path,
        listen: "127.0.0.1:0".into(),
        accounts: vec![("bench".into(), KEY.into())],
        durability: Durability::Full,
        limits: Limits::default(),
        writer: WriterOptions::default(),
        max_pages: None,
        public_url: None,
        exports: Default::default(),
        control: unisender_local::app::ControlOptions::quiet(),
        seed: Vec::new(),
    })
    .expect("the large database reopens");
    let large = Bench {
        account_id: large.account_id,
        fields: large.fields,
        lists: large.lists,
        server: reopened,
        _dir: dir,
    };
    let (mut on_empty, mut on_large) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        on_empty.push(empty.storage(round * calls..(round + 1) * calls, 0, 4));
        let first = stored_calls + round * calls;
        on_large.push(large.storage(first..first + calls, 0, 4));
    }
    drop(empty);
    report_pair(
        ("storage_new_empty_db", &on_empty),
        (
            &format!("storage_new_with_{}_stored", options.stored),
            &on_large,
        ),
        "large_vs_empty",
    );
    drop(large);

    peak_memory(if options.quick { 40 } else { 200 });
    report("bench_seconds", started.elapsed().as_secs_f64(), "s");
}
