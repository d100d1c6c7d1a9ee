"""Error pages: 400, 403, 404, 500 and a refused CSRF check, in the site's layout.

Each says what happened and where to go next (templates/error.html). Django calls them
through ``handler400``/``handler403``/``handler404``/``handler500`` in ``geoshare/urls.py``
and ``CSRF_FAILURE_VIEW``; views call :func:`not_found` themselves where a missing page
is expected (a deleted room's URL), so it is styled even with ``DEBUG`` on.
"""

from django.shortcuts import render
from django.utils.translation import gettext_lazy as _

PAGES = {
    400: (_("Bad request"), _("The browser sent something this site cannot read.")),
    403: (_("Not allowed"), _("You may not open this page.")),
    404: (_("Page not found"), _("There is nothing here: the link may be mistyped, or what "
                                 "it pointed to was deleted.")),
    500: (_("Something went wrong"), _("The server hit an error; it was logged. Try again "
                                       "in a moment.")),
}
ROOM_GONE = (_("This room does not exist"),
             _("It was deleted by its owner, or the link is mistyped. Rooms you are still "
               "in are listed on the home page."))
CSRF = (_("The form expired"),
        _("This page was open too long, or cookies are blocked for this site. Go back, "
          "reload the page and send the form again."))


def error_page(request, status, title=None, message=None):
    """Render the styled error page with HTTP ``status``."""
    default_title, default_message = PAGES.get(status, PAGES[500])
    context = {"status": status, "title": title or default_title,
               "message": message or default_message}
    return render(request, "error.html", context, status=status)


def not_found(request, what=None):
    """A 404 page; ``what="room"`` says that a room is gone."""
    if what == "room":
        return error_page(request, 404, *ROOM_GONE)
    return error_page(request, 404)


def bad_request(request, exception=None):
    return error_page(request, 400)


def forbidden(request, exception=None):
    return error_page(request, 403)


def page_not_found(request, exception=None):
    return not_found(request)


def server_error(request):
    return error_page(request, 500)


def csrf_failure(request, reason=""):
    """``CSRF_FAILURE_VIEW``: a refused form, in words (the reason is for logs only)."""
    return error_page(request, 403, *CSRF)
