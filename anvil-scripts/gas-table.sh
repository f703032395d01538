#!/usr/bin/env bash
# Regenerates docs/GAS.md from the forge gas suite (contracts/test/VirtualBank.gas.t.sol), each
# call measured as its own transaction (--isolate: 21,000 base and calldata included), and the
# gas snapshot contracts/.gas-snapshot that the test command checks with `forge snapshot --check`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
"$VBANK_ROOT/anvil-scripts/bootstrap.sh"
cd "$VBANK_ROOT/contracts"
report=$(mktemp)
trap 'rm -f "$report"' EXIT
"$FORGE" test --match-contract VirtualBankGasTest --isolate --gas-report --json > "$report"
"$FORGE" snapshot --match-contract VirtualBankGasTest --isolate >/dev/null
node "$VBANK_ROOT/anvil-scripts/gas-table.js" "$report" > "$VBANK_ROOT/docs/GAS.md"
echo "wrote docs/GAS.md and contracts/.gas-snapshot" >&2
