//! A node joins only channels made by the canonical factory from exactly the agreed parameters:
//! one `channelAddress` call, a code-exists check and the state.

use alloy::{
    primitives::{Address, B256, Bytes},
    providers::Provider,
};
use vbank_client::{Error, Factory, OnChain, OnChainState, deploy_factory};
use vbank_core::ChannelParams;
use vbank_e2e::{ETH, account, spawn_chain};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_factory_is_at_its_deterministic_address_and_deployed_once() {
    let local = spawn_chain();
    let alice = account(&local, 0).await;
    let factory = Factory::new(alice.clone());
    assert!(!factory.is_deployed().await.expect("code"));
    assert_eq!(factory.address(), vbank_contracts::factory_address());
    let (at, report) = deploy_factory(&alice).await.expect("deploy");
    assert_eq!(at, vbank_contracts::factory_address());
    assert!(report.is_some_and(|r| r.gas_used > 1_000_000), "deployed through the CREATE2 deployer");
    assert!(factory.is_deployed().await.expect("code"));
    // A second call finds it there and sends nothing.
    assert_eq!(deploy_factory(&alice).await.expect("again"), (at, None));
    let c = vbank_contracts::VirtualBankFactory::new(at, alice.provider().clone());
    assert_eq!(c.registry().call().await.expect("registry"), vbank_contracts::registry_address());
    assert_eq!(c.implementation().call().await.expect("impl"), vbank_contracts::implementation_address());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_factorys_channel_of_exactly_these_parameters_verifies() {
    let local = spawn_chain();
    let alice = account(&local, 0).await;
    let bob = local.signer(1).expect("key").address();
    let mut params = ChannelParams {
        chain_id: local.chain_id(),
        contract: Address::ZERO,
        parties: [alice.address(), bob],
        deposits: [ETH, 2 * ETH],
        lock_period: 600,
        token: Address::ZERO,
        salt: B256::repeat_byte(7),
    };
    // Without the factory: a clear error.
    let e = Factory::new(alice.clone()).channel_address(&params).await.expect_err("no factory yet");
    assert!(matches!(e, Error::NoFactory(_)), "{e}");
    deploy_factory(&alice).await.expect("factory");
    let factory = Factory::new(alice.clone());
    let predicted = factory.channel_address(&params).await.expect("channelAddress");
    params.contract = predicted;
    // Not opened yet: no code there.
    let e = OnChain::new(alice.clone(), predicted).verify_params(&params).await.expect_err("not opened");
    assert!(matches!(e, Error::NotAChannel(_)), "{e}");
    let (address, _) = factory.open(&params).await.expect("open");
    assert_eq!(address, predicted);
    let info = OnChain::new(alice.clone(), address).verify_params(&params).await.expect("genuine");
    assert_eq!((info.parties, info.amounts, info.lock_period), ([alice.address(), bob], [ETH, 2 * ETH], 600));
    assert_eq!((info.state, info.token), (OnChainState::Funding, Address::ZERO));
    // Opening it again is refused by the factory, explained.
    let e = factory.open(&params).await.expect_err("exists");
    assert!(e.to_string().contains("already exists"), "{e}");

    // Any other parameter or salt names another address: refused.
    let mut variants = Vec::new();
    for change in 0..5 {
        let mut p = params.clone();
        match change {
            0 => p.deposits[1] += 1,
            1 => p.lock_period += 1,
            2 => p.salt = B256::repeat_byte(8),
            3 => p.parties.swap(0, 1),
            _ => p.token = vbank_contracts::registry_address(), // a contract, so the factory accepts it
        }
        variants.push(p);
    }
    for p in variants {
        let e = OnChain::new(alice.clone(), address).verify_params(&p).await.expect_err("other parameters");
        assert!(matches!(e, Error::NotGenuine(a) if a == address), "{p:?}: {e}");
    }

    // The same code planted at another address is not the factory's channel of any parameters.
    let code = alice.provider().get_code_at(address).await.expect("code");
    let copy = Address::repeat_byte(0x11);
    alice
        .provider()
        .raw_request::<_, serde_json::Value>("anvil_setCode".into(), (copy, Bytes::from(code.to_vec())))
        .await
        .expect("anvil_setCode");
    let mut planted = params.clone();
    planted.contract = copy;
    let e = OnChain::new(alice.clone(), copy).verify_params(&planted).await.expect_err("a planted copy");
    assert!(matches!(e, Error::NotGenuine(_)), "{e}");
    // Parameters for another chain are refused before any call.
    let mut other = params.clone();
    other.chain_id += 1;
    let e = OnChain::new(alice.clone(), address).verify_params(&other).await.expect_err("other chain");
    assert!(e.to_string().contains("agreed on chain"), "{e}");
}
