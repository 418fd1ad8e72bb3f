//! Runs the tests of one executable under the engine so that every hit belongs to a test: one test
//! at a time per process (`--test-threads=1`), several processes (shards) at once, and a fresh
//! process for the tests still to run after one crashes, exits or hangs.

use std::collections::HashMap;
use std::ffi::OsString;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::engine::{self, EngineError, Exit};
use crate::libtest::{self, Outcome, TestResult};

/// Lists a libtest executable's tests (`--list --format terse`). `None` when the executable does
/// not speak libtest (`harness = false`): it is then run once as a whole.
pub fn list(program: &engine::Program) -> Option<Vec<String>> {
    let output = Command::new(&program.exe)
        .args(["--list", "--format", "terse"])
        .current_dir(&program.cwd)
        .envs(program.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let mut tests: Vec<String> = stdout
        .lines()
        .filter_map(|l| l.strip_suffix(": test"))
        .map(str::to_string)
        .collect();
    tests.sort();
    Some(tests)
}

/// What the processes of one shard did.
#[derive(Debug, Default)]
pub struct ShardRun {
    /// Executions per breakpoint, summed over processes.
    pub hits: Vec<u64>,
    /// Per breakpoint: counted by int3 up to the cap somewhere, so `hits` is a lower bound.
    pub capped: Vec<bool>,
    /// (test number, breakpoint, executions during that test).
    pub test_hits: Vec<(u32, u32, u64)>,
    /// By test number.
    pub results: Vec<(u32, TestResult, Duration)>,
    /// How each process ended, in order.
    pub exits: Vec<Exit>,
    pub stdout: String,
    pub stderr: String,
    pub stats: engine::Stats,
    /// What the workspace binaries its processes ran executed.
    pub followed: Vec<FollowedRun>,
}

/// One run of a workspace binary that a test started (see `engine::Options::follow`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowedRun {
    /// Index into `engine::Options::follow`.
    pub executable: usize,
    /// The test that started it: all of it counts for that test.
    pub test: Option<u32>,
    pub hits: Vec<u64>,
    pub capped: Vec<bool>,
}

impl ShardRun {
    /// Takes out what `test` ran and its result, as if it had not run (its counts leave the
    /// totals too): a retry's passing run brings its coverage instead.
    pub fn forget(&mut self, test: u32) {
        let hits = &mut self.hits;
        self.followed.retain(|f| f.test != Some(test));
        self.test_hits.retain(|&(t, bp, count)| {
            if t == test {
                if let Some(total) = hits.get_mut(bp as usize) {
                    *total = total.saturating_sub(count);
                }
            }
            t != test
        });
        self.results.retain(|(t, _, _)| *t != test);
    }

    /// Adds one process's trace.
    pub fn add(&mut self, trace: &engine::Trace) {
        if self.hits.is_empty() {
            self.hits = vec![0; trace.hits.len()];
            self.capped = vec![false; trace.hits.len()];
            self.stats.sites = trace.stats.sites;
        }
        for (total, hits) in self.hits.iter_mut().zip(&trace.hits) {
            *total += hits;
        }
        for (capped, now) in self.capped.iter_mut().zip(&trace.capped) {
            *capped |= now;
        }
        self.test_hits.extend(&trace.test_hits);
        self.stats.traps += trace.stats.traps;
        for f in &trace.followed {
            self.stats.traps += f.trace.stats.traps;
            self.followed.push(FollowedRun {
                executable: f.executable,
                test: f.test,
                hits: f.trace.hits.clone(),
                capped: f.trace.capped.clone(),
            });
        }
        self.stdout.push_str(&trace.stdout);
        self.stderr.push_str(&trace.stderr);
    }
}

/// Runs `tests` (test numbers with names) one at a time, starting a new process after each
/// process that dies under a test, until every test has an outcome.
pub fn run_shard(
    program: &engine::Program,
    breakpoints: &engine::Breakpoints,
    tests: &[(u32, &str)],
    options: &engine::Options,
) -> Result<ShardRun, EngineError> {
    let mut shard = ShardRun::default();
    let number_of: HashMap<&str, u32> = tests.iter().map(|&(n, name)| (name, n)).collect();
    let mut remaining: Vec<(u32, &str)> = tests.to_vec();
    while !remaining.is_empty() {
        let mut args: Vec<OsString> = vec!["--exact".into(), "--test-threads=1".into()];
        args.extend(remaining.iter().map(|&(_, name)| OsString::from(name)));
        let program = engine::Program {
            args,
            ..program.clone()
        };
        let trace = engine::trace(&program, breakpoints, options)?;
        shard.add(&trace);

        let durations = durations(&trace.test_starts, trace.duration);
        let unfinished = match trace.exit {
            Exit::TimedOut => Outcome::TimedOut,
            Exit::Signal(signal) => Outcome::Crashed { signal },
            Exit::Code(_) | Exit::Cancelled => Outcome::Failed,
        };
        let mut results = libtest::parse(&trace.stdout, unfinished);
        if let Exit::Code(code) = trace.exit {
            for result in results.iter_mut().filter(|r| r.message.is_none()) {
                if result.outcome == Outcome::Failed
                    && !trace
                        .stdout
                        .contains(&format!("---- {} stdout", result.name))
                {
                    result.message = Some(format!(
                        "the test process exited with code {code} during this test"
                    ));
                }
            }
        }
        let cancelled = trace.exit == Exit::Cancelled;
        shard.exits.push(trace.exit);
        let mut finished_any = false;
        for result in results {
            let Some(&number) = number_of.get(result.name.as_str()) else {
                continue;
            };
            finished_any = true;
            remaining.retain(|&(n, _)| n != number);
            let duration = durations.get(&number).copied().unwrap_or_default();
            shard.results.push((number, result, duration));
        }
        if cancelled {
            break;
        }
        if !finished_any && !remaining.is_empty() {
            // The process died before its first test: running it again would do the same.
            let outcome = match shard.exits.last() {
                Some(Exit::Signal(signal)) => Outcome::Crashed { signal: *signal },
                Some(Exit::TimedOut) => Outcome::TimedOut,
                _ => Outcome::Failed,
            };
            for (number, name) in remaining.drain(..) {
                let result = TestResult {
                    name: name.to_string(),
                    outcome: outcome.clone(),
                    message: Some("the test process ended before this test could run".into()),
                };
                shard.results.push((number, result, Duration::ZERO));
            }
        }
    }
    Ok(shard)
}

