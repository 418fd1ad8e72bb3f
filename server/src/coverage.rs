//! The result of a coverage run in plain terms: per file, the coverable lines with their hit counts,
//! the branches with the counts of their two sides (and `match`es with their arms' counts), and the
//! functions with their entry counts. Reports and the editor overlay read this.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use crate::analysis::Construct;
use crate::libtest::Outcome;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Coverage {
    /// Sorted by path.
    pub files: Vec<FileCoverage>,
    /// Every test of the run; `LineCoverage::tests` holds indexes into this list.
    pub tests: Vec<TestInfo>,
    /// The int3 fallback's cap: a line marked `capped` ran at least `hits` times, each of its
    /// trapped addresses counted up to this many times per test and process.
    pub count_cap: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestInfo {
    /// `<cargo target name>::<libtest test path>`, e.g. `ledger::tests::deposit`.
    pub id: String,
    pub outcome: Outcome,
    pub duration_ms: u64,
    /// A failed test's captured output: the panic message and its location.
    pub message: Option<String>,
    /// Where the test function is (file, line of `fn`), when the debug info tells.
    pub location: Option<(PathBuf, u32)>,
    /// Runs it took: more than 1 when it failed and `--retries` ran it again. A test that passed
    /// in more than one attempt is flaky; its coverage is the passing run's.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub attempts: u32,
}

fn one() -> u32 {
    1
}

fn is_one(attempts: &u32) -> bool {
    *attempts == 1
}

impl TestInfo {
    pub fn flaky(&self) -> bool {
        self.attempts > 1 && self.outcome == Outcome::Passed
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FileCoverage {
    /// Absolute path.
    pub path: PathBuf,
    /// Coverable lines only, sorted by line.
    pub lines: Vec<LineCoverage>,
    /// Sorted by line.
    pub functions: Vec<FunctionCoverage>,
    /// Sorted by (line, index); each on a line of `lines`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub branches: Vec<BranchCoverage>,
    /// Sorted by (line, index); each on a line of `lines`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<MatchCoverage>,
}

/// A `match` as a branch point with one way per arm, each arm's runs those of its own line (see
/// `analysis::MatchArms`; arms that cannot be counted so are not here).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatchCoverage {
    /// The line of the statement that holds the `match`.
    pub line: u32,
    /// Its place among the branch points of its line: after the line's two-way branches.
    pub index: u32,
    /// In source order, each as a line: the arm's first line, with the counts of the line whose
    /// runs are the arm's (its body's first line; `tests`: the tests that chose it).
    pub arms: Vec<LineCoverage>,
}

impl MatchCoverage {
    pub fn arms_run(&self) -> usize {
        self.arms.iter().filter(|a| a.hits > 0).count()
    }

    /// For a `match` that ran, the arms that never did: `` `match` arm at line 17 never taken ``.
    pub fn never_taken(&self) -> Option<String> {
        let never: Vec<String> = self
            .arms
            .iter()
            .filter(|a| a.hits == 0)
            .map(|a| a.line.to_string())
            .collect();
        match never.len() {
            0 => None,
            _ if self.arms_run() == 0 => None,
            1 => Some(format!("`match` arm at line {} never taken", never[0])),
            _ => Some(format!(
                "`match` arms at lines {} never taken",
                never.join(", ")
            )),
        }
    }
}

/// A source branch (one conditional jump of the machine code: an `if` condition, one operand of
/// `&&`, a `?`) and how often each of its two sides ran.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BranchCoverage {
    pub line: u32,
    /// Its place among the branches of its line, in code order.
    pub index: u32,
    pub construct: Construct,
    /// `taken` counts the condition holding (true; the pattern matching; the `?` returning
    /// early) and `not_taken` it failing. When false the code did not tell which is which: they
    /// are the machine jump's taken and fall-through sides.
    pub oriented: bool,
    pub taken: u64,
    pub not_taken: u64,
    /// Some of its code was counted by int3 traps up to the cap: its counts are estimates.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub capped: bool,
    /// The tests that ran it, each with its own counts, sorted by test index.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tests: Vec<BranchTestHits>,
}

/// One test's executions of a branch's two sides.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BranchTestHits {
    /// Index into `Coverage::tests`.
    pub test: u32,
    pub taken: u64,
    pub not_taken: u64,
}

