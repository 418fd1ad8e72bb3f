//! Shown results → LSP types: no state, no I/O.

pub mod coverage;
pub mod diagnostics;
pub mod hints;
pub mod lenses;
