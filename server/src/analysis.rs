//! Source analysis: decides from the syntax of one Rust file which lines a person counts as code,
//! which statement each line belongs to, where functions are and which lines are test code.

use proc_macro2::{extra::DelimSpan, LineColumn, Span};
use serde::{Deserialize, Serialize};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::visit::{self, Visit};
use syn::{
    Arm, Attribute, Block, Expr, ExprClosure, ExprConst, ExprIf, ExprRepeat, GenericArgument,
    ImplItem, Item, Macro, MacroDelimiter, Meta, Pat, Signature, Stmt, Token, TraitItem, Type,
};

/// Part of the key of cached analyses: bump it whenever the same text is analysed differently
/// (2: `unreachable!()` is not coverable; 3: `else if` conditions are lines of their own; 4:
/// `loop {`, `unsafe {` and `{` openers are not).
pub const RULES_VERSION: u32 = 4;

/// What one source line is, as far as coverage is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LineKind {
    /// Not code a person would count.
    None,
    /// First line of a statement / match arm / fn entry: coverable. `compiled_only`: count it only if the
    /// binary has machine code for it (used for cfg-gated items and macro_rules! bodies).
    Start { compiled_only: bool },
    /// A later line of the statement that starts at line `owner` (machine code here counts for `owner`).
    Continuation { owner: u32 },
}

/// A function with a body, as written in the source.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionInfo {
    /// Plain name; methods as `Type::method`, trait default methods as `Trait::method`.
    pub name: String,
    /// Line of the `fn` keyword: the entry line, which is a `Start` line.
    pub line: u32,
    /// Line of the body's closing brace.
    pub end_line: u32,
    /// Has an attribute whose path ends in `test` (`#[test]`, `#[tokio::test]`, ...).
    pub is_test: bool,
    /// Lives under a cfg-gated item: only the binary can say whether it exists.
    pub compiled_only: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum AnalysisError {
    /// `line` is 1-based, `column` is 1-based and counted in characters.
    #[error("syntax error at {line}:{column}: {message}")]
    Parse {
        line: u32,
        column: u32,
        message: String,
    },
}

/// Per-line verdicts for one source file.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SourceAnalysis {
    kinds: Vec<LineKind>,
    functions: Vec<FunctionInfo>,
    /// Disjoint, sorted, inclusive line ranges of test code.
    test_ranges: Vec<(u32, u32)>,
}

/// Parses `source` with syn and classifies every line.
pub fn analyze(source: &str) -> Result<SourceAnalysis, AnalysisError> {
    let lines = split_lines(source);
    let text = classify_text(&lines);
    let parsed = syn::parse_file(source);
    let result = match &parsed {
        Ok(file) => {
            let mut walker = Walker::new(&lines, &text);
            for item in &file.items {
                walker.item(item);
            }
            Ok(walker.finish())
        }
        Err(error) => {
            let start = error.span().start();
            Err(AnalysisError::Parse {
                line: to_u32(start.line),
                column: to_u32(start.column) + 1,
                message: error.to_string(),
            })
        }
    };
    // Every span has been read by now; with `span-locations` the thread-local source map would
    // otherwise keep a copy of every file ever parsed on this thread.
    drop(parsed);
    proc_macro2::extra::invalidate_current_thread_spans();
    let mut analysis = result?;
    for (kind, class) in analysis.kinds.iter_mut().zip(&text) {
        // Comment and blank lines inside a statement carry no code even though they sit in its span.
        if *class == TextClass::Empty {
            *kind = LineKind::None;
        }
    }
    analysis.apply_ignore_markers(&lines);
    Ok(analysis)
}

impl SourceAnalysis {
    /// Fallback for files syn cannot parse: every line that is not blank, comment-only or made only of
    /// braces/brackets/parens/semicolons/commas is `Start { compiled_only: true }`; no functions.
    pub fn fallback(source: &str) -> SourceAnalysis {
        let lines = split_lines(source);
        let kinds = classify_text(&lines)
            .into_iter()
            .map(|class| match class {
                TextClass::Code => LineKind::Start {
                    compiled_only: true,
                },
                TextClass::Empty | TextClass::Punct => LineKind::None,
            })
            .collect();
        let mut analysis = SourceAnalysis {
            kinds,
            functions: Vec::new(),
            test_ranges: Vec::new(),
        };
        analysis.apply_ignore_markers(&lines);
        analysis
    }

    pub fn line_count(&self) -> u32 {
        to_u32(self.kinds.len())
    }

    /// 1-based; out of range => `LineKind::None`.
    pub fn kind(&self, line: u32) -> LineKind {
        line.checked_sub(1)
            .and_then(|index| self.kinds.get(index as usize))
            .copied()
            .unwrap_or(LineKind::None)
    }

    /// Sorted by `line`.
    pub fn functions(&self) -> &[FunctionInfo] {
        &self.functions
    }

    /// Innermost function whose `line..=end_line` contains `line`.
    pub fn function_at(&self, line: u32) -> Option<&FunctionInfo> {
        let candidates = self.functions.partition_point(|f| f.line <= line);
        // Functions nest properly, so the latest-starting one that still contains `line` is innermost.
        self.functions[..candidates]
            .iter()
            .rev()
            .find(|f| f.end_line >= line)
    }

    /// Inside a test fn or a `#[cfg(test)]` item.
    pub fn is_test_code(&self, line: u32) -> bool {
        let index = self
            .test_ranges
            .partition_point(|&(start, _)| start <= line);
        index > 0 && self.test_ranges[index - 1].1 >= line
    }

    fn apply_ignore_markers(&mut self, lines: &[&str]) {
        let mut in_region = false;
        for (kind, text) in self.kinds.iter_mut().zip(lines) {
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
        let starts: Vec<bool> = self
            .kinds
            .iter()
            .map(|kind| matches!(kind, LineKind::Start { .. }))
            .collect();
        for kind in &mut self.kinds {
            if let LineKind::Continuation { owner } = *kind {
                if starts.get(owner as usize - 1) != Some(&true) {
                    *kind = LineKind::None;
                }
            }
        }
        let kinds = &self.kinds;
        self.functions
            .retain(|f| matches!(kinds.get(f.line as usize - 1), Some(LineKind::Start { .. })));
    }
}

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

/// Lines as syn numbers them: it skips a byte order mark, so the text scans must too.
fn split_lines(source: &str) -> Vec<&str> {
    source
        .strip_prefix('\u{feff}')
        .unwrap_or(source)
        .lines()
        .collect()
}

fn to_u32(value: usize) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}

