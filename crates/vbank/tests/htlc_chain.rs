//! Hash-time-locked payments settled off-chain and on chain, end to end: two nodes (services with
//! their chain drivers) on one anvil per test, the chain's clock moved with `evm_increaseTime`.
//! Every test checks what each party got from the contract to the wei (balance change plus the
//! fees its own transactions paid).

use std::time::Duration;

use alloy::{
    primitives::{Address, B256, U256},
    providers::Provider,
    signers::local::PrivateKeySigner,
};
use tokio::{net::TcpListener, sync::broadcast};
use vbank::{ChainClock, ChainDriver, ChainEvent, DriverConfig};
use vbank_client::{Chain, Factory, LocalChain, OnChain, OnChainState, Registry, deploy_factory, increase_time};
use vbank_core::{ChannelParams, Funding, preimage_hash};
use vbank_node::{Node, RedbStore, Service};

const T: Duration = Duration::from_secs(60);
const ETH: u128 = 1_000_000_000_000_000_000;
const LOCK_PERIOD: u64 = 3600;
const WINDOW: u64 = 300;

struct Party {
    service: Service<RedbStore>,
    driver: Option<ChainDriver<RedbStore>>,
    events: broadcast::Receiver<ChainEvent>,
    chain: Chain,
}

impl Party {
    async fn start(dir: &std::path::Path, name: &str, chain: Chain, accept: bool) -> Self {
        let clock = ChainClock::new();
        clock.observe(chain.timestamp().await.expect("time"));
        let store = RedbStore::open(&dir.join(format!("{name}.redb"))).expect("store");
        let node = Node::open(chain.signer().clone(), store).expect("node").follow_chain().with_clock(clock.clock());
        let admission = accept.then(|| vbank::admission(chain.clone(), 60, LOCK_PERIOD));
        let service = Service::new(node, chain.signer().clone(), admission);
        service.set_funding_check(vbank::funding_check(chain.clone()));
        service.spawn_ticker(Duration::from_millis(200));
        let config = DriverConfig { poll: Duration::from_millis(200), reveal_window: WINDOW, auto_deposit: None };
        let mut driver = ChainDriver::new(service.clone(), chain.clone(), clock, config);
        let events = driver.subscribe();
        driver.start();
        Self { service, driver: Some(driver), events, chain }
    }

    /// The party's node stops answering (and its driver stops following the chain).
    async fn go_silent(&mut self) {
        self.driver = None;
        self.service.shutdown().await;
    }

    /// Waits for a chain event `f` accepts.
    async fn wait(&mut self, what: &str, f: impl Fn(&ChainEvent) -> bool) -> ChainEvent {
        let wait = async {
            loop {
                match self.events.recv().await {
                    Ok(e) if f(&e) => return e,
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(e) => panic!("driver events ended: {e}"),
                }
            }
        };
        tokio::time::timeout(T, wait).await.unwrap_or_else(|_| panic!("no {what} within {T:?}"))
    }
}

/// What `who` paid in fees for its transactions in blocks `from..`.
async fn fees_paid(chain: &Chain, who: Address, from: u64) -> u128 {
    let p = chain.provider();
    let latest = p.get_block_number().await.expect("block number");
    let mut fees = 0;
    for n in from..=latest {
        let Some(block) = p.get_block_by_number(n.into()).full().await.expect("block") else { continue };
        for tx in block.transactions.txns() {
            if tx.inner.signer() == who {
                let r = p.get_transaction_receipt(*tx.inner.hash()).await.expect("receipt").expect("mined");
                fees += u128::from(r.gas_used) * r.effective_gas_price;
            }
        }
    }
    fees
}

/// Balances and the block to count fees from, so `received` gives what the contract paid.
struct Ledger {
    from: u64,
    before: [U256; 2],
}

impl Ledger {
    async fn start(chain: &Chain, who: [Address; 2]) -> Self {
        let from = chain.provider().get_block_number().await.expect("block") + 1;
        Self { from, before: [chain.balance(who[0]).await.expect("bal"), chain.balance(who[1]).await.expect("bal")] }
    }

    /// What each of `who` received since the start, net of its own fees.
    async fn received(&self, chain: &Chain, who: [Address; 2]) -> [u128; 2] {
        let mut out = [0; 2];
        for i in 0..2 {
            let now = chain.balance(who[i]).await.expect("bal");
            let fees = fees_paid(chain, who[i], self.from).await;
            out[i] = u128::try_from(now + U256::from(fees) - self.before[i]).expect("fits");
        }
        out
    }
}

struct Setup {
    _anvil: LocalChain,
    _dir: tempfile::TempDir,
    alice: Party,
    bob: Party,
    id: Address,
    who: [Address; 2],
    ledger: Ledger,
}

/// Alice (party 0) opens a 5 + 5 ETH channel to Bob through the factory; both deposit.
async fn setup() -> Setup {
    let anvil = LocalChain::spawn().expect("anvil");
    let dir = tempfile::tempdir().expect("dir");
    let signer = |i| -> PrivateKeySigner { anvil.signer(i).expect("key") };
    let alice_chain = Chain::connect(&anvil.endpoint(), signer(1), None).await.expect("chain");
    let bob_chain = alice_chain.with_signer(signer(2));
    deploy_factory(&alice_chain).await.expect("factory");
    let who = [alice_chain.address(), bob_chain.address()];
    let mut params = ChannelParams {
        chain_id: alice_chain.chain_id(),
        contract: Address::ZERO,
        parties: who,
        deposits: [5 * ETH, 5 * ETH],
        lock_period: LOCK_PERIOD,
        token: Address::ZERO,
        salt: B256::repeat_byte(7),
    };
    let (id, _) = Factory::new(alice_chain.clone()).open(&params).await.expect("open on chain");
    params.contract = id;
    let alice = Party::start(dir.path(), "alice", alice_chain.clone(), false).await;
    let bob = Party::start(dir.path(), "bob", bob_chain.clone(), true).await;
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let uri = bob.service.uri(l.local_addr().expect("addr"));
    bob.service.listen(l);
    alice.service.connect(&uri).await.expect("connect");
    alice.service.open(params.clone(), B256::repeat_byte(9), T).await.expect("open");
    OnChain::new(alice_chain.clone(), id).deposit_agreed(&params).await.expect("alice deposit");
    OnChain::new(bob_chain.clone(), id).deposit_agreed(&params).await.expect("bob deposit");
    for p in [&alice, &bob] {
        p.service.set_funding(id, Funding::Running).await.expect("running");
    }
    // From here on, what each party receives is what the contract pays it.
    let ledger = Ledger::start(&alice_chain, who).await;
    Setup { _anvil: anvil, _dir: dir, alice, bob, id, who, ledger }
}

async fn chain_time(chain: &Chain) -> u64 {
    chain.timestamp().await.expect("time")
}

/// Moves the chain's clock to `t` (if it is behind).
async fn warp_to(chain: &Chain, t: u64) {
    let now = chain_time(chain).await;
    if t > now {
        increase_time(chain, t - now).await.expect("increase time");
    }
}

async fn state(chain: &Chain, id: Address) -> OnChainState {
    OnChain::new(chain.clone(), id).state().await.expect("state")
}

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
