//! Talks to cargo: finds the workspace (`cargo metadata`) and builds its test executables with the
//! flags the engine needs (`cargo test --no-run --message-format=json`) in coverlay's own target dir.

use std::io::{BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cargo_metadata::{Message, MetadataCommand, TargetKind};
use serde::{Deserialize, Serialize};

/// Flags every coverlay build adds: full line tables, functions nobody calls kept in the binary
/// (so they show as uncovered rather than absent), the code of every macro expansion placed on the
/// line of the macro call (by default a crate's own `macro_rules!` expansions are placed on the
/// lines of the macro's body, where the rows of all its calls mix), and `cfg(coverlay)` so that
/// tests which cannot run under a tracer can skip themselves.
pub const COVERLAY_RUSTFLAGS: &[&str] = &[
    "-Cdebuginfo=2",
    "-Clink-dead-code",
    "-Ccollapse-macro-debuginfo=yes",
    "-Cstrip=none",
    "--cfg=coverlay",
    "--check-cfg=cfg(coverlay)",
];

/// How often a build checks whether it was cancelled.
const CANCEL_POLL: Duration = Duration::from_millis(20);

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workspace {
    pub root: PathBuf,
    /// The user's target directory; coverlay builds in `coverlay/` below it.
    pub target_dir: PathBuf,
    pub packages: Vec<Package>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Package {
    pub name: String,
    pub version: String,
    pub manifest_dir: PathBuf,
    /// Workspace packages this one depends on (normal, dev or build dependencies).
    pub dependencies: Vec<String>,
    /// Its library is a procedural macro: its code runs in the compiler, never in a test.
    pub proc_macro: bool,
    /// It has a library whose doctests `cargo test` runs.
    pub doctested: bool,
}

impl Workspace {
    pub fn coverlay_dir(&self) -> PathBuf {
        self.target_dir.join("coverlay")
    }

    /// Source files of the workspace's own crates: not the registry, not generated files in target.
    pub fn owns_source(&self, path: &Path) -> bool {
        path.starts_with(&self.root)
            && !path.starts_with(&self.target_dir)
            && path.extension().is_some_and(|e| e == "rs")
    }

    /// Integration tests, benches and examples: code that only exists to exercise the crate.
    pub fn is_test_file(&self, path: &Path) -> bool {
        self.packages.iter().any(|p| {
            ["tests", "benches"]
                .iter()
                .any(|dir| path.starts_with(p.manifest_dir.join(dir)))
        })
    }
}

/// A test executable that cargo built, with what is needed to run it as `cargo test` would.
#[derive(Clone, Debug)]
pub struct TestExecutable {
    pub path: PathBuf,
    /// Cargo target name (`ledger` for the lib, `script` for `tests/script.rs`); prefix of test ids.
    pub target: String,
    pub kind: String,
    pub package: Package,
}

impl TestExecutable {
    /// The crate name rustc used, which prefixes the executable's paths in its debug info.
    pub fn crate_name(&self) -> String {
        self.target.replace('-', "_")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CargoError {
    #[error("{} has no Cargo.toml (coverlay needs a cargo package or workspace): {message}", path.display())]
    NoManifest { path: PathBuf, message: String },
    #[error("cargo cannot read the workspace of {}: {message}", path.display())]
    Metadata { path: PathBuf, message: String },
    #[error("cannot run cargo: {0}. Is cargo on PATH?")]
    Spawn(std::io::Error),
    #[error("the tests do not compile:\n{rendered}")]
    BuildFailed { rendered: String },
    #[error("the build was cancelled")]
    Cancelled,
    #[error("cargo clean failed: {message}")]
    Clean { message: String },
}

/// Where the workspace read for `path` is remembered: coverlay's directory in the default target
/// directory of `path`, only used when that is where the workspace's own is.
fn remembered_at(path: &Path) -> Option<PathBuf> {
    Some(
        path.canonicalize()
            .ok()?
            .join("target")
            .join("coverlay")
            .join("workspace.json"),
    )
}

/// The workspace the last run read for `path` (see [`remember_workspace`]), if any, and if its
/// directories are `path`'s (a workspace copied with its target directory remembers where it was
/// read).
pub fn remembered_workspace(path: &Path) -> Option<Workspace> {
    let at = remembered_at(path)?;
    let text = std::fs::read_to_string(&at).ok()?;
    let workspace: Workspace = serde_json::from_str(&text).ok()?;
    // `at` is `<path>/target/coverlay/workspace.json`, `path` canonical.
    let here = at.parent() == Some(workspace.coverlay_dir().as_path())
        && at.ancestors().nth(3) == Some(workspace.root.as_path());
    here.then_some(workspace)
}

/// Keeps `workspace`, read for `path`, for the next run's [`remembered_workspace`], when coverlay's
/// directory of it is the one `path` implies (a workspace read from a member's directory or with
/// a target directory elsewhere is not kept: nothing would find it, and what an earlier run kept
/// there is removed, or every run would start with it).
pub fn remember_workspace(path: &Path, workspace: &Workspace) {
    let Some(at) = remembered_at(path) else {
        return;
    };
    if at.parent() != Some(workspace.coverlay_dir().as_path()) {
        let _ = std::fs::remove_file(at);
        return;
    }
    if let Ok(text) = serde_json::to_string(workspace) {
        let _ = std::fs::create_dir_all(workspace.coverlay_dir());
        let _ = std::fs::write(at, text);
    }
}

/// Reads the workspace that contains `path`.
pub fn load_workspace(path: &Path) -> Result<Workspace, CargoError> {
    // A manifest in `path` or above it that cargo cannot read is not a missing one.
    let metadata_error = |message: String| {
        let path = path.to_path_buf();
        let absolute = path.canonicalize().unwrap_or_else(|_| path.clone());
        match absolute
            .ancestors()
            .any(|dir| dir.join("Cargo.toml").is_file())
        {
            true => CargoError::Metadata { path, message },
            false => CargoError::NoManifest { path, message },
        }
    };
    let dir = path
        .canonicalize()
        .map_err(|e| metadata_error(e.to_string()))?;
    let metadata = MetadataCommand::new()
        .current_dir(&dir)
        .no_deps()
        .exec()
        .map_err(|e| metadata_error(e.to_string()))?;
    let members = metadata.workspace_packages();
    let names: Vec<String> = members.iter().map(|p| p.name.to_string()).collect();
    let packages = members
        .iter()
        .map(|p| Package {
            name: p.name.to_string(),
            version: p.version.to_string(),
            manifest_dir: p
                .manifest_path
                .parent()
                .map(|d| d.as_std_path().to_path_buf())
                .unwrap_or_default(),
            dependencies: p
                .dependencies
                .iter()
                .map(|d| d.name.clone())
                .filter(|d| names.contains(d))
                .collect(),
            proc_macro: p.targets.iter().any(|t| t.is_proc_macro()),
            doctested: p
                .targets
                .iter()
                .any(|t| t.doctest && (t.is_lib() || t.is_proc_macro())),
        })
        .collect();
    Ok(Workspace {
        root: metadata.workspace_root.into_std_path_buf(),
        target_dir: metadata.target_directory.into_std_path_buf(),
        packages,
    })
}

/// A cargo flag that chooses which targets `cargo test` builds and runs.
pub fn selects_targets(arg: &str) -> bool {
    let flag = arg.split('=').next().unwrap_or(arg);
    [
        "--lib",
        "--bin",
        "--bins",
        "--test",
        "--tests",
        "--example",
        "--examples",
        "--bench",
        "--benches",
        "--all-targets",
        "--doc",
    ]
    .contains(&flag)
}

/// `cargo test`'s arguments for the test executables: the user's (`cargo_args`, whatever follows
/// `--` kept last), with `--tests` when they choose no targets. Left alone, `cargo test` also
/// builds every example, only to see that it compiles: no test runs it, and as examples link the
/// library, each save would relink them all before its tests could start.
pub fn test_targets(cargo_args: &[String]) -> Vec<String> {
    let end = cargo_args
        .iter()
        .position(|a| a == "--")
        .unwrap_or(cargo_args.len());
    let mut args = cargo_args[..end].to_vec();
    if !args.iter().any(|a| selects_targets(a)) {
        args.push("--tests".to_owned());
    }
    args.extend_from_slice(&cargo_args[end..]);
    args
}

/// What the build reports while it runs.
pub enum BuildEvent<'a> {
    Compiled { crate_name: &'a str },
}

/// Builds every test executable of the workspace. `extra_args` go to `cargo test` as they are
/// (`--features x`, `-p crate`, `--release`).
/// Setting `cancel` stops the build at once: cargo runs in a process group of its own (with its
/// rustc and build-script processes), killed as a whole.
pub fn build_tests(
    workspace: &Workspace,
    extra_args: &[String],
    cancel: Option<&AtomicBool>,
    on_event: &mut dyn FnMut(BuildEvent),
) -> Result<Built, CargoError> {
    let mut command = command(workspace, &["test", "--no-run", "--message-format=json"]);
    command
        .args(test_targets(extra_args))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command.process_group(0);
    let mut child = command.spawn().map_err(CargoError::Spawn)?;
    let group = nix::unistd::Pid::from_raw(child.id() as i32);
    let done = AtomicBool::new(false);
    let killed = AtomicBool::new(false);

    // cargo's own errors (bad manifest, unknown flag) arrive on stderr, not as JSON messages.
    let mut stderr = child.stderr.take().expect("piped stderr");
    let stderr_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });

    let mut executables = Vec::new();
    let mut bins = Vec::new();
    let mut errors = Vec::new();
    let mut cfgs = BuildCfgs::new(&workspace.root);
    let mut script_cfgs: Vec<(cargo_metadata::PackageId, Vec<String>)> = Vec::new();
    let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
    std::thread::scope(|scope| -> Result<(), CargoError> {
        if let Some(cancel) = cancel {
            scope.spawn(|| {
                while !done.load(Ordering::Acquire) {
                    if cancel.load(Ordering::Acquire) {
                        killed.store(true, Ordering::Release);
                        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
                        return;
                    }
                    std::thread::sleep(CANCEL_POLL);
                }
            });
        }
        for message in Message::parse_stream(stdout).flatten() {
            match message {
                Message::CompilerArtifact(artifact) => {
                    on_event(BuildEvent::Compiled {
                        crate_name: &artifact.target.name,
                    });
                    let manifest_dir = artifact
                        .manifest_path
                        .parent()
                        .map(|d| d.as_std_path().to_path_buf())
                        .unwrap_or_default();
                    if workspace
                        .packages
                        .iter()
                        .any(|p| p.manifest_dir == manifest_dir)
                    {
                        cfgs.package(&artifact, manifest_dir.clone());
                    }
                    let Some(exe) = artifact.executable else {
                        continue;
                    };
                    // Binaries built for integration tests (`CARGO_BIN_EXE_<name>`) are
                    // measured when a test runs them.
                    let is_bin = artifact.target.kind.contains(&TargetKind::Bin);
                    if !artifact.profile.test && !is_bin {
                        continue;
                    }
                    let package = workspace
                        .packages
                        .iter()
                        .find(|p| p.manifest_dir == manifest_dir)
                        .cloned()
                        .unwrap_or_else(|| Package {
                            name: artifact.target.name.clone(),
                            version: String::new(),
                            manifest_dir,
                            dependencies: Vec::new(),
                            proc_macro: false,
                            doctested: false,
                        });
                    let executable = TestExecutable {
                        path: exe.into_std_path_buf(),
                        target: artifact.target.name.clone(),
                        kind: target_kind(&artifact.target.kind),
                        package,
                    };
                    if artifact.profile.test {
                        executables.push(executable);
                    } else {
                        bins.push(executable);
                    }
                }
                Message::BuildScriptExecuted(script) if !script.cfgs.is_empty() => {
                    script_cfgs.push((script.package_id, script.cfgs));
                }
                Message::CompilerMessage(msg)
                    if msg.message.level == cargo_metadata::diagnostic::DiagnosticLevel::Error =>
                {
                    errors.extend(msg.message.rendered);
                }
                _ => {}
            }
        }
        done.store(true, Ordering::Release);
        Ok(())
    })?;
    let status = child.wait().map_err(CargoError::Spawn)?;
    let stderr = stderr_reader.join().unwrap_or_default();
    if killed.load(Ordering::Acquire) {
        return Err(CargoError::Cancelled);
    }
    if !status.success() {
        let rendered = if errors.is_empty() {
            stderr.trim().to_string()
        } else {
            errors.concat().trim_end().to_string()
        };
        return Err(CargoError::BuildFailed { rendered });
    }
    let order = |a: &TestExecutable, b: &TestExecutable| {
        (&a.package.name, &a.target).cmp(&(&b.package.name, &b.target))
    };
    executables.sort_by(order);
    bins.sort_by(order);
    for (package, script) in script_cfgs {
        cfgs.build_script(&package, script);
    }
    Ok(Built {
        tests: executables,
        bins,
        cfgs,
    })
}

/// Runs a cargo `command` to its end and returns its output, unless `cancel` is set first: then
/// cargo, in a process group of its own, is killed with everything it started.
pub fn output_unless_cancelled(
    mut command: Command,
    cancel: Option<&AtomicBool>,
) -> std::io::Result<Option<std::process::Output>> {
    command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = command.spawn()?;
    let group = nix::unistd::Pid::from_raw(child.id() as i32);
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let out = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stdout.read_to_end(&mut bytes);
        bytes
    });
    let err = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stderr.read_to_end(&mut bytes);
        bytes
    });
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if cancel.is_some_and(|c| c.load(Ordering::Acquire)) {
            let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(CANCEL_POLL);
    };
    let (stdout, stderr) = (
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    );
    Ok(status.map(|status| std::process::Output {
        status,
        stdout,
        stderr,
    }))
}

