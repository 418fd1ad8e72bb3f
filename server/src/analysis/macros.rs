//! Functions written in the body of a crate's own `macro_rules!`. A function an expansion defines
//! keeps its code on the macro's lines, so a generic one no test instantiates has no machine code
//! there, like any uninstantiated generic. To report it as uncovered, the analysis needs its
//! statements: found in the token trees of the macro's rules and parsed as a function once each
//! `$name` metavariable is read as the plain identifier `name` (an identifier is a valid
//! expression, type, pattern and path, and the spans still point into the file).
//!
//! And it needs to know that some invocation expands it: any invocation does when the macro has
//! one rule and the function is outside `$(…)` repetitions. Otherwise the invocation's arguments
//! are matched against the rules ([`Matcher`]): the function is expanded when the rule taken is
//! its own and each repetition around it repeats at least once. When that cannot be told (an
//! unsupported matcher, an invocation through a path, a macro that invokes itself) the
//! invocation is not counted as expanding it. Invocations in the package's other files are known
//! only by name, once every file is analysed: they count for the
//! functions any invocation expands ([`invoked_elsewhere`]). So do invocations in another macro's rules, when that
//! macro makes them in every expansion ([`MacroRules::calls`]) and is invoked itself.
//!
//! Left out: a function with a repetition inside (`fn f() { $(g($x);)* }`, no plain Rust), one
//! in a `macro_rules!` the transcriber defines (expanded by that macro's invocations), and
//! whether an invocation's arguments switch the function off (a `cfg` passed in as an attribute:
//! see [`mentions_cfg`]).

use std::collections::{HashMap, HashSet};

use proc_macro2::{Delimiter, Group, TokenStream, TokenTree};
use syn::{ImplItemFn, Macro};

use super::macro_match::{Bindings, Bound, Matcher};

/// A function a macro's rule defines.
pub(super) struct MacroFunction {
    pub(super) function: ImplItemFn,
    /// Its name is a metavariable (`fn $name()`): each invocation names it.
    pub(super) named_by_invocation: bool,
    pub(super) place: Place,
}

/// Where a function stands in its macro: the rule whose transcriber holds it, and for each
/// `$(…)` around it (outermost first) the metavariables written inside, whose bindings say how
/// often it repeats.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Place {
    rule: usize,
    repetitions: Vec<Vec<String>>,
}

/// A `macro_rules!` definition, as far as telling which of its functions an invocation expands.
pub(super) struct MacroRules {
    rules: usize,
    /// `None` when a matcher holds a construct [`Matcher`] does not support.
    matchers: Option<Vec<Matcher>>,
    /// A transcriber invokes the macro itself: those invocations, and the rules they take, are
    /// not in the file's syntax.
    recursive: bool,
    /// The other macros every invocation invokes (see [`always_invoked`]).
    calls: std::collections::BTreeSet<String>,
}

/// The rule an invocation takes, with its bindings.
pub(super) type Taken = (usize, Bindings);

/// The rules of `macro_rules! name { (…) => { … }; … }` (`mac`) and the functions their
/// transcribers define. A function inside a `macro_rules!` of a transcriber belongs to that inner
/// macro, whose invocations are not seen: it is left out.
pub(super) fn definition(mac: &Macro, name: &syn::Ident) -> (MacroRules, Vec<MacroFunction>) {
    let trees: Vec<TokenTree> = mac.tokens.clone().into_iter().collect();
    let mut rules = Vec::new();
    let mut i = 0;
    while i < trees.len() {
        let (Some(TokenTree::Group(matcher)), true, true, Some(TokenTree::Group(transcriber))) = (
            trees.get(i),
            trees.get(i + 1).is_some_and(|t| is_punct(t, '=')),
            trees.get(i + 2).is_some_and(|t| is_punct(t, '>')),
            trees.get(i + 3),
        ) else {
            rules.clear();
            break;
        };
        rules.push((matcher.stream(), transcriber.stream()));
        i += 4;
        if trees.get(i).is_some_and(|t| is_punct(t, ';')) {
            i += 1;
        }
    }
    let mut found = Vec::new();
    let mut recursive = false;
    for (rule, (_, transcriber)) in rules.iter().enumerate() {
        let trees: Vec<TokenTree> = transcriber.clone().into_iter().collect();
        let mut scan = Scan {
            rule,
            repetitions: Vec::new(),
            found: &mut found,
        };
        scan.trees(&trees);
        recursive |= invokes(transcriber, name);
    }
    let matchers = rules
        .iter()
        .map(|(matcher, _)| Matcher::parse(matcher.clone()))
        .collect();
    let mut calls = std::collections::BTreeSet::new();
    // A `#[cfg]` in the transcriber may switch any of its calls off.
    if let [(_, transcriber)] = rules.as_slice() {
        if !mentions_cfg(transcriber) {
            let trees: Vec<TokenTree> = transcriber.clone().into_iter().collect();
            always_invoked(&trees, &mut calls);
            calls.remove(&name.to_string());
        }
    }
    let definition = MacroRules {
        rules: rules.len(),
        matchers,
        recursive,
        calls,
    };
    (definition, found)
}

