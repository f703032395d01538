//! Crash-safe channel storage.

use std::{
    collections::BTreeMap,
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use alloy_primitives::Address;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use vbank_core::{ChannelState, Event};

use crate::{Error, Result};

/// Where a node keeps its channels. [`Store::save`] must not return before the state is durable:
/// the node sends the message a transition produced only after `save` returned.
pub trait Store: Send + Sync {
    /// Stores a channel's state durably, replacing the previous one atomically.
    fn save(&self, channel: Address, state: &ChannelState) -> Result<()>;
    /// Stores several channels' states durably, all or none (a state given twice: the last
    /// wins). The default saves them one by one, which is durable but neither atomic nor
    /// cheaper: a store that can should commit them together, with one disk sync
    /// ([`GroupCommit`] batches the states of many channels into one call).
    fn save_all(&self, states: &[(Address, &ChannelState)]) -> Result<()> {
        states.iter().try_for_each(|(channel, state)| self.save(*channel, state))
    }
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
    /// Stores durably a record of the payment network (an invoice, a forwarded lock, a payment,
    /// an announcement), or deletes it with `None`. The default keeps none.
    fn put_record(&self, kind: RecordKind, key: &[u8], value: Option<&[u8]>) -> Result<()> {
        let _ = (kind, key, value);
        Err(Error::Store("this store keeps no network records".into()))
    }
    /// Every record of a kind, by key.
    fn records(&self, kind: RecordKind) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let _ = kind;
        Ok(Vec::new())
    }
    /// Stores `states` and appends `journal` (events, numbered from the journal's next sequence
    /// number) durably, all or none: encoded with [`journal_entry`], through
    /// [`Store::save_entries`], which is what a store implements (the group commit calls it).
    fn save_journaled(&self, states: &[(Address, &ChannelState)], journal: &[(Address, Event)]) -> Result<()> {
        let entries = journal.iter().map(|(c, e)| journal_entry(*c, e)).collect::<Result<Vec<_>>>()?;
        self.save_entries(states, &entries)
    }
    /// Stores `states` and appends `entries` (journal entries already encoded, such as
    /// [`journal_entry`]'s or an application's record of something seen on chain) durably, all
    /// or none. The default stores the states, then the entries one by one (not atomic: a store
    /// that can should do both in one transaction).
    fn save_entries(&self, states: &[(Address, &ChannelState)], entries: &[Vec<u8>]) -> Result<()> {
        self.save_all(states)?;
        for entry in entries {
            let seq = self.next_journal_seq()?;
            self.put_record(RecordKind::Event, &seq.to_be_bytes(), Some(entry))?;
        }
        Ok(())
    }
    /// The sequence number the next journaled event gets (the default scans the journal).
    fn next_journal_seq(&self) -> Result<u64> {
        Ok(self
            .records(RecordKind::Event)?
            .iter()
            .filter_map(|(k, _)| Some(u64::from_be_bytes(k.as_slice().try_into().ok()?) + 1))
            .max()
            .unwrap_or(0))
    }
    /// One record (the default reads them all).
    fn record(&self, kind: RecordKind, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.records(kind)?.into_iter().find(|(k, _)| k == key).map(|(_, v)| v))
    }
}

/// The kinds of network records a [`Store`] keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RecordKind {
    /// Invoices this node issued, with their preimages, by payment hash.
    Invoice = 1,
    /// Locks this node received with routing instructions and what it did with them.
    Forward = 2,
    /// Payments this node made, by payment hash (their id).
    Payment = 3,
    /// Node announcements, by node address.
    Announcement = 4,
    /// Channel payments made with an id the client chose (DESIGN §2 rule 11), by that id.
    ChannelPayment = 5,
    /// Journaled events ([`crate::Node::with_journal`]), by sequence number (8 bytes, big-endian):
    /// `{"channel": …, "event": …}` (or another entry an application journals, such as
    /// `{"channel": …, "chain": …}`), kept until the application marks them handled.
    Event = 6,
    /// What an application noted it has journaled already, by its own key (so that something
    /// seen again after a restart is journaled once).
    Journaled = 7,
}

/// A journal entry's bytes.
pub fn journal_entry(channel: Address, event: &Event) -> Result<Vec<u8>> {
    serde_json::to_vec(&serde_json::json!({ "channel": channel, "event": event })).map_err(store_err)
}

fn record_key(kind: RecordKind, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 1);
    k.push(kind as u8);
    k.extend_from_slice(key);
    k
}

const CHANNELS: TableDefinition<'_, &[u8; 20], &[u8]> = TableDefinition::new("channels");
const PEERS: TableDefinition<'_, &[u8; 20], &str> = TableDefinition::new("peers");
const RECORDS: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("records");

fn store_err(e: impl std::fmt::Display) -> Error {
    Error::Store(e.to_string())
}

