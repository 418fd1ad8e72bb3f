//! Reads a test executable's DWARF line programs into the addresses where each source
//! line's statements begin, plus function entry points: the breakpoint sites of the engine.

use std::borrow::Cow;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use gimli::{AttributeValue, EndianSlice, LineProgramHeader, RunTimeEndian, UnitOffset};
use object::{Object, ObjectKind, ObjectSection, ObjectSegment, SectionKind};
use serde::{Deserialize, Serialize};

type Reader<'a> = EndianSlice<'a, RunTimeEndian>;
type Dwarf<'a> = gimli::Dwarf<Reader<'a>>;
type Unit<'a> = gimli::Unit<Reader<'a>>;

/// Mappings are page granular, so the bias is computed against the page holding the first segment.
const PAGE_SIZE: u64 = 4096;

/// Bounds the DW_AT_specification / DW_AT_abstract_origin chain so a cyclic reference in
/// malformed input cannot loop forever.
const MAX_ORIGIN_HOPS: usize = 4;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LineTable {
    /// Source files that passed `keep_file`, as absolute, lexically normalised paths, sorted.
    pub files: Vec<PathBuf>,
    /// Sorted by (file, line, address), deduplicated.
    pub rows: Vec<LineAddr>,
    /// Concrete (non-inlined) functions whose declaration file passed `keep_file`.
    /// Sorted by address, deduplicated.
    pub functions: Vec<FunctionEntry>,
    /// Copies of kept functions that the compiler inlined into others (`DW_TAG_inlined_subroutine`).
    pub inlined: Vec<InlinedCopy>,
    /// Disjoint, sorted `[start, end)` address ranges, each with the innermost inlined copy (index
    /// into `inlined`) whose code it is.
    pub(crate) inlined_ranges: Vec<(u64, u64, u32)>,
    /// Lowest p_vaddr among PT_LOAD segments, page aligned down (0 for a usual PIE).
    /// Run-time bias = start of the executable's mapping at file offset 0 minus this.
    pub load_base: u64,
    /// ELF type ET_DYN (position independent): the engine must add the load bias.
    pub position_independent: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineAddr {
    /// Index into [`LineTable::files`].
    pub file: u32,
    pub line: u32,
    /// Link-time virtual address.
    pub address: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionEntry {
    /// Namespace names joined by `::`, then the subprogram's name, e.g. `ledger::tests::deposit`.
    pub path: String,
    /// Index into [`LineTable::files`].
    pub file: u32,
    /// DW_AT_decl_line (0 when the compiler did not record one).
    pub line: u32,
    /// DW_AT_low_pc, a link-time virtual address.
    pub address: u64,
}

/// One place where a kept function's body was inlined into a caller: its code there runs without
/// its own prologue, so its `fn` line has no row in it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InlinedCopy {
    /// The inlined function's declaration: index into [`LineTable::files`].
    pub file: u32,
    /// Its DW_AT_decl_line: the line of its `fn`.
    pub line: u32,
    /// Where the copy's code begins: DW_AT_entry_pc, else its lowest address.
    pub entry: u64,
}

impl LineTable {
    /// The innermost inlined copy of a kept function (index into `inlined`) that holds `address`.
    pub fn inlined_copy_at(&self, address: u64) -> Option<usize> {
        let i = self
            .inlined_ranges
            .partition_point(|&(start, _, _)| start <= address)
            .checked_sub(1)?;
        let (_, end, copy) = self.inlined_ranges[i];
        (address < end).then_some(copy as usize)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DwarfError {
    #[error("cannot read test executable {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{} is not an ELF executable coverlay can read ({message}); point coverlay at a test binary built by cargo",
        path.display()
    )]
    Object { path: PathBuf, message: String },
    #[error(
        "cannot load section {section} of {} ({message}); if its debug info is compressed, link without --compress-debug-sections",
        path.display()
    )]
    Section {
        path: PathBuf,
        section: &'static str,
        message: String,
    },
    #[error(
        "{} has malformed DWARF debug info ({message}); rebuild it (cargo clean, then cargo test --no-run)",
        path.display()
    )]
    Gimli { path: PathBuf, message: String },
    #[error(
        "{} has no DWARF debug info; build with -C debuginfo=2 (cargo: `[profile.test] debug = 2`) and do not strip it",
        path.display()
    )]
    NoDebugInfo { path: PathBuf },
}