/// What the characters of a line are, ignoring comments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TextClass {
    /// Blank or comment only.
    Empty,
    /// Only braces, brackets, parens, semicolons and commas.
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
fn classify_text(lines: &[&str]) -> Vec<TextClass> {
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
                        } else if b"{}[]();,".contains(&c) {
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

/// What a list of attributes says about the item or statement carrying them.
#[derive(Default)]
struct Attrs {
    coverage_off: bool,
    /// `#[cfg(..)]` with a predicate other than plain `test`.
    cfg_gated: bool,
    /// `#[cfg(test)]` or `#[cfg(all(test, ..))]`.
    cfg_test: bool,
    /// An attribute whose path ends in `test`.
    test: bool,
}

impl Attrs {
    fn of(attrs: &[Attribute]) -> Attrs {
        let mut result = Attrs::default();
        for attr in attrs {
            let path = attr.path();
            if path.is_ident("cfg") {
                if let Ok(predicate) = attr.parse_args::<Meta>() {
                    result.cfg_test |= requires_test(&predicate);
                    result.cfg_gated |= !matches!(&predicate, Meta::Path(p) if p.is_ident("test"));
                }
            } else if path.is_ident("cfg_attr") {
                if let Ok(list) =
                    attr.parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated)
                {
                    result.coverage_off |= list.iter().skip(1).any(is_coverage_off);
                }
            } else if is_coverage_off(&attr.meta) {
                result.coverage_off = true;
            } else if path.segments.last().is_some_and(|s| s.ident == "test") {
                result.test = true;
            }
        }
        result
    }
}

fn is_coverage_off(meta: &Meta) -> bool {
    matches!(meta, Meta::List(list) if list.path.is_ident("coverage") && list.tokens.to_string() == "off")
}

/// True when the cfg predicate can only hold in test builds.
fn requires_test(predicate: &Meta) -> bool {
    match predicate {
        Meta::Path(path) => path.is_ident("test"),
        Meta::List(list) if list.path.is_ident("all") => list
            .parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated)
            .is_ok_and(|all| all.iter().any(requires_test)),
        _ => false,
    }
}

/// The attributes of an expression statement. syn attaches them to the leftmost operand, as
/// rustc does.
fn statement_attrs(mut expr: &Expr) -> &[Attribute] {
    loop {
        expr = match expr {
            Expr::Assign(e) => &e.left,
            Expr::Binary(e) => &e.left,
            Expr::Cast(e) => &e.expr,
            Expr::Array(syn::ExprArray { attrs, .. })
            | Expr::Async(syn::ExprAsync { attrs, .. })
            | Expr::Await(syn::ExprAwait { attrs, .. })
            | Expr::Block(syn::ExprBlock { attrs, .. })
            | Expr::Break(syn::ExprBreak { attrs, .. })
            | Expr::Call(syn::ExprCall { attrs, .. })
            | Expr::Closure(syn::ExprClosure { attrs, .. })
            | Expr::Const(syn::ExprConst { attrs, .. })
            | Expr::Continue(syn::ExprContinue { attrs, .. })
            | Expr::Field(syn::ExprField { attrs, .. })
            | Expr::ForLoop(syn::ExprForLoop { attrs, .. })
            | Expr::Group(syn::ExprGroup { attrs, .. })
            | Expr::If(syn::ExprIf { attrs, .. })
            | Expr::Index(syn::ExprIndex { attrs, .. })
            | Expr::Infer(syn::ExprInfer { attrs, .. })
            | Expr::Let(syn::ExprLet { attrs, .. })
            | Expr::Lit(syn::ExprLit { attrs, .. })
            | Expr::Loop(syn::ExprLoop { attrs, .. })
            | Expr::Macro(syn::ExprMacro { attrs, .. })
            | Expr::Match(syn::ExprMatch { attrs, .. })
            | Expr::MethodCall(syn::ExprMethodCall { attrs, .. })
            | Expr::Paren(syn::ExprParen { attrs, .. })
            | Expr::Path(syn::ExprPath { attrs, .. })
            | Expr::Range(syn::ExprRange { attrs, .. })
            | Expr::RawAddr(syn::ExprRawAddr { attrs, .. })
            | Expr::Reference(syn::ExprReference { attrs, .. })
            | Expr::Repeat(syn::ExprRepeat { attrs, .. })
            | Expr::Return(syn::ExprReturn { attrs, .. })
            | Expr::Struct(syn::ExprStruct { attrs, .. })
            | Expr::Try(syn::ExprTry { attrs, .. })
            | Expr::TryBlock(syn::ExprTryBlock { attrs, .. })
            | Expr::Tuple(syn::ExprTuple { attrs, .. })
            | Expr::Unary(syn::ExprUnary { attrs, .. })
            | Expr::Unsafe(syn::ExprUnsafe { attrs, .. })
            | Expr::While(syn::ExprWhile { attrs, .. })
            | Expr::Yield(syn::ExprYield { attrs, .. }) => return attrs,
            _ => return &[],
        };
    }
}

/// `unreachable!(…)` (or `std::`/`core::unreachable!`): the author says no run reaches it, so a
/// reader does not want it counted as a line the tests missed (tarpaulin's convention too).
/// `todo!`, `unimplemented!` and `panic!` stay coverable: tests can and do reach them.
fn is_unreachable(mac: &Macro) -> bool {
    mac.path
        .segments
        .last()
        .is_some_and(|s| s.ident == "unreachable")
}

/// An expression that is only `unreachable!(…)`, or a block holding only that.
fn asserts_unreachable(expr: &Expr) -> bool {
    match expr {
        Expr::Macro(m) => is_unreachable(&m.mac),
        Expr::Block(b) if b.attrs.is_empty() => match b.block.stmts.as_slice() {
            [Stmt::Macro(m)] => is_unreachable(&m.mac),
            [Stmt::Expr(expr, _)] => asserts_unreachable(expr),
            _ => false,
        },
        _ => false,
    }
}

