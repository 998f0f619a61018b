"""rigwire.aio under asyncio, as a notebook uses it: calls awaited from a
running loop, many at once, and a cancelled task cancelling its call."""

import asyncio

import pytest

import rigwire
import rigwire.aio
from conftest import Rig


def test_calls_are_awaited_from_a_running_loop(rig):
    async def main():
        async with await rigwire.aio.connect(rig.url, name="notebook") as c:
            assert await c.call("add", 1, 2) == 3
            assert await c.root.exp.status() == "connected"
            assert 0 < await c.ping() < 5
            await c.notify("echo", "hello")
            names = [m["name"] for m in await c.methods()]
            assert "sleep" in names
            # Many at once; the loop stays free meanwhile.
            naps = [c.call("sleep", 0.3) for _ in range(40)]
            ticks = 0

            async def ticker():
                nonlocal ticks
                while True:
                    await asyncio.sleep(0.01)
                    ticks += 1

            t = asyncio.ensure_future(ticker())
            assert await asyncio.gather(*naps) == [0.3] * 40
            t.cancel()
            # The loop ran other tasks while the calls were in flight.
            assert ticks >= 1, "the event loop was blocked"
            with pytest.raises(rigwire.DeadlineExceeded):
                await c.call("sleep", 5, timeout=0.2)

    asyncio.run(main())


def test_map_is_an_async_iterator_of_the_results_in_order(rig):
    async def main():
        async with await rigwire.aio.connect(rig.url) as c:
            got = [r async for r in c.map("add", [(i, 1) for i in range(500)], window=16)]
            assert got == [i + 1 for i in range(500)]
            results = c.map("add", [(1, 1), ("x", 1)])
            assert await results.__anext__() == 2
            with pytest.raises(rigwire.RemoteError):
                await results.__anext__()
            # Closed early: the sleeps in flight are cancelled, not waited for.
            naps = c.map("sleep", [0.01, 30, 30], window=3)
            assert await naps.__anext__() == pytest.approx(0.01, abs=0.5)
            await asyncio.wait_for(naps.aclose(), timeout=10)
            assert await c.call("add", 2, 2) == 4
            with pytest.raises(ValueError):
                await c.map("add", [], window=0).__anext__()

    asyncio.run(main())


def test_cancelling_the_task_cancels_the_call_on_the_wire():
    rig = Rig("std", log=True)
    try:
        async def main():
            c = await rigwire.aio.connect(rig.url)
            task = asyncio.ensure_future(c.call("sleep", 30))
            await asyncio.sleep(0.5)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            # The connection stays open while the cancel travels and the
            # rig's handler stops.
            await asyncio.sleep(0.5)
            assert await c.call("add", 1, 1) == 2
            await c.close()

        asyncio.run(asyncio.wait_for(main(), 20))
        log = rig.stop_when_logged("reply to call 1 dropped")
        assert "reply to call 1 dropped" in log, log
    finally:
        if rig.process.returncode is None:
            rig.stop()


def test_a_rig_that_stops_reading_does_not_block_the_loop():
    # A stopped process: its socket takes bytes until the kernel's buffers
    # and our output limit are full, then starting a call waits for room.
    frozen, healthy = Rig("std"), Rig("smol")
    try:

        async def main():
            stuck = await rigwire.aio.connect(frozen.url)
            fine = await rigwire.aio.connect(healthy.url)
            assert await stuck.call("add", 1, 2) == 3
            frozen.freeze()
            blob = b"x" * (4 << 20)
            waiting = [asyncio.ensure_future(stuck.call("echo", blob, timeout=30)) for _ in range(20)]
            # The loop serves the healthy rig while those wait for room; a
            # start that waited on the loop would hold this back 30 s.
            assert await fine.call("add", 2, 2) == 4
            assert not all(c.done() for c in waiting), "the calls ended before the loop was free"
            # Cancelling a task whose call is still being started cancels it.
            waiting[-1].cancel()
            frozen.process.kill()
            for call in waiting[:-1]:
                with pytest.raises(rigwire.Disconnected):
                    await call
            with pytest.raises(asyncio.CancelledError):
                await waiting[-1]
            await fine.close()

        asyncio.run(asyncio.wait_for(main(), 60))
    finally:
        frozen.stop()
        healthy.stop()