/// Reads the line table and function entries of `exe`, keeping only source files for which
/// `keep_file` (called once per distinct normalised path) returns true.
pub fn read_line_table(
    exe: &Path,
    keep_file: &dyn Fn(&Path) -> bool,
) -> Result<LineTable, DwarfError> {
    let data = std::fs::read(exe).map_err(|source| DwarfError::Io {
        path: exe.to_path_buf(),
        source,
    })?;
    let file = object::File::parse(data.as_slice()).map_err(|e| DwarfError::Object {
        path: exe.to_path_buf(),
        message: e.to_string(),
    })?;
    let has_section = |name: &str| file.section_by_name(name).is_some_and(|s| s.size() > 0);
    if !has_section(".debug_info") || !has_section(".debug_line") {
        return Err(DwarfError::NoDebugInfo {
            path: exe.to_path_buf(),
        });
    }

    let sections = gimli::DwarfSections::load(|id| -> Result<Cow<'_, [u8]>, DwarfError> {
        match file.section_by_name(id.name()) {
            Some(section) => section
                .uncompressed_data()
                .map_err(|e| DwarfError::Section {
                    path: exe.to_path_buf(),
                    section: id.name(),
                    message: e.to_string(),
                }),
            None => Ok(Cow::Borrowed(&[])),
        }
    })?;
    let endian = if file.is_little_endian() {
        RunTimeEndian::Little
    } else {
        RunTimeEndian::Big
    };
    let dwarf = sections.borrow(|section| EndianSlice::new(section, endian));

    let mut collector = Collector {
        exe,
        keep_file,
        exec: ExecRanges::new(&file),
        verdicts: HashMap::new(),
        files: Vec::new(),
        rows: Vec::new(),
        functions: Vec::new(),
        inlined: Vec::new(),
    };
    let mut headers = dwarf.units();
    loop {
        let header = match headers.next() {
            Ok(Some(header)) => header,
            Ok(None) => break,
            Err(e) => {
                return Err(DwarfError::Gimli {
                    path: exe.to_path_buf(),
                    message: e.to_string(),
                });
            }
        };
        let offset = header.offset();
        // One malformed unit (e.g. from a C dependency) should not cost the user all coverage.
        if let Err(e) = dwarf
            .unit(header)
            .and_then(|unit| collector.unit(&dwarf, &unit))
        {
            tracing::warn!(exe = %exe.display(), unit = ?offset, error = %e, "skipping DWARF unit");
        }
    }

    let load_base = file.segments().map(|s| s.address()).min().unwrap_or(0) & !(PAGE_SIZE - 1);
    Ok(collector.finish(load_base, file.kind() == ObjectKind::Dynamic))
}

/// A unit of the crate rustdoc generates around a doctest's code. Its rows name the documented
/// source file but number the lines of the doctest's code block (with rustdoc's wrapper): none of
/// them is a line of the file's own code.
/// Its name is `<file>/@/<crate>.<hash>-cgu.<n>`.
fn is_doctest_crate(unit_name: &[u8]) -> bool {
    let Some(at) = unit_name.windows(3).rposition(|w| w == b"/@/") else {
        return false;
    };
    let cgu = &unit_name[at + 3..];
    ["rust_out.", "doctest_bundle_2024.", "doctest_runner_2024."]
        .iter()
        .any(|crate_name| cgu.starts_with(crate_name.as_bytes()))
}

/// Address ranges of executable sections, sorted and merged, as half-open intervals.
struct ExecRanges(Vec<(u64, u64)>);

impl ExecRanges {
    fn new(file: &object::File<'_>) -> Self {
        let mut ranges: Vec<(u64, u64)> = file
            .sections()
            .filter(|s| s.kind() == SectionKind::Text && s.size() > 0)
            .map(|s| (s.address(), s.address().saturating_add(s.size())))
            .collect();
        ranges.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
        for (start, end) in ranges {
            match merged.last_mut() {
                Some(last) if start <= last.1 => last.1 = last.1.max(end),
                _ => merged.push((start, end)),
            }
        }
        ExecRanges(merged)
    }

    fn contains(&self, address: u64) -> bool {
        let i = self.0.partition_point(|&(start, _)| start <= address);
        i > 0 && address < self.0[i - 1].1
    }
}

struct Collector<'k> {
    exe: &'k Path,
    keep_file: &'k dyn Fn(&Path) -> bool,
    exec: ExecRanges,
    verdicts: HashMap<PathBuf, Option<u32>>,
    files: Vec<PathBuf>,
    rows: Vec<LineAddr>,
    functions: Vec<FunctionEntry>,
    inlined: Vec<CopyRanges>,
}

