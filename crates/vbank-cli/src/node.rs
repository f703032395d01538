//! `vbank node` and `vbank watch`: a party's node serving its channels to their peers over TCP,
//! admitting channels that peers open, and watching the chain to punish stale liquidations.

use std::{path::PathBuf, sync::Arc, time::Duration};

use alloy::primitives::{Address, B256};
use alloy::signers::local::PrivateKeySigner;
use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::json;
use vbank_client::{Chain, OnChain, OnChainState, Punisher, WatchEvent, Watcher, WatcherHandle};
use vbank_core::{Amount, ChannelParams, Event, Funding, Settlement};
use vbank_node::{Admission, Node, Notice, RedbStore, Service};

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

/// Admission of channels opened by peers, checked against the chain `chain` reads: the
/// parameters the opening carries are checked locally first (this chain, the peer as party 0 and
/// this node as party 1, the lock period within bounds), then on chain with ONE call to the
/// canonical factory's `channelAddress`, which must give the channel's address, a code-exists
/// check and the channel's state (still Funding).
pub(crate) fn admission(chain: Chain, min_lock: u64, max_lock: u64) -> Admission {
    Arc::new(move |channel: Address, peer: Address, params: Option<ChannelParams>| {
        let chain = chain.clone();
        Box::pin(async move {
            let Some(params) = params else {
                return Err("the opening carries no channel parameters (a vbank before contract v2?)".to_string());
            };
            let me = chain.address();
            if params.contract != channel {
                return Err(format!("its parameters are for another channel, {}", params.contract));
            }
            if params.chain_id != chain.chain_id() {
                return Err(format!(
                    "it is on chain {}, this node follows chain {}",
                    params.chain_id,
                    chain.chain_id()
                ));
            }
            if params.parties != [peer, me] {
                return Err(format!(
                    "its parties are {} and {}, not {peer} and {me}",
                    params.parties[0], params.parties[1]
                ));
            }
            if params.lock_period < min_lock {
                return Err(format!(
                    "its lock period of {} s is shorter than this node's minimum of {min_lock} s",
                    params.lock_period
                ));
            }
            if params.lock_period > max_lock {
                return Err(format!(
                    "its lock period of {} s is longer than this node's maximum of {max_lock} s",
                    params.lock_period
                ));
            }
            let info = OnChain::new(chain.clone(), channel).verify_params(&params).await.map_err(|e| e.to_string())?;
            if info.state != OnChainState::Funding {
                return Err(format!("it is {}, not Funding", info.state));
            }
            Ok(params)
        })
    })
}

/// Watches channel `id` for the party of `service`, punishing with the waiver keys in its store.
pub(crate) fn watch(service: &Service<RedbStore>, chain: &Chain, id: Address, poll: Duration) -> WatcherHandle {
    let svc = service.clone();
    // The watcher asks the node for a punishment from its (multi-threaded) runtime.
    let punisher: Punisher = Arc::new(move |nonce, waiver| {
        tokio::task::block_in_place(|| svc.node().blocking_lock().channel(id).and_then(|c| c.punishment(nonce, waiver)))
    });
    Watcher::new(OnChain::new(chain.clone(), id), punisher, poll).spawn()
}

/// Forwards a watcher's events to stdout, and the contract's state to the node (payments wait
/// for both deposits; a channel that ended on chain is frozen).
fn log_watch(
    service: &Service<RedbStore>,
    id: Address,
    mut handle: WatcherHandle,
    json_mode: bool,
) -> tokio::task::JoinHandle<()> {
    let service = service.clone();
    tokio::spawn(async move {
        while let Some(e) = handle.next().await {
            if let WatchEvent::State(state) = e
                && let Err(err) = service.set_funding(id, funding_of(state)).await
            {
                say(format!("watch {id}: cannot record the contract's state {state}: {err}"));
            }
            say(describe_watch(id, &e, json_mode));
        }
    })
}

/// What a contract's state means for payments on its channel.
pub(crate) fn funding_of(state: OnChainState) -> Funding {
    match state {
        OnChainState::Funding => Funding::Pending,
        OnChainState::Running => Funding::Running,
        OnChainState::Liquidating | OnChainState::Settling | OnChainState::Closed => Funding::Ended,
    }
}

