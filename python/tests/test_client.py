"""The blocking client against rigwire's own rigs, in both runtimes."""

import asyncio
import json
import re
import resource
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

import rigwire
import rigwire.aio
from conftest import SECRET, Rig, rss_kib


def test_calls_in_the_familiar_shapes(rig):
    with rigwire.connect(rig.url, name="script") as c:
        assert c.call("add", 1, 2) == 3
        assert c.root.add(1.5, 2) == 3.5
        assert c.root.exp.status() == "connected"
        # keyword arguments travel as one JSON object
        assert c.call("exp.init", subject="ZM_1") == "initialized"
        assert c.call("echo", {"trial": 3, "valves": [True, False]}) == {"trial": 3, "valves": [True, False]}
        assert c.call("echo") is None
        names = [m["name"] for m in c.methods()]
        assert {"echo", "add", "sleep"} <= set(names)
        assert 0 < c.ping() < 5
        c.notify("echo", "a notify")
        assert c.url == rig.url


def test_a_client_made_as_other_libraries_make_one_says_how_rigwire_does(rig):
    # As many libraries have it: Client(url). The client is made by connect,
    # and saying so beats "'str' object has no attribute 'call'" at the first call.
    with pytest.raises(TypeError, match=r"not made from a URL: use rigwire.connect\('tcp://"):
        rigwire.Client(rig.url)
    with pytest.raises(TypeError, match=r"use await rigwire.aio.connect\('tcp://"):
        rigwire.aio.Client(rig.url)
    with pytest.raises(TypeError, match=r"made by rigwire.connect\(url, ...\), not from NoneType"):
        rigwire.Client(None)
    with rigwire.connect(rig.url) as c:
        assert rigwire.aio.Client(c).url == rig.url
    # RPyC's connect(host, port), and a URL that is not text.
    host, port = rig.url.removeprefix("tcp://").rsplit(":", 1)
    with pytest.raises(TypeError, match=rf"rigwire.connect takes one URL, not a host and a port: "
                       rf"rigwire.connect\('tcp://{host}:{port}'\); its second argument is this side's name"):
        rigwire.connect(host, int(port))
    with pytest.raises(TypeError, match=r"rigwire.aio.connect takes one URL"):
        asyncio.run(rigwire.aio.connect(host, int(port)))
    with pytest.raises(TypeError, match=r"rigwire.Server takes one URL"):
        rigwire.Server("0.0.0.0", 18861)
    with pytest.raises(TypeError, match=r"the URL is a str such as 'tcp://rig-1:7400', not tuple"):
        rigwire.connect((host, int(port)))
    with pytest.raises(TypeError, match=r"name is this side's name, a str, not int \(3\)"):
        rigwire.connect(rig.url, 3)
    # A URL rigwire does not understand is a ValueError, as Python's own are;
    # and a line read from a file, newline and all, is said to be one.
    with pytest.raises(ValueError, match=r"the port is missing") as bad:
        rigwire.connect("tcp://rig-1")
    assert isinstance(bad.value, rigwire.InvalidUrl) and isinstance(bad.value, rigwire.Error)
    with pytest.raises(rigwire.InvalidUrl, match=r"white space around it .*strip it"):
        rigwire.connect(rig.url + "\n")
    with pytest.raises(rigwire.InvalidUrl, match=r"unknown scheme 'smtp'"):
        rigwire.Server("smtp://127.0.0.1:0")
    # So are settings rigwire refuses.
    with pytest.raises(ValueError, match=r"name is 300 bytes; at most 255") as bad:
        rigwire.connect(rig.url, "x" * 300)
    assert isinstance(bad.value, rigwire.InvalidConfig)
    with pytest.raises(rigwire.InvalidConfig, match=r"the name is empty"):
        rigwire.Server("tcp://127.0.0.1:0", name="").start()
    with pytest.raises(rigwire.InvalidConfig, match=r"at least 16"):
        rigwire.connect(rig.url, secret="short")
    with pytest.raises(rigwire.InvalidConfig, match=r"cannot read the secret"):
        rigwire.connect(rig.url, secret_file="/no/such/lab.secret")


def test_the_submodules_the_docs_use_are_there_after_import_rigwire():
    # In a fresh interpreter: this one imported rigwire.aio above.
    script = (
        "import sys, rigwire\n"
        "assert 'rigwire.aio' not in sys.modules, 'loaded without being asked for'\n"
        "print(rigwire.aio.connect.__module__, rigwire.ibl.__name__)\n"
        "try:\n"
        "    rigwire.nope\n"
        "except AttributeError as e:\n"
        "    print(e)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "rigwire.aio rigwire.ibl",
        "module 'rigwire' has no attribute 'nope'",
    ]


