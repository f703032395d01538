//! `vbank::Client` reaches a node running on a store through its control socket, and the close
//! policy is a library call (issue #18 item 4): cooperative when the peer answers; without it,
//! nothing unless forced or confirmed; then a liquidation chosen by the node, and the withdrawal
//! once the lock period is over (by the chain's clock). Each test has its own anvil.

use std::time::Duration;

use vbank::{Builder, Client, CloseOptions, CloseOutcome, Error, Node, OnChain, OnChainState};
use vbank_client::LocalChain;

const ETH: u128 = 1_000_000_000_000_000_000;
const FAST: Duration = Duration::from_millis(200);
const LOCK: u64 = 3600;

async fn parties(anvil: &LocalChain, dir: &std::path::Path) -> (Node, Node) {
    let alice = Builder::new(dir.join("alice.redb"), anvil.signer(1).expect("key")).chain(anvil.endpoint()).poll(FAST);
    let alice = alice.journal(false).start().await.expect("alice");
    let bob = Builder::new(dir.join("bob.redb"), anvil.signer(2).expect("key")).chain(anvil.endpoint()).poll(FAST);
    let bob = bob.accept_channels(60, 86_400).auto_deposit(ETH).journal(false).start().await.expect("bob");
    (alice, bob)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_pays_once_per_id_and_closes_cooperatively_through_the_running_node() {
    let anvil = LocalChain::spawn().expect("anvil");
    let dir = tempfile::tempdir().expect("dir");
    let (alice, bob) = parties(&anvil, dir.path()).await;
    let store = dir.path().join("alice.redb");
    assert!(Client::running(&store).await.is_none(), "no control socket yet");
    alice.serve_control(&vbank::control_path(&store)).await.expect("control socket");
    let channel = alice.open_channel(&bob.uri().expect("uri"), [ETH, ETH], LOCK).await.expect("open");

    let mut client = Client::require_running(&store).await.expect("the running node");
    assert!(client.is_running());
    let status = client.status().await.expect("status");
    assert_eq!(status.address, alice.address());
    assert_eq!(status.channels.len(), 1);
    let pay = async |c: &mut Client| {
        c.pay(channel, ETH / 10, 2, Some("order-7".into()), Duration::from_secs(10), std::future::pending()).await
    };
    let first = pay(&mut client).await.expect("paid");
    assert_eq!((first.count, first.amount), (2, ETH / 5));
    let again = pay(&mut client).await.expect("the same outcome");
    assert_eq!(again, first, "an id pays once");
    assert_eq!(alice.balance(channel).await.expect("balance"), ETH - ETH / 5);

    let chain = vbank::Chain::connect(&anvil.endpoint(), anvil.signer(1).expect("key"), None).await.expect("chain");
    let report = client.close(&chain, channel, CloseOptions::default()).await.expect("close");
    // The close is signed on the latest sheet, the one that covers the payments.
    let expected = CloseOutcome::Cooperative { nonce: first.nonce, balances: [ETH - ETH / 5, ETH + ETH / 5] };
    assert_eq!(report.outcome, expected);
    assert_eq!(OnChain::new(chain, channel).state().await.expect("state"), OnChainState::Closed);
    alice.stop().await;
    bob.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_peer_nothing_is_done_unless_confirmed_then_the_lock_period_is_waited_out() {
    let anvil = LocalChain::spawn().expect("anvil");
    let dir = tempfile::tempdir().expect("dir");
    let (alice, bob) = parties(&anvil, dir.path()).await;
    let channel = alice.open_channel(&bob.uri().expect("uri"), [ETH, ETH], LOCK).await.expect("open");
    alice.pay(channel, ETH / 4).await.expect("pay");
    bob.stop().await;

    let chain = vbank::Chain::connect(&anvil.endpoint(), anvil.signer(1).expect("key"), None).await.expect("chain");
    let onchain = OnChain::new(chain.clone(), channel);
    let short = CloseOptions { timeout: Duration::from_secs(1), ..CloseOptions::default() };
    match alice.close_with(channel, short.clone()).await {
        Err(Error::Uncooperative { lock_period, .. }) => assert_eq!(lock_period, LOCK),
        other => panic!("expected an uncooperative peer, got {other:?}"),
    }
    assert_eq!(onchain.state().await.expect("state"), OnChainState::Running, "nothing was done");

    let asked = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen = std::sync::Arc::clone(&asked);
    let confirm: vbank::ConfirmFn = std::sync::Arc::new(move |_why: &str, _lock: u64| {
        seen.store(true, std::sync::atomic::Ordering::SeqCst);
        true
    });
    let report =
        alice.close_with(channel, CloseOptions { confirm: Some(confirm), ..short.clone() }).await.expect("liquidated");
    assert!(asked.load(std::sync::atomic::Ordering::SeqCst), "the confirmation was asked");
    let CloseOutcome::Liquidated { nonce, unlock_time, cooperative_error } = report.outcome else {
        panic!("{report:?}")
    };
    assert_eq!(nonce, 1, "the latest countersigned sheet, chosen by the node");
    assert!(cooperative_error.is_some());
    assert!(unlock_time >= chain.timestamp().await.expect("time") + LOCK - 5);

    // The lock period is not over by the chain's clock: nothing to withdraw yet.
    assert!(matches!(alice.close_with(channel, short.clone()).await, Err(Error::StillLocked { .. })));
    vbank_client::increase_time(&chain, LOCK + 1).await.expect("time");
    let report = alice.close_with(channel, short).await.expect("withdrawn");
    assert_eq!(report.outcome, CloseOutcome::Withdrawn);
    alice.stop().await;
}
