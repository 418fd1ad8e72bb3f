//! Per-thread counter lanes: each thread of a traced process adds to its own copy of the counters
//! (a trampoline's `inc qword gs:[8 × breakpoint]`, with the thread's `gs` base set to its lane).
//! No thread shares a lane with another running one, so the increment needs no `lock` (which
//! drains the store buffer at every count; see bench/README); a process's count of a breakpoint
//! is the sum over its lanes.
//!
//! Lanes are handed out when threads start and taken back when they end: a lane then holds the
//! counts of every thread that had it, which is all a sum needs. A reading reads only the lanes
//! a thread held since the one before. x86_64 Linux programs leave `gs` to us: glibc and Rust's
//! std keep thread-locals at `fs`, and a program that set `gs` itself would not be counted right.

use nix::errno::Errno;
use nix::sys::ptrace;
use nix::unistd::Pid;

/// Lanes mapped per process: threads running at once beyond this share their creator's lane
/// (and may lose counts; the session warns). Unused lanes cost address space only; where even
/// that is short (a limit on it), [`FEWER_LANES`] are tried.
pub(super) const LANES: u32 = 256;
pub(super) const FEWER_LANES: u32 = 16;

/// The lanes of one address space, and what was read of them.
#[derive(Clone, Debug)]
pub(super) struct Lanes {
    /// Run-time address of lane 0; lane `k` starts `k * stride` bytes after it.
    base: u64,
    stride: u64,
    /// Lanes mapped.
    count: u32,
    free: Vec<u32>,
    /// Per lane handed out so far: whether a thread holds it now, and whether one held it since
    /// the last reading. Only those lanes can have changed, so only they are read: a suite that
    /// once ran many threads at once does not pay for all their lanes at every reading.
    held: Vec<bool>,
    touched: Vec<bool>,
    /// Per lane, its counters as last read.
    seen: Vec<Vec<u64>>,
}

impl Lanes {
    pub(super) fn new(base: u64, stride: u64, count: u32) -> Self {
        Lanes {
            base,
            stride,
            count,
            free: Vec::new(),
            held: Vec::new(),
            touched: Vec::new(),
            seen: Vec::new(),
        }
    }

    /// A lane for a thread that starts, `None` when all are running.
    pub(super) fn take(&mut self) -> Option<u32> {
        let lane = match self.free.pop() {
            Some(lane) => lane,
            None if (self.held.len() as u32) < self.count => {
                self.held.push(false);
                self.touched.push(false);
                self.seen.push(Vec::new());
                self.held.len() as u32 - 1
            }
            None => return None,
        };
        self.held[lane as usize] = true;
        self.touched[lane as usize] = true;
        Some(lane)
    }

    /// The lane of a thread that ended: read once more, for what it counted since the last
    /// reading.
    pub(super) fn give_back(&mut self, lane: u32) {
        if self.held.get(lane as usize) == Some(&true) {
            self.held[lane as usize] = false;
            self.touched[lane as usize] = true;
            self.free.push(lane);
        }
    }

    pub(super) fn count(&self) -> u32 {
        self.count
    }

    pub(super) fn address(&self, lane: u32) -> u64 {
        self.base + u64::from(lane) * self.stride
    }

    /// The lanes whose counters may have changed since the last reading (from then on, only
    /// those still held).
    pub(super) fn take_changed(&mut self) -> Vec<u32> {
        let lanes = (0..self.held.len())
            .filter(|&k| self.held[k] || self.touched[k])
            .map(|k| k as u32)
            .collect();
        self.touched.fill(false);
        lanes
    }

    /// Adds to `gained` what lane `lane` counted since its last reading, from its counters as
    /// just read (`bytes`, 8 little-endian bytes each). Done in place: a reading happens at every
    /// test start, while the process waits, over every breakpoint.
    pub(super) fn update(&mut self, lane: u32, bytes: &[u8], gained: &mut [u64]) {
        let seen = &mut self.seen[lane as usize];
        if seen.len() < bytes.len() / 8 {
            seen.resize(bytes.len() / 8, 0);
        }
        for ((chunk, seen), gained) in bytes.chunks_exact(8).zip(seen).zip(gained) {
            let value = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
            *gained = gained.wrapping_add(value.wrapping_sub(*seen));
            *seen = value;
        }
    }

    /// A forked child's lanes: a copy of its parent's memory, where only the forking thread (on
    /// lane `running`) lives on; all of them are read at its first reading.
    pub(super) fn forked(&self, running: u32) -> Self {
        let used = self.held.len();
        let mut held = vec![false; used];
        if let Some(h) = held.get_mut(running as usize) {
            *h = true;
        }
        Lanes {
            free: (0..used as u32).filter(|&k| k != running).collect(),
            held,
            touched: vec![true; used],
            ..self.clone()
        }
    }
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
    fn only_lanes_a_thread_held_since_the_last_reading_are_read() {
        let mut lanes = Lanes::new(0, 8, LANES);
        for _ in 0..4 {
            lanes.take();
        }
        lanes.give_back(1);
        lanes.give_back(2);
        assert_eq!(lanes.take_changed(), [0, 1, 2, 3]);
        assert_eq!(lanes.take_changed(), [0, 3], "1 and 2 have not run since");
        lanes.take();
        assert_eq!(lanes.take_changed(), [0, 2, 3], "2 handed out again");
        // A thread that ends after a reading: its lane is read once more, then no longer.
        lanes.give_back(3);
        assert_eq!(lanes.take_changed(), [0, 2, 3]);
        assert_eq!(lanes.take_changed(), [0, 2]);
    }

    fn bytes(values: &[u64]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    #[test]
    fn a_process_counts_the_sum_of_its_lanes() {
        let mut lanes = Lanes::new(0, 8, LANES);
        lanes.take();
        lanes.take();
        let mut gained = vec![0; 3];
        lanes.update(0, &bytes(&[5, 1, 7]), &mut gained);
        lanes.update(1, &bytes(&[2, 0, 3]), &mut gained);
        assert_eq!(gained, [7, 1, 10]);
        // Lane 1 read again later: only what it gained since is added.
        let mut gained = vec![0; 3];
        lanes.update(1, &bytes(&[4, 0, 3]), &mut gained);
        assert_eq!(gained, [2, 0, 0]);
    }

    #[test]
    fn a_forked_child_keeps_the_forking_threads_lane_and_reads_all_at_first() {
        let mut parent = Lanes::new(0, 8, LANES);
        for _ in 0..3 {
            parent.take();
        }
        parent.update(0, &bytes(&[1]), &mut [0]);
        let mut child = parent.forked(1);
        assert_eq!(
            child.take_changed(),
            [0, 1, 2],
            "its memory is a copy: everything may differ"
        );
        assert_eq!(
            child.take_changed(),
            [1],
            "only the forking thread lives on"
        );
        // Its counters at the fork were the parent's: 3 in lane 0 (read as 1 before), of which
        // the child's first reading gains 2, the parent's part, which the child leaves out.
        let mut gained = [0];
        child.update(0, &bytes(&[3]), &mut gained);
        assert_eq!(gained, [2]);
        child.update(0, &bytes(&[4]), &mut gained);
        assert_eq!(gained, [3], "then only its own");
        let mut handed = vec![child.take().unwrap(), child.take().unwrap()];
        handed.sort_unstable();
        assert_eq!(handed, [0, 2], "all but lane 1, before new ones");
        assert_eq!(child.take(), Some(3));
    }
}
