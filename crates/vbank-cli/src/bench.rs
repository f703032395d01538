//! `vbank bench`: the crypto bound, channel throughput, coalesced payments, and gas on anvil.
//! Build with `--release` for meaningful figures.

use std::time::{Duration, Instant};

use alloy::{
    primitives::{Address, B256, Signature, keccak256},
    signers::{
        SignerSync,
        k256::ecdsa::{VerifyingKey, signature::hazmat::PrehashVerifier},
        local::PrivateKeySigner,
    },
};
use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::{Value, json};
use vbank_client::{Chain, Factory, LocalChain, OnChain, deploy_factory, increase_time};
use vbank_core::{Channel, ChannelParams, Event, Message, WaiverChain, exchange};
use vbank_node::{
    Frame, Node, RedbStore, Session, address_of, initiate, node_key, read_frame, respond, serve, write_frame,
};

#[derive(Args, Debug)]
pub(crate) struct BenchArgs {
    /// Seconds per throughput measurement.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Payments per coalesced state update.
    #[arg(long, default_value_t = 4096)]
    batch: u32,
    /// Skip the gas measurement on anvil.
    #[arg(long)]
    no_gas: bool,
}

fn per_second(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(1e-12)
}

/// Runs `f` repeatedly for about `secs` seconds; returns the mean time per call in seconds.
fn time_op(secs: f64, mut f: impl FnMut(u64)) -> f64 {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        for _ in 0..16 {
            f(n);
            n += 1;
        }
    }
    start.elapsed().as_secs_f64() / n as f64
}

fn key(n: u8) -> PrivateKeySigner {
    PrivateKeySigner::from_bytes(&B256::with_last_byte(n)).expect("a valid constant key")
}

/// Two channels in one process with an in-memory store (the serialised state is kept per step).
struct InProcess {
    ch: [Channel; 2],
    store: [Vec<u8>; 2],
}

impl InProcess {
    fn new() -> Result<Self> {
        let params = ChannelParams {
            chain_id: 31337,
            contract: Address::repeat_byte(0xcc),
            parties: [key(1).address(), key(2).address()],
            deposits: [u128::MAX / 8, u128::MAX / 8],
            lock_period: 3600,
            token: Address::ZERO,
            salt: B256::ZERO,
        };
        let a = Channel::new(params.clone(), 0, key(1), B256::repeat_byte(1))?;
        let b = Channel::new(params, 1, key(2), B256::repeat_byte(2))?;
        let mut s = Self { ch: [a, b], store: [Vec::new(), Vec::new()] };
        let m = s.ch[0].open()?;
        s.exchange(0, m)?;
        Ok(s)
    }

    fn persist(&mut self, x: usize) -> Result<()> {
        self.store[x] = self.ch[x].state().to_bytes()?;
        Ok(())
    }

    /// Runs an exchange to its end; returns the number of payments acknowledged.
    fn exchange(&mut self, from: usize, first: Message) -> Result<u64> {
        self.persist(from)?;
        let mut acked = 0;
        let mut next = Some((1 - from, first));
        while let Some((to, msg)) = next.take() {
            let step = self.ch[to].handle(&msg)?;
            self.persist(to)?;
            for e in &step.events {
                if let Event::PaymentsAcked { count, .. } = e {
                    acked += count;
                }
            }
            next = step.reply.map(|m| (1 - to, m));
        }
        Ok(acked)
    }

    fn update(&mut self, from: usize, payments: u32) -> Result<u64> {
        for _ in 0..payments {
            self.ch[from].pay(1)?;
        }
        let m = self.ch[from].propose()?.context("a proposal")?;
        self.exchange(from, m)
    }
}

/// The hidden `bench-peer` subcommand: Bob's node for the two-process measurement.
#[derive(Args, Debug)]
pub(crate) struct PeerArgs {
    /// Bob's redb store.
    #[arg(long)]
    store: std::path::PathBuf,
}

fn bench_params() -> ChannelParams {
    ChannelParams {
        chain_id: 31337,
        contract: Address::repeat_byte(0xbe),
        parties: [key(1).address(), key(2).address()],
        deposits: [u128::MAX / 8, u128::MAX / 8],
        lock_period: 3600,
        token: Address::ZERO,
        salt: B256::ZERO,
    }
}

