//! Doctests as test executables: `cargo test --doc` compiles them with `coverlay record-doctest` as
//! rustdoc's runner, which keeps each binary and what it was given instead of running it.
//!
//! rustdoc builds one executable per doctest before edition 2024 (its `main` is the function
//! `_doctest_main_<file>_<line>_<n>`), and from 2024 on one merged executable per crate that runs
//! its `N`th doctest, in order of name, when `RUSTDOC_DOCTEST_RUN_NB_TEST=N` is set. Either way,
//! each doctest runs in a process of its own, so everything that process executes is that test's.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::cargo::{self, Package, TestExecutable, Workspace};
use crate::libtest::Outcome;
use crate::test_env::{Record, TestEnv};

/// The variable with which a merged (edition 2024) doctest executable runs one of its doctests.
pub const RUN_ONE: &str = "RUSTDOC_DOCTEST_RUN_NB_TEST";

/// `coverlay record-doctest DIR EXE [ARGS…]`, as rustdoc runs it: keeps EXE (rustdoc deletes it
/// when the run ends) and writes what it was given into DIR, and runs nothing.
///
/// rustdoc builds the same doctest into the same bytes every time, so EXE is kept by its content
/// (in `bin/` beside DIR): an unchanged doctest is the same file as in the run before, and the
/// caches keyed by a file's identity (line tables, counting sites, branches) hold for it.
pub fn record_runner(dir: &Path, exe: &Path) -> std::io::Result<()> {
    let name = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    );
    let bin = dir.parent().unwrap_or(dir).join("bin");
    std::fs::create_dir_all(&bin)?;
    let hash = xxhash_rust::xxh64::xxh64(&std::fs::read(exe)?, 0);
    let kept = bin.join(format!("{hash:016x}"));
    if !kept.exists() {
        // rustdoc's temporary directory is on the same file system (see `build`). A link that
        // fails because another runner kept the same bytes first is as good.
        let staged = bin.join(format!("{name}.tmp"));
        if std::fs::hard_link(exe, &staged).is_err() {
            std::fs::copy(exe, &staged)?;
        }
        let _ = std::fs::hard_link(&staged, &kept);
        std::fs::remove_file(&staged)?;
    }
    Record::of_this_process(kept)?.write(&dir.join(format!("{name}.json")))
}

/// One doctest as rustdoc names it (`src/lib.rs - Version::parse (line 12)`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Doctest {
    /// The name in the run's test list: `doc::<item> (doctest)`, or `doc::<file> (doctest)` for a
    /// module's own documentation, numbered when an item has several (see `number_alike`); the
    /// test id is `<lib target>::<name>`.
    pub name: String,
    /// rustdoc's own name for it.
    pub rustdoc_name: String,
    /// The source file and the line of the code block's opening fence.
    pub location: Option<(PathBuf, u32)>,
    pub should_panic: bool,
}

/// A doctest executable and the doctests it runs.
#[derive(Debug)]
pub struct DoctestExecutable {
    pub executable: TestExecutable,
    pub env: TestEnv,
    /// In the order of their numbers; `merged`: run the `i`th with [`RUN_ONE`]`=i`.
    pub tests: Vec<Doctest>,
    pub merged: bool,
}

/// A doctest that did not run: only compiled (`no_run`, `compile_fail`), ignored, or failed to
/// compile — rustdoc's verdict is its outcome.
#[derive(Debug)]
pub struct DoctestVerdict {
    pub package: Package,
    pub target: String,
    pub test: Doctest,
    pub outcome: Outcome,
    pub message: Option<String>,
}

#[derive(Debug, Default)]
pub struct Doctests {
    pub executables: Vec<DoctestExecutable>,
    pub verdicts: Vec<DoctestVerdict>,
    /// Doctests a filtered build left out (see [`build`]'s `only`).
    pub unrun: Vec<DoctestVerdict>,
}

