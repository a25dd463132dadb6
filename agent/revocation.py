"""What an origin loses with the agent's trust (SECURITY #37): its unspent SADs and
its idempotent replays, in one transaction of the journal's file.

Both the running agent (when it sees that an origin is no longer allowed) and the
`qsign agent origins --revoke` process (at once, before the agent notices) call
`void_origin`; doing it twice is harmless.
"""

from __future__ import annotations

from pathlib import Path

from agent.journal import SignatureJournal
from agent.policy import SadIssuer


def void_origin(journal: SignatureJournal, sads: SadIssuer, origin: str) -> int:
    """Void `origin`'s unspent SADs and forget its replays; answers the SADs voided."""
    with journal.db.transaction() as cur:
        voided = sads.void_origin(origin, cur=cur)
        journal.forget_replays(origin, cur=cur)
    return voided


def void_origin_in(state_dir: Path, origin: str) -> int:
    """`void_origin` on the journal of the agent whose state directory is `state_dir`
    (another process than the agent: SQLite's write lock serialises the two)."""
    journal = SignatureJournal(state_dir)
    try:
        return void_origin(journal, SadIssuer(journal.db), origin)
    finally:
        journal.close()
