//! `vbank pay`, `status`, `close` and `deposit`: a person's commands on a party's channels,
//! carried out by the party's running node or directly on its store.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use alloy::{primitives::Address, signers::local::PrivateKeySigner};
use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::json;
use vbank_client::{Chain, OnChain, OnChainState, TxReport};
use vbank_core::Settlement;
use vbank_node::{
    ChannelStatus, ControlClient, MemoryStore, Node, NodeUri, RedbStore, Reply, Request, Service, Store, control_path,
};

use crate::{
    keys::KeyArgs,
    node::{load_key, open_service},
    progress::{Interrupt, Interrupted, countdown, unix_now, waiting},
    units::{format_eth, parse_amount, parse_pair},
};

#[derive(Args, Debug)]
pub(crate) struct PayArgs {
    /// This party's store (a redb file; created if missing).
    #[arg(long)]
    store: PathBuf,
    /// The peer's node URI, vbank://<key>@host:port as its `vbank node` prints it (default: the
    /// URI this party last reached it at).
    #[arg(long)]
    connect: Option<NodeUri>,
    /// The channel's contract address (a payment to the peer of this channel).
    #[arg(long, required_unless_present = "invoice", conflicts_with = "invoice")]
    channel: Option<Address>,
    /// Amount per payment: "0.01", "5gwei", "1000wei".
    #[arg(long, allow_hyphen_values = true, required_unless_present = "invoice", conflicts_with = "invoice")]
    amount: Option<String>,
    /// Pay this invoice (`vbank invoice` prints them) along a route of channels, through this
    /// party's running node.
    #[arg(long)]
    invoice: Option<String>,
    /// With --invoice: the most paid to intermediaries in fees ("0.001", "500wei").
    #[arg(long, allow_hyphen_values = true, requires = "invoice")]
    max_fee: Option<String>,
    /// A payment id of your choosing (an order number, say): giving the same id again never pays
    /// twice; it returns the first attempt's outcome.
    #[arg(long, conflicts_with = "invoice")]
    id: Option<String>,
    /// With --invoice: seconds from now to the locks' expiry along the route.
    #[arg(long, default_value_t = 3600, requires = "invoice")]
    window: u64,
    /// How many payments (coalesced into as few state updates as the protocol allows).
    #[arg(long, default_value_t = 1)]
    count: u32,
    #[command(flatten)]
    key: KeyArgs,
    /// Create the channel in the store if missing: the peer's address.
    #[arg(long, requires = "deposits")]
    peer: Option<Address>,
    /// With --peer: the agreed deposits of party 0 and party 1, "1,2".
    #[arg(long, allow_hyphen_values = true)]
    deposits: Option<String>,
    /// With --peer: the chain id.
    #[arg(long, default_value_t = 31337)]
    chain_id: u64,
    /// With --peer: the channel's lock period, token and salt.
    #[command(flatten)]
    terms: crate::open::TermsArgs,
    /// Seconds to wait for the peer before giving up (nothing is lost: the payments stay queued).
    #[arg(long, default_value_t = 10)]
    timeout: u64,
    /// A conditional payment (hash-time lock): the amount is locked to the peer until it shows
    /// the preimage of this sha256 hash (0x…, 32 bytes), or `--expiry` passes.
    #[arg(long, requires = "expiry")]
    hash: Option<alloy::primitives::B256>,
    /// With --hash: when the lock expires, unix seconds, or "+SECONDS" from now.
    #[arg(long, requires = "hash")]
    expiry: Option<String>,
}

/// `--expiry`: unix seconds, or `+SECONDS` from now.
fn parse_expiry(s: &str) -> Result<u64> {
    let bad = || anyhow::anyhow!("--expiry {s:?}: give unix seconds (1800000000) or seconds from now (+3600)");
    match s.strip_prefix('+') {
        Some(rel) => Ok(unix_now().saturating_add(rel.parse::<u64>().map_err(|_| bad())?)),
        None => s.parse().map_err(|_| bad()),
    }
}

#[derive(Args, Debug)]
pub(crate) struct LockArgs {
    /// This party's store.
    #[arg(long)]
    store: PathBuf,
    /// The channel's contract address.
    #[arg(long)]
    channel: Address,
    /// The peer's node URI (default: the URI this party last reached it at).
    #[arg(long)]
    connect: Option<NodeUri>,
    /// Seconds to wait for the peer.
    #[arg(long, default_value_t = 10)]
    timeout: u64,
    #[command(flatten)]
    key: KeyArgs,
}

