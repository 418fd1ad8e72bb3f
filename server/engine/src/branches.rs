//! Finds the conditional jumps of a function that can stand for source branches, and the addresses
//! whose counts give how often each jump was taken and not taken.
//!
//! The engine counts addresses. A successor that only its jump can reach (the fall-through of a
//! jump nothing else targets, or a target that one jump alone reaches) runs exactly as often as
//! that side of the jump is taken. When only one side is like that, the other side is the jump's
//! own count minus it, and the jump's count is that of the first instruction of the straight run of
//! code that ends with the jump (no call, no branch, no entry inside it). A jump whose two
//! successors both have other ways in is counted on its taken edge: [`edge`] names a counter that
//! the trampoline moving the jump adds to when it is taken (see `sites::Site::Taken`).
//!
//! Jumps the compiler adds with no source construct behind them are left out here:
//! - checks: a successor that goes straight (through unconditional jumps only, before any other
//!   call or branch) to a call of one of rustc's check panics (`panic_const_*` for overflow and
//!   division, `panic_bounds_check`, misaligned or null pointer, `panic_nounwind`) or to `ud2`;
//! - drop flags: a jump right after a `test` of a byte in memory (a drop flag lives on the stack)
//!   whose successor's first call is a `drop_in_place`;
//! - unwinding: jumps that normal control flow cannot reach from the function's entry (cleanup
//!   code runs only from a landing pad).
//!
//! Which remaining jumps belong to a source construct is the planner's call (by line), and so is
//! which side is the condition's true one: this module says what the jump tests ([`Test`]).

use std::collections::HashMap;

use iced_x86::{Code, FlowControl, Instruction, Mnemonic, OpKind, Register};
use serde::{Deserialize, Serialize};

use super::sites::{ExeCode, Function};

/// Changes whenever [`find`] may find other jumps or count them otherwise in the same code, so that
/// cached results of an older finder are not reused.
pub const FINDER_VERSION: u32 = 5;

/// The pseudo-address that names the taken edge of the conditional jump at `jump`: one byte into
/// the jump instruction, so never a line-table row, an instruction or a place for a trap.
pub fn edge(jump: u64) -> u64 {
    jump + 1
}

/// How one side of a conditional jump is counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Side<A> {
    /// The count of this address.
    At(A),
    /// The count of `whole` (the jump's) minus that of `other` (the other side).
    Rest { whole: A, other: A },
    /// The counts of up to four addresses added (`true`) or subtracted: a side that shares its
    /// successor with other jumps whose sides are known (the second operand of `a || b`).
    Terms([Option<(A, bool)>; MAX_TERMS]),
}

/// Most addresses a side is computed from.
const MAX_TERMS: usize = 4;

impl<A: Copy> Side<A> {
    /// The addresses this side is computed from, each with whether it is added.
    pub fn terms(&self) -> Vec<(A, bool)> {
        match *self {
            Side::At(a) => vec![(a, true)],
            Side::Rest { whole, other } => vec![(whole, true), (other, false)],
            Side::Terms(terms) => terms.iter().flatten().copied().collect(),
        }
    }

    /// The side of `terms`; `None` when there are more than [`MAX_TERMS`].
    fn of_terms(terms: &[(A, bool)]) -> Option<Side<A>> {
        let mut fixed = [None; MAX_TERMS];
        if terms.len() > MAX_TERMS {
            return None;
        }
        for (slot, &term) in fixed.iter_mut().zip(terms) {
            *slot = Some(term);
        }
        Some(Side::Terms(fixed))
    }

    /// The addresses this side needs counted.
    pub fn addresses(&self) -> Vec<A> {
        self.terms().into_iter().map(|(a, _)| a).collect()
    }

    pub fn map<B>(&self, f: impl Fn(A) -> B) -> Side<B> {
        match *self {
            Side::At(a) => Side::At(f(a)),
            Side::Rest { whole, other } => Side::Rest {
                whole: f(whole),
                other: f(other),
            },
            Side::Terms(terms) => Side::Terms(terms.map(|t| t.map(|(a, add)| (f(a), add)))),
        }
    }

    /// This side's count, from the counts of its addresses (saturating: counts of the jump and
    /// of the other side come from different counters, read at the same moment).
    pub fn count(&self, count: impl Fn(A) -> u64) -> u64 {
        let sum: i128 = self
            .terms()
            .into_iter()
            .map(|(a, add)| {
                let n = i128::from(count(a));
                if add {
                    n
                } else {
                    -n
                }
            })
            .sum();
        sum.max(0) as u64
    }
}

/// A comparison, as a condition code reads it after `cmp a, b` (signed and unsigned alike).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Compare {
    Equal,
    NotEqual,
    Less,
    LessEqual,
    Greater,
    GreaterEqual,
}

impl Compare {
    /// The comparison that holds exactly when this one does not.
    pub fn inverse(self) -> Compare {
        match self {
            Compare::Equal => Compare::NotEqual,
            Compare::NotEqual => Compare::Equal,
            Compare::Less => Compare::GreaterEqual,
            Compare::GreaterEqual => Compare::Less,
            Compare::Greater => Compare::LessEqual,
            Compare::LessEqual => Compare::Greater,
        }
    }

