//! `macro_rules!` matching for the common subset, as rustc does it: which rule an invocation takes
//! (the first whose matcher matches) and how often each `$(…)` of that matcher repeats.
//!
//! rustc matches rustc tokens, where `::`, `=>` or `'a` are one token (proc_macro2 splits them
//! into joint punctuation), so inputs are glued into such tokens first. Fragments (`$e:expr`)
//! are parsed with syn, and a match that is not unique is no match rustc would accept: anything
//! this cannot tell like rustc is [`Undecided`], never a guess.

use std::collections::BTreeMap;
use std::rc::Rc;

use proc_macro2::{Delimiter, Spacing, TokenStream, TokenTree};
use syn::parse::{ParseStream, Parser};
use syn::{Token, Type};

/// How a metavariable is bound: once, or once for each pass of a repetition (nested as deep as
/// the repetitions around it in the matcher).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Bound {
    Once,
    Repeated(Vec<Bound>),
}

pub(super) type Bindings = BTreeMap<String, Bound>;

/// A construct outside the supported subset, an input rustc would reject as ambiguous, or more
/// work than [`BUDGET`] allows.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Undecided;

/// Matching may branch at each repetition; a pathological matcher could take exponential time,
/// a long repetition copies its passes for each way on, and a fragment is parsed from a copy of
/// the tokens after it. Units: states, passes and tokens copied.
const BUDGET: usize = 2_000_000;

/// One rustc token, or a delimited group.
#[derive(Clone, Debug)]
enum Kind {
    Punct(String),
    Lifetime(String),
    Ident(String),
    Literal(String),
    Group(Delimiter, Stream),
}

#[derive(Clone, Debug)]
struct Token {
    /// Index of its first token tree in the stream's `trees`.
    tree: usize,
    kind: Kind,
}

/// Token trees and the rustc tokens they make.
#[derive(Clone, Debug)]
struct Stream {
    trees: Vec<TokenTree>,
    tokens: Vec<Token>,
}

/// The punctuation rustc lexes as one token.
const GLUED: [&str; 25] = [
    "==", "!=", "<=", ">=", "&&", "||", "+=", "-=", "*=", "/=", "%=", "^=", "&=", "|=", "<<", ">>",
    "<<=", ">>=", "..", "...", "..=", "::", "->", "=>", "<-",
];

impl Kind {
    /// Equal as rustc compares tokens; never for groups, which a matcher matches element by
    /// element.
    fn same(&self, other: &Kind) -> bool {
        match (self, other) {
            (Kind::Punct(a), Kind::Punct(b))
            | (Kind::Lifetime(a), Kind::Lifetime(b))
            | (Kind::Ident(a), Kind::Ident(b))
            | (Kind::Literal(a), Kind::Literal(b)) => a == b,
            _ => false,
        }
    }
}

impl Stream {
    fn new(stream: TokenStream) -> Stream {
        let trees: Vec<TokenTree> = stream.into_iter().collect();
        let mut tokens = Vec::new();
        let mut i = 0;
        while i < trees.len() {
            let start = i;
            let kind = match &trees[i] {
                TokenTree::Group(group) => {
                    Kind::Group(group.delimiter(), Stream::new(group.stream()))
                }
                TokenTree::Ident(ident) => Kind::Ident(ident.to_string()),
                TokenTree::Literal(literal) => Kind::Literal(literal.to_string()),
                TokenTree::Punct(p) if p.as_char() == '\'' => match trees.get(i + 1) {
                    Some(TokenTree::Ident(name)) => {
                        i += 1;
                        Kind::Lifetime(format!("'{name}"))
                    }
                    _ => Kind::Punct("'".to_owned()),
                },
                TokenTree::Punct(p) => {
                    let mut text = p.as_char().to_string();
                    let mut spacing = p.spacing();
                    while let (Spacing::Joint, Some(TokenTree::Punct(next))) =
                        (spacing, trees.get(i + 1))
                    {
                        let glued = format!("{text}{}", next.as_char());
                        if !GLUED.contains(&glued.as_str()) {
                            break;
                        }
                        text = glued;
                        spacing = next.spacing();
                        i += 1;
                    }
                    Kind::Punct(text)
                }
            };
            tokens.push(Token { tree: start, kind });
            i += 1;
        }
        Stream { trees, tokens }
    }

