//! (d) cancel during funding, and funding never completed.

use vbank_client::{Error, OnChainState};
use vbank_e2e::{ETH, open_channel, spawn_chain};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_during_funding_refunds_the_deposit_made() {
    let net = open_channel(spawn_chain(), [ETH, 2 * ETH], 3600, false).await;
    let d = net.alice.onchain.deposit_agreed(&net.params).await.expect("alice deposits");
    let info = net.carol_onchain().info().await.expect("info");
    assert_eq!((info.state, info.deposited, info.outstanding), (OnChainState::Funding, [true, false], ETH));
    let before = net.balances().await;
    let c = net.bob.onchain.cancel().await.expect("bob cancels");
    let after = net.balances().await;
    assert_eq!(after[0], before[0] + ETH, "alice refunded to the wei");
    assert_eq!(after[1], before[1] - c.fee, "bob paid only gas");
    assert!(d.gas_used < 60_000);
    let info = net.carol_onchain().info().await.expect("info");
    assert_eq!((info.state, info.outstanding), (OnChainState::Closed, 0));
    // a second deposit after the close is refused before sending
    let err = net.bob.onchain.deposit_agreed(&net.params).await.expect_err("closed");
    assert!(matches!(err, Error::Precheck(_)), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn funding_never_completed_keeps_money_safe() {
    let net = open_channel(spawn_chain(), [ETH, ETH], 3600, false).await;
    net.alice.onchain.deposit_agreed(&net.params).await.expect("alice deposits");
    // Bob never deposits. Nothing can be liquidated...
    let sheet = net.alice.channel.latest().expect("sheet 0").clone();
    let err = net.alice.onchain.liquidate(&sheet).await.expect_err("not running");
    assert!(err.to_string().contains("the channel is Funding, this needs it Running"), "{err}");
    let forced = net.alice.onchain.clone().force(true).liquidate(&sheet).await.expect_err("not running");
    assert_eq!(forced.revert().expect("decoded").to_string(), "the channel is Funding, which does not allow this");
    // A deposit without the agreed parameters is refused (unless forced).
    assert!(matches!(net.bob.onchain.deposit().await, Err(Error::Precheck(_))));
    // ...a double deposit is refused, an outsider cannot cancel, and Alice gets her money back.
    assert!(matches!(net.alice.onchain.deposit_agreed(&net.params).await, Err(Error::Precheck(_))));
    assert!(matches!(net.carol_onchain().cancel().await, Err(Error::Precheck(_))));
    let outsider = net.carol_onchain().force(true).cancel().await.expect_err("not a party");
    assert!(outsider.revert().expect("decoded").to_string().ends_with("is not a party of this channel"));
    let before = net.balance(net.alice.chain.address()).await;
    let c = net.alice.onchain.cancel().await.expect("cancel");
    assert_eq!(net.balance(net.alice.chain.address()).await, before + ETH - c.fee);
}
