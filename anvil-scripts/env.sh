# Sourced by the other scripts: where the pinned toolchain lives. Paths only; installs nothing.
VBANK_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export VBANK_ROOT
export VBANK_BIN="$VBANK_ROOT/node_modules/@foundry-rs"
export ANVIL="${ANVIL:-$VBANK_BIN/anvil-linux-amd64/bin/anvil}"
export FORGE="${FORGE:-$VBANK_BIN/forge-linux-amd64/bin/forge}"
export CAST="${CAST:-$VBANK_BIN/cast-linux-amd64/bin/cast}"
# A native solc named by SOLC wins; otherwise the project's front over the pinned solc-js.
export VBANK_SOLC="${SOLC:-$VBANK_ROOT/anvil-scripts/solc}"
export PATH="$(dirname "$ANVIL"):$(dirname "$FORGE"):$(dirname "$CAST"):$PATH"
