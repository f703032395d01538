// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @notice A plain ERC-20 (returns true), with `mint` for tests.
contract StandardToken {
    mapping(address => uint256) public balanceOf;
    mapping(address => mapping(address => uint256)) public allowance;
    uint256 public totalSupply;

    event Transfer(address indexed from, address indexed to, uint256 value);
    event Approval(address indexed owner, address indexed spender, uint256 value);

    function mint(address to, uint256 amount) external {
        balanceOf[to] += amount;
        totalSupply += amount;
        emit Transfer(address(0), to, amount);
    }

    function approve(address spender, uint256 amount) external returns (bool) {
        allowance[msg.sender][spender] = amount;
        emit Approval(msg.sender, spender, amount);
        return true;
    }

    function transfer(address to, uint256 amount) external virtual returns (bool) {
        _transfer(msg.sender, to, amount);
        return true;
    }

    function transferFrom(address from, address to, uint256 amount) external virtual returns (bool) {
        _spend(from, amount);
        _transfer(from, to, amount);
        return true;
    }

    function _spend(address from, uint256 amount) internal {
        uint256 a = allowance[from][msg.sender];
        if (a != type(uint256).max) {
            require(a >= amount, "allowance");
            allowance[from][msg.sender] = a - amount;
        }
    }

    function _transfer(address from, address to, uint256 amount) internal virtual {
        require(balanceOf[from] >= amount, "balance");
        balanceOf[from] -= amount;
        balanceOf[to] += amount;
        emit Transfer(from, to, amount);
    }
}

/// @notice USDT style: `transfer` and `transferFrom` return nothing.
contract NoReturnToken {
    mapping(address => uint256) public balanceOf;
    mapping(address => mapping(address => uint256)) public allowance;

    function mint(address to, uint256 amount) external {
        balanceOf[to] += amount;
    }

    function approve(address spender, uint256 amount) external {
        allowance[msg.sender][spender] = amount;
    }

    function transfer(address to, uint256 amount) external {
        require(balanceOf[msg.sender] >= amount, "balance");
        balanceOf[msg.sender] -= amount;
        balanceOf[to] += amount;
    }

    function transferFrom(address from, address to, uint256 amount) external {
        require(allowance[from][msg.sender] >= amount, "allowance");
        allowance[from][msg.sender] -= amount;
        require(balanceOf[from] >= amount, "balance");
        balanceOf[from] -= amount;
        balanceOf[to] += amount;
    }
}

/// @notice Takes a 1% fee on every transfer: the recipient gets less than the amount.
contract FeeOnTransferToken is StandardToken {
    function _transfer(address from, address to, uint256 amount) internal override {
        require(balanceOf[from] >= amount, "balance");
        uint256 fee = amount / 100;
        balanceOf[from] -= amount;
        balanceOf[to] += amount - fee;
        balanceOf[address(0xFEE)] += fee;
        emit Transfer(from, to, amount - fee);
    }
}

/// @notice Reverts every transfer to or from a blacklisted address (as USDC and USDT do).
contract BlacklistToken is StandardToken {
    mapping(address => bool) public blacklisted;

    function setBlacklisted(address who, bool on) external {
        blacklisted[who] = on;
    }

    function _transfer(address from, address to, uint256 amount) internal override {
        require(!blacklisted[from] && !blacklisted[to], "blacklisted");
        super._transfer(from, to, amount);
    }
}

/// @notice Returns false instead of reverting when a transfer is refused.
contract FalseReturningToken is StandardToken {
    mapping(address => bool) public refused;

    function setRefused(address who, bool on) external {
        refused[who] = on;
    }

    function transfer(address to, uint256 amount) external override returns (bool) {
        if (refused[to]) return false;
        _transfer(msg.sender, to, amount);
        return true;
    }
}

/// @notice Burns all the gas it is given when sending to a marked recipient.
contract GasBurningToken is StandardToken {
    mapping(address => bool) public burnFor;

    function setBurnFor(address who, bool on) external {
        burnFor[who] = on;
    }

    function _transfer(address from, address to, uint256 amount) internal override {
        if (burnFor[to]) {
            while (true) {}
        }
        super._transfer(from, to, amount);
    }
}

/// @notice Calls a hook (ERC-777 style) on the recipient of every transfer, and on the sender of
/// every `transferFrom`, so that either can try to re-enter the channel mid-transfer.
contract HookToken is StandardToken {
    function _transfer(address from, address to, uint256 amount) internal override {
        super._transfer(from, to, amount);
        if (to.code.length > 0) {
            // The hook's outcome is ignored, as a lenient token would.
            (bool ok,) = to.call(abi.encodeWithSignature("tokensReceived(address,uint256)", from, amount));
            ok;
        }
        if (from.code.length > 0) {
            (bool ok,) = from.call(abi.encodeWithSignature("tokensSent(address,uint256)", to, amount));
            ok;
        }
    }
}
