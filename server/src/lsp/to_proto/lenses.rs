//! Code lenses: over each function its line and branch coverage and how many tests reach it
//! (`12/14 lines · 3/4 branches · 3 tests`, or `not covered`); over each `#[test]` its last outcome
//! and duration, with a command that reruns it.

use serde_json::json;
use tower_lsp_server::ls_types::{CodeLens, Command, Position, Range};

use crate::coverage::FunctionSummary;
use crate::libtest::Outcome;
use crate::lsp::handlers::commands::{RERUN_ALL, RERUN_TEST};
use crate::lsp::store::{FileState, Tests};

fn plural(n: usize, word: &str) -> String {
    format!("{n} {word}{}", if n == 1 { "" } else { "s" })
}

/// `12/14 lines · 3/4 branches · 3 tests` (branches only when the function has some), or
/// `not covered`; with the tests that ran it, as indexes.
pub fn function_title(summary: &FunctionSummary) -> (String, Vec<String>) {
    if summary.covered == 0 {
        return ("not covered".into(), Vec::new());
    }
    let mut title = format!("{}/{} lines", summary.covered, summary.coverable);
    let (run, all) = summary.branch_sides;
    if all > 0 {
        title.push_str(&format!(" · {run}/{all} branches"));
    }
    if !summary.tests.is_empty() {
        title.push_str(" · ");
        title.push_str(&plural(summary.tests.len(), "test"));
    }
    let tests = summary.tests.iter().map(|i| i.to_string()).collect();
    (title, tests)
}

pub fn test_title(outcome: &Outcome, duration_ms: u64) -> String {
    let outcome = match outcome {
        Outcome::Passed => "✓ passed".to_owned(),
        Outcome::Failed => "✗ failed".to_owned(),
        Outcome::Ignored => "ignored".to_owned(),
        Outcome::TimedOut => "✗ timed out".to_owned(),
        Outcome::Crashed { signal } => format!("✗ crashed (signal {signal})"),
    };
    format!("{outcome} · {duration_ms} ms · ▶ rerun")
}

pub fn for_file(file: &FileState, tests: &Tests) -> Vec<CodeLens> {
    let path = &file.coverage.path;
    file.coverage
        .functions
        .iter()
        .filter(|f| !file.is_stale(f.line))
        .map(|function| {
            let range = Range::new(
                Position::new(function.line - 1, 0),
                Position::new(function.line - 1, 0),
            );
            let test = function
                .is_test
                .then(|| tests.at.get(&(path.clone(), function.line)))
                .flatten()
                .map(|&i| &tests.list[i]);
            let command = match test {
                Some(test) => Command {
                    title: test_title(&test.outcome, test.duration_ms),
                    command: RERUN_TEST.into(),
                    arguments: Some(vec![json!(test.id)]),
                },
                None => {
                    let (title, covering) =
                        function_title(&file.coverage.function_summary(function));
                    let ids: Vec<_> = covering
                        .iter()
                        .filter_map(|i| i.parse::<usize>().ok())
                        .filter_map(|i| tests.list.get(i))
                        .map(|t| json!(t.id))
                        .collect();
                    if ids.is_empty() {
                        Command {
                            title,
                            command: RERUN_ALL.into(),
                            arguments: None,
                        }
                    } else {
                        Command {
                            title,
                            command: RERUN_TEST.into(),
                            arguments: Some(ids),
                        }
                    }
                }
            };
            CodeLens {
                range,
                command: Some(command),
                data: None,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(covered: usize, branch_sides: (usize, usize), tests: &[u32]) -> FunctionSummary {
        FunctionSummary {
            covered,
            coverable: 4,
            branch_sides,
            tests: tests.iter().copied().collect(),
        }
    }

    #[test]
    fn function_titles_name_lines_branches_when_any_and_tests() {
        let (title, tests) = function_title(&summary(3, (0, 0), &[0, 2, 4]));
        assert_eq!(title, "3/4 lines · 3 tests");
        assert_eq!(tests, ["0", "2", "4"]);
        assert_eq!(
            function_title(&summary(3, (3, 4), &[1])).0,
            "3/4 lines · 3/4 branches · 1 test"
        );
        assert_eq!(function_title(&summary(0, (0, 2), &[])).0, "not covered");
    }
}
