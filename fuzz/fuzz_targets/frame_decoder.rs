//! Fuzzes what a peer's bytes meet: the BOLT #8 handshake acts (responder and initiator), a
//! received stream decrypted message by message, and the frame decoder behind the decryption
//! (`vbank_node::transport::fuzz_one`: any bytes give a value or a typed error, never a panic;
//! what decrypts is what was encrypted; a decoded frame re-encodes to itself). Also the
//! stored-state decoder and the control socket's request decoder. The same function runs over
//! `fuzz/corpus/frame_decoder/` in `cargo test -p vbank-node` (tests/fuzz_corpus.rs).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    vbank_node::transport::fuzz_one(data);
    // the state decoder faces stored bytes, which a crash could have cut short
    let _ = vbank_core::ChannelState::from_bytes(data);
    // the control socket's requests (a local client's line)
    if let Ok(request) = serde_json::from_slice::<vbank_node::Request>(data) {
        let again = serde_json::to_vec(&request).expect("a decoded request encodes");
        assert_eq!(serde_json::from_slice::<vbank_node::Request>(&again).expect("and decodes again"), request);
    }
});
