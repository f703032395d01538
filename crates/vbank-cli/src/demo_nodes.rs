//! Alice's and Bob's nodes for `vbank demo`: two `vbank node` processes driven through their
//! control sockets (the default), or two services inside the demo's process (`--in-process`).
//! Either way each node has its own redb store and they talk over loopback TCP; the demo speaks
//! to both with the same control requests.

use std::{path::PathBuf, process::Stdio, time::Duration};

use alloy::{primitives::Address, signers::local::PrivateKeySigner};
use anyhow::{Context, Result, bail};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
    sync::mpsc,
};
use vbank::{ControlClient, NodeUri, WatchEvent, control_path};

use vbank::Client as Party;

/// The punishment as Bob's watcher reported it.
pub(crate) struct Punished {
    pub(crate) nonce: u64,
    pub(crate) gas_used: u64,
}

pub(crate) enum Nodes {
    InProcess {
        /// The library's nodes (`vbank::Builder`), as `vbank node` runs them.
        alice: Box<vbank::Node>,
        bob: Box<vbank::Node>,
        carol: Box<vbank::Node>,
        /// What Bob's node sees and does on chain.
        bob_chain: tokio::sync::broadcast::Receiver<vbank::ChainEvent>,
        bob_at: NodeUri,
        carol_at: NodeUri,
    },
    Processes {
        // Killed on drop.
        _children: Box<[Child; 3]>,
        sockets: [PathBuf; 3],
        bob_lines: mpsc::UnboundedReceiver<String>,
        bob_at: NodeUri,
        carol_at: NodeUri,
        pids: [u32; 3],
    },
}

