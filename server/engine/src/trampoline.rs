//! Counter trampolines: per jump site, code in scratch memory next to the executable that adds one
//! to its breakpoint's counter, runs the moved instructions and jumps back.
//!
//! Layout of one trampoline (the stub only when it counts a taken edge, the constant only when the
//! last moved instruction is a call): `[inc qword gs:[8 × edge]; jmp target] [return address:
//! u64] inc qword gs:[8 × breakpoint]; <moved instructions>; jmp back`: each thread adds to its
//! own lane of counters (see `lanes`). The moved conditional jump whose taken edge is counted
//! goes to the stub; a site of an edge alone (`Site::Edge`) has no increment at its entry. The
//! breakpoints it serves (`Site::Jump::also`) take their counts from that counter when it is read
//! (`sites::Derivations`). Where the site's flags are live (see `sites::flags_live`; rare in
//! compiled Rust), the increment is wrapped in `lea rsp,[rsp-128]; push rax; lahf; seto al` … `add al,0x7f; sahf;
//! pop rax; lea rsp,[rsp+128]`: the red zone below `rsp` is stepped over and all that `inc`
//! changes is restored, cheaper than `pushfq`/`popfq`. A run that ends with a call of five bytes
//! or more moves nothing: the call itself is rewritten to call a stub (`inc qword gs:[8 ×
//! breakpoint]; jmp callee`), so the return address and the processor's return predictions stay
//! the real ones. A shorter call is moved and done as `push [return address]; jmp target`, so that
//! callees return into the real code and unwinding never sees a trampoline.

use iced_x86::{
    BlockEncoder, BlockEncoderOptions, Code, Decoder, DecoderOptions, FlowControl, Instruction,
    InstructionBlock, MemoryOperand, OpKind, Register,
};

use super::sites::{falls_through, Site, Window, JUMP_LEN, MAX_BACK};

/// Bytes reserved per jump site; a site whose trampoline does not fit stays a trap.
pub(super) const SLOT: u64 = 160;

const ENTER: [u8; 10] = [
    0x48, 0x8D, 0x64, 0x24, 0x80, // lea rsp,[rsp-128]
    0x50, // push rax
    0x9F, // lahf
    0x0F, 0x90, 0xC0, // seto al
];
const LEAVE: [u8; 12] = [
    0x04, 0x7F, // add al,0x7f: sets OF again when al was 1
    0x9E, // sahf
    0x58, // pop rax
    0x48, 0x8D, 0xA4, 0x24, 0x80, 0x00, 0x00, 0x00, // lea rsp,[rsp+128]
];

/// Trampolines for one address space.
#[derive(Debug)]
pub(super) struct Trampolines {
    /// Bytes to write at `code_base`.
    pub code: Vec<u8>,
    /// Per breakpoint, how it is counted in the end (a site whose code could not be moved
    /// becomes a trap, with the breakpoints it would have covered).
    pub sites: Vec<Site>,
    /// Per jump site: (breakpoint, the bytes to write over its window).
    pub patches: Vec<(usize, Vec<u8>)>,
}

