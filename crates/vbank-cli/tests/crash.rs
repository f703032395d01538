//! Crash safety: Bob's `vbank node` is killed with SIGKILL at random points of a payment stream
//! (50 times) and restarted from its store; no acknowledged payment is lost, his latest sheet is
//! never one he revoked, and the channel still closes.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    time::Duration,
};

use alloy::{
    primitives::{Address, B256},
    signers::local::PrivateKeySigner,
};
use vbank_core::{Channel, ChannelParams, Close, Event, Phase, recover};
use vbank_node::{Error, Frame, Node, NodeUri, RedbStore, Store, initiate, node_key, read_frame, write_frame};

const BOB_KEY: &str = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
const CONTRACT: Address = Address::repeat_byte(0xcc);
const DEPOSIT: u128 = 1_000_000_000;

fn alice_key() -> PrivateKeySigner {
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80".parse().expect("key")
}

fn bob_key() -> PrivateKeySigner {
    BOB_KEY.parse().expect("key")
}

/// Starts Bob's node with the test channel; returns it and its port.
fn start_bob(store: &std::path::Path, port: u16) -> (Child, u16) {
    start_bob_with(store, port, CONTRACT, &format!("{DEPOSIT}wei,{DEPOSIT}wei"), &[])
}

/// Starts Bob's node, adding `channel` with `deposits` if its store lacks it.
fn start_bob_with(
    store: &std::path::Path,
    port: u16,
    channel: Address,
    deposits: &str,
    extra: &[&str],
) -> (Child, u16) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vbank"))
        .args(["node", "--store", store.to_str().expect("utf8"), "--listen", &format!("127.0.0.1:{port}")])
        .args(["--channel", &channel.to_string(), "--peer", &alice_key().address().to_string()])
        .args(["--deposits", deposits, "--index", "1"])
        .args(extra)
        .env("VBANK_PRIVATE_KEY", BOB_KEY)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start vbank node");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("first line");
    let port = line.split_whitespace().nth(2).and_then(|a| a.rsplit(':').next()).and_then(|p| p.parse().ok());
    (child, port.unwrap_or_else(|| panic!("no port in {line:?}")))
}

/// Bob's node URI at `port` on loopback.
fn bob_uri(port: u16) -> String {
    NodeUri::new(node_key(&bob_key()), "127.0.0.1", port).to_string()
}

/// Alice handles one frame from Bob: the frames to send back (her reply, then a proposal of
/// whatever is queued) and the wei newly acknowledged. Duplicates after a reconnect are ignored.
fn alice_handles(alice: &mut Node<RedbStore>, bob: Address, f: &Frame) -> (Vec<Frame>, u128) {
    match alice.handle(bob, f) {
        Ok((reply, events)) => {
            let acked = events
                .iter()
                .map(|e| match e {
                    Event::PaymentsAcked { amount, .. } => *amount,
                    _ => 0,
                })
                .sum();
            (reply.into_iter().chain(alice.propose(CONTRACT).expect("propose")).collect(), acked)
        }
        Err(Error::Protocol(e)) if e.severity() == vbank_core::Severity::Ignore => (Vec::new(), 0),
        Err(e) => panic!("alice refused {f:?}: {e}"),
    }
}

/// A tiny deterministic generator (xorshift).
struct Rng(u64);

