from django.urls import path, re_path

from liveroom.live.consumers import RoomConsumer, RoomsConsumer, UnknownPath

websocket_urlpatterns = [
    path("ws/room/", RoomConsumer.as_asgi(), name="room-socket"),
    path("ws/room/<slug:slug>/", RoomConsumer.as_asgi(), name="room-socket"),
    path("ws/rooms/", RoomsConsumer.as_asgi(), name="rooms-socket"),
    re_path(r"", UnknownPath.as_asgi()),  # anything else: refused, without a traceback
]
