//! Which lines hold a source branch construct, for branch coverage: the machine code's conditional
//! jumps on those lines count as that construct's branches; jumps on other lines are left out.
//!
//! A construct is marked on the line where the compiler places its test: where its condition (or
//! each operand of `&&`/`||`, the scrutinee of `if let`/`while let`, a `let … else`, the `?`)
//! starts. A `match` is a branch point of its own, one way per arm, counted from the arms' lines
//! (`MatchArms`): only arms whose line runs exactly once each time the arm is chosen are kept.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use syn::spanned::Spanned;
use syn::visit::{self, Visit};
use syn::{BinOp, Expr};

/// A source construct that decides between two ways.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Construct {
    /// `if` / `else if` condition.
    If,
    /// `while` condition.
    While,
    /// An operand of `&&` or `||`.
    ShortCircuit,
    /// `if let` / `while let` / a `let` in a condition: the pattern matches or not.
    IfLet,
    /// `let … else`.
    LetElse,
    /// `?`: the value or an early return.
    Try,
    /// A `match` arm's guard.
    Guard,
}

impl Construct {
    /// How the construct is named in messages.
    pub fn describe(self) -> &'static str {
        match self {
            Construct::If | Construct::While | Construct::ShortCircuit | Construct::Guard => {
                "condition"
            }
            Construct::IfLet | Construct::LetElse => "pattern",
            Construct::Try => "`?`",
        }
    }
}

/// A comparison operator of a condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operator {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// What the branch tests on one line are.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BranchLine {
    /// The outermost construct whose test is on the line.
    pub construct: Construct,
    /// The comparison operators of the conditions (and `&&`/`||` operands) that start on the
    /// line, inverted under a `!`: which side of a compare-and-jump is the true one follows from
    /// them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub operators: Vec<Operator>,
    /// For each of those conditions, whether it is negated (`!x`, `!(a < b)`): rustc tests the
    /// value under the `!` and swaps the two ways, so a `bool` test's true side flips.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub negated: Vec<bool>,
}

impl Operator {
    fn inverse(self) -> Operator {
        match self {
            Operator::Eq => Operator::Ne,
            Operator::Ne => Operator::Eq,
            Operator::Lt => Operator::Ge,
            Operator::Ge => Operator::Lt,
            Operator::Gt => Operator::Le,
            Operator::Le => Operator::Gt,
        }
    }
}

/// A `match` whose arms' own lines say how often each was chosen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatchArms {
    /// Line of the `match` keyword.
    pub line: u32,
    /// The arms that can be counted, in source order; at least two.
    pub arms: Vec<Arm>,
}

/// A `match` arm and the line whose runs are its runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Arm {
    /// The arm's first line (its pattern): the arm's name in reports.
    pub line: u32,
    /// Its body's first line: the first statement of a block body, else the body itself.
    pub counted: u32,
}

/// Line → the branch tests there, and the `match`es whose arms can be counted.
pub(super) fn constructs(file: &syn::File) -> (BTreeMap<u32, BranchLine>, Vec<MatchArms>) {
    let mut finder = Finder::default();
    finder.visit_file(file);
    (finder.lines, finder.matches)
}

#[derive(Default)]
struct Finder {
    lines: BTreeMap<u32, BranchLine>,
    matches: Vec<MatchArms>,
}

fn line_of(spanned: &dyn Spanned) -> u32 {
    super::to_u32(spanned.span().start().line)
}

fn last_line_of(spanned: &dyn Spanned) -> u32 {
    super::to_u32(spanned.span().end().line)
}

/// The arms of `expr` that can be counted by their lines: an arm is left out when its counted
/// line holds code of the match itself or of another arm (a shared line, the match line), when
/// its pattern's test may be compiled onto its own line (a string, float, range, slice or named
/// constant pattern: rustc tests them where the pattern is, so the line runs for every arm tried
/// there), when its guard is on the counted line (the guard runs for values it rejects), or when
/// a loop starts there (the line runs once per iteration). Empty bodies (`=> {}`) and lines
/// without code are left out when the report has no count for them.
fn countable_arms(expr: &syn::ExprMatch) -> Vec<Arm> {
    let opened = line_of(&expr.brace_token.span.open());
    let spans: Vec<(u32, u32)> = expr
        .arms
        .iter()
        .map(|arm| (line_of(arm), last_line_of(arm)))
        .collect();
    expr.arms
        .iter()
        .enumerate()
        .filter_map(|(i, arm)| {
            let counted = body_line(&arm.body);
            let shared = counted <= opened
                || spans
                    .iter()
                    .enumerate()
                    .any(|(j, &(start, end))| j != i && (start..=end).contains(&counted));
            let guarded = arm
                .guard
                .as_ref()
                .is_some_and(|(_, guard)| last_line_of(guard) >= counted);
            let tested_in_place = pattern_tests_in_place(&arm.pat)
                && (line_of(&arm.pat)..=last_line_of(&arm.pat)).contains(&counted);
            let looping = starts_loop(&arm.body, counted);
            (!shared && !guarded && !tested_in_place && !looping).then(|| Arm {
                line: line_of(arm),
                counted,
            })
        })
        .collect()
}

