"""The iblutil.io.net dialect, blocking: talk to rigs that run iblutil 1.20
(``EchoProtocol`` servers over UDP or TCP) without asyncio, a thread or a
polled queue.

    from rigwire import ibl

    rig = ibl.Peer("udp://rig-1:11001")
    rig.init({"subject": "ZM_1"})              # confirmed: waits for the echo
    event, fields = rig.wait_answer("EXPINIT", timeout=10)

    services = ibl.Services({"rig-1": "udp://rig-1:11001", "rig-2": "tcp://rig-2:11001"})
    services.start("2026-11-26_1_ZM_1")        # each rig's answer by name

Events go by iblutil's names (``EXPINIT``, ``EXPSTART``, ``EXPEND``,
``EXPINTERRUPT``, ``EXPCLEANUP``, ``EXPSTATUS``, ``EXPINFO``, ``ALYX``, and
``error`` for a rig's error report). A send whose echo does not come back
within ``echo_timeout`` raises ``rigwire.Error``; a rig's error report for a
step raises ``rigwire.RemoteError``.
"""

import json as _json
from typing import Any, Dict, List, NamedTuple, Optional

from . import GroupResults as _GroupResults
from . import _held, _is_one_number, _nan_hint, _rigs_of, _rigwire

__all__ = ["Message", "Peer", "Services"]


class Message(NamedTuple):
    """An iblutil message: its event's name and the fields after it."""

    event: str
    fields: List[Any]


def _message(received: Any) -> Message:
    event, fields = received
    return Message(event, _json.loads(fields))


def _number(value: Any) -> Any:
    """``json.dumps``'s fallback: a numpy scalar as its Python value."""
    if _is_one_number(value):
        return value.item()
    raise TypeError(f"a {type(value).__name__} is not JSON serializable")


def _text(value: Any) -> str:
    try:
        return _json.dumps(value, allow_nan=False, default=_number)
    except (TypeError, ValueError) as e:
        raise TypeError(f"the data cannot be sent as JSON: {e}{_nan_hint(e)}") from None


class Peer:
    """A client of one iblutil rig; each send waits for its echo."""

    def __init__(self, url: str, echo_timeout: float = 1.0):
        self._native = _rigwire.ibl_connect(url, echo_timeout)
        _held(self)

    @property
    def url(self) -> str:
        """The rig's URL."""
        return self._native.url

    def init(self, data: Any = None) -> None:
        """``[1, data]``: initialize."""
        self._native.init(_text(data))

    def start(self, exp_ref: str, data: Any = None) -> None:
        """``[2, exp_ref, data]``: start the experiment."""
        self._native.start(exp_ref, _text(data))

    def stop(self, data: Any = None, immediately: bool = False) -> None:
        """``[4, data]`` (``[16, data]`` when ``immediately``): stop."""
        self._native.stop(_text(data), immediately)

    def cleanup(self, data: Any = None) -> None:
        """``[8, data]``: clean up."""
        self._native.cleanup(_text(data))

    def status(self, status: Any) -> None:
        """``[32, status]``: report or ask for a status."""
        self._native.status(_text(status))

    def info(self, status: Any, data: Any = None) -> None:
        """``[64, status, data]``: report or ask for information."""
        self._native.info(_text(status), _text(data))

    def next_message(self, timeout: float) -> Message:
        """The next message from the rig (already echoed), waiting up to
        ``timeout`` seconds; raises ``rigwire.Error`` if none comes."""
        return _message(self._native.next_message(timeout))

    def wait_answer(self, event: str, timeout: float) -> Message:
        """The rig's answer to ``event``: its next message of that event, or its
        error report for it, raised as ``rigwire.RemoteError``."""
        return _message(self._native.wait_answer(event, timeout))

    def close(self) -> None:
        """Closes the socket."""
        self._native.close()

    def __enter__(self) -> "Peer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class Services:
    """iblutil's ``Services``: several rigs, each step sent to all at once and
    each rig's answer (a ``Message``) or error kept by name; a step waits up
    to ``timeout`` seconds for every rig (iblutil's default is 10 s)."""

    def __init__(self, rigs: Dict[str, str], timeout: float = 10.0, echo_timeout: float = 1.0):
        self._native = _rigwire.ibl_services(_rigs_of(rigs), timeout, echo_timeout)
        _held(self)

    @property
    def names(self) -> List[str]:
        """The rigs' names, in order."""
        return self._native.names()

    @staticmethod
    def _results(outcomes: list) -> _GroupResults:
        converted = [(rig, None if answer is None else _json.dumps(list(answer)), error) for rig, answer, error in outcomes]
        results = _GroupResults(converted)
        for rig in list(results):
            event, fields = results[rig]
            results[rig] = Message(event, _json.loads(fields))
        return results

    def init(self, data: Any = None) -> _GroupResults:
        """``init`` on every rig."""
        return self._results(self._native.init(_text(data)))

    def start(self, exp_ref: str, data: Any = None) -> _GroupResults:
        """``start`` on every rig."""
        return self._results(self._native.start(exp_ref, _text(data)))

    def stop(self, data: Any = None, immediately: bool = False) -> _GroupResults:
        """``stop`` on every rig (an interrupt if ``immediately``)."""
        return self._results(self._native.stop(_text(data), immediately))

    def cleanup(self, data: Any = None) -> _GroupResults:
        """``cleanup`` on every rig."""
        return self._results(self._native.cleanup(_text(data)))

    def status(self, status: Any = None) -> _GroupResults:
        """``status`` on every rig."""
        return self._results(self._native.status(_text(status)))

    def info(self, status: Any = None, data: Any = None) -> _GroupResults:
        """``info`` on every rig."""
        return self._results(self._native.info(_text(status), _text(data)))
