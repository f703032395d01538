//! A running node: authenticated links to peers over TCP, admission of channels that peers open,
//! and requests that wait for the protocol to finish (open, pay, close).
//!
//! Every state change goes through [`Node`], which stores it before anything is sent. Frames to
//! a peer are queued on its link while the node's lock is held, so each channel's messages leave
//! in the order the core produced them. A request whose peer is not connected fails before it
//! changes anything.

use std::{
    collections::HashMap,
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use alloy_primitives::{Address, B256};
use alloy_signer_local::PrivateKeySigner;
use tokio::{
    net::{TcpListener, TcpStream},
    sync::{Mutex, broadcast, mpsc},
};
use vbank_core::{Amount, ChannelParams, Event, Funding, Phase, Settlement, Sig};

use crate::{Error, Frame, Node, Result, Store, handshake, read_frame, write_frame};

/// Decides whether to join a channel that an authenticated peer opens: given the channel id and
/// the peer, the channel's parameters (checked, e.g. against the contract on chain), or why not.
pub type Admission =
    Arc<dyn Fn(Address, Address) -> Pin<Box<dyn Future<Output = Result<ChannelParams, String>> + Send>> + Send + Sync>;

/// Reads a channel's contract state from the chain (`None` when the chain cannot be read now):
/// asked when a payment meets a channel still recorded as not funded, so that a deposit mined
/// a moment ago does not wait for the watcher's next poll.
pub type FundingCheck = Arc<dyn Fn(Address) -> Pin<Box<dyn Future<Output = Option<Funding>> + Send>> + Send + Sync>;

/// What happened on a running node, for logs and waiting requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// A peer is linked (after the handshake).
    Connected(Address),
    /// A peer's link ended.
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

struct Link {
    id: u64,
    tx: mpsc::UnboundedSender<Frame>,
}

struct Inner<S: Store> {
    node: Mutex<Node<S>>,
    signer: PrivateKeySigner,
    links: std::sync::Mutex<HashMap<Address, Link>>,
    next_link: AtomicU64,
    notices: broadcast::Sender<Notice>,
    admission: Option<Admission>,
    tasks: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Where each peer this node dialed listens: a dropped link to it is dialed again.
    dialed: std::sync::Mutex<HashMap<Address, String>>,
    closing: std::sync::atomic::AtomicBool,
    handshakes: Arc<std::sync::Mutex<HashMap<std::net::IpAddr, usize>>>,
    funding_check: std::sync::Mutex<Option<FundingCheck>>,
    /// Admission's refusals, by channel: a refused channel is not checked on chain again.
    refused: std::sync::Mutex<HashMap<Address, String>>,
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

/// Connections accepted but not yet authenticated, at most.
const MAX_HANDSHAKES: usize = 256;
/// … of which from one IP address.
const PER_ADDRESS: usize = 8;

/// A handshake in progress, counted until dropped.
struct Handshake {
    counts: Arc<std::sync::Mutex<HashMap<std::net::IpAddr, usize>>>,
    ip: std::net::IpAddr,
}

impl Handshake {
    fn start(counts: &Arc<std::sync::Mutex<HashMap<std::net::IpAddr, usize>>>, ip: std::net::IpAddr) -> Option<Self> {
        let mut c = locked(counts);
        let total: usize = c.values().sum();
        let mine = c.entry(ip).or_default();
        if total >= MAX_HANDSHAKES || *mine >= PER_ADDRESS {
            return None;
        }
        *mine += 1;
        Some(Self { counts: Arc::clone(counts), ip })
    }
}

impl Drop for Handshake {
    fn drop(&mut self) {
        let mut c = locked(&self.counts);
        if let Some(n) = c.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                c.remove(&self.ip);
            }
        }
    }
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

/// How long a connect or a handshake may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

impl<S: Store + Send + 'static> Service<S> {
    /// Serves `node`, whose party key is `signer`. Without admission, only the peers of stored
    /// channels may connect and unknown channels are refused.
    pub fn new(node: Node<S>, signer: PrivateKeySigner, admission: Option<Admission>) -> Self {
        let (notices, _) = broadcast::channel(4096);
        Self {
            inner: Arc::new(Inner {
                node: Mutex::new(node),
                signer,
                links: std::sync::Mutex::new(HashMap::new()),
                next_link: AtomicU64::new(0),
                notices,
                admission,
                tasks: std::sync::Mutex::new(Vec::new()),
                dialed: std::sync::Mutex::new(HashMap::new()),
                closing: std::sync::atomic::AtomicBool::new(false),
                handshakes: Arc::new(std::sync::Mutex::new(HashMap::new())),
                funding_check: std::sync::Mutex::new(None),
                refused: std::sync::Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Reads channels' contract state with `check` when a payment meets a channel not yet
    /// recorded as funded (see [`FundingCheck`]).
    pub fn set_funding_check(&self, check: FundingCheck) {
        *locked(&self.inner.funding_check) = Some(check);
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

    /// The node, for reading channels or acting on them directly.
    pub fn node(&self) -> &Mutex<Node<S>> {
        &self.inner.node
    }

    /// This party's address.
    pub fn address(&self) -> Address {
        self.inner.signer.address()
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

    /// Queues frames to `peer`'s link; false if it is not linked (the frames' states are stored
    /// and are sent again when it links).
    fn send(&self, peer: Address, frames: impl IntoIterator<Item = Frame>) -> bool {
        let links = self.links();
        let Some(link) = links.get(&peer) else { return false };
        frames.into_iter().all(|f| link.tx.send(f).is_ok())
    }

    /// Runs the handshake; `dialed` is the peer this node called (else any peer of a stored
    /// channel, or anyone if channels may be admitted).
    async fn authenticate(&self, stream: &mut TcpStream, dialed: Option<Address>) -> Result<Address> {
        let _ = stream.set_nodelay(true);
        let known = self.inner.node.lock().await.peers();
        let open = self.inner.admission.is_some();
        let expected = |p: Address| match dialed {
            Some(d) => p == d,
            None => open || known.contains(&p),
        };
        tokio::time::timeout(CONNECT_TIMEOUT, handshake(stream, &self.inner.signer, expected))
            .await
            .map_err(|_| Error::Auth("the handshake timed out".into()))?
    }

    pub(crate) fn spawn(&self, f: impl Future<Output = ()> + Send + 'static) {
        let h = tokio::spawn(f);
        let mut tasks = locked(&self.inner.tasks);
        tasks.retain(|t| !t.is_finished());
        tasks.push(h);
    }

    /// Stops listening and drops every link (the peers see a hang-up), and waits until the
    /// tasks are gone. The store is released when the last clone of this service is dropped.
    pub async fn shutdown(&self) {
        self.inner.closing.store(true, Ordering::SeqCst);
        let tasks: Vec<_> = locked(&self.inner.tasks).drain(..).collect();
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
        let this = self.clone();
        self.spawn(async move {
            loop {
                let (mut stream, from) = match listener.accept().await {
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
                // Unauthenticated connections are capped (MAX_HANDSHAKES in all, PER_ADDRESS from
                // one IP address): a flood of idle connections cannot exhaust the node, nor one
                // source lock the others out; the rest are closed at once.
                let Some(permit) = Handshake::start(&this.inner.handshakes, from.ip()) else {
                    this.notify(Notice::Disconnected {
                        peer: Address::ZERO,
                        reason: format!("{from}: too many handshakes in progress"),
                    });
                    continue;
                };
                let that = this.clone();
                this.spawn(async move {
                    let this = that;
                    let proven = this.authenticate(&mut stream, None).await;
                    drop(permit);
                    match proven {
                        Ok(peer) => this.link(stream, peer).await,
                        Err(e) => {
                            this.notify(Notice::Disconnected { peer: Address::ZERO, reason: format!("{from}: {e}") })
                        }
                    }
                });
            }
        })
    }

    /// Connects to `peer`'s node at `addr` and links it once it proved to be `peer`. The link
    /// runs in a task until either side hangs up; then it is dialed again (after 0.5 s, doubling
    /// up to 30 s) until a link to the peer is back, whichever side makes it.
    /// The address is remembered in the store, for [`Service::relink`] after a restart.
    pub async fn connect(&self, addr: &str, peer: Address) -> Result<()> {
        self.dial(addr, peer).await?;
        locked(&self.inner.dialed).insert(peer, addr.to_string());
        self.inner.node.lock().await.remember_peer(peer, addr)?;
        Ok(())
    }

    /// Links (in the background, retrying like a dropped link) to every peer of a stored channel
    /// whose node address is remembered: what a restarted node does first.
    pub async fn relink(&self) -> Result<()> {
        let (peers, known) = {
            let node = self.inner.node.lock().await;
            (node.peers(), node.peer_addresses()?)
        };
        for (peer, addr) in known {
            if peers.contains(&peer) && !self.links().contains_key(&peer) {
                locked(&self.inner.dialed).insert(peer, addr);
                self.redial(peer);
            }
        }
        Ok(())
    }

    /// Links to `peer` at its remembered address if it is not linked; true if it is linked.
    pub async fn ensure_link(&self, peer: Address) -> Result<bool> {
        if self.links().contains_key(&peer) {
            return Ok(true);
        }
        let known = self.inner.node.lock().await.peer_addresses()?;
        match known.into_iter().find(|(p, _)| *p == peer) {
            Some((_, addr)) => self.connect(&addr, peer).await.map(|()| true),
            None => Ok(false),
        }
    }

    /// Dials a dropped link again, in the background.
    fn redial(&self, peer: Address) {
        let Some(addr) = locked(&self.inner.dialed).get(&peer).cloned() else {
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
                match this.dial(&addr, peer).await {
                    Ok(()) => return,
                    Err(e) => this.notify(Notice::Disconnected { peer, reason: format!("redialing {addr}: {e}") }),
                }
                wait = (wait * 2).min(Duration::from_secs(30));
            }
        });
    }

    async fn dial(&self, addr: &str, peer: Address) -> Result<()> {
        let mut stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| Error::Unreachable { addr: addr.into(), reason: "no answer within 10 s".into() })?
            .map_err(|e| Error::Unreachable { addr: addr.into(), reason: e.to_string() })?;
        self.authenticate(&mut stream, Some(peer)).await.map_err(|e| match e {
            // A node hangs up on a party it has no channel with, unless it admits new channels.
            Error::Closed | Error::Io(_) => Error::Auth(format!(
                "the node at {addr} hung up during the handshake ({e}): it has no channel with this party and \
                 does not accept new ones (`vbank node --accept-channels`)"
            )),
            other => other,
        })?;
        let this = self.clone();
        // Register before returning so that a request right after `connect` finds the link.
        let (id, rx) = self.register(peer).await?;
        self.spawn(async move { this.run_link(stream, peer, id, rx).await });
        Ok(())
    }

    /// Makes a new link to `peer` the one frames go to, with the catch-up (every retransmission
    /// and queued proposal) queued first: under the node's lock, so that no request can queue a
    /// newer frame ahead of it.
    async fn register(&self, peer: Address) -> Result<(u64, mpsc::UnboundedReceiver<Frame>)> {
        let (tx, rx) = mpsc::unbounded_channel();
        let id = self.inner.next_link.fetch_add(1, Ordering::Relaxed);
        let mut node = self.inner.node.lock().await;
        let mut out = node.on_connect(peer)?;
        for ch in node.channel_ids() {
            if node.channel(ch).is_some_and(|c| c.peer_address() == peer) {
                out.extend(node.propose(ch)?);
            }
        }
        for f in out {
            let _ = tx.send(f);
        }
        // A newer link replaces an older one; the older one's writer stops with its sender.
        self.links().insert(peer, Link { id, tx });
        Ok((id, rx))
    }

    async fn link(&self, stream: TcpStream, peer: Address) {
        match self.register(peer).await {
            Ok((id, rx)) => self.run_link(stream, peer, id, rx).await,
            Err(e) => self.notify(Notice::Disconnected { peer, reason: e.to_string() }),
        }
    }

    async fn run_link(&self, stream: TcpStream, peer: Address, id: u64, mut rx: mpsc::UnboundedReceiver<Frame>) {
        let (mut rd, mut wr) = stream.into_split();
        let writer = tokio::spawn(async move {
            while let Some(f) = rx.recv().await {
                if write_frame(&mut wr, &f).await.is_err() {
                    break;
                }
            }
        });
        self.notify(Notice::Connected(peer));
        let reason = match self.read_loop(&mut rd, peer).await {
            Ok(()) => "hung up".to_string(),
            Err(e) => e.to_string(),
        };
        let current = {
            let mut links = self.links();
            let current = links.get(&peer).is_some_and(|l| l.id == id);
            if current {
                links.remove(&peer);
            }
            current
        };
        // Let the writer flush what is queued (a refusal, say), then stop.
        let _ = tokio::time::timeout(Duration::from_secs(1), writer).await;
        self.notify(Notice::Disconnected { peer, reason });
        if current && !self.inner.closing.load(Ordering::SeqCst) {
            self.redial(peer);
        }
    }

    async fn read_loop(&self, rd: &mut tokio::net::tcp::OwnedReadHalf, peer: Address) -> Result<()> {
        loop {
            let frame = match read_frame(rd).await {
                Ok(f) => f,
                Err(Error::Closed) => return Ok(()),
                Err(e @ (Error::Malformed(_) | Error::Oversize(_))) => {
                    self.send(peer, [Frame::Refused { channel: None, reason: e.to_string() }]);
                    return Err(e);
                }
                Err(e) => return Err(e),
            };
            let go_on = match &frame {
                Frame::Refused { channel, reason } => {
                    // A refused proposal is abandoned: its payments failed for good (rule 11).
                    let mut cancelled = Vec::new();
                    if let Some(id) = channel {
                        let mut node = self.inner.node.lock().await;
                        if node.channel(*id).is_some_and(|c| c.peer_address() == peer) {
                            cancelled = node.withdraw_proposal(*id)?;
                        }
                    }
                    self.notify(Notice::RefusedByPeer { peer, channel: *channel, reason: reason.clone() });
                    if let (Some(id), false) = (channel, cancelled.is_empty()) {
                        self.notify(Notice::Event { channel: *id, event: Event::PaymentsCancelled { ids: cancelled } });
                    }
                    false
                }
                // Only an opening proposal can start a channel here; a refused one was answered.
                Frame::Channel { channel, message: vbank_core::Message::Propose { nonce: 0, .. } } => {
                    self.admit(peer, *channel).await?
                }
                // A payment on a channel not yet seen funded: look at the chain once more.
                Frame::Channel { channel, message: vbank_core::Message::Propose { .. } } => {
                    self.refresh_funding(*channel).await?;
                    true
                }
                _ => true,
            };
            if !go_on {
                continue;
            }
            let channel = match &frame {
                Frame::Channel { channel, .. } => Some(*channel),
                _ => None,
            };
            let mut node = self.inner.node.lock().await;
            let (out, events) = node.respond(peer, &frame)?;
            for f in &out {
                if let Frame::Refused { channel, reason } = f {
                    self.notify(Notice::Refused { peer, channel: *channel, reason: reason.clone() });
                }
            }
            self.send(peer, out);
            drop(node);
            if let Some(channel) = channel {
                for event in events {
                    self.notify(Notice::Event { channel, event });
                }
            }
        }
    }

    /// Adds a channel unknown here that `peer` opens, if admission accepts it; false if it was
    /// refused (the peer is told why). Without admission an unknown channel is left to
    /// [`Node::respond`], which answers "unknown channel".
    async fn admit(&self, peer: Address, channel: Address) -> Result<bool> {
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
            let verdict = match admission(channel, peer).await {
                Ok(p) if p.contract == channel && p.parties == [peer, self.address()] => Ok(p),
                Ok(_) => Err(format!("its parties are not [{peer}, {}]", self.address())),
                Err(reason) => Err(reason),
            };
            match verdict {
                Ok(p) => {
                    let mut node = self.inner.node.lock().await;
                    if node.channel(channel).is_none() {
                        let seed: B256 = PrivateKeySigner::random().to_bytes();
                        node.add_channel(p, seed)?;
                        drop(node);
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
        self.send(peer, [Frame::Refused { channel: Some(channel), reason }]);
        Ok(false)
    }

    /// Forgets an admitted channel whose opening does not complete within [`OPENING_TTL`]
    /// (nothing countersigned by the peer exists then, so nothing can be lost).
    fn forget_unopened(&self, channel: Address) {
        let this = self.clone();
        self.spawn(async move {
            tokio::time::sleep(OPENING_TTL).await;
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
    async fn wait_for<T>(
        &self,
        rx: &mut broadcast::Receiver<Notice>,
        timeout: Duration,
        what: &str,
        mut check: impl FnMut(&Node<S>, Option<&Notice>) -> Option<Result<T>>,
    ) -> Result<T> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut notice = None;
        loop {
            if let Some(r) = check(&*self.inner.node.lock().await, notice.as_ref()) {
                return r;
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
            let mut node = self.inner.node.lock().await;
            if node.channel(id).is_none() {
                let first = node.add_channel(params, waiver_seed)?;
                self.send(peer, first);
            }
        }
        let result = self
            .wait_for(&mut rx, timeout, "the peer did not countersign sheet 0", |node, n| {
                let ch = node.channel(id)?;
                if *ch.phase() != Phase::Opening {
                    return Some(Ok(()));
                }
                refusal(node, n, id).map(Err)
            })
            .await;
        if let Err(Error::RefusedByPeer(_)) = &result {
            // The peer will not open it: forget it, so that it is not offered again.
            self.inner.node.lock().await.forget(id)?;
        }
        result
    }

    /// Pays `count` payments of `amount` each over channel `id` and waits until all are
    /// acknowledged. Nothing is queued if the peer is not linked or the balance does not cover
    /// them all.
    pub async fn pay(&self, id: Address, amount: Amount, count: u64, timeout: Duration) -> Result<Paid> {
        self.refresh_funding(id).await?;
        let mut rx = self.subscribe();
        let (first, last) = {
            let mut node = self.inner.node.lock().await;
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
            for i in 0..count {
                let (pid, frame) = node.pay(id, amount)?;
                if i == 0 {
                    ids.0 = pid;
                }
                ids.1 = pid;
                out.extend(frame);
            }
            self.send(peer, out);
            ids
        };
        // Acknowledgements come in payment order: once one covers `last`, all of these are.
        let count = last - first + 1;
        let all = |nonce| Ok(Paid { count, amount: amount * Amount::from(count), nonce });
        let outcome = self
            .wait_for(&mut rx, timeout, "the payments are queued but not acknowledged", |node, n| match n {
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
                // Notices were missed: the channel's state says whether they are settled.
                None => {
                    let ch = node.channel(id)?;
                    (ch.unsettled_from() > last)
                        .then(|| if *ch.phase() == Phase::Open { all(ch.nonce()) } else { Err(Error::Cancelled(id)) })
                }
                other => refusal(node, other, id).map(Err),
            })
            .await;
        let Err(error) = outcome else { return outcome };
        // DESIGN §2 rule 11: what failed stays failed. Payments still queued are cancelled now
        // (they never go out behind the payer's back); those already proposed may complete.
        let mut node = self.inner.node.lock().await;
        let cancelled = node.cancel_queued(id, first, last, amount)?;
        let Some(ch) = node.channel(id) else { return Err(error) };
        let settled = ch.unsettled_from().saturating_sub(first).min(count);
        let in_flight = count - settled - cancelled.len() as u64;
        drop(node);
        if cancelled.is_empty() && in_flight == 0 {
            return Err(error);
        }
        if !cancelled.is_empty() {
            self.notify(Notice::Event { channel: id, event: Event::PaymentsCancelled { ids: cancelled.clone() } });
        }
        Err(Error::Unsettled { reason: Box::new(error), settled, cancelled: cancelled.len() as u64, in_flight })
    }

    /// Agrees a cooperative close of channel `id` with its linked peer at the current sheet
    /// (after the update in flight, if any) and returns both signatures.
    pub async fn close(&self, id: Address, timeout: Duration) -> Result<CloseSignatures> {
        let mut rx = self.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        let peer = self.inner.node.lock().await.channel(id).ok_or(Error::UnknownChannel(id))?.peer_address();
        self.require_link(peer)?;
        self.wait_for(&mut rx, timeout, "the update in flight did not finish", |node, n| {
            let ch = node.channel(id)?;
            if ch.is_idle() || *ch.phase() != Phase::Open {
                return Some(Ok(()));
            }
            refusal(node, n, id).map(Err)
        })
        .await?;
        {
            let mut node = self.inner.node.lock().await;
            let ch = node.channel(id).ok_or(Error::UnknownChannel(id))?;
            if ch.close_signatures().is_none() && *ch.phase() == Phase::Open {
                let f = node.close(id)?;
                self.send(peer, [f]);
            }
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        self.wait_for(&mut rx, left, "the peer did not sign the close", |node, n| {
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
            let mut node = self.inner.node.lock().await;
            node.freeze(id, "closing", false)?
        };
        for event in events {
            self.notify(Notice::Event { channel: id, event });
        }
        Ok((settlement, attempt))
    }

    /// Records what the chain shows of channel `id` (a watcher calls this): payments wait for
    /// [`Funding::Running`], and a channel that ended on chain is frozen.
    pub async fn set_funding(&self, id: Address, funding: Funding) -> Result<()> {
        let events = self.inner.node.lock().await.set_funding(id, funding)?;
        for event in events {
            self.notify(Notice::Event { channel: id, event });
        }
        Ok(())
    }
}

/// The error a waiting request on channel `id` ends with, if notice `n` is fatal to it: the
/// peer refused a frame of this channel, or the peer's link dropped.
fn refusal<S: Store>(node: &Node<S>, n: Option<&Notice>, id: Address) -> Option<Error> {
    match n? {
        Notice::RefusedByPeer { channel: Some(c), reason, .. } if *c == id => {
            Some(Error::RefusedByPeer(reason.clone()))
        }
        Notice::Disconnected { peer, reason } if node.channel(id).is_some_and(|c| c.peer_address() == *peer) => {
            Some(Error::PeerGone { peer: *peer, reason: reason.clone() })
        }
        _ => None,
    }
}
