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

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::ops::Range;

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
        // The (line, instance) pairs the breakpoints count for, numbered densely: the per-test
        // pass below touches them hundreds of thousands of times on a large suite.
        let mut slot_of = vec![NO_SLOT; counts.targets.len()];
        let mut slots: Vec<LineKey> = Vec::new();
        let mut numbered: HashMap<(LineKey, InstanceId), u32> = HashMap::new();
        for (slot, target) in slot_of.iter_mut().zip(counts.targets) {
            if let Some(target) = target {
                *slot = *numbered
                    .entry((target.line, target.instance))
                    .or_insert_with(|| {
                        slots.push(target.line);
                        (slots.len() - 1) as u32
                    });
            }
        }
        let mut busiest = vec![(0u64, false); slots.len()];
        for ((&slot, &hits), &capped) in slot_of.iter().zip(counts.hits).zip(counts.capped) {
            if slot != NO_SLOT {
                let entry = &mut busiest[slot as usize];
                entry.0 = entry.0.max(hits);
                entry.1 |= capped;
            }
        }
        for (line, (hits, capped)) in slots.iter().zip(busiest) {
            let counts = self.lines.entry(*line).or_default();
            counts.hits += hits;
            counts.capped |= capped;
        }
        let branch_entries = self.add_branches(&counts);

        let mut branches_of: Vec<Vec<u32>> = vec![Vec::new(); counts.targets.len()];
        for (n, branch) in counts.branches.iter().enumerate() {
            for breakpoint in branch
                .taken
                .addresses()
                .into_iter()
                .chain(branch.not_taken.addresses())
            {
                if let Some(list) = branches_of.get_mut(breakpoint.0 as usize) {
                    if list.last() != Some(&(n as u32)) {
                        list.push(n as u32);
                    }
                }
            }
        }
        let mut test = TestScratch::new(counts.targets.len(), slots.len(), counts.branches.len());
        let (entries, groups) = by_test(counts.test_hits);
        for (id, range) in groups {
            test.sum(&entries[range]);
            // A line's count for the test: its busiest address per instance, summed over them.
            for &breakpoint in &test.breakpoints {
                let slot = slot_of[breakpoint as usize];
                if slot == NO_SLOT {
                    continue;
                }
                let max = &mut test.slot_max[slot as usize];
                if *max == 0 {
                    test.slots.push(slot);
                }
                *max = (*max).max(test.sums[breakpoint as usize]);
            }
            for &slot in &test.slots {
                let hits = std::mem::take(&mut test.slot_max[slot as usize]);
                *self
                    .lines
                    .entry(slots[slot as usize])
                    .or_default()
                    .tests
                    .entry(id)
                    .or_default() += hits;
            }
            // The branches whose addresses the test ran, each once.
            for &breakpoint in &test.breakpoints {
                for &branch in &branches_of[breakpoint as usize] {
                    if !std::mem::replace(&mut test.branch_seen[branch as usize], true) {
                        test.branches.push(branch);
                    }
                }
            }
            for &branch in &test.branches {
                test.branch_seen[branch as usize] = false;
                let target = &counts.branches[branch as usize];
                let of_test = |b: BreakpointId| test.sums.get(b.0 as usize).copied().unwrap_or(0);
                let sides = (target.taken.count(of_test), target.not_taken.count(of_test));
                if sides != (0, 0) {
                    let entry = self
                        .branches
                        .get_mut(&branch_entries[branch as usize])
                        .expect("added above");
                    let per_test = entry.tests.entry(id).or_default();
                    per_test.0 += sides.0;
                    per_test.1 += sides.1;
                }
            }
            test.clear();
        }
    }

    pub fn line(&self, line: LineKey) -> Option<&LineCounts> {
        self.lines.get(&line)
    }

    /// Adds the branches' totals; their keys, aligned with `counts.branches`.
    fn add_branches(&mut self, counts: &ExecutableCounts<'_>) -> Vec<BranchKey> {
        let total = |b: BreakpointId| counts.hits.get(b.0 as usize).copied().unwrap_or(0);
        for branch in counts.branches {
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
            entry.capped |= branch
                .taken
                .addresses()
                .into_iter()
                .chain(branch.not_taken.addresses())
                .any(|b| counts.capped.get(b.0 as usize).copied().unwrap_or(false));
        }
        counts.branches.iter().map(|b| b.key).collect()
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

const NO_SLOT: u32 = u32::MAX;

/// A test's executions of a breakpoint, as the tracer reads them.
type TestHit = (TestId, BreakpointId, u64);

/// Where a test's entries are among the grouped [`TestHit`]s.
type TestRange = (TestId, Range<usize>);

/// The per-test counts with each test's entries together, in order of first appearance, and
/// each test's range in them. They arrive grouped (a process's counts are flushed test by test)
/// and are then used in place; a test seen again later (a binary it ran twice, a retried test)
/// has its entries moved to its first group.
fn by_test(test_hits: &[TestHit]) -> (Cow<'_, [TestHit]>, Vec<TestRange>) {
    let mut order: HashMap<TestId, usize> = HashMap::new();
    let mut grouped = true;
    for (k, &(test, _, _)) in test_hits.iter().enumerate() {
        if k == 0 || test_hits[k - 1].0 != test {
            let groups = order.len();
            grouped &= order.insert(test, groups).is_none();
        }
    }
    let entries: Cow<'_, [TestHit]> = if grouped {
        Cow::Borrowed(test_hits)
    } else {
        let mut moved = test_hits.to_vec();
        moved.sort_by_key(|&(test, _, _)| order[&test]);
        Cow::Owned(moved)
    };
    let mut groups = Vec::new();
    let mut start = 0;
    for end in 1..=entries.len() {
        if end == entries.len() || entries[end].0 != entries[start].0 {
            groups.push((entries[start].0, start..end));
            start = end;
        }
    }
    (entries, groups)
}