impl BranchCoverage {
    /// Sides that ran (0, 1 or 2).
    pub fn sides_run(&self) -> usize {
        usize::from(self.taken > 0) + usize::from(self.not_taken > 0)
    }

    /// For a branch that ran one way only, what never happened: `condition never false`,
    /// `` `?` never returned early ``. None when both sides ran, neither did (the line is not
    /// covered), or the counts are estimates (`capped`).
    pub fn one_sided(&self) -> Option<String> {
        if self.capped || self.sides_run() != 1 {
            return None;
        }
        let never_true = self.taken == 0;
        let text = match (self.construct, self.oriented) {
            (Construct::Try, true) if never_true => "`?` never returned early",
            (Construct::Try, true) => "`?` always returned early",
            (Construct::Try, false) => "`?` always went the same way",
            (Construct::IfLet | Construct::LetElse, true) if never_true => "pattern never matched",
            (Construct::IfLet | Construct::LetElse, true) => "pattern always matched",
            (Construct::IfLet | Construct::LetElse, false) => {
                "pattern always matched, or never did"
            }
            (_, true) if never_true => "condition never true",
            (_, true) => "condition never false",
            (_, false) => "condition was always true, or always false",
        };
        Some(text.to_owned())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineCoverage {
    pub line: u32,
    /// Executions, summed over threads, function instances, processes and test executables.
    pub hits: u64,
    /// Some of the line's code was counted by int3 traps up to `Coverage::count_cap` (or first
    /// hits only): `hits` is a lower bound, shown as `≥`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub capped: bool,
    /// The tests that ran the line, each with its own count, sorted by test index.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tests: Vec<TestHits>,
}

/// One test's executions of a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestHits {
    /// Index into `Coverage::tests`.
    pub test: u32,
    pub hits: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionCoverage {
    pub name: String,
    /// Entry line (the `fn` line).
    pub line: u32,
    pub end_line: u32,
    /// Executions of the entry line.
    pub hits: u64,
    pub is_test: bool,
}

/// How many branch sides and `match` arms ran, of how many.
pub fn sides(branches: &[BranchCoverage], matches: &[MatchCoverage]) -> (usize, usize) {
    let run = branches
        .iter()
        .map(BranchCoverage::sides_run)
        .sum::<usize>()
        + matches.iter().map(MatchCoverage::arms_run).sum::<usize>();
    let all = 2 * branches.len() + matches.iter().map(|m| m.arms.len()).sum::<usize>();
    (run, all)
}

/// A function's coverage at a glance (its code lens): lines and branch sides within its lines
/// (nested closures and items included), and the tests that ran any of its lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FunctionSummary {
    pub covered: usize,
    pub coverable: usize,
    /// Branch sides that ran, and all branch sides.
    pub branch_sides: (usize, usize),
    /// Indexes into `Coverage::tests`.
    pub tests: BTreeSet<u32>,
}

impl FileCoverage {
    pub fn function_summary(&self, function: &FunctionCoverage) -> FunctionSummary {
        let within = |line: u32| (function.line..=function.end_line).contains(&line);
        let start = self.lines.partition_point(|l| l.line < function.line);
        let body = self.lines[start..].iter().take_while(|l| within(l.line));
        let (first, last) = (function.line, function.end_line);
        let branches = &self.branches[self.branches.partition_point(|b| b.line < first)
            ..self.branches.partition_point(|b| b.line <= last)];
        let matches = &self.matches[self.matches.partition_point(|m| m.line < first)
            ..self.matches.partition_point(|m| m.line <= last)];
        FunctionSummary {
            covered: body.clone().filter(|l| l.hits > 0).count(),
            coverable: body.clone().count(),
            branch_sides: sides(branches, matches),
            tests: body.flat_map(|l| l.tests.iter().map(|t| t.test)).collect(),
        }
    }

    pub fn coverable(&self) -> usize {
        self.lines.len()
    }

    pub fn covered(&self) -> usize {
        self.lines.iter().filter(|l| l.hits > 0).count()
    }

    /// The branches shown on `line`.
    pub fn branches_on(&self, line: u32) -> &[BranchCoverage] {
        let start = self.branches.partition_point(|b| b.line < line);
        let end = self.branches.partition_point(|b| b.line <= line);
        &self.branches[start..end]
    }

