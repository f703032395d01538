// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Test} from "./utils/Test.sol";
import {ChannelHandler} from "./handlers/ChannelHandler.sol";
import {VirtualBank} from "../src/VirtualBank.sol";

/// @notice Invariants over random channel lives played by `ChannelHandler`.
contract VirtualBankInvariantTest is Test {
    struct FuzzSelector {
        address addr;
        bytes4[] selectors;
    }

    ChannelHandler internal handler;
    VirtualBank internal bank;

    function setUp() public {
        vm.warp(1_700_000_000);
        handler = new ChannelHandler(3 ether, 2 ether);
        bank = handler.bank();
    }

    /// @dev Read by forge: fuzz only the handler.
    function targetContracts() public view returns (address[] memory targets) {
        targets = new address[](1);
        targets[0] = address(handler);
    }

    /// @dev Read by forge: the handler's actions.
    function targetSelectors() public view returns (FuzzSelector[] memory selectors) {
        bytes4[] memory s = new bytes4[](12);
        s[0] = ChannelHandler.depositAlice.selector;
        s[1] = ChannelHandler.depositBob.selector;
        s[2] = ChannelHandler.cancel.selector;
        s[3] = ChannelHandler.pay.selector;
        s[4] = ChannelHandler.aliceLiquidates.selector;
        s[5] = ChannelHandler.bobLiquidates.selector;
        s[6] = ChannelHandler.warp.selector;
        s[7] = ChannelHandler.withdrawByMaster.selector;
        s[8] = ChannelHandler.cooperativeClose.selector;
        s[9] = ChannelHandler.bobTriesToPunishHonestAlice.selector;
        s[10] = ChannelHandler.outsider.selector;
        s[11] = ChannelHandler.pay.selector; // payments twice as likely
        selectors = new FuzzSelector[](1);
        selectors[0] = FuzzSelector(address(handler), s);
    }

    /// @notice The contract's ETH balance is exactly what it still owes.
    function invariant_BalanceEqualsOutstanding() public view {
        assertEq(address(bank).balance, bank.outstanding(), "balance != outstanding");
    }

    /// @notice Nobody is ever paid more than was deposited, and outsiders get nothing.
    function invariant_NoPayoutBeyondDeposits() public view {
        assertEq(handler.paidToOthers(), 0, "an outsider was paid");
        assertLe(handler.paidTo0() + handler.paidTo1(), handler.total(), "paid more than deposited");
    }

    /// @notice Alice, honest and watching, ends with exactly her latest balance, or everything when
    /// Bob cheated; a cancel refunds exactly what each deposited; every wei is paid out at the end.
    function invariant_HonestPartyGetsItsLatestBalance() public view {
        if (bank.state() != VirtualBank.State.Closed) return;
        bool[2] memory dep = bank.deposited();
        if (handler.cancelled()) {
            assertEq(handler.paidTo0(), dep[0] ? handler.deposit0() : 0, "alice's refund");
            assertEq(handler.paidTo1(), dep[1] ? handler.deposit1() : 0, "bob's refund");
            return;
        }
        if (handler.punished()) {
            assertEq(handler.paidTo0(), handler.total(), "punishment gives alice everything");
            assertEq(handler.paidTo1(), 0, "the cheater gets nothing");
        } else {
            assertEq(handler.paidTo0(), handler.latestBalance0(), "alice's latest balance");
            assertEq(handler.paidTo1(), handler.total() - handler.latestBalance0(), "bob's latest balance");
        }
        assertEq(address(bank).balance, 0, "everything paid out");
    }

    /// @notice A cheating liquidation is always punished by the watching honest party.
    function invariant_CheatingNeverPays() public view {
        if (handler.bobCheated()) {
            assertTrue(handler.punished(), "cheat not punished");
            assertEq(handler.paidTo1(), 0, "the cheater was paid");
        }
    }

    /// @notice After Closed nothing moves.
    function invariant_NothingMovesAfterClose() public view {
        if (!handler.wasClosed()) return;
        assertTrue(bank.state() == VirtualBank.State.Closed, "left Closed");
        assertEq(handler.paidTo0(), handler.closedAt0(), "alice paid after close");
        assertEq(handler.paidTo1(), handler.closedAt1(), "bob paid after close");
        assertEq(address(bank).balance, handler.closedContractBalance(), "balance moved after close");
    }
}
