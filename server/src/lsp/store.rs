//! The coverage store the language server answers from: an immutable snapshot of the shown
//! results (per file the coverable lines with hits and each covering test's own hits, the
//! functions, the lines edited since the run; the tests; the selection baseline) that runs and
//! edits swap whole and handlers read. It persists as `<target>/coverlay/coverage.json` (a
//! serialised `coverage::Coverage` under a `format` number; see `SAVED_FORMAT`).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

use crate::coverage::{Coverage, FileCoverage, TestInfo};
use crate::selection::Baseline;

/// Format of the saved `coverage.json`: `{"format": 3, "coverage": <Coverage>, "sources": {…}}`.
/// 3: the coverage under its own key (format 2 had its fields beside `format`, which serde can
/// only read through a buffered copy of the whole document: 90 ms of the server's start on
/// regex-syntax). Files of other formats are not loaded: the first run replaces them.
const SAVED_FORMAT: u32 = 3;

#[derive(Serialize)]
struct Saved<'a> {
    format: u32,
    coverage: &'a Coverage,
    sources: &'a BTreeMap<PathBuf, u64>,
}

/// What `Store::load` reads back.
#[derive(Debug, Deserialize, PartialEq)]
pub struct Loaded {
    pub coverage: Coverage,
    /// Content hashes of the sources the results were measured on (`selection::content_hash`).
    #[serde(default)]
    pub sources: BTreeMap<PathBuf, u64>,
}

#[derive(Deserialize)]
struct SavedFormat {
    #[serde(default = "first_format")]
    format: u32,
}

fn first_format() -> u32 {
    1
}

/// One file's results as the overlay shows them.
#[derive(Clone, Debug)]
pub struct FileState {
    pub coverage: FileCoverage,
    /// Lines (1-based, in the buffer's current numbering) edited since the run: shown as nothing
    /// rather than with numbers that may be wrong.
    pub stale: BTreeSet<u32>,
}

impl FileState {
    pub fn is_stale(&self, line: u32) -> bool {
        self.stale.contains(&line)
    }
}

/// The tests of the current results and where each test function is.
#[derive(Debug, Default)]
pub struct Tests {
    pub list: Vec<TestInfo>,
    /// (file, line of `fn`) → index into `list`.
    pub at: HashMap<(PathBuf, u32), usize>,
    /// File → (line of `fn`, index into `list`) of the tests in it.
    pub by_file: HashMap<PathBuf, Vec<(u32, usize)>>,
}

impl Tests {
    fn new(list: Vec<TestInfo>, files: &[FileCoverage]) -> Self {
        let mut at = HashMap::new();
        for (index, test) in list.iter().enumerate() {
            if let Some((path, line)) = &test.location {
                at.insert((path.clone(), *line), index);
            }
        }
        // Without debug-info locations, match `#[test]` fns by name: the id ends with the fn's
        // path (`ledger::tests::deposit` ↔ `deposit`).
        for file in files {
            for function in file.functions.iter().filter(|f| f.is_test) {
                let key = (file.path.clone(), function.line);
                if at.contains_key(&key) {
                    continue;
                }
                let suffix = format!("::{}", function.name);
                if let Some(index) = list
                    .iter()
                    .position(|t| t.location.is_none() && t.id.ends_with(&suffix))
                {
                    at.insert(key, index);
                }
            }
        }
        let mut by_file: HashMap<PathBuf, Vec<(u32, usize)>> = HashMap::new();
        for ((path, line), &index) in &at {
            by_file
                .entry(path.clone())
                .or_default()
                .push((*line, index));
        }
        Self { list, at, by_file }
    }
}

