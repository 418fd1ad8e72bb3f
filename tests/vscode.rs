//! The VS Code extension in a real VS Code: tests/vscode/e2e.mjs runs code-server (VS Code 1.139)
//! with the `.vsix` that editors/vscode/build.sh packages around this build's `coverlay`, drives it
//! with headless Chromium, and checks the gutter against the `ledger` fixture's markers, the Test
//! Coverage view, the coverage of one test, and that the gutter follows a typed and saved test.
//! Its prerequisites come from tests/vscode/setup.sh (which .ci/run runs); without them the test
//! is skipped with a note, except in CI (`CI=true`), where it fails.

mod lsp_support;

use std::path::Path;
use std::process::Command;

#[test]
fn vscode_shows_the_coverage_and_follows_a_save() {
    let cache = lsp_support::editor_cache("COVERLAY_VSCODE_CACHE", "coverlay-vscode");
    if !(cache.join("stamp").is_file() && Path::new("/usr/bin/chromium").is_file()) {
        lsp_support::editor_missing("code-server or chromium", "tests/vscode/setup.sh");
        return;
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let extension = repo.join("editors/vscode");
    let built = Command::new("bash")
        .arg(extension.join("build.sh"))
        .env("COVERLAY_BIN", env!("CARGO_BIN_EXE_coverlay"))
        .output()
        .expect("bash runs");
    assert!(
        built.status.success(),
        "editors/vscode/build.sh failed:\n{}\n{}",
        String::from_utf8_lossy(&built.stdout),
        String::from_utf8_lossy(&built.stderr)
    );
    let out = repo.join("target/vscode-e2e");
    // Short: code-server's sockets live under it (a socket path has at most 107 bytes).
    let work = tempfile::Builder::new()
        .prefix("cv-")
        .tempdir_in("/tmp")
        .unwrap();
    let run = Command::new("node")
        .arg(repo.join("tests/vscode/e2e.mjs"))
        .arg("--vsix")
        .arg(extension.join("coverlay-linux-x64.vsix"))
        .arg("--out")
        .arg(&out)
        .arg("--tmp")
        .arg(work.path())
        .output()
        .expect("node runs");
    let log = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{log}\n{}\n(screenshots and logs in {})",
        String::from_utf8_lossy(&run.stderr),
        out.display()
    );
    assert!(log.contains("all checks passed"), "{log}");
    assert!(out.join("editor.png").is_file());
}
