//! Inlay hints: at the end of each covered line of the requested range, its hit count (`×3`, or
//! `≥10×` when part of the line was counted only up to the int3 fallback's cap) and, where some
//! side of its branches (or arm of its `match`) never ran, how many did (`×3 · 1/2 branches`),
//! with the tests that ran the line and their own counts, and each branch's sides and each
//! `match`'s arms, as the tooltip.

use tower_lsp_server::ls_types::{
    InlayHint, InlayHintLabel, InlayHintTooltip, MarkupContent, MarkupKind, Position, Range,
};

use crate::coverage::{BranchCoverage, Construct, LineCoverage, MatchCoverage};
use crate::lsp::documents::Document;
use crate::lsp::store::{FileState, Tests};

/// Tests named in a tooltip before "and N more".
const TOOLTIP_TESTS: usize = 8;

/// `×N` for an exact count, `≥N×` for a lower bound.
pub fn label(hits: u64, capped: bool) -> String {
    if capped {
        format!("≥{hits}×")
    } else {
        format!("×{hits}")
    }
}

/// The label of a line with its branch sides that ran and all of them (`match` arms included):
/// ` · 1/2 branches` added when a side never ran.
pub fn label_with_branches(line: &LineCoverage, (run, all): (usize, usize)) -> String {
    let count = label(line.hits, line.capped);
    if run < all {
        format!("{count} · {run}/{all} branches")
    } else {
        count
    }
}

/// Each branch's two sides, for a tooltip: `` `if` condition: true ×3, false ×0 ``, then each
/// `match`'s arms: `` `match`: line 14 ×3, line 15 ×0 ``.
fn branch_lines(branches: &[BranchCoverage], matches: &[MatchCoverage]) -> String {
    let mut text = String::new();
    for branch in branches {
        let what = match branch.construct {
            Construct::If => "`if` condition",
            Construct::While => "`while` condition",
            Construct::ShortCircuit => "`&&`/`||` operand",
            Construct::Guard => "match guard",
            Construct::IfLet => "`let` pattern",
            Construct::LetElse => "`let … else` pattern",
            Construct::Try => "`?`",
        };
        let (yes, no) = match (branch.construct, branch.oriented) {
            (Construct::Try, true) => ("returned early", "went on"),
            (_, true) => ("true", "false"),
            (_, false) => ("one way", "the other"),
        };
        let at_least = if branch.capped { "≈" } else { "" };
        text.push_str(&format!(
            "\n- {what}: {yes} {at_least}×{}, {no} {at_least}×{}",
            branch.taken, branch.not_taken
        ));
    }
    for found in matches {
        let arms: Vec<String> = found
            .arms
            .iter()
            .map(|arm| format!("line {} {}", arm.line, label(arm.hits, arm.capped)))
            .collect();
        text.push_str(&format!("\n- `match`: {}", arms.join(", ")));
    }
    text
}

/// `1250000` → `1,250,000`.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// "executed 1,250,000 times, by 2 tests:" and the tests, busiest first (ties by id), each with
/// its own count; at most `TOOLTIP_TESTS`, then "and N more".
pub fn tooltip(line: &LineCoverage, tests: &Tests) -> String {
    let at_least = if line.capped { "at least " } else { "" };
    let times = match line.hits {
        1 => "once".to_owned(),
        hits => format!("{} times", grouped(hits)),
    };
    let mut listed: Vec<(&str, u64)> = line
        .tests
        .iter()
        .filter_map(|t| Some((tests.list.get(t.test as usize)?.id.as_str(), t.hits)))
        .collect();
    if listed.is_empty() {
        return format!("executed {at_least}{times}");
    }
    listed.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    let count = listed.len();
    let mut text = format!(
        "executed {at_least}{times}, by {count} test{}:",
        if count == 1 { "" } else { "s" }
    );
    for (id, hits) in listed.iter().take(TOOLTIP_TESTS) {
        text.push_str(&format!("\n- `{id}` {}", label(*hits, line.capped)));
    }
    if count > TOOLTIP_TESTS {
        text.push_str(&format!("\n- and {} more", count - TOOLTIP_TESTS));
    }
    text
}

/// Hints for the lines of `range`. With `lazy` set to the file's id the tooltip is left for
/// `inlayHint/resolve` (`data` = `file id << 32 | line`, one number), which keeps whole-file
/// answers small.
pub fn for_range(
    file: &FileState,
    tests: &Tests,
    text: &Document,
    range: Range,
    lazy: Option<usize>,
) -> Vec<InlayHint> {
    let lines = &file.coverage.lines;
    let (first, last) = (range.start.line + 1, range.end.line + 1);
    let start = lines.partition_point(|l| l.line < first);
    lines[start..]
        .iter()
        .take_while(|l| l.line <= last)
        .filter(|l| l.hits > 0 && !file.is_stale(l.line) && l.line <= text.line_count())
        .map(|l| InlayHint {
            position: Position::new(l.line - 1, text.line_end(l.line)),
            label: InlayHintLabel::String(label_with_branches(
                l,
                file.coverage.line_branch_sides(l.line),
            )),
            kind: None,
            text_edits: None,
            tooltip: lazy
                .is_none()
                .then(|| markdown(full_tooltip(l, file, tests))),
            padding_left: Some(true),
            padding_right: None,
            data: lazy.map(|id| serde_json::Value::from(resolve_key(id, l.line))),
        })
        .collect()
}

