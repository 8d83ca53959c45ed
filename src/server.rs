//! A running server: the store opened, accounts in place, the listener bound, connections
//! served on their own threads until it is told to stop.

use crate::app::{App, ControlOptions};
use crate::error::Error;
use crate::exports::{ExportLimits, export_dir};
use crate::http::listen;
use crate::http::routes;
use crate::http::wire::Limits;
use crate::store::Store;
use crate::store::db::{AccountRecord, Durability, OpenError};
use crate::store::writer::{Command, UpsertedAccount, WriterOptions};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

/// Everything `serve` needs to know.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub db: PathBuf,
    pub listen: String,
    /// `(login, key)` pairs to create, or whose key to set.
    pub accounts: Vec<(String, String)>,
    pub durability: Durability,
    pub limits: Limits,
    /// The writer's group commit and queue (see `store::writer`).
    pub writer: WriterOptions,
    /// A cap on the database's pages, standing in for a small disk.
    pub max_pages: Option<u64>,
    /// Where clients reach the server (`http://host:port`), for URLs in answers; by default
    /// the listening address.
    pub public_url: Option<String>,
    /// What async exports may hold: the directory's quota, each account's share.
    pub exports: ExportLimits,
    /// The control plane's access and journal, and the request log.
    pub control: ControlOptions,
    /// CSV files imported into the first account before the server listens (`--seed`), each
    /// with a list (title or id) its rows also join.
    pub seed: Vec<(PathBuf, Option<String>)>,
}

/// A server on a free loopback port serving `unisender-local.db`, durable, with the default
/// limits; change what you need with struct update syntax:
/// `ServeConfig { db: path.into(), ..ServeConfig::default() }`.
impl Default for ServeConfig {
    fn default() -> ServeConfig {
        ServeConfig {
            db: PathBuf::from("unisender-local.db"),
            listen: "127.0.0.1:0".into(),
            accounts: Vec::new(),
            durability: Durability::Full,
            limits: Limits::default(),
            writer: WriterOptions::default(),
            max_pages: None,
            public_url: None,
            exports: ExportLimits::default(),
            control: ControlOptions::default(),
            seed: Vec::new(),
        }
    }
}

