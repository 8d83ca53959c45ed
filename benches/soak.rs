//! A soak at load: the real binary serving 8 clients that import (new contacts and updates) and
//! export for `--minutes` minutes, its resident memory sampled every second. Prints JSON lines;
//! memory that keeps growing, an error answer, or a lost call shows here.
//!
//! `cargo bench --bench soak -- [--minutes N]` (default 1; the release check runs 10).

#[path = "../tests/support/http_client.rs"]
mod http_client;
#[path = "../tests/support/served.rs"]
mod served;

use http_client::{Client, encode};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const KEY: &str = "soak-key-0123456789";

fn report(name: &str, value: f64, unit: &str) {
    println!(
        "{}",
        serde_json::json!({"name": name, "value": (value * 10.0).round() / 10.0, "unit": unit})
    );
}

fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .map(str::to_string)
        })
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let minutes: f64 = args
        .iter()
        .position(|a| a == "--minutes")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(1.0);
    let dir = tempfile::tempdir().expect("a temp dir");
    let served = served::start(&mut served::serving(
        &dir.path().join("soak.db"),
        &format!("soak:{KEY}"),
    ));
    let (mut child, address) = (served.child, served.address);
    Client::new(address).post_form("/en/api/createList", &format!("api_key={KEY}&title=Soak"));

    let stop = Arc::new(AtomicBool::new(false));
    let (calls, errors) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let clients: Vec<_> = (0..8u64)
        .map(|c| {
            let (stop, calls, errors) = (stop.clone(), calls.clone(), errors.clone());
            std::thread::spawn(move || {
                let mut http = Client::new(address);
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    // Client 0 exports; the others import 500 rows, a new batch or an update of
                    // an earlier one.
                    let answer = if c == 0 {
                        http.post_form("/en/api/exportContacts", &format!("api_key={KEY}&offset={}&limit=1000", (i * 1000) % 200_000)).json()
                    } else {
                        let batch = if i % 3 == 2 { i / 2 } else { i };
                        let mut body = format!("api_key={KEY}&field_names[0]=email&field_names[1]=tags&field_names[2]=email_list_ids");
                        for r in 0..500 {
                            let email = encode(&format!("c{c}b{batch}r{r}@example.com"));
                            body.push_str(&format!("&data[{r}][0]={email}&data[{r}][1]=t{}&data[{r}][2]=1", i % 7));
                        }
                        http.post_form("/en/api/importContacts", &body).json()
                    };
                    if answer.get("result").is_some() {
                        calls.fetch_add(1, Ordering::Relaxed);
                    } else {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                    i += 1;
                }
            })
        })
        .collect();
    let started = Instant::now();
    let (mut peak, mut first) = (0.0f64, None);
    let mut last = 0.0;
    let mut seconds = 0u64;
    while started.elapsed() < Duration::from_secs_f64(minutes * 60.0) {
        std::thread::sleep(Duration::from_secs(1));
        last = rss_mib(child.id());
        first.get_or_insert(last);
        peak = peak.max(last);
        seconds += 1;
        // The trend, once a minute: a leak shows as a climb that does not level off.
        if seconds.is_multiple_of(60) {
            report(&format!("soak_rss_minute_{}", seconds / 60), last, "MiB");
        }
    }
    stop.store(true, Ordering::SeqCst);
    clients.into_iter().for_each(|c| drop(c.join()));
    report("soak_minutes", minutes, "min");
    report(
        "soak_calls_answered",
        calls.load(Ordering::SeqCst) as f64,
        "calls",
    );
    report(
        "soak_error_answers",
        errors.load(Ordering::SeqCst) as f64,
        "calls",
    );
    report("soak_rss_after_1s", first.unwrap_or(f64::NAN), "MiB");
    report("soak_rss_at_end", last, "MiB");
    report("soak_rss_peak", peak, "MiB");
    let _ = child.kill();
    let _ = child.wait();
}
