//! Writers for a finished run: lcov for other tools, JSON for scripts, a table for the terminal.

pub mod json;
pub mod lcov;
pub mod table;
