//! Which tests a run traces and how they are spread over processes: the filter and partition
//! choose tests, earlier durations balance them into shards, and progress counts them as they go.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::{Progress, RunOptions};
use crate::cargo::TestExecutable;
use crate::coverage::TestInfo;
use crate::libtest::Outcome;

/// What a process start costs, in milliseconds of tests: below this much expected work, an
/// executable's tests stay in one process.
const SPLIT_WORTH_MS: u64 = 100;

/// Test numbers (with their durations in earlier runs, when known) split into up to `jobs`
/// shards of about equal expected time: longest first, each to the least loaded shard. Without
/// any known duration, up to `jobs` shards of at least 8 tests, round-robin (a process start
/// costs more than a few short tests). Each shard keeps libtest's order.
fn split(tests: &[(u32, Option<u64>)], jobs: usize) -> Vec<Vec<u32>> {
    let known: Vec<u64> = tests.iter().filter_map(|t| t.1).collect();
    let jobs = jobs.max(1);
    if known.is_empty() {
        let count = jobs.clamp(1, tests.len().div_ceil(8).max(1));
        return (0..count)
            .map(|k| tests.iter().skip(k).step_by(count).map(|t| t.0).collect())
            .collect();
    }
    let mut sorted = known.clone();
    sorted.sort_unstable();
    let typical = sorted[sorted.len() / 2].max(1);
    let mut expected: Vec<(u64, u32)> = tests
        .iter()
        .map(|&(n, ms)| (ms.unwrap_or(typical).max(1), n))
        .collect();
    let total: u64 = expected.iter().map(|e| e.0).sum();
    let count = if total < SPLIT_WORTH_MS {
        1
    } else {
        jobs.min(tests.len())
    };
    expected.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut shards: Vec<(u64, Vec<u32>)> = vec![(0, Vec::new()); count];
    for (ms, n) in expected {
        let lightest = shards
            .iter_mut()
            .min_by_key(|s| s.0)
            .expect("at least one shard");
        lightest.0 += ms;
        lightest.1.push(n);
    }
    shards
        .into_iter()
        .map(|(_, mut tests)| {
            tests.sort_unstable();
            tests
        })
        .filter(|tests| !tests.is_empty())
        .collect()
}

/// Test durations of earlier runs (test id → ms), for [`split`].
pub(super) fn read_durations(file: &Path) -> HashMap<String, u64> {
    std::fs::read(file)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

/// Adds this run's test durations to the earlier ones (tests that did not run keep theirs).
pub(super) fn write_durations(
    file: &Path,
    mut durations: HashMap<String, u64>,
    tests: &[TestInfo],
) {
    for test in tests {
        if !matches!(test.outcome, Outcome::Ignored) {
            durations.insert(test.id.clone(), test.duration_ms);
        }
    }
    let written = serde_json::to_vec(&durations)
        .map_err(std::io::Error::other)
        .and_then(|json| {
            let temporary = file.with_extension("json.tmp");
            std::fs::write(&temporary, json)?;
            std::fs::rename(&temporary, file)
        });
    if let Err(error) = written {
        tracing::debug!("cannot save test durations to {}: {error}", file.display());
    }
}

/// How far the traced tests are: a test counts as done once the next test of its shard starts or
/// the shard ends (an ignored test never starts).
pub(super) struct TestProgress {
    /// Per shard: tests started, as the engine counts them; `usize::MAX` once the shard ended.
    pub(super) started: Vec<Arc<AtomicUsize>>,
    sizes: Vec<usize>,
    /// The target of the executable whose shard started last.
    current: std::sync::Mutex<String>,
}

impl TestProgress {
    /// How often the progress is looked at while tests run.
    const TICK: Duration = Duration::from_millis(100);

    pub(super) fn new(shards: &[Shard]) -> Self {
        Self {
            started: shards.iter().map(|_| Arc::default()).collect(),
            sizes: shards.iter().map(|s| s.tests.len().max(1)).collect(),
            current: Default::default(),
        }
    }

    pub(super) fn begin(&self, target: &str) {
        *self.current.lock().expect("progress lock") = target.to_owned();
    }

    pub(super) fn finish(&self, shard: usize) {
        self.started[shard].store(usize::MAX, Ordering::Relaxed);
    }

    fn done(&self) -> usize {
        self.started
            .iter()
            .zip(&self.sizes)
            .map(|(started, &size)| started.load(Ordering::Relaxed).saturating_sub(1).min(size))
            .sum()
    }

    /// Reports each change until the sender of `ended` is dropped, then the final count.
    pub(super) fn report(
        &self,
        ended: std::sync::mpsc::Receiver<()>,
        on_progress: &(dyn Fn(Progress) + Sync),
    ) {
        let total = self.sizes.iter().sum();
        let mut last = None;
        let mut report = || {
            let now = (
                self.done(),
                self.current.lock().expect("progress lock").clone(),
            );
            if last.as_ref() != Some(&now) {
                on_progress(Progress::Running {
                    done: now.0,
                    total,
                    binary: now.1.clone(),
                });
                last = Some(now);
            }
        };
        loop {
            report();
            if ended.recv_timeout(Self::TICK) != Err(std::sync::mpsc::RecvTimeoutError::Timeout) {
                return report();
            }
        }
    }
}

/// A unit of work: some tests of one executable, run one at a time in their own process(es).
pub(super) struct Shard {
    pub(super) executable: usize,
    pub(super) tests: Vec<u32>,
    /// Not a libtest harness: run the executable once as it is, without per-test attribution.
    pub(super) whole: bool,
}

/// What a run runs of one test executable.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Chosen {
    /// Not a libtest harness: run once as it is.
    Whole,
    /// These tests (numbers in its listing); none: the executable does not run.
    Tests(Vec<u32>),
}

