//! The LSP handlers. They read the store or enqueue work and return; runs happen on the
//! scheduler's thread, and their results arrive as events that one task (`consume_events`) turns
//! into store updates, diagnostics, refresh requests and progress, in order.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use dashmap::DashMap;
use serde_json::Value;
use tokio::sync::mpsc;
use tower_lsp_server::jsonrpc::{Error, Result};
use tower_lsp_server::ls_types::*;
use tower_lsp_server::{Client, LanguageServer};

use super::commands::{self, Action};
use super::config::Settings;
use super::documents::{self, Document};
use super::progress::RunProgress;
use super::{diagnostics, hints, lenses};
use crate::cargo::{CargoError, Workspace};
use crate::run::RunError;
use crate::scheduler::{Event, Scheduler, Scope};
use crate::store::Store;
use crate::watch;

/// How long a refresh request may wait for the client.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, Debug, Default)]
struct ClientSupport {
    progress: bool,
    inlay_hint_refresh: bool,
    code_lens_refresh: bool,
}

pub struct Inner {
    client: Client,
    pub store: Store,
    documents: DashMap<PathBuf, Document>,
    settings: RwLock<Settings>,
    support: OnceLock<ClientSupport>,
    root: OnceLock<PathBuf>,
    workspace: OnceLock<Workspace>,
    scheduler: OnceLock<Scheduler>,
    watcher: Mutex<Option<watch::Watcher>>,
    events: mpsc::UnboundedSender<Event>,
    receiver: Mutex<Option<mpsc::UnboundedReceiver<Event>>>,
    stopped: AtomicBool,
}

pub struct Server {
    inner: Arc<Inner>,
}

impl Server {
    pub fn new(client: Client) -> Self {
        let (events, receiver) = mpsc::unbounded_channel();
        Self {
            inner: Arc::new(Inner {
                client,
                store: Store::new(),
                documents: DashMap::new(),
                settings: RwLock::new(Settings::default()),
                support: OnceLock::new(),
                root: OnceLock::new(),
                workspace: OnceLock::new(),
                scheduler: OnceLock::new(),
                watcher: Mutex::new(None),
                events,
                receiver: Mutex::new(Some(receiver)),
                stopped: AtomicBool::new(false),
            }),
        }
    }

    pub fn inner(&self) -> Arc<Inner> {
        self.inner.clone()
    }
}

