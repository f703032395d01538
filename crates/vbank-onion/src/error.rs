//! Typed errors of the crate.

/// Everything that can go wrong building, peeling or reading onions and failures.
///
/// Every error that input from the network can trigger is one of these; none of
/// them panics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A serialized onion packet does not have [`crate::PACKET_LEN`] bytes.
    #[error("onion packet must be {expected} bytes, got {actual}")]
    BadPacketLength {
        /// Always [`crate::PACKET_LEN`].
        expected: usize,
        /// The length that was given.
        actual: usize,
    },
    /// The packet's version byte is not 0.
    #[error("unknown onion packet version {0}")]
    BadVersion(u8),
    /// The packet's ephemeral public key is not a valid compressed secp256k1 point.
    #[error("invalid ephemeral public key in onion packet")]
    InvalidPublicKey,
    /// `build` was given an empty route.
    #[error("a route needs at least one hop")]
    NoHops,
    /// `build` was given more than [`crate::MAX_HOPS`] hops.
    #[error("route has {0} hops, at most {max} are allowed", max = crate::MAX_HOPS)]
    TooManyHops(usize),
    /// A hop payload is shorter than 2 bytes (lengths 0 and 1 are reserved by BOLT #4).
    #[error("payload of hop {hop} is {len} bytes, at least 2 are required")]
    PayloadTooShort {
        /// Index of the hop in the route.
        hop: usize,
        /// Its payload length.
        len: usize,
    },
    /// The payloads, with their length prefixes and HMACs, do not fit in the
    /// 1300-byte `hop_payloads` field.
    #[error("hop payloads need {needed} bytes, only {available} are available")]
    PayloadsTooLarge {
        /// Bytes the route needs (sum of length prefix + payload + 32 over all hops).
        needed: usize,
        /// Always [`crate::HOP_PAYLOADS_LEN`].
        available: usize,
    },
    /// The packet's HMAC does not verify: the packet was tampered with, is meant
    /// for another node, or was built with other associated data.
    #[error("onion HMAC check failed")]
    BadHmac,
    /// The decrypted BigSize length prefix is not canonically encoded.
    #[error("malformed BigSize length prefix in hop payload")]
    BadLengthPrefix,
    /// The decrypted payload length is reserved (0 or 1) or does not fit in the packet.
    #[error("hop payload length {0} is invalid")]
    BadPayloadLength(u64),
    /// A derived blinding factor fell outside the curve order (probability ~2^-128).
    #[error("ephemeral key blinding failed")]
    KeyDerivation,
    /// A failure message longer than [`crate::FAILURE_MESSAGE_AREA`] bytes.
    #[error("failure message is {0} bytes, at most {max} are allowed", max = crate::FAILURE_MESSAGE_AREA)]
    FailureMessageTooLong(usize),
    /// No hop of the route authenticates the failure packet (it was corrupted,
    /// or does not belong to this route).
    #[error("failure packet cannot be attributed to any hop of the route")]
    UnreadableFailure,
    /// The failure packet authenticates as coming from hop `hop`, but its
    /// length fields are inconsistent: that hop (or its predecessor) misbehaved.
    #[error("failure packet from hop {hop} is malformed")]
    MalformedFailure {
        /// Index of the hop whose key authenticated the packet.
        hop: usize,
    },
    /// A [`crate::HopPayload`] starts with an unknown type byte.
    #[error("unknown hop payload type {0:#04x}")]
    UnknownPayloadType(u8),
    /// A [`crate::HopPayload`] has the wrong length for its type (short or trailing bytes).
    #[error("hop payload of this type must be {expected} bytes, got {actual}")]
    BadPayloadEncoding {
        /// The length the type requires.
        expected: usize,
        /// The length that was given.
        actual: usize,
    },
    /// An empty byte string was given to [`crate::HopPayload::decode`].
    #[error("empty hop payload")]
    EmptyPayload,
}
