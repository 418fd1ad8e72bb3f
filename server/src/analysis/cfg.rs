//! `#[cfg(…)]` predicates, kept by the analysis and decided later against the cfg set of the build
//! (features, build-script cfgs and the target's cfgs), so that code under a predicate the build
//! enables counts like any other code even when it has no machine code (generics no test
//! instantiates), and code the build leaves out does not count.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use syn::punctuated::Punctuated;
use syn::{Expr, Lit, Meta, Token};

/// A `#[cfg(…)]` predicate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Cfg {
    /// `unix`, `test`, `debug_assertions`.
    Name(String),
    /// `feature = "std"`, `target_os = "linux"`.
    Value(String, String),
    All(Vec<Cfg>),
    Any(Vec<Cfg>),
    Not(Box<Cfg>),
    /// A form rustc would reject (or a newer one): never decided.
    Unknown,
    /// Not a cfg: another file of the package invokes the macro of this name, defined in this
    /// file only (see `macros`). Kept here because a function a macro body defines is compiled
    /// exactly when an invocation and the invocation's own gates say so.
    InvokedElsewhere(String),
}

impl Cfg {
    pub(super) fn parse(meta: &Meta) -> Cfg {
        let name = |path: &syn::Path| path.get_ident().map(|ident| ident.to_string());
        match meta {
            Meta::Path(path) => name(path).map_or(Cfg::Unknown, Cfg::Name),
            Meta::NameValue(pair) => match (name(&pair.path), &pair.value) {
                (
                    Some(key),
                    Expr::Lit(syn::ExprLit {
                        lit: Lit::Str(value),
                        ..
                    }),
                ) => Cfg::Value(key, value.value()),
                _ => Cfg::Unknown,
            },
            Meta::List(list) => {
                let Ok(args) =
                    list.parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated)
                else {
                    return Cfg::Unknown;
                };
                let args: Vec<Cfg> = args.iter().map(Cfg::parse).collect();
                match name(&list.path).as_deref() {
                    Some("all") => Cfg::All(args),
                    Some("any") => Cfg::Any(args),
                    Some("not") if args.len() == 1 => {
                        Cfg::Not(Box::new(args.into_iter().next().unwrap_or(Cfg::Unknown)))
                    }
                    _ => Cfg::Unknown,
                }
            }
        }
    }

    /// Whether the predicate holds in a build with `set`; `None` when the set cannot tell.
    pub fn holds(&self, set: &CfgSet) -> Option<bool> {
        match self {
            // One package's code is built both with and without `cfg(test)` (unit tests and the
            // library the integration tests link).
            Cfg::Name(name) if name == "test" => None,
            Cfg::Name(name) => Some(set.names.contains(name)),
            Cfg::Value(key, value) => Some(set.values.contains(&(key.clone(), value.clone()))),
            // Three-valued: a false operand decides `all`, a true one `any`.
            Cfg::All(operands) => decide(operands, set, false),
            Cfg::Any(operands) => decide(operands, set, true),
            Cfg::Not(operand) => operand.holds(set).map(|holds| !holds),
            Cfg::Unknown => None,
            Cfg::InvokedElsewhere(name) => Some(set.invoked_elsewhere.contains(name)),
        }
    }
}

/// `all` (`decisive` false) or `any` (`decisive` true) of `operands`: one operand with the
/// decisive value decides; otherwise one undecided operand leaves the whole undecided.
fn decide(operands: &[Cfg], set: &CfgSet, decisive: bool) -> Option<bool> {
    let results: Vec<Option<bool>> = operands.iter().map(|operand| operand.holds(set)).collect();
    if results.contains(&Some(decisive)) {
        Some(decisive)
    } else if results.contains(&None) {
        None
    } else {
        Some(!decisive)
    }
}

/// The cfg names and `key="value"` pairs set when a package is compiled, and for one file of
/// it, the macros the package's other files invoke.
#[derive(Clone, Debug, Default)]
pub struct CfgSet {
    names: HashSet<String>,
    values: HashSet<(String, String)>,
    invoked_elsewhere: HashSet<String>,
}

impl CfgSet {
    /// From lines as `rustc --print cfg` and build scripts' `cargo::rustc-cfg` write them
    /// (`unix`, `target_os="linux"`).
    pub fn add(&mut self, line: &str) {
        match line.split_once('=') {
            Some((key, value)) => {
                let value = value.trim().trim_matches('"');
                self.values
                    .insert((key.trim().to_owned(), value.to_owned()));
            }
            None => {
                self.names.insert(line.trim().to_owned());
            }
        }
    }

