//! The LSP handlers and the state they share (`Inner`). Handlers read the store or enqueue work and
//! return; runs happen on the scheduler's thread and their results are applied in `runs.rs`.

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

use super::commands;
use super::config::Settings;
use super::documents::{self, Document};
use super::{diagnostics, hints, lenses};
use crate::cargo::Workspace;
use crate::scheduler::{Event, Scheduler, Scope};
use crate::selection::{Baseline, Selection};
use crate::store::Store;
use crate::watch;

/// How long a refresh request may wait for the client.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, Debug, Default)]
pub(super) struct ClientSupport {
    pub(super) progress: bool,
    pub(super) inlay_hint_refresh: bool,
    pub(super) code_lens_refresh: bool,
    /// The client resolves inlay hint tooltips lazily (`inlayHint/resolve`).
    pub(super) resolve_tooltips: bool,
}

pub struct Inner {
    pub(super) client: Client,
    pub(super) store: Store,
    pub(super) documents: DashMap<PathBuf, Document>,
    pub(super) settings: RwLock<Settings>,
    pub(super) support: OnceLock<ClientSupport>,
    pub(super) root: OnceLock<PathBuf>,
    pub(super) workspace: OnceLock<Workspace>,
    pub(super) scheduler: OnceLock<Scheduler>,
    pub(super) watcher: Mutex<Option<watch::Watcher>>,
    pub(super) events: mpsc::UnboundedSender<Event>,
    pub(super) receiver: Mutex<Option<mpsc::UnboundedReceiver<Event>>>,
    /// The last message shown for a failed run: the same failure is not shown again on every save.
    pub(super) last_failure: Mutex<Option<String>>,
    /// Short ids for file paths in inlay hint `data` (resolve requests name the file by id).
    pub(super) file_ids: Mutex<Vec<PathBuf>>,
    /// What the shown results were built from and what each test ran: saves are compared with it
    /// to rerun only the tests they can affect. `None` until a run with sources finishes.
    pub(super) baseline: Mutex<Option<Arc<Baseline>>>,
    pub(super) stopped: AtomicBool,
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
                file_ids: Mutex::new(Vec::new()),
                last_failure: Mutex::new(None),
                baseline: Mutex::new(None),
                stopped: AtomicBool::new(false),
            }),
        }
    }

    pub fn inner(&self) -> Arc<Inner> {
        self.inner.clone()
    }

    /// The answer to a message the client sent malformed (see `framing`).
    pub async fn malformed(&self, params: Value) -> Result<Value> {
        Err(super::framing::error_of(&params))
    }
}