impl Collector<'_> {
    fn unit(&mut self, dwarf: &Dwarf<'_>, unit: &Unit<'_>) -> gimli::Result<()> {
        let Some(program) = unit.line_program.clone() else {
            return Ok(());
        };
        if unit.name.is_some_and(|name| is_doctest_crate(&name)) {
            return Ok(());
        }
        let file_ids = self.resolve_files(dwarf, unit, program.header());
        // decl_file indexes the same file table, so a unit without kept files (all of std,
        // every dependency) has neither rows nor functions for us: skip its DIE walk too.
        if file_ids.iter().all(Option::is_none) {
            return Ok(());
        }
        self.line_rows(program, &file_ids)?;
        self.functions(dwarf, unit, &file_ids)
    }

    /// Maps every raw file index of the header to our file id, so rows need no path work.
    fn resolve_files(
        &mut self,
        dwarf: &Dwarf<'_>,
        unit: &Unit<'_>,
        header: &LineProgramHeader<Reader<'_>>,
    ) -> Vec<Option<u32>> {
        // DWARF <= 4 numbers files from 1 and leaves 0 invalid (gimli would synthesise it from
        // the unit name, which rustc suffixes with `/@/<cgu>`); DWARF 5 numbers them from 0.
        let first = u64::from(header.version() <= 4);
        (0..header.file_names().len() as u64 + first)
            .map(|index| {
                if index < first {
                    return None;
                }
                let entry = header.file(index)?;
                let mut path = PathBuf::new();
                if let Some(comp_dir) = unit.comp_dir {
                    path.push(os_str(comp_dir));
                }
                if let Some(dir) = entry.directory(header) {
                    path.push(os_str(dwarf.attr_string(unit, dir).ok()?));
                }
                path.push(os_str(dwarf.attr_string(unit, entry.path_name()).ok()?));
                self.verdict(normalize(&path))
            })
            .collect()
    }

    fn verdict(&mut self, path: PathBuf) -> Option<u32> {
        if let Some(&verdict) = self.verdicts.get(&path) {
            return verdict;
        }
        let verdict = (self.keep_file)(&path).then(|| {
            self.files.push(path.clone());
            (self.files.len() - 1) as u32
        });
        self.verdicts.insert(path, verdict);
        verdict
    }

    fn line_rows(
        &mut self,
        program: gimli::IncompleteLineProgram<Reader<'_>>,
        file_ids: &[Option<u32>],
    ) -> gimli::Result<()> {
        let mut rows = program.rows();
        // (raw file index, line) of the run the previous row belongs to, when that run began
        // with a statement; later rows of the same run add nothing a breakpoint needs.
        let mut run: Option<(u64, u64)> = None;
        while let Some((_, row)) = rows.next_row()? {
            if row.end_sequence() {
                run = None;
                continue;
            }
            let Some(line) = row.line() else {
                run = None;
                continue;
            };
            let key = (row.file_index(), line.get());
            if run == Some(key) {
                continue;
            }
            if !row.is_stmt() {
                run = None;
                continue;
            }
            run = Some(key);
            let file = usize::try_from(key.0)
                .ok()
                .and_then(|i| file_ids.get(i).copied().flatten());
            if let (Some(file), Ok(line)) = (file, u32::try_from(key.1)) {
                if self.exec.contains(row.address()) {
                    self.rows.push(LineAddr {
                        file,
                        line,
                        address: row.address(),
                    });
                }
            }
        }
        Ok(())
    }

    fn functions(
        &mut self,
        dwarf: &Dwarf<'_>,
        unit: &Unit<'_>,
        file_ids: &[Option<u32>],
    ) -> gimli::Result<()> {
        // Interned namespace paths; id 0 is the unit's top level.
        let mut namespaces = vec![String::new()];
        let mut open: Vec<(isize, usize)> = Vec::new();
        // Namespace of every code-less subprogram (declaration or abstract instance), because
        // rustc may place the concrete DIE elsewhere and point back at one of these.
        let mut decl_ns: HashMap<UnitOffset, usize> = HashMap::new();
        let mut concrete = Vec::new();
        // (abstract origin, DIE depth, entry, ranges) of every inlined subroutine.
        let mut inlined = Vec::new();

        let mut cursor = unit.entries();
        while let Some(entry) = cursor.next_dfs()? {
            let depth = entry.depth();
            while open.last().is_some_and(|&(d, _)| d >= depth) {
                open.pop();
            }
            let ns = open.last().map_or(0, |&(_, id)| id);
            if entry.tag() == gimli::DW_TAG_namespace {
                let name = entry
                    .attr_value(gimli::DW_AT_name)
                    .and_then(|v| dwarf.attr_string(unit, v).ok());
                let id = match name {
                    Some(name) => {
                        let parent = &namespaces[ns];
                        let name = String::from_utf8_lossy(name.slice());
                        let path = if parent.is_empty() {
                            name.into_owned()
                        } else {
                            format!("{parent}::{name}")
                        };
                        namespaces.push(path);
                        namespaces.len() - 1
                    }
                    None => ns,
                };
                open.push((depth, id));
            } else if entry.tag() == gimli::DW_TAG_subprogram {
                match entry.attr_value(gimli::DW_AT_low_pc) {
                    Some(low_pc) => {
                        let address = dwarf.attr_address(unit, low_pc)?;
                        if let Some(address) = address.filter(|&a| self.exec.contains(a)) {
                            concrete.push((DieInfo::read(dwarf, unit, entry), ns, address));
                        }
                    }
                    None => {
                        decl_ns.insert(entry.offset(), ns);
                    }
                }
            } else if entry.tag() == gimli::DW_TAG_inlined_subroutine {
                let Some(origin) = DieInfo::read(dwarf, unit, entry).origin else {
                    continue;
                };
                let mut ranges = Vec::new();
                let mut iter = dwarf.die_ranges(unit, entry)?;
                while let Some(range) = iter.next()? {
                    if range.begin < range.end && self.exec.contains(range.begin) {
                        ranges.push((range.begin, range.end));
                    }
                }
                let entry_pc = match entry.attr_value(gimli::DW_AT_entry_pc) {
                    Some(value) => dwarf.attr_address(unit, value)?,
                    None => None,
                };
                let first = ranges.iter().map(|&(begin, _)| begin).min();
                if let Some(start) = entry_pc.filter(|&a| self.exec.contains(a)).or(first) {
                    inlined.push((origin, depth, start, ranges));
                }
            }
        }

        // Most inlined copies are std's; their origins are resolved once each and dropped.
        let mut declared: HashMap<UnitOffset, Option<(u32, u32)>> = HashMap::new();
        for (origin, depth, start, ranges) in inlined {
            let declaration = *declared.entry(origin).or_insert_with(|| {
                let info = DieInfo::resolve(dwarf, unit, DieInfo::empty(Some(origin)));
                let file = info
                    .file
                    .and_then(|f| usize::try_from(f).ok())
                    .and_then(|f| file_ids.get(f).copied().flatten())?;
                Some((file, u32::try_from(info.line?).ok()?))
            });
            if let Some((file, line)) = declaration {
                let copy = InlinedCopy {
                    file,
                    line,
                    entry: start,
                };
                self.inlined.push((copy, depth, ranges));
            }
        }

        for (info, ns, address) in concrete {
            let declared_ns = std::iter::successors(info.origin, |&offset| {
                unit.entry(offset)
                    .ok()
                    .and_then(|target| DieInfo::read(dwarf, unit, &target).origin)
            })
            .take(MAX_ORIGIN_HOPS)
            .find_map(|offset| decl_ns.get(&offset).copied().filter(|&id| id != 0));
            let info = DieInfo::resolve(dwarf, unit, info);
            let file = info
                .file
                .and_then(|f| usize::try_from(f).ok())
                .and_then(|f| file_ids.get(f).copied().flatten());
            let (Some(name), Some(file)) = (info.name, file) else {
                continue;
            };
            let namespace = &namespaces[declared_ns.unwrap_or(ns)];
            let name = String::from_utf8_lossy(name.slice());
            let path = if namespace.is_empty() {
                name.into_owned()
            } else {
                format!("{namespace}::{name}")
            };
            self.functions.push(FunctionEntry {
                path,
                file,
                line: info.line.and_then(|l| u32::try_from(l).ok()).unwrap_or(0),
                address,
            });
        }
        Ok(())
    }

    fn finish(self, load_base: u64, position_independent: bool) -> LineTable {
        let Collector {
            exe,
            files,
            mut rows,
            mut functions,
            inlined,
            ..
        } = self;
        // Ids were handed out in discovery order; sorting makes the table independent of unit order.
        let mut order: Vec<usize> = (0..files.len()).collect();
        order.sort_unstable_by(|&a, &b| files[a].cmp(&files[b]));
        let mut remap = vec![0u32; files.len()];
        for (new, &old) in order.iter().enumerate() {
            remap[old] = new as u32;
        }
        let mut slots: Vec<Option<PathBuf>> = files.into_iter().map(Some).collect();
        let files: Vec<PathBuf> = order.iter().filter_map(|&old| slots[old].take()).collect();

        for row in &mut rows {
            row.file = remap[row.file as usize];
        }
        rows.sort_unstable_by_key(|r| (r.file, r.line, r.address));
        rows.dedup();

        for function in &mut functions {
            function.file = remap[function.file as usize];
        }
        functions.sort_unstable_by(|a, b| {
            (a.address, &a.path, a.file, a.line).cmp(&(b.address, &b.path, b.file, b.line))
        });
        functions.dedup();
        let (inlined, inlined_ranges) = innermost_copies(inlined, &remap);

        tracing::debug!(
            exe = %exe.display(),
            files = files.len(),
            rows = rows.len(),
            functions = functions.len(),
            inlined = inlined.len(),
            "read DWARF line table"
        );
        LineTable {
            files,
            rows,
            functions,
            inlined,
            inlined_ranges,
            load_base,
            position_independent,
        }
    }
}

