//! One coverage run of a workspace: build the tests, plan breakpoints from DWARF and source analysis,
//! run every test executable under the engine (several at once), and merge the hits into `Coverage`.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::aggregate::{
    Aggregate, BranchCounts, BranchKey, BranchTarget, BreakpointId, ExecutableCounts, InstanceId,
    LineCounts, LineKey, ShardSums, SourceId, Target, TestId,
};
use crate::analysis::{CfgSet, Construct, JumpCount, LineKind, SourceAnalysis};
use crate::cache::{JsonCache, LineCache};
use crate::cargo::{self, CargoError, TestExecutable, Workspace};
use crate::coverage::{
    BranchCoverage, BranchTestHits, Coverage, FileCoverage, FunctionCoverage, LineCoverage,
    MatchCoverage, TestHits, TestInfo,
};
use crate::doctests::{DoctestExecutable, Doctests};
use crate::dwarf::DwarfError;
use crate::engine::{self, EngineError, Exit};
use crate::libtest::{Outcome, TestResult};
use crate::plan::{self, Plan, SourceFile, Sources};
use crate::selection;
use crate::test_env::TestEnv;
use crate::testrun;

mod shards;

use shards::{
    choose, read_durations, shard, test_id, write_durations, Chosen, Shard, TestProgress,
};

/// Executions counted per address, test and process by the int3 fallback (addresses a counter
/// trampoline cannot serve); every such count costs a trap (≈ 20 µs). Trampolines count exactly.
pub const DEFAULT_COUNT_CAP: u32 = 10;

/// Seconds a single test may run before its process is killed and the test reported as timed out.
pub const DEFAULT_TEST_TIMEOUT_SECS: u64 = 60;

#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Passed to `cargo test` as they are.
    pub cargo_args: Vec<String>,
    /// The int3 fallback's cap (see [`DEFAULT_COUNT_CAP`]).
    pub count_cap: u32,
    /// Record first hits only: every address traps once and is lifted (`--no-counts`).
    pub first_hit: bool,
    /// Count every address with int3, never with a trampoline (to test the fallback).
    pub traps_only: bool,
    /// Deadline for each test, counted from its start (and for a process from its start).
    pub timeout: Duration,
    /// Leave `#[test]` functions, `#[cfg(test)]` modules and `tests/` files out of the results.
    pub exclude_tests: bool,
    /// Test executables traced at once.
    pub jobs: usize,
    pub cancel: Option<Arc<AtomicBool>>,
    /// Run only these tests; `None` runs every test.
    pub only_tests: Option<selection::TestFilter>,
    /// How many more times a failed test runs, alone, until it passes (then it is flaky, with the
    /// passing run's coverage).
    pub retries: u32,
    /// Run only this slice of the (selected) tests; the report lists only its tests.
    pub partition: Option<crate::partition::Partition>,
    /// Fingerprint the workspace's sources as the build reads them, for test selection
    /// ([`RunReport::sources`]).
    pub snapshot_sources: bool,
    /// Build the libraries' doctests and measure them (`cargo test --doc`), unless the cargo
    /// arguments choose targets.
    pub doctests: bool,
    /// Count the two sides of source branches too (counting mode with trampolines only).
    pub branches: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            cargo_args: Vec::new(),
            count_cap: DEFAULT_COUNT_CAP,
            first_hit: false,
            traps_only: false,
            timeout: Duration::from_secs(DEFAULT_TEST_TIMEOUT_SECS),
            exclude_tests: false,
            jobs: std::thread::available_parallelism().map_or(2, |n| n.get()),
            cancel: None,
            only_tests: None,
            retries: 0,
            partition: None,
            snapshot_sources: false,
            doctests: true,
            branches: true,
        }
    }
}

/// What a run reports while it goes.
#[derive(Clone, Debug)]
pub enum Progress {
    Building {
        crates_compiled: usize,
    },
    /// Tests done of those the run traces; `binary`: the target whose tests started last.
    Running {
        done: usize,
        total: usize,
        binary: String,
    },
}

#[derive(Debug)]
pub struct ExecutableRun {
    pub executable: TestExecutable,
    pub counting: CountingStats,
    /// How each process that ran its tests ended.
    pub exits: Vec<Exit>,
    pub tests: Vec<TestResult>,
    pub stdout: String,
    pub stderr: String,
}

impl ExecutableRun {
    /// Every test passed (or was ignored) and every process ended well. libtest exits with 101
    /// after a failed test: when that test passed on a retry, its process's 101 is forgiven.
    pub fn succeeded(&self) -> bool {
        let forgiven = |e: &Exit| *e == Exit::Code(101) && !self.tests.is_empty();
        self.exits
            .iter()
            .all(|e| *e == Exit::Code(0) || forgiven(e))
            && self
                .tests
                .iter()
                .all(|t| matches!(t.outcome, Outcome::Passed | Outcome::Ignored))
    }
}

/// What counting cost in one executable's processes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CountingStats {
    pub traps: u64,
    /// How its addresses were served (trampolines or int3).
    pub sites: engine::SiteCounts,
}

#[derive(Debug)]
pub struct RunReport {
    pub workspace: Workspace,
    pub coverage: Coverage,
    pub executables: Vec<ExecutableRun>,
    /// With [`RunOptions::snapshot_sources`]: the sources as the build read them.
    pub sources: Option<SourceSnapshot>,
    pub phases: Phases,
    /// Only some test executables were built (the filter's `build`): the report has only
    /// their tests and lines.
    pub narrowed: bool,
}

/// Where a run's time went (each phase from the end of the one before).
#[derive(Clone, Copy, Debug, Default)]
pub struct Phases {
    /// `cargo metadata` and `cargo test --no-run`.
    pub build: Duration,
    /// Line tables, test listings, planning, counting sites.
    pub prepare: Duration,
    /// The tests, traced.
    pub tests: Duration,
    /// Aggregating counts, reading sources for the report, fingerprints.
    pub report: Duration,
}

/// What test selection compares later changes with (see `selection`).
#[derive(Debug, Default)]
pub struct SourceSnapshot {
    /// Content hash of every source file (`selection::content_hash`).
    pub hashes: std::collections::BTreeMap<PathBuf, u64>,
    pub fingerprints: HashMap<PathBuf, selection::Fingerprint>,
    pub inputs: HashMap<PathBuf, BTreeSet<String>>,
}

impl RunReport {
    /// The test executables this run built, by target name.
    pub fn build_targets(&self) -> HashMap<String, selection::BuildTarget> {
        self.executables
            .iter()
            .filter(|r| r.executable.kind != "doctest")
            .map(|r| {
                let e = &r.executable;
                let target = selection::BuildTarget {
                    package: e.package.name.clone(),
                    kind: e.kind.clone(),
                    name: e.target.clone(),
                };
                (e.target.clone(), target)
            })
            .collect()
    }

    /// The ids of the tests of this run that `filter` selected (and so ran).
    pub fn ran(&self, filter: &selection::TestFilter) -> HashSet<String> {
        let targets = self.build_targets();
        self.coverage
            .tests
            .iter()
            .filter(|t| {
                let package = targets
                    .get(selection::target_of(&t.id))
                    .map_or("", |target| target.package.as_str());
                filter.selects(package, &t.id)
            })
            .map(|t| t.id.clone())
            .collect()
    }

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
    /// The workspace a run started with, remembered from the last run, is not the one `cargo
    /// metadata` reads now (this one): the run starts over with it.
    #[error("the workspace changed since the last run")]
    WorkspaceChanged(Box<Workspace>),
}

