//! Compiling `contracts/src` with foundry-compilers.

use std::path::{Path, PathBuf};

use foundry_compilers::{
    Artifact as _, Project, ProjectPathsConfig,
    artifacts::{BytecodeHash, EvmVersion, Optimizer, Remapping, Settings, SettingsMetadata},
    compilers::{
        multi::{MultiCompiler, MultiCompilerSettings},
        solc::{Solc, SolcCompiler, SolcSettings},
    },
};

use crate::{Artifact, EMBEDDED, Error, Result};

const OPTIMIZER_RUNS: usize = 200;
/// The file whose presence marks a `contracts` directory.
const MARKER: &str = "src/VirtualBankFactory.sol";

/// Walks up from `start` to the first directory holding `contracts/src/VirtualBankFactory.sol`
/// and returns that `contracts` directory.
pub fn find_contracts_dir(start: &Path) -> Option<PathBuf> {
    start.ancestors().map(|dir| dir.join("contracts")).find(|dir| dir.join(MARKER).is_file())
}

/// What a compile produced.
#[derive(Debug, Clone)]
pub struct CompileOutcome {
    /// The artifacts of the embedded contracts ([`EMBEDDED`]), in its order.
    pub artifacts: Vec<Artifact>,
    /// True when nothing changed since the last compile and the cached output was used.
    pub cached: bool,
}

/// Compiles the foundry project in a `contracts` directory with the same settings as its
/// foundry.toml (optimizer 200 runs, EVM cancun, no metadata hash), caching its output under
/// `contracts/cache/vbank-rs` and `contracts/out/vbank-rs`.
#[derive(Debug, Clone)]
#[must_use]
pub struct Compiler {
    contracts_dir: PathBuf,
    solc: Option<PathBuf>,
    libs: Option<PathBuf>,
}

impl Compiler {
    /// A compiler for the foundry project at `contracts_dir` (the directory holding `src/`).
    pub fn new(contracts_dir: impl Into<PathBuf>) -> Self {
        Self { contracts_dir: contracts_dir.into(), solc: None, libs: None }
    }

    /// Uses this solc binary. Without it: `$SOLC` if set, else the project's front
    /// `anvil-scripts/solc` beside the contracts directory.
    pub fn solc(mut self, path: impl Into<PathBuf>) -> Self {
        self.solc = Some(path.into());
        self
    }

    /// Where `@openzeppelin/contracts` is found (a `node_modules` directory). Default: the
    /// repository's `node_modules` beside the contracts directory.
    pub fn libs(mut self, node_modules: impl Into<PathBuf>) -> Self {
        self.libs = Some(node_modules.into());
        self
    }

