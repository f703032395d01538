// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {BankFixture} from "../utils/BankFixture.sol";
import {VirtualBank} from "../../src/VirtualBank.sol";

/// @notice Plays a whole channel at random for the invariant suite: party 0 (alice) is honest and
/// watches the chain; party 1 (bob) may liquidate with any sheet he ever held, revoked or not; an
/// outsider (carol) calls everything with junk. Off-chain payments move the latest sheet forward,
/// each party revoking its previous sheet by handing over that sheet's waiver key.
contract ChannelHandler is BankFixture {
    VirtualBank public bank;
    uint256 public immutable total;
    uint256 public immutable deposit0;
    uint256 public immutable deposit1;

    /// @dev sheets[n] = alice's balance at nonce n (bob's is total - it).
    uint256[] public sheets;
    uint256 public latest;

    // What happened, for the invariants.
    bool public cancelled;
    bool public punished;
    bool public bobCheated;
    uint256 public paidTo0;
    uint256 public paidTo1;
    uint256 public paidToOthers;
    uint256 public closedAt0;
    uint256 public closedAt1;
    uint256 public closedContractBalance;
    bool public wasClosed;
    uint256 public liquidatedNonce;
    bool public liquidatedByAlice;
    mapping(bytes32 => uint256) public calls;

    constructor(uint256 a0, uint256 a1) {
        _setUpKeys();
        deposit0 = a0;
        deposit1 = a1;
        total = a0 + a1;
        bank = _deploy(alice, bob, a0, a1, LOCK);
        sheets.push(a0);
    }

    modifier track(string memory name) {
        calls[keccak256(bytes(name))]++;
        uint256 b0 = alice.balance;
        uint256 b1 = bob.balance;
        uint256 bc = carol.balance;
        _;
        // deposits lower a balance; everything else can only raise it
        if (alice.balance > b0) paidTo0 += alice.balance - b0;
        if (bob.balance > b1) paidTo1 += bob.balance - b1;
        if (carol.balance > bc) paidToOthers += carol.balance - bc;
        if (!wasClosed && bank.state() == VirtualBank.State.Closed) {
            wasClosed = true;
            closedAt0 = paidTo0;
            closedAt1 = paidTo1;
            closedContractBalance = address(bank).balance;
        }
    }

    function depositAlice() external track("depositAlice") {
        if (bank.state() != VirtualBank.State.Funding || bank.deposited()[0]) return;
        vm.deal(alice, alice.balance + deposit0);
        vm.prank(alice);
        bank.deposit{value: deposit0}();
    }

    function depositBob() external track("depositBob") {
        if (bank.state() != VirtualBank.State.Funding || bank.deposited()[1]) return;
        vm.deal(bob, bob.balance + deposit1);
        vm.prank(bob);
        bank.deposit{value: deposit1}();
    }

    function cancel(bool byAlice) external track("cancel") {
        if (bank.state() != VirtualBank.State.Funding) return;
        vm.prank(byAlice ? alice : bob);
        bank.cancel();
        cancelled = true;
    }

    /// @notice An off-chain payment: a new sheet; both parties revoke the previous one.
    function pay(uint256 amount, bool toBob) external track("pay") {
        if (bank.state() != VirtualBank.State.Running) return;
        uint256 a = sheets[latest];
        amount = bound(amount, 0, toBob ? a : total - a);
        sheets.push(toBob ? a - amount : a + amount);
        latest++;
    }

    /// @notice Alice (honest) liquidates with the latest sheet Bob countersigned.
    function aliceLiquidates() external track("aliceLiquidates") {
        if (bank.state() != VirtualBank.State.Running) return;
        uint256 n = latest;
        address waiver = vm.addr(_waiverKey(ALICE_KEY, n));
        bytes memory sig = _signSheet(BOB_KEY, bank, n, sheets[n], total - sheets[n], waiver);
        vm.prank(alice);
        bank.liquidate(n, [sheets[n], total - sheets[n]], waiver, sig);
        liquidatedNonce = n;
        liquidatedByAlice = true;
    }

    /// @notice Bob liquidates with any sheet Alice ever countersigned, possibly a revoked one.
    function bobLiquidates(uint256 pick) external track("bobLiquidates") {
        if (bank.state() != VirtualBank.State.Running) return;
        uint256 n = bound(pick, 0, latest);
        address waiver = vm.addr(_waiverKey(BOB_KEY, n));
        bytes memory sig = _signSheet(ALICE_KEY, bank, n, sheets[n], total - sheets[n], waiver);
        vm.prank(bob);
        bank.liquidate(n, [sheets[n], total - sheets[n]], waiver, sig);
        liquidatedNonce = n;
        if (n < latest) {
            bobCheated = true;
            _alicePunishes();
        }
    }

    /// @notice Time passes. Alice watches: a stale liquidation is answered before the lock runs out.
    function warp(uint256 secs) external track("warp") {
        secs = bound(secs, 0, 2 * uint256(LOCK));
        vm.warp(block.timestamp + secs);
    }

    function withdrawByMaster() external track("withdrawByMaster") {
        if (bank.state() != VirtualBank.State.Liquidating) return;
        if (block.timestamp < bank.liquidation().unlockTime) return;
        bank.withdrawByMaster();
    }

    function cooperativeClose() external track("cooperativeClose") {
        if (bank.state() != VirtualBank.State.Running) return;
        uint256 n = latest;
        uint256 a = sheets[n];
        bank.cooperativeClose(
            n, [a, total - a], _signClose(ALICE_KEY, bank, n, a, total - a), _signClose(BOB_KEY, bank, n, a, total - a)
        );
    }

    /// @notice Bob tries to punish Alice's honest liquidation with a waiver for the wrong nonce:
    /// he only ever learned her keys for nonces below the latest.
    function bobTriesToPunishHonestAlice(uint256 pick) external track("bobTriesToPunish") {
        if (bank.state() != VirtualBank.State.Liquidating || !liquidatedByAlice || latest == 0) return;
        uint256 n = bound(pick, 0, latest - 1);
        vm.prank(bob);
        try bank.withdrawByPeer(n, _signWaiver(_waiverKey(ALICE_KEY, n), bank, n)) {
            revert("bob punished an honest liquidation");
        } catch {}
    }

    /// @notice Carol calls everything with whatever she has; it must all fail or pay nobody wrongly.
    function outsider(uint256 selector, uint256 nonce, uint256 b0, bytes32 junk) external payable track("outsider") {
        selector = bound(selector, 0, 5);
        vm.deal(carol, 1 ether);
        vm.startPrank(carol);
        bytes memory sig = abi.encodePacked(junk, junk, uint8(27));
        uint256[2] memory balances = [bound(b0, 0, total), total - bound(b0, 0, total)];
        if (selector == 0) {
            try bank.deposit{value: 1 ether}() {} catch {}
        } else if (selector == 1) {
            try bank.cancel() {} catch {}
        } else if (selector == 2) {
            try bank.liquidate(nonce, balances, carol, sig) {} catch {}
        } else if (selector == 3) {
            try bank.withdrawByPeer(nonce, sig) {} catch {}
        } else if (selector == 4) {
            try bank.cooperativeClose(nonce, balances, sig, sig) {} catch {}
        } else {
            try bank.claim(payable(carol)) {} catch {}
        }
        vm.stopPrank();
        vm.deal(carol, 0);
    }

    function _alicePunishes() internal {
        uint256 n = liquidatedNonce;
        bank.withdrawByPeer(n, _signWaiver(_waiverKey(BOB_KEY, n), bank, n));
        punished = true;
    }

    function latestBalance0() external view returns (uint256) {
        return sheets[latest];
    }

    function funded() external view returns (bool) {
        return !cancelled && bank.deposited()[0] && bank.deposited()[1];
    }
}
