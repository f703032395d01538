//! BOLT #8: `Noise_XK_secp256k1_ChaChaPoly_SHA256`, with the party's secp256k1 key as the static
//! key. No I/O here: the three handshake acts and the message cipher, as byte transformations
//! (see [`crate::transport`] for the same over a stream).
//!
//! ```text
//!   initiator (knows the responder's static key rs)          responder (static key s)
//!   -> act one,   50 bytes: 0 ‖ e.pub ‖ tag               (e, es)
//!   <- act two,   50 bytes: 0 ‖ e.pub ‖ tag               (e, ee)
//!   -> act three, 66 bytes: 0 ‖ enc(s.pub) ‖ tag ‖ tag     (s, se)
//!   then each message: enc(len, 2 bytes) ‖ tag ‖ enc(message) ‖ tag, keys rotated every 1000 nonces
//! ```
//!
//! Primitives: `k256` (ECDH as point multiplication; already the signing curve of the project),
//! `sha2`, `hkdf` (RFC 5869) and `chacha20poly1305` (RFC 8439), all RustCrypto.

use alloy_primitives::Address;
use chacha20poly1305::{
    ChaCha20Poly1305, KeyInit,
    aead::{AeadInPlace, generic_array::GenericArray},
};
use hkdf::Hkdf;
use k256::{
    NonZeroScalar, PublicKey,
    elliptic_curve::sec1::{FromEncodedPoint, ToEncodedPoint},
};
use sha2::{Digest, Sha256};

/// The Noise protocol name, hashed into the initial state.
const PROTOCOL_NAME: &[u8] = b"Noise_XK_secp256k1_ChaChaPoly_SHA256";
/// The prologue (BOLT #8 uses "lightning"; vbank nodes speak only to vbank nodes).
const PROLOGUE: &[u8] = b"lightning";
/// The only handshake version.
const VERSION: u8 = 0;

/// Size of act one (initiator → responder).
pub const ACT_ONE_LEN: usize = 50;
/// Size of act two (responder → initiator).
pub const ACT_TWO_LEN: usize = 50;
/// Size of act three (initiator → responder).
pub const ACT_THREE_LEN: usize = 66;
/// Size of a Poly1305 tag.
pub const TAG_LEN: usize = 16;
/// Size of the encrypted length header of a message.
pub const HEADER_LEN: usize = 2 + TAG_LEN;
/// The largest message (plaintext) BOLT #8 carries.
pub const MAX_MESSAGE: usize = 65_535;
/// A key is replaced after this many nonces (500 messages: header and body use one each).
pub const ROTATE_AFTER: u64 = 1000;

/// Why a handshake act or a message was refused. Each one ends the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NoiseError {
    /// An act with a handshake version other than 0.
    #[error("unknown handshake version {0}")]
    BadVersion(u8),
    /// An act carrying bytes that are not a compressed secp256k1 public key.
    #[error("the peer sent an invalid public key")]
    BadPublicKey,
    /// A handshake act failed authentication: the initiator does not know this node's key, the
    /// responder does not hold the key dialed, or the act was tampered with or replayed.
    #[error("handshake authentication failed")]
    BadHandshakeTag,
    /// A message (its length or its body) failed authentication: tampered, truncated, reordered
    /// or replayed.
    #[error("a message failed authentication")]
    BadMessageTag,
    /// A message over [`MAX_MESSAGE`] bytes.
    #[error("a message of {0} bytes is over the {max} byte limit", max = MAX_MESSAGE)]
    TooLong(usize),
}

/// The compressed SEC1 encoding of a public key (33 bytes).
pub fn compressed(key: &PublicKey) -> [u8; 33] {
    let mut out = [0u8; 33];
    out.copy_from_slice(key.to_encoded_point(true).as_bytes());
    out
}

/// Parses a compressed (33-byte, 02/03 prefix) SEC1 public key.
pub fn parse_compressed(bytes: &[u8]) -> Result<PublicKey, NoiseError> {
    if bytes.len() != 33 || !matches!(bytes[0], 2 | 3) {
        return Err(NoiseError::BadPublicKey);
    }
    let point = k256::EncodedPoint::from_bytes(bytes).map_err(|_| NoiseError::BadPublicKey)?;
    Option::from(PublicKey::from_encoded_point(&point)).ok_or(NoiseError::BadPublicKey)
}