fn body_line(body: &Expr) -> u32 {
    match strip(body) {
        Expr::Block(block) => match block.block.stmts.first() {
            Some(first) => line_of(first),
            None => line_of(body),
        },
        other => line_of(other),
    }
}

/// A test rustc compiles at the pattern (a comparison by `PartialEq`, a range or a slice length)
/// rather than with the match's switch. A path in capitals is a constant of unknown type.
fn pattern_tests_in_place(pat: &syn::Pat) -> bool {
    use syn::Pat;
    let constant = |name: &syn::Ident| {
        let name = name.to_string();
        name.len() > 1
            && name
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
    };
    match pat {
        Pat::Lit(lit) => !matches!(
            lit.lit,
            syn::Lit::Int(_) | syn::Lit::Char(_) | syn::Lit::Bool(_) | syn::Lit::Byte(_)
        ),
        Pat::Range(_) | Pat::Slice(_) | Pat::Macro(_) | Pat::Verbatim(_) | Pat::Const(_) => true,
        Pat::Ident(ident) => {
            (ident.subpat.is_none() && constant(&ident.ident))
                || ident
                    .subpat
                    .as_ref()
                    .is_some_and(|(_, sub)| pattern_tests_in_place(sub))
        }
        Pat::Path(path) => path
            .path
            .segments
            .last()
            .is_some_and(|s| constant(&s.ident)),
        Pat::Or(or) => or.cases.iter().any(pattern_tests_in_place),
        Pat::Paren(paren) => pattern_tests_in_place(&paren.pat),
        Pat::Reference(reference) => pattern_tests_in_place(&reference.pat),
        Pat::Struct(strukt) => strukt.fields.iter().any(|f| pattern_tests_in_place(&f.pat)),
        Pat::Tuple(tuple) => tuple.elems.iter().any(pattern_tests_in_place),
        Pat::TupleStruct(tuple) => tuple.elems.iter().any(pattern_tests_in_place),
        Pat::Type(typed) => pattern_tests_in_place(&typed.pat),
        _ => false,
    }
}

/// Whether a loop of `body` starts on `line`.
fn starts_loop(body: &Expr, line: u32) -> bool {
    struct Loops {
        line: u32,
        found: bool,
    }
    impl<'ast> Visit<'ast> for Loops {
        fn visit_expr(&mut self, expr: &'ast Expr) {
            if matches!(expr, Expr::ForLoop(_) | Expr::While(_) | Expr::Loop(_))
                && line_of(expr) == self.line
            {
                self.found = true;
            }
            visit::visit_expr(self, expr);
        }
    }
    let mut loops = Loops { line, found: false };
    loops.visit_expr(body);
    loops.found
}

impl Finder {
    fn mark(&mut self, spanned: &dyn Spanned, construct: Construct) -> &mut BranchLine {
        let line = super::to_u32(spanned.span().start().line);
        self.lines.entry(line).or_insert(BranchLine {
            construct,
            operators: Vec::new(),
            negated: Vec::new(),
        })
    }

    /// A condition: a `let` in it tests a pattern.
    fn condition(&mut self, condition: &Expr, construct: Construct) {
        let mut bare = strip(condition);
        let mut negated = false;
        if let Expr::Unary(syn::ExprUnary {
            op: syn::UnOp::Not(_),
            expr,
            ..
        }) = bare
        {
            negated = true;
            bare = strip(expr);
        }
        match bare {
            Expr::Let(test) => {
                self.mark(&test.let_token, Construct::IfLet);
                self.mark(&*test.expr, Construct::IfLet);
            }
            Expr::Binary(binary) => {
                let operator = match binary.op {
                    BinOp::Eq(_) => Some(Operator::Eq),
                    BinOp::Ne(_) => Some(Operator::Ne),
                    BinOp::Lt(_) => Some(Operator::Lt),
                    BinOp::Le(_) => Some(Operator::Le),
                    BinOp::Gt(_) => Some(Operator::Gt),
                    BinOp::Ge(_) => Some(Operator::Ge),
                    _ => None,
                };
                let line = self.mark(condition, construct);
                match operator {
                    Some(operator) => {
                        let operator = if negated {
                            operator.inverse()
                        } else {
                            operator
                        };
                        if !line.operators.contains(&operator) {
                            line.operators.push(operator);
                        }
                        line.negated.push(negated);
                    }
                    // `!(a && b)`: its operands' ways are swapped too, the line's are mixed.
                    None if negated => line.negated.extend([true, false]),
                    None => {}
                }
            }
            _ => {
                self.mark(condition, construct).negated.push(negated);
            }
        }
    }
}

/// `expr` without the parentheses around it.
fn strip(mut expr: &Expr) -> &Expr {
    while let Expr::Paren(inner) = expr {
        expr = &inner.expr;
    }
    expr
}

