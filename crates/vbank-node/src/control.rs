//! The control socket of a running node: a Unix socket next to its store (mode 0600, so only
//! the store's owner can use it) that takes one JSON request per line and answers one JSON reply
//! per line. It lets a person (`vbank pay`, `vbank status`, …) or a program act through a node
//! that holds the store's lock.
//!
//! ```text
//! → {"pay":{"channel":"0x…","amount":1000,"count":1,"timeout_secs":10}}
//! ← {"paid":{"count":1,"amount":1000,"nonce":7}}
//! ```

use std::{
    future::Future,
    path::{Path, PathBuf},
    time::Duration,
};

use alloy_primitives::{Address, B256};
use serde::{Deserialize, Serialize};
use tokio::{
    io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader},
    net::{UnixListener, UnixStream},
};
use vbank_core::{Amount, ChannelParams, Funding, HashLock, LiquidationSheet, Phase, Settlement, Sig};

use crate::{CloseSignatures, Error, Node, NodeUri, Paid, Result, Service, Store};

/// The longest request line accepted, in bytes.
pub const MAX_REQUEST: usize = 64 * 1024;
/// The longest reply line a client accepts, in bytes: a status of 100,000 channels fits.
pub const MAX_REPLY: usize = 256 * 1024 * 1024;

/// The control socket of the node whose store is at `store`: `<store>.sock`.
pub fn control_path(store: &Path) -> PathBuf {
    let mut p = store.as_os_str().to_owned();
    p.push(".sock");
    PathBuf::from(p)
}

/// What a client asks a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    /// Every channel's state.
    Status,
    /// Link to the node at `uri` (nothing happens if its party is linked already).
    Connect {
        /// The peer's node URI: where it listens and the key it must prove.
        uri: NodeUri,
    },
    /// Open a channel as party 0 with a linked peer (see [`Service::open`]).
    Open {
        /// The channel.
        params: ChannelParams,
        /// Seconds to wait for the peer.
        timeout_secs: u64,
    },
    /// Pay and wait for the acknowledgement (see [`Service::pay`]).
    Pay {
        /// The channel.
        channel: Address,
        /// Wei per payment.
        amount: Amount,
        /// How many.
        count: u64,
        /// Seconds to wait for the peer.
        timeout_secs: u64,
        /// An id the client chose: the same id given again pays once (see
        /// [`Service::pay_with_id`]).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
    /// Agree a cooperative close (see [`Service::close`]).
    Close {
        /// The channel.
        channel: Address,
        /// Seconds to wait for the peer.
        timeout_secs: u64,
    },
    /// Lock `amount` wei to the peer on `hash` until `expiry` (see [`Service::hold`]).
    Hold {
        /// The channel.
        channel: Address,
        /// Wei.
        amount: Amount,
        /// `sha256(preimage)`.
        hash: B256,
        /// Unix seconds.
        expiry: u64,
        /// Seconds to wait for the peer.
        timeout_secs: u64,
    },
    /// Claim the peer's lock that `preimage` opens (see [`Service::fulfil`]).
    Fulfil {
        /// The channel.
        channel: Address,
        /// The preimage.
        preimage: B256,
        /// Seconds to wait for the peer.
        timeout_secs: u64,
    },
    /// Give up the peer's lock on `hash` (see [`Service::release`]).
    Release {
        /// The channel.
        channel: Address,
        /// The lock's hash.
        hash: B256,
        /// Seconds to wait for the peer.
        timeout_secs: u64,
    },
    /// Remember a preimage: a lock on its hash is claimed as soon as it arrives.
    Preimage {
        /// The channel.
        channel: Address,
        /// The preimage.
        preimage: B256,
    },
    /// This party's latest countersigned sheet, for inspection (and the demo's cheat). Never
    /// settle with it: it can be revoked a moment later; [`Request::Settle`] chooses under the
    /// node's lock after freezing the channel.
    Latest {
        /// The channel.
        channel: Address,
    },
    /// The terms of a linked peer's node (see [`Service::peer_terms`]).
    Terms {
        /// The peer.
        peer: Address,
        /// Seconds to wait for the answer.
        timeout_secs: u64,
    },
    /// Close for good: cooperatively if asked and the peer answers, then freeze the channel and
    /// return how to settle it on chain (see [`Service::settle`]).
    Settle {
        /// The channel.
        channel: Address,
        /// Try a cooperative close first.
        cooperative: bool,
        /// Seconds to wait for the peer.
        timeout_secs: u64,
    },
    /// Issue an invoice (see [`Service::invoice`]).
    Invoice {
        /// The chain the payment is made on.
        chain_id: u64,
        /// Wei of `token`.
        amount: Amount,
        /// The token, zero for ETH.
        #[serde(default)]
        token: Address,
        /// What it is for.
        #[serde(default)]
        memo: String,
        /// Seconds it stays payable.
        expires_in: u64,
    },
    /// Pay an invoice along a route (see [`Service::pay_invoice`]).
    PayInvoice {
        /// The invoice string.
        invoice: String,
        /// The most paid in fees, in wei.
        max_fee: Amount,
        /// Seconds from now to the locks' expiry.
        window: u64,
        /// Seconds to wait for the outcome.
        timeout_secs: u64,
    },
    /// Pay a node directly by its URI, the preimage inside the onion (see [`Service::pay_node`]).
    PayNode {
        /// The payee.
        uri: NodeUri,
        /// The chain.
        chain_id: u64,
        /// Wei of `token`.
        amount: Amount,
        /// The token, zero for ETH.
        #[serde(default)]
        token: Address,
        /// The most paid in fees, in wei.
        max_fee: Amount,
        /// Seconds from now to the locks' expiry.
        window: u64,
        /// Seconds to wait for the outcome.
        timeout_secs: u64,
    },
    /// What the node knows of the network.
    Graph,
    /// The payments this node made.
    Payments,
}

