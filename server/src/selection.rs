//! Which tests a change can affect: fingerprints of the sources a run was built from (one hash per
//! function body, one for everything else), what each test executed, and the rules that turn a
//! saved file into the tests to rerun. Knows nothing of LSP; the README lists the rules.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use quote::ToTokens;
use syn::visit_mut::VisitMut;

use crate::cache::JsonCache;
use crate::cargo::{TestExecutable, Workspace};
use crate::coverage::Coverage;
use crate::libtest::Outcome;

/// Changes whenever [`Fingerprint::of`] may hash the same text differently.
const FINGERPRINT_VERSION: u32 = 1;

/// One source file as a run saw it: a hash of everything outside function bodies (signatures,
/// types, `use`, `const`/`static`, macros, attributes, and which items exist) and one per body.
/// Tokens only: whitespace, comments and line positions change no hash.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Fingerprint {
    pub outer: u64,
    /// Sorted by `start`.
    pub items: Vec<Item>,
}

/// A function whose body a test can execute: free functions, methods, trait default methods
/// (not `const fn`: compile-time evaluation is no execution, its body counts as outer).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Item {
    /// Unique in its file: module path, impl or trait, name (`#2` for a repeated one).
    pub key: String,
    /// First and last line (1-based) of the function, attributes included.
    pub start: u32,
    pub end: u32,
    pub body: u64,
}

impl Fingerprint {
    /// `None` when the text does not parse: nothing can be judged from it.
    pub fn of(text: &str) -> Option<Fingerprint> {
        let file = syn::parse_file(text).ok()?;
        let mut items = Vec::new();
        collect(&file.items, "", &mut items);
        items.sort_by_key(|i| (i.start, i.end));
        let mut seen: HashMap<String, u32> = HashMap::new();
        for item in &mut items {
            let n = seen.entry(item.key.clone()).or_default();
            *n += 1;
            if *n > 1 {
                item.key = format!("{}#{n}", item.key);
            }
        }
        let mut skeleton = file;
        BodiesOut.visit_file_mut(&mut skeleton);
        Some(Fingerprint {
            outer: hash_tokens(&skeleton),
            items,
        })
    }

    /// The item whose body hash covers `line` (items never overlap: a function nested in a body
    /// is part of that body).
    pub fn item_at(&self, line: u32) -> Option<&Item> {
        let i = self.items.partition_point(|i| i.start <= line);
        let item = self.items.get(i.checked_sub(1)?)?;
        (line <= item.end).then_some(item)
    }
}

fn hash_tokens(tokens: &impl ToTokens) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    tokens.to_token_stream().to_string().hash(&mut hasher);
    hasher.finish()
}

fn is_const(sig: &syn::Signature) -> bool {
    sig.constness.is_some()
}

fn collect(items: &[syn::Item], prefix: &str, out: &mut Vec<Item>) {
    let new_item = |key: String, span: proc_macro2::Span, block: &syn::Block, first: u32| Item {
        key,
        start: first.min(span.start().line as u32),
        end: span.end().line as u32,
        body: hash_tokens(block),
    };
    let first_line = |attrs: &[syn::Attribute], span: proc_macro2::Span| {
        attrs
            .iter()
            .map(|a| a.pound_token.span.start().line as u32)
            .min()
            .unwrap_or(span.start().line as u32)
    };
    for item in items {
        match item {
            syn::Item::Fn(f) if !is_const(&f.sig) => {
                let span = syn::spanned::Spanned::span(f);
                let first = first_line(&f.attrs, span);
                out.push(new_item(
                    format!("{prefix}{}", f.sig.ident),
                    span,
                    &f.block,
                    first,
                ));
            }
            syn::Item::Impl(imp) => {
                let owner = match &imp.trait_ {
                    Some((_, path, _)) => format!(
                        "<{} as {}>",
                        imp.self_ty.to_token_stream(),
                        path.to_token_stream()
                    ),
                    None => imp.self_ty.to_token_stream().to_string(),
                };
                for member in &imp.items {
                    if let syn::ImplItem::Fn(f) = member {
                        if is_const(&f.sig) {
                            continue;
                        }
                        let span = syn::spanned::Spanned::span(f);
                        let first = first_line(&f.attrs, span);
                        let key = format!("{prefix}{owner}::{}", f.sig.ident);
                        out.push(new_item(key, span, &f.block, first));
                    }
                }
            }
            syn::Item::Trait(t) => {
                for member in &t.items {
                    if let syn::TraitItem::Fn(f) = member {
                        let Some(block) = &f.default else { continue };
                        if is_const(&f.sig) {
                            continue;
                        }
                        let span = syn::spanned::Spanned::span(f);
                        let first = first_line(&f.attrs, span);
                        let key = format!("{prefix}{}::{}", t.ident, f.sig.ident);
                        out.push(new_item(key, span, block, first));
                    }
                }
            }
            syn::Item::Mod(m) => {
                if let Some((_, inner)) = &m.content {
                    collect(inner, &format!("{prefix}{}::", m.ident), out);
                }
            }
            _ => {}
        }
    }
}

