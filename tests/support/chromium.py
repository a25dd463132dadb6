"""Debian's Chromium (/usr/bin/chromium) driven by Playwright with `executable_path`
(no browser download), started the one way every browser test starts it.

Chromium flags, and why:
- --host-resolver-rules="MAP *.example.test 127.0.0.1": the pages get a real-looking
  origin (http://portal.example.test:PORT) while served on loopback (DESIGN "Tests with
  real parts"). The page's address is then loopback, so its requests to the agent on
  127.0.0.1 stay within one address space: no Local Network Access prompt or policy.
- --unsafely-treat-insecure-origin-as-secure=<page origin> (`secure_origin`): WebCrypto's
  digest (used by qsign.sha256 and the demo) exists only in secure contexts, and an
  http:// origin other than localhost is not one. A real portal is https; this flag
  stands in for it.
- --no-sandbox (root in a container), --disable-gpu, and the background-networking
  flags (this machine's closed network; .library/env/machines/python.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from playwright.async_api import Browser

CHROMIUM = Path("/usr/bin/chromium")


async def launch_chromium(playwright: Any, *, secure_origin: str | None = None,
                          args: Sequence[str] = ()) -> Browser:
    """A headless Chromium from `playwright` (an `async_playwright()` context)."""
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: run 'bash scripts/setup.sh'"
    secure = () if secure_origin is None else (
        f"--unsafely-treat-insecure-origin-as-secure={secure_origin}",)
    browser: Browser = await playwright.chromium.launch(
        executable_path=str(CHROMIUM), headless=True,
        args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update",
              "--disable-sync", "--host-resolver-rules=MAP *.example.test 127.0.0.1",
              *secure, *args])
    return browser