/// One channel, as [`Request::Status`] reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelStatus {
    /// The contract.
    pub channel: Address,
    /// The channel's parameters.
    pub params: ChannelParams,
    /// This party's index.
    pub me: usize,
    /// The other party.
    pub peer: Address,
    /// The other party's node URI, if this node remembers one (it dialed the peer).
    #[serde(default)]
    pub peer_uri: Option<NodeUri>,
    /// "opening", "open", "closing", "frozen" (no more updates: being settled on chain) or
    /// "ended" (cancelled, liquidated or closed on chain).
    pub phase: String,
    /// Why the channel is frozen, if it is.
    #[serde(default)]
    pub frozen: Option<String>,
    /// What the node knows of the contract.
    #[serde(default)]
    pub funding: Funding,
    /// The latest sheet's hash-time locks.
    #[serde(default)]
    pub locks: Vec<HashLock>,
    /// The latest countersigned sheet's nonce.
    pub nonce: u64,
    /// Party 0's and party 1's balances in it.
    pub balances: [Amount; 2],
    /// What this party can still pay.
    pub spendable: Amount,
    /// No update in flight.
    pub idle: bool,
    /// Payments queued, not yet proposed.
    pub queued: u64,
}

impl ChannelStatus {
    /// The status of every channel of `node`.
    pub fn of<S: Store>(node: &Node<S>) -> Vec<Self> {
        // Entries from before node URIs (a plain host:port) show as none.
        let uris: std::collections::HashMap<Address, NodeUri> = node
            .peer_addresses()
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(peer, s)| s.parse::<NodeUri>().ok().filter(|u| u.address() == peer).map(|u| (peer, u)))
            .collect();
        node.channel_ids()
            .into_iter()
            .filter_map(|id| node.channel(id).map(|ch| (id, ch)))
            .map(|(channel, ch)| Self {
                channel,
                params: ch.params().clone(),
                me: ch.me(),
                peer: ch.peer_address(),
                peer_uri: uris.get(&ch.peer_address()).cloned(),
                phase: match (ch.funding(), ch.frozen(), ch.phase()) {
                    (Funding::Ended, ..) => "ended",
                    (_, Some(_), _) => "frozen",
                    (.., Phase::Opening) => "opening",
                    (.., Phase::Open) => "open",
                    (.., Phase::Closing { .. }) => "closing",
                }
                .into(),
                frozen: ch.frozen().map(str::to_string),
                funding: ch.funding(),
                locks: ch.locks().to_vec(),
                nonce: ch.nonce(),
                balances: ch.balances(),
                spendable: ch.spendable(),
                idle: ch.is_idle(),
                queued: ch.queued(),
            })
            .collect()
    }
}

