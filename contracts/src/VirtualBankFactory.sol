// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Clones} from "@openzeppelin/contracts/proxy/Clones.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {PreimageRegistry} from "./PreimageRegistry.sol";
import {VirtualBankV2} from "./VirtualBankV2.sol";

/// @title VirtualBankFactory: the canonical maker of VirtualBank v2 channels on a chain
/// @notice Deployed once per chain through the standard CREATE2 deployer
/// (0x4e59b44847b379578588920cA78FbF26c0B4956C) with salt 0 and no constructor arguments, so its
/// address is a pure function of its code. Each channel is an EIP-1167 clone of the implementation
/// with its parameters appended as immutable arguments, at a CREATE2 address that commits to them:
/// a peer verifies a channel with one call, `channelAddress`, and a check that code is there.
/// @dev Its constructor deploys the implementation and the preimage registry (CREATE nonces 1 and
/// 2, so their addresses are fixed too). The implementation probes EIP-1153 in its constructor, so
/// this factory cannot be deployed, and no channel opened, on a chain without transient storage.
// The ETH `openAndDeposit` receives is exactly the deposit and leaves with the clone's creation.
// slither-disable-next-line locked-ether
contract VirtualBankFactory {
    /// @notice The largest lock period accepted: 2^32 - 1 seconds.
    uint64 public constant MAX_LOCK_PERIOD = type(uint32).max;

    /// @notice The VirtualBank v2 implementation every channel delegates to.
    address public immutable implementation;
    /// @notice The chain's shared preimage registry, read by every channel's `unlock`.
    PreimageRegistry public immutable registry;

    /// @notice A party address is zero.
    error VirtualBankZeroParty();
    /// @notice Both parties are the same address.
    /// @param party the repeated address
    error VirtualBankSameParty(address party);
    /// @notice Both agreed deposits are zero.
    error VirtualBankZeroDeposits();
    /// @notice The deposits together exceed what a channel can account for (2^128 - 1).
    /// @param total the sum of the agreed deposits (saturated at 2^256 - 1)
    error VirtualBankDepositsTooLarge(uint256 total);
    /// @notice The lock period is zero.
    error VirtualBankZeroLockPeriod();
    /// @notice The lock period exceeds 2^32 - 1 seconds.
    /// @param lockPeriod the lock period given
    /// @param max the largest accepted, 2^32 - 1
    error VirtualBankLockPeriodTooLarge(uint256 lockPeriod, uint256 max);
    /// @notice The token is neither zero (native ETH) nor a contract.
    /// @param token the token given
    error VirtualBankTokenNotContract(address token);
    /// @notice A channel with exactly these parameters and salt already exists.
    /// @param channel its address
    error VirtualBankChannelExists(address channel);
    /// @notice `openAndDeposit` was called by someone who is not one of the parties.
    /// @param caller the caller
    error VirtualBankNotParty(address caller);
    /// @notice The ETH value sent is not the caller's agreed deposit (for a token channel: not zero).
    /// @param expected the value expected
    /// @param sent the value sent
    error VirtualBankWrongDeposit(uint256 expected, uint256 sent);
    /// @notice The token delivered another amount than the one transferred (fee-on-transfer).
    /// @param expected the agreed deposit
    /// @param received what the channel's balance grew by
    error VirtualBankTokenAmountMismatch(uint256 expected, uint256 received);

    /// @notice A channel was opened.
    /// @param channel the channel's address
    /// @param party0 party 0
    /// @param party1 party 1
    /// @param token zero for native ETH, else the ERC-20 token
    /// @param amount0 party 0's agreed deposit
    /// @param amount1 party 1's agreed deposit
    /// @param lockPeriod seconds a liquidating party's balance stays frozen
    event ChannelOpened(
        address indexed channel,
        address indexed party0,
        address indexed party1,
        address token,
        uint256 amount0,
        uint256 amount1,
        uint64 lockPeriod
    );

    /// @notice Deploys the preimage registry and the channel implementation.
    constructor() {
        registry = new PreimageRegistry();
        implementation = address(new VirtualBankV2(registry));
    }

    /// @notice Opens a channel: a clone of the implementation at a CREATE2 address that commits to
    /// all the parameters. Anyone may open a channel for any two parties.
    /// @param parties the two parties; party 0 and party 1 in every sheet
    /// @param amounts the deposit each party agrees to make; a zero amount counts as made
    /// @param lockPeriod seconds a liquidating party's balance stays frozen, 1 to 2^32 - 1
    /// @param token zero for native ETH, else an ERC-20 token contract
    /// @param salt any value, to open several channels with the same parameters
    /// @return channel the channel's address
    function open(
        address[2] calldata parties,
        uint256[2] calldata amounts,
        uint64 lockPeriod,
        address token,
        bytes32 salt
    ) external returns (address channel) {
        channel = _open(parties, amounts, lockPeriod, token, salt, 0);
    }

    /// @notice Opens a channel as `open` does and pays the caller's own deposit in the same
    /// transaction: the ETH sent, or for a token channel the amount pulled from the caller, who
    /// approved this factory.
    /// @param parties the two parties; the caller must be one of them
    /// @param amounts the agreed deposits
    /// @param lockPeriod seconds a liquidating party's balance stays frozen, 1 to 2^32 - 1
    /// @param token zero for native ETH, else an ERC-20 token contract
    /// @param salt any value, to open several channels with the same parameters
    /// @return channel the channel's address
    function openAndDeposit(
        address[2] calldata parties,
        uint256[2] calldata amounts,
        uint64 lockPeriod,
        address token,
        bytes32 salt
    ) external payable returns (address channel) {
        uint256 i = msg.sender == parties[0] ? 0 : 1;
        if (i == 1 && msg.sender != parties[1]) revert VirtualBankNotParty(msg.sender);
        uint256 amount = amounts[i];
        uint256 expectedValue = token == address(0) ? amount : 0;
        if (msg.value != expectedValue) revert VirtualBankWrongDeposit(expectedValue, msg.value);
        // ETH rides with the clone's creation (cheaper than a second call with value).
        channel = _open(parties, amounts, lockPeriod, token, salt, msg.value);
        if (amount == 0) return channel;
        VirtualBankV2(channel).depositByFactory(i);
        if (token != address(0)) {
            uint256 before = IERC20(token).balanceOf(channel);
            SafeERC20.safeTransferFrom(IERC20(token), msg.sender, channel, amount);
            uint256 balanceAfter = IERC20(token).balanceOf(channel);
            uint256 received = balanceAfter > before ? balanceAfter - before : 0;
            if (received != amount) revert VirtualBankTokenAmountMismatch(amount, received);
        }
    }

    /// @notice The address `open` gives for these parameters (whether or not it was opened yet).
    /// An address equal to it that holds code was made by this factory from exactly these parameters.
    /// @param parties the two parties
    /// @param amounts the agreed deposits
    /// @param lockPeriod the lock period
    /// @param token zero for native ETH, else the ERC-20 token
    /// @param salt the salt
    /// @return the channel's address
    function channelAddress(
        address[2] calldata parties,
        uint256[2] calldata amounts,
        uint64 lockPeriod,
        address token,
        bytes32 salt
    ) external view returns (address) {
        _check(parties, amounts, lockPeriod, token);
        return Clones.predictDeterministicAddressWithImmutableArgs(
            implementation, _args(parties, amounts, lockPeriod, token), salt
        );
    }

    function _open(
        address[2] calldata parties,
        uint256[2] calldata amounts,
        uint64 lockPeriod,
        address token,
        bytes32 salt,
        uint256 value
    ) private returns (address channel) {
        _check(parties, amounts, lockPeriod, token);
        bytes memory args = _args(parties, amounts, lockPeriod, token);
        // OpenZeppelin Clones' layout (EIP-1167 with immutable args), created here so that an
        // existing channel is reported with its own error rather than a generic failed deployment.
        bytes memory code = abi.encodePacked(
            hex"61",
            uint16(args.length + 0x2d),
            hex"3d81600a3d39f3363d3d373d3d3d363d73",
            implementation,
            hex"5af43d82803e903d91602b57fd5bf3",
            args
        );
        assembly ("memory-safe") {
            channel := create2(value, add(code, 0x20), mload(code), salt)
        }
        if (channel == address(0)) {
            revert VirtualBankChannelExists(Clones.predictDeterministicAddressWithImmutableArgs(
                    implementation, args, salt
                ));
        }
        emit ChannelOpened(channel, parties[0], parties[1], token, amounts[0], amounts[1], lockPeriod);
    }

    function _check(address[2] calldata parties, uint256[2] calldata amounts, uint64 lockPeriod, address token)
        private
        view
    {
        if (parties[0] == address(0) || parties[1] == address(0)) revert VirtualBankZeroParty();
        if (parties[0] == parties[1]) revert VirtualBankSameParty(parties[0]);
        if (amounts[0] == 0 && amounts[1] == 0) revert VirtualBankZeroDeposits();
        if (amounts[0] > type(uint128).max || amounts[1] > type(uint128).max - amounts[0]) {
            uint256 total;
            unchecked {
                total = amounts[0] + amounts[1];
                if (total < amounts[0]) total = type(uint256).max;
            }
            revert VirtualBankDepositsTooLarge(total);
        }
        if (lockPeriod == 0) revert VirtualBankZeroLockPeriod();
        if (lockPeriod > MAX_LOCK_PERIOD) revert VirtualBankLockPeriodTooLarge(lockPeriod, MAX_LOCK_PERIOD);
        if (token != address(0) && token.code.length == 0) revert VirtualBankTokenNotContract(token);
    }

    /// @dev party0 (20) ‖ party1 (20) ‖ amount0 (16) ‖ amount1 (16) ‖ lockPeriod (4) ‖ token (20,
    /// omitted for ETH: 4,000 gas less code to deposit). The checks above make every cast exact.
    function _args(address[2] calldata parties, uint256[2] calldata amounts, uint64 lockPeriod, address token)
        private
        pure
        returns (bytes memory)
    {
        // forge-lint: disable-next-item(unsafe-typecast)
        bytes memory args =
            abi.encodePacked(parties[0], parties[1], uint128(amounts[0]), uint128(amounts[1]), uint32(lockPeriod));
        return token == address(0) ? args : abi.encodePacked(args, token);
    }
}
