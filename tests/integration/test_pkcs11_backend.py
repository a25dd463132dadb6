"""The PKCS#11 backend (`agent.tokens.pkcs11`) on a real SoftHSM2 token.

Keys are made by the test through the backend; every signature is verified by
`cryptography`. Which mechanisms to expect is asked of the token, never guessed.
"""

from __future__ import annotations

import ctypes
import datetime
import hashlib
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pkcs11
import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.x509.oid import NameOID
from pkcs11 import Attribute, CertificateType, Mechanism, ObjectClass, TokenFlag
from pkcs11.util.ec import encode_named_curve_parameters

from agent.tokens.errors import (
    CommunicationError,
    InvalidInput,
    InvalidPin,
    KeyNotFound,
    NotAuthenticated,
    PinFormatInvalid,
    ProtectedAuthenticationPath,
    TokenRemoved,
    UnsupportedMechanism,
)
from agent.tokens.model import (
    HashAlgorithm,
    KeyType,
    Padding,
    Route,
    SignatureAlgorithm,
)
from agent.tokens.pkcs11 import (
    Pkcs11Module,
    Pkcs11Token,
    default_module_paths,
    signing_input,
)
from ground.traffic import TRAFFIC
from tests.conftest import SoftHsm

pytestmark = pytest.mark.softhsm

ALGORITHMS = [SignatureAlgorithm.parse(name) for name in (
    "ECDSA_SHA256", "ECDSA_SHA384", "ECDSA_SHA512",
    "RSA_PKCS1V15_SHA256", "RSA_PKCS1V15_SHA384", "RSA_PKCS1V15_SHA512",
    "RSA_PSS_SHA256", "RSA_PSS_SHA384", "RSA_PSS_SHA512")]
HASHES: dict[HashAlgorithm, hashes.HashAlgorithm] = {
    HashAlgorithm.SHA256: hashes.SHA256(), HashAlgorithm.SHA384: hashes.SHA384(),
    HashAlgorithm.SHA512: hashes.SHA512()}
ECDSA_SHA256 = SignatureAlgorithm.parse("ECDSA_SHA256")
MESSAGE = b"qsign: the document to sign"


@pytest.fixture
def module(softhsm: SoftHsm) -> Pkcs11Module:
    module = Pkcs11Module(softhsm.module)
    module.reinitialize()  # SoftHSM2 reads SOFTHSM2_CONF at C_Initialize: this test's tokens
    return module


@pytest.fixture
def token(module: Pkcs11Module, softhsm: SoftHsm) -> Iterator[Pkcs11Token]:
    slot = next(s for s in module.slots() if s.label == softhsm.label)
    token = module.open_token(slot.slot_id)
    yield token
    token.close()


def digest_of(algorithm: SignatureAlgorithm, message: bytes = MESSAGE) -> bytes:
    return hashlib.new(algorithm.hash.value.lower(), message).digest()


def verify(spki: bytes, signature: bytes, digest: bytes, algorithm: SignatureAlgorithm) -> None:
    """Raises InvalidSignature unless `signature` is `algorithm` over `digest` by `spki`."""
    public = serialization.load_der_public_key(spki)
    chosen = HASHES[algorithm.hash]
    if algorithm.padding is Padding.ECDSA:
        assert isinstance(public, ec.EllipticCurvePublicKey)
        public.verify(signature, digest, ec.ECDSA(Prehashed(chosen)))
        return
    assert isinstance(public, rsa.RSAPublicKey)
    scheme: padding.AsymmetricPadding = (
        padding.PKCS1v15() if algorithm.padding is Padding.PKCS1V15
        else padding.PSS(mgf=padding.MGF1(chosen), salt_length=chosen.digest_size))
    public.verify(signature, digest, scheme, Prehashed(chosen))


def token_mechanisms(module: Pkcs11Module, token: Pkcs11Token) -> set[Mechanism]:
    slot = next(s for s in module.lib.get_slots() if s.slot_id == token.slot_id)
    return set(slot.get_mechanisms())


def certificate_for(spki: bytes, serial: int = 1, issuer_key: ec.EllipticCurvePrivateKey | None
                    = None, issuer_name: str = "qsign test CA") -> bytes:
    issuer_key = issuer_key or ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    subject_key = serialization.load_der_public_key(spki)
    assert isinstance(subject_key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Signer")]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]))
        .public_key(subject_key).serial_number(serial)
        .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=30))
        .sign(issuer_key, hashes.SHA256()))
    return certificate.public_bytes(serialization.Encoding.DER)


