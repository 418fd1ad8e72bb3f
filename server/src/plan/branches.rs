//! Source branches of one executable: the conditional jumps of workspace functions
//! (`engine::branches`) that lie on the line of a branch construct (`analysis`).
//!
//! A jump belongs to the line of the last line-table row at or before it in its function. It is
//! shown on that line when the line is a statement's first, else on the statement's first line
//! (the right operand of `&&` on a line of its own, a `?` on a `)?;` line). Jumps on lines with no
//! construct (a `for` loop's `next()`, a `match` on its arms, inlined library code) are left out.
//!
//! Where the jump's test tells which side is the condition's true one, the sides are oriented:
//! `taken` counts the condition holding. A bool tested against zero is true when nonzero; a
//! compare-and-jump's condition code is the source operator, its inverse (the compiler jumps to
//! the false side), its swap (operands exchanged) or both, and only the first two and the last two
//! agree on which side is true; a `?`'s early return is the side that calls `from_residual`. A
//! pattern test compares discriminants, which says nothing of the pattern: not oriented.

use std::collections::HashMap;

use crate::analysis::{Construct, LineKind, Operator};
use crate::dwarf::LineTable;
use crate::engine::branches::{Compare, MachineBranch, Side, Test};

use super::Sources;

/// One conditional jump standing for a source branch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceBranch<A> {
    /// Index into `Sources::files`.
    pub source: usize,
    /// The line that shows it.
    pub line: u32,
    /// Its place among the branches of that line within one function (in address order): the
    /// same branch in another generic instance or executable has the same ordinal.
    pub ordinal: u32,
    pub construct: Construct,
    /// `taken` counts the condition holding (the pattern matching, the `?` returning early) and
    /// `not_taken` it failing; when false, they are the jump's taken and fall-through sides.
    pub oriented: bool,
    /// How its two sides are counted (addresses, or breakpoint indexes once planned).
    pub taken: Side<A>,
    pub not_taken: Side<A>,
}

impl<A: Copy> SourceBranch<A> {
    pub fn addresses(&self) -> impl Iterator<Item = A> {
        self.taken
            .addresses()
            .into_iter()
            .chain(self.not_taken.addresses())
    }

    pub fn map<B>(&self, f: impl Fn(A) -> B) -> SourceBranch<B> {
        SourceBranch {
            source: self.source,
            line: self.line,
            ordinal: self.ordinal,
            construct: self.construct,
            oriented: self.oriented,
            taken: self.taken.map(&f),
            not_taken: self.not_taken.map(&f),
        }
    }
}

/// The source branches of the functions of `table` (all but those `skip` names, by index), in
/// function and address order, from each function's countable jumps (`machine`, aligned with
/// `table.functions`). `ids` maps the table's files to source ids; `counted`: the addresses the
/// lines count at, which the branches' sides use where they can. `first_hit`: only the jumps whose
/// sides have addresses of their own (first hits say whether an address ran, not how often), each
/// keeping the ordinal it has with counts.
pub(super) fn find(
    table: &LineTable,
    ids: &[usize],
    sources: &Sources,
    machine: &[Vec<MachineBranch>],
    skip: &dyn Fn(usize) -> bool,
    counted: &dyn Fn(u64) -> bool,
    first_hit: bool,
) -> Vec<SourceBranch<u64>> {
    let mut rows: Vec<(u64, usize, u32)> = table
        .rows
        .iter()
        .map(|r| (r.address, ids[r.file as usize], r.line))
        .collect();
    rows.sort_unstable();
    let mut branches = Vec::new();
    for (index, function) in table.functions.iter().enumerate() {
        if skip(index) {
            continue;
        }
        let mut ordinals: HashMap<(usize, u32), u32> = HashMap::new();
        for jump in machine.get(index).into_iter().flatten() {
            let at = rows.partition_point(|r| r.0 <= jump.jump);
            let Some(&(row, source, line)) = at.checked_sub(1).map(|i| &rows[i]) else {
                continue;
            };
            if row < function.address {
                continue;
            }
            let analysis = &sources.files[source].analysis;
            let Some(tests) = analysis.branch_line(line) else {
                continue;
            };
            let construct = match jump.test {
                Test::Residual(_) => Construct::Try,
                _ => tests.construct,
            };
            let taken_if = taken_if(construct, jump.test, &tests.operators, &tests.negated);
            let line = match analysis.kind(line) {
                LineKind::Start { .. } => line,
                LineKind::Continuation { owner } => owner,
                LineKind::None => continue,
            };
            let ordinal = ordinals.entry((source, line)).or_default();
            let this = *ordinal;
            *ordinal += 1;
            let sides = match first_hit {
                false => Some(jump.cheapest(counted)),
                true => jump.own_sides(),
            };
            let Some((taken, not_taken)) = sides else {
                continue;
            };
            let (taken, not_taken) = match taken_if {
                Some(false) => (not_taken, taken),
                _ => (taken, not_taken),
            };
            branches.push(SourceBranch {
                source,
                line,
                ordinal: this,
                construct,
                oriented: taken_if.is_some(),
                taken,
                not_taken,
            });
        }
    }
    branches
}

