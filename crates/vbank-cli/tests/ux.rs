//! Issue #19, "the CLI as a person meets it": each case as it was reported, and what it says now.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use alloy::{primitives::Address, signers::local::PrivateKeySigner};
use vbank_node::{NodeUri, node_key};

const ALICE_KEY: &str = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
const BOB_KEY: &str = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
const CONTRACT: Address = Address::repeat_byte(0xcc);

fn key(k: &str) -> PrivateKeySigner {
    k.parse().expect("key")
}

/// Runs `vbank args` with `envs` only (no key unless given).
fn vbank(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vbank"));
    cmd.args(args).env_remove("VBANK_PRIVATE_KEY");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().expect("run vbank")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Asserts that `o` failed (exit code `code`) saying `want`, without a panic.
#[track_caller]
fn fails(o: &Output, code: i32, want: &str) {
    assert_eq!(o.status.code(), Some(code), "{}", text(o));
    assert!(text(o).contains(want), "{:?} does not say {want:?}", text(o));
    assert!(!text(o).contains("panicked"), "{}", text(o));
}

/// A child process killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Bob's `vbank node` with the off-chain test channel `CONTRACT` (deposits `deposits`) and
/// `extra` arguments; returns it and its node URI.
fn bob_node(store: &std::path::Path, deposits: &str, extra: &[&str]) -> (Proc, String) {
    bob_node_for(store, CONTRACT, deposits, extra)
}

/// Alice's `vbank node` on `store` with `channel` (party 0, peer `bob`), started.
fn alice_node(store: &str, channel: &str, bob: &str) -> Proc {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vbank"))
        .args(["node", "--store", store, "--listen", "127.0.0.1:0", "--channel", channel, "--peer", bob])
        .args(["--deposits", "1,1", "--index", "0"])
        .env("VBANK_PRIVATE_KEY", ALICE_KEY)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("alice's node");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("first line");
    Proc(child)
}

/// The same for `channel`.
fn bob_node_for(store: &std::path::Path, channel: Address, deposits: &str, extra: &[&str]) -> (Proc, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vbank"))
        .args(["node", "--store", store.to_str().expect("utf8"), "--listen", "127.0.0.1:0"])
        .args(["--channel", &channel.to_string(), "--peer", &key(ALICE_KEY).address().to_string()])
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
    let port: u16 = port.unwrap_or_else(|| panic!("no port in {line:?}"));
    (Proc(child), NodeUri::new(node_key(&key(BOB_KEY)), "127.0.0.1", port).to_string())
}

/// #19.5: one parser for every amount, one error listing the accepted forms, ETH in messages.
#[test]
fn amounts_are_exact_or_refused_with_the_accepted_forms() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = dir.path().join("alice.redb");
    let store = store.to_str().expect("utf8");
    let alice = [("VBANK_PRIVATE_KEY", ALICE_KEY)];
    let channel = CONTRACT.to_string();
    let forms = "1.5 or 1.5eth or 1.5ether (ETH), 30gwei, 100wei";
    for (amount, want) in [
        ("1.5wei", "not a whole number of wei"),
        ("0.0000000000000000019", "not a whole number of wei"),
        ("1e18", forms),
        ("-1", "cannot be negative"),
        ("1000000000000000000000000000000000000000000", "over the largest amount"),
        ("lots", forms),
    ] {
        let o = vbank(&["pay", "--store", store, "--channel", &channel, "--amount", amount], &alice);
        fails(&o, 1, want);
    }
    assert!(!std::path::Path::new(store).exists(), "a refused amount creates nothing");
    let o = vbank(&["deploy", "--amount0", "1.5ether", "--amount1", "30gwei", "--lock", "60"], &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("deposits 1.5 ETH") && text(&o).contains("deposits 0.00000003 ETH"), "{}", text(&o));
    let bob = key(BOB_KEY).address().to_string();
    let o = vbank(
        &["pay", "--store", store, "--channel", &channel, "--amount", "1", "--peer", &bob, "--deposits", "1,1,1"],
        &alice,
    );
    fails(&o, 1, "3 amount(s): two are expected");

    // An overdraft is said in ETH, before anything is queued.
    let (_bob, connect) = bob_node(&dir.path().join("bob.redb"), "1,1", &[]);
    let pay = |amount: &str, extra: &[&str]| {
        let head = ["pay", "--store", store, "--connect", &connect, "--channel", &channel, "--amount", amount];
        vbank(&[&head[..], extra].concat(), &alice)
    };
    let o = pay("0.25", &["--peer", &bob, "--deposits", "1,1"]);
    assert!(o.status.success(), "{}", text(&o));
    fails(&pay("0.5", &["--count", "2"]), 1, "2 payment(s) of 0.5 ETH is 1 ETH but channel");
    fails(&pay("0.5", &["--count", "2"]), 1, "can pay 0.75 ETH now");
}

