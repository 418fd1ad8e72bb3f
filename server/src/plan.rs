//! Turns an executable's DWARF line table and the source analysis into breakpoints: which addresses
//! to trap, and which coverable source line each address counts for.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

use crate::analysis::{LineKind, SourceAnalysis};
use crate::cache::JsonCache;
use crate::dwarf::LineTable;
use crate::engine::branches::MachineBranch;

mod branches;

pub use branches::SourceBranch;

/// A source file of the workspace seen in some executable, with its analysis and the lines that
/// have machine code in at least one executable.
pub struct SourceFile {
    pub path: PathBuf,
    pub analysis: SourceAnalysis,
    pub lines_with_code: BTreeSet<u32>,
    /// Statements whose only code rustc placed before the condition that decides whether they
    /// run: they take the count of the next statement of their block (which runs exactly when
    /// they do, as their code cannot fail).
    pub hoisted: BTreeSet<u32>,
    /// Later lines of a statement with code of their own (arguments, fields, chained calls)
    /// that show the statement's count: later line → statement line.
    pub aliases: BTreeMap<u32, u32>,
    /// Later lines of a macro-call statement counted at their own rows.
    pub separate: BTreeSet<u32>,
}

/// All source files met during a run, analysed once each.
#[derive(Default)]
pub struct Sources {
    pub files: Vec<SourceFile>,
    index: HashMap<PathBuf, usize>,
    /// Analyses by file content, from earlier runs.
    cache: Option<JsonCache>,
}

impl Sources {
    pub fn with_cache(cache: JsonCache) -> Self {
        Self {
            cache: Some(cache),
            ..Self::default()
        }
    }

    /// Analyses the files not seen yet, `jobs` at a time: syn parsing is the costly part of planning.
    pub fn add_all(&mut self, paths: &[&Path], jobs: usize) {
        let mut new: Vec<&Path> = paths
            .iter()
            .copied()
            .filter(|p| !self.index.contains_key(*p))
            .collect();
        new.sort();
        new.dedup();
        let cache = self.cache.as_ref();
        let analyses = crate::parallel::map(&new, jobs, |path| analyse(path, cache));
        for (path, analysis) in new.into_iter().zip(analyses) {
            self.index.insert(path.to_path_buf(), self.files.len());
            self.files.push(SourceFile {
                path: path.to_path_buf(),
                analysis,
                lines_with_code: BTreeSet::new(),
                hoisted: BTreeSet::new(),
                aliases: BTreeMap::new(),
                separate: BTreeSet::new(),
            });
        }
    }

    fn id(&mut self, path: &Path) -> usize {
        if let Some(&id) = self.index.get(path) {
            return id;
        }
        self.add_all(&[path], 1);
        self.files.len() - 1
    }
}

fn analyse(path: &Path, cache: Option<&JsonCache>) -> SourceAnalysis {
    let source = match std::fs::read_to_string(path) {
        Ok(source) => source,
        Err(error) => {
            tracing::warn!(
                "cannot read {}: {error}; using DWARF lines only",
                path.display()
            );
            return SourceAnalysis::fallback("");
        }
    };
    let compute = || {
        crate::analysis::analyze(&source).unwrap_or_else(|error| {
            tracing::warn!(
                "{} does not parse ({error}); using DWARF lines only",
                path.display()
            );
            SourceAnalysis::fallback(&source)
        })
    };
    match cache {
        Some(cache) => cache.get_or_insert(
            ("analysis", crate::analysis::RULES_VERSION, &source),
            compute,
        ),
        None => compute(),
    }
}

