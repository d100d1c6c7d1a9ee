"""The embedded channel layer keeps channels' semantics (maps.realtime.layers)."""


from channels.layers import InMemoryChannelLayer

from maps.realtime.layers import RoomsInMemoryChannelLayer


async def test_group_send_reaches_every_member_once():
    layer = RoomsInMemoryChannelLayer()
    a, b, other = [await layer.new_channel() for _ in range(3)]
    await layer.group_add("room.1", a)
    await layer.group_add("room.1", b)
    await layer.group_add("room.2", other)
    await layer.group_send("room.1", {"type": "room.fix", "p": {"member": 1}})
    assert await layer.receive(a) == {"type": "room.fix", "p": {"member": 1}}
    assert await layer.receive(b) == {"type": "room.fix", "p": {"member": 1}}
    assert layer.channels.get(other) is None or layer.channels[other].empty()


async def test_messages_are_copies():
    layer = RoomsInMemoryChannelLayer()
    channel = await layer.new_channel()
    await layer.group_add("room.1", channel)
    message = {"type": "room.fix", "p": {"member": 1}}
    await layer.group_send("room.1", message)
    message["p"]["member"] = 2
    assert (await layer.receive(channel))["p"]["member"] == 1


async def test_expired_messages_still_go(monkeypatch):
    import maps.realtime.layers

    layer = RoomsInMemoryChannelLayer(expiry=0)
    channel = await layer.new_channel()
    await layer.group_add("room.1", channel)
    await layer.group_send("room.1", {"type": "x"})
    monkeypatch.setattr(maps.realtime.layers, "CLEAN_EVERY_S", 0.0)
    layer._next_clean = 0.0
    layer._clean_expired()
    # channels' rule: a channel with an expired message leaves its groups.
    assert channel not in layer.groups.get("room.1", {})


async def test_full_channel_drops_instead_of_raising():
    layer = RoomsInMemoryChannelLayer(capacity=1)
    channel = await layer.new_channel()
    await layer.group_add("room.1", channel)
    await layer.group_send("room.1", {"type": "a"})
    await layer.group_send("room.1", {"type": "b"})
    assert (await layer.receive(channel))["type"] == "a"


async def test_nested_messages_share_nothing_with_the_sender():
    """json_copy copies every level of lists and dicts (room.fixes carries a list of
    positions); anything else is deep-copied as channels would."""
    layer = RoomsInMemoryChannelLayer()
    channel = await layer.new_channel()
    odd = {"set": {1, 2}}
    message = {"type": "room.fixes", "ps": [{"member": 1, "lat": 1.5, "x": None}],
               "t": (1, [2]), "odd": odd}
    await layer.send(channel, message)
    message["ps"][0]["lat"] = 9.0
    message["ps"].append({"member": 2})
    message["t"][1].append(3)
    odd["set"].add(3)
    got = await layer.receive(channel)
    assert got == {"type": "room.fixes", "ps": [{"member": 1, "lat": 1.5, "x": None}],
                   "t": (1, [2]), "odd": {"set": {1, 2}}}


async def test_a_full_channel_refuses_as_channels_does():
    import pytest
    from channels.exceptions import ChannelFull

    layer = RoomsInMemoryChannelLayer(capacity=1)
    channel = await layer.new_channel()
    await layer.send(channel, {"type": "a"})
    with pytest.raises(ChannelFull):
        await layer.send(channel, {"type": "b"})
    assert await layer.receive(channel) == {"type": "a"}


async def test_channels_still_has_the_state_the_embedded_layer_reads():
    """The embedded layer reads channels' InMemoryChannelLayer internals (its
    ``channels`` and ``groups`` dicts, the ``_clean_expired`` hook); channels is bounded
    (<4.4) and this fails when a release changes them (docs/benchmarks.md, "Private
    names")."""
    layer = RoomsInMemoryChannelLayer()
    assert isinstance(layer.channels, dict) and isinstance(layer.groups, dict)
    assert callable(getattr(InMemoryChannelLayer, "_clean_expired", None))
    await layer.group_add("room.9", "hub.a!x")
    assert layer.group_channels("room.9") == {"hub.a!x"}
    await layer.group_discard("room.9", "hub.a!x")
    assert layer.group_channels("room.9") == frozenset()
