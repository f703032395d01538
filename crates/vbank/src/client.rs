//! A handle to a party's node from a program that is not the node: the node running elsewhere on
//! the same store (through its control socket), or a node opened on the store for the length of
//! one command (no listening). Both carry out the same operations, so a command works the same
//! whether the party's node runs or not.

use std::{
    future::Future,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use alloy::primitives::{Address, B256};
use vbank_core::{Amount, ChannelParams, Funding, HashLock, Settlement};
use vbank_node::{
    ChannelStatus, ControlClient, NodeUri, Paid, Payment, RedbStore, Reply, Request, Service, Terms, control_path,
    network::{Announcement, GraphChannel},
};

use crate::{Error, Node, Result};

/// What a long operation is doing, for a person watching (see [`ProgressFn`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Progress {
    /// A wait begins (for the peer, a receipt, the chain); it ends when the next one begins or
    /// the operation returns.
    Waiting(String),
    /// A wait until a time (unix seconds), such as the end of a lock period.
    Countdown {
        /// What is awaited.
        label: String,
        /// Until when.
        until: u64,
    },
    /// The canonical factory was deployed (the chain had none).
    FactoryDeployed {
        /// Its address.
        address: Address,
        /// The transaction.
        report: vbank_client::TxReport,
    },
    /// The channel's contract was opened through the factory.
    ChannelOpened {
        /// The channel.
        channel: Address,
        /// Its salt (an opening is resumed with it).
        salt: B256,
        /// The transaction.
        report: vbank_client::TxReport,
    },
    /// Sheet 0 is countersigned by both: deposits are safe to pay.
    SheetZero {
        /// The channel.
        channel: Address,
    },
    /// This party's deposit was paid.
    Deposited {
        /// The channel.
        channel: Address,
        /// The amount.
        amount: Amount,
        /// The transaction.
        report: vbank_client::TxReport,
    },
    /// Something worth telling that does not stop the operation (a warning, a fallback taken).
    Note(String),
}

/// Receives [`Progress`] from long operations ([`Client::open_channel`], [`Client::close`]).
pub type ProgressFn = Arc<dyn Fn(Progress) + Send + Sync>;

pub(crate) fn report(progress: Option<&ProgressFn>, p: Progress) {
    if let Some(f) = progress {
        f(p);
    }
}

/// A party's address, its node's URI (if it listens) and its channels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The party.
    pub address: Address,
    /// Where peers reach its node, if it listens.
    pub uri: Option<NodeUri>,
    /// Its channels.
    pub channels: Vec<ChannelStatus>,
}

/// A party's node as a program reaches it: the node running on the store (its control socket
/// `<store>.sock` answers; it holds the store's lock), or a [`Node`] opened on the store by this
/// program ([`crate::Builder::open`]). Every operation is carried out by the node, under the
/// channel's lock and from its stored state.
#[derive(Debug)]
pub struct Client {
    conn: Conn,
    /// The node this handle opened, kept for as long as the handle.
    node: Option<Node>,
}

#[derive(Debug)]
enum Conn {
    Socket(ControlClient),
    Local(Service<RedbStore>),
}

impl Client {
    /// The node running on the store at `store`, if its control socket answers.
    pub async fn running(store: &Path) -> Option<Self> {
        let c = ControlClient::connect(&control_path(store)).await?;
        Some(Self { conn: Conn::Socket(c), node: None })
    }

    /// As [`Client::running`], an error naming the socket when no node answers.
    pub async fn require_running(store: &Path) -> Result<Self> {
        Self::running(store).await.ok_or_else(|| Error::NotRunning(control_path(store)))
    }

    /// A handle to `node`, opened by this program (it lives as long as the handle).
    pub fn local(node: Node) -> Self {
        Self { conn: Conn::Local(node.service().clone()), node: Some(node) }
    }

    /// A handle on a node's service this program runs (the node stays its owner's).
    pub fn of_service(service: Service<RedbStore>) -> Self {
        Self { conn: Conn::Local(service), node: None }
    }

