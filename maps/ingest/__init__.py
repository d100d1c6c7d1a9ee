"""Phone-app doors: one module per app with its pure parser, and the HTTP views.

- :mod:`.common`: numbers, timestamps and field names every parser shares;
- :mod:`.owntracks`, :mod:`.osmand` (OsmAnd and Traccar Client), :mod:`.gpslogger`:
  each turns its app's wire format into :class:`maps.domain.fixes.Fix` values, with no
  Django, citing the app's source;
- :mod:`.views`: the HTTP endpoints. Each passes the one door check
  (:func:`maps.access.doors.ingest_door`: size, key, rate, role) and hands its fixes to the
  one publish path (:func:`maps.services.position_publish`).

docs/phones.md documents each door: fields, units, answers and sources.
"""
