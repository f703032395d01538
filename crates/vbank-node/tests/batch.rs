//! Frames carrying several messages of one channel (`Frame::Channel.more`): handled in order and
//! stored in one step; the first refused message ends the frame, what came before it stands.

use alloy_primitives::B256;
use vbank_core::{Event, Funding, Message};
use vbank_node::{Frame, MAX_MORE, MemoryStore, Node};

mod common;
use common::{exchange, key, params};

type Pair = (Node<MemoryStore>, Node<MemoryStore>);

/// Alice and Bob with channel 7 open and seen running on chain; Alice proposed sheet 0, so her
/// proposals are signed.
fn opened() -> Pair {
    let mut alice = Node::open(key(1), MemoryStore::default()).expect("alice");
    let mut bob = Node::open(key(2), MemoryStore::default()).expect("bob");
    bob.add_channel(params(7), B256::repeat_byte(2)).expect("bob's channel");
    let first = alice.add_channel(params(7), B256::repeat_byte(1)).expect("alice's channel");
    exchange(&mut alice, &mut bob, vec![(0, first.expect("sheet 0"))]);
    for node in [&mut alice, &mut bob] {
        node.set_funding(params(7).contract, Funding::Running).expect("running");
    }
    (alice, bob)
}

fn batch(first: &Frame, more: Vec<Message>) -> Frame {
    let Frame::Channel { channel, message, .. } = first else { panic!("{first:?}") };
    Frame::Channel { channel: *channel, message: message.clone(), params: None, more }
}

fn message(f: &Frame) -> Message {
    let Frame::Channel { message, .. } = f else { panic!("{f:?}") };
    message.clone()
}

#[test]
fn the_revocation_and_the_next_proposal_travel_in_one_frame_and_one_step() {
    let (mut alice, mut bob) = opened();
    let (id, a, b) = (params(7).contract, key(1).address(), key(2).address());
    let (_, propose) = alice.pay(id, 10).expect("pay");
    let (answer, _) = bob.respond(a, &propose.expect("proposal")).expect("accepted");
    alice.pay(id, 20).expect("queued behind the update");
    // Alice's reply is her revocation and her next proposal, in one frame.
    let (out, events) = alice.respond(b, &answer[0]).expect("answer taken");
    assert!(events.iter().any(|e| matches!(e, Event::PaymentsAcked { amount: 10, .. })), "{events:?}");
    let [Frame::Channel { message: Message::Revoke { .. }, more, .. }] = &out[..] else { panic!("{out:?}") };
    assert!(matches!(more[..], [Message::Propose { signature: Some(_), .. }]), "{more:?}");
    let (reply, events) = bob.respond(a, &out[0]).expect("both handled");
    assert!(events.iter().any(|e| matches!(e, Event::Received { amount: 10, nonce: 1 })), "{events:?}");
    assert!(matches!(&reply[..], [Frame::Channel { message: Message::Countersign { nonce: 2, .. }, .. }]));
}

#[test]
fn a_refused_message_ends_the_frame_and_what_came_before_it_stands() {
    let (mut alice, mut bob) = opened();
    let (id, a) = (params(7).contract, key(1).address());
    let (_, propose) = alice.pay(id, 10).expect("pay");
    let propose = propose.expect("proposal");
    // An old message (ignored: severity `Ignore`) first, then the proposal: the proposal is
    // handled.
    let old = Message::Propose {
        nonce: 0,
        balances: [1_000_000, 1_000_000],
        waiver: alloy_primitives::Address::repeat_byte(7),
        locks: vec![],
        moves: vec![],
        onions: vec![],
        signature: None,
    };
    let frame = Frame::Channel { channel: id, message: old, params: None, more: vec![message(&propose)] };
    let (out, _) = bob.respond(a, &frame).expect("answer");
    assert!(matches!(&out[..], [Frame::Channel { message: Message::Countersign { nonce: 1, .. }, .. }]), "{out:?}");
    // A frame whose middle message is refused: the first counts, the refusal names the middle
    // one, the last is not handled.
    let (mut alice, mut bob) = opened();
    let (_, propose) = alice.pay(id, 10).expect("pay");
    let propose = message(&propose.expect("proposal"));
    let bad = Message::Commit { nonce: 9, signature: vbank_core::Sig([1; 65]), revocation: None };
    let frame = Frame::Channel {
        channel: id,
        message: propose.clone(),
        params: None,
        more: vec![bad.clone(), Message::Revoke { nonce: 0, secret: B256::repeat_byte(1) }],
    };
    let (out, _) = bob.respond(a, &frame).expect("answered");
    assert!(matches!(message(&out[0]), Message::Countersign { nonce: 1, .. }), "{out:?}");
    let Frame::Refused { about, .. } = &out[1] else { panic!("{out:?}") };
    assert_eq!(*about, Some(bad.digest()));
    assert_eq!(out.len(), 2, "the last message was not handled: {out:?}");
    assert_eq!(bob.channel(id).expect("ch").nonce(), 1, "Bob took the proposal");
    // The update completes as usual.
    exchange(&mut alice, &mut bob, vec![(1, out[0].clone())]);
    assert_eq!(alice.channel(id).expect("ch").balances(), [999_990, 1_000_010]);
}

#[test]
fn a_frame_with_too_many_messages_is_refused_whole() {
    let (mut alice, mut bob) = opened();
    let (id, a) = (params(7).contract, key(1).address());
    let (_, propose) = alice.pay(id, 10).expect("pay");
    let propose = propose.expect("proposal");
    let before = bob.channel(id).expect("ch").state().clone();
    let frame = batch(&propose, vec![message(&propose); MAX_MORE + 1]);
    let (out, events) = bob.respond(a, &frame).expect("answered");
    assert!(matches!(&out[..], [Frame::Refused { .. }]) && events.is_empty(), "{out:?}");
    assert_eq!(bob.channel(id).expect("ch").state(), &before, "nothing handled");
}
