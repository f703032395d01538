//! Waiver keys: the BOLT #3 per-commitment secret chain, and the receiver's compact store.
//!
//! Sheet `n` of a party uses the secret at index `2^48 - 1 - n` of the party's per-channel seed
//! (BOLT #3 counts down). The waiver private key is `keccak256("vbank/waiver/v1" ‖ secret)` reduced
//! modulo the secp256k1 order; the waiver address is that key's Ethereum address. Revealing the
//! secret of sheet `n` lets the peer sign `Waiver(n)` and take everything if the sheet is used.

use alloy_primitives::{Address, B256, keccak256};
use alloy_signer_local::PrivateKeySigner;
use k256::{
    FieldBytes, Scalar, U256 as KU256,
    elliptic_curve::{ops::Reduce, subtle::CtOption},
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// Index of the first secret (BOLT #3: indexes count down from 2^48 - 1).
const FIRST_INDEX: u64 = (1 << 48) - 1;
/// The number of updates a channel's waiver chain allows.
pub const MAX_UPDATES: u64 = 1 << 48;
const WAIVER_TAG: &[u8] = b"vbank/waiver/v1";

/// BOLT #3 `generate_from_seed`: flips bit `b` of the running value and hashes it, for each set bit
/// `b` of `index` from `bits - 1` down to 0.
fn derive(mut value: [u8; 32], bits: u32, index: u64) -> [u8; 32] {
    for b in (0..bits).rev() {
        if index >> b & 1 == 1 {
            value[(b / 8) as usize] ^= 1 << (b % 8);
            value = Sha256::digest(value).into();
        }
    }
    value
}

fn index_of(nonce: u64) -> Result<u64> {
    if nonce >= MAX_UPDATES {
        return Err(Error::Exhausted(MAX_UPDATES));
    }
    Ok(FIRST_INDEX - nonce)
}

/// The waiver private key's scalar for a revealed secret: `keccak256(tag ‖ secret)` mod n.
fn waiver_scalar(secret: &B256) -> Result<k256::NonZeroScalar> {
    let mut data = [0u8; WAIVER_TAG.len() + 32];
    data[..WAIVER_TAG.len()].copy_from_slice(WAIVER_TAG);
    data[WAIVER_TAG.len()..].copy_from_slice(secret.as_slice());
    let digest = keccak256(data);
    let scalar = <Scalar as Reduce<KU256>>::reduce_bytes(&FieldBytes::from(digest.0));
    let key: CtOption<k256::NonZeroScalar> = k256::NonZeroScalar::new(scalar);
    Option::<k256::NonZeroScalar>::from(key).ok_or(Error::Decode("waiver key is zero".into()))
}

/// The waiver private key for a revealed secret.
pub fn waiver_key(secret: &B256) -> Result<PrivateKeySigner> {
    let signing = k256::ecdsa::SigningKey::from(waiver_scalar(secret)?);
    Ok(PrivateKeySigner::from_signing_key(signing))
}

/// The waiver address for a secret: the address of [`waiver_key`], computed with libsecp256k1
/// (one fixed-base multiplication, without building a k256 signer).
pub fn waiver_address(secret: &B256) -> Result<Address> {
    let bytes: [u8; 32] = waiver_scalar(secret)?.to_bytes().into();
    let key = secp256k1::SecretKey::from_byte_array(bytes).map_err(|e| Error::Decode(format!("waiver key: {e}")))?;
    Ok(crate::sheet::address_of(&secp256k1::PublicKey::from_secret_key(crate::sheet::secp(), &key)))
}

/// A party's own chain of waiver secrets for one channel.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaiverChain {
    seed: B256,
}

impl std::fmt::Debug for WaiverChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WaiverChain(..)")
    }
}

impl WaiverChain {
    /// A chain from a per-channel secret seed (32 random bytes).
    pub fn new(seed: B256) -> Self {
        Self { seed }
    }

    /// The secret of sheet `nonce`.
    pub fn secret(&self, nonce: u64) -> Result<B256> {
        Ok(B256::from(derive(self.seed.0, 48, index_of(nonce)?)))
    }

    /// The waiver address of sheet `nonce`.
    pub fn address(&self, nonce: u64) -> Result<Address> {
        waiver_address(&self.secret(nonce)?)
    }
}

