//! One coverage run of a workspace: build the tests, plan breakpoints from DWARF and source analysis,
//! run every test executable under the engine (several at once), and merge the hits into `Coverage`.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::analysis::LineKind;
use crate::cargo::{self, CargoError, TestExecutable, Workspace};
use crate::coverage::{Coverage, FileCoverage, FunctionCoverage, LineCoverage, TestInfo};
use crate::dwarf::{self, DwarfError};
use crate::engine::{self, EngineError, Exit};
use crate::libtest::{self, Outcome, TestResult};
use crate::plan::{self, Plan, SourceFile, Sources};

#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Passed to `cargo test` as they are.
    pub cargo_args: Vec<String>,
    /// Executions counted per line and executable; 1 records first hits only.
    pub count_cap: u32,
    /// Deadline for each test executable.
    pub timeout: Duration,
    /// Leave `#[test]` functions, `#[cfg(test)]` modules and `tests/` files out of the results.
    pub exclude_tests: bool,
    /// Test executables traced at once.
    pub jobs: usize,
    pub cancel: Option<Arc<AtomicBool>>,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            cargo_args: Vec::new(),
            count_cap: 1000,
            timeout: Duration::from_secs(300),
            exclude_tests: false,
            jobs: std::thread::available_parallelism().map_or(2, |n| n.get()),
            cancel: None,
        }
    }
}

/// What a run reports while it goes.
#[derive(Clone, Debug)]
pub enum Progress {
    Building { crates_compiled: usize },
    Running { done: usize, total: usize },
}

#[derive(Debug)]
pub struct ExecutableRun {
    pub executable: TestExecutable,
    pub exit: Exit,
    pub duration: Duration,
    pub tests: Vec<TestResult>,
    pub stdout: String,
    pub stderr: String,
}

impl ExecutableRun {
    pub fn succeeded(&self) -> bool {
        self.exit == Exit::Code(0)
    }
}

#[derive(Debug)]
pub struct RunReport {
    pub workspace: Workspace,
    pub coverage: Coverage,
    pub executables: Vec<ExecutableRun>,
}

