"""Bytes travel as bytes (the bytes codec, spec §4.1): no JSON, no base64,
to and from Rust rigs, Python servers and the command line."""

import subprocess

import numpy
import pytest

import rigwire
from conftest import BIN, rss_kib

# Every byte value, NUL and invalid UTF-8 among them.
DATA = bytes(range(256)) * 40


def test_bytes_like_arguments_reach_a_rust_rig_and_come_back_as_bytes(rig):
    frame = numpy.arange(12, dtype=numpy.float32).reshape(3, 4)
    with rigwire.connect(rig.url) as c:
        for value in (DATA, bytearray(DATA), memoryview(DATA), memoryview(DATA)[10:20], b""):
            answer = c.call("echo", value)
            assert type(answer) is bytes
            assert answer == bytes(value)
        # A numpy array goes through the buffer protocol, in C order.
        assert numpy.frombuffer(c.call("echo", frame), dtype=numpy.float32).reshape(3, 4).tolist() == frame.tolist()
        assert c.call("echo", frame.T) == frame.T.tobytes()
        assert c.start("echo", DATA).result(timeout=10) == DATA
        # A typed Rust method that takes numbers refuses bytes, naming why.
        with pytest.raises(rigwire.RemoteError) as e:
            c.call("add", DATA)
        assert e.value.kind == "BadArguments"
        # Text is still JSON, not bytes.
        assert c.call("echo", "text") == "text"


def test_bytes_inside_other_values_are_refused_before_sending(rig):
    with rigwire.connect(rig.url) as c:
        for args, kwargs in (((b"a", 1), {}), (([b"a"],), {}), ((), {"data": b"a"}), ((numpy.zeros(2),), {"x": 1})):
            with pytest.raises(TypeError) as e:
                c.call("echo", *args, **kwargs)
            assert "one argument" in str(e.value) or "not both" in str(e.value), e.value
        # An array inside a dict is told how to go as numbers.
        with pytest.raises(TypeError, match=r"\.tolist\(\)"):
            c.call("echo", positions=numpy.array([1.5, 2.5]))
        assert c.call("echo", positions=numpy.array([1.5, 2.5]).tolist()) == {"positions": [1.5, 2.5]}
        assert c.call("add", 1, 2) == 3  # the connection is untouched


def test_numpy_scalars_travel_as_their_values_not_their_bytes(rig):
    # A numpy scalar is a buffer too: an element of an array once reached the
    # peer as b"\x03\x00\x00..." where the script meant 3.
    with rigwire.connect(rig.url) as c:
        assert c.call("add", numpy.int64(2), numpy.float32(0.5)) == 2.5
        for value, meant in ((numpy.int64(3), 3), (numpy.float32(0.5), 0.5), (numpy.bool_(True), True), (numpy.array(7), 7)):
            answer = c.call("echo", value)
            assert answer == meant and type(answer) is type(meant), (value, answer)
        assert c.call("echo", x=[numpy.int64(1), numpy.uint8(2)]) == {"x": [1, 2]}
        assert c.call("echo", numpy.arange(2, dtype=numpy.uint8)) == b"\x00\x01"  # an array is still bytes
    with rigwire.Server("tcp://127.0.0.1:0") as s:

        @s.expose
        def gain(x):
            return {"got": repr(type(x).__name__), "gain": numpy.int64(5) * x}

        @s.expose
        def level():
            return numpy.int32(4)

        s.start()
        with rigwire.connect(s.url) as c:
            assert c.call("gain", numpy.int64(2)) == {"got": "'int'", "gain": 10}
            assert c.call("level") == 4


def test_a_python_handler_takes_and_returns_bytes():
    seen = []
    with rigwire.Server("tcp://127.0.0.1:0") as s:

        @s.expose
        def store(data):
            seen.append(data)
            return len(data)

        @s.expose
        def snapshot():
            return numpy.full(4, 7, dtype=numpy.uint8)

        @s.expose
        def reverse(data):
            return bytearray(reversed(data))

        s.start()
        with rigwire.connect(s.url) as c:
            assert c.call("store", DATA) == len(DATA)
            assert type(seen[0]) is bytes and seen[0] == DATA
            assert c.call("snapshot") == b"\x07" * 4
            assert c.call("reverse", b"\x00\x01\x02") == b"\x02\x01\x00"
            assert c.call("store", "text") == 4  # JSON text stays text
            assert seen[-1] == "text"


