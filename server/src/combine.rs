//! `coverlay merge`: the reports of runs that each ran part of the tests (`--partition`, one CI
//! machine each) combined into what one run of every test reports. Pure: no files, no processes.

use std::collections::{BTreeMap, HashMap};

use crate::coverage::{
    BranchCoverage, BranchTestHits, Coverage, FileCoverage, LineCoverage, MatchCoverage, TestHits,
    TestInfo,
};
use crate::libtest::Outcome;
use crate::report::{ExecutableInfo, RunInfo};
use crate::selection::target_of;

/// A report to combine, with a name for messages (its file).
pub struct Part {
    pub name: String,
    pub coverage: Coverage,
    pub info: RunInfo,
}

pub struct Combined {
    pub coverage: Coverage,
    pub info: RunInfo,
    /// What the user should know: a test that ran in two parts has its counts added.
    pub warnings: Vec<String>,
}

/// Lines are united (a line is coverable when any part has it) and their hits added, per test
/// too; tests are united by id; executables by target, their exits listed together. Tests come in
/// a full run's order: by executable, then by name (libtest's order).
pub fn combine(parts: Vec<Part>) -> Combined {
    let mut warnings = Vec::new();
    let mut executables: Vec<ExecutableInfo> = Vec::new();
    let mut packages = Vec::new();
    let root = parts
        .first()
        .map(|p| p.info.root.clone())
        .unwrap_or_default();
    for part in &parts {
        for package in &part.info.packages {
            if !packages.contains(package) {
                packages.push(package.clone());
            }
        }
        for executable in &part.info.executables {
            match executables
                .iter_mut()
                .find(|e| e.target == executable.target && e.kind == executable.kind)
            {
                Some(known) => {
                    known.exits.extend(executable.exits.iter().cloned());
                    known.counting.traps += executable.counting.traps;
                    known.counting.trampolines = known
                        .counting
                        .trampolines
                        .max(executable.counting.trampolines);
                    known.counting.int3 = known.counting.int3.max(executable.counting.int3);
                }
                None => executables.push(executable.clone()),
            }
        }
    }

    // Tests by id, each remembering which part ran it.
    let mut tests: BTreeMap<String, (TestInfo, usize)> = BTreeMap::new();
    for (p, part) in parts.iter().enumerate() {
        for test in &part.coverage.tests {
            match tests.get_mut(&test.id) {
                None => {
                    tests.insert(test.id.clone(), (test.clone(), p));
                }
                Some(_) if test.outcome == Outcome::Ignored => {}
                Some((known, owner)) => {
                    if known.outcome != Outcome::Ignored {
                        warnings.push(format!(
                            "test {} ran in both {} and {}: its counts are added (the same \
                             partition twice?)",
                            test.id, parts[*owner].name, part.name
                        ));
                    }
                    if known.outcome == Outcome::Ignored || worse(&test.outcome, &known.outcome) {
                        *known = test.clone();
                        *owner = p;
                    }
                }
            }
        }
    }
    let position = |id: &str| {
        executables
            .iter()
            .position(|e| e.target == target_of(id))
            .unwrap_or(usize::MAX)
    };
    let mut ordered: Vec<TestInfo> = tests.into_values().map(|(t, _)| t).collect();
    ordered.sort_by(|a, b| (position(&a.id), &a.id).cmp(&(position(&b.id), &b.id)));
    let number: HashMap<&str, u32> = ordered
        .iter()
        .enumerate()
        .map(|(i, t)| (t.id.as_str(), i as u32))
        .collect();

    let mut files: BTreeMap<std::path::PathBuf, FileCoverage> = BTreeMap::new();
    for part in &parts {
        for file in &part.coverage.files {
            let merged = files
                .entry(file.path.clone())
                .or_insert_with(|| FileCoverage {
                    path: file.path.clone(),
                    lines: Vec::new(),
                    functions: Vec::new(),
                    branches: Vec::new(),
                    matches: Vec::new(),
                });
            let renumber = |t: &TestHits| TestHits {
                test: number[part.coverage.tests[t.test as usize].id.as_str()],
                hits: t.hits,
            };
            merged.lines = add_lines(&merged.lines, &file.lines, renumber);
            let test_number = |test: u32| number[part.coverage.tests[test as usize].id.as_str()];
            merged.branches = add_branches(&merged.branches, &file.branches, test_number);
            merged.matches = add_matches(&merged.matches, &file.matches, renumber);
            for function in &file.functions {
                match merged
                    .functions
                    .iter_mut()
                    .find(|f| f.line == function.line && f.name == function.name)
                {
                    Some(known) => known.hits += function.hits,
                    None => merged.functions.push(function.clone()),
                }
            }
            merged
                .functions
                .sort_by(|a, b| (a.line, &a.name).cmp(&(b.line, &b.name)));
        }
    }
    let count_cap = parts
        .iter()
        .map(|p| p.coverage.count_cap)
        .max()
        .unwrap_or(crate::run::DEFAULT_COUNT_CAP);
    Combined {
        coverage: Coverage {
            files: files.into_values().collect(),
            tests: ordered,
            count_cap,
        },
        info: RunInfo {
            root,
            packages,
            executables,
        },
        warnings,
    }
}

