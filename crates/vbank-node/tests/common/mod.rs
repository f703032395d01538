//! Keys and channel parameters shared by the node's integration tests.

use alloy_primitives::{Address, B256};
use alloy_signer_local::PrivateKeySigner;
use vbank_core::ChannelParams;

/// The test key `n` (1: Alice, party 0; 2: Bob, party 1).
pub(crate) fn key(n: u8) -> PrivateKeySigner {
    PrivateKeySigner::from_bytes(&B256::with_last_byte(n)).expect("key")
}

/// A channel between keys 1 and 2 at `Address::repeat_byte(contract)`, 10^6 wei each.
pub(crate) fn params(contract: u8) -> ChannelParams {
    ChannelParams {
        chain_id: 31337,
        contract: Address::repeat_byte(contract),
        parties: [key(1).address(), key(2).address()],
        deposits: [1_000_000, 1_000_000],
        lock_period: 3600,
        token: Address::ZERO,
        salt: B256::ZERO,
    }
}