    /// The `match`es shown on `line`.
    pub fn matches_on(&self, line: u32) -> &[MatchCoverage] {
        let start = self.matches.partition_point(|m| m.line < line);
        let end = self.matches.partition_point(|m| m.line <= line);
        &self.matches[start..end]
    }

    /// Branch sides (and `match` arms) that ran, and all of them: two per branch, one per arm.
    pub fn branch_sides(&self) -> (usize, usize) {
        sides(&self.branches, &self.matches)
    }

    /// `branch_sides` of the branches and `match`es on `line`.
    pub fn line_branch_sides(&self, line: u32) -> (usize, usize) {
        sides(self.branches_on(line), self.matches_on(line))
    }

    pub fn hits(&self, line: u32) -> Option<u64> {
        self.lines
            .binary_search_by_key(&line, |l| l.line)
            .ok()
            .map(|i| self.lines[i].hits)
    }
}

impl Coverage {
    pub fn coverable(&self) -> usize {
        self.files.iter().map(FileCoverage::coverable).sum()
    }

    pub fn covered(&self) -> usize {
        self.files.iter().map(FileCoverage::covered).sum()
    }

    /// Branch sides that ran, and all branch sides.
    pub fn branch_sides(&self) -> (usize, usize) {
        self.files
            .iter()
            .map(FileCoverage::branch_sides)
            .fold((0, 0), |(a, b), (c, d)| (a + c, b + d))
    }

    pub fn file(&self, path: &std::path::Path) -> Option<&FileCoverage> {
        self.files.iter().find(|f| f.path == path)
    }

    /// Keeps the tests `keep` marks (aligned with `tests`), renumbering the lines' references.
    /// A dropped test must not have run: its counts would stay in the lines' totals.
    pub fn retain_tests(&mut self, keep: &[bool]) {
        let mut renumbered = Vec::with_capacity(keep.len());
        let mut next = 0u32;
        for &kept in keep {
            renumbered.push(kept.then_some(next));
            next += u32::from(kept);
        }
        let mut index = 0;
        self.tests.retain(|_| {
            index += 1;
            keep.get(index - 1).copied().unwrap_or(true)
        });
        let new = |test: &mut u32| match renumbered.get(*test as usize).copied().flatten() {
            Some(new) => {
                *test = new;
                true
            }
            None => false,
        };
        for file in &mut self.files {
            for line in &mut file.lines {
                line.tests.retain_mut(|t| new(&mut t.test));
            }
            for branch in &mut file.branches {
                branch.tests.retain_mut(|t| new(&mut t.test));
            }
            for arm in file.matches.iter_mut().flat_map(|m| &mut m.arms) {
                arm.tests.retain_mut(|t| new(&mut t.test));
            }
        }
    }
}

/// Percentage for display; an empty set counts as fully covered, as lcov tools do.
pub fn percent(covered: usize, coverable: usize) -> f64 {
    if coverable == 0 {
        100.0
    } else {
        covered as f64 * 100.0 / coverable as f64
    }
}

/// Builders for the unit tests of the modules that take coverage apart and put it together.
#[cfg(test)]
pub mod test_data {
    use super::{
        BranchCoverage, BranchTestHits, Construct, FileCoverage, FunctionCoverage, LineCoverage,
        MatchCoverage, TestHits, TestInfo,
    };
    use crate::libtest::Outcome;

    pub fn test(id: &str, outcome: Outcome) -> TestInfo {
        TestInfo {
            id: id.into(),
            outcome,
            duration_ms: 1,
            message: None,
            location: None,
            attempts: 1,
        }
    }

    /// A line with per-test counts `(test index, hits)`; `extra` executions outside any test.
    pub fn line(line: u32, tests: &[(u32, u64)], extra: u64, capped: bool) -> LineCoverage {
        LineCoverage {
            line,
            hits: tests.iter().map(|t| t.1).sum::<u64>() + extra,
            capped,
            tests: tests
                .iter()
                .map(|&(test, hits)| TestHits { test, hits })
                .collect(),
        }
    }

    /// A file of one function `f` at lines 2-9.
    pub fn file(path: &str, lines: Vec<LineCoverage>) -> FileCoverage {
        FileCoverage {
            path: path.into(),
            lines,
            functions: vec![FunctionCoverage {
                name: "f".into(),
                line: 2,
                end_line: 9,
                hits: 0,
                is_test: false,
            }],
            branches: Vec::new(),
            matches: Vec::new(),
        }
    }

