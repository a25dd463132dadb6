"""The portal's validation service (issue 16): any signed PDF in, the validation package's
report out (validation/: ETSI EN 319 102-1 indications, TS 119 172-4 qualification), as
JSON, as the TS 119 102-2 XML or as a PDF sealed by the portal (portal/seal.py).

The trusted lists are read once per process, on first use, in a thread (they may be
URLs). Validations are CPU-bound: they run in threads, at most `PARALLEL` at a time, so
that a burst of uploads never starves the signers' requests. Anonymous callers are
counted per client address in the portal's database (portal/throttle.py windows, so
several portal processes share the count), and so is the report each had of a file for
the few minutes it may fetch it again; the reports of the documents signed here are
kept a while in memory by their SHA-256 (a cache: any process can make them again).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import json
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from portal.config import PortalConfig
from portal.errors import VALIDATION_CODES, Code, PortalError
from portal.seal import load_seal
from portal.store import Store
from portal.throttle import Throttles
from validation import (
    FileReport,
    TrustedListConfigError,
    ValidationError,
    ValidationSettings,
    validate_pdf,
)
from validation.pdf_report import ReportSeal, to_pdf

log = logging.getLogger(__name__)

PARALLEL = 2  # validations at once per process (the machine's cores, not the requests)
UPLOADS = 8  # anonymous uploads held in memory at once per process (each <= max size)
WINDOW = dt.timedelta(hours=1)
CACHE_SIZE = 128
CACHE_SECONDS = 600.0  # revocation and trusted lists change: a report ages out
# An anonymous report is kept for its client this long, by the file's SHA-256, so that
# the page's XML and PDF buttons fetch it without sending (and counting) the file again.
RECENT = dt.timedelta(seconds=300)
BUSY_RETRY_S = 5  # what a caller refused for lack of an upload slot is told to wait


def client_bucket(address: str | None) -> str:
    """The rate-limit bucket of a client address: IPv6 by its /64 (one subscriber's
    network, RFC 6177), IPv4 by itself."""
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return "validations:addr:unknown"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return f"validations:addr:{ip.ipv4_mapped}"
        return f"validations:addr:{ipaddress.ip_network(f'{ip}/64', strict=False)}"
    return f"validations:addr:{ip}"


def forget_old_reports(store: Store) -> None:
    """Forget the reports kept for their clients longer than RECENT (the portal's
    sweeper; blocking)."""
    store.expire_validation_reports(store.clock() - RECENT)


@dataclass
class ValidationDesk:
    config: PortalConfig
    store: Store
    _settings: ValidationSettings | None = None
    _seal: ReportSeal | None = None
    _seal_loaded: bool = False
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(PARALLEL))
    # Held from an upload's first byte to its answer: memory stays under UPLOADS bodies.
    uploads: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(UPLOADS))
    _cache: OrderedDict[str, tuple[float, FileReport]] = field(default_factory=OrderedDict)

    @contextlib.asynccontextmanager
    async def upload_slot(self) -> AsyncIterator[None]:
        """One of the UPLOADS slots for an anonymous upload, or UNAVAILABLE (503, with
        retryAfter) at once when all are held: a waiting upload would hold its
        connection, and the caller's body, for as long as the slowest client."""
        if self.uploads.locked():
            raise PortalError(Code.UNAVAILABLE, "the validation service is busy: try again "
                              "in a moment", retryAfter=BUSY_RETRY_S)
        async with self.uploads:
            yield

    def remember(self, address: str | None, report: FileReport) -> None:
        """Keep `report` for its client (the rate-limit bucket) for RECENT, in the
        database: behind the load balancer the next call may reach another process
        (blocking). The portal's sweeper forgets it (`forget_old_reports`)."""
        try:
            self.store.keep_validation_report(client_bucket(address), report.sha256,
                                              json.dumps(report.stored()))
        except Exception:  # the report is made and counted: answer it all the same
            log.exception("validation: the report of %s could not be kept for its "
                          "client", report.sha256)

    def recent(self, address: str | None, sha256: str) -> FileReport:
        """The report this client had of the file `sha256` within RECENT, or NOT_FOUND
        (another client's report is not given: send the file) (blocking)."""
        kept = self.store.validation_report(client_bucket(address), sha256.lower(),
                                            self.store.clock() - RECENT)
        if kept is None:
            raise PortalError(Code.NOT_FOUND, "no recent report of this file for this "
                              "address: send the file again")
        return FileReport.from_stored(json.loads(kept))

    async def settings(self) -> ValidationSettings:
        """The trusted lists, read once (a list whose signature fails is kept as
        not used: its status says why)."""
        async with self._lock:
            if self._settings is None:
                chosen = self.config.validation
                try:
                    self._settings = await asyncio.to_thread(
                        ValidationSettings.load, list(chosen.trusted_lists),
                        operator_certs=list(chosen.operator_certs),
                        max_size=self.config.max_document_bytes,
                        use_expired_lists=chosen.use_expired_lists)
                except TrustedListConfigError as exc:  # a file missing: the operator's
                    log.error("validation: [validation] unusable: %s", exc)
                    raise PortalError(Code.UNAVAILABLE, "the validation service is not "
                                      "configured correctly") from None
                log.info("validation: %d trusted list(s), %d unusable",
                         len(self._settings.trusted_lists),
                         sum(not t.ok for t in self._settings.trusted_lists))
            return self._settings

    def admit(self, address: str | None) -> None:
        """Count one anonymous validation for `address`; RATE_LIMITED past the hourly
        allowance (blocking: the database)."""
        bucket, now = client_bucket(address), self.store.clock()
        allowed = self.config.validation.per_address_per_hour
        throttles = Throttles(self.store.db)
        with self.store.db.transaction() as cur:
            used, left = throttles.counted(cur, bucket, now, WINDOW)
            if used >= allowed:
                raise PortalError(Code.RATE_LIMITED,
                                  retryAfter=max(1, int(left.total_seconds() + 0.999)))
            throttles.count(cur, bucket, now, WINDOW)

    async def validate(self, data: bytes, name: str) -> FileReport:
        """The report of `data`, or the typed refusal of input that is no readable PDF."""
        settings = await self.settings()
        async with self._slots:
            try:
                return await asyncio.to_thread(validate_pdf, data, settings, name=name)
            except ValidationError as exc:
                raise PortalError(VALIDATION_CODES[exc.code], str(exc)) from None

    async def of_document(self, sha256: str, name: str,
                          load: Callable[[], Awaitable[bytes]]) -> FileReport:
        """The report of a document stored here (`load` reads it), kept CACHE_SECONDS by
        its SHA-256."""
        now = time.monotonic()
        found = self._cache.get(sha256)
        if found is not None and now - found[0] < CACHE_SECONDS:
            self._cache.move_to_end(sha256)
            return found[1]
        report = await self.validate(await load(), name)
        self._cache[sha256] = (now, report)
        while len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
        return report

    async def sealed_pdf(self, report: FileReport) -> bytes:
        """The report as a PDF, sealed by the portal when it has a seal."""
        if not self._seal_loaded:
            self._seal = await asyncio.to_thread(load_seal, self.config)
            self._seal_loaded = True
            if self._seal is None:
                log.warning("validation: no seal key and certificate: PDF reports are "
                            "not sealed (see portal/seal.py)")
        async with self._slots:
            return await asyncio.to_thread(to_pdf, report, self._seal)
