//! Fuzzes the frame and message decoder: any bytes must give a frame or a typed error, never a
//! panic; a decoded frame must re-encode and decode to itself.
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
});
