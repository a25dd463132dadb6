"""SECURITY.md #43 (the portal's half): a state-changing signer or Personal Space request
that another site made the signer's browser send is refused (CROSS_SITE, 403) and
changes nothing; the portal's own pages and programs still get through
(portal/cross_site.py). Against a real portal on a loopback port. Chromium's side is in
tests/e2e/test_portal_cross_site.py."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from tests.support.portal_service import RunningPortal, running_portal

EVIL = "http://evil.example.test:8080"
PUBLIC = "https://sign.example.test"  # behind a reverse proxy: not the Host the portal sees
FORGED = json.dumps({"reason": "forged by another site"})


async def _post(portal: RunningPortal, path: str, body: str, headers: dict[str, str]
                ) -> tuple[int, Any]:
    async with portal.session.post(portal.url + path, data=body.encode(),
                                   headers=headers) as response:
        return response.status, await response.json()


async def _at_documents(portal: RunningPortal) -> str:
    tx = await portal.create(signers=1, documents=1)
    invite = portal.invite_path(tx, 0)
    await portal.consent(invite)
    return invite


def test_cross_site_requests_are_refused_and_change_nothing(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_portal(tmp_path, public_url=PUBLIC + "/") as portal:
            invite = await _at_documents(portal)
            space = portal.state.space_url("s1@example.test").split("/me/", 1)[1]
            forged = [
                # A form (enctype=text/plain) posted from another site, by today's browsers
                {"Content-Type": "text/plain", "Origin": EVIL, "Sec-Fetch-Site": "cross-site"},
                # ... by a browser that sends neither header
                {"Content-Type": "text/plain"},
                {"Content-Type": "application/x-www-form-urlencoded"},
                # A fetch() from another site, if it ever got past the preflight
                {"Content-Type": "application/json", "Origin": EVIL},
                {"Content-Type": "application/json", "Origin": "null"},
                {"Content-Type": "application/json", "Sec-Fetch-Site": "same-site"},
                # Sec-Fetch-Site is the browser's own verdict: a matching Origin cannot undo it
                {"Content-Type": "application/json", "Origin": portal.url,
                 "Sec-Fetch-Site": "cross-site"},
            ]
            paths = [f"/api/s/{invite}/{route}" for route in (
                "refuse", "accept", "restart", "messages", "consents", "certificates/check",
                "sign/prepare", "sign/complete", "enrolment/start")]
            paths += [f"/api/me/{space}/otp", f"/api/me/{space}/session"]
            for headers in forged:
                for path in paths:
                    status, answer = await _post(portal, path, FORGED, headers)
                    assert (status, answer["error"]) == (403, "CROSS_SITE"), (path, headers,
                                                                             answer)
            view = await portal.call("GET", f"/api/s/{invite}")
            assert view["step"] == "documents" and view["signer"]["refusalReason"] is None
            assert await portal.call("GET", f"/api/s/{invite}/messages") == {"messages": []}
            assert portal.sms("+33612345670") == []
            mails = await asyncio.to_thread(portal.store.mails, to="agence@example.test")
            assert mails == [], [m.subject for m in mails]

            # The portal's own page (same origin, as the browser says) is not a JSON
            # bypass either: its body must say it is JSON.
            status, answer = await _post(portal, f"/api/s/{invite}/refuse", FORGED, {
                "Content-Type": "text/plain", "Sec-Fetch-Site": "same-origin"})
            assert (status, answer["error"]) == (415, "UNSUPPORTED_MEDIA_TYPE"), answer
            # Same origin: by the browser's Sec-Fetch-Site, or by Origin alone.
            status, answer = await _post(portal, f"/api/s/{invite}/messages", json.dumps(
                {"text": "a question"}), {"Content-Type": "application/json",
                                          "Origin": portal.url})
            assert status == 201, answer
            status, view = await _post(portal, f"/api/s/{invite}/refuse", FORGED, {
                "Content-Type": "application/json", "Origin": portal.url,
                "Sec-Fetch-Site": "same-origin"})
            assert status == 200 and view["step"] == "refused", view

            # The configured public origin passes; so does a program (JSON, no Origin).
            invite = await _at_documents(portal)
            status, answer = await _post(portal, f"/api/s/{invite}/accept", "{}", {
                "Content-Type": "application/json", "Origin": PUBLIC})
            assert status == 200 and answer["step"] == "sign", answer
            invite = await _at_documents(portal)
            view = await portal.call("POST", f"/api/s/{invite}/refuse", {"reason": "no"})
            assert view["step"] == "refused"

    asyncio.run(main())
