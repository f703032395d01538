//! Node addresses: `vbank://<compressed secp256k1 public key, hex>@<host>:<port>`.
//!
//! The key is the party's static key of the transport (BOLT #8 XK needs it before connecting) and
//! its Ethereum address is derived from it, so a URI names both where a node listens and which
//! party it must prove to be.

use std::{fmt, net::SocketAddr, str::FromStr};

use alloy_primitives::Address;
use alloy_signer_local::PrivateKeySigner;
use k256::PublicKey;

use crate::noise::{address_of, compressed, parse_compressed};

/// The scheme of a node URI.
const SCHEME: &str = "vbank://";

/// Why a string is not a node URI.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UriError {
    /// A plain `host:port`: the peer's key is missing.
    #[error(
        "`{0}` has no key: a peer is named by its node URI, vbank://<public key, 66 hex digits>@host:port, which \
         `vbank node` prints at start (the encrypted transport needs the peer's key before connecting)"
    )]
    MissingKey(String),
    /// Another scheme than `vbank://`.
    #[error("`{0}` is not a node URI: it must start with vbank://")]
    Scheme(String),
    /// No `@host:port` after the key.
    #[error("`{0}` has no @host:port after the key")]
    MissingHost(String),
    /// The key is not 66 hex digits.
    #[error("the key in `{0}` is not 66 hex digits (a compressed secp256k1 public key)")]
    KeyFormat(String),
    /// The key is 33 bytes but not a compressed point on secp256k1.
    #[error("the key in `{0}` is not a compressed secp256k1 public key (02… or 03…, on the curve)")]
    KeyInvalid(String),
    /// The host is empty or malformed.
    #[error("the host in `{0}` is empty or malformed")]
    Host(String),
    /// The port is missing, not a number, or 0.
    #[error("the port in `{0}` is missing, not a number from 1 to 65535")]
    Port(String),
}

/// A node's address: its static key and where it listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeUri {
    key: PublicKey,
    host: String,
    port: u16,
}

impl NodeUri {
    /// The URI of the node with static key `key` listening at `host:port` (an IPv6 host without
    /// brackets).
    pub fn new(key: PublicKey, host: impl Into<String>, port: u16) -> Self {
        Self { key, host: host.into(), port }
    }

    /// The URI of `signer`'s node listening at `at`.
    pub fn of(signer: &PrivateKeySigner, at: SocketAddr) -> Self {
        Self::new(node_key(signer), at.ip().to_string(), at.port())
    }

    /// The node's static public key.
    pub fn key(&self) -> &PublicKey {
        &self.key
    }

    /// The party address the node must prove (derived from the key).
    pub fn address(&self) -> Address {
        address_of(&self.key)
    }

    /// The host (an IPv6 address without brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `host:port` to connect to (an IPv6 host in brackets).
    pub fn socket_addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// The static public key of `signer`'s node: the party key.
pub fn node_key(signer: &PrivateKeySigner) -> PublicKey {
    PublicKey::from(signer.credential().verifying_key())
}

impl fmt::Display for NodeUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SCHEME}{}@{}", hex::encode(compressed(&self.key)), self.socket_addr())
    }
}

impl FromStr for NodeUri {
    type Err = UriError;

    fn from_str(s: &str) -> Result<Self, UriError> {
        let own = || s.to_string();
        let Some(rest) = s.strip_prefix(SCHEME) else {
            // host:port, [v6]:port, or a bare IP: the old form
            if !s.contains("://") && (s.parse::<SocketAddr>().is_ok() || s.rsplit_once(':').is_some()) {
                return Err(UriError::MissingKey(own()));
            }
            return Err(UriError::Scheme(own()));
        };
        let (key, at) = rest.split_once('@').ok_or_else(|| UriError::MissingHost(own()))?;
        if key.len() != 66 {
            return Err(UriError::KeyFormat(own()));
        }
        let raw = hex::decode(key).map_err(|_| UriError::KeyFormat(own()))?;
        let key = parse_compressed(&raw).map_err(|_| UriError::KeyInvalid(own()))?;
        let (host, port) = if let Some(v6) = at.strip_prefix('[') {
            let (host, port) = v6.split_once("]:").ok_or_else(|| UriError::Port(own()))?;
            host.parse::<std::net::Ipv6Addr>().map_err(|_| UriError::Host(own()))?;
            (host, port)
        } else {
            at.rsplit_once(':').ok_or_else(|| UriError::Port(own()))?
        };
        let bad_host =
            |h: &str| h.is_empty() || h.contains(':') || h.chars().any(|c| c.is_whitespace() || "/@?#[]".contains(c));
        if !at.starts_with('[') && bad_host(host) {
            return Err(UriError::Host(own()));
        }
        let port: u16 = port.parse().ok().filter(|p| *p != 0).ok_or_else(|| UriError::Port(own()))?;
        Ok(Self { key, host: host.to_string(), port })
    }
}

