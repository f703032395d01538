//! Following the chain for a running node: watching, punishing, admission, deposits, and the
//! on-chain side of hash-time locks (DESIGN §2 rules 5 and 9).

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use alloy::primitives::{Address, B256};
use tokio::{sync::broadcast, task::JoinHandle};
use vbank_client::{Chain, OnChain, OnChainState, Punisher, Registry, TxReport, WatchEvent, Watcher, WatcherHandle};
use vbank_core::{Amount, ChannelParams, Event, Funding, HashLock, Settlement, locks_root};
use vbank_node::{Admission, Clock, Notice, Service, Store};

/// The time lock expiries are judged by: the chain's latest block time, or the system clock when
/// it is ahead (an idle dev chain's last block can be old; the next block's time is at least the
/// wall clock's on such a chain). Feed it with [`ChainClock::observe`] (the driver does, every
/// poll) and give [`ChainClock::clock`] to the node.
#[derive(Debug, Clone, Default)]
pub struct ChainClock(Arc<AtomicU64>);

impl ChainClock {
    /// A clock that knows no chain time yet (it reads the system clock until it does).
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a block time seen on the chain.
    pub fn observe(&self, chain_time: u64) {
        self.0.fetch_max(chain_time, Ordering::SeqCst);
    }

    /// The time now: the later of the chain's last seen block time and the system clock.
    pub fn now(&self) -> u64 {
        self.0.load(Ordering::SeqCst).max(vbank_node::unix_now())
    }

    /// The clock for [`vbank_node::Node::with_clock`].
    pub fn clock(&self) -> Clock {
        let me = self.clone();
        Arc::new(move || me.now())
    }
}

/// What the driver saw or did on chain, for logs and applications.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainEvent {
    /// A channel's watcher reported something.
    Watch {
        /// The channel.
        channel: Address,
        /// What.
        event: WatchEvent,
    },
    /// A preimage was revealed on the registry by this node (a lock to it nears its expiry).
    Revealed {
        /// The channel whose lock it claims.
        channel: Address,
        /// The lock's hash.
        hash: B256,
        /// The transaction.
        report: TxReport,
    },
    /// A preimage was found on the registry (revealed by someone else): learnt, and used.
    PreimageFound {
        /// The channel whose lock it opens.
        channel: Address,
        /// The hash.
        hash: B256,
    },
    /// The channel was settled on chain with the settlement the node chose.
    Settled {
        /// The channel.
        channel: Address,
        /// Why, and with what.
        what: String,
        /// The transaction.
        report: TxReport,
    },
    /// A liquidated sheet's locks were settled with `unlock`.
    Unlocked {
        /// The channel.
        channel: Address,
        /// How many locks.
        locks: usize,
        /// The transaction.
        report: TxReport,
    },
    /// This node paid its deposit (`auto_deposit`).
    Deposited {
        /// The channel.
        channel: Address,
        /// The amount.
        amount: Amount,
        /// The transaction.
        report: TxReport,
    },
    /// Something the driver did not do, or that failed; it retries what can be retried.
    Note {
        /// The channel.
        channel: Address,
        /// What.
        text: String,
    },
}

/// How a [`ChainDriver`] works.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DriverConfig {
    /// How often the chain is read.
    pub poll: Duration,
    /// A preimage of a lock to this node is revealed on the registry this long (seconds) before
    /// the lock's expiry if the peer has not countersigned the fulfil by then. Keep it below the
    /// peers' minimum lock window and well above the chain's inclusion time.
    pub reveal_window: u64,
    /// Pay this node's deposit into a channel it joined (as party 1) once sheet 0 is
    /// countersigned, if it is at most this much.
    pub auto_deposit: Option<Amount>,
}

impl Default for DriverConfig {
    fn default() -> Self {
        Self { poll: Duration::from_secs(1), reveal_window: 300, auto_deposit: None }
    }
}

/// Follows the chain for a running [`Service`]: watches and punishes, records each contract's
/// state, settles violations, pays deposits, and does the on-chain side of hash-time locks. See
/// the crate's documentation.
pub struct ChainDriver<S: Store> {
    inner: Arc<Inner<S>>,
    tasks: Vec<JoinHandle<()>>,
}

impl<S: Store> std::fmt::Debug for ChainDriver<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainDriver").field("config", &self.inner.config).finish()
    }
}