    /// A handle on a control socket already connected.
    pub fn of_socket(client: ControlClient) -> Self {
        Self { conn: Conn::Socket(client), node: None }
    }

    /// Stops the node this handle opened, as [`Node::stop`] does (its links are closed, after
    /// what is queued for them); a node running elsewhere keeps running.
    pub async fn stop(self) {
        if let Some(node) = self.node {
            node.stop().await;
        }
    }

    /// Whether the node runs elsewhere (reached through its control socket).
    pub fn is_running(&self) -> bool {
        matches!(self.conn, Conn::Socket(_))
    }

    /// The node opened by this handle, if it opened one.
    pub fn node(&self) -> Option<&Node> {
        self.node.as_ref()
    }

    /// Carries out one control request; `stop` interrupts it (a payment request then cancels
    /// what it has not sent, and its reply says what was acknowledged, cancelled and in flight).
    pub async fn request_until(&mut self, r: Request, stop: impl Future<Output = ()>) -> Result<Reply> {
        match &mut self.conn {
            Conn::Socket(c) => c.request_until(&r, stop).await.map_err(socket_error),
            Conn::Local(s) => match s.control_until(r, stop).await {
                Reply::Error { message } => Err(Error::Refused(message)),
                reply => Ok(reply),
            },
        }
    }

    /// Carries out one control request.
    pub async fn request(&mut self, r: Request) -> Result<Reply> {
        self.request_until(r, std::future::pending()).await
    }

    /// The party's address, its node's URI and its channels.
    pub async fn status(&mut self) -> Result<Status> {
        match self.request(Request::Status).await? {
            Reply::Status { address, uri, channels } => Ok(Status { address, uri, channels }),
            other => Err(unexpected(&other)),
        }
    }

    /// One channel's status, if the party has it.
    pub async fn channel(&mut self, id: Address) -> Result<Option<ChannelStatus>> {
        Ok(self.status().await?.channels.into_iter().find(|c| c.channel == id))
    }

    /// Links to `peer`'s node at `uri` (nothing happens if linked); the URI's key must be `peer`'s.
    pub async fn link(&mut self, uri: &NodeUri, peer: Address) -> Result<()> {
        if uri.address() != peer {
            return Err(Error::WrongPeer { uri: Box::new(uri.clone()), peer });
        }
        self.request(Request::Connect { uri: uri.clone() }).await?;
        Ok(())
    }

    /// What a linked peer's node takes: whether it joins channels, its lock period range, the
    /// deposit it pays by itself.
    pub async fn terms(&mut self, peer: Address, timeout: Duration) -> Result<Terms> {
        match self.request(Request::Terms { peer, timeout_secs: timeout.as_secs() }).await? {
            Reply::Terms { terms } => Ok(terms),
            other => Err(unexpected(&other)),
        }
    }

    /// Agrees sheet 0 of channel `params` with its linked peer, as party 0 (the channel is added
    /// to the store; nothing on chain).
    pub async fn open(&mut self, params: ChannelParams, timeout: Duration) -> Result<()> {
        self.request(Request::Open { params, timeout_secs: timeout.as_secs() }).await?;
        Ok(())
    }

    /// Pays `count` payments of `amount` wei to the peer of `channel` and waits for the
    /// acknowledgement; under `id` (an id the application chose) the same id pays once. `stop`
    /// cancels what is not sent yet: the error then says what was acknowledged, cancelled and in
    /// flight.
    pub async fn pay(
        &mut self,
        channel: Address,
        amount: Amount,
        count: u64,
        id: Option<String>,
        timeout: Duration,
        stop: impl Future<Output = ()>,
    ) -> Result<Paid> {
        let request = Request::Pay { channel, amount, count, timeout_secs: timeout.as_secs(), id };
        match self.request_until(request, stop).await? {
            Reply::Paid { count, amount, nonce } => Ok(Paid { count, amount, nonce }),
            other => Err(unexpected(&other)),
        }
    }