pub fn run(
    path: &Path,
    options: &RunOptions,
    on_progress: &(dyn Fn(Progress) + Sync),
) -> Result<RunReport, RunError> {
    let started = std::time::Instant::now();
    // `cargo metadata` (20–30 ms) need not hold up cargo's check of the build: with the
    // workspace the last run read, the build starts at once and the two run side by side; the
    // run starts over if the workspace is not that one any more.
    if let Some(guess) = cargo::remembered_workspace(path) {
        let reading = {
            let path = path.to_path_buf();
            std::thread::spawn(move || cargo::load_workspace(&path))
        };
        let guessed = guess.clone();
        let confirm = move || -> Result<Option<Workspace>, RunError> {
            let workspace = reading
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
            tracing::debug!("workspace read after {:?}", started.elapsed());
            if workspace == guess {
                return Ok(None);
            }
            cargo::remember_workspace(path, &workspace);
            Ok(Some(workspace))
        };
        return match run_once(
            guessed,
            started,
            options,
            on_progress,
            true,
            Some(Box::new(confirm)),
        ) {
            Err(RunError::WorkspaceChanged(workspace)) => {
                tracing::debug!("the workspace changed since the last run: building it again");
                run_in(*workspace, started, options, on_progress)
            }
            other => other,
        };
    }
    let workspace = cargo::load_workspace(path)?;
    tracing::debug!("workspace read after {:?}", started.elapsed());
    cargo::remember_workspace(path, &workspace);
    run_in(workspace, started, options, on_progress)
}

/// [`run`] in a workspace already read (`started`: when the run began, for its phase times).
pub fn run_in(
    workspace: Workspace,
    started: std::time::Instant,
    options: &RunOptions,
    on_progress: &(dyn Fn(Progress) + Sync),
) -> Result<RunReport, RunError> {
    run_once(workspace, started, options, on_progress, true, None)
}

/// Confirms a remembered workspace once the build is done (see [`run_once`]).
type Confirm<'a> = Box<dyn FnOnce() -> Result<Option<Workspace>, RunError> + 'a>;

