//! Building and peeling Sphinx onion packets (BOLT #4 "Packet Construction",
//! "Onion Decryption", "Filler Generation").

use secp256k1::ecdh::SharedSecret;
use secp256k1::{PublicKey, Scalar, Secp256k1, SecretKey};

use crate::crypto::{MU, PAD, RHO, derive_key, hmac_sha256, hmac_verify, sha256, xor_stream};
use crate::{Error, bigsize};

/// The only packet version defined by BOLT #4.
pub const VERSION: u8 = 0;
/// Length of the obfuscated `hop_payloads` field.
pub const HOP_PAYLOADS_LEN: usize = 1300;
/// Length of an HMAC.
pub const HMAC_LEN: usize = 32;
/// Length of a serialized onion packet: version, ephemeral key, hop payloads, HMAC.
pub const PACKET_LEN: usize = 1 + 33 + HOP_PAYLOADS_LEN + HMAC_LEN;
/// Most hops a route may have.
pub const MAX_HOPS: usize = 20;

/// A version-0 onion packet: always exactly [`PACKET_LEN`] bytes on the wire,
/// whatever the route length, so a hop cannot tell its position from the size.
#[derive(Clone, PartialEq, Eq)]
pub struct OnionPacket {
    public_key: PublicKey,
    hop_payloads: [u8; HOP_PAYLOADS_LEN],
    hmac: [u8; HMAC_LEN],
}

impl core::fmt::Debug for OnionPacket {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("OnionPacket")
            .field("public_key", &self.public_key)
            .field("hmac", &self.hmac)
            .finish_non_exhaustive()
    }
}

impl OnionPacket {
    /// The ephemeral public key the receiving hop does ECDH with.
    pub fn public_key(&self) -> &PublicKey {
        &self.public_key
    }

    /// The packet HMAC (an all-zero HMAC never appears on the wire: it marks
    /// the final hop inside the decrypted payloads).
    pub fn hmac(&self) -> &[u8; HMAC_LEN] {
        &self.hmac
    }

    /// Serializes as `0x00 || public_key (33) || hop_payloads (1300) || hmac (32)`.
    pub fn to_bytes(&self) -> [u8; PACKET_LEN] {
        let mut out = [0u8; PACKET_LEN];
        out[0] = VERSION;
        out[1..34].copy_from_slice(&self.public_key.serialize());
        out[34..34 + HOP_PAYLOADS_LEN].copy_from_slice(&self.hop_payloads);
        out[34 + HOP_PAYLOADS_LEN..].copy_from_slice(&self.hmac);
        out
    }

    /// Parses a packet received from the network.
    ///
    /// Errors: [`Error::BadPacketLength`], [`Error::BadVersion`], [`Error::InvalidPublicKey`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let bytes: &[u8; PACKET_LEN] =
            bytes.try_into().map_err(|_| Error::BadPacketLength { expected: PACKET_LEN, actual: bytes.len() })?;
        if bytes[0] != VERSION {
            return Err(Error::BadVersion(bytes[0]));
        }
        let mut key = [0u8; 33];
        key.copy_from_slice(&bytes[1..34]);
        let public_key = PublicKey::from_byte_array_compressed(key).map_err(|_| Error::InvalidPublicKey)?;
        let mut hop_payloads = [0u8; HOP_PAYLOADS_LEN];
        hop_payloads.copy_from_slice(&bytes[34..34 + HOP_PAYLOADS_LEN]);
        let mut hmac = [0u8; HMAC_LEN];
        hmac.copy_from_slice(&bytes[34 + HOP_PAYLOADS_LEN..]);
        Ok(Self { public_key, hop_payloads, hmac })
    }
}

/// What a hop learns by peeling its layer of the onion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peeled {
    /// The payload the sender addressed to this hop.
    pub payload: Vec<u8>,
    /// The shared secret with the sender: keep it to wrap (or create) a
    /// failure on the way back ([`crate::failure_wrap`], [`crate::failure_create`]).
    pub shared_secret: [u8; 32],
    /// The packet to forward to the next hop, or `None` if this hop is the
    /// final one (its next HMAC was all zero).
    pub next: Option<OnionPacket>,
}

/// Length of the whole per-hop entry: BigSize prefix, payload, HMAC.
fn shift_size(payload_len: usize) -> usize {
    bigsize::encoded_len(payload_len as u64) + payload_len + HMAC_LEN
}

/// Blinds an ephemeral key for the next hop: the factor is
/// `SHA256(ephemeral_pubkey || shared_secret)`.
fn blinding_factor(ephemeral: &PublicKey, shared_secret: &[u8; 32]) -> Result<Scalar, Error> {
    let b = sha256(&[&ephemeral.serialize(), shared_secret]);
    Scalar::from_be_bytes(b).map_err(|_| Error::KeyDerivation)
}

