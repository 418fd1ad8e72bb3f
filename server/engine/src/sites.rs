//! Decides how each breakpoint address is counted: by a `jmp rel32` to a counter trampoline written
//! over its instruction (or a short run nothing can jump into), from another's count, or by int3;
//! and how each taken edge (a pseudo-address inside a conditional jump) is: by a trampoline that
//! moves the jump, or not at all.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use gimli::UnwindSection;
use iced_x86::{
    Code, Decoder, DecoderOptions, FlowControl, Instruction, OpKind, Register, RflagsBits,
};
use object::{Object, ObjectSection, ObjectSymbol, ObjectSymbolTable, SectionKind, SymbolKind};

use super::calls::CallMap;

/// Changes whenever [`classify`] may choose differently for the same code, so that cached sites
/// of an older classifier are not reused.
pub const CLASSIFIER_VERSION: u32 = 14;

/// Bytes a `jmp rel32` takes.
pub(crate) const JUMP_LEN: usize = 5;
/// Longest straight line of code, in instructions, from a counted breakpoint to one it counts.
const MAX_STRAIGHT: usize = 256;
/// Longest run of instructions moved into a trampoline.
pub(crate) const MAX_WINDOW: usize = 32;
/// How far before its breakpoint a run may start (a short instruction that ends a block is moved
/// with the ones before it).
pub(crate) const MAX_BACK: usize = 16;
/// The original bytes kept per breakpoint: `MAX_BACK` before its address, `MAX_WINDOW` from it.
pub(crate) type Window = [u8; MAX_BACK + MAX_WINDOW];

/// How one breakpoint address is counted.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Site {
    /// The `len` bytes from `back` bytes before the address (whole instructions, at least
    /// [`JUMP_LEN`]) move into a trampoline that counts this breakpoint. `also` are the
    /// breakpoints whose counts derive from its count (see [`Derivations`]), which must trap
    /// if the trampoline cannot be built. `moved` counts the instructions. `flags`: the status
    /// flags may be read before they are next written, so the trampoline must keep them.
    /// `taken`: the breakpoint whose counter the trampoline adds to when the last moved
    /// instruction, a conditional jump, is taken (its site is [`Site::Taken`]).
    Jump {
        back: u8,
        len: u8,
        moved: u8,
        also: Vec<u32>,
        flags: bool,
        taken: Option<u32>,
    },
    /// The taken edge of a conditional jump (see `branches::edge`: the breakpoint's address is
    /// one byte into the jump), counted by the trampoline of breakpoint `by`, whose run ends with
    /// the jump. `flags`: the status flags may be read at the jump's target.
    Taken { by: u32, flags: bool },
    /// The same, by a trampoline of its own that moves the `len` bytes from `back` bytes before
    /// the breakpoint's address (whole instructions around the jump: plain ones before it, and
    /// after it up to where a block ends) and counts only when the jump is taken. `flags`: as
    /// for `Taken`.
    Edge { back: u8, len: u8, flags: bool },
    /// A taken edge no trampoline can count: it is never counted and reads as a lower bound of 0
    /// (an edge's address must never hold an int3).
    Lost,
    /// Runs exactly as often as breakpoint `by`: it lies in that one's moved bytes or on the
    /// straight line of code after them.
    Covered { by: u32 },
    /// A function entry (or a breakpoint that ran as often as it) that runs as often as the
    /// breakpoints of `by` together, each of which runs straight on to a call of the function;
    /// these are all the ways into it.
    Called { by: Vec<u32> },
    /// Counted by an int3 trap, up to the count cap.
    Trap,
}

impl Site {
    /// Whether the breakpoint is a conditional jump's taken edge.
    pub fn is_edge(&self) -> bool {
        matches!(self, Site::Taken { .. } | Site::Edge { .. } | Site::Lost)
    }
}

/// What is known of an executable's code for deciding where a jump may be written.
#[derive(Debug, Default)]
pub struct ExeCode {
    /// Executable sections: (link address, bytes).
    sections: Vec<(u64, Vec<u8>)>,
    /// Read-only data sections (where jump tables live): (link address, bytes).
    rodata: Vec<(u64, Vec<u8>)>,
    /// Function symbols `[start, end)`, sorted by start.
    functions: Vec<(u64, u64)>,
    /// Exception landing pads (entered by the unwinder, not by a branch); `None` when some
    /// function's table could not be read, so that no run of instructions is ever moved.
    landing_pads: Option<HashSet<u64>>,
    /// The same, sorted, made when first asked for.
    sorted_pads: std::sync::OnceLock<Vec<u64>>,
    /// Functions decoded so far (`None`: undecodable), shared by branch finding, the bounds of
    /// lines' rows and the choice of counting sites, which look at the same functions.
    decoded: std::sync::Mutex<HashMap<(u64, u64), Decoded>>,
    /// Entries of the panics rustc calls for its own checks (overflow, bounds, division by zero,
    /// misalignment, unwinding out of a `nounwind` function): a branch to one is no source branch.
    checks: HashSet<u64>,
    /// Entries of `core::ptr::drop_in_place` instances (what a drop flag's branch calls).
    drops: HashSet<u64>,
    /// Entries of `FromResidual::from_residual` instances (what a `?` calls to return early).
    residuals: HashSet<u64>,
    /// Global offset table slots that hold a function's address (`call [rip+slot]`), from their
    /// `R_X86_64_RELATIVE` relocations: slot → address.
    got: HashMap<u64, u64>,
    /// Loaded at any address (PIE): every address stored in data has a dynamic relocation.
    position_independent: bool,
    /// Addresses that dynamic relocations put in data, and exported symbols.
    referenced: HashSet<u64>,
    /// The calls of the whole code, read when first asked for.
    call_map: std::sync::OnceLock<Option<CallMap>>,
}

/// Functions the branch finder recognises by name (unit tests mark them by address).
#[cfg(test)]
pub(crate) enum Callee {
    Check,
    Drop,
    Residual,
}

/// Names (as they appear in both manglings) of the panics behind rustc's own checks.
const CHECK_PANICS: [&str; 7] = [
    "panic_const",
    "panic_bounds_check",
    "panic_misaligned_pointer_dereference",
    "panic_null_pointer_dereference",
    "panic_nounwind",
    "panic_cannot_unwind",
    "panic_in_cleanup",
];

impl ExeCode {
    /// Reads the code, function symbols and landing pads of an ELF executable.
    pub fn read(exe: &Path) -> std::io::Result<ExeCode> {
        let data = std::fs::read(exe)?;
        let file = object::File::parse(data.as_slice())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        let of_kind = |kinds: &[SectionKind]| {
            file.sections()
                .filter(|s| kinds.contains(&s.kind()))
                .filter_map(|s| Some((s.address(), s.data().ok()?.to_vec())))
                .collect()
        };
        let sections = of_kind(&[SectionKind::Text]);
        // The linker merges `.rodata` with string constants (flags `AMS`): read-only strings.
        let rodata = of_kind(&[SectionKind::ReadOnlyData, SectionKind::ReadOnlyString]);
        let mut functions: Vec<(u64, u64)> = Vec::new();
        let (mut checks, mut drops, mut residuals) =
            (HashSet::new(), HashSet::new(), HashSet::new());
        for symbol in file.symbols() {
            if symbol.kind() != SymbolKind::Text || symbol.size() == 0 {
                continue;
            }
            functions.push((symbol.address(), symbol.address() + symbol.size()));
            let name = symbol.name().unwrap_or_default();
            if CHECK_PANICS.iter().any(|check| name.contains(check)) {
                checks.insert(symbol.address());
            } else if name.contains("13drop_in_place") {
                drops.insert(symbol.address());
            } else if name.contains("13from_residual") {
                residuals.insert(symbol.address());
            }
        }
        functions.sort_unstable();
        functions.dedup_by_key(|f| f.0);
        let mut got = HashMap::new();
        let mut referenced = HashSet::new();
        let dynamic_symbol = |index| {
            file.dynamic_symbol_table()
                .and_then(|table| table.symbol_by_index(index).ok())
                .map(|symbol| symbol.address())
        };
        for (slot, relocation) in file.dynamic_relocations().into_iter().flatten() {
            let mut value = relocation.addend() as u64;
            if let object::RelocationTarget::Symbol(index) = relocation.target() {
                value = value.wrapping_add(dynamic_symbol(index).unwrap_or(0));
            }
            referenced.insert(value);
            if relocation.flags()
                == (object::RelocationFlags::Elf {
                    r_type: object::elf::R_X86_64_RELATIVE,
                })
            {
                got.insert(slot, value);
            }
        }
        referenced.extend(
            file.dynamic_symbols()
                .filter(|s| s.is_definition())
                .map(|s| s.address()),
        );
        Ok(ExeCode {
            sections,
            rodata,
            functions,
            landing_pads: landing_pads(&file),
            checks,
            drops,
            residuals,
            got,
            position_independent: file.kind() == object::ObjectKind::Dynamic,
            referenced,
            call_map: std::sync::OnceLock::new(),
            sorted_pads: std::sync::OnceLock::new(),
            decoded: Default::default(),
        })
    }

