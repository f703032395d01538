//! The two flows a party runs against the chain and its peer: opening a channel as party 0, and
//! closing one (cooperatively, else by liquidating if allowed, then withdrawing after the lock
//! period). Every decision about a channel's money (which sheet to settle with) is the node's,
//! made under the channel's lock from its stored state ([`Client::settle`]); these flows only
//! submit it.

use std::{sync::Arc, time::Duration};

use alloy::{
    primitives::{Address, B256},
    providers::Provider,
};
use vbank_client::{Chain, Factory, OnChain, OnChainState, TxReport};
use vbank_core::{Amount, ChannelParams, Funding, Settlement};
use vbank_node::{NodeUri, Terms};

use crate::{
    Client, Error, Result,
    client::{Progress, ProgressFn, report},
};

/// Why a peer's node would not take a channel, as it stated its terms before anything was spent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TermsRefusal {
    /// It joins no channels.
    #[error("the peer's node does not accept new channels")]
    NotAccepting,
    /// The lock period is outside its range.
    #[error("the peer's node accepts lock periods from {min} s to {max} s, not {asked} s")]
    LockPeriod {
        /// Its shortest.
        min: u64,
        /// Its longest.
        max: u64,
        /// The one asked.
        asked: u64,
    },
    /// Its party's deposit is more than its node pays by itself.
    #[error("the peer's node pays deposits of at most {auto_deposit:?} wei by itself, and its deposit is {asked} wei")]
    Deposit {
        /// The most it pays by itself (none: it pays none).
        auto_deposit: Option<Amount>,
        /// The deposit asked of it.
        asked: Amount,
    },
}

/// Refuses, before any transaction, a channel the peer's node said it would not take: a lock
/// period outside its range (unless the channel exists already: `resuming`), or a deposit of its
/// party's it would not pay by itself (unless its party pays by hand: `no_wait`).
pub fn check_terms(
    terms: &Terms,
    lock_period: u64,
    peer_deposit: Amount,
    no_wait: bool,
    resuming: bool,
) -> std::result::Result<(), TermsRefusal> {
    if !terms.accepts_channels {
        return Err(TermsRefusal::NotAccepting);
    }
    if !resuming && !(terms.min_lock..=terms.max_lock).contains(&lock_period) {
        return Err(TermsRefusal::LockPeriod { min: terms.min_lock, max: terms.max_lock, asked: lock_period });
    }
    let pays = terms.auto_deposit.is_some_and(|max| peer_deposit <= max);
    if peer_deposit > 0 && !pays && !no_wait {
        return Err(TermsRefusal::Deposit { auto_deposit: terms.auto_deposit, asked: peer_deposit });
    }
    Ok(())
}

/// How to open a channel ([`Client::open_channel`]).
#[derive(Clone)]
pub struct OpenOptions {
    /// The peer's node (party 1 is the party of its key).
    pub peer_uri: NodeUri,
    /// The peer's address, checked against the URI's key (default: the URI's).
    pub peer: Option<Address>,
    /// Party 0's (this party's) and party 1's deposits.
    pub deposits: [Amount; 2],
    /// Seconds a liquidating party's balance stays frozen.
    pub lock_period: u64,
    /// The ERC-20 token the channel holds (zero: ETH).
    pub token: Address,
    /// The salt (default: random). The one reported resumes an opening.
    pub salt: Option<B256>,
    /// The channel these parameters and salt must give (resuming an opening).
    pub channel: Option<Address>,
    /// How long to wait for the peer's countersignature and for its deposit.
    pub timeout: Duration,
    /// Return once this party's deposit is in, without waiting for the peer's.
    pub no_wait: bool,
    /// Told what is happening.
    pub progress: Option<ProgressFn>,
}

impl std::fmt::Debug for OpenOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenOptions")
            .field("peer_uri", &self.peer_uri)
            .field("deposits", &self.deposits)
            .field("lock_period", &self.lock_period)
            .field("salt", &self.salt)
            .finish_non_exhaustive()
    }
}

