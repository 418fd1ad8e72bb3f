//! Writers for a finished run: lcov and Cobertura for other tools, JSON for scripts (and for
//! `coverlay merge`, which reads it back), a table for the terminal, HTML for a browser.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::run::RunReport;

pub mod cobertura;
pub mod html;
pub mod json;
pub mod lcov;
pub mod table;

/// What the reports tell besides the coverage: the workspace and how its test executables ran.
/// A run has it from cargo and the engine; a merge reads it from the shards' JSON reports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunInfo {
    pub root: PathBuf,
    pub packages: Vec<PackageDir>,
    pub executables: Vec<ExecutableInfo>,
}

/// A workspace package and the directory of its manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageDir {
    pub name: String,
    pub dir: PathBuf,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutableInfo {
    pub path: PathBuf,
    pub target: String,
    pub kind: String,
    /// How each process that ran its tests ended (`Code(0)`, `Signal(11)`, `TimedOut`).
    pub exits: Vec<String>,
    pub counting: Counting,
}

/// How an executable's addresses were counted, and what it cost.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counting {
    /// Addresses counted by a trampoline (their own, or a run shared with the one before).
    pub trampolines: usize,
    /// Addresses counted by int3 (test entries included).
    pub int3: usize,
    /// Traps taken over all its processes.
    pub traps: u64,
}

impl RunInfo {
    pub fn of(report: &RunReport) -> Self {
        Self {
            root: report.workspace.root.clone(),
            packages: report
                .workspace
                .packages
                .iter()
                .map(|p| PackageDir {
                    name: p.name.clone(),
                    dir: p.manifest_dir.clone(),
                })
                .collect(),
            executables: report
                .executables
                .iter()
                .map(|run| {
                    let sites = run.counting.sites;
                    ExecutableInfo {
                        path: run.executable.path.clone(),
                        target: run.executable.target.clone(),
                        kind: run.executable.kind.clone(),
                        exits: run.exits.iter().map(|e| format!("{e:?}")).collect(),
                        counting: Counting {
                            trampolines: sites.alone
                                + sites.runs
                                + sites.covered
                                + sites.called
                                + sites.edges,
                            int3: sites.traps,
                            traps: run.counting.traps,
                        },
                    }
                })
                .collect(),
        }
    }
}
