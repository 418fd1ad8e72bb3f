//! Per-thread counter lanes: each thread of a traced process adds to its own copy of the counters
//! (a trampoline's `inc qword gs:[8 × breakpoint]`, with the thread's `gs` base set to its lane).
//! No thread shares a lane with another running one, so the increment needs no `lock` (which
//! drains the store buffer at every count; see bench/README); a process's count of a breakpoint
//! is the sum over its lanes.
//!
//! Lanes are handed out when threads start and taken back when they end: a lane then holds the
//! counts of every thread that had it, which is all a sum needs. The lanes of a process lie one
//! after another, so one read gets them all. x86_64 Linux programs leave `gs` to us: glibc and
//! Rust's std keep thread-locals at `fs`, and a program that set `gs` itself would not be counted
//! right.

use nix::errno::Errno;
use nix::sys::ptrace;
use nix::unistd::Pid;

/// Lanes mapped per process: threads running at once beyond this share their creator's lane
/// (and may lose counts; the session warns). Unused lanes cost address space only; where even
/// that is short (a limit on it), [`FEWER_LANES`] are tried.
pub(super) const LANES: u32 = 256;
pub(super) const FEWER_LANES: u32 = 16;

/// The lanes of one address space.
#[derive(Clone, Debug)]
pub(super) struct Lanes {
    /// Run-time address of lane 0; lane `k` starts `k * stride` bytes after it.
    base: u64,
    stride: u64,
    /// Lanes mapped.
    count: u32,
    /// Lanes `0..used` have been handed out at some time and may hold counts.
    used: u32,
    free: Vec<u32>,
}

impl Lanes {
    pub(super) fn new(base: u64, stride: u64, count: u32) -> Self {
        Lanes {
            base,
            stride,
            count,
            used: 0,
            free: Vec::new(),
        }
    }

    /// A lane for a thread that starts, `None` when all are running.
    pub(super) fn take(&mut self) -> Option<u32> {
        if let Some(lane) = self.free.pop() {
            return Some(lane);
        }
        (self.used < self.count).then(|| {
            self.used += 1;
            self.used - 1
        })
    }

    /// The lane of a thread that ended.
    pub(super) fn give_back(&mut self, lane: u32) {
        if lane < self.used && !self.free.contains(&lane) {
            self.free.push(lane);
        }
    }

    pub(super) fn count(&self) -> u32 {
        self.count
    }

    pub(super) fn stride(&self) -> usize {
        self.stride as usize
    }

    pub(super) fn address(&self, lane: u32) -> u64 {
        self.base + u64::from(lane) * self.stride
    }

    /// Where the lanes that may hold counts are: their start and length in bytes.
    pub(super) fn span(&self) -> (u64, usize) {
        (self.base, (u64::from(self.used) * self.stride) as usize)
    }

    /// A forked child's lanes: a copy of its parent's memory, where only the forking thread (on
    /// lane `running`) lives on.
    pub(super) fn forked(&self, running: u32) -> Self {
        Lanes {
            base: self.base,
            stride: self.stride,
            count: self.count,
            used: self.used,
            free: (0..self.used).filter(|&k| k != running).collect(),
        }
    }
}

/// The per-breakpoint sums of `lanes`, laid out one after another `stride` bytes apart (`count`
/// counters of 8 bytes each at the start of each).
pub(super) fn sum(bytes: &[u8], stride: usize, count: usize) -> Vec<u64> {
    let mut sums = vec![0u64; count];
    for lane in bytes.chunks(stride) {
        for (sum, value) in sums.iter_mut().zip(lane.chunks_exact(8)) {
            *sum = sum.wrapping_add(u64::from_le_bytes(value.try_into().expect("8 bytes")));
        }
    }
    sums
}

/// Points the `gs` base of stopped thread `pid` at `address`.
pub(super) fn assign(pid: Pid, address: u64) -> Result<(), Errno> {
    let mut regs = ptrace::getregs(pid)?;
    regs.gs_base = address;
    ptrace::setregs(pid, regs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_are_reused_after_their_threads_end() {
        let mut lanes = Lanes::new(0x1000, 0x100, LANES);
        assert_eq!(lanes.take(), Some(0));
        assert_eq!(lanes.take(), Some(1));
        lanes.give_back(0);
        assert_eq!(lanes.take(), Some(0), "the ended thread's lane");
        assert_eq!(lanes.take(), Some(2));
        assert_eq!(lanes.address(2), 0x1200);
        assert_eq!(lanes.span(), (0x1000, 0x300));
    }

    #[test]
    fn no_lane_is_shared_while_lanes_last() {
        let mut lanes = Lanes::new(0, 8, LANES);
        for k in 0..LANES {
            assert_eq!(lanes.take(), Some(k));
        }
        assert_eq!(lanes.take(), None);
        lanes.give_back(7);
        lanes.give_back(7);
        assert_eq!(lanes.take(), Some(7));
        assert_eq!(
            lanes.take(),
            None,
            "a lane given back twice is handed out once"
        );
    }

    #[test]
    fn a_forked_child_keeps_the_forking_threads_lane() {
        let mut parent = Lanes::new(0, 8, LANES);
        for _ in 0..3 {
            parent.take();
        }
        let mut child = parent.forked(1);
        let mut handed = vec![child.take().unwrap(), child.take().unwrap()];
        handed.sort_unstable();
        assert_eq!(handed, [0, 2], "all but lane 1, before new ones");
        assert_eq!(child.take(), Some(3));
    }

    #[test]
    fn a_process_counts_the_sum_of_its_lanes() {
        // Two lanes of 3 counters, each lane padded to 32 bytes.
        let mut bytes = vec![0u8; 64];
        for (k, value) in [(0, 5u64), (1, 1), (2, 7)] {
            bytes[8 * k..8 * k + 8].copy_from_slice(&value.to_le_bytes());
        }
        bytes[32..40].copy_from_slice(&2u64.to_le_bytes());
        bytes[48..56].copy_from_slice(&3u64.to_le_bytes());
        assert_eq!(sum(&bytes, 32, 3), [7, 1, 10]);
        assert_eq!(sum(&[], 32, 3), [0, 0, 0]);
    }
}