/// Breakpoints of one executable: `addresses[i]` counts for line `targets[i]`.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    pub addresses: Vec<u64>,
    /// `(source id, line)` each breakpoint counts for; `None` for a test entry or an inlined
    /// copy's entry that holds no line.
    pub targets: Vec<Option<(usize, u32)>>,
    /// The function instance each breakpoint lies in: the innermost inlined copy of a kept
    /// function holding it (`functions.len()` + index into the line table's `inlined`), else the
    /// function (index into its `functions`). A line executes as often as its busiest address
    /// within one instance, summed over the instances that hold its code (generic instances,
    /// inlined copies, also several in one caller): two rows of one statement in an instance
    /// must not count it twice.
    pub instances: Vec<u32>,
    /// Breakpoints on the entry lines of functions.
    pub function_entries: Vec<usize>,
    /// Where each copy of a function inlined into a caller begins: `(breakpoint, (source id, its
    /// `fn` line), the copy's instance)`. A copy has no prologue, the `fn` line's code, so its
    /// first address counts for the `fn` line too (it is usually also a row of the copy's first
    /// statement, or else a breakpoint of no line's).
    pub inlined_entries: Vec<(usize, (usize, u32), u32)>,
    /// `(breakpoint, test number)`: where each test's function begins.
    pub test_entries: Vec<(usize, u32)>,
    /// Per test number: its function's file and line, when the debug info has it.
    pub test_locations: Vec<Option<(PathBuf, u32)>>,
    /// Source branches, their sides counted by breakpoints (indexes into `addresses`).
    pub branches: Vec<SourceBranch<usize>>,
    /// Breakpoints that are conditional jumps' taken edges (`engine::branches::edge`): addresses
    /// inside an instruction, which only a trampoline may count, never an int3.
    pub edges: Vec<usize>,
}

impl Plan {
    /// Per breakpoint, the group whose busiest breakpoint gives its count (its line in its
    /// function instance), for leaving out breakpoints that another of the group bounds (see
    /// `engine::bounded`). `None` for one that counts on its own: for no line, or for more than
    /// its line (a test's or function's entry, an inlined copy's, a branch side, a taken edge).
    pub fn groups(&self) -> Vec<Option<u32>> {
        let mut own: HashSet<usize> = self
            .branches
            .iter()
            .flat_map(SourceBranch::addresses)
            .collect();
        own.extend(&self.edges);
        own.extend(&self.function_entries);
        own.extend(self.test_entries.iter().map(|&(i, _)| i));
        own.extend(self.inlined_entries.iter().map(|&(i, _, _)| i));
        let mut ids: HashMap<((usize, u32), u32), u32> = HashMap::new();
        self.targets
            .iter()
            .zip(&self.instances)
            .enumerate()
            .map(|(i, (target, &instance))| {
                let target = target.filter(|_| !own.contains(&i))?;
                let next = ids.len() as u32;
                Some(*ids.entry((target, instance)).or_insert(next))
            })
            .collect()
    }

    /// Keeps the breakpoints whose `keep` is true, renumbering what refers to them. A breakpoint
    /// left out must not be in [`Plan::groups`]' `None`s.
    pub fn retain(&mut self, keep: &[bool]) {
        let mut new_index = vec![usize::MAX; keep.len()];
        let mut next = 0;
        for (i, &k) in keep.iter().enumerate() {
            if k {
                new_index[i] = next;
                next += 1;
            }
        }
        fn filter<T>(items: &mut Vec<T>, keep: &[bool]) {
            let mut keep = keep.iter();
            items.retain(|_| keep.next().copied().unwrap_or(true));
        }
        filter(&mut self.addresses, keep);
        filter(&mut self.targets, keep);
        filter(&mut self.instances, keep);
        let renumber = |i: usize| {
            debug_assert!(keep[i], "a breakpoint others refer to is kept");
            new_index[i]
        };
        for e in &mut self.function_entries {
            *e = renumber(*e);
        }
        for e in &mut self.edges {
            *e = renumber(*e);
        }
        for (e, _, _) in &mut self.inlined_entries {
            *e = renumber(*e);
        }
        for (e, _) in &mut self.test_entries {
            *e = renumber(*e);
        }
        for branch in &mut self.branches {
            *branch = branch.map(renumber);
        }
    }

