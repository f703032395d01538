//! `vbank pay` and `vbank status`: a party's side of a channel kept in its store, talking to the
//! peer's `vbank node` for the length of one command.

use std::{path::PathBuf, time::Duration};

use alloy::{primitives::Address, signers::local::PrivateKeySigner};
use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::json;
use vbank_client::{Chain, OnChain, OnChainState, TxReport};
use vbank_core::{ChannelParams, Phase};

use crate::{
    keys::KeyArgs,
    node::{load_key, open_node, open_service},
    progress::{countdown, unix_now, waiting},
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

pub(crate) async fn pay(args: PayArgs, json_mode: bool) -> Result<()> {
    let amount = parse_amount(&args.amount)?;
    if amount == 0 || args.count == 0 {
        bail!("--amount and --count must be more than zero");
    }
    let service = open_service(&args.store, &args.key, None)?;
    let me = service.address();
    let known = service.node().lock().await.channel(args.channel).map(|c| (c.peer_address(), c.params().clone()));
    let (peer, params) = match (known, args.peer, &args.deposits) {
        (Some(k), _, _) => k,
        (None, Some(peer), Some(deposits)) => {
            let deposits = parse_pair(deposits).context("--deposits")?;
            (peer, ChannelParams { chain_id: args.chain_id, contract: args.channel, parties: [me, peer], deposits })
        }
        _ => bail!(
            "channel {} is not in {}; pass --peer and --deposits to create it",
            args.channel,
            args.store.display()
        ),
    };
    let deadline = Duration::from_secs(args.timeout);
    service.connect(&args.connect, peer).await?;
    let opening = service.node().lock().await.channel(args.channel).is_none_or(|c| *c.phase() == Phase::Opening);
    if opening {
        let seed = PrivateKeySigner::random().to_bytes();
        waiting("opening the channel with the peer", service.open(params, seed, deadline)).await.context("opening")?;
    }
    let paid = waiting(
        "waiting for the peer's countersignatures",
        service.pay(args.channel, amount, args.count.into(), deadline),
    )
    .await
    .context("paying")?;
    let node = service.node().lock().await;
    let ch = node.channel(args.channel).context("channel")?;
    let b = ch.balances();
    if json_mode {
        println!(
            "{}",
            json!({ "channel": args.channel, "acknowledged": paid.count, "amount": paid.amount.to_string(), "nonce": ch.nonce(),
                    "balances": [b[0].to_string(), b[1].to_string()] })
        );
    } else {
        println!(
            "{} payment(s) of {} acknowledged (sheet {}); balances: party 0 {}, party 1 {}",
            paid.count,
            format_eth(amount),
            ch.nonce(),
            format_eth(b[0]),
            format_eth(b[1])
        );
    }
    Ok(())
}

pub(crate) fn status(args: StatusArgs, json_mode: bool) -> Result<()> {
    let node = open_node(&args.store, &args.key)?;
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
    /// After a liquidation, wait for the lock period to end and withdraw (a countdown is shown).
    #[arg(long)]
    wait: bool,
    #[command(flatten)]
    key: KeyArgs,
}

pub(crate) async fn close(args: CloseArgs, json_mode: bool) -> Result<()> {
    let service = open_service(&args.store, &args.key, None)?;
    let signer = load_key(&args.key)?;
    let chain = Chain::connect(&args.rpc_url, signer, args.chain_id)
        .await
        .with_context(|| format!("connecting to {}", args.rpc_url))?;
    let onchain = OnChain::new(chain, args.channel);
    let info = onchain.info().await.context("reading the channel")?;
    let (peer, latest) = {
        let node = service.node().lock().await;
        let ch = node.channel(args.channel).context("the channel is not in the store")?;
        (ch.peer_address(), ch.latest().cloned())
    };
    let deadline = Duration::from_secs(args.timeout);
    let (kind, report, mut detail) = match info.state {
        OnChainState::Funding => {
            let r = waiting("cancelling", onchain.cancel()).await.context("cancelling")?;
            ("cancel", r, "the channel never ran: every deposit made is refunded".to_string())
        }
        OnChainState::Running => {
            let coop = match &args.connect {
                Some(c) => {
                    let attempt = async {
                        service.connect(c, peer).await?;
                        service.close(args.channel, deadline).await
                    };
                    match waiting("asking the peer to sign the close", attempt).await {
                        Ok(sigs) => Some(sigs),
                        Err(e) => {
                            eprintln!("cooperative close failed ({e}); liquidating with the latest sheet instead");
                            None
                        }
                    }
                }
                None => None,
            };
            match coop {
                Some(c) => {
                    let r = waiting("closing", onchain.cooperative_close(c.nonce, c.balances, &c.signatures))
                        .await
                        .context("submitting cooperativeClose")?;
                    let [b0, b1] = c.balances.map(format_eth);
                    ("cooperative", r, format!("both paid at once: party 0 {b0}, party 1 {b1}"))
                }
                None => {
                    let sheet = latest.context("no countersigned sheet to liquidate with")?;
                    let r = waiting("liquidating", onchain.liquidate(&sheet)).await.context("liquidating")?;
                    let unlock = onchain.info().await?.liquidation.map_or(0, |l| l.unlock_time);
                    let d = format!(
                        "liquidated with sheet {}; the frozen balance unlocks at unix time {unlock}",
                        sheet.nonce
                    );
                    ("unilateral", r, d)
                }
            }
        }
        OnChainState::Liquidating if !args.wait => {
            bail!("the channel is being liquidated; pass --wait to wait for the lock period and withdraw")
        }
        OnChainState::Liquidating => {
            let r = withdraw_after_lock(&onchain, info.liquidation.map_or(0, |l| l.unlock_time)).await?;
            ("unilateral", r, "the lock period ended and the frozen balance was paid out".into())
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