    fn from_parts(
        sections: Vec<(u64, Vec<u8>)>,
        functions: Vec<(u64, u64)>,
        landing_pads: Option<HashSet<u64>>,
    ) -> ExeCode {
        ExeCode {
            sections,
            functions,
            landing_pads,
            ..ExeCode::default()
        }
    }

    /// Marks `address` as the entry of a function of `kind`.
    #[cfg(test)]
    pub(crate) fn with_callee(mut self, address: u64, kind: Callee) -> ExeCode {
        match kind {
            Callee::Check => self.checks.insert(address),
            Callee::Drop => self.drops.insert(address),
            Callee::Residual => self.residuals.insert(address),
        };
        self
    }

    /// Marks the code as loaded at any address (see [`ExeCode::position_independent`]).
    #[cfg(test)]
    pub(crate) fn position_independent_for_test(mut self) -> ExeCode {
        self.position_independent = true;
        self
    }

    /// Makes a relocation store `address` in data.
    #[cfg(test)]
    pub(crate) fn with_reference(mut self, address: u64) -> ExeCode {
        self.referenced.insert(address);
        self.position_independent = true;
        self
    }

    /// Makes GOT `slot` hold `callee`.
    #[cfg(test)]
    pub(crate) fn with_got(mut self, slot: u64, callee: u64) -> ExeCode {
        self.got.insert(slot, callee);
        self
    }

    /// One function of `bytes` at `base`, with these landing pads.
    #[cfg(test)]
    pub(crate) fn one_function(base: u64, bytes: &[u8], landing_pads: &[u64]) -> ExeCode {
        ExeCode::from_sections(
            vec![(base, bytes.to_vec())],
            vec![(base, base + bytes.len() as u64)],
            landing_pads,
        )
    }

    /// Code given as bytes at link addresses, with its function ranges and landing pads: what
    /// [`ExeCode::read`] takes from an executable (for tests of the engine and its users).
    pub fn from_sections(
        sections: Vec<(u64, Vec<u8>)>,
        functions: Vec<(u64, u64)>,
        landing_pads: &[u64],
    ) -> ExeCode {
        ExeCode::from_parts(
            sections,
            functions,
            Some(landing_pads.iter().copied().collect()),
        )
    }

    /// Where a call goes, for direct calls and calls through a global offset table slot.
    pub(crate) fn call_target(&self, call: &Instruction) -> Option<u64> {
        match call.op0_kind() {
            OpKind::NearBranch64 => Some(call.near_branch_target()),
            OpKind::Memory if call.is_ip_rel_memory_operand() => {
                self.got.get(&call.ip_rel_memory_address()).copied()
            }
            _ => None,
        }
    }

    /// The function address a global offset table slot holds.
    pub(crate) fn got_entry(&self, slot: u64) -> Option<u64> {
        self.got.get(&slot).copied()
    }

    /// Whether `address` is the entry of a panic behind one of rustc's own checks.
    pub(crate) fn is_check(&self, address: u64) -> bool {
        self.checks.contains(&address)
    }

    /// Whether `address` is the entry of a `drop_in_place` instance.
    pub(crate) fn is_drop(&self, address: u64) -> bool {
        self.drops.contains(&address)
    }

    /// Whether `address` is the entry of a `from_residual` instance.
    pub(crate) fn is_residual(&self, address: u64) -> bool {
        self.residuals.contains(&address)
    }

    /// Whether the unwinder may land at `ip` (always, when the tables could not be read).
    pub(crate) fn is_landing_pad(&self, ip: u64) -> bool {
        self.landing_pads.as_ref().is_none_or(|p| p.contains(&ip))
    }

    pub(crate) fn bytes(&self, start: u64, end: u64) -> Option<&[u8]> {
        within(&self.sections, start, end)
    }

    /// Whether the executable is loaded at any address (PIE), so that every code address stored
    /// in data has a dynamic relocation.
    pub(crate) fn position_independent(&self) -> bool {
        self.position_independent
    }

    /// Addresses that dynamic relocations store in data, and exported symbols.
    pub(crate) fn referenced(&self) -> &HashSet<u64> {
        &self.referenced
    }

    /// Reads the calls of the whole code now, rather than when counting sites first need them
    /// (on another core while something else runs).
    pub fn read_calls(&self) {
        self.call_map();
    }

    /// The calls of the whole code; `None` when some function does not decode.
    pub(crate) fn call_map(&self) -> Option<&CallMap> {
        self.call_map
            .get_or_init(|| {
                let started = std::time::Instant::now();
                let map = CallMap::read(self);
                tracing::debug!("calls of the whole code read in {:?}", started.elapsed());
                map
            })
            .as_ref()
    }

    /// All the code, cut so that decoding starts afresh at each function: the functions and the
    /// gaps between them, in address order.
    pub(crate) fn decoding_ranges(&self) -> Vec<(u64, u64)> {
        let mut ranges = Vec::new();
        for (start, data) in &self.sections {
            let end = start + data.len() as u64;
            let mut at = *start;
            let first = self.functions.partition_point(|f| f.0 < *start);
            for &(f_start, f_end) in self.functions[first..].iter().take_while(|f| f.0 < end) {
                if f_start > at {
                    ranges.push((at, f_start));
                }
                ranges.push((f_start, f_end.min(end)));
                at = at.max(f_end.min(end));
            }
            if at < end {
                ranges.push((at, end));
            }
        }
        ranges
    }

    /// The function symbol `[start, end)` that holds `address`.
    /// The landing pads in `[start, end)`, sorted; `None` when they are not known.
    pub(crate) fn landing_pads_within(&self, start: u64, end: u64) -> Option<Vec<u64>> {
        let pads = self.landing_pads.as_ref()?;
        let sorted = self.sorted_pads.get_or_init(|| {
            let mut sorted: Vec<u64> = pads.iter().copied().collect();
            sorted.sort_unstable();
            sorted
        });
        let from = sorted.partition_point(|&p| p < start);
        let to = sorted.partition_point(|&p| p < end);
        Some(sorted[from..to].to_vec())
    }

    /// The function `range` decoded, once per executable; `None` when it does not decode.
    pub(crate) fn decoded(&self, range: (u64, u64)) -> Decoded {
        let known = |code: &Self| {
            code.decoded
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&range)
                .cloned()
        };
        if let Some(function) = known(self) {
            return function;
        }
        let function = Function::decode(self, range).map(std::sync::Arc::new);
        self.decoded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(range, function.clone());
        function
    }

    pub(crate) fn function(&self, address: u64) -> Option<(u64, u64)> {
        let i = self.functions.partition_point(|f| f.0 <= address);
        let f = *self.functions.get(i.checked_sub(1)?)?;
        (address < f.1).then_some(f)
    }
}