/// Builds the trampolines. `addresses` are run-time addresses; `windows[i]` holds the original
/// bytes around them; counter `i` lives at `gs:[8 * i]`.
pub(super) fn build(
    sites: &[Site],
    addresses: &[u64],
    windows: &[Window],
    code_base: u64,
) -> Trampolines {
    let mut sites = sites.to_vec();
    let mut code = Vec::new();
    let mut patches = Vec::new();
    for i in 0..sites.len() {
        let counter = |k: usize, flags: bool| Counter {
            offset: 8 * k as u64,
            flags,
        };
        let (back, len, entry, taken) = match &sites[i] {
            Site::Jump {
                back,
                len,
                flags,
                taken,
                ..
            } => {
                let taken = taken.map(|e| {
                    let flags = match sites[e as usize] {
                        Site::Taken { flags, .. } => flags,
                        _ => true,
                    };
                    (addresses[e as usize] - 1, counter(e as usize, flags))
                });
                (*back, *len, Some(counter(i, *flags)), taken)
            }
            Site::Edge {
                back, len, flags, ..
            } => (
                *back,
                *len,
                None,
                Some((addresses[i] - 1, counter(i, *flags))),
            ),
            _ => continue,
        };
        let slot = code_base + code.len() as u64;
        let start = addresses[i] - u64::from(back);
        let from = MAX_BACK - usize::from(back);
        let window = &windows[i][from..from + usize::from(len)];
        let built = match (entry, taken) {
            (Some(entry), None) => call_stub(start, window, slot, entry),
            _ => None,
        }
        .or_else(|| {
            let (bytes, entry) = trampoline(start, window, slot, entry, taken)?;
            let mut patch = vec![0xCC; usize::from(len)];
            patch[0] = 0xE9;
            let rel = entry as i64 - (start + JUMP_LEN as u64) as i64;
            patch[1..5].copy_from_slice(&(rel as i32).to_le_bytes());
            Some((bytes, patch))
        });
        match built {
            Some((bytes, patch)) => {
                code.extend_from_slice(&bytes);
                code.resize(((code.len() as u64).next_multiple_of(16)) as usize, 0xCC);
                patches.push((i, patch));
            }
            None => {
                tracing::debug!("{:#x}: cannot build a trampoline; trapping", addresses[i]);
                // What derives from its count needs counting of its own now; an edge cannot
                // trap (its address is inside an instruction).
                if let Site::Jump { also, taken, .. } = std::mem::replace(&mut sites[i], Site::Lost)
                {
                    for j in also {
                        sites[j as usize] = Site::Trap;
                    }
                    if let Some(e) = taken {
                        sites[e as usize] = Site::Lost;
                    }
                    sites[i] = Site::Trap;
                }
            }
        }
    }
    Trampolines {
        code,
        sites,
        patches,
    }
}

/// A counter a trampoline adds to: `gs:[offset]`, keeping the status flags when they are live.
#[derive(Clone, Copy)]
struct Counter {
    offset: u64,
    flags: bool,
}

impl Counter {
    fn increment(self, bytes: &mut Vec<u8>) -> Option<()> {
        if self.flags {
            bytes.extend_from_slice(&ENTER);
        }
        // inc qword gs:[offset]: gs, REX.W, FF /0 with an absolute 32-bit displacement.
        bytes.extend_from_slice(&[0x65, 0x48, 0xFF, 0x04, 0x25]);
        bytes.extend_from_slice(&i32::try_from(self.offset).ok()?.to_le_bytes());
        if self.flags {
            bytes.extend_from_slice(&LEAVE);
        }
        Some(())
    }
}

