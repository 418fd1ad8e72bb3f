//! What attributes say about the code under them: `#[coverage(off)]`, `#[cfg(test)]`, other
//! `#[cfg]` predicates, `#[test]`-like attributes, and where an expression statement's are.

use syn::punctuated::Punctuated;
use syn::{Attribute, Expr, Meta, Token};

use super::Cfg;

/// What a list of attributes says about the item or statement carrying them.
#[derive(Default)]
pub(super) struct Attrs {
    pub(super) coverage_off: bool,
    /// The predicates of `#[cfg(..)]`s other than plain `test`.
    pub(super) gates: Vec<Cfg>,
    /// `#[cfg(test)]` or `#[cfg(all(test, ..))]`.
    pub(super) cfg_test: bool,
    /// An attribute whose path ends in `test`.
    pub(super) test: bool,
}

impl Attrs {
    pub(super) fn of(attrs: &[Attribute]) -> Attrs {
        let mut result = Attrs::default();
        for attr in attrs {
            let path = attr.path();
            if path.is_ident("cfg") {
                if let Ok(predicate) = attr.parse_args::<Meta>() {
                    result.cfg_test |= requires_test(&predicate);
                    if !matches!(&predicate, Meta::Path(p) if p.is_ident("test")) {
                        result.gates.push(Cfg::parse(&predicate));
                    }
                }
            } else if path.is_ident("cfg_attr") {
                if let Ok(list) =
                    attr.parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated)
                {
                    result.coverage_off |= list.iter().skip(1).any(is_coverage_off);
                }
            } else if is_coverage_off(&attr.meta) {
                result.coverage_off = true;
            } else if path.segments.last().is_some_and(|s| s.ident == "test") {
                result.test = true;
            }
        }
        result
    }
}

fn is_coverage_off(meta: &Meta) -> bool {
    matches!(meta, Meta::List(list) if list.path.is_ident("coverage") && list.tokens.to_string() == "off")
}

/// True when the cfg predicate can only hold in test builds.
fn requires_test(predicate: &Meta) -> bool {
    match predicate {
        Meta::Path(path) => path.is_ident("test"),
        Meta::List(list) if list.path.is_ident("all") => list
            .parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated)
            .is_ok_and(|all| all.iter().any(requires_test)),
        _ => false,
    }
}

/// The attributes of an expression statement. syn attaches them to the leftmost operand, as
/// rustc does.
pub(super) fn statement_attrs(mut expr: &Expr) -> &[Attribute] {
    loop {
        expr = match expr {
            Expr::Assign(e) => &e.left,
            Expr::Binary(e) => &e.left,
            Expr::Cast(e) => &e.expr,
            Expr::Array(syn::ExprArray { attrs, .. })
            | Expr::Async(syn::ExprAsync { attrs, .. })
            | Expr::Await(syn::ExprAwait { attrs, .. })
            | Expr::Block(syn::ExprBlock { attrs, .. })
            | Expr::Break(syn::ExprBreak { attrs, .. })
            | Expr::Call(syn::ExprCall { attrs, .. })
            | Expr::Closure(syn::ExprClosure { attrs, .. })
            | Expr::Const(syn::ExprConst { attrs, .. })
            | Expr::Continue(syn::ExprContinue { attrs, .. })
            | Expr::Field(syn::ExprField { attrs, .. })
            | Expr::ForLoop(syn::ExprForLoop { attrs, .. })
            | Expr::Group(syn::ExprGroup { attrs, .. })
            | Expr::If(syn::ExprIf { attrs, .. })
            | Expr::Index(syn::ExprIndex { attrs, .. })
            | Expr::Infer(syn::ExprInfer { attrs, .. })
            | Expr::Let(syn::ExprLet { attrs, .. })
            | Expr::Lit(syn::ExprLit { attrs, .. })
            | Expr::Loop(syn::ExprLoop { attrs, .. })
            | Expr::Macro(syn::ExprMacro { attrs, .. })
            | Expr::Match(syn::ExprMatch { attrs, .. })
            | Expr::MethodCall(syn::ExprMethodCall { attrs, .. })
            | Expr::Paren(syn::ExprParen { attrs, .. })
            | Expr::Path(syn::ExprPath { attrs, .. })
            | Expr::Range(syn::ExprRange { attrs, .. })
            | Expr::RawAddr(syn::ExprRawAddr { attrs, .. })
            | Expr::Reference(syn::ExprReference { attrs, .. })
            | Expr::Repeat(syn::ExprRepeat { attrs, .. })
            | Expr::Return(syn::ExprReturn { attrs, .. })
            | Expr::Struct(syn::ExprStruct { attrs, .. })
            | Expr::Try(syn::ExprTry { attrs, .. })
            | Expr::TryBlock(syn::ExprTryBlock { attrs, .. })
            | Expr::Tuple(syn::ExprTuple { attrs, .. })
            | Expr::Unary(syn::ExprUnary { attrs, .. })
            | Expr::Unsafe(syn::ExprUnsafe { attrs, .. })
            | Expr::While(syn::ExprWhile { attrs, .. })
            | Expr::Yield(syn::ExprYield { attrs, .. }) => return attrs,
            _ => return &[],
        };
    }
}

#[cfg(test)]
mod tests {
    use crate::analysis::test_support::*;
    use crate::analysis::*;

