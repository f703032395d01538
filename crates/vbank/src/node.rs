//! A node an application embeds: one builder, then `open_channel`, `pay`, `close`, invoices and
//! routed payments, with the chain followed by itself (issue #18, first part).

use std::{path::PathBuf, time::Duration};

use alloy::primitives::{Address, B256};
use alloy::signers::local::PrivateKeySigner;
use vbank_client::{Chain, OnChain, OnChainState, TxReport};
use vbank_core::{Amount, ChannelParams};
use vbank_node::Limits;
use vbank_node::{ChannelStatus, ForwardFees, NodeUri, PayOptions, Payment, RedbStore, Service};

use crate::{ChainClock, ChainDriver, ChainEvent, DriverConfig};

/// Why a node could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The node (store, peer, protocol) refused or failed.
    #[error(transparent)]
    Node(#[from] vbank_node::Error),
    /// The chain refused or failed.
    #[error(transparent)]
    Chain(#[from] vbank_client::Error),
    /// This needs a chain endpoint ([`Builder::chain`]).
    #[error("this node has no chain endpoint: give Builder::chain an RPC URL")]
    NoChain,
    /// Something took longer than allowed.
    #[error("timed out: {0}")]
    Timeout(String),
    /// A bad argument.
    #[error("{0}")]
    Invalid(String),
    /// The party's node refused the request; its message says why (nothing changed unless it
    /// says so).
    #[error("{0}")]
    Refused(String),
    /// The party's running node stopped answering its control socket before it replied (it
    /// stopped or crashed; what it had sent is in its store).
    #[error(
        "this party's own node stopped answering its control socket before replying{0}: did it stop or crash? \
         Its log says; what it had sent is in its store"
    )]
    NodeStopped(String),
    /// No node runs on this store (invoices, routed payments and the graph need one).
    #[error("no running node answers at {0}")]
    NotRunning(PathBuf),
    /// The node answered something this version does not expect.
    #[error("unexpected reply from the node: {0}")]
    Unexpected(String),
    /// A node URI given for a peer is another party's.
    #[error("{uri} is the node of {}, not of the peer {peer}", uri.address())]
    WrongPeer {
        /// The URI given.
        uri: Box<NodeUri>,
        /// The channel's peer.
        peer: Address,
    },
    /// The node on the store is another party than the key given.
    #[error("the node is {node}, but the key given is {key}")]
    WrongKey {
        /// The node's party.
        node: Address,
        /// The key's.
        key: Address,
    },
    /// The peer's node would not take this channel (it said so before anything was spent).
    #[error("{0}")]
    Terms(#[from] crate::TermsRefusal),
    /// The channel of these parameters and salt is not the one expected (resuming an opening).
    #[error("the channel of these parameters and salt {salt} is {computed}, not {expected}")]
    SaltMismatch {
        /// The channel expected.
        expected: Address,
        /// The channel the parameters give.
        computed: Address,
        /// The salt.
        salt: B256,
    },
    /// The channel is open on chain but sheet 0 was not agreed with the peer: the opening can be
    /// resumed with the same salt, or the contract cancelled.
    #[error("the channel {channel} is opened on chain but not with the peer (salt {salt})")]
    NotAgreed {
        /// The channel.
        channel: Address,
        /// Its salt.
        salt: B256,
        /// Why.
        #[source]
        source: Box<Error>,
    },
    /// The peer's deposit did not arrive in time; the channel stays in funding.
    #[error("the peer has not deposited within {} s; the channel {channel} stays in funding", waited.as_secs())]
    PeerDepositMissing {
        /// The channel.
        channel: Address,
        /// How long it was awaited.
        waited: Duration,
    },
    /// The peer did not close cooperatively and liquidating alone was not allowed
    /// ([`crate::CloseOptions::force`]): nothing was done.
    #[error("the peer did not close cooperatively: {reason}; nothing was done")]
    Uncooperative {
        /// Why the cooperative close failed.
        reason: String,
        /// The channel's lock period: what liquidating alone would freeze this party's balance for.
        lock_period: u64,
    },
    /// The channel is being liquidated and its lock period has not ended (by the chain's clock).
    #[error("the channel is being liquidated; its frozen balance unlocks at unix time {unlock_time}")]
    StillLocked {
        /// When the frozen balance can be withdrawn, unix seconds.
        unlock_time: u64,
        /// The chain's time now.
        now: u64,
    },
    /// Nothing is left to close on chain: the channel is settling its locks, or closed.
    #[error("nothing to close: the channel is {0}")]
    NothingToClose(OnChainState),
    /// The channel runs on chain but this party holds no countersigned sheet: only the peer can
    /// close it.
    #[error("the channel runs on chain but this party holds no countersigned sheet: only the peer can close it")]
    NoSheet,
    /// Payments left queued in the store by a payer killed before it could cancel them wait
    /// behind an update in flight: the node must run to finish the update before they can be
    /// cancelled (they are never sent without it).
    #[error(
        "{queued} payment(s) left queued by an interrupted payer wait behind an update in flight; run the node on \
         this store to finish the update, then pay again"
    )]
    QueuedBehindUpdate {
        /// How many.
        queued: u64,
    },
    /// A step of a longer operation failed.
    #[error("{step}")]
    During {
        /// The step.
        step: String,
        /// Why.
        #[source]
        source: Box<Error>,
    },
}

