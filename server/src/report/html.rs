//! The static HTML report (`--html DIR`): an index of files with sortable coverage bars (and branch
//! sides run, when the run has branches) and one page
//! per source file with each line's hits, its colour (partial: a branch side never ran) and the
//! tests that ran it, all served offline.

use std::fmt::Write as _;
use std::path::Path;

use syntect::html::{line_tokens_to_classed_spans, ClassStyle};
use syntect::parsing::{ParseState, ScopeStack, SyntaxSet};
use syntect::util::LinesWithEndings;

use crate::coverage::{
    percent, BranchCoverage, Coverage, FileCoverage, LineCoverage, MatchCoverage,
};
use crate::libtest::Outcome;

const STYLESHEET: &str = include_str!("html.css");

/// Syntax classes carry this prefix so that no scope name can collide with the report's classes.
const SYNTAX_CLASSES: ClassStyle = ClassStyle::SpacedPrefixed { prefix: "s-" };

/// Sorts the index by a clicked column and keeps the order in the URL (`#sort=-percent`), so that
/// a sorted view can be linked to and survives going back from a file page.
const SORT_SCRIPT: &str = r#"
const table = document.getElementById('files');
const headers = Array.from(table.tHead.rows[0].cells);
function sortBy(key) {
  const descending = key.startsWith('-');
  const name = descending ? key.slice(1) : key;
  const column = headers.findIndex(th => th.dataset.key === name);
  if (column < 0) return;
  const numeric = headers[column].dataset.type === 'num';
  const value = row => row.cells[column].dataset.sort ?? row.cells[column].textContent;
  const body = table.tBodies[0];
  const rows = Array.from(body.rows).sort((a, b) => {
    const order = numeric ? value(a) - value(b) : value(a).localeCompare(value(b));
    return descending ? -order : order;
  });
  body.append(...rows);
  headers.forEach(th => th.removeAttribute('aria-sort'));
  headers[column].setAttribute('aria-sort', descending ? 'descending' : 'ascending');
}
headers.forEach(th => th.querySelector('button').addEventListener('click', () => {
  const key = (th.getAttribute('aria-sort') === 'ascending' ? '-' : '') + th.dataset.key;
  sortBy(key);
  history.replaceState(null, '', '#sort=' + key);
}));
const initial = location.hash.match(/^#sort=(-?\w+)$/);
if (initial) sortBy(initial[1]);
"#;

/// Writes `index.html`, `style.css` and a page per file into `dir` (created if missing). Paths are
/// shown relative to `root`. A source file that cannot be read gets a page that says so.
pub fn write(coverage: &Coverage, root: &Path, dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("style.css"), STYLESHEET)?;
    let pages: Vec<Page> = coverage
        .files
        .iter()
        .enumerate()
        .map(|(index, file)| {
            let relative = file
                .path
                .strip_prefix(root)
                .unwrap_or(&file.path)
                .display()
                .to_string();
            Page {
                name: page_name(index, &relative),
                relative,
                file,
            }
        })
        .collect();
    let syntaxes = SyntaxSet::load_defaults_newlines();
    for page in &pages {
        let source = std::fs::read(&page.file.path)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned());
        let html = render_page(coverage, page, source, &syntaxes);
        std::fs::write(dir.join(&page.name), html)?;
    }
    std::fs::write(dir.join("index.html"), render_index(coverage, root, &pages))
}

struct Page<'a> {
    /// The page's file name in the report directory.
    name: String,
    relative: String,
    file: &'a FileCoverage,
}

/// Unique by the file's position, readable by its path; only `[A-Za-z0-9._-]`, so that no path
/// (`../`, `:` or a case-insensitive file system) can put a page outside the directory or on
/// another's, and short enough for any file system (the path's end names the file best).
fn page_name(index: usize, relative: &str) -> String {
    let safe: String = relative
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '-' | '_' => c,
            _ => '_',
        })
        .collect();
    let tail = &safe[safe.len().saturating_sub(PAGE_NAME_PATH_CHARS)..];
    format!("{index}-{tail}.html")
}

