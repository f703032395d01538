// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {BankFixture, RevertingParty, GasBurningParty} from "./utils/BankFixture.sol";
import {VirtualBank} from "../src/VirtualBank.sol";

contract VirtualBankTest is BankFixture {
    uint256 internal constant A0 = 3 ether;
    uint256 internal constant A1 = 2 ether;

    VirtualBank internal bank;

    function setUp() public {
        vm.warp(1_700_000_000);
        _setUpKeys();
        bank = _open(alice, bob, A0, A1, LOCK);
    }

    // ------------------------------------------------------------ constructor

    function test_Constructor_SetsParameters() public {
        VirtualBank b = _deploy(alice, bob, 1 ether, 2 ether, 7);
        assertTrue(b.state() == VirtualBank.State.Funding, "state");
        assertEq(b.parties()[0], alice, "party0");
        assertEq(b.parties()[1], bob, "party1");
        assertEq(b.amounts()[0], 1 ether, "amount0");
        assertEq(b.amounts()[1], 2 ether, "amount1");
        assertEq(b.lockPeriod(), 7, "lock");
        assertEq(b.totalDeposits(), 3 ether, "total");
        assertEq(b.outstanding(), 0, "outstanding");
        assertEq(b.domainSeparator(), _domain(address(b)), "domain separator");
    }

    function test_Constructor_ZeroAmountCountsAsDeposited() public {
        VirtualBank b = _deploy(alice, bob, 0, 1 ether, LOCK);
        assertTrue(b.deposited()[0] && !b.deposited()[1], "flags");
        vm.deal(bob, 1 ether);
        vm.prank(bob);
        b.deposit{value: 1 ether}();
        assertTrue(b.state() == VirtualBank.State.Running, "running after the only deposit");
    }

    function test_RevertWhen_Constructor_ZeroParty() public {
        vm.expectRevert(VirtualBank.VirtualBankZeroParty.selector);
        _deploy(address(0), bob, 1, 1, LOCK);
        vm.expectRevert(VirtualBank.VirtualBankZeroParty.selector);
        _deploy(alice, address(0), 1, 1, LOCK);
    }

    function test_RevertWhen_Constructor_SameParty() public {
        vm.expectRevert(abi.encodeWithSelector(VirtualBank.VirtualBankSameParty.selector, alice));
        _deploy(alice, alice, 1, 1, LOCK);
    }

    function test_RevertWhen_Constructor_ZeroDeposits() public {
        vm.expectRevert(VirtualBank.VirtualBankZeroDeposits.selector);
        _deploy(alice, bob, 0, 0, LOCK);
    }

    function test_RevertWhen_Constructor_ZeroLockPeriod() public {
        vm.expectRevert(VirtualBank.VirtualBankZeroLockPeriod.selector);
        _deploy(alice, bob, 1, 1, 0);
    }

    function test_RevertWhen_Constructor_LockPeriodTooLarge() public {
        uint256 max = type(uint32).max;
        vm.expectRevert(abi.encodeWithSelector(VirtualBank.VirtualBankLockPeriodTooLarge.selector, max + 1, max));
        _deploy(alice, bob, 1, 1, uint64(max + 1));
        vm.expectRevert(
            abi.encodeWithSelector(VirtualBank.VirtualBankLockPeriodTooLarge.selector, type(uint64).max, max)
        );
        _deploy(alice, bob, 1, 1, type(uint64).max);
        assertEq(_deploy(alice, bob, 1, 1, uint64(max)).lockPeriod(), max, "2^32 - 1 accepted");
    }

    function deployExternal(uint64 lock) external returns (VirtualBank) {
        return _deploy(alice, bob, A0, A1, lock);
    }

    /// @notice Issue 12 item 1, the attack itself: Bob chooses a lock period near 2^64, so that
    /// `now + lockPeriod` wrapped in 64 bits lies in the past; he liquidates with a sheet he revoked
    /// long ago and withdraws in the same block, before Alice can punish. The channel must either
    /// refuse such a lock period or keep the cheater's balance frozen for the whole period.
    function test_Attack_HugeLockPeriodCannotWrapUnlockTime() public {
        uint64[4] memory locks = [
            type(uint64).max,
            type(uint64).max - uint64(block.timestamp) + 1, // unlockTime wraps to exactly 0
            uint64(1) << 32,
            uint64(1) << 63
        ];
        for (uint256 k = 0; k < locks.length; k++) {
            try this.deployExternal(locks[k]) returns (VirtualBank b) {
                vm.deal(alice, A0);
                vm.prank(alice);
                b.deposit{value: A0}();
                vm.deal(bob, A1);
                vm.prank(bob);
                b.deposit{value: A1}();
                // Bob liquidates with an old sheet (nonce 1) that gave him everything.
                address waiver = vm.addr(_waiverKey(BOB_KEY, 1));
                bytes memory sig = _signSheet(ALICE_KEY, b, 1, 0, A0 + A1, waiver);
                vm.prank(bob);
                b.liquidate(1, [uint256(0), A0 + A1], waiver, sig);
                (bool ok,) = address(b).call(abi.encodeCall(VirtualBank.withdrawByMaster, ()));
                assertTrue(!ok, "the cheater withdrew in the liquidation's block");
                assertTrue(b.liquidation().unlockTime >= block.timestamp + locks[k], "unlock time wrapped");
            } catch (bytes memory err) {
                assertEq(bytes32(bytes4(err)), bytes32(VirtualBank.VirtualBankLockPeriodTooLarge.selector), "error");
            }
        }
    }

    function test_RevertWhen_Constructor_DepositsTooLarge() public {
        uint256 big = type(uint128).max;
        vm.expectRevert(abi.encodeWithSelector(VirtualBank.VirtualBankDepositsTooLarge.selector, big + 1));
        _deploy(alice, bob, big, 1, LOCK);
        vm.expectRevert(abi.encodeWithSelector(VirtualBank.VirtualBankDepositsTooLarge.selector, type(uint256).max));
        _deploy(alice, bob, type(uint256).max, 1, LOCK);
    }

    // ------------------------------------------------------------ deposit

    function test_Deposit_BothDepositsRunTheChannel() public {
        VirtualBank b = _deploy(alice, bob, 1 ether, 2 ether, LOCK);
        vm.deal(alice, 1 ether);
        vm.deal(bob, 2 ether);
        vm.expectEmit(true, false, false, true, address(b));
        emit VirtualBank.Deposited(alice, 1 ether, false);
        vm.prank(alice);
        b.deposit{value: 1 ether}();
        assertTrue(b.state() == VirtualBank.State.Funding, "still funding");
        assertEq(b.outstanding(), 1 ether, "outstanding after one deposit");
        vm.expectEmit(true, false, false, true, address(b));
        emit VirtualBank.Deposited(bob, 2 ether, true);
        vm.prank(bob);
        b.deposit{value: 2 ether}();
        assertTrue(b.state() == VirtualBank.State.Running, "running");
        assertEq(address(b).balance, 3 ether, "balance");
    }

    function test_RevertWhen_Deposit_NotParty() public {
        VirtualBank b = _deploy(alice, bob, 1 ether, 2 ether, LOCK);
        vm.deal(carol, 1 ether);
        vm.prank(carol);
        vm.expectRevert(abi.encodeWithSelector(VirtualBank.VirtualBankNotParty.selector, carol));
        b.deposit{value: 1 ether}();
    }

    function test_RevertWhen_Deposit_WrongAmount() public {
        VirtualBank b = _deploy(alice, bob, 1 ether, 2 ether, LOCK);
        vm.deal(alice, 2 ether);
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(VirtualBank.VirtualBankWrongDeposit.selector, 1 ether, 2 ether));
        b.deposit{value: 2 ether}();
    }

    function test_RevertWhen_Deposit_Twice() public {
        VirtualBank b = _deploy(alice, bob, 1 ether, 2 ether, LOCK);
        vm.deal(alice, 2 ether);
        vm.startPrank(alice);
        b.deposit{value: 1 ether}();
        vm.expectRevert(abi.encodeWithSelector(VirtualBank.VirtualBankAlreadyDeposited.selector, alice));
        b.deposit{value: 1 ether}();
        vm.stopPrank();
    }

    function test_RevertWhen_Deposit_ZeroAmountParty() public {
        VirtualBank b = _deploy(alice, bob, 0, 2 ether, LOCK);
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(VirtualBank.VirtualBankAlreadyDeposited.selector, alice));
        b.deposit();
    }

    function test_RevertWhen_Deposit_Running() public {
        vm.deal(alice, A0);
        vm.prank(alice);
        vm.expectRevert(
            abi.encodeWithSelector(
                VirtualBank.VirtualBankWrongState.selector, VirtualBank.State.Funding, VirtualBank.State.Running
            )
        );
        bank.deposit{value: A0}();
    }

    // ------------------------------------------------------------ cancel

    function test_Cancel_RefundsDepositsMade() public {
        VirtualBank b = _deploy(alice, bob, 1 ether, 2 ether, LOCK);
        vm.deal(alice, 1 ether);
        vm.prank(alice);
        b.deposit{value: 1 ether}();
        vm.expectEmit(true, false, false, true, address(b));
        emit VirtualBank.Cancelled(bob);
        vm.prank(bob);
        b.cancel();
        assertTrue(b.state() == VirtualBank.State.Closed, "closed");
        assertEq(alice.balance, 1 ether, "alice refunded");
        assertEq(bob.balance, 0, "bob paid nothing, got nothing");
        assertEq(address(b).balance, 0, "empty");
    }

    function test_Cancel_WithNoDeposits() public {
        VirtualBank b = _deploy(alice, bob, 1 ether, 2 ether, LOCK);
        vm.prank(alice);
        b.cancel();
        assertTrue(b.state() == VirtualBank.State.Closed, "closed");
    }

    function test_Cancel_RevertingPartyDoesNotBlockRefund() public {
        RevertingParty rp = new RevertingParty();
        VirtualBank b = _deploy(address(rp), bob, 1 ether, 2 ether, LOCK);
        vm.deal(address(this), 1 ether);
        rp.call{value: 1 ether}(address(b), abi.encodeCall(VirtualBank.deposit, ()));
        vm.deal(bob, 2 ether);
        vm.prank(bob);
        b.deposit{value: 2 ether}();
        // Running now; a channel that never completes funding is cancelled instead:
        VirtualBank c = _deploy(address(rp), bob, 1 ether, 2 ether, LOCK);
        vm.deal(address(this), 1 ether);
        rp.call{value: 1 ether}(address(c), abi.encodeCall(VirtualBank.deposit, ()));
        vm.expectEmit(true, false, false, true, address(c));
        emit VirtualBank.PayoutDeferred(address(rp), 1 ether);
        vm.prank(bob);
        c.cancel();
        assertEq(c.owed(address(rp)), 1 ether, "credited");
        assertEq(c.outstanding(), 1 ether, "still owed");
        rp.call(address(c), abi.encodeCall(VirtualBank.claim, (payable(carol))));
        assertEq(carol.balance, 1 ether, "claimed to another address");
        assertEq(address(c).balance, 0, "empty");
    }

    function test_RevertWhen_Cancel_NotParty() public {
        VirtualBank b = _deploy(alice, bob, 1 ether, 2 ether, LOCK);
        vm.prank(carol);
        vm.expectRevert(abi.encodeWithSelector(VirtualBank.VirtualBankNotParty.selector, carol));
        b.cancel();
    }

    function test_RevertWhen_Cancel_Running() public {
        vm.prank(alice);
        vm.expectRevert(
            abi.encodeWithSelector(
                VirtualBank.VirtualBankWrongState.selector, VirtualBank.State.Funding, VirtualBank.State.Running
            )
        );
        bank.cancel();
    }

    // ------------------------------------------------------------ liquidate

    function test_Liquidate_PaysPeerAndFreezesMaster() public {
        address waiver = vm.addr(_waiverKey(ALICE_KEY, 5));
        bytes memory sig = _signSheet(BOB_KEY, bank, 5, 1 ether, 4 ether, waiver);
        vm.expectEmit(true, false, false, true, address(bank));
        emit VirtualBank.Liquidated(alice, 5, 1 ether, 4 ether, waiver, block.timestamp + LOCK);
        vm.prank(alice);
        bank.liquidate(5, [uint256(1 ether), 4 ether], waiver, sig);
        assertTrue(bank.state() == VirtualBank.State.Liquidating, "liquidating");
        assertEq(bob.balance, 4 ether, "peer paid at once");
        assertEq(alice.balance, 0, "master frozen");
        assertEq(address(bank).balance, 1 ether, "frozen held");
        VirtualBank.Liquidation memory l = bank.liquidation();
        assertEq(l.master, alice, "master");
        assertEq(l.nonce, 5, "nonce");
        assertEq(l.balances[0], 1 ether, "balance0");
        assertEq(l.balances[1], 4 ether, "balance1");
        assertEq(l.waiver, waiver, "waiver");
        assertEq(l.unlockTime, block.timestamp + LOCK, "unlock");
    }

    function test_Liquidate_ByPartyOne() public {
        address waiver = vm.addr(_waiverKey(BOB_KEY, 1));
        bytes memory sig = _signSheet(ALICE_KEY, bank, 1, 2 ether, 3 ether, waiver);
        vm.prank(bob);
        bank.liquidate(1, [uint256(2 ether), 3 ether], waiver, sig);
        assertEq(alice.balance, 2 ether, "alice (peer) paid");
        assertEq(bank.liquidation().master, bob, "bob is master");
    }

    function test_RevertWhen_Liquidate_NotParty() public {
        bytes memory sig = _signSheet(BOB_KEY, bank, 1, A0, A1, carol);
        vm.prank(carol);
        vm.expectRevert(abi.encodeWithSelector(VirtualBank.VirtualBankNotParty.selector, carol));
        bank.liquidate(1, [A0, A1], carol, sig);
    }

    function test_RevertWhen_Liquidate_Funding() public {
        VirtualBank b = _deploy(alice, bob, 1 ether, 2 ether, LOCK);
        bytes memory sig = _signSheet(BOB_KEY, b, 1, 1 ether, 2 ether, carol);
        vm.prank(alice);
        vm.expectRevert(
            abi.encodeWithSelector(
                VirtualBank.VirtualBankWrongState.selector, VirtualBank.State.Running, VirtualBank.State.Funding
            )
        );
        b.liquidate(1, [uint256(1 ether), 2 ether], carol, sig);
    }

    function test_RevertWhen_Liquidate_BalancesDoNotAddUp() public {
        bytes memory sig = _signSheet(BOB_KEY, bank, 1, A0, A1 + 1, carol);
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(VirtualBank.VirtualBankBalanceMismatch.selector, A0 + A1 + 1, A0 + A1));
        bank.liquidate(1, [A0, A1 + 1], carol, sig);
        // an overflowing pair must not wrap around to the total
        uint256 b0 = type(uint256).max;
        uint256 b1 = A0 + A1 + 1;
        vm.prank(alice);
        vm.expectRevert(
            abi.encodeWithSelector(VirtualBank.VirtualBankBalanceMismatch.selector, type(uint256).max, A0 + A1)
        );
        bank.liquidate(1, [b0, b1], carol, sig);
    }

    function test_RevertWhen_Liquidate_NonceTooLarge() public {
        uint256 nonce = uint256(type(uint64).max) + 1;
        bytes memory sig = _signSheet(BOB_KEY, bank, nonce, A0, A1, carol);
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(VirtualBank.VirtualBankNonceTooLarge.selector, nonce));
        bank.liquidate(nonce, [A0, A1], carol, sig);
    }

    function test_RevertWhen_Liquidate_ZeroWaiver() public {
        bytes memory sig = _signSheet(BOB_KEY, bank, 1, A0, A1, address(0));
        vm.prank(alice);
        vm.expectRevert(VirtualBank.VirtualBankZeroWaiver.selector);
        bank.liquidate(1, [A0, A1], address(0), sig);
    }

    function test_RevertWhen_Liquidate_SelfSigned() public {
        bytes memory sig = _signSheet(ALICE_KEY, bank, 1, A0 + A1, 0, carol);
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(VirtualBank.VirtualBankWrongSigner.selector, bob, alice));
        bank.liquidate(1, [A0 + A1, 0], carol, sig);
    }

    function test_RevertWhen_Liquidate_TamperedSheet() public {
        bytes memory sig = _signSheet(BOB_KEY, bank, 1, A0, A1, carol);
        vm.prank(alice);
        vm.expectRevert(); // recovers to some unrelated address
        bank.liquidate(1, [A0 + 1, A1 - 1], carol, sig);
        assertTrue(bank.state() == VirtualBank.State.Running, "still running");
    }

    function test_RevertWhen_Liquidate_HighS() public {
        bytes memory sig = _highS(_signSheet(BOB_KEY, bank, 1, A0, A1, carol));
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(VirtualBank.VirtualBankInvalidSignature.selector, uint8(3)));
        bank.liquidate(1, [A0, A1], carol, sig);
    }

    function test_RevertWhen_Liquidate_ZeroRecovery() public {
        bytes memory sig = _signSheet(BOB_KEY, bank, 1, A0, A1, carol);
        sig[64] = bytes1(uint8(29)); // v outside {27, 28}: ecrecover yields address(0)
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(VirtualBank.VirtualBankInvalidSignature.selector, uint8(1)));
        bank.liquidate(1, [A0, A1], carol, sig);
        bytes memory zero = new bytes(65); // r = s = 0
        zero[64] = bytes1(uint8(27));
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(VirtualBank.VirtualBankInvalidSignature.selector, uint8(1)));
        bank.liquidate(1, [A0, A1], carol, zero);
    }

    function test_RevertWhen_Liquidate_BadSignatureLength() public {
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(VirtualBank.VirtualBankInvalidSignature.selector, uint8(2)));
        bank.liquidate(1, [A0, A1], carol, new bytes(64));
    }

    function test_RevertWhen_Liquidate_SignatureFromOtherChain() public {
        bytes memory sig = _signSheet(BOB_KEY, bank, 1, A0, A1, carol);
        vm.chainId(block.chainid + 1);
        vm.prank(alice);
        vm.expectRevert(); // the domain separator changed with the chain id
        bank.liquidate(1, [A0, A1], carol, sig);
        assertTrue(bank.state() == VirtualBank.State.Running, "still running");
    }

    function test_RevertWhen_Liquidate_SignatureFromOtherChannel() public {
        VirtualBank other = _open(alice, bob, A0, A1, LOCK);
        bytes memory sig = _signSheet(BOB_KEY, other, 1, A0, A1, carol);
        vm.prank(alice);
        vm.expectRevert();
        bank.liquidate(1, [A0, A1], carol, sig);
        assertTrue(bank.state() == VirtualBank.State.Running, "still running");
    }

    function test_RevertWhen_Liquidate_SignatureOfOtherType() public {
        // Bob's Close over the same numbers is no BalanceSheet signature.
        bytes memory sig = _signClose(BOB_KEY, bank, 1, A0, A1);
        vm.prank(alice);
        vm.expectRevert();
        bank.liquidate(1, [A0, A1], carol, sig);
        assertTrue(bank.state() == VirtualBank.State.Running, "still running");
    }

    function test_Liquidate_RevertingPeerDoesNotBlock() public {
        RevertingParty rp = new RevertingParty();
        VirtualBank b = _deploy(alice, address(rp), 1 ether, 1 ether, LOCK);
        vm.deal(alice, 1 ether);
        vm.prank(alice);
        b.deposit{value: 1 ether}();
        vm.deal(address(this), 1 ether);
        rp.call{value: 1 ether}(address(b), abi.encodeCall(VirtualBank.deposit, ()));
        // rp (a contract that refuses ETH) liquidates with a sheet alice signed: alice is paid at
        // once, rp's share is frozen, and its payout after the lock must not block the close.
        uint256 wk = _waiverKey(uint256(uint160(address(rp))), 0);
        bytes memory sig = _signSheet(ALICE_KEY, b, 0, 1 ether, 1 ether, vm.addr(wk));
        rp.call(address(b), abi.encodeCall(VirtualBank.liquidate, (0, [uint256(1 ether), 1 ether], vm.addr(wk), sig)));
        assertEq(alice.balance, 1 ether, "alice paid");
        vm.warp(block.timestamp + LOCK);
        vm.expectEmit(true, false, false, true, address(b));
        emit VirtualBank.PayoutDeferred(address(rp), 1 ether);
        b.withdrawByMaster();
        assertTrue(b.state() == VirtualBank.State.Closed, "closed although rp refuses ETH");
        assertEq(b.owed(address(rp)), 1 ether, "rp's share kept");
        assertEq(b.outstanding(), address(b).balance, "conservation");
    }

    function test_Cancel_GasBurningPartyDoesNotBlock() public {
        GasBurningParty gb = new GasBurningParty();
        VirtualBank d = _deploy(alice, address(gb), 1 ether, 1 ether, LOCK);
        vm.deal(address(gb), 1 ether);
        vm.prank(address(gb));
        d.deposit{value: 1 ether}();
        uint256 gasBefore = gasleft();
        vm.prank(alice);
        d.cancel();
        assertLe(gasBefore - gasleft(), 200_000, "bounded gas despite a burning recipient");
        assertTrue(d.state() == VirtualBank.State.Closed, "closed");
        assertEq(d.owed(address(gb)), 1 ether, "burner credited");
    }

    // ------------------------------------------------------------ withdrawByMaster

    function _liquidateAsAlice(uint256 nonce, uint256 b0, uint256 b1) internal returns (uint256 waiverKey) {
        waiverKey = _waiverKey(ALICE_KEY, nonce);
        address waiver = vm.addr(waiverKey);
        bytes memory sig = _signSheet(BOB_KEY, bank, nonce, b0, b1, waiver);
        vm.prank(alice);
        bank.liquidate(nonce, [b0, b1], waiver, sig);
    }

    function test_WithdrawByMaster_AfterLock() public {
        _liquidateAsAlice(3, 4 ether, 1 ether);
        vm.warp(block.timestamp + LOCK);
        vm.expectEmit(true, false, false, true, address(bank));
        emit VirtualBank.WithdrawnByMaster(alice, 4 ether);
        vm.prank(carol); // anyone may trigger it; the money goes to the master
        bank.withdrawByMaster();
        assertEq(alice.balance, 4 ether, "master paid");
        assertEq(bob.balance, 1 ether, "peer paid");
        assertTrue(bank.state() == VirtualBank.State.Closed, "closed");
        assertEq(address(bank).balance, 0, "empty");
    }

    function test_RevertWhen_WithdrawByMaster_LockNotExpired() public {
        _liquidateAsAlice(3, 4 ether, 1 ether);
        uint256 unlock = block.timestamp + LOCK;
        vm.warp(unlock - 1);
        vm.expectRevert(abi.encodeWithSelector(VirtualBank.VirtualBankLockNotExpired.selector, unlock, unlock - 1));
        bank.withdrawByMaster();
    }

    function test_RevertWhen_WithdrawByMaster_Running() public {
        vm.expectRevert(
            abi.encodeWithSelector(
                VirtualBank.VirtualBankWrongState.selector, VirtualBank.State.Liquidating, VirtualBank.State.Running
            )
        );
        bank.withdrawByMaster();
    }

    // ------------------------------------------------------------ withdrawByPeer

    function test_WithdrawByPeer_PunishesRevokedSheetBeforeExpiry() public {
        uint256 wk = _liquidateAsAlice(3, 4 ether, 1 ether);
        bytes memory wsig = _signWaiver(wk, bank, 3);
        vm.expectEmit(true, false, false, true, address(bank));
        emit VirtualBank.WithdrawnByPeer(bob, 3, 4 ether);
        vm.prank(carol); // a watchtower may submit it
        bank.withdrawByPeer(3, wsig);
        assertEq(bob.balance, 5 ether, "peer takes everything");
        assertEq(alice.balance, 0, "cheater gets nothing");
        assertTrue(bank.state() == VirtualBank.State.Closed, "closed");
    }

    function test_WithdrawByPeer_AfterExpiryWhileMasterHasNotWithdrawn() public {
        uint256 wk = _liquidateAsAlice(3, 4 ether, 1 ether);
        vm.warp(block.timestamp + 10 * LOCK);
        bank.withdrawByPeer(3, _signWaiver(wk, bank, 3));
        assertEq(bob.balance, 5 ether, "peer takes everything");
    }

    function test_RevertWhen_WithdrawByPeer_WrongNonce() public {
        uint256 wk = _liquidateAsAlice(3, 4 ether, 1 ether);
        bytes memory wsig = _signWaiver(wk, bank, 2);
        vm.expectRevert(abi.encodeWithSelector(VirtualBank.VirtualBankWrongNonce.selector, 3, 2));
        bank.withdrawByPeer(2, wsig);
    }

    function test_RevertWhen_WithdrawByPeer_WrongWaiverKey() public {
        _liquidateAsAlice(3, 4 ether, 1 ether);
        uint256 otherKey = _waiverKey(ALICE_KEY, 4);
        bytes memory wsig = _signWaiver(otherKey, bank, 3);
        vm.expectRevert(
            abi.encodeWithSelector(
                VirtualBank.VirtualBankWrongSigner.selector, vm.addr(_waiverKey(ALICE_KEY, 3)), vm.addr(otherKey)
            )
        );
        bank.withdrawByPeer(3, wsig);
    }

    function test_RevertWhen_WithdrawByPeer_WaiverOfOtherChannel() public {
        uint256 wk = _liquidateAsAlice(3, 4 ether, 1 ether);
        VirtualBank other = _open(alice, bob, A0, A1, LOCK);
        bytes memory wsig = _signWaiver(wk, other, 3);
        vm.expectRevert();
        bank.withdrawByPeer(3, wsig);
        assertTrue(bank.state() == VirtualBank.State.Liquidating, "still liquidating");
    }

    function test_RevertWhen_WithdrawByPeer_AfterMasterWithdrew() public {
        uint256 wk = _liquidateAsAlice(3, 4 ether, 1 ether);
        vm.warp(block.timestamp + LOCK);
        bank.withdrawByMaster();
        bytes memory wsig = _signWaiver(wk, bank, 3);
        vm.expectRevert(
            abi.encodeWithSelector(
                VirtualBank.VirtualBankWrongState.selector, VirtualBank.State.Liquidating, VirtualBank.State.Closed
            )
        );
        bank.withdrawByPeer(3, wsig);
    }

    // ------------------------------------------------------------ cooperativeClose

    function test_CooperativeClose_PaysBoth() public {
        bytes memory s0 = _signClose(ALICE_KEY, bank, 9, 1.5 ether, 3.5 ether);
        bytes memory s1 = _signClose(BOB_KEY, bank, 9, 1.5 ether, 3.5 ether);
        vm.expectEmit(false, false, false, true, address(bank));
        emit VirtualBank.CooperativelyClosed(9, 1.5 ether, 3.5 ether);
        vm.prank(carol);
        bank.cooperativeClose(9, [uint256(1.5 ether), 3.5 ether], s0, s1);
        assertEq(alice.balance, 1.5 ether, "alice");
        assertEq(bob.balance, 3.5 ether, "bob");
        assertTrue(bank.state() == VirtualBank.State.Closed, "closed");
    }

    function test_RevertWhen_CooperativeClose_SignaturesSwapped() public {
        bytes memory s0 = _signClose(ALICE_KEY, bank, 9, A0, A1);
        bytes memory s1 = _signClose(BOB_KEY, bank, 9, A0, A1);
        vm.expectRevert(abi.encodeWithSelector(VirtualBank.VirtualBankWrongSigner.selector, alice, bob));
        bank.cooperativeClose(9, [A0, A1], s1, s0);
    }

    function test_RevertWhen_CooperativeClose_OneSidedSheet() public {
        bytes memory s0 = _signClose(ALICE_KEY, bank, 9, A0 + A1, 0);
        vm.expectRevert(abi.encodeWithSelector(VirtualBank.VirtualBankWrongSigner.selector, bob, alice));
        bank.cooperativeClose(9, [A0 + A1, 0], s0, s0);
    }

    function test_RevertWhen_CooperativeClose_BalancesDoNotAddUp() public {
        bytes memory s0 = _signClose(ALICE_KEY, bank, 9, A0, A0);
        bytes memory s1 = _signClose(BOB_KEY, bank, 9, A0, A0);
        vm.expectRevert(abi.encodeWithSelector(VirtualBank.VirtualBankBalanceMismatch.selector, 2 * A0, A0 + A1));
        bank.cooperativeClose(9, [A0, A0], s0, s1);
    }

    function test_RevertWhen_CooperativeClose_SheetSignaturesReused() public {
        // BalanceSheet signatures over the same numbers are not Close signatures.
        bytes memory s0 = _signSheet(ALICE_KEY, bank, 9, A0, A1, carol);
        bytes memory s1 = _signSheet(BOB_KEY, bank, 9, A0, A1, carol);
        vm.expectRevert();
        bank.cooperativeClose(9, [A0, A1], s0, s1);
    }

    function test_RevertWhen_CooperativeClose_Replayed() public {
        bytes memory s0 = _signClose(ALICE_KEY, bank, 9, A0, A1);
        bytes memory s1 = _signClose(BOB_KEY, bank, 9, A0, A1);
        bank.cooperativeClose(9, [A0, A1], s0, s1);
        vm.expectRevert(
            abi.encodeWithSelector(
                VirtualBank.VirtualBankWrongState.selector, VirtualBank.State.Running, VirtualBank.State.Closed
            )
        );
        bank.cooperativeClose(9, [A0, A1], s0, s1);
    }

    function test_RevertWhen_CooperativeClose_DuringLiquidation() public {
        _liquidateAsAlice(3, 4 ether, 1 ether);
        bytes memory s0 = _signClose(ALICE_KEY, bank, 9, A0, A1);
        bytes memory s1 = _signClose(BOB_KEY, bank, 9, A0, A1);
        vm.expectRevert(
            abi.encodeWithSelector(
                VirtualBank.VirtualBankWrongState.selector, VirtualBank.State.Running, VirtualBank.State.Liquidating
            )
        );
        bank.cooperativeClose(9, [A0, A1], s0, s1);
    }

    // ------------------------------------------------------------ claim

    function test_RevertWhen_Claim_NothingOwed() public {
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(VirtualBank.VirtualBankNothingOwed.selector, alice));
        bank.claim(payable(alice));
    }

    function test_RevertWhen_Claim_ZeroRecipient() public {
        vm.prank(alice);
        vm.expectRevert(VirtualBank.VirtualBankZeroRecipient.selector);
        bank.claim(payable(address(0)));
    }

    function test_RevertWhen_Claim_RecipientRefuses() public {
        RevertingParty rp = new RevertingParty();
        VirtualBank c = _deploy(address(rp), bob, 1 ether, 2 ether, LOCK);
        vm.deal(address(this), 1 ether);
        rp.call{value: 1 ether}(address(c), abi.encodeCall(VirtualBank.deposit, ()));
        vm.prank(bob);
        c.cancel();
        vm.expectRevert(abi.encodeWithSelector(VirtualBank.VirtualBankTransferFailed.selector, address(rp), 1 ether));
        rp.call(address(c), abi.encodeCall(VirtualBank.claim, (payable(address(rp)))));
        assertEq(c.owed(address(rp)), 1 ether, "nothing lost");
    }

    // ------------------------------------------------------------ reentrancy

    function test_Reentrancy_NoProfit() public {
        Reentrant r = new Reentrant();
        VirtualBank c = _deploy(address(r), bob, 1 ether, 1 ether, LOCK);
        vm.deal(address(r), 1 ether);
        r.deposit(c);
        vm.prank(bob);
        c.cancel(); // pays r, which tries to re-enter cancel / claim / deposit
        assertEq(address(r).balance, 1 ether, "refund only");
        assertTrue(r.attempts() > 0, "re-entry was attempted");
        assertEq(r.successes(), 0, "no re-entry succeeded");
        assertEq(address(c).balance, 0, "empty");
    }

    // ------------------------------------------------------------ fuzz

    function testFuzz_Deposit_ExactAmountsOnly(uint256 a0, uint256 a1, uint256 wrong) public {
        a0 = bound(a0, 1, 1e30);
        a1 = bound(a1, 0, 1e30);
        VirtualBank b = _deploy(alice, bob, a0, a1, LOCK);
        vm.assume(wrong != a0);
        wrong = bound(wrong, 0, 2e30);
        vm.assume(wrong != a0);
        vm.deal(alice, a0 + wrong);
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(VirtualBank.VirtualBankWrongDeposit.selector, a0, wrong));
        b.deposit{value: wrong}();
        vm.prank(alice);
        b.deposit{value: a0}();
        assertTrue(
            b.state() == (a1 == 0 ? VirtualBank.State.Running : VirtualBank.State.Funding), "runs iff all deposits in"
        );
    }

    function testFuzz_Liquidate_Conserves(uint256 b0, uint64 nonce, uint64 lock, uint256 wait, bool byAlice) public {
        lock = uint64(bound(lock, 1, 365 days));
        VirtualBank b = _open(alice, bob, A0, A1, lock);
        b0 = bound(b0, 0, A0 + A1);
        address master = byAlice ? alice : bob;
        uint256 masterShare = _liquidateAs(b, byAlice, nonce, b0);
        assertEq((byAlice ? bob : alice).balance, A0 + A1 - masterShare, "peer paid its balance");
        uint256 start = block.timestamp;
        wait = bound(wait, 0, 2 * uint256(lock));
        vm.warp(start + wait);
        if (wait < lock) {
            vm.expectRevert(
                abi.encodeWithSelector(VirtualBank.VirtualBankLockNotExpired.selector, start + lock, start + wait)
            );
            b.withdrawByMaster();
        } else {
            b.withdrawByMaster();
            assertEq(master.balance, masterShare, "master paid its balance");
            assertEq(address(b).balance, 0, "nothing left");
        }
        assertEq(address(b).balance, b.outstanding(), "conservation");
    }

    /// @notice Over every accepted lock period and any timestamp up to 2^40 (year 36812): the unlock
    /// time is exactly now + lockPeriod, and the master cannot withdraw a second before it.
    function testFuzz_LockPeriod_UnlockTimeNeverEarly(uint256 lock, uint256 start, uint256 early) public {
        lock = bound(lock, 1, type(uint32).max);
        start = bound(start, 1, 1 << 40);
        vm.warp(start);
        VirtualBank b = _open(alice, bob, A0, A1, uint64(lock));
        uint256 masterShare = _liquidateAs(b, true, 5, 1 ether);
        uint256 unlockTime = b.liquidation().unlockTime;
        assertEq(unlockTime, start + lock, "unlock time");
        uint256 when = start + bound(early, 0, lock - 1);
        vm.warp(when);
        vm.expectRevert(abi.encodeWithSelector(VirtualBank.VirtualBankLockNotExpired.selector, unlockTime, when));
        b.withdrawByMaster();
        vm.warp(unlockTime);
        b.withdrawByMaster();
        assertEq(alice.balance, masterShare, "master paid after the lock");
    }

    /// @notice Every lock period above 2^32 - 1 is refused at construction.
    function testFuzz_RevertWhen_LockPeriodTooLarge(uint64 lock) public {
        lock = uint64(bound(lock, uint256(type(uint32).max) + 1, type(uint64).max));
        vm.expectRevert(
            abi.encodeWithSelector(VirtualBank.VirtualBankLockPeriodTooLarge.selector, lock, type(uint32).max)
        );
        _deploy(alice, bob, A0, A1, lock);
    }

    /// @dev Liquidates `b` at (nonce, b0, total - b0) as alice or bob; returns the master's share.
    function _liquidateAs(VirtualBank b, bool byAlice, uint64 nonce, uint256 b0) internal returns (uint256) {
        uint256 b1 = A0 + A1 - b0;
        address waiver = vm.addr(_waiverKey(byAlice ? ALICE_KEY : BOB_KEY, nonce));
        bytes memory sig = _signSheet(byAlice ? BOB_KEY : ALICE_KEY, b, nonce, b0, b1, waiver);
        vm.prank(byAlice ? alice : bob);
        b.liquidate(nonce, [b0, b1], waiver, sig);
        return byAlice ? b0 : b1;
    }

    function testFuzz_WithdrawByPeer_TakesAll(uint256 b0, uint64 nonce, uint256 wait) public {
        b0 = bound(b0, 0, A0 + A1);
        uint256 wk = _liquidateAsAlice(nonce, b0, A0 + A1 - b0);
        vm.warp(block.timestamp + bound(wait, 0, 3 * uint256(LOCK)));
        bank.withdrawByPeer(nonce, _signWaiver(wk, bank, nonce));
        assertEq(bob.balance, A0 + A1, "peer takes both balances");
        assertEq(alice.balance, 0, "cheater gets nothing");
        assertEq(address(bank).balance, 0, "nothing left");
    }

    function testFuzz_CooperativeClose(uint256 b0, uint256 nonce) public {
        b0 = bound(b0, 0, A0 + A1);
        uint256 b1 = A0 + A1 - b0;
        bank.cooperativeClose(
            nonce, [b0, b1], _signClose(ALICE_KEY, bank, nonce, b0, b1), _signClose(BOB_KEY, bank, nonce, b0, b1)
        );
        assertEq(alice.balance, b0, "alice");
        assertEq(bob.balance, b1, "bob");
    }

    function testFuzz_RevertWhen_ForeignSigner(uint256 key, uint256 nonce) public {
        key = bound(key, 1, SECP256K1_ORDER - 1);
        vm.assume(key != BOB_KEY);
        bytes memory sig = _signSheet(key, bank, nonce, A0, A1, carol);
        vm.assume(nonce <= type(uint64).max);
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(VirtualBank.VirtualBankWrongSigner.selector, bob, vm.addr(key)));
        bank.liquidate(nonce, [A0, A1], carol, sig);
    }

    function testFuzz_RevertWhen_HighS(uint256 nonce) public {
        nonce = bound(nonce, 0, type(uint64).max);
        bytes memory sig = _highS(_signSheet(BOB_KEY, bank, nonce, A0, A1, carol));
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(VirtualBank.VirtualBankInvalidSignature.selector, uint8(3)));
        bank.liquidate(nonce, [A0, A1], carol, sig);
    }
}

/// @notice A party that re-enters the bank when paid.
contract Reentrant {
    VirtualBank internal bank;
    uint256 public attempts;
    uint256 public successes;

    function deposit(VirtualBank b) external {
        bank = b;
        b.deposit{value: address(this).balance}();
    }

    receive() external payable {
        attempts++;
        (bool ok,) = address(bank).call(abi.encodeCall(VirtualBank.cancel, ()));
        if (ok) successes++;
        (ok,) = address(bank).call(abi.encodeCall(VirtualBank.claim, (payable(address(this)))));
        if (ok) successes++;
        (ok,) = address(bank).call(abi.encodeCall(VirtualBank.withdrawByMaster, ()));
        if (ok) successes++;
    }
}
