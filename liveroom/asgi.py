"""Wiring: Django for HTTP (its room messages sent after each response), the live consumers for
WebSockets. Served by `python -m liveroom.server` (liveroom/server/)."""

import os

import django
from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.handlers.asgi import ASGIHandler
from django.http import HttpRequest, HttpResponseBase

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "liveroom.settings")
if settings.SECRET_KEY_MISSING:
    raise ImproperlyConfigured(
        "SECRET_KEY is not set. Set SECRET_KEY to a long random value, "
        "or set DEBUG=1 for local development."
    )


class OneThreadASGIHandler(ASGIHandler):
    """Django's ASGI handler, running each request in its thread once, middleware to view.

    Every middleware here is synchronous, and so are the pages' views. Django's own handler
    would go to a thread for the middleware, come back to the event loop after them, and go to
    the thread again for the view: on every request, two more waits for a busy loop's turn and
    the CPU of the switches (docs/performance.md, arrival). This one loads the middleware as a
    WSGI handler would and runs Django's synchronous `get_response` in the request's thread; an
    async view (the probes) is run by Django from that thread. Django's version is pinned
    (requirements.txt); tests/test_asgi.py checks that a request makes no second hop.
    """

    def load_middleware(self, is_async: bool = False) -> None:
        super().load_middleware(is_async=False)

    async def get_response_async(self, request: HttpRequest) -> HttpResponseBase:
        return await sync_to_async(self.get_response, thread_sensitive=True)(request)


# Set up Django (apps, settings) before importing anything that touches models.
django.setup(set_prefix=False)
django_asgi_app = OneThreadASGIHandler()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from liveroom.live.after_response import sending_after_response  # noqa: E402
from liveroom.live.single_process import warn_if_sharing_the_in_memory_layer  # noqa: E402
from liveroom.routing import websocket_urlpatterns  # noqa: E402

warn_if_sharing_the_in_memory_layer()

application = ProtocolTypeRouter(
    {
        "http": sending_after_response(django_asgi_app),
        # No session middleware: room pages read their session key from the cookie themselves.
        "websocket": AllowedHostsOriginValidator(URLRouter(websocket_urlpatterns)),
    }
)
