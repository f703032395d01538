//! Failures travelling back to the payer (BOLT #4 "Returning Errors", the
//! legacy form without attribution data).
//!
//! The erring hop builds `hmac (32) || failure_len (u16) || message ||
//! pad_len (u16) || zero pad`, the HMAC keyed with its `um` key over
//! everything after it, and encrypts the whole with its `ammag` stream. Each
//! hop on the way back encrypts it once more with its own `ammag` stream. The
//! payer peels the layers with the route's shared secrets, in route order,
//! until one hop's `um` HMAC verifies.

use crate::Error;
use crate::crypto::{AMMAG, UM, derive_key, hmac_sha256, hmac_verify, xor_stream};

/// Size of the message area (`message` + zero padding) of every failure
/// packet this crate creates: messages are padded to it so that all failures
/// have the same length.
pub const FAILURE_MESSAGE_AREA: usize = 256;
/// Length of every failure packet [`failure_create`] returns:
/// HMAC, two length fields and the message area.
pub const FAILURE_PACKET_LEN: usize = 32 + 2 + FAILURE_MESSAGE_AREA + 2;

/// Builds the unencrypted packet with a message area of `area` bytes.
fn build_plain(shared_secret: &[u8; 32], message: &[u8], area: usize) -> Result<Vec<u8>, Error> {
    if message.len() > area || area > usize::from(u16::MAX) {
        return Err(Error::FailureMessageTooLong(message.len()));
    }
    let pad = area - message.len();
    let mut out = Vec::with_capacity(32 + 4 + area);
    out.extend_from_slice(&[0u8; 32]);
    out.extend_from_slice(&(message.len() as u16).to_be_bytes());
    out.extend_from_slice(message);
    out.extend_from_slice(&(pad as u16).to_be_bytes());
    out.resize(32 + 4 + area, 0);
    let hmac = hmac_sha256(&derive_key(UM, shared_secret), &[&out[32..]]);
    out[..32].copy_from_slice(&hmac);
    Ok(out)
}

/// Creates a failure at the hop that holds `shared_secret` (from
/// [`crate::Peeled::shared_secret`]): authenticated with its `um` key, padded
/// to [`FAILURE_MESSAGE_AREA`] bytes, encrypted with its `ammag` stream.
/// The result is always [`FAILURE_PACKET_LEN`] bytes.
///
/// Errors: [`Error::FailureMessageTooLong`] for a message over
/// [`FAILURE_MESSAGE_AREA`] bytes.
pub fn failure_create(shared_secret: &[u8; 32], message: &[u8]) -> Result<Vec<u8>, Error> {
    failure_create_with_area(shared_secret, message, FAILURE_MESSAGE_AREA)
}

pub(crate) fn failure_create_with_area(
    shared_secret: &[u8; 32],
    message: &[u8],
    area: usize,
) -> Result<Vec<u8>, Error> {
    let mut packet = build_plain(shared_secret, message, area)?;
    xor_stream(&derive_key(AMMAG, shared_secret), &mut packet);
    Ok(packet)
}

/// Adds this hop's layer (its `ammag` stream) to a failure packet on its way
/// back to the payer. Works on any length; never fails.
pub fn failure_wrap(shared_secret: &[u8; 32], packet: &[u8]) -> Vec<u8> {
    let mut out = packet.to_vec();
    xor_stream(&derive_key(AMMAG, shared_secret), &mut out);
    out
}

