"""The PIV domain: `PivSession` speaks SP 800-73-4 (and the vendor extensions
field tokens carry) over any `Connection`; `PivToken` is the `Token` on top.
No pyscard here: the transport is somebody else's business.
"""

from __future__ import annotations

import hmac
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import TypeVar

from cryptography import x509
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from agent.tokens.apdu import (
    ApduChannel,
    Command,
    Connection,
    Reference,
    error_for_sw,
    transaction,
)
from agent.tokens.errors import (
    CardReset,
    InvalidInput,
    InvalidPin,
    KeyNotFound,
    NotAuthenticated,
    OperationFailed,
    PinBlocked,
    PinFormatInvalid,
    PinStateLost,
    TokenError,
    TokenRemoved,
    TokenResponseError,
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
from agent.tokens.piv_data import (
    ALGORITHMS,
    certificate_from_object,
    chuid_guid,
    key_type_of,
    public_key_to_spki,
    signing_challenge,
)
from agent.tokens.secret import wipe
from ground.iso7816 import SW, TlvError, parse_single, parse_tlv_dict, retries_left, tlv
from ground.piv import (
    ATTESTATION_OBJECT,
    CHUID_OBJECT,
    DEFAULT_MANAGEMENT_KEY,
    INS,
    PIN_LENGTH,
    PIV_AID,
    SLOT_OBJECTS,
    Algorithm,
    KeyRef,
    PinPolicy,
    Slot,
    default_pin_policy,
)

log = logging.getLogger(__name__)

PIN_REF, PUK_REF, MANAGEMENT_REF = KeyRef.PIN, KeyRef.PUK, KeyRef.MANAGEMENT


SLOT_LABELS = {
    Slot.AUTHENTICATION: "PIV Authentication",
    Slot.SIGNATURE: "Digital Signature",
    Slot.KEY_MANAGEMENT: "Key Management",
    Slot.CARD_AUTHENTICATION: "Card Authentication",
}
_BLOCK = {Algorithm.TDES: 8, Algorithm.AES_128: 16, Algorithm.AES_192: 16, Algorithm.AES_256: 16}


def encode_pin(pin: str, *, minimum: int = 4) -> bytearray:
    """8 bytes, ASCII digits padded with 0xFF (SP 800-73-4 Part 2 §2.4.3). Checked here
    so that a malformed PIN never reaches the card (and never costs a try)."""
    if not (minimum <= len(pin) <= PIN_LENGTH) or not pin.isascii() or not pin.isdigit():
        raise PinFormatInvalid(f"a PIN is {minimum} to {PIN_LENGTH} digits")
    return bytearray(pin.encode().ljust(PIN_LENGTH, b"\xff"))


def encode_puk(puk: str) -> bytearray:
    raw = puk.encode()
    if not 6 <= len(raw) <= PIN_LENGTH or b"\xff" in raw:
        raise PinFormatInvalid(f"a PUK is 6 to {PIN_LENGTH} characters")
    return bytearray(raw.ljust(PIN_LENGTH, b"\xff"))


class PivSession:
    """SP 800-73-4 Part 2 commands over a `Connection` (yubikit's `PivSession` shape)."""

    def __init__(self, connection: Connection) -> None:
        self.channel = ApduChannel(connection)
        self.pin_blocked = False  # the card said so; sending a PIN then is pointless
        self.pin_presented = False  # a PIN or PUK went to the card since the last reset

    # Application ----------------------------------------------------------------

    def select(self) -> bytes:
        """SELECT the PIV application (§3.1.1); answers the property template."""
        data = self.channel.send(Command(INS.SELECT, 0x04, 0x00, PIV_AID), what="SELECT PIV")
        try:
            parse_single(data, 0x61)
        except TlvError as exc:
            raise TokenResponseError("malformed application property template") from exc
        return data

    def get_data(self, tag: int) -> bytes | None:
        """GET DATA (§3.1.2): the object's content, None when the card has none."""
        tag_bytes = tag.to_bytes((tag.bit_length() + 7) // 8, "big")
        data, sw = self.channel.exchange(Command(INS.GET_DATA, 0x3F, 0xFF, tlv(0x5C, tag_bytes)))
        if sw in (SW.FILE_NOT_FOUND, SW.REFERENCE_DATA_NOT_FOUND):
            return None
        if sw != SW.OK:
            raise error_for_sw(sw, Reference.OBJECT, f"GET DATA {tag:X}")
        try:
            return parse_single(data, 0x53)
        except TlvError as exc:
            raise TokenResponseError(f"object {tag:X} is not a 53 template") from exc

    def put_data(self, tag: int, content: bytes) -> None:
        tag_bytes = tag.to_bytes((tag.bit_length() + 7) // 8, "big")
        self.channel.send(Command(INS.PUT_DATA, 0x3F, 0xFF,
                                  tlv(0x5C, tag_bytes) + tlv(0x53, content), le=None),
                          what=f"PUT DATA {tag:X}")

    # PIN and PUK ----------------------------------------------------------------

    def pin_retries(self) -> int:
        """VERIFY with no data: retries left, 0 when blocked (§3.2.1)."""
        _, sw = self.channel.exchange(Command(INS.VERIFY, 0x00, PIN_REF, le=None))
        if sw == SW.OK:
            self.pin_blocked = False
            return -1  # verified now; the count is not told
        left = 0 if sw == SW.AUTH_METHOD_BLOCKED else retries_left(sw)
        if left is not None:
            self.pin_blocked = left == 0
            return left
        raise error_for_sw(sw, Reference.PIN, "PIN status")

    def _send_pin(self, command: Command, what: str) -> None:
        """Send a command carrying the PIN. Once the card said the PIN is blocked, no PIN
        goes to it again until it is unblocked or reports tries (SECURITY #15)."""
        if self.pin_blocked:
            raise PinBlocked()
        self.pin_presented = True
        try:
            self.channel.send(command, Reference.PIN, what)
        except PinBlocked:
            self.pin_blocked = True
            raise
        except InvalidPin as exc:
            self.pin_blocked = exc.attempts_left == 0
            raise

    def verify_pin(self, pin: str) -> None:
        """VERIFY (§3.2.1): the padded PIN goes out in a buffer wiped right after."""
        field = encode_pin(pin)
        try:
            self._send_pin(Command(INS.VERIFY, 0x00, PIN_REF, field, le=None, secret=True),
                           "VERIFY")
        finally:
            wipe(field)

    def reset_security_status(self) -> None:
        """VERIFY P1=FF: the PIN is no longer verified (§3.2.1). A card that refuses it
        is made to forget by selecting the application again, as field tokens do."""
        _, sw = self.channel.exchange(Command(INS.VERIFY, 0xFF, PIN_REF, le=None))
        if sw != SW.OK:
            log.warning("the card refused VERIFY P1=FF (%04X); selecting PIV again", sw)
            self.select()
        self.pin_presented = False

    @contextmanager
    def relocking(self) -> Iterator[None]:
        """Run a block that may present the PIN or PUK; once it ends, however it ends, the
        PIN's security status is reset (VERIFY P1=FF, SP 800-73-4 Part 2 §3.2.1), so no
        other application finds the card unlocked (SECURITY #28, #36)."""
        try:
            yield
        except BaseException:
            if self.pin_presented:
                with suppress(TokenError, CardReset):  # the block's own error is the news
                    self.reset_security_status()
            raise
        if self.pin_presented:
            try:
                self.reset_security_status()
            except (CardReset, TokenRemoved):
                self.pin_presented = False  # reset or gone: the card forgot the PIN itself

    def change_reference(self, reference: int, old: bytearray, new: bytearray) -> None:
        both = old + new
        command = Command(INS.CHANGE_REFERENCE_DATA, 0x00, reference, both, le=None,
                          secret=True)
        try:
            if reference == PUK_REF:
                self.channel.send(command, Reference.PUK, "CHANGE REFERENCE DATA")
            else:
                self._send_pin(command, "CHANGE REFERENCE DATA")
        finally:
            wipe(old, new, both)

    def unblock_pin(self, puk: str, new_pin: str) -> None:
        puk_field, pin_field = encode_puk(puk), encode_pin(new_pin)
        both = puk_field + pin_field
        self.pin_presented = True
        try:
            self.channel.send(Command(INS.RESET_RETRY_COUNTER, 0x00, PIN_REF, both,
                                      le=None, secret=True),
                              Reference.PUK, "RESET RETRY COUNTER")
            self.pin_blocked = False
        finally:
            wipe(puk_field, pin_field, both)

    # Management key ----------------------------------------------------------------

    def authenticate(self, key: bytes, algorithm: int = Algorithm.TDES) -> None:
        """Mutual authentication with the card management key (Appendix A.2)."""
        cipher = _cipher(algorithm, key)
        size = _BLOCK[Algorithm(algorithm)]
        reply = self.channel.send(
            Command(INS.GENERAL_AUTHENTICATE, algorithm, MANAGEMENT_REF, tlv(0x7C, tlv(0x80))),
            what="management key witness")
        witness_enc = _template_item(reply, 0x80, size)
        decryptor = cipher.decryptor()
        witness = decryptor.update(witness_enc) + decryptor.finalize()
        challenge = os.urandom(size)
        reply = self.channel.send(
            Command(INS.GENERAL_AUTHENTICATE, algorithm, MANAGEMENT_REF,
                    tlv(0x7C, tlv(0x80, witness) + tlv(0x81, challenge)), secret=True),
            what="management key authentication")
        encryptor = cipher.encryptor()
        expected = encryptor.update(challenge) + encryptor.finalize()
        if not hmac.compare_digest(_template_item(reply, 0x82, size), expected):
            raise TokenResponseError("the card does not hold the management key it claims")

    # Keys -------------------------------------------------------------------------

    def generate(self, slot: int, algorithm: int) -> bytes:
        """GENERATE ASYMMETRIC KEY PAIR (§3.3.2); answers the 7F49 content."""
        reply = self.channel.send(
            Command(INS.GENERATE_ASYMMETRIC_KEY_PAIR, 0x00, slot,
                    tlv(0xAC, tlv(0x80, bytes([algorithm])))),
            Reference.KEY, f"GENERATE {slot:02X}")
        try:
            return parse_single(reply, 0x7F49)
        except TlvError as exc:
            raise TokenResponseError("malformed public key template") from exc

    def authenticate_with_key(self, slot: int, algorithm: int, challenge: bytes) -> bytes:
        """GENERAL AUTHENTICATE (§3.2.4): the key's private operation on `challenge`."""
        reply = self.channel.send(
            Command(INS.GENERAL_AUTHENTICATE, algorithm, slot,
                    tlv(0x7C, tlv(0x82) + tlv(0x81, challenge))), Reference.KEY,
            f"GENERAL AUTHENTICATE {slot:02X}")
        return _template_item(reply, 0x82)

    def get_certificate(self, slot: int) -> bytes | None:
        content = self.get_data(SLOT_OBJECTS[Slot(slot)])
        return None if content is None else certificate_from_object(content)

    def put_certificate(self, slot: int, certificate: bytes) -> None:
        self.put_data(SLOT_OBJECTS[Slot(slot)],
                      tlv(0x70, certificate) + tlv(0x71, b"\x00") + tlv(0xFE))

    # Vendor extensions --------------------------------------------------------------

    def get_serial(self) -> int | None:
        data, sw = self.channel.exchange(Command(INS.GET_SERIAL))
        return int.from_bytes(data, "big") if sw == SW.OK and len(data) == 4 else None

    def get_version(self) -> tuple[int, int, int] | None:
        data, sw = self.channel.exchange(Command(INS.GET_VERSION))
        return (data[0], data[1], data[2]) if sw == SW.OK and len(data) == 3 else None

    def get_metadata(self, reference: int) -> dict[int, bytes] | None:
        data, sw = self.channel.exchange(Command(INS.GET_METADATA, 0x00, reference))
        if sw != SW.OK:
            return None
        try:
            return parse_tlv_dict(data)
        except TlvError as exc:
            raise TokenResponseError("malformed metadata") from exc

    def attest(self, slot: int) -> bytes:
        return self.channel.send(Command(INS.ATTEST, slot, 0x00), Reference.KEY,
                                 f"ATTEST {slot:02X}")


def _cipher(algorithm: int, key: bytes) -> Cipher[modes.ECB]:
    if algorithm == Algorithm.TDES:
        return Cipher(TripleDES(key), modes.ECB())  # noqa: S305 - one block, per SP 800-73-4
    if algorithm in (Algorithm.AES_128, Algorithm.AES_192, Algorithm.AES_256):
        return Cipher(algorithms.AES(key), modes.ECB())  # noqa: S305
    raise UnsupportedMechanism(f"management key algorithm {algorithm:02X}")


def _template_item(reply: bytes, tag: int, size: int | None = None) -> bytes:
    try:
        value = parse_tlv_dict(parse_single(reply, 0x7C))[tag]
    except (TlvError, KeyError) as exc:
        raise TokenResponseError(f"no {tag:02X} in the authentication template") from exc
    if size is not None and len(value) != size:
        raise TokenResponseError("authentication template item of the wrong size")
    return value


T = TypeVar("T")


class PivToken(Token):
    """A PIV card as a `Token`. Every operation is one PC/SC transaction."""

    def __init__(self, connection: Connection, *, reader: str | None = None,
                 atr: bytes | None = None, profile: str | None = None,
                 management_key: bytes = DEFAULT_MANAGEMENT_KEY,
                 management_algorithm: int = Algorithm.TDES) -> None:
        self.connection = connection
        self.session = PivSession(connection)
        self._management_key = management_key
        self._management_algorithm = management_algorithm
        self._credentials: list[Credential] | None = None
        with transaction(connection):
            self.session.select()
            serial = self.session.get_serial()
            version = self.session.get_version()
            chuid = self.session.get_data(CHUID_OBJECT)
        guid = chuid_guid(chuid)
        serial_text = str(serial) if serial is not None else (guid or "unknown")
        self._info = TokenInfo(
            id=f"piv-{serial_text}",
            label=f"PIV card {serial_text}",
            serial=serial_text,
            manufacturer="PIV" if version is None else "PIV (vendor extensions)",
            model="PIV" if version is None else "PIV v{}.{}.{}".format(*version),
            reader=reader,
            routes=(RouteInfo(Route.PIV_PCSC, reader=reader),),
            atr=atr.hex() if atr else None,
            profile=profile,
        )
        self.chuid_guid = guid

    @property
    def info(self) -> TokenInfo:
        return self._info

    # Plumbing --------------------------------------------------------------------

    @contextmanager
    def _operation(self, *, needs_pin_state: bool = False) -> Iterator[None]:
        """One PC/SC transaction, the one place a PIN reaches the card: one it presented
        is reset before the transaction ends. A card reset surfaces as PinStateLost when
        the operation relied on a verified PIN; otherwise the caller may simply retry."""
        try:
            with transaction(self.connection), self.session.relocking():
                yield
        except CardReset as exc:
            self._credentials = None
            if needs_pin_state:
                raise PinStateLost() from exc
            raise OperationFailed("the card was reset; try again") from exc

    def _run(self, fn: Callable[[], T], *, needs_pin_state: bool = False) -> T:
        """Run `fn` in a transaction; after a reset, re-select and run once more
        unless a verified PIN was part of the operation."""
        try:
            with self._operation(needs_pin_state=needs_pin_state):
                return fn()
        except OperationFailed as exc:
            if not isinstance(exc.__cause__, CardReset):
                raise
        with self._operation(needs_pin_state=needs_pin_state):
            self.session.select()
            return fn()

    # Token ---------------------------------------------------------------------------

    def credentials(self) -> list[Credential]:
        if self._credentials is None:
            self._credentials = self._run(self._read_credentials)
        return list(self._credentials)

    def _read_credentials(self) -> list[Credential]:
        found = []
        for slot in Slot:
            metadata = self.session.get_metadata(slot)
            certificate = self.session.get_certificate(slot)
            if metadata is None and certificate is None:
                continue
            key_type = key_type_of(metadata, certificate)
            if key_type is None:
                continue
            policy = metadata.get(0x02, b"\x00")[:1] if metadata else b"\x00"
            pin_policy = policy[0] if policy else PinPolicy.DEFAULT
            if pin_policy == PinPolicy.DEFAULT:
                pin_policy = default_pin_policy(slot)
            pin_always = pin_policy == PinPolicy.ALWAYS
            origin = metadata.get(0x03, b"\x00")[:1] if metadata else b"\x00"
            found.append(Credential(
                id=f"{slot:02X}",
                label=SLOT_LABELS[slot],
                key_type=key_type,
                certificate=certificate,
                pin_always=pin_always,
                can_attest=origin == b"\x01",
            ))
        return found

    def _credential(self, credential_id: str) -> Credential:
        for credential in self.credentials():
            if credential.id == credential_id.upper():
                return credential
        raise KeyNotFound(credential_id)

    def pin_status(self) -> PinStatus:
        def read() -> PinStatus:
            pin = self.session.get_metadata(PIN_REF)
            puk = self.session.get_metadata(PUK_REF)
            if pin is not None and puk is not None and len(pin.get(0x06, b"")) == 2:
                self.session.pin_blocked = pin[0x06][1] == 0
                return PinStatus(
                    retries_left=pin[0x06][1], blocked=pin[0x06][1] == 0,
                    puk_retries_left=puk[0x06][1], puk_blocked=puk[0x06][1] == 0,
                    is_default=pin.get(0x05) == b"\x01")
            left = self.session.pin_retries()
            return PinStatus(retries_left=None if left < 0 else left, blocked=left == 0)

        return self._run(read)

    def verify_pin(self, pin: str) -> None:
        """The card checks the PIN (§3.2.1) and is locked again at once: a verified PIN
        authorises nothing after this call."""
        self._run(lambda: self.session.verify_pin(pin))

    def sign_digest(self, credential_id: str, digest: bytes, algorithm: SignatureAlgorithm,
                    pin: str | None = None) -> bytes:
        credential = self._credential(credential_id)
        if not algorithm.fits(credential.key_type):
            raise UnsupportedMechanism(f"{algorithm} does not fit a {credential.key_type} key")
        if len(digest) != algorithm.hash.digest_size:
            raise InvalidInput(f"a {algorithm.hash} digest is {algorithm.hash.digest_size} bytes")
        if credential.pin_always and pin is None:
            raise NotAuthenticated("this key needs the PIN for each signature")
        challenge = signing_challenge(credential.key_type, digest, algorithm)
        slot = int(credential.id, 16)
        alg = ALGORITHMS[credential.key_type]

        # A reset mid-way must never re-send the PIN on its own (SECURITY #25).
        with self._operation(needs_pin_state=True):
            if pin is not None:
                self.session.verify_pin(pin)
            return self.session.authenticate_with_key(slot, alg, challenge)

    def generate_key(self, credential_id: str, key_type: KeyType, pin: str | None = None
                     ) -> bytes:
        """GENERATE ASYMMETRIC KEY PAIR (§3.3.2) under the management key. With `pin`,
        the card checks it first: a wrong PIN leaves the slot's key as it was."""
        slot = _slot(credential_id)

        def generate() -> bytes:
            if pin is not None:
                self.session.verify_pin(pin)
            self.session.authenticate(self._management_key, self._management_algorithm)
            return self.session.generate(slot, ALGORITHMS[key_type])

        content = self._run(generate, needs_pin_state=pin is not None)
        self._credentials = None
        return public_key_to_spki(content, key_type)

    def public_key(self, credential_id: str) -> bytes | None:
        """The slot's public key from GET METADATA (a vendor extension field tokens
        carry); None when the card does not tell."""
        slot = _slot(credential_id)
        metadata = self._run(lambda: self.session.get_metadata(slot))
        key_type = key_type_of(metadata, None)
        if metadata is None or key_type is None or 0x04 not in metadata:
            return None
        return public_key_to_spki(metadata[0x04], key_type)

    def attest(self, credential_id: str) -> list[bytes]:
        slot = _slot(credential_id)

        def read() -> list[bytes]:
            attestation = self.session.attest(slot)
            device = self.session.get_data(ATTESTATION_OBJECT)
            chain = [attestation]
            if device is not None:
                chain.append(certificate_from_object(device))
            return chain

        chain = self._run(read)
        for der in chain:
            try:
                x509.load_der_x509_certificate(der)
            except ValueError as exc:
                raise TokenResponseError("attestation is not an X.509 certificate") from exc
        return chain

    def put_certificate(self, credential_id: str, certificate: bytes, pin: str | None = None
                        ) -> None:
        slot = _slot(credential_id)
        try:
            x509.load_der_x509_certificate(certificate)
        except ValueError as exc:
            raise InvalidInput("not a DER X.509 certificate") from exc

        def put() -> None:
            if pin is not None:  # checked by the card before anything is written
                self.session.verify_pin(pin)
            self.session.authenticate(self._management_key, self._management_algorithm)
            self.session.put_certificate(slot, certificate)

        self._run(put, needs_pin_state=pin is not None)
        self._credentials = None

    def change_pin(self, old_pin: str, new_pin: str) -> None:
        self._run(lambda: self.session.change_reference(PIN_REF, encode_pin(old_pin),
                                                        encode_pin(new_pin)))

    def change_puk(self, old_puk: str, new_puk: str) -> None:
        self._run(lambda: self.session.change_reference(PUK_REF, encode_puk(old_puk),
                                                        encode_puk(new_puk)))

    def unblock_pin(self, puk: str, new_pin: str) -> None:
        self._run(lambda: self.session.unblock_pin(puk, new_pin))

    def close(self) -> None:
        closer = getattr(self.connection, "close", None)
        if callable(closer):
            closer()


def _slot(credential_id: str) -> int:
    try:
        slot = Slot(int(credential_id, 16))
    except ValueError:
        raise KeyNotFound(credential_id) from None
    return int(slot)