/// The attributes of a subprogram DIE that a concrete instance may inherit from its origin.
struct DieInfo<'a> {
    name: Option<Reader<'a>>,
    file: Option<u64>,
    line: Option<u64>,
    origin: Option<UnitOffset>,
}

impl<'a> DieInfo<'a> {
    fn empty(origin: Option<UnitOffset>) -> Self {
        DieInfo {
            name: None,
            file: None,
            line: None,
            origin,
        }
    }

    /// Fills what `self` lacks from the DIEs it refers to (specification, abstract origin).
    fn resolve(dwarf: &Dwarf<'a>, unit: &Unit<'a>, mut info: Self) -> Self {
        let mut origin = info.origin;
        for _ in 0..MAX_ORIGIN_HOPS {
            let Some(offset) = origin else { break };
            let Ok(target) = unit.entry(offset) else {
                break;
            };
            let target = DieInfo::read(dwarf, unit, &target);
            info.name = info.name.or(target.name);
            info.file = info.file.or(target.file);
            info.line = info.line.or(target.line);
            origin = target.origin;
        }
        info
    }

    fn read(
        dwarf: &Dwarf<'a>,
        unit: &Unit<'a>,
        entry: &gimli::DebuggingInformationEntry<Reader<'a>>,
    ) -> Self {
        let origin = entry
            .attr_value(gimli::DW_AT_specification)
            .or_else(|| entry.attr_value(gimli::DW_AT_abstract_origin))
            .and_then(|v| match v {
                AttributeValue::UnitRef(offset) => Some(offset),
                AttributeValue::DebugInfoRef(offset) => offset.to_unit_offset(&unit.header),
                _ => None,
            });
        DieInfo {
            name: entry
                .attr_value(gimli::DW_AT_name)
                .and_then(|v| dwarf.attr_string(unit, v).ok()),
            file: entry
                .attr_value(gimli::DW_AT_decl_file)
                .and_then(|v| match v {
                    AttributeValue::FileIndex(index) => Some(index),
                    other => other.udata_value(),
                }),
            line: entry
                .attr_value(gimli::DW_AT_decl_line)
                .and_then(|v| v.udata_value()),
            origin,
        }
    }
}

