//! vbank's own per-hop instructions, carried as the onion payload.
//!
//! Format: one type byte, then big-endian fixed-width fields, nothing after.
//!
//! | type | meaning | fields | total |
//! | ---- | ------- | ------ | ----- |
//! | `0x01` | forward | `next` (20) · `amount` u128 (16) · `expiry` u64 (8) | 45 |
//! | `0x02` | final, invoice | `amount` u128 (16) · `expiry` u64 (8) · payment secret (32) | 57 |
//! | `0x03` | final, spontaneous | `amount` u128 (16) · `expiry` u64 (8) · preimage (32) | 57 |
//!
//! Type `0x00` is reserved; new layouts get new type bytes, which older
//! nodes reject as unknown.

use crate::Error;

const TYPE_FORWARD: u8 = 0x01;
const TYPE_FINAL_INVOICE: u8 = 0x02;
const TYPE_FINAL_SPONTANEOUS: u8 = 0x03;
const FORWARD_LEN: usize = 1 + 20 + 16 + 8;
const FINAL_LEN: usize = 1 + 16 + 8 + 32;

/// The instruction the payer gives one hop of the route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HopPayload {
    /// Forward: lock `amount` (wei) to node `next` (its 20-byte Ethereum
    /// address) with the same hash and expiry as the incoming lock.
    Forward {
        /// Ethereum address of the next node.
        next: [u8; 20],
        /// Amount (wei) to lock towards `next`.
        amount: u128,
        /// Expiry of the outgoing lock.
        expiry: u64,
    },
    /// Final hop: the payee checks amount and expiry against its invoice;
    /// `secret` is the invoice's payment secret, or, for a spontaneous
    /// payment, the preimage itself.
    Final {
        /// Amount (wei) the payee must receive.
        amount: u128,
        /// Expiry of the incoming lock.
        expiry: u64,
        /// Payment secret, or the preimage if `spontaneous`.
        secret: [u8; 32],
        /// Whether `secret` is the preimage of a payment without invoice.
        spontaneous: bool,
    },
}

impl HopPayload {
    /// Longest route whose every hop carries a `HopPayload` (forwards, then
    /// a final): 15 × (1 + 45 + 32) + (1 + 57 + 32) = 1260 bytes fit in the
    /// 1300-byte `hop_payloads`, 16 forwards plus a final (1338) do not. Route
    /// finding must stay within this, below the onion's [`crate::MAX_HOPS`].
    pub const MAX_ROUTE_LEN: usize = 16;

    /// Serializes the payload (45 bytes for `Forward`, 57 for `Final`).
    pub fn encode(&self) -> Vec<u8> {
        match self {
            HopPayload::Forward { next, amount, expiry } => {
                let mut out = Vec::with_capacity(FORWARD_LEN);
                out.push(TYPE_FORWARD);
                out.extend_from_slice(next);
                out.extend_from_slice(&amount.to_be_bytes());
                out.extend_from_slice(&expiry.to_be_bytes());
                out
            }
            HopPayload::Final { amount, expiry, secret, spontaneous } => {
                let mut out = Vec::with_capacity(FINAL_LEN);
                out.push(if *spontaneous { TYPE_FINAL_SPONTANEOUS } else { TYPE_FINAL_INVOICE });
                out.extend_from_slice(&amount.to_be_bytes());
                out.extend_from_slice(&expiry.to_be_bytes());
                out.extend_from_slice(secret);
                out
            }
        }
    }

