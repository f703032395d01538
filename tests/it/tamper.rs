//! (f) a tampered sheet is refused before sending, and reverts with a decoded error when forced.

use vbank_client::{Error, OnChainState};
use vbank_e2e::{ETH, open_channel, spawn_chain};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_sheet_is_refused_then_decoded_when_forced() {
    let mut net = open_channel(spawn_chain(), [ETH, ETH], 3600, true).await;
    net.pay(1, ETH / 4);
    let mut sheet = net.alice.channel.latest().expect("sheet").clone();
    sheet.balances = [sheet.balances[0] + 1000, sheet.balances[1] - 1000]; // Alice helps herself
    let err = net.alice.onchain.liquidate(&sheet).await.expect_err("refused locally");
    assert!(matches!(err, Error::Precheck(ref m) if m.contains("not countersigned by the peer")), "{err}");
    let forced = net.alice.onchain.clone().force(true).liquidate(&sheet).await.expect_err("reverts");
    let msg = forced.revert().expect("a decoded custom error").to_string();
    assert!(msg.contains(&format!("but {} had to sign", net.bob.chain.address())), "{msg}");
    let mut bad_sum = net.alice.channel.latest().expect("sheet").clone();
    bad_sum.balances[0] += 1;
    let forced = net.alice.onchain.clone().force(true).liquidate(&bad_sum).await.expect_err("reverts");
    assert!(forced.revert().expect("decoded").to_string().starts_with("balances add up to"), "{forced}");
    // nothing happened on-chain; the honest sheet still works
    assert_eq!(net.carol_onchain().info().await.expect("info").state, OnChainState::Running);
    let good = net.alice.channel.latest().expect("sheet").clone();
    net.alice.onchain.liquidate(&good).await.expect("the real sheet");
}
