//! The RSMC channel state machine for one party.

use std::collections::BTreeMap;

use alloy_primitives::{Address, B256, U256};
use alloy_signer_local::PrivateKeySigner;
use alloy_sol_types::Eip712Domain;
use serde::{Deserialize, Serialize};

use crate::{
    Amount, Error, LockMove, Message, Result, RevocationStore, WaiverChain,
    message::{MAX_ONION, Onion},
    sheet::{BalanceSheet, Close, HashLock, PeerKey, Sig, Waiver, domain, sign},
    waiver::{MAX_UPDATES, waiver_key},
};

/// The version tag of [`ChannelState`]'s serialised form. Versions 1 and 2 hold channels of
/// contract v1 (a full contract per channel, EIP-712 domain version "1"); this build signs for
/// contract v2 only, so they are refused with [`Error::ContractV1`], never misread.
pub const STATE_VERSION: u32 = 3;

/// What this party knows of the channel's contract, as far as payments are concerned.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Funding {
    /// Not followed on chain (a node without a chain endpoint): payments are not gated.
    #[default]
    Unchecked,
    /// The contract is waiting for deposits: sheet 0 may be agreed, payments may not.
    Pending,
    /// Both deposits are in and the channel runs: payments flow.
    Running,
    /// Cancelled, liquidated or closed on chain: the channel is frozen.
    Ended,
}

impl Funding {
    fn name(self) -> &'static str {
        match self {
            Self::Unchecked => "unchecked",
            Self::Pending => "not yet funded",
            Self::Running => "running",
            Self::Ended => "ended",
        }
    }
}

/// How a frozen channel is to be settled on chain, chosen by [`Channel::freeze`] from the stored
/// state: nothing is signed after the choice, so it stays right.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Settlement {
    /// No countersigned sheet exists: cancel the contract (deposits refunded).
    Cancel,
    /// Both signatures of a cooperative close are here.
    Cooperative {
        /// The nonce.
        nonce: u64,
        /// The payouts.
        balances: [Amount; 2],
        /// Party 0's and party 1's signatures.
        signatures: [Sig; 2],
    },
    /// Liquidate with this party's latest countersigned sheet, which it never revoked.
    Liquidate(LiquidationSheet),
}

/// What both parties agreed on before opening: the contract and its deposits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelParams {
    /// The chain's id (EIP-712 domain).
    pub chain_id: u64,
    /// The channel's VirtualBank contract.
    pub contract: Address,
    /// Party 0 and party 1.
    pub parties: [Address; 2],
    /// The agreed deposits: the balances of sheet 0.
    pub deposits: [Amount; 2],
    /// The lock period in seconds (the contract's; 1 to 2^32 - 1).
    pub lock_period: u64,
    /// The ERC-20 token the channel holds, or zero for ETH.
    pub token: Address,
    /// The salt the factory made the channel's clone with: with the rest it fixes its address.
    pub salt: B256,
}

impl ChannelParams {
    /// The total every sheet's balances must add up to.
    pub fn total(&self) -> Amount {
        self.deposits[0].saturating_add(self.deposits[1])
    }

    /// The channel's EIP-712 domain.
    pub fn domain(&self) -> Eip712Domain {
        domain(self.chain_id, self.contract)
    }

    fn check(&self) -> Result<()> {
        if self.parties[0] == Address::ZERO || self.parties[1] == Address::ZERO {
            return Err(Error::InvalidParams("a party is the zero address"));
        }
        if self.parties[0] == self.parties[1] {
            return Err(Error::InvalidParams("the parties are the same address"));
        }
        if self.deposits[0].checked_add(self.deposits[1]).is_none_or(|t| t == 0 || t > u128::MAX / 2) {
            return Err(Error::InvalidParams("deposits must be non-zero and below 2^127 in total"));
        }
        if self.lock_period == 0 || self.lock_period > u64::from(u32::MAX) {
            return Err(Error::InvalidParams("the lock period must be 1 to 2^32 - 1 seconds"));
        }
        Ok(())
    }
}

/// Where the channel is in its life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// The opening handshake (sheet 0) is not complete on this side.
    Opening,
    /// Sheet 0 or later is countersigned both ways; payments can flow.
    Open,
    /// A cooperative close was signed at this state; no more updates.
    Closing {
        /// The nonce closed at.
        nonce: u64,
        /// The balances closed at.
        balances: [Amount; 2],
        /// This party's signature over the `Close`.
        mine: Sig,
        /// The other party's, once received.
        theirs: Option<Sig>,
    },
}

impl Phase {
    fn name(&self) -> &'static str {
        match self {
            Self::Opening => "opening",
            Self::Open => "open",
            Self::Closing { .. } => "closing",
        }
    }
}

/// An update in flight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Flight {
    Idle,
    /// I proposed sheet `nonce`; waiting for the peer's countersignature.
    Proposed {
        nonce: u64,
        balances: [Amount; 2],
        #[serde(default)]
        locks: Vec<HashLock>,
        payments: Payments,
        #[serde(default)]
        moves: Vec<LockMove>,
        /// A signed proposal: the peer's waiver address of the peer sheet I signed. Never
        /// withdrawn: the peer may hold my signature.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signed: Option<Address>,
    },
    /// I countersigned the peer's signed proposal `nonce` and revoked my sheet `nonce - 1`;
    /// waiting for the peer's revocation of its sheet `nonce - 1`.
    Accepted {
        nonce: u64,
        /// What the update pays me.
        paid: Amount,
    },
    /// I countersigned the peer's proposal and committed mine; waiting for the peer's revocation.
    Committed {
        nonce: u64,
        payments: Payments,
        #[serde(default)]
        moves: Vec<LockMove>,
    },
    /// I countersigned the peer's proposal `nonce`; waiting for its commit.
    Countersigned {
        nonce: u64,
        balances: [Amount; 2],
        #[serde(default)]
        locks: Vec<HashLock>,
        peer_waiver: Address,
        /// The payment part of the update (what is not a lock move), to me.
        #[serde(default)]
        paid: Amount,
        #[serde(default)]
        moves: Vec<LockMove>,
    },
}

impl Flight {
    fn name(&self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::Proposed { .. } => "waiting for a countersignature",
            Self::Committed { .. } => "waiting for a revocation",
            Self::Countersigned { .. } => "waiting for a commit",
            Self::Accepted { .. } => "waiting for the proposer's revocation",
        }
    }
}

/// Payments `first..first + count` (ids are consecutive), `amount` in total.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Payments {
    first: u64,
    count: u64,
    amount: Amount,
}

impl Payments {
    fn ids(self) -> Vec<u64> {
        (self.first..self.first + self.count).collect()
    }
}

/// A party's latest sheet countersigned by the peer: what it can liquidate with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiquidationSheet {
    /// The sheet's nonce.
    pub nonce: u64,
    /// Party 0's and party 1's balances.
    pub balances: [Amount; 2],
    /// This party's waiver address for the sheet.
    pub waiver: Address,
    /// The sheet's hash-time locks (their root goes to `liquidate`, the list to `unlock`).
    #[serde(default)]
    pub locks: Vec<HashLock>,
    /// The peer's signature over the sheet.
    pub peer_signature: Sig,
}

/// Everything a party must store about a channel (the signing key aside). Serialise it with serde;
/// [`ChannelState::version`] tags the format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelState {
    /// Format version, [`STATE_VERSION`].
    pub version: u32,
    /// The agreed parameters.
    pub params: ChannelParams,
    /// This party's index, 0 or 1.
    pub me: u8,
    chain: WaiverChain,
    /// Where the channel is.
    pub phase: Phase,
    flight: Flight,
    latest: Option<LiquidationSheet>,
    /// Peer sheets this party countersigned that the peer has not revoked: nonce → waiver address.
    peer_unrevoked: BTreeMap<u64, Address>,
    revocations: RevocationStore,
    queue: Payments,
    next_payment: u64,
    /// Why the channel is frozen (DESIGN §2 rule 6), if it is: no update is signed any more.
    #[serde(default)]
    pub frozen: Option<String>,
    /// What this party knows of the contract's state.
    #[serde(default)]
    pub funding: Funding,
    /// Lock moves waiting for the next proposal.
    #[serde(default)]
    lock_queue: Vec<LockMove>,
    /// Preimages this party knows (its own, and those learnt from the peer's fulfils), by hash.
    #[serde(default)]
    preimages: BTreeMap<B256, B256>,
    /// What this party accepts of locks the peer adds or expires.
    #[serde(default)]
    pub policy: LockPolicy,
    /// The routing instructions of locks this party added or received, while they are in a sheet,
    /// queued or in flight.
    #[serde(default)]
    onions: Vec<Onion>,
    /// Payment ids cancelled (never to be made), as ranges `(first, count)`, the latest
    /// [`MAX_CANCELLED`]: tells a cancelled payment from an acknowledged one.
    #[serde(default)]
    cancelled: std::collections::VecDeque<(u64, u64)>,
    /// Queued lock moves a proposal dropped (they no longer applied), to be reported.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    dropped: Vec<LockMove>,
    /// The peer's waiver address for its sheet at this nonce (the one after the latest), from its
    /// last `Countersign`: what a signed proposal needs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    peer_next: Option<(u64, Address)>,
    /// The party that proposed the latest sheet: only it sends signed proposals, so two
    /// proposals made at once are never both signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    proposer: Option<u8>,
}

/// What a party accepts of the peer's lock moves (DESIGN §2 rule 3 b and e).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockPolicy {
    /// A lock added to this party must expire at least this long after now (seconds): the time
    /// to learn the preimage downstream and reveal it on chain.
    pub min_window: u64,
    /// … and at most this long after now (collateral is held until then).
    pub max_window: u64,
    /// A lock to this party is expired by the peer only once its expiry plus this grace has
    /// passed on this party's clock.
    pub grace: u64,
    /// The peer's claim (fulfil) of a lock from this party is taken off-chain only this long
    /// before the lock's expiry, unless this party already knows the preimage: later, this party
    /// could not learn the preimage in time to claim the lock it forwarded (one expiry per route,
    /// rule 8), so the peer must reveal it on the registry instead, where it counts for every hop.
    #[serde(default = "default_claim_margin")]
    pub claim_margin: u64,
}

fn default_claim_margin() -> u64 {
    300
}

impl Default for LockPolicy {
    fn default() -> Self {
        Self { min_window: 600, max_window: 14 * 24 * 3600, grace: 120, claim_margin: default_claim_margin() }
    }
}

/// How many ranges of cancelled payment ids a channel remembers.
pub const MAX_CANCELLED: usize = 1024;

