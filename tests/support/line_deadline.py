"""A child process that answers one line per input, each within a deadline: a hang in
one input fails the test on that input instead of blocking the suite."""

from __future__ import annotations

import queue
import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest


def lines_within(argv: Sequence[str], names: Sequence[str], per_line_s: float,
                 stderr: Path) -> list[str]:
    """Run `argv`; one stdout line per entry of `names`, each within `per_line_s` (the
    failure names the input it waited for). The child's stderr goes to `stderr`."""
    with stderr.open("w") as sink:  # a file: a full stderr pipe would block the child
        child = subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=sink, text=True)
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert child.stdout is not None
        for out in child.stdout:
            lines.put(out)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    answers = []
    try:
        for name in names:
            try:
                line = lines.get(timeout=per_line_s)
            except queue.Empty:
                pytest.fail(f"no answer within {per_line_s} s for {name}")
            assert line is not None, f"the child stopped before {name}: {stderr.read_text()}"
            answers.append(line)
        child.wait(per_line_s)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    return answers
