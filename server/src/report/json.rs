//! The JSON report (`--json FILE`): per-file line hits and functions, per-test outcomes, totals.
//! Its schema is documented in the README; `version` changes when a field changes meaning.

use serde::Serialize;

use crate::coverage::{FileCoverage, FunctionCoverage, LineCoverage};
use crate::libtest::Outcome;
use crate::run::RunReport;

pub const SCHEMA_VERSION: u32 = 1;

#[derive(Serialize)]
struct Report<'a> {
    version: u32,
    workspace: &'a std::path::Path,
    covered: usize,
    coverable: usize,
    files: Vec<File<'a>>,
    tests: Vec<Test<'a>>,
    executables: Vec<Executable<'a>>,
}

#[derive(Serialize)]
struct File<'a> {
    path: &'a std::path::Path,
    covered: usize,
    coverable: usize,
    lines: &'a [LineCoverage],
    functions: &'a [FunctionCoverage],
}

#[derive(Serialize)]
struct Test<'a> {
    id: String,
    outcome: &'a Outcome,
    message: Option<&'a str>,
}

#[derive(Serialize)]
struct Executable<'a> {
    path: &'a std::path::Path,
    target: &'a str,
    kind: &'a str,
    exit: String,
    duration_ms: u128,
}

pub fn render(report: &RunReport) -> String {
    fn file(f: &FileCoverage) -> File<'_> {
        File {
            path: &f.path,
            covered: f.covered(),
            coverable: f.coverable(),
            lines: &f.lines,
            functions: &f.functions,
        }
    }
    let report = Report {
        version: SCHEMA_VERSION,
        workspace: &report.workspace.root,
        covered: report.coverage.covered(),
        coverable: report.coverage.coverable(),
        files: report.coverage.files.iter().map(file).collect(),
        tests: report
            .executables
            .iter()
            .flat_map(|run| {
                run.tests.iter().map(|t| Test {
                    id: format!("{}::{}", run.executable.target, t.name),
                    outcome: &t.outcome,
                    message: t.message.as_deref(),
                })
            })
            .collect(),
        executables: report
            .executables
            .iter()
            .map(|run| Executable {
                path: &run.executable.path,
                target: &run.executable.target,
                kind: &run.executable.kind,
                exit: format!("{:?}", run.exit),
                duration_ms: run.duration.as_millis(),
            })
            .collect(),
    };
    serde_json::to_string_pretty(&report).expect("report serialises")
}