impl Inner {
    pub(super) fn settings(&self) -> Settings {
        self.settings
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(super) fn file_id(&self, path: &Path) -> usize {
        let mut ids = self.file_ids.lock().unwrap_or_else(|e| e.into_inner());
        ids.iter().position(|p| p == path).unwrap_or_else(|| {
            ids.push(path.to_path_buf());
            ids.len() - 1
        })
    }

    pub(super) fn support(&self) -> ClientSupport {
        self.support.get().copied().unwrap_or_default()
    }

    /// The file a URI names, canonical when it exists. Errors for URIs that are not `file:`.
    pub(super) fn path_of(&self, uri: &Uri) -> Result<PathBuf> {
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

    pub(super) fn excluded(&self, path: &Path) -> bool {
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
    pub(super) fn text(&self, path: &Path) -> Option<Document> {
        if let Some(doc) = self.documents.get(path) {
            return Some(doc.clone());
        }
        std::fs::read_to_string(path).ok().map(Document::new)
    }

    /// Pushes the diagnostics of `paths` (an empty list for files without results). They are
    /// computed off the async threads: files that are not open are read from disk for columns.
    pub(super) async fn publish(self: &Arc<Self>, paths: Vec<PathBuf>) {
        let this = self.clone();
        let computed = tokio::task::spawn_blocking(move || this.diagnostics_of(&paths)).await;
        for (uri, diagnostics, version) in computed.unwrap_or_default() {
            self.client
                .publish_diagnostics(uri, diagnostics, version)
                .await;
        }
    }

    /// Diagnostics of each file, with the version of its open buffer they were computed for.
    pub(super) fn diagnostics_of(
        &self,
        paths: &[PathBuf],
    ) -> Vec<(Uri, Vec<Diagnostic>, Option<i32>)> {
        let settings = self.settings();
        let tests = self.store.tests();
        paths
            .iter()
            .filter_map(|path| {
                let uri = Uri::from_file_path(path)?;
                let version = self.documents.get(path).and_then(|d| d.version);
                let diagnostics = match self.store.file(path) {
                    Some(file) if !settings.is_excluded(path, self.root_or_slash()) => {
                        let text = self.text(path);
                        diagnostics::for_file(&file, &tests, text.as_ref(), &settings)
                    }
                    _ => Vec::new(),
                };
                Some((uri, diagnostics, version))
            })
            .collect()
    }

    pub(super) fn root_or_slash(&self) -> &Path {
        self.root
            .get()
            .map(PathBuf::as_path)
            .unwrap_or(Path::new("/"))
    }

    /// Asks the client to re-request hints and lenses, where it said it can.
    pub(super) fn refresh(self: &Arc<Self>) {
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

    pub(super) fn request_run(&self, scope: Scope) {
        if let Some(scheduler) = self.scheduler.get() {
            scheduler.request(scope);
        }
    }

    /// Reruns what a saved file can affect: the tests selected against the baseline, every test
    /// without one (when the file is a build input), or nothing.
    pub(super) async fn saved(self: &Arc<Self>, path: PathBuf, text: Option<String>) {
        let baseline = self
            .baseline
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let Some(baseline) = baseline else {
            if is_build_input(&path) {
                self.request_run(Scope::All);
            }
            return;
        };
        let selecting = std::time::Instant::now();
        let selection = baseline.select(&[(path.clone(), text)]);
        let took = selecting.elapsed().as_secs_f64() * 1000.0;
        let shown = path.display();
        let message = match &selection {
            Selection::Nothing => format!("{shown}: no test can be affected; nothing to rerun"),
            Selection::Tests(filter) if filter.packages.is_empty() => format!(
                "{shown}: rerunning {} of {} tests",
                baseline.selected(filter),
                baseline.tests.len()
            ),
            Selection::Tests(filter) => format!(
                "{shown}: rerunning {} of {} tests (every test of {})",
                baseline.selected(filter),
                baseline.tests.len(),
                filter.packages.join(", ")
            ),
            Selection::All(why) => format!("{shown}: rerunning every test ({why})"),
        };
        let message = format!("{message} (selected in {took:.1} ms)");
        if selection == Selection::Nothing {
            // The results moved with the edit and stay valid: what is saved must move too.
            self.save_store().await;
        }
        tracing::info!("{message}");
        self.client.log_message(MessageType::INFO, message).await;
        match selection {
            Selection::Nothing => {}
            Selection::Tests(filter) => self.request_run(Scope::Tests(filter)),
            Selection::All(_) => self.request_run(Scope::All),
        }
    }

    /// Stops runs (killing what they started) and the watcher. Idempotent.
    pub fn stop(&self) {
        tracing::debug!("stopping");
        self.stopped.store(true, Ordering::Release);
        self.watcher
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        tracing::debug!("watcher stopped");
        // The processes a run started are killed at once; the run's thread (at a low priority)
        // gets a moment to wind down, and is left to the process exit after that.
        if let Some(scheduler) = self.scheduler.get() {
            scheduler.stop(Duration::from_secs(3));
        }
        crate::scheduler::kill_descendants();
        tracing::debug!("stopped");
    }
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
            resolve_tooltips: false,
        };
        let support = ClientSupport {
            resolve_tooltips: caps
                .text_document
                .as_ref()
                .and_then(|t| t.inlay_hint.as_ref())
                .and_then(|h| h.resolve_support.as_ref())
                .is_some_and(|r| r.properties.iter().any(|p| p == "tooltip")),
            ..support
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
                        change: Some(TextDocumentSyncKind::INCREMENTAL),
                        save: Some(TextDocumentSyncSaveOptions::Supported(true)),
                        ..TextDocumentSyncOptions::default()
                    },
                )),
                inlay_hint_provider: Some(OneOf::Right(InlayHintServerCapabilities::Options(
                    InlayHintOptions {
                        work_done_progress_options: WorkDoneProgressOptions::default(),
                        resolve_provider: Some(true),
                    },
                ))),
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
        let mut document = Document::new(params.text_document.text);
        document.version = Some(params.text_document.version);
        self.inner.documents.insert(path.clone(), document);
        // Ranges now fit the buffer's text.
        if self.inner.store.file(&path).is_some() {
            let inner = self.inner.clone();
            tokio::spawn(async move { inner.publish(vec![path]).await });
        }
    }

