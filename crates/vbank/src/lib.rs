#![doc = include_str!("../README.md")]

mod chain;
mod node;

pub use chain::{ChainClock, ChainDriver, ChainEvent, DriverConfig, admission, funding_check, funding_of, watch};
pub use node::{Builder, Error, Node, Result, StoredEvent};
