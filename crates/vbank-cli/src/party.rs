//! `vbank pay` and `vbank status`: a party's side of a channel kept in its store, talking to the
//! peer's `vbank node` for the length of one command.

use std::{path::PathBuf, time::Duration};

use alloy::{primitives::Address, signers::local::PrivateKeySigner};
use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::json;
use vbank_core::{Event, Phase, Severity};
use vbank_node::{Error, Frame, Node, RedbStore, handshake, read_frame, write_frame};

use crate::{
    keys::KeyArgs,
    units::{format_eth, parse_amount, parse_pair},
};

#[derive(Args, Debug)]
pub(crate) struct PayArgs {
    /// This party's store (a redb file; created if missing).
    #[arg(long)]
    store: PathBuf,
    /// The peer's node, host:port.
    #[arg(long)]
    connect: String,
    /// The channel's contract address.
    #[arg(long)]
    channel: Address,
    /// Amount per payment: "0.01", "5gwei", "1000wei".
    #[arg(long)]
    amount: String,
    /// How many payments (coalesced into as few state updates as the protocol allows).
    #[arg(long, default_value_t = 1)]
    count: u32,
    #[command(flatten)]
    key: KeyArgs,
    /// Create the channel in the store if missing: the peer's address.
    #[arg(long, requires = "deposits")]
    peer: Option<Address>,
    /// With --peer: the agreed deposits of party 0 and party 1, "1,2".
    #[arg(long)]
    deposits: Option<String>,
    /// With --peer: the chain id.
    #[arg(long, default_value_t = 31337)]
    chain_id: u64,
    /// Seconds to wait for the peer before giving up (nothing is lost: the payments stay queued).
    #[arg(long, default_value_t = 10)]
    timeout: u64,
}

#[derive(Args, Debug)]
pub(crate) struct StatusArgs {
    /// The party's store.
    #[arg(long)]
    store: PathBuf,
    #[command(flatten)]
    key: KeyArgs,
}

/// Connects to the node at `addr` and authenticates it as the peer of channel `id`, within `deadline`.
async fn connect_peer(
    node: &Node<RedbStore>,
    signer: &PrivateKeySigner,
    id: Address,
    addr: &str,
    deadline: Duration,
) -> Result<(tokio::net::TcpStream, Address)> {
    let peer = node.channel(id).context("channel")?.peer_address();
    let mut s = tokio::time::timeout(deadline, tokio::net::TcpStream::connect(addr))
        .await
        .with_context(|| format!("no answer from {addr} within {} s", deadline.as_secs()))?
        .with_context(|| format!("cannot reach the peer's node at {addr}"))?;
    let proven = tokio::time::timeout(deadline, handshake(&mut s, signer, |p| p == peer))
        .await
        .context("the peer's handshake timed out")??;
    Ok((s, proven))
}

/// Handles a frame from the peer: the reply and events; a duplicate (severity `Ignore`) gives
/// neither; a refusal by the peer or a message this party refuses ends the command.
fn answer(node: &mut Node<RedbStore>, peer: Address, f: &Frame) -> Result<(Option<Frame>, Vec<Event>)> {
    if let Frame::Refused { reason, .. } = f {
        bail!("the peer refused: {reason}");
    }
    match node.handle(peer, f) {
        Ok(r) => Ok(r),
        Err(Error::Protocol(e)) if e.severity() == Severity::Ignore => Ok((None, Vec::new())),
        Err(e) => Err(e).context("the peer sent a message this party refuses"),
    }
}

fn open_node(store: &std::path::Path, key: &KeyArgs) -> Result<(Node<RedbStore>, PrivateKeySigner)> {
    let signer = key.load()?.context("a signing key is needed: $VBANK_PRIVATE_KEY, --key-file or --keystore")?;
    let store =
        RedbStore::open(store).with_context(|| format!("opening store {} (is a node using it?)", store.display()))?;
    Ok((Node::open(signer.clone(), store).context("loading channels")?, signer))
}

