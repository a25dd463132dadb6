"""validation/ without a signing stack: typed errors for input that is no PDF, the
unsigned answer, and trusted lists that are not used (and why); the CA's demo list from
`qsign ca trusted-list` read back with its signature checked by pyHanko."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from aiohttp import web
from pyhanko.keys import load_cert_from_pemder
from pyhanko.sign.validation.qualified.eutl_parse import trust_list_to_registry

from ca.authority import Authority
from ca.trusted_list import SchemeOperator, list_of_lists, trusted_list
from portal.validation_config import ValidationConfig
from qsign.cli import main
from tests.support.pdfs import blank_pdf
from tests.support.ports import free_port
from tests.support.threaded_app import serve_in_thread
from validation import ValidationError, ValidationSettings, validate_pdf


@pytest.fixture(scope="module")
def ca_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("tl-ca") / "ca"
    Authority.init(directory)
    return directory


@pytest.fixture(scope="module")
def operator(ca_dir: Path) -> Path:
    return ca_dir / "trusted-list" / "operator.pem"


@pytest.fixture(scope="module")
def tl(ca_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tl") / "tl.xml"
    assert main(["ca", "trusted-list", "--dir", str(ca_dir), "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize(("data", "code"), [
    (b"hello", "NOT_A_PDF"),
    (b"", "NOT_A_PDF"),
    (b"%PDF-1.7\n1 0 obj << /Type /Catalog", "MALFORMED_PDF"),
    (b"%PDF-1.7\n" + b"\x00" * 64 + b"%%EOF", "MALFORMED_PDF"),
])
def test_input_that_is_no_pdf_is_a_typed_error(data: bytes, code: str) -> None:
    with pytest.raises(ValidationError) as caught:
        validate_pdf(data, ValidationSettings.empty())
    assert caught.value.code == code


def test_too_large_and_user_password() -> None:
    small = ValidationSettings(ValidationSettings.empty().registry, (), (), max_size=100)
    with pytest.raises(ValidationError) as caught:
        validate_pdf(blank_pdf(), small)
    assert caught.value.code == "TOO_LARGE"
    with pytest.raises(ValidationError) as caught:
        validate_pdf(blank_pdf(encrypt_with="secret"), ValidationSettings.empty())
    assert caught.value.code == "ENCRYPTED_PDF"


def test_unsigned_pdf_says_no_signature() -> None:
    report = validate_pdf(blank_pdf(), ValidationSettings.empty(), name="plain.pdf")
    assert report.signatures == () and not report.passed
    assert report.to_json()["note"] == "no signature"
    assert report.to_json()["signatures"] == []
    assert b"ValidationReport" in report.to_xml()


def test_demo_list_parses_in_pyhanko_with_its_signature(tl: Path, operator: Path) -> None:
    registry, errors = trust_list_to_registry(tl.read_text(), [load_cert_from_pemder(operator)])
    assert errors == []
    assert len(list(registry.known_certificate_authorities)) == 1
    assert len(list(registry.known_timestamp_authorities)) == 1


def test_lists_that_are_not_used_say_why(tl: Path, operator: Path, ca_dir: Path,
                                          tmp_path: Path) -> None:
    other = tmp_path / "other-ca"
    Authority.init(other)
    SchemeOperator.of(Authority.load(other))
    lost = tmp_path / "lost.xml"
    lotl = tmp_path / "lotl.xml"
    lotl.write_bytes(list_of_lists(Authority.load(ca_dir),
                                   [(lost.as_uri(), "FR", operator.read_bytes())]))
    cases = {
        "no scheme operator certificate": ([str(tl)], []),
        "signature not valid": ([str(tl)], [other / "trusted-list" / "operator.pem"]),
        "cannot be read": ([str(tmp_path / "missing.xml")], [operator]),
        "fetching is off": (["https://tl.example.test/tl.xml"], [operator]),
        "not a trusted list": ([str(tmp_path / "junk.xml")], [operator]),
    }
    (tmp_path / "junk.xml").write_text("<a>no list</a>")
    for problem, (sources, certs) in cases.items():
        settings = ValidationSettings.load(sources, operator_certs=certs, fetch=False)
        (status,) = settings.trusted_lists
        assert not status.ok and status.problem is not None, problem
        assert problem in status.problem, (problem, status.problem)
        assert settings.services == ()
    followed = ValidationSettings.load([str(lotl)], operator_certs=[operator], fetch=False)
    assert [(s.ok, s.source) for s in followed.trusted_lists] == [(True, str(lotl)),
                                                                  (False, lost.as_uri())]


def test_lists_fetched_over_http(ca_dir: Path, operator: Path, tmp_path: Path) -> None:
    """A LOTL and the list it points at, both fetched from a loopback HTTP server."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    authority = Authority.load(ca_dir)
    (tmp_path / "tl.xml").write_bytes(trusted_list(authority, location=f"{base}/tl.xml"))
    (tmp_path / "lotl.xml").write_bytes(list_of_lists(
        authority, [(f"{base}/tl.xml", "FR", operator.read_bytes())]))
    app = web.Application()
    app.router.add_static("/", tmp_path)
    served = serve_in_thread(app, port, "test-tl-server")
    try:
        settings = ValidationSettings.load([f"{base}/lotl.xml"], operator_certs=[operator])
    finally:
        served.stop()
    assert [(s.source, s.ok, s.territory) for s in settings.trusted_lists] == [
        (f"{base}/lotl.xml", True, "FR"), (f"{base}/tl.xml", True, "FR")]
    assert {s.service_type.rsplit("/", 2)[-2] for s in settings.services} == {"CA", "TSA"}