/// Starts `vbank --json node` for `key` on `store` with `extra` arguments; returns it, its
/// stdout lines and its node URI.
async fn spawn_node(
    key: &PrivateKeySigner,
    store: &std::path::Path,
    extra: &[&str],
) -> Result<(Child, mpsc::UnboundedReceiver<String>, NodeUri)> {
    let mut child = Command::new(std::env::current_exe().context("the vbank binary")?)
        .args(["--json", "node", "--store"])
        .arg(store)
        .args(["--listen", "127.0.0.1:0"])
        .args(extra)
        .env("VBANK_PRIVATE_KEY", key.to_bytes().to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("starting `vbank node`")?;
    let mut lines = BufReader::new(child.stdout.take().context("the node's stdout")?).lines();
    let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .context("the node did not start within 30 s")??
        .context("the node exited at start")?;
    let v: serde_json::Value = serde_json::from_str(&first).with_context(|| format!("the node said {first:?}"))?;
    let at: NodeUri = v["uri"].as_str().context("no node URI")?.parse()?;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    Ok((child, rx, at))
}

/// Waits until the node's control socket answers.
async fn control(path: &std::path::Path) -> Result<ControlClient> {
    for _ in 0..300 {
        if let Some(c) = ControlClient::connect(path).await {
            return Ok(c);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bail!("no control socket at {} after 6 s", path.display())
}

impl Nodes {
    /// Alice's, Bob's and Carol's nodes with stores in `dir`, following the chain at `url`; Bob's
    /// joins channels verified on chain, watches them and forwards payments for `fee` (base, ppm);
    /// Carol's joins Bob's channel (and, as a process, pays its deposit by itself). Alice's follows
    /// the chain for the channel graph.
    pub(crate) async fn start(
        in_process: bool,
        dir: &std::path::Path,
        keys: [&PrivateKeySigner; 3],
        url: &str,
        lock: u64,
        fee: (u128, u32),
    ) -> Result<Self> {
        let stores = [dir.join("alice.redb"), dir.join("bob.redb"), dir.join("carol.redb")];
        let max_lock = crate::node::DEFAULT_MAX_LOCK.max(lock);
        if in_process {
            // As the processes below are started: the library's nodes, each following the chain.
            let poll = Duration::from_millis(200);
            let start =
                |i: usize| vbank::Builder::new(&stores[i], keys[i].clone()).chain(url).poll(poll).journal(false);
            let started = |e: vbank::Error| anyhow::Error::new(e).context("starting a node");
            let alice = start(0).start().await.map_err(started)?;
            let bob = start(1)
                .accept_channels(lock, max_lock)
                .forward(vbank::ForwardFees { base: fee.0, ppm: fee.1 })
                .start()
                .await
                .map_err(started)?;
            let bob_chain = bob.chain_events().context("Bob's node follows the chain")?;
            let carol = start(2).accept_channels(lock, max_lock).start().await.map_err(started)?;
            let bob_at = bob.uri().context("Bob's node listens")?;
            let carol_at = carol.uri().context("Carol's node listens")?;
            let (alice, bob, carol) = (Box::new(alice), Box::new(bob), Box::new(carol));
            return Ok(Self::InProcess { alice, bob, carol, bob_chain, bob_at, carol_at });
        }
        let lock = lock.to_string();
        let (base, ppm) = (format!("{}wei", fee.0), fee.1.to_string());
        let bob_args = [
            "--rpc-url",
            url,
            "--accept-channels",
            "--min-lock",
            &lock,
            "--poll-ms",
            "200",
            "--forward",
            "--fee-base",
            &base,
            "--fee-ppm",
            &ppm,
        ];
        let (bob, bob_lines, bob_at) = spawn_node(keys[1], &stores[1], &bob_args).await?;
        let carol_args =
            ["--rpc-url", url, "--accept-channels", "--min-lock", &lock, "--poll-ms", "200", "--auto-deposit", "1000"];
        let (carol, _, carol_at) = spawn_node(keys[2], &stores[2], &carol_args).await?;
        let (alice, _, _) = spawn_node(keys[0], &stores[0], &["--rpc-url", url, "--poll-ms", "200"]).await?;
        let pids = [alice.id().unwrap_or(0), bob.id().unwrap_or(0), carol.id().unwrap_or(0)];
        let sockets = [control_path(&stores[0]), control_path(&stores[1]), control_path(&stores[2])];
        Ok(Self::Processes { _children: Box::new([alice, bob, carol]), sockets, bob_lines, bob_at, carol_at, pids })
    }

    /// Whether Carol's node pays its deposit by itself (the process runs with --auto-deposit).
    pub(crate) fn carol_deposits_herself(&self) -> bool {
        matches!(self, Self::Processes { .. })
    }

    /// Carol's node URI.
    pub(crate) fn carol_at(&self) -> &NodeUri {
        match self {
            Self::InProcess { carol_at, .. } | Self::Processes { carol_at, .. } => carol_at,
        }
    }

    /// A line saying where the nodes run.
    pub(crate) fn describe(&self) -> String {
        match self {
            Self::InProcess { bob_at, .. } => {
                format!("nodes: all three in this process (--in-process), Bob's listening on {bob_at}")
            }
            Self::Processes { bob_at, pids, .. } => format!(
                "nodes: Alice's `vbank node` (pid {}), Bob's (pid {}, listening on {bob_at}, watching the chain, \
                 forwarding) and Carol's (pid {}), driven through their control sockets",
                pids[0], pids[1], pids[2]
            ),
        }
    }

    /// Bob's node URI.
    pub(crate) fn bob_at(&self) -> &NodeUri {
        match self {
            Self::InProcess { bob_at, .. } | Self::Processes { bob_at, .. } => bob_at,
        }
    }

    /// A new handle on party `i`'s node (0 Alice, 1 Bob, 2 Carol); handles can be used concurrently.
    pub(crate) async fn party(&self, i: usize) -> Result<Party> {
        Ok(match self {
            Self::InProcess { alice, bob, carol, .. } => Party::of_service(
                match i {
                    0 => alice,
                    1 => bob,
                    _ => carol,
                }
                .service()
                .clone(),
            ),
            Self::Processes { sockets, .. } => Party::of_socket(control(&sockets[i]).await?),
        })
    }

    /// Waits for Bob's watcher to punish a stale liquidation.
    pub(crate) async fn punished(&mut self, address: Address, say: impl Fn(String)) -> Result<Punished> {
        let wait = async {
            match self {
                Self::InProcess { bob_chain, .. } => loop {
                    let e = match bob_chain.recv().await {
                        Ok(e) => e,
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(_) => bail!("Bob's node stopped following the chain"),
                    };
                    // Only Alice's channel (Bob's node also watches his channel with Carol).
                    let vbank::ChainEvent::Watch { channel, event } = e else { continue };
                    if channel != address {
                        continue;
                    }
                    match event {
                        WatchEvent::Punished { nonce, report } => {
                            return Ok(Punished { nonce, gas_used: report.gas_used });
                        }
                        WatchEvent::Warning(w) => say(format!("watcher: {w}")),
                        WatchEvent::RpcError(e) => say(format!("watcher: RPC error, retrying: {e}")),
                        WatchEvent::State(_) => {}
                        other => bail!("the watcher saw {other:?} instead of punishing"),
                    }
                },
                Self::Processes { bob_lines, .. } => loop {
                    let line = bob_lines.recv().await.context("Bob's node exited")?;
                    let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
                    // Only Alice's channel (Bob's node also reports his channel with Carol).
                    if v["watch"].as_str().and_then(|w| w.parse::<Address>().ok()) != Some(address) {
                        continue;
                    }
                    match v["event"].as_str() {
                        Some("punished") => {
                            let nonce = v["detail"]["nonce"].as_u64().context("nonce")?;
                            let gas_used = v["detail"]["gas_used"].as_u64().context("gas")?;
                            return Ok(Punished { nonce, gas_used });
                        }
                        Some("honest_liquidation" | "closed") => bail!("Bob's node saw {line} instead of punishing"),
                        _ => {}
                    }
                },
            }
        };
        tokio::time::timeout(Duration::from_secs(60), wait).await.context("the watcher did not punish within 60 s")?
    }

    /// Stops the nodes.
    pub(crate) async fn stop(self) {
        if let Self::InProcess { alice, bob, carol, .. } = self {
            alice.stop().await;
            bob.stop().await;
            carol.stop().await;
        }
        // Processes: killed when their handles drop here.
    }
}
