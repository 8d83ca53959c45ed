//! The real binary started as a server, its address read back from the first line it prints.
//! Shared by the tests and the benchmarks.
// The benchmarks use only part of it.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A running server process.
pub struct Served {
    pub child: Child,
    /// Where to connect: the listening address, an unspecified IP replaced by loopback.
    pub address: SocketAddr,
    /// `listening on http://HOST:PORT`, as printed.
    pub first_line: String,
    /// The rest of the server's stdout, kept open so that it can go on printing.
    pub stdout: BufReader<ChildStdout>,
}

/// The binary under test; `UNISENDER_LOCAL_TEST_BINARY` names another build to run the same
/// tests against (an older release, to measure what a change improved).
pub fn binary() -> Command {
    match std::env::var_os("UNISENDER_LOCAL_TEST_BINARY") {
        Some(other) => Command::new(other),
        None => Command::new(env!("CARGO_BIN_EXE_unisender-local")),
    }
}

/// The binary set to serve `db` on a free loopback port with one account (`LOGIN:KEY`).
pub fn serving(db: &std::path::Path, account: &str) -> Command {
    let mut command = binary();
    command
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--account",
            account,
            "--db",
        ])
        .arg(db)
        .env("UNISENDER_LOCAL_QUIET", "true");
    command
}

/// Runs the binary with `args` to completion, fails the test unless it succeeded, and returns
/// what it printed on stdout.
pub fn run_ok<S: AsRef<OsStr>>(args: &[S]) -> String {
    let output = binary().args(args).output().expect("runs the binary");
    assert!(
        output.status.success(),
        "{:?} failed: {}{}",
        args.iter()
            .map(|a| a.as_ref().to_string_lossy())
            .collect::<Vec<_>>(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A temporary path as an argument (temporary paths here are UTF-8).
pub fn path(path: &std::path::Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

/// Spawns `command` (the binary with its `serve ...` arguments) and waits for its listening line.
pub fn start(command: &mut Command) -> Served {
    let mut child = command
        .stdout(Stdio::piped())
        .spawn()
        .expect("starts the server binary");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
    let mut first_line = String::new();
    stdout
        .read_line(&mut first_line)
        .expect("reads the listening line");
    let mut address: SocketAddr = first_line
        .trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {first_line:?}"))
        .parse()
        .expect("the listening line names an address");
    if address.ip().is_unspecified() {
        address.set_ip(Ipv4Addr::LOCALHOST.into());
    }
    Served {
        child,
        address,
        first_line,
        stdout,
    }
}

/// SIGTERM, then a bounded wait; SIGKILL if the process does not stop.
pub fn terminate(child: &mut Child) -> ExitStatus {
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().expect("waits for the child") {
            return status;
        }
        if Instant::now() > until {
            let _ = child.kill();
            return child.wait().expect("waits after kill");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
