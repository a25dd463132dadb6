"""The identity service (portal/identity/) as the portal runs it: the reference service
unless a vendor's provider is given, mounted at `/api/identity/` without its identity and
evidence routes (the portal asks evidence itself, for the key of the signer it knows:
portal/routes/enrolment.py)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Protocol

from aiohttp import web

from portal.config import PortalConfig
from portal.identity.evidence import EvidenceSigner
from portal.identity.frames import FrameStore
from portal.identity.http import create_identity_app
from portal.identity.model import IdentityPolicy, IdentityProvider
from portal.identity.service import ReferenceIdentityService
from portal.identity.sessions import SessionStore

PREFIX = "/api/identity/"


class IdentityStore(SessionStore, FrameStore, Protocol):
    """Where the portal keeps the identity service's sessions and liveness frames."""


def reference_identity(config: PortalConfig, clock: Callable[[], dt.datetime],
                       store: IdentityStore | None = None) -> IdentityProvider:
    """The reference identity service, its evidence key in `<state>/identity`, its
    sessions and the frames it accepted in `store` (the portal's database: a restart and
    every other portal process on it know them)."""
    return ReferenceIdentityService(
        EvidenceSigner.open(config.state_dir / "identity"),
        config.identity_policy
        or IdentityPolicy(accept_specimens=config.identity_accept_specimens), clock=clock,
        sessions=store, frames=store)


def mount_identity(app: web.Application, identity: IdentityProvider,
                   config: PortalConfig) -> None:
    """The session id travels in the hand-off QR code: whoever saw it could otherwise ask
    evidence for their own key first, hence `evidence_routes=False`."""
    app.add_subapp(PREFIX, create_identity_app(
        identity, continue_url=f"{config.base_url}/id/{{session}}", evidence_routes=False))
