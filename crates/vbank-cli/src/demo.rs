//! `vbank demo`: the article's story on an embedded chain, step by step.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use alloy::primitives::{Address, B256, I256, U256};
use alloy::signers::local::PrivateKeySigner;
use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::json;
use vbank_client::{Chain, LocalChain, OnChain, WatchEvent, Watcher, deploy};
use vbank_contracts::{Compiler, find_contracts_dir};
use vbank_core::{Channel, ChannelParams, LiquidationSheet, exchange};

use crate::units::{format_eth, parse_amount};

#[derive(Args, Debug)]
pub(crate) struct DemoArgs {
    /// Off-chain payments, alternating Alice → Bob and Bob → Alice.
    #[arg(long, default_value_t = 1000)]
    payments: u32,
    /// Each party's deposit.
    #[arg(long, default_value = "5")]
    deposit: String,
    /// Lock period in seconds.
    #[arg(long, default_value_t = 3600)]
    lock: u64,
}

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

    // 4. Sheet 0, countersigned both ways, before any money goes in.
    let params =
        ChannelParams { chain_id: local.chain_id(), contract: address, parties: [alice, bob], deposits: [deposit; 2] };
    let mut a = Channel::new(params.clone(), 0, alice_key.clone(), seed())?;
    let mut b = Channel::new(params, 1, bob_key.clone(), seed())?;
    let open = a.open()?;
    exchange(&mut a, &mut b, 0, open).context("opening")?;
    let on_a = OnChain::new(alice_chain.clone(), address);
    let on_b = OnChain::new(bob_chain.clone(), address);
    let da = on_a.deposit().await.context("Alice's deposit")?;
    let db = on_b.deposit().await.context("Bob's deposit")?;
    rows.push(Row {
        step: "fund",
        explain: "each holds balance sheet 0 countersigned by the other, then both deposit: the bank runs".into(),
        alice: format_eth(deposit),
        bob: format_eth(deposit),
        gas: Some(da.gas_used + db.gas_used),
    });

    // 5. Payments both ways; remember a sheet where Alice had more, to cheat with later.
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let unit = deposit / 1000;
    let mut stale: Option<LiquidationSheet> = None;
    let t0 = Instant::now();
    for i in 0..args.payments {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let payer = (i % 2) as usize;
        let amount = unit.max(1) * u128::from(1 + rng % 20);
        let p = if payer == 0 { &mut a } else { &mut b };
        if p.spendable() < amount {
            continue;
        }
        p.pay(amount)?;
        let m = p.propose()?.context("a proposal")?;
        exchange(&mut a, &mut b, payer, m).context("a payment")?;
        let latest = a.latest().context("Alice's sheet")?;
        if stale.as_ref().is_none_or(|s| latest.balances[0] > s.balances[0]) {
            stale = Some(latest.clone());
        }
    }
    let elapsed = t0.elapsed();
    let bal = a.balances();
    rows.push(Row {
        step: "pay",
        explain: format!(
            "{} payments cleared off-chain, each a new balance sheet countersigned by the other and the older one waived \
             ({:.0} updates/s, no gas)",
            a.nonce(),
            a.nonce() as f64 / elapsed.as_secs_f64().max(1e-9)
        ),
        alice: format_eth(bal[0]),
        bob: format_eth(bal[1]),
        gas: None,
    });
    let stale = stale.context("no payment was made")?;
    if stale.nonce == a.nonce() {
        // Alice's best sheet is the latest: make one more payment so that it is revoked.
        a.pay(1)?;
        let m = a.propose()?.context("a proposal")?;
        exchange(&mut a, &mut b, 0, m).context("a payment")?;
    }

    // 6. Bob's watcher, then Alice cheats with the revoked sheet.
    let bob_channel = Arc::new(Mutex::new(b));
    let punisher_channel = Arc::clone(&bob_channel);
    let punisher: vbank_client::Punisher = Arc::new(move |nonce: u64, waiver: Address| {
        punisher_channel.lock().ok().and_then(|c| c.punishment(nonce, waiver))
    });
    let mut watcher = Watcher::new(on_b.clone(), punisher, Duration::from_millis(200)).spawn();
    let liq = on_a.liquidate(&stale).await.context("Alice's liquidation")?;
    rows.push(Row {
        step: "liquidate",
        explain: format!(
            "Alice liquidates with sheet {} (she had more then), which she had waived: Bob is paid his balance in it at once, \
             hers is frozen for {} s",
            stale.nonce, args.lock
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
    let info = on_a.info().await?;
    let end = [alice_chain.balance(alice).await?, alice_chain.balance(bob).await?];

    if json_mode {
        println!(
            "{}",
            json!({
                "contract": address, "chain_id": local.chain_id(), "compile": note,
                "updates": a.nonce(), "updates_per_second": a.nonce() as f64 / elapsed.as_secs_f64().max(1e-9),
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
