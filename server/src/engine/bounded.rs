//! Breakpoints that need no counter: another breakpoint of their group (for the planner, one line
//! in one function instance, whose count is that of its busiest breakpoint) always runs first.
//!
//! Breakpoint `x` runs at most as often as `y` when `y` dominates `x` in the function's flow graph
//! (every way in, from the entry or a landing pad, passes `y`) and every cycle through `x` passes
//! `y`: then each run of `x` follows a run of `y` since its own last run, in the same call of the
//! function. A loop's `match` that tests its value in several blocks of the pattern's line, or a
//! statement whose row comes back after a later one's, then costs one counter, not several.

use std::collections::{HashMap, HashSet};

use iced_x86::FlowControl;

use super::sites::{patchable, ExeCode, Function};

/// Changes whenever [`bounded`] may decide otherwise for the same code, so that cached results
/// of an older version are not reused.
pub const VERSION: u32 = 1;

/// For each breakpoint, whether another of its group (`groups[i]`; `None`: in no group, always
/// counted) runs at least as often, so that the group's busiest count needs no counter of its own.
/// A breakpoint kept for its group is one a trampoline can count, so the group keeps exact counts.
/// `addresses` are link-time and sorted.
pub fn bounded(code: &ExeCode, addresses: &[u64], groups: &[Option<u32>]) -> Vec<bool> {
    let mut result = vec![false; addresses.len()];
    let mut by_function: HashMap<(u64, u64), Vec<usize>> = HashMap::new();
    for (i, &address) in addresses.iter().enumerate() {
        if groups[i].is_some() {
            if let Some(range) = code.function(address) {
                by_function.entry(range).or_default().push(i);
            }
        }
    }
    for (range, members) in by_function {
        let mut by_group: HashMap<u32, Vec<usize>> = HashMap::new();
        for &i in &members {
            by_group
                .entry(groups[i].expect("grouped"))
                .or_default()
                .push(i);
        }
        by_group.retain(|_, m| m.len() > 1);
        if by_group.is_empty() {
            continue;
        }
        let Some(function) = Function::decode(code, range) else {
            continue;
        };
        let Some(graph) = Graph::new(code, &function, range, &members, addresses) else {
            continue;
        };
        for group in by_group.values() {
            for &x in group {
                let bounded_by = |&y: &usize| {
                    y != x
                        && graph.bounds(addresses[y], addresses[x])
                        && patchable(code, &function, addresses[y])
                };
                result[x] = group.iter().any(bounded_by);
            }
        }
    }
    result
}

/// A function's flow graph: blocks, each starting at a leader, with node 0 standing before the
/// entry and every landing pad.
struct Graph {
    /// Block starts, sorted; node `k + 1` is the block at `starts[k]`.
    starts: Vec<u64>,
    successors: Vec<Vec<usize>>,
    /// Immediate dominator per node (node 0 is its own).
    idom: Vec<usize>,
}

impl Graph {
    /// `None` when some jump's targets are not all known.
    fn new(
        code: &ExeCode,
        function: &Function,
        (start, end): (u64, u64),
        members: &[usize],
        addresses: &[u64],
    ) -> Option<Graph> {
        let targets = function.targets.as_ref()?;
        let instructions = &function.instructions;
        let is_start: HashSet<u64> = instructions.iter().map(|i| i.ip()).collect();
        let pads: Vec<u64> = code.landing_pads_within(start, end)?;
        let mut leaders: Vec<u64> = vec![start];
        leaders.extend(targets.iter().copied());
        leaders.extend(&pads);
        leaders.extend(members.iter().map(|&i| addresses[i]));
        for instruction in instructions {
            if instruction.flow_control() != FlowControl::Next {
                leaders.push(instruction.next_ip());
            }
        }
        leaders.retain(|a| is_start.contains(a));
        leaders.sort_unstable();
        leaders.dedup();
        let node = |address: u64| leaders.binary_search(&address).ok().map(|k| k + 1);
        let mut successors = vec![Vec::new(); leaders.len() + 1];
        successors[0] = std::iter::once(start)
            .chain(pads)
            .filter_map(node)
            .collect();
        for (k, &leader) in leaders.iter().enumerate() {
            let block_end = leaders.get(k + 1).copied().unwrap_or(end);
            let first = instructions.partition_point(|i| i.ip() < leader);
            let last = instructions[first..]
                .iter()
                .take_while(|i| i.ip() < block_end)
                .last()?;
            let through = node(last.next_ip());
            let out = &mut successors[k + 1];
            match last.flow_control() {
                FlowControl::Next
                | FlowControl::Call
                | FlowControl::IndirectCall
                | FlowControl::XbeginXabortXend => out.extend(through),
                FlowControl::ConditionalBranch => {
                    out.extend(through);
                    out.extend(node(last.near_branch_target()));
                }
                FlowControl::UnconditionalBranch => out.extend(node(last.near_branch_target())),
                FlowControl::IndirectBranch => {
                    out.extend(function.table_targets.iter().filter_map(|&t| node(t)))
                }
                FlowControl::Return | FlowControl::Interrupt | FlowControl::Exception => {}
            }
        }
        let idom = dominators(&successors);
        Some(Graph {
            starts: leaders,
            successors,
            idom,
        })
    }

