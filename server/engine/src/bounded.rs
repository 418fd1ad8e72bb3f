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
/// `addresses` are link-time and sorted; functions are looked at `jobs` at a time.
pub fn bounded(
    code: &ExeCode,
    addresses: &[u64],
    groups: &[Option<u32>],
    jobs: usize,
) -> Vec<bool> {
    let mut by_function: HashMap<(u64, u64), Vec<usize>> = HashMap::new();
    for (i, &address) in addresses.iter().enumerate() {
        if groups[i].is_some() {
            if let Some(range) = code.function(address) {
                by_function.entry(range).or_default().push(i);
            }
        }
    }
    // Only a function with two breakpoints of one group can leave one out.
    let work: Vec<((u64, u64), Vec<usize>)> = by_function
        .into_iter()
        .filter(|(_, members)| {
            let mut seen = HashSet::new();
            !members.iter().all(|&i| seen.insert(groups[i]))
        })
        .collect();
    let found = crate::parallel::map(&work, jobs, |(range, members)| {
        bounded_in(code, *range, members, addresses, groups)
    });
    let mut result = vec![false; addresses.len()];
    for i in found.into_iter().flatten() {
        result[i] = true;
    }
    result
}

/// The breakpoints of one function (`members`) that another of their group bounds.
fn bounded_in(
    code: &ExeCode,
    range: (u64, u64),
    members: &[usize],
    addresses: &[u64],
    groups: &[Option<u32>],
) -> Vec<usize> {
    let Some(function) = code.decoded(range) else {
        return Vec::new();
    };
    let Some(graph) = Graph::new(code, &function, range, members, addresses) else {
        return Vec::new();
    };
    let mut at_node: Vec<Option<usize>> = vec![None; graph.successors.len()];
    for &i in members {
        if let Some(node) = graph.node(addresses[i]) {
            at_node[node] = Some(i);
        }
    }
    let mut movable: HashMap<usize, bool> = HashMap::new();
    let mut found = Vec::new();
    for &x in members {
        let Some(x_node) = graph.node(addresses[x]) else {
            continue;
        };
        // Only the nearest dominator of the group can do: a cycle that avoids it avoids every
        // dominator above it too (all of the cycle lies below it). One a trampoline cannot serve
        // is passed over for the next.
        let mut n = x_node;
        while let Some(up) = graph.idom(n) {
            n = up;
            let Some(y) = at_node[n].filter(|&y| groups[y] == groups[x]) else {
                continue;
            };
            if *movable
                .entry(y)
                .or_insert_with(|| patchable(code, &function, addresses[y]))
            {
                if !graph.cycles_around(x_node, n) {
                    found.push(x);
                }
                break;
            }
        }
    }
    found
}

/// A function's flow graph: blocks, each starting at a leader, with node 0 standing before the
/// entry and every landing pad.
struct Graph {
    /// Block starts, sorted; node `k + 1` is the block at `starts[k]`.
    starts: Vec<u64>,
    successors: Vec<Vec<usize>>,
    /// Immediate dominator per node (node 0 is its own; `usize::MAX` for unreachable nodes).
    idom: Vec<usize>,
    /// Per node, its interval in a preorder walk of the dominator tree: `a` dominates `b` when
    /// `b`'s interval lies within `a`'s.
    order: Vec<(u32, u32)>,
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
        let is_start = |a: &u64| instructions.binary_search_by_key(a, |i| i.ip()).is_ok();
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
        leaders.retain(is_start);
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
        let order = tree_order(&idom);
        Some(Graph {
            starts: leaders,
            successors,
            idom,
            order,
        })
    }

    fn node(&self, address: u64) -> Option<usize> {
        self.starts.binary_search(&address).ok().map(|k| k + 1)
    }

    /// The immediate dominator of a reachable node other than node 0.
    fn idom(&self, node: usize) -> Option<usize> {
        Some(self.idom[node]).filter(|&d| node != 0 && d != usize::MAX)
    }

    fn dominates(&self, a: usize, b: usize) -> bool {
        let ((a_in, a_out), (b_in, b_out)) = (self.order[a], self.order[b]);
        a_in <= b_in && b_out <= a_out && b_out != 0
    }

    /// Whether control can leave `x` and come back to it without passing `y`, which dominates
    /// it: such a cycle lies among the nodes `y` dominates, so only those are searched.
    fn cycles_around(&self, x: usize, y: usize) -> bool {
        let mut seen = vec![false; self.successors.len()];
        let mut stack: Vec<usize> = self.successors[x].clone();
        while let Some(n) = stack.pop() {
            if n == x {
                return true;
            }
            if n == y || seen[n] || !self.dominates(y, n) {
                continue;
            }
            seen[n] = true;
            stack.extend(&self.successors[n]);
        }
        false
    }
}

/// Preorder intervals of the dominator tree (`Graph::order`); `(0, 0)` for unreachable nodes.
fn tree_order(idom: &[usize]) -> Vec<(u32, u32)> {
    let mut children = vec![Vec::new(); idom.len()];
    for (node, &parent) in idom.iter().enumerate().skip(1) {
        if parent != usize::MAX {
            children[parent].push(node);
        }
    }
    let mut order = vec![(0, 0); idom.len()];
    let mut clock = 0;
    let mut stack = vec![(0usize, false)];
    while let Some((node, done)) = stack.pop() {
        clock += 1;
        if done {
            order[node].1 = clock;
            continue;
        }
        order[node].0 = clock;
        stack.push((node, true));
        stack.extend(children[node].iter().map(|&c| (c, false)));
    }
    order
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
            bounded(&code, &addresses, &groups, 1),
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
        assert_eq!(bounded(&code, &addresses, &groups, 1), [false, false, true]);
        // Without a group nothing is left uncounted.
        assert_eq!(
            bounded(&code, &addresses, &[None, None, Some(0)], 2),
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
            bounded(&code, &addresses, &groups, 1),
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
            bounded(&code, &addresses, &[Some(0), Some(0)], 1),
            [false, true]
        );
        // A loop inside the group's later row: 0x1011's jne goes back to 0x1011 itself
        // (75 FB), so it can run many times per run of 0x100a.
        let mut inner = LOOP;
        inner[0x15] = 0xFB;
        let code = super::tests::code(&inner, &[]);
        let addresses = [0x100a, 0x1011];
        assert_eq!(
            bounded(&code, &addresses, &[Some(0), Some(0)], 1),
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
