"""`qsign sign`: PAdES with the simulated card's key through the token layer, B-B and
B-T (timestamps from the CA's TSA), validated by pyHanko; corpus PDFs that cannot be
signed get a clear refusal and no output file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from asn1crypto import x509 as asn1_x509
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko_certvalidator import ValidationContext

from tests.integration.test_ca_service import running_ca  # noqa: F401 - fixture
from tests.support import piv_apdus as piv
from tests.support.ca_process import RunningCa
from tests.support.pcsc import RunningCard, connect
from tests.support.pdfs import write_samples
from tests.support.provision import CertIssuer, PyscardConnection, provision

OPENSC = "/usr/lib/x86_64-linux-gnu/pkcs11/opensc-pkcs11.so"




def _credential(card: RunningCard) -> tuple[str, CertIssuer]:
    connection = connect(card.reader)
    issuer = CertIssuer()
    provision(PyscardConnection(connection), 0x9A, piv.ALG_P256, issuer)
    connection.disconnect()
    serial = card.control("status")["serial"]
    return f"piv-{serial}/9A", issuer


def _sign(files: list[Path], credential: str, out: Path, *extra: str
          ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "qsign", "sign", *map(str, files), "--credential", credential,
         "--out-dir", str(out), "--pin-stdin", "--module", "/nonexistent.so", *extra],
        input="123456\n", capture_output=True, text=True, timeout=180)


def test_sign_pdfs_b_b_and_refusals(simulated_card: RunningCard, tmp_path: Path) -> None:
    credential, issuer = _credential(simulated_card)
    samples = write_samples(tmp_path / "in")
    inputs = [samples["minimal.pdf"], samples["minimal-two-pages.pdf"],
              samples["minimal-aes256.pdf"]]
    result = _sign(inputs, credential, tmp_path)
    assert result.returncode == 1, result.stderr  # one refusal among three
    assert "2/3" in result.stderr and "encrypted" in result.stderr
    assert not (tmp_path / "minimal-aes256-signed.pdf").exists()
    assert not list(tmp_path.glob(".*.tmp"))
    context = ValidationContext(trust_roots=[asn1_x509.Certificate.load(issuer.root_certificate())])
    for name in ("minimal", "minimal-two-pages"):
        with (tmp_path / f"{name}-signed.pdf").open("rb") as handle:
            signature = PdfFileReader(handle).embedded_signatures[0]
            status = validate_pdf_signature(signature, context)
        assert status.intact and status.valid, status.pretty_print_details()
        # PAdES baseline (ETSI EN 319 142-1): CAdES detached, signing-certificate-v2, and
        # no signing-time attribute (the time is the signature dictionary's /M).
        assert signature.sig_object["/SubFilter"] == "/ETSI.CAdES.detached"
        attributes = {a["type"].native for a in signature.signer_info["signed_attrs"]}
        assert attributes == {"content_type", "message_digest", "signing_certificate_v2",
                              "cms_algorithm_protection"}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the CA's registry
def test_sign_pdf_b_t_with_the_ca_timestamps(simulated_card: RunningCard,
                                             database_url: str,
                                             request: pytest.FixtureRequest,
                                             tmp_path: Path) -> None:
    ca: RunningCa = request.getfixturevalue("running_ca")
    credential, issuer = _credential(simulated_card)
    result = _sign([write_samples(tmp_path / "in")["minimal.pdf"]], credential, tmp_path,
                   "--level", "B-T",
                   "--timestamp-url", ca.base + "/tsa")
    assert result.returncode == 0, result.stderr
    with (tmp_path / "minimal-signed.pdf").open("rb") as handle:
        signature = PdfFileReader(handle).embedded_signatures[0]
        tsa_root = asn1_x509.Certificate.load(_der(ca.pem("root")))
        status = validate_pdf_signature(signature, ValidationContext(
            trust_roots=[asn1_x509.Certificate.load(issuer.root_certificate()), tsa_root]))
    assert status.intact and status.valid
    assert status.timestamp_validity is not None and status.timestamp_validity.intact


def _der(pem_path: Path) -> bytes:
    from asn1crypto import pem

    _, _, der = pem.unarmor(pem_path.read_bytes())
    return bytes(der)
