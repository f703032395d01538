//! (e) a party whose account refuses ETH cannot block the other's payout; its share stays claimable.

use alloy::{
    primitives::{Address, Bytes},
    providers::Provider,
};
use vbank_client::OnChainState;
use vbank_e2e::{ETH, open_channel, spawn_chain};

async fn set_code(net: &vbank_e2e::Net, who: Address, code: &[u8]) {
    net.carol
        .provider()
        .raw_request::<_, serde_json::Value>("anvil_setCode".into(), (who, Bytes::copy_from_slice(code)))
        .await
        .expect("anvil_setCode");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_party_refusing_eth_does_not_block_the_close() {
    let mut net = open_channel(spawn_chain(), [2 * ETH, ETH], 3600, true).await;
    net.pay(0, ETH / 2);
    let bob = net.bob.chain.address();
    // Bob's account turns into code that reverts on every call (0xfe: INVALID).
    set_code(&net, bob, &[0xfe]).await;
    let req = net.alice.channel.close().expect("close").reply.expect("request");
    let step = net.bob.channel.handle(&req).expect("bob still signs");
    net.alice.channel.handle(&step.reply.expect("accept")).expect("ok");
    let (nonce, balances, sigs) = net.alice.channel.close_signatures().expect("sigs");
    let before_alice = net.balance(net.alice.chain.address()).await;
    let bob_before = net.balance(bob).await;
    net.carol_onchain().cooperative_close(nonce, balances, &sigs).await.expect("the close goes through");
    assert_eq!(net.balance(net.alice.chain.address()).await, before_alice + balances[0], "alice paid in full");
    assert_eq!(net.balance(bob).await, bob_before, "bob's payout could not be pushed");
    let info = net.carol_onchain().info().await.expect("info");
    assert_eq!(info.state, OnChainState::Closed);
    assert_eq!(info.outstanding, balances[1], "bob's share stays in the contract, claimable");
    // Bob's account works again; he pulls his share to a fresh address.
    set_code(&net, bob, &[]).await;
    let to = Address::repeat_byte(0x42);
    net.bob.onchain.claim(to).await.expect("claim");
    assert_eq!(net.balance(to).await, balances[1]);
    assert_eq!(net.carol_onchain().info().await.expect("info").outstanding, 0);
}