    /// The same comparison with its operands swapped (`a < b` is `b > a`).
    pub fn swapped(self) -> Compare {
        match self {
            Compare::Less => Compare::Greater,
            Compare::Greater => Compare::Less,
            Compare::LessEqual => Compare::GreaterEqual,
            Compare::GreaterEqual => Compare::LessEqual,
            same => same,
        }
    }

    fn of_jump(jump: &Instruction) -> Option<Compare> {
        Some(match jump.mnemonic() {
            Mnemonic::Je => Compare::Equal,
            Mnemonic::Jne => Compare::NotEqual,
            Mnemonic::Jl | Mnemonic::Jb => Compare::Less,
            Mnemonic::Jle | Mnemonic::Jbe => Compare::LessEqual,
            Mnemonic::Jg | Mnemonic::Ja => Compare::Greater,
            Mnemonic::Jge | Mnemonic::Jae => Compare::GreaterEqual,
            _ => return None,
        })
    }
}

/// What a conditional jump decides on, as far as its instructions tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Test {
    /// A value tested against zero (`test r, r` or `test r, 1` before `jne`/`je`: a `bool`):
    /// the jump is taken when the value is nonzero, or (`false`) when it is zero.
    NonZero(bool),
    /// `cmp`/`ucomis` then a jump taken when this comparison of the operands holds.
    Compare(Compare),
    /// One side goes to a `from_residual` call (a `?` returning early): the taken one (`true`)
    /// or the fall-through.
    Residual(bool),
    Unknown,
}

/// A conditional jump with source-level meaning possible.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineBranch {
    /// Address of the jump instruction.
    pub jump: u64,
    pub test: Test,
    /// The jump is taken: control goes to its target.
    pub taken: Side<u64>,
    /// The jump is not taken: control falls through.
    pub not_taken: Side<u64>,
    /// Every address that counts the jump itself exactly (the instructions of the straight run
    /// that ends with it where a jump fits), for [`MachineBranch::cheapest`].
    pub wholes: Vec<u64>,
}

impl MachineBranch {
    /// A jump counted on its taken edge ([`edge`]): the fall-through is the jump's count less it.
    fn on_edge(jump: &Instruction, whole: u64, wholes: Vec<u64>, test: Test) -> MachineBranch {
        let taken = edge(jump.ip());
        MachineBranch {
            jump: jump.ip(),
            test,
            taken: Side::At(taken),
            not_taken: Side::Rest {
                whole,
                other: taken,
            },
            wholes,
        }
    }

    /// The two sides for first hits only (a trap lifted at its first hit says whether an address
    /// ran, not how often): at their own addresses, or none when a side is a difference.
    pub fn own_sides(&self) -> Option<(Side<u64>, Side<u64>)> {
        matches!((self.taken, self.not_taken), (Side::At(_), Side::At(_)))
            .then_some((self.taken, self.not_taken))
    }

    /// The two sides, counted at addresses that are counted anyway where possible (`counted`: the
    /// statements' own): a difference takes the jump's count from such an address, and of two
    /// sides with addresses of their own, one that is not counted anyway becomes the difference
    /// of the jump's count and the other side when the jump's count is. Fewer counters to run.
    pub fn cheapest(&self, counted: &dyn Fn(u64) -> bool) -> (Side<u64>, Side<u64>) {
        let free_whole = self.wholes.iter().copied().find(|&a| counted(a));
        let cheaper = |side: Side<u64>, other: Side<u64>| match (side, other, free_whole) {
            (Side::Rest { other, .. }, _, Some(whole)) => Side::Rest { whole, other },
            (Side::At(own), Side::At(other), Some(whole)) if !counted(own) && counted(other) => {
                Side::Rest { whole, other }
            }
            _ => side,
        };
        let taken = cheaper(self.taken, self.not_taken);
        // Not both as differences: the other side stays at its own address.
        let not_taken = match taken {
            Side::Rest { .. } if matches!(self.taken, Side::At(_)) => self.not_taken,
            _ => cheaper(self.not_taken, self.taken),
        };
        (taken, not_taken)
    }
}

/// [`find`] for each function whose entry is in `entries`.
pub fn find_all(code: &ExeCode, entries: &[u64]) -> Vec<Vec<MachineBranch>> {
    entries.iter().map(|&entry| find(code, entry)).collect()
}

/// Instructions followed from a successor when looking for what it leads to.
const LOOKAHEAD: usize = 24;

