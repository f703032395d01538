//! (a) open, payments both ways, cooperative close; (b) unilateral close by each side.

use vbank_client::{OnChainState, increase_time};
use vbank_core::Event;
use vbank_e2e::{ETH, exchange, open_channel, spawn_chain};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_payments_then_cooperative_close_pays_exactly_the_offchain_balances() {
    let mut net = open_channel(spawn_chain(), [3 * ETH, 2 * ETH], 3600, true).await;
    assert_eq!(net.carol_onchain().info().await.expect("info").state, OnChainState::Running);
    for i in 0..100u128 {
        let from = (i % 2) as usize;
        net.pay(from, ETH / 1000 * (1 + i % 7) + i);
    }
    let off = net.alice.channel.balances();
    assert_eq!(off, net.bob.channel.balances());
    assert_eq!(net.alice.channel.nonce(), 100);
    // Alice asks to close; Bob signs; Carol submits, so the parties pay no gas.
    let req = net.alice.channel.close().expect("close").reply.expect("request");
    let step = net.bob.channel.handle(&req).expect("bob signs");
    net.alice.channel.handle(&step.reply.expect("accept")).expect("alice gets it");
    let (nonce, balances, sigs) = net.alice.channel.close_signatures().expect("both signatures");
    assert_eq!(balances, off);
    let before = net.balances().await;
    net.carol_onchain().cooperative_close(nonce, balances, &sigs).await.expect("cooperative close");
    let after = net.balances().await;
    assert_eq!(after[0] - before[0], off[0], "alice's payout to the wei");
    assert_eq!(after[1] - before[1], off[1], "bob's payout to the wei");
    let info = net.carol_onchain().info().await.expect("info");
    assert_eq!((info.state, info.outstanding), (OnChainState::Closed, 0));
}

async fn unilateral_close_by(master: usize) {
    let mut net = open_channel(spawn_chain(), [ETH, ETH], 7200, true).await;
    for i in 0..10u128 {
        net.pay((i % 2) as usize, ETH / 100 * (i + 1));
    }
    net.pay(1 - master, ETH / 50); // the master's latest sheet is the newest
    let (m, p) = if master == 0 { (&net.alice, &net.bob) } else { (&net.bob, &net.alice) };
    let sheet = m.channel.latest().expect("sheet").clone();
    let (mi, pi) = (master, 1 - master);
    let peer_before = net.balance(p.chain.address()).await;
    m.onchain.liquidate(&sheet).await.expect("liquidate");
    assert_eq!(net.balance(p.chain.address()).await - peer_before, sheet.balances[pi], "the peer is paid at once");
    // too early
    let err = net.carol_onchain().withdraw_by_master().await.expect_err("locked");
    assert!(err.to_string().contains("lock period not over"), "{err}");
    let forced = net.carol_onchain().force(true).withdraw_by_master().await.expect_err("locked");
    let revert = forced.revert().expect("decoded revert").to_string();
    let left: u64 = revert
        .strip_prefix("lock period not over: ")
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected revert text {revert}"));
    assert!((7100..=7200).contains(&left), "{revert}");
    increase_time(&net.carol, 7200).await.expect("time travel");
    let master_before = net.balance(m.chain.address()).await;
    net.carol_onchain().withdraw_by_master().await.expect("withdraw");
    assert_eq!(net.balance(m.chain.address()).await - master_before, sheet.balances[mi], "the master's frozen balance");
    let info = net.carol_onchain().info().await.expect("info");
    assert_eq!((info.state, info.outstanding), (OnChainState::Closed, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unilateral_close_by_party_zero() {
    unilateral_close_by(0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unilateral_close_by_party_one() {
    unilateral_close_by(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coalesced_payments_share_one_sheet() {
    let mut net = open_channel(spawn_chain(), [ETH, ETH], 3600, true).await;
    for _ in 0..500 {
        net.alice.channel.pay(1_000).expect("pay");
    }
    let m = net.alice.channel.propose().expect("propose").expect("one proposal");
    let events = exchange(&mut net.alice.channel, &mut net.bob.channel, 0, m);
    assert!(events.contains(&Event::PaymentsAcked { first: 0, count: 500, amount: 500_000, nonce: 1 }), "{events:?}");
    let sheet = net.bob.channel.latest().expect("sheet").clone();
    let alice_before = net.balance(net.alice.chain.address()).await;
    net.bob.onchain.liquidate(&sheet).await.expect("bob liquidates the coalesced sheet");
    let l = net.carol_onchain().info().await.expect("info").liquidation.expect("l");
    assert_eq!((l.nonce, l.locked), (1, 0));
    assert_eq!(net.balance(net.alice.chain.address()).await - alice_before, ETH - 500_000, "the peer is paid at once");
}
