//! The BOLT #4 primitives: key derivation, ChaCha20 byte streams, HMACs.

use chacha20::ChaCha20;
use chacha20::cipher::{KeyIvInit, StreamCipher};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// Key type for the stream that obfuscates hop payloads.
pub(crate) const RHO: &[u8] = b"rho";
/// Key type for the onion HMACs.
pub(crate) const MU: &[u8] = b"mu";
/// Key type for the failure HMAC.
pub(crate) const UM: &[u8] = b"um";
/// Key type for the initial random filling of `hop_payloads`.
pub(crate) const PAD: &[u8] = b"pad";
/// Key type for the stream that obfuscates failures.
pub(crate) const AMMAG: &[u8] = b"ammag";

fn mac(key: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length: `new_from_slice` cannot fail.
    <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC-SHA256 accepts any key length")
}

/// HMAC-SHA256 of the concatenation of `parts`, keyed by `key`.
pub(crate) fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut m = mac(key);
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

/// Constant-time check that `tag` is HMAC-SHA256(key, parts...).
pub(crate) fn hmac_verify(key: &[u8], parts: &[&[u8]], tag: &[u8]) -> bool {
    let mut m = mac(key);
    for p in parts {
        m.update(p);
    }
    m.verify_slice(tag).is_ok()
}

/// BOLT #4 key generation: HMAC-SHA256 keyed by the key-type string over the secret.
pub(crate) fn derive_key(key_type: &[u8], secret: &[u8; 32]) -> [u8; 32] {
    hmac_sha256(key_type, &[secret])
}

/// XOR `data` with the ChaCha20 stream (zero 96-bit nonce, counter 0) of `key`.
pub(crate) fn xor_stream(key: &[u8; 32], data: &mut [u8]) {
    let mut c = ChaCha20::new(key.into(), &[0u8; 12].into());
    c.apply_keystream(data);
}

/// SHA-256 of the concatenation of `parts`.
pub(crate) fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}
