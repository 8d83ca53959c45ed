//! The README's "Using it in tests" examples, run as written (shell with curl, Python with the
//! standard library) against a real server.

use crate::support::TestServer;
use std::process::Command;

/// The code block that follows `marker` in README.md.
fn example(marker: &str) -> String {
    let readme = include_str!("../../README.md");
    let after = &readme[readme.find(marker).expect("the README has the example")..];
    let start = after.find("```").unwrap();
    let body = &after[start..];
    let body = &body[body.find('\n').unwrap() + 1..];
    body[..body.find("```").unwrap()].to_string()
}

fn run(program: &str, flag: &str, code: &str, server: &TestServer) -> String {
    let output = Command::new(program)
        .args([flag, code])
        .env("UNISENDER_LOCAL_URL", format!("http://{}", server.address))
        .output()
        .unwrap_or_else(|e| panic!("{program} runs (it is a CI prerequisite): {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{program} example failed:\nstdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

fn demo_server() -> TestServer {
    TestServer::start_with(&["--account", "demo:demo-key"])
}

#[test]
fn the_shell_example_runs_as_written() {
    let server = demo_server();
    let code = format!("set -euo pipefail\n{}", example("Shell (curl and grep):"));
    assert_eq!(run("bash", "-c", &code, &server), "shell example: ok\n");
}

#[test]
fn the_python_example_runs_as_written() {
    let server = demo_server();
    let code = example("Python (the standard library only");
    assert_eq!(run("python3", "-c", &code, &server), "python example: ok\n");
}
