//! `vbank`: compile and deploy VirtualBank channels, and run the demo.

mod bench;
mod demo;
mod demo_nodes;
mod keys;
mod network;
mod node;
mod open;
mod party;
mod progress;
mod units;

use std::path::PathBuf;

use alloy::primitives::{Address, B256};
use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use serde_json::json;
use vbank::{Chain, ChannelParams, Factory, LocalChain, OnChain, TxReport, deploy_factory};
use vbank_contracts::{Compiler, find_contracts_dir};

#[derive(Parser, Debug)]
#[command(name = "vbank", version, about = "Trustless two-party clearing channels (VirtualBank) on EVM chains")]
struct Cli {
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Compile the contracts with foundry-compilers (cached) and compare with the embedded artifacts.
    Compile(CompileArgs),
    /// Deploy the canonical VirtualBank factory at its deterministic address, unless it is there.
    DeployFactory(DeployFactoryArgs),
    /// Open a VirtualBank channel through the factory, without deposits (to an embedded anvil
    /// unless --rpc-url is given; the factory is deployed first if missing).
    Deploy(DeployArgs),
    /// Show a channel's on-chain state.
    Info(InfoArgs),
    /// Run the whole story on an embedded chain: open, 1,000 payments, a cheat, its punishment.
    Demo(demo::DemoArgs),
    /// Measure the crypto bound, channel throughput, coalesced payments and gas (use --release).
    Bench(bench::BenchArgs),
    /// Serve this party's channels to their peers over TCP (state in a crash-safe store).
    Node(node::NodeArgs),
    /// Open a channel in one go: deploy, agree sheet 0 with the peer's node, deposit, wait for the peer's deposit.
    Open(open::OpenArgs),
    /// Pay the peer over a channel kept in this party's store, through the peer's node.
    Pay(party::PayArgs),
    /// Claim a hash-time lock the peer sent, with its preimage.
    Fulfil(party::FulfilArgs),
    /// Give a hash-time lock the peer sent back to the peer.
    Release(party::ReleaseArgs),
    /// Show the channels in this party's store.
    Status(party::StatusArgs),
    /// Pay this party's agreed deposit into a channel.
    Deposit(party::DepositArgs),
    /// Close a channel: cooperatively through the peer's node, else by liquidating.
    Close(party::CloseArgs),
    /// Ask to be paid: print an invoice signed by this party's running node.
    Invoice(network::InvoiceArgs),
    /// Show what this party's running node knows of the network: announced nodes and channels.
    Graph(network::GraphArgs),
    /// Watch this party's channels and punish a liquidation with a revoked sheet (without serving peers).
    Watch(node::WatchArgs),
    /// The payee process of `vbank bench` (two processes over loopback TCP).
    #[command(hide = true)]
    BenchPeer(bench::PeerArgs),
}

#[derive(Args, Debug)]
struct CompileArgs {
    /// The foundry project holding src/VirtualBankFactory.sol (default: found above the working directory).
    #[arg(long)]
    contracts: Option<PathBuf>,
    /// A solc binary (default: $SOLC, else anvil-scripts/solc, the front over the pinned solc-js).
    #[arg(long)]
    solc: Option<PathBuf>,
    /// Write the fresh artifacts over crates/vbank-contracts/artifacts/*.json.
    #[arg(long)]
    update_artifacts: bool,
}

/// Where to send transactions and who signs them.
#[derive(Args, Debug, Clone)]
pub(crate) struct ChainArgs {
    /// JSON-RPC endpoint; without it an anvil is spawned for the command and dev account 0 signs.
    #[arg(long, value_parser = crate::rpc_url)]
    rpc_url: Option<String>,
    /// Refuse to act unless the node reports this chain id.
    #[arg(long)]
    chain_id: Option<u64>,
    #[command(flatten)]
    key: keys::KeyArgs,
}

#[derive(Args, Debug)]
struct DeployFactoryArgs {
    #[command(flatten)]
    chain: ChainArgs,
}

