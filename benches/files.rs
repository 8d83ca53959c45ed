//! The command line's CSV import against the HTTP import, same rows, same run: the file goes
//! through importContacts' own code in 500-row calls, so it should keep up with four HTTP
//! clients. `cargo bench --bench files` (1,000,000 rows; `--rows N`, `--quick` for 100,000).

#[path = "common/mod.rs"]
mod common;
#[path = "../tests/support/http_client.rs"]
mod http_client;

use common::*;

use http_client::{Client, encode};
use std::sync::atomic::AtomicBool;
use std::time::Instant;
use unisender_local::files::{ImportJob, import};

const COLUMNS: [&str; 4] = ["email", "phone", "tags", "email_status"];

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn cells(n: usize) -> [String; 4] {
    [
        format!("user{n}@example.com"),
        format!("+1{n:010}"),
        format!("tag{},group{}", n % 5, n % 3),
        ["new", "active"][n % 2].to_string(),
    ]
}

fn main() {
    let rows = size_arg("--rows", 100_000, 1_000_000);
    let dir = tempfile::tempdir().expect("a temp dir");

    // Over HTTP, four clients.
    let http_db = dir.path().join("http.db");
    let http = server(http_db);
    let bodies: Vec<String> = (0..rows.div_ceil(500))
        .map(|call| {
            let mut body = format!("api_key={KEY}");
            for (i, c) in COLUMNS.iter().enumerate() {
                body.push_str(&format!("&field_names%5B{i}%5D={c}"));
            }
            for row in 0..500 {
                for (c, cell) in cells(call * 500 + row).iter().enumerate() {
                    body.push_str(&format!("&data%5B{row}%5D%5B{c}%5D={}", encode(cell)));
                }
            }
            body
        })
        .collect();
    let started = Instant::now();
    std::thread::scope(|scope| {
        for client in 0..4 {
            let (bodies, address) = (&bodies, http.address());
            scope.spawn(move || {
                let mut http = Client::new(address);
                for body in bodies.iter().skip(client).step_by(4) {
                    assert_eq!(http.post_form("/en/api/importContacts", body).status, 200);
                }
            });
        }
    });
    let http_rate = rows as f64 / started.elapsed().as_secs_f64();
    http.stop();
    drop(bodies);

    // The same rows from a CSV file.
    let csv_path = dir.path().join("rows.csv");
    let mut csv = csv::Writer::from_path(&csv_path).unwrap();
    csv.write_record(COLUMNS).unwrap();
    for n in 0..rows {
        csv.write_record(cells(n)).unwrap();
    }
    csv.flush().unwrap();
    drop(csv);
    let file_db = dir.path().join("file.db");
    server(file_db.clone()).stop();
    let started = Instant::now();
    let done = import(
        &ImportJob {
            file: csv_path,
            db: file_db,
            account: "bench".into(),
            list: None,
            overwrite_tags: false,
            overwrite_lists: false,
            dry_run: false,
            skip: 0,
        },
        &AtomicBool::new(false),
    )
    .expect("the import runs");
    assert_eq!(done.inserted as usize, rows);
    let file_rate = rows as f64 / started.elapsed().as_secs_f64();
    report("http_import_4_clients", http_rate, "contacts/s");
    report("csv_import", file_rate, "contacts/s");
    report("csv_vs_http", file_rate / http_rate, "ratio");
}
