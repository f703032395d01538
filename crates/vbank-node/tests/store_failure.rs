//! A store that fails on demand (disk full, I/O error): the node's memory never runs ahead of
//! what is stored, so nothing unstored is ever sent, now or after a reconnect (review finding 3,
//! DESIGN §2 rules 1 and 4). Also: a wrong revocation freezes the channel durably (rule 5).

use std::sync::atomic::{AtomicBool, Ordering};

use alloy_primitives::Address;
use vbank_core::{ChannelState, Event, Message, Settlement};
use vbank_node::{Error, Frame, MemoryStore, Node, Result, Store};

mod common;
use common::{exchange, key, params};

/// A [`MemoryStore`] whose saves fail while `fail` is set.
#[derive(Default)]
struct FlakyStore {
    inner: MemoryStore,
    fail: AtomicBool,
}

impl FlakyStore {
    fn check(&self) -> Result<()> {
        if self.fail.load(Ordering::SeqCst) { Err(Error::Store("disk full (test)".into())) } else { Ok(()) }
    }
}

impl Store for &'static FlakyStore {
    fn save(&self, channel: Address, state: &ChannelState) -> Result<()> {
        self.check()?;
        self.inner.save(channel, state)
    }
    fn load(&self, channel: Address) -> Result<Option<ChannelState>> {
        self.inner.load(channel)
    }
    fn list(&self) -> Result<Vec<Address>> {
        self.inner.list()
    }
    fn remove(&self, channel: Address) -> Result<()> {
        self.check()?;
        self.inner.remove(channel)
    }
    fn save_peer(&self, peer: Address, addr: &str) -> Result<()> {
        self.check()?;
        self.inner.save_peer(peer, addr)
    }
    fn peer_addresses(&self) -> Result<Vec<(Address, String)>> {
        self.inner.peer_addresses()
    }
}

fn leak() -> &'static FlakyStore {
    Box::leak(Box::default())
}

fn opened() -> (Node<&'static FlakyStore>, &'static FlakyStore, Node<MemoryStore>, Address) {
    let store = leak();
    let mut alice = Node::open(key(1), store).expect("alice");
    let mut bob = Node::open(key(2), MemoryStore::default()).expect("bob");
    bob.add_channel(params(7), alloy_primitives::B256::repeat_byte(2)).expect("bob's channel");
    let first = alice.add_channel(params(7), alloy_primitives::B256::repeat_byte(1)).expect("alice's channel");
    exchange(&mut alice, &mut bob, vec![(0, first.expect("sheet 0"))]);
    // (Both follow the chain and saw the deposits: Alice's payments go out as signed proposals.)
    alice.set_funding(params(7).contract, vbank_core::Funding::Running).expect("running");
    bob.set_funding(params(7).contract, vbank_core::Funding::Running).expect("running");
    (alice, store, bob, params(7).contract)
}

#[test]
fn a_failed_save_leaves_memory_as_stored_and_nothing_unstored_is_resent() {
    let (mut alice, store, mut bob, id) = opened();
    let bob_addr = key(2).address();
    // Bob pays Alice: his proposal, her countersignature, his commit (with his revocation).
    let (_, propose) = bob.pay(id, 500).expect("bob pays");
    let (countersign, _) = alice.respond(bob_addr, &propose.expect("proposal")).expect("countersign");
    let (commit, _) = bob.respond(key(1).address(), &countersign[0]).expect("commit");
    let stored_before = store.inner.load(id).expect("load").expect("stored");
    // Alice's disk fails as she takes the commit (which would store sheet 1 and reveal sheet 0).
    store.fail.store(true, Ordering::SeqCst);
    let err = alice.respond(bob_addr, &commit[0]).expect_err("the save fails");
    assert!(matches!(err, Error::Store(_)), "{err}");
    // Memory is exactly what is stored: sheet 0, nothing revealed.
    assert_eq!(alice.channel(id).expect("channel").state(), &stored_before);
    assert_eq!(alice.channel(id).expect("channel").nonce(), 0);
    let resent = alice.on_connect(bob_addr).expect("retransmit");
    assert!(
        !resent.iter().any(|f| matches!(f, Frame::Channel { message: Message::Revoke { .. }, .. })),
        "a revocation of an unreplaced sheet would be sent: {resent:?}"
    );
    // Behind the update in flight a payment only joins the queue in memory (it is stored with the
    // proposal that carries it); a local request that must store and cannot changes nothing.
    let (pid, frame) = alice.pay(id, 1).expect("queued in memory");
    assert!(frame.is_none());
    assert!(alice.cancel_queued(id, pid, pid, 1).is_err());
    assert_eq!(alice.channel(id).expect("channel").queued(), 1);
    // The disk recovers: Bob's retransmitted commit completes the update.
    store.fail.store(false, Ordering::SeqCst);
    let (revoke, events) = alice.respond(bob_addr, &commit[0]).expect("commit again");
    assert!(events.iter().any(|e| matches!(e, Event::Received { amount: 500, nonce: 1 })));
    exchange(&mut alice, &mut bob, revoke.into_iter().map(|f| (0, f)).collect());
    // (Her queued wei went out once the update was done.)
    assert_eq!(alice.channel(id).expect("channel").balances(), [1_000_499, 999_501]);
    let stored = store.inner.load(id).expect("load").expect("stored");
    assert_eq!(vbank_core::Channel::restore(stored, key(1)).expect("restore").nonce(), 2);
}