fn delim_span(delimiter: &MacroDelimiter) -> &DelimSpan {
    match delimiter {
        MacroDelimiter::Paren(d) => &d.span,
        MacroDelimiter::Brace(d) => &d.span,
        MacroDelimiter::Bracket(d) => &d.span,
    }
}

fn start_line(span: Span) -> u32 {
    to_u32(span.start().line)
}

fn end_line(span: Span) -> u32 {
    to_u32(span.end().line)
}

struct Walker<'s> {
    lines: &'s [&'s str],
    text: &'s [TextClass],
    kinds: Vec<LineKind>,
    functions: Vec<FunctionInfo>,
    test_ranges: Vec<(u32, u32)>,
    compiled_only: bool,
    /// Inside a const/static initialiser: evaluated at compile time except for closure bodies.
    const_context: bool,
}

impl<'s> Walker<'s> {
    fn new(lines: &'s [&'s str], text: &'s [TextClass]) -> Self {
        Walker {
            lines,
            text,
            kinds: vec![LineKind::None; lines.len()],
            functions: Vec::new(),
            test_ranges: Vec::new(),
            compiled_only: false,
            const_context: false,
        }
    }

    fn finish(mut self) -> SourceAnalysis {
        self.functions.sort_by_key(|f| f.line);
        self.test_ranges.sort_unstable();
        let mut test_ranges: Vec<(u32, u32)> = Vec::with_capacity(self.test_ranges.len());
        for (start, end) in self.test_ranges {
            match test_ranges.last_mut() {
                Some(last) if start <= last.1.saturating_add(1) => last.1 = last.1.max(end),
                _ => test_ranges.push((start, end)),
            }
        }
        SourceAnalysis {
            kinds: self.kinds,
            functions: self.functions,
            test_ranges,
        }
    }

    fn set(&mut self, line: u32, kind: LineKind) {
        if let Some(slot) = line
            .checked_sub(1)
            .and_then(|i| self.kinds.get_mut(i as usize))
        {
            *slot = kind;
        }
    }

    /// Marks `start` as a Start line and the rest of `start..=end` as its continuation.
    fn claim(&mut self, start: u32, end: u32) {
        self.set(
            start,
            LineKind::Start {
                compiled_only: self.compiled_only,
            },
        );
        for line in start + 1..=end {
            self.set(line, LineKind::Continuation { owner: start });
        }
    }

    /// Claims a statement or match arm whose code starts at `start`: the lines of its own
    /// attributes hold no code even inside an enclosing statement.
    fn claim_after_attrs(&mut self, attrs: &[Attribute], start: u32, end: u32) {
        if let Some(first) = attrs.first() {
            for line in start_line(first.pound_token.span)..start {
                self.set(line, LineKind::None);
            }
        }
        self.claim(start, end);
    }

    /// Applies the attributes of `node` around `body`.
    fn scoped(&mut self, attrs: &Attrs, node: &impl Spanned, body: impl FnOnce(&mut Self)) {
        if attrs.coverage_off {
            let (first, last) = full_range(node);
            for line in first..=last {
                self.set(line, LineKind::None);
            }
            return;
        }
        if attrs.cfg_test || attrs.test {
            self.test_ranges.push(full_range(node));
        }
        let outer = self.compiled_only;
        self.compiled_only |= attrs.cfg_gated;
        body(self);
        self.compiled_only = outer;
    }

    fn item(&mut self, item: &Item) {
        match item {
            Item::Fn(f) => self.function(&f.attrs, &f.sig, &f.block, None, item),
            Item::Impl(imp) => {
                let owner = self.type_name(&imp.self_ty);
                self.scoped(&Attrs::of(&imp.attrs), item, |w| {
                    for member in &imp.items {
                        w.impl_item(member, &owner);
                    }
                });
            }
            Item::Trait(tr) => {
                let owner = tr.ident.to_string();
                self.scoped(&Attrs::of(&tr.attrs), item, |w| {
                    for member in &tr.items {
                        w.trait_item(member, &owner);
                    }
                });
            }
            Item::Mod(m) => {
                self.scoped(&Attrs::of(&m.attrs), item, |w| {
                    for inner in m.content.iter().flat_map(|(_, items)| items) {
                        w.item(inner);
                    }
                });
            }
            Item::Macro(m) => {
                self.scoped(&Attrs::of(&m.attrs), item, |w| {
                    if m.mac.path.is_ident("macro_rules") {
                        w.macro_rules(&m.mac);
                    } else {
                        w.item_macro_call(&m.mac);
                    }
                });
            }
            Item::Const(c) => {
                self.scoped(&Attrs::of(&c.attrs), item, |w| {
                    w.const_initialiser(&c.expr);
                });
            }
            Item::Static(s) => {
                self.scoped(&Attrs::of(&s.attrs), item, |w| {
                    w.const_initialiser(&s.expr);
                });
            }
            _ => {}
        }
    }

    fn impl_item(&mut self, member: &ImplItem, owner: &str) {
        match member {
            ImplItem::Fn(f) => self.function(&f.attrs, &f.sig, &f.block, Some(owner), member),
            ImplItem::Const(c) => {
                self.scoped(&Attrs::of(&c.attrs), member, |w| {
                    w.const_initialiser(&c.expr);
                });
            }
            ImplItem::Macro(m) => {
                self.scoped(&Attrs::of(&m.attrs), member, |w| {
                    w.item_macro_call(&m.mac);
                });
            }
            _ => {}
        }
    }

    fn trait_item(&mut self, member: &TraitItem, owner: &str) {
        match member {
            TraitItem::Fn(f) => {
                if let Some(block) = &f.default {
                    self.function(&f.attrs, &f.sig, block, Some(owner), member);
                }
            }
            TraitItem::Const(c) => {
                if let Some((_, expr)) = &c.default {
                    self.scoped(&Attrs::of(&c.attrs), member, |w| {
                        w.const_initialiser(expr);
                    });
                }
            }
            TraitItem::Macro(m) => {
                self.scoped(&Attrs::of(&m.attrs), member, |w| {
                    w.item_macro_call(&m.mac);
                });
            }
            _ => {}
        }
    }

    fn function(
        &mut self,
        attrs: &[Attribute],
        sig: &Signature,
        block: &Block,
        owner: Option<&str>,
        node: &impl Spanned,
    ) {
        let flags = Attrs::of(attrs);
        self.scoped(&flags, node, |w| {
            let line = start_line(sig.fn_token.span);
            let open = start_line(block.brace_token.span.open());
            let end_line = start_line(block.brace_token.span.close());
            w.claim(line, open);
            if end_line > open {
                w.set(end_line, LineKind::Continuation { owner: line });
            }
            let name = match owner {
                Some(owner) => format!("{owner}::{}", sig.ident),
                None => sig.ident.to_string(),
            };
            w.functions.push(FunctionInfo {
                name,
                line,
                end_line,
                is_test: flags.test,
                compiled_only: w.compiled_only,
            });
            w.visit_block(block);
        });
    }

    /// Only the closures of a const or static initialiser run at run time.
    fn const_initialiser(&mut self, expr: &Expr) {
        let outer = std::mem::replace(&mut self.const_context, true);
        self.visit_expr(expr);
        self.const_context = outer;
    }

    /// No statement structure is known inside a macro_rules! body: every code line may or may not
    /// expand to machine code, so the binary decides.
    fn macro_rules(&mut self, mac: &Macro) {
        let span = delim_span(&mac.delimiter);
        let open = start_line(span.open());
        let close = start_line(span.close());
        for line in open + 1..close {
            if self.text.get(line as usize - 1) == Some(&TextClass::Code) {
                self.set(
                    line,
                    LineKind::Start {
                        compiled_only: true,
                    },
                );
            }
        }
    }

    /// An item-position macro may expand to functions or to nothing at run time.
    fn item_macro_call(&mut self, mac: &Macro) {
        let start = start_line(mac.path.span());
        let end = end_line(delim_span(&mac.delimiter).close());
        let outer = std::mem::replace(&mut self.compiled_only, true);
        self.claim(start, end);
        self.compiled_only = outer;
    }

    /// An item inside a block: its lines belong to the item, not to the enclosing statement.
    fn nested_item(&mut self, item: &Item) {
        let (first, last) = full_range(item);
        for line in first..=last {
            if let Some(kind @ LineKind::Continuation { .. }) =
                self.kinds.get_mut(line as usize - 1)
            {
                *kind = LineKind::None;
            }
        }
        self.item(item);
    }

    fn statement(&mut self, stmt: &Stmt) {
        let unreachable = match stmt {
            Stmt::Macro(m) => is_unreachable(&m.mac),
            Stmt::Expr(expr, _) => asserts_unreachable(expr),
            _ => false,
        };
        if unreachable {
            let (first, last) = full_range(stmt);
            for line in first..=last {
                self.set(line, LineKind::None);
            }
            return;
        }
        // Outer attributes come first, so the code starts at the first token after them.
        let (attrs, start, end) = match stmt {
            Stmt::Local(local) => (
                &local.attrs[..],
                start_line(local.let_token.span),
                end_line(local.semi_token.span),
            ),
            Stmt::Macro(m) => {
                let end = m.semi_token.map_or_else(
                    || end_line(delim_span(&m.mac.delimiter).close()),
                    |semi| end_line(semi.span),
                );
                (&m.attrs[..], start_line(m.mac.path.span()), end)
            }
            Stmt::Expr(expr, semi) => {
                let attrs = statement_attrs(expr);
                let span = expr.span();
                let start = attrs.last().map_or_else(
                    || start_line(span),
                    |last| self.code_after(last.bracket_token.span.close().end()),
                );
                let end = semi.map_or_else(|| end_line(span), |semi| end_line(semi.span));
                (attrs, start, end)
            }
            Stmt::Item(item) => {
                self.nested_item(item);
                return;
            }
        };
        // `loop {`, `unsafe {` and `{` open code without being any: the opener line's only
        // machine code is a loop's back-edge jump (which runs once per pass after the first, so a
        // loop left in its first pass would read 0 there while its body ran). The statements
        // inside count; one on the opener's line claims it back.
        let opener_only = matches!(
            stmt,
            Stmt::Expr(Expr::Loop(_) | Expr::Unsafe(_) | Expr::Block(_), _)
        );
        self.scoped(&Attrs::of(attrs), stmt, |w| {
            w.claim_after_attrs(attrs, start, end);
            if opener_only {
                w.set(start, LineKind::None);
            }
            visit::visit_stmt(w, stmt);
        });
    }

    /// Line of the first code after `position` (the end of an attribute).
    fn code_after(&self, position: LineColumn) -> u32 {
        let line = to_u32(position.line);
        let text = self.lines.get(position.line - 1).copied().unwrap_or("");
        let rest = text
            .char_indices()
            .nth(position.column)
            .map_or("", |(at, _)| text[at..].trim_start());
        if !rest.is_empty() && !rest.starts_with("//") && !rest.starts_with("/*") {
            return line;
        }
        (line + 1..=to_u32(self.text.len()))
            .find(|&l| self.text[l as usize - 1] != TextClass::Empty)
            .unwrap_or(line)
    }

    /// Name used for `Type::method`: the last path segment, or the source text for other types.
    fn type_name(&self, ty: &Type) -> String {
        match ty {
            Type::Path(path) => path
                .path
                .segments
                .last()
                .map(|s| s.ident.to_string())
                .unwrap_or_default(),
            Type::Reference(r) => self.type_name(&r.elem),
            Type::Paren(p) => self.type_name(&p.elem),
            Type::Group(g) => self.type_name(&g.elem),
            Type::Ptr(p) => self.type_name(&p.elem),
            other => self.snippet(other.span()),
        }
    }

    fn snippet(&self, span: Span) -> String {
        let (start, end) = (span.start(), span.end());
        (start.line..=end.line)
            .filter_map(|line| self.lines.get(line - 1))
            .enumerate()
            .map(|(i, text)| {
                let chars = text.chars();
                let taken: String = if start.line == end.line {
                    chars
                        .skip(start.column)
                        .take(end.column - start.column)
                        .collect()
                } else if i == 0 {
                    chars.skip(start.column).collect()
                } else if start.line + i == end.line {
                    chars.take(end.column).collect()
                } else {
                    chars.collect()
                };
                taken.trim().to_owned()
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// First line (attributes included) and last line of a syntax node.
fn full_range(node: &impl Spanned) -> (u32, u32) {
    let span = node.span();
    (start_line(span), end_line(span))
}

impl<'ast> Visit<'ast> for Walker<'_> {
    fn visit_block(&mut self, block: &'ast Block) {
        for stmt in &block.stmts {
            if !self.const_context {
                self.statement(stmt);
            } else if !matches!(stmt, Stmt::Item(_)) {
                visit::visit_stmt(self, stmt);
            }
        }
    }

    fn visit_expr_if(&mut self, expr: &'ast ExprIf) {
        // `else if cond`: the condition runs only when every condition before it was false, so it
        // is a line of its own, not a later line of the `if` statement.
        if let Some((_, otherwise)) = expr.else_branch.as_ref().filter(|_| !self.const_context) {
            if let Expr::If(next) = &**otherwise {
                self.claim(start_line(next.if_token.span), end_line(next.cond.span()));
            }
        }
        visit::visit_expr_if(self, expr);
    }

    fn visit_arm(&mut self, arm: &'ast Arm) {
        if self.const_context {
            visit::visit_arm(self, arm);
            return;
        }
        let (start, end) = (start_line(arm.pat.span()), end_line(arm.span()));
        if asserts_unreachable(&arm.body) {
            for line in start..=end {
                self.set(line, LineKind::None);
            }
            return;
        }
        self.scoped(&Attrs::of(&arm.attrs), arm, |w| {
            w.claim_after_attrs(&arm.attrs, start, end);
            visit::visit_arm(w, arm);
        });
    }

    fn visit_expr_closure(&mut self, closure: &'ast ExprClosure) {
        if !self.const_context {
            visit::visit_expr_closure(self, closure);
            return;
        }
        self.const_context = false;
        // Outside a const initialiser the enclosing statement owns an expression body; here
        // nothing else would.
        if !matches!(&*closure.body, Expr::Block(_)) {
            let span = closure.body.span();
            self.claim(start_line(span), end_line(span));
        }
        self.visit_expr(&closure.body);
        self.const_context = true;
    }

    // The rest hold no run-time code: const blocks, array lengths, types, patterns, generic
    // arguments and attributes are all evaluated by the compiler.
    fn visit_expr_const(&mut self, _: &'ast ExprConst) {}

    fn visit_expr_repeat(&mut self, repeat: &'ast ExprRepeat) {
        self.visit_expr(&repeat.expr);
    }

    fn visit_type(&mut self, _: &'ast Type) {}

    fn visit_pat(&mut self, _: &'ast Pat) {}

    fn visit_generic_argument(&mut self, _: &'ast GenericArgument) {}

    fn visit_attribute(&mut self, _: &'ast Attribute) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Strips the first newline and the common indentation so fixtures can be indented.
    fn dedent(text: &str) -> String {
        let text = text.strip_prefix('\n').unwrap_or(text);
        let indent = text
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| line.len() - line.trim_start().len())
            .min()
            .unwrap_or(0);
        let lines: Vec<&str> = text
            .lines()
            .map(|line| line.get(indent..).unwrap_or("").trim_end())
            .collect();
        lines.join("\n").trim_end().to_owned()
    }

    /// One line per source line: `-` None, `S` Start, `s` compiled-only Start, `C<owner>`.
    fn render(analysis: &SourceAnalysis, source: &str) -> String {
        let lines: Vec<String> = source
            .lines()
            .zip(1..)
            .map(|(text, line)| {
                let tag = match analysis.kind(line) {
                    LineKind::None => "-".to_owned(),
                    LineKind::Start {
                        compiled_only: false,
                    } => "S".to_owned(),
                    LineKind::Start {
                        compiled_only: true,
                    } => "s".to_owned(),
                    LineKind::Continuation { owner } => format!("C{owner}"),
                };
                format!("{tag:<4}{text}").trim_end().to_owned()
            })
            .collect();
        lines.join("\n")
    }

    fn check(source: &str, expected: &str) -> SourceAnalysis {
        let source = dedent(source);
        let analysis = analyze(&source).expect("fixture parses");
        assert_eq!(render(&analysis, &source), dedent(expected));
        analysis
    }

    fn function(name: &str, line: u32, end_line: u32) -> FunctionInfo {
        FunctionInfo {
            name: name.to_owned(),
            line,
            end_line,
            is_test: false,
            compiled_only: false,
        }
    }

    #[test]
    fn multi_line_signature() {
        let analysis = check(
            r#"
            /// Moves money.
            #[inline]
            pub fn transfer(
                from: &mut Account,
                to: &mut Account,
            ) -> Result<(), Error> {
                from.withdraw(10)?;
                to.deposit(10);
                Ok(())
            }
            "#,
            r#"
            -   /// Moves money.
            -   #[inline]
            S   pub fn transfer(
            C3      from: &mut Account,
            C3      to: &mut Account,
            C3  ) -> Result<(), Error> {
            S       from.withdraw(10)?;
            S       to.deposit(10);
            S       Ok(())
            C3  }
            "#,
        );
        assert_eq!(analysis.functions(), [function("transfer", 3, 10)]);
        assert_eq!(analysis.line_count(), 10);
    }

    #[test]
    fn let_with_method_chain() {
        check(
            r#"
            fn total(items: &[Item]) -> u64 {
                let sum = items
                    .iter()
                    .map(|item| item.price)
                    .sum::<u64>();
                sum
            }
            "#,
            r#"
            S   fn total(items: &[Item]) -> u64 {
            S       let sum = items
            C2          .iter()
            C2          .map(|item| item.price)
            C2          .sum::<u64>();
            S       sum
            C1  }
            "#,
        );
    }

    #[test]
    fn if_else_chain() {
        check(
            r#"
            fn sign(x: i32) -> i32 {
                if x > 0 {
                    1
                } else if x < 0 {
                    -1
                } else {
                    0
                }
            }
            "#,
            r#"
            S   fn sign(x: i32) -> i32 {
            S       if x > 0 {
            S           1
            S       } else if x < 0 {
            S           -1
            C2      } else {
            S           0
            C2      }
            C1  }
            "#,
        );
    }

    #[test]
    fn unreachable_is_not_coverable_and_todo_is() {
        check(
            r#"
            fn pick(n: u8) -> u8 {
                match n {
                    0 => 1,
                    1 => unreachable!("one is filtered out"),
                    _ => {
                        unreachable!()
                    }
                }
            }
            fn later(flag: bool) -> u8 {
                if flag {
                    std::unreachable!(
                        "never"
                    );
                }
                todo!()
            }
            "#,
            r#"
            S   fn pick(n: u8) -> u8 {
            S       match n {
            S           0 => 1,
            -           1 => unreachable!("one is filtered out"),
            -           _ => {
            -               unreachable!()
            -           }
            C2      }
            C1  }
            S   fn later(flag: bool) -> u8 {
            S       if flag {
            -           std::unreachable!(
            -               "never"
            -           );
            C11     }
            S       todo!()
            C10 }
            "#,
        );
    }

    #[test]
    fn else_if_conditions_are_lines_of_their_own() {
        check(
            r#"
            fn grade(score: u32) -> &'static str {
                let letter = if score >= 90 {
                    "A"
                } else if score >= 80
                    && score < 90
                {
                    "B"
                } else if let Some(x) = Some(score) { "C" } else {
                    "F"
                };
                letter
            }
            "#,
            r#"
            S   fn grade(score: u32) -> &'static str {
            S       let letter = if score >= 90 {
            S           "A"
            S       } else if score >= 80
            C4          && score < 90
            C2      {
            S           "B"
            S       } else if let Some(x) = Some(score) { "C" } else {
            S           "F"
            C2      };
            S       letter
            C1  }
            "#,
        );
    }

    #[test]
    fn block_openers_hold_no_line_unless_code_shares_it() {
        check(
            r#"
            fn f(p: *const u8) -> u8 {
                unsafe {
                    *p
                }
            }
            fn g() -> u32 {
                {
                    let x = 1;
                    x
                }
            }
            fn h(p: *const u8) -> u8 {
                unsafe { *p }
            }
            "#,
            r#"
            S   fn f(p: *const u8) -> u8 {
            -       unsafe {
            S           *p
            -       }
            C1  }
            S   fn g() -> u32 {
            -       {
            S           let x = 1;
            S           x
            -       }
            C6  }
            S   fn h(p: *const u8) -> u8 {
            S       unsafe { *p }
            C12 }
            "#,
        );
    }

    #[test]
    fn match_arms() {
        check(
            r#"
            fn describe(n: u8) -> usize {
                let label = match n {
                    0 => "zero",
                    1 | 2 => {
                        let small = "small";
                        small
                    }
                    _ => "many",
                };
                match label { "zero" => 0, _ => 1 }
            }
            "#,
            r#"
            S   fn describe(n: u8) -> usize {
            S       let label = match n {
            S           0 => "zero",
            S           1 | 2 => {
            S               let small = "small";
            S               small
            C4          }
            S           _ => "many",
            C2      };
            S       match label { "zero" => 0, _ => 1 }
            C1  }
            "#,
        );
    }

    #[test]
    fn loops() {
        check(
            r#"
            fn run(limit: u32) {
                let mut n = 0;
                loop {
                    n += 1;
                    if n > limit {
                        break;
                    }
                }
                while n > 0 {
                    n -= 1;
                }
                for i in 0..n {
                    println!(
                        "{i}"
                    );
                }
            }
            "#,
            r#"
            S   fn run(limit: u32) {
            S       let mut n = 0;
            -       loop {
            S           n += 1;
            S           if n > limit {
            S               break;
            C5          }
            -       }
            S       while n > 0 {
            S           n -= 1;
            C9      }
            S       for i in 0..n {
            S           println!(
            C13             "{i}"
            C13         );
            C12     }
            C1  }
            "#,
        );
    }

    #[test]
    fn closure_with_block_body() {
        let analysis = check(
            r#"
            fn spawn_all(jobs: Vec<Job>) {
                jobs.into_iter().for_each(|job| {
                    let id = job.id;
                    job.run(id);
                });
                let short = count(|| 1);
            }
            "#,
            r#"
            S   fn spawn_all(jobs: Vec<Job>) {
            S       jobs.into_iter().for_each(|job| {
            S           let id = job.id;
            S           job.run(id);
            C2      });
            S       let short = count(|| 1);
            C1  }
            "#,
        );
        assert_eq!(analysis.functions(), [function("spawn_all", 1, 7)]);
    }

    #[test]
    fn nested_fns() {
        let analysis = check(
            r#"
            fn outer() -> u32 {
                fn double(x: u32) -> u32 {
                    x * 2
                }
                let value = {
                    #[inline]
                    fn seven() -> u32 {
                        7
                    }
                    seven()
                };
                double(value)
            }
            "#,
            r#"
            S   fn outer() -> u32 {
            S       fn double(x: u32) -> u32 {
            S           x * 2
            C2      }
            S       let value = {
            -           #[inline]
            S           fn seven() -> u32 {
            S               7
            C7          }
            S           seven()
            C5      };
            S       double(value)
            C1  }
            "#,
        );
        assert_eq!(
            analysis.functions(),
            [
                function("outer", 1, 13),
                function("double", 2, 4),
                function("seven", 7, 9)
            ]
        );
        let at = |line| analysis.function_at(line).map(|f| f.name.as_str());
        assert_eq!(at(3), Some("double"));
        assert_eq!(at(8), Some("seven"));
        assert_eq!(at(11), Some("outer"));
        assert_eq!(at(1), Some("outer"));
        assert_eq!(at(14), None);
    }

    #[test]
    fn impl_methods_are_named_after_the_type() {
        let analysis = check(
            r#"
            pub struct Ledger {
                balance: i64,
            }

            impl Ledger {
                pub const LIMIT: i64 = 100;

                pub fn deposit(&mut self, amount: i64) {
                    self.balance += amount;
                }
            }

            impl<'a> std::fmt::Display for &'a Ledger {
                fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    write!(f, "{}", self.balance)
                }
            }

            impl Summary for [u8] {
                fn summary(&self) -> usize {
                    self.len()
                }
            }
            "#,
            r#"
            -   pub struct Ledger {
            -       balance: i64,
            -   }
            -
            -   impl Ledger {
            -       pub const LIMIT: i64 = 100;
            -
            S       pub fn deposit(&mut self, amount: i64) {
            S           self.balance += amount;
            C8      }
            -   }
            -
            -   impl<'a> std::fmt::Display for &'a Ledger {
            S       fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            S           write!(f, "{}", self.balance)
            C14     }
            -   }
            -
            -   impl Summary for [u8] {
            S       fn summary(&self) -> usize {
            S           self.len()
            C20     }
            -   }
            "#,
        );
        assert_eq!(
            analysis.functions(),
            [
                function("Ledger::deposit", 8, 10),
                function("Ledger::fmt", 14, 16),
                function("[u8]::summary", 20, 22)
            ]
        );
    }

    #[test]
    fn trait_default_method() {
        let analysis = check(
            r#"
            trait Greeter {
                fn name(&self) -> String;

                fn greet(&self) -> String {
                    format!("hello {}", self.name())
                }
            }
            "#,
            r#"
            -   trait Greeter {
            -       fn name(&self) -> String;
            -
            S       fn greet(&self) -> String {
            S           format!("hello {}", self.name())
            C4      }
            -   }
            "#,
        );
        assert_eq!(analysis.functions(), [function("Greeter::greet", 4, 6)]);
    }

    #[test]
    fn declarations_are_not_code() {
        let analysis = check(
            r#"
            //! Module docs.
            use std::collections::HashMap;

            /// A colour.
            #[derive(Debug, Clone)]
            pub enum Colour {
                Red,
                Green = { 1 + 1 },
            }

            const MAX: usize = 10;
            static NAMES: [&str; 2] = ["a", "b"];
            type Map = HashMap<String, usize>;
            mod other;
            extern crate alloc;
            extern "C" {
                fn abs(x: i32) -> i32;
            }

            /* A block
               comment */
            pub struct Point {
                x: [i32; { 2 }],
            }
            "#,
            r#"
            -   //! Module docs.
            -   use std::collections::HashMap;
            -
            -   /// A colour.
            -   #[derive(Debug, Clone)]
            -   pub enum Colour {
            -       Red,
            -       Green = { 1 + 1 },
            -   }
            -
            -   const MAX: usize = 10;
            -   static NAMES: [&str; 2] = ["a", "b"];
            -   type Map = HashMap<String, usize>;
            -   mod other;
            -   extern crate alloc;
            -   extern "C" {
            -       fn abs(x: i32) -> i32;
            -   }
            -
            -   /* A block
            -      comment */
            -   pub struct Point {
            -       x: [i32; { 2 }],
            -   }
            "#,
        );
        assert!(analysis.functions().is_empty());
    }

    #[test]
    fn closures_in_static_initialisers_run_at_run_time() {
        check(
            r#"
            static TABLE: LazyLock<Vec<u8>> = LazyLock::new(|| {
                let mut table = Vec::new();
                table.push(1);
                table
            });
            static ZERO: LazyLock<u8> = LazyLock::new(|| 0);
            const SIZE: usize = {
                let n = 4;
                n * 2
            };
            fn buffer() -> [u8; SIZE] {
                let values = const { [0; 8] };
                values
            }
            "#,
            r#"
            -   static TABLE: LazyLock<Vec<u8>> = LazyLock::new(|| {
            S       let mut table = Vec::new();
            S       table.push(1);
            S       table
            -   });
            S   static ZERO: LazyLock<u8> = LazyLock::new(|| 0);
            -   const SIZE: usize = {
            -       let n = 4;
            -       n * 2
            -   };
            S   fn buffer() -> [u8; SIZE] {
            S       let values = const { [0; 8] };
            S       values
            C11 }
            "#,
        );
    }

    #[test]
    fn test_module_and_test_fns() {
        let analysis = check(
            r#"
            fn add(a: i32, b: i32) -> i32 {
                a + b
            }

            #[cfg(test)]
            mod tests {
                use super::*;

                fn fixture() -> i32 {
                    2
                }

                #[test]
                fn adds() {
                    assert_eq!(add(fixture(), 2), 4);
                }

                #[tokio::test]
                async fn adds_async() {
                    assert_eq!(add(1, 1), 2);
                }
            }
            "#,
            r#"
            S   fn add(a: i32, b: i32) -> i32 {
            S       a + b
            C1  }
            -
            -   #[cfg(test)]
            -   mod tests {
            -       use super::*;
            -
            S       fn fixture() -> i32 {
            S           2
            C9      }
            -
            -       #[test]
            S       fn adds() {
            S           assert_eq!(add(fixture(), 2), 4);
            C14     }
            -
            -       #[tokio::test]
            S       async fn adds_async() {
            S           assert_eq!(add(1, 1), 2);
            C19     }
            -   }
            "#,
        );
        let test = |name: &str, line, end_line| FunctionInfo {
            is_test: true,
            ..function(name, line, end_line)
        };
        assert_eq!(
            analysis.functions(),
            [
                function("add", 1, 3),
                function("fixture", 9, 11),
                test("adds", 14, 16),
                test("adds_async", 19, 21)
            ]
        );
        let test_lines: Vec<u32> = (0..=23).filter(|&l| analysis.is_test_code(l)).collect();
        assert_eq!(test_lines, (5..=22).collect::<Vec<u32>>());
    }

    #[test]
    fn test_fn_outside_a_test_module() {
        let analysis = check(
            r#"
            fn helper() {}

            #[test]
            fn standalone() {
                helper();
            }
            "#,
            r#"
            S   fn helper() {}
            -
            -   #[test]
            S   fn standalone() {
            S       helper();
            C4  }
            "#,
        );
        let test_lines: Vec<u32> = (0..=7).filter(|&l| analysis.is_test_code(l)).collect();
        assert_eq!(test_lines, [3, 4, 5, 6]);
        assert!(analysis.functions()[1].is_test);
        assert!(!analysis.functions()[0].is_test);
    }

    #[test]
    fn cfg_gated_items_are_compiled_only() {
        let analysis = check(
            r#"
            #[cfg(feature = "x")]
            fn only_with_x() {
                work();
            }

            #[cfg(all(test, unix))]
            fn unix_test_helper() {
                work();
            }

            #[cfg(not(test))]
            impl Engine {
                fn start(&self) {
                    work();
                }
            }
            "#,
            r#"
            -   #[cfg(feature = "x")]
            s   fn only_with_x() {
            s       work();
            C2  }
            -
            -   #[cfg(all(test, unix))]
            s   fn unix_test_helper() {
            s       work();
            C7  }
            -
            -   #[cfg(not(test))]
            -   impl Engine {
            s       fn start(&self) {
            s           work();
            C13     }
            -   }
            "#,
        );
        let gated = |name: &str, line, end_line| FunctionInfo {
            compiled_only: true,
            ..function(name, line, end_line)
        };
        assert_eq!(
            analysis.functions(),
            [
                gated("only_with_x", 2, 4),
                gated("unix_test_helper", 7, 9),
                gated("Engine::start", 13, 15)
            ]
        );
        let test_lines: Vec<u32> = (0..=17).filter(|&l| analysis.is_test_code(l)).collect();
        assert_eq!(test_lines, [6, 7, 8, 9]);
    }

    #[test]
    fn statement_attributes() {
        let analysis = check(
            r#"
            fn check(x: u32) {
                #[cfg(debug_assertions)]
                validate(
                    x,
                );
                #[allow(unused_variables)] let y = x;
                #[rustfmt::skip] tidy(x);
                #[cfg(test)]
                record(x);
                #[coverage(off)]
                trace(
                    x,
                );
                let done = match x {
                    #[cfg(unix)]
                    0 => run(x),
                    _ => false,
                };
            }
            "#,
            r#"
            S   fn check(x: u32) {
            -       #[cfg(debug_assertions)]
            s       validate(
            C3          x,
            C3      );
            S       #[allow(unused_variables)] let y = x;
            S       #[rustfmt::skip] tidy(x);
            -       #[cfg(test)]
            S       record(x);
            -       #[coverage(off)]
            -       trace(
            -           x,
            -       );
            S       let done = match x {
            -           #[cfg(unix)]
            s           0 => run(x),
            S           _ => false,
            C14     };
            C1  }
            "#,
        );
        let test_lines: Vec<u32> = (0..=20).filter(|&l| analysis.is_test_code(l)).collect();
        assert_eq!(test_lines, [8, 9]);
    }

    #[test]
    fn coverage_off_items_are_ignored() {
        let analysis = check(
            r#"
            #[coverage(off)]
            fn skipped() {
                work();
            }

            #[cfg_attr(coverage_nightly, coverage(off))]
            impl Engine {
                fn hidden(&self) {
                    work();
                }
            }

            fn kept() {
                let f = #[coverage(off)] || {
                    work();
                };
            }
            "#,
            r#"
            -   #[coverage(off)]
            -   fn skipped() {
            -       work();
            -   }
            -
            -   #[cfg_attr(coverage_nightly, coverage(off))]
            -   impl Engine {
            -       fn hidden(&self) {
            -           work();
            -       }
            -   }
            -
            S   fn kept() {
            S       let f = #[coverage(off)] || {
            S           work();
            C14     };
            C13 }
            "#,
        );
        assert_eq!(analysis.functions(), [function("kept", 13, 17)]);
    }

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

    #[test]
    fn macros() {
        check(
            r#"
            #[macro_export]
            macro_rules! square {
                ($x:expr) => {
                    // Squares.
                    $x * $x
                };
            }

            square_fns!(a, b);

            make_fn! {
                name = c,
            }
            "#,
            r#"
            -   #[macro_export]
            -   macro_rules! square {
            s       ($x:expr) => {
            -           // Squares.
            s           $x * $x
            -       };
            -   }
            -
            s   square_fns!(a, b);
            -
            s   make_fn! {
            C11     name = c,
            C11 }
            "#,
        );
        check(
            r#"
            fn twice_work() {
                macro_rules! twice {
                    ($e:expr) => { $e; $e };
                }
                twice!(work());
            }
            "#,
            r#"
            S   fn twice_work() {
            -       macro_rules! twice {
            s           ($e:expr) => { $e; $e };
            -       }
            S       twice!(work());
            C1  }
            "#,
        );
    }

    #[test]
    fn syntax_error_reports_its_position() {
        let source = "fn ok() {}\n\nfn broken() {\n    let = 5;\n}\n";
        match analyze(source) {
            Err(AnalysisError::Parse { line, column, .. }) => assert_eq!((line, column), (4, 9)),
            Ok(_) => panic!("broken source parsed"),
        }
        match analyze("fn open() {\n    work();\n") {
            Err(AnalysisError::Parse { line, .. }) => assert_eq!(line, 1),
            Ok(_) => panic!("unbalanced source parsed"),
        }
    }

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

    #[test]
    fn out_of_range_lines_are_none() {
        let analysis = analyze("fn f() {\n    g();\n}\n").expect("parses");
        assert_eq!(analysis.line_count(), 3);
        assert_eq!(analysis.kind(0), LineKind::None);
        assert_eq!(analysis.kind(4), LineKind::None);
        assert_eq!(
            analysis.kind(2),
            LineKind::Start {
                compiled_only: false
            }
        );
    }

    #[test]
    fn survives_a_serde_round_trip() {
        let source =
            "#[cfg(test)]\nmod tests {\n    #[test]\n    fn t() {\n        run();\n    }\n}\n";
        let analysis = analyze(source).expect("parses");
        let json = serde_json::to_string(&analysis).expect("serializes");
        let back: SourceAnalysis = serde_json::from_str(&json).expect("deserializes");
        assert_eq!(render(&back, source), render(&analysis, source));
        assert_eq!(back.functions(), analysis.functions());
        assert!((1..=7).all(|line| back.is_test_code(line)));
    }
}
