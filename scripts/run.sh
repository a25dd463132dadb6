#!/usr/bin/env bash
# The main job: `qsign demo` runs the whole stack on the embedded defaults (pcscd with the
# vpcd reader and a simulated card, the CA, the agent, the portal on SQLite, an SMTP
# sink) and prints the portal's address and a ready invitation link. State in run/.
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/qsign demo --dir "${RUN_DIR:-run}" "$@"
