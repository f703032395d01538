//! Protocol tests: two channels in memory, unit scenarios and property tests.

use std::collections::VecDeque;

use alloy_primitives::{Address, B256, U256};
use alloy_signer_local::PrivateKeySigner;
use proptest::prelude::*;

use crate::{
    BalanceSheet, ChainDuties, Channel, ChannelParams, ChannelState, Close, Error, Event, Funding, HashLock,
    LockChange, LockMove, Message, Phase, Reveal, Settlement, Severity, Sig, Waiver, preimage_hash, recover,
};

/// The start of the tests' clock (unix seconds).
const T0: u64 = 1_800_000_000;

/// The tests' preimages: lock `i` is on `secret(i)`.
fn secret(i: usize) -> B256 {
    B256::with_last_byte(0x40 + (i % 8) as u8)
}

const DEPOSITS: [u128; 2] = [1_000_000, 600_000];

fn key(n: u8) -> PrivateKeySigner {
    PrivateKeySigner::from_bytes(&B256::with_last_byte(n)).expect("valid key")
}

fn params() -> ChannelParams {
    ChannelParams {
        chain_id: 31337,
        contract: Address::repeat_byte(0xcc),
        parties: [key(1).address(), key(2).address()],
        deposits: DEPOSITS,
        lock_period: 3600,
        token: Address::ZERO,
        salt: B256::ZERO,
    }
}

/// A peer sheet a party countersigned: nonce, balances, locks.
type SignedSheet = (u64, [u128; 2], Vec<HashLock>);

/// Both ends of a channel and the messages in flight to each.
struct Pair {
    ch: [Channel; 2],
    inbox: [VecDeque<Message>; 2],
    /// Peer sheets each party signed: (nonce, balances, locks).
    signed: [Vec<SignedSheet>; 2],
    /// The clock both parties see.
    now: u64,
    /// Nonces whose waiver secret each party revealed.
    revealed: [Vec<u64>; 2],
    /// Wei each party asked to pay, received (settled), had acknowledged.
    paid: [u128; 2],
    received: [u128; 2],
    acked: [u128; 2],
    history: Vec<Message>,
    /// The latest countersignature each party was last checked with.
    verified: [Option<Sig>; 2],
    /// What each party chose when it froze the channel, if it did.
    frozen: [Option<Settlement>; 2],
}

impl Pair {
    fn new() -> Self {
        let p = params();
        let mut a = Channel::new(p.clone(), 0, key(1), B256::repeat_byte(0xa1)).expect("channel a");
        let mut b = Channel::new(p, 1, key(2), B256::repeat_byte(0xb2)).expect("channel b");
        a.set_now(T0);
        b.set_now(T0);
        Self {
            ch: [a, b],
            inbox: [VecDeque::new(), VecDeque::new()],
            signed: [Vec::new(), Vec::new()],
            now: T0,
            revealed: [Vec::new(), Vec::new()],
            paid: [0; 2],
            received: [0; 2],
            acked: [0; 2],
            history: Vec::new(),
            verified: [None; 2],
            frozen: [None, None],
        }
    }

    /// Opened, and both deposits seen on chain (as nodes that follow the chain record it).
    fn opened() -> Self {
        let mut p = Self::new();
        let m = p.ch[0].open().expect("open");
        p.send(0, m);
        p.settle();
        assert_eq!(p.ch[0].phase(), &Phase::Open);
        assert_eq!(p.ch[1].phase(), &Phase::Open);
        for c in &mut p.ch {
            c.set_funding(Funding::Running);
        }
        p
    }

    /// Opened, then Bob paid once: Bob proposed the latest sheet, so Alice's next proposal is an
    /// unsigned one (the four-message update).
    fn opened_unsigned() -> Self {
        let mut p = Self::opened();
        p.pay(1, 1).expect("pay");
        p.settle();
        p
    }

    /// Records what `from` signs or reveals in `m`, and queues it for the other party.
    fn send(&mut self, from: usize, m: Message) {
        match &m {
            Message::Commit { nonce, revocation, .. } => {
                self.signed[from].push((*nonce, self.ch[from].balances(), self.ch[from].locks().to_vec()));
                if revocation.is_some() {
                    self.revealed[from].push(nonce - 1);
                }
            }
            Message::Revoke { nonce, .. } => self.revealed[from].push(*nonce),
            // A signed proposal signs the peer's sheet; the answer to one revokes the sheet before.
            Message::Propose { nonce, balances, locks, signature: Some(_), .. } => {
                self.signed[from].push((*nonce, *balances, locks.clone()))
            }
            Message::Countersign { nonce, revocation: Some(_), .. } => self.revealed[from].push(nonce - 1),
            _ => {}
        }
        self.history.push(m.clone());
        self.inbox[1 - from].push_back(m);
    }

    fn apply(&mut self, to: usize, m: &Message) -> Result<Vec<Event>, Error> {
        let proposal = match m {
            Message::Propose { nonce, balances, locks, .. } => Some((*nonce, *balances, locks.clone())),
            _ => None,
        };
        let step = match self.ch[to].handle(m) {
            Ok(step) => step,
            Err(e) => {
                // A refused lock move: the proposer abandons its proposal, as a node does.
                if let (Error::BadLock(_), Some(_)) = (&e, &proposal) {
                    self.ch[1 - to].withdraw_proposal_if(m.digest());
                }
                return Err(e);
            }
        };
        if let (Some(p), Some(Message::Countersign { .. })) = (proposal, &step.reply) {
            self.signed[to].push(p);
        }
        for e in &step.events {
            match e {
                Event::Received { amount, .. } => self.received[to] += amount,
                Event::PaymentsAcked { amount, .. } => self.acked[to] += amount,
                Event::Lock { lock, change, .. } => {
                    let receiver = usize::from(lock.receiver);
                    match change {
                        // A lock to this party whose preimage it knows is owed to it from now on:
                        // no later sheet may take it away unless the party gives it up.
                        LockChange::Received if self.ch[to].preimage(&lock.hash).is_some() => {
                            self.received[to] += lock.amount
                        }
                        LockChange::Released | LockChange::Expired if receiver != to => {
                            self.received[to] += lock.amount
                        }
                        _ => {}
                    }
                }
                _ => {}
            }
        }
        if let Some(r) = step.reply {
            self.send(to, r);
        }
        Ok(step.events)
    }

    fn deliver(&mut self, to: usize) -> Option<Result<Vec<Event>, Error>> {
        let m = self.inbox[to].pop_front()?;
        Some(self.apply(to, &m))
    }

    fn pay(&mut self, from: usize, amount: u128) -> Result<u64, Error> {
        let id = self.ch[from].pay(amount)?;
        self.paid[from] += amount;
        Ok(id)
    }

    fn propose(&mut self, from: usize) {
        if let Some(m) = self.ch[from].propose().expect("propose") {
            self.send(from, m);
        }
    }

    /// Delivers everything and proposes whatever is queued until both are idle and empty.
    fn settle(&mut self) {
        for _ in 0..10_000 {
            self.propose(0);
            self.propose(1);
            let mut moved = false;
            for to in [0, 1] {
                if let Some(r) = self.deliver(to) {
                    let _ = r; // conflicts are expected and harmless
                    moved = true;
                }
            }
            if !moved && self.ch.iter().all(|c| c.is_idle() && c.queued() == 0) {
                return;
            }
            if !moved {
                // a conflict left a proposal unanswered: retransmit, as after a reconnect
                self.reconnect();
            }
        }
        panic!("the channel did not settle");
    }

    fn reconnect(&mut self) {
        self.inbox = [VecDeque::new(), VecDeque::new()];
        for from in [0, 1] {
            for m in self.ch[from].retransmit().expect("retransmit") {
                self.send(from, m);
            }
        }
    }

    /// The safety properties, checked after every step.
    fn check_invariants(&mut self) {
        let p = params();
        let d = p.domain();
        for x in [0, 1] {
            let Some(latest) = self.ch[x].latest().cloned() else { continue };
            // balances and locks add up
            let locked: u128 = latest.locks.iter().map(|l| l.amount).sum();
            assert_eq!(latest.balances[0] + latest.balances[1] + locked, p.total(), "party {x}: sum");
            // the latest sheet is countersigned by the peer and liquidatable (checked when it changes)
            if self.verified[x] != Some(latest.peer_signature) {
                let sheet = BalanceSheet::with_locks(latest.nonce, latest.balances, &latest.locks, latest.waiver);
                let signer = recover(&latest.peer_signature, &sheet, &d);
                assert_eq!(signer, Some(p.parties[1 - x]), "party {x}: countersigned");
                self.verified[x] = Some(latest.peer_signature);
            }
            // a revoked sheet is never the latest
            assert!(
                self.revealed[x].iter().all(|n| *n < latest.nonce),
                "party {x} revealed the secret of its latest sheet {}",
                latest.nonce
            );
            let c = &self.ch[x];
            // a frozen party's choice never changes, whatever arrives after it
            if let Some(chosen) = &self.frozen[x] {
                assert_eq!(&c.settlement(), chosen, "party {x}: the settlement changed after the freeze");
            }
            // what the party would settle with if it froze now cannot be punished by the peer
            if let Settlement::Liquidate(s) = c.settlement() {
                assert!(self.ch[1 - x].punishment(s.nonce, s.waiver).is_none(), "party {x}: settlement is revoked");
            }
            // money never moves wrongly: every sheet the peer can use without being punished gives x
            // at least what x is owed, counting x's own unacknowledged payments and locks as gone
            // and only the locks to x whose preimage x knows as x's
            let value = |balances: &[u128; 2], locks: &[HashLock]| -> u128 {
                let winnable = locks.iter().filter(|l| usize::from(l.receiver) == x && c.preimage(&l.hash).is_some());
                balances[x] + winnable.map(|l| l.amount).sum::<u128>()
            };
            let floor = (p.deposits[x] + self.received[x]).saturating_sub(self.paid[x]);
            assert!(value(&latest.balances, &latest.locks) >= floor, "party {x}: own sheet below floor");
            for (nonce, balances, locks) in &self.signed[x] {
                if !c.is_revoked_by_peer(*nonce) {
                    let v = value(balances, locks);
                    assert!(v >= floor, "party {x}: peer can liquidate sheet {nonce} worth {v} < {floor}");
                }
            }
        }
    }
}

