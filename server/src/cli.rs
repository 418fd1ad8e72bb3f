//! Command-line entry points: argument parsing, progress on stderr, and the printed results of
//! `coverlay run`. Everything it shows comes from `run::RunReport`.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::engine::Exit;
use crate::libtest::Outcome;
use crate::report;
use crate::run::{self, Progress, RunOptions, RunReport};

/// Live test coverage for Rust: a ptrace coverage engine and a language server.
#[derive(Debug, Parser)]
#[command(name = "coverlay", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build the workspace's tests, run them under the coverage engine, print a per-file table.
    Run(RunArgs),
    /// Serve the Language Server Protocol on stdin/stdout (started by the editor).
    Lsp,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Workspace or package directory.
    #[arg(default_value = ".")]
    path: PathBuf,
    /// Write an lcov tracefile here.
    #[arg(long, value_name = "FILE")]
    lcov: Option<PathBuf>,
    /// Write the JSON report here (schema in the README).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Write a Cobertura XML report here (GitLab, Jenkins, Azure DevOps).
    #[arg(long, value_name = "FILE")]
    cobertura: Option<PathBuf>,
    /// Write a static HTML report into this directory (index.html, a page per file).
    #[arg(long, value_name = "DIR")]
    html: Option<PathBuf>,
    /// For the few addresses a counter trampoline cannot serve: executions counted by int3 per
    /// test and process before the trap is lifted (those lines are reported as "≥ N").
    #[arg(long, default_value_t = run::DEFAULT_COUNT_CAP, value_name = "N")]
    count_cap: u32,
    /// Record only whether each line ran: one trap per line, nothing after (cheapest for
    /// CPU-heavy suites): every hit count is 0 or 1.
    #[arg(long, conflicts_with = "count_cap")]
    no_counts: bool,
    /// Count every address with int3 traps instead of trampolines (slow; for testing the fallback).
    #[arg(long, hide = true, conflicts_with = "no_counts")]
    traps_only: bool,
    /// Seconds a test may run before it is killed and reported as timed out.
    #[arg(long, default_value_t = run::DEFAULT_TEST_TIMEOUT_SECS, value_name = "SECS")]
    timeout: u64,
    /// Leave test code (#[test] fns, #[cfg(test)] modules, tests/ files) out of the results.
    #[arg(long)]
    exclude_tests: bool,
    /// No progress lines while building and running.
    #[arg(short, long)]
    quiet: bool,
    /// After writing the reports, exit with code 3 when line coverage is below PERCENT (a CI
    /// gate; failing tests still exit with 101).
    #[arg(long, value_name = "PERCENT")]
    fail_under: Option<f64>,
    /// Test executables run at once (default: one per core).
    #[arg(short, long, value_name = "N")]
    jobs: Option<usize>,
    /// Arguments for `cargo test`, e.g. `-- --features serde -p mycrate`.
    #[arg(last = true, value_name = "CARGO_ARGS")]
    cargo_args: Vec<String>,
}

pub fn main(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Run(args) => match run_command(args) {
            Ok(code) => code,
            Err(error) => {
                eprintln!("error: {error:#}");
                ExitCode::from(2)
            }
        },
        Command::Lsp => crate::lsp::run_stdio(),
    }
}

fn run_command(args: RunArgs) -> anyhow::Result<ExitCode> {
    let defaults = RunOptions::default();
    let options = RunOptions {
        cargo_args: args.cargo_args,
        count_cap: args.count_cap.max(1),
        first_hit: args.no_counts,
        traps_only: args.traps_only,
        timeout: Duration::from_secs(args.timeout),
        exclude_tests: args.exclude_tests,
        jobs: args.jobs.unwrap_or(defaults.jobs),
        cancel: None,
        only_tests: None,
        snapshot_sources: false,
    };
    let progress = ProgressLine::new();
    let report = run::run(&args.path, &options, &|p| {
        if !args.quiet {
            progress.show(p)
        }
    });
    progress.clear();
    let report = report?;

    print_failures(&report);
    print!(
        "{}",
        report::table::render(&report.coverage, &report.workspace.root, colour())
    );
    if let Some(path) = &args.lcov {
        std::fs::write(path, report::lcov::render(&report.coverage))
            .with_context(|| format!("writing lcov to {}", path.display()))?;
        eprintln!("wrote lcov to {}", path.display());
    }
    if let Some(path) = &args.cobertura {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let xml = report::cobertura::render(&report.coverage, &report.workspace, now);
        std::fs::write(path, xml)
            .with_context(|| format!("writing Cobertura XML to {}", path.display()))?;
        eprintln!("wrote Cobertura XML to {}", path.display());
    }
    if let Some(dir) = &args.html {
        report::html::write(&report.coverage, &report.workspace.root, dir)
            .with_context(|| format!("writing the HTML report to {}", dir.display()))?;
        eprintln!("wrote HTML report to {}", dir.join("index.html").display());
    }
    if let Some(path) = &args.json {
        std::fs::write(path, report::json::render(&report))
            .with_context(|| format!("writing JSON to {}", path.display()))?;
        eprintln!("wrote JSON to {}", path.display());
    }
    let total = crate::coverage::percent(report.coverage.covered(), report.coverage.coverable());
    let below = args.fail_under.filter(|&threshold| total < threshold);
    if let Some(threshold) = below {
        eprintln!("coverage {total:.2}% is below --fail-under {threshold}%");
    }
    Ok(if !report.tests_passed() {
        ExitCode::from(101)
    } else if below.is_some() {
        ExitCode::from(FAIL_UNDER_EXIT)
    } else {
        ExitCode::SUCCESS
    })
}

