"""Probes for a proxy or an orchestrator, cheap enough to poll every second.

- /healthz: the process answers. Nothing else is touched: no database, no Redis, no session.
- /readyz: the process should get traffic: it is not draining (SIGTERM came; liveroom's daphne
  says so in the scope), and the database (and Redis, when configured) answer within
  LIVEROOM_READY_TIMEOUT seconds. 503 otherwise, with the reason in the body.

Both are async views: they take no turn in the threads that serve the site's requests. Their
successful answers stay out of the access log (liveroom/server/).
"""

import asyncio
import logging

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from redis import asyncio as aioredis

from liveroom.wire import STATUS_EXTENSION

logger = logging.getLogger(__name__)


def answer(status: int, text: str) -> HttpResponse:
    return HttpResponse(f"{text}\n", status=status, content_type="text/plain; charset=utf-8")


@never_cache
@require_GET
async def healthz(request: HttpRequest) -> HttpResponse:
    return answer(200, "ok")


@never_cache
@require_GET
async def readyz(request: HttpRequest) -> HttpResponse:
    server = getattr(request, "scope", {}).get("extensions", {}).get(STATUS_EXTENSION)
    if server is not None and server.draining:
        return answer(503, "draining")
    timeout = settings.LIVEROOM_READY_TIMEOUT
    checks = {"database": database_answers()}
    if settings.REDIS_URL:
        checks["redis"] = redis_answers(settings.REDIS_URL)
    results = await asyncio.gather(
        *(asyncio.wait_for(check, timeout) for check in checks.values()), return_exceptions=True
    )
    failed = [
        f"{name}: {type(result).__name__} {result}".strip()
        for name, result in zip(checks, results, strict=True)
        if isinstance(result, BaseException)
    ]
    if failed:
        return answer(503, "not ready\n" + "\n".join(failed))
    return answer(200, "ready")


async def database_answers() -> None:
    await sync_to_async(select_one, thread_sensitive=False)()


def select_one() -> None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    finally:
        connection.close()  # this thread is not a request's: give the connection back now


async def redis_answers(url: str) -> None:
    client = aioredis.from_url(url, socket_connect_timeout=settings.LIVEROOM_READY_TIMEOUT)
    try:
        await client.ping()
    finally:
        await client.aclose()