impl Inner {
    fn settings(&self) -> Settings {
        self.settings
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn support(&self) -> ClientSupport {
        self.support.get().copied().unwrap_or_default()
    }

    /// The file a URI names, canonical when it exists. Errors for URIs that are not `file:`.
    fn path_of(&self, uri: &Uri) -> Result<PathBuf> {
        let not_file = || {
            Error::invalid_params(format!(
                "coverlay handles file: URIs only, not {}",
                uri.as_str()
            ))
        };
        if !uri.scheme().as_str().eq_ignore_ascii_case("file") {
            return Err(not_file());
        }
        let path = uri
            .to_file_path()
            .filter(|p| p.is_absolute())
            .ok_or_else(not_file)?
            .into_owned();
        Ok(path.canonicalize().unwrap_or(path))
    }

    fn excluded(&self, path: &Path) -> bool {
        let root = self
            .root
            .get()
            .map(PathBuf::as_path)
            .unwrap_or(Path::new("/"));
        self.settings
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .is_excluded(path, root)
    }

    /// The text of `path`: the open buffer, else the file on disk.
    fn text(&self, path: &Path) -> Option<Document> {
        if let Some(doc) = self.documents.get(path) {
            return Some(doc.clone());
        }
        std::fs::read_to_string(path).ok().map(Document::new)
    }

    /// Pushes the diagnostics of `paths` (an empty list for files without results).
    async fn publish(&self, paths: &[PathBuf]) {
        let settings = self.settings();
        let tests = self.store.tests();
        for path in paths {
            let Some(uri) = Uri::from_file_path(path) else {
                continue;
            };
            let diagnostics = match self.store.file(path) {
                Some(file) if !settings.is_excluded(path, self.root_or_slash()) => {
                    let text = self.text(path);
                    diagnostics::for_file(&file, &tests, text.as_ref(), &settings)
                }
                _ => Vec::new(),
            };
            self.client
                .publish_diagnostics(uri, diagnostics, None)
                .await;
        }
    }

    fn root_or_slash(&self) -> &Path {
        self.root
            .get()
            .map(PathBuf::as_path)
            .unwrap_or(Path::new("/"))
    }

    /// Asks the client to re-request hints and lenses, where it said it can.
    fn refresh(self: &Arc<Self>) {
        let support = self.support();
        let this = self.clone();
        tokio::spawn(async move {
            if support.inlay_hint_refresh {
                let _ =
                    tokio::time::timeout(CLIENT_TIMEOUT, this.client.inlay_hint_refresh()).await;
            }
            if support.code_lens_refresh {
                let _ = tokio::time::timeout(CLIENT_TIMEOUT, this.client.code_lens_refresh()).await;
            }
        });
    }

    fn request_run(&self, scope: Scope) {
        if let Some(scheduler) = self.scheduler.get() {
            scheduler.request(scope);
        }
    }

    /// Reads the workspace, shows the saved coverage, starts the first run and the watcher.
    async fn start(self: Arc<Self>, root: PathBuf) {
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
        let saved = workspace.coverlay_dir().join("coverage.json");
        let root = workspace.root.clone();
        let target_dir = workspace.target_dir.clone();
        let _ = self.workspace.set(workspace);
        if let Ok(Ok(coverage)) = tokio::task::spawn_blocking(move || Store::load(&saved)).await {
            if let Some(paths) = self.store.replace(1, coverage) {
                self.publish(&paths).await;
                self.refresh();
            }
        }
        if self.stopped.load(Ordering::Acquire) {
            return;
        }
        let events = self.events.clone();
        let settings = self.settings();
        let scheduler = Scheduler::start(
            root.clone(),
            settings.run_options(),
            1,
            Box::new(move |event| {
                let _ = events.send(event);
            }),
        );
        scheduler.request(Scope::All);
        let _ = self.scheduler.set(scheduler);

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
                if paths.iter().any(|p| !this.documents.contains_key(p)) {
                    tracing::debug!("changed outside the editor: {paths:?}");
                    this.request_run(Scope::All);
                }
            },
        );
        match watcher {
            Ok(watcher) => {
                *self.watcher.lock().unwrap_or_else(|e| e.into_inner()) = Some(watcher);
            }
            Err(error) => tracing::warn!("cannot watch {}: {error}", root.display()),
        }
    }

    /// Applies the scheduler's events in order: progress, then results into the store, the saved
    /// file, diagnostics and refreshes.
    async fn consume_events(self: Arc<Self>, mut receiver: mpsc::UnboundedReceiver<Event>) {
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

    async fn finished(
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
                if actionable {
                    self.client.show_message(kind, &text).await;
                }
                self.client.log_message(kind, format!("{error}")).await;
                return text;
            }
        };
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
        let paths = match scope {
            Scope::All => self.store.replace(generation, report.coverage),
            Scope::Tests(_) => self.store.merge(generation, report.coverage),
        };
        let Some(paths) = paths else {
            return "superseded".into();
        };
        if let Some(workspace) = self.workspace.get() {
            let file = workspace.coverlay_dir().join("coverage.json");
            let this = self.clone();
            tokio::task::spawn_blocking(move || {
                if let Err(error) = this.store.save(&file) {
                    tracing::warn!("cannot save {}: {error}", file.display());
                }
            });
        }
        self.publish(&paths).await;
        self.refresh();
        summary
    }

    /// Stops runs (killing what they started) and the watcher. Idempotent.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        self.watcher
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(scheduler) = self.scheduler.get() {
            scheduler.stop(Duration::from_secs(10));
        }
        crate::scheduler::kill_descendants();
    }

    async fn execute(self: &Arc<Self>, action: Action) -> Result<Option<Value>> {
        match action {
            Action::RerunAll => self.request_run(Scope::All),
            Action::RerunTests(ids) => self.request_run(Scope::Tests(ids)),
            Action::Clear => {
                let generation = self
                    .scheduler
                    .get()
                    .map_or(2, |scheduler| scheduler.next_generation());
                let paths = self.store.clear(generation);
                self.publish(&paths).await;
                self.refresh();
            }
            Action::WriteLcov(path) => {
                let path = match (path, self.workspace.get()) {
                    (Some(path), _) => path,
                    (None, Some(workspace)) => workspace.coverlay_dir().join("lcov.info"),
                    (None, None) => {
                        return Err(Error::invalid_params(
                            "no workspace: give the lcov file's path as the argument",
                        ))
                    }
                };
                let lcov = crate::report::lcov::render(&self.store.snapshot());
                let written = {
                    let path = path.clone();
                    tokio::task::spawn_blocking(move || std::fs::write(&path, lcov)).await
                };
                match written {
                    Ok(Ok(())) => return Ok(Some(Value::String(path.display().to_string()))),
                    Ok(Err(error)) => {
                        let mut e = Error::internal_error();
                        e.message = format!("cannot write {}: {error}", path.display()).into();
                        return Err(e);
                    }
                    Err(_) => return Err(Error::internal_error()),
                }
            }
        }
        Ok(None)
    }
}