#[derive(Debug, thiserror::Error)]
pub enum DoctestError {
    #[error("cannot run cargo for the doctests: {0}")]
    Io(#[from] std::io::Error),
    #[error("`cargo test --doc` failed:\n{0}")]
    Failed(String),
    #[error("the doctests' build was cancelled")]
    Cancelled,
}

/// Compiles the doctests of the workspace's libraries (`cargo_args` as for `cargo test`) and
/// returns their executables, ready to run under the engine, and the doctests that do not run.
/// With `only` (test ids), rustdoc compiles just those (by libtest's name filter); the others are
/// listed as not run, so that their earlier results stay.
pub fn build(
    workspace: &Workspace,
    cargo_args: &[String],
    own_env: &HashMap<OsString, OsString>,
    only: Option<&[String]>,
    cancel: Option<&std::sync::atomic::AtomicBool>,
) -> Result<Doctests, DoctestError> {
    let dir = workspace.coverlay_dir().join("doctests");
    let records = dir.join("kept");
    let tmp = dir.join("tmp");
    let _ = std::fs::remove_dir_all(&records);
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&records)?;
    std::fs::create_dir_all(&tmp)?;
    let config = crate::test_env::runner_config("record-doctest", &records)?;
    let (before, after) = split_test_args(cargo_args);
    let mut command = cargo::command(workspace, &["test", "--doc", "--no-fail-fast"]);
    command
        .args(["--config", &config])
        .args(before)
        .arg("--")
        .args(after)
        .args(only.unwrap_or_default().iter().map(|id| name_filter(id)))
        // Hard links from rustdoc's temporary directory into `records` need one file system.
        .env("TMPDIR", &tmp)
        .stdin(Stdio::null());
    cargo::set_rustdocflags(&mut command);
    let output = cargo::output_unless_cancelled(command, cancel)?.ok_or(DoctestError::Cancelled)?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let verdicts = parse_verdicts(&stdout);
    let mut kept = Record::read_all(&records)?;
    kept.sort_by(|a, b| a.exe.cmp(&b.exe));
    // Executables of doctests that no longer exist (or changed) go.
    let used: std::collections::HashSet<&Path> = kept.iter().map(|r| r.exe.as_path()).collect();
    for entry in std::fs::read_dir(dir.join("bin"))
        .into_iter()
        .flatten()
        .flatten()
    {
        if !used.contains(entry.path().as_path()) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    if verdicts.is_empty() && kept.is_empty() && !output.status.success() {
        return Err(DoctestError::Failed(
            String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        ));
    }
    // The library's crate name, as cargo gave it to rustdoc: test ids start with it.
    let crate_names: HashMap<PathBuf, String> = kept
        .iter()
        .filter_map(|r| {
            Some((
                PathBuf::from(r.var("CARGO_MANIFEST_DIR")?),
                r.var("CARGO_CRATE_NAME")?.into_string().ok()?,
            ))
        })
        .collect();
    let lib_target = |package: &Package| {
        crate_names
            .get(&package.manifest_dir)
            .cloned()
            .unwrap_or_else(|| package.name.replace('-', "_"))
    };
    let mut listed: Option<Vec<String>> = None;
    let mut doctests = Doctests::default();
    let mut standalone_names = std::collections::HashSet::new();
    let mut merged = Vec::new();
    let mut own_main = Vec::new();
    for record in kept {
        let Some(package) = package_of(workspace, &record) else {
            continue;
        };
        let (symbols, bytes) = match std::fs::read(&record.exe)
            .map_err(SymbolError::from)
            .and_then(|bytes| Ok((DoctestSymbols::parse(&bytes)?, bytes)))
        {
            Ok(read) => read,
            Err(error) => {
                tracing::warn!("cannot read doctest {}: {error}", record.exe.display());
                continue;
            }
        };
        let env = TestEnv {
            cwd: record.cwd.clone(),
            vars: crate::test_env::changed(record.vars, own_env)
                .into_iter()
                .filter(|(k, _)| k != b"TMPDIR")
                .collect(),
        };
        let executable = TestExecutable {
            path: record.exe,
            target: lib_target(package),
            kind: "doctest".into(),
            package: package.clone(),
        };
        let name = match symbols {
            DoctestSymbols::Merged { count } => {
                merged.push((executable, env, count, bytes));
                continue;
            }
            DoctestSymbols::Standalone { file, line } => verdicts.keys().find(|name| {
                split_name(name).is_some_and(|(path, _, l)| l == line && mangle(path) == file)
            }),
            DoctestSymbols::OwnMain => {
                own_main.push((executable, env, package, bytes));
                continue;
            }
        };
        let Some(name) = name else {
            tracing::warn!(
                "doctest {} matches no test rustdoc reported",
                executable.path.display()
            );
            continue;
        };
        standalone_names.insert(name.clone());
        doctests
            .executables
            .push(standalone(workspace, package, name, executable, env));
    }
    // A doctest with its own `fn main` keeps rustdoc's name out of its symbols (and its debug
    // info numbers the lines of the code block alone): the string literals of the code blocks
    // tell which is which, one match at a time, each leaving fewer candidates to the others.
    let mut candidates: Vec<(&String, String)> = verdicts
        .iter()
        .filter(|(name, v)| matches!(v, Verdict::Ran { .. }) && !standalone_names.contains(*name))
        .filter_map(|(name, _)| {
            let (path, _, fence) = split_name(name)?;
            let code = code_block(&resolve(workspace, path)?, fence)?;
            code.contains("fn main").then_some((name, code))
        })
        .collect();
    while let Some((i, name)) = own_main
        .iter()
        .enumerate()
        .find_map(|(i, e)| Some((i, own_main_doctest(&candidates, &e.3)?)))
    {
        let (executable, env, package, _) = own_main.swap_remove(i);
        candidates.retain(|(candidate, _)| *candidate != name);
        standalone_names.insert(name.clone());
        doctests
            .executables
            .push(standalone(workspace, package, name, executable, env));
    }
    for (executable, ..) in own_main {
        tracing::warn!(
            "doctest {} (with its own `fn main`) matches no test rustdoc reported",
            executable.path.display()
        );
    }
    for (executable, env, count, bytes) in merged {
        // A merged executable runs its doctests by their number in name order; which doctests
        // it holds is what its data names (rustdoc leaves the others standalone or unrun).
        let names = match &listed {
            Some(names) => names,
            None => listed.insert(list(workspace, before)?),
        };
        let mut held: Vec<&String> = names
            .iter()
            .filter(|n| !standalone_names.contains(*n))
            .filter(|n| contains(&bytes, n.as_bytes()))
            .collect();
        held.sort();
        if held.len() != count {
            tracing::warn!(
                "the merged doctests of {} name {} tests for {count} doctests; not measured",
                executable.package.name,
                held.len()
            );
            continue;
        }
        let tests = held
            .iter()
            .map(|name| doctest(workspace, &executable.package, name))
            .collect();
        standalone_names.extend(held.into_iter().cloned());
        doctests.executables.push(DoctestExecutable {
            executable,
            env,
            tests,
            merged: true,
        });
    }
    for (name, verdict) in verdicts {
        if standalone_names.contains(&name) {
            continue;
        }
        let Some(package) = package_named(workspace, &name).cloned() else {
            continue;
        };
        let (outcome, message) = match verdict {
            // Compiled and handed to the runner, but its executable was not recognised (warned
            // above): it is left out rather than reported as run.
            Verdict::Ran { failed: None } => continue,
            // No executable: it did not compile.
            Verdict::Ran {
                failed: Some(message),
            } => (Outcome::Failed, Some(message)),
            Verdict::CompileOnly { failed } => match failed {
                None => (Outcome::Passed, None),
                Some(message) => (Outcome::Failed, Some(message)),
            },
            Verdict::Ignored => (Outcome::Ignored, None),
        };
        doctests.verdicts.push(DoctestVerdict {
            target: lib_target(&package),
            test: doctest(workspace, &package, &name),
            package,
            outcome,
            message,
        });
    }
    if only.is_some() {
        let names = match listed {
            Some(names) => names,
            None => list(workspace, before)?,
        };
        let known: std::collections::HashSet<&str> = doctests
            .verdicts
            .iter()
            .map(|v| v.test.rustdoc_name.as_str())
            .chain(standalone_names.iter().map(String::as_str))
            .collect();
        for name in names.iter().filter(|n| !known.contains(n.as_str())) {
            let Some(package) = package_named(workspace, name).cloned() else {
                continue;
            };
            doctests.unrun.push(DoctestVerdict {
                target: lib_target(&package),
                test: doctest(workspace, &package, name),
                package,
                outcome: Outcome::Ignored,
                message: None,
            });
        }
    }
    doctests
        .verdicts
        .sort_by(|a, b| a.test.rustdoc_name.cmp(&b.test.rustdoc_name));
    number_alike(&mut doctests);
    Ok(doctests)
}

/// Several doctests of one item (or module) share its name: the second in the file is
/// `(doctest 2)`, and so on. A filtered build lists every doctest too, so the numbers are those
/// of a full build.
fn number_alike(doctests: &mut Doctests) {
    let mut all: Vec<(&str, &mut Doctest)> = doctests
        .executables
        .iter_mut()
        .flat_map(|e| {
            let package = e.executable.package.name.as_str();
            e.tests.iter_mut().map(move |t| (package, t))
        })
        .chain(
            doctests
                .verdicts
                .iter_mut()
                .chain(&mut doctests.unrun)
                .map(|v| (v.package.name.as_str(), &mut v.test)),
        )
        .collect();
    all.sort_by(|a, b| (a.0, &a.1.name, &a.1.location).cmp(&(b.0, &b.1.name, &b.1.location)));
    let mut previous: Option<(String, String)> = None;
    let mut n = 1;
    for (package, test) in all {
        let key = (package.to_owned(), test.name.clone());
        n = if previous.as_ref() == Some(&key) {
            n + 1
        } else {
            1
        };
        if n > 1 {
            let base = test.name.strip_suffix(" (doctest)").unwrap_or(&test.name);
            test.name = format!("{base} (doctest {n})");
        }
        previous = Some(key);
    }
}

/// libtest's name filter for the doctest of a test id (`k::doc::Version::parse (doctest)`): a
/// part of rustdoc's name (`src/lib.rs - Version::parse (line 12)`) that every doctest of the
/// item shares.
fn name_filter(id: &str) -> String {
    let rest = id.split_once("::doc::").map_or(id, |(_, rest)| rest);
    let item = rest.rsplit_once(" (doctest").map_or(rest, |(item, _)| item);
    if item.ends_with(".rs") {
        // A module's own documentation: rustdoc's name has no item.
        " - (line ".to_owned()
    } else {
        format!(" - {item} (line ")
    }
}

/// The doctests' names, as `cargo test --doc -- --list` gives them (nothing compiles).
fn list(workspace: &Workspace, cargo_args: &[String]) -> Result<Vec<String>, DoctestError> {
    let mut command = cargo::command(workspace, &["test", "--doc"]);
    command
        .args(cargo_args)
        .args(["--", "--list"])
        .stdin(Stdio::null());
    cargo::set_rustdocflags(&mut command);
    let output = command.output()?;
    if !output.status.success() {
        return Err(DoctestError::Failed(
            String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| l.strip_suffix(": test"))
        .map(str::to_owned)
        .collect())
}

/// The cargo arguments before `--` and the test arguments after it.
fn split_test_args(args: &[String]) -> (&[String], &[String]) {
    match args.iter().position(|a| a == "--") {
        Some(end) => (&args[..end], &args[end + 1..]),
        None => (args, &[]),
    }
}

/// What rustdoc reported of one doctest.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// Compiled and handed to the runner, or failed before (then with rustdoc's message).
    Ran {
        failed: Option<String>,
    },
    /// `no_run` or `compile_fail`: compiled only.
    CompileOnly {
        failed: Option<String>,
    },
    Ignored,
}

/// Every `test <name> ... <verdict>` line of rustdoc's output, with the captured output of
/// each failed test (`---- <name> stdout ----` up to the next section).
fn parse_verdicts(stdout: &str) -> BTreeMap<String, Verdict> {
    let mut messages: HashMap<&str, String> = HashMap::new();
    let mut current: Option<(&str, String)> = None;
    for line in stdout.lines() {
        if let Some(name) = line
            .strip_prefix("---- ")
            .and_then(|l| l.strip_suffix(" stdout ----"))
        {
            if let Some((name, text)) = current.take() {
                messages.insert(name, text);
            }
            current = Some((name, String::new()));
            continue;
        }
        if line == "failures:" {
            if let Some((name, text)) = current.take() {
                messages.insert(name, text);
            }
            continue;
        }
        if let Some((_, text)) = &mut current {
            text.push_str(line);
            text.push('\n');
        }
    }
    if let Some((name, text)) = current.take() {
        messages.insert(name, text);
    }
    let mut verdicts = BTreeMap::new();
    for line in stdout.lines() {
        let Some((name, verdict)) = line
            .strip_prefix("test ")
            .and_then(|rest| rest.rsplit_once(" ... "))
        else {
            continue;
        };
        let (name, compile_only) = match name
            .strip_suffix(" - compile fail")
            .or_else(|| name.strip_suffix(" - compile"))
        {
            Some(name) => (name, true),
            None => (name, false),
        };
        let failed = (verdict == "FAILED").then(|| {
            messages
                .get(name)
                .map_or_else(String::new, |m| m.trim_end().to_owned())
        });
        let verdict = match verdict {
            "ignored" => Verdict::Ignored,
            _ if compile_only => Verdict::CompileOnly { failed },
            _ => Verdict::Ran { failed },
        };
        verdicts.insert(name.to_owned(), verdict);
    }
    verdicts
}

/// Whether a test id names a doctest (`<crate>::doc::<item> (doctest)`, `… (doctest 2)`): no
/// libtest name holds a space.
pub fn is_doctest(id: &str) -> bool {
    id.split_once("::").is_some_and(|(_, rest)| {
        rest.starts_with("doc::") && (rest.ends_with(" (doctest)") || rest.contains(" (doctest "))
    })
}

/// rustdoc's name `<path> - <item> (line N)` as (path, item, N); the item is empty for a
/// module's own documentation (`src/lib.rs - (line 1)`).
fn split_name(name: &str) -> Option<(&str, &str, u32)> {
    let (path, rest) = name.split_once(" - ")?;
    let (item, line) = rest.rsplit_once("(line ")?;
    let line = line.strip_suffix(')')?.parse().ok()?;
    Some((path, item.trim_end(), line))
}

/// A doctest's path as rustdoc writes it into the name of its `main`.
fn mangle(path: &str) -> String {
    path.chars()
        .map(|c| if c.is_alphanumeric() { c } else { '_' })
        .collect()
}

/// The executable of one doctest (rustdoc builds one per doctest before edition 2024).
fn standalone(
    workspace: &Workspace,
    package: &Package,
    rustdoc_name: &str,
    executable: TestExecutable,
    env: TestEnv,
) -> DoctestExecutable {
    DoctestExecutable {
        tests: vec![doctest(workspace, package, rustdoc_name)],
        executable,
        env,
        merged: false,
    }
}

fn doctest(workspace: &Workspace, package: &Package, rustdoc_name: &str) -> Doctest {
    let parts = split_name(rustdoc_name);
    let location = parts.and_then(|(path, _, line)| Some((resolve(workspace, path)?, line)));
    // Without rustdoc's line, which every edit above it would change; see `number_alike`.
    let name = match parts {
        Some((_, item, _)) if !item.is_empty() => format!("doc::{item} (doctest)"),
        Some((path, _, _)) => {
            let relative = location
                .as_ref()
                .and_then(|(file, _)| file.strip_prefix(&package.manifest_dir).ok())
                .map_or_else(|| path.to_owned(), |p| p.display().to_string());
            format!("doc::{relative} (doctest)")
        }
        None => format!("doc::{rustdoc_name} (doctest)"),
    };
    let should_panic = location
        .as_ref()
        .is_some_and(|(file, line)| fence_says_should_panic(file, *line));
    Doctest {
        name,
        rustdoc_name: rustdoc_name.to_owned(),
        location,
        should_panic,
    }
}

/// Whether the code block whose fence is on `line` of `file` is marked `should_panic`.
fn fence_says_should_panic(file: &Path, line: u32) -> bool {
    let Ok(text) = std::fs::read_to_string(file) else {
        return false;
    };
    let fence = text.lines().nth((line as usize).saturating_sub(1));
    fence.is_some_and(|fence| fence_attributes(fence).any(|a| a == "should_panic"))
}

/// The words after a doc comment's code fence: "/// ```rust,should_panic" → rust, should_panic.
fn fence_attributes(line: &str) -> impl Iterator<Item = &str> {
    let info = line
        .split_once("```")
        .map_or("", |(_, info)| info.trim_start_matches('`'));
    info.split(|c: char| c == ',' || c.is_whitespace() || c == '{' || c == '}')
        .filter(|w| !w.is_empty())
}

/// rustdoc writes paths relative to the directory it ran in (the workspace root, or the
/// package's parent for a package that is not in a workspace of its own).
fn resolve(workspace: &Workspace, path: &str) -> Option<PathBuf> {
    let path = Path::new(path);
    if path.is_absolute() {
        return Some(path.to_path_buf());
    }
    std::iter::once(workspace.root.as_path())
        .chain(
            workspace
                .packages
                .iter()
                .filter_map(|p| p.manifest_dir.parent()),
        )
        .map(|dir| dir.join(path))
        .find(|candidate| candidate.is_file())
        .map(|file| file.canonicalize().unwrap_or(file))
}

/// The package whose directory holds `file` (the innermost one).
fn owner<'a>(workspace: &'a Workspace, file: &Path) -> Option<&'a Package> {
    workspace
        .packages
        .iter()
        .filter(|p| file.starts_with(&p.manifest_dir))
        .max_by_key(|p| p.manifest_dir.components().count())
}

