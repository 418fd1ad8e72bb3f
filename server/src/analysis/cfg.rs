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
    /// file only (see `macros::invoked_elsewhere`). Kept here because a function a macro body defines is compiled
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

    /// The macros (see `macros::invoked_elsewhere`) that files of the package other than the one
    /// this set decides for invoke.
    pub fn set_invoked_elsewhere(&mut self, names: HashSet<String>) {
        self.invoked_elsewhere = names;
    }
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
}
