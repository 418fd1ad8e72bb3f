//! The JSON report (`--json FILE`): per-file line hits and functions, per-test outcomes, totals.
//! Its schema is documented in the README; `version` changes when a field changes meaning.

use serde::Serialize;

use crate::coverage::{Coverage, FileCoverage, FunctionCoverage, TestInfo};
use crate::run::RunReport;

pub const SCHEMA_VERSION: u32 = 1;

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
    hits: u64,
    /// Test ids rather than indexes, so that the report reads on its own.
    tests: Vec<&'a str>,
}

#[derive(Serialize)]
struct Executable<'a> {
    path: &'a std::path::Path,
    target: &'a str,
    kind: &'a str,
    /// How each process that ran its tests ended (`Code(0)`, `Signal(11)`, `TimedOut`).
    exits: Vec<String>,
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
                tests: l
                    .tests
                    .iter()
                    .map(|&t| coverage.tests[t as usize].id.as_str())
                    .collect(),
            })
            .collect(),
        functions: &f.functions,
    }
}
