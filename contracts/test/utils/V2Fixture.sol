// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Test} from "./Test.sol";
import {VirtualBankFactory} from "../../src/VirtualBankFactory.sol";
import {VirtualBankV2} from "../../src/VirtualBankV2.sol";
import {PreimageRegistry} from "../../src/PreimageRegistry.sol";

interface IMintable {
    function mint(address to, uint256 amount) external;
    function approve(address spender, uint256 amount) external;
    function balanceOf(address who) external view returns (uint256);
}

/// @notice Keys, the canonical factory deployed through the CREATE2 deployer, and EIP-712 signing
/// of v2 sheets computed here from the type strings, independently of the contract's hashing.
abstract contract V2Fixture is Test {
    uint256 internal constant ALICE_KEY = 0xA11CE;
    uint256 internal constant BOB_KEY = 0xB0B;
    uint256 internal constant CAROL_KEY = 0xCA201;
    uint64 internal constant LOCK = 1 days;

    address internal constant CREATE2_DEPLOYER = 0x4e59b44847b379578588920cA78FbF26c0B4956C;
    /// @dev The deterministic-deployment-proxy's runtime code (what anvil has at genesis).
    bytes internal constant CREATE2_DEPLOYER_CODE =
        hex"7fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffe03601600081602082378035828234f58015156039578182fd5b8082525050506014600cf3";

    bytes32 internal constant DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");
    bytes32 internal constant SHEET_TYPEHASH = keccak256(
        "BalanceSheet(uint256 nonce,uint256 balance0,uint256 balance1,Lock[] locks,address waiver)Lock(uint8 receiver,uint256 amount,uint64 expiry,bytes32 hash)"
    );
    bytes32 internal constant LOCK_TYPEHASH =
        keccak256("Lock(uint8 receiver,uint256 amount,uint64 expiry,bytes32 hash)");
    bytes32 internal constant WAIVER_TYPEHASH = keccak256("Waiver(uint256 nonce)");
    bytes32 internal constant CLOSE_TYPEHASH = keccak256("Close(uint256 nonce,uint256 balance0,uint256 balance1)");

    VirtualBankFactory internal factory;
    PreimageRegistry internal registry;
    address internal alice;
    address internal bob;
    address internal carol;
    uint256 internal saltCounter;

    function _setUpV2() internal {
        alice = vm.addr(ALICE_KEY);
        bob = vm.addr(BOB_KEY);
        carol = vm.addr(CAROL_KEY);
        vm.label(alice, "alice");
        vm.label(bob, "bob");
        vm.label(carol, "carol");
        factory = _deployFactory();
        registry = factory.registry();
    }

    /// @dev Deploys the factory as on a real chain: through the CREATE2 deployer, salt 0, no args.
    function _deployFactory() internal returns (VirtualBankFactory) {
        if (CREATE2_DEPLOYER.code.length == 0) vm.etch(CREATE2_DEPLOYER, CREATE2_DEPLOYER_CODE);
        (bool ok, bytes memory ret) =
            CREATE2_DEPLOYER.call(abi.encodePacked(bytes32(0), type(VirtualBankFactory).creationCode));
        require(ok && ret.length == 20, "factory deployment failed");
        return VirtualBankFactory(address(bytes20(ret)));
    }

    function _expectedFactoryAddress() internal pure returns (address) {
        bytes32 h = keccak256(
            abi.encodePacked(
                bytes1(0xff), CREATE2_DEPLOYER, bytes32(0), keccak256(type(VirtualBankFactory).creationCode)
            )
        );
        return address(uint160(uint256(h)));
    }

    // ------------------------------------------------------------ channels

    function _nextSalt() internal returns (bytes32) {
        return bytes32(++saltCounter);
    }

    function _openV2(address p0, address p1, uint256 a0, uint256 a1, uint64 lock, address token)
        internal
        returns (VirtualBankV2)
    {
        return VirtualBankV2(factory.open([p0, p1], [a0, a1], lock, token, _nextSalt()));
    }

    /// @dev Opens a channel and pays both deposits (ETH when token is zero, else minted tokens).
    function _fundedV2(address p0, address p1, uint256 a0, uint256 a1, uint64 lock, address token)
        internal
        returns (VirtualBankV2 bank)
    {
        bank = _openV2(p0, p1, a0, a1, lock, token);
        _pay(bank, p0, a0, token);
        _pay(bank, p1, a1, token);
    }

    function _pay(VirtualBankV2 bank, address who, uint256 amount, address token) internal {
        if (amount == 0) return;
        if (token == address(0)) {
            vm.deal(who, who.balance + amount);
            vm.prank(who);
            bank.deposit{value: amount}();
        } else {
            IMintable(token).mint(who, amount);
            vm.prank(who);
            IMintable(token).approve(address(bank), amount);
            vm.prank(who);
            bank.deposit();
        }
    }

    function _balanceOf(address token, address who) internal view returns (uint256) {
        return token == address(0) ? who.balance : IMintable(token).balanceOf(who);
    }

    // ------------------------------------------------------------ EIP-712

    function _domain(address bank) internal view returns (bytes32) {
        return keccak256(abi.encode(DOMAIN_TYPEHASH, keccak256("VirtualBank"), keccak256("2"), block.chainid, bank));
    }

    function _digest(address bank, bytes32 structHash) internal view returns (bytes32) {
        return keccak256(abi.encodePacked("\x19\x01", _domain(bank), structHash));
    }

    function _lockHash(VirtualBankV2.Lock memory l) internal pure returns (bytes32) {
        return keccak256(abi.encode(LOCK_TYPEHASH, l.receiver, l.amount, l.expiry, l.hash));
    }

    function _root(VirtualBankV2.Lock[] memory locks) internal pure returns (bytes32) {
        bytes32[] memory hashes = new bytes32[](locks.length);
        for (uint256 i = 0; i < locks.length; i++) {
            hashes[i] = _lockHash(locks[i]);
        }
        return keccak256(abi.encodePacked(hashes));
    }

    function _sheetDigest(address bank, uint256 nonce, uint256 b0, uint256 b1, bytes32 root, address waiver)
        internal
        view
        returns (bytes32)
    {
        return _digest(bank, keccak256(abi.encode(SHEET_TYPEHASH, nonce, b0, b1, root, waiver)));
    }

    function _sign(uint256 key, bytes32 digest) internal pure returns (bytes memory) {
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(key, digest);
        return abi.encodePacked(r, s, v);
    }

    function _signSheet(
        uint256 key,
        VirtualBankV2 bank,
        uint256 nonce,
        uint256 b0,
        uint256 b1,
        bytes32 root,
        address waiver
    ) internal view returns (bytes memory) {
        return _sign(key, _sheetDigest(address(bank), nonce, b0, b1, root, waiver));
    }

    function _signWaiver(uint256 waiverKey, VirtualBankV2 bank, uint256 nonce) internal view returns (bytes memory) {
        return _sign(waiverKey, _digest(address(bank), keccak256(abi.encode(WAIVER_TYPEHASH, nonce))));
    }

    function _signClose(uint256 key, VirtualBankV2 bank, uint256 nonce, uint256 b0, uint256 b1)
        internal
        view
        returns (bytes memory)
    {
        return _sign(key, _digest(address(bank), keccak256(abi.encode(CLOSE_TYPEHASH, nonce, b0, b1))));
    }

    /// @dev A deterministic waiver key for (party, nonce), as the off-chain chain would derive.
    function _waiverKey(uint256 partyKey, uint256 nonce) internal pure returns (uint256) {
        return uint256(keccak256(abi.encode("waiver", partyKey, nonce))) % (SECP256K1_ORDER - 1) + 1;
    }

    function _preimage(uint256 i) internal pure returns (bytes32) {
        return keccak256(abi.encode("preimage", i));
    }

    function _lock(uint8 receiver, uint256 amount, uint64 expiry, uint256 preimageIndex)
        internal
        pure
        returns (VirtualBankV2.Lock memory)
    {
        return VirtualBankV2.Lock(receiver, amount, expiry, sha256(abi.encodePacked(_preimage(preimageIndex))));
    }

    /// @dev `master` liquidates `bank` with a sheet the other party signed; returns the waiver key.
    function _liquidate(
        VirtualBankV2 bank,
        bool byAlice,
        uint256 nonce,
        uint256 b0,
        uint256 b1,
        VirtualBankV2.Lock[] memory locks
    ) internal returns (uint256 waiverKey) {
        waiverKey = _waiverKey(byAlice ? ALICE_KEY : BOB_KEY, nonce);
        address waiver = vm.addr(waiverKey);
        bytes32 root = _root(locks);
        bytes memory sig = _signSheet(byAlice ? BOB_KEY : ALICE_KEY, bank, nonce, b0, b1, root, waiver);
        vm.prank(byAlice ? alice : bob);
        bank.liquidate(nonce, [b0, b1], root, waiver, sig);
    }

    function _noLocks() internal pure returns (VirtualBankV2.Lock[] memory) {
        return new VirtualBankV2.Lock[](0);
    }
}