impl Error {
    /// This error, as the failure of `step`.
    pub fn during(self, step: impl Into<String>) -> Self {
        Self::During { step: step.into(), source: Box::new(self) }
    }

    /// The error underneath the steps it failed in.
    pub fn root(&self) -> &Error {
        match self {
            Self::During { source, .. } | Self::NotAgreed { source, .. } => source.root(),
            e => e,
        }
    }
}

/// The result of a node's operations.
pub type Result<T> = std::result::Result<T, Error>;

/// The shortest lock period a node states it accepts unless told otherwise: one hour.
pub const DEFAULT_MIN_LOCK: u64 = 3600;
/// The longest: 30 days.
pub const DEFAULT_MAX_LOCK: u64 = 30 * 24 * 3600;

/// Builds a [`Node`]: its store and key, then what it should do.
#[derive(Debug)]
pub struct Builder {
    store: PathBuf,
    signer: PrivateKeySigner,
    rpc_url: Option<String>,
    chain_id: Option<u64>,
    journal: bool,
    listen: String,
    accept: Option<(u64, u64)>,
    forward: Option<ForwardFees>,
    config: DriverConfig,
    timeout: Duration,
    limits: Limits,
}

impl Builder {
    /// A node of `signer`'s party on the redb store at `store` (created if missing, 0600).
    pub fn new(store: impl Into<PathBuf>, signer: PrivateKeySigner) -> Self {
        Self {
            store: store.into(),
            signer,
            rpc_url: None,
            chain_id: None,
            journal: true,
            listen: "127.0.0.1:0".into(),
            accept: None,
            forward: None,
            config: DriverConfig::default(),
            timeout: Duration::from_secs(60),
            limits: Limits::default(),
        }
    }

    /// Follows this chain: watching and punishing (on by default once a chain is given),
    /// deposits, the on-chain side of locks, the channel graph.
    pub fn chain(mut self, rpc_url: impl Into<String>) -> Self {
        self.rpc_url = Some(rpc_url.into());
        self
    }

    /// Refuses to start unless the chain endpoint serves this chain id.
    pub fn chain_id(mut self, chain_id: Option<u64>) -> Self {
        self.chain_id = chain_id;
        self
    }

    /// Journals events for [`Node::next_event`] (on by default; a node nobody reads events from,
    /// such as the CLI's, turns it off so the journal does not grow).
    pub fn journal(mut self, on: bool) -> Self {
        self.journal = on;
        self
    }

    /// Reveals a preimage on the registry this long before a lock's expiry when the peer has not
    /// countersigned the claim (default 300 s).
    pub fn reveal_window(mut self, secs: u64) -> Self {
        self.config.reveal_window = secs;
        self
    }

    /// Listens for peers here (default `127.0.0.1:0`, any free port).
    pub fn listen(mut self, addr: impl Into<String>) -> Self {
        self.listen = addr.into();
        self
    }

    /// Joins channels peers open, once verified on chain, with a lock period in this range.
    pub fn accept_channels(mut self, min_lock: u64, max_lock: u64) -> Self {
        self.accept = Some((min_lock, max_lock));
        self
    }

