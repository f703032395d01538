//! A running node: encrypted, authenticated links to peers over TCP (BOLT #8, see
//! [`crate::transport`]), admission of channels that peers open, and requests that wait for the
//! protocol to finish (open, pay, close).
//!
//! Every state change goes through [`Node`], and is stored before anything it produced is sent.
//! Locking: each channel has a lock (an async mutex, one of 4,096 picked by the channel's
//! address), held by whatever changes the channel from the change until its frames are queued on
//! the link, so each channel's messages leave in the order the core produced them and nothing
//! decides from a state not yet stored. The node's own lock is held only to apply a step in
//! memory and to finish it, never across a disk sync: the states are stored by the
//! [`GroupCommit`] writer thread, many channels' states in one transaction and one sync. A
//! request whose peer is not connected fails before it changes anything.
//!
//! One peer cannot exhaust the node ([`Limits`]): handshakes are capped in number, per IP
//! address and in time; inbound connections are capped per IP address (per /64 for IPv6); a peer
//! has one link (a newer one replaces the older); an inbound peer without a channel is dropped
//! after a grace period; each link's outgoing queue is bounded (the node stops reading from a
//! peer whose queue is full, and drops a peer that does not read within the write timeout); and
//! pings find dead links.

use std::{
    collections::HashMap,
    future::Future,
    net::IpAddr,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    task::{Context, Waker},
    time::Duration,
};

use alloy_primitives::{Address, B256, Bytes};
use alloy_signer_local::PrivateKeySigner;
use tokio::{
    io::AsyncWriteExt,
    net::{TcpListener, TcpStream, tcp::OwnedReadHalf, tcp::OwnedWriteHalf},
    sync::{Mutex, Notify, broadcast, mpsc, watch},
};
use vbank_core::{Amount, ChannelParams, Event, Funding, Phase, Settlement, Sig};

use crate::{
    Error, Frame, GroupCommit, Node, NodeUri, Result, Store, Terms,
    frame::{MAX_PONG, encode},
    noise::{Decryptor, Encryptor, Session, address_of},
    transport::{initiate, read_frame, respond, write_frame},
};

/// Decides whether to join a channel that an authenticated peer opens: given the channel id, the
/// peer and the parameters its opening proposal carries (`None` from a peer that sent none), the
/// channel's parameters (checked, e.g. with the factory's `channelAddress` on chain), or why not.
pub type Admission = Arc<
    dyn Fn(
            Address,
            Address,
            Option<ChannelParams>,
        ) -> Pin<Box<dyn Future<Output = Result<ChannelParams, String>> + Send>>
        + Send
        + Sync,
>;

/// Reads a channel's contract state from the chain (`None` when the chain cannot be read now):
/// asked when a payment meets a channel still recorded as not funded, so that a deposit mined
/// a moment ago does not wait for the watcher's next poll.
pub type FundingCheck = Arc<dyn Fn(Address) -> Pin<Box<dyn Future<Output = Option<Funding>> + Send>> + Send + Sync>;

/// What happened on a running node, for logs and waiting requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// A peer is linked (after the handshake).
    Connected(Address),
    /// A peer's link ended, or (with the zero address) a connection was refused before the
    /// peer was known.
    Disconnected {
        /// The peer.
        peer: Address,
        /// Why.
        reason: String,
    },
    /// A peer opened a channel that admission accepted; it is stored.
    Admitted {
        /// The channel.
        channel: Address,
        /// The peer.
        peer: Address,
    },
    /// A protocol event on a channel.
    Event {
        /// The channel.
        channel: Address,
        /// The event.
        event: Event,
    },
    /// The peer refused a frame this node sent (its state is unchanged).
    RefusedByPeer {
        /// The peer.
        peer: Address,
        /// The channel, if the frame named one.
        channel: Option<Address>,
        /// The peer's reason.
        reason: String,
    },
    /// Something an operator should know that belongs to no peer (a failed periodic duty).
    Warning(String),
    /// A routed lock was forwarded: `lock` on `incoming`, the same hash on `outgoing`.
    Forwarded {
        /// The channel the lock came in on.
        incoming: Address,
        /// The channel it went out on.
        outgoing: Address,
        /// The incoming lock.
        lock: vbank_core::HashLock,
    },
    /// This node refused a frame from the peer.
    Refused {
        /// The peer.
        peer: Address,
        /// The channel, if the frame named one.
        channel: Option<Address>,
        /// Why.
        reason: String,
    },
}

/// What a completed payment request did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paid {
    /// Payments acknowledged.
    pub count: u64,
    /// Their total, in wei.
    pub amount: Amount,
    /// The sheet that covers the last of them.
    pub nonce: u64,
}

/// Both signatures of a cooperative close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseSignatures {
    /// The final sheet's nonce.
    pub nonce: u64,
    /// The payouts of party 0 and party 1.
    pub balances: [Amount; 2],
    /// Party 0's and party 1's signatures.
    pub signatures: [Sig; 2],
}

/// What one peer may take of a node. The defaults suit a node on the internet; tests use small
/// values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// How long a connect, the handshake and the first frame may take.
    pub handshake_timeout: Duration,
    /// Inbound connections in the handshake at once, in all.
    pub max_handshakes: usize,
    /// … of which from one IP address (one /64 for IPv6).
    pub handshakes_per_ip: usize,
    /// Inbound connections (in the handshake or linked) from one IP address (one /64 for IPv6).
    pub connections_per_ip: usize,
    /// An inbound peer that has no channel with this node after this long is dropped.
    pub no_channel_grace: Duration,
    /// Bytes queued for a peer above which the node stops reading from it.
    pub max_queue_bytes: usize,
    /// A write that the peer does not take within this long ends the link.
    pub write_timeout: Duration,
    /// A ping is sent this often on every link.
    pub ping_interval: Duration,
    /// A link on which nothing arrived for this long is ended (the peer did not answer pings).
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            handshake_timeout: Duration::from_secs(10),
            max_handshakes: 256,
            handshakes_per_ip: 8,
            connections_per_ip: 32,
            no_channel_grace: Duration::from_secs(60),
            max_queue_bytes: 1 << 20,
            write_timeout: Duration::from_secs(30),
            ping_interval: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(90),
        }
    }
}

/// The key connections are counted under: the IPv4 address, or the /64 of an IPv6 address (one
/// host usually holds a whole /64). An IPv4-mapped IPv6 address counts as the IPv4 address.
pub(crate) fn ip_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

#[derive(Debug, Default)]
struct Counts {
    handshakes: HashMap<IpAddr, usize>,
    connections: HashMap<IpAddr, usize>,
}

/// A counted slot (a handshake or a connection), given back when dropped.
struct Slot {
    counts: Arc<std::sync::Mutex<Counts>>,
    key: IpAddr,
    handshake: bool,
}

impl Slot {
    fn take(counts: &Arc<std::sync::Mutex<Counts>>, key: IpAddr, handshake: bool, limits: &Limits) -> Option<Self> {
        let mut c = locked(counts);
        let (map, total_cap, per_ip) = if handshake {
            (&mut c.handshakes, limits.max_handshakes, limits.handshakes_per_ip)
        } else {
            (&mut c.connections, usize::MAX, limits.connections_per_ip)
        };
        let total: usize = map.values().sum();
        let mine = map.entry(key).or_default();
        if total >= total_cap || *mine >= per_ip {
            if *mine == 0 {
                map.remove(&key);
            }
            return None;
        }
        *mine += 1;
        Some(Self { counts: Arc::clone(counts), key, handshake })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = locked(&self.counts);
        let map = if self.handshake { &mut c.handshakes } else { &mut c.connections };
        if let Some(n) = map.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.key);
            }
        }
    }
}

/// The sending side of a link: frames are encoded here and counted until the writer sent them.
#[derive(Clone)]
struct Outbox {
    tx: mpsc::UnboundedSender<Vec<u8>>,
    queued: Arc<AtomicUsize>,
    room: Arc<Notify>,
    kill: Arc<watch::Sender<Option<String>>>,
}

impl Outbox {
    /// Queues a frame; false (and the link is ended) if it cannot be: the queue is over `cap`
    /// bytes or the frame does not encode. What was queued is stored: it is sent again on the
    /// next link.
    fn push(&self, f: &Frame, cap: usize) -> bool {
        let payload = match encode(f) {
            Ok(p) => p,
            Err(e) => {
                self.end(format!("a frame to send does not encode: {e}"));
                return false;
            }
        };
        let n = payload.len();
        if self.queued.load(Ordering::SeqCst).saturating_add(n) > cap {
            self.end(format!("over {cap} bytes queued for the peer: it does not read"));
            return false;
        }
        self.queued.fetch_add(n, Ordering::SeqCst);
        if self.tx.send(payload).is_err() {
            self.queued.fetch_sub(n, Ordering::SeqCst);
            return false;
        }
        true
    }

