//! What the whole executable's code says about calls: the direct calls and tail jumps into each
//! function, the entries reached some other way, and the functions that can never unwind.

use std::collections::{HashMap, HashSet};

use iced_x86::{Decoder, DecoderOptions, FlowControl, Instruction, Mnemonic, OpKind};

use super::sites::{jump_table, ExeCode};

#[derive(Debug, Default)]
pub(crate) struct CallMap {
    /// Function start → the direct calls and unconditional jumps into it from other code.
    calls: HashMap<u64, Vec<u64>>,
    /// Function starts reached some other way too: a conditional jump, an operand that takes the
    /// address, a relocation or an exported symbol.
    taken: HashSet<u64>,
    /// Functions that can never unwind (nor end the process by a system call): they call or jump
    /// to no code but functions that cannot either.
    nounwind: HashSet<u64>,
}

impl CallMap {
    /// `None` when some function's code does not decode: a call hidden in it would be missed.
    pub(crate) fn read(code: &ExeCode) -> Option<CallMap> {
        let mut map = CallMap {
            taken: code.referenced().clone(),
            ..CallMap::default()
        };
        let is_start = |t: u64| code.function(t).is_some_and(|f| f.0 == t);
        // Caller → callees, and the functions that may unwind by themselves.
        let mut edges: Vec<(u64, u64)> = Vec::new();
        let mut unwinding: HashSet<u64> = HashSet::new();
        let mut functions = Vec::new();
        for (start, end) in code.decoding_ranges() {
            let bytes = code.bytes(start, end)?;
            let own = (code.function(start) == Some((start, end))).then_some(start);
            functions.extend(own);
            let mut recent: Vec<Instruction> = Vec::new();
            for instruction in Decoder::with_ip(64, bytes, start, DecoderOptions::NONE) {
                if instruction.is_invalid() {
                    // Gaps hold padding and may end in the middle of an instruction.
                    if own.is_some() {
                        return None;
                    }
                    continue;
                }
                let ip = instruction.ip();
                let inside = |t: u64| (start..end).contains(&t);
                let mut unknown = false;
                match instruction.flow_control() {
                    FlowControl::Call | FlowControl::UnconditionalBranch
                        if instruction.op0_kind() == OpKind::NearBranch64 =>
                    {
                        // A function's start is entered this way even from inside it.
                        let target = instruction.near_branch_target();
                        if is_start(target) {
                            map.calls.entry(target).or_default().push(ip);
                            edges.extend(own.map(|f| (f, target)));
                        } else if !(own.is_some() && inside(target)) {
                            unknown = true;
                        }
                    }
                    FlowControl::ConditionalBranch => {
                        let target = instruction.near_branch_target();
                        if is_start(target) {
                            map.taken.insert(target);
                            edges.extend(own.map(|f| (f, target)));
                        } else if !(own.is_some() && inside(target)) {
                            unknown = true;
                        }
                    }
                    FlowControl::Call | FlowControl::IndirectCall | FlowControl::IndirectBranch => {
                        match code.call_target(&instruction).filter(|&t| is_start(t)) {
                            Some(target) => edges.extend(own.map(|f| (f, target))),
                            None => {
                                unknown = instruction.flow_control() != FlowControl::IndirectBranch
                                    || jump_table(&recent, &instruction).is_none()
                            }
                        }
                    }
                    FlowControl::Interrupt => unknown = true,
                    _ => {
                        unknown = matches!(
                            instruction.mnemonic(),
                            Mnemonic::Syscall | Mnemonic::Sysenter
                        )
                    }
                }
                if unknown {
                    unwinding.extend(own);
                }
                if instruction.is_ip_rel_memory_operand()
                    && is_start(instruction.ip_rel_memory_address())
                {
                    map.taken.insert(instruction.ip_rel_memory_address());
                }
                if recent.len() == 3 {
                    recent.remove(0);
                }
                recent.push(instruction);
            }
        }
        // A caller of a function that may unwind may unwind too.
        let mut callers: HashMap<u64, Vec<u64>> = HashMap::new();
        for (caller, callee) in edges {
            callers.entry(callee).or_default().push(caller);
        }
        let mut pending: Vec<u64> = unwinding.iter().copied().collect();
        while let Some(function) = pending.pop() {
            for &caller in callers.get(&function).into_iter().flatten() {
                if unwinding.insert(caller) {
                    pending.push(caller);
                }
            }
        }
        map.nounwind = functions
            .into_iter()
            .filter(|f| !unwinding.contains(f))
            .collect();
        Some(map)
    }

