"""uvicorn's HTTP protocol lets go of its parser after a WebSocket upgrade (issue 31).

uvicorn's ``HttpToolsProtocol`` and its ``httptools`` parser refer to each other: the
protocol holds the parser, and the parser holds the protocol's bound callbacks
(``on_url``, ``on_header``...). uvicorn breaks that cycle in ``connection_lost``
(``self.parser = None``, uvicorn pull request #1604), but once a connection is upgraded
to a WebSocket its ``connection_lost`` goes to the WebSocket protocol: the HTTP
protocol, its parser, scope and headers, and the connection's transport stay in a cycle
that only a full collection frees, 28 objects every time a socket opens
(docs/benchmarks.md, "Memory under reconnects"). :func:`install` wraps
``handle_websocket_upgrade`` to drop the parser as soon as the WebSocket protocol has
taken the transport, as ``connection_lost`` would have: nothing of the HTTP protocol
runs after the upgrade (``data_received`` returns from it, and the transport delivers
everything else to the WebSocket protocol).

It touches a name of uvicorn's that is not public API, so it is fenced: uvicorn's
upper version bound in pyproject.toml, and tests/test_memory.py, which fails when
uvicorn no longer has the method or the attribute (and, slow, counts what a reconnect
leaves on a real uvicorn with the collector off).
"""

import functools

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


def install():
    """Make ``HttpToolsProtocol.handle_websocket_upgrade`` drop the parser; idempotent."""
    original = HttpToolsProtocol.handle_websocket_upgrade
    if getattr(original, "drops_parser", False):
        return

    @functools.wraps(original)
    def handle_websocket_upgrade(self: HttpToolsProtocol) -> None:
        original(self)
        self.parser = None  # type: ignore[assignment]

    handle_websocket_upgrade.drops_parser = True
    HttpToolsProtocol.handle_websocket_upgrade = handle_websocket_upgrade
