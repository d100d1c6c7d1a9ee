"""The database threads (maps.storage.dbthread): the reads thread's batcher (loads that arrive
together go in one call, each gets its own answer, an error reaches every load of its
call), and a thread's own lower priority (the history writer's)."""

import asyncio
import os
import sys
import threading

import pytest

from maps.storage.dbthread import Batcher, DatabaseThread


class Thread(DatabaseThread):
    """A database thread that calls without touching a connection."""

    def call(self, function, *args, **kwargs):
        return function(*args, **kwargs)


async def test_loads_that_arrive_together_go_in_one_call_each_with_its_answer():
    calls = []

    def double(items):
        calls.append(list(items))
        return [2 * item for item in items]

    batcher = Batcher(Thread("test-batch"), double)
    assert await asyncio.gather(*(batcher.load(i) for i in range(5))) == [0, 2, 4, 6, 8]
    assert calls == [[0, 1, 2, 3, 4]]


async def test_loads_that_arrive_during_a_call_wait_and_go_in_the_next():
    gate = threading.Event()
    calls = []

    def slow(items):
        calls.append(list(items))
        if len(calls) == 1:
            gate.wait(5)
        return [f"<{item}>" for item in items]

    batcher = Batcher(Thread("test-batch"), slow, max_batch=2)
    first = asyncio.ensure_future(batcher.load("a"))
    while not calls:  # the first call is under way on the thread
        await asyncio.sleep(0.001)
    later = [asyncio.ensure_future(batcher.load(x)) for x in "bcd"]
    await asyncio.sleep(0.01)
    gate.set()
    assert await first == "<a>"
    assert [await f for f in later] == ["<b>", "<c>", "<d>"]
    # At most max_batch a call.
    assert calls == [["a"], ["b", "c"], ["d"]]


async def test_loads_soon_after_a_call_wait_out_the_gap_together():
    # One by one, as handshakes arrive: the first starts at once, the ones that follow
    # within the gap of its end go together in one call after it; after a quiet spell
    # a lone load starts at once again.
    calls = []
    loop = asyncio.get_running_loop()

    def echo(items):
        calls.append((loop.time(), list(items)))
        return list(items)

    batcher = Batcher(Thread("test-batch"), echo, gap=0.2)
    started = loop.time()
    assert await batcher.load("a") == "a"
    assert calls[0][0] - started < 0.15
    later = []
    for x in "bcd":
        later.append(asyncio.ensure_future(batcher.load(x)))
        await asyncio.sleep(0.02)
    assert [await f for f in later] == ["b", "c", "d"]
    assert [items for _t, items in calls] == [["a"], ["b", "c", "d"]]
    assert calls[1][0] - calls[0][0] >= 0.19
    await asyncio.sleep(0.3)
    quiet = loop.time()
    assert await batcher.load("e") == "e"
    assert calls[2][0] - quiet < 0.15


async def test_an_error_reaches_every_load_of_its_call_and_the_batcher_goes_on():
    def picky(items):
        if "bad" in items:
            raise ValueError("bad item")
        return items

    batcher = Batcher(Thread("test-batch"), picky)
    results = await asyncio.gather(batcher.load("ok"), batcher.load("bad"),
                                   return_exceptions=True)
    assert all(isinstance(r, ValueError) for r in results)
    assert await batcher.load("fine") == "fine"


async def test_a_cancelled_load_is_left_out():
    calls = []

    def echo(items):
        calls.append(list(items))
        return items

    batcher = Batcher(Thread("test-batch"), echo)
    gone = asyncio.ensure_future(batcher.load("gone"))
    kept = asyncio.ensure_future(batcher.load("kept"))
    await asyncio.sleep(0)  # both are queued
    gone.cancel()
    assert await kept == "kept"
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert calls == [["kept"]]


def _niceness():
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"),
    reason="per-thread niceness is Linux's (setpriority with a thread id)")


@linux_only
async def test_a_thread_with_a_niceness_runs_at_it_and_the_loop_keeps_its_own():
    own = _niceness()
    thread = Thread("test-nice", nice=lambda: own + 7)
    try:
        assert await thread.run(_niceness) == min(own + 7, 19)
        assert _niceness() == own
        # The thread keeps it for every call, and a plain thread keeps the process's.
        assert await thread.run(_niceness) == min(own + 7, 19)
        plain = Thread("test-plain")
        assert await plain.run(_niceness) == own
        plain.executor().shutdown()
    finally:
        thread.executor().shutdown()


@linux_only
async def test_the_history_writer_runs_below_the_event_loop(settings):
    from maps.storage import history

    assert settings.GEOSHARE["HISTORY_NICE"] == 10
    own = _niceness()
    assert await history._thread.run(_niceness) == max(own, 10)
    assert _niceness() == own