    fn is(&self, at: usize, kind: &Kind) -> bool {
        self.tokens.get(at).is_some_and(|t| t.kind.same(kind))
    }

    fn is_punct(&self, at: usize, text: &str) -> bool {
        matches!(self.tokens.get(at), Some(Token { kind: Kind::Punct(p), .. }) if p == text)
    }

    fn is_ident(&self, at: usize, text: &str) -> bool {
        matches!(self.tokens.get(at), Some(Token { kind: Kind::Ident(i), .. }) if i == text)
    }

    fn is_literal(&self, at: usize) -> bool {
        matches!(
            self.tokens.get(at),
            Some(Token {
                kind: Kind::Literal(_),
                ..
            })
        ) || self.is_ident(at, "true")
            || self.is_ident(at, "false")
    }
}

/// What a `$name:fragment` matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fragment {
    Ident,
    Lifetime,
    Literal,
    Tt,
    Block,
    Parsed(Syntax),
}

/// The fragments read with syn's parsers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Syntax {
    Item,
    Vis,
    Meta,
    Stmt,
    Ty,
    Path,
    Expr,
    Pat,
    PatParam,
}

impl Fragment {
    fn named(name: &str) -> Option<Fragment> {
        Some(match name {
            "ident" => Fragment::Ident,
            "lifetime" => Fragment::Lifetime,
            "literal" => Fragment::Literal,
            "tt" => Fragment::Tt,
            "block" => Fragment::Block,
            "item" => Fragment::Parsed(Syntax::Item),
            "vis" => Fragment::Parsed(Syntax::Vis),
            "meta" => Fragment::Parsed(Syntax::Meta),
            "stmt" => Fragment::Parsed(Syntax::Stmt),
            "ty" => Fragment::Parsed(Syntax::Ty),
            "path" => Fragment::Parsed(Syntax::Path),
            "expr" | "expr_2021" => Fragment::Parsed(Syntax::Expr),
            "pat" => Fragment::Parsed(Syntax::Pat),
            "pat_param" => Fragment::Parsed(Syntax::PatParam),
            _ => return None,
        })
    }
}

#[derive(Clone, Debug)]
enum Element {
    Token(Kind),
    Group(Delimiter, Vec<Element>),
    Variable(String, Fragment),
    Repetition(Repetition),
}

#[derive(Clone, Debug)]
struct Repetition {
    elements: Vec<Element>,
    separator: Option<Kind>,
    /// `*`, `+` or `?`.
    operator: char,
    /// The metavariables it binds, at any depth.
    names: Vec<String>,
}

/// The passes of a repetition so far, the last first: the ways on from them share them.
struct Passes {
    last: Bindings,
    before: Option<Rc<Passes>>,
    count: usize,
}

/// One pass after another, not recursively: a repetition may have many thousands.
impl Drop for Passes {
    fn drop(&mut self) {
        let mut next = self.before.take();
        while let Some(shared) = next {
            next = Rc::try_unwrap(shared)
                .ok()
                .and_then(|mut pass| pass.before.take());
        }
    }
}

/// The matcher of one rule (`(…)` before its `=>`).
#[derive(Clone, Debug)]
pub(super) struct Matcher(Vec<Element>);

impl Matcher {
    /// `None` for a construct outside the supported subset (`$crate`, a fragment kind unknown
    /// here, a repetition with a delimited separator).
    pub(super) fn parse(matcher: TokenStream) -> Option<Matcher> {
        elements(&Stream::new(matcher)).map(Matcher)
    }

    /// The bindings when `input` matches, `Ok(None)` when it does not.
    pub(super) fn matches(&self, input: TokenStream) -> Result<Option<Bindings>, Undecided> {
        let input = Stream::new(input);
        let mut run = Run { budget: BUDGET };
        let complete: Vec<Bindings> = run
            .sequence(&self.0, &input, 0)?
            .into_iter()
            .filter(|(end, _)| *end == input.tokens.len())
            .map(|(_, bindings)| bindings)
            .collect();
        match complete.len() {
            0 => Ok(None),
            1 => Ok(complete.into_iter().next()),
            // rustc rejects the invocation ("local ambiguity").
            _ => Err(Undecided),
        }
    }
}

