"""`Pkcs11Token`: the `Token` surface over one slot of a PKCS#11 module (v2.40): keys
and certificates by CKA_ID, signatures, key generation, certificate storage, PINs.

The session and its recovery are `SlotSession`'s, object reading is `objects`', the
mechanisms `mechanisms`', and every CKR code becomes a domain error in `ckr`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from asn1crypto import x509 as asn1_x509
from cryptography import x509
from pkcs11 import exceptions as p11e
from pkcs11.constants import Attribute, CertificateType, MechanismFlag, ObjectClass, TokenFlag
from pkcs11.mechanisms import KeyType as P11KeyType
from pkcs11.mechanisms import Mechanism
from pkcs11.types import Session

from agent.tokens.errors import (
    InvalidInput,
    KeyNotFound,
    NotAuthenticated,
    OperationFailed,
    TokenRemoved,
    UnsupportedMechanism,
)
from agent.tokens.model import (
    Credential,
    KeyType,
    PinStatus,
    Route,
    RouteInfo,
    SignatureAlgorithm,
    Token,
    TokenInfo,
)
from agent.tokens.pkcs11.ckr import PIN_FAILURES, attempts_left_from_flags, mapped_call
from agent.tokens.pkcs11.cryptoki import Secret, handle, wiped
from agent.tokens.pkcs11.mechanisms import (
    CURVE_PARAMS,
    GENERATION_MECHANISMS,
    der_ecdsa,
    signing_input,
)
from agent.tokens.pkcs11.objects import (
    SigningKeys,
    find_objects,
    label_of,
    objects_by_id,
    parse_id,
    read_attributes,
    read_credentials,
    spki_der,
    spki_of,
)
from agent.tokens.pkcs11.session import LoadedModule, SlotSession
from agent.tokens.pkcs11.slot import reader_name, serial_text
from ground.traffic import TRAFFIC

log = logging.getLogger(__name__)


class Pkcs11Token(Token):
    """A token in one slot of one PKCS#11 module, with one session of its own.

    Not thread-safe: the registry calls it from the token's single worker thread.
    `serial`, when given, must be the serial of the token in the slot.
    """

    def __init__(self, module: LoadedModule, slot_id: int, *, serial: str | None = None
                 ) -> None:
        self._module = module
        self._slot_id = slot_id
        self._keys = SigningKeys()
        slots = mapped_call("C_GetSlotList", lambda: module.lib.get_slots(token_present=True))
        slot = next((s for s in slots if int(s.slot_id) == slot_id), None)
        if slot is None:
            raise TokenRemoved(f"no token in slot {slot_id} of {module.path}")
        token = mapped_call("C_GetTokenInfo", slot.get_token)
        own_serial = serial_text(token.serial)
        if serial is not None and serial != own_serial:
            raise TokenRemoved(f"slot {slot_id} holds token {own_serial}, not {serial}")
        self._session = SlotSession(module, slot_id, slot, own_serial, int(token.flags))
        reader = reader_name(slot.slot_description, int(slot.flags))
        self._info = TokenInfo(
            id=f"pkcs11:{module.name}:{own_serial or f'slot{slot_id}'}",
            label=token.label.strip(), serial=own_serial,
            manufacturer=token.manufacturer_id.strip(), model=token.model.strip(),
            reader=reader,
            routes=(RouteInfo(kind=Route.PKCS11, reader=reader, module=module.path,
                              slot=slot_id),),
            protected_authentication_path=self._session.protected)

    @property
    def info(self) -> TokenInfo:
        return self._info

    @property
    def module(self) -> LoadedModule:
        return self._module

    @property
    def slot_id(self) -> int:
        return self._slot_id

    def credentials(self) -> list[Credential]:
        """Private keys by CKA_ID, with the certificate of the same CKA_ID. Before login a
        token may hide its private keys (CKA_PRIVATE): their public keys stand in."""
        def read(session: Session) -> list[Credential]:
            return read_credentials(session, logged_in=self._session.user_logged_in(session),
                                       slot_id=self._slot_id)

        return self._session.run("list credentials", read)

    def pin_status(self) -> PinStatus:
        """From CK_TOKEN_INFO.flags: PKCS#11 tells only 'low', 'final try' and 'locked'."""
        flags = self._session.token_flags()
        return PinStatus(
            retries_left=attempts_left_from_flags(flags),
            blocked=bool(flags & TokenFlag.USER_PIN_LOCKED),
            is_default=True if flags & TokenFlag.USER_PIN_TO_BE_CHANGED else None)

    def verify_pin(self, pin: str) -> None:
        """C_Login(CKU_USER) on the token's session, after a C_Logout so that the PIN is
        really checked, then C_Logout: nothing stays unlocked (SECURITY #36). On a
        protected authentication path pass "": the PIN pad asks."""
        secret = self._session.pin_argument(pin)
        assert secret is not None

        def check(session: Session) -> None:
            with self._session.logged_in(session, secret):
                pass

        with wiped(secret):
            self._session.run("verify PIN", check)

    def sign_digest(self, credential_id: str, digest: bytes, algorithm: SignatureAlgorithm,
                    pin: str | None = None) -> bytes:
        """Sign a digest with CKM_ECDSA, CKM_RSA_PKCS or CKM_RSA_PKCS_PSS (PKCS#11 v2.40
        §2.3.6, §2.1.6, §2.1.11). With `pin` the user is logged in right before and out
        right after ("" on a PIN pad); a key with CKA_ALWAYS_AUTHENTICATE also gets a
        context-specific login for this signature alone."""
        return self.sign_digests(credential_id, [(digest, algorithm)], pin)[0]

    def sign_digests(self, credential_id: str,
                     digests: Sequence[tuple[bytes, SignatureAlgorithm]],
                     pin: str | None = None) -> list[bytes]:
        """`sign_digest` for several digests in this one call: with `pin`, one C_Login
        before the first signature and one C_Logout right after the last (PKCS#11 v2.40
        §5.6; SoftHSM2 runs a PBKDF over the PIN at each login); a CKA_ALWAYS_AUTHENTICATE
        key still gets its context-specific login for each signature."""
        secret = self._session.pin_argument(pin)
        key_id = parse_id(credential_id)
        wanted = list(digests)
        for digest, algorithm in wanted:
            if len(digest) != algorithm.hash.digest_size:
                raise InvalidInput(f"a {algorithm.hash.value} digest has "
                                   f"{algorithm.hash.digest_size} bytes, not {len(digest)}")

        def op(session: Session) -> list[bytes]:
            if secret is None:  # the hot path: no login, no context managers
                return [sign(session, digest, algorithm) for digest, algorithm in wanted]
            with self._session.logged_in(session, secret):
                self._keys.clear()  # C_Logout ended private objects' handles (v2.40 §5.6)
                return [sign(session, digest, algorithm) for digest, algorithm in wanted]

        def sign(session: Session, digest: bytes, algorithm: SignatureAlgorithm) -> bytes:
            try:
                return sign_in_state(session, digest, algorithm)
            except (p11e.KeyHandleInvalid, p11e.ObjectHandleInvalid):
                # Another application replaced the key since we found it: look again, once.
                self._keys.clear()
                return sign_in_state(session, digest, algorithm)

        def sign_in_state(session: Session, digest: bytes, algorithm: SignatureAlgorithm
                          ) -> bytes:
            key = self._keys.get(session, self._session.cryptoki, key_id, credential_id,
                                 lambda: self._session.user_logged_in(session))
            mechanism, parameter, data = signing_input(algorithm, key.key_type, digest)
            if mechanism not in self._session.mechanisms():
                raise UnsupportedMechanism(f"the token does not offer {mechanism.name}")
            if not key.may_sign:
                raise UnsupportedMechanism(f"key {credential_id} may not sign (CKA_SIGN)")
            if log.isEnabledFor(TRAFFIC):
                log.log(TRAFFIC, "sign %s with key %s: %s over %d bytes", algorithm,
                        credential_id, mechanism.name, len(data))
            if key.always_authenticate:
                raw = self._sign_always_authenticate(
                    session, key.handle, mechanism, parameter, data, secret, credential_id)
            else:
                raw = self._session.cryptoki.sign(handle(session), key.handle,
                                                  int(mechanism), parameter, data)
            return der_ecdsa(raw) if key.key_type.is_ec else raw

        what = f"sign with key {credential_id}"
        if secret is None:
            return self._session.run(what, op)
        with wiped(secret):
            return self._session.run(what, op)

    def generate_key(self, credential_id: str, key_type: KeyType, pin: str | None = None
                     ) -> bytes:
        """C_GenerateKeyPair (PKCS#11 v2.40 §5.14): token objects with CKA_ID; the private
        key CKA_PRIVATE, CKA_SENSITIVE, not CKA_EXTRACTABLE, CKA_SIGN and nothing else. Keys
        and a certificate with the same CKA_ID are destroyed once the new pair exists."""
        secret = self._session.pin_argument(pin)
        key_id = parse_id(credential_id)
        mechanism = GENERATION_MECHANISMS[key_type]

        def op(session: Session) -> bytes:
            if mechanism not in self._session.mechanisms():
                raise UnsupportedMechanism(f"the token does not offer {mechanism.name}")
            self._keys.clear()  # the keys with this CKA_ID are about to be replaced
            with self._session.logged_in(session, secret):
                old = [obj for cls in (ObjectClass.PRIVATE_KEY, ObjectClass.PUBLIC_KEY,
                                       ObjectClass.CERTIFICATE)
                       for obj in find_objects(session, cls, key_id)]
                public_template: dict[Attribute, Any] = {Attribute.PRIVATE: False}
                if key_type.is_ec:
                    public_template[Attribute.EC_PARAMS] = CURVE_PARAMS[key_type]
                private_template = {Attribute.PRIVATE: True, Attribute.SENSITIVE: True,
                                    Attribute.EXTRACTABLE: False, Attribute.SIGN: True}
                log.log(TRAFFIC, "C_GenerateKeyPair(%s, %s, id=%s)", mechanism.name,
                        key_type.value, credential_id)
                public, _private = session.generate_keypair(
                    P11KeyType.EC if key_type.is_ec else P11KeyType.RSA,
                    None if key_type.is_ec else key_type.size,
                    id=key_id, label=f"qsign {credential_id}", store=True,
                    capabilities=MechanismFlag.SIGN | MechanismFlag.VERIFY,
                    mechanism=mechanism, public_template=public_template,
                    private_template=private_template)
                attrs = read_attributes(public, [Attribute.KEY_TYPE, Attribute.EC_PARAMS,
                                                    Attribute.EC_POINT, Attribute.MODULUS,
                                                    Attribute.PUBLIC_EXPONENT])
                spki = spki_of(attrs)
                if spki is None:
                    raise OperationFailed("the token answered a public key qsign cannot read")
                for obj in old:
                    log.log(TRAFFIC, "C_DestroyObject(%s): replaced by the new key",
                            obj.handle)
                    obj.destroy()
                return spki

        with wiped(secret):
            return self._session.run(f"generate key {credential_id}", op)

    def attest(self, credential_id: str) -> list[bytes]:
        raise UnsupportedMechanism("PKCS#11 has no standard key attestation")

    def put_certificate(self, credential_id: str, certificate: bytes, pin: str | None = None
                        ) -> None:
        """Store an X.509 certificate (CKO_CERTIFICATE, CKC_X_509; PKCS#11 v2.40 §4.6.3)
        with the key's CKA_ID, replacing the one there. A certificate whose public key is
        not the key's is refused."""
        secret = self._session.pin_argument(pin)
        key_id = parse_id(credential_id)
        try:
            tbs = asn1_x509.Certificate.load(certificate, strict=True)["tbs_certificate"]
            subject, issuer = tbs["subject"].dump(), tbs["issuer"].dump()
            serial = tbs["serial_number"].dump()
            certified_key = spki_der(x509.load_der_x509_certificate(certificate)
                                         .public_key())
        except (ValueError, TypeError, KeyError) as exc:
            raise InvalidInput(f"not a DER X.509 certificate: {exc}") from exc

        def op(session: Session) -> None:
            with self._session.logged_in(session, secret):
                found = objects_by_id(session, key_id).get(key_id)
                if found is None or not (found.private or found.public):
                    raise KeyNotFound(credential_id)
                for attrs in found.public + found.private:
                    spki = spki_of(attrs)
                    if spki is not None and spki != certified_key:
                        raise InvalidInput(f"the certificate is not for key {credential_id}")
                old = find_objects(session, ObjectClass.CERTIFICATE, key_id)
                label = next((label_of(a) for a in found.private + found.public
                              if label_of(a)), f"qsign {credential_id}")
                log.log(TRAFFIC, "C_CreateObject(CKO_CERTIFICATE, id=%s, %d bytes)",
                        credential_id, len(certificate))
                session.create_object({
                    Attribute.CLASS: ObjectClass.CERTIFICATE,
                    Attribute.CERTIFICATE_TYPE: CertificateType.X_509,
                    Attribute.TOKEN: True, Attribute.PRIVATE: False,
                    Attribute.ID: key_id, Attribute.LABEL: label,
                    Attribute.SUBJECT: subject, Attribute.ISSUER: issuer,
                    Attribute.SERIAL_NUMBER: serial, Attribute.VALUE: certificate,
                })
                for obj in old:
                    log.log(TRAFFIC, "C_DestroyObject(%s): replaced certificate", obj.handle)
                    obj.destroy()

        with wiped(secret):
            self._session.run(f"store certificate {credential_id}", op)

    def change_pin(self, old_pin: str, new_pin: str) -> None:
        """C_SetPIN (PKCS#11 v2.40 §5.6) in a user session: logged in with the old PIN, out
        afterwards. On a PIN pad pass "" for both: the pad asks for them, no login first."""
        old = self._session.pin_argument(old_pin)
        new = self._session.pin_argument(new_pin)
        assert old is not None and new is not None

        def op(session: Session) -> None:
            if self._session.protected:
                self._session.set_pin(session, old, new)
                return
            with self._session.logged_in(session, old):
                self._session.set_pin(session, old, new)

        with wiped(old, new):
            self._session.run("change PIN", op)

    def unblock_pin(self, puk: str, new_pin: str) -> None:
        raise UnsupportedMechanism(
            "PKCS#11 has no PUK: a blocked user PIN is reset by the token's security "
            "officer (C_InitPIN) with the vendor's tools")

    def close(self) -> None:
        """Log out and close the token's session (it is reopened if the token is used again)."""
        self._session.close()

    def _sign_always_authenticate(self, session: Session, key: int, mechanism: Mechanism,
                                  parameter: bytes | None, data: bytes,
                                  secret: Secret | None, credential_id: str) -> bytes:
        """C_SignInit, C_Login(CKU_CONTEXT_SPECIFIC), C_Sign for a CKA_ALWAYS_AUTHENTICATE
        key (PKCS#11 v2.40 §5.12): the PIN (or the PIN pad) for this signature alone."""
        if secret is None:
            if not self._session.protected:
                raise NotAuthenticated(f"key {credential_id} needs the PIN for each signature")
            secret = Secret(None)
        try:
            return self._session.cryptoki.sign(
                handle(session), key, int(mechanism), parameter, data, secret)
        except (p11e.KeyHandleInvalid, p11e.ObjectHandleInvalid):
            raise  # C_SignInit refused the handle: no operation is active, the caller looks again
        except p11e.PKCS11Error as exc:
            self._session.discard(session)  # the signing operation may still be active
            if isinstance(exc, PIN_FAILURES):
                raise self._session.pin_error(exc, f"sign with key {credential_id}") from exc
            raise
