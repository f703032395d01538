//! What crosses a link, inside the encrypted transport ([`crate::transport`]): one JSON
//! [`Frame`] per BOLT #8 message, at most [`MAX_FRAME`] bytes.

use alloy_primitives::{Address, Bytes};
use serde::{Deserialize, Serialize};
use vbank_core::{ChannelParams, Message};

use crate::{Error, Result};

/// The largest payload accepted, in bytes: BOLT #8's largest message.
pub const MAX_FRAME: usize = crate::noise::MAX_MESSAGE;

/// The largest pong a ping may ask for; a ping asking for more gets no answer (BOLT #1).
pub const MAX_PONG: u16 = 16_384;

/// Everything that crosses a link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Frame {
    /// The first frame each way after the handshake (BOLT #1 `init`). The responder sends it only
    /// to a peer it accepts, so the dialing side knows it is linked.
    Init {},
    /// Keepalive (BOLT #1 `ping`): answer with a [`Frame::Pong`] of `pong_len` zero bytes if it
    /// is at most [`MAX_PONG`].
    Ping {
        /// The padding the pong must carry.
        pong_len: u16,
        /// Ignored bytes.
        #[serde(default)]
        padding: Bytes,
    },
    /// The answer to a [`Frame::Ping`].
    Pong {
        /// `pong_len` zero bytes.
        #[serde(default)]
        padding: Bytes,
    },
    /// A protocol message for one channel.
    Channel {
        /// The channel's contract address.
        channel: Address,
        /// The message.
        message: Message,
        /// The channel's parameters, sent by the opener with the opening proposal (nonce 0) and
        /// its retransmissions: the peer checks them against the factory's `channelAddress`.
        /// (Boxed: every other frame is small.)
        #[serde(default, skip_serializing_if = "Option::is_none")]
        params: Option<Box<ChannelParams>>,
        /// More messages for the same channel, handled after `message`, in order, and stored
        /// with it in one step (at most [`MAX_MORE`]): a proposer's revocation and its next
        /// proposal travel together, so the peer stores once for both.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        more: Vec<Message>,
    },
    /// A node's announcement (its fees and address, signed by its key), relayed between linked
    /// nodes (DESIGN §3).
    Announce {
        /// The announcement.
        announcement: crate::network::Announcement,
    },
    /// Asks the other node for its [`Terms`] (answered with [`Frame::Terms`]), so that a party
    /// opening a channel learns what the peer takes before it spends gas.
    GetTerms {},
    /// The answer to [`Frame::GetTerms`].
    Terms {
        /// What this node takes.
        terms: Terms,
    },
    /// The other side refused a frame; its channel state is unchanged.
    Refused {
        /// The channel, if the frame named one.
        channel: Option<Address>,
        /// Why.
        reason: String,
        /// The [`Message::digest`] of the refused message, if it was a channel message: a
        /// proposal is abandoned only when its own refusal comes back.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        about: Option<alloy_primitives::B256>,
    },
}

/// What a node takes of the channels peers open, as it states them in [`Frame::Terms`]. Fields
/// a newer node adds must have defaults, so that an older reader still decodes the frame.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Terms {
    /// Format version ([`Terms::VERSION`]).
    pub version: u16,
    /// Whether the node joins channels that peers open.
    pub accepts_channels: bool,
    /// The shortest lock period it accepts, in seconds.
    pub min_lock: u64,
    /// The longest lock period it accepts, in seconds.
    pub max_lock: u64,
    /// The largest deposit it pays by itself into a channel it joins (none: its party pays by
    /// hand).
    #[serde(default)]
    pub auto_deposit: Option<vbank_core::Amount>,
}

impl Terms {
    /// The version this code writes.
    pub const VERSION: u16 = 1;
}

impl Frame {
    /// A protocol message for channel `channel`, without parameters.
    pub fn channel(channel: Address, message: Message) -> Self {
        Self::Channel { channel, message, params: None, more: Vec::new() }
    }

    /// A protocol message for the channel of `params`, carrying them if it is the opening
    /// proposal (nonce 0).
    pub fn for_channel(params: &ChannelParams, message: Message) -> Self {
        let opening = matches!(message, Message::Propose { nonce: 0, .. });
        Self::Channel {
            channel: params.contract,
            message,
            params: opening.then(|| Box::new(params.clone())),
            more: Vec::new(),
        }
    }
}

/// The most messages a [`Frame::Channel`] carries besides its first.
pub const MAX_MORE: usize = 4;

/// Joins consecutive channel frames for the same channel (without parameters) into one, up to
/// [`MAX_MORE`] extra messages each: what one step produced for a channel is stored by the peer
/// in one step too.
pub fn coalesce(frames: Vec<Frame>) -> Vec<Frame> {
    let mut out: Vec<Frame> = Vec::with_capacity(frames.len());
    for f in frames {
        let f = match (out.last_mut(), f) {
            (
                Some(Frame::Channel { channel: c, params: None, more, .. }),
                Frame::Channel { channel, message, params: None, more: tail },
            ) if *c == channel && more.len() + 1 + tail.len() <= MAX_MORE => {
                more.push(message);
                more.extend(tail);
                continue;
            }
            (_, f) => f,
        };
        out.push(f);
    }
    out
}

