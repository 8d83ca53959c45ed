//! `unisender-local import FILE.csv` and `unisender-local export`: CSV files in and out of a
//! database, through the very code of importContacts and exportContacts.
//!
//! Both work on the database file directly and take it the way a server does (`owner.rs`): while
//! a server holds it they refuse, naming the server's pid. A server's clients go through its
//! API; a file loaded beside a running server would be a second writer it cannot see.

use crate::api;
use crate::app::{App, ControlOptions};
use crate::error::Error;
use crate::exports::export_dir;
use crate::params::Params;
use crate::store::Store;
use crate::store::db::{self, Account, Durability};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Rows per importContacts call: the API's own limit, one transaction each.
pub const ROWS_PER_CALL: usize = 500;
/// Calls checked and waiting for the writer at once: enough that the writer always has one
/// queued while others wait for their commit to reach the disk (`cargo bench --bench files`:
/// CSV at 0.82–1.09 × four HTTP clients with two, 1.22–1.25 × with four).
const CALLS_IN_FLIGHT: usize = 4;

/// What `import` is asked to do.
pub struct ImportJob {
    pub file: PathBuf,
    pub db: PathBuf,
    pub account: String,
    /// A list (title or id) every row is subscribed to, besides its own list columns.
    pub list: Option<String>,
    pub overwrite_tags: bool,
    pub overwrite_lists: bool,
    pub dry_run: bool,
    /// Data rows to skip (to resume an interrupted import).
    pub skip: usize,
}

/// The summed counters of an import, and where it stopped.
#[derive(Debug, Default)]
pub struct ImportSummary {
    pub rows_done: usize,
    pub total: u64,
    pub inserted: u64,
    pub updated: u64,
    pub deleted: u64,
    pub invalid: u64,
    pub new_emails: u64,
    /// Rows of the per-row log (rejections and warnings) written to the log file.
    pub logged: usize,
    /// Set when interrupted: the `--skip` that resumes.
    pub resume_skip: Option<usize>,
}

/// An open database with the account a command works on.
struct Opened {
    app: App,
    account: Account,
}

fn open(db: &Path, login: &str) -> Result<Opened, String> {
    if !db.is_file() {
        return Err(format!("{} does not exist", db.display()));
    }
    let store = Arc::new(Store::open(db, Durability::Full).map_err(|e| e.to_string())?);
    let account = store
        .read(|conn| db::account_by_login(conn, login))
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no account \"{login}\" in {}", db.display()))?;
    let app = App::new(
        store,
        export_dir(db),
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        "http://127.0.0.1".into(),
        Default::default(),
        ControlOptions::quiet(),
    );
    Ok(Opened { app, account })
}

/// Says how far a long job got: a bar on a terminal, a line every few seconds otherwise.
struct Progress {
    bar: Option<ProgressBar>,
    started: Instant,
    last_line: Instant,
    total: u64,
    what: &'static str,
}

impl Progress {
    fn new(total: u64, what: &'static str) -> Progress {
        let bar = std::io::stdout().is_terminal().then(|| {
            let bar = ProgressBar::new(total);
            bar.set_style(
                ProgressStyle::with_template("{bar:40} {pos}/{len} rows  {per_sec}  ETA {eta}")
                    .expect("a valid template"),
            );
            bar
        });
        Progress {
            bar,
            started: Instant::now(),
            last_line: Instant::now(),
            total,
            what,
        }
    }

    fn at(&mut self, done: u64) {
        match &self.bar {
            Some(bar) => bar.set_position(done),
            None if self.last_line.elapsed() >= Duration::from_secs(2) => {
                self.last_line = Instant::now();
                let rate = done as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
                println!(
                    "{} {done} of {} rows ({rate:.0} rows/s)",
                    self.what, self.total
                );
            }
            None => {}
        }
    }

