//! The breakpoint table of one executable and the patching of int3 bytes and trampoline jumps into a
//! tracee's memory through `/proc/<pid>/mem`, a page at a time (one `PTRACE_POKEDATA` per address is
//! ~50× slower), plus the reading of its counters.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;

use nix::unistd::Pid;

use super::lanes::Lanes;
use super::sites::{Site, Window, MAX_BACK};
use super::EngineError;

const INT3: u8 = 0xCC;
const PAGE: u64 = 4096;

/// Link-time addresses of all breakpoints, sorted; a breakpoint is named by its index here.
pub(super) struct Table {
    addresses: Vec<u64>,
    original: Vec<u8>,
    /// The original bytes around each address, for moving instructions out of line.
    windows: Vec<Window>,
}

impl Table {
    pub(super) fn new(mut addresses: Vec<u64>) -> Self {
        addresses.sort_unstable();
        addresses.dedup();
        let original = vec![0; addresses.len()];
        let windows = vec![[0; std::mem::size_of::<Window>()]; addresses.len()];
        Self {
            addresses,
            original,
            windows,
        }
    }

    pub(super) fn address(&self, index: usize) -> u64 {
        self.addresses[index]
    }

    pub(super) fn windows(&self) -> &[Window] {
        &self.windows
    }

    pub(super) fn len(&self) -> usize {
        self.addresses.len()
    }

    pub(super) fn lookup(&self, link_address: u64) -> Option<usize> {
        self.addresses.binary_search(&link_address).ok()
    }
}

/// One address space (a process and its threads, or a vfork child sharing it).
pub(super) struct Space {
    pub(super) pid: Pid,
    mem: File,
    pub(super) bias: u64,
    pub(super) armed: Vec<bool>,
    /// Threads of this space currently single-stepping over breakpoint `index`, by index.
    pub(super) steppers: Vec<(usize, u32)>,
    /// The bytes of one lane's counters, kept from reading to reading.
    scratch: Vec<u8>,
    /// Traps lifted at the count cap during the current test, put back when the next one starts.
    pub(super) lifted: Vec<usize>,
    /// The threads' counter lanes, when trampolines count.
    pub(super) lanes: Option<Lanes>,
}

