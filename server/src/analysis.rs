//! Source analysis (being written).