/// The countable conditional jumps of the function whose symbol holds `address`, in address order.
/// None when it cannot be decoded or jumps through a register in a way not understood (then any
/// instruction may have other ways in).
pub fn find(code: &ExeCode, address: u64) -> Vec<MachineBranch> {
    let Some(range) = code.function(address) else {
        return Vec::new();
    };
    let Some(function) = code.decoded(range) else {
        return Vec::new();
    };
    let Some(targets) = &function.targets else {
        return Vec::new();
    };
    let instructions = &function.instructions;
    let index = Index(instructions);
    let mut jumps_to: HashMap<u64, u32> = HashMap::new();
    for instruction in instructions {
        if matches!(
            instruction.flow_control(),
            FlowControl::ConditionalBranch | FlowControl::UnconditionalBranch
        ) {
            *jumps_to
                .entry(instruction.near_branch_target())
                .or_default() += 1;
        }
    }
    let entered = |ip: u64| targets.contains(&ip) || code.is_landing_pad(ip);
    let patchable = |ip: u64| super::sites::patchable(code, &function, ip);
    let reachable = reachable(&function, &index);
    let mut branches = Vec::new();
    // Jumps whose target others reach too and whose sides have no address of their own: kept for
    // a second pass, once those others' sides are known.
    let mut shared: Vec<Shared> = Vec::new();
    for (i, jump) in instructions.iter().enumerate() {
        if jump.flow_control() != FlowControl::ConditionalBranch
            || jump.op0_kind() != OpKind::NearBranch64
            || !reachable[i]
        {
            continue;
        }
        let (target, next) = (jump.near_branch_target(), jump.next_ip());
        let (Some(t), Some(n)) = (index.get(target), index.get(next)) else {
            continue;
        };
        if target == next {
            continue;
        }
        let leads_to_check = |at: usize| first_call(code, instructions, &index, at).is_check;
        if leads_to_check(t) || leads_to_check(n) {
            continue;
        }
        let tests_memory_byte = i > 0 && is_memory_byte_test(&instructions[i - 1]);
        let drops = |at: usize| first_call(code, instructions, &index, at).is_drop;
        if tests_memory_byte && (drops(t) || drops(n)) {
            continue;
        }
        // The fall-through is reached from the jump alone unless something else enters it.
        let fall_through_alone = !entered(next);
        // A check's panic never returns: the code after its call is no way in.
        let falls_into = |before: usize| {
            super::sites::falls_through(&instructions[before])
                && !is_check_call(code, instructions, before)
        };
        let alone = |target: u64, at: usize| {
            jumps_to.get(&target) == Some(&1)
                && !function.table_targets.contains(&target)
                && !code.is_landing_pad(target)
                && at.checked_sub(1).is_none_or(|before| !falls_into(before))
        };
        let target_alone = alone(target, t);
        // Where a side that only the jump reaches is counted: at its first instruction, or, when
        // no jump can be written there (a 2-byte `jmp` before the next block), at the target of
        // that `jmp` when nothing else reaches it.
        let counter = |side: u64, at: usize, reached_alone: bool| {
            if !reached_alone {
                return None;
            }
            if super::sites::patchable(code, &function, side) {
                return Some(side);
            }
            let jump = &instructions[at];
            if jump.flow_control() != FlowControl::UnconditionalBranch
                || jump.op0_kind() != OpKind::NearBranch64
            {
                return None;
            }
            let onward = jump.near_branch_target();
            let k = index.get(onward)?;
            (alone(onward, k) && super::sites::patchable(code, &function, onward)).then_some(onward)
        };
        let (wholes, whole) = run_counted_at(instructions, i, &entered, &patchable);
        let (taken_exact, not_taken_exact) = (
            counter(target, t, target_alone),
            counter(next, n, fall_through_alone),
        );
        // A side is counted exactly at an address of its own, else as the jump's count minus the
        // other side's, both exact; else by int3 at its own first instruction when only the jump
        // reaches it (a lower bound, still right on whether it ran). A difference with an int3
        // count in it would measure nothing: such a branch is left out.
        let side = |own: Option<u64>, other: Option<u64>, first: u64, alone: bool| match own {
            Some(own) => Some(Side::At(own)),
            None => match (whole, other) {
                (Some(whole), Some(other)) => Some(Side::Rest { whole, other }),
                _ => alone.then_some(Side::At(first)),
            },
        };
        let residual = |at: usize| first_call(code, instructions, &index, at).is_residual;
        let test = if residual(t) != residual(n) {
            Test::Residual(residual(t))
        } else {
            test_before(jump, i.checked_sub(1).map(|b| &instructions[b]))
        };
        let (Some(taken), Some(not_taken)) = (
            side(taken_exact, not_taken_exact, target, target_alone),
            side(not_taken_exact, taken_exact, next, fall_through_alone),
        ) else {
            // Only jumps (no fall-through, no table, no unwinder) reach the target: its count is
            // theirs together.
            let only_jumps = !function.table_targets.contains(&target)
                && !code.is_landing_pad(target)
                && t.checked_sub(1).is_none_or(|before| !falls_into(before));
            let Some(whole) = whole else {
                continue;
            };
            if only_jumps && patchable(target) {
                shared.push(Shared {
                    jump: i,
                    whole,
                    wholes,
                    test,
                });
            } else if jump.is_jcc_short_or_near() {
                branches.push(MachineBranch::on_edge(jump, whole, wholes, test));
            }
            continue;
        };
        branches.push(MachineBranch {
            jump: jump.ip(),
            test,
            taken,
            not_taken,
            wholes,
        });
    }
    // A jump's taken side is its target's count less what the other jumps there bring, when
    // every one of those is known (a conditional jump's taken side, an unconditional jump's own
    // count: that of the straight run that ends with it); the fall-through is the jump's count
    // less that. Else the jump is counted on its taken edge.
    for pending in shared {
        let jump = &instructions[pending.jump];
        let on_edge = |pending: Shared| {
            jump.is_jcc_short_or_near()
                .then(|| MachineBranch::on_edge(jump, pending.whole, pending.wholes, pending.test))
        };
        let target = jump.near_branch_target();
        let others: Vec<Vec<(u64, bool)>> = instructions
            .iter()
            .enumerate()
            .filter(|(_, k)| {
                k.ip() != jump.ip()
                    && matches!(
                        k.flow_control(),
                        FlowControl::ConditionalBranch | FlowControl::UnconditionalBranch
                    )
                    && k.near_branch_target() == target
            })
            .filter_map(|(at, k)| match k.flow_control() {
                FlowControl::ConditionalBranch => branches
                    .iter()
                    .find(|b| b.jump == k.ip())
                    .map(|b| b.taken.terms()),
                _ => run_counted_at(instructions, at, &entered, &patchable)
                    .1
                    .map(|whole| vec![(whole, true)]),
            })
            .collect();
        if others.len() + 1 != jumps_to.get(&target).copied().unwrap_or(0) as usize {
            branches.extend(on_edge(pending));
            continue;
        }
        let mut taken = vec![(target, true)];
        for other in &others {
            taken.extend(other.iter().map(|&(a, add)| (a, !add)));
        }
        let mut not_taken = vec![(pending.whole, true)];
        not_taken.extend(taken.iter().map(|&(a, add)| (a, !add)));
        let (Some(taken), Some(not_taken)) = (Side::of_terms(&taken), Side::of_terms(&not_taken))
        else {
            branches.extend(on_edge(pending));
            continue;
        };
        branches.push(MachineBranch {
            jump: jump.ip(),
            test: pending.test,
            taken,
            not_taken,
            wholes: pending.wholes,
        });
    }
    branches.sort_by_key(|b| b.jump);
    branches
}

