"""The architecture's rules that import-linter cannot state (docs/architecture.md).

- **One publisher**: only ``maps.services.publish`` sends room events on the channel
  layer; the hubs send their own bookkeeping (hello, presence, beat, sync) and the
  embedded layer delivers; nothing else calls ``group_send``.
- **No function-level import** in maps/ or geoshare/, except Django's ``ready()``
  (models may be imported only once the app registry is ready).
- **Text, never HTML, from the map's scripts**: Leaflet inserts a string given to a
  tooltip, a popup or a ``divIcon``'s ``html`` as HTML, and names are whatever people
  typed; the scripts pass elements built with ``textContent`` and never set
  ``innerHTML`` (tests/test_browser_history.py shows a name holding markup as text).
"""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SENDERS = {"maps/services/publish.py", "maps/realtime/hub.py", "maps/realtime/layers.py"}
HUB_EVENTS = {"room_hello", "room_presence", "room_beat", "room_sync", "room_group"}


def _modules(*packages):
    for package in packages:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" not in path.parts:
                yield path.relative_to(ROOT).as_posix(), ast.parse(path.read_text())


def _calls(tree, attribute):
    return [node for node in ast.walk(tree) if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute) and node.func.attr == attribute]


def test_only_the_publisher_and_the_hubs_send_to_a_group():
    senders = {path for path, tree in _modules("maps") if _calls(tree, "group_send")}
    assert senders and senders <= SENDERS, senders - SENDERS
    assert "maps/services/publish.py" in senders


def test_the_hub_sends_only_its_own_bookkeeping():
    """The hub's group sends carry hello, presence, beat or sync, never a room change."""
    tree = ast.parse((ROOT / "maps/realtime/hub.py").read_text())
    built = {node.func.attr for node in ast.walk(tree) if isinstance(node, ast.Call)
             and isinstance(node.func, ast.Attribute)
             and isinstance(node.func.value, ast.Name) and node.func.value.id == "events"
             and node.func.attr.startswith("room_")}
    assert built <= HUB_EVENTS, built - HUB_EVENTS


def test_no_function_level_imports():
    found = []
    for path, tree in _modules("maps", "geoshare"):
        for function in ast.walk(tree):
            if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            if path == "maps/apps.py" and function.name == "ready":
                continue
            for node in ast.walk(function):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    found.append(f"{path}:{node.lineno}")
    assert found == []


# A Leaflet call given a string (a literal, a template or a concatenation), a divIcon's
# html given one, and any HTML assignment.
_HTML_SINKS = re.compile(
    r"\.(?:bindTooltip|bindPopup|setContent|setTooltipContent|setPopupContent)\("
    r"\s*(?:[`'\"]|[^,)]*\+)"
    r"|\bhtml\s*:\s*[`'\"]"
    r"|\.(?:innerHTML|outerHTML)\s*\+?=|insertAdjacentHTML|document\.write"
)


def test_the_map_scripts_give_leaflet_elements_never_html_strings():
    scripts = sorted((ROOT / "static/maps/js").glob("*.js"))
    assert scripts
    found = [f"{path.name}:{text[:match.start()].count(chr(10)) + 1}: {match.group(0)}"
             for path in scripts for text in [path.read_text()]
             for match in _HTML_SINKS.finditer(text)]
    assert found == []
    # The rule catches the call that once put names in as HTML.
    assert _HTML_SINKS.search("circle.bindTooltip(`${p.name}: ${when}`);")
    assert _HTML_SINKS.search('layer.bindPopup(name + " is here")')
    assert not _HTML_SINKS.search("circle.bindTooltip(textElement(label));")