/// What `cargo test --no-run` built.
#[derive(Debug)]
pub struct Built {
    pub tests: Vec<TestExecutable>,
    /// Binary targets built for the integration tests to run (`CARGO_BIN_EXE_<name>`).
    pub bins: Vec<TestExecutable>,
    pub cfgs: BuildCfgs,
}

/// What decides the `#[cfg(…)]` predicates of the workspace's code in this build: each package's
/// features and build-script cfgs, as cargo reported them, and the target's cfgs, which rustc
/// prints for the build's flags (asked while cargo builds, so that no one waits for it after).
#[derive(Debug)]
pub struct BuildCfgs {
    packages: Vec<PackageCfg>,
    target: std::sync::OnceLock<Option<Vec<String>>>,
    asked: std::sync::Mutex<Option<std::thread::JoinHandle<Option<Vec<String>>>>>,
}

#[derive(Debug)]
struct PackageCfg {
    manifest_dir: PathBuf,
    id: cargo_metadata::PackageId,
    features: Vec<String>,
    debug_assertions: bool,
    script: Vec<String>,
}

impl BuildCfgs {
    fn new(root: &Path) -> Self {
        let root = root.to_path_buf();
        BuildCfgs {
            packages: Vec::new(),
            target: std::sync::OnceLock::new(),
            asked: std::sync::Mutex::new(Some(std::thread::spawn(move || target_cfgs(&root)))),
        }
    }

