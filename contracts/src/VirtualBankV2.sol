// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {MessageHashUtils} from "@openzeppelin/contracts/utils/cryptography/MessageHashUtils.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {PreimageRegistry} from "./PreimageRegistry.sol";

/// @title VirtualBank v2: a two-party clearing channel for ETH or one ERC-20 token, with locks
/// @notice The implementation behind every channel clone made by `VirtualBankFactory` (EIP-1167
/// with the channel's parameters appended as immutable arguments). It keeps v1's functions and
/// meaning: both parties deposit, pay each other off-chain with signed, nonce-ordered balance
/// sheets, and either can liquidate with the latest sheet the other countersigned: the peer is paid
/// at once, the master waits `lockPeriod` seconds during which the peer takes the master's whole
/// frozen balance and locks by showing the master's waiver signature for that sheet. A sheet may
/// hold hash-time locks (at most 256); the contract keeps only their EIP-712 root until `unlock`,
/// which pays each lock to its receiver if the preimage was revealed on the shared
/// `PreimageRegistry` by the lock's expiry, else to its sender once the expiry passed.
/// @dev Payouts never let a recipient or a token block the other party: a refused push (a contract
/// that reverts, a token blacklist) is credited to `owed` and pulled with `claim`. Needs EIP-1153
/// (transient reentrancy guard): the constructor probes TSTORE/TLOAD, so the implementation, and
/// with it the factory, cannot be deployed on a chain without it. Rebasing tokens are not supported.
contract VirtualBankV2 is ReentrancyGuardTransient {
    /// @notice The life cycle of the channel.
    enum State {
        Funding,
        Running,
        Liquidating,
        Settling, // the master withdrew; locks are waiting for `unlock`
        Closed
    }

    /// @notice A hash-time lock of a balance sheet: `amount` goes to party `receiver` if the
    /// preimage of `hash` (sha256 of 32 bytes) was revealed by `expiry`, else back to the other party.
    struct Lock {
        uint8 receiver;
        uint256 amount;
        uint64 expiry;
        bytes32 hash;
    }

    /// @notice The liquidation in progress or done (all zero before one was started).
    struct Liquidation {
        address master;
        uint256 nonce;
        address waiver;
        uint256 unlockTime;
        uint256 locked;
        bytes32 locksRoot;
    }

    /// @notice EIP-712 type hash of the BalanceSheet with its locks.
    bytes32 public constant BALANCE_SHEET_TYPEHASH = keccak256(
        "BalanceSheet(uint256 nonce,uint256 balance0,uint256 balance1,Lock[] locks,address waiver)Lock(uint8 receiver,uint256 amount,uint64 expiry,bytes32 hash)"
    );
    /// @notice EIP-712 type hash of `Lock(uint8 receiver,uint256 amount,uint64 expiry,bytes32 hash)`.
    bytes32 public constant LOCK_TYPEHASH = keccak256("Lock(uint8 receiver,uint256 amount,uint64 expiry,bytes32 hash)");
    /// @notice EIP-712 type hash of `Waiver(uint256 nonce)`.
    bytes32 public constant WAIVER_TYPEHASH = keccak256("Waiver(uint256 nonce)");
    /// @notice EIP-712 type hash of `Close(uint256 nonce,uint256 balance0,uint256 balance1)`.
    bytes32 public constant CLOSE_TYPEHASH = keccak256("Close(uint256 nonce,uint256 balance0,uint256 balance1)");
    /// @notice The locks root of a sheet without locks: `keccak256("")`.
    bytes32 public constant EMPTY_LOCKS_ROOT = keccak256("");
    /// @notice Gas forwarded with an ETH push payout; a recipient that needs more is paid through `claim`.
    uint256 public constant PAYOUT_GAS = 50_000;
    /// @notice Gas forwarded with a token push payout; a transfer that needs more is paid through `claim`.
    uint256 public constant TOKEN_PAYOUT_GAS = 100_000;
    /// @notice The largest nonce `liquidate` accepts (the waiver chain allows 2^48 updates).
    uint256 public constant MAX_NONCE = type(uint48).max;

    bytes32 private constant DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");
    bytes32 private constant NAME_HASH = keccak256("VirtualBank");
    bytes32 private constant VERSION_HASH = keccak256("2");

    // Clone layout: 0x2d bytes of EIP-1167 proxy, then party0 (20) ‖ party1 (20) ‖ amount0 (16) ‖
    // amount1 (16) ‖ lockPeriod (4) ‖ token (20, absent for ETH).
    uint256 private constant ARGS_OFFSET = 0x2d;
    uint256 private constant ETH_CHANNEL_SIZE = 0x2d + 76;
    uint256 private constant TOKEN_CHANNEL_SIZE = 0x2d + 96;

    // Slot 0, `_s`: bits 0-2 state, 3 deposited0, 4 deposited1, 5 master index, 6 has locks,
    // 7 some payout was deferred, 8-47 unlock time, 48-95 liquidated nonce, 96-255 waiver.
    uint256 private constant STATE_MASK = 0x7;
    uint256 private constant DEPOSITED0 = 1 << 3;
    uint256 private constant DEPOSITED1 = 1 << 4;
    uint256 private constant MASTER1 = 1 << 5;
    uint256 private constant HAS_LOCKS = 1 << 6;
    uint256 private constant DEFERRED = 1 << 7;

    /// @notice The factory whose clones this implementation serves (only it may call `depositByFactory`).
    address public immutable factory;
    /// @notice The chain's shared preimage registry.
    PreimageRegistry public immutable registry;

    uint256 private _s;
    /// @dev The locked amount of the liquidated sheet; written only when it is non-zero.
    uint256 private _locked;
    /// @dev The locks root of the liquidated sheet; written only when it has locks.
    bytes32 private _locksRoot;
    /// @notice Payouts that could not be pushed, per recipient; pulled with `claim`.
    mapping(address => uint256) public owed;
    /// @notice Sum of `owed` over all recipients.
    uint256 public totalOwed;

    /// @notice The call was made to the implementation, or to a clone without the channel layout.
    error VirtualBankNotAChannel();
    /// @notice Only the factory may call this.
    /// @param caller the caller
    error VirtualBankNotFactory(address caller);
    /// @notice The call is not allowed in the channel's current state.
    /// @param actual the channel's state
    error VirtualBankWrongState(State actual);
    /// @notice The caller is not one of the two parties.
    /// @param caller the caller
    error VirtualBankNotParty(address caller);
    /// @notice The party already paid its deposit (or its agreed deposit is zero).
    /// @param party the party
    error VirtualBankAlreadyDeposited(address party);
    /// @notice The ETH value sent is not the party's agreed deposit (for a token channel: not zero).
    /// @param expected the value expected
    /// @param sent the value sent
    error VirtualBankWrongDeposit(uint256 expected, uint256 sent);
    /// @notice The token delivered another amount than the one transferred (fee-on-transfer).
    /// @param expected the agreed deposit
    /// @param received what the channel's balance grew by
    error VirtualBankTokenAmountMismatch(uint256 expected, uint256 received);
    /// @notice The balances exceed the channel's total deposits (a sheet's balances and locks add up
    /// to the total; a Close's balances add up to it exactly).
    /// @param sum balance0 + balance1 (saturated at 2^256 - 1)
    /// @param total the total deposits
    error VirtualBankBalanceMismatch(uint256 sum, uint256 total);
    /// @notice The locks root and the locked amount disagree: the root is the empty list's exactly
    /// when nothing is locked.
    /// @param locksRoot the root given
    /// @param locked total - balance0 - balance1
    error VirtualBankLocksRootMismatch(bytes32 locksRoot, uint256 locked);
    /// @notice The nonce exceeds 2^48 - 1, the most the channel stores.
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
    /// @notice The locks given do not hash to the liquidated sheet's locks root.
    /// @param expected the stored root
    /// @param actual the root of the locks given
    error VirtualBankWrongLocks(bytes32 expected, bytes32 actual);
    /// @notice A lock names a receiver other than party 0 or 1.
    /// @param index the lock's index
    error VirtualBankLockBadReceiver(uint256 index);
    /// @notice The locks' amounts do not add up to the locked amount.
    /// @param locked the locked amount
    /// @param sum the sum of the locks' amounts (saturated)
    error VirtualBankLockSumMismatch(uint256 locked, uint256 sum);
    /// @notice A lock is neither revealed by its expiry nor expired yet.
    /// @param index the first such lock's index
    error VirtualBankLockUnresolved(uint256 index);
    /// @notice `claim` was asked to send to the zero address.
    error VirtualBankZeroRecipient();
    /// @notice The caller has nothing to claim.
    /// @param party the caller
    error VirtualBankNothingOwed(address party);
    /// @notice Sending a claimed ETH amount failed.
    /// @param to the recipient
    /// @param amount the amount
    error VirtualBankTransferFailed(address to, uint256 amount);

    /// @notice A party paid its deposit.
    /// @param party the party
    /// @param amount the amount deposited
    /// @param running true if this was the last deposit missing: the channel is now Running
    event Deposited(address indexed party, uint256 amount, bool running);
    /// @notice A party aborted the setup; the deposits made were refunded; the channel is Closed.
    /// @param by the party that cancelled
    event Cancelled(address indexed by);
    /// @notice A party liquidated with a countersigned sheet; the channel is Liquidating.
    /// @param master the liquidating party, whose balance and locks are frozen
    /// @param nonce the sheet's nonce
    /// @param balance0 party 0's balance in the sheet
    /// @param balance1 party 1's balance in the sheet
    /// @param locksRoot the sheet's locks root (`EMPTY_LOCKS_ROOT` without locks)
    /// @param waiver the sheet's waiver address
    /// @param unlockTime when the master may withdraw and the locks may be settled
    event Liquidated(
        address indexed master,
        uint256 nonce,
        uint256 balance0,
        uint256 balance1,
        bytes32 locksRoot,
        address waiver,
        uint256 unlockTime
    );
    /// @notice The master took its frozen balance after the lock period; the channel is Closed, or
    /// Settling when locks remain.
    /// @param master the master
    /// @param amount the amount paid
    event WithdrawnByMaster(address indexed master, uint256 amount);
    /// @notice The peer proved the liquidated sheet was revoked and took the master's balance and
    /// all locks; the channel is Closed.
    /// @param peer the wronged party, who was paid
    /// @param nonce the revoked sheet's nonce
    /// @param amount the amount paid (frozen balance plus locked amount)
    event WithdrawnByPeer(address indexed peer, uint256 nonce, uint256 amount);
    /// @notice The locks were settled; the channel is Closed.
    /// @param amount0 what the locks paid to party 0
    /// @param amount1 what the locks paid to party 1
    event Unlocked(uint256 amount0, uint256 amount1);
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

    /// @dev The channel's parameters, read from the clone's code.
    struct Params {
        address party0;
        address party1;
        uint256 amount0;
        uint256 amount1;
        uint256 lockPeriod;
        address token;
    }

    /// @notice Deployed once, by the factory's constructor.
    /// @param registry_ the chain's preimage registry
    constructor(PreimageRegistry registry_) {
        factory = msg.sender;
        registry = registry_;
        // EIP-1153 probe: on a chain without TSTORE/TLOAD these are invalid opcodes and the deployment
        // (and the factory's, which makes this one) fails, instead of every exit failing later.
        assembly ("memory-safe") {
            tstore(0, 1)
            if iszero(eq(tload(0), 1)) { revert(0, 0) }
            tstore(0, 0)
        }
    }

    // ---------------------------------------------------------------- funding

    /// @notice Pays the caller's agreed deposit: the ETH sent, or for a token channel the amount
    /// pulled with `transferFrom` (approve the channel first; send no ETH). The channel runs once
    /// both deposits are in.
    function deposit() external payable nonReentrant {
        Params memory p = _params();
        uint256 s = _s;
        _requireState(s, State.Funding);
        uint256 i = _partyIndex(p, msg.sender);
        uint256 amount = i == 0 ? p.amount0 : p.amount1;
        uint256 flag = i == 0 ? DEPOSITED0 : DEPOSITED1;
        if (s & flag != 0 || amount == 0) revert VirtualBankAlreadyDeposited(msg.sender);
        if (p.token == address(0)) {
            if (msg.value != amount) revert VirtualBankWrongDeposit(amount, msg.value);
        } else if (msg.value != 0) {
            revert VirtualBankWrongDeposit(0, msg.value);
        }
        bool running = _recordDeposit(p, s | flag);
        emit Deposited(msg.sender, amount, running);
        if (p.token != address(0)) _pullToken(p.token, msg.sender, amount);
    }

    /// @notice Records the deposit the factory just delivered for `party` in `openAndDeposit` (ETH
    /// sent with the clone's creation, or tokens pulled from the party and checked by the factory).
    /// @param party the party's index
    function depositByFactory(uint256 party) external {
        if (msg.sender != factory) revert VirtualBankNotFactory(msg.sender);
        Params memory p = _params();
        uint256 s = _s;
        _requireState(s, State.Funding);
        address who = party == 0 ? p.party0 : p.party1;
        uint256 flag = party == 0 ? DEPOSITED0 : DEPOSITED1;
        if (s & flag != 0) revert VirtualBankAlreadyDeposited(who);
        bool running = _recordDeposit(p, s | flag);
        emit Deposited(who, party == 0 ? p.amount0 : p.amount1, running);
    }

    /// @notice Aborts the setup: every deposit made is refunded and the channel is Closed.
    function cancel() external nonReentrant {
        Params memory p = _params();
        uint256 s = _s;
        _requireState(s, State.Funding);
        _partyIndex(p, msg.sender);
        _s = (s & ~STATE_MASK) | uint256(State.Closed);
        emit Cancelled(msg.sender);
        if (s & DEPOSITED0 != 0) _pay(p, p.party0, p.amount0);
        if (s & DEPOSITED1 != 0) _pay(p, p.party1, p.amount1);
    }

    // ---------------------------------------------------------------- unilateral close

    /// @notice Closes unilaterally with the latest sheet the other party countersigned. The other
    /// party is paid its balance at once; the caller's balance and the sheet's locks are frozen for
    /// `lockPeriod` seconds.
    /// @param nonce the sheet's nonce, at most 2^48 - 1
    /// @param balances the sheet's balances of party 0 and party 1; what they leave of the total is locked
    /// @param locksRoot the EIP-712 encoding of the sheet's `locks` member: keccak256 of the locks'
    /// struct hashes concatenated, `keccak256("")` for none
    /// @param waiver the sheet's waiver address, whose key the caller reveals when it revokes the sheet
    /// @param peerSignature the other party's EIP-712 signature over the BalanceSheet
    function liquidate(
        uint256 nonce,
        uint256[2] calldata balances,
        bytes32 locksRoot,
        address waiver,
        bytes calldata peerSignature
    ) external nonReentrant {
        Params memory p = _params();
        uint256 s = _s;
        _requireState(s, State.Running);
        uint256 master = _partyIndex(p, msg.sender);
        address peer = master == 0 ? p.party1 : p.party0;
        uint256 locked = _checkSheet(p, nonce, balances, locksRoot, waiver, peerSignature, peer);
        uint256 unlockTime = block.timestamp + p.lockPeriod;
        _s = (s & (DEPOSITED0 | DEPOSITED1 | DEFERRED)) | uint256(State.Liquidating) | (master == 1 ? MASTER1 : 0)
            | (locked != 0 ? HAS_LOCKS : 0) | (uint256(SafeCast.toUint40(unlockTime)) << 8) | (nonce << 48)
            | (uint256(uint160(waiver)) << 96);
        if (locked != 0) {
            _locked = locked;
            _locksRoot = locksRoot;
        }
        emit Liquidated(msg.sender, nonce, balances[0], balances[1], locksRoot, waiver, unlockTime);
        _pay(p, peer, balances[1 - master]);
    }

    /// @dev Checks a sheet for `liquidate` and the peer's signature over it; returns the locked amount.
    function _checkSheet(
        Params memory p,
        uint256 nonce,
        uint256[2] calldata balances,
        bytes32 locksRoot,
        address waiver,
        bytes calldata peerSignature,
        address peer
    ) private view returns (uint256 locked) {
        if (nonce > MAX_NONCE) revert VirtualBankNonceTooLarge(nonce);
        if (waiver == address(0)) revert VirtualBankZeroWaiver();
        uint256 total = p.amount0 + p.amount1;
        uint256 sum = _saturatingAdd(balances[0], balances[1]);
        if (sum > total) revert VirtualBankBalanceMismatch(sum, total);
        locked = total - sum;
        if ((locked == 0) != (locksRoot == EMPTY_LOCKS_ROOT)) revert VirtualBankLocksRootMismatch(locksRoot, locked);
        _requireSigner(
            keccak256(abi.encode(BALANCE_SHEET_TYPEHASH, nonce, balances[0], balances[1], locksRoot, waiver)),
            peerSignature,
            peer
        );
    }

    /// @notice Pays the master its frozen balance once the lock period is over. Anyone may call;
    /// the money always goes to the master. The channel is Closed, or Settling if locks remain.
    function withdrawByMaster() external nonReentrant {
        Params memory p = _params();
        uint256 s = _s;
        _requireState(s, State.Liquidating);
        _requireUnlocked(s);
        uint256 locked = s & HAS_LOCKS != 0 ? _locked : 0;
        uint256 frozen = _held(p, s) - locked;
        _s = (s & ~STATE_MASK) | uint256(locked == 0 ? State.Closed : State.Settling);
        address master = s & MASTER1 == 0 ? p.party0 : p.party1;
        emit WithdrawnByMaster(master, frozen);
        _pay(p, master, frozen);
    }

    /// @notice Punishes a liquidation with a revoked sheet: given the master's waiver signature for
    /// the liquidated nonce, pays the master's whole frozen balance and all the sheet's locks to the
    /// peer. Anyone may call (a watchtower, for instance); the money always goes to the peer.
    /// Possible until the master withdrew.
    /// @param nonce the liquidated sheet's nonce
    /// @param waiverSignature the signature over `Waiver(nonce)` by the sheet's waiver key
    function withdrawByPeer(uint256 nonce, bytes calldata waiverSignature) external nonReentrant {
        Params memory p = _params();
        uint256 s = _s;
        _requireState(s, State.Liquidating);
        uint256 liquidated = (s >> 48) & MAX_NONCE;
        if (nonce != liquidated) revert VirtualBankWrongNonce(liquidated, nonce);
        _requireSigner(keccak256(abi.encode(WAIVER_TYPEHASH, nonce)), waiverSignature, address(uint160(s >> 96)));
        uint256 amount = _held(p, s);
        _s = (s & ~STATE_MASK) | uint256(State.Closed);
        if (s & HAS_LOCKS != 0) {
            _locked = 0;
            _locksRoot = 0;
        }
        address peer = s & MASTER1 == 0 ? p.party1 : p.party0;
        emit WithdrawnByPeer(peer, nonce, amount);
        _pay(p, peer, amount);
    }

    /// @notice Settles the liquidated sheet's locks. Anyone may call, once the lock period is over
    /// and no punishment happened; completes `withdrawByMaster` first if it is still pending. Each
    /// lock pays its receiver if its preimage was revealed on the registry by its expiry, else its
    /// sender once its expiry has passed; otherwise the call reverts. The channel is then Closed.
    /// @param locks the liquidated sheet's locks, in the signed order
    function unlock(Lock[] calldata locks) external nonReentrant {
        Params memory p = _params();
        uint256 s = _s;
        State st = State(s & STATE_MASK);
        if (st != State.Liquidating && st != State.Settling) revert VirtualBankWrongState(st);
        bool hasLocks = s & HAS_LOCKS != 0;
        uint256 locked = hasLocks ? _locked : 0;
        bytes32 root = hasLocks ? _locksRoot : EMPTY_LOCKS_ROOT;

        uint256[2] memory pay = [uint256(0), 0];
        uint256 masterIndex = s & MASTER1 == 0 ? 0 : 1;
        if (st == State.Liquidating) {
            _requireUnlocked(s);
            uint256 frozen = _held(p, s) - locked;
            pay[masterIndex] = frozen;
            emit WithdrawnByMaster(masterIndex == 0 ? p.party0 : p.party1, frozen);
        }
        uint256[2] memory fromLocks = _resolveLocks(locks, root, locked);

        _s = (s & ~STATE_MASK) | uint256(State.Closed);
        if (hasLocks) {
            _locked = 0;
            _locksRoot = 0;
        }
        emit Unlocked(fromLocks[0], fromLocks[1]);
        _pay(p, p.party0, pay[0] + fromLocks[0]);
        _pay(p, p.party1, pay[1] + fromLocks[1]);
    }

    // ---------------------------------------------------------------- cooperative close

    /// @notice Closes the channel at once with balances both parties signed. Anyone may submit.
    /// A Close has no locks: pending locks are settled off-chain first.
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
        Params memory p = _params();
        uint256 s = _s;
        _requireState(s, State.Running);
        uint256 total = p.amount0 + p.amount1;
        uint256 sum = _saturatingAdd(balances[0], balances[1]);
        if (sum != total) revert VirtualBankBalanceMismatch(sum, total);
        bytes32 structHash = keccak256(abi.encode(CLOSE_TYPEHASH, nonce, balances[0], balances[1]));
        _requireSigner(structHash, signature0, p.party0);
        _requireSigner(structHash, signature1, p.party1);
        _s = (s & ~STATE_MASK) | uint256(State.Closed);
        emit CooperativelyClosed(nonce, balances[0], balances[1]);
        _pay(p, p.party0, balances[0]);
        _pay(p, p.party1, balances[1]);
    }

    // ---------------------------------------------------------------- pull fallback

    /// @notice Sends what the caller is owed (payouts that could not be pushed) to `to`.
    /// @param to where to send it; a party whose own address cannot receive names another
    function claim(address to) external nonReentrant {
        if (to == address(0)) revert VirtualBankZeroRecipient();
        uint256 amount = owed[msg.sender];
        if (amount == 0) revert VirtualBankNothingOwed(msg.sender);
        Params memory p = _params();
        owed[msg.sender] = 0;
        totalOwed -= amount;
        emit Claimed(msg.sender, to, amount);
        if (p.token == address(0)) {
            // slither-disable-next-line arbitrary-send-eth,low-level-calls
            (bool ok,) = to.call{value: amount}("");
            if (!ok) revert VirtualBankTransferFailed(to, amount);
        } else {
            SafeERC20.safeTransfer(IERC20(p.token), to, amount);
        }
    }

    // ---------------------------------------------------------------- views

    /// @notice The channel's current state.
    /// @return the state
    function state() external view returns (State) {
        return State(_s & STATE_MASK);
    }

    /// @notice The two parties, party 0 first.
    /// @return the parties
    function parties() external view returns (address[2] memory) {
        Params memory p = _params();
        return [p.party0, p.party1];
    }

    /// @notice The agreed deposits of party 0 and party 1.
    /// @return the amounts
    function amounts() external view returns (uint256[2] memory) {
        Params memory p = _params();
        return [p.amount0, p.amount1];
    }

    /// @notice The sum of the agreed deposits: what every sheet's balances and locks add up to.
    /// @return the total
    function totalDeposits() external view returns (uint256) {
        Params memory p = _params();
        return p.amount0 + p.amount1;
    }

    /// @notice Seconds the master's balance stays frozen after `liquidate` (1 to 2^32 - 1).
    /// @return the lock period
    function lockPeriod() external view returns (uint64) {
        return uint64(_params().lockPeriod);
    }

    /// @notice The channel's asset: zero for native ETH, else the ERC-20 token.
    /// @return the token
    function token() external view returns (address) {
        return _params().token;
    }

    /// @notice Whether each party's deposit is in (a zero agreed deposit counts as in).
    /// @return the flags of party 0 and party 1
    function deposited() external view returns (bool[2] memory) {
        Params memory p = _params();
        uint256 s = _s;
        return [s & DEPOSITED0 != 0 || p.amount0 == 0, s & DEPOSITED1 != 0 || p.amount1 == 0];
    }

    /// @notice The liquidation in progress or done; all zero if none was started. `locked` and
    /// `locksRoot` read zero once the locks were settled or taken by punishment.
    /// @return l the master, nonce, waiver, unlock time, locked amount and locks root
    // Slither taints the packed slot with the unlock time it holds: these are bit tests of it.
    // slither-disable-start incorrect-equality,timestamp
    function liquidation() external view returns (Liquidation memory l) {
        uint256 s = _s;
        if (s >> 96 == 0) return l;
        Params memory p = _params();
        l.master = s & MASTER1 == 0 ? p.party0 : p.party1;
        l.nonce = (s >> 48) & MAX_NONCE;
        l.waiver = address(uint160(s >> 96));
        l.unlockTime = (s >> 8) & type(uint40).max;
        if (s & HAS_LOCKS != 0) {
            l.locked = _locked;
            l.locksRoot = _locksRoot;
        }
    }

    // slither-disable-end incorrect-equality,timestamp

    /// @notice What the contract still owes to the parties: deposits held, frozen balance and
    /// locks, and deferred payouts. Equal to the contract's balance of the asset, less anything
    /// sent to it outside the channel's functions before a liquidation (which the frozen balance absorbs).
    /// @return the amount
    function outstanding() external view returns (uint256) {
        Params memory p = _params();
        uint256 s = _s;
        State st = State(s & STATE_MASK);
        if (st == State.Funding) {
            return (s & DEPOSITED0 != 0 ? p.amount0 : 0) + (s & DEPOSITED1 != 0 ? p.amount1 : 0) + totalOwed;
        }
        if (st == State.Running) return p.amount0 + p.amount1 + totalOwed;
        if (st == State.Liquidating) return _balance(p);
        if (st == State.Settling) return _locked + totalOwed;
        return totalOwed;
    }

    /// @notice The EIP-712 root of a list of locks, as `liquidate` takes it and `unlock` checks it.
    /// @param locks the locks
    /// @return root keccak256 of the locks' struct hashes concatenated
    function hashLocks(Lock[] calldata locks) external pure returns (bytes32 root) {
        bytes32[] memory hashes = new bytes32[](locks.length);
        for (uint256 i = 0; i < locks.length; ++i) {
            hashes[i] = _hashLock(locks[i]);
        }
        assembly ("memory-safe") {
            root := keccak256(add(hashes, 0x20), shl(5, mload(hashes)))
        }
    }

    /// @notice The EIP-712 digest a party signs for a BalanceSheet of this channel.
    /// @param nonce the sheet's nonce
    /// @param balances the balances of party 0 and party 1
    /// @param locksRoot the sheet's locks root (`hashLocks`)
    /// @param waiver the sheet's waiver address
    /// @return the digest
    function sheetDigest(uint256 nonce, uint256[2] calldata balances, bytes32 locksRoot, address waiver)
        external
        view
        returns (bytes32)
    {
        return MessageHashUtils.toTypedDataHash(
            domainSeparator(),
            keccak256(abi.encode(BALANCE_SHEET_TYPEHASH, nonce, balances[0], balances[1], locksRoot, waiver))
        );
    }

    /// @notice The EIP-712 domain separator (name "VirtualBank", version "2", this chain, this clone).
    /// @return the separator
    // forge-lint: disable-next-line(mixed-case-function)
    function domainSeparator() public view returns (bytes32) {
        return keccak256(abi.encode(DOMAIN_TYPEHASH, NAME_HASH, VERSION_HASH, block.chainid, address(this)));
    }

    /// @notice EIP-5267: the EIP-712 domain, for wallets.
    /// @return fields 0x0f: name, version, chainId, verifyingContract
    /// @return name "VirtualBank"
    /// @return version "2"
    /// @return chainId this chain
    /// @return verifyingContract this clone
    /// @return salt unused
    /// @return extensions none
    function eip712Domain()
        external
        view
        returns (
            bytes1 fields,
            string memory name,
            string memory version,
            uint256 chainId,
            address verifyingContract,
            bytes32 salt,
            uint256[] memory extensions
        )
    {
        return (hex"0f", "VirtualBank", "2", block.chainid, address(this), bytes32(0), new uint256[](0));
    }

    // ---------------------------------------------------------------- internals

    /// @dev Reads the parameters appended to the clone's code. Reverts on the implementation itself
    /// and on anything not laid out as a channel clone.
    function _params() private view returns (Params memory p) {
        uint256 size;
        assembly ("memory-safe") {
            size := extcodesize(address())
        }
        if (size != ETH_CHANNEL_SIZE && size != TOKEN_CHANNEL_SIZE) revert VirtualBankNotAChannel();
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            // Past the end of an ETH channel's code extcodecopy pads with zeros: token = 0.
            extcodecopy(address(), ptr, ARGS_OFFSET, 96)
            mstore(p, shr(96, mload(ptr)))
            mstore(add(p, 0x20), shr(96, mload(add(ptr, 20))))
            mstore(add(p, 0x40), shr(128, mload(add(ptr, 40))))
            mstore(add(p, 0x60), shr(128, mload(add(ptr, 56))))
            mstore(add(p, 0x80), shr(224, mload(add(ptr, 72))))
            mstore(add(p, 0xa0), shr(96, mload(add(ptr, 76))))
        }
    }

    function _requireState(uint256 s, State expected) private pure {
        State actual = State(s & STATE_MASK);
        if (actual != expected) revert VirtualBankWrongState(actual);
    }

    function _requireUnlocked(uint256 s) private view {
        uint256 unlockTime = (s >> 8) & type(uint40).max;
        // A validator can shift timestamps by seconds; lock periods are hours or days.
        // slither-disable-next-line timestamp
        if (block.timestamp < unlockTime) revert VirtualBankLockNotExpired(unlockTime, block.timestamp);
    }

    function _partyIndex(Params memory p, address who) private pure returns (uint256) {
        if (who == p.party0) return 0;
        if (who == p.party1) return 1;
        revert VirtualBankNotParty(who);
    }

    /// @dev Stores the deposit flags `s` (the caller checked the state is Funding) and moves to
    /// Running once both deposits are in.
    function _recordDeposit(Params memory p, uint256 s) private returns (bool running) {
        running = (s & DEPOSITED0 != 0 || p.amount0 == 0) && (s & DEPOSITED1 != 0 || p.amount1 == 0);
        if (running) s = (s & ~STATE_MASK) | uint256(State.Running);
        _s = s;
    }

    /// @dev What the channel holds for the liquidation (frozen balance plus locks): its balance of
    /// the asset less the deferred payouts.
    function _held(Params memory p, uint256 s) private view returns (uint256) {
        return _balance(p) - (s & DEFERRED != 0 ? totalOwed : 0);
    }

    function _balance(Params memory p) private view returns (uint256) {
        if (p.token == address(0)) return address(this).balance;
        return IERC20(p.token).balanceOf(address(this));
    }

    /// @dev Pulls `amount` of `token` from `from` and checks that exactly that much arrived.
    function _pullToken(address token_, address from, uint256 amount) private {
        uint256 before = IERC20(token_).balanceOf(address(this));
        SafeERC20.safeTransferFrom(IERC20(token_), from, address(this), amount);
        uint256 balanceAfter = IERC20(token_).balanceOf(address(this));
        uint256 received = balanceAfter > before ? balanceAfter - before : 0;
        if (received != amount) revert VirtualBankTokenAmountMismatch(amount, received);
    }

    /// @dev Checks the locks against the stored root and locked amount and resolves each; returns
    /// what they pay to party 0 and party 1.
    function _resolveLocks(Lock[] calldata locks, bytes32 root, uint256 locked)
        private
        view
        returns (uint256[2] memory paid)
    {
        uint256 n = locks.length;
        uint256 buffer;
        assembly ("memory-safe") {
            buffer := mload(0x40)
            mstore(0x40, add(buffer, shl(5, n)))
        }
        uint256 sum = 0;
        uint256 unresolved = type(uint256).max;
        address reg = address(registry);
        bytes32 lockTypehash = LOCK_TYPEHASH;
        for (uint256 i = 0; i < n; ++i) {
            Lock calldata l = locks[i];
            uint256 receiver = l.receiver;
            if (receiver > 1) revert VirtualBankLockBadReceiver(i);
            uint256 amount = l.amount;
            uint256 expiry = l.expiry;
            bytes32 hash = l.hash;
            uint256 revealed;
            assembly ("memory-safe") {
                // The lock's struct hash, into the buffer for the root.
                let m := mload(0x40)
                mstore(m, lockTypehash)
                mstore(add(m, 0x20), receiver)
                mstore(add(m, 0x40), amount)
                mstore(add(m, 0x60), expiry)
                mstore(add(m, 0x80), hash)
                mstore(add(buffer, shl(5, i)), keccak256(m, 0xa0))
                // registry.revealedAt(hash)
                mstore(0x00, 0x6adc799c00000000000000000000000000000000000000000000000000000000)
                mstore(0x04, hash)
                let ok := staticcall(gas(), reg, 0x00, 0x24, 0x00, 0x20)
                if iszero(and(ok, gt(returndatasize(), 0x1f))) { revert(0, 0) }
                revealed := mload(0x00)
            }
            sum = _saturatingAdd(sum, amount);
            // The lock's expiry is the protocol's clock, as the lock period is.
            // slither-disable-next-line timestamp
            if (revealed != 0 && revealed <= expiry) {
                paid[receiver] += amount;
                // slither-disable-next-line timestamp
            } else if (block.timestamp > expiry) {
                paid[1 - receiver] += amount;
            } else if (unresolved == type(uint256).max) {
                unresolved = i;
            }
        }
        bytes32 actual;
        assembly ("memory-safe") {
            actual := keccak256(buffer, shl(5, n))
        }
        if (actual != root) revert VirtualBankWrongLocks(root, actual);
        if (sum != locked) revert VirtualBankLockSumMismatch(locked, sum);
        if (unresolved != type(uint256).max) revert VirtualBankLockUnresolved(unresolved);
    }

    function _hashLock(Lock calldata l) private pure returns (bytes32) {
        return keccak256(abi.encode(LOCK_TYPEHASH, l.receiver, l.amount, l.expiry, l.hash));
    }

    function _requireSigner(bytes32 structHash, bytes calldata signature, address expected) private view {
        // The third value (the error's argument) is not needed: the error kind is reported.
        // slither-disable-next-line unused-return
        (address recovered, ECDSA.RecoverError err,) =
            ECDSA.tryRecoverCalldata(MessageHashUtils.toTypedDataHash(domainSeparator(), structHash), signature);
        if (err != ECDSA.RecoverError.NoError) revert VirtualBankInvalidSignature(uint8(err));
        if (recovered != expected) revert VirtualBankWrongSigner(expected, recovered);
    }

    /// @dev Pushes `amount` to `to` with bounded gas; on failure credits it to `owed[to]`, so that
    /// no recipient and no token can block the channel.
    function _pay(Params memory p, address to, uint256 amount) private {
        // A zero amount is simply nothing to push (not a balance test).
        // slither-disable-next-line incorrect-equality
        if (amount == 0) return;
        address t = p.token;
        bool ok;
        if (t == address(0)) {
            assembly ("memory-safe") {
                ok := call(PAYOUT_GAS, to, amount, 0, 0, 0, 0)
            }
        } else {
            // As OpenZeppelin's SafeERC20.trySafeTransfer (no return value or `true` is success),
            // with bounded gas: a token cannot burn the gas the other payout needs.
            assembly ("memory-safe") {
                let fmp := mload(0x40)
                mstore(0x00, 0xa9059cbb00000000000000000000000000000000000000000000000000000000)
                mstore(0x04, to)
                mstore(0x24, amount)
                ok := call(TOKEN_PAYOUT_GAS, t, 0, 0x00, 0x44, 0x00, 0x20)
                if iszero(and(ok, and(gt(returndatasize(), 0x1f), eq(mload(0x00), 1)))) {
                    ok := and(ok, and(iszero(returndatasize()), gt(extcodesize(t), 0)))
                }
                mstore(0x40, fmp)
            }
        }
        if (!ok) {
            owed[to] += amount;
            totalOwed += amount;
            _s |= DEFERRED;
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
