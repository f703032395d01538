//! The payment network with `vbank node` processes on one anvil: channels opened with
//! `vbank open`, intermediaries announcing their fees (`--forward`), `vbank invoice` and
//! `vbank pay --invoice` along a line of four nodes and across a diamond whose cheaper side
//! fails, and an intermediary killed with SIGKILL after forwarding that still gets its fee after
//! a restart. Balances are checked to the wei on every node.

use std::{
    collections::HashMap,
    process::{Child, Command, Output},
    time::{Duration, Instant},
};

use alloy::signers::local::PrivateKeySigner;

/// anvil's dev accounts 0–4.
const KEYS: [&str; 5] = [
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
    "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
];
const NAMES: [&str; 5] = ["alice", "bob", "carol", "dave", "erin"];

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

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Network {
    _chain: vbank_client::LocalChain,
    dir: tempfile::TempDir,
    url: String,
    nodes: HashMap<usize, (Proc, String)>,
    args: HashMap<usize, Vec<String>>,
}

impl Network {
    fn new() -> Self {
        let chain = vbank_client::LocalChain::spawn().expect("anvil");
        let url = chain.endpoint();
        Self { _chain: chain, dir: tempfile::tempdir().expect("tmp"), url, nodes: HashMap::new(), args: HashMap::new() }
    }

    fn store(&self, i: usize) -> String {
        self.dir.path().join(format!("{}.redb", NAMES[i])).to_str().expect("utf8").to_string()
    }

    fn log(&self, i: usize) -> String {
        std::fs::read_to_string(format!("{}.log", self.store(i))).unwrap_or_default()
    }