    /// Parses a payload; rejects unknown types, short input and trailing bytes.
    ///
    /// Errors: [`Error::EmptyPayload`], [`Error::UnknownPayloadType`],
    /// [`Error::BadPayloadEncoding`].
    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        let (&ty, body) = bytes.split_first().ok_or(Error::EmptyPayload)?;
        let expected = match ty {
            TYPE_FORWARD => FORWARD_LEN,
            TYPE_FINAL_INVOICE | TYPE_FINAL_SPONTANEOUS => FINAL_LEN,
            other => return Err(Error::UnknownPayloadType(other)),
        };
        if bytes.len() != expected {
            return Err(Error::BadPayloadEncoding { expected, actual: bytes.len() });
        }
        let mut r = Reader(body);
        Ok(if ty == TYPE_FORWARD {
            HopPayload::Forward {
                next: r.take(),
                amount: u128::from_be_bytes(r.take()),
                expiry: u64::from_be_bytes(r.take()),
            }
        } else {
            HopPayload::Final {
                amount: u128::from_be_bytes(r.take()),
                expiry: u64::from_be_bytes(r.take()),
                secret: r.take(),
                spontaneous: ty == TYPE_FINAL_SPONTANEOUS,
            }
        })
    }
}

/// Reads fixed-size arrays from a slice whose length was checked beforehand;
/// a short slice yields zeros rather than a panic.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        let n = N.min(self.0.len());
        out[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        out
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hop_payload_layout() {
        let f = HopPayload::Forward { next: [0xaa; 20], amount: 0x0102, expiry: 0x0304 };
        let e = f.encode();
        assert_eq!(e.len(), 45);
        assert_eq!(e[0], 1);
        assert_eq!(&e[1..21], &[0xaa; 20]);
        assert_eq!(&e[35..37], &[1, 2]);
        assert_eq!(&e[43..45], &[3, 4]);
        assert_eq!(HopPayload::decode(&e), Ok(f));
        for spontaneous in [false, true] {
            let p = HopPayload::Final { amount: u128::MAX, expiry: 7, secret: [9; 32], spontaneous };
            let e = p.encode();
            assert_eq!(e.len(), 57);
            assert_eq!(e[0], if spontaneous { 3 } else { 2 });
            assert_eq!(HopPayload::decode(&e), Ok(p));
        }
    }

    #[test]
    fn hop_payload_rejects_bad_input() {
        let mut e = HopPayload::Forward { next: [1; 20], amount: 5, expiry: 6 }.encode();
        assert_eq!(HopPayload::decode(&[]), Err(Error::EmptyPayload));
        for t in [0x00, 0x04, 0xff] {
            assert_eq!(HopPayload::decode(&[t; 45]), Err(Error::UnknownPayloadType(t)));
        }
        assert_eq!(HopPayload::decode(&e[..44]), Err(Error::BadPayloadEncoding { expected: 45, actual: 44 }));
        e.push(0);
        assert_eq!(HopPayload::decode(&e), Err(Error::BadPayloadEncoding { expected: 45, actual: 46 }));
        assert_eq!(HopPayload::decode(&[2; 45]), Err(Error::BadPayloadEncoding { expected: 57, actual: 45 }));
    }

    pub(crate) fn arb_hop_payload() -> impl Strategy<Value = HopPayload> {
        prop_oneof![
            (any::<[u8; 20]>(), any::<u128>(), any::<u64>())
                .prop_map(|(next, amount, expiry)| { HopPayload::Forward { next, amount, expiry } }),
            (any::<u128>(), any::<u64>(), any::<[u8; 32]>(), any::<bool>()).prop_map(
                |(amount, expiry, secret, spontaneous)| HopPayload::Final { amount, expiry, secret, spontaneous }
            ),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn hop_payload_round_trips(p in arb_hop_payload()) {
            prop_assert_eq!(HopPayload::decode(&p.encode()), Ok(p));
        }

        #[test]
        fn hop_payload_decode_never_panics(bytes in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..80),
            // Near-valid input: a plausible type byte and a length around the real ones.
            (0u8..5, proptest::collection::vec(any::<u8>(), 40..60)).prop_map(|(t, mut v)| {
                v.insert(0, t);
                v
            }),
        ]) {
            if let Ok(p) = HopPayload::decode(&bytes) {
                prop_assert_eq!(p.encode(), bytes);
            }
        }
    }
}
