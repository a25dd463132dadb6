"""The TRAFFIC log level (below DEBUG) for APDU and PKCS#11 traces, as yubikit does.

Traces at this level are off unless asked for (QSIGN_LOG_LEVEL=TRAFFIC) and never
carry PIN bytes: callers mask them before logging.
"""

from __future__ import annotations

import logging
import os

TRAFFIC = 5
logging.addLevelName(TRAFFIC, "TRAFFIC")


def level_from_env(default: int, variable: str = "QSIGN_LOG_LEVEL") -> int:
    """A level from the environment: a number or a name (TRAFFIC, DEBUG, INFO, ...)."""
    raw = os.environ.get(variable, "").strip()
    if not raw:
        return default
    if raw.isdigit():
        return int(raw)
    level = logging.getLevelName(raw.upper())
    if not isinstance(level, int):
        raise ValueError(f"{variable}={raw!r} is not a log level")
    return level
