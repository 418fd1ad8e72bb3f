//! The text of the buffers the editor has open (full-text sync), split into lines, and the line
//! region one change replaced (so that the store can shift its line numbers through the edit).

/// A buffer's text with its line starts.
#[derive(Clone, Debug)]
pub struct Document {
    pub text: String,
    starts: Vec<usize>,
}

impl Document {
    pub fn new(text: String) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Self { text, starts }
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