/// The package whose doctest a record is, by the manifest directory cargo gave rustdoc.
fn package_of<'a>(workspace: &'a Workspace, record: &Record) -> Option<&'a Package> {
    let dir = PathBuf::from(record.var("CARGO_MANIFEST_DIR")?);
    workspace.packages.iter().find(|p| p.manifest_dir == dir)
}

/// The package whose file a doctest of rustdoc's `name` is in.
fn package_named<'a>(workspace: &'a Workspace, name: &str) -> Option<&'a Package> {
    let (path, _, _) = split_name(name)?;
    owner(workspace, &resolve(workspace, path)?)
}

/// Which of the doctests with their own `fn main` (name, code) an executable is: the only one
/// whose string literals all appear in it, or the only candidate.
fn own_main_doctest<'a>(
    candidates: &[(&'a String, String)],
    executable: &[u8],
) -> Option<&'a String> {
    if let [(name, _)] = candidates {
        return Some(name);
    }
    let matching: Vec<&String> = candidates
        .iter()
        .filter(|(_, code)| {
            let literals = string_literals(code);
            !literals.is_empty() && literals.iter().all(|l| contains(executable, l.as_bytes()))
        })
        .map(|(name, _)| *name)
        .collect();
    match matching[..] {
        [name] => Some(name),
        _ => None,
    }
}