struct Inner<S: Store> {
    service: Service<S>,
    chain: Chain,
    clock: ChainClock,
    config: DriverConfig,
    events: broadcast::Sender<ChainEvent>,
    /// The last note per channel and subject, so a failure retried every poll is reported once.
    noted: std::sync::Mutex<HashMap<(Address, &'static str), String>>,
    /// The tasks it started besides the main ones (watchers, deposits, settlements).
    spawned: std::sync::Mutex<Vec<JoinHandle<()>>>,
    /// Whether liquidations seen and punishments made go to the node's event journal.
    journal: std::sync::atomic::AtomicBool,
}

impl<S: Store + Send + Sync + 'static> ChainDriver<S> {
    /// A driver for `service` on `chain`; `clock` must be the one the service's node judges lock
    /// expiries by. Nothing runs before [`ChainDriver::start`].
    pub fn new(service: Service<S>, chain: Chain, clock: ChainClock, config: DriverConfig) -> Self {
        let (events, _) = broadcast::channel(1024);
        let noted = std::sync::Mutex::new(HashMap::new());
        let spawned = std::sync::Mutex::new(Vec::new());
        let journal = std::sync::atomic::AtomicBool::new(false);
        let inner = Inner { service, chain, clock, config, events, noted, spawned, journal };
        Self { inner: Arc::new(inner), tasks: Vec::new() }
    }

    /// Journals the liquidations the watchers see and the punishments they make in the node's
    /// event journal ([`crate::ChainRecord`]), once each, to be delivered until marked handled
    /// (the node must journal: [`vbank_node::Node::with_journal`]). Off by default.
    pub fn set_journal(&self, on: bool) {
        self.inner.journal.store(on, Ordering::SeqCst);
    }

    /// What the driver sees and does, from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<ChainEvent> {
        self.inner.events.subscribe()
    }

    /// Starts following the chain (stops when the driver is dropped).
    pub fn start(&mut self) {
        let follow = Arc::clone(&self.inner);
        let locks = Arc::clone(&self.inner);
        self.tasks.push(tokio::spawn(async move { follow.follow().await }));
        self.tasks.push(tokio::spawn(async move {
            loop {
                locks.lock_round().await;
                tokio::time::sleep(locks.config.poll).await;
            }
        }));
        let graph = Arc::clone(&self.inner);
        self.tasks.push(tokio::spawn(async move { graph.follow_graph().await }));
    }

    /// One look at every channel's locks on chain (what the driver does every poll).
    pub async fn lock_round(&self) {
        self.inner.lock_round().await;
    }
}

impl<S: Store> ChainDriver<S> {
    /// Stops following the chain and waits until every task the driver started is gone (they
    /// hold the service, and so the store).
    pub async fn shutdown(mut self) {
        let mut all: Vec<JoinHandle<()>> = std::mem::take(&mut self.tasks);
        all.extend(self.inner.spawned.lock().unwrap_or_else(std::sync::PoisonError::into_inner).drain(..));
        for t in &all {
            t.abort();
        }
        for t in all {
            let _ = t.await;
        }
    }
}

impl<S: Store> Drop for ChainDriver<S> {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        for t in self.inner.spawned.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter() {
            t.abort();
        }
    }
}

