from django.urls import path

from liveroom.live.consumers import RoomConsumer, RoomsConsumer

websocket_urlpatterns = [
    path("ws/room/", RoomConsumer.as_asgi(), name="room-socket"),
    path("ws/room/<slug:slug>/", RoomConsumer.as_asgi(), name="room-socket"),
    path("ws/rooms/", RoomsConsumer.as_asgi(), name="rooms-socket"),
]