    /// For each breakpoint, the next one that counts for the same line, as a cycle (first hits
    /// lift a line's traps together). A branch side's breakpoint is a cycle of its own: lifted
    /// with its line, it would say the side ran when the line did.
    pub fn same_line(&self) -> Vec<u32> {
        let sides: HashSet<usize> = self
            .branches
            .iter()
            .flat_map(SourceBranch::addresses)
            .collect();
        let mut by_line: HashMap<(usize, u32), Vec<u32>> = HashMap::new();
        let mut next: Vec<u32> = (0..self.targets.len() as u32).collect();
        for (i, target) in self.targets.iter().enumerate() {
            if let Some(target) = target.filter(|_| !sides.contains(&i)) {
                by_line.entry(target).or_default().push(i as u32);
            }
        }
        for members in by_line.values() {
            for (k, &member) in members.iter().enumerate() {
                next[member as usize] = members[(k + 1) % members.len()];
            }
        }
        next
    }
}

/// Chooses breakpoints for one executable. A statement is counted at the addresses of its own
/// line-table rows and at those of its first later line that has code (arguments evaluated before a
/// call, an assertion's condition), within the functions that run the statement itself: a closure
/// that shares the line (or a later line) with the statement that creates it counts only for lines
/// of its own, never for the statement. Later lines with code become lines too (`SourceFile`'s
/// `aliases` and `separate`), rows hoisted above a statement's controlling condition are dropped
/// (`hoisted`), and libtest's generated `main` counts for nothing.
/// `tests` are the executable's libtest names; `crate_name` prefixes them in the debug info.
/// With the executable's countable jumps (`machine`, per function of `table`), the sides of its
/// source branches are counted too (`first_hit`: only those at addresses of their own).
pub fn plan(
    table: &LineTable,
    sources: &mut Sources,
    crate_name: &str,
    tests: &[String],
    machine: Option<&[Vec<MachineBranch>]>,
    first_hit: bool,
) -> Plan {
    #[derive(Default)]
    struct Candidate {
        own: Vec<u64>,
        later_line: u32,
        later: Vec<u64>,
    }
    let ids: Vec<usize> = table.files.iter().map(|p| sources.id(p)).collect();
    // libtest's generated `main` claims line 1 of the crate root in the debug info; it runs once
    // per process whatever the tests do, so its rows would count for whatever is on that line.
    let harness_main: HashSet<usize> = table
        .functions
        .iter()
        .enumerate()
        .filter(|(_, f)| f.path == format!("{crate_name}::main"))
        .filter(|(_, f)| {
            !sources.files[ids[f.file as usize]]
                .analysis
                .functions()
                .iter()
                .any(|source| source.line == f.line && source.name == "main")
        })
        .map(|(i, _)| i)
        .collect();
    let mut candidates: BTreeMap<(usize, u32), Candidate> = BTreeMap::new();
    // Rows on a later line of a statement where a closure body starts: (owner, addresses).
    let mut closure_rows: BTreeMap<(usize, u32), (u32, Vec<u64>)> = BTreeMap::new();
    // Rows on the other later lines of a statement: (owner, addresses).
    let mut separate_rows: BTreeMap<(usize, u32), (u32, Vec<u64>)> = BTreeMap::new();
    for row in &table.rows {
        if !harness_main.is_empty()
            && containing_function(table, row.address).is_some_and(|f| harness_main.contains(&f))
        {
            continue;
        }
        let file = ids[row.file as usize];
        match sources.files[file].analysis.kind(row.line) {
            LineKind::None => {}
            LineKind::Start { .. } => candidates
                .entry((file, row.line))
                .or_default()
                .own
                .push(row.address),
            LineKind::Continuation { owner } => {
                if sources.files[file].analysis.is_closure_body(row.line) {
                    closure_rows
                        .entry((file, row.line))
                        .or_insert_with(|| (owner, Vec::new()))
                        .1
                        .push(row.address);
                }
                let candidate = candidates.entry((file, owner)).or_default();
                if candidate.later.is_empty() || candidate.later_line == row.line {
                    candidate.later_line = row.line;
                    candidate.later.push(row.address);
                } else if !sources.files[file].analysis.is_closure_body(row.line)
                    && !sources.files[file].analysis.is_punct(row.line)
                {
                    separate_rows
                        .entry((file, row.line))
                        .or_insert_with(|| (owner, Vec::new()))
                        .1
                        .push(row.address);
                }
            }
        }
    }
    let mut inlined_entries: Vec<(u64, (usize, u32), u32)> = Vec::new();
    for (index, copy) in table.inlined.iter().enumerate() {
        let id = ids[copy.file as usize];
        let file = &mut sources.files[id];
        if file
            .analysis
            .function_at(copy.line)
            .is_some_and(|f| f.line == copy.line)
        {
            file.lines_with_code.insert(copy.line);
            let instance = (table.functions.len() + index) as u32;
            inlined_entries.push((copy.entry, (id, copy.line), instance));
        }
    }
    let function_of = |address: u64| containing_function(table, address);
    let instance_of = |address: u64| instance(table, address);
    let path_of = |address: u64| function_of(address).map(|f| table.functions[f].path.as_str());
    // A closure body's line counts the closure's code there: the rows in functions nested in
    // those of the statement (or of the line's other rows).
    for ((file, line), (owner, addresses)) in closure_rows {
        let outer: HashSet<&str> = candidates
            .get(&(file, owner))
            .map(|c| c.own.as_slice())
            .unwrap_or_default()
            .iter()
            .chain(&addresses)
            .filter_map(|&a| path_of(a))
            .collect();
        let nested: Vec<u64> = addresses
            .into_iter()
            .filter(|&a| path_of(a).is_some_and(|p| outer.iter().any(|o| is_closure_of(p, o))))
            .collect();
        if !nested.is_empty() {
            candidates.entry((file, line)).or_default().own = nested;
        }
    }
    // The other later lines of a statement with code in the statement's own functions (not in
    // its closures): an argument, a field, a chained call. In a macro call they count at their
    // own rows (an `assert!` message's arguments run only when it fails); elsewhere they show
    // the statement's count, as their own rows are no measure there (the only row of a chained
    // call's line may lie on its unwinding path).
    let claimed: HashSet<u64> = candidates
        .values()
        .flat_map(|c| c.own.iter().chain(&c.later))
        .copied()
        .collect();
    let mut separate: HashMap<(usize, u32), u32> = HashMap::new();
    for ((file, line), (owner, addresses)) in separate_rows {
        let Some(statement) = candidates.get(&(file, owner)) else {
            continue;
        };
        let functions: HashSet<Option<usize>> = statement
            .own
            .iter()
            .chain(&statement.later)
            .map(|&a| function_of(a))
            .collect();
        let own: Vec<u64> = statement_code(addresses, &path_of)
            .into_iter()
            .filter(|&a| functions.contains(&function_of(a)))
            .collect();
        let analysis = &sources.files[file].analysis;
        if own.is_empty() || candidates.contains_key(&(file, line)) {
            continue;
        }
        if !analysis.is_macro_statement(owner) {
            if !analysis.is_short_circuit(line) {
                sources.files[file].aliases.insert(line, owner);
            }
            continue;
        }
        let own: Vec<u64> = own.into_iter().filter(|a| !claimed.contains(a)).collect();
        if !own.is_empty() {
            candidates.entry((file, line)).or_default().own = own;
            separate.insert((file, line), owner);
        }
    }
    // Per line and instance: where its own code begins (for the controlling lines below).
    let mut first_row: HashMap<(usize, u32, u32), u64> = HashMap::new();
    for (&(file, line), candidate) in &candidates {
        for &address in &candidate.own {
            first_row
                .entry((file, line, instance_of(address)))
                .and_modify(|first| *first = (*first).min(address))
                .or_insert(address);
        }
    }
    let mut pairs: Vec<(u64, Option<(usize, u32)>)> = Vec::new();
    for ((file, line), candidate) in candidates {
        let (later_line, later): (u32, HashSet<u64>) = (
            candidate.later_line,
            candidate.later.iter().copied().collect(),
        );
        // The first line's code may be only a path the statement rarely takes (a multi-line
        // `assert!(` holds just its panic there), so the first later line with code counts too.
        let mut addresses = statement_code(candidate.own, &path_of);
        let functions: HashSet<Option<usize>> = addresses.iter().map(|&a| function_of(a)).collect();
        if addresses.is_empty() {
            addresses = statement_code(candidate.later, &path_of);
        } else {
            addresses.extend(
                candidate
                    .later
                    .into_iter()
                    .filter(|&a| functions.contains(&function_of(a))),
            );
        }
        // Code placed before the condition, guard or loop header that decides whether the
        // statement runs (rustc hoists a constant `let` above a match guard) runs whether or not
        // the statement does: it is not the statement's. A statement left with no code of its
        // own takes its count from the next one (see `SourceFile::hoisted`).
        if let Some(controller) = sources.files[file].analysis.controller(line) {
            let had_code = !addresses.is_empty();
            addresses.retain(|&a| {
                first_row
                    .get(&(file, controller, instance_of(a)))
                    .is_none_or(|&first| a > first)
            });
            if had_code && addresses.is_empty() {
                sources.files[file].hoisted.insert(line);
            }
        }
        if addresses.is_empty() {
            continue;
        }
        if let Some(&owner) = separate.get(&(file, line)) {
            // Only within a statement that is a line itself.
            if !sources.files[file].lines_with_code.contains(&owner) {
                continue;
            }
            sources.files[file].separate.insert(line);
        }
        // That later line shows the statement's count, unless it is the right operand of `&&`
        // or `||`, which may not run when the statement does: then it is not a line.
        let analysis = &sources.files[file].analysis;
        if addresses.iter().any(|a| later.contains(a))
            && !analysis.is_short_circuit(later_line)
            && !analysis.is_closure_body(later_line)
            && !analysis.is_punct(later_line)
        {
            sources.files[file].aliases.insert(later_line, line);
        }
        sources.files[file].lines_with_code.insert(line);
        pairs.extend(addresses.into_iter().map(|a| (a, Some((file, line)))));
    }

    let functions: HashMap<&str, &crate::dwarf::FunctionEntry> = table
        .functions
        .iter()
        .map(|f| (f.path.as_str(), f))
        .collect();
    let test_functions: Vec<Option<&crate::dwarf::FunctionEntry>> = tests
        .iter()
        .map(|name| {
            functions
                .get(format!("{crate_name}::{name}").as_str())
                .copied()
        })
        .collect();
    // libtest's wrapper closure for a test shares the test's `fn` line and runs before the test
    // begins: only the test functions' own code counts for that line (several tests share it
    // when a macro defines them).
    let mut test_lines: HashMap<(usize, u32), HashSet<Option<usize>>> = HashMap::new();
    for f in test_functions.iter().flatten() {
        test_lines
            .entry((ids[f.file as usize], f.line))
            .or_default()
            .insert(containing_function(table, f.address));
    }
    pairs.retain(|&(address, target)| {
        target
            .and_then(|t| test_lines.get(&t))
            .is_none_or(|tests| tests.contains(&containing_function(table, address)))
    });
    pairs.extend(test_functions.iter().flatten().map(|f| (f.address, None)));
    pairs.extend(
        inlined_entries
            .iter()
            .map(|&(address, _, _)| (address, None)),
    );
    // Lines' own addresses (test entries trap: no counters to share).
    let counted: HashSet<u64> = pairs
        .iter()
        .filter(|(_, target)| target.is_some())
        .map(|&(address, _)| address)
        .collect();
    let branches = machine.map_or_else(Vec::new, |machine| {
        branches::find(
            table,
            &ids,
            sources,
            machine,
            &|f| harness_main.contains(&f),
            &|a| counted.contains(&a),
            first_hit,
        )
    });
    // Addresses only a branch needs count for no line.
    pairs.extend(
        branches
            .iter()
            .flat_map(SourceBranch::addresses)
            .map(|a| (a, None)),
    );
    // A line target wins over a bare test entry at the same address.
    pairs.sort_unstable_by_key(|&(address, target)| (address, target.is_none()));
    pairs.dedup_by_key(|&mut (address, _)| address);

    let addresses: Vec<u64> = pairs.iter().map(|&(a, _)| a).collect();
    let index_of = |address: u64| addresses.binary_search(&address).ok();
    let test_entries = test_functions
        .iter()
        .enumerate()
        .filter_map(|(test, f)| Some((index_of((*f)?.address)?, test as u32)))
        .collect();
    let test_locations = test_functions
        .iter()
        .map(|f| f.map(|f| (table.files[f.file as usize].clone(), f.line)))
        .collect();
    let function_entries = pairs
        .iter()
        .enumerate()
        .filter(|(_, (_, target))| {
            target.is_some_and(|(file, line)| {
                sources.files[file]
                    .analysis
                    .function_at(line)
                    .is_some_and(|f| f.line == line)
            })
        })
        .map(|(i, _)| i)
        .collect();
    let instances = addresses.iter().map(|&a| instance(table, a)).collect();
    let inlined_entries = inlined_entries
        .into_iter()
        .filter_map(|(address, line, instance)| Some((index_of(address)?, line, instance)))
        .collect();
    let branches = branches
        .iter()
        .map(|b| b.map(|a| index_of(a).expect("a branch's address is planned")))
        .collect();
    let edges = machine
        .into_iter()
        .flatten()
        .flatten()
        .map(|b| (b, crate::engine::branches::edge(b.jump)))
        .filter(|(b, edge)| b.taken == crate::engine::branches::Side::At(*edge))
        .filter_map(|(_, edge)| index_of(edge))
        .collect();
    Plan {
        branches,
        edges,
        targets: pairs.into_iter().map(|(_, t)| t).collect(),
        instances,
        addresses,
        function_entries,
        inlined_entries,
        test_entries,
        test_locations,
    }
}

