//! What the control plane's state endpoints cost at size: reset, snapshot and restore of an
//! account with many contacts, and how long other writes wait while the writer deletes what a
//! reset left behind.
//!
//! `cargo bench --bench control` (1,000,000 contacts; `--contacts N` for another size,
//! `--quick` for 100,000). Prints one JSON object per measure.

#[path = "common/mod.rs"]
mod common;
#[path = "../tests/support/http_client.rs"]
mod http_client;

use common::*;

use http_client::{Client, encode};
use unisender_local::server::Server;

const ROWS: usize = 500;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// One 500-row importContacts body: emails in a list, with a tag.
fn import_body(list: i64, call: usize) -> String {
    let mut body = format!(
        "api_key={KEY}&field_names%5B0%5D=email&field_names%5B1%5D=email_list_ids&field_names%5B2%5D=tags"
    );
    for row in 0..ROWS {
        let n = call * ROWS + row;
        body.push_str(&format!(
            "&data%5B{row}%5D%5B0%5D={}&data%5B{row}%5D%5B1%5D={list}&data%5B{row}%5D%5B2%5D=t{}",
            encode(&format!("user{n}@example.com")),
            n % 7
        ));
    }
    body
}

/// Imports `contacts` contacts with two clients.
fn fill(server: &Server, list: i64, contacts: usize) {
    let calls = contacts.div_ceil(ROWS);
    std::thread::scope(|scope| {
        for client in 0..2 {
            scope.spawn(move || {
                let mut http = Client::new(server.address());
                for call in (client..calls).step_by(2) {
                    post(
                        &mut http,
                        "/en/api/importContacts",
                        &import_body(list, call),
                    );
                }
            });
        }
    });
}

fn main() {
    let contacts = size_arg("--contacts", 100_000, 1_000_000);
    let dir = tempfile::tempdir().expect("a temp dir");
    let server = server(dir.path().join("bench.db"));
    let mut client = Client::new(server.address());
    let list = post(
        &mut client,
        "/en/api/createList",
        &format!("api_key={KEY}&title=One"),
    )["result"]["id"]
        .as_i64()
        .unwrap();

    // A small fixture, as a test suite would keep: saved, then restored before each test.
    fill(&server, list, 1000);
    let (_, ms) = timed(|| post(&mut client, "/_local/snapshots/small", ""));
    report("snapshot_save_1000_contacts_ms", ms, "ms");
    let restore = median_ms(21, || {
        post(&mut client, "/_local/snapshots/small/restore", "");
    });
    report("snapshot_restore_1000_contacts_ms_p50", restore, "ms");

    let (_, fill_ms) = timed(|| fill(&server, list, contacts));
    report(
        "fill_contacts_per_s",
        contacts as f64 / (fill_ms / 1000.0),
        "contacts/s",
    );
    let (_, ms) = timed(|| post(&mut client, "/_local/snapshots/big", ""));
    report(&format!("snapshot_save_{contacts}_contacts_ms"), ms, "ms");
    let (_, ms) = timed(|| post(&mut client, "/_local/snapshots/big/restore", ""));
    report(
        &format!("snapshot_restore_{contacts}_contacts_ms"),
        ms,
        "ms",
    );

    // Reset, then one-row imports every 5 ms while the writer deletes the old rows: how long
    // does a write wait behind the clean-up?
    let (_, ms) = timed(|| post(&mut client, "/_local/reset?account=bench", ""));
    report(&format!("reset_{contacts}_contacts_ms"), ms, "ms");
    let (waits, took) = writes_while(
        &mut client,
        &dir.path().join("bench.db"),
        "SELECT count(*) FROM contacts WHERE account_id NOT IN (SELECT id FROM accounts)",
        "reset",
    );
    report("reset_cleanup_s", took, "s");
    if let Some(slowest) = waits.last() {
        let at = |share: usize| waits[waits.len() * share / 100];
        report("one_row_import_during_cleanup_ms_p50", at(50), "ms");
        report("one_row_import_during_cleanup_ms_p99", at(99), "ms");
        report("one_row_import_during_cleanup_ms_max", *slowest, "ms");
    }
    server.stop();
}
