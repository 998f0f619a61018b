"""rigwire.ibl against real iblutil 1.20 rigs (tests/ibl/python_rig.py run by
the iblutil virtual environment scripts/test prepares), over UDP and TCP."""

import os
import pathlib
import subprocess

import pytest

import rigwire
from rigwire import ibl

IBL_PYTHON = os.environ.get("RIGWIRE_IBL_PYTHON")
RIG = pathlib.Path(__file__).resolve().parents[2] / "tests" / "ibl" / "python_rig.py"

pytestmark = pytest.mark.skipif(
    not IBL_PYTHON, reason="RIGWIRE_IBL_PYTHON names no Python with iblutil (scripts/test sets it)"
)


class IblRig:
    """An iblutil EchoProtocol rig in a child process; closed with its stdin."""

    def __init__(self, proto: str):
        self.process = subprocess.Popen(
            [IBL_PYTHON, str(RIG), proto],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        # iblutil logs on stdout too; the rig's own line says where it listens.
        for _ in range(100):
            line = self.process.stdout.readline()
            if not line or line.startswith("listening "):
                break
        if not line.startswith("listening "):
            self.stop()
            raise AssertionError(f"the iblutil rig did not start: {line!r}")
        self.url = line.split()[1]

    def stop(self) -> None:
        self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process.stdout.close()


@pytest.fixture(params=["udp", "tcp"])
def ibl_rig(request):
    r = IblRig(request.param)
    yield r
    r.stop()


def test_a_blocking_peer_drives_an_iblutil_rig(ibl_rig):
    with ibl.Peer(ibl_rig.url) as rig:
        rig.init({"subject": "ZM_1"})
        assert rig.wait_answer("EXPINIT", timeout=10) == ("EXPINIT", [{"status": 10}])
        rig.start("2026-11-26_1_ZM_1")
        assert rig.wait_answer("EXPSTART", timeout=10) == ("EXPSTART", ["2026-11-26_1_ZM_1", {"status": 20}])
        rig.status(None)
        assert rig.wait_answer("EXPSTATUS", timeout=10).fields == [20]
        # The rig's info callback raises: iblutil reports it, and so do we.
        rig.info(None)
        with pytest.raises(rigwire.RemoteError) as e:
            rig.wait_answer("EXPINFO", timeout=10)
        assert "boom" in str(e.value)
        rig.stop()
        assert rig.wait_answer("EXPEND", timeout=10).fields == [{"status": 30}]
        with pytest.raises(rigwire.Error):
            rig.next_message(timeout=0.2)


def test_services_drive_several_iblutil_rigs():
    with pytest.raises(ValueError, match="at least one rig"):
        ibl.Services({})  # as a Group: its every step would have succeeded, doing nothing
    rigs = {"rig-udp": IblRig("udp"), "rig-tcp": IblRig("tcp")}
    try:
        services = ibl.Services({n: r.url for n, r in rigs.items()}, timeout=10)
        assert services.names == ["rig-udp", "rig-tcp"]
        answers = services.init({"subject": "ZM_1"}).raise_on_failure()
        assert answers == {n: ("EXPINIT", [{"status": 10}]) for n in rigs}
        started = services.start("2026-11-26_1_ZM_1")
        assert set(started) == set(rigs) and started["rig-udp"].fields[0] == "2026-11-26_1_ZM_1"
        info = services.info()
        assert set(info.failed) == set(rigs)  # each rig's info callback raises
    finally:
        for r in rigs.values():
            r.stop()
