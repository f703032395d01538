//! Tests of onion construction and peeling, including the BOLT #4 vector.

use super::*;
use crate::HopPayload;
use proptest::prelude::*;
use serde_json::Value;

const AD: [u8; 32] = [0x42; 32];

fn sk(b: u8) -> SecretKey {
    SecretKey::from_byte_array([b; 32]).unwrap()
}

fn pk(s: &SecretKey) -> PublicKey {
    PublicKey::from_secret_key(&Secp256k1::signing_only(), s)
}

/// A route's node keys, `build` input and the payloads it carries.
type Route = (Vec<SecretKey>, Vec<(PublicKey, Vec<u8>)>, Vec<HopPayload>);

/// Node keys 0x01.., 0x02.., ... and a payload per hop: Forward to the next
/// hop's made-up address, Final at the end.
fn route(n: usize) -> Route {
    let keys: Vec<SecretKey> = (1..=n as u8).map(sk).collect();
    let payloads: Vec<HopPayload> = (0..n)
        .map(|i| {
            if i + 1 == n {
                HopPayload::Final {
                    amount: 1_000_000_000_000_000_000,
                    expiry: 1_000 + i as u64,
                    secret: [0x5e; 32],
                    spontaneous: false,
                }
            } else {
                HopPayload::Forward {
                    next: [i as u8 + 1; 20],
                    amount: 1_000_000_000_000_000_000 + (n - i) as u128,
                    expiry: 2_000 - i as u64,
                }
            }
        })
        .collect();
    let hops = keys.iter().zip(&payloads).map(|(k, p)| (pk(k), p.encode())).collect();
    (keys, hops, payloads)
}

/// Peels `packet` hop by hop; returns each hop's result.
fn peel_all(keys: &[SecretKey], packet: &OnionPacket, ad: &[u8; 32]) -> Vec<Peeled> {
    let mut out = Vec::new();
    let mut current = Some(packet.clone());
    for k in keys {
        let p = peel(k, current.as_ref().expect("route ended early"), ad).unwrap();
        current = p.next.clone();
        out.push(p);
    }
    assert!(current.is_none(), "last hop must be final");
    out
}

