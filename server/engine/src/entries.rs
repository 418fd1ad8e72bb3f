//! Function entries counted at their callers: a function entered only by direct calls (or tail
//! jumps), each run straight on from a counted breakpoint, takes its count from those breakpoints.

use std::collections::{HashMap, HashSet};

use super::calls::CallMap;
use super::sites::{straight, ExeCode, Site};

/// Most callers' counts one derived count sums (an anchor listed once per call).
const MAX_CALLERS: usize = 1024;

/// Lets each function entry with a trampoline of its own (and the breakpoints that derive their
/// counts from it) take its count from the breakpoints that run straight on to its calls instead.
/// Callees are taken before their callers, so that chains of small calls collapse into the
/// outermost caller's trampoline.
pub(crate) fn count_at_callers(code: &ExeCode, addresses: &[u64], sites: &mut [Site]) {
    if !code.position_independent() {
        // Without relocations for every address in data, a function pointer cannot be told
        // from a number.
        return;
    }
    let entry_index: HashMap<u64, usize> = addresses
        .iter()
        .enumerate()
        .filter(|&(i, &a)| {
            matches!(sites[i], Site::Jump { .. }) && code.function(a).is_some_and(|f| f.0 == a)
        })
        .map(|(i, &a)| (a, i))
        .collect();
    if entry_index.is_empty() {
        return;
    }
    let Some(map) = code.call_map() else {
        tracing::debug!("some code does not decode: every function entry keeps its counter");
        return;
    };
    for entry in callees_first(code, map, &entry_index) {
        let e = entry_index[&entry];
        let calls = map.calls(entry);
        if map.is_taken(entry) || !matches!(sites[e], Site::Jump { .. }) {
            continue;
        }
        let group = counted_by(sites, e);
        let mut anchors = Vec::with_capacity(calls.len());
        for &call in calls {
            match anchor(code, addresses, sites, call) {
                Some(k) if k != e => anchors.push(k),
                _ => break,
            }
        }
        if anchors.len() != calls.len() || anchors.iter().any(|k| group.contains(&(*k as u32))) {
            continue;
        }
        // One anchor may run into several calls (past calls that cannot unwind): it is listed
        // once per call. A member already counted at callers (of a function `entry` calls) ran
        // once per listing of `entry`'s trampoline, which now stands for all of `entry`'s callers.
        let callers: Vec<u32> = anchors.iter().map(|&k| k as u32).collect();
        let listed = |member: u32| match &sites[member as usize] {
            Site::Called { by } => {
                let moved = by.iter().filter(|&&k| k == e as u32).count();
                by.len() - moved + moved * callers.len()
            }
            _ => callers.len(),
        };
        // Lists multiply along a chain of repeated calls: past a bound the entry keeps its own
        // trampoline rather than a list that grows with every level.
        if group.iter().any(|&member| listed(member) > MAX_CALLERS) {
            continue;
        }
        for &k in &anchors {
            if let Site::Jump { also, .. } = &mut sites[k] {
                for &member in &group {
                    if !also.contains(&member) {
                        also.push(member);
                    }
                }
            }
        }
        for &member in &group {
            let by: Vec<u32> = match &sites[member as usize] {
                Site::Called { by } => by
                    .iter()
                    .flat_map(|&k| {
                        if k == e as u32 {
                            callers.clone()
                        } else {
                            vec![k]
                        }
                    })
                    .collect(),
                _ => callers.clone(),
            };
            sites[member as usize] = Site::Called { by };
        }
    }
}

/// The entries of `entry_index` that are called, each after the functions it calls (cycles cut
/// anywhere), so that a callee's count moves into its caller's trampoline before that one moves
/// on to its callers.
fn callees_first(code: &ExeCode, map: &CallMap, entry_index: &HashMap<u64, usize>) -> Vec<u64> {
    let mut called: Vec<u64> = entry_index
        .keys()
        .copied()
        .filter(|&e| !map.calls(e).is_empty())
        .collect();
    called.sort_unstable();
    let mut callees: HashMap<u64, Vec<u64>> = HashMap::new();
    for &callee in &called {
        for &call in map.calls(callee) {
            if let Some((caller, _)) = code.function(call) {
                callees.entry(caller).or_default().push(callee);
            }
        }
    }
    let mut order = Vec::with_capacity(called.len());
    let mut seen = HashSet::new();
    for root in called {
        if !seen.insert(root) {
            continue;
        }
        // Depth first; a node is emitted when all its callees have been.
        let mut stack = vec![(root, 0)];
        while let Some((node, next)) = stack.last_mut() {
            let node = *node;
            match callees.get(&node).and_then(|c| c.get(*next)) {
                Some(&callee) => {
                    *next += 1;
                    if seen.insert(callee) {
                        stack.push((callee, 0));
                    }
                }
                None => {
                    stack.pop();
                    if entry_index.contains_key(&node) && !map.calls(node).is_empty() {
                        order.push(node);
                    }
                }
            }
        }
    }
    order
}