/// Empties the bodies that [`collect`] hashes on their own, leaving the skeleton.
struct BodiesOut;

impl VisitMut for BodiesOut {
    fn visit_item_fn_mut(&mut self, f: &mut syn::ItemFn) {
        if !is_const(&f.sig) {
            f.block.stmts.clear();
        }
    }

    fn visit_impl_item_fn_mut(&mut self, f: &mut syn::ImplItemFn) {
        if !is_const(&f.sig) {
            f.block.stmts.clear();
        }
    }

    fn visit_trait_item_fn_mut(&mut self, f: &mut syn::TraitItemFn) {
        if let (Some(block), false) = (&mut f.default, is_const(&f.sig)) {
            block.stmts.clear();
        }
    }
}

/// Files whose change invalidates every test: the build's inputs outside the sources.
pub fn is_environment(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let in_cargo_dir = path
        .parent()
        .and_then(|p| p.file_name())
        .is_some_and(|d| d == ".cargo");
    matches!(
        name,
        "Cargo.toml" | "Cargo.lock" | "build.rs" | "rust-toolchain" | "rust-toolchain.toml"
    ) || (in_cargo_dir && matches!(name, "config" | "config.toml"))
}

/// The sources a run is built from, read before the build starts (an edit saved during the build
/// then shows as a change at the next selection, never the reverse).
#[derive(Debug, Default)]
pub struct Texts(Vec<(PathBuf, String)>);

impl Texts {
    /// Every `.rs` file of the workspace's packages, outside target directories and hidden ones.
    pub fn read(workspace: &Workspace) -> Texts {
        let mut files = Vec::new();
        let mut dirs: Vec<PathBuf> = workspace
            .packages
            .iter()
            .map(|p| p.manifest_dir.clone())
            .collect();
        let mut seen = BTreeSet::new();
        while let Some(dir) = dirs.pop() {
            if !seen.insert(dir.clone()) || dir.starts_with(&workspace.target_dir) {
                continue;
            }
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                let name = entry.file_name();
                let name = name.to_string_lossy();
                let Ok(kind) = entry.file_type() else {
                    continue;
                };
                if kind.is_dir() {
                    if !name.starts_with('.') && name != "target" {
                        dirs.push(path);
                    }
                } else if name.ends_with(".rs") {
                    if let Ok(text) = std::fs::read_to_string(&path) {
                        files.push((path, text));
                    }
                }
            }
        }
        Texts(files)
    }

    /// Each file's [`content_hash`].
    pub fn hashes(&self) -> BTreeMap<PathBuf, u64> {
        self.0
            .iter()
            .map(|(path, text)| (path.clone(), content_hash(text.as_bytes())))
            .collect()
    }

    /// Fingerprints of the files that parse, cached by content (a run with unchanged sources
    /// parses none: the parse would otherwise compete with the tests for the cores).
    pub fn fingerprints(self, cache: &JsonCache) -> HashMap<PathBuf, Fingerprint> {
        self.0
            .iter()
            .filter_map(|(path, text)| {
                let key = (
                    "fingerprint",
                    FINGERPRINT_VERSION,
                    content_hash(text.as_bytes()),
                );
                let fingerprint: Option<Fingerprint> =
                    cache.get_or_insert(key, || Fingerprint::of(text));
                Some((path.clone(), fingerprint?))
            })
            .collect()
    }
}

