//! Which lines hold a source branch construct, for branch coverage: the machine code's conditional
//! jumps on those lines count as that construct's branches; jumps on other lines are left out.
//!
//! A construct is marked on the line where the compiler places its test: where its condition (or
//! each operand of `&&`/`||`, the scrutinee of `if let`/`while let`, a `let … else`, the `?`)
//! starts. `match` arms without a guard are not branches here: their lines show which arms ran.

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

/// Line → the branch tests there.
pub(super) fn constructs(file: &syn::File) -> BTreeMap<u32, BranchLine> {
    let mut finder = Finder::default();
    finder.visit_file(file);
    finder.lines
}

#[derive(Default)]
struct Finder {
    lines: BTreeMap<u32, BranchLine>,
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
}
