//! Runs as the editor sees them: starting the workspace (saved coverage first, then a run and the
//! watcher), and applying the scheduler's events in order: progress, results into the store, the
//! saved file, diagnostics and refreshes, and a message for a failure the user must act on.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tower_lsp_server::ls_types::MessageType;

use super::progress::RunProgress;
use crate::cargo::CargoError;
use crate::lsp::scheduler::{Event, Scheduler, Scope};
use crate::lsp::state::GlobalState;
use crate::lsp::store::{Shown, Store};
use crate::lsp::watch;
use crate::merge::Narrowed;
use crate::run::RunError;
use crate::selection::Baseline;

impl GlobalState {
    /// Writes the shown results to `<target>/coverlay/coverage.json` (loaded on the next start).
    pub(crate) async fn save_store(self: &Arc<Self>) {
        let Some(workspace) = self.workspace.get() else {
            return;
        };
        let file = workspace.coverlay_dir().join("coverage.json");
        let this = self.clone();
        let saved =
            tokio::task::spawn_blocking(move || this.store.save(&file).map_err(|e| (file, e)));
        if let Ok(Err((file, error))) = saved.await {
            tracing::warn!("cannot save {}: {error}", file.display());
        }
    }

    /// Reads the workspace, starts the first run and the watcher, and shows the saved coverage
    /// until the run's results replace it.
    pub(crate) async fn start(self: Arc<Self>, root: PathBuf) {
        let started = Instant::now();
        // The workspace the last run read, if kept: then its directories are this one's (it is
        // kept only where coverlay's directory is `target/coverlay` of `root`), which is all the
        // server takes from it, and the first run need not wait for `cargo metadata`: it builds
        // with that workspace and checks it beside the build, as `coverlay run` does.
        let workspace = match crate::cargo::remembered_workspace(&root) {
            Some(remembered) => {
                self.start_runs(Scheduler::start_at(
                    root,
                    self.settings().run_options(),
                    1,
                    self.sink(),
                ));
                remembered
            }
            None => {
                let loaded = {
                    let root = root.clone();
                    tokio::task::spawn_blocking(move || crate::cargo::load_workspace(&root)).await
                };
                let workspace = match loaded {
                    Ok(Ok(workspace)) => workspace,
                    Ok(Err(error)) => {
                        self.client
                            .show_message(MessageType::ERROR, format!("coverlay: {error}"))
                            .await;
                        return;
                    }
                    Err(error) => {
                        tracing::error!("reading the workspace panicked: {error}");
                        return;
                    }
                };
                tracing::debug!("workspace read after {:?}", started.elapsed());
                crate::cargo::remember_workspace(&root, &workspace);
                // The run starts first: reading the saved results takes a core while cargo
                // checks the build, and a run that finishes first is newer than them (the store
                // keeps the newer).
                self.start_runs(Scheduler::start(
                    workspace.clone(),
                    self.settings().run_options(),
                    1,
                    self.sink(),
                ));
                workspace
            }
        };
        let saved = workspace.coverlay_dir().join("coverage.json");
        let root = workspace.root.clone();
        let target_dir = workspace.target_dir.clone();
        let _ = self.workspace.set(workspace);
        if self.stopped.load(Ordering::Acquire) {
            return;
        }
        let settings = self.settings();

        let this = Arc::downgrade(&self);
        let watcher = watch::start(
            &root,
            target_dir,
            Duration::from_millis(settings.debounce_ms),
            move |paths| {
                let Some(this) = this.upgrade() else {
                    return;
                };
                // Changes to open files arrive as didSave.
                let outside: Vec<PathBuf> = paths
                    .into_iter()
                    .filter(|p| !this.documents.contains_key(p))
                    .collect();
                if !outside.is_empty() {
                    tracing::debug!("changed outside the editor: {outside:?}");
                    this.changed_outside(outside);
                }
            },
        );
        match watcher {
            Ok(watcher) => {
                *self.watcher.lock().unwrap_or_else(|e| e.into_inner()) = Some(watcher);
            }
            Err(error) => tracing::warn!("cannot watch {}: {error}", root.display()),
        }
        let shown = saved.clone();
        match tokio::task::spawn_blocking(move || Store::load(&saved)).await {
            Ok(Ok(loaded)) => {
                let saved = Shown::new(1, loaded.coverage, loaded.sources, None);
                if self.store.replace(saved).is_some() {
                    // Files edited while the server was not running: their lines may have moved,
                    // so they show nothing until the first run has measured them again.
                    let this = self.clone();
                    let changed = tokio::task::spawn_blocking(move || {
                        this.store.mark_changed_sources(&|path| {
                            std::fs::read(path)
                                .ok()
                                .map(|bytes| crate::selection::content_hash(&bytes))
                        })
                    })
                    .await
                    .unwrap_or_default();
                    if !changed.is_empty() {
                        tracing::info!("changed since the saved run: {changed:?}");
                    }
                    self.publish(self.store.shown().paths()).await;
                    self.notify_coverage().await;
                    self.refresh();
                    tracing::debug!("saved coverage shown after {:?}", started.elapsed());
                }
            }
            Ok(Err(error)) if error.kind() == std::io::ErrorKind::NotFound => {
                tracing::debug!("no saved coverage at {}", shown.display());
            }
            // An older coverlay's format, or a damaged file: the first run replaces it.
            Ok(Err(error)) => tracing::info!(
                "starting without the saved coverage {}: {error}",
                shown.display()
            ),
            Err(error) => tracing::warn!("loading the saved coverage panicked: {error}"),
        }
    }