/// What became of payments `first..first + count` (see [`Channel::payments_outcome`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentsOutcome {
    /// All acknowledged: covered by a countersigned sheet whose predecessor the peer revoked.
    Acked,
    /// Some were cancelled: they will never be made (the others may have been).
    Cancelled,
    /// Some are still queued or in flight.
    Pending,
    /// Too old to tell (their cancellations, if any, are no longer remembered).
    Unknown,
}

/// How many locks a sheet may hold (the contract's `unlock` is tested up to this).
pub const MAX_LOCKS: usize = 256;

/// Something the application should know after a step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// Both parties hold a countersigned sheet 0: the deposits can be paid.
    Opened,
    /// Payments `first..first + count` are acknowledged: covered by a countersigned, stored sheet
    /// whose predecessor the peer revoked.
    PaymentsAcked {
        /// First payment id.
        first: u64,
        /// How many.
        count: u64,
        /// Their total.
        amount: Amount,
        /// The sheet that covers them.
        nonce: u64,
    },
    /// Queued or proposed payments that will not be made (the channel is closing).
    PaymentsCancelled {
        /// The payment ids.
        ids: Vec<u64>,
    },
    /// The peer paid `amount`, settled: the sheet where it had more is revoked.
    Received {
        /// The amount.
        amount: Amount,
        /// The new sheet.
        nonce: u64,
    },
    /// A lock changed, irrevocably: the sheet holding the change is countersigned and stored
    /// here and the sheet before it is revoked by the party that loses by it (DESIGN §2 rule 7:
    /// a [`LockChange::Received`] lock may be forwarded).
    Lock {
        /// The lock.
        lock: HashLock,
        /// What happened to it.
        change: LockChange,
        /// The sheet that holds the change.
        nonce: u64,
    },
    /// The peer proved it knows the preimage of `hash` (in a fulfil it proposed): use it at once
    /// upstream (DESIGN §2 rule 9).
    PreimageLearned {
        /// The lock hash.
        hash: B256,
        /// Its preimage.
        preimage: B256,
    },
    /// A queued or proposed lock move will not be made (the peer refused it, or the channel
    /// froze).
    LockMoveCancelled {
        /// The move.
        mv: LockMove,
    },
    /// The channel was frozen (DESIGN §2 rule 6): no update is signed any more, and this is how
    /// it is to be settled on chain.
    Frozen {
        /// Why.
        reason: String,
        /// The choice, made from the stored state.
        settlement: Settlement,
        /// The peer broke the protocol (DESIGN §2 rule 5): settle on chain at once.
        violation: bool,
    },
    /// Both signatures of a cooperative close are here; anyone can submit it.
    CloseReady {
        /// The nonce.
        nonce: u64,
        /// The payouts.
        balances: [Amount; 2],
        /// Party 0's and party 1's signatures, in that order.
        signatures: [Sig; 2],
    },
}

/// A preimage to reveal on the registry (see [`Channel::chain_duties`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reveal {
    /// The lock's hash.
    pub hash: B256,
    /// Its preimage.
    pub preimage: B256,
    /// The lock's expiry: revealing after it is worthless.
    pub expiry: u64,
}

/// What a party must do on chain about its locks (see [`Channel::chain_duties`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChainDuties {
    /// Preimages to reveal now (unless the registry already has them).
    pub reveal: Vec<Reveal>,
    /// Freeze the channel and settle it on chain, for this reason.
    pub liquidate: Option<String>,
}

/// What happened to a lock (see [`Event::Lock`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LockChange {
    /// This party's lock to the peer is in both parties' sheets.
    Added,
    /// The peer's lock to this party is in both parties' sheets.
    Received,
    /// The receiver claimed it with its preimage.
    Fulfilled {
        /// The preimage.
        preimage: B256,
    },
    /// The receiver gave it up: back to the sender.
    Released,
    /// It expired unclaimed: back to the sender.
    Expired,
}

/// What a step produced: the message to send (after persisting the state) and the events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Step {
    /// Send this to the peer, once the new state is durably stored.
    pub reply: Option<Message>,
    /// What happened.
    pub events: Vec<Event>,
}

impl Step {
    fn reply(m: Message) -> Self {
        Self { reply: Some(m), events: Vec::new() }
    }

    fn with(mut self, e: Event) -> Self {
        self.events.push(e);
        self
    }
}

/// One party's end of a channel: its [`ChannelState`] and its signing key.
#[derive(Debug)]
pub struct Channel {
    state: ChannelState,
    signer: PrivateKeySigner,
    domain: Eip712Domain,
    /// The last two waiver addresses derived (a scalar multiplication each): every update needs
    /// those of the next two nonces, several times; [`Channel::warm`] derives them ahead.
    waiver_cache: std::cell::Cell<[Option<(u64, Address)>; 2]>,
    /// The peer's public key once seen: later signatures are verified, not recovered.
    peer_key: PeerKey,
    /// The time now (unix seconds), as the node last set it: lock expiries are judged by it.
    now: Option<u64>,
}

fn sum(b: [Amount; 2]) -> Option<Amount> {
    b[0].checked_add(b[1])
}

impl Channel {
    /// A new channel for party `me` (0 or 1), with its signing key and a fresh random waiver seed.
    pub fn new(params: ChannelParams, me: u8, signer: PrivateKeySigner, waiver_seed: B256) -> Result<Self> {
        params.check()?;
        if me > 1 {
            return Err(Error::InvalidParams("party index must be 0 or 1"));
        }
        let state = ChannelState {
            version: STATE_VERSION,
            params,
            me,
            chain: WaiverChain::new(waiver_seed),
            phase: Phase::Opening,
            flight: Flight::Idle,
            latest: None,
            peer_unrevoked: BTreeMap::new(),
            revocations: RevocationStore::new(),
            queue: Payments::default(),
            next_payment: 0,
            frozen: None,
            funding: Funding::Unchecked,
            lock_queue: Vec::new(),
            preimages: BTreeMap::new(),
            policy: LockPolicy::default(),
            onions: Vec::new(),
            cancelled: std::collections::VecDeque::new(),
            dropped: Vec::new(),
            peer_next: None,
            proposer: None,
        };
        Self::restore(state, signer)
    }

    /// A channel from stored state and the party's signing key.
    pub fn restore(state: ChannelState, signer: PrivateKeySigner) -> Result<Self> {
        if matches!(state.version, 1 | 2) {
            return Err(Error::ContractV1(state.version));
        }
        if state.version != STATE_VERSION {
            return Err(Error::Version { found: state.version, expected: STATE_VERSION });
        }
        let party = state.params.parties[state.me as usize];
        if signer.address() != party {
            return Err(Error::WrongKey { key: signer.address(), index: state.me, party });
        }
        let domain = state.params.domain();
        Ok(Self {
            state,
            signer,
            domain,
            waiver_cache: std::cell::Cell::new([None; 2]),
            peer_key: PeerKey::default(),
            now: None,
        })
    }

    /// Puts the channel back to `state`, one of its own earlier states (a step whose result
    /// could not be stored is undone this way).
    pub fn reset(&mut self, state: ChannelState) {
        self.state = state;
        self.waiver_cache.set([None; 2]);
    }

    /// The state to persist.
    pub fn state(&self) -> &ChannelState {
        &self.state
    }

    /// The agreed parameters.
    pub fn params(&self) -> &ChannelParams {
        &self.state.params
    }

    /// This party's index.
    pub fn me(&self) -> usize {
        self.state.me as usize
    }

    fn peer(&self) -> usize {
        1 - self.me()
    }

    /// The other party's address.
    pub fn peer_address(&self) -> Address {
        self.state.params.parties[self.peer()]
    }

    /// The current phase.
    pub fn phase(&self) -> &Phase {
        &self.state.phase
    }

    /// This party's latest countersigned sheet: what it can liquidate with. `None` before opening.
    pub fn latest(&self) -> Option<&LiquidationSheet> {
        self.state.latest.as_ref()
    }

    /// The latest nonce (0 before opening).
    pub fn nonce(&self) -> u64 {
        self.state.latest.as_ref().map_or(0, |l| l.nonce)
    }

    /// The balances of the latest sheet (the deposits before opening).
    pub fn balances(&self) -> [Amount; 2] {
        self.state.latest.as_ref().map_or(self.state.params.deposits, |l| l.balances)
    }

    /// True when no update is in flight.
    pub fn is_idle(&self) -> bool {
        self.state.flight == Flight::Idle
    }

    /// The first of this party's payment ids that is neither acknowledged nor cancelled (the
    /// next id to be given if there is none): payments below it are settled.
    pub fn unsettled_from(&self) -> u64 {
        let in_flight = match &self.state.flight {
            Flight::Proposed { payments, .. } | Flight::Committed { payments, .. } if payments.count > 0 => {
                Some(payments.first)
            }
            _ => None,
        };
        let queued = (self.state.queue.count > 0).then_some(self.state.queue.first);
        in_flight.or(queued).unwrap_or(self.state.next_payment)
    }

    /// Payments queued and not yet proposed.
    pub fn queued(&self) -> u64 {
        self.state.queue.count
    }

    /// Remembers that payments `ids` will never be made.
    fn note_cancelled(&mut self, ids: &[u64]) {
        let (Some(&lo), Some(&hi)) = (ids.iter().min(), ids.iter().max()) else { return };
        // Ids cancelled together are consecutive (a queue's tail, a proposal's batch).
        self.state.cancelled.push_back((lo, hi - lo + 1));
        while self.state.cancelled.len() > MAX_CANCELLED {
            self.state.cancelled.pop_front();
        }
    }

    /// What became of payments `first..first + count`: acknowledged, cancelled (some of them),
    /// still pending, or too old to tell. A payment id is never given twice.
    pub fn payments_outcome(&self, first: u64, count: u64) -> PaymentsOutcome {
        let end = first.saturating_add(count);
        if self.state.cancelled.iter().any(|&(f, c)| f < end && first < f.saturating_add(c)) {
            return PaymentsOutcome::Cancelled;
        }
        if self.unsettled_from() < end {
            return PaymentsOutcome::Pending;
        }
        match self.state.cancelled.front() {
            // Cancellations older than the oldest remembered are forgotten.
            Some(&(f, _)) if self.state.cancelled.len() == MAX_CANCELLED && first < f => PaymentsOutcome::Unknown,
            _ => PaymentsOutcome::Acked,
        }
    }

