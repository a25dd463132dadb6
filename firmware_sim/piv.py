"""The PIV card application (NIST SP 800-73-4 Part 2) as card firmware.

Persistent data goes through `CardStore.update` (atomic, tear-safe); the
security status (PIN verified, management key authenticated) is volatile and
cleared by a reset. Retry counters are decremented and written *before* a
reference value is compared, so cutting power after a wrong guess never
yields a free try. Vendor extensions follow the commands field PIV tokens add
(GET VERSION, GET SERIAL, GET METADATA, ATTEST, SET MANAGEMENT KEY, RESET).
"""

from __future__ import annotations

import hmac
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import ClassVar

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from firmware_sim import attestation, keys
from firmware_sim.apdu import CardError, CommandApdu
from firmware_sim.keys import KeyOperationError, PrivateKey
from firmware_sim.profiles import CardProfile
from firmware_sim.state import CardState, CardStore, KeyRecord, ReferenceData
from ground.iso7816 import SW, TlvError, parse_single, parse_tlv, parse_tlv_dict, retries_sw, tlv
from ground.piv import (
    ATTESTATION_OBJECT,
    CCC_OBJECT,
    CHUID_OBJECT,
    DEFAULT_MANAGEMENT_KEY,
    DISCOVERY_OBJECT,
    INS,
    KEY_HISTORY_OBJECT,
    PIN_LENGTH,
    PIV_AID,
    SLOT_OBJECTS,
    Algorithm,
    KeyOrigin,
    KeyRef,
    PinPolicy,
    TouchPolicy,
    default_pin_policy,
)

log = logging.getLogger(__name__)

_AID_MIN_PREFIX = 5  # the RID: a right-truncated AID selects too (ISO 7816-4 §5.3.1)
DISCOVERY_TAG = DISCOVERY_OBJECT
CHUID_TAG = CHUID_OBJECT
CCC_TAG = CCC_OBJECT
KEY_HISTORY_TAG = KEY_HISTORY_OBJECT
# Objects only readable after PIN verification (SP 800-73-4 Part 1 Table 2).
_PIN_PROTECTED_OBJECTS = frozenset({0x5FC103, 0x5FC108, 0x5FC109, 0x5FC121, 0x5FC122})
_WRITABLE_OBJECTS = frozenset(range(0x5FC101, 0x5FC124)) | {0x5FFF00}
_READABLE_OBJECTS = _WRITABLE_OBJECTS | {ATTESTATION_OBJECT}
MAX_OBJECT_SIZE = 3072


def pad_pin(value: str | bytes) -> bytes:
    raw = value.encode() if isinstance(value, str) else value
    if len(raw) > PIN_LENGTH:
        raise ValueError("PIN longer than 8 bytes")
    return raw.ljust(PIN_LENGTH, b"\xff")


def _unpadded(field: bytes) -> bytes | None:
    """The value of an 8-byte 0xFF-padded field, or None if the padding is broken."""
    value = field.rstrip(b"\xff")
    return None if b"\xff" in value else value


@dataclass(slots=True)
class _Pending:
    """An outstanding management-key witness or challenge."""

    kind: int  # 0x80 witness, 0x81 challenge
    expected: bytes


