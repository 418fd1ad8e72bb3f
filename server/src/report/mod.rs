//! Writers for a finished run: lcov and Cobertura for other tools, JSON for scripts, a table for
//! the terminal, HTML for a browser.

pub mod cobertura;
pub mod html;
pub mod json;
pub mod lcov;
pub mod table;
