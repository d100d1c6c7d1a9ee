"""What operators and their machines ask a process: alive, ready, metrics.

- ``/healthz``: liveness. Answers ``{"status": "ok"}`` while the process serves HTTP,
  whatever its database or Redis do (restarting a process does not fix them).
- ``/readyz``: readiness. Checks the database (a trivial query) and the channel layer
  (a send and receive on a fresh channel); 200 when both answer, else 503 naming the
  part that does not, so a proxy or an orchestrator sends no traffic there.
- ``/metrics``: Prometheus' text format, with a bearer token (:mod:`maps.telemetry.metrics`).

None of them says anything about rooms or people. Both probes are exempt from the
HTTPS redirect (``SECURE_REDIRECT_EXEMPT``), so a container or proxy health check on
plain HTTP works; like every request they need a ``Host`` in ``ALLOWED_HOSTS``
(``python -m geoshare.probe`` sends one).
"""

import asyncio
import logging
import uuid

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection
from django.http import Http404, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from maps.telemetry import metrics

log = logging.getLogger(__name__)

#: Seconds each readiness check may take before it counts as failed.
CHECK_TIMEOUT_S = 2.0


@never_cache
@require_safe
def healthz(request):
    """Liveness: ``{"status": "ok"}`` (200) while the process answers at all."""
    return JsonResponse({"status": "ok"})


def _database_ok():
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        return cursor.fetchone() == (1,)


# Off the one thread that serves the ORM for the async code (thread_sensitive=False):
# the probe measures the database, not the queue of work waiting for that thread, so a
# busy process does not flap out of its proxy's rotation.
_database_query = database_sync_to_async(_database_ok, thread_sensitive=False)


async def check_database():
    """Return ``"ok"``, or ``"unavailable"`` when ``SELECT 1`` fails or takes longer
    than :data:`CHECK_TIMEOUT_S`."""
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_S):
            if await _database_query():
                return "ok"
    except Exception as exc:  # OperationalError, TimeoutError
        log.warning("readyz: database check failed: %s", type(exc).__name__)
    return "unavailable"


async def _forget_channel(layer, channel):
    # channels_redis' pub/sub layer unsubscribes a channel when a receive on it is
    # cancelled (it has no call to delete a channel); the in-memory layer drops the
    # channel's empty queue. Without this every probe would leave a subscription.
    receiving = asyncio.ensure_future(layer.receive(channel))
    await asyncio.sleep(0)
    receiving.cancel()
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_S):
            await receiving
    except (asyncio.CancelledError, Exception):
        pass


async def check_channel_layer():
    """Return ``"ok"`` when a message sent to a fresh channel comes back within
    :data:`CHECK_TIMEOUT_S`, else ``"unavailable"``."""
    layer = get_channel_layer()
    nonce = uuid.uuid4().hex
    channel = None
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_S):
            channel = await layer.new_channel("readyz.")
            await layer.send(channel, {"type": "readyz.ping", "nonce": nonce})
            message = await layer.receive(channel)
        if message.get("nonce") == nonce:
            return "ok"
    except Exception as exc:  # ConnectionError, TimeoutError
        log.warning("readyz: channel layer check failed: %s", type(exc).__name__)
    finally:
        if channel is not None:
            await _forget_channel(layer, channel)
    return "unavailable"


@never_cache
@require_safe
async def readyz(request):
    """Readiness: 200 ``{"status": "ok", "checks": {"database": "ok", "channel_layer":
    "ok"}}``, or 503 with ``"status": "unavailable"`` and the failing check(s) marked
    ``"unavailable"``. Takes at most about :data:`CHECK_TIMEOUT_S` seconds."""
    database, layer = await asyncio.gather(check_database(), check_channel_layer())
    checks = {"database": database, "channel_layer": layer}
    ready = all(value == "ok" for value in checks.values())
    return JsonResponse({"status": "ok" if ready else "unavailable", "checks": checks},
                        status=200 if ready else 503)


@never_cache
@require_safe
def metrics_view(request):
    """Prometheus metrics of this process, for ``Authorization: Bearer <token>``.

    404 unless ``GEOSHARE_METRICS_TOKEN`` is set (the metrics may be served only on
    ``GEOSHARE_METRICS_PORT``, or not at all); 401 with ``WWW-Authenticate: Bearer``
    for a missing or wrong token.
    """
    token = settings.GEOSHARE["METRICS_TOKEN"]
    if not token:
        raise Http404("metrics are not served here")
    if not metrics.token_matches(request.headers.get("Authorization"), token):
        return HttpResponse("a bearer token is required\n", status=401,
                            content_type="text/plain",
                            headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
    body, content_type = metrics.exposition()
    return HttpResponse(body, content_type=content_type)
