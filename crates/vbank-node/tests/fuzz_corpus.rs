//! The fuzz target's function (`fuzz/fuzz_targets/frame_decoder.rs`) over a small stable corpus,
//! on stable Rust: `tests/corpus/frame_decoder/` (committed; seed `cargo fuzz` with it) and the
//! same seeds made here. `VBANK_WRITE_CORPUS=1 cargo test -p vbank-node --test fuzz_corpus`
//! rewrites the committed seeds.

use std::path::PathBuf;

use alloy_primitives::{Address, B256, Bytes};
use vbank_node::{
    Frame, Session,
    noise::{Initiator, Responder},
    transport::{fuzz_one, seal},
};

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/frame_decoder")
}

/// Seeds, by name: every input shape `fuzz_one` knows (the first byte picks it), valid and not.
fn seeds() -> Vec<(String, Vec<u8>)> {
    let key = |b: u8| {
        *alloy_signer_local::PrivateKeySigner::from_bytes(&B256::repeat_byte(b))
            .expect("key")
            .credential()
            .as_nonzero_scalar()
    };
    let (a, b) = (key(0x21), key(0x11));
    let mut out = Vec::new();
    // 0: a real act one and act three for the responder key 0x21…, then the same with a flip
    let mut i = Initiator::new(&b, k256::PublicKey::from_secret_scalar(&a));
    let one = i.act_one();
    let mut r = Responder::new(&a);
    let two = r.act_one(&one).expect("act one");
    let (three, _) = i.act_two(&two).expect("act two");
    let mut acts = vec![0u8];
    acts.extend_from_slice(&one);
    acts.extend_from_slice(&three);
    out.push(("acts".into(), acts.clone()));
    acts[60] ^= 1;
    out.push(("acts_flipped".into(), acts));
    // 1: an act two
    let mut two_seed = vec![1u8];
    two_seed.extend_from_slice(&two);
    out.push(("act_two".into(), two_seed));
    // 2: a stream of real frames under the fuzz session's keys, whole, cut and flipped
    let (mut us, _) = Session::pair_for_tests([1; 32], [2; 32], [3; 32]);
    let frames = [
        Frame::Init {},
        Frame::Ping { pong_len: 16, padding: Bytes::from(vec![0; 3]) },
        Frame::Channel {
            more: Vec::new(),
            channel: Address::repeat_byte(7),
            message: vbank_core::Message::Revoke { nonce: 9, secret: B256::repeat_byte(9) },
            params: None,
        },
        Frame::Refused { channel: None, reason: "no".into(), about: None },
    ];
    let mut stream = vec![2u8];
    for f in &frames {
        stream.extend(seal(&mut us.sender, f).expect("seal"));
    }
    out.push(("stream".into(), stream.clone()));
    out.push(("stream_cut".into(), stream[..stream.len() - 7].to_vec()));
    let mut flipped = stream.clone();
    flipped[30] ^= 0x80;
    out.push(("stream_flipped".into(), flipped));
    // 3: plaintexts through a session: frames, and near-frames
    for (name, text) in [
        (
            "plain_channel",
            r#"{"channel":{"channel":"0x0707070707070707070707070707070707070707","message":{"revoke":{"nonce":9,"secret":"0x0909090909090909090909090909090909090909090909090909090909090909"}}}}"#,
        ),
        ("plain_ping", r#"{"ping":{"pong_len":65535}}"#),
        ("plain_old_hello", r#"{"hello":{"address":"0x0707070707070707070707070707070707070707"}}"#),
        ("plain_truncated", r#"{"refused":{"channel":null,"reason":"#),
    ] {
        let mut p = vec![3u8];
        p.extend_from_slice(text.as_bytes());
        out.push((name.into(), p));
    }
    out
}

#[test]
fn the_fuzz_target_survives_its_corpus() {
    let dir = corpus_dir();
    if std::env::var_os("VBANK_WRITE_CORPUS").is_some() {
        std::fs::create_dir_all(&dir).expect("corpus dir");
        for (name, bytes) in seeds() {
            std::fs::write(dir.join(name), bytes).expect("write seed");
        }
    }
    let mut files = 0;
    for entry in std::fs::read_dir(&dir).expect("the committed corpus") {
        let data = std::fs::read(entry.expect("entry").path()).expect("seed");
        fuzz_one(&data);
        files += 1;
    }
    assert!(files >= 10, "{files} seeds in {}", dir.display());
    for (_, data) in seeds() {
        fuzz_one(&data);
        // and every prefix and one flipped bit per byte of the short ones
        for cut in 0..data.len().min(200) {
            fuzz_one(&data[..cut]);
        }
        for i in 0..data.len().min(120) {
            let mut d = data.clone();
            d[i] ^= 0x10;
            fuzz_one(&d);
        }
    }
}