pub(crate) async fn pay(args: PayArgs, json_mode: bool) -> Result<()> {
    let amount = parse_amount(&args.amount)?;
    if amount == 0 || args.count == 0 {
        bail!("--amount and --count must be more than zero");
    }
    let (mut node, signer) = open_node(&args.store, &args.key)?;
    if node.channel(args.channel).is_none() {
        let (Some(peer), Some(deposits)) = (args.peer, &args.deposits) else {
            bail!(
                "channel {} is not in {}; pass --peer and --deposits to create it",
                args.channel,
                args.store.display()
            );
        };
        let params = vbank_core::ChannelParams {
            chain_id: args.chain_id,
            contract: args.channel,
            parties: [node.address(), peer],
            deposits: parse_pair(deposits).context("--deposits")?,
        };
        let seed = PrivateKeySigner::random().to_bytes();
        node.add_channel(params, seed)?;
    }
    let deadline = Duration::from_secs(args.timeout);
    let (mut s, proven) = connect_peer(&node, &signer, args.channel, &args.connect, deadline).await?;
    let mut out: Vec<Frame> = node.on_connect(proven)?;
    // payments are queued once the channel is open (the opening may happen in this very command)
    let mut queued = false;
    let mut acked = 0u64;
    let mut acked_wei = 0u128;
    loop {
        let ch = node.channel(args.channel).context("channel")?;
        if *ch.phase() == Phase::Open && !queued {
            queued = true;
            for _ in 0..args.count {
                let (_, f) = node.pay(args.channel, amount)?;
                out.extend(f);
            }
        }
        out.extend(node.propose(args.channel)?);
        for f in out.drain(..) {
            write_frame(&mut s, &f).await?;
        }
        let ch = node.channel(args.channel).context("channel")?;
        if queued && ch.is_idle() && ch.queued() == 0 {
            break;
        }
        let f = tokio::time::timeout(deadline, read_frame(&mut s))
            .await
            .context("the peer stopped answering; the payments stay queued in the store")??;
        let (reply, events) = answer(&mut node, proven, &f)?;
        out.extend(reply);
        for e in events {
            if let Event::PaymentsAcked { count, amount, .. } = e {
                acked += count;
                acked_wei += amount;
            }
        }
    }
    let ch = node.channel(args.channel).context("channel")?;
    let b = ch.balances();
    if json_mode {
        println!(
            "{}",
            json!({ "channel": args.channel, "acknowledged": acked, "amount": acked_wei.to_string(), "nonce": ch.nonce(),
                    "balances": [b[0].to_string(), b[1].to_string()] })
        );
    } else {
        println!(
            "{acked} payment(s) of {} acknowledged (sheet {}); balances: party 0 {}, party 1 {}",
            format_eth(amount),
            ch.nonce(),
            format_eth(b[0]),
            format_eth(b[1])
        );
    }
    Ok(())
}