    /// Ends the link (the first reason given is the one reported).
    fn end(&self, reason: String) {
        self.kill.send_if_modified(|r| {
            if r.is_none() {
                *r = Some(reason);
                true
            } else {
                false
            }
        });
    }
}

struct Link {
    id: u64,
    out: Outbox,
}

struct Inner<S: Store> {
    node: Mutex<Node<S>>,
    /// The channels' locks, by [`stripe`] of the channel's address.
    stripes: Vec<Arc<Mutex<()>>>,
    /// Stores the states of the steps applied under `stripes`, in batches.
    writer: GroupCommit,
    signer: PrivateKeySigner,
    links: std::sync::Mutex<HashMap<Address, Link>>,
    next_link: AtomicU64,
    notices: broadcast::Sender<Notice>,
    admission: Option<Admission>,
    tasks: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// The node URI of each peer this node dialed: a dropped link to it is dialed again.
    dialed: std::sync::Mutex<HashMap<Address, NodeUri>>,
    closing: std::sync::atomic::AtomicBool,
    counts: Arc<std::sync::Mutex<Counts>>,
    limits: Limits,
    /// Where [`Service::listen`] listens.
    listening: std::sync::Mutex<Option<std::net::SocketAddr>>,
    funding_check: std::sync::Mutex<Option<FundingCheck>>,
    /// Admission's refusals, by channel: a refused channel is not checked on chain again.
    refused: std::sync::Mutex<HashMap<Address, String>>,
    /// What this node states in [`Frame::Terms`].
    terms: std::sync::Mutex<Terms>,
    /// The terms peers stated, by peer, and a wake-up for those waiting for them.
    peer_terms: std::sync::Mutex<HashMap<Address, Terms>>,
    terms_arrived: Notify,
    /// What this node knows of the network, and how it takes part (see [`router`]).
    net: std::sync::Mutex<router::Net>,
    /// Payments in progress here, by hash: a second request for one waits for the first.
    paying: std::sync::Mutex<std::collections::HashSet<B256>>,
    /// Held while a routed lock, a preimage or a returned lock is handled: one at a time.
    routing: Mutex<()>,
}

mod router;
pub(crate) use router::PaymentKey;
pub use router::{ForwardFees, PayOptions, Payment, PaymentStatus};

/// Channel locks: channels whose addresses fall on the same stripe share one (with random
/// contract addresses, 64 channels share about one pair of stripes in all).
const STRIPES: usize = 4096;

fn stripe(id: Address) -> usize {
    id.0.iter().fold(0usize, |h, b| h.wrapping_mul(131).wrapping_add(usize::from(*b))) % STRIPES
}

/// Channels a peer may have admitted here and still opening, at most.
const OPENING_PER_PEER: usize = 4;
/// Refusals remembered, at most (the oldest are dropped first… any, in fact: a refusal forgotten
/// only costs one more check).
const REFUSALS_KEPT: usize = 4096;
/// An admitted channel whose sheet 0 is not countersigned by then is forgotten.
const OPENING_TTL: Duration = Duration::from_secs(600);

/// Locks a plain mutex of the service. Its holders never panic with the data half-changed (they
/// insert, remove or count), so a poisoned lock is used as it is.
fn locked<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A node serving its channels: cheap to clone, all clones share one node.
pub struct Service<S: Store> {
    inner: Arc<Inner<S>>,
}

impl<S: Store> Clone for Service<S> {
    fn clone(&self) -> Self {
        Self { inner: Arc::clone(&self.inner) }
    }
}

impl<S: Store> std::fmt::Debug for Service<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service").field("address", &self.inner.signer.address()).finish_non_exhaustive()
    }
}

/// Whether a link was dialed by this node or accepted from a peer (only inbound peers get the
/// no-channel grace period).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Outbound,
    Inbound,
}