/// The Ethereum address of a static key: a peer is known by it after the handshake.
pub fn address_of(key: &PublicKey) -> Address {
    Address::from_public_key(&k256::ecdsa::VerifyingKey::from(key))
}

/// SHA-256 of the compressed shared point.
fn ecdh(secret: &NonZeroScalar, public: &PublicKey) -> [u8; 32] {
    let shared = (public.to_projective() * **secret).to_affine();
    Sha256::digest(shared.to_encoded_point(true).as_bytes()).into()
}

/// HKDF-SHA256 with salt `salt`, input `ikm` and no info, 64 bytes split in two.
fn hkdf(salt: &[u8; 32], ikm: &[u8]) -> ([u8; 32], [u8; 32]) {
    let mut okm = [0u8; 64];
    // 64 bytes is far below HKDF-SHA256's 8160-byte limit: expand cannot fail.
    let _ = Hkdf::<Sha256>::new(Some(salt), ikm).expand(&[], &mut okm);
    let (mut a, mut b) = ([0u8; 32], [0u8; 32]);
    a.copy_from_slice(&okm[..32]);
    b.copy_from_slice(&okm[32..]);
    (a, b)
}

fn nonce(n: u64) -> GenericArray<u8, chacha20poly1305::consts::U12> {
    let mut out = [0u8; 12];
    out[4..].copy_from_slice(&n.to_le_bytes());
    out.into()
}

/// `encryptWithAD(k, n, ad, plaintext)`: appends the ciphertext and its tag to `out`.
fn encrypt(key: &[u8; 32], n: u64, ad: &[u8], plaintext: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(plaintext);
    let cipher = ChaCha20Poly1305::new(key.into());
    // Fails only for a buffer over ChaCha20's 256 GiB stream limit.
    let tag = cipher.encrypt_in_place_detached(&nonce(n), ad, &mut out[start..]).unwrap_or_default();
    out.extend_from_slice(&tag);
}

/// `decryptWithAD(k, n, ad, ciphertext ‖ tag)`: the plaintext, in place (the tag is removed).
fn decrypt(key: &[u8; 32], n: u64, ad: &[u8], buf: &mut Vec<u8>) -> Result<(), ()> {
    let split = buf.len().checked_sub(TAG_LEN).ok_or(())?;
    let tag = GenericArray::clone_from_slice(&buf[split..]);
    buf.truncate(split);
    ChaCha20Poly1305::new(key.into()).decrypt_in_place_detached(&nonce(n), ad, buf, &tag).map_err(|_| ())
}

/// The symmetric state shared by both handshake roles.
#[derive(Clone)]
struct Symmetric {
    ck: [u8; 32],
    h: [u8; 32],
}

impl Symmetric {
    /// The state both sides start from, with the responder's static key mixed in.
    fn new(responder: &PublicKey) -> Self {
        let h: [u8; 32] = Sha256::digest(PROTOCOL_NAME).into();
        let mut s = Self { ck: h, h };
        s.mix_hash(PROLOGUE);
        s.mix_hash(&compressed(responder));
        s
    }

    fn mix_hash(&mut self, data: &[u8]) {
        let mut d = Sha256::new();
        d.update(self.h);
        d.update(data);
        self.h = d.finalize().into();
    }

    fn mix_key(&mut self, ss: &[u8; 32]) -> [u8; 32] {
        let (ck, k) = hkdf(&self.ck, ss);
        self.ck = ck;
        k
    }
}

/// Reads the version and the public key of act one or two.
fn parse_act(act: &[u8; 50]) -> Result<(PublicKey, [u8; 33]), NoiseError> {
    if act[0] != VERSION {
        return Err(NoiseError::BadVersion(act[0]));
    }
    let mut raw = [0u8; 33];
    raw.copy_from_slice(&act[1..34]);
    Ok((parse_compressed(&raw)?, raw))
}

