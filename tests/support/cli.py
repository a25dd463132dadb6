"""`qsign` as a person runs it: a child process of this interpreter."""

from __future__ import annotations

import subprocess
import sys


def run_qsign(*args: str, env: dict[str, str] | None = None, timeout: float = 120,
              input_text: str | None = None) -> subprocess.CompletedProcess[str]:
    """`qsign ARGS...` to its end, `input_text` on its standard input, its output
    captured as text."""
    return subprocess.run([sys.executable, "-m", "qsign", *args], capture_output=True,
                          text=True, timeout=timeout, env=env, input=input_text)
