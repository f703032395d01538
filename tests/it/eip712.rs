//! The deployed contract verifies exactly the digests the protocol core signs.

use alloy::{primitives::keccak256, sol_types::SolStruct};
use vbank_contracts::VirtualBank;
use vbank_core::{BalanceSheet, Close, Waiver, domain};
use vbank_e2e::{ETH, open_channel, spawn_chain};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn domain_and_type_hashes_equal_the_contracts() {
    let mut net = open_channel(spawn_chain(), [ETH, ETH], 3600, true).await;
    let c = VirtualBank::new(net.address, net.carol.provider().clone());
    let ours = domain(net.local.chain_id(), net.address);
    assert_eq!(c.domainSeparator().call().await.expect("call"), ours.separator());
    assert_eq!(
        c.BALANCE_SHEET_TYPEHASH().call().await.expect("call"),
        keccak256(BalanceSheet::eip712_encode_type().as_bytes())
    );
    assert_eq!(c.WAIVER_TYPEHASH().call().await.expect("call"), keccak256(Waiver::eip712_encode_type().as_bytes()));
    assert_eq!(c.CLOSE_TYPEHASH().call().await.expect("call"), keccak256(Close::eip712_encode_type().as_bytes()));
    // and a sheet signed by the core is accepted by the contract's ecrecover
    net.pay(0, 12345);
    let sheet = net.bob.channel.latest().expect("sheet").clone();
    net.bob.onchain.liquidate(&sheet).await.expect("the contract verifies the core's signature");
}
