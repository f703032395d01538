//! Two nodes on a spawned anvil: Alice opens a channel with Bob, pays him ten times, and closes.
//! `cargo run -p vbank --example open_pay_close`

use std::time::Duration;

use vbank::Builder;

const ETH: u128 = 1_000_000_000_000_000_000;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let anvil = vbank_client::LocalChain::spawn()?; // a dev chain: the pinned anvil
    let dir = tempfile::tempdir()?;
    let fast = Duration::from_millis(200);
    let alice = Builder::new(dir.path().join("alice.redb"), anvil.signer(1)?).chain(anvil.endpoint()).poll(fast);
    let alice = alice.start().await?;
    // Bob joins channels whose contract checks out on chain, and pays his deposit by himself.
    let bob = Builder::new(dir.path().join("bob.redb"), anvil.signer(2)?).chain(anvil.endpoint()).poll(fast);
    let bob = bob.accept_channels(60, 86_400).auto_deposit(ETH).start().await?;

    let channel = alice.open_channel(&bob.uri().ok_or("Bob listens")?, [ETH, ETH], 3600).await?;
    for _ in 0..10 {
        let id = alice.pay(channel, ETH / 100).await?; // acknowledged: Bob revoked his old sheet
        println!("payment {id} acknowledged");
    }
    println!("Alice {} wei, Bob {} wei", alice.balance(channel).await?, bob.balance(channel).await?);

    let tx = alice.close(channel).await?; // cooperative: Bob's node signs the close
    println!("closed in tx {} ({} gas)", tx.hash, tx.gas_used);
    alice.stop().await;
    bob.stop().await;
    Ok(())
}
