"""The portal's OpenID Connect settings are checked when the configuration loads: the
issuer over https (plain http only on loopback), with a client id and a secret."""

from __future__ import annotations

import pytest

from portal.config import ConfigError, PortalConfig

GOOD = {"oidc_issuer": "https://id.example.test/realms/staff", "oidc_client_id": "qsign",
        "oidc_client_secret": "s3cret"}


def test_a_complete_provider_loads() -> None:
    config = PortalConfig.from_mapping({"portal": GOOD})
    assert (config.oidc_issuer, config.oidc_client_id) == (GOOD["oidc_issuer"], "qsign")
    loopback = PortalConfig.from_mapping({"portal": {**GOOD,
                                                     "oidc_issuer": "http://127.0.0.1:9000"}})
    assert loopback.oidc_issuer == "http://127.0.0.1:9000"


@pytest.mark.parametrize(("change", "named"), [
    ({"oidc_issuer": "http://id.example.test"}, "oidc_issuer"),
    ({"oidc_issuer": "id.example.test"}, "oidc_issuer"),
    ({"oidc_client_id": None}, "oidc_client_id"),
    ({"oidc_client_secret": None}, "oidc_client_secret"),
    ({"oidc_name": 3}, "oidc_name"),
])
def test_an_incomplete_or_plain_http_provider_is_refused(change: dict[str, object],
                                                         named: str) -> None:
    section = {k: v for k, v in {**GOOD, **change}.items() if v is not None}
    with pytest.raises(ConfigError, match=named):
        PortalConfig.from_mapping({"portal": section})
