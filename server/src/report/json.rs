//! The JSON report (`--json FILE`): per-file line hits, branches and functions, per-test outcomes,
//! totals.
//! Its schema is documented in the README; `version` changes when a field changes meaning.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{ExecutableInfo, PackageDir, RunInfo};
use crate::coverage::{
    BranchCoverage, BranchTestHits, Construct, Coverage, FileCoverage, FunctionCoverage,
    LineCoverage, MatchCoverage, TestHits, TestInfo,
};

/// 2: `lines[].tests` are `{id, hits}` (each test's own executions of the line), `hits` is exact
/// unless `capped` is set.
pub const SCHEMA_VERSION: u32 = 2;

#[derive(Serialize, Deserialize)]
struct Report {
    version: u32,
    workspace: PathBuf,
    /// Packages of the workspace (for Cobertura's packages when the report is merged).
    #[serde(default)]
    packages: Vec<PackageDir>,
    /// The int3 fallback's cap (see `capped`).
    #[serde(default = "default_cap")]
    count_cap: u32,
    covered: usize,
    coverable: usize,
    /// Branch sides that ran, and all branch sides (two per branch), as lcov's BRH and BRF.
    #[serde(default)]
    branches_hit: usize,
    #[serde(default)]
    branches_found: usize,
    files: Vec<File>,
    tests: Vec<TestInfo>,
    executables: Vec<ExecutableInfo>,
}

fn default_cap() -> u32 {
    crate::run::DEFAULT_COUNT_CAP
}

#[derive(Serialize, Deserialize)]
struct File {
    path: PathBuf,
    covered: usize,
    coverable: usize,
    lines: Vec<Line>,
    functions: Vec<FunctionCoverage>,
    #[serde(default)]
    branches_hit: usize,
    #[serde(default)]
    branches_found: usize,
    /// Reports written before branch coverage have none.
    #[serde(default)]
    branches: Vec<BranchEntry>,
}

/// A two-way branch, or a `match` with its arms, in one list sorted by line and index.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum BranchEntry {
    Match(Match),
    Branch(Branch),
}

