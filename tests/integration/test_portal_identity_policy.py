"""The portal's `[identity]` table configures its reference identity service: a state
that accepts only passports refuses an ID card, over the mounted HTTP routes."""

from __future__ import annotations

import asyncio
import tomllib
from pathlib import Path

import pytest

from portal.config import ConfigError, PortalConfig
from portal.identity.model import DocumentKind
from portal.identity.mrz import DocumentFormat
from portal.routes.state import PORTAL
from portal.service import create_app
from portal.store import Store
from tests.support.identity_fixtures import make_specimen

CONFIG = """
[portal]
state_dir = "{state}"
[identity]
accept_specimens = true
accepted = {{ FRA = ["passport"], DEU = ["id-card", "passport"] }}
"""


def test_identity_table_reaches_the_mounted_service(tmp_path: Path) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    path = tmp_path / "portal.toml"
    path.write_text(CONFIG.format(state=tmp_path / "state"))
    config = PortalConfig.load(path)

    async def main() -> None:
        store = Store.open(None, config.state_dir)
        app = create_app(config, store=store)
        async with TestClient(TestServer(app)) as client:
            identity = app[PORTAL].enrolment.identity
            session = identity.open_session("signer-1", DocumentKind.ID_CARD)
            card = make_specimen(DocumentFormat.TD1, country="FRA", surname="Curie",
                                 given_names="Marie")
            for side, image in card.images.items():  # the MRZ (on the back) names FRA
                response = await client.put(
                    f"/api/identity/sessions/{session.id}/sides/{side.value}", data=image,
                    headers={"Content-Type": "image/png"})
                answer = await response.json()
            assert response.status == 422, answer
            assert answer["error"] == "DOCUMENT_NOT_ACCEPTED", answer

    asyncio.run(main())


def test_a_broken_identity_table_is_a_config_error(tmp_path: Path) -> None:
    for table in ('[identity]\nchallenges = "three"\n', '[identity]\nnope = 1\n',
                  '[identity]\naccepted = { XXX = ["passport"] }\n'):
        with pytest.raises(ConfigError, match=r"\[identity\]"):
            PortalConfig.from_mapping(tomllib.loads(table), "portal.toml")