/// A hash of a file's bytes, to tell later whether it changed.
pub fn content_hash(bytes: &[u8]) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut hasher);
    hasher.finish()
}

/// The non-Rust files each test executable's crate reads at compile time (`include_str!`,
/// `include_bytes!`), from the dep-info file rustc writes next to it, by package.
pub fn build_inputs<'a>(
    workspace: &Workspace,
    executables: impl IntoIterator<Item = &'a TestExecutable>,
) -> HashMap<PathBuf, BTreeSet<String>> {
    let mut inputs: HashMap<PathBuf, BTreeSet<String>> = HashMap::new();
    for executable in executables {
        for path in crate::depinfo::inputs(workspace, &executable.path) {
            if path.extension().is_none_or(|e| e != "rs") {
                inputs
                    .entry(path)
                    .or_default()
                    .insert(executable.package.name.clone());
            }
        }
    }
    inputs
}

/// What one test did in the run the baseline describes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TestRecord {
    /// Package of the test's executable.
    pub package: String,
    /// (file, item key) of every function body it executed; an empty key for code outside any
    /// function (a `static`'s initialiser).
    pub items: BTreeSet<(PathBuf, String)>,
    /// Failed, crashed, timed out or never ran: rerun whenever anything is rerun.
    pub unsettled: bool,
}

/// What a selection compares a change against: the sources the shown results were built from
/// and what every test executed.
#[derive(Clone, Debug, Default)]
pub struct Baseline {
    pub files: HashMap<PathBuf, Fingerprint>,
    /// Non-Rust inputs of the build (`include_str!` files, from rustc's dep-info) → the packages
    /// whose crates read them.
    pub inputs: HashMap<PathBuf, BTreeSet<String>>,
    /// Package → the workspace packages that depend on it, directly or not, itself included.
    pub dependents: HashMap<String, BTreeSet<String>>,
    /// Package manifest directories, to tell which package a source file belongs to.
    pub packages: Vec<(String, PathBuf)>,
    /// Packages that are procedural macros: any change to them reruns their dependents.
    pub proc_macros: BTreeSet<String>,
    /// Test executables by target name.
    pub targets: HashMap<String, BuildTarget>,
    pub tests: BTreeMap<String, TestRecord>,
}

/// One test executable as cargo builds it: `cargo test -p <package> --<kind> <name>`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BuildTarget {
    pub package: String,
    /// cargo's target kind: `lib`, `bin`, `test`, `example`, `bench`.
    pub kind: String,
    pub name: String,
}

impl BuildTarget {
    /// The `cargo test` arguments that build this executable only (with `-p`).
    pub fn cargo_args(&self) -> Vec<String> {
        let name = self.name.clone();
        match self.kind.as_str() {
            "lib" | "proc-macro" => vec!["--lib".into()],
            "bin" => vec!["--bin".into(), name],
            "example" => vec!["--example".into(), name],
            "bench" => vec!["--bench".into(), name],
            _ => vec!["--test".into(), name],
        }
    }
}

/// The part before the first `::` of a test id: its executable's target name.
pub fn target_of(id: &str) -> &str {
    id.split_once("::").map_or("", |(target, _)| target)
}

/// The tests to rerun after a change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selection {
    /// Nothing the tests depend on changed (a README, a comment).
    Nothing,
    /// These tests.
    Tests(TestFilter),
    /// Every test, and why.
    All(String),
}

/// How much of the suite a selection may hold before running everything is simpler.
const MOST: f64 = 0.5;