def test_calls_awaited_hold_no_thread_so_a_quick_call_beside_many_slow_ones_keeps_its_deadline():
    # More calls in flight than the module's pool has threads (256): each
    # awaited call held one of them until its answer, so a quick call to
    # another rig waited for a thread, past its deadline, until slow
    # answers came.
    import threading

    release = threading.Event()
    slow = rigwire.Server("tcp://127.0.0.1:0", name="slow")
    slow.expose(lambda: release.wait(60), name="hold")
    slow.start()
    quick = rigwire.Server("tcp://127.0.0.1:0", name="quick")
    quick.expose(lambda x: x, name="echo")
    quick.start()
    try:

        async def main():
            # Two connections: a peer takes at most 256 calls in progress.
            holders = [await rigwire.aio.connect(slow.url) for _ in range(2)]
            fast = await rigwire.aio.connect(quick.url)
            held = [asyncio.ensure_future(c.call("hold", timeout=60)) for c in holders for _ in range(150)]
            await asyncio.sleep(0.5)  # every call started and waiting
            assert await asyncio.wait_for(fast.call("echo", 7, timeout=5), 20) == 7
            assert not any(h.done() for h in held), "the slow calls ended first"
            # Their deadlines are kept with no thread waiting for them either.
            with pytest.raises(rigwire.DeadlineExceeded):
                await asyncio.wait_for(holders[0].call("hold", timeout=0.3), 20)
            release.set()
            assert await asyncio.wait_for(asyncio.gather(*held), 60) == [True] * 300
            for c in holders + [fast]:
                await c.close()

        asyncio.run(main())
    finally:
        release.set()
        slow.shutdown(1)
        quick.shutdown(1)


def test_more_calls_gathered_than_the_rig_takes_at_once_all_answer(rig):
    # The rig runs 256 calls at once and answers more `Busy`: the calls
    # beyond take turns, each within its deadline.
    async def main():
        async with await rigwire.aio.connect(rig.url) as client:
            got = await asyncio.gather(*(client.call("add", i, 1, timeout=30) for i in range(2000)))
            assert got == [i + 1 for i in range(2000)]

    asyncio.run(asyncio.wait_for(main(), 60))


def _pool_threads() -> int:
    import threading

    return sum(t.name.startswith("rigwire-aio") for t in threading.enumerate())


def test_calls_started_at_a_rig_that_stops_reading_hold_no_thread_and_keep_their_deadlines():
    # Starting a call that waits for room at a peer that does not read held
    # one of the module's 256 threads: past 256 of them, a quick call to a
    # healthy rig waited for a thread past its deadline (0.5 s answered
    # after 5 s), until the frozen rig's keepalive ended its connection.
    frozen, healthy = Rig("std"), Rig("smol")
    try:

        async def main():
            stuck = await rigwire.aio.connect(frozen.url)
            fine = await rigwire.aio.connect(healthy.url)
            threads = _pool_threads()
            frozen.freeze()
            blob = b"x" * (1 << 20)
            # The output's 64 MiB and the socket's buffers take some; the
            # rest wait for room.
            waiting = [asyncio.ensure_future(stuck.call("echo", blob, timeout=30)) for _ in range(100)]
            await asyncio.sleep(0.5)
            assert _pool_threads() == threads, "starts waiting for room hold threads"
            assert await asyncio.wait_for(fine.call("add", 2, 2, timeout=5), 20) == 4
            # One refused for room keeps the deadline it was made with.
            with pytest.raises(rigwire.DeadlineExceeded):
                await asyncio.wait_for(stuck.call("echo", blob, timeout=0.3), 20)
            assert not any(c.done() for c in waiting), "the calls ended before the rig was thawed"
            # Cancelling a task whose call waits for room: never sent.
            waiting[-1].cancel()
            frozen.thaw()
            done = await asyncio.wait_for(asyncio.gather(*waiting[:-1], return_exceptions=True), 60)
            # Each starts as room frees and is answered; unless the rig's
            # freeze outlasted its keepalive (6 s) on a starved machine.
            assert all(r == blob or isinstance(r, rigwire.Disconnected) for r in done), {repr(r)[:80] for r in done}
            with pytest.raises(asyncio.CancelledError):
                await waiting[-1]
            await fine.close()
            await stuck.close()

        asyncio.run(asyncio.wait_for(main(), 90))
    finally:
        frozen.stop()
        healthy.stop()


def test_notifies_to_a_rig_that_stops_reading_hold_no_thread():
    # A notify waiting for room held one of the module's 256 threads, with
    # no deadline unless the client has a default one.
    frozen = Rig("std")
    try:

        async def main():
            stuck = await rigwire.aio.connect(frozen.url)
            assert await stuck.call("add", 1, 2) == 3
            threads = _pool_threads()
            frozen.freeze()
            blob = b"x" * (4 << 20)
            waiting = [asyncio.ensure_future(stuck.notify("echo", blob)) for _ in range(30)]
            await asyncio.sleep(0.5)
            assert not all(n.done() for n in waiting), "every notify found room"
            assert _pool_threads() == threads, "notifies waiting for room hold threads"
            frozen.thaw()
            done = await asyncio.wait_for(asyncio.gather(*waiting, return_exceptions=True), 60)
            # Sent as room frees; unless the freeze outlasted the keepalive.
            assert all(r is None or isinstance(r, rigwire.Disconnected) for r in done), {repr(r)[:80] for r in done}
            await stuck.close()

        asyncio.run(asyncio.wait_for(main(), 90))
    finally:
        frozen.stop()


