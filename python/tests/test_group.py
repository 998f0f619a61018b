"""Groups of rigs from Python: rigs of both Rust runtimes driven together."""

import asyncio
import signal
import subprocess
import sys
import threading
import time
import warnings

import pytest

import rigwire
import rigwire.aio
from conftest import Rig


@pytest.fixture
def rigs():
    started = {"rig-1": Rig("std"), "rig-2": Rig("smol"), "rig-3": Rig("std")}
    yield started
    for r in started.values():
        if r.process.returncode is None:
            r.stop()


def test_a_whole_experiment_on_a_mixed_group(rigs):
    with rigwire.Group({n: r.url for n, r in rigs.items()}) as group:
        assert group.names == ["rig-1", "rig-2", "rig-3"]
        assert group.status() == {n: "connected" for n in rigs}
        assert group.init(subject="ZM_1").raise_on_failure() == {n: "initialized" for n in rigs}
        assert group.start("2026-11-26_1_ZM_1").ok()
        assert group.status() == {n: "running" for n in rigs}
        info = {"status": "running", "exp_ref": "2026-11-26_1_ZM_1", "interrupted": False}
        assert group.info() == {n: info for n in rigs}
        assert group.stop(immediately=True) == {n: "stopped" for n in rigs}
        assert group.cleanup() == {n: "connected" for n in rigs}


def test_a_failing_rig_is_named_and_the_others_answers_are_kept(rigs):
    group = rigwire.Group({n: r.url for n, r in rigs.items()})
    # A step out of order on one rig only.
    rigwire.connect(rigs["rig-2"].url).call("exp.init")
    results = group.init()
    assert results == {"rig-1": "initialized", "rig-3": "initialized"}
    assert list(results.failed) == ["rig-2"]
    assert isinstance(results.failed["rig-2"], rigwire.RemoteError)
    # Printed, a failure says its kind too (it read "RemoteError('cannot …')").
    assert "RemoteError('Refused: cannot init" in str(results), str(results)
    with pytest.raises(rigwire.GroupError) as e:
        results.raise_on_failure()
    assert "rig-2" in str(e.value) and list(e.value.failed) == ["rig-2"]
    # A rig that dies is named too.
    rigs["rig-3"].stop()
    results = group.status(timeout=5)
    assert set(results) == {"rig-1", "rig-2"}
    assert isinstance(results.failed["rig-3"], rigwire.Disconnected)
    # Printed, the failures show; dropped unread, they warn where dropped
    # (a script that calls `group.stop()` and moves on hears of it).
    assert "rig-3" in repr(results) and "Disconnected" in str(results)
    with pytest.warns(RuntimeWarning, match=r"1 of 3 rigs failed: rig-3 \(") as dropped:
        group.status(timeout=5)
    assert [w.filename for w in dropped] == [__file__]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not group.status(timeout=5).ok()
        assert group.call("add", 1, 2, timeout=5).failed
        assert "rig-3" in repr(group.status(timeout=5))
    group.close()


def test_experiment_references_are_checked_before_anything_is_sent(rigs):
    assert rigwire.ExpRef("2026-11-26_1_ZM_1") == "2026-11-26_1_ZM_1"
    for bad in ["2026-13-01_1_mouse", "2026-11-26_0_mouse", "not a reference"]:
        with pytest.raises(ValueError):
            rigwire.ExpRef(bad)
    with rigwire.Group({"rig-1": rigs["rig-1"].url}) as group:
        with pytest.raises(ValueError):
            group.start("2026-13-01_1_mouse")
        assert group.status() == {"rig-1": "connected"}


def test_a_rig_that_cannot_be_reached_is_named():
    with pytest.raises(rigwire.GroupError) as e:
        rigwire.Group({"nowhere": "tcp://127.0.0.1:1"}, timeout=2)
    assert "nowhere" in e.value.failed
    assert isinstance(e.value.failed["nowhere"], rigwire.ConnectFailed)


def test_a_group_of_rust_and_python_rigs(rigs):
    seen = []
    rig = rigwire.Rig()

    @rig.on_init
    def init(data):
        seen.append(("init", data))

    @rig.on_start
    def start(exp_ref):
        seen.append(("start", exp_ref))

    @rig.on_stop
    def stop(immediately):
        seen.append(("stop", immediately))

    @rig.on_cleanup
    def cleanup():
        seen.append(("cleanup",))

    with rigwire.Server("tcp://127.0.0.1:0", name="py-rig") as server:
        rig.expose(server)
        server.start()
        urls = {"rig-1": rigs["rig-1"].url, "py-rig": server.url, "rig-2": rigs["rig-2"].url}
        with rigwire.Group(urls) as group:
            assert group.init(subject="ZM_1").raise_on_failure() == {n: "initialized" for n in urls}
            assert group.start("2026-11-26_2_ZM_1").ok()
            assert group.stop(immediately=True).ok()
            assert group.cleanup() == {n: "connected" for n in urls}
    assert seen == [
        ("init", {"subject": "ZM_1"}),
        ("start", "2026-11-26_2_ZM_1"),
        ("stop", True),
        ("cleanup",),
    ]