/// Runs doctests (test numbers with whether each expects a panic), each in a process of its own:
/// everything a process executes is its doctest's. A merged executable (`merged`) is told which
/// of its doctests to run by number; a standalone one holds a single doctest.
pub fn run_doctests(
    program: &engine::Program,
    breakpoints: &engine::Breakpoints,
    tests: &[(u32, &crate::doctests::Doctest)],
    merged: bool,
    options: &engine::Options,
) -> Result<ShardRun, EngineError> {
    let mut shard = ShardRun::default();
    for &(number, doctest) in tests {
        if options
            .cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Relaxed))
        {
            break;
        }
        if let Some(started) = &options.tests_started {
            started.fetch_add(1, Ordering::Relaxed);
        }
        let mut program = program.clone();
        if merged {
            program
                .env
                .push((crate::doctests::RUN_ONE.into(), number.to_string().into()));
        }
        let mut trace = engine::trace(&program, breakpoints, options)?;
        trace.test_hits = trace
            .hits
            .iter()
            .enumerate()
            .filter(|(_, &hits)| hits > 0)
            .map(|(bp, &hits)| (number, bp as u32, hits))
            .collect();
        for followed in &mut trace.followed {
            followed.test = Some(number);
        }
        shard.add(&trace);
        let result = doctest_result(doctest, &trace);
        shard.exits.push(trace.exit);
        shard.results.push((number, result, trace.duration));
    }
    Ok(shard)
}

/// A doctest passes when its process exits with 0, or, marked `should_panic`, with another code.
fn doctest_result(doctest: &crate::doctests::Doctest, trace: &engine::Trace) -> TestResult {
    let output = || {
        format!("{}{}", trace.stdout, trace.stderr)
            .trim_end()
            .to_owned()
    };
    let (outcome, message) = match trace.exit {
        Exit::Code(0) if doctest.should_panic => (
            Outcome::Failed,
            Some("the doctest is marked `should_panic` but did not panic".to_owned()),
        ),
        Exit::Code(0) => (Outcome::Passed, None),
        Exit::Code(_) if doctest.should_panic => (Outcome::Passed, None),
        Exit::Code(code) => (
            Outcome::Failed,
            Some(format!("{}\nthe doctest exited with code {code}", output())),
        ),
        Exit::Signal(signal) => (Outcome::Crashed { signal }, Some(output())),
        Exit::TimedOut => (Outcome::TimedOut, Some(output())),
        Exit::Cancelled => (Outcome::Failed, Some("cancelled".to_owned())),
    };
    TestResult {
        name: doctest.name.clone(),
        outcome,
        message,
    }
}

/// Each test lasted from its start to the next test's start (or the end of the process).
fn durations(starts: &[(u32, Duration)], end: Duration) -> HashMap<u32, Duration> {
    starts
        .iter()
        .enumerate()
        .map(|(i, &(test, start))| {
            let until = starts.get(i + 1).map_or(end, |&(_, next)| next);
            (test, until.saturating_sub(start))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forgotten_test_leaves_the_totals_and_the_results() {
        let result = |name: &str, outcome| {
            (
                0,
                TestResult {
                    name: name.into(),
                    outcome,
                    message: None,
                },
                Duration::ZERO,
            )
        };
        let mut run = ShardRun {
            // Breakpoint 2 also ran outside any test (once).
            hits: vec![5, 0, 8],
            capped: vec![false; 3],
            test_hits: vec![(0, 0, 2), (1, 0, 3), (1, 2, 7)],
            results: vec![result("a", Outcome::Passed), result("b", Outcome::Failed)],
            ..ShardRun::default()
        };
        run.results[1].0 = 1;
        run.forget(1);
        assert_eq!(run.hits, [2, 0, 1]);
        assert_eq!(run.test_hits, [(0, 0, 2)]);
        assert_eq!(run.results.len(), 1);
        assert_eq!(run.results[0].1.name, "a");
    }
}