def test_calls_to_a_lost_rig_wait_for_one_reconnect_with_no_thread_each():
    # Each call's start waited on a thread of the module's pool while one
    # of them made the lost connection again: past 256, a quick call to a
    # healthy rig waited 15 s for a thread.
    down, healthy = Rig("std"), Rig("smol")
    try:

        async def main():
            nonlocal down
            lost = await rigwire.aio.connect(down.url, reconnect=True)
            fine = await rigwire.aio.connect(healthy.url)
            assert await lost.call("add", 1, 1) == 2
            threads = _pool_threads()
            down.stop()
            waiting = [asyncio.ensure_future(lost.call("add", i, 1, timeout=30)) for i in range(100)]
            await asyncio.sleep(0.5)
            # One thread makes the connection again (more are never taken).
            assert _pool_threads() <= threads + 1, "calls waiting for a reconnect hold threads"
            assert await asyncio.wait_for(fine.call("add", 2, 2, timeout=5), 20) == 4
            with pytest.raises(rigwire.DeadlineExceeded):
                await asyncio.wait_for(lost.call("add", 0, 0, timeout=0.3), 20)
            assert not any(c.done() for c in waiting)
            down = Rig("std", listen=lost.url)
            assert await asyncio.wait_for(asyncio.gather(*waiting), 60) == [i + 1 for i in range(100)]
            await fine.close()
            await lost.close()

        asyncio.run(asyncio.wait_for(main(), 90))
    finally:
        down.stop()
        healthy.stop()


def test_a_group_is_awaited_and_cancelling_the_task_cancels_every_rigs_call():
    a, b = Rig("std", log=True), Rig("smol")
    try:

        async def main():
            async with await rigwire.aio.Group.connect({"a": a.url, "b": b.url}) as rigs:
                assert rigs.names == ["a", "b"]
                assert await rigs.init(subject="ZM_1") == {"a": "initialized", "b": "initialized"}
                assert (await rigs.info())["a"]["status"] == "initialized"
                assert await rigs.call("add", 1, 2) == {"a": 3, "b": 3}
                # A step whose failures nobody looks at warns on the line
                # that awaited it (not in asyncio, where it is let go).
                with pytest.warns(RuntimeWarning, match="2 of 2 rigs failed") as dropped:
                    await rigs.call("add", "one", 2)
                assert [w.filename for w in dropped] == [__file__]
                # The loop stays free while the rigs sleep; cancelling the
                # task ends the wait well before their 30 s.
                sleeping = asyncio.ensure_future(rigs.call("sleep", 30))
                await asyncio.sleep(0.5)
                assert not sleeping.done()
                started = asyncio.get_running_loop().time()
                sleeping.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await sleeping
                assert await asyncio.wait_for(rigs.status(), 10) == {"a": "initialized", "b": "initialized"}
                assert asyncio.get_running_loop().time() - started < 15
                # Waiting for an event is cancelled the same way.
                waiting = asyncio.ensure_future(rigs.wait_event("never", 30))
                await asyncio.sleep(0.2)
                waiting.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await waiting

        asyncio.run(asyncio.wait_for(main(), 60))
        # The rig was told: its answer went nowhere.
        log = a.stop_when_logged("dropped")
        assert "reply to call" in log and "dropped" in log, log
    finally:
        for rig in (a, b):
            if rig.process.returncode is None:
                rig.stop()


def test_functions_a_peer_calls_back_run_on_the_apps_loop():
    server = rigwire.Server("tcp://127.0.0.1:0", name="rig")

    @server.expose
    def arm(caller):
        caller.notify("news", "armed")
        return caller.call("double", 21)

    server.start()

    async def main():
        loop = asyncio.get_running_loop()
        heard, threads = [], []

        async def double(x, caller):
            threads.append(asyncio.get_running_loop() is loop)
            # Its caller is awaited too: this loop is not blocked by it.
            assert await caller.call("rigwire.methods") is not None
            return 2 * x

        def news(what):
            threads.append(asyncio.get_running_loop() is loop)
            heard.append(what)

        expose = {"double": double, "news": news}
        async with await rigwire.aio.connect(server.url, expose=expose) as c:
            assert await c.call("arm") == 42
            for _ in range(100):
                if heard:
                    break
                await asyncio.sleep(0.05)
            assert heard == ["armed"]
            assert threads == [True, True]

    try:
        asyncio.run(asyncio.wait_for(main(), timeout=30))
    finally:
        server.shutdown()


def test_a_call_back_after_the_scripts_loop_closed_says_so():
    # The functions a script exposes run on its event loop; once its
    # asyncio.run has ended, a rig calling one back was told "Event loop is
    # closed", and the script warned of a coroutine never awaited.
    server = rigwire.Server("tcp://127.0.0.1:0")
    callers = []

    @server.expose
    def subscribe(caller):
        callers.append(caller)

    server.start()

    async def progress(value):
        return value

    async def main():
        c = await rigwire.aio.connect(server.url, expose={"progress": progress})
        await c.call("subscribe")
        return c

    try:
        kept = asyncio.run(asyncio.wait_for(main(), timeout=30))
        with pytest.raises(rigwire.RemoteError, match="progress cannot run: the event loop it runs on has closed"):
            callers[0].call("progress", 1, timeout=20)
        del kept
    finally:
        server.shutdown()