/// The addresses of a statement's own code: those not in a closure of another function that has
/// code on the line (a line that creates a closure also holds the closure's code). Generic
/// instances share a path and all count.
fn statement_code<'a>(addresses: Vec<u64>, path_of: &dyn Fn(u64) -> Option<&'a str>) -> Vec<u64> {
    let paths: HashSet<&str> = addresses.iter().filter_map(|&a| path_of(a)).collect();
    let nested = |path: &str| paths.iter().any(|outer| is_closure_of(path, outer));
    addresses
        .into_iter()
        .filter(|&a| path_of(a).is_none_or(|p| !nested(p)))
        .collect()
}

/// `path` names a closure defined (at any depth) in the function `outer`.
fn is_closure_of(path: &str, outer: &str) -> bool {
    if path.len() > outer.len()
        && path.starts_with(outer)
        && path[outer.len()..].starts_with("::{closure")
    {
        return true;
    }
    // A method's concrete DIE may take its path from its declaration inside the type's DIE (no
    // `{impl#N}`), while a closure of it compiled in another unit sits in `{impl#N}::method`.
    if !path.contains("{impl#") {
        return false;
    }
    let (path, outer) = (without_impls(path), without_impls(outer));
    path.len() > outer.len()
        && path.starts_with(&outer)
        && path[outer.len()].starts_with("{closure")
}

