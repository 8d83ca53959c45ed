//! exportContacts over HTTP on a large account, printed as JSON lines: a synchronous page of
//! 1000 at offset 0 versus one near the end (their ratio is what counts: a deep page must cost
//! about what the first one costs), and the async export of the whole account in contacts per
//! second.
//!
//! `cargo bench --bench export -- [--contacts N] [--repeats N]` (default 1,000,000 contacts).

#[path = "../tests/support/http_client.rs"]
mod http_client;

use http_client::{Client, encode};
use std::time::{Duration, Instant};
use unisender_local::http::wire::Limits;
use unisender_local::server::{ServeConfig, Server};
use unisender_local::store::db::Durability;

const KEY: &str = "bench-key-0123456789";

fn flag(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn report(name: &str, value: f64, unit: &str) {
    println!(
        "{}",
        serde_json::json!({"name": name, "value": (value * 1000.0).round() / 1000.0, "unit": unit})
    );
}

/// A duration, in milliseconds.
fn report_ms(name: &str, duration: Duration) {
    report(name, duration.as_secs_f64() * 1000.0, "ms");
}

/// Fills the account with `contacts` contacts of the standard shape, 500 per call, 2 clients.
fn populate(server: &Server, contacts: usize, lists: (i64, i64)) {
    let calls = contacts.div_ceil(500);
    std::thread::scope(|scope| {
        for client in 0..2 {
            let address = server.address();
            scope.spawn(move || {
                let mut http = Client::new(address);
                for call in (client..calls).step_by(2) {
                    let mut body = format!(
                        "api_key={KEY}&field_names[0]=email&field_names[1]=phone&field_names[2]=City&field_names[3]=Score\
                         &field_names[4]=email_list_ids&field_names[5]=email_subscribe_times&field_names[6]=tags"
                    );
                    for row in 0..500.min(contacts - call * 500) {
                        let n = call * 500 + row;
                        for (col, cell) in [
                            format!("user{n}@example.com"),
                            format!("+1{n:010}"),
                            format!("City {}", n % 97),
                            (n * 7).to_string(),
                            format!("{},{}", lists.0, lists.1),
                            "2024-01-02 03:04:05,2024-02-03 04:05:06".to_string(),
                            format!("tag{},group{}", n % 5, n % 3),
                        ]
                        .iter()
                        .enumerate()
                        {
                            body.push_str(&format!("&data[{row}][{col}]={}", encode(cell)));
                        }
                    }
                    let answer = http.post_form("/en/api/importContacts", &body).json();
                    assert_eq!(answer["result"]["invalid"], 0, "{answer:.300}");
                }
            });
        }
    });
}

/// The median time of `repeats` synchronous pages of 1000 at `offset` (`filter`: extra form).
fn page_time(client: &mut Client, offset: usize, repeats: usize) -> Duration {
    filtered_page_time(client, offset, repeats, "")
}

fn filtered_page_time(
    client: &mut Client,
    offset: usize,
    repeats: usize,
    filter: &str,
) -> Duration {
    let mut times: Vec<Duration> = (0..repeats)
        .map(|_| {
            let started = Instant::now();
            let answer = client
                .post_form(
                    "/en/api/exportContacts",
                    &format!("api_key={KEY}&offset={offset}&limit=1000{filter}"),
                )
                .json();
            let elapsed = started.elapsed();
            assert_eq!(
                answer["result"]["data"].as_array().map(Vec::len),
                Some(1000),
                "{answer:.200}"
            );
            elapsed
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}

/// The binary's allocator, set up as `main.rs` sets it, so that in-process figures are the
/// binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    unisender_local::allocator::return_freed_memory_soon();
    let contacts = flag("--contacts", 1_000_000);
    let repeats = flag("--repeats", 15);
    let dir = tempfile::tempdir().expect("a temp dir");
    let server = Server::start(ServeConfig {
        db: dir.path().join("bench.db"),
        listen: "127.0.0.1:0".into(),
        accounts: vec![("bench".into(), KEY.into())],
        durability: Durability::Relaxed,
        limits: Limits::default(),
        writer: unisender_local::store::writer::WriterOptions::default(),
        max_pages: None,
        public_url: None,
        exports: Default::default(),
        control: unisender_local::app::ControlOptions::quiet(),
        seed: Vec::new(),
    })
    .expect("the server starts");
    let mut client = Client::new(server.address());
    let mut create = |method: &str, form: &str| {
        client
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
    let started = Instant::now();
    populate(&server, contacts, lists);
    report(
        "populate_contacts_per_s",
        contacts as f64 / started.elapsed().as_secs_f64(),
        "contacts/s",
    );

    let mut client = Client::new(server.address());
    page_time(&mut client, 0, 3); // warm the cache for both ends alike
    page_time(&mut client, contacts - 1000, 3);
    let first = page_time(&mut client, 0, repeats);
    let deep = page_time(&mut client, contacts - 1000, repeats);
    report_ms("export_page_1000_offset_0", first);
    report_ms("export_page_1000_near_end", deep);
    // Filtered by a list: a direct jump deep walks the filtered index up to the offset; a walk
    // in order starts each page where the previous one ended.
    let filter = format!("&list_id={}", lists.0);
    let filtered_first = filtered_page_time(&mut client, 0, repeats, &filter);
    let deep_start = contacts - 21_000;
    let filtered_jump = filtered_page_time(&mut client, deep_start, 3, &filter);
    let mut in_order: Vec<Duration> = (1..=20)
        .map(|page| filtered_page_time(&mut client, deep_start + page * 1000, 1, &filter))
        .collect();
    in_order.sort();
    let filtered_walk = in_order[in_order.len() / 2];
    report_ms("export_filtered_page_offset_0", filtered_first);
    report_ms("export_filtered_page_deep_direct_jump", filtered_jump);
    report_ms("export_filtered_page_deep_in_order", filtered_walk);
    report(
        "export_filtered_deep_in_order_vs_first",
        filtered_walk.as_secs_f64() / filtered_first.as_secs_f64(),
        "ratio",
    );
    report(
        "export_page_deep_vs_first",
        deep.as_secs_f64() / first.as_secs_f64(),
        "ratio",
    );

    let started = Instant::now();
    let answer = client
        .post_form("/en/api/async/exportContacts", &format!("api_key={KEY}"))
        .json();
    let uuid = answer["result"]["task_uuid"]
        .as_str()
        .expect("a task")
        .to_string();
    loop {
        let result = client
            .post_form(
                "/en/api/async/getTaskResult",
                &format!("api_key={KEY}&task_uuid={uuid}"),
            )
            .json();
        match result["result"]["status"].as_str() {
            Some("completed") => break,
            Some("failed") | None => panic!("the export failed: {result}"),
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    report(
        "async_export_contacts_per_s",
        contacts as f64 / started.elapsed().as_secs_f64(),
        "contacts/s",
    );
    server.stopper().stop();
    server.wait();
}
