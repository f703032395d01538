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

/// Delivers `frames` (each with the index of its sender: 0 Alice, 1 Bob) and everything they
/// cause, until quiet.
#[allow(dead_code)]
pub(crate) fn exchange<A: vbank_node::Store, B: vbank_node::Store>(
    alice: &mut vbank_node::Node<A>,
    bob: &mut vbank_node::Node<B>,
    mut frames: Vec<(usize, vbank_node::Frame)>,
) {
    let addr = [key(1).address(), key(2).address()];
    while let Some((from, f)) = frames.pop() {
        let out = if from == 0 { bob.respond(addr[0], &f) } else { alice.respond(addr[1], &f) };
        let (out, _) = out.expect("respond");
        frames.extend(out.into_iter().map(|o| (1 - from, o)));
    }
}
