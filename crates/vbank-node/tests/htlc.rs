//! Hash-time-locked payments between two running services over loopback: a lock the payee
//! claims at once with the preimage it knows, one claimed by hand, one released, and one that
//! expires on a test clock; balances checked to the wei on both sides and after a restart.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use alloy_primitives::{Address, B256};
use tokio::net::TcpListener;
use vbank_core::{LockChange, preimage_hash};
use vbank_node::{Admission, Clock, Error, Node, RedbStore, Service};

const T: Duration = Duration::from_secs(30);
const T0: u64 = 1_800_000_000;

mod common;
use common::{key, params};

fn admission() -> Admission {
    Arc::new(|channel: Address, _peer: Address, _params| Box::pin(async move { Ok(params(channel.0[0])) }))
}

fn service(dir: &std::path::Path, n: u8, admission: Option<Admission>, clock: Clock) -> Service<RedbStore> {
    let store = RedbStore::open(&dir.join(format!("{n}.redb"))).expect("store");
    Service::new(Node::open(key(n), store).expect("node").with_clock(clock), key(n), admission)
}

async fn balances(s: &Service<RedbStore>, id: Address) -> ([u128; 2], usize) {
    let node = s.node().lock().await;
    let ch = node.channel(id).expect("channel");
    (ch.balances(), ch.locks().len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locks_fulfilled_released_and_expired_between_two_nodes() {
    let dir = tempfile::tempdir().expect("dir");
    let now = Arc::new(AtomicU64::new(T0));
    let clock: Clock = {
        let now = Arc::clone(&now);
        Arc::new(move || now.load(Ordering::SeqCst))
    };
    let alice = service(dir.path(), 1, None, Arc::clone(&clock));
    let bob = service(dir.path(), 2, Some(admission()), Arc::clone(&clock));
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let uri = bob.uri(l.local_addr().expect("addr"));
    bob.listen(l);
    alice.connect(&uri).await.expect("connect");
    let id = params(4).contract;
    alice.open(params(4), B256::repeat_byte(9), T).await.expect("open");

    // 1. Bob knows the preimage (his invoice): the lock is claimed as soon as it arrives.
    let p1 = B256::repeat_byte(0x11);
    bob.learn_preimage(id, p1).await.expect("learn");
    let mut notices = alice.subscribe();
    let (lock, _) = alice.hold(id, 1_000, preimage_hash(&p1), T0 + 3600, T).await.expect("hold");
    let fulfilled = loop {
        if let vbank_node::Notice::Event { event: vbank_core::Event::Lock { lock: l, change, .. }, .. } =
            notices.recv().await.expect("notice")
            && l == lock
            && matches!(change, LockChange::Fulfilled { .. })
        {
            break change;
        }
    };
    assert_eq!(fulfilled, LockChange::Fulfilled { preimage: p1 }, "Alice learns the preimage");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(balances(&alice, id).await, ([999_000, 1_001_000], 0));
    assert_eq!(balances(&bob, id).await, ([999_000, 1_001_000], 0));

    // 2. Claimed by hand; 3. released; an unknown preimage claims nothing.
    let p2 = B256::repeat_byte(0x22);
    alice.hold(id, 500, preimage_hash(&p2), T0 + 3600, T).await.expect("hold");
    let e = bob.fulfil(id, B256::repeat_byte(0x99), T).await.expect_err("no such lock");
    assert!(matches!(e, Error::Protocol(vbank_core::Error::BadLock(_))), "{e}");
    bob.fulfil(id, p2, T).await.expect("fulfil");
    let (l3, _) = alice.hold(id, 70, B256::repeat_byte(0x33), T0 + 3600, T).await.expect("hold");
    assert_eq!(balances(&alice, id).await, ([998_430, 1_001_500], 1));
    bob.release(id, l3.hash, T).await.expect("release");
    assert_eq!(balances(&alice, id).await, ([998_500, 1_001_500], 0));

    // 4. Expiry by the clock: too soon, then after expiry and grace the lock comes back.
    let (l4, _) = alice.hold(id, 9, B256::repeat_byte(0x44), T0 + 3600, T).await.expect("hold");
    let e = bob.hold(id, 1, B256::repeat_byte(0x45), T0 + 5, T).await.expect_err("expiry too soon for Alice");
    assert!(e.to_string().contains("expires at"), "{e}");
    assert!(alice.node().lock().await.expire_due(id).expect("nothing due").0.is_empty());
    now.store(T0 + 3600 + 1000, Ordering::SeqCst);
    let (due, frame) = alice.node().lock().await.expire_due(id).expect("due");
    assert_eq!(due, vec![l4]);
    assert!(frame.is_some());
    alice.shutdown().await;
    bob.shutdown().await;
    drop((alice, bob));
    // The expiry goes out after a restart from the stores (it was stored before it was sent).
    let alice = service(dir.path(), 1, None, Arc::clone(&clock));
    let bob = service(dir.path(), 2, Some(admission()), clock);
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let uri = bob.uri(l.local_addr().expect("addr"));
    bob.listen(l);
    alice.connect(&uri).await.expect("reconnect");
    for _ in 0..100 {
        if balances(&bob, id).await == ([998_500, 1_001_500], 0) && balances(&alice, id).await.1 == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(balances(&alice, id).await, ([998_500, 1_001_500], 0));
    assert_eq!(balances(&bob, id).await, ([998_500, 1_001_500], 0));
}
