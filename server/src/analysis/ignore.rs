//! `// coverlay: ignore` (one statement), `// coverlay: ignore-start` … `// coverlay: ignore-end`
//! (a region): lines the author leaves out of the coverage, applied after the syntax rules.

use super::{LineKind, SourceAnalysis};

const IGNORE: &str = "// coverlay: ignore";
const IGNORE_START: &str = "// coverlay: ignore-start";
const IGNORE_END: &str = "// coverlay: ignore-end";

/// The single-line marker, not the prefix of `ignore-start` / `ignore-end`.
fn has_ignore_marker(text: &str) -> bool {
    text.match_indices(IGNORE).any(|(at, _)| {
        !text[at + IGNORE.len()..]
            .starts_with(|c: char| c == '-' || c == '_' || c.is_alphanumeric())
    })
}

pub(super) fn apply(analysis: &mut SourceAnalysis, lines: &[&str]) {
    let mut in_region = false;
    for (kind, text) in analysis.kinds.iter_mut().zip(lines) {
        if text.contains(IGNORE_START) {
            in_region = true;
        }
        if in_region || has_ignore_marker(text) {
            *kind = LineKind::None;
        }
        if text.contains(IGNORE_END) {
            in_region = false;
        }
    }
    // A statement whose first line is ignored is ignored as a whole.
    let starts: Vec<bool> = analysis
        .kinds
        .iter()
        .map(|kind| matches!(kind, LineKind::Start { .. }))
        .collect();
    for kind in &mut analysis.kinds {
        if let LineKind::Continuation { owner } = *kind {
            if starts.get(owner as usize - 1) != Some(&true) {
                *kind = LineKind::None;
            }
        }
    }
    let kinds = &analysis.kinds;
    analysis
        .functions
        .retain(|f| matches!(kinds.get(f.line as usize - 1), Some(LineKind::Start { .. })));
}

#[cfg(test)]
mod tests {
    use crate::analysis::test_support::*;

    #[test]
    fn ignore_comments() {
        let analysis = check(
            r#"
            fn main() {
                let config = load(); // coverlay: ignore
                let value = compute(
                    config, // coverlay: ignore
                );
                let other = call(1, // coverlay: ignore
                    2,
                );
                // coverlay: ignore-start
                fn unreachable_helper() {
                    panic!();
                }
                // coverlay: ignore-end
                run(value);
            }

            fn skipped_entry() { // coverlay: ignore
                work();
            }
            "#,
            r#"
            S   fn main() {
            -       let config = load(); // coverlay: ignore
            S       let value = compute(
            -           config, // coverlay: ignore
            C3      );
            -       let other = call(1, // coverlay: ignore
            -           2,
            -       );
            -       // coverlay: ignore-start
            -       fn unreachable_helper() {
            -           panic!();
            -       }
            -       // coverlay: ignore-end
            S       run(value);
            C1  }
            -
            -   fn skipped_entry() { // coverlay: ignore
            S       work();
            -   }
            "#,
        );
        assert_eq!(analysis.functions(), [function("main", 1, 15)]);
    }

    #[test]
    fn unterminated_ignore_region_runs_to_the_end() {
        check(
            r#"
            fn kept() {}
            // coverlay: ignore-start
            fn dropped() {}
            "#,
            r#"
            S   fn kept() {}
            -   // coverlay: ignore-start
            -   fn dropped() {}
            "#,
        );
    }
}