pub(crate) fn status(args: StatusArgs, json_mode: bool) -> Result<()> {
    let (node, _) = open_node(&args.store, &args.key)?;
    let mut rows = Vec::new();
    for id in node.channel_ids() {
        let ch = node.channel(id).context("channel")?;
        let b = ch.balances();
        let phase = match ch.phase() {
            Phase::Opening => "opening",
            Phase::Open => "open",
            Phase::Closing { .. } => "closing",
        };
        rows.push(json!({
            "channel": id, "me": ch.me(), "peer": ch.peer_address(), "phase": phase,
            "nonce": ch.nonce(), "balances": [b[0].to_string(), b[1].to_string()],
            "spendable": ch.spendable().to_string(), "idle": ch.is_idle(), "queued": ch.queued(),
        }));
        if !json_mode {
            println!(
                "channel {id} ({phase}): party {} of 2, sheet {}, balances {} / {}, spendable {}{}",
                ch.me(),
                ch.nonce(),
                format_eth(b[0]),
                format_eth(b[1]),
                format_eth(ch.spendable()),
                if ch.is_idle() { "" } else { ", an update is in flight" }
            );
        }
    }
    if json_mode {
        println!("{}", json!({ "address": node.address(), "channels": rows }));
    } else if rows.is_empty() {
        println!("no channels in {}", args.store.display());
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
    /// The peer's node, host:port, for a cooperative close; without it, or if the peer does not
    /// answer, the channel is liquidated with this party's latest sheet.
    #[arg(long)]
    connect: Option<String>,
    /// Seconds to wait for the peer.
    #[arg(long, default_value_t = 10)]
    timeout: u64,
    /// The chain's JSON-RPC endpoint.
    #[arg(long)]
    rpc_url: String,
    /// Refuse to act unless the node reports this chain id.
    #[arg(long)]
    chain_id: Option<u64>,
    #[command(flatten)]
    key: KeyArgs,
}

/// Asks the peer's node for its `Close` signature; returns both signatures.
async fn cooperative(
    node: &mut Node<RedbStore>,
    signer: &PrivateKeySigner,
    id: Address,
    connect: &str,
    deadline: Duration,
) -> Result<(u64, [u128; 2], [vbank_core::Sig; 2])> {
    let (mut s, proven) = connect_peer(node, signer, id, connect, deadline).await?;
    let mut out = node.on_connect(proven)?;
    let mut asked = false;
    loop {
        let ch = node.channel(id).context("channel")?;
        if let Some(sigs) = ch.close_signatures() {
            return Ok(sigs);
        }
        if !asked && ch.is_idle() && matches!(ch.phase(), Phase::Open) {
            asked = true;
            out.push(node.close(id)?);
        }
        for f in out.drain(..) {
            write_frame(&mut s, &f).await?;
        }
        let f = tokio::time::timeout(deadline, read_frame(&mut s)).await.context("the peer stopped answering")??;
        out.extend(answer(node, proven, &f)?.0);
    }
}

pub(crate) async fn close(args: CloseArgs, json_mode: bool) -> Result<()> {
    let (mut node, signer) = open_node(&args.store, &args.key)?;
    let chain = vbank_client::Chain::connect(&args.rpc_url, signer.clone(), args.chain_id)
        .await
        .with_context(|| format!("connecting to {}", args.rpc_url))?;
    let onchain = vbank_client::OnChain::new(chain, args.channel);
    let deadline = Duration::from_secs(args.timeout);
    let coop = match &args.connect {
        Some(c) => match cooperative(&mut node, &signer, args.channel, c, deadline).await {
            Ok(sigs) => Some(sigs),
            Err(e) => {
                eprintln!("cooperative close failed ({e:#}); liquidating with the latest sheet instead");
                None
            }
        },
        None => None,
    };
    let (kind, report, detail) = match coop {
        Some((nonce, balances, sigs)) => {
            let r = onchain.cooperative_close(nonce, balances, &sigs).await.context("submitting cooperativeClose")?;
            (
                "cooperative",
                r,
                format!("both paid at once: party 0 {}, party 1 {}", format_eth(balances[0]), format_eth(balances[1])),
            )
        }
        None => {
            let sheet =
                node.channel(args.channel).context("channel")?.latest().context("no countersigned sheet")?.clone();
            let r = onchain.liquidate(&sheet).await.context("liquidating")?;
            let info = onchain.info().await?;
            let unlock = info.liquidation.map_or(0, |l| l.unlock_time);
            ("unilateral", r, format!("liquidated with sheet {}; withdraw after unix time {unlock}", sheet.nonce))
        }
    };
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

#[derive(Args, Debug)]
pub(crate) struct DepositArgs {
    /// The channel's contract address.
    #[arg(long)]
    channel: Address,
    /// The chain's JSON-RPC endpoint.
    #[arg(long)]
    rpc_url: String,
    #[command(flatten)]
    key: KeyArgs,
}

/// Pays this party's agreed deposit.
pub(crate) async fn deposit(args: DepositArgs, json_mode: bool) -> Result<()> {
    let signer = args.key.load()?.context("a signing key is needed")?;
    let chain = vbank_client::Chain::connect(&args.rpc_url, signer, None).await?;
    let r = vbank_client::OnChain::new(chain, args.channel).deposit().await.context("depositing")?;
    if json_mode {
        println!("{}", json!({ "channel": args.channel, "tx": r.hash, "gas_used": r.gas_used }));
    } else {
        println!("deposited into {} (tx {}, gas {})", args.channel, r.hash, r.gas_used);
    }
    Ok(())
}
