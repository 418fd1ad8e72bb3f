//! The per-file summary printed at the end of `coverlay run`: paths relative to the workspace,
//! covered and coverable lines, percent, branch sides run, the uncovered lines as ranges, and the total.

use std::fmt::Write;
use std::path::Path;

use crate::coverage::{percent, Coverage};

/// Longest "Missing" cell; a longer list ends in `…` at a range boundary.
const MISSING_WIDTH: usize = 40;

/// `colour`: ANSI colours for a terminal (percentages by level, missing lines in red).
pub fn render(coverage: &Coverage, workspace_root: &Path, colour: bool) -> String {
    let paint = |code: &str, text: String| {
        if colour && !text.trim().is_empty() {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text
        }
    };
    let level = |pct: f64| match pct {
        p if p >= 80.0 => "32",
        p if p >= 50.0 => "33",
        _ => "31",
    };
    // Without branches in the whole run (`--no-branches`) the column would only say so on each row.
    let with_branches = coverage.branch_sides().1 > 0;
    let branches = |(run, all): (usize, usize)| match (with_branches, all) {
        (false, _) => String::new(),
        (true, 0) => format!("  {:>8}", "-"),
        (true, _) => format!("  {:>8}", format!("{run}/{all}")),
    };
    let rows: Vec<(String, usize, usize, String, String)> = coverage
        .files
        .iter()
        .map(|f| {
            let path = f.path.strip_prefix(workspace_root).unwrap_or(&f.path);
            let uncovered: Vec<u32> = f
                .lines
                .iter()
                .filter(|l| l.hits == 0)
                .map(|l| l.line)
                .collect();
            (
                path.display().to_string(),
                f.covered(),
                f.coverable(),
                branches(f.branch_sides()),
                missing(&uncovered, MISSING_WIDTH),
            )
        })
        .collect();
    let width = rows
        .iter()
        .map(|r| r.0.len())
        .chain(["File".len()])
        .max()
        .unwrap_or(4);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<width$}  {:>7}  {:>9}  {:>7}{}  Missing",
        "File",
        "Covered",
        "Coverable",
        "Percent",
        if with_branches { "  Branches" } else { "" }
    );
    for (path, covered, coverable, branches, missing) in &rows {
        let pct = percent(*covered, *coverable);
        let shown = paint(level(pct), format!("{pct:>6.2}%"));
        let line = format!(
            "{path:<width$}  {covered:>7}  {coverable:>9}  {shown}{branches}  {}",
            paint("31", missing.clone())
        );
        let _ = writeln!(out, "{}", line.trim_end());
    }
    let (covered, coverable) = (coverage.covered(), coverage.coverable());
    let pct = percent(covered, coverable);
    let shown = paint(level(pct), format!("{pct:>6.2}%"));
    let total = branches(coverage.branch_sides());
    let _ = writeln!(
        out,
        "{:<width$}  {covered:>7}  {coverable:>9}  {shown}{total}",
        "Total"
    );
    out
}

/// Sorted line numbers as ranges of consecutive lines (`12-14, 20`), cut after `width`
/// characters at a range boundary with `, …`.
pub fn missing(lines: &[u32], width: usize) -> String {
    let mut ranges: Vec<(u32, u32)> = Vec::new();
    for &line in lines {
        match ranges.last_mut() {
            Some((_, end)) if *end + 1 == line => *end = line,
            _ => ranges.push((line, line)),
        }
    }
    let mut out = String::new();
    for (i, &(start, end)) in ranges.iter().enumerate() {
        let range = if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        };
        let separator = if i == 0 { "" } else { ", " };
        if out.len() + separator.len() + range.len() > width && i > 0 {
            out.push_str(", …");
            break;
        }
        out.push_str(separator);
        out.push_str(&range);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coverage::{FileCoverage, LineCoverage};

    #[test]
    fn relative_paths_and_a_total_row() {
        let file = |path: &str, hits: &[u64]| FileCoverage {
            path: path.into(),
            lines: hits
                .iter()
                .enumerate()
                .map(|(i, &hits)| LineCoverage {
                    line: i as u32 + 1,
                    hits,
                    capped: false,
                    tests: Vec::new(),
                })
                .collect(),
            functions: Vec::new(),
            branches: Vec::new(),
            matches: Vec::new(),
        };
        let coverage = Coverage {
            files: vec![file("/w/src/lib.rs", &[1, 0, 3]), file("/w/src/a.rs", &[1])],
            tests: Vec::new(),
            count_cap: 10,
        };
        assert_eq!(
            render(&coverage, Path::new("/w"), false),
            "File        Covered  Coverable  Percent  Missing\n\
             src/lib.rs        2          3   66.67%  2\n\
             src/a.rs          1          1  100.00%\n\
             Total             3          4   75.00%\n"
        );
    }

    #[test]
    fn a_branch_column_when_the_run_has_branches() {
        use crate::coverage::test_data::{branch, file, line};
        let mut lib = file("/w/src/lib.rs", vec![line(2, &[(0, 1)], 0, false)]);
        lib.branches = vec![branch(2, &[(0, 1, 0)])];
        let coverage = Coverage {
            files: vec![lib, file("/w/src/a.rs", vec![line(1, &[], 0, false)])],
            tests: Vec::new(),
            count_cap: 10,
        };
        assert_eq!(
            render(&coverage, Path::new("/w"), false),
            "File        Covered  Coverable  Percent  Branches  Missing\n\
             src/lib.rs        1          1  100.00%       1/2\n\
             src/a.rs          0          1    0.00%         -  1\n\
             Total             1          2   50.00%       1/2\n"
        );
    }

    #[test]
    fn colours_only_when_asked() {
        let coverage = Coverage {
            files: vec![FileCoverage {
                path: "/w/a.rs".into(),
                lines: vec![LineCoverage {
                    line: 3,
                    hits: 0,
                    capped: false,
                    tests: Vec::new(),
                }],
                functions: Vec::new(),
                branches: Vec::new(),
                matches: Vec::new(),
            }],
            tests: Vec::new(),
            count_cap: 10,
        };
        let coloured = render(&coverage, Path::new("/w"), true);
        assert!(coloured.contains("\x1b[31m  0.00%\x1b[0m"), "{coloured:?}");
        assert!(coloured.contains("\x1b[31m3\x1b[0m"), "{coloured:?}");
        assert!(!render(&coverage, Path::new("/w"), false).contains('\x1b'));
    }

    #[test]
    fn missing_lines_as_ranges_cut_at_a_range() {
        assert_eq!(missing(&[3, 4, 5, 9, 12, 13], 40), "3-5, 9, 12-13");
        assert_eq!(missing(&[], 40), "");
        let many: Vec<u32> = (1..200).step_by(2).collect();
        let cut = missing(&many, 20);
        assert_eq!(cut, "1, 3, 5, 7, 9, 11, …");
    }
}
