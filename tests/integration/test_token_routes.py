"""One suite, three routes to a token (issue 3's acceptance):

- `piv`: the simulated card through the PIV backend over pyscard and pcscd;
- `opensc`: the same kind of card through OpenSC's PKCS#11 module;
- `softhsm`: a SoftHSM2 token whose keys the test makes through the backend.

Each route offers an EC P-256 key that needs the PIN once and an RSA-2048 key
that needs it for every signature; every signature is verified by `cryptography`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding, load_der_public_key

from agent.tokens.errors import (
    InvalidInput,
    InvalidPin,
    NotAuthenticated,
    PinFormatInvalid,
    UnsupportedMechanism,
)
from agent.tokens.model import KeyType, SignatureAlgorithm, Token
from agent.tokens.pcsc import PcscConnection, PcscContext
from agent.tokens.piv import PivToken
from agent.tokens.pkcs11 import Pkcs11Module
from tests.conftest import SoftHsm
from tests.support import piv_apdus as piv
from tests.support.pcsc import RunningCard, connect
from tests.support.provision import CertIssuer, PyscardConnection, provision

OPENSC = "/usr/lib/x86_64-linux-gnu/pkcs11/opensc-pkcs11.so"
MESSAGE = b"qsign: one suite, three routes"
HASHES = {"SHA256": hashes.SHA256(), "SHA384": hashes.SHA384(), "SHA512": hashes.SHA512()}


@dataclass
class Route:
    name: str
    token: Token
    pin: str
    ec_id: str  # P-256, PIN once
    rsa_id: str  # RSA-2048, PIN for each signature
    certificates: dict[str, x509.Certificate]
    attempts: str  # what the route tells of tries left: "exact", "final-try" (PKCS#11 flags), ""


def _provisioned_card(card: RunningCard) -> dict[str, x509.Certificate]:
    connection = connect(card.reader)
    link = PyscardConnection(connection)
    issuer = CertIssuer()
    certificates = {
        "9A": provision(link, 0x9A, piv.ALG_P256, issuer),
        "9C": provision(link, 0x9C, piv.ALG_RSA_2048, issuer),
    }
    connection.disconnect()
    return certificates


def _softhsm_route(softhsm: SoftHsm) -> Route:
    module = Pkcs11Module(str(softhsm.module))
    module.reinitialize()  # SoftHSM reads SOFTHSM2_CONF at C_Initialize
    slot = next(s for s in module.present_slots() if s.label == softhsm.label)
    token = module.open_token(slot.slot_id)
    issuer = CertIssuer()
    certificates = {}
    for credential_id, key_type in (("01", KeyType.EC_P256), ("02", KeyType.RSA_2048)):
        spki = token.generate_key(credential_id, key_type, pin=softhsm.pin)
        public = load_der_public_key(spki)
        assert isinstance(public, ec.EllipticCurvePublicKey | rsa.RSAPublicKey)
        cert = issuer.certify(public, f"softhsm {credential_id}")
        token.put_certificate(credential_id, cert.public_bytes(Encoding.DER), pin=softhsm.pin)
        certificates[credential_id] = cert
    return Route("softhsm", token, softhsm.pin, "01", "02", certificates, "")


@pytest.fixture(params=["piv", "opensc", "softhsm"])
def route(request: pytest.FixtureRequest) -> Iterator[Route]:
    if request.param == "softhsm":
        r = _softhsm_route(request.getfixturevalue("softhsm"))
        yield r
        r.token.close()
        return
    card: RunningCard = request.getfixturevalue("simulated_card")
    certificates = _provisioned_card(card)
    if request.param == "piv":
        context = PcscContext()
        token: Token = PivToken(PcscConnection(context, card.reader), reader=card.reader)
        yield Route("piv", token, piv.DEFAULT_PIN, "9A", "9C", certificates, "exact")
        token.close()
        context.close()
        return
    module = Pkcs11Module(OPENSC)
    module.reinitialize()  # a fresh world per test: OpenSC keeps cards it saw before
    slot = next(s for s in module.present_slots() if s.description.strip() == card.reader)
    token = module.open_token(slot.slot_id)
    # OpenSC names PIV keys by slot: 9A -> 01, 9C -> 02.
    yield Route("opensc", token, piv.DEFAULT_PIN, "01", "02",
                {"01": certificates["9A"], "02": certificates["9C"]}, "final-try")
    token.close()


def _digest(name: str) -> bytes:
    return hashlib.new(name.lower(), MESSAGE).digest()


def _verify(route: Route, credential_id: str, signature: bytes,
            algorithm: SignatureAlgorithm) -> None:
    public = route.certificates[credential_id].public_key()
    h = HASHES[algorithm.hash.value]
    if isinstance(public, ec.EllipticCurvePublicKey):
        public.verify(signature, MESSAGE, ec.ECDSA(h))
    elif algorithm.padding.value == "PSS":
        assert isinstance(public, rsa.RSAPublicKey)
        public.verify(signature, MESSAGE, padding.PSS(padding.MGF1(h), h.digest_size), h)
    else:
        assert isinstance(public, rsa.RSAPublicKey)
        public.verify(signature, MESSAGE, padding.PKCS1v15(), h)


def test_credentials(route: Route) -> None:
    found = {c.id: c for c in route.token.credentials()}
    ec_key, rsa_key = found[route.ec_id], found[route.rsa_id]
    assert (ec_key.key_type, rsa_key.key_type) == (KeyType.EC_P256, KeyType.RSA_2048)
    assert ec_key.certificate == route.certificates[route.ec_id].public_bytes(Encoding.DER)
    assert rsa_key.has_certificate
    assert not ec_key.pin_always
    # PKCS#11 tells CKA_ALWAYS_AUTHENTICATE on the private key, hidden while logged out.
    if route.name == "piv":
        assert rsa_key.pin_always


@pytest.mark.parametrize("name", ["ECDSA_SHA256", "ECDSA_SHA384", "ECDSA_SHA512"])
def test_ecdsa_signatures(route: Route, name: str) -> None:
    algorithm = SignatureAlgorithm.parse(name)
    signature = route.token.sign_digest(route.ec_id, _digest(algorithm.hash.value), algorithm,
                                        pin=route.pin)
    _verify(route, route.ec_id, signature, algorithm)


@pytest.mark.parametrize("name", ["RSA_PKCS1V15_SHA256", "RSA_PKCS1V15_SHA512",
                                  "RSA_PSS_SHA256", "RSA_PSS_SHA384"])
def test_rsa_signatures_with_the_pin_each_time(route: Route, name: str) -> None:
    algorithm = SignatureAlgorithm.parse(name)
    digest = _digest(algorithm.hash.value)
    for _ in range(2):
        try:
            signature = route.token.sign_digest(route.rsa_id, digest, algorithm, pin=route.pin)
        except UnsupportedMechanism:
            # Only a PKCS#11 module may lack PSS, and then it must say so by this error.
            assert route.name == "opensc" and algorithm.padding.value == "PSS"
            return
        _verify(route, route.rsa_id, signature, algorithm)


def test_verify_pin_leaves_the_token_locked(route: Route) -> None:
    """SECURITY #36: a verified PIN authorises nothing after `verify_pin`."""
    algorithm = SignatureAlgorithm.parse("ECDSA_SHA256")
    route.token.verify_pin(route.pin)
    with pytest.raises(NotAuthenticated):
        route.token.sign_digest(route.ec_id, _digest("SHA256"), algorithm)
    signature = route.token.sign_digest(route.ec_id, _digest("SHA256"), algorithm,
                                        pin=route.pin)
    _verify(route, route.ec_id, signature, algorithm)


