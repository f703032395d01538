//! One party's channels: handle, store durably, then reply.

use std::{collections::BTreeMap, sync::Arc};

use alloy_primitives::Address;
use alloy_primitives::B256;
use alloy_signer_local::PrivateKeySigner;
use vbank_core::{Channel, ChannelParams, ChannelState, Event, Funding, HashLock, Message, Settlement, Step};

/// The time lock expiries are judged by, in unix seconds.
pub type Clock = std::sync::Arc<dyn Fn() -> u64 + Send + Sync>;

/// The system clock's time now, in unix seconds.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The system clock.
pub fn system_clock() -> Clock {
    std::sync::Arc::new(unix_now)
}

use crate::{Error, Frame, Result, Store};

/// The channels of one party, with their store.
pub struct Node<S: Store> {
    signer: PrivateKeySigner,
    store: Arc<S>,
    channels: BTreeMap<Address, Channel>,
    /// Channels start [`Funding::Pending`] (payments wait for the chain to show both deposits).
    follows_chain: bool,
    /// While [`Node::stage`] runs: each channel changed, with its state before (`None`: added).
    staging: Option<BTreeMap<Address, Option<ChannelState>>>,
    /// The time lock expiries are judged by.
    clock: Clock,
    /// Whether events are journaled (stored with the states that produced them).
    journal: bool,
    /// The events of the steps staged so far, for the journal.
    journaled: Vec<(Address, Event)>,
    /// Lock moves proposals dropped, to be announced ([`Node::take_dropped`]).
    dropped: Vec<(Address, Event)>,
}

/// What [`Node::stage`] changed in memory and not yet stored: the channels' new states, to be
/// stored (one [`crate::GroupCommit`] batch) before [`Node::finish`] hands out what the changes
/// produced. Until then, nothing it produced may be sent and nothing may read those channels to
/// decide anything: the caller holds their locks (see [`crate::Service`]).
#[must_use = "the states must be stored and the result passed to Node::finish"]
#[derive(Debug)]
pub struct Staged<T> {
    before: BTreeMap<Address, Option<ChannelState>>,
    states: Vec<(Address, ChannelState)>,
    journal: Vec<(Address, Event)>,
    out: T,
}

impl<T> Staged<T> {
    /// The states to store, by channel.
    pub fn take_states(&mut self) -> Vec<(Address, ChannelState)> {
        std::mem::take(&mut self.states)
    }

    /// The events to journal with them (see [`Node::with_journal`]).
    pub fn take_journal(&mut self) -> Vec<(Address, Event)> {
        std::mem::take(&mut self.journal)
    }
}

impl<S: Store> std::fmt::Debug for Node<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("address", &self.signer.address()).field("channels", &self.channels.len()).finish()
    }
}

impl<S: Store> Node<S> {
    /// A node for `signer`, loading every channel in `store`.
    pub fn open(signer: PrivateKeySigner, store: S) -> Result<Self> {
        let mut channels = BTreeMap::new();
        for id in store.list()? {
            if let Some(state) = store.load(id)? {
                channels.insert(id, Channel::restore(state, signer.clone())?);
            }
        }
        Ok(Self {
            signer,
            store: Arc::new(store),
            channels,
            follows_chain: false,
            staging: None,
            clock: system_clock(),
            journal: false,
            journaled: Vec::new(),
            dropped: Vec::new(),
        })
    }

    /// The store.
    pub fn store(&self) -> &Arc<S> {
        &self.store
    }

    /// Runs `f` on this node with every save deferred: the channels it changes keep their new
    /// state in memory and the states to store come back in the [`Staged`]. Store them (e.g.
    /// with [`crate::GroupCommit::save`], without this node's lock held), then call
    /// [`Node::finish`] with the outcome, which undoes the changes if the save failed. If `f`
    /// fails, its changes are undone at once. Adding a channel is deferred likewise; removing
    /// one and remembering a peer are not.
    pub fn stage<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<Staged<T>> {
        if self.staging.is_some() {
            return Err(Error::Store("Node::stage called inside Node::stage".into()));
        }
        self.staging = Some(BTreeMap::new());
        self.journaled.clear();
        let out = f(self);
        let before = self.staging.take().unwrap_or_default();
        let journal = std::mem::take(&mut self.journaled);
        match out {
            Ok(out) => {
                let states =
                    before.keys().filter_map(|id| self.channels.get(id).map(|c| (*id, c.state().clone()))).collect();
                Ok(Staged { before, states, journal, out })
            }
            Err(e) => {
                self.undo(before);
                Err(e)
            }
        }
    }

