//! Merges a run of some tests into the results of earlier runs, so that the overlay after a
//! partial run is what a full run would show: the new build decides which tests and lines exist.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use crate::coverage::{
    BranchCoverage, BranchTestHits, Coverage, FileCoverage, LineCoverage, MatchCoverage, TestHits,
    TestInfo,
};

/// `partial` is a run of the tests whose ids are in `ran`, on a new build; `old` the results
/// shown before (lines already moved with any edits since). The result:
/// - tests: the new build's list (a test that no longer exists goes, with its counts), each at
///   its new location; a test that ran takes its new outcome, the others keep theirs;
/// - lines: the new build's coverable lines; on each, the tests that ran bring their new counts
///   and the others keep their old ones;
/// - a line's total is the sum of its per-test counts when both runs attributed every execution
///   to a test, else the larger of the two totals; capped if a kept or new count is;
/// - branches: like lines, side by side (matched by line and index); a `match`'s arms as lines.
///
/// With `narrowed` (the run built only some executables), the executables it left out keep what
/// they had: their tests, and the lines only they hold (outside the changed bodies, whose lines
/// the new build decides). Likewise a run that built no doctests keeps the earlier doctests.
pub fn merge(
    old: &Coverage,
    partial: Coverage,
    ran: &HashSet<String>,
    narrowed: Option<&Narrowed>,
) -> Coverage {
    let old_index: HashMap<&str, usize> = old
        .tests
        .iter()
        .enumerate()
        .map(|(i, t)| (t.id.as_str(), i))
        .collect();
    let mut kept_old: Vec<Option<u32>> = vec![None; old.tests.len()];
    let mut tests = Vec::with_capacity(partial.tests.len());
    for (index, test) in partial.tests.into_iter().enumerate() {
        let previous = old_index.get(test.id.as_str()).copied();
        match previous {
            Some(o) if !ran.contains(&test.id) => {
                kept_old[o] = Some(index as u32);
                // Its result from before, at its place in the new build (edits move tests).
                tests.push(TestInfo {
                    location: test.location,
                    ..old.tests[o].clone()
                });
            }
            _ => tests.push(test),
        }
    }
    // A run that built no doctests (none was selected) knows nothing of them: they stay.
    if !tests.iter().any(|t| crate::doctests::is_doctest(&t.id)) {
        for (o, test) in old.tests.iter().enumerate() {
            if crate::doctests::is_doctest(&test.id) {
                kept_old[o] = Some(tests.len() as u32);
                tests.push(test.clone());
            }
        }
    }
    if let Some(narrowed) = narrowed {
        let listed: HashSet<&str> = tests.iter().map(|t| t.id.as_str()).collect();
        let mut unbuilt = Vec::new();
        for (o, test) in old.tests.iter().enumerate() {
            let target = crate::selection::target_of(&test.id);
            if !narrowed.built.contains(target) && !listed.contains(test.id.as_str()) {
                unbuilt.push(o);
            }
        }
        for o in unbuilt {
            kept_old[o] = Some(tests.len() as u32);
            tests.push(old.tests[o].clone());
        }
    }
    let new_index_ran: HashSet<u32> = tests
        .iter()
        .enumerate()
        .filter(|(_, t)| ran.contains(&t.id))
        .map(|(i, _)| i as u32)
        .collect();

    let old_files: HashMap<&std::path::Path, &FileCoverage> =
        old.files.iter().map(|f| (f.path.as_path(), f)).collect();
    let mut files: Vec<FileCoverage> = partial
        .files
        .into_iter()
        .map(|mut file| {
            let previous = old_files.get(file.path.as_path());
            for line in &mut file.lines {
                let before = previous.and_then(|f| {
                    let i = f.lines.binary_search_by_key(&line.line, |l| l.line).ok()?;
                    Some(&f.lines[i])
                });
                merge_line(line, before, &kept_old, &new_index_ran);
            }
            for branch in &mut file.branches {
                let before = previous.and_then(|f| {
                    f.branches
                        .iter()
                        .find(|b| (b.line, b.index) == (branch.line, branch.index))
                });
                merge_branch(branch, before, &kept_old, &new_index_ran);
            }
            for found in &mut file.matches {
                let before = previous.and_then(|f| {
                    f.matches
                        .iter()
                        .find(|m| (m.line, m.index) == (found.line, found.index))
                });
                for arm in &mut found.arms {
                    let before = before.and_then(|m| m.arms.iter().find(|a| a.line == arm.line));
                    merge_line(arm, before, &kept_old, &new_index_ran);
                }
            }
            if let (Some(narrowed), Some(previous)) = (narrowed, previous) {
                keep_unbuilt_lines(&mut file, previous, narrowed, &kept_old);
            }
            file
        })
        .collect();
    if narrowed.is_some() {
        // Files only the executables left out hold.
        let merged: HashSet<PathBuf> = files.iter().map(|f| f.path.clone()).collect();
        for file in &old.files {
            if !merged.contains(&file.path) {
                let mut kept = file.clone();
                kept.lines = file.lines.iter().map(|l| kept_line(l, &kept_old)).collect();
                kept.branches = file
                    .branches
                    .iter()
                    .map(|b| kept_branch(b, &kept_old))
                    .collect();
                kept.matches = file
                    .matches
                    .iter()
                    .map(|m| kept_match(m, &kept_old))
                    .collect();
                files.push(kept);
            }
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
    }
    for file in &mut files {
        for function in &mut file.functions {
            if let Ok(i) = file.lines.binary_search_by_key(&function.line, |l| l.line) {
                function.hits = file.lines[i].hits;
            }
        }
    }
    Coverage {
        files,
        tests,
        count_cap: partial.count_cap,
    }
}

/// A partial run that built only some test executables.
#[derive(Debug, Default)]
pub struct Narrowed {
    /// Target names of the executables it built.
    pub built: HashSet<String>,
    /// Per file, the first and last lines of the bodies whose change made the selection, in the
    /// new build's numbering.
    pub replaced: HashMap<PathBuf, Vec<(u32, u32)>>,
}

/// Adds to `file` (a narrowed run's) the lines and functions of `previous` that the run's
/// executables do not hold, outside the changed bodies: code only the executables left out
/// compile (a `#[cfg(test)]` module of a library whose unit tests were not built).
fn keep_unbuilt_lines(
    file: &mut FileCoverage,
    previous: &FileCoverage,
    narrowed: &Narrowed,
    kept_old: &[Option<u32>],
) {
    let spans = narrowed
        .replaced
        .get(&file.path)
        .map_or(&[][..], Vec::as_slice);
    let replaced = |line: u32| spans.iter().any(|&(a, b)| a <= line && line <= b);
    let present: HashSet<u32> = file.lines.iter().map(|l| l.line).collect();
    let extra: Vec<LineCoverage> = previous
        .lines
        .iter()
        .filter(|l| !present.contains(&l.line) && !replaced(l.line))
        .map(|l| kept_line(l, kept_old))
        .collect();
    if !extra.is_empty() {
        file.lines.extend(extra);
        file.lines.sort_by_key(|l| l.line);
    }
    let present: HashSet<(u32, u32)> = file.branches.iter().map(|b| (b.line, b.index)).collect();
    let extra: Vec<BranchCoverage> = previous
        .branches
        .iter()
        .filter(|b| !present.contains(&(b.line, b.index)) && !replaced(b.line))
        .map(|b| kept_branch(b, kept_old))
        .collect();
    if !extra.is_empty() {
        file.branches.extend(extra);
        file.branches.sort_by_key(|b| (b.line, b.index));
    }
    let present: HashSet<(u32, u32)> = file.matches.iter().map(|m| (m.line, m.index)).collect();
    let extra: Vec<MatchCoverage> = previous
        .matches
        .iter()
        .filter(|m| !present.contains(&(m.line, m.index)) && !replaced(m.line))
        .map(|m| kept_match(m, kept_old))
        .collect();
    if !extra.is_empty() {
        file.matches.extend(extra);
        file.matches.sort_by_key(|m| (m.line, m.index));
    }
    let functions: HashSet<u32> = file.functions.iter().map(|f| f.line).collect();
    let extra: Vec<_> = previous
        .functions
        .iter()
        .filter(|f| !functions.contains(&f.line) && !replaced(f.line))
        .cloned()
        .collect();
    if !extra.is_empty() {
        file.functions.extend(extra);
        file.functions.sort_by_key(|f| f.line);
    }
}

/// An old line as it stays: the counts of the tests that are kept, at their new indexes.
fn kept_line(line: &LineCoverage, kept_old: &[Option<u32>]) -> LineCoverage {
    let tests = kept_counts(&line.tests, kept_old);
    let hits = if attributed(line) {
        tests.iter().map(|t| t.hits).sum()
    } else {
        line.hits
    };
    let mut tests = tests;
    tests.sort_by_key(|t| t.test);
    LineCoverage {
        line: line.line,
        hits,
        capped: line.capped,
        tests,
    }
}

/// An old `match` as it stays: its arms as old lines.
fn kept_match(found: &MatchCoverage, kept_old: &[Option<u32>]) -> MatchCoverage {
    MatchCoverage {
        arms: found.arms.iter().map(|a| kept_line(a, kept_old)).collect(),
        ..found.clone()
    }
}

/// An old branch as it stays: the counts of the tests that are kept, at their new indexes.
fn kept_branch(branch: &BranchCoverage, kept_old: &[Option<u32>]) -> BranchCoverage {
    let mut tests = kept_branch_counts(&branch.tests, kept_old);
    tests.sort_by_key(|t| t.test);
    let (taken, not_taken) = if branch_attributed(branch) {
        branch_sums(&tests)
    } else {
        (branch.taken, branch.not_taken)
    };
    BranchCoverage {
        taken,
        not_taken,
        tests,
        ..branch.clone()
    }
}

fn kept_branch_counts(tests: &[BranchTestHits], kept_old: &[Option<u32>]) -> Vec<BranchTestHits> {
    tests
        .iter()
        .filter_map(|t| {
            let test = (*kept_old.get(t.test as usize)?)?;
            Some(BranchTestHits { test, ..*t })
        })
        .collect()
}

fn branch_sums(tests: &[BranchTestHits]) -> (u64, u64) {
    tests
        .iter()
        .fold((0, 0), |(a, b), t| (a + t.taken, b + t.not_taken))
}

/// Whether both sides' totals are the sums of their per-test counts.
fn branch_attributed(branch: &BranchCoverage) -> bool {
    (branch.taken, branch.not_taken) == branch_sums(&branch.tests)
}

/// [`merge_line`] for a branch, side by side.
fn merge_branch(
    branch: &mut BranchCoverage,
    before: Option<&BranchCoverage>,
    kept_old: &[Option<u32>],
    ran: &HashSet<u32>,
) {
    let new_totals = (branch.taken, branch.not_taken);
    let new_exact = branch_attributed(branch);
    branch.tests.retain(|t| ran.contains(&t.test));
    let Some(before) = before else {
        return;
    };
    let kept = kept_branch_counts(&before.tests, kept_old);
    if kept.is_empty() {
        return;
    }
    branch.tests.extend(kept);
    branch.tests.sort_by_key(|t| t.test);
    branch.tests.dedup_by_key(|t| t.test);
    (branch.taken, branch.not_taken) = if new_exact && branch_attributed(before) {
        branch_sums(&branch.tests)
    } else {
        (
            new_totals.0.max(before.taken),
            new_totals.1.max(before.not_taken),
        )
    };
    branch.capped |= before.capped;
}

/// The per-test counts of the old tests that are kept, at their new indexes.
fn kept_counts(tests: &[TestHits], kept_old: &[Option<u32>]) -> Vec<TestHits> {
    tests
        .iter()
        .filter_map(|t| {
            let test = (*kept_old.get(t.test as usize)?)?;
            Some(TestHits { test, hits: t.hits })
        })
        .collect()
}

/// Whether a line's total is the sum of its per-test counts (nothing ran it outside a test).
fn attributed(line: &LineCoverage) -> bool {
    line.hits == line.tests.iter().map(|t| t.hits).sum::<u64>()
}

/// `line` is the new run's (its test indexes already the merged list's, as the partial run's
/// list is the merged list's order); `before` the old results at the same line.
fn merge_line(
    line: &mut LineCoverage,
    before: Option<&LineCoverage>,
    kept_old: &[Option<u32>],
    ran: &HashSet<u32>,
) {
    let new_total = line.hits;
    let new_exact = attributed(line);
    line.tests.retain(|t| ran.contains(&t.test));
    let Some(before) = before else {
        return;
    };
    let kept = kept_counts(&before.tests, kept_old);
    if kept.is_empty() {
        return;
    }
    line.tests.extend(kept);
    line.tests.sort_by_key(|t| t.test);
    line.tests.dedup_by_key(|t| t.test);
    line.hits = if new_exact && attributed(before) {
        line.tests.iter().map(|t| t.hits).sum()
    } else {
        new_total.max(before.hits)
    };
    line.capped |= before.capped;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coverage::test_data::{branch, file, line, per_test, test};
    use crate::libtest::Outcome;

    fn ran(ids: &[&str]) -> HashSet<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn branch_sides_merge_like_lines() {
        let (a, b) = ("k::a", "k::b");
        let mut old_file = file("/w/src/lib.rs", vec![line(2, &[(0, 1), (1, 1)], 0, false)]);
        old_file.branches = vec![branch(2, &[(0, 1, 0), (1, 0, 1)])];
        let old = Coverage {
            files: vec![old_file],
            tests: vec![test(a, Outcome::Passed), test(b, Outcome::Passed)],
            count_cap: 10,
        };
        // b ran again (index 0 now) and took the true side twice.
        let mut new_file = file("/w/src/lib.rs", vec![line(2, &[(0, 2)], 0, false)]);
        new_file.branches = vec![branch(2, &[(0, 2, 0)])];
        let partial = Coverage {
            files: vec![new_file],
            tests: vec![test(b, Outcome::Passed), test(a, Outcome::Ignored)],
            count_cap: 10,
        };
        let merged = merge(&old, partial, &ran(&[b]), None);
        let merged = &merged.files[0].branches[0];
        assert_eq!(
            (merged.taken, merged.not_taken),
            (3, 0),
            "b's false side went"
        );
        let tests: Vec<(u32, u64, u64)> = merged
            .tests
            .iter()
            .map(|t| (t.test, t.taken, t.not_taken))
            .collect();
        assert_eq!(tests, [(0, 2, 0), (1, 1, 0)]);
    }

    #[test]
    fn match_arms_merge_like_lines() {
        use crate::coverage::test_data::match_of;
        let (a, b) = ("k::a", "k::b");
        let mut old_file = file("/w/src/lib.rs", vec![line(2, &[(0, 1), (1, 1)], 0, false)]);
        old_file.matches = vec![match_of(2, &[(3, &[(0, 1)]), (4, &[(1, 1)])])];
        let old = Coverage {
            files: vec![old_file],
            tests: vec![test(a, Outcome::Passed), test(b, Outcome::Passed)],
            count_cap: 10,
        };
        // b ran again (index 0 now) and chose the first arm twice.
        let mut new_file = file("/w/src/lib.rs", vec![line(2, &[(0, 2)], 0, false)]);
        new_file.matches = vec![match_of(2, &[(3, &[(0, 2)]), (4, &[])])];
        let partial = Coverage {
            files: vec![new_file],
            tests: vec![test(b, Outcome::Passed), test(a, Outcome::Ignored)],
            count_cap: 10,
        };
        let merged = merge(&old, partial, &ran(&[b]), None);
        let arms = &merged.files[0].matches[0].arms;
        assert_eq!(
            (arms[0].hits, per_test(&arms[0])),
            (3, vec![(0, 2), (1, 1)])
        );
        assert_eq!(
            (arms[1].hits, per_test(&arms[1])),
            (0, vec![]),
            "b's old arm went"
        );
    }

    #[test]
    fn rerun_tests_bring_new_counts_the_others_keep_theirs() {
        let (a, b, c) = ("k::a", "k::b", "k::c");
        let old = Coverage {
            files: vec![
                file(
                    "/w/src/lib.rs",
                    vec![
                        line(2, &[(0, 5), (1, 7)], 0, false),
                        line(3, &[(1, 100)], 0, false),
                        // Ran outside the tests too: not the sum of its tests.
                        line(4, &[(0, 2)], 3, false),
                        line(5, &[], 0, false),
                        line(7, &[(0, 1)], 0, false),
                    ],
                ),
                file("/w/src/gone.rs", vec![line(2, &[(0, 1)], 0, false)]),
            ],
            tests: vec![test(a, Outcome::Passed), test(b, Outcome::Passed)],
            count_cap: 10,
        };
        // The new build lists c, b, a (c is new); b and c ran. b no longer reaches line 3; line
        // 7 is no longer coverable; gone.rs has no code any more.
        let partial = Coverage {
            files: vec![
                file(
                    "/w/src/lib.rs",
                    vec![
                        line(2, &[(1, 1_000_000), (0, 3)], 0, false),
                        line(3, &[], 0, false),
                        line(4, &[(1, 1)], 0, false),
                        line(5, &[(0, 10)], 0, true),
                        line(6, &[(0, 1)], 0, false),
                    ],
                ),
                file("/w/src/new.rs", vec![line(2, &[(0, 2)], 0, false)]),
            ],
            tests: vec![
                test(c, Outcome::Passed),
                test(b, Outcome::Failed),
                test(a, Outcome::Ignored),
            ],
            count_cap: 10,
        };
        let merged = merge(&old, partial, &ran(&[b, c]), None);
        let outcomes: Vec<(&str, &Outcome)> = merged
            .tests
            .iter()
            .map(|t| (t.id.as_str(), &t.outcome))
            .collect();
        assert_eq!(
            outcomes,
            [
                (c, &Outcome::Passed),
                (b, &Outcome::Failed),
                (a, &Outcome::Passed)
            ],
            "a did not run: it keeps its outcome"
        );
        let paths: Vec<&PathBuf> = merged.files.iter().map(|f| &f.path).collect();
        assert_eq!(paths, ["/w/src/lib.rs", "/w/src/new.rs"]);
        let lines = &merged.files[0].lines;
        assert_eq!(
            lines.iter().map(|l| l.line).collect::<Vec<_>>(),
            [2, 3, 4, 5, 6]
        );
        // a's 5 stay (now index 2), b's 7 become 1,000,000, c's 3 are added: exact sum.
        assert_eq!(per_test(&lines[0]), [(0, 3), (1, 1_000_000), (2, 5)]);
        assert_eq!((lines[0].hits, lines[0].capped), (1_000_008, false));
        // b's only entry went: nothing runs the line now.
        assert_eq!((per_test(&lines[1]), lines[1].hits), (vec![], 0));
        // Not attributed before: the larger total, as before per-test counts.
        assert_eq!(per_test(&lines[2]), [(1, 1), (2, 2)]);
        assert_eq!(lines[2].hits, 5);
        assert_eq!(per_test(&lines[3]), [(0, 10)]);
        assert_eq!((lines[3].hits, lines[3].capped), (10, true));
        assert_eq!(merged.files[0].functions[0].hits, 1_000_008);
        assert_eq!(per_test(&merged.files[1].lines[0]), [(0, 2)]);
    }

    #[test]
    fn a_run_without_doctests_keeps_the_earlier_ones_and_one_with_them_decides() {
        let doc = "k::doc::area (doctest)";
        let old = Coverage {
            files: vec![file(
                "/w/src/lib.rs",
                vec![line(2, &[(0, 1), (1, 4)], 0, false)],
            )],
            tests: vec![test("k::a", Outcome::Passed), test(doc, Outcome::Passed)],
            count_cap: 10,
        };
        let unit_tests_only = Coverage {
            files: vec![file("/w/src/lib.rs", vec![line(2, &[(0, 2)], 0, false)])],
            tests: vec![test("k::a", Outcome::Passed)],
            count_cap: 10,
        };
        let merged = merge(&old, unit_tests_only, &ran(&["k::a"]), None);
        let ids: Vec<&str> = merged.tests.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids, ["k::a", doc]);
        assert_eq!(per_test(&merged.files[0].lines[0]), [(0, 2), (1, 4)]);
        // A run that built the doctests lists those that still exist: one that does not is gone.
        let with_other_doctests = Coverage {
            files: vec![file("/w/src/lib.rs", vec![line(2, &[(1, 3)], 0, false)])],
            tests: vec![
                test("k::a", Outcome::Passed),
                test("k::doc::Area::new (doctest)", Outcome::Passed),
            ],
            count_cap: 10,
        };
        let merged = merge(
            &old,
            with_other_doctests,
            &ran(&["k::doc::Area::new (doctest)"]),
            None,
        );
        let ids: Vec<&str> = merged.tests.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids, ["k::a", "k::doc::Area::new (doctest)"]);
        assert_eq!(per_test(&merged.files[0].lines[0]), [(0, 1), (1, 3)]);
    }

    #[test]
    fn a_test_that_is_gone_takes_its_counts_along_and_capped_lines_stay_capped() {
        let old = Coverage {
            files: vec![file(
                "/w/src/lib.rs",
                vec![line(2, &[(0, 10), (1, 3)], 0, true)],
            )],
            tests: vec![test("k::a", Outcome::Passed), test("k::b", Outcome::Passed)],
            count_cap: 10,
        };
        let partial = Coverage {
            files: vec![file("/w/src/lib.rs", vec![line(2, &[(1, 4)], 0, false)])],
            tests: vec![
                test("k::a", Outcome::Ignored),
                test("k::c", Outcome::Passed),
            ],
            count_cap: 10,
        };
        let merged = merge(&old, partial, &ran(&["k::c"]), None);
        let line = &merged.files[0].lines[0];
        assert_eq!(per_test(line), [(0, 10), (1, 4)], "b is gone");
        assert_eq!((line.hits, line.capped), (14, true));
    }

    #[test]
    fn a_narrowed_build_keeps_what_the_executables_it_left_out_hold() {
        // Tests of two executables, `lib` (unit tests) and `api`; a body at lines 4-5 changed,
        // and only `api` was built and ran `api::t`.
        let old = Coverage {
            files: vec![
                file(
                    "/w/src/lib.rs",
                    vec![
                        line(2, &[(0, 1), (1, 1)], 0, false),
                        line(4, &[(1, 3)], 0, false),
                        line(5, &[(1, 1)], 0, false),
                        // The `#[cfg(test)]` module: only `lib` compiles it.
                        line(8, &[(0, 1)], 0, false),
                    ],
                ),
                file("/w/src/unit_only.rs", vec![line(2, &[(0, 2)], 0, false)]),
            ],
            tests: vec![
                test("lib::u", Outcome::Passed),
                test("api::t", Outcome::Passed),
            ],
            count_cap: 10,
        };
        let partial = Coverage {
            files: vec![file(
                "/w/src/lib.rs",
                vec![line(2, &[(0, 1)], 0, false), line(4, &[(0, 7)], 0, false)],
            )],
            tests: vec![test("api::t", Outcome::Failed)],
            count_cap: 10,
        };
        let narrowed = Narrowed {
            built: HashSet::from(["api".to_owned()]),
            replaced: HashMap::from([(PathBuf::from("/w/src/lib.rs"), vec![(3, 6)])]),
        };
        let merged = merge(&old, partial, &ran(&["api::t"]), Some(&narrowed));
        let outcomes: Vec<(&str, &Outcome)> = merged
            .tests
            .iter()
            .map(|t| (t.id.as_str(), &t.outcome))
            .collect();
        assert_eq!(
            outcomes,
            [("api::t", &Outcome::Failed), ("lib::u", &Outcome::Passed)]
        );
        let lib = &merged.files[0];
        let lines: Vec<(u32, Vec<(u32, u64)>)> =
            lib.lines.iter().map(|l| (l.line, per_test(l))).collect();
        assert_eq!(
            lines,
            [
                (2, vec![(0, 1), (1, 1)]),
                // Line 5 left the changed body: the new build decides, and it has none.
                (4, vec![(0, 7)]),
                (8, vec![(1, 1)]),
            ]
        );
        assert_eq!(merged.files[1].path, PathBuf::from("/w/src/unit_only.rs"));
        assert_eq!(per_test(&merged.files[1].lines[0]), [(1, 2)]);
    }

    #[test]
    fn a_partial_run_that_lists_tests_it_did_not_run_changes_none_of_them() {
        let old = Coverage {
            files: vec![file(
                "/w/src/lib.rs",
                vec![line(2, &[(0, 1), (1, 1)], 0, false)],
            )],
            tests: vec![test("k::a", Outcome::Failed), test("k::b", Outcome::Passed)],
            count_cap: 10,
        };
        let partial = Coverage {
            files: vec![file("/w/src/lib.rs", vec![line(2, &[(1, 2)], 0, false)])],
            tests: vec![
                test("k::a", Outcome::Ignored),
                test("k::b", Outcome::Passed),
            ],
            count_cap: 10,
        };
        let mut partial = partial;
        partial.tests[0].location = Some(("/w/src/lib.rs".into(), 12));
        let merged = merge(&old, partial, &ran(&["k::b"]), None);
        assert_eq!(merged.tests[0].outcome, Outcome::Failed);
        assert_eq!(
            merged.tests[0].location,
            Some(("/w/src/lib.rs".into(), 12)),
            "where the new build puts it"
        );
        assert_eq!(per_test(&merged.files[0].lines[0]), [(0, 1), (1, 2)]);
        assert_eq!(merged.files[0].lines[0].hits, 3);
    }
}