/// The tests of each executable that the run's filter and partition select.
pub(super) fn choose(
    executables: &[TestExecutable],
    listings: &[Option<Vec<String>>],
    options: &RunOptions,
) -> Vec<Chosen> {
    let mut chosen: Vec<Chosen> = executables
        .iter()
        .zip(listings)
        .map(|(executable, listing)| {
            let package = executable.package.name.as_str();
            let Some(listing) = listing else {
                let whole = options
                    .only_tests
                    .as_ref()
                    .is_none_or(|only| only.packages.iter().any(|p| p == package));
                return if whole {
                    Chosen::Whole
                } else {
                    Chosen::Tests(Vec::new())
                };
            };
            Chosen::Tests(
                (0..listing.len() as u32)
                    .filter(|&n| {
                        options.only_tests.as_ref().is_none_or(|only| {
                            only.selects(package, &test_id(executable, &listing[n as usize]))
                        })
                    })
                    .collect(),
            )
        })
        .collect();
    if let Some(partition) = &options.partition {
        let ids: Vec<Vec<String>> = chosen
            .iter()
            .zip(executables.iter().zip(listings))
            .map(|(chosen, (executable, listing))| match chosen {
                Chosen::Whole => vec![executable.target.clone()],
                Chosen::Tests(numbers) => {
                    let listing = listing.as_deref().unwrap_or_default();
                    numbers
                        .iter()
                        .map(|&n| test_id(executable, &listing[n as usize]))
                        .collect()
                }
            })
            .collect();
        let ids: Vec<Vec<&str>> = ids
            .iter()
            .map(|tests| tests.iter().map(String::as_str).collect())
            .collect();
        for (chosen, selected) in chosen.iter_mut().zip(partition.select(&ids)) {
            match chosen {
                Chosen::Whole if !selected[0] => *chosen = Chosen::Tests(Vec::new()),
                Chosen::Whole => {}
                Chosen::Tests(numbers) => {
                    let mut selected = selected.into_iter();
                    numbers.retain(|_| selected.next().unwrap_or(false));
                }
            }
        }
    }
    chosen
}

/// A test's id in reports: `<cargo target>::<libtest name>`.
pub(super) fn test_id(executable: &TestExecutable, name: &str) -> String {
    format!("{}::{name}", executable.target)
}

