//! The `coverlay` binary: `coverlay run` measures a workspace once, `coverlay lsp` serves editors.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("COVERLAY_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .init();
    coverlay::cli::main(coverlay::cli::Cli::parse())
}
