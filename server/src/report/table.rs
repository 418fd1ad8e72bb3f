//! The per-file summary printed at the end of `coverlay run`: paths relative to the workspace,
//! covered and coverable lines, percent, and the total.

use std::fmt::Write;
use std::path::Path;

use crate::coverage::{percent, Coverage};

pub fn render(coverage: &Coverage, workspace_root: &Path) -> String {
    let rows: Vec<(String, usize, usize)> = coverage
        .files
        .iter()
        .map(|f| {
            let path = f.path.strip_prefix(workspace_root).unwrap_or(&f.path);
            (path.display().to_string(), f.covered(), f.coverable())
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
        "{:<width$}  {:>7}  {:>9}  {:>7}",
        "File", "Covered", "Coverable", "Percent"
    );
    for (path, covered, coverable) in &rows {
        let pct = percent(*covered, *coverable);
        let _ = writeln!(
            out,
            "{path:<width$}  {covered:>7}  {coverable:>9}  {pct:>6.2}%"
        );
    }
    let (covered, coverable) = (coverage.covered(), coverage.coverable());
    let pct = percent(covered, coverable);
    let _ = writeln!(
        out,
        "{:<width$}  {covered:>7}  {coverable:>9}  {pct:>6.2}%",
        "Total"
    );
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
        };
        let coverage = Coverage {
            files: vec![file("/w/src/lib.rs", &[1, 0, 3]), file("/w/src/a.rs", &[1])],
            tests: Vec::new(),
            count_cap: 10,
        };
        assert_eq!(
            render(&coverage, Path::new("/w")),
            "File        Covered  Coverable  Percent\n\
             src/lib.rs        2          3   66.67%\n\
             src/a.rs          1          1  100.00%\n\
             Total             3          4   75.00%\n"
        );
    }
}
