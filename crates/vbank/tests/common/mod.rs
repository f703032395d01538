//! Two nodes (services with their chain drivers) on one anvil per test, and the helpers the
//! end-to-end tests of the `vbank` crate share.
#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use alloy::{
    primitives::{Address, B256, U256},
    providers::Provider,
    signers::local::PrivateKeySigner,
};
use tokio::{net::TcpListener, sync::broadcast};
use vbank::{ChainClock, ChainDriver, ChainEvent, DriverConfig};
use vbank_client::{Chain, Factory, LocalChain, OnChain, OnChainState, deploy_factory, increase_time};
use vbank_core::{ChannelParams, Funding};
use vbank_node::{Node, RedbStore, Service};

pub const T: Duration = Duration::from_secs(60);
pub const ETH: u128 = 1_000_000_000_000_000_000;
pub const LOCK_PERIOD: u64 = 3600;
pub const WINDOW: u64 = 300;

pub struct Party {
    pub service: Service<RedbStore>,
    pub driver: Option<ChainDriver<RedbStore>>,
    pub events: broadcast::Receiver<ChainEvent>,
    pub chain: Chain,
}

impl Party {
    pub async fn start(dir: &std::path::Path, name: &str, chain: Chain, accept: bool) -> Self {
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
    pub async fn go_silent(&mut self) {
        self.driver = None;
        self.service.shutdown().await;
    }

    /// Waits for a chain event `f` accepts.
    pub async fn wait(&mut self, what: &str, f: impl Fn(&ChainEvent) -> bool) -> ChainEvent {
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
pub async fn fees_paid(chain: &Chain, who: Address, from: u64) -> u128 {
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
pub struct Ledger {
    from: u64,
    before: [U256; 2],
}

impl Ledger {
    pub async fn start(chain: &Chain, who: [Address; 2]) -> Self {
        let from = chain.provider().get_block_number().await.expect("block") + 1;
        Self { from, before: [chain.balance(who[0]).await.expect("bal"), chain.balance(who[1]).await.expect("bal")] }
    }

    /// What each of `who` received since the start, net of its own fees.
    pub async fn received(&self, chain: &Chain, who: [Address; 2]) -> [u128; 2] {
        let mut out = [0; 2];
        for i in 0..2 {
            let now = chain.balance(who[i]).await.expect("bal");
            let fees = fees_paid(chain, who[i], self.from).await;
            out[i] = u128::try_from(now + U256::from(fees) - self.before[i]).expect("fits");
        }
        out
    }
}

pub struct Setup {
    pub anvil: LocalChain,
    pub dir: tempfile::TempDir,
    pub alice: Party,
    pub bob: Party,
    pub id: Address,
    pub params: ChannelParams,
    pub who: [Address; 2],
    pub ledger: Ledger,
}

/// Alice (party 0) opens a 5 + 5 ETH channel to Bob through the factory; both deposit.
pub async fn setup() -> Setup {
    setup_with(true).await
}

/// As [`setup`]; without `deposits` nobody deposits (the channel stays Funding).
pub async fn setup_with(deposits: bool) -> Setup {
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
    if deposits {
        OnChain::new(alice_chain.clone(), id).deposit_agreed(&params).await.expect("alice deposit");
        OnChain::new(bob_chain.clone(), id).deposit_agreed(&params).await.expect("bob deposit");
        for p in [&alice, &bob] {
            p.service.set_funding(id, Funding::Running).await.expect("running");
        }
    }
    // From here on, what each party receives is what the contract pays it.
    let ledger = Ledger::start(&alice_chain, who).await;
    Setup { anvil, dir, alice, bob, id, params, who, ledger }
}

pub async fn chain_time(chain: &Chain) -> u64 {
    chain.timestamp().await.expect("time")
}

/// Moves the chain's clock to `t` (if it is behind).
pub async fn warp_to(chain: &Chain, t: u64) {
    let now = chain_time(chain).await;
    if t > now {
        increase_time(chain, t - now).await.expect("increase time");
    }
}

pub async fn state(chain: &Chain, id: Address) -> OnChainState {
    OnChain::new(chain.clone(), id).state().await.expect("state")
}