/// #19.6 and #19.7: read-only commands need no key and create nothing; the missing variable is
/// named; hints match the cause.
#[test]
fn read_only_commands_need_no_key_and_create_no_store() {
    let dir = tempfile::tempdir().expect("tmp");
    let nope = dir.path().join("nope.redb");
    let o = vbank(&["status", "--store", nope.to_str().expect("utf8")], &[]);
    fails(&o, 1, "no store at");
    assert!(!nope.exists(), "status created a store");
    let o = vbank(&["status", "--store", "/nonexistent-dir/alice.redb"], &[]);
    fails(&o, 1, "no directory /nonexistent-dir");
    assert!(!text(&o).contains("is a vbank node using it"), "{}", text(&o));
    let o = vbank(&["pay", "--store", "/nonexistent-dir/alice.redb", "--channel", ADDR, "--amount", "1"], &ALICE);
    fails(&o, 1, "no directory /nonexistent-dir");
    // The variable named by --private-key-env is the one reported missing.
    let store = dir.path().join("alice.redb");
    let store = store.to_str().expect("utf8");
    let o =
        vbank(&["pay", "--store", store, "--channel", ADDR, "--amount", "1", "--private-key-env", "ALICE_KEY"], &[]);
    fails(&o, 1, "$ALICE_KEY (named by --private-key-env) is not set");
    assert!(!text(&o).contains("VBANK_PRIVATE_KEY"), "{}", text(&o));

    // A store with a channel: status reads it without a key, unknown channels get the right hint.
    let (bob, connect) = bob_node(&dir.path().join("bob.redb"), "1,1", &[]);
    let bob_addr = key(BOB_KEY).address().to_string();
    let channel = CONTRACT.to_string();
    let o = vbank(
        &["pay", "--store", store, "--connect", &connect, "--channel", &channel, "--amount", "0.1"]
            .iter()
            .chain(&["--peer", &bob_addr, "--deposits", "1,1"])
            .copied()
            .collect::<Vec<_>>(),
        &ALICE,
    );
    assert!(o.status.success(), "{}", text(&o));
    drop(bob);
    let o = vbank(&["--json", "status", "--store", store], &[]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["address"], key(ALICE_KEY).address().to_string().to_lowercase(), "{v}");
    assert_eq!(v["channels"][0]["balances"][0], "900000000000000000", "{v}");
    let o = vbank(&["pay", "--store", store, "--channel", ADDR, "--amount", "1"], &ALICE);
    fails(&o, 1, &format!("channel {ADDR} is not in"));
    assert!(text(&o).contains(&channel) && !text(&o).contains("--peer and --deposits"), "{}", text(&o));
    // A channel with another peer than --peer is said so.
    let o = vbank(
        &["pay", "--store", store, "--channel", &channel, "--amount", "1wei", "--peer", ADDR, "--deposits", "1,1"],
        &ALICE,
    );
    fails(&o, 1, &format!("is with {bob_addr}, not with --peer {ADDR}"));
}

const ADDR: &str = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC";
const ALICE: [(&str, &str); 1] = [("VBANK_PRIVATE_KEY", ALICE_KEY)];

/// #19.8: help says what running does; options that would be ignored are refused; URLs say what
/// is wrong.
#[test]
fn help_and_options_say_what_happens() {
    let o = vbank(&["info", "--help"], &[]);
    assert!(o.status.success());
    assert!(!text(&o).contains("anvil"), "{}", text(&o));
    fails(&vbank(&["info", "--channel", ADDR], &[]), 2, "--rpc-url");
    // `info` reads without a key; a URL without its scheme is refused before anything runs.
    fails(&vbank(&["info", "--rpc-url", "127.0.0.1:1", "--channel", ADDR], &[]), 2, "write it as http://127.0.0.1:1");
    fails(&vbank(&["info", "--rpc-url", "http://127.0.0.1:1", "--channel", ADDR], &[]), 1, "127.0.0.1:1");
    assert!(!text(&vbank(&["info", "--rpc-url", "http://127.0.0.1:1", "--channel", ADDR], &[])).contains("key"));
    let o = vbank(&["node", "--store", "/tmp/x.redb", "--min-lock", "5"], &ALICE);
    fails(&o, 2, "--accept-channels");
    let o = vbank(&["node", "--store", "/tmp/x.redb", "--max-lock", "5"], &ALICE);
    fails(&o, 2, "--accept-channels");
}