/// A fresh ephemeral key from the operating system's randomness.
fn random_key() -> NonZeroScalar {
    *alloy_signer_local::PrivateKeySigner::random().credential().as_nonzero_scalar()
}

/// The initiator's side of the handshake: it knows the responder's static key.
pub struct Initiator {
    local: NonZeroScalar,
    remote: PublicKey,
    ephemeral: NonZeroScalar,
    state: Symmetric,
}

impl std::fmt::Debug for Initiator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Initiator").field("remote", &address_of(&self.remote)).finish_non_exhaustive()
    }
}

impl Initiator {
    /// Starts a handshake with `remote` as `local`, with a fresh ephemeral key.
    pub fn new(local: &NonZeroScalar, remote: PublicKey) -> Self {
        Self::with_ephemeral(local, remote, random_key())
    }

    /// As [`Initiator::new`] with a given ephemeral key (for test vectors only: the ephemeral
    /// key must be fresh for every handshake).
    pub fn with_ephemeral(local: &NonZeroScalar, remote: PublicKey, ephemeral: NonZeroScalar) -> Self {
        Self { local: *local, remote, ephemeral, state: Symmetric::new(&remote) }
    }

    /// Act one: `e, es`.
    pub fn act_one(&mut self) -> [u8; ACT_ONE_LEN] {
        let e = compressed(&PublicKey::from_secret_scalar(&self.ephemeral));
        self.state.mix_hash(&e);
        let k = self.state.mix_key(&ecdh(&self.ephemeral, &self.remote));
        let mut c = Vec::with_capacity(TAG_LEN);
        encrypt(&k, 0, &self.state.h, &[], &mut c);
        self.state.mix_hash(&c);
        let mut act = [0u8; ACT_ONE_LEN];
        act[1..34].copy_from_slice(&e);
        act[34..].copy_from_slice(&c);
        act
    }

    /// Takes act two (`e, ee`) and gives act three (`s, se`) and the session's ciphers.
    pub fn act_two(mut self, act: &[u8; ACT_TWO_LEN]) -> Result<([u8; ACT_THREE_LEN], Session), NoiseError> {
        let (re, raw) = parse_act(act)?;
        self.state.mix_hash(&raw);
        let k2 = self.state.mix_key(&ecdh(&self.ephemeral, &re));
        let mut tag = act[34..].to_vec();
        decrypt(&k2, 0, &self.state.h, &mut tag).map_err(|()| NoiseError::BadHandshakeTag)?;
        self.state.mix_hash(&act[34..]);
        // act three
        let mut out = Vec::with_capacity(ACT_THREE_LEN);
        out.push(VERSION);
        encrypt(&k2, 1, &self.state.h, &compressed(&PublicKey::from_secret_scalar(&self.local)), &mut out);
        self.state.mix_hash(&out[1..]);
        let k3 = self.state.mix_key(&ecdh(&self.local, &re));
        encrypt(&k3, 0, &self.state.h, &[], &mut out);
        let mut act3 = [0u8; ACT_THREE_LEN];
        act3.copy_from_slice(&out);
        let (sk, rk) = hkdf(&self.state.ck, &[]);
        Ok((act3, Session::new(self.state.ck, sk, rk)))
    }
}

/// The responder's side of the handshake: it learns the initiator's static key in act three.
pub struct Responder {
    local: NonZeroScalar,
    ephemeral: NonZeroScalar,
    state: Symmetric,
    temp_k2: [u8; 32],
}

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Responder").finish_non_exhaustive()
    }
}

impl Responder {
    /// Waits for a handshake as `local`, with a fresh ephemeral key.
    pub fn new(local: &NonZeroScalar) -> Self {
        Self::with_ephemeral(local, random_key())
    }

    /// As [`Responder::new`] with a given ephemeral key (for test vectors only).
    pub fn with_ephemeral(local: &NonZeroScalar, ephemeral: NonZeroScalar) -> Self {
        let state = Symmetric::new(&PublicKey::from_secret_scalar(local));
        Self { local: *local, ephemeral, state, temp_k2: [0; 32] }
    }

