//! Errors of this crate.

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The embedded or compiled artifact is not valid JSON of the expected shape.
    #[error("invalid contract artifact: {0}")]
    Artifact(#[from] serde_json::Error),
    /// The solc binary could not be run or did not answer `--version`.
    #[error("cannot run solc at {path}: {reason}")]
    Solc {
        /// The solc path tried.
        path: std::path::PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The contracts directory is not where it was expected.
    #[error(
        "contracts source not found: {0} (expected a foundry project with src/VirtualBankFactory.sol and test/utils/MockTokens.sol)"
    )]
    ContractsDir(std::path::PathBuf),
    /// The compiler reported errors in the sources.
    #[error("compilation failed:\n{0}")]
    Compilation(String),
    /// The compiler ran but produced no such contract.
    #[error("the compiler output has no {0} contract")]
    MissingContract(String),
    /// foundry-compilers failed outside the sources (I/O, cache, project setup).
    #[error("compiler project error: {0}")]
    Project(String),
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
