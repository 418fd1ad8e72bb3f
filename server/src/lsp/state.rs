//! The server's global state (`GlobalState`) and what every handler family needs from it: paths
//! and settings, buffers, pushing diagnostics, refresh requests, asking for runs, stopping.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use dashmap::DashMap;
use tokio::sync::mpsc;
use tower_lsp_server::jsonrpc::{Error, Result};
use tower_lsp_server::ls_types::*;
use tower_lsp_server::Client;

use super::config::Settings;
use super::documents::Document;
use super::to_proto::diagnostics;
use crate::cargo::Workspace;
use crate::lsp::scheduler::{Event, Scheduler, Scope};
use crate::lsp::store::Store;
use crate::lsp::watch;
use crate::selection::Selection;

/// How long a refresh request may wait for the client.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ClientSupport {
    pub(crate) progress: bool,
    pub(crate) inlay_hint_refresh: bool,
    pub(crate) code_lens_refresh: bool,
    /// The client resolves inlay hint tooltips lazily (`inlayHint/resolve`).
    pub(crate) resolve_tooltips: bool,
    /// The client declared `experimental.coverlay`: it gets `coverlay/didUpdate` and may ask
    /// `coverlay/fileCoverage` (see `to_proto::coverage`).
    pub(crate) coverlay: bool,
}

/// Everything the handlers share. The shown results (with the tests and the selection baseline)
/// are one immutable snapshot in `store`, swapped whole by runs and edits; the rest is what the
/// session was started with (client, support, root, workspace, settings), the open buffers, and
/// the machinery of runs (scheduler, watcher, the event channel applied in `runs.rs`).
pub struct GlobalState {
    pub(crate) client: Client,
    pub(crate) store: Store,
    pub(crate) documents: DashMap<PathBuf, Document>,
    pub(crate) settings: RwLock<Settings>,
    pub(crate) support: OnceLock<ClientSupport>,
    pub(crate) root: OnceLock<PathBuf>,
    pub(crate) workspace: OnceLock<Workspace>,
    pub(crate) scheduler: OnceLock<Scheduler>,
    pub(crate) watcher: Mutex<Option<watch::Watcher>>,
    pub(crate) events: mpsc::UnboundedSender<Event>,
    pub(crate) receiver: Mutex<Option<mpsc::UnboundedReceiver<Event>>>,
    /// The last message shown for a failed run: the same failure is not shown again on every save.
    pub(crate) last_failure: Mutex<Option<String>>,
    /// Short ids for file paths in inlay hint `data` (resolve requests name the file by id).
    pub(crate) file_ids: Mutex<Vec<PathBuf>>,
    pub(crate) stopped: AtomicBool,
}

impl GlobalState {
    pub(crate) fn settings(&self) -> Settings {
        self.settings
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn file_id(&self, path: &Path) -> usize {
        let mut ids = self.file_ids.lock().unwrap_or_else(|e| e.into_inner());
        ids.iter().position(|p| p == path).unwrap_or_else(|| {
            ids.push(path.to_path_buf());
            ids.len() - 1
        })
    }

    pub(crate) fn support(&self) -> ClientSupport {
        self.support.get().copied().unwrap_or_default()
    }

    /// The file a URI names, canonical when it exists. Errors for URIs that are not `file:`.
    pub(crate) fn path_of(&self, uri: &Uri) -> Result<PathBuf> {
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

    pub(crate) fn excluded(&self, path: &Path) -> bool {
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
    pub(crate) fn text(&self, path: &Path) -> Option<Document> {
        if let Some(doc) = self.documents.get(path) {
            return Some(doc.clone());
        }
        std::fs::read_to_string(path).ok().map(Document::new)
    }

    /// Pushes the diagnostics of `paths` (an empty list for files without results). They are
    /// computed off the async threads: files that are not open are read from disk for columns.
    pub(crate) async fn publish(self: &Arc<Self>, paths: Vec<PathBuf>) {
        let this = self.clone();
        let computed = tokio::task::spawn_blocking(move || this.diagnostics_of(&paths)).await;
        for (uri, diagnostics, version) in computed.unwrap_or_default() {
            self.client
                .publish_diagnostics(uri, diagnostics, version)
                .await;
        }
    }

    /// Diagnostics of each file, with the version of its open buffer they were computed for.
    pub(crate) fn diagnostics_of(
        &self,
        paths: &[PathBuf],
    ) -> Vec<(Uri, Vec<Diagnostic>, Option<i32>)> {
        let settings = self.settings();
        let shown = self.store.shown();
        paths
            .iter()
            .filter_map(|path| {
                let uri = Uri::from_file_path(path)?;
                let version = self.documents.get(path).and_then(|d| d.version);
                let diagnostics = match shown.file(path) {
                    Some(file) if !settings.is_excluded(path, self.root_or_slash()) => {
                        let text = self.text(path);
                        diagnostics::for_file(file, &shown.tests, text.as_ref(), &settings)
                    }
                    _ => Vec::new(),
                };
                Some((uri, diagnostics, version))
            })
            .collect()
    }

    pub(crate) fn root_or_slash(&self) -> &Path {
        self.root
            .get()
            .map(PathBuf::as_path)
            .unwrap_or(Path::new("/"))
    }

    /// Tells a client that speaks coverlay's protocol what the shown results are now.
    pub(crate) async fn notify_coverage(&self) {
        if self.support().coverlay {
            let update = super::to_proto::coverage::update(&self.store.shown());
            self.client
                .send_notification::<super::to_proto::coverage::DidUpdate>(update)
                .await;
        }
    }

    /// Asks the client to re-request hints and lenses, where it said it can.
    pub(crate) fn refresh(self: &Arc<Self>) {
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

    pub(crate) fn request_run(&self, scope: Scope) {
        if let Some(scheduler) = self.scheduler.get() {
            scheduler.request(scope);
        }
    }

    /// Asks for the run a selection calls for, if any.
    pub(crate) fn request_selected(&self, selection: Selection) {
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
        crate::lsp::scheduler::kill_descendants();
        tracing::debug!("stopped");
    }
}

impl GlobalState {
    pub fn new(client: Client) -> Self {
        let (events, receiver) = mpsc::unbounded_channel();
        Self {
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
            stopped: AtomicBool::new(false),
        }
    }
}
