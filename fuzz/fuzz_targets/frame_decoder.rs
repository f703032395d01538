//! Fuzzes the frame and message decoder: any bytes must give a frame or a typed error, never a
//! panic; a decoded frame must re-encode and decode to itself. Also the stored-state decoder and
//! the control socket's request decoder.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vbank_node::frame::{decode, encode};

fuzz_target!(|data: &[u8]| {
    if let Ok(frame) = decode(data) {
        let again = encode(&frame).expect("a decoded frame encodes");
        assert_eq!(decode(&again).expect("and decodes again"), frame);
    }
    // the state decoder faces stored bytes, which a crash could have cut short
    let _ = vbank_core::ChannelState::from_bytes(data);
    // the control socket's requests (a local client's line)
    if let Ok(request) = serde_json::from_slice::<vbank_node::Request>(data) {
        let again = serde_json::to_vec(&request).expect("a decoded request encodes");
        assert_eq!(serde_json::from_slice::<vbank_node::Request>(&again).expect("and decodes again"), request);
    }
});