/// The results as the overlay shows them at one moment. Runs and edits build a new one and swap
/// it in whole ([`Store`]); handlers read one without holding any lock.
#[derive(Debug, Default)]
pub struct Shown {
    /// Generation of the run whose results these are; older results are refused.
    pub generation: u64,
    /// The run's int3 fallback cap; lines marked `capped` are lower bounds.
    pub count_cap: u32,
    pub files: HashMap<PathBuf, Arc<FileState>>,
    pub tests: Arc<Tests>,
    /// Content hashes of the sources the results were measured on, saved with them.
    pub sources: BTreeMap<PathBuf, u64>,
    /// What the results were built from and what each test ran, for selecting the tests a save
    /// can affect; `None` until a run that recorded its sources.
    pub baseline: Option<Arc<Baseline>>,
}

impl Shown {
    /// The results of a run (or loaded, or merged): nothing stale.
    pub fn new(
        generation: u64,
        coverage: Coverage,
        sources: BTreeMap<PathBuf, u64>,
        baseline: Option<Arc<Baseline>>,
    ) -> Shown {
        let tests = Arc::new(Tests::new(coverage.tests, &coverage.files));
        let files = coverage
            .files
            .into_iter()
            .map(|file| {
                let state = FileState {
                    coverage: file,
                    stale: BTreeSet::new(),
                };
                (state.coverage.path.clone(), Arc::new(state))
            })
            .collect();
        Shown {
            generation,
            count_cap: coverage.count_cap,
            files,
            tests,
            sources,
            baseline,
        }
    }

    pub fn file(&self, path: &Path) -> Option<&FileState> {
        self.files.get(path).map(Arc::as_ref)
    }

    pub fn paths(&self) -> Vec<PathBuf> {
        let mut paths: Vec<PathBuf> = self.files.keys().cloned().collect();
        paths.sort();
        paths
    }

    pub fn count_cap(&self) -> u32 {
        self.count_cap.max(1)
    }

    /// The results as a `Coverage` (stale marks dropped), for saving, lcov and merging.
    pub fn coverage(&self) -> Coverage {
        let mut files: Vec<FileCoverage> =
            self.files.values().map(|f| f.coverage.clone()).collect();
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Coverage {
            files,
            tests: self.tests.list.clone(),
            count_cap: self.count_cap(),
        }
    }

    /// A copy with `path`'s state changed by `change` (the other files are shared).
    fn with_file(&self, path: &Path, change: impl FnOnce(&mut FileState)) -> Option<Shown> {
        let mut state = FileState::clone(self.files.get(path)?);
        change(&mut state);
        let mut files = self.files.clone();
        files.insert(path.to_path_buf(), Arc::new(state));
        Some(Shown {
            files,
            tests: self.tests.clone(),
            sources: self.sources.clone(),
            baseline: self.baseline.clone(),
            ..*self
        })
    }
}

/// The shown results, swapped whole. One lock, held only to take or swap the `Arc` (and, for a
/// change, while building the next one from the current one, so that no change is lost).
#[derive(Default)]
pub struct Store {
    shown: RwLock<Arc<Shown>>,
}

impl Store {
    pub fn new() -> Self {
        Self::default()
    }