def test_pin_always_key_refuses_without_a_pin(route: Route) -> None:
    if route.name == "softhsm":
        return  # SoftHSM keys made here are not CKA_ALWAYS_AUTHENTICATE
    route.token.verify_pin(route.pin)
    with pytest.raises(NotAuthenticated):
        route.token.sign_digest(route.rsa_id, _digest("SHA256"),
                                SignatureAlgorithm.parse("RSA_PKCS1V15_SHA256"))


def test_wrong_pin_counts_down_and_the_right_one_still_works(route: Route) -> None:
    wrong = "999999" if route.pin != "999999" else "888888"
    with pytest.raises(InvalidPin) as first:
        route.token.verify_pin(wrong)
    with pytest.raises(InvalidPin) as second:
        route.token.verify_pin(wrong)
    if route.attempts == "exact":
        assert (first.value.attempts_left, second.value.attempts_left) == (2, 1)
    if route.attempts:  # PKCS#11 only flags the final try (CKF_USER_PIN_FINAL_TRY)
        assert second.value.attempts_left == 1
        assert route.token.pin_status().retries_left == 1
    route.token.verify_pin(route.pin)
    status = route.token.pin_status()
    assert not status.blocked
    if route.attempts == "exact":
        assert status.retries_left == 3


def test_bad_inputs_are_refused_before_the_token(route: Route) -> None:
    ecdsa = SignatureAlgorithm.parse("ECDSA_SHA256")
    with pytest.raises(InvalidInput):
        route.token.sign_digest(route.ec_id, b"\x00" * 20, ecdsa, pin=route.pin)
    with pytest.raises(UnsupportedMechanism):
        route.token.sign_digest(route.ec_id, _digest("SHA256"),
                                SignatureAlgorithm.parse("RSA_PKCS1V15_SHA256"), pin=route.pin)
    if route.name == "piv":
        with pytest.raises(PinFormatInvalid):
            route.token.verify_pin("12ab")


def test_attestation_only_where_the_token_can(route: Route, tmp_path: Path) -> None:
    if route.name != "piv":
        with pytest.raises(UnsupportedMechanism):
            route.token.attest(route.ec_id)
        return
    chain = route.token.attest(route.ec_id)
    attested = x509.load_der_x509_certificate(chain[0])
    device = x509.load_der_x509_certificate(chain[1])
    attested.verify_directly_issued_by(device)
    assert attested.public_key() == route.certificates[route.ec_id].public_key()