    /// Without a running node, payments left queued in the store by a payer that was killed
    /// before it could cancel them would go out with the next link: they are cancelled (never
    /// sent) before anything links. Returns how many. A running node cancels a request's queued
    /// payments itself when the request fails or its client goes: 0 then.
    pub async fn cancel_leftovers(&mut self, id: Address) -> Result<u64> {
        let Conn::Local(s) = &self.conn else { return Ok(0) };
        let mut node = s.node().lock().await;
        let Some(ch) = node.channel(id) else { return Ok(0) };
        let queued = ch.queued();
        if queued == 0 {
            return Ok(0);
        }
        if !ch.is_idle() {
            return Err(Error::QueuedBehindUpdate { queued });
        }
        // Idle: the queue is ids unsettled_from.. (the tail), which `cancel_queued` takes whole
        // (`each` 0: the whole queue goes, so its total is dropped with it).
        let first = ch.unsettled_from();
        let cancelled = node.cancel_queued(id, first, first + queued - 1, 0)?;
        Ok(cancelled.len() as u64)
    }

    /// Locks `amount` wei to the peer of `channel` on `hash` until `expiry` (unix seconds).
    /// Returns the lock and the sheet that holds it.
    pub async fn hold(
        &mut self,
        channel: Address,
        amount: Amount,
        hash: B256,
        expiry: u64,
        timeout: Duration,
    ) -> Result<(HashLock, u64)> {
        lock_reply(
            self.request(Request::Hold { channel, amount, hash, expiry, timeout_secs: timeout.as_secs() }).await?,
        )
    }

    /// Claims the peer's lock that `preimage` opens.
    pub async fn fulfil(&mut self, channel: Address, preimage: B256, timeout: Duration) -> Result<(HashLock, u64)> {
        lock_reply(self.request(Request::Fulfil { channel, preimage, timeout_secs: timeout.as_secs() }).await?)
    }

    /// Gives the peer's lock on `hash` back to the peer.
    pub async fn release(&mut self, channel: Address, hash: B256, timeout: Duration) -> Result<(HashLock, u64)> {
        lock_reply(self.request(Request::Release { channel, hash, timeout_secs: timeout.as_secs() }).await?)
    }

    /// Freezes `channel` (after a cooperative close with the peer if `cooperative` and it
    /// answers) and returns how to settle it on chain, chosen by the node under the channel's
    /// lock from its stored state, and why the cooperative close did not happen if it did not.
    pub async fn settle(
        &mut self,
        channel: Address,
        cooperative: bool,
        timeout: Duration,
    ) -> Result<(Settlement, Option<String>)> {
        match self.request(Request::Settle { channel, cooperative, timeout_secs: timeout.as_secs() }).await? {
            Reply::Settle { settlement, cooperative_error } => Ok((settlement, cooperative_error)),
            other => Err(unexpected(&other)),
        }
    }

    /// Issues an invoice for `amount` wei on chain `chain_id`, payable for `expires_in` seconds.
    /// Returns the invoice string and its payment hash.
    pub async fn invoice(
        &mut self,
        chain_id: u64,
        amount: Amount,
        memo: &str,
        expires_in: u64,
    ) -> Result<(String, B256)> {
        let request = Request::Invoice { chain_id, amount, token: Address::ZERO, memo: memo.into(), expires_in };
        match self.request(request).await? {
            Reply::Invoice { invoice, hash } => Ok((invoice, hash)),
            other => Err(unexpected(&other)),
        }
    }

    /// Pays an invoice along the cheapest route, paying at most `max_fee` wei in fees, with locks
    /// expiring `window` seconds from now.
    pub async fn pay_invoice(
        &mut self,
        invoice: &str,
        max_fee: Amount,
        window: u64,
        timeout: Duration,
    ) -> Result<Payment> {
        vbank_node::network::Invoice::decode(invoice).map_err(|e| Error::Invalid(e.to_string()))?;
        let request =
            Request::PayInvoice { invoice: invoice.trim().into(), max_fee, window, timeout_secs: timeout.as_secs() };
        match self.request(request).await? {
            Reply::Payment { payment } => Ok(payment),
            other => Err(unexpected(&other)),
        }
    }

