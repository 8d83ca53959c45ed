//! importContacts throughput over HTTP, with the standard row shape (email, phone, two user
//! fields, two lists with subscribe times, two tags), printed as JSON lines:
//! `{"name": ..., "value": ..., "unit": ...}`.
//!
//! Variants run side by side in one run, because only ratios from one run can be trusted on a
//! shared machine: fresh contacts versus updates of the same contacts; and, without HTTP or the
//! database, row validation on one thread versus rayon.
//!
//! `cargo bench --bench import -- [--calls N] [--clients N] [--durability full|relaxed]`

#[path = "../tests/support/http_client.rs"]
mod http_client;

use http_client::{Client, encode};
use std::time::Instant;
use unisender_local::http::wire::Limits;
use unisender_local::import_plan::{Columns, plan_rows, split_rows};
use unisender_local::params::Params;
use unisender_local::server::{ServeConfig, Server};
use unisender_local::store::db::Durability;

const KEY: &str = "bench-key-0123456789";
const ROWS_PER_CALL: usize = 500;

struct Options {
    calls: usize,
    clients: usize,
    durability: Durability,
}

fn options() -> Options {
    let args: Vec<String> = std::env::args().collect();
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    Options {
        calls: value("--calls").and_then(|v| v.parse().ok()).unwrap_or(40),
        clients: value("--clients").and_then(|v| v.parse().ok()).unwrap_or(4),
        durability: match value("--durability").as_deref() {
            Some("relaxed") => Durability::Relaxed,
            _ => Durability::Full,
        },
    }
}

fn report(name: &str, value: f64, unit: &str) {
    println!(
        "{}",
        serde_json::json!({"name": name, "value": (value * 10.0).round() / 10.0, "unit": unit})
    );
}

/// The body of one 500-row call; `round` changes the values, not the addresses.
fn import_body(call: usize, round: usize, lists: (i64, i64)) -> String {
    let columns = [
        "email",
        "phone",
        "City",
        "Score",
        "email_list_ids",
        "email_subscribe_times",
        "tags",
    ];
    let mut body = format!("api_key={KEY}");
    for (i, column) in columns.iter().enumerate() {
        body.push_str(&format!("&field_names%5B{i}%5D={column}"));
    }
    for row in 0..ROWS_PER_CALL {
        let n = call * ROWS_PER_CALL + row;
        let cells = [
            format!("user{n}@example.com"),
            format!("+1{:010}", n),
            format!("City {}", (n + round) % 97),
            format!("{}", n * 7 + round),
            format!("{},{}", lists.0, lists.1),
            "2024-01-02 03:04:05,2024-02-03 04:05:06".to_string(),
            format!("tag{},group{}", n % 5, (n + round) % 3),
        ];
        for (col, cell) in cells.iter().enumerate() {
            body.push_str(&format!("&data%5B{row}%5D%5B{col}%5D={}", encode(cell)));
        }
    }
    body
}

/// Sends every body, split between `clients` connections, and returns contacts per second.
fn run(server: &Server, bodies: &[String], clients: usize) -> f64 {
    let started = Instant::now();
    std::thread::scope(|scope| {
        for client in 0..clients {
            let address = server.address();
            scope.spawn(move || {
                let mut http = Client::new(address);
                for body in bodies.iter().skip(client).step_by(clients) {
                    let answer = http.post_form("/en/api/importContacts", body).json();
                    let result = &answer["result"];
                    let applied = result["inserted"].as_u64().unwrap_or(0)
                        + result["updated"].as_u64().unwrap_or(0);
                    assert_eq!(
                        applied, ROWS_PER_CALL as u64,
                        "every row applied: {answer:.300}"
                    );
                }
            });
        }
    });
    (bodies.len() * ROWS_PER_CALL) as f64 / started.elapsed().as_secs_f64()
}

/// Row validation alone: one thread versus rayon, in microseconds per 500-row call.
fn validation(body: &str) {
    let params = Params::from_urlencoded(body.as_bytes()).expect("the bench body decodes");
    let fields = [
        unisender_local::import_plan::FieldName {
            id: 1,
            name: "City".into(),
        },
        unisender_local::import_plan::FieldName {
            id: 2,
            name: "Score".into(),
        },
    ];
    let columns = Columns::parse(params.get("field_names").unwrap(), &fields).unwrap();
    let rows = split_rows(params.get("data").unwrap(), &columns).unwrap();
    for (name, parallel) in [
        ("validate_500_rows_sequential", false),
        ("validate_500_rows_rayon", true),
    ] {
        let rounds = 200;
        let started = Instant::now();
        for _ in 0..rounds {
            std::hint::black_box(plan_rows(&columns, &rows, parallel));
        }
        report(
            name,
            started.elapsed().as_secs_f64() * 1e6 / rounds as f64,
            "us/call",
        );
    }
    let started = Instant::now();
    for _ in 0..50 {
        std::hint::black_box(Params::from_urlencoded(body.as_bytes()).unwrap());
    }
    report(
        "decode_500_row_body",
        started.elapsed().as_secs_f64() * 1e6 / 50.0,
        "us/call",
    );
}

fn main() {
    let options = options();
    let dir = tempfile::tempdir().expect("a temp dir");
    let server = Server::start(ServeConfig {
        db: dir.path().join("bench.db"),
        listen: "127.0.0.1:0".into(),
        accounts: vec![("bench".into(), KEY.into())],
        durability: options.durability,
        limits: Limits::default(),
    })
    .expect("the server starts");
    let mut setup = Client::new(server.address());
    let mut create = |method: &str, form: &str| {
        setup
            .post_form(
                &format!("/en/api/{method}"),
                &format!("api_key={KEY}&{form}"),
            )
            .json()["result"]["id"]
            .as_i64()
            .expect("created")
    };
    let lists = (
        create("createList", "title=One"),
        create("createList", "title=Two"),
    );
    create("createField", "name=City&type=string");
    create("createField", "name=Score&type=number");

    let fresh: Vec<String> = (0..options.calls)
        .map(|call| import_body(call, 0, lists))
        .collect();
    let updates: Vec<String> = (0..options.calls)
        .map(|call| import_body(call, 1, lists))
        .collect();
    validation(&fresh[0]);
    let clients = options.clients;
    report(
        &format!("import_http_new_{clients}_clients"),
        run(&server, &fresh, clients),
        "contacts/s",
    );
    report(
        &format!("import_http_update_{clients}_clients"),
        run(&server, &updates, clients),
        "contacts/s",
    );
    // One client alone, on a further set of fresh contacts.
    let more: Vec<String> = (options.calls..options.calls * 2)
        .map(|call| import_body(call, 0, lists))
        .collect();
    report(
        "import_http_new_1_client",
        run(&server, &more, 1),
        "contacts/s",
    );
    server.stopper().stop();
    server.wait();
}
