//! Errors of the protocol core.

use alloy_primitives::Address;

/// What a party should do about an [`Error`] caused by a peer's message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// Harmless (a replay, a conflict the tie-break resolves): drop the message.
    Ignore,
    /// The message is bad; the channel stays at its last valid state and can go on.
    Reject,
    /// The peer broke the protocol in a way that proves bad faith or a broken peer: close on-chain
    /// with the latest sheet (DESIGN §2 rule 5).
    Close,
}

/// Errors of the protocol core. A message that fails validation changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The message's nonce is not the one this step expects.
    #[error("wrong nonce: expected {expected}, got {got}")]
    WrongNonce {
        /// The nonce expected.
        expected: u64,
        /// The nonce received.
        got: u64,
    },
    /// The balances do not add up to the channel's total deposits.
    #[error("balances add up to {sum:?} wei, the channel holds {total} wei")]
    WrongSum {
        /// The sum (None when it overflows).
        sum: Option<u128>,
        /// The channel total.
        total: u128,
    },
    /// A proposed update lowers the receiver's balance, or moves nothing.
    #[error("the update moves money the wrong way: my balance would go from {from} to {to} wei")]
    WrongDirection {
        /// The receiver's balance now.
        from: u128,
        /// The receiver's balance in the proposal.
        to: u128,
    },
    /// A signature does not recover to the party that had to sign.
    #[error("bad signature: expected {expected}, recovered {recovered:?}")]
    BadSignature {
        /// The address that had to sign.
        expected: Address,
        /// What the signature recovered to, if anything.
        recovered: Option<Address>,
    },
    /// A revealed waiver secret does not derive the waiver address the party countersigned.
    #[error("revealed waiver secret for nonce {nonce} does not match waiver address {expected}")]
    WrongSecret {
        /// The revoked nonce.
        nonce: u64,
        /// The waiver address in the countersigned sheet.
        expected: Address,
    },
    /// A revealed secret is inconsistent with the ones revealed before (BOLT #3 storage check).
    #[error("revealed waiver secret for nonce {0} is inconsistent with earlier ones")]
    InconsistentSecret(u64),
    /// The message does not fit the channel's current step.
    #[error("unexpected {message} message while {state}")]
    Unexpected {
        /// The message kind.
        message: &'static str,
        /// What the channel is doing.
        state: &'static str,
    },
    /// Both parties proposed at once; party 0's proposal goes first.
    #[error("conflicting proposals for nonce {0}; party 0's goes first")]
    Conflict(u64),
    /// The waiver address is zero.
    #[error("the waiver address is zero")]
    ZeroWaiver,
    /// A local payment exceeds what the party can spend.
    #[error("insufficient balance: {available} wei available, {requested} wei requested")]
    InsufficientBalance {
        /// Spendable now (balance less queued and in-flight payments).
        available: u128,
        /// Asked for.
        requested: u128,
    },
    /// A payment of zero.
    #[error("a payment must be at least 1 wei")]
    ZeroPayment,
    /// The channel is not in a phase that allows this.
    #[error("the channel is {0}")]
    NotOpen(&'static str),
    /// The channel parameters are invalid.
    #[error("invalid channel parameters: {0}")]
    InvalidParams(&'static str),
    /// The signing key does not belong to the party.
    #[error("signing key {key} is not party {index} ({party})")]
    WrongKey {
        /// The key's address.
        key: Address,
        /// The party index.
        index: u8,
        /// The party's address.
        party: Address,
    },
    /// The waiver chain is used up (2^48 updates).
    #[error("the channel has used all {0} updates of its waiver chain")]
    Exhausted(u64),
    /// A stored state has an unknown version tag.
    #[error("stored channel state has version {found}, this build reads {expected}")]
    Version {
        /// Found in the stored state.
        found: u32,
        /// Supported.
        expected: u32,
    },
    /// The channel is frozen for closing (DESIGN §2 rule 6): no update is signed any more.
    #[error("the channel is frozen ({0}): no more updates")]
    Frozen(String),
    /// The channel is not funded and running on chain: no payment is made or accepted.
    #[error("the channel is {0} on chain: no payments")]
    NotRunning(&'static str),
    /// A lock or a lock move is not acceptable (DESIGN §2 rule 3, moves b–e).
    #[error("lock refused: {0}")]
    BadLock(String),
    /// A stored state of a contract v1 channel: this build serves contract v2 only.
    #[error(
        "stored channel state version {0} belongs to a contract v1 channel, which this build no longer serves: \
         settle it with the vbank build that made it (`vbank close`), then remove it from the store"
    )]
    ContractV1(u32),
    /// A stored state or message could not be decoded.
    #[error("decode error: {0}")]
    Decode(String),
}

impl Error {
    /// What to do about this error when a peer's message caused it.
    pub fn severity(&self) -> Severity {
        match self {
            Self::Conflict(_) => Severity::Ignore,
            Self::WrongNonce { expected, got } if got < expected => Severity::Ignore,
            Self::WrongSecret { .. } | Self::InconsistentSecret(_) => Severity::Close,
            _ => Severity::Reject,
        }
    }
}

/// Result with the core's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
