//! Diagnostics for one file: an uncovered range of consecutive coverable lines within one function
//! becomes one diagnostic naming the function, a branch that ran one way only one that says which
//! (`condition never false`), a `match` with arms never taken one that names them, and a failed
//! test an Error at its `fn` line.

use tower_lsp_server::ls_types::{
    Diagnostic, DiagnosticSeverity, DiagnosticTag, NumberOrString, Position, Range,
};

use crate::coverage::FunctionCoverage;
use crate::libtest::Outcome;
use crate::lsp::config::{Settings, Severity};
use crate::lsp::documents::Document;
use crate::lsp::store::{FileState, Tests};

pub const SOURCE: &str = "coverlay";

/// The innermost function whose lines contain `line`.
pub fn enclosing(functions: &[FunctionCoverage], line: u32) -> Option<&FunctionCoverage> {
    functions
        .iter()
        .filter(|f| f.line <= line && line <= f.end_line)
        .min_by_key(|f| f.end_line - f.line)
}

/// Last segment of a function's name: `Ledger::close_account` → `close_account`.
pub fn short_name(name: &str) -> &str {
    name.rsplit("::").next().unwrap_or(name)
}

fn range(text: Option<&Document>, first: u32, last: u32) -> Range {
    match text {
        Some(doc) => Range::new(
            Position::new(first - 1, doc.indent(first)),
            Position::new(last - 1, doc.line_end(last)),
        ),
        // Without the text: whole lines, up to the start of the next one.
        None => Range::new(Position::new(first - 1, 0), Position::new(last, 0)),
    }
}

/// One per branch of a covered line that ran one way only, and one per `match` that ran with arms
/// never taken, at the uncovered lines' severity (without their "unnecessary" fading: the line did
/// run).
fn branch_diagnostics(
    file: &FileState,
    text: Option<&Document>,
    settings: &Settings,
    diagnostics: &mut Vec<Diagnostic>,
) {
    let severity = match settings.severity {
        Severity::Hint => DiagnosticSeverity::HINT,
        Severity::Information => DiagnosticSeverity::INFORMATION,
        Severity::Warning => DiagnosticSeverity::WARNING,
        Severity::Off => return,
    };
    let coverage = &file.coverage;
    for branch in &coverage.branches {
        if file.is_stale(branch.line) {
            continue;
        }
        let Some(mut message) = branch.one_sided() else {
            continue;
        };
        let on_line = coverage.branches_on(branch.line).len();
        if on_line > 1 {
            message.push_str(&format!(
                " (branch {} of {on_line} on this line)",
                branch.index + 1
            ));
        }
        diagnostics.push(Diagnostic {
            range: range(text, branch.line, branch.line),
            severity: Some(severity),
            code: Some(NumberOrString::String("branch".into())),
            source: Some(SOURCE.into()),
            message,
            ..Diagnostic::default()
        });
    }
    for found in &coverage.matches {
        // An edited arm's line number may no longer be the arm's.
        if file.is_stale(found.line) || found.arms.iter().any(|a| file.is_stale(a.line)) {
            continue;
        }
        let Some(message) = found.never_taken() else {
            continue;
        };
        diagnostics.push(Diagnostic {
            range: range(text, found.line, found.line),
            severity: Some(severity),
            code: Some(NumberOrString::String("branch".into())),
            source: Some(SOURCE.into()),
            message,
            ..Diagnostic::default()
        });
    }
}

