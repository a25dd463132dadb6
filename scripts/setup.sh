#!/usr/bin/env bash
# Idempotent set-up on a fresh Debian machine: system packages (only the missing
# ones), then the project's virtualenv with its dev tools.
set -euo pipefail
cd "$(dirname "$0")/.."

SYSTEM_PACKAGES=(
  pcscd             # PC/SC daemon
  vsmartcard-vpcd   # virtual reader driver the simulated card plugs into
  libpcsclite-dev   # headers for pyscard
  swig              # pyscard's build
  opensc            # pkcs11-tool, piv-tool
  opensc-pkcs11     # opensc-pkcs11.so
  softhsm2          # a software PKCS#11 token
  util-linux        # unshare: private pcscd for tests
  postgresql        # the CA registry on PostgreSQL (tests start their own cluster)
  openssl           # interop tests: openssl ocsp / ts / crl / x509
  procps
  chromium          # browser e2e tests (Playwright drives /usr/bin/chromium; no browser download)
  tesseract-ocr     # identity service: reads the MRZ of ID documents
  tesseract-ocr-eng # tesseract's stock English model
  fonts-ocr-b       # OCR-B (public domain, Matthew Skala/Norbert Schwarz) for specimen MRZs
  fonts-dejavu-core # DejaVu Sans: the specimens' printed side, accents included
  systemd           # systemd-analyze (unit checks), systemd-socket-activate (tests)
  iproute2          # ip netns: fleet discovery tests in network namespaces
)

missing=()
for p in "${SYSTEM_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing system packages (${missing[*]}); run as root or install them" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.qsign-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[dev]'
  touch "$stamp"
fi