def test_a_python_hook_that_raises_fails_its_step():
    rig = rigwire.Rig()

    @rig.on_start
    def start(exp_ref):
        raise RuntimeError("no water in the reservoir")

    with rigwire.Server("tcp://127.0.0.1:0") as server:
        rig.expose(server)
        server.start()
        with rigwire.connect(server.url) as c:
            c.call("exp.init")
            with pytest.raises(rigwire.RemoteError) as e:
                c.call("exp.start", "2026-11-26_1_ZM_1")
            assert "no water" in e.value.message and "Traceback" in e.value.detail
            assert c.call("exp.status") == "initialized"


def test_a_start_hung_on_its_hardware_is_aborted_by_stopping_immediately():
    # It was refused: "cannot interrupt while start is in progress", and
    # the rig stayed stuck for as long as the start hook hung.
    armed = threading.Event()
    rig = rigwire.Rig()

    @rig.on_start
    def start(exp_ref):
        if not armed.wait(30):  # the hardware never arms
            raise RuntimeError("the hardware never armed")
        raise RuntimeError("aborted")

    @rig.on_stop
    def stop(immediately):
        armed.set()  # tells the start to give up

    with rigwire.Server("tcp://127.0.0.1:0") as server:
        rig.expose(server)
        server.start()
        with rigwire.Group({"r": server.url}) as rigs:
            rigs.init().raise_on_failure()
            started = threading.Thread(target=lambda: rigs.start("2026-11-26_1_ZM_1", timeout=60).failed)
            started.start()
            # Out of order until the start has begun; then it interrupts.
            deadline = time.monotonic() + 10
            while True:
                stopped = rigs.stop(immediately=True, timeout=10)
                if stopped.ok() or time.monotonic() > deadline:
                    break
                time.sleep(0.01)  # the start not begun yet: out of order
            assert stopped.ok(), stopped.failed
            assert stopped["r"] == "stopped"
            started.join(15)
            assert not started.is_alive()
            assert rigs.call("exp.info")["r"]["interrupted"] is True
            assert rigs.cleanup().raise_on_failure()["r"] == "connected"


def test_any_method_is_called_on_every_rig_in_the_order_asked(rigs):
    urls = {n: r.url for n, r in rigs.items()}
    with pytest.raises(ValueError, match="at least one rig"):
        rigwire.Group({})  # its every step would have succeeded, doing nothing
    with pytest.raises(TypeError, match=r"a dict \{name: url, ...\}, not a list"):
        rigwire.Group(list(urls.values()))  # raised AttributeError: 'list' has no 'items'
    # Was "'int' object is not an instance of 'str'", naming no rig.
    with pytest.raises(TypeError, match=r"rig 'rig-1': its URL is a str, not int$"):
        rigwire.Group({"rig-1": 7400})
    with pytest.raises(TypeError, match=r"a rig's name is a str, not int \(1\)"):
        rigwire.Group({1: urls["rig-1"]})
    with rigwire.connect(urls["rig-1"]) as client:
        with pytest.raises(TypeError, match="its URL is a str, not Client: a group connects its rigs itself"):
            rigwire.Group({"rig-1": client})
    with rigwire.Group(urls) as group:
        assert repr(group) == "<rigwire.Group rig-1, rig-2, rig-3>"
        assert group.call("add", 1, 2) == {n: 3 for n in rigs}
        assert group.call("echo", b"\x00frame") == {n: b"\x00frame" for n in rigs}
        results = group.call("add", "one", 2)  # every rig refuses, each named
        assert results == {} and set(results.failed) == set(rigs)
        assert all(e.kind == "BadArguments" for e in results.failed.values())
    # The order, seen by Python rigs that log who was called when.
    called = []
    servers = []
    for name in ("a", "b", "c"):
        s = rigwire.Server("tcp://127.0.0.1:0")
        s.expose(lambda who=name: called.append(who) or who, name="mark")
        servers.append(s.start())
    try:
        with rigwire.Group({n: s.url for n, s in zip("abc", servers)}) as group:
            assert group.call_in_order("mark") == {"a": "a", "b": "b", "c": "c"}
            assert group.call_in_reverse("mark").order == ["c", "b", "a"]
            assert called == ["a", "b", "c", "c", "b", "a"]
            servers[1].shutdown(0)
            results = group.call_in_order("mark", timeout=5)
            assert list(results) == ["a", "c"] and list(results.failed) == ["b"]
    finally:
        for s in servers:
            s.shutdown(0)


CTRL_C_GROUP = """
import sys, rigwire
g = rigwire.Group({"a": sys.argv[1], "b": sys.argv[2]})
print("calling", flush=True)
if sys.argv[3] == "wait_event":
    g.wait_event("never", 30)
getattr(g, sys.argv[3])("sleep", 30)
"""


