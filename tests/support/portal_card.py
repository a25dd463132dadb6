"""A simulated card holding a qualified certificate from the test CA: the key is made on
the card (slot 9C, signature, PIN always), the CA (tests/support/portal_pki) issues a
QCP-n-qscd certificate for it through its registry, and the certificate goes back on the
card, as the enrolment will do through the agent."""

from __future__ import annotations

from asn1crypto import keys as asn1_keys
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tests.support import piv_apdus as piv
from tests.support.pcsc import RunningCard, connect
from tests.support.portal_pki import PortalPki
from tests.support.provision import PyscardConnection

SLOT = 0x9C


def provision_qualified(card: RunningCard, pki: PortalPki, *, given_name: str = "Alice",
                        surname: str = "Martin") -> bytes:
    """The certificate (DER) now in the card's slot 9C."""
    connection = connect(card.reader)
    try:
        link = PyscardConnection(connection)
        piv.expect_ok(link, piv.select())
        assert piv.authenticate_management(link) == piv.SW_OK
        template = piv.expect_ok(link, piv.generate(SLOT, piv.ALG_P256))
        public_key = asn1_keys.PublicKeyInfo.load(
            piv.public_key_from_template(template, piv.ALG_P256).public_bytes(
                Encoding.DER, PublicFormat.SubjectPublicKeyInfo))
        record = pki.certify(public_key, given_name=given_name, surname=surname)
        piv.expect_ok(link, piv.put_certificate(SLOT, record.der).chained())
        return record.der
    finally:
        connection.disconnect()
