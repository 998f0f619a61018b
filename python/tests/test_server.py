"""Serving from Python: Python and Rust clients call Python handlers."""

import asyncio
import os
import subprocess
import sys
import threading
import time

import pytest

import rigwire
import rigwire.aio
from conftest import BIN, SECRET


@pytest.fixture
def server():
    s = rigwire.Server("tcp://127.0.0.1:0", name="py-rig")

    @s.expose
    def add(a, b):
        return a + b

    @s.expose("stage.move", aliases=["move"])
    def move(x, y=0.0):
        return {"x": x, "y": y}

    @s.expose
    def nap(seconds):
        time.sleep(seconds)
        return seconds

    @s.expose
    def fail():
        raise ValueError("motor stalled")

    @s.expose
    def unserialisable():
        return object()

    @s.expose
    def quit(code):
        sys.exit(code)

    @s.expose
    def count(items):
        return len(items)

    @s.expose
    def doubled(timeout):
        return timeout * 2

    s.start()
    yield s
    s.shutdown(grace=1)


def test_a_python_client_calls_python_handlers(server):
    with rigwire.connect(server.url) as c:
        assert c.call("add", 1, 2) == 3
        assert c.root.stage.move(1.5) == {"x": 1.5, "y": 0.0}
        assert c.call("move", x=1, y=2) == {"x": 1, "y": 2}
        names = {m["name"]: m for m in c.methods()}
        assert names["stage.move"]["aliases"] == ["move"]
        assert "(x, y=0.0)" in names["stage.move"]["signature"]
        assert server.peer_count() == 1


def test_a_handlers_traceback_starts_at_the_handler_not_at_rigwires_wrappers():
    # The caller's traceback began in rigwire's own wrapper, and an async
    # handler's went through the event loop's machinery first.
    import asyncio
    import functools

    def first_frame(detail):
        return detail.splitlines()[1].strip()

    class Motor:
        def __call__(self):
            raise ValueError("motor stalled")

    def stalled(axis):
        raise ValueError(f"{axis} stalled")

    with rigwire.Server("tcp://127.0.0.1:0") as s:

        @s.expose
        def plain():
            raise ValueError("stalled")

        @s.expose
        async def later():
            await asyncio.sleep(0)
            raise ValueError("stalled")

        s.expose(functools.partial(stalled, "x"), name="partial")
        s.expose(Motor(), name="motor")
        rig = rigwire.Rig()

        @rig.on_init
        def init():
            raise ValueError("no water")

        rig.expose(s)
        s.start()
        with rigwire.connect(s.url) as c:
            for method, where in [
                ("plain", "in plain"),
                ("later", "in later"),
                ("partial", "in stalled"),
                ("motor", "in __call__"),
                ("exp.init", "in init"),
            ]:
                with pytest.raises(rigwire.RemoteError) as e:
                    c.call(method)
                first = first_frame(e.value.detail)
                assert first.startswith(f'File "{__file__}"') and first.endswith(where), (method, e.value.detail)


def test_a_port_in_use_is_an_oserror_saying_what_to_do():
    # As socket.bind raises it: a script that tries another port on
    # `except OSError` finds it.
    with rigwire.Server("tcp://127.0.0.1:0", name="first") as first:
        first.start()
        with pytest.raises(OSError, match=r"already in use.*choose another port") as taken:
            rigwire.Server(first.url, name="second").start()
        assert isinstance(taken.value, rigwire.ListenFailed)
        assert isinstance(taken.value, rigwire.Error)


def test_a_parameter_named_timeout_is_passed_in_one_dict(server):
    with rigwire.connect(server.url) as c:
        assert c.call("doubled", {"timeout": 5}) == 10  # timeout= would be the deadline


def test_handler_errors_reach_the_caller_with_the_traceback(server):
    with rigwire.connect(server.url) as c:
        with pytest.raises(rigwire.RemoteError) as e:
            c.call("fail")
        assert e.value.kind == "Handler"
        assert e.value.message == "ValueError: motor stalled"
        assert "Traceback" in e.value.detail and "raise ValueError" in e.value.detail
        with pytest.raises(rigwire.RemoteError) as e:
            c.call("add", 1)
        assert e.value.kind == "BadArguments"
        with pytest.raises(rigwire.RemoteError) as e:
            c.call("unserialisable")
        assert "TypeError" in e.value.message
        # sys.exit() on a handler's thread ends that call only: said so,
        # with its traceback, not as a failure of rigwire's wrapper.
        with pytest.raises(rigwire.RemoteError) as e:
            c.call("quit", 3)
        assert e.value.kind == "Handler"
        assert e.value.message.startswith("SystemExit: 3 (raised by a handler, it ends this call only")
        assert "sys.exit(code)" in e.value.detail
        # The server carries on.
        assert c.call("add", 2, 2) == 4