fn within(sections: &[(u64, Vec<u8>)], start: u64, end: u64) -> Option<&[u8]> {
    sections.iter().find_map(|(address, data)| {
        let from = start.checked_sub(*address)? as usize;
        let to = end.checked_sub(*address)? as usize;
        data.get(from..to.min(data.len()))
    })
}

/// A function decoded once and shared; `None` when it does not decode.
pub(crate) type Decoded = Option<std::sync::Arc<Function>>;

/// One function, decoded: instruction starts and what may be jumped to.
#[derive(Debug)]
pub(crate) struct Function {
    pub(crate) instructions: Vec<Instruction>,
    /// Branch targets (direct ones and the entries of its jump tables); `None` when the function
    /// jumps through a register or memory in a way not recognised as a jump table, so that any
    /// instruction may be a target.
    pub(crate) targets: Option<HashSet<u64>>,
    /// The entries of its jump tables.
    pub(crate) table_targets: HashSet<u64>,
}

impl Function {
    pub(crate) fn decode(code: &ExeCode, (start, end): (u64, u64)) -> Option<Function> {
        let bytes = code.bytes(start, end)?;
        let mut decoder = Decoder::with_ip(64, bytes, start, DecoderOptions::NONE);
        let mut instructions: Vec<Instruction> = Vec::new();
        let mut targets = Some(HashSet::new());
        let mut tables = Vec::new();
        while decoder.can_decode() {
            let instruction = decoder.decode();
            if instruction.is_invalid() {
                return None;
            }
            match instruction.flow_control() {
                FlowControl::ConditionalBranch | FlowControl::UnconditionalBranch => {
                    if let Some(t) = targets.as_mut() {
                        t.insert(instruction.near_branch_target());
                    }
                }
                FlowControl::IndirectBranch => match jump_table(&instructions, &instruction) {
                    Some(table) => tables.push(table),
                    None => targets = None,
                },
                _ => {}
            }
            instructions.push(instruction);
        }
        let mut table_targets = HashSet::new();
        if targets.is_some() {
            let is_start = |a: u64| {
                instructions
                    .binary_search_by_key(&a, Instruction::ip)
                    .is_ok()
            };
            for table in tables {
                match (table_entries(code, table, &is_start), targets.as_mut()) {
                    (Some(entries), Some(t)) => {
                        t.extend(&entries);
                        table_targets.extend(entries);
                    }
                    _ => targets = None,
                }
            }
        }
        Some(Function {
            instructions,
            targets,
            table_targets,
        })
    }
}

/// The table address of a jump through a table of 32-bit offsets from the table's own start, as
/// LLVM emits it for x86-64 PIC: `lea B,[rip+T]; movsxd X,[B+I*4]; add X,B (or add B,X); jmp X`.
pub(crate) fn jump_table(before: &[Instruction], jmp: &Instruction) -> Option<u64> {
    let [lea, load, add] = before.last_chunk::<3>()?;
    let (base, entry) = (lea.op0_register(), load.op0_register());
    let sum = add.op0_register();
    let pattern = lea.code() == Code::Lea_r64_m
        && lea.memory_base() == Register::RIP
        && load.code() == Code::Movsxd_r64_rm32
        && load.op1_kind() == OpKind::Memory
        && load.memory_base() == base
        && load.memory_index_scale() == 4
        && load.memory_index() != base
        && entry != base
        && matches!(add.code(), Code::Add_r64_rm64 | Code::Add_rm64_r64)
        && add.op0_kind() == OpKind::Register
        && add.op1_kind() == OpKind::Register
        && ((sum, add.op1_register()) == (entry, base)
            || (sum, add.op1_register()) == (base, entry))
        && jmp.code() == Code::Jmp_rm64
        && jmp.op0_kind() == OpKind::Register
        && jmp.op0_register() == sum;
    pattern.then(|| lea.ip_rel_memory_address())
}

/// The targets of the jump table at `table`: entries are read while they land on an instruction
/// of the function. The table's length is not known, so reading may run past its end into other
/// data; such extra "targets" only make fewer runs movable, never a wrong one. `None` when the
/// table is not in read-only data or its first entry is no instruction of the function.
fn table_entries(code: &ExeCode, table: u64, is_start: &dyn Fn(u64) -> bool) -> Option<Vec<u64>> {
    const MAX_ENTRIES: u64 = 4096;
    let data = within(&code.rodata, table, table + 4 * MAX_ENTRIES)?;
    let entries: Vec<u64> = data
        .chunks_exact(4)
        .map(|e| i32::from_le_bytes([e[0], e[1], e[2], e[3]]))
        .map(|offset| table.wrapping_add_signed(i64::from(offset)))
        .take_while(|&target| is_start(target))
        .collect();
    (!entries.is_empty()).then_some(entries)
}

/// Chooses a site for each breakpoint (`addresses` sorted, link-time). `traps[i]` forces int3
/// (test entries: the tracer must stop there). An address one byte into a conditional jump is
/// that jump's taken edge (`branches::edge`): counted by the trampoline of the run that ends with
/// the jump, or by one of its own, else lost; never by a trap.
pub fn classify(code: &ExeCode, addresses: &[u64], traps: &[bool]) -> Vec<Site> {
    let mut sites = vec![Site::Trap; addresses.len()];
    let mut current: Option<((u64, u64), Decoded)> = None;
    // End of the last moved run (runs never overlap), and the breakpoint it belongs to.
    let mut patched_until = 0;
    let mut last_jump: Option<usize> = None;
    // The last breakpoint given a trampoline of its own.
    let mut anchor: Option<usize> = None;
    for i in 0..addresses.len() {
        // Decided already: inside an earlier run, or the taken edge of the jump that ends one.
        if traps[i] || sites[i] != Site::Trap {
            continue;
        }
        let address = addresses[i];
        let range = code.function(address);
        if let Some(range) = range {
            if current.as_ref().is_none_or(|(r, _)| *r != range) {
                current = Some((range, code.decoded(range)));
            }
        }
        // Outside a known, decodable function only a long instruction can take the jump alone.
        let Some(function) = range.and(current.as_ref()).and_then(|(_, f)| f.as_ref()) else {
            if let Some(site) = alone(code, address) {
                patched_until = address + u64::from(site_len(&site));
                last_jump = None;
                sites[i] = site;
            }
            continue;
        };
        if let Some(jump) = conditional_jump_before(function, address) {
            let ends_last_run =
                last_jump.filter(|&k| run_end(addresses[k], &sites[k]) == Some(jump.next_ip()));
            sites[i] = match ends_last_run {
                Some(k) => take_edge(&mut sites, k, i, function, &jump),
                None if jump.ip() < patched_until => Site::Lost,
                None => {
                    let is_breakpoint = |a: u64| addresses.binary_search(&a).is_ok();
                    match own_edge(code, function, &jump, patched_until, &is_breakpoint) {
                        Some(site) => {
                            patched_until = jump.next_ip();
                            last_jump = None;
                            site
                        }
                        None => Site::Lost,
                    }
                }
            };
            continue;
        }
        // The run just before may take this instruction too (a loop's `jmp` back right after
        // the last statement of its body): no jump back from the trampoline.
        if let Some(k) = last_jump.filter(|_| patched_until == address) {
            if let Some(extra) = appendable(code, function, address, &sites[k]) {
                if let Site::Jump {
                    len, moved, also, ..
                } = &mut sites[k]
                {
                    *len += extra;
                    *moved += 1;
                    also.push(i as u32);
                }
                sites[i] = Site::Covered { by: k as u32 };
                patched_until = address + u64::from(extra);
                continue;
            }
        }
        // A breakpoint that control can only reach straight on from one already counted is
        // counted with it: no jump, no trap of its own. Code that faults in between (the process
        // dies) is the only way to reach the first and not the second.
        if let Some(k) = anchor.filter(|&k| {
            range.is_some_and(|(start, _)| addresses[k] >= start)
                && matches!(sites[k], Site::Jump { .. })
                && straight(code, function, addresses[k], address)
        }) {
            if let Site::Jump { also, .. } = &mut sites[k] {
                also.push(i as u32);
            }
            sites[i] = Site::Covered { by: k as u32 };
            continue;
        }
        let is_breakpoint = |a: u64| addresses.binary_search(&a).is_ok();
        let Some(site) = forward(code, function, address)
            .or_else(|| backward(code, function, address, patched_until, &is_breakpoint))
        else {
            continue;
        };
        let Site::Jump {
            back, len, moved, ..
        } = site
        else {
            continue;
        };
        let flags = flags_live(function, address - u64::from(back));
        let end = address - u64::from(back) + u64::from(len);
        let inside: Vec<usize> = (i + 1..addresses.len())
            .take_while(|&j| addresses[j] < end)
            .collect();
        if inside.iter().any(|&j| traps[j]) {
            continue;
        }
        patched_until = end;
        last_jump = Some(i);
        anchor = Some(i);
        sites[i] = Site::Jump {
            back,
            len,
            moved,
            also: Vec::new(),
            flags,
            taken: None,
        };
        for j in inside {
            // Only the run's last instruction can be a conditional jump.
            sites[j] = match conditional_jump_before(function, addresses[j]) {
                Some(jump) => take_edge(&mut sites, i, j, function, &jump),
                None => {
                    if let Site::Jump { also, .. } = &mut sites[i] {
                        also.push(j as u32);
                    }
                    Site::Covered { by: i as u32 }
                }
            };
        }
    }
    super::entries::count_at_callers(code, addresses, &mut sites);
    sites
}