/// Serves one connection from Alice (prints the port first), then exits.
pub(crate) async fn peer(args: PeerArgs) -> Result<()> {
    let mut node = Node::open(key(2), RedbStore::open(&args.store)?)?;
    node.add_channel(bench_params(), B256::repeat_byte(2))?;
    let node = tokio::sync::Mutex::new(node);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("port {}", listener.local_addr()?.port());
    let (mut s, _) = listener.accept().await?;
    s.set_nodelay(true)?;
    let (them, mut session) = respond(&mut s, &key(2)).await?;
    let peer = address_of(&them);
    if peer != key(1).address() {
        bail!("the bench's peer is {peer}, not Alice");
    }
    serve(&mut s, &mut session, &node, peer, |_, _| {}).await?;
    Ok(())
}

struct TwoProcesses {
    updates: u64,
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// Alice here, Bob in a child process; one payment per update, each waited for (no pipelining).
async fn two_processes(seconds: f64) -> Result<TwoProcesses> {
    use tokio::io::AsyncBufReadExt;
    let dir = std::env::temp_dir().join(format!("vbank-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut child = tokio::process::Command::new(std::env::current_exe()?)
        .args(["bench-peer", "--store"])
        .arg(dir.join("bob.redb"))
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child.stdout.take().context("child stdout")?;
    let mut line = String::new();
    tokio::io::BufReader::new(stdout).read_line(&mut line).await?;
    let port: u16 = line.trim().strip_prefix("port ").and_then(|p| p.parse().ok()).context("the peer's port")?;
    let mut alice = Node::open(key(1), RedbStore::open(&dir.join("alice.redb"))?)?;
    let id = bench_params().contract;
    let open = alice.add_channel(bench_params(), B256::repeat_byte(1))?.context("the opening proposal")?;
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    s.set_nodelay(true)?;
    let mut session = initiate(&mut s, &key(1), &node_key(&key(2))).await?;
    let bob = key(2).address();
    write_frame(&mut s, &mut session.sender, &open).await?;
    // drives frames until `done` says so
    async fn drive(
        s: &mut tokio::net::TcpStream,
        session: &mut Session,
        alice: &mut Node<RedbStore>,
        bob: Address,
        mut done: impl FnMut(&[Event]) -> bool,
    ) -> Result<()> {
        loop {
            let f = read_frame(s, &mut session.receiver).await?;
            let (reply, events) = alice.handle(bob, &f)?;
            if let Some(r) = reply {
                write_frame(s, &mut session.sender, &r).await?;
            }
            if done(&events) {
                return Ok(());
            }
        }
    }
    drive(&mut s, &mut session, &mut alice, bob, |e| e.contains(&Event::Opened)).await?;
    let mut latencies = Vec::new();
    let start = Instant::now();
    while start.elapsed().as_secs_f64() < seconds {
        let t = Instant::now();
        let (_, frame) = alice.pay(id, 1)?;
        write_frame(&mut s, &mut session.sender, &frame.context("a proposal")?).await?;
        let acked = |e: &[Event]| e.iter().any(|e| matches!(e, Event::PaymentsAcked { .. }));
        drive(&mut s, &mut session, &mut alice, bob, acked).await?;
        latencies.push(t.elapsed().as_secs_f64());
    }
    let elapsed = start.elapsed();
    drop(s);
    let _ = child.wait().await;
    let _ = std::fs::remove_dir_all(&dir);
    let updates = latencies.len() as u64;
    latencies.sort_by(f64::total_cmp);
    Ok(TwoProcesses {
        updates,
        rate: per_second(updates, elapsed),
        p50_ms: percentile(&latencies, 0.5) * 1e3,
        p99_ms: percentile(&latencies, 0.99) * 1e3,
    })
}

/// The four frames of one update (propose, countersign, commit, revoke), with real-sized fields.
fn update_frames() -> Vec<Frame> {
    let channel = bench_params().contract;
    let sig = vbank_core::Sig([0x1b; 65]);
    let waiver = Address::repeat_byte(0x5a);
    let secret = B256::repeat_byte(0x3c);
    let big = u128::MAX / 8;
    [
        Message::Propose { nonce: 123_456, balances: [big - 123_456, big + 123_456], waiver },
        Message::Countersign { nonce: 123_456, signature: sig, waiver },
        Message::Commit { nonce: 123_456, signature: sig, revocation: Some(secret) },
        Message::Revoke { nonce: 123_455, secret },
    ]
    .into_iter()
    .map(|message| Frame::channel(channel, message))
    .collect()
}

struct TransportCost {
    handshake_us: f64,
    frame_us: f64,
    update_us: f64,
    frame_bytes: f64,
}

/// BOLT #8's cost: a whole handshake (both sides, in memory), and encrypting plus decrypting
/// the frames of one update (JSON encoding excluded: it was there before the encryption).
fn transport_cost(t: f64) -> Result<TransportCost> {
    use vbank_node::noise::{Initiator, Responder};
    let (ka, kb) = (key(1), key(2));
    let (sa, sb) = (*ka.credential().as_nonzero_scalar(), *kb.credential().as_nonzero_scalar());
    let bob = node_key(&kb);
    let mut failed = false;
    let handshake = time_op(t, |_| {
        let mut i = Initiator::new(&sa, bob);
        let mut r = Responder::new(&sb);
        let done = r
            .act_one(&i.act_one())
            .ok()
            .and_then(|two| i.act_two(&two).ok())
            .and_then(|(three, _)| r.act_three(&three).ok());
        failed |= done.is_none();
    });
    if failed {
        bail!("a benchmark handshake failed");
    }
    let payloads: Vec<Vec<u8>> = update_frames()
        .iter()
        .map(|f| vbank_node::frame::encode(f).map_err(anyhow::Error::from))
        .collect::<Result<_>>()?;
    let frame_bytes = payloads.iter().map(Vec::len).sum::<usize>() as f64 / payloads.len() as f64;
    let (mut a, mut b) = Session::pair_for_tests([1; 32], [2; 32], [3; 32]);
    let update = time_op(t, |_| {
        for p in &payloads {
            let wire = a.sender.encrypt(p).unwrap_or_default();
            let (msgs, err) = b.receiver.decrypt_all(&wire);
            failed |= err.is_some() || msgs.len() != 1;
        }
    });
    if failed {
        bail!("a benchmark frame did not decrypt");
    }
    Ok(TransportCost {
        handshake_us: handshake * 1e6,
        frame_us: update * 1e6 / payloads.len() as f64,
        update_us: update * 1e6,
        frame_bytes,
    })
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn gas(json_out: &mut Value) -> Result<Vec<(String, u64)>> {
    let local = LocalChain::spawn().context("starting anvil")?;
    let a = Chain::connect(&local.endpoint(), local.signer(0)?, None).await?;
    let b = a.with_signer(local.signer(1)?);
    let eth = 1_000_000_000_000_000_000u128;
    let mut rows = Vec::new();
    let mut life = |name: &str, gas: u64| rows.push((name.to_string(), gas));
    let (_, factory) = deploy_factory(&a).await?;
    if let Some(f) = factory {
        life("factory (once per chain, not per channel)", f.gas_used);
    }
    for scenario in 0..3 {
        let mut params = ChannelParams {
            chain_id: local.chain_id(),
            contract: Address::ZERO,
            parties: [a.address(), b.address()],
            deposits: [eth, eth],
            lock_period: 3600,
            token: Address::ZERO,
            salt: B256::with_last_byte(scenario),
        };
        let (addr, d) = Factory::new(a.clone()).open(&params).await?;
        params.contract = addr;
        let mut ca = Channel::new(params.clone(), 0, a.signer().clone(), PrivateKeySigner::random().to_bytes())?;
        let mut cb = Channel::new(params.clone(), 1, b.signer().clone(), PrivateKeySigner::random().to_bytes())?;
        let m = ca.open()?;
        exchange(&mut ca, &mut cb, 0, m)?;
        let (oa, ob) = (OnChain::new(a.clone(), addr), OnChain::new(b.clone(), addr));
        let d0 = oa.deposit_agreed(&params).await?;
        let d1 = ob.deposit_agreed(&params).await?;
        ca.pay(eth / 4)?;
        let m = ca.propose()?.context("proposal")?;
        exchange(&mut ca, &mut cb, 0, m)?;
        let open = d.gas_used + d0.gas_used + d1.gas_used;
        match scenario {
            0 => {
                let req = ca.close()?.reply.context("close request")?;
                let acc = cb.handle(&req)?.reply.context("close accept")?;
                ca.handle(&acc)?;
                let (n, bal, sigs) = ca.close_signatures().context("signatures")?;
                let c = oa.cooperative_close(n, bal, &sigs).await?;
                life("open (factory clone)", d.gas_used);
                life("deposit (first)", d0.gas_used);
                life("deposit (second, starts Running)", d1.gas_used);
                life("cooperativeClose", c.gas_used);
                life("life: open, fund, cooperative close", open + c.gas_used);
            }
            1 => {
                let sheet = ca.latest().context("sheet")?.clone();
                let l = oa.liquidate(&sheet).await?;
                increase_time(&a, 3600).await?;
                let w = oa.withdraw_by_master().await?;
                life("liquidate", l.gas_used);
                life("withdrawByMaster", w.gas_used);
                life("life: open, fund, liquidate, withdraw", open + l.gas_used + w.gas_used);
            }
            _ => {
                let stale = cb.latest().context("sheet")?.clone();
                cb.pay(eth / 8)?;
                let m = cb.propose()?.context("proposal")?;
                exchange(&mut ca, &mut cb, 1, m)?;
                let l = ob.liquidate(&stale).await?;
                let sig = ca.punishment(stale.nonce, stale.waiver).context("revoked")?;
                let p = oa.withdraw_by_peer(stale.nonce, &sig).await?;
                life("withdrawByPeer (punishment)", p.gas_used);
                life("life: open, fund, stale liquidation, punishment", open + l.gas_used + p.gas_used);
            }
        }
    }
    json_out["gas"] = json!(rows.iter().map(|(k, v)| json!({ "step": k, "gas": v })).collect::<Vec<_>>());
    Ok(rows)
}

pub(crate) async fn run(args: BenchArgs, json_mode: bool) -> Result<()> {
    if args.seconds <= 0.0 || args.batch == 0 {
        bail!("--seconds and --batch must be positive");
    }
    let mut out = json!({ "profile": if cfg!(debug_assertions) { "debug" } else { "release" } });
    let say = |s: String| {
        if !json_mode {
            println!("{s}");
        }
    };
    if cfg!(debug_assertions) {
        say("note: a debug build; run `cargo run --release -p vbank-cli -- bench` for real figures".into());
    }
    let t = (args.seconds / 3.0).max(0.2);

    // 1. The crypto bound.
    let signer = key(7);
    let hash = keccak256(b"vbank bench");
    let sig: Signature = signer.sign_hash_sync(&hash)?;
    let vk: VerifyingKey = *signer.credential().verifying_key();
    let ksig = sig.to_k256()?;
    let chain = WaiverChain::new(B256::repeat_byte(9));
    let sign = time_op(t, |_| {
        std::hint::black_box(signer.sign_hash_sync(&hash).ok());
    });
    let recover = time_op(t, |_| {
        std::hint::black_box(sig.recover_address_from_prehash(&hash).ok());
    });
    let verify = time_op(t, |_| {
        std::hint::black_box(vk.verify_prehash(hash.as_slice(), &ksig).is_ok());
    });
    let derive = time_op(t, |n| {
        std::hint::black_box(chain.address(n % 1_000_000).ok());
    });
    // Per update each party signs one sheet, verifies one signature against the peer's known key,
    // and derives two waiver addresses (its own next one, and the one the peer's revealed secret
    // must match): the bound is what those allow when both parties share one core.
    let per_update = 2.0 * (sign + verify + 2.0 * derive);
    let bound = 1.0 / per_update;
    say(format!(
        "1. crypto bound: sign {:.1} µs, verify (known key) {:.1} µs, recover {:.1} µs, waiver derivation {:.1} µs\n   \
         an update costs each party 1 sign + 1 verify + 2 derivations = {:.1} µs in all: at most {bound:.0} updates/s \
         per channel",
        sign * 1e6,
        verify * 1e6,
        recover * 1e6,
        derive * 1e6,
        per_update * 1e6
    ));
    out["crypto"] = json!({
        "sign_us": sign * 1e6, "recover_us": recover * 1e6, "verify_us": verify * 1e6,
        "derive_us": derive * 1e6, "update_us": per_update * 1e6, "bound_updates_per_s": bound,
    });

    // 2. In-process channel throughput: one payment per update, directions alternating.
    let mut ip = InProcess::new()?;
    let start = Instant::now();
    let mut updates = 0u64;
    while start.elapsed().as_secs_f64() < args.seconds {
        ip.update((updates % 2) as usize, 1)?;
        updates += 1;
    }
    let rate = per_second(updates, start.elapsed());
    say(format!(
        "2. in-process (both parties, in-memory store): {rate:.0} updates/s = {:.2} of the bound ({updates} updates)",
        rate / bound
    ));
    out["in_process"] = json!({ "updates": updates, "updates_per_s": rate, "ratio_to_bound": rate / bound });

    // 2b. The transport's cost: BOLT #8 handshake, encrypt + decrypt per frame and per update.
    let tc = transport_cost(t)?;
    say(format!(
        "2b. transport (BOLT #8, ChaCha20-Poly1305): handshake {:.0} µs (both sides); encrypt + decrypt {:.2} µs per \
         frame ({:.0} bytes on average), {:.2} µs per update (4 frames) = {:.1}% of the crypto bound's update",
        tc.handshake_us,
        tc.frame_us,
        tc.frame_bytes,
        tc.update_us,
        100.0 * tc.update_us / (per_update * 1e6)
    ));
    out["transport"] = json!({
        "handshake_us": tc.handshake_us, "frame_us": tc.frame_us, "update_us": tc.update_us,
        "frame_bytes": tc.frame_bytes, "share_of_update": tc.update_us / (per_update * 1e6),
    });

    // 3. Two processes over loopback TCP, each with a durable redb store (fsync per stored state),
    // linked by the encrypted transport.
    let tp = two_processes(args.seconds).await.context("the two-process measurement")?;
    say(format!(
        "3. two processes over loopback TCP, BOLT #8 encrypted, redb stores (fsync per stored state): {:.0} updates/s \
         = {:.2} of the bound; latency p50 {:.2} ms, p99 {:.2} ms ({} updates)",
        tp.rate,
        tp.rate / bound,
        tp.p50_ms,
        tp.p99_ms,
        tp.updates
    ));
    out["two_processes"] = json!({
        "updates": tp.updates, "updates_per_s": tp.rate, "ratio_to_bound": tp.rate / bound,
        "p50_ms": tp.p50_ms, "p99_ms": tp.p99_ms,
    });

    // 4. Coalesced payments: `batch` payments per update; latency = ack time - pay time.
    let mut ip = InProcess::new()?;
    let start = Instant::now();
    let mut payments = 0u64;
    let mut latencies: Vec<f64> = Vec::new();
    let mut weights: Vec<u64> = Vec::new();
    while start.elapsed().as_secs_f64() < args.seconds {
        let from = (payments / u64::from(args.batch) % 2) as usize;
        let first_paid = Instant::now();
        let acked = ip.update(from, args.batch)?;
        let done = first_paid.elapsed().as_secs_f64();
        if acked != u64::from(args.batch) {
            bail!("{acked} payments acknowledged, {} sent", args.batch);
        }
        payments += acked;
        latencies.push(done);
        weights.push(acked);
    }
    let rate = per_second(payments, start.elapsed());
    // every payment of a batch waits at most as long as the batch's first one
    let mut sorted = latencies.clone();
    sorted.sort_by(f64::total_cmp);
    let p50 = percentile(&sorted, 0.5) * 1e3;
    let p99 = percentile(&sorted, 0.99) * 1e3;
    say(format!(
        "4. coalesced: {rate:.0} payments/s with {} payments per update; acknowledgement latency p50 {p50:.2} ms, \
         p99 {p99:.2} ms (worst payment of each batch); every ack follows the peer's revocation",
        args.batch
    ));
    out["coalesced"] = json!({
        "batch": args.batch, "payments": payments, "payments_per_s": rate, "p50_ms": p50, "p99_ms": p99,
        "updates": latencies.len(),
    });

    // 5. Gas on anvil.
    if !args.no_gas {
        let rows = gas(&mut out).await?;
        say("5. gas on anvil (from receipts):".into());
        for (k, v) in &rows {
            say(format!("   {k:<52} {v:>9}"));
        }
    }
    if json_mode {
        println!("{out}");
    }
    Ok(())
}