class PivApplet:
    """SP 800-73-4 command handlers over a `CardStore`."""

    def __init__(self, store: CardStore, profile: CardProfile) -> None:
        self.store = store
        self.profile = profile
        self._key_cache: dict[bytes, PrivateKey] = {}
        self.reset()

    # Volatile state -----------------------------------------------------

    def reset(self) -> None:
        """Power-on / warm reset: nothing selected, no security status."""
        self.selected = False
        self.pin_verified = False
        self._pin_always_armed = False  # a VERIFY not yet spent by a PIN-always key
        self.management_authenticated = False
        self._pending: _Pending | None = None

    @property
    def _state(self) -> CardState:
        return self.store.state

    def _private_key(self, record: KeyRecord) -> PrivateKey:
        # Parsing PKCS#8 costs more than an ECDSA signature; cache by the stored bytes.
        key = self._key_cache.get(record.private_key)
        if key is None:
            key = keys.from_pkcs8(record.private_key)
            self._key_cache[record.private_key] = key
        return key

    # Dispatch -------------------------------------------------------------

    def process(self, cmd: CommandApdu) -> bytes:
        if cmd.ins == INS.SELECT:
            return self._select(cmd)
        if not self.selected:
            raise CardError(SW.INS_NOT_SUPPORTED, "no application selected")
        handler = self._handlers.get(cmd.ins)
        if handler is None:
            raise CardError(SW.INS_NOT_SUPPORTED, f"INS {cmd.ins:02X}")
        try:
            return handler(self, cmd)
        except TlvError as exc:
            raise CardError(SW.INCORRECT_DATA, f"bad TLV: {exc}") from exc
        except OSError as exc:
            # The state write failed: the committed state is the old one.
            log.error("card state write failed: %s", exc)
            raise CardError(SW.MEMORY_FAILURE, "state write failed") from exc

    # SELECT -----------------------------------------------------------------

    def _select(self, cmd: CommandApdu) -> bytes:
        """SP 800-73-4 Part 2 §3.1.1: returns the application property template."""
        if cmd.p1 != 0x04 or cmd.p2 != 0x00:
            raise CardError(SW.INCORRECT_P1P2)
        aid = cmd.data
        if len(aid) < _AID_MIN_PREFIX or not PIV_AID.startswith(aid):
            raise CardError(SW.FILE_NOT_FOUND, "unknown AID")
        # Selected again, the application starts a new session, as field PIV tokens do:
        # another application's VERIFY no longer counts.
        self._forget_pin()
        self.management_authenticated = False
        self._pending = None
        self.selected = True
        algorithms = b"".join(
            tlv(0x80, bytes([alg])) for alg in (Algorithm.TDES, Algorithm.AES_128,
                                               Algorithm.AES_192, Algorithm.AES_256,
                                               Algorithm.RSA_2048, Algorithm.ECC_P256,
                                               Algorithm.ECC_P384)
        ) + tlv(0x06, b"\x00")
        return tlv(
            0x61,
            tlv(0x4F, PIV_AID[5:])
            + tlv(0x79, tlv(0x4F, PIV_AID))
            + tlv(0x50, b"qsign-sim PIV")
            + tlv(0xAC, algorithms),
        )

    # Data objects -----------------------------------------------------------

    def _get_data(self, cmd: CommandApdu) -> bytes:
        """SP 800-73-4 Part 2 §3.1.2."""
        if (cmd.p1, cmd.p2) != (0x3F, 0xFF):
            raise CardError(SW.INCORRECT_P1P2)
        tag = _object_tag(parse_single(cmd.data, 0x5C))
        if tag == DISCOVERY_TAG:
            return self._discovery_object()
        if tag not in _READABLE_OBJECTS:
            raise CardError(SW.FILE_NOT_FOUND, f"no object {tag:X}")
        if tag in _PIN_PROTECTED_OBJECTS and not self.pin_verified:
            raise CardError(SW.SECURITY_STATUS_NOT_SATISFIED)
        content = self._state.objects.get(tag)
        if content is None:
            raise CardError(SW.FILE_NOT_FOUND, f"object {tag:X} is empty")
        return tlv(0x53, content)

    def _discovery_object(self) -> bytes:
        # PIN usage policy 0x40 0x00: the PIV PIN is the only one (Part 1 §3.3.2).
        return tlv(DISCOVERY_TAG, tlv(0x4F, PIV_AID) + tlv(0x5F2F, b"\x40\x00"))

    def _put_data(self, cmd: CommandApdu) -> bytes:
        """SP 800-73-4 Part 2 §3.2.1; the card management key guards every write."""
        if (cmd.p1, cmd.p2) != (0x3F, 0xFF):
            raise CardError(SW.INCORRECT_P1P2)
        self._require_management()
        items = parse_tlv(cmd.data)
        if len(items) != 2 or items[0].tag != 0x5C or items[1].tag != 0x53:
            raise CardError(SW.INCORRECT_DATA, "PUT DATA needs 5C tag then 53 content")
        tag = _object_tag(items[0].value)
        if tag not in _WRITABLE_OBJECTS:
            raise CardError(SW.INCORRECT_DATA, f"object {tag:X} is not writable")
        content = items[1].value
        if len(content) > MAX_OBJECT_SIZE:
            raise CardError(SW.NOT_ENOUGH_MEMORY)
        with self.store.update() as draft:
            if content:
                draft.objects[tag] = content
            else:
                draft.objects.pop(tag, None)
        return b""

    # PIN and PUK ------------------------------------------------------------

    def _verify(self, cmd: CommandApdu) -> bytes:
        """SP 800-73-4 Part 2 §3.2.1 VERIFY, with the empty-data status query and P1=FF."""
        if cmd.p2 != KeyRef.PIN:
            raise CardError(SW.REFERENCE_DATA_NOT_FOUND if cmd.p1 == 0 else SW.INCORRECT_P1P2)
        if cmd.p1 == 0xFF:
            if cmd.data:
                raise CardError(SW.WRONG_LENGTH)
            self._forget_pin()
            return b""
        if cmd.p1 != 0x00:
            raise CardError(SW.INCORRECT_P1P2)
        pin = self._state.pin
        if not cmd.data:
            if pin.retries_left == 0:
                raise CardError(SW.AUTH_METHOD_BLOCKED)
            if self.pin_verified:
                return b""
            raise CardError(retries_sw(pin.retries_left))
        self._check_pin_format(cmd.data)
        if self._check_reference("pin", cmd.data):
            self.pin_verified = True
            self._pin_always_armed = True
            return b""
        self._forget_pin()
        raise CardError(retries_sw(self._state.pin.retries_left))

    def _change_reference_data(self, cmd: CommandApdu) -> bytes:
        """SP 800-73-4 Part 2 §3.2.2: old value then new value, 8 bytes each."""
        if cmd.p1 != 0x00:
            raise CardError(SW.INCORRECT_P1P2)
        if cmd.p2 not in (KeyRef.PIN, KeyRef.PUK):
            raise CardError(SW.REFERENCE_DATA_NOT_FOUND)
        if len(cmd.data) != 2 * PIN_LENGTH:
            raise CardError(SW.INCORRECT_DATA, "expected 16 bytes")
        old, new = cmd.data[:PIN_LENGTH], cmd.data[PIN_LENGTH:]
        which = "pin" if cmd.p2 == KeyRef.PIN else "puk"
        check = self._check_pin_format if which == "pin" else self._check_puk_format
        check(old)
        check(new)
        if not self._check_reference(which, old):
            if which == "pin":
                self._forget_pin()
            raise CardError(retries_sw(getattr(self._state, which).retries_left))
        with self.store.update() as draft:
            getattr(draft, which).set_value(new)
        if which == "pin":
            self.pin_verified = True
        return b""

    def _reset_retry_counter(self, cmd: CommandApdu) -> bytes:
        """SP 800-73-4 Part 2 §3.2.3: PUK then new PIN; unblocks the PIN."""
        if cmd.p1 != 0x00 or cmd.p2 != KeyRef.PIN:
            raise CardError(SW.INCORRECT_P1P2)
        if len(cmd.data) != 2 * PIN_LENGTH:
            raise CardError(SW.INCORRECT_DATA, "expected 16 bytes")
        puk, new_pin = cmd.data[:PIN_LENGTH], cmd.data[PIN_LENGTH:]
        self._check_puk_format(puk)
        self._check_pin_format(new_pin)
        self._forget_pin()
        if not self._check_reference("puk", puk):
            raise CardError(retries_sw(self._state.puk.retries_left))
        with self.store.update() as draft:
            draft.pin.set_value(new_pin)
            draft.pin.retries_left = draft.pin.max_retries
        return b""

    def _check_reference(self, which: str, candidate: bytes) -> bool:
        """Compare a PIN or PUK: decrement and persist first, restore on a match."""
        ref: ReferenceData = getattr(self._state, which)
        if ref.retries_left == 0:
            raise CardError(SW.AUTH_METHOD_BLOCKED)
        with self.store.update() as draft:
            getattr(draft, which).retries_left -= 1
        if not ref.matches(candidate):
            return False
        with self.store.update() as draft:
            restored: ReferenceData = getattr(draft, which)
            restored.retries_left = restored.max_retries
        return True

    def _check_pin_format(self, field: bytes) -> None:
        value = _unpadded(field) if len(field) == PIN_LENGTH else None
        if (
            value is None
            or not self.profile.pin_min_length <= len(value) <= self.profile.pin_max_length
            or not value.isdigit()
        ):
            raise CardError(SW.INCORRECT_DATA, "PIN format")

    @staticmethod
    def _check_puk_format(field: bytes) -> None:
        value = _unpadded(field) if len(field) == PIN_LENGTH else None
        if value is None or not 6 <= len(value) <= PIN_LENGTH:
            raise CardError(SW.INCORRECT_DATA, "PUK format")

    def _forget_pin(self) -> None:
        self.pin_verified = False
        self._pin_always_armed = False

    # Management key ------------------------------------------------------------

    def _require_management(self) -> None:
        if not self.management_authenticated:
            raise CardError(SW.SECURITY_STATUS_NOT_SATISFIED, "management key not authenticated")

    def _authenticate_management(self, cmd: CommandApdu, items: dict[int, bytes]) -> bytes:
        """SP 800-73-4 Part 2 Appendix A.1 (challenge) and A.2 (mutual, witness)."""
        mgm = self._state.management_key
        if cmd.p1 != mgm.algorithm:
            raise CardError(SW.INCORRECT_P1P2, "wrong management key algorithm")
        size = keys.block_size(mgm.algorithm)
        pending, self._pending = self._pending, None
        self.management_authenticated = False
        shape = {tag: len(value) for tag, value in items.items()}
        if shape == {0x80: 0}:  # request a witness
            witness = secrets.token_bytes(size)
            self._pending = _Pending(0x80, witness)
            encrypted = keys.encrypt_block(mgm.algorithm, mgm.key, witness)
            return tlv(0x7C, tlv(0x80, encrypted))
        if shape == {0x81: 0}:  # request a challenge
            challenge = secrets.token_bytes(size)
            self._pending = _Pending(0x81, keys.encrypt_block(mgm.algorithm, mgm.key, challenge))
            return tlv(0x7C, tlv(0x81, challenge))
        if shape == {0x80: size, 0x81: size} and pending is not None and pending.kind == 0x80:
            if not hmac.compare_digest(items[0x80], pending.expected):
                raise CardError(SW.SECURITY_STATUS_NOT_SATISFIED, "witness mismatch")
            self.management_authenticated = True
            answer = keys.encrypt_block(mgm.algorithm, mgm.key, items[0x81])
            return tlv(0x7C, tlv(0x82, answer))
        if shape == {0x82: size} and pending is not None and pending.kind == 0x81:
            if not hmac.compare_digest(items[0x82], pending.expected):
                raise CardError(SW.SECURITY_STATUS_NOT_SATISFIED, "challenge response mismatch")
            self.management_authenticated = True
            return b""
        raise CardError(SW.INCORRECT_DATA, "unexpected management key authentication step")

    def _set_management_key(self, cmd: CommandApdu) -> bytes:
        if cmd.p1 != 0xFF or cmd.p2 not in (0xFF, 0xFE):
            raise CardError(SW.INCORRECT_P1P2)
        self._require_management()
        if len(cmd.data) < 3 or cmd.data[1] != KeyRef.MANAGEMENT:
            raise CardError(SW.INCORRECT_DATA)
        algorithm, length, key = cmd.data[0], cmd.data[2], cmd.data[3:]
        if keys.SYMMETRIC_KEY_LENGTH.get(algorithm) != length or len(key) != length:
            raise CardError(SW.INCORRECT_DATA, "management key algorithm or length")
        with self.store.update() as draft:
            draft.management_key.algorithm = algorithm
            draft.management_key.key = key
            draft.management_key.is_default = False
        return b""

    # Keys -----------------------------------------------------------------------

    def _generate(self, cmd: CommandApdu) -> bytes:
        """SP 800-73-4 Part 2 §3.3.2; returns the public key template 7F49."""
        if cmd.p1 != 0x00 or cmd.p2 not in SLOT_OBJECTS:
            raise CardError(SW.INCORRECT_P1P2)
        self._require_management()
        control = parse_tlv_dict(parse_single(cmd.data, 0xAC))
        algorithm = control.get(0x80, b"")
        if len(algorithm) != 1 or algorithm[0] not in keys.ASYMMETRIC:
            raise CardError(SW.INCORRECT_DATA, "unsupported key algorithm")
        pin_policy = _policy(control.get(0xAA), PinPolicy)
        touch_policy = _policy(control.get(0xAB), TouchPolicy)
        if pin_policy == PinPolicy.DEFAULT:
            pin_policy = default_pin_policy(cmd.p2)
        key = keys.generate(algorithm[0])
        record = KeyRecord(algorithm[0], keys.to_pkcs8(key), pin_policy, touch_policy,
                           KeyOrigin.GENERATED)
        with self.store.update() as draft:
            draft.keys[cmd.p2] = record
        self._key_cache[record.private_key] = key
        return keys.public_key_template(key)

    def _general_authenticate(self, cmd: CommandApdu) -> bytes:
        """SP 800-73-4 Part 2 §3.2.4, dynamic authentication template 7C."""
        items = parse_tlv_dict(parse_single(cmd.data, 0x7C))
        if cmd.p2 == KeyRef.MANAGEMENT:
            return self._authenticate_management(cmd, items)
        if cmd.p2 not in SLOT_OBJECTS:
            raise CardError(SW.INCORRECT_P1P2, "no such key reference")
        record = self._state.keys.get(cmd.p2)
        if record is None:
            raise CardError(SW.REFERENCE_DATA_NOT_FOUND, "slot is empty")
        if cmd.p1 != record.algorithm:
            raise CardError(SW.INCORRECT_P1P2, "algorithm does not match the key")
        if items.get(0x82) != b"" or not ({0x81} == items.keys() - {0x82}
                                          or {0x85} == items.keys() - {0x82}):
            raise CardError(SW.INCORRECT_DATA, "expected 82 00 and one of 81 / 85")
        self._authorise_key_use(record)
        key = self._private_key(record)
        try:
            result = (keys.sign(key, items[0x81]) if 0x81 in items
                      else keys.ecdh(key, items[0x85]))
        except KeyOperationError as exc:
            raise CardError(SW.INCORRECT_DATA, str(exc)) from exc
        return tlv(0x7C, tlv(0x82, result))

    def _authorise_key_use(self, record: KeyRecord) -> None:
        if record.pin_policy == PinPolicy.NEVER:
            return
        if not self.pin_verified:
            raise CardError(SW.SECURITY_STATUS_NOT_SATISFIED, "PIN not verified")
        if record.pin_policy == PinPolicy.ALWAYS:
            if not self._pin_always_armed:
                raise CardError(SW.SECURITY_STATUS_NOT_SATISFIED, "PIN must precede each use")
            self._pin_always_armed = False

    def _attest(self, cmd: CommandApdu) -> bytes:
        """Vendor ATTEST: an X.509 certificate for a slot's generated key."""
        if cmd.p1 not in SLOT_OBJECTS or cmd.p2 != 0x00:
            raise CardError(SW.INCORRECT_P1P2)
        record = self._state.keys.get(cmd.p1)
        if record is None:
            raise CardError(SW.REFERENCE_DATA_NOT_FOUND, "slot is empty")
        if record.origin != KeyOrigin.GENERATED:
            raise CardError(SW.INCORRECT_DATA, "only generated keys can be attested")
        state = self._state
        certificate = attestation.attest_slot(
            slot=cmd.p1,
            slot_key=self._private_key(record),
            device_key=self._private_key(state.attestation_key),
            device_certificate=device_certificate(state),
            card_serial=state.serial,
            firmware_version=state.firmware_version,
            pin_policy=record.pin_policy,
            touch_policy=record.touch_policy,
        )
        return certificate.public_bytes(serialization.Encoding.DER)

    # Vendor information -----------------------------------------------------------

    def _get_version(self, cmd: CommandApdu) -> bytes:
        _require_p1p2_zero(cmd)
        return bytes(self._state.firmware_version)

    def _get_serial(self, cmd: CommandApdu) -> bytes:
        _require_p1p2_zero(cmd)
        return self._state.serial.to_bytes(4, "big")

    def _get_metadata(self, cmd: CommandApdu) -> bytes:
        """Vendor GET METADATA: algorithm, policy, origin, public key, retries."""
        if cmd.p1 != 0x00:
            raise CardError(SW.INCORRECT_P1P2)
        state = self._state
        ref = cmd.p2
        if ref in (KeyRef.PIN, KeyRef.PUK):
            data = state.pin if ref == KeyRef.PIN else state.puk
            return (tlv(0x01, b"\xff") + tlv(0x05, bytes([data.is_default]))
                    + tlv(0x06, bytes([data.max_retries, data.retries_left])))
        if ref == KeyRef.MANAGEMENT:
            mgm = state.management_key
            return (tlv(0x01, bytes([mgm.algorithm])) + tlv(0x02, b"\x00\x01")
                    + tlv(0x05, bytes([mgm.is_default])))
        if ref not in SLOT_OBJECTS and ref != KeyRef.ATTESTATION:
            raise CardError(SW.INCORRECT_P1P2)
        record = state.attestation_key if ref == KeyRef.ATTESTATION else state.keys.get(ref)
        if record is None:
            raise CardError(SW.REFERENCE_DATA_NOT_FOUND, "slot is empty")
        public = keys.public_key_template(self._private_key(record))
        return (tlv(0x01, bytes([record.algorithm]))
                + tlv(0x02, bytes([record.pin_policy, record.touch_policy]))
                + tlv(0x03, bytes([record.origin]))
                + tlv(0x04, parse_single(public, 0x7F49)))

    # Card life cycle ---------------------------------------------------------------

    def _set_pin_retries(self, cmd: CommandApdu) -> bytes:
        """Vendor SET PIN RETRIES: P1 PIN tries, P2 PUK tries; resets both to factory values."""
        self._require_management()
        if not self.pin_verified:
            raise CardError(SW.SECURITY_STATUS_NOT_SATISFIED)
        if not (1 <= cmd.p1 <= 15 and 1 <= cmd.p2 <= 15) or cmd.data:
            raise CardError(SW.INCORRECT_P1P2)
        with self.store.update() as draft:
            draft.pin = ReferenceData.create(pad_pin(self.profile.default_pin), cmd.p1,
                                             is_default=True)
            draft.puk = ReferenceData.create(pad_pin(self.profile.default_puk), cmd.p2,
                                             is_default=True)
        self._forget_pin()
        return b""

    def _factory_reset(self, cmd: CommandApdu) -> bytes:
        """Vendor RESET: only when PIN and PUK are both blocked; back to factory state."""
        _require_p1p2_zero(cmd)
        state = self._state
        if state.pin.retries_left or state.puk.retries_left:
            raise CardError(SW.CONDITIONS_NOT_SATISFIED, "PIN and PUK must both be blocked")
        with self.store.update() as draft:
            personalise_application(draft, self.profile)
        self._key_cache.clear()
        self.reset()
        self.selected = True
        return b""

    _handlers: ClassVar[dict[int, Callable[[PivApplet, CommandApdu], bytes]]] = {
        INS.GET_DATA: _get_data,
        INS.PUT_DATA: _put_data,
        INS.VERIFY: _verify,
        INS.CHANGE_REFERENCE_DATA: _change_reference_data,
        INS.RESET_RETRY_COUNTER: _reset_retry_counter,
        INS.GENERATE_ASYMMETRIC_KEY_PAIR: _generate,
        INS.GENERAL_AUTHENTICATE: _general_authenticate,
        INS.GET_VERSION: _get_version,
        INS.GET_SERIAL: _get_serial,
        INS.GET_METADATA: _get_metadata,
        INS.ATTEST: _attest,
        INS.SET_MANAGEMENT_KEY: _set_management_key,
        INS.SET_PIN_RETRIES: _set_pin_retries,
        INS.RESET: _factory_reset,
    }


