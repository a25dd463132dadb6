"""`qsign portal admin EMAIL` at the machine makes an account a service administrator
(only there, like the bootstrap token): run as a real process on the portal's database,
the account then sees every workspace, and `--remove` takes that back; an unknown
address exits 1; each change is in the audit log."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from portal import audit
from portal.accounts.credentials import hash_password, new_totp_secret
from tests.support.accounts import Browser, accounts
from tests.support.portal_service import RunningPortal, running_portal

PASSWORD = "correct horse battery"


def _admin(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "qsign", "portal", "admin", "--config",
                           str(config), *args], capture_output=True, text=True, timeout=120)


async def _scenario(portal: RunningPortal, config: Path) -> None:
    store = accounts(portal)
    store.create_workspace("Agence A", None)
    store.create_workspace("Agence B", None)
    sam = store.create_user(email="sam@example.test", name="Sam", lang="en",
                            password_hash=hash_password(PASSWORD))
    secret = new_totp_secret()
    store.set_totp(sam.id, secret, 0)
    async with Browser(portal) as browser:
        await browser.call("POST", "/api/auth/password",
                           {"email": "sam@example.test", "password": PASSWORD})
        await browser.refresh()
        portal.clock.advance(seconds=30)
        await browser.call("POST", "/api/auth/totp", {"code": browser.code(secret)})

        async def seen() -> set[str]:
            return {w["name"] for w in
                    (await browser.call("GET", "/api/v1/workspaces"))["workspaces"]}

        assert await seen() == set()
        made = await asyncio.to_thread(_admin, config, "SAM@example.test")
        assert made.returncode == 0, made.stderr
        assert "service administrator" in made.stdout
        assert {"Agence A", "Agence B", "Default workspace"} <= await seen()
        taken = await asyncio.to_thread(_admin, config, "sam@example.test", "--remove")
        assert taken.returncode == 0, taken.stderr
        assert await seen() == set()
    unknown = await asyncio.to_thread(_admin, config, "nobody@example.test")
    assert unknown.returncode == 1 and "no account" in unknown.stdout
    actions = [e.action for e in audit.entries(portal.store.db, limit=500)]
    assert actions.count("account.service-admin") == 2


def test_qsign_portal_admin_flags_and_unflags_an_account(tmp_path: Path) -> None:
    config = tmp_path / "portal.toml"
    config.write_text(f'[portal]\nstate_dir = "{tmp_path / "portal"}"\n')

    async def main() -> None:
        async with running_portal(tmp_path) as portal:
            await _scenario(portal, config)
    asyncio.run(main())