impl Space {
    pub(super) fn open(pid: Pid, bias: u64, armed: Vec<bool>) -> Result<Self, EngineError> {
        let path = format!("/proc/{pid}/mem");
        let mem = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|source| EngineError::Memory {
                pid: pid.as_raw(),
                source,
            })?;
        Ok(Self {
            pid,
            mem,
            bias,
            armed,
            steppers: Vec::new(),
            scratch: Vec::new(),
            lifted: Vec::new(),
            lanes: None,
        })
    }

    /// A forked child: same breakpoints in the same state, its own copy of memory and counters,
    /// where only the forking thread (on lane `running`) lives on.
    pub(super) fn fork(&self, child: Pid, running: Option<u32>) -> Result<Self, EngineError> {
        let mut space = Self::open(child, self.bias, self.armed.clone())?;
        space.lifted = self.lifted.clone();
        space.lanes = match (&self.lanes, running) {
            (Some(lanes), Some(running)) => Some(lanes.forked(running)),
            _ => None,
        };
        Ok(space)
    }

    /// The pages holding breakpoints, each with the range of breakpoint indexes in it.
    fn pages(&self, table: &Table) -> Vec<(u64, std::ops::Range<usize>)> {
        let mut pages = Vec::new();
        let mut start = 0;
        while start < table.addresses.len() {
            let page = (table.addresses[start] + self.bias) & !(PAGE - 1);
            let end =
                start + table.addresses[start..].partition_point(|&a| a + self.bias < page + PAGE);
            pages.push((page, start..end));
            start = end;
        }
        pages
    }

    /// Reads the original bytes around every breakpoint into the table (the executable is the
    /// same for every space), one read per page plus the bytes a run may reach on either side.
    pub(super) fn read_windows(&self, table: &mut Table) -> Result<(), EngineError> {
        let size = std::mem::size_of::<Window>();
        let mut buf = vec![0u8; MAX_BACK + PAGE as usize + size];
        for (page, range) in self.pages(table) {
            let from = page - MAX_BACK as u64;
            self.mem
                .read_exact_at(&mut buf[MAX_BACK..MAX_BACK + PAGE as usize], page)
                .map_err(|source| self.error(source))?;
            // The neighbours may be unmapped (the first or last page of the code).
            if self.mem.read_exact_at(&mut buf[..MAX_BACK], from).is_err() {
                buf[..MAX_BACK].fill(0);
            }
            let tail = &mut buf[MAX_BACK + PAGE as usize..];
            if self.mem.read_exact_at(tail, page + PAGE).is_err() {
                tail.fill(0);
            }
            for index in range {
                let offset = (table.addresses[index] + self.bias - from) as usize - MAX_BACK;
                table.windows[index].copy_from_slice(&buf[offset..offset + size]);
                table.original[index] = buf[offset + MAX_BACK];
            }
        }
        Ok(())
    }

    /// Writes int3 over every `Trap` site and each jump patch (`patches[k] = (index, bytes)`, in
    /// index order) over its run: one read and one write per page, and a write of its own for a
    /// run that crosses a page boundary. Runs while the tracee is stopped and single-threaded, so
    /// no thread can see half a jump.
    pub(super) fn patch_all(
        &mut self,
        table: &Table,
        sites: &[Site],
        patches: &[(usize, Vec<u8>)],
    ) -> Result<(), EngineError> {
        let mut buf = vec![0u8; PAGE as usize];
        let mut next_patch = 0;
        for (page, range) in self.pages(table) {
            self.mem
                .read_exact_at(&mut buf, page)
                .map_err(|source| self.error(source))?;
            let mut crossing = Vec::new();
            for index in range {
                match &sites[index] {
                    Site::Trap => {
                        let offset = (table.addresses[index] + self.bias - page) as usize;
                        buf[offset] = INT3;
                        self.armed[index] = true;
                    }
                    Site::Jump { back, .. } | Site::Edge { back, .. } => {
                        while patches.get(next_patch).is_some_and(|(i, _)| *i < index) {
                            next_patch += 1;
                        }
                        let Some((_, bytes)) = patches.get(next_patch).filter(|(i, _)| *i == index)
                        else {
                            continue;
                        };
                        let start = table.addresses[index] + self.bias - u64::from(*back);
                        if start >= page && start + bytes.len() as u64 <= page + PAGE {
                            let offset = (start - page) as usize;
                            buf[offset..offset + bytes.len()].copy_from_slice(bytes);
                        } else {
                            crossing.push((start, bytes));
                        }
                    }
                    Site::Covered { .. }
                    | Site::Called { .. }
                    | Site::Taken { .. }
                    | Site::Lost => {}
                }
            }
            self.mem
                .write_all_at(&buf, page)
                .map_err(|source| self.error(source))?;
            for (start, bytes) in crossing {
                self.mem
                    .write_all_at(bytes, start)
                    .map_err(|source| self.error(source))?;
            }
        }
        Ok(())
    }

    /// Adds to `gained` (one entry per breakpoint) what the counters gained since the last
    /// reading, summed over the threads' lanes (reading those a thread held since then); `None`
    /// without lanes.
    pub(super) fn read_counters(&mut self, gained: &mut [u64]) -> Option<Result<(), EngineError>> {
        let lanes = self.lanes.as_mut()?;
        self.scratch.resize(gained.len() * 8, 0);
        for lane in lanes.take_changed() {
            if let Err(source) = self
                .mem
                .read_exact_at(&mut self.scratch, lanes.address(lane))
            {
                return Some(Err(EngineError::Memory {
                    pid: self.pid.as_raw(),
                    source,
                }));
            }
            lanes.update(lane, &self.scratch, gained);
        }
        Some(Ok(()))
    }

    pub(super) fn disarm(&mut self, table: &Table, index: usize) -> Result<(), EngineError> {
        if self.armed[index] {
            self.write_byte(table.addresses[index], table.original[index])?;
            self.armed[index] = false;
        }
        Ok(())
    }

    pub(super) fn arm(&mut self, table: &Table, index: usize) -> Result<(), EngineError> {
        if !self.armed[index] {
            self.write_byte(table.addresses[index], INT3)?;
            self.armed[index] = true;
        }
        Ok(())
    }

    /// Writes `bytes` at a runtime address and returns what was there.
    pub(super) fn replace(&self, address: u64, bytes: &[u8]) -> Result<Vec<u8>, EngineError> {
        let mut old = vec![0; bytes.len()];
        self.mem
            .read_exact_at(&mut old, address)
            .and_then(|()| self.mem.write_all_at(bytes, address))
            .map_err(|source| self.error(source))?;
        Ok(old)
    }

    fn write_byte(&self, link_address: u64, byte: u8) -> Result<(), EngineError> {
        self.mem
            .write_all_at(&[byte], link_address + self.bias)
            .map_err(|source| self.error(source))
    }

    fn error(&self, source: std::io::Error) -> EngineError {
        EngineError::Memory {
            pid: self.pid.as_raw(),
            source,
        }
    }
}
