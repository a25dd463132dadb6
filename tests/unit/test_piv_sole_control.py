"""The card is never left unlocked (SECURITY #34, #36), in process: the simulated card
forgets a verified PIN when the PIV application is selected again, and `PivToken`
resets the PIN's security status after every operation that presented it. The card's
own answers to a status query (empty VERIFY, SP 800-73-4 Part 2 §3.2.1) are the proof."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, load_der_public_key

from agent.tokens.errors import InvalidPin
from agent.tokens.model import KeyType, SignatureAlgorithm
from agent.tokens.piv import PivToken
from firmware_sim.card import InProcessConnection
from ground.iso7816 import parse_tlv_dict
from tests.support import piv_apdus as piv
from tests.support.piv_apdus import DEFAULT_PIN, DEFAULT_PUK, expect_ok, send
from tests.support.provision import CertIssuer

ECDSA_SHA256 = SignatureAlgorithm.parse("ECDSA_SHA256")
DIGEST = hashlib.sha256(b"qsign sole control").digest()


def _status(connection: InProcessConnection) -> int:
    """The card's answer to an empty VERIFY: 9000 means the PIN is verified now."""
    return send(connection, piv.verify())[1]


def _slot_key(connection: InProcessConnection, slot: int) -> bytes:
    return parse_tlv_dict(expect_ok(connection, piv.get_metadata(slot)))[0x04]


# The simulated card ----------------------------------------------------------------------


def test_selecting_piv_again_forgets_the_verified_pin(connection: InProcessConnection) -> None:
    expect_ok(connection, piv.select())
    assert piv.authenticate_management(connection) == piv.SW_OK
    expect_ok(connection, piv.generate(piv.SLOT_AUTHENTICATION, piv.ALG_P256))
    expect_ok(connection, piv.verify(DEFAULT_PIN))
    assert _status(connection) == piv.SW_OK
    expect_ok(connection, piv.sign(piv.SLOT_AUTHENTICATION, piv.ALG_P256, DIGEST))

    expect_ok(connection, piv.select())
    assert _status(connection) == 0x63C3, "a re-SELECT left the PIN verified"
    assert send(connection, piv.sign(piv.SLOT_AUTHENTICATION, piv.ALG_P256, DIGEST))[1] \
        == 0x6982
    assert send(connection, piv.get_data(piv.FINGERPRINTS))[1] == 0x6982
    # The management key's authentication went with the session as well.
    content = piv.certificate_object(b"\x30\x00")
    assert send(connection, piv.put_data(piv.SLOT_CERTIFICATES[0x9A], content))[1] == 0x6982


def test_a_failed_select_keeps_the_session(connection: InProcessConnection) -> None:
    """Only selecting the PIV application starts its session again."""
    expect_ok(connection, piv.select())
    expect_ok(connection, piv.verify(DEFAULT_PIN))
    assert send(connection, piv.select(bytes.fromhex("A000000151000000")))[1] == 0x6A82
    assert _status(connection) == piv.SW_OK


# The token layer ---------------------------------------------------------------------------


def _operations(certificate: bytes) -> dict[str, Callable[[PivToken], object]]:
    return {
        "verify_pin": lambda t: t.verify_pin(DEFAULT_PIN),
        "sign_digest": lambda t: t.sign_digest("9A", DIGEST, ECDSA_SHA256, pin=DEFAULT_PIN),
        "generate_key": lambda t: t.generate_key("9D", KeyType.EC_P256, pin=DEFAULT_PIN),
        "put_certificate": lambda t: t.put_certificate("9A", certificate, pin=DEFAULT_PIN),
        "change_pin": lambda t: t.change_pin(DEFAULT_PIN, DEFAULT_PIN),
        "unblock_pin": lambda t: t.unblock_pin(DEFAULT_PUK, DEFAULT_PIN),
    }


@pytest.mark.parametrize("name", list(_operations(b"")))
def test_every_pin_operation_leaves_the_card_locked(connection: InProcessConnection,
                                                     name: str) -> None:
    token = PivToken(connection)
    public = load_der_public_key(token.generate_key("9A", KeyType.EC_P256))
    assert isinstance(public, ec.EllipticCurvePublicKey)
    certificate = CertIssuer().certify(public, "qsign 9A").public_bytes(Encoding.DER)
    _operations(certificate)[name](token)
    # The same card session (no SELECT in between), as another application finds it.
    assert _status(connection) == 0x63C3, f"{name} left the PIN verified"
    assert send(connection, piv.sign(piv.SLOT_AUTHENTICATION, piv.ALG_P256, DIGEST))[1] \
        == 0x6982


def test_a_wrong_pin_changes_no_key(connection: InProcessConnection) -> None:
    token = PivToken(connection)
    token.generate_key("9C", KeyType.EC_P256)
    before = _slot_key(connection, piv.SLOT_SIGNATURE)
    with pytest.raises(InvalidPin) as wrong:
        token.generate_key("9C", KeyType.EC_P256, pin="999999")
    assert wrong.value.attempts_left == 2
    assert _slot_key(connection, piv.SLOT_SIGNATURE) == before, "a wrong PIN replaced the key"
    token.generate_key("9C", KeyType.EC_P256, pin=DEFAULT_PIN)
    assert _slot_key(connection, piv.SLOT_SIGNATURE) != before
    assert _status(connection) == 0x63C3


def test_public_key_is_read_without_the_pin(connection: InProcessConnection) -> None:
    token = PivToken(connection)
    spki = token.generate_key("9C", KeyType.EC_P384)
    assert token.public_key("9C") == spki
    assert token.public_key("9D") is None  # an empty slot