/// For a run that ends with a call of at least five bytes: a stub at `slot` that counts and jumps
/// to the callee, and the run's bytes with the call turned into a call of the stub (after nops
/// that keep its end, and so the return address, where it was). The instructions before the call
/// stay in place; the run is straight, so the call runs exactly as often as its first byte. A
/// real `call` keeps the processor's return predictions paired: the `push`/`jmp` of
/// [`trampoline`] makes the callee's `ret`, and the ones after it, mispredict.
fn call_stub(start: u64, window: &[u8], slot: u64, entry: Counter) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut decoder = Decoder::with_ip(64, window, start, DecoderOptions::NONE);
    let mut last = None;
    while decoder.can_decode() {
        let instruction = decoder.decode();
        if instruction.is_invalid() {
            return None;
        }
        last = Some(instruction);
        if instruction.flow_control() != FlowControl::Next {
            break;
        }
    }
    let call = last?;
    let end = start + window.len() as u64;
    let direct = call.code() == Code::Call_rel32_64;
    let through_memory = call.code() == Code::Call_rm64 && call.op0_kind() == OpKind::Memory;
    if call.next_ip() != end || call.len() < JUMP_LEN || !(direct || through_memory) {
        return None;
    }
    let mut stub = Vec::new();
    // Flags are dead at a call (the ABI keeps none across one).
    Counter {
        flags: false,
        ..entry
    }
    .increment(&mut stub)?;
    let jump = if direct {
        Instruction::with_branch(Code::Jmp_rel32_64, call.near_branch_target()).ok()?
    } else {
        let mut jump = call;
        jump.set_code(Code::Jmp_rm64);
        if jump.memory_base() == Register::RSP {
            // The call to the stub pushed the return address: rsp is 8 lower.
            jump.set_memory_displacement64(jump.memory_displacement64().wrapping_add(8));
        }
        jump
    };
    let at = slot + stub.len() as u64;
    let encoded = BlockEncoder::encode(
        64,
        InstructionBlock::new(&[jump], at),
        BlockEncoderOptions::NONE,
    )
    .ok()?;
    stub.extend_from_slice(&encoded.code_buffer);
    let call_at = (call.ip() - start) as usize;
    let mut patch = window.to_vec();
    let pad = call.len() - JUMP_LEN;
    patch[call_at..call_at + pad].copy_from_slice(NOPS.get(pad)?);
    let rel = i32::try_from(slot as i64 - end as i64).ok()?;
    patch[call_at + pad] = 0xE8;
    patch[call_at + pad + 1..].copy_from_slice(&rel.to_le_bytes());
    (stub.len() as u64 <= SLOT).then_some((stub, patch))
}

/// Nops of each length up to 10, one instruction each (Intel's recommended forms).
const NOPS: [&[u8]; 11] = [
    &[],
    &[0x90],
    &[0x66, 0x90],
    &[0x0F, 0x1F, 0x00],
    &[0x0F, 0x1F, 0x40, 0x00],
    &[0x0F, 0x1F, 0x44, 0x00, 0x00],
    &[0x66, 0x0F, 0x1F, 0x44, 0x00, 0x00],
    &[0x0F, 0x1F, 0x80, 0x00, 0x00, 0x00, 0x00],
    &[0x0F, 0x1F, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00],
    &[0x66, 0x0F, 0x1F, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00],
    &[0x66, 0x2E, 0x0F, 0x1F, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00],
];

/// One trampoline at `slot`: its bytes and the address of its entry. `entry` counts every pass;
/// `taken = (address, counter)` only those in which the moved conditional jump at that address is
/// taken: the moved jump goes to a stub before the entry that counts and jumps on to its target.
fn trampoline(
    address: u64,
    window: &[u8],
    slot: u64,
    entry: Option<Counter>,
    taken: Option<(u64, Counter)>,
) -> Option<(Vec<u8>, u64)> {
    let mut decoder = Decoder::with_ip(64, window, address, DecoderOptions::NONE);
    let mut moved: Vec<Instruction> = Vec::new();
    while decoder.can_decode() {
        let instruction = decoder.decode();
        if instruction.is_invalid() {
            return None;
        }
        moved.push(instruction);
        if !falls_through(&instruction) {
            break;
        }
    }
    let end = address + window.len() as u64;
    // After an instruction that does not fall through, only int3 padding may follow.
    let rest = (moved.last()?.next_ip() - address) as usize;
    if !window[rest..].iter().all(|&b| b == 0xCC) {
        return None;
    }
    let mut bytes = Vec::new();
    if let Some((at, counter)) = taken {
        let jump = moved
            .iter_mut()
            .find(|i| i.ip() == at && i.is_jcc_short_or_near())?;
        let stub = slot;
        counter.increment(&mut bytes)?;
        let after = slot + bytes.len() as u64 + JUMP_LEN as u64;
        let rel = i32::try_from(jump.near_branch_target() as i64 - after as i64).ok()?;
        bytes.push(0xE9);
        bytes.extend_from_slice(&rel.to_le_bytes());
        jump.set_near_branch64(stub);
    }
    let last = moved.pop()?;
    let mut return_slot = None;
    if matches!(
        last.flow_control(),
        FlowControl::Call | FlowControl::IndirectCall
    ) {
        return_slot = Some(slot + bytes.len() as u64);
        bytes.extend_from_slice(&end.to_le_bytes());
    }
    let entry_at = slot + bytes.len() as u64;
    if let Some(entry) = entry {
        entry.increment(&mut bytes)?;
    }

    match return_slot {
        Some(return_slot) => {
            moved.push(
                Instruction::with1(
                    Code::Push_rm64,
                    MemoryOperand::with_base_displ(Register::RIP, return_slot as i64),
                )
                .ok()?,
            );
            if last.code() == Code::Call_rel32_64 {
                moved.push(
                    Instruction::with_branch(Code::Jmp_rel32_64, last.near_branch_target()).ok()?,
                );
            } else {
                let mut jump = last;
                jump.set_code(Code::Jmp_rm64);
                if jump.op0_kind() == OpKind::Memory && jump.memory_base() == Register::RSP {
                    // The pushed return address moved rsp down by 8.
                    jump.set_memory_displacement64(jump.memory_displacement64().wrapping_add(8));
                }
                moved.push(jump);
            }
        }
        None => {
            moved.push(last);
            moved.push(Instruction::with_branch(Code::Jmp_rel32_64, end).ok()?);
        }
    }
    let at = slot + bytes.len() as u64;
    let encoded = BlockEncoder::encode(
        64,
        InstructionBlock::new(&moved, at),
        BlockEncoderOptions::NONE,
    )
    .ok()?;
    bytes.extend_from_slice(&encoded.code_buffer);
    (bytes.len() as u64 <= SLOT).then_some((bytes, entry_at))
}