/// The contents of the plain string literals of `code`'s statements, as the executable holds
/// them: of 3 bytes or more (shorter ones are found anywhere), without escapes or format
/// placeholders (stored in pieces), and not in `//` comments.
fn string_literals(code: &str) -> Vec<&str> {
    let mut literals = Vec::new();
    for line in code.lines() {
        let mut rest = line;
        loop {
            let quote = rest.find('"');
            if rest.find("//").is_some_and(|c| quote.is_none_or(|q| c < q)) {
                break;
            }
            let Some(start) = quote else {
                break;
            };
            let after = &rest[start + 1..];
            let Some(end) = after.find('"') else {
                break;
            };
            let literal = &after[..end];
            let plain = !literal.contains(['\\', '{', '}']);
            if literal.len() >= 3 && plain {
                literals.push(literal);
            }
            rest = &after[end + 1..];
        }
    }
    literals
}

/// The code of the doc comment's code block whose fence is on `line` of `file`, without the
/// comment markers.
fn code_block(file: &Path, line: u32) -> Option<String> {
    let text = std::fs::read_to_string(file).ok()?;
    let mut code = String::new();
    for source in text.lines().skip(line as usize) {
        let content = source.trim_start();
        let content = ["///", "//!"]
            .iter()
            .find_map(|marker| content.strip_prefix(marker))
            .unwrap_or(content);
        let content = content.strip_prefix(' ').unwrap_or(content);
        if content.trim_start().starts_with("```") {
            return Some(code);
        }
        code.push_str(content);
        code.push('\n');
    }
    None
}