/// A node's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    /// For [`Request::Status`].
    Status {
        /// The node's party address.
        address: Address,
        /// The node's URI, if it listens.
        #[serde(default)]
        uri: Option<NodeUri>,
        /// Its channels.
        channels: Vec<ChannelStatus>,
    },
    /// For [`Request::Connect`] and [`Request::Open`].
    Done,
    /// For [`Request::Pay`].
    Paid {
        /// Payments acknowledged.
        count: u64,
        /// Their total.
        amount: Amount,
        /// The sheet covering the last.
        nonce: u64,
    },
    /// For [`Request::Close`].
    Closed {
        /// The final sheet's nonce.
        nonce: u64,
        /// The payouts.
        balances: [Amount; 2],
        /// Party 0's and party 1's signatures.
        signatures: [Sig; 2],
    },
    /// For [`Request::Hold`], [`Request::Fulfil`] and [`Request::Release`]: the lock, and the
    /// sheet that settled the move.
    Lock {
        /// The lock.
        lock: HashLock,
        /// The sheet.
        nonce: u64,
    },
    /// For [`Request::Preimage`]: the hash it opens.
    Hash {
        /// `sha256(preimage)`.
        hash: B256,
    },
    /// For [`Request::Latest`].
    Latest {
        /// The sheet, if the channel has one.
        sheet: Option<LiquidationSheet>,
    },
    /// For [`Request::Settle`].
    Settle {
        /// How to settle the frozen channel on chain.
        settlement: Settlement,
        /// Why the cooperative close did not happen, if it did not.
        cooperative_error: Option<String>,
    },
    /// For [`Request::Terms`].
    Terms {
        /// What the peer's node takes.
        terms: crate::Terms,
    },
    /// For [`Request::Invoice`].
    Invoice {
        /// The invoice string.
        invoice: String,
        /// Its payment hash.
        hash: B256,
    },
    /// For [`Request::PayInvoice`] and [`Request::PayNode`].
    Payment {
        /// The payment.
        payment: crate::Payment,
    },
    /// For [`Request::Graph`].
    Graph {
        /// Node announcements.
        nodes: Vec<crate::network::Announcement>,
        /// Channels.
        channels: Vec<crate::network::GraphChannel>,
    },
    /// For [`Request::Payments`].
    Payments {
        /// Every payment made.
        payments: Vec<crate::Payment>,
    },
    /// The request failed; nothing changed unless the message says so.
    Error {
        /// Why.
        message: String,
    },
}

