"""A simulated PIV card: persistent state + PIV applet + APDU engine + power."""

from __future__ import annotations

import logging
import secrets
import threading
from pathlib import Path

from firmware_sim import keys
from firmware_sim.apdu import ApduEngine
from firmware_sim.attestation import Manufacturer
from firmware_sim.faults import TearPlan
from firmware_sim.piv import PivApplet, certificate_object, personalise_application
from firmware_sim.profiles import CardProfile, get_profile
from firmware_sim.state import CardState, CardStore, KeyRecord, ManagementKey, ReferenceData
from ground.piv import ATTESTATION_OBJECT, Algorithm, KeyOrigin, PinPolicy, TouchPolicy
from ground.traffic import TRAFFIC

log = logging.getLogger(__name__)


class SimulatedCard:
    """One card. `transmit` is thread-safe; the card processes one APDU at a time."""

    def __init__(self, store: CardStore) -> None:
        self.store = store
        self.profile: CardProfile = get_profile(store.state.profile)
        self.applet = PivApplet(store, self.profile)
        self.engine = ApduEngine(self.applet)
        self._lock = threading.Lock()
        self.powered = False

    @classmethod
    def open(cls, path: Path, tear: TearPlan | None = None) -> SimulatedCard:
        return cls(CardStore.load(path, tear if tear is not None else TearPlan.from_env()))

    @property
    def atr(self) -> bytes:
        return self.profile.atr

    @property
    def serial(self) -> int:
        return self.store.state.serial

    def power_on(self) -> bytes:
        with self._lock:
            self.engine.reset()
            self.powered = True
            return self.atr

    def power_off(self) -> None:
        with self._lock:
            self.engine.reset()
            self.powered = False

    def reset(self) -> bytes:
        """Warm reset: the PIN is no longer verified, nothing is selected."""
        return self.power_on()

    def transmit(self, apdu: bytes) -> bytes:
        with self._lock:
            if not self.powered:
                # pcscd may unpower the card for one client while another still holds a
                # handle, then send that one's APDU without a power-on. Answer as a card
                # freshly powered up: volatile state (selection, PIN status) is gone.
                log.debug("APDU to an unpowered card: implicit cold reset")
                self.engine.reset()
                self.powered = True
            if log.isEnabledFor(TRAFFIC):
                log.log(TRAFFIC, "C-APDU %s", mask_pin_apdu(apdu).hex())
            response = self.engine.transmit(apdu)
            if log.isEnabledFor(TRAFFIC):
                log.log(TRAFFIC, "R-APDU %s", response.hex())
            return response


def mask_pin_apdu(apdu: bytes) -> bytes:
    """The APDU with PIN/PUK bytes replaced, for traces (VERIFY, CHANGE, RESET RETRY)."""
    if len(apdu) > 5 and apdu[1] in (0x20, 0x24, 0x2C):
        return apdu[:5] + b"\x2a" * (len(apdu) - 5)
    return apdu


class InProcessConnection:
    """A `Connection` (transmit(apdu) -> (data, sw)) straight into a simulated card."""

    def __init__(self, card: SimulatedCard) -> None:
        self.card = card
        if not card.powered:
            card.power_on()

    def transmit(self, apdu: bytes | bytearray) -> tuple[bytes, int]:
        response = self.card.transmit(bytes(apdu))  # the card's copy, as a wire's would be
        return response[:-2], int.from_bytes(response[-2:], "big")


def manufacture(
    path: Path,
    *,
    profile: str = "default",
    manufacturer: Manufacturer | None = None,
    serial: int | None = None,
) -> CardStore:
    """Make a factory-fresh card in `path`: chip serial, attestation key and certificate
    from the manufacturer, then the PIV application's factory values."""
    if path.exists():
        raise FileExistsError(f"{path}: a card state already exists")
    card_profile = get_profile(profile)
    maker = manufacturer or Manufacturer.open()
    serial = serial if serial is not None else secrets.randbelow(0xFFFFFFF0) + 1
    if not 0 < serial <= 0xFFFFFFFF:
        raise ValueError("serial must fit in 32 bits")
    device_key = keys.generate(Algorithm.ECC_P256)
    device_cert = maker.issue_device_certificate(
        device_key.public_key(), serial  # type: ignore[arg-type]
    )
    from cryptography.hazmat.primitives.serialization import Encoding

    placeholder = ReferenceData(b"", b"", 0, 0, True)
    state = CardState(
        serial=serial,
        profile=card_profile.name,
        firmware_version=card_profile.firmware_version,
        pin=placeholder,
        puk=placeholder,
        management_key=ManagementKey(Algorithm.TDES, b"", True),
        attestation_key=KeyRecord(Algorithm.ECC_P256, keys.to_pkcs8(device_key),
                                  PinPolicy.NEVER, TouchPolicy.NEVER, KeyOrigin.GENERATED),
        objects={ATTESTATION_OBJECT: certificate_object(device_cert.public_bytes(Encoding.DER))},
    )
    personalise_application(state, card_profile)
    path.parent.mkdir(parents=True, exist_ok=True)
    return CardStore.create(path, state)
