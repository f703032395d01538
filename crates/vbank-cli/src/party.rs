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
use vbank_node::{ChannelStatus, ControlClient, NodeUri, RedbStore, Reply, Request, Service, control_path};

use crate::{
    keys::KeyArgs,
    node::{load_key, open_service},
    progress::{countdown, unix_now, waiting},
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
    /// With --peer: the channel's lock period, token and salt.
    #[command(flatten)]
    terms: crate::open::TermsArgs,
    /// Seconds to wait for the peer before giving up (nothing is lost: the payments stay queued).
    #[arg(long, default_value_t = 10)]
    timeout: u64,
}

#[derive(Args, Debug)]
pub(crate) struct StatusArgs {
    /// The party's store.
    #[arg(long)]
    store: PathBuf,
    /// Also read each channel's contract: its state and which deposits are in.
    #[arg(long)]
    rpc_url: Option<String>,
    #[command(flatten)]
    key: KeyArgs,
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

    /// Carries out a request; a refusal becomes an error.
    pub(crate) async fn request(&mut self, r: Request) -> Result<Reply> {
        match self {
            Self::Node(c) => Ok(c.request(&r).await.context("the running node")?),
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
    let amount = parse_amount(&args.amount)?;
    if amount == 0 || args.count == 0 {
        bail!("--amount and --count must be more than zero");
    }
    let mut party = Party::attach(&args.store, || load_key(&args.key)).await?;
    let (me, channels) = party.status().await?;
    let known = channels.iter().find(|c| c.channel == args.channel);
    let opening = known.is_none_or(|c| c.phase == "opening");
    let params = match (known, args.peer, &args.deposits) {
        (Some(c), _, _) => c.params.clone(),
        (None, Some(peer), Some(deposits)) => {
            let deposits = parse_pair(deposits).context("--deposits")?;
            args.terms.params(args.chain_id, args.channel, [me, peer], deposits)
        }
        _ => bail!(
            "channel {} is not in {}; pass --peer and --deposits to create it",
            args.channel,
            args.store.display()
        ),
    };
    let peer = params.parties[1 - usize::from(params.parties[1] == me)];
    if let Some(addr) = &args.connect {
        party.connect(addr, peer).await?;
    }
    if opening {
        waiting(
            "opening the channel with the peer",
            party.request(Request::Open { params, timeout_secs: args.timeout }),
        )
        .await
        .context("opening")?;
    }
    let request = Request::Pay { channel: args.channel, amount, count: args.count.into(), timeout_secs: args.timeout };
    let paid = waiting("waiting for the peer's countersignatures", party.request(request)).await;
    let paid = match paid {
        Err(e) if args.connect.is_none() && format!("{e:#}").contains("is not connected") => {
            return Err(e.context("paying (pass --connect vbank://<key>@host:port, the URI the peer's node prints)"));
        }
        other => other.context("paying")?,
    };
    let Reply::Paid { count, amount: total, .. } = paid else {
        bail!("unexpected reply to a payment");
    };
    let ch = party.channel(args.channel).await?.context("channel")?;
    let b = ch.balances;
    if json_mode {
        println!(
            "{}",
            json!({ "channel": args.channel, "acknowledged": count, "amount": total.to_string(), "nonce": ch.nonce,
                    "balances": [b[0].to_string(), b[1].to_string()] })
        );
    } else {
        println!(
            "{count} payment(s) of {} acknowledged (sheet {}); balances: party 0 {}, party 1 {}",
            format_eth(amount),
            ch.nonce,
            format_eth(b[0]),
            format_eth(b[1])
        );
    }
    Ok(())
}

pub(crate) async fn status(args: StatusArgs, json_mode: bool) -> Result<()> {
    // The key, loaded once: needed for the chain, and for the store unless a node runs.
    let signer = args.rpc_url.as_ref().map(|_| load_key(&args.key)).transpose()?;
    let mut party = Party::attach(&args.store, || signer.clone().map_or_else(|| load_key(&args.key), Ok)).await?;
    let (address, uri, channels) = party.status_with_uri().await?;
    // On-chain, per channel: its state and deposits, or why it could not be read.
    let mut onchain = Vec::new();
    if let (Some(url), Some(signer)) = (&args.rpc_url, signer) {
        let chain = Chain::connect(url, signer, None).await.with_context(|| format!("connecting to {url}"))?;
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
                    "nonce": c.nonce,
                    "balances": [c.balances[0].to_string(), c.balances[1].to_string()],
                    "spendable": c.spendable.to_string(), "idle": c.idle, "queued": c.queued,
                    "onchain": chain_json(i),
                })
            })
            .collect();
        println!(
            "{}",
            json!({ "address": address, "uri": uri, "node_running": matches!(party, Party::Node(_)), "channels": rows })
        );
        return Ok(());
    }
    if let Some(uri) = &uri {
        println!("node {uri}");
    }
    if channels.is_empty() {
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
        println!(
            "channel {} ({}): party {} of 2, peer {peer}, sheet {}, balances {} / {}, spendable {}{}{chain}",
            c.channel,
            c.phase,
            c.me,
            c.nonce,
            format_eth(c.balances[0]),
            format_eth(c.balances[1]),
            format_eth(c.spendable),
            if c.idle { "" } else { ", an update is in flight" }
        );
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
    /// this party last reached it at); if the peer does not answer, the channel is liquidated
    /// with this party's latest sheet.
    #[arg(long)]
    connect: Option<NodeUri>,
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
    let signer = load_key(&args.key)?;
    let mut party = Party::attach(&args.store, || Ok(signer.clone())).await?;
    let chain = Chain::connect(&args.rpc_url, signer, args.chain_id)
        .await
        .with_context(|| format!("connecting to {}", args.rpc_url))?;
    let onchain = OnChain::new(chain, args.channel);
    let info = onchain.info().await.context("reading the channel")?;
    let (kind, report, mut detail) = match info.state {
        // Nothing off-chain is needed to cancel: the channel may not even be in the store.
        OnChainState::Funding => {
            let r = waiting("cancelling", onchain.cancel()).await.context("cancelling")?;
            ("cancel", r, "the channel never ran: every deposit made is refunded".to_string())
        }
        OnChainState::Running => {
            let peer = party.channel(args.channel).await?.context("the channel is not in the store")?.peer;
            // Cooperative when the peer's node can be reached: linked to the running node, at
            // --connect, or at the address remembered from an earlier link.
            if let Some(addr) = &args.connect
                && let Err(e) = party.connect(addr, peer).await
            {
                eprintln!("cannot reach the peer at {addr}: {e:#}");
            }
            // The node tries the cooperative close, then freezes the channel and chooses, under
            // its lock and from its stored state, what to settle with: nothing chosen here.
            let request = Request::Settle { channel: args.channel, cooperative: true, timeout_secs: args.timeout };
            let (settlement, cooperative_error) =
                match waiting("asking the peer to sign the close", party.request(request)).await? {
                    Reply::Settle { settlement, cooperative_error } => (settlement, cooperative_error),
                    other => bail!("unexpected reply {other:?}"),
                };
            match settlement {
                Settlement::Cooperative { nonce, balances, signatures } => {
                    let r = waiting("closing", onchain.cooperative_close(nonce, balances, &signatures))
                        .await
                        .context("submitting cooperativeClose")?;
                    let [b0, b1] = balances.map(format_eth);
                    ("cooperative", r, format!("both paid at once: party 0 {b0}, party 1 {b1}"))
                }
                Settlement::Liquidate(sheet) => {
                    if let Some(e) = cooperative_error {
                        eprintln!("cooperative close failed ({e}); liquidating with the latest sheet instead");
                    }
                    let r = waiting("liquidating", onchain.liquidate(&sheet)).await.context("liquidating")?;
                    let unlock = onchain.info().await?.liquidation.map_or(0, |l| l.unlock_time);
                    let d = format!(
                        "liquidated with sheet {}; the frozen balance unlocks at unix time {unlock}",
                        sheet.nonce
                    );
                    ("unilateral", r, d)
                }
                Settlement::Cancel => bail!(
                    "the channel runs on chain but this party holds no countersigned sheet: only the peer can close it"
                ),
            }
        }
        OnChainState::Liquidating if !args.wait => {
            bail!("the channel is being liquidated; pass --wait to wait for the lock period and withdraw")
        }
        OnChainState::Liquidating => {
            let r = withdraw_after_lock(&onchain, info.liquidation.map_or(0, |l| l.unlock_time)).await?;
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
