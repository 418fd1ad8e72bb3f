//! The counting model in one place: per-breakpoint counts of each executable's processes (totals,
//! and per test the differences between counter readings at test boundaries) become per-line counts.
//!
//! A line runs as often as its busiest address within one function instance (two rows of one
//! statement must not count it twice), summed over the instances that hold its code (generic
//! instances, inlined copies) and over executables. Each test's count of a line is computed the
//! same way from what ran while it was the running test.
//!
//! A branch's two sides come from its counted addresses (`engine::branches::Side`), summed over
//! the function instances and executables that hold it; per test from that test's counts alike.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::analysis::Construct;
use crate::engine::branches::Side;

/// A source file of the run (index into `plan::Sources::files`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceId(pub u32);

/// A test of the run (index into `Coverage::tests`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TestId(pub u32);

/// A breakpoint of one executable (index into its plan's addresses).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BreakpointId(pub u32);

/// A function of one executable that holds code of a line (a generic instance, an inlined copy).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InstanceId(pub u32);

/// A source line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LineKey {
    pub source: SourceId,
    pub line: u32,
}

/// A source branch: the `ordinal`-th conditional jump of its line within a function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BranchKey {
    pub line: LineKey,
    pub ordinal: u32,
}

/// How one branch of an executable is counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BranchTarget {
    pub key: BranchKey,
    pub construct: Construct,
    /// `taken` is the condition's true side (see `plan::SourceBranch::oriented`).
    pub oriented: bool,
    pub taken: Side<BreakpointId>,
    pub not_taken: Side<BreakpointId>,
}

/// One branch's counts over the whole run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BranchCounts {
    pub construct: Construct,
    /// Oriented in every function instance and executable that holds it.
    pub oriented: bool,
    pub taken: u64,
    pub not_taken: u64,
    /// Some of its addresses were counted by int3 up to the cap: a side may be off either way
    /// (one side can be a difference).
    pub capped: bool,
    /// (taken, not taken) per test; only tests that ran the branch.
    pub tests: BTreeMap<TestId, (u64, u64)>,
}

/// What one breakpoint counts for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target {
    pub line: LineKey,
    pub instance: InstanceId,
}

/// The counts of one executable's processes, aligned with its breakpoints.
pub struct ExecutableCounts<'a> {
    /// `None` for a breakpoint that counts for no line (a bare test entry).
    pub targets: &'a [Option<Target>],
    pub hits: &'a [u64],
    /// Counted by int3 up to the cap (or first hits only): a lower bound.
    pub capped: &'a [bool],
    pub test_hits: &'a [(TestId, BreakpointId, u64)],
    pub branches: &'a [BranchTarget],
}

/// The counts of all the processes (shards, followed runs) of one executable, summed.
#[derive(Debug, Default)]
pub struct ShardSums {
    pub hits: Vec<u64>,
    pub capped: Vec<bool>,
    pub test_hits: Vec<(TestId, BreakpointId, u64)>,
}

impl ShardSums {
    /// Adds one process's counts (aligned with the executable's breakpoints).
    pub fn add(
        &mut self,
        hits: &[u64],
        capped: &[bool],
        test_hits: impl IntoIterator<Item = (TestId, BreakpointId, u64)>,
    ) {
        if self.hits.len() < hits.len() {
            self.hits.resize(hits.len(), 0);
            self.capped.resize(hits.len(), false);
        }
        for (sum, &h) in self.hits.iter_mut().zip(hits) {
            *sum += h;
        }
        for (sum, &c) in self.capped.iter_mut().zip(capped) {
            *sum |= c;
        }
        self.test_hits.extend(test_hits);
    }
}

/// One line's counts over the whole run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LineCounts {
    pub hits: u64,
    pub capped: bool,
    /// Executions per test; only tests that ran the line.
    pub tests: BTreeMap<TestId, u64>,
}

#[derive(Debug, Default)]
pub struct Aggregate {
    lines: HashMap<LineKey, LineCounts>,
    branches: BTreeMap<BranchKey, BranchCounts>,
}

impl Aggregate {
    pub fn add(&mut self, counts: ExecutableCounts<'_>) {
        self.add_branches(&counts);
        let mut busiest: HashMap<(LineKey, InstanceId), (u64, bool)> = HashMap::new();
        for ((target, &hits), &capped) in counts.targets.iter().zip(counts.hits).zip(counts.capped)
        {
            let Some(target) = target else { continue };
            let entry = busiest.entry((target.line, target.instance)).or_default();
            entry.0 = entry.0.max(hits);
            entry.1 |= capped;
        }
        for ((line, _), (hits, capped)) in busiest {
            let counts = self.lines.entry(line).or_default();
            counts.hits += hits;
            counts.capped |= capped;
        }

        let mut per_test: HashMap<(TestId, LineKey, InstanceId), u64> = HashMap::new();
        for &(test, breakpoint, hits) in counts.test_hits {
            let Some(Some(target)) = counts.targets.get(breakpoint.0 as usize) else {
                continue;
            };
            let max = per_test
                .entry((test, target.line, target.instance))
                .or_default();
            *max = (*max).max(hits);
        }
        for ((test, line, _), hits) in per_test {
            if hits > 0 {
                *self
                    .lines
                    .entry(line)
                    .or_default()
                    .tests
                    .entry(test)
                    .or_default() += hits;
            }
        }
    }

