#!/usr/bin/env bash
# vbank's demo command: installs the pinned toolchain, builds the CLI, runs `vbank demo` on an
# embedded anvil. Extra arguments go to `vbank demo` (try --payments 5000 or --json).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
"$VBANK_ROOT/anvil-scripts/bootstrap.sh"
cd "$VBANK_ROOT"
cargo build --quiet --locked -p vbank-cli
exec "$VBANK_ROOT/target/debug/vbank" demo "$@"
