// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {BankFixture} from "./utils/BankFixture.sol";
import {VirtualBank} from "../src/VirtualBank.sol";

/// @notice One clean run of each operation, the way a user pays for it, for the gas table
/// (`anvil-scripts/gas-table.sh` runs this suite with `--isolate --gas-report`, so each call is
/// measured as its own transaction, 21,000 base and calldata included). Two EOAs, 1 and 2 ETH.
contract VirtualBankGasTest is BankFixture {
    VirtualBank internal bank;

    function setUp() public {
        vm.warp(1_700_000_000);
        _setUpKeys();
        vm.deal(alice, 10 ether);
        vm.deal(bob, 10 ether);
    }

    function _running() internal returns (VirtualBank b) {
        b = _deploy(alice, bob, 1 ether, 2 ether, LOCK);
        vm.prank(alice);
        b.deposit{value: 1 ether}();
        vm.prank(bob);
        b.deposit{value: 2 ether}();
    }

    function _liquidated() internal returns (VirtualBank b, uint256 waiverKey) {
        b = _running();
        waiverKey = _waiverKey(ALICE_KEY, 7);
        address waiver = vm.addr(waiverKey);
        bytes memory sig = _signSheet(BOB_KEY, b, 7, 1.25 ether, 1.75 ether, waiver);
        vm.prank(alice);
        b.liquidate(7, [uint256(1.25 ether), 1.75 ether], waiver, sig);
    }

    function test_Gas_DeployAndFund() public {
        VirtualBank b = _running();
        assertTrue(b.state() == VirtualBank.State.Running, "running");
    }

    function test_Gas_Cancel() public {
        VirtualBank b = _deploy(alice, bob, 1 ether, 2 ether, LOCK);
        vm.prank(alice);
        b.deposit{value: 1 ether}();
        vm.prank(bob);
        b.cancel();
        assertTrue(b.state() == VirtualBank.State.Closed, "closed");
    }

    function test_Gas_LiquidateAndWithdrawByMaster() public {
        (VirtualBank b,) = _liquidated();
        vm.warp(block.timestamp + LOCK);
        b.withdrawByMaster();
        assertTrue(b.state() == VirtualBank.State.Closed, "closed");
    }

    function test_Gas_LiquidateAndWithdrawByPeer() public {
        (VirtualBank b, uint256 wk) = _liquidated();
        bytes memory wsig = _signWaiver(wk, b, 7);
        vm.prank(bob);
        b.withdrawByPeer(7, wsig);
        assertTrue(b.state() == VirtualBank.State.Closed, "closed");
    }

    function test_Gas_CooperativeClose() public {
        VirtualBank b = _running();
        bytes memory s0 = _signClose(ALICE_KEY, b, 7, 1.25 ether, 1.75 ether);
        bytes memory s1 = _signClose(BOB_KEY, b, 7, 1.25 ether, 1.75 ether);
        vm.prank(alice);
        b.cooperativeClose(7, [uint256(1.25 ether), 1.75 ether], s0, s1);
        assertTrue(b.state() == VirtualBank.State.Closed, "closed");
    }
}