def test_arguments_that_are_not_json_are_bad_arguments_and_the_server_carries_on(server):
    # Another implementation's client (or a hostile one) sends what Python's
    # encoder never would; it was answered "Handler: the Python handler
    # wrapper failed: JSONDecodeError", blaming the rig.
    with rigwire.connect(server.url) as c:
        for text in ["{not json", "[" * 100_000 + "]" * 100_000]:
            with pytest.raises(rigwire.RemoteError) as e:
                c._native.call("add", text, 5.0)
            assert e.value.kind == "BadArguments"
            assert e.value.message.startswith("add: arguments do not decode: json: ")
        assert c.call("add", 2, 2) == 4


def test_a_list_or_dict_spread_over_one_parameter_says_how_to_pass_it(server):
    with rigwire.connect(server.url) as c:
        with pytest.raises(rigwire.RemoteError) as e:
            c.call("count", [1, 2, 3])
        assert e.value.kind == "BadArguments"
        assert 'to pass one list, send {"items": [...]}, in Python items=[...]' in e.value.message
        with pytest.raises(rigwire.RemoteError) as e:
            c.call("count", {"a": 1})
        assert 'to pass one dict, send {"items": {...}}, in Python items={...}' in e.value.message
        # As the hint says.
        assert c.call("count", items=[1, 2, 3]) == 3
        assert c.call("count", items={"a": 1}) == 1
        # A handler of several parameters gets no hint: the array was meant for them.
        with pytest.raises(rigwire.RemoteError) as e:
            c.call("add", 1, 2, 3)
        assert "to pass one" not in e.value.message


def test_calls_that_waited_for_a_thread_past_their_deadline_never_run():
    naps = []
    s = rigwire.Server("tcp://127.0.0.1:0", name="py-rig")

    @s.expose
    def stuck(seconds):
        naps.append(seconds)
        time.sleep(seconds)  # deaf to the cancel, as most handlers are

    s.start()
    try:
        with rigwire.connect(s.url) as c:
            calls = [c.start("stuck", 1.0, timeout=0.3) for _ in range(64)]
            for call in calls:
                with pytest.raises(rigwire.DeadlineExceeded):
                    call.result()
            # The calls still waiting for a thread are dropped when one comes
            # free: this call waits for one nap, not for the other 56.
            assert c.call("stuck", 0.0, timeout=5) is None
        assert len(naps) <= 17, f"{len(naps)} handlers ran for calls nobody waited for"
    finally:
        s.shutdown(grace=0)


def test_calls_behind_handlers_that_never_return_are_refused_saying_why():
    # A handler stuck on hardware keeps its thread whatever its caller does.
    # Once every thread the connection may hold runs one given up on a
    # while ago, a call is refused at once, not left to wait out its deadline.
    release = threading.Event()
    s = rigwire.Server("tcp://127.0.0.1:0", name="py-rig")

    @s.expose
    def hang():
        release.wait(30)

    @s.expose
    def quick():
        return 7

    s.start()
    try:
        with rigwire.connect(s.url) as c:
            hung = [c.start("hang", timeout=0.2) for _ in range(8)]
            for call in hung:
                with pytest.raises(rigwire.DeadlineExceeded):
                    call.result()
            # Until they were given up on more than a second ago (by the
            # rig's clock), a call waits for a thread; then it is refused.
            until = time.monotonic() + 20
            while True:
                try:
                    c.call("quick", timeout=0.3)
                    pytest.fail("a call ran while every thread hung")
                except rigwire.Busy as e:
                    assert "still runs a call given up on" in str(e)
                    break
                except rigwire.DeadlineExceeded:
                    assert time.monotonic() < until, "never refused"
            began = time.monotonic()
            with pytest.raises(rigwire.Busy, match="still runs a call given up on"):
                c.call("quick", timeout=20)
            assert time.monotonic() - began < 20, "it waited out its deadline"
            release.set()
            for _ in range(1000):
                try:
                    assert c.call("quick", timeout=20) == 7
                    break
                except rigwire.Busy:
                    time.sleep(0.01)
            else:
                pytest.fail("still refused after the handlers returned")
    finally:
        release.set()
        s.shutdown(grace=0)


def test_a_slow_handler_does_not_hold_up_other_calls(server):
    with rigwire.connect(server.url) as c:
        slow = c.start("nap", 5.0)
        assert c.call("add", 1, 1) == 2
        # Answered while the slow one still runs: they did not queue.
        assert not slow.done()
        slow.cancel()


