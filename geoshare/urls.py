"""URL configuration."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("maps.urls")),
]

handler400 = "maps.error_views.bad_request"
handler403 = "maps.error_views.forbidden"
handler404 = "maps.error_views.page_not_found"
handler500 = "maps.error_views.server_error"
