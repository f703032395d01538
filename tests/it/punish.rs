//! (c) a liquidation with a revoked sheet is punished by the watcher; the cheater gets nothing.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use vbank_client::{OnChainState, Punisher, WatchEvent, Watcher};
use vbank_e2e::{ETH, open_channel, spawn_chain};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_punishes_a_revoked_sheet() {
    let mut net = open_channel(spawn_chain(), [2 * ETH, 2 * ETH], 3600, true).await;
    net.pay(1, ETH / 2); // Bob pays: Alice's sheet 1 gives her 2.5 ETH
    let stale = net.alice.channel.latest().expect("sheet").clone();
    net.pay(0, ETH); // Alice pays back: sheet 1 is revoked
    net.pay(0, ETH / 4);
    assert!(net.bob.channel.is_revoked_by_peer(stale.nonce));

    let state = net.bob.channel.state().clone();
    let bob = Arc::new(Mutex::new(vbank_core::Channel::restore(state, net.bob.chain.signer().clone()).expect("copy")));
    let b = Arc::clone(&bob);
    let punisher: Punisher = Arc::new(move |n, w| b.lock().ok().and_then(|c| c.punishment(n, w)));
    let mut watcher = Watcher::new(net.bob.onchain.clone(), punisher, Duration::from_millis(100)).spawn();

    let before = net.balances().await;
    let liq = net.alice.onchain.liquidate(&stale).await.expect("the contract accepts the countersigned stale sheet");
    let punished = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match watcher.next().await.expect("watcher alive") {
                WatchEvent::Punished { nonce, report } => break (nonce, report),
                WatchEvent::RpcError(e) => panic!("rpc error on a healthy chain: {e}"),
                _ => {}
            }
        }
    })
    .await
    .expect("punished in time");
    assert_eq!(punished.0, stale.nonce);
    let after = net.balances().await;
    let info = net.carol_onchain().info().await.expect("info");
    assert_eq!(info.state, OnChainState::Closed);
    // Alice paid gas and got nothing; Bob got all 4 ETH, less the fee of his punishment.
    assert_eq!(after[0], before[0] - liq.fee, "the cheater gets nothing");
    assert_eq!(after[1], before[1] + 4 * ETH - punished.1.fee, "bob takes everything");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_leaves_an_honest_liquidation_alone_and_warns_about_short_locks() {
    let mut net = open_channel(spawn_chain(), [ETH, ETH], 1, true).await;
    net.pay(0, ETH / 10);
    let latest = net.alice.channel.latest().expect("sheet").clone();
    let state = net.bob.channel.state().clone();
    let signer = net.bob.chain.signer().clone();
    let bob = Arc::new(Mutex::new(vbank_core::Channel::restore(state, signer).expect("restore")));
    let punisher: Punisher = Arc::new(move |n, w| bob.lock().ok().and_then(|c| c.punishment(n, w)));
    let mut watcher = Watcher::new(net.bob.onchain.clone(), punisher, Duration::from_millis(500)).spawn();
    match tokio::time::timeout(Duration::from_secs(10), watcher.next()).await.expect("an event") {
        Some(WatchEvent::Warning(w)) => assert!(w.contains("lock period (1 s)"), "{w}"),
        other => panic!("expected a warning, got {other:?}"),
    }
    // The contract's state is reported first, then each change.
    let next = async |watcher: &mut vbank_client::WatcherHandle| {
        tokio::time::timeout(Duration::from_secs(10), watcher.next()).await.expect("an event")
    };
    assert_eq!(next(&mut watcher).await, Some(WatchEvent::State(OnChainState::Running)));
    net.alice.onchain.liquidate(&latest).await.expect("honest liquidation");
    assert_eq!(next(&mut watcher).await, Some(WatchEvent::State(OnChainState::Liquidating)));
    match next(&mut watcher).await {
        Some(WatchEvent::HonestLiquidation { nonce }) => assert_eq!(nonce, latest.nonce),
        other => panic!("expected an honest liquidation, got {other:?}"),
    }
}
