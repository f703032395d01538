//! Payments through intermediaries between services in one process (over loopback, without a
//! chain): invoices, announcements relayed between linked nodes, routing by fee, forwarding with
//! fees, a failed route retried on the next one, a payee that does not know the hash, and a
//! paid invoice paid again (once). Balances are checked to the wei on every node.

use std::{collections::HashMap, sync::Arc, time::Duration};

use alloy_primitives::{Address, B256};
use alloy_signer_local::PrivateKeySigner;
use tokio::net::TcpListener;
use vbank_core::ChannelParams;
use vbank_node::{
    Admission, ForwardFees, MemoryStore, Node, PayOptions, PaymentStatus, Service, network::GraphChannel,
};

const T: Duration = Duration::from_secs(30);
const DEPOSIT: u128 = 1_000_000;

fn key(n: u8) -> PrivateKeySigner {
    PrivateKeySigner::from_bytes(&B256::with_last_byte(n)).expect("key")
}

/// Admits any channel whose parameters the opening carries (no chain in these tests).
fn admit_all() -> Admission {
    Arc::new(|_channel: Address, _peer: Address, params: Option<ChannelParams>| {
        Box::pin(async move { params.ok_or_else(|| "no parameters".to_string()) })
    })
}

struct Net {
    nodes: HashMap<u8, Service<MemoryStore>>,
    channels: Vec<(u8, u8, Address)>,
}

impl Net {
    async fn start(names: &[u8]) -> Self {
        let mut nodes = HashMap::new();
        for &n in names {
            let node = Node::open(key(n), MemoryStore::default()).expect("node");
            let s = Service::new(node, key(n), Some(admit_all()));
            let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            s.listen(l);
            s.spawn_ticker(Duration::from_millis(100));
            nodes.insert(n, s);
        }
        Self { nodes, channels: Vec::new() }
    }

    fn node(&self, n: u8) -> &Service<MemoryStore> {
        &self.nodes[&n]
    }

    /// `a` opens a channel to `b` (each deposits DEPOSIT); every node's graph learns it.
    async fn channel(&mut self, a: u8, b: u8) -> Address {
        let id = Address::repeat_byte(a * 16 + b);
        let params = ChannelParams {
            chain_id: 31337,
            contract: id,
            parties: [key(a).address(), key(b).address()],
            deposits: [DEPOSIT, DEPOSIT],
            lock_period: 3600,
            token: Address::ZERO,
            salt: B256::ZERO,
        };
        let uri = self.node(b).own_uri().expect("listening");
        self.node(a).connect(&uri).await.expect("connect");
        self.node(a).open(params.clone(), B256::repeat_byte(a), T).await.expect("open");
        for s in self.nodes.values() {
            s.add_graph_channel(GraphChannel {
                id,
                parties: params.parties,
                capacity: 2 * DEPOSIT,
                token: Address::ZERO,
            });
        }
        self.channels.push((a, b, id));
        id
    }

    /// Each node's balance over all its channels.
    async fn totals(&self) -> HashMap<u8, u128> {
        let mut out = HashMap::new();
        for (&n, s) in &self.nodes {
            let node = s.node().lock().await;
            let mut sum = 0;
            for id in node.channel_ids() {
                let c = node.channel(id).expect("channel");
                sum += c.balances()[c.me()];
            }
            out.insert(n, sum);
        }
        out
    }

