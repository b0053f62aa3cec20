from django.contrib import admin
from django.urls import path
from django.views.i18n import set_language

from liveroom import health
from liveroom.admin import admin_login
from liveroom.rooms import views

urlpatterns = [
    path("", views.index, name="index"),
    path("room/", views.room, name="room"),
    path("room/join/", views.join, name="join"),
    path("room/leave/", views.leave, name="leave"),
    path("room/hand/", views.hand, name="hand"),
    path("room/live/", views.live, name="live"),
    path("room/<slug:slug>/", views.room, name="room"),
    path("room/<slug:slug>/join/", views.join, name="join"),
    path("room/<slug:slug>/leave/", views.leave, name="leave"),
    path("room/<slug:slug>/hand/", views.hand, name="hand"),
    path("room/<slug:slug>/live/", views.live, name="live"),
    path("rooms/", views.rooms, name="rooms"),
    path("language/", set_language, name="set_language"),
    path("admin/login/", admin_login),  # before the admin's own: password guessing is refused
    path("admin/", admin.site.urls),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
]