def test_the_command_line_sends_a_file_as_bytes_to_a_python_server(tmp_path):
    with rigwire.Server("tcp://127.0.0.1:0") as s:
        s.expose(lambda data: bytes(reversed(data)), name="reverse")
        s.start()
        path = tmp_path / "frame.bin"
        path.write_bytes(DATA)
        out = subprocess.run([BIN, "call", s.url, "reverse", "--bytes", str(path)], capture_output=True, timeout=30)
        assert out.returncode == 0, out.stderr
        assert out.stdout == DATA[::-1]


def test_a_broadcast_of_bytes_reaches_a_client_handler():
    import threading

    got = threading.Event()
    received = []

    def frame(data):
        received.append(data)
        got.set()

    with rigwire.Server("tcp://127.0.0.1:0") as s:
        s.expose(lambda: None, name="hello")
        s.start()
        with rigwire.connect(s.url, expose={"frame": frame}) as c:
            c.call("hello")  # connected and admitted
            assert s.broadcast("frame", DATA) == 1
            assert got.wait(10)
    assert received == [DATA]


def test_large_byte_strings_round_trip_and_leave_memory_flat(rig):
    big = numpy.random.default_rng(1).integers(0, 256, 8 << 20, dtype=numpy.uint8).tobytes()
    with rigwire.connect(rig.url, timeout=30) as c:
        assert c.call("echo", big) == big
        before = rss_kib()
        for _ in range(100):
            assert len(c.call("echo", big)) == len(big)
        grown = rss_kib() - before
    # 100 round trips of 8 MiB: a leak of either copy would be 800 MiB or more.
    assert grown < 200 * 1024, f"resident memory grew by {grown} KiB"


def test_more_than_16_mib_at_once_needs_max_frame_on_both_sides():
    big = numpy.arange(5 << 20, dtype=numpy.uint32)  # 20 MiB
    server = rigwire.Server("tcp://127.0.0.1:0", name="camera", max_frame=64 << 20)

    @server.expose
    def total(frame):
        return int(numpy.frombuffer(frame, dtype=numpy.uint32).sum(dtype=numpy.uint64))

    server.start()
    try:
        with rigwire.connect(server.url) as c:  # the default, 16 MiB, is this side's
            with pytest.raises(rigwire.TooLarge, match="raise it on both") as e:
                c.call("total", big)
            assert isinstance(e.value, ValueError)
            assert c.call("total", big[:16]) == int(big[:16].sum())  # the connection carries on
        with rigwire.connect(server.url, max_frame=64 << 20) as c:
            assert c.call("total", big) == int(big.sum(dtype=numpy.uint64))
        # 2**70 once raised OverflowError, from the conversion to 64 bits.
        for wrong in (100, 1 << 40, -1, 1 << 70):
            with pytest.raises(ValueError, match="max_frame must be a number of bytes from 4096"):
                rigwire.connect(server.url, max_frame=wrong)
            with pytest.raises(ValueError, match="max_frame must be a number of bytes from 4096"):
                rigwire.Server("tcp://127.0.0.1:0", max_frame=wrong)
        with pytest.raises(TypeError):
            rigwire.connect(server.url, max_frame=1.5)
    finally:
        server.shutdown(grace=1)


