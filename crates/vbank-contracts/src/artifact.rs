//! The embedded contract artifact.

use alloy::{json_abi::JsonAbi, primitives::Bytes};
use serde::{Deserialize, Serialize};

use crate::Result;

/// `artifacts/VirtualBank.json`: ABI, creation and runtime bytecode, the solc version and settings.
/// Regenerate with `vbank compile --update-artifacts`; a test fails when it differs from a fresh
/// compile of `contracts/src`.
pub const ARTIFACT_JSON: &str = include_str!("../artifacts/VirtualBank.json");

/// A compiled VirtualBank: what a Rust user needs to deploy and call it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Artifact {
    /// The contract's name.
    pub contract_name: String,
    /// The full solc version that compiled it, e.g. `0.8.37+commit.f401782d`.
    pub solc_version: String,
    /// The compiler settings that matter for the bytecode.
    pub settings: serde_json::Value,
    /// The ABI.
    pub abi: JsonAbi,
    /// Creation bytecode (constructor arguments are appended to it).
    pub bytecode: Bytes,
    /// Runtime bytecode.
    pub deployed_bytecode: Bytes,
}

impl Artifact {
    /// Parses an artifact from its JSON form.
    pub fn from_json(json: &str) -> Result<Self> {
        Ok(serde_json::from_str(json)?)
    }

    /// The artifact's JSON form, as committed (pretty, with a final newline).
    pub fn to_json(&self) -> Result<String> {
        let mut s = serde_json::to_string_pretty(self)?;
        s.push('\n');
        Ok(s)
    }
}

/// The artifact embedded in this crate.
pub fn embedded() -> Result<Artifact> {
    Artifact::from_json(ARTIFACT_JSON)
}