impl Rng {
    fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_sigkills_lose_no_acknowledged_payment() {
    let dir = tempfile::tempdir().expect("tmp");
    let bob_store = dir.path().join("bob.redb");
    let mut alice =
        Node::open(alice_key(), RedbStore::open(&dir.path().join("alice.redb")).expect("store")).expect("node");
    let params = ChannelParams {
        chain_id: 31337,
        contract: CONTRACT,
        parties: [alice_key().address(), bob_key().address()],
        deposits: [DEPOSIT, DEPOSIT],
        lock_period: 86_400,
        token: Address::ZERO,
        salt: B256::ZERO,
    };
    alice.add_channel(params, B256::repeat_byte(0xa1)).expect("add");
    let bob = bob_key().address();
    let mut rng = Rng(0x5eed);
    let (mut child, port) = start_bob(&bob_store, 0);
    let mut acked = 0u128;
    let mut paid = 0u128;
    let mut kills = 0;
    while kills < 50 {
        // connect (Bob may still be starting) and authenticate
        let mut s = loop {
            if let Ok(s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
                break s;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let Ok(mut session) = initiate(&mut s, &alice_key(), &node_key(&bob_key())).await else {
            continue;
        };
        let mut alive = true;
        for f in alice.on_connect(bob).expect("retransmit").into_iter().chain(alice.propose(CONTRACT).expect("propose"))
        {
            alive &= write_frame(&mut s, &mut session.sender, &f).await.is_ok();
        }
        // stream payments; kill Bob after a random number of frames
        let kill_after = rng.next(12);
        let mut frames = 0;
        while alive {
            let ch = alice.channel(CONTRACT).expect("channel");
            if *ch.phase() == Phase::Open && ch.queued() == 0 && ch.spendable() > 1000 {
                let amount = 1 + u128::from(rng.next(1000));
                let (_, f) = alice.pay(CONTRACT, amount).expect("pay");
                paid += amount;
                if let Some(f) = f {
                    alive &= write_frame(&mut s, &mut session.sender, &f).await.is_ok();
                }
            }
            if frames == kill_after {
                child.kill().expect("SIGKILL"); // std's kill is SIGKILL on Unix
                child.wait().expect("reaped");
                kills += 1;
                break;
            }
            let f = match tokio::time::timeout(Duration::from_secs(10), read_frame(&mut s, &mut session.receiver)).await
            {
                Ok(Ok(f)) => f,
                _ => break,
            };
            frames += 1;
            let (out, newly) = alice_handles(&mut alice, bob, &f);
            acked += newly;
            for r in out {
                alive &= write_frame(&mut s, &mut session.sender, &r).await.is_ok();
            }
        }
        if kills < 50 || child.try_wait().expect("status").is_some() {
            let (c, _) = start_bob(&bob_store, port);
            child = c;
        }
    }
    // let everything settle on a last connection
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    let mut session = initiate(&mut s, &alice_key(), &node_key(&bob_key())).await.expect("handshake");
    for f in alice.on_connect(bob).expect("retransmit").into_iter().chain(alice.propose(CONTRACT).expect("propose")) {
        write_frame(&mut s, &mut session.sender, &f).await.expect("write");
    }
    loop {
        let ch = alice.channel(CONTRACT).expect("channel");
        if *ch.phase() == Phase::Open && ch.is_idle() && ch.queued() == 0 {
            break;
        }
        let Ok(f) = tokio::time::timeout(Duration::from_secs(10), read_frame(&mut s, &mut session.receiver)).await
        else {
            child.kill().expect("stop bob");
            child.wait().expect("reaped");
            let st = RedbStore::open(&bob_store).expect("bob's store").load(CONTRACT).expect("load");
            panic!("stuck: alice {:?}\nbob {:?}", alice.channel(CONTRACT).map(|c| c.state()), st);
        };
        let (out, newly) = alice_handles(&mut alice, bob, &f.expect("frame"));
        acked += newly;
        for r in out {
            write_frame(&mut s, &mut session.sender, &r).await.expect("write");
        }
    }
    drop(s);
    child.kill().expect("stop bob");
    child.wait().expect("reaped");

    // Bob's stored state, as his node would restart with it.
    let stored = RedbStore::open(&bob_store).expect("bob's store").load(CONTRACT).expect("load").expect("channel");
    let bob_ch = Channel::restore(stored, bob_key()).expect("restore");
    let alice_ch = alice.channel(CONTRACT).expect("channel");
    assert_eq!(kills, 50);
    assert!(alice_ch.nonce() >= 50, "a real payment stream ran across the kills: {} updates", alice_ch.nonce());
    assert!(acked <= paid);
    assert_eq!(alice_ch.balances(), [DEPOSIT - acked, DEPOSIT + acked], "alice: exactly the acknowledged payments");
    assert_eq!(bob_ch.balances(), alice_ch.balances(), "bob lost nothing acknowledged");
    assert_eq!(bob_ch.nonce(), alice_ch.nonce());
    // Bob's latest sheet is countersigned and not revoked: he would never liquidate with a revoked one.
    let latest = bob_ch.latest().expect("latest");
    assert!(!alice_ch.is_revoked_by_peer(latest.nonce), "bob's latest sheet was revoked");
    assert!(alice_ch.punishment(latest.nonce, latest.waiver).is_none());
    assert!(alice_ch.is_revoked_by_peer(latest.nonce - 1), "and every older one is");
    // The channel still closes cooperatively.
    let mut a = Channel::restore(alice_ch.state().clone(), alice_key()).expect("alice");
    let mut b = bob_ch;
    // (Bob may have been stopped before Alice's last revocation reached him: a reconnect brings it.)
    for m in a.retransmit().expect("retransmit") {
        let _ = b.handle(&m);
    }
    assert!(b.is_idle(), "{:?}", b.state());
    let req = a.close().expect("close").reply.expect("request");
    let acc = b.handle(&req).expect("bob signs").reply.expect("accept");
    a.handle(&acc).expect("alice gets it");
    let (nonce, balances, sigs) = a.close_signatures().expect("both");
    let d = a.params().domain();
    assert_eq!(recover(&sigs[0], &Close::new(nonce, balances), &d), Some(a.params().parties[0]));
    assert_eq!(recover(&sigs[1], &Close::new(nonce, balances), &d), Some(a.params().parties[1]));
}

/// A store written by a build for contract v1 (state versions 1 and 2) is refused, and the CLI
/// says why and what to do.
#[test]
fn a_store_of_contract_v1_channels_is_refused_clearly() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("old.redb");
    {
        let params = ChannelParams {
            chain_id: 31337,
            contract: CONTRACT,
            parties: [alice_key().address(), bob_key().address()],
            deposits: [DEPOSIT, DEPOSIT],
            lock_period: 86_400,
            token: Address::ZERO,
            salt: B256::ZERO,
        };
        let mut state = Channel::new(params, 0, alice_key(), B256::repeat_byte(1)).expect("channel").state().clone();
        state.version = 2;
        RedbStore::open(&path).expect("store").save(CONTRACT, &state).expect("save");
    }
    for cmd in ["status", "node"] {
        let o = Command::new(env!("CARGO_BIN_EXE_vbank"))
            .args([cmd, "--store", path.to_str().expect("utf8")])
            .args(if cmd == "node" { &["--listen", "127.0.0.1:0"][..] } else { &[][..] })
            .env("VBANK_PRIVATE_KEY", "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80")
            .output()
            .expect("run vbank");
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{cmd}: {err}");
        assert!(err.contains("belongs to a contract v1 channel") && err.contains("vbank close"), "{cmd}: {err}");
    }
}

/// `vbank pay` and `vbank status` as a person uses them against a running `vbank node`.
#[test]
fn pay_and_status_through_the_peers_node() {
    let dir = tempfile::tempdir().expect("tmp");
    let (mut bob, port) = start_bob(&dir.path().join("bob.redb"), 0);
    let alice_store = dir.path().join("alice.redb");
    let alice_env = [("VBANK_PRIVATE_KEY", "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80")];
    let vbank = |args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_vbank"));
        cmd.args(args);
        for (k, v) in alice_env {
            cmd.env(k, v);
        }
        cmd.output().expect("run vbank")
    };
    let store = alice_store.to_str().expect("utf8");
    let connect = bob_uri(port);
    let channel = CONTRACT.to_string();
    let bob_addr = bob_key().address().to_string();
    let deposits = format!("{DEPOSIT}wei,{DEPOSIT}wei");
    // `vbank [--json] pay` on the channel through Bob's node, with `extra` arguments
    let pay = |json: bool, extra: &[&str]| {
        let head = ["--json", "pay", "--store", store, "--connect", &connect, "--channel", &channel];
        vbank(&[&head[usize::from(!json)..], extra].concat())
    };
    // the first payment also opens the channel (sheet 0 both ways)
    let o = pay(true, &["--amount", "7wei", "--count", "3", "--peer", &bob_addr, "--deposits", &deposits]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["acknowledged"], 3, "{v}");
    // a second command picks the channel up from the store
    let o = pay(false, &["--amount", "9wei"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = vbank(&["--json", "status", "--store", store]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let c = &v["channels"][0];
    assert_eq!(c["balances"][0], (DEPOSIT - 30).to_string(), "{v}");
    assert_eq!(c["phase"], "open");
    // an overdraft is refused locally, an unreachable peer is a clear error; nothing is lost
    let o = pay(false, &["--amount", "2"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("can pay"), "{}", String::from_utf8_lossy(&o.stderr));
    bob.kill().expect("stop bob");
    bob.wait().expect("reaped");
    let o = pay(false, &["--amount", "1wei", "--timeout", "2"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("cannot reach the peer's node"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = vbank(&["--json", "status", "--store", store]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["channels"][0]["balances"][0], (DEPOSIT - 30).to_string(), "{v}");
}

/// The whole life through the CLI on a real chain: deploy, open and pay through Bob's node, both
/// deposit, close cooperatively; then a second channel whose peer is gone closes unilaterally.
#[test]
fn deploy_pay_deposit_close_through_the_cli() {
    let local = vbank_client::LocalChain::spawn().expect("anvil");
    let url = local.endpoint();
    let dir = tempfile::tempdir().expect("tmp");
    let alice_store = dir.path().join("alice.redb");
    let store = alice_store.to_str().expect("utf8").to_string();
    let bob_store = dir.path().join("bob.redb");
    let alice_env = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
    let run = |key: &str, args: &[&str]| -> serde_json::Value {
        let o = Command::new(env!("CARGO_BIN_EXE_vbank"))
            .arg("--json")
            .args(args)
            .env("VBANK_PRIVATE_KEY", key)
            .output()
            .expect("run vbank");
        assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice(&o.stdout).expect("json")
    };
    let bob_addr = bob_key().address().to_string();
    // Opens a channel through the factory: its address and its salt.
    let deploy = |run: &dyn Fn(&str, &[&str]) -> serde_json::Value| -> (Address, String) {
        let v = run(alice_env, &["deploy", "--rpc-url", &url, "--party1", &bob_addr, "--lock", "600"]);
        (v["address"].as_str().expect("address").parse().expect("address"), v["salt"].as_str().expect("salt").into())
    };
    let info = |run: &dyn Fn(&str, &[&str]) -> serde_json::Value, c: &str| {
        run(alice_env, &["info", "--rpc-url", &url, "--channel", c])
    };
    // Alice opens the channel through Bob's node (sheet 0 both ways) and pays `amount`.
    let open_pay =
        |run: &dyn Fn(&str, &[&str]) -> serde_json::Value, connect: &str, c: &str, salt: &str, amount: &str| {
            let args = [
                "pay",
                "--store",
                &store,
                "--connect",
                connect,
                "--channel",
                c,
                "--amount",
                amount,
                "--peer",
                &bob_addr,
                "--deposits",
                "1,1",
                "--lock",
                "600",
                "--salt",
                salt,
            ];
            run(alice_env, &args)
        };
    let deposit_both = |run: &dyn Fn(&str, &[&str]) -> serde_json::Value, c: &str, salt: &str| {
        run(alice_env, &["deposit", "--channel", c, "--rpc-url", &url, "--salt", salt]);
        run(BOB_KEY, &["deposit", "--channel", c, "--rpc-url", &url, "--salt", salt]);
    };

    // channel 1: cooperative
    let (c1, s1) = deploy(&run);
    let (mut bob, port) = start_bob_with(&bob_store, 0, c1, "1,1", &["--lock", "600", "--salt", &s1]);
    let connect = bob_uri(port);
    let c1s = c1.to_string();
    let v = open_pay(&run, &connect, &c1s, &s1, "0.25");
    assert_eq!(v["acknowledged"], 1);
    deposit_both(&run, &c1s, &s1);
    assert_eq!(info(&run, &c1s)["state"], "Running");
    let v = run(alice_env, &["close", "--store", &store, "--channel", &c1s, "--connect", &connect, "--rpc-url", &url]);
    assert_eq!(v["close"], "cooperative", "{v}");
    let i = info(&run, &c1s);
    assert_eq!((i["state"].as_str(), i["outstanding"].as_str()), (Some("Closed"), Some("0")), "{i}");

    // channel 2: Bob's node goes away before the close
    bob.kill().expect("stop bob");
    bob.wait().expect("reaped");
    let (c2, s2) = deploy(&run);
    let (mut bob, port) = start_bob_with(&bob_store, 0, c2, "1,1", &["--lock", "600", "--salt", &s2]);
    let connect = bob_uri(port);
    let c2s = c2.to_string();
    open_pay(&run, &connect, &c2s, &s2, "0.5");
    deposit_both(&run, &c2s, &s2);
    bob.kill().expect("stop bob");
    bob.wait().expect("reaped");
    let v = run(
        alice_env,
        &[
            "close",
            "--store",
            &store,
            "--channel",
            &c2s,
            "--connect",
            &connect,
            "--rpc-url",
            &url,
            "--timeout",
            "2",
            "--force",
        ],
    );
    assert_eq!(v["close"], "unilateral", "{v}");
    let i = info(&run, &c2s);
    assert_eq!(i["state"], "Liquidating", "{i}");
    assert_eq!(
        i["liquidation"]["master"].as_str().map(str::to_lowercase),
        Some(alice_key().address().to_string().to_lowercase())
    );
    assert_eq!(i["liquidation"]["locked"], "0", "alice's latest sheet has no locks");
    assert_eq!(i["outstanding"], "500000000000000000", "alice's latest sheet: 1 - 0.5 ETH frozen");

    // channel 3: Bob's node watches the chain; Alice liquidates with a sheet she revoked
    let (c3, s3) = deploy(&run);
    let c3s = c3.to_string();
    let (mut bob, port) =
        start_bob_with(&bob_store, 0, c3, "1,1", &["--rpc-url", &url, "--poll-ms", "100", "--salt", &s3]);
    let connect = bob_uri(port);
    // Bob's node follows the chain: it takes no payment before both deposits are in.
    let refused = Command::new(env!("CARGO_BIN_EXE_vbank"))
        .args(["--json", "pay", "--store", &store, "--connect", &connect, "--channel", &c3s, "--amount", "0.1"])
        .args(["--peer", &bob_addr, "--deposits", "1,1", "--timeout", "5", "--lock", "600", "--salt", &s3])
        .env("VBANK_PRIVATE_KEY", alice_env)
        .output()
        .expect("run vbank");
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stdout).contains("not yet funded"), "{refused:?}");
    deposit_both(&run, &c3s, &s3);
    run(alice_env, &["pay", "--store", &store, "--connect", &connect, "--channel", &c3s, "--amount", "0.1"]);
    let stale = {
        let state = RedbStore::open(&alice_store).expect("alice's store").load(c3).expect("load").expect("channel");
        Channel::restore(state, alice_key()).expect("restore").latest().expect("sheet").clone()
    };
    run(alice_env, &["pay", "--store", &store, "--connect", &connect, "--channel", &c3s, "--amount", "0.6"]);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let chain = vbank_client::Chain::connect(&url, alice_key(), None).await.expect("connect");
        vbank_client::OnChain::new(chain, c3).liquidate(&stale).await.expect("alice cheats");
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let closed = loop {
        let i = info(&run, &c3s);
        if i["state"] == "Closed" {
            break i;
        }
        assert!(std::time::Instant::now() < deadline, "bob's node did not punish: {i}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(closed["outstanding"], "0", "{closed}");
    bob.kill().expect("stop bob");
    bob.wait().expect("reaped");
}

/// As [`alice_handles`], on whichever channel the frame names: the frames to send back and the
/// wei newly acknowledged on that channel.
fn alice_handles_on(alice: &mut Node<RedbStore>, bob: Address, f: &Frame) -> (Vec<Frame>, Option<(Address, u128)>) {
    let Frame::Channel { channel, .. } = f else { return (Vec::new(), None) };
    match alice.handle(bob, f) {
        Ok((reply, events)) => {
            let acked: u128 = events
                .iter()
                .map(|e| match e {
                    Event::PaymentsAcked { amount, .. } => *amount,
                    _ => 0,
                })
                .sum();
            (reply.into_iter().chain(alice.propose(*channel).expect("propose")).collect(), Some((*channel, acked)))
        }
        Err(Error::Protocol(e)) if e.severity() == vbank_core::Severity::Ignore => (Vec::new(), None),
        Err(e) => panic!("alice refused {f:?}: {e}"),
    }
}

/// Group commit under fire: Bob's node holds eight channels with Alice, each with an update in
/// flight at once (their states share Bob's disk syncs), and is SIGKILLed 25 times at random
/// points. On every channel: nothing acknowledged is lost, Bob's latest sheet is never one he
/// revoked, and both ends agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkills_with_many_channels_in_flight_lose_nothing() {
    const CHANNELS: u8 = 8;
    const KILLS: usize = 25;
    let dir = tempfile::tempdir().expect("tmp");
    let bob_store = dir.path().join("bob.redb");
    let mut alice =
        Node::open(alice_key(), RedbStore::open(&dir.path().join("alice.redb")).expect("store")).expect("node");
    let ids: Vec<Address> = (0..CHANNELS).map(|i| Address::repeat_byte(0x40 + i)).collect();
    let deposits = format!("{DEPOSIT}wei,{DEPOSIT}wei");
    // Bob's node adds each channel on a start of its own (`--channel` adds one missing channel).
    let mut port = 0;
    for (i, id) in ids.iter().enumerate() {
        let params = ChannelParams {
            chain_id: 31337,
            contract: *id,
            parties: [alice_key().address(), bob_key().address()],
            deposits: [DEPOSIT, DEPOSIT],
            lock_period: 86_400,
            token: Address::ZERO,
            salt: B256::ZERO,
        };
        alice.add_channel(params, B256::repeat_byte(0xb0 + i as u8)).expect("add");
        let (mut c, p) = start_bob_with(&bob_store, port, *id, &deposits, &[]);
        port = p;
        c.kill().expect("stop");
        c.wait().expect("reaped");
    }
    let bob = bob_key().address();
    let mut rng = Rng(0xc0ffee);
    let (mut child, _) = start_bob_with(&bob_store, port, ids[0], &deposits, &[]);
    let mut acked = std::collections::HashMap::<Address, u128>::new();
    let mut kills = 0;
    // Queues one payment on every open channel that has nothing queued; the frames to send.
    let pay_all = |alice: &mut Node<RedbStore>, rng: &mut Rng| {
        let mut out = Vec::new();
        for id in &ids {
            let ch = alice.channel(*id).expect("channel");
            if *ch.phase() == Phase::Open && ch.queued() == 0 && ch.spendable() > 1000 {
                let (_, f) = alice.pay(*id, 1 + u128::from(rng.next(1000))).expect("pay");
                out.extend(f);
            }
        }
        out
    };
    let catch_up = |alice: &mut Node<RedbStore>| {
        let mut out = alice.on_connect(bob).expect("retransmit");
        for id in &ids {
            out.extend(alice.propose(*id).expect("propose"));
        }
        out
    };
    while kills < KILLS {
        let mut s = loop {
            if let Ok(s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
                break s;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let Ok(mut session) = initiate(&mut s, &alice_key(), &node_key(&bob_key())).await else {
            continue;
        };
        let mut alive = true;
        for f in catch_up(&mut alice) {
            alive &= write_frame(&mut s, &mut session.sender, &f).await.is_ok();
        }
        let kill_after = rng.next(48);
        let mut frames = 0;
        while alive {
            for f in pay_all(&mut alice, &mut rng) {
                alive &= write_frame(&mut s, &mut session.sender, &f).await.is_ok();
            }
            if frames == kill_after {
                child.kill().expect("SIGKILL");
                child.wait().expect("reaped");
                kills += 1;
                break;
            }
            let f = match tokio::time::timeout(Duration::from_secs(10), read_frame(&mut s, &mut session.receiver)).await
            {
                Ok(Ok(f)) => f,
                _ => break,
            };
            frames += 1;
            let (out, newly) = alice_handles_on(&mut alice, bob, &f);
            if let Some((id, wei)) = newly {
                *acked.entry(id).or_default() += wei;
            }
            for r in out {
                alive &= write_frame(&mut s, &mut session.sender, &r).await.is_ok();
            }
        }
        if kills < KILLS || child.try_wait().expect("status").is_some() {
            let (c, _) = start_bob_with(&bob_store, port, ids[0], &deposits, &[]);
            child = c;
        }
    }
    // let every channel settle on a last connection
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    let mut session = initiate(&mut s, &alice_key(), &node_key(&bob_key())).await.expect("handshake");
    for f in catch_up(&mut alice) {
        write_frame(&mut s, &mut session.sender, &f).await.expect("write");
    }
    let settled = |alice: &Node<RedbStore>| {
        ids.iter().all(|id| {
            let ch = alice.channel(*id).expect("channel");
            *ch.phase() == Phase::Open && ch.is_idle() && ch.queued() == 0
        })
    };
    while !settled(&alice) {
        let f = tokio::time::timeout(Duration::from_secs(10), read_frame(&mut s, &mut session.receiver))
            .await
            .expect("the channels settle")
            .expect("frame");
        let (out, newly) = alice_handles_on(&mut alice, bob, &f);
        if let Some((id, wei)) = newly {
            *acked.entry(id).or_default() += wei;
        }
        for r in out {
            write_frame(&mut s, &mut session.sender, &r).await.expect("write");
        }
    }
    drop(s);
    child.kill().expect("stop bob");
    child.wait().expect("reaped");

    let store = RedbStore::open(&bob_store).expect("bob's store");
    let mut updates = 0;
    for id in &ids {
        let stored = store.load(*id).expect("load").expect("channel");
        let bob_ch = Channel::restore(stored, bob_key()).expect("restore");
        let alice_ch = alice.channel(*id).expect("channel");
        let acked = acked.get(id).copied().unwrap_or(0);
        updates += alice_ch.nonce();
        assert_eq!(alice_ch.balances(), [DEPOSIT - acked, DEPOSIT + acked], "{id}: exactly the acknowledged payments");
        assert_eq!(bob_ch.balances(), alice_ch.balances(), "{id}: bob lost nothing acknowledged");
        assert_eq!(bob_ch.nonce(), alice_ch.nonce(), "{id}");
        let latest = bob_ch.latest().expect("latest");
        assert!(!alice_ch.is_revoked_by_peer(latest.nonce), "{id}: bob's latest sheet was revoked");
        assert!(alice_ch.punishment(latest.nonce, latest.waiver).is_none());
        if latest.nonce > 0 {
            assert!(alice_ch.is_revoked_by_peer(latest.nonce - 1), "{id}: and every older one is");
        }
    }
    assert_eq!(kills, KILLS);
    assert!(updates >= 50, "a real payment stream ran across the kills: {updates} updates");
}