    /// Completes a [`Node::stage`] once its states were stored (`saved`): hands out what it
    /// produced, or, if the save failed, puts every channel it changed back as it was (memory
    /// never ahead of the disk) and returns the error.
    pub fn finish<T>(&mut self, staged: Staged<T>, saved: Result<()>) -> Result<T> {
        match saved {
            Ok(()) => Ok(staged.out),
            Err(e) => {
                self.undo(staged.before);
                Err(e)
            }
        }
    }

    fn undo(&mut self, before: BTreeMap<Address, Option<ChannelState>>) {
        for (id, state) in before {
            match state {
                Some(state) => {
                    if let Some(ch) = self.channels.get_mut(&id) {
                        ch.reset(state);
                    }
                }
                None => {
                    self.channels.remove(&id);
                }
            }
        }
    }

    /// Journals the events of staged steps: [`Staged::take_journal`] hands them out with the
    /// states they came with, to be stored in the same transaction (see
    /// [`crate::GroupCommit::save_with`]), so an application that reads them from the store sees
    /// each one at least once, whatever crashes.
    pub fn with_journal(mut self) -> Self {
        self.journal = true;
        self
    }

    /// Adds `events` of channel `id` to the journal of the staged step.
    fn journal(&mut self, id: Address, events: &[Event]) {
        if self.journal && self.staging.is_some() {
            self.journaled.extend(events.iter().map(|e| (id, e.clone())));
        }
    }

    /// The lock moves proposals dropped since the last call (see
    /// [`vbank_core::Channel::take_dropped`]), by channel. With [`Node::stage`], take them only
    /// after [`Node::finish`] succeeded.
    pub fn take_dropped(&mut self) -> Vec<(Address, Event)> {
        std::mem::take(&mut self.dropped)
    }

    /// Judges lock expiries by `clock` (for instance the chain's time when it lags the system's,
    /// or a test's clock).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// A node whose channels' on-chain state is followed (by a watcher calling
    /// [`Node::set_funding`]): new channels, and stored ones never checked, start
    /// [`Funding::Pending`], so no payment is sent or accepted before the chain shows both
    /// deposits in.
    pub fn follow_chain(mut self) -> Self {
        self.follows_chain = true;
        for ch in self.channels.values_mut() {
            if ch.funding() == Funding::Unchecked {
                // In memory only: stored at the channel's next step, and set again at each start.
                let _ = ch.set_funding(Funding::Pending);
            }
        }
        self
    }

    /// This party's address.
    pub fn address(&self) -> Address {
        self.signer.address()
    }

    /// A channel by contract address.
    pub fn channel(&self, id: Address) -> Option<&Channel> {
        self.channels.get(&id)
    }

    /// The channels' contract addresses.
    pub fn channel_ids(&self) -> Vec<Address> {
        self.channels.keys().copied().collect()
    }

    /// The other parties of the channels here: who may connect.
    pub fn peers(&self) -> Vec<Address> {
        self.channels.values().map(Channel::peer_address).collect()
    }

    /// Runs `step` on channel `id` and stores the result; on any error (the core's or the
    /// store's) the channel is put back exactly as it was, so memory never runs ahead of the
    /// disk (DESIGN §2 rule 4): what a failed save left unstored is never retransmitted.
    ///
    /// Inside [`Node::stage`] the save is deferred: the state before is kept for
    /// [`Node::finish`] to restore.
    fn transact<T>(&mut self, id: Address, step: impl FnOnce(&mut Channel) -> Result<T>) -> Result<T> {
        let ch = self.channels.get_mut(&id).ok_or(Error::UnknownChannel(id))?;
        ch.set_now((self.clock)());
        let before = ch.state().clone();
        let out = match step(ch) {
            Ok(out) => out,
            Err(e) => {
                ch.reset(before);
                return Err(e);
            }
        };
        // Queued lock moves a proposal had to drop are announced once stored.
        let dropped = ch.take_dropped();
        if let Some(staging) = &mut self.staging {
            staging.entry(id).or_insert(Some(before));
        } else if let Err(e) = self.store.save(id, ch.state()) {
            ch.reset(before);
            return Err(e);
        }
        if !dropped.is_empty() {
            self.journal(id, &dropped);
            self.dropped.extend(dropped.into_iter().map(|e| (id, e)));
        }
        Ok(out)
    }

