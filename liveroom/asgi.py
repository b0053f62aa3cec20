"""Wiring: Django for HTTP (its room messages sent after each response), the live consumers for
WebSockets. Served by `python -m liveroom.server` (liveroom/server/)."""

import os

import django
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from liveroom.handler import OneThreadASGIHandler

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "liveroom.settings")
if settings.SECRET_KEY_MISSING:
    raise ImproperlyConfigured(
        "SECRET_KEY is not set. Set SECRET_KEY to a long random value, "
        "or set DEBUG=1 for local development."
    )

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
