#![doc = include_str!("../README.md")]

mod chain;

pub use chain::{ChainClock, ChainDriver, ChainEvent, DriverConfig, admission, funding_check, funding_of, watch};
