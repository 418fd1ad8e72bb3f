//! coverlay's own protocol for editors with a coverage view (VS Code): the `coverlay/didUpdate`
//! notification (tests and per-file totals after every run) and the `coverlay/fileCoverage`
//! request (one file's lines with their branches and `match` arms, and functions, for all tests or
//! one). Lines are 0-based, as in LSP.

use serde::{Deserialize, Serialize};
use tower_lsp_server::ls_types::notification::Notification;
use tower_lsp_server::ls_types::Uri;

use crate::libtest::Outcome;
use crate::lsp::store::{Shown, Tests};

/// The client capability (`experimental.coverlay`) that asks for this protocol.
pub const CAPABILITY: &str = "coverlay";
/// The request for one file's coverage.
pub const FILE_COVERAGE: &str = "coverlay/fileCoverage";

pub enum DidUpdate {}

impl Notification for DidUpdate {
    type Params = Update;
    const METHOD: &'static str = "coverlay/didUpdate";
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub struct Update {
    /// Grows with every update (the generation of the run shown).
    pub version: u64,
    pub tests: Vec<TestItem>,
    pub files: Vec<FileTotals>,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub struct TestItem {
    /// As in the JSON report: `<target>::<test path>`.
    pub id: String,
    /// The test function's name.
    pub label: String,
    pub uri: Option<String>,
    /// The `fn` line, 0-based.
    pub line: Option<u32>,
    /// `passed`, `failed`, `ignored`, `timed_out` or `crashed`.
    pub outcome: String,
    pub duration_ms: u64,
    pub message: Option<String>,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub struct FileTotals {
    pub uri: String,
    pub covered: usize,
    pub coverable: usize,
    /// Branch sides that ran, and all branch sides (two per branch, one per `match` arm).
    pub branches_covered: usize,
    pub branches_total: usize,
    /// Ids of the tests that ran some of its lines (for per-test coverage filters).
    pub tests: Vec<String>,
}

#[derive(Debug, Deserialize)]
pub struct FileCoverageParams {
    pub uri: Uri,
    #[serde(rename = "testId")]
    pub test_id: Option<String>,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub struct FileLines {
    pub uri: String,
    pub lines: Vec<LineHits>,
    pub functions: Vec<FunctionHits>,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub struct LineHits {
    pub line: u32,
    pub hits: u64,
    /// The line's branches, in code order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub branches: Vec<BranchHits>,
    /// The `match`es shown on the line, each with its arms (see `coverage::MatchCoverage`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<MatchHits>,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub struct MatchHits {
    pub arms: Vec<ArmHits>,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub struct ArmHits {
    /// The arm's first line, 0-based.
    pub line: u32,
    pub hits: u64,
}

/// One branch's two sides (see `coverage::BranchCoverage`).
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub struct BranchHits {
    /// As in the JSON report: `if`, `while`, `short_circuit`, `guard`, `if_let`, `let_else`, `try`.
    pub construct: crate::coverage::Construct,
    /// `taken` is the condition's true side (else the jump's).
    pub oriented: bool,
    pub taken: u64,
    pub not_taken: u64,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub struct FunctionHits {
    pub name: String,
    pub line: u32,
    pub hits: u64,
}

fn uri_of(path: &std::path::Path) -> Option<String> {
    Uri::from_file_path(path).map(|u| u.as_str().to_owned())
}

fn outcome(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Passed => "passed",
        Outcome::Failed => "failed",
        Outcome::Ignored => "ignored",
        Outcome::TimedOut => "timed_out",
        Outcome::Crashed { .. } => "crashed",
    }
}

/// The `coverlay/didUpdate` payload for the shown results (lines edited since the run count as
/// they were measured).
pub fn update(shown: &Shown) -> Update {
    let tests = &shown.tests;
    let mut located: Vec<Option<(&std::path::Path, u32)>> = vec![None; tests.list.len()];
    for ((path, line), &index) in &tests.at {
        located[index] = Some((path.as_path(), *line));
    }
    let tests_out = tests
        .list
        .iter()
        .zip(&located)
        .map(|(test, at)| TestItem {
            id: test.id.clone(),
            label: test.id.rsplit("::").next().unwrap_or(&test.id).to_owned(),
            uri: at.and_then(|(path, _)| uri_of(path)),
            line: at.map(|(_, line)| line.saturating_sub(1)),
            outcome: outcome(&test.outcome).to_owned(),
            duration_ms: test.duration_ms,
            message: test.message.clone(),
        })
        .collect();
    let mut files: Vec<FileTotals> = shown
        .paths()
        .iter()
        .filter_map(|path| {
            let file = shown.file(path)?;
            let mut ran: Vec<u32> = file
                .coverage
                .lines
                .iter()
                .flat_map(|l| l.tests.iter().map(|t| t.test))
                .collect();
            ran.sort_unstable();
            ran.dedup();
            let (branches_covered, branches_total) = file.coverage.branch_sides();
            Some(FileTotals {
                uri: uri_of(path)?,
                covered: file.coverage.lines.iter().filter(|l| l.hits > 0).count(),
                coverable: file.coverage.lines.len(),
                branches_covered,
                branches_total,
                tests: ran
                    .into_iter()
                    .filter_map(|i| tests.list.get(i as usize).map(|t| t.id.clone()))
                    .collect(),
            })
        })
        .collect();
    files.sort_by(|a, b| a.uri.cmp(&b.uri));
    Update {
        version: shown.generation,
        tests: tests_out,
        files,
    }
}

/// One file's coverable lines and functions with their hits: all tests', or `test`'s own (0
/// where it did not run). `None` when the file has no results or the test is unknown.
pub fn file_lines(shown: &Shown, path: &std::path::Path, test: Option<&str>) -> Option<FileLines> {
    let file = shown.file(path)?;
    let index = match test {
        Some(id) => Some(test_index(&shown.tests, id)? as u32),
        None => None,
    };
    let hits_of = |line: &crate::coverage::LineCoverage| match index {
        None => line.hits,
        Some(index) => line
            .tests
            .iter()
            .find(|t| t.test == index)
            .map_or(0, |t| t.hits),
    };
    let lines: Vec<LineHits> = file
        .coverage
        .lines
        .iter()
        .filter(|l| !file.is_stale(l.line))
        .map(|l| LineHits {
            line: l.line.saturating_sub(1),
            hits: hits_of(l),
            branches: file
                .coverage
                .branches_on(l.line)
                .iter()
                .map(|b| {
                    let (taken, not_taken) = match index {
                        None => (b.taken, b.not_taken),
                        Some(index) => b
                            .tests
                            .iter()
                            .find(|t| t.test == index)
                            .map_or((0, 0), |t| (t.taken, t.not_taken)),
                    };
                    BranchHits {
                        construct: b.construct,
                        oriented: b.oriented,
                        taken,
                        not_taken,
                    }
                })
                .collect(),
            matches: file
                .coverage
                .matches_on(l.line)
                .iter()
                .map(|m| MatchHits {
                    arms: m
                        .arms
                        .iter()
                        .map(|arm| ArmHits {
                            line: arm.line.saturating_sub(1),
                            hits: match index {
                                None => arm.hits,
                                Some(index) => arm
                                    .tests
                                    .iter()
                                    .find(|t| t.test == index)
                                    .map_or(0, |t| t.hits),
                            },
                        })
                        .collect(),
                })
                .collect(),
        })
        .collect();
    let functions = file
        .coverage
        .functions
        .iter()
        .filter(|f| !file.is_stale(f.line))
        .map(|f| FunctionHits {
            name: f.name.clone(),
            line: f.line.saturating_sub(1),
            hits: file
                .coverage
                .lines
                .binary_search_by_key(&f.line, |l| l.line)
                .map_or(0, |i| hits_of(&file.coverage.lines[i])),
        })
        .collect();
    Some(FileLines {
        uri: uri_of(path)?,
        lines,
        functions,
    })
}

fn test_index(tests: &Tests, id: &str) -> Option<usize> {
    tests.list.iter().position(|t| t.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coverage::test_data::{branch, line, match_of};
    use crate::coverage::{Coverage, FileCoverage, FunctionCoverage, TestInfo};
    use std::collections::BTreeMap;
    use std::path::Path;

    fn shown() -> Shown {
        let line = |n: u32, tests: &[(u32, u64)]| line(n, tests, 0, false);
        let coverage = Coverage {
            files: vec![FileCoverage {
                path: "/w/src/lib.rs".into(),
                lines: vec![line(3, &[(0, 2), (1, 5)]), line(4, &[(1, 1)]), line(9, &[])],
                functions: vec![FunctionCoverage {
                    name: "add".into(),
                    line: 3,
                    end_line: 5,
                    hits: 7,
                    is_test: false,
                }],
                branches: vec![branch(4, &[(1, 1, 0)])],
                // A `match` on line 3 whose arms start at lines 4 and 9.
                matches: vec![match_of(3, &[(4, &[(1, 1)]), (9, &[])])],
            }],
            tests: vec![
                TestInfo {
                    id: "k::tests::adds".into(),
                    outcome: Outcome::Passed,
                    duration_ms: 3,
                    message: None,
                    location: Some(("/w/src/lib.rs".into(), 20)),
                    attempts: 1,
                },
                TestInfo {
                    id: "api::big".into(),
                    outcome: Outcome::Crashed { signal: 11 },
                    duration_ms: 9,
                    message: Some("boom".into()),
                    location: None,
                    attempts: 1,
                },
            ],
            count_cap: 10,
        };
        Shown::new(7, coverage, BTreeMap::new(), None)
    }

    #[test]
    fn updates_list_tests_at_their_fn_line_and_file_totals() {
        let update = update(&shown());
        assert_eq!(update.version, 7);
        assert_eq!(
            update.tests[0],
            TestItem {
                id: "k::tests::adds".into(),
                label: "adds".into(),
                uri: Some("file:///w/src/lib.rs".into()),
                line: Some(19),
                outcome: "passed".into(),
                duration_ms: 3,
                message: None,
            }
        );
        assert_eq!(
            (
                update.tests[1].outcome.as_str(),
                update.tests[1].uri.as_deref()
            ),
            ("crashed", None)
        );
        assert_eq!(
            update.files,
            [FileTotals {
                uri: "file:///w/src/lib.rs".into(),
                covered: 2,
                coverable: 3,
                branches_covered: 2,
                branches_total: 4,
                tests: vec!["k::tests::adds".into(), "api::big".into()],
            }]
        );
    }

    #[test]
    fn file_lines_for_all_tests_or_one() {
        let shown = shown();
        let path = Path::new("/w/src/lib.rs");
        let all = file_lines(&shown, path, None).unwrap();
        let hits = |f: &FileLines| f.lines.iter().map(|l| (l.line, l.hits)).collect::<Vec<_>>();
        assert_eq!(hits(&all), [(2, 7), (3, 1), (8, 0)]);
        assert_eq!(
            all.functions[0],
            FunctionHits {
                name: "add".into(),
                line: 2,
                hits: 7
            }
        );
        let one = file_lines(&shown, path, Some("k::tests::adds")).unwrap();
        assert_eq!(hits(&one), [(2, 2), (3, 0), (8, 0)]);
        assert_eq!(one.functions[0].hits, 2);
        // Line 4's branch: api::big took it once; k::tests::adds never ran it.
        let sides = |f: &FileLines| {
            let b = &f.lines[1].branches[0];
            (b.taken, b.not_taken)
        };
        assert_eq!((sides(&all), sides(&one)), ((1, 0), (0, 0)));
        assert!(all.lines[0].branches.is_empty());
        // Line 3's `match`: api::big took the arm at line 4 (0-based 3) once.
        let arms = |f: &FileLines| {
            let arms = &f.lines[0].matches[0].arms;
            arms.iter().map(|a| (a.line, a.hits)).collect::<Vec<_>>()
        };
        assert_eq!(arms(&all), [(3, 1), (8, 0)]);
        assert_eq!(arms(&one), [(3, 0), (8, 0)]);
        assert!(all.lines[1].matches.is_empty());
        assert!(file_lines(&shown, path, Some("nope")).is_none());
        assert!(file_lines(&shown, Path::new("/w/src/other.rs"), None).is_none());
    }
}