    fn node(&self, address: u64) -> Option<usize> {
        self.starts.binary_search(&address).ok().map(|k| k + 1)
    }

    /// Whether the block at `x` runs at most as often as the one at `y`.
    fn bounds(&self, y: u64, x: u64) -> bool {
        let (Some(y), Some(x)) = (self.node(y), self.node(x)) else {
            return false;
        };
        self.dominates(y, x) && !self.cycles_around(x, y)
    }

    fn dominates(&self, y: usize, mut x: usize) -> bool {
        // Unreachable nodes have no dominator chain: say no.
        if self.idom[x] == usize::MAX {
            return false;
        }
        while x != 0 {
            if x == y {
                return true;
            }
            x = self.idom[x];
        }
        false
    }

    /// Whether control can leave `x` and come back to it without passing `y`.
    fn cycles_around(&self, x: usize, y: usize) -> bool {
        let mut seen = vec![false; self.successors.len()];
        let mut stack: Vec<usize> = self.successors[x].clone();
        while let Some(n) = stack.pop() {
            if n == x {
                return true;
            }
            if n == y || seen[n] {
                continue;
            }
            seen[n] = true;
            stack.extend(&self.successors[n]);
        }
        false
    }
}

/// Immediate dominators from node 0 (Cooper, Harvey and Kennedy's iteration over reverse
/// postorder); `usize::MAX` for nodes node 0 does not reach.
fn dominators(successors: &[Vec<usize>]) -> Vec<usize> {
    let n = successors.len();
    let mut order = Vec::with_capacity(n);
    let mut visited = vec![false; n];
    let mut stack = vec![(0usize, 0usize)];
    visited[0] = true;
    while let Some((node, next)) = stack.pop() {
        if let Some(&s) = successors[node].get(next) {
            stack.push((node, next + 1));
            if !visited[s] {
                visited[s] = true;
                stack.push((s, 0));
            }
        } else {
            order.push(node);
        }
    }
    order.reverse();
    let mut rank = vec![usize::MAX; n];
    for (r, &node) in order.iter().enumerate() {
        rank[node] = r;
    }
    let mut predecessors = vec![Vec::new(); n];
    for (node, out) in successors.iter().enumerate() {
        for &s in out {
            predecessors[s].push(node);
        }
    }
    let mut idom = vec![usize::MAX; n];
    idom[0] = 0;
    let intersect = |idom: &[usize], mut a: usize, mut b: usize| {
        while a != b {
            while rank[a] > rank[b] {
                a = idom[a];
            }
            while rank[b] > rank[a] {
                b = idom[b];
            }
        }
        a
    };
    let mut changed = true;
    while changed {
        changed = false;
        for &node in order.iter().skip(1) {
            let mut new = usize::MAX;
            for &p in &predecessors[node] {
                if idom[p] == usize::MAX {
                    continue;
                }
                new = if new == usize::MAX {
                    p
                } else {
                    intersect(&idom, p, new)
                };
            }
            if new != idom[node] {
                idom[node] = new;
                changed = true;
            }
        }
    }
    idom
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: u64 = 0x1000;

    fn code(bytes: &[u8], pads: &[u64]) -> ExeCode {
        ExeCode::one_function(BASE, bytes, pads)
    }

    // A loop: the head (0x1000) calls, then tests twice for the same line (0x100a and 0x1011,
    // both line A), with a body in between (0x100f, line B), and jumps back.
    //   1000: mov eax,1 (5)          ; A, head
    //   1005: call 0x1100 (5)
    //   100a: cmp eax,0 / 83 F8 00 (3) ; A again, reached only from the head
    //   100d: je 0x101a (2)
    //   100f: nop (1)
    //   1010: nop (1)
    //   1011: cmp eax,1 (3)          ; A again
    //   1014: jne 0x1000 (2)
    //   1016: jmp 0x1000 (2)
    //   1018: int3; int3
    //   101a: ret
    const LOOP: [u8; 27] = [
        0xB8, 0x01, 0, 0, 0, //
        0xE8, 0xF6, 0x00, 0, 0, //
        0x83, 0xF8, 0x00, //
        0x74, 0x0B, //
        0x90, //
        0x90, //
        0x83, 0xF8, 0x01, //
        0x75, 0xEA, //
        0xEB, 0xE8, //
        0xCC, 0xCC, //
        0xC3,
    ];

    #[test]
    fn rows_after_the_head_of_their_line_in_a_loop_need_no_counter() {
        let code = code(&LOOP, &[]);
        let addresses = [0x1000, 0x100a, 0x100f, 0x1011];
        let groups = [Some(0), Some(0), Some(1), Some(0)];
        assert_eq!(
            bounded(&code, &addresses, &groups),
            [false, true, false, true]
        );
    }

    #[test]
    fn a_row_that_a_way_in_reaches_first_is_counted() {
        // The same loop, but the head's row is a line of its own: 0x100a and 0x1011 of line A
        // each run once per pass; 0x100a dominates 0x1011.
        let code = code(&LOOP, &[]);
        let addresses = [0x1000, 0x100a, 0x1011];
        let groups = [Some(1), Some(0), Some(0)];
        assert_eq!(bounded(&code, &addresses, &groups), [false, false, true]);
        // Without a group nothing is left uncounted.
        assert_eq!(
            bounded(&code, &addresses, &[None, None, Some(0)]),
            [false; 3]
        );
    }

    #[test]
    fn a_landing_pad_is_a_way_in() {
        // 0x100f can be entered by the unwinder: 0x100a no longer bounds it; 0x1011 stays bounded
        // by 0x100f (every way to it passes 0x100f, the pad included).
        let code = code(&LOOP, &[0x100f]);
        let addresses = [0x1000, 0x100a, 0x100f, 0x1011];
        let groups = [Some(1), Some(0), Some(0), Some(0)];
        assert_eq!(
            bounded(&code, &addresses, &groups),
            [false, false, false, true]
        );
    }

    #[test]
    fn a_row_on_a_cycle_that_skips_the_other_is_counted() {
        // 0x1000 dominates 0x100f, and every cycle through 0x100f comes back by 0x1000:
        // bounded. The other way round, 0x100f does not dominate 0x1000.
        let code = code(&LOOP, &[]);
        let addresses = [0x1000, 0x100f];
        assert_eq!(
            bounded(&code, &addresses, &[Some(0), Some(0)]),
            [false, true]
        );
        // A loop inside the group's later row: 0x1011's jne goes back to 0x1011 itself
        // (75 FB), so it can run many times per run of 0x100a.
        let mut inner = LOOP;
        inner[0x15] = 0xFB;
        let code = super::tests::code(&inner, &[]);
        let addresses = [0x100a, 0x1011];
        assert_eq!(
            bounded(&code, &addresses, &[Some(0), Some(0)]),
            [false, false]
        );
    }

    #[test]
    fn dominators_of_a_diamond() {
        // 0 → 1; 1 → 2, 3; 2 → 4; 3 → 4.
        let successors = vec![vec![1], vec![2, 3], vec![4], vec![4], vec![], vec![4]];
        let idom = dominators(&successors);
        assert_eq!(&idom[..5], &[0, 0, 1, 1, 1]);
        assert_eq!(idom[5], usize::MAX, "unreachable");
    }
}