/// See `Plan::instances`.
fn instance(table: &LineTable, address: u64) -> u32 {
    match table.inlined_copy_at(address) {
        Some(copy) => (table.functions.len() + copy) as u32,
        None => containing_function(table, address).map_or(u32::MAX, |i| i as u32),
    }
}

fn without_impls(path: &str) -> Vec<&str> {
    path.split("::")
        .filter(|segment| !segment.starts_with("{impl#"))
        .collect()
}

/// The function whose code starts last at or before `address` (functions are sorted by address).
fn containing_function(table: &LineTable, address: u64) -> Option<usize> {
    table
        .functions
        .partition_point(|f| f.address <= address)
        .checked_sub(1)
}

#[cfg(test)]
mod tests {
    use super::{is_closure_of, Plan, SourceBranch};
    use crate::analysis::Construct;
    use crate::engine::branches::Side;

    /// An `if` on `line` of source 0 whose sides are counted so.
    fn if_branch(line: u32, taken: Side<usize>, not_taken: Side<usize>) -> SourceBranch<usize> {
        SourceBranch {
            source: 0,
            line,
            ordinal: 0,
            construct: Construct::If,
            oriented: true,
            taken,
            not_taken,
        }
    }

    #[test]
    fn a_lines_traps_are_lifted_together_but_not_its_branch_sides() {
        // Breakpoints 0-2 count for line 5, 1 is also a branch's taken side; 3 its other side.
        let plan = Plan {
            addresses: vec![0x10, 0x14, 0x18, 0x20],
            targets: vec![Some((0, 5)), Some((0, 5)), Some((0, 5)), None],
            branches: vec![if_branch(5, Side::At(1), Side::At(3))],
            ..Plan::default()
        };
        assert_eq!(plan.same_line(), [2, 1, 0, 3]);
    }

