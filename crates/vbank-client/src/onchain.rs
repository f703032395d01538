//! One channel's contract: checked calls and decoded reverts.

use alloy::{
    primitives::{Address, B256, Bytes, TxHash, U256},
    providers::{DynProvider, Provider},
    rpc::types::TransactionReceipt,
};
use vbank_contracts::{
    IERC20,
    VirtualBank::{self, VirtualBankInstance},
};
use vbank_core::{Amount, BalanceSheet, Close, HashLock, LiquidationSheet, Sig, Waiver, domain, locks_root, recover};

use crate::{Chain, Error, Factory, Result};

/// How long to wait for a sent transaction's receipt before reporting an error.
const RECEIPT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// A mined transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxReport {
    /// Its hash.
    pub hash: TxHash,
    /// Gas it used.
    pub gas_used: u64,
    /// The block it is in.
    pub block: u64,
    /// What the sender paid for it, in wei (gas used × effective gas price).
    pub fee: u128,
}

impl TxReport {
    pub(crate) fn from_receipt(r: &TransactionReceipt) -> Result<Self> {
        if !r.status() {
            return Err(Error::Failed(r.transaction_hash.to_string()));
        }
        Ok(Self {
            hash: r.transaction_hash,
            gas_used: r.gas_used,
            block: r.block_number.unwrap_or_default(),
            fee: u128::from(r.gas_used) * r.effective_gas_price,
        })
    }
}

/// The contract's state, as `VirtualBank.State`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnChainState {
    /// Waiting for deposits.
    Funding,
    /// Payments clear off-chain.
    Running,
    /// The master's balance is frozen.
    Liquidating,
    /// The master withdrew; the liquidated sheet's locks wait for `unlock` (no punishment any more).
    Settling,
    /// Everything is paid out.
    Closed,
}

impl OnChainState {
    fn from_u8(v: u8) -> Result<Self> {
        Ok(match v {
            0 => Self::Funding,
            1 => Self::Running,
            2 => Self::Liquidating,
            3 => Self::Settling,
            4 => Self::Closed,
            other => return Err(Error::Rpc(format!("unknown contract state {other}"))),
        })
    }
}

impl std::fmt::Display for OnChainState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// The liquidation in progress or done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiquidationInfo {
    /// The liquidating party.
    pub master: Address,
    /// The sheet's nonce.
    pub nonce: u64,
    /// The sheet's waiver address.
    pub waiver: Address,
    /// When the master may withdraw (and the locks may be settled).
    pub unlock_time: u64,
    /// What the sheet's locks hold together (zero once they were settled or taken by punishment).
    pub locked: Amount,
    /// The sheet's locks root (zero when nothing is locked, or once settled).
    pub locks_root: B256,
}

/// What the contract says about the channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelInfo {
    /// The contract.
    pub address: Address,
    /// The state.
    pub state: OnChainState,
    /// Party 0 and party 1.
    pub parties: [Address; 2],
    /// The agreed deposits.
    pub amounts: [Amount; 2],
    /// Which deposits are in.
    pub deposited: [bool; 2],
    /// The lock period in seconds.
    pub lock_period: u64,
    /// The ERC-20 token the channel holds, zero for ETH.
    pub token: Address,
    /// The liquidation, if one was started.
    pub liquidation: Option<LiquidationInfo>,
    /// What the contract still owes (its balance).
    pub outstanding: Amount,
}

impl ChannelInfo {
    /// The index of `who` among the parties.
    pub fn index_of(&self, who: Address) -> Option<usize> {
        self.parties.iter().position(|p| *p == who)
    }
}

fn amount(v: U256) -> Result<Amount> {
    u128::try_from(v).map_err(|_| Error::Rpc(format!("amount {v} does not fit in 128 bits")))
}

fn u64_of(v: U256) -> Result<u64> {
    u64::try_from(v).map_err(|_| Error::Rpc(format!("value {v} does not fit in 64 bits")))
}