/// Splits each executable's chosen tests into up to `jobs` shards, so that the cores stay busy
/// even when one executable holds most of the tests.
pub(super) fn shard(
    executables: &[TestExecutable],
    listings: &[Option<Vec<String>>],
    chosen: &[Chosen],
    durations: &HashMap<String, u64>,
    jobs: usize,
) -> Vec<Shard> {
    let mut shards = Vec::new();
    for (i, chosen) in chosen.iter().enumerate() {
        let selected = match chosen {
            Chosen::Whole => {
                shards.push(Shard {
                    executable: i,
                    tests: Vec::new(),
                    whole: true,
                });
                continue;
            }
            Chosen::Tests(selected) if selected.is_empty() => continue,
            Chosen::Tests(selected) => selected,
        };
        let listing = listings[i].as_deref().unwrap_or_default();
        let expected: Vec<(u32, Option<u64>)> = selected
            .iter()
            .map(|&n| {
                let id = test_id(&executables[i], &listing[n as usize]);
                (n, durations.get(&id).copied())
            })
            .collect();
        for tests in split(&expected, jobs) {
            shards.push(Shard {
                executable: i,
                tests,
                whole: false,
            });
        }
    }
    shards
}

#[cfg(test)]
mod tests {
    use super::{split, Shard, TestProgress};
    use std::sync::atomic::Ordering;

    #[test]
    fn a_test_is_done_when_the_next_one_starts_or_its_shard_ends() {
        let shard = |tests: Vec<u32>, whole| Shard {
            executable: 0,
            tests,
            whole,
        };
        let progress = TestProgress::new(&[
            shard(vec![0, 1, 2], false),
            shard(vec![3, 4], false),
            shard(Vec::new(), true),
        ]);
        assert_eq!(progress.done(), 0);
        progress.started[0].store(1, Ordering::Relaxed);
        assert_eq!(progress.done(), 0, "the first test runs");
        progress.started[0].store(3, Ordering::Relaxed);
        progress.started[1].store(2, Ordering::Relaxed);
        assert_eq!(progress.done(), 3);
        progress.finish(0);
        progress.finish(2);
        assert_eq!(progress.done(), 3 + 1 + 1, "a whole executable is one unit");
        progress.finish(1);
        assert_eq!(progress.done(), 6);
        progress.begin("ledger");
        let seen = std::sync::Mutex::new(Vec::new());
        let (running, ended) = std::sync::mpsc::channel();
        drop(running);
        progress.report(ended, &|p| seen.lock().unwrap().push(format!("{p:?}")));
        assert_eq!(
            seen.into_inner().unwrap(),
            [r#"Running { done: 6, total: 6, binary: "ledger" }"#]
        );
    }

    #[test]
    fn without_durations_small_suites_stay_in_one_process() {
        let tests: Vec<(u32, Option<u64>)> = (0..5).map(|n| (n, None)).collect();
        assert_eq!(split(&tests, 2), [vec![0, 1, 2, 3, 4]]);
        let tests: Vec<(u32, Option<u64>)> = (0..20).map(|n| (n, None)).collect();
        let shards = split(&tests, 2);
        assert_eq!(shards.len(), 2);
        assert_eq!(shards[0], (0..20).step_by(2).collect::<Vec<_>>());
    }

    #[test]
    fn known_durations_balance_the_shards() {
        // Two long tests and many short ones: each long test in a shard of its own load.
        let mut tests: Vec<(u32, Option<u64>)> = (0..10).map(|n| (n, Some(5))).collect();
        tests[3].1 = Some(500);
        tests[7].1 = Some(450);
        let shards = split(&tests, 2);
        assert_eq!(shards.len(), 2);
        let load = |s: &Vec<u32>| -> u64 { s.iter().map(|&n| tests[n as usize].1.unwrap()).sum() };
        assert!(shards.iter().any(|s| s.contains(&3)) && shards.iter().any(|s| s.contains(&7)));
        assert!(!shards.iter().any(|s| s.contains(&3) && s.contains(&7)));
        assert!(load(&shards[0]).abs_diff(load(&shards[1])) <= 50);
        assert!(
            shards.iter().all(|s| s.windows(2).all(|w| w[0] < w[1])),
            "libtest order"
        );
        // Three tests, one of them long: worth two processes; a few quick ones are not.
        assert_eq!(
            split(&[(0, Some(300)), (1, Some(2)), (2, None)], 2).len(),
            2
        );
        assert_eq!(
            split(&[(0, Some(3)), (1, Some(2)), (2, Some(1))], 2).len(),
            1
        );
    }
}
