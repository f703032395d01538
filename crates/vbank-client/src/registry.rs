//! The chain's PreimageRegistry: where hash-time locks are settled.

use alloy::{
    primitives::{Address, B256},
    providers::DynProvider,
};
use vbank_contracts::{PreimageRegistry, registry_address};

use crate::{Chain, Error, Result, TxReport, onchain::send_call};

/// The registry the canonical factory deployed, seen by one account.
#[derive(Debug, Clone)]
pub struct Registry {
    contract: PreimageRegistry::PreimageRegistryInstance<DynProvider>,
}

impl Registry {
    /// The canonical factory's registry ([`registry_address`]), acting as `chain`'s signer.
    pub fn new(chain: &Chain) -> Self {
        Self::at(chain, registry_address())
    }

    /// A registry at another address (tests).
    pub fn at(chain: &Chain, address: Address) -> Self {
        Self { contract: PreimageRegistry::new(address, chain.provider().clone()) }
    }

    /// The registry's address.
    pub fn address(&self) -> Address {
        *self.contract.address()
    }

    /// Records `preimage` as revealed now (a later reveal of a known preimage changes nothing).
    pub async fn reveal(&self, preimage: B256) -> Result<TxReport> {
        send_call(self.contract.reveal(preimage)).await
    }

    /// The preimage of `hash` if it was revealed on the registry: read from its `Revealed` log
    /// (whoever revealed it; the log's preimage is checked against the hash).
    pub async fn preimage_of(&self, hash: B256) -> Result<Option<B256>> {
        use alloy::{providers::Provider, rpc::types::Filter, sol_types::SolEvent};
        let filter = Filter::new()
            .address(self.address())
            .event_signature(PreimageRegistry::Revealed::SIGNATURE_HASH)
            .topic1(hash)
            .from_block(0);
        let logs = self.contract.provider().get_logs(&filter).await.map_err(|e| Error::Rpc(e.to_string()))?;
        Ok(logs
            .iter()
            .filter_map(|log| log.log_decode::<PreimageRegistry::Revealed>().ok())
            .map(|e| e.inner.data.preimage)
            .find(|p| vbank_core::preimage_hash(p) == hash))
    }

    /// When the preimage of `hash` (`sha256`) was first revealed (unix seconds), 0 if never.
    pub async fn revealed_at(&self, hash: B256) -> Result<u64> {
        let t = self.contract.revealedAt(hash).call().await.map_err(Error::from_contract)?;
        u64::try_from(t).map_err(|_| Error::Rpc(format!("timestamp {t} does not fit in 64 bits")))
    }
}
