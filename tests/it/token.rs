//! ERC-20 channels and hash-time locks against the v2 contracts: deposits approved and pulled,
//! a cooperative close paying tokens, a liquidation with locks settled by `unlock` through the
//! preimage registry.

use alloy::{
    primitives::{Address, B256, U256},
    providers::Provider,
};
use vbank_client::{OnChainState, Registry, increase_time};
use vbank_contracts::StandardToken;
use vbank_core::{BalanceSheet, HashLock, LiquidationSheet, preimage_hash, sign};
use vbank_e2e::{ETH, account, open_channel, open_channel_with, spawn_chain};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_channel_opens_funds_pays_and_closes_in_tokens() {
    let local = spawn_chain();
    let carol = account(&local, 2).await;
    let token = StandardToken::deploy(carol.provider().clone()).await.expect("deploy the token");
    let t = *token.address();
    let [a, b] = [local.signer(0).expect("a").address(), local.signer(1).expect("b").address()];
    for who in [a, b] {
        let mint = token.mint(who, U256::from(5 * ETH)).send().await.expect("mint");
        mint.get_receipt().await.expect("minted");
    }
    let balance = |who: Address| {
        let token = token.clone();
        async move { token.balanceOf(who).call().await.expect("balance") }
    };
    let eth_before = carol.provider().get_balance(a).await.expect("eth");
    let mut net = open_channel_with(local, [2 * ETH, ETH], 3600, t, true).await;
    let info = net.carol_onchain().info().await.expect("info");
    assert_eq!((info.state, info.token, info.outstanding), (OnChainState::Running, t, 3 * ETH));
    assert_eq!(balance(net.address).await, U256::from(3 * ETH), "the channel holds the tokens");
    assert_eq!(balance(a).await, U256::from(3 * ETH));
    net.pay(0, ETH / 2);
    net.pay(1, ETH / 4);
    let (nonce, balances, sigs) = {
        let m = net.alice.channel.close().expect("close").reply.expect("request");
        let r = net.bob.channel.handle(&m).expect("accept").reply.expect("reply");
        net.alice.channel.handle(&r).expect("done");
        net.alice.channel.close_signatures().expect("signatures")
    };
    net.carol_onchain().cooperative_close(nonce, balances, &sigs).await.expect("close");
    assert_eq!(balances, [2 * ETH - ETH / 4, ETH + ETH / 4]);
    assert_eq!(balance(a).await, U256::from(3 * ETH + balances[0]));
    assert_eq!(balance(b).await, U256::from(4 * ETH + balances[1]));
    assert_eq!(balance(net.address).await, U256::ZERO);
    // Alice's ETH paid only gas.
    assert!(net.balance(a).await < u128::try_from(eth_before).expect("fits"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locks_of_a_liquidated_sheet_settle_through_the_registry() {
    let net = open_channel(spawn_chain(), [ETH, ETH], 600, true).await;
    let registry = Registry::new(&net.carol);
    let (revealed, unrevealed) = (B256::repeat_byte(0x51), B256::repeat_byte(0x52));
    assert_eq!(registry.revealed_at(preimage_hash(&revealed)).await.expect("read"), 0);
    let now = net.carol.timestamp().await.expect("now");
    // Bob signs a sheet (nonce 1) where Alice's 0.3 ETH goes to Bob if he reveals in time and
    // Bob's 0.2 ETH goes to Alice likewise; Alice liquidates with it.
    let locks = [
        HashLock { receiver: 1, amount: 3 * ETH / 10, expiry: now + 10_000, hash: preimage_hash(&revealed) },
        HashLock { receiver: 0, amount: 2 * ETH / 10, expiry: now + 700, hash: preimage_hash(&unrevealed) },
    ];
    let balances = [ETH - 3 * ETH / 10, ETH - 2 * ETH / 10];
    let waiver = Address::repeat_byte(0x77);
    let sheet = BalanceSheet::with_locks(1, balances, &locks, waiver);
    let peer_signature = sign(net.bob.chain.signer(), &sheet, &net.params.domain()).expect("sign");
    let liquidation = LiquidationSheet { nonce: 1, balances, waiver, locks: locks.to_vec(), peer_signature };
    // Locks that do not add up are refused before sending.
    let mut short = liquidation.clone();
    short.locks.pop();
    assert!(net.alice.onchain.liquidate(&short).await.is_err());
    let bob_before = net.balance(net.bob.chain.address()).await;
    net.alice.onchain.liquidate(&liquidation).await.expect("liquidate with locks");
    assert_eq!(net.balance(net.bob.chain.address()).await - bob_before, balances[1], "Bob's balance at once");
    let l = net.carol_onchain().info().await.expect("info").liquidation.expect("liquidation");
    assert_eq!((l.locked, l.locks_root), (5 * ETH / 10, vbank_core::locks_root(&locks)));

    // Bob reveals his preimage before its expiry.
    registry.reveal(revealed).await.expect("reveal");
    let at = registry.revealed_at(preimage_hash(&revealed)).await.expect("read");
    assert!(at >= now, "revealed at {at}");
    // Too early: the lock period is not over.
    let e = net.carol_onchain().unlock(&locks).await.expect_err("too early");
    assert!(e.to_string().contains("lock period not over"), "{e}");
    increase_time(&net.carol, 800).await.expect("time");
    // The master withdraws; the locks remain: Settling.
    net.alice.onchain.withdraw_by_master().await.expect("withdraw");
    assert_eq!(net.carol_onchain().state().await.expect("state"), OnChainState::Settling);
    // Wrong locks are refused before sending.
    assert!(net.carol_onchain().unlock(&locks[..1]).await.is_err());
    let before = net.balances().await;
    net.carol_onchain().unlock(&locks).await.expect("unlock");
    let after = net.balances().await;
    // The revealed lock pays Bob; the unrevealed one, expired, returns to its sender Bob too.
    assert_eq!(after[0] - before[0], 0);
    assert_eq!(after[1] - before[1], 5 * ETH / 10);
    let info = net.carol_onchain().info().await.expect("info");
    assert_eq!((info.state, info.outstanding), (OnChainState::Closed, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_and_deposit_pays_the_openers_deposit_in_the_same_transaction() {
    use vbank_client::{Factory, OnChain, deploy_factory};
    use vbank_core::ChannelParams;
    let local = spawn_chain();
    let [alice, bob, carol] = [account(&local, 0).await, account(&local, 1).await, account(&local, 2).await];
    deploy_factory(&carol).await.expect("factory");
    let token = StandardToken::deploy(carol.provider().clone()).await.expect("token");
    for who in [alice.address(), bob.address()] {
        token.mint(who, U256::from(5 * ETH)).send().await.expect("mint").get_receipt().await.expect("minted");
    }
    for t in [Address::ZERO, *token.address()] {
        let mut params = ChannelParams {
            chain_id: local.chain_id(),
            contract: Address::ZERO,
            parties: [alice.address(), bob.address()],
            deposits: [2 * ETH, ETH],
            lock_period: 600,
            token: t,
            salt: B256::repeat_byte(9),
        };
        let (address, report) = Factory::new(alice.clone()).open_and_deposit(&params).await.expect("openAndDeposit");
        assert!(report.gas_used < 200_000, "{}", report.gas_used);
        params.contract = address;
        let info = OnChain::new(carol.clone(), address).verify_params(&params).await.expect("genuine");
        assert_eq!((info.state, info.deposited, info.outstanding), (OnChainState::Funding, [true, false], 2 * ETH));
        OnChain::new(bob.clone(), address).deposit_agreed(&params).await.expect("bob deposits");
        assert_eq!(OnChain::new(carol.clone(), address).state().await.expect("state"), OnChainState::Running);
    }
    assert_eq!(token.balanceOf(alice.address()).call().await.expect("balance"), U256::from(3 * ETH));
    // Someone who is not a party cannot pay a deposit with the opening.
    let params = ChannelParams {
        chain_id: local.chain_id(),
        contract: Address::ZERO,
        parties: [alice.address(), bob.address()],
        deposits: [ETH, ETH],
        lock_period: 600,
        token: Address::ZERO,
        salt: B256::repeat_byte(10),
    };
    let e = Factory::new(carol.clone()).open_and_deposit(&params).await.expect_err("not a party");
    assert!(e.to_string().contains("is not a party"), "{e}");
}
