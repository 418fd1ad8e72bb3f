//! Command-line entry points: argument parsing and the printed results of `coverlay run` and
//! `coverlay merge`. What a run shows comes from `run::RunReport`, what a merge shows from JSON.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::combine;
use crate::coverage::{Coverage, TestInfo};
use crate::engine::Exit;
use crate::libtest::Outcome;
use crate::partition::Partition;
use crate::report::{self, RunInfo};
use crate::run::{self, RunOptions, RunReport};

mod progress;

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
    /// Combine the JSON reports of partitioned runs (`run --partition`) into the full run's
    /// reports: hits added, tests united.
    Merge(MergeArgs),
    /// Serve the Language Server Protocol on stdin/stdout (started by the editor).
    Lsp,
    /// cargo's runner while coverlay learns the tests' environment: records it into DIR.
    #[command(hide = true)]
    RecordEnv {
        dir: PathBuf,
        exe: PathBuf,
        /// The test executable's arguments (ignored: nothing runs).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
    /// rustdoc's runner while coverlay builds the doctests: keeps each doctest executable in DIR.
    #[command(hide = true)]
    RecordDoctest {
        dir: PathBuf,
        exe: PathBuf,
        /// The doctest's arguments (ignored: nothing runs).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
}

/// The reports `run` and `merge` write, and the gate.
#[derive(Debug, Args)]
struct ReportArgs {
    /// Write an lcov tracefile here.
    #[arg(long, value_name = "FILE")]
    lcov: Option<PathBuf>,
    /// Write the JSON report here (schema in the README; `coverlay merge` reads it).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Write a Cobertura XML report here (GitLab, Jenkins, Azure DevOps).
    #[arg(long, value_name = "FILE")]
    cobertura: Option<PathBuf>,
    /// Write a static HTML report into this directory (index.html, a page per file).
    #[arg(long, value_name = "DIR")]
    html: Option<PathBuf>,
    /// After writing the reports, exit with code 3 when line coverage is below PERCENT (a CI
    /// gate; failing tests still exit with 101).
    #[arg(long, value_name = "PERCENT")]
    fail_under: Option<f64>,
}

#[derive(Debug, Args)]
struct MergeArgs {
    /// JSON reports of `coverlay run --json`, typically one per `--partition` slice.
    #[arg(required = true, value_name = "REPORT")]
    reports: Vec<PathBuf>,
    #[command(flatten)]
    reports_out: ReportArgs,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Workspace or package directory.
    #[arg(default_value = ".")]
    path: PathBuf,
    #[command(flatten)]
    reports: ReportArgs,
    /// Run only one slice of the tests, for sharding a run over CI machines (cargo-nextest's
    /// `count:K/N`, `hash:K/N` or `slice:K/N`); `coverlay merge` combines the slices' JSON.
    #[arg(long, value_name = "KIND:K/N")]
    partition: Option<Partition>,
    /// For the few addresses a counter trampoline cannot serve: executions counted by int3 per
    /// test and process before the trap is lifted (those lines are reported as "≥ N").
    #[arg(long, default_value_t = run::DEFAULT_COUNT_CAP, value_name = "N")]
    count_cap: u32,
    /// Record only whether each line ran: one trap per line, nothing after (cheapest for
    /// CPU-heavy suites): every hit count is 0 or 1.
    #[arg(long, conflicts_with = "count_cap")]
    no_counts: bool,
    /// No branch coverage: do not count the two sides of `if`, `while`, `&&`/`||`, `?`, guards
    /// and `let … else`, nor `match` arms (with --no-counts, only the sides with an address of
    /// their own are reported).
    #[arg(long)]
    no_branches: bool,
    /// Count every address with int3 traps instead of trampolines (slow; for testing the fallback).
    #[arg(long, hide = true, conflicts_with = "no_counts")]
    traps_only: bool,
    /// Seconds a test may run before it is killed and reported as timed out.
    #[arg(long, default_value_t = run::DEFAULT_TEST_TIMEOUT_SECS, value_name = "SECS")]
    timeout: u64,
    /// Leave test code (#[test] fns, #[cfg(test)] modules, tests/ files) out of the results.
    #[arg(long)]
    exclude_tests: bool,
    /// Do not build or run the doctests (they are measured by default, like `cargo test` runs them).
    #[arg(long)]
    no_doctests: bool,
    /// No progress lines while building and running.
    #[arg(short, long)]
    quiet: bool,
    /// Run a failed test again, alone, up to N more times; one that then passes is reported
    /// flaky (it passed), with the passing run's coverage (cargo-nextest's `--retries`).
    #[arg(long, default_value_t = 0, value_name = "N")]
    retries: u32,
    /// Test executables run at once (default: one per core).
    #[arg(short, long, value_name = "N")]
    jobs: Option<usize>,
    /// Arguments for `cargo test`, e.g. `-- --features serde -p mycrate`.
    #[arg(last = true, value_name = "CARGO_ARGS")]
    cargo_args: Vec<String>,
}

pub fn main(cli: Cli) -> ExitCode {
    let done = match cli.command {
        Command::Run(args) => run_command(args),
        Command::Merge(args) => merge_command(args),
        Command::Lsp => return crate::lsp::run_stdio(),
        Command::RecordEnv { dir, exe, .. } => crate::test_env::record_runner(&dir, &exe)
            .map(|()| ExitCode::SUCCESS)
            .with_context(|| format!("recording the environment of {}", exe.display())),
        Command::RecordDoctest { dir, exe, .. } => crate::doctests::record_runner(&dir, &exe)
            .map(|()| ExitCode::SUCCESS)
            .with_context(|| format!("keeping the doctest {}", exe.display())),
    };
    done.unwrap_or_else(|error| {
        eprintln!("error: {error:#}");
        ExitCode::from(2)
    })
}

/// First hits tell that an address ran, not how often: a condition's side that is a difference
/// of counts cannot be known, so fewer branches are reported than with counts.
const NO_COUNTS_BRANCHES: &str = "note: with --no-counts, branch sides are reported only where \
     they have an address of their own (taken or not) and match arms from their lines; the other \
     branches need counts";

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
        cancel: Some(interrupted()),
        only_tests: None,
        retries: args.retries,
        doctests: !args.no_doctests,
        partition: args.partition,
        snapshot_sources: false,
        branches: !args.no_branches,
    };
    if options.first_hit && options.branches {
        eprintln!("{NO_COUNTS_BRANCHES}");
    }
    let progress = (!args.quiet).then(progress::Display::new);
    let report = run::run(&args.path, &options, &|p| {
        if let Some(progress) = &progress {
            progress.show(p)
        }
    });
    drop(progress);
    if let Err(run::RunError::Cancelled) = report {
        eprintln!("interrupted: the build and the traced tests were stopped");
        return Ok(ExitCode::from(130));
    }
    let report = report?;

    print_failures(&report);
    print_summary(&report.coverage.tests);
    let passed = report.tests_passed();
    write_reports(
        &report.coverage,
        &RunInfo::of(&report),
        &args.reports,
        passed,
    )
}

