#![doc = include_str!("../README.md")]

mod chain;
pub mod keys;
mod node;

pub use chain::{ChainClock, ChainDriver, ChainEvent, DriverConfig, admission, funding_check, funding_of, watch};
pub use node::{Builder, DEFAULT_MAX_LOCK, DEFAULT_MIN_LOCK, Error, Node, Result, StoredEvent};
