// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {V2Fixture} from "./utils/V2Fixture.sol";
import {StandardToken, FeeOnTransferToken} from "./utils/MockTokens.sol";
import {Clones} from "@openzeppelin/contracts/proxy/Clones.sol";
import {VirtualBankFactory} from "../src/VirtualBankFactory.sol";
import {VirtualBankV2} from "../src/VirtualBankV2.sol";
import {PreimageRegistry} from "../src/PreimageRegistry.sol";

contract VirtualBankFactoryTest is V2Fixture {
    StandardToken internal token;

    function setUp() public {
        vm.warp(1_700_000_000);
        _setUpV2();
        token = new StandardToken();
    }

    function test_DeployedThroughCreate2DeployerAtComputedAddress() public view {
        assertEq(address(factory), _expectedFactoryAddress(), "factory address = keccak(0xff, deployer, 0, initcode)");
        assertTrue(address(factory).code.length > 0, "factory has code");
        assertTrue(address(registry).code.length > 0, "registry deployed");
        assertTrue(factory.implementation().code.length > 0, "implementation deployed");
        assertEq(VirtualBankV2(factory.implementation()).factory(), address(factory), "implementation knows factory");
        assertEq(
            address(VirtualBankV2(factory.implementation()).registry()), address(registry), "implementation registry"
        );
    }

    function test_RevertWhen_FactoryDeployedTwice() public {
        (bool ok,) = CREATE2_DEPLOYER.call(abi.encodePacked(bytes32(0), type(VirtualBankFactory).creationCode));
        assertTrue(!ok, "a second deployment at the same address fails");
    }

    function test_Open_EmitsAndMatchesChannelAddress() public {
        address predicted = factory.channelAddress([alice, bob], [uint256(1), 2], LOCK, address(0), bytes32(uint256(9)));
        vm.expectEmit(true, true, true, true, address(factory));
        emit VirtualBankFactory.ChannelOpened(predicted, alice, bob, address(0), 1, 2, LOCK);
        vm.prank(carol); // anyone may open
        address channel = factory.open([alice, bob], [uint256(1), 2], LOCK, address(0), bytes32(uint256(9)));
        assertEq(channel, predicted, "open = channelAddress");
        VirtualBankV2 b = VirtualBankV2(channel);
        assertEq(b.parties()[0], alice, "party0");
        assertEq(b.parties()[1], bob, "party1");
        assertEq(b.amounts()[0], 1, "amount0");
        assertEq(b.amounts()[1], 2, "amount1");
        assertEq(b.lockPeriod(), LOCK, "lock");
        assertEq(b.token(), address(0), "eth");
        assertEq(b.totalDeposits(), 3, "total");
        assertTrue(b.state() == VirtualBankV2.State.Funding, "funding");
        assertEq(b.domainSeparator(), _domain(channel), "domain separator uses the clone's address");
        assertEq(
            keccak256(Clones.fetchCloneArgs(channel)),
            keccak256(abi.encodePacked(alice, bob, uint128(1), uint128(2), uint32(LOCK))),
            "args"
        );
    }

    function test_Open_TokenChannel() public {
        address channel = factory.open([alice, bob], [uint256(1), 2], LOCK, address(token), 0);
        assertEq(VirtualBankV2(channel).token(), address(token), "token");
        assertEq(
            channel, factory.channelAddress([alice, bob], [uint256(1), 2], LOCK, address(token), 0), "channelAddress"
        );
    }

    function test_ChannelAddress_CommitsToEveryParameter() public view {
        address base = factory.channelAddress([alice, bob], [uint256(1), 2], LOCK, address(0), 0);
        assertTrue(base != factory.channelAddress([bob, alice], [uint256(1), 2], LOCK, address(0), 0), "parties");
        assertTrue(base != factory.channelAddress([alice, bob], [uint256(2), 1], LOCK, address(0), 0), "amounts");
        assertTrue(base != factory.channelAddress([alice, bob], [uint256(1), 2], LOCK + 1, address(0), 0), "lock");
        assertTrue(base != factory.channelAddress([alice, bob], [uint256(1), 2], LOCK, address(token), 0), "token");
        assertTrue(
            base != factory.channelAddress([alice, bob], [uint256(1), 2], LOCK, address(0), bytes32(uint256(1))), "salt"
        );
    }

    function test_RevertWhen_Open_Refusals() public {
        vm.expectRevert(VirtualBankFactory.VirtualBankZeroParty.selector);
        factory.open([address(0), bob], [uint256(1), 2], LOCK, address(0), 0);
        vm.expectRevert(VirtualBankFactory.VirtualBankZeroParty.selector);
        factory.open([alice, address(0)], [uint256(1), 2], LOCK, address(0), 0);
        vm.expectRevert(abi.encodeWithSelector(VirtualBankFactory.VirtualBankSameParty.selector, alice));
        factory.open([alice, alice], [uint256(1), 2], LOCK, address(0), 0);
        vm.expectRevert(VirtualBankFactory.VirtualBankZeroDeposits.selector);
        factory.open([alice, bob], [uint256(0), 0], LOCK, address(0), 0);
        uint256 big = type(uint128).max;
        vm.expectRevert(abi.encodeWithSelector(VirtualBankFactory.VirtualBankDepositsTooLarge.selector, big + 1));
        factory.open([alice, bob], [big, 1], LOCK, address(0), 0);
        vm.expectRevert(
            abi.encodeWithSelector(VirtualBankFactory.VirtualBankDepositsTooLarge.selector, type(uint256).max)
        );
        factory.open([alice, bob], [type(uint256).max, 1], LOCK, address(0), 0);
        vm.expectRevert(VirtualBankFactory.VirtualBankZeroLockPeriod.selector);
        factory.open([alice, bob], [uint256(1), 2], 0, address(0), 0);
        uint256 max = type(uint32).max;
        vm.expectRevert(abi.encodeWithSelector(VirtualBankFactory.VirtualBankLockPeriodTooLarge.selector, max + 1, max));
        factory.open([alice, bob], [uint256(1), 2], uint64(max + 1), address(0), 0);
        vm.expectRevert(
            abi.encodeWithSelector(VirtualBankFactory.VirtualBankLockPeriodTooLarge.selector, type(uint64).max, max)
        );
        factory.open([alice, bob], [uint256(1), 2], type(uint64).max, address(0), 0);
        vm.expectRevert(abi.encodeWithSelector(VirtualBankFactory.VirtualBankTokenNotContract.selector, carol));
        factory.open([alice, bob], [uint256(1), 2], LOCK, carol, 0);
        // the extremes that are accepted
        factory.open([alice, bob], [big, 0], uint64(max), address(0), 0);
        factory.open([alice, bob], [uint256(0), 1], 1, address(0), 0);
    }

    function test_RevertWhen_Open_ChannelExists() public {
        address channel = factory.open([alice, bob], [uint256(1), 2], LOCK, address(0), 0);
        vm.expectRevert(abi.encodeWithSelector(VirtualBankFactory.VirtualBankChannelExists.selector, channel));
        factory.open([alice, bob], [uint256(1), 2], LOCK, address(0), 0);
        vm.deal(alice, 1);
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(VirtualBankFactory.VirtualBankChannelExists.selector, channel));
        factory.openAndDeposit{value: 1}([alice, bob], [uint256(1), 2], LOCK, address(0), 0);
    }

    function test_OpenAndDeposit_Eth() public {
        vm.deal(bob, 2);
        vm.prank(bob);
        VirtualBankV2 b =
            VirtualBankV2(factory.openAndDeposit{value: 2}([alice, bob], [uint256(1), 2], LOCK, address(0), 0));
        assertEq(address(b).balance, 2, "deposit held");
        assertTrue(!b.deposited()[0] && b.deposited()[1], "bob's deposit recorded");
        assertEq(b.outstanding(), 2, "outstanding");
        vm.deal(alice, 1);
        vm.prank(alice);
        b.deposit{value: 1}();
        assertTrue(b.state() == VirtualBankV2.State.Running, "running");
    }

    function test_OpenAndDeposit_OtherAmountZeroRunsAtOnce() public {
        vm.deal(alice, 5);
        vm.prank(alice);
        VirtualBankV2 b =
            VirtualBankV2(factory.openAndDeposit{value: 5}([alice, bob], [uint256(5), 0], LOCK, address(0), 0));
        assertTrue(b.state() == VirtualBankV2.State.Running, "running");
    }

    function test_OpenAndDeposit_Token() public {
        token.mint(alice, 10);
        vm.prank(alice);
        token.approve(address(factory), 10);
        vm.prank(alice);
        VirtualBankV2 b = VirtualBankV2(factory.openAndDeposit([alice, bob], [uint256(7), 3], LOCK, address(token), 0));
        assertEq(token.balanceOf(address(b)), 7, "pulled");
        assertTrue(b.deposited()[0], "recorded");
    }

    function test_RevertWhen_OpenAndDeposit_NotPartyOrWrongValue() public {
        vm.deal(carol, 10);
        vm.prank(carol);
        vm.expectRevert(abi.encodeWithSelector(VirtualBankFactory.VirtualBankNotParty.selector, carol));
        factory.openAndDeposit{value: 1}([alice, bob], [uint256(1), 2], LOCK, address(0), 0);
        vm.deal(alice, 10);
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(VirtualBankFactory.VirtualBankWrongDeposit.selector, 1, 2));
        factory.openAndDeposit{value: 2}([alice, bob], [uint256(1), 2], LOCK, address(0), 0);
        // ETH sent with a token deposit
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(VirtualBankFactory.VirtualBankWrongDeposit.selector, 0, 1));
        factory.openAndDeposit{value: 1}([alice, bob], [uint256(1), 2], LOCK, address(token), 0);
    }

    function test_RevertWhen_OpenAndDeposit_FeeOnTransfer() public {
        FeeOnTransferToken fee = new FeeOnTransferToken();
        fee.mint(alice, 1000);
        vm.prank(alice);
        fee.approve(address(factory), 1000);
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(VirtualBankFactory.VirtualBankTokenAmountMismatch.selector, 1000, 990));
        factory.openAndDeposit([alice, bob], [uint256(1000), 2], LOCK, address(fee), 0);
    }

    function test_RevertWhen_DepositByFactory_NotFactory() public {
        VirtualBankV2 b = VirtualBankV2(factory.open([alice, bob], [uint256(1), 2], LOCK, address(0), 0));
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(VirtualBankV2.VirtualBankNotFactory.selector, alice));
        b.depositByFactory(0);
    }

    function test_RevertWhen_ImplementationUsedDirectly() public {
        VirtualBankV2 impl = VirtualBankV2(factory.implementation());
        vm.deal(alice, 1);
        vm.prank(alice);
        vm.expectRevert(VirtualBankV2.VirtualBankNotAChannel.selector);
        impl.deposit{value: 1}();
        vm.expectRevert(VirtualBankV2.VirtualBankNotAChannel.selector);
        impl.parties();
    }

    function testFuzz_ChannelAddressEqualsOpen(
        address p0,
        address p1,
        uint128 a0,
        uint128 a1,
        uint64 lock,
        bytes32 salt
    ) public {
        vm.assume(p0 != address(0) && p1 != address(0) && p0 != p1);
        a0 = uint128(bound(a0, 0, type(uint128).max - 1));
        a1 = uint128(bound(a1, a0 == 0 ? 1 : 0, type(uint128).max - a0));
        lock = uint64(bound(lock, 1, type(uint32).max));
        address predicted = factory.channelAddress([p0, p1], [uint256(a0), a1], lock, address(0), salt);
        address channel = factory.open([p0, p1], [uint256(a0), a1], lock, address(0), salt);
        assertEq(channel, predicted, "channelAddress = open");
        assertEq(VirtualBankV2(channel).lockPeriod(), lock, "lock");
        assertEq(VirtualBankV2(channel).amounts()[1], a1, "amount1");
    }

    function testFuzz_RevertWhen_LockPeriodTooLarge(uint64 lock) public {
        lock = uint64(bound(lock, uint256(type(uint32).max) + 1, type(uint64).max));
        vm.expectRevert(
            abi.encodeWithSelector(VirtualBankFactory.VirtualBankLockPeriodTooLarge.selector, lock, type(uint32).max)
        );
        factory.open([alice, bob], [uint256(1), 2], lock, address(0), 0);
    }
}