fn merge_command(args: MergeArgs) -> anyhow::Result<ExitCode> {
    let mut parts = Vec::with_capacity(args.reports.len());
    for path in &args.reports {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let (coverage, info) =
            report::json::parse(&text).with_context(|| format!("reading {}", path.display()))?;
        parts.push(combine::Part {
            name: path.display().to_string(),
            coverage,
            info,
        });
    }
    let combined = combine::combine(parts);
    for warning in &combined.warnings {
        eprintln!("warning: {warning}");
    }
    let failed: Vec<&TestInfo> = combined
        .coverage
        .tests
        .iter()
        .filter(|t| !matches!(t.outcome, Outcome::Passed | Outcome::Ignored))
        .collect();
    for test in &failed {
        println!("\ntest {} {}", test.id, outcome_text(&test.outcome));
        if let Some(message) = &test.message {
            println!("{message}");
        }
    }
    print_summary(&combined.coverage.tests);
    let exited_cleanly = combined
        .info
        .executables
        .iter()
        .flat_map(|e| &e.exits)
        .all(|exit| exit == "Code(0)");
    let passed = failed.is_empty() && exited_cleanly;
    write_reports(
        &combined.coverage,
        &combined.info,
        &args.reports_out,
        passed,
    )
}

/// The table on stdout, then each report asked for; the exit code: 101 when a test failed,
/// [`FAIL_UNDER_EXIT`] when coverage is below `--fail-under`.
fn write_reports(
    coverage: &Coverage,
    info: &RunInfo,
    args: &ReportArgs,
    passed: bool,
) -> anyhow::Result<ExitCode> {
    print!("{}", report::table::render(coverage, &info.root, colour()));
    if let Some(path) = &args.lcov {
        std::fs::write(path, report::lcov::render(coverage))
            .with_context(|| format!("writing lcov to {}", path.display()))?;
        eprintln!("wrote lcov to {}", path.display());
    }
    if let Some(path) = &args.cobertura {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let xml = report::cobertura::render(coverage, info, now);
        std::fs::write(path, xml)
            .with_context(|| format!("writing Cobertura XML to {}", path.display()))?;
        eprintln!("wrote Cobertura XML to {}", path.display());
    }
    if let Some(dir) = &args.html {
        report::html::write(coverage, &info.root, dir)
            .with_context(|| format!("writing the HTML report to {}", dir.display()))?;
        eprintln!("wrote HTML report to {}", dir.join("index.html").display());
    }
    if let Some(path) = &args.json {
        std::fs::File::create(path)
            .map(std::io::BufWriter::new)
            .map_err(anyhow::Error::from)
            .and_then(|mut out| {
                report::json::write(coverage, info, &mut out)?;
                Ok(std::io::Write::flush(&mut out)?)
            })
            .with_context(|| format!("writing JSON to {}", path.display()))?;
        eprintln!("wrote JSON to {}", path.display());
    }
    let total = crate::coverage::percent(coverage.covered(), coverage.coverable());
    let below = args.fail_under.filter(|&threshold| total < threshold);
    if let Some(threshold) = below {
        eprintln!("coverage {total:.2}% is below --fail-under {threshold}%");
    }
    Ok(if !passed {
        ExitCode::from(101)
    } else if below.is_some() {
        ExitCode::from(FAIL_UNDER_EXIT)
    } else {
        ExitCode::SUCCESS
    })
}