    pub fn remove_name(&mut self, name: &str) {
        self.names.remove(name);
    }

    pub fn add_feature(&mut self, feature: &str) {
        self.values
            .insert(("feature".to_owned(), feature.to_owned()));
    }

    /// The macros (see [`invoked_elsewhere`]) that files of the package other than the one this
    /// set decides for invoke.
    pub fn set_invoked_elsewhere(&mut self, names: HashSet<String>) {
        self.invoked_elsewhere = names;
    }
}

/// For each of one package's files (with the cfg set that decides its gates, when known): the
/// names of the macros that its other files invoke in code the build compiles, directly or
/// through a macro they define that always invokes it and that some file invokes, among those
/// defined by one file of the package alone (a name two files define leaves open which one an
/// invocation expands). Textual order between files is not followed: a `#[macro_use]` module is
/// declared before the modules that invoke its macros.
pub fn invoked_elsewhere(
    files: &[(&super::SourceAnalysis, Option<&CfgSet>)],
) -> Vec<HashSet<String>> {
    let mut definers: std::collections::HashMap<&str, Vec<usize>> = Default::default();
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

    fn cfg(text: &str) -> Cfg {
        let meta: Meta = syn::parse_str(text).expect("a cfg predicate");
        Cfg::parse(&meta)
    }

    fn set() -> CfgSet {
        let mut set = CfgSet::default();
        for line in [
            "unix",
            "debug_assertions",
            "target_os=\"linux\"",
            "panic=\"unwind\"",
        ] {
            set.add(line);
        }
        set.add_feature("std");
        set
    }

    #[test]
    fn predicates_are_parsed_as_rustc_reads_them() {
        assert_eq!(
            cfg(r#"all(feature = "std", not(windows))"#),
            Cfg::All(vec![
                Cfg::Value("feature".into(), "std".into()),
                Cfg::Not(Box::new(Cfg::Name("windows".into())))
            ])
        );
        assert_eq!(cfg("not(a, b)"), Cfg::Unknown);
        assert_eq!(cfg("feature = 1"), Cfg::Unknown);
        assert_eq!(cfg("some::path"), Cfg::Unknown);
    }

    #[test]
    fn the_build_set_decides_features_and_target_and_test_stays_open() {
        let holds = |text: &str| cfg(text).holds(&set());
        assert_eq!(holds(r#"feature = "std""#), Some(true));
        assert_eq!(holds(r#"feature = "alloc""#), Some(false));
        assert_eq!(holds(r#"target_os = "linux""#), Some(true));
        assert_eq!(holds("windows"), Some(false));
        assert_eq!(holds("not(windows)"), Some(true));
        assert_eq!(holds("test"), None);
        assert_eq!(holds("not(test)"), None);
        assert_eq!(holds(r#"all(feature = "std", unix)"#), Some(true));
        assert_eq!(holds(r#"all(feature = "std", test)"#), None);
        assert_eq!(holds(r#"all(feature = "alloc", test)"#), Some(false));
        assert_eq!(holds(r#"any(feature = "alloc", test)"#), None);
        assert_eq!(holds(r#"any(feature = "std", test)"#), Some(true));
        assert_eq!(holds("any()"), Some(false));
        assert_eq!(holds("all()"), Some(true));
        assert_eq!(cfg("x(y)").holds(&set()), None);
    }

    #[test]
    fn names_and_values_are_read_from_rustc_lines() {
        let mut set = set();
        set.add("has_foo");
        set.add("level=\"3\"");
        assert_eq!(Cfg::Name("has_foo".into()).holds(&set), Some(true));
        assert_eq!(
            Cfg::Value("level".into(), "3".into()).holds(&set),
            Some(true)
        );
        set.remove_name("debug_assertions");
        assert_eq!(
            Cfg::Name("debug_assertions".into()).holds(&set),
            Some(false)
        );
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
        let set = set();
        let names = |files: &[(&crate::analysis::SourceAnalysis, Option<&CfgSet>)]| {
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
        let first = |files: &[(&crate::analysis::SourceAnalysis, Option<&CfgSet>)]| {
            invoked_elsewhere(files).swap_remove(0)
        };
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