contract PreimageRegistryTest is V2Fixture {
    function setUp() public {
        vm.warp(1_700_000_000);
        _setUpV2();
    }

    function test_Reveal_FirstTimestampStands() public {
        bytes32 pre = _preimage(1);
        bytes32 h = sha256(abi.encodePacked(pre));
        assertEq(registry.revealedAt(h), 0, "never");
        vm.expectEmit(true, false, false, true, address(registry));
        emit PreimageRegistry.Revealed(h, pre);
        registry.reveal(pre);
        assertEq(registry.revealedAt(h), 1_700_000_000, "revealed now");
        vm.warp(1_700_000_500);
        registry.reveal(pre); // changes nothing, does not revert
        assertEq(registry.revealedAt(h), 1_700_000_000, "first reveal stands");
    }

    function test_RevealBatch() public {
        bytes32[] memory pres = new bytes32[](3);
        pres[0] = _preimage(1);
        pres[1] = _preimage(2);
        pres[2] = _preimage(1); // a duplicate is harmless
        registry.revealBatch(pres);
        assertEq(registry.revealedAt(sha256(abi.encodePacked(pres[0]))), block.timestamp, "first");
        assertEq(registry.revealedAt(sha256(abi.encodePacked(pres[1]))), block.timestamp, "second");
    }

    function testFuzz_Reveal(bytes32 pre, uint40 t) public {
        vm.warp(bound(t, 1, type(uint40).max));
        registry.reveal(pre);
        assertEq(registry.revealedAt(sha256(abi.encodePacked(pre))), block.timestamp, "sha256 of the preimage");
    }
}
