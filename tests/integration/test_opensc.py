"""OpenSC's PKCS#11 module and tools accept the simulated card as a PIV card.

pyscard provisions the card (management key, keys generated on the card,
certificates); then OpenSC, through python-pkcs11 and through pkcs11-tool,
lists the token, logs in and signs; `cryptography` verifies each signature.
"""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pkcs11
import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.util.ec import encode_ecdsa_signature

from firmware_sim.state import CardStore
from tests.support import piv_apdus as piv
from tests.support.pcsc import RunningCard, connect
from tests.support.provision import CertIssuer, PyscardConnection, provision

OPENSC_MODULE = Path("/usr/lib/x86_64-linux-gnu/pkcs11/opensc-pkcs11.so")
PIN = "123456"
PUK = "12345678"
# OpenSC's PIV emulation names key objects by slot: 9A -> 01, 9C -> 02, 9D -> 03.
KEY_IDS = {0x9A: b"\x01", 0x9C: b"\x02", 0x9D: b"\x03"}
MESSAGE = b"qsign: the document to sign"


@dataclass
class ProvisionedCard:
    running: RunningCard
    certificates: dict[int, x509.Certificate]


@pytest.fixture
def provisioned(simulated_card: RunningCard) -> Iterator[ProvisionedCard]:
    if not OPENSC_MODULE.exists():
        pytest.fail(f"{OPENSC_MODULE} missing (install opensc-pkcs11)", pytrace=False)
    connection = connect(simulated_card.reader)
    card = PyscardConnection(connection)
    issuer = CertIssuer()
    certificates = {
        0x9A: provision(card, 0x9A, piv.ALG_P256, issuer),
        0x9C: provision(card, 0x9C, piv.ALG_RSA_2048, issuer),
        0x9D: provision(card, 0x9D, piv.ALG_RSA_2048, issuer),
    }
    connection.disconnect()
    yield ProvisionedCard(simulated_card, certificates)


def _token(reader: str) -> pkcs11.Token:
    lib = pkcs11.lib(str(OPENSC_MODULE))
    for slot in lib.get_slots(token_present=True):
        if slot.slot_description.strip() == reader:
            return slot.get_token()
    raise AssertionError(f"OpenSC shows no token in {reader}")


def _verify(certificate: x509.Certificate, signature: bytes, hash_algorithm: hashes.HashAlgorithm
            ) -> None:
    public_key = certificate.public_key()
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        public_key.verify(signature, MESSAGE, ec.ECDSA(hash_algorithm))
    else:
        assert isinstance(public_key, rsa.RSAPublicKey)
        public_key.verify(signature, MESSAGE, padding.PKCS1v15(), hash_algorithm)


def test_python_pkcs11_signs_with_card_generated_keys(provisioned: ProvisionedCard) -> None:
    token = _token(provisioned.running.reader)
    assert token.manufacturer_id.strip() == "piv_II"
    with token.open(user_pin=PIN) as session:
        ec_key = session.get_key(ObjectClass.PRIVATE_KEY, KeyType.EC, id=KEY_IDS[0x9A])
        raw = ec_key.sign(MESSAGE, mechanism=Mechanism.ECDSA_SHA256)
        _verify(provisioned.certificates[0x9A], encode_ecdsa_signature(raw), hashes.SHA256())

        # A signature must not verify under another key: the check above can fail.
        with pytest.raises(InvalidSignature):
            _verify(provisioned.certificates[0x9C], encode_ecdsa_signature(raw), hashes.SHA256())

        # The key management key deciphers (the card's raw RSA private operation).
        rsa_key = session.get_key(ObjectClass.PRIVATE_KEY, KeyType.RSA, id=KEY_IDS[0x9D])
        public_key = provisioned.certificates[0x9D].public_key()
        assert isinstance(public_key, rsa.RSAPublicKey)
        ciphertext = public_key.encrypt(MESSAGE, padding.PKCS1v15())
        assert rsa_key.decrypt(ciphertext, mechanism=Mechanism.RSA_PKCS) == MESSAGE


def test_signature_key_needs_the_pin_for_each_signature(provisioned: ProvisionedCard) -> None:
    token = _token(provisioned.running.reader)
    with token.open(user_pin=PIN) as session:
        key = session.get_key(ObjectClass.PRIVATE_KEY, KeyType.RSA, id=KEY_IDS[0x9C])
        assert key[Attribute.ALWAYS_AUTHENTICATE] is True
        for _ in range(2):  # a context-specific login for each signature
            signature = key.sign(MESSAGE, mechanism=Mechanism.SHA256_RSA_PKCS, pin=PIN)
            _verify(provisioned.certificates[0x9C], signature, hashes.SHA256())


def _pkcs11_tool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["pkcs11-tool", "--module", str(OPENSC_MODULE), *args],
                          capture_output=True, text=True, timeout=60)


def test_pkcs11_tool_lists_and_signs(provisioned: ProvisionedCard, tmp_path: Path) -> None:
    listing = _pkcs11_tool("--list-slots")
    assert listing.returncode == 0, listing.stderr
    assert provisioned.running.reader in listing.stdout
    assert "token manufacturer : piv_II" in listing.stdout

    message = tmp_path / "message"
    message.write_bytes(MESSAGE)
    for slot, mechanism, hash_algorithm in (
        (0x9A, "ECDSA-SHA256", hashes.SHA256()),
        (0x9C, "SHA384-RSA-PKCS", hashes.SHA384()),
    ):
        out = tmp_path / f"sig-{slot:02X}"
        run = _pkcs11_tool("--login", "--pin", PIN, "--sign", "--id", KEY_IDS[slot].hex(),
                           "-m", mechanism, "--signature-format", "openssl",
                           "--input-file", str(message), "--output-file", str(out))
        assert run.returncode == 0, run.stderr
        _verify(provisioned.certificates[slot], out.read_bytes(), hash_algorithm)


def _retries_on_card(running: RunningCard) -> tuple[int, int]:
    state = CardStore.load(running.state_path).state
    return state.pin.retries_left, state.puk.retries_left


def test_wrong_pins_block_then_puk_unblocks(provisioned: ProvisionedCard) -> None:
    running = provisioned.running
    token = _token(running.reader)
    for expected_left in (2, 1, 0):
        with pytest.raises(pkcs11.exceptions.PinIncorrect):
            token.open(user_pin="999999")
        assert _retries_on_card(running) == (expected_left, 3)
        # pyscard sees the same count through VERIFY's status query.
        connection = connect(running.reader)
        card = PyscardConnection(connection)
        piv.expect_ok(card, piv.select())
        _, sw = piv.send(card, piv.verify())
        assert sw == (0x63C0 | expected_left if expected_left else 0x6983)
        connection.disconnect()
    with pytest.raises(pkcs11.exceptions.PinLocked):
        token.open(user_pin=PIN)

    # PKCS#11 has no PUK; OpenSC's PKCS#15 tool sends RESET RETRY COUNTER.
    unblock = subprocess.run(["pkcs15-tool", "--unblock-pin", "--puk", PUK, "--new-pin", "654321"],
                             capture_output=True, text=True, timeout=60)
    assert unblock.returncode == 0, unblock.stdout + unblock.stderr
    assert _retries_on_card(running) == (3, 3)
    with token.open(user_pin="654321") as session:
        key = session.get_key(ObjectClass.PRIVATE_KEY, KeyType.EC, id=KEY_IDS[0x9A])
        raw = key.sign(hashlib.sha256(MESSAGE).digest(), mechanism=Mechanism.ECDSA)
        _verify(provisioned.certificates[0x9A], encode_ecdsa_signature(raw), hashes.SHA256())