    /// Takes act one (`e, es`) and gives act two (`e, ee`).
    pub fn act_one(&mut self, act: &[u8; ACT_ONE_LEN]) -> Result<[u8; ACT_TWO_LEN], NoiseError> {
        let (re, raw) = parse_act(act)?;
        let mut state = self.state.clone();
        state.mix_hash(&raw);
        let k1 = state.mix_key(&ecdh(&self.local, &re));
        let mut tag = act[34..].to_vec();
        decrypt(&k1, 0, &state.h, &mut tag).map_err(|()| NoiseError::BadHandshakeTag)?;
        state.mix_hash(&act[34..]);
        // act two
        let e = compressed(&PublicKey::from_secret_scalar(&self.ephemeral));
        state.mix_hash(&e);
        let k2 = state.mix_key(&ecdh(&self.ephemeral, &re));
        let mut c = Vec::with_capacity(TAG_LEN);
        encrypt(&k2, 0, &state.h, &[], &mut c);
        state.mix_hash(&c);
        self.state = state;
        self.temp_k2 = k2;
        let mut out = [0u8; ACT_TWO_LEN];
        out[1..34].copy_from_slice(&e);
        out[34..].copy_from_slice(&c);
        Ok(out)
    }

    /// Takes act three (`s, se`): the initiator's static key and the session's ciphers.
    pub fn act_three(mut self, act: &[u8; ACT_THREE_LEN]) -> Result<(PublicKey, Session), NoiseError> {
        if act[0] != VERSION {
            return Err(NoiseError::BadVersion(act[0]));
        }
        let mut rs = act[1..50].to_vec();
        decrypt(&self.temp_k2, 1, &self.state.h, &mut rs).map_err(|()| NoiseError::BadHandshakeTag)?;
        let rs = parse_compressed(&rs)?;
        self.state.mix_hash(&act[1..50]);
        let k3 = self.state.mix_key(&ecdh(&self.ephemeral, &rs));
        let mut t = act[50..].to_vec();
        decrypt(&k3, 0, &self.state.h, &mut t).map_err(|()| NoiseError::BadHandshakeTag)?;
        let (rk, sk) = hkdf(&self.state.ck, &[]);
        Ok((rs, Session::new(self.state.ck, sk, rk)))
    }
}

/// One direction's key, nonce and chaining key.
#[derive(Clone)]
struct CipherState {
    k: [u8; 32],
    n: u64,
    ck: [u8; 32],
}

impl CipherState {
    /// The nonce to use next, rotating the key first when it has been used [`ROTATE_AFTER`] times.
    fn next(&mut self) -> u64 {
        if self.n >= ROTATE_AFTER {
            let (ck, k) = hkdf(&self.ck, &self.k);
            self.ck = ck;
            self.k = k;
            self.n = 0;
        }
        let n = self.n;
        self.n += 1;
        n
    }
}

/// Encrypts the messages of one session, in order.
pub struct Encryptor(CipherState);

/// Decrypts the messages of one session, in order.
pub struct Decryptor(CipherState);

impl std::fmt::Debug for Encryptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encryptor").field("n", &self.0.n).finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Decryptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decryptor").field("n", &self.0.n).finish_non_exhaustive()
    }
}

impl Encryptor {
    /// A message as it goes on the wire: the encrypted length with its tag, then the encrypted
    /// message with its tag (`message.len() + 34` bytes).
    pub fn encrypt(&mut self, message: &[u8]) -> Result<Vec<u8>, NoiseError> {
        let len = u16::try_from(message.len()).map_err(|_| NoiseError::TooLong(message.len()))?;
        let mut out = Vec::with_capacity(HEADER_LEN + message.len() + TAG_LEN);
        let n = self.0.next();
        encrypt(&self.0.k, n, &[], &len.to_be_bytes(), &mut out);
        let n = self.0.next();
        encrypt(&self.0.k, n, &[], message, &mut out);
        Ok(out)
    }
}