impl<S: Store + Send + Sync + 'static> Inner<S> {
    /// Starts a task the driver stops with itself.
    fn spawn(&self, f: impl std::future::Future<Output = ()> + Send + 'static) {
        let mut spawned = self.spawned.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        spawned.retain(|t| !t.is_finished());
        spawned.push(tokio::spawn(f));
    }

    fn emit(&self, e: ChainEvent) {
        let _ = self.events.send(e);
    }

    /// Reports `text` about `subject` on `channel` unless it is what was reported last time.
    fn note(&self, channel: Address, subject: &'static str, text: String) {
        let mut noted = self.noted.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if noted.get(&(channel, subject)) != Some(&text) {
            noted.insert((channel, subject), text.clone());
            self.emit(ChainEvent::Note { channel, text });
        }
    }

    /// Whether the last settlement submitted for `channel` failed (and is to be retried).
    fn failed_submit(&self, channel: Address) -> bool {
        self.noted.lock().unwrap_or_else(std::sync::PoisonError::into_inner).contains_key(&(channel, "settle"))
    }

    fn clear_note(&self, channel: Address, subject: &'static str) {
        self.noted.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&(channel, subject));
    }

    /// Watches every channel (each from when the node has it), deposits where due, and settles
    /// channels the node froze for a protocol violation.
    async fn follow(self: Arc<Self>) {
        let mut notices = self.service.subscribe();
        let mut watched = HashSet::new();
        let mut deposit_tried = HashSet::new();
        let mut sweep = true;
        loop {
            if sweep {
                let node = self.service.node().lock().await;
                for id in node.channel_ids() {
                    if watched.insert(id) {
                        let me = Arc::clone(&self);
                        let handle = watch(&self.service, &self.chain, id, self.config.poll);
                        self.spawn(async move { me.relay_watch(id, handle).await });
                    }
                    let joined_open =
                        node.channel(id).is_some_and(|c| c.me() == 1 && *c.phase() != vbank_core::Phase::Opening);
                    if let Some(max) = self.config.auto_deposit
                        && joined_open
                        && deposit_tried.insert(id)
                        && let Some(params) = node.channel(id).map(|c| c.params().clone())
                    {
                        let me = Arc::clone(&self);
                        self.spawn(async move { me.auto_deposit(params, max).await });
                    }
                }
            }
            let n = match notices.recv().await {
                Ok(n) => n,
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    sweep = true;
                    continue;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            };
            // DESIGN §2 rule 5: the node froze the channel and chose the sheet; settle it on chain.
            if let Notice::Event { channel, event: Event::Frozen { settlement, violation: true, reason } } = &n {
                let (me, id, settlement, reason) = (Arc::clone(&self), *channel, settlement.clone(), reason.clone());
                self.spawn(async move { me.submit(id, settlement, &reason).await });
            }
            sweep = matches!(n, Notice::Admitted { .. } | Notice::Event { event: Event::Opened, .. });
        }
    }

    /// Forwards a watcher's events, and the contract's state to the node.
    async fn relay_watch(&self, id: Address, mut handle: WatcherHandle) {
        while let Some(e) = handle.next().await {
            if let WatchEvent::State(state) = e
                && let Err(err) = self.service.set_funding(id, funding_of(state)).await
            {
                self.note(id, "funding", format!("cannot record the contract's state {state}: {err}"));
            }
            // A liquidation decides the payments of a signed proposal the peer never answered.
            if let WatchEvent::HonestLiquidation { nonce } | WatchEvent::Punished { nonce, .. } = &e
                && let Err(err) = self.service.liquidated_on_chain(id, *nonce).await
            {
                self.note(id, "payments", format!("cannot record the liquidation with sheet {nonce}: {err}"));
            }
            self.journal_watch(id, &e).await;
            self.emit(ChainEvent::Watch { channel: id, event: e });
        }
    }

    /// Journals a liquidation seen and a punishment made, once each: a marker record
    /// ([`vbank_node::RecordKind::Journaled`]) written after the entry keeps a liquidation the
    /// watcher reports again after a restart from being journaled twice (a crash between the two
    /// writes delivers it twice: at least once).
    async fn journal_watch(&self, id: Address, e: &WatchEvent) {
        if !self.journal.load(Ordering::SeqCst) {
            return;
        }
        let records = match e {
            WatchEvent::HonestLiquidation { nonce } => {
                vec![(0u8, crate::ChainRecord::LiquidationSeen { nonce: *nonce, revoked: false })]
            }
            WatchEvent::Punished { nonce, report } => vec![
                (0u8, crate::ChainRecord::LiquidationSeen { nonce: *nonce, revoked: true }),
                (1u8, crate::ChainRecord::Punished { nonce: *nonce, tx: report.hash, gas_used: report.gas_used }),
            ],
            _ => return,
        };
        let store = Arc::clone(self.service.node().lock().await.store());
        for (kind, record) in records {
            let nonce = match &record {
                crate::ChainRecord::LiquidationSeen { nonce, .. } | crate::ChainRecord::Punished { nonce, .. } => {
                    *nonce
                }
            };
            let mut key = id.to_vec();
            key.push(kind);
            key.extend_from_slice(&nonce.to_be_bytes());
            let done = async {
                let (s, k) = (Arc::clone(&store), key.clone());
                let seen = tokio::task::spawn_blocking(move || s.record(vbank_node::RecordKind::Journaled, &k))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())?;
                if seen.is_some() {
                    return Ok(());
                }
                let entry = serde_json::to_value(&record).map_err(|e| e.to_string())?;
                self.service.journal_chain_entry(id, entry).await.map_err(|e| e.to_string())?;
                let s = Arc::clone(&store);
                tokio::task::spawn_blocking(move || s.put_record(vbank_node::RecordKind::Journaled, &key, Some(&[1])))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())
            };
            if let Err(err) = done.await {
                self.note(id, "journal", format!("cannot journal {record:?}: {err}"));
            }
        }
    }

    /// Submits the settlement the node chose (under its lock, from its stored state).
    async fn submit(&self, id: Address, settlement: Settlement, why: &str) {
        match settle_on_chain(&self.chain, id, &settlement).await {
            Ok(report) => {
                let what = format!("{} ({why})", describe_settlement(&settlement));
                self.clear_note(id, "settle");
                self.emit(ChainEvent::Settled { channel: id, what, report });
            }
            Err(e) => self.note(id, "settle", format!("settling on chain failed, retrying: {e}")),
        }
    }

    /// Pays this party's deposit into `params.contract` if it is due and at most `max`, after
    /// checking the contract holds exactly the agreed parameters.
    async fn auto_deposit(&self, params: ChannelParams, max: Amount) {
        let id = params.contract;
        let onchain = OnChain::new(self.chain.clone(), id);
        let info = match onchain.verify_params(&params).await {
            Ok(i) => i,
            Err(e) => return self.note(id, "deposit", format!("not depositing: {e}")),
        };
        let Some(i) = info.index_of(self.chain.address()) else {
            return self.note(id, "deposit", "not depositing: not a party".into());
        };
        if info.state != OnChainState::Funding || info.deposited[i] {
            return;
        }
        if info.amounts[i] > max {
            return self.note(
                id,
                "deposit",
                format!(
                    "the deposit of {} wei is over the automatic limit of {max} wei: pay it with `vbank deposit`",
                    info.amounts[i]
                ),
            );
        }
        match onchain.deposit_agreed(&params).await {
            Ok(report) => self.emit(ChainEvent::Deposited { channel: id, amount: info.amounts[i], report }),
            Err(e) => self.note(id, "deposit", format!("deposit failed: {e}")),
        }
    }

    /// The channel graph: every channel the canonical factory opens (its `ChannelOpened` logs),
    /// read from the start and then every few polls.
    async fn follow_graph(&self) {
        let factory = vbank_client::Factory::new(self.chain.clone());
        let mut from = 0;
        loop {
            match factory.opened_channels(from).await {
                Ok((opened, latest)) => {
                    self.clear_note(Address::ZERO, "graph");
                    for c in opened {
                        self.service.add_graph_channel(vbank_node::network::GraphChannel {
                            id: c.channel,
                            parties: c.parties,
                            capacity: c.capacity,
                            token: c.token,
                        });
                    }
                    from = latest + 1;
                }
                Err(e) => self.note(Address::ZERO, "graph", format!("reading the factory's channels: {e}")),
            }
            tokio::time::sleep(self.config.poll * 5).await;
        }
    }

    /// Every channel's locks, once: the chain time, the duties the node decides (reveal, settle),
    /// preimages others revealed, and `unlock` when it can be called.
    async fn lock_round(&self) {
        let now = match self.chain.timestamp().await {
            Ok(t) => t,
            Err(e) => return self.note(Address::ZERO, "time", format!("cannot read the chain's time: {e}")),
        };
        self.clock.observe(now);
        let now = self.clock.now();
        let ids = self.service.node().lock().await.channel_ids();
        for id in ids {
            if let Err(e) = self.channel_round(id, now).await {
                self.note(id, "locks", format!("lock duties: {e}"));
            }
        }
    }

    async fn channel_round(&self, id: Address, now: u64) -> Result<(), String> {
        let (outgoing, ended, candidates, frozen_running) = {
            let node = self.service.node().lock().await;
            let Some(ch) = node.channel(id) else { return Ok(()) };
            if ch.locks().is_empty() && !(ch.frozen().is_some() && self.failed_submit(id)) {
                return Ok(());
            }
            let peer = 1 - ch.me() as u8;
            let outgoing: Vec<HashLock> =
                ch.locks().iter().filter(|l| l.receiver == peer && ch.preimage(&l.hash).is_none()).copied().collect();
            let mut candidates = ch.lock_lists();
            if let Settlement::Liquidate(sheet) = ch.settlement() {
                candidates.push(sheet.locks);
            }
            let frozen_running = ch.frozen().is_some() && ch.funding() == Funding::Running;
            (outgoing, ch.funding() == Funding::Ended, candidates, frozen_running)
        };
        let registry = Registry::new(&self.chain);
        // Preimages of this party's locks revealed on chain by others first: learnt, they claim
        // upstream (a forwarding node) and stop any expiry of a lock on them. Each duty's failure
        // is reported on its own and does not hold up the others.
        for l in outgoing {
            let learnt = async {
                let at = registry.revealed_at(l.hash).await.map_err(|e| e.to_string())?;
                if at != 0
                    && at <= l.expiry
                    && let Some(p) = registry.preimage_of(l.hash).await.map_err(|e| e.to_string())?
                {
                    self.service.learn_preimage(id, p).await.map_err(|e| e.to_string())?;
                    self.emit(ChainEvent::PreimageFound { channel: id, hash: l.hash });
                }
                Ok::<(), String>(())
            };
            if let Err(e) = learnt.await {
                self.note(id, "learn", format!("reading the registry for lock {}: {e}", l.hash));
            }
        }
        // Rule 9: the node decides from its stored state; this only carries it out.
        let duties = self.service.chain_duties(id, now, self.config.reveal_window).await.map_err(|e| e.to_string())?;
        for r in duties.reveal {
            let revealed = async {
                if registry.revealed_at(r.hash).await.map_err(|e| e.to_string())? == 0 {
                    let report = registry.reveal(r.preimage).await.map_err(|e| format!("revealing {}: {e}", r.hash))?;
                    self.emit(ChainEvent::Revealed { channel: id, hash: r.hash, report });
                }
                Ok::<(), String>(())
            };
            if let Err(e) = revealed.await {
                self.note(id, "reveal", e);
            }
        }
        if let Some(reason) = duties.liquidate {
            let settlement = self.service.settle_for(id, &reason).await.map_err(|e| e.to_string())?;
            self.submit(id, settlement, &reason).await;
        } else if frozen_running && self.failed_submit(id) {
            // A settlement submitted earlier failed (the channel is frozen, the contract still
            // runs): submit the stored choice again.
            let settlement = self.service.settle_for(id, "settling again").await.map_err(|e| e.to_string())?;
            self.submit(id, settlement, "a retry").await;
        }
        if ended {
            self.unlock_when_due(id, now, &candidates, &registry).await?;
        }
        Ok(())
    }

    /// Calls `unlock` on a liquidated channel once the lock period is over and every lock of the
    /// liquidated sheet is resolved (revealed by its expiry, or expired).
    async fn unlock_when_due(
        &self,
        id: Address,
        now: u64,
        candidates: &[Vec<HashLock>],
        registry: &Registry,
    ) -> Result<(), String> {
        let onchain = OnChain::new(self.chain.clone(), id);
        let info = onchain.info().await.map_err(|e| e.to_string())?;
        let Some(l) = info.liquidation.filter(|l| l.locked != 0) else { return Ok(()) };
        if !matches!(info.state, OnChainState::Liquidating | OnChainState::Settling) {
            return Ok(());
        }
        if info.state == OnChainState::Liquidating && now < l.unlock_time {
            return Ok(());
        }
        let Some(locks) = candidates.iter().find(|c| locks_root(c) == l.locks_root) else {
            self.note(
                id,
                "unlock",
                format!("no stored lock list matches the liquidated sheet's root {}", l.locks_root),
            );
            return Ok(());
        };
        for lock in locks {
            let at = registry.revealed_at(lock.hash).await.map_err(|e| e.to_string())?;
            if !((at != 0 && at <= lock.expiry) || now > lock.expiry) {
                return Ok(()); // not resolved yet: its receiver may still reveal
            }
        }
        match onchain.unlock(locks).await {
            Ok(report) => {
                self.clear_note(id, "unlock");
                self.emit(ChainEvent::Unlocked { channel: id, locks: locks.len(), report });
            }
            // The peer may have unlocked first; the next round sees the channel closed.
            Err(e) => self.note(id, "unlock", format!("unlock failed: {e}")),
        }
        Ok(())
    }
}

