//! Buffers: `didOpen`, `didChange` (incremental: the overlay moves with each change), `didSave`
//! (the tests the save can affect rerun) and `didClose`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tower_lsp_server::ls_types::*;

use crate::lsp::documents::{self, Document};
use crate::lsp::scheduler::Scope;
use crate::lsp::state::GlobalState;
use crate::selection::Selection;

pub async fn did_open(state: &Arc<GlobalState>, params: DidOpenTextDocumentParams) {
    let Ok(path) = state.path_of(&params.text_document.uri) else {
        return;
    };
    let mut document = Document::new(params.text_document.text);
    document.version = Some(params.text_document.version);
    state.documents.insert(path.clone(), document);
    // Ranges now fit the buffer's text.
    if state.store.shown().file(&path).is_some() {
        let inner = state.clone();
        tokio::spawn(async move { inner.publish(vec![path]).await });
    }
}

pub async fn did_change(state: &Arc<GlobalState>, params: DidChangeTextDocumentParams) {
    let Ok(path) = state.path_of(&params.text_document.uri) else {
        return;
    };
    // Changes apply in order, each to the text the one before left; the results move with
    // each of them.
    let mut moved = false;
    {
        let Some(mut document) = state.documents.get_mut(&path) else {
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
                moved |= state.store.shift_lines(&path, first, removed, inserted);
            }
        }
    }
    if moved {
        let inner = state.clone();
        tokio::spawn(async move { inner.publish(vec![path]).await });
    }
}

pub async fn did_save(state: &Arc<GlobalState>, params: DidSaveTextDocumentParams) {
    let Ok(path) = state.path_of(&params.text_document.uri) else {
        return;
    };
    let inside = state.root.get().is_some_and(|root| path.starts_with(root));
    if !inside {
        return;
    }
    let text = match params.text {
        Some(text) => Some(text),
        None => match state.documents.get(&path) {
            Some(document) => Some(document.text.clone()),
            None => std::fs::read_to_string(&path).ok(),
        },
    };
    saved(state, path, text).await;
}

pub async fn did_close(state: &Arc<GlobalState>, params: DidCloseTextDocumentParams) {
    if let Ok(path) = state.path_of(&params.text_document.uri) {
        state.documents.remove(&path);
    }
}

/// Reruns what a saved file can affect: the tests selected against the baseline, every test
/// without one (when the file is a build input), or nothing.
async fn saved(state: &Arc<GlobalState>, path: PathBuf, text: Option<String>) {
    let baseline = state.store.shown().baseline.clone();
    let Some(baseline) = baseline else {
        if is_build_input(&path) {
            state.request_run(Scope::All);
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
        state.save_store().await;
    }
    tracing::info!("{message}");
    state.client.log_message(MessageType::INFO, message).await;
    state.request_selected(selection);
}

fn is_build_input(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name.ends_with(".rs") || name == "Cargo.toml" || name == "Cargo.lock"
}