/// Dense working space for one test at a time, cleared between tests by what was touched.
struct TestScratch {
    /// Per breakpoint, the test's executions summed over its processes.
    sums: Vec<u64>,
    breakpoints: Vec<u32>,
    slot_max: Vec<u64>,
    slots: Vec<u32>,
    branch_seen: Vec<bool>,
    branches: Vec<u32>,
}

impl TestScratch {
    fn new(breakpoints: usize, slots: usize, branches: usize) -> Self {
        TestScratch {
            sums: vec![0; breakpoints],
            breakpoints: Vec::new(),
            slot_max: vec![0; slots],
            slots: Vec::new(),
            branch_seen: vec![false; branches],
            branches: Vec::new(),
        }
    }

    fn sum(&mut self, hits: &[TestHit]) {
        for &(_, breakpoint, hits) in hits {
            let Some(sum) = self.sums.get_mut(breakpoint.0 as usize) else {
                continue;
            };
            if *sum == 0 && hits > 0 {
                self.breakpoints.push(breakpoint.0);
            }
            *sum += hits;
        }
    }

    fn clear(&mut self) {
        for &breakpoint in &self.breakpoints {
            self.sums[breakpoint as usize] = 0;
        }
        self.breakpoints.clear();
        self.slots.clear();
        self.branches.clear();
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
    fn a_test_counted_in_two_processes_sums_them_like_the_totals() {
        // Test 0 ran a binary twice (two processes, read apart, test 1's entries between): each
        // address sums both before the line takes its busiest, as the totals do.
        let targets = [target(10, 0), target(10, 0)];
        let mut aggregate = Aggregate::default();
        aggregate.add(ExecutableCounts {
            targets: &targets,
            hits: &[7, 6],
            capped: &[false; 2],
            test_hits: &[
                (TestId(0), BreakpointId(0), 2),
                (TestId(0), BreakpointId(1), 3),
                (TestId(1), BreakpointId(0), 1),
                (TestId(0), BreakpointId(0), 4),
                (TestId(0), BreakpointId(1), 2),
            ],
            branches: &[],
        });
        let line = aggregate.line(key(10)).unwrap();
        assert_eq!(line.hits, 7);
        assert_eq!(line.tests, BTreeMap::from([(TestId(0), 6), (TestId(1), 1)]));
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
