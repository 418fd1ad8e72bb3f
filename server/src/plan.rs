//! Turns an executable's DWARF line table and the source analysis into breakpoints: which addresses
//! to trap, and which coverable source line each address counts for.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use crate::analysis::{LineKind, SourceAnalysis};
use crate::dwarf::LineTable;

/// A source file of the workspace seen in some executable, with its analysis and the lines that
/// have machine code in at least one executable.
pub struct SourceFile {
    pub path: PathBuf,
    pub analysis: SourceAnalysis,
    pub lines_with_code: BTreeSet<u32>,
}

/// All source files met during a run, analysed once each.
#[derive(Default)]
pub struct Sources {
    pub files: Vec<SourceFile>,
    index: HashMap<PathBuf, usize>,
}

impl Sources {
    /// Analyses the files not seen yet, `jobs` at a time: syn parsing is the costly part of planning.
    pub fn add_all(&mut self, paths: &[&Path], jobs: usize) {
        let mut new: Vec<&Path> = paths
            .iter()
            .copied()
            .filter(|p| !self.index.contains_key(*p))
            .collect();
        new.sort();
        new.dedup();
        let analyses = crate::parallel::map(&new, jobs, |path| analyse(path));
        for (path, analysis) in new.into_iter().zip(analyses) {
            self.index.insert(path.to_path_buf(), self.files.len());
            self.files.push(SourceFile {
                path: path.to_path_buf(),
                analysis,
                lines_with_code: BTreeSet::new(),
            });
        }
    }

    fn id(&mut self, path: &Path) -> usize {
        if let Some(&id) = self.index.get(path) {
            return id;
        }
        self.add_all(&[path], 1);
        self.files.len() - 1
    }
}

fn analyse(path: &Path) -> SourceAnalysis {
    let source = match std::fs::read_to_string(path) {
        Ok(source) => source,
        Err(error) => {
            tracing::warn!(
                "cannot read {}: {error}; using DWARF lines only",
                path.display()
            );
            return SourceAnalysis::fallback("");
        }
    };
    crate::analysis::analyze(&source).unwrap_or_else(|error| {
        tracing::warn!(
            "{} does not parse ({error}); using DWARF lines only",
            path.display()
        );
        SourceAnalysis::fallback(&source)
    })
}

/// Breakpoints of one executable: `addresses[i]` counts for line `targets[i]`.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    pub addresses: Vec<u64>,
    pub targets: Vec<(usize, u32)>,
}

/// Chooses breakpoints for one executable. A coverable line is trapped at the addresses of its own
/// line-table rows; a statement whose first line has no code (a call whose arguments come first) is
/// trapped at its first later line that has. One trap per statement start keeps runs fast.
pub fn plan(table: &LineTable, sources: &mut Sources) -> Plan {
    #[derive(Default)]
    struct Candidate {
        own: Vec<u64>,
        later_line: u32,
        later: Vec<u64>,
    }
    let ids: Vec<usize> = table.files.iter().map(|p| sources.id(p)).collect();
    let mut candidates: BTreeMap<(usize, u32), Candidate> = BTreeMap::new();
    for row in &table.rows {
        let file = ids[row.file as usize];
        match sources.files[file].analysis.kind(row.line) {
            LineKind::None => {}
            LineKind::Start { .. } => candidates
                .entry((file, row.line))
                .or_default()
                .own
                .push(row.address),
            LineKind::Continuation { owner } => {
                let candidate = candidates.entry((file, owner)).or_default();
                if candidate.later.is_empty() || candidate.later_line == row.line {
                    candidate.later_line = row.line;
                    candidate.later.push(row.address);
                }
            }
        }
    }
    let mut pairs: Vec<(u64, (usize, u32))> = Vec::new();
    for ((file, line), candidate) in candidates {
        let addresses = if candidate.own.is_empty() {
            candidate.later
        } else {
            candidate.own
        };
        if addresses.is_empty() {
            continue;
        }
        sources.files[file].lines_with_code.insert(line);
        pairs.extend(addresses.into_iter().map(|a| (a, (file, line))));
    }
    pairs.sort_unstable_by_key(|&(address, _)| address);
    pairs.dedup_by_key(|&mut (address, _)| address);
    Plan {
        addresses: pairs.iter().map(|&(a, _)| a).collect(),
        targets: pairs.into_iter().map(|(_, t)| t).collect(),
    }
}
