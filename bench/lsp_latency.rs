//! LSP request latency while a coverage run is in progress (issue 4: p99 under 10 ms).
//!
//!     cargo bench --bench lsp_latency            # from the repository root
//!     LSP_LATENCY_FUNCTIONS=2000 cargo bench --bench lsp_latency
//!
//! Generates a crate whose `src/lib.rs` has a few thousand lines (400 functions by default, half of
//! them called by tests), lets `coverlay lsp` measure it once, then edits the file and asks for a
//! rerun; while that run is building and tracing (a test keeps both cores busy while a flag file
//! exists), it sends inlay hint requests for a 60-line viewport and for the whole file, and code
//! lens requests, one at a time, and prints p50/p99/max round trips as the client sees them (JSON
//! encoding included). `COVERLAY_RUN_NICE=0` compares with runs at normal priority.

#[path = "../tests/lsp_support/mod.rs"]
mod lsp_support;

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use lsp_support::{uri, Client};
use serde_json::json;

fn generate(root: &std::path::Path, functions: usize) -> String {
    std::fs::create_dir_all(root.join("src")).unwrap();
    std::fs::write(
        root.join("Cargo.toml"),
        "[package]\nname = \"bigfile\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[workspace]\n",
    )
    .unwrap();
    let mut lib = String::from("//! Generated for bench/lsp_latency.rs.\n\n");
    for i in 0..functions {
        writeln!(
            lib,
            "pub fn step_{i}(x: u64) -> u64 {{\n    let y = x.wrapping_mul({m});\n    \
             if y % 3 == 0 {{\n        y / 3\n    }} else {{\n        y + {i}\n    }}\n}}\n",
            m = i + 7
        )
        .unwrap();
    }
    lib.push_str("#[cfg(test)]\nmod tests {\n    use super::*;\n\n");
    for i in (0..functions).step_by(2) {
        writeln!(
            lib,
            "    #[test]\n    fn step_{i}_works() {{\n        for x in 0..20 {{\n            \
             assert!(step_{i}(x) <= u64::MAX);\n        }}\n    }}\n"
        )
        .unwrap();
    }
    // While the flag file exists, a test keeps both cores busy (as a CPU-heavy suite would).
    lib.push_str(
        "    #[test]\n    fn spins_while_the_flag_exists() {\n        \
         let flag = std::path::Path::new(env!(\"CARGO_MANIFEST_DIR\")).join(\"slow.flag\");\n        \
         let spin = move || {\n            let start = std::time::Instant::now();\n            \
         let mut n = 0u64;\n            \
         while flag.exists() && start.elapsed().as_secs() < 120 {\n                \
         for i in 0..1_000_000u64 {\n                    n = std::hint::black_box(n ^ i);\n                }\n            }\n            n\n        };\n        \
         let other = std::thread::spawn(spin.clone());\n        \
         spin();\n        other.join().unwrap();\n    }\n}\n",
    );
    std::fs::write(root.join("src/lib.rs"), &lib).unwrap();
    lib
}

