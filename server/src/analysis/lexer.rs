//! Lines by their text alone: blank or comment-only, punctuation only, or code, with comments
//! and string literals tracked across lines. The fallback for files syn cannot parse uses it too.

/// Lines as syn numbers them: it skips a byte order mark, so the text scans must too.
pub(super) fn split_lines(source: &str) -> Vec<&str> {
    source
        .strip_prefix('\u{feff}')
        .unwrap_or(source)
        .lines()
        .collect()
}

/// What the characters of a line are, ignoring comments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum TextClass {
    /// Blank or comment only.
    Empty,
    /// Only braces, brackets, parens, semicolons, commas and `?` (a `)?;` line: the error path
    /// of the statement it ends, not a line of its own).
    Punct,
    Code,
}

/// Lexer state carried from one line to the next.
#[derive(Clone, Copy)]
enum Lex {
    Code,
    BlockComment(u32),
    Str,
    RawStr(usize),
}

/// Classifies lines textually, tracking comments and string literals across lines so that a
/// `/*` inside a string does not swallow the rest of the file.
pub(super) fn classify_text(lines: &[&str]) -> Vec<TextClass> {
    let mut state = Lex::Code;
    lines
        .iter()
        .map(|line| {
            let bytes = line.as_bytes();
            let (mut punct, mut code) = (false, false);
            let mut i = 0;
            while i < bytes.len() {
                let rest = &bytes[i..];
                match state {
                    Lex::BlockComment(depth) => {
                        if rest.starts_with(b"*/") {
                            state = if depth == 1 {
                                Lex::Code
                            } else {
                                Lex::BlockComment(depth - 1)
                            };
                            i += 2;
                        } else if rest.starts_with(b"/*") {
                            state = Lex::BlockComment(depth + 1);
                            i += 2;
                        } else {
                            i += 1;
                        }
                    }
                    Lex::Str => {
                        code |= !rest[0].is_ascii_whitespace();
                        match rest[0] {
                            b'\\' => i += 2,
                            b'"' => {
                                state = Lex::Code;
                                i += 1;
                            }
                            _ => i += 1,
                        }
                    }
                    Lex::RawStr(hashes) => {
                        code |= !rest[0].is_ascii_whitespace();
                        if rest[0] == b'"'
                            && rest.len() > hashes
                            && rest[1..=hashes].iter().all(|&b| b == b'#')
                        {
                            state = Lex::Code;
                            i += 1 + hashes;
                        } else {
                            i += 1;
                        }
                    }
                    Lex::Code => {
                        let c = rest[0];
                        if c.is_ascii_whitespace() {
                            i += 1;
                        } else if rest.starts_with(b"//") {
                            break;
                        } else if rest.starts_with(b"/*") {
                            state = Lex::BlockComment(1);
                            i += 2;
                        } else if b"{}[]();,?".contains(&c) {
                            punct = true;
                            i += 1;
                        } else {
                            code = true;
                            i += lex_code_token(line, i, &mut state);
                        }
                    }
                }
            }
            if code {
                TextClass::Code
            } else if punct {
                TextClass::Punct
            } else {
                TextClass::Empty
            }
        })
        .collect()
}

/// Consumes one token of code starting at byte `i` (not whitespace, comment or punctuation) and
/// returns its length, entering a string state when the token opens a string literal.
fn lex_code_token(line: &str, i: usize, state: &mut Lex) -> usize {
    let bytes = line.as_bytes();
    let c = bytes[i];
    if c == b'"' {
        *state = Lex::Str;
        return 1;
    }
    if c == b'\'' {
        // A char literal is skipped whole (so that '"' does not open a string); a lifetime is not.
        let rest = &line[i + 1..];
        if let Some(escaped) = rest.strip_prefix('\\') {
            // The escaped character itself may be a quote: `'\''`.
            return escaped
                .char_indices()
                .skip(1)
                .find(|&(_, c)| c == '\'')
                .map_or(2, |(end, _)| end + 3);
        }
        let width = rest.chars().next().map_or(0, char::len_utf8);
        return if width > 0 && rest[width..].starts_with('\'') {
            width + 2
        } else {
            1
        };
    }
    if c == b'_' || c.is_ascii_alphabetic() {
        let len = bytes[i..]
            .iter()
            .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_')
            .count();
        if matches!(&bytes[i..i + len], b"r" | b"br" | b"cr") {
            let hashes = bytes[i + len..].iter().take_while(|&&b| b == b'#').count();
            if bytes.get(i + len + hashes) == Some(&b'"') {
                *state = Lex::RawStr(hashes);
                return len + hashes + 1;
            }
        }
        return len;
    }
    // Multi-byte characters are skipped whole so that slicing stays on char boundaries.
    line[i..].chars().next().map_or(1, char::len_utf8)
}

#[cfg(test)]
mod tests {
    use crate::analysis::test_support::*;
    use crate::analysis::*;

    #[test]
    fn fallback_counts_every_code_line() {
        let source = dedent(
            r#"
            fn broken( {
                let x = 1;
                // comment
                /* block
                   comment */

                });
                "/* not a comment";
                let quote = '"';
                let pair = ('\'', "'");
                // still a comment
                skipped(); // coverlay: ignore
                value,
            "#,
        );
        assert!(analyze(&source).is_err());
        let analysis = SourceAnalysis::fallback(&source);
        let expected = r#"
            s   fn broken( {
            s       let x = 1;
            -       // comment
            -       /* block
            -          comment */
            -
            -       });
            s       "/* not a comment";
            s       let quote = '"';
            s       let pair = ('\'', "'");
            -       // still a comment
            -       skipped(); // coverlay: ignore
            s       value,
        "#;
        assert_eq!(render(&analysis, &source), dedent(expected));
        assert!(analysis.functions().is_empty());
        assert_eq!(analysis.line_count(), 13);
        assert!(!analysis.is_test_code(2));
        assert_eq!(analysis.function_at(2), None);
    }
}