/// Whether a jump that tests `test` for `construct` is taken when the condition holds (`Some(true)`),
/// when it fails, or cannot be told. `operators` and `negated`: those of the conditions on the
/// jump's line (see `analysis::BranchLine`).
fn taken_if(
    construct: Construct,
    test: Test,
    operators: &[Operator],
    negated: &[bool],
) -> Option<bool> {
    match (construct, test) {
        (_, Test::Residual(taken)) => Some(taken),
        (Construct::Try | Construct::IfLet | Construct::LetElse, _) => None,
        // A `!` swaps the ways: the value tested is the one under it.
        (_, Test::NonZero(taken)) => match (negated.contains(&false), negated.contains(&true)) {
            (true, false) => Some(taken),
            (false, true) => Some(!taken),
            _ => None,
        },
        (_, Test::Compare(jump)) => {
            let holds = |source: Compare| jump == source || jump == source.swapped();
            let when_true = operators.iter().any(|&o| holds(compare(o)));
            let when_false = operators.iter().any(|&o| holds(compare(o).inverse()));
            match (when_true, when_false) {
                (true, false) => Some(true),
                (false, true) => Some(false),
                _ => None,
            }
        }
        (_, Test::Unknown) => None,
    }
}

fn compare(operator: Operator) -> Compare {
    match operator {
        Operator::Eq => Compare::Equal,
        Operator::Ne => Compare::NotEqual,
        Operator::Lt => Compare::Less,
        Operator::Le => Compare::LessEqual,
        Operator::Gt => Compare::Greater,
        Operator::Ge => Compare::GreaterEqual,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::SourceFile;

    /// `if a && b { while c {} }` with `&& b` on a line of its own.
    #[test]
    fn jumps_take_the_construct_line_of_their_row_and_an_ordinal_per_function() {
        let source = "fn f(a: bool, b: bool, c: bool) {\n    if a\n        && b\n    {\n        while c {}\n    }\n}\n";
        let mut sources = Sources::default();
        sources.files.push(SourceFile {
            path: "/w/src/lib.rs".into(),
            analysis: crate::analysis::analyze(source).unwrap(),
            lines_with_code: Default::default(),
            hoisted: Default::default(),
            aliases: Default::default(),
            separate: Default::default(),
        });
        // 0x1000 test dil,1 (4); 0x1004 je 0x101c; 0x1006 test sil,1 (4); 0x100a je 0x101c;
        // 0x100c mov ecx,0 (5); 0x1011 test dl,1 (3); 0x1014 jne 0x1011; 0x1016 mov eax,1 (5);
        // 0x101b ret; 0x101c ret
        let bytes = [
            0x40, 0xF6, 0xC7, 0x01, 0x74, 0x16, 0x40, 0xF6, 0xC6, 0x01, 0x74, 0x10, 0xB9, 0, 0, 0,
            0, 0xF6, 0xC2, 0x01, 0x75, 0xFB, 0xB8, 0x01, 0, 0, 0, 0xC3, 0xC3,
        ];
        let code = crate::engine::ExeCode::from_sections(
            vec![(0x1000, bytes.to_vec())],
            vec![(0x1000, 0x101d)],
            &[],
        );
        // A line table as the DWARF reader would keep it (its inlined ranges are its own).
        let row = |line: u32, address: u64| serde_json::json!({"file": 0, "line": line, "address": address});
        let table: LineTable = serde_json::from_value(serde_json::json!({
            "files": ["/w/src/lib.rs"],
            "rows": [row(2, 0x1000), row(3, 0x1006), row(5, 0x100c), row(7, 0x1016)],
            "functions": [{"path": "w::f", "file": 0, "line": 1, "address": 0x1000}],
            "inlined": [],
            "inlined_ranges": [],
            "load_base": 0,
            "position_independent": true,
        }))
        .expect("a line table");
        let machine = crate::engine::branches::find_all(&code, &[0x1000]);
        let found = find(
            &table,
            &[0],
            &sources,
            &machine,
            &|_| false,
            &|_| false,
            false,
        );
        let summary: Vec<(u32, u32, Construct, u64)> = found
            .iter()
            .map(|b| (b.line, b.ordinal, b.construct, b.addresses().min().unwrap()))
            .collect();
        // Line 3 is a later line of the `if` statement: its jump shows on line 2. The first
        // counted address of each: the straight run that ends with the jump (the targets are
        // shared or entered some other way).
        assert_eq!(
            summary,
            [
                (2, 0, Construct::If, 0x1000),
                (2, 1, Construct::ShortCircuit, 0x1006),
                (5, 0, Construct::While, 0x1011),
            ]
        );
        assert!(find(
            &table,
            &[0],
            &sources,
            &machine,
            &|_| true,
            &|_| false,
            false
        )
        .is_empty());
        // First hits: only a jump whose sides have addresses of their own, with the ordinal it
        // has with counts (`&& b`'s, made so here; the `if`'s taken side is a difference).
        let mut own = machine.clone();
        own[0][1].taken = Side::At(0x101c);
        let first_hits: Vec<(u32, u32, Side<u64>)> =
            find(&table, &[0], &sources, &own, &|_| false, &|_| false, true)
                .iter()
                .map(|b| (b.line, b.ordinal, b.taken))
                .collect();
        assert_eq!(first_hits, [(2, 1, Side::At(0x100c))]);
        // `test dil,1; je`: jumps when `a` is false, so the sides are swapped to put true first.
        assert!(found.iter().all(|b| b.oriented));
        assert_eq!(found[0].taken, Side::At(0x1006));
    }

    #[test]
    fn compare_and_jump_sides_follow_the_source_operator() {
        use Compare::*;
        let cmp = |c| Test::Compare(c);
        let ops = |o: &[Operator]| o.to_vec();
        // `x > 0`: jg to the body, jle to the else, or with operands swapped jl / jge.
        for (jump, want) in [
            (Greater, true),
            (LessEqual, false),
            (Less, true),
            (GreaterEqual, false),
        ] {
            assert_eq!(
                taken_if(Construct::If, cmp(jump), &ops(&[Operator::Gt]), &[false]),
                Some(want),
                "{jump:?}"
            );
        }
        assert_eq!(
            taken_if(Construct::If, cmp(Equal), &ops(&[Operator::Eq]), &[false]),
            Some(true)
        );
        assert_eq!(
            taken_if(Construct::If, cmp(Equal), &ops(&[Operator::Ne]), &[false]),
            Some(false)
        );
        // Two operators on the line that disagree, or none: unknown.
        let both = ops(&[Operator::Gt, Operator::Le]);
        assert_eq!(
            taken_if(Construct::ShortCircuit, cmp(Greater), &both, &[]),
            None
        );
        assert_eq!(taken_if(Construct::If, cmp(Greater), &[], &[]), None);
        // Bools, patterns and `?`.
        let nonzero = |construct, taken, negated: &[bool]| {
            taken_if(construct, Test::NonZero(taken), &[], negated)
        };
        assert_eq!(nonzero(Construct::While, false, &[false]), Some(false));
        // `if !x`: rustc tests `x` and swaps the ways; with `!x && y` on one line, unknown.
        assert_eq!(nonzero(Construct::If, true, &[true]), Some(false));
        assert_eq!(nonzero(Construct::If, true, &[true, false]), None);
        assert_eq!(nonzero(Construct::IfLet, true, &[]), None);
        assert_eq!(nonzero(Construct::Try, true, &[]), None);
        assert_eq!(
            taken_if(Construct::If, Test::Residual(false), &[], &[]),
            Some(false)
        );
    }
}
