"""The CA's own operational certificates name where its issuing certificate lives (AIA
caIssuers, RFC 5280 §4.2.2.1), so a relying party holding only the root builds the TSA's
path: OpenSSL with the intermediate fetched from that URL, pyHanko fetching it itself for
a B-T signature that has no DSS. A CA directory made before keeps its keys and gets its
OCSP and TSA certificates re-issued at start; the old ones stay 'good' at OCSP."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import subprocess
import urllib.request
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path

import aiohttp
import pytest
from asn1crypto import keys as asn1_keys
from asn1crypto import ocsp as asn1_ocsp
from asn1crypto import pem
from asn1crypto import x509 as asn1_x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign import signers, timestamps
from pyhanko.sign.validation import async_validate_pdf_signature
from pyhanko_certvalidator import ValidationContext
from pyhanko_certvalidator.fetchers.aiohttp_fetchers import AIOHttpFetcherBackend
from pyhanko_certvalidator.registry import SimpleCertificateStore

from ca.authority import read_certificate, write_certificate
from ca.keys import FileKey
from ca.profiles import Validity, ca_issuers_urls, service_certificate
from ca.tsa import TimeStampResp
from firmware_sim.attestation import Manufacturer
from tests.support.ca_fixtures import IdentityService
from tests.support.ca_process import RunningCa, serve_ca, start_ca
from tests.support.cli import run_qsign
from tests.support.pdfs import blank_pdf
from tests.support.ports import free_port
from tests.support.provision import CertIssuer


@pytest.fixture
def ca(tmp_path: Path, manufacturer: Manufacturer) -> Iterator[RunningCa]:
    running = start_ca(tmp_path, manufacturer)
    yield running
    running.stop()


def _openssl(*args: str | Path, check: bool = True) -> str:
    done = subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True,
                          timeout=60, check=False)
    if check and done.returncode != 0:
        pytest.fail(f"openssl {args[0]}: {done.stderr}", pytrace=False)
    return done.stdout + done.stderr


def _timestamp(ca: RunningCa, data: Path, work: Path) -> Path:
    """A token from the CA's /tsa for `data`, with the TSA certificate in it."""
    query = work / "req.tsq"
    _openssl("ts", "-query", "-data", data, "-sha256", "-cert", "-out", query)
    status, reply = ca.post("/tsa", query.read_bytes(), "application/timestamp-query")
    assert status == 200
    (work / "resp.tsr").write_bytes(reply)
    return work / "resp.tsr"


def _tsa_certificate(response: Path) -> asn1_x509.Certificate:
    token = TimeStampResp.load(response.read_bytes())["time_stamp_token"]
    (cert,) = token["content"]["certificates"]
    return cert.chosen


def _fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as answer:  # noqa: S310 - the CA on loopback
        assert answer.status == 200
        return bytes(answer.read())


def _pem_file(path: Path, der: bytes) -> Path:
    path.write_bytes(pem.armor("CERTIFICATE", der))
    return path


def _ocsp_responder_certificate(ca: RunningCa, cert: Path, work: Path) -> asn1_x509.Certificate:
    """The responder certificate in the CA's OCSP answer about `cert`, once it said good."""
    request = work / "ocsp.req"
    _openssl("ocsp", "-issuer", ca.pem("issuing"), "-cert", cert, "-no_nonce",
             "-reqout", request)
    status, reply = ca.post("/ocsp", request.read_bytes(), "application/ocsp-request")
    assert status == 200
    basic = asn1_ocsp.OCSPResponse.load(reply)["response_bytes"]["response"].parsed
    (single,) = basic["tbs_response_data"]["responses"]
    assert single["cert_status"].name == "good"
    (responder,) = basic["certs"]
    return responder


def test_the_tsa_path_is_built_from_the_root_and_the_caissuers_url(ca: RunningCa,
                                                                   tmp_path: Path) -> None:
    data = tmp_path / "document"
    data.write_bytes(os.urandom(2048))
    response = _timestamp(ca, data, tmp_path)
    urls = ca_issuers_urls(_tsa_certificate(response))
    assert urls == [ca.base + "/certs/issuing.cer"]

    root_only = _openssl("ts", "-verify", "-data", data, "-in", response, "-CAfile",
                         ca.pem("root"), check=False)
    assert "Verification: OK" not in root_only  # the intermediate is needed...
    fetched = _pem_file(tmp_path / "fetched.pem", _fetch(urls[0]))
    out = _openssl("ts", "-verify", "-data", data, "-in", response, "-CAfile",
                   ca.pem("root"), "-untrusted", fetched)
    assert "Verification: OK" in out, out  # ...and the caIssuers URL serves it

    responder = _ocsp_responder_certificate(ca, ca.pem("tsa"), tmp_path)
    assert ca_issuers_urls(responder) == urls