impl<S: Store + Send + 'static> Service<S> {
    /// Carries out one control request.
    pub async fn control(&self, request: Request) -> Reply {
        self.control_until(request, std::future::pending()).await
    }

    /// Carries out one control request, which `stop` interrupts: a payment request then cancels
    /// its payments not yet sent (see [`Service::pay_until`]); other requests ignore it.
    pub async fn control_until(&self, request: Request, stop: impl Future<Output = ()>) -> Reply {
        self.carry_out(request, stop).await.unwrap_or_else(|e| Reply::Error { message: e.to_string() })
    }

    async fn carry_out(&self, request: Request, stop: impl Future<Output = ()>) -> Result<Reply> {
        let secs = Duration::from_secs;
        Ok(match request {
            Request::Status => {
                let node = self.node().lock().await;
                Reply::Status { address: node.address(), uri: self.own_uri(), channels: ChannelStatus::of(&node) }
            }
            Request::Connect { uri } => {
                if !self.connected().contains(&uri.address()) {
                    self.connect(&uri).await?;
                }
                Reply::Done
            }
            Request::Open { params, timeout_secs } => {
                self.ensure_link(params.parties[1]).await?;
                let seed: B256 = alloy_signer_local::PrivateKeySigner::random().to_bytes();
                self.open(params, seed, secs(timeout_secs)).await?;
                Reply::Done
            }
            Request::Pay { channel, amount, count, timeout_secs, id } => {
                self.link_for(channel).await?;
                let Paid { count, amount, nonce } = match id {
                    Some(pid) => self.pay_with_id(&pid, channel, amount, count, secs(timeout_secs), stop).await?,
                    None => self.pay_until(channel, amount, count, secs(timeout_secs), stop).await?,
                };
                Reply::Paid { count, amount, nonce }
            }
            Request::Close { channel, timeout_secs } => {
                self.link_for(channel).await?;
                let CloseSignatures { nonce, balances, signatures } = self.close(channel, secs(timeout_secs)).await?;
                Reply::Closed { nonce, balances, signatures }
            }
            Request::Terms { peer, timeout_secs } => {
                Reply::Terms { terms: self.peer_terms(peer, secs(timeout_secs)).await? }
            }
            Request::Hold { channel, amount, hash, expiry, timeout_secs } => {
                self.link_for(channel).await?;
                let (lock, nonce) = self.hold(channel, amount, hash, expiry, secs(timeout_secs)).await?;
                Reply::Lock { lock, nonce }
            }
            Request::Fulfil { channel, preimage, timeout_secs } => {
                self.link_for(channel).await?;
                let (lock, nonce) = self.fulfil(channel, preimage, secs(timeout_secs)).await?;
                Reply::Lock { lock, nonce }
            }
            Request::Release { channel, hash, timeout_secs } => {
                self.link_for(channel).await?;
                let (lock, nonce) = self.release(channel, hash, secs(timeout_secs)).await?;
                Reply::Lock { lock, nonce }
            }
            Request::Preimage { channel, preimage } => {
                Reply::Hash { hash: self.learn_preimage(channel, preimage).await? }
            }
            Request::Latest { channel } => {
                let node = self.node().lock().await;
                let ch = node.channel(channel).ok_or(Error::UnknownChannel(channel))?;
                Reply::Latest { sheet: ch.latest().cloned() }
            }
            Request::Settle { channel, cooperative, timeout_secs } => {
                if cooperative {
                    // Unreachable is not an error here: the channel is settled alone.
                    let _ = self.link_for(channel).await;
                }
                let (settlement, cooperative_error) = self.settle(channel, cooperative, secs(timeout_secs)).await?;
                Reply::Settle { settlement, cooperative_error }
            }
            Request::Invoice { chain_id, amount, token, memo, expires_in } => {
                let invoice = self.invoice(chain_id, amount, token, &memo, expires_in).await?;
                Reply::Invoice { invoice: invoice.encode(), hash: invoice.hash }
            }
            Request::PayInvoice { invoice, max_fee, window, timeout_secs } => {
                let invoice = crate::network::Invoice::decode(&invoice).map_err(|e| Error::Payment(e.to_string()))?;
                let opts = crate::PayOptions { max_fee, window, timeout: secs(timeout_secs) };
                Reply::Payment { payment: self.pay_invoice(&invoice, opts).await? }
            }
            Request::PayNode { uri, chain_id, amount, token, max_fee, window, timeout_secs } => {
                self.ensure_link(uri.address()).await.ok();
                let opts = crate::PayOptions { max_fee, window, timeout: secs(timeout_secs) };
                Reply::Payment { payment: self.pay_node(chain_id, &uri, amount, token, opts).await? }
            }
            Request::Graph => {
                let (nodes, channels) = self.graph();
                Reply::Graph { nodes, channels }
            }
            Request::Payments => Reply::Payments { payments: self.payments().await? },
        })
    }

    /// Links to the peer of `channel` at its remembered address if it is not linked (a request
    /// on an unknown or unlinked channel then fails with its own clear error).
    async fn link_for(&self, channel: Address) -> Result<()> {
        let peer = self.node().lock().await.channel(channel).map(vbank_core::Channel::peer_address);
        if let Some(peer) = peer {
            self.ensure_link(peer).await?;
        }
        Ok(())
    }

    /// Serves the control socket at `path` until [`Service::shutdown`]. A socket file left by a
    /// node that is gone is replaced; one that answers is an error (another node runs).
    pub async fn serve_control(&self, path: &Path) -> Result<()> {
        if path.exists() {
            if UnixStream::connect(path).await.is_ok() {
                return Err(Error::Control(format!("{} is in use by another node", path.display())));
            }
            std::fs::remove_file(path).map_err(|e| Error::Control(format!("removing {}: {e}", path.display())))?;
        }
        let listener =
            UnixListener::bind(path).map_err(|e| Error::Control(format!("binding {}: {e}", path.display())))?;
        let owner = {
            use std::os::unix::fs::{MetadataExt, PermissionsExt};
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| Error::Control(format!("restricting {}: {e}", path.display())))?;
            std::fs::metadata(path).map_err(|e| Error::Control(format!("{}: {e}", path.display())))?.uid()
        };
        let this = self.clone();
        self.spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                // Only this user's processes, whatever the socket's mode was for an instant.
                if stream.peer_cred().ok().map(|c| c.uid()) != Some(owner) {
                    continue;
                }
                let that = this.clone();
                this.spawn(async move {
                    let _ = that.control_session(stream).await;
                });
            }
        });
        Ok(())
    }

    async fn control_session<T: AsyncRead + AsyncWrite + Unpin>(&self, stream: T) -> Result<()> {
        let (rd, mut wr) = tokio::io::split(stream);
        let mut rd = BufReader::new(rd);
        loop {
            let Some(line) = read_line(&mut rd, MAX_REQUEST).await? else { return Ok(()) };
            // A client that hangs up (or half-closes, or writes again) while its request runs
            // interrupts it: a payment request cancels what it has not sent (its user pressed
            // Ctrl-C). What it wrote meanwhile is not a request; the session ends after the reply.
            let mut interrupted = false;
            let reply = match serde_json::from_slice::<Request>(&line) {
                Ok(r) => {
                    let stop = async {
                        let _ = read_line(&mut rd, MAX_REQUEST).await;
                        interrupted = true;
                    };
                    self.control_until(r, stop).await
                }
                Err(e) => Reply::Error { message: format!("malformed request: {e}") },
            };
            write_json(&mut wr, &reply).await?;
            if interrupted {
                return Ok(());
            }
        }
    }
}

