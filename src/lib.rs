//! unisender-local: Unisender's contacts API served from one SQLite file.
//!
//! Reading order: `params` (bracket parameters) and `model` (validated values) are pure;
//! `import_plan` checks importContacts rows in parallel, and `export_query` what an export asks
//! for; `store` owns the database (a pool of read-only connections and one writer thread); `api`
//! is one file per group of methods;
//! `exports` writes async export files; `journal` keeps the last API calls; `faults`,
//! `rate_limits`, `metrics` and `snapshots` are the control plane's state (its endpoints are in
//! `http::control`); `http` is the only part that knows HTTP; `app` and `server` tie them into a
//! running server; `files` is the command line's CSV import and export, and `test_server` the
//! server inside a Rust test; `allocator` sets up the binary's allocator (the library sets none).

pub mod allocator;
pub mod api;
pub mod app;
pub mod error;
pub mod export_query;
pub mod exports;
pub mod faults;
pub mod files;
pub mod http;
pub mod import_plan;
pub mod journal;
pub mod metrics;
pub mod model;
pub mod params;
pub mod priority;
pub mod rate_limits;
pub mod server;
pub mod snapshots;
pub mod store;
pub mod test_server;

pub use test_server::TestServer;