    pub fn line(&self, line: LineKey) -> Option<&LineCounts> {
        self.lines.get(&line)
    }

    fn add_branches(&mut self, counts: &ExecutableCounts<'_>) {
        if counts.branches.is_empty() {
            return;
        }
        let mut by_test: HashMap<BreakpointId, Vec<(TestId, u64)>> = HashMap::new();
        for &(test, breakpoint, hits) in counts.test_hits {
            by_test.entry(breakpoint).or_default().push((test, hits));
        }
        let total = |b: BreakpointId| counts.hits.get(b.0 as usize).copied().unwrap_or(0);
        for branch in counts.branches {
            let breakpoints: Vec<BreakpointId> = branch
                .taken
                .addresses()
                .into_iter()
                .chain(branch.not_taken.addresses())
                .collect();
            let entry = self
                .branches
                .entry(branch.key)
                .or_insert_with(|| BranchCounts {
                    construct: branch.construct,
                    oriented: true,
                    taken: 0,
                    not_taken: 0,
                    capped: false,
                    tests: BTreeMap::new(),
                });
            entry.oriented &= branch.oriented;
            entry.taken += branch.taken.count(total);
            entry.not_taken += branch.not_taken.count(total);
            entry.capped |= breakpoints
                .iter()
                .any(|b| counts.capped.get(b.0 as usize).copied().unwrap_or(false));
            let tests: BTreeSet<TestId> = breakpoints
                .iter()
                .flat_map(|b| by_test.get(b).into_iter().flatten())
                .map(|&(test, _)| test)
                .collect();
            for test in tests {
                let of_test = |b: BreakpointId| {
                    by_test.get(&b).map_or(0, |hits| {
                        hits.iter()
                            .filter(|(t, _)| *t == test)
                            .map(|(_, h)| h)
                            .sum()
                    })
                };
                let sides = (branch.taken.count(of_test), branch.not_taken.count(of_test));
                if sides != (0, 0) {
                    let per_test = entry.tests.entry(test).or_default();
                    per_test.0 += sides.0;
                    per_test.1 += sides.1;
                }
            }
        }
    }

    /// The branches of the run, by line and ordinal.
    pub fn branches(&self) -> &BTreeMap<BranchKey, BranchCounts> {
        &self.branches
    }

