//! The payment network on a running node (DESIGN §2 rules 7–11, §3): invoices it issues,
//! payments it makes along routes, locks it forwards, and the announcements it relays.
//!
//! Every lock that arrives with an onion is handled once, by one task holding the router's lock:
//! it is claimed (this node's invoice, or a spontaneous payment carrying its preimage), forwarded
//! (the link between the incoming and the outgoing lock stored before the outgoing lock is
//! proposed, rule 7), or released with a reason (rule 10). A preimage learnt downstream, off-chain
//! or on chain, claims the incoming lock at once (rule 9); an outgoing lock that comes back
//! releases the incoming one. After a restart, [`Service::reconcile`] finishes what a crash
//! interrupted from the stored records and channel states alone.

use std::collections::HashSet;

use alloy_primitives::keccak256;
use serde::{Deserialize, Serialize};
use vbank_core::{HashLock, LockChange, LockMove, PaymentsOutcome, preimage_hash};
use vbank_onion::{HopPayload, OnionPacket, secp256k1};

use super::{Address, Amount, B256, Error, Event, Frame, Funding, Notice, Phase, Result, Service, Store, locked};
use crate::{
    NodeUri, RecordKind,
    network::{Announcement, FirstHop, Graph, GraphChannel, Invoice, Route},
    noise::compressed,
};

/// A forwarding node's fees (announced to the network).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwardFees {
    /// Per forwarded payment, in wei.
    pub base: Amount,
    /// Per million of the forwarded amount.
    pub ppm: u32,
}

impl ForwardFees {
    fn of(&self, amount: Amount) -> Option<Amount> {
        self.base.checked_add(amount.checked_mul(Amount::from(self.ppm))? / 1_000_000)
    }
}

/// What the node knows of the network and how it takes part.
#[derive(Debug, Default)]
pub(super) struct Net {
    graph: Graph,
    fees: Option<ForwardFees>,
    own: Option<Announcement>,
    /// Announcements taken from each linked peer in the current minute (a per-link rate limit).
    budget: std::collections::HashMap<Address, (u64, u32)>,
    /// The pending forwards' record keys, by hash (loaded by `reconcile`, kept by `save_forward`).
    pending: std::collections::HashMap<B256, HashSet<Vec<u8>>>,
}

/// Announcements one link may bring per minute; more are dropped unread.
const ANNOUNCEMENTS_PER_MINUTE: u32 = 600;
/// Announcements sent to a newly linked peer, at most.
const ANNOUNCEMENTS_SYNCED: usize = 1000;
/// Routes tried for one payment, at most.
const MAX_ATTEMPTS: u32 = 5;
/// How long before its expiry a lock to forward must still be (seconds): the next hops' minimum
/// windows.
const FORWARD_MARGIN: u64 = 600;

/// What happened to a payment this node made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    /// A lock is out and not settled.
    InFlight,
    /// The payee claimed it: the preimage is the proof of payment.
    Succeeded {
        /// The preimage.
        preimage: B256,
    },
    /// Failed for good (never retried behind the payer's back, DESIGN §2 rule 11).
    Failed {
        /// Why.
        reason: String,
    },
}

/// A payment this node made, by its hash (its id: paying the same invoice again pays once).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payment {
    /// The payment hash.
    pub hash: B256,
    /// What the payee gets.
    pub amount: Amount,
    /// The payee.
    pub payee: Address,
    /// What happened.
    pub status: PaymentStatus,
    /// Routes tried.
    pub attempts: u32,
    /// Fees paid to intermediaries (of the route that succeeded, or the last tried).
    pub fee: Amount,
    /// Hops of that route.
    pub hops: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum ForwardState {
    /// Forwarded: the outgoing lock is out (or about to be proposed).
    Pending,
    /// Claimed upstream with the preimage.
    Claimed,
    /// Released upstream.
    Released,
}

/// A lock this node received with an onion, and what it did with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct ForwardRecord {
    in_channel: Address,
    in_lock: HashLock,
    out_channel: Option<Address>,
    out_lock: Option<HashLock>,
    state: ForwardState,
    note: String,
}

/// An invoice this node issued, with its preimage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct InvoiceRecord {
    invoice: String,
    preimage: B256,
    amount: Amount,
    secret: B256,
    expires_at: u64,
    /// What was received for it, once claimed.
    paid: Option<Amount>,
}

/// How a payment is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayOptions {
    /// The most the payer pays intermediaries.
    pub max_fee: Amount,
    /// The locks' expiry, this long from now (one expiry along the whole route, rule 8).
    pub window: u64,
    /// How long to wait for the outcome before reporting the payment in flight.
    pub timeout: std::time::Duration,
}

impl Default for PayOptions {
    fn default() -> Self {
        Self { max_fee: Amount::MAX, window: 3600, timeout: std::time::Duration::from_secs(60) }
    }
}

fn lock_key(channel: Address, lock: &HashLock) -> Vec<u8> {
    let mut k = channel.to_vec();
    let mut l = vec![lock.receiver];
    l.extend_from_slice(&lock.amount.to_be_bytes());
    l.extend_from_slice(&lock.expiry.to_be_bytes());
    l.extend_from_slice(lock.hash.as_slice());
    k.extend_from_slice(keccak256(l).as_slice());
    k
}

fn json<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| Error::Store(e.to_string()))
}