// ---------------------------------------------------------------------- scenarios

#[test]
fn opening_gives_both_a_countersigned_sheet_zero() {
    let mut p = Pair::opened();
    for x in [0, 1] {
        let l = p.ch[x].latest().expect("latest");
        assert_eq!((l.nonce, l.balances), (0, DEPOSITS));
    }
    p.check_invariants();
}

#[test]
fn a_lost_opening_commit_is_sent_again_after_a_reconnect() {
    let p = params();
    let mut a = Channel::new(p.clone(), 0, key(1), B256::repeat_byte(0xa1)).expect("channel a");
    let mut b = Channel::new(p, 1, key(2), B256::repeat_byte(0xb2)).expect("channel b");
    let propose = a.open().expect("open");
    let countersign = b.handle(&propose).expect("countersign").reply.expect("reply");
    let step = a.handle(&countersign).expect("commit");
    assert_eq!(step.events, [Event::Opened]);
    // The Commit is lost (Bob's node crashed before storing it): Bob still waits for it.
    assert_eq!(*b.phase(), Phase::Opening);
    let again = a.retransmit().expect("retransmit");
    assert_eq!(again, [step.reply.expect("the commit")]);
    let mut opened = Vec::new();
    for m in &again {
        opened.extend(b.handle(m).expect("bob takes it").events);
    }
    assert_eq!(opened, [Event::Opened]);
    // Once Bob has it, more copies change nothing and answer nothing.
    for m in a.retransmit().expect("retransmit") {
        assert_eq!(b.handle(&m).expect("duplicate"), crate::Step::default());
    }
    // After the first payment the opener stops sending it.
    a.pay(10).expect("pay");
    let m = a.propose().expect("propose").expect("a proposal");
    crate::exchange(&mut a, &mut b, 0, m).expect("update");
    assert!(a.retransmit().expect("retransmit").iter().all(|m| !matches!(m, Message::Commit { nonce: 0, .. })));
}

#[test]
fn unsettled_from_follows_payments_until_acknowledged() {
    let mut p = Pair::opened();
    assert_eq!(p.ch[0].unsettled_from(), 0, "nothing paid yet");
    p.pay(0, 5).expect("pay");
    p.pay(0, 6).expect("pay");
    assert_eq!(p.ch[0].unsettled_from(), 0, "queued");
    p.propose(0);
    p.pay(0, 7).expect("pay");
    assert_eq!(p.ch[0].unsettled_from(), 0, "two in flight, one queued");
    p.settle();
    assert_eq!((p.ch[0].unsettled_from(), p.acked[0]), (3, 18), "all acknowledged");
    assert_eq!(p.ch[1].unsettled_from(), 0, "the payee paid nothing");
}

#[test]
fn a_payment_moves_balances_and_revokes_the_old_sheets() {
    let mut p = Pair::opened();
    p.pay(0, 250).expect("pay");
    p.settle();
    p.check_invariants();
    for x in [0, 1] {
        assert_eq!(p.ch[x].balances(), [DEPOSITS[0] - 250, DEPOSITS[1] + 250]);
        assert_eq!(p.ch[x].nonce(), 1);
        assert!(p.ch[x].is_revoked_by_peer(0), "party {x} holds the peer's revocation of sheet 0");
    }
    assert_eq!((p.acked[0], p.received[1]), (250, 250));
}

#[test]
fn many_payments_coalesce_into_one_update() {
    let mut p = Pair::opened();
    for _ in 0..1000 {
        p.pay(1, 3).expect("pay");
    }
    p.propose(1);
    let mut events = Vec::new();
    while let Some(r) = p.deliver(0).or_else(|| p.deliver(1)) {
        events.extend(r.expect("honest message"));
    }
    assert_eq!(p.ch[0].nonce(), 1, "one state update");
    assert!(events.contains(&Event::PaymentsAcked { first: 0, count: 1000, amount: 3000, nonce: 1 }), "{events:?}");
    assert!(events.contains(&Event::Received { amount: 3000, nonce: 1 }));
}

#[test]
fn punishment_signs_a_waiver_for_the_revoked_sheet_only() {
    let mut p = Pair::opened();
    let sheet0_of_b = p.ch[1].latest().expect("latest").clone();
    p.pay(1, 100).expect("pay");
    p.settle();
    let d = params().domain();
    let sig = p.ch[0].punishment(0, sheet0_of_b.waiver).expect("b revoked sheet 0");
    assert_eq!(recover(&sig, &Waiver { nonce: U256::ZERO }, &d), Some(sheet0_of_b.waiver));
    let latest_b = p.ch[1].latest().expect("latest");
    assert_eq!(p.ch[0].punishment(latest_b.nonce, latest_b.waiver), None, "the latest sheet cannot be punished");
    assert_eq!(p.ch[0].punishment(0, Address::repeat_byte(9)), None, "wrong waiver address");
}

#[test]
fn payments_both_ways_with_conflicting_proposals_settle() {
    let mut p = Pair::opened();
    for i in 0..20u128 {
        p.pay(0, 10 + i).expect("pay a");
        p.pay(1, 7 + i).expect("pay b");
        p.propose(0);
        p.propose(1); // both propose the same nonce: party 0 goes first
        p.settle();
        p.check_invariants();
    }
    let expect_a = DEPOSITS[0] - p.paid[0] + p.paid[1];
    assert_eq!(p.ch[0].balances(), [expect_a, p.params_total() - expect_a]);
    assert_eq!(p.ch[0].balances(), p.ch[1].balances());
    assert_eq!(p.acked, p.paid);
}

impl Pair {
    fn params_total(&self) -> u128 {
        params().total()
    }
}

#[test]
fn overdraft_and_zero_payments_are_refused_locally() {
    let mut p = Pair::opened();
    assert_eq!(
        p.ch[1].pay(DEPOSITS[1] + 1),
        Err(Error::InsufficientBalance { available: DEPOSITS[1], requested: DEPOSITS[1] + 1 })
    );
    p.ch[1].pay(DEPOSITS[1]).expect("everything");
    assert!(matches!(p.ch[1].pay(1), Err(Error::InsufficientBalance { available: 0, .. })));
    assert_eq!(p.ch[0].pay(0), Err(Error::ZeroPayment));
}

/// Applies `m` to party `to` and checks that it fails with `want` and changes nothing.
fn assert_refused(p: &mut Pair, to: usize, m: &Message, want: impl Fn(&Error) -> bool) -> Error {
    let before = p.ch[to].state().clone();
    let err = p.ch[to].handle(m).expect_err("must be refused");
    assert!(want(&err), "unexpected error {err:?}");
    assert_eq!(p.ch[to].state(), &before, "a refused message changed the state");
    err
}

#[test]
fn bad_proposals_are_refused_without_change() {
    let mut p = Pair::opened();
    let w = Address::repeat_byte(7);
    let [a0, a1] = DEPOSITS;
    let e = assert_refused(
        &mut p,
        1,
        &Message::Propose {
            signature: None,
            nonce: 2,
            balances: [a0 - 5, a1 + 5],
            waiver: w,
            locks: vec![],
            moves: vec![],
            onions: vec![],
        },
        |e| matches!(e, Error::WrongNonce { expected: 1, got: 2 }),
    );
    assert_eq!(e.severity(), Severity::Reject);
    assert_refused(
        &mut p,
        1,
        &Message::Propose {
            signature: None,
            nonce: 1,
            balances: [a0 - 5, a1 + 6],
            waiver: w,
            locks: vec![],
            moves: vec![],
            onions: vec![],
        },
        |e| matches!(e, Error::WrongSum { .. }),
    );
    assert_refused(
        &mut p,
        1,
        &Message::Propose {
            signature: None,
            nonce: 1,
            balances: [u128::MAX, 1],
            waiver: w,
            locks: vec![],
            moves: vec![],
            onions: vec![],
        },
        |e| matches!(e, Error::WrongSum { sum: None, .. }),
    );
    // the proposer (party 0 paying) may not take money from the receiver
    assert_refused(
        &mut p,
        1,
        &Message::Propose {
            signature: None,
            nonce: 1,
            balances: [a0 + 5, a1 - 5],
            waiver: w,
            locks: vec![],
            moves: vec![],
            onions: vec![],
        },
        |e| matches!(e, Error::WrongDirection { .. }),
    );
    assert_refused(
        &mut p,
        1,
        &Message::Propose {
            signature: None,
            nonce: 1,
            balances: [a0, a1],
            waiver: w,
            locks: vec![],
            moves: vec![],
            onions: vec![],
        },
        |e| matches!(e, Error::WrongDirection { .. }),
    );
    assert_refused(
        &mut p,
        1,
        &Message::Propose {
            signature: None,
            nonce: 1,
            balances: [a0 - 5, a1 + 5],
            waiver: Address::ZERO,
            locks: vec![],
            moves: vec![],
            onions: vec![],
        },
        |e| matches!(e, Error::ZeroWaiver),
    );
    // an old nonce is a replay: ignored
    let e = assert_refused(
        &mut p,
        1,
        &Message::Propose {
            signature: None,
            nonce: 0,
            balances: DEPOSITS,
            waiver: w,
            locks: vec![],
            moves: vec![],
            onions: vec![],
        },
        |e| matches!(e, Error::WrongNonce { .. }),
    );
    assert_eq!(e.severity(), Severity::Ignore);
}