/// The conditional jump whose taken edge `address` names (`branches::edge`), if it is one.
fn conditional_jump_before(function: &Function, address: u64) -> Option<Instruction> {
    let start = address.checked_sub(1)?;
    let at = function.instructions.partition_point(|i| i.ip() < start);
    let jump = function.instructions.get(at)?;
    (jump.ip() == start && jump.is_jcc_short_or_near()).then_some(*jump)
}

/// Where the run of jump site `site` at breakpoint address `address` ends.
fn run_end(address: u64, site: &Site) -> Option<u64> {
    match site {
        Site::Jump { back, len, .. } => Some(address - u64::from(*back) + u64::from(*len)),
        _ => None,
    }
}

/// Lets the trampoline of jump site `k`, whose run ends with `jump`, count that jump's taken edge
/// (breakpoint `edge`): the edge's site.
fn take_edge(
    sites: &mut [Site],
    k: usize,
    edge: usize,
    function: &Function,
    jump: &Instruction,
) -> Site {
    if let Site::Jump { taken, .. } = &mut sites[k] {
        *taken = Some(edge as u32);
    }
    Site::Taken {
        by: k as u32,
        flags: flags_live(function, jump.near_branch_target()),
    }
}

/// A trampoline of its own for the taken edge of `jump`: a run of whole instructions that holds
/// the jump, from it or from plain instructions before it (at or after `not_before`) to the first
/// instruction after which the run is long enough for a jump. Nothing may enter the run after its
/// start, no other breakpoint lie in it, and only its last instruction may leave it otherwise
/// than by falling through (the jump's taken side goes through the trampoline's counting stub).
fn own_edge(
    code: &ExeCode,
    function: &Function,
    jump: &Instruction,
    not_before: u64,
    is_breakpoint: &dyn Fn(u64) -> bool,
) -> Option<Site> {
    let instructions = &function.instructions;
    let at = instructions.partition_point(|i| i.ip() < jump.ip());
    let edge = jump.ip() + 1;
    let mut start = at;
    loop {
        if let Some(site) = edge_run(code, function, start, at, edge, is_breakpoint) {
            return Some(site);
        }
        // Start one instruction earlier: plain code that falls into the next.
        start = start.checked_sub(1)?;
        let before = &instructions[start];
        if before.flow_control() != FlowControl::Next
            || before.ip() < not_before
            || edge - before.ip() > MAX_BACK as u64
        {
            return None;
        }
    }
}

/// The run for [`own_edge`] from instruction `start` that holds the jump at `at`, if one fits.
fn edge_run(
    code: &ExeCode,
    function: &Function,
    start: usize,
    at: usize,
    edge: u64,
    is_breakpoint: &dyn Fn(u64) -> bool,
) -> Option<Site> {
    let instructions = &function.instructions;
    let mut len = 0;
    for (k, instruction) in instructions.iter().enumerate().skip(start) {
        let ip = instruction.ip();
        if (k > start && enterable(code, function, ip)) || is_breakpoint(ip) {
            return None;
        }
        len += instruction.len();
        if len > MAX_WINDOW {
            return None;
        }
        let site = |len: usize| Site::Edge {
            back: (edge - instructions[start].ip()) as u8,
            len: len as u8,
            flags: flags_live(function, instructions[at].near_branch_target()),
        };
        if k >= at && len >= JUMP_LEN && relocatable_last(instruction) {
            return Some(site(len));
        }
        if k != at && instruction.flow_control() != FlowControl::Next {
            let padded = k > at
                && !falls_through(instruction)
                && relocatable_last(instruction)
                && padding(code, instruction.next_ip(), JUMP_LEN - len);
            return padded.then(|| site(JUMP_LEN));
        }
    }
    None
}

/// The length of the instruction at `address` when it ends a block and can join the run `site`
/// that ends right before it (saving the trampoline's jump back): nothing jumps to it and the
/// run's last instruction falls through to it.
fn appendable(code: &ExeCode, function: &Function, address: u64, site: &Site) -> Option<u8> {
    let Site::Jump { len, .. } = site else {
        return None;
    };
    let at = function.instructions.partition_point(|i| i.ip() < address);
    let (before, this) = (
        function.instructions.get(at.checked_sub(1)?)?,
        function.instructions.get(at)?,
    );
    let fits = usize::from(*len) + this.len() <= MAX_WINDOW;
    (this.ip() == address
        && fits
        && this.flow_control() != FlowControl::Next
        && before.flow_control() == FlowControl::Next
        && relocatable_last(this)
        && !enterable(code, function, address))
    .then_some(this.len() as u8)
}

/// Whether control at `from` always goes on to `to` (later in `function`): every instruction in
/// between falls through without branching, or calls a function that cannot unwind (any other
/// call may unwind instead of returning), and no branch or unwinder can enter after `from`.
pub(crate) fn straight(code: &ExeCode, function: &Function, from: u64, to: u64) -> bool {
    let start = function.instructions.partition_point(|i| i.ip() < from);
    for (k, instruction) in function.instructions[start..]
        .iter()
        .take(MAX_STRAIGHT)
        .enumerate()
    {
        let ip = instruction.ip();
        if (k == 0 && ip != from) || ip > to || (k > 0 && enterable(code, function, ip)) {
            return false;
        }
        if ip == to {
            return k > 0;
        }
        let returns = match instruction.flow_control() {
            FlowControl::Next => true,
            FlowControl::Call | FlowControl::IndirectCall => {
                code.call_target(instruction).is_some_and(|target| {
                    code.call_map()
                        .is_some_and(|calls| calls.cannot_unwind(target))
                })
            }
            _ => false,
        };
        if !returns {
            return false;
        }
    }
    false
}

fn site_len(site: &Site) -> u8 {
    match site {
        Site::Jump { len, .. } => *len,
        _ => 0,
    }
}

/// A single instruction of at least five bytes that a trampoline can run.
fn alone(code: &ExeCode, address: u64) -> Option<Site> {
    let bytes = code.bytes(address, address + 16)?;
    let instruction = Decoder::with_ip(64, bytes, address, DecoderOptions::NONE).decode();
    (instruction.len() >= JUMP_LEN && relocatable_last(&instruction)).then(|| Site::Jump {
        back: 0,
        len: instruction.len() as u8,
        moved: 1,
        also: Vec::new(),
        flags: true,
        taken: None,
    })
}

