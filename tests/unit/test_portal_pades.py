"""portal/pades/: deferred PAdES with our CA on loopback (OCSP, CRL, TSA) and software
keys it certified; every signed PDF is checked by pyHanko as the relying party."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import cms, x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.signers import ExternalSigner
from pyhanko.sign.validation import async_validate_pdf_timestamp
from pyhanko.sign.validation.status import PdfSignatureStatus
from pyhanko_certvalidator import ValidationContext

from portal import pades
from portal.pades import Level, Prepared, revocation
from tests.support.pdfs import blank_pdf
from tests.support.portal_pki import (
    KEY_KINDS,
    PortalPki,
    SoftwareSigner,
    owner_encrypted_pdf,
    running_pki,
    start_pki,
    validate_pdf,
)
from tests.support.ports import free_port


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PortalPki]:
    yield from running_pki(tmp_path_factory.mktemp("portal-pki") / "ca")


@pytest.fixture(scope="module")
def alice(pki: PortalPki) -> SoftwareSigner:
    return pki.issue("p256", "Martin")


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def sign(pki: PortalPki, pdf: bytes, signer: SoftwareSigner, level: Level,
               field_name: str = "Signature1") -> tuple[Prepared, bytes]:
    validation = pki.validation()
    prepared = await pades.prepare(pdf, signer.certificate, signer.chain, level=level,
                                   field_name=field_name, signer_name="Alice Martin",
                                   reason="Contract", location="Paris",
                                   validation=validation)
    # what the portal stores between the two HTTP calls
    restored = Prepared.from_bytes(prepared.to_bytes())
    assert restored == prepared
    signed = await pades.complete(restored, signer.sign(restored.signed_attributes),
                                  validation=validation)
    return prepared, signed


def assert_level(status: PdfSignatureStatus, level: Level) -> None:
    assert status.intact and status.valid and status.bottom_line, status.pretty_print_details()
    if level is Level.B_B:
        assert status.timestamp_validity is None
    else:
        assert status.timestamp_validity is not None
        assert status.timestamp_validity.intact and status.timestamp_validity.valid


async def check(pki: PortalPki, pdf: bytes, level: Level, signatures: int) -> None:
    """B-LT and B-LTA: DSS present and every signature validates offline from it; B-LTA:
    a document time-stamp after each signature (EN 319 142-1 §6.4), each valid. B-B and
    B-T: valid online (the verifier fetches OCSP; it knows the issuing CA, which the CA's
    timestamp tokens do not carry)."""
    result = await validate_pdf(pdf, [pki.root], offline=level.long_term,
                                other_certs=[] if level.long_term else [pki.issuing])
    assert len(result.statuses) == signatures
    assert result.has_dss == level.long_term
    for status in result.statuses:
        assert_level(status, level)
    reader = PdfFileReader(BytesIO(pdf))
    if reader.encrypted:
        reader.decrypt("")
    stamps = reader.embedded_timestamp_signatures
    assert len(stamps) == (signatures if level is Level.B_LTA else 0)
    context = ValidationContext(trust_roots=[x509.Certificate.load(pki.root)],
                                other_certs=[x509.Certificate.load(pki.issuing)],
                                allow_fetching=False, revocation_mode="soft-fail")
    for stamp in stamps:
        stamped = await async_validate_pdf_timestamp(stamp, validation_context=context)
        assert stamped.valid and stamped.intact and stamped.trusted, stamped


@pytest.mark.parametrize("kind", KEY_KINDS)
@pytest.mark.parametrize("level", list(Level))
def test_each_level_and_key_validates(pki: PortalPki, kind: str, level: Level) -> None:
    signer = pki.issue(kind)
    prepared, signed = run(sign(pki, blank_pdf(2), signer, level))
    assert prepared.digest == hashlib.sha256(prepared.signed_attributes).digest()
    assert len(prepared.digest) == 32 and prepared.hash_algorithm == "SHA256"
    run(check(pki, signed, level, 1))
    signature = PdfFileReader(BytesIO(signed)).embedded_signatures[0]
    assert signature.sig_object["/SubFilter"] == "/ETSI.CAdES.detached"
    assert signature.sig_object["/Name"] == "Alice Martin"
    assert signature.sig_object["/Reason"] == "Contract"


def test_signed_attributes_are_pades(pki: PortalPki, alice: SoftwareSigner) -> None:
    prepared = run(pades.prepare(blank_pdf(), alice.certificate, alice.chain,
                                 level=Level.B_B, field_name="S", signer_name="A",
                                 validation=pki.validation()))
    attributes = cms.CMSAttributes.load(prepared.signed_attributes)
    types = {a["type"].native for a in attributes}
    # EN 319 142-1 §5.2: no signingTime attribute in PAdES; the time is the /M entry.
    assert types == {"content_type", "message_digest", "signing_certificate_v2"}
    digest = next(a for a in attributes if a["type"].native == "message_digest")
    assert digest["values"][0].native == prepared.document_digest
    # canonical DER: parsed strictly and re-encoded, the same bytes
    strict = cms.CMSAttributes.load(prepared.signed_attributes, strict=True)
    assert strict.dump(force=True) == prepared.signed_attributes
    # the same values pyHanko's own PAdES attributes carry
    reference = run(ExternalSigner(
        x509.Certificate.load(alice.certificate), None, bytes(72)).signed_attrs(
            prepared.document_digest, "sha256", use_pades=True))
    assert {a["type"].native: a["values"].native for a in reference} == {
        a["type"].native: a["values"].native for a in attributes}


def test_b_lt_offline_needs_its_dss(pki: PortalPki, alice: SoftwareSigner) -> None:
    """The B-T file does not validate offline (no revocation data), the B-LT file does."""
    _, b_t = run(sign(pki, blank_pdf(), alice, Level.B_T))
    offline = run(validate_pdf(b_t, [pki.root], offline=True, other_certs=[pki.issuing]))
    assert not offline.statuses[0].bottom_line
    _, b_lt = run(sign(pki, blank_pdf(), alice, Level.B_LT))
    offline = run(validate_pdf(b_lt, [pki.root], offline=True))
    assert offline.statuses[0].bottom_line


@pytest.mark.parametrize("level", list(Level))
def test_two_signers_incremental(pki: PortalPki, level: Level) -> None:
    first, second = pki.issue("p256", "Martin"), pki.issue("p384", "Durand")
    _, once = run(sign(pki, blank_pdf(), first, level, "Signer1"))
    _, twice = run(sign(pki, once, second, level, "Signer2"))
    assert twice.startswith(once)  # an incremental update: the first revision untouched
    run(check(pki, twice, level, 2))
    statuses = run(validate_pdf(twice, [pki.root], offline=level.long_term,
                                other_certs=[pki.issuing])).statuses
    assert statuses[0].coverage.name == "ENTIRE_REVISION"
    # after a B-LT signature comes its DSS revision (and B-LTA's document time-stamp)
    assert statuses[1].coverage.name == ("ENTIRE_REVISION" if level.long_term
                                         else "ENTIRE_FILE")
    for status in statuses:  # later revisions only add signatures and validation data
        assert status.docmdp_ok in (True, None)
        assert status.modification_level is not None
        assert status.modification_level.name in ("NONE", "LTA_UPDATES", "FORM_FILLING")


def test_twenty_documents_concurrently(pki: PortalPki, alice: SoftwareSigner) -> None:
    async def batch() -> list[bytes]:
        validation = pki.validation()
        prepared = await asyncio.gather(*(
            pades.prepare(blank_pdf(n % 3 + 1), alice.certificate, alice.chain,
                          level=Level.B_LT, field_name="S", signer_name="Alice",
                          validation=validation) for n in range(20)))
        assert len({p.digest for p in prepared}) == 20
        return await asyncio.gather(*(
            pades.complete(p, alice.sign(p.signed_attributes), validation=validation)
            for p in prepared))

    signed = run(batch())
    run(check(pki, signed[7], Level.B_LT, 1))


# The signature value ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def prepared(pki: PortalPki, alice: SoftwareSigner) -> Prepared:
    result: Prepared = run(pades.prepare(blank_pdf(), alice.certificate, alice.chain,
                                         level=Level.B_B, field_name="S", signer_name="A",
                                         validation=pki.validation()))
    return result


def test_wrong_key_or_tampered_value_is_refused(pki: PortalPki, alice: SoftwareSigner,
                                               prepared: Prepared) -> None:
    other = pki.issue("p256", "Other")
    good = alice.sign(prepared.signed_attributes)
    tampered = bytearray(good)
    tampered[-1] ^= 1
    for value in (other.sign(prepared.signed_attributes), bytes(tampered),
                  alice.sign(prepared.signed_attributes + b"x"), b"", b"\x30\x00",
                  bytes(64), b"garbage"):
        with pytest.raises(pades.SignatureInvalid):
            run(pades.complete(prepared, value, validation=pki.validation()))
    assert run(pades.complete(prepared, good, validation=pki.validation()))
    pades.check_signature(prepared, good)
    with pytest.raises(pades.SignatureInvalid):
        pades.check_signature(prepared, bytes(tampered))


def test_ecdsa_raw_r_s_is_accepted(pki: PortalPki, alice: SoftwareSigner,
                                   prepared: Prepared) -> None:
    r, s = decode_dss_signature(alice.sign(prepared.signed_attributes))
    raw = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    signed = run(pades.complete(prepared, raw, validation=pki.validation()))
    run(check(pki, signed, Level.B_B, 1))


def test_rsa_value_of_wrong_length_is_refused(pki: PortalPki) -> None:
    signer = pki.issue("rsa2048")
    prepared = run(pades.prepare(blank_pdf(), signer.certificate, signer.chain,
                                 level=Level.B_B, field_name="S", signer_name="A",
                                 validation=pki.validation()))
    value = signer.sign(prepared.signed_attributes)
    for bad in (value[1:], value + b"\x00", value[:-1] + bytes([value[-1] ^ 0xFF])):
        with pytest.raises(pades.SignatureInvalid):
            run(pades.complete(prepared, bad, validation=pki.validation()))


def test_signature_is_checked_before_the_tsa_is_asked(pki: PortalPki,
                                                     alice: SoftwareSigner) -> None:
    validation = pki.validation()
    prepared = run(pades.prepare(blank_pdf(), alice.certificate, alice.chain,
                                 level=Level.B_T, field_name="S", signer_name="A",
                                 validation=validation))
    dead = pki.validation(timestamp_url=f"http://127.0.0.1:{free_port()}/tsa")
    with pytest.raises(pades.SignatureInvalid):
        run(pades.complete(prepared, bytes(72), validation=dead))
    with pytest.raises(pades.TrustServiceError) as error:
        run(pades.complete(prepared, alice.sign(prepared.signed_attributes), validation=dead))
    assert error.value.code == "timestamp-unavailable"


# PDFs -----------------------------------------------------------------------------------


def _prepare(pki: PortalPki, signer: SoftwareSigner, pdf: bytes, **kwargs: Any) -> Prepared:
    values: dict[str, Any] = {"level": Level.B_B, "field_name": "S", "signer_name": "A",
                              "validation": pki.validation()}
    values.update(kwargs)
    result: Prepared = run(pades.prepare(pdf, signer.certificate, signer.chain, **values))
    return result


@pytest.mark.parametrize(("pdf", "code"), [
    (b"", "malformed"),
    (b"%PDF-1.7\n garbage", "malformed"),
    (b"\x00" * 4096, "malformed"),
    (blank_pdf()[:200], "malformed"),
    (blank_pdf(encrypt_with="secret"), "encrypted"),
])
def test_bad_pdfs_raise_pdf_invalid(pki: PortalPki, alice: SoftwareSigner, pdf: bytes,
                                    code: str) -> None:
    with pytest.raises(pades.PdfInvalid) as error:
        _prepare(pki, alice, pdf)
    assert error.value.code == code


@pytest.mark.parametrize("level", list(Level))
def test_owner_password_only_pdf_is_signed_encrypted(pki: PortalPki, level: Level) -> None:
    """Encrypted with an owner password and the empty user password: it opens for anyone,
    so it is signed, twice, with each revision encrypted like the file."""
    first, second = pki.issue("p256", "Martin"), pki.issue("rsa2048", "Durand")
    _, once = run(sign(pki, owner_encrypted_pdf(), first, level, "Signer1"))
    _, twice = run(sign(pki, once, second, level, "Signer2"))
    assert PdfFileReader(BytesIO(twice)).encrypted
    run(check(pki, twice, level, 2))


def test_permissions_without_form_filling_refuse(pki: PortalPki,
                                                 alice: SoftwareSigner) -> None:
    with pytest.raises(pades.PdfInvalid) as error:
        _prepare(pki, alice, owner_encrypted_pdf(allow_form_filling=False))
    assert error.value.code == "locked"


def test_encrypted_with_a_mac_is_refused(pki: PortalPki, alice: SoftwareSigner) -> None:
    with pytest.raises(pades.PdfInvalid) as error:
        _prepare(pki, alice, owner_encrypted_pdf(mac=True))
    assert error.value.code == "encrypted"


def test_a_signed_field_cannot_be_signed_again(pki: PortalPki, alice: SoftwareSigner) -> None:
    _, signed = run(sign(pki, blank_pdf(), alice, Level.B_B, "Taken"))
    with pytest.raises(pades.PdfInvalid) as error:
        _prepare(pki, alice, signed, field_name="Taken")
    assert error.value.code == "field-in-use"


def test_too_large_pdf(pki: PortalPki, alice: SoftwareSigner) -> None:
    with pytest.raises(pades.PdfInvalid) as error:
        _prepare(pki, alice, b"%PDF" + bytes(pades.MAX_PDF_BYTES))
    assert error.value.code == "too-large"


@pytest.mark.parametrize("kwargs", [
    {"field_name": "a.b"}, {"field_name": ""}, {"field_name": "x" * 65},
    {"signer_name": ""}, {"signer_name": "  "}, {"signer_name": "a\nb"},
    {"reason": "r" * 300}, {"location": "\x00"}, {"level": "B-LX"},
])
def test_bad_arguments(pki: PortalPki, alice: SoftwareSigner, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        _prepare(pki, alice, blank_pdf(), **kwargs)


def test_bad_certificates(pki: PortalPki, alice: SoftwareSigner) -> None:
    validation = pki.validation()
    for certificate, chain, code in (
            (b"junk", alice.chain, "malformed"),
            (alice.certificate[:-3], alice.chain, "malformed"),
            (alice.certificate, [b"junk"], "malformed"),
            (alice.certificate, [alice.certificate] * 9, "malformed")):
        with pytest.raises(pades.CertificateRejected) as error:
            run(pades.prepare(blank_pdf(), certificate, chain, level=Level.B_B,
                              field_name="S", signer_name="A", validation=validation))
        assert error.value.code == code


def test_validation_configuration() -> None:
    with pytest.raises(pades.ValidationConfigError):
        pades.Validation(trust_roots=[])
    with pytest.raises(pades.ValidationConfigError):
        pades.Validation(trust_roots=[b"junk"])


def test_timestamped_levels_need_a_tsa(pki: PortalPki, alice: SoftwareSigner) -> None:
    with pytest.raises(pades.ValidationConfigError):
        pki.validation(timestamp_url="ftp://tsa")
    for level in (Level.B_T, Level.B_LT):
        with pytest.raises(pades.ValidationConfigError):
            _prepare(pki, alice, blank_pdf(), level=level,
                     validation=pki.validation(timestamp_url=None))


# B-LT: the signer's path at prepare ---------------------------------------------------------


def test_b_lt_refuses_a_revoked_certificate(pki: PortalPki) -> None:
    signer = pki.issue("p256", "Revoked")
    pki.revoke(signer.serial)
    with pytest.raises(pades.CertificateRejected) as error:
        _prepare(pki, signer, blank_pdf(), level=Level.B_LT)
    assert error.value.code == "revoked"


def test_b_lt_refuses_an_untrusted_issuer(pki: PortalPki, alice: SoftwareSigner,
                                          tmp_path: Path) -> None:
    other = start_pki(tmp_path / "other-ca")
    try:
        validation = other.validation()
        with pytest.raises(pades.CertificateRejected) as error:
            run(pades.prepare(blank_pdf(), alice.certificate, alice.chain, level=Level.B_LT,
                              field_name="S", signer_name="A", validation=validation))
        assert error.value.code == "untrusted-issuer"
    finally:
        other.stop()


@pytest.mark.parametrize("level", [Level.B_T, Level.B_LT])
def test_timestamps_from_an_untrusted_tsa_are_refused(pki: PortalPki, alice: SoftwareSigner,
                                                      level: Level, tmp_path: Path) -> None:
    other = start_pki(tmp_path / "other-ca")
    try:
        validation = pki.validation(timestamp_url=f"{other.base}/tsa")
        prepared = run(pades.prepare(blank_pdf(), alice.certificate, alice.chain, level=level,
                                     field_name="S", signer_name="A", validation=validation))
        with pytest.raises(pades.TrustServiceError) as error:
            run(pades.complete(prepared, alice.sign(prepared.signed_attributes),
                               validation=validation))
        assert error.value.code == "timestamp-untrusted"
    finally:
        other.stop()


def test_b_lt_without_revocation_services(tmp_path: Path) -> None:
    pki = start_pki(tmp_path / "ca")
    signer = pki.issue()
    validation = pki.validation()
    pki.stop()  # OCSP and CRL unreachable now
    with pytest.raises(pades.TrustServiceError) as error:
        run(pades.prepare(blank_pdf(), signer.certificate, signer.chain, level=Level.B_LT,
                          field_name="S", signer_name="A", validation=validation))
    assert error.value.code == "revocation-unavailable"


def test_b_lt_refuses_a_key_without_non_repudiation(pki: PortalPki) -> None:
    signer = pki.issue_variant(replace={"key_usage": {"digital_signature"}})
    with pytest.raises(pades.CertificateRejected) as error:
        _prepare(pki, signer, blank_pdf(), level=Level.B_LT)
    assert error.value.code == "no-non-repudiation"


# The prepared state ---------------------------------------------------------------------------


def test_prepared_bytes_are_checked(prepared: Prepared, pki: PortalPki,
                                    alice: SoftwareSigner) -> None:
    data = prepared.to_bytes()
    assert Prepared.from_bytes(data).to_bytes() == data  # stable
    flipped = bytearray(data)
    flipped[-100] ^= 1  # inside the PDF
    header_end = data.index(b"}", 0) + 1
    for bad in (b"", b"junk", data[:-1], bytes(flipped), data[:30],
                data.replace(b'"version":1', b'"version":2'),
                data[:header_end].replace(b'"level":"B-B"', b'"level":"B-X"')
                + data[header_end:]):
        with pytest.raises(pades.PreparedInvalid):
            Prepared.from_bytes(bad)
    # parts that do not agree, in a Prepared built by hand
    import dataclasses

    other = pki.issue("p256", "Other")
    for changes in ({"digest": bytes(32)}, {"certificate": other.certificate},
                    {"document_digest": bytes(32)},
                    {"reserved_start": 0},
                    {"pdf": prepared.pdf.replace(b"/Type /Page", b"/Type /Pag_", 1)}):
        broken = dataclasses.replace(prepared, **changes)
        with pytest.raises(pades.PreparedInvalid):
            run(pades.complete(broken, alice.sign(broken.signed_attributes),
                               validation=pki.validation()))


def test_ecdsa_value_of_the_right_curve_only(pki: PortalPki, prepared: Prepared) -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    value = key.sign(prepared.signed_attributes, ec.ECDSA(hashes.SHA256()))
    with pytest.raises(pades.SignatureInvalid):
        run(pades.complete(prepared, value, validation=pki.validation()))


# Revocation data reused across one request's documents ----------------------------------------


def test_revocation_data_is_reused_then_refetched(tmp_path: Path) -> None:
    pki = start_pki(tmp_path / "ca")
    signer = pki.issue()
    validation = pki.validation()

    def prepare() -> Prepared:
        result: Prepared = run(pades.prepare(
            blank_pdf(), signer.certificate, signer.chain, level=Level.B_LT, field_name="S",
            signer_name="A", validation=validation))
        return result

    first = prepare()
    pki.stop()  # the OCSP responder and the CRL are gone now
    assert prepare().revocation == first.revocation  # the same request's next document
    pades.REVOCATIONS.clear()  # as after REVOCATION_REUSE_SECONDS
    with pytest.raises(pades.TrustServiceError):
        prepare()


def test_concurrent_documents_share_one_fetch(pki: PortalPki,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    signer = pki.issue()
    calls = []
    original = pades.collect_revocation

    async def counting(*args: Any, **kwargs: Any) -> pades.Revocation:
        calls.append(args[0])
        return await original(*args, **kwargs)

    monkeypatch.setattr(revocation, "collect_revocation", counting)

    async def batch() -> list[Prepared]:
        validation = pki.validation()
        return list(await asyncio.gather(*(
            pades.prepare(blank_pdf(), signer.certificate, signer.chain, level=Level.B_LT,
                          field_name="S", signer_name="A", validation=validation)
            for _ in range(10))))

    prepared = run(batch())
    assert len(calls) == 1
    assert len({p.revocation for p in prepared}) == 1
    assert prepared[0].revocation.ocsp_responses
