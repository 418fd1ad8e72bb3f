//! `coverlay/fileCoverage`: one file's lines and functions with their hits, for all tests or one
//! (for clients that declared `experimental.coverlay`; see `to_proto::coverage`).

use std::sync::Arc;

use tower_lsp_server::jsonrpc::{Error, Result};

use crate::lsp::state::GlobalState;
use crate::lsp::to_proto::coverage::{self, FileCoverageParams, FileLines};

pub async fn file_coverage(
    state: &Arc<GlobalState>,
    params: FileCoverageParams,
) -> Result<FileLines> {
    if !state.support().coverlay {
        return Err(Error::method_not_found());
    }
    let path = state.path_of(&params.uri)?;
    let shown = state.store.shown();
    if let Some(id) = &params.test_id {
        if !shown.tests.list.iter().any(|t| &t.id == id) {
            return Err(Error::invalid_params(format!(
                "no test {id:?} in the shown results"
            )));
        }
    }
    Ok(
        coverage::file_lines(&shown, &path, params.test_id.as_deref()).unwrap_or(FileLines {
            uri: params.uri.as_str().to_owned(),
            lines: Vec::new(),
            functions: Vec::new(),
        }),
    )
}