/// Sends a contract call with a gas margin and waits for its receipt.
pub(crate) async fn send_call(
    call: alloy::contract::CallBuilder<&DynProvider, std::marker::PhantomData<impl alloy::sol_types::SolCall>>,
) -> Result<TxReport> {
    // The estimate holds for the state it was made in; another party's transaction mined
    // first can take the costlier path (the second deposit starts the channel), so leave a
    // margin. Unused gas is not charged.
    // Estimated against the pending block, whose timestamp is the clock's: the latest block's
    // may be too old for a lock period that just ended.
    let estimate =
        call.clone().block(alloy::eips::BlockId::pending()).estimate_gas().await.map_err(Error::from_contract)?;
    let call = call.gas(estimate + estimate / 4 + 10_000);
    let pending = call.send().await.map_err(Error::from_contract)?.with_timeout(Some(RECEIPT_TIMEOUT));
    let receipt = pending.get_receipt().await.map_err(|e| Error::Rpc(e.to_string()))?;
    TxReport::from_receipt(&receipt)
}

/// Lets `spender` take `amount` of `token` from `chain`'s account, unless it already may.
/// Returns the approval's transaction, if one was needed.
pub(crate) async fn ensure_allowance(
    chain: &Chain,
    token: Address,
    spender: Address,
    amount: Amount,
) -> Result<Option<TxReport>> {
    let erc20 = IERC20::new(token, chain.provider().clone());
    let me = chain.address();
    let balance = erc20.balanceOf(me).call().await.map_err(Error::from_contract)?;
    if balance < U256::from(amount) {
        return Err(Error::Precheck(format!("{me} holds {balance} of token {token}, the deposit is {amount}")));
    }
    let allowance = erc20.allowance(me, spender).call().await.map_err(Error::from_contract)?;
    if allowance >= U256::from(amount) {
        return Ok(None);
    }
    send_call(erc20.approve(spender, U256::from(amount))).await.map(Some)
}

/// One channel's contract, seen by one account.
#[derive(Debug, Clone)]
pub struct OnChain {
    chain: Chain,
    contract: VirtualBankInstance<DynProvider>,
    force: bool,
}

impl OnChain {
    /// The channel at `address`, acting as `chain`'s signer.
    pub fn new(chain: Chain, address: Address) -> Self {
        let contract = VirtualBank::new(address, chain.provider().clone());
        Self { chain, contract, force: false }
    }

    /// Skips the local checks and sends anyway (the contract's revert is then reported).
    #[must_use]
    pub fn force(mut self, force: bool) -> Self {
        self.force = force;
        self
    }

    /// The contract's address.
    pub fn address(&self) -> Address {
        *self.contract.address()
    }

    /// The chain connection.
    pub fn chain(&self) -> &Chain {
        &self.chain
    }

    /// Reads only the contract's state (one call).
    pub async fn state(&self) -> Result<OnChainState> {
        OnChainState::from_u8(self.contract.state().call().await.map_err(Error::from_contract)?)
    }

    /// Reads the channel's state from the contract.
    pub async fn info(&self) -> Result<ChannelInfo> {
        Ok(self.info_and_code().await?.0)
    }

    /// The channel's state and the contract's runtime code (refused if there is none).
    async fn info_and_code(&self) -> Result<(ChannelInfo, Bytes)> {
        let c = &self.contract;
        let code = self.chain.provider().get_code_at(self.address()).await.map_err(|e| Error::Rpc(e.to_string()))?;
        if code.is_empty() {
            return Err(Error::NotAChannel(self.address()));
        }
        let rpc = |e: alloy::contract::Error| Error::from_contract(e);
        let state = OnChainState::from_u8(c.state().call().await.map_err(rpc)?)?;
        let parties = c.parties().call().await.map_err(rpc)?;
        let amounts = c.amounts().call().await.map_err(rpc)?;
        let deposited = c.deposited().call().await.map_err(rpc)?;
        let lock_period = c.lockPeriod().call().await.map_err(rpc)?;
        let token = c.token().call().await.map_err(rpc)?;
        let l = c.liquidation().call().await.map_err(rpc)?;
        let outstanding = amount(c.outstanding().call().await.map_err(rpc)?)?;
        let liquidation = if l.waiver == Address::ZERO {
            None
        } else {
            Some(LiquidationInfo {
                master: l.master,
                nonce: u64_of(l.nonce)?,
                waiver: l.waiver,
                unlock_time: u64_of(l.unlockTime)?,
                locked: amount(l.locked)?,
                locks_root: l.locksRoot,
            })
        };
        let info = ChannelInfo {
            address: self.address(),
            state,
            parties,
            amounts: [amount(amounts[0])?, amount(amounts[1])?],
            deposited,
            lock_period,
            token,
            liquidation,
            outstanding,
        };
        Ok((info, code))
    }