#[derive(Args, Debug)]
pub(crate) struct FulfilArgs {
    #[command(flatten)]
    lock: LockArgs,
    /// The preimage (0x…, 32 bytes) whose sha256 is the lock's hash.
    #[arg(long)]
    preimage: alloy::primitives::B256,
}

#[derive(Args, Debug)]
pub(crate) struct ReleaseArgs {
    #[command(flatten)]
    lock: LockArgs,
    /// The hash of the lock to give up (it goes back to the peer).
    #[arg(long)]
    hash: alloy::primitives::B256,
}

/// Claims (`fulfil`) or gives up (`release`) a lock the peer sent this party.
async fn settle_lock(args: &LockArgs, request: Request, what: &str, json_mode: bool) -> Result<()> {
    let mut party = Party::attach(&args.store, || load_key(&args.key)).await?;
    let ch =
        party.channel(args.channel).await?.with_context(|| format!("channel {} is not in the store", args.channel))?;
    if let Some(uri) = args.connect.clone().or(ch.peer_uri.clone()) {
        party
            .connect(&uri, ch.peer)
            .await
            .with_context(|| format!("linking to the peer's node at {}", uri.socket_addr()))?;
    }
    let reply = waiting(&format!("{what} the lock with the peer"), party.request(request)).await?;
    let Reply::Lock { lock, nonce } = reply else { bail!("unexpected reply {reply:?}") };
    if json_mode {
        println!("{}", json!({ "channel": args.channel, "lock": lock, "nonce": nonce, "done": what }));
    } else {
        println!("lock {} of {} {what} (sheet {nonce})", lock.hash, format_eth(lock.amount));
    }
    Ok(())
}

/// `vbank fulfil`: claims the peer's lock that the preimage opens.
pub(crate) async fn fulfil(args: FulfilArgs, json_mode: bool) -> Result<()> {
    let request =
        Request::Fulfil { channel: args.lock.channel, preimage: args.preimage, timeout_secs: args.lock.timeout };
    settle_lock(&args.lock, request, "fulfilled", json_mode).await
}

/// `vbank release`: gives the peer's lock back to the peer.
pub(crate) async fn release(args: ReleaseArgs, json_mode: bool) -> Result<()> {
    let request = Request::Release { channel: args.lock.channel, hash: args.hash, timeout_secs: args.lock.timeout };
    settle_lock(&args.lock, request, "released", json_mode).await
}

#[derive(Args, Debug)]
pub(crate) struct StatusArgs {
    /// The party's store (read only: never created, no key needed).
    #[arg(long)]
    store: PathBuf,
    /// Also read each channel's contract: its state and which deposits are in.
    #[arg(long, value_parser = crate::rpc_url)]
    rpc_url: Option<String>,
    /// Also list the channels that are closed (hidden by default).
    #[arg(long)]
    all: bool,
}

/// This party's side of its channels: through the control socket of its running `vbank node`
/// (which holds the store), or else directly on the store for the length of one command. Both
/// carry out the same [`Request`]s.
pub(crate) enum Party {
    Node(ControlClient),
    Direct(Service<RedbStore>),
}

impl Party {
    /// Attaches to the node running on `store`, else opens the store as `signer`'s party (the
    /// key is only loaded then: a running node holds its own).
    pub(crate) async fn attach(store: &Path, signer: impl FnOnce() -> Result<PrivateKeySigner>) -> Result<Self> {
        if let Some(c) = ControlClient::connect(&control_path(store)).await {
            return Ok(Self::Node(c));
        }
        Ok(Self::Direct(open_service(store, signer()?, None, false)?))
    }

    /// As [`Party::attach`]; without a running node, handshakes with peers take at most
    /// `handshake` (the command's --timeout).
    pub(crate) async fn attach_timed(
        store: &Path,
        signer: impl FnOnce() -> Result<PrivateKeySigner>,
        handshake: Duration,
    ) -> Result<Self> {
        if let Some(c) = ControlClient::connect(&control_path(store)).await {
            return Ok(Self::Node(c));
        }
        let limits = vbank_node::Limits { handshake_timeout: handshake, ..vbank_node::Limits::default() };
        Ok(Self::Direct(crate::node::open_service_with(store, signer()?, None, false, limits)?))
    }