    fn package(&mut self, artifact: &cargo_metadata::Artifact, manifest_dir: PathBuf) {
        if self.packages.iter().any(|p| p.manifest_dir == manifest_dir) {
            return;
        }
        self.packages.push(PackageCfg {
            manifest_dir,
            id: artifact.package_id.clone(),
            features: artifact.features.clone(),
            debug_assertions: artifact.profile.debug_assertions,
            script: Vec::new(),
        });
    }

    fn build_script(&mut self, package: &cargo_metadata::PackageId, cfgs: Vec<String>) {
        if let Some(package) = self.packages.iter_mut().find(|p| &p.id == package) {
            package.script = cfgs;
        }
    }

    /// The cfg set the package holding `path` is compiled with; `None` when the file is no
    /// package's that was built, or rustc cannot say what the target's cfgs are.
    pub fn for_file(&self, path: &Path) -> Option<crate::analysis::CfgSet> {
        self.for_package(self.package_of(path)?)
    }

    /// The built package holding `path`, for [`BuildCfgs::for_package`].
    pub fn package_of(&self, path: &Path) -> Option<usize> {
        self.packages
            .iter()
            .enumerate()
            .filter(|(_, p)| path.starts_with(&p.manifest_dir))
            .max_by_key(|(_, p)| p.manifest_dir.as_os_str().len())
            .map(|(i, _)| i)
    }