fn elements(stream: &Stream) -> Option<Vec<Element>> {
    let tokens = &stream.tokens;
    let mut out = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let kind = &tokens[i].kind;
        if !stream.is_punct(i, "$") {
            out.push(match kind {
                Kind::Group(delimiter, inner) => Element::Group(*delimiter, elements(inner)?),
                other => Element::Token(other.clone()),
            });
            i += 1;
            continue;
        }
        match tokens.get(i + 1).map(|t| &t.kind) {
            Some(Kind::Ident(name)) if name != "crate" && stream.is_punct(i + 2, ":") => {
                let Some(Kind::Ident(fragment)) = tokens.get(i + 3).map(|t| &t.kind) else {
                    return None;
                };
                out.push(Element::Variable(name.clone(), Fragment::named(fragment)?));
                i += 4;
            }
            Some(Kind::Group(Delimiter::Parenthesis, inner)) => {
                let inner = elements(inner)?;
                let operator_at = |at: usize| {
                    ["*", "+", "?"]
                        .into_iter()
                        .find(|op| stream.is_punct(at, op))
                        .and_then(|op| op.chars().next())
                };
                let (separator, operator) = match operator_at(i + 2) {
                    Some(operator) => (None, operator),
                    None => match (tokens.get(i + 2).map(|t| &t.kind), operator_at(i + 3)) {
                        (Some(Kind::Group(..)) | None, _) | (_, None) => return None,
                        (Some(separator), Some(operator)) => (Some(separator.clone()), operator),
                    },
                };
                i += if separator.is_some() { 4 } else { 3 };
                let mut names = Vec::new();
                bound_names(&inner, &mut names);
                out.push(Element::Repetition(Repetition {
                    elements: inner,
                    separator,
                    operator,
                    names,
                }));
            }
            _ => return None,
        }
    }
    Some(out)
}

fn bound_names(elements: &[Element], names: &mut Vec<String>) {
    for element in elements {
        match element {
            Element::Variable(name, _) => names.push(name.clone()),
            Element::Group(_, inner) => bound_names(inner, names),
            Element::Repetition(repetition) => names.extend(repetition.names.iter().cloned()),
            Element::Token(_) => {}
        }
    }
}

struct Run {
    budget: usize,
}

impl Run {
    fn spend(&mut self, units: usize) -> Result<(), Undecided> {
        self.budget = self.budget.checked_sub(units).ok_or(Undecided)?;
        Ok(())
    }

    /// Every way `elements` match tokens of `input` from `at`: where each ends, with its
    /// bindings. rustc follows all ways at once, token by token, and never backtracks into a
    /// fragment it parsed; neither does this, which follows them one after another.
    fn sequence(
        &mut self,
        elements: &[Element],
        input: &Stream,
        at: usize,
    ) -> Result<Vec<(usize, Bindings)>, Undecided> {
        let mut states = vec![(at, Bindings::new())];
        for element in elements {
            let mut next = Vec::new();
            for (at, bindings) in states {
                for (end, more) in self.element(element, input, at)? {
                    self.spend(1)?;
                    let mut all = bindings.clone();
                    all.extend(more);
                    next.push((end, all));
                }
            }
            states = next;
        }
        Ok(states)
    }

    fn element(
        &mut self,
        element: &Element,
        input: &Stream,
        at: usize,
    ) -> Result<Vec<(usize, Bindings)>, Undecided> {
        Ok(match element {
            Element::Token(kind) => {
                if input.is(at, kind) {
                    vec![(at + 1, Bindings::new())]
                } else {
                    Vec::new()
                }
            }
            Element::Group(delimiter, inner) => match input.tokens.get(at).map(|t| &t.kind) {
                Some(Kind::Group(d, stream)) if d == delimiter => self
                    .sequence(inner, stream, 0)?
                    .into_iter()
                    .filter(|(end, _)| *end == stream.tokens.len())
                    .map(|(_, bindings)| (at + 1, bindings))
                    .collect(),
                _ => Vec::new(),
            },
            Element::Variable(name, fragment) => self
                .fragment(*fragment, input, at)?
                .map(|end| (end, Bindings::from([(name.clone(), Bound::Once)])))
                .into_iter()
                .collect(),
            Element::Repetition(repetition) => self.repetition(repetition, input, at)?,
        })
    }

