#!/usr/bin/env bash
# Regenerates docs/GAS.md from the forge gas suites (contracts/test/VirtualBank.gas.t.sol for v1,
# contracts/test/VirtualBankV2.gas.t.sol for v2: its calls recorded with snapshotGasLastCall into
# contracts/snapshots/v2.json, which only an --isolate run fills with per-transaction figures), each
# call measured as its own transaction (--isolate: 21,000 base and calldata included), and the
# gas snapshot contracts/.gas-snapshot that the test command checks with `forge snapshot --check`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
"$VBANK_ROOT/anvil-scripts/bootstrap.sh"
cd "$VBANK_ROOT/contracts"
report=$(mktemp)
trap 'rm -f "$report"' EXIT
"$FORGE" test --match-contract VirtualBankGasTest --isolate --gas-report --json > "$report"
"$FORGE" snapshot --match-contract "VirtualBankGasTest|VirtualBankV2GasTest" --isolate >/dev/null
"$FORGE" test --match-contract VirtualBankV2GasTest --isolate >/dev/null
node "$VBANK_ROOT/anvil-scripts/gas-table.js" "$report" "$VBANK_ROOT/contracts/snapshots/v2.json" > "$VBANK_ROOT/docs/GAS.md"
echo "wrote docs/GAS.md and contracts/.gas-snapshot" >&2