#[test]
fn bad_signatures_and_secrets_are_refused_without_change() {
    let mut p = Pair::opened_unsigned();
    p.pay(0, 40).expect("pay");
    p.propose(0);
    p.deliver(1).expect("propose").expect("ok"); // b countersigns
    // corrupt b's countersignature before a sees it
    let Some(Message::Countersign { nonce, mut signature, waiver, .. }) = p.inbox[0].pop_front() else {
        panic!("countersign expected")
    };
    let good = signature;
    signature.0[10] ^= 1;
    assert_refused(&mut p, 0, &Message::Countersign { next: None, revocation: None, nonce, signature, waiver }, |e| {
        matches!(e, Error::BadSignature { .. })
    });
    p.apply(0, &Message::Countersign { next: None, revocation: None, nonce, signature: good, waiver })
        .expect("good one");
    // a commit revealing a wrong secret: protocol violation, close
    let Some(Message::Commit { nonce, signature, revocation }) = p.inbox[1].pop_front() else {
        panic!("commit expected")
    };
    let e =
        assert_refused(&mut p, 1, &Message::Commit { nonce, signature, revocation: Some(B256::repeat_byte(3)) }, |e| {
            matches!(e, Error::WrongSecret { nonce: 1, .. })
        });
    assert_eq!(e.severity(), Severity::Close);
    assert_refused(&mut p, 1, &Message::Commit { nonce, signature, revocation: None }, |e| {
        matches!(e, Error::Unexpected { .. })
    });
    p.apply(1, &Message::Commit { nonce, signature, revocation }).expect("good commit");
    let Some(Message::Revoke { nonce, secret }) = p.inbox[0].pop_front() else { panic!("revoke expected") };
    assert_refused(&mut p, 0, &Message::Revoke { nonce, secret: B256::repeat_byte(4) }, |e| {
        matches!(e, Error::WrongSecret { .. })
    });
    p.apply(0, &Message::Revoke { nonce, secret }).expect("good revoke");
    p.check_invariants();
}

#[test]
fn duplicates_are_answered_idempotently() {
    let mut p = Pair::opened();
    p.pay(0, 5).expect("pay");
    p.propose(0);
    let propose = p.inbox[1].front().cloned().expect("propose");
    p.deliver(1).expect("m").expect("ok");
    let countersign = p.inbox[0].front().cloned().expect("countersign");
    p.apply(1, &propose).expect("duplicate propose");
    assert_eq!(p.inbox[0].back(), Some(&countersign), "same countersignature again");
    p.settle();
    p.check_invariants();
    assert_eq!(p.acked[0], 5);
}

#[test]
fn cooperative_close_collects_both_signatures() {
    let mut p = Pair::opened();
    p.pay(0, 77).expect("pay");
    p.settle();
    let step = p.ch[1].close().expect("close");
    let req = step.reply.expect("request");
    let step = p.ch[0].handle(&req).expect("accept");
    assert!(matches!(step.events.last(), Some(Event::CloseReady { .. })));
    p.ch[1].handle(&step.reply.expect("accept msg")).expect("done");
    let d = params().domain();
    for x in [0, 1] {
        let (nonce, balances, sigs) = p.ch[x].close_signatures().expect("both");
        let close = Close::new(nonce, balances);
        assert_eq!(recover(&sigs[0], &close, &d), Some(params().parties[0]));
        assert_eq!(recover(&sigs[1], &close, &d), Some(params().parties[1]));
        assert_eq!(balances, [DEPOSITS[0] - 77, DEPOSITS[1] + 77]);
        assert!(matches!(p.ch[x].pay(1), Err(Error::NotOpen("closing"))));
    }
}

#[test]
fn state_round_trips_with_its_version_tag() {
    let mut p = Pair::opened();
    p.pay(0, 9).expect("pay");
    p.settle();
    let bytes = p.ch[0].state().to_bytes().expect("serialise");
    let back = ChannelState::from_bytes(&bytes).expect("deserialise");
    assert_eq!(&back, p.ch[0].state());
    let restored = Channel::restore(back.clone(), key(1)).expect("restore");
    assert_eq!(restored.balances(), p.ch[0].balances());
    assert!(matches!(Channel::restore(back, key(2)), Err(Error::WrongKey { .. })));
    let bumped = String::from_utf8(bytes).expect("utf8").replacen("\"version\":3", "\"version\":99", 1);
    assert_eq!(ChannelState::from_bytes(bumped.as_bytes()), Err(Error::Version { found: 99, expected: 3 }));
    assert!(matches!(ChannelState::from_bytes(b"{"), Err(Error::Decode(_))));
}

#[test]
fn a_contract_v1_state_is_refused_not_misread() {
    let p = Pair::opened();
    let mut v: serde_json::Value = serde_json::from_slice(&p.ch[0].state().to_bytes().expect("bytes")).expect("json");
    for old in [1, 2] {
        v.as_object_mut().expect("object").insert("version".into(), old.into());
        let bytes = serde_json::to_vec(&v).expect("bytes");
        let err = ChannelState::from_bytes(&bytes).expect_err("refused");
        assert_eq!(err, Error::ContractV1(old));
        assert!(err.to_string().contains("contract v1 channel"), "{err}");
    }
}

/// The review's finding 2: Alice decides to close while Bob's payment to her is in flight; the
/// update completes (her sheet n is revoked), then Bob goes silent. The sheet she settles with
/// is chosen when she freezes, not read before: it is n + 1, which Bob cannot punish, while
/// the sheet read before (n) he could.
#[test]
fn freeze_settles_with_the_sheet_stored_at_the_freeze_not_one_read_before() {
    let mut p = Pair::opened();
    p.pay(1, 500).expect("pay");
    p.propose(1);
    p.deliver(0).expect("propose").expect("countersigned"); // Alice countersigns
    let read_before = p.ch[0].latest().cloned().expect("sheet 0");
    p.deliver(1).expect("countersign").expect("committed"); // Bob commits with his revocation
    p.deliver(0).expect("commit").expect("revoked"); // Alice stores sheet 1, revokes sheet 0
    p.deliver(1).expect("revoke").expect("taken"); // then Bob goes silent
    // Bob now holds Alice's secret for sheet 0: a liquidation with it would be punished.
    assert!(p.ch[1].punishment(read_before.nonce, read_before.waiver).is_some());
    let (settlement, step) = p.ch[0].freeze("closing", false);
    let Settlement::Liquidate(sheet) = settlement else { panic!("a liquidation, got {settlement:?}") };
    assert_eq!(sheet.nonce, read_before.nonce + 1);
    assert_eq!(sheet.balances, [DEPOSITS[0] + 500, DEPOSITS[1] - 500]);
    assert!(p.ch[1].punishment(sheet.nonce, sheet.waiver).is_none(), "the chosen sheet is not revoked");
    assert!(matches!(step.events.last(), Some(Event::Frozen { violation: false, .. })));
    // Frozen: nothing new is signed, whoever asks; the choice stays the same.
    assert!(matches!(p.ch[0].pay(1), Err(Error::Frozen(_))));
    p.pay(1, 7).expect("Bob may still queue");
    p.propose(1);
    assert!(matches!(p.deliver(0), Some(Err(Error::Frozen(_)))));
    assert_eq!(p.ch[0].freeze("again", false).0, Settlement::Liquidate(sheet.clone()));
    assert!(p.ch[0].freeze("again", false).1.events.is_empty());
    // The state round-trips frozen.
    let back = ChannelState::from_bytes(&p.ch[0].state().to_bytes().expect("bytes")).expect("read");
    assert_eq!(back.frozen.as_deref(), Some("closing"));
}

#[test]
fn freeze_while_proposing_cancels_the_proposal_and_keeps_the_older_sheet() {
    let mut p = Pair::opened_unsigned();
    let id = p.pay(0, 40).expect("pay");
    p.propose(0);
    p.pay(0, 2).expect("queued");
    p.deliver(1).expect("propose").expect("countersigned");
    let (settlement, step) = p.ch[0].freeze("closing", false);
    assert_eq!(settlement, Settlement::Liquidate(p.ch[0].latest().cloned().expect("sheet 1")));
    assert_eq!(p.ch[0].nonce(), 1);
    assert!(matches!(&step.events[0], Event::PaymentsCancelled { ids } if ids == &vec![id, id + 1]));
    // Bob's countersignature now comes too late: refused, nothing revealed.
    assert!(matches!(p.deliver(0), Some(Err(Error::Frozen(_)))));
    assert!(!p.revealed[0].contains(&1), "{:?}", p.revealed[0]);
    // Before any countersigned sheet, the settlement is a cancel.
    let mut fresh = Pair::new();
    assert_eq!(fresh.ch[1].freeze("never opened", false).0, Settlement::Cancel);
}

#[test]
fn a_revoke_with_the_largest_nonce_is_refused_not_a_panic() {
    let revoke = Message::Revoke { nonce: u64::MAX, secret: B256::repeat_byte(7) };
    // Alice committed an unsigned proposal and waits for Bob's revocation.
    let mut p = Pair::opened_unsigned();
    p.pay(0, 5).expect("pay");
    p.propose(0);
    p.deliver(1).expect("propose").expect("ok");
    p.deliver(0).expect("countersign").expect("ok");
    assert!(matches!(p.ch[0].handle(&revoke), Err(Error::WrongNonce { .. })));
    // Bob accepted a signed proposal and waits for Alice's revocation.
    let mut p = Pair::opened();
    p.pay(0, 5).expect("pay");
    p.propose(0);
    p.deliver(1).expect("propose").expect("ok");
    assert!(matches!(p.ch[1].handle(&revoke), Err(Error::WrongNonce { .. })));
}

#[test]
fn a_lost_revoke_is_sent_again_once_closing() {
    let mut p = Pair::opened();
    p.pay(0, 5).expect("pay");
    p.settle();
    p.ch[1].close().expect("close");
    let again = p.ch[1].retransmit().expect("retransmit");
    assert!(again.iter().any(|m| matches!(m, Message::Revoke { nonce: 0, .. })), "{again:?}");
}

#[test]
fn payments_wait_for_the_chain_to_show_both_deposits() {
    let mut p = Pair::opened();
    for c in &mut p.ch {
        c.set_funding(Funding::Pending);
    }
    assert_eq!(p.ch[0].pay(5), Err(Error::NotRunning("not yet funded")));
    // Bob's view lags: Alice sees it running and proposes; Bob refuses, nothing is received.
    p.ch[0].set_funding(Funding::Running);
    p.pay(0, 5).expect("pay");
    p.propose(0);
    assert!(matches!(p.deliver(1), Some(Err(Error::NotRunning(_)))));
    assert_eq!(p.received[1], 0);
    // Once the channel ended on chain, it is frozen.
    let step = p.ch[1].set_funding(Funding::Ended);
    assert!(matches!(step.events.last(), Some(Event::Frozen { .. })));
    assert!(p.ch[1].frozen().is_some());
}

