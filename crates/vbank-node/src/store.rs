//! Crash-safe channel storage.

use std::{collections::BTreeMap, path::Path, sync::Mutex};

use alloy_primitives::Address;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use vbank_core::ChannelState;

use crate::{Error, Result};

/// Where a node keeps its channels. [`Store::save`] must not return before the state is durable:
/// the node sends the message a transition produced only after `save` returned.
pub trait Store: Send + Sync {
    /// Stores a channel's state durably, replacing the previous one atomically.
    fn save(&self, channel: Address, state: &ChannelState) -> Result<()>;
    /// The stored state of a channel.
    fn load(&self, channel: Address) -> Result<Option<ChannelState>>;
    /// The channels stored.
    fn list(&self) -> Result<Vec<Address>>;
    /// Deletes a channel durably (only channels that never held a countersigned sheet are
    /// deleted: see [`crate::Node::forget`]).
    fn remove(&self, channel: Address) -> Result<()>;
    /// Remembers where a peer's node listens (host:port), to link to it again after a restart.
    fn save_peer(&self, peer: Address, addr: &str) -> Result<()>;
    /// The peers' node addresses remembered.
    fn peer_addresses(&self) -> Result<Vec<(Address, String)>>;
}

const CHANNELS: TableDefinition<'_, &[u8; 20], &[u8]> = TableDefinition::new("channels");
const PEERS: TableDefinition<'_, &[u8; 20], &str> = TableDefinition::new("peers");

fn store_err(e: impl std::fmt::Display) -> Error {
    Error::Store(e.to_string())
}

/// A [`Store`] in a redb file: each save is one write transaction committed with immediate
/// durability (fsync), so a crash leaves either the old or the new state, never a mix.
#[derive(Debug)]
pub struct RedbStore {
    db: Database,
}

/// Refuses a file that group or others may read or write: a store holds the channels' waiver
/// seeds and revocation secrets, a key file the party's key. Says how to fix it.
pub fn check_private(path: &Path, what: &str) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .map_err(|e| Error::Permissions(format!("{what} {}: {e}", path.display())))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(Error::Permissions(format!(
            "{what} {} is accessible to other users (mode {:o}); it holds secrets: run `chmod 600 {}`",
            path.display(),
            mode & 0o777,
            path.display()
        )));
    }
    Ok(())
}

impl RedbStore {
    /// Opens the store at `path`, creating it (mode 0600) if missing. A store that group or
    /// others can access is refused ([`check_private`]).
    pub fn open(path: &Path) -> Result<Self> {
        if !path.exists() {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| Error::Store(format!("creating {}: {e}", path.display())))?;
        }
        check_private(path, "store")?;
        let db = Database::create(path).map_err(store_err)?;
        let tx = db.begin_write().map_err(store_err)?;
        tx.open_table(CHANNELS).map_err(store_err)?;
        tx.open_table(PEERS).map_err(store_err)?;
        tx.commit().map_err(store_err)?;
        Ok(Self { db })
    }
}

impl Store for RedbStore {
    fn save(&self, channel: Address, state: &ChannelState) -> Result<()> {
        let bytes = state.to_bytes()?;
        let mut tx = self.db.begin_write().map_err(store_err)?;
        tx.set_durability(Durability::Immediate).map_err(store_err)?;
        {
            let mut t = tx.open_table(CHANNELS).map_err(store_err)?;
            t.insert(&channel.0.0, bytes.as_slice()).map_err(store_err)?;
        }
        tx.commit().map_err(store_err)
    }

    fn load(&self, channel: Address) -> Result<Option<ChannelState>> {
        let tx = self.db.begin_read().map_err(store_err)?;
        let t = tx.open_table(CHANNELS).map_err(store_err)?;
        match t.get(&channel.0.0).map_err(store_err)? {
            Some(v) => Ok(Some(ChannelState::from_bytes(v.value())?)),
            None => Ok(None),
        }
    }

    fn list(&self) -> Result<Vec<Address>> {
        let tx = self.db.begin_read().map_err(store_err)?;
        let t = tx.open_table(CHANNELS).map_err(store_err)?;
        let mut out = Vec::new();
        for row in t.iter().map_err(store_err)? {
            let (k, _) = row.map_err(store_err)?;
            out.push(Address::from(*k.value()));
        }
        Ok(out)
    }

    fn save_peer(&self, peer: Address, addr: &str) -> Result<()> {
        let mut tx = self.db.begin_write().map_err(store_err)?;
        tx.set_durability(Durability::Immediate).map_err(store_err)?;
        {
            let mut t = tx.open_table(PEERS).map_err(store_err)?;
            t.insert(&peer.0.0, addr).map_err(store_err)?;
        }
        tx.commit().map_err(store_err)
    }

    fn peer_addresses(&self) -> Result<Vec<(Address, String)>> {
        let tx = self.db.begin_read().map_err(store_err)?;
        let t = tx.open_table(PEERS).map_err(store_err)?;
        let mut out = Vec::new();
        for row in t.iter().map_err(store_err)? {
            let (k, v) = row.map_err(store_err)?;
            out.push((Address::from(*k.value()), v.value().to_string()));
        }
        Ok(out)
    }

    fn remove(&self, channel: Address) -> Result<()> {
        let mut tx = self.db.begin_write().map_err(store_err)?;
        tx.set_durability(Durability::Immediate).map_err(store_err)?;
        {
            let mut t = tx.open_table(CHANNELS).map_err(store_err)?;
            t.remove(&channel.0.0).map_err(store_err)?;
        }
        tx.commit().map_err(store_err)
    }
}

/// A [`Store`] in memory (serialised states in a map): for tests and benchmarks, not durable.
#[derive(Debug, Default)]
pub struct MemoryStore {
    map: Mutex<BTreeMap<Address, Vec<u8>>>,
    peers: Mutex<BTreeMap<Address, String>>,
}

impl Store for MemoryStore {
    fn save(&self, channel: Address, state: &ChannelState) -> Result<()> {
        let bytes = state.to_bytes()?;
        self.map.lock().map_err(store_err)?.insert(channel, bytes);
        Ok(())
    }

    fn load(&self, channel: Address) -> Result<Option<ChannelState>> {
        let map = self.map.lock().map_err(store_err)?;
        map.get(&channel).map(|b| ChannelState::from_bytes(b).map_err(Error::from)).transpose()
    }

    fn list(&self) -> Result<Vec<Address>> {
        Ok(self.map.lock().map_err(store_err)?.keys().copied().collect())
    }

    fn remove(&self, channel: Address) -> Result<()> {
        self.map.lock().map_err(store_err)?.remove(&channel);
        Ok(())
    }

    fn save_peer(&self, peer: Address, addr: &str) -> Result<()> {
        self.peers.lock().map_err(store_err)?.insert(peer, addr.to_string());
        Ok(())
    }

    fn peer_addresses(&self) -> Result<Vec<(Address, String)>> {
        Ok(self.peers.lock().map_err(store_err)?.iter().map(|(p, a)| (*p, a.clone())).collect())
    }
}
