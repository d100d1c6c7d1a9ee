"""Work the service does on a schedule, inside its own process: pruning old positions.

Started by the ASGI lifespan (geoshare.asgi) and stopped with it. Every
``GEOSHARE["PRUNE_EVERY_S"]`` seconds it runs :func:`maps.services.positions_prune`,
which deletes positions past their room's retention in short batches and tells the
rooms' hubs to drop live positions past it, so no cron job is needed (``manage.py
prune`` stays for operators). It also writes down shares whose end time passed. Several
processes may each run it: both are idempotent.
"""

import asyncio
import logging

from channels.db import database_sync_to_async
from django.conf import settings

from maps.services import positions_prune, shares_expire

log = logging.getLogger(__name__)


async def prune_once():
    """Prune now; return how many positions were deleted (errors logged, not raised).

    Shares whose end time passed are written down as ended first (their live
    positions go with them).
    """
    try:
        await database_sync_to_async(shares_expire)()
        return await database_sync_to_async(positions_prune)()
    except Exception:
        log.exception("maintenance: prune failed; will retry")
        return 0


# The first prune waits this long after the start (or ``PRUNE_EVERY_S``, when shorter):
# a restart is when every client reconnects at once, and the prune's work per room
# competed with their handshakes (a tenth of the server's samples in make bench's
# reconnect storm). Hubs that start meanwhile skip positions past retention themselves.
FIRST_PRUNE_AFTER_S = 60


async def maintenance_loop():
    """Prune :data:`FIRST_PRUNE_AFTER_S` after the start and then every
    ``PRUNE_EVERY_S`` seconds, until cancelled."""
    await asyncio.sleep(min(FIRST_PRUNE_AFTER_S, settings.GEOSHARE["PRUNE_EVERY_S"]))
    while True:
        deleted = await prune_once()
        if deleted:
            log.info("maintenance: pruned %d positions past their retention", deleted)
        await asyncio.sleep(settings.GEOSHARE["PRUNE_EVERY_S"])
