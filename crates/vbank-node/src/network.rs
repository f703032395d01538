//! The payment network's data (DESIGN §3): invoices, node announcements, the channel graph and
//! routing. Pure: no I/O, no clock (times are passed in).

use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};

use alloy_primitives::{Address, B256, keccak256};
use alloy_signer_local::PrivateKeySigner;
use serde::{Deserialize, Serialize};
use vbank_core::{Amount, Sig, recover_hash, sign_hash};

use crate::{NodeUri, noise::compressed};

/// Why an invoice, an announcement or a route is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetError {
    /// The invoice string is malformed.
    #[error("not a vbank invoice: {0}")]
    BadInvoice(String),
    /// The signature does not match the node key.
    #[error("the {0} is not signed by the node it names")]
    BadSignature(&'static str),
    /// The announcement is malformed or not acceptable now.
    #[error("announcement refused: {0}")]
    BadAnnouncement(String),
    /// A signing failure.
    #[error("signing: {0}")]
    Signing(String),
}

const INVOICE_PREFIX: &str = "vbi1";
const INVOICE_VERSION: u8 = 1;
/// The longest memo an invoice carries (bytes of UTF-8).
pub const MAX_MEMO: usize = 512;

/// A payee's signed request to be paid (DESIGN §3): one copy-pasteable string, `vbi1<hex>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invoice {
    /// The chain the payment is made on.
    pub chain_id: u64,
    /// The payee's node.
    pub payee: NodeUri,
    /// `sha256(preimage)`: the lock hash of the payment.
    pub hash: B256,
    /// What is asked, in wei of `token`.
    pub amount: Amount,
    /// The ERC-20 token, zero for ETH.
    pub token: Address,
    /// Unix seconds after which the payee no longer accepts the payment.
    pub expires_at: u64,
    /// The payment secret: only the payer learns it, and the last hop's instructions must carry
    /// it (so an intermediary cannot probe or claim the payment as the payee).
    pub secret: B256,
    /// What the payment is for.
    pub memo: String,
    signature: Sig,
}

fn put_str(out: &mut Vec<u8>, s: &str, len_bytes: usize) {
    let n = s.len();
    out.extend_from_slice(&n.to_be_bytes()[8 - len_bytes..]);
    out.extend_from_slice(s.as_bytes());
}

/// Reads fields off a byte string, with clear errors.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], NetError> {
        if self.0.len() < n {
            return Err(NetError::BadInvoice(format!("it ends before its {what}")));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], NetError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, what)?);
        Ok(a)
    }

    fn string(&mut self, len_bytes: usize, max: usize, what: &str) -> Result<String, NetError> {
        let mut len = [0u8; 8];
        len[8 - len_bytes..].copy_from_slice(self.take(len_bytes, what)?);
        let n = usize::try_from(u64::from_be_bytes(len)).unwrap_or(usize::MAX);
        if n > max {
            return Err(NetError::BadInvoice(format!("its {what} is longer than {max} bytes")));
        }
        String::from_utf8(self.take(n, what)?.to_vec())
            .map_err(|_| NetError::BadInvoice(format!("its {what} is not UTF-8")))
    }
}

impl Invoice {
    /// A new invoice signed by `signer`, the party of the node at `payee`.
    #[allow(clippy::too_many_arguments)]
    pub fn sign(
        signer: &PrivateKeySigner,
        chain_id: u64,
        payee: NodeUri,
        hash: B256,
        amount: Amount,
        token: Address,
        expires_at: u64,
        secret: B256,
        memo: &str,
    ) -> Result<Self, NetError> {
        if memo.len() > MAX_MEMO {
            return Err(NetError::BadInvoice(format!("a memo has at most {MAX_MEMO} bytes")));
        }
        if payee.address() != signer.address() {
            return Err(NetError::Signing("the payee URI is not this party's node".into()));
        }
        let mut inv = Self {
            chain_id,
            payee,
            hash,
            amount,
            token,
            expires_at,
            secret,
            memo: memo.to_string(),
            signature: Sig([0; 65]),
        };
        inv.signature = sign_hash(signer, &inv.digest()).map_err(|e| NetError::Signing(e.to_string()))?;
        Ok(inv)
    }

