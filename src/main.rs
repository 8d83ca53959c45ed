//! The command line: arguments to a configuration, the library to run it, and the exit code.

use clap::{Parser, Subcommand, ValueEnum};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use unisender_local::app::ControlOptions;
use unisender_local::exports::ExportLimits;
use unisender_local::http::request_log::LogFormat;
use unisender_local::http::wire::Limits;
use unisender_local::rate_limits::Limits as RateLimits;
use unisender_local::server::{ServeConfig, Server, mask_key};
use unisender_local::store::Store;
use unisender_local::store::apply_catalog::new_api_key;
use unisender_local::store::db::Durability;
use unisender_local::store::maintenance;
use unisender_local::store::writer::Command;

#[derive(Parser)]
#[command(
    name = "unisender-local",
    version,
    about = "Unisender's contacts API, served locally from one SQLite file"
)]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

#[derive(Subcommand)]
enum Commands {
    /// Serve the API.
    Serve(ServeArgs),
    /// Manage the accounts (API keys) in the database.
    Accounts {
        #[command(subcommand)]
        action: AccountsAction,
    },
    /// Copy the database consistently, even while a server is serving it, with the async
    /// export files its tasks point to (into OUT.exports/).
    Backup {
        #[command(flatten)]
        db: DbArg,
        /// Where to write the copy (must not exist yet).
        out: PathBuf,
    },
    /// Put a backup in place of the database (refused while a server holds it).
    Restore {
        /// A file `backup` wrote (its export files are read from BACKUP.exports/).
        backup: PathBuf,
        #[command(flatten)]
        db: DbArg,
    },
    /// Ask a running server whether it is healthy: exit code 0 if it is, 1 if not (for a
    /// container's HEALTHCHECK).
    Health {
        /// The server's address.
        #[arg(
            long,
            env = "UNISENDER_LOCAL_URL",
            default_value = "http://127.0.0.1:8080"
        )]
        url: String,
    },
    /// Import a CSV file into an account through importContacts, 500 rows a call (the
    /// database directly; refused while a server holds it).
    Import(cli_files::ImportArgs),
    /// Export an account's contacts as CSV, as async exportContacts writes it.
    Export(cli_files::ExportArgs),
    /// Check the database's integrity; exit code 1 when it is damaged.
    Check {
        #[command(flatten)]
        db: DbArg,
    },
}

mod cli_files;

#[derive(clap::Args)]
struct DbArg {
    /// The database file.
    #[arg(long, env = "UNISENDER_LOCAL_DB", default_value = "unisender-local.db")]
    db: PathBuf,
}