#[cfg(test)]
mod tests {
    use super::*;

    const AT: u64 = 0x5555_5555_1000;
    const CODE: u64 = 0x5555_5000_0000;

    fn window(bytes: &[u8]) -> Window {
        let mut w: Window = [0x90; std::mem::size_of::<Window>()];
        w[MAX_BACK..MAX_BACK + bytes.len()].copy_from_slice(bytes);
        w
    }

    fn decode(bytes: &[u8], ip: u64) -> Vec<Instruction> {
        Decoder::with_ip(64, bytes, ip, DecoderOptions::NONE)
            .into_iter()
            .collect()
    }

    #[test]
    fn counts_then_runs_the_moved_instruction_and_jumps_back() {
        // mov rax,[rip+0x10] (7 bytes)
        let sites = [Site::Jump {
            back: 0,
            len: 7,
            moved: 1,
            also: vec![],
            flags: true,
            taken: None,
        }];
        let windows = [window(&[0x48, 0x8B, 0x05, 0x10, 0, 0, 0])];
        let t = build(&sites, &[AT], &windows, CODE);
        assert_eq!(t.sites, sites);
        let (i, patch) = &t.patches[0];
        assert_eq!(*i, 0);
        assert_eq!(patch.len(), 7);
        assert_eq!(patch[0], 0xE9);
        let rel = i32::from_le_bytes(patch[1..5].try_into().unwrap());
        assert_eq!(
            (AT as i64 + 5 + i64::from(rel)) as u64,
            CODE,
            "jumps to the entry"
        );
        assert_eq!(&patch[5..], &[0xCC, 0xCC]);

        let code = decode(&t.code, CODE);
        let codes: Vec<Code> = code.iter().take(9).map(|i| i.code()).collect();
        assert_eq!(
            codes,
            [
                Code::Lea_r64_m,
                Code::Push_r64,
                Code::Lahf,
                Code::Seto_rm8,
                Code::Inc_rm64,
                Code::Add_AL_imm8,
                Code::Sahf,
                Code::Pop_r64,
                Code::Lea_r64_m,
            ]
        );
        assert_eq!(
            code[0].memory_displacement64() as i64,
            -128,
            "steps over the red zone"
        );
        assert_eq!(
            code[4].segment_prefix(),
            Register::GS,
            "the thread's own lane"
        );
        assert!(!code[4].has_lock_prefix());
        assert_eq!(code[4].memory_base(), Register::None);
        assert_eq!(code[4].memory_displacement64(), 0, "counter 0");
        assert_eq!(code[8].memory_displacement64(), 128);
        // The moved load still reads the same absolute address, then control goes back.
        assert_eq!(code[9].memory_displacement64(), AT + 7 + 0x10);
        assert_eq!(code[10].code(), Code::Jmp_rel32_64);
        assert_eq!(code[10].near_branch_target(), AT + 7);
    }

