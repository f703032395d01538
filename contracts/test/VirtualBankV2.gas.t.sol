// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {V2Fixture} from "./utils/V2Fixture.sol";
import {StandardToken} from "./utils/MockTokens.sol";
import {VirtualBankV2} from "../src/VirtualBankV2.sol";

/// @notice One clean run of each v2 operation, the way a user pays for it, for the gas table and
/// the gas snapshot (`anvil-scripts/gas-table.sh` runs this suite with `--isolate`, so each call is
/// its own transaction: 21,000 base and calldata included). Each measured call is recorded with
/// `vm.snapshotGasLastCall` under the group "v2" (written to contracts/snapshots/v2.json).
/// Two EOAs with 10 ETH (or 10 tokens) each; deposits of 1 and 2.
contract VirtualBankV2GasTest is V2Fixture {
    StandardToken internal token;

    function setUp() public {
        vm.warp(1_700_000_000);
        _setUpV2();
        vm.deal(alice, 10 ether);
        vm.deal(bob, 10 ether);
        token = new StandardToken();
        token.mint(alice, 10 ether);
        token.mint(bob, 10 ether);
    }

    function _snap(string memory name) internal {
        vm.snapshotGasLastCall("v2", name);
    }

    function _ethRunning() internal returns (VirtualBankV2 b) {
        vm.prank(alice);
        b = VirtualBankV2(
            factory.openAndDeposit{value: 1 ether}([alice, bob], [uint256(1 ether), 2 ether], LOCK, address(0), 0)
        );
        _snap("openAndDeposit ETH");
        vm.prank(bob);
        b.deposit{value: 2 ether}();
        _snap("deposit ETH, second party");
    }

    function _liquidated(VirtualBankV2.Lock[] memory locks) internal returns (VirtualBankV2 b, uint256 waiverKey) {
        b = _ethRunning();
        uint256 locked;
        for (uint256 i = 0; i < locks.length; i++) {
            locked += locks[i].amount;
        }
        waiverKey = _liquidate(b, true, 7, 1.25 ether, 1.75 ether - locked, locks);
    }

    function test_Gas_V2_EthHappyLife() public {
        VirtualBankV2 b = _ethRunning();
        bytes memory s0 = _signClose(ALICE_KEY, b, 7, 1.25 ether, 1.75 ether);
        bytes memory s1 = _signClose(BOB_KEY, b, 7, 1.25 ether, 1.75 ether);
        vm.prank(alice);
        b.cooperativeClose(7, [uint256(1.25 ether), 1.75 ether], s0, s1);
        _snap("cooperativeClose ETH");
        assertTrue(b.state() == VirtualBankV2.State.Closed, "closed");
    }

    function test_Gas_V2_TokenHappyLife() public {
        vm.prank(alice);
        token.approve(address(factory), 1 ether);
        vm.prank(alice);
        VirtualBankV2 b =
            VirtualBankV2(factory.openAndDeposit([alice, bob], [uint256(1 ether), 2 ether], LOCK, address(token), 0));
        _snap("openAndDeposit ERC-20");
        vm.prank(bob);
        token.approve(address(b), 2 ether);
        vm.prank(bob);
        b.deposit();
        _snap("deposit ERC-20, second party");
        bytes memory s0 = _signClose(ALICE_KEY, b, 7, 1.25 ether, 1.75 ether);
        bytes memory s1 = _signClose(BOB_KEY, b, 7, 1.25 ether, 1.75 ether);
        vm.prank(alice);
        b.cooperativeClose(7, [uint256(1.25 ether), 1.75 ether], s0, s1);
        _snap("cooperativeClose ERC-20");
        assertEq(token.balanceOf(address(b)), 0, "paid out");
    }

    function test_Gas_V2_OpenAndCancel() public {
        vm.prank(alice);
        VirtualBankV2 b = VirtualBankV2(factory.open([alice, bob], [uint256(1 ether), 2 ether], LOCK, address(0), 0));
        _snap("open ETH");
        vm.prank(alice);
        b.deposit{value: 1 ether}();
        _snap("deposit ETH, first party");
        vm.prank(alice);
        b.cancel();
        _snap("cancel");
    }

    function test_Gas_V2_LiquidateAndWithdrawByMaster() public {
        (VirtualBankV2 b,) = _liquidated(_noLocks());
        _snap("liquidate");
        vm.warp(block.timestamp + LOCK);
        vm.prank(alice);
        b.withdrawByMaster();
        _snap("withdrawByMaster");
        assertTrue(b.state() == VirtualBankV2.State.Closed, "closed");
    }

    function test_Gas_V2_LiquidateAndWithdrawByPeer() public {
        (VirtualBankV2 b, uint256 wk) = _liquidated(_noLocks());
        bytes memory wsig = _signWaiver(wk, b, 7);
        vm.prank(bob);
        b.withdrawByPeer(7, wsig);
        _snap("withdrawByPeer");
        assertTrue(b.state() == VirtualBankV2.State.Closed, "closed");
    }

    function test_Gas_V2_Reveal() public {
        registry.reveal(_preimage(1));
        _snap("reveal");
    }

    function _unlockWith(uint256 n, string memory name) internal {
        VirtualBankV2.Lock[] memory locks = new VirtualBankV2.Lock[](n);
        uint64 expiry = uint64(block.timestamp + 2 hours);
        for (uint256 i = 0; i < n; i++) {
            // Incoming locks of bob, who settles them: the usual case, as in Raiden's figure.
            locks[i] = _lock(1, 0.01 ether, expiry, i);
            registry.reveal(_preimage(i));
        }
        (VirtualBankV2 b,) = _liquidated(locks);
        vm.warp(block.timestamp + LOCK);
        vm.prank(alice);
        b.withdrawByMaster();
        vm.prank(bob);
        b.unlock(locks);
        _snap(name);
        assertTrue(b.state() == VirtualBankV2.State.Closed, "closed");
    }

    function test_Gas_V2_Unlock1() public {
        _unlockWith(1, "unlock, 1 lock");
    }

    function test_Gas_V2_Unlock9() public {
        _unlockWith(9, "unlock, 9 locks");
    }
}