#[test]
fn a_failed_requests_queued_payments_can_be_cancelled() {
    let mut p = Pair::opened();
    let a = p.pay(0, 10).expect("pay");
    let b = p.pay(0, 10).expect("pay");
    assert_eq!(p.ch[0].spendable(), DEPOSITS[0] - 20);
    // Only a tail of the queue can go: ids are consecutive.
    assert!(p.ch[0].cancel_queued(a, a, 10).is_empty());
    assert_eq!(p.ch[0].cancel_queued(a, b, 10), vec![a, b]);
    assert_eq!((p.ch[0].queued(), p.ch[0].spendable()), (0, DEPOSITS[0]));
    assert_eq!(p.ch[0].propose(), Ok(None));
}

// ---------------------------------------------------------------------- hash-time locks

const HOUR: u64 = 3600;

/// Alice locks `amount` to Bob on preimage `i` (Bob, the payee, knows it); settled both ways.
fn lock_to_bob(p: &mut Pair, amount: u128, i: usize, ahead: u64) -> HashLock {
    let lock = p.ch[0].add_lock(amount, preimage_hash(&secret(i)), p.now + ahead).expect("add");
    p.ch[1].learn_preimage(secret(i));
    p.paid[0] += amount;
    p.settle();
    lock
}

fn lock_events(events: &[Event]) -> Vec<LockChange> {
    events.iter().filter_map(|e| if let Event::Lock { change, .. } = e { Some(change.clone()) } else { None }).collect()
}

#[test]
fn a_lock_is_added_then_fulfilled_off_chain() {
    let mut p = Pair::opened();
    let lock = p.ch[0].add_lock(700, preimage_hash(&secret(1)), T0 + HOUR).expect("add");
    p.ch[1].learn_preimage(secret(1));
    p.paid[0] += 700;
    assert_eq!(p.ch[0].spendable(), DEPOSITS[0] - 700);
    p.propose(0);
    p.deliver(1).expect("propose").expect("countersigned");
    p.deliver(0).expect("countersign").expect("committed");
    let events = p.deliver(1).expect("commit").expect("received");
    assert_eq!(lock_events(&events), [LockChange::Received], "Bob may forward it now (rule 7)");
    let events = p.deliver(0).expect("revoke").expect("acked");
    assert_eq!(lock_events(&events), [LockChange::Added]);
    for c in &p.ch {
        assert_eq!((c.balances(), c.locks()), ([DEPOSITS[0] - 700, DEPOSITS[1]], &[lock][..]));
    }
    // Bob claims it with the preimage; Alice learns it as soon as she sees the proposal.
    p.ch[1].fulfil(secret(1)).expect("fulfil");
    p.propose(1);
    let events = p.deliver(0).expect("propose").expect("countersigned");
    assert!(events.contains(&Event::PreimageLearned { hash: lock.hash, preimage: secret(1) }));
    p.settle();
    for c in &p.ch {
        assert_eq!((c.balances(), c.locks()), ([DEPOSITS[0] - 700, DEPOSITS[1] + 700], &[][..]));
    }
    assert_eq!(p.ch[0].preimage(&lock.hash), Some(secret(1)));
    p.check_invariants();
}

#[test]
fn a_released_lock_goes_back_to_its_sender() {
    let mut p = Pair::opened();
    let lock = lock_to_bob(&mut p, 300, 2, HOUR);
    p.ch[1].release(lock.hash).expect("release");
    p.paid[1] += 300;
    p.settle();
    assert_eq!(p.received[0], 300, "the sender saw its lock come back");
    for c in &p.ch {
        assert_eq!((c.balances(), c.locks().len()), (DEPOSITS, 0));
    }
    // Only the receiver releases; Alice cannot release Bob's incoming lock for him.
    let lock = lock_to_bob(&mut p, 5, 3, HOUR);
    assert!(matches!(p.ch[0].release(lock.hash), Err(Error::BadLock(_))));
}

#[test]
fn a_lock_expires_only_after_its_expiry_and_grace_and_only_if_the_receiver_lacks_the_preimage() {
    let mut p = Pair::opened();
    let lock = p.ch[0].add_lock(400, preimage_hash(&secret(4)), T0 + HOUR).expect("add");
    p.paid[0] += 400;
    p.settle();
    // Too early: nothing is due on Alice's side; a forged early expiry is refused by Bob.
    assert!(p.ch[0].expire_due().expect("expire").is_empty());
    let (b, l) = (p.ch[0].balances(), p.ch[0].locks().to_vec());
    let early = Message::Propose {
        signature: None,
        nonce: p.ch[0].nonce() + 1,
        balances: [b[0] + 400, b[1]],
        waiver: Address::repeat_byte(5),
        locks: vec![],
        moves: vec![LockMove::Expire(l[0])],
        onions: vec![],
    };
    assert!(matches!(p.ch[1].handle(&early), Err(Error::BadLock(_))));
    // After expiry + 2 × grace on Alice's clock (grace on Bob's): refunded to Alice.
    p.run(&Action::Tick(HOUR + 241));
    assert_eq!(p.ch[0].expire_due().expect("expire"), vec![lock]);
    p.settle();
    assert_eq!(p.received[0], 400);
    for c in &p.ch {
        assert_eq!((c.balances(), c.locks().len()), (DEPOSITS, 0));
    }
    // A receiver who knows the preimage refuses the expiry: it will claim on chain instead.
    let lock = lock_to_bob(&mut p, 50, 5, HOUR);
    p.run(&Action::Tick(HOUR + 241));
    let (b, _) = (p.ch[0].balances(), ());
    let expire = Message::Propose {
        signature: None,
        nonce: p.ch[0].nonce() + 1,
        balances: [b[0] + 50, b[1]],
        waiver: Address::repeat_byte(5),
        locks: vec![],
        moves: vec![LockMove::Expire(lock)],
        onions: vec![],
    };
    let e = p.ch[1].handle(&expire).expect_err("refused");
    assert!(e.to_string().contains("knows the preimage"), "{e}");
}

#[test]
fn bad_lock_moves_are_refused_without_change() {
    let mut p = Pair::opened();
    let b = p.ch[0].balances();
    let n = p.ch[0].nonce() + 1;
    let lock = |receiver: u8, expiry: u64| HashLock { receiver, amount: 10, expiry, hash: B256::repeat_byte(1) };
    let propose = |balances: [u128; 2], locks: Vec<HashLock>, moves: Vec<LockMove>| Message::Propose {
        signature: None,
        nonce: n,
        balances,
        waiver: Address::repeat_byte(5),
        locks,
        moves,
        onions: vec![],
    };
    let cases = [
        // expiry too soon, too far, a lock to the proposer itself, zero amount
        propose([b[0] - 10, b[1]], vec![lock(1, T0 + 10)], vec![LockMove::Add(lock(1, T0 + 10))]),
        propose(
            [b[0] - 10, b[1]],
            vec![lock(1, T0 + 400 * 24 * HOUR)],
            vec![LockMove::Add(lock(1, T0 + 400 * 24 * HOUR))],
        ),
        propose([b[0] - 10, b[1]], vec![lock(0, T0 + HOUR)], vec![LockMove::Add(lock(0, T0 + HOUR))]),
        // locks not matching the moves; fulfil of a lock that does not exist; wrong preimage
        propose([b[0] - 10, b[1]], vec![lock(1, T0 + 2 * HOUR)], vec![LockMove::Add(lock(1, T0 + HOUR))]),
        propose(b, vec![], vec![LockMove::Fulfil { lock: lock(0, T0 + HOUR), preimage: B256::ZERO }]),
        propose(b, vec![], vec![LockMove::Release(lock(0, T0 + HOUR))]),
    ];
    for m in &cases {
        let before = p.ch[1].state().clone();
        assert!(p.ch[1].handle(m).is_err(), "{m:?} accepted");
        assert_eq!(p.ch[1].state(), &before);
    }
    // A lock the countersigner takes, with a payment alongside it.
    let ok = lock(1, T0 + HOUR);
    let m = propose([b[0] - 15, b[1] + 5], vec![ok], vec![LockMove::Add(ok)]);
    assert!(p.ch[1].handle(&m).is_ok());
}

#[test]
fn a_hundred_locks_in_one_sheet_and_no_cooperative_close_until_they_are_settled() {
    let mut p = Pair::opened();
    for i in 0..100 {
        p.ch[0].add_lock(1_000 + i, preimage_hash(&secret(i as usize)), T0 + HOUR).expect("add");
    }
    p.ch[1].learn_preimage(secret(0));
    p.settle();
    assert_eq!(p.ch[1].locks().len(), 100);
    assert_eq!(p.ch[0].nonce(), 1, "one update carries them all");
    assert!(matches!(p.ch[0].close(), Err(Error::BadLock(_))));
    // Frozen with locks: the liquidation carries them, for `unlock`.
    let (settlement, _) = p.ch[1].freeze("closing", false);
    let Settlement::Liquidate(sheet) = settlement else { panic!("liquidation") };
    assert_eq!(sheet.locks.len(), 100);
    assert_eq!(sheet.locks, p.ch[1].locks());
}

// ---------------------------------------------------------------------- property tests

#[derive(Debug, Clone)]
enum Action {
    Pay(usize, u128),
    Propose(usize),
    Deliver(usize),
    /// Deliver the second message in the inbox before the first.
    Reorder(usize),
    /// Deliver a copy of the first message and keep it queued.
    Duplicate(usize),
    Reconnect,
    /// A malicious or corrupted message to a party.
    Attack(usize, Attack),
    /// The party freezes the channel to close it.
    Freeze(usize),
    /// The party locks an amount to the peer on preimage `i` (the peer, the payee, knows it).
    AddLock(usize, u128, usize, u64),
    /// The party claims a lock to it with preimage `i`.
    Fulfil(usize, usize),
    /// The party gives up a lock to it on preimage `i`.
    Release(usize, usize),
    /// The party expires its locks that are due.
    Expire(usize),
    /// Time passes on both clocks.
    Tick(u64),
}