/// A [`Store`] in a redb file: each save is one write transaction committed with immediate
/// durability (fsync), so a crash leaves either the old or the new state, never a mix.
#[derive(Debug)]
pub struct RedbStore {
    db: Database,
    syncs: AtomicU64,
    /// The next journal sequence number (read from the journal at open).
    next_event: AtomicU64,
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
        let store = Self { db, syncs: AtomicU64::new(0), next_event: AtomicU64::new(0) };
        let next = store
            .records(RecordKind::Event)?
            .last()
            .and_then(|(k, _)| Some(u64::from_be_bytes(k.as_slice().try_into().ok()?) + 1))
            .unwrap_or(0);
        store.next_event.store(next, Ordering::SeqCst);
        Ok(store)
    }

    /// Durable commits (one disk sync each) made since the store was opened.
    pub fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }

    /// One write transaction committed with immediate durability: one disk sync.
    fn durably(&self, f: impl FnOnce(&redb::WriteTransaction) -> Result<()>) -> Result<()> {
        let mut tx = self.db.begin_write().map_err(store_err)?;
        tx.set_durability(Durability::Immediate).map_err(store_err)?;
        f(&tx)?;
        tx.commit().map_err(store_err)?;
        self.syncs.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

impl Store for RedbStore {
    fn save(&self, channel: Address, state: &ChannelState) -> Result<()> {
        self.save_all(&[(channel, state)])
    }

    fn save_all(&self, states: &[(Address, &ChannelState)]) -> Result<()> {
        let bytes = states.iter().map(|(c, s)| Ok((c, s.to_bytes()?))).collect::<Result<Vec<_>>>()?;
        self.durably(|tx| {
            let mut t = tx.open_table(CHANNELS).map_err(store_err)?;
            for (channel, bytes) in &bytes {
                t.insert(&channel.0.0, bytes.as_slice()).map_err(store_err)?;
            }
            Ok(())
        })
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
        self.durably(|tx| {
            let mut t = tx.open_table(PEERS).map_err(store_err)?;
            t.insert(&peer.0.0, addr).map_err(store_err)?;
            Ok(())
        })
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
        self.durably(|tx| {
            let mut t = tx.open_table(CHANNELS).map_err(store_err)?;
            t.remove(&channel.0.0).map_err(store_err)?;
            Ok(())
        })
    }

    fn put_record(&self, kind: RecordKind, key: &[u8], value: Option<&[u8]>) -> Result<()> {
        let k = record_key(kind, key);
        self.durably(|tx| {
            let mut t = tx.open_table(RECORDS).map_err(store_err)?;
            match value {
                Some(v) => t.insert(k.as_slice(), v).map(drop).map_err(store_err)?,
                None => t.remove(k.as_slice()).map(drop).map_err(store_err)?,
            }
            Ok(())
        })
    }

    fn save_entries(&self, states: &[(Address, &ChannelState)], entries: &[Vec<u8>]) -> Result<()> {
        let bytes = states.iter().map(|(c, s)| Ok((c, s.to_bytes()?))).collect::<Result<Vec<_>>>()?;
        let first = self.next_event.load(Ordering::SeqCst);
        self.durably(|tx| {
            let mut t = tx.open_table(CHANNELS).map_err(store_err)?;
            for (channel, bytes) in &bytes {
                t.insert(&channel.0.0, bytes.as_slice()).map_err(store_err)?;
            }
            let mut r = tx.open_table(RECORDS).map_err(store_err)?;
            for (i, entry) in entries.iter().enumerate() {
                let key = record_key(RecordKind::Event, &(first + i as u64).to_be_bytes());
                r.insert(key.as_slice(), entry.as_slice()).map_err(store_err)?;
            }
            Ok(())
        })?;
        // Only the writer thread journals: the numbers advance once the batch is durable.
        self.next_event.store(first + entries.len() as u64, Ordering::SeqCst);
        Ok(())
    }

    fn next_journal_seq(&self) -> Result<u64> {
        Ok(self.next_event.load(Ordering::SeqCst))
    }

    fn record(&self, kind: RecordKind, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let tx = self.db.begin_read().map_err(store_err)?;
        let t = match tx.open_table(RECORDS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(store_err(e)),
        };
        Ok(t.get(record_key(kind, key).as_slice()).map_err(store_err)?.map(|v| v.value().to_vec()))
    }

    fn records(&self, kind: RecordKind) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let tx = self.db.begin_read().map_err(store_err)?;
        let t = match tx.open_table(RECORDS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(store_err(e)),
        };
        let (from, to) = ([kind as u8], [kind as u8 + 1]);
        let mut out = Vec::new();
        for row in t.range(from.as_slice()..to.as_slice()).map_err(store_err)? {
            let (k, v) = row.map_err(store_err)?;
            out.push((k.value()[1..].to_vec(), v.value().to_vec()));
        }
        Ok(out)
    }
}

/// A [`Store`] in memory (serialised states in a map): for tests and benchmarks, not durable.
#[derive(Debug, Default)]
pub struct MemoryStore {
    map: Mutex<BTreeMap<Address, Vec<u8>>>,
    peers: Mutex<BTreeMap<Address, String>>,
    records: Mutex<BTreeMap<Vec<u8>, Vec<u8>>>,
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

