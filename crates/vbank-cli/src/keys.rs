//! Where the signing key comes from: an environment variable, a file, or an encrypted keystore.

use std::path::PathBuf;

use alloy::signers::local::PrivateKeySigner;
use anyhow::{Context, Result, bail};
use clap::Args;

/// Key options; at most one source is used, in this order: keystore, key file, environment.
#[derive(Args, Debug, Clone)]
pub(crate) struct KeyArgs {
    /// Environment variable holding the hex private key.
    #[arg(long, default_value = "VBANK_PRIVATE_KEY")]
    private_key_env: String,
    /// File holding the hex private key.
    #[arg(long)]
    key_file: Option<PathBuf>,
    /// Encrypted JSON keystore (geth / foundry format).
    #[arg(long)]
    keystore: Option<PathBuf>,
    /// Environment variable holding the keystore's password.
    #[arg(long, default_value = "VBANK_KEYSTORE_PASSWORD")]
    password_env: String,
}

impl KeyArgs {
    /// The key, if any source is set (loaded by the library: `vbank::keys`).
    pub(crate) fn load(&self) -> Result<Option<PrivateKeySigner>> {
        if let Some(path) = &self.keystore {
            let password = std::env::var(&self.password_env).with_context(|| {
                format!("the keystore's password is read from ${}, which is not set", self.password_env)
            })?;
            return Ok(Some(vbank::keys::from_keystore(path, &password)?));
        }
        if let Some(path) = &self.key_file {
            return Ok(Some(vbank::keys::from_file(path)?));
        }
        Ok(vbank::keys::from_env(&self.private_key_env)?)
    }

    /// The key, which the command needs (it signs): the error names where it was looked for.
    pub(crate) fn require(&self) -> Result<PrivateKeySigner> {
        match self.load()? {
            Some(k) => Ok(k),
            None if self.private_key_env == DEFAULT_ENV => {
                bail!("a signing key is needed: set ${DEFAULT_ENV}, or pass --key-file or --keystore")
            }
            None => bail!(
                "a signing key is needed: ${} (named by --private-key-env) is not set; or pass --key-file or --keystore",
                self.private_key_env
            ),
        }
    }
}

/// Where the key is read from unless --private-key-env names another variable.
const DEFAULT_ENV: &str = "VBANK_PRIVATE_KEY";