    fn body(&self) -> Vec<u8> {
        let mut b = vec![INVOICE_VERSION];
        b.extend_from_slice(&self.chain_id.to_be_bytes());
        b.extend_from_slice(&compressed(self.payee.key()));
        put_str(&mut b, self.payee.host(), 1);
        b.extend_from_slice(&self.payee.port().to_be_bytes());
        b.extend_from_slice(self.hash.as_slice());
        b.extend_from_slice(&self.amount.to_be_bytes());
        b.extend_from_slice(self.token.as_slice());
        b.extend_from_slice(&self.expires_at.to_be_bytes());
        b.extend_from_slice(self.secret.as_slice());
        put_str(&mut b, &self.memo, 2);
        b
    }

    fn digest(&self) -> B256 {
        keccak256([b"vbank invoice v1".as_slice(), &self.body()].concat())
    }

    /// The payee's party address.
    pub fn payee_address(&self) -> Address {
        self.payee.address()
    }

    /// The invoice as one string.
    pub fn encode(&self) -> String {
        let mut b = self.body();
        b.extend_from_slice(&self.signature.0);
        format!("{INVOICE_PREFIX}{}", hex::encode(b))
    }

    /// Reads an invoice string and checks its signature against the payee's node key.
    pub fn decode(s: &str) -> Result<Self, NetError> {
        let s = s.trim();
        let hex_part = s
            .strip_prefix(INVOICE_PREFIX)
            .ok_or_else(|| NetError::BadInvoice(format!("it must start with {INVOICE_PREFIX}")))?;
        let bytes = hex::decode(hex_part).map_err(|_| NetError::BadInvoice("it is not hex after vbi1".into()))?;
        let mut r = Reader(&bytes);
        let version = r.array::<1>("version")?[0];
        if version != INVOICE_VERSION {
            return Err(NetError::BadInvoice(format!("version {version} is not known here")));
        }
        let chain_id = u64::from_be_bytes(r.array("chain id")?);
        let key: [u8; 33] = r.array("payee key")?;
        let key = crate::noise::parse_compressed(&key)
            .map_err(|_| NetError::BadInvoice("the payee key is not a secp256k1 public key".into()))?;
        let host = r.string(1, 255, "payee host")?;
        let port = u16::from_be_bytes(r.array("payee port")?);
        let payee: NodeUri = NodeUri::new(key, host.clone(), port)
            .to_string()
            .parse()
            .map_err(|e| NetError::BadInvoice(format!("the payee's address {host}:{port}: {e}")))?;
        let hash = B256::from(r.array::<32>("payment hash")?);
        let amount = Amount::from_be_bytes(r.array("amount")?);
        let token = Address::from(r.array::<20>("token")?);
        let expires_at = u64::from_be_bytes(r.array("expiry")?);
        let secret = B256::from(r.array::<32>("payment secret")?);
        let memo = r.string(2, MAX_MEMO, "memo")?;
        let signature = Sig(r.array("signature")?);
        if !r.0.is_empty() {
            return Err(NetError::BadInvoice(format!("{} bytes follow the signature", r.0.len())));
        }
        let inv = Self { chain_id, payee, hash, amount, token, expires_at, secret, memo, signature };
        if recover_hash(&inv.signature, &inv.digest()) != Some(inv.payee_address()) {
            return Err(NetError::BadSignature("invoice"));
        }
        Ok(inv)
    }
}

/// What a forwarding node charges and takes, signed by its party key and relayed between linked
/// nodes (DESIGN §3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announcement {
    /// Where the node listens, and its key.
    pub uri: String,
    /// Fee per forwarded payment, in wei.
    pub fee_base: Amount,
    /// Fee per million of the forwarded amount.
    pub fee_ppm: u32,
    /// The shortest time (seconds) before expiry it takes a lock with.
    pub min_window: u64,
    /// When it was made (unix seconds): a newer one replaces an older one.
    pub timestamp: u64,
    /// The party key's signature.
    pub signature: Sig,
}