def _require_p1p2_zero(cmd: CommandApdu) -> None:
    if cmd.p1 or cmd.p2:
        raise CardError(SW.INCORRECT_P1P2)


def _object_tag(value: bytes) -> int:
    if not 1 <= len(value) <= 3:
        raise CardError(SW.INCORRECT_DATA, "data object tag must be 1 to 3 bytes")
    return int.from_bytes(value, "big")


def _policy(value: bytes | None, kind: type[IntEnum]) -> int:
    if value is None:
        return 0
    if len(value) != 1 or value[0] not in {int(m) for m in kind}:
        raise CardError(SW.INCORRECT_DATA, f"bad {kind.__name__}")
    return value[0]


def certificate_object(certificate_der: bytes) -> bytes:
    """Content of a certificate data object: 70 cert, 71 CertInfo (uncompressed), FE LRC."""
    return tlv(0x70, certificate_der) + tlv(0x71, b"\x00") + tlv(0xFE)


def device_certificate(state: CardState) -> x509.Certificate:
    content = parse_tlv_dict(state.objects[ATTESTATION_OBJECT])
    return x509.load_der_x509_certificate(content[0x70])


# A FASC-N with agency code 9999 (non-federal issuer), SP 800-73-4 Part 1 §3.1.2.
_NON_FEDERAL_FASCN = bytes.fromhex("d4e739da739ced39ce739d836858210842108421c84210c3eb")