impl OpenOptions {
    /// A channel with the node at `peer_uri`, these deposits and this lock period, in ETH, with a
    /// random salt, waiting up to 10 minutes for the peer.
    pub fn new(peer_uri: NodeUri, deposits: [Amount; 2], lock_period: u64) -> Self {
        Self {
            peer_uri,
            peer: None,
            deposits,
            lock_period,
            token: Address::ZERO,
            salt: None,
            channel: None,
            timeout: Duration::from_secs(600),
            no_wait: false,
            progress: None,
        }
    }
}

/// What an opening did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenReport {
    /// The channel's parameters (its address is `params.contract`).
    pub params: ChannelParams,
    /// The contract's state at the end (`Running` once both deposits are in).
    pub state: OnChainState,
    /// The factory's deployment, if the chain had none.
    pub factory: Option<TxReport>,
    /// The contract's opening, unless it was there (resumed).
    pub opened: Option<TxReport>,
    /// This party's deposit, if paid now.
    pub deposit: Option<TxReport>,
}

/// Asked whether to liquidate alone when the peer did not close cooperatively: given why, and
/// the channel's lock period (what this party's balance would stay frozen for).
pub type ConfirmFn = Arc<dyn Fn(&str, u64) -> bool + Send + Sync>;

/// How to close a channel ([`Client::close`]).
#[derive(Clone)]
pub struct CloseOptions {
    /// The peer's node for a cooperative close (default: where it was reached before).
    pub connect: Option<NodeUri>,
    /// How long to keep trying the peer for a cooperative close.
    pub timeout: Duration,
    /// If the peer does not close cooperatively, liquidate alone with this party's latest sheet
    /// (its balance then stays frozen for the lock period).
    pub force: bool,
    /// Asked, when the peer did not close cooperatively and `force` is off, whether to liquidate
    /// alone: given why and the lock period. Without it (or on no) nothing is done:
    /// [`Error::Uncooperative`].
    pub confirm: Option<ConfirmFn>,
    /// After a liquidation, wait for the lock period to end and withdraw.
    pub wait: bool,
    /// Told what is happening.
    pub progress: Option<ProgressFn>,
}

impl std::fmt::Debug for CloseOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CloseOptions")
            .field("connect", &self.connect)
            .field("timeout", &self.timeout)
            .field("force", &self.force)
            .field("wait", &self.wait)
            .finish_non_exhaustive()
    }
}

impl Default for CloseOptions {
    fn default() -> Self {
        Self {
            connect: None,
            timeout: Duration::from_secs(30),
            force: false,
            confirm: None,
            wait: false,
            progress: None,
        }
    }
}

/// How a channel was closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseOutcome {
    /// The channel never ran: the contract was cancelled and every deposit made refunded.
    Cancelled,
    /// Both parties signed the close: both were paid at once.
    Cooperative {
        /// The final sheet.
        nonce: u64,
        /// Party 0's and party 1's payouts.
        balances: [Amount; 2],
    },
    /// Liquidated alone with this party's latest countersigned sheet (chosen by the node).
    Liquidated {
        /// The sheet.
        nonce: u64,
        /// When the frozen balance unlocks, unix seconds (by the chain's clock).
        unlock_time: u64,
        /// Why the cooperative close did not happen.
        cooperative_error: Option<String>,
    },
    /// The channel was being liquidated and its lock period is over: the frozen balance was
    /// withdrawn.
    Withdrawn,
}

/// What a close did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseReport {
    /// The channel.
    pub channel: Address,
    /// How.
    pub outcome: CloseOutcome,
    /// The transaction that closed (or cancelled, liquidated, withdrew).
    pub tx: TxReport,
    /// After a liquidation with [`CloseOptions::wait`]: the withdrawal at the end of the lock period.
    pub withdrawal: Option<TxReport>,
}

fn client_err(e: vbank_client::Error) -> Error {
    Error::Chain(e)
}

