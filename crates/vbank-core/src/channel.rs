//! The RSMC channel state machine for one party.

use std::collections::BTreeMap;

use alloy_primitives::{Address, B256, U256};
use alloy_signer_local::PrivateKeySigner;
use alloy_sol_types::Eip712Domain;
use serde::{Deserialize, Serialize};

use crate::{
    Amount, Error, Message, Result, RevocationStore, WaiverChain,
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
        payments: Payments,
    },
    /// I countersigned the peer's proposal and committed mine; waiting for the peer's revocation.
    Committed {
        nonce: u64,
        payments: Payments,
    },
    /// I countersigned the peer's proposal `nonce`; waiting for its commit.
    Countersigned {
        nonce: u64,
        balances: [Amount; 2],
        peer_waiver: Address,
    },
}

impl Flight {
    fn name(&self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::Proposed { .. } => "waiting for a countersignature",
            Self::Committed { .. } => "waiting for a revocation",
            Self::Countersigned { .. } => "waiting for a commit",
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
}

/// Something the application should know after a step.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// The last waiver address derived (a scalar multiplication each): every update needs the
    /// same one two or three times.
    waiver_cache: std::cell::Cell<Option<(u64, Address)>>,
    /// The peer's public key once seen: later signatures are verified, not recovered.
    peer_key: PeerKey,
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
        Ok(Self { state, signer, domain, waiver_cache: std::cell::Cell::new(None), peer_key: PeerKey::default() })
    }

    /// Puts the channel back to `state`, one of its own earlier states (a step whose result
    /// could not be stored is undone this way).
    pub fn reset(&mut self, state: ChannelState) {
        self.state = state;
        self.waiver_cache.set(None);
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

    /// What this party can still pay: its balance less queued and proposed payments.
    pub fn spendable(&self) -> Amount {
        let mine = self.balances()[self.me()];
        let queued = self.state.queue.amount;
        let proposed = match &self.state.flight {
            Flight::Proposed { payments, .. } => payments.amount,
            _ => 0,
        };
        mine.saturating_sub(queued).saturating_sub(proposed)
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
        if let Some((n, a)) = self.waiver_cache.get()
            && n == nonce
        {
            return Ok(a);
        }
        let a = self.state.chain.address(nonce)?;
        self.waiver_cache.set(Some((nonce, a)));
        Ok(a)
    }

    fn my_sheet(&self, nonce: u64, balances: [Amount; 2]) -> Result<BalanceSheet> {
        Ok(BalanceSheet::new(nonce, balances, self.my_waiver(nonce)?))
    }

    fn sign_sheet(&self, nonce: u64, balances: [Amount; 2], waiver: Address) -> Result<Sig> {
        sign(&self.signer, &BalanceSheet::new(nonce, balances, waiver), &self.domain)
    }

    fn check_sum(&self, balances: [Amount; 2]) -> Result<()> {
        let total = self.state.params.total();
        match sum(balances) {
            Some(s) if s == total => Ok(()),
            s => Err(Error::WrongSum { sum: s, total }),
        }
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
        self.state.flight = Flight::Proposed { nonce: 0, balances, payments: Payments::default() };
        Ok(Message::Propose { nonce: 0, balances, waiver })
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
            || self.state.queue.count == 0
            || self.require_running().is_err()
        {
            return Ok(None);
        }
        let latest = self.state.latest.as_ref().ok_or(Error::NotOpen("opening"))?;
        let nonce = latest.nonce + 1;
        if nonce >= MAX_UPDATES {
            return Err(Error::Exhausted(MAX_UPDATES));
        }
        let payments = self.state.queue;
        let amount = payments.amount;
        let mut balances = latest.balances;
        let (me, peer) = (self.me(), self.peer());
        balances[me] = balances[me]
            .checked_sub(amount)
            .ok_or(Error::InsufficientBalance { available: balances[me], requested: amount })?;
        balances[peer] += amount;
        let waiver = self.my_waiver(nonce)?;
        self.state.queue = Payments::default();
        self.state.flight = Flight::Proposed { nonce, balances, payments };
        Ok(Some(Message::Propose { nonce, balances, waiver }))
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
        (from..=last).collect()
    }

    /// Abandons this party's proposal in flight (nonce > 0) after the peer refused it: the
    /// sheet is never committed here, so its payments are cancelled for good rather than sent
    /// again at the next reconnect (DESIGN §2 rule 11). Returns their ids (empty when no
    /// proposal was in flight). Safe whatever the peer did: only a Commit from this party makes
    /// the peer's countersignature usable against it, and no Commit follows now.
    pub fn withdraw_proposal(&mut self) -> Vec<u64> {
        match self.state.flight {
            Flight::Proposed { nonce, payments, .. } if nonce > 0 => {
                self.state.flight = Flight::Idle;
                payments.ids()
            }
            _ => Vec::new(),
        }
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
            if let Flight::Proposed { payments, .. } = &self.state.flight {
                // The proposal's sheet will never be countersigned here: its payments are not made.
                ids.splice(0..0, payments.ids());
                self.state.flight = Flight::Idle;
            }
            if !ids.is_empty() {
                step.events.push(Event::PaymentsCancelled { ids });
            }
        }
        let settlement = self.settlement();
        if first {
            step.events.push(Event::Frozen { reason: reason.to_string(), settlement: settlement.clone(), violation });
        }
        (settlement, step)
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
        let latest = self.state.latest.as_ref().ok_or(Error::NotOpen("opening"))?;
        let (nonce, balances) = (latest.nonce, latest.balances);
        let signature = sign(&self.signer, &Close::new(nonce, balances), &self.domain)?;
        let ids = std::mem::take(&mut self.state.queue).ids();
        self.state.phase = Phase::Closing { nonce, balances, mine: signature, theirs: None };
        let mut step = Step::reply(Message::CloseRequest { nonce, balances, signature });
        if !ids.is_empty() {
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
        if opened && self.nonce() > 0 && !matches!(self.state.flight, Flight::Committed { .. }) {
            let nonce = self.nonce() - 1;
            out.push(Message::Revoke { nonce, secret: self.state.chain.secret(nonce)? });
        }
        if self.state.frozen.is_some() {
            // Nothing new is offered; a commit already made (its secret revealed) may be resent.
            if let Flight::Committed { nonce, .. } = &self.state.flight {
                out.push(self.commit_message(*nonce)?);
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
            Flight::Proposed { nonce, balances, .. } => {
                out.push(Message::Propose { nonce: *nonce, balances: *balances, waiver: self.my_waiver(*nonce)? })
            }
            Flight::Countersigned { nonce, .. } => out.push(self.countersign_message(*nonce)?),
            Flight::Committed { nonce, .. } => out.push(self.commit_message(*nonce)?),
        }
        Ok(out)
    }

    fn countersign_message(&self, nonce: u64) -> Result<Message> {
        let Flight::Countersigned { balances, peer_waiver, .. } = self.state.flight else {
            return Err(Error::NotOpen("not countersigning"));
        };
        Ok(Message::Countersign {
            nonce,
            signature: self.sign_sheet(nonce, balances, peer_waiver)?,
            waiver: self.my_waiver(nonce)?,
        })
    }

    fn commit_message(&self, nonce: u64) -> Result<Message> {
        let balances = self.balances();
        let peer_waiver = *self.state.peer_unrevoked.get(&nonce).ok_or(Error::NotOpen("no peer sheet"))?;
        let signature = self.sign_sheet(nonce, balances, peer_waiver)?;
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
            return Err(Error::Frozen(reason.clone()));
        }
        match msg {
            Message::Propose { nonce, balances, waiver } => self.on_propose(msg, *nonce, *balances, *waiver),
            Message::Countersign { nonce, signature, waiver } => self.on_countersign(msg, *nonce, signature, *waiver),
            Message::Commit { nonce, signature, revocation } => self.on_commit(msg, *nonce, signature, *revocation),
            Message::Revoke { nonce, secret } => self.on_revoke(msg, *nonce, *secret),
            Message::CloseRequest { nonce, balances, signature } => {
                self.on_close_request(msg, *nonce, *balances, signature)
            }
            Message::CloseAccept { nonce, signature } => self.on_close_accept(msg, *nonce, signature),
        }
    }

    fn on_propose(&mut self, msg: &Message, nonce: u64, balances: [Amount; 2], waiver: Address) -> Result<Step> {
        // A duplicate of the proposal already countersigned: countersign again (same bytes).
        if let Flight::Countersigned { nonce: n, balances: b, peer_waiver } = self.state.flight
            && n == nonce
            && b == balances
            && peer_waiver == waiver
        {
            return Ok(Step::reply(self.countersign_message(nonce)?));
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
            self.require_running()?;
        }
        let expected = if opening { 0 } else { self.nonce() + 1 };
        if nonce != expected {
            return Err(Error::WrongNonce { expected, got: nonce });
        }
        let mut requeue = None;
        match &self.state.flight {
            Flight::Idle => {}
            Flight::Proposed { nonce: n, payments, .. } if *n == nonce => {
                // Both proposed at once: party 0's proposal goes first, party 1 queues its own again.
                if self.me() == 0 {
                    return Err(Error::Conflict(nonce));
                }
                requeue = Some(*payments);
            }
            _ => return Err(self.unexpected(msg)),
        }
        if waiver == Address::ZERO {
            return Err(Error::ZeroWaiver);
        }
        self.check_sum(balances)?;
        let me = self.me();
        if opening {
            if balances != self.state.params.deposits {
                return Err(Error::WrongDirection { from: self.state.params.deposits[me], to: balances[me] });
            }
        } else {
            let from = self.balances()[me];
            if balances[me] <= from {
                return Err(Error::WrongDirection { from, to: balances[me] });
            }
        }
        let signature = self.sign_sheet(nonce, balances, waiver)?;
        let my_waiver = self.my_waiver(nonce)?;
        // -- checks done; apply
        if let Some(p) = requeue {
            // The abandoned proposal's payments go back in front of the queue (their ids are lower).
            let q = &mut self.state.queue;
            q.first = p.first;
            q.count += p.count;
            q.amount += p.amount;
        }
        self.state.flight = Flight::Countersigned { nonce, balances, peer_waiver: waiver };
        Ok(Step::reply(Message::Countersign { nonce, signature, waiver: my_waiver }))
    }

    fn on_countersign(&mut self, msg: &Message, nonce: u64, signature: &Sig, waiver: Address) -> Result<Step> {
        // A duplicate after we committed: commit again.
        if let Flight::Committed { nonce: n, .. } = self.state.flight
            && n == nonce
            && self.state.peer_unrevoked.get(&nonce) == Some(&waiver)
        {
            return Ok(Step::reply(self.commit_message(nonce)?));
        }
        let Flight::Proposed { nonce: n, balances, payments } = self.state.flight else {
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
        let mine = self.my_sheet(nonce, balances)?;
        self.peer_key.verify(signature, &mine, &self.domain, self.peer_address())?;
        let my_signature = self.sign_sheet(nonce, balances, waiver)?;
        let revocation = if nonce == 0 { None } else { Some(self.state.chain.secret(nonce - 1)?) };
        // -- checks done; apply
        self.state.latest = Some(LiquidationSheet {
            nonce,
            balances,
            waiver: mine.waiver,
            locks: Vec::new(),
            peer_signature: *signature,
        });
        self.state.peer_unrevoked.insert(nonce, waiver);
        let reply = Message::Commit { nonce, signature: my_signature, revocation };
        if nonce == 0 {
            self.state.flight = Flight::Idle;
            self.state.phase = Phase::Open;
            return Ok(Step::reply(reply).with(Event::Opened));
        }
        self.state.flight = Flight::Committed { nonce, payments };
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
        let Flight::Countersigned { nonce: n, balances, peer_waiver } = self.state.flight else {
            if nonce < self.nonce() {
                return Err(Error::WrongNonce { expected: self.nonce() + 1, got: nonce });
            }
            return Err(self.unexpected(msg));
        };
        if nonce != n {
            return Err(Error::WrongNonce { expected: n, got: nonce });
        }
        let mine = self.my_sheet(nonce, balances)?;
        self.peer_key.verify(signature, &mine, &self.domain, self.peer_address())?;
        match (nonce, revocation) {
            (0, None) => {}
            (0, Some(_)) | (_, None) => return Err(self.unexpected(msg)),
            (_, Some(secret)) => self.check_revocation(nonce - 1, secret)?,
        }
        let my_secret = if nonce == 0 { None } else { Some(self.state.chain.secret(nonce - 1)?) };
        // -- checks done; apply
        let before = self.balances()[self.me()];
        if let Some(secret) = revocation {
            self.apply_revocation(nonce - 1, secret)?;
        }
        self.state.latest = Some(LiquidationSheet {
            nonce,
            balances,
            waiver: mine.waiver,
            locks: Vec::new(),
            peer_signature: *signature,
        });
        self.state.peer_unrevoked.insert(nonce, peer_waiver);
        self.state.flight = Flight::Idle;
        if nonce == 0 {
            self.state.phase = Phase::Open;
            return Ok(Step::default().with(Event::Opened));
        }
        let amount = balances[self.me()] - before;
        let reply = my_secret.map(|secret| Message::Revoke { nonce: nonce - 1, secret });
        Ok(Step { reply, events: vec![Event::Received { amount, nonce }] })
    }

    fn on_revoke(&mut self, msg: &Message, nonce: u64, secret: B256) -> Result<Step> {
        let Flight::Committed { nonce: n, payments } = self.state.flight else {
            return match self.state.revocations.secret(nonce) {
                // a revocation received before: nothing to do
                Some(known) if known == secret => Ok(Step::default()),
                Some(_) => Err(Error::InconsistentSecret(nonce)),
                None => Err(self.unexpected(msg)),
            };
        };
        // The nonce is the peer's: `nonce + 1` must not overflow (u64::MAX is just a wrong nonce).
        if nonce.checked_add(1) != Some(n) {
            return Err(Error::WrongNonce { expected: n - 1, got: nonce });
        }
        self.check_revocation(nonce, secret)?;
        // -- checks done; apply
        self.apply_revocation(nonce, secret)?;
        self.state.flight = Flight::Idle;
        let mut step = Step::default();
        if payments.count > 0 {
            step.events.push(Event::PaymentsAcked {
                first: payments.first,
                count: payments.count,
                amount: payments.amount,
                nonce: n,
            });
        }
        Ok(step)
    }

    fn on_close_request(&mut self, msg: &Message, nonce: u64, balances: [Amount; 2], sig: &Sig) -> Result<Step> {
        let latest = self.state.latest.as_ref().ok_or_else(|| self.unexpected(msg))?;
        if nonce != latest.nonce {
            return Err(Error::WrongNonce { expected: latest.nonce, got: nonce });
        }
        if balances != latest.balances {
            self.check_sum(balances)?;
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
            Flight::Proposed { payments, .. } => Some(*payments),
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