/// A jump left for [`find`]'s second pass.
struct Shared {
    /// Its index among the function's instructions.
    jump: usize,
    /// Where its own count is taken.
    whole: u64,
    wholes: Vec<u64>,
    test: Test,
}

/// Whether instruction `k` calls one of rustc's check panics, directly, through a GOT slot or
/// through a register loaded from one by the instruction before.
fn is_check_call(code: &ExeCode, instructions: &[Instruction], k: usize) -> bool {
    let call = &instructions[k];
    if !matches!(
        call.flow_control(),
        FlowControl::Call | FlowControl::IndirectCall
    ) {
        return false;
    }
    let loaded = k.checked_sub(1).map(|b| &instructions[b]).filter(|load| {
        load.code() == Code::Mov_r64_rm64
            && load.is_ip_rel_memory_operand()
            && call.op0_kind() == OpKind::Register
            && load.op0_register() == call.op0_register()
    });
    let callee = match loaded {
        Some(load) => code.got_entry(load.ip_rel_memory_address()),
        None => code.call_target(call),
    };
    callee.is_some_and(|c| code.is_check(c))
}

/// The instructions normal control flow reaches from the function's entry (calls return; landing
/// pads are not entries).
/// Instruction indexes by address, in a function's instructions (sorted by address).
struct Index<'a>(&'a [Instruction]);

impl Index<'_> {
    fn get(&self, ip: u64) -> Option<usize> {
        self.0.binary_search_by_key(&ip, Instruction::ip).ok()
    }
}

fn reachable(function: &Function, index: &Index) -> Vec<bool> {
    let instructions = &function.instructions;
    let mut seen = vec![false; instructions.len()];
    let mut work = vec![0usize];
    while let Some(i) = work.pop() {
        if i >= instructions.len() || std::mem::replace(&mut seen[i], true) {
            continue;
        }
        let instruction = &instructions[i];
        let direct = || index.get(instruction.near_branch_target());
        match instruction.flow_control() {
            FlowControl::ConditionalBranch => {
                work.push(i + 1);
                work.extend(direct());
            }
            FlowControl::UnconditionalBranch => work.extend(direct()),
            FlowControl::IndirectBranch => {
                work.extend(function.table_targets.iter().filter_map(|&t| index.get(t)))
            }
            FlowControl::Return | FlowControl::Exception => {}
            FlowControl::Interrupt if instruction.code() == Code::Int3 => {}
            _ => work.push(i + 1),
        }
    }
    seen
}

