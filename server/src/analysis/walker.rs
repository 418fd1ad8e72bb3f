//! The syn walker: one rule per construct deciding which line a statement, arm, condition or
//! closure body starts on, which later lines belong to it, and where functions begin and end.

use proc_macro2::{extra::DelimSpan, LineColumn, Span};
use syn::spanned::Spanned;
use syn::visit::{self, Visit};
use syn::{
    Arm, Attribute, BinOp, Block, Expr, ExprBinary, ExprClosure, ExprConst, ExprForLoop, ExprIf,
    ExprMatch, ExprRepeat, ExprWhile, GenericArgument, ImplItem, Item, Local, Macro,
    MacroDelimiter, Pat, Signature, Stmt, TraitItem, Type,
};

use super::attributes::{statement_attrs, Attrs};
use super::jumps::{
    and_chain, bare_jump, bare_jump_expr, bare_jump_first, completes, holds, is_loop, jumps,
    leaves_loop, passes_one_try, stmt_start, structural, MAX_OTHER_ARMS,
};
use super::lexer::TextClass;
use super::macros;
use super::{to_u32, FunctionInfo, JumpCount, LineKind, ModuleFile, SourceAnalysis};

/// `unreachable!(…)` (or `std::`/`core::unreachable!`): the author says no run reaches it, so a
/// reader does not want it counted as a line the tests missed (tarpaulin's convention too).
/// `todo!`, `unimplemented!` and `panic!` stay coverable: tests can and do reach them.
fn is_unreachable(mac: &Macro) -> bool {
    mac.path
        .segments
        .last()
        .is_some_and(|s| s.ident == "unreachable")
}

/// An expression that is only `unreachable!(…)`, or a block holding only that.
fn asserts_unreachable(expr: &Expr) -> bool {
    match expr {
        Expr::Macro(m) => is_unreachable(&m.mac),
        Expr::Block(b) if b.attrs.is_empty() => match b.block.stmts.as_slice() {
            [Stmt::Macro(m)] => is_unreachable(&m.mac),
            [Stmt::Expr(expr, _)] => asserts_unreachable(expr),
            _ => false,
        },
        _ => false,
    }
}

fn delim_span(delimiter: &MacroDelimiter) -> &DelimSpan {
    match delimiter {
        MacroDelimiter::Paren(d) => &d.span,
        MacroDelimiter::Brace(d) => &d.span,
        MacroDelimiter::Bracket(d) => &d.span,
    }
}

fn start_line(span: Span) -> u32 {
    to_u32(span.start().line)
}

fn end_line(span: Span) -> u32 {
    to_u32(span.end().line)
}

pub(super) struct Walker<'s> {
    lines: &'s [&'s str],
    text: &'s [TextClass],
    kinds: Vec<LineKind>,
    functions: Vec<FunctionInfo>,
    test_ranges: Vec<(u32, u32)>,
    compiled_only: bool,
    /// Inside a const/static initialiser: evaluated at compile time except for closure bodies.
    const_context: bool,
    /// Lines of the conditions, guards and loop headers around the current point, innermost last.
    controllers: Vec<u32>,
    /// Start line → the innermost such line around it (see `SourceAnalysis::controller`).
    controller: std::collections::BTreeMap<u32, u32>,
    closure_bodies: std::collections::BTreeSet<u32>,
    short_circuit: std::collections::BTreeSet<u32>,
    macro_statements: std::collections::BTreeSet<u32>,
    /// Start lines of the statements of the blocks being walked, innermost last.
    blocks: Vec<Vec<u32>>,
    next_in_block: std::collections::BTreeMap<u32, u32>,
    /// The first statement of the block walked last (for `} else {`).
    last_block_first: Option<u32>,
    opens: std::collections::BTreeMap<u32, u32>,
    gates: Vec<(u32, u32, super::Cfg)>,
    item_macros: std::collections::BTreeSet<u32>,
    /// Names of the inline modules around the current point, outermost first.
    modules: Vec<String>,
    /// For each of those: whether it is test code (`#[cfg(test)]`, or inside such a module).
    test_module_depth: Vec<bool>,
    module_files: Vec<ModuleFile>,
    jumps: std::collections::BTreeMap<u32, JumpCount>,
    /// (bare jump, statement before which its branch is taken, the operands of that `if`'s
    /// condition when its branch sides can count the jump) until the next statement is known.
    pending_jumps: Vec<(u32, u32, Option<u32>)>,
    /// Start lines of `loop`/`while`/`for` statements.
    loops: std::collections::BTreeSet<u32>,
    /// `while` statement → the statement before it, which always completes into it.
    loop_entries: std::collections::BTreeMap<u32, u32>,
    /// A bare jump in the `if` that ends a `while` body (whose other statements always complete)
    /// → that `while` statement.
    loop_exits: std::collections::BTreeMap<u32, u32>,
    /// `macro_rules!` definitions: name, last line, rules.
    macro_definitions: Vec<(String, u32, macros::MacroRules)>,
    /// Macro invocations: name, line, whether the arguments mention `cfg`, the arguments (`None`
    /// when invoked through a path).
    macro_calls: Vec<(String, u32, bool, Option<proc_macro2::TokenStream>)>,
    /// Functions in macro bodies: the definition (index into `macro_definitions`), first and last
    /// line, place in the macro.
    macro_functions: Vec<(usize, u32, u32, macros::Place)>,
}

/// The `#[path = "…"]` of a module declaration.
fn path_attribute(attrs: &[Attribute]) -> Option<String> {
    attrs.iter().find_map(|attr| match &attr.meta {
        syn::Meta::NameValue(pair) if pair.path.is_ident("path") => match &pair.value {
            Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(path),
                ..
            }) => Some(path.value()),
            _ => None,
        },
        _ => None,
    })
}

