"""The PIV applet (SP 800-73-4 Part 2) and its vendor extensions, in process."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from asn1crypto import core
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from firmware_sim.attestation import AttestationOid, Manufacturer
from firmware_sim.card import InProcessConnection, SimulatedCard, manufacture
from ground.iso7816 import parse_single, parse_tlv, parse_tlv_dict, tlv
from tests.support import piv_apdus as piv
from tests.support.piv_apdus import (
    ALG_P256,
    ALG_P384,
    ALG_RSA_2048,
    ALG_TDES,
    DEFAULT_PIN,
    DEFAULT_PUK,
    SLOT_AUTHENTICATION,
    SLOT_CARD_AUTHENTICATION,
    SLOT_KEY_MANAGEMENT,
    SLOT_SIGNATURE,
    Command,
    expect_ok,
    send,
)

SW_OK = 0x9000
MESSAGE = b"qsign unit test message"
OTHER_KEY = bytes.fromhex("0f0e0d0c0b0a09080706050403020100f0e0d0c0b0a09080")


def sw_of(connection: InProcessConnection, command: piv.Sendable) -> int:
    return send(connection, command)[1]


@pytest.fixture
def card(connection: InProcessConnection) -> InProcessConnection:
    """A fresh card with the PIV application selected."""
    expect_ok(connection, piv.select())
    return connection


@pytest.fixture
def admin(card: InProcessConnection) -> InProcessConnection:
    """Selected, with the default management key authenticated."""
    assert piv.authenticate_management(card) == SW_OK
    return card


def generate(connection: InProcessConnection, slot: int, algorithm: int,
             **policy: int) -> piv.PublicKey:
    template = expect_ok(connection, piv.generate(slot, algorithm, **policy))
    return piv.public_key_from_template(template, algorithm)


def sign(connection: InProcessConnection, slot: int, algorithm: int, data: bytes) -> bytes:
    return piv.signature_from_response(expect_ok(connection, piv.sign(slot, algorithm, data)))


def metadata(connection: InProcessConnection, ref: int) -> dict[int, bytes]:
    return parse_tlv_dict(expect_ok(connection, piv.get_metadata(ref)))


def block_pin(connection: InProcessConnection) -> None:
    for left in (2, 1, 0):
        assert sw_of(connection, piv.verify("000000")) == 0x63C0 | left
    assert sw_of(connection, piv.verify(DEFAULT_PIN)) == 0x6983


def block_puk(connection: InProcessConnection) -> None:
    for left in (2, 1, 0):
        assert sw_of(connection, piv.reset_retry_counter("00000000", "654321")) == 0x63C0 | left
    assert sw_of(connection, piv.reset_retry_counter(DEFAULT_PUK, "654321")) == 0x6983


def open_card(path: Path) -> tuple[SimulatedCard, InProcessConnection]:
    sim = SimulatedCard.open(path)
    connection = InProcessConnection(sim)
    expect_ok(connection, piv.select())
    return sim, connection


# SELECT -----------------------------------------------------------------------------------


def test_select_returns_the_application_property_template(
        connection: InProcessConnection) -> None:
    data = expect_ok(connection, piv.select())
    apt = parse_tlv_dict(parse_single(data, 0x61))
    assert apt[0x4F] == piv.PIV_AID[5:]  # the PIX
    assert parse_single(apt[0x79], 0x4F) == piv.PIV_AID
    algorithms = {t.value[0] for t in parse_tlv(apt[0xAC]) if t.tag == 0x80}
    assert {ALG_TDES, ALG_RSA_2048, ALG_P256, ALG_P384} <= algorithms


@pytest.mark.parametrize("length", [5, 9, 10, 11])
def test_select_with_a_right_truncated_aid(length: int, connection: InProcessConnection) -> None:
    assert sw_of(connection, piv.select(piv.PIV_AID[:length])) == SW_OK
    assert len(expect_ok(connection, piv.get_serial())) == 4


@pytest.mark.parametrize(
    "aid",
    [
        pytest.param(piv.PIV_AID[:4], id="shorter-than-RID"),
        pytest.param(bytes.fromhex("D27600012401"), id="openpgp"),
        pytest.param(bytes.fromhex("A000000308000010000200"), id="other-PIX"),
        pytest.param(piv.PIV_AID + b"\x00", id="longer"),
        pytest.param(b"", id="empty"),
    ],
)
def test_select_unknown_aid_is_6a82(aid: bytes, connection: InProcessConnection) -> None:
    assert sw_of(connection, piv.select(aid)) == 0x6A82
    assert sw_of(connection, piv.get_serial()) == 0x6D00  # still nothing selected


def test_select_with_wrong_p1p2(connection: InProcessConnection) -> None:
    assert sw_of(connection, Command(0xA4, 0x00, 0x00, piv.PIV_AID)) == 0x6A86
    assert sw_of(connection, Command(0xA4, 0x04, 0x0C, piv.PIV_AID)) == 0x6A86


@pytest.mark.parametrize(
    "command",
    [piv.get_data(piv.CHUID), piv.verify(DEFAULT_PIN), piv.get_serial(),
     piv.generate(SLOT_AUTHENTICATION, ALG_P256), piv.get_metadata(0x80)],
)
def test_commands_before_select_are_refused(command: Command,
                                            connection: InProcessConnection,
                                            sim: SimulatedCard) -> None:
    assert sw_of(connection, command) == 0x6D00
    assert sim.store.state.pin.retries_left == 3  # nothing was evaluated


# GET DATA -----------------------------------------------------------------------------------


def test_get_data_chuid(card: InProcessConnection) -> None:
    chuid = parse_tlv_dict(piv.object_content(expect_ok(card, piv.get_data(piv.CHUID))))
    assert len(chuid[0x30]) == 25  # FASC-N
    assert len(chuid[0x34]) == 16  # GUID
    assert len(chuid[0x35]) == 8 and chuid[0x35].isdigit()  # expiration YYYYMMDD
    assert 0x3E in chuid and chuid[0xFE] == b""


def test_get_data_ccc(card: InProcessConnection) -> None:
    ccc = parse_tlv_dict(piv.object_content(expect_ok(card, piv.get_data(piv.CCC))))
    assert len(ccc[0xF0]) == 21  # card identifier
    assert ccc[0xF1] == b"\x21" and ccc[0xF2] == b"\x21"
    assert 0xFE in ccc


def test_get_data_discovery_object(card: InProcessConnection) -> None:
    data = expect_ok(card, piv.get_data(piv.DISCOVERY))
    # The discovery object is returned as its own 7E template, not wrapped in 53.
    discovery = parse_tlv_dict(parse_single(data, 0x7E))
    assert discovery[0x4F] == piv.PIV_AID
    assert discovery[0x5F2F] == b"\x40\x00"


def test_get_data_key_history(card: InProcessConnection) -> None:
    history = parse_tlv_dict(piv.object_content(expect_ok(card, piv.get_data(piv.KEY_HISTORY))))
    assert history[0xC1] == b"\x00" and history[0xC2] == b"\x00"


@pytest.mark.parametrize("slot", sorted(piv.SLOT_CERTIFICATES))
def test_get_data_missing_certificate_is_6a82(slot: int, card: InProcessConnection) -> None:
    assert sw_of(card, piv.get_data(piv.SLOT_CERTIFICATES[slot])) == 0x6A82


@pytest.mark.parametrize("tag", [0x5FC1FF, 0x5FFF10, 0x7F61, 0x01])
def test_get_data_unknown_object_is_6a82(tag: int, card: InProcessConnection) -> None:
    assert sw_of(card, piv.get_data(tag)) == 0x6A82


def test_get_data_malformed(card: InProcessConnection) -> None:
    assert sw_of(card, Command(0xCB, 0x3F, 0xFE, tlv(0x5C, b"\x5f\xc1\x02"), le=0)) == 0x6A86
    assert sw_of(card, Command(0xCB, 0x3F, 0xFF, tlv(0x5D, b"\x5f\xc1\x02"), le=0)) == 0x6A80
    assert sw_of(card, Command(0xCB, 0x3F, 0xFF, tlv(0x5C, bytes(4)), le=0)) == 0x6A80
    assert sw_of(card, Command(0xCB, 0x3F, 0xFF, b"\x5c\x05\x5f", le=0)) == 0x6A80
    assert sw_of(card, Command(0xCB, 0x3F, 0xFF, le=0)) == 0x6A80


def test_pin_protected_object_needs_verify(admin: InProcessConnection) -> None:
    content = tlv(0xBC, b"fingerprint template") + tlv(0xFE)
    expect_ok(admin, piv.put_data(piv.FINGERPRINTS, content))
    assert sw_of(admin, piv.get_data(piv.FINGERPRINTS)) == 0x6982
    expect_ok(admin, piv.verify(DEFAULT_PIN))
    assert piv.object_content(expect_ok(admin, piv.get_data(piv.FINGERPRINTS))) == content
    expect_ok(admin, piv.verify_reset())
    assert sw_of(admin, piv.get_data(piv.FINGERPRINTS)) == 0x6982


# PUT DATA -----------------------------------------------------------------------------------


def test_put_data_writes_replaces_and_deletes(admin: InProcessConnection) -> None:
    first, second = piv.make_certificate(), piv.make_certificate(400)
    expect_ok(admin, piv.put_certificate(SLOT_AUTHENTICATION, first))
    expect_ok(admin, piv.put_certificate(SLOT_AUTHENTICATION, second))
    read = piv.certificate_from_object(expect_ok(admin, piv.get_data(0x5FC105)))
    assert read.public_bytes(Encoding.DER) == second
    expect_ok(admin, piv.put_data(0x5FC105, b""))  # empty content deletes the object
    assert sw_of(admin, piv.get_data(0x5FC105)) == 0x6A82


@pytest.mark.parametrize("tag", [piv.ATTESTATION_CERTIFICATE, piv.DISCOVERY, 0x5FC1FF])
def test_put_data_refuses_read_only_or_unknown_objects(tag: int,
                                                       admin: InProcessConnection) -> None:
    assert sw_of(admin, piv.put_data(tag, b"\x01\x02")) == 0x6A80


def test_put_data_malformed_and_too_large(admin: InProcessConnection) -> None:
    assert sw_of(admin, Command(0xDB, 0x3F, 0xFF, tlv(0x53, b"x") + tlv(0x5C, b"\x5f\xc1\x05"))
                 ) == 0x6A80
    assert sw_of(admin, Command(0xDB, 0x3F, 0xFF, tlv(0x5C, b"\x5f\xc1\x05"))) == 0x6A80
    assert sw_of(admin, Command(0xDB, 0x3F, 0xFE, tlv(0x5C, b"\x5f\xc1\x05") + tlv(0x53))
                 ) == 0x6A86
    assert sw_of(admin, piv.put_data(0x5FC105, bytes(3073))) == 0x6A84
    assert sw_of(admin, piv.get_data(0x5FC105)) == 0x6A82


def test_put_data_needs_the_management_key(card: InProcessConnection) -> None:
    expect_ok(card, piv.verify(DEFAULT_PIN))  # the PIN is not enough
    assert sw_of(card, piv.put_certificate(SLOT_AUTHENTICATION, piv.make_certificate())) == 0x6982
    assert sw_of(card, piv.get_data(0x5FC105)) == 0x6A82


# VERIFY ---------------------------------------------------------------------------------------


def test_verify_status_query(card: InProcessConnection) -> None:
    assert send(card, piv.verify()) == (b"", 0x63C3)
    assert send(card, piv.verify(DEFAULT_PIN)) == (b"", SW_OK)
    assert send(card, piv.verify()) == (b"", SW_OK)
    # The status query neither costs nor restores a try.
    assert metadata(card, 0x80)[0x06] == b"\x03\x03"


def test_wrong_pins_count_down_then_block(card: InProcessConnection) -> None:
    assert sw_of(card, piv.verify("999999")) == 0x63C2
    assert sw_of(card, piv.verify()) == 0x63C2
    assert sw_of(card, piv.verify("999998")) == 0x63C1
    assert sw_of(card, piv.verify("999997")) == 0x63C0
    assert sw_of(card, piv.verify(DEFAULT_PIN)) == 0x6983  # blocked even with the right PIN
    assert sw_of(card, piv.verify()) == 0x6983
    assert metadata(card, 0x80)[0x06] == b"\x03\x00"


def test_right_pin_restores_the_counter(card: InProcessConnection) -> None:
    assert sw_of(card, piv.verify("999999")) == 0x63C2
    assert sw_of(card, piv.verify("999998")) == 0x63C1
    expect_ok(card, piv.verify(DEFAULT_PIN))
    assert metadata(card, 0x80)[0x06] == b"\x03\x03"


def test_wrong_pin_drops_an_earlier_verification(card: InProcessConnection) -> None:
    expect_ok(card, piv.verify(DEFAULT_PIN))
    assert sw_of(card, piv.verify("999999")) == 0x63C2
    assert sw_of(card, piv.verify()) == 0x63C2


def test_verify_p1_ff_resets_security_status(card: InProcessConnection) -> None:
    expect_ok(card, piv.verify(DEFAULT_PIN))
    assert send(card, piv.verify_reset()) == (b"", SW_OK)
    assert sw_of(card, piv.verify()) == 0x63C3
    assert sw_of(card, Command(0x20, 0xFF, 0x80, piv.pin_field(DEFAULT_PIN))) == 0x6700


def test_verify_bad_references(card: InProcessConnection) -> None:
    assert sw_of(card, Command(0x20, 0x00, 0x81, piv.pin_field(DEFAULT_PUK))) == 0x6A88
    assert sw_of(card, Command(0x20, 0x01, 0x80, piv.pin_field(DEFAULT_PIN))) == 0x6A86
    assert metadata(card, 0x80)[0x06] == b"\x03\x03"


@pytest.mark.parametrize(
    "field",
    [
        pytest.param(piv.pin_field("12ab56"), id="letters"),
        pytest.param(piv.pin_field("12 456"), id="space"),
        pytest.param(piv.pin_field("123"), id="too-short"),
        pytest.param(piv.pin_field(""), id="empty-value"),
        pytest.param(b"123\xff456\xff", id="padding-inside"),
        pytest.param(b"123456", id="unpadded-6-bytes"),
        pytest.param(b"123456789", id="9-bytes"),
    ],
)
def test_malformed_pin_is_6a80_and_costs_no_try(field: bytes, card: InProcessConnection) -> None:
    assert sw_of(card, Command(0x20, 0x00, 0x80, field)) == 0x6A80
    assert sw_of(card, piv.verify()) == 0x63C3


def test_default_profile_accepts_four_digit_pins(card: InProcessConnection) -> None:
    expect_ok(card, piv.change_pin(DEFAULT_PIN, "1234"))
    expect_ok(card, piv.verify_reset())
    expect_ok(card, piv.verify("1234"))
    assert sw_of(card, piv.verify("4321")) == 0x63C2
    expect_ok(card, piv.change_pin("1234", "12345678"))  # and 8 digits
    expect_ok(card, piv.verify("12345678"))


def test_piv_strict_profile_rejects_four_digit_pins(tmp_path: Path,
                                                    manufacturer: Manufacturer) -> None:
    path = tmp_path / "strict.json"
    manufacture(path, profile="piv-strict", manufacturer=manufacturer)
    _, card = open_card(path)
    assert sw_of(card, piv.verify("1234")) == 0x6A80
    assert sw_of(card, piv.verify("12345")) == 0x6A80
    assert sw_of(card, piv.verify()) == 0x63C3  # no try spent
    assert sw_of(card, piv.change_pin(DEFAULT_PIN, "1234")) == 0x6A80
    assert sw_of(card, piv.reset_retry_counter(DEFAULT_PUK, "1234")) == 0x6A80
    expect_ok(card, piv.verify(DEFAULT_PIN))
    expect_ok(card, piv.change_pin(DEFAULT_PIN, "654321"))
    expect_ok(card, piv.verify("654321"))


# CHANGE REFERENCE DATA, RESET RETRY COUNTER ---------------------------------------------------


def test_change_pin(card: InProcessConnection) -> None:
    assert metadata(card, 0x80)[0x05] == b"\x01"  # factory default
    expect_ok(card, piv.change_pin(DEFAULT_PIN, "24681357"))
    assert metadata(card, 0x80)[0x05] == b"\x00"
    expect_ok(card, piv.verify_reset())
    assert sw_of(card, piv.verify(DEFAULT_PIN)) == 0x63C2
    expect_ok(card, piv.verify("24681357"))


def test_change_pin_with_wrong_old_pin(card: InProcessConnection) -> None:
    assert sw_of(card, piv.change_pin("000000", "654321")) == 0x63C2
    assert sw_of(card, piv.verify("654321")) == 0x63C1
    expect_ok(card, piv.verify(DEFAULT_PIN))


def test_change_pin_when_blocked(card: InProcessConnection) -> None:
    block_pin(card)
    assert sw_of(card, piv.change_pin(DEFAULT_PIN, "654321")) == 0x6983


def test_change_puk(card: InProcessConnection) -> None:
    expect_ok(card, piv.change_puk(DEFAULT_PUK, "87654321"))
    assert metadata(card, 0x81)[0x05] == b"\x00"
    block_pin(card)
    assert sw_of(card, piv.reset_retry_counter(DEFAULT_PUK, "654321")) == 0x63C2
    expect_ok(card, piv.reset_retry_counter("87654321", "654321"))
    assert metadata(card, 0x81)[0x06] == b"\x03\x03"
    expect_ok(card, piv.verify("654321"))


def test_change_puk_with_wrong_old_puk(card: InProcessConnection) -> None:
    assert sw_of(card, piv.change_puk("00000000", "87654321")) == 0x63C2
    assert metadata(card, 0x81)[0x06] == b"\x03\x02"
    assert metadata(card, 0x80)[0x06] == b"\x03\x03"  # the PIN's counter is separate


def test_change_reference_data_malformed(card: InProcessConnection) -> None:
    assert sw_of(card, Command(0x24, 0x00, 0x80, piv.pin_field(DEFAULT_PIN))) == 0x6A80
    assert sw_of(card, Command(0x24, 0x00, 0x9B, bytes(16))) == 0x6A88
    assert sw_of(card, Command(0x24, 0x01, 0x80, bytes(16))) == 0x6A86
    assert sw_of(card, piv.change_puk(DEFAULT_PUK, "123")) == 0x6A80
    assert metadata(card, 0x81)[0x06] == b"\x03\x03"


def test_reset_retry_counter_unblocks_the_pin(card: InProcessConnection) -> None:
    block_pin(card)
    expect_ok(card, piv.reset_retry_counter(DEFAULT_PUK, "1357"))
    assert sw_of(card, piv.verify()) == 0x63C3  # unblocked, not verified
    expect_ok(card, piv.verify("1357"))
    assert sw_of(card, Command(0x2C, 0x00, 0x81, bytes(16))) == 0x6A86
    assert sw_of(card, Command(0x2C, 0x00, 0x80, bytes(8))) == 0x6A80


def test_puk_blocks_after_three_wrong_tries(card: InProcessConnection) -> None:
    block_pin(card)
    block_puk(card)
    assert metadata(card, 0x81)[0x06] == b"\x03\x00"
    assert sw_of(card, piv.change_puk(DEFAULT_PUK, "87654321")) == 0x6983
    assert sw_of(card, piv.verify(DEFAULT_PIN)) == 0x6983


# Management key -------------------------------------------------------------------------------


def test_mutual_authentication_unlocks_generate(card: InProcessConnection) -> None:
    assert sw_of(card, piv.generate(SLOT_AUTHENTICATION, ALG_P256)) == 0x6982
    assert piv.authenticate_management(card) == SW_OK
    generate(card, SLOT_AUTHENTICATION, ALG_P256)


def test_single_challenge_unlocks_put_data(card: InProcessConnection) -> None:
    cert = piv.make_certificate()
    assert sw_of(card, piv.put_certificate(SLOT_SIGNATURE, cert)) == 0x6982
    assert piv.authenticate_management_challenge(card) == SW_OK
    expect_ok(card, piv.put_certificate(SLOT_SIGNATURE, cert))


def test_wrong_management_key_fails(card: InProcessConnection) -> None:
    assert piv.authenticate_management(card, OTHER_KEY) == 0x6982
    assert piv.authenticate_management_challenge(card, OTHER_KEY) == 0x6982
    assert sw_of(card, piv.generate(SLOT_AUTHENTICATION, ALG_P256)) == 0x6982
    assert sw_of(card, piv.put_data(piv.CHUID, b"\x01")) == 0x6982


def test_failed_attempt_drops_an_earlier_authentication(admin: InProcessConnection) -> None:
    assert piv.authenticate_management(admin, OTHER_KEY) == 0x6982
    assert sw_of(admin, piv.generate(SLOT_AUTHENTICATION, ALG_P256)) == 0x6982


def test_management_protocol_steps_out_of_order(card: InProcessConnection) -> None:
    ref = piv.MANAGEMENT_REF
    # Answer a witness that was never asked for.
    assert sw_of(card, piv.general_authenticate(ref, ALG_TDES, tlv(0x80, bytes(8))
                                                + tlv(0x81, bytes(8)))) == 0x6A80
    assert sw_of(card, piv.general_authenticate(ref, ALG_TDES, tlv(0x82, bytes(8)))) == 0x6A80
    # The wrong algorithm for the management key.
    assert sw_of(card, piv.general_authenticate(ref, 0x08, tlv(0x80))) == 0x6A86
    # A witness answered with the wrong length.
    expect_ok(card, piv.general_authenticate(ref, ALG_TDES, tlv(0x80)))
    assert sw_of(card, piv.general_authenticate(ref, ALG_TDES, tlv(0x80, bytes(7))
                                                + tlv(0x81, bytes(8)))) == 0x6A80
    assert sw_of(card, piv.generate(SLOT_AUTHENTICATION, ALG_P256)) == 0x6982


def test_a_witness_answer_cannot_be_replayed(card: InProcessConnection) -> None:
    data = expect_ok(card, piv.general_authenticate(piv.MANAGEMENT_REF, ALG_TDES, tlv(0x80)))
    witness = piv.decrypt_block(ALG_TDES, piv.DEFAULT_MANAGEMENT_KEY,
                                parse_tlv_dict(parse_single(data, 0x7C))[0x80])
    answer = piv.general_authenticate(piv.MANAGEMENT_REF, ALG_TDES,
                                      tlv(0x80, witness) + tlv(0x81, bytes(8)))
    expect_ok(card, answer)
    assert sw_of(card, answer) == 0x6A80  # the witness was spent
    assert sw_of(card, piv.generate(SLOT_AUTHENTICATION, ALG_P256)) == 0x6982


def test_set_management_key(admin: InProcessConnection, card_state: Path) -> None:
    expect_ok(admin, piv.set_management_key(OTHER_KEY))
    assert metadata(admin, piv.MANAGEMENT_REF)[0x05] == b"\x00"
    assert piv.authenticate_management(admin) == 0x6982
    assert piv.authenticate_management(admin, OTHER_KEY) == SW_OK
    # The new key is in the card's persistent memory.
    _, reopened = open_card(card_state)
    assert piv.authenticate_management(reopened) == 0x6982
    assert piv.authenticate_management_challenge(reopened, OTHER_KEY) == SW_OK


def test_set_management_key_to_aes(admin: InProcessConnection) -> None:
    key = bytes(range(16))
    expect_ok(admin, piv.set_management_key(key, piv.ALG_AES_128))
    assert metadata(admin, piv.MANAGEMENT_REF)[0x01] == bytes([piv.ALG_AES_128])
    assert piv.authenticate_management(admin) == 0x6A86  # 3DES is no longer the algorithm
    assert piv.authenticate_management(admin, key, piv.ALG_AES_128) == SW_OK


def test_set_management_key_refusals(card: InProcessConnection) -> None:
    assert sw_of(card, piv.set_management_key(OTHER_KEY)) == 0x6982
    assert piv.authenticate_management(card) == SW_OK
    assert sw_of(card, piv.set_management_key(OTHER_KEY[:16])) == 0x6A80  # TDES is 24 bytes
    assert sw_of(card, piv.set_management_key(OTHER_KEY, 0x11)) == 0x6A80
    assert sw_of(card, Command(0xFF, 0xFF, 0xFF, bytes([ALG_TDES, 0x9A, 24]) + OTHER_KEY)
                 ) == 0x6A80
    assert sw_of(card, Command(0xFF, 0x00, 0xFF, bytes([ALG_TDES, 0x9B, 24]) + OTHER_KEY)
                 ) == 0x6A86
    assert piv.authenticate_management(card) == SW_OK  # unchanged


# GENERATE and GENERAL AUTHENTICATE ------------------------------------------------------------


@pytest.mark.parametrize(
    ("algorithm", "hash_algorithm"),
    [(ALG_P256, hashes.SHA256()), (ALG_P384, hashes.SHA384()), (ALG_P384, hashes.SHA256())],
    ids=["P-256/SHA-256", "P-384/SHA-384", "P-384/SHA-256"],
)
def test_ecdsa_signature_verifies(algorithm: int, hash_algorithm: hashes.HashAlgorithm,
                                  admin: InProcessConnection) -> None:
    public = generate(admin, SLOT_AUTHENTICATION, algorithm)
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert public.curve.key_size == (256 if algorithm == ALG_P256 else 384)
    h = hashes.Hash(hash_algorithm)
    h.update(MESSAGE)
    digest = h.finalize()
    expect_ok(admin, piv.verify(DEFAULT_PIN))
    signature = sign(admin, SLOT_AUTHENTICATION, algorithm, digest)
    public.verify(signature, digest, ec.ECDSA(utils.Prehashed(hash_algorithm)))
    with pytest.raises(InvalidSignature):
        public.verify(signature, bytes(len(digest)), ec.ECDSA(utils.Prehashed(hash_algorithm)))


def test_rsa_2048_pkcs1_and_pss_signatures_verify(admin: InProcessConnection) -> None:
    public = generate(admin, SLOT_AUTHENTICATION, ALG_RSA_2048)
    assert isinstance(public, rsa.RSAPublicKey)
    assert public.key_size == 2048 and public.public_numbers().e == 65537
    expect_ok(admin, piv.verify(DEFAULT_PIN))

    # PKCS#1 v1.5, sent with command chaining (the block does not fit a short APDU).
    command = piv.sign(SLOT_AUTHENTICATION, ALG_RSA_2048, piv.pkcs1_v15_block(MESSAGE))
    signature = piv.signature_from_response(expect_ok(admin, command.chained()))
    assert len(signature) == 256
    public.verify(signature, MESSAGE, padding.PKCS1v15(), hashes.SHA256())

    # PSS encoded by hand, sent as one extended APDU.
    block = piv.pss_block(MESSAGE)
    command = piv.sign(SLOT_AUTHENTICATION, ALG_RSA_2048, block)
    signature = piv.signature_from_response(expect_ok(admin, command.encode(extended=True)))
    public.verify(signature, MESSAGE,
                  padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
                  hashes.SHA256())
    with pytest.raises(InvalidSignature):
        public.verify(signature, MESSAGE + b"!",
                      padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
                      hashes.SHA256())

    # Input of the wrong length, or not below the modulus, is refused.
    assert sw_of(admin, piv.sign(SLOT_AUTHENTICATION, ALG_RSA_2048, bytes(255))) == 0x6A80
    assert sw_of(admin, piv.sign(SLOT_AUTHENTICATION, ALG_RSA_2048, b"\xff" * 256)) == 0x6A80
    # Attestation of an RSA key, while one exists.
    cert = x509.load_der_x509_certificate(expect_ok(admin, piv.attest(SLOT_AUTHENTICATION)))
    assert piv.same_public_key(cert.public_key(), public)  # type: ignore[arg-type]


def test_signature_slot_needs_verify_before_each_signature(admin: InProcessConnection) -> None:
    public = generate(admin, SLOT_SIGNATURE, ALG_P256)
    assert isinstance(public, ec.EllipticCurvePublicKey)
    digest = hashlib.sha256(MESSAGE).digest()
    command = piv.sign(SLOT_SIGNATURE, ALG_P256, digest)
    assert sw_of(admin, command) == 0x6982
    expect_ok(admin, piv.verify(DEFAULT_PIN))
    signature = sign(admin, SLOT_SIGNATURE, ALG_P256, digest)
    public.verify(signature, digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    assert sw_of(admin, command) == 0x6982  # the VERIFY was spent
    expect_ok(admin, piv.verify())  # a status query does not re-arm it
    assert sw_of(admin, command) == 0x6982
    expect_ok(admin, piv.verify(DEFAULT_PIN))
    sign(admin, SLOT_SIGNATURE, ALG_P256, digest)
    assert sw_of(admin, command) == 0x6982


def test_authentication_slot_needs_the_pin_once(admin: InProcessConnection) -> None:
    generate(admin, SLOT_AUTHENTICATION, ALG_P256)
    digest = hashlib.sha256(MESSAGE).digest()
    assert sw_of(admin, piv.sign(SLOT_AUTHENTICATION, ALG_P256, digest)) == 0x6982
    expect_ok(admin, piv.verify(DEFAULT_PIN))
    for _ in range(3):
        sign(admin, SLOT_AUTHENTICATION, ALG_P256, digest)
    expect_ok(admin, piv.verify_reset())
    assert sw_of(admin, piv.sign(SLOT_AUTHENTICATION, ALG_P256, digest)) == 0x6982


def test_card_authentication_slot_needs_no_pin(admin: InProcessConnection) -> None:
    public = generate(admin, SLOT_CARD_AUTHENTICATION, ALG_P256)
    assert isinstance(public, ec.EllipticCurvePublicKey)
    digest = hashlib.sha256(MESSAGE).digest()
    assert sw_of(admin, piv.verify()) == 0x63C3
    for _ in range(2):
        signature = sign(admin, SLOT_CARD_AUTHENTICATION, ALG_P256, digest)
        public.verify(signature, digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))


def test_explicit_pin_policy_overrides_the_slot_default(admin: InProcessConnection) -> None:
    generate(admin, SLOT_AUTHENTICATION, ALG_P256, pin_policy=0x01)  # never
    assert metadata(admin, SLOT_AUTHENTICATION)[0x02][0] == 0x01
    sign(admin, SLOT_AUTHENTICATION, ALG_P256, hashlib.sha256(MESSAGE).digest())
    assert sw_of(admin, piv.generate(SLOT_AUTHENTICATION, ALG_P256, pin_policy=0x07)) == 0x6A80


@pytest.mark.parametrize("algorithm", [ALG_P256, ALG_P384])
def test_ecdh_on_key_management_slot(algorithm: int, admin: InProcessConnection) -> None:
    public = generate(admin, SLOT_KEY_MANAGEMENT, algorithm)
    assert isinstance(public, ec.EllipticCurvePublicKey)
    peer = ec.generate_private_key(public.curve)
    point = peer.public_key().public_bytes(Encoding.X962,
                                           PublicFormat.UncompressedPoint)
    assert sw_of(admin, piv.ecdh(SLOT_KEY_MANAGEMENT, algorithm, point)) == 0x6982
    expect_ok(admin, piv.verify(DEFAULT_PIN))
    shared = piv.signature_from_response(
        expect_ok(admin, piv.ecdh(SLOT_KEY_MANAGEMENT, algorithm, point)))
    assert shared == peer.exchange(ec.ECDH(), public)
    # A point that is not on the curve is refused.
    bad = point[:-1] + bytes([point[-1] ^ 1])
    assert sw_of(admin, piv.ecdh(SLOT_KEY_MANAGEMENT, algorithm, bad)) == 0x6A80


def test_general_authenticate_refusals(admin: InProcessConnection) -> None:
    digest = hashlib.sha256(MESSAGE).digest()
    assert sw_of(admin, piv.sign(SLOT_AUTHENTICATION, ALG_P256, digest)) == 0x6A88  # empty
    generate(admin, SLOT_AUTHENTICATION, ALG_P256)
    expect_ok(admin, piv.verify(DEFAULT_PIN))
    # Wrong algorithm in P1 for the key in the slot.
    assert sw_of(admin, piv.sign(SLOT_AUTHENTICATION, ALG_P384, digest)) == 0x6A86
    assert sw_of(admin, piv.sign(SLOT_AUTHENTICATION, ALG_RSA_2048, digest)) == 0x6A86
    # Not a key reference.
    assert sw_of(admin, piv.sign(0x80, ALG_P256, digest)) == 0x6A86
    # A hash longer than the field, and an empty one.
    assert sw_of(admin, piv.sign(SLOT_AUTHENTICATION, ALG_P256, bytes(48))) == 0x6A80
    assert sw_of(admin, piv.sign(SLOT_AUTHENTICATION, ALG_P256, b"")) == 0x6A80
    # Malformed templates: no 82 00, both 81 and 85, outer tag not 7C, broken TLV.
    alg, slot = ALG_P256, SLOT_AUTHENTICATION
    assert sw_of(admin, piv.general_authenticate(slot, alg, tlv(0x81, digest))) == 0x6A80
    assert sw_of(admin, piv.general_authenticate(
        slot, alg, tlv(0x82) + tlv(0x81, digest) + tlv(0x85, digest))) == 0x6A80
    assert sw_of(admin, Command(0x87, alg, slot, tlv(0x7D, tlv(0x82) + tlv(0x81, digest)),
                                le=0)) == 0x6A80
    assert sw_of(admin, Command(0x87, alg, slot, b"\x7c\x10\x82\x00", le=0)) == 0x6A80
    # None of the refusals disturbed the key or the PIN status.
    sign(admin, slot, alg, digest)


def test_generate_refusals(admin: InProcessConnection) -> None:
    for algorithm in (ALG_TDES, 0x06, 0x08, 0x00):
        assert sw_of(admin, piv.generate(SLOT_AUTHENTICATION, algorithm)) == 0x6A80
    assert sw_of(admin, piv.generate(piv.MANAGEMENT_REF, ALG_P256)) == 0x6A86
    assert sw_of(admin, piv.generate(0xF9, ALG_P256)) == 0x6A86
    assert sw_of(admin, Command(0x47, 0x00, 0x9A, tlv(0xAB, tlv(0x80, b"\x11")), le=0)) == 0x6A80
    assert sw_of(admin, Command(0x47, 0x00, 0x9A, tlv(0xAC), le=0)) == 0x6A80
    assert sw_of(admin, piv.get_metadata(SLOT_AUTHENTICATION)) == 0x6A88


def test_generate_replaces_the_key(admin: InProcessConnection) -> None:
    first = generate(admin, SLOT_AUTHENTICATION, ALG_P256)
    second = generate(admin, SLOT_AUTHENTICATION, ALG_P384)
    assert not piv.same_public_key(first, second)
    assert metadata(admin, SLOT_AUTHENTICATION)[0x01] == bytes([ALG_P384])
    expect_ok(admin, piv.verify(DEFAULT_PIN))
    assert sw_of(admin, piv.sign(SLOT_AUTHENTICATION, ALG_P256, bytes(32))) == 0x6A86


# GET METADATA, GET SERIAL, GET VERSION --------------------------------------------------------


def test_metadata_for_pin_and_puk(card: InProcessConnection) -> None:
    pin = metadata(card, 0x80)
    assert pin[0x01] == b"\xff" and pin[0x05] == b"\x01" and pin[0x06] == b"\x03\x03"
    assert sw_of(card, piv.verify("999999")) == 0x63C2
    assert metadata(card, 0x80)[0x06] == b"\x03\x02"
    assert metadata(card, 0x81)[0x06] == b"\x03\x03"


def test_metadata_for_key_slots(admin: InProcessConnection) -> None:
    expected_pin_policy = {SLOT_AUTHENTICATION: 0x02, SLOT_SIGNATURE: 0x03,
                           SLOT_KEY_MANAGEMENT: 0x02, SLOT_CARD_AUTHENTICATION: 0x01}
    for slot, pin_policy in expected_pin_policy.items():
        algorithm = ALG_P384 if slot == SLOT_SIGNATURE else ALG_P256
        public = generate(admin, slot, algorithm)
        meta = metadata(admin, slot)
        assert meta[0x01] == bytes([algorithm])
        assert meta[0x02][0] == pin_policy
        assert meta[0x03] == b"\x01"  # generated on the card
        assert piv.same_public_key(piv.public_key_from_content(meta[0x04], algorithm), public)


def test_metadata_for_management_and_attestation_keys(card: InProcessConnection) -> None:
    mgm = metadata(card, piv.MANAGEMENT_REF)
    assert mgm[0x01] == bytes([ALG_TDES]) and mgm[0x05] == b"\x01"
    attestation = metadata(card, 0xF9)
    assert attestation[0x01] == bytes([ALG_P256])
    assert sw_of(card, piv.get_metadata(0x70)) == 0x6A86
    assert sw_of(card, Command(0xF7, 0x01, 0x80, le=0)) == 0x6A86


def test_get_serial_and_version(card: InProcessConnection, sim: SimulatedCard) -> None:
    serial = expect_ok(card, piv.get_serial())
    assert int.from_bytes(serial, "big") == sim.store.state.serial == sim.serial
    assert expect_ok(card, piv.get_version()) == bytes(sim.profile.firmware_version)
    assert sw_of(card, Command(0xF8, 0x01, 0x00, le=0)) == 0x6A86
    assert sw_of(card, Command(0xFD, 0x00, 0x01, le=0)) == 0x6A86


def test_serial_is_the_one_manufactured(tmp_path: Path, manufacturer: Manufacturer) -> None:
    path = tmp_path / "serial.json"
    manufacture(path, manufacturer=manufacturer, serial=0x01020304)
    _, card = open_card(path)
    assert expect_ok(card, piv.get_serial()) == bytes.fromhex("01020304")


# ATTEST ---------------------------------------------------------------------------------------


def _extension(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> bytes:
    value = cert.extensions.get_extension_for_oid(oid).value
    assert isinstance(value, x509.UnrecognizedExtension)
    return value.value


@pytest.mark.parametrize(("slot", "algorithm"), [(SLOT_AUTHENTICATION, ALG_P256),
                                                 (SLOT_SIGNATURE, ALG_P384)])
def test_attestation_chains_to_the_manufacturer_root(slot: int, algorithm: int,
                                                     admin: InProcessConnection,
                                                     sim: SimulatedCard,
                                                     manufacturer: Manufacturer) -> None:
    public = generate(admin, slot, algorithm)
    cert = x509.load_der_x509_certificate(expect_ok(admin, piv.attest(slot)))
    assert piv.same_public_key(cert.public_key(), public)  # type: ignore[arg-type]
    device = piv.certificate_from_object(
        expect_ok(admin, piv.get_data(piv.ATTESTATION_CERTIFICATE)))
    cert.verify_directly_issued_by(device)
    device.verify_directly_issued_by(manufacturer.root_certificate)
    assert core.Integer.load(_extension(cert, AttestationOid.SERIAL_NUMBER)).native == sim.serial
    assert core.OctetString.load(_extension(cert, AttestationOid.SLOT)).native == bytes([slot])
    assert _extension(cert, AttestationOid.KEY_ORIGIN) == b"\x0a\x01\x01"  # ENUMERATED 1
    # The attestation key is the card's, as GET METADATA F9 reports it.
    device_public = piv.public_key_from_content(metadata(admin, 0xF9)[0x04], ALG_P256)
    assert piv.same_public_key(device.public_key(), device_public)  # type: ignore[arg-type]


def test_attestation_of_another_card_does_not_verify(admin: InProcessConnection,
                                                     tmp_path: Path,
                                                     manufacturer: Manufacturer) -> None:
    generate(admin, SLOT_AUTHENTICATION, ALG_P256)
    cert = x509.load_der_x509_certificate(expect_ok(admin, piv.attest(SLOT_AUTHENTICATION)))
    path = tmp_path / "other.json"
    manufacture(path, manufacturer=manufacturer)
    _, other = open_card(path)
    other_device = piv.certificate_from_object(
        expect_ok(other, piv.get_data(piv.ATTESTATION_CERTIFICATE)))
    with pytest.raises((InvalidSignature, ValueError)):
        cert.verify_directly_issued_by(other_device)


def test_attest_refusals(card: InProcessConnection) -> None:
    assert sw_of(card, piv.attest(SLOT_AUTHENTICATION)) == 0x6A88
    assert sw_of(card, Command(0xF9, SLOT_AUTHENTICATION, 0x01, le=0)) == 0x6A86
    assert sw_of(card, piv.attest(0x80)) == 0x6A86


# Card life cycle: SET PIN RETRIES, RESET ------------------------------------------------------


def test_set_pin_retries(admin: InProcessConnection) -> None:
    assert sw_of(admin, piv.set_pin_retries(5, 4)) == 0x6982  # needs the PIN as well
    expect_ok(admin, piv.verify(DEFAULT_PIN))
    expect_ok(admin, piv.set_pin_retries(5, 4))
    assert metadata(admin, 0x80)[0x06] == b"\x05\x05"
    assert metadata(admin, 0x81)[0x06] == b"\x04\x04"
    assert sw_of(admin, piv.verify()) == 0x63C5  # and the PIN status was dropped
    assert sw_of(admin, piv.verify("999999")) == 0x63C4


def test_reset_needs_pin_and_puk_blocked(card: InProcessConnection) -> None:
    assert sw_of(card, piv.factory_reset()) == 0x6985
    block_pin(card)
    assert sw_of(card, piv.factory_reset()) == 0x6985


def test_reset_returns_to_factory_state(admin: InProcessConnection, sim: SimulatedCard,
                                        card_state: Path) -> None:
    serial = sim.serial
    device = expect_ok(admin, piv.get_data(piv.ATTESTATION_CERTIFICATE))
    expect_ok(admin, piv.set_management_key(OTHER_KEY))
    generate(admin, SLOT_AUTHENTICATION, ALG_P256)
    expect_ok(admin, piv.put_certificate(SLOT_AUTHENTICATION, piv.make_certificate()))
    expect_ok(admin, piv.change_pin(DEFAULT_PIN, "777777"))
    block_pin(admin)
    block_puk(admin)
    expect_ok(admin, piv.factory_reset())

    assert sw_of(admin, piv.verify()) == 0x63C3
    expect_ok(admin, piv.verify(DEFAULT_PIN))
    assert sw_of(admin, piv.get_metadata(SLOT_AUTHENTICATION)) == 0x6A88
    assert sw_of(admin, piv.sign(SLOT_AUTHENTICATION, ALG_P256, bytes(32))) == 0x6A88
    assert sw_of(admin, piv.get_data(0x5FC105)) == 0x6A82
    assert sw_of(admin, piv.generate(SLOT_AUTHENTICATION, ALG_P256)) == 0x6982  # auth dropped
    assert piv.authenticate_management(admin) == SW_OK  # default key again
    assert metadata(admin, 0x81)[0x06] == b"\x03\x03"
    # What belongs to the chip stays.
    assert expect_ok(admin, piv.get_data(piv.ATTESTATION_CERTIFICATE)) == device
    assert int.from_bytes(expect_ok(admin, piv.get_serial()), "big") == serial
    # ... and the reset is persistent.
    _, reopened = open_card(card_state)
    assert sw_of(reopened, piv.get_metadata(SLOT_AUTHENTICATION)) == 0x6A88
    expect_ok(reopened, piv.verify(DEFAULT_PIN))


# Persistence and power ------------------------------------------------------------------------


def test_state_survives_reopening(admin: InProcessConnection, card_state: Path) -> None:
    public = generate(admin, SLOT_AUTHENTICATION, ALG_P256)
    cert = piv.make_certificate(500)
    expect_ok(admin, piv.put_certificate(SLOT_AUTHENTICATION, cert))
    assert sw_of(admin, piv.verify("999999")) == 0x63C2
    assert sw_of(admin, piv.reset_retry_counter("00000000", "654321")) == 0x63C2

    sim2, card2 = open_card(card_state)
    assert sw_of(card2, piv.verify()) == 0x63C2
    assert metadata(card2, 0x81)[0x06] == b"\x03\x02"
    assert piv.same_public_key(
        piv.public_key_from_content(metadata(card2, SLOT_AUTHENTICATION)[0x04], ALG_P256), public)
    read = piv.certificate_from_object(expect_ok(card2, piv.get_data(0x5FC105)))
    assert read.public_bytes(Encoding.DER) == cert
    # The key itself survived, not just its public half.
    expect_ok(card2, piv.verify(DEFAULT_PIN))
    digest = hashlib.sha256(MESSAGE).digest()
    signature = sign(card2, SLOT_AUTHENTICATION, ALG_P256, digest)
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(signature, digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    # The security status is volatile: it did not travel with the file.
    assert sw_of(card2, piv.generate(SLOT_AUTHENTICATION, ALG_P256)) == 0x6982
    assert sim2.store.state.pin.retries_left == 3


def test_wrong_pin_is_on_disk_before_the_answer(card: InProcessConnection,
                                                card_state: Path) -> None:
    assert sw_of(card, piv.verify("999999")) == 0x63C2
    # Another process reading the file now sees the spent try.
    assert SimulatedCard.open(card_state).store.state.pin.retries_left == 2


def test_power_cycle_clears_security_status_but_not_counters(admin: InProcessConnection,
                                                             sim: SimulatedCard) -> None:
    generate(admin, SLOT_AUTHENTICATION, ALG_P256)
    assert sw_of(admin, piv.verify("999999")) == 0x63C2
    expect_ok(admin, piv.verify(DEFAULT_PIN))
    sign(admin, SLOT_AUTHENTICATION, ALG_P256, bytes(32))
    sim.power_off()
    sim.power_on()
    assert sw_of(admin, piv.get_serial()) == 0x6D00  # nothing selected after power-up
    expect_ok(admin, piv.select())
    assert sw_of(admin, piv.verify()) == 0x63C3
    assert sw_of(admin, piv.sign(SLOT_AUTHENTICATION, ALG_P256, bytes(32))) == 0x6982
    assert sw_of(admin, piv.generate(SLOT_AUTHENTICATION, ALG_P256)) == 0x6982
    # A wrong PIN before the cycle stays spent after it.
    assert sw_of(admin, piv.verify("999999")) == 0x63C2
    sim.reset()
    expect_ok(admin, piv.select())
    assert sw_of(admin, piv.verify()) == 0x63C2
