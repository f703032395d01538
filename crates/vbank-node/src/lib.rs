#![doc = include_str!("../README.md")]

pub mod control;
mod error;
pub mod frame;
pub mod network;
mod node;
pub mod noise;
mod service;
mod store;
pub mod transport;
mod uri;

pub use control::{ChannelStatus, ControlClient, Reply, Request, control_path};
pub use error::{Error, Result};
pub use frame::{Frame, MAX_FRAME, MAX_MORE, Terms, coalesce};
pub use node::{Clock, Node, Staged, serve, system_clock, unix_now};
pub use noise::{NoiseError, Session, address_of};
pub use service::{
    Admission, CloseSignatures, ForwardFees, FundingCheck, Limits, Notice, Paid, PayOptions, Payment, PaymentStatus,
    Service,
};
pub use store::{GroupCommit, MemoryStore, RecordKind, RedbStore, Store, check_private, journal_entry};
pub use transport::{initiate, read_frame, respond, write_frame};
pub use uri::{NodeUri, UriError, node_key};
