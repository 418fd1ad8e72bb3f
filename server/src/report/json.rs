//! The JSON report (`--json FILE`): per-file line hits and functions, per-test outcomes, totals.
//! Its schema is documented in the README; `version` changes when a field changes meaning.

use serde::Serialize;

use crate::coverage::{Coverage, FileCoverage, FunctionCoverage, TestInfo};
use crate::run::RunReport;

/// 2: `lines[].tests` are `{id, hits}` (each test's own executions of the line), `hits` is exact
/// unless `capped` is set.
pub const SCHEMA_VERSION: u32 = 2;

#[derive(Serialize)]
struct Report<'a> {
    version: u32,
    workspace: &'a std::path::Path,
    covered: usize,
    coverable: usize,
    files: Vec<File<'a>>,
    tests: &'a [TestInfo],
    executables: Vec<Executable<'a>>,
}

#[derive(Serialize)]
struct File<'a> {
    path: &'a std::path::Path,
    covered: usize,
    coverable: usize,
    lines: Vec<Line<'a>>,
    functions: &'a [FunctionCoverage],
}

#[derive(Serialize)]
struct Line<'a> {
    line: u32,
    /// Executions; a lower bound when `capped`.
    hits: u64,
    /// Present (and `true`) only when some of the line's code was counted up to the int3 cap.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    capped: bool,
    /// The tests that ran the line, in the run's test order.
    tests: Vec<LineTest<'a>>,
}

#[derive(Serialize)]
struct LineTest<'a> {
    /// The test's id rather than its index, so that the report reads on its own.
    id: &'a str,
    /// That test's own executions of the line.
    hits: u64,
}

#[derive(Serialize)]
struct Executable<'a> {
    path: &'a std::path::Path,
    target: &'a str,
    kind: &'a str,
    /// How each process that ran its tests ended (`Code(0)`, `Signal(11)`, `TimedOut`).
    exits: Vec<String>,
    counting: Counting,
}

/// How an executable's addresses were counted, and what it cost.
#[derive(Serialize)]
struct Counting {
    /// Addresses counted by a trampoline (their own, or a run shared with the one before).
    trampolines: usize,
    /// Addresses counted by int3 (test entries included).
    int3: usize,
    /// Traps taken over all its processes.
    traps: u64,
}

pub fn render(report: &RunReport) -> String {
    let coverage = &report.coverage;
    let report = Report {
        version: SCHEMA_VERSION,
        workspace: &report.workspace.root,
        covered: coverage.covered(),
        coverable: coverage.coverable(),
        files: coverage.files.iter().map(|f| file(f, coverage)).collect(),
        tests: &coverage.tests,
        executables: report
            .executables
            .iter()
            .map(|run| Executable {
                path: &run.executable.path,
                target: &run.executable.target,
                kind: &run.executable.kind,
                exits: run.exits.iter().map(|e| format!("{e:?}")).collect(),
                counting: Counting {
                    trampolines: run.counting.sites.alone
                        + run.counting.sites.runs
                        + run.counting.sites.covered,
                    int3: run.counting.sites.traps,
                    traps: run.counting.traps,
                },
            })
            .collect(),
    };
    serde_json::to_string_pretty(&report).expect("report serialises")
}

fn file<'a>(f: &'a FileCoverage, coverage: &'a Coverage) -> File<'a> {
    File {
        path: &f.path,
        covered: f.covered(),
        coverable: f.coverable(),
        lines: f
            .lines
            .iter()
            .map(|l| Line {
                line: l.line,
                hits: l.hits,
                capped: l.capped,
                tests: l
                    .tests
                    .iter()
                    .filter_map(|t| {
                        let test = coverage.tests.get(t.test as usize)?;
                        Some(LineTest {
                            id: &test.id,
                            hits: t.hits,
                        })
                    })
                    .collect(),
            })
            .collect(),
        functions: &f.functions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coverage::{LineCoverage, TestHits};
    use crate::libtest::Outcome;

    fn test(id: &str) -> TestInfo {
        TestInfo {
            id: id.into(),
            outcome: Outcome::Passed,
            duration_ms: 1,
            message: None,
            location: None,
        }
    }

    #[test]
    fn lines_carry_exact_hits_per_test_hits_and_capped_only_when_set() {
        let coverage = Coverage {
            files: vec![FileCoverage {
                path: "/w/src/lib.rs".into(),
                lines: vec![
                    LineCoverage {
                        line: 12,
                        hits: 1_250_000,
                        capped: false,
                        tests: vec![
                            TestHits {
                                test: 0,
                                hits: 1_000_000,
                            },
                            TestHits {
                                test: 1,
                                hits: 250_000,
                            },
                        ],
                    },
                    LineCoverage {
                        line: 13,
                        hits: 10,
                        capped: true,
                        tests: vec![TestHits { test: 1, hits: 10 }],
                    },
                    LineCoverage {
                        line: 14,
                        hits: 0,
                        capped: false,
                        tests: vec![],
                    },
                ],
                functions: vec![],
            }],
            tests: vec![test("mycrate::tests::spins"), test("mycrate::tests::once")],
            count_cap: 10,
        };
        let value = serde_json::to_value(file(&coverage.files[0], &coverage)).unwrap();
        assert_eq!(
            value["lines"],
            serde_json::json!([
                {"line": 12, "hits": 1_250_000, "tests": [
                    {"id": "mycrate::tests::spins", "hits": 1_000_000},
                    {"id": "mycrate::tests::once", "hits": 250_000},
                ]},
                {"line": 13, "hits": 10, "capped": true, "tests": [
                    {"id": "mycrate::tests::once", "hits": 10},
                ]},
                {"line": 14, "hits": 0, "tests": []},
            ])
        );
        assert_eq!(value["covered"], 2);
        assert_eq!(value["coverable"], 3);
    }
}