/// [`run_in`]; `rebuild_moved`: whether a build made before the workspace was moved may be
/// cleaned and the run started again. `confirm`: `workspace` is a guess, confirmed (`None`) or
/// replaced once the build is done; the run then ends with [`RunError::WorkspaceChanged`].
fn run_once(
    workspace: Workspace,
    started: std::time::Instant,
    options: &RunOptions,
    on_progress: &(dyn Fn(Progress) + Sync),
    rebuild_moved: bool,
    confirm: Option<Confirm<'_>>,
) -> Result<RunReport, RunError> {
    // Sources are read before the build (see `selection::Texts`) and parsed while it runs.
    let fingerprinting = options.snapshot_sources.then(|| {
        let texts = selection::Texts::read(&workspace);
        let cache = JsonCache::new(workspace.coverlay_dir().join("fingerprints"));
        std::thread::spawn(move || (texts.hashes(), texts.fingerprints(&cache)))
    });
    let mut crates_compiled = 0;
    // A selection of bodies in one package needs only the executables of its tests, unless the
    // user's own cargo arguments choose targets already.
    let narrowing: Vec<String> = match &options.only_tests {
        Some(only) if !only.build.is_empty() && options.cargo_args.is_empty() => {
            let mut args = vec!["-p".to_owned(), only.build[0].package.clone()];
            args.extend(
                only.build
                    .iter()
                    .flat_map(selection::BuildTarget::cargo_args),
            );
            args
        }
        _ => Vec::new(),
    };
    let narrowed = !narrowing.is_empty();
    let cargo_args = if narrowed {
        narrowing
    } else {
        options.cargo_args.clone()
    };
    let built = cargo::build_tests(
        &workspace,
        &cargo_args,
        options.cancel.as_deref(),
        &mut |_| {
            crates_compiled += 1;
            on_progress(Progress::Building { crates_compiled });
        },
    );
    if let Some(read) = confirm.map(|confirm| confirm()).transpose()?.flatten() {
        return Err(RunError::WorkspaceChanged(Box::new(read)));
    }
    let cargo::Built {
        tests: mut executables,
        bins,
        cfgs,
    } = match built {
        Err(CargoError::Cancelled) => return Err(RunError::Cancelled),
        other => other?,
    };
    let cancelled = || {
        options
            .cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Relaxed))
    };
    tracing::debug!("tests built after {:?}", started.elapsed());
    let built_at = started.elapsed();
    if cancelled() {
        return Err(RunError::Cancelled);
    }

    // cargo's own environment for each test (a cargo invocation, unless recorded before) is
    // learnt while the line tables are read.
    let learning = {
        let (workspace, args, executables) =
            (workspace.clone(), cargo_args.clone(), executables.clone());
        std::thread::spawn(move || crate::test_env::learn(&workspace, &args, &executables))
    };
    let doctests = match doctest_args(&workspace, options) {
        Some(args) => {
            let own: HashMap<OsString, OsString> = std::env::vars_os().collect();
            // A selection of single tests compiles only the doctests among them.
            let only: Option<Vec<String>> = options
                .only_tests
                .as_ref()
                .filter(|only| only.packages.is_empty())
                .map(|only| {
                    only.ids
                        .iter()
                        .filter(|id| crate::doctests::is_doctest(id))
                        .cloned()
                        .collect()
                });
            let cancel = options.cancel.as_deref();
            match crate::doctests::build(&workspace, &args, &own, only.as_deref(), cancel) {
                Ok(doctests) => doctests,
                Err(crate::doctests::DoctestError::Cancelled) => return Err(RunError::Cancelled),
                Err(error) => {
                    tracing::warn!("doctests are not measured: {error}");
                    Doctests::default()
                }
            }
        }
        None => Doctests::default(),
    };
    tracing::debug!("doctests built after {:?}", started.elapsed());
    if cancelled() {
        return Err(RunError::Cancelled);
    }
    let cache = LineCache::new(workspace.coverlay_dir().join("line-tables"));
    // An executable cargo rebuilt has nothing cached: its code will be read to find its branches
    // and counting sites, so it is read on another core while the line tables are (one at a
    // time: each read holds the whole file).
    let rebuilt: Vec<Option<PathBuf>> = executables
        .iter()
        .map(|executable| (!cache.has(&executable.path)).then(|| executable.path.clone()))
        .collect();
    let prefetched = std::thread::spawn(move || {
        rebuilt
            .into_iter()
            .map(|path| path.map(|path| engine::ExeCode::read(&path)))
            .collect::<Vec<_>>()
    });
    let listings = JsonCache::new(workspace.coverlay_dir().join("listings"));
    let listed = crate::parallel::map(&executables, options.jobs, |executable| {
        let tables = cache.read(&executable.path, &|p| workspace.owns_source(p));
        (tables, list_tests(executable, &listings))
    });
    let mut tables = Vec::with_capacity(listed.len());
    let mut listings = Vec::with_capacity(listed.len());
    for (table, listing) in listed {
        tables.push(table?);
        listings.push(listing);
    }
    // A test executable with tests holds their code, in files of its package. None at all, and
    // the workspace's path nowhere in it: its debug information names them at another path, and
    // cargo saw no reason to rebuild it (the workspace was moved or copied with its target
    // directory).
    let built_elsewhere = |path: &Path| {
        let root = workspace.root.as_os_str().as_encoded_bytes();
        std::fs::read(path).is_ok_and(|bytes| memchr::memmem::find(&bytes, root).is_none())
    };
    let elsewhere: Vec<String> = executables
        .iter()
        .zip(&tables)
        .zip(&listings)
        .filter(|((executable, table), listing)| {
            table.files.is_empty()
                && listing.as_ref().is_some_and(|tests| !tests.is_empty())
                && built_elsewhere(&executable.path)
        })
        .map(|((executable, _), _)| executable.path.display().to_string())
        .collect();
    if !elsewhere.is_empty() {
        if rebuild_moved {
            tracing::warn!(
                "rebuilding the workspace's crates: their debug information names no source \
                 file of this workspace (built before it was moved or copied): {}",
                elsewhere.join(", ")
            );
            match cargo::clean_workspace(&workspace) {
                Ok(()) => return run_once(workspace, started, options, on_progress, false, None),
                Err(error) => tracing::warn!("cannot clean the old build: {error}"),
            }
        }
        tracing::warn!(
            "not measured, as their debug information names no source file of this workspace \
             (built before the workspace was moved or copied?): {}; remove {} to rebuild them",
            elsewhere.join(", "),
            workspace.coverlay_dir().display()
        );
    }
    // Doctest executables join the test executables (after cargo's): their tests are known.
    // An unchanged doctest is the same file as before (`doctests::record_runner`): cached.
    let cargo_executables = executables.len();
    let doctest_tables = crate::parallel::map(&doctests.executables, options.jobs, |d| {
        cache.read(&d.executable.path, &|p| workspace.owns_source(p))
    });
    let mut doctest_runs: Vec<DoctestExecutable> = Vec::new();
    for (doctest, table) in doctests.executables.into_iter().zip(doctest_tables) {
        match table {
            Ok(table) => {
                tables.push(table);
                listings.push(Some(doctest.tests.iter().map(|t| t.name.clone()).collect()));
                executables.push(doctest.executable.clone());
                doctest_runs.push(doctest);
            }
            Err(error) => tracing::warn!(
                "doctest {} is not measured: {error}",
                doctest.executable.path.display()
            ),
        }
    }
    let doctest_of = |executable: usize| {
        executable
            .checked_sub(cargo_executables)
            .and_then(|k| doctest_runs.get(k))
    };
    // The binaries tests may run: planned like test executables (after them in `tables` and
    // `plans`), followed by the engine when a test `exec`s one, never run on their own.
    let bin_tables = crate::parallel::map(&bins, options.jobs, |bin| {
        cache.read(&bin.path, &|p| workspace.owns_source(p))
    });
    let mut followable = Vec::new();
    for (bin, table) in bins.into_iter().zip(bin_tables) {
        match table {
            Ok(table) => {
                tables.push(table);
                followable.push(bin);
            }
            Err(error) => tracing::warn!(
                "{} cannot be measured when tests run it: {error}",
                bin.path.display()
            ),
        }
    }
    let mut sources =
        Sources::with_cache(JsonCache::new(workspace.coverlay_dir().join("analysis")));
    let mut paths: Vec<&Path> = tables
        .iter()
        .flat_map(|t| t.files.iter().map(PathBuf::as_path))
        .collect();
    // A file with no machine code at all (generic code no test instantiates) is in no line
    // table; rustc's dep-info names every module file, so it is reported, uncovered.
    let with_code: HashSet<PathBuf> = paths
        .iter()
        .map(|p| p.canonicalize().unwrap_or_else(|_| p.to_path_buf()))
        .collect();
    let without_code: BTreeSet<PathBuf> = executables
        .iter()
        .chain(&followable)
        .flat_map(|e| crate::depinfo::inputs(&workspace, &e.path))
        .filter(|p| workspace.owns_source(p) && !with_code.contains(p))
        .collect();
    paths.extend(without_code.iter().map(PathBuf::as_path));
    tracing::debug!("line tables read after {:?}", started.elapsed());
    sources.add_all(&paths, options.jobs);
    tracing::debug!("sources analysed after {:?}", started.elapsed());
    let no_tests = None;
    // Branch sides come out of exact counts (one side may be a difference of two), with
    // trampolines; with first hits only, of the jumps whose sides have addresses of their own
    // (`plan::branches::find`).
    let all: Vec<&TestExecutable> = executables.iter().chain(&followable).collect();
    let branch_cache = JsonCache::new(workspace.coverlay_dir().join("branches"));
    // Each executable's code is read at most once, by whichever of branch finding and counting
    // sites misses its cache first.
    let codes: Vec<OnceLock<Option<engine::ExeCode>>> =
        all.iter().map(|_| OnceLock::new()).collect();
    let prefetched = prefetched.join().unwrap_or_default();
    for ((code, executable), read) in codes.iter().zip(&all).zip(prefetched) {
        if let Some(read) = read {
            let _ = code.set(
                read.inspect_err(|error| warn_unreadable(&executable.path, error))
                    .ok(),
            );
        }
    }
    let work: Vec<(&TestExecutable, &crate::dwarf::LineTable, &OnceLock<_>)> = all
        .iter()
        .copied()
        .zip(&tables)
        .zip(&codes)
        .map(|((executable, table), code)| (executable, table, code))
        .collect();
    let machine = crate::parallel::map(&work, options.jobs, |&(executable, table, code)| {
        (options.branches && !options.traps_only)
            .then(|| machine_branches(&executable.path, table, &branch_cache, code))
    });
    tracing::debug!("branches found after {:?}", started.elapsed());
    let plans: Vec<Plan> = all
        .iter()
        .zip(&tables)
        .zip(listings.iter().chain(std::iter::repeat(&no_tests)))
        .zip(&machine)
        .enumerate()
        .map(
            |(i, (((executable, table), listing), machine))| match doctest_of(i) {
                // A doctest's process is its test: no test functions to find.
                Some(doctest) => Plan {
                    test_locations: doctest.tests.iter().map(|t| t.location.clone()).collect(),
                    ..plan::plan(
                        table,
                        &mut sources,
                        &executable.crate_name(),
                        &[],
                        machine.as_deref(),
                        options.first_hit,
                    )
                },
                None => {
                    let tests = listing.as_deref().unwrap_or_default();
                    plan::plan(
                        table,
                        &mut sources,
                        &executable.crate_name(),
                        tests,
                        machine.as_deref(),
                        options.first_hit,
                    )
                }
            },
        )
        .collect();
    drop(machine);
    // A breakpoint that another of its line always runs before needs no counter of its own.
    let bounded_cache = JsonCache::new(workspace.coverlay_dir().join("bounded"));
    let mut plans = plans;
    let work: Vec<(&mut Plan, &Path, &OnceLock<_>)> = plans
        .iter_mut()
        .zip(executables.iter().chain(&followable))
        .zip(&codes)
        .map(|((plan, executable), code)| (plan, executable.path.as_path(), code))
        .collect();
    let left_out = crate::parallel::map(&work, options.jobs, |(plan, exe, code)| {
        leave_out_bounded(plan, exe, &bounded_cache, code, options.jobs)
    });
    for ((plan, _, _), left_out) in work.into_iter().zip(left_out) {
        plan.retain(&left_out.iter().map(|&out| !out).collect::<Vec<bool>>());
    }
    tracing::debug!("breakpoints planned after {:?}", started.elapsed());
    let work: Vec<(&Plan, &Path, &OnceLock<_>)> = plans
        .iter()
        .zip(executables.iter().chain(&followable))
        .zip(&codes)
        .map(|((plan, executable), code)| (plan, executable.path.as_path(), code))
        .collect();
    let sites_cache = JsonCache::new(workspace.coverlay_dir().join("sites"));
    let counted = !options.first_hit && !options.traps_only;
    let sites = crate::parallel::map(&work, options.jobs, |&(plan, exe, code)| {
        if counted {
            counting_sites(plan, exe, &sites_cache, code)
        } else {
            Vec::new()
        }
    });
    drop(codes);
    // A branch counted on a taken edge that no trampoline can move is left out, as are those
    // whose sides cannot be told apart at all.
    for (plan, sites) in plans.iter_mut().zip(&sites) {
        plan.branches.retain(|branch| {
            branch
                .addresses()
                .all(|i| sites.get(i) != Some(&engine::Site::Lost))
        });
    }
    let mut breakpoints: Vec<engine::Breakpoints> = plans
        .iter()
        .zip(&tables)
        .zip(sites)
        .map(|((plan, table), sites)| engine::Breakpoints {
            addresses: plan.addresses.clone(),
            load_base: table.load_base,
            position_independent: table.position_independent,
            test_entries: plan.test_entries.clone(),
            rearm_per_test: plan.function_entries.clone(),
            same_line: plan.same_line(),
            sites,
            built: engine::TrampolineCache::default(),
        })
        .collect();
    tracing::debug!("counting sites chosen after {:?}", started.elapsed());
    let prepared_at = started.elapsed();

    let durations_file = workspace.coverlay_dir().join("durations.json");
    let durations = read_durations(&durations_file);
    let chosen = choose(&executables, &listings, options);
    let mut shards = shard(&executables, &listings, &chosen, &durations, options.jobs);
    let engine_options = engine::Options {
        mode: if options.first_hit {
            engine::Mode::FirstHit
        } else {
            engine::Mode::Counts
        },
        count_cap: options.count_cap,
        timeout: Some(options.timeout),
        cancel: options.cancel.clone(),
        tests_started: None,
        follow: Arc::new(
            followable
                .iter()
                .zip(breakpoints.split_off(executables.len()))
                .map(|(bin, breakpoints)| engine::Followed {
                    exe: bin.path.clone(),
                    breakpoints,
                })
                .collect(),
        ),
    };
    let envs = learning.join().unwrap_or_default();
    // Some tests of one executable, one at a time (a doctest's own process each).
    let run_tests = |executable: usize, numbers: &[u32], engine_options: &engine::Options| {
        let exe = &executables[executable];
        match doctest_of(executable) {
            Some(doctest) => {
                let tests: Vec<(u32, &crate::doctests::Doctest)> = numbers
                    .iter()
                    .map(|&n| (n, &doctest.tests[n as usize]))
                    .collect();
                testrun::run_doctests(
                    &program(exe, Some(&doctest.env)),
                    &breakpoints[executable],
                    &tests,
                    doctest.merged,
                    engine_options,
                )
            }
            None => {
                let listing = listings[executable].as_ref().expect("listed");
                let tests: Vec<(u32, &str)> = numbers
                    .iter()
                    .map(|&n| (n, listing[n as usize].as_str()))
                    .collect();
                testrun::run_shard(
                    &program(exe, envs.get(&exe.path)),
                    &breakpoints[executable],
                    &tests,
                    engine_options,
                )
            }
        }
    };
    let progress = TestProgress::new(&shards);
    let trace_shard = |(i, shard): (usize, &Shard)| {
        let executable = &executables[shard.executable];
        progress.begin(&executable.target);
        let engine_options = engine::Options {
            tests_started: Some(progress.started[i].clone()),
            ..engine_options.clone()
        };
        let result = if shard.whole {
            whole_run(
                &program(executable, envs.get(&executable.path)),
                &breakpoints[shard.executable],
                &engine_options,
            )
        } else {
            run_tests(shard.executable, &shard.tests, &engine_options)
        };
        progress.finish(i);
        result.map_err(|source| RunError::Engine {
            exe: executable.path.clone(),
            source,
        })
    };
    let numbered: Vec<(usize, &Shard)> = shards.iter().enumerate().collect();
    let mut shard_runs = std::thread::scope(|scope| {
        let (running, ended) = std::sync::mpsc::channel::<()>();
        scope.spawn(|| progress.report(ended, on_progress));
        let runs = crate::parallel::map(&numbered, options.jobs, |&item| trace_shard(item));
        drop(running);
        runs
    });
    // `--retries`: each failed test again, alone in a new process, until it passes; a pass
    // replaces the failed run's coverage of it (the retry is one more shard).
    let mut attempts: HashMap<(usize, u32), u32> = HashMap::new();
    let failed: Vec<(usize, u32)> = shards
        .iter()
        .zip(&shard_runs)
        .enumerate()
        .filter(|(_, (shard, _))| !shard.whole && options.retries > 0)
        .filter_map(|(i, (_, run))| Some((i, run.as_ref().ok()?)))
        .flat_map(|(i, run)| {
            run.results
                .iter()
                .filter(|(_, r, _)| !matches!(r.outcome, Outcome::Passed | Outcome::Ignored))
                .map(move |&(n, _, _)| (i, n))
        })
        .collect();
    let retried = crate::parallel::map(&failed, options.jobs, |&(i, n)| {
        for attempt in 2..=options.retries + 1 {
            if cancelled() {
                break;
            }
            let run = run_tests(shards[i].executable, &[n], &engine_options);
            match run {
                Ok(run) if run.results.iter().any(|r| r.1.outcome == Outcome::Passed) => {
                    return (attempt, Some(run));
                }
                _ => {}
            }
        }
        (options.retries + 1, None)
    });
    for (&(i, n), (attempt, passed)) in failed.iter().zip(retried) {
        let executable = shards[i].executable;
        attempts.insert((executable, n), attempt);
        if let Some(run) = passed {
            if let Ok(failed_run) = &mut shard_runs[i] {
                failed_run.forget(n);
            }
            shards.push(Shard {
                executable,
                tests: vec![n],
                whole: false,
            });
            shard_runs.push(Ok(run));
        }
    }
    tracing::debug!("tests traced after {:?}", started.elapsed());
    let traced_at = started.elapsed();
    if cancelled() {
        return Err(RunError::Cancelled);
    }

    // Test numbers are per executable; the coverage lists every test of the run once.
    let mut first_test = Vec::with_capacity(executables.len());
    let mut tests: Vec<TestInfo> = Vec::new();
    // A partition's report has its own tests only: the shards' reports merge into the full one.
    let mut in_partition: Vec<bool> = Vec::new();
    for (((executable, listing), plan), chosen) in
        executables.iter().zip(&listings).zip(&plans).zip(&chosen)
    {
        first_test.push(tests.len() as u32);
        for (n, (name, location)) in listing
            .iter()
            .flatten()
            .zip(&plan.test_locations)
            .enumerate()
        {
            in_partition.push(match chosen {
                Chosen::Tests(numbers) => numbers.binary_search(&(n as u32)).is_ok(),
                Chosen::Whole => true,
            });
            tests.push(TestInfo {
                id: test_id(executable, name),
                outcome: Outcome::Ignored,
                duration_ms: 0,
                message: None,
                location: location.clone(),
                attempts: 1,
            });
        }
    }
    // Doctests that did not run (compiled only, ignored, or failed to compile): rustdoc's verdict.
    let mut verdict_runs: Vec<ExecutableRun> = Vec::new();
    let verdict_ids: Vec<String> = doctests
        .verdicts
        .iter()
        .map(|v| format!("{}::{}", v.target, v.test.name))
        .collect();
    let verdicts_in_partition = match &options.partition {
        Some(partition) => {
            let ids: Vec<&str> = verdict_ids.iter().map(String::as_str).collect();
            partition.select(&[ids]).remove(0)
        }
        None => vec![true; verdict_ids.len()],
    };
    for ((verdict, id), in_this_partition) in doctests
        .verdicts
        .iter()
        .zip(verdict_ids)
        .zip(verdicts_in_partition)
    {
        let selected = options
            .only_tests
            .as_ref()
            .is_none_or(|only| only.selects(&verdict.package.name, &id));
        if !selected {
            continue;
        }
        in_partition.push(in_this_partition);
        tests.push(TestInfo {
            id,
            outcome: verdict.outcome.clone(),
            duration_ms: 0,
            message: verdict.message.clone(),
            location: verdict.test.location.clone(),
            attempts: 1,
        });
        let result = TestResult {
            name: verdict.test.name.clone(),
            outcome: verdict.outcome.clone(),
            message: verdict.message.clone(),
        };
        match verdict_runs
            .iter_mut()
            .find(|r| r.executable.package.name == verdict.package.name)
        {
            Some(run) => run.tests.push(result),
            None => verdict_runs.push(ExecutableRun {
                executable: TestExecutable {
                    path: workspace.coverlay_dir().join("doctests"),
                    target: verdict.target.clone(),
                    kind: "doctest".into(),
                    package: verdict.package.clone(),
                },
                counting: CountingStats::default(),
                exits: Vec::new(),
                tests: vec![result],
                stdout: String::new(),
                stderr: String::new(),
            }),
        }
    }
    // Doctests a selection did not compile: listed, not run, so their earlier results stay.
    for unrun in &doctests.unrun {
        in_partition.push(true);
        tests.push(TestInfo {
            id: format!("{}::{}", unrun.target, unrun.test.name),
            outcome: Outcome::Ignored,
            duration_ms: 0,
            message: None,
            location: unrun.test.location.clone(),
            attempts: 1,
        });
    }
    let targets: Vec<Vec<Option<Target>>> = plans.iter().map(targets).collect();
    let entry_targets: Vec<Vec<Vec<Option<Target>>>> =
        plans.iter().map(inlined_entry_targets).collect();
    let branch_targets: Vec<Vec<BranchTarget>> = plans.iter().map(branch_targets).collect();
    let mut aggregate = Aggregate::default();
    let mut counted: Vec<ShardSums> = (0..targets.len()).map(|_| ShardSums::default()).collect();
    let mut runs: Vec<ExecutableRun> = executables
        .into_iter()
        .map(|executable| ExecutableRun {
            executable,
            counting: CountingStats::default(),
            exits: Vec::new(),
            tests: Vec::new(),
            stdout: String::new(),
            stderr: String::new(),
        })
        .collect();
    for (shard, shard_run) in shards.iter().zip(shard_runs) {
        let shard_run = shard_run?;
        let run = &mut runs[shard.executable];
        tracing::debug!(
            "{}: {} tests, {} of {} breakpoints hit, {} traps, sites {:?}",
            run.executable.target,
            shard.tests.len(),
            shard_run.hits.iter().filter(|&&h| h > 0).count(),
            shard_run.hits.len(),
            shard_run.stats.traps,
            shard_run.stats.sites,
        );
        let base = first_test[shard.executable];
        counted[shard.executable].add(
            &shard_run.hits,
            &shard_run.capped,
            shard_run
                .test_hits
                .iter()
                .map(|&(test, bp, hits)| (TestId(base + test), BreakpointId(bp), hits)),
        );
        // A binary a test ran counts for that test (and for no test when none was running).
        for followed in &shard_run.followed {
            let test_hits = followed.test.into_iter().flat_map(|test| {
                followed
                    .hits
                    .iter()
                    .enumerate()
                    .filter(|(_, &hits)| hits > 0)
                    .map(move |(bp, &hits)| (TestId(base + test), BreakpointId(bp as u32), hits))
            });
            counted[first_test.len() + followed.executable].add(
                &followed.hits,
                &followed.capped,
                test_hits,
            );
        }
        for (number, result, duration) in &shard_run.results {
            let info = &mut tests[(base + number) as usize];
            info.outcome = result.outcome.clone();
            info.message = result.message.clone();
            info.duration_ms = duration.as_millis() as u64;
        }
        run.counting.traps += shard_run.stats.traps;
        if run.counting.sites == engine::SiteCounts::default() {
            run.counting.sites = shard_run.stats.sites;
        }
        run.exits.extend(shard_run.exits);
        run.tests
            .extend(shard_run.results.into_iter().map(|(_, r, _)| r));
        run.stdout.push_str(&shard_run.stdout);
        run.stderr.push_str(&shard_run.stderr);
    }
    // Shards of one executable are summed before a line takes the busiest of its breakpoints,
    // so that a line's count does not depend on how the tests were split.
    for (executable, counted) in counted.iter().enumerate() {
        if counted.hits.is_empty() {
            continue;
        }
        // The branches count once, with the executable's own targets.
        for (layer, targets) in std::iter::once(&targets[executable])
            .chain(&entry_targets[executable])
            .enumerate()
        {
            aggregate.add(ExecutableCounts {
                targets,
                hits: &counted.hits,
                capped: &counted.capped,
                test_hits: &counted.test_hits,
                branches: if layer == 0 {
                    &branch_targets[executable]
                } else {
                    &[]
                },
            });
        }
    }
    tracing::debug!("counts aggregated after {:?}", started.elapsed());
    runs.extend(verdict_runs);
    for run in &mut runs {
        run.tests.sort_by(|a, b| a.name.cmp(&b.name));
    }
    if options.first_hit {
        aggregate.spread_to_functions(&|key| {
            let function = sources.files[key.source.0 as usize]
                .analysis
                .function_at(key.line)?;
            Some(LineKey {
                source: key.source,
                line: function.line,
            })
        });
    }
    let mut coverage = merge(&sources, &aggregate, &workspace, &cfgs, options);
    tracing::debug!("coverage merged after {:?}", started.elapsed());
    for (&(executable, n), &count) in &attempts {
        tests[(first_test[executable] + n) as usize].attempts = count;
    }
    write_durations(&durations_file, durations, &tests);
    coverage.tests = tests;
    if options.partition.is_some() {
        coverage.retain_tests(&in_partition);
    }
    let sources =
        fingerprinting
            .and_then(|parsing| parsing.join().ok())
            .map(|(hashes, fingerprints)| SourceSnapshot {
                hashes,
                fingerprints,
                inputs: selection::build_inputs(
                    &workspace,
                    runs.iter()
                        .map(|r| &r.executable)
                        .filter(|e| e.kind != "doctest"),
                ),
            });
    tracing::debug!("run reported after {:?}", started.elapsed());
    Ok(RunReport {
        workspace,
        coverage,
        executables: runs,
        sources,
        narrowed,
        phases: Phases {
            build: built_at,
            prepare: prepared_at - built_at,
            tests: traced_at - prepared_at,
            report: started.elapsed() - traced_at,
        },
    })
}