/// Whether a branch or the unwinder may enter the function at `ip`.
fn enterable(code: &ExeCode, function: &Function, ip: u64) -> bool {
    function.targets.as_ref().is_none_or(|t| t.contains(&ip))
        || code.landing_pads.as_ref().is_none_or(|p| p.contains(&ip))
}

/// Whether a jump can be written at `address` of `function` with no help from the code before it.
pub(crate) fn patchable(code: &ExeCode, function: &Function, address: u64) -> bool {
    forward(code, function, address).is_some()
}

/// The shortest run of whole instructions from `address` that spans a jump: the instruction
/// alone when it is long enough, else it and the next ones, provided only the last may change
/// control flow and no branch or unwinder can enter the run after its first byte.
fn forward(code: &ExeCode, function: &Function, address: u64) -> Option<Site> {
    let first = function.instructions.partition_point(|i| i.ip() < address);
    let run_start = function.instructions.get(first)?;
    if run_start.ip() != address {
        return None;
    }
    let mut len = 0;
    for (k, instruction) in function.instructions[first..].iter().enumerate() {
        if k > 0 && enterable(code, function, instruction.ip()) {
            return None;
        }
        len += instruction.len();
        let run = |len: usize| Site::Jump {
            back: 0,
            len: len as u8,
            moved: k as u8 + 1,
            also: Vec::new(),
            flags: true,
            taken: None,
        };
        if len >= JUMP_LEN {
            return (len <= MAX_WINDOW && relocatable_last(instruction)).then(|| run(len));
        }
        if instruction.flow_control() != FlowControl::Next {
            // A function's last instruction never falls through: the int3 padding after it,
            // before the next function, is never run and can hold the rest of the jump.
            let padded = !falls_through(instruction)
                && relocatable_last(instruction)
                && padding(code, instruction.next_ip(), JUMP_LEN - len);
            return padded.then(|| run(JUMP_LEN));
        }
    }
    None
}

/// Whether the status flags `inc` changes may be read, at `ip`, before all of them are written
/// again. Follows the code from `ip` through direct jumps; flags are dead at a call or return (the
/// ABI keeps no flags across either); a conditional branch that does not read them, or anything
/// else not understood, counts as a read.
fn flags_live(function: &Function, ip: u64) -> bool {
    const STEPS: usize = 64;
    let inc_writes =
        RflagsBits::OF | RflagsBits::SF | RflagsBits::ZF | RflagsBits::AF | RflagsBits::PF;
    let mut live = inc_writes;
    let mut at = function.instructions.partition_point(|i| i.ip() < ip);
    for _ in 0..STEPS {
        let Some(instruction) = function.instructions.get(at) else {
            return true;
        };
        if instruction.rflags_read() & live != 0 {
            return true;
        }
        live &= !instruction.rflags_modified();
        if live == 0 {
            return false;
        }
        match instruction.flow_control() {
            FlowControl::Next => at += 1,
            FlowControl::Call | FlowControl::IndirectCall | FlowControl::Return => return false,
            FlowControl::UnconditionalBranch if instruction.op0_kind() == OpKind::NearBranch64 => {
                let target = instruction.near_branch_target();
                at = function.instructions.partition_point(|i| i.ip() < target);
                if function
                    .instructions
                    .get(at)
                    .is_none_or(|i| i.ip() != target)
                {
                    return true;
                }
            }
            _ => return true,
        }
    }
    true
}

/// Whether control may go on to the next instruction after `instruction`.
pub(crate) fn falls_through(instruction: &Instruction) -> bool {
    !matches!(
        instruction.flow_control(),
        FlowControl::Return | FlowControl::UnconditionalBranch | FlowControl::IndirectBranch
    )
}

/// Whether the `len` bytes from `at` are int3 padding outside every function.
fn padding(code: &ExeCode, at: u64, len: usize) -> bool {
    code.bytes(at, at + len as u64)
        .is_some_and(|b| b.len() == len && b.iter().all(|&b| b == 0xCC))
        && (at..at + len as u64).all(|a| code.function(a).is_none())
}

/// A run that ends with the instruction at `address`, for a short one that ends a block (the
/// `jmp` back to a loop's head): it runs exactly when the instructions before it do, as long as
/// nothing jumps to it. The run starts at or after `not_before` and holds no other breakpoint.
fn backward(
    code: &ExeCode,
    function: &Function,
    address: u64,
    not_before: u64,
    is_breakpoint: &dyn Fn(u64) -> bool,
) -> Option<Site> {
    let at = function.instructions.partition_point(|i| i.ip() < address);
    let last = function.instructions.get(at)?;
    if last.ip() != address || !relocatable_last(last) || enterable(code, function, address) {
        return None;
    }
    let mut len = last.len();
    let mut k = at;
    while len < JUMP_LEN {
        k = k.checked_sub(1)?;
        let before = &function.instructions[k];
        if before.flow_control() != FlowControl::Next
            || before.ip() < not_before
            || is_breakpoint(before.ip())
        {
            return None;
        }
        len += before.len();
        if len < JUMP_LEN && enterable(code, function, before.ip()) {
            return None;
        }
    }
    let back = (address - function.instructions[k].ip()) as usize;
    (back <= MAX_BACK && len <= MAX_WINDOW).then(|| Site::Jump {
        back: back as u8,
        len: len as u8,
        moved: (at - k + 1) as u8,
        also: Vec::new(),
        flags: true,
        taken: None,
    })
}

/// Whether a trampoline can run `instruction` as the last of its window. Calls are done by hand
/// (the original return address is pushed) so that callees return into the real code.
pub(crate) fn relocatable_last(instruction: &Instruction) -> bool {
    match instruction.flow_control() {
        FlowControl::Next
        | FlowControl::ConditionalBranch
        | FlowControl::UnconditionalBranch
        | FlowControl::IndirectBranch
        | FlowControl::Return => true,
        FlowControl::Call => instruction.code() == Code::Call_rel32_64,
        FlowControl::IndirectCall => {
            matches!(instruction.code(), Code::Call_rm64)
                && !(instruction.op0_kind() == OpKind::Register
                    && instruction.op0_register() == Register::RSP)
        }
        FlowControl::Interrupt | FlowControl::XbeginXabortXend | FlowControl::Exception => false,
    }
}

/// Landing pads of every function with an exception table (`.eh_frame` FDEs with an LSDA in
/// `.gcc_except_table`). `None` when a table uses an encoding this reader does not know.
fn landing_pads(file: &object::File) -> Option<HashSet<u64>> {
    let endian = if file.is_little_endian() {
        gimli::RunTimeEndian::Little
    } else {
        gimli::RunTimeEndian::Big
    };
    let mut pads = HashSet::new();
    let Some(eh_frame) = file.section_by_name(".eh_frame") else {
        return Some(pads);
    };
    let eh_data = eh_frame.data().ok()?;
    let except = file.section_by_name(".gcc_except_table");
    let except_data = match &except {
        Some(section) => Some((section.address(), section.data().ok()?)),
        None => None,
    };
    let mut bases = gimli::BaseAddresses::default().set_eh_frame(eh_frame.address());
    if let Some(text) = file.section_by_name(".text") {
        bases = bases.set_text(text.address());
    }
    let frames = gimli::EhFrame::new(eh_data, endian);
    let mut entries = frames.entries(&bases);
    while let Some(entry) = entries.next().ok()? {
        let gimli::CieOrFde::Fde(partial) = entry else {
            continue;
        };
        let fde = partial.parse(gimli::EhFrame::cie_from_offset).ok()?;
        let Some(lsda) = fde.lsda() else {
            continue;
        };
        let gimli::Pointer::Direct(lsda) = lsda else {
            return None;
        };
        let (base, data) = except_data?;
        let table = data.get(lsda.checked_sub(base)? as usize..)?;
        pads.extend(read_lsda(table, fde.initial_address())?);
    }
    Some(pads)
}