    /// Pays its deposit into channels it joined, up to this much.
    pub fn auto_deposit(mut self, max: Amount) -> Self {
        self.config.auto_deposit = Some(max);
        self
    }

    /// Forwards payments for others for these fees.
    pub fn forward(mut self, fees: ForwardFees) -> Self {
        self.forward = Some(fees);
        self
    }

    /// How often the chain is read (default 1 s).
    pub fn poll(mut self, every: Duration) -> Self {
        self.config.poll = every;
        self
    }

    /// How long an operation waits for a peer or the chain (default 60 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long a handshake with a peer's node may take (default: [`Limits::default`]'s).
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.limits.handshake_timeout = timeout;
        self
    }

    /// Opens the node for one command (a [`crate::Client::local`]): the store, the chain if
    /// given (connected, not followed: no watching), and nothing else: no listening, no links
    /// until one is asked for, no ticker. The store's lock is held until the node is dropped.
    pub async fn open(self) -> Result<Node> {
        let chain = match &self.rpc_url {
            Some(url) => Some(Chain::connect(url, self.signer.clone(), self.chain_id).await?),
            None => None,
        };
        let store = RedbStore::open(&self.store)?;
        let node = vbank_node::Node::open(self.signer.clone(), store)?.with_clock(ChainClock::new().clock());
        let node = if self.journal { node.with_journal() } else { node };
        let service = Service::with_limits(node, self.signer.clone(), None, self.limits);
        Ok(Node { service, driver: None, chain, timeout: self.timeout, poll: self.config.poll })
    }

    /// Opens the store, connects to the chain, listens, and starts following the chain.
    pub async fn start(self) -> Result<Node> {
        let chain = match &self.rpc_url {
            Some(url) => Some(Chain::connect(url, self.signer.clone(), self.chain_id).await?),
            None => None,
        };
        let clock = ChainClock::new();
        if let Some(c) = &chain {
            clock.observe(c.timestamp().await?);
        }
        if let Some((min, max)) = self.accept
            && (min > max || chain.is_none())
        {
            return Err(Error::Invalid("accept_channels needs a chain and min_lock <= max_lock".into()));
        }
        let store = RedbStore::open(&self.store)?;
        // Events are journaled with the states that produce them, until the application marks
        // them handled (`Node::next_event`, `Node::mark_handled`).
        let node = vbank_node::Node::open(self.signer.clone(), store)?.with_clock(clock.clock());
        let node = if self.journal { node.with_journal() } else { node };
        let node = if chain.is_some() { node.follow_chain() } else { node };
        let admission = match (self.accept, &chain) {
            (Some((min, max)), Some(c)) => Some(crate::admission(c.clone(), min, max)),
            _ => None,
        };
        let service = Service::with_limits(node, self.signer.clone(), admission, self.limits);
        // What a peer opening a channel learns before it spends gas (`vbank open` asks).
        let (min_lock, max_lock) = self.accept.unwrap_or((DEFAULT_MIN_LOCK, DEFAULT_MAX_LOCK));
        service.set_terms(vbank_node::Terms {
            version: vbank_node::Terms::VERSION,
            accepts_channels: self.accept.is_some() && chain.is_some(),
            min_lock,
            max_lock,
            auto_deposit: self.config.auto_deposit,
        });
        let listener = tokio::net::TcpListener::bind(&self.listen)
            .await
            .map_err(|e| Error::Invalid(format!("listening on {}: {e}", self.listen)))?;
        service.listen(listener);
        service.load_graph().await?;
        service.relink().await?;
        service.spawn_ticker(self.config.poll);
        if let Some(fees) = self.forward {
            service.set_forwarding(Some(fees)).await?;
        }
        let driver = chain.as_ref().map(|c| {
            service.set_funding_check(crate::funding_check(c.clone()));
            let mut d = ChainDriver::new(service.clone(), c.clone(), clock.clone(), self.config);
            d.set_journal(self.journal);
            d.start();
            d
        });
        Ok(Node { service, driver, chain, timeout: self.timeout, poll: self.config.poll })
    }
}

