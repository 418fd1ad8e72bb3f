//! The breakpoint table of one executable and the patching of int3 bytes into a tracee's memory
//! through `/proc/<pid>/mem`, a page at a time (one `PTRACE_POKEDATA` per address is ~50× slower).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;

use nix::unistd::Pid;

use super::EngineError;

const INT3: u8 = 0xCC;
const PAGE: u64 = 4096;

/// Link-time addresses of all breakpoints, sorted; a breakpoint is named by its index here.
pub(super) struct Table {
    addresses: Vec<u64>,
    original: Vec<u8>,
    /// The original instruction bytes at each address, for out-of-line execution.
    instructions: Vec<[u8; 16]>,
}

impl Table {
    pub(super) fn new(mut addresses: Vec<u64>) -> Self {
        addresses.sort_unstable();
        addresses.dedup();
        let original = vec![0; addresses.len()];
        let instructions = vec![[0; 16]; addresses.len()];
        Self {
            addresses,
            original,
            instructions,
        }
    }

    pub(super) fn address(&self, index: usize) -> u64 {
        self.addresses[index]
    }

    pub(super) fn instructions(&self) -> &[[u8; 16]] {
        &self.instructions
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
        })
    }

    /// A forked child: same breakpoints in the same state, its own copy of memory.
    pub(super) fn fork(&self, child: Pid) -> Result<Self, EngineError> {
        Self::open(child, self.bias, self.armed.clone())
    }

    /// Writes int3 over every breakpoint address, one read and one write per page, and remembers
    /// the original bytes in the table (the executable is the same for every space).
    pub(super) fn arm_all(&mut self, table: &mut Table) -> Result<(), EngineError> {
        let mut page_buf = vec![0u8; PAGE as usize + 16];
        let mut start = 0;
        while start < table.addresses.len() {
            let page = (table.addresses[start] + self.bias) & !(PAGE - 1);
            let mut end = start;
            while end < table.addresses.len() && (table.addresses[end] + self.bias) < page + PAGE {
                end += 1;
            }
            // The page and the first bytes of the next, as instructions may cross the boundary;
            // the next page is still pristine since pages are armed in address order.
            self.mem
                .read_exact_at(&mut page_buf[..PAGE as usize], page)
                .map_err(|source| self.error(source))?;
            let tail = &mut page_buf[PAGE as usize..];
            if self.mem.read_exact_at(tail, page + PAGE).is_err() {
                tail.fill(0);
            }
            for index in start..end {
                let offset = (table.addresses[index] + self.bias - page) as usize;
                table.instructions[index].copy_from_slice(&page_buf[offset..offset + 16]);
            }
            for index in start..end {
                let offset = (table.addresses[index] + self.bias - page) as usize;
                table.original[index] = page_buf[offset];
                page_buf[offset] = INT3;
            }
            self.mem
                .write_all_at(&page_buf[..PAGE as usize], page)
                .map_err(|source| self.error(source))?;
            self.armed[start..end].fill(true);
            start = end;
        }
        Ok(())
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