    /// Carries out a request that `stop` interrupts (a payment request then cancels what it has
    /// not sent, and its reply says what was acknowledged, cancelled and in flight).
    pub(crate) async fn request_until(
        &mut self,
        r: Request,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<Reply> {
        match self {
            Self::Node(c) => c.request_until(&r, stop).await.map_err(node_error),
            Self::Direct(s) => match s.control_until(r, stop).await {
                Reply::Error { message } => Err(anyhow::anyhow!(message)),
                reply => Ok(reply),
            },
        }
    }

    /// Without a running node, payments left queued in the store by a `vbank pay` that was
    /// killed before it could cancel them would go out with the next link: they are cancelled
    /// (never sent) before anything links. Returns how many. A running node cancels a request's
    /// queued payments itself when the request fails or its client goes.
    async fn cancel_leftovers(&mut self, id: Address) -> Result<u64> {
        let Self::Direct(s) = self else { return Ok(0) };
        let mut node = s.node().lock().await;
        let Some(ch) = node.channel(id) else { return Ok(0) };
        let queued = ch.queued();
        if queued == 0 {
            return Ok(0);
        }
        if !ch.is_idle() {
            bail!(
                "{queued} payment(s) left queued by an interrupted `vbank pay` wait behind an update in flight; \
                 run `vbank node` on this store to finish the update, then pay again"
            );
        }
        // Idle: the queue is ids unsettled_from.. (the tail), which `cancel_queued` takes whole
        // (`each` 0: the whole queue goes, so its total is dropped with it).
        let first = ch.unsettled_from();
        let cancelled = node.cancel_queued(id, first, first + queued - 1, 0).context("cancelling")?;
        Ok(cancelled.len() as u64)
    }

    /// Carries out a request; a refusal becomes an error.
    pub(crate) async fn request(&mut self, r: Request) -> Result<Reply> {
        match self {
            Self::Node(c) => c.request(&r).await.map_err(node_error),
            Self::Direct(s) => match s.control(r).await {
                Reply::Error { message } => Err(anyhow::anyhow!(message)),
                reply => Ok(reply),
            },
        }
    }

    /// The party's address and channels.
    pub(crate) async fn status(&mut self) -> Result<(Address, Vec<ChannelStatus>)> {
        let (address, _, channels) = self.status_with_uri().await?;
        Ok((address, channels))
    }

    /// The party's address, its node's URI (if a node listens) and its channels.
    pub(crate) async fn status_with_uri(&mut self) -> Result<(Address, Option<NodeUri>, Vec<ChannelStatus>)> {
        match self.request(Request::Status).await? {
            Reply::Status { address, uri, channels } => Ok((address, uri, channels)),
            other => bail!("unexpected reply {other:?}"),
        }
    }

    /// One channel's status, if the party has it.
    pub(crate) async fn channel(&mut self, id: Address) -> Result<Option<ChannelStatus>> {
        Ok(self.status().await?.1.into_iter().find(|c| c.channel == id))
    }

    /// Links to `peer`'s node at `uri` (if not linked); the URI's key must be `peer`'s.
    pub(crate) async fn connect(&mut self, uri: &NodeUri, peer: Address) -> Result<()> {
        if uri.address() != peer {
            bail!("--connect {uri} is the node of {}, not of the peer {peer}", uri.address());
        }
        self.request(Request::Connect { uri: uri.clone() }).await?;
        Ok(())
    }
}

pub(crate) async fn pay(args: PayArgs, json_mode: bool) -> Result<()> {
    if let Some(invoice) = &args.invoice {
        let max_fee = args.max_fee.as_deref().map(parse_amount).transpose().context("--max-fee")?;
        return crate::network::pay_invoice(&args.store, invoice, max_fee, args.window, args.timeout, json_mode).await;
    }
    let (Some(channel), Some(amount)) = (args.channel, args.amount.as_deref()) else {
        bail!("give --channel and --amount, or --invoice");
    };
    let amount = parse_amount(amount).context("--amount")?;
    if amount == 0 || args.count == 0 {
        bail!("--amount and --count must be more than zero");
    }
    let timeout = Duration::from_secs(args.timeout);
    let interrupt = Interrupt::install();
    // Before any payment is queued, an interrupt only stops the command.
    let nothing_sent =
        || anyhow::Error::new(Interrupted("interrupted: no payment was queued, nothing was sent".into()));
    let mut party = Party::attach_timed(&args.store, || load_key(&args.key), timeout).await?;
    let (me, channels) = party.status().await?;
    let known = channels.iter().find(|c| c.channel == channel);
    let opening = known.is_none_or(|c| c.phase == "opening");
    let params = match (known, args.peer, &args.deposits) {
        (Some(c), Some(peer), _) if c.peer != peer => {
            bail!("channel {} is with {}, not with --peer {peer}", channel, c.peer)
        }
        (Some(c), _, _) => c.params.clone(),
        (None, Some(peer), Some(deposits)) => {
            let deposits = parse_pair(deposits).context("--deposits")?;
            args.terms.params(args.chain_id, channel, [me, peer], deposits)
        }
        _ => {
            let here: Vec<String> = channels.iter().map(|c| c.channel.to_string()).collect();
            bail!(
                "channel {} is not in {}{}: check the address (`vbank status` lists them); a new channel is \
                 opened with `vbank open`",
                channel,
                args.store.display(),
                if here.is_empty() {
                    " (it holds no channel)".to_string()
                } else {
                    format!(" (it holds {})", here.join(", "))
                }
            )
        }
    };
    // What the channel can pay, in ETH, before anything is queued.
    if let Some(c) = known
        && c.phase != "opening"
    {
        let total = amount.checked_mul(u128::from(args.count));
        if total.is_none_or(|t| t > c.spendable) {
            bail!(
                "{} payment(s) of {} is {} but channel {} can pay {} now",
                args.count,
                format_eth(amount),
                total.map_or_else(|| "more than any balance".to_string(), format_eth),
                channel,
                format_eth(c.spendable)
            );
        }
    }
    let peer = params.parties[1 - usize::from(params.parties[1] == me)];
    let left = party.cancel_leftovers(channel).await?;
    if left > 0 {
        eprintln!("{left} payment(s) left queued by an interrupted `vbank pay` were cancelled: they were never sent");
    }
    // The peer's node, within --timeout: the handshake included.
    let uri = args.connect.clone().or_else(|| known.and_then(|c| c.peer_uri.clone()));
    if let Some(uri) = &uri {
        let linking = tokio::time::timeout(timeout, party.connect(uri, peer));
        tokio::select! {
            r = linking => match r {
                Err(_) => bail!(
                    "the peer's node at {} did not complete the handshake within {} s (--timeout): nothing was sent",
                    uri.socket_addr(),
                    args.timeout
                ),
                Ok(r) => r.with_context(|| format!("linking to the peer's node at {}", uri.socket_addr()))?,
            },
            () = interrupt.wait() => return Err(nothing_sent()),
        }
    }
    if opening {
        let open = waiting(
            "opening the channel with the peer",
            party.request(Request::Open { params, timeout_secs: args.timeout }),
        );
        tokio::select! {
            r = open => r.context("opening")?,
            () = interrupt.wait() => return Err(nothing_sent()),
        };
    }
    if let (Some(hash), Some(expiry)) = (args.hash, &args.expiry) {
        if args.count != 1 {
            bail!("a conditional payment (--hash) is one lock: leave --count out");
        }
        let expiry = parse_expiry(expiry)?;
        let request = Request::Hold { channel, amount, hash, expiry, timeout_secs: args.timeout };
        let reply =
            waiting("waiting for the peer to take the lock", party.request(request)).await.context("locking")?;
        let Reply::Lock { lock, nonce } = reply else { bail!("unexpected reply {reply:?}") };
        if json_mode {
            println!("{}", json!({ "channel": channel, "lock": lock, "nonce": nonce }));
        } else {
            println!(
                "locked {} to the peer on {} until unix time {} (sheet {nonce}): it is the peer's once it shows the \
                 preimage, yours again after the expiry",
                format_eth(lock.amount),
                lock.hash,
                lock.expiry
            );
        }
        return Ok(());
    }
    let request =
        Request::Pay { channel, amount, count: args.count.into(), timeout_secs: args.timeout, id: args.id.clone() };
    let paid =
        waiting("waiting for the peer's countersignatures", party.request_until(request, interrupt.wait())).await;
    let paid = match paid {
        Err(e) if format!("{e:#}").starts_with("interrupted") => {
            return Err(Interrupted(format!("{e:#}")).into());
        }
        Err(e) if uri.is_none() && format!("{e:#}").contains("is not connected") => {
            return Err(e.context("paying (pass --connect vbank://<key>@host:port, the URI the peer's node prints)"));
        }
        other => other.context("paying")?,
    };
    let Reply::Paid { count, amount: total, .. } = paid else {
        bail!("unexpected reply to a payment");
    };
    let ch = party.channel(channel).await?.context("channel")?;
    let b = ch.balances;
    if json_mode {
        println!(
            "{}",
            json!({ "channel": channel, "acknowledged": count, "amount": total.to_string(), "nonce": ch.nonce,
                    "balances": [b[0].to_string(), b[1].to_string()] })
        );
    } else {
        println!(
            "{count} payment(s) of {} ({} in all) acknowledged (sheet {}); balances: party 0 {}, party 1 {}",
            format_eth(amount),
            format_eth(total),
            ch.nonce,
            format_eth(b[0]),
            format_eth(b[1])
        );
    }
    Ok(())
}

/// What a failure of this party's own node means: a reply the node refused is its message; a
/// closed socket is the node gone (crashed or stopped), not the peer.
fn node_error(e: vbank_node::Error) -> anyhow::Error {
    match e {
        vbank_node::Error::Control(message) => anyhow::anyhow!(message),
        vbank_node::Error::Closed => anyhow::anyhow!(
            "this party's own node stopped answering its control socket before replying: did it stop or crash? \
             Its log says; what it had sent is in its store"
        ),
        vbank_node::Error::Io(e) => anyhow::anyhow!(
            "this party's own node stopped answering its control socket ({e}): did it stop or crash? Its log \
             says; what it had sent is in its store"
        ),
        e => anyhow::Error::new(e).context("this party's node"),
    }
}

/// The channels of the store at `store`, read without a key and without changing anything: the
/// running node's answer, else the store's own contents (it must exist).
async fn read_status(store: &Path) -> Result<(Option<Address>, Option<NodeUri>, Vec<ChannelStatus>, bool)> {
    if let Some(c) = ControlClient::connect(&control_path(store)).await {
        let (address, uri, channels) = Party::Node(c).status_with_uri().await?;
        return Ok((Some(address), uri, channels, true));
    }
    crate::node::check_store(store, false)?;
    let db = RedbStore::open(store).map_err(|e| crate::node::store_error(store, e))?;
    // A channel can only be restored with its party's key; to read it without one, a throwaway
    // key stands in for the party's in a copy held in memory (never signed with, never saved).
    let stand_in = PrivateKeySigner::random();
    let copy = MemoryStore::default();
    let mut parties = std::collections::HashMap::new();
    for id in db.list()? {
        if let Some(mut state) = db.load(id)? {
            let me = usize::from(state.me);
            parties.insert(id, state.params.parties[me]);
            state.params.parties[me] = stand_in.address();
            copy.save(id, &state)?;
        }
    }
    for (peer, uri) in db.peer_addresses()? {
        copy.save_peer(peer, &uri)?;
    }
    let node = Node::open(stand_in, copy).context("reading the store")?;
    let mut channels = ChannelStatus::of(&node);
    for c in &mut channels {
        if let Some(party) = parties.get(&c.channel) {
            c.params.parties[c.me] = *party;
        }
    }
    Ok((parties.values().next().copied(), None, channels, false))
}

/// How a channel's phase reads in `vbank status`.
fn phase_text(c: &ChannelStatus) -> String {
    match (c.phase.as_str(), &c.frozen) {
        ("ended", _) => "closed".into(),
        ("frozen", Some(why)) => format!("closing, frozen: {why}"),
        (p, _) => p.into(),
    }
}

pub(crate) async fn status(args: StatusArgs, json_mode: bool) -> Result<()> {
    let (address, uri, mut channels, node_running) = read_status(&args.store).await?;
    let total = channels.len();
    if !args.all {
        channels.retain(|c| c.phase != "ended");
    }
    let hidden = total - channels.len();
    // On-chain, per channel: its state and deposits, or why it could not be read.
    let mut onchain = Vec::new();
    if let Some(url) = &args.rpc_url {
        // Only reads: a throwaway key stands in for the RPC client's signer.
        let chain = Chain::connect(url, PrivateKeySigner::random(), None)
            .await
            .with_context(|| format!("connecting to {url}"))?;
        for c in &channels {
            onchain.push(OnChain::new(chain.clone(), c.channel).info().await.map_err(|e| e.to_string()));
        }
    }
    let chain_json = |i: usize| match onchain.get(i) {
        None => serde_json::Value::Null,
        Some(Ok(info)) => json!({ "state": info.state.to_string(), "deposited": info.deposited }),
        Some(Err(e)) => json!({ "error": e }),
    };
    if json_mode {
        let rows: Vec<_> = channels
            .iter()
            .enumerate()
            .map(|(i, c)| {
                json!({
                    "channel": c.channel, "me": c.me, "peer": c.peer, "peer_uri": c.peer_uri, "phase": c.phase,
                    "frozen": c.frozen,
                    "nonce": c.nonce,
                    "balances": [c.balances[0].to_string(), c.balances[1].to_string()],
                    "spendable": c.spendable.to_string(), "idle": c.idle, "queued": c.queued, "locks": c.locks,
                    "onchain": chain_json(i),
                })
            })
            .collect();
        println!(
            "{}",
            json!({ "address": address, "uri": uri, "node_running": node_running, "channels": rows,
                    "closed_hidden": hidden })
        );
        return Ok(());
    }
    if let Some(uri) = &uri {
        println!("node {uri}");
    }
    if total == 0 {
        println!("no channels in {}", args.store.display());
    }
    for (i, c) in channels.iter().enumerate() {
        let chain = match onchain.get(i) {
            None => String::new(),
            Some(Ok(info)) => format!(
                "; on chain {}, deposits {}",
                info.state,
                match info.deposited {
                    [true, true] => "both in",
                    [true, false] => "party 0's in",
                    [false, true] => "party 1's in",
                    [false, false] => "none in",
                }
            ),
            Some(Err(e)) => format!("; on chain: {e}"),
        };
        let peer = c.peer_uri.as_ref().map_or_else(|| c.peer.to_string(), ToString::to_string);
        let queued = if c.queued > 0 { format!(", {} payment(s) queued", c.queued) } else { String::new() };
        println!(
            "channel {} ({}): party {} of 2, peer {peer}, sheet {}, balances {} / {}, spendable {}{}{queued}{chain}",
            c.channel,
            phase_text(c),
            c.me,
            c.nonce,
            format_eth(c.balances[0]),
            format_eth(c.balances[1]),
            format_eth(c.spendable),
            if c.idle { "" } else { ", an update is in flight" }
        );
        for l in &c.locks {
            println!(
                "  lock {} of {} to party {}{}, expires at unix time {}",
                l.hash,
                format_eth(l.amount),
                l.receiver,
                if usize::from(l.receiver) == c.me { " (this party: `vbank fulfil --preimage`)" } else { "" },
                l.expiry
            );
        }
    }
    if hidden > 0 {
        println!("({hidden} closed channel(s) not shown: --all lists them)");
    }
    Ok(())
}

#[derive(Args, Debug)]
pub(crate) struct CloseArgs {
    /// This party's store.
    #[arg(long)]
    store: PathBuf,
    /// The channel's contract address.
    #[arg(long)]
    channel: Address,
    /// The peer's node URI (vbank://<key>@host:port), for a cooperative close (default: the URI
    /// this party last reached it at). It is dialed, again and again, until --timeout.
    #[arg(long)]
    connect: Option<NodeUri>,
    /// Seconds to keep trying the peer for a cooperative close.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
    /// If the peer cannot close cooperatively, liquidate alone with this party's latest sheet
    /// (its balance then stays frozen for the channel's lock period). Without it, a terminal asks;
    /// otherwise nothing is done.
    #[arg(long)]
    force: bool,
    /// The chain's JSON-RPC endpoint.
    #[arg(long, value_parser = crate::rpc_url)]
    rpc_url: String,
    /// Refuse to act unless the node reports this chain id.
    #[arg(long)]
    chain_id: Option<u64>,
    /// After a liquidation, wait for the lock period to end and withdraw (a countdown is shown);
    /// once it has ended, `vbank close` withdraws without it.
    #[arg(long)]
    wait: bool,
    #[command(flatten)]
    key: KeyArgs,
}

pub(crate) async fn close(args: CloseArgs, json_mode: bool) -> Result<()> {
    let signer = load_key(&args.key)?;
    let mut party = Party::attach(&args.store, || Ok(signer.clone())).await?;
    let chain = Chain::connect(&args.rpc_url, signer, args.chain_id)
        .await
        .with_context(|| format!("connecting to {}", args.rpc_url))?;
    let onchain = OnChain::new(chain.clone(), args.channel);
    let info = onchain.info().await.context("reading the channel")?;
    let (kind, report, mut detail) = match info.state {
        // Nothing off-chain is needed to cancel: the channel may not even be in the store.
        OnChainState::Funding => {
            let r = waiting("cancelling", onchain.cancel()).await.context("cancelling")?;
            ("cancel", r, "the channel never ran: every deposit made is refunded".to_string())
        }
        OnChainState::Running => {
            let ch = party.channel(args.channel).await?.context("the channel is not in the store")?;
            let uri = args.connect.clone().or_else(|| ch.peer_uri.clone());
            // Cooperative first, trying the peer's node until --timeout; nothing is frozen yet.
            let attempt =
                waiting("asking the peer to sign the close", cooperate(&mut party, uri.as_ref(), &ch, args.timeout))
                    .await;
            if let Err(why) = &attempt {
                let lock = info.lock_period;
                let cost = format!(
                    "liquidating alone freezes this party's balance for the lock period, {} (until about {})",
                    duration_text(lock),
                    date_text(unix_now() + lock)
                );
                if !args.force && !confirm(&format!("the peer did not close cooperatively: {why}\n{cost}.")) {
                    bail!(
                        "the peer did not close cooperatively: {why}; nothing was done. Try again when its node is \
                         back, or pass --force: {cost}"
                    );
                }
                eprintln!("the peer did not close cooperatively ({why}); liquidating with the latest sheet");
            }
            // Now the node freezes the channel and chooses, under its lock and from its stored
            // state, what to settle with: nothing chosen here.
            let request = Request::Settle { channel: args.channel, cooperative: attempt.is_ok(), timeout_secs: 5 };
            let settlement = match party.request(request).await? {
                Reply::Settle { settlement, .. } => settlement,
                other => bail!("unexpected reply {other:?}"),
            };
            let label = match &settlement {
                Settlement::Cooperative { .. } => "closing",
                Settlement::Liquidate(_) => "liquidating",
                Settlement::Cancel => bail!(
                    "the channel runs on chain but this party holds no countersigned sheet: only the peer can close it"
                ),
            };
            // Submitted as the library does (the node chose it; nothing is chosen here).
            let r = waiting(label, vbank::settle_on_chain(&chain, args.channel, &settlement))
                .await
                .with_context(|| format!("submitting: {}", vbank::describe_settlement(&settlement)))?;
            match settlement {
                Settlement::Cooperative { balances, .. } => {
                    let [b0, b1] = balances.map(format_eth);
                    ("cooperative", r, format!("both paid at once: party 0 {b0}, party 1 {b1}"))
                }
                Settlement::Liquidate(sheet) => {
                    let unlock = onchain.info().await?.liquidation.map_or(0, |l| l.unlock_time);
                    let d = format!(
                        "liquidated with sheet {}; the frozen balance unlocks at {} (in {}): then `vbank close` \
                         withdraws it",
                        sheet.nonce,
                        date_text(unlock),
                        duration_text(unlock.saturating_sub(unix_now()))
                    );
                    ("unilateral", r, d)
                }
                // (refused above: a running channel is never settled with a cancel)
                Settlement::Cancel => ("cancel", r, "cancelled".to_string()),
            }
        }
        OnChainState::Liquidating => {
            let unlock = info.liquidation.map_or(0, |l| l.unlock_time);
            // The chain's clock decides, not this machine's.
            let now = chain.timestamp().await.context("reading the chain's time")?;
            let r = if now >= unlock {
                waiting("withdrawing", onchain.withdraw_by_master()).await.context("withdrawing")?
            } else if args.wait {
                withdraw_after_lock(&onchain, unlock).await?
            } else {
                bail!(
                    "the channel is being liquidated; its frozen balance unlocks at {} (in {}): run `vbank close` \
                     again then, or pass --wait to wait and withdraw",
                    date_text(unlock),
                    duration_text(unlock - now)
                );
            };
            ("unilateral", r, "the lock period ended and the frozen balance was paid out".into())
        }
        OnChainState::Settling => {
            bail!("the liquidation's master has withdrawn; the sheet's locks await `unlock` (nothing else to close)")
        }
        OnChainState::Closed => bail!("the channel is already closed"),
    };
    // Our own liquidation, just made: --wait completes it.
    let report = if args.wait && kind == "unilateral" && info.state == OnChainState::Running {
        let unlock = onchain.info().await?.liquidation.map_or(0, |l| l.unlock_time);
        let w = withdraw_after_lock(&onchain, unlock).await?;
        detail.push_str("; the lock period ended and the frozen balance was paid out");
        w
    } else {
        report
    };
    // Settled on chain for good (not a liquidation waiting for its lock): the store says so.
    if let Party::Direct(service) = &party
        && onchain.state().await.is_ok_and(|s| s == OnChainState::Closed)
    {
        let _ = service.set_funding(args.channel, vbank_core::Funding::Ended).await;
    }
    if json_mode {
        println!(
            "{}",
            json!({ "channel": args.channel, "close": kind, "tx": report.hash, "gas_used": report.gas_used, "detail": detail })
        );
    } else {
        println!("{kind} close of {}: {detail} (tx {}, gas {})", args.channel, report.hash, report.gas_used);
    }
    Ok(())
}

/// Tries a cooperative close of `ch` until `timeout` seconds have passed: links to the peer's
/// node (at `uri`, else at the URI the node remembers), retrying, and asks it to sign the close.
/// Nothing is frozen: on failure the channel is as it was. Returns why it failed.
async fn cooperate(party: &mut Party, uri: Option<&NodeUri>, ch: &ChannelStatus, timeout: u64) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
    let mut why = "the peer's node was not reached".to_string();
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return Err(format!("{why} (tried for {timeout} s)"));
        }
        let step = async {
            if let Some(uri) = uri {
                party.connect(uri, ch.peer).await?;
            }
            party.request(Request::Close { channel: ch.channel, timeout_secs: left.as_secs().max(1) }).await
        };
        match tokio::time::timeout(left, step).await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(e)) => {
                why = format!("{e:#}");
                // The peer answered and refused: asking again will not help.
                if why.contains("the peer refused") {
                    return Err(why);
                }
            }
            Err(_) => return Err(format!("{why} (tried for {timeout} s)")),
        }
        tokio::time::sleep(Duration::from_secs(1).min(deadline.saturating_duration_since(tokio::time::Instant::now())))
            .await;
    }
}

