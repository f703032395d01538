//! `vbank node` and `vbank watch`: a party's node serving its channels to their peers over TCP,
//! admitting channels that peers open, and watching the chain to punish stale liquidations.

use std::{path::PathBuf, time::Duration};

use alloy::primitives::Address;
use alloy::signers::local::PrivateKeySigner;
use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::json;
use vbank::ChainEvent;
use vbank::ChannelEvent as Event;
use vbank::Notice;
use vbank::WatchEvent;

use crate::{
    keys::KeyArgs,
    units::{format_eth, parse_amount, parse_pair},
};

#[derive(Args, Debug)]
pub(crate) struct NodeArgs {
    /// The node's store (a redb file; created if missing).
    #[arg(long)]
    store: PathBuf,
    /// Address to listen on for peers (peers dial the node URI printed at start:
    /// vbank://<this party's public key>@host:port).
    #[arg(long, default_value = "127.0.0.1:9735")]
    listen: String,
    #[command(flatten)]
    key: KeyArgs,
    /// Add a channel (if not in the store yet): its contract address.
    #[arg(long, requires_all = ["peer", "deposits"])]
    channel: Option<Address>,
    /// The channel's other party.
    #[arg(long)]
    peer: Option<Address>,
    /// The agreed deposits of party 0 and party 1, e.g. "1,2" (ETH) or "1000wei,5wei".
    #[arg(long, allow_hyphen_values = true)]
    deposits: Option<String>,
    #[command(flatten)]
    terms: crate::open::TermsArgs,
    /// This node's party index in the channel (0 or 1).
    #[arg(long, default_value_t = 1)]
    index: u8,
    /// The chain id: with --rpc-url, refuse to start unless the endpoint serves it (default: the
    /// endpoint's); it is also the chain of a channel added with --channel (default 31337 without
    /// --rpc-url).
    #[arg(long)]
    chain_id: Option<u64>,
    /// Watch every channel on this chain and punish a liquidation with a revoked sheet.
    #[arg(long, value_parser = crate::rpc_url)]
    rpc_url: Option<String>,
    /// Watcher polling interval in milliseconds.
    #[arg(long, default_value_t = 1000)]
    poll_ms: u64,
    /// Join channels that peers open (`vbank open`) once their contract is verified on chain: a
    /// genuine VirtualBank, still funding, between the peer (party 0) and this node (party 1).
    #[arg(long, requires = "rpc_url")]
    accept_channels: bool,
    /// With --accept-channels: the shortest lock period accepted, in seconds (the time this
    /// node has to punish a stale liquidation).
    #[arg(long, default_value_t = 3600, requires = "accept_channels")]
    min_lock: u64,
    /// With --accept-channels: the longest lock period accepted, in seconds (a peer's deposit
    /// frozen that long after its liquidation; default 30 days, at most 2^32 - 1).
    #[arg(long, default_value_t = DEFAULT_MAX_LOCK, requires = "accept_channels")]
    max_lock: u64,
    /// Pay this node's deposit into a channel it joined as party 1 as soon as sheet 0 is
    /// countersigned, if it is at most this amount ("1", "0.5eth", "1000wei").
    #[arg(long, allow_hyphen_values = true, requires = "rpc_url")]
    auto_deposit: Option<String>,
    /// Reveal the preimage of a lock to this node on the chain's registry this many seconds
    /// before the lock expires, if the peer has not countersigned the claim by then.
    #[arg(long, default_value_t = 300, requires = "rpc_url")]
    reveal_window: u64,
    /// Forward payments for others (an intermediary of the network), for the fees below; the
    /// node announces itself to its peers, who relay the announcement.
    #[arg(long)]
    forward: bool,
    /// With --forward: the fee per forwarded payment ("0.0001", "100wei").
    #[arg(long, allow_hyphen_values = true, default_value = "0wei", requires = "forward")]
    fee_base: String,
    /// With --forward: the fee per million of the forwarded amount.
    #[arg(long, default_value_t = 0, requires = "forward")]
    fee_ppm: u32,
}

#[derive(Args, Debug)]
pub(crate) struct WatchArgs {
    /// The party's store (not used by a running node: `vbank node --rpc-url` watches itself).
    #[arg(long)]
    store: PathBuf,
    /// The chain's JSON-RPC endpoint.
    #[arg(long, value_parser = crate::rpc_url)]
    rpc_url: String,
    /// Refuse to act unless the endpoint serves this chain id.
    #[arg(long)]
    chain_id: Option<u64>,
    /// Polling interval in milliseconds.
    #[arg(long, default_value_t = 1000)]
    poll_ms: u64,
    #[command(flatten)]
    key: KeyArgs,
}

