//! Cobertura XML (coverage-04.dtd), what GitLab's coverage visualisation, Jenkins and Azure
//! DevOps read: one package per workspace package, one class per source file, its functions as
//! methods, every coverable line with its hits and, on a line with branches, how many of their
//! sides and `match` arms ran (`condition-coverage`); branch rates are the share of those that ran.

use std::fmt::Write;
use std::path::Path;

use super::RunInfo;
use crate::coverage::{Coverage, FileCoverage, LineCoverage};

/// `line-rate`: covered over coverable, 1 when nothing is coverable.
fn rate(covered: usize, coverable: usize) -> String {
    if coverable == 0 {
        "1".to_owned()
    } else {
        format!("{:.4}", covered as f64 / coverable as f64)
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

fn covered(lines: &[&LineCoverage]) -> usize {
    lines.iter().filter(|l| l.hits > 0).count()
}

/// Branch sides (and `match` arms) that ran, and all, on `lines` of `file`.
fn sides(file: &FileCoverage, lines: &[&LineCoverage]) -> (usize, usize) {
    lines
        .iter()
        .map(|l| file.line_branch_sides(l.line))
        .fold((0, 0), |(run, all), (r, a)| (run + r, all + a))
}

/// One `<line>` element per line of `file`, each after `indent`.
fn write_lines<'a>(
    out: &mut String,
    indent: &str,
    file: &FileCoverage,
    lines: impl Iterator<Item = &'a LineCoverage>,
) {
    for line in lines {
        let (run, all) = file.line_branch_sides(line.line);
        if all == 0 {
            let _ = writeln!(
                out,
                r#"{indent}<line number="{}" hits="{}" branch="false"/>"#,
                line.line, line.hits
            );
            continue;
        }
        let _ = writeln!(
            out,
            r#"{indent}<line number="{}" hits="{}" branch="true" condition-coverage="{}% ({run}/{all})"/>"#,
            line.line,
            line.hits,
            run * 100 / all
        );
    }
}

/// The report; `timestamp` in milliseconds since the epoch, as Cobertura writes it.
pub fn render(coverage: &Coverage, workspace: &RunInfo, timestamp: u128) -> String {
    // Each file under the deepest package directory that holds it; others under the workspace.
    let package_of = |path: &Path| {
        workspace
            .packages
            .iter()
            .filter(|p| path.starts_with(&p.dir))
            .max_by_key(|p| p.dir.components().count())
    };
    let mut packages: Vec<(String, &Path, Vec<&FileCoverage>)> = Vec::new();
    for file in &coverage.files {
        let (name, dir) = match package_of(&file.path) {
            Some(p) => (p.name.clone(), p.dir.as_path()),
            None => (String::from("(workspace)"), workspace.root.as_path()),
        };
        match packages.iter_mut().find(|(n, _, _)| *n == name) {
            Some((_, _, files)) => files.push(file),
            None => packages.push((name, dir, vec![file])),
        }
    }
    packages.sort_by(|a, b| a.0.cmp(&b.0));

    let mut out = String::new();
    let all: Vec<&LineCoverage> = coverage.files.iter().flat_map(|f| &f.lines).collect();
    let (branches_run, branches_all) = coverage.branch_sides();
    let _ = writeln!(out, r#"<?xml version="1.0" ?>"#);
    let _ = writeln!(
        out,
        r#"<!DOCTYPE coverage SYSTEM "http://cobertura.sourceforge.net/xml/coverage-04.dtd">"#
    );
    let _ = writeln!(
        out,
        r#"<coverage line-rate="{}" branch-rate="{}" lines-covered="{}" lines-valid="{}" branches-covered="{branches_run}" branches-valid="{branches_all}" complexity="0" version="coverlay {}" timestamp="{timestamp}">"#,
        rate(covered(&all), all.len()),
        rate(branches_run, branches_all),
        covered(&all),
        all.len(),
        env!("CARGO_PKG_VERSION"),
    );
    let _ = writeln!(
        out,
        "  <sources>\n    <source>{}</source>\n  </sources>",
        escape(&workspace.root.display().to_string())
    );
    let _ = writeln!(out, "  <packages>");
    for (name, dir, files) in &packages {
        let lines: Vec<&LineCoverage> = files.iter().flat_map(|f| &f.lines).collect();
        let (run, all) = files
            .iter()
            .map(|f| f.branch_sides())
            .fold((0, 0), |(a, b), (c, d)| (a + c, b + d));
        let _ = writeln!(
            out,
            r#"    <package name="{}" line-rate="{}" branch-rate="{}" complexity="0">"#,
            escape(name),
            rate(covered(&lines), lines.len()),
            rate(run, all)
        );
        let _ = writeln!(out, "      <classes>");
        for file in files {
            let relative = |base: &Path| {
                file.path
                    .strip_prefix(base)
                    .unwrap_or(&file.path)
                    .display()
                    .to_string()
            };
            let lines: Vec<&LineCoverage> = file.lines.iter().collect();
            let (run, all) = sides(file, &lines);
            let _ = writeln!(
                out,
                r#"        <class name="{}" filename="{}" line-rate="{}" branch-rate="{}" complexity="0">"#,
                escape(&relative(dir)),
                escape(&relative(&workspace.root)),
                rate(covered(&lines), lines.len()),
                rate(run, all)
            );
            let _ = writeln!(out, "          <methods>");
            for function in &file.functions {
                let body: Vec<&LineCoverage> = file
                    .lines
                    .iter()
                    .filter(|l| function.line <= l.line && l.line <= function.end_line)
                    .collect();
                let (run, all) = sides(file, &body);
                let _ = writeln!(
                    out,
                    r#"            <method name="{}" signature="" line-rate="{}" branch-rate="{}" complexity="0">"#,
                    escape(&function.name),
                    rate(covered(&body), body.len()),
                    rate(run, all)
                );
                let _ = writeln!(out, "              <lines>");
                write_lines(&mut out, "                ", file, body.iter().copied());
                let _ = writeln!(out, "              </lines>\n            </method>");
            }
            let _ = writeln!(out, "          </methods>\n          <lines>");
            write_lines(&mut out, "            ", file, file.lines.iter());
            let _ = writeln!(out, "          </lines>\n        </class>");
        }
        let _ = writeln!(out, "      </classes>\n    </package>");
    }
    let _ = writeln!(out, "  </packages>\n</coverage>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coverage::test_data::{branch, line, match_of};
    use crate::coverage::{FunctionCoverage, MatchCoverage};
    use crate::report::PackageDir;

    #[test]
    fn packages_classes_methods_and_rates() {
        let line = |n: u32, hits: u64| line(n, &[], hits, false);
        let coverage = Coverage {
            files: vec![FileCoverage {
                path: "/w/core/src/lib.rs".into(),
                lines: vec![line(2, 3), line(3, 0), line(7, 1)],
                functions: vec![FunctionCoverage {
                    name: "a<&T>".into(),
                    line: 2,
                    end_line: 4,
                    hits: 3,
                    is_test: false,
                }],
                branches: vec![branch(2, &[(0, 3, 0)]), branch(7, &[(0, 1, 1)])],
                // Line 7's `match`: one arm of three taken.
                matches: vec![MatchCoverage {
                    index: 1,
                    ..match_of(7, &[(8, &[(0, 2)]), (9, &[]), (10, &[])])
                }],
            }],
            tests: Vec::new(),
            count_cap: 10,
        };
        let workspace = RunInfo {
            root: "/w".into(),
            packages: vec![PackageDir {
                name: "core".into(),
                dir: "/w/core".into(),
            }],
            executables: Vec::new(),
        };
        let xml = render(&coverage, &workspace, 42);
        assert!(
            xml.contains(
                r#"<coverage line-rate="0.6667" branch-rate="0.5714" lines-covered="2" lines-valid="3" branches-covered="4" branches-valid="7""#
            ),
            "{xml}"
        );
        assert!(
            xml.contains(r#"<package name="core" line-rate="0.6667""#),
            "{xml}"
        );
        assert!(
            xml.contains(
                r#"<class name="src/lib.rs" filename="core/src/lib.rs" line-rate="0.6667""#
            ),
            "{xml}"
        );
        assert!(
            xml.contains(
                r#"<method name="a&lt;&amp;T&gt;" signature="" line-rate="0.5000" branch-rate="0.5000""#
            ),
            "{xml}"
        );
        assert!(
            xml.contains(r#"<line number="3" hits="0" branch="false"/>"#),
            "{xml}"
        );
        assert!(
            xml.contains(
                r#"<line number="2" hits="3" branch="true" condition-coverage="50% (1/2)"/>"#
            ),
            "{xml}"
        );
        assert!(
            xml.contains(
                r#"<line number="7" hits="1" branch="true" condition-coverage="60% (3/5)"/>"#
            ),
            "{xml}"
        );
        assert!(xml.contains("<source>/w</source>"));
    }
}
