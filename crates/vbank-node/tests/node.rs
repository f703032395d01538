//! Two nodes over loopback TCP with redb stores: payments, restarts from disk, bad frames.

use std::sync::Arc;

use alloy_primitives::{Address, B256};
use tokio::{net::TcpListener, sync::Mutex};
use vbank_core::Event;
use vbank_node::{
    Error, Frame, Node, RedbStore, Store, address_of, initiate, node_key, read_frame, respond, serve, write_frame,
};

mod common;
use common::{key, params};

/// Bob's node serving on loopback; returns its port.
async fn bob_server(store: RedbStore, channels: &[u8]) -> (u16, Arc<Mutex<Node<RedbStore>>>) {
    let mut node = Node::open(key(2), store).expect("open");
    for c in channels {
        if node.channel(Address::repeat_byte(*c)).is_none() {
            node.add_channel(params(*c), B256::repeat_byte(*c)).expect("add");
        }
    }
    let node = Arc::new(Mutex::new(node));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let served = Arc::clone(&node);
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else { return };
            let node = Arc::clone(&served);
            tokio::spawn(async move {
                let known = { node.lock().await.channel_ids() };
                let me = key(2);
                let Ok((them, mut session)) = respond(&mut s, &me).await else { return };
                let peer = address_of(&them);
                if peer != key(1).address() || known.is_empty() {
                    return;
                }
                let _ = serve(&mut s, &mut session, &node, peer, |_, _| {}).await;
            });
        }
    });
    (port, node)
}

