//! The command line's `import` and `export` (the binary's part; the work is
//! `unisender_local::files`).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use unisender_local::files::{self, ExportJob, ImportJob};

#[derive(clap::Args)]
pub struct ImportArgs {
    /// A CSV file whose first line names importContacts columns (as an export writes them).
    file: PathBuf,
    #[command(flatten)]
    db: crate::DbArg,
    /// The account's login.
    #[arg(long)]
    account: String,
    /// Also subscribe every row to this list (title or id).
    #[arg(long)]
    list: Option<String>,
    /// Replace each contact's tags with the file's (importContacts' overwrite_tags=1).
    #[arg(long)]
    overwrite_tags: bool,
    /// Replace each contact's lists with the file's (overwrite_lists=1).
    #[arg(long)]
    overwrite_lists: bool,
    /// Check every row and report, writing nothing (test_mode=1).
    #[arg(long)]
    dry_run: bool,
    /// Skip this many data rows first: to resume an interrupted import.
    #[arg(long, default_value_t = 0)]
    skip: usize,
}

#[derive(clap::Args)]
pub struct ExportArgs {
    #[command(flatten)]
    db: crate::DbArg,
    /// The account's login.
    #[arg(long)]
    account: String,
    /// Only contacts in this list.
    #[arg(long)]
    list_id: Option<i64>,
    /// Only contacts with this tag.
    #[arg(long)]
    tag: Option<String>,
    #[arg(long)]
    email_status: Option<String>,
    #[arg(long)]
    phone_status: Option<String>,
    #[arg(long)]
    email: Option<String>,
    #[arg(long)]
    phone: Option<String>,
    /// A column to export (repeatable; exportContacts' field_names). Default: every column.
    #[arg(long = "column")]
    columns: Vec<String>,
    /// Where to write the CSV (default: standard output).
    #[arg(short, long)]
    out: Option<PathBuf>,
}

pub fn import(args: ImportArgs) -> Result<(), String> {
    let stop = Arc::new(AtomicBool::new(false));
    let on_signal = stop.clone();
    ctrlc::set_handler(move || on_signal.store(true, Ordering::SeqCst))
        .map_err(|e| format!("cannot handle signals: {e}"))?;
    let job = ImportJob {
        file: args.file,
        db: args.db.db,
        account: args.account,
        list: args.list,
        overwrite_tags: args.overwrite_tags,
        overwrite_lists: args.overwrite_lists,
        dry_run: args.dry_run,
        skip: args.skip,
    };
    let done = files::import(&job, &stop)?;
    let verb = if job.dry_run {
        "checked (dry run, nothing written)"
    } else {
        "imported"
    };
    println!(
        "{verb} {} rows: {} inserted, {} updated, {} deleted, {} invalid, {} new emails",
        done.total, done.inserted, done.updated, done.deleted, done.invalid, done.new_emails
    );
    println!(
        "{} log lines in {}",
        done.logged,
        files::log_path(&job.file).display()
    );
    if let Some(skip) = done.resume_skip {
        println!(
            "interrupted after {skip} data rows; to resume: unisender-local import {} --db {} --account {} --skip {skip}",
            job.file.display(),
            job.db.display(),
            job.account
        );
        return Err("interrupted".into());
    }
    Ok(())
}

pub fn export(args: ExportArgs) -> Result<(), String> {
    let mut params: Vec<(String, String)> = Vec::new();
    let mut add = |name: &str, value: Option<String>| {
        if let Some(value) = value {
            params.push((name.to_string(), value));
        }
    };
    add("list_id", args.list_id.map(|id| id.to_string()));
    add("tag", args.tag);
    add("email_status", args.email_status);
    add("phone_status", args.phone_status);
    add("email", args.email);
    add("phone", args.phone);
    for (i, column) in args.columns.into_iter().enumerate() {
        params.push((format!("field_names[{i}]"), column));
    }
    let to_file = args.out.is_some();
    let rows = files::export(&ExportJob {
        db: args.db.db,
        account: args.account,
        params,
        out: args.out.clone(),
    })?;
    if to_file {
        println!(
            "exported {rows} contacts to {}",
            args.out.unwrap_or_default().display()
        );
    }
    Ok(())
}