/// Builds the onion for `hops` (node public key, raw payload), in route order.
///
/// `session_key` must be fresh randomness for every payment attempt;
/// `associated_data` (the payment hash) is bound into every hop's HMAC.
/// Returns the packet for the first hop and the per-hop shared secrets, which
/// the payer keeps to read a failure ([`crate::failure_read`]).
///
/// Errors: [`Error::NoHops`], [`Error::TooManyHops`], [`Error::PayloadTooShort`],
/// [`Error::PayloadsTooLarge`], [`Error::KeyDerivation`].
pub fn build(
    session_key: &SecretKey,
    hops: &[(PublicKey, Vec<u8>)],
    associated_data: &[u8; 32],
) -> Result<(OnionPacket, Vec<[u8; 32]>), Error> {
    if hops.is_empty() {
        return Err(Error::NoHops);
    }
    if hops.len() > MAX_HOPS {
        return Err(Error::TooManyHops(hops.len()));
    }
    let mut needed = 0usize;
    for (i, (_, payload)) in hops.iter().enumerate() {
        if payload.len() < 2 {
            return Err(Error::PayloadTooShort { hop: i, len: payload.len() });
        }
        needed = needed.saturating_add(shift_size(payload.len()));
    }
    if needed > HOP_PAYLOADS_LEN {
        return Err(Error::PayloadsTooLarge { needed, available: HOP_PAYLOADS_LEN });
    }

    // Per-hop shared secrets, blinding the ephemeral key after each hop.
    let secp = Secp256k1::signing_only();
    let mut ephemeral = *session_key;
    let mut secrets = Vec::with_capacity(hops.len());
    let mut first_pubkey = None;
    for (node, _) in hops {
        let ephemeral_pub = PublicKey::from_secret_key(&secp, &ephemeral);
        first_pubkey.get_or_insert(ephemeral_pub);
        let ss = SharedSecret::new(node, &ephemeral).secret_bytes();
        ephemeral = ephemeral.mul_tweak(&blinding_factor(&ephemeral_pub, &ss)?).map_err(|_| Error::KeyDerivation)?;
        secrets.push(ss);
    }
    let first_pubkey = first_pubkey.ok_or(Error::NoHops)?;

    // Filler: what the hops before the last will have appended (and
    // obfuscated) at the tail by the time the packet reaches the last hop.
    let mut filler: Vec<u8> = Vec::with_capacity(needed);
    for ((_, payload), ss) in hops.iter().zip(&secrets).take(hops.len() - 1) {
        let start = HOP_PAYLOADS_LEN - filler.len();
        filler.resize(filler.len() + shift_size(payload.len()), 0);
        let mut stream = [0u8; 2 * HOP_PAYLOADS_LEN];
        xor_stream(&derive_key(RHO, ss), &mut stream);
        for (f, s) in filler.iter_mut().zip(&stream[start..]) {
            *f ^= s;
        }
    }

    // Start from pseudo-random bytes so that unused space looks like the rest.
    let mut mix = [0u8; HOP_PAYLOADS_LEN];
    xor_stream(&derive_key(PAD, &session_key.secret_bytes()), &mut mix);

    let mut hmac = [0u8; HMAC_LEN];
    for (i, ((_, payload), ss)) in hops.iter().zip(&secrets).enumerate().rev() {
        let shift = shift_size(payload.len());
        mix.copy_within(..HOP_PAYLOADS_LEN - shift, shift);
        let mut entry = Vec::with_capacity(shift);
        bigsize::encode(payload.len() as u64, &mut entry);
        entry.extend_from_slice(payload);
        entry.extend_from_slice(&hmac);
        mix[..shift].copy_from_slice(&entry);
        xor_stream(&derive_key(RHO, ss), &mut mix);
        if i == hops.len() - 1 {
            mix[HOP_PAYLOADS_LEN - filler.len()..].copy_from_slice(&filler);
        }
        hmac = hmac_sha256(&derive_key(MU, ss), &[&mix, associated_data]);
    }

    Ok((OnionPacket { public_key: first_pubkey, hop_payloads: mix, hmac }, secrets))
}

/// Peels one layer of `packet` with this node's secret key.
///
/// Verifies the HMAC (over the hop payloads and `associated_data`, in
/// constant time) before anything else, then decrypts this hop's payload and
/// prepares the packet for the next hop, if any.
///
/// Errors: [`Error::BadHmac`], [`Error::BadLengthPrefix`],
/// [`Error::BadPayloadLength`], [`Error::KeyDerivation`].
pub fn peel(node_secret: &SecretKey, packet: &OnionPacket, associated_data: &[u8; 32]) -> Result<Peeled, Error> {
    let shared_secret = SharedSecret::new(&packet.public_key, node_secret).secret_bytes();
    if !hmac_verify(&derive_key(MU, &shared_secret), &[&packet.hop_payloads, associated_data], &packet.hmac) {
        return Err(Error::BadHmac);
    }

    // Pad with 1300 zero bytes and decrypt: the zeros become the new tail.
    let mut buf = [0u8; 2 * HOP_PAYLOADS_LEN];
    buf[..HOP_PAYLOADS_LEN].copy_from_slice(&packet.hop_payloads);
    xor_stream(&derive_key(RHO, &shared_secret), &mut buf);

    let (len, prefix) = bigsize::decode(&buf)?;
    if len < 2 || len > (HOP_PAYLOADS_LEN - prefix - HMAC_LEN) as u64 {
        return Err(Error::BadPayloadLength(len));
    }
    let len = len as usize;
    let payload = buf[prefix..prefix + len].to_vec();
    let shift = prefix + len + HMAC_LEN;
    let mut next_hmac = [0u8; HMAC_LEN];
    next_hmac.copy_from_slice(&buf[prefix + len..shift]);

    let next = if next_hmac == [0u8; HMAC_LEN] {
        None
    } else {
        let secp = Secp256k1::verification_only();
        let public_key = packet
            .public_key
            .mul_tweak(&secp, &blinding_factor(&packet.public_key, &shared_secret)?)
            .map_err(|_| Error::KeyDerivation)?;
        let mut hop_payloads = [0u8; HOP_PAYLOADS_LEN];
        hop_payloads.copy_from_slice(&buf[shift..shift + HOP_PAYLOADS_LEN]);
        Some(OnionPacket { public_key, hop_payloads, hmac: next_hmac })
    };
    Ok(Peeled { payload, shared_secret, next })
}

#[cfg(test)]
pub(crate) mod tests;
