"""E-mail reminders (portal/API.md "Transaction parameters", `reminderDays`): a periodic
task in each portal process finds the invited signers whose next reminder is due in the
store, claims each with an UPDATE that only one process can win (the next reminder moved
on only if it still is the value read), and queues the reminder mail. The first look
at a newly invited signer only schedules their first reminder."""

from __future__ import annotations

import asyncio
import logging

from portal.routes.state import Portal

log = logging.getLogger(__name__)

EVERY = 60.0  # seconds between looks


async def send_reminders(portal: Portal) -> int:
    """One look: how many reminders this process sent."""
    sent = 0
    for signer_id, seen, days in await asyncio.to_thread(portal.store.reminders_due):
        if not await asyncio.to_thread(portal.store.claim_reminder, signer_id, seen, days):
            continue  # another process claimed it
        if seen is None:
            continue  # scheduled only
        tx = await asyncio.to_thread(portal.store.transaction_of_signer, signer_id)
        signer = tx.signer(signer_id)
        await portal.signer_mail(tx, signer, "reminder", name=signer.name or signer.email,
                                 requester=tx.requester_name, title=tx.title,
                                 expires=tx.expires_at.strftime("%Y-%m-%d %H:%M UTC"),
                                 url=portal.invite_url(tx, signer))
        log.info("reminder sent to signer %s of transaction %s", signer_id, tx.id)
        sent += 1
    return sent


async def reminders(portal: Portal, every: float = EVERY) -> None:
    while True:
        try:
            await send_reminders(portal)
        except Exception:
            log.exception("reminders failed")
        await asyncio.sleep(every)
