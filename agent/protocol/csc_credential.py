"""The CSC `credentials/info` answer for one credential (CSC API v1.0.4 §11.5, v2.0 §11.5):
the key, the certificate group as the request asks it (`certificates` none | single |
chain, `certInfo`), and the authorisation the agent requires (`authInfo`)."""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

from cryptography import x509

from agent.issuers import IssuerChain
from agent.tokens.model import Credential, KeyType

# Signature algorithm OIDs each key type signs with (RFC 5758, RFC 8017).
KEY_ALGOS: dict[KeyType, list[str]] = {
    KeyType.EC_P256: ["1.2.840.10045.4.3.2", "1.2.840.10045.4.3.3", "1.2.840.10045.4.3.4"],
    KeyType.EC_P384: ["1.2.840.10045.4.3.2", "1.2.840.10045.4.3.3", "1.2.840.10045.4.3.4"],
    KeyType.RSA_2048: ["1.2.840.113549.1.1.11", "1.2.840.113549.1.1.12",
                       "1.2.840.113549.1.1.13", "1.2.840.113549.1.1.10"],
}
_CURVES = {KeyType.EC_P256: "1.2.840.10045.3.1.7", KeyType.EC_P384: "1.3.132.0.34"}  # RFC 5480


async def credential_info(credential: Credential, body: dict[str, Any], *, version: str,
                          issuers: IssuerChain, otp_mode: str, multisign: int
                          ) -> dict[str, Any]:
    """`body` is the checked request; `version` "v1" or "v2" (its `auth` group)."""
    key: dict[str, Any] = {"status": "enabled", "algo": KEY_ALGOS[credential.key_type],
                           "len": credential.key_type.size}
    if credential.key_type in _CURVES:
        key["curve"] = _CURVES[credential.key_type]
    answer: dict[str, Any] = {"key": key, "cert": await certificate_group(credential, body,
                                                                          issuers),
                              "SCAL": "2", "multisign": multisign}
    answer.update(_auth_v2(body, otp_mode) if version == "v2" else _auth_v1(body, otp_mode))
    return answer


async def certificate_group(credential: Credential, body: dict[str, Any],
                            issuers: IssuerChain) -> dict[str, Any]:
    """`cert`: `certificates` none (absent) | single (the signer's, the default) | chain
    (the signer's first, then its issuers); with `certInfo` the signer's certificate's
    issuerDN and subjectDN (RFC 4514), serialNumber (hex), validFrom and validTo
    (GeneralizedTime, YYYYMMDDHHMMSSZ); `status` from its validity period (revocation is
    not consulted here, so never "revoked")."""
    group: dict[str, Any] = {}
    der = credential.certificate
    wanted = body.get("certificates", "single")
    if wanted != "none":
        ders = ([] if der is None else [der] if wanted == "single"
                else await issuers.complete(der, credential.chain))
        group["certificates"] = [base64.b64encode(c).decode() for c in ders]
    try:
        cert = None if der is None else x509.load_der_x509_certificate(der)
    except ValueError:
        cert = None  # what the token holds is no certificate: nothing to describe
    if cert is None:
        return group
    status = _status(cert, dt.datetime.now(dt.UTC))
    if status is not None:
        group["status"] = status
    if body.get("certInfo") is True:
        group.update(issuerDN=cert.issuer.rfc4514_string(),
                     serialNumber=format(cert.serial_number, "x"),
                     subjectDN=cert.subject.rfc4514_string(),
                     validFrom=_generalized_time(cert.not_valid_before_utc),
                     validTo=_generalized_time(cert.not_valid_after_utc))
    return group


def _status(cert: x509.Certificate, now: dt.datetime) -> str | None:
    if now > cert.not_valid_after_utc:
        return "expired"
    return "valid" if now >= cert.not_valid_before_utc else None  # not yet valid: no word


def _generalized_time(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y%m%d%H%M%SZ")


def _otp(otp_mode: str) -> tuple[str, str]:
    """(type, ID): a TOTP code is made offline by the signer's app; an SMS code is sent
    by the signature service when credentials/sendOTP is called (online)."""
    return ("online", "SMS") if otp_mode == "sms" else ("offline", "TOTP")


def _auth_v1(body: dict[str, Any], otp_mode: str) -> dict[str, Any]:
    """v1.0.4: authMode always; the PIN and OTP groups only with authInfo."""
    answer: dict[str, Any] = {"authMode": "explicit"}
    if body.get("authInfo") is True:
        otp_type, otp_id = _otp(otp_mode)
        answer.update(PIN={"presence": "true", "format": "N", "label": "PIN"},
                      OTP={"presence": "true", "type": otp_type, "format": "N",
                           "ID": otp_id, "label": "OTP"})
    return answer


def _auth_v2(body: dict[str, Any], otp_mode: str) -> dict[str, Any]:
    """v2.0: the auth group, its mode always; its expression and objects with authInfo."""
    auth: dict[str, Any] = {"mode": "explicit"}
    if body.get("authInfo") is True:
        _, otp_id = _otp(otp_mode)
        auth.update(expression="PIN AND OTP", objects=[
            {"type": "Password", "id": "PIN", "format": "N", "label": "PIN"},
            {"type": "Password", "id": "OTP", "format": "N", "label": "OTP",
             "description": f"{otp_id} one-time password"}])
    return {"auth": auth}