    /// How many of payments `first..first + count` are acknowledged, cancelled (never to be made)
    /// and still pending (queued or in flight), counted id by id from the remembered
    /// cancellations (see [`Channel::payments_outcome`]).
    pub fn payments_tally(&self, first: u64, count: u64) -> (u64, u64, u64) {
        let end = first.saturating_add(count);
        let cancelled_in = |lo: u64, hi: u64| -> u64 {
            self.state.cancelled.iter().map(|&(f, c)| f.saturating_add(c).min(hi).saturating_sub(f.max(lo))).sum()
        };
        // Ids below the first unsettled one are acknowledged unless cancelled.
        let settled_end = self.unsettled_from().clamp(first, end);
        let cancelled = cancelled_in(first, end).min(count);
        let acked = (settled_end - first).saturating_sub(cancelled_in(first, settled_end));
        (acked, cancelled, count.saturating_sub(acked + cancelled))
    }

    /// The queued lock moves proposals dropped since the last call (the peer settled the lock
    /// first), as [`Event::LockMoveCancelled`]: whoever waits on them hears they will not be made.
    pub fn take_dropped(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.state.dropped).into_iter().map(|mv| Event::LockMoveCancelled { mv }).collect()
    }

    /// The id the next payment queued on this channel gets (ids are consecutive).
    pub fn next_payment_id(&self) -> u64 {
        self.state.next_payment
    }

    /// What this party can still pay: its balance less queued and proposed payments.
    pub fn spendable(&self) -> Amount {
        let mine = self.balances()[self.me()];
        let queued = self.state.queue.amount;
        let adds = |moves: &[LockMove]| -> Amount {
            moves.iter().filter_map(|m| if let LockMove::Add(l) = m { Some(l.amount) } else { None }).sum()
        };
        let proposed = match &self.state.flight {
            Flight::Proposed { payments, moves, .. } => payments.amount.saturating_add(adds(moves)),
            _ => 0,
        };
        mine.saturating_sub(queued).saturating_sub(adds(&self.state.lock_queue)).saturating_sub(proposed)
    }

    /// True when the peer revoked its sheet `nonce` (and this party holds the secret to punish it).
    pub fn is_revoked_by_peer(&self, nonce: u64) -> bool {
        self.state.revocations.secret(nonce).is_some()
    }

    /// The revoked sheets the compact store covers (all nonces below this).
    pub fn peer_revoked_count(&self) -> u64 {
        self.state.revocations.revealed()
    }

    /// Punishes a liquidation by the peer with its sheet `nonce` whose waiver address is `waiver`:
    /// the `Waiver(nonce)` signature for `withdrawByPeer`, if the peer revoked that sheet.
    pub fn punishment(&self, nonce: u64, waiver: Address) -> Option<Sig> {
        let secret = self.state.revocations.secret(nonce)?;
        let key = waiver_key(&secret).ok()?;
        if key.address() != waiver {
            return None;
        }
        sign(&key, &Waiver { nonce: U256::from(nonce) }, &self.domain).ok()
    }

    /// Both signatures of the cooperative close, once both are here.
    pub fn close_signatures(&self) -> Option<(u64, [Amount; 2], [Sig; 2])> {
        match &self.state.phase {
            Phase::Closing { nonce, balances, mine, theirs: Some(theirs) } => {
                let sigs = if self.me() == 0 { [*mine, *theirs] } else { [*theirs, *mine] };
                Some((*nonce, *balances, sigs))
            }
            _ => None,
        }
    }

    fn my_waiver(&self, nonce: u64) -> Result<Address> {
        let cache = self.waiver_cache.get();
        if let Some((_, a)) = cache.iter().flatten().find(|(n, _)| *n == nonce) {
            return Ok(*a);
        }
        let a = self.state.chain.address(nonce)?;
        // The older entry goes.
        let keep = cache.iter().flatten().max_by_key(|(n, _)| *n).copied();
        self.waiver_cache.set([keep, Some((nonce, a))]);
        Ok(a)
    }

    /// Derives ahead the waiver addresses the next update needs (this party's for the next two
    /// nonces), off its critical path: call it once the last message went out.
    pub fn warm(&self) {
        let next = self.state.latest.as_ref().map_or(0, |l| l.nonce + 1);
        for nonce in [next, next + 1] {
            let _ = self.my_waiver(nonce);
        }
    }

    fn my_sheet(&self, nonce: u64, balances: [Amount; 2], locks: &[HashLock]) -> Result<BalanceSheet> {
        Ok(BalanceSheet::with_locks(nonce, balances, locks, self.my_waiver(nonce)?))
    }

    fn sign_sheet(&self, nonce: u64, balances: [Amount; 2], locks: &[HashLock], waiver: Address) -> Result<Sig> {
        sign(&self.signer, &BalanceSheet::with_locks(nonce, balances, locks, waiver), &self.domain)
    }

    fn check_sum(&self, balances: [Amount; 2], locks: &[HashLock]) -> Result<()> {
        let total = self.state.params.total();
        let locked = locks.iter().try_fold(0u128, |acc, l| acc.checked_add(l.amount));
        match (sum(balances), locked) {
            (Some(s), Some(l)) if s.checked_add(l) == Some(total) => Ok(()),
            (s, l) => Err(Error::WrongSum { sum: s.zip(l).and_then(|(s, l)| s.checked_add(l)), total }),
        }
    }

    /// The locks of the latest sheet.
    pub fn locks(&self) -> &[HashLock] {
        self.state.latest.as_ref().map_or(&[], |l| l.locks.as_slice())
    }

    /// Sets the time (unix seconds) lock expiries are judged by: the node's clock, or the
    /// chain's when it lags. Without it, no lock can be added or expired.
    pub fn set_now(&mut self, now: u64) {
        self.now = Some(now);
    }

    /// Remembers a preimage this party knows (the payee's own, or one learnt elsewhere).
    pub fn learn_preimage(&mut self, preimage: B256) -> B256 {
        let hash = crate::preimage_hash(&preimage);
        self.state.preimages.insert(hash, preimage);
        hash
    }

    /// The preimage of `hash`, if this party knows it.
    pub fn preimage(&self, hash: &B256) -> Option<B256> {
        self.state.preimages.get(hash).copied()
    }

    /// Lock moves queued for the next proposal.
    pub fn queued_lock_moves(&self) -> &[LockMove] {
        &self.state.lock_queue
    }

    fn now(&self) -> Result<u64> {
        self.now.ok_or_else(|| Error::BadLock("this party's clock is not set".into()))
    }

    /// Applies `proposer`'s lock `moves` to `balances` and `locks`. With `checking`, this party
    /// is the countersigner and also applies its own rules (expiry windows, expiry passed,
    /// preimage unknown). Nothing is changed on error.
    fn apply_moves(
        &self,
        proposer: usize,
        moves: &[LockMove],
        mut balances: [Amount; 2],
        mut locks: Vec<HashLock>,
        checking: bool,
    ) -> Result<([Amount; 2], Vec<HashLock>)> {
        let other = 1 - proposer;
        let bad = |why: String| Err(Error::BadLock(why));
        let take = |locks: &mut Vec<HashLock>, l: &HashLock, receiver: usize| -> Result<()> {
            if usize::from(l.receiver) != receiver {
                return Err(Error::BadLock(format!("lock {} is not to party {receiver}", l.hash)));
            }
            let i = locks.iter().position(|x| x == l).ok_or_else(|| Error::BadLock(format!("no lock {}", l.hash)))?;
            locks.remove(i);
            Ok(())
        };
        let credit = |b: &mut [Amount; 2], who: usize, amount: Amount| -> Result<()> {
            b[who] = b[who].checked_add(amount).ok_or_else(|| Error::BadLock("balance overflow".into()))?;
            Ok(())
        };
        for m in moves {
            match m {
                LockMove::Add(l) => {
                    if usize::from(l.receiver) != other || l.amount == 0 {
                        return bad(format!("an added lock must be to party {other} and more than 0 wei"));
                    }
                    if checking {
                        let now = self.now()?;
                        let p = self.state.policy;
                        if l.expiry < now.saturating_add(p.min_window) || l.expiry > now.saturating_add(p.max_window) {
                            return bad(format!(
                                "lock {} expires at {}: this party takes expiries {} to {} s ahead of now ({now})",
                                l.hash, l.expiry, p.min_window, p.max_window
                            ));
                        }
                    }
                    balances[proposer] = balances[proposer].checked_sub(l.amount).ok_or_else(|| {
                        Error::InsufficientBalance { available: balances[proposer], requested: l.amount }
                    })?;
                    locks.push(*l);
                }
                LockMove::Fulfil { lock, preimage } => {
                    if !lock.opens(preimage) {
                        return bad(format!("the preimage does not open lock {}", lock.hash));
                    }
                    if checking && !self.state.preimages.contains_key(&lock.hash) {
                        let now = self.now()?;
                        if now.saturating_add(self.state.policy.claim_margin) > lock.expiry {
                            return bad(format!(
                                "the claim of lock {} comes too late (expiry {}, now {now}, margin {} s): reveal the \
                                 preimage on the registry",
                                lock.hash, lock.expiry, self.state.policy.claim_margin
                            ));
                        }
                    }
                    take(&mut locks, lock, proposer)?;
                    credit(&mut balances, proposer, lock.amount)?;
                }
                LockMove::Release(l) => {
                    take(&mut locks, l, proposer)?;
                    credit(&mut balances, other, l.amount)?;
                }
                LockMove::Expire(l) => {
                    if checking {
                        let now = self.now()?;
                        if now <= l.expiry.saturating_add(self.state.policy.grace) {
                            return bad(format!(
                                "lock {} has not expired here (expiry {}, now {now})",
                                l.hash, l.expiry
                            ));
                        }
                        if self.state.preimages.contains_key(&l.hash) {
                            return bad(format!(
                                "this party knows the preimage of lock {}: it will not expire",
                                l.hash
                            ));
                        }
                    }
                    take(&mut locks, l, other)?;
                    credit(&mut balances, proposer, l.amount)?;
                }
            }
        }
        if locks.len() > MAX_LOCKS {
            return bad(format!("a sheet holds at most {MAX_LOCKS} locks"));
        }
        Ok((balances, locks))
    }

    fn require_open(&self) -> Result<()> {
        if let Some(reason) = &self.state.frozen {
            return Err(Error::Frozen(reason.clone()));
        }
        match self.state.phase {
            Phase::Open => Ok(()),
            ref p => Err(Error::NotOpen(p.name())),
        }
    }

    /// Payments need a channel that runs on chain (or one whose chain is not followed).
    fn require_running(&self) -> Result<()> {
        self.require_open()?;
        match self.state.funding {
            Funding::Unchecked | Funding::Running => Ok(()),
            f => Err(Error::NotRunning(f.name())),
        }
    }

    fn unexpected(&self, m: &Message) -> Error {
        let state = match self.state.phase {
            Phase::Open => self.state.flight.name(),
            ref p => p.name(),
        };
        Error::Unexpected { message: m.kind(), state }
    }

    // ------------------------------------------------------------------ local actions

    /// Party 0 starts the opening handshake: proposes sheet 0 with the deposits.
    pub fn open(&mut self) -> Result<Message> {
        if self.me() != 0 {
            return Err(Error::InvalidParams("party 0 opens the channel"));
        }
        if self.state.phase != Phase::Opening || self.state.latest.is_some() {
            return Err(Error::NotOpen(self.state.phase.name()));
        }
        let balances = self.state.params.deposits;
        let waiver = self.my_waiver(0)?;
        self.state.flight = Flight::Proposed {
            nonce: 0,
            balances,
            locks: Vec::new(),
            payments: Payments::default(),
            moves: Vec::new(),
            signed: None,
        };
        Ok(Message::Propose {
            nonce: 0,
            balances,
            waiver,
            locks: Vec::new(),
            moves: Vec::new(),
            onions: Vec::new(),
            signature: None,
        })
    }

    /// Queues a hash-time lock of `amount` wei to the peer on `hash`, expiring at `expiry` (unix
    /// seconds): it goes out with the next [`Channel::propose`] (DESIGN §2 rule 3 b).
    pub fn add_lock(&mut self, amount: Amount, hash: B256, expiry: u64) -> Result<HashLock> {
        self.require_running()?;
        if amount == 0 {
            return Err(Error::ZeroPayment);
        }
        let available = self.spendable();
        if amount > available {
            return Err(Error::InsufficientBalance { available, requested: amount });
        }
        let pending = self.locks().len() + self.state.lock_queue.len();
        if pending >= MAX_LOCKS {
            return Err(Error::BadLock(format!("a sheet holds at most {MAX_LOCKS} locks")));
        }
        let lock = HashLock { receiver: self.peer() as u8, amount, expiry, hash };
        self.state.lock_queue.push(LockMove::Add(lock));
        Ok(lock)
    }

    /// As [`Channel::add_lock`], with routing instructions for the peer's node (an onion packet
    /// of at most [`MAX_ONION`] bytes) carried in the proposal.
    pub fn add_routed_lock(
        &mut self,
        amount: Amount,
        hash: B256,
        expiry: u64,
        packet: alloy_primitives::Bytes,
    ) -> Result<HashLock> {
        if packet.len() > MAX_ONION {
            return Err(Error::BadLock(format!("an onion has at most {MAX_ONION} bytes, not {}", packet.len())));
        }
        let lock = HashLock { receiver: self.peer() as u8, amount, expiry, hash };
        if self.state.onions.iter().any(|o| o.lock == lock) {
            return Err(Error::BadLock(format!("a routed lock like {hash} is already pending on this channel")));
        }
        let lock = self.add_lock(amount, hash, expiry)?;
        self.state.onions.push(Onion { lock, packet });
        Ok(lock)
    }

    /// The routing instructions that came with `lock` (or went with it), while it is pending.
    pub fn onion(&self, lock: &HashLock) -> Option<&alloy_primitives::Bytes> {
        self.state.onions.iter().find(|o| o.lock == *lock).map(|o| &o.packet)
    }

    /// The onions of the locks `moves` add.
    fn onions_for(&self, moves: &[LockMove]) -> Vec<Onion> {
        self.state.onions.iter().filter(|o| moves.contains(&LockMove::Add(o.lock))).cloned().collect()
    }

    /// Forgets the onions of locks no longer pending (settled, or never countersigned).
    fn prune_onions(&mut self) {
        if self.state.onions.is_empty() {
            return;
        }
        let flight: &[LockMove] = match &self.state.flight {
            Flight::Proposed { moves, .. } | Flight::Countersigned { moves, .. } | Flight::Committed { moves, .. } => {
                moves
            }
            Flight::Idle | Flight::Accepted { .. } => &[],
        };
        let latest = self.state.latest.as_ref().map_or(&[][..], |l| l.locks.as_slice());
        let keep: Vec<HashLock> = latest
            .iter()
            .copied()
            .chain(flight.iter().chain(&self.state.lock_queue).filter_map(|m| match m {
                LockMove::Add(l) => Some(*l),
                _ => None,
            }))
            .collect();
        self.state.onions.retain(|o| keep.contains(&o.lock));
    }

    /// The lock to `receiver` on `hash` in the latest sheet that no queued or proposed move
    /// already settles.
    fn open_lock(&self, receiver: usize, hash: &B256) -> Option<HashLock> {
        let busy = |l: &HashLock| {
            let in_flight = match &self.state.flight {
                Flight::Proposed { moves, .. } => moves.iter().any(|m| m.lock() == l),
                _ => false,
            };
            in_flight || self.state.lock_queue.iter().any(|m| m.lock() == l)
        };
        self.locks().iter().find(|l| usize::from(l.receiver) == receiver && &l.hash == hash && !busy(l)).copied()
    }

    /// Claims the peer's lock to this party that `preimage` opens (DESIGN §2 rule 3 c); queued
    /// for the next proposal. The preimage is remembered.
    pub fn fulfil(&mut self, preimage: B256) -> Result<HashLock> {
        self.require_open()?;
        let hash = crate::preimage_hash(&preimage);
        let lock = self
            .open_lock(self.me(), &hash)
            .ok_or_else(|| Error::BadLock(format!("no open lock {hash} to this party")))?;
        self.state.preimages.insert(hash, preimage);
        self.state.lock_queue.push(LockMove::Fulfil { lock, preimage });
        Ok(lock)
    }

    /// Gives up the peer's lock to this party on `hash` (DESIGN §2 rule 3 d, rule 10): the amount
    /// goes back to the peer with the next proposal.
    pub fn release(&mut self, hash: B256) -> Result<HashLock> {
        self.require_open()?;
        let lock = self
            .open_lock(self.me(), &hash)
            .ok_or_else(|| Error::BadLock(format!("no open lock {hash} to this party")))?;
        self.state.lock_queue.push(LockMove::Release(lock));
        Ok(lock)
    }

    /// Queues the expiry of every lock this party sent that expired unclaimed by `now`, with a
    /// margin of twice the grace the peer allows (DESIGN §2 rule 3 e); returns them.
    pub fn expire_due(&mut self) -> Result<Vec<HashLock>> {
        self.require_open()?;
        let now = self.now()?;
        let margin = self.state.policy.grace.saturating_mul(2);
        let peer = self.peer();
        let due: Vec<HashLock> = self
            .locks()
            .iter()
            .filter(|l| usize::from(l.receiver) == peer && now > l.expiry.saturating_add(margin))
            .filter(|l| self.open_lock(peer, &l.hash).as_ref() == Some(*l))
            .copied()
            .collect();
        self.state.lock_queue.extend(due.iter().copied().map(LockMove::Expire));
        Ok(due)
    }

    /// Queues a payment of `amount` wei to the peer; returns its id. It goes out with the next
    /// [`Channel::propose`], coalesced with the other queued payments.
    pub fn pay(&mut self, amount: Amount) -> Result<u64> {
        self.require_running()?;
        if amount == 0 {
            return Err(Error::ZeroPayment);
        }
        let available = self.spendable();
        if amount > available {
            return Err(Error::InsufficientBalance { available, requested: amount });
        }
        let id = self.state.next_payment;
        self.state.next_payment += 1;
        let q = &mut self.state.queue;
        if q.count == 0 {
            q.first = id;
        }
        q.count += 1;
        q.amount += amount;
        Ok(id)
    }

    /// Proposes the next sheet with every queued payment, if the channel is open, idle, has
    /// some, is not frozen and runs on chain (or is not followed there).
    pub fn propose(&mut self) -> Result<Option<Message>> {
        if self.state.phase != Phase::Open
            || self.state.flight != Flight::Idle
            || (self.state.queue.count == 0 && self.state.lock_queue.is_empty())
            || self.state.frozen.is_some()
        {
            return Ok(None);
        }
        // Payments and added locks wait for the chain; settling a lock never does.
        let adds = self.state.lock_queue.iter().any(|m| matches!(m, LockMove::Add(_)));
        if (self.state.queue.count > 0 || adds) && self.require_running().is_err() {
            return Ok(None);
        }
        let latest = self.state.latest.as_ref().ok_or(Error::NotOpen("opening"))?;
        let nonce = latest.nonce + 1;
        if nonce >= MAX_UPDATES {
            return Err(Error::Exhausted(MAX_UPDATES));
        }
        let payments = self.state.queue;
        let (me, peer) = (self.me(), self.peer());
        // Queued moves that no longer apply (the peer settled the lock first) are dropped.
        let (mut balances, mut locks) = (latest.balances, latest.locks.clone());
        let mut moves = Vec::new();
        let mut dropped = Vec::new();
        for m in &self.state.lock_queue {
            match self.apply_moves(me, std::slice::from_ref(m), balances, locks.clone(), false) {
                Ok((b, l)) => {
                    (balances, locks) = (b, l);
                    moves.push(m.clone());
                }
                Err(_) => dropped.push(m.clone()),
            }
        }
        self.state.dropped.extend(dropped);
        if moves.is_empty() && payments.count == 0 {
            self.state.lock_queue.clear();
            return Ok(None);
        }
        let amount = payments.amount;
        balances[me] = balances[me]
            .checked_sub(amount)
            .ok_or(Error::InsufficientBalance { available: balances[me], requested: amount })?;
        balances[peer] += amount;
        let waiver = self.my_waiver(nonce)?;
        // Signed (three messages instead of four) when this party proposed the latest sheet too
        // (so the peer's proposal, if it makes one at once, is unsigned and gives way), knows the
        // peer's waiver address for the new sheet, only pays, and knows the peer takes payments:
        // the chain shows the channel running, or the peer took this party's latest proposal
        // after the opening. A signed proposal cannot be withdrawn, so it is not made where a
        // refusal is to be expected (a channel not yet funded; lock moves, which the peer may
        // refuse for reasons of its own, such as its clock).
        let takes_payments = self.state.funding == Funding::Running || latest.nonce >= 1;
        let signed = match self.state.peer_next {
            Some((n, w))
                if n == nonce && moves.is_empty() && self.state.proposer == Some(self.state.me) && takes_payments =>
            {
                Some(w)
            }
            _ => None,
        };
        let signature = signed.map(|w| self.sign_sheet(nonce, balances, &locks, w)).transpose()?;
        self.state.queue = Payments::default();
        self.state.lock_queue.clear();
        let onions = self.onions_for(&moves);
        self.state.flight =
            Flight::Proposed { nonce, balances, locks: locks.clone(), payments, moves: moves.clone(), signed };
        Ok(Some(Message::Propose { nonce, balances, waiver, locks, moves, onions, signature }))
    }

    /// Cancels the queued (not yet proposed) payments among ids `first..=last`, each of
    /// `each` wei, when they are the tail of the queue (ids are consecutive, so only a tail can
    /// go); returns the ids cancelled. Payments already proposed are not touched: they may
    /// still complete.
    pub fn cancel_queued(&mut self, first: u64, last: u64, each: Amount) -> Vec<u64> {
        let q = self.state.queue;
        if q.count == 0 || q.first + q.count != last + 1 {
            return Vec::new();
        }
        let from = first.max(q.first);
        let k = last + 1 - from;
        let Some(amount) = each.checked_mul(Amount::from(k)).filter(|a| *a <= q.amount) else {
            return Vec::new();
        };
        self.state.queue.count -= k;
        self.state.queue.amount -= amount;
        if self.state.queue.count == 0 {
            self.state.queue = Payments::default();
        }
        let ids: Vec<u64> = (from..=last).collect();
        self.note_cancelled(&ids);
        ids
    }

    /// Abandons this party's proposal in flight (nonce > 0) after the peer refused it: the
    /// sheet is never committed here, so its payments are cancelled for good rather than sent
    /// again at the next reconnect (DESIGN §2 rule 11). Returns their ids (empty when no
    /// proposal was in flight). Safe for the sheets whatever the peer did: only a Commit from this
    /// party makes the peer's countersignature usable against it, and no Commit follows now. Its
    /// lock moves are dropped too: a fulfil's preimage was shown to the peer, so a refused fulfil
    /// must be claimed again or on chain before the lock's expiry (reported as
    /// [`Event::LockMoveCancelled`] by [`Channel::withdraw_proposal_if`]).
    pub fn withdraw_proposal(&mut self) -> Vec<u64> {
        self.withdraw().0
    }

    /// As [`Channel::withdraw_proposal`], only if the proposal in flight is the message whose
    /// [`Message::digest`] the peer refused: a refusal of an older message (a duplicate, a
    /// retransmission) must not abandon a newer proposal the peer may countersign.
    /// Returns what the withdrawal cancelled, as events: its payments and each of its lock moves
    /// (a cancelled fulfil keeps its preimage known here, and its lock stays in the sheet).
    pub fn withdraw_proposal_if(&mut self, refused: B256) -> Vec<Event> {
        match self.retransmit().ok().and_then(|m| m.into_iter().find(|m| matches!(m, Message::Propose { .. }))) {
            Some(p) if p.digest() == refused => {
                let (ids, moves) = self.withdraw();
                let payments = (!ids.is_empty()).then_some(Event::PaymentsCancelled { ids });
                payments.into_iter().chain(moves.into_iter().map(|mv| Event::LockMoveCancelled { mv })).collect()
            }
            _ => Vec::new(),
        }
    }

    /// Abandons the proposal in flight (nonce > 0): its payment ids and lock moves.
    fn withdraw(&mut self) -> (Vec<u64>, Vec<LockMove>) {
        match &self.state.flight {
            // A signed proposal is never withdrawn: the peer may hold the signature, so no other
            // sheet with its nonce may be signed, and its payments may still be made.
            Flight::Proposed { nonce, payments, moves, signed: None, .. } if *nonce > 0 => {
                let out = (payments.ids(), moves.clone());
                self.state.flight = Flight::Idle;
                self.note_cancelled(&out.0);
                out
            }
            _ => (Vec::new(), Vec::new()),
        }
    }

    /// Preimages of the peer's locks to this party that this party knows and has not claimed yet
    /// (no fulfil queued or in flight): a refused or withdrawn fulfil is claimed again with
    /// [`Channel::fulfil`] (DESIGN §2 rule 9: learn once, claim everywhere).
    pub fn unclaimed(&self) -> Vec<B256> {
        let me = self.me();
        self.locks()
            .iter()
            .filter(|l| usize::from(l.receiver) == me)
            .filter_map(|l| self.preimage(&l.hash).filter(|_| self.open_lock(me, &l.hash).as_ref() == Some(l)))
            .collect()
    }

    /// What this party must do on chain about the locks of its latest sheet at chain time `now`
    /// (DESIGN §2 rule 9), decided from the stored state: reveal the preimages of locks to it
    /// whose expiry is within `reveal_window` (or at once once the channel ended on chain), and
    /// settle on chain when a lock it can claim (a known preimage, or its own expired lock) is
    /// still in the sheet past its expiry and the peer's grace: the peer did not countersign the
    /// fulfil or the expiry.
    pub fn chain_duties(&self, now: u64, reveal_window: u64) -> ChainDuties {
        let (me, grace) = (self.me(), self.state.policy.grace);
        let ended = self.state.funding == Funding::Ended;
        let mut duties = ChainDuties::default();
        for l in self.locks() {
            let to_me = usize::from(l.receiver) == me;
            let preimage = self.preimage(&l.hash);
            if to_me
                && let Some(p) = preimage
                && now <= l.expiry
                && (ended || now.saturating_add(reveal_window) >= l.expiry)
            {
                duties.reveal.push(Reveal { hash: l.hash, preimage: p, expiry: l.expiry });
            }
            // The peer had until expiry + grace to countersign a fulfil, and this party proposes an
            // expiry only after expiry + 2 grace (`expire_due`): one more grace for the answer.
            let overdue = if to_me {
                preimage.is_some() && now > l.expiry.saturating_add(grace)
            } else {
                now > l.expiry.saturating_add(grace.saturating_mul(3))
            };
            if overdue && duties.liquidate.is_none() && !ended && self.state.frozen.is_none() {
                duties.liquidate = Some(format!(
                    "lock {} ({} wei to {}) is past its expiry {} and the peer did not settle it off-chain",
                    l.hash,
                    l.amount,
                    if to_me { "this party" } else { "the peer" },
                    l.expiry
                ));
            }
        }
        // A claim this party committed whose revocation the peer withholds: the peer's previous
        // sheet still holds the lock and cannot be punished, so the preimage must be on the
        // registry by the expiry (then `unlock` pays the lock to this party whichever sheet is
        // liquidated), and a channel stuck that way past the expiry is settled.
        if let Flight::Committed { moves, .. } = &self.state.flight {
            for m in moves {
                let LockMove::Fulfil { lock: l, preimage } = m else { continue };
                if now <= l.expiry && (ended || now.saturating_add(reveal_window) >= l.expiry) {
                    duties.reveal.push(Reveal { hash: l.hash, preimage: *preimage, expiry: l.expiry });
                }
                if now > l.expiry.saturating_add(grace)
                    && duties.liquidate.is_none()
                    && !ended
                    && self.state.frozen.is_none()
                {
                    duties.liquidate = Some(format!(
                        "the peer withholds its revocation of the sheet before this party's claim of lock {}",
                        l.hash
                    ));
                }
            }
        }
        duties
    }

    /// Whether a lock on `hash` from this party to the peer is still pending anywhere: queued,
    /// proposed, in the latest sheet or in an update in flight.
    pub fn lock_pending(&self, hash: &B256) -> bool {
        let peer = self.peer() as u8;
        let adds = |moves: &[LockMove]| moves.iter().any(|m| matches!(m, LockMove::Add(l) if l.hash == *hash));
        let in_flight = match &self.state.flight {
            Flight::Proposed { moves, locks, .. } => adds(moves) || locks.iter().any(|l| l.hash == *hash),
            Flight::Committed { moves, .. } => adds(moves),
            Flight::Countersigned { locks, .. } => locks.iter().any(|l| l.hash == *hash && l.receiver == peer),
            Flight::Idle | Flight::Accepted { .. } => false,
        };
        in_flight || adds(&self.state.lock_queue) || self.locks().iter().any(|l| l.hash == *hash && l.receiver == peer)
    }

    /// The lock lists of the sheets the peer may liquidate with besides this party's latest: an
    /// update in flight's (for `unlock`, which needs the list whose root was liquidated).
    pub fn lock_lists(&self) -> Vec<Vec<HashLock>> {
        let mut lists = vec![self.locks().to_vec()];
        match &self.state.flight {
            Flight::Proposed { locks, .. } | Flight::Countersigned { locks, .. } => lists.push(locks.clone()),
            _ => {}
        }
        lists
    }

    /// Why the channel is frozen, if it is.
    pub fn frozen(&self) -> Option<&str> {
        self.state.frozen.as_deref()
    }

    /// What this party knows of the contract's state.
    pub fn funding(&self) -> Funding {
        self.state.funding
    }

    /// Records the contract's state as the chain shows it. A channel that ended on chain is
    /// frozen: nothing it could sign would be worth anything.
    pub fn set_funding(&mut self, funding: Funding) -> Step {
        self.state.funding = funding;
        if funding == Funding::Ended && self.state.frozen.is_none() {
            return self.freeze("the channel ended on chain", false).1;
        }
        Step::default()
    }

    /// Freezes the channel for closing (DESIGN §2 rule 6) and chooses how to settle it, from the
    /// state as it is now: the cooperative close if both signatures are here, else this party's
    /// latest countersigned sheet, else a cancel. From now on no update is signed (only the
    /// peer's revocations are still taken), so the choice cannot go stale: the latest sheet is
    /// never revoked, because its successor will never be countersigned. Freezing again gives
    /// the same choice. Queued payments are cancelled; payments in an update that will not
    /// complete are reported as cancelled too. Store the state before acting on the choice.
    pub fn freeze(&mut self, reason: &str, violation: bool) -> (Settlement, Step) {
        let mut step = Step::default();
        let first = self.state.frozen.is_none();
        if first {
            self.state.frozen = Some(reason.to_string());
            let mut ids = std::mem::take(&mut self.state.queue).ids();
            let mut moves = std::mem::take(&mut self.state.lock_queue);
            // A signed proposal stays as it is: the peer may liquidate with the sheet it signed, so
            // its payments are neither acknowledged nor cancelled (the chain will tell).
            if let Flight::Proposed { payments, moves: proposed, signed: None, .. } = &self.state.flight {
                // The proposal's sheet will never be countersigned here: its payments are not made.
                ids.splice(0..0, payments.ids());
                moves.splice(0..0, proposed.iter().cloned());
                self.state.flight = Flight::Idle;
            }
            if !ids.is_empty() {
                self.note_cancelled(&ids);
                step.events.push(Event::PaymentsCancelled { ids });
            }
            step.events.extend(moves.into_iter().map(|mv| Event::LockMoveCancelled { mv }));
        }
        let settlement = self.settlement();
        if first {
            step.events.push(Event::Frozen { reason: reason.to_string(), settlement: settlement.clone(), violation });
        }
        (settlement, step)
    }

    /// The chain shows the channel liquidated with sheet `nonce`: a signed proposal of this party
    /// still unanswered is decided by it. Its payments were made if the sheet liquidated is the one
    /// this party signed for the peer (its nonce), and never made otherwise (an older sheet ended
    /// the channel). Returns [`Event::PaymentsAcked`] or [`Event::PaymentsCancelled`]; without
    /// such a proposal, nothing.
    pub fn liquidated_on_chain(&mut self, nonce: u64) -> Vec<Event> {
        let Flight::Proposed { nonce: proposed, payments, signed: Some(_), .. } = &self.state.flight else {
            return Vec::new();
        };
        let (proposed, payments) = (*proposed, *payments);
        self.state.flight = Flight::Idle;
        if payments.count == 0 {
            return Vec::new();
        }
        if nonce == proposed {
            return vec![Event::PaymentsAcked {
                first: payments.first,
                count: payments.count,
                amount: payments.amount,
                nonce,
            }];
        }
        let ids = payments.ids();
        self.note_cancelled(&ids);
        vec![Event::PaymentsCancelled { ids }]
    }

    /// How the channel would be settled now (see [`Channel::freeze`]).
    pub fn settlement(&self) -> Settlement {
        if let Some((nonce, balances, signatures)) = self.close_signatures() {
            return Settlement::Cooperative { nonce, balances, signatures };
        }
        match &self.state.latest {
            Some(l) => Settlement::Liquidate(l.clone()),
            None => Settlement::Cancel,
        }
    }

    /// Signs a cooperative close at the current state. Queued payments are cancelled.
    pub fn close(&mut self) -> Result<Step> {
        self.require_open()?;
        if self.state.flight != Flight::Idle {
            return Err(Error::NotOpen("busy with an update"));
        }
        if !self.locks().is_empty() || !self.state.lock_queue.is_empty() {
            return Err(Error::BadLock("a cooperative close has no locks: settle them first".into()));
        }
        let latest = self.state.latest.as_ref().ok_or(Error::NotOpen("opening"))?;
        let (nonce, balances) = (latest.nonce, latest.balances);
        let signature = sign(&self.signer, &Close::new(nonce, balances), &self.domain)?;
        let ids = std::mem::take(&mut self.state.queue).ids();
        self.state.phase = Phase::Closing { nonce, balances, mine: signature, theirs: None };
        let mut step = Step::reply(Message::CloseRequest { nonce, balances, signature });
        if !ids.is_empty() {
            self.note_cancelled(&ids);
            step.events.push(Event::PaymentsCancelled { ids });
        }
        Ok(step)
    }

    /// The messages to send again after a reconnect, in order: the last revocation (which may
    /// have been lost; a duplicate is harmless) and whatever the channel is waiting on.
    pub fn retransmit(&self) -> Result<Vec<Message>> {
        let mut out = Vec::new();
        let open = matches!(self.state.phase, Phase::Open);
        // The last revocation may have been lost whether the channel is open, closing or frozen:
        // it reveals only the secret of a sheet already replaced by a stored, countersigned one.
        let opened = self.state.phase != Phase::Opening;
        // (An accepted signed proposal's Countersign carries this party's last revocation itself.)
        let carried = matches!(self.state.flight, Flight::Committed { .. } | Flight::Accepted { .. });
        if opened && self.nonce() > 0 && !carried {
            let nonce = self.nonce() - 1;
            out.push(Message::Revoke { nonce, secret: self.state.chain.secret(nonce)? });
        }
        if self.state.frozen.is_some() {
            // Nothing new is offered; a commit already made, or the answer to a signed proposal
            // already given (their secrets revealed), may be resent.
            match &self.state.flight {
                Flight::Committed { nonce, .. } => out.push(self.commit_message(*nonce)?),
                Flight::Accepted { nonce, .. } => out.push(self.accept_message(*nonce)?),
                _ => {}
            }
            return Ok(out);
        }
        match &self.state.flight {
            // The opener's Commit of sheet 0 gets no answer (there is nothing to revoke): until a
            // later sheet shows that the peer has it, send it again.
            Flight::Idle if open && self.nonce() == 0 && self.me() == 0 => out.push(self.commit_message(0)?),
            Flight::Idle => {
                if let Phase::Closing { nonce, balances, mine, theirs: None } = &self.state.phase {
                    out.push(Message::CloseRequest { nonce: *nonce, balances: *balances, signature: *mine });
                }
            }
            Flight::Proposed { nonce, balances, locks, moves, signed, .. } => out.push(Message::Propose {
                nonce: *nonce,
                balances: *balances,
                waiver: self.my_waiver(*nonce)?,
                locks: locks.clone(),
                moves: moves.clone(),
                onions: self.onions_for(moves),
                // Signing is deterministic (RFC 6979): the same signature as first sent.
                signature: signed.map(|w| self.sign_sheet(*nonce, *balances, locks, w)).transpose()?,
            }),
            Flight::Countersigned { nonce, .. } => out.push(self.countersign_message(*nonce)?),
            Flight::Accepted { nonce, .. } => out.push(self.accept_message(*nonce)?),
            Flight::Committed { nonce, .. } => out.push(self.commit_message(*nonce)?),
        }
        Ok(out)
    }

    fn countersign_message(&self, nonce: u64) -> Result<Message> {
        let Flight::Countersigned { balances, locks, peer_waiver, .. } = &self.state.flight else {
            return Err(Error::NotOpen("not countersigning"));
        };
        Ok(Message::Countersign {
            nonce,
            signature: self.sign_sheet(nonce, *balances, locks, *peer_waiver)?,
            waiver: self.my_waiver(nonce)?,
            revocation: None,
            next: Some(self.my_waiver(nonce + 1)?),
        })
    }

    /// This party's signed proposal in flight, as sent (see [`Channel::retransmit`]), if there is
    /// one and the channel is not frozen: it is never withdrawn, so a refused one is offered again.
    pub fn signed_proposal(&self) -> Option<Message> {
        if self.state.frozen.is_some() || !matches!(self.state.flight, Flight::Proposed { signed: Some(_), .. }) {
            return None;
        }
        self.retransmit().ok()?.into_iter().find(|m| matches!(m, Message::Propose { .. }))
    }

    /// Whether the signed proposal (`nonce`, `balances`, `waiver`, `signature`) is the one this
    /// party accepted and waits on: a duplicate, answered with the same bytes.
    fn accepted_already(&self, nonce: u64, balances: [Amount; 2], waiver: Address, signature: &Sig) -> bool {
        matches!(self.state.flight, Flight::Accepted { nonce: n, .. } if n == nonce)
            && self.state.latest.as_ref().is_some_and(|l| l.balances == balances && l.peer_signature == *signature)
            && self.state.peer_unrevoked.get(&nonce) == Some(&waiver)
    }

    /// The answer to the peer's signed proposal `nonce`, which this party accepted: its
    /// countersignature, the revocation of its sheet `nonce - 1` and its next waiver address.
    fn accept_message(&self, nonce: u64) -> Result<Message> {
        let latest = self.state.latest.as_ref().ok_or(Error::NotOpen("opening"))?;
        let peer_waiver = *self.state.peer_unrevoked.get(&nonce).ok_or(Error::NotOpen("no peer sheet"))?;
        let previous = nonce.checked_sub(1).ok_or(Error::NotOpen("opening"))?;
        Ok(Message::Countersign {
            nonce,
            signature: self.sign_sheet(nonce, latest.balances, &latest.locks, peer_waiver)?,
            waiver: latest.waiver,
            revocation: Some(self.state.chain.secret(previous)?),
            next: Some(self.my_waiver(nonce + 1)?),
        })
    }

    fn commit_message(&self, nonce: u64) -> Result<Message> {
        let balances = self.balances();
        let peer_waiver = *self.state.peer_unrevoked.get(&nonce).ok_or(Error::NotOpen("no peer sheet"))?;
        let signature = self.sign_sheet(nonce, balances, self.locks(), peer_waiver)?;
        let revocation = if nonce == 0 { None } else { Some(self.state.chain.secret(nonce - 1)?) };
        Ok(Message::Commit { nonce, signature, revocation })
    }

    // ------------------------------------------------------------------ inbound messages

    /// Handles a message from the peer. Everything is checked before anything changes: on error
    /// the state is exactly as before, and the latest sheet can still be liquidated.
    pub fn handle(&mut self, msg: &Message) -> Result<Step> {
        // A frozen channel signs nothing new; a revocation only adds what punishes the peer.
        if let Some(reason) = &self.state.frozen
            && !matches!(msg, Message::Revoke { .. })
        {
            // A Commit still carries the peer's revocation of its previous sheet: kept (it lets
            // this party punish that sheet), while the new sheet is not taken (the settlement was
            // chosen at the freeze). A revocation that does not check out is refused as ever.
            // The answer to a signed proposal already given before the freeze is given again
            // (the same bytes: nothing new is signed or revealed).
            if let Message::Propose { nonce, balances, waiver, signature: Some(sig), .. } = msg
                && self.accepted_already(*nonce, *balances, *waiver, sig)
            {
                return Ok(Step::reply(self.accept_message(*nonce)?));
            }
            if let Message::Commit { nonce, revocation: Some(secret), .. }
            | Message::Countersign { nonce, revocation: Some(secret), .. } = msg
                && let Some(previous) = nonce.checked_sub(1)
                && self.state.peer_unrevoked.contains_key(&previous)
            {
                self.check_revocation(previous, *secret)?;
                self.apply_revocation(previous, *secret)?;
                return Ok(Step::default());
            }
            return Err(Error::Frozen(reason.clone()));
        }
        match msg {
            Message::Propose { nonce, balances, waiver, locks, moves, onions, signature } => {
                self.on_propose(msg, *nonce, *balances, *waiver, locks, moves, onions, signature.as_ref())
            }
            Message::Countersign { nonce, signature, waiver, revocation, next } => {
                self.on_countersign(msg, *nonce, signature, *waiver, *revocation, *next)
            }
            Message::Commit { nonce, signature, revocation } => self.on_commit(msg, *nonce, signature, *revocation),
            Message::Revoke { nonce, secret } => self.on_revoke(msg, *nonce, *secret),
            Message::CloseRequest { nonce, balances, signature } => {
                self.on_close_request(msg, *nonce, *balances, signature)
            }
            Message::CloseAccept { nonce, signature } => self.on_close_accept(msg, *nonce, signature),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_propose(
        &mut self,
        msg: &Message,
        nonce: u64,
        balances: [Amount; 2],
        waiver: Address,
        locks: &[HashLock],
        moves: &[LockMove],
        onions: &[Onion],
        signature: Option<&Sig>,
    ) -> Result<Step> {
        // A duplicate of the proposal already countersigned: countersign again (same bytes).
        if let Flight::Countersigned { nonce: n, balances: b, locks: l, peer_waiver, .. } = &self.state.flight
            && *n == nonce
            && *b == balances
            && l == locks
            && *peer_waiver == waiver
            && signature.is_none()
        {
            return Ok(Step::reply(self.countersign_message(nonce)?));
        }
        if let Some(sig) = signature
            && self.accepted_already(nonce, balances, waiver, sig)
        {
            return Ok(Step::reply(self.accept_message(nonce)?));
        }
        let opening = self.state.phase == Phase::Opening;
        if opening {
            if self.me() != 1 || self.state.flight != Flight::Idle {
                return Err(self.unexpected(msg));
            }
        } else {
            if let Some(reason) = &self.state.frozen {
                return Err(Error::Frozen(reason.clone()));
            }
            self.require_open().map_err(|_| self.unexpected(msg))?;
        }
        let expected = if opening { 0 } else { self.nonce() + 1 };
        if nonce != expected {
            return Err(Error::WrongNonce { expected, got: nonce });
        }
        let mut requeue = None;
        match &self.state.flight {
            Flight::Idle => {}
            Flight::Proposed { nonce: n, payments, moves: mine, signed, .. } if *n == nonce => {
                // Both proposed at once. A signed proposal goes first (only the proposer of the latest
                // sheet signs, so at most one of the two is); of two unsigned ones, party 0's. The
                // other party queues its own again (unsigned: nothing of it can be used).
                match (signature.is_some(), signed.is_some()) {
                    (true, true) => return Err(self.unexpected(msg)),
                    (false, true) => return Err(Error::Conflict(nonce)),
                    (false, false) if self.me() == 0 => return Err(Error::Conflict(nonce)),
                    _ => {}
                }
                requeue = Some((*payments, mine.clone()));
            }
            _ => return Err(self.unexpected(msg)),
        }
        if waiver == Address::ZERO {
            return Err(Error::ZeroWaiver);
        }
        self.check_sum(balances, locks)?;
        let me = self.me();
        let mut paid = 0;
        if opening {
            if balances != self.state.params.deposits || !locks.is_empty() || !moves.is_empty() {
                return Err(Error::WrongDirection { from: self.state.params.deposits[me], to: balances[me] });
            }
        } else {
            // Payments and new locks need a channel that runs on chain; settling locks does not.
            let adds = moves.iter().any(|m| matches!(m, LockMove::Add(_)));
            let latest = self.state.latest.as_ref().ok_or(Error::NotOpen("opening"))?;
            let (after, left) = self.apply_moves(self.peer(), moves, latest.balances, latest.locks.clone(), true)?;
            if left != locks {
                return Err(Error::BadLock("the proposed locks are not the current ones after the moves".into()));
            }
            if balances[me] < after[me] || (moves.is_empty() && balances[me] == after[me]) {
                return Err(Error::WrongDirection { from: after[me], to: balances[me] });
            }
            paid = balances[me] - after[me];
            if paid > 0 || adds {
                self.require_running()?;
            }
        }
        for (i, o) in onions.iter().enumerate() {
            if o.packet.len() > MAX_ONION
                || !moves.contains(&LockMove::Add(o.lock))
                || onions[..i].iter().any(|p| p.lock == o.lock)
            {
                return Err(Error::BadLock(format!(
                    "an onion must belong to one lock the proposal adds and have at most {MAX_ONION} bytes"
                )));
            }
        }
        // A signed proposal: the proposer signed this party's sheet, which this party can then
        // liquidate with, so it revokes its previous sheet in its answer (three messages).
        let my_waiver = self.my_waiver(nonce)?;
        let accepted = match signature {
            None => None,
            Some(sig) => {
                if opening || self.state.proposer != Some(self.peer() as u8) {
                    return Err(Error::Unexpected {
                        message: "signed proposal",
                        state: "the peer did not propose the latest sheet",
                    });
                }
                if !moves.is_empty() {
                    return Err(Error::BadLock("a signed proposal carries payments only".into()));
                }
                let mine = self.my_sheet(nonce, balances, locks)?;
                self.peer_key.verify(sig, &mine, &self.domain, self.peer_address())?;
                Some((*sig, self.state.chain.secret(nonce - 1)?))
            }
        };
        let signature = self.sign_sheet(nonce, balances, locks, waiver)?;
        let next = self.my_waiver(nonce + 1)?;
        // -- checks done; apply
        for o in onions {
            if self.onion(&o.lock).is_none() {
                self.state.onions.push(o.clone());
            }
        }
        let mut step = Step::default();
        if let Some((p, mine)) = requeue {
            // The abandoned proposal's payments go back in front of the queue (their ids are lower).
            let q = &mut self.state.queue;
            q.first = p.first;
            q.count += p.count;
            q.amount += p.amount;
            self.state.lock_queue.splice(0..0, mine);
        }
        for m in moves {
            if let LockMove::Fulfil { lock, preimage } = m {
                // Learn once, claim everywhere (DESIGN §2 rule 9): known before anything else.
                self.state.preimages.insert(lock.hash, *preimage);
                step.events.push(Event::PreimageLearned { hash: lock.hash, preimage: *preimage });
            }
        }
        if let Some((peer_signature, revocation)) = accepted {
            // Rule 1: the revocation goes out once the sheet it replaces is stored (the node sends
            // the reply after storing the state).
            self.state.latest =
                Some(LiquidationSheet { nonce, balances, waiver: my_waiver, locks: locks.to_vec(), peer_signature });
            self.state.peer_unrevoked.insert(nonce, waiver);
            self.state.proposer = Some(self.peer() as u8);
            self.state.flight = Flight::Accepted { nonce, paid };
            step.reply = Some(Message::Countersign {
                nonce,
                signature,
                waiver: my_waiver,
                revocation: Some(revocation),
                next: Some(next),
            });
            return Ok(step);
        }
        self.state.flight = Flight::Countersigned {
            nonce,
            balances,
            locks: locks.to_vec(),
            peer_waiver: waiver,
            paid,
            moves: moves.to_vec(),
        };
        step.reply =
            Some(Message::Countersign { nonce, signature, waiver: my_waiver, revocation: None, next: Some(next) });
        Ok(step)
    }

    fn on_countersign(
        &mut self,
        msg: &Message,
        nonce: u64,
        signature: &Sig,
        waiver: Address,
        revocation: Option<B256>,
        next: Option<Address>,
    ) -> Result<Step> {
        // A duplicate after we committed: commit again.
        if let Flight::Committed { nonce: n, .. } = self.state.flight
            && n == nonce
            && self.state.peer_unrevoked.get(&nonce) == Some(&waiver)
            && revocation.is_none()
        {
            return Ok(Step::reply(self.commit_message(nonce)?));
        }
        // A duplicate of the answer to a signed proposal already taken: revoke again.
        if let (Flight::Idle, Some(latest), Some(previous)) =
            (&self.state.flight, &self.state.latest, nonce.checked_sub(1))
            && latest.nonce == nonce
            && latest.peer_signature == *signature
            && revocation.is_some()
        {
            return Ok(Step::reply(Message::Revoke { nonce: previous, secret: self.state.chain.secret(previous)? }));
        }
        if next == Some(Address::ZERO) {
            return Err(Error::ZeroWaiver);
        }
        let Flight::Proposed { nonce: n, balances, locks, payments, moves, signed } = self.state.flight.clone() else {
            if nonce < self.nonce() || (nonce == self.nonce() && self.state.latest.is_some()) {
                return Err(Error::WrongNonce { expected: self.nonce() + 1, got: nonce });
            }
            return Err(self.unexpected(msg));
        };
        if nonce != n {
            return Err(Error::WrongNonce { expected: n, got: nonce });
        }
        if waiver == Address::ZERO {
            return Err(Error::ZeroWaiver);
        }
        let mine = self.my_sheet(nonce, balances, &locks)?;
        if let Some(peer_waiver) = signed {
            // The answer to a signed proposal: the countersignature and the peer's revocation.
            let (Some(secret), Some(previous)) = (revocation, nonce.checked_sub(1)) else {
                return Err(self.unexpected(msg));
            };
            if waiver != peer_waiver {
                return Err(Error::Unexpected { message: "countersign", state: "a waiver other than the one signed" });
            }
            self.peer_key.verify(signature, &mine, &self.domain, self.peer_address())?;
            self.check_revocation(previous, secret)?;
            let my_secret = self.state.chain.secret(previous)?;
            // -- checks done; apply
            self.apply_revocation(previous, secret)?;
            self.state.latest =
                Some(LiquidationSheet { nonce, balances, waiver: mine.waiver, locks, peer_signature: *signature });
            self.state.peer_unrevoked.insert(nonce, waiver);
            self.state.proposer = Some(self.state.me);
            self.state.peer_next = next.map(|a| (nonce + 1, a));
            self.state.flight = Flight::Idle;
            self.prune_onions();
            // Settled here (rule 2): this sheet is stored with the peer's revocation of the one before.
            let mut step = Step::reply(Message::Revoke { nonce: previous, secret: my_secret });
            if payments.count > 0 {
                step.events.push(Event::PaymentsAcked {
                    first: payments.first,
                    count: payments.count,
                    amount: payments.amount,
                    nonce,
                });
            }
            return Ok(step);
        }
        if revocation.is_some() {
            return Err(self.unexpected(msg));
        }
        self.peer_key.verify(signature, &mine, &self.domain, self.peer_address())?;
        let my_signature = self.sign_sheet(nonce, balances, &locks, waiver)?;
        let revocation = if nonce == 0 { None } else { Some(self.state.chain.secret(nonce - 1)?) };
        // -- checks done; apply
        self.state.latest =
            Some(LiquidationSheet { nonce, balances, waiver: mine.waiver, locks, peer_signature: *signature });
        self.state.peer_unrevoked.insert(nonce, waiver);
        self.state.proposer = Some(self.state.me);
        self.state.peer_next = next.map(|a| (nonce + 1, a));
        let reply = Message::Commit { nonce, signature: my_signature, revocation };
        if nonce == 0 {
            self.state.flight = Flight::Idle;
            self.state.phase = Phase::Open;
            return Ok(Step::reply(reply).with(Event::Opened));
        }
        self.state.flight = Flight::Committed { nonce, payments, moves };
        Ok(Step::reply(reply))
    }

    fn check_revocation(&self, nonce: u64, secret: B256) -> Result<()> {
        let expected = *self.state.peer_unrevoked.get(&nonce).ok_or(Error::WrongNonce {
            expected: self.state.peer_unrevoked.keys().next().copied().unwrap_or(0),
            got: nonce,
        })?;
        let derived = crate::waiver::waiver_address(&secret)?;
        if derived != expected {
            return Err(Error::WrongSecret { nonce, expected });
        }
        self.state.revocations.check(nonce, secret)
    }

    fn apply_revocation(&mut self, nonce: u64, secret: B256) -> Result<()> {
        self.state.revocations.insert(nonce, secret)?;
        self.state.peer_unrevoked.remove(&nonce);
        Ok(())
    }

    fn on_commit(&mut self, msg: &Message, nonce: u64, signature: &Sig, revocation: Option<B256>) -> Result<Step> {
        // A duplicate of the commit already processed: revoke again.
        let countersigning = matches!(self.state.flight, Flight::Countersigned { .. });
        if !countersigning && self.state.latest.as_ref().is_some_and(|l| l.nonce == nonce) {
            let latest = self.state.latest.as_ref().ok_or(Error::NotOpen("opening"))?;
            if latest.peer_signature != *signature {
                return Err(Error::WrongNonce { expected: nonce + 1, got: nonce });
            }
            if nonce == 0 {
                return Ok(Step::default());
            }
            let secret = self.state.chain.secret(nonce - 1)?;
            return Ok(Step::reply(Message::Revoke { nonce: nonce - 1, secret }));
        }
        let Flight::Countersigned { nonce: n, balances, locks, peer_waiver, paid, moves } = self.state.flight.clone()
        else {
            if nonce < self.nonce() {
                return Err(Error::WrongNonce { expected: self.nonce() + 1, got: nonce });
            }
            return Err(self.unexpected(msg));
        };
        if nonce != n {
            return Err(Error::WrongNonce { expected: n, got: nonce });
        }
        let mine = self.my_sheet(nonce, balances, &locks)?;
        self.peer_key.verify(signature, &mine, &self.domain, self.peer_address())?;
        match (nonce, revocation) {
            (0, None) => {}
            (0, Some(_)) | (_, None) => return Err(self.unexpected(msg)),
            (_, Some(secret)) => self.check_revocation(nonce - 1, secret)?,
        }
        let my_secret = if nonce == 0 { None } else { Some(self.state.chain.secret(nonce - 1)?) };
        // -- checks done; apply
        if let Some(secret) = revocation {
            self.apply_revocation(nonce - 1, secret)?;
        }
        self.state.latest =
            Some(LiquidationSheet { nonce, balances, waiver: mine.waiver, locks, peer_signature: *signature });
        self.state.peer_unrevoked.insert(nonce, peer_waiver);
        self.state.proposer = Some(self.peer() as u8);
        self.state.flight = Flight::Idle;
        self.prune_onions();
        if nonce == 0 {
            self.state.phase = Phase::Open;
            return Ok(Step::default().with(Event::Opened));
        }
        let reply = my_secret.map(|secret| Message::Revoke { nonce: nonce - 1, secret });
        // Settled here: this sheet is stored and the peer revoked the one before it.
        let mut events = Vec::new();
        if paid > 0 {
            events.push(Event::Received { amount: paid, nonce });
        }
        events.extend(moves.iter().map(|m| lock_event(m, false, nonce)));
        Ok(Step { reply, events })
    }

    fn on_revoke(&mut self, msg: &Message, nonce: u64, secret: B256) -> Result<Step> {
        // Waiting for the peer's revocation: the payer of a four-message update (`Committed`), or the
        // payee of a signed proposal (`Accepted`).
        let n = match &self.state.flight {
            Flight::Committed { nonce: n, .. } | Flight::Accepted { nonce: n, .. } => *n,
            _ => {
                return match self.state.revocations.secret(nonce) {
                    // a revocation received before: nothing to do
                    Some(known) if known == secret => Ok(Step::default()),
                    Some(_) => Err(Error::InconsistentSecret(nonce)),
                    None => Err(self.unexpected(msg)),
                };
            }
        };
        // The nonce is the peer's: `nonce + 1` must not overflow (u64::MAX is just a wrong nonce).
        if nonce.checked_add(1) != Some(n) {
            return Err(Error::WrongNonce { expected: n - 1, got: nonce });
        }
        self.check_revocation(nonce, secret)?;
        // -- checks done; apply
        self.apply_revocation(nonce, secret)?;
        let flight = std::mem::replace(&mut self.state.flight, Flight::Idle);
        self.prune_onions();
        // Settled here: the sheet `n` is stored and the peer revoked the one before it.
        let mut step = Step::default();
        match flight {
            Flight::Accepted { paid, .. } => step.events.push(Event::Received { amount: paid, nonce: n }),
            Flight::Committed { payments, moves, .. } => {
                if payments.count > 0 {
                    step.events.push(Event::PaymentsAcked {
                        first: payments.first,
                        count: payments.count,
                        amount: payments.amount,
                        nonce: n,
                    });
                }
                step.events.extend(moves.iter().map(|m| lock_event(m, true, n)));
            }
            Flight::Idle | Flight::Proposed { .. } | Flight::Countersigned { .. } => {}
        }
        Ok(step)
    }

    fn on_close_request(&mut self, msg: &Message, nonce: u64, balances: [Amount; 2], sig: &Sig) -> Result<Step> {
        let latest = self.state.latest.as_ref().ok_or_else(|| self.unexpected(msg))?;
        if nonce != latest.nonce {
            return Err(Error::WrongNonce { expected: latest.nonce, got: nonce });
        }
        if !latest.locks.is_empty() {
            return Err(Error::BadLock("a cooperative close has no locks: settle them first".into()));
        }
        if balances != latest.balances {
            self.check_sum(balances, &[])?;
            let me = self.me();
            return Err(Error::WrongDirection { from: latest.balances[me], to: balances[me] });
        }
        let close = Close::new(nonce, balances);
        match &self.state.phase {
            // Both asked at once: keep the peer's signature, nothing to send.
            Phase::Closing { nonce: n, balances: b, mine, theirs: None } if *n == nonce && *b == balances => {
                self.peer_key.verify(sig, &close, &self.domain, self.peer_address())?;
                let mine = *mine;
                self.state.phase = Phase::Closing { nonce, balances, mine, theirs: Some(*sig) };
                let (nonce, balances, signatures) = self.close_signatures().ok_or(Error::NotOpen("closing"))?;
                return Ok(Step::default().with(Event::CloseReady { nonce, balances, signatures }));
            }
            Phase::Closing { nonce: n, mine, theirs: Some(t), .. } if *n == nonce && t == sig => {
                return Ok(Step::reply(Message::CloseAccept { nonce, signature: *mine }));
            }
            Phase::Open => {}
            _ => return Err(self.unexpected(msg)),
        }
        let cancelled = match &self.state.flight {
            Flight::Idle => None,
            // The peer closes before seeing my proposal: the proposal will not be made.
            Flight::Proposed { payments, signed: None, .. } => Some(*payments),
            _ => return Err(self.unexpected(msg)),
        };
        self.peer_key.verify(sig, &close, &self.domain, self.peer_address())?;
        let mine = sign(&self.signer, &close, &self.domain)?;
        // -- checks done; apply
        let mut ids = cancelled.map(Payments::ids).unwrap_or_default();
        ids.extend(std::mem::take(&mut self.state.queue).ids());
        self.state.flight = Flight::Idle;
        self.state.phase = Phase::Closing { nonce, balances, mine, theirs: Some(*sig) };
        let (nonce, balances, signatures) = self.close_signatures().ok_or(Error::NotOpen("closing"))?;
        let mut step = Step::reply(Message::CloseAccept { nonce, signature: mine });
        if !ids.is_empty() {
            self.note_cancelled(&ids);
            step.events.push(Event::PaymentsCancelled { ids });
        }
        Ok(step.with(Event::CloseReady { nonce, balances, signatures }))
    }

    fn on_close_accept(&mut self, msg: &Message, nonce: u64, sig: &Sig) -> Result<Step> {
        let Phase::Closing { nonce: n, balances, mine, theirs } = &self.state.phase else {
            return Err(self.unexpected(msg));
        };
        if *n != nonce {
            return Err(Error::WrongNonce { expected: *n, got: nonce });
        }
        if theirs.is_some() {
            return Ok(Step::default());
        }
        let (balances, mine) = (*balances, *mine);
        self.peer_key.verify(sig, &Close::new(nonce, balances), &self.domain, self.peer_address())?;
        self.state.phase = Phase::Closing { nonce, balances, mine, theirs: Some(*sig) };
        let (nonce, balances, signatures) = self.close_signatures().ok_or(Error::NotOpen("closing"))?;
        Ok(Step::default().with(Event::CloseReady { nonce, balances, signatures }))
    }
}

/// The event for a lock move that just became irrevocable, seen by its proposer (`mine`) or by
/// the countersigner.
fn lock_event(m: &LockMove, mine: bool, nonce: u64) -> Event {
    let change = match m {
        LockMove::Add(_) if mine => LockChange::Added,
        LockMove::Add(_) => LockChange::Received,
        LockMove::Fulfil { preimage, .. } => LockChange::Fulfilled { preimage: *preimage },
        LockMove::Release(_) => LockChange::Released,
        LockMove::Expire(_) => LockChange::Expired,
    };
    Event::Lock { lock: *m.lock(), change, nonce }
}

/// Runs one exchange between two parties living in the same process: delivers `first` (sent by
/// party `from`) and every reply after it until the exchange ends; returns the events of both.
/// Nothing is persisted between the steps: for tests, demos and benchmarks, not for a node.
pub fn exchange(a: &mut Channel, b: &mut Channel, from: usize, first: Message) -> Result<Vec<Event>> {
    let mut events = Vec::new();
    let mut next = Some((1 - from, first));
    while let Some((to, msg)) = next.take() {
        let step = if to == 0 { a.handle(&msg)? } else { b.handle(&msg)? };
        events.extend(step.events);
        next = step.reply.map(|m| (1 - to, m));
    }
    Ok(events)
}

impl ChannelState {
    /// Serialises the state (JSON, with its version tag).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        serde_json::to_vec(self).map_err(|e| Error::Decode(e.to_string()))
    }

    /// Reads a state written by [`ChannelState::to_bytes`], checking its version tag.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        #[derive(Deserialize)]
        struct Tag {
            version: u32,
        }
        let tag: Tag = serde_json::from_slice(bytes).map_err(|e| Error::Decode(e.to_string()))?;
        if matches!(tag.version, 1 | 2) {
            return Err(Error::ContractV1(tag.version));
        }
        if tag.version != STATE_VERSION {
            return Err(Error::Version { found: tag.version, expected: STATE_VERSION });
        }
        serde_json::from_slice(bytes).map_err(|e| Error::Decode(e.to_string()))
    }
}
