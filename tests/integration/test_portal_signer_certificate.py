"""Break 7 of issue 13 (SECURITY #39), attacked from outside: the portal on loopback,
the agent on loopback with the simulated card in a private pcscd (tests/integration/
test_portal_signing.py's stack). The second invitee presents the first signer's
qualified certificate: the portal refuses it with CERTIFICATE_NOT_SIGNERS naming whose it
is and stores nothing; names are compared as enrolment compares them; a certificate this
service enrolled is its owner's only (portal/holders.py).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from tests.support.ca_fixtures import b64
from tests.support.pcsc import RunningCard
from tests.support.portal_pki import spki_of, start_pki, validate_pdf
from tests.support.portal_service import RunningPortal, running_portal
from tests.support.signing_stack import PHONE, Stack, with_stack

NOT_SIGNERS = "CERTIFICATE_NOT_SIGNERS"


def _signing_sessions(portal: RunningPortal, signer_id: str) -> int:
    with portal.store.db.transaction() as cur:
        cur.execute("SELECT COUNT(*) FROM signing_sessions WHERE signer_id = ?", (signer_id,))
        return int(cur.fetchone()[0])


def test_second_signer_cannot_sign_with_the_first_signers_certificate(
        simulated_card: RunningCard, tmp_path: Path) -> None:
    @with_stack(tmp_path, simulated_card)
    async def scenario(stack: Stack) -> None:
        portal = stack.portal
        tx = await portal.create(level="B-B")  # Alice Martin, then Bob Durand
        assert (await stack.sign(await stack.ready_to_sign(tx, 0)))["step"] == "done"
        after = await portal.call("GET", f"/api/v1/transactions/{tx['id']}", auth=True)
        bob = after["signers"][1]
        invite = await stack.ready_to_sign(after, 1)
        alices = {"certificate": b64(stack.certificate), "chain": []}
        checked = await portal.call("POST", f"/api/s/{invite}/certificates/check", alices)
        assert checked["qualified"] is True  # qualified, but not Bob's
        assert checked["ownCertificate"] is False and NOT_SIGNERS in checked["reasons"]
        assert checked["holder"] == "Alice Martin"
        err = await portal.call("POST", f"/api/s/{invite}/sign/prepare",
                                {**alices, "phoneConfirmed": True}, expect=422)
        assert err["error"] == NOT_SIGNERS and err["holder"] == "Alice Martin", err
        # Nothing stored: no session, no second signature, Bob still to sign.
        assert _signing_sessions(portal, bob["id"]) == 0
        after = await portal.call("GET", f"/api/v1/transactions/{tx['id']}", auth=True)
        assert [d["signatures"] for d in after["documents"]] == [1, 1]
        assert after["signers"][1]["status"] == "accepted"

        # Bob with his own card signs; the PDFs carry two different people.
        await stack.reprovision("Bob", "Durand")
        assert (await stack.sign(invite))["step"] == "done"
        after = await portal.call("GET", f"/api/v1/transactions/{tx['id']}", auth=True)
        assert after["status"] == "completed"
        pdf = await portal.call("GET", f"/api/v1/transactions/{tx['id']}/documents/"
                                f"{after['documents'][0]['id']}", auth=True)
        result = await validate_pdf(pdf, [stack.pki.root], offline=True,
                                    other_certs=[stack.pki.issuing])
        names = [s.signing_cert.subject.native["common_name"] for s in result.statuses]
        assert names == ["Alice Martin", "Bob Durand"]


def test_names_are_compared_as_enrolment_compares_them(simulated_card: RunningCard,
                                                       tmp_path: Path) -> None:
    @with_stack(tmp_path, simulated_card)
    async def scenario(stack: Stack) -> None:
        portal = stack.portal
        alices = {"certificate": b64(stack.certificate), "chain": []}
        for name, own in (("alice MARTIN", True), ("Alice Marie Martin", True),
                          ("Alicé Märtin", True), ("Bob Durand", False),
                          ("Alice Durand", False), ("Martin", False)):
            tx = await portal.create(level="B-B", signers=[
                {"name": name, "email": "a@example.test", "phone": PHONE}])
            invite = await stack.ready_to_sign(tx, 0)
            checked = await portal.call("POST", f"/api/s/{invite}/certificates/check",
                                        alices)
            assert checked["ownCertificate"] is own, (name, checked)
            if not own:
                assert checked["ownership"] == "name" and checked["holder"] == "Alice Martin"
                err = await portal.call("POST", f"/api/s/{invite}/sign/prepare",
                                        {**alices, "phoneConfirmed": True}, expect=422)
                assert err["error"] == NOT_SIGNERS, err


def test_a_certificate_enrolled_here_is_its_owners_only(tmp_path: Path) -> None:
    """The portal enrolled Alice with certificate A: A signs for her whatever the link's
    name; another "Alice Martin" certificate does not; A does not sign for anyone else."""
    pki = start_pki(tmp_path / "ca")
    try:
        root = tmp_path / "root.der"
        root.write_bytes(pki.root)

        def certificate() -> bytes:
            key = ec.generate_private_key(ec.SECP256R1())
            return pki.certify(spki_of(key), given_name="Alice", surname="Martin").der

        enrolled, other = certificate(), certificate()

        async def main() -> None:
            async with running_portal(tmp_path, trust_roots=[str(root)],
                                      intermediates=[], check_revocation=False) as portal:
                tx = await portal.create(level="B-B", signers=[
                    {"name": "Alice Martin", "email": "alice@example.test", "phone": PHONE},
                    {"name": "Alice Martin", "email": "other@example.test",
                     "phone": "+33698765432"}], sequential=False)
                # What finish_enrolment leaves: her enrolment done, with certificate A.
                with portal.store.db.transaction() as cur:
                    cur.execute("INSERT INTO enrolments (signer_id, step, certificate, "
                                "updated_at) VALUES (?, 'done', ?, ?)",
                                (tx["signers"][0]["id"], enrolled,
                                 portal.clock().isoformat()))
                chain = [b64(pki.issuing)]
                for index, der, own, why in ((0, enrolled, True, None),
                                             (0, other, False, "not-enrolled"),
                                             (1, enrolled, False, "another-person"),
                                             (1, other, True, None)):
                    invite = portal.invite_path(tx, index)
                    checked = await portal.call(
                        "POST", f"/api/s/{invite}/certificates/check",
                        {"certificate": b64(der), "chain": chain})
                    assert checked["qualified"] is True, checked
                    assert checked["ownCertificate"] is own, (index, checked)
                    assert checked.get("ownership") == why, (index, checked)

        asyncio.run(main())
    finally:
        pki.stop()
