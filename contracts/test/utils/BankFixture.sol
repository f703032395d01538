// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Test} from "./Test.sol";
import {VirtualBank} from "../../src/VirtualBank.sol";

/// @notice Keys, deployment and EIP-712 signing for VirtualBank tests. The digests are computed
/// here from the type strings, independently of the contract's own hashing.
abstract contract BankFixture is Test {
    uint256 internal constant ALICE_KEY = 0xA11CE;
    uint256 internal constant BOB_KEY = 0xB0B;
    uint256 internal constant CAROL_KEY = 0xCA201;
    uint64 internal constant LOCK = 1 days;

    bytes32 internal constant DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");
    bytes32 internal constant SHEET_TYPEHASH =
        keccak256("BalanceSheet(uint256 nonce,uint256 balance0,uint256 balance1,address waiver)");
    bytes32 internal constant WAIVER_TYPEHASH = keccak256("Waiver(uint256 nonce)");
    bytes32 internal constant CLOSE_TYPEHASH = keccak256("Close(uint256 nonce,uint256 balance0,uint256 balance1)");

    address internal alice;
    address internal bob;
    address internal carol;

    function _setUpKeys() internal {
        alice = vm.addr(ALICE_KEY);
        bob = vm.addr(BOB_KEY);
        carol = vm.addr(CAROL_KEY);
        vm.label(alice, "alice");
        vm.label(bob, "bob");
        vm.label(carol, "carol");
    }

    function _deploy(address p0, address p1, uint256 a0, uint256 a1, uint64 lock) internal returns (VirtualBank) {
        return new VirtualBank([p0, p1], [a0, a1], lock);
    }

    /// @dev Deploys a channel between `p0` and `p1` and pays both deposits.
    function _open(address p0, address p1, uint256 a0, uint256 a1, uint64 lock) internal returns (VirtualBank bank) {
        bank = _deploy(p0, p1, a0, a1, lock);
        if (a0 > 0) {
            vm.deal(p0, p0.balance + a0);
            vm.prank(p0);
            bank.deposit{value: a0}();
        }
        if (a1 > 0) {
            vm.deal(p1, p1.balance + a1);
            vm.prank(p1);
            bank.deposit{value: a1}();
        }
    }

    function _domain(address bank) internal view returns (bytes32) {
        return
            keccak256(
                abi.encode(DOMAIN_TYPEHASH, keccak256("VirtualBank"), keccak256("1"), block.chainid, address(bank))
            );
    }

    function _digest(address bank, bytes32 structHash) internal view returns (bytes32) {
        return keccak256(abi.encodePacked("\x19\x01", _domain(bank), structHash));
    }

    function _sheetDigest(address bank, uint256 nonce, uint256 b0, uint256 b1, address waiver)
        internal
        view
        returns (bytes32)
    {
        return _digest(bank, keccak256(abi.encode(SHEET_TYPEHASH, nonce, b0, b1, waiver)));
    }

    function _waiverDigest(address bank, uint256 nonce) internal view returns (bytes32) {
        return _digest(bank, keccak256(abi.encode(WAIVER_TYPEHASH, nonce)));
    }

    function _closeDigest(address bank, uint256 nonce, uint256 b0, uint256 b1) internal view returns (bytes32) {
        return _digest(bank, keccak256(abi.encode(CLOSE_TYPEHASH, nonce, b0, b1)));
    }

    function _sign(uint256 key, bytes32 digest) internal pure returns (bytes memory) {
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(key, digest);
        return abi.encodePacked(r, s, v);
    }

    function _signSheet(uint256 key, VirtualBank bank, uint256 nonce, uint256 b0, uint256 b1, address waiver)
        internal
        view
        returns (bytes memory)
    {
        return _sign(key, _sheetDigest(address(bank), nonce, b0, b1, waiver));
    }

    function _signWaiver(uint256 waiverKey, VirtualBank bank, uint256 nonce) internal view returns (bytes memory) {
        return _sign(waiverKey, _waiverDigest(address(bank), nonce));
    }

    function _signClose(uint256 key, VirtualBank bank, uint256 nonce, uint256 b0, uint256 b1)
        internal
        view
        returns (bytes memory)
    {
        return _sign(key, _closeDigest(address(bank), nonce, b0, b1));
    }

    /// @dev The same signature with `s` mirrored into the upper half order and `v` flipped:
    /// ecrecover still accepts it, the contract must not.
    function _highS(bytes memory sig) internal pure returns (bytes memory) {
        bytes32 r;
        bytes32 s;
        uint8 v;
        assembly {
            r := mload(add(sig, 0x20))
            s := mload(add(sig, 0x40))
            v := byte(0, mload(add(sig, 0x60)))
        }
        return abi.encodePacked(r, bytes32(SECP256K1_ORDER - uint256(s)), v == 27 ? uint8(28) : uint8(27));
    }

    /// @dev A deterministic waiver key for (party, nonce), as the off-chain chain would derive.
    function _waiverKey(uint256 partyKey, uint256 nonce) internal pure returns (uint256) {
        return uint256(keccak256(abi.encode("waiver", partyKey, nonce))) % (SECP256K1_ORDER - 1) + 1;
    }
}

/// @notice A party that cannot receive ETH.
contract RevertingParty {
    function call(address target, bytes calldata data) external payable returns (bytes memory) {
        (bool ok, bytes memory ret) = target.call{value: msg.value}(data);
        if (!ok) {
            assembly {
                revert(add(ret, 0x20), mload(ret))
            }
        }
        return ret;
    }

    receive() external payable {
        revert("no ETH, thanks");
    }
}

/// @notice A party that burns all the gas it is given when paid.
contract GasBurningParty {
    receive() external payable {
        while (true) {}
    }
}