/// An inlined copy with its DIE depth (deeper = nested inside the shallower ones) and ranges.
type CopyRanges = (InlinedCopy, isize, Vec<(u64, u64)>);

/// Sorts the inlined copies and splits their ranges into disjoint pieces, each owned by the
/// innermost copy (the deepest DIE) that covers it: inlined ranges nest like the DIEs do.
fn innermost_copies(
    copies: Vec<CopyRanges>,
    remap: &[u32],
) -> (Vec<InlinedCopy>, Vec<(u64, u64, u32)>) {
    let mut copies: Vec<CopyRanges> = copies
        .into_iter()
        .map(|(mut copy, depth, mut ranges)| {
            copy.file = remap[copy.file as usize];
            ranges.sort_unstable();
            (copy, depth, ranges)
        })
        .collect();
    copies.sort_unstable_by(|a, b| {
        (&a.2, a.1, &a.0.file, a.0.line, a.0.entry)
            .cmp(&(&b.2, b.1, &b.0.file, b.0.line, b.0.entry))
    });
    let mut bounds: Vec<u64> = copies
        .iter()
        .flat_map(|(_, _, ranges)| ranges.iter().flat_map(|&(start, end)| [start, end]))
        .collect();
    bounds.sort_unstable();
    bounds.dedup();
    // Owner of each elementary piece `bounds[i]..bounds[i + 1]`: the deepest copy covering it.
    let mut owner: Vec<Option<(isize, u32)>> = vec![None; bounds.len()];
    for (index, (_, depth, ranges)) in copies.iter().enumerate() {
        for &(start, end) in ranges {
            let first = bounds.partition_point(|&b| b < start);
            let last = bounds.partition_point(|&b| b < end);
            for slot in &mut owner[first..last] {
                if slot.is_none_or(|(d, _)| d < *depth) {
                    *slot = Some((*depth, index as u32));
                }
            }
        }
    }
    let mut pieces: Vec<(u64, u64, u32)> = Vec::new();
    for (i, slot) in owner.iter().enumerate() {
        let (Some((_, copy)), Some(&end)) = (slot, bounds.get(i + 1)) else {
            continue;
        };
        match pieces.last_mut() {
            Some(last) if last.1 == bounds[i] && last.2 == *copy => last.1 = end,
            _ => pieces.push((bounds[i], end, *copy)),
        }
    }
    (
        copies.into_iter().map(|(copy, _, _)| copy).collect(),
        pieces,
    )
}

