"""The Django admin's sign-in, counted per client address (``RATE_LIMITS["admin_login"]``)."""

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.translation import gettext as _

from maps.access import address, limits


def admin_login(request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
    """``/admin/login/``: Django's admin sign-in, with a limit on attempts per address.

    Every POST counts against the client's address (CSRF-checked first, by the
    middleware, so another site cannot spend an admin's attempts); past
    ``RATE_LIMITS["admin_login"]`` the answer is 429 with ``Retry-After`` (seconds)
    and the password is not even checked, so a right guess then tells nothing. GET
    shows the form as Django's admin does.
    """
    if request.method == "POST" and not limits.limit_hit(
            "admin_login", address.client_address(request)):
        allowed, window = limits.limit("admin_login")
        message = _("Too many sign-in attempts from this address: at most %(allowed)s "
                    "in %(minutes)s minutes. Try again later.") % {
            "allowed": allowed, "minutes": window // 60}
        response = render(request, "maps/too_many.html", {"message": message}, status=429)
        response["Retry-After"] = str(limits.retry_after("admin_login"))
        return response
    return admin.site.login(request, extra_context)