    /// The results as shown now.
    pub fn shown(&self) -> Arc<Shown> {
        self.shown.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Builds the next results from the current ones and swaps them in, unless `next` declines
    /// (`None`). Returns the paths of every file that had or has results.
    fn swap(&self, next: impl FnOnce(&Shown) -> Option<Shown>) -> Option<Vec<PathBuf>> {
        let mut current = self.shown.write().unwrap_or_else(|e| e.into_inner());
        let next = next(&current)?;
        let mut touched: BTreeSet<PathBuf> = current.files.keys().cloned().collect();
        touched.extend(next.files.keys().cloned());
        *current = Arc::new(next);
        Some(touched.into_iter().collect())
    }

    /// Shows `next` unless a newer generation is already shown (then `None`: refused as stale).
    pub fn replace(&self, next: Shown) -> Option<Vec<PathBuf>> {
        self.swap(|current| (next.generation >= current.generation).then_some(next))
    }

    /// Merges a run of the tests in `ran` into the shown results (see [`crate::merge::merge`]);
    /// `next` completes the merged coverage with the run's sources and baseline (given the
    /// results it replaces).
    pub fn merge(
        &self,
        generation: u64,
        partial: Coverage,
        ran: &HashSet<String>,
        narrowed: Option<&crate::merge::Narrowed>,
        next: impl FnOnce(u64, Coverage, &Shown) -> Shown,
    ) -> Option<Vec<PathBuf>> {
        self.swap(|current| {
            (generation >= current.generation).then(|| {
                let merged = crate::merge::merge(&current.coverage(), partial, ran, narrowed);
                next(generation, merged, current)
            })
        })
    }

    /// Forgets every result. Returns the files that had results.
    pub fn clear(&self, generation: u64) -> Vec<PathBuf> {
        let count_cap = self.shown().count_cap();
        let empty = Coverage {
            files: Vec::new(),
            tests: Vec::new(),
            count_cap,
        };
        self.replace(Shown::new(generation, empty, BTreeMap::new(), None))
            .unwrap_or_default()
    }

    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let shown = self.shown();
        let coverage = shown.coverage();
        let saved = Saved {
            format: SAVED_FORMAT,
            coverage: &coverage,
            sources: &shown.sources,
        };
        let json = serde_json::to_vec(&saved).map_err(std::io::Error::other)?;
        let temporary = path.with_extension("json.tmp");
        std::fs::write(&temporary, json)?;
        std::fs::rename(&temporary, path)
    }

    /// Reads coverage saved by `save`. A file of another format (an older coverlay's) is an
    /// `InvalidData` error, as is one that does not parse: the caller starts without it.
    pub fn load(path: &Path) -> std::io::Result<Loaded> {
        let bytes = std::fs::read(path)?;
        let invalid = |e: serde_json::Error| std::io::Error::new(ErrorKind::InvalidData, e);
        let format = serde_json::from_slice::<SavedFormat>(&bytes)
            .map_err(invalid)?
            .format;
        if format != SAVED_FORMAT {
            return Err(std::io::Error::new(
                ErrorKind::InvalidData,
                format!("saved in format {format}, this coverlay reads format {SAVED_FORMAT}"),
            ));
        }
        serde_json::from_slice(&bytes).map_err(invalid)
    }

    /// The files whose content differs from what their results were measured on (`current`
    /// reads a file's hash now; `None`: gone): every line of them is marked stale. Returns them.
    pub fn mark_changed_sources(&self, current: &dyn Fn(&Path) -> Option<u64>) -> Vec<PathBuf> {
        let mut changed = Vec::new();
        self.swap(|shown| {
            let mut next: Option<Shown> = None;
            for (path, hash) in &shown.sources {
                if current(path) == Some(*hash) {
                    continue;
                }
                let base = next.as_ref().unwrap_or(shown);
                if let Some(marked) = base.with_file(path, |state| {
                    let lines = state.coverage.lines.iter().map(|l| l.line);
                    let functions = state.coverage.functions.iter().map(|f| f.line);
                    state
                        .stale
                        .extend(lines.chain(functions).collect::<Vec<_>>());
                }) {
                    next = Some(marked);
                    changed.push(path.clone());
                }
            }
            next
        });
        changed
    }

    /// Keeps a file's results aligned with its buffer while the user types: lines
    /// `first..first + removed` (1-based) were replaced by `inserted` new lines. Results below move
    /// with the text; the replaced region is marked stale. Returns whether the file has results.
    pub fn shift_lines(&self, path: &Path, first: u32, removed: u32, inserted: u32) -> bool {
        self.swap(|shown| shown.with_file(path, |state| shift(state, first, removed, inserted)))
            .is_some()
    }
}