/// Reads a failure packet at the payer, with the shared secrets [`crate::build`]
/// returned for the route. Returns the index of the hop that created the
/// failure and its message.
///
/// Every shared secret is applied whatever hop matched, so the work done does
/// not depend on the erring hop's position.
///
/// Errors: [`Error::UnreadableFailure`] if no hop authenticates the packet
/// (corrupted, or too short to be a failure), [`Error::MalformedFailure`] if
/// the authenticating hop's length fields are inconsistent.
pub fn failure_read(shared_secrets_of_route: &[[u8; 32]], packet: &[u8]) -> Result<(usize, Vec<u8>), Error> {
    if packet.len() < 32 + 4 {
        return Err(Error::UnreadableFailure);
    }
    let mut data = packet.to_vec();
    let mut found: Option<(usize, Vec<u8>)> = None;
    for (i, ss) in shared_secrets_of_route.iter().enumerate() {
        xor_stream(&derive_key(AMMAG, ss), &mut data);
        let authentic = hmac_verify(&derive_key(UM, ss), &[&data[32..]], &data[..32]);
        if authentic && found.is_none() {
            found = Some((i, data.clone()));
        }
    }
    let (hop, plain) = found.ok_or(Error::UnreadableFailure)?;
    let body = &plain[32..];
    let malformed = Error::MalformedFailure { hop };
    let msg_len = usize::from(u16::from_be_bytes([body[0], body[1]]));
    let message = body.get(2..2 + msg_len).ok_or(malformed.clone())?;
    let pad_len = body
        .get(2 + msg_len..4 + msg_len)
        .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
        .ok_or(malformed.clone())?;
    if 4 + msg_len + pad_len != body.len() {
        return Err(malformed);
    }
    Ok((hop, message.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::derive_key;
    use serde_json::Value;

    fn h32(s: &str) -> [u8; 32] {
        hex::decode(s).unwrap().try_into().unwrap()
    }

    fn five_hop_secrets() -> Vec<[u8; 32]> {
        let v: Value = serde_json::from_str(include_str!("../tests/vectors/onion-error-test.json")).unwrap();
        v["generate"]["hops"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h32(h["hop_shared_secret"].as_str().unwrap()))
            .collect()
    }

    /// `bolt04/onion-error-test.json`: hop 4 fails with `2002` in a 256-byte
    /// area; hops 3..0 wrap; the final packet must match, and the origin
    /// must attribute it to hop 4.
    #[test]
    fn bolt04_error_vector_final_packet() {
        let v: Value = serde_json::from_str(include_str!("../tests/vectors/onion-error-test.json")).unwrap();
        let hops = v["generate"]["hops"].as_array().unwrap();
        let secrets = five_hop_secrets();
        for (h, ss) in hops.iter().zip(&secrets) {
            assert_eq!(derive_key(AMMAG, ss), h32(h["ammag_key"].as_str().unwrap()));
        }
        let last = &hops[4];
        assert_eq!(derive_key(UM, &secrets[4]), h32(last["um_key"].as_str().unwrap()));
        let message = hex::decode(v["generate"]["failure_message"].as_str().unwrap()).unwrap();
        // The vector's `payload` is the plaintext after the HMAC.
        let plain = build_plain(&secrets[4], &message, FAILURE_MESSAGE_AREA).unwrap();
        assert_eq!(hex::encode(&plain[32..]), last["payload"].as_str().unwrap());

        let mut packet = failure_create(&secrets[4], &message).unwrap();
        assert_eq!(packet.len(), FAILURE_PACKET_LEN);
        for ss in secrets[..4].iter().rev() {
            packet = failure_wrap(ss, &packet);
        }
        assert_eq!(hex::encode(&packet), v["errorpacket"].as_str().unwrap());
        assert_eq!(failure_read(&secrets, &packet), Ok((4, message)));
    }

    /// `onion-error-trace-legacy.json` (BOLT #4 at 2b9c73b): every
    /// intermediate packet of the trace, 1024-byte message area.
    #[test]
    fn bolt04_legacy_error_trace_intermediate_packets() {
        let v: Value = serde_json::from_str(include_str!("../tests/vectors/onion-error-trace-legacy.json")).unwrap();
        let ss4 = h32(v["erring_shared_secret"].as_str().unwrap());
        assert_eq!(derive_key(UM, &ss4), h32(v["um_key"].as_str().unwrap()));
        // `encoded_failure_message` is message || pad_len || pad; `payload`
        // prefixes it with failure_len.
        let encoded = hex::decode(v["encoded_failure_message"].as_str().unwrap()).unwrap();
        let payload = hex::decode(v["payload"].as_str().unwrap()).unwrap();
        assert_eq!(&payload[2..], &encoded[..]);
        let msg_len = usize::from(u16::from_be_bytes([payload[0], payload[1]]));
        assert_eq!(msg_len, 320);
        let message = encoded[..msg_len].to_vec();
        let plain = build_plain(&ss4, &message, 1024).unwrap();
        assert_eq!(hex::encode(&plain[32..]), v["payload"].as_str().unwrap());
        assert_eq!(hex::encode(&plain), v["raw_error_packet"].as_str().unwrap());

        let wraps = v["wraps"].as_array().unwrap();
        assert_eq!(wraps.len(), 5);
        assert_eq!(wraps[0]["node"], 4);
        assert_eq!(h32(wraps[0]["shared_secret"].as_str().unwrap()), ss4);
        let mut packet = failure_create_with_area(&ss4, &message, 1024).unwrap();
        assert_eq!(hex::encode(&packet), wraps[0]["error_packet"].as_str().unwrap());
        for w in &wraps[1..] {
            let ss = h32(w["shared_secret"].as_str().unwrap());
            assert_eq!(derive_key(AMMAG, &ss), h32(w["ammag_key"].as_str().unwrap()));
            packet = failure_wrap(&ss, &packet);
            assert_eq!(hex::encode(&packet), w["error_packet"].as_str().unwrap(), "after node {}", w["node"]);
        }
        let route: Vec<[u8; 32]> = wraps.iter().rev().map(|w| h32(w["shared_secret"].as_str().unwrap())).collect();
        assert_eq!(route, five_hop_secrets());
        assert_eq!(failure_read(&route, &packet), Ok((4, message)));
    }

    #[test]
    fn failure_from_every_position_is_attributed() {
        let secrets = five_hop_secrets();
        for origin in 0..secrets.len() {
            let msg = vec![origin as u8; origin * 40];
            let mut packet = failure_create(&secrets[origin], &msg).unwrap();
            assert_eq!(packet.len(), FAILURE_PACKET_LEN);
            for ss in secrets[..origin].iter().rev() {
                packet = failure_wrap(ss, &packet);
            }
            assert_eq!(packet.len(), FAILURE_PACKET_LEN);
            assert_eq!(failure_read(&secrets, &packet), Ok((origin, msg)));
        }
    }

    #[test]
    fn failure_message_limits() {
        let ss = [7u8; 32];
        assert_eq!(failure_create(&ss, &[0u8; FAILURE_MESSAGE_AREA]).unwrap().len(), FAILURE_PACKET_LEN);
        assert_eq!(failure_create(&ss, &[]).unwrap().len(), FAILURE_PACKET_LEN);
        assert_eq!(
            failure_create(&ss, &[0u8; FAILURE_MESSAGE_AREA + 1]),
            Err(Error::FailureMessageTooLong(FAILURE_MESSAGE_AREA + 1))
        );
    }

    #[test]
    fn corrupted_or_foreign_failure_is_unreadable() {
        let secrets = five_hop_secrets();
        let mut packet = failure_create(&secrets[2], b"oops").unwrap();
        packet = failure_wrap(&secrets[1], &packet);
        packet = failure_wrap(&secrets[0], &packet);
        let mut tampered = packet.clone();
        tampered[100] ^= 1;
        assert_eq!(failure_read(&secrets, &tampered), Err(Error::UnreadableFailure));
        assert_eq!(failure_read(&secrets[3..], &packet), Err(Error::UnreadableFailure));
        assert_eq!(failure_read(&[], &packet), Err(Error::UnreadableFailure));
        assert_eq!(failure_read(&secrets, &[0u8; 35]), Err(Error::UnreadableFailure));
        assert_eq!(failure_read(&secrets, &[]), Err(Error::UnreadableFailure));
        // Missing the middle hop's layer: not attributable to anyone.
        let skipped = failure_wrap(&secrets[0], &failure_create(&secrets[2], b"x").unwrap());
        assert_eq!(failure_read(&secrets, &skipped), Err(Error::UnreadableFailure));
    }

    #[test]
    fn authentic_but_malformed_failure_is_blamed_on_its_hop() {
        let secrets = five_hop_secrets();
        // A hop that authenticates inconsistent length fields.
        let ss = secrets[1];
        let mut plain = vec![0u8; 32];
        plain.extend_from_slice(&[0x01, 0x00]); // claims 256 bytes of message
        plain.extend_from_slice(&[0u8; 10]);
        let hmac = hmac_sha256(&derive_key(UM, &ss), &[&plain[32..]]);
        plain[..32].copy_from_slice(&hmac);
        let packet = failure_wrap(&secrets[0], &failure_wrap(&ss, &plain));
        assert_eq!(failure_read(&secrets, &packet), Err(Error::MalformedFailure { hop: 1 }));
    }
}
