//! What rustc read to compile a crate, from the dep-info file (`<exe>.d`) cargo keeps beside
//! each executable: every module file and every `include_str!`/`include_bytes!` input.

use std::path::{Path, PathBuf};

use crate::cargo::Workspace;

/// The workspace's own files (not the target directory's) that `exe`'s crate was compiled from,
/// canonical; empty when there is no dep-info file.
pub fn inputs(workspace: &Workspace, exe: &Path) -> Vec<PathBuf> {
    let Ok(text) = std::fs::read_to_string(exe.with_extension("d")) else {
        return Vec::new();
    };
    prerequisites(&text)
        .into_iter()
        .map(|path| {
            // rustc writes the paths cargo gave it: relative to the workspace, with `..` in them.
            let path = workspace.root.join(path);
            path.canonicalize().unwrap_or(path)
        })
        .filter(|path| {
            path.starts_with(&workspace.root) && !path.starts_with(&workspace.target_dir)
        })
        .collect()
}

/// The prerequisites of the first rule of a Makefile-style dep-info file (`out: in1 in2 …`,
/// spaces in names escaped with `\`).
fn prerequisites(text: &str) -> Vec<PathBuf> {
    let Some(rule) = text.lines().find(|l| l.contains(": ")) else {
        return Vec::new();
    };
    let Some((_, prerequisites)) = rule.split_once(": ") else {
        return Vec::new();
    };
    let mut paths = Vec::new();
    let mut current = String::new();
    let mut chars = prerequisites.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => current.extend(chars.next()),
            ' ' => {
                if !current.is_empty() {
                    paths.push(PathBuf::from(std::mem::take(&mut current)));
                }
            }
            c => current.push(c),
        }
    }
    if !current.is_empty() {
        paths.push(PathBuf::from(current));
    }
    paths
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dep_info_lists_the_first_rules_prerequisites() {
        let text = "/t/deps/x-1.d: x/src/lib.rs x/src/../data/a\\ b.txt\n\n/t/deps/libx-1.rlib: x/src/lib.rs\n";
        assert_eq!(
            prerequisites(text),
            [
                PathBuf::from("x/src/lib.rs"),
                PathBuf::from("x/src/../data/a b.txt")
            ]
        );
        assert!(prerequisites("").is_empty());
    }
}
