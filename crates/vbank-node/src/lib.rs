#![doc = include_str!("../README.md")]

pub mod control;
mod error;
pub mod frame;
mod handshake;
mod node;
mod service;
mod store;

pub use control::{ChannelStatus, ControlClient, Reply, Request, control_path};
pub use error::{Error, Result};
pub use frame::{Frame, MAX_FRAME, read_frame, write_frame};
pub use handshake::handshake;
pub use node::{Node, serve};
pub use service::{Admission, CloseSignatures, FundingCheck, Notice, Paid, Service};
pub use store::{MemoryStore, RedbStore, Store, check_private};