impl MacroRules {
    /// The other macros every invocation of this one invokes by name: the functions they always
    /// define are defined whenever this one is invoked.
    pub(super) fn calls(&self) -> impl Iterator<Item = &str> {
        self.calls.iter().map(String::as_str)
    }

    /// Every invocation rustc accepts expands the function at `place`: the macro has one rule
    /// and the function is outside repetitions.
    pub(super) fn unconditional(&self, place: &Place) -> bool {
        self.rules == 1 && place.repetitions.is_empty()
    }

    /// Which rule the invocation with arguments `input` takes; `None` when that cannot be
    /// told: `input` is `None` (invoked through a path, which may name another module's or
    /// crate's macro of the same name), a matcher is outside the supported subset, or none
    /// matched (rustc's did, so this one missed something).
    pub(super) fn take(&self, input: Option<&TokenStream>) -> Option<Taken> {
        let input = input?;
        for (rule, matcher) in self.matchers.as_ref()?.iter().enumerate() {
            if let Some(bindings) = matcher.matches(input.clone()).ok()? {
                return Some((rule, bindings));
            }
        }
        None
    }

    /// Whether an invocation that takes `taken` expands the function at `place`: it takes the
    /// function's rule, and each repetition around the function repeats at least once (in some
    /// pass of the repetitions around that). `None` when that cannot be told.
    pub(super) fn expands(&self, place: &Place, taken: Option<&Taken>) -> Option<bool> {
        if self.unconditional(place) {
            return Some(true);
        }
        let (rule, bindings) = taken?;
        let expands = *rule == place.rule && repeats(&place.repetitions, bindings)?;
        // The invocations the expansion makes of the macro itself may expand it still.
        (expands || !self.recursive).then_some(expands)
    }
}

/// Some pass of `repetitions` (outermost first) repeats each at least once, with `bindings`.
fn repeats(repetitions: &[Vec<String>], bindings: &Bindings) -> Option<bool> {
    let Some((names, inner)) = repetitions.split_first() else {
        return Some(true);
    };
    let repeated: Vec<(&String, &Vec<Bound>)> = names
        .iter()
        .filter_map(|name| match bindings.get(name) {
            Some(Bound::Repeated(passes)) => Some((name, passes)),
            _ => None,
        })
        .collect();
    // rustc rejects a repetition without a metavariable that repeats at its depth, and one whose
    // metavariables repeat different numbers of times.
    let count = repeated.first()?.1.len();
    if repeated.iter().any(|(_, passes)| passes.len() != count) {
        return None;
    }
    let mut undecided = false;
    for pass in 0..count {
        let mut within = bindings.clone();
        for (name, passes) in &repeated {
            within.insert((*name).clone(), passes[pass].clone());
        }
        match repeats(inner, &within) {
            Some(true) => return Some(true),
            Some(false) => {}
            None => undecided = true,
        }
    }
    (!undecided).then_some(false)
}

/// `tokens` hold an invocation `name!`.
fn invokes(tokens: &TokenStream, name: &syn::Ident) -> bool {
    let trees: Vec<TokenTree> = tokens.clone().into_iter().collect();
    trees.iter().enumerate().any(|(i, tree)| match tree {
        TokenTree::Ident(ident) => {
            ident == name && trees.get(i + 1).is_some_and(|t| is_punct(t, '!'))
        }
        TokenTree::Group(group) => invokes(&group.stream(), name),
        _ => false,
    })
}