/// Settles on chain a channel the node froze because the peer broke the protocol (DESIGN §2
/// rule 5): the node chose the sheet under its lock; this only submits it.
async fn settle_violation(chain: Chain, id: Address, settlement: Settlement) -> String {
    let onchain = OnChain::new(chain, id);
    let result = match settlement {
        Settlement::Liquidate(sheet) => onchain.liquidate(&sheet).await.map(|r| (format!("sheet {}", sheet.nonce), r)),
        Settlement::Cooperative { nonce, balances, signatures } => {
            onchain.cooperative_close(nonce, balances, &signatures).await.map(|r| (format!("the close at {nonce}"), r))
        }
        Settlement::Cancel => onchain.cancel().await.map(|r| ("a cancel".to_string(), r)),
    };
    match result {
        Ok((what, r)) => format!("channel {id}: settled on chain with {what} (tx {}, gas {})", r.hash, r.gas_used),
        Err(e) => format!("channel {id}: settling on chain failed: {e}; run `vbank close`"),
    }
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
                    vbank_core::LockChange::Added => "added".to_string(),
                    vbank_core::LockChange::Received => "received".to_string(),
                    vbank_core::LockChange::Fulfilled { preimage } => format!("fulfilled with preimage {preimage}"),
                    vbank_core::LockChange::Released => "released".to_string(),
                    vbank_core::LockChange::Expired => "expired".to_string(),
                }
            ),
            Event::PreimageLearned { hash, .. } => format!("channel {channel}: learnt the preimage of {hash}"),
            Event::LockMoveCancelled { mv } => format!("channel {channel}: lock move on {} cancelled", mv.lock().hash),
        },
        Notice::RefusedByPeer { peer, reason, .. } => format!("peer {peer} refused: {reason}"),
        Notice::Refused { peer, reason, .. } => format!("refused a frame from {peer}: {reason}"),
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

/// Pays this party's deposit into `id` if it is due and at most `max`.
async fn auto_deposit(chain: Chain, params: ChannelParams, max: Amount) -> String {
    let id = params.contract;
    let onchain = OnChain::new(chain.clone(), id);
    // The contract must be genuine and hold exactly the agreed parameters before any deposit.
    let info = match onchain.verify_params(&params).await {
        Ok(i) => i,
        Err(e) => return format!("channel {id}: not depositing: {e}"),
    };
    let Some(i) = info.index_of(chain.address()) else { return format!("channel {id}: not a party") };
    if info.state != OnChainState::Funding || info.deposited[i] {
        return format!("channel {id}: no deposit due");
    }
    if info.amounts[i] > max {
        return format!(
            "channel {id}: the deposit of {} is over --auto-deposit {}: pay it with `vbank deposit`",
            format_eth(info.amounts[i]),
            format_eth(max)
        );
    }
    match onchain.deposit_agreed(&params).await {
        Ok(r) => format!("channel {id}: deposited {} (tx {}, gas {})", format_eth(info.amounts[i]), r.hash, r.gas_used),
        Err(e) => format!("channel {id}: deposit failed: {e}"),
    }
}

/// The node of `signer`'s party on its store, ready to link to peers.
pub(crate) fn open_service(
    store: &std::path::Path,
    signer: PrivateKeySigner,
    admission: Option<Admission>,
    follow_chain: bool,
) -> Result<Service<RedbStore>> {
    open_service_with(store, signer, admission, follow_chain, vbank_node::Limits::default())
}