impl Decryptor {
    /// Decrypts a message's length header; the body to read next is that many bytes plus
    /// [`TAG_LEN`]. An error ends the session (the nonces are out of step from then on).
    pub fn decrypt_length(&mut self, header: &[u8; HEADER_LEN]) -> Result<usize, NoiseError> {
        let n = self.0.next();
        let mut buf = header.to_vec();
        decrypt(&self.0.k, n, &[], &mut buf).map_err(|()| NoiseError::BadMessageTag)?;
        Ok(usize::from(u16::from_be_bytes([buf[0], buf[1]])))
    }

    /// Decrypts a message body (ciphertext and tag, as announced by the header before it).
    pub fn decrypt_body(&mut self, mut body: Vec<u8>) -> Result<Vec<u8>, NoiseError> {
        if body.len() > MAX_MESSAGE + TAG_LEN {
            return Err(NoiseError::TooLong(body.len()));
        }
        let n = self.0.next();
        decrypt(&self.0.k, n, &[], &mut body).map_err(|()| NoiseError::BadMessageTag)?;
        Ok(body)
    }

    /// Decrypts every whole message at the start of `wire`; stops at the first error or at a
    /// message cut short. For tests and fuzzing.
    pub fn decrypt_all(&mut self, mut wire: &[u8]) -> (Vec<Vec<u8>>, Option<NoiseError>) {
        let mut out = Vec::new();
        while wire.len() >= HEADER_LEN {
            let mut header = [0u8; HEADER_LEN];
            header.copy_from_slice(&wire[..HEADER_LEN]);
            let len = match self.decrypt_length(&header) {
                Ok(l) => l,
                Err(e) => return (out, Some(e)),
            };
            let Some(body) = wire.get(HEADER_LEN..HEADER_LEN + len + TAG_LEN) else { break };
            match self.decrypt_body(body.to_vec()) {
                Ok(m) => out.push(m),
                Err(e) => return (out, Some(e)),
            }
            wire = &wire[HEADER_LEN + len + TAG_LEN..];
        }
        (out, None)
    }
}

/// The two ciphers of a finished handshake.
#[derive(Debug)]
pub struct Session {
    /// Encrypts what this side sends.
    pub sender: Encryptor,
    /// Decrypts what the other side sends.
    pub receiver: Decryptor,
}

impl Session {
    fn new(ck: [u8; 32], sk: [u8; 32], rk: [u8; 32]) -> Self {
        Self {
            sender: Encryptor(CipherState { k: sk, n: 0, ck }),
            receiver: Decryptor(CipherState { k: rk, n: 0, ck }),
        }
    }

    /// Both ends of a session with the given keys, without a handshake: for tests, benchmarks and
    /// fuzzing (the first is the initiator's).
    pub fn pair_for_tests(ck: [u8; 32], sk: [u8; 32], rk: [u8; 32]) -> (Self, Self) {
        (Self::new(ck, sk, rk), Self::new(ck, rk, sk))
    }
}

#[cfg(test)]
mod tests {
    //! BOLT #8 Appendix A, every vector.
    use super::*;

    fn h32(s: &str) -> [u8; 32] {
        let v = hex::decode(s.trim_start_matches("0x")).expect("hex");
        v.try_into().expect("32 bytes")
    }

    fn bytes(s: &str) -> Vec<u8> {
        hex::decode(s.trim_start_matches("0x")).expect("hex")
    }

    fn scalar(s: &str) -> NonZeroScalar {
        Option::from(NonZeroScalar::from_repr(h32(s).into())).expect("scalar")
    }

    fn act<const N: usize>(s: &str) -> [u8; N] {
        bytes(s).try_into().expect("act length")
    }

