//! One module per request family: each turns its LSP params into reads of the shown results or
//! requests for work, and the results back into LSP types (through `to_proto`).

pub mod commands;
pub mod coverage;
pub mod documents;
pub mod hints;
pub mod lenses;
pub mod lifecycle;
pub mod workspace;