def ca_certificate(key: ec.EllipticCurvePrivateKey, name: str = "qsign test CA") -> bytes:
    now = datetime.datetime.now(datetime.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    certificate = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
        .public_key(key.public_key()).serial_number(7)
        .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256()))
    return certificate.public_bytes(serialization.Encoding.DER)


# -- modules and slots ---------------------------------------------------------------------


def test_default_module_paths_name_installed_modules(softhsm: SoftHsm) -> None:
    paths = default_module_paths()
    assert str(softhsm.module) in paths
    assert all(os.path.isfile(path) for path in paths)
    assert len({os.path.realpath(p) for p in paths}) == len(paths)


def test_module_is_loaded_once_with_os_locking(module: Pkcs11Module, softhsm: SoftHsm) -> None:
    again = Pkcs11Module(os.path.realpath(softhsm.module))
    assert again == module
    assert again.lib is module.lib  # one python-pkcs11 lib, one C_Initialize
    assert module.os_locking  # C_Initialize with CKF_OS_LOCKING_OK
    # Other python-pkcs11 users in the process get the same, initialised library.
    assert pkcs11.lib(str(softhsm.module)) is module.lib


def test_a_missing_module_fails_when_used(tmp_path: Path) -> None:
    module = Pkcs11Module(tmp_path / "missing.so")  # a configured list may name one
    with pytest.raises(CommunicationError, match="no PKCS#11 module"):
        module.slots()
    with pytest.raises(CommunicationError):
        module.open_token(0)


def test_slots_list_the_token(module: Pkcs11Module, softhsm: SoftHsm) -> None:
    slots = module.slots()
    assert [s.label for s in slots] == [softhsm.label]  # SoftHSM's empty slot is left out
    slot = slots[0]
    assert slot.manufacturer == "SoftHSM project"
    assert slot.model == "SoftHSM v2"
    assert slot.serial and slot.initialized
    assert slot.flags & TokenFlag.LOGIN_REQUIRED
    assert not slot.protected_authentication_path
    assert slot.reader is None  # a soft token's slot is not a reader
    assert len(module.slots(include_uninitialized=True)) == 2
    assert module.present_slots() == slots


def test_token_info(token: Pkcs11Token, module: Pkcs11Module, softhsm: SoftHsm) -> None:
    info = token.info
    assert info.label == softhsm.label
    assert info.id == f"pkcs11:libsofthsm2:{info.serial}"
    assert info.manufacturer == "SoftHSM project"
    assert info.reader is None
    assert not info.protected_authentication_path
    (route,) = info.routes
    assert route.kind is Route.PKCS11
    assert route.module == module.path and route.slot == token.slot_id
    status = token.pin_status()
    assert not status.blocked and status.retries_left is None  # SoftHSM sets no count flags


def test_a_missing_or_other_token_is_refused(module: Pkcs11Module, token: Pkcs11Token) -> None:
    with pytest.raises(TokenRemoved):
        Pkcs11Token(module, 0x7FFF_FFF0)
    with pytest.raises(TokenRemoved):
        Pkcs11Token(module, token.slot_id, serial="not-this-one")
    assert Pkcs11Token(module, token.slot_id, serial=token.info.serial).info == token.info


# -- keys and signatures ---------------------------------------------------------------------


@pytest.mark.parametrize("key_type", list(KeyType), ids=lambda k: k.value)
def test_generate_and_sign_with_every_algorithm(key_type: KeyType, token: Pkcs11Token,
                                                module: Pkcs11Module, softhsm: SoftHsm) -> None:
    spki = token.generate_key("01", key_type, pin=softhsm.pin)
    public = serialization.load_der_public_key(spki)
    if key_type.is_ec:
        assert isinstance(public, ec.EllipticCurvePublicKey)
        assert public.curve.key_size == key_type.size
    else:
        assert isinstance(public, rsa.RSAPublicKey) and public.key_size == 2048

    (credential,) = token.credentials()  # before login: found by its public key
    assert credential.id == "01" and credential.key_type is key_type
    assert not credential.has_certificate and not credential.pin_always

    offered = token_mechanisms(module, token)
    signed = 0
    for algorithm in ALGORITHMS:
        digest = digest_of(algorithm)
        if not algorithm.fits(key_type):
            with pytest.raises(UnsupportedMechanism):
                token.sign_digest("01", digest, algorithm, pin=softhsm.pin)
            continue
        mechanism, _, _ = signing_input(algorithm, key_type, digest)
        if mechanism not in offered:
            with pytest.raises(UnsupportedMechanism):
                token.sign_digest("01", digest, algorithm, pin=softhsm.pin)
            continue
        signature = token.sign_digest("01", digest, algorithm, pin=softhsm.pin)
        verify(spki, signature, digest, algorithm)
        with pytest.raises(InvalidSignature):  # the check can fail
            verify(spki, signature, digest_of(algorithm, b"another document"), algorithm)
        signed += 1
    assert signed == (3 if key_type.is_ec else 6), "SoftHSM 2.6 offers every mechanism"


