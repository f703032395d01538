//! `vbank node`: a party's node serving its channels to their peers over TCP.

use std::{path::PathBuf, sync::Arc};

use alloy::primitives::{Address, B256};
use alloy::signers::local::PrivateKeySigner;
use anyhow::{Context, Result, bail};
use clap::Args;
use tokio::sync::Mutex;
use vbank_core::ChannelParams;
use vbank_node::{Node, RedbStore, handshake, serve};

use crate::{keys::KeyArgs, units::parse_pair};

#[derive(Args, Debug)]
pub(crate) struct NodeArgs {
    /// The node's store (a redb file; created if missing).
    #[arg(long)]
    store: PathBuf,
    /// Address to listen on for peers.
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
    #[arg(long)]
    deposits: Option<String>,
    /// This node's party index in the channel (0 or 1).
    #[arg(long, default_value_t = 1)]
    index: u8,
    /// The channel's chain id.
    #[arg(long, default_value_t = 31337)]
    chain_id: u64,
    /// Watch every channel on this chain and punish a liquidation with a revoked sheet.
    #[arg(long)]
    rpc_url: Option<String>,
    /// Watcher polling interval in milliseconds.
    #[arg(long, default_value_t = 1000)]
    poll_ms: u64,
}

/// Prints a line to stdout, ignoring a closed pipe (a node must not die because nobody reads).
fn say(line: String) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout(), "{line}");
}

pub(crate) async fn run(args: NodeArgs, json_mode: bool) -> Result<()> {
    let signer: PrivateKeySigner =
        args.key.load()?.context("a signing key is needed: $VBANK_PRIVATE_KEY, --key-file or --keystore")?;
    let store = RedbStore::open(&args.store).with_context(|| format!("opening store {}", args.store.display()))?;
    let mut node = Node::open(signer.clone(), store).context("loading channels")?;
    if let (Some(contract), Some(peer), Some(deposits)) = (args.channel, args.peer, &args.deposits)
        && node.channel(contract).is_none()
    {
        let deposits = parse_pair(deposits).context("--deposits")?;
        let parties = match args.index {
            0 => [signer.address(), peer],
            1 => [peer, signer.address()],
            _ => bail!("--index must be 0 or 1"),
        };
        let params = ChannelParams { chain_id: args.chain_id, contract, parties, deposits };
        let seed: B256 = PrivateKeySigner::random().to_bytes();
        node.add_channel(params, seed).context("adding the channel")?;
    }
    let listener =
        tokio::net::TcpListener::bind(&args.listen).await.with_context(|| format!("listening on {}", args.listen))?;
    let local = listener.local_addr()?;
    if json_mode {
        println!(
            "{}",
            serde_json::json!({ "listening": local.to_string(), "address": signer.address(), "channels": node.channel_ids() })
        );
    } else {
        println!("listening on {local} as {} with {} channel(s)", signer.address(), node.channel_ids().len());
    }
    let node = Arc::new(Mutex::new(node));
    if let Some(url) = &args.rpc_url {
        let chain = vbank_client::Chain::connect(url, signer.clone(), Some(args.chain_id))
            .await
            .with_context(|| format!("connecting to {url}"))?;
        let ids = node.lock().await.channel_ids();
        for id in ids {
            let shared = Arc::clone(&node);
            // The watcher asks the node for a punishment from its (multi-threaded) runtime.
            let punisher: vbank_client::Punisher = Arc::new(move |nonce, waiver| {
                tokio::task::block_in_place(|| {
                    shared.blocking_lock().channel(id).and_then(|c| c.punishment(nonce, waiver))
                })
            });
            let onchain = vbank_client::OnChain::new(chain.clone(), id);
            let mut handle =
                vbank_client::Watcher::new(onchain, punisher, std::time::Duration::from_millis(args.poll_ms)).spawn();
            tokio::spawn(async move {
                while let Some(e) = handle.next().await {
                    say(format!("watch {id}: {e:?}"));
                }
            });
        }
    }
    loop {
        let (mut stream, from) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("accept failed: {e}");
                continue;
            }
        };
        let node = Arc::clone(&node);
        let signer = signer.clone();
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            let known = node.lock().await.peers();
            let peer = match handshake(&mut stream, &signer, |p| known.contains(&p)).await {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("{from}: {e}");
                    return;
                }
            };
            let result = serve(&mut stream, &node, peer, |_, _| {}).await;
            if let Err(e) = result {
                eprintln!("{peer}: {e}");
            }
        });
    }
}
