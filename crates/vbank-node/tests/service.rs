//! Two running services over loopback TCP with redb stores: a channel opened by one and admitted
//! by the other, payments both ways, a cooperative close, and the requests' failure modes.

use std::{sync::Arc, time::Duration};

use alloy_primitives::{Address, B256};
use tokio::net::TcpListener;
use vbank_node::{Admission, Error, Node, NodeUri, Notice, RedbStore, Service};

const T: Duration = Duration::from_secs(30);

mod common;
use common::{key, params};

/// Admits channels 1..=9 with the test parameters (standing in for the on-chain check).
fn admission() -> Admission {
    Arc::new(|channel: Address, _peer: Address, sent: Option<vbank_core::ChannelParams>| {
        Box::pin(async move {
            let n = channel.0[0];
            if sent.as_ref() != Some(&params(n)) {
                Err(format!("the opening carried {sent:?}, not the channel's parameters"))
            } else if channel == Address::repeat_byte(n) && (1..=9).contains(&n) {
                Ok(params(n))
            } else {
                Err("no such contract".to_string())
            }
        })
    })
}

fn service(dir: &std::path::Path, n: u8, admission: Option<Admission>) -> Service<RedbStore> {
    let store = RedbStore::open(&dir.join(format!("{n}.redb"))).expect("store");
    Service::new(Node::open(key(n), store).expect("node"), key(n), admission)
}

