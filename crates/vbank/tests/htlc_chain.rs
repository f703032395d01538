//! Hash-time-locked payments settled off-chain and on chain, end to end: two nodes (services with
//! their chain drivers) on one anvil per test, the chain's clock moved with `evm_increaseTime`.
//! Every test checks what each party got from the contract to the wei (balance change plus the
//! fees its own transactions paid).

mod common;

use std::time::Duration;

use alloy::primitives::B256;
use common::*;
use vbank::ChainEvent;
use vbank_client::{OnChain, OnChainState, Registry};
use vbank_core::preimage_hash;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_fulfilled_off_chain_closes_cooperatively() {
    let s = setup().await;
    let p = B256::repeat_byte(0x11);
    s.bob.service.learn_preimage(s.id, p).await.expect("learn");
    let expiry = chain_time(&s.alice.chain).await + 3600;
    let mut notices = s.alice.service.subscribe();
    let (lock, _) = s.alice.service.hold(s.id, ETH, preimage_hash(&p), expiry, T).await.expect("hold");
    // Bob knows the preimage: he claims the lock at once, off-chain.
    tokio::time::timeout(T, async {
        loop {
            if let Ok(vbank_node::Notice::Event { event: vbank_core::Event::PreimageLearned { .. }, .. }) =
                notices.recv().await
            {
                return;
            }
        }
    })
    .await
    .expect("Alice learns the preimage from Bob's fulfil");
    let wait_settled = async {
        loop {
            if s.alice.service.node().lock().await.channel(s.id).expect("ch").locks().is_empty() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(T, wait_settled).await.expect("lock settled");
    assert_eq!(Registry::new(&s.alice.chain).revealed_at(lock.hash).await.expect("registry"), 0, "nothing on chain");
    let sigs = s.alice.service.close(s.id, T).await.expect("close");
    OnChain::new(s.alice.chain.clone(), s.id)
        .cooperative_close(sigs.nonce, sigs.balances, &sigs.signatures)
        .await
        .expect("close on chain");
    assert_eq!(s.ledger.received(&s.alice.chain, s.who).await, [4 * ETH, 6 * ETH]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_is_claimed_on_chain_when_the_payer_goes_silent() {
    let mut s = setup().await;
    let p = B256::repeat_byte(0x22);
    let expiry = chain_time(&s.alice.chain).await + 1800;
    let (lock, _) = s.alice.service.hold(s.id, ETH, preimage_hash(&p), expiry, T).await.expect("hold");
    s.alice.go_silent().await;
    // Bob learns the preimage (from downstream, say) and claims: Alice does not answer.
    s.bob.service.learn_preimage(s.id, p).await.expect("learn");
    // Within the reveal window of the expiry, Bob's node reveals on the registry…
    warp_to(&s.bob.chain, expiry - WINDOW + 1).await;
    s.bob.wait("reveal", |e| matches!(e, ChainEvent::Revealed { hash, .. } if *hash == lock.hash)).await;
    let at = Registry::new(&s.bob.chain).revealed_at(lock.hash).await.expect("registry");
    assert!(at > 0 && at <= expiry, "revealed at {at}, before the expiry {expiry}");
    // …past the expiry and the grace it liquidates with its latest sheet (holding the lock)…
    warp_to(&s.bob.chain, expiry + 121).await;
    s.bob.wait("liquidation", |e| matches!(e, ChainEvent::Settled { .. })).await;
    assert_eq!(state(&s.bob.chain, s.id).await, OnChainState::Liquidating);
    // …and once the lock period is over it settles the lock with `unlock`: the lock is Bob's.
    warp_to(&s.bob.chain, chain_time(&s.bob.chain).await + LOCK_PERIOD + 1).await;
    s.bob.wait("unlock", |e| matches!(e, ChainEvent::Unlocked { locks: 1, .. })).await;
    assert_eq!(state(&s.bob.chain, s.id).await, OnChainState::Closed);
    assert_eq!(s.ledger.received(&s.bob.chain, s.who).await, [4 * ETH, 6 * ETH]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_lock_goes_back_to_the_payer_on_chain_when_the_payee_goes_silent() {
    let mut s = setup().await;
    let expiry = chain_time(&s.alice.chain).await + 1800;
    let hash = preimage_hash(&B256::repeat_byte(0x33));
    s.alice.service.hold(s.id, ETH, hash, expiry, T).await.expect("hold");
    s.bob.go_silent().await;
    // Alice proposes the expiry after expiry + 2 grace; Bob is silent; after one more grace her
    // node liquidates, and after the lock period `unlock` gives the lock back to her.
    warp_to(&s.alice.chain, expiry + 3 * 120 + 1).await;
    s.alice.wait("liquidation", |e| matches!(e, ChainEvent::Settled { .. })).await;
    warp_to(&s.alice.chain, chain_time(&s.alice.chain).await + LOCK_PERIOD + 1).await;
    s.alice.wait("unlock", |e| matches!(e, ChainEvent::Unlocked { locks: 1, .. })).await;
    assert_eq!(Registry::new(&s.alice.chain).revealed_at(hash).await.expect("registry"), 0);
    assert_eq!(s.ledger.received(&s.alice.chain, s.who).await, [5 * ETH, 5 * ETH]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cheater_liquidating_a_revoked_sheet_with_locks_loses_the_locks_too() {
    let s = setup().await;
    let p = B256::repeat_byte(0x44);
    let expiry = chain_time(&s.alice.chain).await + 3600;
    s.alice.service.pay(s.id, ETH, 1, T).await.expect("pay");
    s.alice.service.hold(s.id, ETH, preimage_hash(&p), expiry, T).await.expect("hold");
    // Alice keeps the sheet holding the lock: 3 ETH hers, 6 Bob's, 1 locked to Bob.
    let stale = s.alice.service.node().lock().await.channel(s.id).expect("ch").latest().cloned().expect("sheet");
    assert_eq!((stale.balances, stale.locks.len()), ([3 * ETH, 6 * ETH], 1));
    // Bob claims the lock: Alice revokes that sheet.
    s.bob.service.fulfil(s.id, p, T).await.expect("fulfil");
    // She liquidates with it anyway; Bob's watcher punishes: her frozen balance and the lock.
    let mut bob = s.bob;
    OnChain::new(s.alice.chain.clone(), s.id).liquidate(&stale).await.expect("stale liquidation");
    bob.wait("punishment", |e| matches!(e, ChainEvent::Watch { event: vbank_client::WatchEvent::Punished { .. }, .. }))
        .await;
    assert_eq!(state(&bob.chain, s.id).await, OnChainState::Closed);
    assert_eq!(s.ledger.received(&bob.chain, s.who).await, [0, 10 * ETH]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_locks_are_settled_by_one_unlock() {
    let mut s = setup().await;
    let expiry = chain_time(&s.alice.chain).await + 1800;
    let each = ETH / 100;
    let preimages: Vec<B256> = (0..100u8).map(|i| B256::repeat_byte(i.wrapping_add(0x80))).collect();
    let holds = preimages.iter().map(|p| s.alice.service.hold(s.id, each, preimage_hash(p), expiry, T));
    for r in futures::future::join_all(holds).await {
        r.expect("hold");
    }
    assert_eq!(s.bob.service.node().lock().await.channel(s.id).expect("ch").locks().len(), 100);
    s.alice.go_silent().await;
    // Bob learns half of the preimages; the other half will expire.
    for p in &preimages[..50] {
        s.bob.service.learn_preimage(s.id, *p).await.expect("learn");
    }
    warp_to(&s.bob.chain, expiry - WINDOW + 1).await;
    let registry = Registry::new(&s.bob.chain);
    let revealed = async {
        loop {
            let mut n = 0;
            for p in &preimages[..50] {
                n += usize::from(registry.revealed_at(preimage_hash(p)).await.expect("registry") != 0);
            }
            if n == 50 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    tokio::time::timeout(T, revealed).await.expect("50 preimages revealed");
    warp_to(&s.bob.chain, expiry + 121).await;
    s.bob.wait("liquidation", |e| matches!(e, ChainEvent::Settled { .. })).await;
    warp_to(&s.bob.chain, chain_time(&s.bob.chain).await + LOCK_PERIOD + 1).await;
    s.bob.wait("unlock", |e| matches!(e, ChainEvent::Unlocked { locks: 100, .. })).await;
    assert_eq!(s.ledger.received(&s.bob.chain, s.who).await, [4 * ETH + 50 * each, 5 * ETH + 50 * each]);
}
