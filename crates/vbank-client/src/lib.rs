#![doc = include_str!("../README.md")]

mod anvil;
mod chain;
mod error;
mod onchain;
mod watcher;

pub use anvil::{LocalChain, find_anvil};
pub use chain::{Chain, increase_time};
pub use error::{Error, Result};
pub use onchain::{ChannelInfo, LiquidationInfo, OnChain, OnChainState, TxReport, deploy};
pub use watcher::{Punisher, WatchEvent, Watcher, WatcherHandle};