impl<S: Store + Send + 'static> Service<S> {
    /// Serves `node`, whose party key is `signer`, with the default [`Limits`]. Without
    /// admission, only the peers of stored channels may connect and unknown channels are refused.
    pub fn new(node: Node<S>, signer: PrivateKeySigner, admission: Option<Admission>) -> Self {
        Self::with_limits(node, signer, admission, Limits::default())
    }

    /// As [`Service::new`], with the given limits.
    pub fn with_limits(node: Node<S>, signer: PrivateKeySigner, admission: Option<Admission>, limits: Limits) -> Self {
        let (notices, _) = broadcast::channel(4096);
        let writer = GroupCommit::spawn(Arc::clone(node.store()));
        let svc = Self {
            inner: Arc::new(Inner {
                node: Mutex::new(node),
                stripes: (0..STRIPES).map(|_| Arc::new(Mutex::new(()))).collect(),
                writer,
                signer,
                links: std::sync::Mutex::new(HashMap::new()),
                next_link: AtomicU64::new(0),
                notices,
                admission,
                tasks: std::sync::Mutex::new(Vec::new()),
                dialed: std::sync::Mutex::new(HashMap::new()),
                closing: std::sync::atomic::AtomicBool::new(false),
                counts: Arc::new(std::sync::Mutex::new(Counts::default())),
                limits,
                listening: std::sync::Mutex::new(None),
                funding_check: std::sync::Mutex::new(None),
                refused: std::sync::Mutex::new(HashMap::new()),
                terms: std::sync::Mutex::new(Terms { version: Terms::VERSION, ..Terms::default() }),
                peer_terms: std::sync::Mutex::new(HashMap::new()),
                terms_arrived: Notify::new(),
                net: std::sync::Mutex::new(router::Net::default()),
                paying: std::sync::Mutex::new(std::collections::HashSet::new()),
                routing: Mutex::new(()),
            }),
        };
        // Payments with an id recorded in flight whose payments were never queued (a crash came
        // between the record and the queue) are forgotten before anything else can be queued.
        svc.forget_unqueued_id_payments();
        // Routed locks are handled from the start (in a runtime; a service made outside one
        // handles none until `start_routing`).
        if tokio::runtime::Handle::try_current().is_ok() {
            svc.start_routing();
        }
        svc
    }

    /// Starts handling routed locks (done by the constructors inside a runtime).
    pub fn start_routing(&self) {
        let svc = self.clone();
        self.spawn(svc.route_loop());
    }

    /// Reads channels' contract state with `check` when a payment meets a channel not yet
    /// recorded as funded (see [`FundingCheck`]).
    pub fn set_funding_check(&self, check: FundingCheck) {
        *locked(&self.inner.funding_check) = Some(check);
    }

    /// Channel `id`'s lock: held from a change of the channel until its frames are queued.
    async fn lock_channel(&self, id: Address) -> tokio::sync::OwnedMutexGuard<()> {
        Arc::clone(&self.inner.stripes[stripe(id)]).lock_owned().await
    }

    /// Runs `f` on the node with its saves deferred ([`Node::stage`]), stores the states it
    /// changed through the group commit without holding the node's lock, then hands out what
    /// `f` produced, or undoes its changes if they could not be stored ([`Node::finish`]).
    /// The caller holds the locks of the channels `f` changes, until it sent what `f` made.
    async fn commit<T>(&self, f: impl FnOnce(&mut Node<S>) -> Result<T>) -> Result<T> {
        let mut staged = self.inner.node.lock().await.stage(f)?;
        let journal = staged.take_journal();
        let saved = self.inner.writer.save_with(staged.take_states(), journal).await;
        let (out, dropped) = {
            let mut node = self.inner.node.lock().await;
            let out = node.finish(staged, saved);
            // Dropped lock moves of a step undone are not announced (they are queued again).
            let dropped = node.take_dropped();
            (out?, dropped)
        };
        for (channel, event) in dropped {
            self.notify(Notice::Event { channel, event });
        }
        Ok(out)
    }

    /// Appends `entry` about channel `id` to the event journal (`{"channel": id, "chain": entry}`,
    /// [`crate::RecordKind::Event`]) through the group commit, numbered after the events already
    /// journaled; returns once it is durable. For what an application learns outside the
    /// channel's steps (a liquidation seen on chain, a punishment made), to be delivered like the
    /// channel's own events until marked handled.
    pub async fn journal_chain_entry(&self, id: Address, entry: serde_json::Value) -> Result<()> {
        let bytes = serde_json::to_vec(&serde_json::json!({ "channel": id, "chain": entry }))
            .map_err(|e| Error::Store(e.to_string()))?;
        self.inner.writer.save_entries(Vec::new(), vec![bytes]).await
    }

    /// The group commit's counters: batches (disk syncs) and states stored through it.
    pub fn group_commits(&self) -> (u64, u64) {
        (self.inner.writer.batches(), self.inner.writer.states())
    }

    /// If channel `id` is recorded as not yet funded, asks the chain again (see
    /// [`Service::set_funding_check`]).
    async fn refresh_funding(&self, id: Address) -> Result<()> {
        let pending = self.inner.node.lock().await.channel(id).is_some_and(|c| c.funding() == Funding::Pending);
        let check = locked(&self.inner.funding_check).clone();
        if let (true, Some(check)) = (pending, check)
            && let Some(funding) = check(id).await
        {
            self.set_funding(id, funding).await?;
        }
        Ok(())
    }

    /// Sets what this node states to peers that ask ([`Frame::GetTerms`]): it should match its
    /// admission policy.
    pub fn set_terms(&self, terms: Terms) {
        *locked(&self.inner.terms) = terms;
    }

    /// Asks the linked `peer`'s node for its terms and waits at most `timeout` for them (an
    /// older node that does not know the question hangs up instead: a timeout or a dropped link).
    pub async fn peer_terms(&self, peer: Address, timeout: Duration) -> Result<Terms> {
        self.require_link(peer)?;
        locked(&self.inner.peer_terms).remove(&peer);
        let wait = async {
            loop {
                let arrived = self.inner.terms_arrived.notified();
                if let Some(t) = locked(&self.inner.peer_terms).get(&peer).cloned() {
                    return t;
                }
                arrived.await;
            }
        };
        tokio::pin!(wait);
        // Registered before the question is sent, so the answer cannot be missed.
        let _ = futures_poll_once(wait.as_mut());
        self.send(peer, [Frame::GetTerms {}]);
        tokio::time::timeout(timeout, wait).await.map_err(|_| {
            Error::Timeout(format!("the peer's node did not state its terms within {} s", timeout.as_secs()))
        })
    }

    /// The node, for reading channels or acting on them directly. A channel read here may be a
    /// step ahead of its stored state while that step is being stored (its frames are not sent
    /// before): decide nothing from it that the service's own requests would not. Changing a
    /// channel here while the service runs bypasses the channel's lock: add channels before
    /// serving, and change them with the service's requests.
    pub fn node(&self) -> &Mutex<Node<S>> {
        &self.inner.node
    }

    /// This party's address.
    pub fn address(&self) -> Address {
        self.inner.signer.address()
    }

    /// This node's URI when it listens at `at` (give the address peers reach, not 0.0.0.0).
    pub fn uri(&self, at: std::net::SocketAddr) -> NodeUri {
        NodeUri::of(&self.inner.signer, at)
    }

    /// This node's URI at the address [`Service::listen`] listens on, if it listens.
    pub fn own_uri(&self) -> Option<NodeUri> {
        locked(&self.inner.listening).map(|at| self.uri(at))
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// Every notice from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Notice> {
        self.inner.notices.subscribe()
    }

    /// The peers linked now.
    pub fn connected(&self) -> Vec<Address> {
        self.links().keys().copied().collect()
    }

    fn links(&self) -> std::sync::MutexGuard<'_, HashMap<Address, Link>> {
        locked(&self.inner.links)
    }

    fn notify(&self, n: Notice) {
        let _ = self.inner.notices.send(n);
    }

    /// The most a link's queue may hold before the link is ended: the reader stops at
    /// `max_queue_bytes`, so only this node's own requests can go past it.
    fn hard_cap(&self) -> usize {
        self.inner.limits.max_queue_bytes.saturating_mul(4).max(4 * crate::MAX_FRAME)
    }

    /// Queues frames to `peer`'s link; false if it is not linked (the frames' states are stored
    /// and are sent again when it links).
    fn send(&self, peer: Address, frames: impl IntoIterator<Item = Frame>) -> bool {
        let cap = self.hard_cap();
        let links = self.links();
        let Some(link) = links.get(&peer) else { return false };
        frames.into_iter().all(|f| link.out.push(&f, cap))
    }

    pub(crate) fn spawn(&self, f: impl Future<Output = ()> + Send + 'static) {
        // Checked under the tasks' lock, which shutdown takes to set `closing`: a task is either
        // seen (and stopped) by shutdown or never started, so none outlives it holding the store.
        let mut tasks = locked(&self.inner.tasks);
        if self.inner.closing.load(Ordering::SeqCst) {
            return;
        }
        tasks.retain(|t| !t.is_finished());
        tasks.push(tokio::spawn(f));
    }

    /// The chain shows channel `id` liquidated with sheet `nonce`: the payments of this party's
    /// signed proposal still unanswered (if any) are reported made or never made, from the
    /// stored state, under the channel's lock (see [`Node::liquidated_on_chain`]).
    pub async fn liquidated_on_chain(&self, id: Address, nonce: u64) -> Result<()> {
        let lock = self.lock_channel(id).await;
        let events = self.commit(|node| node.liquidated_on_chain(id, nonce)).await?;
        drop(lock);
        for event in events {
            self.notify(Notice::Event { channel: id, event });
        }
        Ok(())
    }

    /// Waits until the frames queued for `peer` were written to its link (at most `timeout`), so
    /// that what a short-lived caller sends last (a payer's revocation, which follows its
    /// acknowledgement in a three-message update) reaches the peer before the process exits.
    /// False if some are still queued; without a link there is nothing to wait for (what was not
    /// written is sent again on the next link).
    pub async fn flush(&self, peer: Address, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        for spin in 0u32.. {
            let queued = self.links().get(&peer).map_or(0, |l| l.out.queued.load(Ordering::SeqCst));
            if queued == 0 {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            // The writer usually needs microseconds (a loopback or LAN write): yield first, and
            // sleep (a timer tick, a millisecond) only for a slow link.
            if spin < 100 {
                tokio::task::yield_now().await;
            } else {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        false
    }

    /// Stops listening and drops every link (the peers see a hang-up) once what was queued for
    /// them was written (at most a second each), and waits until the tasks are gone. The store is
    /// released when the last clone of this service is dropped.
    pub async fn shutdown(&self) {
        let peers: Vec<Address> = self.links().keys().copied().collect();
        for peer in peers {
            self.flush(peer, Duration::from_secs(1)).await;
        }
        let tasks: Vec<_> = {
            let mut tasks = locked(&self.inner.tasks);
            self.inner.closing.store(true, Ordering::SeqCst);
            tasks.drain(..).collect()
        };
        for t in &tasks {
            t.abort();
        }
        for t in tasks {
            let _ = t.await;
        }
        self.links().clear();
    }

    /// Accepts peers on `listener` until [`Service::shutdown`].
    pub fn listen(&self, listener: TcpListener) {
        *locked(&self.inner.listening) = listener.local_addr().ok();
        let this = self.clone();
        self.spawn(async move {
            loop {
                let (stream, from) = match listener.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        // Out of descriptors, say: report it and let the system recover.
                        this.notify(Notice::Disconnected {
                            peer: Address::ZERO,
                            reason: format!("accept failed: {e}"),
                        });
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                // Connections per IP (per /64) and handshakes in progress are capped; the rest
                // are closed at once, so a flood cannot exhaust the node nor lock the others out.
                let key = ip_key(from.ip());
                let limits = &this.inner.limits;
                let Some(conn) = Slot::take(&this.inner.counts, key, false, limits) else {
                    this.refused(format!("{from}: over {} connections from {key}", limits.connections_per_ip));
                    continue;
                };
                let Some(hs) = Slot::take(&this.inner.counts, key, true, limits) else {
                    this.refused(format!("{from}: too many handshakes in progress"));
                    continue;
                };
                let that = this.clone();
                this.spawn(async move {
                    let this = that;
                    let mut stream = stream;
                    let proven =
                        tokio::time::timeout(this.inner.limits.handshake_timeout, this.accept_handshake(&mut stream))
                            .await
                            .unwrap_or_else(|_| Err(Error::Auth("the handshake timed out".into())));
                    drop(hs);
                    match proven {
                        Ok((peer, session)) => match this.register(peer).await {
                            Ok((id, rx, out, kill)) => {
                                this.run_link(stream, session, peer, id, rx, out, kill, Direction::Inbound).await
                            }
                            Err(e) => this.notify(Notice::Disconnected { peer, reason: e.to_string() }),
                        },
                        Err(e) => this.refused(format!("{from}: {e}")),
                    }
                    drop(conn);
                });
            }
        })
    }

    fn refused(&self, reason: String) {
        self.notify(Notice::Disconnected { peer: Address::ZERO, reason });
    }

    /// The responder's side: the BOLT #8 handshake, then the check that the proven peer may talk
    /// to this node (a peer of a stored channel, or anyone if channels may be admitted), then
    /// `Init`. A refused peer is hung up on without a frame.
    async fn accept_handshake(&self, stream: &mut TcpStream) -> Result<(Address, Session)> {
        let _ = stream.set_nodelay(true);
        let (key, mut session) = respond(stream, &self.inner.signer).await?;
        let peer = address_of(&key);
        let known = self.inner.node.lock().await.peers();
        if self.inner.admission.is_none() && !known.contains(&peer) {
            return Err(Error::Auth(format!("{peer} is not a peer of any channel here")));
        }
        write_frame(stream, &mut session.sender, &Frame::Init {}).await?;
        Ok((peer, session))
    }

    /// Connects to the node at `uri` and links it once it proved to hold the URI's key (so it is
    /// the party `uri.address()`). The link runs in a task until either side hangs up; then it
    /// is dialed again (after 0.5 s, doubling up to 30 s) until a link to the peer is back,
    /// whichever side makes it. The URI is remembered in the store, for [`Service::relink`]
    /// after a restart.
    pub async fn connect(&self, uri: &NodeUri) -> Result<()> {
        let peer = uri.address();
        self.dial(uri).await?;
        locked(&self.inner.dialed).insert(peer, uri.clone());
        self.inner.node.lock().await.remember_peer(peer, &uri.to_string())?;
        Ok(())
    }

    /// The remembered URIs of the peers, by party address. An entry stored before node URIs
    /// (a plain host:port) or naming another key is reported and skipped: its peer must be
    /// linked once with its URI.
    async fn remembered(&self) -> Result<HashMap<Address, NodeUri>> {
        let known = self.inner.node.lock().await.peer_addresses()?;
        let mut out = HashMap::new();
        for (peer, stored) in known {
            match stored.parse::<NodeUri>() {
                Ok(uri) if uri.address() == peer => {
                    out.insert(peer, uri);
                }
                Ok(uri) => self.notify(Notice::Disconnected {
                    peer,
                    reason: format!("the stored node URI {uri} is not {peer}'s: link with its URI"),
                }),
                Err(_) => self.notify(Notice::Disconnected {
                    peer,
                    reason: format!(
                        "the stored address {stored} of {peer} is from before node URIs: link once with \
                         --connect vbank://<its key>@{stored} (`vbank node` prints its URI)"
                    ),
                }),
            }
        }
        Ok(out)
    }

    /// Links (in the background, retrying like a dropped link) to every peer of a stored channel
    /// whose node URI is remembered: what a restarted node does first.
    pub async fn relink(&self) -> Result<()> {
        let peers = self.inner.node.lock().await.peers();
        for (peer, uri) in self.remembered().await? {
            if peers.contains(&peer) && !self.links().contains_key(&peer) {
                locked(&self.inner.dialed).insert(peer, uri);
                self.redial(peer);
            }
        }
        Ok(())
    }

    /// Links to `peer` at its remembered URI if it is not linked; true if it is linked.
    pub async fn ensure_link(&self, peer: Address) -> Result<bool> {
        if self.links().contains_key(&peer) {
            return Ok(true);
        }
        match self.remembered().await?.remove(&peer) {
            Some(uri) => self.connect(&uri).await.map(|()| true),
            None => Ok(false),
        }
    }

    /// Dials a dropped link again, in the background.
    fn redial(&self, peer: Address) {
        let Some(uri) = locked(&self.inner.dialed).get(&peer).cloned() else {
            return;
        };
        let this = self.clone();
        self.spawn(async move {
            let mut wait = Duration::from_millis(500);
            loop {
                tokio::time::sleep(wait).await;
                if this.inner.closing.load(Ordering::SeqCst) || this.links().contains_key(&peer) {
                    return;
                }
                match this.dial(&uri).await {
                    Ok(()) => return,
                    Err(e) => this.notify(Notice::Disconnected { peer, reason: format!("redialing {uri}: {e}") }),
                }
                wait = (wait * 2).min(Duration::from_secs(30));
            }
        });
    }

    async fn dial(&self, uri: &NodeUri) -> Result<()> {
        let addr = uri.socket_addr();
        let limit = self.inner.limits.handshake_timeout;
        let secs = limit.as_secs_f64();
        let mut stream = tokio::time::timeout(limit, TcpStream::connect(&addr))
            .await
            .map_err(|_| Error::Unreachable { addr: addr.clone(), reason: format!("no answer within {secs} s") })?
            .map_err(|e| Error::Unreachable { addr: addr.clone(), reason: e.to_string() })?;
        let _ = stream.set_nodelay(true);
        let handshake = async {
            let mut session = initiate(&mut stream, &self.inner.signer, uri.key()).await.map_err(|e| match e {
                // The responder hangs up on an act one that is not for its key.
                Error::Closed | Error::Io(_) => Error::Auth(format!(
                    "the node at {addr} hung up during the handshake ({e}): it does not hold the key of {uri}, \
                     or it is over its connection limits"
                )),
                other => other,
            })?;
            write_frame(&mut stream, &mut session.sender, &Frame::Init {}).await?;
            match read_frame(&mut stream, &mut session.receiver).await {
                Ok(Frame::Init {}) => Ok(session),
                Ok(other) => Err(Error::Auth(format!("the node at {addr} sent {other:?} before init"))),
                // It proved its key, then hung up: it does not take this party.
                Err(e @ (Error::Closed | Error::Io(_))) => Err(Error::Auth(format!(
                    "the node at {addr} hung up after the handshake ({e}): it has no channel with this party and \
                     does not accept new ones (`vbank node --accept-channels`)"
                ))),
                Err(e) => Err(e),
            }
        };
        let session = tokio::time::timeout(limit, handshake)
            .await
            .map_err(|_| Error::Auth(format!("the handshake with {addr} timed out after {secs} s")))??;
        let peer = uri.address();
        // Register before returning so that a request right after `connect` finds the link.
        let (id, rx, out, kill) = self.register(peer).await?;
        let this = self.clone();
        self.spawn(async move { this.run_link(stream, session, peer, id, rx, out, kill, Direction::Outbound).await });
        Ok(())
    }

    /// Makes a new link to `peer` the one frames go to, with the catch-up (every retransmission
    /// and queued proposal) queued first: under the node's lock, so that no request can queue a
    /// newer frame ahead of it. An older link to the peer is ended: a peer has one link.
    #[allow(clippy::type_complexity)]
    async fn register(
        &self,
        peer: Address,
    ) -> Result<(u64, mpsc::UnboundedReceiver<Vec<u8>>, Outbox, watch::Receiver<Option<String>>)> {
        let (tx, rx) = mpsc::unbounded_channel();
        let (kill, kill_rx) = watch::channel(None);
        let out = Outbox { tx, queued: Arc::default(), room: Arc::default(), kill: Arc::new(kill) };
        let id = self.inner.next_link.fetch_add(1, Ordering::Relaxed);
        // The peer's channels are locked (in stripe order) until their catch-up is queued.
        let mut stripes: Vec<usize> = {
            let node = self.inner.node.lock().await;
            let ids = node.channel_ids();
            ids.into_iter()
                .filter(|c| node.channel(*c).is_some_and(|ch| ch.peer_address() == peer))
                .map(stripe)
                .collect()
        };
        stripes.sort_unstable();
        stripes.dedup();
        let mut locks = Vec::with_capacity(stripes.len());
        for i in stripes {
            locks.push(Arc::clone(&self.inner.stripes[i]).lock_owned().await);
        }
        let frames = self
            .commit(|node| {
                let mut frames = node.on_connect(peer)?;
                for ch in node.channel_ids() {
                    if node.channel(ch).is_some_and(|c| c.peer_address() == peer) {
                        frames.extend(node.propose(ch)?);
                    }
                }
                Ok(frames)
            })
            .await?;
        let cap = self.hard_cap();
        for f in frames.into_iter().chain(self.announcements()) {
            out.push(&f, cap);
        }
        if let Some(old) = self.links().insert(peer, Link { id, out: out.clone() }) {
            old.out.end("replaced by a newer link from the same peer".into());
        }
        drop(locks);
        Ok((id, rx, out, kill_rx))
    }

    #[allow(clippy::too_many_arguments)]
    async fn run_link(
        &self,
        stream: TcpStream,
        session: Session,
        peer: Address,
        id: u64,
        rx: mpsc::UnboundedReceiver<Vec<u8>>,
        out: Outbox,
        mut kill: watch::Receiver<Option<String>>,
        direction: Direction,
    ) {
        let limits = self.inner.limits.clone();
        let (mut rd, wr) = stream.into_split();
        let Session { sender, receiver } = session;
        let writer = write_loop(wr, sender, rx, Arc::clone(&out.queued), Arc::clone(&out.room), limits.write_timeout);
        tokio::pin!(writer);
        let pinger = {
            let out = out.clone();
            let cap = self.hard_cap();
            async move {
                loop {
                    tokio::time::sleep(limits.ping_interval).await;
                    out.push(&Frame::Ping { pong_len: 0, padding: Bytes::new() }, cap);
                }
            }
        };
        let grace = async {
            if direction == Direction::Outbound {
                return std::future::pending().await;
            }
            tokio::time::sleep(limits.no_channel_grace).await;
            if self.inner.node.lock().await.peers().contains(&peer) {
                return std::future::pending().await;
            }
            format!("no channel with this node after {} s", limits.no_channel_grace.as_secs_f64())
        };
        self.notify(Notice::Connected(peer));
        let mut writer_done = false;
        let reason = tokio::select! {
            r = self.read_loop(&mut rd, receiver, peer, &out) => match r {
                Ok(()) => "hung up".to_string(),
                Err(e) => e.to_string(),
            },
            r = &mut writer => {
                writer_done = true;
                r
            }
            () = pinger => unreachable!("the pinger never ends"),
            r = grace => r,
            r = kill.wait_for(Option::is_some) => match r {
                Ok(reason) => reason.clone().unwrap_or_default(),
                Err(_) => "ended".into(),
            },
        };
        let current = {
            let mut links = self.links();
            let current = links.get(&peer).is_some_and(|l| l.id == id);
            if current {
                links.remove(&peer);
            }
            current
        };
        // Let the writer send what is queued (a refusal, say) for a moment, then stop.
        drop(out);
        if !writer_done {
            let _ = tokio::time::timeout(Duration::from_secs(1), &mut writer).await;
        }
        self.notify(Notice::Disconnected { peer, reason });
        if current && !self.inner.closing.load(Ordering::SeqCst) {
            self.redial(peer);
        }
    }

    async fn read_loop(&self, rd: &mut OwnedReadHalf, mut rx: Decryptor, peer: Address, out: &Outbox) -> Result<()> {
        let limits = &self.inner.limits;
        let cap = self.hard_cap();
        loop {
            // Back-pressure: a peer whose queue is full is not read from until the writer
            // catches up (or the write timeout ends the link).
            while out.queued.load(Ordering::SeqCst) >= limits.max_queue_bytes {
                out.room.notified().await;
            }
            let frame = match tokio::time::timeout(limits.idle_timeout, read_frame(rd, &mut rx)).await {
                Err(_) => {
                    return Err(Error::Timeout(format!(
                        "nothing from the peer for {} s, pings unanswered",
                        limits.idle_timeout.as_secs_f64()
                    )));
                }
                Ok(Ok(f)) => f,
                Ok(Err(Error::Closed)) => return Ok(()),
                // Authentic but not a frame: say so, then hang up. A message that fails
                // authentication (Error::Transport) ends the link without a word.
                Ok(Err(e @ (Error::Malformed(_) | Error::Oversize(_)))) => {
                    out.push(&Frame::Refused { channel: None, reason: e.to_string(), about: None }, cap);
                    return Err(e);
                }
                Ok(Err(e)) => return Err(e),
            };
            let channel = match &frame {
                Frame::Init {} | Frame::Pong { .. } => continue,
                Frame::GetTerms {} => {
                    let terms = locked(&self.inner.terms).clone();
                    out.push(&Frame::Terms { terms }, cap);
                    continue;
                }
                Frame::Terms { terms } => {
                    locked(&self.inner.peer_terms).insert(peer, terms.clone());
                    self.inner.terms_arrived.notify_waiters();
                    continue;
                }
                Frame::Announce { announcement } => {
                    self.on_announcement(peer, announcement.clone()).await;
                    continue;
                }
                Frame::Ping { pong_len, .. } => {
                    if *pong_len <= MAX_PONG {
                        out.push(&Frame::Pong { padding: Bytes::from(vec![0; usize::from(*pong_len)]) }, cap);
                    }
                    continue;
                }
                Frame::Refused { channel, reason, about } => {
                    // A refused proposal is abandoned: its payments and lock moves failed for good
                    // (rule 11), and those waiting on them hear it.
                    let mut cancelled = Vec::new();
                    // Only the refusal of the proposal in flight itself (named by its digest):
                    // a refused duplicate of an older message must not abandon a newer proposal.
                    if let (Some(id), Some(about)) = (*channel, *about) {
                        let _lock = self.lock_channel(id).await;
                        cancelled = self
                            .commit(|node| {
                                if node.channel(id).is_some_and(|c| c.peer_address() == peer) {
                                    node.withdraw_proposal(id, about)
                                } else {
                                    Ok(Vec::new())
                                }
                            })
                            .await?;
                    }
                    // A signed proposal is never withdrawn; its refusal may pass (the peer's view of
                    // the chain catching up): it is offered again a second later, as long as it
                    // is the one in flight (a duplicate is answered identically).
                    if let (Some(id), Some(about)) = (*channel, *about) {
                        let signed = move |node: &Node<S>| node.channel(id).and_then(|c| c.signed_proposal());
                        let again = signed(&*self.inner.node.lock().await).filter(|m| m.digest() == about);
                        if let Some(proposal) = again {
                            let this = self.clone();
                            self.spawn(async move {
                                tokio::time::sleep(Duration::from_secs(1)).await;
                                let _lock = this.lock_channel(id).await;
                                if signed(&*this.inner.node.lock().await).as_ref() == Some(&proposal) {
                                    this.send(peer, [Frame::channel(id, proposal)]);
                                }
                            });
                        }
                    }
                    self.notify(Notice::RefusedByPeer { peer, channel: *channel, reason: reason.clone() });
                    if let Some(id) = *channel {
                        for event in cancelled {
                            self.notify(Notice::Event { channel: id, event });
                        }
                    }
                    continue;
                }
                // Only an opening proposal can start a channel here; a refused one was answered.
                Frame::Channel { channel, message: vbank_core::Message::Propose { nonce: 0, .. }, params, .. } => {
                    if !self.admit(peer, *channel, params.as_deref()).await? {
                        continue;
                    }
                    *channel
                }
                // A payment on a channel not yet seen funded: look at the chain once more.
                Frame::Channel { channel, message: vbank_core::Message::Propose { .. }, .. } => {
                    self.refresh_funding(*channel).await?;
                    *channel
                }
                // … also when the proposal follows a revocation in the same frame.
                Frame::Channel { channel, more, .. }
                    if more.iter().any(|m| matches!(m, vbank_core::Message::Propose { .. })) =>
                {
                    self.refresh_funding(*channel).await?;
                    *channel
                }
                Frame::Channel { channel, .. } => *channel,
            };
            // The channel's lock is taken here, in frame order, and the frame is handled in a task
            // of its own: while its state waits for the disk, the next frames (other channels')
            // are read and their states join the same batch.
            let lock = self.lock_channel(channel).await;
            let this = self.clone();
            let out = out.clone();
            self.spawn(async move {
                let handled = this
                    .commit(|node| {
                        let (mut replies, events) = node.respond(peer, &frame)?;
                        // A lock to this party whose preimage it knows (its own invoice, say) is
                        // claimed at once: received irrevocably, the claim cannot be undone
                        // (DESIGN §2 rule 7).
                        for e in &events {
                            if let Event::Lock { lock, change: vbank_core::LockChange::Received, .. } = e
                                && let Some(preimage) = node.channel(channel).and_then(|c| c.preimage(&lock.hash))
                                && let Ok((_, frame)) = node.fulfil(channel, preimage)
                            {
                                replies.extend(frame);
                            }
                        }
                        Ok((replies, events))
                    })
                    .await;
                match handled {
                    Ok((replies, events)) => {
                        for f in &replies {
                            if let Frame::Refused { channel, reason, .. } = f {
                                this.notify(Notice::Refused { peer, channel: *channel, reason: reason.clone() });
                            }
                        }
                        this.send(peer, crate::coalesce(replies));
                        drop(lock);
                        this.inner.node.lock().await.warm(channel);
                        for event in events {
                            this.notify(Notice::Event { channel, event });
                        }
                    }
                    // Only a store failure: nothing was sent, the channel is as stored.
                    Err(e) => out.end(format!("storing channel {channel} failed: {e}")),
                }
            });
        }
    }

    /// Adds a channel unknown here that `peer` opens, if admission accepts it; false if it was
    /// refused (the peer is told why). Without admission an unknown channel is left to
    /// [`Node::respond`], which answers "unknown channel".
    async fn admit(&self, peer: Address, channel: Address, params: Option<&ChannelParams>) -> Result<bool> {
        let Some(admission) = &self.inner.admission else { return Ok(true) };
        let pending = {
            let node = self.inner.node.lock().await;
            if node.channel(channel).is_some() {
                return Ok(true);
            }
            let opening =
                |id| node.channel(id).is_some_and(|c| c.peer_address() == peer && *c.phase() == Phase::Opening);
            node.channel_ids().into_iter().filter(|id| opening(*id)).count()
        };
        // Cheap refusals first: a verdict already given, too many openings from this peer.
        let known = locked(&self.inner.refused).get(&channel).cloned();
        let refused = if let Some(reason) = known {
            reason
        } else if pending >= OPENING_PER_PEER {
            format!("{pending} channels of this peer are already opening here")
        } else {
            let verdict = match admission(channel, peer, params.cloned()).await {
                Ok(p) if p.contract == channel && p.parties == [peer, self.address()] => Ok(p),
                Ok(_) => Err(format!("its parties are not [{peer}, {}]", self.address())),
                Err(reason) => Err(reason),
            };
            match verdict {
                Ok(p) => {
                    let lock = self.lock_channel(channel).await;
                    let added = self
                        .commit(|node| {
                            if node.channel(channel).is_some() {
                                return Ok(false);
                            }
                            let seed: B256 = PrivateKeySigner::random().to_bytes();
                            node.add_channel(p, seed).map(|_| true)
                        })
                        .await?;
                    drop(lock);
                    if added {
                        self.forget_unopened(channel);
                        self.notify(Notice::Admitted { channel, peer });
                    }
                    return Ok(true);
                }
                Err(reason) => {
                    let mut refused = locked(&self.inner.refused);
                    if refused.len() >= REFUSALS_KEPT {
                        refused.clear();
                    }
                    refused.insert(channel, reason.clone());
                    reason
                }
            }
        };
        let reason = format!("channel {channel} not admitted: {refused}");
        self.notify(Notice::Refused { peer, channel: Some(channel), reason: reason.clone() });
        self.send(peer, [Frame::Refused { channel: Some(channel), reason, about: None }]);
        Ok(false)
    }

    /// Forgets an admitted channel whose opening does not complete within [`OPENING_TTL`]
    /// (nothing countersigned by the peer exists then, so nothing can be lost).
    fn forget_unopened(&self, channel: Address) {
        let this = self.clone();
        self.spawn(async move {
            tokio::time::sleep(OPENING_TTL).await;
            let _lock = this.lock_channel(channel).await;
            let mut node = this.inner.node.lock().await;
            if node.channel(channel).is_some_and(|c| *c.phase() == Phase::Opening) && node.forget(channel).is_ok() {
                drop(node);
                this.notify(Notice::Refused {
                    peer: Address::ZERO,
                    channel: Some(channel),
                    reason: format!("channel {channel} forgotten: its opening did not complete within 10 minutes"),
                });
            }
        });
    }

    /// Waits until `check` (run on the node now and after every notice) gives an answer, for
    /// at most `timeout`.
    /// Notices about other channels are skipped; the check runs under channel `id`'s lock, so it
    /// never sees a step of the channel that is not stored yet.
    async fn wait_for<T>(
        &self,
        rx: &mut broadcast::Receiver<Notice>,
        id: Address,
        timeout: Duration,
        what: &str,
        mut check: impl FnMut(&Node<S>, Option<&Notice>) -> Option<Result<T>>,
    ) -> Result<T> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut notice = None;
        loop {
            let other = match &notice {
                Some(Notice::Event { channel, .. }) => *channel != id,
                Some(Notice::RefusedByPeer { channel: Some(c), .. } | Notice::Refused { channel: Some(c), .. }) => {
                    *c != id
                }
                Some(Notice::Admitted { channel, .. }) => *channel != id,
                _ => false,
            };
            if !other {
                let _lock = self.lock_channel(id).await;
                if let Some(r) = check(&*self.inner.node.lock().await, notice.as_ref()) {
                    return r;
                }
            }
            notice = match tokio::time::timeout_at(deadline, rx.recv()).await {
                Err(_) => return Err(Error::Timeout(format!("{what} after {} s", timeout.as_secs()))),
                Ok(Ok(n)) => Some(n),
                // Missed notices: the state is checked again anyway.
                Ok(Err(broadcast::error::RecvError::Lagged(_))) => None,
                Ok(Err(broadcast::error::RecvError::Closed)) => return Err(Error::Closed),
            };
        }
    }

    fn require_link(&self, peer: Address) -> Result<()> {
        if self.links().contains_key(&peer) { Ok(()) } else { Err(Error::NotConnected(peer)) }
    }

    /// Party 0 opens a new channel with its linked peer: stores it, sends sheet 0, and waits
    /// until both hold sheet 0 countersigned (the deposits may then be paid).
    pub async fn open(&self, params: ChannelParams, waiver_seed: B256, timeout: Duration) -> Result<()> {
        let id = params.contract;
        let peer = params.parties[1];
        if params.parties[0] != self.address() {
            return Err(Error::Protocol(vbank_core::Error::InvalidParams("party 0 opens the channel")));
        }
        self.require_link(peer)?;
        let mut rx = self.subscribe();
        {
            let _lock = self.lock_channel(id).await;
            let first = self
                .commit(
                    |node| if node.channel(id).is_none() { node.add_channel(params, waiver_seed) } else { Ok(None) },
                )
                .await?;
            self.send(peer, first);
        }
        let result = self
            .wait_for(&mut rx, id, timeout, "the peer did not countersign sheet 0", |node, n| {
                let ch = node.channel(id)?;
                if *ch.phase() != Phase::Opening {
                    return Some(Ok(()));
                }
                refusal(node, n, id).map(Err)
            })
            .await;
        if let Err(Error::RefusedByPeer(_)) = &result {
            // The peer will not open it: forget it, so that it is not offered again.
            let _lock = self.lock_channel(id).await;
            self.inner.node.lock().await.forget(id)?;
        }
        result
    }

    /// Queues `count` payments of `amount` on channel `id` (in one [`Node::stage`]): the first and
    /// last payment ids, the peer, and the proposal to send once stored.
    #[allow(clippy::type_complexity)]
    fn queue_payments(
        &self,
        node: &mut Node<S>,
        id: Address,
        amount: Amount,
        count: u64,
        stop: &mut dyn FnMut() -> bool,
    ) -> Result<(((u64, u64), Address, Vec<Frame>), bool)> {
        let ch = node.channel(id).ok_or(Error::UnknownChannel(id))?;
        let peer = ch.peer_address();
        self.require_link(peer)?;
        let total = amount.checked_mul(Amount::from(count)).filter(|t| *t > 0);
        let available = ch.spendable();
        match total {
            Some(t) if t <= available => {}
            _ => {
                return Err(Error::Protocol(vbank_core::Error::InsufficientBalance {
                    available,
                    requested: total.unwrap_or(Amount::MAX),
                }));
            }
        }
        let mut ids = (0, 0);
        let mut out = Vec::new();
        let mut stopped = false;
        for i in 0..count {
            // Queuing many payments takes a while: an interrupt stops it.
            if i % 256 == 255 && stop() {
                stopped = true;
                break;
            }
            let (pid, frame) = node.pay(id, amount)?;
            if i == 0 {
                ids.0 = pid;
            }
            ids.1 = pid;
            out.extend(frame);
        }
        Ok(((ids, peer, out), stopped))
    }

    /// Pays `count` payments of `amount` each over channel `id` and waits until all are
    /// acknowledged. Nothing is queued if the peer is not linked or the balance does not cover
    /// them all.
    pub async fn pay(&self, id: Address, amount: Amount, count: u64, timeout: Duration) -> Result<Paid> {
        self.pay_until(id, amount, count, timeout, std::future::pending()).await
    }

    /// As [`Service::pay`], ending early with [`Error::Interrupted`] when `stop` completes (the
    /// client hung up, its user pressed Ctrl-C): like a timeout, the payments still queued are
    /// cancelled and the error says how many were acknowledged, cancelled and in flight.
    pub async fn pay_until(
        &self,
        id: Address,
        amount: Amount,
        count: u64,
        timeout: Duration,
        stop: impl Future<Output = ()>,
    ) -> Result<Paid> {
        self.pay_inner(id, amount, count, timeout, stop, None).await
    }

    /// [`Service::pay_until`]; with `record`, the record of a payment with a client-chosen id is
    /// stored under the channel's lock just before its payments are queued (its first id known).
    pub(crate) async fn pay_inner(
        &self,
        id: Address,
        amount: Amount,
        count: u64,
        timeout: Duration,
        stop: impl Future<Output = ()>,
        record: Option<&PaymentKey>,
    ) -> Result<Paid> {
        self.refresh_funding(id).await?;
        let mut stop = std::pin::pin!(stop);
        let stopped;
        let asked = count;
        let mut rx = self.subscribe();
        let (first, last) = {
            let _lock = self.lock_channel(id).await;
            if let Some(key) = record {
                let first =
                    self.inner.node.lock().await.channel(id).ok_or(Error::UnknownChannel(id))?.next_payment_id();
                self.record_in_flight(key, id, amount, count, first).await?;
            }
            let mut poll_stop = || stop.as_mut().poll(&mut Context::from_waker(Waker::noop())).is_ready();
            let queued = self.commit(|node| self.queue_payments(node, id, amount, count, &mut poll_stop)).await;
            let ((ids, peer, out), was_stopped) = match queued {
                Ok(q) => q,
                Err(e) => {
                    // Nothing was queued: the id's record goes (a retry may pay).
                    if let Some(key) = record {
                        self.forget_id_payment(key).await?;
                    }
                    return Err(e);
                }
            };
            stopped = was_stopped;
            if let Some(key) = record
                && was_stopped
            {
                // Cut short: the record holds what was queued (ids after it go to other payments).
                self.record_queued(key, ids.1 - ids.0 + 1).await?;
            }
            self.send(peer, out);
            ids
        };
        // Acknowledgements come in payment order: once one covers `last`, all of these are.
        let count = last - first + 1;
        let all = |nonce| Ok(Paid { count, amount: amount * Amount::from(count), nonce });
        let acked = async {
            if stopped {
                Err(Error::Interrupted)
            } else {
                self.wait_for(&mut rx, id, timeout, "the payments are queued but not acknowledged", |node, n| match n {
                    Some(Notice::Event { channel, event: Event::PaymentsAcked { first: f, count: c, nonce, .. } })
                        if *channel == id =>
                    {
                        (f + c > last).then(|| all(*nonce))
                    }
                    Some(Notice::Event { channel, event: Event::PaymentsCancelled { ids } })
                        if *channel == id && ids.iter().any(|p| (first..=last).contains(p)) =>
                    {
                        Some(Err(Error::Cancelled(id)))
                    }
                    // Frozen (closing, a protocol violation, ended on chain): no acknowledgement
                    // will come; what is in flight is reported below.
                    Some(Notice::Event { channel, event: Event::Frozen { reason, .. } }) if *channel == id => {
                        Some(Err(Error::Protocol(vbank_core::Error::Frozen(reason.clone()))))
                    }
                    // Notices were missed (or the outcome came before the wait): the channel's
                    // state says whether they were acknowledged or cancelled.
                    None => {
                        let ch = node.channel(id)?;
                        match ch.payments_outcome(first, last - first + 1) {
                            vbank_core::PaymentsOutcome::Acked if *ch.phase() == Phase::Open => Some(all(ch.nonce())),
                            vbank_core::PaymentsOutcome::Acked | vbank_core::PaymentsOutcome::Cancelled => {
                                Some(Err(Error::Cancelled(id)))
                            }
                            vbank_core::PaymentsOutcome::Pending | vbank_core::PaymentsOutcome::Unknown => None,
                        }
                    }
                    other => refusal(node, other, id).map(Err),
                })
                .await
            }
        };
        let outcome = if stopped {
            acked.await
        } else {
            tokio::select! {
                r = acked => r,
                () = stop => Err(Error::Interrupted),
            }
        };
        let Err(error) = outcome else {
            // The payer's revocation follows the acknowledgement: out before the caller goes on
            // (and perhaps exits), so the payee counts the payment received now.
            if let Some(peer) = self.inner.node.lock().await.channel(id).map(|c| c.peer_address()) {
                self.flush(peer, Duration::from_secs(1)).await;
            }
            return outcome;
        };
        // DESIGN §2 rule 11: what failed stays failed. Payments still queued are cancelled now
        // (they never go out behind the payer's back); those already proposed may complete.
        let lock = self.lock_channel(id).await;
        let cancelled = self.commit(|node| node.cancel_queued(id, first, last, amount)).await?;
        let node = self.inner.node.lock().await;
        let Some(ch) = node.channel(id) else { return Err(error) };
        // (Counted id by id: a freeze may have cancelled later ones while earlier ones stay in flight.)
        let (settled, cancelled_all, in_flight) = ch.payments_tally(first, count);
        drop(node);
        drop(lock);
        if cancelled.is_empty() && in_flight == 0 && asked == count {
            return Err(error);
        }
        if !cancelled.is_empty() {
            self.notify(Notice::Event { channel: id, event: Event::PaymentsCancelled { ids: cancelled.clone() } });
        }
        // Those never queued (an interrupt stopped the queuing) were never sent either.
        let never_sent = cancelled_all + (asked - count);
        Err(Error::Unsettled { reason: Box::new(error), settled, cancelled: never_sent, in_flight })
    }

    /// Agrees a cooperative close of channel `id` with its linked peer at the current sheet
    /// (after the update in flight, if any) and returns both signatures.
    pub async fn close(&self, id: Address, timeout: Duration) -> Result<CloseSignatures> {
        let mut rx = self.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        let peer = self.inner.node.lock().await.channel(id).ok_or(Error::UnknownChannel(id))?.peer_address();
        self.require_link(peer)?;
        self.wait_for(&mut rx, id, timeout, "the update in flight did not finish", |node, n| {
            let ch = node.channel(id)?;
            if ch.is_idle() || *ch.phase() != Phase::Open {
                return Some(Ok(()));
            }
            refusal(node, n, id).map(Err)
        })
        .await?;
        {
            let _lock = self.lock_channel(id).await;
            let request = self
                .commit(|node| {
                    let ch = node.channel(id).ok_or(Error::UnknownChannel(id))?;
                    if ch.close_signatures().is_none() && *ch.phase() == Phase::Open {
                        node.close(id).map(Some)
                    } else {
                        Ok(None)
                    }
                })
                .await?;
            self.send(peer, request);
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        self.wait_for(&mut rx, id, left, "the peer did not sign the close", |node, n| {
            if let Some((nonce, balances, signatures)) = node.channel(id)?.close_signatures() {
                return Some(Ok(CloseSignatures { nonce, balances, signatures }));
            }
            refusal(node, n, id).map(Err)
        })
        .await
    }
}

impl<S: Store + Send + 'static> Service<S> {
    /// Closes channel `id` for good: first cooperatively if `cooperative` and the peer answers
    /// within `timeout` (see [`Service::close`]), then, whatever happened, freezes the channel
    /// under the node's lock and returns how to settle it on chain (DESIGN §2 rule 6). The
    /// choice is made from the state stored at that moment, after any update that completed
    /// during the cooperative attempt, and nothing is signed after it: a liquidation with the
    /// returned sheet cannot be punished. Also returns why the cooperative attempt failed.
    pub async fn settle(
        &self,
        id: Address,
        cooperative: bool,
        timeout: Duration,
    ) -> Result<(Settlement, Option<String>)> {
        let attempt = if cooperative {
            match self.close(id, timeout).await {
                Ok(_) => None,
                Err(e @ (Error::UnknownChannel(_) | Error::Store(_))) => return Err(e),
                Err(e) => Some(e.to_string()),
            }
        } else {
            Some("not attempted".to_string())
        };
        let (settlement, events) = {
            let _lock = self.lock_channel(id).await;
            self.commit(|node| node.freeze(id, "closing", false)).await?
        };
        for event in events {
            self.notify(Notice::Event { channel: id, event });
        }
        Ok((settlement, attempt))
    }

    /// Records what the chain shows of channel `id` (a watcher calls this): payments wait for
    /// [`Funding::Running`], and a channel that ended on chain is frozen.
    pub async fn set_funding(&self, id: Address, funding: Funding) -> Result<()> {
        let events = {
            let _lock = self.lock_channel(id).await;
            self.commit(|node| node.set_funding(id, funding)).await?
        };
        for event in events {
            self.notify(Notice::Event { channel: id, event });
        }
        Ok(())
    }
}

/// Polls `f` once (registering its wake-ups) without waiting.
fn futures_poll_once<F: Future>(f: Pin<&mut F>) -> std::task::Poll<F::Output> {
    f.poll(&mut Context::from_waker(Waker::noop()))
}

impl<S: Store + Send + 'static> Service<S> {
    /// Sends `frames` of channel `id` to its peer (they are stored; unsent ones are resent when
    /// the peer links).
    async fn send_for(&self, id: Address, frames: impl IntoIterator<Item = Frame>) -> Result<()> {
        let peer = self.inner.node.lock().await.channel(id).ok_or(Error::UnknownChannel(id))?.peer_address();
        self.send(peer, frames);
        Ok(())
    }

    /// Runs `f` on channel `id` under its lock ([`Service::commit`]) and sends the frame it made;
    /// returns what else it made.
    pub(crate) async fn commit_and_send<T>(
        &self,
        id: Address,
        f: impl FnOnce(&mut Node<S>) -> Result<(T, Option<Frame>)>,
    ) -> Result<T> {
        let _channel = self.lock_channel(id).await;
        let (out, frame) = self.commit(f).await?;
        self.send_for(id, frame).await?;
        Ok(out)
    }

    /// Waits until `lock` of channel `id` changes as `done` wants, the peer refuses, or the
    /// move is cancelled.
    async fn wait_lock(
        &self,
        rx: &mut broadcast::Receiver<Notice>,
        id: Address,
        lock: vbank_core::HashLock,
        timeout: Duration,
        what: &str,
        done: impl Fn(&vbank_core::LockChange) -> bool,
    ) -> Result<u64> {
        self.wait_for(rx, id, timeout, what, |node, n| match n {
            Some(Notice::Event { channel, event: Event::Lock { lock: l, change, nonce } })
                if *channel == id && *l == lock && done(change) =>
            {
                Some(Ok(*nonce))
            }
            Some(Notice::Event { channel, event: Event::LockMoveCancelled { mv } })
                if *channel == id && *mv.lock() == lock =>
            {
                Some(Err(Error::Cancelled(id)))
            }
            other => refusal(node, other, id).map(Err),
        })
        .await
    }

    /// Locks `amount` wei to the peer of channel `id` on `hash` until `expiry` (a conditional
    /// payment, DESIGN §2 rule 3 b) and waits until both hold it; returns the lock and the sheet.
    pub async fn hold(
        &self,
        id: Address,
        amount: Amount,
        hash: B256,
        expiry: u64,
        timeout: Duration,
    ) -> Result<(vbank_core::HashLock, u64)> {
        self.refresh_funding(id).await?;
        let peer = self.inner.node.lock().await.channel(id).ok_or(Error::UnknownChannel(id))?.peer_address();
        self.require_link(peer)?;
        let mut rx = self.subscribe();
        let lock = self.commit_and_send(id, |node| node.add_lock(id, amount, hash, expiry)).await?;
        let nonce = self
            .wait_lock(&mut rx, id, lock, timeout, "the peer did not take the lock", |c| {
                *c == vbank_core::LockChange::Added
            })
            .await?;
        Ok((lock, nonce))
    }

    /// Claims the peer's lock on channel `id` that `preimage` opens, and waits until the claim
    /// is settled off-chain.
    pub async fn fulfil(&self, id: Address, preimage: B256, timeout: Duration) -> Result<(vbank_core::HashLock, u64)> {
        let mut rx = self.subscribe();
        let lock = self.commit_and_send(id, |node| node.fulfil(id, preimage)).await?;
        let nonce = self
            .wait_lock(&mut rx, id, lock, timeout, "the peer did not countersign the fulfil", |c| {
                matches!(c, vbank_core::LockChange::Fulfilled { .. })
            })
            .await?;
        Ok((lock, nonce))
    }

    /// Gives up the peer's lock on channel `id` on `hash`, and waits until it is back with the
    /// peer.
    pub async fn release(&self, id: Address, hash: B256, timeout: Duration) -> Result<(vbank_core::HashLock, u64)> {
        let mut rx = self.subscribe();
        let lock = self.commit_and_send(id, |node| node.release(id, hash)).await?;
        let nonce = self
            .wait_lock(&mut rx, id, lock, timeout, "the peer did not countersign the release", |c| {
                *c == vbank_core::LockChange::Released
            })
            .await?;
        Ok((lock, nonce))
    }

    /// Remembers a preimage on channel `id` (stored): a lock to this party on its hash is claimed
    /// at once and whenever it arrives, and a lock on it is never let expire. A preimage new to
    /// the channel is announced as [`Event::PreimageLearned`] (one learnt on chain is used
    /// upstream, DESIGN §2 rule 9).
    pub async fn learn_preimage(&self, id: Address, preimage: B256) -> Result<B256> {
        let hash = vbank_core::preimage_hash(&preimage);
        let new = {
            let _channel = self.lock_channel(id).await;
            let known = self.inner.node.lock().await.channel(id).ok_or(Error::UnknownChannel(id))?.preimage(&hash);
            // Stored and, in the same commit, a lock already here claimed at once (a closed or
            // frozen channel claims nothing: its tick fails alone, the preimage stays learnt).
            let frame = self
                .commit(|node| {
                    node.learn_preimage(id, preimage)?;
                    Ok(node.tick(id).ok().flatten())
                })
                .await?;
            self.send_for(id, frame).await?;
            known.is_none()
        };
        if new {
            self.notify(Notice::Event { channel: id, event: Event::PreimageLearned { hash, preimage } });
        }
        Ok(hash)
    }

    /// Does every channel's periodic duties (see [`Node::tick`]): claims again locks whose
    /// preimage is known, takes back expired locks, proposes what is queued. A channel that
    /// cannot act now is skipped; only a store failure is an error.
    pub async fn tick(&self) -> Result<()> {
        let ids = self.inner.node.lock().await.channel_ids();
        for id in ids {
            let _channel = self.lock_channel(id).await;
            match self.commit(|node| node.tick(id)).await {
                Ok(frame) => self.send_for(id, frame).await?,
                Err(e @ Error::Store(_)) => return Err(e),
                Err(_) => {}
            }
        }
        Ok(())
    }

    /// Runs [`Service::tick`] every `every` until [`Service::shutdown`].
    pub fn spawn_ticker(&self, every: Duration) {
        let svc = self.clone();
        self.spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                if let Err(e) = svc.tick().await {
                    svc.notify(Notice::Warning(format!("periodic duties: {e}")));
                }
            }
        });
    }

    /// What this party must do on chain about channel `id`'s locks at chain time `now`, decided
    /// under the channel's lock from the stored state (see [`vbank_core::Channel::chain_duties`]).
    pub async fn chain_duties(&self, id: Address, now: u64, reveal_window: u64) -> Result<vbank_core::ChainDuties> {
        let _channel = self.lock_channel(id).await;
        self.inner.node.lock().await.chain_duties(id, now, reveal_window)
    }

    /// Freezes channel `id` for `reason` under its lock and returns how to settle it on chain
    /// (DESIGN §2 rule 6; see [`Service::settle`], without a cooperative attempt).
    pub async fn settle_for(&self, id: Address, reason: &str) -> Result<Settlement> {
        let (settlement, events) = {
            let _lock = self.lock_channel(id).await;
            self.commit(|node| node.freeze(id, reason, false)).await?
        };
        for event in events {
            self.notify(Notice::Event { channel: id, event });
        }
        Ok(settlement)
    }
}

