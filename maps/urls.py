"""HTTP routes of the maps app."""

from django.urls import path

from . import phone_views, probes, views
from .ingest import views as ingest

urlpatterns = [
    path("", views.home, name="home"),
    path("join/<str:token>/", views.join, name="join"),
    path("r/<str:room_id>/", views.room_map, name="room_map"),
    path("r/<str:room_id>/manage/", views.room_manage, name="room_manage"),
    path("r/<str:room_id>/leave/", views.room_leave, name="room_leave"),
    path("r/<str:room_id>/connect/", phone_views.connect_phone, name="connect_phone"),
    path("ingest/owntracks/", ingest.owntracks_view, name="ingest_owntracks"),
    path("ingest/osmand/", ingest.osmand_view, name="ingest_osmand"),
    path("ingest/gpslogger/<str:key>/", ingest.gpslogger_view, name="ingest_gpslogger"),
    path("healthz", probes.healthz, name="healthz"),
    path("readyz", probes.readyz, name="readyz"),
    path("metrics", probes.metrics_view, name="metrics"),
]