def test_generate_replaces_the_key_and_its_certificate(token: Pkcs11Token, softhsm: SoftHsm
                                                       ) -> None:
    first = token.generate_key("0a", KeyType.EC_P256, pin=softhsm.pin)
    token.put_certificate("0A", certificate_for(first), pin=softhsm.pin)
    second = token.generate_key("0A", KeyType.EC_P384, pin=softhsm.pin)
    assert second != first
    (credential,) = token.credentials()
    assert credential.id == "0A" and credential.key_type is KeyType.EC_P384
    assert credential.certificate is None  # the old key's certificate went with it
    digest = digest_of(ECDSA_SHA256)
    verify(second, token.sign_digest("0A", digest, ECDSA_SHA256, pin=softhsm.pin), digest,
           ECDSA_SHA256)


def test_pin_given_to_sign_logs_in_and_out(token: Pkcs11Token, softhsm: SoftHsm) -> None:
    spki = token.generate_key("01", KeyType.EC_P256, pin=softhsm.pin)
    digest = digest_of(ECDSA_SHA256)
    with pytest.raises(NotAuthenticated):
        token.sign_digest("01", digest, ECDSA_SHA256)  # not logged in
    token.verify_pin(softhsm.pin)
    with pytest.raises(NotAuthenticated):  # verify_pin logged out again (SECURITY #36)
        token.sign_digest("01", digest, ECDSA_SHA256)
    verify(spki, token.sign_digest("01", digest, ECDSA_SHA256, pin=softhsm.pin), digest,
           ECDSA_SHA256)
    with pytest.raises(NotAuthenticated):  # the PIN'd signature left the token locked
        token.sign_digest("01", digest, ECDSA_SHA256)


def test_a_batch_logs_in_once_and_leaves_the_token_locked(
        token: Pkcs11Token, softhsm: SoftHsm, caplog: pytest.LogCaptureFixture) -> None:
    """With the PIN, one C_Login before the first signature and one C_Logout after the
    last, even though SoftHSM2 ends private keys' handles at each C_Logout (the key is
    looked up again inside the login, not after a second one); locked again after."""
    spki = token.generate_key("01", KeyType.EC_P256, pin=softhsm.pin)
    digests = [hashlib.sha256(bytes([i])).digest() for i in range(5)]
    token.sign_digest("01", digests[0], ECDSA_SHA256, pin=softhsm.pin)  # key handle kept

    def calls(run: Callable[[], object]) -> list[str]:
        caplog.clear()
        run()
        return [r.getMessage().split("(")[0] for r in caplog.records if r.levelno == TRAFFIC]

    caplog.set_level(TRAFFIC, logger="agent.tokens")
    signatures: list[bytes] = []
    batch = calls(lambda: signatures.extend(token.sign_digests(
        "01", [(d, ECDSA_SHA256) for d in digests], pin=softhsm.pin)))
    for digest, signature in zip(digests, signatures, strict=True):
        verify(spki, signature, digest, ECDSA_SHA256)
    assert batch.count("C_Login") == 1 and batch.count("C_Logout") == 1
    assert batch.count("C_Sign") == len(digests)
    assert batch.index("C_Login") < batch.index("C_Sign")
    assert len(batch) - 1 - batch[::-1].index("C_Sign") < batch.index("C_Logout")
    one = calls(lambda: token.sign_digest("01", digests[0], ECDSA_SHA256, pin=softhsm.pin))
    assert one.count("C_Login") == 1 and one.count("C_Logout") == 1
    with pytest.raises(NotAuthenticated):  # nothing left unlocked (SECURITY #28, #36)
        token.sign_digest("01", digests[0], ECDSA_SHA256)