def test_a_started_call_is_a_future(rig):
    with rigwire.connect(rig.url) as c:
        call = c.start("sleep", 0.3)
        with pytest.raises(TimeoutError):
            call.result(timeout=0.01)
        assert call.result(timeout=10) == 0.3
        assert call.done()
        assert call.result() == 0.3  # again: the same result
        long = c.start("sleep", 30)
        assert not long.done()
        assert long.cancel()
        with pytest.raises(rigwire.Cancelled):
            long.result()
        # the connection is still good
        assert c.call("add", 2, 2) == 4


def test_a_started_call_dropped_in_flight_is_cancelled_aloud(rig):
    # `c.start(...)` left unassigned, as one would start background work,
    # was cancelled at once, silently: the rig never ran it.
    import inspect

    with rigwire.connect(rig.url) as c:
        with pytest.warns(RuntimeWarning, match="the call to 'sleep' was dropped before its answer") as w:
            c.start("sleep", 30); line = inspect.currentframe().f_lineno  # noqa: E702
        assert (w[0].filename, w[0].lineno) == (__file__, line)
        # Not when it was answered, cancelled on purpose, or left by a map.
        done = c.start("sleep", 0)
        assert done.result(timeout=10) == 0
        cancelled = c.start("sleep", 30)
        cancelled.cancel()
        mapped = c.map("sleep", [0.2] * 4)
        next(mapped)
        del done, cancelled, mapped  # pytest turns any warning here into an error
        assert c.call("add", 2, 2) == 4


def test_a_second_thread_waiting_for_the_same_call_costs_no_cpu(rig):
    # It once looked every millisecond: 46 ms of CPU for a 1.5 s wait.
    with rigwire.connect(rig.url) as c:
        call = c.start("sleep", 1.5)
        first = threading.Thread(target=call.result)
        first.start()
        time.sleep(0.1)  # the first thread holds the wait
        spent, got = time.thread_time(), call.result(timeout=10)
        spent = time.thread_time() - spent
        first.join()
        assert got == 1.5
        assert spent < 0.015, f"{spent * 1000:.1f} ms of CPU waiting for another thread's wait"
        assert call.result() == 1.5


def test_errors_are_typed(rig):
    with rigwire.connect(rig.url) as c:
        with pytest.raises(rigwire.NoSuchMethod) as e:
            c.call("launch_missiles")
        assert e.value.kind == "NoSuchMethod" and "launch_missiles" in str(e.value)
        with pytest.raises(rigwire.RemoteError) as e:
            c.call("exp.start", "2026-13-01_1_mouse")
        assert e.value.kind == "BadArguments"
        with pytest.raises(rigwire.DeadlineExceeded) as e:
            c.call("sleep", 5, timeout=0.2)
        assert isinstance(e.value, TimeoutError) and isinstance(e.value, rigwire.Error)
        with pytest.raises(TypeError, match="JSON"):
            c.call("echo", object())
        with pytest.raises(TypeError, match="not both"):
            c.call("add", 1, b=2)
        with pytest.raises(ValueError):
            c.call("add", 1, 2, timeout=-1)
    c.close()
    with pytest.raises(rigwire.Disconnected) as e:
        c.call("add", 1, 2)
    assert isinstance(e.value, ConnectionError)


def test_a_deadline_names_the_call_and_how_long_it_had(rig):
    # "deadline exceeded" alone does not say which of a script's calls ran
    # out of time, or whether it was the timeout the script meant.
    said = "no answer to 'sleep' within 0.2 s (the peer was told to cancel it)"
    with rigwire.connect(rig.url) as c:
        with pytest.raises(rigwire.DeadlineExceeded, match=re.escape(said)):
            c.call("sleep", 5, timeout=0.2)
        with pytest.raises(rigwire.DeadlineExceeded, match=re.escape(said)):
            c.start("sleep", 5, timeout=0.2).result()
        [call] = c._native.start_batch("sleep", ["5"], 0.2)
        with pytest.raises(rigwire.DeadlineExceeded, match=re.escape(said)):
            call.result()
    # Without its own timeout, a call has the connection's.
    with rigwire.connect(rig.url, timeout=0.2) as c:
        with pytest.raises(rigwire.DeadlineExceeded, match=re.escape(said)):
            c.call("sleep", 5)
    with rigwire.Group({"a": rig.url}) as rigs:
        results = rigs.call("sleep", 5, timeout=0.2)
        assert said in str(results.failed["a"])