    fn check(&self, ok: bool, why: impl FnOnce() -> String) -> Result<()> {
        if ok || self.force { Ok(()) } else { Err(Error::Precheck(why())) }
    }

    fn me(&self, info: &ChannelInfo) -> Result<usize> {
        let me = self.chain.address();
        match info.index_of(me) {
            Some(i) => Ok(i),
            None if self.force => Ok(0),
            None => Err(Error::Precheck(format!("{me} is not a party of channel {}", info.address))),
        }
    }

    fn state_is(&self, info: &ChannelInfo, want: OnChainState) -> Result<()> {
        self.check(info.state == want, || format!("the channel is {}, this needs it {want}", info.state))
    }

    async fn send(
        &self,
        call: alloy::contract::CallBuilder<&DynProvider, std::marker::PhantomData<impl alloy::sol_types::SolCall>>,
    ) -> Result<TxReport> {
        send_call(call).await
    }

    /// Checks that the contract is a channel of the canonical factory made with exactly the
    /// parameters a channel was agreed with (this chain, parties, deposits, lock period, token,
    /// salt), before trusting anything it reports: ONE `channelAddress` call must give this
    /// address, and code must be there. A clone at that address can only have been made by the
    /// factory (whose address is a function of its code) from exactly these parameters. Anything
    /// else (a fake contract, other amounts that would lock the funds) is refused. Returns the
    /// channel's state as the contract reports it.
    pub async fn verify_params(&self, params: &vbank_core::ChannelParams) -> Result<ChannelInfo> {
        let mismatch = |what: String| Err(Error::Precheck(format!("channel {}: {what}", self.address())));
        if params.contract != self.address() {
            return mismatch(format!("the agreed parameters are for contract {}", params.contract));
        }
        if params.chain_id != self.chain.chain_id() {
            return mismatch(format!(
                "it was agreed on chain {}, the endpoint serves chain {}",
                params.chain_id,
                self.chain.chain_id()
            ));
        }
        let expected = Factory::new(self.chain.clone()).channel_address(params).await?;
        if expected != self.address() {
            return Err(Error::NotGenuine(self.address()));
        }
        let info = self.info().await?;
        if info.parties != params.parties {
            return mismatch(format!(
                "the contract's parties are {} and {}, the agreed ones {} and {}",
                info.parties[0], info.parties[1], params.parties[0], params.parties[1]
            ));
        }
        if info.amounts != params.deposits {
            return mismatch(format!(
                "the contract expects deposits of {} and {} wei, the agreed ones are {} and {} wei",
                info.amounts[0], info.amounts[1], params.deposits[0], params.deposits[1]
            ));
        }
        if info.lock_period != params.lock_period || info.token != params.token {
            return mismatch(format!(
                "the contract has lock period {} s and token {}, the agreed ones are {} s and {}",
                info.lock_period, info.token, params.lock_period, params.token
            ));
        }
        Ok(info)
    }

