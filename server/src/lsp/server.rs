//! The `LanguageServer` implementation: each method hands its params to the handler of its
//! request family (`handlers/`), which reads the shown results or asks for work and returns.

use std::sync::Arc;

use serde_json::Value;
use tower_lsp_server::jsonrpc::{Error, Result};
use tower_lsp_server::ls_types::*;
use tower_lsp_server::{Client, LanguageServer};

use super::handlers::{commands, documents, hints, lenses, lifecycle, workspace};
use super::state::GlobalState;

pub struct Server {
    state: Arc<GlobalState>,
}

impl Server {
    pub fn new(client: Client) -> Self {
        Self {
            state: Arc::new(GlobalState::new(client)),
        }
    }

    pub fn state(&self) -> Arc<GlobalState> {
        self.state.clone()
    }

    /// `coverlay/fileCoverage` (see `handlers::coverage`).
    pub async fn file_coverage(
        &self,
        params: super::to_proto::coverage::FileCoverageParams,
    ) -> Result<super::to_proto::coverage::FileLines> {
        super::handlers::coverage::file_coverage(&self.state, params).await
    }

    /// The answer to a message the client sent malformed (see `framing`).
    pub async fn malformed(&self, params: Value) -> Result<Value> {
        Err(super::framing::error_of(&params))
    }
}

impl LanguageServer for Server {
    async fn initialize(&self, params: InitializeParams) -> Result<InitializeResult> {
        lifecycle::initialize(&self.state, params).await
    }

    async fn initialized(&self, params: InitializedParams) {
        lifecycle::initialized(&self.state, params).await
    }

    async fn shutdown(&self) -> Result<()> {
        lifecycle::shutdown(&self.state).await
    }

    async fn did_open(&self, params: DidOpenTextDocumentParams) {
        documents::did_open(&self.state, params).await
    }

    async fn did_change(&self, params: DidChangeTextDocumentParams) {
        documents::did_change(&self.state, params).await
    }

    async fn did_save(&self, params: DidSaveTextDocumentParams) {
        documents::did_save(&self.state, params).await
    }

    async fn did_close(&self, params: DidCloseTextDocumentParams) {
        documents::did_close(&self.state, params).await
    }

    async fn did_change_configuration(&self, params: DidChangeConfigurationParams) {
        workspace::did_change_configuration(&self.state, params).await
    }

    async fn inlay_hint(&self, params: InlayHintParams) -> Result<Option<Vec<InlayHint>>> {
        hints::inlay_hint(&self.state, params).await
    }

    async fn inlay_hint_resolve(&self, hint: InlayHint) -> Result<InlayHint> {
        hints::inlay_hint_resolve(&self.state, hint).await
    }

    async fn code_lens(&self, params: CodeLensParams) -> Result<Option<Vec<CodeLens>>> {
        lenses::code_lens(&self.state, params).await
    }

    async fn execute_command(&self, params: ExecuteCommandParams) -> Result<Option<Value>> {
        let action =
            commands::parse(&params.command, &params.arguments).map_err(Error::invalid_params)?;
        self.state.execute(action).await
    }
}
