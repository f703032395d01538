//! Watching: Bob's node follows the chain by itself. Alice keeps a balance sheet, pays it away,
//! then liquidates with it anyway; Bob's node punishes her with the waiver key she revealed and
//! takes her whole deposit. `cargo run -p vbank --example watch`

use std::time::Duration;

use vbank::{Builder, ChainEvent};
use vbank_client::{OnChain, WatchEvent};

const ETH: u128 = 1_000_000_000_000_000_000;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let anvil = vbank_client::LocalChain::spawn()?;
    let dir = tempfile::tempdir()?;
    let fast = Duration::from_millis(200);
    let alice_key = anvil.signer(1)?;
    let alice = Builder::new(dir.path().join("alice.redb"), alice_key.clone()).chain(anvil.endpoint()).poll(fast);
    let alice = alice.start().await?;
    let bob = Builder::new(dir.path().join("bob.redb"), anvil.signer(2)?).chain(anvil.endpoint()).poll(fast);
    let bob = bob.accept_channels(60, 86_400).auto_deposit(ETH).start().await?;
    let mut watching = bob.chain_events().ok_or("Bob follows the chain")?;
    let channel = alice.open_channel(&bob.uri().ok_or("Bob listens")?, [ETH, ETH], 3600).await?;

    alice.pay(channel, ETH / 2).await?;
    // Alice keeps the sheet where she still had 0.5 ETH, then pays it away: she revoked it.
    let stale = alice.service().node().lock().await.channel(channel).and_then(|c| c.latest().cloned());
    let stale = stale.ok_or("a sheet")?;
    alice.pay(channel, ETH / 2).await?;
    let chain = vbank_client::Chain::connect(&anvil.endpoint(), alice_key, None).await?;
    OnChain::new(chain, channel).liquidate(&stale).await?;
    println!("Alice liquidated with revoked sheet {} (0.5 ETH hers in it)", stale.nonce);

    let punished = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            match watching.recv().await {
                Ok(ChainEvent::Watch { event: WatchEvent::Punished { nonce, report }, .. }) => {
                    return Ok((nonce, report));
                }
                Ok(e) => println!("Bob's node: {e:?}"),
                Err(e) => return Err(e),
            }
        }
    })
    .await??;
    println!(
        "Bob's node punished sheet {} in tx {} ({} gas): Alice's deposit is his",
        punished.0, punished.1.hash, punished.1.gas_used
    );
    alice.stop().await;
    bob.stop().await;
    Ok(())
}
