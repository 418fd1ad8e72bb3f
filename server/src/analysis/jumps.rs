//! Bare `break;`, `continue;` and `return;`: in a debug build they compile to no code of their own
//! (the branch of the condition before them goes straight to the loop's or the function's end),
//! so their counts are derived from the lines around them, or from the side of the branch that
//! enters them (decoded from the machine code). What the syntax says about that.

use serde::{Deserialize, Serialize};
use syn::spanned::Spanned;
use syn::visit::{self, Visit};
use syn::{Block, Expr, ExprIf, Stmt};

use super::to_u32;

/// How often a bare `break;`, `continue;` or `return;` ran, which has no machine code of its own
/// in a debug build (the branch before it goes straight to the loop's or function's end).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum JumpCount {
    /// As often as the statement on this line, which always completes into the jump.
    After(u32),
    /// As often as the first line's (the `if`, `else if`, `let … else` or two-arm `match` whose
    /// branch the jump is) less the second line's (the other branch's first statement or arm, the
    /// next condition, or the next statement), which runs exactly when the jump does not.
    Difference(u32, u32),
    /// As often as the condition of the `if` on line `condition` held (the jump opens its
    /// block): the true side of its branch, or of the last of the `operands` of an `&&` chain.
    /// For a jump whose neighbours say nothing (the last statement of a loop body or match arm).
    Taken { condition: u32, operands: u32 },
    /// As often as the statement on this line got past its one `?` (it always completes
    /// otherwise): the side of the `?`'s branch that goes on.
    Passed(u32),
    /// The jump arm of a `match` of more than two arms without guards: as often as the `match`
    /// line less each other arm's line (up to [`MAX_OTHER_ARMS`], in order, `None` after them).
    Remainder {
        all: u32,
        rest: [Option<u32>; MAX_OTHER_ARMS],
    },
    /// A jump that leaves a `while` loop from the `if` ending its body: the `if` ran once per
    /// pass and the `while` line once per entry (the `before` statement completes into it) and
    /// per pass that did not leave, so the jump ran `before` + `condition` − `header` times.
    /// With the `if`'s `operands` (see `Taken`), its branch says so too where it was found.
    LoopExit {
        before: u32,
        condition: u32,
        header: u32,
        operands: Option<u32>,
    },
}

/// A pattern tested only by what the `match` line does (reading a discriminant) and binding on
/// its arm's line only when the arm runs: variants, bindings, wildcards, tuples and references of
/// those. A literal, range, slice or constant pattern is tested on its own line, also for values
/// that go on to later arms, so its line counts more than its arm's runs.
pub(super) fn structural(pat: &syn::Pat) -> bool {
    use syn::Pat;
    match pat {
        Pat::Ident(p) => p.subpat.is_none() && !constant(&p.ident),
        Pat::Path(p) => !p.path.segments.last().is_some_and(|s| constant(&s.ident)),
        Pat::Wild(_) | Pat::Rest(_) => true,
        Pat::Or(p) => p.cases.iter().all(structural),
        Pat::Paren(p) => structural(&p.pat),
        Pat::Reference(p) => structural(&p.pat),
        Pat::Tuple(p) => p.elems.iter().all(structural),
        Pat::TupleStruct(p) => p.elems.iter().all(structural),
        Pat::Struct(p) => p.fields.iter().all(|field| structural(&field.pat)),
        _ => false,
    }
}

