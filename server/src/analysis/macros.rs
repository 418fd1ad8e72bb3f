//! Functions written in the body of a crate's own `macro_rules!`. A function an expansion defines
//! keeps its code on the macro's lines, so a generic one no test instantiates has no machine code
//! there, like any uninstantiated generic. To report it as uncovered, the analysis needs its
//! statements: found in the token trees of the macro's rule and parsed as a function once each
//! `$name` metavariable is read as the plain identifier `name` (an identifier is a valid
//! expression, type, pattern and path, and the spans still point into the file).
//!
//! What the syntax alone cannot tell is left out: a function inside a `$(…)*` repetition (an
//! invocation may repeat it zero times), functions of a macro with several rules (which rule an
//! invocation takes needs macro matching), and whether an invocation's arguments switch the
//! function off (a `cfg` passed in as an attribute: see [`mentions_cfg`]).

use proc_macro2::{Delimiter, Group, TokenStream, TokenTree};
use syn::{ImplItemFn, Macro};

/// A function a macro's rule defines.
pub(super) struct MacroFunction {
    pub(super) function: ImplItemFn,
    /// Its name is a metavariable (`fn $name()`): each invocation names it.
    pub(super) named_by_invocation: bool,
}

/// The functions the single rule of `macro_rules! { (…) => { … } }` (`mac`) defines, outside
/// repetitions; none when the macro has several rules.
pub(super) fn defined_functions(mac: &Macro) -> Vec<MacroFunction> {
    let trees: Vec<TokenTree> = mac.tokens.clone().into_iter().collect();
    let arrows: Vec<usize> = (0..trees.len().saturating_sub(1))
        .filter(|&i| is_punct(&trees[i], '=') && is_punct(&trees[i + 1], '>'))
        .collect();
    let [arrow] = arrows.as_slice() else {
        return Vec::new();
    };
    let Some(TokenTree::Group(transcriber)) = trees.get(arrow + 2) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    scan(
        &transcriber.stream().into_iter().collect::<Vec<_>>(),
        &mut found,
    );
    found
}

/// An invocation's arguments name `cfg` (passed on as `#[$attr]`): the functions of its
/// expansion may be compiled out, whatever the build's cfg set.
pub(super) fn mentions_cfg(tokens: &TokenStream) -> bool {
    tokens.clone().into_iter().any(|tree| match tree {
        TokenTree::Ident(ident) => ident == "cfg",
        TokenTree::Group(group) => mentions_cfg(&group.stream()),
        _ => false,
    })
}

fn is_punct(tree: &TokenTree, c: char) -> bool {
    matches!(tree, TokenTree::Punct(p) if p.as_char() == c)
}

fn is_ident(tree: &TokenTree, names: &[&str]) -> bool {
    matches!(tree, TokenTree::Ident(i) if names.iter().any(|n| i == n))
}

fn scan(trees: &[TokenTree], found: &mut Vec<MacroFunction>) {
    let mut i = 0;
    while i < trees.len() {
        match &trees[i] {
            TokenTree::Ident(ident) if ident == "fn" => {
                // The body is the first brace group after `fn` (a `;` first: a declaration).
                let end = (i + 1..trees.len()).find(|&k| {
                    is_punct(&trees[k], ';')
                        || matches!(&trees[k], TokenTree::Group(g) if g.delimiter() == Delimiter::Brace)
                });
                let Some(end) = end.filter(|&k| !is_punct(&trees[k], ';')) else {
                    i += 1;
                    continue;
                };
                let start = item_start(trees, i);
                let parsed = plain(&trees[start..=end])
                    .and_then(|tokens| syn::parse2::<ImplItemFn>(tokens).ok());
                if let Some(function) = parsed {
                    found.push(MacroFunction {
                        function,
                        named_by_invocation: trees.get(i + 1).is_some_and(|t| is_punct(t, '$')),
                    });
                }
                i = end + 1;
                continue;
            }
            // `$( … )*`: repeated as often as the invocation says, maybe never.
            TokenTree::Punct(p)
                if p.as_char() == '$' && matches!(trees.get(i + 1), Some(TokenTree::Group(_))) =>
            {
                i += 2;
                continue;
            }
            TokenTree::Group(group) => {
                scan(&group.stream().into_iter().collect::<Vec<_>>(), found);
            }
            _ => {}
        }
        i += 1;
    }
}