/// Where the straight run of code that ends with instruction `end` is counted: every instruction
/// of it a jump can be written at (each runs as often as `end`), and the one to count at (the
/// first of those; when there is none, the nearest such before the calls that lead into the run).
fn run_counted_at(
    instructions: &[Instruction],
    end: usize,
    entered: &dyn Fn(u64) -> bool,
    patchable: &dyn Fn(u64) -> bool,
) -> (Vec<u64>, Option<u64>) {
    let start = straight_run_start(instructions, end, entered);
    let wholes: Vec<u64> = instructions[start..=end]
        .iter()
        .map(Instruction::ip)
        .filter(|&ip| patchable(ip))
        .collect();
    let whole = wholes
        .first()
        .copied()
        .or_else(|| before_calls(instructions, start, entered, patchable));
    (wholes, whole)
}

/// The first instruction (its index) of the straight run of code that ends with instruction `end`:
/// nothing but plain instructions before it, and no way in after its start.
fn straight_run_start(
    instructions: &[Instruction],
    end: usize,
    entered: &dyn Fn(u64) -> bool,
) -> usize {
    let mut k = end;
    while k > 0
        && !entered(instructions[k].ip())
        && instructions[k - 1].flow_control() == FlowControl::Next
    {
        k -= 1;
    }
    k
}

/// What `jump` tests, from the instruction that set its flags.
fn test_before(jump: &Instruction, before: Option<&Instruction>) -> Test {
    let Some(before) = before else {
        return Test::Unknown;
    };
    match before.mnemonic() {
        Mnemonic::Test => match jump.mnemonic() {
            Mnemonic::Jne => Test::NonZero(true),
            Mnemonic::Je => Test::NonZero(false),
            _ => Test::Unknown,
        },
        Mnemonic::Cmp
        | Mnemonic::Ucomisd
        | Mnemonic::Ucomiss
        | Mnemonic::Comisd
        | Mnemonic::Comiss => Compare::of_jump(jump).map_or(Test::Unknown, Test::Compare),
        _ => Test::Unknown,
    }
}

/// When the straight run is too short for a jump (`call f; test al, 1; jne`), the nearest
/// instruction before it, over calls too, that nothing enters in between and where a jump fits: it
/// runs as often as the jump but for calls in between that unwind (a panic).
fn before_calls(
    instructions: &[Instruction],
    start: usize,
    entered: &dyn Fn(u64) -> bool,
    patchable: &dyn Fn(u64) -> bool,
) -> Option<u64> {
    let mut k = start;
    while k > 0 && !entered(instructions[k].ip()) {
        let before = &instructions[k - 1];
        if !matches!(
            before.flow_control(),
            FlowControl::Next | FlowControl::Call | FlowControl::IndirectCall
        ) {
            return None;
        }
        k -= 1;
        if patchable(before.ip()) {
            return Some(before.ip());
        }
    }
    None
}

/// `test byte ptr [mem], imm8`: how a drop flag is read.
fn is_memory_byte_test(instruction: &Instruction) -> bool {
    instruction.code() == Code::Test_rm8_imm8 && instruction.op0_kind() == OpKind::Memory
}

#[derive(Default)]
struct FirstCall {
    /// The code calls a check panic (or runs `ud2`) before any other call or branch.
    is_check: bool,
    /// Its first call is to a `drop_in_place`.
    is_drop: bool,
    /// Its first call is to a `from_residual`.
    is_residual: bool,
}

