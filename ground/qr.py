"""QR codes as PNG images, for what a phone is to scan: the agent's TOTP enrolment
(otpauth:// URI) and the portal's identity hand-off link."""

from __future__ import annotations

import io

import qrcode
import qrcode.constants


def qr_png(text: str) -> bytes:
    """`text` as a QR code (ISO/IEC 18004, error correction level M, 4-module quiet zone)."""
    qr = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, box_size=8,
                       border=4)
    qr.add_data(text)
    qr.make(fit=True)
    out = io.BytesIO()
    qr.make_image().save(out)
    return out.getvalue()