impl Baseline {
    /// The baseline of the results in `coverage` (merged or not), for sources `files` as the
    /// latest build read them. `targets`: the test executables by target name (the latest run's,
    /// and the earlier ones' its build left out).
    pub fn new(
        workspace: &Workspace,
        files: HashMap<PathBuf, Fingerprint>,
        inputs: HashMap<PathBuf, BTreeSet<String>>,
        coverage: &Coverage,
        targets: HashMap<String, BuildTarget>,
    ) -> Baseline {
        let mut tests: Vec<TestRecord> = coverage
            .tests
            .iter()
            .map(|t| TestRecord {
                package: targets
                    .get(target_of(&t.id))
                    .map(|target| target.package.clone())
                    .unwrap_or_default(),
                items: BTreeSet::new(),
                unsettled: !matches!(t.outcome, Outcome::Passed),
            })
            .collect();
        for file in &coverage.files {
            let fingerprint = files.get(&file.path);
            // The tests of each item of the file first: a test enters an item once, not once
            // per line of it (each entry clones and compares a path; 40 ms on regex-syntax).
            let mut by_item: HashMap<&str, Vec<u32>> = HashMap::new();
            for line in &file.lines {
                let key = fingerprint
                    .and_then(|f| f.item_at(line.line))
                    .map_or("", |i| i.key.as_str());
                by_item
                    .entry(key)
                    .or_default()
                    .extend(line.tests.iter().map(|hit| hit.test));
            }
            for (key, mut hits) in by_item {
                hits.sort_unstable();
                hits.dedup();
                for hit in hits {
                    if let Some(test) = tests.get_mut(hit as usize) {
                        test.items.insert((file.path.clone(), key.to_owned()));
                    }
                }
            }
        }
        for test in &mut tests {
            test.unsettled |= test.items.is_empty();
        }
        let mut dependents: HashMap<String, BTreeSet<String>> = HashMap::new();
        for package in &workspace.packages {
            // Everything that reaches `package` through dependencies, itself included.
            let mut reached = BTreeSet::from([package.name.clone()]);
            let mut grew = true;
            while grew {
                grew = false;
                for other in &workspace.packages {
                    if !reached.contains(&other.name)
                        && other.dependencies.iter().any(|d| reached.contains(d))
                    {
                        reached.insert(other.name.clone());
                        grew = true;
                    }
                }
            }
            dependents.insert(package.name.clone(), reached);
        }
        Baseline {
            files,
            inputs,
            dependents,
            packages: workspace
                .packages
                .iter()
                .map(|p| (p.name.clone(), p.manifest_dir.clone()))
                .collect(),
            proc_macros: workspace
                .packages
                .iter()
                .filter(|p| p.proc_macro)
                .map(|p| p.name.clone())
                .collect(),
            targets,
            tests: coverage
                .tests
                .iter()
                .map(|t| t.id.clone())
                .zip(tests)
                .collect(),
        }
    }

    /// The package a source file belongs to: the deepest manifest directory above it.
    pub fn package_of(&self, path: &Path) -> Option<&str> {
        self.packages
            .iter()
            .filter(|(_, dir)| path.starts_with(dir))
            .max_by_key(|(_, dir)| dir.components().count())
            .map(|(name, _)| name.as_str())
    }

