//! `vbank pay`, `status`, `close` and `deposit`: a person's commands on a party's channels,
//! carried out by the party's running node or directly on its store.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use alloy::{primitives::Address, signers::local::PrivateKeySigner};
use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::json;
use vbank::{Chain, OnChain};
use vbank::{ChannelStatus, NodeUri};
use vbank::{Client, CloseOptions, CloseOutcome};

use crate::{
    keys::KeyArgs,
    node::{check_store, load_key, store_error},
    progress::{Interrupt, Interrupted, Tracker, unix_now, waiting},
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

/// Claims (`fulfil`) or gives up (`release`) a lock the peer sent this party (`what`:
/// "fulfilled" with a preimage, "released" with a hash).
async fn settle_lock(args: &LockArgs, what: &str, value: alloy::primitives::B256, json_mode: bool) -> Result<()> {
    let mut party = attach(&args.store, || load_key(&args.key), None).await?;
    let ch =
        party.channel(args.channel).await?.with_context(|| format!("channel {} is not in the store", args.channel))?;
    if let Some(uri) = args.connect.clone().or(ch.peer_uri.clone()) {
        link(&mut party, &uri, ch.peer)
            .await
            .with_context(|| format!("linking to the peer's node at {}", uri.socket_addr()))?;
    }
    let timeout = Duration::from_secs(args.timeout);
    let label = format!("{what} the lock with the peer");
    let (lock, nonce) = if what == "fulfilled" {
        waiting(&label, party.fulfil(args.channel, value, timeout)).await?
    } else {
        waiting(&label, party.release(args.channel, value, timeout)).await?
    };
    if json_mode {
        println!("{}", json!({ "channel": args.channel, "lock": lock, "nonce": nonce, "done": what }));
    } else {
        println!("lock {} of {} {what} (sheet {nonce})", lock.hash, format_eth(lock.amount));
    }
    finish(party).await;
    Ok(())
}

/// `vbank fulfil`: claims the peer's lock that the preimage opens.
pub(crate) async fn fulfil(args: FulfilArgs, json_mode: bool) -> Result<()> {
    settle_lock(&args.lock, "fulfilled", args.preimage, json_mode).await
}

/// `vbank release`: gives the peer's lock back to the peer.
pub(crate) async fn release(args: ReleaseArgs, json_mode: bool) -> Result<()> {
    settle_lock(&args.lock, "released", args.hash, json_mode).await
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

/// This party's node, as the library's handle on it: its running `vbank node` (through the
/// control socket; it holds the store and its own key), else the store opened for the length of
/// one command, the key loaded only then. Without a running node, handshakes with peers take at
/// most `handshake` (a command's --timeout).
pub(crate) async fn attach(
    store: &Path,
    signer: impl FnOnce() -> Result<PrivateKeySigner>,
    handshake: Option<Duration>,
) -> Result<Client> {
    if let Some(c) = Client::running(store).await {
        return Ok(c);
    }
    let signer = signer()?;
    check_store(store, true)?;
    // No journal: nobody reads events from a command's node.
    let mut builder = vbank::Builder::new(store, signer).journal(false);
    if let Some(h) = handshake {
        builder = builder.handshake_timeout(h);
    }
    let node = builder.open().await.map_err(|e| match e {
        vbank::Error::Node(e) => store_error(store, e),
        e => anyhow::Error::new(e),
    })?;
    Ok(Client::local(node))
}

/// Ends a command's use of this party's node: a node opened for the command is stopped (its
/// links closed after what is queued for them), a running one is left running.
pub(crate) async fn finish(party: Client) {
    let _ = tokio::time::timeout(Duration::from_secs(5), party.stop()).await;
}

/// Links to `peer`'s node at `uri` (a URI of another party is a mistake in --connect).
pub(crate) async fn link(party: &mut Client, uri: &NodeUri, peer: Address) -> Result<()> {
    party.link(uri, peer).await.map_err(|e| match e {
        e @ vbank::Error::WrongPeer { .. } => anyhow::anyhow!("--connect {e}"),
        e => anyhow::Error::new(e),
    })
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
    let mut party = attach(&args.store, || load_key(&args.key), Some(timeout)).await?;
    let vbank::Status { address: me, channels, .. } = party.status().await?;
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
    let left = party.cancel_leftovers(channel).await.map_err(|e| match e {
        vbank::Error::QueuedBehindUpdate { queued } => anyhow::anyhow!(
            "{queued} payment(s) left queued by an interrupted `vbank pay` wait behind an update in flight; run \
             `vbank node` on this store to finish the update, then pay again"
        ),
        e => anyhow::Error::new(e),
    })?;
    if left > 0 {
        eprintln!("{left} payment(s) left queued by an interrupted `vbank pay` were cancelled: they were never sent");
    }
    // The peer's node, within --timeout: the handshake included.
    let uri = args.connect.clone().or_else(|| known.and_then(|c| c.peer_uri.clone()));
    if let Some(uri) = &uri {
        let linking = tokio::time::timeout(timeout, link(&mut party, uri, peer));
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
        let open = waiting("opening the channel with the peer", party.open(params, timeout));
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
        let (lock, nonce) =
            waiting("waiting for the peer to take the lock", party.hold(channel, amount, hash, expiry, timeout))
                .await
                .context("locking")?;
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
        finish(party).await;
        return Ok(());
    }
    let paying = party.pay(channel, amount, args.count.into(), args.id.clone(), timeout, interrupt.wait());
    let paid = waiting("waiting for the peer's countersignatures", paying).await.map_err(anyhow::Error::new);
    let vbank::Paid { count, amount: total, .. } = match paid {
        Err(e) if format!("{e:#}").starts_with("interrupted") => {
            return Err(Interrupted(format!("{e:#}")).into());
        }
        Err(e) if uri.is_none() && format!("{e:#}").contains("is not connected") => {
            return Err(e.context("paying (pass --connect vbank://<key>@host:port, the URI the peer's node prints)"));
        }
        other => other.context("paying")?,
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
    finish(party).await;
    Ok(())
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
    check_store(&args.store, false)?;
    let vbank::StoreStatus { address, uri, mut channels, node_running } =
        vbank::read_status(&args.store).await.map_err(|e| match e {
            vbank::Error::Node(e @ vbank::NodeError::Store(_)) => store_error(&args.store, e),
            e => anyhow::Error::new(e),
        })?;
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
    let mut party = attach(&args.store, || Ok(signer.clone()), None).await?;
    let chain = Chain::connect(&args.rpc_url, signer, args.chain_id)
        .await
        .with_context(|| format!("connecting to {}", args.rpc_url))?;
    let tracker = Tracker::new();
    let cost = |lock: u64| {
        format!(
            "liquidating alone freezes this party's balance for the lock period, {} (until about {})",
            duration_text(lock),
            date_text(unix_now() + lock)
        )
    };
    let opts = CloseOptions {
        connect: args.connect.clone(),
        timeout: Duration::from_secs(args.timeout),
        force: args.force,
        confirm: Some(Arc::new(move |why: &str, lock: u64| {
            confirm(&format!("the peer did not close cooperatively: {why}\n{}.", cost(lock)))
        })),
        wait: args.wait,
        progress: Some(tracker.progress()),
    };
    let closed = tracker.follow(party.close(&chain, args.channel, opts)).await;
    let report = closed.map_err(|e| match e {
        vbank::Error::Uncooperative { reason, lock_period } => anyhow::anyhow!(
            "the peer did not close cooperatively: {reason}; nothing was done. Try again when its node is back, or \
             pass --force: {}",
            cost(lock_period)
        ),
        vbank::Error::StillLocked { unlock_time, now } => anyhow::anyhow!(
            "the channel is being liquidated; its frozen balance unlocks at {} (in {}): run `vbank close` again \
             then, or pass --wait to wait and withdraw",
            date_text(unlock_time),
            duration_text(unlock_time.saturating_sub(now))
        ),
        vbank::Error::NothingToClose(vbank::OnChainState::Settling) => anyhow::anyhow!(
            "the liquidation's master has withdrawn; the sheet's locks await `unlock` (nothing else to close)"
        ),
        vbank::Error::NothingToClose(_) => anyhow::anyhow!("the channel is already closed"),
        vbank::Error::Node(vbank::NodeError::UnknownChannel(_)) => anyhow::anyhow!("the channel is not in the store"),
        e => anyhow::Error::new(e),
    })?;
    finish(party).await;
    let (kind, mut detail) = match &report.outcome {
        CloseOutcome::Cancelled => ("cancel", "the channel never ran: every deposit made is refunded".to_string()),
        CloseOutcome::Cooperative { balances, .. } => {
            let [b0, b1] = balances.map(format_eth);
            ("cooperative", format!("both paid at once: party 0 {b0}, party 1 {b1}"))
        }
        CloseOutcome::Liquidated { nonce, unlock_time, .. } => (
            "unilateral",
            format!(
                "liquidated with sheet {nonce}; the frozen balance unlocks at {} (in {}): then `vbank close` \
                 withdraws it",
                date_text(*unlock_time),
                duration_text(unlock_time.saturating_sub(unix_now()))
            ),
        ),
        CloseOutcome::Withdrawn => ("unilateral", "the lock period ended and the frozen balance was paid out".into()),
    };
    let tx = match &report.withdrawal {
        Some(w) => {
            detail.push_str("; the lock period ended and the frozen balance was paid out");
            w
        }
        None => &report.tx,
    };
    if json_mode {
        println!(
            "{}",
            json!({ "channel": args.channel, "close": kind, "tx": tx.hash, "gas_used": tx.gas_used, "detail": detail })
        );
    } else {
        println!("{kind} close of {}: {detail} (tx {}, gas {})", args.channel, tx.hash, tx.gas_used);
    }
    Ok(())
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
    let r = waiting("depositing", vbank::deposit(&chain, args.channel, args.salt.unwrap_or_default())).await?;
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
