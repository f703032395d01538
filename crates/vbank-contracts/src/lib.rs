#![doc = include_str!("../README.md")]

mod artifact;
#[cfg(feature = "compile")]
mod compile;
mod error;
mod revert;

use alloy::primitives::{Address, B256, address};
pub use artifact::{
    Artifact, CHANNEL_JSON, EMBEDDED, FACTORY_JSON, REGISTRY_JSON, TEST_TOKEN_JSON, embedded, embedded_artifact,
};
#[cfg(feature = "compile")]
pub use compile::{CompileOutcome, Compiler, find_contracts_dir};
pub use error::{Error, Result};
pub use revert::{Revert, decode_revert};

#[allow(missing_docs, unreachable_pub, clippy::too_many_arguments)]
mod bindings {
    alloy::sol!(
        #[sol(rpc)]
        #[derive(Debug, PartialEq, Eq)]
        VirtualBankFactory,
        "artifacts/VirtualBankFactory.json"
    );
    alloy::sol!(
        #[sol(rpc)]
        #[derive(Debug, PartialEq, Eq)]
        VirtualBank,
        "artifacts/VirtualBankV2.json"
    );
    alloy::sol!(
        #[sol(rpc)]
        #[derive(Debug, PartialEq, Eq)]
        PreimageRegistry,
        "artifacts/PreimageRegistry.json"
    );
    alloy::sol!(
        #[sol(rpc)]
        #[derive(Debug, PartialEq, Eq)]
        StandardToken,
        "artifacts/StandardToken.json"
    );
    alloy::sol! {
        /// The ERC-20 calls a token channel needs.
        #[sol(rpc)]
        interface IERC20 {
            function approve(address spender, uint256 amount) external returns (bool);
            function allowance(address owner, address spender) external view returns (uint256);
            function balanceOf(address owner) external view returns (uint256);
        }
    }
}

/// The ERC-20 calls a token channel needs (`approve`, `allowance`, `balanceOf`).
pub use bindings::IERC20;
/// alloy bindings for the chain's `PreimageRegistry`.
pub use bindings::PreimageRegistry;
/// alloy bindings for `StandardToken`, a plain ERC-20 with `mint` (tests on a local chain).
pub use bindings::StandardToken;
/// alloy bindings for the VirtualBank v2 implementation (`VirtualBankV2`), which every channel
/// clone runs: calls, events, errors and `VirtualBankInstance`.
pub use bindings::VirtualBank;
/// alloy bindings for the canonical `VirtualBankFactory`.
pub use bindings::VirtualBankFactory;
/// The structs of the v2 implementation's ABI (`Lock`, `Liquidation`), as its ABI names them.
pub use bindings::VirtualBankV2;

/// The standard CREATE2 deployer (present at genesis on anvil, and on most public chains).
pub const CREATE2_DEPLOYER: Address = address!("0x4e59b44847b379578588920cA78FbF26c0B4956C");

/// The salt the factory is deployed with through [`CREATE2_DEPLOYER`]: zero.
pub const FACTORY_SALT: B256 = B256::ZERO;

/// The canonical factory's address on every chain: `keccak256(0xff ‖ deployer ‖ salt ‖
/// keccak256(initcode))[12..]` with the embedded creation code, no constructor arguments.
pub fn factory_address() -> Address {
    CREATE2_DEPLOYER.create2_from_code(FACTORY_SALT, &VirtualBankFactory::BYTECODE[..])
}

/// The canonical factory's implementation (its CREATE nonce 2; the registry is nonce 1).
pub fn implementation_address() -> Address {
    factory_address().create(2)
}

/// The chain's preimage registry, deployed by the canonical factory's constructor (CREATE nonce 1).
pub fn registry_address() -> Address {
    factory_address().create(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_factory_address_is_a_function_of_the_embedded_code() {
        let a = factory_address();
        let initcode = &VirtualBankFactory::BYTECODE[..];
        let mut buf = vec![0xff];
        buf.extend_from_slice(CREATE2_DEPLOYER.as_slice());
        buf.extend_from_slice(FACTORY_SALT.as_slice());
        buf.extend_from_slice(alloy::primitives::keccak256(initcode).as_slice());
        assert_eq!(a, Address::from_slice(&alloy::primitives::keccak256(&buf)[12..]));
        assert_ne!(registry_address(), implementation_address());
    }

    #[test]
    fn every_embedded_artifact_parses_and_matches_its_binding() {
        let all = embedded().expect("artifacts parse");
        assert_eq!(all.len(), EMBEDDED.len());
        for (a, (name, _, _)) in all.iter().zip(EMBEDDED) {
            assert_eq!(a.contract_name, name);
            assert!(!a.bytecode.is_empty(), "{name}");
        }
        assert_eq!(embedded_artifact("VirtualBankFactory").expect("factory").bytecode, VirtualBankFactory::BYTECODE);
        assert!(embedded_artifact("VirtualBank").is_err(), "v1 is no longer embedded");
    }
}