/// The macros a transcriber (`trees`) invokes in every expansion: `name!(…)` outside `$(…)`
/// repetitions (which may repeat zero times), outside another invocation's arguments (which
/// that macro may drop: `stringify!`, `cfg_if!`) and outside the `macro_rules!` it defines
/// (whose own invocations say when). A name in a metavariable (`$m!`) is no macro's.
fn always_invoked(trees: &[TokenTree], names: &mut std::collections::BTreeSet<String>) {
    let mut i = 0;
    while i < trees.len() {
        let dollar = i > 0 && is_punct(&trees[i - 1], '$');
        match &trees[i] {
            TokenTree::Group(_) if dollar => {}
            TokenTree::Group(group) => {
                let inner: Vec<TokenTree> = group.stream().into_iter().collect();
                always_invoked(&inner, names);
            }
            // `macro_rules! name { … }` (the name may be a metavariable): skip to its rules.
            TokenTree::Ident(ident)
                if ident == "macro_rules" && trees.get(i + 1).is_some_and(|t| is_punct(t, '!')) =>
            {
                i += trees[i..]
                    .iter()
                    .position(|t| matches!(t, TokenTree::Group(_)))
                    .unwrap_or(trees.len() - i);
            }
            // A call: `name!` and its arguments' group (not `a != b`), which is skipped.
            TokenTree::Ident(ident)
                if trees.get(i + 1).is_some_and(|t| is_punct(t, '!'))
                    && matches!(trees.get(i + 2), Some(TokenTree::Group(_))) =>
            {
                if !dollar {
                    names.insert(ident.to_string());
                }
                i += 2;
            }
            _ => {}
        }
        i += 1;
    }
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

/// Looks for functions in one rule's transcriber.
struct Scan<'f> {
    rule: usize,
    /// The metavariables of each `$(…)` around the current point, outermost first.
    repetitions: Vec<Vec<String>>,
    found: &'f mut Vec<MacroFunction>,
}

impl Scan<'_> {
    fn trees(&mut self, trees: &[TokenTree]) {
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
                        self.found.push(MacroFunction {
                            function,
                            named_by_invocation: trees.get(i + 1).is_some_and(|t| is_punct(t, '$')),
                            place: Place {
                                rule: self.rule,
                                repetitions: self.repetitions.clone(),
                            },
                        });
                    }
                    i = end + 1;
                    continue;
                }
                // A macro the transcriber defines: its `fn`s are expanded by its own invocations.
                TokenTree::Ident(ident)
                    if ident == "macro_rules"
                        && trees.get(i + 1).is_some_and(|t| is_punct(t, '!')) =>
                {
                    i += 4;
                    continue;
                }
                TokenTree::Punct(p) if p.as_char() == '$' => {
                    // `$( … )*`: repeated once for each binding of the metavariables inside.
                    // (`${…}`, a metavariable expression, is left alone.)
                    if let Some(TokenTree::Group(group)) = trees.get(i + 1) {
                        if group.delimiter() == Delimiter::Parenthesis {
                            let mut names = Vec::new();
                            metavariables(&group.stream(), &mut names);
                            self.repetitions.push(names);
                            self.trees(&group.stream().into_iter().collect::<Vec<_>>());
                            self.repetitions.pop();
                        }
                        i += 2;
                        continue;
                    }
                }
                TokenTree::Group(group) => {
                    self.trees(&group.stream().into_iter().collect::<Vec<_>>());
                }
                _ => {}
            }
            i += 1;
        }
    }
}