/// Admission of channels opened by peers, checked against the chain `chain` reads: the
/// parameters the opening carries are checked locally first (this chain, the peer as party 0 and
/// this node as party 1, the lock period within bounds), then on chain with ONE call to the
/// canonical factory's `channelAddress`, which must give the channel's address, a code-exists
/// check and the channel's state (still Funding).
pub fn admission(chain: Chain, min_lock: u64, max_lock: u64) -> Admission {
    Arc::new(move |channel: Address, peer: Address, params: Option<ChannelParams>| {
        let chain = chain.clone();
        Box::pin(async move {
            let Some(params) = params else {
                return Err("the opening carries no channel parameters (a vbank before contract v2?)".to_string());
            };
            let me = chain.address();
            if params.contract != channel {
                return Err(format!("its parameters are for another channel, {}", params.contract));
            }
            if params.chain_id != chain.chain_id() {
                return Err(format!(
                    "it is on chain {}, this node follows chain {}",
                    params.chain_id,
                    chain.chain_id()
                ));
            }
            if params.parties != [peer, me] {
                return Err(format!(
                    "its parties are {} and {}, not {peer} and {me}",
                    params.parties[0], params.parties[1]
                ));
            }
            if params.lock_period < min_lock {
                return Err(format!(
                    "its lock period of {} s is shorter than this node's minimum of {min_lock} s",
                    params.lock_period
                ));
            }
            if params.lock_period > max_lock {
                return Err(format!(
                    "its lock period of {} s is longer than this node's maximum of {max_lock} s",
                    params.lock_period
                ));
            }
            let info = OnChain::new(chain.clone(), channel).verify_params(&params).await.map_err(|e| e.to_string())?;
            if info.state != OnChainState::Funding {
                return Err(format!("it is {}, not Funding", info.state));
            }
            Ok(params)
        })
    })
}