/// [`Store::shift_lines`] on one file's state.
fn shift(state: &mut FileState, first: u32, removed: u32, inserted: u32) {
    let end = first + removed;
    let moved = |line: u32| -> Option<u32> {
        if line < first {
            Some(line)
        } else if line >= end {
            Some(line + inserted - removed)
        } else {
            None
        }
    };
    let mut stale: BTreeSet<u32> = state.stale.iter().filter_map(|&l| moved(l)).collect();
    stale.extend(first..first + inserted.max(1));
    for line in &mut state.coverage.lines {
        // Lines inside the replaced region keep a position at its start and are stale.
        line.line = moved(line.line).unwrap_or(first);
    }
    state.coverage.lines.dedup_by_key(|l| l.line);
    // A branch of the replaced region is gone with the code it counted.
    state
        .coverage
        .branches
        .retain_mut(|branch| match moved(branch.line) {
            Some(line) => {
                branch.line = line;
                true
            }
            None => false,
        });
    for function in &mut state.coverage.functions {
        function.line = moved(function.line).unwrap_or(first);
        function.end_line = moved(function.end_line)
            .unwrap_or(first + inserted.saturating_sub(1))
            .max(function.line);
    }
    state.stale = stale;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coverage::test_data::{branch, file, line, test};
    use crate::coverage::{FunctionCoverage, LineCoverage};
    use crate::libtest::Outcome;

    /// Results of run `generation`, with no recorded sources.
    fn run(generation: u64, coverage: Coverage) -> Shown {
        Shown::new(generation, coverage, BTreeMap::new(), None)
    }

    fn coverage(lines: &[(u32, u64)]) -> Coverage {
        Coverage {
            files: vec![FileCoverage {
                path: "/w/src/lib.rs".into(),
                lines: lines
                    .iter()
                    .map(|&(line, hits)| LineCoverage {
                        line,
                        hits,
                        capped: false,
                        tests: vec![],
                    })
                    .collect(),
                functions: vec![FunctionCoverage {
                    name: "f".into(),
                    line: 2,
                    end_line: 6,
                    hits: 1,
                    is_test: false,
                }],
                branches: Vec::new(),
                matches: Vec::new(),
            }],
            tests: vec![],
            count_cap: 10,
        }
    }

    #[test]
    fn saved_coverage_loads_back_and_an_older_format_is_refused() {
        let dir = std::env::temp_dir().join(format!("coverlay-store-{}", std::process::id()));
        let path = dir.join("coverage.json");
        let store = Store::new();
        let saved = Coverage {
            files: vec![file(
                "/w/src/lib.rs",
                vec![line(2, &[(0, 7)], 0, false), line(3, &[(0, 10)], 0, true)],
            )],
            tests: vec![test("k::a", Outcome::Passed)],
            count_cap: 10,
        };
        store.replace(run(1, saved.clone()));
        store.save(&path).unwrap();
        assert_eq!(Store::load(&path).unwrap().coverage, saved);

        // Format 1: no `format`, tests as indexes, hits capped at `count_cap`.
        std::fs::write(
            &path,
            r#"{"files":[{"path":"/w/src/lib.rs","lines":[{"line":2,"hits":3,"tests":[0]}],
                "functions":[]}],"tests":[],"count_cap":1000}"#,
        )
        .unwrap();
        let error = Store::load(&path).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::InvalidData);
        // Format 2: the coverage's fields beside `format`.
        std::fs::write(
            &path,
            r#"{"format":2,"files":[],"tests":[],"count_cap":10}"#,
        )
        .unwrap();
        assert_eq!(
            Store::load(&path).unwrap_err().kind(),
            ErrorKind::InvalidData
        );
        std::fs::write(&path, r#"{"format":3,"coverage":{"files":[{"path":3}]}}"#).unwrap();
        assert_eq!(
            Store::load(&path).unwrap_err().kind(),
            ErrorKind::InvalidData
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn files_changed_since_their_run_are_stale_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("coverage.json");
        let store = Store::new();
        let sources = BTreeMap::from([(PathBuf::from("/w/src/lib.rs"), 7)]);
        store.replace(Shown::new(1, coverage(&[(2, 1), (3, 0)]), sources, None));
        store.save(&path).unwrap();

        let loaded = Store::load(&path).unwrap();
        assert_eq!(loaded.sources.get(Path::new("/w/src/lib.rs")), Some(&7));
        let restarted = Store::new();
        restarted.replace(Shown::new(1, loaded.coverage, loaded.sources, None));
        assert!(restarted.mark_changed_sources(&|_| Some(7)).is_empty());
        let changed = restarted.mark_changed_sources(&|_| Some(8));
        assert_eq!(changed, [PathBuf::from("/w/src/lib.rs")]);
        let shown = restarted.shown();
        let file = shown.file(Path::new("/w/src/lib.rs")).unwrap();
        assert!(
            file.is_stale(2) && file.is_stale(3),
            "every line with results"
        );
    }

    #[test]
    fn a_reader_keeps_the_snapshot_it_took_while_runs_and_edits_swap() {
        let store = Store::new();
        store.replace(run(1, coverage(&[(2, 1), (3, 1)])));
        let before = store.shown();
        store.shift_lines(Path::new("/w/src/lib.rs"), 1, 0, 2);
        store.replace(run(2, coverage(&[(2, 5)])));
        let lines = |shown: &Shown| -> Vec<(u32, u64)> {
            let file = shown.file(Path::new("/w/src/lib.rs")).unwrap();
            file.coverage
                .lines
                .iter()
                .map(|l| (l.line, l.hits))
                .collect()
        };
        assert_eq!(
            lines(&before),
            [(2, 1), (3, 1)],
            "what the reader took stays whole"
        );
        assert_eq!(lines(&store.shown()), [(2, 5)]);
        assert_eq!(store.shown().generation, 2);
    }

    #[test]
    fn an_older_generation_never_replaces_a_newer_one() {
        let store = Store::new();
        assert!(store.replace(run(2, coverage(&[(2, 1)]))).is_some());
        assert!(store.replace(run(1, coverage(&[(2, 9)]))).is_none());
        let shown = store.shown();
        let file = shown.file(Path::new("/w/src/lib.rs")).unwrap();
        assert_eq!(file.coverage.lines[0].hits, 1);
    }

    #[test]
    fn edits_move_lines_below_and_mark_the_region_stale() {
        let store = Store::new();
        store.replace(run(1, coverage(&[(2, 1), (3, 1), (5, 0), (6, 1)])));
        // Line 3 replaced by three lines: 5 → 7, 6 → 8.
        assert!(store.shift_lines(Path::new("/w/src/lib.rs"), 3, 1, 3));
        let shown = store.shown();
        let file = shown.file(Path::new("/w/src/lib.rs")).unwrap();
        let lines: Vec<u32> = file.coverage.lines.iter().map(|l| l.line).collect();
        assert_eq!(lines, [2, 3, 7, 8]);
        assert_eq!(file.stale, BTreeSet::from([3, 4, 5]));
        assert_eq!(file.coverage.functions[0].end_line, 8);
        // Two lines deleted above: 7 → 5.
        store.shift_lines(Path::new("/w/src/lib.rs"), 1, 2, 0);
        let shown = store.shown();
        let file = shown.file(Path::new("/w/src/lib.rs")).unwrap();
        let lines: Vec<u32> = file.coverage.lines.iter().map(|l| l.line).collect();
        assert_eq!(lines, [1, 5, 6]);
    }

    #[test]
    fn edits_move_branches_below_and_drop_those_of_the_region() {
        let store = Store::new();
        let mut coverage = coverage(&[(2, 1), (3, 1), (6, 1)]);
        coverage.files[0].branches = vec![branch(3, &[(0, 1, 0)]), branch(6, &[(0, 0, 1)])];
        store.replace(run(1, coverage));
        store.shift_lines(Path::new("/w/src/lib.rs"), 3, 1, 3);
        let shown = store.shown();
        let file = shown.file(Path::new("/w/src/lib.rs")).unwrap();
        let lines: Vec<u32> = file.coverage.branches.iter().map(|b| b.line).collect();
        assert_eq!(lines, [8]);
    }
}
