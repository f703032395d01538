//! `vbank demo`: the article's story on an embedded chain, step by step.

use std::time::{Duration, Instant};

use alloy::primitives::{Address, B256, I256, U256};
use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::json;
use vbank_client::{Chain, Factory, LocalChain, OnChain, deploy_factory};
use vbank_contracts::{Compiler, find_contracts_dir};
use vbank_core::{ChannelParams, LiquidationSheet};
use vbank_node::{Reply, Request};

use crate::{
    demo_nodes::Nodes,
    units::{format_eth, parse_amount},
};

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
    /// Run Alice's and Bob's nodes inside this process instead of as two `vbank node` processes.
    #[arg(long)]
    in_process: bool,
}

/// Bob's forwarding fee: base (wei) and parts per million.
const BOB_FEE: (u128, u32) = (1_000_000_000_000, 1_000);

/// How long any one protocol exchange may take.
const T: Duration = Duration::from_secs(30);

struct Row {
    step: &'static str,
    explain: String,
    alice: String,
    bob: String,
    gas: Option<u64>,
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
        Some(Ok(out)) if out.artifacts == vbank_contracts::embedded()? => {
            format!(
                "compiled the contracts with solc {}: identical to the embedded artifacts",
                out.artifacts.first().map(|a| a.solc_version.as_str()).unwrap_or("?")
            )
        }
        Some(Ok(_)) => {
            bail!("the contracts differ from the embedded artifacts: run `vbank compile --update-artifacts`")
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
    let carol_key = local.signer(2)?;
    let carol_chain = alice_chain.with_signer(carol_key.clone());
    let (alice, bob, carol) = (alice_key.address(), bob_key.address(), carol_key.address());
    let start = [alice_chain.balance(alice).await?, alice_chain.balance(bob).await?];
    say(format!("chain: anvil at {} (chain {}), Alice {alice}, Bob {bob}", local.endpoint(), local.chain_id()));

    // 3. The factory (once per chain, at its deterministic address), then the channel's clone.
    let (factory, deployed) = deploy_factory(&alice_chain).await.context("deploying the factory")?;
    if let Some(r) = deployed {
        rows.push(Row {
            step: "factory",
            explain: format!(
                "once per chain: the VirtualBank factory is deployed through the CREATE2 deployer at {factory}, an address \
                 fixed by its code (not part of a channel's cost)"
            ),
            alice: "-".into(),
            bob: "-".into(),
            gas: Some(r.gas_used),
        });
    }
    let mut params = ChannelParams {
        chain_id: local.chain_id(),
        contract: Address::ZERO,
        parties: [alice, bob],
        deposits: [deposit; 2],
        lock_period: args.lock,
        token: Address::ZERO,
        salt: B256::random(),
    };
    let (address, report) = Factory::new(alice_chain.clone()).open(&params).await.context("opening the channel")?;
    params.contract = address;
    rows.push(Row {
        step: "open",
        explain: format!(
            "Alice opens the channel {address} through the factory: a clone at an address that commits to the parties, \
             deposits, lock period, token and salt"
        ),
        alice: "-".into(),
        bob: "-".into(),
        gas: Some(report.gas_used),
    });

    // 4. Two nodes, each with its own crash-safe store, linked over loopback TCP. Bob's node
    //    joins channels that Alice opens once it has checked the contract on chain.
    let dir = tempfile::Builder::new().prefix("vbank-demo-").tempdir().context("a temporary directory")?;
    let mut nodes = Nodes::start(
        args.in_process,
        dir.path(),
        [&alice_key, &bob_key, &carol_key],
        &local.endpoint(),
        args.lock,
        BOB_FEE,
    )
    .await?;
    let nodes_line = nodes.describe();
    say(nodes_line.clone());
    let mut alice_party = nodes.party(0).await?;
    alice_party.link(nodes.bob_at(), bob).await.context("linking Alice's node to Bob's")?;
    let request = Request::Open { params: params.clone(), timeout_secs: T.as_secs() };
    alice_party.request(request).await.context("opening the channel")?;
    rows.push(Row {
        step: "sheet 0",
        explain: "Alice's node sends balance sheet 0 with the channel's parameters; Bob's node checks them with one \
                  channelAddress call to the factory (plus the code and the state) and countersigns: each now holds a \
                  sheet signed by the other"
            .into(),
        alice: format_eth(deposit),
        bob: format_eth(deposit),
        gas: None,
    });
    let on_a = OnChain::new(alice_chain.clone(), address);
    let on_b = OnChain::new(bob_chain.clone(), address);
    let da = on_a.deposit_agreed(&params).await.context("Alice's deposit")?;
    let db = on_b.deposit_agreed(&params).await.context("Bob's deposit")?;
    rows.push(Row {
        step: "fund",
        explain: "both deposit, safe because sheet 0 lets either liquidate: the bank runs".into(),
        alice: format_eth(deposit),
        bob: format_eth(deposit),
        gas: Some(da.gas_used + db.gas_used),
    });

    // 5. Payments both ways at once, each acknowledged before the payer's next.
    let t0 = Instant::now();
    // 1 to 40 units each: 500 payments move at most a deposit one way.
    let unit = (deposit / 20_000).max(1);
    // Alice keeps the sheet where she had most: after every payment, either side's, her node is
    // asked for her latest sheet.
    let best = std::sync::Arc::new(std::sync::Mutex::new(None::<LiquidationSheet>));
    // Amounts of 1 to `range` units, from a fixed xorshift sequence.
    let payer = |mut me: vbank::Client, mut alice_view: vbank::Client, count: u32, mut rng: u64, range: u64| {
        let best = std::sync::Arc::clone(&best);
        async move {
            let mut made = 0u32;
            for _ in 0..count {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let amount = unit * u128::from(1 + rng % range);
                let pay = Request::Pay { channel: address, amount, count: 1, timeout_secs: T.as_secs(), id: None };
                match me.request(pay).await {
                    Ok(_) => made += 1,
                    // (only with a custom --payments large enough to drain a side)
                    Err(e) if format!("{e:#}").contains("insufficient balance") => continue,
                    Err(e) => return Err(e.into()),
                }
                if let Reply::Latest { sheet: Some(l) } =
                    alice_view.request(Request::Latest { channel: address }).await?
                {
                    let mut best = best.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    if best.as_ref().is_none_or(|b| l.balances[0] > b.balances[0]) {
                        *best = Some(l);
                    }
                }
            }
            Ok::<_, anyhow::Error>(made)
        }
    };
    // Two rounds, each with both paying at once: Bob buys more in the first, Alice in the
    // second, so Alice's balance peaks in the middle — a sheet worth cheating with later.
    let (mut a_made, mut b_made) = (0, 0);
    let quarter = args.payments / 4;
    for (round, (a_range, b_range)) in [(10, 40), (40, 10)].into_iter().enumerate() {
        let a_count = if round == 0 { quarter } else { args.payments / 2 - quarter };
        let b_count = if round == 0 { quarter } else { args.payments - args.payments / 2 - quarter };
        let seed = round as u64;
        let (a_run, b_run) = tokio::join!(
            payer(nodes.party(0).await?, nodes.party(0).await?, a_count, 0x2545_f491_4f6c_dd1d + seed, a_range),
            payer(nodes.party(1).await?, nodes.party(0).await?, b_count, 0x9e37_79b9_7f4a_7c15 + seed, b_range)
        );
        a_made += a_run.context("Alice's payments")?;
        b_made += b_run.context("Bob's payments")?;
    }
    let elapsed = t0.elapsed();
    let (updates, bal) = {
        let channels = alice_party.status().await?.channels;
        let ch = channels.into_iter().find(|c| c.channel == address).context("Alice's channel")?;
        (ch.nonce, ch.balances)
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
    // 5b. The network (the article's §2.3, part 3): Carol, and a payment through Bob.
    let routed = pay_through_bob(
        &nodes,
        &mut rows,
        [&bob_chain, &carol_chain],
        [bob, carol],
        ChannelParams { salt: B256::random(), ..params.clone() },
        deposit,
    )
    .await
    .context("the payment through Bob")?;
    let bal = {
        let channels = alice_party.status().await?.channels;
        channels.into_iter().find(|c| c.channel == address).context("Alice's channel")?.balances
    };
    let stale = best.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take().context("no payment was made")?;
    if stale.nonce == updates {
        // Alice's best sheet is the latest: one more payment makes her waive it.
        let pay = Request::Pay { channel: address, amount: 1, count: 1, timeout_secs: T.as_secs(), id: None };
        alice_party.request(pay).await.context("a payment")?;
    }

    // 6. Alice cheats with the revoked sheet; Bob's node watches the chain.
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
    let punished = nodes.punished(address, say).await?;
    rows.push(Row {
        step: "punish",
        explain: format!(
            "Bob's watcher signs Waiver({}) with the waiver key Alice revealed and calls withdrawByPeer: he takes her frozen \
             balance, well before the lock ends",
            punished.nonce
        ),
        alice: format_eth(0),
        bob: format_eth(2 * deposit),
        gas: Some(punished.gas_used),
    });
    drop(alice_party);
    nodes.stop().await;
    let info = on_a.info().await?;
    let end = [alice_chain.balance(alice).await?, alice_chain.balance(bob).await?];

    if json_mode {
        println!(
            "{}",
            json!({
                "contract": address, "chain_id": local.chain_id(), "compile": note, "nodes": nodes_line,
                "payments": a_made + b_made, "updates": updates, "routed": routed,
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

/// Carol joins (Bob opens a channel to her), she invoices, Alice pays her through Bob's node;
/// then Bob and Carol close their channel cooperatively. Returns the routed payment as JSON.
async fn pay_through_bob(
    nodes: &Nodes,
    rows: &mut Vec<Row>,
    chains: [&Chain; 2],
    parties: [Address; 2],
    template: ChannelParams,
    deposit: u128,
) -> Result<serde_json::Value> {
    let [bob_chain, carol_chain] = chains;
    let [bob, carol] = parties;
    let hop = deposit / 10;
    let mut params = ChannelParams { contract: Address::ZERO, parties: [bob, carol], deposits: [hop; 2], ..template };
    let (channel, opened) = Factory::new(bob_chain.clone()).open(&params).await.context("opening Bob–Carol")?;
    params.contract = channel;
    let mut bob_party = nodes.party(1).await?;
    bob_party.link(nodes.carol_at(), carol).await.context("linking Bob's node to Carol's")?;
    bob_party.request(Request::Open { params: params.clone(), timeout_secs: T.as_secs() }).await?;
    let bob_deposit = OnChain::new(bob_chain.clone(), channel).deposit_agreed(&params).await?;
    let mut gas = opened.gas_used + bob_deposit.gas_used;
    if !nodes.carol_deposits_herself() {
        gas += OnChain::new(carol_chain.clone(), channel).deposit_agreed(&params).await?.gas_used;
    }
    let on = OnChain::new(bob_chain.clone(), channel);
    let deadline = Instant::now() + T;
    while on.state().await? != vbank_client::OnChainState::Running {
        pause(deadline, "Carol's deposit").await?;
    }
    // Alice's node learns the channel from the factory's log and Bob's fees from his announcement.
    let mut alice_party = nodes.party(0).await?;
    let deadline = Instant::now() + T;
    loop {
        if let Reply::Graph { nodes, channels } = alice_party.request(Request::Graph).await?
            && channels.iter().any(|c| c.id == channel)
            && !nodes.is_empty()
        {
            break;
        }
        pause(deadline, "Alice's node to learn the channel graph").await?;
    }
    rows.push(Row {
        step: "carol",
        explain: format!(
            "Carol joins: Bob opens channel {channel} to her through the factory and both deposit {} (Carol's node by \
             itself). Bob's node forwards payments for {} + {} ppm: it announced that to Alice's node, which also read \
             the new channel from the factory's logs",
            format_eth(hop),
            format_eth(BOB_FEE.0),
            BOB_FEE.1
        ),
        alice: "-".into(),
        bob: "-".into(),
        gas: Some(gas),
    });
    let amount = deposit / 5_000;
    let mut carol_party = nodes.party(2).await?;
    let request = Request::Invoice {
        chain_id: params.chain_id,
        amount,
        token: Address::ZERO,
        memo: "a coffee".into(),
        expires_in: 3600,
    };
    let Reply::Invoice { invoice, hash } = carol_party.request(request).await? else { bail!("no invoice") };
    rows.push(Row {
        step: "invoice",
        explain: format!(
            "Carol's node draws a secret preimage p and signs an invoice for {} (\"a coffee\"): its hash H = sha256(p) = \
             {hash} is the hash lock, and only Carol can open it. The invoice is one string ({} characters) Alice \
             can paste",
            format_eth(amount),
            invoice.len()
        ),
        alice: "-".into(),
        bob: "-".into(),
        gas: None,
    });
    let request = Request::PayInvoice { invoice, max_fee: amount, window: 3600, timeout_secs: T.as_secs() };
    let Reply::Payment { payment } = alice_party.request(request).await? else { bail!("no payment") };
    let vbank_node::PaymentStatus::Succeeded { preimage } = payment.status else { bail!("not paid: {payment:?}") };
    // Every lock of the route settled off-chain.
    let deadline = Instant::now() + T;
    loop {
        let mine = alice_party.status().await?.channels;
        let hers = carol_party.status().await?.channels;
        if mine.iter().chain(&hers).all(|c| c.locks.is_empty()) {
            break;
        }
        pause(deadline, "the locks to settle").await?;
    }
    let channels = alice_party.status().await?.channels;
    let ab = channels.iter().find(|c| c.channel == template.contract).context("Alice's channel")?.balances;
    let channels = carol_party.status().await?.channels;
    let bc = channels.iter().find(|c| c.channel == channel).context("Carol's channel")?.balances;
    rows.push(Row {
        step: "route",
        explain: format!(
            "Alice's node finds the route Alice → Bob → Carol and locks {} to Bob on H until an hour from now (the \
             time lock: one expiry for the whole route). Bob's node peels its layer of the onion (it learns only \
             \"lock {} to Carol\"), stores the link and locks that to Carol on H, same expiry. Carol's node claims \
             with p; Bob learns p from her claim and claims Alice's lock: Bob earned {} in fees, Alice holds p = \
             {preimage} as her receipt. Bob–Carol now: Bob {}, Carol {}",
            format_eth(amount + payment.fee),
            format_eth(amount),
            format_eth(payment.fee),
            format_eth(bc[0]),
            format_eth(bc[1])
        ),
        alice: format_eth(ab[0]),
        bob: format_eth(ab[1]),
        gas: None,
    });
    // Bob and Carol close their channel: Bob gets his side back, Carol her coffee money.
    let Reply::Closed { nonce, balances, signatures } =
        bob_party.request(Request::Close { channel, timeout_secs: T.as_secs() }).await?
    else {
        bail!("no close")
    };
    on.cooperative_close(nonce, balances, &signatures).await.context("closing Bob–Carol")?;
    Ok(json!({
        "amount": amount.to_string(), "fee": payment.fee.to_string(), "hops": payment.hops,
        "attempts": payment.attempts, "preimage": preimage, "carol_got": (bc[1] - hop).to_string(),
    }))
}

/// Waits a moment, unless `deadline` passed: then the wait for `what` failed.
async fn pause(deadline: Instant, what: &str) -> Result<()> {
    if Instant::now() > deadline {
        bail!("waited {T:?} for {what}");
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    Ok(())
}
