"""The signature service over HTTP (portal/API.md): `create_app(config)` and the route
table, by audience. The handlers are in portal/routes/ (its docstring maps the modules);
the domain they call is the rest of portal/."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from portal import audit
from portal.blobs import BlobStore
from portal.config import PortalConfig
from portal.enrolment import EnrolmentDesk
from portal.identity.model import IdentityProvider
from portal.links import LinkSigner
from portal.mail import Mailer
from portal.otp import OutboxGateway, SmsGateway, SmsOtp
from portal.routes import accounts, advanced, agent_sms, enrolment, pages, requester, signer, space
from portal.routes.access import SESSION_IDLE, accounts_of
from portal.routes.console import add_routes as add_console_routes
from portal.routes.identity import mount_identity, reference_identity
from portal.routes.identity_documents import (
    signer_identity_documents,
    workspace_identity_documents,
)
from portal.routes.middleware import middlewares
from portal.routes.start import SAMPLE_PATH, sample_pdf, start_facts
from portal.routes.state import PORTAL, Portal, requester_token
from portal.routes.validations import (
    VALIDATION,
    create_validation,
    recent_validation,
    requester_validation,
    space_validation,
)
from portal.signing import SigningDesk
from portal.store import SignerStatus, Store, Transaction
from portal.validating import ValidationDesk, forget_old_reports
from portal.webhooks import WebhookDesk

__all__ = ["create_app", "setup_routes", "sweep_expired"]

log = logging.getLogger(__name__)


def setup_routes(app: web.Application) -> None:
    r = app.router
    # The requester (bearer token), the testers' outbox, the API's description.
    r.add_post("/api/v1/transactions", requester.create_transaction)
    r.add_get("/api/v1/transactions", requester.list_transactions)
    r.add_get("/api/v1/transactions/{id}", requester.get_transaction)
    r.add_get("/api/v1/transactions/{id}/documents/{doc}", requester.requester_document)
    r.add_route("*", "/api/v1/transactions/{id}/messages", requester.requester_messages)
    r.add_get("/api/v1/outbox", requester.outbox)
    r.add_get("/api/v1/openapi.json", requester.openapi)
    # The service administrator's master console; a workspace's accepted ID documents.
    add_console_routes(r)
    r.add_get("/api/v1/workspaces/{ws}/identity-documents", workspace_identity_documents)
    r.add_put("/api/v1/workspaces/{ws}/identity-documents", workspace_identity_documents)
    # Requesters' accounts and workspaces (session cookie or API token).
    accounts.add_routes(r)
    # A workspace's templates, bulk sends and webhooks; cancel, resend, replace a signer.
    advanced.add_routes(r)
    # The signers' agents (their credential).
    r.add_post("/api/v1/sms-otp/send", agent_sms.sms_otp_send)
    r.add_post("/api/v1/sms-otp/verify", agent_sms.sms_otp_verify)
    # The signer (the invitation link).
    r.add_get("/api/s/{invite}", signer.signer_get)
    r.add_post("/api/s/{invite}/consents", signer.signer_consents)
    r.add_get("/api/s/{invite}/documents/{doc}/pages/{n:[0-9]+}.png",
              signer.signer_page_image)
    r.add_get("/api/s/{invite}/documents/{doc}/download", signer.signer_download)
    r.add_get("/api/s/{invite}/documents.zip", signer.signer_zip)
    r.add_get("/api/s/{invite}/signed.zip", signer.signer_signed_zip)
    r.add_post("/api/s/{invite}/accept", signer.signer_accept)
    r.add_post("/api/s/{invite}/restart", signer.signer_restart)
    r.add_post("/api/s/{invite}/refuse", signer.signer_refuse)
    r.add_route("*", "/api/s/{invite}/messages", signer.signer_messages)
    r.add_post("/api/s/{invite}/certificates/check", signer.signer_check_certificate)
    r.add_post("/api/s/{invite}/sign/prepare", signer.signer_prepare)
    r.add_post("/api/s/{invite}/sign/complete", signer.signer_complete)
    r.add_post("/api/s/{invite}/enrolment/{step}", enrolment.signer_enrolment)
    r.add_get("/api/s/{invite}/identity-documents", signer_identity_documents)
    # Personal Space (the e-mailed link, then a session).
    r.add_post("/api/me/{space}/otp", space.space_otp)
    r.add_post("/api/me/{space}/session", space.space_session)
    r.add_get("/api/me", space.space_get)
    r.add_get("/api/me/documents/{tx}/{doc}", space.space_document)
    # The validation service (anyone; the requester's and the signers' documents).
    r.add_post("/api/v1/validations", create_validation)
    r.add_get("/api/v1/validations/{sha256}", recent_validation)
    r.add_get("/api/v1/transactions/{id}/documents/{doc}/validation", requester_validation)
    r.add_get("/api/me/documents/{tx}/{doc}/validation", space_validation)
    # What a browser opens.
    for path, template in pages.PAGES.items():
        r.add_get(path, pages.page(template))
    r.add_get("/legal/{kind}/{version}", pages.legal_text)
    r.add_get("/static/{path:.+}", pages.static)
    r.add_get("/favicon.ico", pages.favicon)
    r.add_get("/health", pages.health)
    r.add_get("/api/v1/start", start_facts)  # the getting-started page
    r.add_get(SAMPLE_PATH, sample_pdf)
    # Last: every /api/v1/transactions... route also under a workspace (issue 15).
    accounts.mirror_transaction_routes(r)


def create_app(config: PortalConfig, *, store: Store | None = None,
               gateway: SmsGateway | None = None,
               identity: IdentityProvider | None = None) -> web.Application:
    config.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    store = store or Store.open(config.database_url, config.state_dir)
    blobs = BlobStore(config.state_dir / "documents")
    otp = SmsOtp.from_state(store, gateway or OutboxGateway(store), config.state_dir)
    mailer = Mailer(store, config)
    desk = SigningDesk(config, store, blobs, otp)
    identity = identity or reference_identity(config, store.clock, store)
    portal = Portal(config=config, store=store, blobs=blobs,
                    links=LinkSigner.from_state(config.state_dir), otp=otp, mailer=mailer,
                    desk=desk, enrolment=EnrolmentDesk(store, identity, desk.check, otp),
                    requester_token=requester_token(config.state_dir),
                    webhooks=WebhookDesk(store, config.webhook_url_prefixes, dt.timedelta(
                        seconds=config.webhook_retry_seconds)))
    app = web.Application(middlewares=middlewares(config),
                          client_max_size=config.max_request_bytes)
    app[PORTAL] = portal
    app[VALIDATION] = ValidationDesk(config, store)
    pages.setup_templates(app)
    setup_routes(app)

    async def background(app: web.Application) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(mailer.run(), name="mailer"),
                 asyncio.create_task(_sweeper(portal), name="sweeper"),
                 asyncio.create_task(audit.keep_anchoring(
                     store.db, config.state_dir / audit.ANCHOR_FILE), name="audit-anchor"),
                 *(asyncio.create_task(work, name=name)
                   for name, work in advanced.background(portal))]
        yield
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await asyncio.to_thread(store.close)

    app.cleanup_ctx.append(background)
    mount_identity(app, identity, config)
    return app


async def sweep_expired(portal: Portal) -> list[Transaction]:
    """Close the open transactions whose expiry passed and tell their requesters."""
    expired = await asyncio.to_thread(portal.store.expire_due)
    for tx in expired:
        log.info("transaction %s expired", tx.id)
        signed = [s.name or s.email for s in tx.signers if s.status is SignerStatus.SIGNED]
        await portal.mail_requester(tx, "expired", title=tx.title,
                                    signed=", ".join(signed) or "nobody")
        await portal.webhooks.emit(tx, "expired")
    return expired


async def _sweeper(portal: Portal, every: float = 60) -> None:
    while True:
        try:
            await sweep_expired(portal)
            await asyncio.to_thread(accounts_of(portal).purge_expired, SESSION_IDLE)
            await asyncio.to_thread(forget_old_reports, portal.store)
        except Exception:
            log.exception("expiry sweep failed")
        await asyncio.sleep(every)