/// Whether the user must act on a failed run, and what to tell them.
fn explain(error: &RunError) -> (bool, String) {
    match error {
        RunError::Cargo(CargoError::BuildFailed { rendered }) => {
            let first = first_compiler_error(rendered);
            (
                true,
                format!("coverlay: the tests do not compile:\n{first}"),
            )
        }
        RunError::Cargo(error @ (CargoError::Metadata { .. } | CargoError::Spawn(_))) => {
            (true, format!("coverlay: {error}"))
        }
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

fn is_build_input(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name.ends_with(".rs") || name == "Cargo.toml" || name == "Cargo.lock"
}

impl LanguageServer for Server {
    async fn initialize(&self, params: InitializeParams) -> Result<InitializeResult> {
        let caps = &params.capabilities;
        let support = ClientSupport {
            progress: caps
                .window
                .as_ref()
                .and_then(|w| w.work_done_progress)
                .unwrap_or(false),
            inlay_hint_refresh: caps
                .workspace
                .as_ref()
                .and_then(|w| w.inlay_hint.as_ref())
                .and_then(|h| h.refresh_support)
                .unwrap_or(false),
            code_lens_refresh: caps
                .workspace
                .as_ref()
                .and_then(|w| w.code_lens.as_ref())
                .and_then(|c| c.refresh_support)
                .unwrap_or(false),
        };
        let _ = self.inner.support.set(support);
        #[allow(deprecated)]
        let root = params
            .workspace_folders
            .as_ref()
            .and_then(|folders| folders.first())
            .and_then(|folder| folder.uri.to_file_path().map(|p| p.into_owned()))
            .or_else(|| {
                params
                    .root_uri
                    .as_ref()
                    .and_then(|uri| uri.to_file_path().map(|p| p.into_owned()))
            })
            .or_else(|| std::env::current_dir().ok());
        if let Some(root) = root {
            let _ = self.inner.root.set(root.canonicalize().unwrap_or(root));
        }
        if let Some(options) = &params.initialization_options {
            let rejected = self
                .inner
                .settings
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .update(options);
            if !rejected.is_empty() {
                tracing::warn!("ignored settings: {rejected:?}");
            }
        }
        Ok(InitializeResult {
            capabilities: ServerCapabilities {
                text_document_sync: Some(TextDocumentSyncCapability::Options(
                    TextDocumentSyncOptions {
                        open_close: Some(true),
                        change: Some(TextDocumentSyncKind::FULL),
                        save: Some(TextDocumentSyncSaveOptions::Supported(true)),
                        ..TextDocumentSyncOptions::default()
                    },
                )),
                inlay_hint_provider: Some(OneOf::Left(true)),
                code_lens_provider: Some(CodeLensOptions {
                    resolve_provider: Some(false),
                }),
                execute_command_provider: Some(ExecuteCommandOptions {
                    commands: commands::ALL.iter().map(|c| c.to_string()).collect(),
                    work_done_progress_options: WorkDoneProgressOptions::default(),
                }),
                ..ServerCapabilities::default()
            },
            server_info: Some(ServerInfo {
                name: "coverlay".into(),
                version: Some(env!("CARGO_PKG_VERSION").into()),
            }),
            offset_encoding: None,
        })
    }

    async fn initialized(&self, _: InitializedParams) {
        let receiver = self
            .inner
            .receiver
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(receiver) = receiver {
            tokio::spawn(self.inner.clone().consume_events(receiver));
        }
        if let Some(root) = self.inner.root.get().cloned() {
            tokio::spawn(self.inner.clone().start(root));
        }
    }

    async fn shutdown(&self) -> Result<()> {
        let inner = self.inner.clone();
        let _ = tokio::task::spawn_blocking(move || inner.stop()).await;
        Ok(())
    }

    async fn did_open(&self, params: DidOpenTextDocumentParams) {
        let Ok(path) = self.inner.path_of(&params.text_document.uri) else {
            return;
        };
        self.inner
            .documents
            .insert(path.clone(), Document::new(params.text_document.text));
        // Ranges now fit the buffer's text.
        if self.inner.store.file(&path).is_some() {
            let inner = self.inner.clone();
            tokio::spawn(async move { inner.publish(&[path]).await });
        }
    }

    async fn did_change(&self, params: DidChangeTextDocumentParams) {
        let Ok(path) = self.inner.path_of(&params.text_document.uri) else {
            return;
        };
        // Full sync: the last change holds the whole text.
        let Some(change) = params.content_changes.into_iter().last() else {
            return;
        };
        let new = Document::new(change.text);
        let old = self.inner.documents.insert(path.clone(), new.clone());
        let Some(old) = old else {
            return;
        };
        if let Some((first, removed, inserted)) = documents::changed_lines(&old, &new) {
            if self
                .inner
                .store
                .shift_lines(&path, first, removed, inserted)
            {
                let inner = self.inner.clone();
                tokio::spawn(async move { inner.publish(&[path]).await });
            }
        }
    }

    async fn did_save(&self, params: DidSaveTextDocumentParams) {
        let Ok(path) = self.inner.path_of(&params.text_document.uri) else {
            return;
        };
        let inside = self
            .inner
            .root
            .get()
            .is_some_and(|root| path.starts_with(root));
        if inside && is_build_input(&path) {
            self.inner.request_run(Scope::All);
        }
    }

    async fn did_close(&self, params: DidCloseTextDocumentParams) {
        if let Ok(path) = self.inner.path_of(&params.text_document.uri) {
            self.inner.documents.remove(&path);
        }
    }

    async fn did_change_configuration(&self, params: DidChangeConfigurationParams) {
        let (rejected, rerun) = {
            let mut settings = self
                .inner
                .settings
                .write()
                .unwrap_or_else(|e| e.into_inner());
            let before = settings.clone();
            let rejected = settings.update(&params.settings);
            let rerun = before.cargo_args != settings.cargo_args
                || before.count_cap != settings.count_cap
                || before.test_timeout != settings.test_timeout;
            if let Some(scheduler) = self.inner.scheduler.get() {
                scheduler.set_options(settings.run_options());
            }
            (rejected, rerun)
        };
        if rerun {
            self.inner.request_run(Scope::All);
        }
        let inner = self.inner.clone();
        tokio::spawn(async move {
            if !rejected.is_empty() {
                inner
                    .client
                    .show_message(
                        MessageType::WARNING,
                        format!("coverlay ignored invalid settings: {}", rejected.join(", ")),
                    )
                    .await;
            }
            let paths = inner.store.paths();
            inner.publish(&paths).await;
            inner.refresh();
        });
    }

    async fn inlay_hint(&self, params: InlayHintParams) -> Result<Option<Vec<InlayHint>>> {
        let path = self.inner.path_of(&params.text_document.uri)?;
        let settings = self.inner.settings();
        if !settings.inlay_hints || self.inner.excluded(&path) {
            return Ok(Some(Vec::new()));
        }
        let Some(file) = self.inner.store.file(&path) else {
            return Ok(Some(Vec::new()));
        };
        let tests = self.inner.store.tests();
        let cap = self.inner.store.count_cap();
        let hints = match self.inner.documents.get(&path) {
            Some(text) => hints::for_range(&file, &tests, &text, params.range, cap),
            None => match self.inner.text(&path) {
                Some(text) => hints::for_range(&file, &tests, &text, params.range, cap),
                None => Vec::new(),
            },
        };
        Ok(Some(hints))
    }

    async fn code_lens(&self, params: CodeLensParams) -> Result<Option<Vec<CodeLens>>> {
        let path = self.inner.path_of(&params.text_document.uri)?;
        if !self.inner.settings().code_lens || self.inner.excluded(&path) {
            return Ok(Some(Vec::new()));
        }
        let Some(file) = self.inner.store.file(&path) else {
            return Ok(Some(Vec::new()));
        };
        Ok(Some(lenses::for_file(&file, &self.inner.store.tests())))
    }

    async fn execute_command(&self, params: ExecuteCommandParams) -> Result<Option<Value>> {
        let action =
            commands::parse(&params.command, &params.arguments).map_err(Error::invalid_params)?;
        self.inner.execute(action).await
    }
}
