#![doc = include_str!("../README.md")]

mod chain;
mod client;
mod flows;
pub mod keys;
mod node;

pub use chain::{
    ChainClock, ChainDriver, ChainEvent, DriverConfig, admission, describe_settlement, funding_check, funding_of,
    settle_on_chain, watch,
};
/// The types this API takes and returns, from the crates underneath.
pub use vbank_client::{Chain, Factory, LocalChain, OnChain, OnChainState, TxReport, WatchEvent, deploy_factory};
pub use vbank_core::{Amount, ChannelParams, Event as ChannelEvent, Funding, HashLock, LockChange, Settlement};
pub use vbank_node::{
    ChannelStatus, ControlClient, Error as NodeError, ForwardFees, NodeUri, Notice, Paid, Payment, PaymentStatus,
    Terms, control_path,
    network::{Announcement, GraphChannel, Invoice},
};

pub use client::{Client, Progress, ProgressFn, Status, StoreStatus, read_status};
pub use flows::{
    CloseOptions, CloseOutcome, CloseReport, ConfirmFn, OpenOptions, OpenReport, TermsRefusal, check_terms, deposit,
};
pub use node::{Builder, ChainRecord, DEFAULT_MAX_LOCK, DEFAULT_MIN_LOCK, Error, Event, Node, Result, StoredEvent};

/// An amount of wei as ETH, as a person reads it: "1.5 ETH", "0.000000001 ETH".
pub fn format_eth(wei: vbank_core::Amount) -> String {
    let s = alloy::primitives::utils::format_ether(alloy::primitives::U256::from(wei));
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s} ETH")
}
