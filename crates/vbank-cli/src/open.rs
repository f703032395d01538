//! `vbank open`: party 0's whole opening in one command — deploy the virtual bank, agree sheet 0
//! with the peer's node, pay this party's deposit, and wait for the peer's.

use std::{path::PathBuf, time::Duration};

use alloy::{primitives::Address, signers::local::PrivateKeySigner};
use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::json;
use vbank_client::{Chain, OnChain, OnChainState, deploy};
use vbank_core::ChannelParams;

use vbank_node::{NodeUri, Reply, Request, Terms};

use crate::{
    keys::KeyArgs,
    party::Party,
    progress::waiting,
    units::{format_eth, parse_pair},
};

#[derive(Args, Debug)]
pub(crate) struct OpenArgs {
    /// This party's store (a redb file; created if missing).
    #[arg(long)]
    store: PathBuf,
    /// The peer's node URI, vbank://<key>@host:port, as its `vbank node --accept-channels`
    /// prints it; the peer (party 1) is the party of that key.
    #[arg(long)]
    connect: NodeUri,
    /// The peer's address (party 1), checked against the URI's key (default: the URI's).
    #[arg(long)]
    peer: Option<Address>,
    /// The deposits of this party (party 0) and the peer, e.g. "1,1" (ETH) or "5gwei,0".
    #[arg(long, allow_hyphen_values = true)]
    deposits: String,
    /// Seconds a liquidating party's balance stays frozen (each side's time to punish a cheat).
    #[arg(long, default_value_t = 86_400)]
    lock: u64,
    /// Use this already deployed VirtualBank (verified on chain) instead of deploying one.
    #[arg(long)]
    channel: Option<Address>,
    /// The chain's JSON-RPC endpoint.
    #[arg(long, value_parser = crate::rpc_url)]
    rpc_url: String,
    /// Refuse to act unless the endpoint serves this chain id.
    #[arg(long)]
    chain_id: Option<u64>,
    /// Seconds to wait for the peer's countersignature and for its deposit.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    /// Return once this party's deposit is in, without waiting for the peer's.
    #[arg(long)]
    no_wait: bool,
    #[command(flatten)]
    key: KeyArgs,
}

/// Refuses, before any transaction, a channel the peer's node said it would not take.
fn check_terms(terms: &Terms, lock: u64, peer_deposit: u128, no_wait: bool, deployed: bool) -> Result<()> {
    if !terms.accepts_channels {
        bail!("the peer's node does not accept new channels (it runs without --accept-channels); nothing was done");
    }
    if !deployed && !(terms.min_lock..=terms.max_lock).contains(&lock) {
        bail!(
            "the peer's node accepts lock periods from {} s to {} s (its --min-lock and --max-lock), not --lock {lock}; \
             nothing was done",
            terms.min_lock,
            terms.max_lock
        );
    }
    let pays = terms.auto_deposit.is_some_and(|max| peer_deposit <= max);
    if peer_deposit > 0 && !pays && !no_wait {
        let why = match terms.auto_deposit {
            Some(max) => format!("pays deposits of at most {} by itself (--auto-deposit)", format_eth(max)),
            None => "does not pay deposits by itself (no --auto-deposit)".into(),
        };
        bail!(
            "the peer's node {why}, and its deposit here is {}: nothing was done. Lower --deposits, or pass \
             --no-wait if its party will pay with `vbank deposit`",
            format_eth(peer_deposit)
        );
    }
    Ok(())
}