/// An event the node journaled, delivered until the application marks it handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// Its place in the journal: events are numbered in the order they were stored.
    pub seq: u64,
    /// The channel.
    pub channel: Address,
    /// What happened.
    pub event: Event,
}

/// What the journal holds: a channel's own events (stored with the state change that produced
/// them) and what the node saw and did on chain.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(untagged)]
pub enum Event {
    /// A step of the channel: `Received` (a payment to this party, settled), `PaymentsAcked`
    /// (this party's payments acknowledged), `Opened`, `Frozen` (closing, a violation, or the
    /// channel ended on chain), `CloseReady`, `Lock` changes, `PreimageLearned`…
    Channel(vbank_core::Event),
    /// Seen or done on chain by the node's chain driver.
    Chain(ChainRecord),
}

/// What the chain driver journals (see [`Event::Chain`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChainRecord {
    /// The peer liquidated the channel.
    LiquidationSeen {
        /// The sheet it liquidated with.
        nonce: u64,
        /// Whether that sheet was revoked (a cheat: punished, see [`ChainRecord::Punished`]).
        revoked: bool,
    },
    /// The node punished a liquidation with a revoked sheet: the peer's frozen balance is this
    /// party's.
    Punished {
        /// The revoked sheet.
        nonce: u64,
        /// The `withdrawByPeer` transaction.
        tx: B256,
        /// Its gas.
        gas_used: u64,
    },
}

/// A running node (see [`Builder`]). Dropping it stops following the chain; [`Node::stop`] also
/// closes its links.
#[derive(Debug)]
pub struct Node {
    service: Service<RedbStore>,
    driver: Option<ChainDriver<RedbStore>>,
    chain: Option<Chain>,
    timeout: Duration,
    poll: Duration,
}

impl Node {
    /// The party's address.
    pub fn address(&self) -> Address {
        self.service.address()
    }

    /// Where peers reach this node.
    pub fn uri(&self) -> Option<NodeUri> {
        self.service.own_uri()
    }

    /// The chain's id, if the node follows one.
    pub fn chain_id(&self) -> Option<u64> {
        self.chain.as_ref().map(Chain::chain_id)
    }

    /// The service underneath, for what this API does not cover yet.
    pub fn service(&self) -> &Service<RedbStore> {
        &self.service
    }

    /// What the node does from now on: links, channels admitted, each channel's events, refusals.
    pub fn notices(&self) -> tokio::sync::broadcast::Receiver<vbank_node::Notice> {
        self.service.subscribe()
    }

    /// Serves the node's control socket at `path` (mode 0600; [`vbank_node::control_path`] of the
    /// store is where [`crate::Client::running`] looks) until the node stops: programs beside
    /// the node reach it there with [`crate::Client`]. A socket left by a node that is gone is
    /// replaced; one that answers is an error (another node runs).
    pub async fn serve_control(&self, path: &std::path::Path) -> Result<()> {
        Ok(self.service.serve_control(path).await?)
    }

    /// What the chain driver sees and does (watching, punishing, deposits, locks).
    pub fn chain_events(&self) -> Option<tokio::sync::broadcast::Receiver<ChainEvent>> {
        self.driver.as_ref().map(ChainDriver::subscribe)
    }

    fn chain(&self) -> Result<&Chain> {
        self.chain.as_ref().ok_or(Error::NoChain)
    }

    /// Opens a channel with the node at `peer` as party 0: the peer's terms are asked first
    /// (nothing is spent on a channel it would refuse, or a deposit its node would not pay), the
    /// factory (deployed if the chain has none) opens the contract, sheet 0 is agreed with the
    /// peer's node, this party deposits, and the call returns once the peer's deposit is in too
    /// (its node pays it with `auto_deposit`). Returns the channel's address. See
    /// [`Node::open_channel_with`] for the options.
    pub async fn open_channel(&self, peer: &NodeUri, deposits: [Amount; 2], lock_period: u64) -> Result<Address> {
        let opts = crate::OpenOptions {
            timeout: self.timeout,
            ..crate::OpenOptions::new(peer.clone(), deposits, lock_period)
        };
        Ok(self.open_channel_with(opts).await?.params.contract)
    }

