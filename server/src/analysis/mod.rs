//! Source analysis: decides from the syntax of one Rust file which lines a person counts as code,
//! which statement each line belongs to, where functions are and which lines are test code.
//!
//! `lexer` classifies lines by their text (code, punctuation, comments), `attributes` reads what
//! `#[cfg]`, `#[test]` and `#[coverage(off)]` say, `cfg` keeps `#[cfg]` predicates to decide them
//! against the build's cfg set, `ignore` applies `// coverlay: ignore` markers, `jumps` says how a
//! bare `break;`/`continue;`/`return;` is counted, `macros` finds the functions a `macro_rules!`
//! body defines and which invocations expand them (`macro_match` matches an invocation against
//! the rules), and `walker` holds the rules for each syntax construct.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

mod attributes;
mod branches;
mod cfg;
mod ignore;
mod jumps;
mod lexer;
mod macro_match;
mod macros;
mod walker;

pub use branches::{Arm, BranchLine, Construct, MatchArms, Operator};
pub use cfg::{Cfg, CfgSet};
pub use jumps::JumpCount;
use lexer::{classify_text, split_lines, TextClass};
pub use macros::invoked_elsewhere;
use walker::Walker;

/// Part of the key of cached analyses: bump it whenever the same text is analysed differently
/// (2: `unreachable!()` is not coverable; 3: `else if` conditions are lines of their own; 4:
/// `loop {`, `unsafe {` and `{` openers are not; 5: controlling lines; 6: closure body lines;
/// 7: guards only control, next statement in block; 8, 9: short-circuit and punctuation lines;
/// 10: `)?;` is punctuation; 11: macro statements; 12: `} else {` openers; 13: `fn` lines open
/// their body's first statement; 14: cfg predicates, module files, bare jumps; 15: bare jumps in
/// else branches and along else-if chains; 16: jump arms of two-arm matches; 17: branch
/// constructs and their operators; 18: `match` arms counted by their lines, and functions in
/// `macro_rules!` bodies; 19: bare jumps counted by branch sides, by `while` passes and against the
/// other arms of larger matches; 20: not against arms with constant patterns; 21: both of 18's
/// rule sets together; 22: functions of macros with several rules and in repetitions, by macro
/// matching); 23: guarded arms that are bare jumps; 24: macros invoked from other files and
/// from other macros; 25: not from calls a cfg, another macro or an unexpanded function holds).
pub const RULES_VERSION: u32 = 25;

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

