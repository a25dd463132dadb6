"""What a slot and the token in it say about themselves (CK_SLOT_INFO, CK_TOKEN_INFO;
PKCS#11 v2.40 §3.2)."""

from __future__ import annotations

from dataclasses import dataclass

from pkcs11.constants import SlotFlag, TokenFlag


@dataclass(frozen=True, slots=True)
class Pkcs11Slot:
    """A slot with a token present (CK_SLOT_INFO + CK_TOKEN_INFO)."""

    slot_id: int
    serial: str
    label: str
    manufacturer: str
    model: str
    flags: int  # CK_TOKEN_INFO.flags (pkcs11.TokenFlag)
    description: str  # CK_SLOT_INFO.slotDescription: the PC/SC reader name for OpenSC
    slot_flags: int  # CK_SLOT_INFO.flags (pkcs11.SlotFlag)

    @property
    def initialized(self) -> bool:
        return bool(self.flags & TokenFlag.TOKEN_INITIALIZED)

    @property
    def protected_authentication_path(self) -> bool:
        return bool(self.flags & TokenFlag.PROTECTED_AUTHENTICATION_PATH)

    @property
    def reader(self) -> str | None:
        """The reader's name, when the slot is a reader (hardware or removable device)."""
        return reader_name(self.description, self.slot_flags)


def reader_name(description: str, slot_flags: int) -> str | None:
    """OpenSC names a slot after its PC/SC reader and flags it CKF_HW_SLOT and
    CKF_REMOVABLE_DEVICE; a soft token's slot is neither."""
    if slot_flags & (SlotFlag.HW_SLOT | SlotFlag.REMOVABLE_DEVICE) and description.strip():
        return description.strip()
    return None


def serial_text(serial: bytes | str) -> str:
    """CK_TOKEN_INFO.serialNumber is blank-padded; some modules hand it over as bytes."""
    text = serial.decode("ascii", "replace") if isinstance(serial, bytes) else serial
    return text.strip()

