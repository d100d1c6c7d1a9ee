"""The frames geoshare sends, built in one place (docs/protocol.md describes each).

Every frame is encoded with orjson, which writes strict JSON: positions are validated
finite before they get here (maps.fixes), and orjson itself would write ``null``, never
``NaN``, for a non-finite float.
"""

import orjson

# WebSocket close codes (docs/protocol.md, "Connecting").
CLOSE_NOT_AUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_NO_ROOM = 4404
CLOSE_FLOOD = 4429


def encode(frame):
    """Return ``frame`` (a dict) as JSON text."""
    return orjson.dumps(frame).decode()


def send_message(text):
    """Return the ASGI ``websocket.send`` message carrying ``text``.

    One message object is shared by every socket a frame goes to: servers only read it.
    """
    return {"type": "websocket.send", "text": text}


def snapshot(*, you, now, room, members, positions):
    """Return a ``snapshot`` frame: ``room`` a dict, ``members``/``positions`` lists."""
    return {
        "type": "snapshot",
        "you": you,
        "now": now,
        "room": room,
        "members": members,
        "positions": positions,
    }


def positions(items):
    """Return a ``positions`` frame of wire positions (``Fix.to_wire`` dicts)."""
    return {"type": "positions", "positions": items}


def presence(member, online):
    """Return a ``presence`` frame for a member dict (see ``snapshot``)."""
    return {"type": "presence", "member": member, "online": online}


def members(items):
    """Return a ``members`` frame: several member dicts that changed in one tick."""
    return {"type": "members", "members": items}


def stopped(member_id):
    """Return a ``stopped`` frame: remove that member's marker."""
    return {"type": "stopped", "member": member_id}


def removed(member_id):
    """Return a ``removed`` frame: drop that member from the list."""
    return {"type": "removed", "member": member_id}


def error(code, detail, field=None):
    """Return an ``error`` frame; ``field`` names the offending field when there is one."""
    frame = {"type": "error", "code": code, "detail": detail}
    if field is not None:
        frame["field"] = field
    return frame


def pong(now):
    """Return the answer to a ``ping``."""
    return {"type": "pong", "now": now}
