"""rigwire for Python: call methods on the rigs and services of a lab experiment.

    import rigwire

    with rigwire.connect("tcp://127.0.0.1:7400", name="script", secret_file="lab.secret") as rig:
        rig.call("add", 1, 2)          # 3.0
        rig.root.add(1, 2)             # the same, as RPyC users write it
        call = rig.start("sleep", 5)   # a handle, like concurrent.futures
        call.result(timeout=10)

Every wait releases the GIL, and Ctrl-C interrupts it with ``KeyboardInterrupt``
and cancels the call on the wire. A ``Client`` is safe to share between threads.

**Arguments.** Python values cross as JSON. ``call(name, *args, **kwargs)``
sends one payload, by this rule:

* no arguments: ``null``;
* one positional argument: that value (``call("sleep", 0.5)`` sends ``0.5``);
* several positional arguments: a JSON array of them (``call("add", 1, 2)``
  sends ``[1, 2]``, which a Rust handler of ``(f64, f64)`` decodes);
* keyword arguments only: a JSON object (``call("exp.init", subject="ZM_1")``
  sends ``{"subject": "ZM_1"}``, which a Rust handler of a struct decodes);
* positional and keyword arguments together are refused with ``TypeError``:
  one payload cannot carry both.

A value JSON cannot carry raises ``TypeError`` before anything is sent. The
result is the JSON answer as Python values.
"""

import json as _json
import os as _os
from typing import Any, Dict, Optional, Tuple, Union

from . import _rigwire
from .errors import (
    AuthenticationFailed,
    Busy,
    Cancelled,
    ConnectFailed,
    DeadlineExceeded,
    Disconnected,
    Error,
    NoSuchMethod,
    Rejected,
    RemoteError,
    Unavailable,
)

__all__ = [
    "connect",
    "Client",
    "Call",
    "payload",
    "Error",
    "RemoteError",
    "NoSuchMethod",
    "Unavailable",
    "Busy",
    "DeadlineExceeded",
    "Disconnected",
    "ConnectFailed",
    "Cancelled",
    "AuthenticationFailed",
    "Rejected",
]

Secret = Union[str, bytes]
PathLike = Union[str, "_os.PathLike[str]"]


def payload(args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> str:
    """The JSON text ``call(name, *args, **kwargs)`` sends (see the module's rule)."""
    if args and kwargs:
        raise TypeError(
            "rigwire sends one payload per call: pass positional arguments "
            "(sent as a JSON array) or keyword arguments (sent as a JSON object), not both"
        )
    if kwargs:
        value: Any = kwargs
    elif len(args) == 1:
        value = args[0]
    elif args:
        value = list(args)
    else:
        value = None
    try:
        return _json.dumps(value, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as e:
        raise TypeError(f"the arguments cannot be sent as JSON: {e}") from None


class Call:
    """A call in flight (from ``Client.start``), like a ``concurrent.futures.Future``."""

    def __init__(self, native: "_rigwire.NativeCall"):
        self._native = native

    def result(self, timeout: Optional[float] = None) -> Any:
        """The result, waiting up to ``timeout`` seconds (``None``: as long as the
        call's deadline allows). Raises ``TimeoutError`` if the wait ends first
        (the call stays in flight), the call's error if it failed, and
        ``Cancelled`` if it was cancelled."""
        return _json.loads(self._native.result(timeout))

    def done(self) -> bool:
        """Whether the result (or the failure) has arrived; never blocks."""
        return self._native.done()

    def cancel(self) -> bool:
        """Gives up on the call; the peer is told to cancel it. Returns whether
        it was still in flight."""
        return self._native.cancel()


class _Root:
    """``client.root.name(*args, **kwargs)`` is ``client.call("name", ...)``;
    dotted names work too: ``client.root.exp.status()``."""

    def __init__(self, client: "Client", name: str = ""):
        self._client = client
        self._name = name

    def __getattr__(self, part: str) -> "_Root":
        if part.startswith("__"):
            raise AttributeError(part)
        return _Root(self._client, f"{self._name}.{part}" if self._name else part)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if not self._name:
            raise TypeError("call a method of root, such as root.add(1, 2)")
        return self._client.call(self._name, *args, **kwargs)

    def __repr__(self) -> str:
        return f"<rigwire method {self._name or '(root)'} of {self._client.url}>"


class Client:
    """A connection to one rig or service (from ``rigwire.connect``). Safe to
    share between threads; a context manager that closes it."""

    def __init__(self, native: "_rigwire.NativeClient"):
        self._native = native

    @property
    def url(self) -> str:
        """The URL this client dialed."""
        return self._native.url

    @property
    def root(self) -> _Root:
        """Methods as attributes: ``client.root.add(1, 2)``."""
        return _Root(self)

    def call(self, method: str, *args: Any, timeout: Optional[float] = None, **kwargs: Any) -> Any:
        """Calls ``method`` and returns its result; ``timeout`` (seconds) is the
        call's deadline, else the client's default. Raises a ``rigwire.Error``."""
        text = payload(args, kwargs)
        return _json.loads(self._native.call(method, text, timeout))

    def start(self, method: str, *args: Any, timeout: Optional[float] = None, **kwargs: Any) -> Call:
        """Starts a call and returns its handle at once."""
        return Call(self._native.start(method, payload(args, kwargs), timeout))

    def notify(self, method: str, *args: Any, **kwargs: Any) -> None:
        """Sends a one-way notify; nothing comes back."""
        self._native.notify(method, payload(args, kwargs))

    def ping(self) -> float:
        """The round-trip time of a ping, in seconds."""
        return self._native.ping()

    def methods(self) -> list:
        """What the peer exposes: ``[{"name": ..., "aliases": [...], "signature": ...}]``."""
        return self.call("rigwire.methods")

    def close(self) -> None:
        """Closes the connection with a goodbye; later calls raise ``Disconnected``."""
        self._native.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<rigwire.Client {self.url}>"


def connect(
    url: str,
    name: str = "python",
    secret: Optional[Secret] = None,
    secret_file: Optional[PathLike] = None,
    timeout: Optional[float] = None,
) -> Client:
    """Connects to ``url`` (``tcp://host:port``, ``unix:///path``, ``ws://host:port/path``)
    as ``name``. The shared secret comes from ``secret`` (text or bytes) or
    ``secret_file`` (one trailing newline is not part of it). ``timeout``
    (seconds) bounds connecting and is every call's default deadline.

    Raises ``ConnectFailed``, ``AuthenticationFailed``, ``Rejected``, or
    ``ValueError`` for a bad secret or timeout."""
    if isinstance(secret, str):
        secret = secret.encode()
    path = None if secret_file is None else _os.fspath(secret_file)
    return Client(_rigwire.connect(url, name, secret, path, timeout))