def test_nan_and_infinity_are_refused_saying_what_to_send_instead(rig):
    # JSON has no word for them: a Rust peer could not read them. The refusal
    # says what a lab means by a NaN (a missing value) and how to keep one.
    with rigwire.Server("tcp://127.0.0.1:0", name="py") as s:

        @s.expose
        def reaction_times():
            return [0.31, float("nan")]

        s.start()
        for url in (rig.url, s.url):
            with rigwire.connect(url) as c:
                with pytest.raises(TypeError, match="send None for a missing value"):
                    c.call("echo", [0.31, float("nan")])
                with pytest.raises(TypeError, match="send None for a missing value"):
                    c.call("echo", numpy.float64("-inf"))
        with rigwire.connect(rig.url) as c:
            assert c.call("echo", [0.31, None]) == [0.31, None]
        with rigwire.connect(s.url) as c:
            with pytest.raises(rigwire.RemoteError, match="send None for a missing value"):
                c.call("reaction_times")


def test_values_made_only_when_asked_are_refused_saying_what_to_send_instead(rig):
    # A generator, a range, a coroutine: JSON cannot hold them, and the
    # plain "not JSON serializable" did not say what would do.
    with rigwire.Server("tcp://127.0.0.1:0", name="py") as s:

        @s.expose
        def readings():
            yield 0.31

        async def settled():
            return True

        s.expose(lambda: settled(), name="settled")

        @s.expose
        async def frames():
            yield b"frame"

        s.start()
        with rigwire.connect(s.url) as c:
            with pytest.raises(rigwire.RemoteError, match=r"generator .* list\(\.\.\.\)"):
                c.call("readings")
            # It read "a async_generator is not JSON serializable", and no more.
            with pytest.raises(rigwire.RemoteError, match=r"an async_generator .*\[x async for x in \.\.\.\]"):
                c.call("frames")
            with pytest.raises(rigwire.RemoteError, match="await it first; a handler that awaits is written `async def`"):
                c.call("settled")
        with rigwire.connect(rig.url) as c:
            with pytest.raises(TypeError, match=r"a range .* list\(\.\.\.\)"):
                c.call("echo", [range(3)])


def test_standard_library_values_json_cannot_hold_are_refused_saying_what_to_send(rig):
    # A timestamp, a path, a record: each read only "a datetime is not JSON
    # serializable", and a lab's code returns them all the time.
    import collections
    import dataclasses
    import datetime
    import decimal
    import enum
    import fractions
    import pathlib

    class Shutter(enum.Enum):
        OPEN = 1

    # pandas' table, as its type names itself (pandas is not a test dependency).
    DataFrame = type("DataFrame", (), {"__module__": "pandas.core.frame"})

    @dataclasses.dataclass
    class Position:
        x: float
        y: float

    hints = [
        (datetime.datetime(2026, 11, 28, 9, 30), r"\.isoformat\(\), or as seconds: \.timestamp\(\)"),
        (datetime.date(2026, 11, 28), r"as text: \.isoformat\(\)\)"),
        (pathlib.Path("/data/session"), r"as text: str\(\.\.\.\)"),
        (decimal.Decimal("0.1"), r"float\(\.\.\.\)"),
        (Shutter.OPEN, r"its \.value or its \.name"),
        ({1, 2}, r"sorted\(\.\.\.\)"),
        (Position(1.0, 2.0), r"dataclasses\.asdict\(\.\.\.\)"),
        (collections.deque([1, 2]), r"as a list: list\(\.\.\.\)"),
        (1 + 2j, r"\[z\.real, z\.imag\]"),
        (fractions.Fraction(1, 3), r"\[f\.numerator, f\.denominator\]"),
        (DataFrame(), r"\.to_dict\(orient='list'\)"),
    ]
    with rigwire.Server("tcp://127.0.0.1:0", name="py") as s:
        returned = {}

        @s.expose
        def latest():
            return {"value": returned["value"]}

        s.start()
        with rigwire.connect(rig.url) as c, rigwire.connect(s.url) as to_py:
            for value, hint in hints:
                with pytest.raises(TypeError, match=hint):
                    c.call("echo", [value])
                returned["value"] = value
                with pytest.raises(rigwire.RemoteError, match=hint):
                    to_py.call("latest")
            assert c.call("echo", [dataclasses.asdict(Position(1.0, 2.0))]) == [{"x": 1.0, "y": 2.0}]