#[derive(Args, Debug)]
struct DeployArgs {
    #[command(flatten)]
    chain: ChainArgs,
    /// Party 0 (default: the signer).
    #[arg(long)]
    party0: Option<Address>,
    /// Party 1 (required with --rpc-url; default on the embedded chain: dev account 1).
    #[arg(long)]
    party1: Option<Address>,
    /// Party 0's deposit: "1.5" or "1.5eth", "2gwei", "1000wei".
    #[arg(long, allow_hyphen_values = true, default_value = "1")]
    amount0: String,
    /// Party 1's deposit.
    #[arg(long, allow_hyphen_values = true, default_value = "1")]
    amount1: String,
    /// Seconds a liquidating party's balance stays frozen.
    #[arg(long, default_value_t = 86_400)]
    lock: u64,
    /// The ERC-20 token the channel holds (default: ETH); amounts are then in its base units.
    #[arg(long)]
    token: Option<Address>,
    /// The salt (32 bytes, hex) that tells channels with the same parameters apart (default: random).
    #[arg(long)]
    salt: Option<B256>,
}

#[derive(Args, Debug)]
struct InfoArgs {
    /// The chain's JSON-RPC endpoint, http://host:port (a read: no key is needed).
    #[arg(long, value_parser = crate::rpc_url)]
    rpc_url: String,
    /// Refuse to answer unless the endpoint serves this chain id.
    #[arg(long)]
    chain_id: Option<u64>,
    /// The channel's contract address.
    #[arg(long)]
    channel: Address,
}

/// A connected chain, and the anvil behind it when embedded (kept alive while in scope).
pub(crate) struct Connected {
    pub(crate) chain: Chain,
    pub(crate) local: Option<LocalChain>,
}

impl ChainArgs {
    pub(crate) async fn connect(&self) -> Result<Connected> {
        match &self.rpc_url {
            Some(url) => {
                let signer = node::load_key(&self.key)?;
                let chain =
                    Chain::connect(url, signer, self.chain_id).await.with_context(|| format!("connecting to {url}"))?;
                Ok(Connected { chain, local: None })
            }
            None => {
                let local = LocalChain::spawn().context("starting the embedded anvil")?;
                let signer = match self.key.load()? {
                    Some(s) => s,
                    None => local.signer(0)?,
                };
                let chain = Chain::connect(&local.endpoint(), signer, self.chain_id).await?;
                Ok(Connected { chain, local: Some(local) })
            }
        }
    }
}

/// Checks an RPC URL before anything uses it: it must say its scheme (a bare host:port is
/// otherwise read as a relative URL).
pub(crate) fn rpc_url(s: &str) -> Result<String, String> {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        if t.len() > lower.find("://").map_or(0, |i| i + 3) {
            return Ok(t.to_string());
        }
        return Err(format!("{s:?} names no host: e.g. http://127.0.0.1:8545"));
    }
    if t.contains("://") {
        return Err(format!("{s:?}: only http:// and https:// endpoints are supported"));
    }
    Err(format!("{s:?} has no scheme: write it as http://{t} (or https://)"))
}

fn print(json_mode: bool, value: serde_json::Value, text: impl FnOnce() -> String) {
    if json_mode {
        println!("{value}");
    } else {
        println!("{}", text());
    }
}

fn compile(args: CompileArgs, json_mode: bool) -> Result<()> {
    let dir = match args.contracts {
        Some(d) => d,
        None => {
            let cwd = std::env::current_dir()?;
            find_contracts_dir(&cwd)
                .context("no contracts/src/VirtualBankFactory.sol above the working directory; pass --contracts")?
        }
    };
    let mut compiler = Compiler::new(&dir);
    if let Some(solc) = args.solc {
        compiler = compiler.solc(solc);
    }
    let outcome = compiler.compile().with_context(|| format!("compiling {}", dir.display()))?;
    let embedded = vbank_contracts::embedded()?;
    let stale: Vec<&vbank_contracts::Artifact> =
        outcome.artifacts.iter().zip(&embedded).filter(|(fresh, old)| fresh != old).map(|(fresh, _)| fresh).collect();
    let mut written = Vec::new();
    if args.update_artifacts {
        for a in &stale {
            let path = dir.parent().unwrap_or(&dir).join("crates/vbank-contracts/artifacts").join(a.file_name());
            std::fs::write(&path, a.to_json()?).with_context(|| format!("writing {}", path.display()))?;
            written.push(path.display().to_string());
        }
    }
    let fresh = stale.is_empty();
    let contracts: Vec<serde_json::Value> = outcome
        .artifacts
        .iter()
        .map(|a| {
            json!({ "contract": a.contract_name, "bytecode_bytes": a.bytecode.len(),
                    "runtime_bytes": a.deployed_bytecode.len(),
                    "embedded_is_fresh": !stale.iter().any(|s| s.contract_name == a.contract_name) })
        })
        .collect();
    let solc = outcome.artifacts.first().map(|a| a.solc_version.clone()).unwrap_or_default();
    print(
        json_mode,
        json!({
            "solc": solc, "cached": outcome.cached, "contracts": contracts, "embedded_is_fresh": fresh,
            "factory": vbank_contracts::factory_address(), "updated": written,
        }),
        || {
            let mut s =
                format!("compiled with solc {solc}{}", if outcome.cached { " (cached, nothing changed)" } else { "" });
            for a in &outcome.artifacts {
                s.push_str(&format!(
                    "\n  {}: {} bytes creation code, {} bytes runtime",
                    a.contract_name,
                    a.bytecode.len(),
                    a.deployed_bytecode.len()
                ));
            }
            if fresh {
                s.push_str(&format!(
                    "\nthe embedded artifacts are up to date (factory at {})",
                    vbank_contracts::factory_address()
                ));
            } else if !written.is_empty() {
                s.push_str(&format!("\nupdated {} (rebuild to embed them)", written.join(", ")));
            } else {
                let names: Vec<&str> = stale.iter().map(|a| a.contract_name.as_str()).collect();
                s.push_str(&format!(
                    "\nthe embedded artifacts of {} are STALE: run `vbank compile --update-artifacts`",
                    names.join(", ")
                ));
            }
            s
        },
    );
    if !fresh && written.is_empty() {
        bail!("the embedded artifacts differ from the sources");
    }
    Ok(())
}

