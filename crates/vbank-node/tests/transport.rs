//! Attacks on the transport, each an automated test that must fail for the attacker: a relay
//! in the middle, a flipped bit, a replayed session, a URI with a key the listener does not hold,
//! an impostor injecting frames, a stalled handshake; and one test per limit of [`Limits`].

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use alloy_primitives::{Address, B256, Bytes};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::broadcast,
};
use vbank_node::{
    Admission, Error, Frame, Limits, Node, NodeUri, Notice, RedbStore, Service, Session, initiate, node_key,
    read_frame, write_frame,
};

mod common;
use common::{key, params};

const T: Duration = Duration::from_secs(30);

/// Admits channels 1..=9 with the test parameters (standing in for the on-chain check), which
/// the opening proposal must carry.
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

fn service(dir: &std::path::Path, n: u8, admission: Option<Admission>, limits: Limits) -> Service<RedbStore> {
    let store = RedbStore::open(&dir.join(format!("{n}.redb"))).expect("store");
    Service::with_limits(Node::open(key(n), store).expect("node"), key(n), admission, limits)
}

async fn listen(s: &Service<RedbStore>) -> NodeUri {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let uri = s.uri(l.local_addr().expect("addr"));
    s.listen(l);
    uri
}

/// Waits (at most `T`) for a notice that `pick` accepts.
async fn wait_for(rx: &mut broadcast::Receiver<Notice>, what: &str, pick: impl Fn(&Notice) -> bool) -> Notice {
    tokio::time::timeout(T, async {
        loop {
            match rx.recv().await {
                Ok(n) if pick(&n) => return n,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(e) => panic!("{what}: {e}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no notice within {} s: {what}", T.as_secs()))
}

fn refused_connection(n: &Notice, words: &str) -> bool {
    matches!(n, Notice::Disconnected { peer, reason } if *peer == Address::ZERO && reason.contains(words))
}

fn dropped(n: &Notice, who: Address, words: &str) -> bool {
    matches!(n, Notice::Disconnected { peer, reason } if *peer == who && reason.contains(words))
}

/// A man in the middle: forwards bytes both ways between its clients and `target`, recording
/// them; can flip one bit of the next client→target chunk, and hold the traffic.
struct Relay {
    addr: SocketAddr,
    up: Arc<std::sync::Mutex<Vec<u8>>>,
    down: Arc<std::sync::Mutex<Vec<u8>>>,
    flip: Arc<AtomicBool>,
    paused: Arc<AtomicBool>,
}

impl Relay {
    async fn start(target: String) -> Self {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let relay = Self {
            addr: l.local_addr().expect("addr"),
            up: Arc::default(),
            down: Arc::default(),
            flip: Arc::default(),
            paused: Arc::default(),
        };
        let (up, down, flip, paused) =
            (Arc::clone(&relay.up), Arc::clone(&relay.down), Arc::clone(&relay.flip), Arc::clone(&relay.paused));
        tokio::spawn(async move {
            while let Ok((client, _)) = l.accept().await {
                let Ok(server) = TcpStream::connect(&target).await else { continue };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::spawn(pump(cr, sw, Arc::clone(&up), Some(Arc::clone(&flip)), Arc::clone(&paused)));
                tokio::spawn(pump(sr, cw, Arc::clone(&down), None, Arc::clone(&paused)));
            }
        });
        relay
    }

    /// The URI of `whose` node as the relay presents it: its key, the relay's address.
    fn uri(&self, whose: u8) -> NodeUri {
        NodeUri::new(node_key(&key(whose)), self.addr.ip().to_string(), self.addr.port())
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    record: Arc<std::sync::Mutex<Vec<u8>>>,
    flip: Option<Arc<AtomicBool>>,
    paused: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        while paused.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if flip.as_ref().is_some_and(|f| f.swap(false, Ordering::SeqCst)) {
            buf[n - 1] ^= 0x01;
        }
        record.lock().expect("record").extend_from_slice(&buf[..n]);
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// A hand-driven peer with key `n`: handshake, `init` both ways.
async fn raw_peer(uri: &NodeUri, n: u8) -> (TcpStream, Session) {
    let mut s = TcpStream::connect(uri.socket_addr()).await.expect("connect");
    let mut session = initiate(&mut s, &key(n), uri.key()).await.expect("handshake");
    write_frame(&mut s, &mut session.sender, &Frame::Init {}).await.expect("init");
    let first = read_frame(&mut s, &mut session.receiver).await.expect("the node's init");
    assert_eq!(first, Frame::Init {});
    (s, session)
}

/// Reads (and drops) until the other side hangs up; panics after `T`.
async fn until_hung_up(s: &mut TcpStream) -> usize {
    let mut total = 0;
    let mut buf = [0u8; 4096];
    tokio::time::timeout(T, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return total,
                Ok(n) => total += n,
            }
        }
    })
    .await
    .expect("the node hangs up")
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_in_the_middle_reads_nothing_and_a_flipped_bit_ends_the_link() {
    let dir = tempfile::tempdir().expect("dir");
    let bob = service(dir.path(), 2, Some(admission()), Limits::default());
    let bob_uri = listen(&bob).await;
    // M stands where Alice believes Bob is: the URI has Bob's key and M's address.
    let m = Relay::start(bob_uri.socket_addr()).await;
    let alice = service(dir.path(), 1, None, Limits::default());
    alice.connect(&m.uri(2)).await.expect("linked to Bob through M");
    let id = params(3).contract;
    alice.open(params(3), B256::repeat_byte(3), T).await.expect("open");
    alice.pay(id, 1_000, 10, T).await.expect("pay");
    bob.pay(id, 7, 1, T).await.expect("pay back");

    // M saw every byte and can read none: no JSON, no channel, no party address.
    let seen = [m.up.lock().expect("up").clone(), m.down.lock().expect("down").clone()];
    assert!(seen[0].len() > 1000 && seen[1].len() > 1000, "traffic went through M");
    let channel_hex = hex::encode(id.as_slice());
    let alice_hex = hex::encode(key(1).address().as_slice());
    for bytes in &seen {
        for needle in
            [&b"channel"[..], b"propose", b"revoke", b"\"nonce\"", channel_hex.as_bytes(), alice_hex.as_bytes()]
        {
            assert!(!contains(bytes, needle), "M read {:?}", String::from_utf8_lossy(needle));
            assert!(!contains(&bytes.to_ascii_lowercase(), needle), "M read {:?}", String::from_utf8_lossy(needle));
        }
    }

    // M flips one bit of Alice's next message: Bob drops the link and his channel is unchanged.
    let bob_before = bob.node().lock().await.channel(id).expect("ch").state().clone();
    let balances = alice.node().lock().await.channel(id).expect("ch").balances();
    let mut bob_notices = bob.subscribe();
    m.flip.store(true, Ordering::SeqCst);
    let e = alice.pay(id, 5, 1, T).await.expect_err("the tampered proposal never counts");
    let gone = |e: &Error| matches!(e, Error::PeerGone { .. });
    assert!(gone(&e) || matches!(&e, Error::Unsettled { reason, .. } if gone(reason)), "{e}");
    wait_for(&mut bob_notices, "Bob ends the link", |n| dropped(n, key(1).address(), "failed authentication")).await;
    assert_eq!(bob.node().lock().await.channel(id).expect("ch").state(), &bob_before, "nothing changed at Bob");
    assert_eq!(alice.node().lock().await.channel(id).expect("ch").balances(), balances);

    // Alice's node dials again by itself; the stored proposal is sent again and completes.
    let deadline = tokio::time::Instant::now() + T;
    while bob.node().lock().await.channel(id).expect("ch").balances()[1] != balances[1] + 5 {
        assert!(tokio::time::Instant::now() < deadline, "the payment never completed after the relink");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_impostor_can_neither_answer_for_nor_speak_for_another_party() {
    let dir = tempfile::tempdir().expect("dir");
    let bob = service(dir.path(), 2, Some(admission()), Limits::default());
    let bob_uri = listen(&bob).await;
    let mallory = service(dir.path(), 3, Some(admission()), Limits::default());
    let mallory_uri = listen(&mallory).await;
    let alice = service(dir.path(), 1, None, Limits::default());

    // 1. Mallory's node claims to be Bob (Alice was given Bob's key at Mallory's address): it
    //    cannot answer act one, which only Bob's key opens.
    let mut m_notices = mallory.subscribe();
    let fake = NodeUri::new(*bob_uri.key(), mallory_uri.host(), mallory_uri.port());
    let e = alice.connect(&fake).await.expect_err("Mallory is not Bob");
    assert!(matches!(e, Error::Auth(ref m) if m.contains("does not hold the key")), "{e}");
    wait_for(&mut m_notices, "Mallory fails act one", |n| refused_connection(n, "handshake authentication failed"))
        .await;
    assert!(alice.connected().is_empty() && mallory.connected().is_empty());

    // 2. The old relay: Alice dials Mallory (her real URI) and Mallory passes Alice's handshake on
    //    to Bob, to be taken for Alice there. Act one was made for Mallory's key: Bob refuses it.
    let relay = Relay::start(bob_uri.socket_addr()).await;
    let mut b_notices = bob.subscribe();
    let e = alice.connect(&relay.uri(3)).await.expect_err("Bob is not Mallory");
    assert!(matches!(e, Error::Auth(_)), "{e}");
    wait_for(&mut b_notices, "Bob fails act one", |n| refused_connection(n, "handshake authentication failed")).await;
    assert!(bob.connected().is_empty());

    // 3. Mallory links to Bob as herself, and injects frames for Alice's channel while Bob waits
    //    for Alice: a proposal paying Mallory's choice and a refusal of Bob's update. Bob refuses
    //    the first, does not hear the second, and his payment completes.
    let relay = Relay::start(bob_uri.socket_addr()).await;
    alice.connect(&relay.uri(2)).await.expect("Alice links to Bob");
    let id = params(4).contract;
    alice.open(params(4), B256::repeat_byte(4), T).await.expect("open");
    // (Alice's open returns once she committed; Bob holds sheet 0 once her commit arrived.)
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let node = bob.node().lock().await;
        let ch = node.channel(id).expect("ch");
        if *ch.phase() == vbank_core::Phase::Open && ch.is_idle() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "Bob never got sheet 0");
        drop(node);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let before = bob.node().lock().await.channel(id).expect("ch").state().clone();
    relay.paused.store(true, Ordering::SeqCst);
    let paying = tokio::spawn({
        let bob = bob.clone();
        async move { bob.pay(id, 9, 1, T).await }
    });
    let deadline = tokio::time::Instant::now() + T;
    while bob.node().lock().await.channel(id).expect("ch").is_idle() {
        assert!(tokio::time::Instant::now() < deadline, "Bob never proposed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let in_flight = bob.node().lock().await.channel(id).expect("ch").state().clone();
    let (mut s, mut session) = raw_peer(&bob_uri, 3).await;
    let propose = Frame::Channel {
        more: Vec::new(),
        channel: id,
        message: vbank_core::Message::Propose {
            signature: None,
            nonce: 1,
            balances: [0, 2_000_000],
            waiver: Address::repeat_byte(3),
            locks: vec![],
            moves: vec![],
            onions: vec![],
        },
        params: None,
    };
    write_frame(&mut s, &mut session.sender, &propose).await.expect("write");
    let refuse = Frame::Refused { channel: Some(id), reason: "Alice says no".into(), about: None };
    write_frame(&mut s, &mut session.sender, &refuse).await.expect("write");
    let answer = read_frame(&mut s, &mut session.receiver).await.expect("Bob answers");
    assert!(
        matches!(answer, Frame::Refused { ref reason, .. } if reason.contains("is not the peer of channel")),
        "{answer:?}"
    );
    wait_for(
        &mut b_notices,
        "Bob hears Mallory's refusal",
        |n| matches!(n, Notice::RefusedByPeer { peer, .. } if *peer == key(3).address()),
    )
    .await;
    assert_eq!(bob.node().lock().await.channel(id).expect("ch").state(), &in_flight, "Mallory changed nothing");
    relay.paused.store(false, Ordering::SeqCst);
    assert_eq!(paying.await.expect("task").expect("Bob's payment completes").amount, 9);
    assert_ne!(bob.node().lock().await.channel(id).expect("ch").state(), &before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_session_replayed_to_the_node_is_refused() {
    let dir = tempfile::tempdir().expect("dir");
    let bob = service(dir.path(), 2, Some(admission()), Limits::default());
    let bob_uri = listen(&bob).await;
    let recorder = Relay::start(bob_uri.socket_addr()).await;
    let alice = service(dir.path(), 1, None, Limits::default());
    alice.connect(&recorder.uri(2)).await.expect("connect");
    let id = params(5).contract;
    alice.open(params(5), B256::repeat_byte(5), T).await.expect("open");
    alice.pay(id, 100, 3, T).await.expect("pay");
    let mut notices = bob.subscribe();
    alice.shutdown().await;
    wait_for(&mut notices, "Alice gone", |n| dropped(n, key(1).address(), "")).await;
    let recorded = recorder.up.lock().expect("up").clone();
    let before = bob.node().lock().await.channel(id).expect("ch").state().clone();

    // Everything Alice sent, sent again on a new connection: act one is accepted (it is only
    // the initiator's ephemeral key), act three was made for another act two and fails.
    let mut s = TcpStream::connect(bob_uri.socket_addr()).await.expect("connect");
    s.write_all(&recorded).await.expect("replay");
    let answered = until_hung_up(&mut s).await;
    assert!(answered <= 50, "Bob sent act two at most, and no frame ({answered} bytes)");
    wait_for(&mut notices, "Bob refuses the replay", |n| refused_connection(n, "handshake authentication failed"))
        .await;
    assert_eq!(bob.node().lock().await.channel(id).expect("ch").state(), &before);
    assert!(bob.connected().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dialing_a_uri_whose_key_the_listener_does_not_hold_is_refused() {
    let dir = tempfile::tempdir().expect("dir");
    let bob = service(dir.path(), 2, Some(admission()), Limits::default());
    let bob_uri = listen(&bob).await;
    let mut notices = bob.subscribe();
    let alice = service(dir.path(), 1, None, Limits::default());
    let wrong = NodeUri::new(node_key(&key(7)), bob_uri.host(), bob_uri.port());
    let e = alice.connect(&wrong).await.expect_err("Bob does not hold key 7");
    assert!(matches!(e, Error::Auth(ref m) if m.contains("does not hold the key")), "{e}");
    wait_for(&mut notices, "Bob refuses act one", |n| refused_connection(n, "handshake authentication failed")).await;
    assert!(alice.connected().is_empty() && bob.connected().is_empty());
    // nothing was remembered for the wrong key's party
    assert!(alice.node().lock().await.peer_addresses().expect("peers").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_handshake_times_out_and_frees_its_slot_and_acts_are_read_by_their_size() {
    let dir = tempfile::tempdir().expect("dir");
    let limits = Limits { handshake_timeout: Duration::from_secs(1), handshakes_per_ip: 1, ..Limits::default() };
    let bob = service(dir.path(), 2, Some(admission()), limits);
    let uri = listen(&bob).await;
    let mut notices = bob.subscribe();
    // Half of act one, then nothing.
    let mut stalled = TcpStream::connect(uri.socket_addr()).await.expect("connect");
    stalled.write_all(&[0u8; 25]).await.expect("write");
    // While it holds the only handshake slot of this address, another connection is closed at
    // once (nothing is read from it).
    let mut second = TcpStream::connect(uri.socket_addr()).await.expect("connect");
    assert_eq!(until_hung_up(&mut second).await, 0);
    wait_for(&mut notices, "the second is refused", |n| refused_connection(n, "too many handshakes")).await;
    // The stalled one is hung up on after the timeout, and its slot is free again.
    assert_eq!(until_hung_up(&mut stalled).await, 0);
    wait_for(&mut notices, "the stall times out", |n| refused_connection(n, "timed out")).await;
    // A flood of bytes instead of act one: 50 bytes are read and refused, nothing more is taken.
    let mut flood = TcpStream::connect(uri.socket_addr()).await.expect("connect");
    let _ = flood.write_all(&[0u8; 100_000]).await;
    assert_eq!(until_hung_up(&mut flood).await, 0);
    wait_for(&mut notices, "the flood is refused", |n| refused_connection(n, "invalid public key")).await;
    let alice = service(dir.path(), 1, None, Limits::default());
    alice.connect(&uri).await.expect("a real peer links");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_per_ip_are_capped() {
    let dir = tempfile::tempdir().expect("dir");
    let limits = Limits { connections_per_ip: 2, ..Limits::default() };
    let bob = service(dir.path(), 2, Some(admission()), limits);
    let uri = listen(&bob).await;
    let mut notices = bob.subscribe();
    let first = raw_peer(&uri, 4).await;
    let _second = raw_peer(&uri, 5).await;
    let mut third = TcpStream::connect(uri.socket_addr()).await.expect("connect");
    assert_eq!(until_hung_up(&mut third).await, 0, "closed without a byte");
    wait_for(&mut notices, "the third is refused", |n| refused_connection(n, "over 2 connections from 127.0.0.1"))
        .await;
    drop(first);
    wait_for(&mut notices, "the first is gone", |n| dropped(n, key(4).address(), "")).await;
    // The slot is freed when the link's task ends, just after that notice: retry a moment.
    for attempt in 0.. {
        let mut s = TcpStream::connect(uri.socket_addr()).await.expect("connect");
        if initiate(&mut s, &key(6), uri.key()).await.is_ok() {
            break;
        }
        assert!(attempt < 50, "the freed slot was not given to a new connection");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_has_one_link_a_newer_one_replaces_the_older() {
    let dir = tempfile::tempdir().expect("dir");
    let bob = service(dir.path(), 2, Some(admission()), Limits::default());
    let uri = listen(&bob).await;
    let mut notices = bob.subscribe();
    let (mut old, _) = raw_peer(&uri, 4).await;
    let _new = raw_peer(&uri, 4).await;
    wait_for(&mut notices, "the older link ends", |n| dropped(n, key(4).address(), "replaced")).await;
    until_hung_up(&mut old).await;
    assert_eq!(bob.connected(), vec![key(4).address()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inbound_peer_without_a_channel_is_dropped_after_the_grace_period() {
    let dir = tempfile::tempdir().expect("dir");
    let limits = Limits { no_channel_grace: Duration::from_secs(1), ..Limits::default() };
    let bob = service(dir.path(), 2, Some(admission()), limits);
    // Bob already shares channel 3 with Alice (key 1).
    bob.node().lock().await.add_channel(params(3), B256::repeat_byte(3)).expect("channel");
    let uri = listen(&bob).await;
    let mut notices = bob.subscribe();
    let (mut stranger, _) = raw_peer(&uri, 9).await;
    let _alice = raw_peer(&uri, 1).await;
    wait_for(&mut notices, "the stranger is dropped", |n| dropped(n, key(9).address(), "no channel")).await;
    until_hung_up(&mut stranger).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(bob.connected(), vec![key(1).address()], "the peer with a channel stays");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_does_not_read_is_not_read_from_then_dropped() {
    let dir = tempfile::tempdir().expect("dir");
    let limits = Limits { max_queue_bytes: 1024, write_timeout: Duration::from_secs(1), ..Limits::default() };
    let bob = service(dir.path(), 2, Some(admission()), limits);
    let uri = listen(&bob).await;
    let mut notices = bob.subscribe();
    let (s, mut session) = raw_peer(&uri, 9).await;
    // Pings asking for the largest pong, as fast as the node takes them, and never a read.
    let (_rd, mut wr) = s.into_split();
    let flood = tokio::spawn(async move {
        let ping = Frame::Ping { pong_len: vbank_node::frame::MAX_PONG, padding: Bytes::new() };
        let mut sent = 0u64;
        while write_frame(&mut wr, &mut session.sender, &ping).await.is_ok() {
            sent += 1;
        }
        sent
    });
    wait_for(&mut notices, "the peer is dropped", |n| dropped(n, key(9).address(), "did not read")).await;
    let sent = tokio::time::timeout(T, flood).await.expect("the flood ends with the link").expect("task");
    // Bob stopped reading once the queue was full: far fewer pings got in than pongs would
    // have filled gigabytes with.
    assert!(sent < 100_000, "{sent} pings written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pings_keep_links_alive_and_a_silent_peer_is_dropped() {
    let dir = tempfile::tempdir().expect("dir");
    let limits =
        Limits { ping_interval: Duration::from_millis(100), idle_timeout: Duration::from_secs(1), ..Limits::default() };
    let bob = service(dir.path(), 2, Some(admission()), limits);
    let uri = listen(&bob).await;
    let mut notices = bob.subscribe();
    let (mut s, mut session) = raw_peer(&uri, 9).await;
    // The node pings; this peer answers a few, then falls silent.
    for _ in 0..3 {
        let f =
            tokio::time::timeout(T, read_frame(&mut s, &mut session.receiver)).await.expect("a ping").expect("frame");
        let Frame::Ping { pong_len, .. } = f else { panic!("expected a ping, got {f:?}") };
        let pong = Frame::Pong { padding: Bytes::from(vec![0; usize::from(pong_len)]) };
        write_frame(&mut s, &mut session.sender, &pong).await.expect("pong");
    }
    wait_for(&mut notices, "the silent peer is dropped", |n| dropped(n, key(9).address(), "pings unanswered")).await;
    // A ping from the peer is answered with the pong size it asks for (up to MAX_PONG).
    let (mut s, mut session) = raw_peer(&uri, 8).await;
    let ping = Frame::Ping { pong_len: 100, padding: Bytes::new() };
    write_frame(&mut s, &mut session.sender, &ping).await.expect("ping");
    loop {
        match read_frame(&mut s, &mut session.receiver).await.expect("frame") {
            Frame::Pong { padding } => break assert_eq!(padding.len(), 100),
            Frame::Ping { .. } => continue,
            other => panic!("{other:?}"),
        }
    }
}