/// As [`open_service`], with the given limits (a command's --timeout bounds its handshakes).
pub(crate) fn open_service_with(
    store: &std::path::Path,
    signer: PrivateKeySigner,
    admission: Option<Admission>,
    follow_chain: bool,
    limits: vbank_node::Limits,
) -> Result<Service<RedbStore>> {
    check_store(store, true)?;
    let db = RedbStore::open(store).map_err(|e| store_error(store, e))?;
    let node = Node::open(signer.clone(), db).context("loading channels")?;
    // A node that watches the chain gates payments on it (both deposits in, not ended).
    let node = if follow_chain { node.follow_chain() } else { node };
    Ok(Service::with_limits(node, signer, admission, limits))
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
pub(crate) fn store_error(path: &std::path::Path, e: vbank_node::Error) -> anyhow::Error {
    let text = e.to_string();
    let hint = if text.contains("already open") || text.contains("lock") {
        format!(
            " (another process holds it: is a vbank node using it? Its control socket {} does not answer)",
            vbank_node::control_path(path).display()
        )
    } else {
        String::new()
    };
    anyhow::Error::new(e).context(format!("opening store {}{hint}", path.display()))
}

/// Reads a channel's funding from the chain, for a payment that meets a channel not yet seen
/// funded (the watcher's next poll may be a second away).
pub(crate) fn funding_check(chain: Chain) -> vbank_node::FundingCheck {
    Arc::new(move |id: Address| {
        let onchain = OnChain::new(chain.clone(), id);
        Box::pin(async move { Some(funding_of(onchain.state().await.ok()?)) })
    })
}

pub(crate) fn load_key(key: &KeyArgs) -> Result<PrivateKeySigner> {
    key.require()
}

pub(crate) async fn run(args: NodeArgs, json_mode: bool) -> Result<()> {
    let signer = load_key(&args.key)?;
    let chain = match &args.rpc_url {
        Some(url) => Some(
            Chain::connect(url, signer.clone(), args.chain_id).await.with_context(|| format!("connecting to {url}"))?,
        ),
        None => None,
    };
    let auto_deposit_max = args.auto_deposit.as_deref().map(parse_amount).transpose().context("--auto-deposit")?;
    let admit = match (&chain, args.accept_channels) {
        (Some(c), true) => Some(admission(c.clone(), args.min_lock, args.max_lock)),
        _ => None,
    };
    if args.max_lock > CONTRACT_MAX_LOCK || args.min_lock > args.max_lock {
        bail!(
            "--min-lock {} and --max-lock {} must satisfy min <= max <= {CONTRACT_MAX_LOCK}",
            args.min_lock,
            args.max_lock
        );
    }
    let service = open_service(&args.store, signer.clone(), admit, chain.is_some())?;
    if let Some(c) = &chain {
        service.set_funding_check(funding_check(c.clone()));
    }
    // What a peer opening a channel learns before it spends gas (`vbank open` asks).
    service.set_terms(vbank_node::Terms {
        version: vbank_node::Terms::VERSION,
        accepts_channels: args.accept_channels && chain.is_some(),
        min_lock: args.min_lock,
        max_lock: args.max_lock,
        auto_deposit: auto_deposit_max,
    });
    if let (Some(contract), Some(peer), Some(deposits)) = (args.channel, args.peer, &args.deposits) {
        let mut node = service.node().lock().await;
        if node.channel(contract).is_none() {
            let deposits = parse_pair(deposits).context("--deposits")?;
            let parties = match args.index {
                0 => [signer.address(), peer],
                1 => [peer, signer.address()],
                _ => bail!("--index must be 0 or 1"),
            };
            let chain_id = args.chain_id.or(chain.as_ref().map(Chain::chain_id)).unwrap_or(31337);
            let mut params = args.terms.params(chain_id, contract, parties, deposits);
            // With a chain, the lock period and token are the contract's own (its address commits
            // to them and to the salt, checked below).
            if let Some(c) = &chain {
                let info = OnChain::new(c.clone(), contract).info().await.context("reading the channel")?;
                params.lock_period = info.lock_period;
                params.token = info.token;
            }
            // A channel added by hand is checked like an admitted one: genuine code, exactly
            // these parties and deposits on this chain. Without a chain nothing can be checked
            // (off-chain use: nothing is deposited by this node then).
            match &chain {
                Some(c) => {
                    OnChain::new(c.clone(), contract)
                        .verify_params(&params)
                        .await
                        .context("checking the channel on chain before adding it")?;
                }
                None => eprintln!("warning: channel {contract} added without --rpc-url: its contract is not verified"),
            }
            let seed: B256 = PrivateKeySigner::random().to_bytes();
            node.add_channel(params, seed).context("adding the channel")?;
        }
    }
    let listener =
        tokio::net::TcpListener::bind(&args.listen).await.with_context(|| format!("listening on {}", args.listen))?;
    let local = listener.local_addr()?;
    let ids = service.node().lock().await.channel_ids();
    let control_at = vbank_node::control_path(&args.store).display().to_string();
    // The URI peers dial: this node's key and where it listens (an unspecified address such as
    // 0.0.0.0 must be replaced by one the peers reach).
    let uri = service.uri(local);
    if json_mode {
        say(json!({ "listening": local.to_string(), "uri": uri, "address": signer.address(), "channels": ids,
                    "control": control_at })
        .to_string());
    } else {
        say(format!(
            "listening on {local} as {} with {} channel(s); node URI {uri}; control socket {control_at}{}",
            signer.address(),
            ids.len(),
            if local.ip().is_unspecified() {
                "; peers dial this URI with the host they reach this machine at"
            } else {
                ""
            }
        ));
    }
    let mut notices = service.subscribe();
    service.listen(listener);
    // Back to the peers this node reached before (their addresses are in the store).
    service.relink().await.context("reading the peers' addresses")?;
    let control = vbank_node::control_path(&args.store);
    service.serve_control(&control).await.context("the control socket")?;
    // Ctrl-C (or SIGTERM from a supervisor): stop serving and remove the control socket. The
    // store needs nothing: every state is durable before it is acted on.
    {
        let service = service.clone();
        let control = control.clone();
        tokio::spawn(async move {
            shutdown_signal().await;
            service.shutdown().await;
            let _ = std::fs::remove_file(&control);
            std::process::exit(0);
        });
    }
    let poll = Duration::from_millis(args.poll_ms);
    // Every channel is watched from the start, or from when it is admitted or opened here;
    // channels this node joined as party 1 get its deposit (--auto-deposit) once they are open
    // (party 0 deposits with `vbank open`). Missed notices (a burst over the buffer) are made up
    // by looking at every channel again.
    let mut watched = std::collections::HashSet::new();
    let mut deposit_tried = std::collections::HashSet::new();
    let mut sweep = true;
    loop {
        if sweep && let Some(chain) = &chain {
            let node = service.node().lock().await;
            for id in node.channel_ids() {
                if watched.insert(id) {
                    log_watch(&service, id, watch(&service, chain, id, poll), json_mode);
                }
                let joined_open =
                    node.channel(id).is_some_and(|c| c.me() == 1 && *c.phase() != vbank_core::Phase::Opening);
                if let Some(max) = auto_deposit_max
                    && joined_open
                    && deposit_tried.insert(id)
                    && let Some(params) = node.channel(id).map(|c| c.params().clone())
                {
                    let chain = chain.clone();
                    tokio::spawn(async move { say(auto_deposit(chain, params, max).await) });
                }
            }
        }
        let n = match notices.recv().await {
            Ok(n) => n,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(k)) => {
                say(format!("({k} notices not shown)"));
                sweep = true;
                continue;
            }
            Err(_) => return Ok(()),
        };
        if let Some(line) = describe_notice(&n, json_mode) {
            say(line);
        }
        // DESIGN §2 rule 5: the node froze the channel and chose the sheet; settle it on chain.
        if let (Some(chain), Notice::Event { channel, event: Event::Frozen { settlement, violation: true, .. } }) =
            (&chain, &n)
        {
            let (chain, id, settlement) = (chain.clone(), *channel, settlement.clone());
            tokio::spawn(async move { say(settle_violation(chain, id, settlement).await) });
        }
        sweep = matches!(n, Notice::Admitted { .. } | Notice::Event { event: Event::Opened, .. });
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
    let chain = Chain::connect(&args.rpc_url, signer.clone(), args.chain_id)
        .await
        .with_context(|| format!("connecting to {}", args.rpc_url))?;
    let service = open_service(&args.store, signer, None, true)?;
    let ids = service.node().lock().await.channel_ids();
    if ids.is_empty() {
        bail!("no channels in {}", args.store.display());
    }
    if !json_mode {
        say(format!("watching {} channel(s) on chain {}; stops when all are closed", ids.len(), chain.chain_id()));
    }
    let poll = Duration::from_millis(args.poll_ms);
    let tasks: Vec<_> =
        ids.iter().map(|id| log_watch(&service, *id, watch(&service, &chain, *id, poll), json_mode)).collect();
    for t in tasks {
        t.await.context("a watcher task failed")?;
    }
    Ok(())
}