    /// The cfg set of a package of [`BuildCfgs::package_of`].
    pub fn for_package(&self, package: usize) -> Option<crate::analysis::CfgSet> {
        let package = &self.packages[package];
        let target = self
            .target
            .get_or_init(|| {
                let asked = self.asked.lock().unwrap_or_else(|e| e.into_inner()).take();
                asked.and_then(|answer| answer.join().ok()).flatten()
            })
            .as_ref()?;
        let mut set = crate::analysis::CfgSet::default();
        for line in target.iter().chain(&package.script) {
            set.add(line);
        }
        if !package.debug_assertions {
            set.remove_name("debug_assertions");
        }
        for feature in &package.features {
            set.add_feature(feature);
        }
        Some(set)
    }
}

/// `rustc --print cfg` with the flags coverlay builds with (the user's `--cfg`s included).
fn target_cfgs(root: &Path) -> Option<Vec<String>> {
    let (flags, _) = rustflags();
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let output = Command::new(rustc)
        .current_dir(root)
        .args(["--print", "cfg"])
        .args(&flags)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .output();
    match output {
        Ok(output) if output.status.success() => Some(
            String::from_utf8_lossy(&output.stdout)
                .lines()
                .map(str::to_owned)
                .collect(),
        ),
        Ok(output) => {
            tracing::warn!(
                "rustc --print cfg failed ({}); cfg-gated code without machine code is left out",
                String::from_utf8_lossy(&output.stderr).trim()
            );
            None
        }
        Err(error) => {
            tracing::warn!(
                "cannot run rustc --print cfg ({error}); cfg-gated code without machine code is left out"
            );
            None
        }
    }
}