/// A SCREAMING_CASE name: a constant by convention (a variant or binding is not), which a
/// pattern compares like a literal.
fn constant(ident: &syn::Ident) -> bool {
    let name = ident.to_string();
    name.len() > 1
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// Most other arms a `match`'s jump arm is counted against (see `JumpCount::Remainder`).
pub const MAX_OTHER_ARMS: usize = 8;

fn start_line(span: proc_macro2::Span) -> u32 {
    to_u32(span.start().line)
}

/// The line of a bare `break;`, `continue;` or `return;` (no value: a value has code of its own).
pub(super) fn bare_jump(stmt: &Stmt) -> Option<u32> {
    match stmt {
        Stmt::Expr(expr, _) => bare_jump_expr(expr),
        _ => None,
    }
}

pub(super) fn bare_jump_expr(expr: &Expr) -> Option<u32> {
    match expr {
        Expr::Break(e) if e.expr.is_none() && e.attrs.is_empty() => {
            Some(start_line(e.break_token.span))
        }
        Expr::Continue(e) if e.attrs.is_empty() => Some(start_line(e.continue_token.span)),
        Expr::Return(e) if e.expr.is_none() && e.attrs.is_empty() => {
            Some(start_line(e.return_token.span))
        }
        _ => None,
    }
}

/// A bare jump that leaves the loop labelled `label` (if any) whose body holds it: a `break`, a
/// `return`, or a `continue` of another, outer loop.
pub(super) fn leaves_loop(stmt: &Stmt, label: Option<&syn::Lifetime>) -> Option<u32> {
    let line = bare_jump(stmt)?;
    match stmt {
        Stmt::Expr(Expr::Continue(e), _) => {
            (e.label.is_some() && e.label.as_ref() != label).then_some(line)
        }
        _ => Some(line),
    }
}

/// A block that begins with a bare jump: that jump's line.
pub(super) fn bare_jump_first(block: &Block) -> Option<u32> {
    block.stmts.first().and_then(bare_jump)
}

pub(super) fn is_loop(stmt: &Stmt) -> bool {
    matches!(
        stmt,
        Stmt::Expr(Expr::Loop(_) | Expr::While(_) | Expr::ForLoop(_), _)
    )
}

/// A statement that, once its line has run, always reaches the next one: a `let` without
/// `else`, a call, an assignment, a macro call, or an `if`, none of which jumps away.
pub(super) fn completes(stmt: &Stmt) -> bool {
    match stmt {
        Stmt::Local(local) => local
            .init
            .as_ref()
            .is_some_and(|i| i.diverge.is_none() && !holds(&i.expr, jumps)),
        Stmt::Macro(_) => true,
        Stmt::Expr(Expr::If(e), _) => !jumps_away(e),
        Stmt::Expr(expr, Some(_)) => {
            matches!(
                expr,
                Expr::Call(_)
                    | Expr::MethodCall(_)
                    | Expr::Assign(_)
                    | Expr::Binary(_)
                    | Expr::Macro(_)
            ) && !holds(expr, jumps)
        }
        _ => false,
    }
}

/// A `break`, `continue`, `return` or `?`.
pub(super) fn jumps(expr: &Expr) -> bool {
    matches!(
        expr,
        Expr::Break(_) | Expr::Continue(_) | Expr::Return(_) | Expr::Try(_)
    )
}

/// The number of operands of a condition whose branches all decide together whether the block
/// runs: one test, or an `&&` chain (its last operand's true side is the block's count); not
/// `||` (either operand may enter) nor `let` (a pattern's branches are not oriented). No operand
/// may hold a branch of its own (a closure's `if` or `?`, an `&&` in an argument), which would
/// show on the same line.
pub(super) fn and_chain(cond: &Expr) -> Option<u32> {
    match cond {
        Expr::Binary(e) if matches!(e.op, syn::BinOp::And(_)) => {
            Some(and_chain(&e.left)? + and_chain(&e.right)?)
        }
        Expr::Paren(e) => and_chain(&e.expr),
        operand => (!holds(operand, branches)).then_some(1),
    }
}

/// An expression that compiles to a conditional jump of its own.
fn branches(expr: &Expr) -> bool {
    matches!(
        expr,
        Expr::Let(_)
            | Expr::If(_)
            | Expr::Match(_)
            | Expr::Try(_)
            | Expr::While(_)
            | Expr::ForLoop(_)
            | Expr::Loop(_)
            | Expr::Binary(syn::ExprBinary {
                op: syn::BinOp::And(_) | syn::BinOp::Or(_),
                ..
            })
    )
}

/// A call (or method call) followed by its one `?`, alone or as a `let` initialiser: once it has
/// run it reaches the next statement unless the `?` returns early.
pub(super) fn passes_one_try(stmt: &Stmt) -> bool {
    let expr = match stmt {
        Stmt::Expr(expr, Some(_)) => expr,
        Stmt::Local(local) => match &local.init {
            Some(init) if init.diverge.is_none() => &init.expr,
            _ => return false,
        },
        _ => return false,
    };
    let Expr::Try(attempt) = expr else {
        return false;
    };
    matches!(&*attempt.expr, Expr::Call(_) | Expr::MethodCall(_))
        && !holds(&attempt.expr, |e| branches(e) || jumps(e))
}

/// `expr` or some expression inside it (closures included: their branches show on the same
/// line) is `found`.
pub(super) fn holds(expr: &Expr, found: fn(&Expr) -> bool) -> bool {
    let mut finder = Finder(found, false);
    finder.visit_expr(expr);
    finder.1
}

fn stmt_holds(stmt: &Stmt, found: fn(&Expr) -> bool) -> bool {
    let mut finder = Finder(found, false);
    finder.visit_stmt(stmt);
    finder.1
}

struct Finder(fn(&Expr) -> bool, bool);

impl<'ast> Visit<'ast> for Finder {
    fn visit_expr(&mut self, expr: &'ast Expr) {
        self.1 |= (self.0)(expr);
        visit::visit_expr(self, expr);
    }
}

/// Holds a `break`, `continue`, `return` or `?` (one in a nested loop or closure counts too: a
/// cautious answer).
fn jumps_away(expr: &ExprIf) -> bool {
    holds(&expr.cond, jumps)
        || expr
            .then_branch
            .stmts
            .iter()
            .any(|stmt| stmt_holds(stmt, jumps))
        || expr
            .else_branch
            .as_ref()
            .is_some_and(|(_, otherwise)| holds(otherwise, jumps))
}

/// The line where a statement's code begins (after its attributes).
pub(super) fn stmt_start(stmt: &Stmt) -> u32 {
    match stmt {
        Stmt::Local(local) => start_line(local.let_token.span),
        Stmt::Macro(m) => start_line(m.mac.path.span()),
        Stmt::Expr(expr, _) => start_line(expr.span()),
        Stmt::Item(item) => start_line(item.span()),
    }
}