    const RS_PUB: &str = "028d7500dd4c12685d1f568b4c2b5048e8534b873319f3a8daa612b469132ec7f7";
    const LS_PRIV: &str = "1111111111111111111111111111111111111111111111111111111111111111";
    const LS_PUB: &str = "034f355bdcb7cc0af728ef3cceb9615d90684bb5b2ca5f859ab0f0b704075871aa";
    const E_PRIV: &str = "1212121212121212121212121212121212121212121212121212121212121212";
    const RESP_PRIV: &str = "2121212121212121212121212121212121212121212121212121212121212121";
    const RESP_E_PRIV: &str = "2222222222222222222222222222222222222222222222222222222222222222";
    const ACT_ONE: &str =
        "0x00036360e856310ce5d294e8be33fc807077dc56ac80d95d9cd4ddbd21325eff73f70df6086551151f58b8afe6c195782c6a";
    const ACT_TWO: &str =
        "0x0002466d7fcae563e5cb09a0d1870bb580344804617879a14949cf22285f1bae3f276e2470b93aac583c9ef6eafca3f730ae";
    const ACT_THREE: &str = "0x00b9e3a702e93e3a9948c2ed6e5fd7590a6e1c3a0344cfc9d5b57357049aa22355361aa02e55a8fc28fef5bd6d71ad0c38228dc68b1c466263b47fdf31e560e139ba";
    const SK: &str = "0x969ab31b4d288cedf6218839b27a3e2140827047f2c0f01bf5c04435d43511a9";
    const RK: &str = "0xbb9020b8965f4df047e07f955f3c4b88418984aadc5cdb35096b9ea8fa5c3442";
    const CK: &str = "0x919219dbb2920afa8db80f9a51787a840bcf111ed8d588caf9ab4be716e42b01";

    fn initiator() -> Initiator {
        let rs = parse_compressed(&bytes(RS_PUB)).expect("rs");
        Initiator::with_ephemeral(&scalar(LS_PRIV), rs, scalar(E_PRIV))
    }

    fn responder() -> Responder {
        Responder::with_ephemeral(&scalar(RESP_PRIV), scalar(RESP_E_PRIV))
    }

    #[test]
    fn keys_of_the_vectors() {
        assert_eq!(hex::encode(compressed(&PublicKey::from_secret_scalar(&scalar(LS_PRIV)))), LS_PUB);
        assert_eq!(hex::encode(compressed(&PublicKey::from_secret_scalar(&scalar(RESP_PRIV)))), RS_PUB);
    }

    #[test]
    fn initiator_successful_handshake() {
        let mut i = initiator();
        assert_eq!(i.act_one().to_vec(), bytes(ACT_ONE));
        let (three, session) = i.act_two(&act(ACT_TWO)).expect("act two");
        assert_eq!(three.to_vec(), bytes(ACT_THREE));
        assert_eq!(session.sender.0.k, h32(SK));
        assert_eq!(session.receiver.0.k, h32(RK));
        assert_eq!(session.sender.0.ck, h32(CK));
        assert_eq!(session.receiver.0.ck, h32(CK));
    }

    #[test]
    fn initiator_failure_vectors() {
        // act2 short read: a 49-byte act two cannot even be taken (the type is 50 bytes); the
        // stream reader reports it as a closed connection (see transport tests).
        let short = bytes(
            "0x0002466d7fcae563e5cb09a0d1870bb580344804617879a14949cf22285f1bae3f276e2470b93aac583c9ef6eafca3f730",
        );
        assert!(<[u8; ACT_TWO_LEN]>::try_from(short.as_slice()).is_err());
        let cases = [
            (
                "0x0102466d7fcae563e5cb09a0d1870bb580344804617879a14949cf22285f1bae3f276e2470b93aac583c9ef6eafca3f730ae",
                NoiseError::BadVersion(1),
            ),
            (
                "0x0004466d7fcae563e5cb09a0d1870bb580344804617879a14949cf22285f1bae3f276e2470b93aac583c9ef6eafca3f730ae",
                NoiseError::BadPublicKey,
            ),
            (
                "0x0002466d7fcae563e5cb09a0d1870bb580344804617879a14949cf22285f1bae3f276e2470b93aac583c9ef6eafca3f730af",
                NoiseError::BadHandshakeTag,
            ),
        ];
        for (input, want) in cases {
            let mut i = initiator();
            assert_eq!(i.act_one().to_vec(), bytes(ACT_ONE));
            assert_eq!(i.act_two(&act(input)).map(|_| ()).expect_err(input), want);
        }
    }