    /// The direct calls and unconditional jumps into the function starting at `entry`.
    pub(crate) fn calls(&self, entry: u64) -> &[u64] {
        self.calls.get(&entry).map_or(&[], Vec::as_slice)
    }

    /// Whether the function at `entry` is reached by anything but its direct calls and jumps.
    pub(crate) fn is_taken(&self, entry: u64) -> bool {
        self.taken.contains(&entry)
    }

    /// Whether the function starting at `start` always returns to its caller (or never returns,
    /// the process being killed or faulting): it cannot unwind.
    pub(crate) fn cannot_unwind(&self, start: u64) -> bool {
        self.nounwind.contains(&start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 0x1000 leaf: mov eax,1; ret. 0x1010 getter: call leaf; ret. 0x1020 syscaller: syscall;
    /// ret. 0x1030 wrapper: call syscaller; ret. 0x1040 caller: call getter; call wrapper; ret.
    fn program() -> ExeCode {
        let mut bytes = vec![0xCC; 0x50];
        let mut put = |at: usize, code: &[u8]| bytes[at..at + code.len()].copy_from_slice(code);
        put(0x00, &[0xB8, 1, 0, 0, 0, 0xC3]);
        put(0x10, &[0xE8, 0xEB, 0xFF, 0xFF, 0xFF, 0xC3]);
        put(0x20, &[0x0F, 0x05, 0xC3]);
        put(0x30, &[0xE8, 0xEB, 0xFF, 0xFF, 0xFF, 0xC3]);
        put(
            0x40,
            &[
                0xE8, 0xCB, 0xFF, 0xFF, 0xFF, 0xE8, 0xE6, 0xFF, 0xFF, 0xFF, 0xC3,
            ],
        );
        let functions = vec![
            (0x1000, 0x1006),
            (0x1010, 0x1016),
            (0x1020, 0x1023),
            (0x1030, 0x1036),
            (0x1040, 0x104b),
        ];
        ExeCode::from_sections(vec![(0x1000, bytes)], functions, &[])
    }

    #[test]
    fn functions_that_reach_no_unknown_code_cannot_unwind() {
        let map = CallMap::read(&program()).unwrap();
        assert!(map.cannot_unwind(0x1000));
        assert!(map.cannot_unwind(0x1010));
        assert!(
            !map.cannot_unwind(0x1020),
            "a system call may end the process"
        );
        assert!(!map.cannot_unwind(0x1030));
        assert!(!map.cannot_unwind(0x1040));
        assert_eq!(map.calls(0x1000), [0x1010]);
        assert_eq!(map.calls(0x1010), [0x1040]);
        assert!(!map.is_taken(0x1010));
    }

    #[test]
    fn references_in_code_and_data_are_found() {
        // lea rax,[rip-0x17] (7 bytes) at 0x1030 takes 0x1020's address.
        let mut bytes = vec![0xCC; 0x30];
        bytes[0x20] = 0xC3;
        bytes.extend_from_slice(&[0x48, 0x8D, 0x05, 0xE9, 0xFF, 0xFF, 0xFF, 0xC3]);
        let code = ExeCode::from_sections(
            vec![(0x1000, bytes)],
            vec![(0x1020, 0x1021), (0x1030, 0x1038)],
            &[],
        );
        assert!(CallMap::read(&code).unwrap().is_taken(0x1020));
        let code = ExeCode::from_sections(vec![(0x1000, vec![0xC3])], vec![(0x1000, 0x1001)], &[])
            .with_reference(0x1000);
        assert!(CallMap::read(&code).unwrap().is_taken(0x1000));
    }

    #[test]
    fn a_call_to_unknown_code_may_unwind() {
        // call 0x2000 (not a function of this code): it may be a library's.
        let code = ExeCode::from_sections(
            vec![(0x1000, vec![0xE8, 0xFB, 0x0F, 0, 0, 0xC3])],
            vec![(0x1000, 0x1006)],
            &[],
        );
        assert!(!CallMap::read(&code).unwrap().cannot_unwind(0x1000));
    }
}