/// The numbers in "N payment(s) acknowledged, M cancelled (never sent), K in flight".
fn counts(stderr: &str) -> [u64; 3] {
    let before = |marker: &str| -> u64 {
        let head = stderr.split(marker).next().unwrap_or_else(|| panic!("no {marker:?} in {stderr:?}"));
        let n = head.trim_end().rsplit(|c: char| !c.is_ascii_digit()).next().unwrap_or_default();
        n.parse().unwrap_or_else(|_| panic!("no number before {marker:?} in {stderr:?}"))
    };
    [before(" payment(s) acknowledged"), before(" cancelled (never sent)"), before(" in flight")]
}

/// Alice's side of the channel, read from `vbank --json status`: (party 0's balance, queued, idle).
fn alice_side(store: &str) -> (u128, u64, bool) {
    let o = vbank(&["--json", "status", "--store", store], &[]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let c = &v["channels"][0];
    let balance = c["balances"][0].as_str().expect("balance").parse().expect("wei");
    (balance, c["queued"].as_u64().expect("queued"), c["idle"].as_bool().expect("idle"))
}

/// #19.1: Ctrl-C during a long `vbank pay` (with Alice's node running, and without) says what
/// was acknowledged, cancelled and in flight, exits 130, and nothing is sent behind her back:
/// the next payment of 1 wei pays 1 wei.
#[test]
fn an_interrupted_pay_says_what_it_sent_and_nothing_goes_out_later() {
    for with_node in [true, false] {
        let dir = tempfile::tempdir().expect("tmp");
        let (bob_proc, connect) = bob_node(&dir.path().join("bob.redb"), "1,1", &[]);
        let store_path = dir.path().join("alice.redb");
        let store = store_path.to_str().expect("utf8");
        let channel = CONTRACT.to_string();
        let bob = key(BOB_KEY).address().to_string();
        let _alice = with_node.then(|| alice_node(store, &channel, &bob));
        let pay = |extra: &[&str]| {
            let head = ["pay", "--store", store, "--connect", &connect, "--channel", &channel, "--amount", "1wei"];
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_vbank"));
            cmd.args(head).args(extra).env("VBANK_PRIVATE_KEY", ALICE_KEY);
            cmd
        };
        let o = pay(&["--peer", &bob, "--deposits", "1,1"]).output().expect("pay");
        assert!(o.status.success(), "{}", text(&o));
        let (start, ..) = alice_side(store);

        // Bob's node stops answering (SIGSTOP), so that the run cannot finish before the interrupt
        // however fast this machine queues and clears payments.
        let signal = |sig: &str| {
            let ok = Command::new("kill").args([sig, &bob_proc.0.id().to_string()]).status().expect("kill");
            assert!(ok.success());
        };
        signal("-STOP");
        let asked: u64 = 100_000;
        let long = pay(&["--count", &asked.to_string(), "--timeout", "300"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("a long pay");
        std::thread::sleep(Duration::from_secs(3));
        let sent = Command::new("kill").args(["-INT", &long.id().to_string()]).status().expect("kill");
        assert!(sent.success());
        let o = long.wait_with_output().expect("the long pay ends");
        signal("-CONT");
        assert_eq!(o.status.code(), Some(130), "with_node {with_node}: {}", text(&o));
        eprintln!("with_node {with_node}: {}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(err.contains("interrupted"), "{err}");
        // Interrupted before anything was queued (the link to the stopped node was not up yet),
        // or part-way: either way the report accounts for every payment asked.
        let [acked, cancelled, in_flight] =
            if err.contains("no payment was queued, nothing was sent") { [0, asked, 0] } else { counts(&err) };
        assert_eq!(acked + cancelled + in_flight, asked, "{err}");
        assert!(cancelled > 0, "interrupted after 3 s, some of {asked} were still to send: {err}");

        // Nothing stays queued; what was in flight may settle (without a node: at the next link).
        let (_, queued, _) = alice_side(store);
        assert_eq!(queued, 0, "with_node {with_node}: {err}");
        let o = pay(&[]).output().expect("pay");
        assert!(o.status.success(), "{}", text(&o));
        assert!(text(&o).contains("1 payment(s) of 0.000000000000000001 ETH"), "{}", text(&o));
        let deadline = Instant::now() + Duration::from_secs(60);
        let end = loop {
            let (balance, queued, idle) = alice_side(store);
            if idle && queued == 0 {
                break balance;
            }
            assert!(Instant::now() < deadline, "with_node {with_node}: the channel did not settle");
            std::thread::sleep(Duration::from_millis(200));
        };
        // The interrupted run's acknowledged payments, perhaps those in flight, and the 1 wei:
        // never one that was reported cancelled.
        let paid = u64::try_from(start - end - 1).expect("small");
        assert!(acked <= paid && paid <= acked + in_flight, "with_node {with_node}: paid {paid}, said {err}");
    }
}

/// #19.3: --timeout is honoured at the handshake, and a crash of this party's own node is not
/// blamed on the peer.
#[test]
fn timeouts_are_honoured_and_failures_named() {
    let dir = tempfile::tempdir().expect("tmp");
    let store_path = dir.path().join("alice.redb");
    let store = store_path.to_str().expect("utf8");
    let channel = CONTRACT.to_string();
    let bob = key(BOB_KEY).address().to_string();
    // A peer that takes the connection and never says a word.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = silent.local_addr().expect("addr").port();
    let uri = NodeUri::new(node_key(&key(BOB_KEY)), "127.0.0.1", port).to_string();
    let started = Instant::now();
    let o = vbank(
        &["pay", "--store", store, "--connect", &uri, "--channel", &channel, "--amount", "1wei", "--timeout", "3"]
            .iter()
            .chain(&["--peer", &bob, "--deposits", "1,1"])
            .copied()
            .collect::<Vec<_>>(),
        &ALICE,
    );
    fails(&o, 1, "handshake");
    assert!(text(&o).contains("127.0.0.1"), "{}", text(&o));
    assert!(text(&o).contains("3 s"), "{}", text(&o));
    assert!(started.elapsed() < Duration::from_secs(3 + 5), "took {:?}", started.elapsed());
    drop(silent);

    // Alice's own node dies under a long payment request: that is what is reported.
    let (bob_proc, connect) = bob_node(&dir.path().join("bob.redb"), "1,1", &[]);
    let alice = alice_node(store, &channel, &bob);
    let pay = |extra: &[&str]| {
        let head = ["pay", "--store", store, "--connect", &connect, "--channel", &channel, "--amount", "1wei"];
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_vbank"));
        cmd.args(head).args(extra).env("VBANK_PRIVATE_KEY", ALICE_KEY);
        cmd
    };
    let o = pay(&[]).output().expect("pay");
    assert!(o.status.success(), "{}", text(&o));
    // Bob stops answering, so that the request is still waiting when Alice's node dies.
    let stopped = Command::new("kill").args(["-STOP", &bob_proc.0.id().to_string()]).status().expect("kill");
    assert!(stopped.success());
    let long = pay(&["--count", "100000", "--timeout", "300"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("pay");
    std::thread::sleep(Duration::from_secs(2));
    drop(alice);
    let o = long.wait_with_output().expect("the pay ends");
    fails(&o, 1, "this party's own node stopped answering");
    assert!(!text(&o).contains("closed by the peer"), "{}", text(&o));
}

/// #19.4 and #19.8: `vbank close` while the peer's node is down does nothing without --force
/// (no terminal to ask); --force liquidates and says when the balance unlocks, as a date and a
/// duration; after the lock, `vbank close` withdraws without --wait; then `vbank status` shows
/// the channel closed, and only with --all.
#[test]
fn close_tries_the_peer_and_liquidates_only_when_forced() {
    let local = vbank_client::LocalChain::spawn().expect("anvil");
    let url = local.endpoint();
    let dir = tempfile::tempdir().expect("tmp");
    let store_path = dir.path().join("alice.redb");
    let store = store_path.to_str().expect("utf8");
    let bob = key(BOB_KEY).address().to_string();
    let run = |k: &str, args: &[&str]| {
        let o = vbank(&[&["--json"], args].concat(), &[("VBANK_PRIVATE_KEY", k)]);
        assert!(o.status.success(), "{args:?}: {}", text(&o));
        serde_json::from_slice::<serde_json::Value>(&o.stdout).expect("json")
    };
    let v = run(ALICE_KEY, &["deploy", "--rpc-url", &url, "--party1", &bob, "--lock", "600"]);
    let channel: Address = v["address"].as_str().expect("address").parse().expect("address");
    let salt = v["salt"].as_str().expect("salt").to_string();
    let c = channel.to_string();
    let terms = ["--lock", "600", "--salt", salt.as_str()];
    let (bob_node, connect) = bob_node_for(&dir.path().join("bob.redb"), channel, "1,1", &terms);
    run(
        ALICE_KEY,
        &["pay", "--store", store, "--connect", &connect, "--channel", &c, "--amount", "0.25", "--peer", &bob]
            .iter()
            .chain(&["--deposits", "1,1"])
            .chain(&terms)
            .copied()
            .collect::<Vec<_>>(),
    );
    run(ALICE_KEY, &["deposit", "--channel", &c, "--rpc-url", &url, "--salt", &salt]);
    run(BOB_KEY, &["deposit", "--channel", &c, "--rpc-url", &url, "--salt", &salt]);
    drop(bob_node);
    let state = || run(ALICE_KEY, &["info", "--rpc-url", &url, "--channel", &c])["state"].clone();

    let close = |extra: &[&str]| {
        let head = ["close", "--store", store, "--channel", &c, "--rpc-url", &url, "--timeout", "3"];
        vbank(&[&head[..], extra].concat(), &ALICE)
    };
    let started = Instant::now();
    let o = close(&[]);
    fails(&o, 1, "nothing was done. Try again when its node is back, or pass --force");
    assert!(text(&o).contains("tried for 3 s") && text(&o).contains("10 min"), "{}", text(&o));
    eprintln!("{}", text(&o));
    assert!(started.elapsed() < Duration::from_secs(3 + 10), "took {:?}", started.elapsed());
    assert_eq!(state(), "Running", "nothing was sent");

    let o = close(&["--force"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("unilateral close") && text(&o).contains(" UTC (in "), "{}", text(&o));
    assert_eq!(state(), "Liquidating");
    fails(&close(&[]), 1, "unlocks at");

    // Past the lock period: a plain `vbank close` withdraws.
    let rpc = |method: &str, params: &str| {
        let body = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"{method}","params":{params}}}"#);
        let o = Command::new("curl")
            .args(["-s", "-X", "POST", "-H", "Content-Type: application/json", "--data", &body, &url])
            .output()
            .expect("curl");
        assert!(o.status.success(), "{method}");
    };
    rpc("evm_increaseTime", "[700]");
    rpc("evm_mine", "[]");
    let o = close(&[]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(state(), "Closed");

    let o = vbank(&["status", "--store", store], &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("1 closed channel(s) not shown"), "{}", text(&o));
    let o = vbank(&["status", "--store", store, "--all"], &[]);
    assert!(text(&o).contains(&format!("channel {c} (closed)")), "{}", text(&o));
}

/// #19.2: `vbank open` asks the peer's node for its terms and refuses at once, before any
/// transaction, a lock period it would refuse or a deposit it would not pay.
#[test]
fn open_learns_the_peers_terms_before_any_gas() {
    let local = vbank_client::LocalChain::spawn().expect("anvil");
    let url = local.endpoint();
    let dir = tempfile::tempdir().expect("tmp");
    let bob_store = dir.path().join("bob.redb");
    let mut child = Command::new(env!("CARGO_BIN_EXE_vbank"))
        .args(["node", "--store", bob_store.to_str().expect("utf8"), "--listen", "127.0.0.1:0", "--rpc-url", &url])
        .args(["--accept-channels", "--min-lock", "3600", "--auto-deposit", "1"])
        .env("VBANK_PRIVATE_KEY", BOB_KEY)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("bob's node");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("first line");
    let _bob = Proc(child);
    let connect = line.split("node URI ").nth(1).and_then(|r| r.split(';').next()).expect("uri").to_string();
    let store = dir.path().join("alice.redb");
    let store = store.to_str().expect("utf8");
    let nonce = || {
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"eth_getTransactionCount","params":["{}","latest"]}}"#,
            key(ALICE_KEY).address()
        );
        let o = Command::new("curl")
            .args(["-s", "-X", "POST", "-H", "Content-Type: application/json", "--data", &body, &url])
            .output()
            .expect("curl");
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let before = nonce();
    let open = |deposits: &str, lock: &str| {
        let args = ["open", "--store", store, "--connect", &connect, "--deposits", deposits, "--lock", lock];
        vbank(&[&args[..], &["--rpc-url", &url, "--timeout", "60"]].concat(), &ALICE)
    };
    let started = Instant::now();
    fails(&open("1,1", "5"), 1, "accepts lock periods from 3600 s to 2592000 s");
    fails(&open("1,5", "3600"), 1, "pays deposits of at most 1 ETH by itself (--auto-deposit)");
    assert!(started.elapsed() < Duration::from_secs(30), "took {:?}", started.elapsed());
    assert_eq!(nonce(), before, "no transaction was sent");
}

/// #15.5: a conditional payment from the CLI: `vbank pay --hash --expiry` locks the amount to
/// Bob, `vbank status` shows the lock on both sides, a wrong preimage claims nothing, `vbank
/// fulfil --preimage` through Bob's running node claims it; a second lock is given back with
/// `vbank release`. Balances checked to the wei.
#[test]
fn a_conditional_payment_is_locked_then_fulfilled_or_released_from_the_cli() {
    let dir = tempfile::tempdir().expect("tmp");
    let bob_store = dir.path().join("bob.redb");
    let (_bob, connect) = bob_node(&bob_store, "1,1", &[]);
    let store_path = dir.path().join("alice.redb");
    let store = store_path.to_str().expect("utf8");
    let channel = CONTRACT.to_string();
    let bob = key(BOB_KEY).address().to_string();
    let json = |o: &Output| -> serde_json::Value {
        assert!(o.status.success(), "{}", text(o));
        serde_json::from_slice(&o.stdout).expect("json")
    };
    // Alice's node runs too: Bob's claim needs her countersignature.
    let _alice = alice_node(store, &channel, &bob);
    // Open with a first plain payment, then lock 0.1 ETH on the hash of a preimage Bob will show.
    let head = ["--json", "pay", "--store", store, "--connect", &connect, "--channel", &channel];
    json(&vbank(&[&head[..], &["--amount", "1wei", "--peer", &bob, "--deposits", "1,1"]].concat(), &ALICE));
    let preimage = format!("0x{}", "42".repeat(32));
    let hash = vbank_core::preimage_hash(&preimage.parse().expect("b256")).to_string();
    let v = json(&vbank(&[&head[..], &["--amount", "0.1", "--hash", &hash, "--expiry", "+7200"]].concat(), &ALICE));
    assert_eq!(v["lock"]["amount"], 100_000_000_000_000_000u64, "{v}");
    let status =
        |store: &std::path::Path| json(&vbank(&["--json", "status", "--store", store.to_str().expect("utf8")], &[]));
    let s = status(&store_path);
    assert_eq!(s["channels"][0]["locks"].as_array().expect("locks").len(), 1, "{s}");
    assert_eq!(s["channels"][0]["balances"][0], "899999999999999999");
    // Bob's status (through his running node) shows it too; a wrong preimage claims nothing.
    let bob_env = [("VBANK_PRIVATE_KEY", BOB_KEY)];
    let bob_store_s = bob_store.to_str().expect("utf8");
    let lock_head = ["--json", "fulfil", "--store", bob_store_s, "--channel", &channel];
    let wrong = vbank(&[&lock_head[..], &["--preimage", &format!("0x{}", "43".repeat(32))]].concat(), &bob_env);
    assert!(!wrong.status.success(), "{}", text(&wrong));
    assert!(text(&wrong).contains("no open lock"), "{}", text(&wrong));
    json(&vbank(&[&lock_head[..], &["--preimage", &preimage]].concat(), &bob_env));
    let s = status(&store_path);
    assert_eq!(s["channels"][0]["locks"].as_array().expect("locks").len(), 0, "{s}");
    assert_eq!(s["channels"][0]["balances"][1], "1100000000000000001");
    // A second lock, given back by Bob: Alice has it again.
    let other = format!("0x{}", "77".repeat(32));
    json(&vbank(&[&head[..], &["--amount", "0.2", "--hash", &other, "--expiry", "+7200"]].concat(), &ALICE));
    json(&vbank(&["--json", "release", "--store", bob_store_s, "--channel", &channel, "--hash", &other], &bob_env));
    let s = status(&store_path);
    assert_eq!(s["channels"][0]["balances"], serde_json::json!(["899999999999999999", "1100000000000000001"]), "{s}");
    // An expiry that is not a time is refused before anything is sent.
    let bad = vbank(&[&head[..], &["--amount", "0.1", "--hash", &other, "--expiry", "soon"]].concat(), &ALICE);
    assert!(!bad.status.success() && text(&bad).contains("--expiry"), "{}", text(&bad));
}