    /// A server that started with the workspace the last run read (see `start`) watches the
    /// files outside that target directory. When a run finds cargo building elsewhere now (a
    /// `target-dir` set while no server ran), the watcher would take build outputs for edits:
    /// it is stopped, and the user told why.
    async fn check_target_dir(&self, read: &crate::cargo::Workspace) {
        let Some(known) = self.workspace.get() else {
            return;
        };
        if known.target_dir == read.target_dir {
            return;
        }
        let stopped = self
            .watcher
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if stopped.is_some() {
            self.client
                .show_message(
                    MessageType::WARNING,
                    format!(
                        "coverlay: cargo's target directory is now {} (it was {}); restart the \
                         language server to follow files changed outside the editor again",
                        read.target_dir.display(),
                        known.target_dir.display()
                    ),
                )
                .await;
        }
    }

    /// Where the scheduler's events go: to `consume_events`, in order.
    fn sink(&self) -> crate::lsp::scheduler::Sink {
        let events = self.events.clone();
        Box::new(move |event| {
            let _ = events.send(event);
        })
    }

    /// Makes `scheduler` the server's and has it run everything, unless the server has stopped.
    fn start_runs(&self, scheduler: Scheduler) {
        if self.stopped.load(Ordering::Acquire) {
            return;
        }
        scheduler.request(Scope::All);
        let _ = self.scheduler.set(scheduler);
    }

    /// Reruns what files changed outside the editor can affect. A Rust source or a build input
    /// reruns everything: without the edit's ranges, the results of the tests that would not
    /// rerun cannot be moved with its lines. Other files go through selection (an
    /// `include_str!` input reruns its packages; a README nothing).
    fn changed_outside(&self, paths: Vec<PathBuf>) {
        let rust = |p: &PathBuf| {
            p.extension().is_some_and(|e| e == "rs") || crate::selection::is_environment(p)
        };
        if paths.iter().any(rust) {
            self.request_run(Scope::All);
            return;
        }
        let Some(baseline) = self.store.shown().baseline.clone() else {
            return;
        };
        let changed: Vec<(PathBuf, Option<String>)> = paths
            .into_iter()
            .map(|p| {
                let text = std::fs::read_to_string(&p).ok();
                (p, text)
            })
            .collect();
        self.request_selected(baseline.select(&changed));
    }

    /// Applies the scheduler's events in order: progress, then results into the store, the saved
    /// file, diagnostics and refreshes.
    pub(crate) async fn consume_events(
        self: Arc<Self>,
        mut receiver: mpsc::UnboundedReceiver<Event>,
    ) {
        let mut progress = RunProgress::default();
        while let Some(event) = receiver.recv().await {
            match event {
                Event::Started { generation, scope } => {
                    let previous = std::mem::take(&mut progress);
                    previous.finish("superseded").await;
                    progress = RunProgress::begin(
                        &self.client,
                        self.support().progress,
                        generation,
                        &scope,
                    )
                    .await;
                }
                Event::Progress { progress: p, .. } => progress.report(&p).await,
                Event::Finished {
                    generation,
                    scope,
                    result,
                } => {
                    let message = self.finished(generation, scope, *result).await;
                    std::mem::take(&mut progress).finish(&message).await;
                }
            }
        }
    }

