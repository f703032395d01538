//! One channel's contract: checked calls and decoded reverts.

use alloy::{
    primitives::{Address, Bytes, TxHash, U256},
    providers::Provider,
    rpc::types::TransactionReceipt,
};
use vbank_contracts::VirtualBank::{self, VirtualBankInstance};
use vbank_core::{Amount, BalanceSheet, Close, LiquidationSheet, Sig, Waiver, domain, recover};

use crate::{Chain, Error, Result};

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
    fn from_receipt(r: &TransactionReceipt) -> Result<Self> {
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
    /// Everything is paid out.
    Closed,
}

impl OnChainState {
    fn from_u8(v: u8) -> Result<Self> {
        Ok(match v {
            0 => Self::Funding,
            1 => Self::Running,
            2 => Self::Liquidating,
            3 => Self::Closed,
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
    /// The sheet's balances (zero once closed).
    pub balances: [Amount; 2],
    /// The sheet's waiver address.
    pub waiver: Address,
    /// When the master may withdraw.
    pub unlock_time: u64,
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

/// Deploys a VirtualBank between `parties` with agreed `amounts` and `lock_period` seconds.
pub async fn deploy(
    chain: &Chain,
    parties: [Address; 2],
    amounts: [Amount; 2],
    lock_period: u64,
) -> Result<(Address, TxReport)> {
    if parties[0] == Address::ZERO || parties[1] == Address::ZERO {
        return Err(Error::Precheck("a party is the zero address".into()));
    }
    if parties[0] == parties[1] {
        return Err(Error::Precheck("the two parties are the same address".into()));
    }
    if amounts[0] == 0 && amounts[1] == 0 {
        return Err(Error::Precheck("both deposits are zero".into()));
    }
    if amounts[0].checked_add(amounts[1]).is_none() {
        return Err(Error::Precheck("deposits too large: the total must stay below 2^128 wei".into()));
    }
    if lock_period == 0 {
        return Err(Error::Precheck("the lock period must be at least one second".into()));
    }
    let builder = VirtualBank::deploy_builder(
        chain.provider().clone(),
        parties,
        [U256::from(amounts[0]), U256::from(amounts[1])],
        lock_period,
    );
    let pending = builder.send().await.map_err(Error::from_contract)?.with_timeout(Some(RECEIPT_TIMEOUT));
    let receipt = pending.get_receipt().await.map_err(|e| Error::Rpc(e.to_string()))?;
    let report = TxReport::from_receipt(&receipt)?;
    let address = receipt.contract_address.ok_or_else(|| Error::Failed("deployment made no contract".into()))?;
    Ok((address, report))
}

/// One channel's contract, seen by one account.
#[derive(Debug, Clone)]
pub struct OnChain {
    chain: Chain,
    contract: VirtualBankInstance<alloy::providers::DynProvider>,
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
        let l = c.liquidation().call().await.map_err(rpc)?;
        let outstanding = amount(c.outstanding().call().await.map_err(rpc)?)?;
        let liquidation = if l.waiver == Address::ZERO {
            None
        } else {
            Some(LiquidationInfo {
                master: l.master,
                nonce: u64_of(l.nonce)?,
                balances: [amount(l.balances[0])?, amount(l.balances[1])?],
                waiver: l.waiver,
                unlock_time: u64_of(l.unlockTime)?,
            })
        };
        let info = ChannelInfo {
            address: self.address(),
            state,
            parties,
            amounts: [amount(amounts[0])?, amount(amounts[1])?],
            deposited,
            lock_period,
            liquidation,
            outstanding,
        };
        Ok((info, code))
    }

    /// Checks that the contract is a genuine VirtualBank, before trusting anything it reports:
    /// its runtime code must be exactly what the embedded artifact's constructor makes of the
    /// parties, amounts and lock period it reports (simulated with `eth_call`), except the two
    /// EIP-712 immutables that depend on the contract's own address, and its domain separator
    /// must be the one computed here for this chain and address. Returns its state.
    pub async fn verify(&self) -> Result<ChannelInfo> {
        let (info, code) = self.info_and_code().await?;
        let provider = self.chain.provider();
        let amounts = [U256::from(info.amounts[0]), U256::from(info.amounts[1])];
        let mut expected = Vec::new();
        for from in [Address::with_last_byte(0xa1), Address::with_last_byte(0xa2)] {
            let creation = VirtualBank::deploy_builder(provider.clone(), info.parties, amounts, info.lock_period)
                .from(from)
                .call_raw()
                .await
                .map_err(Error::from_contract)?;
            expected.push(creation);
        }
        let fake = || Error::NotGenuine(self.address());
        if code.len() != expected[0].len() || expected[0].len() != expected[1].len() {
            return Err(fake());
        }
        let differs =
            code.iter().zip(expected[0].iter().zip(expected[1].iter())).filter(|(c, (a, b))| a == b && c != a).count();
        let address_dependent = expected[0].iter().zip(expected[1].iter()).filter(|(a, b)| a != b).count();
        // The cached `address(this)` and domain separator: at most 20 + 32 bytes may differ.
        if differs != 0 || address_dependent > 52 {
            return Err(fake());
        }
        let separator = self.contract.domainSeparator().call().await.map_err(Error::from_contract)?;
        if separator != domain(self.chain.chain_id(), self.address()).separator() {
            return Err(fake());
        }
        Ok(info)
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
        call: alloy::contract::CallBuilder<
            &alloy::providers::DynProvider,
            std::marker::PhantomData<impl alloy::sol_types::SolCall>,
        >,
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

    /// Checks that the contract is genuine ([`OnChain::verify`]) and was made with exactly the
    /// parameters a channel was agreed with: this chain, parties, deposits. Anything else (a
    /// fake contract, other amounts that would lock the funds) is refused.
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
        let info = self.verify().await?;
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
        Ok(info)
    }

    /// Pays this party's deposit into a channel agreed with `params`, after
    /// [`OnChain::verify_params`].
    pub async fn deposit_agreed(&self, params: &vbank_core::ChannelParams) -> Result<TxReport> {
        let info = self.verify_params(params).await?;
        self.deposit_checked(info).await
    }

    /// Pays this party's deposit as the contract states it, once its code is verified genuine
    /// ([`OnChain::verify`]): no deposit goes into a contract that is not a VirtualBank.
    pub async fn deposit(&self) -> Result<TxReport> {
        let info = if self.force { self.info().await? } else { self.verify().await? };
        self.deposit_checked(info).await
    }

    async fn deposit_checked(&self, info: ChannelInfo) -> Result<TxReport> {
        let i = self.me(&info)?;
        self.state_is(&info, OnChainState::Funding)?;
        self.check(!info.deposited[i], || "this party's deposit is already in".into())?;
        self.send(self.contract.deposit().value(U256::from(info.amounts[i]))).await
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
        self.check(sheet.balances[0].checked_add(sheet.balances[1]) == Some(total), || {
            format!(
                "the sheet's balances add up to {:?}, the channel holds {total}",
                sheet.balances[0].checked_add(sheet.balances[1])
            )
        })?;
        self.check(sheet.waiver != Address::ZERO, || "the sheet's waiver address is zero".into())?;
        let peer = info.parties[1 - i];
        let d = domain(self.chain.chain_id(), self.address());
        let signer = recover(&sheet.peer_signature, &BalanceSheet::new(sheet.nonce, sheet.balances, sheet.waiver), &d);
        self.check(signer == Some(peer), || {
            format!("the sheet is not countersigned by the peer {peer} (signed by {signer:?})")
        })?;
        let call = self.contract.liquidate(
            U256::from(sheet.nonce),
            [U256::from(sheet.balances[0]), U256::from(sheet.balances[1])],
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