    #[test]
    fn responder_successful_handshake() {
        let mut r = responder();
        assert_eq!(r.act_one(&act(ACT_ONE)).expect("act one").to_vec(), bytes(ACT_TWO));
        let (rs, session) = r.act_three(&act(ACT_THREE)).expect("act three");
        assert_eq!(hex::encode(compressed(&rs)), LS_PUB);
        // the responder's rk is the initiator's sk and vice versa
        assert_eq!(session.receiver.0.k, h32(SK));
        assert_eq!(session.sender.0.k, h32(RK));
    }

    #[test]
    fn responder_failure_vectors() {
        let short = bytes(
            "0x00036360e856310ce5d294e8be33fc807077dc56ac80d95d9cd4ddbd21325eff73f70df6086551151f58b8afe6c195782c",
        );
        assert!(<[u8; ACT_ONE_LEN]>::try_from(short.as_slice()).is_err(), "act1 short read");
        let act_one_cases = [
            (
                "0x01036360e856310ce5d294e8be33fc807077dc56ac80d95d9cd4ddbd21325eff73f70df6086551151f58b8afe6c195782c6a",
                NoiseError::BadVersion(1),
            ),
            (
                "0x00046360e856310ce5d294e8be33fc807077dc56ac80d95d9cd4ddbd21325eff73f70df6086551151f58b8afe6c195782c6a",
                NoiseError::BadPublicKey,
            ),
            (
                "0x00036360e856310ce5d294e8be33fc807077dc56ac80d95d9cd4ddbd21325eff73f70df6086551151f58b8afe6c195782c6b",
                NoiseError::BadHandshakeTag,
            ),
        ];
        for (input, want) in act_one_cases {
            assert_eq!(responder().act_one(&act(input)).expect_err(input), want);
        }
        let short3 = bytes(
            "0x00b9e3a702e93e3a9948c2ed6e5fd7590a6e1c3a0344cfc9d5b57357049aa22355361aa02e55a8fc28fef5bd6d71ad0c38228dc68b1c466263b47fdf31e560e139",
        );
        assert!(<[u8; ACT_THREE_LEN]>::try_from(short3.as_slice()).is_err(), "act3 short read");
        let act_three_cases = [
            (
                "0x01b9e3a702e93e3a9948c2ed6e5fd7590a6e1c3a0344cfc9d5b57357049aa22355361aa02e55a8fc28fef5bd6d71ad0c38228dc68b1c466263b47fdf31e560e139ba",
                NoiseError::BadVersion(1),
            ),
            (
                "0x00c9e3a702e93e3a9948c2ed6e5fd7590a6e1c3a0344cfc9d5b57357049aa22355361aa02e55a8fc28fef5bd6d71ad0c38228dc68b1c466263b47fdf31e560e139ba",
                NoiseError::BadHandshakeTag,
            ),
            (
                "0x00bfe3a702e93e3a9948c2ed6e5fd7590a6e1c3a0344cfc9d5b57357049aa2235536ad09a8ee351870c2bb7f78b754a26c6cef79a98d25139c856d7efd252c2ae73c",
                NoiseError::BadPublicKey,
            ),
            (
                "0x00b9e3a702e93e3a9948c2ed6e5fd7590a6e1c3a0344cfc9d5b57357049aa22355361aa02e55a8fc28fef5bd6d71ad0c38228dc68b1c466263b47fdf31e560e139bb",
                NoiseError::BadHandshakeTag,
            ),
        ];
        for (input, want) in act_three_cases {
            let mut r = responder();
            assert_eq!(r.act_one(&act(ACT_ONE)).expect("act one").to_vec(), bytes(ACT_TWO));
            assert_eq!(r.act_three(&act(input)).map(|_| ()).expect_err(input), want);
        }
    }

