#![doc = include_str!("../README.md")]

mod artifact;
#[cfg(feature = "compile")]
mod compile;
mod error;
mod revert;

pub use artifact::{ARTIFACT_JSON, Artifact, embedded};
#[cfg(feature = "compile")]
pub use compile::{CompileOutcome, Compiler, find_contracts_dir};
pub use error::{Error, Result};
pub use revert::{Revert, decode_revert};

#[allow(missing_docs, unreachable_pub, clippy::too_many_arguments)]
mod bindings {
    alloy::sol!(
        #[sol(rpc)]
        #[derive(Debug, PartialEq, Eq)]
        VirtualBank,
        "artifacts/VirtualBank.json"
    );
}

/// alloy bindings for the VirtualBank contract: calls, events, errors and `VirtualBankInstance`.
pub use bindings::VirtualBank;