def test_a_rig_that_dies_mid_call_is_reported_disconnected():
    r = Rig("std")
    c = rigwire.connect(r.url)
    call = c.start("sleep", 30)
    time.sleep(0.2)
    r.stop()
    with pytest.raises(rigwire.Disconnected):
        call.result(timeout=10)


@pytest.mark.timeout(20)  # a call that waited out the default round would take 26 s
def test_reconnect_makes_a_lost_connection_again_on_the_next_call():
    first = Rig("std")
    client = rigwire.connect(first.url, timeout=5, reconnect=True)
    group = rigwire.Group({"rig": first.url}, timeout=5, reconnect=True)
    plain = rigwire.connect(first.url, timeout=5)
    assert client.call("add", 1, 2) == 3
    in_flight = client.start("sleep", 30)
    time.sleep(0.2)
    first.stop()
    # It may have run: a call in flight is never made again.
    with pytest.raises(rigwire.Disconnected):
        in_flight.result(timeout=10)
    # While it is away, a call with a deadline gives up by then (the default
    # round would try for 26 s), with the last attempt's error.
    with pytest.raises(rigwire.ConnectFailed):
        client.call("add", 1, 1, timeout=0.5)
    again = Rig("smol", listen=first.url)  # the rig restarted, on its port
    try:
        assert client.call("add", 2, 2) == 4
        assert group.status() == {"rig": "connected"}

        async def awaited():
            async with await rigwire.aio.connect(again.url, reconnect=True) as rig:
                return await rig.call("add", 3, 3)

        assert asyncio.run(awaited()) == 6
        # Without reconnect, a lost connection stays lost.
        with pytest.raises(rigwire.Disconnected):
            plain.call("add", 1, 1)
    finally:
        for c in (client, group, plain):
            c.close()
        again.stop()


def test_secrets(secret_rig, tmp_path, monkeypatch):
    monkeypatch.delenv("RIGWIRE_SECRET", raising=False)
    with rigwire.connect(secret_rig.url, secret=SECRET) as c:
        assert c.call("add", 1, 2) == 3
    path = tmp_path / "lab.secret"
    path.write_text(SECRET + "\n")
    with rigwire.connect(secret_rig.url, secret_file=path) as c:
        assert c.call("add", 1, 2) == 3
    with pytest.raises(rigwire.AuthenticationFailed):
        rigwire.connect(secret_rig.url, secret="a wrong secret, long enough")
    with pytest.raises(rigwire.AuthenticationFailed) as e:
        rigwire.connect(secret_rig.url)
    assert "RIGWIRE_SECRET" not in str(e.value)
    with pytest.raises(ValueError, match="16"):
        rigwire.connect(secret_rig.url, secret="short")
    # The file read whole keeps its line break, which secret_file= leaves
    # out: refused, saying so, not "the shared secrets differ" at the peer.
    with pytest.raises(ValueError, match="ends in a line break, as a file read whole does"):
        rigwire.connect(secret_rig.url, secret=path.read_text())
    with pytest.raises(ValueError, match="not both"):
        rigwire.connect(secret_rig.url, secret=SECRET, secret_file=path)


def test_a_missing_secret_while_rigwire_secret_is_set_says_the_package_does_not_read_it(secret_rig, monkeypatch):
    # A lab exports RIGWIRE_SECRET for the rigwire command; a script that
    # then passes no secret was told only "none is configured here".
    monkeypatch.setenv("RIGWIRE_SECRET", SECRET)
    with pytest.raises(rigwire.AuthenticationFailed) as e:
        rigwire.connect(secret_rig.url)
    assert 'only the rigwire command reads it: pass secret_file=... or secret=os.environ["RIGWIRE_SECRET"]' in str(e.value)
    with pytest.raises(rigwire.GroupError) as e:
        rigwire.Group({"rig-1": secret_rig.url})
    assert "only the rigwire command reads it" in str(e.value.failed["rig-1"])


def test_the_timeout_bounds_the_handshake_too():
    frozen = Rig("std")
    frozen.freeze()  # accepts, then says nothing
    try:
        # A connection that never was: ConnectFailed, with the likely causes.
        with pytest.raises(rigwire.ConnectFailed) as e:
            rigwire.connect(frozen.url, timeout=0.5)
        assert "no rigwire handshake within 500ms: the port took the connection, then said nothing" in str(e.value)
    finally:
        frozen.thaw()
        frozen.stop()


