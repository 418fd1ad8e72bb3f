//! Watches the workspace for changes the editor does not report (a `git checkout`, a file edited
//! elsewhere): debounced `notify` events for every file, with `target/`, `.git/`, `Cargo.lock` (our
//! own builds write it) and the workspace's target directory, wherever it is, ignored.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notify::event::{ModifyKind, RenameMode};
use notify::{EventKind, RecursiveMode};
use notify_debouncer_full::{new_debouncer, DebounceEventResult, Debouncer, RecommendedCache};

pub struct Watcher {
    _debouncer: Arc<Mutex<Option<Debounced>>>,
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

type Debounced = Debouncer<notify::RecommendedWatcher, RecommendedCache>;

/// Calls `on_change` with the relevant changed paths, at most once per `debounce`.
///
/// The root is watched alone and each of its directories recursively, but for the ignored ones:
/// a recursive watch of the root would walk the target directory (thousands of build outputs,
/// each with a kernel watch and a file-id lookup: 45–90 ms at the server's start on a small crate)
/// and take every event of every build. A directory made, moved or renamed into the root later is
/// watched when its event arrives.
pub fn start(
    root: &Path,
    target_dir: PathBuf,
    debounce: Duration,
    on_change: impl Fn(Vec<PathBuf>) + Send + 'static,
) -> notify::Result<Watcher> {
    let root_dir = root.to_path_buf();
    let slot: Arc<Mutex<Option<Debounced>>> = Arc::new(Mutex::new(None));
    let this = Arc::downgrade(&slot);
    let target = target_dir.clone();
    // Runs on the debouncer's thread, which holds no lock of its own meanwhile.
    let mut debouncer = new_debouncer(debounce, None, move |result: DebounceEventResult| {
        let Ok(events) = result else {
            return;
        };
        // Made, or moved or renamed into the root (the root's watch does not reach inside).
        let created: Vec<&PathBuf> = events
            .iter()
            .filter(|e| {
                e.kind.is_create()
                    || matches!(
                        e.kind,
                        EventKind::Modify(ModifyKind::Name(RenameMode::To | RenameMode::Both))
                    )
            })
            .flat_map(|e| e.paths.iter())
            .filter(|p| p.parent() == Some(root_dir.as_path()) && p.is_dir())
            .filter(|p| watched_recursively(p, &root_dir, &target))
            .collect();
        if let (false, Some(slot)) = (created.is_empty(), this.upgrade()) {
            if let Some(debouncer) = slot.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
                for dir in &created {
                    watch_tree(debouncer, dir);
                }
            }
        }
        let mut paths: Vec<PathBuf> = events
            .iter()
            .filter(|e| !e.kind.is_access() && !e.kind.is_other())
            .flat_map(|e| e.paths.iter())
            .filter(|p| is_relevant(p, &root_dir, &target))
            .cloned()
            .collect();
        // Files written into a new directory before its watch began (a checkout makes both at
        // once) sent no event of their own.
        for dir in created {
            files_in(dir, &mut paths);
        }
        paths.sort();
        paths.dedup();
        if !paths.is_empty() {
            on_change(paths);
        }
    })?;
    debouncer.watch(root, RecursiveMode::NonRecursive)?;
    for entry in std::fs::read_dir(root)?.flatten() {
        let path = entry.path();
        if path.is_dir() && watched_recursively(&path, root, &target_dir) {
            watch_tree(&mut debouncer, &path);
        }
    }
    *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(debouncer);
    Ok(Watcher { _debouncer: slot })
}

/// One directory that cannot be watched (gone already, unreadable) costs only itself.
fn watch_tree(debouncer: &mut Debounced, dir: &Path) {
    if let Err(error) = debouncer.watch(dir, RecursiveMode::Recursive) {
        tracing::warn!("cannot watch {}: {error}", dir.display());
    }
}

fn files_in(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        match entry.file_type() {
            Ok(kind) if kind.is_dir() => files_in(&path, files),
            Ok(_) => files.push(path),
            Err(_) => {}
        }
    }
}

/// Whether a directory of the root (`dir`) is watched with everything in it: not the target
/// directory, `target/` or `.git/`, nor one holding the target directory (watched but for it
/// would need a watch per directory; a target directory inside a source directory is rare).
fn watched_recursively(dir: &Path, root: &Path, target_dir: &Path) -> bool {
    is_relevant(&dir.join("x"), root, target_dir) && !target_dir.starts_with(dir)
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

    #[test]
    fn the_roots_directories_are_watched_but_for_build_outputs_and_git() {
        let watched = |dir: &str, target: &str| {
            watched_recursively(Path::new(dir), Path::new("/w"), Path::new(target))
        };
        assert!(watched("/w/src", "/w/target"));
        assert!(watched("/w/tests", "/w/target"));
        assert!(!watched("/w/target", "/w/target"));
        assert!(!watched("/w/.git", "/w/target"));
        assert!(
            !watched("/w/build", "/w/build"),
            "a target directory of another name"
        );
        assert!(!watched("/w/out", "/w/out/cargo"), "one that holds it");
        assert!(watched("/w/out", "/elsewhere/target"));
    }

    #[test]
    fn changes_are_reported_in_new_directories_and_not_in_build_outputs() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join("src")).unwrap();
        std::fs::create_dir_all(root.join("target/debug")).unwrap();
        let (sender, changes) = std::sync::mpsc::channel();
        let _watcher = start(
            &root,
            root.join("target"),
            Duration::from_millis(50),
            move |paths| {
                let _ = sender.send(paths);
            },
        )
        .unwrap();
        let wait_for = |path: &Path| {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            let mut seen = Vec::new();
            while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
                match changes.recv_timeout(left) {
                    Ok(paths) if paths.iter().any(|p| p == path) => return seen,
                    Ok(paths) => seen.extend(paths),
                    Err(_) => break,
                }
            }
            panic!("no change reported for {}; saw {seen:?}", path.display());
        };
        std::fs::write(root.join("target/debug/out.rs"), "build output").unwrap();
        std::fs::write(root.join("src/lib.rs"), "pub fn f() {}").unwrap();
        let before = wait_for(&root.join("src/lib.rs"));
        assert!(
            before.iter().all(|p| !p.starts_with(root.join("target"))),
            "{before:?}"
        );
        // A directory made after the start with a file at once, then another file in it.
        std::fs::create_dir_all(root.join("tests/common")).unwrap();
        std::fs::write(root.join("tests/common/mod.rs"), "pub fn f() {}").unwrap();
        wait_for(&root.join("tests/common/mod.rs"));
        std::fs::write(root.join("tests/it.rs"), "#[test] fn t() {}").unwrap();
        wait_for(&root.join("tests/it.rs"));
        // A directory moved in from outside the root, then a file in it.
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir(outside.path().join("benches")).unwrap();
        std::fs::write(outside.path().join("benches/b.rs"), "fn main() {}").unwrap();
        std::fs::rename(outside.path().join("benches"), root.join("benches")).unwrap();
        wait_for(&root.join("benches/b.rs"));
        std::fs::write(root.join("benches/c.rs"), "fn main() {}").unwrap();
        wait_for(&root.join("benches/c.rs"));
    }
}