/// The cargo arguments for the doctests, when the run measures them: every library's, unless the
/// user's arguments choose targets; in a run narrowed to one package's tests, that package's, if
/// the filter may select a doctest.
fn doctest_args(workspace: &Workspace, options: &RunOptions) -> Option<Vec<String>> {
    if !options.doctests || !workspace.packages.iter().any(|p| p.doctested) {
        return None;
    }
    let end = options
        .cargo_args
        .iter()
        .position(|a| a == "--")
        .unwrap_or(options.cargo_args.len());
    if options.cargo_args[..end]
        .iter()
        .any(|a| cargo::selects_targets(a))
    {
        return None;
    }
    match &options.only_tests {
        None => Some(options.cargo_args.clone()),
        Some(only) => {
            let may_select = !only.packages.is_empty()
                || only.ids.iter().any(|id| crate::doctests::is_doctest(id));
            if !may_select {
                return None;
            }
            match only.build.first() {
                Some(target) if options.cargo_args.is_empty() => {
                    Some(vec!["-p".to_owned(), target.package.clone()])
                }
                _ => Some(options.cargo_args.clone()),
            }
        }
    }
}

/// An executable's tests as `--list` gives them: the same for the same executable, so kept by its
/// identity (a process start saved per executable and run).
fn list_tests(executable: &TestExecutable, cache: &JsonCache) -> Option<Vec<String>> {
    let list = || testrun::list(&program(executable, None));
    cache.get_or_insert_for(&executable.path, "listing", list)
}

