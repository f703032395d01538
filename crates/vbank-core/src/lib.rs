#![doc = include_str!("../README.md")]

mod channel;
mod error;
mod message;
mod sheet;
#[cfg(test)]
mod tests;
mod waiver;

pub use channel::{
    ChainDuties, Channel, ChannelParams, ChannelState, Event, Funding, LiquidationSheet, LockChange, LockPolicy,
    MAX_CANCELLED, MAX_LOCKS, PaymentsOutcome, Phase, Reveal, STATE_VERSION, Settlement, Step, exchange,
};
pub use error::{Error, Result, Severity};
pub use message::{LockMove, MAX_ONION, Message, Onion};
pub use sheet::{
    BalanceSheet, Close, HashLock, Lock, PeerKey, Sig, Waiver, domain, locks_root, preimage_hash, recover,
    recover_hash, sign, sign_hash,
};
pub use waiver::{MAX_UPDATES, RevocationStore, WaiverChain, waiver_address, waiver_key};

/// Balances, deposits and payment amounts, in wei. The contract keeps the total below 2^128.
pub type Amount = u128;
