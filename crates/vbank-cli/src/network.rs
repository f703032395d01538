//! `vbank invoice`, `vbank pay --invoice` and `vbank graph`: the payment network, through the
//! party's running node (its links, graph and router live there).

use std::{path::Path, time::Duration};

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::json;
use vbank::Client;
use vbank::{PaymentStatus, control_path};

use crate::units::{format_eth, parse_amount};

#[derive(Args, Debug)]
pub(crate) struct InvoiceArgs {
    /// This party's store (its `vbank node` must be running).
    #[arg(long)]
    store: std::path::PathBuf,
    /// The amount asked: "0.01", "5gwei", "1000wei".
    #[arg(long, allow_hyphen_values = true)]
    amount: String,
    /// What it is for (printed to the payer).
    #[arg(long, default_value = "")]
    memo: String,
    /// Seconds the invoice stays payable.
    #[arg(long, default_value_t = 3600)]
    expires_in: u64,
    /// The chain the payment is made on (default: the chain of this party's channels).
    #[arg(long)]
    chain_id: Option<u64>,
}

#[derive(Args, Debug)]
pub(crate) struct GraphArgs {
    /// This party's store (its `vbank node` must be running).
    #[arg(long)]
    store: std::path::PathBuf,
}

/// The running node of the party whose store is `store`.
async fn node(store: &Path) -> Result<Client> {
    Client::running(store).await.with_context(|| {
        format!(
            "no running node answers at {}: start `vbank node --store {}` first (invoices and routed payments \
             need the node: its links, graph and router)",
            control_path(store).display(),
            store.display()
        )
    })
}

pub(crate) async fn invoice(args: InvoiceArgs, json_mode: bool) -> Result<()> {
    let amount = parse_amount(&args.amount).context("--amount")?;
    let mut client = node(&args.store).await?;
    let chain_id = match args.chain_id {
        Some(c) => c,
        None => client
            .status()
            .await
            .context("asking the node")?
            .channels
            .first()
            .map(|c| c.params.chain_id)
            .context("this party has no channel yet: give --chain-id")?,
    };
    let (invoice, hash) =
        client.invoice(chain_id, amount, &args.memo, args.expires_in).await.context("asking the node")?;
    if json_mode {
        println!("{}", json!({ "invoice": invoice, "hash": hash, "amount": amount.to_string() }));
    } else {
        eprintln!(
            "invoice for {} (payment hash {hash}); the payer runs `vbank pay --invoice <it>`:",
            format_eth(amount)
        );
        println!("{invoice}");
    }
    Ok(())
}

pub(crate) async fn pay_invoice(
    store: &Path,
    invoice: &str,
    max_fee: Option<u128>,
    window: u64,
    timeout: u64,
    json_mode: bool,
) -> Result<()> {
    // Checked here first, for a clear error before anything reaches the node.
    let decoded = vbank::Invoice::decode(invoice).context("--invoice")?;
    let mut client = node(store).await?;
    let paying = client.pay_invoice(invoice, max_fee.unwrap_or(u128::MAX), window, Duration::from_secs(timeout));
    let payment = tokio::time::timeout(Duration::from_secs(timeout + 30), paying)
        .await
        .context("the node did not answer")?
        .context("asking the node")?;
    let PaymentStatus::Succeeded { preimage } = &payment.status else {
        bail!("payment not made: {:?}", payment.status)
    };
    if json_mode {
        println!(
            "{}",
            json!({ "hash": payment.hash, "preimage": preimage, "amount": payment.amount.to_string(),
                    "fee": payment.fee.to_string(), "hops": payment.hops, "attempts": payment.attempts })
        );
    } else {
        println!(
            "paid {} to {} ({}) over {} hop(s), {} in fees, {} route(s) tried; proof of payment (preimage) {preimage}",
            format_eth(payment.amount),
            decoded.payee_address(),
            if decoded.memo.is_empty() { "no memo".to_string() } else { format!("\"{}\"", decoded.memo) },
            payment.hops,
            format_eth(payment.fee),
            payment.attempts
        );
    }
    Ok(())
}

pub(crate) async fn graph(args: GraphArgs, json_mode: bool) -> Result<()> {
    let mut client = node(&args.store).await?;
    let (nodes, channels) = client.graph().await.context("asking the node")?;
    if json_mode {
        println!("{}", json!({ "nodes": nodes, "channels": channels }));
        return Ok(());
    }
    println!("{} node(s) announced:", nodes.len());
    for a in &nodes {
        println!(
            "  {}  fee {} + {} ppm, min window {} s, announced at {}",
            a.uri,
            format_eth(a.fee_base),
            a.fee_ppm,
            a.min_window,
            a.timestamp
        );
    }
    println!("{} channel(s):", channels.len());
    for c in &channels {
        println!(
            "  {}  {} – {}  capacity {}{}",
            c.id,
            c.parties[0],
            c.parties[1],
            format_eth(c.capacity),
            if c.token.is_zero() { String::new() } else { format!(" of token {}", c.token) }
        );
    }
    Ok(())
}
