// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {V2Fixture} from "./utils/V2Fixture.sol";
import {Eip712V2Vectors as V} from "./vectors/Eip712V2Vectors.sol";
import {VirtualBankV2} from "../src/VirtualBankV2.sol";

/// @notice The contract's EIP-712 hashing equals ethers' (anvil-scripts/eip712-v2-vectors.js): a
/// real channel's code is placed at the vectors' verifying contract, on the vectors' chain.
contract VirtualBankV2VectorsTest is V2Fixture {
    VirtualBankV2 internal bank;

    function setUp() public {
        _setUpV2();
        vm.chainId(V.CHAIN_ID);
        address channel = factory.open([alice, bob], [uint256(4 ether), 6 ether], LOCK, address(0), 0);
        vm.etch(V.VERIFYING_CONTRACT, channel.code);
        bank = VirtualBankV2(V.VERIFYING_CONTRACT);
    }

    function test_Vectors_DomainSeparator() public view {
        assertEq(bank.domainSeparator(), V.DOMAIN_SEPARATOR, "contract domain");
        assertEq(_domain(address(bank)), V.DOMAIN_SEPARATOR, "fixture domain");
    }

    function test_Vectors_SheetsWith0_1_3Locks() public view {
        for (uint256 i = 0; i < V.SHEET_COUNT; i++) {
            V.Sheet memory s = V.sheet(i);
            assertEq(bank.hashLocks(s.locks), s.locksRoot, "contract locks root");
            assertEq(_root(s.locks), s.locksRoot, "fixture locks root");
            assertEq(
                bank.sheetDigest(s.nonce, [s.balance0, s.balance1], s.locksRoot, s.waiver), s.digest, "contract digest"
            );
            assertEq(
                _sheetDigest(address(bank), s.nonce, s.balance0, s.balance1, s.locksRoot, s.waiver),
                s.digest,
                "fixture digest"
            );
            assertEq(_recover(s.digest, s.signature), V.SIGNER, "ethers signature recovers the signer");
        }
        assertEq(V.sheet(2).locks.length, 3, "three locks");
    }

    function test_Vectors_WaiverAndClose() public view {
        for (uint256 i = 0; i < 2; i++) {
            (uint256 nonce, bytes32 digest, bytes memory sig) = V.waiver(i);
            assertEq(_digest(address(bank), keccak256(abi.encode(WAIVER_TYPEHASH, nonce))), digest, "waiver digest");
            assertEq(_recover(digest, sig), V.SIGNER, "waiver signature");
        }
        (uint256 n, uint256 b0, uint256 b1, bytes32 d, bytes memory cs) = V.close();
        assertEq(_digest(address(bank), keccak256(abi.encode(CLOSE_TYPEHASH, n, b0, b1))), d, "close digest");
        assertEq(_recover(d, cs), V.SIGNER, "close signature");
    }

    /// @notice The vector's signature is accepted by the contract itself: the signer countersigned
    /// sheet 1 (one lock) of a channel whose party 1 is the vectors' signer.
    function test_Vectors_LiquidateWithEthersSignature() public {
        address channel = factory.open([alice, V.SIGNER], [uint256(4 ether), 6 ether], LOCK, address(0), 0);
        vm.etch(V.VERIFYING_CONTRACT, channel.code);
        vm.deal(alice, 4 ether);
        vm.prank(alice);
        bank.deposit{value: 4 ether}();
        vm.deal(V.SIGNER, 6 ether);
        vm.prank(V.SIGNER);
        bank.deposit{value: 6 ether}();
        V.Sheet memory s = V.sheet(1);
        vm.prank(alice);
        bank.liquidate(s.nonce, [s.balance0, s.balance1], s.locksRoot, s.waiver, s.signature);
        assertEq(bank.liquidation().locksRoot, s.locksRoot, "liquidated with the ethers-signed sheet");
    }

    function _recover(bytes32 digest, bytes memory sig) internal pure returns (address) {
        bytes32 r;
        bytes32 s;
        uint8 v;
        assembly {
            r := mload(add(sig, 0x20))
            s := mload(add(sig, 0x40))
            v := byte(0, mload(add(sig, 0x60)))
        }
        return ecrecover(digest, v, r, s);
    }
}