/// `known` (already renumbered) and `more` united by line, hits added.
fn add_lines(
    known: &[LineCoverage],
    more: &[LineCoverage],
    renumber: impl Fn(&TestHits) -> TestHits,
) -> Vec<LineCoverage> {
    let mut lines: BTreeMap<u32, LineCoverage> =
        known.iter().map(|l| (l.line, l.clone())).collect();
    for line in more {
        let merged = lines.entry(line.line).or_insert_with(|| LineCoverage {
            line: line.line,
            hits: 0,
            capped: false,
            tests: Vec::new(),
        });
        merged.hits += line.hits;
        merged.capped |= line.capped;
        for test in line.tests.iter().map(&renumber) {
            match merged.tests.binary_search_by_key(&test.test, |t| t.test) {
                Ok(i) => merged.tests[i].hits += test.hits,
                Err(i) => merged.tests.insert(i, test),
            }
        }
    }
    lines.into_values().collect()
}

/// `known` (already renumbered) and `more` united by line and index, both sides' counts added.
fn add_branches(
    known: &[BranchCoverage],
    more: &[BranchCoverage],
    renumber: impl Fn(u32) -> u32,
) -> Vec<BranchCoverage> {
    let mut branches: BTreeMap<(u32, u32), BranchCoverage> = known
        .iter()
        .map(|b| ((b.line, b.index), b.clone()))
        .collect();
    for branch in more {
        let merged = branches
            .entry((branch.line, branch.index))
            .or_insert_with(|| BranchCoverage {
                taken: 0,
                not_taken: 0,
                capped: false,
                tests: Vec::new(),
                ..branch.clone()
            });
        merged.oriented &= branch.oriented;
        merged.taken += branch.taken;
        merged.not_taken += branch.not_taken;
        merged.capped |= branch.capped;
        for test in &branch.tests {
            let test = BranchTestHits {
                test: renumber(test.test),
                ..*test
            };
            match merged.tests.binary_search_by_key(&test.test, |t| t.test) {
                Ok(i) => {
                    merged.tests[i].taken += test.taken;
                    merged.tests[i].not_taken += test.not_taken;
                }
                Err(i) => merged.tests.insert(i, test),
            }
        }
    }
    branches.into_values().collect()
}

/// `known` (already renumbered) and `more` united by line and index, and their arms as lines.
fn add_matches(
    known: &[MatchCoverage],
    more: &[MatchCoverage],
    renumber: impl Fn(&TestHits) -> TestHits,
) -> Vec<MatchCoverage> {
    let mut matches: BTreeMap<(u32, u32), MatchCoverage> = known
        .iter()
        .map(|m| ((m.line, m.index), m.clone()))
        .collect();
    for found in more {
        let merged = matches
            .entry((found.line, found.index))
            .or_insert_with(|| MatchCoverage {
                arms: Vec::new(),
                ..found.clone()
            });
        merged.arms = add_lines(&merged.arms, &found.arms, &renumber);
    }
    matches.into_values().collect()
}

