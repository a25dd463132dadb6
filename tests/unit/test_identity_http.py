"""The identity sub-application's HTTP surface on loopback, where no OCR is needed:
typed error bodies, size limits, media types, the QR hand-off; and the specimen CLI."""

from __future__ import annotations

import asyncio
import base64
import io
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from PIL import Image

from portal.identity import mrz
from portal.identity.http import STATUS
from portal.identity.service import ReferenceIdentityService
from tests.support.identity_fixtures import first_signer, identity_app, make_service

Scenario = Callable[[aiohttp.ClientSession, str], Awaitable[None]]


def _serve(service: ReferenceIdentityService, scenario: Scenario, *,
           with_signer: bool = True) -> None:
    async def run() -> None:
        async with identity_app(service, signer_of=first_signer if with_signer else None
                                ) as (http, base):
            await scenario(http, base)

    asyncio.run(run())


async def _error(response: aiohttp.ClientResponse, code: str) -> dict[str, object]:
    body = await response.json()
    assert body["error"] == code, body
    assert isinstance(body["message"], str) and body["message"]
    assert response.status == STATUS[code]
    return dict(body)


def test_errors_are_typed() -> None:
    service, _ = make_service(max_image_bytes=10_000)

    async def scenario(http: aiohttp.ClientSession, base: str) -> None:
        async with http.post(f"{base}/sessions", json={"document": "visa"}) as r:
            await _error(r, "BAD_REQUEST")
        async with http.post(f"{base}/sessions", data=b"{", headers={
                "Content-Type": "application/json"}) as r:
            await _error(r, "BAD_REQUEST")
        async with http.post(f"{base}/sessions", data=b"document=id-card", headers={
                "Content-Type": "application/x-www-form-urlencoded"}) as r:
            await _error(r, "UNSUPPORTED_MEDIA_TYPE")
        async with http.post(f"{base}/sessions", json={"document": "id-card", "x": 1}) as r:
            await _error(r, "BAD_REQUEST")
        async with http.post(f"{base}/sessions", json={"document": "id-card"}) as r:
            assert r.status == 201
            sid = (await r.json())["session"]
        async with http.get(f"{base}/sessions/unknown") as r:
            await _error(r, "IDENTITY_SESSION_UNKNOWN")
        async with http.put(f"{base}/sessions/{sid}/sides/left", json={"image": ""}) as r:
            await _error(r, "BAD_REQUEST")
        async with http.put(f"{base}/sessions/{sid}/sides/front", data=b"\x89PNG" * 5000,
                            headers={"Content-Type": "image/png"}) as r:
            await _error(r, "PAYLOAD_TOO_LARGE")
        async with http.put(f"{base}/sessions/{sid}/sides/front",
                            json={"image": base64.b64encode(b"x" * 20_000).decode()}) as r:
            await _error(r, "PAYLOAD_TOO_LARGE")
        async with http.put(f"{base}/sessions/{sid}/sides/front",
                            json={"image": "not base64!"}) as r:
            await _error(r, "BAD_REQUEST")
        async with http.put(f"{base}/sessions/{sid}/sides/front", json={
                "image": base64.b64encode(b"GIF89a").decode()}) as r:
            await _error(r, "IMAGE_INVALID")
        form = aiohttp.FormData()
        form.add_field("picture", b"x", filename="a.png", content_type="image/png")
        async with http.put(f"{base}/sessions/{sid}/sides/back", data=form) as r:
            await _error(r, "BAD_REQUEST")
        async with http.post(f"{base}/sessions/{sid}/challenges/next") as r:
            await _error(r, "WRONG_STEP")
        async with http.post(f"{base}/sessions/{sid}/challenges/abc",
                             json={"nonce": 1, "frames": []}) as r:
            await _error(r, "BAD_REQUEST")
        async with http.post(f"{base}/sessions/{sid}/evidence",
                             json={"publicKey": "AAAA"}) as r:
            await _error(r, "WRONG_STEP")
        async with http.get(f"{base}/sessions/{sid}/identity") as r:
            await _error(r, "WRONG_STEP")

    _serve(service, scenario)


def test_sessions_are_opened_by_the_portal_only_unless_wired() -> None:
    service, _ = make_service()

    async def scenario(http: aiohttp.ClientSession, base: str) -> None:
        async with http.post(f"{base}/sessions", json={"document": "id-card"}) as r:
            await _error(r, "UNAUTHORIZED")

    _serve(service, scenario, with_signer=False)


def test_qr_hand_off_carries_the_session() -> None:
    service, _ = make_service()
    sid = service.open_session("signer-1", "id-card").id  # type: ignore[arg-type]

    async def scenario(http: aiohttp.ClientSession, base: str) -> None:
        async with http.get(f"{base}/sessions/{sid}/handoff") as r:
            body = await r.json()
        assert body["url"] == f"https://portal.example.test/m/{sid}"
        async with http.get(f"{base}/sessions/{sid}/handoff.png") as r:
            assert r.status == 200 and r.content_type == "image/png"
            assert r.headers["Cache-Control"] == "no-store"
            image = Image.open(io.BytesIO(await r.read()))
            assert image.format == "PNG" and image.width >= 200

    _serve(service, scenario)


def test_specimen_cli(tmp_path: Path) -> None:
    def qsign(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "qsign", "portal", "specimen", *args],
                              capture_output=True, text=True, timeout=120, check=False)

    front, back = tmp_path / "front.png", tmp_path / "back.png"
    done = qsign("--type", "td1", "--country", "FRA", "--surname", "Dupont",
                 "--given", "Marie Anne", "--number", "X4RTBPFW4", "--birth", "1981-02-03",
                 "--out", str(front), str(back))
    assert done.returncode == 0, done.stderr
    lines = [line.strip() for line in done.stdout.splitlines() if line.startswith("  ")]
    found = mrz.parse(lines)
    assert (found.document_number, found.surname, found.given_names) == (
        "X4RTBPFW4", "DUPONT", "MARIE ANNE")
    assert found.birth_date.isoformat() == "1981-02-03"
    for path in (front, back):
        assert Image.open(path).size == (1027, 648)
    page = tmp_path / "page.png"
    done = qsign("--type", "td3", "--country", "ITA", "--surname", "Rossi", "--given", "Lia",
                 "--defect", "bad-check-digit", "--out", str(page))
    assert done.returncode == 0, done.stderr
    lines = [line.strip() for line in done.stdout.splitlines() if line.startswith("  ")]
    with pytest.raises(mrz.MrzInvalid) as caught:
        mrz.parse(lines)
    assert caught.value.reason is mrz.MrzReason.BAD_CHECK_DIGIT
    for bad in (["--type", "td3", "--country", "XXX", "--surname", "A", "--given", "B",
                 "--out", str(page)],
                ["--type", "td1", "--country", "FRA", "--surname", "A", "--given", "B",
                 "--out", str(page)],
                ["--type", "td3", "--country", "FRA", "--surname", "A", "--given", "B",
                 "--defect", "mismatched-sides", "--out", str(page)]):
        done = qsign(*bad)
        assert done.returncode == 2 and "error" in done.stderr