    /// Starts node `i` (`fees`: forward for these base and ppm fees); returns its URI.
    fn start(&mut self, i: usize, fees: Option<(&str, &str)>) -> String {
        let mut args: Vec<String> = [
            "--rpc-url",
            &self.url,
            "--poll-ms",
            "100",
            "--accept-channels",
            "--min-lock",
            "60",
            "--auto-deposit",
            "1",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if let Some((base, ppm)) = fees {
            args.extend(["--forward", "--fee-base", base, "--fee-ppm", ppm].map(String::from));
        }
        self.args.insert(i, args);
        self.restart(i)
    }

    /// (Re)starts node `i` with the arguments it was started with; returns its URI.
    fn restart(&mut self, i: usize) -> String {
        let store = self.store(i);
        let log = format!("{store}.log");
        let out = std::fs::OpenOptions::new().create(true).append(true).open(&log).expect("log");
        let err = out.try_clone().expect("log");
        let lines_before = self.log(i).lines().count();
        // A restarted node listens where it did: its peers dial it there again.
        let listen = self.nodes.get(&i).map_or("127.0.0.1:0".to_string(), |(_, uri)| {
            format!("127.0.0.1:{}", uri.rsplit(':').next().expect("port"))
        });
        let child = Command::new(env!("CARGO_BIN_EXE_vbank"))
            .args(["node", "--store", &store, "--listen", &listen])
            .args(&self.args[&i])
            .env("VBANK_PRIVATE_KEY", KEYS[i])
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start vbank node");
        let deadline = Instant::now() + Duration::from_secs(30);
        let uri = loop {
            let text = self.log(i);
            if let Some(line) = text.lines().skip(lines_before).find(|l| l.contains("node URI ")) {
                let uri = line.split("node URI ").nth(1).and_then(|r| r.split(';').next()).expect("uri");
                break uri.to_string();
            }
            assert!(Instant::now() < deadline, "node {} did not start: {text}", NAMES[i]);
            std::thread::sleep(Duration::from_millis(20));
        };
        self.nodes.insert(i, (Proc(child), uri.clone()));
        uri
    }

    fn uri(&self, i: usize) -> String {
        self.nodes[&i].1.clone()
    }

    /// `a` opens a channel of 0.1 + 0.1 ETH with `b` through its running node; its address.
    fn open(&self, a: usize, b: usize) -> String {
        let (store, uri) = (self.store(a), self.uri(b));
        let args = [
            "open",
            "--store",
            &store,
            "--connect",
            &uri,
            "--deposits",
            "0.1,0.1",
            "--lock",
            "600",
            "--rpc-url",
            &self.url,
        ];
        let v = ok(KEYS[a], &args);
        assert_eq!(v["state"], "Running", "{v}");
        v["channel"].as_str().expect("channel").to_string()
    }

    /// Node `i`'s balance in each of its channels, by channel.
    fn balances(&self, i: usize) -> HashMap<String, u128> {
        let s = ok(KEYS[i], &["status", "--store", &self.store(i)]);
        s["channels"]
            .as_array()
            .expect("channels")
            .iter()
            .map(|c| {
                let me = c["me"].as_u64().expect("me") as usize;
                let b: u128 = c["balances"][me].as_str().expect("balance").parse().expect("wei");
                (c["channel"].as_str().expect("channel").to_string(), b)
            })
            .collect()
    }

    fn total(&self, i: usize) -> u128 {
        self.balances(i).values().sum()
    }

    /// Waits until node `i`'s graph holds the announcements of `of`.
    fn wait_known(&self, i: usize, of: &[usize]) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let g = ok(KEYS[i], &["graph", "--store", &self.store(i)]);
            let text = g["nodes"].to_string();
            let keys: Vec<String> =
                of.iter().map(|o| self.uri(*o).split('@').next().expect("key").to_string()).collect();
            if keys.iter().all(|k| text.contains(k.as_str())) {
                return;
            }
            assert!(Instant::now() < deadline, "{} does not know {of:?}: {g}", NAMES[i]);
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until node `i`'s graph holds at least `n` channels (read from the factory's logs).
    fn wait_channels(&self, i: usize, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let g = ok(KEYS[i], &["graph", "--store", &self.store(i)]);
            if g["channels"].as_array().map_or(0, Vec::len) >= n {
                return;
            }
            assert!(Instant::now() < deadline, "{} knows too few channels: {g}", NAMES[i]);
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until no channel of the nodes holds a lock.
    fn wait_settled(&self, nodes: &[usize]) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let locks: usize = nodes
                .iter()
                .map(|i| {
                    let s = ok(KEYS[*i], &["status", "--store", &self.store(*i)]);
                    s["channels"]
                        .as_array()
                        .expect("channels")
                        .iter()
                        .map(|c| c["locks"].as_array().map_or(0, Vec::len))
                        .sum::<usize>()
                })
                .sum();
            if locks == 0 {
                return;
            }
            assert!(Instant::now() < deadline, "locks still pending");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Alice – Bob (forwarding for 10 wei) – Carol, Alice knowing the route; and every node's
    /// total before anything is paid.
    fn line_of_three() -> (Self, Vec<u128>) {
        let mut net = Self::new();
        net.start(0, None);
        net.start(1, Some(("10wei", "0")));
        net.start(2, None);
        net.open(0, 1);
        net.open(1, 2);
        net.wait_known(0, &[1]);
        net.wait_channels(0, 2);
        let before = (0..3).map(|i| net.total(i)).collect();
        (net, before)
    }

    fn invoice(&self, i: usize, amount: &str) -> String {
        let v = ok(KEYS[i], &["invoice", "--store", &self.store(i), "--amount", amount, "--memo", "test"]);
        v["invoice"].as_str().expect("invoice").to_string()
    }
}

fn address(i: usize) -> String {
    KEYS[i].parse::<PrivateKeySigner>().expect("key").address().to_string()
}

#[test]
fn payments_cross_a_line_and_a_diamond_of_node_processes() {
    let (alice, bob, carol, dave, erin) = (0, 1, 2, 3, 4);
    let mut net = Network::new();
    net.start(alice, None);
    net.start(bob, Some(("100wei", "1000")));
    net.start(carol, Some(("50wei", "0")));
    net.start(dave, None);
    net.start(erin, Some(("500wei", "0")));
    net.open(alice, bob);
    net.open(bob, carol);
    let carol_dave = net.open(carol, dave);
    net.open(alice, erin);
    net.open(erin, dave);
    // Carol's announcement reaches Alice through Bob.
    net.wait_known(alice, &[bob, carol, erin]);
    net.wait_channels(alice, 5);
    let before: Vec<u128> = (0..5).map(|i| net.total(i)).collect();

    // The line Alice–Bob–Carol–Dave is the cheapest: Carol takes 50, Bob 100 + 1,050 ppm… = 101.
    let invoice = net.invoice(dave, "1000wei");
    let paid = ok(KEYS[alice], &["pay", "--store", &net.store(alice), "--invoice", &invoice]);
    assert_eq!((paid["hops"].as_u64(), paid["fee"].as_str()), (Some(3), Some("151")), "{paid}");
    net.wait_settled(&[alice, bob, carol, dave]);
    let after: Vec<u128> = (0..5).map(|i| net.total(i)).collect();
    assert_eq!(before[alice] - after[alice], 1_151);
    assert_eq!(after[bob] - before[bob], 101);
    assert_eq!(after[carol] - before[carol], 50);
    assert_eq!(after[dave] - before[dave], 1_000);
    assert_eq!(after[erin], before[erin]);
    // Paying it again pays once (the payment hash is the payment's id).
    let again = ok(KEYS[alice], &["pay", "--store", &net.store(alice), "--invoice", &invoice]);
    assert_eq!(again["preimage"], paid["preimage"]);
    assert_eq!((0..5).map(|i| net.total(i)).collect::<Vec<_>>(), after);

    // Carol spends her side of Carol–Dave: the cheap route cannot carry 1,000 wei any more, Carol
    // releases, and Alice's node retries through Erin (fee 500).
    let spend = (net.balances(carol)[&carol_dave] - 500).to_string() + "wei";
    ok(KEYS[carol], &["pay", "--store", &net.store(carol), "--channel", &carol_dave, "--amount", &spend]);
    let before: Vec<u128> = (0..5).map(|i| net.total(i)).collect();
    let invoice = net.invoice(dave, "1000wei");
    let paid = ok(KEYS[alice], &["pay", "--store", &net.store(alice), "--invoice", &invoice]);
    assert_eq!((paid["attempts"].as_u64(), paid["fee"].as_str()), (Some(2), Some("500")), "{paid}");
    net.wait_settled(&[alice, bob, carol, dave, erin]);
    let after: Vec<u128> = (0..5).map(|i| net.total(i)).collect();
    assert_eq!(before[alice] - after[alice], 1_500);
    assert_eq!((after[bob], after[carol]), (before[bob], before[carol]), "the failed side gains and loses nothing");
    assert_eq!(after[erin] - before[erin], 500);
    assert_eq!(after[dave] - before[dave], 1_000);
    // Bad input: a mangled invoice is refused before anything is sent.
    let o = vbank(KEYS[alice], &["pay", "--store", &net.store(alice), "--invoice", &invoice.replace('a', "b")]);
    assert!(!o.status.success(), "{o:?}");
    assert_eq!((0..5).map(|i| net.total(i)).collect::<Vec<_>>(), after);
    let _ = address(0);
}

#[test]
fn an_intermediary_killed_after_forwarding_is_paid_after_its_restart() {
    let (alice, bob, carol) = (0, 1, 2);
    let (mut net, before) = Network::line_of_three();
    let invoice = net.invoice(carol, "2000wei");
    // Carol's node is stopped (SIGSTOP): Bob forwards the lock, and is killed before Carol
    // claims it, so the claim can only reach him after his restart.
    let carol_pid = net.nodes[&carol].0.0.id().to_string();
    assert!(Command::new("kill").args(["-STOP", &carol_pid]).status().expect("stop").success());
    let store = net.store(alice);
    let payer = std::thread::spawn(move || {
        vbank(KEYS[alice], &["pay", "--store", &store, "--invoice", &invoice, "--timeout", "30"])
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while !net.log(bob).contains("forwarded lock") {
        assert!(Instant::now() < deadline, "Bob did not forward: {}", net.log(bob));
        std::thread::sleep(Duration::from_millis(20));
    }
    let bob_node = &mut net.nodes.get_mut(&bob).expect("bob").0;
    bob_node.0.kill().expect("SIGKILL");
    bob_node.0.wait().expect("dead");
    assert!(Command::new("kill").args(["-CONT", &carol_pid]).status().expect("cont").success());
    std::thread::sleep(Duration::from_millis(300));
    net.restart(bob);
    let o = payer.join().expect("payer");
    assert!(
        o.status.success(),
        "{}{}\n--- bob:\n{}\n--- carol:\n{}\n--- alice:\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
        net.log(bob),
        net.log(carol),
        net.log(alice)
    );
    net.wait_settled(&[alice, bob, carol]);
    let after: Vec<u128> = (0..3).map(|i| net.total(i)).collect();
    assert_eq!(before[alice] - after[alice], 2_010);
    assert_eq!(after[bob] - before[bob], 10, "Bob got his fee after the crash");
    assert_eq!(after[carol] - before[carol], 2_000);
}

#[test]
fn a_payee_that_never_answers_leaves_every_hop_its_lock_back_after_the_expiry() {
    let (alice, bob, carol) = (0, 1, 2);
    let (net, before) = Network::line_of_three();
    let invoice = net.invoice(carol, "3000wei");
    // Carol's node stops answering (SIGSTOP) before the payment reaches her.
    let carol_pid = net.nodes[&carol].0.0.id().to_string();
    assert!(Command::new("kill").args(["-STOP", &carol_pid]).status().expect("stop").success());
    let o = vbank(KEYS[alice], &["pay", "--store", &net.store(alice), "--invoice", &invoice, "--timeout", "3"]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stdout).contains("in flight"), "{o:?}");
    // Alice's lock is with Bob; Bob's to Carol is unanswered.
    let locks = |i: usize| -> usize {
        let s = ok(KEYS[i], &["status", "--store", &net.store(i)]);
        s["channels"].as_array().expect("channels").iter().map(|c| c["locks"].as_array().map_or(0, Vec::len)).sum()
    };
    assert_eq!(locks(alice), 1);
    // The chain's clock passes the lock's expiry (one hour, the default window) and Alice's node's
    // grace for an expiry (2 × 120 s), not the 3 × 120 s after which it would settle on chain.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let chain =
            vbank_client::Chain::connect(&net.url, KEYS[alice].parse().expect("key"), None).await.expect("chain");
        vbank_client::increase_time(&chain, 3600 + 250).await.expect("time");
    });
    // Alice's node proposes the expiry, Bob's accepts it (he does not know the preimage): her lock
    // is back, and asking for the payment again says it failed, without sending anything.
    let deadline = Instant::now() + Duration::from_secs(60);
    while locks(alice) > 0 {
        assert!(Instant::now() < deadline, "the lock did not expire: {}", net.log(alice));
        std::thread::sleep(Duration::from_millis(100));
    }
    let o = vbank(KEYS[alice], &["pay", "--store", &net.store(alice), "--invoice", &invoice, "--timeout", "5"]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stdout).contains("came back"), "{o:?}");
    // Carol wakes up: Bob's lock to her is past its expiry, so it is refused and Bob's proposal is
    // withdrawn. Nobody gained or lost a wei.
    assert!(Command::new("kill").args(["-CONT", &carol_pid]).status().expect("cont").success());
    net.wait_settled(&[alice, bob, carol]);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!((0..3).map(|i| net.total(i)).collect::<Vec<_>>(), before);
    let info = |i: usize| ok(KEYS[i], &["status", "--store", &net.store(i)]);
    for i in [alice, bob, carol] {
        let s = info(i);
        assert!(s["channels"].as_array().expect("channels").iter().all(|c| c["frozen"].is_null()), "{s}");
    }
}
