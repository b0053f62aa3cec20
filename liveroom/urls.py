from django.contrib import admin
from django.urls import path

from liveroom import health
from liveroom.admin import admin_login
from liveroom.rooms import views

urlpatterns = [
    path("", views.index, name="index"),
    path("room/", views.room, name="room"),
    path("room/join/", views.join, name="join"),
    path("room/leave/", views.leave, name="leave"),
    path("room/hand/", views.hand, name="hand"),
    path("room/<slug:slug>/", views.room, name="room"),
    path("room/<slug:slug>/join/", views.join, name="join"),
    path("room/<slug:slug>/leave/", views.leave, name="leave"),
    path("room/<slug:slug>/hand/", views.hand, name="hand"),
    path("rooms/", views.rooms, name="rooms"),
    path("admin/login/", admin_login),  # before the admin's own: password guessing is refused
    path("admin/", admin.site.urls),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
]