def test_wrong_pin_then_right_pin(token: Pkcs11Token, softhsm: SoftHsm) -> None:
    spki = token.generate_key("01", KeyType.EC_P256, pin=softhsm.pin)
    digest = digest_of(ECDSA_SHA256)
    with pytest.raises(InvalidPin) as wrong:
        token.verify_pin("999999")
    assert wrong.value.attempts_left is None  # SoftHSM's flags give no count
    with pytest.raises(InvalidPin):
        token.sign_digest("01", digest, ECDSA_SHA256, pin="999999")
    assert not token.pin_status().blocked
    token.verify_pin(softhsm.pin)
    verify(spki, token.sign_digest("01", digest, ECDSA_SHA256, pin=softhsm.pin), digest,
           ECDSA_SHA256)
    with pytest.raises(PinFormatInvalid):
        token.verify_pin("")


def test_verify_pin_checks_even_when_logged_in(token: Pkcs11Token, softhsm: SoftHsm) -> None:
    token.verify_pin(softhsm.pin)
    with pytest.raises(InvalidPin):
        token.verify_pin("999999")  # not waved through as "already logged in"


def test_bad_input_is_refused(token: Pkcs11Token, softhsm: SoftHsm) -> None:
    token.generate_key("01", KeyType.EC_P256, pin=softhsm.pin)
    with pytest.raises(InvalidInput):
        token.sign_digest("01", bytes(31), ECDSA_SHA256, pin=softhsm.pin)
    with pytest.raises(InvalidInput):
        token.sign_digest("01", bytes(48), ECDSA_SHA256, pin=softhsm.pin)
    with pytest.raises(InvalidInput):
        token.sign_digest("not hex", bytes(32), ECDSA_SHA256, pin=softhsm.pin)
    with pytest.raises(KeyNotFound):
        token.sign_digest("02", bytes(32), ECDSA_SHA256, pin=softhsm.pin)


def test_certificate_stored_listed_and_replaced(token: Pkcs11Token, module: Pkcs11Module,
                                                softhsm: SoftHsm) -> None:
    spki = token.generate_key("01", KeyType.RSA_2048, pin=softhsm.pin)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_der = ca_certificate(ca_key)
    # A CA certificate on the token (no key of its own) completes the chain.
    raw = next(s for s in module.lib.get_slots() if s.slot_id == token.slot_id).get_token()
    with raw.open(rw=True) as session:
        ca = x509.load_der_x509_certificate(ca_der)
        session.create_object({
            Attribute.CLASS: ObjectClass.CERTIFICATE,
            Attribute.CERTIFICATE_TYPE: pkcs11.CertificateType.X_509, Attribute.TOKEN: True,
            Attribute.ID: b"\xca", Attribute.LABEL: "CA",
            Attribute.SUBJECT: ca.subject.public_bytes(), Attribute.VALUE: ca_der})

    first = certificate_for(spki, serial=1, issuer_key=ca_key)
    token.put_certificate("01", first, pin=softhsm.pin)
    (credential,) = token.credentials()
    assert credential.certificate == first
    assert credential.chain == (ca_der,)
    assert credential.key_type is KeyType.RSA_2048

    second = certificate_for(spki, serial=2, issuer_key=ca_key)
    token.put_certificate("01", second, pin=softhsm.pin)
    (credential,) = token.credentials()
    assert credential.certificate == second
    with raw.open() as session:
        stored = list(session.get_objects({Attribute.CLASS: ObjectClass.CERTIFICATE,
                                           Attribute.ID: b"\x01"}))
        assert len(stored) == 1
        certificate = x509.load_der_x509_certificate(second)
        assert stored[0][Attribute.SUBJECT] == certificate.subject.public_bytes()
        assert stored[0][Attribute.ISSUER] == certificate.issuer.public_bytes()

    other = token.generate_key("02", KeyType.EC_P256, pin=softhsm.pin)
    with pytest.raises(InvalidInput):  # a certificate for another key
        token.put_certificate("01", certificate_for(other), pin=softhsm.pin)
    with pytest.raises(InvalidInput):
        token.put_certificate("01", b"\x30\x03\x02\x01\x01", pin=softhsm.pin)
    with pytest.raises(KeyNotFound):
        token.put_certificate("03", second, pin=softhsm.pin)