def personalise_application(state: CardState, profile: CardProfile) -> None:
    """Factory values of the PIV application: PIN, PUK, management key, data objects.

    Keeps what belongs to the chip (serial, attestation key and certificate).
    """
    state.pin = ReferenceData.create(pad_pin(profile.default_pin), profile.pin_retries,
                                     is_default=True)
    state.puk = ReferenceData.create(pad_pin(profile.default_puk), profile.puk_retries,
                                     is_default=True)
    state.management_key.algorithm = Algorithm.TDES
    state.management_key.key = DEFAULT_MANAGEMENT_KEY
    state.management_key.is_default = True
    state.keys.clear()
    kept = {ATTESTATION_OBJECT: state.objects[ATTESTATION_OBJECT]}
    state.objects.clear()
    state.objects.update(kept)
    guid = secrets.token_bytes(16)
    state.objects[CHUID_TAG] = (
        tlv(0x30, _NON_FEDERAL_FASCN) + tlv(0x34, guid) + tlv(0x35, b"20501231")
        + tlv(0x3E) + tlv(0xFE)
    )
    card_id = bytes.fromhex("a000000116ff02") + secrets.token_bytes(14)
    state.objects[CCC_TAG] = (
        tlv(0xF0, card_id) + tlv(0xF1, b"\x21") + tlv(0xF2, b"\x21") + tlv(0xF3)
        + tlv(0xF4, b"\x00") + tlv(0xF5, b"\x10") + tlv(0xF6) + tlv(0xF7) + tlv(0xFA)
        + tlv(0xFB) + tlv(0xFC) + tlv(0xFD) + tlv(0xFE)
    )
    state.objects[KEY_HISTORY_TAG] = tlv(0xC1, b"\x00") + tlv(0xC2, b"\x00") + tlv(0xFE)