impl Client {
    /// Opens a channel as party 0 with the node at `opts.peer_uri`: links to it and asks its terms
    /// first (nothing is spent on a channel it would refuse or a deposit it would not pay),
    /// deploys the factory if the chain has none, opens the contract through it (unless it is
    /// there: resuming), agrees sheet 0 with the peer (the opening carries the parameters), pays
    /// this party's deposit (approving the token first), and waits for the peer's unless
    /// `opts.no_wait`. `chain` signs, with this party's key.
    pub async fn open_channel(&mut self, chain: &Chain, opts: OpenOptions) -> Result<OpenReport> {
        let progress = opts.progress.as_ref();
        let me = chain.address();
        let node = self.status().await?.address;
        if node != me {
            return Err(Error::WrongKey { node, key: me });
        }
        let peer = opts.peer.unwrap_or_else(|| opts.peer_uri.address());
        // The peer's node first: no gas is spent on a channel it would not take.
        report(progress, Progress::Waiting("connecting to the peer's node".into()));
        self.link(&opts.peer_uri, peer).await.map_err(|e| e.during("before deploying anything"))?;
        // Its terms: a channel it would refuse, or a deposit it would not pay, costs no gas.
        match self.terms(peer, opts.timeout.min(Duration::from_secs(10))).await {
            Ok(terms) => check_terms(&terms, opts.lock_period, opts.deposits[1], opts.no_wait, opts.channel.is_some())?,
            // An older node does not state terms: it will say no, if it does, after the deployment.
            Err(e) => report(
                progress,
                Progress::Note(format!("warning: the peer's node did not state its terms ({e}); going on")),
            ),
        }
        let salt =
            opts.salt.unwrap_or_else(|| B256::from(alloy::signers::local::PrivateKeySigner::random().to_bytes()));
        let mut params = ChannelParams {
            chain_id: chain.chain_id(),
            contract: Address::ZERO,
            parties: [me, peer],
            deposits: opts.deposits,
            lock_period: opts.lock_period,
            token: opts.token,
            salt,
        };
        report(progress, Progress::Waiting("deploying the VirtualBank factory".into()));
        let (factory_address, factory) = vbank_client::deploy_factory(chain).await.map_err(|e| {
            client_err(e).during("deploying the VirtualBank factory").during("before opening the channel")
        })?;
        if let Some(r) = &factory {
            report(progress, Progress::FactoryDeployed { address: factory_address, report: r.clone() });
        }
        let f = Factory::new(chain.clone());
        let address =
            f.channel_address(&params).await.map_err(|e| client_err(e).during("computing the channel's address"))?;
        if let Some(expected) = opts.channel
            && expected != address
        {
            return Err(Error::SaltMismatch { expected, computed: address, salt });
        }
        params.contract = address;
        let code = chain
            .provider()
            .get_code_at(address)
            .await
            .map_err(|e| Error::Invalid(format!("reading the channel's code: {e}")))?;
        let mut opened = None;
        if code.is_empty() {
            report(progress, Progress::Waiting("opening the channel through the factory".into()));
            let (_, r) =
                f.open(&params).await.map_err(|e| client_err(e).during("opening the channel through the factory"))?;
            report(progress, Progress::ChannelOpened { channel: address, salt, report: r.clone() });
            opened = Some(r);
        }
        let onchain = OnChain::new(chain.clone(), address);
        onchain.verify_params(&params).await.map_err(|e| client_err(e).during(format!("checking {address}")))?;

        // Sheet 0, countersigned both ways, before any money goes in.
        if self.channel(address).await?.is_none_or(|c| c.phase == "opening") {
            report(progress, Progress::Waiting("waiting for the peer to countersign balance sheet 0".into()));
            self.open(params.clone(), opts.timeout).await.map_err(|e| Error::NotAgreed {
                channel: address,
                salt,
                source: Box::new(e.during("opening the channel with the peer")),
            })?;
            report(progress, Progress::SheetZero { channel: address });
        }

        let mut deposit = None;
        let info = onchain.info().await?;
        if info.state == OnChainState::Funding && !info.deposited[0] && opts.deposits[0] > 0 {
            report(progress, Progress::Waiting(format!("depositing {}", crate::format_eth(opts.deposits[0]))));
            let r = onchain.deposit_agreed(&params).await.map_err(|e| client_err(e).during("depositing"))?;
            report(progress, Progress::Deposited { channel: address, amount: opts.deposits[0], report: r.clone() });
            deposit = Some(r);
        }
        let state = if opts.no_wait {
            onchain.state().await?
        } else {
            report(
                progress,
                Progress::Waiting(format!("waiting for the peer's deposit of {}", crate::format_eth(opts.deposits[1]))),
            );
            let wait = async {
                loop {
                    let state = onchain.state().await?;
                    if state != OnChainState::Funding {
                        return Ok::<_, vbank_client::Error>(state);
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            };
            match tokio::time::timeout(opts.timeout, wait).await {
                Ok(s) => s?,
                Err(_) => return Err(Error::PeerDepositMissing { channel: address, waited: opts.timeout }),
            }
        };
        if state == OnChainState::Running {
            self.record_funding(address, Funding::Running).await?;
        }
        Ok(OpenReport { params, state, factory, opened, deposit })
    }

    /// Closes `channel` on chain with `chain` (this party's key): a contract still funding is
    /// cancelled (deposits refunded); a running one closes cooperatively through the peer's node,
    /// dialed again and again until `opts.timeout`; if the peer does not answer, nothing is done
    /// unless `opts.force` (or `opts.confirm` says yes): then the node freezes the channel and
    /// chooses, under its lock and from its stored state, the sheet to liquidate with. A channel
    /// being liquidated is withdrawn once its lock period is over (by the chain's clock);
    /// `opts.wait` waits for it.
    pub async fn close(&mut self, chain: &Chain, channel: Address, opts: CloseOptions) -> Result<CloseReport> {
        let progress = opts.progress.as_ref();
        let onchain = OnChain::new(chain.clone(), channel);
        let info = onchain.info().await.map_err(|e| client_err(e).during("reading the channel"))?;
        let (outcome, tx) = match info.state {
            // Nothing off-chain is needed to cancel: the channel may not even be in the store.
            OnChainState::Funding => {
                report(progress, Progress::Waiting("cancelling".into()));
                let r = onchain.cancel().await.map_err(|e| client_err(e).during("cancelling"))?;
                (CloseOutcome::Cancelled, r)
            }
            OnChainState::Running => {
                let ch = self.channel(channel).await?.ok_or(vbank_node::Error::UnknownChannel(channel))?;
                let uri = opts.connect.clone().or_else(|| ch.peer_uri.clone());
                // Cooperative first, trying the peer's node until the timeout; nothing is frozen yet.
                report(progress, Progress::Waiting("asking the peer to sign the close".into()));
                let attempt = self.cooperate(uri.as_ref(), ch.peer, channel, opts.timeout).await;
                if let Err(why) = &attempt {
                    let allowed = opts.force || opts.confirm.as_ref().is_some_and(|ask| ask(why, info.lock_period));
                    if !allowed {
                        return Err(Error::Uncooperative { reason: why.clone(), lock_period: info.lock_period });
                    }
                    report(
                        progress,
                        Progress::Note(format!(
                            "the peer did not close cooperatively ({why}); liquidating with the latest sheet"
                        )),
                    );
                }
                // Now the node freezes the channel and chooses, under its lock and from its
                // stored state, what to settle with: nothing is chosen here.
                let (settlement, _) = self.settle(channel, attempt.is_ok(), Duration::from_secs(5)).await?;
                let label = match &settlement {
                    Settlement::Cooperative { .. } => "closing",
                    Settlement::Liquidate(_) => "liquidating",
                    Settlement::Cancel => return Err(Error::NoSheet),
                };
                report(progress, Progress::Waiting(label.into()));
                let r = crate::settle_on_chain(chain, channel, &settlement).await.map_err(|e| {
                    client_err(e).during(format!("submitting: {}", crate::describe_settlement(&settlement)))
                })?;
                let outcome = match settlement {
                    Settlement::Cooperative { nonce, balances, .. } => CloseOutcome::Cooperative { nonce, balances },
                    Settlement::Liquidate(sheet) => {
                        let unlock_time = onchain.info().await?.liquidation.map_or(0, |l| l.unlock_time);
                        CloseOutcome::Liquidated { nonce: sheet.nonce, unlock_time, cooperative_error: attempt.err() }
                    }
                    // (refused above: a running channel is never settled with a cancel)
                    Settlement::Cancel => CloseOutcome::Cancelled,
                };
                (outcome, r)
            }
            OnChainState::Liquidating => {
                let unlock = info.liquidation.map_or(0, |l| l.unlock_time);
                // The chain's clock decides, not this machine's.
                let now = chain.timestamp().await.map_err(|e| client_err(e).during("reading the chain's time"))?;
                let r = if now >= unlock {
                    report(progress, Progress::Waiting("withdrawing".into()));
                    onchain.withdraw_by_master().await.map_err(|e| client_err(e).during("withdrawing"))?
                } else if opts.wait {
                    withdraw_after_lock(&onchain, unlock, progress).await?
                } else {
                    return Err(Error::StillLocked { unlock_time: unlock, now });
                };
                (CloseOutcome::Withdrawn, r)
            }
            state @ (OnChainState::Settling | OnChainState::Closed) => return Err(Error::NothingToClose(state)),
        };
        // Our own liquidation, just made: waiting completes it.
        let withdrawal = match &outcome {
            CloseOutcome::Liquidated { unlock_time, .. } if opts.wait => {
                Some(withdraw_after_lock(&onchain, *unlock_time, progress).await?)
            }
            _ => None,
        };
        // Settled on chain for good (not a liquidation waiting for its lock): the store says so.
        if onchain.state().await.is_ok_and(|s| s == OnChainState::Closed) {
            let _ = self.record_funding(channel, Funding::Ended).await;
        }
        Ok(CloseReport { channel, outcome, tx, withdrawal })
    }

    /// Tries a cooperative close of `channel` until `timeout` has passed: links to the peer's
    /// node (at `uri`, else at the URI the node remembers), retrying, and asks it to sign the
    /// close. Nothing is frozen: on failure the channel is as it was. Returns why it failed.
    async fn cooperate(
        &mut self,
        uri: Option<&NodeUri>,
        peer: Address,
        channel: Address,
        timeout: Duration,
    ) -> std::result::Result<(), String> {
        let deadline = tokio::time::Instant::now() + timeout;
        let secs = timeout.as_secs();
        let mut why = "the peer's node was not reached".to_string();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Err(format!("{why} (tried for {secs} s)"));
            }
            let step = async {
                if let Some(uri) = uri {
                    self.link(uri, peer).await?;
                }
                self.request(vbank_node::Request::Close { channel, timeout_secs: left.as_secs().max(1) }).await
            };
            match tokio::time::timeout(left, step).await {
                Ok(Ok(_)) => return Ok(()),
                Ok(Err(e)) => {
                    why = error_chain(&e);
                    // The peer answered and refused: asking again will not help.
                    if why.contains("the peer refused") {
                        return Err(why);
                    }
                }
                Err(_) => return Err(format!("{why} (tried for {secs} s)")),
            }
            tokio::time::sleep(
                Duration::from_secs(1).min(deadline.saturating_duration_since(tokio::time::Instant::now())),
            )
            .await;
        }
    }
}