    fn repo_root(&self) -> PathBuf {
        self.contracts_dir.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from(".."))
    }

    /// The solc path this compiler will run.
    pub fn solc_path(&self) -> PathBuf {
        self.solc
            .clone()
            .or_else(|| std::env::var_os("SOLC").map(PathBuf::from))
            .unwrap_or_else(|| self.repo_root().join("anvil-scripts").join("solc"))
    }

    /// The settings recorded in the artifact, as solc's standard JSON spells them.
    pub fn recorded_settings() -> serde_json::Value {
        serde_json::json!({
            "optimizer": { "enabled": true, "runs": OPTIMIZER_RUNS },
            "evmVersion": "cancun",
            "metadata": { "bytecodeHash": "none", "appendCBOR": false },
        })
    }

    /// Compiles the sources of the embedded contracts ([`EMBEDDED`]) and what they import (or
    /// reuses the cache), and returns their artifacts.
    pub fn compile(&self) -> Result<CompileOutcome> {
        let root = &self.contracts_dir;
        if !root.join(MARKER).is_file() {
            return Err(Error::ContractsDir(root.clone()));
        }
        let solc_path = self.solc_path();
        let solc = Solc::new(&solc_path).map_err(|e| Error::Solc { path: solc_path.clone(), reason: e.to_string() })?;
        let version = solc.version.to_string();

        let libs = self.libs.clone().unwrap_or_else(|| self.repo_root().join("node_modules"));
        let oz = libs.join("@openzeppelin").join("contracts");
        let remapping =
            Remapping { context: None, name: "@openzeppelin/contracts/".into(), path: format!("{}/", oz.display()) };
        let paths = ProjectPathsConfig::builder()
            .root(root)
            .sources(root.join("src"))
            .cache(root.join("cache").join("vbank-rs").join("solidity-files-cache.json"))
            .artifacts(root.join("out").join("vbank-rs"))
            .build_infos(root.join("out").join("vbank-rs").join("build-info"))
            .libs([libs.clone()])
            .remapping(remapping)
            .allowed_path(&libs)
            .build()
            .map_err(|e| Error::Project(e.to_string()))?;

        let settings = Settings {
            optimizer: Optimizer { enabled: Some(true), runs: Some(OPTIMIZER_RUNS), details: None },
            evm_version: Some(EvmVersion::Cancun),
            metadata: Some(SettingsMetadata::new(BytecodeHash::None, false)),
            ..Default::default()
        };
        let settings =
            MultiCompilerSettings { solc: SolcSettings { settings, ..Default::default() }, ..Default::default() };

        let project = Project::builder()
            .paths(paths)
            .settings(settings)
            .build(MultiCompiler { solc: Some(SolcCompiler::Specific(solc)), vyper: None })
            .map_err(|e| Error::Project(e.to_string()))?;
        let files: Vec<PathBuf> = EMBEDDED.iter().map(|(_, source, _)| root.join(source)).collect();
        if let Some(missing) = files.iter().find(|f| !f.is_file()) {
            return Err(Error::ContractsDir(missing.clone()));
        }
        let output = project.compile_files(files.clone()).map_err(|e| Error::Project(e.to_string()))?;
        if output.has_compiler_errors() {
            return Err(Error::Compilation(output.to_string()));
        }
        let cached = output.is_unchanged();
        let mut artifacts = Vec::new();
        for ((name, _, _), file) in EMBEDDED.iter().zip(&files) {
            let missing = || Error::MissingContract((*name).into());
            let found = output.find(file, name).or_else(|| output.find_first(name)).ok_or_else(missing)?;
            artifacts.push(Artifact {
                contract_name: (*name).into(),
                solc_version: version.clone(),
                settings: Self::recorded_settings(),
                abi: found.get_abi().ok_or_else(missing)?.into_owned(),
                bytecode: found.get_bytecode_bytes().ok_or_else(missing)?.into_owned(),
                deployed_bytecode: found.get_deployed_bytecode_bytes().ok_or_else(missing)?.into_owned(),
            });
        }
        Ok(CompileOutcome { artifacts, cached })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo_contracts() -> PathBuf {
        find_contracts_dir(Path::new(env!("CARGO_MANIFEST_DIR"))).expect("the repository's contracts/ directory")
    }

    /// A copy of the embedded contracts' sources in a fresh `contracts` directory.
    fn copy_sources(tmp: &Path) -> PathBuf {
        let contracts = tmp.join("contracts");
        for dir in ["src", "test/utils"] {
            std::fs::create_dir_all(contracts.join(dir)).expect("mkdir");
        }
        for name in ["VirtualBankFactory.sol", "VirtualBankV2.sol", "PreimageRegistry.sol"] {
            std::fs::copy(repo_contracts().join("src").join(name), contracts.join("src").join(name)).expect("copy");
        }
        std::fs::copy(repo_contracts().join("test/utils/MockTokens.sol"), contracts.join("test/utils/MockTokens.sol"))
            .expect("copy");
        contracts
    }

    #[test]
    fn every_embedded_artifact_equals_a_fresh_compile() {
        let fresh = Compiler::new(repo_contracts()).compile().expect("compile contracts/src").artifacts;
        let embedded = crate::embedded().expect("embedded artifacts parse");
        assert_eq!(fresh.len(), embedded.len());
        for (fresh, embedded) in fresh.iter().zip(&embedded) {
            assert!(
                fresh == embedded,
                "crates/vbank-contracts/artifacts/{} is stale: run `vbank compile --update-artifacts` (solc {} vs \
                 embedded {})",
                embedded.file_name(),
                fresh.solc_version,
                embedded.solc_version
            );
        }
    }

    #[test]
    fn unchanged_sources_are_not_recompiled() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let contracts = copy_sources(tmp.path());
        let repo = repo_contracts().parent().expect("repo root").to_path_buf();
        let compiler = Compiler::new(&contracts).solc(repo.join("anvil-scripts/solc")).libs(repo.join("node_modules"));
        let first = compiler.compile().expect("first compile");
        assert!(!first.cached, "a first compile cannot come from the cache");
        let second = compiler.compile().expect("second compile");
        assert!(second.cached, "an unchanged source must come from the cache");
        assert_eq!(first.artifacts, second.artifacts);
    }

    #[test]
    fn a_compile_error_is_reported_readably() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let contracts = copy_sources(tmp.path());
        std::fs::write(
            contracts.join("src/PreimageRegistry.sol"),
            "// SPDX-License-Identifier: MIT\npragma solidity ^0.8.24;\ncontract PreimageRegistry { uint x = ; }\n",
        )
        .expect("write");
        let repo = repo_contracts().parent().expect("repo root").to_path_buf();
        let err = Compiler::new(&contracts)
            .solc(repo.join("anvil-scripts/solc"))
            .libs(repo.join("node_modules"))
            .compile()
            .expect_err("broken source must not compile");
        let msg = err.to_string();
        assert!(matches!(err, Error::Compilation(_)), "{msg}");
        assert!(msg.contains("PreimageRegistry.sol") && msg.contains("Expected"), "unhelpful message: {msg}");
    }

    #[test]
    fn a_missing_solc_is_a_clear_error() {
        let err = Compiler::new(repo_contracts()).solc("/nonexistent/solc").compile().expect_err("no solc there");
        assert!(matches!(err, Error::Solc { .. }), "{err}");
        assert!(err.to_string().contains("/nonexistent/solc"), "{err}");
    }

    #[test]
    fn a_wrong_contracts_dir_is_a_clear_error() {
        let err = Compiler::new("/nonexistent/contracts").compile().expect_err("no project there");
        assert!(matches!(err, Error::ContractsDir(_)), "{err}");
    }
}
