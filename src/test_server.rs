//! The server inside a Rust test: `TestServer::start()` serves a fresh database on a free port
//! of 127.0.0.1 and stops when dropped, like the `wiremock` crate's `MockServer::start()`. No
//! binary, no port to choose; the control plane's state operations are methods.
//!
//! ```
//! use unisender_local::TestServer;
//!
//! let server = TestServer::start();
//! // Any HTTP client; the crate's own `ureq` here.
//! let answer = ureq::post(server.api_url("createList"))
//!     .send_form([("api_key", server.api_key()), ("title", "Newsletter")])
//!     .unwrap()
//!     .body_mut()
//!     .read_to_string()
//!     .unwrap();
//! assert_eq!(answer, r#"{"result":{"id":1}}"#);
//!
//! // What did the code under test send?
//! let calls = server.requests();
//! assert_eq!(calls[0]["method"], "createList");
//! assert_eq!(calls[0]["params"]["title"], "Newsletter");
//!
//! // Back to empty for the next test.
//! server.reset();
//! assert!(server.requests().is_empty());
//! ```

use crate::app::{App, ControlOptions};
use crate::faults::Rule;
use crate::journal::JournalFilter;
use crate::server::{ServeConfig, Server};
use crate::store::db::Durability;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// A running server for one test; stopped (and its temporary database removed) when dropped.
///
/// A fixture loaded once and put back before each test, and a fault for a retry path:
///
/// ```
/// use unisender_local::TestServer;
/// use serde_json::json;
///
/// let server = TestServer::builder().account("shop", "shop-key").start();
/// let call = |method: &str, form: &[(&str, &str)]| {
///     let mut form = form.to_vec();
///     form.push(("api_key", "shop-key"));
///     match ureq::post(server.api_url(method)).send_form(form) {
///         Ok(mut answer) => (200, answer.body_mut().read_to_string().unwrap()),
///         Err(ureq::Error::StatusCode(status)) => (status, String::new()),
///         Err(e) => panic!("{e}"),
///     }
/// };
/// call("createList", &[("title", "Customers")]);
/// server.snapshot("fixture");
///
/// call("createList", &[("title", "Made by a test")]);
/// server.restore("fixture");
/// assert_eq!(call("getLists", &[]).1, r#"{"result":[{"id":1,"title":"Customers"}]}"#);
///
/// server
///     .add_fault(json!({"method": "getLists", "times": 1, "http_status": 503}))
///     .unwrap();
/// assert_eq!(call("getLists", &[]).0, 503);
/// assert_eq!(call("getLists", &[]).0, 200);
/// ```
pub struct TestServer {
    server: Server,
    db: PathBuf,
    accounts: Vec<(String, String)>,
    /// Holds the temporary directory for as long as the server lives.
    _dir: Option<tempfile::TempDir>,
}

/// How to start a `TestServer`: accounts, durability, and where the database lives.
#[derive(Default)]
pub struct TestServerBuilder {
    accounts: Vec<(String, String)>,
    durability: Option<Durability>,
    database: Option<PathBuf>,
    fixtures: Vec<(PathBuf, Option<String>)>,
}

impl TestServerBuilder {
    /// Adds an account with this login and API key (the first is `api_key()`'s). Without any,
    /// there is one account, `test`, with a random key.
    pub fn account(mut self, login: &str, api_key: &str) -> Self {
        self.accounts.push((login.to_string(), api_key.to_string()));
        self
    }

    /// `Relaxed` by default: a test needs no power-loss safety, and commits are faster.
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = Some(durability);
        self
    }

    /// Serves the database at `path` (created if missing, kept after the server stops) instead
    /// of a temporary one.
    pub fn database(mut self, path: impl Into<PathBuf>) -> Self {
        self.database = Some(path.into());
        self
    }

    /// Loads a CSV file (as `unisender-local import` reads it) into the first account before
    /// the server listens; `list` (a title, made if missing, or an id) gets every row.
    pub fn fixture(mut self, csv: impl Into<PathBuf>, list: Option<&str>) -> Self {
        self.fixtures.push((csv.into(), list.map(str::to_string)));
        self
    }

    /// Starts the server; panics with the reason if it cannot (a test cannot go on anyway).
    pub fn start(self) -> TestServer {
        let mut accounts = self.accounts;
        if accounts.is_empty() {
            let key = uuid::Uuid::new_v4().simple().to_string();
            accounts.push(("test".to_string(), key));
        }
        let (dir, db) = match self.database {
            Some(path) => (None, path),
            None => {
                let dir = tempfile::tempdir().expect("a temporary directory for the database");
                let db = dir.path().join("test.db");
                (Some(dir), db)
            }
        };
        let server = Server::start(ServeConfig {
            db: db.clone(),
            accounts: accounts.clone(),
            durability: self.durability.unwrap_or(Durability::Relaxed),
            control: ControlOptions::quiet(),
            seed: self.fixtures,
            ..ServeConfig::default()
        })
        .unwrap_or_else(|e| panic!("the test server does not start: {}", e.0));
        TestServer {
            server,
            db,
            accounts,
            _dir: dir,
        }
    }
}

impl TestServer {
    /// A server on a temporary database with one account, `test`, and a random key.
    pub fn start() -> TestServer {
        TestServer::builder().start()
    }

    pub fn builder() -> TestServerBuilder {
        TestServerBuilder::default()
    }

    /// `http://127.0.0.1:PORT`: what a client's base URL is set to.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.server.address())
    }

    /// The URL of an API method, as the real service's clients build it.
    pub fn api_url(&self, method: &str) -> String {
        format!("{}/en/api/{method}?format=json", self.base_url())
    }

    /// The first account's API key.
    pub fn api_key(&self) -> &str {
        &self.accounts[0].1
    }

    /// The key of the account with this login.
    pub fn key_of(&self, login: &str) -> Option<&str> {
        self.accounts
            .iter()
            .find(|(l, _)| l == login)
            .map(|(_, key)| key.as_str())
    }

    /// The database file.
    pub fn database(&self) -> &Path {
        &self.db
    }

    /// Empties every account (contacts, lists, fields, tags, exports, outbox) and the journal;
    /// accounts and keys stay.
    pub fn reset(&self) {
        self.app().reset(None).expect("the reset is applied");
    }

    /// Saves the whole database as snapshot `name`.
    pub fn snapshot(&self, name: &str) {
        self.app()
            .save_snapshot(name)
            .unwrap_or_else(|e| panic!("snapshot {name}: {e}"));
    }

    /// Puts snapshot `name` back; panics if there is none.
    pub fn restore(&self, name: &str) {
        match self.app().restore_snapshot(name) {
            Ok(true) => {}
            Ok(false) => panic!("no snapshot named {name}"),
            Err(e) => panic!("restoring {name}: {e}"),
        }
    }

    /// The API calls answered so far, newest first, as `GET /_local/requests` shows them.
    pub fn requests(&self) -> Vec<Value> {
        self.app()
            .journal
            .list(&JournalFilter::default())
            .iter()
            .map(|entry| entry.to_json())
            .collect()
    }

    /// Adds a fault rule, as `POST /_local/faults` takes it (`{"method": "importContacts",
    /// "times": 1, "http_status": 503}`); the reason when it is not a valid rule.
    pub fn add_fault(&self, rule: Value) -> Result<Rule, String> {
        self.app().faults.add(&rule)
    }

    /// Removes every fault rule.
    pub fn clear_faults(&self) {
        self.app().faults.remove(None);
    }

    fn app(&self) -> &App {
        self.server.app()
    }
}
