//! On-disk caches under `<target>/coverlay/`: each test executable's DWARF line table and counting
//! sites keyed by the file's identity (device, inode, size, modification time), each source file's
//! analysis keyed by its content, so that a rerun after a change redoes only what changed.

use std::hash::{Hash, Hasher};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::dwarf::{self, DwarfError, LineTable};

/// A directory of JSON entries named by a key's hash. Unreadable or unwritable entries only cost
/// recomputing them.
#[derive(Clone, Debug)]
pub struct JsonCache {
    dir: PathBuf,
}

impl JsonCache {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// The value stored for `key`, or `compute()`'s result, stored for next time.
    pub fn get_or_insert<T: Serialize + DeserializeOwned>(
        &self,
        key: impl Hash,
        compute: impl FnOnce() -> T,
    ) -> T {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (env!("CARGO_PKG_VERSION"), key).hash(&mut hasher);
        let entry = self.dir.join(format!("{:016x}.json", hasher.finish()));
        if let Some(value) = std::fs::read(&entry)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        {
            return value;
        }
        let value = compute();
        if std::fs::create_dir_all(&self.dir).is_ok() {
            if let Ok(bytes) = serde_json::to_vec(&value) {
                // Written aside and renamed, so a parallel reader never sees half an entry.
                let partial = entry.with_extension(format!("{}.tmp", std::process::id()));
                if std::fs::write(&partial, bytes).is_ok() {
                    let _ = std::fs::rename(&partial, &entry);
                }
            }
        }
        value
    }

    /// [`JsonCache::get_or_insert`] for a value that depends on the file at `path` too: kept by
    /// the file's identity, computed afresh each time when it has none.
    pub fn get_or_insert_for<T: Serialize + DeserializeOwned>(
        &self,
        path: &Path,
        key: impl Hash,
        compute: impl FnOnce() -> T,
    ) -> T {
        match file_identity(path) {
            Some(identity) => self.get_or_insert((key, path, identity), compute),
            None => compute(),
        }
    }
}

/// What identifies a file's content without reading it: device, inode, size, modification time.
pub fn file_identity(path: &Path) -> Option<(u64, u64, u64, i64, i64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((
        meta.dev(),
        meta.ino(),
        meta.len(),
        meta.mtime(),
        meta.mtime_nsec(),
    ))
}

/// Bumped whenever `LineTable` or the reading rules change, so that old entries are not trusted
/// (2: inlined copies).
const FORMAT: u32 = 2;

pub struct LineCache {
    dir: PathBuf,
}

impl LineCache {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// The line table of `exe`, from the cache when the file is unchanged.
    pub fn read(
        &self,
        exe: &Path,
        keep_file: &dyn Fn(&Path) -> bool,
    ) -> Result<LineTable, DwarfError> {
        let Some(entry) = self.entry(exe) else {
            return dwarf::read_line_table(exe, keep_file);
        };
        if let Some(table) = std::fs::read(&entry)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        {
            return Ok(table);
        }
        let table = dwarf::read_line_table(exe, keep_file)?;
        // A cache that cannot be written only costs the next run a re-read.
        if std::fs::create_dir_all(&self.dir).is_ok() {
            if let Ok(bytes) = serde_json::to_vec(&table) {
                let partial = entry.with_extension("tmp");
                if std::fs::write(&partial, bytes).is_ok() {
                    let _ = std::fs::rename(&partial, &entry);
                }
            }
        }
        Ok(table)
    }

    /// Whether `exe`'s line table is cached (an executable cargo did not rebuild since).
    pub fn has(&self, exe: &Path) -> bool {
        self.entry(exe).is_some_and(|entry| entry.exists())
    }

    fn entry(&self, exe: &Path) -> Option<PathBuf> {
        let meta = std::fs::metadata(exe).ok()?;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (
            FORMAT,
            exe,
            meta.dev(),
            meta.ino(),
            meta.len(),
            meta.mtime(),
            meta.mtime_nsec(),
        )
            .hash(&mut hasher);
        let name = exe.file_name()?.to_string_lossy();
        Some(
            self.dir
                .join(format!("{name}-{:016x}.json", hasher.finish())),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unchanged_file_is_read_from_the_cache_and_a_changed_one_again() {
        let dir = tempfile::tempdir().unwrap();
        let exe = std::env::current_exe().unwrap();
        let copy = dir.path().join("exe");
        std::fs::copy(&exe, &copy).unwrap();
        let cache = LineCache::new(dir.path().join("cache"));
        let keep = |p: &Path| p.ends_with("cache.rs");
        let first = cache.read(&copy, &keep).unwrap();
        assert!(!first.rows.is_empty());
        let entries = || std::fs::read_dir(dir.path().join("cache")).unwrap().count();
        assert_eq!(entries(), 1);

        // A poisoned entry is what an unchanged file gets back: proof the cache was used.
        let entry = cache.entry(&copy).unwrap();
        let mut poisoned = first.clone();
        poisoned.rows.truncate(1);
        std::fs::write(&entry, serde_json::to_vec(&poisoned).unwrap()).unwrap();
        assert_eq!(cache.read(&copy, &keep).unwrap().rows.len(), 1);

        // Rewriting the file changes its identity: the table is read from DWARF again.
        std::fs::remove_file(&copy).unwrap();
        std::fs::copy(&exe, &copy).unwrap();
        assert_eq!(cache.read(&copy, &keep).unwrap().rows, first.rows);
    }
}
