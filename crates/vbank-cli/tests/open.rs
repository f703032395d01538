//! `vbank open` against a `vbank node --accept-channels --auto-deposit`, `vbank close --wait`,
//! and `vbank watch` punishing a stale liquidation while the node is down.

use std::{
    io::Read,
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use alloy::{primitives::Address, signers::local::PrivateKeySigner};
use vbank_core::Channel;
use vbank_node::{RedbStore, Store};

const ALICE_KEY: &str = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
const BOB_KEY: &str = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";

fn key(k: &str) -> PrivateKeySigner {
    k.parse().expect("key")
}

fn vbank(key: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vbank"))
        .arg("--json")
        .args(args)
        .env("VBANK_PRIVATE_KEY", key)
        .output()
        .expect("run")
}

fn ok(key: &str, args: &[&str]) -> serde_json::Value {
    let o = vbank(key, args);
    assert!(
        o.status.success(),
        "{args:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", String::from_utf8_lossy(&o.stdout)))
}

/// A child process killed when dropped (a failing test leaves nothing running).
struct Proc(Child);

impl Proc {
    fn stop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts `vbank node` with `args`, logging to `<store>.log`; returns it and its node URI (from
/// the first line of the log).
fn start_node(key: &str, store: &str, args: &[&str]) -> (Proc, String) {
    let log = format!("{store}.log");
    let out = std::fs::File::create(&log).expect("log file");
    let err = out.try_clone().expect("log file");
    let child = Proc(
        Command::new(env!("CARGO_BIN_EXE_vbank"))
            .args(["node", "--store", store, "--listen", "127.0.0.1:0"])
            .args(args)
            .env("VBANK_PRIVATE_KEY", key)
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start vbank node"),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(line) = text.lines().next().filter(|_| text.contains('\n')) {
            let uri = line.split("node URI ").nth(1).and_then(|r| r.split(';').next());
            let uri = uri.unwrap_or_else(|| panic!("no node URI in {line:?}"));
            return (child, uri.to_string());
        }
        assert!(Instant::now() < deadline, "the node did not start: {text}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Bob's node accepting channels; returns it and its node URI.
fn bob_node(store: &str, url: &str) -> (Proc, String) {
    let args = ["--rpc-url", url, "--poll-ms", "100", "--accept-channels", "--min-lock", "2", "--auto-deposit", "1"];
    start_node(BOB_KEY, store, &args)
}

/// `vbank open` of a 1 + 1 ETH channel with Bob's node at `connect`.
fn open_with_bob(store: &str, connect: &str, lock: &str, url: &str) -> Output {
    let bob = key(BOB_KEY).address().to_string();
    let args = ["open", "--store", store, "--connect", connect, "--peer", &bob, "--deposits", "1,1", "--lock", lock];
    vbank(ALICE_KEY, &[&args[..], &["--rpc-url", url, "--timeout", "60"]].concat())
}

/// The same, which must succeed: its JSON.
fn opened(store: &str, connect: &str, url: &str) -> serde_json::Value {
    let o = open_with_bob(store, connect, "600", url);
    assert!(o.status.success(), "{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).expect("json")
}

#[test]
fn open_in_one_command_close_with_wait_and_watch_punishes() {
    let local = vbank_client::LocalChain::spawn().expect("anvil");
    let url = local.endpoint();
    let dir = tempfile::tempdir().expect("tmp");
    let path = |n: &str| dir.path().join(n).to_str().expect("utf8").to_string();
    let (alice_store, bob_store) = (path("alice.redb"), path("bob.redb"));
    let (mut node, connect) = bob_node(&bob_store, &url);
    let open = |lock: &str| open_with_bob(&alice_store, &connect, lock, &url);

    // A node that does not accept channels hangs up at the handshake: nothing is deployed.
    let (_closed, closed_at) = start_node(BOB_KEY, &path("closed.redb"), &[]);
    let o = open_with_bob(&alice_store, &closed_at, "3600", &url);
    let err = String::from_utf8_lossy(&o.stdout);
    assert!(!o.status.success() && err.contains("before deploying anything"), "{err}");
    assert!(err.contains("does not accept new ones"), "{err}");

    // Bob's node refuses a lock period under its minimum: it says so before anything is deployed.
    let o = open("1");
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stdout);
    assert!(err.contains("accepts lock periods from 2 s") && err.contains("nothing was done"), "{err}");
    assert!(!err.contains("channel 0x"), "nothing deployed: {err}");
    let s = ok(ALICE_KEY, &["status", "--store", &alice_store]);
    assert_eq!(s["channels"], serde_json::json!([]), "{s}");

    // One command each: deployed, sheet 0 both ways, both deposits (Bob's automatically), running.
    let mut channels = Vec::new();
    for lock in ["3600", "2"] {
        let o = open(lock);
        let bob_log = std::fs::read_to_string(format!("{bob_store}.log")).unwrap_or_default();
        assert!(
            o.status.success(),
            "{}{}\nBob's node:\n{bob_log}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
        assert_eq!(v["state"], "Running", "{v}");
        assert!(v["deploy_gas"].as_u64().is_some_and(|g| g > 50_000) && v["deposit_gas"].as_u64().is_some(), "{v}");
        channels.push(v["channel"].as_str().expect("address").to_string());
    }
    let pay = |c: &str, amount: &str, count: &str| {
        ok(
            ALICE_KEY,
            &[
                "pay",
                "--store",
                &alice_store,
                "--connect",
                &connect,
                "--channel",
                c,
                "--amount",
                amount,
                "--count",
                count,
            ],
        )
    };
    let (long, short) = (&channels[0], &channels[1]);
    assert_eq!(pay(long, "0.1", "1")["acknowledged"], 1);
    let stale = {
        let a: Address = long.parse().expect("address");
        let state = RedbStore::open(dir.path().join("alice.redb").as_path()).expect("store").load(a).expect("load");
        Channel::restore(state.expect("channel"), key(ALICE_KEY)).expect("restore").latest().expect("sheet").clone()
    };
    assert_eq!(pay(long, "0.2", "3")["acknowledged"], 3);
    // Without --connect: Bob's node is reached where `vbank open` reached it (kept in the store).
    let v = ok(ALICE_KEY, &["pay", "--store", &alice_store, "--channel", short, "--amount", "0.3", "--count", "2"]);
    assert_eq!(v["amount"], "600000000000000000", "{v}");
    node.stop();

    // Bob's node is gone: Alice liquidates the short channel and waits out its 2 s lock.
    let o = vbank(
        ALICE_KEY,
        &[
            "close",
            "--store",
            &alice_store,
            "--channel",
            short,
            "--rpc-url",
            &url,
            "--wait",
            "--force",
            "--timeout",
            "2",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("waiting for the lock period to end: "), "{o:?}");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["close"], "unilateral", "{v}");
    assert!(v["detail"].as_str().is_some_and(|d| d.contains("paid out")), "{v}");
    let i = ok(ALICE_KEY, &["info", "--rpc-url", &url, "--channel", short]);
    assert_eq!((i["state"].as_str(), i["outstanding"].as_str()), (Some("Closed"), Some("0")), "{i}");

    // Bob watches without his node; Alice cheats on the long channel; `vbank watch` punishes and
    // ends once every channel is closed.
    let mut watch = Proc(
        Command::new(env!("CARGO_BIN_EXE_vbank"))
            .args(["watch", "--store", &bob_store, "--rpc-url", &url, "--poll-ms", "100"])
            .env("VBANK_PRIVATE_KEY", BOB_KEY)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start vbank watch"),
    );
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let chain = vbank_client::Chain::connect(&url, key(ALICE_KEY), None).await.expect("connect");
        let c = vbank_client::OnChain::new(chain, long.parse().expect("address"));
        c.liquidate(&stale).await.expect("alice cheats with a revoked sheet");
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while watch.0.try_wait().expect("wait").is_none() {
        assert!(Instant::now() < deadline, "vbank watch did not punish and stop");
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut out = String::new();
    watch.0.stdout.take().expect("stdout").read_to_string(&mut out).expect("read");
    assert!(out.contains("revoked sheet 1: punished"), "{out}");
    let i = ok(ALICE_KEY, &["info", "--rpc-url", &url, "--channel", long]);
    assert_eq!((i["state"].as_str(), i["outstanding"].as_str()), (Some("Closed"), Some("0")), "{i}");
}

/// Both parties run nodes (two processes, each holding its store); every command goes through
/// the party's own node: open, payments both ways, status, a cooperative close.
#[test]
fn two_running_nodes_pay_both_ways_through_their_control_sockets() {
    let local = vbank_client::LocalChain::spawn().expect("anvil");
    let url = local.endpoint();
    let dir = tempfile::tempdir().expect("tmp");
    let path = |n: &str| dir.path().join(n).to_str().expect("utf8").to_string();
    let (alice_store, bob_store) = (path("alice.redb"), path("bob.redb"));
    let (mut bob_node, connect) = bob_node(&bob_store, &url);
    let (mut alice_node, _) = start_node(ALICE_KEY, &alice_store, &["--rpc-url", &url]);
    let line = std::fs::read_to_string(format!("{alice_store}.log")).expect("log");
    assert!(line.contains("control socket"), "{line}");

    let v = opened(&alice_store, &connect, &url);
    assert_eq!(v["state"], "Running", "{v}");
    let c = v["channel"].as_str().expect("channel").to_string();
    // No --connect: the nodes are linked since the open.
    let a = ok(ALICE_KEY, &["pay", "--store", &alice_store, "--channel", &c, "--amount", "0.1", "--count", "5"]);
    assert_eq!(a["acknowledged"], 5, "{a}");
    let b = ok(BOB_KEY, &["pay", "--store", &bob_store, "--channel", &c, "--amount", "0.05", "--count", "3"]);
    assert_eq!(b["acknowledged"], 3, "{b}");
    // A payment id given twice pays once (the second run reports the first's outcome).
    for _ in 0..2 {
        let i =
            ok(ALICE_KEY, &["pay", "--store", &alice_store, "--channel", &c, "--amount", "0.01", "--id", "order-7"]);
        assert_eq!(i["acknowledged"], 1, "{i}");
    }
    ok(BOB_KEY, &["pay", "--store", &bob_store, "--channel", &c, "--amount", "0.01"]);
    let s = ok(ALICE_KEY, &["status", "--store", &alice_store, "--rpc-url", &url]);
    assert_eq!(s["node_running"], true, "{s}");
    assert_eq!(
        s["channels"][0]["onchain"],
        serde_json::json!({ "state": "Running", "deposited": [true, true] }),
        "{s}"
    );
    assert_eq!(s["channels"][0]["balances"], serde_json::json!(["650000000000000000", "1350000000000000000"]), "{s}");
    // Bob overdraws: refused by his node, nothing changes.
    let o = vbank(BOB_KEY, &["pay", "--store", &bob_store, "--channel", &c, "--amount", "2"]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stdout).contains("can pay"), "{o:?}");

    let v = ok(BOB_KEY, &["close", "--store", &bob_store, "--channel", &c, "--rpc-url", &url]);
    assert_eq!(v["close"], "cooperative", "{v}");
    let i = ok(ALICE_KEY, &["info", "--rpc-url", &url, "--channel", &c]);
    assert_eq!((i["state"].as_str(), i["outstanding"].as_str()), (Some("Closed"), Some("0")), "{i}");

    // A second channel, opened through Alice's running node: her node watches it too. Bob keeps
    // a sheet (asked from his node's control socket), pays it away, then liquidates with it.
    let v = opened(&alice_store, &connect, &url);
    let c2 = v["channel"].as_str().expect("channel").to_string();
    ok(ALICE_KEY, &["pay", "--store", &alice_store, "--channel", &c2, "--amount", "0.5"]);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let stale = rt.block_on(async {
        let mut bob_control =
            vbank_node::ControlClient::connect(std::path::Path::new(&format!("{bob_store}.sock"))).await.expect("bob");
        let request = vbank_node::Request::Latest { channel: c2.parse().expect("address") };
        match bob_control.request(&request).await.expect("latest") {
            vbank_node::Reply::Latest { sheet: Some(s) } => s,
            other => panic!("{other:?}"),
        }
    });
    assert_eq!(stale.balances[1], 1_500_000_000_000_000_000);
    ok(BOB_KEY, &["pay", "--store", &bob_store, "--channel", &c2, "--amount", "0.4"]);
    rt.block_on(async {
        let chain = vbank_client::Chain::connect(&url, key(BOB_KEY), None).await.expect("connect");
        vbank_client::OnChain::new(chain, c2.parse().expect("address")).liquidate(&stale).await.expect("bob cheats");
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let i = ok(ALICE_KEY, &["info", "--rpc-url", &url, "--channel", &c2]);
        if i["state"] == "Closed" {
            break;
        }
        let log = std::fs::read_to_string(format!("{alice_store}.log")).unwrap_or_default();
        assert!(Instant::now() < deadline, "alice's node did not punish: {i}\n{log}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // The node logs the punishment once its transaction's receipt is in, a moment after the
    // contract shows Closed.
    loop {
        let log = std::fs::read_to_string(format!("{alice_store}.log")).unwrap_or_default();
        if log.contains("punished") {
            break;
        }
        assert!(Instant::now() < deadline, "alice's node did not log the punishment:\n{log}");
        std::thread::sleep(Duration::from_millis(200));
    }

    // SIGTERM: the node stops and removes its control socket.
    let term = Command::new("kill").args(["-TERM", &alice_node.0.id().to_string()]).status().expect("kill");
    assert!(term.success());
    alice_node.0.wait().expect("alice's node exits");
    assert!(!std::path::Path::new(&format!("{alice_store}.sock")).exists());
    bob_node.stop();
}

/// `vbank open --token`: a channel of an ERC-20 deployed on the chain; both deposits approved and
/// pulled (Alice's by `open`, Bob's by his node's auto-deposit), payments, a cooperative close
/// paying tokens.
#[test]
fn open_a_token_channel_in_one_command() {
    use alloy::primitives::U256;
    let local = vbank_client::LocalChain::spawn().expect("anvil");
    let url = local.endpoint();
    let [alice, bob] = [key(ALICE_KEY).address(), key(BOB_KEY).address()];
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let unit = U256::from(10u64).pow(U256::from(18u64));
    let token = rt.block_on(async {
        let carol = local.signer(2).expect("key");
        let chain = vbank_client::Chain::connect(&url, carol, None).await.expect("connect");
        let token = vbank_contracts::StandardToken::deploy(chain.provider().clone()).await.expect("deploy token");
        for who in [alice, bob] {
            token.mint(who, U256::from(5u64) * unit).send().await.expect("mint").get_receipt().await.expect("mined");
        }
        token
    });
    let balance = |who: Address| rt.block_on(async { token.balanceOf(who).call().await.expect("balance") });
    let t = token.address().to_string();
    let dir = tempfile::tempdir().expect("tmp");
    let path = |n: &str| dir.path().join(n).to_str().expect("utf8").to_string();
    let (alice_store, bob_store) = (path("alice.redb"), path("bob.redb"));
    let (_node, connect) = bob_node(&bob_store, &url);
    let bob_s = bob.to_string();
    let args = ["open", "--store", &alice_store, "--connect", &connect, "--peer", &bob_s, "--deposits", "2,1"];
    let v =
        ok(ALICE_KEY, &[&args[..], &["--lock", "600", "--token", &t, "--rpc-url", &url, "--timeout", "60"]].concat());
    assert_eq!((v["state"].as_str(), v["token"].as_str()), (Some("Running"), Some(t.to_lowercase().as_str())), "{v}");
    let c = v["channel"].as_str().expect("channel").to_string();
    let channel: Address = c.parse().expect("address");
    assert_eq!(balance(channel), U256::from(3u64) * unit, "both deposits pulled in tokens");
    assert_eq!((balance(alice), balance(bob)), (U256::from(3u64) * unit, U256::from(4u64) * unit));
    let info = ok(ALICE_KEY, &["info", "--rpc-url", &url, "--channel", &c]);
    assert_eq!(info["token"].as_str(), Some(t.to_lowercase().as_str()), "{info}");
    let pay = ["pay", "--store", &alice_store, "--connect", &connect, "--channel", &c, "--amount", "0.5"];
    assert_eq!(ok(ALICE_KEY, &pay)["acknowledged"], 1);
    let v =
        ok(ALICE_KEY, &["close", "--store", &alice_store, "--channel", &c, "--connect", &connect, "--rpc-url", &url]);
    assert_eq!(v["close"], "cooperative", "{v}");
    let half = unit / U256::from(2u64);
    assert_eq!(balance(alice), U256::from(4u64) * unit + half, "Alice: 3 + 2 - 0.5");
    assert_eq!(balance(bob), U256::from(5u64) * unit + half, "Bob: 4 + 1 + 0.5");
    assert_eq!(balance(channel), U256::ZERO);
}
