//! The canonical VirtualBankFactory: found at its deterministic address, deployed if missing,
//! and the channels it opens.

use alloy::{
    network::TransactionBuilder,
    primitives::{Address, Bytes, U256},
    providers::{DynProvider, Provider},
    rpc::types::TransactionRequest,
};
use vbank_contracts::{CREATE2_DEPLOYER, FACTORY_SALT, VirtualBankFactory, factory_address, registry_address};
use vbank_core::ChannelParams;

use crate::{
    Chain, Error, Result, TxReport,
    onchain::{ensure_allowance, send_call},
};

/// Gas for deploying the factory (its constructor deploys the implementation and the registry):
/// more than it uses, well below a block.
const FACTORY_DEPLOY_GAS: u64 = 6_000_000;

/// Deploys the canonical factory through the standard CREATE2 deployer (salt zero, the embedded
/// creation code), unless it is already there. Returns its address ([`factory_address`]) and the
/// deployment, if one was made.
pub async fn deploy_factory(chain: &Chain) -> Result<(Address, Option<TxReport>)> {
    let factory = factory_address();
    let provider = chain.provider();
    if has_code(provider, factory).await? {
        return Ok((factory, None));
    }
    if !has_code(provider, CREATE2_DEPLOYER).await? {
        return Err(Error::NoDeployer(CREATE2_DEPLOYER));
    }
    let mut input = FACTORY_SALT.to_vec();
    input.extend_from_slice(&VirtualBankFactory::BYTECODE);
    let tx = TransactionRequest::default()
        .with_from(chain.address())
        .with_to(CREATE2_DEPLOYER)
        .with_input(Bytes::from(input))
        .with_gas_limit(FACTORY_DEPLOY_GAS);
    let pending = provider.send_transaction(tx).await.map_err(|e| Error::Rpc(e.to_string()))?;
    let receipt = pending
        .with_timeout(Some(std::time::Duration::from_secs(120)))
        .get_receipt()
        .await
        .map_err(|e| Error::Rpc(e.to_string()))?;
    let report = TxReport::from_receipt(&receipt)?;
    if !has_code(provider, factory).await? {
        return Err(Error::Failed(format!(
            "{}: the CREATE2 deployer made no factory at {factory} (a chain without EIP-1153?)",
            report.hash
        )));
    }
    Ok((factory, Some(report)))
}

async fn has_code(provider: &DynProvider, at: Address) -> Result<bool> {
    Ok(!provider.get_code_at(at).await.map_err(|e| Error::Rpc(e.to_string()))?.is_empty())
}

/// Refuses locally what the factory would refuse to open.
fn precheck(params: &ChannelParams) -> Result<()> {
    let refuse = |why: &str| Err(Error::Precheck(why.into()));
    if params.parties[0] == Address::ZERO || params.parties[1] == Address::ZERO {
        return refuse("a party is the zero address");
    }
    if params.parties[0] == params.parties[1] {
        return refuse("the two parties are the same address");
    }
    if params.deposits[0] == 0 && params.deposits[1] == 0 {
        return refuse("both deposits are zero");
    }
    if params.deposits[0].checked_add(params.deposits[1]).is_none() {
        return refuse("deposits too large: the total must stay below 2^128 wei");
    }
    if params.lock_period == 0 || params.lock_period > u64::from(u32::MAX) {
        return refuse("the lock period must be 1 to 2^32 - 1 seconds");
    }
    Ok(())
}

/// A channel the factory opened (from its `ChannelOpened` log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenedChannel {
    /// The channel's contract.
    pub channel: Address,
    /// Party 0 and party 1.
    pub parties: [Address; 2],
    /// Both agreed deposits together.
    pub capacity: u128,
    /// The token, zero for ETH.
    pub token: Address,
    /// The lock period.
    pub lock_period: u64,
}

/// The canonical factory on a chain, seen by one account.
#[derive(Debug, Clone)]
pub struct Factory {
    chain: Chain,
    contract: VirtualBankFactory::VirtualBankFactoryInstance<DynProvider>,
}

impl Factory {
    /// The canonical factory ([`factory_address`]), acting as `chain`'s signer.
    pub fn new(chain: Chain) -> Self {
        Self::at(chain, factory_address())
    }

