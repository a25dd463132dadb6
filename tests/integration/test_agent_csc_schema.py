"""The CSC REST facade checks each route's body against its JSON Schema, as the WebSocket
methods are checked: a real agent on loopback answers a malformed field with a typed
400 `invalid_params` naming the field and the rule (never the value: it may be a PIN),
and passes the bodies pyHanko's CSCSigner and CSC v2 clients send to the handlers."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

from tests.support.agent_ws import Agent, with_agent

HASH = base64.b64encode(hashlib.sha256(b"a document").digest()).decode()
CREDENTIAL = "no-such-token/9C"
PIN = "48151623"

MALFORMED: list[tuple[str, dict[str, Any], str]] = [
    ("credentials/authorize", {"credentialID": CREDENTIAL, "hash": [HASH], "PIN": 48151623,
                               "OTP": "123456"}, "PIN: fails 'type'"),
    ("credentials/authorize", {"credentialID": CREDENTIAL, "PIN": PIN, "OTP": "123456"},
     "hash: fails 'required'"),
    ("credentials/authorize", {"credentialID": CREDENTIAL, "hashes": HASH, "PIN": PIN,
                               "OTP": "123456"}, "hashes: fails 'type'"),
    ("credentials/authorize", {"credentialID": CREDENTIAL, "hash": [HASH], "PIN": PIN,
                               "OTP": "123456", "numSignatures": "1"},
     "numSignatures: fails 'type'"),
    ("credentials/authorize", {"credentialID": CREDENTIAL, "hash": [HASH], "OTP": "123456"},
     "PIN: fails 'required'"),
    ("signatures/signHash", {"credentialID": CREDENTIAL, "SAD": "x" * 40,
                             "signAlgo": "1.2.840.10045.4.3.2", "hash": [HASH] * 101},
     "hash: fails 'maxItems'"),
    ("signatures/signHash", {"credentialID": CREDENTIAL, "SAD": "x" * 101,
                             "signAlgo": "1.2.840.10045.4.3.2", "hash": [HASH]},
     "SAD: fails 'maxLength'"),
    ("credentials/sendOTP", {"credentialID": CREDENTIAL, "otpSession": "an otp session",
                             "hash": [HASH]}, "otpSession: fails 'pattern'"),
    ("credentials/sendOTP", {"credentialID": CREDENTIAL, "hash": [HASH]},
     "otpSession: fails 'required'"),
    ("credentials/info", {"credentialID": CREDENTIAL, "certificates": "all"},
     "certificates: fails 'enum'"),
    ("credentials/info", {"certificates": "chain"}, "credentialID: fails 'required'"),
    ("credentials/list", {"onlyValid": "yes"}, "onlyValid: fails 'type'"),
    ("info", {"lang": 5}, "lang: fails 'type'"),
]

# What pyHanko's CSCSigner (v1) and a CSC v2 client send: past the schema, to the handler.
WELL_FORMED: list[tuple[str, str, dict[str, Any]]] = [
    ("v1", "credentials/info", {"credentialID": CREDENTIAL, "certificates": "chain",
                                "certInfo": False}),
    ("v1", "credentials/authorize", {"credentialID": CREDENTIAL, "hash": [HASH],
                                     "numSignatures": 1, "PIN": PIN, "OTP": "123456"}),
    ("v1", "signatures/signHash", {"credentialID": CREDENTIAL, "SAD": "x" * 40,
                                   "hashAlgo": "2.16.840.1.101.3.4.2.1",
                                   "signAlgo": "1.2.840.10045.4.3.2", "hash": [HASH]}),
    ("v2", "credentials/info", {"credentialID": CREDENTIAL, "certificates": "single",
                                "certInfo": True, "authInfo": True, "lang": "fr-FR"}),
    ("v2", "credentials/authorize", {"credentialID": CREDENTIAL, "hashes": [HASH],
                                     "hashAlgorithmOID": "2.16.840.1.101.3.4.2.1",
                                     "numSignatures": 1, "PIN": PIN, "OTP": "123456"}),
    ("v2", "signatures/signHash", {"credentialID": CREDENTIAL, "SAD": "x" * 40,
                                   "hashes": [HASH], "signAlgo": "1.2.840.10045.4.3.2",
                                   "hashAlgorithmOID": "2.16.840.1.101.3.4.2.1",
                                   "clientData": "batch 7"}),
]


def _headers(agent: Agent) -> dict[str, str]:
    token = (agent.config.state_dir / "csc.token").read_text().strip()
    return {"Authorization": f"Bearer {token}", "Host": f"127.0.0.1:{agent.config.port}"}


def test_malformed_csc_bodies_are_typed_400s_naming_the_field(tmp_path: Path) -> None:
    @with_agent(tmp_path)
    async def scenario(agent: Agent) -> None:
        for version in ("v1", "v2"):
            for route, body, expected in MALFORMED:
                async with agent.session.post(f"{agent.url}/csc/{version}/{route}",
                                              json=body, headers=_headers(agent)) as answer:
                    reply = await answer.json()
                    assert answer.status == 400, (version, route, reply)
                    assert reply["error"] == "invalid_params", (version, route, reply)
                    assert reply["error_description"] == expected, (version, route, reply)
                    assert PIN not in str(reply) and "48151623" not in str(reply)



def test_csc_v1_and_v2_bodies_reach_the_handlers(tmp_path: Path) -> None:
    @with_agent(tmp_path)
    async def scenario(agent: Agent) -> None:
        for version, route, body in WELL_FORMED:
            async with agent.session.post(f"{agent.url}/csc/{version}/{route}", json=body,
                                          headers=_headers(agent)) as answer:
                reply = await answer.json()
                # No such token: a domain refusal from the handler, not a schema one.
                assert answer.status == 400, (version, route, reply)
                assert reply["error"] not in ("invalid_params", "bad_request"), (route, reply)
        async with agent.session.post(f"{agent.url}/csc/v1/signatures/signHash", json={
                "credentialID": CREDENTIAL, "SAD": "x" * 40, "signAlgo": "1.2.3.4",
                "hash": [HASH]}, headers=_headers(agent)) as answer:
            assert (await answer.json())["error"] == "unsupported"
        async with agent.session.post(f"{agent.url}/csc/v2/info", json={"lang": "en"},
                                      headers=_headers(agent)) as answer:
            assert answer.status == 200 and "signatures/signHash" in (
                await answer.json())["methods"]
