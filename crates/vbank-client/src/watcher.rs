//! Watching a channel and punishing a liquidation with a revoked sheet.

use std::{sync::Arc, time::Duration};

use alloy::primitives::Address;
use tokio::{sync::mpsc, task::JoinHandle};
use vbank_core::Sig;

use crate::{OnChain, OnChainState, Result, TxReport};

/// Gives the `Waiver(nonce)` signature for the peer's sheet `nonce` with waiver address `waiver`,
/// if the peer revoked it (for a channel: [`vbank_core::Channel::punishment`]).
pub type Punisher = Arc<dyn Fn(u64, Address) -> Option<Sig> + Send + Sync>;

/// What the watcher saw or did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// A configuration that risks missing a stale liquidation.
    Warning(String),
    /// The peer liquidated with a sheet that was not revoked: nothing to punish.
    HonestLiquidation {
        /// The sheet's nonce.
        nonce: u64,
    },
    /// The peer liquidated with a revoked sheet and was punished.
    Punished {
        /// The revoked sheet's nonce.
        nonce: u64,
        /// The `withdrawByPeer` transaction.
        report: TxReport,
    },
    /// The contract's state, reported at the first poll and whenever it changes.
    State(OnChainState),
    /// An RPC call failed; the watcher keeps polling.
    RpcError(String),
    /// The channel is closed; the watcher stops.
    Closed,
}

/// Follows one channel for one party.
pub struct Watcher {
    onchain: OnChain,
    punisher: Punisher,
    poll: Duration,
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher").field("channel", &self.onchain.address()).field("poll", &self.poll).finish()
    }
}

impl Watcher {
    /// A watcher for the party `onchain` signs as, polling every `poll`.
    pub fn new(onchain: OnChain, punisher: Punisher, poll: Duration) -> Self {
        Self { onchain, punisher, poll }
    }

    /// A warning if the lock period leaves less than three polls to react in.
    pub fn lock_warning(&self, lock_period: u64) -> Option<String> {
        let poll = self.poll.as_secs_f64();
        ((lock_period as f64) < 3.0 * poll).then(|| {
            format!(
                "the lock period ({lock_period} s) is shorter than three polling intervals ({poll:.1} s each): \
                 a stale liquidation could go unpunished"
            )
        })
    }

    /// One look at the chain: punishes a stale liquidation by the peer if there is one.
    pub async fn check(&self) -> Result<Option<WatchEvent>> {
        Ok(self.look().await?.1)
    }

    /// One look at the chain: the contract's state, and what was done about it (a stale
    /// liquidation by the peer is punished).
    pub async fn look(&self) -> Result<(OnChainState, Option<WatchEvent>)> {
        // One call per poll while nothing happens; the whole state only once a liquidation shows.
        let state = self.onchain.state().await?;
        Ok((state, self.act(state).await?))
    }

    async fn act(&self, state: OnChainState) -> Result<Option<WatchEvent>> {
        match state {
            OnChainState::Closed => return Ok(Some(WatchEvent::Closed)),
            OnChainState::Liquidating => {}
            _ => return Ok(None),
        }
        let info = self.onchain.info().await?;
        if info.state != OnChainState::Liquidating {
            return Ok(None); // closed in between: the next poll says so
        }
        let Some(l) = info.liquidation else { return Ok(None) };
        if l.master == self.onchain.chain().address() {
            return Ok(None); // our own liquidation
        }
        match (self.punisher)(l.nonce, l.waiver) {
            Some(sig) => {
                let report = self.onchain.withdraw_by_peer(l.nonce, &sig).await?;
                Ok(Some(WatchEvent::Punished { nonce: l.nonce, report }))
            }
            None => Ok(Some(WatchEvent::HonestLiquidation { nonce: l.nonce })),
        }
    }

    /// Runs in the background until the channel is closed or the handle is dropped.
    pub fn spawn(self) -> WatcherHandle {
        let (tx, events) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            let mut warned = false;
            let mut reported_honest = None;
            let mut last_state = None;
            loop {
                if !warned && let Ok(info) = self.onchain.info().await {
                    warned = true;
                    if let Some(w) = self.lock_warning(info.lock_period) {
                        let _ = tx.send(WatchEvent::Warning(w));
                    }
                }
                let looked = self.look().await.map(|(state, event)| {
                    if last_state != Some(state) {
                        last_state = Some(state);
                        let _ = tx.send(WatchEvent::State(state));
                    }
                    event
                });
                match looked {
                    Ok(Some(WatchEvent::HonestLiquidation { nonce })) => {
                        if reported_honest != Some(nonce) {
                            reported_honest = Some(nonce);
                            let _ = tx.send(WatchEvent::HonestLiquidation { nonce });
                        }
                    }
                    Ok(Some(e @ (WatchEvent::Punished { .. } | WatchEvent::Closed))) => {
                        let _ = tx.send(e);
                        return;
                    }
                    Ok(Some(other)) => {
                        let _ = tx.send(other);
                    }
                    Ok(None) => {}
                    Err(e) => {
                        let _ = tx.send(WatchEvent::RpcError(e.to_string()));
                    }
                }
                tokio::time::sleep(self.poll).await;
            }
        });
        WatcherHandle { task, events }
    }
}

/// A running watcher; dropping it stops the watcher.
#[derive(Debug)]
pub struct WatcherHandle {
    task: JoinHandle<()>,
    /// What the watcher reports.
    pub events: mpsc::UnboundedReceiver<WatchEvent>,
}

impl WatcherHandle {
    /// Waits for the next event.
    pub async fn next(&mut self) -> Option<WatchEvent> {
        self.events.recv().await
    }
}

impl Drop for WatcherHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}