/// Reads one line of at most `max` bytes; `None` at the end of the stream.
async fn read_line<R: AsyncBufReadExt + Unpin>(rd: &mut R, max: usize) -> Result<Option<Vec<u8>>> {
    let mut line = Vec::new();
    loop {
        let buf = rd.fill_buf().await?;
        if buf.is_empty() {
            return if line.is_empty() { Ok(None) } else { Err(Error::Closed) };
        }
        let (chunk, done) = match buf.iter().position(|b| *b == b'\n') {
            Some(i) => (&buf[..i], Some(i + 1)),
            None => (buf, None),
        };
        if line.len() + chunk.len() > max {
            return Err(Error::Oversize(line.len() + chunk.len()));
        }
        line.extend_from_slice(chunk);
        let used = done.unwrap_or(buf.len());
        rd.consume(used);
        if done.is_some() {
            return Ok(Some(line));
        }
    }
}

async fn write_json<W: AsyncWrite + Unpin, T: Serialize>(wr: &mut W, value: &T) -> Result<()> {
    let mut bytes = serde_json::to_vec(value).map_err(|e| Error::Malformed(e.to_string()))?;
    bytes.push(b'\n');
    wr.write_all(&bytes).await?;
    wr.flush().await?;
    Ok(())
}

/// A client of a node's control socket.
#[derive(Debug)]
pub struct ControlClient {
    rd: BufReader<tokio::net::unix::OwnedReadHalf>,
    wr: tokio::net::unix::OwnedWriteHalf,
}