/// The landing pads of one LSDA (GCC's format, as LLVM writes it).
fn read_lsda(table: &[u8], function_start: u64) -> Option<Vec<u64>> {
    const OMIT: u8 = 0xff;
    let mut at = 0;
    let byte = |at: &mut usize| {
        let b = *table.get(*at)?;
        *at += 1;
        Some(b)
    };
    if byte(&mut at)? != OMIT {
        return None; // a landing-pad base other than the function start
    }
    if byte(&mut at)? != OMIT {
        uleb128(table, &mut at)?;
    }
    let encoding = byte(&mut at)?;
    let length = uleb128(table, &mut at)? as usize;
    let end = at.checked_add(length)?;
    let mut pads = Vec::new();
    while at < end {
        let _start = encoded(table, &mut at, encoding)?;
        let _len = encoded(table, &mut at, encoding)?;
        let pad = encoded(table, &mut at, encoding)?;
        uleb128(table, &mut at)?;
        if pad != 0 {
            pads.push(function_start.wrapping_add(pad));
        }
    }
    Some(pads)
}

fn encoded(table: &[u8], at: &mut usize, encoding: u8) -> Option<u64> {
    let fixed = |n: usize, at: &mut usize| {
        let bytes = table.get(*at..*at + n)?;
        *at += n;
        let mut value = [0u8; 8];
        value[..n].copy_from_slice(bytes);
        Some(u64::from_le_bytes(value))
    };
    match encoding {
        0x01 => uleb128(table, at),
        0x03 => fixed(4, at),
        0x0b => fixed(4, at).map(|v| v as u32 as i32 as i64 as u64),
        0x04 | 0x0c => fixed(8, at),
        _ => None,
    }
}

fn uleb128(table: &[u8], at: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *table.get(*at)?;
        *at += 1;
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// Fills in the counters no trampoline adds to (see [`Derivations`]).
#[cfg(test)]
pub(crate) fn derive_counts(sites: &[Site], values: &mut [u64]) {
    Derivations::of(sites).apply(values);
}

/// How the counters no trampoline adds to follow from the others: a `Covered` breakpoint ran as
/// often as the one whose trampoline serves it, a `Called` one as often as all of `by` together
/// (one anchor may be listed once per call it runs into). Every `by` has a trampoline of its
/// own, so one pass does. The counts are sums, so they derive from what a reading gained as
/// from totals. Kept apart from the sites: a reading at every test start walks only these.
#[derive(Debug, Default)]
pub(crate) struct Derivations {
    /// Derived breakpoint and the range of `from` it sums.
    steps: Vec<(u32, std::ops::Range<u32>)>,
    from: Vec<u32>,
}

impl Derivations {
    pub(crate) fn of(sites: &[Site]) -> Self {
        let mut derivations = Derivations::default();
        for (i, site) in sites.iter().enumerate() {
            let by = match site {
                Site::Covered { by } => std::slice::from_ref(by),
                Site::Called { by } => by.as_slice(),
                Site::Jump { .. }
                | Site::Taken { .. }
                | Site::Edge { .. }
                | Site::Lost
                | Site::Trap => continue,
            };
            let start = derivations.from.len() as u32;
            derivations.from.extend_from_slice(by);
            let end = derivations.from.len() as u32;
            derivations.steps.push((i as u32, start..end));
        }
        derivations
    }

    pub(crate) fn apply(&self, values: &mut [u64]) {
        for (i, range) in &self.steps {
            let sum = self.from[range.start as usize..range.end as usize]
                .iter()
                .map(|&k| values.get(k as usize).copied().unwrap_or(0))
                .fold(0u64, u64::wrapping_add);
            if let Some(value) = values.get_mut(*i as usize) {
                *value = sum;
            }
        }
    }
}

/// How many breakpoints each kind of site serves: the share of counting done without traps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SiteCounts {
    /// Long enough to hold the jump alone.
    pub alone: usize,
    /// A run of several instructions moved together.
    pub runs: usize,
    /// Derived from another breakpoint's count: inside its run or straight on from it.
    pub covered: usize,
    /// Derived from the counts of the breakpoints that run into the calls of its function.
    pub called: usize,
    /// Taken edges of conditional jumps, counted by trampolines.
    pub edges: usize,
    /// Taken edges no trampoline counts (never counted).
    pub lost: usize,
    pub traps: usize,
}

