"""rigwire from Python against a raw Python socket echo and RPyC, in one run.

    target/py-venv/bin/pip install rpyc          # optional: the RPyC rows
    RIGWIRE_BIN=target/release/rigwire taskset -c 0 target/py-venv/bin/python python/bench.py

Rows (each a benchmark, never a test assertion):

* raw: a Python client and a Python threaded server exchanging 4-byte
  length-prefixed frames over loopback TCP (the framing rigwire uses);
* rigwire to a Python server: ``rigwire.Server`` with an ``echo`` handler;
* rigwire to the Rust rig: ``rigwire serve`` (its ``echo``), the same client;
* RPyC 6 (if installed): a ``ThreadedServer`` with ``exposed_echo``.

Serial rows report the p50 round trip and calls/s; the pipelined rows keep
64 calls in flight from one Python thread, refilled one ``start()`` at a
time, and through ``Client.map`` (which starts them in batches). Pin it (``taskset -c 0``) to
compare like with like on a small machine.
"""

import os
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
from collections import deque

# The installed package, not its sources beside this script.
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]
import rigwire  # noqa: E402

N = int(os.environ.get("BENCH_N", "5000"))
PAYLOAD = {"trial": 7}


def serial(call, n=N):
    for _ in range(200):  # warm up
        call()
    times = []
    for _ in range(n):
        t = time.perf_counter()
        call()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e6, n / sum(times)


def raw_echo():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()

    def serve(conn):
        with conn:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            while True:
                head = conn.recv(4, socket.MSG_WAITALL)
                if len(head) < 4:
                    return
                (n,) = struct.unpack(">I", head)
                body = conn.recv(n, socket.MSG_WAITALL)
                conn.sendall(head + body)

    def accept():
        while True:
            conn, _ = listener.accept()
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    client = socket.create_connection(listener.getsockname())
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    body = b'{"trial":7}'
    frame = struct.pack(">I", len(body)) + body

    def call():
        client.sendall(frame)
        head = client.recv(4, socket.MSG_WAITALL)
        (n,) = struct.unpack(">I", head)
        client.recv(n, socket.MSG_WAITALL)

    return call


def pipelined(client, n=N, window=64):
    inflight = deque(client.start("echo", PAYLOAD) for _ in range(window))
    started = time.perf_counter()
    for _ in range(n):
        inflight.popleft().result()
        inflight.append(client.start("echo", PAYLOAD))
    while inflight:
        inflight.popleft().result()
    return n / (time.perf_counter() - started)


def mapped(client, n=N, window=64):
    """The same window through ``Client.map``, which starts calls in batches."""
    started = time.perf_counter()
    for _ in client.map("echo", (PAYLOAD for _ in range(n)), window=window):
        pass
    return n / (time.perf_counter() - started)


def main():
    rows = []
    p50, rate = serial(raw_echo())
    rows.append(("raw Python socket echo", p50, rate))
    raw_p50 = p50

    server = rigwire.Server("tcp://127.0.0.1:0", name="bench")
    server.expose(lambda **fields: fields, name="echo")
    server.start()
    with rigwire.connect(server.url) as c:
        rows.append(("rigwire → Python server",) + serial(lambda: c.call("echo", PAYLOAD)))
        py_pipe = pipelined(c)
        py_map = mapped(c)

    bin_ = os.environ.get("RIGWIRE_BIN", "rigwire")
    rig = subprocess.Popen(
        [bin_, "serve", "--listen", "tcp://127.0.0.1:0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    url = rig.stdout.readline().split()[1]
    with rigwire.connect(url) as c:
        rows.append(("rigwire → Rust rig",) + serial(lambda: c.call("echo", PAYLOAD)))
        rust_pipe = pipelined(c)
        rust_map = mapped(c)
    rig.kill()
    rig.communicate()

    rpyc_p50 = None
    try:
        import rpyc
        from rpyc.utils.server import ThreadedServer

        class Echo(rpyc.Service):
            def exposed_echo(self, value):
                return value

        t = ThreadedServer(Echo, hostname="127.0.0.1", port=0, protocol_config={"allow_public_attrs": True})
        threading.Thread(target=t.start, daemon=True).start()
        time.sleep(0.2)
        conn = rpyc.connect("127.0.0.1", t.port)
        p50, rate = serial(lambda: conn.root.echo(7))
        rows.append(("RPyC 6 → Python server", p50, rate))
        rpyc_p50 = p50
        conn.close()
        t.close()
    except ImportError:
        print("(RPyC is not installed: pip install rpyc for its row)", file=sys.stderr)

    print(f"{'serial round trip':<28} {'p50 µs':>10} {'calls/s':>10} {'vs raw':>8}")
    for name, p50, rate in rows:
        print(f"{name:<28} {p50:>10.1f} {rate:>10.0f} {p50 / raw_p50:>7.2f}x")
    print(f"{'64 in flight':<28} {'start()':>10} {'map()':>10}  calls/s")
    print(f"{'rigwire → Python server':<28} {py_pipe:>10.0f} {py_map:>10.0f}")
    print(f"{'rigwire → Rust rig':<28} {rust_pipe:>10.0f} {rust_map:>10.0f}")
    if rpyc_p50:
        best = min(p for n, p, _ in rows if n.startswith("rigwire"))
        print(f"RPyC p50 / rigwire p50 (Python server): {rpyc_p50 / rows[1][1]:.2f}x; (Rust rig): {rpyc_p50 / rows[2][1]:.2f}x; best {rpyc_p50 / best:.2f}x")
    server.shutdown(0)


if __name__ == "__main__":
    main()