    /// The channel's parameters as the contract reports them, with `salt` (which no contract
    /// reports: the factory's address derivation commits to it). Not verified: pass them to
    /// [`OnChain::verify_params`] or [`OnChain::deposit_agreed`].
    pub async fn reported_params(&self, salt: B256) -> Result<vbank_core::ChannelParams> {
        let info = self.info().await?;
        Ok(vbank_core::ChannelParams {
            chain_id: self.chain.chain_id(),
            contract: self.address(),
            parties: info.parties,
            deposits: info.amounts,
            lock_period: info.lock_period,
            token: info.token,
            salt,
        })
    }

    /// Pays this party's deposit into a channel agreed with `params`, after
    /// [`OnChain::verify_params`].
    pub async fn deposit_agreed(&self, params: &vbank_core::ChannelParams) -> Result<TxReport> {
        let info = self.verify_params(params).await?;
        self.deposit_checked(info).await
    }

    /// Pays this party's deposit as the contract states it, without checking that the contract is
    /// a genuine channel (only with [`OnChain::force`]; otherwise use [`OnChain::deposit_agreed`]).
    pub async fn deposit(&self) -> Result<TxReport> {
        if !self.force {
            return Err(Error::Precheck(
                "a deposit needs the channel's agreed parameters to verify it (or force)".into(),
            ));
        }
        let info = self.info().await?;
        self.deposit_checked(info).await
    }

    async fn deposit_checked(&self, info: ChannelInfo) -> Result<TxReport> {
        let i = self.me(&info)?;
        self.state_is(&info, OnChainState::Funding)?;
        self.check(!info.deposited[i], || "this party's deposit is already in".into())?;
        if info.token == Address::ZERO {
            return self.send(self.contract.deposit().value(U256::from(info.amounts[i]))).await;
        }
        // A token deposit is pulled by the channel: approve it first (only what is due).
        ensure_allowance(&self.chain, info.token, self.address(), info.amounts[i]).await?;
        self.send(self.contract.deposit()).await
    }

    /// Aborts the setup; deposits made are refunded.
    pub async fn cancel(&self) -> Result<TxReport> {
        let info = self.info().await?;
        self.me(&info)?;
        self.state_is(&info, OnChainState::Funding)?;
        self.send(self.contract.cancel()).await
    }

    /// Liquidates with this party's latest countersigned sheet.
    pub async fn liquidate(&self, sheet: &LiquidationSheet) -> Result<TxReport> {
        let info = self.info().await?;
        let i = self.me(&info)?;
        self.state_is(&info, OnChainState::Running)?;
        let total = info.amounts[0] + info.amounts[1];
        let sum = sheet
            .locks
            .iter()
            .try_fold(sheet.balances[0].checked_add(sheet.balances[1]), |acc, l| Some(acc?.checked_add(l.amount)));
        self.check(sum.flatten() == Some(total), || {
            format!("the sheet's balances and locks add up to {:?}, the channel holds {total}", sum.flatten())
        })?;
        self.check(sheet.waiver != Address::ZERO, || "the sheet's waiver address is zero".into())?;
        let peer = info.parties[1 - i];
        let d = domain(self.chain.chain_id(), self.address());
        let signed = BalanceSheet::with_locks(sheet.nonce, sheet.balances, &sheet.locks, sheet.waiver);
        let signer = recover(&sheet.peer_signature, &signed, &d);
        self.check(signer == Some(peer), || {
            format!("the sheet is not countersigned by the peer {peer} (signed by {signer:?})")
        })?;
        let call = self.contract.liquidate(
            U256::from(sheet.nonce),
            [U256::from(sheet.balances[0]), U256::from(sheet.balances[1])],
            locks_root(&sheet.locks),
            sheet.waiver,
            Bytes::copy_from_slice(sheet.peer_signature.as_bytes()),
        );
        self.send(call).await
    }

    /// Pays the master its frozen balance once the lock is over.
    pub async fn withdraw_by_master(&self) -> Result<TxReport> {
        let info = self.info().await?;
        self.state_is(&info, OnChainState::Liquidating)?;
        if let Some(l) = &info.liquidation {
            let now = self.chain.timestamp().await?;
            self.check(now >= l.unlock_time, || format!("lock period not over: {} s left", l.unlock_time - now))?;
        }
        self.send(self.contract.withdrawByMaster()).await
    }

