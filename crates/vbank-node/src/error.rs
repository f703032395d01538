//! Errors of the node.

use alloy_primitives::Address;

/// Errors of the node.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A frame's declared length is over the limit; nothing was read past the length.
    #[error("frame of {0} bytes is over the {max} byte limit", max = crate::MAX_FRAME)]
    Oversize(usize),
    /// A frame's payload is not a valid message.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// The peer closed the connection.
    #[error("connection closed by the peer")]
    Closed,
    /// An I/O error on the connection.
    #[error("connection error: {0}")]
    Io(#[from] std::io::Error),
    /// The encrypted transport refused a handshake act or a message (it failed authentication,
    /// or was malformed); the link ends and nothing it carried was used.
    #[error("transport: {0}")]
    Transport(#[from] crate::NoiseError),
    /// A node URI could not be parsed, or names another party than expected.
    #[error(transparent)]
    Uri(#[from] crate::UriError),
    /// The peer is not one this node accepts, or a link broke a limit.
    #[error("peer authentication failed: {0}")]
    Auth(String),
    /// A frame names a channel this node does not have.
    #[error("unknown channel {0}")]
    UnknownChannel(Address),
    /// A frame for a channel came from someone who is not that channel's peer.
    #[error("{from} is not the peer of channel {channel}")]
    NotPeer {
        /// The authenticated sender.
        from: Address,
        /// The channel named.
        channel: Address,
    },
    /// A file holding secrets (a store, a key) is readable by other users, or cannot be checked.
    #[error("{0}")]
    Permissions(String),
    /// A payment over the network could not be made, or is still in flight.
    #[error("{0}")]
    Payment(String),
    /// The store failed; the state may not be durable, so nothing is sent.
    #[error("store error: {0}")]
    Store(String),
    /// The peer's node cannot be reached.
    #[error("cannot reach the peer's node at {addr}: {reason}")]
    Unreachable {
        /// host:port.
        addr: String,
        /// Why.
        reason: String,
    },
    /// A request needs a link to a peer that is not connected; nothing changed.
    #[error("peer {0} is not connected; nothing was done")]
    NotConnected(Address),
    /// The peer's link dropped while a request waited; what was sent is stored and is sent
    /// again when the peer reconnects.
    #[error("the link to {peer} dropped ({reason}); the request stays stored and resumes when it reconnects")]
    PeerGone {
        /// The peer.
        peer: Address,
        /// Why.
        reason: String,
    },
    /// The peer refused this node's frame.
    #[error("the peer refused: {0}")]
    RefusedByPeer(String),
    /// A request did not complete in time; what was sent stays stored.
    #[error("timed out: {0}")]
    Timeout(String),
    /// The client that made the request stopped it (it hung up, or its user pressed Ctrl-C).
    #[error("interrupted")]
    Interrupted,
    /// Payments were cancelled because the channel is closing.
    #[error("payments on channel {0} were cancelled: it is closing")]
    Cancelled(Address),
    /// A payment request failed part-way: some payments were acknowledged, the queued ones were
    /// cancelled (they never go out), and those already proposed may still complete.
    #[error(
        "{reason}: {settled} payment(s) acknowledged, {cancelled} cancelled (never sent), {in_flight} in flight (may still complete)"
    )]
    Unsettled {
        /// Why the request ended.
        reason: Box<Error>,
        /// Acknowledged.
        settled: u64,
        /// Cancelled before they were proposed.
        cancelled: u64,
        /// Proposed, outcome unknown yet.
        in_flight: u64,
    },
    /// The control socket failed, or the node refused a control request.
    #[error("{0}")]
    Control(String),
    /// The protocol core refused the message (the channel state is unchanged).
    #[error(transparent)]
    Protocol(#[from] vbank_core::Error),
}

/// Result with the node's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
