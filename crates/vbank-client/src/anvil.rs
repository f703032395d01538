//! The embedded local chain: the pinned anvil, spawned with alloy's node bindings.

use std::path::{Path, PathBuf};

use alloy::{
    node_bindings::{Anvil, AnvilInstance},
    signers::local::PrivateKeySigner,
};

use crate::{Error, Result};

const ANVIL_IN_REPO: &str = "node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil";

/// Finds the anvil binary: `$ANVIL`, then the one the bootstrap installed in the repository
/// (looked for above the working directory, the executable and this crate's source), then `PATH`.
pub fn find_anvil() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("ANVIL") {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(Error::AnvilNotFound(format!("$ANVIL={} is not a file", p.display())))
        };
    }
    let mut starts: Vec<PathBuf> = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        starts.push(cwd);
    }
    if let Ok(exe) = std::env::current_exe() {
        starts.push(exe);
    }
    starts.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    for start in &starts {
        if let Some(found) = start.ancestors().map(|d| d.join(ANVIL_IN_REPO)).find(|p| p.is_file()) {
            return Ok(found);
        }
    }
    if let Some(paths) = std::env::var_os("PATH")
        && let Some(found) = std::env::split_paths(&paths).map(|d| d.join("anvil")).find(|p| p.is_file())
    {
        return Ok(found);
    }
    Err(Error::AnvilNotFound(
        "run anvil-scripts/bootstrap.sh (installs the pinned anvil into node_modules/), or set ANVIL".into(),
    ))
}

/// A spawned anvil, killed when dropped, with its ten funded dev accounts.
#[derive(Debug)]
pub struct LocalChain {
    instance: AnvilInstance,
}

impl LocalChain {
    /// Spawns the pinned anvil on a free port.
    pub fn spawn() -> Result<Self> {
        Self::spawn_with(&find_anvil()?, &[])
    }

    /// Spawns anvil from `path` with extra arguments.
    pub fn spawn_with(path: &Path, args: &[&str]) -> Result<Self> {
        let instance = Anvil::new()
            .path(path)
            .args(args.iter().copied())
            .try_spawn()
            .map_err(|e| Error::Anvil(format!("{} ({})", e, path.display())))?;
        Ok(Self { instance })
    }

    /// The HTTP endpoint.
    pub fn endpoint(&self) -> String {
        self.instance.endpoint()
    }

    /// The chain id (31337).
    pub fn chain_id(&self) -> u64 {
        self.instance.chain_id()
    }

    /// Dev account `i` (0..10), funded with 10,000 ETH.
    pub fn signer(&self, i: usize) -> Result<PrivateKeySigner> {
        let key = self.instance.keys().get(i).ok_or_else(|| Error::Anvil(format!("no dev account {i}")))?;
        Ok(PrivateKeySigner::from(key.clone()))
    }
}
