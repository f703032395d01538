//! The `vbank` binary as a user runs it.

use std::{
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

/// Anvil's well-known dev account 0 and 1.
const KEY0: &str = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
const ADDR1: &str = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";

fn vbank(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vbank"));
    cmd.args(args).env_remove("VBANK_PRIVATE_KEY");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().expect("run vbank")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// anvil started by the project's script on a free port.
fn script_anvil() -> (Killed, String) {
    let port = TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let child = Command::new(repo().join("anvil-scripts/anvil.sh"))
        .args(["--port", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("anvil-scripts/anvil.sh");
    let guard = Killed(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "anvil did not start on port {port}");
        std::thread::sleep(Duration::from_millis(100));
    }
    (guard, format!("http://127.0.0.1:{port}"))
}

#[test]
fn deploy_on_the_embedded_chain_prints_address_and_gas() {
    let o = vbank(&["deploy", "--amount0", "1.5", "--amount1", "2eth", "--lock", "600"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    // The embedded chain has no factory yet: it is deployed first, at its deterministic address.
    let factory = vbank_contracts::factory_address().to_string();
    assert!(out.starts_with(&format!("deployed the VirtualBank factory at {factory}")), "{out}");
    assert!(out.contains("opened VirtualBank channel 0x"), "{out}");
    assert!(out.contains("deposits 1.5 ETH") && out.contains("lock period 600 s") && out.contains("salt 0x"), "{out}");
    let o = vbank(&["--json", "deploy"], &[]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert!(v["address"].as_str().is_some_and(|a| a.len() == 42), "{v}");
    assert!(v["salt"].as_str().is_some_and(|a| a.len() == 66), "{v}");
    // A clone costs a fraction of v1's 1.78 M gas deployment.
    assert!(v["gas_used"].as_u64().is_some_and(|g| g > 50_000 && g < 300_000), "{v}");
    assert_eq!(v["embedded_chain"], true);
    let o = vbank(&["--json", "deploy-factory"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let lower = factory.to_lowercase();
    assert_eq!((v["factory"].as_str(), v["deployed"].as_bool()), (Some(lower.as_str()), Some(true)), "{v}");
    assert!(v["gas_used"].as_u64().is_some_and(|g| g > 1_000_000), "{v}");
}

#[test]
fn deploy_to_an_rpc_url_served_by_the_anvil_script() {
    let (_anvil, url) = script_anvil();
    let o = vbank(
        &["--json", "deploy", "--rpc-url", &url, "--party1", ADDR1, "--chain-id", "31337"],
        &[("VBANK_PRIVATE_KEY", KEY0)],
    );
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["chain_id"], 31337);
    assert_eq!(v["embedded_chain"], false);
    let address = v["address"].as_str().expect("address").to_string();
    let o = vbank(&["info", "--rpc-url", &url, "--channel", &address], &[("VBANK_PRIVATE_KEY", KEY0)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("is Funding"), "{}", stdout(&o));
    // The factory is there now: deploy-factory finds it and sends nothing.
    let o = vbank(&["--json", "deploy-factory", "--rpc-url", &url], &[("VBANK_PRIVATE_KEY", KEY0)]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["deployed"], false, "{v}");
    // the key can also come from a file
    let dir = std::env::temp_dir().join(format!("vbank-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let key_file = dir.join("key");
    std::fs::write(&key_file, format!("{KEY0}\n")).expect("write key");
    // A key file others can read is refused, with the fix in the message. (The mode is set: a
    // file left by an earlier run under the same process id keeps its own.)
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    }
    let refused =
        vbank(&["deploy", "--rpc-url", "http://127.0.0.1:1", "--key-file", key_file.to_str().expect("utf8")], &[]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("chmod 600"), "{refused:?}");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    let o =
        vbank(&["deploy", "--rpc-url", &url, "--party1", ADDR1, "--key-file", key_file.to_str().expect("utf8")], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    // a wrong chain id is refused before anything is sent
    let o = vbank(&["deploy", "--rpc-url", &url, "--party1", ADDR1, "--chain-id", "1"], &[("VBANK_PRIVATE_KEY", KEY0)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("serves chain 31337, expected chain 1"), "{}", stderr(&o));
}

#[test]
fn bad_input_gets_a_clear_error_and_exit_code_1() {
    /// Arguments, environment, and what the error must say.
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        (
            &["deploy", "--rpc-url", "http://127.0.0.1:1", "--party1", ADDR1],
            &[("VBANK_PRIVATE_KEY", KEY0)],
            "unreachable",
        ),
        (&["deploy", "--rpc-url", "http://127.0.0.1:1", "--party1", ADDR1], &[], "a signing key is needed"),
        (&["deploy", "--amount0", "lots"], &[], "invalid amount \"lots\""),
        (&["deploy", "--amount0", "0", "--amount1", "0"], &[], "both deposits are zero"),
        (&["deploy", "--lock", "0"], &[], "lock period must be 1 to 2^32 - 1 seconds"),
        (&["deploy", "--lock", "4294967296"], &[], "lock period must be 1 to 2^32 - 1 seconds"),
        (&["deploy", "--token", ADDR1], &[], "is not a contract (use the zero address for ETH)"),
        (&["deploy", "--party1", "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"], &[], "same address"),
        (&["deploy"], &[("VBANK_PRIVATE_KEY", "0x1234")], "does not hold a valid hex private key"),
    ];
    for (args, envs, want) in cases {
        let o = vbank(args, envs);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(want), "{args:?}: {:?} does not contain {want:?}", stderr(&o));
        assert!(!stderr(&o).contains("panicked"), "{args:?} panicked");
    }
    // A peer is named by its node URI: a plain host:port, or a bad key, is refused before anything
    // is done (clap's usage error, code 2), with the URI form in the message.
    for (connect, want) in [("127.0.0.1:9735", "vbank://<public key"), ("vbank://02abc@h:1", "not 66 hex digits")] {
        for cmd in ["pay", "close", "open"] {
            let store = "/nonexistent/dir/alice.redb";
            let o = vbank(&[cmd, "--store", store, "--connect", connect, "--channel", ADDR1, "--amount", "1"], &[]);
            assert_eq!(o.status.code(), Some(2), "{cmd} {connect}: {}", stderr(&o));
            assert!(stderr(&o).contains(want), "{cmd} {connect}: {}", stderr(&o));
        }
    }
    let o = vbank(&["--json", "deploy", "--lock", "0"], &[]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("errors are JSON too with --json");
    assert!(v["error"].as_str().is_some_and(|e| e.contains("lock period")), "{v}");
}

#[test]
fn compile_reports_a_fresh_embedded_artifact() {
    let o = vbank(&["--json", "compile", "--contracts", repo().join("contracts").to_str().expect("utf8")], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["embedded_is_fresh"], true, "{v}");
    assert!(v["solc"].as_str().is_some_and(|s| s.starts_with("0.8.37")), "{v}");
}

/// Runs `vbank --json demo` with `extra` arguments from the repository (so that it also compiles
/// the contract and compares it) and checks every step.
fn demo_tells_the_whole_story(extra: &[&str]) {
    let o = Command::new(env!("CARGO_BIN_EXE_vbank"))
        .args(["--json", "demo"])
        .args(extra)
        .current_dir(repo())
        .output()
        .expect("demo");
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert!(v["compile"].as_str().is_some_and(|c| c.contains("identical to the embedded artifact")), "{v}");
    assert_eq!((v["payments"].as_u64(), v["final_state"].as_str()), (Some(1000), Some("Closed")), "{v}");
    let steps: Vec<&str> = v["steps"].as_array().expect("steps").iter().filter_map(|s| s["step"].as_str()).collect();
    assert_eq!(
        steps,
        ["factory", "open", "sheet 0", "fund", "pay", "carol", "invoice", "route", "liquidate", "punish"]
    );
    // A v2 channel's opening is a clone: a fraction of v1's deployment.
    assert!(v["steps"][1]["gas"].as_u64().is_some_and(|g| g < 300_000), "{v}");
    // Alice paid Carol 0.001 ETH through Bob, who took 0.000001 + 1,000 ppm = 0.000002 ETH.
    let routed = &v["routed"];
    assert_eq!(routed["hops"], 2, "{v}");
    assert_eq!(routed["amount"], "1000000000000000", "{v}");
    assert_eq!(routed["fee"], "2000000000000", "{v}");
    assert_eq!(routed["carol_got"], "1000000000000000", "{v}");
    let punish = &v["steps"][9];
    assert!(punish["gas"].as_u64().is_some_and(|g| g > 21_000) && punish["bob"] == "10 ETH", "{punish}");
    // Bob ends with Alice's deposit, less his gas; Alice lost hers and paid gas.
    let change = |who: &str| v["eth_change"][who].as_str().expect("change").to_string();
    assert!(change("bob").starts_with("+4.99"), "{v}");
    assert!(change("alice").starts_with("-5.00"), "{v}");
}

#[test]
fn the_demo_on_two_node_processes() {
    demo_tells_the_whole_story(&[]);
}

#[test]
fn the_demo_with_both_nodes_in_process() {
    demo_tells_the_whole_story(&["--in-process"]);
}