/// How far in the future an announcement's timestamp may be.
const ANNOUNCEMENT_SKEW: u64 = 600;
/// An announcement replaces the node's previous one only this long after it (rate limit).
pub const ANNOUNCEMENT_INTERVAL: u64 = 10;

impl Announcement {
    /// A new announcement signed by `signer` (its node at `uri`).
    pub fn sign(
        signer: &PrivateKeySigner,
        uri: &NodeUri,
        fee_base: Amount,
        fee_ppm: u32,
        min_window: u64,
        timestamp: u64,
    ) -> Result<Self, NetError> {
        let mut a = Self { uri: uri.to_string(), fee_base, fee_ppm, min_window, timestamp, signature: Sig([0; 65]) };
        a.signature = sign_hash(signer, &a.digest()).map_err(|e| NetError::Signing(e.to_string()))?;
        Ok(a)
    }

    fn digest(&self) -> B256 {
        let mut b = b"vbank announcement v1".to_vec();
        b.extend_from_slice(&(self.uri.len() as u64).to_be_bytes());
        b.extend_from_slice(self.uri.as_bytes());
        b.extend_from_slice(&self.fee_base.to_be_bytes());
        b.extend_from_slice(&self.fee_ppm.to_be_bytes());
        b.extend_from_slice(&self.min_window.to_be_bytes());
        b.extend_from_slice(&self.timestamp.to_be_bytes());
        keccak256(b)
    }

    /// The node's URI, after checking the signature.
    pub fn verify(&self) -> Result<NodeUri, NetError> {
        let uri: NodeUri = self.uri.parse().map_err(|e: crate::UriError| NetError::BadAnnouncement(e.to_string()))?;
        if recover_hash(&self.signature, &self.digest()) != Some(uri.address()) {
            return Err(NetError::BadSignature("announcement"));
        }
        Ok(uri)
    }

    /// The fee for forwarding `amount`, or `None` if it overflows.
    pub fn fee(&self, amount: Amount) -> Option<Amount> {
        let proportional = amount.checked_mul(Amount::from(self.fee_ppm))? / 1_000_000;
        self.fee_base.checked_add(proportional)
    }
}

/// A channel in the graph, from the factory's `ChannelOpened` log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GraphChannel {
    /// The channel's contract.
    pub id: Address,
    /// Party 0 and party 1.
    pub parties: [Address; 2],
    /// Both deposits together: no lock can be larger.
    pub capacity: Amount,
    /// The token, zero for ETH.
    pub token: Address,
}

/// One hop of a route: a lock on `channel` to `node`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hop {
    /// The channel the lock is added to.
    pub channel: Address,
    /// The node the lock goes to.
    pub node: Address,
    /// How much the lock holds (the amount to deliver plus the fees of the hops after it).
    pub amount: Amount,
}

/// A route from the payer: the first hop is on one of the payer's channels, the last reaches
/// the payee.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The hops, in order.
    pub hops: Vec<Hop>,
}

impl Route {
    /// What the payer locks (the amount and every fee).
    pub fn total(&self) -> Amount {
        self.hops.first().map_or(0, |h| h.amount)
    }

    /// The fees the intermediaries take.
    pub fn fees(&self) -> Amount {
        self.total() - self.hops.last().map_or(0, |h| h.amount)
    }

    /// The channels it uses.
    pub fn channels(&self) -> impl Iterator<Item = Address> + '_ {
        self.hops.iter().map(|h| h.channel)
    }
}

/// One of the payer's own channels, as a first hop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FirstHop {
    /// The channel.
    pub channel: Address,
    /// Its other party.
    pub peer: Address,
    /// What the payer can lock on it now.
    pub spendable: Amount,
    /// Its token.
    pub token: Address,
}

/// The most nodes an announcement table keeps (a hostile flood cannot grow it further).
pub const MAX_NODES: usize = 10_000;
/// The most channels the graph keeps.
pub const MAX_CHANNELS: usize = 100_000;

/// What a node knows of the network: channels (from the chain) and node announcements (from
/// peers).
#[derive(Debug, Clone, Default)]
pub struct Graph {
    nodes: HashMap<Address, Announcement>,
    channels: BTreeMap<Address, GraphChannel>,
}

