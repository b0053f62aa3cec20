from django.conf import settings
from django.urls import path

from liveroom.consumers import RoomConsumer, RoomsConsumer, StockRoomConsumer

# The stock consumer is kept for comparison (python -m bench.fanout --compare).
room_consumer = RoomConsumer if settings.LIVEROOM_FAST_FORWARD else StockRoomConsumer

websocket_urlpatterns = [
    path("ws/room/", room_consumer.as_asgi(), name="room-socket"),
    path("ws/room/<slug:slug>/", room_consumer.as_asgi(), name="room-socket"),
    path("ws/rooms/", RoomsConsumer.as_asgi(), name="rooms-socket"),
]