/// A `mod name;` declaration: its file is part of the crate, and test code throughout when the
/// declaration is under `#[cfg(test)]` (or inside a module that is) — also the tests a macro
/// generates there, which the syntax does not show.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleFile {
    /// The inline modules (`mod a { … }`) around the declaration, outermost first.
    pub within: Vec<String>,
    pub name: String,
    /// Its `#[path = "…"]`.
    pub path: Option<String>,
    pub test: bool,
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
    /// Start line → the line of the innermost condition, match guard (or arm pattern), loop header
    /// or `let … else` whose outcome decides whether it runs.
    #[serde(default)]
    controller: std::collections::BTreeMap<u32, u32>,
    /// Later lines of a statement where a closure's expression body starts: its code there counts
    /// for that line (the statement's own code there still counts for the statement).
    #[serde(default)]
    closure_bodies: std::collections::BTreeSet<u32>,
    /// Later lines of a statement where the right operand of `&&`/`||` starts.
    #[serde(default)]
    short_circuit: std::collections::BTreeSet<u32>,
    /// Start lines of statements that are macro calls (`assert!(…)`, `write!(…)?`).
    #[serde(default)]
    macro_statements: std::collections::BTreeSet<u32>,
    /// Lines of closing braces, brackets, parentheses, semicolons, commas and `?` only.
    #[serde(default)]
    punct: std::collections::BTreeSet<u32>,
    /// Start line of a statement → start line of the next statement of the same block.
    #[serde(default)]
    next_in_block: std::collections::BTreeMap<u32, u32>,
    /// Items and statements under `#[cfg(…)]` (other than plain `test`): first line, last line,
    /// predicate.
    #[serde(default)]
    gates: Vec<(u32, u32, Cfg)>,
    /// Start lines of item-position macro calls, which may expand to no code at all.
    #[serde(default)]
    item_macros: std::collections::BTreeSet<u32>,
    /// `mod name;` declarations.
    #[serde(default)]
    module_files: Vec<ModuleFile>,
    /// Bare `break;`/`continue;`/`return;` lines → how their count follows from other lines'.
    #[serde(default)]
    jumps: std::collections::BTreeMap<u32, JumpCount>,
    /// `} else {` line, or a function's `fn` line → the first statement of the block it opens.
    #[serde(default)]
    opens: std::collections::BTreeMap<u32, u32>,
    /// Lines where a branch construct's test is (see `branches`).
    #[serde(default)]
    branches: std::collections::BTreeMap<u32, BranchLine>,
    /// The `match`es whose arms can be counted by their lines, in source order.
    #[serde(default)]
    matches: Vec<MatchArms>,
    /// Names of the `macro_rules!` this file defines.
    #[serde(default)]
    macro_names: std::collections::BTreeSet<String>,
    /// Macro invocations: the macro's name (the last segment of its path) and the line.
    #[serde(default)]
    macro_invocations: Vec<(String, u32)>,
    /// (inner, outer): the macro `outer` this file defines invokes `inner` in every expansion.
    #[serde(default)]
    nested_invocations: Vec<(String, String)>,
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
            let mut analysis = walker.finish();
            (analysis.branches, analysis.matches) = branches::constructs(file);
            Ok(analysis)
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
    for ((kind, class), line) in analysis.kinds.iter_mut().zip(&text).zip(1..) {
        // Comment and blank lines inside a statement carry no code even though they sit in its span.
        if *class == TextClass::Empty {
            *kind = LineKind::None;
        }
        if *class == TextClass::Punct {
            analysis.punct.insert(line);
        }
    }
    ignore::apply(&mut analysis, &lines);
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
            controller: Default::default(),
            closure_bodies: Default::default(),
            short_circuit: Default::default(),
            macro_statements: Default::default(),
            punct: Default::default(),
            next_in_block: Default::default(),
            gates: Default::default(),
            item_macros: Default::default(),
            module_files: Default::default(),
            jumps: Default::default(),
            opens: Default::default(),
            branches: Default::default(),
            matches: Default::default(),
            macro_names: Default::default(),
            macro_invocations: Default::default(),
            nested_invocations: Default::default(),
        };
        ignore::apply(&mut analysis, &lines);
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

    /// The line whose condition decides whether the statement starting on `line` runs (see
    /// `plan`: code the compiler hoists above that condition does not count for the statement).
    pub fn controller(&self, line: u32) -> Option<u32> {
        self.controller.get(&line).copied()
    }

    /// For a `} else {` line, which holds no code, or a `fn` line without code of its own: the
    /// first statement of the block it opens, whose count it shows.
    pub fn opened_statement(&self, line: u32) -> Option<u32> {
        self.opens.get(&line).copied()
    }

    /// The statement after the one starting on `line`, in the same block.
    pub fn next_in_block(&self, line: u32) -> Option<u32> {
        self.next_in_block.get(&line).copied()
    }

    /// The statement starting on `line` is a macro call: its arguments may be evaluated only on
    /// some paths (an `assert!` message's).
    pub fn is_macro_statement(&self, line: u32) -> bool {
        self.macro_statements.contains(&line)
    }

    /// Only closing braces, brackets, parentheses, semicolons and commas: no line of its own.
    pub fn is_punct(&self, line: u32) -> bool {
        self.punct.contains(&line)
    }

    /// A later line of a statement on which the right operand of `&&` or `||` starts: it runs
    /// only when the left one does not decide.
    pub fn is_short_circuit(&self, line: u32) -> bool {
        self.short_circuit.contains(&line)
    }

    /// A later line of a statement on which a closure's expression body starts.
    pub fn is_closure_body(&self, line: u32) -> bool {
        self.closure_bodies.contains(&line)
    }

    /// Whether the build with `set` compiles the code on `line`, as far as `#[cfg(…)]` goes:
    /// `Some(true)` when every predicate around it holds, `Some(false)` when one does not, `None`
    /// when the set cannot tell or there is no predicate, and always `None` on an item-position
    /// macro call (which may expand to no code however its cfg is set).
    pub fn compiled_in(&self, line: u32, set: &CfgSet) -> Option<bool> {
        if self.item_macros.contains(&line) {
            return None;
        }
        self.gates_hold(line, set)
    }

    /// Whether every `#[cfg(…)]` around `line` holds in `set` (`None`: none around it, or
    /// undecided).
    fn gates_hold(&self, line: u32, set: &CfgSet) -> Option<bool> {
        let mut gates = self
            .gates
            .iter()
            .filter(|(first, last, _)| (*first..=*last).contains(&line))
            .peekable();
        gates.peek()?;
        let mut all = Some(true);
        for (_, _, predicate) in gates {
            match predicate.holds(set) {
                Some(false) => return Some(false),
                None => all = None,
                Some(true) => {}
            }
        }
        all
    }

    /// The files that may hold the modules this file (at `path`) declares, each with whether it
    /// is test code: where rustc looks for `mod name;`, both as if this file owned its
    /// directory (`lib.rs`, `main.rs`, `mod.rs`, a crate root) and as if it did not; the caller
    /// keeps those that exist.
    pub fn module_files(&self, path: &Path) -> Vec<(PathBuf, bool)> {
        let Some(dir) = path.parent() else {
            return Vec::new();
        };
        let owned = dir.join(path.file_stem().unwrap_or_default());
        let mut files = Vec::new();
        for module in &self.module_files {
            for base in [dir, owned.as_path()] {
                let base = module
                    .within
                    .iter()
                    .fold(base.to_path_buf(), |base, inline| base.join(inline));
                match &module.path {
                    Some(explicit) => files.push((base.join(explicit), module.test)),
                    None => {
                        files.push((base.join(format!("{}.rs", module.name)), module.test));
                        files.push((base.join(&module.name).join("mod.rs"), module.test));
                    }
                }
            }
        }
        files
    }

    /// For a bare `break;`/`continue;`/`return;` line: the lines its count follows from.
    pub fn jump_count(&self, line: u32) -> Option<JumpCount> {
        self.jumps.get(&line).copied()
    }

    /// The names of the `macro_rules!` this file defines.
    pub fn macro_names(&self) -> impl Iterator<Item = &str> {
        self.macro_names.iter().map(String::as_str)
    }

    /// The macros this file invokes, by name, each with its line.
    pub fn macro_invocations(&self) -> impl Iterator<Item = (&str, u32)> {
        self.macro_invocations
            .iter()
            .map(|(name, line)| (name.as_str(), *line))
    }

    /// (inner, outer): a macro this file defines (`outer`) invokes `inner` whenever it is invoked.
    pub fn nested_invocations(&self) -> impl Iterator<Item = (&str, &str)> {
        self.nested_invocations
            .iter()
            .map(|(inner, outer)| (inner.as_str(), outer.as_str()))
    }

    /// Some `#[cfg(…)]` predicate applies to code of this file.
    pub fn has_gates(&self) -> bool {
        !self.gates.is_empty()
    }

    /// The `match`es whose arms can be counted by their lines.
    pub fn matches(&self) -> &[MatchArms] {
        &self.matches
    }

    /// The branch tests on `line`, if any.
    pub fn branch_line(&self, line: u32) -> Option<&BranchLine> {
        self.branches.get(&line)
    }

    /// Inside a test fn or a `#[cfg(test)]` item.
    pub fn is_test_code(&self, line: u32) -> bool {
        let index = self
            .test_ranges
            .partition_point(|&(start, _)| start <= line);
        index > 0 && self.test_ranges[index - 1].1 >= line
    }
}