/// The `$name`s written in `tokens`, at any depth.
fn metavariables(tokens: &TokenStream, names: &mut Vec<String>) {
    let trees: Vec<TokenTree> = tokens.clone().into_iter().collect();
    for (i, tree) in trees.iter().enumerate() {
        match tree {
            TokenTree::Ident(ident) if i > 0 && is_punct(&trees[i - 1], '$') => {
                names.push(ident.to_string());
            }
            TokenTree::Group(group) => metavariables(&group.stream(), names),
            _ => {}
        }
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

/// For each of one package's files (with the cfg set that decides its gates, when known): the
/// names of the macros that its other files invoke in code the build compiles, directly or
/// through a macro they define that always invokes it and that some file invokes, among those
/// defined by one file of the package alone (a name two files define leaves open which one an
/// invocation expands). Textual order between files is not followed: a `#[macro_use]` module is
/// declared before the modules that invoke its macros.
pub fn invoked_elsewhere(
    files: &[(&super::SourceAnalysis, Option<&super::CfgSet>)],
) -> Vec<HashSet<String>> {
    let mut definers: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, (analysis, _)) in files.iter().enumerate() {
        for name in analysis.macro_names() {
            definers.entry(name).or_default().push(i);
        }
    }
    let invoking: Vec<HashSet<&str>> = files
        .iter()
        .map(|(analysis, set)| {
            analysis
                .macro_invocations()
                .filter(|&(_, line)| {
                    set.and_then(|set| analysis.gates_hold(line, set)) != Some(false)
                })
                .map(|(name, _)| name)
                .collect()
        })
        .collect();
    let invoked_anywhere: HashSet<&str> = invoking.iter().flatten().copied().collect();
    let through = |k: usize, name: &str| {
        files[k].0.nested_invocations().any(|(inner, outer)| {
            inner == name
                && invoked_anywhere.contains(outer)
                && definers.get(outer).is_some_and(|by| by.as_slice() == [k])
        })
    };
    (0..files.len())
        .map(|i| {
            definers
                .iter()
                .filter(|(_, by)| by.as_slice() == [i])
                .filter(|(name, _)| {
                    invoking
                        .iter()
                        .enumerate()
                        .any(|(k, names)| k != i && (names.contains(**name) || through(k, name)))
                })
                .map(|(name, _)| (*name).to_owned())
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(source: &str) -> (MacroRules, Vec<MacroFunction>) {
        let item: syn::ItemMacro = syn::parse_str(source).expect("a macro_rules! item");
        definition(&item.mac, item.ident.as_ref().expect("named"))
    }

    fn functions(source: &str) -> Vec<(String, usize, bool)> {
        parse(source)
            .1
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

    /// For each function of the macro `source`, whether the invocation `arguments` expands it.
    fn expanded(source: &str, arguments: &str) -> Vec<(String, Option<bool>)> {
        let (rules, found) = parse(source);
        let taken = rules.take(Some(&arguments.parse().expect("tokens")));
        found
            .iter()
            .map(|f| {
                let name = f.function.sig.ident.to_string();
                (name, rules.expands(&f.place, taken.as_ref()))
            })
            .collect()
    }

    fn named(pairs: &[(&str, Option<bool>)]) -> Vec<(String, Option<bool>)> {
        pairs.iter().map(|&(n, e)| (n.to_owned(), e)).collect()
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
    fn the_rule_an_invocation_takes_defines_its_functions() {
        let source = "macro_rules! m {
            (@ref $t:ty) => { fn by_ref<T: AsRef<$t>>() {} };
            ($name:ident, $t:ty) => { fn $name<T: Into<$t>>() {} };
            ($e:expr) => { fn never<T>() {} };
        }";
        let by_ref = expanded(source, "@ref str");
        assert_eq!(
            by_ref,
            named(&[
                ("by_ref", Some(true)),
                ("name", Some(false)),
                ("never", Some(false))
            ])
        );
        // `x, u8` would be no expression: the second rule, the first that matches, is taken.
        let second = expanded(source, "x, u8");
        assert_eq!(second[1], ("name".to_owned(), Some(true)));
        assert_eq!(second[2], ("never".to_owned(), Some(false)));
        let neither = expanded(source, "@other");
        assert!(neither.iter().all(|(_, e)| e.is_none()), "no rule matched");
    }

    #[test]
    fn a_function_in_a_repetition_is_expanded_when_the_repetition_repeats() {
        let source = "macro_rules! m {
            ($($n:ident),*; $($t:ty => [$($v:expr),*]),*) => {
                $(pub fn $n<T>() {})*
                $( $( fn each<T>() { let _ = $v; } )* )*
            };
        }";
        let found = functions(source);
        assert_eq!(found.len(), 2);
        let (rules, functions) = parse(source);
        assert!(!rules.unconditional(&functions[0].place));
        assert_eq!(
            expanded(source, "a, b; u8 => [], u16 => [1]"),
            named(&[("n", Some(true)), ("each", Some(true))])
        );
        assert_eq!(
            expanded(source, "; u8 => [], u16 => []"),
            named(&[("n", Some(false)), ("each", Some(false))])
        );
        // A repetition inside a function has no reading as plain Rust.
        assert!(functions_of("fn f() { $(g($n);)* }").is_empty());
    }

    fn functions_of(transcriber: &str) -> Vec<(String, usize, bool)> {
        functions(&format!(
            "macro_rules! m {{ ($($n:ident),*) => {{ {transcriber} }}; }}"
        ))
    }

    #[test]
    fn the_macros_every_expansion_invokes_are_known_by_name() {
        let calls = |source: &str| {
            parse(source)
                .0
                .calls()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            calls(
                "macro_rules! all { ($t:ty) => {
                    one!($t);
                    mod m { $crate::two!(); fn f() { three!(); } }
                    $(never!($x);)*
                    $m!();
                    macro_rules! inner { () => { four!(); } }
                    all!(u8);
                }; }"
            ),
            ["one", "three", "two"]
        );
        assert!(
            calls("macro_rules! m { (a) => { one!(); }; (b) => {}; }").is_empty(),
            "an invocation may take the rule without it"
        );
        assert_eq!(
            calls(
                "macro_rules! m { () => {
                    stringify!(dropped!());
                    macro_rules! $n { () => { four!(); } }
                    if a != b { one!{} }
                }; }"
            ),
            ["one", "stringify"]
        );
        assert!(
            calls("macro_rules! m { () => { #[cfg(feature = \"x\")] one!(); }; }").is_empty(),
            "a cfg may switch any call off"
        );
    }

    #[test]
    fn what_the_syntax_does_not_show_is_undecided() {
        // The macro's own invocations in its expansion may take any rule.
        let recursive = "macro_rules! m {
            (@one $t:ty) => { fn one<T: Into<$t>>() {} };
            ($($t:ty),*) => { $(m!(@one $t);)* };
        }";
        assert_eq!(
            expanded(recursive, "@one u8"),
            named(&[("one", Some(true))])
        );
        assert_eq!(expanded(recursive, "u8, u16"), named(&[("one", None)]));
        // A matcher outside the subset leaves every rule's functions undecided; a single rule's
        // functions outside repetitions are expanded by any invocation rustc accepts.
        let unsupported = "macro_rules! m { ($x:unknown) => { fn f<T>() {} }; () => {} }";
        assert_eq!(expanded(unsupported, ""), named(&[("f", None)]));
        let single = "macro_rules! m { ($x:unknown) => { fn f<T>() {} }; }";
        assert_eq!(expanded(single, "1"), named(&[("f", Some(true))]));
        let (rules, found) = parse(unsupported);
        assert_eq!(rules.expands(&found[0].place, None), None, "through a path");
        // The functions of a macro the transcriber defines are that macro's.
        assert!(functions_of("macro_rules! inner { () => { fn g() {} } }").is_empty());
        assert_eq!(functions_of("$(fn $n() {})*").len(), 1);
    }

    #[test]
    fn cfg_in_arguments_is_noticed_at_any_depth() {
        let args = |text: &str| text.parse::<TokenStream>().expect("tokens");
        assert!(mentions_cfg(&args("str, cfg(feature = \"std\")")));
        assert!(mentions_cfg(&args("x, [#[cfg(unix)]]")));
        assert!(!mentions_cfg(&args("str,")));
    }

    #[test]
    fn a_macro_counts_as_invoked_elsewhere_when_another_file_of_the_package_compiles_a_call() {
        let analyse = |source: &str| crate::analysis::analyze(source).expect("parses");
        let defines =
            analyse("macro_rules! once { () => {} }\nmacro_rules! twice { () => {} }\nonce!();\n");
        let calls = analyse(
            "fn f() { once!(); twice!(); }\n#[cfg(feature = \"off\")]\nmod gated { fn g() { never!(); } }\n",
        );
        let defines_too =
            analyse("macro_rules! twice { () => {} }\nmacro_rules! never { () => {} }\n");
        let set = crate::analysis::CfgSet::default();
        let names = |files: &[(
            &crate::analysis::SourceAnalysis,
            Option<&crate::analysis::CfgSet>,
        )]| {
            invoked_elsewhere(files)
                .into_iter()
                .map(|names| {
                    let mut names: Vec<String> = names.into_iter().collect();
                    names.sort();
                    names
                })
                .collect::<Vec<_>>()
        };
        // `twice` has two definitions; `never` is called only where the build compiles nothing.
        assert_eq!(
            names(&[
                (&defines, Some(&set)),
                (&calls, Some(&set)),
                (&defines_too, Some(&set))
            ]),
            [vec!["once".to_owned()], vec![], vec![]]
        );
        // Without a cfg set, a gated call is taken as compiled; one's own calls never count.
        assert_eq!(
            names(&[(&defines_too, None), (&calls, None), (&defines, None)]),
            [vec!["never".to_owned()], vec![], vec!["once".to_owned()]]
        );
    }

    #[test]
    fn a_macro_that_another_files_macro_always_invokes_counts_when_that_one_is_invoked() {
        let analyse = |source: &str| crate::analysis::analyze(source).expect("parses");
        let inner = analyse("macro_rules! inner { () => { fn g<T>() {} } }\n");
        let outer = analyse("macro_rules! outer { () => { inner!(); } }\n");
        let caller = analyse("outer!();\n");
        let unused = analyse("fn f() {}\n");
        let first = |files: &[(
            &crate::analysis::SourceAnalysis,
            Option<&crate::analysis::CfgSet>,
        )]| { invoked_elsewhere(files).swap_remove(0) };
        assert_eq!(
            first(&[(&inner, None), (&outer, None), (&caller, None)]),
            ["inner".to_owned()].into()
        );
        assert!(
            first(&[(&inner, None), (&outer, None), (&unused, None)]).is_empty(),
            "`outer` itself is never invoked"
        );
    }
}
