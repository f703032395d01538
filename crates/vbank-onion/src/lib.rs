#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![cfg_attr(test, allow(clippy::unwrap_used))]
#![warn(missing_docs)]

mod bigsize;
mod crypto;
mod error;
mod failure;
mod payload;
mod sphinx;

pub use error::Error;
pub use failure::{FAILURE_MESSAGE_AREA, FAILURE_PACKET_LEN, failure_create, failure_read, failure_wrap};
pub use payload::HopPayload;
pub use sphinx::{HMAC_LEN, HOP_PAYLOADS_LEN, MAX_HOPS, OnionPacket, PACKET_LEN, Peeled, VERSION, build, peel};

/// Re-export of the `secp256k1` crate this API is expressed in
/// ([`secp256k1::SecretKey`], [`secp256k1::PublicKey`]).
pub use secp256k1;