impl Graph {
    /// Adds (or replaces) a channel; false if the graph is full.
    pub fn add_channel(&mut self, c: GraphChannel) -> bool {
        if self.channels.len() >= MAX_CHANNELS && !self.channels.contains_key(&c.id) {
            return false;
        }
        self.channels.insert(c.id, c);
        true
    }

    /// Removes a channel (closed on chain).
    pub fn remove_channel(&mut self, id: Address) {
        self.channels.remove(&id);
    }

    /// Takes an announcement if it is genuine, not from the future, and newer than the node's
    /// last one by at least [`ANNOUNCEMENT_INTERVAL`]: then it is new (to be stored and relayed).
    pub fn accept(&mut self, a: Announcement, now: u64) -> Result<bool, NetError> {
        let uri = a.verify()?;
        if a.timestamp > now.saturating_add(ANNOUNCEMENT_SKEW) {
            return Err(NetError::BadAnnouncement(format!("its time {} is in the future", a.timestamp)));
        }
        let node = uri.address();
        match self.nodes.get(&node) {
            Some(old) if a.timestamp < old.timestamp.saturating_add(ANNOUNCEMENT_INTERVAL) => return Ok(false),
            None if self.nodes.len() >= MAX_NODES => return Ok(false),
            _ => {}
        }
        self.nodes.insert(node, a);
        Ok(true)
    }

    /// A node's announcement.
    pub fn node(&self, node: &Address) -> Option<&Announcement> {
        self.nodes.get(node)
    }

    /// Every announcement known.
    pub fn nodes(&self) -> impl Iterator<Item = &Announcement> {
        self.nodes.values()
    }

    /// Every channel known.
    pub fn channels(&self) -> impl Iterator<Item = &GraphChannel> {
        self.channels.values()
    }

