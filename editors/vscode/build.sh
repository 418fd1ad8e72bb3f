#!/usr/bin/env bash
# Builds the VS Code extension offline (npm registry only): dependencies from package-lock.json,
# TypeScript, the unit tests, then a linux-x64 .vsix that bundles the release `coverlay` binary
# (built first), as rust-analyzer's platform-specific packages do.
#   editors/vscode/build.sh                      # → editors/vscode/coverlay-linux-x64.vsix
#   COVERLAY_BIN=path/to/coverlay build.sh       # bundle that binary instead (the test suite's)
set -euo pipefail
cd "$(dirname "$0")"
root="$(cd ../.. && pwd)"

npm ci --no-audit --no-fund
npx tsc -p .
node --test out/test/

if [ -z "${COVERLAY_BIN:-}" ]; then
    (cd "$root" && cargo build --release)
    COVERLAY_BIN="$root/target/release/coverlay"
fi
mkdir -p server
cp "$COVERLAY_BIN" server/coverlay
cp "$root/LICENSE" LICENSE
npx vsce package --target linux-x64 --out coverlay-linux-x64.vsix