    /// The tests a change to the files in `changed` can affect: `(path, new text)`, the text
    /// `None` when the file is gone or cannot be read.
    pub fn select(&self, changed: &[(PathBuf, Option<String>)]) -> Selection {
        if self.tests.is_empty() {
            return Selection::All("no earlier run to compare with".into());
        }
        let mut packages: BTreeSet<String> = BTreeSet::new();
        let mut items: BTreeSet<(PathBuf, String)> = BTreeSet::new();
        for (path, text) in changed {
            if is_environment(path) {
                return Selection::All(format!("{} changed", path.display()));
            }
            let package = self.package_of(path);
            if package.is_some_and(|p| self.proc_macros.contains(p)) {
                // Its code runs while the crates that use it compile: no test "executes" it.
                packages.extend(package.map(str::to_owned));
                continue;
            }
            if path.extension().is_some_and(|e| e == "rs") {
                let old = self.files.get(path);
                let new = text.as_deref().and_then(Fingerprint::of);
                match (old, new) {
                    (Some(old), Some(new)) if old.outer == new.outer => {
                        let bodies: HashMap<&str, u64> =
                            old.items.iter().map(|i| (i.key.as_str(), i.body)).collect();
                        for item in &new.items {
                            if bodies.get(item.key.as_str()) != Some(&item.body) {
                                items.insert((path.clone(), item.key.clone()));
                            }
                        }
                    }
                    // Outside bodies, a new file or one that does not parse: its package. A
                    // Rust file outside every package is compiled by no crate.
                    _ => {
                        if let Some(package) = self.package_of(path) {
                            packages.insert(package.to_owned());
                        }
                    }
                }
            } else if let Some(readers) = self.inputs.get(path) {
                packages.extend(readers.iter().cloned());
            }
        }
        let affected: BTreeSet<&str> = packages
            .iter()
            .flat_map(|p| {
                self.dependents
                    .get(p)
                    .into_iter()
                    .flatten()
                    .map(String::as_str)
                    .chain([p.as_str()])
            })
            .collect();
        let in_affected = |t: &TestRecord| affected.contains(t.package.as_str());
        let by_items: Vec<&String> = self
            .tests
            .iter()
            .filter(|(_, t)| !in_affected(t) && t.items.iter().any(|i| items.contains(i)))
            .map(|(id, _)| id)
            .collect();
        if affected.is_empty() && by_items.is_empty() {
            return Selection::Nothing;
        }
        let mut ids: Vec<String> = by_items.into_iter().cloned().collect();
        ids.extend(
            self.tests
                .iter()
                .filter(|(_, t)| t.unsettled && !in_affected(t))
                .map(|(id, _)| id.clone()),
        );
        ids.sort();
        ids.dedup();
        let packages: Vec<String> = affected.into_iter().map(str::to_owned).collect();
        // Bodies only, in one package: only the executables of the selected tests need building.
        let build = match packages.is_empty() {
            true => self.build_targets(&ids),
            false => Vec::new(),
        };
        let filter = TestFilter {
            ids,
            packages,
            build,
            changed: items.into_iter().collect(),
        };
        let count = self.selected(&filter);
        if count as f64 > MOST * self.tests.len() as f64 {
            return Selection::All(format!("{count} of {} tests affected", self.tests.len()));
        }
        Selection::Tests(filter)
    }

    /// The executables that hold `ids`, when all are known and in one package; else none (build
    /// everything).
    fn build_targets(&self, ids: &[String]) -> Vec<BuildTarget> {
        let targets: Option<BTreeSet<&BuildTarget>> = ids
            .iter()
            .map(|id| self.targets.get(target_of(id)))
            .collect();
        let Some(targets) = targets else {
            return Vec::new();
        };
        let packages: BTreeSet<&str> = targets.iter().map(|t| t.package.as_str()).collect();
        if packages.len() != 1 {
            return Vec::new();
        }
        targets.into_iter().cloned().collect()
    }

    /// How many of the baseline's tests `filter` runs (new tests of its packages come on top).
    pub fn selected(&self, filter: &TestFilter) -> usize {
        self.tests
            .iter()
            .filter(|(id, t)| filter.selects(&t.package, id))
            .count()
    }
}

/// The tests of a partial run: these ids, and every test of these packages (those the baseline
/// does not know yet included).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TestFilter {
    /// Test ids `<target>::<test path>`, sorted.
    pub ids: Vec<String>,
    /// Package names, sorted.
    pub packages: Vec<String>,
    /// The executables to build, all in one package; empty: every one. The results of the others
    /// stay as they were, outside the `changed` bodies (see `merge`).
    pub build: Vec<BuildTarget>,
    /// The function bodies (file, item key) whose change made the selection.
    pub changed: Vec<(PathBuf, String)>,
}

impl TestFilter {
    pub fn ids(mut ids: Vec<String>) -> TestFilter {
        ids.sort();
        ids.dedup();
        TestFilter {
            ids,
            ..TestFilter::default()
        }
    }

    /// (Asked once per listed test of every executable: both lists are sorted.)
    pub fn selects(&self, package: &str, id: &str) -> bool {
        self.packages.iter().any(|p| p == package)
            || self.ids.binary_search_by(|i| i.as_str().cmp(id)).is_ok()
    }