impl<'ast> Visit<'ast> for Finder {
    fn visit_expr_if(&mut self, expr: &'ast syn::ExprIf) {
        self.condition(&expr.cond, Construct::If);
        visit::visit_expr_if(self, expr);
    }

    fn visit_expr_while(&mut self, expr: &'ast syn::ExprWhile) {
        self.condition(&expr.cond, Construct::While);
        visit::visit_expr_while(self, expr);
    }

    fn visit_expr_binary(&mut self, expr: &'ast syn::ExprBinary) {
        if matches!(expr.op, BinOp::And(_) | BinOp::Or(_)) {
            self.condition(&expr.left, Construct::ShortCircuit);
            self.condition(&expr.right, Construct::ShortCircuit);
        }
        visit::visit_expr_binary(self, expr);
    }

    fn visit_expr_try(&mut self, expr: &'ast syn::ExprTry) {
        self.mark(&expr.question_token, Construct::Try);
        self.mark(expr, Construct::Try);
        visit::visit_expr_try(self, expr);
    }

    fn visit_arm(&mut self, arm: &'ast syn::Arm) {
        if let Some((_, guard)) = &arm.guard {
            self.condition(guard, Construct::Guard);
        }
        visit::visit_arm(self, arm);
    }

    fn visit_expr_match(&mut self, expr: &'ast syn::ExprMatch) {
        let arms = countable_arms(expr);
        if arms.len() >= 2 {
            self.matches.push(MatchArms {
                line: line_of(&expr.match_token),
                arms,
            });
        }
        visit::visit_expr_match(self, expr);
    }

    fn visit_local(&mut self, local: &'ast syn::Local) {
        if let Some(init) = local.init.as_ref().filter(|i| i.diverge.is_some()) {
            self.mark(&local.let_token, Construct::LetElse);
            self.mark(&*init.expr, Construct::LetElse);
        }
        visit::visit_local(self, local);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(source: &str) -> Vec<(u32, Construct, Vec<Operator>, Vec<bool>)> {
        let file = syn::parse_file(source).expect("parses");
        let found = constructs(&file)
            .0
            .into_iter()
            .map(|(line, b)| (line, b.construct, b.operators, b.negated))
            .collect();
        proc_macro2::extra::invalidate_current_thread_spans();
        found
    }

    #[test]
    fn each_construct_is_marked_where_its_test_starts() {
        let source = "\
fn f(a: bool, b: bool, v: Option<u32>) -> Result<u32, E> {
    if a
        && b > 2
    {
        g();
    } else if !(v.is_none()) {
    }
    while (a < 1) || !b {}
    let Some(x) = v else {
        return Ok(0);
    };
    if let Some(y) = v {}
    match v {
        Some(n) if n > 3 => {}
        _ => {}
    }
    let n = parse()?;
    for i in 0..n {}
    Ok(x)
}
";
        use Construct::*;
        let (none, no) = (Vec::new, Vec::new);
        assert_eq!(
            lines(source),
            [
                (2, If, none(), vec![false]),
                (3, ShortCircuit, vec![Operator::Gt], vec![false]),
                (6, If, none(), vec![true]),
                (8, While, vec![Operator::Lt], vec![false, true]),
                (9, LetElse, none(), no()),
                (12, IfLet, none(), no()),
                (14, Guard, vec![Operator::Gt], vec![false]),
                (17, Try, none(), no()),
            ]
        );
        // A comparison under `!` is its inverse.
        let negated = lines("fn f(a: u8) { if !(a < 3) {} }");
        assert_eq!(negated[0].2, [Operator::Ge]);
    }

    fn arms(source: &str) -> Vec<(u32, Vec<(u32, u32)>)> {
        let file = syn::parse_file(source).expect("parses");
        let found = constructs(&file)
            .1
            .into_iter()
            .map(|m| (m.line, m.arms.iter().map(|a| (a.line, a.counted)).collect()))
            .collect();
        proc_macro2::extra::invalidate_current_thread_spans();
        found
    }

    #[test]
    fn match_arms_are_counted_on_their_own_lines_or_left_out() {
        let source = "\
fn f(o: Option<u32>, s: &str) {
    match o {
        Some(0) => a(),
        Some(n) if n > 2 => {
            b(n)
        }
        Some(n) if n > 1 => c(),
        Some(n) => {
            for i in 0..n {}
        }
        None => {}
    }
    match s { \"a\" => 1, _ => 2 };
    let x = match s {
        \"a\" => 1,
        \"b\" => {
            2
        }
        LIMIT => 4,
        _ => match o {
            Some(1..=3) => 5,
            None | Some(_) => 6,
        },
    };
}
";
        // Kept: `Some(0)`, the guarded arm whose body is below its guard, `None => {}` (its line
        // has no code: the report leaves it out). Left out: the guard on the counted line, the
        // loop, the one-line match, the string and constant patterns on their counted lines, the
        // range; the inner match then has one arm only, and is no branch point.
        assert_eq!(
            arms(source),
            [
                (2, vec![(3, 3), (4, 5), (11, 11)]),
                (14, vec![(16, 17), (20, 20)]),
            ]
        );
    }
}