/// The breakpoints trampoline `e` counts: itself and its `also`.
fn counted_by(sites: &[Site], e: usize) -> Vec<u32> {
    let mut group = vec![e as u32];
    if let Site::Jump { also, .. } = &sites[e] {
        group.extend(also);
    }
    group
}

/// The breakpoint with a trampoline of its own that control runs straight on from to the call at
/// `call`: the nearest breakpoint at or before it in its function, or the trampoline that counts
/// that one.
fn anchor(code: &ExeCode, addresses: &[u64], sites: &[Site], call: u64) -> Option<usize> {
    let range = code.function(call)?;
    let nearest = addresses.partition_point(|&a| a <= call).checked_sub(1)?;
    if addresses[nearest] < range.0 {
        return None;
    }
    let root = match &sites[nearest] {
        Site::Jump { .. } => nearest,
        Site::Covered { by } => *by as usize,
        Site::Called { .. } | Site::Taken { .. } | Site::Edge { .. } | Site::Lost | Site::Trap => {
            return None
        }
    };
    if !matches!(sites[root], Site::Jump { .. }) {
        return None;
    }
    let function = code.decoded(range)?;
    (addresses[root] == call || straight(code, &function, addresses[root], call)).then_some(root)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sites::{classify, derive_counts};

    /// Position-independent code of the functions given by (address, bytes), from 0x1000 on,
    /// int3 between them.
    fn code_at(functions: &[(u64, &[u8])]) -> ExeCode {
        let mut bytes = Vec::new();
        let mut ranges = Vec::new();
        for &(address, code) in functions {
            bytes.resize((address - 0x1000) as usize, 0xCC);
            bytes.extend_from_slice(code);
            ranges.push((address, address + code.len() as u64));
        }
        ExeCode::from_sections(vec![(0x1000, bytes)], ranges, &[]).position_independent_for_test()
    }

    /// sub rsp,8; mov [rsp],rdi; call 0x1020; call 0x1020; add rsp,8; ret, at 0x1000.
    const CALLS_TWICE: &[u8] = &[
        0x48, 0x83, 0xEC, 0x08, 0x48, 0x89, 0x3C, 0x24, 0xE8, 0x13, 0, 0, 0, 0xE8, 0x0E, 0, 0, 0,
        0x48, 0x83, 0xC4, 0x08, 0xC3,
    ];
    /// mov eax,1; ret: cannot unwind.
    const LEAF: &[u8] = &[0xB8, 1, 0, 0, 0, 0xC3];

    // 0x1000 caller: sub rsp,8 (4); mov [rsp],rdi (4); call 0x1020 (5); add rsp,8 (4); ret (1)
    // 0x1020 callee: push rax (1); mov [rsp],rdi (4); mov eax,1 (5); pop rcx (1); ret (1)
    // 0x1030, when given: call (5); ret (1)
    fn two_functions(extra_call: Option<[u8; 5]>) -> ExeCode {
        let caller = [
            0x48, 0x83, 0xEC, 0x08, 0x48, 0x89, 0x3C, 0x24, 0xE8, 0x13, 0, 0, 0, 0x48, 0x83, 0xC4,
            0x08, 0xC3,
        ];
        let callee = [0x50, 0x48, 0x89, 0x3C, 0x24, 0xB8, 1, 0, 0, 0, 0x59, 0xC3];
        let third = extra_call.map(|call| [call[0], call[1], call[2], call[3], call[4], 0xC3]);
        let mut functions: Vec<(u64, &[u8])> = vec![(0x1000, &caller), (0x1020, &callee)];
        if let Some(third) = &third {
            functions.push((0x1030, third));
        }
        code_at(&functions)
    }

    #[test]
    fn a_function_called_only_straight_on_from_a_counted_breakpoint_is_counted_there() {
        let code = two_functions(None);
        // Breakpoints: caller entry, callee entry, callee body (0x1025).
        let addresses = [0x1000, 0x1020, 0x1025];
        let sites = classify(&code, &addresses, &[false; 3]);
        assert!(matches!(&sites[0], Site::Jump { also, .. } if also == &[1, 2]));
        assert_eq!(sites[1], Site::Called { by: vec![0] });
        assert_eq!(sites[2], Site::Called { by: vec![0] });
    }

    #[test]
    fn a_chain_of_calls_is_counted_at_the_outermost_caller() {
        // 0x1030 third: call 0x1000 (the caller, which calls the callee); ret.
        let code = two_functions(Some([0xE8, 0xCB, 0xFF, 0xFF, 0xFF]));
        let sites = classify(&code, &[0x1000, 0x1020, 0x1030], &[false; 3]);
        assert!(
            matches!(&sites[2], Site::Jump { also, .. } if also == &[0, 1]),
            "{sites:?}"
        );
        assert_eq!(sites[0], Site::Called { by: vec![2] });
        assert_eq!(sites[1], Site::Called { by: vec![2] });
    }

    #[test]
    fn two_calls_past_a_call_that_cannot_unwind_count_twice() {
        let code = code_at(&[(0x1000, CALLS_TWICE), (0x1020, LEAF)]);
        let sites = classify(&code, &[0x1000, 0x1020], &[false; 2]);
        assert!(
            matches!(&sites[0], Site::Jump { also, .. } if also == &[1]),
            "{sites:?}"
        );
        assert_eq!(sites[1], Site::Called { by: vec![0, 0] });
    }

    #[test]
    fn a_function_called_twice_by_a_function_called_twice_runs_four_times_per_call() {
        // 0x1020: call 0x1040; call 0x1040; ret. 0x1050: call 0x1000; ret.
        let code = code_at(&[
            (0x1000, CALLS_TWICE),
            (0x1020, &[0xE8, 0x1B, 0, 0, 0, 0xE8, 0x16, 0, 0, 0, 0xC3]),
            (0x1040, LEAF),
            (0x1050, &[0xE8, 0xAB, 0xFF, 0xFF, 0xFF, 0xC3]),
        ]);
        let addresses = [0x1000, 0x1020, 0x1040, 0x1050];
        let sites = classify(&code, &addresses, &[false; 4]);
        let mut values = [0, 0, 0, 3];
        derive_counts(&sites, &mut values);
        assert_eq!(values, [3, 6, 12, 3], "{sites:?}");
    }

    #[test]
    fn an_entry_called_more_often_than_a_list_holds_keeps_its_own_counter() {
        // At `at`: sub rsp,8; n × call `target`; ret.
        let calls = |at: u64, target: u64, n: usize| {
            let mut bytes = vec![0x48, 0x83, 0xEC, 0x08];
            for k in 0..n {
                let next = at as i64 + 4 + 5 * (k as i64 + 1);
                bytes.push(0xE8);
                bytes.extend_from_slice(&((target as i64 - next) as i32).to_le_bytes());
            }
            bytes.push(0xC3);
            bytes
        };
        // 0x1000 calls 0x2000 `outer` times, which calls the leaf at 0x3000 32 times: the leaf's
        // count sums `outer` × 32 listings of 0x1000.
        let code = |outer: usize| {
            let (a, b) = (calls(0x1000, 0x2000, outer), calls(0x2000, 0x3000, 32));
            code_at(&[(0x1000, &a), (0x2000, &b), (0x3000, LEAF)])
        };
        let addresses = [0x1000, 0x2000, 0x3000];
        let fits = MAX_CALLERS / 32;
        let sites = classify(&code(fits), &addresses, &[false; 3]);
        assert_eq!(
            sites[2],
            Site::Called {
                by: vec![0; MAX_CALLERS]
            }
        );
        let sites = classify(&code(fits + 1), &addresses, &[false; 3]);
        assert!(matches!(sites[1], Site::Jump { .. }), "{sites:?}");
        assert_eq!(sites[2], Site::Called { by: vec![1; 32] });
        // Nor does the outer caller serve them: moving it on would take them along.
        assert!(
            matches!(&sites[0], Site::Jump { also, .. } if also.is_empty()),
            "{sites:?}"
        );
    }

    #[test]
    fn an_entry_reached_another_way_keeps_its_own_counter() {
        // A third function calls the callee with a call the caller's entry does not run into...
        // 0x1030: call 0x1020 = E8 EB FF FF FF
        let code = two_functions(Some([0xE8, 0xEB, 0xFF, 0xFF, 0xFF]));
        let sites = classify(&code, &[0x1000, 0x1020], &[false; 2]);
        assert!(matches!(sites[1], Site::Jump { .. }), "{sites:?}");
        // ...unless that call has a counted breakpoint of its own.
        let sites = classify(&code, &[0x1000, 0x1020, 0x1030], &[false; 3]);
        assert_eq!(sites[1], Site::Called { by: vec![0, 2] });
        // A forced trap at the caller's entry is no anchor.
        let code = two_functions(None);
        let sites = classify(&code, &[0x1000, 0x1020], &[true, false]);
        assert!(matches!(sites[1], Site::Jump { .. }));
    }
}
