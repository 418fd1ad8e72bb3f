//! `coverlay lsp`: the language server over stdio. Protocol only: it shows what the store holds
//! and asks the scheduler for runs; nothing below this module knows LSP.
//!
//! - `server.rs`: the `LanguageServer` methods, each handed to `handlers/<family>.rs`
//! - `state.rs`: the global state handlers share; `store.rs`: the shown results, an immutable
//!   snapshot that runs and edits swap whole
//! - `runs.rs`: starting the workspace and applying run results, in order; `scheduler.rs` (one run
//!   at a time) and `watch.rs` (changes outside the editor) feed it
//! - `to_proto/`: shown results → protocol types (diagnostics, inlay hints, code lenses)
//! - `progress.rs`, `config.rs`, `documents.rs`: progress, settings, buffers
//! - `framing.rs`: frames from the client checked before the transport sees them

pub mod config;
pub mod documents;
pub mod framing;
pub mod handlers;
pub mod progress;
mod runs;
pub mod scheduler;
pub mod server;
pub mod state;
pub mod store;
pub mod to_proto;
pub mod watch;

use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use tower_lsp_server::{LspService, Server};

/// Serves LSP on stdin/stdout until `exit` (or the end of stdin), then stops every run.
pub fn run_stdio() -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(2);
        }
    };
    let inner = Arc::new(Mutex::new(None));
    runtime.block_on(async {
        let (service, socket) = LspService::build(|client| {
            let server = server::Server::new(client);
            *inner.lock().unwrap_or_else(|e| e.into_inner()) = Some(server.state());
            server
        })
        .custom_method(framing::MALFORMED, server::Server::malformed)
        .custom_method(
            to_proto::coverage::FILE_COVERAGE,
            server::Server::file_coverage,
        )
        .finish();
        // The transport ends the session at the first body it cannot decode: it reads checked
        // frames instead (see `framing`).
        let (checked, unchecked) = tokio::io::duplex(1 << 16);
        tokio::spawn(framing::sanitize(tokio::io::stdin(), unchecked));
        Server::new(checked, tokio::io::stdout(), socket)
            .serve(service)
            .await;
    });
    tracing::debug!("the client has gone");
    if let Some(inner) = inner.lock().unwrap_or_else(|e| e.into_inner()).take() {
        inner.stop();
    }
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    ExitCode::SUCCESS
}
