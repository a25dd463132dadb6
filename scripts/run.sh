#!/usr/bin/env bash
# The main job: pcscd with the vpcd reader, a simulated card in it, and the local CA
# (SQLite) trusting the simulator's manufacturer root.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN_DIR=${RUN_DIR:-run}
CA_PORT=${CA_PORT:-8790}
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

if [ ! -f "$RUN_DIR/ca/ca.toml" ]; then
  .venv/bin/qsign ca init --dir "$RUN_DIR/ca" --base-url "http://127.0.0.1:$CA_PORT"
  .venv/bin/qsign card manufacturer-root > "$RUN_DIR/manufacturer-root.pem"
  .venv/bin/qsign ca trust-manufacturer "$RUN_DIR/manufacturer-root.pem" --dir "$RUN_DIR/ca"
fi
.venv/bin/qsign ca serve --dir "$RUN_DIR/ca" --port "$CA_PORT" > "$RUN_DIR/ca.log" 2>&1 &
CA_PID=$!
if [ ! -f "$RUN_DIR/agent.toml" ]; then
  printf '[agent]\nstate_dir = "%s"\ntimestamp_url = "http://127.0.0.1:%s/tsa"\n' \
    "$PWD/$RUN_DIR/agent-state" "$CA_PORT" > "$RUN_DIR/agent.toml"
fi
.venv/bin/qsign agent run --config "$RUN_DIR/agent.toml" > "$RUN_DIR/agent.log" 2>&1 &
AGENT_PID=$!
trap 'kill $CA_PID $AGENT_PID 2>/dev/null || true' EXIT INT TERM
echo "run: CA on http://127.0.0.1:$CA_PORT (OpenAPI: /openapi.json; log $RUN_DIR/ca.log)"
echo "run: agent on ws://127.0.0.1:35741/v1/ws (config $RUN_DIR/agent.toml; log $RUN_DIR/agent.log)"
echo "run: card in reader 'Virtual PCD 00 00'; try: opensc-tool -n  /  qsign tokens list"
echo "run: control socket $RUN_DIR/card.sock (qsign card ctl --control $RUN_DIR/card.sock remove|insert|status)"
.venv/bin/qsign -v card run --state "$RUN_DIR/card.json" --control "$RUN_DIR/card.sock"
