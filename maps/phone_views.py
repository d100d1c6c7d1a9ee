"""The "Connect a phone" page (being written: issue 3)."""

from django.http import HttpResponse


def connect_phone(request, room_id):
    return HttpResponse("not implemented yet", status=501)