async fn listen(s: &Service<RedbStore>) -> NodeUri {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let uri = s.uri(l.local_addr().expect("addr"));
    s.listen(l);
    uri
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_pay_both_ways_and_close() {
    let dir = tempfile::tempdir().expect("dir");
    let alice = service(dir.path(), 1, None);
    let bob = service(dir.path(), 2, Some(admission()));
    let addr = listen(&bob).await;
    let mut notices = bob.subscribe();
    alice.connect(&addr).await.expect("connect");
    let id = params(3).contract;
    alice.open(params(3), B256::repeat_byte(9), T).await.expect("open");
    // Bob admitted it and stored it.
    let admitted = loop {
        match notices.recv().await.expect("notice") {
            Notice::Admitted { channel, peer } => break (channel, peer),
            _ => continue,
        }
    };
    assert_eq!(admitted, (id, key(1).address()));

    let paid = alice.pay(id, 1_000, 10, T).await.expect("alice pays");
    assert_eq!((paid.count, paid.amount), (10, 10_000));
    // Bob pays back over the link Alice opened, concurrently with Alice paying more.
    let (a, b) = tokio::join!(alice.pay(id, 7, 5, T), bob.pay(id, 100, 3, T));
    assert_eq!(a.expect("alice").amount, 35);
    assert_eq!(b.expect("bob").amount, 300);
    let expect = [1_000_000 - 10_035 + 300, 1_000_000 + 10_035 - 300];
    assert_eq!(alice.node().lock().await.channel(id).expect("ch").balances(), expect);
    assert_eq!(bob.node().lock().await.channel(id).expect("ch").balances(), expect);

    // An overdraft changes nothing.
    let e = alice.pay(id, 600_000, 2, T).await.expect_err("overdraft");
    assert!(matches!(e, Error::Protocol(vbank_core::Error::InsufficientBalance { .. })), "{e}");
    assert_eq!(alice.node().lock().await.channel(id).expect("ch").queued(), 0);

    let sigs = bob.close(id, T).await.expect("close");
    assert_eq!(sigs.balances, expect);
    let a = alice.node().lock().await.channel(id).expect("ch").close_signatures().expect("alice has both");
    assert_eq!(a.2, sigs.signatures);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_fail_cleanly() {
    let dir = tempfile::tempdir().expect("dir");
    let alice = service(dir.path(), 1, None);
    // Nobody listens: a clear error.
    let nowhere = NodeUri::new(vbank_node::node_key(&key(2)), "127.0.0.1", 1);
    let e = alice.connect(&nowhere).await.expect_err("unreachable");
    assert!(matches!(e, Error::Unreachable { .. }), "{e}");
    // Not linked: nothing is stored.
    let e = alice.open(params(4), B256::ZERO, T).await.expect_err("not linked");
    assert!(matches!(e, Error::NotConnected(_)), "{e}");
    assert!(alice.node().lock().await.channel_ids().is_empty());

    // A node without admission refuses Alice before any channel frame.
    let closed = service(dir.path(), 2, None);
    let addr = listen(&closed).await;
    // (Bob hangs up once the handshake proved who Alice is, before his init.)
    let r = alice.connect(&addr).await;
    assert!(matches!(r, Err(Error::Auth(ref m)) if m.contains("does not accept new ones")), "{r:?}");
    assert!(alice.connected().is_empty());

    // Admission says no: the open fails with the peer's reason and Bob stores nothing.
    let dir2 = tempfile::tempdir().expect("dir");
    let bob = service(dir2.path(), 2, Some(admission()));
    let addr = listen(&bob).await;
    alice.connect(&addr).await.expect("connect");
    let mut p = params(0x42);
    p.contract = Address::repeat_byte(0x42);
    let e = alice.open(p, B256::ZERO, T).await.expect_err("refused");
    assert!(matches!(e, Error::RefusedByPeer(ref r) if r.contains("no such contract")), "{e}");
    assert!(bob.node().lock().await.channel_ids().is_empty());

    // Bob's node goes away: a request fails at once and queues nothing; Bob restarts from his
    // store, Alice links again and pays.
    alice.open(params(5), B256::repeat_byte(5), T).await.expect("open");
    let id = params(5).contract;
    let mut notices = alice.subscribe();
    bob.shutdown().await;
    drop(bob);
    while !matches!(notices.recv().await.expect("notice"), Notice::Disconnected { .. }) {}
    let e = alice.pay(id, 1, 1, T).await.expect_err("not linked");
    assert!(matches!(e, Error::NotConnected(_)), "{e}");
    assert_eq!(alice.node().lock().await.channel(id).expect("ch").queued(), 0);
    let bob = service(dir2.path(), 2, Some(admission()));
    let addr = listen(&bob).await;
    alice.connect(&addr).await.expect("reconnect");
    assert_eq!(alice.pay(id, 5, 2, T).await.expect("pay").amount, 10);
    assert_eq!(bob.node().lock().await.channel(id).expect("ch").balances(), [999_990, 1_000_010]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_socket_answers_and_refuses_bad_requests() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    use vbank_node::{ControlClient, Reply, Request, control_path};

    let dir = tempfile::tempdir().expect("dir");
    let alice = service(dir.path(), 1, None);
    let path = control_path(&dir.path().join("1.redb"));
    alice.serve_control(&path).await.expect("serve");
    // A second node on the same socket is refused.
    let other = tempfile::tempdir().expect("dir");
    let twin = service(other.path(), 1, None);
    assert!(matches!(twin.serve_control(&path).await, Err(Error::Control(_))));

    let mut c = ControlClient::connect(&path).await.expect("connect");
    match c.request(&Request::Status).await.expect("status") {
        Reply::Status { address, channels, .. } => assert_eq!((address, channels.len()), (key(1).address(), 0)),
        other => panic!("{other:?}"),
    }
    // A request on an unknown channel: an error reply, and the session goes on.
    let pay = Request::Pay { channel: Address::repeat_byte(9), amount: 1, count: 1, timeout_secs: 1, id: None };
    let e = c.request(&pay).await.expect_err("unknown channel");
    assert!(e.to_string().contains("unknown channel"), "{e}");
    // Not linked: refused before anything is stored.
    let e = c.request(&Request::Open { params: params(3), timeout_secs: 1 }).await.expect_err("not linked");
    assert!(e.to_string().contains("not connected"), "{e}");
    assert!(matches!(c.request(&Request::Status).await, Ok(Reply::Status { channels, .. }) if channels.is_empty()));

    // Raw lines: garbage gets an error reply; an endless line ends the session.
    let mut raw = tokio::net::UnixStream::connect(&path).await.expect("connect");
    raw.write_all(b"{\"pay\": 12}\n").await.expect("write");
    let mut line = String::new();
    BufReader::new(&mut raw).read_line(&mut line).await.expect("read");
    assert!(line.contains("malformed request"), "{line}");
    let big = vec![b'x'; vbank_node::control::MAX_REQUEST + 10];
    let _ = raw.write_all(&big).await;
    let mut rest = Vec::new();
    let n = tokio::io::AsyncReadExt::read_to_end(&mut raw, &mut rest).await.unwrap_or(0);
    assert_eq!(n, 0, "no reply to an oversize request, the session is closed");
    // The node still serves.
    let mut c = ControlClient::connect(&path).await.expect("connect");
    assert!(c.request(&Request::Status).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_link_is_dialed_again() {
    let dir = tempfile::tempdir().expect("dir");
    let alice = service(dir.path(), 1, None);
    let bob = service(dir.path(), 2, Some(admission()));
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    let uri = bob.uri(addr);
    bob.listen(l);
    alice.connect(&uri).await.expect("connect");
    alice.open(params(6), B256::repeat_byte(6), T).await.expect("open");
    let id = params(6).contract;
    alice.pay(id, 3, 1, T).await.expect("pay");

    // Bob's node stops and comes back from its store on the same address.
    bob.shutdown().await;
    drop(bob);
    let bob = service(dir.path(), 2, Some(admission()));
    bob.listen(TcpListener::bind(addr).await.expect("rebind"));
    let mut notices = alice.subscribe();
    // Alice's node links again by itself (no connect call), then pays in both directions.
    while !alice.connected().contains(&key(2).address()) {
        let _ = tokio::time::timeout(Duration::from_secs(5), notices.recv()).await.expect("a notice within 5 s");
    }
    assert_eq!(alice.pay(id, 4, 2, T).await.expect("pay after the redial").amount, 8);
    assert_eq!(bob.pay(id, 5, 1, T).await.expect("bob pays back").amount, 5);
    assert_eq!(alice.node().lock().await.channel(id).expect("ch").balances(), [999_994, 1_000_006]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_links_to_the_peers_it_remembers() {
    use vbank_node::{Reply, Request};
    let dir = tempfile::tempdir().expect("dir");
    let bob_dir = tempfile::tempdir().expect("dir");
    let bob = service(bob_dir.path(), 2, Some(admission()));
    let addr = listen(&bob).await;
    let alice = service(dir.path(), 1, None);
    alice.connect(&addr).await.expect("connect");
    alice.open(params(7), B256::repeat_byte(7), T).await.expect("open");
    let id = params(7).contract;
    alice.shutdown().await;
    drop(alice);

    // A request on a restarted node links by itself (one-shot commands work this way).
    let alice = service(dir.path(), 1, None);
    let pay = Request::Pay { channel: id, amount: 9, count: 1, timeout_secs: 30, id: None };
    assert!(matches!(alice.control(pay).await, Reply::Paid { amount: 9, .. }));
    alice.shutdown().await;
    drop(alice);

    // A restarted running node relinks at once, before any request.
    let alice = service(dir.path(), 1, None);
    let mut notices = alice.subscribe();
    alice.relink().await.expect("relink");
    while !alice.connected().contains(&key(2).address()) {
        let _ = tokio::time::timeout(Duration::from_secs(5), notices.recv()).await.expect("a notice within 5 s");
    }
    // (Bob registers the link a moment after Alice: his side of the handshake ends last.)
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !bob.connected().contains(&key(1).address()) {
        assert!(tokio::time::Instant::now() < deadline, "bob never saw the link");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(bob.pay(id, 4, 1, T).await.expect("bob pays over the new link").amount, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_cannot_lock_a_peer_out_for_long() {
    let dir = tempfile::tempdir().expect("dir");
    let bob = service(dir.path(), 2, Some(admission()));
    let uri = listen(&bob).await;
    let addr = uri.socket_addr();
    // Twenty idle connections from this address (none sends act one): the ones over the
    // per-address handshake cap are closed at once, so the node is not tied up by them…
    let mut idle = Vec::new();
    for _ in 0..20 {
        idle.push(tokio::net::TcpStream::connect(&addr).await.expect("connect"));
    }
    // The refused ones see the end of the stream (watched at once, for up to 3 s: Bob gives a
    // handshake 10 s); the others hear nothing (the initiator speaks first).
    let watches: Vec<_> = idle
        .drain(..)
        .map(|mut s| {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let ended = tokio::time::timeout(Duration::from_secs(3), async {
                    loop {
                        match tokio::io::AsyncReadExt::read(&mut s, &mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(_) => continue,
                        }
                    }
                })
                .await
                .is_ok();
                (ended, s)
            })
        })
        .collect();
    let mut closed = 0;
    for w in watches {
        let (ended, s) = w.await.expect("task");
        closed += usize::from(ended);
        idle.push(s);
    }
    assert_eq!(closed, 12, "20 idle connections, 8 handshakes allowed from one address");
    // …and once the idle ones are gone, a real peer links and opens a channel.
    drop(idle);
    let alice = service(dir.path(), 1, None);
    alice.connect(&uri).await.expect("connect");
    alice.open(params(8), B256::repeat_byte(8), T).await.expect("open");
}

/// Review finding 12: a channel admission refused is refused again from the cache, without asking
/// the chain a second time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_channel_is_not_checked_twice() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let dir = tempfile::tempdir().expect("dir");
    let asked = Arc::new(AtomicUsize::new(0));
    let counted: Admission = {
        let asked = Arc::clone(&asked);
        Arc::new(move |_channel: Address, _peer: Address, _sent: Option<vbank_core::ChannelParams>| {
            asked.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move { Err("no such contract".to_string()) })
        })
    };
    let alice = service(dir.path(), 1, None);
    let bob = service(dir.path(), 2, Some(counted));
    let addr = listen(&bob).await;
    alice.connect(&addr).await.expect("connect");
    for _ in 0..2 {
        let e = alice.open(params(7), B256::repeat_byte(9), T).await.expect_err("refused");
        assert!(matches!(e, Error::RefusedByPeer(ref r) if r.contains("no such contract")), "{e}");
    }
    assert_eq!(asked.load(Ordering::SeqCst), 1, "the second opening was refused from the cache");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_may_have_at_most_four_channels_opening_at_once() {
    use vbank_node::{Frame, MemoryStore, initiate, read_frame, write_frame};
    let dir = tempfile::tempdir().expect("dir");
    let bob = service(dir.path(), 2, Some(admission()));
    let uri = listen(&bob).await;
    // A hand-driven Alice proposes sheet 0 of five channels and never commits any: each stays
    // "opening" on Bob's side, holding his admission's work and a store entry.
    let mut s = tokio::net::TcpStream::connect(uri.socket_addr()).await.expect("connect");
    let mut session = initiate(&mut s, &key(1), uri.key()).await.expect("handshake");
    write_frame(&mut s, &mut session.sender, &Frame::Init {}).await.expect("init");
    assert_eq!(read_frame(&mut s, &mut session.receiver).await.expect("init"), Frame::Init {});
    let mut alice = Node::open(key(1), MemoryStore::default()).expect("node");
    for n in 1..=5u8 {
        let opening = alice.add_channel(params(n), B256::repeat_byte(n)).expect("add").expect("a proposal");
        write_frame(&mut s, &mut session.sender, &opening).await.expect("send");
        let answer = tokio::time::timeout(T, read_frame(&mut s, &mut session.receiver)).await.expect("answer");
        match (n, answer.expect("frame")) {
            (1..=4, Frame::Channel { message: vbank_core::Message::Countersign { .. }, .. }) => {}
            (5, Frame::Refused { channel: Some(c), reason, .. }) => {
                assert_eq!(c, params(5).contract);
                assert!(reason.contains("4 channels of this peer are already opening"), "{reason}");
            }
            (n, other) => panic!("channel {n}: {other:?}"),
        }
    }
    assert_eq!(bob.node().lock().await.channel_ids().len(), 4, "the fifth was not stored");
}

/// Alice and Bob (who admits channels) linked, with channel 3 opened by Alice.
async fn opened_pair(dir: &std::path::Path) -> (Service<RedbStore>, Service<RedbStore>, Address) {
    let alice = service(dir, 1, None);
    let bob = service(dir, 2, Some(admission()));
    let addr = listen(&bob).await;
    alice.connect(&addr).await.expect("connect");
    let id = params(3).contract;
    alice.open(params(3), B256::repeat_byte(9), T).await.expect("open");
    (alice, bob, id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_id_given_twice_pays_once_and_a_failed_one_stays_failed() {
    let never = std::future::pending::<()>;
    let dir = tempfile::tempdir().expect("dir");
    let (alice, bob, id) = opened_pair(dir.path()).await;
    let balances = || async { alice.node().lock().await.channel(id).expect("ch").balances() };

    // Paid once, whatever the number of retries (DESIGN §2 rule 11).
    let first = alice.pay_with_id("order-1", id, 1_000, 2, T, never()).await.expect("paid");
    let again = alice.pay_with_id("order-1", id, 1_000, 2, T, never()).await.expect("the stored outcome");
    assert_eq!(again, first);
    assert_eq!(balances().await, [998_000, 1_002_000]);
    // The same id for another payment is refused.
    let e = alice.pay_with_id("order-1", id, 5, 1, T, never()).await.expect_err("another payment");
    assert!(e.to_string().contains("given to another payment"), "{e}");
    // Refused before anything was queued (an overdraft): nothing recorded, the id can be used.
    assert!(alice.pay_with_id("order-2", id, 10_000_000, 1, T, never()).await.is_err());
    alice.pay_with_id("order-2", id, 10, 1, T, never()).await.expect("the id was free");
    assert_eq!(balances().await, [997_990, 1_002_010]);

    // Bob pays once, so Alice's next proposal is unsigned (a signed one is never withdrawn: see
    // the next test). Bob freezes the channel (closing): he refuses Alice's next proposal, so her
    // payment fails, and it stays failed: asking again does not send it.
    bob.pay_with_id("back", id, 1, 1, T, never()).await.expect("Bob pays");
    bob.settle_for(id, "closing").await.expect("freeze");
    let e = alice.pay_with_id("order-3", id, 7, 1, T, never()).await.expect_err("refused");
    let again = alice.pay_with_id("order-3", id, 7, 1, T, never()).await.expect_err("failed for good");
    assert!(again.to_string().contains("failed for good"), "{e} / {again}");
    assert_eq!(balances().await, [997_991, 1_002_009]);
    assert_eq!(alice.node().lock().await.channel(id).expect("ch").queued(), 0, "nothing left to go out later");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_payment_the_peer_refuses_stays_in_doubt_and_is_never_sent_twice() {
    let never = std::future::pending::<()>;
    let dir = tempfile::tempdir().expect("dir");
    let (alice, bob, id) = opened_pair(dir.path()).await;
    alice.pay_with_id("order-1", id, 1_000, 1, T, never()).await.expect("paid");
    // Alice proposed the latest sheet: her next proposal is signed. Bob, frozen, refuses it, but
    // he holds her signature over his next sheet and could liquidate with it: the payment is
    // neither made nor failed until the chain shows the settlement, and it is never sent again.
    bob.settle_for(id, "closing").await.expect("freeze");
    let short = std::time::Duration::from_millis(500);
    let e = alice.pay_with_id("order-2", id, 7, 1, short, never()).await.expect_err("not acknowledged");
    assert!(e.to_string().contains("1 in flight (may still complete)"), "{e}");
    let again = alice.pay_with_id("order-2", id, 7, 1, short, never()).await.expect_err("still in doubt");
    assert!(!again.to_string().contains("failed for good"), "{again}");
    let node = alice.node().lock().await;
    let ch = node.channel(id).expect("ch");
    assert_eq!(ch.balances(), [999_000, 1_001_000], "the latest sheet Alice holds");
    assert_eq!(ch.queued(), 0, "nothing queued to go out again");
    let first = ch.next_payment_id() - 1;
    assert_eq!(ch.payments_outcome(first, 1), vbank_core::PaymentsOutcome::Pending);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_id_recorded_but_never_queued_before_a_crash_can_be_used_again() {
    use vbank_node::{RecordKind, Store};
    let dir = tempfile::tempdir().expect("dir");
    let id = params(3).contract;
    {
        let alice = service(dir.path(), 1, None);
        let bob = service(dir.path(), 2, Some(admission()));
        let addr = listen(&bob).await;
        alice.connect(&addr).await.expect("connect");
        alice.open(params(3), B256::repeat_byte(9), T).await.expect("open");
        // The crash came between the id's record and the queue: the record names the next
        // payment id, which the channel never gave out.
        let next = alice.node().lock().await.channel(id).expect("ch").next_payment_id();
        let record = serde_json::json!({
            "id": "order-9", "channel": id, "amount": 5, "count": 1, "first": next, "status": "in_flight"
        });
        let key = alloy_primitives::keccak256(b"order-9");
        let node = alice.node().lock().await;
        node.store()
            .put_record(RecordKind::ChannelPayment, key.as_slice(), Some(&serde_json::to_vec(&record).expect("json")))
            .expect("put");
        drop(node);
        alice.shutdown().await;
        bob.shutdown().await;
    }
    // After the restart the record is gone (nothing of it went out): the id pays, once.
    let alice = service(dir.path(), 1, None);
    let bob = service(dir.path(), 2, Some(admission()));
    let addr = listen(&bob).await;
    alice.connect(&addr).await.expect("connect");
    alice.pay_with_id("order-9", id, 5, 1, T, std::future::pending()).await.expect("paid");
    alice.pay_with_id("order-9", id, 5, 1, T, std::future::pending()).await.expect("once");
    assert_eq!(alice.node().lock().await.channel(id).expect("ch").balances(), [999_995, 1_000_005]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_requests_with_the_same_payment_id_at_once_pay_once() {
    let dir = tempfile::tempdir().expect("dir");
    let alice = service(dir.path(), 1, None);
    let bob = service(dir.path(), 2, Some(admission()));
    let addr = listen(&bob).await;
    alice.connect(&addr).await.expect("connect");
    let id = params(3).contract;
    alice.open(params(3), B256::repeat_byte(9), T).await.expect("open");
    // A client retrying while its first request still runs.
    let (a, b) = tokio::join!(
        alice.pay_with_id("order-5", id, 100, 50, T, std::future::pending()),
        alice.pay_with_id("order-5", id, 100, 50, T, std::future::pending())
    );
    assert!(a.is_ok() || b.is_ok(), "{a:?} {b:?}");
    let again = alice.pay_with_id("order-5", id, 100, 50, T, std::future::pending()).await.expect("stored");
    assert_eq!(again.amount, 5_000);
    assert_eq!(alice.node().lock().await.channel(id).expect("ch").balances(), [995_000, 1_005_000], "paid once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_proposal_refused_for_a_passing_reason_is_offered_again() {
    // Alice paid Bob once; Bob's node restarts following the chain, and sees the channel running
    // only at its second look: it refuses Alice's next (signed) proposal as not running yet. A
    // signed proposal is never withdrawn; Alice offers it again a second later, and it goes
    // through without a reconnect.
    let never = std::future::pending::<()>;
    let dir = tempfile::tempdir().expect("dir");
    let (alice, bob, id) = opened_pair(dir.path()).await;
    alice.pay(id, 1_000, 1, T).await.expect("a first payment");
    bob.shutdown().await;
    drop(bob);
    let store = RedbStore::open(&dir.path().join("2.redb")).expect("store");
    let bob = Service::new(Node::open(key(2), store).expect("node").follow_chain(), key(2), Some(admission()));
    let looks = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = Arc::clone(&looks);
    bob.set_funding_check(Arc::new(move |_| {
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Box::pin(async move { Some(if n == 0 { vbank_core::Funding::Pending } else { vbank_core::Funding::Running }) })
    }));
    let addr = listen(&bob).await;
    alice.connect(&addr).await.expect("connect again");
    alice.pay_with_id("second", id, 1_000, 1, T, never()).await.expect("acknowledged after the second offer");
    assert!(looks.load(std::sync::atomic::Ordering::SeqCst) >= 2, "Bob looked at the chain twice");
    let node = bob.node().lock().await;
    assert_eq!(node.channel(id).expect("ch").balances(), [998_000, 1_002_000]);
}