#[derive(Debug, Clone)]
enum Attack {
    /// Re-send a message from the history.
    Replay(usize),
    /// Shift the nonce of a message from the history.
    Nonce(usize, i8),
    /// A proposal whose balances do not add up.
    Sum(u128),
    /// A proposal that takes money from the receiver (an overdraft of the sender's view).
    Direction(u128),
    /// Flip a byte of a signature in a message from the history.
    Signature(usize, u8),
    /// Replace a revealed secret with a random one.
    Secret(usize, [u8; 32]),
}

fn action() -> impl Strategy<Value = Action> {
    let party = 0usize..2;
    prop_oneof![
        4 => (party.clone(), 1u128..50_000).prop_map(|(p, a)| Action::Pay(p, a)),
        3 => party.clone().prop_map(Action::Propose),
        8 => party.clone().prop_map(Action::Deliver),
        1 => party.clone().prop_map(Action::Reorder),
        1 => party.clone().prop_map(Action::Duplicate),
        1 => Just(Action::Reconnect),
        3 => (party, attack()).prop_map(|(p, a)| Action::Attack(p, a)),
    ]
}

fn lock_action() -> impl Strategy<Value = Action> {
    let party = 0usize..2;
    prop_oneof![
        3 => (party.clone(), 1u128..30_000).prop_map(|(p, a)| Action::Pay(p, a)),
        3 => (party.clone(), 1u128..40_000, 0usize..8, 700u64..7200).prop_map(|(p, a, i, t)| Action::AddLock(p, a, i, t)),
        2 => (party.clone(), 0usize..8).prop_map(|(p, i)| Action::Fulfil(p, i)),
        1 => (party.clone(), 0usize..8).prop_map(|(p, i)| Action::Release(p, i)),
        1 => party.clone().prop_map(Action::Expire),
        1 => (0u64..4000).prop_map(Action::Tick),
        3 => party.clone().prop_map(Action::Propose),
        8 => party.clone().prop_map(Action::Deliver),
        1 => party.clone().prop_map(Action::Reorder),
        1 => party.clone().prop_map(Action::Duplicate),
        1 => Just(Action::Reconnect),
        2 => (party, attack()).prop_map(|(p, a)| Action::Attack(p, a)),
    ]
}

fn attack() -> impl Strategy<Value = Attack> {
    prop_oneof![
        any::<usize>().prop_map(Attack::Replay),
        (any::<usize>(), any::<i8>()).prop_map(|(i, d)| Attack::Nonce(i, d)),
        (1u128..1000).prop_map(Attack::Sum),
        (1u128..1000).prop_map(Attack::Direction),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Attack::Signature(i, b)),
        (any::<usize>(), any::<[u8; 32]>()).prop_map(|(i, s)| Attack::Secret(i, s)),
    ]
}

impl Pair {
    fn attack_message(&self, to: usize, a: &Attack) -> Option<Message> {
        let pick = |i: usize| -> Option<Message> {
            if self.history.is_empty() { None } else { Some(self.history[i % self.history.len()].clone()) }
        };
        let c = &self.ch[to];
        let b = c.balances();
        let from = 1 - to;
        Some(match a {
            Attack::Replay(i) => pick(*i)?,
            Attack::Nonce(i, d) => {
                let mut m = pick(*i)?;
                let shift = |n: &mut u64| *n = n.wrapping_add_signed(i64::from(*d)).min(1 << 40);
                match &mut m {
                    Message::Propose { nonce, .. }
                    | Message::Countersign { nonce, .. }
                    | Message::Commit { nonce, .. }
                    | Message::Revoke { nonce, .. }
                    | Message::CloseRequest { nonce, .. }
                    | Message::CloseAccept { nonce, .. } => shift(nonce),
                }
                m
            }
            Attack::Sum(extra) => {
                let mut bal = b;
                bal[to] += extra;
                Message::Propose {
                    signature: None,
                    nonce: c.nonce() + 1,
                    balances: bal,
                    waiver: Address::repeat_byte(5),
                    locks: vec![],
                    moves: vec![],
                    onions: vec![],
                }
            }
            Attack::Direction(x) => {
                let mut bal = b;
                let x = (*x).min(bal[to]);
                bal[to] -= x;
                bal[from] += x;
                Message::Propose {
                    signature: None,
                    nonce: c.nonce() + 1,
                    balances: bal,
                    waiver: Address::repeat_byte(5),
                    locks: vec![],
                    moves: vec![],
                    onions: vec![],
                }
            }
            Attack::Signature(i, byte) => {
                let mut m = pick(*i)?;
                let flip = |s: &mut Sig| s.0[usize::from(*byte) % 64] ^= 0x40;
                match &mut m {
                    Message::Countersign { signature, .. }
                    | Message::Commit { signature, .. }
                    | Message::CloseRequest { signature, .. }
                    | Message::CloseAccept { signature, .. } => flip(signature),
                    _ => return None,
                }
                m
            }
            Attack::Secret(i, s) => {
                let mut m = pick(*i)?;
                match &mut m {
                    Message::Commit { revocation: Some(r), .. } => *r = B256::from(*s),
                    Message::Revoke { secret, .. } => *secret = B256::from(*s),
                    _ => return None,
                }
                m
            }
        })
    }

    /// Runs one action; returns true when a hostile message was accepted (which may stall the
    /// honest run without breaking safety).
    fn run(&mut self, a: &Action) -> bool {
        match a {
            Action::Pay(x, amount) => {
                let amount = (*amount).min(self.ch[*x].spendable());
                if amount > 0 && self.ch[*x].frozen().is_none() {
                    self.pay(*x, amount).expect("affordable payment");
                }
            }
            Action::Propose(x) => self.propose(*x),
            Action::Deliver(x) => {
                let _ = self.deliver(*x);
            }
            Action::Reorder(x) => {
                if self.inbox[*x].len() >= 2 {
                    self.inbox[*x].swap(0, 1);
                }
                let _ = self.deliver(*x);
            }
            Action::Duplicate(x) => {
                if let Some(m) = self.inbox[*x].front().cloned() {
                    let _ = self.apply(*x, &m);
                }
            }
            Action::Reconnect => self.reconnect(),
            Action::AddLock(x, amount, i, ahead) => {
                let amount = (*amount).min(self.ch[*x].spendable());
                if amount > 0 && self.ch[*x].frozen().is_none() {
                    let hash = preimage_hash(&secret(*i));
                    self.ch[*x].add_lock(amount, hash, self.now + ahead).expect("affordable lock");
                    self.ch[1 - *x].learn_preimage(secret(*i));
                    self.paid[*x] += amount;
                }
            }
            Action::Fulfil(x, i) => {
                let _ = self.ch[*x].fulfil(secret(*i));
            }
            Action::Release(x, i) => {
                // Giving a lock up is the party's own choice, like a payment.
                if let Ok(lock) = self.ch[*x].release(preimage_hash(&secret(*i))) {
                    self.paid[*x] += lock.amount;
                }
            }
            Action::Expire(x) => {
                let _ = self.ch[*x].expire_due();
            }
            Action::Tick(secs) => {
                self.now += secs;
                let now = self.now;
                self.ch.iter_mut().for_each(|c| c.set_now(now));
            }
            Action::Freeze(x) => {
                let (settlement, _) = self.ch[*x].freeze("test", false);
                self.frozen[*x].get_or_insert(settlement);
            }
            Action::Attack(to, atk) => {
                let Some(m) = self.attack_message(*to, atk) else { return false };
                let before = self.ch[*to].state().clone();
                match self.ch[*to].handle(&m) {
                    Err(_) => assert_eq!(self.ch[*to].state(), &before, "a refused message changed the state"),
                    Ok(step) => {
                        // Accepted: a replay answered idempotently, or a hostile message that fit.
                        let proposal = match &m {
                            Message::Propose { nonce, balances, locks, .. } => Some((*nonce, *balances, locks.clone())),
                            _ => None,
                        };
                        if let (Some(p), Some(Message::Countersign { .. })) = (proposal, &step.reply) {
                            self.signed[*to].push(p);
                        }
                        if let Some(r) = step.reply {
                            // what an honest party sends is recorded; the hostile sender drops it
                            self.send(*to, r);
                            self.inbox[1 - *to].pop_back();
                        }
                        return !step.events.is_empty() || self.ch[*to].state() != &before;
                    }
                }
            }
        }
        false
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_500, max_shrink_iters: 2_000, ..ProptestConfig::default() })]

    /// Honest parties under random interleavings, reordering, duplicates and reconnects: the
    /// invariants hold at every step, and once the network settles both agree and every payment
    /// is acknowledged with the right balances.
    #[test]
    fn honest_runs_are_safe_and_converge(actions in prop::collection::vec(action().prop_filter("honest", |a| !matches!(a, Action::Attack(..))), 1..40)) {
        let mut p = Pair::opened();
        for a in &actions {
            p.run(a);
            p.check_invariants();
        }
        p.reconnect();
        p.settle();
        p.check_invariants();
        prop_assert_eq!(p.ch[0].balances(), p.ch[1].balances());
        prop_assert_eq!(p.ch[0].nonce(), p.ch[1].nonce());
        prop_assert_eq!(p.acked, p.paid);
        prop_assert_eq!(p.received, [p.paid[1], p.paid[0]]);
        prop_assert_eq!(p.ch[0].balances()[0], DEPOSITS[0] + p.paid[1] - p.paid[0]);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10_000, max_shrink_iters: 2_000, ..ProptestConfig::default() })]

    /// Random interleavings of payments, lock adds, fulfils, releases, expiries and clock ticks,
    /// with duplicates, reorders, reconnects and malicious messages: what each party can claim
    /// (its balance plus the locks it can win with the preimages it knows) never drops below
    /// what it is owed (deposit, plus what it received or had refunded, less what it paid or
    /// locked), in its own latest sheet and in every sheet it countersigned that the peer has not
    /// revoked; balances and locks add up; a refused message changes nothing.
    #[test]
    fn locks_never_move_money_wrongly(actions in prop::collection::vec(lock_action(), 1..30)) {
        let mut p = Pair::opened();
        let mut hostile_accepted = false;
        for a in &actions {
            hostile_accepted |= p.run(a);
            p.check_invariants();
        }
        if !hostile_accepted {
            p.reconnect();
            p.settle();
            p.check_invariants();
            prop_assert_eq!(p.ch[0].balances(), p.ch[1].balances());
            prop_assert_eq!(p.ch[0].locks(), p.ch[1].locks());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, max_shrink_iters: 2_000, ..ProptestConfig::default() })]

    /// DESIGN §2 rule 6: a party that freezes the channel at any point of an honest run (the
    /// other goes on sending, reordering, duplicating, reconnecting) keeps one settlement from
    /// then on, and it is never a sheet the peer can punish nor below what the party is owed.
    #[test]
    fn freezing_at_any_point_settles_safely(
        before in prop::collection::vec(action().prop_filter("honest", |a| !matches!(a, Action::Attack(..))), 0..25),
        who in 0usize..2,
        after in prop::collection::vec(action().prop_filter("honest", |a| !matches!(a, Action::Attack(..))), 0..25),
    ) {
        let mut p = Pair::opened();
        for a in before.iter().chain([Action::Freeze(who)].iter()).chain(after.iter()) {
            p.run(a);
            p.check_invariants();
        }
        p.reconnect();
        for _ in 0..50 {
            p.propose(1 - who);
            for to in [0, 1] {
                let _ = p.deliver(to);
            }
            p.check_invariants();
        }
        prop_assert!(p.ch[who].frozen().is_some());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 7_500, max_shrink_iters: 2_000, ..ProptestConfig::default() })]

    /// Random sequences mixing honest steps with malicious messages (wrong nonce, wrong sum, wrong
    /// direction, overdraft, bad signature, wrong waiver secret, replayed and reordered messages):
    /// a refused message changes nothing, money never moves wrongly, each party keeps a
    /// countersigned latest sheet it can liquidate with, and no revoked sheet becomes a latest.
    #[test]
    fn malicious_messages_never_move_money_wrongly(actions in prop::collection::vec(action(), 1..30)) {
        let mut p = Pair::opened();
        let mut hostile_accepted = false;
        for a in &actions {
            hostile_accepted |= p.run(a);
            p.check_invariants();
        }
        if !hostile_accepted {
            p.reconnect();
            p.settle();
            p.check_invariants();
            prop_assert_eq!(p.ch[0].balances(), p.ch[1].balances());
            prop_assert_eq!(p.acked, p.paid);
        }
    }
}

