#!/usr/bin/env bash
# Downloads Neovim 0.12 from Debian's *unstable* suite (plus the libraries it needs, including
# unstable's glibc) into a cache, without installing anything system-wide, and writes a wrapper
# `$CACHE/bin/nvim` that runs it through the extracted dynamic loader. Idempotent: a second run
# only checks the wrapper and prints the command prefix.
#
#   bash tests/nvim/setup-0.12.sh     # prints the wrapper's path on the last line
# tests/lsp_neovim.rs finds the wrapper in the cache (COVERLAY_NVIM012_CACHE or
# ~/.cache/coverlay-nvim012); .ci/run runs this script.
#
# The mirror is derived from the machine's own apt sources (the entry for the Debian archive
# proper, not -security); only the suite is changed to `unstable`.
set -euo pipefail

CACHE=${COVERLAY_NVIM012_CACHE:-$HOME/.cache/coverlay-nvim012}
ROOT="$CACHE/root"        # every .deb extracted here (merged tree)
WRAPPER="$CACHE/bin/nvim"
APT="$CACHE/apt"
PKGS_DIR="$CACHE/debs"

log() { echo "setup.sh: $*" >&2; }

if [[ -x $WRAPPER ]] && "$WRAPPER" --version 2>/dev/null | head -1 | grep -q '^NVIM v0\.12\.'; then
  log "already set up: $("$WRAPPER" --version | head -1)"
  echo "$WRAPPER"
  exit 0
fi

# --- 1. the mirror, from the system's sources --------------------------------------------------
mirror="" keyring=""
for f in /etc/apt/sources.list.d/*.sources; do
  [[ -f $f ]] || continue
  # deb822 stanzas: take the first one whose Suites has a plain (non -security/-updates) suite and
  # whose URIs is a Debian archive.
  read -r mirror keyring < <(awk '
    BEGIN { RS = ""; FS = "\n" }
    {
      uri = ""; suites = ""; key = ""; types = ""
      for (i = 1; i <= NF; i++) {
        if ($i ~ /^[ \t]*#/) continue
        if ($i ~ /^Types:/)     { types = $i; sub(/^Types:[ \t]*/, "", types) }
        if ($i ~ /^URIs:/)      { uri = $i; sub(/^URIs:[ \t]*/, "", uri); split(uri, u, /[ \t]+/); uri = u[1] }
        if ($i ~ /^Suites:/)    { suites = $i; sub(/^Suites:[ \t]*/, "", suites) }
        if ($i ~ /^Signed-By:/) { key = $i; sub(/^Signed-By:[ \t]*/, "", key) }
      }
      if (types !~ /(^|[ \t])deb([ \t]|$)/ || uri == "") next
      n = split(suites, s, /[ \t]+/)
      for (j = 1; j <= n; j++) if (s[j] != "" && s[j] !~ /-(security|updates|backports)$/ && s[j] !~ /\//) {
        print uri, (key == "" ? "-" : key); exit
      }
    }' "$f" || true) || true
  [[ -n $mirror ]] && break
done
if [[ -z $mirror && -f /etc/apt/sources.list ]]; then
  # one-line format: deb [opts] URI SUITE COMPONENTS...
  read -r mirror < <(awk '$1 == "deb" {
      i = 2; if ($2 ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
      if ($(i+1) !~ /-(security|updates|backports)$/) { print $i; exit } }' /etc/apt/sources.list || true) || true
fi
[[ -n $mirror ]] || { log "no Debian mirror found in /etc/apt/sources.list{,.d}"; exit 1; }
[[ -n $keyring && $keyring != - && -f $keyring ]] || keyring=/usr/share/keyrings/debian-archive-keyring.gpg
log "mirror $mirror (suite unstable), keyring $keyring"

# --- 2. a private apt configuration --------------------------------------------------------------
mkdir -p "$APT/lists/partial" "$APT/cache/archives/partial" "$PKGS_DIR" "$CACHE/bin"
echo "deb [signed-by=$keyring] $mirror unstable main" > "$APT/sources.list"
aptopts=(
  -o "Dir::Etc::sourcelist=$APT/sources.list" -o "Dir::Etc::sourceparts=-"
  -o "Dir::State::lists=$APT/lists" -o "Dir::Cache=$APT/cache" -o "Dir::State::status=/dev/null"
  -o "APT::Sandbox::User=root" -o "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false"
  -o "Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false"
  -o "Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false"
  -o "Acquire::IndexTargets::deb::CNF::DefaultEnabled=false"
)
log "apt-get update (private lists in $APT)"
apt-get -q "${aptopts[@]}" update >&2

# --- 3. neovim and its dependency closure from unstable ----------------------------------------
mapfile -t pkgs < <(apt-cache "${aptopts[@]}" depends --recurse --no-recommends --no-suggests \
    --no-conflicts --no-breaks --no-replaces --no-enhances neovim neovim-runtime libc6 \
  | grep -v '^ ' | grep -v '^<' | sort -u)
log "packages: ${pkgs[*]}"
(cd "$PKGS_DIR" && rm -f ./*.deb && apt-get -q "${aptopts[@]}" download "${pkgs[@]}" >&2)

# --- 4. extract (fresh tree) ---------------------------------------------------------------------
rm -rf "$ROOT.new" && mkdir -p "$ROOT.new"
for deb in "$PKGS_DIR"/*.deb; do dpkg-deb -x "$deb" "$ROOT.new"; done
rm -rf "$ROOT" && mv "$ROOT.new" "$ROOT"

# Debian's merged-/usr: libraries may sit in lib/ or usr/lib/ of the packages.
loader=""
for cand in "$ROOT/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" "$ROOT/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" \
            "$ROOT/usr/lib64/ld-linux-x86-64.so.2" "$ROOT/lib64/ld-linux-x86-64.so.2"; do
  [[ -e $cand ]] && { loader=$cand; break; }
done
[[ -n $loader ]] || { log "no ld-linux-x86-64.so.2 among the extracted packages"; exit 1; }
libpath="$ROOT/usr/lib/x86_64-linux-gnu:$ROOT/lib/x86_64-linux-gnu"
# Lua modules that Debian ships as separate packages (lua-lpeg, lua-luv) live under these.
[[ -d $ROOT/usr/lib/x86_64-linux-gnu/lua/5.1 ]] && libpath="$libpath:$ROOT/usr/lib/x86_64-linux-gnu/lua/5.1"

# --- 5. the wrapper ------------------------------------------------------------------------------
# Only the extracted tree is on the library path: mixing unstable's glibc with bookworm's
# libraries would break; anything missing is reported by the --version check below.
# Child processes that nvim starts (the language server, shells) get the normal environment:
# the loader is invoked explicitly, not via LD_LIBRARY_PATH.
cat > "$WRAPPER.new" <<EOF
#!/bin/sh
# Neovim from Debian unstable, run through its own glibc (written by setup.sh).
VIMRUNTIME="$ROOT/usr/share/nvim/runtime"; export VIMRUNTIME
exec "$loader" --library-path "$libpath" "$ROOT/usr/bin/nvim" "\$@"
EOF
chmod +x "$WRAPPER.new"
mv "$WRAPPER.new" "$WRAPPER"

if ! "$WRAPPER" --version >&2; then
  log "the wrapper does not start nvim"; exit 1
fi
"$WRAPPER" --version | head -1 | grep -q '^NVIM v0\.12\.' || { log "not Neovim 0.12"; exit 1; }
echo "$WRAPPER"