    /// Waits until no channel holds a lock.
    async fn settled(&self) {
        let wait = async {
            loop {
                let mut locks = 0;
                for s in self.nodes.values() {
                    let node = s.node().lock().await;
                    locks +=
                        node.channel_ids().iter().map(|id| node.channel(*id).expect("ch").locks().len()).sum::<usize>();
                }
                if locks == 0 {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        tokio::time::timeout(T, wait).await.expect("locks settled");
    }

    /// Waits until `n` knows the announcements of `of`.
    async fn knows(&self, n: u8, of: &[u8]) {
        let wait = async {
            loop {
                let (nodes, _) = self.node(n).graph();
                let known: Vec<Address> = nodes
                    .iter()
                    .filter_map(|a| a.uri.parse::<vbank_node::NodeUri>().ok())
                    .map(|u| u.address())
                    .collect();
                if of.iter().all(|o| known.contains(&key(*o).address())) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        tokio::time::timeout(T, wait).await.expect("announcements relayed");
    }
}

const ALICE: u8 = 1;
const BOB: u8 = 2;
const CAROL: u8 = 3;
const DAVE: u8 = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_crosses_a_line_of_four_nodes_and_each_hop_earns_its_fee() {
    let mut net = Net::start(&[ALICE, BOB, CAROL, DAVE]).await;
    net.channel(ALICE, BOB).await;
    net.channel(BOB, CAROL).await;
    net.channel(CAROL, DAVE).await;
    net.node(BOB).set_forwarding(Some(ForwardFees { base: 100, ppm: 1_000 })).await.expect("forward");
    net.node(CAROL).set_forwarding(Some(ForwardFees { base: 50, ppm: 0 })).await.expect("forward");
    // Carol's announcement reaches Alice through Bob (relayed), Bob's directly.
    net.knows(ALICE, &[BOB, CAROL]).await;
    let before = net.totals().await;
    let invoice = net.node(DAVE).invoice(31337, 10_000, Address::ZERO, "a book", 3600).await.expect("invoice");
    let invoice = vbank_node::network::Invoice::decode(&invoice.encode()).expect("the string round-trips");
    let paid = net.node(ALICE).pay_invoice(&invoice, PayOptions::default()).await.expect("paid");
    assert!(
        matches!(paid.status, PaymentStatus::Succeeded { preimage } if vbank_core::preimage_hash(&preimage) == invoice.hash)
    );
    // Carol forwards 10,000 for 50; Bob forwards 10,050 for 100 + 10.05 (rounded down to 10).
    assert_eq!((paid.hops, paid.fee), (3, 160));
    net.settled().await;
    let after = net.totals().await;
    assert_eq!(before[&ALICE] - after[&ALICE], 10_160);
    assert_eq!(after[&BOB] - before[&BOB], 110);
    assert_eq!(after[&CAROL] - before[&CAROL], 50);
    assert_eq!(after[&DAVE] - before[&DAVE], 10_000);
    // Paying the same invoice again pays once: the stored result comes back.
    let again = net.node(ALICE).pay_invoice(&invoice, PayOptions::default()).await.expect("again");
    assert_eq!(again, paid);
    assert_eq!(net.totals().await, after);
    // An invoice Dave's node never issued (signed with his key, an unknown hash): Dave releases
    // the lock at once (rule 10), every hop releases upstream, nobody gains or loses a wei.
    let forged = vbank_node::network::Invoice::sign(
        &key(DAVE),
        31337,
        net.node(DAVE).own_uri().expect("uri"),
        B256::repeat_byte(0x99),
        500,
        Address::ZERO,
        invoice.expires_at,
        B256::repeat_byte(1),
        "",
    )
    .expect("sign");
    let err = net.node(ALICE).pay_invoice(&forged, PayOptions::default()).await.expect_err("released");
    assert!(err.to_string().contains("released"), "{err}");
    net.settled().await;
    assert_eq!(net.totals().await, after);
    assert!(matches!(
        net.node(ALICE).payments().await.expect("payments").iter().find(|p| p.hash == forged.hash).map(|p| &p.status),
        Some(PaymentStatus::Failed { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_payer_retries_the_other_side_of_a_diamond_when_the_cheaper_route_fails() {
    // Alice–Bob–Dave (Bob cheap) and Alice–Carol–Dave (Carol dearer). Bob's channel to Dave
    // cannot carry the payment: Bob releases, Alice tries through Carol.
    let mut net = Net::start(&[ALICE, BOB, CAROL, DAVE]).await;
    net.channel(ALICE, BOB).await;
    let bob_dave = net.channel(BOB, DAVE).await;
    net.channel(ALICE, CAROL).await;
    net.channel(CAROL, DAVE).await;
    net.node(BOB).set_forwarding(Some(ForwardFees { base: 1, ppm: 0 })).await.expect("forward");
    net.node(CAROL).set_forwarding(Some(ForwardFees { base: 7, ppm: 0 })).await.expect("forward");
    net.knows(ALICE, &[BOB, CAROL]).await;
    // Bob spends almost all of his side of Bob–Dave first.
    net.node(BOB).pay(bob_dave, DEPOSIT - 10, 1, T).await.expect("Bob pays Dave");
    let before = net.totals().await;
    let invoice = net.node(DAVE).invoice(31337, 5_000, Address::ZERO, "", 3600).await.expect("invoice");
    let paid = net.node(ALICE).pay_invoice(&invoice, PayOptions::default()).await.expect("paid");
    assert_eq!((paid.attempts, paid.fee), (2, 7), "the second route, through Carol");
    net.settled().await;
    let after = net.totals().await;
    assert_eq!(before[&ALICE] - after[&ALICE], 5_007);
    assert_eq!(after[&BOB], before[&BOB], "Bob released: no fee, nothing lost");
    assert_eq!(after[&CAROL] - before[&CAROL], 7);
    assert_eq!(after[&DAVE] - before[&DAVE], 5_000);
    // A fee ceiling below every route's fee (Bob's 1, Carol's 7): refused before any lock goes
    // out, so the payer may ask again with a higher one.
    let invoice = net.node(DAVE).invoice(31337, 5_000, Address::ZERO, "", 3600).await.expect("invoice");
    let opts = PayOptions { max_fee: 0, ..PayOptions::default() };
    let err = net.node(ALICE).pay_invoice(&invoice, opts).await.expect_err("too dear");
    assert!(err.to_string().contains("nothing was sent"), "{err}");
    assert_eq!(net.totals().await, after);
    net.node(ALICE).pay_invoice(&invoice, PayOptions::default()).await.expect("paid with a higher ceiling");
}