fn os_str<'a>(bytes: Reader<'a>) -> &'a OsStr {
    OsStr::from_bytes(bytes.slice())
}

/// Resolves `.` and `..` without touching the file system: DWARF paths may name files that
/// do not exist here (e.g. `/rustc/<hash>/library/...`), and stat-ing each would be slow.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => match out.components().next_back() {
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                Some(Component::RootDir | Component::Prefix(_)) => {}
                _ => out.push(".."),
            },
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::BTreeSet;
    use std::process::Command;
    use std::sync::OnceLock;
    use std::time::Instant;

    #[test]
    fn the_units_of_rustdocs_generated_crates_are_told_apart() {
        assert!(is_doctest_crate(
            b"src/lib.rs/@/rust_out.9c63b68f62c51ce9-cgu.0"
        ));
        assert!(is_doctest_crate(
            b"src/lib.rs/@/doctest_bundle_2024.4e30281dd23088d2-cgu.0"
        ));
        assert!(!is_doctest_crate(b"src/lib.rs/@/3cxus9j76olb7mp0qqf8hmg35"));
        assert!(!is_doctest_crate(b"src/lib.rs/@/ledger.1f2e-cgu.0"));
        assert!(!is_doctest_crate(b"src/rust_out.rs"));
    }

    /// Line numbers below are asserted by the tests; keep them in sync.
    const PROG: &str = "\
// Line numbers below are asserted by the tests.
fn straight(a: u32) -> u32 {
    let b = a + 1;
    let c = b * 2;

    // A comment line holds no code.
    c + b
}

