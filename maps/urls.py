"""HTTP routes of the maps app."""

from django.urls import path

from maps.ingest import views as ingest
from maps.ops import probes
from maps.web import (
    api_views,
    phone_views,
    place_views,
    signin_views,
    views,
    watch_views,
)

urlpatterns = [
    path("", views.home, name="home"),
    path("favicon.ico", views.favicon, name="favicon"),
    path("join/<str:token>/", views.join, name="join"),
    path("r/<str:room_id>/", views.room_map, name="room_map"),
    path("r/<str:room_id>/manage/", views.room_manage, name="room_manage"),
    path("r/<str:room_id>/leave/", views.room_leave, name="room_leave"),
    path("r/<str:room_id>/connect/", phone_views.connect_phone, name="connect_phone"),
    path("r/<str:room_id>/other-device/", signin_views.other_device, name="other_device"),
    path("signin/<str:token>/", signin_views.signin, name="signin"),
    path("setup/<str:token>/", phone_views.phone_setup, name="phone_setup"),
    path("r/<str:room_id>/watch-links/", watch_views.watch_links, name="watch_links"),
    path("r/<str:room_id>/watch-links/<int:link_id>/revoke/",
         watch_views.watch_link_revoke, name="watch_link_revoke"),
    path("w/<str:token>/", watch_views.watch_page, name="watch_page"),
    path("r/<str:room_id>/export.gpx", api_views.export_gpx, name="export_gpx"),
    path("r/<str:room_id>/export.geojson", api_views.export_geojson,
         name="export_geojson"),
    path("api/rooms/<str:room_id>/track", api_views.track, name="api_track"),
    path("api/rooms/<str:room_id>/history", api_views.history, name="api_history"),
    path("api/rooms/<str:room_id>/places", place_views.places, name="api_places"),
    path("api/rooms/<str:room_id>/places/<int:place_id>", place_views.place,
         name="api_place"),
    path("api/rooms/<str:room_id>/events", place_views.place_events,
         name="api_place_events"),
    path("api/rooms/<str:room_id>/alerts", place_views.alerts, name="api_alerts"),
    path("me/data.zip", api_views.my_data, name="my_data"),
    path("ingest/owntracks/", ingest.owntracks_view, name="ingest_owntracks"),
    path("ingest/osmand/", ingest.osmand_view, name="ingest_osmand"),
    path("ingest/gpslogger/<str:key>/", ingest.gpslogger_view, name="ingest_gpslogger"),
    path("ingest/overland/", ingest.overland_view, name="ingest_overland"),
    # Hauk's app appends api/<name>.php to the server URL it is given (/hauk/).
    path("hauk/api/create.php", ingest.hauk_create, name="hauk_create"),
    path("hauk/api/post.php", ingest.hauk_post, name="hauk_post"),
    path("hauk/api/stop.php", ingest.hauk_stop, name="hauk_stop"),
    path("hauk/api/<slug:name>.php", ingest.hauk_unsupported, name="hauk_unsupported"),
    path("healthz", probes.healthz, name="healthz"),
    path("readyz", probes.readyz, name="readyz"),
    path("metrics", probes.metrics_view, name="metrics"),
]
