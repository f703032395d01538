//! `vbank demo`: the article's story on an embedded chain, step by step.

use std::time::{Duration, Instant};

use alloy::primitives::{B256, I256, U256};
use alloy::signers::local::PrivateKeySigner;
use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::json;
use vbank_client::{Chain, LocalChain, OnChain, WatchEvent, deploy};
use vbank_contracts::{Compiler, find_contracts_dir};
use vbank_core::{ChannelParams, LiquidationSheet};
use vbank_node::{Node, RedbStore, Service};

use crate::units::{format_eth, parse_amount};

#[derive(Args, Debug)]
pub(crate) struct DemoArgs {
    /// Off-chain payments, half by Alice and half by Bob, made concurrently.
    #[arg(long, default_value_t = 1000)]
    payments: u32,
    /// Each party's deposit.
    #[arg(long, default_value = "5")]
    deposit: String,
    /// Lock period in seconds.
    #[arg(long, default_value_t = 3600)]
    lock: u64,
}

/// How long any one protocol exchange may take.
const T: Duration = Duration::from_secs(30);

struct Row {
    step: &'static str,
    explain: String,
    alice: String,
    bob: String,
    gas: Option<u64>,
}

fn seed() -> B256 {
    PrivateKeySigner::random().to_bytes()
}

fn eth_delta(after: U256, before: U256) -> String {
    let d = I256::from_raw(after).saturating_sub(I256::from_raw(before));
    let sign = if d.is_negative() { "-" } else { "+" };
    format!("{sign}{}", format_eth(u128::try_from(d.unsigned_abs()).unwrap_or(u128::MAX)))
}

