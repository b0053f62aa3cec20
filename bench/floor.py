"""The floor under an arrival: liveroom's server and Django with an application that does nothing.

    python -m liveroom.server bench.floor:application     (what `bench.arrival --floor` starts)

The same arrival contract as liveroom's (a join form with its CSRF token, a POST answered with
a redirect to the room page, a room page naming its socket, a first message on that socket), on
the same stack liveroom runs (`python -m liveroom.server`: daphne, Twisted and autobahn;
liveroom's settings and middleware; its one-thread ASGI handler; a Channels consumer), with no
work of its own: no database (sessions in a signed cookie), no live core, no templates, nothing
sent to anyone else. What an arrival costs here is what the stack costs before liveroom does
anything; `bench.arrival --floor` runs it in the same invocation.

This module is the application's settings, URLconf and ASGI application at once: daphne
imports it by its import path, and it points Django at itself.
"""

import os

import django
from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import get_token
from django.shortcuts import redirect
from django.urls import path
from django.utils.html import format_html
from django.views.decorators.http import require_GET, require_http_methods

from liveroom.settings import *  # noqa: F403 (liveroom's settings, and the overrides below)

ROOT_URLCONF = __name__
SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"
os.environ["DJANGO_SETTINGS_MODULE"] = __name__
django.setup(set_prefix=False)

from channels.generic.websocket import AsyncWebsocketConsumer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from liveroom.handler import OneThreadASGIHandler  # noqa: E402

SOCKET_PATH = "/ws/floor/"


@require_http_methods(["GET", "POST"])
def join(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        request.session["name"] = request.POST.get("name", "")
        return redirect("/room/")
    return HttpResponse(
        '<form method="post" action="/room/join/"><input type="hidden" '
        f'name="csrfmiddlewaretoken" value="{get_token(request)}"><input name="name"></form>'
    )


@require_GET
def room(request: HttpRequest) -> HttpResponse:
    name = request.session.get("name", "")
    return HttpResponse(format_html('<div hx-ext="ws" ws-connect="{}">{}</div>', SOCKET_PATH, name))


@require_GET
def ready(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok", content_type="text/plain")


urlpatterns = [
    path("room/join/", join),
    path("room/", room),
    path("readyz", ready),
]


class FloorConsumer(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        await self.accept()
        await self.send(text_data='<div id="members" hx-swap-oob="true"></div>')


application = ProtocolTypeRouter(
    {
        "http": OneThreadASGIHandler(),
        "websocket": AllowedHostsOriginValidator(
            URLRouter([path(SOCKET_PATH.strip("/") + "/", FloorConsumer.as_asgi())])
        ),
    }
)
