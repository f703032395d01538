//! A node joins only channels whose contract is a genuine VirtualBank.

use alloy::{
    primitives::{Address, Bytes},
    providers::Provider,
};
use vbank_client::{Error, OnChain, OnChainState, deploy};
use vbank_e2e::{ETH, account, spawn_chain};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_genuine_contract_verifies() {
    let local = spawn_chain();
    let alice = account(&local, 0).await;
    let bob = local.signer(1).expect("key").address();
    let (address, _) = deploy(&alice, [alice.address(), bob], [ETH, 2 * ETH], 600).await.expect("deploy");
    let info = OnChain::new(alice.clone(), address).verify().await.expect("genuine");
    assert_eq!((info.parties, info.amounts, info.lock_period), ([alice.address(), bob], [ETH, 2 * ETH], 600));
    assert_eq!(info.state, OnChainState::Funding);

    let code = alice.provider().get_code_at(address).await.expect("code");
    let set_code = |at: Address, code: Vec<u8>| {
        let p = alice.provider().clone();
        async move {
            p.raw_request::<_, serde_json::Value>("anvil_setCode".into(), (at, Bytes::from(code)))
                .await
                .expect("anvil_setCode");
        }
    };
    // The same code planted elsewhere lacks the constructor's storage (lock period 0): refused.
    let copy = Address::repeat_byte(0x11);
    set_code(copy, code.to_vec()).await;
    OnChain::new(alice.clone(), copy).verify().await.expect_err("a planted copy was never constructed");

    // One byte changed anywhere in the logic: refused.
    for at in [1usize, code.len() / 3, code.len() / 2, code.len() - 2] {
        let mut bad = code.to_vec();
        bad[at] ^= 0x01;
        let fake = Address::repeat_byte(0x22);
        set_code(fake, bad).await;
        match OnChain::new(alice.clone(), fake).verify().await {
            Err(Error::NotGenuine(a)) => assert_eq!(a, fake),
            // A change that breaks a view makes `info` fail first: also refused.
            Err(Error::Rpc(_) | Error::RevertedRaw(_) | Error::Reverted(_)) => {}
            other => panic!("byte {at} changed: {other:?}"),
        }
    }
    // No code at all.
    let e = OnChain::new(alice.clone(), Address::repeat_byte(0x33)).verify().await.expect_err("empty");
    assert!(matches!(e, Error::NotAChannel(_)), "{e}");
}
