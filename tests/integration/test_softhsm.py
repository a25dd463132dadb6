"""The SoftHSM2 fixture gives a usable PKCS#11 token in a private directory."""

from __future__ import annotations

import hashlib

import pkcs11
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from pkcs11 import KeyType, Mechanism
from pkcs11.util.ec import (
    encode_ec_public_key,
    encode_ecdsa_signature,
    encode_named_curve_parameters,
)

from tests.conftest import SoftHsm


def test_softhsm_token_generates_and_signs(softhsm: SoftHsm) -> None:
    lib = pkcs11.lib(str(softhsm.module))
    lib.reinitialize()  # SoftHSM reads SOFTHSM2_CONF at C_Initialize: pick up this test's
    token = lib.get_token(token_label=softhsm.label)
    with token.open(rw=True, user_pin=softhsm.pin) as session:
        params = session.create_domain_parameters(
            KeyType.EC, {pkcs11.Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")},
            local=True)
        public, private = params.generate_keypair(store=False)
        message = b"qsign softhsm fixture"
        digest = hashlib.sha256(message).digest()  # SoftHSM2 2.6 signs digests (CKM_ECDSA)
        signature = encode_ecdsa_signature(private.sign(digest, mechanism=Mechanism.ECDSA))
        key = ec.EllipticCurvePublicKey.from_encoded_point(
            ec.SECP256R1(), public[pkcs11.Attribute.EC_POINT][2:])
        key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
        assert encode_ec_public_key(public)  # exports as a SubjectPublicKeyInfo
    assert list(softhsm.directory.iterdir()), "the token lives in the fixture's directory"