    #[test]
    fn dead_flags_need_only_the_increment() {
        // xor eax,eax (2); ret (1); int3 padding (2): the ret leaves, the padding is not moved.
        let sites = [Site::Jump {
            back: 0,
            len: 5,
            moved: 2,
            also: vec![],
            flags: false,
            taken: None,
        }];
        let windows = [window(&[0x31, 0xC0, 0xC3, 0xCC, 0xCC])];
        let t = build(&sites, &[AT], &windows, CODE);
        assert_eq!(t.sites, sites);
        let codes: Vec<Code> = decode(&t.code, CODE)
            .iter()
            .take(3)
            .map(|i| i.code())
            .collect();
        assert_eq!(codes, [Code::Inc_rm64, Code::Xor_rm32_r32, Code::Retnq]);
        // Bytes after the ret that are not padding: the window is not what the site says.
        let windows = [window(&[0x31, 0xC0, 0xC3, 0x90, 0xCC])];
        let t = build(&sites, &[AT], &windows, CODE);
        assert_eq!(t.sites, [Site::Trap]);
    }

    #[test]
    fn a_run_counts_its_breakpoint_and_calls_return_to_the_real_code() {
        // xor ecx,ecx (2); xor edx,edx (2); call rax (2): counts breakpoints 0 and 1. The call is
        // too short to call a stub instead, so it is done by hand.
        let sites = [
            Site::Jump {
                back: 0,
                len: 6,
                moved: 3,
                also: vec![1],
                flags: true,
                taken: None,
            },
            Site::Covered { by: 0 },
        ];
        let windows = [window(&[0x31, 0xC9, 0x31, 0xD2, 0xFF, 0xD0]), window(&[])];
        let t = build(&sites, &[AT, AT + 2], &windows, CODE);
        assert_eq!(t.patches.len(), 1);
        assert_eq!(
            u64::from_le_bytes(t.code[..8].try_into().unwrap()),
            AT + 6,
            "the return address is the instruction after the call"
        );
        let code = decode(&t.code[8..], CODE + 8);
        let incs: Vec<u64> = code
            .iter()
            .filter(|i| i.segment_prefix() == Register::GS)
            .map(|i| i.memory_displacement64())
            .collect();
        assert_eq!(incs, [0], "breakpoint 1 takes its count from 0's");
        let tail: Vec<&Instruction> = code.iter().skip(9).take(4).collect();
        assert_eq!(tail[0].code(), Code::Xor_rm32_r32);
        assert_eq!(tail[1].code(), Code::Xor_rm32_r32);
        assert_eq!(tail[2].code(), Code::Push_rm64);
        assert_eq!(tail[2].memory_displacement64(), CODE);
        assert_eq!(tail[3].code(), Code::Jmp_rm64);
        assert_eq!(tail[3].op0_register(), Register::RAX);
    }

    /// The patch and stub `build` makes for one run that ends with a call.
    fn call_patch(bytes: &[u8]) -> (Vec<u8>, Vec<Instruction>) {
        let sites = [Site::Jump {
            back: 0,
            len: bytes.len() as u8,
            moved: 2,
            also: vec![],
            flags: true,
            taken: None,
        }];
        let t = build(&sites, &[AT], &[window(bytes)], CODE);
        assert_eq!(t.sites, sites);
        let (_, patch) = t.patches.into_iter().next().unwrap();
        (patch, decode(&t.code, CODE))
    }