/// Asks a person at a terminal to confirm `what` (false without a terminal).
fn confirm(what: &str) -> bool {
    use std::io::{BufRead, IsTerminal, Write};
    if !std::io::stdin().is_terminal() || !std::io::stderr().is_terminal() {
        return false;
    }
    eprint!("{what}\nLiquidate alone now? [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer).is_ok() && matches!(answer.trim(), "y" | "Y" | "yes")
}

/// Unix seconds as a UTC date: "2026-11-25 07:30:00 UTC".
pub(crate) fn date_text(unix: u64) -> String {
    let (days, secs) = (unix / 86_400, unix % 86_400);
    // Howard Hinnant's civil_from_days, for days since 1970-01-01 (never negative here).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC", secs / 3600, secs / 60 % 60, secs % 60)
}

/// Seconds as a person reads them: "45 s", "10 min", "1 h 5 min", "30 d 0 h".
pub(crate) fn duration_text(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs} s"),
        60..3600 => format!("{} min", secs / 60),
        3600..86_400 => format!("{} h {} min", secs / 3600, secs / 60 % 60),
        _ => format!("{} d {} h", secs / 86_400, secs / 3600 % 24),
    }
}

/// Waits for the lock period to end (a countdown on stderr), then pays the frozen balance out.
/// The contract judges by the block's time, which may lag the clock here: a refusal is retried.
async fn withdraw_after_lock(onchain: &OnChain, unlock: u64) -> Result<TxReport> {
    let attempt = async {
        loop {
            if unix_now() > unlock {
                match onchain.clone().force(true).withdraw_by_master().await {
                    Ok(r) => return Ok(r),
                    Err(e) if e.revert().is_some() => {}
                    Err(e) => return Err(e),
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    };
    countdown("waiting for the lock period to end", unlock, attempt).await.context("withdrawing after the lock")
}

#[derive(Args, Debug)]
pub(crate) struct DepositArgs {
    /// The channel's contract address.
    #[arg(long)]
    channel: Address,
    /// The chain's JSON-RPC endpoint.
    #[arg(long, value_parser = crate::rpc_url)]
    rpc_url: String,
    /// The salt the channel was opened with (`vbank deploy` prints it; default zero): with the
    /// parameters the contract reports it must give the channel's address at the factory.
    #[arg(long)]
    salt: Option<alloy::primitives::B256>,
    #[command(flatten)]
    key: KeyArgs,
}

/// Pays this party's agreed deposit.
pub(crate) async fn deposit(args: DepositArgs, json_mode: bool) -> Result<()> {
    let signer = load_key(&args.key)?;
    let chain = Chain::connect(&args.rpc_url, signer, None).await?;
    let onchain = OnChain::new(chain, args.channel);
    let params = onchain.reported_params(args.salt.unwrap_or_default()).await.context("reading the channel")?;
    let r = waiting("depositing", onchain.deposit_agreed(&params)).await.context("depositing")?;
    if json_mode {
        println!("{}", json!({ "channel": args.channel, "tx": r.hash, "gas_used": r.gas_used }));
    } else {
        println!("deposited into {} (tx {}, gas {})", args.channel, r.hash, r.gas_used);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_durations_read_plainly() {
        assert_eq!(date_text(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(date_text(1_795_000_000), "2026-11-18 11:06:40 UTC");
        assert_eq!(date_text(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(duration_text(45), "45 s");
        assert_eq!(duration_text(600), "10 min");
        assert_eq!(duration_text(3900), "1 h 5 min");
        assert_eq!(duration_text(30 * 86_400), "30 d 0 h");
    }
}