    /// Adds a new channel (stored before it is used); returns the opening message for party 0.
    pub fn add_channel(&mut self, params: ChannelParams, waiver_seed: alloy_primitives::B256) -> Result<Option<Frame>> {
        let id = params.contract;
        let me = params
            .parties
            .iter()
            .position(|p| *p == self.address())
            .ok_or(Error::NotPeer { from: self.address(), channel: id })?;
        let mut ch = Channel::new(params, me as u8, self.signer.clone(), waiver_seed)?;
        if self.follows_chain {
            let _ = ch.set_funding(Funding::Pending);
        }
        let first = if me == 0 { Some(ch.open()?) } else { None };
        // The opening carries the parameters: the peer verifies them on chain.
        let first = first.map(|message| Frame::for_channel(ch.params(), message));
        // Stored before it is kept: a failed save leaves no channel behind.
        match &mut self.staging {
            Some(staging) => {
                staging.entry(id).or_insert(None);
            }
            None => self.store.save(id, ch.state())?,
        }
        self.channels.insert(id, ch);
        Ok(first)
    }

    /// Remembers (durably) that `peer`'s node listens at `addr`.
    pub fn remember_peer(&mut self, peer: Address, addr: &str) -> Result<()> {
        self.store.save_peer(peer, addr)
    }

    /// Where the peers' nodes were last reached.
    pub fn peer_addresses(&self) -> Result<Vec<(Address, String)>> {
        self.store.peer_addresses()
    }