/// What each breakpoint of a plan counts for, in the counting model's terms.
fn targets(plan: &Plan) -> Vec<Option<Target>> {
    plan.targets
        .iter()
        .zip(&plan.instances)
        .map(|(target, &instance)| {
            let (source, line) = (*target)?;
            Some(Target {
                line: LineKey {
                    source: SourceId(source as u32),
                    line,
                },
                instance: InstanceId(instance),
            })
        })
        .collect()
}

/// The inlined copies' entries as targets of their functions' `fn` lines (`Plan::inlined_entries`),
/// in layers that each give a breakpoint at most one target (nested copies may begin at the
/// same address); the counting model adds each layer like an executable's own targets.
fn inlined_entry_targets(plan: &Plan) -> Vec<Vec<Option<Target>>> {
    let mut layers: Vec<Vec<Option<Target>>> = Vec::new();
    for &(breakpoint, (source, line), instance) in &plan.inlined_entries {
        let target = Target {
            line: LineKey {
                source: SourceId(source as u32),
                line,
            },
            instance: InstanceId(instance),
        };
        match layers.iter_mut().find(|layer| layer[breakpoint].is_none()) {
            Some(layer) => layer[breakpoint] = Some(target),
            None => {
                let mut layer = vec![None; plan.addresses.len()];
                layer[breakpoint] = Some(target);
                layers.push(layer);
            }
        }
    }
    layers
}

/// How the sides of each source branch of a plan are counted, in the counting model's terms.
fn branch_targets(plan: &Plan) -> Vec<BranchTarget> {
    let id = |index: usize| BreakpointId(index as u32);
    plan.branches
        .iter()
        .map(|branch| BranchTarget {
            key: BranchKey {
                line: LineKey {
                    source: SourceId(branch.source as u32),
                    line: branch.line,
                },
                ordinal: branch.ordinal,
            },
            construct: branch.construct,
            oriented: branch.oriented,
            taken: branch.taken.map(id),
            not_taken: branch.not_taken.map(id),
        })
        .collect()
}

/// The code of `exe`, read the first time it is asked for; `None` (said once) when unreadable.
fn exe_code<'a>(
    cell: &'a OnceLock<Option<engine::ExeCode>>,
    exe: &Path,
) -> Option<&'a engine::ExeCode> {
    cell.get_or_init(|| {
        engine::ExeCode::read(exe)
            .inspect_err(|error| warn_unreadable(exe, error))
            .ok()
    })
    .as_ref()
}

