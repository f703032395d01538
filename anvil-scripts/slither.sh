#!/usr/bin/env bash
# Static analysis of contracts v1 and v2 (src/VirtualBank.sol; src/VirtualBankFactory.sol with
# VirtualBankV2.sol and PreimageRegistry.sol) with slither (PyPI slither-analyzer 0.11.6 in .venv).
# Fails on any finding of low, medium or high impact that is not explained by an inline
# `slither-disable-next-line` comment; each one is listed with its reason in docs/SECURITY.md.
# Uses slither's solc mode through the project's solc front (its foundry mode mis-resolves AST ids
# of forge's build-info with solc-js).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
"$VBANK_ROOT/anvil-scripts/bootstrap.sh" --slither
cd "$VBANK_ROOT/contracts"
# v1 (src/VirtualBank.sol) and v2 (src/VirtualBankFactory.sol, which imports VirtualBankV2.sol and
# PreimageRegistry.sol, so one run analyses all three).
status=0
for file in src/VirtualBank.sol src/VirtualBankFactory.sol; do
  "$VBANK_ROOT/.venv/bin/slither" "$file" \
    --compile-force-framework solc --solc "$VBANK_SOLC" \
    --solc-remaps "@openzeppelin/contracts/=$VBANK_ROOT/node_modules/@openzeppelin/contracts/" \
    --solc-args "--base-path $VBANK_ROOT --evm-version cancun" \
    --filter-paths "node_modules" \
    --exclude-informational --exclude-optimization 2>&1 | grep -v "^ERROR:ContractSolcParsing:Impossible to generate IR for VirtualBank\(V2\)\?._\(nonReentrant\|reentrancyGuard\)\| 'NoneType' object has no attribute 'parameters'"
  rc=${PIPESTATUS[0]}
  if [[ $rc -ne 0 ]]; then status=$rc; fi
done
exit "$status"