/// What the code from instruction `at` calls first, following unconditional jumps only. A call
/// through a register loaded from a GOT slot just before (`mov rax, [rip+slot]; call rax`) is a
/// call of the slot's function.
fn first_call(
    code: &ExeCode,
    instructions: &[Instruction],
    index: &Index,
    mut at: usize,
) -> FirstCall {
    let mut loaded: Option<(Register, u64)> = None;
    for _ in 0..LOOKAHEAD {
        let Some(instruction) = instructions.get(at) else {
            break;
        };
        if instruction.mnemonic() == Mnemonic::Ud2 {
            return FirstCall {
                is_check: true,
                ..FirstCall::default()
            };
        }
        match instruction.flow_control() {
            FlowControl::Next => {
                if instruction.code() == Code::Mov_r64_rm64
                    && instruction.is_ip_rel_memory_operand()
                {
                    loaded = code
                        .got_entry(instruction.ip_rel_memory_address())
                        .map(|callee| (instruction.op0_register(), callee));
                }
                at += 1;
            }
            FlowControl::UnconditionalBranch if instruction.op0_kind() == OpKind::NearBranch64 => {
                match index.get(instruction.near_branch_target()) {
                    Some(next) => at = next,
                    None => break,
                }
            }
            FlowControl::Call | FlowControl::IndirectCall => {
                let through_register = (instruction.op0_kind() == OpKind::Register)
                    .then(|| loaded.filter(|(r, _)| *r == instruction.op0_register()))
                    .flatten()
                    .map(|(_, callee)| callee);
                let callee = through_register.or_else(|| code.call_target(instruction));
                return FirstCall {
                    is_check: callee.is_some_and(|c| code.is_check(c)),
                    is_drop: callee.is_some_and(|c| code.is_drop(c)),
                    is_residual: callee.is_some_and(|c| code.is_residual(c)),
                };
            }
            _ => break,
        }
    }
    FirstCall::default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sites::Callee;

    const BASE: u64 = 0x1000;

    fn code(bytes: &[u8], pads: &[u64]) -> ExeCode {
        ExeCode::one_function(BASE, bytes, pads)
    }

    // 0x1000 cmp edi,0 (3); 0x1003 jg 0x100c (2); 0x1005 mov eax,2 (5); 0x100a jmp 0x1011 (2);
    // 0x100c mov eax,1 (5); 0x1011 ret
    const IF_ELSE: &[u8] = &[
        0x83, 0xFF, 0x00, 0x7F, 0x07, 0xB8, 0x02, 0, 0, 0, 0xEB, 0x05, 0xB8, 0x01, 0, 0, 0, 0xC3,
    ];

    #[test]
    fn successors_reached_from_their_jump_alone_count_its_sides() {
        assert_eq!(
            find(&code(IF_ELSE, &[]), BASE),
            [MachineBranch {
                jump: 0x1003,
                test: Test::Compare(Compare::Greater),
                taken: Side::At(0x100c),
                not_taken: Side::At(0x1005),
                wholes: vec![0x1000],
            }]
        );
    }

    // 0x1000 cmp edi,0 (3); 0x1003 jg 0x1007; 0x1005 jmp 0x100d (2); 0x1007 mov eax,1 (5);
    // 0x100c ret; 0x100d mov eax,2 (5); 0x1012 ret: the debug build's `jcc then; jmp else`.
    const JCC_JMP: &[u8] = &[
        0x83, 0xFF, 0x00, 0x7F, 0x02, 0xEB, 0x06, 0xB8, 0x01, 0, 0, 0, 0xC3, 0xB8, 0x02, 0, 0, 0,
        0xC3,
    ];

    #[test]
    fn a_short_jmp_fall_through_is_counted_where_it_goes() {
        let found = find(&code(JCC_JMP, &[]), BASE);
        assert_eq!(
            found,
            [MachineBranch {
                jump: 0x1003,
                test: Test::Compare(Compare::Greater),
                taken: Side::At(0x1007),
                not_taken: Side::At(0x100d),
                wholes: vec![0x1000],
            }]
        );
        // Entered from elsewhere too, the else block cannot stand for the fall-through: the
        // jump's count minus the taken side.
        let found = find(&code(JCC_JMP, &[0x100d]), BASE);
        assert_eq!(
            found[0].not_taken,
            Side::Rest {
                whole: 0x1000,
                other: 0x1007
            }
        );
    }

    // 0x1000 cmp edi,0 (3); 0x1003 je 0x1010; 0x1005 cmp esi,0 (3); 0x1008 je 0x1010;
    // 0x100a mov eax,2 (5); 0x100f ret; 0x1010 mov eax,1 (5); 0x1015 ret: `a == 0 || b == 0`.
    const OR: &[u8] = &[
        0x83, 0xFF, 0x00, 0x74, 0x0B, 0x83, 0xFE, 0x00, 0x74, 0x06, 0xB8, 0x02, 0, 0, 0, 0xC3,
        0xB8, 0x01, 0, 0, 0, 0xC3,
    ];

    #[test]
    fn a_shared_target_is_the_jump_count_minus_the_fall_through() {
        assert_eq!(
            find(&code(OR, &[]), BASE),
            [
                MachineBranch {
                    jump: 0x1003,
                    test: Test::Compare(Compare::Equal),
                    taken: Side::Rest {
                        whole: 0x1000,
                        other: 0x1005
                    },
                    not_taken: Side::At(0x1005),
                    wholes: vec![0x1000],
                },
                MachineBranch {
                    jump: 0x1008,
                    test: Test::Compare(Compare::Equal),
                    taken: Side::Rest {
                        whole: 0x1005,
                        other: 0x100a
                    },
                    not_taken: Side::At(0x100a),
                    wholes: vec![0x1005],
                },
            ]
        );
        // A landing pad at the second fall-through: neither side of that jump is its own, but the
        // shared target less the first jump's taken side is the second's.
        let found = find(&code(OR, &[0x100a]), BASE);
        assert_eq!(found[1].taken.addresses(), [0x1010, 0x1000, 0x1005]);
        assert!(!found[1].not_taken.addresses().contains(&0x100a));
    }

    #[test]
    fn sides_move_to_addresses_counted_anyway() {
        let branch = MachineBranch {
            jump: 0x1003,
            test: Test::Unknown,
            taken: Side::At(0x100c),
            not_taken: Side::At(0x1005),
            wholes: vec![0x1000, 0x1001],
        };
        // Nothing counted anyway: as found.
        assert_eq!(
            branch.cheapest(&|_| false),
            (Side::At(0x100c), Side::At(0x1005))
        );
        // The jump's count and the fall-through are counted anyway: the taken side becomes their
        // difference, and no address is added.
        let counted = |a: u64| a == 0x1001 || a == 0x1005;
        assert_eq!(
            branch.cheapest(&counted),
            (
                Side::Rest {
                    whole: 0x1001,
                    other: 0x1005
                },
                Side::At(0x1005)
            )
        );
        // A difference takes the jump's count where it is counted anyway.
        let rest = MachineBranch {
            taken: Side::Rest {
                whole: 0x1000,
                other: 0x1005,
            },
            ..branch.clone()
        };
        assert_eq!(
            rest.cheapest(&counted).0,
            Side::Rest {
                whole: 0x1001,
                other: 0x1005
            }
        );
        // First hits: the jump with two addresses of its own stays at them whatever is counted
        // anyway; one with a difference has none.
        assert_eq!(
            branch.own_sides(),
            Some((Side::At(0x100c), Side::At(0x1005)))
        );
        assert_eq!(rest.own_sides(), None);
    }

    // 0x1000 test dil,1; 0x1004 jne 0x100e; 0x1006 test sil,1; 0x100a jne 0x100e;
    // 0x100c jmp 0x1013; 0x100e mov eax,1 (5); 0x1013 ret: `if a || b { … }`.
    const OR_BODY: &[u8] = &[
        0x40, 0xF6, 0xC7, 0x01, 0x75, 0x08, 0x40, 0xF6, 0xC6, 0x01, 0x75, 0x02, 0xEB, 0x05, 0xB8,
        0x01, 0, 0, 0, 0xC3,
    ];

    #[test]
    fn a_target_only_jumps_share_gives_the_last_jump_what_the_others_leave() {
        let found = find(&code(OR_BODY, &[]), BASE);
        assert_eq!(found.len(), 2);
        assert_eq!(
            found[0].taken,
            Side::Rest {
                whole: 0x1000,
                other: 0x1006
            }
        );
        // `a` true once, then `b` true once and false once: the body ran twice.
        let counts = |a: u64| match a {
            0x1000 => 3,
            0x1006 => 2,
            0x100e => 2,
            _ => 0,
        };
        assert_eq!(found[0].taken.count(counts), 1);
        assert_eq!(found[1].jump, 0x100a);
        assert_eq!(found[1].taken.count(counts), 1);
        assert_eq!(found[1].not_taken.count(counts), 1);
        assert_eq!(found[1].taken.addresses(), [0x100e, 0x1000, 0x1006]);
        // A fall-through into the body too: its count is no longer the jumps' alone, so the
        // second jump is counted on its taken edge, the fall-through as the jump's count less it.
        let mut fall = OR_BODY.to_vec();
        fall[12..14].copy_from_slice(&[0x90, 0x90]); // the jmp becomes two nops
        let found = find(&code(&fall, &[]), BASE);
        assert_eq!(found.len(), 2);
        assert_eq!(found[1].jump, 0x100a);
        assert_eq!(found[1].taken, Side::At(edge(0x100a)));
        assert_eq!(
            found[1].not_taken,
            Side::Rest {
                whole: 0x1006,
                other: edge(0x100a)
            }
        );
        assert_eq!(found[1].own_sides(), None, "no first hits on an edge");
    }

    #[test]
    fn an_unconditional_jump_into_the_target_brings_its_runs_count() {
        // 0x1000 test dil,1; 0x1004 jne 0x100d; 0x1006 mov eax,2; 0x100b jmp 0x1012;
        // 0x100d mov eax,1; 0x1012 ret; 0x1013 mov ecx,3; 0x1018 nop; 0x1019 jmp 0x100d;
        // 0x101b jmp 0x1006: both sides of the jne have another way in.
        let body: &[u8] = &[
            0x40, 0xF6, 0xC7, 0x01, 0x75, 0x07, 0xB8, 0x02, 0, 0, 0, 0xEB, 0x05, 0xB8, 0x01, 0, 0,
            0, 0xC3, 0xB9, 0x03, 0, 0, 0, 0x90, 0xEB, 0xF2, 0xEB, 0xE9,
        ];
        let found = find(&code(body, &[]), BASE);
        let jne = found.iter().find(|b| b.jump == 0x1004).unwrap();
        // The target ran 5 times, 2 of them from the run that ends with the jmp at 0x1019.
        assert_eq!(jne.taken.addresses(), [0x100d, 0x1013]);
        let counts = |a: u64| match a {
            0x1000 => 7,
            0x100d => 5,
            0x1013 => 2,
            _ => 0,
        };
        assert_eq!(jne.taken.count(counts), 3);
        assert_eq!(jne.not_taken.count(counts), 4);
    }

    #[test]
    fn side_counts_subtract_saturating() {
        let counts = |a: u64| [5, 2][(a - 1) as usize];
        assert_eq!(Side::At(2).count(counts), 2);
        assert_eq!(Side::Rest { whole: 1, other: 2 }.count(counts), 3);
        assert_eq!(Side::Rest { whole: 2, other: 1 }.count(counts), 0);
        assert_eq!(Side::Rest { whole: 1, other: 2 }.addresses(), [1, 2]);
    }

    // 0x1000 add eax,ecx (2); 0x1002 jo 0x1005; 0x1004 ret; 0x1005 call 0x2000; 0x100a int3
    const OVERFLOW: &[u8] = &[0x01, 0xC8, 0x70, 0x01, 0xC3, 0xE8, 0xF6, 0x0F, 0, 0, 0xCC];

    #[test]
    fn jumps_to_check_panics_are_left_out() {
        assert!(find(
            &code(OVERFLOW, &[]).with_callee(0x2000, Callee::Check),
            BASE
        )
        .is_empty());
        // A call to anything else is a branch like any other.
        assert_eq!(find(&code(OVERFLOW, &[]), BASE).len(), 1);
        // Also through a register loaded from the GOT: `mov rax, [rip+slot]; call rax`.
        let through_got = [
            0x01, 0xC8, 0x70, 0x01, 0xC3, 0x48, 0x8B, 0x05, 0xF4, 0x0F, 0, 0, 0xFF, 0xD0, 0xCC,
        ];
        let code_got = code(&through_got, &[]).with_got(0x2000, 0x3000);
        assert_eq!(find(&code_got, BASE).len(), 1);
        assert!(find(&code_got.with_callee(0x3000, Callee::Check), BASE).is_empty());
        // ud2 too.
        let mut ud2 = OVERFLOW.to_vec();
        ud2.splice(5..10, [0x0F, 0x0B, 0x90, 0x90, 0x90]);
        assert!(find(&code(&ud2, &[]), BASE).is_empty());
    }

    // 0x1000 test byte [rsp+8],1 (5); 0x1005 jne 0x1008; 0x1007 ret; 0x1008 call 0x2000; 0x100d ret
    const DROP_FLAG: &[u8] = &[
        0xF6, 0x44, 0x24, 0x08, 0x01, 0x75, 0x01, 0xC3, 0xE8, 0xF3, 0x0F, 0, 0, 0xC3,
    ];

    #[test]
    fn drop_flags_are_left_out() {
        assert!(find(
            &code(DROP_FLAG, &[]).with_callee(0x2000, Callee::Drop),
            BASE
        )
        .is_empty());
        // A flag in a register is a source bool: `if b { drop(x) }` stays, taken when true.
        let mut register = DROP_FLAG.to_vec();
        register.splice(0..5, [0x90, 0x90, 0x90, 0xA8, 0x01]); // nops; test al,1
        let found = find(
            &code(&register, &[]).with_callee(0x2000, Callee::Drop),
            BASE,
        );
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].test, Test::NonZero(true));
        // The side that calls `from_residual` is a `?`'s early return.
        let found = find(
            &code(&register, &[]).with_callee(0x2000, Callee::Residual),
            BASE,
        );
        assert_eq!(found[0].test, Test::Residual(true));
    }

    #[test]
    fn comparisons_invert_and_swap() {
        for c in [Compare::Less, Compare::Equal, Compare::GreaterEqual] {
            assert_eq!(c.inverse().inverse(), c);
            assert_eq!(c.swapped().swapped(), c);
        }
        assert_eq!(Compare::Less.swapped(), Compare::Greater);
        assert_eq!(Compare::Less.inverse(), Compare::GreaterEqual);
    }

    // 0x1000 call 0x2000; 0x1005 test al,1; 0x1007 jne 0x100e; 0x1009 mov eax,2 (5); 0x100e ret:
    // `if f() {}` with the join after the body.
    const AFTER_CALL: &[u8] = &[
        0xE8, 0xFB, 0x0F, 0, 0, 0xA8, 0x01, 0x75, 0x05, 0xB8, 0x02, 0, 0, 0, 0xC3,
    ];

    #[test]
    fn a_run_too_short_for_a_jump_is_counted_before_the_call_that_computes_the_condition() {
        assert_eq!(
            find(&code(AFTER_CALL, &[]), BASE),
            [MachineBranch {
                jump: 0x1007,
                test: Test::NonZero(true),
                taken: Side::Rest {
                    whole: 0x1000,
                    other: 0x1009
                },
                not_taken: Side::At(0x1009),
                wholes: vec![],
            }]
        );
    }

    // 0x1000 call 0x2000; 0x1005 ret; 0x1006 cmp edi,0 (3, a landing pad); 0x1009 je 0x100c;
    // 0x100b ret; 0x100c ret
    const CLEANUP: &[u8] = &[
        0xE8, 0xFB, 0x0F, 0, 0, 0xC3, 0x83, 0xFF, 0x00, 0x74, 0x01, 0xC3, 0xC3,
    ];

    #[test]
    fn jumps_only_unwinding_reaches_are_left_out() {
        assert!(find(&code(CLEANUP, &[0x1006]), BASE).is_empty());
    }

    #[test]
    fn an_unknown_indirect_jump_leaves_the_function_out() {
        // jmp rax before the if/else: any instruction may be entered.
        let mut bytes = vec![0xFF, 0xE0];
        bytes.extend_from_slice(IF_ELSE);
        assert!(find(&code(&bytes, &[]), BASE).is_empty());
    }
}
