//! Counts around a conditional jump without trampolines. Where both sides run straight on to the
//! same code and nothing else enters it, that code runs as often as the jump (the statement after
//! an `if … else`); where both sides are entered only through the jump, a side runs as often as
//! the jump less the other side (the `then` block as the `if` less the `else` block).

use std::collections::HashMap;

use iced_x86::{FlowControl, OpKind};

use super::branches::is_check_call;
use super::sites::{falls_through, straight, ExeCode, Function, Site};

/// The decoded function that holds the breakpoints being looked at, with what was found in it.
struct Current<T> {
    range: (u64, u64),
    function: Option<Function>,
    found: T,
}

impl<T: Default> Current<T> {
    /// The function `range` and what `find` finds in it, decoded once for its breakpoints.
    fn of<'a>(
        current: &'a mut Option<Current<T>>,
        code: &ExeCode,
        range: (u64, u64),
        find: impl FnOnce(&Function) -> T,
    ) -> Option<(&'a Function, &'a T)> {
        if current.as_ref().is_none_or(|c| c.range != range) {
            let function = Function::decode(code, range);
            let found = function.as_ref().map(find).unwrap_or_default();
            *current = Some(Current {
                range,
                function,
                found,
            });
        }
        let current = current.as_ref()?;
        Some((current.function.as_ref()?, &current.found))
    }
}

/// How control enters the instructions of one function.
struct Ways<'f> {
    code: &'f ExeCode,
    function: &'f Function,
    /// Direct jumps (conditional or not) to each address.
    jumps_to: HashMap<u64, u32>,
}

impl<'f> Ways<'f> {
    fn new(code: &'f ExeCode, function: &'f Function) -> Ways<'f> {
        let mut jumps_to: HashMap<u64, u32> = HashMap::new();
        for i in &function.instructions {
            if matches!(
                i.flow_control(),
                FlowControl::ConditionalBranch | FlowControl::UnconditionalBranch
            ) {
                *jumps_to.entry(i.near_branch_target()).or_default() += 1;
            }
        }
        Ways {
            code,
            function,
            jumps_to,
        }
    }

    /// The index of the instruction that starts at `ip`.
    fn index(&self, ip: u64) -> Option<usize> {
        let instructions = &self.function.instructions;
        let k = instructions.partition_point(|i| i.ip() < ip);
        instructions.get(k).filter(|i| i.ip() == ip).map(|_| k)
    }

    fn jumps(&self, ip: u64) -> u32 {
        self.jumps_to.get(&ip).copied().unwrap_or(0)
    }

    /// How many ways lead into the instruction at `ip` (direct jumps, and the instruction before
    /// falling in); `None` when a jump table or the unwinder may enter it, when the function
    /// jumps through a register in a way not understood (anything may be entered), or when no
    /// instruction starts there.
    fn entering(&self, ip: u64) -> Option<u32> {
        if self.function.targets.is_none()
            || self.function.table_targets.contains(&ip)
            || self.code.is_landing_pad(ip)
        {
            return None;
        }
        let k = self.index(ip)?;
        // A check's panic never returns: the code after its call is no way in.
        let instructions = &self.function.instructions;
        let falls_in = k.checked_sub(1).is_some_and(|before| {
            falls_through(&instructions[before]) && !is_check_call(self.code, instructions, before)
        });
        Some(self.jumps(ip) + u32::from(falls_in))
    }
}

/// How many breakpoints before a jump are tried as the one that counts it.
const MAX_ANCHORS: usize = 8;
/// Longest path, in instructions, from a side's start to where the sides meet again.
const MAX_PATH: usize = 64;

/// Lets a jump site where both sides of a conditional jump meet again take its count from the
/// breakpoint that runs straight on to the jump: each side runs straight on to it (no branch,
/// nothing entering, no call that may unwind, unconditional jumps followed), and these two ways
/// are all the ways into it. Whatever took its count from it takes the breakpoint's instead.
pub(crate) fn count_joins(code: &ExeCode, addresses: &[u64], sites: &mut [Site]) {
    let mut current: Option<Current<HashMap<u64, u64>>> = None;
    for b in 0..addresses.len() {
        if !matches!(sites[b], Site::Jump { taken: None, .. }) {
            continue;
        }
        let address = addresses[b];
        let Some(range) = code.function(address) else {
            continue;
        };
        let Some((function, joins)) =
            Current::of(&mut current, code, range, |function| joins(code, function))
        else {
            continue;
        };
        let Some(&jump) = joins.get(&address) else {
            continue;
        };
        let before = addresses.partition_point(|&a| a <= jump);
        let anchor = (0..before)
            .rev()
            .take_while(|&k| addresses[k] >= range.0)
            .take(MAX_ANCHORS)
            .find_map(|k| {
                let by = match sites[k] {
                    Site::Jump { .. } => k,
                    Site::Covered { by } => by as usize,
                    _ => return None,
                };
                (by != b && (addresses[k] == jump || straight(code, function, addresses[k], jump)))
                    .then_some(by)
            });
        let Some(by) = anchor else {
            continue;
        };
        // `b` counts exactly as `by`: everything derived from it is derived from `by` now.
        let Site::Jump { also, .. } =
            std::mem::replace(&mut sites[b], Site::Covered { by: by as u32 })
        else {
            unreachable!("checked above");
        };
        for site in sites.iter_mut() {
            site.rename_input(b as u32, by as u32);
        }
        if let Site::Jump { also: by_also, .. } = &mut sites[by] {
            by_also.push(b as u32);
            by_also.extend(also);
        }
    }
}

