#![doc = include_str!("../README.md")]

mod chain;
pub mod keys;
mod node;

pub use chain::{
    ChainClock, ChainDriver, ChainEvent, DriverConfig, admission, describe_settlement, funding_check, funding_of,
    settle_on_chain, watch,
};
pub use node::{Builder, DEFAULT_MAX_LOCK, DEFAULT_MIN_LOCK, Error, Node, Result, StoredEvent};
