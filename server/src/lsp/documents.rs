//! The text of the buffers the editor has open, kept up to date from incremental changes, and
//! the line region each change replaced (so that the store can shift its lines through the edit).

use line_index::{LineIndex, WideEncoding, WideLineCol};

/// A buffer's text with its line starts and the version the client gave it.
#[derive(Clone, Debug)]
pub struct Document {
    pub text: String,
    pub version: Option<i32>,
    starts: Vec<usize>,
    index: LineIndex,
}

/// A position as LSP gives it: 0-based line, UTF-16 column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    pub line: u32,
    pub character: u32,
}

impl Document {
    pub fn new(text: String) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        let index = LineIndex::new(&text);
        Self {
            text,
            version: None,
            starts,
            index,
        }
    }

    /// Applies one change (`range` `None`: the whole text). Returns the lines it replaced as
    /// `(first, removed, inserted)` (see [`changed_lines`]), `None` when no line changed.
    pub fn apply(
        &mut self,
        range: Option<(Position, Position)>,
        text: &str,
    ) -> Option<(u32, u32, u32)> {
        let Some((start, end)) = range else {
            let new = Document::new(text.to_owned());
            let changed = changed_lines(self, &new);
            *self = Document {
                version: self.version,
                ..new
            };
            return changed;
        };
        let (from, to) = (self.offset(start), self.offset(end));
        let (from, to) = (from.min(to), to.max(from));
        let removed_breaks = self.text[from..to].matches('\n').count() as u32;
        let inserted_breaks = text.matches('\n').count() as u32;
        // Whole lines replaced by whole lines leave the lines around them as they were; any
        // other change rewrites the lines it starts and ends on.
        let whole_lines =
            start.character == 0 && end.character == 0 && (text.is_empty() || text.ends_with('\n'));
        let (removed, inserted) = if whole_lines {
            (removed_breaks, inserted_breaks)
        } else {
            (removed_breaks + 1, inserted_breaks + 1)
        };
        let mut edited = std::mem::take(&mut self.text);
        edited.replace_range(from..to, text);
        *self = Document {
            version: self.version,
            ..Document::new(edited)
        };
        (removed > 0 || inserted > 0).then_some((start.line.min(end.line) + 1, removed, inserted))
    }

    /// The byte offset of a position, clamped to its line and to the text.
    fn offset(&self, position: Position) -> usize {
        let Some(&line_start) = self.starts.get(position.line as usize) else {
            return self.text.len();
        };
        let wide = WideLineCol {
            line: position.line,
            col: position.character,
        };
        let line_end = self
            .starts
            .get(position.line as usize + 1)
            .map_or(self.text.len(), |&next| next - 1);
        self.index
            .to_utf8(WideEncoding::Utf16, wide)
            .and_then(|col| self.index.offset(col))
            .map_or(line_end, |offset| usize::from(offset).min(line_end))
            .max(line_start)
    }

    pub fn line_count(&self) -> u32 {
        self.starts.len() as u32
    }

    /// Line `line` (1-based) without its line ending.
    pub fn line(&self, line: u32) -> Option<&str> {
        let index = (line as usize).checked_sub(1)?;
        let start = *self.starts.get(index)?;
        let end = self
            .starts
            .get(index + 1)
            .map_or(self.text.len(), |&next| next - 1);
        Some(self.text[start..end].trim_end_matches('\r'))
    }

    /// Length of line `line` in UTF-16 code units (LSP's default position encoding).
    pub fn line_end(&self, line: u32) -> u32 {
        self.line(line)
            .map_or(0, |text| text.encode_utf16().count() as u32)
    }

    /// Column (UTF-16) of the first non-blank character of `line`.
    pub fn indent(&self, line: u32) -> u32 {
        self.line(line).map_or(0, |text| {
            let blank = text.len() - text.trim_start().len();
            text[..blank].encode_utf16().count() as u32
        })
    }
}

/// The lines `old` and `new` differ in: `(first, removed, inserted)` with `first` 1-based, found by
/// trimming the common leading and trailing lines. `None` when the texts have the same lines.
pub fn changed_lines(old: &Document, new: &Document) -> Option<(u32, u32, u32)> {
    let (old_n, new_n) = (old.line_count(), new.line_count());
    let mut prefix = 0;
    while prefix < old_n.min(new_n) && old.line(prefix + 1) == new.line(prefix + 1) {
        prefix += 1;
    }
    if prefix == old_n && prefix == new_n {
        return None;
    }
    let mut suffix = 0;
    while suffix < (old_n - prefix).min(new_n - prefix)
        && old.line(old_n - suffix) == new.line(new_n - suffix)
    {
        suffix += 1;
    }
    Some((prefix + 1, old_n - prefix - suffix, new_n - prefix - suffix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_utf16_columns() {
        let doc = Document::new("fn a() {\r\n    é();\n}".into());
        assert_eq!(doc.line_count(), 3);
        assert_eq!(doc.line(1), Some("fn a() {"));
        assert_eq!(doc.line_end(2), 8);
        assert_eq!(doc.indent(2), 4);
        assert_eq!(doc.line(4), None);
    }

    fn at(line: u32, character: u32) -> Position {
        Position { line, character }
    }

    #[test]
    fn ranged_changes_edit_the_text_and_say_which_lines_they_replaced() {
        let mut doc = Document::new("fn a() {\n    é(1);\n}\n".into());
        // Two whole lines inserted before line 2 (1-based): nothing replaced, two added.
        assert_eq!(
            doc.apply(Some((at(1, 0), at(1, 0))), "// x\n// y\n"),
            Some((2, 0, 2))
        );
        assert_eq!(doc.line(4), Some("    é(1);"));
        // Inside a line, after a two-byte character (UTF-16 column 6 is after `é(`).
        assert_eq!(doc.apply(Some((at(3, 6), at(3, 7))), "22"), Some((4, 1, 1)));
        assert_eq!(doc.line(4), Some("    é(22);"));
        // A line break typed in the middle of a line: one line becomes two.
        assert_eq!(
            doc.apply(Some((at(3, 4), at(3, 4))), "\n    "),
            Some((4, 1, 2))
        );
        assert_eq!(doc.line(5), Some("    é(22);"));
        // Lines 2-3 deleted whole.
        assert_eq!(doc.apply(Some((at(1, 0), at(3, 0))), ""), Some((2, 2, 0)));
        assert_eq!(doc.text, "fn a() {\n    \n    é(22);\n}\n");
        // Positions past the end are clamped; the whole text replaced without a range.
        assert_eq!(
            doc.apply(Some((at(9, 0), at(9, 5))), "// end"),
            Some((10, 1, 1))
        );
        assert!(doc.text.ends_with("}\n// end"));
        assert_eq!(doc.apply(None, "x\n"), Some((1, 5, 2)));
    }

    #[test]
    fn the_changed_region_is_what_lies_between_common_lines() {
        let old = Document::new("a\nb\nc\nd\n".into());
        assert_eq!(changed_lines(&old, &old.clone()), None);
        let new = Document::new("a\nB\nB2\nc\nd\n".into());
        assert_eq!(changed_lines(&old, &new), Some((2, 1, 2)));
        let new = Document::new("a\nd\n".into());
        assert_eq!(changed_lines(&old, &new), Some((2, 2, 0)));
    }
}
