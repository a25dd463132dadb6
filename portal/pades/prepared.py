"""The state between prepare and complete (`Prepared`): everything `complete` needs, as
bytes the portal stores between its two HTTP calls, checked for consistency whenever it
is read back."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from asn1crypto import cms

from portal.pades.errors import PreparedInvalid

HASH = "sha256"  # the portal's contract: one SHA-256 per document (API.md, sign/prepare)
_FORMAT = b"QSIGN-PADES-PREPARED\n"
_FORMAT_VERSION = 1


class Level(StrEnum):
    """PAdES baseline levels (ETSI EN 319 142-1 §6)."""

    B_B = "B-B"
    B_T = "B-T"
    B_LT = "B-LT"
    B_LTA = "B-LTA"  # B-LT and a document time-stamp (§6.4)

    @property
    def timestamped(self) -> bool:
        return self is not Level.B_B

    @property
    def long_term(self) -> bool:
        """Validation data in the DSS (B-LT, B-LTA)."""
        return self in (Level.B_LT, Level.B_LTA)


@dataclass(frozen=True)
class Revocation:
    """What B-LT embeds in the DSS for the signer's certificate path."""

    certificates: tuple[bytes, ...] = ()
    ocsp_responses: tuple[bytes, ...] = ()
    crls: tuple[bytes, ...] = ()


@dataclass(frozen=True)
class Prepared:
    """Everything `complete` needs, in another process if need be."""

    digest: bytes  # SHA-256 over `signed_attributes`: what the token signs
    level: Level
    field_name: str
    prepared_at: dt.datetime
    certificate: bytes
    chain: tuple[bytes, ...]
    signed_attributes: bytes  # DER SET OF Attribute (RFC 5652 §5.4)
    document_digest: bytes  # SHA-256 over the /ByteRange of `pdf`
    reserved_start: int  # the /Contents hex string, delimiters included, not hashed
    reserved_end: int
    pdf: bytes = field(repr=False)  # with /Contents zero-filled
    revocation: Revocation = Revocation()

    @property
    def hash_algorithm(self) -> str:
        return "SHA256"

    def to_bytes(self) -> bytes:
        """A stable serialisation: a format line, a JSON header (sorted keys, base64
        values), then the PDF itself, so a 20 MiB document is not base64-inflated."""
        header = {
            "version": _FORMAT_VERSION,
            "digest": _b64(self.digest),
            "level": self.level.value,
            "field_name": self.field_name,
            "prepared_at": self.prepared_at.isoformat(),
            "certificate": _b64(self.certificate),
            "chain": [_b64(c) for c in self.chain],
            "signed_attributes": _b64(self.signed_attributes),
            "document_digest": _b64(self.document_digest),
            "reserved": [self.reserved_start, self.reserved_end],
            "pdf_sha256": hashlib.sha256(self.pdf).hexdigest(),
            "pdf_length": len(self.pdf),
            "revocation": {
                "certificates": [_b64(c) for c in self.revocation.certificates],
                "ocsp_responses": [_b64(o) for o in self.revocation.ocsp_responses],
                "crls": [_b64(c) for c in self.revocation.crls],
            },
        }
        encoded = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
        return _FORMAT + len(encoded).to_bytes(4, "big") + encoded + self.pdf

    @classmethod
    def from_bytes(cls, data: bytes) -> Prepared:
        """The inverse of `to_bytes`; PreparedInvalid for anything else, including
        parts that do not agree (hash of the PDF, digest of the attributes, reserved
        region, messageDigest)."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise PreparedInvalid("prepared data must be bytes")
        data = bytes(data)
        if not data.startswith(_FORMAT) or len(data) < len(_FORMAT) + 4:
            raise PreparedInvalid("not a prepared PAdES signature")
        offset = len(_FORMAT)
        size = int.from_bytes(data[offset:offset + 4], "big")
        offset += 4
        if size > 1024 * 1024 or offset + size > len(data):
            raise PreparedInvalid("the header is truncated")
        try:
            header = json.loads(data[offset:offset + size])
            pdf = data[offset + size:]
            if header["version"] != _FORMAT_VERSION:
                raise PreparedInvalid(f"format version {header['version']} is not supported")
            if (len(pdf) != header["pdf_length"]
                    or hashlib.sha256(pdf).hexdigest() != header["pdf_sha256"]):
                raise PreparedInvalid("the PDF does not match its recorded hash")
            start, end = header["reserved"]
            revocation = header["revocation"]
            prepared = cls(
                digest=_unb64(header["digest"]), level=Level(header["level"]),
                field_name=_str(header["field_name"]),
                prepared_at=dt.datetime.fromisoformat(header["prepared_at"]),
                certificate=_unb64(header["certificate"]),
                chain=tuple(_unb64(c) for c in header["chain"]),
                signed_attributes=_unb64(header["signed_attributes"]),
                document_digest=_unb64(header["document_digest"]),
                reserved_start=_int(start), reserved_end=_int(end), pdf=pdf,
                revocation=Revocation(
                    certificates=tuple(_unb64(c) for c in revocation["certificates"]),
                    ocsp_responses=tuple(_unb64(o) for o in revocation["ocsp_responses"]),
                    crls=tuple(_unb64(c) for c in revocation["crls"])))
        except PreparedInvalid:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise PreparedInvalid(f"malformed prepared signature: {type(exc).__name__}"
                                  ) from exc
        prepared.check_consistent()
        return prepared

    def check_consistent(self) -> None:
        """The parts agree: the digest is over the attributes, the attributes'
        messageDigest is the document digest and their signingCertificateV2 the
        certificate, the reserved region lies in the PDF."""
        if hashlib.sha256(self.signed_attributes).digest() != self.digest:
            raise PreparedInvalid("digest is not the hash of the signed attributes")
        if not 0 < self.reserved_start < self.reserved_end <= len(self.pdf):
            raise PreparedInvalid("the reserved region is outside the PDF")
        try:
            attributes = cms.CMSAttributes.load(self.signed_attributes, strict=True)
            values = {a["type"].native: a["values"][0] for a in attributes}
            found = values["message_digest"].native
            cert_ids = values["signing_certificate_v2"]["certs"]
            cert_hash = cert_ids[0]["cert_hash"].native
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise PreparedInvalid("the signed attributes are not ours") from exc
        if found != self.document_digest:
            raise PreparedInvalid("messageDigest is not the document digest")
        if cert_hash != hashlib.sha256(self.certificate).digest():
            raise PreparedInvalid("signingCertificateV2 names another certificate")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(value: Any) -> bytes:
    if not isinstance(value, str):
        raise TypeError("expected base64 text")
    return base64.b64decode(value, validate=True)


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("expected text")
    return value


def _int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError("expected an integer")
    return value
