//! The control socket with many channels: a status of 1,000 channels is one reply well over the
//! 64 KiB request cap (review finding 10).

use alloy_primitives::{Address, B256};
use vbank_node::{ControlClient, MemoryStore, Node, Reply, Request, Service};

mod common;
use common::{key, params};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_of_a_thousand_channels_fits() {
    let mut node = Node::open(key(2), MemoryStore::default()).expect("node");
    for i in 0..1_000u32 {
        let mut p = params(1);
        let mut raw = [0u8; 20];
        raw[16..].copy_from_slice(&i.to_be_bytes());
        raw[0] = 0xcc;
        p.contract = Address::from(raw);
        node.add_channel(p, B256::repeat_byte(3)).expect("add");
    }
    let service = Service::new(node, key(2), None);
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("node.sock");
    service.serve_control(&path).await.expect("serve");
    let mut client = ControlClient::connect(&path).await.expect("connect");
    let reply = client.request(&Request::Status).await.expect("status");
    let Reply::Status { channels, .. } = reply else { panic!("status") };
    assert_eq!(channels.len(), 1_000);
    assert!(serde_json::to_vec(&channels).expect("json").len() > vbank_node::control::MAX_REQUEST);
    service.shutdown().await;
}