fn warn_unreadable(exe: &Path, error: &std::io::Error) {
    tracing::warn!(
        "cannot read the code of {}: {error}; counting it with int3, without branches",
        exe.display()
    )
}

/// The countable conditional jumps of each function of `table` in `exe` (aligned with
/// `table.functions`), cached by the executable's identity: decoding every workspace function is
/// the costly part of planning branches. Unreadable code: no branches.
fn machine_branches(
    exe: &Path,
    table: &crate::dwarf::LineTable,
    cache: &JsonCache,
    code: &OnceLock<Option<engine::ExeCode>>,
) -> Vec<Vec<engine::branches::MachineBranch>> {
    let find = || match exe_code(code, exe) {
        Some(code) => {
            let entries: Vec<u64> = table.functions.iter().map(|f| f.address).collect();
            // A new executable: its counting sites will need the calls of its whole code too,
            // read meanwhile on another core.
            std::thread::scope(|scope| {
                scope.spawn(|| {
                    code.read_calls();
                });
                engine::branches::find_all(code, &entries)
            })
        }
        None => {
            vec![Vec::new(); table.functions.len()]
        }
    };
    cache.get_or_insert_for(
        exe,
        (
            "branches",
            engine::branches::FINDER_VERSION,
            table.functions.len(),
        ),
        find,
    )
}

/// How each breakpoint of `exe` is counted: test entries always trap (the tracer must see each
/// test start); the rest jump to trampolines where the code allows. Unreadable code: all trap.
/// Cached by the executable's identity and the breakpoints asked for.
fn counting_sites(
    plan: &Plan,
    exe: &Path,
    cache: &JsonCache,
    code: &OnceLock<Option<engine::ExeCode>>,
) -> Vec<engine::Site> {
    let mut traps = vec![false; plan.addresses.len()];
    for &(index, _) in &plan.test_entries {
        traps[index] = true;
    }
    let classify = || match exe_code(code, exe) {
        Some(code) => engine::sites::classify(code, &plan.addresses, &traps),
        None => {
            let mut sites = vec![engine::Site::Trap; plan.addresses.len()];
            for &edge in &plan.edges {
                sites[edge] = engine::Site::Lost;
            }
            sites
        }
    };
    cache.get_or_insert_for(
        exe,
        (
            "sites",
            engine::sites::CLASSIFIER_VERSION,
            &plan.addresses,
            &traps,
        ),
        classify,
    )
}

/// Which of a plan's breakpoints another of their line bounds (`engine::bounded`), kept by the
/// executable's identity; none when its code cannot be read.
fn leave_out_bounded(
    plan: &Plan,
    exe: &Path,
    cache: &JsonCache,
    code: &OnceLock<Option<engine::ExeCode>>,
    jobs: usize,
) -> Vec<bool> {
    let groups = plan.groups();
    let find = || match exe_code(code, exe) {
        Some(code) => engine::bounded::bounded(code, &plan.addresses, &groups, jobs),
        None => vec![false; plan.addresses.len()],
    };
    cache.get_or_insert_for(
        exe,
        (
            "bounded",
            engine::bounded::VERSION,
            &plan.addresses,
            &groups,
        ),
        find,
    )
}

/// An executable that is not a libtest harness runs once; its output is read as libtest's if it is.
fn whole_run(
    program: &engine::Program,
    breakpoints: &engine::Breakpoints,
    options: &engine::Options,
) -> Result<testrun::ShardRun, EngineError> {
    let trace = engine::trace(program, breakpoints, options)?;
    let mut run = testrun::ShardRun::default();
    run.add(&trace);
    run.exits.push(trace.exit);
    Ok(run)
}

/// How `cargo test` runs a test executable: with the environment and working directory cargo
/// gave it when asked (`test_env`), or else from its package directory with the variables every
/// test can rely on.
fn program(executable: &TestExecutable, env: Option<&TestEnv>) -> engine::Program {
    let package = &executable.package;
    let (env, cwd) = match env {
        Some(env) => (env.vars().collect(), env.cwd.clone()),
        None => {
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
            let env = env
                .into_iter()
                .map(|(k, v)| (OsString::from(k), v))
                .collect();
            (env, package.manifest_dir.clone())
        }
    };
    engine::Program {
        exe: executable.path.clone(),
        args: Vec::new(),
        env,
        cwd,
    }
}