#[derive(clap::Args)]
struct ServeArgs {
    #[command(flatten)]
    db: DbArg,
    /// Address to listen on; port 0 takes a free port.
    #[arg(long, env = "UNISENDER_LOCAL_LISTEN", default_value = "127.0.0.1:8080")]
    listen: String,
    /// LOGIN:KEY, creating the account or setting its key; repeatable.
    #[arg(
        long = "account",
        env = "UNISENDER_LOCAL_ACCOUNTS",
        value_delimiter = ','
    )]
    accounts: Vec<String>,
    /// full: an answered write survives power loss; relaxed: a crash of the process only.
    #[arg(
        long,
        value_enum,
        env = "UNISENDER_LOCAL_DURABILITY",
        default_value = "full"
    )]
    durability: DurabilityArg,
    /// Seconds a connection may stay silent (mid-request, or idle between requests) before it
    /// is closed.
    #[arg(long, value_name = "SECONDS", env = "UNISENDER_LOCAL_READ_TIMEOUT", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    read_timeout: u64,
    /// Cap the database at this many pages of 4 KiB, as if the disk were that small (to test
    /// how clients cope with a full disk).
    #[arg(long, value_name = "PAGES", env = "UNISENDER_LOCAL_MAX_PAGES")]
    max_pages: Option<u64>,
    /// The address clients reach this server at, for URLs in answers (export files), e.g.
    /// http://contacts.test:8080; by default the listening address. The Host header of a
    /// request is never used: a client could point another client's download anywhere.
    #[arg(long, value_name = "URL", env = "UNISENDER_LOCAL_PUBLIC_URL")]
    public_url: Option<String>,
    /// The most the async export files (DB.exports/) may take on disk, in MiB; when a new file
    /// needs room, the account keeping the most loses its oldest file first.
    #[arg(long, value_name = "MIB", env = "UNISENDER_LOCAL_EXPORTS_QUOTA_MB", default_value_t = 2048,
          value_parser = clap::value_parser!(u64).range(1..))]
    exports_quota_mb: u64,
    /// API calls kept in the request journal (`GET /_local/requests`); 0 keeps none.
    #[arg(
        long,
        value_name = "CALLS",
        env = "UNISENDER_LOCAL_JOURNAL",
        default_value_t = 1000
    )]
    journal: usize,
    /// Opens the control plane (`/_local/`) to any client that sends `Authorization: Bearer
    /// TOKEN`, and only to those; without it, only clients on this machine are answered.
    #[arg(long, value_name = "TOKEN", env = "UNISENDER_LOCAL_ADMIN_TOKEN")]
    admin_token: Option<String>,
    /// One line per request on stderr, as text or JSON.
    #[arg(
        long,
        value_enum,
        env = "UNISENDER_LOCAL_LOG_FORMAT",
        default_value = "text"
    )]
    log_format: LogFormatArg,
    /// No line per request (errors of the server are still logged).
    #[arg(long, env = "UNISENDER_LOCAL_QUIET")]
    quiet: bool,
    /// `real`: the real service's rate limits (1200 calls a minute per key, 20 exportContacts);
    /// `off`: none. Switchable at run time with `POST /_local/rate-limits`.
    #[arg(
        long,
        value_enum,
        env = "UNISENDER_LOCAL_RATE_LIMITS",
        default_value = "off"
    )]
    rate_limits: RateLimitsArg,
    /// A CSV file (as `import` reads) loaded into the first account before listening; `:LIST`
    /// (a title or id) adds every row to that list. Repeatable.
    #[arg(
        long,
        value_name = "FILE.csv[:LIST]",
        env = "UNISENDER_LOCAL_SEED",
        value_delimiter = ','
    )]
    seed: Vec<String>,
    /// When ready, write the server's URL (`http://HOST:PORT`) to this file, for a test in any
    /// language to wait for (written whole, by a rename).
    #[arg(long, value_name = "PATH", env = "UNISENDER_LOCAL_READY_FILE")]
    ready_file: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum RateLimitsArg {
    Off,
    Real,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormatArg {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum DurabilityArg {
    Full,
    Relaxed,
}

#[derive(Subcommand)]
enum AccountsAction {
    /// Create an account, or change the key or limit of an existing one.
    Add {
        login: String,
        /// The API key; a random one when omitted.
        #[arg(long)]
        key: Option<String>,
        /// The most contacts the account may hold before imports warn.
        #[arg(long)]
        contact_limit: Option<i64>,
        #[command(flatten)]
        db: DbArg,
    },
    /// List the accounts, keys masked (works beside a running server).
    List {
        #[command(flatten)]
        db: DbArg,
    },
    /// Give an account a new random key and print it (the old one stops working): for a key
    /// lost after the first start.
    Key {
        login: String,
        #[command(flatten)]
        db: DbArg,
    },
}

/// mimalloc, set here and not in the library (see `unisender_local::allocator`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    unisender_local::allocator::return_freed_memory_soon();
    let cli = Cli::parse();
    let outcome = match cli.command {
        Commands::Serve(args) => serve(args),
        Commands::Accounts { action } => accounts(action),
        Commands::Backup { db, out } => backup(&db.db, &out),
        Commands::Restore { backup, db } => restore(&backup, &db.db),
        Commands::Check { db } => check(&db.db),
        Commands::Import(args) => cli_files::import(args),
        Commands::Export(args) => cli_files::export(args),
        Commands::Health { url } => health(&url),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("unisender-local: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Writes `text` to `path` whole: a reader polling for the file never sees part of it.
fn write_ready_file(path: &std::path::Path, text: &str) -> Result<(), String> {
    let mut staged = path.as_os_str().to_os_string();
    staged.push(".part");
    let staged = PathBuf::from(staged);
    std::fs::write(&staged, text)
        .and_then(|()| std::fs::rename(&staged, path))
        .map_err(|e| format!("cannot write the ready file {}: {e}", path.display()))
}

fn serve(args: ServeArgs) -> Result<(), String> {
    let args_ready_file = args.ready_file.clone();
    let accounts = args
        .accounts
        .iter()
        .filter(|pair| !pair.trim().is_empty())
        .map(|pair| match pair.trim().split_once(':') {
            Some((login, key)) if !login.is_empty() && !key.is_empty() => {
                Ok((login.to_string(), key.to_string()))
            }
            _ => Err(format!(
                "--account takes LOGIN:KEY, not \"{}\"",
                mask_key(pair)
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let config = ServeConfig {
        db: args.db.db,
        listen: args.listen,
        accounts,
        durability: match args.durability {
            DurabilityArg::Full => Durability::Full,
            DurabilityArg::Relaxed => Durability::Relaxed,
        },
        limits: Limits {
            idle_timeout: std::time::Duration::from_secs(args.read_timeout),
            ..Limits::default()
        },
        writer: unisender_local::store::writer::WriterOptions::default(),
        max_pages: args.max_pages,
        public_url: args.public_url,
        exports: ExportLimits {
            quota_bytes: args.exports_quota_mb * 1024 * 1024,
            ..ExportLimits::default()
        },
        control: ControlOptions {
            journal: args.journal,
            admin_token: args.admin_token.filter(|token| !token.is_empty()),
            log: match (args.quiet, args.log_format) {
                (true, _) => LogFormat::Quiet,
                (false, LogFormatArg::Text) => LogFormat::Text,
                (false, LogFormatArg::Json) => LogFormat::Json,
            },
            rate_limits: match args.rate_limits {
                RateLimitsArg::Off => RateLimits::OFF,
                RateLimitsArg::Real => RateLimits::REAL,
            },
            metrics: true,
        },
        seed: args
            .seed
            .iter()
            .map(|spec| match spec.rsplit_once(':') {
                Some((file, list)) if !file.is_empty() && !list.is_empty() => {
                    (PathBuf::from(file), Some(list.to_string()))
                }
                _ => (PathBuf::from(spec), None),
            })
            .collect(),
    };
    let server = Server::start(config).map_err(|e| e.to_string())?;
    // Installed before the listening line: whoever reads that line may signal at once.
    let stopper = server.stopper();
    ctrlc::set_handler(move || stopper.stop())
        .map_err(|e| format!("cannot handle signals: {e}"))?;
    let address = server.address();
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "listening on http://{address}");
    if let Some(account) = &server.created_account {
        let _ = writeln!(
            out,
            "created account \"{}\" with api_key {} (shown only this once; `accounts list` masks it)",
            account.account.login, account.api_key
        );
    }
    for (file, done) in &server.seeded {
        let _ = writeln!(
            out,
            "seeded {} contacts from {} ({} invalid rows)",
            done.inserted + done.updated,
            file.display(),
            done.invalid
        );
    }
    let _ = out.flush();
    drop(out);
    if let Some(path) = &args_ready_file {
        write_ready_file(path, &format!("http://{address}\n"))?;
    }
    if !address.ip().is_loopback() {
        eprintln!("warning: listening on {address}, which other machines can reach");
    }
    server.wait();
    Ok(())
}

fn accounts(action: AccountsAction) -> Result<(), String> {
    match action {
        AccountsAction::Add {
            login,
            key,
            contact_limit,
            db,
        } => {
            let store = Store::open(&db.db, Durability::Full).map_err(|e| e.to_string())?;
            let result = store.writer().submit(|reply| Command::UpsertAccount {
                login: login.clone(),
                api_key: key,
                contact_limit,
                reply,
            });
            store.close();
            let upserted = result.map_err(|e| e.to_string())?;
            let verb = if upserted.created {
                "created"
            } else {
                "updated"
            };
            println!(
                "{verb} account \"{login}\" with api_key {}",
                upserted.record.api_key
            );
            Ok(())
        }
        AccountsAction::List { db } => {
            let accounts = maintenance::accounts(&db.db).map_err(|e| e.to_string())?;
            println!("login\tapi_key\tcontact_limit");
            for record in accounts {
                let limit = record
                    .account
                    .contact_limit
                    .map_or("-".to_string(), |l| l.to_string());
                println!(
                    "{}\t{}\t{limit}",
                    record.account.login,
                    mask_key(&record.api_key)
                );
            }
            Ok(())
        }
        AccountsAction::Key { login, db } => {
            let known = maintenance::accounts(&db.db)
                .map_err(|e| e.to_string())?
                .iter()
                .any(|record| record.account.login == login);
            if !known {
                return Err(format!("no account \"{login}\" in {}", db.db.display()));
            }
            let store = Store::open(&db.db, Durability::Full).map_err(|e| e.to_string())?;
            let result = store.writer().submit(|reply| Command::UpsertAccount {
                login: login.clone(),
                api_key: Some(new_api_key()),
                contact_limit: None,
                reply,
            });
            store.close();
            let upserted = result.map_err(|e| e.to_string())?;
            println!(
                "account \"{login}\" has a new api_key {} (the old one no longer works)",
                upserted.record.api_key
            );
            Ok(())
        }
    }
}

fn backup(db: &std::path::Path, out: &std::path::Path) -> Result<(), String> {
    if out.exists() {
        return Err(format!(
            "{} exists already; choose a new file",
            out.display()
        ));
    }
    let copied = maintenance::backup(db, out).map_err(|e| e.to_string())?;
    println!(
        "copied {} to {} ({} bytes, {} export files)",
        db.display(),
        out.display(),
        copied.bytes,
        copied.export_files
    );
    Ok(())
}

fn restore(backup: &std::path::Path, db: &std::path::Path) -> Result<(), String> {
    let copied = maintenance::restore(backup, db).map_err(|e| e.to_string())?;
    println!(
        "restored {} from {} ({} bytes, {} export files)",
        db.display(),
        backup.display(),
        copied.bytes,
        copied.export_files
    );
    Ok(())
}

/// GET /_local/health: exit 0 on `{"status":"ok"}`, 1 on anything else or no answer.
fn health(url: &str) -> Result<(), String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(std::time::Duration::from_secs(5)))
        .http_status_as_error(false)
        .build()
        .into();
    let address = format!("{}/_local/health", url.trim_end_matches('/'));
    let mut answer = agent
        .get(&address)
        .call()
        .map_err(|e| format!("{address}: no answer ({e})"))?;
    let status = answer.status().as_u16();
    let body = answer.body_mut().read_to_string().unwrap_or_default();
    if status == 200 && body.contains("\"ok\"") {
        println!("{address}: ok");
        Ok(())
    } else {
        Err(format!("{address}: {status} {body}"))
    }
}

fn check(db: &std::path::Path) -> Result<(), String> {
    let problems = maintenance::integrity_problems(db).map_err(|e| e.to_string())?;
    if problems.is_empty() {
        println!("{}: ok", db.display());
        return Ok(());
    }
    for problem in &problems {
        println!("{problem}");
    }
    Err(format!(
        "{}: {} problem(s) found",
        db.display(),
        problems.len()
    ))
}