/// Where the item whose `fn` keyword is at `at` begins: its qualifiers (`pub`, `pub(crate)`,
/// `const`, `async`, `unsafe`, `extern "C"`, `default`) and outer attributes. A metavariable
/// before them (`$vis`) is left out: it would not parse as an identifier there.
fn item_start(trees: &[TokenTree], at: usize) -> usize {
    let mut start = at;
    while start > 0 {
        let before = &trees[start - 1];
        let qualifier = is_ident(
            before,
            &["pub", "const", "async", "unsafe", "extern", "default"],
        ) || matches!(before, TokenTree::Literal(_))
            || (matches!(before, TokenTree::Group(g) if g.delimiter() == Delimiter::Parenthesis)
                && start >= 2
                && is_ident(&trees[start - 2], &["pub"]));
        let attribute = start >= 2
            && matches!(before, TokenTree::Group(g) if g.delimiter() == Delimiter::Bracket)
            && is_punct(&trees[start - 2], '#');
        if attribute {
            start -= 2;
        } else if qualifier {
            start -= 1;
        } else {
            break;
        }
    }
    start
}

/// `trees` with each `$name` as `name` (`$crate` as `crate`); `None` when they hold a
/// repetition, which has no reading as plain Rust.
fn plain(trees: &[TokenTree]) -> Option<TokenStream> {
    let mut out = Vec::with_capacity(trees.len());
    let mut i = 0;
    while i < trees.len() {
        match &trees[i] {
            TokenTree::Punct(p) if p.as_char() == '$' => match trees.get(i + 1) {
                Some(TokenTree::Ident(_)) => {}
                _ => return None,
            },
            TokenTree::Group(group) => {
                let inner: Vec<TokenTree> = group.stream().into_iter().collect();
                let mut copy = Group::new(group.delimiter(), plain(&inner)?);
                copy.set_span(group.span());
                out.push(TokenTree::Group(copy));
            }
            other => out.push(other.clone()),
        }
        i += 1;
    }
    Some(out.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn functions(source: &str) -> Vec<(String, usize, bool)> {
        let item: syn::ItemMacro = syn::parse_str(source).expect("a macro_rules! item");
        defined_functions(&item.mac)
            .into_iter()
            .map(|f| {
                (
                    f.function.sig.ident.to_string(),
                    f.function.block.stmts.len(),
                    f.named_by_invocation,
                )
            })
            .collect()
    }

    #[test]
    fn functions_of_a_single_rule_are_parsed_with_metavariables_as_identifiers() {
        let found = functions(
            "macro_rules! m { ($t:ty, $name:ident) => {
                impl<L> AsRef<$t> for Wrap<L> where L: AsRef<$t> {
                    fn as_ref(&self) -> &$t { for_both!(self, inner => inner.as_ref()) }
                }
                #[test]
                pub(crate) fn $name() { let x: $t = <$t>::default(); $crate::use_it(x); }
                fn declared();
                $vis fn visible<T: AsRef<$t>>() {}
            }; }",
        );
        assert_eq!(
            found,
            [
                ("as_ref".to_owned(), 1, false),
                ("name".to_owned(), 2, true),
                ("visible".to_owned(), 0, false),
            ]
        );
    }

    #[test]
    fn repetitions_and_several_rules_hide_functions() {
        assert!(functions("macro_rules! m { ($($n:ident),*) => { $(fn $n() {})* }; }").is_empty());
        assert!(
            functions("macro_rules! m { ($n:ident) => { fn f() { $(g($n);)* } }; }").is_empty()
        );
        assert!(
            functions("macro_rules! m { (a) => { fn f() {} }; (b) => { fn g() {} }; }").is_empty()
        );
    }

    #[test]
    fn cfg_in_arguments_is_noticed_at_any_depth() {
        let args = |text: &str| text.parse::<TokenStream>().expect("tokens");
        assert!(mentions_cfg(&args("str, cfg(feature = \"std\")")));
        assert!(mentions_cfg(&args("x, [#[cfg(unix)]]")));
        assert!(!mentions_cfg(&args("str,")));
    }
}
