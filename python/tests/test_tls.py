"""TLS from Python: a Python server on tls:// and wss:// with a certificate
from `rigwire cert new`, clients that trust it by pin (blocking, aio and a
group), and every refusal as `TlsFailed` with its reason."""

import asyncio
import subprocess
import time

import pytest

import rigwire
from rigwire.aio import connect as aio_connect
from conftest import BIN

pytestmark = pytest.mark.timeout(60)


def cert_new(tmp_path, name):
    """Runs `rigwire cert new`; returns (cert, key, fingerprint)."""
    out = subprocess.run(
        [BIN, "cert", "new", "--name", name, "--out", str(tmp_path)],
        capture_output=True, text=True, check=True,
    )
    return tmp_path / f"{name}.crt", tmp_path / f"{name}.key", out.stdout.strip()


@pytest.fixture
def tls_server(tmp_path):
    cert, key, pin = cert_new(tmp_path, "rig-1")
    servers = [rigwire.Server(url, name="py-rig", cert=cert, key=key) for url in ("tls://127.0.0.1:0", "wss://127.0.0.1:0/rig")]
    for server in servers:
        server.expose(lambda a, b: a + b, name="add")
        server.start()
    yield servers, pin, tmp_path
    for server in servers:
        server.shutdown()


def test_a_python_server_serves_tls_and_clients_trust_it_by_pin(tls_server):
    servers, pin, _ = tls_server
    for server in servers:
        assert server.fingerprint == pin
        with rigwire.connect(server.url, pin=pin) as rig:
            assert rig.call("add", 2, 3) == 5

        async def over_aio():
            rig = await aio_connect(server.url, pin=pin)
            try:
                return await rig.call("add", 20, 22)
            finally:
                await rig.close()

        assert asyncio.run(over_aio()) == 42
    with rigwire.Group({"a": servers[0].url, "b": servers[1].url}, pin=pin) as rigs:
        assert rigs.names == ["a", "b"]


def test_every_refusal_is_tls_failed_with_its_reason(tls_server):
    servers, pin, tmp_path = tls_server
    url = servers[0].url
    _, _, other = cert_new(tmp_path, "rig-2")
    with pytest.raises(rigwire.errors.TlsFailed) as failed:
        rigwire.connect(url, pin=other)
    assert pin in str(failed.value) and other in str(failed.value)
    assert isinstance(failed.value, ConnectionError)
    with pytest.raises(rigwire.errors.TlsFailed, match="expects TLS"):
        rigwire.connect(url.replace("tls://", "tcp://"))
    with pytest.raises(rigwire.errors.TlsFailed, match="for rig-1, not 127.0.0.1"):
        rigwire.connect(url, ca=tmp_path / "rig-1.crt")
    with pytest.raises(ValueError, match="not both"):
        rigwire.connect(url, pin=pin, ca=tmp_path / "rig-1.crt")
    # Neither: what to give, as Python gives it (it named the CLI's flags only).
    with pytest.raises(rigwire.errors.TlsFailed, match="ca= in Python; or pin it: --pin, or pin="):
        rigwire.connect(url)
    with pytest.raises(rigwire.errors.TlsFailed, match="--cert"):
        rigwire.Server("tls://127.0.0.1:0")


def test_a_python_service_dials_a_tls_relay_and_a_python_client_calls_it(tmp_path):
    import os
    secret = "python-tls-secret-0123456789"
    cert, key, pin = cert_new(tmp_path, "relay")
    relay = subprocess.Popen(
        [BIN, "relay", "--clients", "tls://127.0.0.1:0", "--services", "wss://127.0.0.1:0/services",
         "--cert", str(cert), "--key", str(key)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env={**os.environ, "RIGWIRE_SECRET": secret, "RIGWIRE_SERVICE_SECRET": secret},
    )
    try:
        lines = [relay.stdout.readline().split() for _ in range(2)]
        urls = {line[2]: line[1] for line in lines}
        assert all(line[3:] == ["fingerprint", pin] for line in lines), lines
        service = rigwire.Server(None, name="scanner", secret=secret, pin=pin)
        service.expose(lambda a, b: a * b, name="times")
        service.serve_via(urls["services"], as_="data")
        try:
            with rigwire.connect(urls["clients"], secret=secret, pin=pin) as c:
                assert c.call("data.times", 6, 7) == 42
        finally:
            service.shutdown()
    finally:
        relay.kill()
        relay.communicate(timeout=10)


def test_a_certificate_or_pin_a_plain_url_would_leave_unused_is_warned_of(tmp_path, caplog):
    cert, key, pin = cert_new(tmp_path, "rig-1")
    # It served tcp:// in clear, the certificate silently unused.
    with pytest.warns(RuntimeWarning, match=r"a TLS certificate is given, but tcp://127.0.0.1:\d+ is not TLS: it serves in clear"):
        server = rigwire.Server("tcp://127.0.0.1:0", cert=cert, key=key)
    server.expose(lambda a, b: a + b, name="add")
    with server.start():
        # A pin on a plain URL checks nothing: said on the logger `rigwire`.
        said = f"a certificate pin is given, but {server.url} is not TLS"
        with caplog.at_level("WARNING", logger="rigwire"), rigwire.connect(server.url, pin=pin) as c:
            assert c.call("add", 1, 2) == 3
            # Handed to `logging` by a thread of its own: it comes, not at once.
            until = time.monotonic() + 10
            while said not in caplog.text and time.monotonic() < until:
                time.sleep(0.02)
        assert said in caplog.text