const PAGE_NAME_PATH_CHARS: usize = 120;

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// Green from 80 %, yellow from 50 %, red below, as the terminal table colours them.
fn level(pct: f64) -> &'static str {
    match pct {
        p if p >= 80.0 => "high",
        p if p >= 50.0 => "medium",
        _ => "low",
    }
}

fn head(out: &mut String, title: &str) {
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<link rel=\"stylesheet\" href=\"style.css\">\n</head>\n<body>\n",
        escape(title)
    );
}

fn outcome_text(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Passed => "passed".into(),
        Outcome::Failed => "failed".into(),
        Outcome::Ignored => "ignored".into(),
        Outcome::TimedOut => "timed out".into(),
        Outcome::Crashed { signal } => format!("crashed (signal {signal})"),
    }
}

/// The percent cell: its number for sorting, the bar for the eye.
fn percent_cell(covered: usize, coverable: usize) -> String {
    let pct = percent(covered, coverable);
    format!(
        "<td class=\"num\" data-sort=\"{pct:.4}\"><span class=\"bar {}\"><span style=\"width:{pct:.2}%\">\
         </span></span><span class=\"pct\">{pct:.2}&nbsp;%</span></td>",
        level(pct)
    )
}

/// The branches cell: sides run of all sides, sorted by their share (a file without branches
/// last when descending); nothing when the run has no branches (`--no-branches`).
fn branches_cell(with_branches: bool, (run, all): (usize, usize)) -> String {
    match (with_branches, all) {
        (false, _) => String::new(),
        (true, 0) => "<td class=\"num\" data-sort=\"-1\">-</td>".into(),
        (true, _) => format!(
            "<td class=\"num\" data-sort=\"{:.4}\">{run}/{all}</td>",
            percent(run, all)
        ),
    }
}

