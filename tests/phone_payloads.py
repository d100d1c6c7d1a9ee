"""Phone payloads as the apps send them, shared by the parser and door tests."""

import time

# Device time of the test positions: ten minutes ago, in epoch seconds.
T = int(time.time()) - 600


def owntracks_location(**fields):
    """An OwnTracks ``location`` as the booklet shows it (fields override)."""
    message = {"_type": "location", "tid": "an", "lat": 45.2735, "lon": 13.7142,
               "tst": T, "acc": 8, "alt": 211, "vel": 36, "cog": 270, "batt": 81,
               "bs": 1, "t": "u"}
    message.update(fields)
    return {k: v for k, v in message.items() if v is not None}


def traccar_json(key, **coords):
    """Traccar Client's JSON (www.traccar.org/osmand, Traccar's decoder test vector)."""
    body = {
        "location": {
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.862Z", time.gmtime(T)),
            "coords": {"latitude": 45.2735, "longitude": 13.7142, "accuracy": 5,
                       "speed": 0, "heading": -1, "altitude": 5},
            "is_moving": False, "odometer": 0, "event": "motionchange",
            "battery": {"level": 0.42, "is_charging": False},
            "activity": {"type": "still"}, "extras": {},
        },
        "device_id": key,
    }
    body["location"]["coords"].update(coords)
    return body


def gpslogger_params(**fields):
    """What GPSLogger puts in place of the template's placeholders (Java formatting)."""
    params = {"lat": "45.2735188", "lon": "13.7142099", "acc": "4.5", "alt": "211.15",
              "spd": "12.5", "dir": "93.0", "batt": "77.0", "timestamp": str(T)}
    params.update(fields)
    return {k: v for k, v in params.items() if v is not None}