    /// Adds a channel agreed elsewhere (not opened here nor by a peer's node), checked on chain
    /// first like an admitted one: the lock period and token are the contract's, and its code,
    /// parties, deposits and chain must be exactly these. Without a chain nothing can be checked:
    /// returns false then (the channel is added unverified, for off-chain use). Nothing happens if
    /// the node has the channel already.
    pub async fn add_channel(&self, mut params: ChannelParams) -> Result<bool> {
        if self.service.node().lock().await.channel(params.contract).is_some() {
            return Ok(true);
        }
        let verified = match &self.chain {
            Some(c) => {
                let onchain = OnChain::new(c.clone(), params.contract);
                let info = onchain.info().await?;
                params.lock_period = info.lock_period;
                params.token = info.token;
                onchain.verify_params(&params).await?;
                true
            }
            None => false,
        };
        let seed = B256::from(PrivateKeySigner::random().to_bytes());
        self.service.node().lock().await.add_channel(params, seed)?;
        Ok(verified)
    }

    /// Pays `amount` wei to the peer of `channel` and waits for the acknowledgement. Returns the
    /// payment's id: [`Node::pay_with_id`] with it again pays nothing more.
    pub async fn pay(&self, channel: Address, amount: Amount) -> Result<String> {
        let id = format!("{:x}", B256::from(PrivateKeySigner::random().to_bytes()));
        self.pay_with_id(&id, channel, amount).await?;
        Ok(id)
    }

    /// Pays under an id the application chose (an order number): the same id pays once.
    pub async fn pay_with_id(&self, id: &str, channel: Address, amount: Amount) -> Result<()> {
        self.service.pay_with_id(id, channel, amount, 1, self.timeout, std::future::pending()).await?;
        Ok(())
    }

    /// Issues an invoice for `amount` wei (payable for an hour).
    pub async fn invoice(&self, amount: Amount, memo: &str) -> Result<vbank_node::network::Invoice> {
        let chain_id = self.chain()?.chain_id();
        Ok(self.service.invoice(chain_id, amount, Address::ZERO, memo, 3600).await?)
    }

    /// Pays an invoice along a route of channels.
    pub async fn pay_invoice(&self, invoice: &str) -> Result<Payment> {
        let invoice = vbank_node::network::Invoice::decode(invoice).map_err(|e| Error::Invalid(e.to_string()))?;
        let opts = PayOptions { timeout: self.timeout, ..PayOptions::default() };
        Ok(self.service.pay_invoice(&invoice, opts).await?)
    }

    /// Closes `channel`: cooperatively if the peer answers, else by liquidating with the sheet
    /// the node chose under the channel's lock after freezing it (see
    /// [`Service::settle`]). Returns the transaction.
    pub async fn close(&self, channel: Address) -> Result<TxReport> {
        let chain = self.chain()?;
        let (settlement, _) = self.service.settle(channel, true, self.timeout).await?;
        Ok(crate::settle_on_chain(chain, channel, &settlement).await?)
    }

    /// Opens a channel as party 0 step by step, as [`crate::Client::open_channel`] does (terms
    /// checked first, resumable with the reported salt, deposits optional to wait for).
    pub async fn open_channel_with(&self, opts: crate::OpenOptions) -> Result<crate::OpenReport> {
        let chain = self.chain()?.clone();
        crate::Client::of_service(self.service.clone()).open_channel(&chain, opts).await
    }

    /// Closes `channel` with the whole policy of [`crate::Client::close`]: cooperative first,
    /// retried until the timeout; a liquidation (with the sheet the node chooses under the
    /// channel's lock) only if `opts.force` or `opts.confirm` allows it; withdrawing after the
    /// lock period with `opts.wait`. Returns whether it closed cooperatively or was liquidated,
    /// and the transactions.
    pub async fn close_with(&self, channel: Address, opts: crate::CloseOptions) -> Result<crate::CloseReport> {
        let chain = self.chain()?.clone();
        crate::Client::of_service(self.service.clone()).close(&chain, channel, opts).await
    }