/// Which of two outcomes of the same test a combined report shows: a failure over a pass.
fn worse(a: &Outcome, b: &Outcome) -> bool {
    let rank = |o: &Outcome| match o {
        Outcome::Ignored => 0,
        Outcome::Passed => 1,
        Outcome::Failed => 2,
        Outcome::TimedOut => 3,
        Outcome::Crashed { .. } => 4,
    };
    rank(a) > rank(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coverage::test_data::{file, line, match_of, per_test, test};
    use crate::report::{Counting, PackageDir};

    fn info(exits: &[&str]) -> RunInfo {
        RunInfo {
            root: "/w".into(),
            packages: vec![PackageDir {
                name: "w".into(),
                dir: "/w".into(),
            }],
            executables: ["w", "api"]
                .iter()
                .zip(exits)
                .map(|(target, exit)| ExecutableInfo {
                    path: format!("/w/target/debug/deps/{target}-1").into(),
                    target: (*target).into(),
                    kind: "lib".into(),
                    exits: if exit.is_empty() {
                        Vec::new()
                    } else {
                        vec![(*exit).into()]
                    },
                    counting: Counting {
                        trampolines: 5,
                        int3: 1,
                        traps: 2,
                    },
                })
                .collect(),
        }
    }

    fn part(name: &str, coverage: Coverage, exits: &[&str]) -> Part {
        Part {
            name: name.into(),
            coverage,
            info: info(exits),
        }
    }

    /// The full run: tests w::a, w::b, api::c; shard 1 ran w::a and api::c, shard 2 ran w::b.
    fn shards() -> (Coverage, Vec<Part>) {
        let full = Coverage {
            files: vec![file(
                "/w/src/lib.rs",
                vec![
                    line(2, &[(0, 3), (1, 1)], 0, false),
                    line(3, &[(2, 7)], 0, true),
                    line(4, &[], 0, false),
                ],
            )],
            tests: vec![
                test("w::a", Outcome::Passed),
                test("w::b", Outcome::Failed),
                test("api::c", Outcome::Passed),
            ],
            count_cap: 10,
        };
        let one = Coverage {
            files: vec![file(
                "/w/src/lib.rs",
                vec![
                    line(2, &[(0, 3)], 0, false),
                    line(3, &[(1, 7)], 0, true),
                    line(4, &[], 0, false),
                ],
            )],
            tests: vec![
                test("w::a", Outcome::Passed),
                test("api::c", Outcome::Passed),
            ],
            count_cap: 10,
        };
        let two = Coverage {
            files: vec![file(
                "/w/src/lib.rs",
                vec![
                    line(2, &[(0, 1)], 0, false),
                    line(3, &[], 0, false),
                    line(4, &[], 0, false),
                ],
            )],
            tests: vec![test("w::b", Outcome::Failed)],
            count_cap: 10,
        };
        // Line 2's `match`: api::c chose the arm at line 3 (counted there), w::b the one at 5.
        let (mut one, mut two) = (one, two);
        one.files[0].matches = vec![match_of(2, &[(3, &[(1, 7)]), (5, &[])])];
        two.files[0].matches = vec![match_of(2, &[(3, &[]), (5, &[(0, 1)])])];
        let parts = vec![
            part("one.json", one, &["Code(0)", "Code(0)"]),
            part("two.json", two, &["Code(101)", ""]),
        ];
        (full, parts)
    }

    #[test]
    fn disjoint_shards_combine_into_the_full_run() {
        let (full, parts) = shards();
        let combined = combine(parts);
        assert!(combined.warnings.is_empty());
        let mut expected = full;
        // Tests in a full run's order: executable `w` first (the reports list it first).
        expected.tests.sort_by_key(|t| t.id.starts_with("api::"));
        assert_eq!(combined.coverage.tests, expected.tests);
        let lines = &combined.coverage.files[0].lines;
        assert_eq!(per_test(&lines[0]), [(0, 3), (1, 1)]);
        assert_eq!(per_test(&lines[1]), [(2, 7)]);
        assert_eq!(
            lines.iter().map(|l| (l.hits, l.capped)).collect::<Vec<_>>(),
            [(4, false), (7, true), (0, false)]
        );
        let arms = &combined.coverage.files[0].matches[0].arms;
        assert_eq!(
            arms.iter()
                .map(|a| (a.line, a.hits, per_test(a)))
                .collect::<Vec<_>>(),
            [(3, 7, vec![(2, 7)]), (5, 1, vec![(1, 1)])]
        );
        let w = &combined.info.executables[0];
        assert_eq!(w.exits, ["Code(0)", "Code(101)"]);
        assert_eq!(w.counting.traps, 4);
        assert_eq!(combined.info.executables.len(), 2);
        assert_eq!(combined.info.packages.len(), 1);
    }

    #[test]
    fn the_order_of_the_parts_does_not_matter() {
        let (_, parts) = shards();
        let forward = combine(parts).coverage;
        let (_, mut parts) = shards();
        parts.reverse();
        assert_eq!(combine(parts).coverage, forward);
    }

    #[test]
    fn a_test_run_twice_is_added_with_a_warning_and_its_failure_kept() {
        let (_, mut parts) = shards();
        let mut again = shards().1.remove(1);
        again.name = "three.json".into();
        again.coverage.tests[0].outcome = Outcome::Passed;
        parts.push(again);
        let combined = combine(parts);
        assert_eq!(combined.warnings.len(), 1, "{:?}", combined.warnings);
        assert!(combined.warnings[0].contains("w::b ran in both two.json and three.json"));
        let b = combined
            .coverage
            .tests
            .iter()
            .find(|t| t.id == "w::b")
            .unwrap();
        assert_eq!(b.outcome, Outcome::Failed);
        assert_eq!(
            per_test(&combined.coverage.files[0].lines[0]),
            [(0, 3), (1, 2)]
        );
    }

    #[test]
    fn lines_and_files_of_different_builds_are_united() {
        let a = Coverage {
            files: vec![file("/w/src/a.rs", vec![line(2, &[], 1, false)])],
            tests: Vec::new(),
            count_cap: 10,
        };
        let b = Coverage {
            files: vec![
                file("/w/src/a.rs", vec![line(3, &[], 0, false)]),
                file("/w/src/b.rs", vec![line(5, &[], 2, false)]),
            ],
            tests: Vec::new(),
            count_cap: 10,
        };
        let combined = combine(vec![part("a", a, &[]), part("b", b, &[])]).coverage;
        let lines: Vec<(String, u32, u64)> = combined
            .files
            .iter()
            .flat_map(|f| {
                f.lines
                    .iter()
                    .map(|l| (f.path.display().to_string(), l.line, l.hits))
            })
            .collect();
        assert_eq!(
            lines,
            [
                ("/w/src/a.rs".into(), 2, 1),
                ("/w/src/a.rs".into(), 3, 0),
                ("/w/src/b.rs".into(), 5, 2)
            ]
        );
        // `file` gives each the function `f` at line 2: once per file, its hits added.
        assert_eq!(combined.files[0].functions.len(), 1);
    }
}
