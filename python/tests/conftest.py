"""Rigs for the tests: `rigwire serve` child processes on loopback, port 0."""

import os
import subprocess
import sys
import pytest

BIN = os.environ.get("RIGWIRE_BIN", "rigwire")
SECRET = "python-tests-secret-0123456789"


class Rig:
    """A `rigwire serve` child process; `url` is where it listens."""

    def __init__(self, runtime: str, secret: bool = False, log: bool = False):
        env = {k: v for k, v in os.environ.items() if k != "RIGWIRE_SECRET"}
        if secret:
            env["RIGWIRE_SECRET"] = SECRET
        if log:
            env["RIGWIRE_LOG"] = "debug"
        self.process = subprocess.Popen(
            [BIN, "serve", "--runtime", runtime, "--listen", "tcp://127.0.0.1:0", "--name", f"rig-{runtime}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE if log else subprocess.DEVNULL,
            env=env,
            text=True,
        )
        line = self.process.stdout.readline().strip()
        assert line.startswith("listening "), line
        self.url = line.split()[1]

    def stop_and_read_log(self) -> str:
        """Kills the rig and returns what it logged (needs ``log=True``)."""
        self.process.kill()
        _, log = self.process.communicate(timeout=10)
        return log

    def stop(self) -> None:
        self.process.kill()
        self.process.communicate(timeout=10)  # reaps it and closes its pipes


@pytest.fixture(params=["std", "smol"])
def rig(request):
    r = Rig(request.param)
    yield r
    r.stop()


@pytest.fixture
def secret_rig():
    r = Rig("std", secret=True)
    yield r
    r.stop()
