//! coverlay: live test coverage for Rust from a ptrace coverage engine.
//! The core (build, DWARF, source analysis, engine, results) knows nothing about LSP.

pub mod aggregate;
pub mod analysis;
pub mod cache;
pub mod cargo;
pub mod cli;
pub mod combine;
pub mod coverage;
pub mod depinfo;
pub mod doctests;
pub mod dwarf;
pub mod libtest;
pub mod lsp;
pub mod merge;
pub mod partition;
pub mod plan;
pub mod report;
pub mod run;
pub mod selection;
pub mod test_env;
pub mod testrun;

/// The ptrace coverage engine, a crate of its own (`server/engine`) whose tests need none of the
/// server's dependencies.
pub use coverlay_engine as engine;
pub use coverlay_engine::parallel;
