"""pyscard -> pcscd -> vpcd -> simulated card: the reader, the ATR, SELECT PIV."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import pytest
from asn1crypto import core
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from smartcard.Exceptions import CardConnectionException
from smartcard.System import readers

from firmware_sim.attestation import AttestationOid, Manufacturer
from firmware_sim.profiles import QSIGN_SIM_ATR
from tests.support import piv_apdus as piv
from tests.support.pcsc import READER_NAMES, PrivatePcscd, RunningCard, connect, wait_reader
from tests.support.provision import PyscardConnection


def test_pyscard_lists_reader_reads_atr_and_selects_piv(simulated_card: RunningCard) -> None:
    names = [str(r) for r in readers()]
    assert READER_NAMES[0] in names
    connection = connect(simulated_card.reader)
    assert bytes(connection.getATR()) == QSIGN_SIM_ATR
    data, sw1, sw2 = connection.transmit(list(bytes.fromhex("00A4040009A00000030800001000")))
    assert (sw1, sw2) == (0x90, 0x00)
    assert bytes(data[:2]) == b"\x61" + bytes([len(data) - 2])
    connection.disconnect()


def test_attestation_through_the_stack_chains_to_the_manufacturer_root(
    simulated_card: RunningCard, manufacturer: Manufacturer
) -> None:
    connection = connect(simulated_card.reader)
    card = PyscardConnection(connection)
    piv.expect_ok(card, piv.select())
    assert piv.authenticate_management(card) == piv.SW_OK
    template = piv.expect_ok(card, piv.generate(0x9C, piv.ALG_P256))
    public_key = piv.public_key_from_template(template, piv.ALG_P256)
    attested = x509.load_der_x509_certificate(piv.expect_ok(card, piv.attest(0x9C)))
    device = piv.certificate_from_object(
        piv.expect_ok(card, piv.get_data(piv.ATTESTATION_CERTIFICATE)))
    connection.disconnect()

    attested.verify_directly_issued_by(device)
    device.verify_directly_issued_by(manufacturer.root_certificate)
    assert attested.public_key() == public_key
    serial = int(simulated_card.control("status")["serial"])  # type: ignore[call-overload]
    ext = attested.extensions.get_extension_for_oid(AttestationOid.SERIAL_NUMBER)
    assert isinstance(ext.value, x509.UnrecognizedExtension)
    assert ext.value.value == core.Integer(serial).dump()
    # A stranger's root must not verify the device certificate: the check can fail.
    stranger = Manufacturer.open(Path(tempfile.mkdtemp()))
    with pytest.raises(InvalidSignature):
        device.verify_directly_issued_by(stranger.root_certificate)


def test_remove_and_reinsert_the_card(simulated_card: RunningCard) -> None:
    connection = connect(simulated_card.reader)
    card = PyscardConnection(connection)
    piv.expect_ok(card, piv.select())
    piv.expect_ok(card, piv.verify(piv.DEFAULT_PIN))
    simulated_card.remove()
    with pytest.raises(CardConnectionException):
        piv.send(card, piv.verify())
    simulated_card.insert()
    connection = connect(simulated_card.reader)
    card = PyscardConnection(connection)
    piv.expect_ok(card, piv.select())
    # A re-inserted card was powered off: the PIN is no longer verified.
    assert piv.send(card, piv.verify()) == (b"", 0x63C3)
    connection.disconnect()


def test_latency_injection_slows_each_apdu(simulated_card: RunningCard) -> None:
    connection = connect(simulated_card.reader)
    card = PyscardConnection(connection)
    simulated_card.control("latency 50")
    started = time.monotonic()
    for _ in range(3):
        piv.expect_ok(card, piv.select())
    # A floor, not a timing assertion: 3 APDUs cannot finish before 3 injected delays.
    assert time.monotonic() - started >= 0.15
    simulated_card.control("latency 0")
    connection.disconnect()


def test_card_comes_back_after_pcscd_restarts(pcscd: PrivatePcscd,
                                              simulated_card: RunningCard) -> None:
    pcscd.restart()
    wait_reader(simulated_card.reader, "present", timeout=20)
    connection = connect(simulated_card.reader)
    assert piv.expect_ok(PyscardConnection(connection), piv.select())[:1] == b"\x61"
    connection.disconnect()
