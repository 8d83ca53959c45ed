//! What every request can reach: the store, the export worker, and the server's own address.

use crate::exports::Exporter;
use crate::faults::Faults;
use crate::http::request_log::LogFormat;
use crate::http::slots::Slots;
use crate::journal::Journal;
use crate::metrics::Metrics;
use crate::rate_limits::{Limits, RateLimits};
use crate::snapshots::Snapshots;
use crate::store::Store;
use std::net::SocketAddr;
use std::sync::Arc;

pub struct App {
    pub store: Arc<Store>,
    pub exporter: Exporter,
    /// The listening address.
    pub address: SocketAddr,
    /// `http://host:port` that URLs in answers start with (export files): `--public-url`, or
    /// the listening address. Never the request's Host header, which a client chooses.
    pub public_url: String,
    /// The last API calls (`/_local/requests`).
    pub journal: Journal,
    /// Faults on purpose (`/_local/faults`).
    pub faults: Faults,
    /// The real service's rate limits, when switched on.
    pub rate_limits: RateLimits,
    /// Counters and histograms for `/_local/metrics`.
    pub metrics: Metrics,
    /// The open client connections (the accept loop's table).
    pub connections: Slots,
    /// Named copies of the database (`/_local/snapshots`).
    pub snapshots: Snapshots,
    pub control: ControlOptions,
}

/// The control plane and the request log.
#[derive(Clone, Debug)]
pub struct ControlOptions {
    /// Calls the journal keeps (0: none).
    pub journal: usize,
    /// With a token, `/_local/` answers any client that sends it, and only those.
    pub admin_token: Option<String>,
    pub log: LogFormat,
    /// The rate limits at start (`--rate-limits`).
    pub rate_limits: Limits,
    /// Whether calls are counted for `/_local/metrics` (off only to measure what counting
    /// costs).
    pub metrics: bool,
}

impl ControlOptions {
    /// The defaults without the request log: for tests, fuzzing and benchmarks, where a line per
    /// request would bury the output or cost time.
    pub fn quiet() -> ControlOptions {
        ControlOptions {
            log: LogFormat::Quiet,
            ..ControlOptions::default()
        }
    }
}

impl Default for ControlOptions {
    fn default() -> ControlOptions {
        ControlOptions {
            journal: crate::journal::DEFAULT_CAPACITY,
            admin_token: None,
            log: LogFormat::Text,
            rate_limits: Limits::OFF,
            metrics: true,
        }
    }
}

impl App {
    /// The parts of a server around an open store: its export workers (files in
    /// `exports_dir`), and the addresses it is reached at.
    pub fn new(
        store: Arc<Store>,
        exports_dir: std::path::PathBuf,
        address: SocketAddr,
        public_url: String,
        export_limits: crate::exports::ExportLimits,
        control: ControlOptions,
    ) -> App {
        let exporter = Exporter::start(
            store.clone(),
            exports_dir,
            public_url.clone(),
            export_limits,
        );
        App {
            snapshots: Snapshots::beside(store.path()),
            faults: Faults::default(),
            metrics: Metrics::new(&store.writer().stats),
            connections: Slots::default(),
            rate_limits: RateLimits::new(control.rate_limits),
            store,
            exporter,
            address,
            public_url,
            journal: Journal::new(control.journal),
            control,
        }
    }
}

/// What `App::reset` did.
#[derive(Clone, Debug)]
pub struct Reset {
    /// Logins of the accounts emptied.
    pub accounts: Vec<String>,
    /// Journal entries cleared (a whole reset clears the journal).
    pub cleared_requests: usize,
}

/// The state operations of the control plane, shared by `/_local/` and `TestServer`.
impl App {
    /// Empties the account `login`, or every account (and the journal) when `None`.
    pub fn reset(&self, login: Option<&str>) -> crate::error::Result<Reset> {
        let login = login.map(str::to_string);
        let whole = login.is_none();
        let outcome = self
            .store
            .writer()
            .submit(|reply| crate::store::writer::Command::Reset { login, reply })?;
        self.exporter.remove_unreferenced_files(&self.store);
        Ok(Reset {
            accounts: outcome.accounts,
            cleared_requests: if whole { self.journal.clear() } else { 0 },
        })
    }

    /// Saves the database as snapshot `name`.
    pub fn save_snapshot(
        &self,
        name: &str,
    ) -> crate::error::Result<crate::snapshots::SnapshotInfo> {
        self.snapshots.save(&self.store, name)
    }

    /// Puts snapshot `name` back; `Ok(false)` when there is none.
    pub fn restore_snapshot(&self, name: &str) -> crate::error::Result<bool> {
        self.snapshots.restore(&self.store, &self.exporter, name)
    }
}