/// Removes what coverlay's builds made of the workspace's own crates (not of their registry
/// dependencies), so that the next build compiles them again.
pub fn clean_workspace(workspace: &Workspace) -> Result<(), CargoError> {
    let mut args = vec!["clean"];
    for package in &workspace.packages {
        args.extend(["-p", package.name.as_str()]);
    }
    let output = command(workspace, &args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(CargoError::Spawn)?;
    if output.status.success() {
        Ok(())
    } else {
        Err(CargoError::Clean {
            message: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}

/// `cargo SUBCOMMAND…` as coverlay runs it: in the workspace, with coverlay's target directory
/// and compiler flags (the same in every invocation, or cargo would rebuild).
pub fn command(workspace: &Workspace, subcommand: &[&str]) -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(&workspace.root)
        .args(subcommand)
        .arg("--target-dir")
        .arg(workspace.coverlay_dir());
    set_rustflags(&mut command);
    command
}

/// Adds coverlay's flags to the user's own (see `rustflags`).
fn set_rustflags(command: &mut Command) {
    match flags_for("RUSTFLAGS") {
        (flags, true) => command.env("CARGO_ENCODED_RUSTFLAGS", flags.join("\x1f")),
        (flags, false) => command.env("RUSTFLAGS", flags.join(" ")),
    };
}

/// The same flags for rustdoc, which compiles the doctests (`RUSTDOCFLAGS`).
pub fn set_rustdocflags(command: &mut Command) {
    match flags_for("RUSTDOCFLAGS") {
        (flags, true) => command.env("CARGO_ENCODED_RUSTDOCFLAGS", flags.join("\x1f")),
        (flags, false) => command.env("RUSTDOCFLAGS", flags.join(" ")),
    };
}

/// The user's flags with coverlay's added, and whether the user's came encoded:
/// `CARGO_ENCODED_RUSTFLAGS` wins over `RUSTFLAGS` in cargo, so extend whichever the user set.
/// Flags from `.cargo/config` `build.rustflags` are replaced, as with any `RUSTFLAGS`.
fn rustflags() -> (Vec<String>, bool) {
    flags_for("RUSTFLAGS")
}

/// [`rustflags`] for `RUSTFLAGS` or `RUSTDOCFLAGS` (and their `CARGO_ENCODED_` forms).
fn flags_for(variable: &str) -> (Vec<String>, bool) {
    let (user, encoded): (Vec<String>, bool) =
        match std::env::var(format!("CARGO_ENCODED_{variable}")) {
            Ok(encoded) => (encoded.split('\x1f').map(str::to_owned).collect(), true),
            Err(_) => (
                std::env::var(variable)
                    .unwrap_or_default()
                    .split_whitespace()
                    .map(str::to_owned)
                    .collect(),
                false,
            ),
        };
    let flags = user
        .into_iter()
        .filter(|f| !f.is_empty())
        .chain(COVERLAY_RUSTFLAGS.iter().map(|f| (*f).to_owned()))
        .collect();
    (flags, encoded)
}

fn target_kind(kinds: &[TargetKind]) -> String {
    kinds
        .first()
        .map(|k| k.to_string())
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_flags_are_recognised_with_or_without_a_value() {
        assert!(selects_targets("--test"));
        assert!(selects_targets("--test=api"));
        assert!(selects_targets("--lib"));
        assert!(!selects_targets("--features"));
        assert!(!selects_targets("-p"));
        assert!(!selects_targets("--testing"));
    }

    #[test]
    fn only_test_executables_are_built_unless_the_user_chooses_targets() {
        let args = |list: &[&str]| list.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>();
        assert_eq!(test_targets(&[]), ["--tests"]);
        assert_eq!(
            test_targets(&args(&["--features", "x", "--", "--test-threads=1"])),
            ["--features", "x", "--tests", "--", "--test-threads=1"]
        );
        assert_eq!(
            test_targets(&args(&["-p", "a", "--examples"])),
            ["-p", "a", "--examples"]
        );
        assert_eq!(
            test_targets(&args(&["--", "--lib"])),
            ["--tests", "--", "--lib"],
            "after `--`, the executables' own arguments"
        );
    }
}