    /// Neither a bar nor lines.
    fn quiet(&mut self) {
        self.bar = None;
        self.last_line = Instant::now() + Duration::from_secs(u64::MAX / 4);
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Imports the CSV file in calls of 500 rows. `stop` is checked between calls (Ctrl-C).
pub fn import(job: &ImportJob, stop: &AtomicBool) -> Result<ImportSummary, String> {
    let opened = open(&job.db, &job.account)?;
    let result = import_into(&opened.app, &opened.account, job, stop, true);
    opened.app.store.close();
    result
}

/// Loads `file` into `account` of a server being started (`serve --seed`), before it listens:
/// the same calls as `import`, without progress or a log file.
pub fn seed(
    app: &App,
    account: &Account,
    file: &Path,
    list: Option<&str>,
) -> Result<ImportSummary, String> {
    let job = ImportJob {
        file: file.to_path_buf(),
        db: PathBuf::new(),
        account: account.login.clone(),
        list: list.map(str::to_string),
        overwrite_tags: false,
        overwrite_lists: false,
        dry_run: false,
        skip: 0,
    };
    import_into(app, account, &job, &AtomicBool::new(false), false)
}

/// `report`: a progress bar or lines, and the log file.
fn import_into(
    app: &App,
    account: &Account,
    job: &ImportJob,
    stop: &AtomicBool,
    report: bool,
) -> Result<ImportSummary, String> {
    let read_error = |e: csv::Error| format!("{}: {e}", job.file.display());
    let total_rows = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(&job.file)
        .map_err(read_error)?
        .records()
        .count();
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(&job.file)
        .map_err(read_error)?;
    let mut columns: Vec<String> = reader
        .headers()
        .map_err(read_error)?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    if columns.iter().all(String::is_empty) {
        return Err(format!(
            "{}: the first line names no columns",
            job.file.display()
        ));
    }
    let list_id = match &job.list {
        Some(list) => Some(resolve_list(app, account, list, !job.dry_run)?),
        None => None,
    };
    let list_column = list_id.map(
        |_| match columns.iter().position(|c| c == "email_list_ids") {
            Some(at) => at,
            None => {
                columns.push("email_list_ids".into());
                columns.len() - 1
            }
        },
    );
    let id_column = columns.iter().position(|c| c == "id");
    let log_path = log_path(&job.file);
    let mut log = match report {
        true => Some(
            csv::Writer::from_path(&log_path)
                .map_err(|e| format!("{}: {e}", log_path.display()))?,
        ),
        false => None,
    };
    if let Some(log) = &mut log {
        log.write_record(["line", "code", "message"])
            .map_err(|e| e.to_string())?;
    }
    let mut summary = ImportSummary::default();
    let mut progress = Progress::new(total_rows.saturating_sub(job.skip) as u64, "imported");
    if !report {
        progress.quiet();
    }
    let mut done = job.skip;
    // Calls run `CALLS_IN_FLIGHT` at a time (the writer commits them together, as it does for
    // concurrent clients), while a thread reads the next rows and builds their parameters.
    // Answers are taken in file order; once stopped, the calls already started finish and no
    // new one starts, so what is done is always the file's first rows.
    let (to_workers, work) = std::sync::mpsc::sync_channel::<(usize, Prepared)>(CALLS_IN_FLIGHT);
    let work = std::sync::Mutex::new(work);
    let (to_main, answers) =
        std::sync::mpsc::channel::<(usize, Result<(Vec<u64>, Value), String>)>();
    let shape = CallShape {
        columns: columns.clone(),
        id_column,
        list_column,
        list_id,
        flags: [
            ("overwrite_tags", job.overwrite_tags),
            ("overwrite_lists", job.overwrite_lists),
            ("test_mode", job.dry_run),
        ],
    };
    let file = job.file.clone();
    let skip = job.skip;
    let failed: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);
    let halt = AtomicBool::new(false);
    // Whose turn it is to queue its call for the writer.
    let (turn, turned) = (std::sync::Mutex::new(0usize), std::sync::Condvar::new());
    std::thread::scope(|scope| -> Result<(), String> {
        let (halt, failed, work) = (&halt, &failed, &work);
        let (turn, turned) = (&turn, &turned);
        scope.spawn(move || {
            let mut records = reader.records().skip(skip);
            for seq in 0.. {
                let mut batch: Vec<(u64, csv::StringRecord)> = Vec::with_capacity(ROWS_PER_CALL);
                for record in records.by_ref().take(ROWS_PER_CALL) {
                    match record {
                        Ok(record) => {
                            let line = record.position().map_or(0, |p| p.line());
                            batch.push((line, record));
                        }
                        Err(e) => {
                            *failed.lock().unwrap() = Some(format!("{}: {e}", file.display()));
                            halt.store(true, Ordering::SeqCst);
                            return;
                        }
                    }
                }
                if batch.is_empty() || halt.load(Ordering::SeqCst) || stop.load(Ordering::SeqCst) {
                    return;
                }
                match shape.prepare(batch) {
                    Ok(prepared) => {
                        if to_workers.send((seq, prepared)).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        *failed.lock().unwrap() = Some(e);
                        halt.store(true, Ordering::SeqCst);
                        return;
                    }
                }
            }
        });
        for _ in 0..CALLS_IN_FLIGHT {
            let to_main = to_main.clone();
            scope.spawn(move || {
                loop {
                    let next = work.lock().unwrap().recv();
                    let Ok((seq, Prepared { lines, params })) = next else {
                        return;
                    };
                    if halt.load(Ordering::SeqCst) || stop.load(Ordering::SeqCst) {
                        // Taken after the stop: not started, but its turn passes.
                        let mut turn = turn.lock().unwrap();
                        while *turn != seq {
                            turn = turned.wait(turn).unwrap();
                        }
                        *turn += 1;
                        turned.notify_all();
                        continue;
                    }
                    // Checked several at a time, applied in file order: a later row about the
                    // same address must win, as it would in one call.
                    let answer = api::import_in_turn(app, account.clone(), &params, |command| {
                        let mut turn = turn.lock().unwrap();
                        while *turn != seq {
                            turn = turned.wait(turn).unwrap();
                        }
                        let queued = app.store.writer().enqueue(command);
                        *turn += 1;
                        turned.notify_all();
                        queued
                    })
                    .map(|answer| (lines, answer.result))
                    .map_err(|e| describe(&e));
                    // A call refused before it was queued still passes its turn on.
                    {
                        let mut turn = turn.lock().unwrap();
                        while *turn < seq {
                            turn = turned.wait(turn).unwrap();
                        }
                        if *turn == seq {
                            *turn += 1;
                            turned.notify_all();
                        }
                    }
                    if answer.is_err() {
                        halt.store(true, Ordering::SeqCst);
                    }
                    let _ = to_main.send((seq, answer));
                }
            });
        }
        drop(to_main);
        let mut waiting = std::collections::BTreeMap::new();
        let mut next = 0;
        for (seq, answer) in answers.iter() {
            waiting.insert(seq, answer);
            while let Some(answer) = waiting.remove(&next) {
                next += 1;
                let (lines, result) = answer?;
                let counter = |name: &str| result.get(name).and_then(Value::as_u64).unwrap_or(0);
                summary.total += counter("total");
                summary.inserted += counter("inserted");
                summary.updated += counter("updated");
                summary.deleted += counter("deleted");
                summary.invalid += counter("invalid");
                summary.new_emails += counter("new_emails");
                for entry in result
                    .get("log")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let index = entry["index"].as_u64().unwrap_or(0) as usize;
                    let line = lines.get(index).copied().unwrap_or(0);
                    if let Some(log) = &mut log {
                        log.write_record([
                            line.to_string(),
                            entry["code"].as_str().unwrap_or_default().to_string(),
                            entry["message"].as_str().unwrap_or_default().to_string(),
                        ])
                        .map_err(|e| e.to_string())?;
                    }
                    summary.logged += 1;
                }
                done += lines.len();
                summary.rows_done = done;
                progress.at((done - job.skip) as u64);
            }
        }
        if let Some(why) = failed.lock().unwrap().take() {
            return Err(why);
        }
        Ok(())
    })?;
    if stop.load(Ordering::SeqCst) && done < total_rows {
        summary.resume_skip = Some(done);
    }
    progress.finish();
    if let Some(log) = &mut log {
        log.flush().map_err(|e| e.to_string())?;
    }
    Ok(summary)
}