    /// A `match` on `line` (the line's first branch point) whose arms start at the given lines,
    /// each with per-test `(test, hits)` counts.
    pub fn match_of(at: u32, arms: &[(u32, &[(u32, u64)])]) -> MatchCoverage {
        MatchCoverage {
            line: at,
            index: 0,
            arms: arms
                .iter()
                .map(|&(arm, tests)| line(arm, tests, 0, false))
                .collect(),
        }
    }

    /// The first oriented `if` branch of `line`, with per-test `(test, true, false)` counts.
    pub fn branch(line: u32, tests: &[(u32, u64, u64)]) -> BranchCoverage {
        BranchCoverage {
            line,
            index: 0,
            construct: Construct::If,
            oriented: true,
            taken: tests.iter().map(|t| t.1).sum(),
            not_taken: tests.iter().map(|t| t.2).sum(),
            capped: false,
            tests: tests
                .iter()
                .map(|&(test, taken, not_taken)| BranchTestHits {
                    test,
                    taken,
                    not_taken,
                })
                .collect(),
        }
    }

    pub fn per_test(line: &LineCoverage) -> Vec<(u32, u64)> {
        line.tests.iter().map(|t| (t.test, t.hits)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::test_data::*;
    use super::*;

    #[test]
    fn retained_tests_keep_their_counts_under_new_numbers() {
        let mut coverage = Coverage {
            files: vec![file(
                "/w/src/lib.rs",
                vec![
                    line(2, &[(0, 1), (2, 5)], 0, false),
                    line(3, &[(2, 4)], 0, false),
                ],
            )],
            tests: vec![
                test("w::a", Outcome::Passed),
                test("w::b", Outcome::Ignored),
                test("w::c", Outcome::Failed),
            ],
            count_cap: 10,
        };
        coverage.retain_tests(&[true, false, true]);
        let ids: Vec<&str> = coverage.tests.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids, ["w::a", "w::c"]);
        let lines = &coverage.files[0].lines;
        assert_eq!(per_test(&lines[0]), [(0, 1), (1, 5)]);
        assert_eq!(per_test(&lines[1]), [(1, 4)]);
        assert_eq!((lines[0].hits, lines[1].hits), (6, 4));
    }

    #[test]
    fn a_function_summary_counts_its_lines_branch_sides_and_distinct_tests() {
        let mut file = file(
            "/w/src/lib.rs",
            vec![
                line(1, &[(7, 9)], 0, false),
                line(2, &[(0, 1), (2, 2)], 0, false),
                line(3, &[(2, 3)], 0, false),
                line(4, &[], 0, false),
                line(9, &[(4, 1)], 0, false),
                line(10, &[(8, 9)], 0, false),
            ],
        );
        file.branches = vec![branch(1, &[(7, 1, 1)]), branch(3, &[(2, 3, 0)])];
        file.matches = vec![
            match_of(3, &[(4, &[]), (9, &[(4, 1)])]),
            match_of(10, &[(11, &[(8, 1)]), (12, &[])]),
        ];
        let summary = file.function_summary(&file.functions[0]);
        assert_eq!(
            summary,
            FunctionSummary {
                covered: 3,
                coverable: 4,
                branch_sides: (2, 4),
                tests: [0, 2, 4].into(),
            }
        );
    }

    #[test]
    fn a_match_counts_one_way_per_arm_and_names_the_arms_never_taken() {
        let mut file = file("/w/src/lib.rs", vec![line(3, &[(0, 3)], 0, false)]);
        file.branches = vec![branch(3, &[(0, 1, 2)])];
        file.matches = vec![match_of(
            3,
            &[(4, &[(0, 1)]), (5, &[]), (6, &[(0, 2)]), (7, &[])],
        )];
        assert_eq!(file.line_branch_sides(3), (4, 6));
        assert_eq!(file.branch_sides(), (4, 6));
        assert_eq!(file.line_branch_sides(4), (0, 0));
        assert_eq!(
            file.matches[0].never_taken().as_deref(),
            Some("`match` arms at lines 5, 7 never taken")
        );
        file.matches[0].arms.truncate(2);
        assert_eq!(
            file.matches[0].never_taken().as_deref(),
            Some("`match` arm at line 5 never taken")
        );
        file.matches[0].arms[0].hits = 0;
        assert_eq!(file.matches[0].never_taken(), None, "the match never ran");
    }
}