    fn repetition(
        &mut self,
        repetition: &Repetition,
        input: &Stream,
        at: usize,
    ) -> Result<Vec<(usize, Bindings)>, Undecided> {
        let mut done = Vec::new();
        let mut open: Vec<(usize, Option<Rc<Passes>>)> = vec![(at, None)];
        while let Some((at, passes)) = open.pop() {
            self.spend(1)?;
            let count = passes.as_ref().map_or(0, |p| p.count);
            if repetition.operator != '+' || count > 0 {
                done.push((at, passes.clone()));
            }
            if repetition.operator == '?' && count > 0 {
                continue;
            }
            let start = match &repetition.separator {
                Some(separator) if count > 0 => {
                    if !input.is(at, separator) {
                        continue;
                    }
                    at + 1
                }
                _ => at,
            };
            for (end, bindings) in self.sequence(&repetition.elements, input, start)? {
                // A pass that takes no token would repeat forever (rustc rejects such matchers).
                if end > at {
                    let more = Passes {
                        last: bindings,
                        before: passes.clone(),
                        count: count + 1,
                    };
                    open.push((end, Some(Rc::new(more))));
                }
            }
        }
        let mut ways = Vec::with_capacity(done.len());
        for (end, passes) in done {
            let mut each: Vec<&Bindings> = Vec::new();
            let mut next = passes.as_deref();
            while let Some(pass) = next {
                each.push(&pass.last);
                next = pass.before.as_deref();
            }
            // Each way lists all its passes: quadratic in a long repetition.
            self.spend(each.len())?;
            each.reverse();
            let bindings = repetition
                .names
                .iter()
                .map(|name| {
                    let bound = each.iter().filter_map(|pass| pass.get(name).cloned());
                    (name.clone(), Bound::Repeated(bound.collect()))
                })
                .collect();
            ways.push((end, bindings));
        }
        Ok(ways)
    }

    /// Where the fragment starting at token `at` ends, `None` when none starts there.
    fn fragment(
        &mut self,
        fragment: Fragment,
        input: &Stream,
        at: usize,
    ) -> Result<Option<usize>, Undecided> {
        let syntax = match fragment {
            Fragment::Parsed(syntax) => syntax,
            Fragment::Tt => return Ok((at < input.tokens.len()).then_some(at + 1)),
            Fragment::Ident => {
                let ident = matches!(input.tokens.get(at), Some(Token { kind: Kind::Ident(name), .. }) if name != "_");
                return Ok(ident.then_some(at + 1));
            }
            Fragment::Lifetime => {
                let lifetime = matches!(
                    input.tokens.get(at),
                    Some(Token {
                        kind: Kind::Lifetime(_),
                        ..
                    })
                );
                return Ok(lifetime.then_some(at + 1));
            }
            Fragment::Block => {
                let block = matches!(
                    input.tokens.get(at),
                    Some(Token {
                        kind: Kind::Group(Delimiter::Brace, _),
                        ..
                    })
                );
                return Ok(block.then_some(at + 1));
            }
            Fragment::Literal if input.is_punct(at, "-") => {
                return Ok(input.is_literal(at + 1).then_some(at + 2))
            }
            Fragment::Literal => return Ok(input.is_literal(at).then_some(at + 1)),
        };
        if at == input.tokens.len() {
            // Only a visibility may be empty.
            return Ok((syntax == Syntax::Vis).then_some(at));
        }
        if syntax == Syntax::Expr {
            // `let` never starts an expression fragment; whether `_` and `const { … }` do
            // depends on the edition, which the file does not say.
            if input.is_ident(at, "let") {
                return Ok(None);
            }
            if input.is_ident(at, "_") || input.is_ident(at, "const") {
                return Err(Undecided);
            }
        }
        let start = input.tokens[at].tree;
        // No fragment reaches past a `;` outside its groups (an item's own `;` ends it).
        let end = input.trees[start..]
            .iter()
            .position(|tree| matches!(tree, TokenTree::Punct(p) if p.as_char() == ';'))
            .map_or(input.trees.len(), |semi| start + semi + 1);
        self.spend(end - start)?;
        let Some(taken) = prefix(&input.trees[start..end], syntax)? else {
            return Ok(None);
        };
        // A fragment that ends inside a glued token (`>` of `>>`) leaves rustc a split token.
        input
            .tokens
            .iter()
            .position(|t| t.tree == start + taken)
            .or((start + taken == input.trees.len()).then_some(input.tokens.len()))
            .map(Some)
            .ok_or(Undecided)
    }
}