/// A refused proposal's lock moves are reported cancelled, not dropped silently (a review
/// finding): whoever waits on them hears it; the refusal of another message withdraws nothing.
#[test]
fn a_withdrawn_proposal_reports_its_lock_moves_cancelled() {
    let mut p = Pair::opened();
    p.ch[0].add_lock(10, B256::repeat_byte(1), T0 + 10).expect("add");
    let m = p.ch[0].propose().expect("propose").expect("a proposal");
    assert!(matches!(p.ch[1].handle(&m), Err(Error::BadLock(_))), "expiry too soon for Bob");
    let other = Message::Revoke { nonce: 0, secret: B256::ZERO };
    assert!(p.ch[0].withdraw_proposal_if(other.digest()).is_empty());
    let events = p.ch[0].withdraw_proposal_if(m.digest());
    assert!(matches!(&events[..], [Event::LockMoveCancelled { mv: LockMove::Add(l) }] if l.amount == 10), "{events:?}");
    assert!(p.ch[0].is_idle());
    assert_eq!(p.ch[0].spendable(), DEPOSITS[0]);
}

#[test]
fn chain_duties_reveal_inside_the_window_and_settle_past_the_expiry() {
    let mut p = Pair::opened();
    let to_bob = lock_to_bob(&mut p, 100, 1, HOUR);
    let window = 300;
    let grace = p.ch[0].state().policy.grace;
    let (expiry, bob, alice) = (to_bob.expiry, &p.ch[1], &p.ch[0]);
    // Bob knows the preimage: nothing to do before the window, a reveal inside it, and a
    // liquidation once the expiry and the grace passed without a countersigned fulfil.
    assert_eq!(bob.chain_duties(expiry - window - 1, window), ChainDuties::default());
    let d = bob.chain_duties(expiry - window, window);
    assert_eq!(d.reveal, [Reveal { hash: to_bob.hash, preimage: secret(1), expiry }]);
    assert!(d.liquidate.is_none());
    assert!(bob.chain_duties(expiry + 1, window).reveal.is_empty(), "a reveal after the expiry is worthless");
    assert!(bob.chain_duties(expiry + grace, window).liquidate.is_none());
    assert!(bob.chain_duties(expiry + grace + 1, window).liquidate.is_some());
    // Alice, the sender, does not know it: she reveals nothing and takes the lock back on chain
    // only after her own expiry proposal had its grace (expiry + 3 grace).
    assert!(alice.chain_duties(expiry - 1, window).reveal.is_empty());
    assert!(alice.chain_duties(expiry + 3 * grace, window).liquidate.is_none());
    assert!(alice.chain_duties(expiry + 3 * grace + 1, window).liquidate.is_some());
    // A frozen channel is being settled already; one that ended on chain reveals at once.
    let mut frozen = Channel::restore(p.ch[1].state().clone(), key(2)).expect("restore");
    let _ = frozen.freeze("closing", false);
    assert!(frozen.chain_duties(expiry + grace + 1, window).liquidate.is_none());
    let _ = frozen.set_funding(Funding::Ended);
    assert_eq!(frozen.chain_duties(expiry - HOUR + 1, window).reveal.len(), 1);
}

#[test]
fn a_refused_fulfil_is_unclaimed_until_claimed_again() {
    let mut p = Pair::opened();
    let lock = p.ch[0].add_lock(100, preimage_hash(&secret(2)), p.now + HOUR).expect("add");
    p.paid[0] += 100;
    p.settle();
    assert!(p.ch[1].unclaimed().is_empty(), "Bob does not know the preimage yet");
    p.ch[1].learn_preimage(secret(2));
    assert_eq!(p.ch[1].unclaimed(), [secret(2)]);
    p.ch[1].fulfil(secret(2)).expect("fulfil");
    assert!(p.ch[1].unclaimed().is_empty(), "queued");
    let m = p.ch[1].propose().expect("propose").expect("a proposal");
    assert!(p.ch[1].unclaimed().is_empty(), "in flight");
    // Alice refuses it (say, a bug or a cheat): the proposal is withdrawn, the claim is open again.
    let events = p.ch[1].withdraw_proposal_if(m.digest());
    assert!(matches!(&events[..], [Event::LockMoveCancelled { mv: LockMove::Fulfil { .. } }]));
    assert_eq!(p.ch[1].unclaimed(), [secret(2)]);
    assert_eq!(p.ch[1].locks(), [lock]);
}

#[test]
fn a_routed_lock_carries_its_onion_to_the_receiver_until_it_is_settled() {
    let mut p = Pair::opened();
    let packet = alloy_primitives::Bytes::from(vec![7u8; 1366]);
    let lock = p.ch[0].add_routed_lock(300, preimage_hash(&secret(3)), p.now + HOUR, packet.clone()).expect("add");
    assert!(p.ch[0].add_routed_lock(300, lock.hash, lock.expiry, packet.clone()).is_err(), "one onion per lock");
    let too_big = alloy_primitives::Bytes::from(vec![0u8; crate::MAX_ONION + 1]);
    assert!(p.ch[0].add_routed_lock(1, lock.hash, lock.expiry, too_big).is_err());
    let m = p.ch[0].propose().expect("propose").expect("a proposal");
    let Message::Propose { onions, .. } = &m else { panic!("{m:?}") };
    assert_eq!(onions, &[crate::Onion { lock, packet: packet.clone() }]);
    // The proposal is retransmitted with its onion after a reconnect.
    let again = p.ch[0].retransmit().expect("retransmit");
    assert!(again.contains(&m));
    // An onion that belongs to no added lock is refused without change.
    let Message::Propose { nonce, balances, waiver, locks, moves, .. } = m.clone() else { unreachable!() };
    let stray = HashLock { amount: 1, ..lock };
    let bad = Message::Propose {
        signature: None,
        nonce,
        balances,
        waiver,
        locks,
        moves,
        onions: vec![crate::Onion { lock: stray, packet: packet.clone() }],
    };
    assert!(matches!(p.ch[1].handle(&bad), Err(Error::BadLock(_))));
    assert!(p.ch[1].onion(&lock).is_none());
    p.paid[0] += 300;
    p.send(0, m);
    p.settle();
    assert_eq!(p.ch[1].onion(&lock), Some(&packet), "Bob's node peels it once the lock is his");
    // Settled: the onion is forgotten on both sides.
    p.ch[1].learn_preimage(secret(3));
    p.ch[1].fulfil(secret(3)).expect("fulfil");
    p.propose(1);
    p.settle();
    assert!(p.ch[0].onion(&lock).is_none() && p.ch[1].onion(&lock).is_none());
    p.check_invariants();
}

