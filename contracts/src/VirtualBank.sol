// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";

/// @title VirtualBank: a trustless two-party clearing channel for native ETH
/// @notice One instance per channel. Both parties deposit, then pay each other off-chain with
/// signed, nonce-ordered balance sheets (RSMC). Either party can liquidate on-chain at any time
/// with the latest sheet the other party countersigned: the other party (the peer) is paid at once,
/// the liquidating party (the master) waits `lockPeriod` seconds, during which the peer can take
/// the master's whole frozen balance by showing the master's waiver signature for that sheet, which
/// proves the master had already revoked it. Both parties can also close together in one step.
/// @dev Payouts never let a recipient block the channel: a transfer that fails (for example a
/// contract whose `receive` reverts) is credited to the recipient and can be pulled with `claim`.
/// Requires EIP-1153 (transient storage, Cancun) for the reentrancy guard: the constructor probes
/// TSTORE/TLOAD, so the deployment fails on a chain without them instead of locking deposits later.
contract VirtualBank is EIP712, ReentrancyGuardTransient {
    /// @notice The life cycle of the channel.
    enum State {
        Funding,
        Running,
        Liquidating,
        Closed
    }

    /// @notice The liquidation in progress (all zero before one was started).
    struct Liquidation {
        address master;
        uint256 nonce;
        uint256[2] balances;
        address waiver;
        uint256 unlockTime;
    }

    /// @notice EIP-712 type hash of `BalanceSheet(uint256 nonce,uint256 balance0,uint256 balance1,address waiver)`.
    bytes32 public constant BALANCE_SHEET_TYPEHASH =
        keccak256("BalanceSheet(uint256 nonce,uint256 balance0,uint256 balance1,address waiver)");
    /// @notice EIP-712 type hash of `Waiver(uint256 nonce)`.
    bytes32 public constant WAIVER_TYPEHASH = keccak256("Waiver(uint256 nonce)");
    /// @notice EIP-712 type hash of `Close(uint256 nonce,uint256 balance0,uint256 balance1)`.
    bytes32 public constant CLOSE_TYPEHASH = keccak256("Close(uint256 nonce,uint256 balance0,uint256 balance1)");
    /// @notice Gas forwarded with a push payout; a recipient that needs more is paid through `claim`.
    uint256 public constant PAYOUT_GAS = 50_000;

    address private immutable PARTY0;
    address private immutable PARTY1;
    uint256 private immutable AMOUNT0;
    uint256 private immutable AMOUNT1;

    // Slot 0, packed; never zero because lockPeriod > 0, so every write to it costs 5,000 gas at most.
    /// @notice The channel's current state.
    State public state;
    bool private deposited0;
    bool private deposited1;
    uint8 private masterIndex;
    address private liquidationWaiver;
    /// @notice Seconds the master's balance stays frozen after `liquidate`.
    uint64 public lockPeriod;

    // Slot 1, packed: the liquidation in progress.
    uint64 private liquidationNonce;
    uint64 private liquidationUnlockTime;
    uint128 private frozenBalance;

    /// @notice The largest lock period accepted: 2^32 - 1 seconds (136 years).
    uint64 public constant MAX_LOCK_PERIOD = type(uint32).max;

    /// @notice Payouts that could not be pushed, per recipient; pulled with `claim`.
    mapping(address => uint256) public owed;
    /// @notice Sum of `owed` over all recipients.
    uint256 public totalOwed;

    /// @notice A party address is zero.
    error VirtualBankZeroParty();
    /// @notice Both parties are the same address.
    /// @param party the repeated address
    error VirtualBankSameParty(address party);
    /// @notice Both agreed deposits are zero.
    error VirtualBankZeroDeposits();
    /// @notice The lock period is zero.
    error VirtualBankZeroLockPeriod();
    /// @notice The lock period exceeds 2^32 - 1 seconds (a larger one could wrap the 64-bit unlock time).
    /// @param lockPeriod the lock period given
    /// @param max the largest accepted, 2^32 - 1
    error VirtualBankLockPeriodTooLarge(uint256 lockPeriod, uint256 max);
    /// @notice The deposits together exceed what the channel can account for (2^128 - 1 wei).
    /// @param total the sum of the agreed deposits
    error VirtualBankDepositsTooLarge(uint256 total);
    /// @notice The call is not allowed in the channel's current state.
    /// @param expected the state the call needs
    /// @param actual the channel's state
    error VirtualBankWrongState(State expected, State actual);
    /// @notice The caller is not one of the two parties.
    /// @param caller the caller
    error VirtualBankNotParty(address caller);
    /// @notice The party already paid its deposit (or its agreed deposit is zero).
    /// @param party the party
    error VirtualBankAlreadyDeposited(address party);
    /// @notice The value sent is not the party's agreed deposit.
    /// @param expected the agreed deposit
    /// @param sent the value sent
    error VirtualBankWrongDeposit(uint256 expected, uint256 sent);
    /// @notice The balances do not add up to the channel's total deposits.
    /// @param sum balance0 + balance1 (saturated at 2^256 - 1)
    /// @param total the total deposits
    error VirtualBankBalanceMismatch(uint256 sum, uint256 total);
    /// @notice The nonce does not fit the 64 bits the channel stores (the waiver chain allows 2^48 updates).
    /// @param nonce the nonce given
    error VirtualBankNonceTooLarge(uint256 nonce);
    /// @notice The sheet names the zero address as its waiver key.
    error VirtualBankZeroWaiver();
    /// @notice The signature is malformed: wrong length, high `s`, bad `v`, or it recovers to the zero address.
    /// @param reason 1 = no signer recovers, 2 = length is not 65 bytes, 3 = `s` is in the upper half order
    error VirtualBankInvalidSignature(uint8 reason);
    /// @notice The signature is valid but made by another key.
    /// @param expected the key that had to sign
    /// @param recovered the key that signed
    error VirtualBankWrongSigner(address expected, address recovered);
    /// @notice The master's balance is still frozen.
    /// @param unlockTime when it unfreezes
    /// @param currentTime the block's timestamp
    error VirtualBankLockNotExpired(uint256 unlockTime, uint256 currentTime);
    /// @notice The waiver is for another nonce than the liquidated sheet.
    /// @param liquidated the nonce of the liquidated sheet
    /// @param given the nonce of the waiver
    error VirtualBankWrongNonce(uint256 liquidated, uint256 given);
    /// @notice `claim` was asked to send to the zero address.
    error VirtualBankZeroRecipient();
    /// @notice The caller has nothing to claim.
    /// @param party the caller
    error VirtualBankNothingOwed(address party);
    /// @notice Sending a claimed amount failed.
    /// @param to the recipient
    /// @param amount the amount
    error VirtualBankTransferFailed(address to, uint256 amount);

    /// @notice A party paid its deposit.
    /// @param party the party
    /// @param amount the amount deposited
    /// @param running true if this was the last deposit missing: the channel is now Running (one
    /// event for both changes costs less gas than a second event)
    event Deposited(address indexed party, uint256 amount, bool running);
    /// @notice A party aborted the setup; the deposits made were refunded; the channel is Closed.
    /// @param by the party that cancelled
    event Cancelled(address indexed by);
    /// @notice A party liquidated with a countersigned sheet; the channel is Liquidating.
    /// @param master the liquidating party, whose balance is frozen
    /// @param nonce the sheet's nonce
    /// @param balance0 party 0's balance in the sheet
    /// @param balance1 party 1's balance in the sheet
    /// @param waiver the sheet's waiver address
    /// @param unlockTime when the master may withdraw
    event Liquidated(
        address indexed master, uint256 nonce, uint256 balance0, uint256 balance1, address waiver, uint256 unlockTime
    );
    /// @notice The master took its frozen balance after the lock; the channel is Closed.
    /// @param master the master
    /// @param amount the amount paid
    event WithdrawnByMaster(address indexed master, uint256 amount);
    /// @notice The peer proved the liquidated sheet was revoked and took the master's balance; Closed.
    /// @param peer the wronged party, who was paid
    /// @param nonce the revoked sheet's nonce
    /// @param amount the amount paid
    event WithdrawnByPeer(address indexed peer, uint256 nonce, uint256 amount);
    /// @notice Both parties closed together; the channel is Closed.
    /// @param nonce the nonce of the agreed close
    /// @param balance0 party 0's payout
    /// @param balance1 party 1's payout
    event CooperativelyClosed(uint256 nonce, uint256 balance0, uint256 balance1);
    /// @notice A push payout failed; the amount is credited to the recipient's `owed`.
    /// @param to the recipient
    /// @param amount the amount credited
    event PayoutDeferred(address indexed to, uint256 amount);
    /// @notice A party pulled what it was owed.
    /// @param party the party that was owed
    /// @param to where the amount was sent
    /// @param amount the amount
    event Claimed(address indexed party, address indexed to, uint256 amount);

    /// @notice Creates a channel between two parties.
    /// @param parties_ the two parties; party 0 and party 1 in every sheet
    /// @param amounts_ the deposit each party agrees to make; a zero amount counts as made
    /// @param lockPeriod_ seconds a liquidating party's balance stays frozen; 1 to 2^32 - 1
    constructor(address[2] memory parties_, uint256[2] memory amounts_, uint64 lockPeriod_) EIP712("VirtualBank", "1") {
        if (parties_[0] == address(0) || parties_[1] == address(0)) revert VirtualBankZeroParty();
        if (parties_[0] == parties_[1]) revert VirtualBankSameParty(parties_[0]);
        if (amounts_[0] == 0 && amounts_[1] == 0) revert VirtualBankZeroDeposits();
        if (amounts_[0] > type(uint128).max || amounts_[1] > type(uint128).max - amounts_[0]) {
            revert VirtualBankDepositsTooLarge(_saturatingAdd(amounts_[0], amounts_[1]));
        }
        if (lockPeriod_ == 0) revert VirtualBankZeroLockPeriod();
        if (lockPeriod_ > MAX_LOCK_PERIOD) revert VirtualBankLockPeriodTooLarge(lockPeriod_, MAX_LOCK_PERIOD);
        // EIP-1153 probe: on a chain without TSTORE/TLOAD these are invalid opcodes and the deployment
        // fails. Without it, deposits would succeed and every exit (guarded by the transient
        // reentrancy lock) would revert, locking the deposits for good.
        assembly ("memory-safe") {
            tstore(0, 1)
            if iszero(eq(tload(0), 1)) { revert(0, 0) }
            tstore(0, 0)
        }
        PARTY0 = parties_[0];
        PARTY1 = parties_[1];
        AMOUNT0 = amounts_[0];
        AMOUNT1 = amounts_[1];
        lockPeriod = lockPeriod_;
        deposited0 = amounts_[0] == 0;
        deposited1 = amounts_[1] == 0;
    }

    // ---------------------------------------------------------------- funding

    /// @notice Pays the caller's agreed deposit; the channel runs once both are in.
    function deposit() external payable {
        _requireState(State.Funding);
        uint256 i = _partyIndex(msg.sender);
        if (i == 0 ? deposited0 : deposited1) revert VirtualBankAlreadyDeposited(msg.sender);
        uint256 expected = i == 0 ? AMOUNT0 : AMOUNT1;
        if (msg.value != expected) revert VirtualBankWrongDeposit(expected, msg.value);
        if (i == 0) deposited0 = true;
        else deposited1 = true;
        bool running = deposited0 && deposited1;
        if (running) state = State.Running;
        emit Deposited(msg.sender, msg.value, running);
    }

    /// @notice Aborts the setup: every deposit made is refunded and the channel is Closed.
    function cancel() external nonReentrant {
        _requireState(State.Funding);
        _partyIndex(msg.sender);
        state = State.Closed;
        emit Cancelled(msg.sender);
        if (deposited0) _pay(PARTY0, AMOUNT0);
        if (deposited1) _pay(PARTY1, AMOUNT1);
    }

    // ---------------------------------------------------------------- unilateral close

    /// @notice Closes unilaterally with the latest sheet the other party countersigned. The other
    /// party is paid its balance at once; the caller's balance is frozen for `lockPeriod` seconds.
    /// @param nonce the sheet's nonce
    /// @param balances the sheet's balances of party 0 and party 1; they must add up to the deposits
    /// @param waiver the sheet's waiver address, whose key the caller reveals when it revokes the sheet
    /// @param peerSignature the other party's EIP-712 signature over the BalanceSheet
    function liquidate(uint256 nonce, uint256[2] calldata balances, address waiver, bytes calldata peerSignature)
        external
        nonReentrant
    {
        _requireState(State.Running);
        uint256 master = _partyIndex(msg.sender);
        if (nonce > type(uint64).max) revert VirtualBankNonceTooLarge(nonce);
        if (waiver == address(0)) revert VirtualBankZeroWaiver();
        _requireTotal(balances);
        address peer = master == 0 ? PARTY1 : PARTY0;
        _requireSigner(
            keccak256(abi.encode(BALANCE_SHEET_TYPEHASH, nonce, balances[0], balances[1], waiver)), peerSignature, peer
        );

        uint256 unlockTime = block.timestamp + lockPeriod;
        state = State.Liquidating;
        masterIndex = SafeCast.toUint8(master);
        liquidationWaiver = waiver;
        // Checked narrowing: nonce is checked above; lockPeriod < 2^32, so unlockTime fits 64 bits
        // for any timestamp below 2^63; the balances sum to the deposits, at most 2^128 - 1.
        liquidationNonce = SafeCast.toUint64(nonce);
        liquidationUnlockTime = SafeCast.toUint64(unlockTime);
        frozenBalance = SafeCast.toUint128(balances[master]);
        emit Liquidated(msg.sender, nonce, balances[0], balances[1], waiver, unlockTime);
        _pay(peer, balances[1 - master]);
    }

    /// @notice Pays the master its frozen balance once the lock period is over. Anyone may call;
    /// the money always goes to the master.
    function withdrawByMaster() external nonReentrant {
        _requireState(State.Liquidating);
        uint256 unlockTime = liquidationUnlockTime;
        // A validator can shift timestamps by seconds; lock periods are hours or days.
        // slither-disable-next-line timestamp
        if (block.timestamp < unlockTime) revert VirtualBankLockNotExpired(unlockTime, block.timestamp);
        address master = masterIndex == 0 ? PARTY0 : PARTY1;
        uint256 amount = frozenBalance;
        state = State.Closed;
        frozenBalance = 0;
        emit WithdrawnByMaster(master, amount);
        _pay(master, amount);
    }

    /// @notice Punishes a liquidation with a revoked sheet: given the master's waiver signature for
    /// the liquidated nonce, pays the master's whole frozen balance to the peer. Anyone may call
    /// (a watchtower, for instance); the money always goes to the peer.
    /// @param nonce the liquidated sheet's nonce
    /// @param waiverSignature the signature over `Waiver(nonce)` by the sheet's waiver key
    function withdrawByPeer(uint256 nonce, bytes calldata waiverSignature) external nonReentrant {
        _requireState(State.Liquidating);
        uint256 liquidated = liquidationNonce;
        if (nonce != liquidated) revert VirtualBankWrongNonce(liquidated, nonce);
        _requireSigner(keccak256(abi.encode(WAIVER_TYPEHASH, nonce)), waiverSignature, liquidationWaiver);
        address peer = masterIndex == 0 ? PARTY1 : PARTY0;
        uint256 amount = frozenBalance;
        state = State.Closed;
        frozenBalance = 0;
        emit WithdrawnByPeer(peer, nonce, amount);
        _pay(peer, amount);
    }

    // ---------------------------------------------------------------- cooperative close

    /// @notice Closes the channel at once with balances both parties signed. Anyone may submit.
    /// @param nonce the nonce of the agreed close
    /// @param balances the payouts of party 0 and party 1; they must add up to the deposits
    /// @param signature0 party 0's EIP-712 signature over the Close
    /// @param signature1 party 1's EIP-712 signature over the Close
    function cooperativeClose(
        uint256 nonce,
        uint256[2] calldata balances,
        bytes calldata signature0,
        bytes calldata signature1
    ) external nonReentrant {
        _requireState(State.Running);
        _requireTotal(balances);
        bytes32 structHash = keccak256(abi.encode(CLOSE_TYPEHASH, nonce, balances[0], balances[1]));
        _requireSigner(structHash, signature0, PARTY0);
        _requireSigner(structHash, signature1, PARTY1);
        state = State.Closed;
        emit CooperativelyClosed(nonce, balances[0], balances[1]);
        _pay(PARTY0, balances[0]);
        _pay(PARTY1, balances[1]);
    }

    // ---------------------------------------------------------------- pull fallback

    /// @notice Sends what the caller is owed (payouts that could not be pushed) to `to`.
    /// @param to where to send it; a party whose own address cannot receive ETH names another
    function claim(address payable to) external nonReentrant {
        if (to == address(0)) revert VirtualBankZeroRecipient();
        uint256 amount = owed[msg.sender];
        if (amount == 0) revert VirtualBankNothingOwed(msg.sender);
        owed[msg.sender] = 0;
        totalOwed -= amount;
        emit Claimed(msg.sender, to, amount);
        (bool ok,) = to.call{value: amount}("");
        if (!ok) revert VirtualBankTransferFailed(to, amount);
    }

    // ---------------------------------------------------------------- views

    /// @notice The two parties, party 0 first.
    /// @return the parties
    function parties() external view returns (address[2] memory) {
        return [PARTY0, PARTY1];
    }

    /// @notice The agreed deposits of party 0 and party 1.
    /// @return the amounts
    function amounts() external view returns (uint256[2] memory) {
        return [AMOUNT0, AMOUNT1];
    }

    /// @notice The sum of the agreed deposits: what every sheet's balances must add up to.
    /// @return the total
    function totalDeposits() public view returns (uint256) {
        return AMOUNT0 + AMOUNT1;
    }

    /// @notice Whether each party's deposit is in (a zero agreed deposit counts as in).
    /// @return the flags of party 0 and party 1
    function deposited() external view returns (bool[2] memory) {
        return [deposited0, deposited1];
    }

    /// @notice The liquidation in progress or done; all zero if none was started.
    /// @return l the master, nonce, balances, waiver and unlock time
    function liquidation() external view returns (Liquidation memory l) {
        if (state < State.Liquidating || liquidationWaiver == address(0)) return l;
        uint256 m = masterIndex;
        l.master = m == 0 ? PARTY0 : PARTY1;
        l.nonce = liquidationNonce;
        l.waiver = liquidationWaiver;
        l.unlockTime = liquidationUnlockTime;
        uint256 masterBalance = frozenBalance;
        if (state == State.Liquidating) {
            l.balances[m] = masterBalance;
            l.balances[1 - m] = totalDeposits() - masterBalance;
        }
    }

    /// @notice What the contract still owes to the parties: deposits held, frozen balances and
    /// deferred payouts. Always equal to the contract's ETH balance.
    /// @return the amount
    function outstanding() external view returns (uint256) {
        uint256 held = 0;
        State s = state;
        if (s == State.Funding) {
            held = (deposited0 ? AMOUNT0 : 0) + (deposited1 ? AMOUNT1 : 0);
        } else if (s == State.Running) {
            held = AMOUNT0 + AMOUNT1;
        } else if (s == State.Liquidating) {
            held = frozenBalance;
        }
        return held + totalOwed;
    }

    /// @notice The EIP-712 domain separator (name "VirtualBank", version "1", this chain, this contract).
    /// @return the separator
    // forge-lint: disable-next-line(mixed-case-function)
    function domainSeparator() external view returns (bytes32) {
        return _domainSeparatorV4();
    }

    // ---------------------------------------------------------------- internals

    function _requireState(State expected) private view {
        State actual = state;
        if (actual != expected) revert VirtualBankWrongState(expected, actual);
    }

    function _partyIndex(address who) private view returns (uint256) {
        if (who == PARTY0) return 0;
        if (who == PARTY1) return 1;
        revert VirtualBankNotParty(who);
    }

    function _requireTotal(uint256[2] calldata balances) private view {
        uint256 total = AMOUNT0 + AMOUNT1;
        uint256 sum = _saturatingAdd(balances[0], balances[1]);
        if (sum != total) revert VirtualBankBalanceMismatch(sum, total);
    }

    function _requireSigner(bytes32 structHash, bytes calldata signature, address expected) private view {
        // The third value (the error's argument) is not needed: the error kind is reported.
        // slither-disable-next-line unused-return
        (address recovered, ECDSA.RecoverError err,) = ECDSA.tryRecoverCalldata(_hashTypedDataV4(structHash), signature);
        if (err != ECDSA.RecoverError.NoError) revert VirtualBankInvalidSignature(uint8(err));
        if (recovered != expected) revert VirtualBankWrongSigner(expected, recovered);
    }

    /// @dev Pushes `amount` to `to` with bounded gas and no return data copied; on failure credits
    /// it to `owed[to]` so that no recipient can block the channel.
    function _pay(address to, uint256 amount) private {
        if (amount == 0) return;
        bool ok;
        assembly ("memory-safe") {
            ok := call(PAYOUT_GAS, to, amount, 0, 0, 0, 0)
        }
        if (!ok) {
            owed[to] += amount;
            totalOwed += amount;
            emit PayoutDeferred(to, amount);
        }
    }

    function _saturatingAdd(uint256 a, uint256 b) private pure returns (uint256) {
        unchecked {
            uint256 c = a + b;
            return c < a ? type(uint256).max : c;
        }
    }
}
