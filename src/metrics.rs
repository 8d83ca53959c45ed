//! `GET /_local/metrics`: what the server has done, in the OpenMetrics text format that
//! Prometheus scrapes. Counters and histograms are updated as calls are answered; gauges
//! (queue depth, database size, connections) are read when scraped.

use crate::store::writer::WriterStats;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

/// The content type of `render`'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    method: String,
    /// `ok`, or the error code answered.
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

type HistogramMaker = fn() -> Histogram;

/// Latency buckets: 0.5 ms to about 16 s.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

pub struct Metrics {
    registry: Registry,
    calls: Family<CallLabels, Counter>,
    latency: Family<MethodLabels, Histogram, HistogramMaker>,
    imported: Family<OutcomeLabels, Counter>,
    queue_depth: Gauge,
    database_bytes: Gauge,
    connections: Gauge,
    journal_entries: Gauge,
    /// One scrape at a time sets the gauges and encodes.
    scraping: Mutex<()>,
}

/// What a scrape reads at that moment.
pub struct Readings {
    pub queue_depth: usize,
    pub database: std::path::PathBuf,
    pub connections: usize,
    pub journal_entries: usize,
}

impl Metrics {
    /// The metrics, with the writer's batch sizes and commit times (kept by the writer itself,
    /// `WriterStats`) registered beside them.
    pub fn new(writer: &WriterStats) -> Metrics {
        let mut registry = Registry::with_prefix("unisender_local");
        let calls = Family::<CallLabels, Counter>::default();
        registry.register(
            "api_calls",
            "API calls answered, by method and code (ok or the error code)",
            calls.clone(),
        );
        let latency = Family::new_with_constructor(latency_histogram as HistogramMaker);
        registry.register_with_unit(
            "api_call_duration",
            "Time from a call's arrival to its answer, by method",
            Unit::Seconds,
            latency.clone(),
        );
        let imported = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "imported_contacts",
            "importContacts rows by outcome (inserted, updated, deleted, invalid)",
            imported.clone(),
        );
        registry.register(
            "writer_batch_rows",
            "Rows in each transaction the writer commits (group commit)",
            writer.batch_rows.clone(),
        );
        registry.register_with_unit(
            "writer_commit_duration",
            "Time each writer transaction took to commit",
            Unit::Seconds,
            writer.commit_seconds.clone(),
        );
        registry.register(
            "writer_transactions",
            "Transactions the writer committed",
            writer.committed.clone(),
        );
        let queue_depth = Gauge::default();
        registry.register(
            "writer_queue_depth",
            "Writes waiting for the writer",
            queue_depth.clone(),
        );
        let database_bytes = Gauge::default();
        registry.register_with_unit(
            "database_size",
            "The database file and its write-ahead log",
            Unit::Bytes,
            database_bytes.clone(),
        );
        let connections = Gauge::default();
        registry.register(
            "open_connections",
            "Client connections open",
            connections.clone(),
        );
        let journal_entries = Gauge::default();
        registry.register(
            "journal_entries",
            "Calls kept in the request journal",
            journal_entries.clone(),
        );
        Metrics {
            registry,
            calls,
            latency,
            imported,
            queue_depth,
            database_bytes,
            connections,
            journal_entries,
            scraping: Mutex::new(()),
        }
    }

    /// Counts an answered API call.
    pub fn call(&self, method: &str, code: Option<&str>, seconds: f64) {
        self.calls
            .get_or_create(&CallLabels {
                method: method.to_string(),
                code: code.unwrap_or("ok").to_string(),
            })
            .inc();
        self.latency
            .get_or_create(&MethodLabels {
                method: method.to_string(),
            })
            .observe(seconds);
    }

    /// Counts an import's rows by outcome.
    pub fn imported(&self, outcome: &'static str, rows: u64) {
        if rows > 0 {
            self.imported
                .get_or_create(&OutcomeLabels { outcome })
                .inc_by(rows);
        }
    }

    /// Everything, as text.
    pub fn render(&self, now: Readings) -> String {
        let _one_scrape = self.scraping.lock().unwrap_or_else(|p| p.into_inner());
        self.queue_depth.set(now.queue_depth as i64);
        self.connections.set(now.connections as i64);
        self.journal_entries.set(now.journal_entries as i64);
        self.database_bytes
            .set(database_bytes(&now.database) as i64);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}

/// The writer's own measurements, shared with `Metrics`.
pub fn batch_rows_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 4.0, 8))
}

pub fn commit_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

/// A counter of the writer's own, for `WriterStats`.
pub fn transactions_counter() -> Counter<u64, AtomicU64> {
    Counter::default()
}

fn database_bytes(db: &Path) -> u64 {
    let mut wal = db.as_os_str().to_os_string();
    wal.push("-wal");
    [db.to_path_buf(), wal.into()]
        .iter()
        .filter_map(|file| std::fs::metadata(file).ok())
        .map(|m| m.len())
        .sum()
}
