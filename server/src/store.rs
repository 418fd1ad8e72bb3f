//! The coverage store the language server answers from: per file (keyed by absolute path) the
//! coverable lines with hits and each covering test's own hits, the functions, and the lines edited
//! since the run (stale). Runs replace it whole; readers take short per-file locks (`DashMap`) and
//! never wait for a run. It persists as `<target>/coverlay/coverage.json` (a serialised
//! `coverage::Coverage` with a `format` number; see `SAVED_FORMAT`).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use dashmap::DashMap;
use serde::{Deserialize, Serialize};

use crate::coverage::{Coverage, FileCoverage, TestInfo};

/// Format of the saved `coverage.json`: a `Coverage` with a `format` field. 2: per-test counts
/// (`TestHits`) and `capped` on lines; files without the field (format 1) are not loaded. The
/// optional `sources` (path → content hash as the build read it) came later within format 2.
const SAVED_FORMAT: u32 = 2;

#[derive(Serialize)]
struct Saved<'a> {
    format: u32,
    #[serde(flatten)]
    coverage: &'a Coverage,
    sources: &'a BTreeMap<PathBuf, u64>,
}

/// What `Store::load` reads back.
#[derive(Debug, Deserialize, PartialEq)]
pub struct Loaded {
    #[serde(flatten)]
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

#[derive(Default)]
pub struct Store {
    files: DashMap<PathBuf, FileState>,
    tests: RwLock<Arc<Tests>>,
    /// Generation of the run whose results are shown; older results are refused.
    generation: AtomicU64,
    /// The run's int3 fallback cap, kept for saving; lines marked `capped` are the lower bounds.
    count_cap: AtomicU32,
    /// Serialises replacements so a reader never sees half of two runs' files for long.
    replacing: Mutex<()>,
    /// Content hashes of the sources the shown results were measured on, saved with them.
    sources: Mutex<BTreeMap<PathBuf, u64>>,
}

impl Store {
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces everything with `coverage` unless a newer generation is already shown. Returns the
    /// paths of every file that had or has results (their diagnostics need publishing), or `None`
    /// when the result was refused as stale.
    pub fn replace(&self, generation: u64, coverage: Coverage) -> Option<Vec<PathBuf>> {
        let _guard = self.replacing.lock().unwrap_or_else(|e| e.into_inner());
        if generation < self.generation.load(Ordering::Acquire) {
            return None;
        }
        self.generation.store(generation, Ordering::Release);
        self.count_cap.store(coverage.count_cap, Ordering::Release);
        let mut touched: BTreeSet<PathBuf> = self.files.iter().map(|e| e.key().clone()).collect();
        let tests = Arc::new(Tests::new(coverage.tests, &coverage.files));
        let new: BTreeSet<PathBuf> = coverage.files.iter().map(|f| f.path.clone()).collect();
        self.files.retain(|path, _| new.contains(path));
        for file in coverage.files {
            touched.insert(file.path.clone());
            self.files.insert(
                file.path.clone(),
                FileState {
                    coverage: file,
                    stale: BTreeSet::new(),
                },
            );
        }
        *self.tests.write().unwrap_or_else(|e| e.into_inner()) = tests;
        Some(touched.into_iter().collect())
    }

    /// Merges a run of the tests in `ran` into the shown results (see [`crate::merge::merge`]).
    pub fn merge(
        &self,
        generation: u64,
        partial: Coverage,
        ran: &HashSet<String>,
    ) -> Option<Vec<PathBuf>> {
        let merged = crate::merge::merge(&self.snapshot(), partial, ran);
        self.replace(generation, merged)
    }

    /// Forgets every result. Returns the files that had results.
    pub fn clear(&self, generation: u64) -> Vec<PathBuf> {
        let empty = Coverage {
            files: Vec::new(),
            tests: Vec::new(),
            count_cap: self.count_cap(),
        };
        self.replace(generation, empty).unwrap_or_default()
    }

    pub fn file(&self, path: &Path) -> Option<dashmap::mapref::one::Ref<'_, PathBuf, FileState>> {
        self.files.get(path)
    }

    pub fn paths(&self) -> Vec<PathBuf> {
        let mut paths: Vec<PathBuf> = self.files.iter().map(|e| e.key().clone()).collect();
        paths.sort();
        paths
    }

