#!/bin/sh
# Installs what tests/helix/check.py needs: Debian unstable's hx (Helix 25.07.1, built against a
# newer glibc than Debian 12's) with that suite's libc6 and libgcc-s1, unpacked into $DEST/root
# (default ~/.cache/coverlay-helix) and run through its own loader by the wrapper $DEST/hx; and
# tmux. A private apt state (sources derived from the system's, suite `unstable`) downloads the
# packages: nothing is installed into the system but tmux. Idempotent.
set -eu
DEST=${COVERLAY_HELIX_CACHE:-$HOME/.cache/coverlay-helix}
APT=$DEST/apt
command -v tmux >/dev/null || { apt-get update -q; DEBIAN_FRONTEND=noninteractive apt-get install -y -q tmux; }
[ -x "$DEST/root/usr/lib/hx/hx" ] && [ -x "$DEST/hx" ] && { echo "hx already in $DEST"; exit 0; }
mkdir -p "$APT/etc" "$APT/lists/partial" "$APT/cache/archives/partial" "$DEST/debs"
# mirror of the system's main Debian suite (deb822 file, else the one-line sources.list)
MIRROR=$(awk '/^URIs:/{u=$2} /^Suites:/ && $2 ~ /^[a-z]+$/ {print u; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
[ -n "$MIRROR" ] || MIRROR=$(awk '$1=="deb" && $3 !~ /-/ {print $2; exit}' /etc/apt/sources.list)
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $MIRROR unstable main" > "$APT/etc/sources.list"
O="-o Dir::Etc::sourcelist=$APT/etc/sources.list -o Dir::Etc::sourceparts=- -o Dir::State::lists=$APT/lists -o Dir::Cache=$APT/cache"
apt-get $O update -q
cd "$DEST/debs"
apt-get $O download hx libc6/unstable libgcc-s1/unstable
mkdir -p "$DEST/root"
for d in *.deb; do dpkg-deb -x "$d" "$DEST/root"; done
cat > "$DEST/hx" <<EOW
#!/bin/sh
# Run Debian unstable's hx with its own glibc (extracted into ./root) without touching the system.
R=$DEST/root
export HELIX_RUNTIME="\${HELIX_RUNTIME:-\$R/usr/lib/hx/runtime}"
exec "\$R/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" --library-path "\$R/usr/lib/x86_64-linux-gnu" "\$R/usr/lib/hx/hx" "\$@"
EOW
chmod +x "$DEST/hx"
"$DEST/hx" --version