/// The payload of a frame; a frame over [`MAX_FRAME`] bytes is an error.
pub fn encode(frame: &Frame) -> Result<Vec<u8>> {
    let payload = serde_json::to_vec(frame).map_err(|e| Error::Malformed(e.to_string()))?;
    if payload.len() > MAX_FRAME {
        return Err(Error::Oversize(payload.len()));
    }
    Ok(payload)
}

/// Decodes a frame's payload.
pub fn decode(payload: &[u8]) -> Result<Frame> {
    if payload.len() > MAX_FRAME {
        return Err(Error::Oversize(payload.len()));
    }
    serde_json::from_slice(payload).map_err(|e| Error::Malformed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::B256;

    #[test]
    fn frames_round_trip_and_bad_ones_are_typed_errors() {
        for f in [
            Frame::channel(Address::repeat_byte(1), Message::Revoke { nonce: 3, secret: B256::repeat_byte(2) }),
            Frame::for_channel(
                &ChannelParams {
                    chain_id: 31337,
                    contract: Address::repeat_byte(1),
                    parties: [Address::repeat_byte(2), Address::repeat_byte(3)],
                    deposits: [5, 0],
                    lock_period: 600,
                    token: Address::repeat_byte(4),
                    salt: B256::repeat_byte(5),
                },
                Message::Propose {
                    signature: None,
                    nonce: 0,
                    balances: [5, 0],
                    waiver: Address::repeat_byte(6),
                    locks: vec![],
                    moves: vec![],
                    onions: vec![],
                },
            ),
            Frame::Init {},
            Frame::Ping { pong_len: 3, padding: Bytes::from(vec![0; 4]) },
            Frame::Pong { padding: Bytes::new() },
            Frame::Refused { channel: None, reason: "no".into(), about: None },
            Frame::GetTerms {},
            Frame::Terms {
                terms: Terms {
                    version: 1,
                    accepts_channels: true,
                    min_lock: 1,
                    max_lock: 2,
                    auto_deposit: Some(u128::MAX),
                },
            },
        ] {
            assert_eq!(decode(&encode(&f).expect("encode")).expect("decode"), f);
        }
        // A newer node's extra fields are ignored; missing optional ones take their defaults.
        assert_eq!(
            decode(br#"{"terms":{"terms":{"version":2,"accepts_channels":false,"min_lock":0,"max_lock":0,"x":1}}}"#)
                .expect("a newer node's terms"),
            Frame::Terms { terms: Terms { version: 2, ..Terms::default() } }
        );
        // The parameters ride only on the opening proposal; other frames keep their old JSON.
        let params = ChannelParams {
            chain_id: 1,
            contract: Address::repeat_byte(1),
            parties: [Address::repeat_byte(2), Address::repeat_byte(3)],
            deposits: [1, 1],
            lock_period: 60,
            token: Address::ZERO,
            salt: B256::ZERO,
        };
        let later = Message::Propose {
            signature: None,
            nonce: 1,
            balances: [1, 1],
            waiver: Address::repeat_byte(6),
            locks: vec![],
            moves: vec![],
            onions: vec![],
        };
        let f = Frame::for_channel(&params, later);
        assert!(matches!(&f, Frame::Channel { params: None, .. }));
        assert!(!String::from_utf8(encode(&f).expect("encode")).expect("utf8").contains("params"));
        let opening = Message::Propose {
            signature: None,
            nonce: 0,
            balances: [1, 1],
            waiver: Address::repeat_byte(6),
            locks: vec![],
            moves: vec![],
            onions: vec![],
        };
        assert!(matches!(Frame::for_channel(&params, opening), Frame::Channel { params: Some(p), .. } if *p == params));
        assert_eq!(
            decode(b"{\"ping\":{\"pong_len\":0}}").expect("padding is optional"),
            Frame::Ping { pong_len: 0, padding: Bytes::new() }
        );
        // oversize, both ways
        let big = Frame::Refused { channel: None, reason: "x".repeat(MAX_FRAME), about: None };
        assert!(matches!(encode(&big), Err(Error::Oversize(_))));
        assert!(matches!(decode(&vec![b' '; MAX_FRAME + 1]), Err(Error::Oversize(n)) if n == MAX_FRAME + 1));
        // malformed JSON, unknown kinds (the old plaintext handshake's among them), wrong types
        for bad in [
            &b"{"[..],
            b"{\"frame\":\"nope\"}",
            b"{\"auth\":{\"signature\":\"0x12\"}}",
            b"{\"hello\":{}}",
            b"{\"ping\":{\"pong_len\":70000}}",
            b"\xff\xfe",
        ] {
            assert!(matches!(decode(bad), Err(Error::Malformed(_))), "{bad:?}");
        }
    }

    proptest::proptest! {
        /// The decoder never panics and never accepts more than the limit, whatever the bytes.
        #[test]
        fn decoder_survives_arbitrary_bytes(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = decode(&bytes);
        }
    }
}