impl<S: Store + Send + 'static> Service<S> {
    // ------------------------------------------------------------------ records

    async fn put(&self, kind: RecordKind, key: Vec<u8>, value: Option<Vec<u8>>) -> Result<()> {
        let store = std::sync::Arc::clone(self.inner.node.lock().await.store());
        tokio::task::spawn_blocking(move || store.put_record(kind, &key, value.as_deref()))
            .await
            .map_err(|e| Error::Store(e.to_string()))?
    }

    async fn all<T: for<'de> Deserialize<'de>>(&self, kind: RecordKind) -> Result<Vec<(Vec<u8>, T)>> {
        let store = std::sync::Arc::clone(self.inner.node.lock().await.store());
        let rows = tokio::task::spawn_blocking(move || store.records(kind))
            .await
            .map_err(|e| Error::Store(e.to_string()))??;
        Ok(rows.into_iter().filter_map(|(k, v)| Some((k, serde_json::from_slice(&v).ok()?))).collect())
    }

    async fn get<T: for<'de> Deserialize<'de>>(&self, kind: RecordKind, key: &[u8]) -> Result<Option<T>> {
        let store = std::sync::Arc::clone(self.inner.node.lock().await.store());
        let key = key.to_vec();
        let row = tokio::task::spawn_blocking(move || store.record(kind, &key))
            .await
            .map_err(|e| Error::Store(e.to_string()))??;
        Ok(row.and_then(|v| serde_json::from_slice(&v).ok()))
    }

    // ------------------------------------------------------------------ announcements, graph

    /// Forwards payments for others with these fees (`None`: stops forwarding), and announces
    /// it to linked peers, who relay it. Needs the node's URI ([`Service::listen`] first).
    pub async fn set_forwarding(&self, fees: Option<ForwardFees>) -> Result<()> {
        let own = match (fees, self.own_uri()) {
            (Some(f), Some(uri)) => {
                let now = self.now().await;
                let policy = vbank_core::LockPolicy::default();
                Some(
                    Announcement::sign(&self.inner.signer, &uri, f.base, f.ppm, policy.min_window, now)
                        .map_err(|e| Error::Store(e.to_string()))?,
                )
            }
            (Some(_), None) => return Err(Error::Store("a forwarding node must listen first".into())),
            (None, _) => None,
        };
        {
            let mut net = locked(&self.inner.net);
            net.fees = fees;
            net.own.clone_from(&own);
            if let Some(a) = &own {
                let _ = net.graph.accept(a.clone(), a.timestamp);
            }
        }
        if let Some(a) = own {
            for peer in self.connected() {
                self.send(peer, [Frame::Announce { announcement: a.clone() }]);
            }
        }
        Ok(())
    }

    /// The announcements to send a newly linked peer: this node's own first.
    pub(super) fn announcements(&self) -> Vec<Frame> {
        let net = locked(&self.inner.net);
        let own = net.own.clone();
        let own_uri = own.as_ref().map(|a| a.uri.clone());
        own.into_iter()
            .chain(net.graph.nodes().filter(|a| Some(&a.uri) != own_uri.as_ref()).take(ANNOUNCEMENTS_SYNCED).cloned())
            .map(|announcement| Frame::Announce { announcement })
            .collect()
    }

    /// A peer's announcement: taken if genuine and new, then relayed to the other linked peers.
    pub(super) async fn on_announcement(&self, from: Address, a: Announcement) {
        let now = self.now().await;
        let taken = {
            let mut net = locked(&self.inner.net);
            let minute = now / 60;
            let budget = net.budget.entry(from).or_insert((minute, 0));
            if budget.0 != minute {
                *budget = (minute, 0);
            }
            budget.1 += 1;
            if budget.1 > ANNOUNCEMENTS_PER_MINUTE {
                return;
            }
            net.graph.accept(a.clone(), now)
        };
        match taken {
            Ok(true) => {
                if let Ok(bytes) = json(&a)
                    && let Ok(uri) = a.uri.parse::<NodeUri>()
                {
                    let _ = self.put(RecordKind::Announcement, uri.address().to_vec(), Some(bytes)).await;
                }
                for peer in self.connected().into_iter().filter(|p| *p != from) {
                    self.send(peer, [Frame::Announce { announcement: a.clone() }]);
                }
            }
            Ok(false) => {}
            Err(e) => self.notify(Notice::Refused { peer: from, channel: None, reason: format!("announcement: {e}") }),
        }
    }

    /// Adds a channel to the graph (from the factory's `ChannelOpened` logs).
    pub fn add_graph_channel(&self, c: GraphChannel) {
        locked(&self.inner.net).graph.add_channel(c);
    }

    /// What this node knows of the network: announcements and channels.
    pub fn graph(&self) -> (Vec<Announcement>, Vec<GraphChannel>) {
        let net = locked(&self.inner.net);
        (net.graph.nodes().cloned().collect(), net.graph.channels().copied().collect())
    }

    /// Loads the stored announcements into the graph (at start).
    pub async fn load_graph(&self) -> Result<()> {
        let stored: Vec<(Vec<u8>, Announcement)> = self.all(RecordKind::Announcement).await?;
        let now = self.now().await;
        let mut net = locked(&self.inner.net);
        for (_, a) in stored {
            let _ = net.graph.accept(a, now);
        }
        Ok(())
    }

    async fn now(&self) -> u64 {
        self.inner.node.lock().await.now()
    }

    // ------------------------------------------------------------------ invoices

    /// Issues an invoice for `amount` of `token` on `chain_id`, payable until `expires_in`
    /// seconds from now: a fresh preimage, stored before the invoice is returned.
    pub async fn invoice(
        &self,
        chain_id: u64,
        amount: Amount,
        token: Address,
        memo: &str,
        expires_in: u64,
    ) -> Result<Invoice> {
        let uri = self.own_uri().ok_or_else(|| Error::Store("a node must listen to issue invoices".into()))?;
        if amount == 0 {
            return Err(Error::Protocol(vbank_core::Error::ZeroPayment));
        }
        let preimage = B256::from(alloy_signer_local::PrivateKeySigner::random().to_bytes());
        let secret = B256::from(alloy_signer_local::PrivateKeySigner::random().to_bytes());
        let expires_at = self.now().await.saturating_add(expires_in);
        let hash = preimage_hash(&preimage);
        let invoice = Invoice::sign(&self.inner.signer, chain_id, uri, hash, amount, token, expires_at, secret, memo)
            .map_err(|e| Error::Store(e.to_string()))?;
        let record = InvoiceRecord { invoice: invoice.encode(), preimage, amount, secret, expires_at, paid: None };
        self.put(RecordKind::Invoice, hash.to_vec(), Some(json(&record)?)).await?;
        Ok(invoice)
    }

    // ------------------------------------------------------------------ paying

    /// The payments this node made.
    pub async fn payments(&self) -> Result<Vec<Payment>> {
        Ok(self.all::<Payment>(RecordKind::Payment).await?.into_iter().map(|(_, p)| p).collect())
    }

    /// Pays `invoice` along the cheapest route with enough capacity, trying the next one when a
    /// hop releases the lock (at most [`MAX_ATTEMPTS`]). The payment hash is the payment's id:
    /// paying an invoice that was paid returns the stored result, one that failed fails again
    /// (rule 11), one in flight is waited for.
    pub async fn pay_invoice(&self, invoice: &Invoice, opts: PayOptions) -> Result<Payment> {
        let final_payload =
            |amount| HopPayload::Final { amount, expiry: 0, secret: invoice.secret.0, spontaneous: false };
        self.pay_route(
            invoice.chain_id,
            invoice.payee.clone(),
            invoice.hash,
            (invoice.amount, invoice.token),
            invoice.expires_at,
            final_payload,
            opts,
        )
        .await
    }

    /// Pays `amount` to the node `payee` without an invoice: the preimage travels to the payee
    /// inside the onion (a spontaneous payment). Returns the payment (its hash is new).
    pub async fn pay_node(
        &self,
        chain_id: u64,
        payee: &NodeUri,
        amount: Amount,
        token: Address,
        opts: PayOptions,
    ) -> Result<Payment> {
        let preimage = B256::from(alloy_signer_local::PrivateKeySigner::random().to_bytes());
        let final_payload = |amount| HopPayload::Final { amount, expiry: 0, secret: preimage.0, spontaneous: true };
        let hash = preimage_hash(&preimage);
        self.pay_route(chain_id, payee.clone(), hash, (amount, token), u64::MAX, final_payload, opts).await
    }

    #[allow(clippy::too_many_arguments)]
    async fn pay_route(
        &self,
        chain_id: u64,
        payee: NodeUri,
        hash: B256,
        (amount, token): (Amount, Address),
        expires_at: u64,
        final_payload: impl Fn(Amount) -> HopPayload,
        opts: PayOptions,
    ) -> Result<Payment> {
        // One request per payment at a time; a second one waits for the first's record.
        if !locked(&self.inner.paying).insert(hash) {
            return Err(Error::Payment(format!("payment {hash} is already being made by another request")));
        }
        let result =
            self.pay_route_once(chain_id, &payee, hash, (amount, token), expires_at, &final_payload, opts).await;
        locked(&self.inner.paying).remove(&hash);
        result
    }

    #[allow(clippy::too_many_arguments)]
    async fn pay_route_once(
        &self,
        chain_id: u64,
        payee: &NodeUri,
        hash: B256,
        (amount, token): (Amount, Address),
        expires_at: u64,
        final_payload: &impl Fn(Amount) -> HopPayload,
        opts: PayOptions,
    ) -> Result<Payment> {
        let key = hash.to_vec();
        if let Some(p) = self.get::<Payment>(RecordKind::Payment, &key).await? {
            match &p.status {
                PaymentStatus::Succeeded { .. } => return Ok(p),
                PaymentStatus::Failed { reason } => {
                    return Err(Error::Payment(format!("payment {hash} failed for good: {reason}")));
                }
                PaymentStatus::InFlight => {
                    // Interrupted (a crash or a timeout): its lock may still settle. Only its
                    // outcome is waited for; no second lock is sent.
                    return self.await_in_flight(p, opts.timeout).await;
                }
            }
        }
        if expires_at <= self.now().await {
            return Err(Error::Payment(format!("the invoice expired at {expires_at}: nothing was sent")));
        }
        let mut payment = Payment {
            hash,
            amount,
            payee: payee.address(),
            status: PaymentStatus::InFlight,
            attempts: 0,
            fee: 0,
            hops: 0,
        };
        let deadline = tokio::time::Instant::now() + opts.timeout;
        let mut exclude = HashSet::new();
        let mut last_error = String::from("no route");
        while payment.attempts < MAX_ATTEMPTS {
            let Some(route) = self.find_route(chain_id, payee.address(), amount, token, &exclude).await else {
                break;
            };
            if route.fees() > opts.max_fee {
                last_error = format!("the cheapest route costs {} wei in fees, over the maximum", route.fees());
                break;
            }
            payment.attempts += 1;
            payment.fee = route.fees();
            payment.hops = route.hops.len();
            // Stored in flight before the lock goes out: a crash leaves a payment to wait for,
            // never one to send again.
            self.put(RecordKind::Payment, key.clone(), Some(json(&payment)?)).await?;
            let expiry = self.now().await.saturating_add(opts.window);
            let outcome = self.try_route(&route, payee, hash, expiry, final_payload, deadline).await;
            match outcome {
                Ok(Some(preimage)) => {
                    payment.status = PaymentStatus::Succeeded { preimage };
                    self.put(RecordKind::Payment, key, Some(json(&payment)?)).await?;
                    return Ok(payment);
                }
                Ok(None) => {
                    // Still out when the time was up: in flight, to be waited for later.
                    return Err(Error::Payment(format!(
                        "payment {hash} is in flight: no answer within {:?}; ask again later (it will not be \
                         sent twice)",
                        opts.timeout
                    )));
                }
                Err(reason) => {
                    last_error = reason;
                    exclude.extend(route.channels());
                }
            }
        }
        if payment.attempts == 0 {
            // Nothing was sent: nothing to remember (the payer may ask again, say with a higher
            // fee ceiling or once the graph knows more channels).
            return Err(Error::Payment(format!("payment {hash} not made, nothing was sent: {last_error}")));
        }
        payment.status = PaymentStatus::Failed { reason: last_error.clone() };
        self.put(RecordKind::Payment, key, Some(json(&payment)?)).await?;
        Err(Error::Payment(format!("payment {hash} failed after {} route(s): {last_error}", payment.attempts)))
    }

    /// Waits for a payment recorded in flight to settle: its preimage learnt on a channel
    /// (success) or its lock gone from every channel (failure).
    async fn await_in_flight(&self, mut p: Payment, timeout: std::time::Duration) -> Result<Payment> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let (known, pending) = {
                let node = self.inner.node.lock().await;
                let ids = node.channel_ids();
                let known = ids.iter().find_map(|id| node.channel(*id)?.preimage(&p.hash));
                // Queued, proposed, in the sheet or in an update in flight: it may still go out.
                let mine = |id: &Address| node.channel(*id).is_some_and(|c| c.lock_pending(&p.hash));
                (known, ids.iter().any(mine))
            };
            let status = match (known, pending) {
                (Some(preimage), _) => PaymentStatus::Succeeded { preimage },
                (None, false) => PaymentStatus::Failed { reason: "its lock came back".into() },
                (None, true) if tokio::time::Instant::now() >= deadline => {
                    return Err(Error::Payment(format!("payment {} is still in flight", p.hash)));
                }
                (None, true) => {
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            p.status = status;
            self.put(RecordKind::Payment, p.hash.to_vec(), Some(json(&p)?)).await?;
            return match &p.status {
                PaymentStatus::Failed { reason } => Err(Error::Payment(format!("payment {} failed: {reason}", p.hash))),
                _ => Ok(p),
            };
        }
    }

    /// The payer's channels usable as first hops, and the cheapest route over them.
    async fn find_route(
        &self,
        chain_id: u64,
        payee: Address,
        amount: Amount,
        token: Address,
        exclude: &HashSet<Address>,
    ) -> Option<Route> {
        let linked: HashSet<Address> = self.connected().into_iter().collect();
        self.refresh_pending(|c| linked.contains(&c.peer_address())).await;
        let first: Vec<FirstHop> = {
            let node = self.inner.node.lock().await;
            node.channel_ids()
                .into_iter()
                .filter_map(|id| node.channel(id))
                .filter(|c| {
                    *c.phase() == Phase::Open
                        && c.frozen().is_none()
                        && matches!(c.funding(), Funding::Running | Funding::Unchecked)
                        && c.params().chain_id == chain_id
                        && linked.contains(&c.peer_address())
                })
                .map(|c| FirstHop {
                    channel: c.params().contract,
                    peer: c.peer_address(),
                    spendable: c.spendable(),
                    token: c.params().token,
                })
                .collect()
        };
        let me = self.address();
        locked(&self.inner.net).graph.route(me, payee, amount, token, &first, exclude, HopPayload::MAX_ROUTE_LEN)
    }

    /// Asks the chain again about the channels `which` selects that are recorded as not yet
    /// funded (the watcher's next poll may be a while away).
    async fn refresh_pending(&self, which: impl Fn(&vbank_core::Channel) -> bool) {
        let pending: Vec<Address> = {
            let node = self.inner.node.lock().await;
            node.channel_ids()
                .into_iter()
                .filter(|id| node.channel(*id).is_some_and(|c| c.funding() == Funding::Pending && which(c)))
                .collect()
        };
        for id in pending {
            let _ = self.refresh_funding(id).await;
        }
    }

    /// Sends one route's lock and waits for its outcome: `Ok(Some(preimage))` paid,
    /// `Ok(None)` still out at the deadline, `Err(reason)` came back (try another route).
    async fn try_route(
        &self,
        route: &Route,
        payee: &NodeUri,
        hash: B256,
        expiry: u64,
        final_payload: &impl Fn(Amount) -> HopPayload,
        deadline: tokio::time::Instant,
    ) -> std::result::Result<Option<B256>, String> {
        let packet = self.build_onion(route, payee, hash, expiry, final_payload).map_err(|e| e.to_string())?;
        let first = route.hops.first().ok_or("an empty route")?;
        let mut rx = self.subscribe();
        let lock = self
            .commit_and_send(first.channel, |node| {
                node.add_routed_lock(first.channel, first.amount, hash, expiry, packet.into())
            })
            .await
            .map_err(|e| e.to_string())?;
        loop {
            let n = match tokio::time::timeout_at(deadline, rx.recv()).await {
                Err(_) => return Ok(None),
                Ok(Ok(n)) => n,
                Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {
                    // Missed notices: read the outcome off the channel.
                    let node = self.inner.node.lock().await;
                    let Some(c) = node.channel(first.channel) else { return Err("the channel is gone".into()) };
                    if let Some(p) = c.preimage(&hash) {
                        return Ok(Some(p));
                    }
                    if c.onion(&lock).is_none() {
                        return Err("the lock came back".into());
                    }
                    continue;
                }
                Ok(Err(_)) => return Err("the node stopped".into()),
            };
            let Notice::Event { channel, event } = n else { continue };
            if channel != first.channel {
                continue;
            }
            match event {
                Event::PreimageLearned { hash: h, preimage } if h == hash => return Ok(Some(preimage)),
                Event::Lock { lock: l, change: LockChange::Released | LockChange::Expired, .. } if l == lock => {
                    return Err(format!("a hop released the lock (route over {} hop(s))", route.hops.len()));
                }
                Event::LockMoveCancelled { mv: LockMove::Add(l) } if l == lock => {
                    return Err("the first hop refused the lock".into());
                }
                _ => {}
            }
        }
    }

    fn build_onion(
        &self,
        route: &Route,
        payee: &NodeUri,
        hash: B256,
        expiry: u64,
        final_payload: &impl Fn(Amount) -> HopPayload,
    ) -> Result<Vec<u8>> {
        let net = locked(&self.inner.net);
        let mut hops = Vec::with_capacity(route.hops.len());
        for (i, hop) in route.hops.iter().enumerate() {
            let key = if hop.node == payee.address() {
                compressed(payee.key())
            } else {
                let a = net.graph.node(&hop.node).ok_or(Error::Payment(format!("no key for {}", hop.node)))?;
                let uri: NodeUri = a.uri.parse().map_err(|e| Error::Payment(format!("{e}")))?;
                compressed(uri.key())
            };
            let key = secp256k1::PublicKey::from_slice(&key).map_err(|e| Error::Payment(e.to_string()))?;
            let payload = match route.hops.get(i + 1) {
                Some(next) => HopPayload::Forward { next: next.node.0.0, amount: next.amount, expiry },
                None => match final_payload(hop.amount) {
                    HopPayload::Final { amount, secret, spontaneous, .. } => {
                        HopPayload::Final { amount, expiry, secret, spontaneous }
                    }
                    other => other,
                },
            };
            hops.push((key, payload.encode()));
        }
        let session =
            secp256k1::SecretKey::from_byte_array(alloy_signer_local::PrivateKeySigner::random().to_bytes().0)
                .map_err(|e| Error::Payment(e.to_string()))?;
        let (packet, _) = vbank_onion::build(&session, &hops, &hash.0).map_err(|e| Error::Payment(e.to_string()))?;
        Ok(packet.to_bytes().to_vec())
    }

    // ------------------------------------------------------------------ receiving, forwarding

    /// Handles every routed lock, preimage and returned lock, one at a time (started with the
    /// service). Notices missed in a burst are made up by [`Service::reconcile`].
    pub(super) async fn route_loop(self) {
        let mut rx = self.subscribe();
        let _ = self.reconcile().await;
        loop {
            match rx.recv().await {
                Ok(Notice::Event { channel, event }) => {
                    let _routing = self.inner.routing.lock().await;
                    if let Err(e) = self.route_event(channel, event).await {
                        self.notify(Notice::Warning(format!("routing on channel {channel}: {e}")));
                    }
                }
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    let _ = self.reconcile().await;
                }
                Err(_) => return,
            }
        }
    }

    async fn route_event(&self, channel: Address, event: Event) -> Result<()> {
        match event {
            Event::Lock { lock, change: LockChange::Received, .. } => self.on_incoming(channel, lock).await,
            Event::PreimageLearned { hash, preimage } => self.on_preimage(channel, hash, preimage).await,
            Event::Lock { lock, change: LockChange::Released | LockChange::Expired, .. }
            | Event::LockMoveCancelled { mv: LockMove::Add(lock) } => self.on_returned(channel, lock).await,
            _ => Ok(()),
        }
    }

    /// Finishes what a crash or a burst of notices left: routed locks not yet handled, forwards
    /// whose outgoing lock settled or never went out. Idempotent.
    pub async fn reconcile(&self) -> Result<()> {
        let _routing = self.inner.routing.lock().await;
        let records: Vec<(Vec<u8>, ForwardRecord)> = self.all(RecordKind::Forward).await?;
        let known: HashSet<Vec<u8>> = records.iter().map(|(k, _)| k.clone()).collect();
        {
            let mut net = locked(&self.inner.net);
            net.pending.clear();
            for (k, r) in records.iter().filter(|(_, r)| r.state == ForwardState::Pending) {
                net.pending.entry(r.in_lock.hash).or_default().insert(k.clone());
            }
        }
        for (_, r) in records.into_iter().filter(|(_, r)| r.state == ForwardState::Pending) {
            let (Some(out), Some(out_lock)) = (r.out_channel, r.out_lock) else { continue };
            let (preimage, pending) = {
                let node = self.inner.node.lock().await;
                match node.channel(out) {
                    Some(c) => (c.preimage(&out_lock.hash), c.onion(&out_lock).is_some()),
                    None => (None, false),
                }
            };
            let done = match preimage {
                Some(p) => self.on_preimage(out, out_lock.hash, p).await,
                None if !pending => self.on_returned(out, out_lock).await,
                None => Ok(()),
            };
            if let Err(e) = done {
                self.notify(Notice::Warning(format!("reconciling lock {} on {out}: {e}", out_lock.hash)));
            }
        }
        // Routed locks received and never handled (a crash right after they arrived).
        let unhandled: Vec<(Address, HashLock)> = {
            let node = self.inner.node.lock().await;
            node.channel_ids()
                .into_iter()
                .filter_map(|id| node.channel(id).map(|c| (id, c)))
                .flat_map(|(id, c)| {
                    let me = c.me() as u8;
                    c.locks()
                        .iter()
                        .filter(move |l| l.receiver == me && c.onion(l).is_some())
                        .map(move |l| (id, *l))
                        .collect::<Vec<_>>()
                })
                .filter(|(id, l)| !known.contains(&lock_key(*id, l)))
                .collect()
        };
        for (id, lock) in unhandled {
            if let Err(e) = self.on_incoming(id, lock).await {
                self.notify(Notice::Warning(format!("handling lock {} on {id}: {e}", lock.hash)));
            }
        }
        Ok(())
    }

    async fn save_forward(&self, r: &ForwardRecord) -> Result<()> {
        let key = lock_key(r.in_channel, &r.in_lock);
        self.put(RecordKind::Forward, key.clone(), Some(json(r)?)).await?;
        let mut net = locked(&self.inner.net);
        let keys = net.pending.entry(r.in_lock.hash).or_default();
        if r.state == ForwardState::Pending {
            keys.insert(key);
        } else {
            keys.remove(&key);
            if keys.is_empty() {
                net.pending.remove(&r.in_lock.hash);
            }
        }
        Ok(())
    }

    /// The pending forwards on `hash`.
    async fn pending(&self, hash: B256) -> Result<Vec<ForwardRecord>> {
        let keys: Vec<Vec<u8>> =
            locked(&self.inner.net).pending.get(&hash).map(|k| k.iter().cloned().collect()).unwrap_or_default();
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            if let Some(r) = self.get::<ForwardRecord>(RecordKind::Forward, &k).await? {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// A lock to this node arrived irrevocably (rule 7). With an onion: claimed, forwarded or
    /// released; without one it is left to whoever holds its preimage (a plain `hold`).
    async fn on_incoming(&self, channel: Address, lock: HashLock) -> Result<()> {
        let key = lock_key(channel, &lock);
        if self.get::<ForwardRecord>(RecordKind::Forward, &key).await?.is_some() {
            return Ok(());
        }
        let (packet, token, me) = {
            let node = self.inner.node.lock().await;
            let Some(c) = node.channel(channel) else { return Ok(()) };
            let Some(packet) = c.onion(&lock).cloned() else { return Ok(()) };
            (packet, c.params().token, c.me() as u8)
        };
        if lock.receiver != me {
            return Ok(());
        }
        let mut record = ForwardRecord {
            in_channel: channel,
            in_lock: lock,
            out_channel: None,
            out_lock: None,
            state: ForwardState::Released,
            note: String::new(),
        };
        match self.decide(channel, &lock, &packet, token).await {
            Ok(Decision::Claim(preimage, note)) => {
                // The preimage is stored on the channel first (then the claim goes on every tick
                // and on chain): a crash before the record is written only handles the lock again.
                self.learn_preimage(channel, preimage).await?;
                record.state = ForwardState::Claimed;
                record.note = note;
                self.save_forward(&record).await?;
            }
            Ok(Decision::Forward { out, amount, next_packet }) => {
                let out_lock = {
                    let node = self.inner.node.lock().await;
                    let c = node.channel(out).ok_or(Error::UnknownChannel(out))?;
                    HashLock { receiver: 1 - c.me() as u8, amount, expiry: lock.expiry, hash: lock.hash }
                };
                record.out_channel = Some(out);
                record.out_lock = Some(out_lock);
                record.state = ForwardState::Pending;
                record.note = format!("forwarded {amount} wei on {out}, fee {} wei", lock.amount - amount);
                // Rule 7: the link is durable before the outgoing lock is proposed.
                self.save_forward(&record).await?;
                let added = self
                    .commit_and_send(out, |node| {
                        node.add_routed_lock(out, amount, lock.hash, lock.expiry, next_packet.into())
                    })
                    .await;
                match added.err().map(|e| e.to_string()) {
                    None => self.notify(Notice::Forwarded { incoming: channel, outgoing: out, lock }),
                    Some(why) => {
                        record.state = ForwardState::Released;
                        record.note = format!("could not forward: {why}");
                        self.save_forward(&record).await?;
                        self.release_now(channel, lock.hash).await;
                    }
                }
            }
            Err(why) => {
                record.note = why;
                self.save_forward(&record).await?;
                self.release_now(channel, lock.hash).await;
            }
        }
        Ok(())
    }

    /// What to do with a routed lock (checked whole before anything is stored or sent).
    async fn decide(
        &self,
        channel: Address,
        lock: &HashLock,
        packet: &[u8],
        token: Address,
    ) -> std::result::Result<Decision, String> {
        let secret = secp256k1::SecretKey::from_byte_array(self.inner.signer.to_bytes().0)
            .map_err(|e| format!("node key: {e}"))?;
        let packet = OnionPacket::from_bytes(packet).map_err(|e| format!("bad onion: {e}"))?;
        let peeled = vbank_onion::peel(&secret, &packet, &lock.hash.0).map_err(|e| format!("bad onion: {e}"))?;
        let payload = HopPayload::decode(&peeled.payload).map_err(|e| format!("bad instructions: {e}"))?;
        match (payload, peeled.next) {
            (HopPayload::Final { amount, expiry, secret, spontaneous }, None) => {
                if expiry != lock.expiry || lock.amount < amount {
                    return Err(format!(
                        "the lock ({} wei, expiry {}) is not what the payer sent",
                        lock.amount, lock.expiry
                    ));
                }
                if spontaneous {
                    let preimage = B256::from(secret);
                    if preimage_hash(&preimage) != lock.hash {
                        return Err("the spontaneous payment's preimage does not open the lock".into());
                    }
                    return Ok(Decision::Claim(preimage, format!("spontaneous payment of {} wei", lock.amount)));
                }
                let key = lock.hash.to_vec();
                let mut inv = self
                    .get::<InvoiceRecord>(RecordKind::Invoice, &key)
                    .await
                    .map_err(|e| e.to_string())?
                    .ok_or("no invoice of this node has this hash")?;
                if inv.secret.0 != secret {
                    return Err("the payment secret is not the invoice's".into());
                }
                if lock.amount < inv.amount {
                    return Err(format!("{} wei is less than the invoice's {}", lock.amount, inv.amount));
                }
                if self.now().await > inv.expires_at {
                    return Err("the invoice expired".into());
                }
                inv.paid = Some(lock.amount);
                let bytes = json(&inv).map_err(|e| e.to_string())?;
                self.put(RecordKind::Invoice, key, Some(bytes)).await.map_err(|e| e.to_string())?;
                Ok(Decision::Claim(inv.preimage, format!("invoice paid with {} wei", lock.amount)))
            }
            (HopPayload::Forward { next, amount, expiry }, Some(next_packet)) => {
                let fees = locked(&self.inner.net).fees.ok_or("this node does not forward")?;
                if expiry != lock.expiry {
                    return Err("the instructions' expiry is not the lock's (one expiry per route)".into());
                }
                let fee = fees.of(amount).ok_or("amount overflow")?;
                if lock.amount < amount.saturating_add(fee) {
                    return Err(format!("the lock pays {} wei, forwarding {amount} costs {fee} more", lock.amount));
                }
                if self.now().await.saturating_add(FORWARD_MARGIN) > expiry {
                    return Err("too close to its expiry to forward".into());
                }
                let next = Address::from(next);
                self.refresh_pending(|c| c.peer_address() == next).await;
                let node = self.inner.node.lock().await;
                let chain_id = node.channel(channel).map(|c| c.params().chain_id);
                let out = node
                    .channel_ids()
                    .into_iter()
                    .filter(|id| *id != channel)
                    .filter_map(|id| node.channel(id))
                    .filter(|c| {
                        Some(c.params().chain_id) == chain_id
                            && c.peer_address() == next
                            && *c.phase() == Phase::Open
                            && c.frozen().is_none()
                            && matches!(c.funding(), Funding::Running | Funding::Unchecked)
                            && c.params().token == token
                            && c.spendable() >= amount
                    })
                    .max_by_key(|c| c.spendable())
                    .map(|c| c.params().contract)
                    .ok_or_else(|| format!("no channel to {next} can take {amount} wei"))?;
                Ok(Decision::Forward { out, amount, next_packet: next_packet.to_bytes().to_vec() })
            }
            _ => Err("the instructions do not match the packet (final hop with a next one, or not)".into()),
        }
    }

    /// A preimage learnt on `channel` (the peer's fulfil, or the chain): claims every incoming
    /// lock forwarded there on that hash (rule 9).
    async fn on_preimage(&self, channel: Address, hash: B256, preimage: B256) -> Result<()> {
        for mut r in self.pending(hash).await? {
            if r.state == ForwardState::Pending
                && r.out_channel == Some(channel)
                && r.out_lock.is_some_and(|l| l.hash == hash)
            {
                // Learnt on the incoming channel before the record says so (a crash in between
                // leaves the record pending, and `reconcile` learns it again).
                self.learn_preimage(r.in_channel, preimage).await?;
                r.state = ForwardState::Claimed;
                self.save_forward(&r).await?;
            }
        }
        Ok(())
    }

    /// An outgoing lock came back (released, expired, refused): the incoming one is released,
    /// unless its preimage is known (then it is claimed).
    async fn on_returned(&self, channel: Address, lock: HashLock) -> Result<()> {
        for mut r in self.pending(lock.hash).await? {
            if r.state == ForwardState::Pending && r.out_channel == Some(channel) && r.out_lock == Some(lock) {
                let known = self.inner.node.lock().await.channel(channel).and_then(|c| c.preimage(&lock.hash));
                if let Some(p) = known {
                    return self.on_preimage(channel, lock.hash, p).await;
                }
                r.state = ForwardState::Released;
                r.note = "the outgoing lock came back".into();
                self.save_forward(&r).await?;
                self.release_now(r.in_channel, r.in_lock.hash).await;
            }
        }
        Ok(())
    }

    /// Releases the peer's lock on `hash` without waiting for the countersignature (the tick and
    /// retransmissions finish it). A lock already gone is fine.
    async fn release_now(&self, channel: Address, hash: B256) {
        let _ = self.commit_and_send(channel, |node| node.release(channel, hash)).await;
    }
}

enum Decision {
    Claim(B256, String),
    Forward { out: Address, amount: Amount, next_packet: Vec<u8> },
}

/// The record key of a channel payment with a client-chosen id.
#[derive(Debug, Clone)]
pub(crate) struct PaymentKey {
    id: String,
    key: Vec<u8>,
}

/// A channel payment made with a client-chosen id (DESIGN §2 rule 11).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct IdPayment {
    id: String,
    channel: Address,
    amount: Amount,
    count: u64,
    /// The core's id of its first payment (the others follow).
    first: u64,
    status: IdStatus,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum IdStatus {
    InFlight,
    Acked { nonce: u64 },
    Failed { reason: String },
}

/// The longest payment id taken.
const MAX_PAYMENT_ID: usize = 256;

impl<S: Store + Send + 'static> Service<S> {
    /// Pays as [`Service::pay_until`], under a payment id the client chose: the same id given
    /// again pays once (DESIGN §2 rule 11). An id acknowledged returns the stored result; one that
    /// failed fails again; one in flight is reported in flight (its payments are never sent a
    /// second time); an id given for another channel, amount or count is refused. An id whose
    /// payments were never queued (refused at once, or a crash before the queue) may be used again.
    pub async fn pay_with_id(
        &self,
        pid: &str,
        channel: Address,
        amount: Amount,
        count: u64,
        timeout: std::time::Duration,
        stop: impl Future<Output = ()>,
    ) -> Result<super::Paid> {
        if pid.is_empty() || pid.len() > MAX_PAYMENT_ID {
            return Err(Error::Payment(format!("a payment id has 1 to {MAX_PAYMENT_ID} bytes")));
        }
        let key = PaymentKey { id: pid.to_string(), key: keccak256(pid.as_bytes()).to_vec() };
        // One request per id at a time: a second one (a client retrying while the first runs)
        // is told so, and never queues anything.
        let guard = keccak256([b"payment id:".as_slice(), pid.as_bytes()].concat());
        if !locked(&self.inner.paying).insert(guard) {
            return Err(Error::Payment(format!("payment {pid} is being made by another request: ask again later")));
        }
        let result = self.pay_with_id_once(&key, channel, amount, count, timeout, stop).await;
        locked(&self.inner.paying).remove(&guard);
        result
    }

    async fn pay_with_id_once(
        &self,
        key: &PaymentKey,
        channel: Address,
        amount: Amount,
        count: u64,
        timeout: std::time::Duration,
        stop: impl Future<Output = ()>,
    ) -> Result<super::Paid> {
        let pid = key.id.as_str();
        let total = amount.saturating_mul(Amount::from(count));
        if let Some(rec) = self.get::<IdPayment>(RecordKind::ChannelPayment, &key.key).await? {
            if (rec.channel, rec.amount, rec.count) != (channel, amount, count) {
                return Err(Error::Payment(format!(
                    "payment id {pid} was given to another payment ({} × {} wei on channel {})",
                    rec.count, rec.amount, rec.channel
                )));
            }
            return match rec.status {
                IdStatus::Acked { nonce } => Ok(super::Paid { count, amount: total, nonce }),
                IdStatus::Failed { reason } => Err(Error::Payment(format!("payment {pid} failed for good: {reason}"))),
                IdStatus::InFlight => match self.id_outcome(&rec).await {
                    (PaymentsOutcome::Acked, nonce) => {
                        self.save_id_payment(IdPayment { status: IdStatus::Acked { nonce }, ..rec }).await?;
                        Ok(super::Paid { count, amount: total, nonce })
                    }
                    (PaymentsOutcome::Cancelled, _) => {
                        let reason = "its payments were cancelled (refused, or the channel closed)".to_string();
                        self.save_id_payment(IdPayment { status: IdStatus::Failed { reason: reason.clone() }, ..rec })
                            .await?;
                        Err(Error::Payment(format!("payment {pid} failed for good: {reason}")))
                    }
                    _ => Err(Error::Payment(format!(
                        "payment {pid} is in flight: not acknowledged yet, and never sent twice; ask again later"
                    ))),
                },
            };
        }
        let result = self.pay_inner(channel, amount, count, timeout, stop, Some(key)).await;
        let Some(rec) = self.get::<IdPayment>(RecordKind::ChannelPayment, &key.key).await? else {
            return result; // nothing was queued
        };
        let status = match &result {
            Ok(paid) => IdStatus::Acked { nonce: paid.nonce },
            Err(e) => match self.id_outcome(&rec).await {
                (PaymentsOutcome::Acked, nonce) => IdStatus::Acked { nonce },
                (PaymentsOutcome::Cancelled, _) => IdStatus::Failed { reason: e.to_string() },
                _ => IdStatus::InFlight,
            },
        };
        let acked = match status {
            IdStatus::Acked { nonce } => Some(nonce),
            _ => None,
        };
        self.save_id_payment(IdPayment { status, ..rec }).await?;
        match (result, acked) {
            (Err(_), Some(nonce)) => Ok(super::Paid { count, amount: total, nonce }),
            (r, _) => r,
        }
    }

    /// What became of `rec`'s payments on its channel, and the channel's sheet now.
    async fn id_outcome(&self, rec: &IdPayment) -> (PaymentsOutcome, u64) {
        let node = self.inner.node.lock().await;
        match node.channel(rec.channel) {
            Some(ch) => (ch.payments_outcome(rec.first, rec.count), ch.nonce()),
            None => (PaymentsOutcome::Unknown, 0),
        }
    }

    async fn save_id_payment(&self, rec: IdPayment) -> Result<()> {
        let key = keccak256(rec.id.as_bytes()).to_vec();
        self.put(RecordKind::ChannelPayment, key, Some(json(&rec)?)).await
    }

    /// Records, under the channel's lock and before its payments are queued, a payment with an id.
    pub(crate) async fn record_in_flight(
        &self,
        key: &PaymentKey,
        channel: Address,
        amount: Amount,
        count: u64,
        first: u64,
    ) -> Result<()> {
        let rec = IdPayment { id: key.id.clone(), channel, amount, count, first, status: IdStatus::InFlight };
        self.put(RecordKind::ChannelPayment, key.key.clone(), Some(json(&rec)?)).await
    }

    /// Rewrites the record of a payment whose queueing an interrupt cut short: only `count`
    /// payments were queued.
    pub(crate) async fn record_queued(&self, key: &PaymentKey, count: u64) -> Result<()> {
        if let Some(rec) = self.get::<IdPayment>(RecordKind::ChannelPayment, &key.key).await?
            && rec.count != count
        {
            self.save_id_payment(IdPayment { count, ..rec }).await?;
        }
        Ok(())
    }

    /// Deletes a payment's record (nothing of it was queued).
    pub(crate) async fn forget_id_payment(&self, key: &PaymentKey) -> Result<()> {
        self.put(RecordKind::ChannelPayment, key.key.clone(), None).await
    }

    /// At start: a payment recorded in flight whose first id was never given out was never
    /// queued (the crash came between its record and its queue): its record goes.
    pub(crate) fn forget_unqueued_id_payments(&self) {
        let Ok(node) = self.inner.node.try_lock() else { return };
        let store = node.store();
        let Ok(rows) = store.records(RecordKind::ChannelPayment) else { return };
        for (k, v) in rows {
            let Ok(rec) = serde_json::from_slice::<IdPayment>(&v) else { continue };
            let queued = node.channel(rec.channel).is_some_and(|c| c.next_payment_id() > rec.first);
            if rec.status == IdStatus::InFlight && !queued {
                let _ = store.put_record(RecordKind::ChannelPayment, &k, None);
            }
        }
    }
}
