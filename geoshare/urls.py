"""URL configuration."""

from django.contrib import admin
from django.urls import include, path
from django.views.i18n import JavaScriptCatalog

from maps.web.admin_views import admin_login

urlpatterns = [
    # The admin's sign-in, limited per address (maps.web.admin_views), before the admin.
    path("admin/login/", admin_login),
    path("admin/", admin.site.urls),
    # The JavaScript strings of the translated pages (locale/*/LC_MESSAGES/djangojs.po).
    # The language switcher's form posts to Django's set_language view.
    path("i18n/", include("django.conf.urls.i18n")),
    path("jsi18n/", JavaScriptCatalog.as_view(), name="javascript-catalog"),
    path("", include("maps.urls")),
]

handler400 = "maps.web.error_views.bad_request"
handler403 = "maps.web.error_views.forbidden"
handler404 = "maps.web.error_views.page_not_found"
handler500 = "maps.web.error_views.server_error"
