#!/usr/bin/env bash
# vbank's one test command: installs the pinned toolchain, then runs every check and test.
#   contracts: forge fmt --check, forge test (unit, fuzz, invariant), gas snapshot check, slither,
#              the EIP-1153 check on anvil (hardfork-check.sh: deployment refused on shanghai)
#   rust:      cargo fmt --check, cargo clippy -D warnings, cargo test (unit, property, end-to-end), the examples
# Skip a half with VBANK_SKIP=contracts or VBANK_SKIP=rust (for local iteration only).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$VBANK_ROOT"
"$VBANK_ROOT/anvil-scripts/bootstrap.sh" --slither
step() { printf '\n==> %s\n' "$*" >&2; }

if [[ ${VBANK_SKIP:-} != contracts ]]; then
  cd "$VBANK_ROOT/contracts"
  step "forge fmt --check"
  "$FORGE" fmt --check
  step "EIP-712 v2 vectors up to date (ethers)"
  node "$VBANK_ROOT/anvil-scripts/eip712-v2-vectors.js" --check
  step "forge test (unit, fuzz, invariant)"
  "$FORGE" test
  step "forge snapshot --check (gas drift)"
  "$FORGE" snapshot --match-contract "VirtualBankGasTest|VirtualBankV2GasTest" --isolate --check
  step "slither"
  "$VBANK_ROOT/anvil-scripts/slither.sh"
  step "EIP-1153: deployment refused on a pre-Cancun chain (anvil --hardfork shanghai)"
  "$VBANK_ROOT/anvil-scripts/hardfork-check.sh"
  cd "$VBANK_ROOT"
fi

if [[ ${VBANK_SKIP:-} != rust ]]; then
  step "cargo fmt --check"
  cargo fmt --all -- --check
  step "cargo clippy"
  cargo clippy --workspace --all-targets --locked -- -D warnings
  step "cargo test"
  cargo test --workspace --locked
  step "examples (the library in a few lines, on a spawned anvil)"
  for example in open_pay_close pay_per_call watch; do
    cargo run --locked -q -p vbank --example "$example"
  done
fi
