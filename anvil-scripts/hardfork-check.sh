#!/usr/bin/env bash
# EIP-1153 check (issue 12 item 8), run by the test command: vbank's contracts guard their exits with
# a transient-storage reentrancy lock, so on a chain without EIP-1153 (before Cancun) deposits would
# work and every exit would revert, locking the deposits. The contracts therefore probe TSTORE/TLOAD
# at construction. This script shows it on real anvil chains (a forge test cannot change hardfork):
#   - on `anvil --hardfork shanghai` deploying each contract fails (receipt status 0);
#   - on `anvil --hardfork cancun` the same deployment succeeds (the probe is what refuses).
# Contracts checked: v1 `VirtualBank` (a direct CREATE) and, when built, v2 `VirtualBankFactory`
# (through the standard CREATE2 deployer, as it is deployed for real: the factory's constructor
# deploys the implementation, whose constructor holds the probe, so no channel can be opened there).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$VBANK_ROOT/contracts"
"$FORGE" build >/dev/null

KEY=0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80 # anvil's dev account 0
DEPLOYER=0x4e59b44847b379578588920cA78FbF26c0B4956C
tmp=$(mktemp -d)
anvil_pid=
cleanup() {
  if [[ -n $anvil_pid ]]; then kill "$anvil_pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

bytecode() { node -e 'process.stdout.write(require(process.argv[1]).bytecode.object)' "$PWD/out/$1"; }
status_of() { node -e 'process.stdout.write(String(require(process.argv[1]).status))' "$1"; }

start_anvil() {
  port=$(node -e 'const s=require("net").createServer().listen(0,()=>{process.stdout.write(String(s.address().port));s.close()})')
  rpc="http://127.0.0.1:$port"
  "$ANVIL" --hardfork "$1" --port "$port" --silent &
  anvil_pid=$!
  for _ in $(seq 50); do
    "$CAST" block-number --rpc-url "$rpc" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "anvil --hardfork $1 did not start" >&2
  exit 1
}

stop_anvil() {
  kill "$anvil_pid" 2>/dev/null || true
  wait "$anvil_pid" 2>/dev/null || true
  anvil_pid=
}

# send <name> <to|--create> <data>: prints the receipt status (0x1 success, 0x0 failure). A fixed gas
# limit skips estimation, so a refused deployment is mined as a failed transaction.
send() {
  local out="$tmp/$1.json"
  if [[ $2 == --create ]]; then
    "$CAST" send --json --gas-limit 10000000 --private-key "$KEY" --rpc-url "$rpc" --create "$3" >"$out"
  else
    "$CAST" send --json --gas-limit 10000000 --private-key "$KEY" --rpc-url "$rpc" "$2" "$3" >"$out"
  fi
  status_of "$out"
}

v1_args=$("$CAST" abi-encode "c(address[2],uint256[2],uint64)" \
  "[0x70997970C51812dc3A010C7d01b50e0d17dc79C8,0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC]" "[1,1]" 3600)
v1_code="$(bytecode VirtualBank.sol/VirtualBank.json)${v1_args#0x}"
factory_code=
if [[ -f out/VirtualBankFactory.sol/VirtualBankFactory.json ]]; then
  factory_code="0x$(printf '0%.0s' {1..64})$(bytecode VirtualBankFactory.sol/VirtualBankFactory.json | sed 's/^0x//')"
fi

failed=0
check() { # check <fork> <expected status> <what> <status>
  if [[ $4 == "$2" ]]; then
    echo "ok: $3 on $1: status $4" >&2
  else
    echo "FAIL: $3 on $1: status $4, expected $2" >&2
    failed=1
  fi
}

for fork in shanghai cancun; do
  expected=0x0
  [[ $fork == cancun ]] && expected=0x1
  start_anvil "$fork"
  check "$fork" "$expected" "v1 VirtualBank deployment" "$(send v1-$fork --create "$v1_code")"
  if [[ -n $factory_code ]]; then
    check "$fork" "$expected" "v2 VirtualBankFactory deployment via the CREATE2 deployer" \
      "$(send factory-$fork "$DEPLOYER" "$factory_code")"
  fi
  stop_anvil
done
exit "$failed"