def test_connect_failures():
    with pytest.raises(rigwire.ConnectFailed) as e:
        rigwire.connect("tcp://127.0.0.1:1", timeout=2)
    assert isinstance(e.value, ConnectionError)
    with pytest.raises(rigwire.Error):
        rigwire.connect("http://example.org")


def test_eight_threads_share_one_client(rig):
    with rigwire.connect(rig.url) as c:
        results = [[] for _ in range(8)]
        slow = c.start("sleep", 0.5)  # in flight all along

        def work(k):
            for i in range(100):
                results[k].append(c.call("add", k, i))

        threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert not any(t.is_alive() for t in threads)
        for k in range(8):
            assert results[k] == [k + i for i in range(100)]
        assert slow.result(timeout=10) == 0.5


def test_ten_thousand_calls_leave_memory_flat(rig):
    with rigwire.connect(rig.url) as c:
        for i in range(1000):
            c.call("add", i, 1)
        before = rss_kib()
        for i in range(10_000):
            assert c.call("add", i, 1) == i + 1
        grown = rss_kib() - before
    assert grown < 8 * 1024, f"resident memory grew by {grown} KiB over 10,000 calls"


def test_map_keeps_a_window_in_flight_and_yields_in_order(rig):
    with rigwire.connect(rig.url) as c:
        assert list(c.map("add", [(i, 1) for i in range(1000)], window=16)) == [i + 1 for i in range(1000)]
        assert list(c.map("echo", [b"\x00a", "b", {"c": [1]}], window=1)) == [b"\x00a", "b", {"c": [1]}]
        assert list(c.map("echo", [])) == []
        with pytest.raises(ValueError):
            next(c.map("echo", [1], window=0))
        results = c.map("add", [(1, 1), ("x", 1), (2, 2)])
        assert next(results) == 2
        with pytest.raises(rigwire.RemoteError) as e:
            next(results)
        assert e.value.kind == "BadArguments"
        assert list(results) == []  # the first failure ends it
        assert c.call("add", 1, 2) == 3


def test_closing_a_map_early_cancels_the_calls_in_flight():
    rig = Rig("std", log=True)
    try:
        with rigwire.connect(rig.url) as c:
            results = c.map("sleep", [0.01, 30, 30, 30], window=4)
            assert next(results) == pytest.approx(0.01, abs=0.5)
            results.close()
            # The rig saw the cancels: the sleeps stopped early, their
            # answers went nowhere.
            dropped = [f"reply to call {i} dropped" for i in (2, 3, 4)]
            log = rig.stop_when_logged(*dropped)
        assert all(line in log for line in dropped), log
    finally:
        if rig.process.returncode is None:
            rig.stop()


CTRL_C_SCRIPT = """
import sys, rigwire
c = rigwire.connect(sys.argv[1])
print("calling", flush=True)
c.call("sleep", 30)
"""


