"""The architecture's rules that import-linter cannot state (docs/architecture.md).

- **One publisher**: only ``maps.services.publish`` sends room events on the channel
  layer; the hubs send their own bookkeeping (hello, presence, beat, sync) and the
  embedded layer delivers; nothing else calls ``group_send``.
- **No function-level import** in maps/ or geoshare/, except Django's ``ready()``
  (models may be imported only once the app registry is ready).
"""

import ast
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
