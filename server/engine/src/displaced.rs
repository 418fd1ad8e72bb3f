//! Out-of-line execution of the instruction under a counting int3 (the fallback for addresses a
//! trampoline cannot serve), so that the breakpoint need not be lifted: no single step, and no
//! moment in which another thread runs past uncounted.

use iced_x86::{
    BlockEncoder, BlockEncoderOptions, Code, Decoder, DecoderOptions, FlowControl, Instruction,
    InstructionBlock,
};
use nix::errno::Errno;
use nix::sys::ptrace;
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::breakpoints::Space;
use super::sites::{Window, MAX_BACK};

/// Bytes of scratch code per breakpoint: the relocated instruction (≤ 15 bytes, a little more
/// when a short branch becomes a near one) and a jump back.
pub(super) const SLOT: u64 = 32;

/// How a thread that trapped on a counting breakpoint carries on.
#[derive(Clone, Copy, Debug)]
pub(super) enum Resume {
    /// Jump to the relocated copy of the instruction; it jumps back after the original.
    Slot(u64),
    /// A direct call is done by hand, so that the return address points into the original code
    /// and unwinding through the callee still works.
    Call { target: u64, return_to: u64 },
    /// Not relocatable (indirect call, too far for rip-relative): lift the breakpoint and step.
    Step,
}

/// Decides, for each breakpoint that `traps`, how to resume past it, and builds the scratch code
/// (slot `i` for breakpoint `i`). `windows[i]` holds the original bytes at run-time address
/// `addresses[i]`.
pub(super) fn plan(
    addresses: &[u64],
    windows: &[Window],
    traps: &dyn Fn(usize) -> bool,
    scratch: u64,
) -> (Vec<Resume>, Vec<u8>) {
    let mut code = vec![0xCC; addresses.len() * SLOT as usize];
    let resume = addresses
        .iter()
        .zip(windows)
        .enumerate()
        .map(|(i, (&address, bytes))| {
            if !traps(i) {
                return Resume::Step;
            }
            let slot = scratch + i as u64 * SLOT;
            let mut decoder =
                Decoder::with_ip(64, &bytes[MAX_BACK..], address, DecoderOptions::NONE);
            let instruction = decoder.decode();
            if instruction.is_invalid() {
                return Resume::Step;
            }
            let next = address + instruction.len() as u64;
            match instruction.flow_control() {
                FlowControl::Call if instruction.code() == Code::Call_rel32_64 => {
                    return Resume::Call {
                        target: instruction.near_branch_target(),
                        return_to: next,
                    };
                }
                FlowControl::Call | FlowControl::IndirectCall | FlowControl::Interrupt => {
                    return Resume::Step
                }
                _ => {}
            }
            let Ok(back) = Instruction::with_branch(Code::Jmp_rel32_64, next) else {
                return Resume::Step;
            };
            match BlockEncoder::encode(
                64,
                InstructionBlock::new(&[instruction, back], slot),
                BlockEncoderOptions::NONE,
            ) {
                Ok(encoded) if encoded.code_buffer.len() <= SLOT as usize => {
                    let at = i * SLOT as usize;
                    code[at..at + encoded.code_buffer.len()].copy_from_slice(&encoded.code_buffer);
                    Resume::Slot(slot)
                }
                _ => Resume::Step,
            }
        })
        .collect();
    (resume, code)
}

/// Maps `len` bytes of scratch memory (`prot`: code or counters) in a stopped, single-threaded
/// tracee, by making it run one `mmap`: at `hint` exactly (near its code, so that rip-relative
/// operands still reach), or, without one, wherever the kernel likes and with pages committed
/// only when written (counter lanes, mostly never touched). The tracee is left exactly as it was.
pub(super) fn map_scratch(
    pid: Pid,
    hint: Option<u64>,
    len: u64,
    prot: libc::c_int,
    space: &Space,
) -> Result<u64, Errno> {
    let saved = ptrace::getregs(pid)?;
    let mut regs = saved;
    let original = space
        .replace(saved.rip, &[0x0F, 0x05, 0xCC])
        .map_err(|_| Errno::EIO)?;
    regs.rax = libc::SYS_mmap as u64;
    regs.rdi = hint.unwrap_or(0);
    regs.rsi = len;
    regs.rdx = prot as u64;
    let placement = match hint {
        Some(_) => libc::MAP_FIXED_NOREPLACE,
        None => libc::MAP_NORESERVE,
    };
    regs.r10 = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | placement) as u64;
    regs.r8 = u64::MAX;
    regs.r9 = 0;
    let result = ptrace::setregs(pid, regs)
        .and_then(|()| ptrace::cont(pid, None))
        .and_then(|()| match waitpid(pid, Some(WaitPidFlag::__WALL))? {
            WaitStatus::Stopped(_, Signal::SIGTRAP) => Ok(ptrace::getregs(pid)?.rax),
            _ => Err(Errno::ESRCH),
        });
    let _ = space.replace(saved.rip, &original);
    ptrace::setregs(pid, saved)?;
    let address = result?;
    // The kernel returns -errno in rax.
    if address > u64::MAX - 4096 {
        return Err(Errno::from_raw(-(address as i64) as i32));
    }
    Ok(address)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relocates_plain_and_rip_relative_instructions_and_does_calls_by_hand() {
        let at = 0x5555_0000_1000;
        let scratch = 0x5555_1000_0000;
        let pad = |bytes: &[u8]| {
            let mut b: Window = [0x90; std::mem::size_of::<Window>()];
            b[MAX_BACK..MAX_BACK + bytes.len()].copy_from_slice(bytes);
            b
        };
        let instructions = [
            pad(&[0x48, 0x89, 0xE5]),                         // mov rbp, rsp
            pad(&[0x48, 0x8B, 0x05, 0x10, 0x00, 0x00, 0x00]), // mov rax, [rip+0x10]
            pad(&[0xE8, 0x00, 0x01, 0x00, 0x00]),             // call rel32
            pad(&[0xFF, 0xD0]),                               // call rax
        ];
        let addresses = [at, at + 0x10, at + 0x20, at + 0x30];
        let (resume, code) = plan(&addresses, &instructions, &|_| true, scratch);
        assert!(matches!(resume[0], Resume::Slot(s) if s == scratch));
        assert_eq!(&code[..3], &[0x48, 0x89, 0xE5]);
        assert_eq!(code[3], 0xE9, "jumps back");
        let back = i32::from_le_bytes(code[4..8].try_into().unwrap());
        assert_eq!(scratch as i64 + 8 + i64::from(back), (at + 3) as i64);

        // The relocated load still reads the same absolute address.
        let Resume::Slot(slot) = resume[1] else {
            panic!("{:?}", resume[1])
        };
        let relocated = &code[SLOT as usize..SLOT as usize + 7];
        let disp = i32::from_le_bytes(relocated[3..7].try_into().unwrap());
        assert_eq!(
            slot as i64 + 7 + i64::from(disp),
            (at + 0x10 + 7 + 0x10) as i64
        );

        assert!(matches!(
            resume[2],
            Resume::Call { target, return_to } if target == at + 0x20 + 5 + 0x100 && return_to == at + 0x25
        ));
        assert!(matches!(resume[3], Resume::Step));
    }
}
