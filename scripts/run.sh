#!/usr/bin/env bash
# The main job: pcscd with the vpcd reader, and a simulated card in it.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN_DIR=${RUN_DIR:-run}
mkdir -p "$RUN_DIR"
export QSIGN_SIM_MANUFACTURER=${QSIGN_SIM_MANUFACTURER:-$PWD/$RUN_DIR/manufacturer}

if ! pgrep -x pcscd >/dev/null; then
  echo "run: starting pcscd"
  pcscd
  for _ in $(seq 50); do [ -S /run/pcscd/pcscd.comm ] && break; sleep 0.1; done
  [ -S /run/pcscd/pcscd.comm ] || { echo "run: pcscd did not start" >&2; exit 1; }
fi

if [ ! -f "$RUN_DIR/card.json" ]; then
  .venv/bin/qsign card init --state "$RUN_DIR/card.json"
fi
.venv/bin/qsign card status --state "$RUN_DIR/card.json"
echo "run: card in reader 'Virtual PCD 00 00'; try: opensc-tool -n  /  pkcs11-tool -L"
echo "run: control socket $RUN_DIR/card.sock (qsign card ctl --control $RUN_DIR/card.sock remove|insert|status)"
exec .venv/bin/qsign -v card run --state "$RUN_DIR/card.json" --control "$RUN_DIR/card.sock"