/// The line's tooltip, then its branches.
fn full_tooltip(line: &LineCoverage, file: &FileState, tests: &Tests) -> String {
    let branches = file.coverage.branches_on(line.line);
    let matches = file.coverage.matches_on(line.line);
    let mut text = tooltip(line, tests);
    let (run, all) = file.coverage.line_branch_sides(line.line);
    if all > 0 {
        text.push_str(&format!(
            "\n\nbranches: {run} of {all} sides ran:{}",
            branch_lines(branches, matches)
        ));
    }
    text
}

pub fn markdown(value: String) -> InlayHintTooltip {
    InlayHintTooltip::MarkupContent(MarkupContent {
        kind: MarkupKind::Markdown,
        value,
    })
}

fn resolve_key(file_id: usize, line: u32) -> u64 {
    ((file_id as u64) << 32) | u64::from(line)
}

/// The file id and line a lazily resolved hint's `data` names.
pub fn resolve_target(hint: &InlayHint) -> Option<(usize, u32)> {
    let key = hint.data.as_ref()?.as_u64()?;
    Some(((key >> 32) as usize, key as u32))
}

/// Fills in the tooltip of a hint made with `lazy`.
pub fn resolve(mut hint: InlayHint, file: &FileState, tests: &Tests) -> InlayHint {
    let line = resolve_target(&hint).map(|(_, line)| line);
    let lines = &file.coverage.lines;
    if let Some(l) = line.and_then(|line| lines.iter().find(|l| l.line == line)) {
        hint.tooltip = Some(markdown(full_tooltip(l, file, tests)));
    }
    hint
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coverage::TestHits;
    use crate::libtest::Outcome;

    fn tests(ids: &[&str]) -> Tests {
        Tests {
            list: ids
                .iter()
                .map(|id| crate::coverage::TestInfo {
                    id: (*id).into(),
                    outcome: Outcome::Passed,
                    duration_ms: 1,
                    message: None,
                    location: None,
                    attempts: 1,
                })
                .collect(),
            ..Tests::default()
        }
    }

    fn line(hits: u64, capped: bool, tests: &[(u32, u64)]) -> LineCoverage {
        LineCoverage {
            line: 3,
            hits,
            capped,
            tests: tests
                .iter()
                .map(|&(test, hits)| TestHits { test, hits })
                .collect(),
        }
    }

    #[test]
    fn labels_are_exact_unless_capped() {
        assert_eq!(label(3, false), "×3");
        assert_eq!(label(1_250_000, false), "×1250000");
        assert_eq!(label(10, true), "≥10×");
        assert_eq!(label(2500, true), "≥2500×");
    }

    #[test]
    fn partly_run_branches_join_the_label_and_every_branch_the_tooltip() {
        use crate::coverage::test_data::{branch, match_of};
        let l = line(12, false, &[]);
        let both = branch(3, &[(0, 1, 2)]);
        let one = branch(3, &[(0, 0, 12)]);
        assert_eq!(label_with_branches(&l, (0, 0)), "×12");
        assert_eq!(label_with_branches(&l, (2, 2)), "×12");
        assert_eq!(label_with_branches(&l, (1, 2)), "×12 · 1/2 branches");
        assert_eq!(label_with_branches(&l, (3, 4)), "×12 · 3/4 branches");
        let arms = match_of(3, &[(4, &[(0, 3)]), (6, &[])]);
        assert_eq!(
            branch_lines(&[both, one], &[arms]),
            "\n- `if` condition: true ×1, false ×2\n- `if` condition: true ×0, false ×12\n\
             - `match`: line 4 ×3, line 6 ×0"
        );
    }

    #[test]
    fn counts_are_grouped_by_thousands() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1000), "1,000");
        assert_eq!(grouped(1_250_000), "1,250,000");
        assert_eq!(grouped(12_345_678), "12,345,678");
    }

    #[test]
    fn tooltips_list_the_busiest_tests_first_with_their_own_counts() {
        let list = tests(&["k::tests::b", "k::tests::spins", "k::tests::a"]);
        let l = line(1_250_004, false, &[(0, 2), (1, 1_250_000), (2, 2)]);
        assert_eq!(
            tooltip(&l, &list),
            "executed 1,250,004 times, by 3 tests:\n\
             - `k::tests::spins` ×1250000\n\
             - `k::tests::a` ×2\n\
             - `k::tests::b` ×2"
        );
        assert_eq!(
            tooltip(&line(1, false, &[(2, 1)]), &list),
            "executed once, by 1 test:\n- `k::tests::a` ×1"
        );
        assert_eq!(tooltip(&line(7, false, &[]), &list), "executed 7 times");
    }

    #[test]
    fn capped_lines_say_at_least() {
        let list = tests(&["k::tests::hot"]);
        assert_eq!(
            tooltip(&line(10, true, &[(0, 10)]), &list),
            "executed at least 10 times, by 1 test:\n- `k::tests::hot` ≥10×"
        );
        assert_eq!(
            tooltip(&line(1, true, &[]), &list),
            "executed at least once"
        );
    }

    #[test]
    fn tooltips_name_eight_tests_then_how_many_more() {
        let ids: Vec<String> = (0..11).map(|i| format!("k::tests::t{i:02}")).collect();
        let list = tests(&ids.iter().map(String::as_str).collect::<Vec<_>>());
        let per_test: Vec<(u32, u64)> = (0..11).map(|i| (i, u64::from(i) + 1)).collect();
        let text = tooltip(&line(66, false, &per_test), &list);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "executed 66 times, by 11 tests:");
        assert_eq!(lines[1], "- `k::tests::t10` ×11");
        assert_eq!(lines[8], "- `k::tests::t03` ×4");
        assert_eq!(lines[9], "- and 3 more");
        assert_eq!(lines.len(), 10);
    }
}