    #[test]
    fn breakpoints_group_by_line_and_instance_unless_they_count_for_more() {
        // 0-2 line 5 in instance 0 (1 a branch side, 3 its other side), 4 line 5 in instance 1,
        // 5 a test's entry on line 5, 6 a function entry, 7 an inlined copy's entry, 8 an edge.
        let plan = Plan {
            addresses: vec![0x10, 0x14, 0x18, 0x20, 0x30, 0x40, 0x50, 0x60, 0x61],
            targets: vec![
                Some((0, 5)),
                Some((0, 5)),
                Some((0, 5)),
                None,
                Some((0, 5)),
                Some((0, 5)),
                Some((0, 6)),
                Some((0, 7)),
                Some((0, 7)),
            ],
            instances: vec![0, 0, 0, 0, 1, 0, 0, 0, 0],
            branches: vec![if_branch(5, Side::At(1), Side::At(3))],
            test_entries: vec![(5, 0)],
            function_entries: vec![6],
            inlined_entries: vec![(7, (0, 2), 1)],
            edges: vec![8],
            ..Plan::default()
        };
        let groups = plan.groups();
        assert_eq!(groups[0], groups[2]);
        assert!(groups[0].is_some());
        assert!(groups[4].is_some() && groups[4] != groups[0]);
        for own in [1, 3, 5, 6, 7, 8] {
            assert_eq!(groups[own], None, "breakpoint {own}");
        }
    }

