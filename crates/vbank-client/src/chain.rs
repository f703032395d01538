//! A connection to an EVM chain with a signing wallet.

use std::time::Duration;

use alloy::{
    network::EthereumWallet,
    primitives::Address,
    providers::{DynProvider, Provider, ProviderBuilder},
    signers::local::PrivateKeySigner,
};

use crate::{Error, Result};

/// The provider stack: gas estimation, chain id, and simple nonce management: the nonce is read
/// from the node for every transaction, so a transaction refused at gas estimation (a revert)
/// leaves no gap that would stall the next one (alloy's cached nonce manager would).
fn builder() -> ProviderBuilder<
    alloy::providers::Identity,
    impl alloy::providers::fillers::TxFiller<alloy::network::Ethereum>,
    alloy::network::Ethereum,
> {
    ProviderBuilder::new()
        .disable_recommended_fillers()
        .with_gas_estimation()
        .with_simple_nonce_management()
        .fetch_chain_id()
}

/// A provider that signs with one key, on a chain whose id was read from the node.
#[derive(Debug, Clone)]
pub struct Chain {
    provider: DynProvider,
    chain_id: u64,
    signer: PrivateKeySigner,
    url: String,
}

impl Chain {
    /// Connects to `url` with `signer`, reads the chain id (within 10 s) and, if `expected` is
    /// given, checks it.
    pub async fn connect(url: &str, signer: PrivateKeySigner, expected: Option<u64>) -> Result<Self> {
        let parsed =
            url.parse().map_err(|e| Error::Unreachable { url: url.into(), reason: format!("bad URL: {e}") })?;
        let provider = builder().wallet(EthereumWallet::from(signer.clone())).connect_http(parsed).erased();
        let chain_id = tokio::time::timeout(Duration::from_secs(10), provider.get_chain_id())
            .await
            .map_err(|_| Error::Unreachable { url: url.into(), reason: "no answer within 10 s".into() })?
            .map_err(|e| Error::Unreachable { url: url.into(), reason: e.to_string() })?;
        if let Some(expected) = expected
            && expected != chain_id
        {
            return Err(Error::WrongChain { expected, actual: chain_id });
        }
        Ok(Self { provider, chain_id, signer, url: url.into() })
    }

    /// The same chain, signing with another key.
    pub fn with_signer(&self, signer: PrivateKeySigner) -> Self {
        let provider = builder()
            .wallet(EthereumWallet::from(signer.clone()))
            .connect_provider(self.provider.root().clone())
            .erased();
        Self { provider, chain_id: self.chain_id, signer, url: self.url.clone() }
    }

    /// The provider.
    pub fn provider(&self) -> &DynProvider {
        &self.provider
    }

    /// The chain id read from the node.
    pub fn chain_id(&self) -> u64 {
        self.chain_id
    }

    /// The signing account.
    pub fn address(&self) -> Address {
        self.signer.address()
    }

    /// The signing key.
    pub fn signer(&self) -> &PrivateKeySigner {
        &self.signer
    }

    /// The endpoint URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The latest block's timestamp.
    pub async fn timestamp(&self) -> Result<u64> {
        let block = self
            .provider
            .get_block_by_number(alloy::eips::BlockNumberOrTag::Latest)
            .await
            .map_err(|e| Error::Rpc(e.to_string()))?
            .ok_or_else(|| Error::Rpc("no latest block".into()))?;
        Ok(block.header.timestamp)
    }

    /// The balance of an account, in wei.
    pub async fn balance(&self, who: Address) -> Result<alloy::primitives::U256> {
        self.provider.get_balance(who).await.map_err(|e| Error::Rpc(e.to_string()))
    }
}

/// Moves a dev chain's clock forward by `secs` and mines a block (anvil's `evm_increaseTime`).
pub async fn increase_time(chain: &Chain, secs: u64) -> Result<()> {
    let p = chain.provider();
    p.raw_request::<_, serde_json::Value>("evm_increaseTime".into(), (secs,))
        .await
        .map_err(|e| Error::Rpc(e.to_string()))?;
    p.raw_request::<_, serde_json::Value>("evm_mine".into(), ()).await.map_err(|e| Error::Rpc(e.to_string()))?;
    Ok(())
}