/// The longest lock period a node accepts unless told otherwise: 30 days.
pub(crate) const DEFAULT_MAX_LOCK: u64 = 30 * 24 * 3600;
/// The longest lock period the contract takes (its `unlockTime` must not wrap).
pub(crate) const CONTRACT_MAX_LOCK: u64 = u32::MAX as u64;

/// Prints a line to stdout, ignoring a closed pipe (a node must not die because nobody reads).
pub(crate) fn say(line: String) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout(), "{line}");
}

/// What the chain driver did, as a line for the log.
fn describe_chain(e: &ChainEvent, json_mode: bool) -> String {
    let (id, kind, text) = match e {
        ChainEvent::Watch { channel, event } => return describe_watch(*channel, event, json_mode),
        ChainEvent::Revealed { channel, hash, report } => (
            *channel,
            "revealed",
            format!(
                "revealed the preimage of lock {hash} on the registry (tx {}, gas {})",
                report.hash, report.gas_used
            ),
        ),
        ChainEvent::PreimageFound { channel, hash } => {
            (*channel, "preimage_found", format!("the preimage of lock {hash} was revealed on chain: learnt"))
        }
        ChainEvent::Settled { channel, what, report } => {
            (*channel, "settled", format!("settled on chain: {what} (tx {}, gas {})", report.hash, report.gas_used))
        }
        ChainEvent::Unlocked { channel, locks, report } => (
            *channel,
            "unlocked",
            format!(
                "{locks} lock(s) of the liquidated sheet settled by unlock (tx {}, gas {})",
                report.hash, report.gas_used
            ),
        ),
        ChainEvent::Deposited { channel, amount, report } => (
            *channel,
            "deposited",
            format!("deposited {} (tx {}, gas {})", format_eth(*amount), report.hash, report.gas_used),
        ),
        ChainEvent::Note { channel, text } => (*channel, "note", text.clone()),
    };
    if json_mode {
        return json!({ "chain": id, "event": kind, "detail": text }).to_string();
    }
    format!("channel {id}: {text}")
}

fn describe_watch(id: Address, e: &WatchEvent, json_mode: bool) -> String {
    if json_mode {
        let (kind, detail) = match e {
            WatchEvent::Warning(w) => ("warning", json!(w)),
            WatchEvent::HonestLiquidation { nonce } => ("honest_liquidation", json!({ "nonce": nonce })),
            WatchEvent::Punished { nonce, report } => {
                ("punished", json!({ "nonce": nonce, "tx": report.hash, "gas_used": report.gas_used }))
            }
            WatchEvent::RpcError(e) => ("rpc_error", json!(e)),
            WatchEvent::State(s) => ("state", json!(s.to_string())),
            WatchEvent::Closed => ("closed", json!(null)),
        };
        return json!({ "watch": id, "event": kind, "detail": detail }).to_string();
    }
    match e {
        WatchEvent::Warning(w) => format!("watch {id}: warning: {w}"),
        WatchEvent::HonestLiquidation { nonce } => {
            format!("watch {id}: the peer liquidated with sheet {nonce}, its latest: nothing to punish")
        }
        WatchEvent::Punished { nonce, report } => format!(
            "watch {id}: the peer liquidated with revoked sheet {nonce}: punished, its frozen balance is ours (tx {}, gas {})",
            report.hash, report.gas_used
        ),
        WatchEvent::RpcError(e) => format!("watch {id}: RPC error, retrying: {e}"),
        WatchEvent::State(s) => format!("watch {id}: the contract is {s}"),
        WatchEvent::Closed => format!("watch {id}: the channel is closed"),
    }
}

