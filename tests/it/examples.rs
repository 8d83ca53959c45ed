//! The examples for tests in other languages (`examples/python`, a pytest fixture, and
//! `examples/node`, Node's own test runner), run against this build of the binary. `.ci/run`
//! installs pytest and Node when missing.

use std::process::Command;

fn run(program: &str, args: &[&str]) {
    let output = Command::new(program)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("UNISENDER_LOCAL_BIN", env!("CARGO_BIN_EXE_unisender-local"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .unwrap_or_else(|e| panic!("{program} runs (a CI prerequisite): {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_python_pytest_example_passes() {
    run(
        "python3",
        &[
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "examples/python",
        ],
    );
}

#[test]
fn the_node_example_passes() {
    run("node", &["--test", "examples/node/"]);
}