impl ControlClient {
    /// Connects to the socket at `path`; `None` if no node answers there.
    pub async fn connect(path: &Path) -> Option<Self> {
        let stream = UnixStream::connect(path).await.ok()?;
        let (rd, wr) = stream.into_split();
        Some(Self { rd: BufReader::new(rd), wr })
    }

    /// Sends a request and waits for the reply; a [`Reply::Error`] becomes [`Error::Control`].
    pub async fn request(&mut self, request: &Request) -> Result<Reply> {
        self.request_until(request, std::future::pending()).await
    }

    /// As [`ControlClient::request`]; when `stop` completes first, the request is interrupted
    /// (this side of the socket is shut for writing: a payment request cancels its payments not
    /// yet sent) and the node's reply, saying what was done, is still awaited.
    pub async fn request_until(&mut self, request: &Request, stop: impl Future<Output = ()>) -> Result<Reply> {
        write_json(&mut self.wr, request).await?;
        let line = {
            let reply = read_line(&mut self.rd, MAX_REPLY);
            tokio::pin!(reply);
            tokio::select! {
                line = &mut reply => line,
                () = stop => {
                    self.wr.shutdown().await?;
                    reply.await
                }
            }
        };
        Self::parse(line)
    }

    fn parse(line: Result<Option<Vec<u8>>>) -> Result<Reply> {
        // Replies are the node's own and can be long (a status of thousands of channels).
        let line = line?.ok_or(Error::Closed)?;
        match serde_json::from_slice(&line).map_err(|e| Error::Malformed(e.to_string()))? {
            Reply::Error { message } => Err(Error::Control(message)),
            r => Ok(r),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever a client writes, a session reads at most one capped line at a time and never
        /// panics; a line that is not a request is an error, not a crash.
        #[test]
        fn any_bytes_are_read_safely(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
            let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
            rt.block_on(async {
                let mut rd = BufReader::new(bytes.as_slice());
                while let Ok(Some(line)) = read_line(&mut rd, MAX_REQUEST).await {
                    prop_assert!(line.len() <= MAX_REQUEST);
                    prop_assert!(!line.contains(&b'\n'));
                    let _ = serde_json::from_slice::<Request>(&line);
                }
                Ok(())
            })?;
        }
    }

    #[tokio::test]
    async fn lines_are_split_and_capped() {
        let mut rd = BufReader::new(&b"{\"status\":null}\n\"status\"\nrest"[..]);
        assert_eq!(read_line(&mut rd, MAX_REQUEST).await.expect("line"), Some(b"{\"status\":null}".to_vec()));
        let second = read_line(&mut rd, MAX_REQUEST).await.expect("line").expect("some");
        assert_eq!(serde_json::from_slice::<Request>(&second).expect("a request"), Request::Status);
        // A last line without its newline: the client hung up mid-request.
        assert!(matches!(read_line(&mut rd, MAX_REQUEST).await, Err(Error::Closed)));
        let long = vec![b'x'; MAX_REQUEST + 1];
        assert!(matches!(read_line(&mut BufReader::new(long.as_slice()), MAX_REQUEST).await, Err(Error::Oversize(_))));
    }
}