    pub(crate) async fn finished(
        self: &Arc<Self>,
        generation: u64,
        scope: Scope,
        result: std::result::Result<crate::run::RunReport, RunError>,
    ) -> String {
        let report = match result {
            Ok(report) => report,
            Err(RunError::Cancelled) => return "cancelled".into(),
            Err(error) => {
                let (actionable, text) = explain(&error);
                let kind = if actionable {
                    MessageType::ERROR
                } else {
                    MessageType::WARNING
                };
                let repeated = {
                    let mut last = self.last_failure.lock().unwrap_or_else(|e| e.into_inner());
                    let repeated = last.as_deref() == Some(text.as_str());
                    *last = Some(text.clone());
                    repeated
                };
                if actionable && !repeated {
                    self.client.show_message(kind, &text).await;
                }
                self.client.log_message(kind, format!("{error}")).await;
                return text;
            }
        };
        self.check_target_dir(&report.workspace).await;
        let failed = report
            .coverage
            .tests
            .iter()
            .filter(|t| matches!(t.outcome, crate::libtest::Outcome::Failed))
            .count();
        let summary = format!(
            "{}/{} lines covered, {} tests, {failed} failed",
            report.coverage.covered(),
            report.coverage.coverable(),
            report.coverage.tests.len()
        );
        *self.last_failure.lock().unwrap_or_else(|e| e.into_inner()) = None;
        let merging = Instant::now();
        let targets = report.build_targets();
        let built = if report.narrowed {
            let mut names: Vec<&str> = targets.keys().map(String::as_str).collect();
            names.sort_unstable();
            format!("built only {}", names.join(", "))
        } else {
            format!("built {} test executables", targets.len())
        };
        let ran = match &scope {
            Scope::All => None,
            Scope::Tests(filter) => Some(report.ran(filter)),
        };
        let narrowed = match (&scope, report.narrowed, &report.sources) {
            (Scope::Tests(filter), true, Some(sources)) => {
                Some(narrowing(filter, &targets, &sources.fingerprints))
            }
            _ => None,
        };
        let crate::run::RunReport {
            workspace,
            coverage,
            sources,
            phases,
            ..
        } = report;
        // The baseline describes the results as shown after this run: built with them, swapped
        // in with them. A narrowed build knows only some executables: the earlier baseline knows
        // the others.
        let next =
            move |generation: u64, coverage: crate::coverage::Coverage, before: &Shown| -> Shown {
                let Some(sources) = sources else {
                    return Shown::new(generation, coverage, Default::default(), None);
                };
                let mut all_targets = before
                    .baseline
                    .as_ref()
                    .map(|b| b.targets.clone())
                    .unwrap_or_default();
                all_targets.extend(targets);
                let baseline = Baseline::new(
                    &workspace,
                    sources.fingerprints,
                    sources.inputs,
                    &coverage,
                    all_targets,
                );
                Shown::new(
                    generation,
                    coverage,
                    sources.hashes,
                    Some(Arc::new(baseline)),
                )
            };
        let paths = match ran {
            None => {
                let before = self.store.shown();
                self.store.replace(next(generation, coverage, &before))
            }
            Some(ran) => self
                .store
                .merge(generation, coverage, &ran, narrowed.as_ref(), next),
        };
        let Some(paths) = paths else {
            return "superseded".into();
        };
        let merged = merging.elapsed();
        let publishing = Instant::now();
        self.publish(paths).await;
        self.notify_coverage().await;
        self.refresh();
        let published = publishing.elapsed();
        self.save_store().await;
        let seconds = |d: Duration| format!("{:.2} s", d.as_secs_f64());
        self.client
            .log_message(
                MessageType::INFO,
                format!(
                    "run {generation} done: {summary}; {built}; build {}, prepare {}, tests {}, \
                     report {}, merge {}, publish {}",
                    seconds(phases.build),
                    seconds(phases.prepare),
                    seconds(phases.tests),
                    seconds(phases.report),
                    seconds(merged),
                    seconds(published),
                ),
            )
            .await;
        summary
    }
}

/// What a narrowed run built, and the line spans of the changed bodies in its sources.
fn narrowing(
    filter: &crate::selection::TestFilter,
    built: &HashMap<String, crate::selection::BuildTarget>,
    fingerprints: &HashMap<PathBuf, crate::selection::Fingerprint>,
) -> Narrowed {
    let mut replaced: HashMap<PathBuf, Vec<(u32, u32)>> = HashMap::new();
    for (path, key) in &filter.changed {
        let item = fingerprints
            .get(path)
            .and_then(|f| f.items.iter().find(|i| &i.key == key));
        if let Some(item) = item {
            replaced
                .entry(path.clone())
                .or_default()
                .push((item.start, item.end));
        }
    }
    Narrowed {
        built: built.keys().cloned().collect(),
        replaced,
    }
}

/// Whether the user must act on a failed run, and what to tell them.
pub(crate) fn explain(error: &RunError) -> (bool, String) {
    match error {
        RunError::Cargo(CargoError::BuildFailed { rendered }) => {
            let first = first_compiler_error(rendered);
            (
                true,
                format!("coverlay: the tests do not compile:\n{first}"),
            )
        }
        RunError::Cargo(
            error @ (CargoError::Metadata { .. }
            | CargoError::NoManifest { .. }
            | CargoError::Spawn(_)),
        ) => (true, format!("coverlay: {error}")),
        RunError::Engine { source, .. } => {
            let text = source.to_string();
            if text.contains("ermission")
                || text.contains("EPERM")
                || text.contains("not permitted")
            {
                (
                    true,
                    format!(
                        "coverlay cannot trace the tests: {text}. Allow ptrace with \
                         `sudo sysctl kernel.yama.ptrace_scope=0` (or, in a container, \
                         `--cap-add=SYS_PTRACE`)."
                    ),
                )
            } else {
                (false, format!("coverlay: {error}"))
            }
        }
        _ => (false, format!("coverlay: {error}")),
    }
}

/// The first `error…` block of cargo's rendered messages.
pub fn first_compiler_error(rendered: &str) -> String {
    let mut blocks = rendered
        .split("\n\n")
        .map(str::trim)
        .filter(|b| !b.is_empty());
    let first = blocks
        .clone()
        .find(|b| b.starts_with("error"))
        .or_else(|| blocks.next())
        .unwrap_or("");
    first.to_owned()
}