/// The receiver's compact store of revealed secrets (BOLT #3): at most 49 entries whatever the
/// number of updates; any revealed secret can be re-derived from it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationStore {
    /// Slot `b` holds the secret whose index has `b` trailing zeros, with that index.
    known: Vec<Option<(u64, B256)>>,
    /// The lowest index inserted so far (secrets arrive in decreasing index order).
    next_index: Option<u64>,
}

impl RevocationStore {
    /// An empty store.
    pub fn new() -> Self {
        Self { known: vec![None; 49], next_index: None }
    }

    /// Inserts the secret of sheet `nonce`. Secrets must arrive in nonce order, and each must be
    /// consistent with those before it (BOLT #3 `insert_secret`); otherwise nothing changes.
    pub fn insert(&mut self, nonce: u64, secret: B256) -> Result<()> {
        let index = index_of(nonce)?;
        self.insert_index(index, secret).map_err(|()| Error::InconsistentSecret(nonce))
    }

    /// Checks that [`RevocationStore::insert`] would accept the secret, without inserting it.
    pub fn check(&self, nonce: u64, secret: B256) -> Result<()> {
        let index = index_of(nonce)?;
        self.check_index(index, secret).map(|_| ()).map_err(|()| Error::InconsistentSecret(nonce))
    }

    /// The slot the secret goes to, if it is the next one and consistent with the known ones.
    fn check_index(&self, index: u64, secret: B256) -> std::result::Result<usize, ()> {
        if index != self.next_index.unwrap_or(FIRST_INDEX) {
            return Err(());
        }
        let pos = index.trailing_zeros().min(48) as usize;
        for slot in self.known.iter().take(pos) {
            if let Some((i, s)) = slot
                && derive(secret.0, pos as u32, *i) != s.0
            {
                return Err(());
            }
        }
        Ok(pos)
    }

    fn insert_index(&mut self, index: u64, secret: B256) -> std::result::Result<(), ()> {
        if self.known.len() != 49 {
            self.known = vec![None; 49];
        }
        let pos = self.check_index(index, secret)?;
        self.known[pos] = Some((index, secret));
        self.next_index = index.checked_sub(1);
        Ok(())
    }

    /// The secret of sheet `nonce`, if it was revealed.
    pub fn secret(&self, nonce: u64) -> Option<B256> {
        let index = index_of(nonce).ok()?;
        for (b, slot) in self.known.iter().enumerate() {
            if let Some((i, s)) = slot {
                let mask = !((1u64 << b) - 1) & FIRST_INDEX;
                if index & mask == *i {
                    return Some(B256::from(derive(s.0, b as u32, index)));
                }
            }
        }
        None
    }

    /// The number of secrets inserted so far (the peer's revoked sheets).
    pub fn revealed(&self) -> u64 {
        self.next_index.map_or(MAX_UPDATES, |i| FIRST_INDEX - i)
    }

    /// Entries held: at most 49.
    pub fn entries(&self) -> usize {
        self.known.iter().flatten().count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VECTORS: &str = include_str!("testdata/bolt3-secrets.txt");

    fn hex32(s: &str) -> B256 {
        s.trim().parse().expect("32-byte hex")
    }

    fn num(s: &str) -> u64 {
        let s = s.trim();
        match s.strip_prefix("0x") {
            Some(h) => u64::from_str_radix(h, 16).expect("hex index"),
            None => s.parse().expect("index"),
        }
    }

    /// (name, lines of "key: value") per case in the BOLT #3 vector file.
    fn cases() -> Vec<(String, Vec<(String, String)>)> {
        let mut out: Vec<(String, Vec<(String, String)>)> = Vec::new();
        for line in VECTORS.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
            let (k, v) = line.split_once(':').expect("key: value");
            if k == "name" {
                out.push((v.trim().to_string(), Vec::new()));
            } else if let Some(last) = out.last_mut() {
                last.1.push((k.to_string(), v.trim().to_string()));
            }
        }
        out
    }

