"""The time-stamp authority: RFC 3161 responses, with the signing-certificate-v2
attribute of RFC 5816, signed through a `CaKey` (a file or an HSM).

What a token says (RFC 3161 §2.4.2):

- policy: the CA's `tsa_policy`; a request that names another policy is refused
  (unacceptedPolicy).
- genTime: UTC from `Authority.now()`, whole seconds (the fraction is dropped), so
  the time of the request lies in [genTime, genTime + 1 s); accuracy says 1 s. The
  signing-time attribute carries the same instant.
- messageImprint: the request's, byte for byte (the request must be DER).
- serialNumber: 127 random bits (`random_serial`), unique without a counter.
- ordering: false (left out, its DER default); nonce: echoed when asked;
  tsa: the TSA certificate's subject as a directoryName.
- imprints: SHA-256, SHA-384, SHA-512 only (badAlg otherwise), of the right length
  (badDataFormat otherwise); no request extension is supported (unacceptedExtension).

Whatever bytes arrive, `respond` answers with a DER TimeStampResp, never an
exception: input that is not a DER TimeStampReq (BER, extra fields, trailing
bytes, anything undecodable) is a rejection with badRequest. A rejection has no
token; parse it with `TimeStampResp` below, not asn1crypto's own class, which
wrongly requires the token (wbond/asn1crypto#286).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import secrets
from dataclasses import dataclass
from typing import Any

from asn1crypto import cms, core, tsp, x509

from ca.authority import Authority
from ca.keys import CaKeyError, signing_choice
from ca.profiles import random_serial

log = logging.getLogger(__name__)

# Digest OIDs the TSA accepts in a message imprint, with their digest lengths.
ACCEPTED_IMPRINTS: dict[str, tuple[str, int]] = {
    "2.16.840.1.101.3.4.2.1": ("sha256", 32),
    "2.16.840.1.101.3.4.2.2": ("sha384", 48),
    "2.16.840.1.101.3.4.2.3": ("sha512", 64),
}
ACCURACY_SECONDS = 1
# A TimeStampReq is a few hundred bytes; anything far larger is refused unread.
MAX_REQUEST_BYTES = 16 * 1024


class TimeStampResp(core.Sequence):  # type: ignore[misc]
    """RFC 3161 §2.4.2 TimeStampResp, with the token OPTIONAL as the RFC says."""

    _fields = [  # noqa: RUF012 - asn1crypto's class-level spec
        ("status", tsp.PKIStatusInfo),
        ("time_stamp_token", cms.ContentInfo, {"optional": True}),
    ]


class TimestampError(Exception):
    """A time-stamp response is unusable for the request it answers."""


class TimestampRejected(TimestampError):
    """The TSA refused the request (RFC 3161 §2.4.2 PKIStatusInfo)."""

    def __init__(self, status: str, fail_info: frozenset[str], text: str) -> None:
        super().__init__(f"timestamp {status}: {', '.join(sorted(fail_info)) or '-'} ({text})")
        self.status = status
        self.fail_info = fail_info
        self.text = text


class _Refusal(Exception):
    """Why a request gets no token: a PKIFailureInfo bit name and a short text."""

    def __init__(self, fail_info: str, text: str) -> None:
        super().__init__(fail_info, text)
        self.fail_info = fail_info
        self.text = text


@dataclass(frozen=True)
class _Granted:
    imprint: tsp.MessageImprint
    policy: str
    nonce: int | None
    cert_req: bool


class TimestampAuthority:
    """An RFC 3161 TSA over the CA's timestamping certificate and key."""

    def __init__(self, authority: Authority) -> None:
        self._authority = authority
        self._key = authority.keys["tsa"]
        cert: x509.Certificate = authority.certificates["tsa"]
        self._cert = cert
        self._cert_der: bytes = cert.dump()
        self._hash, self._signature_algorithm = signing_choice(self._key)
        validity = cert["tbs_certificate"]["validity"]
        self._not_before: dt.datetime = validity["not_before"].native
        self._not_after: dt.datetime = validity["not_after"].native
        # The parts that are the same in every token, encoded once.
        self._tsa_name_der: bytes = x509.GeneralName(
            name="directory_name", value=cert.subject).dump()
        self._sid_der: bytes = cms.SignerIdentifier(name="issuer_and_serial_number", value={
            "issuer": cert.issuer, "serial_number": cert.serial_number}).dump()
        # RFC 5816 §2.2.1 ESSCertIDv2, SHA-256 (the DER default, so not encoded).
        self._signing_certificate_der: bytes = tsp.SigningCertificateV2({"certs": [{
            "cert_hash": hashlib.sha256(self._cert_der).digest(),
            "issuer_serial": {
                "issuer": [x509.GeneralName(name="directory_name", value=cert.issuer)],
                "serial_number": cert.serial_number,
            },
        }]}).dump()

    @property
    def policy(self) -> str:
        return self._authority.config.tsa_policy

    @property
    def certificate(self) -> x509.Certificate:
        return self._cert

    def respond(self, request_der: bytes) -> bytes:
        """Answer a DER TimeStampReq with a DER TimeStampResp (RFC 3161 §2.4.1-2.4.2).

        Never raises for anything a client can send: every refusal is a
        rejection with its PKIFailureInfo bit."""
        try:
            granted = self._check(request_der)
        except _Refusal as refusal:
            log.debug("timestamp request refused: %s (%s)", refusal.fail_info, refusal.text)
            return _rejection(refusal.fail_info, refusal.text)
        now = self._authority.now().astimezone(dt.UTC).replace(microsecond=0)
        if not self._not_before <= now <= self._not_after:
            log.warning("timestamp refused: the TSA certificate is not valid at %s", now)
            return _rejection("system_failure", "the TSA certificate is not valid now")
        try:
            token = self._token(granted, now)
        except CaKeyError as exc:
            log.warning("timestamp refused: the TSA key cannot sign: %s", exc)
            return _rejection("system_failure", "the TSA key is unavailable")
        except Exception:  # a bug here must not become a 500 for the client
            log.exception("timestamp refused: the token could not be built")
            return _rejection("system_failure", "the TSA failed")
        return bytes(TimeStampResp({
            "status": {"status": "granted"}, "time_stamp_token": token}).dump())

    def _check(self, request_der: bytes) -> _Granted:
        """RFC 3161 §2.4.1 checks, in the order OpenSSL's TSA makes them."""
        if not isinstance(request_der, bytes | bytearray | memoryview):
            raise _Refusal("bad_request", "the request is not bytes")
        if len(request_der) > MAX_REQUEST_BYTES:
            raise _Refusal("bad_request", "the request is too large")
        request_der = bytes(request_der)
        try:
            request = tsp.TimeStampReq.load(request_der, strict=True)
            _ = request.native  # parse every field now: malformed DER fails here
            # asn1crypto also reads BER and tolerates extra fields; re-encoding shows it.
            canonical = request.dump(force=True) == request_der
        except Exception as exc:  # asn1crypto raises many kinds on bad input
            raise _Refusal("bad_request", "the request is not a DER TimeStampReq") from exc
        if not canonical:
            raise _Refusal("bad_request", "the request is not DER (RFC 3161 §3.4)")
        if request["version"].native != "v1":
            raise _Refusal("bad_data_format", "unsupported request version")
        imprint = request["message_imprint"]
        algorithm = imprint["hash_algorithm"]
        accepted = ACCEPTED_IMPRINTS.get(algorithm["algorithm"].dotted)
        parameters = algorithm["parameters"]
        if accepted is None or not isinstance(parameters, core.Void | core.Null):
            raise _Refusal("bad_alg", "the imprint must use SHA-256, SHA-384 or SHA-512")
        name, length = accepted
        digest: bytes = imprint["hashed_message"].native
        if len(digest) != length:
            raise _Refusal("bad_data_format", f"a {name} imprint has {length} bytes")
        policy = request["req_policy"]
        if isinstance(policy, core.ObjectIdentifier) and policy.dotted != self.policy:
            raise _Refusal("unaccepted_policy", f"the TSA's only policy is {self.policy}")
        if request["extensions"].native is not None:
            raise _Refusal("unaccepted_extensions", "no request extension is supported")
        # The request is DER (checked above), so its bytes are the value to copy.
        copy = tsp.MessageImprint.load(imprint.dump())
        return _Granted(copy, self.policy, request["nonce"].native,
                        bool(request["cert_req"].native))

    def _token(self, granted: _Granted, now: dt.datetime) -> cms.ContentInfo:
        """The TimeStampToken: SignedData over TSTInfo (RFC 3161 §2.4.2, RFC 5652 §5)."""
        info: dict[str, Any] = {
            "version": "v1",
            "policy": granted.policy,
            "message_imprint": granted.imprint,
            "serial_number": random_serial(),
            "gen_time": now,
            "accuracy": {"seconds": ACCURACY_SECONDS},
            "tsa": x509.GeneralName.load(self._tsa_name_der),
        }
        if granted.nonce is not None:
            info["nonce"] = granted.nonce
        tst_info_der: bytes = tsp.TSTInfo(info).dump()
        signed_attrs = cms.CMSAttributes([
            {"type": "content_type", "values": ["tst_info"]},
            {"type": "signing_time", "values": [_cms_time(now)]},
            {"type": "message_digest",
             "values": [hashlib.new(self._hash, tst_info_der).digest()]},
            {"type": "signing_certificate_v2",
             "values": [tsp.SigningCertificateV2.load(self._signing_certificate_der)]},
        ])
        # RFC 5652 §5.4: the signature covers the DER SET OF, not the [0] it sits in.
        signature = self._key.sign(signed_attrs.dump(), self._hash)
        signer_info = cms.SignerInfo({
            "version": "v1",
            "sid": cms.SignerIdentifier.load(self._sid_der),
            "digest_algorithm": {"algorithm": self._hash},
            "signed_attrs": signed_attrs,
            "signature_algorithm": {"algorithm": self._signature_algorithm},
            "signature": signature,
        })
        signed_data: dict[str, Any] = {
            "version": "v3",  # eContentType is not id-data (RFC 5652 §5.1)
            "digest_algorithms": [{"algorithm": self._hash}],
            "encap_content_info": {"content_type": "tst_info",
                                   "content": cms.ParsableOctetString(tst_info_der)},
            "signer_infos": [signer_info],
        }
        if granted.cert_req:
            signed_data["certificates"] = [x509.Certificate.load(self._cert_der)]
        return cms.ContentInfo({"content_type": "signed_data",
                                "content": cms.SignedData(signed_data)})


