#!/usr/bin/env bash
# Installs vbank's pinned toolchain into the repository (git-ignored), idempotently:
#   node_modules/  anvil, forge, cast 1.7.1, solc-js 0.8.37, OpenZeppelin contracts (npm ci)
#   .venv/         slither-analyzer 0.11.6, only with --slither
# Re-running is cheap: npm ci runs only when package-lock.json changed since the last install.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$VBANK_ROOT"

stamp=node_modules/.vbank-lock
if [[ ! -f $stamp ]] || ! cmp -s package-lock.json "$stamp" || [[ ! -x $ANVIL ]]; then
  echo "bootstrap: npm ci (anvil, forge, cast, solc, openzeppelin)" >&2
  npm ci --no-audit --no-fund --loglevel=error >&2
  cp package-lock.json "$stamp"
fi
for tool in "$ANVIL" "$FORGE" "$CAST"; do
  [[ -x $tool ]] || { echo "bootstrap: $tool is missing after npm ci" >&2; exit 1; }
done
"$VBANK_SOLC" --version | grep -q '^Version: 0.8' || { echo "bootstrap: $VBANK_SOLC does not answer --version" >&2; exit 1; }

if [[ ${1:-} == --slither ]]; then
  if [[ ! -x .venv/bin/slither ]]; then
    echo "bootstrap: pip install slither-analyzer==0.11.6 into .venv" >&2
    python3 -m venv .venv
    .venv/bin/pip install --quiet --disable-pip-version-check slither-analyzer==0.11.6 >&2
  fi
fi