    #[test]
    fn test_module_and_test_fns() {
        let analysis = check(
            r#"
            fn add(a: i32, b: i32) -> i32 {
                a + b
            }

            #[cfg(test)]
            mod tests {
                use super::*;

                fn fixture() -> i32 {
                    2
                }

                #[test]
                fn adds() {
                    assert_eq!(add(fixture(), 2), 4);
                }

                #[tokio::test]
                async fn adds_async() {
                    assert_eq!(add(1, 1), 2);
                }
            }
            "#,
            r#"
            S   fn add(a: i32, b: i32) -> i32 {
            S       a + b
            C1  }
            -
            -   #[cfg(test)]
            -   mod tests {
            -       use super::*;
            -
            S       fn fixture() -> i32 {
            S           2
            C9      }
            -
            -       #[test]
            S       fn adds() {
            S           assert_eq!(add(fixture(), 2), 4);
            C14     }
            -
            -       #[tokio::test]
            S       async fn adds_async() {
            S           assert_eq!(add(1, 1), 2);
            C19     }
            -   }
            "#,
        );
        let test = |name: &str, line, end_line| FunctionInfo {
            is_test: true,
            ..function(name, line, end_line)
        };
        assert_eq!(
            analysis.functions(),
            [
                function("add", 1, 3),
                function("fixture", 9, 11),
                test("adds", 14, 16),
                test("adds_async", 19, 21)
            ]
        );
        let test_lines: Vec<u32> = (0..=23).filter(|&l| analysis.is_test_code(l)).collect();
        assert_eq!(test_lines, (5..=22).collect::<Vec<u32>>());
    }

    #[test]
    fn test_fn_outside_a_test_module() {
        let analysis = check(
            r#"
            fn helper() {}

            #[test]
            fn standalone() {
                helper();
            }
            "#,
            r#"
            S   fn helper() {}
            -
            -   #[test]
            S   fn standalone() {
            S       helper();
            C4  }
            "#,
        );
        let test_lines: Vec<u32> = (0..=7).filter(|&l| analysis.is_test_code(l)).collect();
        assert_eq!(test_lines, [3, 4, 5, 6]);
        assert!(analysis.functions()[1].is_test);
        assert!(!analysis.functions()[0].is_test);
    }

    #[test]
    fn cfg_gated_items_are_compiled_only() {
        let analysis = check(
            r#"
            #[cfg(feature = "x")]
            fn only_with_x() {
                work();
            }

            #[cfg(all(test, unix))]
            fn unix_test_helper() {
                work();
            }

            #[cfg(not(test))]
            impl Engine {
                fn start(&self) {
                    work();
                }
            }
            "#,
            r#"
            -   #[cfg(feature = "x")]
            s   fn only_with_x() {
            s       work();
            C2  }
            -
            -   #[cfg(all(test, unix))]
            s   fn unix_test_helper() {
            s       work();
            C7  }
            -
            -   #[cfg(not(test))]
            -   impl Engine {
            s       fn start(&self) {
            s           work();
            C13     }
            -   }
            "#,
        );
        let gated = |name: &str, line, end_line| FunctionInfo {
            compiled_only: true,
            ..function(name, line, end_line)
        };
        assert_eq!(
            analysis.functions(),
            [
                gated("only_with_x", 2, 4),
                gated("unix_test_helper", 7, 9),
                gated("Engine::start", 13, 15)
            ]
        );
        let test_lines: Vec<u32> = (0..=17).filter(|&l| analysis.is_test_code(l)).collect();
        assert_eq!(test_lines, [6, 7, 8, 9]);
    }

    #[test]
    fn statement_attributes() {
        let analysis = check(
            r#"
            fn check(x: u32) {
                #[cfg(debug_assertions)]
                validate(
                    x,
                );
                #[allow(unused_variables)] let y = x;
                #[rustfmt::skip] tidy(x);
                #[cfg(test)]
                record(x);
                #[coverage(off)]
                trace(
                    x,
                );
                let done = match x {
                    #[cfg(unix)]
                    0 => run(x),
                    _ => false,
                };
            }
            "#,
            r#"
            S   fn check(x: u32) {
            -       #[cfg(debug_assertions)]
            s       validate(
            C3          x,
            C3      );
            S       #[allow(unused_variables)] let y = x;
            S       #[rustfmt::skip] tidy(x);
            -       #[cfg(test)]
            S       record(x);
            -       #[coverage(off)]
            -       trace(
            -           x,
            -       );
            S       let done = match x {
            -           #[cfg(unix)]
            s           0 => run(x),
            S           _ => false,
            C14     };
            C1  }
            "#,
        );
        let test_lines: Vec<u32> = (0..=20).filter(|&l| analysis.is_test_code(l)).collect();
        assert_eq!(test_lines, [8, 9]);
    }

    #[test]
    fn coverage_off_items_are_ignored() {
        let analysis = check(
            r#"
            #[coverage(off)]
            fn skipped() {
                work();
            }

            #[cfg_attr(coverage_nightly, coverage(off))]
            impl Engine {
                fn hidden(&self) {
                    work();
                }
            }

            fn kept() {
                let f = #[coverage(off)] || {
                    work();
                };
            }
            "#,
            r#"
            -   #[coverage(off)]
            -   fn skipped() {
            -       work();
            -   }
            -
            -   #[cfg_attr(coverage_nightly, coverage(off))]
            -   impl Engine {
            -       fn hidden(&self) {
            -           work();
            -       }
            -   }
            -
            S   fn kept() {
            S       let f = #[coverage(off)] || {
            S           work();
            C14     };
            C13 }
            "#,
        );
        assert_eq!(analysis.functions(), [function("kept", 13, 17)]);
    }
}