fn to_u32(value: usize) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}

#[cfg(test)]
pub(crate) mod test_support;

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;

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
    fn cfg_predicates_are_decided_by_the_build_set() {
        let source = "#[cfg(feature = \"std\")]\nfn a() {\n    #[cfg(unix)]\n    work();\n}\n\
                      #[cfg(test)]\nfn b() {}\n#[cfg(feature = \"std\")]\nmake!(x);\n";
        let analysis = analyze(source).expect("parses");
        assert!(analysis.has_gates());
        let mut set = CfgSet::default();
        set.add_feature("std");
        let compiled_in = |line, set: &CfgSet| analysis.compiled_in(line, set);
        assert_eq!(compiled_in(2, &set), Some(true));
        assert_eq!(compiled_in(4, &set), Some(false), "not unix");
        set.add("unix");
        assert_eq!(compiled_in(4, &set), Some(true));
        assert_eq!(compiled_in(7, &set), None, "cfg(test) decides nothing here");
        assert_eq!(
            compiled_in(9, &set),
            None,
            "a macro call may expand to nothing"
        );
        assert_eq!(compiled_in(2, &CfgSet::default()), Some(false));
    }

    #[test]
    fn module_files_are_found_where_rustc_looks_for_them() {
        let source = "mod plain;\n#[cfg(test)]\nmod tests;\nmod inline {\n    mod deeper;\n}\n\
                      #[cfg(test)]\nmod checks {\n    mod more;\n}\n\
                      #[cfg(test)]\n#[path = \"x/y.rs\"]\nmod z;\n";
        let analysis = analyze(source).expect("parses");
        let files = analysis.module_files(Path::new("/p/src/a.rs"));
        let has = |path: &str, test: bool| files.contains(&(PathBuf::from(path), test));
        assert!(has("/p/src/plain.rs", false));
        assert!(has("/p/src/a/plain.rs", false));
        assert!(has("/p/src/plain/mod.rs", false));
        assert!(has("/p/src/tests.rs", true));
        assert!(has("/p/src/a/tests/mod.rs", true));
        assert!(has("/p/src/inline/deeper.rs", false));
        assert!(has("/p/src/a/checks/more.rs", true));
        assert!(has("/p/src/x/y.rs", true));
        // Four plain declarations × two directories × two forms, the `#[path]` one × two.
        assert_eq!(files.len(), 18);
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