/// Alice's side: connect, authenticate, and drive `pays` payments on channel `c` to completion.
async fn alice_pays(port: u16, alice: &mut Node<RedbStore>, c: u8, pays: &[u128]) -> Vec<Event> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    let mut session = initiate(&mut s, &key(1), &node_key(&key(2))).await.expect("handshake");
    let bob = key(2).address();
    let id = Address::repeat_byte(c);
    let mut events = Vec::new();
    for f in alice.on_connect(bob).expect("retransmit") {
        write_frame(&mut s, &mut session.sender, &f).await.expect("write");
    }
    // drive the opening (if needed) first, then the payments, until everything is acknowledged
    let mut queued = false;
    let mut acked = 0u64;
    loop {
        let ch = alice.channel(id).expect("channel");
        let open = *ch.phase() == vbank_core::Phase::Open;
        if open && !queued {
            queued = true;
            for amount in pays {
                let (_, first) = alice.pay(id, *amount).expect("pay");
                if let Some(f) = first {
                    write_frame(&mut s, &mut session.sender, &f).await.expect("write");
                }
            }
        }
        let ch = alice.channel(id).expect("channel");
        if open && ch.is_idle() && ch.queued() == 0 && acked as usize >= pays.len().min(1) {
            break;
        }
        let f = read_frame(&mut s, &mut session.receiver).await.expect("frame");
        let (reply, evs) = match alice.handle(bob, &f) {
            Ok(r) => r,
            // a duplicate after the reconnect's retransmissions: harmless
            Err(Error::Protocol(e)) if e.severity() == vbank_core::Severity::Ignore => continue,
            Err(e) => panic!("alice refused {f:?}: {e}"),
        };
        for e in &evs {
            if let Event::PaymentsAcked { count, .. } = e {
                acked += count;
            }
        }
        events.extend(evs);
        for r in reply.into_iter().chain(alice.propose(id).expect("propose")) {
            write_frame(&mut s, &mut session.sender, &r).await.expect("write");
        }
    }
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payments_over_tcp_survive_a_restart_from_disk() {
    let dir = tempfile::tempdir().expect("tmp");
    let (port, bob) = bob_server(RedbStore::open(&dir.path().join("bob.redb")).expect("store"), &[7, 8]).await;
    let alice_path = dir.path().join("alice.redb");
    {
        let mut alice = Node::open(key(1), RedbStore::open(&alice_path).expect("store")).expect("node");
        for c in [7u8, 8] {
            alice.add_channel(params(c), B256::repeat_byte(c ^ 0x55)).expect("add");
        }
        // open both channels: alice (party 0) proposes sheet 0 on connect via retransmit
        alice_pays(port, &mut alice, 7, &[]).await;
        let events = alice_pays(port, &mut alice, 7, &[10, 20, 30]).await;
        assert!(events.iter().any(|e| matches!(e, Event::PaymentsAcked { .. })));
        assert_eq!(alice.channel(Address::repeat_byte(7)).expect("c").balances(), [1_000_000 - 60, 1_000_000 + 60]);
        // alice's node goes away here without any shutdown
    }
    let mut alice = Node::open(key(1), RedbStore::open(&alice_path).expect("reopen")).expect("node");
    let ch = alice.channel(Address::repeat_byte(7)).expect("restored");
    assert_eq!(ch.balances(), [1_000_000 - 60, 1_000_000 + 60], "nothing acknowledged was lost");
    alice_pays(port, &mut alice, 7, &[5]).await;
    alice_pays(port, &mut alice, 8, &[1]).await;
    let b = bob.lock().await;
    assert_eq!(b.channel(Address::repeat_byte(7)).expect("c").balances(), [1_000_000 - 65, 1_000_000 + 65]);
    assert_eq!(b.channel(Address::repeat_byte(8)).expect("c").balances(), [1_000_000 - 1, 1_000_000 + 1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_are_refused_and_the_node_keeps_serving() {
    let dir = tempfile::tempdir().expect("tmp");
    let (port, bob) = bob_server(RedbStore::open(&dir.path().join("bob.redb")).expect("store"), &[7]).await;
    let mut alice = Node::open(key(1), RedbStore::open(&dir.path().join("a.redb")).expect("s")).expect("node");
    alice.add_channel(params(7), B256::repeat_byte(1)).expect("add");
    alice_pays(port, &mut alice, 7, &[3]).await;
    // (Alice's last revocation reaches Bob after her acknowledgement: wait for it.)
    let before = loop {
        let idle = {
            let bob = bob.lock().await;
            let c = bob.channel(Address::repeat_byte(7)).expect("c");
            c.is_idle().then(|| c.state().clone())
        };
        if let Some(state) = idle {
            break state;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    };

    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    let mut session = initiate(&mut s, &key(1), &node_key(&key(2))).await.expect("handshake");
    // unknown channel
    let unknown = Frame::Channel {
        more: Vec::new(),
        channel: Address::repeat_byte(99),
        message: vbank_core::Message::Revoke { nonce: 0, secret: B256::ZERO },
        params: None,
    };
    write_frame(&mut s, &mut session.sender, &unknown).await.expect("write");
    // an out-of-order message for a real channel (a commit nobody asked for)
    let stray = Frame::Channel {
        more: Vec::new(),
        channel: Address::repeat_byte(7),
        message: vbank_core::Message::Revoke { nonce: 5, secret: B256::repeat_byte(3) },
        params: None,
    };
    write_frame(&mut s, &mut session.sender, &stray).await.expect("write");
    let mut refusals = Vec::new();
    while refusals.len() < 2 {
        if let Frame::Refused { reason, .. } = read_frame(&mut s, &mut session.receiver).await.expect("answer") {
            refusals.push(reason);
        }
    }
    assert!(refusals[0].contains("unknown channel"), "{refusals:?}");
    assert!(refusals[1].contains("unexpected revoke"), "{refusals:?}");
    // an authentic but malformed frame is refused and ends that connection
    use tokio::io::AsyncWriteExt;
    s.write_all(&session.sender.encrypt(b"{{{").expect("encrypt")).await.expect("write");
    assert!(matches!(read_frame(&mut s, &mut session.receiver).await, Ok(Frame::Refused { .. })));
    // a frame with one flipped bit ends the connection without an answer, and changes nothing
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    let mut session = initiate(&mut s, &key(1), &node_key(&key(2))).await.expect("handshake");
    let mut wire = vbank_node::transport::seal(&mut session.sender, &stray).expect("seal");
    let last = wire.len() - 1;
    wire[last] ^= 1;
    s.write_all(&wire).await.expect("write");
    // (whatever Bob retransmits on connect may come first; then the hang-up)
    let r = loop {
        if let Err(e) = read_frame(&mut s, &mut session.receiver).await {
            break e;
        }
    };
    assert!(matches!(r, Error::Closed | Error::Io(_)), "{r:?}");
    // the state is untouched and the node still serves
    assert_eq!(bob.lock().await.channel(Address::repeat_byte(7)).expect("c").state(), &before);
    alice_pays(port, &mut alice, 7, &[4]).await;
    assert_eq!(alice.channel(Address::repeat_byte(7)).expect("c").balances()[0], 1_000_000 - 7);
}

#[test]
fn the_store_keeps_the_last_saved_state() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("s.redb");
    let mut node = Node::open(key(1), RedbStore::open(&path).expect("store")).expect("node");
    node.add_channel(params(1), B256::repeat_byte(1)).expect("add");
    drop(node);
    let store = RedbStore::open(&path).expect("reopen");
    assert_eq!(store.list().expect("list"), vec![Address::repeat_byte(1)]);
    assert!(store.load(Address::repeat_byte(1)).expect("load").is_some());
    assert!(store.load(Address::repeat_byte(2)).expect("load").is_none());
    assert!(matches!(Node::open(key(2), store), Err(Error::Protocol(vbank_core::Error::WrongKey { .. }))));
}