/// One call's parameters, and the CSV line of each of its rows.
struct Prepared {
    lines: Vec<u64>,
    params: Params,
}

/// How a file's rows become importContacts parameters.
struct CallShape {
    columns: Vec<String>,
    /// The exported `id` column is the contact's id, which an import cannot set: it is dropped.
    id_column: Option<usize>,
    /// The column `--list` adds its list to.
    list_column: Option<usize>,
    list_id: Option<i64>,
    flags: [(&'static str, bool); 3],
}

impl CallShape {
    fn prepare(&self, batch: Vec<(u64, csv::StringRecord)>) -> Result<Prepared, String> {
        let mut params = Params::default();
        let mut insert =
            |key: String, value: String| params.insert(&key, value).map_err(|e| e.to_string());
        let kept: Vec<usize> = (0..self.columns.len())
            .filter(|i| Some(*i) != self.id_column)
            .collect();
        for (n, i) in kept.iter().enumerate() {
            insert(format!("field_names[{n}]"), self.columns[*i].clone())?;
        }
        let mut lines = Vec::with_capacity(batch.len());
        for (row, (line, record)) in batch.into_iter().enumerate() {
            lines.push(line);
            for (n, i) in kept.iter().enumerate() {
                let mut cell = record.get(*i).unwrap_or_default().to_string();
                if Some(*i) == self.list_column
                    && let Some(list) = self.list_id
                {
                    cell = if cell.trim().is_empty() {
                        list.to_string()
                    } else {
                        format!("{cell},{list}")
                    };
                }
                insert(format!("data[{row}][{n}]"), cell)?;
            }
        }
        for (flag, on) in self.flags {
            insert(flag.to_string(), if on { "1" } else { "0" }.into())?;
        }
        Ok(Prepared { lines, params })
    }
}

/// `FILE.log.csv` beside `FILE.csv`.
pub fn log_path(file: &Path) -> PathBuf {
    let stem = file
        .file_stem()
        .map(|s| s.to_os_string())
        .unwrap_or_default();
    let mut name = stem;
    name.push(".log.csv");
    file.with_file_name(name)
}

/// A list given by id or by title; a title not there yet is made when `create` (not in a dry
/// run, which writes nothing).
fn resolve_list(app: &App, account: &Account, list: &str, create: bool) -> Result<i64, String> {
    let lists = app
        .store
        .read(|conn| {
            let mut statement =
                conn.prepare_cached("SELECT id, title FROM lists WHERE account_id = ?1")?;
            let rows = statement.query_map([account.id], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<rusqlite::Result<Vec<(i64, String)>>>()?)
        })
        .map_err(|e| e.to_string())?;
    if let Some((id, _)) = lists
        .iter()
        .find(|(id, title)| title == list || id.to_string() == list)
    {
        return Ok(*id);
    }
    if list.parse::<i64>().is_ok() || !create {
        return Err(format!("the account has no list \"{list}\""));
    }
    // A title not yet there is made, as a fixture would need it.
    let mut params = Params::default();
    params
        .insert("title", list.to_string())
        .map_err(|e| e.to_string())?;
    let method = api::method("createList").expect("createList exists");
    let created = api::call(app, method, account.clone(), &params).map_err(|e| describe(&e))?;
    created.result["id"]
        .as_i64()
        .ok_or_else(|| "createList answered no id".to_string())
}

fn describe(error: &Error) -> String {
    match error {
        Error::Api { code, message } => format!("{}: {message}", code.wire()),
        other => other.to_string(),
    }
}

/// What `export` is asked to do: exportContacts' parameters, and where the CSV goes.
pub struct ExportJob {
    pub db: PathBuf,
    pub account: String,
    /// exportContacts parameters: `list_id`, `tag`, `email_status`, `field_names[0]`, ...
    pub params: Vec<(String, String)>,
    /// None: standard output.
    pub out: Option<PathBuf>,
}

/// Writes the CSV an async export would write; answers the rows written.
pub fn export(job: &ExportJob) -> Result<u64, String> {
    let opened = open(&job.db, &job.account)?;
    let result = export_from(&opened, job);
    opened.app.store.close();
    result
}

fn export_from(opened: &Opened, job: &ExportJob) -> Result<u64, String> {
    let mut params = Params::default();
    for (name, value) in &job.params {
        params
            .insert(name, value.clone())
            .map_err(|e| e.to_string())?;
    }
    let query = api::export_query_for(&opened.app, opened.account.clone(), &params)
        .map_err(|e| describe(&e))?;
    let total = opened
        .app
        .store
        .read(|conn| db::contact_total(conn, opened.account.id))
        .map_err(|e| e.to_string())?;
    // The bar goes to the terminal only when the CSV does not.
    let mut progress = Progress::new(total.max(0) as u64, "exported");
    if job.out.is_none() {
        progress.quiet();
    }
    let mut rows = 0;
    let written = opened.app.store.read(|conn| {
        let mut write = |out: Box<dyn std::io::Write>| {
            crate::exports::write_csv(conn, &query, out, |n| {
                rows = n;
                progress.at(n);
            })
            .map(|_| ())
        };
        match &job.out {
            Some(path) => {
                let file = std::fs::File::create(path)
                    .map_err(|e| Error::Internal(format!("{}: {e}", path.display())))?;
                write(Box::new(std::io::BufWriter::new(file)))
            }
            None => write(Box::new(std::io::BufWriter::new(std::io::stdout().lock()))),
        }
    });
    progress.finish();
    written.map_err(|e| describe(&e))?;
    Ok(rows)
}
