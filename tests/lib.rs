//! Helpers for vbank's end-to-end tests: a chain in a few lines, a funded channel in one more.

use std::time::Duration;

use alloy::{
    primitives::{Address, B256, U256},
    providers::Provider,
    signers::local::PrivateKeySigner,
};
use vbank_client::{Chain, Factory, LocalChain, OnChain, deploy_factory};
use vbank_core::{Channel, ChannelParams, Event, Message};

/// One ETH in wei.
pub const ETH: u128 = 1_000_000_000_000_000_000;

/// A fresh anvil for one test (killed on drop).
pub fn spawn_chain() -> LocalChain {
    LocalChain::spawn().expect("spawn anvil (run anvil-scripts/bootstrap.sh first)")
}

/// A channel party: its chain connection, its protocol state, its view of the contract.
pub struct Party {
    /// Signs as this party.
    pub chain: Chain,
    /// The off-chain state.
    pub channel: Channel,
    /// The contract, acting as this party.
    pub onchain: OnChain,
}

/// Alice (party 0), Bob (party 1), and Carol, an outsider who submits transactions so that the
/// parties' balances change by their payouts only.
pub struct Net {
    /// The chain.
    pub local: LocalChain,
    /// Party 0.
    pub alice: Party,
    /// Party 1.
    pub bob: Party,
    /// An outsider.
    pub carol: Chain,
    /// The channel contract.
    pub address: Address,
    /// The channel's agreed parameters.
    pub params: ChannelParams,
    /// Gas of the opening (the factory's clone).
    pub deploy_gas: u64,
}

/// Dev account `i` of the chain as a connected signer.
pub async fn account(local: &LocalChain, i: usize) -> Chain {
    Chain::connect(&local.endpoint(), local.signer(i).expect("dev key"), Some(local.chain_id())).await.expect("connect")
}

fn seed(tag: u8) -> B256 {
    let mut s = PrivateKeySigner::random().to_bytes();
    s.0[0] ^= tag;
    s
}

/// Opens a channel between dev accounts 0 and 1 through the factory (deployed first if the
/// chain has none) and completes the opening handshake (sheet 0 countersigned both ways). With
/// `fund`, both deposits are paid and the channel runs.
pub async fn open_channel(local: LocalChain, deposits: [u128; 2], lock: u64, fund: bool) -> Net {
    open_channel_with(local, deposits, lock, Address::ZERO, fund).await
}

/// [`open_channel`] for a channel holding `token` (zero: ETH). The parties must hold the token.
pub async fn open_channel_with(local: LocalChain, deposits: [u128; 2], lock: u64, token: Address, fund: bool) -> Net {
    let a = account(&local, 0).await;
    let b = account(&local, 1).await;
    let carol = account(&local, 2).await;
    deploy_factory(&carol).await.expect("factory");
    let mut params = ChannelParams {
        chain_id: local.chain_id(),
        contract: Address::ZERO,
        parties: [a.address(), b.address()],
        deposits,
        lock_period: lock,
        token,
        salt: seed(0x5a),
    };
    let (address, report) = Factory::new(a.clone()).open(&params).await.expect("open");
    params.contract = address;
    let mut ca = Channel::new(params.clone(), 0, a.signer().clone(), seed(0xa)).expect("channel a");
    let mut cb = Channel::new(params.clone(), 1, b.signer().clone(), seed(0xb)).expect("channel b");
    let first = ca.open().expect("open");
    exchange(&mut ca, &mut cb, 0, first);
    let mut net = Net {
        alice: Party { onchain: OnChain::new(a.clone(), address), chain: a, channel: ca },
        bob: Party { onchain: OnChain::new(b.clone(), address), chain: b, channel: cb },
        carol,
        address,
        params,
        deploy_gas: report.gas_used,
        local,
    };
    if fund {
        for p in [&mut net.alice, &mut net.bob] {
            let i = p.channel.me();
            if deposits[i] > 0 {
                p.onchain.deposit_agreed(&net.params).await.expect("deposit");
            }
        }
    }
    net
}

/// Runs an exchange to its end, starting with `first` sent by party `from`; returns the events.
pub fn exchange(a: &mut Channel, b: &mut Channel, from: usize, first: Message) -> Vec<Event> {
    vbank_core::exchange(a, b, from, first).unwrap_or_else(|e| panic!("an honest exchange was refused: {e}"))
}

impl Net {
    /// One payment of `amount` wei from party `from`, settled both ways.
    pub fn pay(&mut self, from: usize, amount: u128) {
        let (a, b) = (&mut self.alice.channel, &mut self.bob.channel);
        let payer = if from == 0 { &mut *a } else { &mut *b };
        payer.pay(amount).expect("affordable");
        let m = payer.propose().expect("propose").expect("a proposal");
        exchange(a, b, from, m);
    }

    /// Balance of an account in wei.
    pub async fn balance(&self, who: Address) -> u128 {
        let b: U256 = self.carol.provider().get_balance(who).await.expect("balance");
        u128::try_from(b).expect("fits")
    }

    /// Balances of Alice and Bob.
    pub async fn balances(&self) -> [u128; 2] {
        [self.balance(self.alice.chain.address()).await, self.balance(self.bob.chain.address()).await]
    }

    /// The contract as seen by Carol.
    pub fn carol_onchain(&self) -> OnChain {
        OnChain::new(self.carol.clone(), self.address)
    }
}

/// Polls `f` until it returns `Some` or `timeout` passes.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let end = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < end {
        if let Some(v) = f().await {
            return Some(v);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}
