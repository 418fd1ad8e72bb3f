//! DWARF line tables (being written).