/// Why the server could not start; said in one line.
#[derive(Debug)]
pub struct StartError(pub String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartError {}

impl From<OpenError> for StartError {
    fn from(error: OpenError) -> StartError {
        StartError(error.0)
    }
}

pub struct Server {
    app: Arc<App>,
    address: SocketAddr,
    stopping: Arc<AtomicBool>,
    /// None once the server has stopped and closed its database.
    accept_thread: Option<JoinHandle<()>>,
    /// The account made because the database had none, to be shown once.
    pub created_account: Option<AccountRecord>,
    /// What each `seed` file loaded.
    pub seeded: Vec<(PathBuf, crate::files::ImportSummary)>,
}

/// Stops a running server from another thread (a signal handler, a test).
#[derive(Clone)]
pub struct Stopper {
    stopping: Arc<AtomicBool>,
    wake: SocketAddr,
}

impl Stopper {
    /// Stops accepting; requests in flight are still answered.
    pub fn stop(&self) {
        if !self.stopping.swap(true, Ordering::SeqCst) {
            // The accept loop blocks in accept(): a connection of our own wakes it.
            let _ = TcpStream::connect(self.wake);
        }
    }
}

impl Server {
    pub fn start(config: ServeConfig) -> Result<Server, StartError> {
        crate::priority::start_validation_pool();
        let (seed_files, accounts) = (config.seed.clone(), config.accounts.clone());
        let store = Arc::new(Store::open_with(
            &config.db,
            config.durability,
            config.writer,
            config.max_pages,
        )?);
        let created_account = ensure_accounts(&store, &config.accounts)?;
        let listener = TcpListener::bind(&config.listen)
            .map_err(|e| StartError(format!("cannot listen on {}: {e}", config.listen)))?;
        deepen_backlog(&listener);
        let address = listener
            .local_addr()
            .map_err(|e| StartError(format!("cannot read the listening address: {e}")))?;
        let public_url = public_url(config.public_url.as_deref(), address)?;
        let app = Arc::new(App::new(
            store,
            export_dir(&config.db),
            address,
            public_url,
            config.exports,
            config.control,
        ));
        let seeded = seed(&app, &seed_files, &accounts, created_account.as_ref())?;
        let stopping = Arc::new(AtomicBool::new(false));
        let mut limits = config.limits;
        limits.max_connections =
            listen::connections_within_descriptor_limit(limits.max_connections);
        limits.max_connections_per_peer = limits
            .max_connections_per_peer
            .clamp(1, limits.max_connections);
        let handler_app = app.clone();
        let max_body = limits.max_body;
        let handler = Arc::new(move |request| routes::handle(&handler_app, max_body, request));
        let refusal = Arc::new(routes::refusal);
        let accept_stopping = stopping.clone();
        let slots = app.connections.clone();
        let accept_thread = std::thread::Builder::new()
            .name("accept".into())
            .spawn(move || {
                listen::serve(listener, handler, refusal, limits, accept_stopping, slots)
            })
            .map_err(|e| StartError(format!("cannot start the accept thread: {e}")))?;
        Ok(Server {
            app,
            address,
            stopping,
            accept_thread: Some(accept_thread),
            created_account,
            seeded,
        })
    }

    /// Everything a request can reach: the control plane's state, the journal, fault rules.
    pub fn app(&self) -> &App {
        &self.app
    }

    /// The store, for benchmarks that drive the writer without HTTP.
    pub fn store(&self) -> &Store {
        &self.app.store
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn stopper(&self) -> Stopper {
        Stopper {
            stopping: self.stopping.clone(),
            wake: reachable(self.address),
        }
    }

    /// Waits until the server has been stopped and its requests in flight answered, then
    /// commits what the writer holds and closes the database.
    pub fn wait(mut self) {
        self.finish();
    }

    /// Stops the server: requests in flight are answered, then the database is closed.
    pub fn stop(mut self) {
        self.stopper().stop();
        self.finish();
    }

    fn finish(&mut self) {
        if let Some(accept_thread) = self.accept_thread.take() {
            let _ = accept_thread.join();
            self.app.store.close();
        }
    }
}

/// Imports the `seed` files into the first account (the first `--account`, or the one made
/// for an empty database) before the server listens.
fn seed(
    app: &App,
    files: &[(PathBuf, Option<String>)],
    accounts: &[(String, String)],
    created: Option<&AccountRecord>,
) -> Result<Vec<(PathBuf, crate::files::ImportSummary)>, StartError> {
    if files.is_empty() {
        return Ok(Vec::new());
    }
    let login = match (accounts.first(), created) {
        (Some((login, _)), _) => login.clone(),
        (None, Some(record)) => record.account.login.clone(),
        (None, None) => app
            .store
            .read(crate::store::db::accounts)
            .map_err(|e| StartError(e.to_string()))?
            .first()
            .map(|record| record.account.login.clone())
            .ok_or_else(|| StartError("--seed needs an account".into()))?,
    };
    let account = app
        .store
        .read(|conn| crate::store::db::account_by_login(conn, &login))
        .map_err(|e| StartError(e.to_string()))?
        .ok_or_else(|| StartError(format!("no account \"{login}\" to seed")))?;
    let mut seeded = Vec::new();
    for (file, list) in files {
        let done = crate::files::seed(app, &account, file, list.as_deref())
            .map_err(|e| StartError(format!("--seed {}: {e}", file.display())))?;
        seeded.push((file.clone(), done));
    }
    Ok(seeded)
}

/// A server dropped while running stops, so that a failing test does not leave one behind.
impl Drop for Server {
    fn drop(&mut self) {
        if self.accept_thread.is_some() {
            self.stopper().stop();
            self.finish();
        }
    }
}

/// Lets connections wait in the kernel's queue by the thousand (std listens with 128): when a
/// flood of connections arrives at once, a well-behaved client's is not dropped and retried a
/// second later. Calling listen() again on a listening socket only changes its backlog.
fn deepen_backlog(listener: &TcpListener) {
    use std::os::fd::AsRawFd;
    // SAFETY: listen() on a socket this process owns; the kernel caps it at somaxconn.
    unsafe {
        libc::listen(listener.as_raw_fd(), 4096);
    }
}

/// `--public-url` checked, without a trailing slash; or the listening address, a wildcard
/// address replaced by loopback.
fn public_url(given: Option<&str>, address: SocketAddr) -> Result<String, StartError> {
    match given {
        Some(url) => {
            let url = url.trim_end_matches('/');
            let host = url
                .strip_prefix("http://")
                .or_else(|| url.strip_prefix("https://"));
            match host {
                Some(host) if !host.is_empty() && !host.contains(['/', '?', '#', ' ']) => {
                    Ok(url.to_string())
                }
                _ => Err(StartError(format!(
                    "--public-url must be http://HOST[:PORT] or https://HOST[:PORT], not \"{url}\""
                ))),
            }
        }
        None => Ok(format!("http://{}", reachable(address))),
    }
}

/// The listening address as this machine reaches it: a wildcard address becomes loopback.
fn reachable(mut address: SocketAddr) -> SocketAddr {
    if address.ip().is_unspecified() {
        address.set_ip(match address {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    address
}

/// Applies `--account` pairs; with no account at all, makes one and returns it to be shown.
fn ensure_accounts(
    store: &Store,
    accounts: &[(String, String)],
) -> Result<Option<AccountRecord>, StartError> {
    let upsert = |login: &str, key: Option<String>| {
        store
            .writer()
            .submit(|reply| Command::UpsertAccount {
                login: login.to_string(),
                api_key: key,
                contact_limit: None,
                reply,
            })
            .map_err(|e| StartError(account_error(login, e)))
    };
    for (login, key) in accounts {
        upsert(login, Some(key.clone()))?;
    }
    let existing = store
        .read(crate::store::db::accounts)
        .map_err(|e| StartError(format!("cannot read accounts: {e}")))?;
    if !existing.is_empty() {
        return Ok(None);
    }
    let UpsertedAccount { record, .. } = upsert("local", None)?;
    Ok(Some(record))
}

fn account_error(login: &str, error: Error) -> String {
    match error {
        Error::Api { message, .. } => format!("account {login}: {message}"),
        other => format!("account {login}: {other}"),
    }
}

/// A key as it may appear in output after its creation: enough to tell keys apart, not to use one.
pub fn mask_key(key: &str) -> String {
    let shown: String = key.chars().take(4).collect();
    format!("{shown}…")
}