/// How many of `trees` the syn parser for `syntax` takes.
fn prefix(trees: &[TokenTree], syntax: Syntax) -> Result<Option<usize>, Undecided> {
    let stream: TokenStream = trees.iter().cloned().collect();
    // (trees left, whether rustc reads the fragment the same way in every edition)
    let parser = |input: ParseStream| -> syn::Result<(usize, bool)> {
        let mut same = true;
        match syntax {
            Syntax::Item => drop(input.parse::<syn::Item>()?),
            Syntax::Vis => drop(input.parse::<syn::Visibility>()?),
            Syntax::Meta => drop(input.parse::<syn::Meta>()?),
            Syntax::Ty => drop(input.parse::<Type>()?),
            Syntax::Path => drop(input.parse::<syn::Path>()?),
            Syntax::Expr => drop(input.parse::<syn::Expr>()?),
            Syntax::PatParam => drop(syn::Pat::parse_single(input)?),
            // Before the 2021 edition `pat` stops at a top-level `|`.
            Syntax::Pat => {
                same = !matches!(
                    syn::Pat::parse_multi_with_leading_vert(input)?,
                    syn::Pat::Or(_)
                );
            }
            Syntax::Stmt => statement(input)?,
        }
        let rest: TokenStream = input.parse()?;
        Ok((rest.into_iter().count(), same))
    };
    match parser.parse2(stream) {
        Ok((_, false)) => Err(Undecided),
        Ok((left, true)) => Ok(Some(trees.len() - left)),
        Err(_) => Ok(None),
    }
}

