#![doc = include_str!("../README.md")]

mod anvil;
mod chain;
mod error;
mod factory;
mod onchain;
mod registry;
mod watcher;

pub use anvil::{LocalChain, find_anvil};
pub use chain::{Chain, increase_time};
pub use error::{Error, Result};
pub use factory::{Factory, OpenedChannel, deploy_factory};
pub use onchain::{ChannelInfo, LiquidationInfo, OnChain, OnChainState, TxReport};
pub use registry::Registry;
pub use watcher::{Punisher, WatchEvent, Watcher, WatcherHandle};