fn render_index(coverage: &Coverage, root: &Path, pages: &[Page]) -> String {
    let mut out = String::new();
    head(&mut out, "Coverage report");
    let (covered, coverable) = (coverage.covered(), coverage.coverable());
    let (branches_run, branches_all) = coverage.branch_sides();
    let with_branches = branches_all > 0;
    let branch_summary = if with_branches {
        format!(
            " {branches_run} of {branches_all} branch sides ran ({:.2}&nbsp;%).",
            percent(branches_run, branches_all)
        )
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "<h1>Coverage of {}</h1>\n<p class=\"summary\">{covered} of {coverable} lines covered \
         ({:.2}&nbsp;%) in {} files.{branch_summary}</p>",
        escape(&root.display().to_string()),
        percent(covered, coverable),
        pages.len()
    );
    out.push_str(
        "<table id=\"files\" class=\"index\">\n<thead><tr>\
         <th data-key=\"file\" data-type=\"text\"><button type=\"button\">File</button></th>\
         <th data-key=\"covered\" data-type=\"num\"><button type=\"button\">Covered</button></th>\
         <th data-key=\"missed\" data-type=\"num\"><button type=\"button\">Missed</button></th>\
         <th data-key=\"coverable\" data-type=\"num\"><button type=\"button\">Coverable</button></th>\
         <th data-key=\"percent\" data-type=\"num\"><button type=\"button\">Percent</button></th>",
    );
    if with_branches {
        out.push_str(
            "<th data-key=\"branches\" data-type=\"num\"><button type=\"button\">Branches</button></th>",
        );
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    for page in pages {
        let (covered, coverable) = (page.file.covered(), page.file.coverable());
        let (run, all) = page.file.branch_sides();
        let branch_data = if with_branches {
            format!(" data-branches-hit=\"{run}\" data-branches-found=\"{all}\"")
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "<tr data-path=\"{path}\" data-covered=\"{covered}\" data-coverable=\"{coverable}\"{branch_data}>\
             <td><a href=\"{name}\">{path}</a></td><td class=\"num\">{covered}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{coverable}</td>{}{}</tr>",
            coverable - covered,
            percent_cell(covered, coverable),
            branches_cell(with_branches, (run, all)),
            path = escape(&page.relative),
            name = escape(&page.name),
        );
    }
    let _ = writeln!(
        out,
        "</tbody>\n<tfoot><tr class=\"total\"><td>Total</td><td class=\"num\">{covered}</td>\
         <td class=\"num\">{}</td><td class=\"num\">{coverable}</td>{}{}</tr></tfoot>\n</table>",
        coverable - covered,
        percent_cell(covered, coverable),
        branches_cell(with_branches, (branches_run, branches_all))
    );
    render_tests(&mut out, coverage, pages);
    let _ = write!(out, "<script>{SORT_SCRIPT}</script>\n</body>\n</html>\n");
    out
}

/// The run's tests: counts by outcome, then each test with a link to its function when its file
/// has a page.
fn render_tests(out: &mut String, coverage: &Coverage, pages: &[Page]) {
    if coverage.tests.is_empty() {
        return;
    }
    let mut counts: Vec<(String, usize)> = Vec::new();
    for test in &coverage.tests {
        let text = match test.outcome {
            Outcome::Crashed { .. } => "crashed".to_owned(),
            ref outcome => outcome_text(outcome),
        };
        match counts.iter_mut().find(|(t, _)| *t == text) {
            Some((_, n)) => *n += 1,
            None => counts.push((text, 1)),
        }
    }
    let counts: Vec<String> = counts.iter().map(|(t, n)| format!("{n} {t}")).collect();
    let _ = writeln!(
        out,
        "<details class=\"tests\"><summary>Tests: {}</summary>\n<table class=\"tests\">\n\
         <thead><tr><th>Test</th><th>Outcome</th><th>Time</th></tr></thead>\n<tbody>",
        counts.join(", ")
    );
    for test in &coverage.tests {
        let link = test.location.as_ref().and_then(|(path, line)| {
            let page = pages.iter().find(|p| p.file.path == *path)?;
            Some(format!("{}#L{line}", page.name))
        });
        let id = escape(&test.id);
        let name = match link {
            Some(href) => format!("<a href=\"{}\">{id}</a>", escape(&href)),
            None => id,
        };
        let message = test
            .message
            .as_deref()
            .map(|m| format!("<pre>{}</pre>", escape(m)))
            .unwrap_or_default();
        let outcome = outcome_text(&test.outcome);
        let _ = writeln!(
            out,
            "<tr class=\"{}\"><td>{name}{message}</td><td>{outcome}</td>\
             <td class=\"num\">{}&nbsp;ms</td></tr>",
            if test.outcome == Outcome::Passed {
                "passed"
            } else {
                "not-passed"
            },
            test.duration_ms
        );
    }
    out.push_str("</tbody>\n</table>\n</details>\n");
}

fn render_page(
    coverage: &Coverage,
    page: &Page,
    source: std::io::Result<String>,
    syntaxes: &SyntaxSet,
) -> String {
    let file = page.file;
    let mut out = String::new();
    head(&mut out, &page.relative);
    let (covered, coverable) = (file.covered(), file.coverable());
    let _ = writeln!(
        out,
        "<nav><a href=\"index.html\">← All files</a></nav>\n<h1>{}</h1>\n<p class=\"summary\">\
         {covered} of {coverable} lines covered ({:.2}&nbsp;%).</p>",
        escape(&page.relative),
        percent(covered, coverable)
    );
    let lines = match source {
        Ok(text) => highlight(&text, &file.path, syntaxes),
        Err(error) => {
            let _ = writeln!(
                out,
                "<p class=\"unreadable\">The source could not be read ({}: {}); its coverable \
                 lines are listed without it.</p>",
                escape(&file.path.display().to_string()),
                escape(&error.to_string())
            );
            Vec::new()
        }
    };
    render_functions(&mut out, file);
    out.push_str("<table class=\"source\">\n<tbody>\n");
    // A source read after the run can be shorter than the coverage says; its lines still show.
    let last = file.lines.last().map_or(0, |l| l.line as usize);
    for number in 1..=lines.len().max(last) {
        let code = lines.get(number - 1).map_or("", String::as_str);
        let line = file
            .lines
            .binary_search_by_key(&number, |l| l.line as usize)
            .ok()
            .map(|i| &file.lines[i]);
        if lines.is_empty() && line.is_none() {
            continue;
        }
        let number_u32 = number as u32;
        let branches = (file.branches_on(number_u32), file.matches_on(number_u32));
        row(&mut out, number, code, line, branches, coverage);
    }
    out.push_str("</tbody>\n</table>\n");
    out.push_str("</body>\n</html>\n");
    out
}

fn render_functions(out: &mut String, file: &FileCoverage) {
    if file.functions.is_empty() {
        return;
    }
    let run = file.functions.iter().filter(|f| f.hits > 0).count();
    let _ = writeln!(
        out,
        "<details class=\"functions\"><summary>Functions: {run} of {} run</summary>\n\
         <table>\n<tbody>",
        file.functions.len()
    );
    for function in &file.functions {
        let _ = writeln!(
            out,
            "<tr class=\"{}\"><td><a href=\"#L{}\">{}</a>{}</td><td class=\"num\">{}</td></tr>",
            if function.hits > 0 { "hit" } else { "miss" },
            function.line,
            escape(&function.name),
            if function.is_test {
                " <span class=\"tag\">test</span>"
            } else {
                ""
            },
            function.hits
        );
    }
    out.push_str("</tbody>\n</table>\n</details>\n");
}

/// One source line: `class` and `data-hits` only on coverable lines; a covered line's count opens
/// the list of the tests that ran it, each with its own count. A line with branches says how many
/// of their sides (and `match` arms) ran (`data-branches="1/2"`, class `partial` when not all).
fn row(
    out: &mut String,
    number: usize,
    code: &str,
    line: Option<&LineCoverage>,
    (branches, matches): (&[BranchCoverage], &[MatchCoverage]),
    coverage: &Coverage,
) {
    let at_least = if line.is_some_and(|l| l.capped) {
        "≥"
    } else {
        ""
    };
    let (attributes, hits) = match line {
        None => (String::new(), String::new()),
        Some(l) if l.hits == 0 => (" class=\"miss\" data-hits=\"0\"".to_owned(), "0".to_owned()),
        Some(l) if l.tests.is_empty() => (
            format!(" class=\"hit\" data-hits=\"{}\"", l.hits),
            format!("{at_least}{}", l.hits),
        ),
        Some(l) => {
            let mut items = String::new();
            let mut titles = Vec::new();
            for t in &l.tests {
                let id = coverage
                    .tests
                    .get(t.test as usize)
                    .map_or("(unknown test)", |test| test.id.as_str());
                titles.push(format!("{id}: {at_least}{}", t.hits));
                let _ = write!(
                    items,
                    "<li data-test=\"{id}\" data-hits=\"{hits}\">{id} <span class=\"count\">\
                     {at_least}{hits}×</span></li>",
                    id = escape(id),
                    hits = t.hits
                );
            }
            (
                format!(" class=\"hit\" data-hits=\"{}\"", l.hits),
                format!(
                    "<details><summary title=\"{}\">{at_least}{}</summary><ul class=\"tests\">\
                     {items}</ul></details>",
                    escape(&titles.join("\n")).replace('\n', "&#10;"),
                    l.hits
                ),
            )
        }
    };
    let (mut attributes, mut hits) = (attributes, hits);
    if line.is_some_and(|l| l.hits > 0) && (!branches.is_empty() || !matches.is_empty()) {
        let (run, all) = crate::coverage::sides(branches, matches);
        if run < all {
            attributes = attributes.replacen("class=\"hit\"", "class=\"hit partial\"", 1);
        }
        let sides: Vec<String> = branches
            .iter()
            .map(|b| {
                let what = b.construct.describe();
                match b.one_sided() {
                    Some(never) => never,
                    // Estimates (int3, first hits): no verdict on a side counted 0.
                    None if b.capped => format!("{what}: ≈{} and ≈{}", b.taken, b.not_taken),
                    None if b.sides_run() == 0 => format!("{what}: never ran"),
                    None => format!("{what}: both ways ({} and {})", b.taken, b.not_taken),
                }
            })
            .chain(
                matches
                    .iter()
                    .map(|m| match (m.never_taken(), m.arms_run()) {
                        (Some(never), _) => never,
                        (None, 0) => "`match`: never ran".to_owned(),
                        (None, _) => format!("`match`: all {} arms taken", m.arms.len()),
                    }),
            )
            .collect();
        let _ = write!(attributes, " data-branches=\"{run}/{all}\"");
        let _ = write!(
            hits,
            " <span class=\"branches\" title=\"{}\">{run}/{all}</span>",
            escape(&sides.join("\n")).replace('\n', "&#10;")
        );
    }
    let _ = writeln!(
        out,
        "<tr id=\"L{number}\" data-line=\"{number}\"{attributes}><td class=\"ln\">\
         <a href=\"#L{number}\">{number}</a></td><td class=\"hits\">{hits}</td>\
         <td class=\"code\">{code}</td></tr>"
    );
}

/// Each line of `source` as HTML that stands on its own: a comment or string that spans lines is
/// parsed as a whole, and its spans are closed at each line's end and reopened on the next, so
/// that every line can be a table row. Plain escaped text when the syntax is unknown.
fn highlight(source: &str, path: &Path, syntaxes: &SyntaxSet) -> Vec<String> {
    let first_line = source.lines().next().unwrap_or("");
    let syntax = path
        .extension()
        .and_then(|e| syntaxes.find_syntax_by_extension(&e.to_string_lossy()))
        .or_else(|| syntaxes.find_syntax_by_first_line(first_line));
    let plain = || source.lines().map(escape).collect();
    let Some(syntax) = syntax else {
        return plain();
    };
    let mut state = ParseState::new(syntax);
    let mut scopes = ScopeStack::new();
    // The `<span …>` tags still open at the end of the previous line, outermost first.
    let mut open: Vec<String> = Vec::new();
    let mut lines = Vec::new();
    for text in LinesWithEndings::from(source) {
        let Ok(ops) = state.parse_line(text, syntaxes) else {
            return plain();
        };
        let Ok((html, _)) = line_tokens_to_classed_spans(text, &ops, SYNTAX_CLASSES, &mut scopes)
        else {
            return plain();
        };
        let html = html.replace(['\n', '\r'], "");
        let mut line = open.concat();
        // Text is escaped, so every `<` starts one of syntect's tags.
        let mut rest = html.as_str();
        while let Some(start) = rest.find('<') {
            line.push_str(&rest[..start]);
            let end = start
                + rest[start..]
                    .find('>')
                    .map_or(rest.len() - start, |e| e + 1);
            let tag = &rest[start..end];
            if tag.starts_with("</") {
                open.pop();
            } else {
                open.push(tag.to_owned());
            }
            line.push_str(tag);
            rest = &rest[end..];
        }
        line.push_str(rest);
        line.push_str(&"</span>".repeat(open.len()));
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coverage::test_data::{file, line, test};

    fn coverage() -> Coverage {
        Coverage {
            files: vec![
                file(
                    "/w/src/lib.rs",
                    vec![
                        line(2, &[(0, 3), (1, 1)], 0, false),
                        line(3, &[], 0, false),
                        line(5, &[(0, 10)], 0, true),
                    ],
                ),
                file("/w/tests/it.rs", vec![line(1, &[], 2, false)]),
            ],
            tests: vec![
                test("lib::tests::a<'_>", Outcome::Passed),
                test("it::b", Outcome::Failed),
            ],
            count_cap: 10,
        }
    }

    fn pages(coverage: &Coverage) -> Vec<Page<'_>> {
        coverage
            .files
            .iter()
            .enumerate()
            .map(|(i, file)| {
                let relative = file.path.strip_prefix("/w").unwrap().display().to_string();
                Page {
                    name: page_name(i, &relative),
                    relative,
                    file,
                }
            })
            .collect()
    }

    /// `(line, class)` of every source row, in order.
    fn rows(html: &str) -> Vec<(u32, Option<&str>)> {
        html.lines()
            .filter(|l| l.starts_with("<tr id=\"L"))
            .map(|l| {
                let tag = &l[..l.find('>').unwrap()];
                let attribute = |name: &str| {
                    tag.split(&format!(" {name}=\""))
                        .nth(1)
                        .map(|rest| rest.split('"').next().unwrap())
                };
                (
                    attribute("data-line").unwrap().parse().unwrap(),
                    attribute("class"),
                )
            })
            .collect()
    }

    #[test]
    fn escape_covers_markup_and_both_quotes() {
        assert_eq!(
            escape(r#"<a href='x'>&"</a>"#),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
    }

    #[test]
    fn page_names_are_unique_and_stay_in_the_directory() {
        assert_eq!(page_name(0, "src/lib.rs"), "0-src_lib.rs.html");
        assert_ne!(page_name(1, "src/a_b.rs"), page_name(2, "src_a/b.rs"));
        let outside = page_name(3, "../../etc/x y.rs");
        assert_eq!(outside, "3-.._.._etc_x_y.rs.html");
        assert!(!outside.contains('/'));
        let deep = format!("{}lib.rs", "dir/".repeat(100));
        let long = page_name(7, &deep);
        assert!(
            long.len() < 140 && long.ends_with("_dir_lib.rs.html"),
            "{long}"
        );
    }

    #[test]
    fn a_page_colours_coverable_lines_and_lists_the_tests_of_covered_ones() {
        let coverage = coverage();
        let pages = pages(&coverage);
        let source = "// one\nfn two() {}\nthree();\n\nlet five = \"<b>\";\n// six\n";
        let html = render_page(
            &coverage,
            &pages[0],
            Ok(source.into()),
            &SyntaxSet::load_defaults_newlines(),
        );
        assert_eq!(
            rows(&html),
            [
                (1, None),
                (2, Some("hit")),
                (3, Some("miss")),
                (4, None),
                (5, Some("hit")),
                (6, None)
            ]
        );
        let row = |n: u32| {
            html.lines()
                .find(|l| l.starts_with(&format!("<tr id=\"L{n}\"")))
                .unwrap()
        };
        assert!(
            row(2).contains(r#"<li data-test="lib::tests::a&lt;&#39;_&gt;" data-hits="3">"#),
            "{}",
            row(2)
        );
        assert!(
            row(2).contains(r#"<li data-test="it::b" data-hits="1">"#),
            "{}",
            row(2)
        );
        assert!(row(2).contains(">4</summary>"), "{}", row(2));
        assert!(row(3).contains("<td class=\"hits\">0</td>"), "{}", row(3));
        assert!(!row(3).contains("<li"), "{}", row(3));
        assert!(row(5).contains(">≥10</summary>"), "capped: {}", row(5));
        assert!(
            row(5).contains("&lt;b&gt;") && !row(5).contains("<b>"),
            "{}",
            row(5)
        );
        assert!(html.contains(r#"<a href="index.html">"#));
        assert!(html.contains("<a href=\"#L2\">f</a>"), "the function list");
    }

    #[test]
    fn a_line_with_a_branch_side_never_run_is_partial() {
        use crate::coverage::test_data::{branch, match_of};
        let mut coverage = coverage();
        coverage.files[0].branches = vec![branch(2, &[(0, 3, 0)]), branch(5, &[(0, 4, 6)])];
        // Line 5's `match` (its second block) never took its arm at line 7.
        coverage.files[0].matches = vec![MatchCoverage {
            index: 1,
            ..match_of(5, &[(6, &[(0, 10)]), (7, &[])])
        }];
        let pages = pages(&coverage);
        let source = "// one\nif two {}\nthree();\n\nwhile five {}\n// six\n";
        let html = render_page(
            &coverage,
            &pages[0],
            Ok(source.into()),
            &SyntaxSet::load_defaults_newlines(),
        );
        let classes: Vec<(u32, Option<&str>)> = rows(&html).into_iter().take(5).collect();
        assert_eq!(
            classes,
            [
                (1, None),
                (2, Some("hit partial")),
                (3, Some("miss")),
                (4, None),
                (5, Some("hit partial"))
            ]
        );
        let row5 = html
            .lines()
            .find(|l| l.starts_with("<tr id=\"L5\""))
            .unwrap();
        assert!(row5.contains("data-branches=\"3/4\""), "{row5}");
        assert!(
            row5.contains(
                "title=\"condition: both ways (4 and 6)&#10;`match` arm at line 7 never taken\">3/4</span>"
            ),
            "{row5}"
        );
        let row2 = html
            .lines()
            .find(|l| l.starts_with("<tr id=\"L2\""))
            .unwrap();
        assert!(row2.contains("data-branches=\"1/2\""), "{row2}");
        assert!(
            row2.contains("<span class=\"branches\" title=\"condition never false\">1/2</span>"),
            "{row2}"
        );
    }

    #[test]
    fn branch_titles_give_no_verdict_on_estimates_or_branches_that_never_ran() {
        use crate::coverage::test_data::{branch, match_of};
        let mut coverage = coverage();
        let mut estimate = branch(2, &[(0, 1, 0)]);
        estimate.capped = true;
        let mut never = branch(2, &[]);
        never.index = 1;
        coverage.files[0].branches = vec![estimate, never];
        coverage.files[0].matches = vec![MatchCoverage {
            index: 2,
            ..match_of(2, &[(3, &[]), (4, &[])])
        }];
        let pages = pages(&coverage);
        let html = render_page(
            &coverage,
            &pages[0],
            Ok("// one\nif two {}\n".into()),
            &SyntaxSet::load_defaults_newlines(),
        );
        let row2 = html
            .lines()
            .find(|l| l.starts_with("<tr id=\"L2\""))
            .unwrap();
        assert!(
            row2.contains(
                "title=\"condition: ≈1 and ≈0&#10;condition: never ran&#10;`match`: never ran\">1/6</span>"
            ),
            "{row2}"
        );
    }

    #[test]
    fn a_comment_across_lines_is_highlighted_on_each_and_every_line_closes_its_spans() {
        let source = "/* one\ntwo */ fn f() { \"a\nb\" }\nlet x = 1;\n";
        let lines = highlight(
            source,
            Path::new("x.rs"),
            &SyntaxSet::load_defaults_newlines(),
        );
        assert_eq!(lines.len(), 4);
        for line in &lines {
            assert_eq!(
                line.matches("<span").count(),
                line.matches("</span>").count(),
                "{line}"
            );
        }
        // The class of the innermost span around the text that starts with `word`.
        let around = |line: &str, word: &str| {
            let before = &line[..line.find(&format!(">{word}")).unwrap()];
            before.rsplit("<span").next().unwrap().to_owned()
        };
        assert!(
            around(&lines[1], "two").contains("s-comment"),
            "{}",
            lines[1]
        );
        assert!(around(&lines[2], "b").contains("s-string"), "{}", lines[2]);
        assert!(
            !lines[3].contains("s-string"),
            "the string has ended: {}",
            lines[3]
        );
    }

    #[test]
    fn an_unknown_language_is_escaped_plain_text() {
        let lines = highlight(
            "a <b>\nc",
            Path::new("notes.unknownext"),
            &SyntaxSet::load_defaults_newlines(),
        );
        assert_eq!(lines, ["a &lt;b&gt;", "c"]);
    }

    #[test]
    fn an_unreadable_source_gets_a_page_with_its_coverable_lines_only() {
        let coverage = coverage();
        let pages = pages(&coverage);
        let missing = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        let html = render_page(
            &coverage,
            &pages[0],
            Err(missing),
            &SyntaxSet::load_defaults_newlines(),
        );
        assert!(
            html.contains("could not be read (/w/src/lib.rs: gone)"),
            "{html}"
        );
        assert_eq!(
            rows(&html),
            [(2, Some("hit")), (3, Some("miss")), (5, Some("hit"))]
        );
    }

    #[test]
    fn the_index_lists_each_file_relative_with_counts_a_bar_and_a_total() {
        let coverage = coverage();
        let pages = pages(&coverage);
        let html = render_index(&coverage, Path::new("/w"), &pages);
        assert!(
            html.contains(
                r#"<tr data-path="src/lib.rs" data-covered="2" data-coverable="3"><td><a href="0-src_lib.rs.html">src/lib.rs</a></td>"#
            ),
            "{html}"
        );
        assert!(
            html.contains(r#"<a href="1-tests_it.rs.html">tests/it.rs</a>"#),
            "{html}"
        );
        assert!(
            html.contains(r#"<span class="bar medium"><span style="width:66.67%">"#),
            "{html}"
        );
        assert!(html.contains(r#"<tr class="total"><td>Total</td><td class="num">3</td><td class="num">1</td><td class="num">4</td>"#), "{html}");
        assert!(html.contains("Tests: 1 passed, 1 failed"), "{html}");
        assert!(!html.contains("http://") && !html.contains("https://"));
        assert!(!html.contains("Branches") && !html.contains("branch sides"));
    }

    #[test]
    fn the_index_has_a_branch_column_per_file_and_in_total_when_the_run_has_branches() {
        use crate::coverage::test_data::branch;
        let mut coverage = coverage();
        coverage.files[0].branches = vec![branch(2, &[(0, 3, 0)]), branch(5, &[(0, 4, 6)])];
        let pages = pages(&coverage);
        let html = render_index(&coverage, Path::new("/w"), &pages);
        assert!(
            html.contains(r#"<button type="button">Branches</button>"#),
            "{html}"
        );
        assert!(
            html.contains(r#"<tr data-path="src/lib.rs" data-covered="2" data-coverable="3" data-branches-hit="3" data-branches-found="4">"#),
            "{html}"
        );
        assert!(
            html.contains(r#"<td class="num" data-sort="75.0000">3/4</td></tr>"#),
            "{html}"
        );
        assert!(
            html.contains(r#"data-branches-hit="0" data-branches-found="0">"#)
                && html.contains(r#"<td class="num" data-sort="-1">-</td></tr>"#),
            "{html}"
        );
        assert!(
            html.contains(r#"<td class="num" data-sort="75.0000">3/4</td></tr></tfoot>"#),
            "{html}"
        );
        assert!(
            html.contains("3 of 4 branch sides ran (75.00&nbsp;%)."),
            "{html}"
        );
    }

    #[test]
    fn write_makes_the_directory_and_a_page_per_file_even_for_missing_sources() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("a/b");
        write(&coverage(), Path::new("/w"), &out).unwrap();
        for name in [
            "index.html",
            "style.css",
            "0-src_lib.rs.html",
            "1-tests_it.rs.html",
        ] {
            assert!(out.join(name).is_file(), "{name}");
        }
    }
}