/// A statement without its trailing `;` (an item keeps its own). syn's `Stmt` wants the `;` of a
/// `let` and of an expression, which the fragment leaves to the matcher.
fn statement(input: ParseStream) -> syn::Result<()> {
    if input.peek(Token![let]) {
        input.parse::<Token![let]>()?;
        syn::Pat::parse_multi_with_leading_vert(input)?;
        if input.peek(Token![:]) {
            input.parse::<Token![:]>()?;
            input.parse::<Type>()?;
        }
        if input.peek(Token![=]) {
            input.parse::<Token![=]>()?;
            input.parse::<syn::Expr>()?;
            if input.peek(Token![else]) {
                input.parse::<Token![else]>()?;
                input.parse::<syn::Block>()?;
            }
        }
    } else if input.fork().parse::<syn::Item>().is_ok() {
        input.parse::<syn::Item>()?;
    } else {
        input.parse::<syn::Expr>()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(matcher: &str, input: &str) -> Result<Option<Bindings>, Undecided> {
        let matcher = Matcher::parse(matcher.parse().expect("matcher tokens")).expect("supported");
        matcher.matches(input.parse().expect("input tokens"))
    }

    fn matched(matcher: &str, input: &str) -> bool {
        matches(matcher, input).expect("decided").is_some()
    }

    fn times(count: usize) -> Bound {
        Bound::Repeated(vec![Bound::Once; count])
    }

    #[test]
    fn literal_tokens_are_rustc_tokens() {
        assert!(matched("@impl => ::a", "@impl => ::a"));
        assert!(
            !matched("@impl = > :: a", "@impl => ::a"),
            "`=>` is one token"
        );
        assert!(matched("a <<= 'b", "a<<= 'b"));
        assert!(!matched("a", "a b"));
        assert!(matched("[x] {y}", "[x] {y}"));
        assert!(!matched("[x]", "(x)"));
        // `$t:tt` takes one token: `::`, `'a` or a group.
        assert!(matched("$a:tt $b:tt $c:tt", ":: 'a (x y)"));
        assert!(!matched("$a:tt", "- 1"));
    }

    #[test]
    fn fragments_take_what_rustc_parses() {
        assert!(matched("$t:ty, $n:ident", "Vec<Option<u8>>, name"));
        assert!(matched(
            "$t:ty => $e:expr",
            "dyn Fn(u8) -> u8 + Send => |x| x + 1"
        ));
        assert!(matched("$e:expr; $f:expr", "a.b(c, d)?; S { x: 1 }"));
        assert!(!matched("$e:expr", "let x = 1"));
        assert!(matched("$p:path", "::std::vec::Vec<u8>"));
        assert!(matched("$l:literal $m:literal $n:literal", "-1 \"s\" true"));
        assert!(!matched("$l:literal", "x"));
        assert!(matched("$l:lifetime $i:ident", "'a fn"));
        assert!(!matched("$i:ident", "_"));
        assert!(matched("$b:block", "{ let x = 1; x }"));
        assert!(matched("$v:vis fn", "fn"));
        assert!(matched("$v:vis fn", "pub(crate) fn"));
        assert!(matched(
            "#[$m:meta] $i:item",
            "#[cfg(feature = \"x\")] pub struct S;"
        ));
        assert!(matched("$s:stmt; $t:stmt", "let x: u8 = 1; f(x)"));
        assert!(matched("$($s:stmt);*", "let a = 1; struct S {}; m!(a)"));
        // An item keeps its own `;`: no separator is left after `struct S;`.
        assert!(!matched("$($s:stmt);*", "struct S; m!(a)"));
        assert!(matched("$p:pat => $q:pat_param", "Some(1 | 2) => (a, _)"));
        // Before the 2021 edition `pat` stops at `|`; `_` and `const` start an `expr` only in
        // some editions.
        assert_eq!(matches("$p:pat", "A | B"), Err(Undecided));
        assert_eq!(matches("$e:expr", "_"), Err(Undecided));
    }

    #[test]
    fn repetitions_bind_how_often_they_repeat() {
        let bindings = matches("$($n:ident),* ; $($v:expr)+", "a, b, c ; 1 2")
            .expect("decided")
            .expect("matches");
        assert_eq!(bindings["n"], times(3));
        assert_eq!(bindings["v"], times(2));
        let none = matches("$($n:ident),* $(; $t:ty)?", "").expect("decided");
        assert_eq!(none.expect("matches")["t"], times(0));
        assert!(!matched("$($n:ident)+", ""));
        assert!(!matched("$($n:ident),*", "a, b,"), "no trailing separator");
        assert!(matched("$($n:ident),* $(,)?", "a, b,"));
        let nested = matches("$( [ $($x:literal)* ] )*", "[1 2] [] [3]")
            .expect("decided")
            .expect("matches");
        assert_eq!(
            nested["x"],
            Bound::Repeated(vec![times(2), times(0), times(1)])
        );
        assert!(matched(
            "$($k:ident => $v:expr),* $(,)?",
            "a => 1 + 2, b => f(x),"
        ));
    }

    #[test]
    fn what_rustc_would_not_decide_is_undecided() {
        // Both repetitions could take `a`: rustc reports an ambiguity.
        assert_eq!(matches("$(a)* $(a)*", "a"), Err(Undecided));
        // A fragment that would end inside `>>`.
        assert_eq!(matches("$t:ty > x", "Vec<u8>> x"), Err(Undecided));
        assert!(Matcher::parse("$crate".parse().expect("tokens")).is_none());
        assert!(Matcher::parse("$x:unknown".parse().expect("tokens")).is_none());
        assert!(Matcher::parse("$($x:ident)(,)*".parse().expect("tokens")).is_none());
        // A repetition of thousands of passes costs more than the budget allows.
        let long = vec!["x"; 200_000].join(", ");
        assert_eq!(matches("$($x:ident),*", &long), Err(Undecided));
        let shorter = vec!["x"; 500].join(", ");
        assert_eq!(
            matches("$($x:ident),*", &shorter).map(|b| b.is_some()),
            Ok(true)
        );
    }
}
