//! Liquidations seen and punishments made are journaled like a channel's own events (issue #18
//! item 2): stored, delivered again after a restart until marked handled, and journaled once even
//! though the watcher reports a liquidation again after a restart. Each test has its own anvil.

use std::time::Duration;

use vbank::{Builder, ChainRecord, Event, Node, StoredEvent};
use vbank_client::{LocalChain, OnChain};

const ETH: u128 = 1_000_000_000_000_000_000;
const FAST: Duration = Duration::from_millis(200);

/// Bob's node on `store`: it joins channels, pays its deposit, journals (the default).
async fn bob(anvil: &LocalChain, store: &std::path::Path) -> Node {
    // The store may be held a moment longer by the previous node's last tasks.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let b = Builder::new(store, anvil.signer(2).expect("key")).chain(anvil.endpoint()).poll(FAST);
        match b.accept_channels(60, 86_400).auto_deposit(ETH).start().await {
            Ok(n) => return n,
            Err(e) if tokio::time::Instant::now() < deadline => {
                eprintln!("restarting Bob's node: {e}");
                tokio::time::sleep(FAST).await;
            }
            Err(e) => panic!("Bob's node: {e}"),
        }
    }
}

fn chain_records(events: &[StoredEvent]) -> Vec<ChainRecord> {
    events
        .iter()
        .filter_map(|e| match &e.event {
            Event::Chain(r) => Some(r.clone()),
            Event::Channel(_) => None,
        })
        .collect()
}

/// Waits until Bob's journal holds `n` chain records.
async fn wait_records(bob: &Node, n: usize) -> Vec<ChainRecord> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let records = chain_records(&bob.events().await.expect("events"));
        if records.len() >= n {
            return records;
        }
        assert!(tokio::time::Instant::now() < deadline, "Bob's journal after 60 s: {records:?}");
        tokio::time::sleep(FAST).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_punishment_is_journaled_and_delivered_again_after_a_restart_until_handled() {
    let anvil = LocalChain::spawn().expect("anvil");
    let dir = tempfile::tempdir().expect("dir");
    let alice_key = anvil.signer(1).expect("key");
    let alice = Builder::new(dir.path().join("alice.redb"), alice_key.clone()).chain(anvil.endpoint()).poll(FAST);
    let alice = alice.journal(false).start().await.expect("alice");
    let bob_store = dir.path().join("bob.redb");
    let bob_node = bob(&anvil, &bob_store).await;
    let channel = alice.open_channel(&bob_node.uri().expect("uri"), [ETH, ETH], 3600).await.expect("open");
    alice.pay(channel, ETH / 2).await.expect("pay");
    let stale = alice.service().node().lock().await.channel(channel).and_then(|c| c.latest().cloned()).expect("sheet");
    alice.pay(channel, ETH / 2).await.expect("pay");
    let chain = vbank_client::Chain::connect(&anvil.endpoint(), alice_key, None).await.expect("chain");
    OnChain::new(chain, channel).liquidate(&stale).await.expect("the cheat");

    let records = wait_records(&bob_node, 2).await;
    assert!(records.contains(&ChainRecord::LiquidationSeen { nonce: stale.nonce, revoked: true }), "{records:?}");
    assert!(
        records.iter().any(|r| matches!(r, ChainRecord::Punished { nonce, .. } if *nonce == stale.nonce)),
        "{records:?}"
    );
    bob_node.stop().await;

    // Not handled: delivered again after a restart, once each.
    let bob_node = bob(&anvil, &bob_store).await;
    tokio::time::sleep(Duration::from_secs(2)).await; // the watcher has looked at the chain again
    let events = bob_node.events().await.expect("events");
    assert_eq!(chain_records(&events), records, "the same records, not journaled twice");
    for e in events.iter().filter(|e| matches!(e.event, Event::Chain(_))) {
        assert_eq!(e.channel, channel);
        bob_node.mark_handled(e.seq).await.expect("mark");
    }
    bob_node.stop().await;

    // Handled: gone for good.
    let bob_node = bob(&anvil, &bob_store).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(chain_records(&bob_node.events().await.expect("events")).is_empty());
    bob_node.stop().await;
    alice.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_honest_liquidation_seen_again_after_a_restart_is_journaled_once() {
    let anvil = LocalChain::spawn().expect("anvil");
    let dir = tempfile::tempdir().expect("dir");
    let alice_key = anvil.signer(1).expect("key");
    let alice = Builder::new(dir.path().join("alice.redb"), alice_key.clone()).chain(anvil.endpoint()).poll(FAST);
    let alice = alice.journal(false).start().await.expect("alice");
    let bob_store = dir.path().join("bob.redb");
    let bob_node = bob(&anvil, &bob_store).await;
    let channel = alice.open_channel(&bob_node.uri().expect("uri"), [ETH, ETH], 3600).await.expect("open");
    alice.pay(channel, ETH / 4).await.expect("pay");
    // Alice liquidates with her latest sheet: nothing to punish, but Bob's node saw it.
    let report = alice
        .close_with(channel, vbank::CloseOptions { timeout: Duration::ZERO, force: true, ..Default::default() })
        .await
        .expect("liquidate");
    let vbank::CloseOutcome::Liquidated { nonce, .. } = report.outcome else { panic!("{report:?}") };
    let records = wait_records(&bob_node, 1).await;
    assert_eq!(records, vec![ChainRecord::LiquidationSeen { nonce, revoked: false }]);
    bob_node.stop().await;

    // The contract is still liquidating: the watcher reports the liquidation again, the journal
    // holds it once.
    let bob_node = bob(&anvil, &bob_store).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let events = bob_node.events().await.expect("events");
    assert_eq!(chain_records(&events), records);
    bob_node.stop().await;
    alice.stop().await;
}
