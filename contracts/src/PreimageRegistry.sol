// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title PreimageRegistry: when each lock preimage was first revealed on this chain
/// @notice One registry per chain, shared by every VirtualBank v2 channel (as in Sprites): a preimage
/// revealed here once, before a lock's expiry, settles that lock in every channel of a route, so every
/// hop can use the same expiry. `hash = sha256(preimage)` of a 32-byte preimage, as in Lightning.
/// @dev Deployed by `VirtualBankFactory`'s constructor. The first reveal's timestamp stands: a later
/// reveal of the same preimage changes nothing, emits nothing and does not revert (so that racing
/// revealers, or a batch holding a known preimage, never fail).
contract PreimageRegistry {
    /// @notice When `hash` was first revealed (the block's timestamp), 0 if never.
    mapping(bytes32 hash => uint256 timestamp) public revealedAt;

    /// @notice A preimage was revealed for the first time.
    /// @param hash sha256 of the preimage
    /// @param preimage the preimage
    event Revealed(bytes32 indexed hash, bytes32 preimage);

    /// @notice Records `preimage` as revealed now, unless it was revealed before.
    /// @param preimage the 32-byte preimage
    function reveal(bytes32 preimage) external {
        _reveal(preimage);
    }

    /// @notice Records several preimages, each as `reveal` does.
    /// @param preimages the 32-byte preimages
    function revealBatch(bytes32[] calldata preimages) external {
        for (uint256 i = 0; i < preimages.length; ++i) {
            _reveal(preimages[i]);
        }
    }

    function _reveal(bytes32 preimage) private {
        bytes32 hash;
        assembly ("memory-safe") {
            mstore(0x00, preimage)
            // The SHA-256 precompile cannot fail with enough gas; the result is checked by its size.
            if iszero(staticcall(gas(), 0x02, 0x00, 0x20, 0x00, 0x20)) { revert(0, 0) }
            hash := mload(0x00)
        }
        // Not a time comparison: zero means never revealed.
        // slither-disable-next-line timestamp
        if (revealedAt[hash] != 0) return;
        revealedAt[hash] = block.timestamp;
        emit Revealed(hash, preimage);
    }
}
