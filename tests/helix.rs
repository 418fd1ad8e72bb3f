//! A real Helix (25.07.1, Debian unstable's, run through its own glibc) in tmux runs `coverlay lsp`
//! on a copy of the `ledger` fixture: tests/helix/check.py reads the screen for the uncovered
//! `close_account` diagnostic, a `×N` hint on every `//~ hit` line and none on `//~ miss` lines,
//! then types a test, writes it, and sees the diagnostic go. Prerequisites come from
//! tests/helix/setup.sh (which .ci/run runs); without them the test is skipped with a note, except
//! in CI (`CI=true`), where it fails.

use std::path::{Path, PathBuf};
use std::process::Command;

fn cache() -> PathBuf {
    match std::env::var_os("COVERLAY_HELIX_CACHE") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
            .join(".cache/coverlay-helix"),
    }
}

#[test]
fn helix_shows_diagnostics_and_hints_and_follows_a_write() {
    let ready = cache().join("hx").is_file() && Path::new("/usr/bin/tmux").is_file();
    if !ready {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("Helix test prerequisites missing: run tests/helix/setup.sh (see .ci/run)");
        }
        eprintln!("note: hx or tmux missing, skipping the Helix test (tests/helix/setup.sh)");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/helix/check.py");
    let run = Command::new("python3")
        .arg(script)
        .env("COVERLAY_BIN", env!("CARGO_BIN_EXE_coverlay"))
        .env("COVERLAY_HELIX_WORK", work.path())
        .output()
        .expect("python3 runs");
    let log = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{log}\n{}\n(captures in {})",
        String::from_utf8_lossy(&run.stderr),
        work.path().join("captures").display()
    );
    assert!(log.contains("ALL PASSED"), "{log}");
}
