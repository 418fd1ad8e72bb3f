//! A real Helix (25.07.1, Debian unstable's, run through its own glibc) in tmux runs `coverlay lsp`
//! on a copy of the `ledger` fixture: tests/helix/check.py reads the screen for the uncovered
//! `close_account` diagnostic, a `×N` hint on every `//~ hit` line and none on `//~ miss` lines,
//! then types a test, writes it, and sees the diagnostic go. Prerequisites come from
//! tests/helix/setup.sh (which .ci/run runs); without them the test is skipped with a note, except
//! in CI (`CI=true`), where it fails.

mod lsp_support;

use std::path::Path;
use std::process::Command;

#[test]
fn helix_shows_diagnostics_and_hints_and_follows_a_write() {
    let cache = lsp_support::editor_cache("COVERLAY_HELIX_CACHE", "coverlay-helix");
    if !(cache.join("hx").is_file() && Path::new("/usr/bin/tmux").is_file()) {
        lsp_support::editor_missing("hx or tmux", "tests/helix/setup.sh");
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