fn generic<T: Copy + std::fmt::Debug>(value: T) -> String {
    format!(\"{value:?}\")
}

#[inline(always)]
fn always(x: u64) -> u64 {
    x ^ 0x5a
}

mod inner {
    pub fn helper(x: u64) -> u64 {
        x + 7
    }
}

fn main() {
    let s = straight(4);
    let g1 = generic(1u8);
    let g2 = generic(\"two\");
    let a1 = always(s as u64);
    let a2 = always(inner::helper(a1));
    println!(\"{s} {g1} {g2} {a1} {a2}\");
}
";
    const STATEMENT_LINES: &[u32] = &[3, 4, 7, 11, 16, 21, 26, 27, 28, 29, 30, 31];
    const NO_CODE_LINES: &[u32] = &[1, 5, 6, 9, 13, 14, 18, 19, 23, 24];
    const GENERIC_BODY: u32 = 11;
    const ALWAYS_BODY: u32 = 16;

    struct Compiled {
        table: LineTable,
        /// Everything kept, to check path handling and `keep_file` call counts.
        all: LineTable,
        keep_calls: HashMap<PathBuf, usize>,
        text: std::ops::Range<u64>,
    }

    struct Fixture {
        source: PathBuf,
        dwarf4: Compiled,
        dwarf5: Compiled,
    }

    /// Compiles the sample program once per test run; the binaries are deleted afterwards,
    /// only the tables read from them are kept.
    fn fixture() -> &'static Fixture {
        static FIXTURE: OnceLock<Fixture> = OnceLock::new();
        FIXTURE.get_or_init(|| {
            let dir = tempfile::tempdir().expect("temp dir");
            let dir_path = dir.path().canonicalize().expect("canonical temp dir");
            std::fs::write(dir_path.join("prog.rs"), PROG).expect("write source");
            let source = dir_path.join("prog.rs");
            let compile = |version: u32| {
                let exe = dir_path.join(format!("prog{version}"));
                // A relative source path makes the file name depend on DW_AT_comp_dir.
                let status = Command::new(std::env::var_os("RUSTC").unwrap_or("rustc".into()))
                    .current_dir(&dir_path)
                    .args(["-g", "-C", "debuginfo=2", "-C", "link-dead-code", "-C"])
                    .arg(format!("dwarf-version={version}"))
                    .arg("-o")
                    .arg(&exe)
                    .arg("prog.rs")
                    .status()
                    .expect("run rustc");
                assert!(status.success(), "rustc failed for DWARF {version}");
                let table = read_line_table(&exe, &|p| p == source).expect("read table");
                let calls = RefCell::new(HashMap::<PathBuf, usize>::new());
                let all = read_line_table(&exe, &|p| {
                    *calls.borrow_mut().entry(p.to_path_buf()).or_default() += 1;
                    true
                })
                .expect("read table keeping all files");
                let data = std::fs::read(&exe).expect("read exe");
                let file = object::File::parse(data.as_slice()).expect("parse exe");
                let text = file.section_by_name(".text").expect(".text");
                Compiled {
                    table,
                    all,
                    keep_calls: calls.into_inner(),
                    text: text.address()..text.address() + text.size(),
                }
            };
            let dwarf4 = compile(4);
            let dwarf5 = compile(5);
            Fixture {
                source,
                dwarf4,
                dwarf5,
            }
        })
    }

    fn both() -> [(&'static str, &'static Compiled); 2] {
        let f = fixture();
        [("DWARF 4", &f.dwarf4), ("DWARF 5", &f.dwarf5)]
    }

    fn addresses(table: &LineTable, line: u32) -> Vec<u64> {
        table
            .rows
            .iter()
            .filter(|r| r.line == line)
            .map(|r| r.address)
            .collect()
    }

    #[test]
    fn keeps_only_the_selected_source() {
        for (name, c) in both() {
            assert_eq!(c.table.files, vec![fixture().source.clone()], "{name}");
            assert!(c.table.rows.iter().all(|r| r.file == 0), "{name}");
        }
    }

    #[test]
    fn statement_lines_have_addresses_and_blank_lines_none() {
        for (name, c) in both() {
            for &line in STATEMENT_LINES {
                assert!(!addresses(&c.table, line).is_empty(), "{name}: line {line}");
            }
            for &line in NO_CODE_LINES {
                assert!(addresses(&c.table, line).is_empty(), "{name}: line {line}");
            }
        }
    }

    #[test]
    fn generic_and_inlined_lines_have_one_address_per_copy() {
        for (name, c) in both() {
            assert!(addresses(&c.table, GENERIC_BODY).len() >= 2, "{name}");
            assert!(addresses(&c.table, ALWAYS_BODY).len() >= 2, "{name}");
        }
    }

    #[test]
    fn addresses_lie_in_text_and_rows_are_sorted() {
        for (name, c) in both() {
            for table in [&c.table, &c.all] {
                assert!(!table.rows.is_empty(), "{name}");
                for r in &table.rows {
                    assert!(c.text.contains(&r.address), "{name}: {r:?}");
                }
                assert!(
                    table
                        .rows
                        .windows(2)
                        .all(|w| (w[0].file, w[0].line, w[0].address)
                            < (w[1].file, w[1].line, w[1].address)),
                    "{name}"
                );
                assert!(
                    table
                        .functions
                        .windows(2)
                        .all(|w| w[0].address <= w[1].address && w[0] != w[1]),
                    "{name}"
                );
            }
        }
    }

    #[test]
    fn functions_carry_namespace_path_and_decl_line() {
        for (name, c) in both() {
            let find = |path: &str| {
                c.table
                    .functions
                    .iter()
                    .filter(|f| f.path == path)
                    .map(|f| (f.file, f.line))
                    .collect::<Vec<_>>()
            };
            assert_eq!(find("prog::inner::helper"), vec![(0, 20)], "{name}");
            assert_eq!(find("prog::straight"), vec![(0, 2)], "{name}");
            assert_eq!(find("prog::main"), vec![(0, 25)], "{name}");
            assert_eq!(find("prog::generic<u8>"), vec![(0, 10)], "{name}");
            assert_eq!(find("prog::generic<&str>"), vec![(0, 10)], "{name}");
            for f in &c.table.functions {
                assert!(c.text.contains(&f.address), "{name}: {f:?}");
            }
        }
    }

    #[test]
    fn inlined_copies_know_their_function_and_hold_its_inlined_rows() {
        for (name, c) in both() {
            let table = &c.table;
            let copies: Vec<usize> = (0..table.inlined.len())
                .filter(|&i| (table.inlined[i].file, table.inlined[i].line) == (0, 15))
                .collect();
            assert_eq!(copies.len(), 2, "{name}: `always` is inlined twice");
            let out_of_line = table
                .functions
                .iter()
                .find(|f| f.path == "prog::always")
                .expect("out-of-line copy (link-dead-code)")
                .address;
            let mut holders: Vec<usize> = addresses(table, ALWAYS_BODY)
                .into_iter()
                .filter_map(|a| table.inlined_copy_at(a))
                .collect();
            holders.sort();
            holders.dedup();
            assert_eq!(holders, copies, "{name}");
            for &copy in &copies {
                let entry = table.inlined[copy].entry;
                assert_eq!(table.inlined_copy_at(entry), Some(copy), "{name}");
                assert!(addresses(table, ALWAYS_BODY).contains(&entry), "{name}");
            }
            assert_eq!(table.inlined_copy_at(out_of_line), None, "{name}");
        }
    }

    #[test]
    fn nested_inlined_ranges_belong_to_the_innermost_copy() {
        let copy = |line| InlinedCopy {
            file: 0,
            line,
            entry: 0,
        };
        let (copies, pieces) = innermost_copies(
            vec![
                (copy(30), 3, vec![(0x20, 0x30)]),
                (copy(10), 2, vec![(0x60, 0x70), (0x10, 0x40)]),
                (copy(20), 2, vec![(0x50, 0x58)]),
            ],
            &[0],
        );
        assert_eq!(copies, [copy(10), copy(30), copy(20)]);
        assert_eq!(
            pieces,
            [
                (0x10, 0x20, 0),
                (0x20, 0x30, 1),
                (0x30, 0x40, 0),
                (0x50, 0x58, 2),
                (0x60, 0x70, 0)
            ]
        );
    }

    #[test]
    fn pie_layout() {
        for (name, c) in both() {
            assert!(c.table.position_independent, "{name}");
            assert_eq!(c.table.load_base, 0, "{name}");
        }
    }

    #[test]
    fn dwarf4_and_dwarf5_agree_on_lines() {
        let f = fixture();
        let lines = |t: &LineTable| t.rows.iter().map(|r| r.line).collect::<BTreeSet<_>>();
        assert_eq!(lines(&f.dwarf4.table), lines(&f.dwarf5.table));
    }

    #[test]
    fn paths_are_absolute_normalised_and_asked_once() {
        for (name, c) in both() {
            assert!(c.all.files.len() > 1, "{name}");
            assert!(c.all.files.windows(2).all(|w| w[0] < w[1]), "{name}");
            for path in &c.all.files {
                assert!(path.is_absolute(), "{name}: {}", path.display());
                assert!(
                    path.components()
                        .all(|c| !matches!(c, Component::CurDir | Component::ParentDir)),
                    "{name}: {}",
                    path.display()
                );
            }
            assert!(c.keep_calls.values().all(|&n| n == 1), "{name}");
            assert!(c.all.files.contains(&fixture().source), "{name}");
        }
    }

    #[test]
    fn normalize_is_lexical() {
        assert_eq!(normalize(Path::new("/a/./b/../c//d/")), Path::new("/a/c/d"));
        assert_eq!(normalize(Path::new("/../a")), Path::new("/a"));
        assert_eq!(normalize(Path::new("../a/../../b")), Path::new("../../b"));
    }

    #[test]
    fn bad_inputs_are_errors() {
        let dir = tempfile::tempdir().expect("temp dir");
        let missing = dir.path().join("missing");
        assert!(matches!(
            read_line_table(&missing, &|_| true),
            Err(DwarfError::Io { .. })
        ));

        let text = dir.path().join("text");
        std::fs::write(&text, "not an executable\n").expect("write");
        assert!(matches!(
            read_line_table(&text, &|_| true),
            Err(DwarfError::Object { .. })
        ));

        let exe = std::fs::read(std::env::current_exe().expect("current exe")).expect("read");
        let truncated = dir.path().join("truncated");
        std::fs::write(&truncated, &exe[..exe.len().min(64 * 1024)]).expect("write");
        let err = read_line_table(&truncated, &|_| true).expect_err("truncated ELF");
        assert!(!err.to_string().is_empty());
    }

    #[test]
    fn reads_own_test_binary() {
        let exe = std::env::current_exe().expect("current exe");
        let size = std::fs::metadata(&exe).expect("metadata").len();
        let start = Instant::now();
        let table =
            read_line_table(&exe, &|p| p.ends_with("src/dwarf.rs")).expect("read own binary");
        println!(
            "read_line_table({}): {:.1} MB in {} ms, {} rows, {} functions",
            exe.display(),
            size as f64 / 1e6,
            start.elapsed().as_millis(),
            table.rows.len(),
            table.functions.len()
        );
        assert_eq!(table.files.len(), 1);
        assert!(table.rows.len() > 100);
        // The workspace's release profile keeps line tables only, so no subprogram DIEs there.
        if cfg!(debug_assertions) {
            let has = |path: &str| table.functions.iter().any(|f| f.path == path);
            assert!(has("coverlay::dwarf::tests::reads_own_test_binary"));
            assert!(has("coverlay::dwarf::read_line_table"));
        }

        let start = Instant::now();
        let all = read_line_table(&exe, &|_| true).expect("read own binary, all files");
        println!(
            "keeping every file: {} ms, {} files, {} rows, {} functions",
            start.elapsed().as_millis(),
            all.files.len(),
            all.rows.len(),
            all.functions.len()
        );
        assert!(all.rows.len() > table.rows.len());
    }
}