pub(crate) async fn open(args: OpenArgs, json_mode: bool) -> Result<()> {
    let signer: PrivateKeySigner = crate::node::load_key(&args.key)?;
    let me = signer.address();
    let deposits = parse_pair(&args.deposits).context("--deposits")?;
    let chain = Chain::connect(&args.rpc_url, signer.clone(), args.chain_id)
        .await
        .with_context(|| format!("connecting to {}", args.rpc_url))?;
    // This party's running node, or its store: checked before any transaction.
    let mut party = Party::attach(&args.store, || Ok(signer.clone())).await?;
    let (node_address, _) = party.status().await?;
    if node_address != me {
        bail!("the node on {} is {node_address}, but the key given is {me}", args.store.display());
    }

    let peer = args.peer.unwrap_or_else(|| args.connect.address());
    // The peer's node first: no gas is spent on a channel it would not take.
    waiting("connecting to the peer's node", party.connect(&args.connect, peer))
        .await
        .context("before deploying anything")?;
    // Its terms: a channel it would refuse, or a deposit it would not pay, costs no gas.
    let terms = party.request(Request::Terms { peer, timeout_secs: args.timeout.min(10) }).await;
    match terms {
        Ok(Reply::Terms { terms }) => {
            check_terms(&terms, args.lock, deposits[1], args.no_wait, args.channel.is_some())?
        }
        Ok(other) => bail!("unexpected reply {other:?}"),
        // An older node does not state terms: it will say no, if it does, after the deployment.
        Err(e) => eprintln!("warning: the peer's node did not state its terms ({e:#}); going on"),
    }

    let mut deploy_gas = None;
    let address = match args.channel {
        Some(a) => {
            let info = OnChain::new(chain.clone(), a).verify().await.with_context(|| format!("checking {a}"))?;
            if info.parties != [me, peer] {
                bail!(
                    "channel {a} is between {} and {}, not this party and {}",
                    info.parties[0],
                    info.parties[1],
                    peer
                );
            }
            if info.amounts != deposits {
                bail!(
                    "channel {a} expects deposits {} and {}",
                    format_eth(info.amounts[0]),
                    format_eth(info.amounts[1])
                );
            }
            a
        }
        None => {
            let (a, r) = waiting("deploying the virtual bank", deploy(&chain, [me, peer], deposits, args.lock))
                .await
                .context("deploying VirtualBank")?;
            deploy_gas = Some(r.gas_used);
            if !json_mode {
                println!("deployed the virtual bank {a} (gas {})", r.gas_used);
            }
            a
        }
    };
    let onchain = OnChain::new(chain.clone(), address);

    // Sheet 0, countersigned both ways, before any money goes in.
    let params = ChannelParams { chain_id: chain.chain_id(), contract: address, parties: [me, peer], deposits };
    if party.channel(address).await?.is_none_or(|c| c.phase == "opening") {
        let resume = || {
            format!(
                "the channel {address} is deployed but not open: run `vbank open --channel {address}` again to resume, \
                 or `vbank close --channel {address}` to cancel it"
            )
        };
        let request = Request::Open { params: params.clone(), timeout_secs: args.timeout };
        waiting("waiting for the peer to countersign balance sheet 0", party.request(request))
            .await
            .context("opening the channel with the peer")
            .with_context(resume)?;
        if !json_mode {
            println!("balance sheet 0 countersigned by both: deposits are now safe to pay");
        }
    }

    let mut deposit_gas = None;
    let info = onchain.info().await?;
    if info.state == OnChainState::Funding && !info.deposited[0] && deposits[0] > 0 {
        let r = waiting(&format!("depositing {}", format_eth(deposits[0])), onchain.deposit_agreed(&params))
            .await
            .context("depositing")?;
        deposit_gas = Some(r.gas_used);
        if !json_mode {
            println!("deposited {} (gas {})", format_eth(deposits[0]), r.gas_used);
        }
    }
    let state = if args.no_wait {
        onchain.state().await?
    } else {
        let wait = async {
            loop {
                let state = onchain.state().await?;
                if state != OnChainState::Funding {
                    return Ok::<_, vbank_client::Error>(state);
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        };
        let label = format!("waiting for the peer's deposit of {}", format_eth(deposits[1]));
        match tokio::time::timeout(Duration::from_secs(args.timeout), waiting(&label, wait)).await {
            Ok(s) => s?,
            Err(_) => bail!(
                "the peer has not deposited within {} s; the channel {address} stays in funding: run this again to \
                 keep waiting, or `vbank close` to cancel it and get the deposit back",
                args.timeout
            ),
        }
    };
    if json_mode {
        println!(
            "{}",
            json!({ "channel": address, "chain_id": chain.chain_id(), "parties": [me, peer],
                    "deposits": [deposits[0].to_string(), deposits[1].to_string()], "state": state.to_string(),
                    "deploy_gas": deploy_gas, "deposit_gas": deposit_gas })
        );
    } else {
        println!("channel {address} is {state}");
    }
    Ok(())
}
