//! `import` and `export` on the command line: a round trip, the per-row log, refusing a
//! database a server holds, an interrupted import resumed, and the progress bar on a terminal.

use crate::support::{binary, path, run_ok, serving, start, terminate};
use std::process::Command;
use unisender_local::TestServer;

const COLUMNS: [&str; 6] = [
    "email",
    "email_status",
    "phone",
    "phone_status",
    "tags",
    "City",
];

/// A database with accounts `a` (a fixture) and `b` (empty but for the same user field).
fn fixture(dir: &std::path::Path) -> std::path::PathBuf {
    let db = dir.join("files.db");
    let server = TestServer::builder()
        .database(&db)
        .account("a", "key-a-000000")
        .account("b", "key-b-000000")
        .start();
    let post = |key: &str, method: &str, form: &[(&str, &str)]| {
        let mut form = form.to_vec();
        form.push(("api_key", key));
        ureq::post(server.api_url(method))
            .send_form(form)
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap()
    };
    for key in ["key-a-000000", "key-b-000000"] {
        post(key, "createField", &[("name", "City"), ("type", "string")]);
    }
    let mut form: Vec<(String, String)> = COLUMNS
        .iter()
        .enumerate()
        .map(|(i, c)| (format!("field_names[{i}]"), c.to_string()))
        .collect();
    for n in 0..1200 {
        let cells = [
            format!("person{n}@example.com"),
            ["new", "active", "inactive"][n % 3].to_string(),
            if n % 2 == 0 {
                format!("+7900{n:07}")
            } else {
                String::new()
            },
            if n % 2 == 0 {
                "active".into()
            } else {
                String::new()
            },
            format!("t{},\"quoted, tag\"", n % 4),
            format!("Town \"{n}\", line\nbreak"),
        ];
        for (c, cell) in cells.into_iter().enumerate() {
            form.push((format!("data[{n}][{c}]"), cell));
        }
        if form.len() > 2500 || n == 1199 {
            let pairs: Vec<(&str, &str)> =
                form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let answer = post("key-a-000000", "importContacts", &pairs);
            assert!(answer.contains("\"invalid\":0"), "{answer}");
            form.retain(|(k, _)| k.starts_with("field_names"));
            // Rows are numbered from 0 in each call.
            form.truncate(COLUMNS.len());
        }
    }
    db
}

fn export_args(db: &std::path::Path, account: &str, out: &std::path::Path) -> Vec<String> {
    let mut args = vec![
        "export".to_string(),
        "--db".into(),
        path(db).into(),
        "--account".into(),
        account.into(),
        "-o".into(),
        path(out).into(),
    ];
    for column in COLUMNS {
        args.push("--column".into());
        args.push(column.into());
    }
    args
}

#[test]
fn export_import_export_gives_the_same_file_and_rejected_rows_are_logged_by_line() {
    let dir = tempfile::tempdir().unwrap();
    let db = fixture(dir.path());
    let (first, second) = (dir.path().join("a.csv"), dir.path().join("b.csv"));
    let said = run_ok(&export_args(&db, "a", &first));
    assert!(said.contains("exported 1200 contacts"), "{said}");
    let said = run_ok(&["import", path(&first), "--db", path(&db), "--account", "b"]);
    assert!(said.contains("1200 inserted"), "{said}");
    run_ok(&export_args(&db, "b", &second));
    assert_eq!(
        std::fs::read_to_string(&first).unwrap(),
        std::fs::read_to_string(&second).unwrap()
    );

    // A file with bad rows: the log names their lines (a quoted cell may span lines).
    let bad = dir.path().join("bad.csv");
    std::fs::write(
        &bad,
        "email,City\nok@example.com,\"two\nlines\"\nnot-an-email,x\nalso@example.com,y\n",
    )
    .unwrap();
    let said = run_ok(&["import", path(&bad), "--db", path(&db), "--account", "b"]);
    assert!(
        said.contains("2 inserted") && said.contains("1 invalid"),
        "{said}"
    );
    let log = std::fs::read_to_string(dir.path().join("bad.log.csv")).unwrap();
    assert_eq!(
        log,
        "line,code,message\n4,invalid_email,Invalid email format\n"
    );

    // A dry run writes nothing.
    let said = run_ok(&[
        "import",
        path(&first),
        "--db",
        path(&db),
        "--account",
        "a",
        "--dry-run",
    ]);
    assert!(said.contains("nothing written"), "{said}");
}