def test_the_rust_command_line_calls_a_python_server(server):
    out = subprocess.run([BIN, "call", server.url, "add", "[1, 2]"], capture_output=True, text=True, timeout=30)
    assert (out.returncode, out.stdout.strip()) == (0, "3"), out.stderr
    out = subprocess.run([BIN, "call", server.url, "fail"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 1 and "motor stalled" in out.stderr, out.stderr


def test_many_threads_call_one_python_server(server):
    with rigwire.connect(server.url) as c:
        errors = []

        def work(k):
            try:
                for i in range(50):
                    assert c.call("add", k, i) == k + i
            except Exception as e:  # reported below
                errors.append(e)

        threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert not errors


def test_secret_broadcast_and_shutdown(tmp_path):
    with rigwire.Server("tcp://127.0.0.1:0", secret=SECRET) as s:
        s.expose(lambda: "pong", name="hello")
        # A broadcast before start (from a thread the rig started early)
        # said "neither listening nor serving through a relay".
        with pytest.raises(RuntimeError, match="has not started: start"):
            s.broadcast("news", 1, 2)
        s.start()
        with pytest.raises(rigwire.AuthenticationFailed):
            rigwire.connect(s.url)
        c = rigwire.connect(s.url, secret=SECRET)
        assert c.call("hello") == "pong"
        assert s.broadcast("news", 1, 2) == 1
        with pytest.raises(RuntimeError):
            s.expose(lambda: 1, name="late")
    # Shut down by the context manager: the client sees the goodbye.
    with pytest.raises(rigwire.Disconnected):
        c.call("hello")
    with pytest.raises(RuntimeError, match="the server has shut down"):
        s.broadcast("news", 1, 2)


def test_the_largest_grace_waits_for_running_calls_and_a_bad_one_is_refused():
    s = rigwire.Server("tcp://127.0.0.1:0", name="py-rig")
    started = threading.Event()

    @s.expose
    def nap(seconds):
        started.set()
        time.sleep(seconds)
        return seconds

    s.start()
    with pytest.raises(ValueError, match=r"grace must be a number of seconds from 0 to 2\^64, got -1.0$"):
        s.shutdown(grace=-1)
    c = rigwire.connect(s.url, timeout=20)
    answers = []
    caller = threading.Thread(target=lambda: answers.append(c.call("nap", 0.3)))
    caller.start()
    assert started.wait(10)
    # 2^64 seconds, "as long as it takes": too long to add to the clock, it
    # used to end the grace at once and cut the running call.
    s.shutdown(grace=1.8e19)
    caller.join(20)
    assert answers == [0.3]


def test_a_python_service_through_the_relay():
    env_secrets = {"RIGWIRE_SECRET": SECRET, "RIGWIRE_SERVICE_SECRET": SECRET}
    relay = subprocess.Popen(
        [BIN, "relay", "--clients", "tcp://127.0.0.1:0", "--services", "ws://127.0.0.1:0/services"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **env_secrets},
        text=True,
    )
    try:
        lines = [relay.stdout.readline().split() for _ in range(2)]
        urls = {line[2]: line[1] for line in lines}
        service = rigwire.Server(None, name="scanner", secret=SECRET)

        @service.expose
        def add(a, b):
            return a + b

        @service.expose
        def arm(caller):
            # To its peer, the relay: on to every client following the service.
            caller.notify("exp.event", "armed", "data ready")

        @service.expose
        def call_back(caller):
            # Its caller is the relay, which forwards no call to a client.
            with pytest.raises(rigwire.NoSuchMethod, match="do not pass through a relay"):
                caller.call("progress", 1, timeout=5)
            return "refused"

        rigwire.Rig().expose(service)
        service.serve_via(urls["services"], as_="data")
        try:
            with rigwire.connect(urls["clients"], secret=SECRET) as c:
                assert c.call("data.add", 1, 2) == 3
                assert c.root.data.add(2, 2) == 4
                assert "data" in c.call("rigwire.services")
            out = subprocess.run(
                [BIN, "call", urls["clients"], "data.add", "[1, 2]"],
                capture_output=True,
                text=True,
                timeout=30,
                env={**os.environ, "RIGWIRE_SECRET": SECRET},
            )
            assert (out.returncode, out.stdout.strip()) == (0, "3"), out.stderr
            # A URL ending in #NAME is that service: its calls go to NAME.method.
            relayed = urls["clients"] + "#data"
            with rigwire.connect(relayed, secret=SECRET) as c:
                assert c.url == relayed
                assert c.call("add", 1, 2) == 3
                assert c.root.add(2, 2) == 4
                assert c.ping() > 0
                assert list(c.map("add", [(1, 1), (2, 2)])) == [2, 4]
                c.notify("add", 5, 5)  # reaches the service, which drops the answer
                assert c.call("call_back", timeout=10) == "refused"
                assert "add" in [m["name"] for m in c.methods()]
            out = subprocess.run(
                [BIN, "call", relayed, "add", "3", "4"],
                capture_output=True,
                text=True,
                timeout=30,
                env={**os.environ, "RIGWIRE_SECRET": SECRET},
            )
            assert (out.returncode, out.stdout.strip()) == (0, "7"), out.stderr
            # ... and a group drives relayed services as it drives rigs.
            with rigwire.Group({"data": relayed}, secret=SECRET) as rigs:
                assert rigs.call("add", 20, 22) == {"data": 42}
                assert rigs.init().raise_on_failure() == {"data": "initialized"}
                rigs.call("arm")
                # What the service reports reaches the group through the relay.
                assert rigs.wait_event("armed", timeout=10) == {"data": "data ready"}
                # A broadcast from a service reaches its relay, and so its followers.
                assert service.broadcast("exp.event", "trial_done", "7") == 1
                assert rigs.wait_event("trial_done", timeout=10) == {"data": "7"}
            with rigwire.connect(urls["clients"] + "#ghost", secret=SECRET) as c:
                with pytest.raises(rigwire.Unavailable, match="no service 'ghost'"):
                    c.ping()  # the service's round trip, not the relay's
            with pytest.raises(rigwire.Error, match="not a service name"):
                rigwire.connect(urls["clients"] + "#da.ta", secret=SECRET)
            # Said before dialing: the relay being down once hid it.
            with pytest.raises(rigwire.Error, match="'da.ta' is not a service name"):
                rigwire.Server(None).serve_via("ws://127.0.0.1:1/services", as_="da.ta")
            with pytest.raises(rigwire.Error, match="names a service behind a relay"):
                rigwire.Server(relayed, secret=SECRET)
        finally:
            service.shutdown()
        # The service has left: calls to it fail at once, naming it.
        with rigwire.connect(urls["clients"], secret=SECRET) as c:
            with pytest.raises(rigwire.Unavailable) as e:
                c.call("data.add", 1, 2)
            assert "data" in str(e.value)
    finally:
        relay.kill()
        relay.communicate(timeout=10)


def test_a_handler_calls_back_the_peer_that_called_it():
    progress = []
    with rigwire.Server("tcp://127.0.0.1:0", name="scanner") as s:

        @s.expose
        def acquire(volumes, caller):
            for v in range(volumes):
                caller.call("progress", v + 1, volumes)
            caller.notify("log", "acquired")
            return volumes

        s.start()
        logged = []
        script = rigwire.connect(
            s.url,
            expose={
                "progress": lambda done, of: progress.append((done, of)) or done,
                "log": lambda text: logged.append(text),
            },
        )
        with script:
            assert script.call("acquire", 3) == 3
            assert progress == [(1, 3), (2, 3), (3, 3)]
            deadline = time.monotonic() + 10
            while not logged and time.monotonic() < deadline:
                time.sleep(0.01)
            assert logged == ["acquired"]


def _eight_callers_called_back(acquire):
    """Serves ``acquire`` (which calls its caller's ``progress`` back once
    8 of it run at once) and ``position`` to 8 script threads calling
    ``acquire`` at once, whose ``progress`` asks the rig's ``position``."""
    with rigwire.Server("tcp://127.0.0.1:0") as s:
        s.expose(acquire)
        s.expose(lambda: 7, name="position")
        s.start()
        script = rigwire.connect(
            s.url,
            timeout=20,
            expose={"progress": lambda volume, caller: volume + caller.call("position")},
        )
        with script:
            answers = [None] * 8
            threads = [
                threading.Thread(target=lambda i=i: answers.__setitem__(i, script.call("acquire", i)))
                for i in range(8)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
            assert answers == [i + 7 for i in range(8)]


def test_calls_back_and_forth_from_many_threads_never_wait_for_a_thread_their_answers_free():
    # A rig's handler calls the script back, whose callback asks the rig
    # again: with 8 such calls at once, the rig's 8 threads for one
    # connection all waited for answers that needed a 9th, for good.
    together = threading.Barrier(8, timeout=10)

    def acquire(volume, caller):
        together.wait()
        return caller.call("progress", volume)

    _eight_callers_called_back(acquire)


def test_async_def_handlers_calling_back_from_many_callers_at_once_never_wait_for_a_thread():
    # As above, with the rig's handler an async def: its thread only waits
    # for the loop that runs it, and held its place all the same.
    arrived = []

    async def acquire(volume, caller):
        # All on one loop: each waits there until the 8 have begun.
        arrived.append(volume)
        give_up = time.monotonic() + 10
        while len(arrived) < 8 and time.monotonic() < give_up:
            await asyncio.sleep(0.005)
        return await caller.call("progress", volume)

    _eight_callers_called_back(acquire)


def test_a_lifecycle_hook_may_call_back_the_script():
    rig = rigwire.Rig()

    @rig.on_start
    def start(exp_ref, caller):
        caller.call("started", exp_ref)

    seen = []
    with rigwire.Server("tcp://127.0.0.1:0") as s:
        rig.expose(s)
        s.start()
        with rigwire.connect(s.url, expose={"started": seen.append}) as c:
            c.call("exp.init")
            c.call("exp.start", "2026-11-26_3_ZM_1")
    assert seen == ["2026-11-26_3_ZM_1"]


def test_a_hook_registered_after_the_rig_is_exposed_is_refused_not_left_to_never_run():
    # It was kept where the server never looked: exp.start answered
    # `running` and the camera never started.
    rig = rigwire.Rig()
    with rigwire.Server("tcp://127.0.0.1:0") as s:
        rig.expose(s)
        with pytest.raises(RuntimeError, match=r"on_start registered after rig\.expose\(server\)"):

            @rig.on_start
            def start(exp_ref):
                pass


def test_async_lifecycle_hooks_run_and_their_failures_fail_the_step():
    import asyncio

    rig = rigwire.Rig()
    ran = []

    @rig.on_start
    async def start(exp_ref):
        await asyncio.sleep(0.01)
        ran.append(exp_ref)

    @rig.on_stop
    async def stop(immediately):
        raise RuntimeError("shutter jammed")

    with rigwire.Server("tcp://127.0.0.1:0") as s:
        rig.expose(s)
        s.start()
        with rigwire.connect(s.url) as c:
            c.call("exp.init")
            # An async hook was called but never awaited: the step succeeded
            # without running it.
            assert c.call("exp.start", "2026-11-26_4_ZM_1") == "running"
            assert ran == ["2026-11-26_4_ZM_1"]
            with pytest.raises(rigwire.RemoteError, match="shutter jammed"):
                c.call("exp.stop")
            assert c.call("exp.status") == "running"


SERVE_FOREVER = """
import sys, time, rigwire
server = rigwire.Server("tcp://127.0.0.1:0", name="py-rig")

@server.expose
def nap(seconds):
    time.sleep(seconds)
    return seconds

print(server.url, flush=True)
server.serve_forever()
print("cleaned up", flush=True)
"""


def test_sigterm_shuts_serve_forever_down_gracefully_and_returns():
    rig = subprocess.Popen([sys.executable, "-c", SERVE_FOREVER], stdout=subprocess.PIPE, text=True)
    try:
        url = rig.stdout.readline().strip()
        with rigwire.connect(url) as c:
            running = c.start("nap", 1.0)
            time.sleep(0.3)  # the nap is running
            rig.terminate()
            # A call in progress finishes; the script's own cleanup runs.
            assert running.result(timeout=10) == 1.0
        out, _ = rig.communicate(timeout=10)
        assert out == "cleaned up\n"
        assert rig.returncode == 0
    finally:
        rig.kill()


def test_serve_forever_with_nothing_to_serve_on_says_so_at_once():
    # A server made with no URL and sent through no relay once waited for
    # ever, serving nothing, without a word.
    s = rigwire.Server(None, name="lost")
    s.expose(lambda: 1, name="one")
    raised = []

    def serve():
        try:
            s.serve_forever()
        except Exception as e:
            raised.append(e)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    t.join(timeout=10)
    assert not t.is_alive(), "serve_forever waited, serving nothing"
    assert isinstance(raised[0], RuntimeError) and "serve_via" in str(raised[0])
    # Each other refusal of start says its own reason.
    s = rigwire.Server("tcp://127.0.0.1:0").start()
    with pytest.raises(RuntimeError, match="serving already"):
        s.start()
    s.shutdown(0)
    with pytest.raises(RuntimeError, match="has shut down"):
        s.start()


def test_a_long_handler_learns_its_call_is_no_longer_wanted():
    import queue

    server = rigwire.Server("tcp://127.0.0.1:0", name="camera")
    ended = queue.Queue()

    @server.expose
    def acquire(seconds, cancelled):
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            if cancelled():
                ended.put("stopped early")
                return None
            time.sleep(0.01)
        ended.put("ran its course")
        return seconds

    server.start()
    try:
        with rigwire.connect(server.url) as c:
            assert c.call("acquire", 0.05) == 0.05
            assert ended.get(timeout=5) == "ran its course"
            # Past its deadline.
            with pytest.raises(rigwire.DeadlineExceeded):
                c.call("acquire", 30, timeout=0.3)
            assert ended.get(timeout=10) == "stopped early"
            # Cancelled by the caller.
            call = c.start("acquire", 30)
            time.sleep(0.2)
            call.cancel()
            assert ended.get(timeout=10) == "stopped early"
        # Its connection closed.
        c = rigwire.connect(server.url)
        call = c.start("acquire", 30)  # kept: a dropped call is cancelled
        time.sleep(0.2)
        c.close()
        assert ended.get(timeout=10) == "stopped early"
    finally:
        server.shutdown(grace=1)


def test_async_handlers_partials_and_callable_objects_can_be_exposed():
    import asyncio
    import functools

    class Scale:
        def __call__(self, x):
            return x * 10

    def scaled(x, k):
        return x * k

    with rigwire.Server("tcp://127.0.0.1:0") as s:

        @s.expose
        async def later(x, cancelled):
            await asyncio.sleep(0.01)
            return {"twice": x * 2, "cancelled": cancelled()}

        s.expose(functools.partial(scaled, k=3), name="triple")
        s.expose(Scale(), name="scale")
        # Without a name there is nothing to expose it as: said at once.
        with pytest.raises(TypeError, match="name="):
            s.expose(functools.partial(scaled, k=3))
        # A lambda's own name is "<lambda>": it was exposed under that name.
        with pytest.raises(TypeError, match="a lambda has no name of its own"):
            s.expose(lambda x: x)
        s.expose(lambda x: -x, name="negate")
        # An empty name is refused, not replaced by the function's.
        with pytest.raises(rigwire.Error, match="1 to 255 bytes, got 0"):
            s.expose(scaled, name="")
        s.start()
        with rigwire.connect(s.url) as c:
            # An `async def` once answered "a coroutine is not JSON serializable".
            assert c.call("later", 2) == {"twice": 4, "cancelled": False}
            assert c.call("triple", 2) == 6
            assert c.call("scale", 2) == 20
            assert c.call("negate", 2) == -2
            with pytest.raises(rigwire.RemoteError) as e:
                c.call("triple", 1, 2, 3)
            assert e.value.kind == "BadArguments" and "triple" in str(e.value)
            methods = {m["name"]: m["signature"] for m in c.call("rigwire.methods")}
            assert methods["later"].startswith("async later(x, cancelled)")


def test_async_handlers_share_one_loop_so_what_they_keep_between_calls_works():
    # Each `async def` once ran on an event loop of its own: an asyncio
    # object made in one call (an Event, a Queue, an open stream) did not
    # work in the next, which a rig keeping a device's stream open meets.
    import asyncio

    with rigwire.Server("tcp://127.0.0.1:0") as s:
        kept = {}
        waiting_for_go = threading.Event()
        loops = []  # kept alive, so that no two have the same id

        def go_event():
            loops.append(asyncio.get_running_loop())
            return kept.setdefault("go", asyncio.Event())

        @s.expose
        async def wait_for_go():
            event = go_event()
            waiting_for_go.set()
            await asyncio.wait_for(event.wait(), 5)
            return "went"

        @s.expose
        async def go():
            go_event().set()
            return True

        @s.expose
        async def ask_back(x, caller):
            # Awaited: a blocking call back would hold up every async handler.
            assert isinstance(caller, rigwire.aio.Client)
            return await caller.call("double", x)

        s.start()
        with rigwire.connect(s.url, expose={"double": lambda x: 2 * x}) as c:
            waiting = c.start("wait_for_go", timeout=10)
            assert waiting_for_go.wait(10)
            assert c.call("go") is True
            assert waiting.result() == "went"
            assert len({id(loop) for loop in loops}) == 1
            assert c.call("ask_back", 21) == 42


def test_what_rigwire_logs_reaches_pythons_logging(caplog):
    # A notify whose handler raised, and one to a name nobody exposes, once
    # went unheard: rigwire logged them where Python does not look.
    import logging

    def said():
        return [r for r in caplog.records if r.name == "rigwire"]

    with rigwire.Server("tcp://127.0.0.1:0") as s:

        @s.expose
        def on_event(x):
            raise ValueError(f"bad event {x}")

        s.start()
        with caplog.at_level(logging.WARNING, logger="rigwire"), rigwire.connect(s.url) as c:
            c.notify("on_event", 5)
            c.notify("no_such_handler", 5)
            until = time.monotonic() + 10
            while len(said()) < 2 and time.monotonic() < until:
                time.sleep(0.02)
    messages = [r.getMessage() for r in said()]
    assert any("ValueError: bad event 5" in m and "on_event" in m for m in messages), messages
    assert any("NoSuchMethod" in m and "no_such_handler" in m for m in messages), messages
    assert all(r.levelno == logging.WARNING for r in said()), messages


def test_an_async_handler_that_blocks_the_handler_loop_is_named_with_its_line(caplog):
    # `time.sleep` in an `async def` handler holds every other async
    # handler and hook: their calls waited in silence.
    import asyncio
    import logging

    with rigwire.Server("tcp://127.0.0.1:0") as s:

        @s.expose
        async def waits_nicely():
            await asyncio.sleep(3)

        @s.expose
        async def grab_frame():
            time.sleep(3)  # the blocking call, by mistake

        s.start()
        with caplog.at_level(logging.WARNING, logger="rigwire"), rigwire.connect(s.url, timeout=20) as c:
            nice = c.start("waits_nicely")
            c.call("grab_frame")
            nice.result()
    said = [r.getMessage() for r in caplog.records if r.name == "rigwire" and "blocked" in r.getMessage()]
    import inspect

    source, first = inspect.getsourcelines(grab_frame)
    line = first + next(i for i, text in enumerate(source) if "time.sleep(3)" in text)
    assert any(f"blocked for over 1 s by grab_frame (at {__file__}:{line})" in m for m in said), said
    assert any("write it as a plain def" in m for m in said), said
    assert not any("waits_nicely" in m for m in said), said


def test_an_object_whose_call_is_async_is_awaited_and_a_hook_that_makes_a_coroutine_fails():
    # An instance with `async def __call__` was taken for a plain function:
    # as a hook it never ran and its step succeeded; as a handler it was
    # refused "a coroutine is not JSON serializable (await it first…)".
    import asyncio

    class Camera:
        started = None

        async def __call__(self, exp_ref):
            await asyncio.sleep(0.01)
            self.started = exp_ref

    class Probe:
        async def __call__(self):
            await asyncio.sleep(0.01)
            return "probed"

    def cleanup():
        return asyncio.sleep(0)  # a coroutine nothing awaits

    camera = Camera()
    with rigwire.Server("tcp://127.0.0.1:0") as s:
        rig = rigwire.Rig()
        rig.on_start(camera)
        rig.on_cleanup(cleanup)
        rig.expose(s)
        s.expose(Probe(), name="probe")
        s.start()
        with rigwire.connect(s.url, timeout=10) as c:
            assert c.call("probe") == "probed"
            c.call("exp.init")
            assert c.call("exp.start", "2026-11-28_1_ZM_1") == "running"
            assert camera.started == "2026-11-28_1_ZM_1"
            c.call("exp.stop")
            with pytest.raises(rigwire.RemoteError) as e:
                c.call("exp.cleanup")
            assert "cleanup returned coroutine that nothing awaits: write the hook async def" in str(e.value)


def test_connect_and_disconnect_hooks_see_each_peer_once_and_why_it_left():
    seen = []
    greeted, done = threading.Event(), threading.Event()
    with rigwire.Server("tcp://127.0.0.1:0", secret="hooks-secret-0123456789") as s:

        @s.on_connect
        def hello(peer):
            seen.append(("connect", peer.peer_name, peer.call("whoami")))
            greeted.set()

        @s.on_disconnect
        def bye(peer, reason):
            seen.append(("disconnect", peer.peer_name, "closed" in reason))
            done.set()

        s.start()
        # A wrong secret never connects: neither hook runs for it.
        with pytest.raises(rigwire.AuthenticationFailed):
            rigwire.connect(s.url, secret="not-the-secret-0123456")
        with rigwire.connect(s.url, name="script", secret="hooks-secret-0123456789", expose={"whoami": lambda: "me"}):
            assert greeted.wait(10)  # the hook may call the peer back
        assert done.wait(10)
        # Hooks are set before serving.
        with pytest.raises(RuntimeError, match="before serving"):
            s.on_connect(print)
    assert seen == [("connect", "script", "me"), ("disconnect", "script", True)]


# A script that starts a server and ends while a peer's call runs its
# handler: the handler returns as Python exits (`release.set()`, the last
# line). Python ends a thread that takes the GIL once it finalizes, and on
# rigwire's threads that aborted the process ("Fatal Python error:
# PyGILState_Release"), every time; now the exit waits for the handler.
EXIT_SCRIPT = """
import sys, threading
import rigwire
rigwire.EXIT_WAIT = float(sys.argv[1])
release = threading.Event()
s = rigwire.Server("tcp://127.0.0.1:0")
s.expose(lambda: release.wait() and "done", name="slow")
s.expose(lambda: threading.Event().wait(), name="never")
s.start()
c = rigwire.connect(s.url)
for method in sys.argv[2:]:
    try:
        c.call(method, timeout=0.2)
    except rigwire.DeadlineExceeded:
        pass
release.set()
"""


def _exit_of(wait, *methods):
    out = subprocess.run(
        [sys.executable, "-c", EXIT_SCRIPT, str(wait), *methods],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "Fatal Python error" not in out.stderr, out.stderr
    assert out.returncode == 0, out.stderr
    return out.stderr


def test_a_script_that_ends_while_a_handler_runs_exits_cleanly():
    for _ in range(3):
        assert "still running" not in _exit_of(30, "slow", "slow")


def test_a_script_whose_handler_never_returns_exits_after_its_exit_wait_saying_so():
    said = _exit_of(0.6, "never")
    assert "waiting up to 0.6 s for 1 rigwire handler(s) still running" in said, said
    assert "exiting with 1 rigwire handler(s) still running" in said, said


def test_a_call_that_arrives_while_python_exits_is_refused_unrun():
    # The gate is the process's, and stays closed: closed in a child.
    out = subprocess.run([sys.executable, "-c", EXIT_GATE_SCRIPT], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "Unavailable: not run: the Python interpreter serving it is exiting" in out.stdout, out.stdout


EXIT_GATE_SCRIPT = """
import rigwire
ran = []
s = rigwire.Server("tcp://127.0.0.1:0")
s.expose(lambda: ran.append(1), name="work")
s.start()
c = rigwire.connect(s.url)
rigwire._rigwire.close()  # what the exit does first
try:
    c.call("work", timeout=10)
except rigwire.Unavailable as e:
    print("Unavailable:", e)
assert ran == []
"""


# A rig the experiment ends by calling its `quit`: the handler shuts its own
# server down. That once waited for the handler itself, the whole grace,
# answered the call `Shutdown` instead of "bye", and `serve_forever` never
# returned, so the rig's process stayed.
QUIT_RIG = """
import asyncio, os, sys
import rigwire
kind = sys.argv[1]
url = None if kind == "relay" else "tcp://127.0.0.1:0"
s = rigwire.Server(url, name="lamp", secret=os.environ.get("QUIT_RIG_SECRET"))
if kind in ("plain", "relay"):
    @s.expose
    def quit():
        s.shutdown()
        return "bye"
elif kind == "async":
    @s.expose
    async def quit():
        s.shutdown()
        await asyncio.sleep(0.05)
        return "bye"
else:
    rig = rigwire.Rig()
    rig.on_cleanup(lambda: s.shutdown())
    rig.expose(s)
if kind == "relay":
    s.serve_via(sys.argv[2], as_="lamp")
print(s.url, flush=True)
s.serve_forever()
print("serve_forever returned", flush=True)
"""


def test_serve_forever_after_a_shutdown_returns_at_once():
    # A rig's `quit` handler may run before its script reaches
    # serve_forever: that then raised "the server has shut down" (or,
    # serving through a relay, "nothing to serve on"), failing the rig's
    # process, one run in CI's.
    s = rigwire.Server("tcp://127.0.0.1:0").start()
    s.shutdown()
    s.serve_forever()
    relayed = rigwire.Server(None)
    relayed.shutdown()
    relayed.serve_forever()


@pytest.mark.parametrize("kind", ["plain", "async", "hook", "relay"])
def test_a_rig_shut_down_by_its_own_handler_answers_and_its_process_ends(kind):
    # Through a relay too: its shutdown closed the relay's connection at
    # once, and the answer to `quit` was lost with it.
    relay = None
    args = [kind]
    if kind == "relay":
        relay = subprocess.Popen(
            [BIN, "relay", "--clients", "tcp://127.0.0.1:0", "--services", "ws://127.0.0.1:0/services"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "RIGWIRE_SECRET": SECRET, "RIGWIRE_SERVICE_SECRET": SECRET},
            text=True,
        )
        urls = dict(reversed(relay.stdout.readline().split()[1:]) for _ in range(2))
        args.append(urls["services"])
    env = {**os.environ, "QUIT_RIG_SECRET": SECRET} if relay else None
    rig = subprocess.Popen(
        [sys.executable, "-c", QUIT_RIG, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        url = rig.stdout.readline().strip()
        if relay:
            url = urls["clients"] + "#lamp"
        with rigwire.connect(url, secret=SECRET if relay else None) as c:
            if kind == "hook":
                c.call("exp.init", timeout=30)
                assert c.call("exp.cleanup", timeout=30) == "connected"
            else:
                assert c.call("quit", timeout=30) == "bye"
        out, err = rig.communicate(timeout=30)
        assert rig.returncode == 0, err
        assert "serve_forever returned" in out
    finally:
        rig.kill()
        if relay:
            relay.kill()
            relay.communicate()


def test_a_handler_answers_with_the_kind_it_raises_in_its_own_words():
    # `raise rigwire.RemoteError(message, kind=...)` is how a handler (or a
    # hook) answers with a kind; it once read "BadArguments: RemoteError:
    # BadArguments: subject not found".
    with rigwire.Server("tcp://127.0.0.1:0") as s:

        @s.expose
        def load(subject):
            raise rigwire.RemoteError(f"no subject {subject}", kind="BadArguments")

        @s.expose
        def acquire():
            raise rigwire.RemoteError("the camera is recording", kind="Busy")

        rig = rigwire.Rig()
        rig.on_init(lambda: (_ for _ in ()).throw(rigwire.RemoteError("no subject", kind="Refused")))
        rig.expose(s)
        s.start()
        with rigwire.connect(s.url) as c:
            with pytest.raises(rigwire.RemoteError) as e:
                c.call("load", "ZM_9")
            assert (e.value.kind, e.value.message) == ("BadArguments", "no subject ZM_9")
            assert str(e.value) == "BadArguments: no subject ZM_9"
            assert "raise rigwire.RemoteError" in e.value.detail
            with pytest.raises(rigwire.Busy, match="the camera is recording"):
                c.call("acquire")
            with pytest.raises(rigwire.RemoteError) as e:
                c.call("exp.init")
            assert (e.value.kind, e.value.message) == ("Refused", "no subject")


def test_what_cannot_be_a_handler_is_refused_when_exposed():
    class RigService:  # as an RPyC service is written
        def exposed_move(self, x, y=0):
            return [x, y]

    server = rigwire.Server("tcp://127.0.0.1:0")
    # The class would have been a method "RigService" making an instance.
    with pytest.raises(TypeError, match=r"RigService is an RPyC-style service \(exposed_move\): expose each method, "
                       r"server.expose\(service.exposed_move, name='move'\)"):
        server.expose(RigService)
    with pytest.raises(TypeError, match="a RigService is an RPyC-style service"):
        server.expose(RigService())
    with pytest.raises(TypeError, match="a int is not callable"):
        server.expose(3, name="three")
    server.expose(RigService().exposed_move, name="move")
    with server.start(), rigwire.connect(server.url) as c:
        assert c.call("move", x=1, y=2) == [1, 2]


def test_a_hook_that_cannot_take_its_call_is_refused_when_registered():
    rig = rigwire.Rig()
    with pytest.raises(TypeError, match=r"the on_init hook init\(a, b\) cannot take its call: it is called with "
                       r"the init data as its one argument, or with nothing \(missing a required argument: 'b'\)"):
        @rig.on_init
        def init(a, b):
            pass

    with pytest.raises(TypeError, match=r"the on_start hook start\(\*, exp_ref\) cannot take its call"):
        @rig.on_start
        def start(*, exp_ref):
            pass

    # What fits is taken: one value, nothing, defaults, *args, caller.
    rig.on_init(lambda data=None: None)
    rig.on_start(lambda *args: None)
    rig.on_stop(lambda immediately, caller: None)
    rig.on_cleanup(lambda: None)
    server = rigwire.Server("tcp://127.0.0.1:0")
    with pytest.raises(TypeError, match=r"the on_connect hook hello\(\) cannot take its call: it is called with the peer"):
        @server.on_connect
        def hello():
            pass

    with pytest.raises(TypeError, match=r"the on_disconnect hook gone\(peer\) cannot take its call: it is called with "
                       r"the peer \(a Client\) and the reason"):
        @server.on_disconnect
        def gone(peer):
            pass

    server.on_connect(lambda peer: None)
    server.on_disconnect(lambda peer, reason: None)