fn h(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

/// `bolt04/onion-test.json` (lightning/bolts a3772650): build from the
/// session key, hop keys and payloads gives the vector's onion byte for byte;
/// each hop's private key peels its payload; the last hop is final.
#[test]
fn bolt04_onion_vector_build_and_peel() {
    let v: Value = serde_json::from_str(include_str!("../../tests/vectors/onion-test.json")).unwrap();
    let g = &v["generate"];
    let session = SecretKey::from_byte_array(h(g["session_key"].as_str().unwrap()).try_into().unwrap()).unwrap();
    let ad: [u8; 32] = h(g["associated_data"].as_str().unwrap()).try_into().unwrap();
    let hops: Vec<(PublicKey, Vec<u8>)> = g["hops"]
        .as_array()
        .unwrap()
        .iter()
        .map(|hop| {
            let key = PublicKey::from_slice(&h(hop["pubkey"].as_str().unwrap())).unwrap();
            // The vector's payloads carry their BigSize length prefix: strip it.
            let raw = h(hop["payload"].as_str().unwrap());
            let (len, prefix) = bigsize::decode(&raw).unwrap();
            assert_eq!(raw.len(), prefix + len as usize);
            (key, raw[prefix..].to_vec())
        })
        .collect();
    assert_eq!(hops.len(), 5);

    let (packet, secrets) = build(&session, &hops, &ad).unwrap();
    assert_eq!(hex::encode(packet.to_bytes()), v["onion"].as_str().unwrap());

    // The error vector was made with the same session key and hop keys: its
    // shared secrets must be the ones `build` returns.
    let e: Value = serde_json::from_str(include_str!("../../tests/vectors/onion-error-test.json")).unwrap();
    let expected: Vec<String> = e["generate"]["hops"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["hop_shared_secret"].as_str().unwrap().to_string())
        .collect();
    let got: Vec<String> = secrets.iter().map(hex::encode).collect();
    assert_eq!(got, expected);

    let parsed = OnionPacket::from_bytes(&h(v["onion"].as_str().unwrap())).unwrap();
    assert_eq!(parsed, packet);
    let keys: Vec<SecretKey> = v["decode"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| SecretKey::from_byte_array(h(k.as_str().unwrap()).try_into().unwrap()).unwrap())
        .collect();
    for (k, (node, _)) in keys.iter().zip(&hops) {
        assert_eq!(&pk(k), node);
    }
    let peeled = peel_all(&keys, &parsed, &ad);
    for (i, (p, (_, payload))) in peeled.iter().zip(&hops).enumerate() {
        assert_eq!(&p.payload, payload, "hop {i}");
        assert_eq!(p.shared_secret, secrets[i], "hop {i}");
        assert_eq!(p.next.is_none(), i == 4);
    }
}

/// Node keys for a route of `n` hops with raw payloads of `len` bytes.
fn raw_route(n: usize, len: usize) -> (Vec<SecretKey>, Vec<(PublicKey, Vec<u8>)>) {
    let keys: Vec<SecretKey> = (1..=n as u8).map(sk).collect();
    let hops = keys.iter().enumerate().map(|(i, k)| (pk(k), vec![i as u8; len])).collect();
    (keys, hops)
}

#[test]
fn round_trip_1_2_5_16_hops_of_hop_payloads() {
    for n in [1, 2, 5, HopPayload::MAX_ROUTE_LEN] {
        let (keys, hops, payloads) = route(n);
        let (packet, secrets) = build(&sk(0x77), &hops, &AD).unwrap();
        assert_eq!(secrets.len(), n);
        let peeled = peel_all(&keys, &packet, &AD);
        for (i, p) in peeled.iter().enumerate() {
            assert_eq!(HopPayload::decode(&p.payload).unwrap(), payloads[i]);
            assert_eq!(p.shared_secret, secrets[i]);
        }
    }
}

/// 20 hops (the onion's maximum) with 30-byte raw payloads: 20 × 63 = 1260 bytes.
#[test]
fn round_trip_20_hops_of_small_payloads() {
    let (keys, hops) = raw_route(MAX_HOPS, 30);
    let (packet, secrets) = build(&sk(0x78), &hops, &AD).unwrap();
    let peeled = peel_all(&keys, &packet, &AD);
    for (i, p) in peeled.iter().enumerate() {
        assert_eq!(p.payload, hops[i].1);
        assert_eq!(p.shared_secret, secrets[i]);
    }
}

/// `HopPayload::MAX_ROUTE_LEN` is exact: one more hop does not fit.
#[test]
fn hop_payload_route_limit_is_exact() {
    let (_, hops, _) = route(HopPayload::MAX_ROUTE_LEN + 1);
    assert_eq!(
        build(&sk(0x79), &hops, &AD),
        Err(Error::PayloadsTooLarge { needed: 1338, available: HOP_PAYLOADS_LEN })
    );
}

#[test]
fn packet_size_does_not_depend_on_route_length() {
    for n in 1..=MAX_HOPS {
        let (keys, hops) = raw_route(n, 30);
        let (packet, _) = build(&sk(0x10), &hops, &AD).unwrap();
        let bytes = packet.to_bytes();
        assert_eq!(bytes.len(), PACKET_LEN);
        assert_eq!(OnionPacket::from_bytes(&bytes).unwrap(), packet);
        // Every packet forwarded along the way has the same size too.
        let mut current = packet;
        for k in &keys {
            match peel(k, &current, &AD).unwrap().next {
                Some(next) => {
                    assert_eq!(next.to_bytes().len(), PACKET_LEN);
                    current = next;
                }
                None => break,
            }
        }
    }
}

#[test]
fn route_limits() {
    let (_, hops, _) = route(21);
    assert_eq!(build(&sk(1), &hops, &AD), Err(Error::TooManyHops(21)));
    assert_eq!(build(&sk(1), &[], &AD), Err(Error::NoHops));

    let node = pk(&sk(3));
    // 1 + 3 + 1265 + 32 = 1301 > 1300; the largest single payload is 1265.
    assert_eq!(
        build(&sk(1), &[(node, vec![0; 1266])], &AD),
        Err(Error::PayloadsTooLarge { needed: 3 + 1266 + 32, available: HOP_PAYLOADS_LEN })
    );
    let (packet, _) = build(&sk(1), &[(node, vec![0xab; 1265])], &AD).unwrap();
    assert_eq!(peel(&sk(3), &packet, &AD).unwrap().payload, vec![0xab; 1265]);
    // Payloads that fit one by one but not together.
    let two = vec![(node, vec![0; 700]), (node, vec![0; 700])];
    assert!(matches!(build(&sk(1), &two, &AD), Err(Error::PayloadsTooLarge { .. })));
    // A payload over any BigSize-prefixed size that could fit.
    assert!(matches!(build(&sk(1), &[(node, vec![0; 70_000])], &AD), Err(Error::PayloadsTooLarge { .. })));
    for len in [0, 1] {
        assert_eq!(build(&sk(1), &[(node, vec![0; len])], &AD), Err(Error::PayloadTooShort { hop: 0, len }));
    }
}

#[test]
fn flipped_bits_fail_hmac_at_the_hop() {
    let (keys, hops, _) = route(3);
    let (packet, _) = build(&sk(0x21), &hops, &AD).unwrap();
    let bytes = packet.to_bytes();
    // Positions in the hop payloads (start, middle, end) and in the HMAC.
    for pos in [34, 35, 100, 700, 1000, 34 + 1299, PACKET_LEN - 32, PACKET_LEN - 1] {
        for bit in [0x01, 0x80] {
            let mut t = bytes;
            t[pos] ^= bit;
            let tampered = OnionPacket::from_bytes(&t).unwrap();
            assert_eq!(peel(&keys[0], &tampered, &AD), Err(Error::BadHmac), "pos {pos}");
        }
    }
    // Tampering with the packet the second hop receives is caught there.
    let next = peel(&keys[0], &packet, &AD).unwrap().next.unwrap();
    let mut t = next.to_bytes();
    t[500] ^= 4;
    let tampered = OnionPacket::from_bytes(&t).unwrap();
    assert_eq!(peel(&keys[1], &tampered, &AD), Err(Error::BadHmac));
    // A different ephemeral key (still a valid point) gives another secret.
    let mut t = bytes;
    t[1..34].copy_from_slice(&pk(&sk(0x55)).serialize());
    let tampered = OnionPacket::from_bytes(&t).unwrap();
    assert_eq!(peel(&keys[0], &tampered, &AD), Err(Error::BadHmac));
}

#[test]
fn wrong_associated_data_or_key_fails_hmac() {
    let (keys, hops, _) = route(2);
    let (packet, _) = build(&sk(0x31), &hops, &AD).unwrap();
    assert_eq!(peel(&keys[0], &packet, &[0x43; 32]), Err(Error::BadHmac));
    assert_eq!(peel(&keys[1], &packet, &AD), Err(Error::BadHmac));
    assert_eq!(peel(&sk(0x99), &packet, &AD), Err(Error::BadHmac));
    let next = peel(&keys[0], &packet, &AD).unwrap().next.unwrap();
    assert_eq!(peel(&keys[1], &next, &[0; 32]), Err(Error::BadHmac));
}

#[test]
fn from_bytes_rejects_malformed_packets() {
    let (_, hops, _) = route(1);
    let bytes = build(&sk(2), &hops, &AD).unwrap().0.to_bytes();
    assert_eq!(
        OnionPacket::from_bytes(&bytes[..PACKET_LEN - 1]),
        Err(Error::BadPacketLength { expected: PACKET_LEN, actual: PACKET_LEN - 1 })
    );
    let mut long = bytes.to_vec();
    long.push(0);
    assert!(matches!(OnionPacket::from_bytes(&long), Err(Error::BadPacketLength { .. })));
    let mut t = bytes;
    t[0] = 1;
    assert_eq!(OnionPacket::from_bytes(&t), Err(Error::BadVersion(1)));
    let mut t = bytes;
    t[1] = 0x04; // not a compressed-key prefix
    assert_eq!(OnionPacket::from_bytes(&t), Err(Error::InvalidPublicKey));
    let mut t = bytes;
    t[1..34].copy_from_slice(&[0xff; 33]);
    assert_eq!(OnionPacket::from_bytes(&t), Err(Error::InvalidPublicKey));
}

/// A packet for `node` whose HMAC is right but whose decrypted hop payloads
/// are `plain`: reaches the parsing that follows the HMAC check.
pub(crate) fn authentic_packet(
    node: &SecretKey,
    ephemeral: &SecretKey,
    plain: &[u8; HOP_PAYLOADS_LEN],
    ad: &[u8; 32],
) -> OnionPacket {
    let public_key = pk(ephemeral);
    let ss = SharedSecret::new(&pk(node), ephemeral).secret_bytes();
    let mut hop_payloads = *plain;
    xor_stream(&derive_key(RHO, &ss), &mut hop_payloads);
    let hmac = hmac_sha256(&derive_key(MU, &ss), &[&hop_payloads, ad]);
    OnionPacket { public_key, hop_payloads, hmac }
}

#[test]
fn bad_length_prefix_is_a_typed_error() {
    let node = sk(0x61);
    let eph = sk(0x62);
    let cases: [(&[u8], Error); 6] = [
        (&[0x00], Error::BadPayloadLength(0)),
        (&[0x01], Error::BadPayloadLength(1)),
        (&[0xfd, 0x00, 0x10], Error::BadLengthPrefix),
        (&[0xfd, 0x04, 0xf3], Error::BadPayloadLength(1267)), // 3 + 1267 + 32 > 1300
        (&[0xfe, 0x00, 0x01, 0x00, 0x00], Error::BadPayloadLength(65536)),
        (&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], Error::BadPayloadLength(u64::MAX)),
    ];
    for (prefix, err) in cases {
        let mut plain = [0u8; HOP_PAYLOADS_LEN];
        plain[..prefix.len()].copy_from_slice(prefix);
        let packet = authentic_packet(&node, &eph, &plain, &AD);
        assert_eq!(peel(&node, &packet, &AD), Err(err), "{prefix:02x?}");
    }
    // The largest payload that fits is accepted.
    let mut plain = [0u8; HOP_PAYLOADS_LEN];
    plain[..3].copy_from_slice(&[0xfd, 0x04, 0xf1]); // 1265
    let packet = authentic_packet(&node, &eph, &plain, &AD);
    let p = peel(&node, &packet, &AD).unwrap();
    assert_eq!(p.payload.len(), 1265);
    assert!(p.next.is_none());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Arbitrary bytes: `from_bytes` and `peel` return errors, never panic.
    #[test]
    fn peel_never_panics_on_arbitrary_bytes(
        mut bytes in proptest::collection::vec(any::<u8>(), PACKET_LEN - 2..PACKET_LEN + 2),
        valid_key in any::<bool>(),
        key_byte in 1u8..=254,
    ) {
        if valid_key && bytes.len() == PACKET_LEN {
            bytes[0] = VERSION;
            bytes[1..34].copy_from_slice(&pk(&sk(key_byte)).serialize());
        }
        if let Ok(packet) = OnionPacket::from_bytes(&bytes) {
            prop_assert_eq!(packet.to_bytes().to_vec(), bytes);
            let r = peel(&sk(0x33), &packet, &AD);
            prop_assert!(r.is_err());
        }
    }

    /// Authentic HMAC over arbitrary decrypted content (a malicious sender):
    /// peel parses it without panicking, and whatever it returns is consistent.
    #[test]
    fn peel_never_panics_on_authentic_garbage(
        head in proptest::collection::vec(any::<u8>(), 0..16),
        fill in any::<u8>(),
        eph_byte in 1u8..=254,
    ) {
        let node = sk(0x44);
        let mut plain = [fill; HOP_PAYLOADS_LEN];
        plain[..head.len()].copy_from_slice(&head);
        let packet = authentic_packet(&node, &sk(eph_byte), &plain, &AD);
        match peel(&node, &packet, &AD) {
            Ok(p) => {
                prop_assert!(p.payload.len() >= 2);
                prop_assert!(p.payload.len() <= HOP_PAYLOADS_LEN - 33);
            }
            Err(e) => prop_assert!(matches!(
                e,
                Error::BadLengthPrefix | Error::BadPayloadLength(_)
            )),
        }
    }

    /// Random routes of HopPayloads round-trip through build and peel.
    #[test]
    fn random_routes_round_trip(
        payloads in proptest::collection::vec(crate::payload::tests::arb_hop_payload(), 1..=MAX_HOPS),
        session in 1u8..=254,
    ) {
        let keys: Vec<SecretKey> = (0..payloads.len()).map(|i| sk(i as u8 + 100)).collect();
        let hops: Vec<(PublicKey, Vec<u8>)> =
            keys.iter().zip(&payloads).map(|(k, p)| (pk(k), p.encode())).collect();
        let fits = hops.iter().map(|(_, p)| shift_size(p.len())).sum::<usize>() <= HOP_PAYLOADS_LEN;
        match build(&sk(session), &hops, &AD) {
            Ok((packet, _)) => {
                prop_assert!(fits);
                let peeled = peel_all(&keys, &packet, &AD);
                for (p, want) in peeled.iter().zip(&payloads) {
                    prop_assert_eq!(&HopPayload::decode(&p.payload).unwrap(), want);
                }
            }
            Err(e) => {
                prop_assert!(!fits);
                let is_too_large = matches!(e, Error::PayloadsTooLarge { .. });
                prop_assert!(is_too_large);
            }
        }
    }
}
