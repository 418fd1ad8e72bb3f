//! Bare `break;`, `continue;` and `return;`: in a debug build they compile to no code of their own
//! (the branch of the condition before them goes straight to the loop's or the function's end),
//! so their counts are derived from the lines around them. What the syntax says about that.

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
}

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
/// `else`, a call, an assignment, a macro call, or an `if` none of whose branches jumps away.
pub(super) fn completes(stmt: &Stmt) -> bool {
    match stmt {
        Stmt::Local(local) => local.init.as_ref().is_some_and(|i| i.diverge.is_none()),
        Stmt::Macro(_) => true,
        Stmt::Expr(Expr::If(e), _) => !jumps_away(e),
        Stmt::Expr(expr, Some(_)) => matches!(
            expr,
            Expr::Call(_)
                | Expr::MethodCall(_)
                | Expr::Assign(_)
                | Expr::Binary(_)
                | Expr::Macro(_)
        ),
        _ => false,
    }
}

/// Holds a `break`, `continue`, `return` or `?` (one in a nested loop or closure counts too: a
/// cautious answer).
fn jumps_away(expr: &ExprIf) -> bool {
    struct Finder(bool);
    impl<'ast> Visit<'ast> for Finder {
        fn visit_expr(&mut self, expr: &'ast Expr) {
            if matches!(
                expr,
                Expr::Break(_) | Expr::Continue(_) | Expr::Return(_) | Expr::Try(_)
            ) {
                self.0 = true;
            }
            visit::visit_expr(self, expr);
        }
    }
    let mut finder = Finder(false);
    finder.visit_expr_if(expr);
    finder.0
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