    /// Settles the liquidated sheet's `locks` (in the signed order) once the lock period is over:
    /// each pays its receiver if its preimage was revealed on the registry by its expiry, else its
    /// sender once expired. Completes the master's withdrawal first if it is still pending.
    pub async fn unlock(&self, locks: &[HashLock]) -> Result<TxReport> {
        let info = self.info().await?;
        self.check(matches!(info.state, OnChainState::Liquidating | OnChainState::Settling), || {
            format!("the channel is {}, this needs it Liquidating or Settling", info.state)
        })?;
        if let Some(l) = &info.liquidation {
            let root = locks_root(locks);
            self.check(l.locked != 0 && root == l.locks_root, || {
                format!("the locks hash to {root}, the liquidated sheet's locks root is {}", l.locks_root)
            })?;
            let now = self.chain.timestamp().await?;
            self.check(now >= l.unlock_time, || format!("lock period not over: {} s left", l.unlock_time - now))?;
        }
        let locks: Vec<vbank_contracts::VirtualBankV2::Lock> = locks
            .iter()
            .map(|l| vbank_contracts::VirtualBankV2::Lock {
                receiver: l.receiver,
                amount: U256::from(l.amount),
                expiry: l.expiry,
                hash: l.hash,
            })
            .collect();
        self.send(self.contract.unlock(locks)).await
    }

    /// Punishes a liquidation with a revoked sheet: `signature` is the waiver key's `Waiver(nonce)`.
    pub async fn withdraw_by_peer(&self, nonce: u64, signature: &Sig) -> Result<TxReport> {
        let info = self.info().await?;
        self.state_is(&info, OnChainState::Liquidating)?;
        if let Some(l) = &info.liquidation {
            self.check(l.nonce == nonce, || format!("the liquidated sheet has nonce {}, not {nonce}", l.nonce))?;
            let d = domain(self.chain.chain_id(), self.address());
            let signer = recover(signature, &Waiver { nonce: U256::from(nonce) }, &d);
            self.check(signer == Some(l.waiver), || {
                format!("the waiver signature is not by the sheet's waiver key {}", l.waiver)
            })?;
        }
        self.send(self.contract.withdrawByPeer(U256::from(nonce), Bytes::copy_from_slice(signature.as_bytes()))).await
    }

    /// Closes with both parties' `Close` signatures (party 0's first).
    pub async fn cooperative_close(
        &self,
        nonce: u64,
        balances: [Amount; 2],
        signatures: &[Sig; 2],
    ) -> Result<TxReport> {
        let info = self.info().await?;
        self.state_is(&info, OnChainState::Running)?;
        let total = info.amounts[0] + info.amounts[1];
        self.check(balances[0].checked_add(balances[1]) == Some(total), || {
            format!("the close pays out more or less than the {total} wei held")
        })?;
        let d = domain(self.chain.chain_id(), self.address());
        let close = Close::new(nonce, balances);
        for (k, sig) in signatures.iter().enumerate() {
            let signer = recover(sig, &close, &d);
            self.check(signer == Some(info.parties[k]), || {
                format!("close signature {k} is not by party {k} {}", info.parties[k])
            })?;
        }
        let call = self.contract.cooperativeClose(
            U256::from(nonce),
            [U256::from(balances[0]), U256::from(balances[1])],
            Bytes::copy_from_slice(signatures[0].as_bytes()),
            Bytes::copy_from_slice(signatures[1].as_bytes()),
        );
        self.send(call).await
    }

    /// Pulls what the contract owes this account (payouts it could not push) to `to`.
    pub async fn claim(&self, to: Address) -> Result<TxReport> {
        let owed = self.contract.owed(self.chain.address()).call().await.map_err(Error::from_contract)?;
        self.check(!owed.is_zero(), || "nothing is owed to this account".into())?;
        self.check(to != Address::ZERO, || "cannot claim to the zero address".into())?;
        self.send(self.contract.claim(to)).await
    }
}