    async fn did_change(&self, params: DidChangeTextDocumentParams) {
        let Ok(path) = self.inner.path_of(&params.text_document.uri) else {
            return;
        };
        // Changes apply in order, each to the text the one before left; the results move with
        // each of them.
        let mut moved = false;
        {
            let Some(mut document) = self.inner.documents.get_mut(&path) else {
                return;
            };
            document.version = Some(params.text_document.version);
            for change in params.content_changes {
                let range = change.range.map(|r| {
                    let position = |p: tower_lsp_server::ls_types::Position| documents::Position {
                        line: p.line,
                        character: p.character,
                    };
                    (position(r.start), position(r.end))
                });
                if let Some((first, removed, inserted)) = document.apply(range, &change.text) {
                    moved |= self
                        .inner
                        .store
                        .shift_lines(&path, first, removed, inserted);
                }
            }
        }
        if moved {
            let inner = self.inner.clone();
            tokio::spawn(async move { inner.publish(vec![path]).await });
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
        if !inside {
            return;
        }
        let text = match params.text {
            Some(text) => Some(text),
            None => match self.inner.documents.get(&path) {
                Some(document) => Some(document.text.clone()),
                None => std::fs::read_to_string(&path).ok(),
            },
        };
        self.inner.saved(path, text).await;
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
            inner.publish(paths).await;
            inner.refresh();
        });
    }

    async fn inlay_hint(&self, params: InlayHintParams) -> Result<Option<Vec<InlayHint>>> {
        let started = std::time::Instant::now();
        let path = self.inner.path_of(&params.text_document.uri)?;
        let settings = self.inner.settings();
        if !settings.inlay_hints || self.inner.excluded(&path) {
            return Ok(Some(Vec::new()));
        }
        let Some(file) = self.inner.store.file(&path) else {
            return Ok(Some(Vec::new()));
        };
        let tests = self.inner.store.tests();
        let lazy = self
            .inner
            .support()
            .resolve_tooltips
            .then(|| self.inner.file_id(&path));
        let hints = match self.inner.documents.get(&path) {
            Some(text) => hints::for_range(&file, &tests, &text, params.range, lazy),
            None => match self.inner.text(&path) {
                Some(text) => hints::for_range(&file, &tests, &text, params.range, lazy),
                None => Vec::new(),
            },
        };
        tracing::debug!("{} inlay hints in {:?}", hints.len(), started.elapsed());
        Ok(Some(hints))
    }

    async fn inlay_hint_resolve(&self, hint: InlayHint) -> Result<InlayHint> {
        let path = hints::resolve_target(&hint).and_then(|(id, _)| {
            let ids = self
                .inner
                .file_ids
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            ids.get(id).cloned()
        });
        let Some(path) = path else {
            return Ok(hint);
        };
        let Some(file) = self.inner.store.file(&path) else {
            return Ok(hint);
        };
        Ok(hints::resolve(hint, &file, &self.inner.store.tests()))
    }

    async fn code_lens(&self, params: CodeLensParams) -> Result<Option<Vec<CodeLens>>> {
        let path = self.inner.path_of(&params.text_document.uri)?;
        if !self.inner.settings().code_lens || self.inner.excluded(&path) {
            return Ok(Some(Vec::new()));
        }
        let Some(file) = self.inner.store.file(&path) else {
            return Ok(Some(Vec::new()));
        };
        let started = std::time::Instant::now();
        let lenses = lenses::for_file(&file, &self.inner.store.tests());
        tracing::debug!("{} code lenses in {:?}", lenses.len(), started.elapsed());
        Ok(Some(lenses))
    }

    async fn execute_command(&self, params: ExecuteCommandParams) -> Result<Option<Value>> {
        let action =
            commands::parse(&params.command, &params.arguments).map_err(Error::invalid_params)?;
        self.inner.execute(action).await
    }
}