/// Watches channel `id` for the party of `service`, punishing with the waiver keys in its store.
/// Needs a multi-threaded runtime (the punisher reads the node from the watcher's task).
pub fn watch<S: Store + Send + 'static>(
    service: &Service<S>,
    chain: &Chain,
    id: Address,
    poll: Duration,
) -> WatcherHandle {
    let svc = service.clone();
    let punisher: Punisher = Arc::new(move |nonce, waiver| {
        tokio::task::block_in_place(|| svc.node().blocking_lock().channel(id).and_then(|c| c.punishment(nonce, waiver)))
    });
    Watcher::new(OnChain::new(chain.clone(), id), punisher, poll).spawn()
}

/// What a contract's state means for payments on its channel.
pub fn funding_of(state: OnChainState) -> Funding {
    match state {
        OnChainState::Funding => Funding::Pending,
        OnChainState::Running => Funding::Running,
        OnChainState::Liquidating | OnChainState::Settling | OnChainState::Closed => Funding::Ended,
    }
}

/// Reads a channel's funding from the chain, for a payment that meets a channel not yet seen
/// funded (the watcher's next poll may be a second away): see [`Service::set_funding_check`].
pub fn funding_check(chain: Chain) -> vbank_node::FundingCheck {
    Arc::new(move |id: Address| {
        let onchain = OnChain::new(chain.clone(), id);
        Box::pin(async move { Some(funding_of(onchain.state().await.ok()?)) })
    })
}

/// Submits the settlement the node chose for channel `id` (see [`Service::settle`]): the
/// cooperative close, the liquidation with the chosen sheet, or the cancel.
pub async fn settle_on_chain(chain: &Chain, id: Address, settlement: &Settlement) -> vbank_client::Result<TxReport> {
    let onchain = OnChain::new(chain.clone(), id);
    match settlement {
        Settlement::Liquidate(sheet) => onchain.liquidate(sheet).await,
        Settlement::Cooperative { nonce, balances, signatures } => {
            onchain.cooperative_close(*nonce, *balances, signatures).await
        }
        Settlement::Cancel => onchain.cancel().await,
    }
}

/// A settlement in words.
pub fn describe_settlement(settlement: &Settlement) -> String {
    match settlement {
        Settlement::Liquidate(sheet) => format!("liquidated with sheet {}", sheet.nonce),
        Settlement::Cooperative { nonce, .. } => format!("closed at sheet {nonce}"),
        Settlement::Cancel => "cancelled".to_string(),
    }
}
