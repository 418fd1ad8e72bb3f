//! Code lenses: over each function its line coverage and how many tests reach it
//! (`12/14 lines · 3 tests`, or `not covered`); over each `#[test]` its last outcome and duration,
//! with a command that reruns it.

use std::collections::BTreeSet;

use serde_json::json;
use tower_lsp_server::ls_types::{CodeLens, Command, Position, Range};

use crate::coverage::FunctionCoverage;
use crate::libtest::Outcome;
use crate::lsp::handlers::commands::{RERUN_ALL, RERUN_TEST};
use crate::lsp::store::{FileState, Tests};

fn plural(n: usize, word: &str) -> String {
    format!("{n} {word}{}", if n == 1 { "" } else { "s" })
}

pub fn function_title(file: &FileState, function: &FunctionCoverage) -> (String, Vec<String>) {
    let lines = &file.coverage.lines;
    let start = lines.partition_point(|l| l.line < function.line);
    let body: Vec<_> = lines[start..]
        .iter()
        .take_while(|l| l.line <= function.end_line)
        .collect();
    let covered = body.iter().filter(|l| l.hits > 0).count();
    let tests: BTreeSet<u32> = body
        .iter()
        .flat_map(|l| l.tests.iter().map(|t| t.test))
        .collect();
    if covered == 0 {
        return ("not covered".into(), Vec::new());
    }
    let mut title = format!("{covered}/{} lines", body.len());
    if !tests.is_empty() {
        title.push_str(" · ");
        title.push_str(&plural(tests.len(), "test"));
    }
    (title, tests.into_iter().map(|i| i.to_string()).collect())
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
                    let (title, covering) = function_title(file, function);
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
    use crate::coverage::{FileCoverage, LineCoverage, TestHits};

    fn line(line: u32, hits: u64, tests: &[u32]) -> LineCoverage {
        LineCoverage {
            line,
            hits,
            capped: false,
            tests: tests
                .iter()
                .map(|&test| TestHits { test, hits: 1 })
                .collect(),
        }
    }

    #[test]
    fn function_lenses_count_the_distinct_tests_of_their_lines() {
        let function = FunctionCoverage {
            name: "f".into(),
            line: 2,
            end_line: 5,
            hits: 3,
            is_test: false,
        };
        let file = FileState {
            coverage: FileCoverage {
                path: "/w/src/lib.rs".into(),
                lines: vec![
                    line(1, 9, &[7]),
                    line(2, 3, &[0, 2]),
                    line(3, 3, &[2]),
                    line(4, 0, &[]),
                    line(5, 1, &[4]),
                    line(6, 9, &[8]),
                ],
                functions: vec![function.clone()],
                branches: Vec::new(),
            },
            stale: Default::default(),
        };
        let (title, tests) = function_title(&file, &function);
        assert_eq!(title, "3/4 lines · 3 tests");
        assert_eq!(tests, ["0", "2", "4"]);

        let uncovered = FunctionCoverage {
            line: 4,
            end_line: 4,
            ..function
        };
        assert_eq!(function_title(&file, &uncovered).0, "not covered");
    }
}
