//! The embedded contract artifacts.

use alloy::{json_abi::JsonAbi, primitives::Bytes};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// `artifacts/VirtualBankFactory.json`: the canonical factory of contract v2 channels.
pub const FACTORY_JSON: &str = include_str!("../artifacts/VirtualBankFactory.json");
/// `artifacts/VirtualBankV2.json`: the v2 channel implementation behind every clone.
pub const CHANNEL_JSON: &str = include_str!("../artifacts/VirtualBankV2.json");
/// `artifacts/PreimageRegistry.json`: the chain's shared preimage registry.
pub const REGISTRY_JSON: &str = include_str!("../artifacts/PreimageRegistry.json");
/// `artifacts/StandardToken.json`: a plain ERC-20 with `mint`, for tests on a local chain
/// (contracts/test/utils/MockTokens.sol).
pub const TEST_TOKEN_JSON: &str = include_str!("../artifacts/StandardToken.json");

/// Every embedded artifact: its contract name, its source file (relative to the `contracts`
/// directory) and its JSON. `vbank compile` compares each with a fresh compile of its source,
/// and `--update-artifacts` rewrites them all.
pub const EMBEDDED: [(&str, &str, &str); 4] = [
    ("VirtualBankFactory", "src/VirtualBankFactory.sol", FACTORY_JSON),
    ("VirtualBankV2", "src/VirtualBankV2.sol", CHANNEL_JSON),
    ("PreimageRegistry", "src/PreimageRegistry.sol", REGISTRY_JSON),
    ("StandardToken", "test/utils/MockTokens.sol", TEST_TOKEN_JSON),
];

/// A compiled contract: what a Rust user needs to deploy and call it.
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

    /// The file name it is embedded as, `<contract name>.json`.
    pub fn file_name(&self) -> String {
        format!("{}.json", self.contract_name)
    }
}

/// Every artifact embedded in this crate, in the order of [`EMBEDDED`].
pub fn embedded() -> Result<Vec<Artifact>> {
    EMBEDDED.iter().map(|(_, _, json)| Artifact::from_json(json)).collect()
}

/// The embedded artifact of contract `name`.
pub fn embedded_artifact(name: &str) -> Result<Artifact> {
    let (_, _, json) =
        EMBEDDED.iter().find(|(n, _, _)| *n == name).ok_or_else(|| Error::MissingContract(name.to_string()))?;
    Artifact::from_json(json)
}