impl BranchEntry {
    fn place(&self) -> (u32, u32) {
        match self {
            BranchEntry::Match(m) => (m.line, m.index),
            BranchEntry::Branch(b) => (b.line, b.index),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Match {
    line: u32,
    index: u32,
    construct: MatchConstruct,
    arms: Vec<Line>,
}

/// Always `"match"`: tells a `match` entry from a two-way branch.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum MatchConstruct {
    Match,
}

#[derive(Serialize, Deserialize)]
struct Branch {
    line: u32,
    /// Its place among the line's branches, in code order.
    index: u32,
    construct: Construct,
    /// `taken`/`not_taken` are the condition's true and false sides (else the jump's sides).
    oriented: bool,
    taken: u64,
    not_taken: u64,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    capped: bool,
    tests: Vec<BranchTest>,
}

#[derive(Serialize, Deserialize)]
struct BranchTest {
    id: String,
    taken: u64,
    not_taken: u64,
}

#[derive(Serialize, Deserialize)]
struct Line {
    line: u32,
    /// Executions; a lower bound when `capped`.
    hits: u64,
    /// Present (and `true`) only when some of the line's code was counted up to the int3 cap.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    capped: bool,
    /// The tests that ran the line, in the run's test order.
    tests: Vec<LineTest>,
}

#[derive(Serialize, Deserialize)]
struct LineTest {
    /// The test's id rather than its index, so that the report reads on its own.
    id: String,
    /// That test's own executions of the line.
    hits: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("not a coverlay JSON report: {0}")]
    Json(#[from] serde_json::Error),
    #[error("report version {0}; this coverlay reads version {SCHEMA_VERSION} (rerun the tests with this coverlay)")]
    Version(u32),
    #[error("line {line} of {file} names test `{id}`, which the report does not list")]
    UnknownTest {
        file: PathBuf,
        line: u32,
        id: String,
    },
}

/// The report, written compactly to `out` as it is serialised: a run's per-test lists make it
/// large (15 MB indented on regex-syntax, half that without), and building it in memory first
/// cost the CLI as much again.
pub fn write(
    coverage: &Coverage,
    info: &RunInfo,
    out: impl std::io::Write,
) -> serde_json::Result<()> {
    let report = Report {
        version: SCHEMA_VERSION,
        workspace: info.root.clone(),
        packages: info.packages.clone(),
        count_cap: coverage.count_cap,
        covered: coverage.covered(),
        coverable: coverage.coverable(),
        branches_hit: coverage.branch_sides().0,
        branches_found: coverage.branch_sides().1,
        files: coverage.files.iter().map(|f| file(f, coverage)).collect(),
        tests: coverage.tests.clone(),
        executables: info.executables.clone(),
    };
    serde_json::to_writer(out, &report)
}

/// A report [`write`] wrote, back as what it was written from.
pub fn parse(text: &str) -> Result<(Coverage, RunInfo), ReadError> {
    #[derive(Deserialize)]
    struct Version {
        version: u32,
    }
    let Version { version } = serde_json::from_str(text)?;
    if version != SCHEMA_VERSION {
        return Err(ReadError::Version(version));
    }
    let report: Report = serde_json::from_str(text)?;
    let index: std::collections::HashMap<&str, u32> = report
        .tests
        .iter()
        .enumerate()
        .map(|(i, t)| (t.id.as_str(), i as u32))
        .collect();
    // Per-test entries name their test by id: its number in the report's `tests`.
    let number = |id: String, file: &std::path::Path, line: u32| match index.get(id.as_str()) {
        Some(&test) => Ok(test),
        None => Err(ReadError::UnknownTest {
            file: file.to_path_buf(),
            line,
            id,
        }),
    };
    let mut files = Vec::with_capacity(report.files.len());
    for f in report.files {
        // Lines and `match` arms share a shape: a line, its hits and its tests.
        let line_of = |l: Line| -> Result<LineCoverage, ReadError> {
            let tests = l
                .tests
                .into_iter()
                .map(|t| {
                    Ok(TestHits {
                        test: number(t.id, &f.path, l.line)?,
                        hits: t.hits,
                    })
                })
                .collect::<Result<_, ReadError>>()?;
            Ok(LineCoverage {
                line: l.line,
                hits: l.hits,
                capped: l.capped,
                tests,
            })
        };
        let lines = f
            .lines
            .into_iter()
            .map(line_of)
            .collect::<Result<Vec<_>, _>>()?;
        let mut branches = Vec::with_capacity(f.branches.len());
        let mut matches = Vec::new();
        for entry in f.branches {
            let b = match entry {
                BranchEntry::Branch(b) => b,
                BranchEntry::Match(m) => {
                    let arms = m
                        .arms
                        .into_iter()
                        .map(line_of)
                        .collect::<Result<Vec<_>, _>>()?;
                    matches.push(MatchCoverage {
                        line: m.line,
                        index: m.index,
                        arms,
                    });
                    continue;
                }
            };
            let mut tests = Vec::with_capacity(b.tests.len());
            for t in b.tests {
                let test = number(t.id, &f.path, b.line)?;
                tests.push(BranchTestHits {
                    test,
                    taken: t.taken,
                    not_taken: t.not_taken,
                });
            }
            branches.push(BranchCoverage {
                line: b.line,
                index: b.index,
                construct: b.construct,
                oriented: b.oriented,
                taken: b.taken,
                not_taken: b.not_taken,
                capped: b.capped,
                tests,
            });
        }
        files.push(FileCoverage {
            path: f.path,
            lines,
            functions: f.functions,
            branches,
            matches,
        });
    }
    let coverage = Coverage {
        files,
        tests: report.tests,
        count_cap: report.count_cap,
    };
    let info = RunInfo {
        root: report.workspace,
        packages: report.packages,
        executables: report.executables,
    };
    Ok((coverage, info))
}

fn file(f: &FileCoverage, coverage: &Coverage) -> File {
    // Each test by its id rather than its index, so that the report reads on its own.
    let line_tests = |tests: &[TestHits]| -> Vec<LineTest> {
        tests
            .iter()
            .filter_map(|t| {
                let test = coverage.tests.get(t.test as usize)?;
                Some(LineTest {
                    id: test.id.clone(),
                    hits: t.hits,
                })
            })
            .collect()
    };
    let mut branches: Vec<BranchEntry> = f
        .branches
        .iter()
        .map(|b| {
            BranchEntry::Branch(Branch {
                line: b.line,
                index: b.index,
                construct: b.construct,
                oriented: b.oriented,
                taken: b.taken,
                not_taken: b.not_taken,
                capped: b.capped,
                tests: b
                    .tests
                    .iter()
                    .filter_map(|t| {
                        let test = coverage.tests.get(t.test as usize)?;
                        Some(BranchTest {
                            id: test.id.clone(),
                            taken: t.taken,
                            not_taken: t.not_taken,
                        })
                    })
                    .collect(),
            })
        })
        .chain(f.matches.iter().map(|m| {
            BranchEntry::Match(Match {
                line: m.line,
                index: m.index,
                construct: MatchConstruct::Match,
                arms: m
                    .arms
                    .iter()
                    .map(|arm| Line {
                        line: arm.line,
                        hits: arm.hits,
                        capped: arm.capped,
                        tests: line_tests(&arm.tests),
                    })
                    .collect(),
            })
        }))
        .collect();
    branches.sort_by_key(BranchEntry::place);
    File {
        path: f.path.clone(),
        covered: f.covered(),
        coverable: f.coverable(),
        lines: f
            .lines
            .iter()
            .map(|l| Line {
                line: l.line,
                hits: l.hits,
                capped: l.capped,
                tests: line_tests(&l.tests),
            })
            .collect(),
        functions: f.functions.clone(),
        branches_hit: f.branch_sides().0,
        branches_found: f.branch_sides().1,
        branches,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::libtest::Outcome;

    fn render(coverage: &Coverage, info: &RunInfo) -> String {
        let mut bytes = Vec::new();
        write(coverage, info, &mut bytes).unwrap();
        String::from_utf8(bytes).unwrap()
    }

    fn test(id: &str) -> TestInfo {
        TestInfo {
            id: id.into(),
            outcome: Outcome::Passed,
            duration_ms: 1,
            message: None,
            location: None,
            attempts: 1,
        }
    }

    fn sample() -> Coverage {
        Coverage {
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
                branches: vec![BranchCoverage {
                    line: 12,
                    index: 0,
                    construct: Construct::If,
                    oriented: true,
                    taken: 1_250_000,
                    not_taken: 0,
                    capped: false,
                    tests: vec![BranchTestHits {
                        test: 1,
                        taken: 250_000,
                        not_taken: 0,
                    }],
                }],
                matches: vec![MatchCoverage {
                    line: 12,
                    index: 1,
                    arms: vec![
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
                            tests: Vec::new(),
                        },
                    ],
                }],
            }],
            tests: vec![test("mycrate::tests::spins"), test("mycrate::tests::once")],
            count_cap: 10,
        }
    }