impl RunReport {
    pub fn tests_passed(&self) -> bool {
        self.executables.iter().all(ExecutableRun::succeeded)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Cargo(#[from] CargoError),
    #[error(transparent)]
    Dwarf(#[from] DwarfError),
    #[error("{}: {source}", exe.display())]
    Engine {
        exe: std::path::PathBuf,
        source: EngineError,
    },
    #[error("the run was cancelled")]
    Cancelled,
}

pub fn run(
    path: &Path,
    options: &RunOptions,
    on_progress: &(dyn Fn(Progress) + Sync),
) -> Result<RunReport, RunError> {
    let started = std::time::Instant::now();
    let workspace = cargo::load_workspace(path)?;
    tracing::debug!("workspace read after {:?}", started.elapsed());
    let mut crates_compiled = 0;
    let executables = cargo::build_tests(&workspace, &options.cargo_args, &mut |_| {
        crates_compiled += 1;
        on_progress(Progress::Building { crates_compiled });
    })?;
    let cancelled = || {
        options
            .cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Relaxed))
    };
    tracing::debug!("tests built after {:?}", started.elapsed());
    if cancelled() {
        return Err(RunError::Cancelled);
    }

    let tables = crate::parallel::map(&executables, options.jobs, |executable| {
        dwarf::read_line_table(&executable.path, &|p| workspace.owns_source(p))
    })
    .into_iter()
    .collect::<Result<Vec<_>, _>>()?;
    let mut sources = Sources::default();
    let paths: Vec<&Path> = tables
        .iter()
        .flat_map(|t| t.files.iter().map(PathBuf::as_path))
        .collect();
    sources.add_all(&paths, options.jobs);
    let plans: Vec<(Plan, engine::Breakpoints)> = tables
        .iter()
        .map(|table| {
            let layout = engine::Breakpoints {
                addresses: Vec::new(),
                load_base: table.load_base,
                position_independent: table.position_independent,
            };
            (plan::plan(table, &mut sources), layout)
        })
        .collect();
    tracing::debug!("breakpoints planned after {:?}", started.elapsed());
    let traces = trace_all(&executables, plans, options, on_progress)?;
    if cancelled() {
        return Err(RunError::Cancelled);
    }
    let mut hits: HashMap<(usize, u32), u64> = HashMap::new();
    let mut runs = Vec::with_capacity(executables.len());
    for (executable, (plan, trace)) in executables.into_iter().zip(traces) {
        tracing::debug!(
            "{}: {} breakpoints, {} hit, {} traps, {:?}",
            executable.target,
            plan.addresses.len(),
            trace.hits.iter().filter(|&&h| h > 0).count(),
            trace.hits.iter().map(|&h| u64::from(h)).sum::<u64>(),
            trace.duration
        );
        for (target, count) in plan.targets.iter().zip(&trace.hits) {
            *hits.entry(*target).or_default() += u64::from(*count);
        }
        let unfinished = match trace.exit {
            Exit::TimedOut => Outcome::TimedOut,
            Exit::Signal(signal) => Outcome::Crashed { signal },
            _ => Outcome::Failed,
        };
        runs.push(ExecutableRun {
            tests: libtest::parse(&trace.stdout, unfinished),
            executable,
            exit: trace.exit,
            duration: trace.duration,
            stdout: trace.stdout,
            stderr: trace.stderr,
        });
    }
    tracing::debug!("tests traced after {:?}", started.elapsed());
    let mut coverage = merge(&sources, &hits, &workspace, options.exclude_tests);
    coverage.tests = runs
        .iter()
        .flat_map(|run| {
            run.tests.iter().map(|t| TestInfo {
                id: format!("{}::{}", run.executable.target, t.name),
                outcome: t.outcome.clone(),
                duration_ms: 0,
                message: t.message.clone(),
                location: None,
            })
        })
        .collect();
    Ok(RunReport {
        workspace,
        coverage,
        executables: runs,
    })
}

/// Runs the executables `options.jobs` at a time; results come back in input order.
fn trace_all(
    executables: &[TestExecutable],
    plans: Vec<(Plan, engine::Breakpoints)>,
    options: &RunOptions,
    on_progress: &(dyn Fn(Progress) + Sync),
) -> Result<Vec<(Plan, engine::Trace)>, RunError> {
    let total = executables.len();
    let done = AtomicUsize::new(0);
    let engine_options = engine::Options {
        count_cap: options.count_cap,
        timeout: Some(options.timeout),
        cancel: options.cancel.clone(),
    };
    on_progress(Progress::Running { done: 0, total });
    let work: Vec<(&TestExecutable, &(Plan, engine::Breakpoints))> =
        executables.iter().zip(&plans).collect();
    let traces = crate::parallel::map(&work, options.jobs, |(executable, (plan, layout))| {
        let breakpoints = engine::Breakpoints {
            addresses: plan.addresses.clone(),
            ..layout.clone()
        };
        let trace = engine::trace(&program(executable), &breakpoints, &engine_options);
        let finished = done.fetch_add(1, Ordering::Relaxed) + 1;
        on_progress(Progress::Running {
            done: finished,
            total,
        });
        trace.map_err(|source| RunError::Engine {
            exe: executable.path.clone(),
            source,
        })
    });
    plans
        .into_iter()
        .zip(traces)
        .map(|((plan, _), trace)| Ok((plan, trace?)))
        .collect()
}

/// How `cargo test` runs a test executable: from its package directory, with cargo's variables.
fn program(executable: &TestExecutable) -> engine::Program {
    let package = &executable.package;
    let env = [
        (
            "CARGO_MANIFEST_DIR",
            package.manifest_dir.as_os_str().to_owned(),
        ),
        ("CARGO_PKG_NAME", package.name.clone().into()),
        ("CARGO_PKG_VERSION", package.version.clone().into()),
        (
            "CARGO_CRATE_NAME",
            executable.target.replace('-', "_").into(),
        ),
    ];
    engine::Program {
        exe: executable.path.clone(),
        args: Vec::new(),
        env: env
            .into_iter()
            .map(|(k, v)| (OsString::from(k), v))
            .collect(),
        cwd: package.manifest_dir.clone(),
    }
}

/// Decides the final set of coverable lines and attaches the hits.
///
/// A statement line counts when some executable has code for it. A line with no code counts only
/// when its whole function has none anywhere (never instantiated or never linked): then the function
/// shows as uncovered rather than vanishing. Lines that may be compiled out (cfg-gated, macro
/// bodies) count only with code.
fn merge(
    sources: &Sources,
    hits: &HashMap<(usize, u32), u64>,
    workspace: &Workspace,
    exclude_tests: bool,
) -> Coverage {
    let mut files: Vec<FileCoverage> = sources
        .files
        .iter()
        .enumerate()
        .filter_map(|(id, file)| {
            let test_file = workspace.is_test_file(&file.path);
            if exclude_tests && test_file {
                return None;
            }
            let keep = |line: u32| !(exclude_tests && file.analysis.is_test_code(line));
            let lines: Vec<LineCoverage> = (1..=file.analysis.line_count())
                .filter(|&line| keep(line) && is_coverable(file, line))
                .map(|line| LineCoverage {
                    line,
                    hits: hits.get(&(id, line)).copied().unwrap_or(0),
                    tests: Vec::new(),
                })
                .collect();
            if lines.is_empty() {
                return None;
            }
            let entry_hits = |line: u32| {
                lines
                    .binary_search_by_key(&line, |l| l.line)
                    .ok()
                    .map(|i| lines[i].hits)
            };
            let functions = file
                .analysis
                .functions()
                .iter()
                .filter(|f| keep(f.line))
                .filter_map(|f| {
                    Some(FunctionCoverage {
                        name: f.name.clone(),
                        line: f.line,
                        end_line: f.end_line,
                        hits: entry_hits(f.line)?,
                        is_test: f.is_test,
                    })
                })
                .collect();
            Some(FileCoverage {
                path: file.path.clone(),
                lines,
                functions,
            })
        })
        .collect();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Coverage {
        files,
        tests: Vec::new(),
    }
}

fn is_coverable(file: &SourceFile, line: u32) -> bool {
    let LineKind::Start { compiled_only } = file.analysis.kind(line) else {
        return false;
    };
    if file.lines_with_code.contains(&line) {
        return true;
    }
    if compiled_only {
        return false;
    }
    match file.analysis.function_at(line) {
        Some(function) => {
            !function.compiled_only
                && file
                    .lines_with_code
                    .range(function.line..=function.end_line)
                    .next()
                    .is_none()
        }
        None => false,
    }
}
