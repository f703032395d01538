// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {V2Fixture, IMintable} from "../utils/V2Fixture.sol";
import {VirtualBankV2} from "../../src/VirtualBankV2.sol";
import {VirtualBankFactory} from "../../src/VirtualBankFactory.sol";
import {PreimageRegistry} from "../../src/PreimageRegistry.sol";

/// @notice Plays random lives of one v2 channel (ETH or an ERC-20) between honest, watching Alice
/// and Bob, who may liquidate with any sheet he ever had, including revoked ones. Sheets carry up
/// to three random locks; preimages are revealed in time, late or never; the lock period is chosen
/// by Bob (the constructor's argument).
contract V2ChannelHandler is V2Fixture {
    struct Sheet {
        uint256 b0;
        uint256 b1;
        VirtualBankV2.Lock[] locks;
    }

    VirtualBankV2 public bank;
    address public token;
    uint256 public total;
    uint64 public lockPeriod;
    mapping(uint256 => Sheet) internal sheets;
    uint256 public latest;

    bool public liquidated;
    uint256 public liquidatedNonce;
    bool public bobIsMaster;
    bool public cheated;
    bool public punished;
    bool public coopClosed;
    uint256 public calls;

    constructor(VirtualBankFactory factory_, address token_, uint256 a0, uint256 a1, uint64 lockPeriod_) {
        alice = vm.addr(ALICE_KEY);
        bob = vm.addr(BOB_KEY);
        factory = factory_;
        registry = factory_.registry();
        token = token_;
        total = a0 + a1;
        lockPeriod = lockPeriod_;
        bank = VirtualBankV2(factory.open([alice, bob], [a0, a1], lockPeriod_, token_, bytes32(0)));
        _pay(bank, alice, a0, token_);
        _pay(bank, bob, a1, token_);
        sheets[0].b0 = a0;
        sheets[0].b1 = a1;
    }

    function paidTo0() public view returns (uint256) {
        return _balanceOf(token, alice);
    }

    function paidTo1() public view returns (uint256) {
        return _balanceOf(token, bob);
    }

    function _state() internal view returns (VirtualBankV2.State) {
        return bank.state();
    }

    // ------------------------------------------------------------ actions

    /// @notice A new sheet (nonce + 1): new balances and up to three locks.
    function pay(uint256 seed) external {
        if (_state() != VirtualBankV2.State.Running) return;
        calls++;
        uint256 n = ++latest;
        Sheet storage s = sheets[n];
        uint256 left = total;
        uint256 count = seed % 4;
        for (uint256 i = 0; i < count; i++) {
            uint256 r = uint256(keccak256(abi.encode(seed, i)));
            uint256 amount = bound(r >> 8, 1, left / 4 + 1);
            if (amount > left) break;
            left -= amount;
            uint64 expiry = uint64(block.timestamp + bound(r >> 100, 0, 3 days));
            s.locks.push(VirtualBankV2.Lock(uint8(r & 1), amount, expiry, sha256(abi.encodePacked(_pre(n, i)))));
        }
        s.b0 = bound(seed >> 128, 0, left);
        s.b1 = left - s.b0;
    }

    function _pre(uint256 n, uint256 i) internal pure returns (bytes32) {
        return keccak256(abi.encode("pre", n, i));
    }

    function aliceLiquidates() external {
        if (_state() != VirtualBankV2.State.Running) return;
        calls++;
        _liq(true, latest);
    }

    /// @notice Bob liquidates with any sheet he had: a revoked one is a cheat.
    function bobLiquidates(uint256 pick) external {
        if (_state() != VirtualBankV2.State.Running) return;
        calls++;
        uint256 n = bound(pick, 0, latest);
        _liq(false, n);
        if (n < latest) {
            // Alice, watching, answers a revoked sheet within the lock period (here: at once).
            cheated = true;
            bank.withdrawByPeer(n, _signWaiver(_waiverKey(BOB_KEY, n), bank, n));
            punished = true;
        }
    }

    function _liq(bool byAlice, uint256 n) internal {
        Sheet storage s = sheets[n];
        VirtualBankV2.Lock[] memory locks = s.locks;
        _liquidate(bank, byAlice, n, s.b0, s.b1, locks);
        liquidated = true;
        liquidatedNonce = n;
        bobIsMaster = !byAlice;
    }

    /// @notice Time passes (up to two days a step; lock periods and lock expiries are of that order).
    function warp(uint256 secs) external {
        calls++;
        vm.warp(block.timestamp + bound(secs, 0, 2 days));
    }

    /// @notice Reveals one preimage of the liquidated (or latest) sheet's locks, whenever.
    function reveal(uint256 pick) external {
        uint256 n = liquidated ? liquidatedNonce : latest;
        uint256 len = sheets[n].locks.length;
        if (len == 0) return;
        calls++;
        registry.reveal(_pre(n, pick % len));
    }

    function withdrawByMaster() external {
        calls++;
        (bool ok,) = address(bank).call(abi.encodeCall(VirtualBankV2.withdrawByMaster, ()));
        ok;
    }

    function unlock() external {
        if (!liquidated) return;
        calls++;
        VirtualBankV2.Lock[] memory locks = sheets[liquidatedNonce].locks;
        (bool ok,) = address(bank).call(abi.encodeCall(VirtualBankV2.unlock, (locks)));
        ok;
    }

    function cooperativeClose() external {
        if (_state() != VirtualBankV2.State.Running || sheets[latest].locks.length != 0) return;
        calls++;
        Sheet storage s = sheets[latest];
        bank.cooperativeClose(
            latest,
            [s.b0, s.b1],
            _signClose(ALICE_KEY, bank, latest, s.b0, s.b1),
            _signClose(BOB_KEY, bank, latest, s.b0, s.b1)
        );
        coopClosed = true;
    }

    /// @notice What honest Alice is entitled to once the channel is Closed: her balance in the sheet
    /// that closed it plus the locks resolved to her (revealed in time if hers, else expired if she sent them).
    function aliceEntitlement() external view returns (uint256 amount) {
        uint256 n = coopClosed ? latest : liquidatedNonce;
        Sheet storage s = sheets[n];
        amount = s.b0;
        for (uint256 i = 0; i < s.locks.length; i++) {
            VirtualBankV2.Lock storage l = s.locks[i];
            uint256 revealed = registry.revealedAt(l.hash);
            bool toReceiver = revealed != 0 && revealed <= l.expiry;
            if ((toReceiver ? l.receiver : 1 - l.receiver) == 0) amount += l.amount;
        }
    }
}
