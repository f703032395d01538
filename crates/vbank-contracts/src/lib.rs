//! vbank contracts