/// Colours in the table: on a terminal, unless `NO_COLOR` is set (no-color.org).
fn colour() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Exit code of `coverlay run --fail-under` when coverage is below the threshold.
pub const FAIL_UNDER_EXIT: u8 = 3;

/// Failures as `cargo test` shows them: each failed test's captured output, then what died how.
fn print_failures(report: &RunReport) {
    for run in report.executables.iter().filter(|r| !r.succeeded()) {
        let name = run
            .executable
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        println!("\n---- {} ({name}) ----", run.executable.target);
        let mut explained = false;
        for test in &run.tests {
            match &test.outcome {
                Outcome::Failed => {
                    println!("test {} FAILED", test.name);
                    if let Some(message) = &test.message {
                        println!("{message}");
                    }
                    explained = true;
                }
                Outcome::Crashed { signal } => {
                    println!("test {} crashed (signal {signal})", test.name);
                    explained = true;
                }
                Outcome::TimedOut => {
                    println!("test {} timed out", test.name);
                    explained = true;
                }
                Outcome::Passed | Outcome::Ignored => {}
            }
        }
        if explained {
            continue;
        }
        print!("{}{}", run.stdout, run.stderr);
        for exit in run.exits.iter().filter(|e| **e != Exit::Code(0)) {
            match exit {
                Exit::Code(code) => println!("the test process exited with code {code}"),
                Exit::Signal(signal) => println!("the test process was killed by signal {signal}"),
                Exit::TimedOut => println!("the test process was killed after the timeout"),
                Exit::Cancelled => println!("cancelled"),
            }
        }
    }
    let count = |pred: fn(&Outcome) -> bool| {
        report
            .coverage
            .tests
            .iter()
            .filter(|t| pred(&t.outcome))
            .count()
    };
    println!(
        "\ntests: {} passed; {} failed; {} ignored; {} timed out; {} crashed\n",
        count(|o| *o == Outcome::Passed),
        count(|o| *o == Outcome::Failed),
        count(|o| *o == Outcome::Ignored),
        count(|o| *o == Outcome::TimedOut),
        count(|o| matches!(o, Outcome::Crashed { .. })),
    );
}

/// One status line on stderr, rewritten in place on a terminal and printed per phase otherwise.
struct ProgressLine {
    tty: bool,
    last: std::sync::Mutex<String>,
}

impl ProgressLine {
    fn new() -> Self {
        Self {
            tty: std::io::stderr().is_terminal(),
            last: std::sync::Mutex::new(String::new()),
        }
    }

    fn show(&self, progress: Progress) {
        let text = match progress {
            Progress::Building { crates_compiled } => {
                format!("building tests ({crates_compiled} crates compiled)")
            }
            Progress::Running { done, total } => {
                format!("running test executables under coverage ({done}/{total})")
            }
        };
        let mut last = self.last.lock().expect("progress lock");
        let mut stderr = std::io::stderr().lock();
        if self.tty {
            let _ = write!(stderr, "\r\x1b[K{text}");
            let _ = stderr.flush();
        } else if text.split(' ').next() != last.split(' ').next() {
            let _ = writeln!(stderr, "{}", text.split(" (").next().unwrap_or(&text));
        }
        *last = text;
    }

    fn clear(&self) {
        if self.tty {
            let _ = write!(std::io::stderr(), "\r\x1b[K");
        }
    }
}