/// Deploys the canonical factory unless it is on the chain; says which.
pub(crate) async fn ensure_factory(chain: &Chain, json_mode: bool) -> Result<Option<TxReport>> {
    let (address, report) = progress::waiting("deploying the VirtualBank factory", deploy_factory(chain))
        .await
        .context("deploying the VirtualBank factory")?;
    if let (Some(r), false) = (&report, json_mode) {
        println!("deployed the VirtualBank factory at {address} (gas {})", r.gas_used);
    }
    Ok(report)
}

async fn deploy_factory_cmd(args: DeployFactoryArgs, json_mode: bool) -> Result<()> {
    let connected = args.chain.connect().await?;
    let chain = &connected.chain;
    let (address, report) = progress::waiting("deploying the VirtualBank factory", deploy_factory(chain))
        .await
        .context("deploying the VirtualBank factory")?;
    print(
        json_mode,
        json!({
            "factory": address, "registry": vbank_contracts::registry_address(),
            "implementation": vbank_contracts::implementation_address(), "deployed": report.is_some(),
            "tx": report.as_ref().map(|r| r.hash), "gas_used": report.as_ref().map(|r| r.gas_used),
            "chain_id": chain.chain_id(), "embedded_chain": connected.local.is_some(),
        }),
        || match &report {
            Some(r) => format!(
                "deployed the VirtualBank factory at {address}\n  chain {}, tx {}, gas {}\n  registry {}",
                chain.chain_id(),
                r.hash,
                r.gas_used,
                vbank_contracts::registry_address()
            ),
            None => format!("the VirtualBank factory is already at {address} on chain {}", chain.chain_id()),
        },
    );
    Ok(())
}

async fn deploy_cmd(args: DeployArgs, json_mode: bool) -> Result<()> {
    let connected = args.chain.connect().await?;
    let chain = &connected.chain;
    let party0 = args.party0.unwrap_or(chain.address());
    let party1 = match (args.party1, &connected.local) {
        (Some(p), _) => p,
        (None, Some(local)) => local.signer(1)?.address(),
        (None, None) => bail!("--party1 is required with --rpc-url"),
    };
    let amounts = [units::parse_amount(&args.amount0)?, units::parse_amount(&args.amount1)?];
    let token = args.token.unwrap_or(Address::ZERO);
    let salt = args.salt.unwrap_or_else(B256::random);
    ensure_factory(chain, json_mode).await?;
    let params = ChannelParams {
        chain_id: chain.chain_id(),
        contract: Address::ZERO,
        parties: [party0, party1],
        deposits: amounts,
        lock_period: args.lock,
        token,
        salt,
    };
    let (address, report) = progress::waiting("opening the channel", Factory::new(chain.clone()).open(&params))
        .await
        .context("opening the channel through the factory")?;
    print(
        json_mode,
        json!({
            "address": address, "tx": report.hash, "gas_used": report.gas_used, "block": report.block,
            "chain_id": chain.chain_id(), "parties": [party0, party1],
            "amounts": [amounts[0].to_string(), amounts[1].to_string()], "lock_period": args.lock,
            "token": token, "salt": salt, "embedded_chain": connected.local.is_some(),
        }),
        || {
            format!(
                "opened VirtualBank channel {address}\n  chain {}{}, tx {}, gas {}\n  party 0 {party0} deposits {}\n  party 1 {party1} deposits {}\n  lock period {} s, token {}, salt {salt}",
                chain.chain_id(),
                if connected.local.is_some() { " (embedded anvil, gone when this command ends)" } else { "" },
                report.hash,
                report.gas_used,
                units::format_eth(amounts[0]),
                units::format_eth(amounts[1]),
                args.lock,
                if token == Address::ZERO { "none (ETH)".to_string() } else { token.to_string() },
            )
        },
    );
    Ok(())
}

