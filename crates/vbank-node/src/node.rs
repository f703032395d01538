//! One party's channels: handle, store durably, then reply.

use std::collections::BTreeMap;

use alloy_primitives::Address;
use alloy_signer_local::PrivateKeySigner;
use vbank_core::{Channel, ChannelParams, Event, Message, Step};

use crate::{Error, Frame, Result, Store};

/// The channels of one party, with their store.
pub struct Node<S: Store> {
    signer: PrivateKeySigner,
    store: S,
    channels: BTreeMap<Address, Channel>,
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
        Ok(Self { signer, store, channels })
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

    fn persist(&self, id: Address) -> Result<()> {
        let ch = self.channels.get(&id).ok_or(Error::UnknownChannel(id))?;
        self.store.save(id, ch.state())
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
        let first = if me == 0 { Some(ch.open()?) } else { None };
        self.channels.insert(id, ch);
        self.persist(id)?;
        Ok(first.map(|message| Frame::Channel { channel: id, message }))
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
    /// (if any) may be sent: its state is stored.
    pub fn pay(&mut self, id: Address, amount: u128) -> Result<(u64, Option<Frame>)> {
        let ch = self.channels.get_mut(&id).ok_or(Error::UnknownChannel(id))?;
        let pid = ch.pay(amount)?;
        let msg = ch.propose()?;
        self.persist(id)?;
        Ok((pid, msg.map(|message| Frame::Channel { channel: id, message })))
    }

    /// Proposes queued payments on a channel, if it is idle (after an update completed).
    pub fn propose(&mut self, id: Address) -> Result<Option<Frame>> {
        let ch = self.channels.get_mut(&id).ok_or(Error::UnknownChannel(id))?;
        let msg = ch.propose()?;
        if msg.is_some() {
            self.persist(id)?;
        }
        Ok(msg.map(|message| Frame::Channel { channel: id, message }))
    }

    /// Signs a cooperative close of a channel at its current sheet (stored before it is returned).
    pub fn close(&mut self, id: Address) -> Result<Frame> {
        let ch = self.channels.get_mut(&id).ok_or(Error::UnknownChannel(id))?;
        let step = ch.close()?;
        self.persist(id)?;
        let message = step.reply.ok_or(Error::Store("close produced no request".into()))?;
        Ok(Frame::Channel { channel: id, message })
    }

    /// Handles a frame from the authenticated peer `from`. On success the channel's new state is
    /// stored before this returns the reply and the events; on error nothing changed.
    pub fn handle(&mut self, from: Address, frame: &Frame) -> Result<(Option<Frame>, Vec<Event>)> {
        let Frame::Channel { channel, message } = frame else {
            return Ok((None, Vec::new()));
        };
        let ch = self.channels.get_mut(channel).ok_or(Error::UnknownChannel(*channel))?;
        if ch.peer_address() != from {
            return Err(Error::NotPeer { from, channel: *channel });
        }
        let Step { reply, events } = ch.handle(message)?;
        // Every accepted message is stored, whether or not it produced a reply or an event: the
        // core may have moved (a re-queued proposal, a recorded signature).
        self.persist(*channel)?;
        Ok((reply.map(|message| Frame::Channel { channel: *channel, message }), events))
    }

    /// Answers a frame from the authenticated `peer`: the frames to send back (the reply, the
    /// next proposal of queued payments, or a [`Frame::Refused`] saying why the frame was
    /// refused) and the events. A duplicate (severity `Ignore`) gets no answer. Only a store
    /// failure is an error: then nothing may be sent.
    pub fn respond(&mut self, peer: Address, frame: &Frame) -> Result<(Vec<Frame>, Vec<Event>)> {
        let channel = match frame {
            Frame::Channel { channel, .. } => Some(*channel),
            _ => None,
        };
        match self.handle(peer, frame) {
            Ok((reply, events)) => {
                let mut out: Vec<Frame> = reply.into_iter().collect();
                if let Some(id) = channel {
                    out.extend(self.propose(id)?);
                }
                Ok((out, events))
            }
            Err(e @ Error::Store(_)) => Err(e),
            Err(Error::Protocol(e)) if e.severity() == vbank_core::Severity::Ignore => Ok((Vec::new(), Vec::new())),
            Err(e) => Ok((vec![Frame::Refused { channel, reason: e.to_string() }], Vec::new())),
        }
    }

    /// The frames to send to `peer` after (re)connecting: every channel's retransmissions.
    pub fn on_connect(&self, peer: Address) -> Result<Vec<Frame>> {
        let mut out = Vec::new();
        for (id, ch) in &self.channels {
            if ch.peer_address() == peer {
                out.extend(
                    ch.retransmit()?.into_iter().map(|message: Message| Frame::Channel { channel: *id, message }),
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
                let refused = Frame::Refused { channel: None, reason: e.to_string() };
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
    }
}
