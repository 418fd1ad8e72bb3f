//! Helpers for the analysis tests: indented fixtures, and a rendering of every line's kind.

use super::*;

/// Strips the first newline and the common indentation so fixtures can be indented.
pub(crate) fn dedent(text: &str) -> String {
    let text = text.strip_prefix('\n').unwrap_or(text);
    let indent = text
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| line.len() - line.trim_start().len())
        .min()
        .unwrap_or(0);
    let lines: Vec<&str> = text
        .lines()
        .map(|line| line.get(indent..).unwrap_or("").trim_end())
        .collect();
    lines.join("\n").trim_end().to_owned()
}

/// One line per source line: `-` None, `S` Start, `s` compiled-only Start, `C<owner>`.
pub(crate) fn render(analysis: &SourceAnalysis, source: &str) -> String {
    let lines: Vec<String> = source
        .lines()
        .zip(1..)
        .map(|(text, line)| {
            let tag = match analysis.kind(line) {
                LineKind::None => "-".to_owned(),
                LineKind::Start {
                    compiled_only: false,
                } => "S".to_owned(),
                LineKind::Start {
                    compiled_only: true,
                } => "s".to_owned(),
                LineKind::Continuation { owner } => format!("C{owner}"),
            };
            format!("{tag:<4}{text}").trim_end().to_owned()
        })
        .collect();
    lines.join("\n")
}

pub(crate) fn check(source: &str, expected: &str) -> SourceAnalysis {
    let source = dedent(source);
    let analysis = analyze(&source).expect("fixture parses");
    assert_eq!(render(&analysis, &source), dedent(expected));
    analysis
}

pub(crate) fn function(name: &str, line: u32, end_line: u32) -> FunctionInfo {
    FunctionInfo {
        name: name.to_owned(),
        line,
        end_line,
        is_test: false,
        compiled_only: false,
    }
}