def _cms_time(when: dt.datetime) -> cms.Time:
    # RFC 5652 §11.3: UTCTime for 1950-2049, GeneralizedTime otherwise.
    if 1950 <= when.year < 2050:
        return cms.Time(name="utc_time", value=when)
    return cms.Time(name="general_time", value=when)


def _rejection(fail_info: str, text: str) -> bytes:
    return bytes(TimeStampResp({"status": {
        "status": "rejection", "status_string": [text], "fail_info": {fail_info}}}).dump())


# The client side: what the portal and tests send, and how they read the answer. -----------


def request_for_digest(digest: bytes, hash_name: str = "sha256", *, nonce: bool = True,
                       cert_req: bool = True) -> bytes:
    """A DER TimeStampReq for an imprint already computed (RFC 3161 §2.4.1): e.g. the
    hash of a CMS signature value for a signature-time-stamp (RFC 3161 Appendix A)."""
    request: dict[str, Any] = {
        "version": "v1",
        "message_imprint": {"hash_algorithm": {"algorithm": hash_name},
                            "hashed_message": digest},
        "cert_req": cert_req,
    }
    if nonce:
        request["nonce"] = secrets.randbits(64)
    return bytes(tsp.TimeStampReq(request).dump())


def make_request(data: bytes, hash_name: str = "sha256", nonce: bool = True,
                 cert_req: bool = True) -> bytes:
    """A DER TimeStampReq for `data`, hashed with `hash_name` (RFC 3161 §2.4.1)."""
    return request_for_digest(hashlib.new(hash_name, data).digest(), hash_name,
                              nonce=nonce, cert_req=cert_req)


