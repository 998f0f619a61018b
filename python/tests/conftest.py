"""Rigs for the tests: `rigwire serve` child processes on loopback, port 0."""

import os
import signal
import subprocess
import sys
import threading
import time
import pytest

BIN = os.environ.get("RIGWIRE_BIN", "rigwire")
SECRET = "python-tests-secret-0123456789"


class Rig:
    """A `rigwire serve` child process; `url` is where it listens."""

    def __init__(self, runtime: str, secret: bool = False, log: bool = False, listen: str = "tcp://127.0.0.1:0"):
        env = {k: v for k, v in os.environ.items() if k != "RIGWIRE_SECRET"}
        if secret:
            env["RIGWIRE_SECRET"] = SECRET
        if log:
            env["RIGWIRE_LOG"] = "debug"
        self.process = subprocess.Popen(
            [BIN, "serve", "--runtime", runtime, "--listen", listen, "--name", f"rig-{runtime}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE if log else subprocess.DEVNULL,
            env=env,
            text=True,
        )
        line = self.process.stdout.readline().strip()
        assert line.startswith("listening "), line
        self.url = line.split()[1]

    def stop_when_logged(self, *texts: str, within: float = 10.0) -> str:
        """Waits until the rig has logged each of ``texts`` (or ``within``
        seconds pass), then kills it and returns its log (needs
        ``log=True``). Wait for every line a test checks: lines logged by
        concurrent handlers come in any order."""
        lines = []

        def read():
            for line in self.process.stderr:
                lines.append(line)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        until = time.monotonic() + within
        def logged(text: str) -> bool:
            return any(text in line for line in list(lines))

        while time.monotonic() < until and not all(logged(t) for t in texts):
            time.sleep(0.01)
        self.process.kill()
        self.process.wait(timeout=10)
        reader.join(timeout=10)
        self.process.stdout.close()
        self.process.stderr.close()
        return "".join(lines)

    def freeze(self, within: float = 10.0) -> None:
        """Stops the rig (SIGSTOP) and returns once every one of its threads
        has stopped: the signal is asynchronous, and a rig that ran on for a
        moment once completed a handshake the test meant it to ignore."""
        os.kill(self.process.pid, signal.SIGSTOP)
        tasks = f"/proc/{self.process.pid}/task"
        until = time.monotonic() + within
        while time.monotonic() < until:
            states = []
            for tid in os.listdir(tasks):
                try:
                    with open(f"{tasks}/{tid}/stat") as f:
                        states.append(f.read().rsplit(")", 1)[1].split()[0])
                except FileNotFoundError:
                    pass  # a thread that ended
            if states and all(state in ("T", "t") for state in states):
                return
            time.sleep(0.001)
        raise AssertionError(f"the rig did not stop within {within} s")

    def thaw(self) -> None:
        """Lets a frozen rig run again (SIGCONT)."""
        os.kill(self.process.pid, signal.SIGCONT)

    def stop(self) -> None:
        self.process.kill()
        self.process.communicate(timeout=10)  # reaps it and closes its pipes


def rss_kib() -> int:
    """This process's resident memory, in KiB."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") // 1024


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