    /// What the node knows of the network: announced nodes and channels.
    pub async fn graph(&mut self) -> Result<(Vec<Announcement>, Vec<GraphChannel>)> {
        match self.request(Request::Graph).await? {
            Reply::Graph { nodes, channels } => Ok((nodes, channels)),
            other => Err(unexpected(&other)),
        }
    }

    /// Records what the chain shows of `channel` in a node this handle opened (a running node's
    /// watchers do it by themselves: nothing then).
    pub async fn record_funding(&mut self, channel: Address, funding: Funding) -> Result<()> {
        if let Conn::Local(s) = &self.conn {
            s.set_funding(channel, funding).await?;
        }
        Ok(())
    }
}

fn lock_reply(reply: Reply) -> Result<(HashLock, u64)> {
    match reply {
        Reply::Lock { lock, nonce } => Ok((lock, nonce)),
        other => Err(unexpected(&other)),
    }
}

fn unexpected(reply: &Reply) -> Error {
    Error::Unexpected(format!("{reply:?}"))
}

/// What a failure of the control socket means: a refusal is the node's message; a closed socket
/// is the node gone (crashed or stopped), not the peer.
fn socket_error(e: vbank_node::Error) -> Error {
    match e {
        vbank_node::Error::Control(message) => Error::Refused(message),
        vbank_node::Error::Closed => Error::NodeStopped(String::new()),
        vbank_node::Error::Io(e) => Error::NodeStopped(format!(" ({e})")),
        e => Error::Node(e),
    }
}

/// A store's channels as [`read_status`] finds them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreStatus {
    /// The party (none if the store holds no channel and no node runs on it).
    pub address: Option<Address>,
    /// The running node's URI.
    pub uri: Option<NodeUri>,
    /// The channels.
    pub channels: Vec<ChannelStatus>,
    /// Whether a node runs on the store (the answer is its).
    pub node_running: bool,
}

/// The channels of the store at `store`, read without the party's key and without changing
/// anything: the running node's answer if one runs, else the store's own contents (it must
/// exist: it is never created).
pub async fn read_status(store: &Path) -> Result<StoreStatus> {
    if let Some(mut c) = Client::running(store).await {
        let Status { address, uri, channels } = c.status().await?;
        return Ok(StoreStatus { address: Some(address), uri, channels, node_running: true });
    }
    if !store.exists() {
        return Err(Error::Invalid(format!("no store at {}", store.display())));
    }
    let path: PathBuf = store.to_path_buf();
    let read = tokio::task::spawn_blocking(move || read_store(&path));
    let (address, channels) = read.await.map_err(|e| Error::Invalid(e.to_string()))??;
    Ok(StoreStatus { address, uri: None, channels, node_running: false })
}

fn read_store(store: &Path) -> Result<(Option<Address>, Vec<ChannelStatus>)> {
    use alloy::signers::local::PrivateKeySigner;
    use vbank_node::Store;
    let db = RedbStore::open(store)?;
    // A channel can only be restored with its party's key; to read it without one, a throwaway
    // key stands in for the party's in a copy held in memory (never signed with, never saved).
    let stand_in = PrivateKeySigner::random();
    let copy = vbank_node::MemoryStore::default();
    let mut parties = std::collections::HashMap::new();
    for id in db.list()? {
        if let Some(mut state) = db.load(id)? {
            let me = usize::from(state.me);
            parties.insert(id, state.params.parties[me]);
            state.params.parties[me] = stand_in.address();
            copy.save(id, &state)?;
        }
    }
    for (peer, uri) in db.peer_addresses()? {
        copy.save_peer(peer, &uri)?;
    }
    let node = vbank_node::Node::open(stand_in, copy)?;
    let mut channels = ChannelStatus::of(&node);
    for c in &mut channels {
        if let Some(party) = parties.get(&c.channel) {
            c.params.parties[c.me] = *party;
        }
    }
    Ok((parties.values().next().copied(), channels))
}
