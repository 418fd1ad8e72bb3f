//! Breakpoint insertion cost, the two ways ptrace allows: one `PTRACE_PEEKDATA`/`POKEDATA` pair per
//! address, or a read and a write of each touched page through `/proc/<pid>/mem` (what the engine
//! does). Run with `cargo bench --bench insertion`; it prints µs per breakpoint for both.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Instant;

use nix::sys::ptrace;
use nix::sys::wait::waitpid;
use nix::unistd::Pid;

const BREAKPOINTS: usize = 10_000;

/// A stopped, traced `cargo` (tens of MiB of text, like a test binary with its dependencies) whose
/// code we may scribble on: it never runs again.
fn stopped_tracee() -> (std::process::Child, Pid, u64, u64) {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command.arg("--version");
    // SAFETY: only the async-signal-safe ptrace(TRACEME) runs between fork and exec.
    unsafe {
        command.pre_exec(|| ptrace::traceme().map_err(std::io::Error::from));
    }
    let child = command.spawn().expect("cargo starts");
    let pid = Pid::from_raw(child.id() as i32);
    waitpid(pid, None).expect("stopped at exec");
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let text = maps
        .lines()
        .find(|l| l.split_whitespace().nth(1).is_some_and(|p| p.contains('x')))
        .expect("an executable mapping");
    let range = text.split_whitespace().next().unwrap();
    let (start, end) = range.split_once('-').unwrap();
    let parse = |s: &str| u64::from_str_radix(s, 16).unwrap();
    (child, pid, parse(start), parse(end))
}

/// `BREAKPOINTS` addresses spread evenly over `span` bytes of text.
fn addresses(start: u64, end: u64, span: u64) -> Vec<u64> {
    let end = end.min(start + span);
    let step = ((end - start) / BREAKPOINTS as u64).max(1);
    (0..BREAKPOINTS as u64)
        .map(|i| start + i * step)
        .filter(|&a| a < end)
        .collect()
}

fn poke_each(pid: Pid, addresses: &[u64]) -> f64 {
    let started = Instant::now();
    for &address in addresses {
        let word = ptrace::read(pid, address as ptrace::AddressType).unwrap();
        let patched = (word & !0xFF) | 0xCC;
        ptrace::write(pid, address as ptrace::AddressType, patched).unwrap();
    }
    started.elapsed().as_secs_f64() * 1e6 / addresses.len() as f64
}

fn page_writes(pid: Pid, addresses: &[u64]) -> f64 {
    let mem = OpenOptions::new()
        .read(true)
        .write(true)
        .open(format!("/proc/{pid}/mem"))
        .unwrap();
    let started = Instant::now();
    let mut page = vec![0u8; 4096];
    let mut i = 0;
    while i < addresses.len() {
        let base = addresses[i] & !4095;
        mem.read_exact_at(&mut page, base).unwrap();
        while i < addresses.len() && addresses[i] < base + 4096 {
            page[(addresses[i] - base) as usize] = 0xCC;
            i += 1;
        }
        mem.write_all_at(&page, base).unwrap();
    }
    started.elapsed().as_secs_f64() * 1e6 / addresses.len() as f64
}

fn main() {
    // A crate's own statements sit close together (tens per page); spread over a whole binary they
    // are far apart. Both ends are measured.
    for (density, span) in [
        ("dense, 1 MiB", 1 << 20),
        ("sparse, whole text", u64::MAX / 2),
    ] {
        for (name, insert) in [
            (
                "PTRACE_POKEDATA per address",
                poke_each as fn(Pid, &[u64]) -> f64,
            ),
            ("/proc/<pid>/mem per page", page_writes),
        ] {
            let (mut child, pid, start, end) = stopped_tracee();
            let addresses = addresses(start, end, span);
            let per_breakpoint = insert(pid, &addresses);
            println!(
                "{density:<20} {name:<30} {per_breakpoint:>8.3} µs per breakpoint ({} breakpoints)",
                addresses.len(),
            );
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