/// Where the two sides of a conditional jump of `function` meet again, when each runs straight on
/// to it and nothing else enters it: that address, mapped to the jump.
fn joins(code: &ExeCode, function: &Function) -> HashMap<u64, u64> {
    let instructions = &function.instructions;
    let ways = Ways::new(code, function);
    let at = |ip: u64| ways.index(ip);
    let ways_in = |ip: u64| ways.entering(ip);
    // Where the code from `start` (entered only by the one way that led there) goes straight on
    // to a place with more ways in.
    let meets = |start: u64| -> Option<u64> {
        if ways_in(start)? > 1 {
            return Some(start);
        }
        let mut k = at(start)?;
        for _ in 0..MAX_PATH {
            let instruction = &instructions[k];
            let next = match instruction.flow_control() {
                FlowControl::Next => instruction.next_ip(),
                FlowControl::Call | FlowControl::IndirectCall => {
                    let returns = code.call_target(instruction).is_some_and(|target| {
                        code.call_map()
                            .is_some_and(|calls| calls.cannot_unwind(target))
                    });
                    if !returns {
                        return None;
                    }
                    instruction.next_ip()
                }
                FlowControl::UnconditionalBranch
                    if instruction.op0_kind() == OpKind::NearBranch64 =>
                {
                    instruction.near_branch_target()
                }
                _ => return None,
            };
            match ways_in(next)? {
                0 => return None,
                1 if instruction.flow_control() == FlowControl::UnconditionalBranch => {
                    k = at(next)?
                }
                1 => k += 1,
                _ => return Some(next),
            }
        }
        None
    };
    let mut joins = HashMap::new();
    for jump in instructions {
        if !jump.is_jcc_short_or_near() || jump.near_branch_target() == jump.next_ip() {
            continue;
        }
        let (Some(taken), Some(fall)) = (meets(jump.near_branch_target()), meets(jump.next_ip()))
        else {
            continue;
        };
        if taken == fall && ways_in(taken) == Some(2) {
            joins.insert(taken, jump.ip());
        }
    }
    joins
}

/// Turns jump sites into [`Site::Rest`] where the code allows: the breakpoint is one side of a
/// conditional jump that only that jump enters, the other side is a breakpoint of its own that
/// only the jump enters too, and a breakpoint runs straight on to the jump (no branch, nothing
/// entering, no call that may unwind in between). The two inputs may be derived themselves, but
/// never from this breakpoint.
pub(crate) fn count_by_difference(code: &ExeCode, addresses: &[u64], sites: &mut [Site]) {
    let mut current: Option<Current<HashMap<u64, (u64, u64)>>> = None;
    for f in 0..addresses.len() {
        if !matches!(sites[f], Site::Jump { taken: None, .. }) {
            continue;
        }
        let address = addresses[f];
        let Some(range) = code.function(address) else {
            continue;
        };
        // A side is counted at the first breakpoint that its start runs straight on to.
        let first = |function: &Function, start: u64| {
            let b = *addresses.get(addresses.partition_point(|&a| a < start))?;
            (b == start || straight(code, function, start, b)).then_some(b)
        };
        let Some((function, sides)) = Current::of(&mut current, code, range, |function| {
            exclusive_sides(code, function)
                .into_iter()
                .filter_map(|(side, (jump, other))| {
                    Some((first(function, side)?, (jump, first(function, other)?)))
                })
                .collect()
        }) else {
            continue;
        };
        let Some(&(jump, other)) = sides.get(&address) else {
            continue;
        };
        let Ok(o) = addresses.binary_search(&other) else {
            continue;
        };
        // Neither input may take its count from this one: the counts are derived in order.
        let usable = |k: usize| lane_counted(&sites[k]) && !depends_on(sites, k, f);
        if !usable(o) {
            continue;
        }
        let before = addresses.partition_point(|&a| a <= jump);
        let anchor = (0..before)
            .rev()
            .take_while(|&k| addresses[k] >= range.0)
            .take(MAX_ANCHORS)
            .filter(|&k| k != o && k != f)
            .find(|&k| {
                usable(k) && (addresses[k] == jump || straight(code, function, addresses[k], jump))
            });
        if let Some(k) = anchor {
            sites[f] = Site::Rest {
                whole: k as u32,
                minus: o as u32,
            };
        }
    }
}