    /// Watches every channel the node holds on its chain, for a node that follows no chain by
    /// itself ([`Builder::open`]; a started node's driver watches already): each channel's
    /// watcher punishes a liquidation with a revoked sheet (with the waiver keys in the store) and
    /// records the contract's state in the node. Its reports come out of the receiver, which ends
    /// once every channel is closed on chain.
    pub async fn watch_channels(&self) -> Result<tokio::sync::mpsc::UnboundedReceiver<ChainEvent>> {
        let chain = self.chain()?.clone();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let ids = self.service.node().lock().await.channel_ids();
        for id in ids {
            let mut handle = crate::watch(&self.service, &chain, id, self.poll);
            let (service, tx) = (self.service.clone(), tx.clone());
            tokio::spawn(async move {
                while let Some(e) = handle.next().await {
                    if let vbank_client::WatchEvent::State(state) = e
                        && let Err(err) = service.set_funding(id, crate::funding_of(state)).await
                    {
                        let text = format!("cannot record the contract's state {state}: {err}");
                        let _ = tx.send(ChainEvent::Note { channel: id, text });
                    }
                    let _ = tx.send(ChainEvent::Watch { channel: id, event: e });
                }
            });
        }
        Ok(rx)
    }

    /// Every channel, as the node holds it.
    pub async fn channels(&self) -> Vec<ChannelStatus> {
        ChannelStatus::of(&*self.service.node().lock().await)
    }

    /// This party's balance in `channel` (its latest countersigned sheet).
    pub async fn balance(&self, channel: Address) -> Result<Amount> {
        let node = self.service.node().lock().await;
        let ch = node.channel(channel).ok_or(vbank_node::Error::UnknownChannel(channel))?;
        Ok(ch.balances()[ch.me()])
    }

    /// The journaled events not yet marked handled, oldest first.
    pub async fn events(&self) -> Result<Vec<StoredEvent>> {
        let store = std::sync::Arc::clone(self.service.node().lock().await.store());
        let rows = tokio::task::spawn_blocking(move || {
            use vbank_node::Store;
            store.records(vbank_node::RecordKind::Event)
        })
        .await
        .map_err(|e| Error::Invalid(e.to_string()))??;
        Ok(rows
            .into_iter()
            .filter_map(|(k, v)| {
                let seq = u64::from_be_bytes(k.as_slice().try_into().ok()?);
                let entry: serde_json::Value = serde_json::from_slice(&v).ok()?;
                let channel = serde_json::from_value(entry.get("channel")?.clone()).ok()?;
                let event = match (entry.get("event"), entry.get("chain")) {
                    (Some(e), _) => Event::Channel(serde_json::from_value(e.clone()).ok()?),
                    (None, Some(c)) => Event::Chain(serde_json::from_value(c.clone()).ok()?),
                    (None, None) => return None,
                };
                Some(StoredEvent { seq, channel, event })
            })
            .collect())
    }

    /// The oldest event not yet handled, waiting at most `timeout` for one. Delivered again
    /// (after a restart too) until [`Node::mark_handled`].
    pub async fn next_event(&self, timeout: Duration) -> Result<Option<StoredEvent>> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut notices = self.service.subscribe();
        loop {
            if let Some(e) = self.events().await?.into_iter().next() {
                return Ok(Some(e));
            }
            // Woken by the node's next event, or by a poll (a notice may be missed).
            let wait = tokio::time::timeout_at(
                deadline.min(tokio::time::Instant::now() + Duration::from_millis(200)),
                notices.recv(),
            );
            let _ = wait.await;
            if tokio::time::Instant::now() >= deadline {
                return Ok(None);
            }
        }
    }

    /// Marks event `seq` handled: it is not delivered again.
    pub async fn mark_handled(&self, seq: u64) -> Result<()> {
        let store = std::sync::Arc::clone(self.service.node().lock().await.store());
        tokio::task::spawn_blocking(move || {
            use vbank_node::Store;
            store.put_record(vbank_node::RecordKind::Event, &seq.to_be_bytes(), None)
        })
        .await
        .map_err(|e| Error::Invalid(e.to_string()))??;
        Ok(())
    }

    /// Stops the node: the chain is no longer followed, the links close. Everything is stored.
    pub async fn stop(mut self) {
        if let Some(d) = self.driver.take() {
            d.shutdown().await;
        }
        self.service.shutdown().await;
    }
}
