"""The master console (issue 15) on a real portal on loopback: its routes refuse anyone
but the service administrator; suspending a workspace turns its member's API token away
from the workspace's routes (FORBIDDEN, saying why) until it is resumed; usage counts
the store's transactions; each change is in the audit log, whose chain verifies; a
workspace's accepted identity documents are set by its admin and refused outside what
the identity service supports, naming the field."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from portal.accounts import Role
from portal.enrolment import CODE_PURPOSE
from tests.support.portal_service import RunningPortal, running_portal
from tests.support.workspace_members import call_as, member_token


async def _get(portal: RunningPortal, path: str, token: str, expect: int) -> Any:
    return await call_as(portal, token, "GET", path, expect)


def test_console(tmp_path: Path, database_url: str) -> None:
    async def main() -> None:  # SQLite and PostgreSQL: the usage queries join five tables
        async with running_portal(tmp_path, database_url=database_url) as portal:
            workspace, token = await member_token(portal, Role.ADMIN)
            for path in ("workspaces", "users", "usage", "audit"):
                refused = await _get(portal, f"/api/v1/console/{path}", token, 403)
                assert refused["error"] == "FORBIDDEN"
            await portal.call("POST", f"/api/v1/console/workspaces/{workspace}/suspension",
                              {"suspended": True}, expect=401)  # no credential at all

            listed = await portal.call("GET", "/api/v1/console/workspaces", auth=True)
            [mine] = [w for w in listed["workspaces"] if w["id"] == workspace]
            assert [m["role"] for m in mine["members"]] == ["admin"]

            documents = f"/api/v1/workspaces/{workspace}/identity-documents"
            await _get(portal, documents, token, 200)
            await portal.call("POST", f"/api/v1/console/workspaces/{workspace}/suspension",
                              {"suspended": True}, auth=True)
            refused = await _get(portal, documents, token, 403)
            assert (refused["error"], refused["message"]) == (
                "FORBIDDEN", "this workspace is suspended")
            await portal.call("POST", f"/api/v1/console/workspaces/{workspace}/suspension",
                              {"suspended": False}, auth=True)
            await _get(portal, documents, token, 200)
            [member] = mine["members"]  # an account suspended: its token is refused too
            await portal.call("POST", f"/api/v1/console/users/{member['userId']}/suspension",
                              {"suspended": True}, auth=True)
            refused = await _get(portal, documents, token, 401)
            assert refused["message"] == "this account is suspended"
            await portal.call("POST", f"/api/v1/console/users/{member['userId']}/suspension",
                              {"suspended": False}, auth=True)
            await _get(portal, documents, token, 200)

            facts = await portal.call("GET", "/api/v1/start")  # getting started's path
            assert facts["agentPort"] == portal.config.agent_port
            sample = await portal.call("GET", facts["sample"])
            assert sample.startswith(b"%PDF-")
            for page in ("/console", f"/workspace/{workspace}/start",
                         f"/workspace/{workspace}/identity-documents"):
                assert b"<main" in await portal.call("GET", page)
            tx = await portal.create(signers=1, documents=1)
            signer, document = tx["signers"][0]["id"], tx["documents"][0]["id"]
            store = portal.store  # a signed version and texted codes, as the desks leave them
            for purpose, subject, sends in ((CODE_PURPOSE, f"{signer}/0", 2),
                                            ("space", "s1@example.test", 1)):
                otp = store.new_otp_session(purpose=purpose, subject=subject,
                                            phone="+33612345670", hashes=[])
                with store.db.transaction() as cur:
                    store.update_otp_session(cur, otp, sends=sends)
            with store.db.transaction() as cur:
                cur.execute("INSERT INTO document_versions (document_id, version, sha256, "
                            "size, signer_id, created_at) VALUES (?, 1, ?, 1, ?, ?)",
                            (document, "b" * 64, signer, store.clock().isoformat()))
            usage = await portal.call("GET", "/api/v1/console/usage?months=1", auth=True)
            month = store.clock().strftime("%Y-%m")
            assert {(r["month"], r["workspace"], r["transactions"], r["signatures"],
                     r["sms"]) for r in usage["usage"]} == {
                (month, "default", 1, 1, 2), (month, None, 0, 0, 1)}
            await portal.call("GET", "/api/v1/console/usage?months=0", auth=True,
                              expect=400)

            log = await portal.call("GET", "/api/v1/console/audit", auth=True)
            assert log["verify"]["ok"] is True
            assert [e["action"] for e in log["entries"][:4]] == [
                "user.resume", "user.suspend", "workspace.resume", "workspace.suspend"]
            assert log["entries"][0]["actor"] == "bootstrap"
    asyncio.run(main())


def test_accepted_documents_are_set_by_an_admin_within_the_service(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_portal(tmp_path) as portal:
            workspace, admin = await member_token(portal, Role.ADMIN)
            _, viewer = await member_token(portal, Role.VIEWER, workspace)
            path = f"/api/v1/workspaces/{workspace}/identity-documents"

            async def put(token: str, body: Any, expect: int) -> Any:
                return await call_as(portal, token, "PUT", path, expect, body)

            assert (await put(viewer, {"accepted": None}, 403))["error"] == "FORBIDDEN"
            refused = await put(admin, {"accepted": {"GBR": ["id-card"]}}, 400)
            assert refused["field"] == "accepted.GBR"
            refused = await put(admin, {"accepted": {"XYZ": ["passport"]}}, 400)
            assert refused["field"] == "accepted.XYZ"
            chosen = await put(admin, {"accepted": {"DEU": ["id-card"], "FRA": ["passport",
                                                                           "id-card"]}}, 200)
            assert chosen["restricted"] is True
            assert [(s["state"], s["documents"]) for s in chosen["accepted"]] == [
                ("D", ["id-card"]), ("FRA", ["id-card", "passport"])]
            assert (await put(admin, {"accepted": None}, 200))["restricted"] is False
            log = await portal.call("GET", "/api/v1/console/audit", auth=True)
            assert [e["action"] for e in log["entries"]] == [
                "workspace.identity-documents"] * 2
            assert log["entries"][1]["details"] == {"accepted": {
                "D": ["id-card"], "FRA": ["id-card", "passport"]}}
    asyncio.run(main())