impl<'s> Walker<'s> {
    pub(super) fn new(lines: &'s [&'s str], text: &'s [TextClass]) -> Self {
        Walker {
            lines,
            text,
            kinds: vec![LineKind::None; lines.len()],
            functions: Vec::new(),
            test_ranges: Vec::new(),
            compiled_only: false,
            const_context: false,
            controllers: Vec::new(),
            controller: std::collections::BTreeMap::new(),
            closure_bodies: std::collections::BTreeSet::new(),
            short_circuit: std::collections::BTreeSet::new(),
            macro_statements: std::collections::BTreeSet::new(),
            blocks: Vec::new(),
            next_in_block: std::collections::BTreeMap::new(),
            last_block_first: None,
            opens: std::collections::BTreeMap::new(),
            gates: Vec::new(),
            item_macros: std::collections::BTreeSet::new(),
            modules: Vec::new(),
            test_module_depth: Vec::new(),
            module_files: Vec::new(),
            jumps: std::collections::BTreeMap::new(),
            pending_jumps: Vec::new(),
            loops: std::collections::BTreeSet::new(),
            loop_entries: std::collections::BTreeMap::new(),
            loop_exits: std::collections::BTreeMap::new(),
            macro_definitions: Vec::new(),
            macro_calls: Vec::new(),
            macro_functions: Vec::new(),
        }
    }

    pub(super) fn finish(mut self) -> SourceAnalysis {
        // The count of a jump that is the whole then-branch of an `if` (or the `else` of a
        // `let … else`): the statement's runs less those of the next statement, which runs
        // exactly when the jump does not (a loop header runs more often: no such count then).
        // Without one, the runs of the `while` the jump leaves, or the `if`'s branch, say how
        // often its block was entered.
        for (jump, statement, operands) in std::mem::take(&mut self.pending_jumps) {
            let exit = self
                .loop_exits
                .get(&jump)
                .and_then(|&header| Some((header, *self.loop_entries.get(&header)?)));
            match (self.next_in_block.get(&statement), exit, operands) {
                (Some(&next), _, _) if !self.loops.contains(&next) => {
                    self.jumps
                        .insert(jump, JumpCount::Difference(statement, next));
                }
                (None, Some((header, before)), _) => {
                    self.jumps.insert(
                        jump,
                        JumpCount::LoopExit {
                            before,
                            condition: statement,
                            header,
                            operands,
                        },
                    );
                }
                (_, _, Some(operands)) => {
                    self.jumps.insert(
                        jump,
                        JumpCount::Taken {
                            condition: statement,
                            operands,
                        },
                    );
                }
                _ => {}
            }
        }
        self.gate_macro_functions();
        self.functions.sort_by_key(|f| f.line);
        self.test_ranges.sort_unstable();
        let mut test_ranges: Vec<(u32, u32)> = Vec::with_capacity(self.test_ranges.len());
        for (start, end) in self.test_ranges {
            match test_ranges.last_mut() {
                Some(last) if start <= last.1.saturating_add(1) => last.1 = last.1.max(end),
                _ => test_ranges.push((start, end)),
            }
        }
        SourceAnalysis {
            kinds: self.kinds,
            functions: self.functions,
            test_ranges,
            controller: self.controller,
            closure_bodies: self.closure_bodies,
            short_circuit: self.short_circuit,
            macro_statements: self.macro_statements,
            punct: Default::default(),
            next_in_block: self.next_in_block,
            gates: self.gates,
            item_macros: self.item_macros,
            module_files: self.module_files,
            jumps: self.jumps,
            opens: self.opens,
            branches: Default::default(),
            matches: Default::default(),
            macro_names: self
                .macro_definitions
                .iter()
                .map(|(name, _, _)| name.clone())
                .collect(),
            macro_invocations: self
                .macro_calls
                .into_iter()
                .map(|(name, line, _, _)| (name, line))
                .collect(),
            nested_invocations: self
                .macro_definitions
                .iter()
                .flat_map(|(outer, _, rules)| {
                    rules.calls().map(|inner| (inner.to_owned(), outer.clone()))
                })
                .collect(),
        }
    }

    fn in_test_module(&self) -> bool {
        self.test_module_depth.last().copied().unwrap_or(false)
    }

    fn set(&mut self, line: u32, kind: LineKind) {
        if let Some(slot) = line
            .checked_sub(1)
            .and_then(|i| self.kinds.get_mut(i as usize))
        {
            *slot = kind;
        }
    }

    /// Marks `start` as a Start line and the rest of `start..=end` as its continuation.
    fn claim(&mut self, start: u32, end: u32) {
        if let Some(&controller) = self.controllers.last().filter(|&&c| c != start) {
            self.controller.insert(start, controller);
        }
        self.set(
            start,
            LineKind::Start {
                compiled_only: self.compiled_only,
            },
        );
        for line in start + 1..=end {
            self.set(line, LineKind::Continuation { owner: start });
        }
    }

    /// Claims a statement or match arm whose code starts at `start`: the lines of its own
    /// attributes hold no code even inside an enclosing statement.
    fn claim_after_attrs(&mut self, attrs: &[Attribute], start: u32, end: u32) {
        if let Some(first) = attrs.first() {
            for line in start_line(first.pound_token.span)..start {
                self.set(line, LineKind::None);
            }
        }
        self.claim(start, end);
    }

    /// Walks `body` as code that runs only after the condition, guard or loop header on `line`.
    fn controlled(&mut self, line: u32, body: impl FnOnce(&mut Self)) {
        self.controllers.push(line);
        body(self);
        self.controllers.pop();
    }

    /// Applies the attributes of `node` around `body`.
    fn scoped(&mut self, attrs: &Attrs, node: &impl Spanned, body: impl FnOnce(&mut Self)) {
        if attrs.coverage_off {
            let (first, last) = full_range(node);
            for line in first..=last {
                self.set(line, LineKind::None);
            }
            return;
        }
        let (first, last) = full_range(node);
        if attrs.cfg_test || attrs.test {
            self.test_ranges.push((first, last));
        }
        self.gates
            .extend(attrs.gates.iter().map(|gate| (first, last, gate.clone())));
        let outer = self.compiled_only;
        self.compiled_only |= !attrs.gates.is_empty();
        body(self);
        self.compiled_only = outer;
    }

    pub(super) fn item(&mut self, item: &Item) {
        match item {
            Item::Fn(f) => self.function(&f.attrs, &f.sig, &f.block, None, item),
            Item::Impl(imp) => {
                let owner = self.type_name(&imp.self_ty);
                self.scoped(&Attrs::of(&imp.attrs), item, |w| {
                    for member in &imp.items {
                        w.impl_item(member, &owner);
                    }
                });
            }
            Item::Trait(tr) => {
                let owner = tr.ident.to_string();
                self.scoped(&Attrs::of(&tr.attrs), item, |w| {
                    for member in &tr.items {
                        w.trait_item(member, &owner);
                    }
                });
            }
            Item::Mod(m) => {
                let attrs = Attrs::of(&m.attrs);
                let test = attrs.cfg_test || self.in_test_module();
                self.scoped(&attrs, item, |w| {
                    let Some((_, items)) = &m.content else {
                        w.module_files.push(ModuleFile {
                            within: w.modules.clone(),
                            name: m.ident.to_string(),
                            path: path_attribute(&m.attrs),
                            test,
                        });
                        return;
                    };
                    w.modules.push(m.ident.to_string());
                    w.test_module_depth.push(test);
                    for inner in items {
                        w.item(inner);
                    }
                    w.test_module_depth.pop();
                    w.modules.pop();
                });
            }
            Item::Macro(m) => {
                self.scoped(&Attrs::of(&m.attrs), item, |w| {
                    if m.mac.path.is_ident("macro_rules") {
                        w.macro_rules(&m.mac, m.ident.as_ref());
                    } else {
                        w.item_macro_call(&m.mac);
                    }
                });
            }
            Item::Const(c) => {
                self.scoped(&Attrs::of(&c.attrs), item, |w| {
                    w.const_initialiser(&c.expr);
                });
            }
            Item::Static(s) => {
                self.scoped(&Attrs::of(&s.attrs), item, |w| {
                    w.const_initialiser(&s.expr);
                });
            }
            _ => {}
        }
    }

    fn impl_item(&mut self, member: &ImplItem, owner: &str) {
        match member {
            ImplItem::Fn(f) => self.function(&f.attrs, &f.sig, &f.block, Some(owner), member),
            ImplItem::Const(c) => {
                self.scoped(&Attrs::of(&c.attrs), member, |w| {
                    w.const_initialiser(&c.expr);
                });
            }
            ImplItem::Macro(m) => {
                self.scoped(&Attrs::of(&m.attrs), member, |w| {
                    w.item_macro_call(&m.mac);
                });
            }
            _ => {}
        }
    }

    fn trait_item(&mut self, member: &TraitItem, owner: &str) {
        match member {
            TraitItem::Fn(f) => {
                if let Some(block) = &f.default {
                    self.function(&f.attrs, &f.sig, block, Some(owner), member);
                }
            }
            TraitItem::Const(c) => {
                if let Some((_, expr)) = &c.default {
                    self.scoped(&Attrs::of(&c.attrs), member, |w| {
                        w.const_initialiser(expr);
                    });
                }
            }
            TraitItem::Macro(m) => {
                self.scoped(&Attrs::of(&m.attrs), member, |w| {
                    w.item_macro_call(&m.mac);
                });
            }
            _ => {}
        }
    }

    fn function(
        &mut self,
        attrs: &[Attribute],
        sig: &Signature,
        block: &Block,
        owner: Option<&str>,
        node: &impl Spanned,
    ) {
        let flags = Attrs::of(attrs);
        self.scoped(&flags, node, |w| {
            let line = start_line(sig.fn_token.span);
            let open = start_line(block.brace_token.span.open());
            let end_line = start_line(block.brace_token.span.close());
            w.claim(line, open);
            if end_line > open {
                w.set(end_line, LineKind::Continuation { owner: line });
            }
            let name = match owner {
                Some(owner) => format!("{owner}::{}", sig.ident),
                None => sig.ident.to_string(),
            };
            w.functions.push(FunctionInfo {
                name,
                line,
                end_line,
                is_test: flags.test,
                compiled_only: w.compiled_only,
            });
            w.visit_block(block);
            // A `fn` line without code of its own in any executable (optimised code folds the
            // prologue into callers) shows the count of the statement the body begins with.
            if let Some(first) = w.last_block_first.filter(|&first| first > line) {
                w.opens.insert(line, first);
            }
        });
    }

    /// Only the closures of a const or static initialiser run at run time.
    fn const_initialiser(&mut self, expr: &Expr) {
        let outer = std::mem::replace(&mut self.const_context, true);
        self.visit_expr(expr);
        self.const_context = outer;
    }

    /// No statement structure is known inside a macro_rules! body: every code line may or may not
    /// expand to machine code, so the binary decides. Except in the functions the body defines
    /// (see `macros`): they are walked as functions, compiled when an invocation expands them.
    fn macro_rules(&mut self, mac: &Macro, name: Option<&syn::Ident>) {
        let span = delim_span(&mac.delimiter);
        let open = start_line(span.open());
        let close = start_line(span.close());
        for line in open + 1..close {
            if self.text.get(line as usize - 1) == Some(&TextClass::Code) {
                self.set(
                    line,
                    LineKind::Start {
                        compiled_only: true,
                    },
                );
            }
        }
        let Some(name) = name else {
            return;
        };
        let definition = self.macro_definitions.len();
        let (rules, functions) = macros::definition(mac, name);
        self.macro_definitions
            .push((name.to_string(), close, rules));
        for found in functions {
            let function = &found.function;
            let (first, last) = full_range(function);
            for line in first..=last {
                self.set(line, LineKind::None);
            }
            let outer = std::mem::replace(&mut self.compiled_only, true);
            let index = self.functions.len();
            self.function(
                &function.attrs,
                &function.sig,
                &function.block,
                None,
                function,
            );
            self.compiled_only = outer;
            if found.named_by_invocation {
                if let Some(info) = self.functions.get_mut(index) {
                    info.name.insert(0, '$');
                }
            }
            self.macro_functions
                .push((definition, first, last, found.place));
        }
    }

    /// A function of a macro body is compiled when some invocation of the macro after its
    /// definition expands it (see `MacroRules::expands`) and is compiled (its gates hold, and its
    /// arguments pass on no `cfg`), or, when every invocation expands it, when another file of
    /// the package invokes the macro or another macro of this file that always invokes it is
    /// invoked (here or elsewhere): a gate of its own says so. A name defined twice in the file
    /// leaves open which definition an invocation expands.
    fn gate_macro_functions(&mut self) {
        let mut gates = Vec::new();
        let once = |name: &str| {
            self.macro_definitions
                .iter()
                .filter(|(other, _, _)| other == name)
                .count()
                == 1
        };
        // The gates of an invocation on `line`: its cfgs, and whether its arguments pass one on.
        let invocation_gates = |line: u32, cfg_argument: bool| {
            let mut all: Vec<super::Cfg> = self
                .gates
                .iter()
                .filter(|(first, last, _)| (*first..=*last).contains(&line))
                .map(|(_, _, gate)| gate.clone())
                .collect();
            if cfg_argument {
                all.push(super::Cfg::Unknown);
            }
            all
        };
        // A call in a function of a macro body is made only where that macro is expanded, which
        // its gate (made here, not yet among `self.gates`) says: such calls are not counted.
        let in_macro_function = |line: u32| {
            self.macro_functions
                .iter()
                .any(|(_, first, last, _)| (*first..=*last).contains(&line))
        };
        // Whether some invocation expands the macro `name` (defined once, ending on `end`) at
        // all, from its invocations after it here or elsewhere.
        let invoked = |name: &str, end: u32| {
            let mut any: Vec<super::Cfg> = self
                .macro_calls
                .iter()
                .filter(|(called, line, _, _)| {
                    called == name && *line > end && !in_macro_function(*line)
                })
                .map(|(_, line, cfg_argument, _)| {
                    super::Cfg::All(invocation_gates(*line, *cfg_argument))
                })
                .collect();
            any.push(super::Cfg::InvokedElsewhere(name.to_owned()));
            super::Cfg::Any(any)
        };
        for (definition, (name, end, rules)) in self.macro_definitions.iter().enumerate() {
            let functions: Vec<&(usize, u32, u32, macros::Place)> = self
                .macro_functions
                .iter()
                .filter(|function| function.0 == definition)
                .collect();
            let matching = functions
                .iter()
                .any(|function| !rules.unconditional(&function.3));
            let defined_once = once(name);
            let invocations: Vec<(Vec<super::Cfg>, Option<macros::Taken>)> = self
                .macro_calls
                .iter()
                .filter(|(called, line, _, _)| {
                    defined_once && called == name && line > end && !in_macro_function(*line)
                })
                .map(|(_, line, cfg_argument, arguments)| {
                    let all = invocation_gates(*line, *cfg_argument);
                    let taken = if matching {
                        rules.take(arguments.as_ref())
                    } else {
                        None
                    };
                    (all, taken)
                })
                .collect();
            for (_, first, last, place) in functions {
                let mut expanded_by: Vec<super::Cfg> = invocations
                    .iter()
                    .filter_map(|(all, taken)| {
                        let mut all = all.clone();
                        match rules.expands(place, taken.as_ref()) {
                            Some(true) => {}
                            Some(false) => return None,
                            None => all.push(super::Cfg::Unknown),
                        }
                        Some(super::Cfg::All(all))
                    })
                    .collect();
                // Invocations in the package's other files are known only by name (see
                // `macros::invoked_elsewhere`): enough for a function every invocation expands.
                if defined_once && rules.unconditional(place) {
                    expanded_by.push(super::Cfg::InvokedElsewhere(name.clone()));
                    for (outer, outer_end, outer_rules) in &self.macro_definitions {
                        if outer != name
                            && once(outer)
                            && outer_rules.calls().any(|called| called == name)
                        {
                            expanded_by.push(invoked(outer, *outer_end));
                        }
                    }
                }
                gates.push((*first, *last, super::Cfg::Any(expanded_by)));
            }
        }
        self.gates.extend(gates);
    }

    fn macro_call(&mut self, mac: &Macro, line: u32) {
        if let Some(name) = mac.path.segments.last() {
            let arguments = (mac.path.segments.len() == 1).then(|| mac.tokens.clone());
            self.macro_calls.push((
                name.ident.to_string(),
                line,
                macros::mentions_cfg(&mac.tokens),
                arguments,
            ));
        }
    }

    /// An item-position macro may expand to functions or to nothing at run time.
    fn item_macro_call(&mut self, mac: &Macro) {
        let start = start_line(mac.path.span());
        let end = end_line(delim_span(&mac.delimiter).close());
        self.macro_call(mac, start);
        let outer = std::mem::replace(&mut self.compiled_only, true);
        self.item_macros.insert(start);
        self.claim(start, end);
        self.compiled_only = outer;
    }

    /// An item inside a block: its lines belong to the item, not to the enclosing statement.
    fn nested_item(&mut self, item: &Item) {
        let (first, last) = full_range(item);
        for line in first..=last {
            if let Some(kind @ LineKind::Continuation { .. }) =
                self.kinds.get_mut(line as usize - 1)
            {
                *kind = LineKind::None;
            }
        }
        self.item(item);
    }

    fn statement(&mut self, stmt: &Stmt) {
        let unreachable = match stmt {
            Stmt::Macro(m) => is_unreachable(&m.mac),
            Stmt::Expr(expr, _) => asserts_unreachable(expr),
            _ => false,
        };
        if unreachable {
            let (first, last) = full_range(stmt);
            for line in first..=last {
                self.set(line, LineKind::None);
            }
            return;
        }
        // Outer attributes come first, so the code starts at the first token after them.
        let (attrs, start, end) = match stmt {
            Stmt::Local(local) => (
                &local.attrs[..],
                start_line(local.let_token.span),
                end_line(local.semi_token.span),
            ),
            Stmt::Macro(m) => {
                let end = m.semi_token.map_or_else(
                    || end_line(delim_span(&m.mac.delimiter).close()),
                    |semi| end_line(semi.span),
                );
                (&m.attrs[..], start_line(m.mac.path.span()), end)
            }
            Stmt::Expr(expr, semi) => {
                let attrs = statement_attrs(expr);
                let span = expr.span();
                let start = attrs.last().map_or_else(
                    || start_line(span),
                    |last| self.code_after(last.bracket_token.span.close().end()),
                );
                let end = semi.map_or_else(|| end_line(span), |semi| end_line(semi.span));
                (attrs, start, end)
            }
            Stmt::Item(item) => {
                self.nested_item(item);
                return;
            }
        };
        // `loop {`, `unsafe {` and `{` open code without being any: the opener line's only
        // machine code is a loop's back-edge jump (which runs once per pass after the first, so a
        // loop left in its first pass would read 0 there while its body ran). The statements
        // inside count; one on the opener's line claims it back.
        let opener_only = matches!(
            stmt,
            Stmt::Expr(Expr::Loop(_) | Expr::Unsafe(_) | Expr::Block(_), _)
        );
        if let Some(block) = self.blocks.last_mut() {
            block.push(start);
        }
        if matches!(stmt, Stmt::Macro(_) | Stmt::Expr(Expr::Macro(_), _)) {
            self.macro_statements.insert(start);
        }
        self.scoped(&Attrs::of(attrs), stmt, |w| {
            w.claim_after_attrs(attrs, start, end);
            if opener_only {
                w.set(start, LineKind::None);
            }
            visit::visit_stmt(w, stmt);
        });
        self.jump_counts(stmt, start);
    }

    /// A bare `break;`/`continue;`/`return;` compiles to no code of its own in a debug build:
    /// the branch of the condition before it goes straight to the loop's or function's end. Its
    /// count follows from the counts around it (see `JumpCount`).
    fn jump_counts(&mut self, stmt: &Stmt, start: u32) {
        if is_loop(stmt) {
            self.loops.insert(start);
        }
        match stmt {
            Stmt::Expr(Expr::If(e), _) if e.attrs.is_empty() => {
                if e.else_branch.is_none() {
                    if let Some(jump) = bare_jump_first(&e.then_branch) {
                        self.pending_jumps.push((jump, start, and_chain(&e.cond)));
                    }
                    return;
                }
                // Along an `if … else if … else` chain, each `if` decides between its branch and
                // the rest of the chain: a jump opening one runs when the other's first
                // statement (or condition) does not.
                let mut link = e;
                let mut line = start;
                while let Some((_, other)) = &link.else_branch {
                    match &**other {
                        Expr::If(next) => {
                            // The next condition is tested exactly when this one's jump is not
                            // taken.
                            let next_line = start_line(next.if_token.span);
                            if let Some(jump) = bare_jump_first(&link.then_branch) {
                                self.jumps
                                    .insert(jump, JumpCount::Difference(line, next_line));
                            }
                            link = next;
                            line = next_line;
                        }
                        Expr::Block(other) => {
                            let (then, otherwise) = (&link.then_branch, &other.block);
                            for (jump, rest) in [(then, otherwise), (otherwise, then)] {
                                if let (Some(jump), Some(first)) =
                                    (bare_jump_first(jump), rest.stmts.first())
                                {
                                    self.jumps.insert(
                                        jump,
                                        JumpCount::Difference(line, stmt_start(first)),
                                    );
                                }
                            }
                            break;
                        }
                        _ => break,
                    }
                }
            }
            Stmt::Local(local) => {
                if let Some((_, diverge)) = local.init.as_ref().and_then(|i| i.diverge.as_ref()) {
                    if let Expr::Block(other) = &**diverge {
                        if let Some(jump) = bare_jump_first(&other.block) {
                            self.pending_jumps.push((jump, start, None));
                        }
                    }
                }
            }
            _ => {}
        }
    }

    /// Line of the first code after `position` (the end of an attribute).
    fn code_after(&self, position: LineColumn) -> u32 {
        let line = to_u32(position.line);
        let text = self.lines.get(position.line - 1).copied().unwrap_or("");
        let rest = text
            .char_indices()
            .nth(position.column)
            .map_or("", |(at, _)| text[at..].trim_start());
        if !rest.is_empty() && !rest.starts_with("//") && !rest.starts_with("/*") {
            return line;
        }
        (line + 1..=to_u32(self.text.len()))
            .find(|&l| self.text[l as usize - 1] != TextClass::Empty)
            .unwrap_or(line)
    }

    /// Name used for `Type::method`: the last path segment, or the source text for other types.
    fn type_name(&self, ty: &Type) -> String {
        match ty {
            Type::Path(path) => path
                .path
                .segments
                .last()
                .map(|s| s.ident.to_string())
                .unwrap_or_default(),
            Type::Reference(r) => self.type_name(&r.elem),
            Type::Paren(p) => self.type_name(&p.elem),
            Type::Group(g) => self.type_name(&g.elem),
            Type::Ptr(p) => self.type_name(&p.elem),
            other => self.snippet(other.span()),
        }
    }

    fn snippet(&self, span: Span) -> String {
        let (start, end) = (span.start(), span.end());
        (start.line..=end.line)
            .filter_map(|line| self.lines.get(line - 1))
            .enumerate()
            .map(|(i, text)| {
                let chars = text.chars();
                let taken: String = if start.line == end.line {
                    chars
                        .skip(start.column)
                        .take(end.column - start.column)
                        .collect()
                } else if i == 0 {
                    chars.skip(start.column).collect()
                } else if start.line + i == end.line {
                    chars.take(end.column).collect()
                } else {
                    chars.collect()
                };
                taken.trim().to_owned()
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// First line (attributes included) and last line of a syntax node.
fn full_range(node: &impl Spanned) -> (u32, u32) {
    let span = node.span();
    (start_line(span), end_line(span))
}

impl<'ast> Visit<'ast> for Walker<'_> {
    fn visit_block(&mut self, block: &'ast Block) {
        self.blocks.push(Vec::new());
        for stmt in &block.stmts {
            if !self.const_context {
                self.statement(stmt);
            } else if !matches!(stmt, Stmt::Item(_)) {
                visit::visit_stmt(self, stmt);
            }
        }
        let starts = self.blocks.pop().unwrap_or_default();
        for pair in starts.windows(2) {
            self.next_in_block.insert(pair[0], pair[1]);
        }
        if !self.const_context {
            for pair in block.stmts.windows(2) {
                if matches!(pair[1], Stmt::Expr(Expr::While(_), _)) && completes(&pair[0]) {
                    self.loop_entries
                        .insert(stmt_start(&pair[1]), stmt_start(&pair[0]));
                }
            }
            // A bare jump after a statement that always completes runs exactly as often; after
            // one that completes unless its `?` returns, as often as the `?` goes on.
            for pair in block.stmts.windows(2) {
                let Some(jump) = bare_jump(&pair[1]) else {
                    continue;
                };
                if completes(&pair[0]) {
                    self.jumps
                        .insert(jump, JumpCount::After(stmt_start(&pair[0])));
                } else if passes_one_try(&pair[0]) {
                    self.jumps
                        .insert(jump, JumpCount::Passed(stmt_start(&pair[0])));
                }
            }
        }
        self.last_block_first = starts.first().copied();
    }

    fn visit_expr_if(&mut self, expr: &'ast ExprIf) {
        // `else if cond`: the condition runs only when every condition before it was false, so it
        // is a line of its own, not a later line of the `if` statement.
        if let Some((_, otherwise)) = expr.else_branch.as_ref().filter(|_| !self.const_context) {
            if let Expr::If(next) = &**otherwise {
                self.claim(start_line(next.if_token.span), end_line(next.cond.span()));
            }
        }
        self.visit_expr(&expr.cond);
        self.controlled(start_line(expr.cond.span()), |w| {
            w.visit_block(&expr.then_branch);
            if let Some((else_token, otherwise)) = &expr.else_branch {
                w.visit_expr(otherwise);
                // `} else {` holds no code: it shows the count of the block it opens.
                if let (Expr::Block(_), Some(first)) = (&**otherwise, w.last_block_first) {
                    let line = start_line(else_token.span);
                    if first > line {
                        w.opens.insert(line, first);
                    }
                }
            }
        });
    }

    fn visit_expr_match(&mut self, expr: &'ast ExprMatch) {
        visit::visit_expr_match(self, expr);
        // `match x { Some(v) => …, None => break }`: the jump arm runs whenever the match does
        // and no other arm does (a guard could send a value on to a later arm: none then), as
        // their lines count when their patterns are tested at the `match` (see `structural`).
        let arms = &expr.arms;
        if self.const_context
            || arms.len() < 2
            || arms.len() > MAX_OTHER_ARMS + 1
            || arms.iter().any(|arm| arm.guard.is_some())
        {
            return;
        }
        let all = start_line(expr.match_token.span);
        for (index, jump) in arms.iter().enumerate() {
            let line = match &*jump.body {
                Expr::Block(block) => bare_jump_first(&block.block),
                body => bare_jump_expr(body),
            };
            let others: Vec<&Arm> = arms
                .iter()
                .enumerate()
                .filter(|&(other, _)| other != index)
                .map(|(_, arm)| arm)
                .collect();
            let counted =
                |other: &&Arm| !asserts_unreachable(&other.body) && structural(&other.pat);
            let Some(line) = line.filter(|_| others.iter().all(counted)) else {
                continue;
            };
            let count = match others.as_slice() {
                [other] => JumpCount::Difference(all, start_line(other.pat.span())),
                _ => {
                    let mut rest = [None; MAX_OTHER_ARMS];
                    for (slot, other) in rest.iter_mut().zip(&others) {
                        *slot = Some(start_line(other.pat.span()));
                    }
                    JumpCount::Remainder { all, rest }
                }
            };
            self.jumps.insert(line, count);
        }
    }

    fn visit_expr_while(&mut self, expr: &'ast ExprWhile) {
        self.visit_expr(&expr.cond);
        self.controlled(start_line(expr.cond.span()), |w| w.visit_block(&expr.body));
        // Every pass reaches the `if` that ends the body; each one that does not leave there
        // goes back to the condition.
        let Some((Stmt::Expr(Expr::If(last), _), rest)) = expr.body.stmts.split_last() else {
            return;
        };
        let label = expr.label.as_ref().map(|label| &label.name);
        let leaves = last
            .then_branch
            .stmts
            .first()
            .and_then(|first| leaves_loop(first, label));
        if let Some(jump) = leaves.filter(|_| {
            last.else_branch.is_none()
                && last.attrs.is_empty()
                && !holds(&last.cond, jumps)
                && rest.iter().all(completes)
        }) {
            self.loop_exits.insert(jump, start_line(expr.span()));
        }
    }

    fn visit_expr_for_loop(&mut self, expr: &'ast ExprForLoop) {
        self.visit_expr(&expr.expr);
        self.controlled(start_line(expr.for_token.span), |w| {
            w.visit_block(&expr.body)
        });
    }

    fn visit_local(&mut self, local: &'ast Local) {
        let Some(init) = &local.init else {
            return;
        };
        self.visit_expr(&init.expr);
        if let Some((_, diverge)) = &init.diverge {
            // `let … else`: the else block runs when the pattern did not match.
            self.controlled(start_line(local.let_token.span), |w| w.visit_expr(diverge));
        }
    }

    fn visit_arm(&mut self, arm: &'ast Arm) {
        if self.const_context {
            visit::visit_arm(self, arm);
            return;
        }
        let (start, end) = (start_line(arm.pat.span()), end_line(arm.span()));
        if asserts_unreachable(&arm.body) {
            for line in start..=end {
                self.set(line, LineKind::None);
            }
            return;
        }
        self.scoped(&Attrs::of(&arm.attrs), arm, |w| {
            w.claim_after_attrs(&arm.attrs, start, end);
            // Only a guard is code that decides on the arm's own line; an arm's pattern is
            // tested at the `match`, and the rows of its line may come after the body.
            match &arm.guard {
                Some((_, guard)) => {
                    w.visit_expr(guard);
                    let condition = start_line(guard.span());
                    w.controlled(condition, |w| w.visit_expr(&arm.body));
                    // A bare jump that is the whole body runs as often as the guard held (its
                    // branch's true side): the guard decides alone, so no neighbour can say.
                    let jump = match &*arm.body {
                        Expr::Block(block) => bare_jump_first(&block.block),
                        body => bare_jump_expr(body),
                    };
                    if let (Some(jump), Some(operands)) = (jump, and_chain(guard)) {
                        if jump > condition {
                            w.jumps.insert(
                                jump,
                                JumpCount::Taken {
                                    condition,
                                    operands,
                                },
                            );
                        }
                    }
                }
                None => w.visit_expr(&arm.body),
            }
        });
    }

    fn visit_expr_binary(&mut self, expr: &'ast ExprBinary) {
        if matches!(expr.op, BinOp::And(_) | BinOp::Or(_)) {
            let line = start_line(expr.right.span());
            if matches!(
                self.kinds.get(line as usize - 1),
                Some(LineKind::Continuation { .. })
            ) {
                self.short_circuit.insert(line);
            }
        }
        visit::visit_expr_binary(self, expr);
    }

    fn visit_expr_closure(&mut self, closure: &'ast ExprClosure) {
        if !self.const_context {
            // An expression body on a later line of its statement (`.map_err(|e| wrap(e))` in a
            // chain) is a line of its own for the closure's code: the closure is a function.
            let line = start_line(closure.body.span());
            let later_line = matches!(
                self.kinds.get(line as usize - 1),
                Some(LineKind::Continuation { .. })
            );
            if later_line && !matches!(&*closure.body, Expr::Block(_)) {
                self.closure_bodies.insert(line);
            }
            visit::visit_expr_closure(self, closure);
            return;
        }
        self.const_context = false;
        // Outside a const initialiser the enclosing statement owns an expression body; here
        // nothing else would.
        if !matches!(&*closure.body, Expr::Block(_)) {
            let span = closure.body.span();
            self.claim(start_line(span), end_line(span));
        }
        self.visit_expr(&closure.body);
        self.const_context = true;
    }

    // The rest hold no run-time code: const blocks, array lengths, types, patterns, generic
    // arguments and attributes are all evaluated by the compiler.
    fn visit_expr_const(&mut self, _: &'ast ExprConst) {}

    fn visit_expr_repeat(&mut self, repeat: &'ast ExprRepeat) {
        self.visit_expr(&repeat.expr);
    }

    fn visit_macro(&mut self, mac: &'ast Macro) {
        self.macro_call(mac, start_line(mac.path.span()));
    }

    fn visit_type(&mut self, _: &'ast Type) {}

    fn visit_pat(&mut self, _: &'ast Pat) {}

    fn visit_generic_argument(&mut self, _: &'ast GenericArgument) {}

    fn visit_attribute(&mut self, _: &'ast Attribute) {}
}

#[cfg(test)]
mod tests {
    use crate::analysis::test_support::*;
    use crate::analysis::{analyze, JumpCount};

    #[test]
    fn multi_line_signature() {
        let analysis = check(
            r#"
            /// Moves money.
            #[inline]
            pub fn transfer(
                from: &mut Account,
                to: &mut Account,
            ) -> Result<(), Error> {
                from.withdraw(10)?;
                to.deposit(10);
                Ok(())
            }
            "#,
            r#"
            -   /// Moves money.
            -   #[inline]
            S   pub fn transfer(
            C3      from: &mut Account,
            C3      to: &mut Account,
            C3  ) -> Result<(), Error> {
            S       from.withdraw(10)?;
            S       to.deposit(10);
            S       Ok(())
            C3  }
            "#,
        );
        assert_eq!(analysis.functions(), [function("transfer", 3, 10)]);
        assert_eq!(analysis.line_count(), 10);
    }

    #[test]
    fn let_with_method_chain() {
        check(
            r#"
            fn total(items: &[Item]) -> u64 {
                let sum = items
                    .iter()
                    .map(|item| item.price)
                    .sum::<u64>();
                sum
            }
            "#,
            r#"
            S   fn total(items: &[Item]) -> u64 {
            S       let sum = items
            C2          .iter()
            C2          .map(|item| item.price)
            C2          .sum::<u64>();
            S       sum
            C1  }
            "#,
        );
    }

    #[test]
    fn if_else_chain() {
        check(
            r#"
            fn sign(x: i32) -> i32 {
                if x > 0 {
                    1
                } else if x < 0 {
                    -1
                } else {
                    0
                }
            }
            "#,
            r#"
            S   fn sign(x: i32) -> i32 {
            S       if x > 0 {
            S           1
            S       } else if x < 0 {
            S           -1
            C2      } else {
            S           0
            C2      }
            C1  }
            "#,
        );
    }

    #[test]
    fn unreachable_is_not_coverable_and_panic_is() {
        check(
            r#"
            fn pick(n: u8) -> u8 {
                match n {
                    0 => 1,
                    1 => unreachable!("one is filtered out"),
                    _ => {
                        unreachable!()
                    }
                }
            }
            fn later(flag: bool) -> u8 {
                if flag {
                    std::unreachable!(
                        "never"
                    );
                }
                panic!("flag was false")
            }
            "#,
            r#"
            S   fn pick(n: u8) -> u8 {
            S       match n {
            S           0 => 1,
            -           1 => unreachable!("one is filtered out"),
            -           _ => {
            -               unreachable!()
            -           }
            C2      }
            C1  }
            S   fn later(flag: bool) -> u8 {
            S       if flag {
            -           std::unreachable!(
            -               "never"
            -           );
            C11     }
            S       panic!("flag was false")
            C10 }
            "#,
        );
    }

    #[test]
    fn else_if_conditions_are_lines_of_their_own() {
        check(
            r#"
            fn grade(score: u32) -> &'static str {
                let letter = if score >= 90 {
                    "A"
                } else if score >= 80
                    && score < 90
                {
                    "B"
                } else if let Some(x) = Some(score) { "C" } else {
                    "F"
                };
                letter
            }
            "#,
            r#"
            S   fn grade(score: u32) -> &'static str {
            S       let letter = if score >= 90 {
            S           "A"
            S       } else if score >= 80
            C4          && score < 90
            C2      {
            S           "B"
            S       } else if let Some(x) = Some(score) { "C" } else {
            S           "F"
            C2      };
            S       letter
            C1  }
            "#,
        );
    }

    #[test]
    fn block_openers_hold_no_line_unless_code_shares_it() {
        check(
            r#"
            fn f(p: *const u8) -> u8 {
                unsafe {
                    *p
                }
            }
            fn g() -> u32 {
                {
                    let x = 1;
                    x
                }
            }
            fn h(p: *const u8) -> u8 {
                unsafe { *p }
            }
            "#,
            r#"
            S   fn f(p: *const u8) -> u8 {
            -       unsafe {
            S           *p
            -       }
            C1  }
            S   fn g() -> u32 {
            -       {
            S           let x = 1;
            S           x
            -       }
            C6  }
            S   fn h(p: *const u8) -> u8 {
            S       unsafe { *p }
            C12 }
            "#,
        );
    }

    #[test]
    fn statements_know_the_condition_that_decides_whether_they_run() {
        let analysis = check(
            r#"
            fn f(n: i64, v: Option<u8>) -> i64 {
                match n {
                    x if x < 0 => {
                        let s = 1;
                        s
                    }
                    _ => 0,
                };
                if n > 3 {
                    let a = 1;
                } else {
                    let b = 2;
                }
                while n > 9 {
                    let c = 3;
                }
                for i in 0..n {
                    let d = i;
                }
                let Some(w) = v else {
                    return 0;
                };
                n
            }
            "#,
            r#"
            S   fn f(n: i64, v: Option<u8>) -> i64 {
            S       match n {
            S           x if x < 0 => {
            S               let s = 1;
            S               s
            C3          }
            S           _ => 0,
            C2      };
            S       if n > 3 {
            S           let a = 1;
            C9      } else {
            S           let b = 2;
            C9      }
            S       while n > 9 {
            S           let c = 3;
            C14     }
            S       for i in 0..n {
            S           let d = i;
            C17     }
            S       let Some(w) = v else {
            S           return 0;
            C20     };
            S       n
            C1  }
            "#,
        );
        let controllers: Vec<(u32, Option<u32>)> = (1..=23)
            .map(|l| (l, analysis.controller(l)))
            .filter(|c| c.1.is_some())
            .collect();
        assert_eq!(
            controllers,
            [
                (4, Some(3)),
                (5, Some(3)),
                (10, Some(9)),
                (12, Some(9)),
                (15, Some(14)),
                (18, Some(17)),
                (21, Some(20))
            ]
        );
        assert_eq!(analysis.next_in_block(4), Some(5));
        assert_eq!(analysis.next_in_block(5), None);
        assert_eq!(analysis.next_in_block(2), Some(9));
        assert_eq!(
            analysis.opened_statement(11),
            Some(12),
            "the else line opens line 12"
        );
        assert_eq!(analysis.opened_statement(9), None);
        assert_eq!(
            analysis.opened_statement(1),
            Some(2),
            "the fn line opens the body's first statement (for inlined copies)"
        );
    }

    #[test]
    fn closure_bodies_on_later_lines_of_a_statement_are_marked() {
        let analysis = check(
            r#"
            fn parse(text: &str) -> Result<i64, String> {
                text.parse::<i64>()
                    .map_err(|e| format!("bad {text}: {e}"))
            }
            fn sum(v: &[u64]) -> u64 {
                v.iter().map(|x| x * 2).sum()
            }
            fn spawn() -> Vec<u8> {
                (0..2)
                    .map(|_| {
                        1
                    })
                    .collect()
            }
            "#,
            r#"
            S   fn parse(text: &str) -> Result<i64, String> {
            S       text.parse::<i64>()
            C2          .map_err(|e| format!("bad {text}: {e}"))
            C1  }
            S   fn sum(v: &[u64]) -> u64 {
            S       v.iter().map(|x| x * 2).sum()
            C5  }
            S   fn spawn() -> Vec<u8> {
            S       (0..2)
            C9          .map(|_| {
            S               1
            C9          })
            C9          .collect()
            C8  }
            "#,
        );
        let marked: Vec<u32> = (1..=14).filter(|&l| analysis.is_closure_body(l)).collect();
        // Not line 6 (the statement's own line), not line 10 (a block body: its lines are
        // statements of their own).
        assert_eq!(marked, [3]);
    }

    #[test]
    fn match_arms() {
        check(
            r#"
            fn describe(n: u8) -> usize {
                let label = match n {
                    0 => "zero",
                    1 | 2 => {
                        let small = "small";
                        small
                    }
                    _ => "many",
                };
                match label { "zero" => 0, _ => 1 }
            }
            "#,
            r#"
            S   fn describe(n: u8) -> usize {
            S       let label = match n {
            S           0 => "zero",
            S           1 | 2 => {
            S               let small = "small";
            S               small
            C4          }
            S           _ => "many",
            C2      };
            S       match label { "zero" => 0, _ => 1 }
            C1  }
            "#,
        );
    }

    #[test]
    fn loops() {
        check(
            r#"
            fn run(limit: u32) {
                let mut n = 0;
                loop {
                    n += 1;
                    if n > limit {
                        break;
                    }
                }
                while n > 0 {
                    n -= 1;
                }
                for i in 0..n {
                    println!(
                        "{i}"
                    );
                }
            }
            "#,
            r#"
            S   fn run(limit: u32) {
            S       let mut n = 0;
            -       loop {
            S           n += 1;
            S           if n > limit {
            S               break;
            C5          }
            -       }
            S       while n > 0 {
            S           n -= 1;
            C9      }
            S       for i in 0..n {
            S           println!(
            C13             "{i}"
            C13         );
            C12     }
            C1  }
            "#,
        );
    }

    #[test]
    fn functions_in_macro_bodies_are_walked_and_gated_by_the_invocations() {
        let source = r#"
            macro_rules! impl_ref {
                ($t:ty, $($attr:meta),*) => {
                    impl<L: AsRef<$t>> AsRef<$t> for Wrap<L> {
                        fn as_ref(&self) -> &$t {
                            let inner = &self.0;
                            inner
                                .as_ref()
                        }
                    }
                };
            }
            impl_ref!(str,);
            macro_rules! unused {
                () => { fn f<T>() { g::<T>(); } };
            }
            macro_rules! gated {
                ($name:ident) => { fn $name<T>() { g::<T>(); } };
            }
            #[cfg(feature = "x")]
            gated!(h);
            fn body() {
                gated!(k);
            }
            "#;
        let analysis = check(
            source,
            r#"
            -   macro_rules! impl_ref {
            s       ($t:ty, $($attr:meta),*) => {
            s           impl<L: AsRef<$t>> AsRef<$t> for Wrap<L> {
            s               fn as_ref(&self) -> &$t {
            s                   let inner = &self.0;
            s                   inner
            C6                      .as_ref()
            C4              }
            -           }
            -       };
            -   }
            s   impl_ref!(str,);
            -   macro_rules! unused {
            s       () => { fn f<T>() { g::<T>(); } };
            -   }
            -   macro_rules! gated {
            s       ($name:ident) => { fn $name<T>() { g::<T>(); } };
            -   }
            -   #[cfg(feature = "x")]
            s   gated!(h);
            S   fn body() {
            S       gated!(k);
            C21 }
            "#,
        );
        let names: Vec<&str> = analysis
            .functions()
            .iter()
            .map(|f| f.name.as_str())
            .collect();
        assert_eq!(names, ["as_ref", "f", "$name", "body"]);
        let mut set = crate::analysis::CfgSet::default();
        assert_eq!(analysis.compiled_in(5, &set), Some(true), "invoked");
        assert_eq!(analysis.compiled_in(14, &set), Some(false), "never invoked");
        set.set_invoked_elsewhere(["unused".to_owned()].into());
        assert_eq!(
            analysis.compiled_in(14, &set),
            Some(true),
            "invoked by another file of the package"
        );
        set.set_invoked_elsewhere(Default::default());
        // Invoked under a cfg the build leaves out, and in a function: either is enough.
        assert_eq!(analysis.compiled_in(17, &set), Some(true));
        set.add_feature("x");
        assert_eq!(analysis.compiled_in(17, &set), Some(true));
        let passed_on = analyze(
            "macro_rules! m {\n    ($a:meta) => { #[$a] fn f<T>() {} };\n}\nm!(cfg(unix));\n",
        )
        .expect("parses");
        assert_eq!(
            passed_on.compiled_in(2, &set),
            None,
            "the argument may be a cfg"
        );
    }

    #[test]
    fn functions_of_other_rules_and_repetitions_are_gated_by_the_invocations_expanding_them() {
        let source = r#"
            macro_rules! rules {
                (ref $t:ty) => { fn by_ref<T: AsRef<$t>>() {} };
                (into $t:ty) => { fn by_into<T: Into<$t>>() {} };
                (never) => { fn never<T>() {} };
            }
            rules!(ref str);
            macro_rules! each {
                ($($n:ident),*) => { $(fn $n<T>() {})* };
            }
            each!();
            #[cfg(feature = "x")]
            each!(a, b);
            macro_rules! two {
                (a) => { fn a<T>() {} };
                (b) => { fn b<T>() {} };
            }
            crate::two!(a);
            "#;
        let analysis = analyze(source).expect("parses");
        let names: Vec<&str> = analysis
            .functions()
            .iter()
            .map(|f| f.name.as_str())
            .collect();
        assert_eq!(names, ["by_ref", "by_into", "never", "$n", "a", "b"]);
        let mut set = crate::analysis::CfgSet::default();
        assert_eq!(analysis.compiled_in(3, &set), Some(true), "its rule taken");
        assert_eq!(
            analysis.compiled_in(4, &set),
            Some(false),
            "rule never taken"
        );
        assert_eq!(analysis.compiled_in(5, &set), Some(false));
        assert_eq!(analysis.compiled_in(9, &set), Some(false), "none repeated");
        set.add_feature("x");
        assert_eq!(analysis.compiled_in(9, &set), Some(true), "repeated twice");
        // Through a path, another module's macro of the same name may be meant.
        assert_eq!(analysis.compiled_in(15, &set), None);
        assert_eq!(analysis.compiled_in(16, &set), None);
        // Another file's invocations are known by name only: they cannot choose a rule.
        set.set_invoked_elsewhere(["rules".to_owned()].into());
        assert_eq!(analysis.compiled_in(5, &set), Some(false));
    }

    #[test]
    fn functions_of_a_macro_another_macro_always_invokes_count_when_that_one_is_invoked() {
        let source = "macro_rules! inner {\n    () => { fn g<T>() {} };\n}\n\
                      macro_rules! outer {\n    () => { inner!(); };\n}\n\
                      macro_rules! sometimes {\n    ($($x:ident)*) => { $(inner!();)* };\n}\n";
        let analysis = analyze(source).expect("parses");
        let mut set = crate::analysis::CfgSet::default();
        assert_eq!(
            analysis.compiled_in(2, &set),
            Some(false),
            "nothing invoked"
        );
        set.set_invoked_elsewhere(["sometimes".to_owned()].into());
        assert_eq!(
            analysis.compiled_in(2, &set),
            Some(false),
            "its invocation of `inner` is in a repetition"
        );
        set.set_invoked_elsewhere(["outer".to_owned()].into());
        assert_eq!(
            analysis.compiled_in(2, &set),
            Some(true),
            "`outer` invoked elsewhere"
        );
        let invoked_here = analyze(&format!("{source}outer!();\n")).expect("parses");
        let set = crate::analysis::CfgSet::default();
        assert_eq!(
            invoked_here.compiled_in(2, &set),
            Some(true),
            "`outer` invoked here"
        );
        // Calls in a function of a macro nothing invokes are never made.
        let in_unused = "macro_rules! never {\n    () => { fn h() { outer!(); inner!(); } };\n}\n";
        let unused = analyze(&format!("{source}{in_unused}")).expect("parses");
        assert_eq!(unused.compiled_in(2, &set), Some(false));
    }

    #[test]
    fn bare_jumps_count_from_the_lines_around_them() {
        let analysis = check(
            r#"
            fn f(values: &[u32], text: &str) -> u32 {
                for &v in values {
                    if v == 1 {
                        continue;
                    }
                    if v == 2 {
                        break;
                    } else {
                        work(v);
                    }
                    if v == 3 {
                        return 0;
                    }
                    work(v);
                    break;
                }
                let Ok(n) = text.parse::<u32>() else {
                    return 1;
                };
                if n > 4 {
                    return;
                }
                while n > 5 {
                    if n > 6 {
                        work(n);
                    } else {
                        break;
                    }
                    if n > 7 {
                        work(n);
                    }
                    break;
                }
                n
            }
            "#,
            r#"
            S   fn f(values: &[u32], text: &str) -> u32 {
            S       for &v in values {
            S           if v == 1 {
            S               continue;
            C3          }
            S           if v == 2 {
            S               break;
            C6          } else {
            S               work(v);
            C6          }
            S           if v == 3 {
            S               return 0;
            C11         }
            S           work(v);
            S           break;
            C2      }
            S       let Ok(n) = text.parse::<u32>() else {
            S           return 1;
            C17     };
            S       if n > 4 {
            S           return;
            C20     }
            S       while n > 5 {
            S           if n > 6 {
            S               work(n);
            C24         } else {
            S               break;
            C24         }
            S           if n > 7 {
            S               work(n);
            C29         }
            S           break;
            C23     }
            S       n
            C1  }
            "#,
        );
        let jumps: Vec<(u32, JumpCount)> = (1..=35)
            .filter_map(|line| Some((line, analysis.jump_count(line)?)))
            .collect();
        assert_eq!(
            jumps,
            [
                (4, JumpCount::Difference(3, 6)),
                (7, JumpCount::Difference(6, 9)),
                // Not line 12: `return 0;` has code of its own.
                (15, JumpCount::After(14)),
                // The next statement is a loop header, which runs more often: the `if`'s branch.
                (
                    21,
                    JumpCount::Taken {
                        condition: 20,
                        operands: 1
                    }
                ),
                (27, JumpCount::Difference(24, 25)),
                (32, JumpCount::After(29)),
            ]
        );
        let chain = check(
            r#"
            fn g(c: char) {
                loop {
                    if c == 'a' {
                        work(1);
                    } else if c == 'b' {
                        work(2);
                    } else {
                        break;
                    }
                }
            }
            "#,
            r#"
            S   fn g(c: char) {
            -       loop {
            S           if c == 'a' {
            S               work(1);
            S           } else if c == 'b' {
            S               work(2);
            C3          } else {
            S               break;
            C3          }
            -       }
            C1  }
            "#,
        );
        assert_eq!(chain.jump_count(8), Some(JumpCount::Difference(5, 6)));
        let arms = analyze(
            "fn h(v: Option<u8>) {\n    loop {\n        match v {\n            Some(x) => work(x),\n            \
             None => break,\n        }\n        match v {\n            Some(x) if x > 1 => work(x),\n            \
             _ => break,\n        }\n    }\n}\n",
        )
        .expect("parses");
        assert_eq!(arms.jump_count(5), Some(JumpCount::Difference(3, 4)));
        assert_eq!(arms.jump_count(9), None, "a guard decides too");
        // A guarded arm whose whole body is a bare jump runs as often as its guard held.
        let guarded = analyze(
            "fn k(v: Option<u8>) {\n    match v {\n        Some(x) if x > 1 && x < 9 => {\n            \
             return\n        }\n        Some(x) if x > 0 => return,\n        _ => {}\n    }\n    work(0);\n}\n",
        )
        .expect("parses");
        assert_eq!(
            guarded.jump_count(4),
            Some(JumpCount::Taken {
                condition: 3,
                operands: 2
            })
        );
        assert_eq!(guarded.jump_count(6), None, "on the guard's own line");
        let larger = analyze(
            "fn h(v: E, n: u8) {\n    loop {\n        match v {\n            E::A(x) => work(x),\n            \
             E::B | E::C { .. } => work(0),\n            E::D => break,\n        }\n        match n {\n            \
             1..=9 => work(n),\n            _ => break,\n        }\n    }\n}\n",
        )
        .expect("parses");
        let mut rest = [None; crate::analysis::jumps::MAX_OTHER_ARMS];
        rest[..2].copy_from_slice(&[Some(4), Some(5)]);
        assert_eq!(
            larger.jump_count(6),
            Some(JumpCount::Remainder { all: 3, rest })
        );
        assert_eq!(
            larger.jump_count(10),
            None,
            "a range is tested on its arm's line, also for values that go on"
        );
        let constant = analyze(
            "fn k(n: u8) {\n    loop {\n        match n {\n            u8::MAX | LIMIT => work(n),\n            \
             _ => break,\n        }\n    }\n}\n",
        )
        .expect("parses");
        assert_eq!(
            constant.jump_count(5),
            None,
            "constants compare like literals"
        );
    }

    #[test]
    fn bare_jumps_without_neighbours_count_by_the_branch_entering_them() {
        let analysis = analyze(
            r#"fn f(values: &[u32], texts: &[&str]) -> Result<(), E> {
    for &v in values {
        work(v);
        if big(v) && v > 3 {
            break;
        }
    }
    while let Some(x) = next() {
        if big(x) || v > 3 {
            continue;
        }
    }
    match values.first() {
        Some(v) => {
            if values.iter().any(|x| if *x > 1 { true } else { false }) {
                return Ok(());
            }
        }
        None => {}
    }
    loop {
        check(texts)?;
        break;
    }
    loop {
        let n = parse(texts[0]?)?;
        break;
    }
}
"#,
        )
        .expect("parses");
        let jumps: Vec<(u32, JumpCount)> = (1..=27)
            .filter_map(|line| Some((line, analysis.jump_count(line)?)))
            .collect();
        assert_eq!(
            jumps,
            [
                (
                    5,
                    JumpCount::Taken {
                        condition: 4,
                        operands: 2
                    }
                ),
                // Not line 10 (`||`: either operand enters), nor 16 (a closure's branch on the
                // line), nor 26 (two `?`s).
                (23, JumpCount::Passed(22)),
            ]
        );
    }

    #[test]
    fn jumps_leaving_a_while_count_by_its_passes() {
        let analysis = analyze(
            r#"fn f(values: &[u32]) -> u32 {
    let mut at = 0;
    while at < values.len() {
        at += 1;
        if values[at - 1] == 0 {
            break;
        }
    }
    'outer: while at > 0 {
        while at > 1 {
            at -= 1;
            if at == 5 {
                continue 'outer;
            }
        }
        at -= 1;
        'inner: while at > 2 {
            if at == 3 {
                continue 'inner;
            }
        }
    }
    work();
    while at > 3 {
        parse(at)?;
        if at == 4 {
            break;
        }
    }
    at
}
"#,
        )
        .expect("parses");
        let jumps: Vec<(u32, JumpCount)> = (1..=31)
            .filter_map(|line| Some((line, analysis.jump_count(line)?)))
            .collect();
        assert_eq!(
            jumps,
            [
                (
                    6,
                    JumpCount::LoopExit {
                        before: 2,
                        condition: 5,
                        header: 3,
                        operands: Some(1)
                    }
                ),
                // The inner `while` is the first statement of its block: nothing counts its
                // entries, so only the branch can tell.
                (
                    13,
                    JumpCount::Taken {
                        condition: 12,
                        operands: 1
                    }
                ),
                // `continue 'inner` goes back to its own loop, and a `?` before the last loop's
                // `if` may leave a pass early.
                (
                    19,
                    JumpCount::Taken {
                        condition: 18,
                        operands: 1
                    }
                ),
                (
                    27,
                    JumpCount::Taken {
                        condition: 26,
                        operands: 1
                    }
                ),
            ]
        );
    }

    #[test]
    fn closure_with_block_body() {
        let analysis = check(
            r#"
            fn spawn_all(jobs: Vec<Job>) {
                jobs.into_iter().for_each(|job| {
                    let id = job.id;
                    job.run(id);
                });
                let short = count(|| 1);
            }
            "#,
            r#"
            S   fn spawn_all(jobs: Vec<Job>) {
            S       jobs.into_iter().for_each(|job| {
            S           let id = job.id;
            S           job.run(id);
            C2      });
            S       let short = count(|| 1);
            C1  }
            "#,
        );
        assert_eq!(analysis.functions(), [function("spawn_all", 1, 7)]);
    }

    #[test]
    fn nested_fns() {
        let analysis = check(
            r#"
            fn outer() -> u32 {
                fn double(x: u32) -> u32 {
                    x * 2
                }
                let value = {
                    #[inline]
                    fn seven() -> u32 {
                        7
                    }
                    seven()
                };
                double(value)
            }
            "#,
            r#"
            S   fn outer() -> u32 {
            S       fn double(x: u32) -> u32 {
            S           x * 2
            C2      }
            S       let value = {
            -           #[inline]
            S           fn seven() -> u32 {
            S               7
            C7          }
            S           seven()
            C5      };
            S       double(value)
            C1  }
            "#,
        );
        assert_eq!(
            analysis.functions(),
            [
                function("outer", 1, 13),
                function("double", 2, 4),
                function("seven", 7, 9)
            ]
        );
        let at = |line| analysis.function_at(line).map(|f| f.name.as_str());
        assert_eq!(at(3), Some("double"));
        assert_eq!(at(8), Some("seven"));
        assert_eq!(at(11), Some("outer"));
        assert_eq!(at(1), Some("outer"));
        assert_eq!(at(14), None);
    }

    #[test]
    fn impl_methods_are_named_after_the_type() {
        let analysis = check(
            r#"
            pub struct Ledger {
                balance: i64,
            }

            impl Ledger {
                pub const LIMIT: i64 = 100;

                pub fn deposit(&mut self, amount: i64) {
                    self.balance += amount;
                }
            }

            impl<'a> std::fmt::Display for &'a Ledger {
                fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    write!(f, "{}", self.balance)
                }
            }

            impl Summary for [u8] {
                fn summary(&self) -> usize {
                    self.len()
                }
            }
            "#,
            r#"
            -   pub struct Ledger {
            -       balance: i64,
            -   }
            -
            -   impl Ledger {
            -       pub const LIMIT: i64 = 100;
            -
            S       pub fn deposit(&mut self, amount: i64) {
            S           self.balance += amount;
            C8      }
            -   }
            -
            -   impl<'a> std::fmt::Display for &'a Ledger {
            S       fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            S           write!(f, "{}", self.balance)
            C14     }
            -   }
            -
            -   impl Summary for [u8] {
            S       fn summary(&self) -> usize {
            S           self.len()
            C20     }
            -   }
            "#,
        );
        assert_eq!(
            analysis.functions(),
            [
                function("Ledger::deposit", 8, 10),
                function("Ledger::fmt", 14, 16),
                function("[u8]::summary", 20, 22)
            ]
        );
    }

    #[test]
    fn trait_default_method() {
        let analysis = check(
            r#"
            trait Greeter {
                fn name(&self) -> String;

                fn greet(&self) -> String {
                    format!("hello {}", self.name())
                }
            }
            "#,
            r#"
            -   trait Greeter {
            -       fn name(&self) -> String;
            -
            S       fn greet(&self) -> String {
            S           format!("hello {}", self.name())
            C4      }
            -   }
            "#,
        );
        assert_eq!(analysis.functions(), [function("Greeter::greet", 4, 6)]);
    }

    #[test]
    fn declarations_are_not_code() {
        let analysis = check(
            r#"
            //! Module docs.
            use std::collections::HashMap;

            /// A colour.
            #[derive(Debug, Clone)]
            pub enum Colour {
                Red,
                Green = { 1 + 1 },
            }

            const MAX: usize = 10;
            static NAMES: [&str; 2] = ["a", "b"];
            type Map = HashMap<String, usize>;
            mod other;
            extern crate alloc;
            extern "C" {
                fn abs(x: i32) -> i32;
            }

            /* A block
               comment */
            pub struct Point {
                x: [i32; { 2 }],
            }
            "#,
            r#"
            -   //! Module docs.
            -   use std::collections::HashMap;
            -
            -   /// A colour.
            -   #[derive(Debug, Clone)]
            -   pub enum Colour {
            -       Red,
            -       Green = { 1 + 1 },
            -   }
            -
            -   const MAX: usize = 10;
            -   static NAMES: [&str; 2] = ["a", "b"];
            -   type Map = HashMap<String, usize>;
            -   mod other;
            -   extern crate alloc;
            -   extern "C" {
            -       fn abs(x: i32) -> i32;
            -   }
            -
            -   /* A block
            -      comment */
            -   pub struct Point {
            -       x: [i32; { 2 }],
            -   }
            "#,
        );
        assert!(analysis.functions().is_empty());
    }

    #[test]
    fn closures_in_static_initialisers_run_at_run_time() {
        check(
            r#"
            static TABLE: LazyLock<Vec<u8>> = LazyLock::new(|| {
                let mut table = Vec::new();
                table.push(1);
                table
            });
            static ZERO: LazyLock<u8> = LazyLock::new(|| 0);
            const SIZE: usize = {
                let n = 4;
                n * 2
            };
            fn buffer() -> [u8; SIZE] {
                let values = const { [0; 8] };
                values
            }
            "#,
            r#"
            -   static TABLE: LazyLock<Vec<u8>> = LazyLock::new(|| {
            S       let mut table = Vec::new();
            S       table.push(1);
            S       table
            -   });
            S   static ZERO: LazyLock<u8> = LazyLock::new(|| 0);
            -   const SIZE: usize = {
            -       let n = 4;
            -       n * 2
            -   };
            S   fn buffer() -> [u8; SIZE] {
            S       let values = const { [0; 8] };
            S       values
            C11 }
            "#,
        );
    }

    #[test]
    fn macros() {
        check(
            r#"
            #[macro_export]
            macro_rules! square {
                ($x:expr) => {
                    // Squares.
                    $x * $x
                };
            }

            square_fns!(a, b);

            make_fn! {
                name = c,
            }
            "#,
            r#"
            -   #[macro_export]
            -   macro_rules! square {
            s       ($x:expr) => {
            -           // Squares.
            s           $x * $x
            -       };
            -   }
            -
            s   square_fns!(a, b);
            -
            s   make_fn! {
            C11     name = c,
            C11 }
            "#,
        );
        check(
            r#"
            fn twice_work() {
                macro_rules! twice {
                    ($e:expr) => { $e; $e };
                }
                twice!(work());
            }
            "#,
            r#"
            S   fn twice_work() {
            -       macro_rules! twice {
            s           ($e:expr) => { $e; $e };
            -       }
            S       twice!(work());
            C1  }
            "#,
        );
    }
}