fn describe_notice(n: &Notice, json_mode: bool) -> Option<String> {
    let text = match n {
        Notice::Connected(p) => format!("peer {p} connected"),
        Notice::Disconnected { peer, reason } if *peer == Address::ZERO => format!("refused a connection: {reason}"),
        Notice::Disconnected { peer, reason } => format!("peer {peer} disconnected: {reason}"),
        Notice::Admitted { channel, peer } => format!("channel {channel} opened by {peer}: verified on chain, joined"),
        Notice::Event { channel, event } => match event {
            Event::Opened => format!("channel {channel}: sheet 0 countersigned, the deposits may be paid"),
            Event::PaymentsAcked { count, amount, nonce, .. } => {
                format!(
                    "channel {channel}: {count} payment(s) of ours, {} in all, cleared in sheet {nonce}",
                    format_eth(*amount)
                )
            }
            Event::Received { amount, nonce } => {
                format!("channel {channel}: received {} in sheet {nonce}", format_eth(*amount))
            }
            Event::PaymentsCancelled { ids } => format!("channel {channel}: {} queued payment(s) cancelled", ids.len()),
            Event::CloseReady { nonce, .. } => {
                format!("channel {channel}: cooperative close at sheet {nonce} signed by both")
            }
            Event::Frozen { reason, .. } => format!("channel {channel}: frozen, no more updates: {reason}"),
            Event::Lock { lock, change, nonce } => format!(
                "channel {channel}: lock {} of {} to party {} (expiry {}) {} in sheet {nonce}",
                lock.hash,
                format_eth(lock.amount),
                lock.receiver,
                lock.expiry,
                match change {
                    vbank::LockChange::Added => "added".to_string(),
                    vbank::LockChange::Received => "received".to_string(),
                    vbank::LockChange::Fulfilled { preimage } => format!("fulfilled with preimage {preimage}"),
                    vbank::LockChange::Released => "released".to_string(),
                    vbank::LockChange::Expired => "expired".to_string(),
                }
            ),
            Event::PreimageLearned { hash, .. } => format!("channel {channel}: learnt the preimage of {hash}"),
            Event::LockMoveCancelled { mv } => format!("channel {channel}: lock move on {} cancelled", mv.lock().hash),
        },
        Notice::RefusedByPeer { peer, reason, .. } => format!("peer {peer} refused: {reason}"),
        Notice::Refused { peer, reason, .. } => format!("refused a frame from {peer}: {reason}"),
        Notice::Warning(w) => format!("warning: {w}"),
        Notice::Forwarded { incoming, outgoing, lock } => format!(
            "forwarded lock {} of {} from channel {incoming} to channel {outgoing} (same hash and expiry)",
            lock.hash,
            format_eth(lock.amount)
        ),
    };
    if json_mode {
        // Payments are too many to log one by one in JSON; the rest is useful to a supervisor.
        if matches!(n, Notice::Event { event: Event::PaymentsAcked { .. } | Event::Received { .. }, .. }) {
            return None;
        }
        return Some(json!({ "notice": text }).to_string());
    }
    Some(text)
}

/// Checks that a store can be opened at `path` before trying: its directory exists, and (unless
/// the command may create it) the store itself.
pub(crate) fn check_store(path: &std::path::Path, create: bool) -> Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(dir) = dir
        && !dir.is_dir()
    {
        bail!("no directory {} for the store {}: create it first", dir.display(), path.display());
    }
    if !create && !path.exists() {
        bail!(
            "no store at {}: check the path (a store is created by `vbank node`, `vbank open` or `vbank pay`)",
            path.display()
        );
    }
    Ok(())
}

/// Says why a store could not be opened, with a hint that matches the cause.
pub(crate) fn store_error(path: &std::path::Path, e: vbank::NodeError) -> anyhow::Error {
    let text = e.to_string();
    let hint = if text.contains("already open") || text.contains("lock") {
        format!(
            " (another process holds it: is a vbank node using it? Its control socket {} does not answer)",
            vbank::control_path(path).display()
        )
    } else {
        String::new()
    };
    anyhow::Error::new(e).context(format!("opening store {}{hint}", path.display()))
}

pub(crate) fn load_key(key: &KeyArgs) -> Result<PrivateKeySigner> {
    key.require()
}

