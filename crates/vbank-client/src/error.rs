//! Errors of the on-chain client.

use alloy::primitives::{Address, Bytes};
use vbank_contracts::Revert;

/// Errors of the on-chain client.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No anvil binary was found.
    #[error("anvil not found: {0}")]
    AnvilNotFound(String),
    /// anvil could not be started.
    #[error("could not start anvil: {0}")]
    Anvil(String),
    /// The RPC endpoint does not answer.
    #[error("RPC endpoint {url} is unreachable: {reason}")]
    Unreachable {
        /// The endpoint.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The RPC endpoint serves another chain than expected.
    #[error("RPC endpoint serves chain {actual}, expected chain {expected}")]
    WrongChain {
        /// The chain id asked for.
        expected: u64,
        /// The chain id the node reports.
        actual: u64,
    },
    /// An RPC call failed (connection dropped, node error).
    #[error("RPC error: {0}")]
    Rpc(String),
    /// The contract reverted with one of its custom errors.
    #[error("the contract refused: {0}")]
    Reverted(Revert),
    /// The contract reverted with data that is not one of its errors.
    #[error("the transaction reverted (data {0})")]
    RevertedRaw(Bytes),
    /// A transaction was mined but failed.
    #[error("transaction {0} failed on-chain")]
    Failed(String),
    /// Refused locally before sending: the contract would revert.
    #[error("refused before sending: {0}")]
    Precheck(String),
    /// No contract at the address, or not a VirtualBank.
    #[error("no VirtualBank at {0}")]
    NotAChannel(Address),
    /// The address is not the canonical factory's channel for the agreed parameters.
    #[error(
        "the contract at {0} is not a genuine VirtualBank: the canonical factory's channelAddress for the agreed \
         parameters is another address"
    )]
    NotGenuine(Address),
    /// The canonical factory is not deployed on this chain.
    #[error("the VirtualBank factory is not deployed at {0} on this chain: run `vbank deploy-factory`")]
    NoFactory(Address),
    /// The standard CREATE2 deployer is missing, so the factory cannot be deployed at its address.
    #[error(
        "the standard CREATE2 deployer {0} is not on this chain: the factory cannot be deployed at its canonical \
         address"
    )]
    NoDeployer(Address),
    /// A protocol-core error.
    #[error(transparent)]
    Protocol(#[from] vbank_core::Error),
    /// A contracts-crate error.
    #[error(transparent)]
    Contracts(#[from] vbank_contracts::Error),
}

impl Error {
    /// Classifies an alloy contract error: a decoded revert, raw revert data, or an RPC failure.
    pub(crate) fn from_contract(e: alloy::contract::Error) -> Self {
        if let Some(decoded) = e.as_decoded_interface_error::<vbank_contracts::VirtualBank::VirtualBankErrors>() {
            return Self::Reverted(Revert::Channel(decoded));
        }
        if let Some(decoded) =
            e.as_decoded_interface_error::<vbank_contracts::VirtualBankFactory::VirtualBankFactoryErrors>()
        {
            return Self::Reverted(Revert::Factory(decoded));
        }
        if let Some(data) = e.as_revert_data() {
            return Self::RevertedRaw(data);
        }
        Self::Rpc(e.to_string())
    }

    /// The decoded revert, if the contract refused.
    pub fn revert(&self) -> Option<&Revert> {
        match self {
            Self::Reverted(r) => Some(r),
            _ => None,
        }
    }
}

/// Result with the client's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
