//! Issue #12, items 6 and 7, on anvil: no payment is made or reported received on a channel that
//! is not funded, was cancelled, or was liquidated; and a peer that reveals a wrong waiver secret
//! gets its channel frozen and liquidated on chain by the node by itself.

mod common;

use std::time::Duration;

use alloy::primitives::{Address, B256};
use common::*;
use tokio::net::TcpStream;
use vbank::{ChainEvent, DriverConfig};
use vbank_client::{Chain, OnChain, OnChainState};
use vbank_core::{Event, Funding, Message};
use vbank_node::{Error, Frame, MemoryStore, Node, Notice, initiate, read_frame, write_frame};

/// Waits until `party`'s channel `id` is recorded as `funding`.
async fn wait_funding(party: &Party, id: Address, funding: Funding) {
    let wait = async {
        loop {
            if party.service.node().lock().await.channel(id).is_some_and(|c| c.funding() == funding) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(T, wait).await.unwrap_or_else(|_| panic!("the channel is not {funding:?}"));
}

/// Counts the `Received` events `party`'s node reports from now on.
fn count_received(party: &Party) -> std::sync::Arc<std::sync::atomic::AtomicUsize> {
    let n = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut rx = party.service.subscribe();
    let counter = std::sync::Arc::clone(&n);
    tokio::spawn(async move {
        while let Ok(notice) = rx.recv().await {
            if matches!(notice, Notice::Event { event: Event::Received { .. }, .. }) {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
    });
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_payment_before_both_deposits_nor_after_a_cancel() {
    let s = setup_with(false).await;
    let received = count_received(&s.bob);
    // Only Alice's deposit is in: her payment is refused, nothing reaches Bob.
    OnChain::new(s.alice.chain.clone(), s.id).deposit_agreed(&s.params).await.expect("alice deposits");
    let e = s.alice.service.pay(s.id, ETH, 1, T).await.expect_err("not funded");
    assert!(e.to_string().contains("not yet funded"), "{e}");
    // She cancels (her deposit back): both nodes see the channel ended and freeze it.
    OnChain::new(s.alice.chain.clone(), s.id).cancel().await.expect("cancel");
    wait_funding(&s.alice, s.id, Funding::Ended).await;
    wait_funding(&s.bob, s.id, Funding::Ended).await;
    for p in [&s.alice, &s.bob] {
        let e = p.service.pay(s.id, 1, 1, T).await.expect_err("ended");
        assert!(matches!(e, Error::Protocol(vbank_core::Error::Frozen(_))), "{e}");
        assert!(p.service.node().lock().await.channel(s.id).expect("channel").frozen().is_some());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(received.load(std::sync::atomic::Ordering::SeqCst), 0, "Bob was never told he received anything");
    assert_eq!(state(&s.alice.chain, s.id).await, OnChainState::Closed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_payment_after_a_liquidation_nor_after_the_withdrawal() {
    let s = setup().await;
    let received = count_received(&s.bob);
    s.alice.service.pay(s.id, ETH, 1, T).await.expect("a payment on the running channel");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(received.load(std::sync::atomic::Ordering::SeqCst), 1);
    // Alice liquidates with her latest sheet (honestly): the channel ends for both nodes.
    let latest = s.alice.service.node().lock().await.channel(s.id).expect("ch").latest().cloned().expect("sheet");
    let alice_chain = OnChain::new(s.alice.chain.clone(), s.id);
    alice_chain.liquidate(&latest).await.expect("liquidate");
    wait_funding(&s.bob, s.id, Funding::Ended).await;
    wait_funding(&s.alice, s.id, Funding::Ended).await;
    for p in [&s.alice, &s.bob] {
        assert!(p.service.pay(s.id, 1, 1, T).await.is_err(), "refused once liquidated");
    }
    warp_to(&s.alice.chain, chain_time(&s.alice.chain).await + LOCK_PERIOD + 1).await;
    alice_chain.withdraw_by_master().await.expect("withdraw");
    assert_eq!(state(&s.alice.chain, s.id).await, OnChainState::Closed);
    for p in [&s.alice, &s.bob] {
        assert!(p.service.pay(s.id, 1, 1, T).await.is_err(), "refused once closed");
    }
    assert_eq!(received.load(std::sync::atomic::Ordering::SeqCst), 1, "nothing more was reported received");
    assert_eq!(s.ledger.received(&s.alice.chain, s.who).await, [4 * ETH, 6 * ETH]);
}

/// Alice's node (service + chain driver, on a fresh anvil) and a hand-driven Bob linked to it, a
/// channel between them opened on chain but not yet agreed.
struct HandDriven {
    anvil: vbank_client::LocalChain,
    _dir: tempfile::TempDir,
    alice_chain: Chain,
    bob_chain: Chain,
    params: vbank_core::ChannelParams,
    id: Address,
    alice: vbank_node::Service<vbank_node::RedbStore>,
    _driver: vbank::ChainDriver<vbank_node::RedbStore>,
    events: tokio::sync::broadcast::Receiver<ChainEvent>,
}

/// Bob's end: his link to Alice and his node.
struct BobEnd {
    stream: TcpStream,
    session: vbank_node::Session,
    bob: Node<MemoryStore>,
}

async fn hand_driven_bob() -> (HandDriven, BobEnd) {
    let anvil = vbank_client::LocalChain::spawn().expect("anvil");
    let dir = tempfile::tempdir().expect("dir");
    let alice_chain = Chain::connect(&anvil.endpoint(), anvil.signer(1).expect("key"), None).await.expect("chain");
    let bob_key = anvil.signer(2).expect("key");
    let bob_chain = alice_chain.with_signer(bob_key.clone());
    vbank_client::deploy_factory(&alice_chain).await.expect("factory");
    let mut params = vbank_core::ChannelParams {
        chain_id: alice_chain.chain_id(),
        contract: Address::ZERO,
        parties: [alice_chain.address(), bob_chain.address()],
        deposits: [5 * ETH, 5 * ETH],
        lock_period: LOCK_PERIOD,
        token: Address::ZERO,
        salt: B256::repeat_byte(3),
    };
    let (id, _) = vbank_client::Factory::new(alice_chain.clone()).open(&params).await.expect("open");
    params.contract = id;
    // Alice accepts inbound links (an admission that takes no channel) so that Bob can dial her.
    let refuse_all: vbank_node::Admission =
        std::sync::Arc::new(|_c, _p, _params| Box::pin(async { Err("no channels here".to_string()) }));
    let alice_service = {
        let clock = vbank::ChainClock::new();
        let store = vbank_node::RedbStore::open(&dir.path().join("alice.redb")).expect("store");
        let node =
            Node::open(alice_chain.signer().clone(), store).expect("node").follow_chain().with_clock(clock.clock());
        let svc = vbank_node::Service::new(node, alice_chain.signer().clone(), Some(refuse_all));
        svc.set_funding_check(vbank::funding_check(alice_chain.clone()));
        let config = DriverConfig { poll: Duration::from_millis(200), ..DriverConfig::default() };
        let mut driver = vbank::ChainDriver::new(svc.clone(), alice_chain.clone(), clock, config);
        let events = driver.subscribe();
        driver.start();
        (svc, driver, events)
    };
    let (alice, driver, events) = alice_service;
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let uri = alice.uri(l.local_addr().expect("addr"));
    alice.listen(l);
    let mut stream = TcpStream::connect(uri.socket_addr()).await.expect("connect");
    let mut session = initiate(&mut stream, &bob_key, uri.key()).await.expect("handshake");
    write_frame(&mut stream, &mut session.sender, &Frame::Init {}).await.expect("init");
    assert_eq!(read_frame(&mut stream, &mut session.receiver).await.expect("init"), Frame::Init {});
    let mut bob = Node::open(bob_key.clone(), MemoryStore::default()).expect("bob");
    bob.add_channel(params.clone(), B256::repeat_byte(8)).expect("bob's channel");
    let h = HandDriven { anvil, _dir: dir, alice_chain, bob_chain, params, id, alice, _driver: driver, events };
    (h, BobEnd { stream, session, bob })
}

/// Opens the channel (sheet 0 agreed) and pays both deposits, Bob's node answering Alice's while
/// `bob_task` runs.
async fn open_and_fund(h: &HandDriven) {
    tokio::time::timeout(T, async {
        while h.alice.connected().is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("Bob linked");
    h.alice.open(h.params.clone(), B256::repeat_byte(7), T).await.expect("open");
    OnChain::new(h.alice_chain.clone(), h.id).deposit_agreed(&h.params).await.expect("alice deposit");
    OnChain::new(h.bob_chain.clone(), h.id).deposit_agreed(&h.params).await.expect("bob deposit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_revocation_gets_the_channel_liquidated_on_chain() {
    // Alice's node (service + chain driver) opens a channel with a hand-driven Bob, who answers
    // correctly until he reveals a wrong waiver secret (DESIGN §2 rule 5).
    let (mut h, BobEnd { mut stream, mut session, mut bob }) = hand_driven_bob().await;
    // Bob answers every frame with his node's reply, forging the secret of any revocation.
    let alice_addr = h.alice_chain.address();
    let bob_task = tokio::spawn(async move {
        let mut forged = 0;
        loop {
            let Ok(frame) = read_frame(&mut stream, &mut session.receiver).await else { return forged };
            let Ok((replies, _)) = bob.respond(alice_addr, &frame) else { return forged };
            for mut f in replies {
                // (In answer to Alice's signed proposal, his revocation rides in his Countersign.)
                if let Frame::Channel {
                    message: Message::Revoke { secret, .. } | Message::Countersign { revocation: Some(secret), .. },
                    ..
                } = &mut f
                {
                    *secret = B256::repeat_byte(9);
                    forged += 1;
                }
                if write_frame(&mut stream, &mut session.sender, &f).await.is_err() {
                    return forged;
                }
            }
        }
    });
    open_and_fund(&h).await;
    // Alice pays (a signed proposal: she proposed sheet 0); Bob answers with his countersignature
    // and a wrong revocation: she freezes the channel without taking sheet 1, and her driver
    // liquidates with her latest sheet (nonce 0, never revoked) without being asked.
    let paid = h.alice.pay(h.id, ETH, 1, T).await;
    assert!(paid.is_err(), "the payment is not acknowledged: {paid:?}");
    let settled = next_settled(&mut h.events).await;
    assert!(settled.contains("sheet 0") && settled.contains("protocol violation"), "{settled}");
    let info = OnChain::new(h.alice_chain.clone(), h.id).info().await.expect("info");
    assert_eq!(info.state, OnChainState::Liquidating);
    let l = info.liquidation.expect("liquidation");
    assert_eq!((l.master, l.nonce), (h.alice_chain.address(), 0));
    let node = h.alice.node().lock().await;
    assert!(node.channel(h.id).expect("ch").frozen().is_some_and(|r| r.contains("violation")));
    drop(node);
    h.alice.shutdown().await;
    assert!(bob_task.await.expect("bob") >= 1, "Bob forged a revocation");
}

/// The next settlement Alice's chain driver submits (what it says it did).
async fn next_settled(events: &mut tokio::sync::broadcast::Receiver<ChainEvent>) -> String {
    tokio::time::timeout(T, async {
        loop {
            match events.recv().await {
                Ok(ChainEvent::Settled { what, .. }) => return what,
                Ok(_) => {}
                Err(e) => panic!("{e}"),
            }
        }
    })
    .await
    .expect("settled")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_payment_the_peer_never_answers_is_decided_by_the_chain() {
    // Alice pays with a signed proposal; Bob takes it (his sheet 1, signed by Alice) but never
    // answers, and liquidates with sheet 1. Alice's payment was "in flight" until then; the
    // liquidation decides it: made, reported acknowledged, not cancelled.
    let (h, BobEnd { mut stream, mut session, mut bob }) = hand_driven_bob().await;
    let alice_addr = h.alice_chain.address();
    let bob_task = tokio::spawn(async move {
        loop {
            let Ok(frame) = read_frame(&mut stream, &mut session.receiver).await else { return None };
            let signed = matches!(&frame, Frame::Channel { message: Message::Propose { signature: Some(_), .. }, .. });
            let Ok((replies, _)) = bob.respond(alice_addr, &frame) else { return None };
            if signed {
                // Taken and stored, never answered: Bob hangs up.
                return Some(bob);
            }
            for f in replies {
                if write_frame(&mut stream, &mut session.sender, &f).await.is_err() {
                    return None;
                }
            }
        }
    });
    open_and_fund(&h).await;
    let paid = h.alice.pay(h.id, ETH, 1, Duration::from_secs(2)).await;
    let e = paid.expect_err("not acknowledged");
    assert!(e.to_string().contains("1 in flight (may still complete)"), "{e}");
    let mut bob = bob_task.await.expect("bob").expect("Bob took the signed proposal");
    let (settlement, _) = bob.freeze(h.id, "liquidating with the sheet Alice signed", false).expect("freeze");
    let vbank_core::Settlement::Liquidate(sheet) = &settlement else { panic!("{settlement:?}") };
    assert_eq!(sheet.nonce, 1);
    vbank::settle_on_chain(&h.bob_chain, h.id, &settlement).await.expect("Bob liquidates");
    // Alice's chain driver sees the liquidation and her node decides the payment.
    let outcome = tokio::time::timeout(T, async {
        loop {
            let node = h.alice.node().lock().await;
            let ch = node.channel(h.id).expect("ch");
            let first = ch.next_payment_id() - 1;
            let outcome = ch.payments_outcome(first, 1);
            drop(node);
            if outcome != vbank_core::PaymentsOutcome::Pending {
                return outcome;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("decided");
    assert_eq!(outcome, vbank_core::PaymentsOutcome::Acked);
    h.alice.shutdown().await;
    drop(h.anvil);
}