impl serde::Serialize for NodeUri {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for NodeUri {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "028d7500dd4c12685d1f568b4c2b5048e8534b873319f3a8daa612b469132ec7f7";

    #[test]
    fn round_trips_and_derives_the_address() {
        for s in [
            format!("vbank://{KEY}@127.0.0.1:9735"),
            format!("vbank://{KEY}@[::1]:1"),
            format!("vbank://{KEY}@node.example.org:65535"),
        ] {
            let u: NodeUri = s.parse().expect(&s);
            assert_eq!(u.to_string(), s);
            let json = serde_json::to_string(&u).expect("json");
            assert_eq!(serde_json::from_str::<NodeUri>(&json).expect("json back"), u);
        }
        let u: NodeUri = format!("vbank://{KEY}@[::1]:1").parse().expect("v6");
        assert_eq!((u.host(), u.port(), u.socket_addr().as_str()), ("::1", 1, "[::1]:1"));
        let signer = PrivateKeySigner::from_bytes(&alloy_primitives::B256::repeat_byte(0x21)).expect("key");
        assert_eq!(hex::encode(compressed(&node_key(&signer))), KEY);
        let mine = NodeUri::of(&signer, "127.0.0.1:9735".parse().expect("addr"));
        assert_eq!(mine.address(), signer.address());
        assert_eq!(mine, format!("vbank://{KEY}@127.0.0.1:9735").parse().expect("uri"));
    }

    #[test]
    fn clear_errors() {
        type Check = fn(&UriError) -> bool;
        let cases: Vec<(String, Check)> = vec![
            ("127.0.0.1:9735".into(), |e| matches!(e, UriError::MissingKey(_))),
            ("localhost:9735".into(), |e| matches!(e, UriError::MissingKey(_))),
            ("[::1]:9735".into(), |e| matches!(e, UriError::MissingKey(_))),
            (format!("http://{KEY}@h:1"), |e| matches!(e, UriError::Scheme(_))),
            ("nonsense".into(), |e| matches!(e, UriError::Scheme(_))),
            (format!("vbank://{KEY}"), |e| matches!(e, UriError::MissingHost(_))),
            (format!("vbank://{}@h:1", &KEY[2..]), |e| matches!(e, UriError::KeyFormat(_))),
            (format!("vbank://zz{}@h:1", &KEY[2..]), |e| matches!(e, UriError::KeyFormat(_))),
            (format!("vbank://04{}@h:1", &KEY[2..]), |e| matches!(e, UriError::KeyInvalid(_))),
            (format!("vbank://02{}@h:1", "ff".repeat(32)), |e| matches!(e, UriError::KeyInvalid(_))),
            (format!("vbank://{KEY}@:1"), |e| matches!(e, UriError::Host(_))),
            (format!("vbank://{KEY}@a/b:1"), |e| matches!(e, UriError::Host(_))),
            (format!("vbank://{KEY}@[nope]:1"), |e| matches!(e, UriError::Host(_))),
            (format!("vbank://{KEY}@h"), |e| matches!(e, UriError::Port(_))),
            (format!("vbank://{KEY}@h:0"), |e| matches!(e, UriError::Port(_))),
            (format!("vbank://{KEY}@h:65536"), |e| matches!(e, UriError::Port(_))),
            (format!("vbank://{KEY}@[::1]"), |e| matches!(e, UriError::Port(_))),
        ];
        for (s, ok) in cases {
            let e = s.parse::<NodeUri>().expect_err(&s);
            assert!(ok(&e), "{s}: {e:?}");
            assert!(e.to_string().contains(&s), "{e} names the input");
        }
        let e = "127.0.0.1:9735".parse::<NodeUri>().expect_err("old form");
        assert!(e.to_string().contains("vbank://<public key"), "{e}");
    }
}
