//! vbank core