def test_attribute_values_leave_out_what_is_missing_or_too_long(
        token: Pkcs11Token, module: Pkcs11Module, softhsm: SoftHsm) -> None:
    spki = token.generate_key("01", KeyType.RSA_2048, pin=softhsm.pin)
    certificate = certificate_for(spki, issuer_name="qsign test CA " + "x" * 50)
    assert len(certificate) > 512  # longer than the one read's buffers
    token.put_certificate("01", certificate, pin=softhsm.pin)
    raw = next(s for s in module.lib.get_slots() if s.slot_id == token.slot_id).get_token()
    with raw.open() as session:
        session_handle = int(session.handle)
        (found,) = module.cryptoki.find_objects(session_handle, ObjectClass.CERTIFICATE,
                                                b"\x01", limit=2)
        values = module.cryptoki.attribute_values(
            session_handle, found,
            [Attribute.VALUE, Attribute.ID, Attribute.MODULUS, Attribute.CERTIFICATE_TYPE])
    assert values == {Attribute.ID: b"\x01", Attribute.CERTIFICATE_TYPE: bytes(
        ctypes.c_ulong(CertificateType.X_509))}  # no CKA_MODULUS; CKA_VALUE too long


def test_change_pin(token: Pkcs11Token, softhsm: SoftHsm) -> None:
    with pytest.raises(InvalidPin):
        token.change_pin("999999", "24681357")
    token.change_pin(softhsm.pin, "24681357")
    with pytest.raises(NotAuthenticated):  # change_pin logged out again
        token.generate_key("01", KeyType.EC_P256)
    with pytest.raises(InvalidPin):
        token.verify_pin(softhsm.pin)
    token.verify_pin("24681357")
    with pytest.raises(NotAuthenticated):  # verify_pin logged out again (SECURITY #36)
        token.generate_key("01", KeyType.EC_P256)


def test_key_with_always_authenticate_needs_the_pin_per_signature(
        token: Pkcs11Token, module: Pkcs11Module, softhsm: SoftHsm,
        caplog: pytest.LogCaptureFixture) -> None:
    raw = next(s for s in module.lib.get_slots() if s.slot_id == token.slot_id).get_token()
    with raw.open(rw=True, user_pin=softhsm.pin) as session:
        public, _ = session.generate_keypair(
            pkcs11.KeyType.EC, id=b"\x0b", label="per-signature", store=True,
            public_template={Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1"),
                             Attribute.PRIVATE: False},
            private_template={Attribute.ALWAYS_AUTHENTICATE: True})
        point = public[Attribute.EC_POINT]
    key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point[2:])
    spki = key.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)

    token.verify_pin(softhsm.pin)
    (credential,) = token.credentials()
    # The private key, which carries CKA_ALWAYS_AUTHENTICATE, hides while logged out.
    assert credential.id == "0B"
    digest = digest_of(ECDSA_SHA256)
    with pytest.raises(NotAuthenticated):  # this key wants the PIN with each signature
        token.sign_digest("0B", digest, ECDSA_SHA256)
    for _ in range(2):  # a context-specific login for each signature, nothing kept
        verify(spki, token.sign_digest("0B", digest, ECDSA_SHA256, pin=softhsm.pin), digest,
               ECDSA_SHA256)
    with pytest.raises(InvalidPin):
        token.sign_digest("0B", digest, ECDSA_SHA256, pin="999999")
    verify(spki, token.sign_digest("0B", digest, ECDSA_SHA256, pin=softhsm.pin), digest,
           ECDSA_SHA256)
    caplog.set_level(TRAFFIC, logger="agent.tokens")
    for signature in token.sign_digests("0B", [(digest, ECDSA_SHA256)] * 3, pin=softhsm.pin):
        verify(spki, signature, digest, ECDSA_SHA256)  # one login, then one per signature
    logins = [r.getMessage() for r in caplog.records if r.getMessage().startswith("C_Login")]
    assert [", user=2," in m for m in logins] == [False, True, True, True]


def test_no_attestation_and_no_puk(token: Pkcs11Token, softhsm: SoftHsm) -> None:
    token.generate_key("01", KeyType.EC_P256, pin=softhsm.pin)
    with pytest.raises(UnsupportedMechanism):
        token.attest("01")
    with pytest.raises(UnsupportedMechanism, match="no PUK"):
        token.unblock_pin(softhsm.so_pin, "24681357")


# -- sessions --------------------------------------------------------------------------------