def test_ctrl_c_interrupts_waiting_for_an_event():
    a, b = Rig("std"), Rig("smol")
    try:
        child = subprocess.Popen(
            [sys.executable, "-c", CTRL_C_GROUP, a.url, b.url, "wait_event"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert child.stdout.readline().strip() == "calling"
        time.sleep(0.5)
        started = time.monotonic()
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=20)
        assert child.returncode != 0 and "KeyboardInterrupt" in err, err
        assert time.monotonic() - started < 15  # well before the wait's 30 s
    finally:
        a.stop()
        b.stop()


@pytest.mark.parametrize("how", ["call", "call_in_order"])
def test_ctrl_c_interrupts_a_group_call_and_cancels_every_rigs_call(how):
    # A group call once waited out every rig (30 s here) before Ctrl-C took.
    a, b = Rig("std", log=True), Rig("smol", log=True)
    try:
        child = subprocess.Popen(
            [sys.executable, "-c", CTRL_C_GROUP, a.url, b.url, how],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert child.stdout.readline().strip() == "calling"
        time.sleep(0.5)  # the calls are in flight
        started = time.monotonic()
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=20)
        assert child.returncode != 0 and "KeyboardInterrupt" in err, err
        assert time.monotonic() - started < 15  # well before the sleeps' 30 s
        # The rigs called were told: the blocking rig's answer went nowhere,
        # the async rig's handler was stopped. In order, the second rig was
        # never called.
        log = a.stop_when_logged("reply to call 1 dropped")
        assert "reply to call 1 dropped" in log, log
        stopped = "call 1 cancelled: its handler stopped"
        log = b.stop_when_logged(stopped, within=1 if how == "call_in_order" else 10)
        assert (stopped in log) == (how == "call"), log
    finally:
        for rig in (a, b):
            if rig.process.returncode is None:
                rig.stop()


def test_a_python_rig_reports_events_in_the_shapes_python_sends():
    # Only [name, detail] with a string detail was heard: a rig that sent
    # `broadcast("exp.event", "armed")` left its group waiting out the timeout.
    with rigwire.Server("tcp://127.0.0.1:0", name="py-rig") as rig:
        rigwire.Rig().expose(rig)
        rig.start()
        with rigwire.Group({"rig": rig.url}, timeout=10) as group:
            # Once it has answered, the rig counts the group's connection
            # among those a broadcast reaches (its handshake is done there too).
            assert group.status() == {"rig": "connected"}
            rig.broadcast("exp.event", "armed")
            rig.broadcast("exp.event", "trial_done", {"n": 3})
            rig.broadcast("exp.event", "note", "all good")
            assert group.wait_event("armed", timeout=10) == {"rig": ""}
            assert group.wait_event("trial_done", timeout=10) == {"rig": '{"n":3}'}
            assert group.wait_event("note", timeout=10) == {"rig": "all good"}


def test_waiting_once_per_trial_waits_for_each_trials_event():
    # Every wait after the first once returned the first trial's report at
    # once: the script ran ahead of the rig.
    with rigwire.Server("tcp://127.0.0.1:0", name="rig") as s:

        @s.expose
        def trial(n, caller):
            def later():
                time.sleep(0.05)
                caller.notify("exp.event", "trial_done", str(n))

            threading.Thread(target=later).start()

        s.start()
        with rigwire.Group({"rig": s.url}) as rigs:
            for n in range(3):
                rigs.call("trial", n).raise_on_failure()
                assert rigs.wait_event("trial_done", timeout=10) == {"rig": str(n)}


def test_a_wait_for_an_event_ends_when_a_rig_goes_away():
    # It waited out its whole timeout, then said only that no event came.
    stays, goes = Rig("std"), Rig("smol")
    try:
        with rigwire.Group({"stays": stays.url, "goes": goes.url}, timeout=10) as rigs:
            goes.process.kill()
            began = time.monotonic()
            with pytest.raises(rigwire.GroupError, match="goes's connection ended") as e:
                rigs.wait_event("armed", timeout=60)
            assert time.monotonic() - began < 60, "waited out its timeout"
            assert list(e.value.failed) == ["goes"]
            assert isinstance(e.value.failed["goes"], rigwire.Disconnected)
            assert sorted(e.value.missing) == ["goes", "stays"]
    finally:
        stays.stop()
        goes.stop()


def test_one_rig_of_a_group_is_called_alone_on_the_groups_connection(rigs):
    urls = {n: r.url for n, r in rigs.items()}
    with rigwire.Group(urls, timeout=5) as group:
        rig_2 = group.rig("rig-2")
        assert rig_2.url == urls["rig-2"] and rig_2.peer_name is not None
        assert rig_2.call("add", 1, 2) == 3
        assert rig_2.root.add(2, 2) == 4
        assert rig_2.start("add", 3, 3).result(timeout=5) == 6
        with pytest.raises(KeyError, match="no rig 'rig-9' in this group: rig-1, rig-2, rig-3"):
            group.rig("rig-9")
        # The group owns the connection: closing the rig's client leaves it.
        with group.rig("rig-1") as rig_1:
            assert rig_1.call("add", 0, 1) == 1
        assert group.call("add", 1, 1) == {n: 2 for n in rigs}

    async def from_asyncio():
        async with await rigwire.aio.Group.connect(urls) as group:
            return await group.rig("rig-3").call("add", 4, 4)

    assert asyncio.run(from_asyncio()) == 8
