"""Phone-app ingest endpoints (being written: issue 3)."""

from django.http import JsonResponse


async def owntracks(request):
    return JsonResponse({"error": "not implemented yet"}, status=501)


async def osmand(request):
    return JsonResponse({"error": "not implemented yet"}, status=501)


async def gpslogger(request, key):
    return JsonResponse({"error": "not implemented yet"}, status=501)