impl SiteCounts {
    pub fn of(sites: &[Site]) -> SiteCounts {
        let mut counts = SiteCounts::default();
        for site in sites {
            match site {
                Site::Jump { moved: 1, .. } => counts.alone += 1,
                Site::Jump { .. } => counts.runs += 1,
                Site::Covered { .. } => counts.covered += 1,
                Site::Called { .. } => counts.called += 1,
                Site::Taken { .. } | Site::Edge { .. } => counts.edges += 1,
                Site::Lost => counts.lost += 1,
                Site::Trap => counts.traps += 1,
            }
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: u64 = 0x1000;

    /// A jump site whose flags are dead at its start (most of compiled code).
    fn jump(back: u8, len: u8, moved: u8, also: &[u32]) -> Site {
        Site::Jump {
            back,
            len,
            moved,
            also: also.to_vec(),
            flags: false,
            taken: None,
        }
    }

    fn keeping_flags(site: Site) -> Site {
        match site {
            Site::Jump {
                flags: _,
                back,
                len,
                moved,
                also,
                taken,
            } => Site::Jump {
                back,
                len,
                moved,
                also,
                flags: true,
                taken,
            },
            other => other,
        }
    }

    fn code(bytes: &[u8], pads: &[u64]) -> ExeCode {
        ExeCode::from_parts(
            vec![(BASE, bytes.to_vec())],
            vec![(BASE, BASE + bytes.len() as u64)],
            Some(pads.iter().copied().collect()),
        )
    }

    // 0x1000 mov rbp,rsp (3)  0x1003 mov eax,1 (5)  0x1008 xor eax,eax (2)  0x100a xor ecx,ecx (2)
    // 0x100c call rel32 (5)   0x1011 jne 0x100a (2)  0x1013 ret (1)
    const BODY: &[u8] = &[
        0x48, 0x89, 0xE5, 0xB8, 0x01, 0x00, 0x00, 0x00, 0x31, 0xC0, 0x31, 0xC9, 0xE8, 0x00, 0x01,
        0x00, 0x00, 0x75, 0xF7, 0xC3,
    ];

    #[test]
    fn long_instructions_take_the_jump_alone() {
        let sites = classify(&code(BODY, &[]), &[0x1003], &[false]);
        assert_eq!(sites, [jump(0, 5, 1, &[])]);
    }

    #[test]
    fn short_instructions_move_with_the_next_ones_and_count_breakpoints_inside() {
        // mov rbp,rsp + mov eax,1: nothing jumps to 0x1003, which is itself a breakpoint.
        let sites = classify(&code(BODY, &[]), &[0x1000, 0x1003], &[false, false]);
        assert_eq!(sites, [jump(0, 8, 2, &[1]), Site::Covered { by: 0 }]);
    }

    #[test]
    fn a_branch_target_or_landing_pad_inside_the_run_keeps_the_trap() {
        // 0x100a is the target of the jne: xor eax,eax cannot move with it, only with the mov
        // before it (nothing jumps to 0x1008: it runs exactly when the mov does)...
        let sites = classify(&code(BODY, &[]), &[0x1008], &[false]);
        assert_eq!(sites, [jump(5, 7, 2, &[])]);
        // ...unless the unwinder lands there.
        let sites = classify(&code(BODY, &[0x1008]), &[0x1008], &[false]);
        assert_eq!(sites, [Site::Trap]);
        // The run from 0x100a (xor + call) is fine; the call is done by hand as the last.
        let sites = classify(&code(BODY, &[]), &[0x100a], &[false]);
        assert_eq!(sites, [jump(0, 7, 2, &[])]);
        let sites = classify(&code(BODY, &[0x100c]), &[0x100a], &[false]);
        assert_eq!(sites, [Site::Trap]);
    }

    #[test]
    fn control_flow_only_ends_a_run() {
        // jne (2) then ret (1): a branch in the middle of a run is never moved; nor can it take
        // the call before it (a call changes control flow).
        let sites = classify(&code(BODY, &[]), &[0x1011], &[false]);
        assert_eq!(sites, [Site::Trap]);
    }

    #[test]
    fn a_short_branch_that_ends_a_block_moves_with_the_instructions_before_it() {
        // 0x2000 mov eax,1 (5); 0x2005 xor ecx,ecx (2); 0x2007 jmp 0x2000 (2)
        let bytes = [0xB8, 0x01, 0, 0, 0, 0x31, 0xC9, 0xEB, 0xF7];
        let code = ExeCode::from_parts(
            vec![(0x2000, bytes.to_vec())],
            vec![(0x2000, 0x2009)],
            Some(HashSet::new()),
        );
        // Alone, the jmp takes the two instructions before it (0x2000 is a target: fine as a start).
        let sites = classify(&code, &[0x2007], &[false]);
        assert_eq!(sites, [jump(7, 9, 3, &[])]);
        // With the xor a target (0x2005 instead of 0x2000), the run cannot reach back past it.
        let bytes = [0xB8, 0x01, 0, 0, 0, 0x31, 0xC9, 0xEB, 0xFC];
        let code = ExeCode::from_parts(
            vec![(0x2000, bytes.to_vec())],
            vec![(0x2000, 0x2009)],
            Some(HashSet::new()),
        );
        assert_eq!(classify(&code, &[0x2007], &[false]), [Site::Trap]);
        // A breakpoint of its own before it keeps its own site; the jmp stays a trap.
        let sites = classify(&code, &[0x2000, 0x2007], &[false, false]);
        assert_eq!(sites[1], Site::Trap);
        // Unless that breakpoint's run ends right before the jmp: then the run takes it.
        let sites = classify(&code, &[0x2005, 0x2007], &[false, false]);
        assert_eq!(
            sites[1],
            Site::Trap,
            "0x2005 is a target: its own run is only xor+jmp"
        );
        let bytes = [0x90, 0xB8, 0x01, 0, 0, 0, 0xEB, 0xF8];
        let code = ExeCode::from_parts(
            vec![(0x2000, bytes.to_vec())],
            vec![(0x2000, 0x2008)],
            Some(HashSet::new()),
        );
        // nop; mov eax,1 (a breakpoint, alone); jmp 0x2000: a loop that never writes the
        // flags, so they may be live.
        let sites = classify(&code, &[0x2001, 0x2006], &[false, false]);
        assert_eq!(
            sites,
            [keeping_flags(jump(0, 7, 2, &[1])), Site::Covered { by: 0 }]
        );
    }

    // `if a || b { … }` with the body reached otherwise too:
    // 0x1000 test dil,1 (4); 0x1004 jne 0x100e (2); 0x1006 test sil,1 (4); 0x100a jne 0x100e (2);
    // 0x100c jmp 0x1013 (2); 0x100e mov eax,1 (5); 0x1013 ret.
    const OR_BODY: &[u8] = &[
        0x40, 0xF6, 0xC7, 0x01, 0x75, 0x08, 0x40, 0xF6, 0xC6, 0x01, 0x75, 0x02, 0xEB, 0x05, 0xB8,
        0x01, 0, 0, 0, 0xC3,
    ];

    #[test]
    fn a_taken_edge_is_counted_by_the_run_that_ends_with_its_jump() {
        let edge = super::super::branches::edge;
        // The run from 0x1000 (test + jne) ends with the first jump: its trampoline counts it.
        let sites = classify(&code(OR_BODY, &[]), &[0x1000, edge(0x1004)], &[false; 2]);
        let Site::Jump { taken, len: 6, .. } = &sites[0] else {
            panic!("{sites:?}");
        };
        assert_eq!(*taken, Some(1));
        assert_eq!(
            sites[1],
            Site::Taken {
                by: 0,
                flags: false
            }
        );
        // Alone, the second jump moves with the test before it; no entry count.
        let sites = classify(&code(OR_BODY, &[]), &[edge(0x100a)], &[false]);
        assert_eq!(
            sites,
            [Site::Edge {
                back: 5,
                len: 6,
                flags: false
            }]
        );
        // Nor with a breakpoint in the way: the test at 0x1006 has a run of its own, which
        // then takes the edge.
        let sites = classify(&code(OR_BODY, &[]), &[0x1006, edge(0x100a)], &[false; 2]);
        assert!(
            matches!(sites[0], Site::Jump { taken: Some(1), .. }),
            "{sites:?}"
        );
        // A forced trap there: the edge cannot be counted, and never traps.
        let sites = classify(&code(OR_BODY, &[]), &[0x1006, edge(0x100a)], &[true, false]);
        assert_eq!(sites, [Site::Trap, Site::Lost]);
        assert!(Site::Lost.is_edge() && !Site::Trap.is_edge());
    }

    #[test]
    fn a_jump_after_a_call_moves_with_what_follows_it() {
        let edge = super::super::branches::edge;
        // 0x1000 call 0x1100 (5); 0x1005 test al,1 (2); 0x1007 jne 0x100b (2);
        // 0x1009 jmp 0x1000 (2); 0x100b ret: the return lands on the run's start, and the
        // fall-through's jmp ends the run.
        let bytes = [
            0xE8, 0xFB, 0x00, 0, 0, 0xA8, 0x01, 0x75, 0x02, 0xEB, 0xF5, 0xC3,
        ];
        let sites = classify(&code(&bytes, &[]), &[edge(0x1007)], &[false]);
        assert_eq!(
            sites,
            [Site::Edge {
                back: 3,
                len: 6,
                flags: false
            }]
        );
        // The fall-through a target too: nothing fits.
        let mut entered = bytes.to_vec();
        entered.extend_from_slice(&[0xEB, 0xFB]); // 0x100c jmp 0x1009
        let sites = classify(&code(&entered, &[]), &[edge(0x1007)], &[false]);
        assert_eq!(sites, [Site::Lost]);
    }

    #[test]
    fn a_breakpoint_straight_on_from_a_counted_one_is_counted_by_its_trampoline() {
        // 0x1008 runs exactly when 0x1003 does; 0x100a is the jne's target: it needs its own.
        let sites = classify(&code(BODY, &[]), &[0x1003, 0x1008], &[false, false]);
        assert_eq!(sites, [jump(0, 5, 1, &[1]), Site::Covered { by: 0 }]);
        let sites = classify(&code(BODY, &[]), &[0x1003, 0x100a], &[false, false]);
        assert_eq!(sites, [jump(0, 5, 1, &[]), jump(0, 7, 2, &[])]);
        // A short one that could not be moved alone needs no trap either.
        let sites = classify(&code(BODY, &[]), &[0x1000, 0x1008], &[false, false]);
        assert_eq!(sites, [jump(0, 8, 2, &[1]), Site::Covered { by: 0 }]);
        // Not across a call (it may unwind instead of returning) nor from a forced trap.
        // 0x5000 mov eax,1 (5); call rel32 (5); mov eax,1 (5); ret
        let bytes = [0xB8, 1, 0, 0, 0, 0xE8, 0, 1, 0, 0, 0xB8, 1, 0, 0, 0, 0xC3];
        let code = ExeCode::from_parts(
            vec![(0x5000, bytes.to_vec())],
            vec![(0x5000, 0x5010)],
            Some(HashSet::new()),
        );
        let sites = classify(&code, &[0x5000, 0x500a], &[false, false]);
        assert_eq!(sites, [jump(0, 5, 1, &[]), jump(0, 5, 1, &[])]);
        let sites = classify(&code, &[0x5000, 0x5005], &[true, false]);
        assert_eq!(sites, [Site::Trap, jump(0, 5, 1, &[])]);
        // Across a call of a function that cannot unwind (0x5100: mov eax,1; ret) it is.
        let mut bytes = bytes.to_vec();
        bytes[6..10].copy_from_slice(&0xF6u32.to_le_bytes());
        bytes.resize(0x100, 0xCC);
        bytes.extend_from_slice(&[0xB8, 1, 0, 0, 0, 0xC3]);
        let code = ExeCode::from_parts(
            vec![(0x5000, bytes)],
            vec![(0x5000, 0x5010), (0x5100, 0x5106)],
            Some(HashSet::new()),
        );
        let sites = classify(&code, &[0x5000, 0x500a], &[false, false]);
        assert_eq!(sites, [jump(0, 5, 1, &[1]), Site::Covered { by: 0 }]);
    }

    #[test]
    fn derived_counts_copy_or_add_their_trampolines_counts() {
        let sites = [
            jump(0, 5, 1, &[1, 3]),
            Site::Covered { by: 0 },
            jump(0, 5, 1, &[3]),
            Site::Called { by: vec![0, 2, 2] },
            Site::Trap,
        ];
        let mut values = [5, 0, 7, 0, 3];
        derive_counts(&sites, &mut values);
        assert_eq!(values, [5, 5, 7, 19, 3]);
    }

    #[test]
    fn a_long_straight_line_is_counted_by_one_trampoline() {
        // Ten `mov eax,1` in a row, each a breakpoint, then ret.
        let mut bytes: Vec<u8> = (0..10).flat_map(|_| [0xB8, 1, 0, 0, 0]).collect();
        bytes.push(0xC3);
        let code = ExeCode::from_parts(
            vec![(0x7000, bytes.to_vec())],
            vec![(0x7000, 0x7000 + bytes.len() as u64)],
            Some(HashSet::new()),
        );
        let addresses: Vec<u64> = (0..10).map(|k| 0x7000 + 5 * k).collect();
        let sites = classify(&code, &addresses, &[false; 10]);
        assert_eq!(sites[0], jump(0, 5, 1, &[1, 2, 3, 4, 5, 6, 7, 8, 9]));
        assert!(sites[1..].iter().all(|s| *s == Site::Covered { by: 0 }));
    }

    #[test]
    fn forced_traps_and_unknown_landing_pads() {
        let sites = classify(&code(BODY, &[]), &[0x1003], &[true]);
        assert_eq!(sites, [Site::Trap]);
        let unknown =
            ExeCode::from_parts(vec![(BASE, BODY.to_vec())], vec![(BASE, BASE + 20)], None);
        let sites = classify(&unknown, &[0x1000, 0x1003], &[false, false]);
        assert_eq!(sites, [Site::Trap, jump(0, 5, 1, &[])]);
    }

    #[test]
    fn jump_tables_make_every_instruction_a_possible_target() {
        // mov rbp,rsp (3); mov eax,1 (5); jmp rax (2)
        let bytes = [0x48, 0x89, 0xE5, 0xB8, 0x01, 0, 0, 0, 0xFF, 0xE0];
        let sites = classify(&code(&bytes, &[]), &[0x1000, 0x1003], &[false, false]);
        assert_eq!(sites, [Site::Trap, keeping_flags(jump(0, 5, 1, &[]))]);
    }

    /// A `match` compiled to a jump table of offsets from the table (LLVM, x86-64 PIC):
    /// 0x3000 lea rax,[rip+0x1ff9] (= 0x5000); 0x3007 movsxd rcx,[rax+rcx*4];
    /// 0x300b add rax,rcx; 0x300e jmp rax; two arms `mov rbp,rsp; mov eax,1; ret` at 0x3010 and
    /// 0x3019. The table at 0x5000 leads to `targets`.
    fn switch(targets: &[i32]) -> ExeCode {
        let arm = [0x48, 0x89, 0xE5, 0xB8, 0x01, 0, 0, 0, 0xC3];
        let mut bytes = vec![
            0x48, 0x8D, 0x05, 0xF9, 0x1F, 0, 0, 0x48, 0x63, 0x0C, 0x88, 0x48, 0x01, 0xC8, 0xFF,
            0xE0,
        ];
        bytes.extend_from_slice(&arm);
        bytes.extend_from_slice(&arm);
        let end = 0x3000 + bytes.len() as u64;
        let mut code = ExeCode::from_parts(
            vec![(0x3000, bytes)],
            vec![(0x3000, end)],
            Some(HashSet::new()),
        );
        let mut data: Vec<u8> = targets
            .iter()
            .flat_map(|t| (t - 0x5000).to_le_bytes())
            .collect();
        data.extend_from_slice(&i32::MAX.to_le_bytes());
        code.rodata = vec![(0x5000, data)];
        code
    }

    #[test]
    fn jump_table_entries_are_the_only_indirect_targets() {
        let arms = [0x3010, 0x3019];
        let sites = classify(&switch(&[0x3010, 0x3019]), &arms, &[false, false]);
        assert_eq!(sites, [jump(0, 8, 2, &[]), jump(0, 8, 2, &[])]);
        // An entry into the middle of the first arm's run keeps that run from moving.
        let sites = classify(&switch(&[0x3010, 0x3013, 0x3019]), &arms, &[false, false]);
        assert_eq!(sites, [Site::Trap, jump(0, 8, 2, &[])]);
        // A table that cannot be read: any instruction may be a target.
        let mut unread = switch(&[0x3010, 0x3019]);
        unread.rodata.clear();
        let sites = classify(&unread, &arms, &[false, false]);
        assert_eq!(sites, [Site::Trap, Site::Trap]);
    }

    #[test]
    fn a_short_last_instruction_takes_the_padding_after_its_function() {
        // xor eax,eax (2); ret (1); int3 padding up to the next function at 0x4010.
        let mut bytes = vec![0x31, 0xC0, 0xC3];
        bytes.resize(16, 0xCC);
        bytes.extend_from_slice(&[0x31, 0xC0, 0xC3]);
        let functions = vec![(0x4000, 0x4003), (0x4010, 0x4013)];
        let code = ExeCode::from_parts(
            vec![(0x4000, bytes.clone())],
            functions.clone(),
            Some(HashSet::new()),
        );
        let sites = classify(&code, &[0x4000, 0x4010], &[false, false]);
        assert_eq!(sites, [jump(0, 5, 2, &[]), Site::Trap]);
        // Padding that is not int3, or too short, is left alone.
        bytes[4] = 0x90;
        let code = ExeCode::from_parts(vec![(0x4000, bytes)], functions, Some(HashSet::new()));
        assert_eq!(classify(&code, &[0x4000], &[false]), [Site::Trap]);
    }

    #[test]
    fn flags_are_kept_where_a_later_instruction_may_read_them() {
        // cmp eax,1 (3); mov ecx,1 (5); jne +0 (2); ret (1): the mov is counted between the cmp
        // and the jne that reads its result.
        let bytes = [0x83, 0xF8, 0x01, 0xB9, 0x01, 0, 0, 0, 0x75, 0x00, 0xC3];
        let code = ExeCode::from_parts(
            vec![(0x6000, bytes.to_vec())],
            vec![(0x6000, 0x600b)],
            Some(HashSet::new()),
        );
        let sites = classify(&code, &[0x6003], &[false]);
        assert_eq!(sites, [keeping_flags(jump(0, 5, 1, &[]))]);
        // Counted at the cmp instead, the flags are written before anything reads them.
        let sites = classify(&code, &[0x6000], &[false]);
        assert_eq!(sites, [jump(0, 8, 2, &[])]);
    }

    #[test]
    fn reads_call_sites_of_an_lsda() {
        // lpstart omitted, ttype omitted, call sites in uleb128: two sites, one with a pad at +0x40.
        let lsda = [
            0xff, 0xff, 0x01, 8, 0x00, 0x10, 0x00, 0x00, 0x10, 0x05, 0x40, 0x01,
        ];
        assert_eq!(read_lsda(&lsda, 0x2000), Some(vec![0x2040]));
    }
}
