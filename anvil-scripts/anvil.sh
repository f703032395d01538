#!/usr/bin/env bash
# Starts the pinned anvil in the foreground, for `vbank --rpc-url http://127.0.0.1:8545 ...`.
#   anvil-scripts/anvil.sh [--port 8545] [other anvil flags...]
# Its dev account 0 key (for VBANK_PRIVATE_KEY) is printed by anvil at start.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
"$VBANK_ROOT/anvil-scripts/bootstrap.sh"
port=8545
args=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --port) port=$2; shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done
exec "$ANVIL" --port "$port" "${args[@]}"
