#!/usr/bin/env bash
# Build the qsign wheel and the Debian package (dpkg-deb; no debhelper needed).
#
#   packaging/build-deb.sh [--version VERSION] [--out DIR]
#
# The package carries the agent and its Python dependencies in /usr/lib/qsign/python
# (pinned to the versions in .venv, which the tests ran), a launcher /usr/bin/qsign,
# the systemd units, the default enterprise policy /etc/qsign/agent.toml (a conffile)
# and the Chromium policy example. The dependencies come from PyPI through pip (or
# the mirror in PIP_INDEX_URL) once, then from a cache keyed by their pins
# (QSIGN_DEB_CACHE, default build/deb-cache).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

VERSION=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' ground/__init__.py)
OUT=$REPO/dist
while [ $# -gt 0 ]; do
  case "$1" in
    --version) VERSION=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    *) echo "build-deb: unknown argument $1" >&2; exit 2 ;;
  esac
done
[[ "$VERSION" =~ ^[0-9][A-Za-z0-9.+~-]*$ ]] || { echo "build-deb: bad version $VERSION" >&2; exit 2; }
for tool in dpkg-deb dpkg; do
  command -v "$tool" >/dev/null || { echo "build-deb: $tool is missing" >&2; exit 1; }
done
PY=$REPO/.venv/bin/python
[ -x "$PY" ] || { echo "build-deb: run 'make setup' first" >&2; exit 1; }
ARCH=$(dpkg --print-architecture)
CACHE=${QSIGN_DEB_CACHE:-$REPO/build/deb-cache}
mkdir -p "$OUT" "$CACHE"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# 1. The wheel, from the working tree (tracked and new files, not ignored ones).
mkdir "$WORK/src"
git ls-files -z --cached --others --exclude-standard | xargs -0 tar -cf - | tar -xf - -C "$WORK/src"
"$PY" -m pip wheel -q --no-deps -w "$WORK/wheel" "$WORK/src"
WHEEL=$(ls "$WORK"/wheel/qsign-*.whl)
cp "$WHEEL" "$OUT/"

# 2. Runtime dependencies, pinned to what .venv runs, vendored once per pin set.
"$PY" - "$WORK" <<'PYEOF'
import sys, tomllib
from pathlib import Path
deps = tomllib.loads(Path("pyproject.toml").read_text())["project"]["dependencies"]
Path(sys.argv[1], "requirements.txt").write_text("\n".join(deps) + "\n")
PYEOF
"$PY" -m pip freeze --exclude-editable > "$WORK/constraints.txt"
KEY=$(cat "$WORK/requirements.txt" "$WORK/constraints.txt" <("$PY" -c 'import sys; print(sys.version_info[:2])') \
      | sha256sum | cut -c1-16)
DEPS=$CACHE/deps-$KEY
if [ ! -d "$DEPS" ]; then
  "$PY" -m pip install -q --no-compile --target "$DEPS.tmp" \
      -r "$WORK/requirements.txt" -c "$WORK/constraints.txt"
  rm -rf "$DEPS.tmp/bin"
  mv "$DEPS.tmp" "$DEPS"
fi

# 3. The tree.
ROOT=$WORK/root
TREE=$ROOT/usr/lib/qsign/python
mkdir -p "$TREE"
cp -a "$DEPS/." "$TREE/"
"$PY" -m pip install -q --no-compile --no-deps --target "$TREE" "$WHEEL"
rm -rf "$TREE/bin"
find "$TREE" -depth -type d -name __pycache__ -exec rm -rf {} +
# Libraries' test keys (aiosmtpd's server.key...) are public: no private key ships at all,
# so no scanner and no one is tempted to use one (SECURITY #13).
find "$TREE" -path '*/tests/*' -type f \( -name '*.key' -o -name '*.pem' -o -name '*.p12' \
    -o -name '*.pfx' \) -delete
install -D -m 0755 packaging/debian/qsign.launcher "$ROOT/usr/bin/qsign"
for kind in system user; do
  for unit in qsign-agent.service qsign-agent.socket; do
    install -D -m 0644 "systemd/$kind/$unit" "$ROOT/usr/lib/systemd/$kind/$unit"
  done
done
install -D -m 0644 packaging/agent.toml "$ROOT/etc/qsign/agent.toml"
install -D -m 0644 packaging/chromium-policy.json "$ROOT/usr/share/qsign/chromium-policy.json"
install -D -m 0644 packaging/debian/qsign-agent-pcsc.rules \
    "$ROOT/usr/share/polkit-1/rules.d/60-qsign-agent-pcsc.rules"
install -D -m 0644 README.md "$ROOT/usr/share/doc/qsign/README.md"
printf 'qsign\nLicense: Apache-2.0\nBundled Python packages keep their own licenses in\n/usr/lib/qsign/python/*.dist-info.\n' \
    > "$ROOT/usr/share/doc/qsign/copyright"

# 4. Control files and the package.
mkdir -p "$ROOT/DEBIAN"
SIZE=$(du -sk --exclude=DEBIAN "$ROOT" | cut -f1)
sed -e "s/@VERSION@/$VERSION/" -e "s/@ARCH@/$ARCH/" -e "s/@SIZE@/$SIZE/" \
    packaging/debian/control.in > "$ROOT/DEBIAN/control"
install -m 0644 packaging/debian/conffiles "$ROOT/DEBIAN/conffiles"
for script in postinst prerm postrm; do
  install -m 0755 "packaging/debian/$script" "$ROOT/DEBIAN/$script"
done
(cd "$ROOT" && find . -path ./DEBIAN -prune -o -type f ! -path './etc/*' -printf '%P\0' \
    | sort -z | xargs -0 md5sum > DEBIAN/md5sums)
DEB=$OUT/qsign_${VERSION}_${ARCH}.deb
dpkg-deb --root-owner-group -Zgzip --build "$ROOT" "$DEB" >/dev/null
echo "$(basename "$WHEEL") -> $OUT"
echo "$DEB"