def test_withdrawn_list_keeps_the_history(ca_dir: Path, operator: Path, tmp_path: Path) -> None:
    out = tmp_path / "withdrawn.xml"
    assert main(["ca", "trusted-list", "--dir", str(ca_dir), "--out", str(out),
                 "--granted-since", "2026-01-01T00:00:00Z",
                 "--withdrawn-at", "2026-06-01T00:00:00+00:00"]) == 0
    settings = ValidationSettings.load([str(out)], operator_certs=[operator])
    ca_qc = [s for s in settings.services if s.service_type.endswith("CA/QC")]
    (service,) = ca_qc
    assert [(p.name, p.since.date().isoformat()) for p in service.history] == [
        ("granted", "2026-01-01"), ("withdrawn", "2026-06-01")]
    period = service.status_at(dt.datetime(2026, 7, 1, tzinfo=dt.UTC))
    assert period is not None and period.name == "withdrawn"


def test_a_list_expires_at_the_validation_time(tl: Path, operator: Path) -> None:
    """TS 119 612 §5.3.15: judged as of each validation, not when the list was read (a
    portal process outlives a list's NextUpdate); dropped only when so configured."""
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=200)  # the demo's NextUpdate: 180
    for use in (True, False):
        settings = ValidationSettings.load([str(tl)], operator_certs=[operator],
                                           use_expired_lists=use)
        (now,) = validate_pdf(blank_pdf(), settings).trusted_lists
        assert now.ok and now.problem is None and now.next_update is not None
        (then,) = validate_pdf(blank_pdf(), settings, at=later).trusted_lists
        assert then.ok is use and then.problem is not None
        assert then.problem.startswith(f"expired since {now.next_update:%Y-%m-%d}")
        kept = settings.as_of(later)
        assert bool(kept.trust_anchors) is use and bool(kept.services) is use
        assert bool(list(kept.registry.known_certificate_authorities)) is use
        assert settings.trust_anchors  # the loaded settings themselves are unchanged


def test_the_validation_table_takes_use_expired_lists() -> None:
    table = ValidationConfig.from_table({"use_expired_lists": False}, "portal.toml")
    assert table.use_expired_lists is False
    assert ValidationConfig.from_table({}, "portal.toml").use_expired_lists is True
    with pytest.raises(ValueError, match=r"validation\.use_expired_lists: true or false"):
        ValidationConfig.from_table({"use_expired_lists": "no"}, "portal.toml")
