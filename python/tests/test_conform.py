"""A Python server against the spec: `rigwire conform server` passes every
case that applies, over tcp:// and ws://, with a shared secret, and through
a relay as a service two hops away. The
conformance rig (spec §11: echo, add, sleep) is written here in Python;
`echo` and the postcard half of `add` need `Server.expose_raw`."""

import json
import os
import struct
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

import rigwire
from conftest import BIN, SECRET


def conformance_rig(url) -> rigwire.Server:
    server = rigwire.Server(url, name="py-conformance", secret=SECRET)

    @server.expose_raw
    def echo(codec, data):
        return codec, data

    @server.expose_raw
    def add(codec, data):
        if codec == "postcard":
            # (f64, f64) -> f64: postcard writes an f64 as 8 bytes, little-endian.
            if len(data) != 16:
                raise rigwire.RemoteError("add takes (f64, f64)", kind="BadArguments")
            a, b = struct.unpack("<dd", data)
            return "postcard", struct.pack("<d", a + b)
        value = json.loads(data) if codec == "json" else None
        if not (isinstance(value, list) and len(value) == 2
                and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in value)):
            raise rigwire.RemoteError(f"add takes two numbers, not {data[:40]!r}", kind="BadArguments")
        return "json", json.dumps(value[0] + value[1]).encode()

    @server.expose
    def sleep(seconds, cancelled):
        # Stops early when cancelled, as the conformance rig's sleep does.
        until = time.monotonic() + seconds
        while time.monotonic() < until and not cancelled():
            time.sleep(0.01)

    return server.start() if url else server


def conform(url: str, service=None) -> dict:
    env = {**os.environ, "RIGWIRE_SECRET": SECRET}
    through = ["--service", service] if service else []
    run = subprocess.run(
        [BIN, "conform", "server", url, "--json", *through],
        capture_output=True, text=True, env=env, timeout=120,
    )
    report = json.loads(run.stdout)
    return {"code": run.returncode, "report": report}


def cases_by_verdict(report):
    verdicts = {}
    for case in report["cases"]:
        verdicts.setdefault(case["verdict"], []).append(case)
    return verdicts


@pytest.mark.timeout(240)
def test_a_python_server_passes_rigwire_conform():
    servers = [conformance_rig("tcp://127.0.0.1:0"), conformance_rig("ws://127.0.0.1:0/rig")]
    try:
        with ThreadPoolExecutor(2) as pool:
            runs = list(pool.map(conform, [s.url for s in servers]))
    finally:
        for s in servers:
            s.shutdown(grace=0)
    for server, run in zip(servers, runs):
        by = cases_by_verdict(run["report"])
        failed = by.get("fail", [])
        assert not failed and run["code"] == 0, (server.url, failed)
        passed = {c["case"] for c in by.get("pass", [])}
        assert {"call-postcard", "echo-bytes", "bad-arguments", "busy", "wrong-secret"} <= passed
        if server.url.startswith("ws://"):
            assert {"ws-text-message", "ws-fragmented", "ws-wrong-path"} <= passed


@pytest.mark.timeout(240)
def test_a_python_service_behind_a_relay_passes_rigwire_conform():
    env = {**os.environ, "RIGWIRE_SECRET": SECRET, "RIGWIRE_SERVICE_SECRET": SECRET}
    relay = subprocess.Popen(
        [BIN, "relay", "--clients", "tcp://127.0.0.1:0", "--services", "ws://127.0.0.1:0/services"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True,
    )
    try:
        urls = dict(reversed(relay.stdout.readline().split()[1:3]) for _ in range(2))
        service = conformance_rig(None).serve_via(urls["services"], as_="conformance")
        try:
            run = conform(urls["clients"], service="conformance")
        finally:
            service.shutdown(grace=0)
    finally:
        relay.terminate()
        relay.wait(timeout=10)
        relay.stdout.close()
    by = cases_by_verdict(run["report"])
    assert not by.get("fail") and run["code"] == 0, by.get("fail")
    passed = {c["case"] for c in by.get("pass", [])}
    assert {"relay-services", "relay-unavailable", "echo-bytes", "call-postcard", "busy"} <= passed


def test_a_raw_handler_answers_as_it_says_and_its_mistakes_reach_the_caller():
    server = rigwire.Server("tcp://127.0.0.1:0", name="raw")

    @server.expose_raw
    def shout(codec, data, caller):
        assert isinstance(caller, rigwire.Client)
        return "bytes", data.upper()

    @server.expose_raw("wrong")
    def answers_badly(codec, data):
        return data

    @server.expose_raw
    def unknown(codec, data):
        return "yaml", data

    server.start()
    try:
        with rigwire.connect(server.url) as c:
            assert c.call("shout", b"quiet") == b"QUIET"
            assert c.call("shout", "x") == b'"X"'  # the JSON text, as it came
            with pytest.raises(rigwire.RemoteError, match=r"must return \(codec, bytes\)"):
                c.call("wrong", b"?")
            with pytest.raises(rigwire.RemoteError, match="yaml"):
                c.call("unknown", b"?")
            methods = {m["name"]: m for m in c.methods()}
            assert "shout(codec, data, caller)" in methods["shout"]["signature"]
    finally:
        server.shutdown(grace=0)