    /// A factory at another address (tests).
    pub fn at(chain: Chain, address: Address) -> Self {
        let contract = VirtualBankFactory::new(address, chain.provider().clone());
        Self { chain, contract }
    }

    /// The factory's address.
    pub fn address(&self) -> Address {
        *self.contract.address()
    }

    /// The registry the canonical factory deployed.
    pub fn registry_address(&self) -> Address {
        registry_address()
    }

    /// Whether the factory's code is on the chain.
    pub async fn is_deployed(&self) -> Result<bool> {
        has_code(self.chain.provider(), self.address()).await
    }

    /// The address the factory gives a channel with `params`' parties, deposits, lock period,
    /// token and salt (`params.contract` and `params.chain_id` are ignored): one call.
    pub async fn channel_address(&self, params: &ChannelParams) -> Result<Address> {
        let call = self.contract.channelAddress(
            params.parties,
            [U256::from(params.deposits[0]), U256::from(params.deposits[1])],
            params.lock_period,
            params.token,
            params.salt,
        );
        match call.call().await {
            Ok(a) => Ok(a),
            Err(e) => {
                let e = Error::from_contract(e);
                if matches!(e, Error::Reverted(_)) || self.is_deployed().await? {
                    Err(e)
                } else {
                    Err(Error::NoFactory(self.address()))
                }
            }
        }
    }

    /// The channels the factory opened in blocks `from..=` the latest (its `ChannelOpened` logs),
    /// and the latest block read: the public channel graph.
    pub async fn opened_channels(&self, from: u64) -> Result<(Vec<OpenedChannel>, u64)> {
        use alloy::{providers::Provider, rpc::types::Filter, sol_types::SolEvent};
        let provider = self.chain.provider();
        let latest = provider.get_block_number().await.map_err(|e| Error::Rpc(e.to_string()))?;
        if from > latest {
            return Ok((Vec::new(), latest));
        }
        let filter = Filter::new()
            .address(self.address())
            .event_signature(VirtualBankFactory::ChannelOpened::SIGNATURE_HASH)
            .from_block(from)
            .to_block(latest);
        let logs = provider.get_logs(&filter).await.map_err(|e| Error::Rpc(e.to_string()))?;
        let opened = logs
            .iter()
            .filter_map(|log| log.log_decode::<VirtualBankFactory::ChannelOpened>().ok())
            .filter_map(|e| {
                let d = e.inner.data;
                let capacity = u128::try_from(d.amount0.checked_add(d.amount1)?).ok()?;
                Some(OpenedChannel {
                    channel: d.channel,
                    parties: [d.party0, d.party1],
                    capacity,
                    token: d.token,
                    lock_period: d.lockPeriod,
                })
            })
            .collect();
        Ok((opened, latest))
    }

    /// Opens (creates) the channel with `params`, without a deposit. Returns its address.
    pub async fn open(&self, params: &ChannelParams) -> Result<(Address, TxReport)> {
        precheck(params)?;
        let address = self.channel_address(params).await?;
        let call = self.contract.open(
            params.parties,
            [U256::from(params.deposits[0]), U256::from(params.deposits[1])],
            params.lock_period,
            params.token,
            params.salt,
        );
        Ok((address, send_call(call).await?))
    }

    /// Opens the channel with `params` and pays this account's deposit in the same transaction
    /// (for a token channel the factory pulls it: approved here first). Returns its address.
    pub async fn open_and_deposit(&self, params: &ChannelParams) -> Result<(Address, TxReport)> {
        precheck(params)?;
        let me = self.chain.address();
        let i = params
            .parties
            .iter()
            .position(|p| *p == me)
            .ok_or_else(|| Error::Precheck(format!("{me} is not a party of the channel")))?;
        let address = self.channel_address(params).await?;
        let amount = params.deposits[i];
        let mut call = self.contract.openAndDeposit(
            params.parties,
            [U256::from(params.deposits[0]), U256::from(params.deposits[1])],
            params.lock_period,
            params.token,
            params.salt,
        );
        if params.token == Address::ZERO {
            call = call.value(U256::from(amount));
        } else if amount > 0 {
            ensure_allowance(&self.chain, params.token, self.address(), amount).await?;
        }
        Ok((address, send_call(call).await?))
    }
}
