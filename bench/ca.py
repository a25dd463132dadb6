"""CA throughput: issuances per second (SQLite and PostgreSQL) next to the bare cost of
the signatures each needs, and OCSP responses per second over HTTP from a second
process (from the responder's cache, and fresh with a nonce).

Targets (issue 5): >= 200 issuances/s on SQLite; >= 2,000 OCSP responses/s from cache.
Numbers, not assertions; run with `make bench`.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.support import median_ms, scratch

BASE = scratch("ca")

from asn1crypto import csr as asn1_csr  # noqa: E402
from asn1crypto import keys as asn1_keys  # noqa: E402
from asn1crypto import pem, x509  # noqa: E402
from cryptography import x509 as cx509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402

from ca.authority import Authority  # noqa: E402
from ca.enrolment import Enrolment, EnrolmentRequest  # noqa: E402
from ca.registry import Registry  # noqa: E402
from firmware_sim.attestation import Manufacturer, attest_slot  # noqa: E402
from tests.support.ca_fixtures import IdentityService  # noqa: E402
from tests.support.ca_process import serve_ca  # noqa: E402
from tests.support.ports import free_port  # noqa: E402
from tests.support.postgres import PrivatePostgres  # noqa: E402

N_ISSUANCES = 300


def software_request(maker: Manufacturer, identity: IdentityService) -> EnrolmentRequest:
    """What a card would send, made in software (the bench measures the CA, not cards)."""
    device_key = ec.generate_private_key(ec.SECP256R1())
    device = maker.issue_device_certificate(device_key.public_key(), 4242)
    key = ec.generate_private_key(ec.SECP256R1())
    attested = attest_slot(slot=0x9C, slot_key=key, device_key=device_key,
                           device_certificate=device, card_serial=4242,
                           firmware_version=(1, 0, 0), pin_policy=3, touch_policy=1)
    spki = key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    info = asn1_csr.CertificationRequestInfo({
        "version": "v1", "subject": x509.Name.build({"common_name": "bench"}),
        "subject_pk_info": asn1_keys.PublicKeyInfo.load(spki), "attributes": []})
    request = asn1_csr.CertificationRequest({
        "certification_request_info": info,
        "signature_algorithm": {"algorithm": "sha256_ecdsa"},
        "signature": key.sign(info.dump(), ec.ECDSA(hashes.SHA256()))})
    der = serialization.Encoding.DER
    return EnrolmentRequest(request.dump(), [attested.public_bytes(der), device.public_bytes(der)],
                            identity.evidence(hashlib.sha256(spki).hexdigest()))


def issuance_rate(authority: Authority, url: str | None, requests: list[EnrolmentRequest]
                  ) -> float:
    registry = Registry.open(url, authority.directory)
    enrolment = Enrolment(authority, registry)
    started = time.perf_counter()
    for request in requests:
        enrolment.enrol(request)
    rate = len(requests) / (time.perf_counter() - started)
    registry.close()
    return rate


def bare_signature_costs(authority: Authority, request: EnrolmentRequest) -> dict[str, float]:
    """What one issuance cannot avoid: its signature, and the four it verifies."""
    issuing = authority.keys["issuing"]
    tbs = authority.issuing["tbs_certificate"].dump()
    csr = cx509.load_der_x509_csr(request.csr)
    attested = cx509.load_der_x509_certificate(request.attestation[0])
    device = cx509.load_der_x509_certificate(request.attestation[1])
    return {
        "sign (P-384)": median_ms(lambda: issuing.sign(tbs, "sha384"), 300),
        "verify CSR": median_ms(lambda: csr.is_signature_valid, 300),
        "verify attestation": median_ms(lambda: attested.verify_directly_issued_by(device),
                                        300),
    }


_LOAD = """
import asyncio, sys, time, aiohttp
url, body = sys.argv[1], bytes.fromhex(sys.argv[2])
seconds, concurrency = float(sys.argv[3]), int(sys.argv[4])
headers = {"Content-Type": "application/ocsp-request"}
async def main():
    done = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as s:
        end = time.perf_counter() + seconds
        async def worker():
            nonlocal done
            while time.perf_counter() < end:
                async with s.post(url, data=body, headers=headers) as r:
                    await r.read()
                    assert r.status == 200
                done += 1
        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        print(done / (time.perf_counter() - t0))
asyncio.run(main())
"""


def ocsp_rates(directory: Path, leaf: Path, issuing: Path) -> dict[str, float]:
    port = free_port()
    server = serve_ca(directory, port)
    try:
        rates = {}
        for name, flags in (("cached (no nonce)", ["-no_nonce"]), ("fresh (nonce)", [])):
            request = BASE / "req.der"
            subprocess.run(["openssl", "ocsp", "-issuer", str(issuing), "-cert", str(leaf),
                            "-reqout", str(request), *flags], check=True, capture_output=True)
            out = subprocess.run([sys.executable, "-c", _LOAD, f"http://127.0.0.1:{port}/ocsp",
                                  request.read_bytes().hex(), "3", "16"],
                                 capture_output=True, text=True, check=True)
            rates[name] = float(out.stdout.strip())
        return rates
    finally:
        server.terminate()
        server.wait(10)


def main() -> int:
    maker = Manufacturer.open(BASE / "manufacturer")
    identity = IdentityService()
    directory = BASE / "ca"
    authority = Authority.init(directory)
    authority.trust_manufacturer(maker.root_certificate.public_bytes(serialization.Encoding.PEM))
    authority.trust_identity_service(identity.pem)
    print(f"qsign bench: CA (preparing {2 * N_ISSUANCES} software enrolment requests)")
    requests = [software_request(maker, identity) for _ in range(2 * N_ISSUANCES)]

    costs = bare_signature_costs(authority, requests[0])
    floor_ms = costs["sign (P-384)"] + costs["verify CSR"] + 2 * costs["verify attestation"]
    print("bare signature costs (median ms): " + ", ".join(
        f"{k} {v:.3f}" for k, v in costs.items()))
    print(f"  one issuance needs >= {floor_ms:.3f} ms of signatures: at most "
          f"{1000 / floor_ms:.0f}/s")

    sqlite_rate = issuance_rate(authority, None, requests[:N_ISSUANCES])
    postgres = PrivatePostgres()
    try:
        postgres.start()
        pg_rate = issuance_rate(authority, postgres.create_database("bench"),
                                requests[N_ISSUANCES:])
    finally:
        postgres.stop()
    print(f"issuances/s, sequential: SQLite {sqlite_rate:.0f}, PostgreSQL {pg_rate:.0f} "
          f"(signature-bound ceiling {1000 / floor_ms:.0f}; target >= 200 on SQLite: "
          f"{'met' if sqlite_rate >= 200 else 'MISSED'})")

    registry = Registry.open(None, directory)
    leaf_der = registry.all()[0].der
    registry.close()
    leaf = BASE / "leaf.pem"
    leaf.write_bytes(pem.armor("CERTIFICATE", leaf_der))
    rates = ocsp_rates(directory, leaf, directory / "certs" / "issuing.pem")
    sign_rate = 1000 / median_ms(lambda: authority.keys["ocsp"].sign(b"x" * 200, "sha384"), 300)
    for name, rate in rates.items():
        print(f"OCSP over HTTP, 16 connections from a second process, {name}: {rate:.0f}/s")
    print(f"  bare OCSP signatures (P-384): {sign_rate:.0f}/s; target >= 2,000/s from cache: "
          f"{'met' if rates['cached (no nonce)'] >= 2000 else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
