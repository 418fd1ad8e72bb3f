//! Inlay hints: at the end of each covered line of the requested range, its hit count (`×3`, or
//! `≥1000×` at the count cap), with the tests that reach the line as the tooltip.

use tower_lsp_server::ls_types::{
    InlayHint, InlayHintLabel, InlayHintTooltip, MarkupContent, MarkupKind, Position, Range,
};

use super::documents::Document;
use crate::store::{FileState, Tests};

/// Tests named in a tooltip before "and N more".
const TOOLTIP_TESTS: usize = 8;

pub fn label(hits: u64, cap: u32) -> String {
    if hits >= u64::from(cap) {
        format!("≥{cap}×")
    } else {
        format!("×{hits}")
    }
}

pub fn tooltip(hits: u64, test_indexes: &[u32], tests: &Tests) -> String {
    let times = if hits == 1 {
        "once".to_owned()
    } else {
        format!("{hits} times")
    };
    if test_indexes.is_empty() {
        return format!("executed {times}");
    }
    let count = test_indexes.len();
    let mut text = format!(
        "executed {times}, reached by {count} test{}:",
        if count == 1 { "" } else { "s" }
    );
    for &index in test_indexes.iter().take(TOOLTIP_TESTS) {
        if let Some(test) = tests.list.get(index as usize) {
            text.push_str("\n- `");
            text.push_str(&test.id);
            text.push('`');
        }
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
    cap: u32,
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
            label: InlayHintLabel::String(label(l.hits, cap)),
            kind: None,
            text_edits: None,
            tooltip: lazy
                .is_none()
                .then(|| markdown(tooltip(l.hits, &l.tests, tests))),
            padding_left: Some(true),
            padding_right: None,
            data: lazy.map(|id| serde_json::Value::from(resolve_key(id, l.line))),
        })
        .collect()
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
        hint.tooltip = Some(markdown(tooltip(l.hits, &l.tests, tests)));
    }
    hint
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_show_counts_and_the_cap() {
        assert_eq!(label(3, 1000), "×3");
        assert_eq!(label(1000, 1000), "≥1000×");
        assert_eq!(label(2500, 1000), "≥1000×");
    }
}