async fn info_cmd(args: InfoArgs, json_mode: bool) -> Result<()> {
    // Only reads: a throwaway key stands in for the RPC client's signer.
    let signer = alloy::signers::local::PrivateKeySigner::random();
    let chain = Chain::connect(&args.rpc_url, signer, args.chain_id)
        .await
        .with_context(|| format!("connecting to {}", args.rpc_url))?;
    let info = OnChain::new(chain, args.channel).info().await.context("reading the channel")?;
    print(
        json_mode,
        json!({
            "address": info.address, "state": info.state.to_string(), "parties": info.parties,
            "amounts": [info.amounts[0].to_string(), info.amounts[1].to_string()], "deposited": info.deposited,
            "lock_period": info.lock_period, "token": info.token, "outstanding": info.outstanding.to_string(),
            "liquidation": info.liquidation.as_ref().map(|l| json!({
                "master": l.master, "nonce": l.nonce, "waiver": l.waiver, "unlock_time": l.unlock_time,
                "locked": l.locked.to_string(), "locks_root": l.locks_root,
            })),
        }),
        || {
            let mut s = format!(
                "channel {} is {}\n  party 0 {} deposit {}{}\n  party 1 {} deposit {}{}\n  lock period {} s, holds {}",
                info.address,
                info.state,
                info.parties[0],
                units::format_eth(info.amounts[0]),
                if info.deposited[0] { " (in)" } else { " (missing)" },
                info.parties[1],
                units::format_eth(info.amounts[1]),
                if info.deposited[1] { " (in)" } else { " (missing)" },
                info.lock_period,
                units::format_eth(info.outstanding),
            );
            if info.token != Address::ZERO {
                s.push_str(&format!("\n  token {} (amounts in its base units)", info.token));
            }
            if let Some(l) = &info.liquidation {
                s.push_str(&format!(
                    "\n  liquidated by {} with sheet {} (waiver {}), unlocks at {}",
                    l.master, l.nonce, l.waiver, l.unlock_time
                ));
            }
            s
        },
    );
    Ok(())
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let json_mode = cli.json;
    let result = match cli.command {
        Command::Compile(a) => compile(a, json_mode),
        Command::DeployFactory(a) => deploy_factory_cmd(a, json_mode).await,
        Command::Deploy(a) => deploy_cmd(a, json_mode).await,
        Command::Info(a) => info_cmd(a, json_mode).await,
        Command::Demo(a) => demo::run(a, json_mode).await,
        Command::Bench(a) => bench::run(a, json_mode).await,
        Command::BenchPeer(a) => bench::peer(a).await,
        Command::Node(a) => node::run(a, json_mode).await,
        Command::Open(a) => open::open(a, json_mode).await,
        Command::Watch(a) => node::watch_cmd(a, json_mode).await,
        Command::Pay(a) => party::pay(a, json_mode).await,
        Command::Invoice(a) => network::invoice(a, json_mode).await,
        Command::Graph(a) => network::graph(a, json_mode).await,
        Command::Fulfil(a) => party::fulfil(a, json_mode).await,
        Command::Release(a) => party::release(a, json_mode).await,
        Command::Status(a) => party::status(a, json_mode).await,
        Command::Deposit(a) => party::deposit(a, json_mode).await,
        Command::Close(a) => party::close(a, json_mode).await,
    };
    if let Err(e) = result {
        let interrupted = e.downcast_ref::<progress::Interrupted>().is_some();
        if json_mode {
            println!("{}", json!({ "error": format!("{e:#}"), "interrupted": interrupted }));
        } else {
            eprintln!("error: {e:#}");
        }
        std::process::exit(if interrupted { 130 } else { 1 });
    }
}
