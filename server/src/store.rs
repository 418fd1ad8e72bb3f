//! The coverage store the language server answers from: per file (keyed by absolute path) the
//! coverable lines with hits and each covering test's own hits, the functions, and the lines edited
//! since the run (stale). Runs replace it whole; readers take short per-file locks (`DashMap`) and
//! never wait for a run. It persists as `<target>/coverlay/coverage.json` (a serialised
//! `coverage::Coverage` with a `format` number; see `SAVED_FORMAT`).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use dashmap::DashMap;
use serde::{Deserialize, Serialize};

use crate::coverage::{Coverage, FileCoverage, LineCoverage, TestHits, TestInfo};

/// Format of the saved `coverage.json`: a `Coverage` with a `format` field. 2: per-test counts
/// (`TestHits`) and `capped` on lines; files without the field (format 1) are not loaded.
const SAVED_FORMAT: u32 = 2;

#[derive(Serialize)]
struct Saved<'a> {
    format: u32,
    #[serde(flatten)]
    coverage: &'a Coverage,
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

    /// Merges a run of some tests only into the shown results: their outcomes replace the old
    /// ones, and on every line their own per-test counts replace the old ones (a rerun test that no
    /// longer reaches a line loses it); the other tests' counts stay. See `merge_line` for the
    /// line's total.
    pub fn merge(&self, generation: u64, partial: Coverage) -> Option<Vec<PathBuf>> {
        let mut merged = self.snapshot();
        let mut index_of: HashMap<String, u32> = merged
            .tests
            .iter()
            .enumerate()
            .map(|(i, t)| (t.id.clone(), i as u32))
            .collect();
        let mut remap = Vec::with_capacity(partial.tests.len());
        for test in partial.tests {
            let index = match index_of.get(&test.id) {
                Some(&i) => {
                    merged.tests[i as usize] = test;
                    i
                }
                None => {
                    let i = merged.tests.len() as u32;
                    index_of.insert(test.id.clone(), i);
                    merged.tests.push(test);
                    i
                }
            };
            remap.push(index);
        }
        let rerun: HashSet<u32> = remap.iter().copied().collect();
        let mut partial_files: HashMap<PathBuf, FileCoverage> = partial
            .files
            .into_iter()
            .map(|mut file| {
                for line in &mut file.lines {
                    remap_tests(&mut line.tests, &remap);
                }
                (file.path.clone(), file)
            })
            .collect();
        for old in &mut merged.files {
            // A file this run did not measure keeps its lines; only the rerun tests' counts go.
            let (new_lines, new_functions) = match partial_files.remove(&old.path) {
                Some(file) => (file.lines, file.functions),
                None => (Vec::new(), Vec::new()),
            };
            let mut new_lines = new_lines.into_iter().peekable();
            let mut lines = Vec::with_capacity(old.lines.len());
            for mut line in std::mem::take(&mut old.lines) {
                while let Some(new) = new_lines.next_if(|n| n.line < line.line) {
                    lines.push(new);
                }
                let new = new_lines
                    .next_if(|n| n.line == line.line)
                    .unwrap_or(LineCoverage {
                        line: line.line,
                        hits: 0,
                        capped: false,
                        tests: Vec::new(),
                    });
                merge_line(&mut line, &new, &rerun);
                lines.push(line);
            }
            lines.extend(new_lines);
            old.lines = lines;
            for function in new_functions {
                match old.functions.iter_mut().find(|f| f.line == function.line) {
                    Some(target) => target.hits = target.hits.max(function.hits),
                    None => old.functions.push(function),
                }
            }
            old.functions.sort_by_key(|f| f.line);
            // A function's hits are its entry line's.
            let lines = &old.lines;
            for function in &mut old.functions {
                if let Ok(i) = lines.binary_search_by_key(&function.line, |l| l.line) {
                    function.hits = lines[i].hits;
                }
            }
        }
        merged.files.extend(partial_files.into_values());
        merged.files.sort_by(|a, b| a.path.cmp(&b.path));
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
        let saved = Saved {
            format: SAVED_FORMAT,
            coverage: &snapshot,
        };
        let json = serde_json::to_vec(&saved).map_err(std::io::Error::other)?;
        let temporary = path.with_extension("json.tmp");
        std::fs::write(&temporary, json)?;
        std::fs::rename(&temporary, path)
    }

    /// Reads coverage saved by `save`. A file of another format (an older coverlay's) is an
    /// `InvalidData` error, as is one that does not parse: the caller starts without it.
    pub fn load(path: &Path) -> std::io::Result<Coverage> {
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

/// Test indexes of a partial run → indexes in the merged list (unknown indexes are dropped).
fn remap_tests(tests: &mut Vec<TestHits>, remap: &[u32]) {
    tests.retain_mut(|t| match remap.get(t.test as usize) {
        Some(&index) => {
            t.test = index;
            true
        }
        None => false,
    });
    tests.sort_by_key(|t| t.test);
}

/// Whether a line's total is the sum of its per-test counts (nothing ran it outside a test, or
/// outside what the counts attribute).
fn attributed(line: &LineCoverage) -> bool {
    line.hits == line.tests.iter().map(|t| t.hits).sum::<u64>()
}

/// Merges `new` (a partial run of the tests in `rerun`, already remapped) into `old`: the rerun
/// tests' entries are replaced by the new ones, the other tests' entries stay. The total is the sum
/// of the merged per-test counts when both totals were exactly their per-test sums, else the larger
/// of the two totals (as before per-test counts). Capped if either was.
fn merge_line(old: &mut LineCoverage, new: &LineCoverage, rerun: &HashSet<u32>) {
    let exact = attributed(old) && attributed(new);
    let mut tests: Vec<TestHits> = old
        .tests
        .iter()
        .filter(|t| !rerun.contains(&t.test))
        .chain(&new.tests)
        .copied()
        .collect();
    tests.sort_by_key(|t| t.test);
    tests.dedup_by_key(|t| t.test);
    old.hits = if exact {
        tests.iter().map(|t| t.hits).sum()
    } else {
        old.hits.max(new.hits)
    };
    old.capped |= new.capped;
    old.tests = tests;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coverage::FunctionCoverage;
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

    fn per_test(line: &LineCoverage) -> Vec<(u32, u64)> {
        line.tests.iter().map(|t| (t.test, t.hits)).collect()
    }

    #[test]
    fn a_partial_run_replaces_its_tests_counts_and_keeps_the_others() {
        let store = Store::new();
        let (a, b, c) = ("k::tests::a", "k::tests::b", "k::tests::c");
        store.replace(
            1,
            Coverage {
                files: vec![
                    file(
                        "/w/src/lib.rs",
                        vec![
                            line(2, &[(0, 5), (1, 7)], 0, false),
                            line(3, &[(1, 100)], 0, false),
                            // Ran outside the tests too: not the sum of its tests.
                            line(4, &[(0, 2)], 3, false),
                            line(5, &[], 0, false),
                        ],
                    ),
                    file(
                        "/w/src/other.rs",
                        vec![line(2, &[(1, 4), (0, 1)], 0, false)],
                    ),
                ],
                tests: vec![test(a, Outcome::Passed), test(b, Outcome::Passed)],
                count_cap: 10,
            },
        );
        // Rerun of b (now index 0) and a new test c (index 1); b no longer reaches line 3 nor
        // other.rs, which this run did not measure.
        store.merge(
            2,
            Coverage {
                files: vec![
                    file(
                        "/w/src/lib.rs",
                        vec![
                            line(2, &[(0, 1_000_000), (1, 3)], 0, false),
                            line(3, &[], 0, false),
                            line(4, &[(0, 1)], 0, false),
                            line(5, &[(1, 10)], 0, true),
                            line(6, &[(1, 1)], 0, false),
                        ],
                    ),
                    file("/w/src/new.rs", vec![line(2, &[(1, 2)], 0, false)]),
                ],
                tests: vec![test(b, Outcome::Failed), test(c, Outcome::Passed)],
                count_cap: 10,
            },
        );
        let tests = store.tests();
        let ids: Vec<&str> = tests.list.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids, [a, b, c]);
        assert_eq!(tests.list[1].outcome, Outcome::Failed);

        let lib = store.file(Path::new("/w/src/lib.rs")).unwrap();
        let lines = &lib.coverage.lines;
        assert_eq!(
            lines.iter().map(|l| l.line).collect::<Vec<_>>(),
            [2, 3, 4, 5, 6]
        );
        // a's 5 stay, b's 7 become 1,000,000, c's 3 are added: exact sum.
        assert_eq!(per_test(&lines[0]), [(0, 5), (1, 1_000_000), (2, 3)]);
        assert_eq!((lines[0].hits, lines[0].capped), (1_000_008, false));
        // b's only entry went: nothing runs the line now.
        assert_eq!(per_test(&lines[1]), []);
        assert_eq!(lines[1].hits, 0);
        // Not attributed before: the larger total, as before per-test counts.
        assert_eq!(per_test(&lines[2]), [(0, 2), (1, 1)]);
        assert_eq!(lines[2].hits, 5);
        // Capped by the new run.
        assert_eq!(per_test(&lines[3]), [(2, 10)]);
        assert_eq!((lines[3].hits, lines[3].capped), (10, true));
        assert_eq!(per_test(&lines[4]), [(2, 1)]);
        // The function's hits follow its entry line.
        assert_eq!(lib.coverage.functions[0].hits, 1_000_008);
        drop(lib);

        let other = store.file(Path::new("/w/src/other.rs")).unwrap();
        assert_eq!(per_test(&other.coverage.lines[0]), [(0, 1)]);
        assert_eq!(other.coverage.lines[0].hits, 1);
        drop(other);
        // A file only the partial run has keeps its lines, with remapped test indexes.
        let new = store.file(Path::new("/w/src/new.rs")).unwrap();
        assert_eq!(per_test(&new.coverage.lines[0]), [(2, 2)]);
    }

    #[test]
    fn merging_keeps_capped_lines_capped() {
        let store = Store::new();
        store.replace(
            1,
            Coverage {
                files: vec![file("/w/src/lib.rs", vec![line(2, &[(0, 10)], 0, true)])],
                tests: vec![test("k::a", Outcome::Passed), test("k::b", Outcome::Passed)],
                count_cap: 10,
            },
        );
        store.merge(
            2,
            Coverage {
                files: vec![file("/w/src/lib.rs", vec![line(2, &[(0, 4)], 0, false)])],
                tests: vec![test("k::b", Outcome::Passed)],
                count_cap: 10,
            },
        );
        let lib = store.file(Path::new("/w/src/lib.rs")).unwrap();
        assert_eq!(per_test(&lib.coverage.lines[0]), [(0, 10), (1, 4)]);
        assert_eq!(lib.coverage.lines[0].hits, 14);
        assert!(lib.coverage.lines[0].capped);
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
        assert_eq!(Store::load(&path).unwrap(), saved);

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
