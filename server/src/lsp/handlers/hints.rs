//! `textDocument/inlayHint` and `inlayHint/resolve`: hit counts at the end of covered lines.

use std::sync::Arc;

use tower_lsp_server::jsonrpc::Result;
use tower_lsp_server::ls_types::*;

use crate::lsp::state::GlobalState;
use crate::lsp::to_proto::hints;

pub async fn inlay_hint(
    state: &Arc<GlobalState>,
    params: InlayHintParams,
) -> Result<Option<Vec<InlayHint>>> {
    let started = std::time::Instant::now();
    let path = state.path_of(&params.text_document.uri)?;
    let settings = state.settings();
    if !settings.inlay_hints || state.excluded(&path) {
        return Ok(Some(Vec::new()));
    }
    let shown = state.store.shown();
    let Some(file) = shown.file(&path) else {
        return Ok(Some(Vec::new()));
    };
    let tests = &shown.tests;
    let lazy = state
        .support()
        .resolve_tooltips
        .then(|| state.file_id(&path));
    let hints = match state.documents.get(&path) {
        Some(text) => hints::for_range(file, tests, &text, params.range, lazy),
        None => match state.text(&path) {
            Some(text) => hints::for_range(file, tests, &text, params.range, lazy),
            None => Vec::new(),
        },
    };
    tracing::debug!("{} inlay hints in {:?}", hints.len(), started.elapsed());
    Ok(Some(hints))
}

pub async fn inlay_hint_resolve(state: &Arc<GlobalState>, hint: InlayHint) -> Result<InlayHint> {
    let path = hints::resolve_target(&hint).and_then(|(id, _)| {
        let ids = state.file_ids.lock().unwrap_or_else(|e| e.into_inner());
        ids.get(id).cloned()
    });
    let Some(path) = path else {
        return Ok(hint);
    };
    let shown = state.store.shown();
    let Some(file) = shown.file(&path) else {
        return Ok(hint);
    };
    Ok(hints::resolve(hint, file, &shown.tests))
}