pub(crate) async fn run(args: NodeArgs, json_mode: bool) -> Result<()> {
    let signer = load_key(&args.key)?;
    let auto_deposit_max = args.auto_deposit.as_deref().map(parse_amount).transpose().context("--auto-deposit")?;
    if args.max_lock > CONTRACT_MAX_LOCK || args.min_lock > args.max_lock {
        bail!(
            "--min-lock {} and --max-lock {} must satisfy min <= max <= {CONTRACT_MAX_LOCK}",
            args.min_lock,
            args.max_lock
        );
    }
    let fees = if args.forward {
        Some(vbank::ForwardFees { base: parse_amount(&args.fee_base).context("--fee-base")?, ppm: args.fee_ppm })
    } else {
        None
    };
    check_store(&args.store, true)?;
    // The node is the library's (vbank::Builder): the store, the chain (watching, punishing,
    // deposits, violations, locks, the graph), admission, forwarding. No event journal: nobody
    // reads one from the CLI's node; its log is this command's output.
    let mut builder = vbank::Builder::new(&args.store, signer.clone())
        .listen(args.listen.clone())
        .poll(Duration::from_millis(args.poll_ms))
        .reveal_window(args.reveal_window)
        .chain_id(args.chain_id)
        .journal(false);
    if let Some(url) = &args.rpc_url {
        builder = builder.chain(url.clone());
        if args.accept_channels {
            builder = builder.accept_channels(args.min_lock, args.max_lock);
        }
        if let Some(max) = auto_deposit_max {
            builder = builder.auto_deposit(max);
        }
    }
    if let Some(f) = fees {
        builder = builder.forward(f);
    }
    let node = builder.start().await.map_err(|e| match e {
        vbank::Error::Node(e @ vbank::NodeError::Store(_)) => store_error(&args.store, e),
        vbank::Error::Chain(e) => {
            anyhow::Error::new(e).context(format!("connecting to {}", args.rpc_url.as_deref().unwrap_or_default()))
        }
        e => anyhow::Error::new(e).context("starting the node"),
    })?;
    if let (Some(contract), Some(peer), Some(deposits)) = (args.channel, args.peer, &args.deposits) {
        let deposits = parse_pair(deposits).context("--deposits")?;
        let parties = match args.index {
            0 => [signer.address(), peer],
            1 => [peer, signer.address()],
            _ => bail!("--index must be 0 or 1"),
        };
        let chain_id = args.chain_id.or(node.chain_id()).unwrap_or(31337);
        let params = args.terms.params(chain_id, contract, parties, deposits);
        // Checked like an admitted channel (genuine code, exactly these parties and deposits on
        // this chain); without a chain nothing can be checked.
        let verified = node.add_channel(params).await.context("checking the channel on chain before adding it")?;
        if !verified {
            eprintln!("warning: channel {contract} added without --rpc-url: its contract is not verified");
        }
    }
    let uri = node.uri().context("the node's address")?;
    let ids: Vec<Address> = node.channels().await.iter().map(|c| c.channel).collect();
    let control_at = vbank::control_path(&args.store).display().to_string();
    let local = uri.socket_addr();
    // The URI peers dial: this node's key and where it listens (an unspecified address such as
    // 0.0.0.0 must be replaced by one the peers reach).
    let unspecified = uri.host().parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_unspecified());
    if json_mode {
        say(json!({ "listening": local, "uri": uri, "address": signer.address(), "channels": ids,
                    "control": control_at })
        .to_string());
    } else {
        say(format!(
            "listening on {local} as {} with {} channel(s); node URI {uri}; control socket {control_at}{}",
            signer.address(),
            ids.len(),
            if unspecified { "; peers dial this URI with the host they reach this machine at" } else { "" }
        ));
    }
    let mut notices = node.notices();
    let control = vbank::control_path(&args.store);
    node.serve_control(&control).await.context("the control socket")?;
    // Ctrl-C (or SIGTERM from a supervisor): stop the node and remove the control socket. The
    // store needs nothing: every state is durable before it is acted on.
    let stop = shutdown_signal();
    tokio::pin!(stop);
    let mut chain_events = node.chain_events();
    loop {
        let chain_event = async {
            match chain_events.as_mut() {
                Some(rx) => rx.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = &mut stop => {
                let _ = tokio::time::timeout(Duration::from_secs(5), node.stop()).await;
                let _ = std::fs::remove_file(&control);
                std::process::exit(0);
            }
            n = notices.recv() => match n {
                Ok(n) => {
                    if let Some(line) = describe_notice(&n, json_mode) {
                        say(line);
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(k)) => say(format!("({k} notices not shown)")),
                Err(_) => return Ok(()),
            },
            e = chain_event => match e {
                Ok(e) => say(describe_chain(&e, json_mode)),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(k)) => say(format!("({k} chain events not shown)")),
                Err(_) => chain_events = None,
            },
        }
    }
}

pub(crate) async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

pub(crate) async fn watch_cmd(args: WatchArgs, json_mode: bool) -> Result<()> {
    let signer = load_key(&args.key)?;
    check_store(&args.store, true)?;
    // The store opened for this command (no peers served), its channels watched by the library.
    let builder = vbank::Builder::new(&args.store, signer)
        .chain(args.rpc_url.clone())
        .chain_id(args.chain_id)
        .poll(Duration::from_millis(args.poll_ms))
        .journal(false);
    let node = builder.open().await.map_err(|e| match e {
        vbank::Error::Chain(e) => anyhow::Error::new(e).context(format!("connecting to {}", args.rpc_url)),
        vbank::Error::Node(e) => store_error(&args.store, e),
        e => anyhow::Error::new(e),
    })?;
    let ids = node.channels().await;
    if ids.is_empty() {
        bail!("no channels in {}", args.store.display());
    }
    if !json_mode {
        let chain_id = node.chain_id().unwrap_or_default();
        say(format!("watching {} channel(s) on chain {chain_id}; stops when all are closed", ids.len()));
    }
    let mut events = node.watch_channels().await?;
    while let Some(e) = events.recv().await {
        say(describe_chain(&e, json_mode));
    }
    Ok(())
}