/// For the conditional jumps of `function` whose two sides are each entered only through the
/// jump: per side, the address that starts the code that runs exactly as often as that side is
/// taken (its first instruction, or where the unconditional jump there leads when only it goes
/// there), mapped to (the jump, the other side's such address).
fn exclusive_sides(code: &ExeCode, function: &Function) -> HashMap<u64, (u64, u64)> {
    let instructions = &function.instructions;
    let ways = Ways::new(code, function);
    let at = |ip: u64| ways.index(ip);
    // Entered by its one jump only.
    let only_jumped_to = |target: u64| ways.entering(target) == Some(1) && ways.jumps(target) == 1;
    // Where the side that starts at `start` is counted, given that only the jump enters it.
    let counted_at = |start: u64| -> Option<u64> {
        let jump = &instructions[at(start)?];
        if jump.flow_control() == FlowControl::UnconditionalBranch
            && jump.op0_kind() == OpKind::NearBranch64
            && only_jumped_to(jump.near_branch_target())
        {
            return Some(jump.near_branch_target());
        }
        Some(start)
    };
    let mut sides = HashMap::new();
    for jump in instructions {
        if !jump.is_jcc_short_or_near() || jump.near_branch_target() == jump.next_ip() {
            continue;
        }
        let (target, next) = (jump.near_branch_target(), jump.next_ip());
        if !only_jumped_to(target) || ways.entering(next) != Some(1) {
            continue;
        }
        let (Some(taken), Some(fall)) = (counted_at(target), counted_at(next)) else {
            continue;
        };
        if taken != fall {
            sides.insert(taken, (jump.ip(), fall));
            sides.insert(fall, (jump.ip(), taken));
        }
    }
    sides
}

/// Whether a breakpoint's count is kept in the counter lanes: a trampoline's counter or derived
/// from such counters.
fn lane_counted(site: &Site) -> bool {
    matches!(
        site,
        Site::Jump { .. } | Site::Covered { .. } | Site::Called { .. } | Site::Rest { .. }
    )
}

/// Whether breakpoint `k`'s count is derived, directly or not, from breakpoint `of`'s.
fn depends_on(sites: &[Site], k: usize, of: usize) -> bool {
    let mut work = vec![k];
    let mut seen = std::collections::HashSet::new();
    while let Some(k) = work.pop() {
        if k == of {
            return true;
        }
        if seen.insert(k) {
            work.extend(sites[k].inputs().into_iter().map(|i| i as usize));
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use crate::engine::sites::{classify, derivation_order, derive_counts, ExeCode, Site};

    // `if a { 1 } else { 2 }; 3`:
    // 0x1000 test dil,1 (4); 0x1004 jne 0x100d (2); 0x1006 mov eax,1 (5); 0x100b jmp 0x1012 (2);
    // 0x100d mov eax,2 (5); 0x1012 mov ecx,3 (5); 0x1017 ret.
    const DIAMOND: &[u8] = &[
        0x40, 0xF6, 0xC7, 0x01, 0x75, 0x07, 0xB8, 0x01, 0, 0, 0, 0xEB, 0x05, 0xB8, 0x02, 0, 0, 0,
        0xB9, 0x03, 0, 0, 0, 0xC3,
    ];

    fn code(bytes: &[u8]) -> ExeCode {
        ExeCode::for_test(
            vec![(0x1000, bytes.to_vec())],
            vec![(0x1000, 0x1000 + bytes.len() as u64)],
            &[],
        )
    }

    #[test]
    fn around_a_jump_one_side_and_the_join_need_no_trampoline() {
        let addresses = [0x1000, 0x1006, 0x100d, 0x1012];
        let sites = classify(&code(DIAMOND), &addresses, &[false; 4]);
        assert!(matches!(sites[0], Site::Jump { .. }), "{sites:?}");
        assert_eq!(sites[1], Site::Rest { whole: 0, minus: 2 }, "the then side");
        assert!(
            matches!(sites[2], Site::Jump { .. }),
            "the else side counts itself"
        );
        assert_eq!(sites[3], Site::Covered { by: 0 }, "where both sides meet");
        // The `if` ran 10 times, the else side 3.
        let mut values = vec![10, 0, 3, 0];
        derive_counts(&sites, &derivation_order(&sites), &mut values);
        assert_eq!(values, [10, 7, 3, 10]);
    }

    #[test]
    fn another_way_in_keeps_the_counters() {
        // A jump from elsewhere into the join (0x1018 jmp 0x1012) and into the else side
        // (0x101a jmp 0x100d): neither derivation holds.
        let mut bytes = DIAMOND.to_vec();
        bytes.extend_from_slice(&[0xEB, 0xF8, 0xEB, 0xF1]);
        let addresses = [0x1000, 0x1006, 0x100d, 0x1012];
        let sites = classify(&code(&bytes), &addresses, &[false; 4]);
        assert!(
            sites.iter().all(|s| matches!(s, Site::Jump { .. })),
            "{sites:?}"
        );
        // A trap at the jump's block: nothing to derive from.
        let sites = classify(&code(DIAMOND), &addresses, &[true, false, false, false]);
        assert_eq!(sites[0], Site::Trap);
        assert!(
            sites[1..].iter().all(|s| matches!(s, Site::Jump { .. })),
            "{sites:?}"
        );
    }
}