pub(crate) async fn run(args: DemoArgs, json_mode: bool) -> Result<()> {
    let deposit = parse_amount(&args.deposit)?;
    if deposit == 0 {
        bail!("--deposit must be more than zero");
    }
    let mut rows: Vec<Row> = Vec::new();
    let say = |s: String| {
        if !json_mode {
            println!("{s}");
        }
    };

    // 1. The contract: compiled here if the toolchain is present, else the embedded artifact.
    let compiled =
        std::env::current_dir().ok().and_then(|cwd| find_contracts_dir(&cwd)).map(|dir| Compiler::new(dir).compile());
    let note = match compiled {
        Some(Ok(out)) if out.artifact == vbank_contracts::embedded()? => {
            format!(
                "compiled contracts/src with solc {}: identical to the embedded artifact",
                out.artifact.solc_version
            )
        }
        Some(Ok(_)) => {
            bail!("contracts/src differs from the embedded artifact: run `vbank compile --update-artifacts`")
        }
        Some(Err(e)) => format!("could not compile here ({e}); using the embedded artifact"),
        None => "no contracts/ here; using the embedded artifact".into(),
    };
    say(format!("contract: {note}"));

    // 2. The chain and the parties.
    let local = LocalChain::spawn().context("starting the embedded anvil")?;
    let alice_key = local.signer(0)?;
    let bob_key = local.signer(1)?;
    let alice_chain = Chain::connect(&local.endpoint(), alice_key.clone(), Some(local.chain_id())).await?;
    let bob_chain = alice_chain.with_signer(bob_key.clone());
    let (alice, bob) = (alice_key.address(), bob_key.address());
    let start = [alice_chain.balance(alice).await?, alice_chain.balance(bob).await?];
    say(format!("chain: anvil at {} (chain {}), Alice {alice}, Bob {bob}", local.endpoint(), local.chain_id()));

    // 3. Deploy the virtual bank.
    let (address, report) = deploy(&alice_chain, [alice, bob], [deposit, deposit], args.lock).await?;
    rows.push(Row {
        step: "deploy",
        explain: format!("Alice deploys the virtual bank {address}: it will hold both deposits"),
        alice: "-".into(),
        bob: "-".into(),
        gas: Some(report.gas_used),
    });

    // 4. Two nodes, each with its own crash-safe store, linked over loopback TCP. Bob's node
    //    joins channels that Alice opens once it has checked the contract on chain.
    let dir = tempfile::Builder::new().prefix("vbank-demo-").tempdir().context("a temporary directory")?;
    let node_of = |name: &str, key: &PrivateKeySigner, admission| -> Result<Service<RedbStore>> {
        let store = RedbStore::open(&dir.path().join(format!("{name}.redb")))?;
        Ok(Service::new(Node::open(key.clone(), store)?, key.clone(), admission))
    };
    let alice_node = node_of("alice", &alice_key, None)?;
    let bob_node = node_of("bob", &bob_key, Some(crate::node::admission(bob_chain.clone(), args.lock)))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("listening on loopback")?;
    let bob_at = listener.local_addr()?.to_string();
    bob_node.listen(listener);
    alice_node.connect(&bob_at, bob).await.context("linking Alice's node to Bob's")?;
    say(format!("nodes: Bob's listens on {bob_at}; Alice's is linked to it (both proved their keys)"));
    let params =
        ChannelParams { chain_id: local.chain_id(), contract: address, parties: [alice, bob], deposits: [deposit; 2] };
    alice_node.open(params, seed(), T).await.context("opening the channel")?;
    rows.push(Row {
        step: "open",
        explain:
            "Alice's node sends balance sheet 0; Bob's node checks the bank on chain (genuine code, parties, lock) \
                  and countersigns: each now holds a sheet signed by the other"
                .into(),
        alice: format_eth(deposit),
        bob: format_eth(deposit),
        gas: None,
    });
    let on_a = OnChain::new(alice_chain.clone(), address);
    let on_b = OnChain::new(bob_chain.clone(), address);
    let da = on_a.deposit().await.context("Alice's deposit")?;
    let db = on_b.deposit().await.context("Bob's deposit")?;
    rows.push(Row {
        step: "fund",
        explain: "both deposit, safe because sheet 0 lets either liquidate: the bank runs".into(),
        alice: format_eth(deposit),
        bob: format_eth(deposit),
        gas: Some(da.gas_used + db.gas_used),
    });

    // 5. Payments both ways at once, each acknowledged before the payer's next; Alice keeps the
    //    sheet where she had most, to cheat with later.
    let t0 = Instant::now();
    // 1 to 40 units each: 500 payments move at most a deposit one way.
    let unit = (deposit / 20_000).max(1);
    // Amounts of 1 to `range` units, from a fixed xorshift sequence.
    let payer = |node: Service<RedbStore>, count: u32, mut rng: u64, range: u64| async move {
        let mut made = 0u32;
        for _ in 0..count {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let amount = unit * u128::from(1 + rng % range);
            match node.pay(address, amount, 1, T).await {
                Ok(_) => made += 1,
                // (only with a custom --payments large enough to drain a side)
                Err(vbank_node::Error::Protocol(vbank_core::Error::InsufficientBalance { .. })) => {}
                Err(e) => return Err(e),
            }
        }
        Ok::<_, vbank_node::Error>(made)
    };
    // Alice's node tells of every new sheet; she keeps the one where she had most.
    let mut notices = alice_node.subscribe();
    let keeper = alice_node.clone();
    let best = std::sync::Arc::new(std::sync::Mutex::new(None::<LiquidationSheet>));
    let kept = std::sync::Arc::clone(&best);
    let tracker = tokio::spawn(async move {
        while let Ok(n) = notices.recv().await {
            if !matches!(n, vbank_node::Notice::Event { .. }) {
                continue;
            }
            let latest = keeper.node().lock().await.channel(address).and_then(|c| c.latest()).cloned();
            let mut best = kept.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(l) = latest
                && best.as_ref().is_none_or(|b| l.balances[0] > b.balances[0])
            {
                *best = Some(l);
            }
        }
    });
    // Two rounds, each with both paying at once: Bob buys more in the first, Alice in the
    // second, so Alice's balance peaks in the middle — a sheet worth cheating with later.
    let (mut a_made, mut b_made) = (0, 0);
    let quarter = args.payments / 4;
    for (round, (a_range, b_range)) in [(10, 40), (40, 10)].into_iter().enumerate() {
        let a_count = if round == 0 { quarter } else { args.payments / 2 - quarter };
        let b_count = if round == 0 { quarter } else { args.payments - args.payments / 2 - quarter };
        let (a_run, b_run) = tokio::join!(
            payer(alice_node.clone(), a_count, 0x2545_f491_4f6c_dd1d + round as u64, a_range),
            payer(bob_node.clone(), b_count, 0x9e37_79b9_7f4a_7c15 + round as u64, b_range)
        );
        a_made += a_run.context("Alice's payments")?;
        b_made += b_run.context("Bob's payments")?;
    }
    let elapsed = t0.elapsed();
    let (updates, bal) = {
        let n = alice_node.node().lock().await;
        let ch = n.channel(address).context("Alice's channel")?;
        (ch.nonce(), ch.balances())
    };
    rows.push(Row {
        step: "pay",
        explain: format!(
            "{} payments (Alice {a_made}, Bob {b_made}, concurrently) cleared off-chain in {updates} balance sheets, each \
             countersigned and stored by both nodes, the older one waived ({:.0} sheets/s, no gas)",
            a_made + b_made,
            updates as f64 / elapsed.as_secs_f64().max(1e-9)
        ),
        alice: format_eth(bal[0]),
        bob: format_eth(bal[1]),
        gas: None,
    });
    tracker.abort();
    let stale = best.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take().context("no payment was made")?;
    if stale.nonce == updates {
        // Alice's best sheet is the latest: one more payment makes her waive it.
        alice_node.pay(address, 1, 1, T).await.context("a payment")?;
    }

    // 6. Bob's watcher, then Alice cheats with the revoked sheet.
    let mut watcher = crate::node::watch(&bob_node, &bob_chain, address, Duration::from_millis(200));
    let liq = on_a.liquidate(&stale).await.context("Alice's liquidation")?;
    rows.push(Row {
        step: "liquidate",
        explain: format!(
            "Alice liquidates with sheet {} (she had {} then, {} now), which she had waived: Bob is paid his balance in it \
             at once, hers is frozen for {} s",
            stale.nonce,
            format_eth(stale.balances[0]),
            format_eth(bal[0]),
            args.lock
        ),
        alice: format!("{} frozen", format_eth(stale.balances[0])),
        bob: format_eth(stale.balances[1]),
        gas: Some(liq.gas_used),
    });

    // 7. The punishment.
    let punished = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            match watcher.next().await {
                Some(WatchEvent::Punished { nonce, report }) => return Ok((nonce, report)),
                Some(WatchEvent::Warning(w)) => say(format!("watcher: {w}")),
                Some(WatchEvent::RpcError(e)) => say(format!("watcher: RPC error, retrying: {e}")),
                Some(other) => bail!("the watcher saw {other:?} instead of punishing"),
                None => bail!("the watcher stopped"),
            }
        }
    })
    .await
    .context("the watcher did not punish within 60 s")??;
    rows.push(Row {
        step: "punish",
        explain: format!(
            "Bob's watcher signs Waiver({}) with the waiver key Alice revealed and calls withdrawByPeer: he takes her frozen \
             balance, well before the lock ends",
            punished.0
        ),
        alice: format_eth(0),
        bob: format_eth(2 * deposit),
        gas: Some(punished.1.gas_used),
    });
    alice_node.shutdown().await;
    bob_node.shutdown().await;
    let info = on_a.info().await?;
    let end = [alice_chain.balance(alice).await?, alice_chain.balance(bob).await?];

    if json_mode {
        println!(
            "{}",
            json!({
                "contract": address, "chain_id": local.chain_id(), "compile": note,
                "payments": a_made + b_made, "updates": updates,
                "updates_per_second": updates as f64 / elapsed.as_secs_f64().max(1e-9),
                "final_state": info.state.to_string(),
                "eth_change": { "alice": eth_delta(end[0], start[0]), "bob": eth_delta(end[1], start[1]) },
                "steps": rows.iter().map(|r| json!({
                    "step": r.step, "explain": r.explain, "alice": r.alice, "bob": r.bob, "gas": r.gas,
                })).collect::<Vec<_>>(),
            })
        );
        return Ok(());
    }
    println!();
    println!("{:<10} {:>22} {:>22} {:>10}", "step", "Alice (channel)", "Bob (channel)", "gas");
    for r in &rows {
        let gas = r.gas.map_or("-".into(), |g| g.to_string());
        println!("{:<10} {:>22} {:>22} {:>10}", r.step, r.alice, r.bob, gas);
        println!("{:<10} {}", "", r.explain);
    }
    println!();
    println!(
        "on-chain: the bank is {}; Alice's account changed by {}, Bob's by {} (gas included)",
        info.state,
        eth_delta(end[0], start[0]),
        eth_delta(end[1], start[1])
    );
    Ok(())
}