    #[test]
    fn bolt3_generation_vectors() {
        let mut n = 0;
        for (name, kv) in cases().into_iter().filter(|(n, _)| n.starts_with("generate_from_seed")) {
            let get = |k: &str| kv.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone()).expect(k);
            let out = derive(hex32(&get("seed")).0, 48, num(&get("I")));
            assert_eq!(B256::from(out), hex32(&get("output")), "{name}");
            n += 1;
        }
        assert_eq!(n, 5);
    }

    #[test]
    fn bolt3_storage_vectors() {
        let mut n = 0;
        for (name, kv) in cases().into_iter().filter(|(n, _)| n.starts_with("insert_secret")) {
            let mut store = RevocationStore::new();
            let mut steps = kv.chunks(3);
            for step in steps.by_ref() {
                let index = num(&step[0].1);
                let secret = hex32(&step[1].1);
                let ok = step[2].1 == "OK";
                assert_eq!(store.insert_index(index, secret).is_ok(), ok, "{name} at I={index}");
            }
            n += 1;
        }
        assert_eq!(n, 9);
    }

    #[test]
    fn chain_secrets_insert_and_are_recovered() {
        let chain = WaiverChain::new(B256::repeat_byte(0x42));
        let mut store = RevocationStore::new();
        for nonce in 0..300 {
            store.insert(nonce, chain.secret(nonce).expect("secret")).expect("consistent");
            assert!(store.entries() <= 49);
        }
        for nonce in 0..300 {
            assert_eq!(store.secret(nonce), Some(chain.secret(nonce).expect("secret")), "nonce {nonce}");
        }
        assert_eq!(store.secret(300), None, "not revealed yet");
        assert_eq!(store.revealed(), 300);
    }

    #[test]
    fn out_of_order_or_foreign_secrets_are_refused_without_change() {
        let chain = WaiverChain::new(B256::repeat_byte(1));
        let other = WaiverChain::new(B256::repeat_byte(2));
        let mut store = RevocationStore::new();
        store.insert(0, chain.secret(0).expect("s")).expect("first");
        let before = store.clone();
        assert_eq!(store.insert(2, chain.secret(2).expect("s")), Err(Error::InconsistentSecret(2)));
        assert_eq!(store.insert(1, other.secret(1).expect("s")), Err(Error::InconsistentSecret(1)));
        assert_eq!(store, before);
        store.insert(1, chain.secret(1).expect("s")).expect("in order");
    }

    #[test]
    fn waiver_key_is_deterministic_and_distinct_per_nonce() {
        let chain = WaiverChain::new(B256::repeat_byte(3));
        let a0 = chain.address(0).expect("addr");
        assert_eq!(a0, chain.address(0).expect("addr"));
        assert_ne!(a0, chain.address(1).expect("addr"));
        assert_eq!(waiver_key(&chain.secret(0).expect("s")).expect("key").address(), a0);
        // libsecp256k1's derivation and k256's (the signer's) agree
        for nonce in 0..256 {
            let secret = chain.secret(nonce).expect("s");
            assert_eq!(waiver_address(&secret).expect("addr"), waiver_key(&secret).expect("key").address());
        }
        assert_eq!(chain.secret(MAX_UPDATES), Err(Error::Exhausted(MAX_UPDATES)));
    }

    /// A million updates: the store stays at 49 entries at most and every revoked nonce can still
    /// be punished (its secret re-derived, its waiver key signs for its address).
    #[test]
    fn a_million_updates_stay_punishable_from_49_entries() {
        const UPDATES: u64 = 1 << 20;
        let chain = WaiverChain::new(B256::repeat_byte(0x5a));
        let mut store = RevocationStore::new();
        for nonce in 0..UPDATES {
            store.insert(nonce, chain.secret(nonce).expect("secret")).expect("consistent");
        }
        assert!(store.entries() <= 49, "{} entries", store.entries());
        assert_eq!(store.revealed(), UPDATES);
        for nonce in [0, 1, 2, 1000, 65_535, 65_536, 524_287, UPDATES - 2, UPDATES - 1] {
            let secret = store.secret(nonce).expect("revealed");
            assert_eq!(secret, chain.secret(nonce).expect("secret"), "nonce {nonce}");
            assert_eq!(waiver_key(&secret).expect("key").address(), chain.address(nonce).expect("addr"));
        }
    }
}
