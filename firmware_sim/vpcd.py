"""The card in a reader: a client of vsmartcard's vpcd driver inside pcscd.

vpcd listens on TCP (35963 for "Virtual PCD 00 00"); the virtual card
connects. Every message is a 2-byte big-endian length then the payload. A
1-byte payload is a control code (power off/on, reset, ATR request); anything
else is a command APDU, answered by a response APDU. While the TCP link is up
pcscd sees a card in the reader; dropping it is a card removal.
"""

from __future__ import annotations

import logging
import socket
import struct
import threading
import time
from enum import IntEnum

from firmware_sim.card import SimulatedCard

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 35963
_RECONNECT_DELAY = 0.2


class Control(IntEnum):
    POWER_OFF = 0x00
    POWER_ON = 0x01
    RESET = 0x02
    GET_ATR = 0x04


class LinkClosed(Exception):
    pass


class VpcdLink:
    """Keeps `card` plugged into the vpcd reader at host:port until stopped.

    Reconnects by itself when pcscd restarts. `remove()` / `insert()` pull and
    push the card; `latency` adds a delay to every APDU (fault injection).
    """

    def __init__(self, card: SimulatedCard, host: str = DEFAULT_HOST,
                 port: int = DEFAULT_PORT) -> None:
        self.card = card
        self.host = host
        self.port = port
        self.latency = 0.0
        self.apdu_count = 0
        self._inserted = threading.Event()
        self._inserted.set()
        self._stop = threading.Event()
        self._sock: socket.socket | None = None
        self._sock_lock = threading.Lock()
        self.connected = threading.Event()

    # Fault injection ---------------------------------------------------------

    def remove(self) -> None:
        """Pull the card out of the reader: close the link and stay out."""
        self._inserted.clear()
        self._drop()

    def insert(self) -> None:
        self._inserted.set()

    @property
    def inserted(self) -> bool:
        return self._inserted.is_set()

    def stop(self) -> None:
        self._stop.set()
        self._inserted.set()
        self._drop()

    def _drop(self) -> None:
        with self._sock_lock:
            sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                log.debug("link already closed")

    # The link ------------------------------------------------------------------

    def serve_forever(self) -> None:
        announced_wait = False
        while not self._stop.is_set():
            if not self._inserted.is_set():
                self._inserted.wait()
                continue
            try:
                sock = socket.create_connection((self.host, self.port), timeout=2.0)
            except OSError as exc:
                if not announced_wait:
                    log.warning("vpcd at %s:%d not reachable (%s); retrying", self.host,
                                self.port, exc)
                    announced_wait = True
                self._stop.wait(_RECONNECT_DELAY)
                continue
            announced_wait = False
            sock.settimeout(None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._sock_lock:
                self._sock = sock
            if not self._inserted.is_set() or self._stop.is_set():
                self._close(sock)
                continue
            log.info("card %d inserted in vpcd reader %s:%d", self.card.serial, self.host,
                     self.port)
            self.connected.set()
            try:
                self._serve(sock)
            except (LinkClosed, OSError) as exc:
                log.info("vpcd link closed: %s", exc)
            finally:
                self.connected.clear()
                self._close(sock)
                self.card.power_off()
            self._stop.wait(_RECONNECT_DELAY if self._inserted.is_set() else 0)

    def _close(self, sock: socket.socket) -> None:
        with self._sock_lock:
            if self._sock is sock:
                self._sock = None
        sock.close()

    def _serve(self, sock: socket.socket) -> None:
        while True:
            message = _receive(sock)
            if len(message) == 1:
                self._control(sock, message[0])
                continue
            if self.latency:
                time.sleep(self.latency)
            response = self.card.transmit(message)
            self.apdu_count += 1
            _send(sock, response)

    def _control(self, sock: socket.socket, code: int) -> None:
        if code == Control.POWER_OFF:
            self.card.power_off()
        elif code == Control.POWER_ON:
            self.card.power_on()
        elif code == Control.RESET:
            self.card.reset()
        elif code == Control.GET_ATR:
            _send(sock, self.card.atr)
        else:
            log.warning("unknown vpcd control code 0x%02X", code)


def _receive_exact(sock: socket.socket, n: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < n:
        chunk = sock.recv(n - len(chunks))
        if not chunk:
            raise LinkClosed("vpcd closed the connection")
        chunks += chunk
    # Delayed ACKs would hold each answer ~40 ms; quick-ack must be re-armed per read.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
    return bytes(chunks)


def _receive(sock: socket.socket) -> bytes:
    (length,) = struct.unpack(">H", _receive_exact(sock, 2))
    return _receive_exact(sock, length) if length else b""


def _send(sock: socket.socket, payload: bytes) -> None:
    sock.sendall(struct.pack(">H", len(payload)) + payload)
