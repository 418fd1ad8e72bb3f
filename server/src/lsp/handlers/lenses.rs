//! `textDocument/codeLens`: coverage over functions, outcome and rerun over tests.

use std::sync::Arc;

use tower_lsp_server::jsonrpc::Result;
use tower_lsp_server::ls_types::*;

use crate::lsp::state::GlobalState;
use crate::lsp::to_proto::lenses;

pub async fn code_lens(
    state: &Arc<GlobalState>,
    params: CodeLensParams,
) -> Result<Option<Vec<CodeLens>>> {
    let path = state.path_of(&params.text_document.uri)?;
    if !state.settings().code_lens || state.excluded(&path) {
        return Ok(Some(Vec::new()));
    }
    let shown = state.store.shown();
    let Some(file) = shown.file(&path) else {
        return Ok(Some(Vec::new()));
    };
    let started = std::time::Instant::now();
    let lenses = lenses::for_file(file, &shown.tests);
    tracing::debug!("{} code lenses in {:?}", lenses.len(), started.elapsed());
    Ok(Some(lenses))
}
