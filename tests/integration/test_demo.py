"""`qsign demo` (what `make run` starts) in a throwaway mount and network namespace: its
own pcscd, card, CA, agent, portal and SMTP sink on a private loopback. It must come up,
enrol the card through the CA, and print an invitation link that the portal answers; a
third start with `--fresh-card` sets the enrolled card aside for a factory-fresh one, and
Ctrl-C (SIGINT) stops everything the demo started, its pcscd included."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path


def test_demo_comes_up_and_enrols_the_card(tmp_path: Path) -> None:
    demo = tmp_path / "run"
    third = tmp_path / "third.out"
    script = f"""
set -e
ip link set lo up
mkdir -p /run/pcscd && mount -t tmpfs tmpfs /run/pcscd
trap 'kill "$(cat /run/pcscd/pcscd.pid)" 2>/dev/null || true' EXIT
{sys.executable} -m qsign demo --dir {demo} --no-wait
{sys.executable} -m qsign demo --dir {demo} --no-wait
{sys.executable} -m qsign portal outbox --config {demo}/portal.toml --json
{sys.executable} -m qsign demo --dir {demo} --fresh-card > {third} 2>&1 &
DEMO=$!
until grep -q "sign now" {third}; do kill -0 $DEMO; sleep 0.2; done
# The pcscd listening in this network namespace is the demo's own.
PCSCD=$(ss -xlpn | grep -o 'pcscd",pid=[0-9]*' | head -1 | cut -d= -f2)
test -n "$PCSCD"
echo "demo pcscd: $PCSCD"
kill -INT $DEMO
wait $DEMO || echo "demo exit: $?"
if kill -0 "$PCSCD" 2>/dev/null; then echo "pcscd still running"; exit 1; fi
test ! -e /run/pcscd/pcscd.comm
echo "pcscd stopped"
{sys.executable} -m qsign card status --state {demo}/card.json
"""
    env = {k: v for k, v in os.environ.items() if k != "PCSCLITE_CSOCK_NAME"}
    result = subprocess.run(["unshare", "--mount", "--net", "bash", "-c", script],
                            capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    links = re.findall(r"sign now\s+(http://127\.0\.0\.1:8780/s/\S+)", result.stdout)
    assert len(links) == 2 and links[0] == links[1], result.stdout  # reused, not remade
    assert "Surname: Martin" in result.stdout and "IDCFR-DEMO0001" in result.stdout
    ca_log = (demo / "ca.log").read_text()
    assert ca_log.count("POST /v1/enrol") == 1  # the second start found the certificate
    assert (demo / "portal" / "portal.sqlite").exists()
    # --fresh-card: the enrolled card set aside, a factory-fresh one in its place.
    fresh = third.read_text()
    assert "the previous card is set aside in" in fresh, fresh
    assert "certificate: none yet" in fresh, fresh
    assert len(list(demo.glob("card-replaced-*.json"))) == 1
    assert "slots: none in use" in result.stdout, result.stdout
    # Ctrl-C: the demo's pcscd is gone with it (checked in the script).
    assert "pcscd stopped" in result.stdout, result.stdout