    /// Adds what `other` selects. A narrowed build stays narrowed only if both were.
    pub fn absorb(&mut self, other: TestFilter) {
        let narrowed = !self.build.is_empty() && !other.build.is_empty();
        for (mine, theirs) in [
            (&mut self.ids, other.ids),
            (&mut self.packages, other.packages),
        ] {
            mine.extend(theirs);
            mine.sort();
            mine.dedup();
        }
        self.build.extend(other.build);
        self.build.sort();
        self.build.dedup();
        if !narrowed {
            self.build.clear();
        }
        self.changed.extend(other.changed);
        self.changed.sort();
        self.changed.dedup();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIB: &str = r#"
use std::fmt;

pub const LIMIT: u32 = 10;

pub fn add(a: u32, b: u32) -> u32 {
    a + b
}

pub struct Account { pub balance: u32 }

impl Account {
    pub fn deposit(&mut self, n: u32) {
        self.balance = add(self.balance, n);
    }
    pub const fn empty() -> u32 { 0 }
}

impl fmt::Display for Account {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}", self.balance)
    }
}

mod inner {
    pub fn twice(x: u32) -> u32 {
        fn helper(x: u32) -> u32 { x * 2 }
        helper(x)
    }
}
"#;

    fn keys(f: &Fingerprint) -> Vec<&str> {
        f.items.iter().map(|i| i.key.as_str()).collect()
    }

    #[test]
    fn items_are_function_bodies_with_their_lines() {
        let f = Fingerprint::of(LIB).unwrap();
        assert_eq!(
            keys(&f),
            [
                "add",
                "Account::deposit",
                "<Account as fmt :: Display>::fmt",
                "inner::twice"
            ]
        );
        let add = &f.items[0];
        assert_eq!((add.start, add.end), (6, 8));
        assert_eq!(f.item_at(7).map(|i| i.key.as_str()), Some("add"));
        assert_eq!(
            f.item_at(29).map(|i| i.key.as_str()),
            Some("inner::twice"),
            "a nested fn belongs to its enclosing body"
        );
        assert_eq!(f.item_at(4), None);
    }

    #[test]
    fn layout_and_comments_change_no_hash() {
        let f = Fingerprint::of(LIB).unwrap();
        let moved = format!(
            "// a new comment\n\n{}",
            LIB.replace("a + b", "a   +   b // sum")
        );
        let g = Fingerprint::of(&moved).unwrap();
        assert_eq!(f.outer, g.outer);
        for (a, b) in f.items.iter().zip(&g.items) {
            assert_eq!((&a.key, a.body), (&b.key, b.body));
            assert_eq!(b.start, a.start + 2, "lines move, hashes do not");
        }
    }

    #[test]
    fn a_body_edit_changes_only_that_body() {
        let f = Fingerprint::of(LIB).unwrap();
        let g = Fingerprint::of(&LIB.replace("a + b", "b + a")).unwrap();
        assert_eq!(f.outer, g.outer);
        let changed: Vec<&str> = f
            .items
            .iter()
            .zip(&g.items)
            .filter(|(a, b)| a.body != b.body)
            .map(|(a, _)| a.key.as_str())
            .collect();
        assert_eq!(changed, ["add"]);
    }

    #[test]
    fn everything_outside_bodies_is_outer() {
        let f = Fingerprint::of(LIB).unwrap();
        for edit in [
            LIB.replace("LIMIT: u32 = 10", "LIMIT: u32 = 11"),
            LIB.replace("a: u32, b: u32", "a: u32, b: u32, _c: u8"),
            LIB.replace("{ 0 }", "{ 1 }"),
            LIB.replace("use std::fmt;", "use std::fmt; use std::io;"),
            LIB.replace("pub balance: u32", "pub balance: u64"),
            LIB.replace("pub fn add", "#[inline]\npub fn add"),
            format!("{LIB}\npub fn added() {{}}\n"),
        ] {
            let g = Fingerprint::of(&edit).unwrap();
            assert_ne!(f.outer, g.outer, "{edit}");
        }
        assert!(Fingerprint::of("fn broken( {").is_none());
    }

    fn baseline() -> Baseline {
        let lib = PathBuf::from("/w/core/src/lib.rs");
        let app = PathBuf::from("/w/app/src/main.rs");
        let record = |package: &str, items: &[(&PathBuf, &str)]| TestRecord {
            package: package.into(),
            items: items
                .iter()
                .map(|(p, k)| ((*p).clone(), (*k).to_owned()))
                .collect(),
            unsettled: false,
        };
        let mut tests = BTreeMap::new();
        tests.insert("core::adds".into(), record("core", &[(&lib, "add")]));
        tests.insert(
            "core::deposits".into(),
            record("core", &[(&lib, "Account::deposit"), (&lib, "add")]),
        );
        tests.insert(
            "core::shows".into(),
            record("core", &[(&lib, "<Account as fmt :: Display>::fmt")]),
        );
        tests.insert(
            "core::twice".into(),
            record("core", &[(&lib, "inner::twice")]),
        );
        tests.insert("core::limit".into(), record("core", &[]));
        tests.insert("app::main_runs".into(), record("app", &[(&app, "main")]));
        let mut inputs = HashMap::new();
        inputs.insert(
            PathBuf::from("/w/core/data.txt"),
            BTreeSet::from(["core".to_owned()]),
        );
        let mut dependents = HashMap::new();
        dependents.insert("core".to_owned(), BTreeSet::from(["app".to_owned()]));
        dependents.insert(
            "derives".to_owned(),
            BTreeSet::from(["core".to_owned(), "app".to_owned()]),
        );
        Baseline {
            files: HashMap::from([
                (lib, Fingerprint::of(LIB).unwrap()),
                (app, Fingerprint::of("fn main() { core::run(); }").unwrap()),
            ]),
            inputs,
            dependents,
            packages: vec![
                ("core".into(), "/w/core".into()),
                ("app".into(), "/w/app".into()),
                ("derives".into(), "/w/derives".into()),
            ],
            proc_macros: BTreeSet::from(["derives".to_owned()]),
            targets: HashMap::from([
                ("core".to_owned(), target("core", "lib", "core")),
                ("app".to_owned(), target("app", "bin", "app")),
            ]),
            tests,
        }
    }

    fn target(package: &str, kind: &str, name: &str) -> BuildTarget {
        BuildTarget {
            package: package.into(),
            kind: kind.into(),
            name: name.into(),
        }
    }

    fn change(path: &str, text: &str) -> Vec<(PathBuf, Option<String>)> {
        vec![(PathBuf::from(path), Some(text.to_owned()))]
    }

    /// The test ids a selection names (`["*"]` for all, `[]` for nothing).
    fn ids(selection: Selection) -> Vec<String> {
        match selection {
            Selection::Nothing => Vec::new(),
            Selection::Tests(filter) => filter.ids,
            Selection::All(_) => vec!["*".into()],
        }
    }

    #[test]
    fn a_body_edit_selects_the_tests_that_ran_that_body() {
        let b = baseline();
        let edit = LIB.replace("self.balance = add(self.balance, n);", "self.balance += n;");
        let Selection::Tests(filter) = b.select(&change("/w/core/src/lib.rs", &edit)) else {
            panic!("a selection");
        };
        assert_eq!(filter.ids, ["core::deposits"]);
        assert_eq!(
            filter.build,
            [target("core", "lib", "core")],
            "only the executable of the test is built"
        );
        assert_eq!(
            filter.changed,
            [(
                PathBuf::from("/w/core/src/lib.rs"),
                "Account::deposit".to_owned()
            )]
        );
        let edit = LIB.replace("helper(x)", "helper(x) + 0");
        assert_eq!(
            ids(b.select(&change("/w/core/src/lib.rs", &edit))),
            ["core::twice"]
        );
    }

    #[test]
    fn comments_and_unread_files_select_nothing() {
        let b = baseline();
        let edit = LIB.replace("a + b", "a + b // why");
        assert_eq!(
            b.select(&change("/w/core/src/lib.rs", &edit)),
            Selection::Nothing
        );
        assert_eq!(
            b.select(&change("/w/README.md", "# hello")),
            Selection::Nothing
        );
    }

    #[test]
    fn outer_changes_select_the_package_and_its_dependents() {
        let mut b = baseline();
        // Keep "most of the suite" out of the way: six tests, five in core.
        for n in 0..10 {
            b.tests.insert(
                format!("other::t{n}"),
                TestRecord {
                    package: "other".into(),
                    ..Default::default()
                },
            );
        }
        let edit = LIB.replace("LIMIT: u32 = 10", "LIMIT: u32 = 11");
        let Selection::Tests(filter) = b.select(&change("/w/core/src/lib.rs", &edit)) else {
            panic!("a selection");
        };
        assert_eq!(filter.packages, ["app", "core"]);
        assert!(filter.ids.is_empty(), "{filter:?}");
        assert_eq!(b.selected(&filter), 6, "every core and app test");
        // A new file, a file that does not parse, an input read by include_str!: the package.
        for (path, text) in [
            ("/w/core/src/new.rs", "pub fn x() {}"),
            ("/w/core/src/lib.rs", "fn broken( {"),
            ("/w/core/data.txt", "new data"),
        ] {
            let Selection::Tests(filter) = b.select(&change(path, text)) else {
                panic!("a selection for {path}");
            };
            assert_eq!(filter.packages, ["app", "core"], "{path}");
        }
        // Only app's own test when app changes: core does not depend on it.
        assert_eq!(
            ids(b.select(&change("/w/app/src/main.rs", "fn main() { }"))),
            ["app::main_runs"]
        );
    }

    #[test]
    fn any_change_to_a_proc_macro_crate_reruns_its_dependents() {
        let b = baseline();
        // Even a body: it runs inside the compiler, never in a test.
        let changed = change("/w/derives/src/lib.rs", "fn expand() { 1; }");
        assert!(
            matches!(b.select(&changed), Selection::All(_)),
            "core and app depend on it: all six tests"
        );
        let mut b = baseline();
        b.dependents
            .insert("derives".to_owned(), BTreeSet::from(["app".to_owned()]));
        let Selection::Tests(filter) = b.select(&changed) else {
            panic!("a selection");
        };
        assert_eq!(filter.packages, ["app", "derives"]);
    }

    #[test]
    fn environment_changes_and_most_of_the_suite_run_everything() {
        let b = baseline();
        for path in [
            "/w/Cargo.toml",
            "/w/Cargo.lock",
            "/w/core/build.rs",
            "/w/.cargo/config.toml",
            "/w/rust-toolchain.toml",
        ] {
            assert!(
                matches!(b.select(&change(path, "")), Selection::All(_)),
                "{path}"
            );
        }
        let edit = LIB.replace("LIMIT: u32 = 10", "LIMIT: u32 = 11");
        assert!(matches!(
            b.select(&change("/w/core/src/lib.rs", &edit)),
            Selection::All(_)
        ));
        assert!(matches!(
            Baseline::default().select(&change("/w/core/src/lib.rs", LIB)),
            Selection::All(_)
        ));
    }

    #[test]
    fn builds_narrow_only_within_one_package_and_stay_narrow_only_if_both_were() {
        let mut b = baseline();
        // Tests of two packages ran the body: everything is built.
        b.tests.get_mut("app::main_runs").unwrap().items =
            BTreeSet::from([(PathBuf::from("/w/core/src/lib.rs"), "add".to_owned())]);
        let edit = LIB.replace("a + b", "b + a");
        let Selection::Tests(filter) = b.select(&change("/w/core/src/lib.rs", &edit)) else {
            panic!("a selection");
        };
        assert!(filter.build.is_empty(), "{filter:?}");
        let narrow = |name: &str| TestFilter {
            ids: vec![format!("core::{name}")],
            build: vec![target("core", "lib", "core")],
            ..TestFilter::default()
        };
        let mut both = narrow("a");
        both.absorb(narrow("b"));
        assert_eq!(both.build, [target("core", "lib", "core")]);
        both.absorb(TestFilter::ids(vec!["core::c".into()]));
        assert!(
            both.build.is_empty(),
            "a rerun of any test builds everything"
        );
        assert_eq!(target("x", "test", "api").cargo_args(), ["--test", "api"]);
        assert_eq!(target("x", "lib", "x").cargo_args(), ["--lib"]);
    }

    #[test]
    fn unsettled_tests_join_any_selection() {
        let mut b = baseline();
        b.tests.get_mut("core::twice").unwrap().unsettled = true;
        let edit = LIB.replace("a + b", "b + a");
        assert_eq!(
            ids(b.select(&change("/w/core/src/lib.rs", &edit))),
            ["core::adds", "core::deposits", "core::twice"]
        );
        let edit = LIB.replace("a + b", "a + b // only a comment");
        assert_eq!(
            b.select(&change("/w/core/src/lib.rs", &edit)),
            Selection::Nothing
        );
    }
}