/// An error and its causes, "a: b: c".
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Waits for the lock period to end, then pays the frozen balance out. The contract judges by
/// the block's time, which may lag the clock here: a refusal is retried.
async fn withdraw_after_lock(onchain: &OnChain, unlock: u64, progress: Option<&ProgressFn>) -> Result<TxReport> {
    report(progress, Progress::Countdown { label: "waiting for the lock period to end".into(), until: unlock });
    loop {
        if vbank_node::unix_now() > unlock {
            match onchain.clone().force(true).withdraw_by_master().await {
                Ok(r) => return Ok(r),
                Err(e) if e.revert().is_some() => {}
                Err(e) => return Err(client_err(e).during("withdrawing after the lock")),
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Pays this party's agreed deposit into `channel` (`chain` signs with this party's key), after
/// checking the contract: the factory's `channelAddress` of the parameters it reports and `salt`
/// must be the channel, its state still funding, the signer a party whose deposit is not in yet.
/// A token deposit is approved first.
pub async fn deposit(chain: &Chain, channel: Address, salt: B256) -> Result<TxReport> {
    let onchain = OnChain::new(chain.clone(), channel);
    let params = onchain.reported_params(salt).await.map_err(|e| client_err(e).during("reading the channel"))?;
    onchain.deposit_agreed(&params).await.map_err(|e| client_err(e).during("depositing"))
}