    #[test]
    fn a_long_call_calls_a_stub_from_where_it_was() {
        // xor ecx,ecx; call rel32: the xor stays, the call now calls the stub, which counts and
        // jumps to the callee. The return address and the return prediction are the real ones.
        let (patch, stub) = call_patch(&[0x31, 0xC9, 0xE8, 0x00, 0x01, 0, 0]);
        assert_eq!(&patch[..3], &[0x31, 0xC9, 0xE8]);
        let rel = i32::from_le_bytes(patch[3..7].try_into().unwrap());
        assert_eq!(
            (AT as i64 + 7 + i64::from(rel)) as u64,
            CODE,
            "calls the stub"
        );
        assert_eq!(stub[0].code(), Code::Inc_rm64, "no flags kept at a call");
        assert_eq!(stub[0].segment_prefix(), Register::GS);
        assert_eq!(stub[1].code(), Code::Jmp_rel32_64);
        assert_eq!(stub[1].near_branch_target(), AT + 7 + 0x100);
    }

    #[test]
    fn a_call_through_memory_keeps_its_end_and_reads_the_same_slot() {
        // call qword ptr [rip+0x10] (6 bytes): a nop, then the 5-byte call of the stub.
        let (patch, stub) = call_patch(&[0xFF, 0x15, 0x10, 0, 0, 0]);
        assert_eq!(patch[0], 0x90);
        assert_eq!(patch[1], 0xE8);
        assert_eq!(stub[1].code(), Code::Jmp_rm64);
        assert_eq!(stub[1].memory_displacement64(), AT + 6 + 0x10);
        // call qword ptr [rsp+8] with a 32-bit displacement (7 bytes): the stub's jump reads 8
        // bytes higher, past the return address the call pushed.
        let (patch, stub) = call_patch(&[0xFF, 0x94, 0x24, 0x08, 0, 0, 0]);
        assert_eq!(&patch[..3], &[0x66, 0x90, 0xE8]);
        assert_eq!(decode(&patch, AT).len(), 2, "one nop, one call");
        assert_eq!(stub[1].memory_base(), Register::RSP);
        assert_eq!(stub[1].memory_displacement64(), 16);
    }

    #[test]
    fn an_entry_counted_by_several_trampolines_traps_alone_when_one_cannot_be_built() {
        // Breakpoints 0 and 1 each run into a call of the function whose entry is 2. The window
        // of 0 is not what its site says (a nop after the ret): 0 traps, and so must 2 (its trap
        // counts every entry; 1's counter is 1's alone).
        let long = |also: Vec<u32>| Site::Jump {
            back: 0,
            len: 5,
            moved: 2,
            also,
            flags: false,
            taken: None,
        };
        let sites = [
            long(vec![2]),
            long(vec![2]),
            Site::Called { by: vec![0, 1] },
        ];
        let windows = [
            window(&[0x31, 0xC0, 0xC3, 0x90, 0xCC]),
            window(&[0x31, 0xC0, 0xC3, 0xCC, 0xCC]),
            window(&[]),
        ];
        let t = build(&sites, &[AT, AT + 0x100, AT + 0x200], &windows, CODE);
        assert_eq!(t.sites, [Site::Trap, long(vec![2]), Site::Trap]);
        assert_eq!(t.patches.len(), 1);
    }