def test_session_closed_behind_the_backends_back_is_reopened(
        token: Pkcs11Token, module: Pkcs11Module, softhsm: SoftHsm) -> None:
    spki = token.generate_key("01", KeyType.EC_P256, pin=softhsm.pin)
    digest = digest_of(ECDSA_SHA256)
    token.verify_pin(softhsm.pin)
    module.close_all_sessions(token.slot_id)  # C_CloseAllSessions: the handle and login go
    # Someone else's session may now get the freed handle: the token must not use it.
    raw = next(s for s in module.lib.get_slots() if s.slot_id == token.slot_id).get_token()
    other = raw.open()
    try:
        with pytest.raises(NotAuthenticated):  # the login went with the session
            token.sign_digest("01", digest, ECDSA_SHA256)
        verify(spki, token.sign_digest("01", digest, ECDSA_SHA256, pin=softhsm.pin), digest,
               ECDSA_SHA256)
        assert [c.id for c in token.credentials()] == ["01"]
        assert list(other.get_objects({Attribute.CLASS: ObjectClass.PUBLIC_KEY}))  # still open
    finally:
        other.close()


def test_module_reinitialised_behind_the_token(token: Pkcs11Token, module: Pkcs11Module,
                                               softhsm: SoftHsm) -> None:
    spki = token.generate_key("01", KeyType.EC_P384, pin=softhsm.pin)
    module.reinitialize()
    algorithm = SignatureAlgorithm.parse("ECDSA_SHA384")
    digest = digest_of(algorithm)
    verify(spki, token.sign_digest("01", digest, algorithm, pin=softhsm.pin), digest, algorithm)


# -- PINs ------------------------------------------------------------------------------------


def test_protected_authentication_path_is_never_sent_a_pin(
        token: Pkcs11Token, softhsm: SoftHsm, caplog: pytest.LogCaptureFixture) -> None:
    """SoftHSM has no PIN pad: the flag is set on the token object as a module with one
    reports it (CKF_PROTECTED_AUTHENTICATION_PATH). Nothing reaches the module."""
    token._session.flags |= TokenFlag.PROTECTED_AUTHENTICATION_PATH
    caplog.set_level(1)
    calls: list[Callable[[], object]] = [
        lambda: token.verify_pin(softhsm.pin),
        lambda: token.sign_digest("01", bytes(32), ECDSA_SHA256, pin=softhsm.pin),
        lambda: token.generate_key("01", KeyType.EC_P256, pin=softhsm.pin),
        lambda: token.put_certificate("01", b"\x30\x00", pin=softhsm.pin),
        lambda: token.change_pin(softhsm.pin, "24681357"),
        lambda: token.change_pin("", "24681357"),
    ]
    for call in calls:
        with pytest.raises(ProtectedAuthenticationPath):
            call()
    assert not [r for r in caplog.records if r.name.startswith("agent.tokens")]


def test_no_pin_in_any_log_record(token: Pkcs11Token, softhsm: SoftHsm,
                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(1)
    pin, wrong = "Qs-7391-pin", "Wr0ng-8842-pin"
    token.change_pin(softhsm.pin, pin)
    spki = token.generate_key("01", KeyType.EC_P256, pin=pin)
    for bad in (lambda: token.verify_pin(wrong),
                lambda: token.sign_digest("01", bytes(32), ECDSA_SHA256, pin=wrong),
                lambda: token.change_pin(wrong, "Other-5521-pin")):
        with pytest.raises(InvalidPin):
            bad()
    token.verify_pin(pin)
    digest = digest_of(ECDSA_SHA256)
    verify(spki, token.sign_digest("01", digest, ECDSA_SHA256, pin=pin), digest, ECDSA_SHA256)
    token.put_certificate("01", certificate_for(spki), pin=pin)
    token.change_pin(pin, "Other-5521-pin")

    assert any(r.levelno == TRAFFIC for r in caplog.records), "PKCS#11 calls are traced"
    secrets = [pin, wrong, "Other-5521-pin"]
    forms = [form for s in secrets for form in (s, s.encode().hex(), repr(s.encode()))]
    for record in caplog.records:
        text = " ".join([record.getMessage(), repr(record.args), str(record.exc_text or "")])
        for form in forms:
            assert form not in text, f"a PIN in the log: {record.name} {record.levelname}"
    assert logging.getLevelName(TRAFFIC) == "TRAFFIC"