def token_from_response(response_der: bytes, request_der: bytes) -> cms.ContentInfo:
    """The TimeStampToken of a granted response, checked against its request: the
    status, the imprint, the nonce and, if asked for, the TSA certificate
    (RFC 3161 §2.4.2). The token's signature is not checked here; pyHanko's
    validation (or `openssl ts -verify`) does that with a trust anchor."""
    try:
        return _token_of(response_der, request_der)
    except TimestampError:
        raise
    except Exception as exc:  # asn1crypto raises many kinds on bad input
        raise TimestampError("not a DER TimeStampResp / TimeStampReq") from exc


def _token_of(response_der: bytes, request_der: bytes) -> cms.ContentInfo:
    # Field by field: `.native` on a whole token costs ~80 ms in asn1crypto 1.5.
    response = TimeStampResp.load(response_der, strict=True)
    request = tsp.TimeStampReq.load(request_der, strict=True)
    status = response["status"]
    if status["status"].native not in ("granted", "granted_with_mods"):
        raise TimestampRejected(str(status["status"].native),
                                frozenset(status["fail_info"].native or ()),
                                "; ".join(status["status_string"].native or ()))
    token = response["time_stamp_token"]
    if isinstance(token, core.Void) or token["content_type"].native != "signed_data":
        raise TimestampError("a granted response without a SignedData token")
    signed_data = token["content"]
    encap = signed_data["encap_content_info"]
    if encap["content_type"].native != "tst_info":
        raise TimestampError("the token does not hold a TSTInfo")
    tst_info = encap["content"].parsed
    if tst_info["message_imprint"].native != request["message_imprint"].native:
        raise TimestampError("the token's imprint is not the request's")
    if tst_info["nonce"].native != request["nonce"].native:
        raise TimestampError("the token's nonce is not the request's")
    certificates = signed_data["certificates"]
    if request["cert_req"].native and (isinstance(certificates, core.Void)
                                       or len(certificates) == 0):
        raise TimestampError("the certificate asked for is not in the token")
    return token


__all__ = [
    "ACCEPTED_IMPRINTS",
    "TimeStampResp",
    "TimestampAuthority",
    "TimestampError",
    "TimestampRejected",
    "make_request",
    "request_for_digest",
    "token_from_response",
]