    /// First-hit mode: a line whose breakpoint was lifted at its first hit also belongs to the
    /// tests that entered its function (`entry_of` gives the line of the function's `fn`), once
    /// each; an over-approximation only for branches those tests did not take.
    pub fn spread_to_functions(&mut self, entry_of: &dyn Fn(LineKey) -> Option<LineKey>) {
        let spread: Vec<(LineKey, Vec<TestId>)> = self
            .lines
            .iter()
            .filter(|(_, counts)| counts.hits > 0)
            .filter_map(|(&line, _)| {
                let entry = entry_of(line).filter(|&e| e != line)?;
                let tests = self.lines.get(&entry)?.tests.keys().copied().collect();
                Some((line, tests))
            })
            .collect();
        for (line, tests) in spread {
            let counts = self.lines.get_mut(&line).expect("line seen");
            for test in tests {
                counts.tests.entry(test).or_insert(1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(line: u32) -> LineKey {
        LineKey {
            source: SourceId(0),
            line,
        }
    }

    fn target(line: u32, instance: u32) -> Option<Target> {
        Some(Target {
            line: key(line),
            instance: InstanceId(instance),
        })
    }

    #[test]
    fn a_line_counts_its_busiest_address_per_instance_summed_over_instances() {
        // Line 10: two rows in instance 0 (5 and 5: one statement), one in instance 1 (3).
        // Line 11: one address, never run. A bare test entry counts for nothing.
        let targets = [
            target(10, 0),
            target(10, 0),
            target(10, 1),
            target(11, 0),
            None,
        ];
        let hits = [5, 5, 3, 0, 2];
        let mut aggregate = Aggregate::default();
        aggregate.add(ExecutableCounts {
            targets: &targets,
            hits: &hits,
            capped: &[false; 5],
            test_hits: &[
                (TestId(0), BreakpointId(0), 4),
                (TestId(0), BreakpointId(1), 4),
                (TestId(1), BreakpointId(0), 1),
                (TestId(1), BreakpointId(1), 1),
                (TestId(1), BreakpointId(2), 3),
                (TestId(1), BreakpointId(4), 1),
            ],
            branches: &[],
        });
        let line = aggregate.line(key(10)).unwrap();
        assert_eq!(line.hits, 8);
        assert!(!line.capped);
        assert_eq!(line.tests, BTreeMap::from([(TestId(0), 4), (TestId(1), 4)]));
        assert_eq!(aggregate.line(key(11)).unwrap().hits, 0);
        assert!(aggregate.line(key(11)).unwrap().tests.is_empty());
    }

    #[test]
    fn a_line_counts_the_same_however_the_tests_were_split_into_shards() {
        // Line 10 has two addresses; test 0 runs the first 4 times, test 1 the second 3 times.
        let targets = [target(10, 0), target(10, 0)];
        type Shard<'a> = (&'a [u64], &'a [(TestId, BreakpointId, u64)]);
        let whole = |shards: &[Shard]| {
            let mut sums = ShardSums::default();
            for (hits, test_hits) in shards {
                sums.add(hits, &[false, false], test_hits.iter().copied());
            }
            let mut aggregate = Aggregate::default();
            aggregate.add(ExecutableCounts {
                targets: &targets,
                hits: &sums.hits,
                capped: &sums.capped,
                test_hits: &sums.test_hits,
                branches: &[],
            });
            aggregate.line(key(10)).cloned().unwrap()
        };
        let (t0, t1) = (
            (TestId(0), BreakpointId(0), 4),
            (TestId(1), BreakpointId(1), 3),
        );
        let one = whole(&[(&[4, 3], &[t0, t1])]);
        let two = whole(&[(&[4, 0], &[t0]), (&[0, 3], &[t1])]);
        assert_eq!(one, two);
        assert_eq!(one.hits, 4);
        assert_eq!(one.tests, BTreeMap::from([(TestId(0), 4), (TestId(1), 3)]));
    }

    #[test]
    fn executables_add_up_and_capped_marks_a_lower_bound() {
        let targets = [target(10, 0)];
        let mut aggregate = Aggregate::default();
        aggregate.add(ExecutableCounts {
            targets: &targets,
            hits: &[1_000_000],
            capped: &[false],
            test_hits: &[(TestId(0), BreakpointId(0), 1_000_000)],
            branches: &[],
        });
        aggregate.add(ExecutableCounts {
            targets: &targets,
            hits: &[10],
            capped: &[true],
            test_hits: &[(TestId(3), BreakpointId(0), 10)],
            branches: &[],
        });
        let line = aggregate.line(key(10)).unwrap();
        assert_eq!(line.hits, 1_000_010);
        assert!(line.capped);
        assert_eq!(line.tests.len(), 2);
    }

    #[test]
    fn first_hit_lines_belong_to_the_tests_that_entered_their_function() {
        let targets = [target(1, 0), target(2, 0)];
        let mut aggregate = Aggregate::default();
        aggregate.add(ExecutableCounts {
            targets: &targets,
            hits: &[2, 1],
            capped: &[true, true],
            test_hits: &[
                (TestId(0), BreakpointId(0), 1),
                (TestId(1), BreakpointId(0), 1),
                (TestId(0), BreakpointId(1), 1),
            ],
            branches: &[],
        });
        aggregate.spread_to_functions(&|_| Some(key(1)));
        assert_eq!(
            aggregate
                .line(key(2))
                .unwrap()
                .tests
                .keys()
                .copied()
                .collect::<Vec<_>>(),
            [TestId(0), TestId(1)]
        );
    }

    #[test]
    fn branch_sides_come_from_their_addresses_per_test_and_add_up_over_executables() {
        // Breakpoint 0: the jump's straight run (10), 1: the fall-through (4), 2: an int3 target.
        let branch = |ordinal, taken, not_taken| BranchTarget {
            key: BranchKey {
                line: key(7),
                ordinal,
            },
            construct: Construct::If,
            oriented: true,
            taken,
            not_taken,
        };
        let b = BreakpointId;
        let branches = [
            branch(
                0,
                Side::Rest {
                    whole: b(0),
                    other: b(1),
                },
                Side::At(b(1)),
            ),
            branch(1, Side::At(b(2)), Side::At(b(1))),
        ];
        let mut aggregate = Aggregate::default();
        aggregate.add(ExecutableCounts {
            targets: &[None, None, None],
            hits: &[10, 4, 0],
            capped: &[false, false, true],
            test_hits: &[
                (TestId(0), b(0), 6),
                (TestId(0), b(1), 4),
                (TestId(1), b(0), 4),
            ],
            branches: &branches,
        });
        aggregate.add(ExecutableCounts {
            targets: &[None, None, None],
            hits: &[1, 1, 0],
            capped: &[false, false, false],
            test_hits: &[(TestId(2), b(0), 1), (TestId(2), b(1), 1)],
            branches: &branches[..1],
        });
        let first = &aggregate.branches()[&BranchKey {
            line: key(7),
            ordinal: 0,
        }];
        assert_eq!((first.taken, first.not_taken, first.capped), (6, 5, false));
        assert_eq!(
            first.tests,
            BTreeMap::from([
                (TestId(0), (2, 4)),
                (TestId(1), (4, 0)),
                (TestId(2), (0, 1))
            ])
        );
        let second = &aggregate.branches()[&BranchKey {
            line: key(7),
            ordinal: 1,
        }];
        assert_eq!(
            (second.taken, second.not_taken, second.capped),
            (0, 4, true)
        );
        assert_eq!(second.tests, BTreeMap::from([(TestId(0), (0, 4))]));
    }
}