    #[test]
    fn message_encryption_vectors_with_key_rotation() {
        let mut i = initiator();
        i.act_one();
        let (_, mut sending) = i.act_two(&act(ACT_TWO)).expect("act two");
        let mut r = responder();
        r.act_one(&act(ACT_ONE)).expect("act one");
        let (_, mut receiving) = r.act_three(&act(ACT_THREE)).expect("act three");
        let expected = [
            (0, "0xcf2b30ddf0cf3f80e7c35a6e6730b59fe802473180f396d88a8fb0db8cbcf25d2f214cf9ea1d95"),
            (1, "0x72887022101f0b6753e0c7de21657d35a4cb2a1f5cde2650528bbc8f837d0f0d7ad833b1a256a1"),
            (500, "0x178cb9d7387190fa34db9c2d50027d21793c9bc2d40b1e14dcf30ebeeeb220f48364f7a4c68bf8"),
            (501, "0x1b186c57d44eb6de4c057c49940d79bb838a145cb528d6e8fd26dbe50a60ca2c104b56b60e45bd"),
            (1000, "0x4a2f3cc3b5e78ddb83dcb426d9863d9d9a723b0337c89dd0b005d89f8d3c05c52b76b29b740f09"),
            (1001, "0x2ecd8c8a5629d0d02ab457a0fdd0f7b90a192cd46be5ecb6ca570bfc5e268338b1a16cf4ef2d36"),
        ];
        for i in 0..1005 {
            let wire = sending.sender.encrypt(b"hello").expect("encrypt");
            if let Some((_, want)) = expected.iter().find(|(n, _)| *n == i) {
                assert_eq!(wire, bytes(want), "output {i}");
            }
            let (msgs, err) = receiving.receiver.decrypt_all(&wire);
            assert_eq!((msgs, err), (vec![b"hello".to_vec()], None), "message {i}");
        }
    }

    #[test]
    fn a_flipped_bit_anywhere_is_refused() {
        let (mut a, _) = Session::pair_for_tests([1; 32], [2; 32], [3; 32]);
        let wire = a.sender.encrypt(b"{\"ping\":{}}").expect("encrypt");
        for bit in 0..wire.len() * 8 {
            let mut bad = wire.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            let (_, mut b) = Session::pair_for_tests([1; 32], [2; 32], [3; 32]);
            let (msgs, err) = b.receiver.decrypt_all(&bad);
            // the length is authenticated before it is used: a flipped length bit is refused
            // before the body is awaited
            assert_eq!((msgs.len(), err), (0, Some(NoiseError::BadMessageTag)), "bit {bit}");
        }
        assert_eq!(a.sender.encrypt(&vec![0; MAX_MESSAGE + 1]).map(|_| ()), Err(NoiseError::TooLong(MAX_MESSAGE + 1)));
    }

    #[test]
    fn an_impostor_cannot_claim_a_key_it_does_not_hold() {
        // M knows Alice's public key but not her secret: it sends Alice's key in act three and
        // proves `se` with its own secret. Bob refuses the act.
        let bob = scalar(RESP_PRIV);
        let alice_pub = PublicKey::from_secret_scalar(&scalar(LS_PRIV));
        let mallory = scalar(E_PRIV);
        let mut m = Initiator::new(&mallory, PublicKey::from_secret_scalar(&bob));
        let mut r = Responder::new(&bob);
        let two = r.act_one(&m.act_one()).expect("act one is anonymous");
        // act three as Mallory builds it, with Alice's public key in the `s` slot
        let (re, raw) = parse_act(&two).expect("act two");
        m.state.mix_hash(&raw);
        let k2 = m.state.mix_key(&ecdh(&m.ephemeral, &re));
        m.state.mix_hash(&two[34..]);
        let mut out = vec![VERSION];
        encrypt(&k2, 1, &m.state.h, &compressed(&alice_pub), &mut out);
        m.state.mix_hash(&out[1..]);
        let k3 = m.state.mix_key(&ecdh(&mallory, &re));
        encrypt(&k3, 0, &m.state.h, &[], &mut out);
        let three: [u8; ACT_THREE_LEN] = out.try_into().expect("66 bytes");
        assert_eq!(r.act_three(&three).map(|_| ()), Err(NoiseError::BadHandshakeTag));
    }
}