    /// The cheapest route (fees, then length) from `payer` to `payee` for `amount` of `token`,
    /// over `first` (the payer's own channels, with what it can spend on each) and the graph's
    /// channels, avoiding `exclude`, with at most `max_hops` hops. Intermediaries must have
    /// announced themselves (their fees and key are needed); a channel must hold the amount.
    #[allow(clippy::too_many_arguments)]
    pub fn route(
        &self,
        payer: Address,
        payee: Address,
        amount: Amount,
        token: Address,
        first: &[FirstHop],
        exclude: &HashSet<Address>,
        max_hops: usize,
    ) -> Option<Route> {
        if amount == 0 || payer == payee {
            return None;
        }
        // Backwards from the payee: `need[v]` is what v must receive to deliver `amount`.
        #[derive(PartialEq, Eq, PartialOrd, Ord)]
        struct Item(std::cmp::Reverse<(Amount, usize)>, Address);
        let mut adjacent: HashMap<Address, Vec<(Address, Address, Amount)>> = HashMap::new();
        for c in self.channels.values().filter(|c| c.token == token && !exclude.contains(&c.id)) {
            for (a, b) in [(c.parties[0], c.parties[1]), (c.parties[1], c.parties[0])] {
                // The payer's own channels count only through `first` (it knows their balances).
                if a != payer && b != payer {
                    adjacent.entry(b).or_default().push((a, c.id, c.capacity));
                }
            }
        }
        for f in first.iter().filter(|f| f.token == token && !exclude.contains(&f.channel)) {
            adjacent.entry(f.peer).or_default().push((payer, f.channel, f.spendable));
        }
        let mut need: HashMap<Address, (Amount, usize)> = HashMap::from([(payee, (amount, 0))]);
        // next hop from each node towards the payee: (channel, next node)
        let mut next: HashMap<Address, (Address, Address)> = HashMap::new();
        let mut heap = BinaryHeap::from([Item(std::cmp::Reverse((amount, 0)), payee)]);
        let mut done = HashSet::new();
        while let Some(Item(std::cmp::Reverse((v_need, v_hops)), v)) = heap.pop() {
            if !done.insert(v) {
                continue;
            }
            if v == payer {
                break;
            }
            if v_hops >= max_hops {
                continue;
            }
            for &(u, channel, capacity) in adjacent.get(&v).map_or(&[][..], Vec::as_slice) {
                if done.contains(&u) || capacity < v_need {
                    continue;
                }
                // u forwards to v: it adds its fee (the payer adds none).
                let u_need = if u == payer {
                    v_need
                } else {
                    let Some(a) = self.nodes.get(&u) else { continue };
                    match a.fee(v_need).and_then(|f| v_need.checked_add(f)) {
                        Some(n) => n,
                        None => continue,
                    }
                };
                let better = need.get(&u).is_none_or(|&(n, h)| (u_need, v_hops + 1) < (n, h));
                if better {
                    need.insert(u, (u_need, v_hops + 1));
                    next.insert(u, (channel, v));
                    heap.push(Item(std::cmp::Reverse((u_need, v_hops + 1)), u));
                }
            }
        }
        if !done.contains(&payer) {
            return None;
        }
        let mut hops = Vec::new();
        let mut at = payer;
        while at != payee {
            let &(channel, to) = next.get(&at)?;
            hops.push(Hop { channel, node: to, amount: need.get(&to)?.0 });
            at = to;
            if hops.len() > max_hops {
                return None;
            }
        }
        Some(Route { hops })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> PrivateKeySigner {
        PrivateKeySigner::from_bytes(&B256::repeat_byte(n)).expect("key")
    }

    fn uri(n: u8) -> NodeUri {
        NodeUri::of(&key(n), format!("127.0.0.1:{}", 9000 + u16::from(n)).parse().expect("addr"))
    }

    fn announce(n: u8, base: Amount, ppm: u32) -> Announcement {
        Announcement::sign(&key(n), &uri(n), base, ppm, 600, 1_000).expect("sign")
    }

    fn channel(id: u8, a: u8, b: u8, capacity: Amount) -> GraphChannel {
        GraphChannel {
            id: Address::repeat_byte(id),
            parties: [key(a).address(), key(b).address()],
            capacity,
            token: Address::ZERO,
        }
    }

    #[test]
    fn invoices_round_trip_and_refuse_tampering() {
        let inv = Invoice::sign(
            &key(4),
            31337,
            uri(4),
            B256::repeat_byte(1),
            10_000,
            Address::ZERO,
            2_000_000_000,
            B256::repeat_byte(2),
            "coffee ☕",
        )
        .expect("sign");
        let s = inv.encode();
        assert!(s.starts_with("vbi1"));
        assert_eq!(Invoice::decode(&s).expect("decode"), inv);
        assert_eq!(Invoice::decode(&format!("  {s}\n")).expect("whitespace is trimmed"), inv);
        // Every hex digit changed is caught: by the signature, or as a malformed field.
        for i in (4..s.len()).step_by(7) {
            let mut t = s.clone().into_bytes();
            t[i] = if t[i] == b'0' { b'1' } else { b'0' };
            let t = String::from_utf8(t).expect("utf8");
            assert!(Invoice::decode(&t).is_err(), "position {i} changed and accepted");
        }
        assert!(matches!(Invoice::decode("lnbc1xyz"), Err(NetError::BadInvoice(_))));
        assert!(matches!(Invoice::decode(&s[..s.len() - 2]), Err(NetError::BadInvoice(_))));
        assert!(matches!(Invoice::decode(&format!("{s}00")), Err(NetError::BadInvoice(_))));
        // Signed by another key than the payee's: refused.
        assert!(
            Invoice::sign(&key(5), 1, uri(4), B256::ZERO, 1, Address::ZERO, 1, B256::ZERO, "").is_err(),
            "only the payee signs its invoices"
        );
        assert!(
            Invoice::sign(&key(4), 1, uri(4), B256::ZERO, 1, Address::ZERO, 1, B256::ZERO, &"x".repeat(513)).is_err()
        );
    }

    #[test]
    fn announcements_are_verified_rate_limited_and_bounded_in_time() {
        let mut g = Graph::default();
        let a = announce(1, 10, 100);
        assert_eq!(g.accept(a.clone(), 1_000), Ok(true));
        assert_eq!(g.accept(a.clone(), 1_000), Ok(false), "a duplicate is not new (not relayed)");
        let mut forged = a.clone();
        forged.fee_base = 0;
        assert_eq!(g.accept(forged, 1_000), Err(NetError::BadSignature("announcement")));
        let soon = Announcement::sign(&key(1), &uri(1), 0, 0, 600, 1_005).expect("sign");
        assert_eq!(g.accept(soon, 1_005), Ok(false), "rate-limited");
        let later = Announcement::sign(&key(1), &uri(1), 0, 0, 600, 1_010).expect("sign");
        assert_eq!(g.accept(later, 1_010), Ok(true));
        let future = Announcement::sign(&key(2), &uri(2), 0, 0, 600, 10_000).expect("sign");
        assert!(matches!(g.accept(future, 1_000), Err(NetError::BadAnnouncement(_))));
        assert_eq!(a.fee(1_000_000), Some(110));
    }

    #[test]
    fn routes_are_cheapest_then_shortest_within_capacity_and_hops() {
        // 1 pays 4: 1-2-4 (node 2 charges 50) or 1-3-4 (node 3 charges 10); 1-5-6-4 is free.
        let mut g = Graph::default();
        for (n, base) in [(2, 50), (3, 10), (5, 0), (6, 0)] {
            assert_eq!(g.accept(announce(n, base, 0), 1_000), Ok(true));
        }
        for c in [channel(12, 1, 2, 10_000), channel(24, 2, 4, 10_000), channel(13, 1, 3, 10_000)] {
            g.add_channel(c);
        }
        g.add_channel(channel(34, 3, 4, 10_000));
        let first = |peers: &[(u8, u8)]| -> Vec<FirstHop> {
            peers
                .iter()
                .map(|&(id, p)| FirstHop {
                    channel: Address::repeat_byte(id),
                    peer: key(p).address(),
                    spendable: 5_000,
                    token: Address::ZERO,
                })
                .collect()
        };
        let (payer, payee) = (key(1).address(), key(4).address());
        let hops = first(&[(12, 2), (13, 3), (15, 5)]);
        let none = HashSet::new();
        let r = g.route(payer, payee, 1_000, Address::ZERO, &hops, &none, 16).expect("route");
        assert_eq!(r.channels().collect::<Vec<_>>(), [Address::repeat_byte(13), Address::repeat_byte(34)]);
        assert_eq!((r.total(), r.fees()), (1_010, 10));
        // The cheaper one excluded (it failed): the other.
        let r = g.route(payer, payee, 1_000, Address::ZERO, &hops, &HashSet::from([Address::repeat_byte(34)]), 16);
        assert_eq!(r.expect("route").fees(), 50);
        // Free but longer: taken when it is cheaper, not when the hop limit forbids it.
        g.add_channel(channel(15, 1, 5, 10_000));
        g.add_channel(channel(56, 5, 6, 10_000));
        g.add_channel(channel(64, 6, 4, 10_000));
        let r = g.route(payer, payee, 1_000, Address::ZERO, &hops, &none, 16).expect("route");
        assert_eq!((r.hops.len(), r.fees()), (3, 0));
        assert_eq!(g.route(payer, payee, 1_000, Address::ZERO, &hops, &none, 2).expect("route").fees(), 10);
        // Over every channel's capacity, or the payer's spendable balance: no route.
        assert!(g.route(payer, payee, 6_000, Address::ZERO, &hops, &none, 16).is_none());
        // Another token: no route.
        assert!(g.route(payer, payee, 10, Address::repeat_byte(9), &hops, &none, 16).is_none());
        // A node that did not announce itself does not forward.
        let mut g2 = Graph::default();
        g2.add_channel(channel(24, 2, 4, 10_000));
        assert!(g2.route(payer, payee, 10, Address::ZERO, &first(&[(12, 2)]), &none, 16).is_none());
        // A direct channel needs no graph at all.
        let direct = Graph::default().route(payer, payee, 10, Address::ZERO, &first(&[(14, 4)]), &none, 16);
        assert_eq!(direct.expect("direct").hops, [Hop { channel: Address::repeat_byte(14), node: payee, amount: 10 }]);
    }
}
