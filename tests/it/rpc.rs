//! (g) the RPC goes away mid-operation: a clear error, state intact, the operation completes after
//! reconnecting; the watcher survives the drop. Also an unreachable and a wrong-chain endpoint.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{net::TcpListener, task::JoinSet};
use vbank_client::{Chain, Error, OnChain, OnChainState, Punisher, WatchEvent, Watcher};
use vbank_e2e::{ETH, open_channel, spawn_chain};

/// A TCP proxy on loopback in front of anvil that can be taken down and brought back on the same port.
struct Proxy {
    port: u16,
    target: String,
    tasks: Option<JoinSet<()>>,
}

impl Proxy {
    async fn start(target: &str) -> Self {
        let target = target.trim_start_matches("http://").replace("localhost", "127.0.0.1");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let mut p = Self { port, target, tasks: None };
        p.serve(listener);
        p
    }

    fn serve(&mut self, listener: TcpListener) {
        let target = self.target.clone();
        let mut set = JoinSet::new();
        set.spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else { return };
                let target = target.clone();
                conns.spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        self.tasks = Some(set);
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Drops the listener and every open connection.
    fn stop(&mut self) {
        self.tasks = None; // JoinSet aborts its tasks on drop (and the connection set with them)
    }

    async fn restart(&mut self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).await.expect("rebind the same port");
        self.serve(listener);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_drop_mid_operation_then_reconnect() {
    let mut net = open_channel(spawn_chain(), [ETH, ETH], 3600, true).await;
    let mut proxy = Proxy::start(&net.local.endpoint()).await;
    let alice = Chain::connect(&proxy.url(), net.alice.chain.signer().clone(), None).await.expect("via proxy");
    let alice_onchain = OnChain::new(alice, net.address);
    net.pay(1, ETH / 3);
    let state_before = net.alice.channel.state().clone();
    let sheet = net.alice.channel.latest().expect("sheet").clone();

    proxy.stop();
    let err = alice_onchain.liquidate(&sheet).await.expect_err("the RPC is gone");
    assert!(matches!(err, Error::Rpc(_)), "{err:?}");
    assert_eq!(net.alice.channel.state(), &state_before, "the off-chain state is intact");
    assert_eq!(net.carol_onchain().info().await.expect("info").state, OnChainState::Running, "nothing was sent");

    proxy.restart().await;
    alice_onchain.liquidate(&sheet).await.expect("completes after reconnect");
    let l = net.carol_onchain().info().await.expect("info").liquidation.expect("liquidated");
    assert_eq!((l.nonce, l.locked), (sheet.nonce, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_survives_an_rpc_drop() {
    let mut net = open_channel(spawn_chain(), [ETH, ETH], 3600, true).await;
    net.pay(1, ETH / 2);
    let stale = net.alice.channel.latest().expect("sheet").clone();
    net.pay(0, ETH / 2);
    let mut proxy = Proxy::start(&net.local.endpoint()).await;
    let bob_via_proxy = Chain::connect(&proxy.url(), net.bob.chain.signer().clone(), None).await.expect("via proxy");
    let bob = Arc::new(Mutex::new(
        vbank_core::Channel::restore(net.bob.channel.state().clone(), net.bob.chain.signer().clone()).expect("restore"),
    ));
    let punisher: Punisher = Arc::new(move |n, w| bob.lock().ok().and_then(|c| c.punishment(n, w)));
    let mut watcher =
        Watcher::new(OnChain::new(bob_via_proxy, net.address), punisher, Duration::from_millis(100)).spawn();
    proxy.stop();
    net.alice.onchain.liquidate(&stale).await.expect("alice cheats while bob's RPC is down");
    let saw_error = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let Some(WatchEvent::RpcError(_)) = watcher.next().await {
                return true;
            }
        }
    })
    .await
    .expect("the watcher reports the outage");
    assert!(saw_error);
    proxy.restart().await;
    let punished = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let Some(WatchEvent::Punished { nonce, .. }) = watcher.next().await {
                return nonce;
            }
        }
    })
    .await
    .expect("punished after the RPC came back");
    assert_eq!(punished, stale.nonce);
    assert_eq!(net.carol_onchain().info().await.expect("info").state, OnChainState::Closed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_and_wrong_chain_endpoints_are_clear_errors() {
    let local = spawn_chain();
    let key = local.signer(0).expect("key");
    let err = Chain::connect("http://127.0.0.1:1", key.clone(), None).await.expect_err("nothing listens on port 1");
    assert!(matches!(err, Error::Unreachable { .. }), "{err:?}");
    assert!(err.to_string().starts_with("RPC endpoint http://127.0.0.1:1 is unreachable"), "{err}");
    let err = Chain::connect("not a url", key.clone(), None).await.expect_err("bad url");
    assert!(err.to_string().contains("bad URL"), "{err}");
    let err = Chain::connect(&local.endpoint(), key.clone(), Some(1)).await.expect_err("anvil is 31337");
    assert!(matches!(err, Error::WrongChain { expected: 1, actual: 31337 }), "{err:?}");
    let chain = Chain::connect(&local.endpoint(), key, Some(31337)).await.expect("right chain");
    let err = OnChain::new(chain, alloy::primitives::Address::repeat_byte(7)).info().await.expect_err("no contract");
    assert!(matches!(err, Error::NotAChannel(_)), "{err:?}");
}
