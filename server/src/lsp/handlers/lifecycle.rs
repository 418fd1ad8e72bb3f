//! `initialize` (what the client supports, the workspace root, the capabilities offered),
//! `initialized` (the workspace starts) and `shutdown`.

use std::sync::Arc;

use tower_lsp_server::jsonrpc::Result;
use tower_lsp_server::ls_types::*;

use crate::lsp::handlers::commands;
use crate::lsp::state::{ClientSupport, GlobalState};
use crate::lsp::to_proto::coverage;

pub async fn initialize(
    state: &Arc<GlobalState>,
    params: InitializeParams,
) -> Result<InitializeResult> {
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
        coverlay: caps
            .experimental
            .as_ref()
            .and_then(|e| e.get(coverage::CAPABILITY))
            .is_some_and(|v| !v.is_null() && v != &serde_json::Value::Bool(false)),
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
    let _ = state.support.set(support);
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
        let _ = state.root.set(root.canonicalize().unwrap_or(root));
    }
    if let Some(options) = &params.initialization_options {
        let rejected = state
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

pub async fn initialized(state: &Arc<GlobalState>, _: InitializedParams) {
    let receiver = state
        .receiver
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take();
    if let Some(receiver) = receiver {
        tokio::spawn(state.clone().consume_events(receiver));
    }
    if let Some(root) = state.root.get().cloned() {
        tokio::spawn(state.clone().start(root));
    }
}

pub async fn shutdown(state: &Arc<GlobalState>) -> Result<()> {
    let inner = state.clone();
    let _ = tokio::task::spawn_blocking(move || inner.stop()).await;
    Ok(())
}