#[test]
fn the_files_commands_refuse_a_database_a_server_holds() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("held.db");
    let mut server = start(&mut serving(&db, "a:key-a-000000"));
    let csv = dir.path().join("in.csv");
    std::fs::write(&csv, "email\nx@example.com\n").unwrap();
    let output = binary()
        .args(["import", path(&csv), "--db", path(&db), "--account", "a"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(
        said.contains(&format!("pid {}", server.child.id())),
        "{said}"
    );
    terminate(&mut server.child);
}

/// A database with the empty account `a`, and a CSV file beside it: `header`, then
/// `row(n)` for each of `rows` rows, then `tail`.
fn empty_account_and_csv(
    dir: &std::path::Path,
    name: &str,
    header: &str,
    rows: usize,
    row: impl Fn(usize) -> String,
    tail: &str,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let db = dir.join(format!("{name}.db"));
    run_ok(&[
        "accounts",
        "add",
        "a",
        "--key",
        "key-a-000000",
        "--db",
        path(&db),
    ]);
    let mut text = format!("{header}\n");
    for n in 0..rows {
        text.push_str(&row(n));
        text.push('\n');
    }
    text.push_str(tail);
    let csv = dir.join(format!("{name}.csv"));
    std::fs::write(&csv, text).unwrap();
    (db, csv)
}

#[test]
fn an_interrupted_import_says_how_to_resume_and_resuming_completes_it() {
    let dir = tempfile::tempdir().unwrap();
    let (db, csv) = empty_account_and_csv(
        dir.path(),
        "big",
        "email,tags",
        120_000,
        |n| format!("p{n}@example.com,t{}", n % 9),
        "",
    );
    let child = binary()
        .args(["import", path(&csv), "--db", path(&db), "--account", "a"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(250));
    // SAFETY: kill(2) on the child's pid, which has not been waited for.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let output = child.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&output.stdout);
    let skip: usize = match said.split("--skip ").nth(1) {
        Some(rest) => rest.trim().parse().unwrap(),
        None => {
            // It was fast enough to finish before the signal: nothing to resume.
            assert!(said.contains("120000 inserted"), "{said}");
            return;
        }
    };
    assert_eq!(output.status.code(), Some(1));
    assert!(
        skip > 0 && skip < 120_000 && skip.is_multiple_of(500),
        "{said}"
    );
    let said = run_ok(&[
        "import",
        path(&csv),
        "--db",
        path(&db),
        "--account",
        "a",
        "--skip",
        &skip.to_string(),
    ]);
    assert!(
        said.contains(&format!("{} inserted", 120_000 - skip)),
        "{said}"
    );
}

#[test]
fn a_terminal_sees_a_progress_bar_and_a_pipe_plain_lines() {
    let dir = tempfile::tempdir().unwrap();
    let (db, csv) = empty_account_and_csv(
        dir.path(),
        "tty",
        "email",
        3000,
        |n| format!("p{n}@example.com"),
        "",
    );
    let command = format!(
        "{} import {} --db {} --account a",
        env!("CARGO_BIN_EXE_unisender-local"),
        path(&csv),
        path(&db)
    );
    // `script` runs the command under a pseudo-terminal and copies what it draws.
    let output = Command::new("script")
        .args(["-qefc", &command, "/dev/null"])
        .output()
        .expect("script (util-linux) runs");
    let drawn = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{drawn}");
    assert!(
        drawn.contains("/3000 rows"),
        "a bar with a count: {drawn:?}"
    );
    assert!(drawn.contains("ETA"), "{drawn:?}");
    assert!(drawn.contains("3000 inserted"), "{drawn:?}");
    // Through a pipe: no bar, no escape codes.
    let piped = run_ok(&["import", path(&csv), "--db", path(&db), "--account", "a"]);
    assert!(
        !piped.contains('\u{1b}') && !piped.contains("ETA"),
        "{piped:?}"
    );
    assert!(
        piped.contains("3000 updated") || piped.contains("0 inserted"),
        "{piped}"
    );
}

#[test]
fn rows_apply_in_file_order_across_calls() {
    let dir = tempfile::tempdir().unwrap();
    // The address is made in the first call and deleted in the third: applied out of order,
    // the delete would find nothing and the insert would stay.
    let (db, csv) = empty_account_and_csv(
        dir.path(),
        "order",
        "email,delete\nkept@example.com,0\ngone@example.com,0",
        1200,
        |n| format!("filler{n}@example.com,0"),
        "gone@example.com,1\n",
    );
    let said = run_ok(&["import", path(&csv), "--db", path(&db), "--account", "a"]);
    assert!(
        said.contains("1202 inserted") && said.contains("1 deleted"),
        "{said}"
    );
    let out = dir.path().join("out.csv");
    run_ok(&[
        "export",
        "--db",
        path(&db),
        "--account",
        "a",
        "--column",
        "email",
        "-o",
        path(&out),
    ]);
    let exported = std::fs::read_to_string(&out).unwrap();
    assert!(!exported.contains("gone@example.com"), "the later row won");
    let lines: Vec<&str> = exported.lines().collect();
    assert_eq!(lines[1], "kept@example.com", "ids follow the file's order");
    assert_eq!(lines[2], "filler0@example.com");
    assert_eq!(lines.last(), Some(&"filler1199@example.com"));
}
