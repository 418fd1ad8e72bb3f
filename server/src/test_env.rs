//! The environment and working directory `cargo test` gives each test executable, learnt from
//! cargo itself: cargo runs the executables through `coverlay record-env` as their runner.
//!
//! What cargo sets (`CARGO_BIN_EXE_*`, `CARGO_MANIFEST_DIR`, `CARGO_PKG_*`, `OUT_DIR`, the library
//! path for native dependencies) depends on the manifests and build scripts, not on the sources,
//! so a record is kept per executable path until a manifest, the lock file or a build script
//! changes: a save in the editor does not pay for another cargo invocation.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde::{Deserialize, Serialize};

use crate::cargo::{self, TestExecutable, Workspace};

/// What cargo ran one test executable with, beyond coverlay's own environment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestEnv {
    pub cwd: PathBuf,
    /// Variables cargo set or changed (bytes: values need not be UTF-8).
    pub vars: Vec<(Vec<u8>, Vec<u8>)>,
}

impl TestEnv {
    pub fn vars(&self) -> impl Iterator<Item = (OsString, OsString)> + '_ {
        self.vars
            .iter()
            .map(|(k, v)| (OsString::from_vec(k.clone()), OsString::from_vec(v.clone())))
    }
}

/// What a runner that cargo (or rustdoc) started was given, as it writes it down: the executable,
/// the working directory and the whole environment.
#[derive(Serialize, Deserialize)]
pub(crate) struct Record {
    pub(crate) exe: PathBuf,
    pub(crate) cwd: PathBuf,
    pub(crate) vars: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Record {
    /// This process's directory and environment, for `exe`.
    pub(crate) fn of_this_process(exe: PathBuf) -> std::io::Result<Record> {
        Ok(Record {
            exe,
            cwd: std::env::current_dir()?,
            vars: std::env::vars_os()
                .map(|(k, v)| (k.into_vec(), v.into_vec()))
                .collect(),
        })
    }

    pub(crate) fn write(&self, file: &Path) -> std::io::Result<()> {
        let json = serde_json::to_vec(self).map_err(std::io::Error::other)?;
        std::fs::write(file, json)
    }

    /// The records written into `dir` (anything else there is skipped).
    pub(crate) fn read_all(dir: &Path) -> std::io::Result<Vec<Record>> {
        Ok(std::fs::read_dir(dir)?
            .flatten()
            .filter_map(|entry| std::fs::read(entry.path()).ok())
            .filter_map(|bytes| serde_json::from_slice(&bytes).ok())
            .collect())
    }

    /// The value of one of its variables.
    pub(crate) fn var(&self, name: &str) -> Option<OsString> {
        self.vars
            .iter()
            .find(|(k, _)| k == name.as_bytes())
            .map(|(_, v)| OsString::from_vec(v.clone()))
    }
}

/// cargo's `--config` that makes `coverlay <subcommand> <dir>` the runner of every target (cargo
/// passes it on to rustdoc for the doctests).
pub(crate) fn runner_config(subcommand: &str, dir: &Path) -> std::io::Result<String> {
    let runner = std::env::current_exe()?;
    Ok(format!(
        "target.'cfg(all())'.runner = [{}, {}, {}]",
        toml_string(&runner),
        toml_string(Path::new(subcommand)),
        toml_string(dir)
    ))
}

/// `coverlay record-env DIR EXE [ARGS…]`, as cargo runs it: writes what it was given into DIR and
/// runs nothing.
pub fn record_runner(dir: &Path, exe: &Path) -> std::io::Result<()> {
    let name = format!(
        "{:016x}.json",
        crate::selection::content_hash(exe.as_os_str().as_bytes())
    );
    Record::of_this_process(exe.to_path_buf())?.write(&dir.join(name))
}

#[derive(Default, Serialize, Deserialize)]
struct Saved {
    /// Per executable path: the inputs' hash it was recorded under, and the record.
    envs: BTreeMap<PathBuf, (u64, TestEnv)>,
}

/// Each executable's environment as cargo gives it; executables cargo could not be asked about
/// are missing (the caller falls back to the variables it knows).
pub fn learn(
    workspace: &Workspace,
    cargo_args: &[String],
    executables: &[TestExecutable],
) -> HashMap<PathBuf, TestEnv> {
    let file = workspace.coverlay_dir().join("test-env.json");
    let mut saved: Saved = std::fs::read(&file)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default();
    let inputs = inputs_hash(workspace);
    let known = |saved: &Saved, exe: &Path| saved.envs.get(exe).is_some_and(|(h, _)| *h == inputs);
    if !executables.iter().all(|e| known(&saved, &e.path)) {
        match ask_cargo(workspace, cargo_args) {
            Ok(records) => {
                let own: HashMap<OsString, OsString> = std::env::vars_os().collect();
                for record in records {
                    let env = TestEnv {
                        cwd: record.cwd,
                        vars: changed(record.vars, &own),
                    };
                    saved.envs.insert(record.exe, (inputs, env));
                }
                let written = serde_json::to_vec(&saved)
                    .map_err(std::io::Error::other)
                    .and_then(|json| std::fs::write(&file, json));
                if let Err(error) = written {
                    tracing::debug!("cannot save {}: {error}", file.display());
                }
            }
            Err(error) => tracing::warn!(
                "cannot learn the tests' environment from cargo ({error}); tests run with \
                 CARGO_MANIFEST_DIR and CARGO_PKG_* only"
            ),
        }
    }
    executables
        .iter()
        .filter(|e| known(&saved, &e.path))
        .map(|e| (e.path.clone(), saved.envs[&e.path].1.clone()))
        .collect()
}

/// The variables of a record that coverlay's own environment lacks or holds differently, less
/// the compiler flags coverlay added for its build (the tests see the user's, as under cargo).
pub(crate) fn changed(
    vars: Vec<(Vec<u8>, Vec<u8>)>,
    own: &HashMap<OsString, OsString>,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut vars: Vec<(Vec<u8>, Vec<u8>)> = vars
        .into_iter()
        .filter(|(k, v)| {
            let key = OsString::from_vec(k.clone());
            let set_for_the_build = [
                "RUSTFLAGS",
                "CARGO_ENCODED_RUSTFLAGS",
                "RUSTDOCFLAGS",
                "CARGO_ENCODED_RUSTDOCFLAGS",
            ]
            .iter()
            .any(|flags| key == *flags);
            !set_for_the_build && own.get(&key).map(|o| o.as_bytes()) != Some(v.as_slice())
        })
        .collect();
    vars.sort();
    vars
}

/// What cargo's variables for a test executable depend on: manifests, the lock file, cargo's
/// configuration and build scripts, and the library path cargo extends (coverlay's own).
fn inputs_hash(workspace: &Workspace) -> u64 {
    let mut files: Vec<PathBuf> = vec![
        workspace.root.join("Cargo.toml"),
        workspace.root.join("Cargo.lock"),
        workspace.root.join(".cargo/config.toml"),
        workspace.root.join(".cargo/config"),
    ];
    for package in &workspace.packages {
        files.push(package.manifest_dir.join("Cargo.toml"));
        files.push(package.manifest_dir.join("build.rs"));
    }
    files.sort();
    files.dedup();
    let mut all = std::env::var_os("LD_LIBRARY_PATH")
        .unwrap_or_default()
        .into_vec();
    all.push(0);
    for file in files {
        all.extend_from_slice(file.as_os_str().as_bytes());
        all.push(0);
        all.extend(std::fs::read(&file).unwrap_or_default());
        all.push(0);
    }
    crate::selection::content_hash(&all)
}

#[derive(Debug, thiserror::Error)]
enum AskError {
    #[error("cannot run cargo: {0}")]
    Spawn(#[from] std::io::Error),
    #[error("`cargo test` with coverlay as its runner failed: {0}")]
    Failed(String),
}

/// Runs `cargo test` (already built: nothing compiles) with `coverlay record-env` as the runner.
fn ask_cargo(workspace: &Workspace, cargo_args: &[String]) -> Result<Vec<Record>, AskError> {
    let dir = tempfile_dir(workspace)?;
    let config = runner_config("record-env", &dir)?;
    let mut command = cargo::command(workspace, &["test", "--no-fail-fast", "--config", &config]);
    // The executables the build made; doctests are compiled by rustdoc when they run.
    command.args(cargo::test_targets(cargo_args));
    let output = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output();
    let records = Record::read_all(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    let output = output?;
    if !output.status.success() {
        return Err(AskError::Failed(
            String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        ));
    }
    Ok(records?)
}

fn tempfile_dir(workspace: &Workspace) -> std::io::Result<PathBuf> {
    let dir = workspace
        .coverlay_dir()
        .join(format!("env-records-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// A TOML basic string (paths may hold quotes or backslashes).
fn toml_string(path: &Path) -> String {
    serde_json::to_string(&path.to_string_lossy()).expect("a string serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_cargo_set_or_changed_is_kept_and_never_the_build_flags() {
        let own: HashMap<OsString, OsString> = [
            ("PATH", "/usr/bin"),
            ("HOME", "/root"),
            ("RUSTFLAGS", "-C debuginfo=2"),
        ]
        .into_iter()
        .map(|(k, v)| (k.into(), v.into()))
        .collect();
        let recorded = [
            ("PATH", "/usr/bin"),
            ("HOME", "/root"),
            ("RUSTFLAGS", "-C debuginfo=2 --cfg coverlay"),
            ("CARGO_BIN_EXE_tool", "/w/target/debug/tool"),
            ("LD_LIBRARY_PATH", "/w/target/debug/deps"),
            ("CARGO_MANIFEST_DIR", "/w"),
        ]
        .into_iter()
        .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect();
        let kept: Vec<(String, String)> = changed(recorded, &own)
            .into_iter()
            .map(|(k, v)| (String::from_utf8(k).unwrap(), String::from_utf8(v).unwrap()))
            .collect();
        assert_eq!(
            kept,
            [
                ("CARGO_BIN_EXE_tool".into(), "/w/target/debug/tool".into()),
                ("CARGO_MANIFEST_DIR".into(), "/w".into()),
                ("LD_LIBRARY_PATH".into(), "/w/target/debug/deps".into()),
            ]
        );
    }

    #[test]
    fn runner_paths_become_toml_strings() {
        assert_eq!(
            toml_string(Path::new("/a \"b\"/c\\d")),
            r#""/a \"b\"/c\\d""#
        );
    }
}