#[test]
fn payments_outcome_tells_acknowledged_from_cancelled_and_pending() {
    let mut p = Pair::opened();
    let first = p.ch[0].next_payment_id();
    p.pay(0, 10).expect("pay");
    p.pay(0, 10).expect("pay");
    assert_eq!(p.ch[0].payments_outcome(first, 2), crate::PaymentsOutcome::Pending, "queued");
    p.propose(0);
    p.settle();
    assert_eq!(p.ch[0].payments_outcome(first, 2), crate::PaymentsOutcome::Acked);
    // A queued payment cancelled, then a later one acknowledged: the cancelled one stays cancelled
    // although a later id was acknowledged after it.
    let cancelled = p.pay(0, 5).expect("pay");
    assert_eq!(p.ch[0].cancel_queued(cancelled, cancelled, 5), vec![cancelled]);
    p.pay(0, 7).expect("pay");
    p.propose(0);
    p.settle();
    assert_eq!(p.ch[0].payments_outcome(cancelled, 1), crate::PaymentsOutcome::Cancelled);
    assert_eq!(p.ch[0].payments_outcome(cancelled + 1, 1), crate::PaymentsOutcome::Acked);
    assert_eq!(p.ch[0].payments_outcome(first, 4), crate::PaymentsOutcome::Cancelled, "a range holding it");
    // A signed proposal is never withdrawn, refused or not: Bob may hold Alice's signature.
    let signed = p.pay(0, 3).expect("pay");
    let m = p.ch[0].propose().expect("propose").expect("proposal");
    assert!(matches!(m, Message::Propose { signature: Some(_), .. }), "{m:?}");
    assert!(p.ch[0].withdraw_proposal_if(m.digest()).is_empty());
    assert_eq!(p.ch[0].payments_outcome(signed, 1), crate::PaymentsOutcome::Pending);
    p.send(0, m);
    p.settle();
    assert_eq!(p.ch[0].payments_outcome(signed, 1), crate::PaymentsOutcome::Acked);
    // A refused unsigned proposal's payments are cancelled.
    p.pay(1, 1).expect("Bob pays: Alice's next proposal is unsigned");
    p.settle();
    let refused = p.pay(0, 3).expect("pay");
    let m = p.ch[0].propose().expect("propose").expect("proposal");
    assert!(matches!(m, Message::Propose { signature: None, .. }), "{m:?}");
    assert!(!p.ch[0].withdraw_proposal_if(m.digest()).is_empty());
    assert_eq!(p.ch[0].payments_outcome(refused, 1), crate::PaymentsOutcome::Cancelled);
}

#[test]
fn a_claim_too_close_to_the_expiry_is_refused_unless_the_preimage_is_known() {
    // The review's attack: Bob (an intermediary) forwarded a lock; the next hop sits on the
    // preimage and claims only when Bob could no longer claim upstream in time. Alice plays that
    // hop's sender here: Alice locks to Bob, Bob claims late.
    let mut p = Pair::opened();
    let lock = p.ch[0].add_lock(100, preimage_hash(&secret(6)), p.now + HOUR).expect("add");
    p.paid[0] += 100;
    p.settle();
    let margin = p.ch[0].state().policy.claim_margin;
    p.run(&Action::Tick(HOUR - margin + 1));
    p.ch[1].fulfil(secret(6)).expect("fulfil");
    let late = p.ch[1].propose().expect("propose").expect("proposal");
    let e = p.ch[0].handle(&late).expect_err("too late");
    assert!(e.to_string().contains("too late"), "{e}");
    assert_eq!(p.ch[0].locks(), [lock], "nothing changed");
    // Once Alice knows the preimage (from the registry, where Bob revealed it), she takes it.
    p.ch[0].learn_preimage(secret(6));
    p.ch[0].handle(&late).expect("countersigned");
}

#[test]
fn a_claim_whose_revocation_is_withheld_is_revealed_on_chain_and_settled() {
    let mut p = Pair::opened();
    let lock = lock_to_bob(&mut p, 100, 7, HOUR);
    // Bob claims; Alice countersigns and Bob commits, but Alice never revokes: her previous
    // sheet still holds the lock and cannot be punished.
    p.ch[1].fulfil(secret(7)).expect("fulfil");
    let m = p.ch[1].propose().expect("propose").expect("proposal");
    let cs = p.ch[0].handle(&m).expect("countersign").reply.expect("reply");
    let commit = p.ch[1].handle(&cs).expect("commit").reply.expect("reply");
    assert!(matches!(commit, Message::Commit { .. }));
    assert!(p.ch[1].locks().is_empty(), "Bob's latest sheet no longer holds the lock");
    let window = 300;
    let d = p.ch[1].chain_duties(lock.expiry - window, window);
    assert_eq!(d.reveal, [Reveal { hash: lock.hash, preimage: secret(7), expiry: lock.expiry }]);
    let grace = p.ch[1].state().policy.grace;
    assert!(p.ch[1].chain_duties(lock.expiry + grace + 1, window).liquidate.is_some());
}

#[test]
fn lock_pending_sees_a_lock_queued_proposed_or_in_the_sheet() {
    let mut p = Pair::opened();
    let hash = preimage_hash(&secret(8));
    assert!(!p.ch[0].lock_pending(&hash));
    p.ch[0].add_lock(10, hash, p.now + HOUR).expect("add");
    assert!(p.ch[0].lock_pending(&hash), "queued");
    p.propose(0);
    assert!(p.ch[0].lock_pending(&hash), "proposed, not countersigned");
    p.paid[0] += 10;
    p.settle();
    assert!(p.ch[0].lock_pending(&hash), "in the sheet");
    p.ch[1].release(hash).expect("release");
    p.propose(1);
    p.settle();
    assert!(!p.ch[0].lock_pending(&hash), "back");
}

#[test]
fn a_frozen_channel_keeps_the_revocation_a_late_commit_carries() {
    let mut p = Pair::opened_unsigned();
    p.pay(0, 10).expect("pay");
    p.propose(0);
    let settled_nonce = p.ch[1].nonce();
    // Alice proposes, Bob countersigns, then Bob freezes (closing) before Alice's Commit arrives.
    let propose = p.ch[0].propose().expect("propose");
    let propose = match propose {
        Some(m) => m,
        None => p.ch[0].retransmit().expect("retransmit").into_iter().last().expect("the proposal"),
    };
    let cs = p.ch[1].handle(&propose).expect("countersign").reply.expect("reply");
    let (settlement, _) = p.ch[1].freeze("closing", false);
    let commit = p.ch[0].handle(&cs).expect("commit").reply.expect("reply");
    let Message::Commit { nonce, .. } = commit else { panic!("{commit:?}") };
    assert!(!p.ch[1].is_revoked_by_peer(nonce - 1));
    let step = p.ch[1].handle(&commit).expect("the revocation is taken");
    assert_eq!(step, crate::Step::default(), "no reply, no event");
    assert!(p.ch[1].is_revoked_by_peer(nonce - 1), "Bob can punish Alice's previous sheet now");
    assert_eq!(p.ch[1].nonce(), settled_nonce, "the new sheet was not taken");
    assert_eq!(p.ch[1].settlement(), settlement, "the settlement chosen at the freeze stands");
}

#[test]
fn a_queued_lock_move_the_peer_overtook_is_reported_cancelled() {
    let mut p = Pair::opened();
    let lock = p.ch[0].add_lock(100, preimage_hash(&secret(9)), p.now + HOUR).expect("add");
    p.paid[0] += 100;
    p.settle();
    p.run(&Action::Tick(HOUR + 241));
    // Bob queues a release while Alice's expiry of the same lock goes through first.
    p.ch[1].release(lock.hash).expect("release queued");
    p.ch[0].expire_due().expect("expire");
    p.propose(0);
    p.settle();
    assert!(p.ch[1].locks().is_empty());
    assert_eq!(p.ch[1].propose().expect("propose"), None, "nothing left to propose");
    assert_eq!(p.ch[1].take_dropped(), [Event::LockMoveCancelled { mv: LockMove::Release(lock) }]);
    assert!(p.ch[1].take_dropped().is_empty(), "reported once");
}

// ---------------------------------------------------------------------- signed proposals (issue #17)

/// Takes the next message for `to` out of its inbox.
fn take(p: &mut Pair, to: usize) -> Message {
    p.inbox[to].pop_front().expect("a message")
}

#[test]
fn a_signed_update_takes_three_messages() {
    let mut p = Pair::opened();
    let id = p.pay(0, 40).expect("pay");
    p.propose(0);
    let propose = take(&mut p, 1);
    assert!(matches!(propose, Message::Propose { nonce: 1, signature: Some(_), .. }), "{propose:?}");
    // Bob holds Alice's signature over his sheet 1: he countersigns hers and revokes his sheet 0.
    assert_eq!(p.apply(1, &propose).expect("accepted"), vec![]);
    assert_eq!(p.ch[1].nonce(), 1, "Bob's latest is sheet 1, countersigned by Alice");
    let countersign = take(&mut p, 0);
    let Message::Countersign { revocation: Some(_), next: Some(next), .. } = &countersign else {
        panic!("{countersign:?}")
    };
    assert_ne!(*next, Address::ZERO);
    assert!(!p.ch[0].is_idle() && !p.ch[1].is_idle());
    let events = p.apply(0, &countersign).expect("countersigned");
    assert_eq!(events, vec![Event::PaymentsAcked { first: id, count: 1, amount: 40, nonce: 1 }]);
    assert!(p.ch[0].is_revoked_by_peer(0), "acknowledged with Bob's revocation stored (rule 2)");
    let revoke = take(&mut p, 1);
    assert!(matches!(revoke, Message::Revoke { nonce: 0, .. }), "{revoke:?}");
    assert_eq!(p.apply(1, &revoke).expect("revoked"), vec![Event::Received { amount: 40, nonce: 1 }]);
    assert!(p.ch[0].is_idle() && p.ch[1].is_idle() && p.inbox.iter().all(VecDeque::is_empty));
    assert_eq!(p.history.len(), 3 + 3, "opening (3) and one update (3)");
    p.check_invariants();
    // The next one is signed again, with the waiver address Bob named.
    p.pay(0, 1).expect("pay");
    p.propose(0);
    assert!(matches!(p.inbox[1].front(), Some(Message::Propose { nonce: 2, signature: Some(_), .. })));
    p.settle();
    p.check_invariants();
}