    /// Deletes a channel that never got a countersigned sheet (the peer refused to open it):
    /// nothing signed by the peer exists, so nothing can be lost. Returns whether it was deleted.
    pub fn forget(&mut self, id: Address) -> Result<bool> {
        match self.channels.get(&id) {
            Some(ch) if ch.latest().is_none() => {
                self.store.remove(id)?;
                self.channels.remove(&id);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Queues a payment on a channel and proposes if the channel is idle. The returned frame
    /// (if any) may be sent: its state is stored. Behind an update in flight the payment only
    /// joins the queue in memory, without a disk sync of its own: it is stored with the proposal
    /// that carries it. Until then nothing was sent of it; after a crash it was never made (its
    /// id is given again, and a payment-id record of it is dropped at start as never queued).
    pub fn pay(&mut self, id: Address, amount: u128) -> Result<(u64, Option<Frame>)> {
        let ch = self.channels.get_mut(&id).ok_or(Error::UnknownChannel(id))?;
        if !ch.is_idle() && *ch.phase() == vbank_core::Phase::Open && ch.frozen().is_none() {
            return Ok((ch.pay(amount)?, None));
        }
        let (pid, msg) = self.transact(id, |ch| {
            let pid = ch.pay(amount)?;
            Ok((pid, ch.propose()?))
        })?;
        Ok((pid, msg.map(|message| Frame::channel(id, message))))
    }

    /// The chain shows channel `id` liquidated with sheet `nonce`: decides the payments of a
    /// signed proposal of this party still unanswered (see
    /// [`vbank_core::Channel::liquidated_on_chain`]); stored before the events are returned.
    pub fn liquidated_on_chain(&mut self, id: Address, nonce: u64) -> Result<Vec<Event>> {
        let events = self.transact(id, |ch| Ok(ch.liquidated_on_chain(nonce)))?;
        self.journal(id, &events);
        Ok(events)
    }

    /// Derives ahead what channel `id`'s next update needs (see [`vbank_core::Channel::warm`]):
    /// call it once the frames of the last step went out, off the update's critical path.
    pub fn warm(&self, id: Address) {
        if let Some(ch) = self.channels.get(&id) {
            ch.warm();
        }
    }

    /// Proposes queued payments on a channel, if it is idle (after an update completed).
    pub fn propose(&mut self, id: Address) -> Result<Option<Frame>> {
        let ch = self.channels.get(&id).ok_or(Error::UnknownChannel(id))?;
        if (ch.queued() == 0 && ch.queued_lock_moves().is_empty()) || !ch.is_idle() || ch.frozen().is_some() {
            return Ok(None);
        }
        let msg = self.transact(id, |ch| Ok(ch.propose()?))?;
        Ok(msg.map(|message| Frame::channel(id, message)))
    }

    /// Signs a cooperative close of a channel at its current sheet (stored before it is returned).
    pub fn close(&mut self, id: Address) -> Result<Frame> {
        let step = self.transact(id, |ch| Ok(ch.close()?))?;
        let message = step.reply.ok_or(Error::Store("close produced no request".into()))?;
        Ok(Frame::channel(id, message))
    }

    /// Locks `amount` wei to the peer of channel `id` on `hash` until `expiry` (unix seconds):
    /// queued and proposed if the channel is idle (stored before the frame is returned).
    pub fn add_lock(
        &mut self,
        id: Address,
        amount: u128,
        hash: B256,
        expiry: u64,
    ) -> Result<(HashLock, Option<Frame>)> {
        self.lock_step(id, |ch| ch.add_lock(amount, hash, expiry))
    }

    /// As [`Node::add_lock`], with routing instructions for the peer's node (an onion packet).
    pub fn add_routed_lock(
        &mut self,
        id: Address,
        amount: u128,
        hash: B256,
        expiry: u64,
        packet: alloy_primitives::Bytes,
    ) -> Result<(HashLock, Option<Frame>)> {
        self.lock_step(id, |ch| ch.add_routed_lock(amount, hash, expiry, packet))
    }

    /// Queues a lock move on channel `id` with `queue` and proposes if the channel is idle (stored
    /// before the frame is returned).
    fn lock_step(
        &mut self,
        id: Address,
        queue: impl FnOnce(&mut Channel) -> vbank_core::Result<HashLock>,
    ) -> Result<(HashLock, Option<Frame>)> {
        let (lock, msg) = self.transact(id, |ch| {
            let lock = queue(ch)?;
            Ok((lock, ch.propose()?))
        })?;
        Ok((lock, msg.map(|message| Frame::channel(id, message))))
    }

    /// The time lock expiries are judged by (the node's clock).
    pub fn now(&self) -> u64 {
        (self.clock)()
    }

    /// Claims the peer's lock on channel `id` that `preimage` opens.
    pub fn fulfil(&mut self, id: Address, preimage: B256) -> Result<(HashLock, Option<Frame>)> {
        self.lock_step(id, |ch| ch.fulfil(preimage))
    }

    /// Gives up the peer's lock on channel `id` on `hash` (back to the peer).
    pub fn release(&mut self, id: Address, hash: B256) -> Result<(HashLock, Option<Frame>)> {
        self.lock_step(id, |ch| ch.release(hash))
    }

    /// Takes back this party's locks on channel `id` that expired unclaimed.
    pub fn expire_due(&mut self, id: Address) -> Result<(Vec<HashLock>, Option<Frame>)> {
        let (locks, msg) = self.transact(id, |ch| {
            let locks = ch.expire_due()?;
            Ok((locks, ch.propose()?))
        })?;
        Ok((locks, msg.map(|message| Frame::channel(id, message))))
    }

    /// The periodic duties of channel `id` at the clock's time: claims again the peer's locks
    /// whose preimage is known and that no fulfil is on its way for (a refused or withdrawn one),
    /// queues the expiry of this party's locks that expired unclaimed, and proposes. Nothing is
    /// stored unless there is something to do.
    pub fn tick(&mut self, id: Address) -> Result<Option<Frame>> {
        let ch = self.channels.get(&id).ok_or(Error::UnknownChannel(id))?;
        if ch.frozen().is_some() || *ch.phase() != vbank_core::Phase::Open {
            return Ok(None);
        }
        let (now, peer, margin) = ((self.clock)(), ch.peer_address(), ch.state().policy.grace.saturating_mul(2));
        let peer_index = u8::from(ch.params().parties[1] == peer);
        let unclaimed = ch.unclaimed();
        let expiring = ch.locks().iter().any(|l| l.receiver == peer_index && now > l.expiry.saturating_add(margin));
        if unclaimed.is_empty() && !expiring && (!ch.is_idle() || ch.queued() == 0) {
            return Ok(None);
        }
        let msg = self.transact(id, |ch| {
            // One claim per preimage; a claim that cannot be made now (two identical locks, the
            // second busy) does not hold up the others or the expiries.
            let mut seen = std::collections::HashSet::new();
            for p in unclaimed.into_iter().filter(|p| seen.insert(*p)) {
                let _ = ch.fulfil(p);
            }
            ch.expire_due()?;
            Ok(ch.propose()?)
        })?;
        Ok(msg.map(|message| Frame::channel(id, message)))
    }

    /// What this party must do on chain about channel `id`'s locks at chain time `now` (see
    /// [`Channel::chain_duties`]).
    pub fn chain_duties(&self, id: Address, now: u64, reveal_window: u64) -> Result<vbank_core::ChainDuties> {
        Ok(self.channels.get(&id).ok_or(Error::UnknownChannel(id))?.chain_duties(now, reveal_window))
    }

    /// Remembers (durably) a preimage for channel `id` (a payee's own, or one learnt on chain):
    /// a lock on its hash is then fulfilled, and never let expire.
    pub fn learn_preimage(&mut self, id: Address, preimage: B256) -> Result<B256> {
        self.transact(id, |ch| Ok(ch.learn_preimage(preimage)))
    }

    /// Cancels (durably) the queued payments `first..=last` of `each` wei that were not proposed
    /// yet (see [`Channel::cancel_queued`]): a payment reported as failed never goes out later.
    pub fn cancel_queued(&mut self, id: Address, first: u64, last: u64, each: u128) -> Result<Vec<u64>> {
        self.transact(id, |ch| Ok(ch.cancel_queued(first, last, each)))
    }

    /// The peer refused this party's proposal on channel `id`: abandons it durably (see
    /// [`Channel::withdraw_proposal_if`]) and returns what it cancelled, as events.
    pub fn withdraw_proposal(&mut self, id: Address, refused: alloy_primitives::B256) -> Result<Vec<Event>> {
        if self.channels.get(&id).is_none_or(Channel::is_idle) {
            return Ok(Vec::new());
        }
        let events = self.transact(id, |ch| Ok(ch.withdraw_proposal_if(refused)))?;
        self.journal(id, &events);
        Ok(events)
    }

    /// Freezes channel `id` durably and chooses how to settle it (DESIGN §2 rule 6, see
    /// [`Channel::freeze`]): under the caller's hold on this node, from the stored state, and
    /// stored before it returns, so no update is signed after the choice. Returns the choice and
    /// the events (payments that will not be made).
    pub fn freeze(&mut self, id: Address, reason: &str, violation: bool) -> Result<(Settlement, Vec<Event>)> {
        let (settlement, events) = self.transact(id, |ch| {
            let (settlement, step) = ch.freeze(reason, violation);
            Ok((settlement, step.events))
        })?;
        self.journal(id, &events);
        Ok((settlement, events))
    }

    /// Records what the chain shows of channel `id`'s contract (stored when it changes); a
    /// channel that ended on chain is frozen.
    pub fn set_funding(&mut self, id: Address, funding: Funding) -> Result<Vec<Event>> {
        let ch = self.channels.get(&id).ok_or(Error::UnknownChannel(id))?;
        if ch.funding() == funding {
            return Ok(Vec::new());
        }
        let events = self.transact(id, |ch| Ok(ch.set_funding(funding).events))?;
        self.journal(id, &events);
        Ok(events)
    }

    /// Handles a frame from the authenticated peer `from`: its first message (see
    /// [`Node::respond`] for a frame carrying more). On success the channel's new state is
    /// stored before this returns the reply and the events; on error nothing changed.
    pub fn handle(&mut self, from: Address, frame: &Frame) -> Result<(Option<Frame>, Vec<Event>)> {
        let Frame::Channel { channel, message, .. } = frame else {
            return Ok((None, Vec::new()));
        };
        self.handle_message(from, *channel, message)
    }

    fn handle_message(
        &mut self,
        from: Address,
        channel: Address,
        message: &Message,
    ) -> Result<(Option<Frame>, Vec<Event>)> {
        let ch = self.channels.get(&channel).ok_or(Error::UnknownChannel(channel))?;
        if ch.peer_address() != from {
            return Err(Error::NotPeer { from, channel });
        }
        // Every accepted message is stored, whether or not it produced a reply or an event: the
        // core may have moved (a re-queued proposal, a recorded signature).
        let Step { reply, events } = self.transact(channel, |ch| Ok(ch.handle(message)?))?;
        self.journal(channel, &events);
        Ok((reply.map(|message| Frame::channel(channel, message)), events))
    }

    /// Answers a frame from the authenticated `peer`: the frames to send back (the replies, the
    /// next proposal of queued payments, or a [`Frame::Refused`] saying why a message was
    /// refused) and the events. The messages of a frame are handled in order, each checked
    /// whole; a refused one ends the frame (the later ones build on it), and what the earlier
    /// ones changed stands. A duplicate (severity `Ignore`) gets no answer. What goes back to one
    /// channel is joined into one frame ([`crate::coalesce`]). Only a store failure is an error:
    /// then nothing may be sent.
    pub fn respond(&mut self, peer: Address, frame: &Frame) -> Result<(Vec<Frame>, Vec<Event>)> {
        let Frame::Channel { channel, message, more, .. } = frame else {
            return Ok((Vec::new(), Vec::new()));
        };
        let channel = *channel;
        if more.len() > crate::MAX_MORE {
            let reason = format!("a frame carries at most {} messages", crate::MAX_MORE + 1);
            return Ok((vec![Frame::Refused { channel: Some(channel), reason, about: None }], Vec::new()));
        }
        let (mut out, mut events, mut taken) = (Vec::new(), Vec::new(), false);
        for message in std::iter::once(message).chain(more) {
            let about = Some(message.digest());
            match self.handle_message(peer, channel, message) {
                Ok((reply, e)) => {
                    out.extend(reply);
                    events.extend(e);
                    taken = true;
                }
                Err(e @ Error::Store(_)) => return Err(e),
                Err(Error::Protocol(e)) if e.severity() == vbank_core::Severity::Ignore => {}
                // DESIGN §2 rule 5: a wrong or inconsistent revocation proves a broken or cheating
                // peer. The channel is frozen durably (no further update) and settled with the
                // latest sheet by whoever follows the Frozen event with a chain endpoint.
                Err(Error::Protocol(e)) if e.severity() == vbank_core::Severity::Close => {
                    let reason = format!("protocol violation by the peer: {e}");
                    let (_, frozen) = self.freeze(channel, &reason, true)?;
                    events.extend(frozen);
                    out.push(Frame::Refused { channel: Some(channel), reason, about });
                    return Ok((out, events));
                }
                Err(e) => {
                    out.push(Frame::Refused { channel: Some(channel), reason: e.to_string(), about });
                    break;
                }
            }
        }
        if taken {
            out.extend(self.propose(channel)?);
        }
        Ok((crate::coalesce(out), events))
    }

    /// The frames to send to `peer` after (re)connecting: every channel's retransmissions.
    pub fn on_connect(&self, peer: Address) -> Result<Vec<Frame>> {
        let mut out = Vec::new();
        for ch in self.channels.values() {
            if ch.peer_address() == peer {
                out.extend(
                    ch.retransmit()?.into_iter().map(|message: Message| Frame::for_channel(ch.params(), message)),
                );
            }
        }
        Ok(out)
    }
}

/// Serves one authenticated connection to `peer` (its BOLT #8 `session` done, see
/// [`crate::transport`]): retransmits what each shared channel is waiting on, then answers every
/// frame (after storing the new state) until the peer hangs up. A refused frame is answered with
/// [`Frame::Refused`] and the connection goes on; the channel stays at its last valid state. A
/// frame that fails authentication ends the connection. `on_event` sees every event.
pub async fn serve<S, T>(
    stream: &mut T,
    session: &mut crate::Session,
    node: &tokio::sync::Mutex<Node<S>>,
    peer: Address,
    mut on_event: impl FnMut(Address, &Event),
) -> Result<()>
where
    S: Store,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use crate::transport::{read_frame, write_frame};
    for f in node.lock().await.on_connect(peer)? {
        write_frame(stream, &mut session.sender, &f).await?;
    }
    loop {
        let frame = match read_frame(stream, &mut session.receiver).await {
            Ok(f) => f,
            Err(Error::Closed) => return Ok(()),
            Err(e @ (Error::Malformed(_) | Error::Oversize(_))) => {
                // An authentic but bad frame: say so and hang up; state is untouched.
                let refused = Frame::Refused { channel: None, reason: e.to_string(), about: None };
                let _ = write_frame(stream, &mut session.sender, &refused).await;
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        let channel = match &frame {
            Frame::Channel { channel, .. } => Some(*channel),
            _ => None,
        };
        let (out, events) = node.lock().await.respond(peer, &frame)?;
        if let Some(id) = channel {
            for e in &events {
                on_event(id, e);
            }
        }
        for f in &out {
            write_frame(stream, &mut session.sender, f).await?;
        }
        if let Some(id) = channel {
            node.lock().await.warm(id);
        }
    }
}
