//! Messages between the two parties of a channel.

use alloy_primitives::{Address, B256};
use serde::{Deserialize, Serialize};

use crate::{Amount, HashLock, Sig};

/// A change to the hash-time locks in an update, made by the proposer P and checked by the
/// countersigner R before it signs (DESIGN §2 rule 3, moves b–e; move a, a payment, is the
/// balance difference left once the lock moves are applied).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LockMove {
    /// (b) P locks `amount` of its balance to R, until `expiry`, on `hash`.
    Add(HashLock),
    /// (c) P, the lock's receiver, claims it with its preimage: amount to P's balance.
    Fulfil {
        /// The lock.
        lock: HashLock,
        /// Its preimage: `sha256(preimage) == lock.hash`.
        preimage: B256,
    },
    /// (d) P, the lock's receiver, gives it up: amount back to R, its sender.
    Release(HashLock),
    /// (e) A lock P sent to R expired unclaimed: amount back to P.
    Expire(HashLock),
}

impl LockMove {
    /// The lock moved.
    pub fn lock(&self) -> &HashLock {
        match self {
            Self::Add(l) | Self::Release(l) | Self::Expire(l) | Self::Fulfil { lock: l, .. } => l,
        }
    }
}

/// The routing instructions of a lock added in a proposal (an onion packet, opaque to the
/// channel: the node of the lock's receiver peels it once the lock is irrevocably its own).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Onion {
    /// The added lock it belongs to.
    pub lock: HashLock,
    /// The packet.
    pub packet: alloy_primitives::Bytes,
}

/// The largest onion packet a proposal may carry (bytes).
pub const MAX_ONION: usize = 4096;

/// One protocol message. An update from nonce `n` to `n + 1`, proposed by the payer P to the
/// receiver R, takes four: `Propose` (P→R), `Countersign` (R→P), `Commit` (P→R), `Revoke` (R→P).
/// Opening is the same flow at nonce 0, proposed by party 0, with nothing to revoke.
///
/// A *signed* proposal takes three: P, which proposed the latest sheet too, signs R's sheet
/// `n + 1` in its `Propose` (it learnt R's waiver address for it from R's last `Countersign`,
/// field `next`); R countersigns and revokes its sheet `n` in one `Countersign`; P answers with
/// the `Revoke` of its sheet `n`, which a node sends in the same frame as P's next proposal. A
/// signed proposal carries payments only and is never withdrawn (see `PROTOCOL.md`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Message {
    /// P proposes sheet `nonce` with `balances`; `waiver` is P's waiver address for its own sheet.
    Propose {
        /// The new nonce: the current one plus one (0 when opening).
        nonce: u64,
        /// Party 0's and party 1's balances in the new sheet.
        balances: [Amount; 2],
        /// The proposer's waiver address for its sheet `nonce`.
        waiver: Address,
        /// The new sheet's locks: the current ones less those the moves remove, then those
        /// they add, in that order.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        locks: Vec<HashLock>,
        /// The lock moves from the current sheet; what is left of the change in balances is a
        /// payment from P to R.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        moves: Vec<LockMove>,
        /// Routing instructions for some of the added locks (at most one per lock).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        onions: Vec<Onion>,
        /// P's signature over R's sheet `nonce` (a signed proposal: R answers with its
        /// countersignature and its revocation together).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signature: Option<Sig>,
    },
    /// R countersigns P's sheet `nonce` and names its own waiver address for its sheet `nonce`.
    Countersign {
        /// The proposed nonce.
        nonce: u64,
        /// R's signature over P's sheet.
        signature: Sig,
        /// R's waiver address for its own sheet `nonce`.
        waiver: Address,
        /// R's waiver secret for its sheet `nonce - 1`, when answering a signed proposal (R holds
        /// P's signature over its sheet `nonce`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        revocation: Option<B256>,
        /// R's waiver address for its sheet `nonce + 1`: what P needs to sign R's next sheet in a
        /// signed proposal.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        next: Option<Address>,
    },
    /// P countersigns R's sheet `nonce` and reveals the waiver secret of its sheet `nonce - 1`.
    Commit {
        /// The new nonce.
        nonce: u64,
        /// P's signature over R's sheet.
        signature: Sig,
        /// P's waiver secret for sheet `nonce - 1` (none when opening).
        revocation: Option<B256>,
    },
    /// R reveals the waiver secret of its sheet `nonce` (the one before the new sheet); after a
    /// signed proposal, P does.
    Revoke {
        /// The revoked nonce.
        nonce: u64,
        /// R's waiver secret for that sheet.
        secret: B256,
    },
    /// A party asks to close cooperatively at its current state and signs the `Close`.
    CloseRequest {
        /// The current nonce.
        nonce: u64,
        /// The current balances.
        balances: [Amount; 2],
        /// The sender's signature over `Close(nonce, balance0, balance1)`.
        signature: Sig,
    },
    /// The other party signs the same `Close`.
    CloseAccept {
        /// The nonce closed at.
        nonce: u64,
        /// The sender's signature over the `Close`.
        signature: Sig,
    },
}

impl Message {
    /// The message kind, for errors and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Propose { .. } => "propose",
            Self::Countersign { .. } => "countersign",
            Self::Commit { .. } => "commit",
            Self::Revoke { .. } => "revoke",
            Self::CloseRequest { .. } => "close_request",
            Self::CloseAccept { .. } => "close_accept",
        }
    }

    /// A digest of the message (keccak256 of its JSON form), by which a refusal names the message
    /// it refuses.
    pub fn digest(&self) -> B256 {
        alloy_primitives::keccak256(serde_json::to_vec(self).unwrap_or_default())
    }

    /// The nonce the message is about.
    pub fn nonce(&self) -> u64 {
        match self {
            Self::Propose { nonce, .. }
            | Self::Countersign { nonce, .. }
            | Self::Commit { nonce, .. }
            | Self::Revoke { nonce, .. }
            | Self::CloseRequest { nonce, .. }
            | Self::CloseAccept { nonce, .. } => *nonce,
        }
    }
}
