//! Watches the workspace for changes the editor does not report (a `git checkout`, a file edited
//! elsewhere): debounced `notify` events for every file, with `target/`, `.git/`, `Cargo.lock` (our
//! own builds write it) and the workspace's target directory, wherever it is, ignored.

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::RecursiveMode;
use notify_debouncer_full::{new_debouncer, DebounceEventResult, Debouncer, RecommendedCache};

pub struct Watcher {
    _debouncer: Debouncer<notify::RecommendedWatcher, RecommendedCache>,
}

/// Whether a change to `path` may change coverage: any file outside `target/`, `.git/` and
/// `target_dir` but `Cargo.lock` (test selection tells what a change affects).
pub fn is_relevant(path: &Path, root: &Path, target_dir: &Path) -> bool {
    if path.starts_with(target_dir)
        || path
            .strip_prefix(root)
            .unwrap_or(path)
            .components()
            .any(|c| c.as_os_str() == "target" || c.as_os_str() == ".git")
    {
        return false;
    }
    path.file_name().is_some_and(|name| name != "Cargo.lock")
}

/// Calls `on_change` with the relevant changed paths, at most once per `debounce`.
pub fn start(
    root: &Path,
    target_dir: PathBuf,
    debounce: Duration,
    on_change: impl Fn(Vec<PathBuf>) + Send + 'static,
) -> notify::Result<Watcher> {
    let root_dir = root.to_path_buf();
    let mut debouncer = new_debouncer(debounce, None, move |result: DebounceEventResult| {
        let Ok(events) = result else {
            return;
        };
        let mut paths: Vec<PathBuf> = events
            .iter()
            .filter(|e| !e.kind.is_access() && !e.kind.is_other())
            .flat_map(|e| e.paths.iter())
            .filter(|p| is_relevant(p, &root_dir, &target_dir))
            .cloned()
            .collect();
        paths.sort();
        paths.dedup();
        if !paths.is_empty() {
            on_change(paths);
        }
    })?;
    debouncer.watch(root, RecursiveMode::Recursive)?;
    Ok(Watcher {
        _debouncer: debouncer,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_outside_target_and_git_count() {
        let target = Path::new("/w/build");
        let is_relevant = |p: &str, t| is_relevant(Path::new(p), Path::new("/w"), t);
        assert!(is_relevant("/w/src/lib.rs", target));
        assert!(is_relevant("/w/Cargo.toml", target));
        assert!(!is_relevant("/w/target/debug/x.rs", target));
        assert!(!is_relevant("/w/build/x.rs", target));
        assert!(!is_relevant("/w/.git/index", target));
        assert!(is_relevant("/w/data/words.txt", target));
        assert!(!is_relevant("/w/Cargo.lock", target));
    }
}
