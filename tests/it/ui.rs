//! The inspector page in a real browser: `tests/ui/test_inspector.py` drives Debian's
//! Chromium through Playwright against this build of the binary, and leaves a screenshot of each
//! view in `target/ui-screenshots/`. `.ci/run` installs Chromium and Playwright when missing.

use std::process::Command;

#[test]
fn the_inspector_works_in_headless_chromium() {
    let root = env!("CARGO_MANIFEST_DIR");
    let output = Command::new("python3")
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/ui"])
        .current_dir(root)
        .env("UNISENDER_LOCAL_BIN", env!("CARGO_BIN_EXE_unisender-local"))
        .env("UI_SCREENSHOTS", format!("{root}/target/ui-screenshots"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("python3 runs (a CI prerequisite)");
    assert!(
        output.status.success(),
        "the browser tests failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