    pub fn tests(&self) -> Arc<Tests> {
        self.tests.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn count_cap(&self) -> u32 {
        self.count_cap.load(Ordering::Acquire).max(1)
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The shown results as a `Coverage` (stale marks dropped), for saving and lcov.
    pub fn snapshot(&self) -> Coverage {
        let _guard = self.replacing.lock().unwrap_or_else(|e| e.into_inner());
        let mut files: Vec<FileCoverage> = self.files.iter().map(|e| e.coverage.clone()).collect();
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Coverage {
            files,
            tests: self.tests().list.clone(),
            count_cap: self.count_cap(),
        }
    }

    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let snapshot = self.snapshot();
        let sources = self
            .sources
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let saved = Saved {
            format: SAVED_FORMAT,
            coverage: &snapshot,
            sources: &sources,
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

    /// Records the content hashes of the sources the shown results were measured on.
    pub fn set_sources(&self, sources: BTreeMap<PathBuf, u64>) {
        *self.sources.lock().unwrap_or_else(|e| e.into_inner()) = sources;
    }

    /// The files whose content differs from what their results were measured on (`current`
    /// reads a file's hash now; `None`: gone): every line of them is marked stale. Returns them.
    pub fn mark_changed_sources(&self, current: &dyn Fn(&Path) -> Option<u64>) -> Vec<PathBuf> {
        let sources = self
            .sources
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut changed = Vec::new();
        for (path, hash) in sources {
            if current(&path) == Some(hash) {
                continue;
            }
            if let Some(mut state) = self.files.get_mut(&path) {
                let state = &mut *state;
                state
                    .stale
                    .extend(state.coverage.lines.iter().map(|l| l.line));
                state
                    .stale
                    .extend(state.coverage.functions.iter().map(|f| f.line));
                changed.push(path);
            }
        }
        changed
    }

    /// Keeps a file's results aligned with its buffer while the user types: lines
    /// `first..first + removed` (1-based) were replaced by `inserted` new lines. Results below move
    /// with the text; the replaced region is marked stale. Returns whether the file has results.
    pub fn shift_lines(&self, path: &Path, first: u32, removed: u32, inserted: u32) -> bool {
        let Some(mut state) = self.files.get_mut(path) else {
            return false;
        };
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
        let state = &mut *state;
        let mut stale: BTreeSet<u32> = state.stale.iter().filter_map(|&l| moved(l)).collect();
        stale.extend(first..first + inserted.max(1));
        for line in &mut state.coverage.lines {
            // Lines inside the replaced region keep a position at its start and are stale.
            line.line = moved(line.line).unwrap_or(first);
        }
        state.coverage.lines.dedup_by_key(|l| l.line);
        for function in &mut state.coverage.functions {
            function.line = moved(function.line).unwrap_or(first);
            function.end_line = moved(function.end_line)
                .unwrap_or(first + inserted.saturating_sub(1))
                .max(function.line);
        }
        state.stale = stale;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coverage::{FunctionCoverage, LineCoverage, TestHits};
    use crate::libtest::Outcome;

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
            }],
            tests: vec![],
            count_cap: 10,
        }
    }

    fn test(id: &str, outcome: Outcome) -> TestInfo {
        TestInfo {
            id: id.into(),
            outcome,
            duration_ms: 1,
            message: None,
            location: None,
        }
    }

    /// A line with per-test counts `(test index, hits)`; `extra` executions outside any test.
    fn line(line: u32, tests: &[(u32, u64)], extra: u64, capped: bool) -> LineCoverage {
        LineCoverage {
            line,
            hits: tests.iter().map(|t| t.1).sum::<u64>() + extra,
            capped,
            tests: tests
                .iter()
                .map(|&(test, hits)| TestHits { test, hits })
                .collect(),
        }
    }

    fn file(path: &str, lines: Vec<LineCoverage>) -> FileCoverage {
        FileCoverage {
            path: path.into(),
            lines,
            functions: vec![FunctionCoverage {
                name: "f".into(),
                line: 2,
                end_line: 9,
                hits: 0,
                is_test: false,
            }],
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
        store.replace(1, saved.clone());
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
        std::fs::write(&path, r#"{"format":2,"files":[{"path":3}]}"#).unwrap();
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
        store.replace(1, coverage(&[(2, 1), (3, 0)]));
        store.set_sources(BTreeMap::from([(PathBuf::from("/w/src/lib.rs"), 7)]));
        store.save(&path).unwrap();

        let loaded = Store::load(&path).unwrap();
        assert_eq!(loaded.sources.get(Path::new("/w/src/lib.rs")), Some(&7));
        let restarted = Store::new();
        restarted.replace(1, loaded.coverage);
        restarted.set_sources(loaded.sources);
        assert!(restarted.mark_changed_sources(&|_| Some(7)).is_empty());
        let changed = restarted.mark_changed_sources(&|_| Some(8));
        assert_eq!(changed, [PathBuf::from("/w/src/lib.rs")]);
        let file = restarted.file(Path::new("/w/src/lib.rs")).unwrap();
        assert!(
            file.is_stale(2) && file.is_stale(3),
            "every line with results"
        );
    }

    #[test]
    fn an_older_generation_never_replaces_a_newer_one() {
        let store = Store::new();
        assert!(store.replace(2, coverage(&[(2, 1)])).is_some());
        assert!(store.replace(1, coverage(&[(2, 9)])).is_none());
        let file = store.file(Path::new("/w/src/lib.rs")).unwrap();
        assert_eq!(file.coverage.lines[0].hits, 1);
    }

    #[test]
    fn edits_move_lines_below_and_mark_the_region_stale() {
        let store = Store::new();
        store.replace(1, coverage(&[(2, 1), (3, 1), (5, 0), (6, 1)]));
        // Line 3 replaced by three lines: 5 → 7, 6 → 8.
        assert!(store.shift_lines(Path::new("/w/src/lib.rs"), 3, 1, 3));
        let file = store.file(Path::new("/w/src/lib.rs")).unwrap();
        let lines: Vec<u32> = file.coverage.lines.iter().map(|l| l.line).collect();
        assert_eq!(lines, [2, 3, 7, 8]);
        assert_eq!(file.stale, BTreeSet::from([3, 4, 5]));
        assert_eq!(file.coverage.functions[0].end_line, 8);
        drop(file);
        // Two lines deleted above: 7 → 5.
        store.shift_lines(Path::new("/w/src/lib.rs"), 1, 2, 0);
        let file = store.file(Path::new("/w/src/lib.rs")).unwrap();
        let lines: Vec<u32> = file.coverage.lines.iter().map(|l| l.line).collect();
        assert_eq!(lines, [1, 5, 6]);
    }
}
