//! Where a party's signing key comes from: an environment variable, a file, or an encrypted JSON
//! keystore (geth / foundry format). Files holding a key must not be readable by others.

use std::path::Path;

use alloy::signers::local::PrivateKeySigner;

/// Why a key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The text is not a hex private key.
    #[error("{0} does not hold a valid hex private key")]
    Invalid(String),
    /// A file could not be read, or group or others can read it.
    #[error("{0}")]
    File(String),
    /// The keystore could not be decrypted.
    #[error("cannot decrypt keystore {path}: {reason}")]
    Keystore {
        /// The keystore.
        path: String,
        /// Why.
        reason: String,
    },
    /// A variable that must hold something is empty.
    #[error("${0} is empty")]
    Empty(String),
}

fn parse(text: &str, origin: &str) -> Result<PrivateKeySigner, KeyError> {
    text.trim().parse::<PrivateKeySigner>().map_err(|_| KeyError::Invalid(origin.to_string()))
}

/// The key in environment variable `var`, if it is set (an empty one is an error).
pub fn from_env(var: &str) -> Result<Option<PrivateKeySigner>, KeyError> {
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => parse(&v, &format!("${var}")).map(Some),
        Ok(_) => Err(KeyError::Empty(var.to_string())),
        Err(_) => Ok(None),
    }
}

/// The key in the file at `path` (hex), which only its owner may read.
pub fn from_file(path: &Path) -> Result<PrivateKeySigner, KeyError> {
    vbank_node::check_private(path, "key file").map_err(|e| KeyError::File(e.to_string()))?;
    let text = std::fs::read_to_string(path)
        .map_err(|e| KeyError::File(format!("cannot read key file {}: {e}", path.display())))?;
    parse(&text, &format!("key file {}", path.display()))
}

/// The key in the encrypted keystore at `path`, with `password`; only its owner may read it.
pub fn from_keystore(path: &Path, password: &str) -> Result<PrivateKeySigner, KeyError> {
    vbank_node::check_private(path, "keystore").map_err(|e| KeyError::File(e.to_string()))?;
    PrivateKeySigner::decrypt_keystore(path, password)
        .map_err(|e| KeyError::Keystore { path: path.display().to_string(), reason: e.to_string() })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    const KEY: &str = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";

    #[test]
    fn keys_from_files_are_private_and_valid() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("key");
        std::fs::write(&path, format!("{KEY}\n")).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let open = from_file(&path).expect_err("readable by others");
        assert!(open.to_string().contains("chmod"), "{open}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert_eq!(from_file(&path).expect("key").address(), KEY.parse::<PrivateKeySigner>().expect("k").address());
        std::fs::write(&path, "0x1234").expect("write");
        assert!(matches!(from_file(&path), Err(KeyError::Invalid(_))));
        assert!(matches!(from_env("VBANK_KEYS_TEST_SURELY_UNSET"), Ok(None)));
    }
}
