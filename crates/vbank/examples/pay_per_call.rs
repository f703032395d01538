//! Pay-per-call: Bob runs a small HTTP service that charges every request through a payment
//! channel; Alice's client pays before each call. A request the channel has not paid for gets
//! `402 Payment Required`. `cargo run -p vbank --example pay_per_call`

use std::{sync::Arc, time::Duration};

use alloy::primitives::Address;
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpStream},
    sync::Mutex,
};
use vbank::{Builder, Node};

const ETH: u128 = 1_000_000_000_000_000_000;
const PRICE: u128 = ETH / 1000; // per call

/// Serves `GET /time` to clients whose channel (header `X-Channel`) has paid for the call: the
/// credit is what Bob received on the channel less what he already served.
async fn serve(bob: Arc<Node>, deposit: u128, listener: TcpListener) {
    let served = Arc::new(Mutex::new(std::collections::HashMap::<Address, u128>::new()));
    loop {
        let Ok((stream, _)) = listener.accept().await else { return };
        let (bob, served) = (Arc::clone(&bob), Arc::clone(&served));
        tokio::spawn(async move {
            let mut reader = BufReader::new(stream);
            let mut channel = None;
            let mut line = String::new();
            while reader.read_line(&mut line).await.unwrap_or(0) > 2 {
                if let Some(v) = line.strip_prefix("X-Channel: ") {
                    channel = v.trim().parse::<Address>().ok();
                }
                line.clear();
            }
            let mut served = served.lock().await;
            let paid = match channel {
                Some(c) => bob.balance(c).await.unwrap_or(0).saturating_sub(deposit),
                None => 0,
            };
            let used = channel.map_or(0, |c| served.get(&c).copied().unwrap_or(0));
            let (status, body) = if paid >= used + PRICE {
                served.insert(channel.unwrap_or_default(), used + PRICE);
                ("200 OK", format!("{:?}\n", std::time::SystemTime::now()))
            } else {
                ("402 Payment Required", format!("pay {PRICE} wei on your channel first\n"))
            };
            let reply = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\n\r\n{body}", body.len());
            let _ = reader.into_inner().write_all(reply.as_bytes()).await;
        });
    }
}

/// One call to the service: its status line.
async fn call(at: std::net::SocketAddr, channel: Address) -> Result<String, Box<dyn std::error::Error>> {
    let mut s = TcpStream::connect(at).await?;
    s.write_all(format!("GET /time HTTP/1.1\r\nHost: bob\r\nX-Channel: {channel}\r\n\r\n").as_bytes()).await?;
    let mut reply = String::new();
    s.read_to_string(&mut reply).await?;
    Ok(reply.lines().next().unwrap_or_default().to_string())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let anvil = vbank_client::LocalChain::spawn()?;
    let dir = tempfile::tempdir()?;
    let fast = Duration::from_millis(200);
    let alice = Builder::new(dir.path().join("alice.redb"), anvil.signer(1)?).chain(anvil.endpoint()).poll(fast);
    let alice = alice.start().await?;
    let bob = Builder::new(dir.path().join("bob.redb"), anvil.signer(2)?).chain(anvil.endpoint()).poll(fast);
    let bob = Arc::new(bob.accept_channels(60, 86_400).auto_deposit(ETH).start().await?);
    let channel = alice.open_channel(&bob.uri().ok_or("Bob listens")?, [ETH, ETH], 3600).await?;

    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let at = listener.local_addr()?;
    tokio::spawn(serve(Arc::clone(&bob), ETH, listener));

    println!("unpaid call: {}", call(at, channel).await?);
    assert!(call(at, channel).await?.contains("402"));
    for i in 1..=5 {
        alice.pay(channel, PRICE).await?; // acknowledged: Bob's node counted it first
        let status = call(at, channel).await?;
        println!("call {i} after paying {PRICE} wei: {status}");
        assert!(status.contains("200"), "{status}");
    }
    assert!(call(at, channel).await?.contains("402"), "the sixth call was not paid for");
    println!("Bob's balance: {} wei", bob.balance(channel).await?);
    alice.stop().await;
    Ok(())
}