pub fn for_file(
    file: &FileState,
    tests: &Tests,
    text: Option<&Document>,
    settings: &Settings,
) -> Vec<Diagnostic> {
    let coverage = &file.coverage;
    let mut diagnostics = Vec::new();
    // Runs of uncovered, non-stale lines with no covered line between them, split where the
    // enclosing function changes.
    let mut run: Option<(u32, u32, Option<&FunctionCoverage>)> = None;
    let mut flush = |run: &mut Option<(u32, u32, Option<&FunctionCoverage>)>| {
        if let Some((first, last, function)) = run.take() {
            let message = match function {
                Some(f) => format!("not covered by any test (fn {})", short_name(&f.name)),
                None => "not covered by any test".to_owned(),
            };
            let (severity, tags) = match settings.severity {
                Severity::Hint => (
                    DiagnosticSeverity::HINT,
                    Some(vec![DiagnosticTag::UNNECESSARY]),
                ),
                Severity::Information => (DiagnosticSeverity::INFORMATION, None),
                Severity::Warning => (DiagnosticSeverity::WARNING, None),
                Severity::Off => return,
            };
            diagnostics.push(Diagnostic {
                range: range(text, first, last),
                severity: Some(severity),
                code: Some(NumberOrString::String("uncovered".into())),
                source: Some(SOURCE.into()),
                message,
                tags,
                ..Diagnostic::default()
            });
        }
    };
    for line in &coverage.lines {
        if line.hits > 0 || file.is_stale(line.line) {
            flush(&mut run);
            continue;
        }
        let function = enclosing(&coverage.functions, line.line);
        match &mut run {
            Some((_, last, f)) if f.map(|f| f.line) == function.map(|f| f.line) => {
                *last = line.line
            }
            _ => {
                flush(&mut run);
                run = Some((line.line, line.line, function));
            }
        }
    }
    flush(&mut run);
    branch_diagnostics(file, text, settings, &mut diagnostics);

    let located = tests
        .by_file
        .get(&coverage.path)
        .map_or(&[][..], Vec::as_slice);
    for &(line, index) in located {
        if file.is_stale(line) {
            continue;
        }
        let test = &tests.list[index];
        let what = match &test.outcome {
            Outcome::Failed => "failed".to_owned(),
            Outcome::TimedOut => "timed out".to_owned(),
            Outcome::Crashed { signal } => format!("crashed (signal {signal})"),
            Outcome::Passed | Outcome::Ignored => continue,
        };
        let mut message = format!("test {what}");
        if let Some(text) = test
            .message
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
        {
            message.push_str(": ");
            message.push_str(text);
        }
        diagnostics.push(Diagnostic {
            range: range(text, line, line),
            severity: Some(DiagnosticSeverity::ERROR),
            code: Some(NumberOrString::String("test-failed".into())),
            source: Some(SOURCE.into()),
            message,
            ..Diagnostic::default()
        });
    }
    diagnostics.sort_by_key(|d| (d.range.start.line, d.range.start.character));
    diagnostics
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coverage::test_data::line;
    use crate::coverage::{Coverage, FileCoverage, TestInfo};
    use crate::lsp::store::Shown;
    use std::path::Path;

    #[test]
    fn uncovered_runs_by_severity_and_none_when_off() {
        let line = |n: u32, hits: u64| line(n, &[], hits, false);
        let coverage = Coverage {
            files: vec![FileCoverage {
                path: "/w/src/lib.rs".into(),
                lines: vec![line(2, 1), line(3, 0), line(4, 0), line(6, 1), line(7, 0)],
                functions: Vec::new(),
                branches: Vec::new(),
                matches: Vec::new(),
            }],
            tests: vec![TestInfo {
                id: "k::t".into(),
                outcome: Outcome::Failed,
                duration_ms: 1,
                message: Some("boom".into()),
                location: Some(("/w/src/lib.rs".into(), 9)),
                attempts: 1,
            }],
            count_cap: 10,
        };
        let shown = Shown::new(1, coverage, Default::default(), None);
        let file = shown.file(Path::new("/w/src/lib.rs")).unwrap();
        let mut settings = Settings::default();
        let found = for_file(file, &shown.tests, None, &settings);
        let lines: Vec<(u32, u32)> = found
            .iter()
            .map(|d| (d.range.start.line, d.range.end.line))
            .collect();
        // Without the text, a range ends at the start of the line after it.
        assert_eq!(
            lines,
            [(2, 4), (6, 7), (8, 9)],
            "two uncovered runs and the failed test"
        );
        settings.severity = Severity::Off;
        let found = for_file(file, &shown.tests, None, &settings);
        assert_eq!(found.len(), 1, "the failed test stays");
        assert_eq!(found[0].severity, Some(DiagnosticSeverity::ERROR));
    }

    #[test]
    fn branches_that_ran_one_way_say_which_way_never_happened() {
        use crate::coverage::test_data::branch;
        use crate::coverage::Construct;
        let mut question = branch(4, &[(0, 0, 3)]);
        question.construct = Construct::Try;
        let mut unknown = branch(5, &[(0, 2, 0)]);
        unknown.oriented = false;
        let mut second = branch(2, &[(0, 1, 0)]);
        second.index = 1;
        let coverage = Coverage {
            files: vec![FileCoverage {
                path: "/w/src/lib.rs".into(),
                lines: [2, 3, 4, 5].map(|n| line(n, &[(0, 1)], 0, false)).to_vec(),
                functions: Vec::new(),
                branches: vec![
                    branch(2, &[(0, 1, 1)]),
                    second,
                    branch(3, &[(0, 0, 0)]),
                    question,
                    unknown,
                ],
                matches: vec![crate::coverage::test_data::match_of(
                    5,
                    &[(6, &[(0, 1)]), (7, &[])],
                )],
            }],
            tests: Vec::new(),
            count_cap: 10,
        };
        let shown = Shown::new(1, coverage, Default::default(), None);
        let file = shown.file(Path::new("/w/src/lib.rs")).unwrap();
        let settings = Settings {
            severity: Severity::Warning,
            ..Settings::default()
        };
        let found: Vec<(u32, String)> = for_file(file, &shown.tests, None, &settings)
            .into_iter()
            .map(|d| {
                assert_eq!(d.severity, Some(DiagnosticSeverity::WARNING));
                (d.range.start.line + 1, d.message)
            })
            .collect();
        assert_eq!(
            found,
            [
                (
                    2,
                    "condition never false (branch 2 of 2 on this line)".into()
                ),
                (4, "`?` never returned early".into()),
                (5, "condition was always true, or always false".into()),
                (5, "`match` arm at line 7 never taken".into()),
            ]
        );
    }
}