/// Set by SIGINT or SIGTERM: cargo runs in a process group of its own and the traced tests under
/// the tracer, so Ctrl-C reaches neither; the run stops them itself when this is set.
static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn on_interrupt(_: libc::c_int) {
    INTERRUPTED.store(true, std::sync::atomic::Ordering::Release);
}

/// A cancel flag for the run that Ctrl-C (or SIGTERM) sets.
fn interrupted() -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let action = SigAction::new(
        SigHandler::Handler(on_interrupt),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for signal in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        if let Err(error) = unsafe { sigaction(signal, &action) } {
            tracing::warn!("cannot handle {signal}: {error}");
        }
    }
    let cancel = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = cancel.clone();
    std::thread::spawn(move || loop {
        if INTERRUPTED.load(std::sync::atomic::Ordering::Acquire) {
            flag.store(true, std::sync::atomic::Ordering::Release);
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    });
    cancel
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
                Outcome::Passed | Outcome::Ignored => {}
                failed => {
                    println!("test {} {}", test.name, outcome_text(failed));
                    if let Some(message) =
                        test.message.as_ref().filter(|_| *failed == Outcome::Failed)
                    {
                        println!("{message}");
                    }
                    explained = true;
                }
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
}

fn outcome_text(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Passed => "passed".into(),
        Outcome::Ignored => "ignored".into(),
        Outcome::Failed => "FAILED".into(),
        Outcome::TimedOut => "timed out".into(),
        Outcome::Crashed { signal } => format!("crashed (signal {signal})"),
    }
}

/// The flaky tests, then `cargo test`'s closing line, over every test of the run.
fn print_summary(tests: &[TestInfo]) {
    let flaky: Vec<&TestInfo> = tests.iter().filter(|t| t.flaky()).collect();
    for test in &flaky {
        println!(
            "\ntest {} is flaky: it passed on attempt {}",
            test.id, test.attempts
        );
    }
    let count = |pred: fn(&Outcome) -> bool| tests.iter().filter(|t| pred(&t.outcome)).count();
    let passed = count(|o| *o == Outcome::Passed);
    println!(
        "\ntests: {}; {} failed; {} ignored; {} timed out; {} crashed\n",
        if flaky.is_empty() {
            format!("{passed} passed")
        } else {
            format!("{passed} passed ({} flaky)", flaky.len())
        },
        count(|o| *o == Outcome::Failed),
        count(|o| *o == Outcome::Ignored),
        count(|o| *o == Outcome::TimedOut),
        count(|o| matches!(o, Outcome::Crashed { .. })),
    );
}