#[test]
fn bad_signed_proposals_and_answers_are_refused_without_change() {
    let mut p = Pair::opened();
    p.pay(0, 40).expect("pay");
    p.propose(0);
    let Message::Propose { nonce, balances, waiver, locks, moves, onions, signature: Some(good) } = take(&mut p, 1)
    else {
        panic!("signed proposal expected")
    };
    let propose = |signature| Message::Propose {
        nonce,
        balances,
        waiver,
        locks: locks.clone(),
        moves: moves.clone(),
        onions: onions.clone(),
        signature: Some(signature),
    };
    let mut bad = good;
    bad.0[10] ^= 1;
    assert_refused(&mut p, 1, &propose(bad), |e| matches!(e, Error::BadSignature { .. }));
    // A signed proposal may only come from the party that proposed the latest sheet.
    let mut q = Pair::opened_unsigned();
    q.pay(0, 40).expect("pay");
    let unsigned = q.ch[0].propose().expect("propose").expect("proposal");
    let Message::Propose { nonce, balances, waiver, locks, .. } = unsigned else { panic!() };
    let forged =
        Message::Propose { nonce, balances, waiver, locks, moves: vec![], onions: vec![], signature: Some(good) };
    assert_refused(&mut q, 1, &forged, |e| matches!(e, Error::Unexpected { .. }));
    // Bob accepts the good one; his answer with a wrong revocation is a protocol violation.
    p.apply(1, &propose(good)).expect("accepted");
    let Message::Countersign { nonce, signature, waiver, revocation, next } = take(&mut p, 0) else { panic!() };
    let answer = |revocation| Message::Countersign { nonce, signature, waiver, revocation, next };
    let e = assert_refused(&mut p, 0, &answer(Some(B256::repeat_byte(3))), |e| {
        matches!(e, Error::WrongSecret { nonce: 0, .. })
    });
    assert_eq!(e.severity(), Severity::Close);
    assert_refused(&mut p, 0, &answer(None), |e| matches!(e, Error::Unexpected { .. }));
    let mut forged = signature;
    forged.0[3] ^= 1;
    assert_refused(&mut p, 0, &Message::Countersign { nonce, signature: forged, waiver, revocation, next }, |e| {
        matches!(e, Error::BadSignature { .. })
    });
    p.apply(0, &answer(revocation)).expect("good answer");
    // Alice's revocation, wrong, then right.
    let Message::Revoke { nonce, secret } = take(&mut p, 1) else { panic!() };
    let e = assert_refused(&mut p, 1, &Message::Revoke { nonce, secret: B256::repeat_byte(4) }, |e| {
        matches!(e, Error::WrongSecret { .. })
    });
    assert_eq!(e.severity(), Severity::Close);
    p.apply(1, &Message::Revoke { nonce, secret }).expect("good revoke");
    p.check_invariants();
}

#[test]
fn a_signed_proposal_with_lock_moves_is_refused() {
    // Alice never signs one (lock moves may be refused, a signed proposal is never withdrawn); a
    // peer that does is refused.
    let mut p = Pair::opened();
    p.pay(0, 1).expect("pay");
    p.settle();
    p.ch[0].add_lock(100, preimage_hash(&secret(1)), p.now + HOUR).expect("add");
    let m = p.ch[0].propose().expect("propose").expect("proposal");
    let Message::Propose { nonce, balances, waiver, locks, moves, onions, signature: None } = m else {
        panic!("a proposal with a lock move is unsigned: {m:?}")
    };
    // A signature over Bob's sheet with those balances, as a hostile proposer would add it (the
    // moves are refused before any signature is looked at).
    let sheet = BalanceSheet::with_locks(nonce, balances, &locks, Address::repeat_byte(9));
    let signature = crate::sign(&key(1), &sheet, &params().domain()).expect("sign");
    let hostile = Message::Propose { nonce, balances, waiver, locks, moves, onions, signature: Some(signature) };
    assert_refused(&mut p, 1, &hostile, |e| matches!(e, Error::BadLock(_)));
}

#[test]
fn two_proposals_at_once_the_signed_one_goes_first() {
    let mut p = Pair::opened();
    let a = p.pay(0, 10).expect("Alice pays");
    let b = p.pay(1, 3).expect("Bob pays");
    p.propose(0);
    p.propose(1);
    assert!(matches!(p.inbox[1].front(), Some(Message::Propose { signature: Some(_), .. })));
    assert!(matches!(p.inbox[0].front(), Some(Message::Propose { signature: None, .. })));
    // Alice's (signed) wins; Bob's goes back to his queue.
    assert!(matches!(p.deliver(0), Some(Err(Error::Conflict(1)))));
    p.deliver(1).expect("Alice's proposal").expect("accepted by Bob");
    assert_eq!(p.ch[1].queued(), 1, "Bob's payment is queued again");
    p.settle();
    assert_eq!(p.ch[0].payments_outcome(a, 1), crate::PaymentsOutcome::Acked);
    assert_eq!(p.ch[1].payments_outcome(b, 1), crate::PaymentsOutcome::Acked);
    assert_eq!(p.ch[0].balances(), [DEPOSITS[0] - 10 + 3, DEPOSITS[1] + 10 - 3]);
    p.check_invariants();
}

#[test]
fn a_frozen_proposer_keeps_its_signed_payments_pending_and_the_revocation_it_gets() {
    let mut p = Pair::opened();
    let id = p.pay(0, 40).expect("pay");
    p.propose(0);
    p.deliver(1).expect("propose").expect("accepted");
    let (settlement, step) = p.ch[0].freeze("closing", false);
    // Alice liquidates with sheet 0, which she never revoked; Bob may liquidate with his sheet 1
    // (Alice signed it): the payment is neither acknowledged nor cancelled until the chain tells.
    assert_eq!(settlement, Settlement::Liquidate(p.ch[0].latest().cloned().expect("sheet 0")));
    assert!(!step.events.iter().any(|e| matches!(e, Event::PaymentsCancelled { .. })), "{:?}", step.events);
    assert_eq!(p.ch[0].payments_outcome(id, 1), crate::PaymentsOutcome::Pending);
    assert!(p.ch[0].withdraw_proposal_if(B256::ZERO).is_empty());
    // Bob's answer arrives late: its revocation is kept (Alice can punish Bob's sheet 0), its
    // sheet is not taken, and Alice reveals nothing.
    let answer = take(&mut p, 0);
    assert_eq!(p.ch[0].handle(&answer).expect("revocation kept"), crate::Step::default());
    assert!(p.ch[0].is_revoked_by_peer(0));
    assert_eq!(p.ch[0].settlement(), settlement);
    assert!(p.revealed[0].is_empty());
    p.check_invariants();
    // The chain decides: Bob liquidated with the sheet Alice signed (nonce 1), so the payment was
    // made; had the channel ended with sheet 0 (Alice's liquidation), it was never made.
    let mut other = Channel::restore(p.ch[0].state().clone(), key(1)).expect("a copy");
    assert_eq!(
        p.ch[0].liquidated_on_chain(1),
        vec![Event::PaymentsAcked { first: id, count: 1, amount: 40, nonce: 1 }]
    );
    assert_eq!(p.ch[0].payments_outcome(id, 1), crate::PaymentsOutcome::Acked);
    assert_eq!(other.liquidated_on_chain(0), vec![Event::PaymentsCancelled { ids: vec![id] }]);
    assert_eq!(other.payments_outcome(id, 1), crate::PaymentsOutcome::Cancelled);
    assert_eq!(other.liquidated_on_chain(0), vec![], "decided once");
}

#[test]
fn a_frozen_payee_answers_a_signed_proposal_it_accepted_again() {
    // Bob accepts Alice's signed proposal; his answer is lost; he freezes. On reconnect he sends
    // the same answer again (nothing new signed or revealed), and Alice's retransmitted proposal
    // gets it too: Alice is acknowledged, Bob gets her revocation and counts the payment received.
    let mut p = Pair::opened();
    let id = p.pay(0, 40).expect("pay");
    p.propose(0);
    p.deliver(1).expect("propose").expect("accepted");
    let answer = take(&mut p, 0);
    let (settlement, _) = p.ch[1].freeze("closing", false);
    let again = p.ch[1].retransmit().expect("retransmit");
    assert_eq!(again, vec![answer.clone()], "the same answer, nothing else");
    let proposal = p.ch[0].retransmit().expect("retransmit").into_iter().last().expect("the proposal");
    assert_eq!(p.ch[1].handle(&proposal).expect("a duplicate").reply, Some(answer.clone()));
    let events = p.apply(0, &answer).expect("Alice takes the answer");
    assert_eq!(events, vec![Event::PaymentsAcked { first: id, count: 1, amount: 40, nonce: 1 }]);
    assert_eq!(p.deliver(1).expect("revoke").expect("taken"), vec![Event::Received { amount: 40, nonce: 1 }]);
    assert_eq!(p.ch[1].settlement(), settlement, "the settlement chosen at the freeze stands");
    p.check_invariants();
}

#[test]
fn payments_are_tallied_id_by_id() {
    // A signed payment stays in flight through a freeze while the payments queued behind it are
    // cancelled: each is counted for what it is.
    let mut p = Pair::opened();
    let acked = p.pay(0, 5).expect("pay");
    p.settle();
    let a = p.pay(0, 10).expect("pay");
    p.propose(0);
    let b = p.pay(0, 10).expect("queued behind");
    p.pay(0, 10).expect("queued behind");
    p.ch[0].freeze("closing", false);
    assert_eq!(p.ch[0].payments_tally(a, 1), (0, 0, 1), "the signed one is in flight");
    assert_eq!(p.ch[0].payments_tally(b, 2), (0, 2, 0), "those behind it are cancelled");
    assert_eq!(p.ch[0].payments_tally(acked, 4), (1, 2, 1));
    assert_eq!(p.ch[0].payments_outcome(b, 2), crate::PaymentsOutcome::Cancelled);
}

#[test]
fn a_payer_that_does_not_follow_the_chain_signs_once_the_peer_took_a_proposal() {
    // Without the chain (funding unchecked), a payment may be refused because the channel is not
    // funded yet: a signed proposal could not be withdrawn then, so the first is unsigned, and
    // those after a proposal the peer took are signed.
    let mut p = Pair::new();
    let m = p.ch[0].open().expect("open");
    p.send(0, m);
    p.settle();
    assert_eq!(p.ch[0].funding(), Funding::Unchecked);
    p.pay(0, 5).expect("pay");
    p.propose(0);
    assert!(matches!(p.inbox[1].front(), Some(Message::Propose { nonce: 1, signature: None, .. })));
    p.settle();
    p.pay(0, 5).expect("pay");
    p.propose(0);
    assert!(matches!(p.inbox[1].front(), Some(Message::Propose { nonce: 2, signature: Some(_), .. })));
    p.settle();
    p.check_invariants();
}