    #[test]
    fn leaving_breakpoints_out_renumbers_what_refers_to_them() {
        let mut plan = Plan {
            addresses: vec![0x10, 0x14, 0x18, 0x20, 0x30, 0x31],
            targets: vec![
                Some((0, 5)),
                Some((0, 5)),
                Some((0, 6)),
                None,
                Some((0, 7)),
                None,
            ],
            instances: vec![0, 0, 0, 0, 0, 0],
            branches: vec![if_branch(6, Side::At(2), Side::Rest { whole: 4, other: 5 })],
            test_entries: vec![(3, 0)],
            function_entries: vec![2],
            inlined_entries: vec![(4, (0, 2), 1)],
            edges: vec![5],
            ..Plan::default()
        };
        plan.retain(&[true, false, true, true, true, true]);
        assert_eq!(plan.addresses, [0x10, 0x18, 0x20, 0x30, 0x31]);
        assert_eq!(plan.targets[1], Some((0, 6)));
        assert_eq!(plan.instances.len(), 5);
        assert_eq!(plan.branches[0].taken, Side::At(1));
        assert_eq!(
            plan.branches[0].not_taken,
            Side::Rest { whole: 3, other: 4 }
        );
        assert_eq!(plan.test_entries, [(2, 0)]);
        assert_eq!(plan.function_entries, [1]);
        assert_eq!(plan.inlined_entries, [(3, (0, 2), 1)]);
        assert_eq!(plan.edges, [4]);
    }

    #[test]
    fn closures_are_recognised_by_their_path() {
        assert!(is_closure_of("krate::f::{closure#0}", "krate::f"));
        assert!(is_closure_of(
            "krate::f::{closure#0}::{closure#1}",
            "krate::f"
        ));
        assert!(!is_closure_of("krate::fg::{closure#0}", "krate::f"));
        assert!(!is_closure_of("krate::f", "krate::f"));
        assert!(!is_closure_of("krate::f::inner", "krate::f"));
        // A method's path from its declaration in the type; its closure's from the impl block.
        assert!(is_closure_of(
            "krate::literal::{impl#3}::push::{closure#0}",
            "krate::literal::push"
        ));
        assert!(!is_closure_of(
            "krate::literal::{impl#3}::push::inner",
            "krate::literal::push"
        ));
    }
}
