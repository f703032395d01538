// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {V2Fixture} from "./utils/V2Fixture.sol";
import {V2ChannelHandler} from "./handlers/V2ChannelHandler.sol";
import {StandardToken} from "./utils/MockTokens.sol";
import {VirtualBankV2} from "../src/VirtualBankV2.sol";

/// @notice Invariants over random v2 channel lives with locks (ETH here; ERC-20 in the subclass).
contract VirtualBankV2InvariantTest is V2Fixture {
    struct FuzzSelector {
        address addr;
        bytes4[] selectors;
    }

    V2ChannelHandler internal handler;
    VirtualBankV2 internal bank;

    function _token() internal virtual returns (address) {
        return address(0);
    }

    function setUp() public {
        vm.warp(1_700_000_000);
        _setUpV2();
        // Bob's choice of lock period: from the shortest to the longest accepted.
        uint64 lock = uint64(1 + uint256(keccak256(abi.encode(address(this)))) % 2 days);
        handler = new V2ChannelHandler(factory, _token(), 3 ether, 2 ether, lock);
        bank = handler.bank();
    }

    function targetContracts() public view returns (address[] memory targets) {
        targets = new address[](1);
        targets[0] = address(handler);
    }

    function targetSelectors() public view returns (FuzzSelector[] memory selectors) {
        bytes4[] memory s = new bytes4[](11);
        s[0] = V2ChannelHandler.pay.selector;
        s[1] = V2ChannelHandler.pay.selector;
        s[2] = V2ChannelHandler.aliceLiquidates.selector;
        s[3] = V2ChannelHandler.bobLiquidates.selector;
        s[4] = V2ChannelHandler.warp.selector;
        s[5] = V2ChannelHandler.warp.selector;
        s[6] = V2ChannelHandler.reveal.selector;
        s[7] = V2ChannelHandler.withdrawByMaster.selector;
        s[8] = V2ChannelHandler.unlock.selector;
        s[9] = V2ChannelHandler.cooperativeClose.selector;
        s[10] = V2ChannelHandler.reveal.selector;
        selectors = new FuzzSelector[](1);
        selectors[0] = FuzzSelector(address(handler), s);
    }

    function _held() internal view returns (uint256) {
        return _balanceOf(handler.token(), address(bank));
    }

    /// @notice Every unit deposited is either paid to a party or still held; nothing else moves.
    function invariant_Conservation() public view {
        assertEq(handler.paidTo0() + handler.paidTo1() + _held(), handler.total(), "paid + held != deposited");
        assertEq(bank.outstanding(), _held(), "outstanding != held");
    }

    /// @notice Honest Alice never loses: once Closed she has everything if Bob cheated, else exactly
    /// her balance in the closing sheet plus the locks resolved to her.
    function invariant_HonestPartyNeverLoses() public view {
        if (bank.state() != VirtualBankV2.State.Closed) return;
        if (handler.punished()) {
            assertEq(handler.paidTo0(), handler.total(), "punishment gives alice everything");
            assertEq(handler.paidTo1(), 0, "the cheater gets nothing");
        } else {
            assertEq(handler.paidTo0(), handler.aliceEntitlement(), "alice's entitlement");
            assertEq(handler.paidTo1(), handler.total() - handler.paidTo0(), "bob gets the rest");
        }
        assertEq(_held(), 0, "everything paid out");
    }

    /// @notice A cheating liquidation is always punished and never pays the cheater.
    function invariant_CheatingNeverPays() public view {
        if (handler.cheated()) {
            assertTrue(handler.punished(), "cheat not punished");
            assertEq(handler.paidTo1(), 0, "the cheater was paid");
        }
    }
}

/// @notice The same invariants for an ERC-20 channel.
contract VirtualBankV2TokenInvariantTest is VirtualBankV2InvariantTest {
    function _token() internal override returns (address) {
        return address(new StandardToken());
    }
}