/// What a doctest executable's symbols say it is.
#[derive(Debug, PartialEq, Eq)]
enum DoctestSymbols {
    /// One doctest: `_doctest_main_<mangled path>_<line>_<n>`.
    Standalone { file: String, line: u32 },
    /// `count` doctests in `doctest_bundle_2024::__doctest_<N>` modules.
    Merged { count: usize },
    /// One doctest that declares its own `fn main` (`rust_out::main`), which rustdoc leaves as
    /// it is.
    OwnMain,
}

#[derive(Debug, thiserror::Error)]
enum SymbolError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("not an executable: {0}")]
    Object(#[from] object::Error),
    #[error("no doctest in its symbols")]
    NoDoctest,
}

impl DoctestSymbols {
    fn parse(bytes: &[u8]) -> Result<Self, SymbolError> {
        use object::{Object, ObjectSymbol};
        let file = object::File::parse(bytes)?;
        let names: Vec<&str> = file.symbols().filter_map(|s| s.name().ok()).collect();
        Self::from_symbols(&names)
    }

    fn from_symbols(names: &[&str]) -> Result<Self, SymbolError> {
        let mut merged: Option<usize> = None;
        for name in names {
            let path = format!("{:#}", rustc_demangle::demangle(name));
            let mut segments = path.split("::");
            let first = segments.next().unwrap_or_default();
            for segment in segments {
                // `rust_out::main::_doctest_main_<path>_<line>_<n>`
                if let Some(rest) = segment.strip_prefix("_doctest_main_") {
                    let parsed = rest.rsplit_once('_').and_then(|(head, _n)| {
                        let (file, line) = head.rsplit_once('_')?;
                        Some((file.to_owned(), line.parse().ok()?))
                    });
                    if let Some((file, line)) = parsed {
                        return Ok(DoctestSymbols::Standalone { file, line });
                    }
                }
                // `doctest_bundle_2024::__doctest_<N>::main`
                if first == "doctest_bundle_2024" {
                    if let Some(n) = segment
                        .strip_prefix("__doctest_")
                        .and_then(|n| n.parse::<usize>().ok())
                    {
                        merged = Some(merged.map_or(n + 1, |m| m.max(n + 1)));
                    }
                }
            }
        }
        if let Some(count) = merged {
            return Ok(DoctestSymbols::Merged { count });
        }
        let own_main = names
            .iter()
            .any(|name| format!("{:#}", rustc_demangle::demangle(name)) == "rust_out::main");
        if own_main {
            return Ok(DoctestSymbols::OwnMain);
        }
        Err(SymbolError::NoDoctest)
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && memchr::memmem::find(haystack, needle).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rustdoc_names_split_into_path_item_and_line() {
        assert_eq!(
            split_name("src/lib.rs - Version::parse (line 12)"),
            Some(("src/lib.rs", "Version::parse", 12))
        );
        assert_eq!(
            split_name("k/src/lib.rs - (line 2)"),
            Some(("k/src/lib.rs", "", 2))
        );
        assert_eq!(
            split_name("src/a - b.rs - f (line 3)"),
            Some(("src/a", "b.rs - f", 3)),
            "rustdoc's format is ambiguous for paths with ` - `; the first one splits"
        );
        assert_eq!(split_name("tests::it_works"), None);
    }

    #[test]
    fn standalone_and_merged_doctests_are_told_apart_by_their_symbols() {
        assert_eq!(
            DoctestSymbols::from_symbols(&[
                "main",
                "_ZN8rust_out4main30_doctest_main_k_src_lib_rs_2_017h0123456789abcdefE",
            ])
            .unwrap(),
            DoctestSymbols::Standalone {
                file: "k_src_lib_rs".into(),
                line: 2
            }
        );
        assert_eq!(mangle("k/src/lib.rs"), "k_src_lib_rs");
        assert_eq!(
            DoctestSymbols::from_symbols(&[
                "_ZN19doctest_bundle_202411__doctest_04main17hc6cb98b757fb35a8E",
                "_ZN19doctest_bundle_202412__doctest_109__main_fn17ha4ee879653c7a8f5E",
                "_ZN19doctest_runner_202411__doctest_34TEST28_$u7b$$u7b$closure$u7d$$u7d$17h0E",
            ])
            .unwrap(),
            DoctestSymbols::Merged { count: 11 },
            "numbers come from the bundle's modules: 0 and 10 make 11"
        );
        assert_eq!(
            DoctestSymbols::from_symbols(&["main", "_ZN8rust_out4main17h6858b1260b220e61E"])
                .unwrap(),
            DoctestSymbols::OwnMain
        );
        assert!(DoctestSymbols::from_symbols(&["main", "_ZN4core3fmt5write17h0E"]).is_err());
    }

    #[test]
    fn v0_symbols_name_their_doctests_too() {
        assert_eq!(
            DoctestSymbols::from_symbols(&[
                "_RNvNtCsffpus1Q9VF1_19doctest_bundle_202411___doctest_74main"
            ])
            .unwrap(),
            DoctestSymbols::Merged { count: 8 }
        );
    }

    #[test]
    fn doctests_with_their_own_main_are_told_apart_by_their_string_literals() {
        let (a, b) = (
            "src/lib.rs - (line 19)".to_owned(),
            "src/parse.rs - Error (line 11)".to_owned(),
        );
        let candidates = [
            (
                &a,
                r#"fn main() { VersionReq::parse(">=1.2.3, <1.8.0"); }"#.to_owned(),
            ),
            (
                &b,
                r#"fn main() { Version::parse("1.q.r"); let x = "a\"b"; }"#.to_owned(),
            ),
        ];
        let exe = b"....>=1.2.3, <1.8.0....alpha.1..";
        assert_eq!(own_main_doctest(&candidates, exe), Some(&a));
        assert_eq!(own_main_doctest(&candidates, b"..1.q.r.."), Some(&b));
        assert_eq!(own_main_doctest(&candidates, b"nothing"), None);
        assert_eq!(own_main_doctest(&candidates[..1], b"nothing"), Some(&a));
        assert_eq!(string_literals(&candidates[1].1), ["1.q.r"]);
        let commented = "let e = parse(\"1.q.r\");\n// \"unexpected 'q'\" is printed\nprintln!(\"{e} of {}\", 2);";
        assert_eq!(
            string_literals(commented),
            ["1.q.r"],
            "comments and format strings are not in the executable as written"
        );
    }

    #[test]
    fn code_blocks_are_read_from_their_doc_comment() {
        let dir = std::env::temp_dir().join(format!("coverlay-codeblock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("lib.rs");
        std::fs::write(
            &file,
            "//! Text\n//! ```\n//! fn main() {\n//!     f();\n//! }\n//! ```\n",
        )
        .unwrap();
        assert_eq!(
            code_block(&file, 2).as_deref(),
            Some("fn main() {\n    f();\n}\n")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn name_filters_find_the_doctests_of_an_id_in_rustdocs_names() {
        let parse = name_filter("k::doc::Version::parse (doctest 2)");
        assert_eq!(parse, " - Version::parse (line ");
        assert!("src/lib.rs - Version::parse (line 12)".contains(&parse));
        assert!(!"src/lib.rs - Version::parse_all (line 12)".contains(&parse));
        let module = name_filter("k::doc::src/lib.rs (doctest)");
        assert!("src/lib.rs - (line 3)".contains(&module), "{module}");
        assert!(!"src/lib.rs - f (line 3)".contains(&module));
        assert!(is_doctest("k::doc::src/lib.rs (doctest)"));
        assert!(is_doctest("k::doc::Version::parse (doctest 2)"));
        assert!(!is_doctest("k::doc::tests::line_parsing"));
    }

    #[test]
    fn doctests_of_one_item_are_numbered_in_file_order() {
        let package = Package {
            name: "k".into(),
            version: "0.1.0".into(),
            manifest_dir: "/w".into(),
            dependencies: Vec::new(),
            proc_macro: false,
            doctested: true,
        };
        let verdict = |name: &str, line| DoctestVerdict {
            package: package.clone(),
            target: "k".into(),
            test: Doctest {
                name: name.into(),
                rustdoc_name: String::new(),
                location: Some(("/w/src/lib.rs".into(), line)),
                should_panic: false,
            },
            outcome: Outcome::Passed,
            message: None,
        };
        let mut doctests = Doctests {
            verdicts: vec![
                verdict("doc::one (doctest)", 19),
                verdict("doc::two (doctest)", 3),
            ],
            unrun: vec![verdict("doc::one (doctest)", 11)],
            ..Doctests::default()
        };
        number_alike(&mut doctests);
        let names: Vec<&str> = doctests
            .verdicts
            .iter()
            .chain(&doctests.unrun)
            .map(|v| v.test.name.as_str())
            .collect();
        assert_eq!(
            names,
            [
                "doc::one (doctest 2)",
                "doc::two (doctest)",
                "doc::one (doctest)"
            ]
        );
    }

    #[test]
    fn fences_name_their_attributes() {
        let words = |l| fence_attributes(l).collect::<Vec<_>>();
        assert_eq!(words("/// ```should_panic"), ["should_panic"]);
        assert_eq!(words("//! ```rust,should_panic"), ["rust", "should_panic"]);
        assert_eq!(words("    /// ```{.rust no_run}"), [".rust", "no_run"]);
        assert!(words("/// ```").is_empty());
        assert!(words("/// text").is_empty());
    }

    #[test]
    fn rustdoc_verdicts_with_their_failure_output() {
        let out = "\
running 5 tests
test src/lib.rs - (line 2) ... ok
test src/lib.rs - one (line 11) - compile ... ok
test src/lib.rs - one (line 15) ... ignored
test src/lib.rs - one (line 19) - compile fail ... FAILED
test src/lib.rs - two (line 25) ... FAILED

failures:

---- src/lib.rs - one (line 19) stdout ----
Test compiled successfully, but it's marked `compile_fail`.
---- src/lib.rs - two (line 25) stdout ----
error[E0425]: cannot find function `nope` in crate `k`

failures:
    src/lib.rs - one (line 19)
    src/lib.rs - two (line 25)

test result: FAILED. 2 passed; 2 failed; 1 ignored; 0 measured; 0 filtered out
";
        let verdicts = parse_verdicts(out);
        assert_eq!(
            verdicts["src/lib.rs - (line 2)"],
            Verdict::Ran { failed: None }
        );
        assert_eq!(
            verdicts["src/lib.rs - one (line 11)"],
            Verdict::CompileOnly { failed: None }
        );
        assert_eq!(verdicts["src/lib.rs - one (line 15)"], Verdict::Ignored);
        assert_eq!(
            verdicts["src/lib.rs - one (line 19)"],
            Verdict::CompileOnly {
                failed: Some("Test compiled successfully, but it's marked `compile_fail`.".into())
            }
        );
        assert_eq!(
            verdicts["src/lib.rs - two (line 25)"],
            Verdict::Ran {
                failed: Some("error[E0425]: cannot find function `nope` in crate `k`".into())
            }
        );
        assert_eq!(verdicts.len(), 5);
    }
}