def _signer() -> tuple[signers.SimpleSigner, asn1_x509.Certificate]:
    """A signer certified by a throwaway CA: the signature is not what is tested here."""
    issuer = CertIssuer()
    key = ec.generate_private_key(ec.SECP256R1())
    cert = issuer.certify(key.public_key(), "B-T signer")
    root = asn1_x509.Certificate.load(issuer.root_certificate())
    signer = signers.SimpleSigner(
        signing_cert=asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER)),
        signing_key=asn1_keys.PrivateKeyInfo.load(key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption())),
        cert_registry=SimpleCertificateStore.from_certs([root]))  # type: ignore[no-untyped-call]
    return signer, root


def test_pyhanko_trusts_a_b_t_timestamp_from_the_root_alone(ca: RunningCa) -> None:
    signer, signer_root = _signer()
    ca_root = read_certificate(ca.pem("root"))

    async def scenario() -> None:
        async with aiohttp.ClientSession() as session:
            output = BytesIO()
            await signers.async_sign_pdf(
                IncrementalPdfFileWriter(BytesIO(blank_pdf())),
                signers.PdfSignatureMetadata(field_name="Signature1"), signer=signer,
                timestamper=timestamps.HTTPTimeStamper(ca.base + "/tsa", session=session),
                output=output)
            signature = PdfFileReader(output).embedded_signatures[0]
            assert "/DSS" not in signature.reader.root  # no validation data to lean on
            fetching = ValidationContext(trust_roots=[ca_root], allow_fetching=True,
                                         fetcher_backend=AIOHttpFetcherBackend(session))
            status = await async_validate_pdf_signature(
                signature, signer_validation_context=ValidationContext(
                    trust_roots=[signer_root]), ts_validation_context=fetching)
        # The signer's throwaway certificate is not what is tested: the timestamp is.
        assert status.intact and status.valid, status.pretty_print_details()
        stamp = status.timestamp_validity
        assert stamp is not None and stamp.intact and stamp.valid
        assert stamp.trusted, status.pretty_print_details()
        assert stamp.validation_path is not None
        path = [cert.subject.human_friendly for cert in stamp.validation_path]
        assert len(path) == 3 and "Issuing" in path[1], path  # fetched, not embedded

    asyncio.run(scenario())


def _strip_aia(directory: Path, role: str, purpose: str) -> asn1_x509.Certificate:
    """The certificate `qsign ca init` made before service certificates had AIA."""
    issuing = read_certificate(directory / "certs" / "issuing.pem")
    current = read_certificate(directory / "certs" / f"{role}.pem")
    old = service_certificate(
        subject=current.subject, public_key=current.public_key, issuer=issuing,
        issuer_key=FileKey.load(directory / "keys" / "issuing.key"),
        validity=Validity.starting_now(365, cap=issuing.not_valid_after), purpose=purpose)
    write_certificate(directory / "certs" / f"{role}.pem", old)
    return old


def test_a_ca_made_before_gets_its_service_certificates_reissued_at_start(
        tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    directory = tmp_path / "ca"
    done = run_qsign("ca", "init", "--dir", str(directory), "--base-url", base)
    assert done.returncode == 0, done.stderr
    old = {role: _strip_aia(directory, role, purpose)
           for role, purpose in (("tsa", "time_stamping"), ("ocsp", "ocsp_signing"))}
    assert all(not ca_issuers_urls(cert) for cert in old.values())

    process = serve_ca(directory, port, f"sqlite:///{tmp_path / 'registry.sqlite'}")
    try:
        ca = RunningCa(directory, base, IdentityService(), process, port,
                       f"sqlite:///{tmp_path / 'registry.sqlite'}")
        data = tmp_path / "document"
        data.write_bytes(os.urandom(64))
        tsa = _tsa_certificate(_timestamp(ca, data, tmp_path))
        assert ca_issuers_urls(tsa) == [base + "/certs/issuing.cer"]
        # The same key, certified again: earlier tokens and responses still verify.
        assert tsa.public_key.dump() == old["tsa"].public_key.dump()
        assert tsa.serial_number != old["tsa"].serial_number
        assert tsa.not_valid_after > dt.datetime.now(dt.UTC) + dt.timedelta(days=5 * 365)
        for role, cert in old.items():
            kept = directory / "certs" / "superseded" / f"{role}-{cert.serial_number:x}.pem"
            assert read_certificate(kept).dump() == cert.dump()
        # A relying party asking about the TSA certificate of an earlier token: good.
        earlier = _pem_file(tmp_path / "earlier-tsa.pem", old["tsa"].dump())
        responder = _ocsp_responder_certificate(ca, earlier, tmp_path)
        assert ca_issuers_urls(responder) == [base + "/certs/issuing.cer"]
        assert responder.public_key.dump() == old["ocsp"].public_key.dump()
    finally:
        process.terminate()
        process.wait(10)
    # Done once: the next start finds nothing to re-issue.
    assert read_certificate(directory / "certs" / "tsa.pem").dump() == tsa.dump()
    done = run_qsign("ca", "list", "--dir", str(directory), "--db",
                     f"sqlite:///{tmp_path / 'registry.sqlite'}")
    assert done.returncode == 0, done.stderr
    assert read_certificate(directory / "certs" / "tsa.pem").dump() == tsa.dump()
