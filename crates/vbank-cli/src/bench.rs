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
use vbank_core::{Channel, ChannelParams, Event, Message, Phase, WaiverChain, exchange};
use vbank_node::{
    Frame, Node, NodeUri, Notice, RedbStore, Service, Session, Store, address_of, initiate, node_key, read_frame,
    respond, serve, write_frame,
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
    /// Serve with a `Service` (group commit, per-channel locks) and this many channels, instead
    /// of one channel through `serve` (one disk sync per stored state).
    #[arg(long)]
    service: Option<u16>,
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

/// Channel `i` of the service measurements (random-looking contract addresses, as real ones).
fn service_params(i: u16) -> ChannelParams {
    ChannelParams { contract: Address::from_slice(&keccak256(i.to_be_bytes())[12..]), ..bench_params() }
}

/// Bob with a `Service` and `channels` channels: prints the port, then the syncs made when every
/// channel is open, then the syncs and group commits when Alice's link drops; exits.
async fn service_peer(store: &std::path::Path, channels: u16) -> Result<()> {
    let mut node = Node::open(key(2), RedbStore::open(store)?)?;
    for i in 0..channels {
        node.add_channel(service_params(i), B256::repeat_byte(2))?;
    }
    let service = Service::new(node, key(2), None);
    let mut notices = service.subscribe();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("port {}", listener.local_addr()?.port());
    service.listen(listener);
    let mut opened = 0;
    loop {
        match notices.recv().await {
            Ok(Notice::Event { event: Event::Opened, .. }) => {
                opened += 1;
                if opened == channels {
                    println!("opened syncs {}", service.node().lock().await.store().syncs());
                }
            }
            Ok(Notice::Disconnected { peer, .. }) if peer == key(1).address() => break,
            Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
            Err(e) => bail!("notices: {e}"),
        }
    }
    let syncs = service.node().lock().await.store().syncs();
    let (batches, states) = service.group_commits();
    println!("done syncs {syncs} batches {batches} states {states}");
    service.shutdown().await;
    Ok(())
}

/// Serves one connection from Alice (prints the port first), then exits.
pub(crate) async fn peer(args: PeerArgs) -> Result<()> {
    if let Some(n) = args.service {
        return service_peer(&args.store, n).await;
    }
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
    let before = node.lock().await.store().syncs();
    serve(&mut s, &mut session, &node, peer, |_, _| {}).await?;
    println!("done syncs {}", node.lock().await.store().syncs() - before);
    Ok(())
}

struct TwoProcesses {
    updates: u64,
    /// Payments made (more than `updates` when several are in flight and share an update).
    payments: u64,
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// Disk syncs per update: Alice's, Bob's.
    syncs: [f64; 2],
}

/// Starts `vbank bench-peer` with `args`; returns the child, its stdout lines, and its port.
async fn start_peer(
    args: &[&str],
) -> Result<(tokio::process::Child, tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>, u16)> {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(std::env::current_exe()?)
        .arg("bench-peer")
        .args(args)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child.stdout.take().context("child stdout")?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = lines.next_line().await?.unwrap_or_default();
    let port: u16 = line.trim().strip_prefix("port ").and_then(|p| p.parse().ok()).context("the peer's port")?;
    Ok((child, lines, port))
}

/// The number after `key` in a line of the peer's (`… syncs 12 …`).
fn field(line: &str, key: &str) -> Option<u64> {
    let mut words = line.split_whitespace();
    words.by_ref().find(|w| *w == key)?;
    words.next()?.parse().ok()
}

/// Alice's `Service` and Bob's (in a child process) with `channels` channels; on each channel a
/// task pays one payment at a time, each awaited (acknowledged: stored at both ends, the old
/// sheets revoked), for `seconds`.
/// Alice's `Service` here, Bob's in a child process, `channels` channels between them, each
/// with `in_flight` payers paying one wei at a time, each payment waited for. Updates are counted
/// from the channels' nonces (payments in flight together share an update); latencies are the
/// payments'.
async fn service_run(seconds: f64, channels: u16, in_flight: usize) -> Result<TwoProcesses> {
    let dir = std::env::temp_dir().join(format!("vbank-bench-svc-{}-{channels}-{in_flight}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let bob_store = dir.join("bob.redb");
    let n = channels.to_string();
    let (mut child, mut lines, port) =
        start_peer(&["--store", bob_store.to_str().context("utf-8 path")?, "--service", &n]).await?;
    let mut node = Node::open(key(1), RedbStore::open(&dir.join("alice.redb"))?)?;
    for i in 0..channels {
        node.add_channel(service_params(i), B256::repeat_byte(1))?;
    }
    let alice = Service::new(node, key(1), None);
    alice.connect(&NodeUri::new(node_key(&key(2)), "127.0.0.1", port)).await?;
    let ids: Vec<Address> = (0..channels).map(|i| service_params(i).contract).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let node = alice.node().lock().await;
        if ids.iter().all(|id| node.channel(*id).is_some_and(|c| *c.phase() == Phase::Open)) {
            break;
        }
        drop(node);
        if Instant::now() > deadline {
            bail!("the channels did not open");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let bob_opened = lines.next_line().await?.and_then(|l| field(&l, "syncs")).context("bob's opening syncs")?;
    let nonces = |node: &Node<RedbStore>| ids.iter().filter_map(|id| node.channel(*id)).map(|c| c.nonce()).sum::<u64>();
    let (alice_before, nonces_before) = {
        let node = alice.node().lock().await;
        (node.store().syncs(), nonces(&node))
    };
    let start = Instant::now();
    let mut tasks = Vec::new();
    for id in ids.iter().copied().flat_map(|id| std::iter::repeat_n(id, in_flight.max(1))) {
        let alice = alice.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while start.elapsed().as_secs_f64() < seconds {
                let t = Instant::now();
                alice.pay(id, 1, 1, Duration::from_secs(30)).await?;
                latencies.push(t.elapsed().as_secs_f64());
            }
            Ok::<_, vbank_node::Error>(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await??);
    }
    let elapsed = start.elapsed();
    let (alice_syncs, updates) = {
        let node = alice.node().lock().await;
        (node.store().syncs() - alice_before, nonces(&node) - nonces_before)
    };
    alice.shutdown().await;
    drop(alice);
    let bob_done = lines.next_line().await?.unwrap_or_default();
    let bob_syncs = field(&bob_done, "syncs").context("bob's syncs")? - bob_opened;
    let _ = child.wait().await;
    let _ = std::fs::remove_dir_all(&dir);
    let payments = latencies.len() as u64;
    latencies.sort_by(f64::total_cmp);
    let per = |s: u64| s as f64 / updates.max(1) as f64;
    Ok(TwoProcesses {
        updates,
        payments,
        rate: per_second(updates, elapsed),
        p50_ms: percentile(&latencies, 0.5) * 1e3,
        p99_ms: percentile(&latencies, 0.99) * 1e3,
        syncs: [per(alice_syncs), per(bob_syncs)],
    })
}

/// Alice here, Bob in a child process; one payment per update, each waited for (no pipelining).
async fn two_processes(seconds: f64) -> Result<TwoProcesses> {
    let dir = std::env::temp_dir().join(format!("vbank-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let bob_store = dir.join("bob.redb");
    let (mut child, mut lines, port) = start_peer(&["--store", bob_store.to_str().context("utf-8 path")?]).await?;
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
    let alice_before = alice.store().syncs();
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
    let alice_syncs = alice.store().syncs() - alice_before;
    drop(s);
    // Bob's count includes the opening (one state: what he countersigned, then sheet 0).
    let bob_done = lines.next_line().await?.unwrap_or_default();
    let bob_syncs = field(&bob_done, "syncs").context("bob's syncs")?.saturating_sub(2);
    let _ = child.wait().await;
    let _ = std::fs::remove_dir_all(&dir);
    let updates = latencies.len() as u64;
    latencies.sort_by(f64::total_cmp);
    let per = |s: u64| s as f64 / updates.max(1) as f64;
    Ok(TwoProcesses {
        updates,
        payments: updates,
        rate: per_second(updates, elapsed),
        p50_ms: percentile(&latencies, 0.5) * 1e3,
        p99_ms: percentile(&latencies, 0.99) * 1e3,
        syncs: [per(alice_syncs), per(bob_syncs)],
    })
}

/// The three frames of one signed update (propose, countersign with the revocation, revoke),
/// with real-sized fields.
fn update_frames() -> Vec<Frame> {
    let channel = bench_params().contract;
    let sig = vbank_core::Sig([0x1b; 65]);
    let waiver = Address::repeat_byte(0x5a);
    let secret = B256::repeat_byte(0x3c);
    let big = u128::MAX / 8;
    [
        Message::Propose {
            signature: Some(sig),
            nonce: 123_456,
            balances: [big - 123_456, big + 123_456],
            waiver,
            locks: vec![],
            moves: vec![],
            onions: vec![],
        },
        Message::Countersign { nonce: 123_456, signature: sig, waiver, revocation: Some(secret), next: Some(waiver) },
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

/// The mean cost of one durable redb commit of `state` (a channel's stored state, as a node
/// saves it), in seconds, and the state's size in bytes.
fn store_commit(t: f64, state: &vbank_core::ChannelState) -> Result<(f64, usize)> {
    let dir = std::env::temp_dir().join(format!("vbank-bench-commit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let store = RedbStore::open(&dir.join("s.redb"))?;
    let id = state.params.contract;
    let mut failed = None;
    let cost = time_op(t, |_| {
        if let Err(e) = store.save(id, state) {
            failed = Some(e);
        }
    });
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
    if let Some(e) = failed {
        bail!("a benchmark commit failed: {e}");
    }
    Ok((cost, state.to_bytes()?.len()))
}

/// The mean cost of a 100-byte write + fdatasync in the temporary directory, in seconds.
fn disk_sync(t: f64) -> Result<f64> {
    use std::io::Write;
    let path = std::env::temp_dir().join(format!("vbank-bench-sync-{}", std::process::id()));
    let mut f = std::fs::File::create(&path)?;
    let mut failed = None;
    let cost = time_op(t, |_| {
        if let Err(e) = f.write_all(&[0x5a; 100]).and_then(|()| f.sync_data()) {
            failed = Some(e);
        }
    });
    drop(f);
    let _ = std::fs::remove_file(&path);
    match failed {
        Some(e) => Err(e.into()),
        None => Ok(cost),
    }
}

/// One crypto back end's costs, in seconds, and the bound they set.
struct Crypto {
    sign: f64,
    verify: f64,
    recover: f64,
    derive: f64,
    plain_verify: f64,
    update: f64,
    bound: f64,
}

impl Crypto {
    fn new(sign: f64, verify: f64, recover: f64, derive: f64, plain_verify: f64) -> Self {
        // Per update each party signs one sheet, checks one signature against the peer's known
        // key, and derives two waiver addresses (its own next one, and the one the peer's revealed
        // secret must match): the bound is what those allow when both parties share one core.
        let update = 2.0 * (sign + verify + 2.0 * derive);
        Self { sign, verify, recover, derive, plain_verify, update, bound: 1.0 / update }
    }
}

/// k256 (alloy's signer, before) and libsecp256k1 (the core's back end now) on the same digests.
fn crypto(t: f64) -> Result<[Crypto; 2]> {
    use secp256k1::{
        Message as Digest, Secp256k1, SecretKey,
        ecdsa::{RecoverableSignature, RecoveryId},
    };
    let signer = key(7);
    let hash = keccak256(b"vbank bench");
    let sig: Signature = signer.sign_hash_sync(&hash)?;
    let vk: VerifyingKey = *signer.credential().verifying_key();
    let ksig = sig.to_k256()?;
    let chain = WaiverChain::new(B256::repeat_byte(9));
    let k256 = Crypto::new(
        time_op(t, |_| {
            std::hint::black_box(signer.sign_hash_sync(&hash).ok());
        }),
        time_op(t, |_| {
            std::hint::black_box(vk.verify_prehash(hash.as_slice(), &ksig).is_ok());
        }),
        time_op(t, |_| {
            std::hint::black_box(sig.recover_address_from_prehash(&hash).ok());
        }),
        time_op(t, |n| {
            let secret = chain.secret(n % 1_000_000).ok().unwrap_or_default();
            std::hint::black_box(vbank_core::waiver_key(&secret).map(|k| k.address()).ok());
        }),
        0.0,
    );
    let secp = Secp256k1::new();
    let sk = SecretKey::from_byte_array(signer.credential().to_bytes().into())?;
    let pk = secp256k1::PublicKey::from_secret_key(&secp, &sk);
    let digest = Digest::from_digest(hash.0);
    let rsig = secp.sign_ecdsa_recoverable(digest, &sk);
    let (id, rs) = rsig.serialize_compact();
    let plain = rsig.to_standard();
    let libsecp = Crypto::new(
        time_op(t, |_| {
            std::hint::black_box(secp.sign_ecdsa_recoverable(digest, &sk));
        }),
        // what the core does: recover with the given v, compare with the known key
        time_op(t, |_| {
            let ok = RecoverableSignature::from_compact(&rs, id)
                .and_then(|s| secp.recover_ecdsa(digest, &s))
                .is_ok_and(|k| k == pk);
            std::hint::black_box(ok);
        }),
        time_op(t, |_| {
            let r = RecoveryId::try_from(i32::from(id)).and_then(|id| RecoverableSignature::from_compact(&rs, id));
            let a = r.and_then(|s| secp.recover_ecdsa(digest, &s)).map(|k| keccak256(&k.serialize_uncompressed()[1..]));
            std::hint::black_box(a.is_ok());
        }),
        time_op(t, |n| {
            std::hint::black_box(chain.address(n % 1_000_000).ok());
        }),
        time_op(t, |_| {
            std::hint::black_box(secp.verify_ecdsa(digest, &plain, &pk).is_ok());
        }),
    );
    Ok([k256, libsecp])
}

/// Payments routed through one intermediary: three services in this process (durable redb stores,
/// group commit, loopback TCP, the encrypted transport), Alice → Bob (forwarding) → Carol. Each
/// payment is an invoice from Carol and `pay_invoice` on Alice: two locks added and two fulfilled,
/// each a full update.
struct Routed {
    sequential: f64,
    seq_p50_ms: f64,
    seq_p99_ms: f64,
    concurrent: f64,
    con_p50_ms: f64,
    con_p99_ms: f64,
    in_flight: usize,
    payments: u64,
}

async fn routed(seconds: f64, in_flight: usize) -> Result<Routed> {
    use vbank_node::{ForwardFees, PayOptions, network::GraphChannel};
    let dir = tempfile::tempdir().context("a temporary directory")?;
    let admit: vbank_node::Admission = std::sync::Arc::new(|_c, _p, params: Option<ChannelParams>| {
        Box::pin(async move { params.ok_or_else(|| "no parameters".to_string()) })
    });
    let mut nodes = Vec::new();
    for n in [11u8, 12, 13] {
        let store = RedbStore::open(&dir.path().join(format!("{n}.redb")))?;
        let svc = Service::new(Node::open(key(n), store)?, key(n), Some(std::sync::Arc::clone(&admit)));
        svc.listen(tokio::net::TcpListener::bind("127.0.0.1:0").await?);
        svc.spawn_ticker(Duration::from_millis(100));
        nodes.push(svc);
    }
    let (alice, bob, carol) = (&nodes[0], &nodes[1], &nodes[2]);
    bob.set_forwarding(Some(ForwardFees { base: 1, ppm: 0 })).await?;
    for (i, (a, b)) in [(alice, bob), (bob, carol)].into_iter().enumerate() {
        let params = ChannelParams {
            chain_id: 31337,
            contract: Address::repeat_byte(0xd0 + i as u8),
            parties: [a.address(), b.address()],
            deposits: [u128::MAX / 8, u128::MAX / 8],
            lock_period: 3600,
            token: Address::ZERO,
            salt: B256::ZERO,
        };
        a.connect(&b.own_uri().context("listening")?).await?;
        a.open(params.clone(), B256::repeat_byte(i as u8 + 1), Duration::from_secs(30)).await?;
        alice.add_graph_channel(GraphChannel {
            id: params.contract,
            parties: params.parties,
            capacity: u128::MAX / 4,
            token: Address::ZERO,
        });
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while alice.graph().0.is_empty() {
        if Instant::now() > deadline {
            bail!("Bob's announcement did not reach Alice");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let opts = PayOptions { max_fee: 10, window: 3600, timeout: Duration::from_secs(30) };
    let pay_one = move |alice: Service<RedbStore>, carol: Service<RedbStore>| async move {
        let invoice = carol.invoice(31337, 1_000, Address::ZERO, "", 3600).await?;
        let t = Instant::now();
        alice.pay_invoice(&invoice, opts).await?;
        Ok::<f64, anyhow::Error>(t.elapsed().as_secs_f64())
    };
    // One at a time: the latency of a routed payment.
    let mut seq = Vec::new();
    let start = Instant::now();
    while start.elapsed().as_secs_f64() < seconds / 2.0 {
        seq.push(pay_one(alice.clone(), carol.clone()).await?);
    }
    let sequential = per_second(seq.len() as u64, start.elapsed());
    // `in_flight` payers at once.
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..in_flight {
        let (alice, carol) = (alice.clone(), carol.clone());
        let half = seconds / 2.0;
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let begun = Instant::now();
            while begun.elapsed().as_secs_f64() < half {
                lat.push(pay_one(alice.clone(), carol.clone()).await?);
            }
            Ok::<_, anyhow::Error>(lat)
        }));
    }
    let mut con = Vec::new();
    for t in tasks {
        con.extend(t.await.context("a payer task")??);
    }
    let concurrent = per_second(con.len() as u64, start.elapsed());
    for n in &nodes {
        n.shutdown().await;
    }
    seq.sort_by(f64::total_cmp);
    con.sort_by(f64::total_cmp);
    Ok(Routed {
        sequential,
        seq_p50_ms: percentile(&seq, 0.5) * 1e3,
        seq_p99_ms: percentile(&seq, 0.99) * 1e3,
        concurrent,
        con_p50_ms: percentile(&con, 0.5) * 1e3,
        con_p99_ms: percentile(&con, 0.99) * 1e3,
        in_flight,
        payments: (seq.len() + con.len()) as u64,
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

    // 1. The crypto bound, with both back ends.
    let c = crypto(t)?;
    let [k, l] = &c;
    let bound = l.bound;
    say(format!(
        "1. crypto (µs)          sign   verify(known key)  recover  waiver derivation  update (both parties)  bound\n   \
         k256            {:>10.1} {:>12.1} {:>14.1} {:>12.1} {:>18.1} {:>13.0} updates/s\n   \
         libsecp256k1    {:>10.1} {:>12.1} {:>14.1} {:>12.1} {:>18.1} {:>13.0} updates/s (in use)\n   \
         (per update each party signs 1 sheet, checks 1 signature against the peer's known key, derives 2 waiver \
         addresses; libsecp256k1's plain verify, which ignores v: {:.1} µs)",
        k.sign * 1e6,
        k.verify * 1e6,
        k.recover * 1e6,
        k.derive * 1e6,
        k.update * 1e6,
        k.bound,
        l.sign * 1e6,
        l.verify * 1e6,
        l.recover * 1e6,
        l.derive * 1e6,
        l.update * 1e6,
        l.bound,
        c[1].plain_verify * 1e6,
    ));
    let js = |c: &Crypto| {
        json!({
            "sign_us": c.sign * 1e6, "recover_us": c.recover * 1e6, "verify_us": c.verify * 1e6,
            "derive_us": c.derive * 1e6, "update_us": c.update * 1e6, "bound_updates_per_s": c.bound,
        })
    };
    out["crypto"] = js(l);
    out["crypto"]["plain_verify_us"] = json!(l.plain_verify * 1e6);
    out["crypto_k256"] = js(k);
    let per_update = l.update;

    // 1b. The disk: what one sync costs in this run (it varies with the machine's other I/O).
    let fsync = disk_sync(t)?;
    say(format!("1b. disk: a 100-byte write + fdatasync costs {:.0} µs in this run", fsync * 1e6));
    out["disk_sync_us"] = json!(fsync * 1e6);

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

    // 1c. What one stored state costs: a durable redb commit of a channel's state (the in-process
    // run's, with its revocations), as a node stores it.
    let (commit, state_bytes) = store_commit(t, ip.ch[0].state())?;
    say(format!(
        "1c. store: one durable redb commit of a channel state ({state_bytes} bytes of JSON) costs {:.0} µs = {:.1} \
         disk syncs of 1b",
        commit * 1e6,
        commit / fsync
    ));
    out["store_commit_us"] = json!(commit * 1e6);
    out["state_bytes"] = json!(state_bytes);

    // 2b. The transport's cost: BOLT #8 handshake, encrypt + decrypt per frame and per update.
    let tc = transport_cost(t)?;
    say(format!(
        "2b. transport (BOLT #8, ChaCha20-Poly1305): handshake {:.0} µs (both sides); encrypt + decrypt {:.2} µs per \
         frame ({:.0} bytes on average), {:.2} µs per update (3 frames) = {:.1}% of the crypto bound's update",
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

    // 3. Two processes over loopback TCP, each with a durable redb store, linked by the encrypted
    // transport: (a) `Node` driven directly (`serve`), one sync per stored state; (b) `Service`
    // with group commit and per-channel locks, one channel; (c) the same with 64 channels.
    let tp = two_processes(args.seconds).await.context("the two-process measurement")?;
    let one = service_run(args.seconds, 1, 1).await.context("the one-channel service measurement")?;
    let piped = service_run(args.seconds, 1, 16).await.context("the one-channel pipelined measurement")?;
    let many = service_run(args.seconds, 64, 1).await.context("the 64-channel service measurement")?;
    for (name, key, r) in [
        ("3a. Node + serve, one fsync per stored state, 1 channel", "two_processes", &tp),
        ("3b. Service, group commit, 1 channel, 1 payment in flight", "service_1_channel", &one),
        ("3b'. Service, group commit, 1 channel, 16 payments in flight", "service_1_channel_16_in_flight", &piped),
        ("3c. Service, group commit, 64 channels, 1 payment in flight each", "service_64_channels", &many),
    ] {
        say(format!(
            "{name}: {:.0} updates/s = {:.2} of the bound; payment latency p50 {:.2} ms, p99 {:.2} ms; disk syncs \
             per update: payer {:.2}, payee {:.2} ({} updates, {} payments)",
            r.rate,
            r.rate / bound,
            r.p50_ms,
            r.p99_ms,
            r.syncs[0],
            r.syncs[1],
            r.updates,
            r.payments
        ));
        out[key] = json!({
            "updates": r.updates, "payments": r.payments, "updates_per_s": r.rate, "ratio_to_bound": r.rate / bound,
            "p50_ms": r.p50_ms, "p99_ms": r.p99_ms, "syncs_per_update": r.syncs,
        });
    }

    // 3d. Routed through one intermediary (A → B → C), one at a time and many in flight.
    let r = routed(args.seconds, 16).await.context("the routed measurement")?;
    say(format!(
        "3d. routed A → B → C (3 in-process services, durable stores, loopback, one invoice per payment): one at a \
         time {:.0} payments/s, latency p50 {:.1} ms, p99 {:.1} ms; {} in flight {:.0} payments/s, p50 {:.1} ms, \
         p99 {:.1} ms ({} payments; each is 4 channel updates: 2 locks added, 2 fulfilled)",
        r.sequential, r.seq_p50_ms, r.seq_p99_ms, r.in_flight, r.concurrent, r.con_p50_ms, r.con_p99_ms, r.payments
    ));
    out["routed"] = json!({
        "sequential_per_s": r.sequential, "sequential_p50_ms": r.seq_p50_ms, "sequential_p99_ms": r.seq_p99_ms,
        "in_flight": r.in_flight, "concurrent_per_s": r.concurrent, "concurrent_p50_ms": r.con_p50_ms,
        "concurrent_p99_ms": r.con_p99_ms, "payments": r.payments,
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
