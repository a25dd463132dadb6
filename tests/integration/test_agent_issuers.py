"""The agent completes a signer's chain from its configured CA only (SECURITY #32): real
HTTP servers on loopback stand for the CA and for another host; a caIssuers URL at
another origin, behind a redirect or with credentials is never fetched, a certificate
that did not sign the one below is refused, and what was fetched is kept on disk."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import AuthorityInformationAccessOID, NameOID

from agent.issuers import IssuerChain
from tests.support.ports import free_port

NOW = dt.datetime.now(dt.UTC)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(subject: str, key: ec.EllipticCurvePrivateKey, issuer: str,
                 issuer_key: ec.EllipticCurvePrivateKey, *, ca: bool,
                 ca_issuers: str | None = None) -> x509.Certificate:
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(NOW - dt.timedelta(days=1))
               .not_valid_after(NOW + dt.timedelta(days=30))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca_issuers is not None:
        builder = builder.add_extension(x509.AuthorityInformationAccess([
            x509.AccessDescription(AuthorityInformationAccessOID.CA_ISSUERS,
                                   x509.UniformResourceIdentifier(ca_issuers))]),
            critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


class Pki:
    def __init__(self) -> None:
        root_key, self.issuing_key = (ec.generate_private_key(ec.SECP256R1())
                                      for _ in range(2))
        self.issuing = _certificate("Issuing", self.issuing_key, "Root", root_key, ca=True)
        # Same name, another key: it did not sign the signers' certificates.
        self.impostor = _certificate("Issuing", ec.generate_private_key(ec.SECP256R1()),
                                     "Root", root_key, ca=True)

    def signer(self, ca_issuers: str | None) -> bytes:
        cert = _certificate("Signer", ec.generate_private_key(ec.SECP256R1()), "Issuing",
                            self.issuing_key, ca=False, ca_issuers=ca_issuers)
        return cert.public_bytes(Encoding.DER)


async def _serve(routes: dict[str, Callable[[], web.StreamResponse]], hits: Counter[str]
                 ) -> tuple[web.AppRunner, str]:
    async def handle(request: web.Request) -> web.StreamResponse:
        hits[request.path] += 1
        return routes[request.path]()

    app = web.Application()
    for path in routes:
        app.router.add_get(path, handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"


def _run(scenario: Callable[[Pki, str, str, Counter[str], Counter[str]], Awaitable[None]]
         ) -> None:
    pki = Pki()

    def der(cert: x509.Certificate) -> Callable[[], web.StreamResponse]:
        return lambda: web.Response(body=cert.public_bytes(Encoding.DER),
                                    content_type="application/pkix-cert")

    async def main() -> None:
        ca_hits: Counter[str] = Counter()
        other_hits: Counter[str] = Counter()
        other, other_url = await _serve({"/issuing.cer": der(pki.issuing)}, other_hits)
        ca, ca_url = await _serve({
            "/issuing.cer": der(pki.issuing), "/impostor.cer": der(pki.impostor),
            "/moved.cer": lambda: web.Response(
                status=302, headers={"Location": other_url + "/issuing.cer"})}, ca_hits)
        try:
            await scenario(pki, ca_url, other_url, ca_hits, other_hits)
        finally:
            await ca.cleanup()
            await other.cleanup()

    asyncio.run(main())


def test_issuers_come_from_the_configured_ca_only(tmp_path: Path) -> None:
    async def scenario(pki: Pki, ca_url: str, other_url: str, ca_hits: Counter[str],
                       other_hits: Counter[str]) -> None:
        chain = IssuerChain(ca_url, tmp_path)
        issuing = pki.issuing.public_bytes(Encoding.DER)
        port = ca_url.rpartition(":")[2]
        for url in (other_url + "/issuing.cer", ca_url + "/moved.cer",
                    f"http://user:secret@127.0.0.1:{port}/issuing.cer",
                    f"ftp://127.0.0.1:{port}/issuing.cer", ca_url + "/impostor.cer"):
            signer = pki.signer(url)
            assert await chain.complete(signer) == [signer], url
        assert other_hits.total() == 0  # neither named nor redirected to
        assert ca_hits == {"/moved.cer": 1, "/impostor.cer": 1}
        assert not (tmp_path / "issuers").exists()  # nothing refused was kept

        signer = pki.signer(ca_url + "/issuing.cer")
        assert await IssuerChain(None, tmp_path).complete(signer) == [signer]  # no CA set
        assert await chain.complete(signer) == [signer, issuing]
        another = pki.signer(ca_url + "/issuing.cer")
        assert await IssuerChain(ca_url, tmp_path).complete(another) == [another, issuing]
        assert ca_hits["/issuing.cer"] == 1  # then from DIR/issuers, after a restart too

        held = await chain.complete(pki.signer(None), [issuing])
        assert held[1:] == [issuing]  # what the token holds needs no fetch

    _run(scenario)