/// The error a waiting request on channel `id` ends with, if notice `n` is fatal to it: the
/// peer refused a frame of this channel, or the peer's link dropped.
fn refusal<S: Store>(node: &Node<S>, n: Option<&Notice>, id: Address) -> Option<Error> {
    match n? {
        // Only the channel's own peer can refuse its frames: another linked peer naming this
        // channel in a refusal is not heard.
        // (A signed proposal in flight is offered again after a refusal: whoever waits on it
        // waits on.)
        Notice::RefusedByPeer { peer, channel: Some(c), reason }
            if *c == id
                && node.channel(id).is_some_and(|ch| ch.peer_address() == *peer && ch.signed_proposal().is_none()) =>
        {
            Some(Error::RefusedByPeer(reason.clone()))
        }
        Notice::Disconnected { peer, reason } if node.channel(id).is_some_and(|c| c.peer_address() == *peer) => {
            Some(Error::PeerGone { peer: *peer, reason: reason.clone() })
        }
        _ => None,
    }
}

/// Sends what a link's queue holds, encrypted, a batch per write; ends (with the reason) when a
/// write fails or takes longer than `timeout`, or when every sender is gone (it holds none
/// itself: the queue closes when the link is dropped).
async fn write_loop(
    mut wr: OwnedWriteHalf,
    mut tx: Encryptor,
    mut rx: mpsc::UnboundedReceiver<Vec<u8>>,
    queued: Arc<AtomicUsize>,
    room: Arc<Notify>,
    timeout: Duration,
) -> String {
    while let Some(first) = rx.recv().await {
        let mut taken = first.len();
        let mut bytes = match tx.encrypt(&first) {
            Ok(b) => b,
            Err(e) => return format!("cannot send a frame: {e}"),
        };
        while bytes.len() < 1 << 16 {
            let Ok(next) = rx.try_recv() else { break };
            taken += next.len();
            match tx.encrypt(&next) {
                Ok(b) => bytes.extend_from_slice(&b),
                Err(e) => return format!("cannot send a frame: {e}"),
            }
        }
        let written = tokio::time::timeout(timeout, wr.write_all(&bytes)).await;
        queued.fetch_sub(taken, Ordering::SeqCst);
        room.notify_one();
        match written {
            Err(_) => return format!("the peer did not read for {} s (write timeout)", timeout.as_secs_f64()),
            Ok(Err(e)) => return format!("write failed: {e}"),
            Ok(Ok(())) => {}
        }
    }
    "the link was closed".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_counted_per_ipv4_address_and_per_ipv6_64() {
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        assert_eq!(ip_key(ip("192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(ip_key(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
        // one /64: one key, whatever the interface identifier
        assert_eq!(ip_key(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(ip_key(ip("2001:db8:1:2:ffff:ffff:ffff:ffff")), ip("2001:db8:1:2::"));
        assert_ne!(ip_key(ip("2001:db8:1:3::1")), ip_key(ip("2001:db8:1:2::1")));
        let limits = Limits { connections_per_ip: 2, ..Limits::default() };
        let counts = Arc::new(std::sync::Mutex::new(Counts::default()));
        let a = Slot::take(&counts, ip_key(ip("2001:db8:1:2::1")), false, &limits).expect("first");
        let _b = Slot::take(&counts, ip_key(ip("2001:db8:1:2::2")), false, &limits).expect("second");
        assert!(Slot::take(&counts, ip_key(ip("2001:db8:1:2::3")), false, &limits).is_none(), "same /64");
        let _c = Slot::take(&counts, ip_key(ip("2001:db8:1:3::1")), false, &limits).expect("another /64");
        drop(a);
        let _d = Slot::take(&counts, ip_key(ip("2001:db8:1:2::3")), false, &limits).expect("a slot was freed");
    }
}