#[test]
fn a_wrong_revocation_freezes_the_channel_durably() {
    let (mut alice, store, mut bob, id) = opened();
    let bob_addr = key(2).address();
    // Alice pays (a signed proposal); Bob's answer carries a forged revocation.
    let (_, propose) = alice.pay(id, 300).expect("alice pays");
    let (countersign, _) = bob.respond(key(1).address(), &propose.expect("proposal")).expect("countersign");
    let forged = match &countersign[0] {
        Frame::Channel {
            channel,
            message: Message::Countersign { nonce, signature, waiver, revocation: Some(_), next },
            ..
        } => Frame::Channel {
            more: Vec::new(),
            channel: *channel,
            message: Message::Countersign {
                nonce: *nonce,
                signature: *signature,
                waiver: *waiver,
                revocation: Some(alloy_primitives::B256::repeat_byte(9)),
                next: *next,
            },
            params: None,
        },
        other => panic!("expected a countersignature with a revocation, got {other:?}"),
    };
    let (out, events) = alice.respond(bob_addr, &forged).expect("answered");
    assert!(matches!(&out[..], [Frame::Refused { .. }]));
    let Some(Event::Frozen { settlement: Settlement::Liquidate(sheet), violation: true, .. }) = events.last() else {
        panic!("the channel is frozen for a liquidation: {events:?}")
    };
    assert_eq!(sheet.nonce, 0, "her latest sheet, never revoked: the forged answer's sheet was not taken");
    // Durably: a restart still refuses every update.
    let mut again = Node::open(key(1), store).expect("reopen");
    assert!(again.channel(id).expect("channel").frozen().is_some());
    assert!(matches!(again.pay(id, 1), Err(Error::Protocol(vbank_core::Error::Frozen(_)))));
}

/// The same through group commit: a step staged in memory whose batch fails to store is undone by
/// `finish` (memory as stored, nothing to send), and succeeds once the disk recovers.
#[tokio::test]
async fn a_failed_group_commit_leaves_memory_as_stored() {
    let (mut alice, store, mut bob, id) = opened();
    let bob_addr = key(2).address();
    let (_, propose) = bob.pay(id, 500).expect("bob pays");
    let (countersign, _) = alice.respond(bob_addr, &propose.expect("proposal")).expect("countersign");
    let (commit, _) = bob.respond(key(1).address(), &countersign[0]).expect("commit");
    let stored_before = store.inner.load(id).expect("load").expect("stored");
    let writer = vbank_node::GroupCommit::spawn(std::sync::Arc::clone(alice.store()));
    store.fail.store(true, Ordering::SeqCst);
    let mut staged = alice.stage(|node| node.respond(bob_addr, &commit[0])).expect("staged");
    let states = staged.take_states();
    assert_eq!(states.len(), 1, "one channel changed");
    assert_eq!(alice.channel(id).expect("channel").nonce(), 1, "in memory, under the caller's lock");
    let saved = writer.save(states).await;
    assert!(matches!(saved, Err(Error::Store(_))), "{saved:?}");
    let err = alice.finish(staged, saved).expect_err("the batch failed");
    assert!(matches!(err, Error::Store(_)), "{err}");
    assert_eq!(alice.channel(id).expect("channel").state(), &stored_before, "undone");
    // A local request staged and refused by the core changes nothing either.
    assert!(alice.stage(|node| node.pay(id, u128::MAX)).is_err());
    assert_eq!(alice.channel(id).expect("channel").state(), &stored_before);
    // The disk recovers: the retransmitted commit goes through the writer and completes.
    store.fail.store(false, Ordering::SeqCst);
    let mut staged = alice.stage(|node| node.respond(bob_addr, &commit[0])).expect("staged");
    let saved = writer.save(staged.take_states()).await;
    let (revoke, _) = alice.finish(staged, saved).expect("stored");
    exchange(&mut alice, &mut bob, revoke.into_iter().map(|f| (0, f)).collect());
    assert_eq!(alice.channel(id).expect("channel").balances(), [1_000_500, 999_500]);
    assert_eq!(writer.batches(), 2);
}