    #[test]
    fn what_is_written_reads_back_the_same() {
        let coverage = sample();
        let info = RunInfo {
            root: "/w".into(),
            packages: vec![PackageDir {
                name: "mycrate".into(),
                dir: "/w".into(),
            }],
            executables: vec![ExecutableInfo {
                path: "/w/target/debug/deps/mycrate-1".into(),
                target: "mycrate".into(),
                kind: "lib".into(),
                exits: vec!["Code(0)".into()],
                counting: crate::report::Counting {
                    trampolines: 3,
                    int3: 1,
                    traps: 9,
                },
            }],
        };
        let (read, read_info) = parse(&render(&coverage, &info)).unwrap();
        assert_eq!(read, coverage);
        assert_eq!(read_info, info);
    }

    #[test]
    fn a_match_is_an_entry_of_branches_with_its_arms_as_lines() {
        let info = RunInfo {
            root: "/w".into(),
            packages: Vec::new(),
            executables: Vec::new(),
        };
        let value: serde_json::Value = serde_json::from_str(&render(&sample(), &info)).unwrap();
        let file = &value["files"][0];
        assert_eq!(
            file["branches"][1],
            serde_json::json!({"line": 12, "index": 1, "construct": "match", "arms": [
                {"line": 13, "hits": 10, "capped": true,
                 "tests": [{"id": "mycrate::tests::once", "hits": 10}]},
                {"line": 14, "hits": 0, "tests": []}]})
        );
        // The `if`'s one side that ran and its two, the match's one arm that ran and its two.
        assert_eq!(
            (&file["branches_hit"], &file["branches_found"]),
            (&2.into(), &4.into())
        );
    }

    #[test]
    fn reports_of_another_version_or_shape_are_refused_with_the_reason() {
        let old = r#"{"version": 1, "files": []}"#;
        assert!(matches!(parse(old), Err(ReadError::Version(1))));
        assert!(matches!(parse("[1, 2]"), Err(ReadError::Json(_))));
        let info = RunInfo {
            root: "/w".into(),
            packages: Vec::new(),
            executables: Vec::new(),
        };
        let mut value: serde_json::Value = serde_json::from_str(&render(&sample(), &info)).unwrap();
        value["files"][0]["lines"][1]["tests"][0]["id"] = "mycrate::gone".into();
        let unknown = value.to_string();
        assert!(
            matches!(
                parse(&unknown),
                Err(ReadError::UnknownTest { line: 13, .. })
            ),
            "{unknown}"
        );
    }

    #[test]
    fn lines_carry_exact_hits_per_test_hits_and_capped_only_when_set() {
        let coverage = sample();
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
        assert_eq!(
            value["branches"][0],
            serde_json::json!(
                {"line": 12, "index": 0, "construct": "if", "oriented": true, "taken": 1_250_000, "not_taken": 0,
                 "tests": [{"id": "mycrate::tests::once", "taken": 250_000, "not_taken": 0}]}
            )
        );
    }
}
