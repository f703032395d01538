//! Events are delivered at least once across restarts until the application marks them handled
//! (issue #18): Bob's node receives payments; a process that opens Bob's node, reads its events
//! and is killed with SIGKILL before marking them gets them again next time; once marked, they are
//! gone. The process is this test binary run again in "child" mode.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::Duration,
};

use vbank::Builder;
use vbank_core::Event;

const ETH: u128 = 1_000_000_000_000_000_000;
const CHILD: &str = "VBANK_EVENTS_CHILD_STORE";
const MODE: &str = "VBANK_EVENTS_CHILD_MODE";
const KEY: &str = "VBANK_EVENTS_CHILD_KEY";

/// Child mode: opens the node on the store, prints `EVENT <seq> <kind>` for every event not yet
/// handled, then either marks them all handled and exits ("ack"), or waits to be killed ("read").
#[test]
fn child_reads_events() {
    let (Ok(store), Ok(mode), Ok(key)) = (std::env::var(CHILD), std::env::var(MODE), std::env::var(KEY)) else {
        return; // not a child: nothing to do
    };
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let key: alloy::signers::local::PrivateKeySigner = key.parse().expect("key");
        let node = Builder::new(store, key).start().await.expect("node");
        // The test harness has printed "test child_reads_events ... " without a newline.
        println!();
        for e in node.events().await.expect("events") {
            let kind = serde_json::to_value(&e.event).expect("json");
            let kind = match kind {
                serde_json::Value::String(s) => s,
                other => other.as_object().and_then(|o| o.keys().next().cloned()).unwrap_or_default(),
            };
            println!("EVENT {} {kind}", e.seq);
            if mode == "ack" {
                node.mark_handled(e.seq).await.expect("mark");
            }
        }
        println!("DONE");
        std::io::Write::flush(&mut std::io::stdout()).expect("flush");
        if mode == "read" {
            tokio::time::sleep(Duration::from_secs(20)).await;
        }
        node.stop().await;
    });
}

/// Runs this binary in child mode on `store`; returns its `EVENT` lines once it printed `DONE`,
/// after killing it (SIGKILL) in "read" mode.
fn child(store: &std::path::Path, key: &str, mode: &str) -> Vec<String> {
    let mut c = Command::new(std::env::current_exe().expect("exe"))
        .args(["--exact", "child_reads_events", "--nocapture", "--test-threads", "1"])
        .env(CHILD, store)
        .env(MODE, mode)
        .env(KEY, key)
        .stdout(Stdio::piped())
        .spawn()
        .expect("child");
    let mut lines = Vec::new();
    let mut out = BufReader::new(c.stdout.take().expect("stdout")).lines();
    for line in out.by_ref() {
        let line = line.expect("line");
        if line == "DONE" {
            break;
        }
        if line.starts_with("EVENT ") {
            lines.push(line);
        }
    }
    if mode == "read" {
        c.kill().expect("SIGKILL");
    }
    // Whatever else it prints is read to the end (a closed pipe would make it fail).
    out.for_each(drop);
    c.wait().expect("wait");
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_come_again_after_a_kill_until_marked_handled() {
    let anvil = vbank_client::LocalChain::spawn().expect("anvil");
    let dir = tempfile::tempdir().expect("dir");
    let fast = Duration::from_millis(200);
    let bob_key = anvil.signer(2).expect("key");
    let alice = Builder::new(dir.path().join("alice.redb"), anvil.signer(1).expect("key")).chain(anvil.endpoint());
    let alice = alice.poll(fast).start().await.expect("alice");
    let bob = Builder::new(dir.path().join("bob.redb"), bob_key.clone()).chain(anvil.endpoint()).poll(fast);
    let bob = bob.accept_channels(60, 86_400).auto_deposit(ETH).start().await.expect("bob");
    let channel = alice.open_channel(&bob.uri().expect("uri"), [ETH, ETH], 3600).await.expect("open");
    for _ in 0..3 {
        alice.pay(channel, ETH / 10).await.expect("pay");
    }
    // Bob's application sees the payments received, in order.
    let received = |events: &[vbank::StoredEvent]| {
        events.iter().filter(|e| matches!(e.event, vbank::Event::Channel(Event::Received { .. }))).count()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while received(&bob.events().await.expect("events")) < 3 {
        assert!(tokio::time::Instant::now() < deadline, "Bob's journal: {:?}", bob.events().await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let first = bob.next_event(Duration::from_secs(1)).await.expect("next").expect("an event");
    assert_eq!(first.seq, bob.events().await.expect("events")[0].seq, "oldest first");
    bob.stop().await;
    alice.stop().await;

    // A process reads them and is killed before marking them: they come again, the same ones.
    let key = format!("{}", alloy::primitives::B256::from(bob_key.to_bytes()));
    let store = dir.path().join("bob.redb");
    let read = child(&store, &key, "read");
    assert_eq!(read.iter().filter(|l| l.ends_with(" received")).count(), 3, "{read:?}");
    assert!(read.iter().any(|l| l.ends_with(" opened")), "{read:?}");
    assert_eq!(child(&store, &key, "read"), read, "delivered again after SIGKILL");
    // Marked handled: gone for good.
    assert_eq!(child(&store, &key, "ack"), read);
    assert!(child(&store, &key, "read").is_empty());
    drop(anvil);
}