def test_ctrl_c_interrupts_a_waiting_call_and_cancels_it():
    rig = Rig("std", log=True)
    try:
        child = subprocess.Popen(
            [sys.executable, "-c", CTRL_C_SCRIPT, rig.url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert child.stdout.readline().strip() == "calling"
        time.sleep(0.5)  # the call is in flight, its thread waiting
        started = time.monotonic()
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=20)
        assert child.returncode != 0
        assert "KeyboardInterrupt" in err, err
        # Well before the sleep's 30 s: the wait did not outlast Ctrl-C.
        assert time.monotonic() - started < 15
        # The rig saw the cancel: its handler stopped early, and its answer
        # went nowhere.
        log = rig.stop_when_logged("reply to call 1 dropped")
        assert "reply to call 1 dropped" in log, log
    finally:
        if rig.process.returncode is None:
            rig.stop()


FORK_SCRIPT = """
import os, sys, rigwire
c = rigwire.connect(sys.argv[1])
server = rigwire.Server("tcp://127.0.0.1:0")
server.expose(lambda: 1, name="one")
async def twice(x):
    return 2 * x
server.expose(twice)
server.start()
with rigwire.connect(server.url) as mine:
    assert mine.call("twice", 1) == 2  # the handler loop runs, in the parent
call = c.start("sleep", 0.2)
assert c.call("add", 1, 2) == 3
pid = os.fork()
if pid == 0:
    # The child: the parent's connection, call and server are not its own.
    for use in (lambda: c.call("add", 2, 2), lambda: call.result(), lambda: server.url):
        try:
            use()
            print("child: used the parent's", flush=True)
        except rigwire.Error as e:
            print("child:", "before os.fork()" in str(e), flush=True)
    # Its own async handlers run on a loop of its own: the parent's loop
    # thread was not forked.
    own = rigwire.Server("tcp://127.0.0.1:0")
    own.expose(twice)
    own.start()
    with rigwire.connect(own.url, timeout=5) as mine:
        print("child serves:", mine.call("twice", 4), flush=True)
    own.shutdown()
    c.close()  # nothing to close here
    sys.exit(0)  # a normal exit: nothing of the parent's is dropped
_, status = os.waitpid(pid, 0)
print("child exit:", os.waitstatus_to_exitcode(status), flush=True)
print("parent:", c.call("add", 3, 3), call.result(timeout=5), flush=True)
with rigwire.connect(server.url) as mine:
    print("parent serves:", mine.call("one"), flush=True)
server.shutdown()
"""


def test_a_forked_child_is_told_the_parents_connections_are_not_its_own(rig):
    # The child once used (and on exit said goodbye on) the parent's socket.
    out = subprocess.run([sys.executable, "-c", FORK_SCRIPT, rig.url], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "child: True",
        "child: True",
        "child: True",
        "child serves: 8",
        "child exit: 0",
        "parent: 6.0 0.2",
        "parent serves: 1",
    ], out.stdout + out.stderr


CONNECT_CTRL_C_SCRIPT = """
import sys, rigwire
print("connecting", flush=True)
if sys.argv[2] == "group":
    rigwire.Group({"rig": sys.argv[1]}, timeout=120)
else:
    rigwire.connect(sys.argv[1], timeout=120)
"""


def ctrl_c_ends(script: str, *args: str, line: str, waiting=lambda: None) -> None:
    """Runs ``script`` in a child Python, waits for it to print ``line`` and
    for ``waiting()`` to return (the child blocks now), presses Ctrl-C, and
    checks that the child ended by ``KeyboardInterrupt`` long before its own
    timeouts of 120 s (it is given 30)."""
    child = subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout.readline().strip() == line
        waiting()
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=30)
    finally:
        child.kill()
    assert child.returncode != 0
    assert "KeyboardInterrupt" in err, err


@pytest.mark.parametrize("how", ["connect", "group"])
def test_ctrl_c_interrupts_a_connect_to_a_rig_that_does_not_answer(how):
    # A server that accepts and never answers the websocket upgrade: the
    # connect would wait out its whole 120 s timeout.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        accepted = []
        url = f"ws://127.0.0.1:{listener.getsockname()[1]}/rig"
        try:
            ctrl_c_ends(CONNECT_CTRL_C_SCRIPT, url, how, line="connecting",
                        waiting=lambda: accepted.append(listener.accept()[0]))
        finally:
            for socket_ in accepted:
                socket_.close()


IBL_CTRL_C_SCRIPT = """
import sys, rigwire.ibl
services = rigwire.ibl.Services({"rig": sys.argv[1]}, timeout=120, echo_timeout=120)
print("initialising", flush=True)
services.init({"subject": "ZM_1"})
"""


def test_ctrl_c_interrupts_an_iblutil_step_waiting_for_a_silent_rig():
    # A UDP "rig" that takes the message and never echoes it.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rig:
        rig.bind(("127.0.0.1", 0))
        rig.settimeout(20)
        url = f"udp://127.0.0.1:{rig.getsockname()[1]}"
        # Once the init has reached the rig, the step waits for its echo.
        ctrl_c_ends(IBL_CTRL_C_SCRIPT, url, line="initialising", waiting=lambda: rig.recvfrom(65536))


def test_the_largest_timeouts_mean_no_limit_not_a_panic(rig):
    # 2^64 seconds is the most a timeout may be; adding it to the clock used
    # to overflow inside (PanicException) for connect, result and wait_event.
    most = 1.8e19
    with rigwire.connect(rig.url, timeout=most) as c:
        assert c.call("add", 1, 2, timeout=most) == 3
        assert c.start("add", 2, 2).result(timeout=most) == 4
    with rigwire.Group({"rig": rig.url}, timeout=most) as rigs:
        assert rigs.call("add", 3, 3) == {"rig": 6}
    with pytest.raises(ValueError, match=r"from 0 to 2\^64 \(None for no limit\), got 1e20$"):
        rigwire.connect(rig.url, timeout=1e20)
    with pytest.raises(ValueError, match=r", got -0.5$"):
        rigwire.connect(rig.url, timeout=-0.5)
