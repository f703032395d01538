//! `vbank open`: party 0's whole opening in one command — open the channel through the factory
//! (deploying the factory first if the chain has none), agree sheet 0 with the peer's node (the
//! opening carries the parameters, which the peer checks with one `channelAddress` call), pay this
//! party's deposit (approving the token first for a token channel), and wait for the peer's.

use std::{path::PathBuf, time::Duration};

use alloy::{
    primitives::{Address, B256},
    signers::local::PrivateKeySigner,
};
use anyhow::{Context, Result};
use clap::Args;
use serde_json::json;
use vbank::Chain;
use vbank::ChannelParams;
use vbank::NodeUri;
use vbank::{OpenOptions, OpenReport, Progress, TermsRefusal};

use crate::{
    keys::KeyArgs,
    progress::Tracker,
    units::{format_eth, parse_pair},
};

/// The v2 terms of a channel added by hand (they must be the channel's: its address commits to them).
#[derive(Args, Debug, Clone)]
pub(crate) struct TermsArgs {
    /// The channel's lock period in seconds (read from the contract when a chain is given).
    #[arg(long = "lock", default_value_t = 86_400)]
    pub(crate) lock: u64,
    /// The channel's ERC-20 token (default: ETH; read from the contract when a chain is given).
    #[arg(long)]
    pub(crate) token: Option<Address>,
    /// The salt the channel was opened with (`vbank deploy` prints it; default zero).
    #[arg(long)]
    pub(crate) salt: Option<B256>,
}

impl TermsArgs {
    /// The parameters of channel `contract` with these terms.
    pub(crate) fn params(
        &self,
        chain_id: u64,
        contract: Address,
        parties: [Address; 2],
        deposits: [vbank::Amount; 2],
    ) -> ChannelParams {
        ChannelParams {
            chain_id,
            contract,
            parties,
            deposits,
            lock_period: self.lock,
            token: self.token.unwrap_or(Address::ZERO),
            salt: self.salt.unwrap_or(B256::ZERO),
        }
    }
}

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
    /// The ERC-20 token the channel holds (default: ETH); deposits are then in its base units
    /// ("1000wei" or a plain number of 10^18 units) and approved before they are paid.
    #[arg(long)]
    token: Option<Address>,
    /// The salt of the channel (default: random). Pass the one printed to resume an opening.
    #[arg(long)]
    salt: Option<B256>,
    /// Check that the channel of these parameters and salt is this address (resuming an opening).
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

/// A refusal of the peer's node's terms, as a person reads it (with the flags that change it).
fn terms_text(r: &TermsRefusal) -> String {
    match r {
        TermsRefusal::NotAccepting => {
            "the peer's node does not accept new channels (it runs without --accept-channels); nothing was done".into()
        }
        TermsRefusal::LockPeriod { min, max, asked } => format!(
            "the peer's node accepts lock periods from {min} s to {max} s (its --min-lock and --max-lock), not \
             --lock {asked}; nothing was done"
        ),
        TermsRefusal::Deposit { auto_deposit, asked } => {
            let why = match auto_deposit {
                Some(max) => format!("pays deposits of at most {} by itself (--auto-deposit)", format_eth(*max)),
                None => "does not pay deposits by itself (no --auto-deposit)".into(),
            };
            format!(
                "the peer's node {why}, and its deposit here is {}: nothing was done. Lower --deposits, or pass \
                 --no-wait if its party will pay with `vbank deposit`",
                format_eth(*asked)
            )
        }
    }
}

pub(crate) async fn open(args: OpenArgs, json_mode: bool) -> Result<()> {
    let signer: PrivateKeySigner = crate::node::load_key(&args.key)?;
    let deposits = parse_pair(&args.deposits).context("--deposits")?;
    let chain = Chain::connect(&args.rpc_url, signer.clone(), args.chain_id)
        .await
        .with_context(|| format!("connecting to {}", args.rpc_url))?;
    // This party's running node, or its store: checked before any transaction.
    let mut party = crate::party::attach(&args.store, || Ok(signer.clone()), None).await?;
    // What the library reports as it goes is printed as it goes (stdout stays JSON-only).
    let tracker = Tracker::with(move |p| {
        if json_mode {
            return;
        }
        match p {
            Progress::FactoryDeployed { address, report } => {
                println!("deployed the VirtualBank factory at {address} (gas {})", report.gas_used)
            }
            Progress::ChannelOpened { channel, salt, report } => {
                println!("opened the channel {channel} with salt {salt} (gas {})", report.gas_used)
            }
            Progress::SheetZero { .. } => {
                println!("balance sheet 0 countersigned by both: deposits are now safe to pay")
            }
            Progress::Deposited { amount, report, .. } => {
                println!("deposited {} (gas {})", format_eth(*amount), report.gas_used)
            }
            _ => {}
        }
    });
    let opts = OpenOptions {
        peer_uri: args.connect.clone(),
        peer: args.peer,
        deposits,
        lock_period: args.lock,
        token: args.token.unwrap_or(Address::ZERO),
        salt: args.salt,
        channel: args.channel,
        timeout: Duration::from_secs(args.timeout),
        no_wait: args.no_wait,
        progress: Some(tracker.progress()),
    };
    let opened = tracker.follow(party.open_channel(&chain, opts)).await.map_err(|e| match e {
        vbank::Error::WrongKey { node, key } => {
            anyhow::anyhow!("the node on {} is {node}, but the key given is {key}", args.store.display())
        }
        vbank::Error::Terms(r) => anyhow::anyhow!(terms_text(&r)),
        vbank::Error::SaltMismatch { expected, computed, salt } => anyhow::anyhow!(
            "the channel of these parameters and salt {salt} is {computed}, not {expected}: pass the --salt it was \
             opened with"
        ),
        vbank::Error::NotAgreed { channel, salt, source } => anyhow::Error::new(*source).context(format!(
            "the channel {channel} is opened on chain but not with the peer: run `vbank open` again with --salt \
             {salt} to resume, or `vbank close --channel {channel}` to cancel it"
        )),
        vbank::Error::PeerDepositMissing { channel, waited } => anyhow::anyhow!(
            "the peer has not deposited within {} s; the channel {channel} stays in funding: run this again to keep \
             waiting, or `vbank close` to cancel it and get the deposit back",
            waited.as_secs()
        ),
        e @ vbank::Error::During { .. } => match e.root() {
            vbank::Error::WrongPeer { .. } => {
                anyhow::anyhow!("--connect {}", e.root()).context("before deploying anything")
            }
            _ => anyhow::Error::new(e),
        },
        e => anyhow::Error::new(e),
    })?;
    crate::party::finish(party).await;
    let OpenReport { params, state, opened, deposit, .. } = opened;
    if json_mode {
        println!(
            "{}",
            json!({ "channel": params.contract, "chain_id": params.chain_id, "parties": params.parties,
                    "deposits": [deposits[0].to_string(), deposits[1].to_string()], "state": state.to_string(),
                    "lock_period": args.lock, "token": params.token, "salt": params.salt,
                    "deploy_gas": opened.map(|r| r.gas_used), "deposit_gas": deposit.map(|r| r.gas_used) })
        );
    } else {
        println!("channel {} is {state}", params.contract);
    }
    Ok(())
}