    fn put_record(&self, kind: RecordKind, key: &[u8], value: Option<&[u8]>) -> Result<()> {
        let mut records = self.records.lock().map_err(store_err)?;
        match value {
            Some(v) => records.insert(record_key(kind, key), v.to_vec()),
            None => records.remove(&record_key(kind, key)),
        };
        Ok(())
    }

    fn records(&self, kind: RecordKind) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let records = self.records.lock().map_err(store_err)?;
        let (from, to) = (vec![kind as u8], vec![kind as u8 + 1]);
        Ok(records.range(from..to).map(|(k, v)| (k[1..].to_vec(), v.clone())).collect())
    }
}

/// States a writer commits together: at most this many per disk sync.
const MAX_BATCH: usize = 4096;

struct Job {
    states: Vec<(Address, ChannelState)>,
    journal: Vec<Vec<u8>>,
    done: tokio::sync::oneshot::Sender<Result<()>>,
}

/// Group commit: one writer thread stores the states that many channels hand it while it is busy
/// with the previous batch, in one [`Store::save_all`] (one transaction, one disk sync), and
/// tells each sender when its states are durable. The disk is never touched on the async
/// runtime's threads, and channels no longer wait for each other's syncs one by one.
///
/// A batch is all or nothing: when it fails, every sender in it gets the error (and must undo
/// its change in memory: see [`crate::Node::stage`]). Batches are committed in the order they
/// were formed, so a channel's states reach the disk in the order they were handed over.
pub struct GroupCommit {
    tx: Option<std::sync::mpsc::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
    batches: Arc<AtomicU64>,
    states: Arc<AtomicU64>,
}

impl std::fmt::Debug for GroupCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit").field("batches", &self.batches()).field("states", &self.states()).finish()
    }
}

impl GroupCommit {
    /// Starts the writer thread for `store`; it stops when this is dropped (after the batch in
    /// hand).
    /// Panics if the thread cannot be started (as [`std::thread::spawn`]).
    pub fn spawn<S: Store + 'static>(store: Arc<S>) -> Self {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let batches = Arc::new(AtomicU64::new(0));
        let states = Arc::new(AtomicU64::new(0));
        let (b, n) = (Arc::clone(&batches), Arc::clone(&states));
        let thread = std::thread::spawn(move || {
            while let Ok(first) = rx.recv() {
                let mut jobs = vec![first];
                let mut count = jobs[0].states.len();
                while count < MAX_BATCH {
                    let Ok(next) = rx.try_recv() else { break };
                    count += next.states.len();
                    jobs.push(next);
                }
                let all: Vec<(Address, &ChannelState)> =
                    jobs.iter().flat_map(|j| j.states.iter().map(|(c, s)| (*c, s))).collect();
                let journal: Vec<Vec<u8>> = jobs.iter().flat_map(|j| j.journal.iter().cloned()).collect();
                let outcome =
                    if journal.is_empty() { store.save_all(&all) } else { store.save_entries(&all, &journal) };
                b.fetch_add(1, Ordering::Relaxed);
                n.fetch_add(all.len() as u64, Ordering::Relaxed);
                for job in jobs {
                    let _ = job.done.send(match &outcome {
                        Ok(()) => Ok(()),
                        Err(e) => Err(Error::Store(e.to_string())),
                    });
                }
            }
        });
        Self { tx: Some(tx), thread: Some(thread), batches, states }
    }

    /// Stores `states` durably, with whatever other channels hand over meanwhile; returns once
    /// they are on disk (or the batch failed).
    pub async fn save(&self, states: Vec<(Address, ChannelState)>) -> Result<()> {
        self.save_with(states, Vec::new()).await
    }

    /// As [`GroupCommit::save`], journaling `journal` in the same transaction.
    pub async fn save_with(&self, states: Vec<(Address, ChannelState)>, journal: Vec<(Address, Event)>) -> Result<()> {
        let entries = journal.iter().map(|(c, e)| journal_entry(*c, e)).collect::<Result<Vec<_>>>()?;
        self.save_entries(states, entries).await
    }

    /// As [`GroupCommit::save`], appending `entries` (encoded journal entries) to the journal in
    /// the same transaction.
    pub async fn save_entries(&self, states: Vec<(Address, ChannelState)>, journal: Vec<Vec<u8>>) -> Result<()> {
        if states.is_empty() && journal.is_empty() {
            return Ok(());
        }
        let gone = || Error::Store("the store's writer thread stopped".into());
        let (done, wait) = tokio::sync::oneshot::channel();
        self.tx.as_ref().ok_or_else(gone)?.send(Job { states, journal, done }).map_err(|_| gone())?;
        wait.await.map_err(|_| gone())?
    }

    /// Batches committed so far (one [`Store::save_all`], one disk sync with [`RedbStore`]).
    pub fn batches(&self) -> u64 {
        self.batches.load(Ordering::Relaxed)
    }

    /// States committed so far.
    pub fn states(&self) -> u64 {
        self.states.load(Ordering::Relaxed)
    }
}

impl Drop for GroupCommit {
    fn drop(&mut self) {
        // Closing the queue ends the thread; joining releases the store before this returns.
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
