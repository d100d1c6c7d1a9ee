"""The embedded channel layer keeps channels' semantics (maps.layers)."""


from maps.layers import RoomsInMemoryChannelLayer


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
    import maps.layers

    layer = RoomsInMemoryChannelLayer(expiry=0)
    channel = await layer.new_channel()
    await layer.group_add("room.1", channel)
    await layer.group_send("room.1", {"type": "x"})
    monkeypatch.setattr(maps.layers, "CLEAN_EVERY_S", 0.0)
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