    #[test]
    fn a_taken_edge_counts_in_a_stub_on_the_way_to_the_target() {
        // test al,1 (2); jne +2 (2); jmp -11 (2): an edge of its own (breakpoint 0, one byte into
        // the jne), whose flags are live at the target.
        let sites = [Site::Edge {
            back: 3,
            len: 6,
            flags: true,
        }];
        let start = AT - 3;
        let mut w: Window = [0x90; std::mem::size_of::<Window>()];
        w[MAX_BACK - 3..MAX_BACK + 3].copy_from_slice(&[0xA8, 0x01, 0x75, 0x02, 0xEB, 0xF5]);
        let t = build(&sites, &[AT], &[w], CODE);
        assert_eq!(t.sites, sites);
        let (_, patch) = &t.patches[0];
        let rel = i32::from_le_bytes(patch[1..5].try_into().unwrap());
        let entry = (start as i64 + 5 + i64::from(rel)) as u64;
        let code = decode(&t.code, CODE);
        // The stub: the increment wrapped to keep the flags, then on to the jne's target.
        let stub: Vec<Code> = code.iter().take(10).map(|i| i.code()).collect();
        assert_eq!(stub[4], Code::Inc_rm64);
        assert_eq!(code[4].memory_displacement64(), 0, "counter 0");
        assert_eq!(stub[9], Code::Jmp_rel32_64);
        assert_eq!(code[9].near_branch_target(), start + 6);
        // The entry counts nothing: the moved test, the jne to the stub, the jmp back to -11.
        let moved: Vec<&Instruction> = code.iter().filter(|i| i.ip() >= entry).take(3).collect();
        assert_eq!(moved[0].ip(), entry);
        assert_eq!(moved[0].code(), Code::Test_AL_imm8);
        assert!(moved[1].is_jcc_short_or_near());
        assert_eq!(
            moved[1].near_branch_target(),
            CODE,
            "taken: through the stub"
        );
        assert_eq!(moved[2].flow_control(), FlowControl::UnconditionalBranch);
        assert_eq!(moved[2].near_branch_target(), start + 6 - 11);

        // Bytes after the jmp that are not padding: no trampoline, and the edge is lost (never
        // a trap: its address is inside the jne).
        let long = [Site::Edge {
            back: 3,
            len: 7,
            flags: true,
        }];
        assert_eq!(build(&long, &[AT], &[w], CODE).sites, [Site::Lost]);

        // test al,1 (2); jne rel32 +0x40 (6): the run of breakpoint 1 at the test ends with the
        // jne, so its trampoline counts the edge (breakpoint 0) too.
        let sites = [
            Site::Taken {
                by: 1,
                flags: false,
            },
            Site::Jump {
                back: 0,
                len: 8,
                moved: 2,
                also: vec![],
                flags: false,
                taken: Some(0),
            },
        ];
        let runtime = [AT + 3, AT];
        let run = [0xA8, 0x01, 0x0F, 0x85, 0x40, 0, 0, 0];
        let t = build(&sites, &runtime, &[window(&[]), window(&run)], CODE);
        assert_eq!(t.sites, sites);
        let code = decode(&t.code, CODE);
        let incs: Vec<u64> = code
            .iter()
            .filter(|i| i.segment_prefix() == Register::GS)
            .map(|i| i.memory_displacement64())
            .collect();
        let jne = code.iter().find(|i| i.is_jcc_short_or_near()).unwrap();
        assert_eq!(jne.near_branch_target(), CODE, "taken: through the stub");
        assert_eq!(code[1].near_branch_target(), AT + 8 + 0x40);
        assert_eq!(incs, [0, 8], "the edge's stub, then the run's own entry");
    }

    #[test]
    fn indirect_calls_through_the_stack_see_the_same_slot() {
        // call qword ptr [rsp+8] (FF 54 24 08), padded to a run with a nop before it.
        let sites = [Site::Jump {
            back: 0,
            len: 5,
            moved: 2,
            also: vec![],
            flags: true,
            taken: None,
        }];
        let windows = [window(&[0x90, 0xFF, 0x54, 0x24, 0x08])];
        let t = build(&sites, &[AT], &windows, CODE);
        let code = decode(&t.code[8..], CODE + 8);
        let jump = code.iter().find(|i| i.code() == Code::Jmp_rm64).unwrap();
        assert_eq!(jump.memory_base(), Register::RSP);
        assert_eq!(jump.memory_displacement64(), 16);
    }
}