fn percentiles(name: &str, phase: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let at = |p: f64| samples[((samples.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "| {name:<28} | {phase:<6} | {:>6} | {:>8.2} | {:>8.2} | {:>8.2} |",
        samples.len(),
        at(0.5).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        samples.last().unwrap().as_secs_f64() * 1e3
    );
}

/// Viewport hints every round, whole-file hints and lenses every fourth, for `limit` or `rounds`.
fn measure(
    client: &mut Client,
    lib_uri: &str,
    lines: u64,
    limit: Duration,
    rounds: u64,
) -> [Vec<Duration>; 3] {
    let (mut viewport, mut whole, mut lenses) = (Vec::new(), Vec::new(), Vec::new());
    let measuring = Instant::now();
    let mut round = 0;
    while measuring.elapsed() < limit && round < rounds {
        let first = (round * 37) % lines.saturating_sub(60).max(1);
        let t = Instant::now();
        client
            .request(
                "textDocument/inlayHint",
                json!({"textDocument": {"uri": lib_uri},
                       "range": {"start": {"line": first, "character": 0},
                                 "end": {"line": first + 60, "character": 0}}}),
            )
            .unwrap();
        viewport.push(t.elapsed());
        if round % 4 == 0 {
            let t = Instant::now();
            client
                .request(
                    "textDocument/inlayHint",
                    json!({"textDocument": {"uri": lib_uri},
                           "range": {"start": {"line": 0, "character": 0},
                                     "end": {"line": lines, "character": 0}}}),
                )
                .unwrap();
            whole.push(t.elapsed());
            let t = Instant::now();
            client
                .request(
                    "textDocument/codeLens",
                    json!({"textDocument": {"uri": lib_uri}}),
                )
                .unwrap();
            lenses.push(t.elapsed());
        }
        let latest = if round % 4 == 0 {
            [viewport.last(), whole.last(), lenses.last()]
        } else {
            [viewport.last(), None, None]
        };
        if let Some(slow) = latest
            .into_iter()
            .flatten()
            .find(|d| **d > Duration::from_millis(10))
        {
            let phase = client
                .log
                .iter()
                .rev()
                .find_map(|m| m["params"]["value"]["message"].as_str())
                .unwrap_or("?");
            eprintln!(
                "slow: {slow:?} at {:?} during {phase:?}",
                measuring.elapsed()
            );
        }
        round += 1;
    }
    [viewport, whole, lenses]
}

fn main() {
    let functions: usize = std::env::var("LSP_LATENCY_FUNCTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400);
    let dir = tempfile::Builder::new()
        .prefix("coverlay-lsp-latency-")
        .tempdir()
        .unwrap();
    let root = dir.path();
    let text = generate(root, functions);
    let lines = text.lines().count() as u64;
    let lib = root.join("src/lib.rs");
    let lib_uri = uri(&lib);

    let mut client = Client::start(env!("CARGO_BIN_EXE_coverlay"), root);
    eprintln!(
        "server pid {}, log {}",
        client.pid(),
        client.stderr.display()
    );
    client.initialize(
        root,
        json!({}),
        // As Neovim 0.11 and VS Code declare them: tooltips are resolved lazily.
        json!({"window": {"workDoneProgress": true},
               "workspace": {"inlayHint": {"refreshSupport": true}},
               "textDocument": {"inlayHint": {"resolveSupport": {"properties": ["tooltip"]}}}}),
    );
    client.open(&lib);
    let started = Instant::now();
    client.wait_diagnostics(&lib_uri, Duration::from_secs(600), |d| !d.is_empty());
    eprintln!("first run: {:.1} s", started.elapsed().as_secs_f64());

    let idle = measure(&mut client, &lib_uri, lines, Duration::from_secs(5), 400);

    // A second run that stays in progress: rebuild after an edit, then a test waits on the flag.
    std::fs::write(root.join("slow.flag"), "").unwrap();
    client.edit_and_save(&lib, 2, &format!("{text}// edited\n"));
    client.wait_for("the run to start", Duration::from_secs(30), |m| {
        m["method"] == "$/progress" && m["params"]["value"]["kind"] == "begin"
    });
    let busy = measure(&mut client, &lib_uri, lines, Duration::from_secs(20), 2000);
    // The first run's progress ended before; a second `end` means the measured run finished.
    let ends = client
        .log
        .iter()
        .filter(|m| m["method"] == "$/progress" && m["params"]["value"]["kind"] == "end")
        .count();
    let still_running = ends < 2;
    println!("\nLSP latency ({lines}-line file, {functions} fns), client round trips");
    println!("| request                      | phase  | count  | p50 ms   | p99 ms   | max ms   |");
    println!("|------------------------------|--------|--------|----------|----------|----------|");
    for (phase, [viewport, whole, lenses]) in [("idle", idle), ("run", busy)] {
        percentiles("inlayHint (60-line view)", phase, viewport);
        percentiles("inlayHint (whole file)", phase, whole);
        percentiles("codeLens (whole file)", phase, lenses);
    }
    println!("run still in progress at the end: {still_running}");
    std::fs::remove_file(root.join("slow.flag")).unwrap();
    client.shutdown();
}
