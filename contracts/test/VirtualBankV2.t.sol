// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {V2Fixture} from "./utils/V2Fixture.sol";
import {
    StandardToken,
    NoReturnToken,
    FeeOnTransferToken,
    BlacklistToken,
    FalseReturningToken,
    GasBurningToken,
    HookToken
} from "./utils/MockTokens.sol";
import {VirtualBankV2} from "../src/VirtualBankV2.sol";
import {VirtualBank} from "../src/VirtualBank.sol";

contract VirtualBankV2Test is V2Fixture {
    uint256 internal constant A0 = 3 ether;
    uint256 internal constant A1 = 2 ether;
    uint256 internal constant TOTAL = A0 + A1;

    VirtualBankV2 internal bank;

    function setUp() public {
        vm.warp(1_700_000_000);
        _setUpV2();
        bank = _fundedV2(alice, bob, A0, A1, LOCK, address(0));
    }

    function _locks2() internal view returns (VirtualBankV2.Lock[] memory locks) {
        locks = new VirtualBankV2.Lock[](2);
        locks[0] = _lock(1, 0.5 ether, uint64(block.timestamp + 1 hours), 1); // alice -> bob
        locks[1] = _lock(0, 0.25 ether, uint64(block.timestamp + 1 hours), 2); // bob -> alice
    }

    // ------------------------------------------------------------ deposits

    function test_Deposit_EmitsAndRuns() public {
        VirtualBankV2 b = _openV2(alice, bob, 1, 2, LOCK, address(0));
        vm.deal(alice, 1);
        vm.expectEmit(true, false, false, true, address(b));
        emit VirtualBankV2.Deposited(alice, 1, false);
        vm.prank(alice);
        b.deposit{value: 1}();
        vm.deal(bob, 2);
        vm.expectEmit(true, false, false, true, address(b));
        emit VirtualBankV2.Deposited(bob, 2, true);
        vm.prank(bob);
        b.deposit{value: 2}();
        assertTrue(b.state() == VirtualBankV2.State.Running, "running");
        assertEq(b.outstanding(), 3, "outstanding");
    }

    function test_RevertWhen_Deposit_WrongStateOrPartyOrAmount() public {
        VirtualBankV2 b = _openV2(alice, bob, 1, 0, LOCK, address(0));
        vm.deal(carol, 1);
        vm.prank(carol);
        vm.expectRevert(abi.encodeWithSelector(VirtualBankV2.VirtualBankNotParty.selector, carol));
        b.deposit{value: 1}();
        vm.deal(alice, 10);
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(VirtualBankV2.VirtualBankWrongDeposit.selector, 1, 2));
        b.deposit{value: 2}();
        vm.prank(bob);
        vm.expectRevert(abi.encodeWithSelector(VirtualBankV2.VirtualBankAlreadyDeposited.selector, bob));
        b.deposit();
        vm.prank(alice);
        b.deposit{value: 1}();
        vm.prank(alice);
        vm.expectRevert(
            abi.encodeWithSelector(VirtualBankV2.VirtualBankWrongState.selector, VirtualBankV2.State.Running)
        );
        b.deposit{value: 1}();
    }

    function test_Token_StandardLife() public {
        StandardToken t = new StandardToken();
        VirtualBankV2 b = _fundedV2(alice, bob, 3, 2, LOCK, address(t));
        assertEq(t.balanceOf(address(b)), 5, "held");
        b.cooperativeClose(1, [uint256(4), 1], _signClose(ALICE_KEY, b, 1, 4, 1), _signClose(BOB_KEY, b, 1, 4, 1));
        assertEq(t.balanceOf(alice), 4, "alice");
        assertEq(t.balanceOf(bob), 1, "bob");
    }

    function test_Token_NoReturnValue() public {
        NoReturnToken t = new NoReturnToken();
        VirtualBankV2 b = _fundedV2(alice, bob, 3, 2, LOCK, address(t));
        assertTrue(b.state() == VirtualBankV2.State.Running, "deposits with a USDT-style token");
        _liquidate(b, true, 1, 1, 4, _noLocks());
        assertEq(t.balanceOf(bob), 4, "peer paid");
        vm.warp(block.timestamp + LOCK);
        b.withdrawByMaster();
        assertEq(t.balanceOf(alice), 1, "master paid");
        assertEq(t.balanceOf(address(b)), 0, "empty");
    }

    function test_RevertWhen_Token_FeeOnTransfer() public {
        FeeOnTransferToken t = new FeeOnTransferToken();
        VirtualBankV2 b = _openV2(alice, bob, 1000, 2, LOCK, address(t));
        t.mint(alice, 1000);
        vm.prank(alice);
        t.approve(address(b), 1000);
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(VirtualBankV2.VirtualBankTokenAmountMismatch.selector, 1000, 990));
        b.deposit();
    }

    function test_RevertWhen_Token_EthSent() public {
        StandardToken t = new StandardToken();
        VirtualBankV2 b = _openV2(alice, bob, 1, 2, LOCK, address(t));
        vm.deal(alice, 1);
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(VirtualBankV2.VirtualBankWrongDeposit.selector, 0, 1));
        b.deposit{value: 1}();
    }

    function test_Token_BlacklistedRecipientDoesNotBlockTheOther() public {
        BlacklistToken t = new BlacklistToken();
        VirtualBankV2 b = _fundedV2(alice, bob, 3, 2, LOCK, address(t));
        t.setBlacklisted(bob, true);
        vm.expectEmit(true, false, false, true, address(b));
        emit VirtualBankV2.PayoutDeferred(bob, 1);
        b.cooperativeClose(1, [uint256(4), 1], _signClose(ALICE_KEY, b, 1, 4, 1), _signClose(BOB_KEY, b, 1, 4, 1));
        assertEq(t.balanceOf(alice), 4, "alice paid despite bob's blacklisting");
        assertEq(b.owed(bob), 1, "bob's payout credited");
        assertEq(b.outstanding(), 1, "outstanding = owed");
        // bob claims to another address of his
        vm.prank(bob);
        b.claim(carol);
        assertEq(t.balanceOf(carol), 1, "claimed");
        assertEq(b.owed(bob), 0, "nothing owed");
        assertEq(t.balanceOf(address(b)), 0, "empty");
    }

    function test_Token_FalseReturnAndGasBurnAreDeferred() public {
        FalseReturningToken f = new FalseReturningToken();
        VirtualBankV2 b = _fundedV2(alice, bob, 3, 2, LOCK, address(f));
        f.setRefused(alice, true);
        _liquidate(b, false, 1, 3, 2, _noLocks()); // bob liquidates; alice's push is refused
        assertEq(b.owed(alice), 3, "false return credited");
        vm.warp(block.timestamp + LOCK);
        b.withdrawByMaster();
        assertEq(f.balanceOf(bob), 2, "master paid its frozen balance, not alice's owed");

        GasBurningToken g = new GasBurningToken();
        VirtualBankV2 b2 = _fundedV2(alice, bob, 3, 2, LOCK, address(g));
        g.setBurnFor(bob, true);
        b2.cooperativeClose{gas: 1_000_000}(
            1, [uint256(4), 1], _signClose(ALICE_KEY, b2, 1, 4, 1), _signClose(BOB_KEY, b2, 1, 4, 1)
        );
        assertEq(g.balanceOf(alice), 4, "alice paid though the token burns gas for bob");
        assertEq(b2.owed(bob), 1, "bob credited");
    }

    function test_Token_ReentrantHookGainsNothing() public {
        HookToken t = new HookToken();
        HookParty hp = new HookParty();
        VirtualBankV2 b = _openV2(address(hp), bob, 3, 2, LOCK, address(t));
        t.mint(address(hp), 3);
        hp.approveAndDeposit(b, address(t), 3);
        assertTrue(hp.attempts() > 0, "the hook ran during the deposit");
        uint256 during = hp.attempts();
        // bob cancels: hp's refund runs its hook, which tries to re-enter (cancel, deposit, claim)
        vm.prank(bob);
        b.cancel();
        assertTrue(hp.attempts() > during, "the hook ran during the refund");
        assertEq(hp.successes(), 0, "no re-entry succeeded");
        assertEq(t.balanceOf(address(hp)), 3, "refunded exactly once");
        assertEq(t.balanceOf(address(b)), 0, "empty");
    }

    // ------------------------------------------------------------ cancel

    function test_Cancel_RefundsDepositsMade() public {
        VirtualBankV2 b = _openV2(alice, bob, 1, 2, LOCK, address(0));
        vm.deal(alice, 1);
        vm.prank(alice);
        b.deposit{value: 1}();
        vm.expectEmit(true, false, false, true, address(b));
        emit VirtualBankV2.Cancelled(bob);
        vm.prank(bob);
        b.cancel();
        assertEq(alice.balance, 1, "refunded");
        assertTrue(b.state() == VirtualBankV2.State.Closed, "closed");
        vm.prank(alice);
        vm.expectRevert(
            abi.encodeWithSelector(VirtualBankV2.VirtualBankWrongState.selector, VirtualBankV2.State.Closed)
        );
        b.cancel();
    }

    // ------------------------------------------------------------ liquidate without locks

    function test_Liquidate_PaysPeerAndFreezesMaster() public {
        uint256 wk = _waiverKey(ALICE_KEY, 3);
        address waiver = vm.addr(wk);
        bytes32 root = keccak256("");
        bytes memory sig = _signSheet(BOB_KEY, bank, 3, 4 ether, 1 ether, root, waiver);
        vm.expectEmit(true, false, false, true, address(bank));
        emit VirtualBankV2.Liquidated(alice, 3, 4 ether, 1 ether, root, waiver, block.timestamp + LOCK);
        vm.prank(alice);
        bank.liquidate(3, [uint256(4 ether), 1 ether], root, waiver, sig);
        assertEq(bob.balance, 1 ether, "peer paid");
        assertEq(bank.outstanding(), 4 ether, "frozen");
        VirtualBankV2.Liquidation memory l = bank.liquidation();
        assertEq(l.master, alice, "master");
        assertEq(l.nonce, 3, "nonce");
        assertEq(l.waiver, waiver, "waiver");
        assertEq(l.unlockTime, block.timestamp + LOCK, "unlock");
        assertEq(l.locked, 0, "no locks");
        vm.warp(block.timestamp + LOCK - 1);
        vm.expectRevert(
            abi.encodeWithSelector(
                VirtualBankV2.VirtualBankLockNotExpired.selector, block.timestamp + 1, block.timestamp
            )
        );
        bank.withdrawByMaster();
        vm.warp(block.timestamp + 1);
        vm.expectEmit(true, false, false, true, address(bank));
        emit VirtualBankV2.WithdrawnByMaster(alice, 4 ether);
        vm.prank(carol);
        bank.withdrawByMaster();
        assertEq(alice.balance, 4 ether, "master paid");
        assertTrue(bank.state() == VirtualBankV2.State.Closed, "closed");
    }

    function test_RevertWhen_Liquidate_BadSheets() public {
        address waiver = vm.addr(_waiverKey(ALICE_KEY, 3));
        bytes32 empty = keccak256("");
        bytes memory sig = _signSheet(BOB_KEY, bank, 3, 4 ether, 1 ether, empty, waiver);
        vm.startPrank(alice);
        vm.expectRevert(abi.encodeWithSelector(VirtualBankV2.VirtualBankBalanceMismatch.selector, TOTAL + 1, TOTAL));
        bank.liquidate(3, [uint256(4 ether), 1 ether + 1], empty, waiver, sig);
        vm.expectRevert(
            abi.encodeWithSelector(VirtualBankV2.VirtualBankBalanceMismatch.selector, type(uint256).max, TOTAL)
        );
        bank.liquidate(3, [type(uint256).max, 1], empty, waiver, sig);
        // locked amount without a root, and a root without a locked amount
        vm.expectRevert(abi.encodeWithSelector(VirtualBankV2.VirtualBankLocksRootMismatch.selector, empty, 1));
        bank.liquidate(3, [uint256(4 ether), 1 ether - 1], empty, waiver, sig);
        vm.expectRevert(abi.encodeWithSelector(VirtualBankV2.VirtualBankLocksRootMismatch.selector, bytes32(0), 0));
        bank.liquidate(3, [uint256(4 ether), 1 ether], bytes32(0), waiver, sig);
        vm.expectRevert(abi.encodeWithSelector(VirtualBankV2.VirtualBankNonceTooLarge.selector, uint256(1) << 48));
        bank.liquidate(uint256(1) << 48, [uint256(4 ether), 1 ether], empty, waiver, sig);
        vm.expectRevert(VirtualBankV2.VirtualBankZeroWaiver.selector);
        bank.liquidate(3, [uint256(4 ether), 1 ether], empty, address(0), sig);
        // tampered: another nonce
        vm.expectRevert();
        bank.liquidate(4, [uint256(4 ether), 1 ether], empty, waiver, sig);
        // self-signed
        bytes memory own = _signSheet(ALICE_KEY, bank, 3, 4 ether, 1 ether, empty, waiver);
        vm.expectRevert(abi.encodeWithSelector(VirtualBankV2.VirtualBankWrongSigner.selector, bob, alice));
        bank.liquidate(3, [uint256(4 ether), 1 ether], empty, waiver, own);
        // high s
        vm.expectRevert(abi.encodeWithSelector(VirtualBankV2.VirtualBankInvalidSignature.selector, uint8(3)));
        bank.liquidate(3, [uint256(4 ether), 1 ether], empty, waiver, _highS(sig));
        // 64-byte signature
        vm.expectRevert(abi.encodeWithSelector(VirtualBankV2.VirtualBankInvalidSignature.selector, uint8(2)));
        bank.liquidate(3, [uint256(4 ether), 1 ether], empty, waiver, _trim(sig));
        vm.stopPrank();
        vm.prank(carol);
        vm.expectRevert(abi.encodeWithSelector(VirtualBankV2.VirtualBankNotParty.selector, carol));
        bank.liquidate(3, [uint256(4 ether), 1 ether], empty, waiver, sig);
    }

    function _trim(bytes memory sig) internal pure returns (bytes memory out) {
        out = new bytes(64);
        for (uint256 i = 0; i < 64; i++) {
            out[i] = sig[i];
        }
    }

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

    // ------------------------------------------------------------ replay

    /// @dev Alice liquidates `bank` with (3, 4 ether, 1 ether, no locks, her waiver) and `sig`.
    function _liqAlice(bytes memory sig) internal {
        vm.prank(alice);
        bank.liquidate(3, [uint256(4 ether), 1 ether], keccak256(""), vm.addr(_waiverKey(ALICE_KEY, 3)), sig);
    }

    function _bobSheetSig(VirtualBankV2 b) internal view returns (bytes memory) {
        return _signSheet(BOB_KEY, b, 3, 4 ether, 1 ether, keccak256(""), vm.addr(_waiverKey(ALICE_KEY, 3)));
    }

    function test_RevertWhen_Replay_OtherChannelChainType() public {
        // another channel with the same parties and amounts
        bytes memory sigOther = _bobSheetSig(_fundedV2(alice, bob, A0, A1, LOCK, address(0)));
        vm.expectRevert();
        _liqAlice(sigOther);
        // another chain
        uint256 chain = block.chainid;
        vm.chainId(chain + 1);
        bytes memory sigChain = _bobSheetSig(bank);
        vm.chainId(chain);
        vm.expectRevert();
        _liqAlice(sigChain);
        // another type: a Close with the same numbers
        bytes memory close = _signClose(BOB_KEY, bank, 3, 4 ether, 1 ether);
        vm.expectRevert();
        _liqAlice(close);
        _liqAlice(_bobSheetSig(bank));
    }

    function _v1Domain() internal view returns (bytes32) {
        return
            keccak256(
                abi.encode(DOMAIN_TYPEHASH, keccak256("VirtualBank"), keccak256("1"), block.chainid, address(bank))
            );
    }

    function test_RevertWhen_Replay_Version1Signatures() public {
        // a v1 sheet (v1 domain and v1 type) for this address
        bytes32 v1Sheet = keccak256(
            abi.encode(
                keccak256("BalanceSheet(uint256 nonce,uint256 balance0,uint256 balance1,address waiver)"),
                3,
                4 ether,
                1 ether,
                vm.addr(_waiverKey(ALICE_KEY, 3))
            )
        );
        bytes memory sigV1 = _sign(BOB_KEY, keccak256(abi.encodePacked("\x19\x01", _v1Domain(), v1Sheet)));
        vm.expectRevert();
        _liqAlice(sigV1);
        // a v1 Close (same type string, version 1 domain) on a v2 channel
        bytes32 v1Close = keccak256(
            abi.encodePacked(
                "\x19\x01",
                _v1Domain(),
                keccak256(abi.encode(CLOSE_TYPEHASH, uint256(3), uint256(4 ether), uint256(1 ether)))
            )
        );
        bytes memory c0 = _sign(ALICE_KEY, v1Close);
        bytes memory c1 = _sign(BOB_KEY, v1Close);
        vm.expectRevert();
        bank.cooperativeClose(3, [uint256(4 ether), 1 ether], c0, c1);
        _liqAlice(_bobSheetSig(bank));
    }

    function test_RevertWhen_WaiverReplayedOnOtherChannel() public {
        VirtualBankV2 other = _fundedV2(alice, bob, A0, A1, LOCK, address(0));
        uint256 wk = _liquidate(bank, true, 3, 4 ether, 1 ether, _noLocks());
        _liquidate(other, true, 3, 4 ether, 1 ether, _noLocks());
        bytes memory wsig = _signWaiver(wk, other, 3);
        vm.expectRevert();
        bank.withdrawByPeer(3, wsig);
    }

    // ------------------------------------------------------------ punishment

    function test_WithdrawByPeer_TakesFrozenAndLocks() public {
        VirtualBankV2.Lock[] memory locks = _locks2();
        uint256 wk = _liquidate(bank, true, 3, 3 ether, 1.25 ether, locks); // 0.75 locked
        assertEq(bob.balance, 1.25 ether, "peer paid its balance");
        assertEq(bank.liquidation().locked, 0.75 ether, "locked");
        registry.reveal(_preimage(2)); // alice's incoming lock revealed: irrelevant once punished
        vm.expectRevert(abi.encodeWithSelector(VirtualBankV2.VirtualBankWrongNonce.selector, 3, 2));
        bank.withdrawByPeer(2, _signWaiver(wk, bank, 2));
        vm.expectRevert(); // a waiver by another key
        bank.withdrawByPeer(3, _signWaiver(_waiverKey(BOB_KEY, 3), bank, 3));
        vm.expectEmit(true, false, false, true, address(bank));
        emit VirtualBankV2.WithdrawnByPeer(bob, 3, 3.75 ether);
        vm.prank(carol); // a watchtower
        bank.withdrawByPeer(3, _signWaiver(wk, bank, 3));
        assertEq(bob.balance, TOTAL, "peer takes everything");
        assertEq(alice.balance, 0, "cheater gets nothing");
        assertEq(address(bank).balance, 0, "empty");
        vm.expectRevert(
            abi.encodeWithSelector(VirtualBankV2.VirtualBankWrongState.selector, VirtualBankV2.State.Closed)
        );
        bank.unlock(locks);
    }

    function test_WithdrawByPeer_PossibleUntilMasterWithdrew() public {
        VirtualBankV2.Lock[] memory locks = _locks2();
        uint256 wk = _liquidate(bank, true, 3, 3 ether, 1.25 ether, locks);
        vm.warp(block.timestamp + 2 * LOCK);
        bank.withdrawByMaster(); // Settling: locks pending
        assertTrue(bank.state() == VirtualBankV2.State.Settling, "settling");
        bytes memory wsig = _signWaiver(wk, bank, 3);
        vm.expectRevert(
            abi.encodeWithSelector(VirtualBankV2.VirtualBankWrongState.selector, VirtualBankV2.State.Settling)
        );
        bank.withdrawByPeer(3, wsig);
    }

    // ------------------------------------------------------------ locks

    function test_Unlock_EachOutcome() public {
        uint64 expiry = uint64(block.timestamp + 1 hours);
        VirtualBankV2.Lock[] memory locks = new VirtualBankV2.Lock[](4);
        locks[0] = _lock(1, 0.1 ether, expiry, 1); // revealed in time -> bob
        locks[1] = _lock(1, 0.2 ether, expiry, 2); // revealed late -> alice (sender)
        locks[2] = _lock(0, 0.3 ether, expiry, 3); // never revealed -> bob (sender)
        locks[3] = _lock(0, 0.4 ether, expiry, 4); // revealed in time -> alice
        registry.reveal(_preimage(1));
        _liquidate(bank, true, 5, 2 ether, 2 ether, locks); // 1 ether locked
        registry.reveal(_preimage(4));
        vm.warp(expiry); // revealed exactly at expiry counts
        registry.reveal(_preimage(4));
        vm.warp(expiry + 1);
        registry.reveal(_preimage(2)); // late
        vm.warp(block.timestamp + LOCK);
        vm.expectEmit(true, false, false, true, address(bank));
        emit VirtualBankV2.WithdrawnByMaster(alice, 2 ether);
        vm.expectEmit(false, false, false, true, address(bank));
        emit VirtualBankV2.Unlocked(0.2 ether + 0.4 ether, 0.1 ether + 0.3 ether);
        vm.prank(carol);
        bank.unlock(locks); // completes withdrawByMaster first
        assertEq(alice.balance, 2 ether + 0.6 ether, "alice: frozen + her locks");
        assertEq(bob.balance, 2 ether + 0.4 ether, "bob: balance + his locks");
        assertEq(address(bank).balance, 0, "empty");
        assertTrue(bank.state() == VirtualBankV2.State.Closed, "closed");
        assertEq(bank.liquidation().locked, 0, "locks cleared");
    }

    function test_RevertWhen_Unlock_Unresolved() public {
        uint64 expiry = uint64(block.timestamp + 3 days); // beyond the lock period
        VirtualBankV2.Lock[] memory locks = new VirtualBankV2.Lock[](3);
        locks[0] = _lock(1, 0.1 ether, uint64(block.timestamp + 1 hours), 1);
        locks[1] = _lock(1, 0.2 ether, expiry, 2);
        locks[2] = _lock(0, 0.3 ether, expiry, 3);
        _liquidate(bank, false, 5, 2 ether, 2.4 ether, locks);
        vm.warp(block.timestamp + LOCK);
        vm.expectRevert(abi.encodeWithSelector(VirtualBankV2.VirtualBankLockUnresolved.selector, 1));
        bank.unlock(locks);
        registry.reveal(_preimage(2));
        vm.expectRevert(abi.encodeWithSelector(VirtualBankV2.VirtualBankLockUnresolved.selector, 2));
        bank.unlock(locks);
        vm.warp(expiry + 1);
        bank.unlock(locks);
        // lock 0 expired unrevealed -> alice (sender); lock 1 revealed -> bob; lock 2 expired -> bob (sender)
        assertEq(alice.balance, 2 ether + 0.1 ether, "alice");
        assertEq(bob.balance, 2.4 ether + 0.2 ether + 0.3 ether, "bob");
    }

    function test_RevertWhen_Unlock_BeforeLockPeriod() public {
        VirtualBankV2.Lock[] memory locks = _locks2();
        _liquidate(bank, true, 3, 3 ether, 1.25 ether, locks);
        vm.warp(block.timestamp + 2 hours);
        vm.expectRevert(
            abi.encodeWithSelector(
                VirtualBankV2.VirtualBankLockNotExpired.selector, block.timestamp - 2 hours + LOCK, block.timestamp
            )
        );
        bank.unlock(locks);
        VirtualBankV2 running = _fundedV2(alice, bob, 1, 1, LOCK, address(0));
        vm.expectRevert(
            abi.encodeWithSelector(VirtualBankV2.VirtualBankWrongState.selector, VirtualBankV2.State.Running)
        );
        running.unlock(locks);
    }

    function test_RevertWhen_Unlock_WrongListOrderOrReceiver() public {
        VirtualBankV2.Lock[] memory locks = _locks2();
        bytes32 root = _root(locks);
        assertEq(bank.hashLocks(locks), root, "contract's root = independent root");
        _liquidate(bank, true, 3, 3 ether, 1.25 ether, locks);
        vm.warp(block.timestamp + LOCK + 1 hours);
        // same locks in another order
        VirtualBankV2.Lock[] memory swapped = new VirtualBankV2.Lock[](2);
        swapped[0] = locks[1];
        swapped[1] = locks[0];
        assertTrue(_root(swapped) != root, "order matters");
        vm.expectRevert(abi.encodeWithSelector(VirtualBankV2.VirtualBankWrongLocks.selector, root, _root(swapped)));
        bank.unlock(swapped);
        // a missing lock
        VirtualBankV2.Lock[] memory one = new VirtualBankV2.Lock[](1);
        one[0] = locks[0];
        vm.expectRevert(abi.encodeWithSelector(VirtualBankV2.VirtualBankWrongLocks.selector, root, _root(one)));
        bank.unlock(one);
        // a changed amount
        VirtualBankV2.Lock[] memory changed = _locks2();
        changed[0].amount += 1;
        vm.expectRevert(abi.encodeWithSelector(VirtualBankV2.VirtualBankWrongLocks.selector, root, _root(changed)));
        bank.unlock(changed);
        // a receiver other than 0 or 1
        changed = _locks2();
        changed[1].receiver = 2;
        vm.expectRevert(abi.encodeWithSelector(VirtualBankV2.VirtualBankLockBadReceiver.selector, 1));
        bank.unlock(changed);
        bank.unlock(locks);
    }

    function test_RevertWhen_Unlock_WrongSum() public {
        // Bob countersigned a sheet whose locks add up to more than total - balances: unlock refuses it.
        VirtualBankV2.Lock[] memory locks = _locks2(); // 0.75 ether
        _liquidate(bank, true, 3, 3 ether, 1.5 ether, locks); // only 0.5 locked
        vm.warp(block.timestamp + LOCK + 1 hours);
        vm.expectRevert(
            abi.encodeWithSelector(VirtualBankV2.VirtualBankLockSumMismatch.selector, 0.5 ether, 0.75 ether)
        );
        bank.unlock(locks);
    }

    function test_Unlock_256Locks() public {
        uint256 n = 256;
        VirtualBankV2.Lock[] memory locks = new VirtualBankV2.Lock[](n);
        uint64 expiry = uint64(block.timestamp + 1 hours);
        bytes32[] memory pres = new bytes32[](n / 2);
        uint256 k = 0;
        for (uint256 i = 0; i < n; i++) {
            locks[i] = _lock(uint8(i % 2), 0.001 ether, expiry, i);
            if (i % 4 < 2) pres[k++] = _preimage(i); // half revealed
        }
        registry.revealBatch(pres);
        _liquidate(bank, false, 9, 2 ether, 2.744 ether, locks); // 0.256 locked
        vm.warp(block.timestamp + LOCK);
        uint256 g = gasleft();
        bank.unlock(locks);
        g -= gasleft();
        assertLe(g, 2_000_000, "256 locks settle well within a block");
        // revealed (i%4 in {0,1}): to receiver i%2; unrevealed (i%4 in {2,3}): to sender 1 - i%2.
        // per 4 locks: alice gets i%4==0 (revealed, receiver 0) and i%4==3 (unrevealed, receiver 1 -> sender 0).
        assertEq(alice.balance, 2 ether + 128 * 0.001 ether, "alice");
        assertEq(bob.balance, 2.744 ether + 128 * 0.001 ether, "bob");
        assertEq(address(bank).balance, 0, "empty");
    }

    function test_Unlock_TokenChannelWithBlacklistedReceiver() public {
        BlacklistToken t = new BlacklistToken();
        VirtualBankV2 b = _fundedV2(alice, bob, 3, 2, LOCK, address(t));
        VirtualBankV2.Lock[] memory locks = new VirtualBankV2.Lock[](1);
        locks[0] = _lock(1, 1, uint64(block.timestamp + 1 hours), 1);
        registry.reveal(_preimage(1));
        _liquidate(b, true, 1, 2, 2, locks);
        t.setBlacklisted(bob, true);
        vm.warp(block.timestamp + LOCK);
        b.unlock(locks);
        assertEq(t.balanceOf(alice), 2, "alice paid");
        assertEq(b.owed(bob), 1, "bob's lock credited");
        t.setBlacklisted(bob, false);
        vm.prank(bob);
        b.claim(bob);
        assertEq(t.balanceOf(bob), 3, "bob claimed");
    }

    // ------------------------------------------------------------ cooperative close, claim

    function test_CooperativeClose() public {
        vm.expectEmit(false, false, false, true, address(bank));
        emit VirtualBankV2.CooperativelyClosed(9, 1 ether, 4 ether);
        bank.cooperativeClose(
            9,
            [uint256(1 ether), 4 ether],
            _signClose(ALICE_KEY, bank, 9, 1 ether, 4 ether),
            _signClose(BOB_KEY, bank, 9, 1 ether, 4 ether)
        );
        assertEq(alice.balance, 1 ether, "alice");
        assertEq(bob.balance, 4 ether, "bob");
    }

    function test_RevertWhen_CooperativeClose_Bad() public {
        bytes memory s0 = _signClose(ALICE_KEY, bank, 9, 1 ether, 4 ether);
        bytes memory s1 = _signClose(BOB_KEY, bank, 9, 1 ether, 4 ether);
        vm.expectRevert(abi.encodeWithSelector(VirtualBankV2.VirtualBankBalanceMismatch.selector, TOTAL - 1, TOTAL));
        bank.cooperativeClose(9, [uint256(1 ether), 4 ether - 1], s0, s1);
        vm.expectRevert(abi.encodeWithSelector(VirtualBankV2.VirtualBankWrongSigner.selector, alice, bob));
        bank.cooperativeClose(9, [uint256(1 ether), 4 ether], s1, s0);
    }

    function test_Claim_RevertingPartyAndErrors() public {
        RevertingParty rp = new RevertingParty();
        VirtualBankV2 b = _openV2(address(rp), bob, 1 ether, 1 ether, LOCK, address(0));
        vm.deal(address(rp), 1 ether);
        rp.call{value: 1 ether}(address(b), abi.encodeCall(VirtualBankV2.deposit, ()));
        vm.prank(bob);
        b.cancel();
        assertEq(b.owed(address(rp)), 1 ether, "credited");
        vm.prank(bob);
        vm.expectRevert(abi.encodeWithSelector(VirtualBankV2.VirtualBankNothingOwed.selector, bob));
        b.claim(bob);
        vm.expectRevert(VirtualBankV2.VirtualBankZeroRecipient.selector);
        rp.call(address(b), abi.encodeCall(VirtualBankV2.claim, (address(0))));
        vm.expectRevert(abi.encodeWithSelector(VirtualBankV2.VirtualBankTransferFailed.selector, address(rp), 1 ether));
        rp.call(address(b), abi.encodeCall(VirtualBankV2.claim, (address(rp))));
        rp.call(address(b), abi.encodeCall(VirtualBankV2.claim, (carol)));
        assertEq(carol.balance, 1 ether, "claimed elsewhere");
    }

    function test_Reentrancy_EthNoProfit() public {
        Reentrant2 r = new Reentrant2();
        VirtualBankV2 b = _openV2(address(r), bob, 1 ether, 1 ether, LOCK, address(0));
        vm.deal(address(r), 1 ether);
        r.deposit(b);
        vm.prank(bob);
        b.cancel();
        assertTrue(r.attempts() > 0, "re-entry attempted");
        assertEq(r.successes(), 0, "no re-entry succeeded");
        assertEq(address(r).balance, 1 ether, "refunded once");
    }

    // ------------------------------------------------------------ fuzz

    function testFuzz_LockPeriod_UnlockTimeNeverEarly(uint64 lock, uint256 start, uint256 early) public {
        lock = uint64(bound(lock, 1, type(uint32).max));
        start = bound(start, 1, 1 << 39);
        vm.warp(start);
        VirtualBankV2 b = _fundedV2(alice, bob, A0, A1, lock, address(0));
        _liquidate(b, false, 5, 1 ether, 4 ether, _noLocks());
        uint256 unlockTime = b.liquidation().unlockTime;
        assertEq(unlockTime, start + lock, "unlock time");
        uint256 when = start + bound(early, 0, lock - 1);
        vm.warp(when);
        vm.expectRevert(abi.encodeWithSelector(VirtualBankV2.VirtualBankLockNotExpired.selector, unlockTime, when));
        b.withdrawByMaster();
        vm.warp(unlockTime);
        b.withdrawByMaster();
        assertEq(bob.balance, 4 ether, "master paid after the lock");
    }

    /// @notice Unlock's accounting over random lock lists: every lock's amount goes exactly to the
    /// party its outcome names, and nothing else moves. The long run: FOUNDRY_PROFILE=long.
    function testFuzz_Unlock_Accounting(uint256 seed, uint8 count, uint256 wait) public {
        uint256 n = bound(count, 0, 24);
        VirtualBankV2.Lock[] memory locks = new VirtualBankV2.Lock[](n);
        uint256 locked;
        uint256[2] memory expected;
        uint256 t0 = block.timestamp;
        uint256 settleAt = t0 + LOCK + bound(wait, 0, 3 days);
        for (uint256 i = 0; i < n; i++) {
            uint256 r = uint256(keccak256(abi.encode(seed, i)));
            uint8 receiver = uint8(r & 1);
            uint256 amount = bound(r >> 8, 0, 0.1 ether);
            uint64 expiry = uint64(t0 + bound(r >> 80, 0, 4 days));
            locks[i] = _lock(receiver, amount, expiry, i);
            locked += amount;
            uint256 kind = (r >> 160) % 3; // 0 revealed in time, 1 revealed late, 2 never
            if (kind == 0) {
                registry.reveal(_preimage(i));
                expected[receiver] += amount;
            } else {
                expected[1 - receiver] += amount; // must have expired by settleAt
                if (kind == 1) {
                    // reveal after expiry (later in time); done below once time moved
                }
            }
            if (kind != 0 && expiry >= settleAt) {
                // not expired at settlement: make it revealed in time instead
                registry.reveal(_preimage(i));
                expected[1 - receiver] -= amount;
                expected[receiver] += amount;
            }
        }
        vm.assume(locked > 0 || n == 0);
        if (locked == 0) n = 0;
        VirtualBankV2.Lock[] memory used = n == 0 ? _noLocks() : locks;
        uint256 b0 = (TOTAL - locked) / 3;
        _liquidate(bank, true, 5, b0, TOTAL - locked - b0, used);
        vm.warp(settleAt);
        for (uint256 i = 0; i < n; i++) {
            uint256 r = uint256(keccak256(abi.encode(seed, i)));
            if ((r >> 160) % 3 == 1 && locks[i].expiry < settleAt) registry.reveal(_preimage(i)); // late
        }
        uint256 a = alice.balance;
        uint256 bb = bob.balance;
        bank.unlock(used);
        assertEq(alice.balance - a, b0 + expected[0], "alice: frozen + her locks");
        assertEq(bob.balance - bb, expected[1], "bob: his locks");
        assertEq(address(bank).balance, 0, "conservation: nothing left");
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

/// @notice A party that re-enters the channel when paid ETH.
contract Reentrant2 {
    VirtualBankV2 internal bank;
    uint256 public attempts;
    uint256 public successes;

    function deposit(VirtualBankV2 b) external {
        bank = b;
        b.deposit{value: address(this).balance}();
    }

    receive() external payable {
        attempts++;
        (bool ok,) = address(bank).call(abi.encodeCall(VirtualBankV2.cancel, ()));
        if (ok) successes++;
        (ok,) = address(bank).call(abi.encodeCall(VirtualBankV2.claim, (address(this))));
        if (ok) successes++;
        (ok,) = address(bank).call(abi.encodeCall(VirtualBankV2.withdrawByMaster, ()));
        if (ok) successes++;
    }
}

/// @notice A token-channel party whose token hook tries to re-enter the channel mid-transfer.
contract HookParty {
    VirtualBankV2 internal bank;
    uint256 public attempts;
    uint256 public successes;

    function approveAndDeposit(VirtualBankV2 b, address token, uint256 amount) external {
        bank = b;
        (bool ok,) = token.call(abi.encodeWithSignature("approve(address,uint256)", address(b), amount));
        require(ok, "approve");
        b.deposit();
    }

    function _reenter() internal {
        attempts++;
        (bool ok,) = address(bank).call(abi.encodeCall(VirtualBankV2.cancel, ()));
        if (ok) successes++;
        (ok,) = address(bank).call(abi.encodeCall(VirtualBankV2.deposit, ()));
        if (ok) successes++;
        (ok,) = address(bank).call(abi.encodeCall(VirtualBankV2.claim, (address(this))));
        if (ok) successes++;
    }

    function tokensSent(address, uint256) external {
        _reenter();
    }

    function tokensReceived(address, uint256) external {
        _reenter();
    }
}