/// Decides the final set of coverable lines and attaches the hits.
///
/// A statement line counts when some executable has code for it. A line with no code counts only
/// when its whole function has none anywhere (never instantiated or never linked): then the function
/// shows as uncovered rather than vanishing. Lines that may be compiled out count only with code:
/// item-position macro calls, and code under a `#[cfg(…)]` the build's cfg set does not enable
/// for certain.
fn merge(
    sources: &Sources,
    aggregate: &Aggregate,
    workspace: &Workspace,
    cfgs: &cargo::BuildCfgs,
    options: &RunOptions,
) -> Coverage {
    let exclude_tests = options.exclude_tests;
    let test_modules = if exclude_tests {
        test_module_files(sources)
    } else {
        HashSet::new()
    };
    let elsewhere = macros_invoked_elsewhere(sources, cfgs);
    let mut files: Vec<FileCoverage> = sources
        .files
        .iter()
        .enumerate()
        .filter_map(|(id, file)| {
            let test_file = workspace.is_test_file(&file.path) || test_modules.contains(&file.path);
            if exclude_tests && test_file {
                return None;
            }
            let keep = |line: u32| !(exclude_tests && file.analysis.is_test_code(line));
            let cfg = file
                .analysis
                .has_gates()
                .then(|| cfgs.for_file(&file.path))
                .flatten()
                .map(|mut set| {
                    set.set_invoked_elsewhere(elsewhere[id].clone());
                    set
                });
            let is_coverable =
                |file: &SourceFile, line: u32| is_coverable(file, line, cfg.as_ref());
            let source = SourceId(id as u32);
            // A hoisted statement shows the count of the next statement of its block.
            // A later line of a statement with code shows the statement's count or its own.
            // A bare jump shows what the counts around it, or the branch entering it, say (see
            // `JumpCount`).
            let counted_as = |line: u32| {
                if let Some(&statement) = file.aliases.get(&line) {
                    return is_coverable(file, statement).then_some(Shown::Line(statement));
                }
                if file.separate.contains(&line) {
                    return Some(Shown::Line(line));
                }
                if let Some(first) = file.analysis.opened_statement(line) {
                    if !is_coverable(file, line) {
                        return (is_coverable(file, first)
                            && file.lines_with_code.contains(&first))
                        .then_some(Shown::Line(first));
                    }
                }
                let ran_as_code = |line: u32| {
                    is_coverable(file, line)
                        && file.lines_with_code.contains(&line)
                        && !file.hoisted.contains(&line)
                };
                // A bare jump has no code: its count follows from the lines around it.
                match file.analysis.jump_count(line) {
                    Some(JumpCount::After(statement)) if !is_coverable(file, line) => {
                        return ran_as_code(statement).then_some(Shown::Line(statement));
                    }
                    Some(JumpCount::Difference(all, rest)) if !is_coverable(file, line) => {
                        return (ran_as_code(all) && ran_as_code(rest) && !options.first_hit)
                            .then_some(Shown::Difference(all, rest));
                    }
                    Some(JumpCount::Remainder { all, rest }) if !is_coverable(file, line) => {
                        let rest = rest.into_iter().flatten();
                        return (ran_as_code(all)
                            && rest.clone().all(ran_as_code)
                            && !options.first_hit)
                            .then_some(Shown::Remainder(all, rest.collect()));
                    }
                    Some(
                        jump @ (JumpCount::Taken {
                            condition: statement,
                            ..
                        }
                        | JumpCount::Passed(statement)),
                    ) if !is_coverable(file, line) => {
                        return ran_as_code(statement)
                            .then(|| branch_side(aggregate, source, jump))
                            .flatten()
                            .map(Shown::Counts);
                    }
                    Some(
                        jump @ JumpCount::LoopExit {
                            before,
                            condition,
                            header,
                            ..
                        },
                    ) if !is_coverable(file, line) => {
                        if !ran_as_code(condition) {
                            return None;
                        }
                        if let Some(counts) = branch_side(aggregate, source, jump) {
                            return Some(Shown::Counts(counts));
                        }
                        return (ran_as_code(before) && ran_as_code(header) && !options.first_hit)
                            .then_some(Shown::LoopExit {
                                before,
                                condition,
                                header,
                            });
                    }
                    _ => {}
                }
                if !file.hoisted.contains(&line) {
                    return is_coverable(file, line).then_some(Shown::Line(line));
                }
                let next = file.analysis.next_in_block(line)?;
                (is_coverable(file, next) && file.lines_with_code.contains(&next))
                    .then_some(Shown::Line(next))
            };
            let counts_of = |line: u32| aggregate.line(LineKey { source, line });
            let lines: Vec<LineCoverage> = (1..=file.analysis.line_count())
                .filter(|&line| keep(line))
                .filter_map(|line| Some((line, counted_as(line)?)))
                .filter_map(|(line, shown)| {
                    let counts = match shown {
                        Shown::Line(counted) => counts_of(counted).map(Cow::Borrowed),
                        // Counts of the int3 fallback are lower bounds: no difference of them.
                        Shown::Difference(all, rest) => match (counts_of(all), counts_of(rest)) {
                            (Some(all), rest) => Some(Cow::Owned(difference(all, rest)?)),
                            (None, _) => None,
                        },
                        Shown::Counts(counts) => Some(Cow::Owned(counts)),
                        Shown::Remainder(all, rest) => match counts_of(all) {
                            Some(all) => {
                                let mut left = all.clone();
                                for line in rest {
                                    left = difference(&left, counts_of(line))?;
                                }
                                Some(Cow::Owned(left))
                            }
                            None => None,
                        },
                        Shown::LoopExit {
                            before,
                            condition,
                            header,
                        } => match (counts_of(before), counts_of(condition)) {
                            (Some(before), Some(condition)) => Some(Cow::Owned(difference(
                                &sum(before, condition)?,
                                counts_of(header),
                            )?)),
                            _ => None,
                        },
                    };
                    Some((line, counts))
                })
                .map(|(line, counts)| {
                    let Some(counts) = counts else {
                        return LineCoverage {
                            line,
                            hits: 0,
                            capped: false,
                            tests: Vec::new(),
                        };
                    };
                    // First hits say "ran", not how often.
                    let clamp = |hits: u64| if options.first_hit { hits.min(1) } else { hits };
                    LineCoverage {
                        line,
                        hits: clamp(counts.hits),
                        capped: counts.capped && counts.hits > 0,
                        tests: counts
                            .tests
                            .iter()
                            .map(|(test, &hits)| TestHits {
                                test: test.0,
                                hits: clamp(hits),
                            })
                            .collect(),
                    }
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
            let source = SourceId(id as u32);
            // First hits say "taken", not how often (each process traps a side once).
            let clamp = |hits: u64| if options.first_hit { hits.min(1) } else { hits };
            let branches: Vec<BranchCoverage> = aggregate
                .branches()
                .range(branch_key(source, 0, 0)..branch_key(source, u32::MAX, u32::MAX))
                .filter(|(key, _)| entry_hits(key.line.line).is_some())
                .map(|(key, counts)| BranchCoverage {
                    line: key.line.line,
                    index: key.ordinal,
                    construct: counts.construct,
                    oriented: counts.oriented,
                    taken: clamp(counts.taken),
                    not_taken: clamp(counts.not_taken),
                    capped: counts.capped,
                    tests: counts
                        .tests
                        .iter()
                        .map(|(test, &(taken, not_taken))| BranchTestHits {
                            test: test.0,
                            taken: clamp(taken),
                            not_taken: clamp(not_taken),
                        })
                        .collect(),
                })
                .collect();
            // Counted from the lines, so first hits (`--no-counts`) tell which arms ran too.
            let matches = if options.branches {
                match_coverage(&file.analysis, &lines, &branches)
            } else {
                Vec::new()
            };
            Some(FileCoverage {
                path: file.path.clone(),
                lines,
                functions,
                branches,
                matches,
            })
        })
        .collect();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Coverage {
        files,
        tests: Vec::new(),
        count_cap: if options.first_hit {
            1
        } else {
            options.count_cap.max(1)
        },
    }
}

/// The `match`es of a file whose arms can be counted (`analysis::MatchArms`), each arm with the
/// counts of its counted line, shown on the line of the statement that holds the `match`. An arm
/// whose line is not reported (no code, excluded) is left out, and so is a `match` with fewer than
/// two arms left.
fn match_coverage(
    analysis: &SourceAnalysis,
    lines: &[LineCoverage],
    branches: &[BranchCoverage],
) -> Vec<MatchCoverage> {
    let line_of = |line: u32| {
        lines
            .binary_search_by_key(&line, |l| l.line)
            .ok()
            .map(|i| &lines[i])
    };
    let mut matches: Vec<MatchCoverage> = Vec::new();
    for found in analysis.matches() {
        let shown = match analysis.kind(found.line) {
            LineKind::Start { .. } => found.line,
            LineKind::Continuation { owner } => owner,
            LineKind::None => continue,
        };
        if line_of(shown).is_none() {
            continue;
        }
        let arms: Vec<LineCoverage> = found
            .arms
            .iter()
            .filter_map(|arm| {
                Some(LineCoverage {
                    line: arm.line,
                    ..line_of(arm.counted)?.clone()
                })
            })
            .collect();
        if arms.len() < 2 {
            continue;
        }
        // After the line's two-way branches, whose indexes are kept when some are left out
        // (first hits), and the line's earlier matches.
        let after = branches
            .iter()
            .filter(|b| b.line == shown)
            .map(|b| b.index + 1)
            .max()
            .unwrap_or(0);
        let index = after + matches.iter().filter(|m| m.line == shown).count() as u32;
        matches.push(MatchCoverage {
            line: shown,
            index,
            arms,
        });
    }
    matches.sort_by_key(|m| (m.line, m.index));
    matches
}

fn branch_key(source: SourceId, line: u32, ordinal: u32) -> BranchKey {
    BranchKey {
        line: LineKey { source, line },
        ordinal,
    }
}

/// Whose counts a reported line shows.
enum Shown {
    Line(u32),
    /// The first line's less the second's (a bare jump's, see `JumpCount::Difference`).
    Difference(u32, u32),
    /// A branch side's (a bare jump's, see `branch_side`).
    Counts(LineCounts),
    /// The first line's less each of the others' (see `JumpCount::Remainder`).
    Remainder(u32, Vec<u32>),
    /// `before`'s and `condition`'s less `header`'s (see `JumpCount::LoopExit`).
    LoopExit {
        before: u32,
        condition: u32,
        header: u32,
    },
}

/// `a` and `b` added, per test too; `None` when either is a lower bound.
fn sum(a: &LineCounts, b: &LineCounts) -> Option<LineCounts> {
    if a.capped || b.capped {
        return None;
    }
    let mut tests = a.tests.clone();
    for (test, hits) in &b.tests {
        *tests.entry(*test).or_default() += hits;
    }
    Some(LineCounts {
        hits: a.hits + b.hits,
        capped: false,
        tests,
    })
}

/// The counts of a bare jump that a branch side enters (`JumpCount::Taken`, `Passed` or
/// `LoopExit`); `None`
/// when the branches on the line cannot say: none was found there (branches not counted, or
/// both ways shared with other code), one is of another construct or not oriented, or a side
/// was counted by int3 (a lower bound, maybe a difference of one).
fn branch_side(aggregate: &Aggregate, source: SourceId, jump: JumpCount) -> Option<LineCounts> {
    let (line, wanted, operands): (u32, &[Construct], u32) = match jump {
        JumpCount::Taken {
            condition,
            operands,
        }
        | JumpCount::LoopExit {
            condition,
            operands: Some(operands),
            ..
        } => (
            condition,
            &[Construct::If, Construct::ShortCircuit, Construct::Guard],
            operands,
        ),
        JumpCount::Passed(line) => (line, &[Construct::Try], 1),
        JumpCount::After(_)
        | JumpCount::Difference(..)
        | JumpCount::Remainder { .. }
        | JumpCount::LoopExit { .. } => return None,
    };
    let branches: Vec<&BranchCounts> = aggregate
        .branches()
        .range(branch_key(source, line, 0)..=branch_key(source, line, u32::MAX))
        .map(|(_, counts)| counts)
        .collect();
    // One branch per operand, or some operand's jump was left out (its sides shared with other
    // code) and the others do not tell how often the block ran.
    let usable = |b: &&BranchCounts| wanted.contains(&b.construct) && b.oriented && !b.capped;
    if branches.len() != operands as usize || !branches.iter().all(usable) {
        return None;
    }
    // The `?`'s way on is its false side. Along an `&&` chain each operand's true side counts
    // the runs that got past it, so the block's count is the smallest.
    let side = |sides: (u64, u64)| match jump {
        JumpCount::Passed(_) => sides.1,
        _ => sides.0,
    };
    let hits = branches
        .iter()
        .map(|b| side((b.taken, b.not_taken)))
        .min()?;
    let mut tests: BTreeMap<TestId, u64> = BTreeMap::new();
    for (test, _) in branches.iter().flat_map(|b| &b.tests) {
        let least = branches
            .iter()
            .map(|b| b.tests.get(test).map_or(0, |&sides| side(sides)))
            .min()
            .unwrap_or(0);
        if least > 0 {
            tests.insert(*test, least);
        }
    }
    Some(LineCounts {
        hits,
        capped: false,
        tests,
    })
}

/// `all` less `rest`, per test too; `None` when either is a lower bound (counted by int3 up to
/// the cap), which makes a difference meaningless.
fn difference(all: &LineCounts, rest: Option<&LineCounts>) -> Option<LineCounts> {
    if all.capped || rest.is_some_and(|rest| rest.capped) {
        return None;
    }
    let rest_of = |test: &TestId| {
        rest.and_then(|rest| rest.tests.get(test))
            .copied()
            .unwrap_or(0)
    };
    Some(LineCounts {
        hits: all.hits.saturating_sub(rest.map_or(0, |rest| rest.hits)),
        capped: false,
        tests: all
            .tests
            .iter()
            .map(|(test, &hits)| (*test, hits.saturating_sub(rest_of(test))))
            .filter(|&(_, hits)| hits > 0)
            .collect(),
    })
}

/// The files of modules declared under `#[cfg(test)]`, and of the modules they declare: test code
/// throughout (the tests a macro generates there included).
fn test_module_files(sources: &Sources) -> HashSet<PathBuf> {
    let known: HashSet<&Path> = sources.files.iter().map(|f| f.path.as_path()).collect();
    let declared: HashMap<&Path, Vec<(PathBuf, bool)>> = sources
        .files
        .iter()
        .map(|f| {
            let mut files = f.analysis.module_files(&f.path);
            files.retain(|(path, _)| known.contains(path.as_path()));
            (f.path.as_path(), files)
        })
        .collect();
    let mut tests: HashSet<PathBuf> = declared
        .values()
        .flatten()
        .filter(|(_, test)| *test)
        .map(|(path, _)| path.clone())
        .collect();
    let mut pending: Vec<PathBuf> = tests.iter().cloned().collect();
    while let Some(file) = pending.pop() {
        for (child, _) in declared.get(file.as_path()).into_iter().flatten() {
            if tests.insert(child.clone()) {
                pending.push(child.clone());
            }
        }
    }
    tests
}

/// Per source file: the macros other files of its package invoke (see
/// `analysis::invoked_elsewhere`), which decide whether the functions its macros define are
/// compiled.
fn macros_invoked_elsewhere(sources: &Sources, cfgs: &cargo::BuildCfgs) -> Vec<HashSet<String>> {
    let mut by_package: HashMap<usize, Vec<usize>> = HashMap::new();
    for (id, file) in sources.files.iter().enumerate() {
        if let Some(package) = cfgs.package_of(&file.path) {
            by_package.entry(package).or_default().push(id);
        }
    }
    let mut elsewhere = vec![HashSet::new(); sources.files.len()];
    for (package, ids) in by_package {
        let set = cfgs.for_package(package);
        let files: Vec<(&SourceAnalysis, Option<&CfgSet>)> = ids
            .iter()
            .map(|&id| (&sources.files[id].analysis, set.as_ref()))
            .collect();
        for (id, names) in ids
            .into_iter()
            .zip(crate::analysis::invoked_elsewhere(&files))
        {
            elsewhere[id] = names;
        }
    }
    elsewhere
}

/// `cfg`: the set the file's package is built with, when it has `#[cfg(…)]`s to decide.
fn is_coverable(file: &SourceFile, line: u32, cfg: Option<&CfgSet>) -> bool {
    let LineKind::Start { compiled_only } = file.analysis.kind(line) else {
        // A closure body on a later line of its statement: a line when the closure has code.
        return file.analysis.is_closure_body(line) && file.lines_with_code.contains(&line);
    };
    if file.lines_with_code.contains(&line) {
        return true;
    }
    // Code under a cfg the build enables is compiled like any other (a generic no test
    // instantiates has no machine code either way).
    let compiled_in =
        |line: u32| cfg.and_then(|set| file.analysis.compiled_in(line, set)) == Some(true);
    if compiled_only && !compiled_in(line) {
        return false;
    }
    match file.analysis.function_at(line) {
        Some(function) => {
            (!function.compiled_only || compiled_in(function.line))
                && file
                    .lines_with_code
                    .range(function.line..=function.end_line)
                    .next()
                    .is_none()
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_take_their_arms_counts_from_lines_and_come_after_the_lines_branches() {
        let source = "\
fn f(o: Option<u32>, c: char) -> u32 {
    let n = match o {
        Some(n) => n,
        None => 0,
    };
    match c {
        'a' => 1,
        'b' => 2,
        _ => 3,
    }
}
";
        let analysis = crate::analysis::analyze(source).unwrap();
        let line =
            |line, tests: &[(u32, u64)]| crate::coverage::test_data::line(line, tests, 0, false);
        // Line 7 (`'a' => 1`) has no count (say, excluded): `match c` keeps two arms; line 4 has
        // none either, so `match o` has one arm left and is no branch point.
        let lines = [
            line(2, &[(0, 3)]),
            line(3, &[(0, 3)]),
            line(6, &[(0, 3)]),
            line(8, &[(0, 1)]),
            line(9, &[(0, 2)]),
        ];
        let mut second = crate::coverage::test_data::branch(6, &[(0, 1, 2)]);
        second.index = 2;
        let matches = match_coverage(&analysis, &lines, &[second]);
        assert_eq!(matches.len(), 1);
        let arms: Vec<(u32, u64)> = matches[0].arms.iter().map(|a| (a.line, a.hits)).collect();
        assert_eq!(
            (matches[0].line, matches[0].index, arms),
            (6, 3, vec![(8, 1), (9, 2)])
        );
        assert_eq!(matches[0].arms[1].tests, lines[4].tests);
    }

    #[test]
    fn inlined_entries_sharing_an_address_go_to_separate_layers() {
        let plan = Plan {
            addresses: vec![0x10, 0x20, 0x30],
            targets: vec![Some((0, 5)), None, Some((0, 9))],
            inlined_entries: vec![(0, (0, 1), 7), (1, (0, 2), 8), (0, (1, 3), 9)],
            ..Plan::default()
        };
        let target = |source, line, instance| {
            Some(Target {
                line: LineKey {
                    source: SourceId(source),
                    line,
                },
                instance: InstanceId(instance),
            })
        };
        assert_eq!(
            inlined_entry_targets(&plan),
            [
                vec![target(0, 1, 7), target(0, 2, 8), None],
                vec![target(1, 3, 9), None, None]
            ]
        );
    }

    #[test]
    fn a_difference_is_taken_per_test_and_never_of_lower_bounds() {
        let counts = |hits, tests: &[(u32, u64)], capped| LineCounts {
            hits,
            capped,
            tests: tests.iter().map(|&(t, n)| (TestId(t), n)).collect(),
        };
        let all = counts(5, &[(0, 3), (1, 2)], false);
        let rest = counts(3, &[(0, 1), (1, 2)], false);
        assert_eq!(
            difference(&all, Some(&rest)),
            Some(counts(2, &[(0, 2)], false))
        );
        assert_eq!(difference(&all, None), Some(all.clone()));
        assert_eq!(difference(&all, Some(&counts(3, &[], true))), None);
    }
}
