//! vbank client
