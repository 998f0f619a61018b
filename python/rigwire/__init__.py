"""rigwire for Python: call methods on the rigs and services of a lab experiment.

    import rigwire

    with rigwire.connect("tcp://127.0.0.1:7400", name="script", secret_file="lab.secret") as rig:
        rig.call("add", 1, 2)          # 3.0
        rig.root.add(1, 2)             # the same, as RPyC users write it
        call = rig.start("sleep", 5)   # a handle, like concurrent.futures
        call.result(timeout=10)

Every wait releases the GIL, and Ctrl-C interrupts it with ``KeyboardInterrupt``
and cancels the call on the wire; it ends a connect that waits too. A ``Client`` is safe to share between threads.

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

``timeout`` is the call's own deadline, never an argument: a remote
parameter of that name is passed in one dict, ``call("wait", {"timeout": 5})``
(one positional argument, a JSON object, so it arrives as keywords).

**Bytes.** One bytes-like argument (``bytes``, ``bytearray``, ``memoryview``,
a numpy array or any other buffer) travels as a byte string in the bytes
codec, without JSON or base64 (``call("store", frame)``); a ``bytes`` is not
copied on the way out, another buffer once. Bytes inside other values (a list,
keyword arguments) raise ``TypeError``: make them the call's one argument.
A numpy scalar (``numpy.int64(3)``, an element of an array, a 0-d array) is
a number, not bytes: it travels as its value, alone or inside other values.

A value JSON cannot carry raises ``TypeError`` before anything is sent. The
result is the JSON answer as Python values, or ``bytes`` when the peer
answers a byte string.

**Serving.** ``rigwire.Server(url)`` exposes Python functions (and
``connect(..., expose={...})`` lets a peer call back a client); a payload
reaches a handler by the same rule read backwards: ``null`` calls it with no
arguments, a JSON array with its elements as positional arguments, a JSON
object with keyword arguments, bytes or anything else with that one value (so
one list or dict reaches a handler whole only by keyword, ``x=[...]``, as the
error says when it did not fit); a handler's bytes-like result goes back as
bytes. A handler that raises answers the call with an error: kind ``Handler`` (``BadArguments``
when the arguments do not fit its signature), the exception's type name and
message, and its traceback as the detail. A handler with a parameter named
``caller`` gets a ``Client`` of the peer that called it, to call it back; one
named ``cancelled`` gets a function that says whether the call is still
wanted, to stop early. ``Server.expose_raw`` hands a handler the payload as
it came, ``(codec, data)``.
"""

import atexit as _atexit
import contextvars as _contextvars
import functools as _functools
import inspect as _inspect
import json as _json
import logging as _logging
import os as _os
import signal as _signal
import sys as _sys
import threading as _threading
import time as _time
import traceback as _traceback
import warnings as _warnings
import weakref as _weakref
from collections import deque as _deque
from itertools import islice as _islice
from typing import Any, Callable, Deque, Dict, Iterable, Iterator, Optional, Tuple, Union

from . import _rigwire, errors
from .errors import (
    AuthenticationFailed,
    Busy,
    Cancelled,
    ConnectFailed,
    TlsFailed,
    DeadlineExceeded,
    GroupError,
    Disconnected,
    Error,
    InvalidConfig,
    InvalidUrl,
    ListenFailed,
    NoSuchMethod,
    Rejected,
    RemoteError,
    TooLarge,
    Unavailable,
)

__all__ = [
    "connect",
    "Client",
    "Call",
    "Server",
    "Rig",
    "Group",
    "GroupResults",
    "ExpRef",
    "payload",
] + errors.__all__

Secret = Union[str, bytes]


def __getattr__(name: str) -> Any:
    # `rigwire.aio` and `rigwire.ibl` are there after `import rigwire`, as the
    # docs use them, but load on first use: a blocking script pays for neither.
    if name in ("aio", "ibl"):
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'rigwire' has no attribute {name!r}")
PathLike = Union[str, "_os.PathLike[str]"]


def _is_one_number(value: Any) -> bool:
    """Whether ``value`` is a numpy scalar (``numpy.int64(3)``, an element of an
    array) or a 0-d array: one value, which travels as that value. Such
    objects are buffers too, and sending their bytes would hand the peer
    ``b"\\x03\\x00..."`` where the script meant ``3``."""
    return getattr(value, "ndim", None) == 0 and callable(getattr(value, "item", None))


def _as_bytes(value: Any) -> Optional[bytes]:
    """``value`` as ``bytes`` if it is bytes-like (``bytes`` as it is, any other
    buffer such as ``bytearray``, ``memoryview`` or a numpy array copied once,
    in C order), else ``None``. A numpy scalar is a value, not bytes."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, (str, int, float, list, dict, tuple)) or value is None:
        return None  # the common cases, without trying a memoryview
    if _is_one_number(value):
        return None
    try:
        return memoryview(value).tobytes()
    except TypeError:
        return None


def _not_json(value: Any) -> Any:
    """``json.dumps``'s fallback: a numpy scalar as its Python value; for
    anything else, say why it cannot be sent."""
    if _is_one_number(value):
        return value.item()
    if _as_bytes(value) is not None:
        # A numpy array inside a dict is most often a few numbers meant as a list.
        as_list = " (its values as a JSON list: .tolist())" if hasattr(value, "tolist") else ""
        raise TypeError(
            f"a {type(value).__name__} travels as bytes only as a call's one argument "
            f"(or a handler's whole result), not inside other values{as_list}"
        )
    kind = type(value).__name__
    article = "an" if kind[:1].lower() in "aeiou" else "a"
    hint = _made_later_hint(value) or _plain_value_hint(value)
    raise TypeError(f"{article} {kind} is not JSON serializable{hint}")


def _plain_value_hint(value: Any) -> str:
    """The plain value to send instead of one of the standard library's
    types that a lab's code returns most (a timestamp, a path, a record)."""
    import collections
    import dataclasses
    import datetime
    import decimal
    import enum
    import fractions
    import pathlib
    import uuid

    if isinstance(value, datetime.datetime):
        return " (send it as text: .isoformat(), or as seconds: .timestamp())"
    if isinstance(value, (datetime.date, datetime.time)):
        return " (send it as text: .isoformat())"
    if isinstance(value, (pathlib.PurePath, uuid.UUID)):
        return " (send it as text: str(...))"
    if isinstance(value, decimal.Decimal):
        return " (send it as a number: float(...), or exactly as text: str(...))"
    if isinstance(value, enum.Enum):
        return " (send its .value or its .name)"
    if isinstance(value, (set, frozenset)):
        return " (send it as a list: sorted(...) or list(...))"
    if dataclasses.is_dataclass(value):
        return " (send it as a dict: dataclasses.asdict(...))"
    if isinstance(value, collections.deque):
        return " (send it as a list: list(...))"
    if isinstance(value, complex):
        return " (send its parts: [z.real, z.imag])"
    if isinstance(value, fractions.Fraction):
        return " (send it as a number: float(...), or exactly as [f.numerator, f.denominator])"
    # pandas, without importing it: a lab's tables and columns.
    kind = (type(value).__module__.split(".")[0], type(value).__name__)
    if kind == ("pandas", "DataFrame"):
        return " (send its columns: .to_dict(orient='list'), or its rows: .to_dict(orient='records'))"
    if kind == ("pandas", "Series"):
        return " (send it as a list: .tolist(), or as a dict: .to_dict())"
    return ""


def _made_later_hint(value: Any) -> str:
    """What to send instead of what makes its values only when asked."""
    if _inspect.isawaitable(value):
        if _inspect.iscoroutine(value):
            value.close()  # it never runs: no "never awaited" warning besides this
        return " (await it first; a handler that awaits is written `async def`)"
    if _inspect.isgenerator(value) or isinstance(value, (map, filter, zip, range, type({}.keys()))):
        return " (send its values as a list: list(...))"
    if _inspect.isasyncgen(value):
        return " (send its values as a list: [x async for x in ...] in an async def)"
    return ""


# One encoder for every call: ``json.dumps`` with options builds a new one each time.
_ENCODER = _json.JSONEncoder(allow_nan=False, separators=(",", ":"), default=_not_json)


def _json_text(value: Any, what: str = "the arguments") -> str:
    try:
        return _ENCODER.encode(value)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{what} cannot be sent as JSON: {e}{_nan_hint(e)}") from None


def _nan_hint(e: Exception) -> str:
    """What to do instead of sending NaN or infinity, which JSON has no word
    for (a peer in Rust or another language would fail to read them)."""
    if isinstance(e, ValueError) and "Out of range float" in str(e):
        return " (NaN and infinity: send None for a missing value, or a numpy array as bytes)"
    return ""


def _decode(answer: Union[str, bytes]) -> Any:
    """A result as Python values: ``bytes`` as they came, JSON decoded."""
    return answer if isinstance(answer, bytes) else _json.loads(answer)


def payload(args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Union[str, bytes]:
    """What ``call(name, *args, **kwargs)`` sends (see the module's rule): JSON
    text, or ``bytes`` for one bytes-like argument."""
    if args and kwargs:
        raise TypeError(
            "rigwire sends one payload per call: pass positional arguments "
            "(sent as a JSON array) or keyword arguments (sent as a JSON object), not both"
        )
    if kwargs:
        value: Any = kwargs
    elif len(args) == 1:
        value = args[0]
        data = _as_bytes(value)
        if data is not None:
            return data
    elif args:
        value = list(args)
    else:
        value = None
    return _json_text(value)


# What holds a connection or a server (its `_native`). A process made by
# os.fork() (multiprocessing's default on Linux) shares its parent's sockets
# but none of its threads: using them there would mix the two processes'
# messages on one connection, and dropping them would say goodbye on the
# parent's behalf or wait for threads that do not exist. So in the child
# each is kept alive untouched and answers with an error that says so.
_holders: "_weakref.WeakSet[Any]" = _weakref.WeakSet()


class _MadeBeforeFork:
    """What a connection, call or server made before ``os.fork()`` is in the
    child: closing it does nothing, anything else raises ``rigwire.Error``."""

    def __init__(self, kind: str):
        self._kind = kind

    def __getattr__(self, name: str) -> Any:
        if name in ("close", "shutdown", "cancel", "done"):
            return lambda *args, **kwargs: False
        raise Error(
            f"this {self._kind} was made before os.fork() and belongs to the parent "
            "process; connect (or serve) again in the child"
        )


def _held(holder: Any) -> None:
    _holders.add(holder)


def _after_fork_in_child() -> None:
    for holder in list(_holders):
        native = holder.__dict__.get("_native")
        if native is not None and not isinstance(native, _MadeBeforeFork):
            _rigwire.keep_forever(native)
            holder._native = _MadeBeforeFork(type(holder).__name__)


_os.register_at_fork(after_in_child=_after_fork_in_child)

#: How long a process that exits waits for rigwire's threads still running
#: Python code (a peer's call to a handler, a hook) before it exits anyway.
EXIT_WAIT = 5.0


def _before_exit() -> None:
    # CPython ends a thread that takes the GIL after finalizing began, and on
    # rigwire's threads that aborts the process: none may be in Python then.
    if not _rigwire.close():
        return
    log = _logging.getLogger("rigwire")
    try:
        left = _rigwire.wait_left(min(0.5, EXIT_WAIT))
        if left:
            log.warning(
                "Python is exiting: waiting up to %g s for %d rigwire handler(s) still running "
                "(Ctrl-C exits without them)", EXIT_WAIT, left)
            left = _rigwire.wait_left(max(EXIT_WAIT - 0.5, 0.0))
    except KeyboardInterrupt:
        left = _rigwire.close()
    if left:
        log.warning("exiting with %d rigwire handler(s) still running", left)


# Registered after `logging`'s own (imported above): run before it, so the
# warnings above are still written.
_atexit.register(_before_exit)


class Call:
    """A call in flight (from ``Client.start``), like a ``concurrent.futures.Future``,
    but dropping it while the call is in flight cancels the call (and warns,
    naming the line that started it: keep the ``Call`` while it should run)."""

    def __init__(self, native: "_rigwire.NativeCall", method: Optional[str] = None, site: Any = None):
        self._native = native
        # Where a warning points if it is dropped in flight; none for the
        # calls of a `map`, which cancels those it leaves on purpose.
        self._method = method
        self._site = site
        _held(self)

    def __del__(self) -> None:
        native = getattr(self, "_native", None)
        if self._site is None or native is None or isinstance(native, _MadeBeforeFork):
            return
        if native.cancel():  # it was in flight: the drop cancels it, said aloud
            message = (
                f"rigwire: the call to '{self._method}' was dropped before its answer, which "
                "cancels it; keep the Call while it should run (or notify, if nothing waits)"
            )
            _warnings.warn_explicit(message, RuntimeWarning, *self._site)

    def result(self, timeout: Optional[float] = None) -> Any:
        """The result, waiting up to ``timeout`` seconds (``None``: as long as the
        call's deadline allows). Raises ``TimeoutError`` if the wait ends first
        (the call stays in flight), the call's error if it failed, and
        ``Cancelled`` if it was cancelled."""
        return _decode(self._native.result(timeout))

    def done(self) -> bool:
        """Whether the result (or the failure) has arrived; never blocks."""
        return self._native.done()

    def cancel(self) -> bool:
        """Gives up on the call; the peer is told to cancel it. Returns whether
        it was still in flight."""
        self._site = None  # cancelled on purpose: dropping it says nothing
        return self._native.cancel()


class _Window:
    """The calls of a ``map`` in flight: up to ``window`` of them, refilled in
    batches of a quarter window (one write each, while the rest keeps the
    peer busy), their results taken in order."""

    def __init__(self, items: Iterable[Any], window: int):
        if window < 1:
            raise ValueError(f"window must be at least 1, got {window}")
        self._items = iter(items)
        self._window = window
        self._batch = max(1, window // 4)
        self._inflight: Deque[Call] = _deque()

    def due(self) -> list:
        """The payloads to start now (none while the window is full enough)."""
        room = self._window - len(self._inflight)
        if room < self._batch and self._inflight:
            return []
        return [payload((item,), {}) for item in _islice(self._items, room)]

    def started(self, natives: Iterable["_rigwire.NativeCall"]) -> None:
        self._inflight.extend(Call(native) for native in natives)

    def next(self) -> Optional[Call]:
        """The oldest call in flight, or ``None`` when every item is done."""
        return self._inflight.popleft() if self._inflight else None

    def cancel(self) -> None:
        """Cancels the calls still in flight."""
        while self._inflight:
            self._inflight.popleft().cancel()


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
        # For a rigwire.aio client, the call is a coroutine to await.
        if not self._name:
            raise TypeError("call a method of root, such as root.add(1, 2)")
        return self._client.call(self._name, *args, **kwargs)

    def __repr__(self) -> str:
        return f"<rigwire method {self._name or '(root)'} of {self._client.url}>"


def _not_native(connect: str, given: Any) -> str:
    """Why a client cannot be made from ``given``: a client comes from
    ``connect`` (a URL is dialed there, with its name and secret)."""
    if isinstance(given, str):
        return f"a client is not made from a URL: use {connect}({given!r}, name=..., secret_file=...)"
    return f"a client is made by {connect}(url, ...), not from {type(given).__name__}"


class Client:
    """A connection to one rig or service (from ``rigwire.connect``). Safe to
    share between threads; a context manager that closes it."""

    def __init__(self, native: "_rigwire.NativeClient"):
        if not isinstance(native, _rigwire.NativeClient):
            raise TypeError(_not_native("rigwire.connect", native))
        self._native = native
        _held(self)

    @property
    def url(self) -> str:
        """The URL this client dialed."""
        return self._native.url

    @property
    def peer_name(self) -> Optional[str]:
        """The name the peer gave in its handshake (its ``name=``), or
        ``None`` once the connection is lost for good."""
        return self._native.peer_name

    @property
    def root(self) -> _Root:
        """Methods as attributes: ``client.root.add(1, 2)``."""
        return _Root(self)

    def call(self, method: str, *args: Any, timeout: Optional[float] = None, **kwargs: Any) -> Any:
        """Calls ``method`` and returns its result; ``timeout`` (seconds) is the
        call's deadline, else the client's default. Raises a ``rigwire.Error``."""
        return _decode(self._native.call(method, payload(args, kwargs), timeout))

    def start(self, method: str, *args: Any, timeout: Optional[float] = None, **kwargs: Any) -> Call:
        """Starts a call and returns its handle: at once, unless the peer has
        stopped reading (then it waits for room, within the call's deadline)
        or, with ``reconnect``, a lost connection is being made again."""
        site = _user_site(_sys._getframe(1))
        return Call(self._native.start(method, payload(args, kwargs), timeout), method, site)

    def map(
        self, method: str, items: Iterable[Any], *, window: int = 64, timeout: Optional[float] = None
    ) -> Iterator[Any]:
        """Calls ``method`` once per item, as ``call(method, item)`` (a tuple
        item is a JSON array, as for several arguments), keeping up to
        ``window`` calls in flight, and yields the results in order, like
        ``Executor.map``. Calls start in batches whose frames leave in one
        write, so many small calls cost a fraction of calling each alone.
        ``timeout`` is each call's deadline. The first failure is raised
        where its result would be; the calls still in flight are then
        cancelled, as they are when the iterator is closed early."""
        calls = _Window(items, window)
        try:
            while True:
                due = calls.due()
                if due:
                    calls.started(self._native.start_batch(method, due, timeout))
                call = calls.next()
                if call is None:
                    return
                yield call.result()
        finally:
            calls.cancel()

    def notify(self, method: str, *args: Any, **kwargs: Any) -> None:
        """Sends a one-way notify; no answer comes back. A peer that has no
        such method says so, and that is logged here on the ``rigwire``
        logger (``logging``), once per connection for each distinct
        refusal; a handler that raises is logged where it ran."""
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
    expose: Optional[Dict[str, Callable[..., Any]]] = None,
    *,
    pin: Optional[str] = None,
    ca: Optional[PathLike] = None,
    reconnect: bool = False,
    max_frame: Optional[int] = None,
) -> Client:
    """Connects to ``url`` (``tcp://host:port``, ``tls://host:port``,
    ``unix:///path``, ``ws://host:port/path``, ``wss://host:port/path``) as
    ``name``. A relay's URL ending in ``#NAME`` (``tcp://relay:7500#data``)
    is the service ``NAME`` registered there: every call and notify goes to
    ``NAME.method``, and ``ping()`` times the service, both hops. The shared secret comes from ``secret`` (text or bytes) or
    ``secret_file`` (one trailing newline is not part of it). ``timeout``
    (seconds) bounds connecting, the handshake too (a rig that accepts and
    says nothing), and is every call's default deadline.
    ``expose`` maps names to functions the peer may call back over this
    connection (rt-cloud's and RPyC's callback pattern), served as
    ``Server.expose`` serves them. Over TLS the server is trusted by
    ``pin`` (its certificate's fingerprint, ``sha256:…``, as ``rigwire cert
    new`` prints it), by ``ca`` (a PEM file of authorities), or else by the
    system's roots.

    With ``reconnect=True`` a lost connection (the rig restarted, the network
    dropped) is made again by the next call, retrying after 0.1 s, then
    waiting twice as long each time up to 5 s, 10 attempts, before it raises
    (a call with a deadline tries only within it).
    A call in flight when the connection is lost still raises
    ``Disconnected``, since it may have run; a wrong secret or a refusal is
    not retried. Without it a lost connection stays lost.

    ``max_frame`` is the largest message, in bytes, this side takes (16 MiB
    unless given; at least 4096). A connection keeps the smaller of its two
    sides' limits, so to send more at once raise it on both (the server's
    ``Server(..., max_frame=...)``); over it a call raises ``TooLarge``.

    Raises ``ConnectFailed``, ``TlsFailed``, ``AuthenticationFailed``,
    ``Rejected``, or ``ValueError`` for a bad secret, timeout or max_frame."""
    _check_address(url, name, "rigwire.connect")
    if isinstance(secret, str):
        secret = secret.encode()
    path = None if secret_file is None else _os.fspath(secret_file)
    handlers = [(n, _handler(f, n)) for n, f in (expose or {}).items()]
    tls = _tls(pin=pin, ca=ca)
    return Client(_rigwire.connect(url, name, secret, path, timeout, handlers, tls, reconnect, max_frame))


def _check_address(url: Any, name: Any, made_by: str) -> None:
    """Raises ``TypeError`` for a URL that is not text, and for a port
    given as the name (RPyC's ``connect(host, port)``)."""
    if isinstance(name, int) and not isinstance(name, bool) and isinstance(url, str) and "://" not in url:
        raise TypeError(
            f"{made_by} takes one URL, not a host and a port: {made_by}('tcp://{url}:{name}'); "
            "its second argument is this side's name"
        )
    if not isinstance(url, str):
        raise TypeError(f"the URL is a str such as 'tcp://rig-1:7400', not {type(url).__name__} ({url!r})")
    if not isinstance(name, str):
        raise TypeError(f"name is this side's name, a str, not {type(name).__name__} ({name!r})")


def _tls(
    cert: Optional[PathLike] = None,
    key: Optional[PathLike] = None,
    pin: Optional[str] = None,
    ca: Optional[PathLike] = None,
) -> Tuple[Optional[str], Optional[str], Optional[str], Optional[str]]:
    """TLS settings as the native module takes them."""
    path = lambda p: None if p is None else _os.fspath(p)  # noqa: E731
    return (path(cert), path(key), pin, path(ca))


_Outcome = Tuple[Optional[str], Union[str, bytes], Optional[str]]


def _failure(e: BaseException, fn: Any = None) -> _Outcome:
    """What a Python exception answers a call with: its kind and message
    (a rigwire error with a kind, raised to answer so, or passed on from a
    call of the handler's own: that kind and its own message; anything
    else: ``Handler``, its type and message), and the traceback from
    ``fn``'s own frame on (the handler or hook that raised). A handler's
    ``sys.exit()`` or ``KeyboardInterrupt`` is one too: on a handler's
    thread it ends that call only, which the caller is told."""
    tb = _from_own_frame(e.__traceback__, fn)
    detail = "".join(_traceback.format_exception(type(e), e, tb))
    if isinstance(e, Error) and e.kind:
        # Not "RemoteError: BadArguments: …" again around its own words.
        return (e.kind, e.message, detail)
    kind = "Handler"
    message = f"{type(e).__name__}: {e}"
    if not isinstance(e, Exception):
        message += " (raised by a handler, it ends this call only: the server carries on; shutdown() stops it)"
    return (kind, message, detail)


def _from_own_frame(tb: Any, fn: Any) -> Any:
    """The traceback from ``fn``'s frame on: the frames before it are
    rigwire's wrappers (and, for ``async def``, the event loop's), which a
    rig's author did not write and the caller cannot use. Without ``fn``'s
    frame in it (it raised inside rigwire), past rigwire's own frames."""
    # Past the wrappers: `functools.wraps` (an `expose=` function run on an
    # app's loop), `functools.partial`.
    fn = _inspect.unwrap(fn) if callable(fn) else fn
    while isinstance(fn, _functools.partial):
        fn = _inspect.unwrap(fn.func)
    code = getattr(fn, "__code__", None) or getattr(getattr(type(fn), "__call__", None), "__code__", None)
    at = tb
    while at is not None:
        if code is not None and at.tb_frame.f_code is code:
            return at
        at = at.tb_next
    while tb is not None and tb.tb_next is not None and tb.tb_frame.f_code.co_filename.startswith(_HERE):
        tb = tb.tb_next
    return tb


def _takes_caller(fn: Callable[..., Any]) -> bool:
    return "caller" in _inspect.signature(fn).parameters


class _Signalled(BaseException):
    """A signal asked a waiting ``serve_forever`` to stop."""


class _signal_caught:
    """While in its ``with`` block, ``signum`` raises ``_Signalled`` in the
    main thread instead of ending the process; the previous handler is put
    back after. Elsewhere than the main thread, it does nothing."""

    def __init__(self, signum: int):
        self._signum = signum
        self._previous: Any = None

    def __enter__(self) -> None:
        if _threading.current_thread() is _threading.main_thread():
            self._previous = _signal.signal(self._signum, self._raise)

    def __exit__(self, *exc: Any) -> None:
        if self._previous is not None:
            _signal.signal(self._signum, self._previous)

    @staticmethod
    def _raise(signum: int, frame: Any) -> None:
        raise _Signalled(signum)


def _spread_hint(value: Any, signature: _inspect.Signature) -> str:
    """How to pass one list or dict to a handler of one parameter, which the
    payload rule spreads over its parameters instead: the usual surprise when
    a call did not fit."""
    params = [p for p in signature.parameters if p != "caller"]
    if len(params) != 1 or not isinstance(value, (list, dict)):
        return ""
    (name,) = params
    if isinstance(value, list):
        json, spread, what, shape = "array", "positional", "list", "[...]"
    else:
        json, spread, what, shape = "object", "keyword", "dict", "{...}"
    return (
        f" (a JSON {json} is passed as the {spread} arguments: to pass one {what},"
        f' send {{"{name}": {shape}}}, in Python {name}={shape})'
    )


def _extras(fn: Callable[..., Any]) -> Callable[[Any, Any], Dict[str, Any]]:
    """What a handler takes besides the call's arguments, by the name of its
    parameter: ``caller`` gets a ``Client`` of the peer that made the call, to
    call it back; ``cancelled`` gets a function that says whether the call is
    no longer wanted (the caller cancelled it, its deadline passed or the
    connection closed), for a long handler to stop early."""
    wants_caller = _takes_caller(fn)
    wants_cancelled = "cancelled" in _inspect.signature(fn).parameters

    def extras(caller: Any, cancelled: Any) -> Dict[str, Any]:
        given: Dict[str, Any] = {}
        if wants_caller:
            given["caller"] = _caller(fn, caller)
        if wants_cancelled:
            given["cancelled"] = cancelled
        return given

    return extras


def _check_exposable(fn: Any) -> None:
    """Raises ``TypeError`` for what cannot be a handler: a thing that is
    not callable, and an RPyC-style service (its ``exposed_`` methods), whose
    class would otherwise be exposed as a method that makes an instance."""
    rpyc = [a for a in dir(fn) if a.startswith("exposed_")]
    if rpyc:
        what = fn.__name__ if _inspect.isclass(fn) else f"a {type(fn).__name__}"
        raise TypeError(
            f"{what} is an RPyC-style service ({', '.join(rpyc[:3])}): expose each method, "
            f"server.expose(service.{rpyc[0]}, name={rpyc[0][len('exposed_'):]!r})"
        )
    if not callable(fn):
        raise TypeError(f"a {type(fn).__name__} is not callable: expose a function, or an object's method (obj.move)")


def _label(fn: Callable[..., Any], name: Optional[str] = None) -> str:
    """What messages call a handler: its own name, else the name it is
    exposed under (a ``functools.partial`` or a callable object has none)."""
    own = getattr(fn, "__name__", None)
    # A lambda's `__name__` is "<lambda>", which no caller would type.
    label = name if own in (None, "", "<lambda>") else own
    if not label:
        what = "lambda" if own == "<lambda>" else type(fn).__name__
        raise TypeError(f"a {what} has no name of its own: expose it with name=...")
    return label


# The event loop on which `async def` handlers and hooks of blocking servers
# and clients run: one per process, so that what they keep from one call to
# the next (a queue, a lock, an open stream, a future) stays on the loop it
# was made on, and two handlers never touch it from two threads at once.
# Started when first needed, again in a forked child (the thread is not
# forked).
_handler_loop: Optional[Tuple[int, Any]] = None
_handler_loop_lock = _threading.Lock()


def _shared_loop() -> Any:
    """The process's handler loop, started on its own thread if need be,
    with a watch on it (``_watch_loop``)."""
    global _handler_loop
    import asyncio

    with _handler_loop_lock:
        if _handler_loop is None or _handler_loop[0] != _os.getpid():
            loop = asyncio.new_event_loop()
            name = "rigwire-async-handlers"
            runner = _threading.Thread(target=loop.run_forever, name=name, daemon=True)
            runner.start()
            watch = _threading.Thread(target=_watch_loop, args=(loop, runner), name="rigwire-loop-watch", daemon=True)
            watch.start()
            _handler_loop = (_os.getpid(), loop)
        return _handler_loop[1]


# The code of every `async def` handler and hook on the shared loop, to
# name the one that blocks it; how long it may block before that is said.
_async_handlers: Dict[Any, str] = {}
_LOOP_BLOCKED_AFTER = 1.0


def _watch_loop(loop: Any, runner: "_threading.Thread") -> None:
    """Looks every half second whether the handler loop still runs. An
    ``async def`` handler that blocks it (``time.sleep``, a blocking driver
    call) holds every other one and every hook: the calls to them waited
    in silence. Blocked for over a second, the handler found on the loop's
    stack is named on the logger ``rigwire``, with the line it is at, once
    per place."""
    told = set()
    while not loop.is_closed():
        ran = _threading.Event()
        try:
            loop.call_soon_threadsafe(ran.set)
        except RuntimeError:  # closed meanwhile
            return
        if not ran.wait(_LOOP_BLOCKED_AFTER):
            frame = _sys._current_frames().get(runner.ident)
            where = _blocking_handler(frame)
            if where not in told:
                told.add(where)
                _logging.getLogger("rigwire").warning(
                    "the event loop of async def handlers has been blocked for over %.0f s by %s: "
                    "every other async def handler and hook waits meanwhile. An async def handler "
                    "must not block: await asyncio.sleep(...) or asyncio.to_thread(...) instead, "
                    "or write it as a plain def, which runs on a thread of its own",
                    _LOOP_BLOCKED_AFTER,
                    where,
                )
            ran.wait()
        _time.sleep(0.5)


def _blocking_handler(frame: Any) -> str:
    """Which handler the loop's stack (innermost ``frame``) is in, and where."""
    innermost = frame
    while frame is not None:
        label = _async_handlers.get(frame.f_code)
        if label is not None:
            return f"{label} (at {frame.f_code.co_filename}:{frame.f_lineno})"
        frame = frame.f_back
    if innermost is None:
        return "code outside any handler"
    return f"code outside any handler (at {innermost.f_code.co_filename}:{innermost.f_lineno})"


def _on_loop(fn: Callable[..., Any], loop: Callable[[], Any]) -> Callable[..., Any]:
    """``fn`` as a plain function that runs it on the event loop ``loop()``
    (awaited there if it returns an awaitable) and waits for its result on
    the calling thread, a handler's. ``functools.wraps`` keeps what the
    server reads of it: its name and its parameters (``caller``,
    ``cancelled``)."""
    import asyncio
    import functools

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        async def on_loop() -> Any:
            result = fn(*args, **kwargs)
            return await result if _inspect.isawaitable(result) else result

        target = loop()
        if target.is_closed():
            # Its task would never run (nor be awaited): say why instead.
            raise RuntimeError(
                f"{_label(fn)} cannot run: the event loop it runs on has closed (the asyncio.run "
                "that made the connection has ended); keep it running while the peer may call back"
            )
        return asyncio.run_coroutine_threadsafe(on_loop(), target).result()

    return run


def _is_async(fn: Callable[..., Any]) -> bool:
    """Whether calling ``fn`` makes a coroutine: an ``async def``, or an
    object whose ``__call__`` is one (a camera class's instance, say; taken
    for a plain function, its hook never ran and the step succeeded)."""
    return _inspect.iscoroutinefunction(fn) or _inspect.iscoroutinefunction(getattr(fn, "__call__", None))


def _awaited(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` as a plain function: an ``async def`` (or an object whose
    ``__call__`` is one) runs to its end on the process's handler loop (a
    blocking server's handlers have no loop of their own); anything else
    as it is, on the handler's thread."""
    if not _is_async(fn):
        return fn
    code = getattr(fn, "__code__", None) or getattr(getattr(fn, "__call__", None), "__code__", None)
    if code is not None:
        _async_handlers[code] = getattr(fn, "__name__", None) or code.co_name
    return _on_loop(fn, _shared_loop)


def _lent(fn: Callable[..., Any], call: Callable[..., Any]) -> Callable[..., Any]:
    """``call`` (``fn`` made plain by ``_awaited``) as a handler's thread runs
    it, given the native caller first: an ``async def`` only waits there
    for the loop, so its thread is lent meanwhile (``waiting_for``), as a
    plain handler's is while it waits for its caller's answer; else calls
    back and forth from many ``async def`` handlers at once held every
    thread the connection may have, waiting for answers that needed one
    more."""
    if not _is_async(fn):
        return lambda native, *args, **kwargs: call(*args, **kwargs)
    return lambda native, *args, **kwargs: native.waiting_for(lambda: call(*args, **kwargs))


# The server whose handler or hook runs here (its `_token`), on the handler's
# thread and on the loop an `async def` one runs on (a task keeps the
# context it was made in): its `shutdown` must not wait for that handler.
_serving_for: "_contextvars.ContextVar[Optional[object]]" = _contextvars.ContextVar("rigwire_serving_for", default=None)


def _own(token: object, wrapped: Callable[..., Any]) -> Callable[..., Any]:
    """``wrapped`` (a handler or hook wrapper) run as the server ``token``'s own."""

    def run(*args: Any) -> Any:
        mark = _serving_for.set(token)
        try:
            return wrapped(*args)
        finally:
            _serving_for.reset(mark)

    return run


def _caller(fn: Callable[..., Any], native: Any) -> Any:
    """What a handler or hook taking ``caller`` gets: a ``Client`` of the
    peer, awaited (a ``rigwire.aio.Client``) for an ``async def``, which
    must not block the loop it shares with the others."""
    client = Client(native)
    if _is_async(fn):
        from . import aio

        return aio.Client(client)
    return client


def _handler(fn: Callable[..., Any], name: Optional[str] = None) -> Callable[[str, Any, Any], _Outcome]:
    """Wraps ``fn`` (exposed as ``name``) for the native side: the arguments
    (JSON text, or ``bytes`` passed as the one argument), the caller and the
    call's cancellation in; ``(None, result)`` (JSON text, or ``bytes`` for a
    bytes-like result) or ``(kind, message, traceback)`` out. See ``_extras``
    for the parameters ``caller`` and ``cancelled``."""
    signature = _inspect.signature(fn)
    extras = _extras(fn)
    label, call = _label(fn, name), _lent(fn, _awaited(fn))

    def run(data: Union[str, bytes], caller: Any, cancelled: Any) -> _Outcome:
        try:
            value = _decode(data)
        except (ValueError, RecursionError) as e:
            # The peer's encoder is at fault, not the handler: said as a
            # Rust handler says it.
            return ("BadArguments", f"{label}: arguments do not decode: json: {e}", None)
        if isinstance(value, bytes):
            args, kwargs = (value,), {}
        elif value is None:
            args, kwargs = (), {}
        elif isinstance(value, list):
            args, kwargs = tuple(value), {}
        elif isinstance(value, dict):
            args, kwargs = (), value
        else:
            args, kwargs = (value,), {}
        given = extras(caller, cancelled)
        if given:
            kwargs = {**kwargs, **given}
        try:
            result = call(caller, *args, **kwargs)
            data = _as_bytes(result)
            if data is not None:
                return (None, data, None)
            return (None, _json_text(result, "the result"), None)
        except TypeError as e:
            # Binding the arguments only now, on failure, keeps it off the
            # path of every call: did they not fit, or did the body fail?
            try:
                signature.bind(*args, **kwargs)
            except TypeError as unfit:
                hint = _spread_hint(value, signature)
                return ("BadArguments", f"{label}{signature}: {unfit}{hint}", None)
            return _failure(e, fn)
        except BaseException as e:  # the caller gets it; the server carries on
            return _failure(e, fn)

    return run


def _raw_handler(fn: Callable[..., Any], name: Optional[str] = None) -> Callable[[str, bytes, Any, Any], Tuple[Any, Any, Any]]:
    """Wraps ``fn`` of ``Server.expose_raw`` (exposed as ``name``) for the
    native side: the codec's name, the payload's bytes, the caller and the
    call's cancellation in; ``(None, codec, bytes)`` or ``(kind, message,
    traceback)`` out."""
    extras = _extras(fn)
    label, call = _label(fn, name), _lent(fn, _awaited(fn))

    def run(codec: str, data: bytes, caller: Any, cancelled: Any) -> Tuple[Any, Any, Any]:
        try:
            answer = call(caller, codec, data, **extras(caller, cancelled))
            if isinstance(answer, tuple) and len(answer) == 2 and isinstance(answer[0], str):
                out = _as_bytes(answer[1])
                if out is not None:
                    return (None, answer[0], out)
            return ("Handler", f"{label} must return (codec, bytes), not {type(answer).__name__}", None)
        except BaseException as e:  # the caller gets it; the server carries on
            return _failure(e, fn)

    return run


class Server:
    """Serves Python functions to rigwire peers (scripts in Python, Rust or the
    command line). Bound at creation (``url`` port 0 picks a free port; see
    ``.url``), serving once started; a context manager that shuts it down.

        server = rigwire.Server("tcp://127.0.0.1:0", name="rig-1")

        @server.expose
        def add(a, b):
            return a + b

        @server.expose("stage.move", aliases=["move"])
        def move(x, y=0.0):
            ...

        server.serve_forever()   # until Ctrl-C or SIGTERM

    Handlers run on a pool of threads, so a slow one does not hold up other calls.
    """

    def __init__(
        self,
        url: Optional[str],
        name: str = "python",
        secret: Optional[Secret] = None,
        secret_file: Optional[PathLike] = None,
        *,
        cert: Optional[PathLike] = None,
        key: Optional[PathLike] = None,
        pin: Optional[str] = None,
        ca: Optional[PathLike] = None,
        max_frame: Optional[int] = None,
    ):
        """``max_frame`` is as for ``connect``: raise it here and in the
        clients to take larger calls.
        A ``tls://`` or ``wss://`` URL presents ``cert`` with its ``key``
        (PEM files, as ``rigwire cert new`` writes them); ``pin`` or ``ca``
        say how to trust a relay dialed over TLS by ``serve_via``. Listening
        beyond this machine (``0.0.0.0``, a lab address) without a secret
        warns (``RuntimeWarning``): anyone who reaches it may call every
        method."""
        if url is not None:
            _check_address(url, name, "rigwire.Server")
        if isinstance(secret, str):
            secret = secret.encode()
        path = None if secret_file is None else _os.fspath(secret_file)
        tls = _tls(cert=cert, key=key, pin=pin, ca=ca)
        self._native = _rigwire.serve(url, name, secret, path, tls, max_frame)
        # What its own handlers and hooks are marked with (`_own`): not the
        # server itself, which they would then keep alive.
        self._token = object()
        self._stopped = _threading.Event()
        # Set as a shutdown begins, before the server stops serving.
        self._stopping = False
        _held(self)
        for warning in self._native.listening_warnings:
            _warnings.warn(warning, RuntimeWarning, stacklevel=2)

    @property
    def url(self) -> Optional[str]:
        """The URL listened on, with the real port (``None`` when created
        without one, to serve only through a relay)."""
        return self._native.url

    @property
    def fingerprint(self) -> Optional[str]:
        """The fingerprint of the TLS certificate served (``sha256:…``),
        for clients to pin; ``None`` without TLS."""
        return self._native.fingerprint

    def expose(
        self,
        fn: Union[Callable[..., Any], str, None] = None,
        *,
        name: Optional[str] = None,
        aliases: Iterable[str] = (),
    ) -> Any:
        """Exposes a function under its own name, or ``name`` (dotted names are
        fine), and ``aliases``. Use it as ``@server.expose``,
        ``@server.expose("stage.move")`` or ``server.expose(fn, name=...)``
        (a ``functools.partial`` or a callable object has no name of its own:
        give one). An ``async def`` runs to its end on the process's one
        handler loop, which all ``async def`` handlers and hooks share, so
        what they keep between calls (a queue, a lock, an open stream)
        works; it must not block that loop, and its ``caller`` is awaited
        (a ``rigwire.aio.Client``).
        A parameter named ``caller`` gets a ``Client`` to call the caller
        back; one named ``cancelled`` gets a function that says whether the
        call is no longer wanted (cancelled, past its deadline, or its
        connection closed), so that a long handler can stop early:

            @server.expose
            def acquire(seconds, cancelled):
                until = time.monotonic() + seconds
                while time.monotonic() < until and not cancelled():
                    take_frame()
        """
        return self._expose(fn, name, aliases, raw=False)

    def expose_raw(
        self,
        fn: Union[Callable[..., Any], str, None] = None,
        *,
        name: Optional[str] = None,
        aliases: Iterable[str] = (),
    ) -> Any:
        """Exposes a function that takes a call's payload as it came and
        answers with one as it goes: ``fn(codec, data)`` gets the codec's
        name (``"postcard"``, ``"json"`` or ``"bytes"``) and the payload's
        ``bytes``, and returns ``(codec, data)``. Nothing is decoded or
        encoded on the way: for a recorder, a forwarder, or postcard a Rust
        peer sends (``struct`` reads its numbers). Raise
        ``rigwire.RemoteError(message, kind="BadArguments")`` for a payload
        it cannot take. Used as ``expose`` is; ``caller`` and ``cancelled``
        parameters work the same."""
        return self._expose(fn, name, aliases, raw=True)

    def _expose(self, fn: Any, name: Optional[str], aliases: Iterable[str], raw: bool) -> Any:
        if isinstance(fn, str):
            name, fn = fn, None
        if fn is None:
            return lambda f: self._expose(f, name, aliases, raw)
        _check_exposable(fn)
        # An empty name is the native check's to refuse, not the function's to fill.
        exposed = _label(fn) if name is None else name
        wrapped = (_raw_handler if raw else _handler)(fn, exposed)
        self._native.expose(exposed, _own(self._token, wrapped), raw)
        label = ("async " if _is_async(fn) else "") + _label(fn, exposed)
        self._native.describe(exposed, f"{label}{_inspect.signature(fn)} (Python)")
        for alias in aliases:
            self._native.alias(alias, exposed)
        return fn

    def on_connect(self, fn: Callable[[Client], Any]) -> Callable[[Client], Any]:
        """Runs ``fn(peer)`` when a peer has connected to the listener (and
        authenticated): ``peer`` is a ``Client`` of it (``peer.peer_name``
        is the name it gave, ``peer.url`` where it came from) that may call
        it back. Use it as ``@server.on_connect``, before serving. It runs on
        the connection's own thread: keep it quick; an exception is reported
        as unraisable (``sys.unraisablehook``), the connection carries on."""
        _check_fits(fn, "the on_connect hook", "the peer (a Client)", (None,), {})
        self._native.on_connect(lambda native: fn(Client(native)))
        return fn

    def on_disconnect(self, fn: Callable[[Client, str], Any]) -> Callable[[Client, str], Any]:
        """Runs ``fn(peer, reason)`` when the connection of a peer that
        ``on_connect`` saw has closed, with why (a script that ended, or
        crashed, or whose machine went silent): for a rig that stops what
        the script started. Strangers that never connected run neither
        hook. As ``on_connect``: before serving, quick, exceptions
        unraisable."""
        _check_fits(fn, "the on_disconnect hook", "the peer (a Client) and the reason", (None, None), {})
        self._native.on_disconnect(lambda native, reason: fn(Client(native), reason))
        return fn

    def start(self) -> "Server":
        """Starts serving in the background; returns the server. Raises
        ``ListenFailed`` (an ``OSError``) when it cannot listen on its URL."""
        self._native.start()
        return self

    def serve_forever(self) -> None:
        """Starts serving (if not yet) until Ctrl-C or ``SIGTERM`` (what a
        service manager or a launcher sends), then shuts down gracefully:
        calls in progress may finish (``shutdown``). It also returns once
        the server is shut down otherwise: by one of its handlers (a
        ``quit`` method the experiment calls) or another thread. After Ctrl-C the
        ``KeyboardInterrupt`` is raised again; after ``SIGTERM`` it returns,
        so that the script's own cleanup runs. (``SIGTERM`` is caught only
        when called from the main thread, as Python's signals are.)"""
        if not self._native.serving() and not self._stopping:
            # Raises saying why when there is nothing to serve on (a server
            # made with no URL and no relay once waited here for ever).
            # One shut down already (by a handler that ran before this was
            # called) is not started again: this returns once it has stopped.
            self._native.start()
        try:
            # A second SIGTERM, during the shutdown, ends the process at once.
            with _signal_caught(_signal.SIGTERM):
                # Until shut down: by a handler (a `quit` method), another thread.
                while not self._stopped.wait(3600):
                    pass
        except KeyboardInterrupt:
            self.shutdown()
            raise
        except _Signalled:
            self.shutdown()

    def serve_via(self, relay_url: str, as_: str) -> "Server":
        """Dials a relay's services URL and registers as the service ``as_``:
        callers of the relay then reach ``as_.method``. It registers again
        whenever the relay comes back, until ``shutdown``. Expose everything
        first. Raises ``RemoteError`` (kind ``Refused``) when the relay refuses
        the name, and the connection errors of ``connect``."""
        self._native.serve_via(relay_url, [as_])
        return self

    def broadcast(self, method: str, *args: Any, **kwargs: Any) -> int:
        """Notifies every connected peer, and every relay it serves through
        (``serve_via``), which passes it on to the clients following the
        service; returns how many it reached, a relay counting once. A peer
        that stopped reading (its output full) is skipped, not waited for."""
        return self._native.broadcast(method, payload(args, kwargs))

    def peer_count(self) -> int:
        """How many peers are connected now."""
        return self._native.peer_count()

    def shutdown(self, grace: float = 5.0) -> None:
        """Stops accepting, lets calls in progress finish for up to ``grace``
        seconds (those through a relay it serves by too), then says goodbye
        to every peer and relay. Extra calls do nothing.
        Called by one of this server's own handlers or hooks (a ``quit``
        method), it returns at once, and the shutdown goes on on a thread of
        its own: the handler's answer is sent first (it is a call in
        progress), and ``serve_forever`` then returns."""
        self._stopping = True
        if _serving_for.get() is self._token:
            # Waiting here would wait for this very handler, its whole grace.
            _threading.Thread(target=self._shut_down, args=(grace,), name="rigwire-shutdown").start()
        else:
            self._shut_down(grace)

    def _shut_down(self, grace: float) -> None:
        try:
            self._native.shutdown(grace)
        finally:
            self._stopped.set()

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()

    def __repr__(self) -> str:
        return f"<rigwire.Server {self.url}>"


def ExpRef(text: str) -> str:
    """Checks an experiment reference, ``yyyy-mm-dd_n_subject`` (a real date,
    a session number from 1, a subject that may contain ``_``), as the rigs
    will; returns it, or raises ``ValueError`` saying what is wrong."""
    return _rigwire.exp_ref(text)


class GroupResults(dict):
    """A group step's answers by rig name (the rigs that answered), with
    ``failed``: each failing rig's exception, by name. The others' answers
    are kept whatever failed. Printed, it shows the failures too; dropped
    with failures nobody looked at (``failed``, ``ok()``,
    ``raise_on_failure()``), it warns (``RuntimeWarning``), naming them, on
    the line that asked for the step: a step that failed on one rig is
    never silent."""

    def __init__(self, outcomes: list):
        super().__init__()
        self._failed: Dict[str, Error] = {}
        self._looked = False
        # The line that asked for the step (none on a thread of our own: see rigwire.aio).
        self._site = _user_site(_sys._getframe(1))
        self.order = [rig for rig, _, _ in outcomes]
        for rig, answer, error in outcomes:
            if error is None:
                self[rig] = _decode(answer)
            else:
                self._failed[rig] = error

    @property
    def failed(self) -> Dict[str, Error]:
        """Each failing rig's exception, by name."""
        self._looked = True
        return self._failed

    def ok(self) -> bool:
        """Whether every rig answered."""
        return not self.failed

    def raise_on_failure(self) -> "GroupResults":
        """Raises ``GroupError`` naming the failed rigs, if any; else returns self."""
        if self.failed:
            raise GroupError(self._failures(), self._failed)
        return self

    def _failures(self) -> str:
        names = ", ".join(f"{rig} ({e})" for rig, e in self._failed.items())
        return f"{len(self._failed)} of {len(self.order)} rigs failed: {names}"

    def __repr__(self) -> str:
        if not self._failed:
            return super().__repr__()
        self._looked = True
        return f"{super().__repr__()} failed: {self._failed!r}"

    __str__ = __repr__

    def __del__(self) -> None:
        if getattr(self, "_looked", True) or not self._failed or self._site is None:
            return
        message = f"rigwire: {self._failures()}; nobody looked (.failed, .ok(), .raise_on_failure())"
        _warnings.warn_explicit(message, RuntimeWarning, *self._site)


_HERE = _os.path.dirname(_os.path.abspath(__file__))


def _user_site(frame: Any) -> Any:
    """Where a warning about something of rigwire's points (the arguments of
    ``warnings.warn_explicit`` after the category): the first frame from
    ``frame`` outward that is not this package's; ``None`` if there is none."""
    while frame is not None and frame.f_code.co_filename.startswith(_HERE):
        frame = frame.f_back
    if frame is None:
        return None
    registry = frame.f_globals.setdefault("__warningregistry__", {})
    module = frame.f_globals.get("__name__", "?")
    return (frame.f_code.co_filename, frame.f_lineno, module, registry)


# How rigwire.aio cancels a group's wait from its loop: a function the wait
# asks about every 50 ms, set on the executor's thread for one call.
_group_go_on = _threading.local()


def _go_on() -> Optional[Callable[[], bool]]:
    return getattr(_group_go_on, "go_on", None)


def _rigs_of(rigs: Dict[str, str]) -> list:
    """A group's ``(name, url)`` pairs; ValueError for none, since every
    step of an empty group would succeed, having done nothing."""
    if not hasattr(rigs, "items"):
        # A list of URLs names no rig: results, events and errors are by name.
        raise TypeError(f"a group's rigs are a dict {{name: url, ...}}, not a {type(rigs).__name__}")
    pairs = list(rigs.items())
    if not pairs:
        raise ValueError("a group needs at least one rig: {name: url, ...}")
    for name, url in pairs:
        if not isinstance(name, str):
            raise TypeError(f"a rig's name is a str, not {type(name).__name__} ({name!r}): {{name: url, ...}}")
        if not isinstance(url, str):
            hint = ": a group connects its rigs itself" if isinstance(url, Client) else ""
            raise TypeError(f"rig {name!r}: its URL is a str, not {type(url).__name__}{hint}")
    return pairs


class Group:
    """Several rigs, driven together through the standard experiment lifecycle
    (``exp.*``): each step runs on every rig at once, stop and cleanup in
    reverse order, and each rig's answer or error comes back by name.

        with rigwire.Group({"rig-1": url_1, "rig-2": url_2}, secret_file="lab.secret") as rigs:
            rigs.init(subject="ZM_1").raise_on_failure()
            rigs.start("2026-11-26_1_ZM_1")
            rigs.wait_event("trial_done", timeout=60)
            rigs.stop()
            rigs.cleanup()

    ``call("calibrate", 5)`` calls any method of every rig the same way
    (``call_in_order``, ``call_in_reverse`` one rig after another).

    Connecting raises ``GroupError`` naming every rig that could not be reached.
    The settings are ``connect``'s, ``reconnect`` and ``max_frame`` too: each rig's own."""

    def __init__(
        self,
        rigs: Dict[str, str],
        name: str = "script",
        secret: Optional[Secret] = None,
        secret_file: Optional[PathLike] = None,
        timeout: Optional[float] = None,
        *,
        pin: Optional[str] = None,
        ca: Optional[PathLike] = None,
        reconnect: bool = False,
        max_frame: Optional[int] = None,
    ):
        if isinstance(secret, str):
            secret = secret.encode()
        path = None if secret_file is None else _os.fspath(secret_file)
        tls = _tls(pin=pin, ca=ca)
        rigs = _rigs_of(rigs)
        self._native = _rigwire.connect_group(rigs, name, secret, path, timeout, tls, reconnect, max_frame)
        _held(self)

    @property
    def names(self) -> list:
        """The rigs' names, in the group's order."""
        return self._native.names()

    def rig(self, name: str) -> Client:
        """A ``Client`` of one rig, on the group's own connection to it (a
        relayed rig's calls go to its service, as the group's do): to call
        that rig alone. The group owns the connection: closing this client
        does nothing, closing the group closes it. Raises ``KeyError`` for a
        name the group does not hold."""
        return Client(self._native.rig(name))

    def __repr__(self) -> str:
        return f"<rigwire.Group {', '.join(self.names)}>"

    def call(self, method: str, *args: Any, timeout: Optional[float] = None, **kwargs: Any) -> GroupResults:
        """Calls ``method`` on every rig at once, with the arguments sent as
        ``Client.call`` sends them (one bytes-like argument as bytes), and
        returns each rig's answer by name (``failed``: each failing rig's
        exception; the others' answers are kept). ``timeout`` is each rig's
        deadline."""
        return GroupResults(self._native.call("concurrent", method, payload(args, kwargs), timeout, _go_on()))

    def call_in_order(self, method: str, *args: Any, timeout: Optional[float] = None, **kwargs: Any) -> GroupResults:
        """As ``call``, one rig after another in the group's order; every rig
        is called even if an earlier one failed."""
        return GroupResults(self._native.call("in_order", method, payload(args, kwargs), timeout, _go_on()))

    def call_in_reverse(self, method: str, *args: Any, timeout: Optional[float] = None, **kwargs: Any) -> GroupResults:
        """As ``call_in_order``, in reverse order (as stop and cleanup run)."""
        return GroupResults(self._native.call("reverse", method, payload(args, kwargs), timeout, _go_on()))

    def init(self, data: Optional[Dict[str, Any]] = None, *, timeout: Optional[float] = None, **fields: Any) -> GroupResults:
        """``exp.init`` on every rig, with optional data (a dict, or keyword fields)."""
        if data is not None and fields:
            raise TypeError("give the init data as a dict or as keyword fields, not both")
        data = data if data is not None else (fields or None)
        text = None if data is None else _json_text(data)
        return GroupResults(self._native.init(text, timeout, _go_on()))

    def start(self, exp_ref: str, *, timeout: Optional[float] = None) -> GroupResults:
        """``exp.start`` with the experiment reference (checked first, see ``ExpRef``)."""
        return GroupResults(self._native.start(ExpRef(exp_ref), timeout, _go_on()))

    def stop(self, immediately: bool = False, *, timeout: Optional[float] = None) -> GroupResults:
        """``exp.stop``, rigs in reverse order; ``immediately`` interrupts."""
        return GroupResults(self._native.stop(immediately, timeout, _go_on()))

    def cleanup(self, *, timeout: Optional[float] = None) -> GroupResults:
        """``exp.cleanup``, rigs in reverse order."""
        return GroupResults(self._native.cleanup(timeout, _go_on()))

    def status(self, *, timeout: Optional[float] = None) -> GroupResults:
        """Each rig's status: ``"connected"``, ``"initialized"``, ``"running"`` or ``"stopped"``."""
        return GroupResults(self._native.status(timeout, _go_on()))

    def info(self, *, timeout: Optional[float] = None) -> GroupResults:
        """Each rig's ``exp.info``: ``{"status": ..., "exp_ref": ..., "interrupted": ...}``
        (``exp_ref`` is ``None`` before ``start``)."""
        return GroupResults(self._native.info(timeout, _go_on()))

    def wait_event(self, event: str, timeout: float) -> Dict[str, str]:
        """Waits until every rig has reported ``event`` (``exp.event``); returns
        each rig's detail. Each report counts for one wait: this takes each
        rig's oldest report not yet taken (one that came before the call
        too), so waiting once per trial waits for each trial's. Raises
        ``GroupError`` naming the rigs that did not report (by ``timeout``
        seconds), taking nothing. Ctrl-C ends the wait."""
        return dict(self._native.wait_event(event, timeout, _go_on()))

    def close(self) -> None:
        """Closes every connection."""
        self._native.close()

    def __enter__(self) -> "Group":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


_HOOK_TAKES = {
    "on_init": "the init data",
    "on_start": "the experiment reference",
    "on_stop": "whether to interrupt at once",
    "on_cleanup": "nothing",
}


def _check_hook(step: str, fn: Callable[..., Any]) -> None:
    """Raises ``TypeError`` for a hook that the call ``_hook`` makes cannot
    fit (``on_init(a, b)``): said when it is registered, not when the step
    is taken, mid-experiment."""
    takes_value = any(p != "caller" for p in _parameters(fn))
    kwargs = {"caller": None} if _takes_caller(fn) else {}
    said = f"{_HOOK_TAKES[step]} as its one argument, or with nothing"
    _check_fits(fn, f"the {step} hook", said, (None,) if takes_value else (), kwargs)


def _parameters(fn: Callable[..., Any]) -> Any:
    """``fn``'s parameters by name; none known for a builtin."""
    try:
        return _inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return {}


def _check_fits(fn: Callable[..., Any], what: str, said: str, args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> None:
    """Raises ``TypeError`` when ``fn`` cannot be called with ``args`` and
    ``kwargs`` (placeholders of what it will be called with, ``said``)."""
    try:
        signature = _inspect.signature(fn)
    except (TypeError, ValueError):  # a builtin: left to its call
        return
    try:
        signature.bind(*args, **kwargs)
    except TypeError as e:
        raise TypeError(
            f"{what} {_label(fn, 'hook')}{signature} cannot take its call: it is called with {said} ({e})"
        ) from None


def _hook(fn: Callable[..., Any]) -> Callable[[str, Any], _Outcome]:
    """Wraps a lifecycle hook: the step's argument (JSON text) is passed as
    one value if the function takes one besides ``caller``, else nothing."""
    wants_caller = _takes_caller(fn)
    takes_value = any(p != "caller" for p in _parameters(fn))
    call = _lent(fn, _awaited(fn))

    def run(text: str, caller: Any) -> _Outcome:
        args = (_json.loads(text),) if takes_value else ()
        kwargs = {"caller": _caller(fn, caller)} if wants_caller else {}
        try:
            made = call(caller, *args, **kwargs)
            if _inspect.isawaitable(made):
                # A plain def that made a coroutine: nothing would run it, and
                # the step would succeed with its work undone.
                getattr(made, "close", lambda: None)()
                raise TypeError(
                    f"{_label(fn, 'the hook')} returned {type(made).__name__} that nothing awaits: "
                    "write the hook async def, and it runs to its end"
                )
            return (None, "null", None)
        except BaseException as e:  # the step fails with it; the rig carries on
            return _failure(e, fn)

    return run


class Rig:
    """The standard experiment lifecycle a rig exposes (``exp.init``,
    ``exp.start``, ``exp.stop``, ``exp.cleanup``, ``exp.status``,
    ``exp.info``), as the Rust ``RigService`` does, with Python hooks. Steps
    out of order are refused before a hook runs, and a step in progress
    refuses a second one, except that ``exp.stop`` with ``immediately``
    may interrupt a start in progress (its ``on_stop(True)`` runs beside
    ``on_start``, to make a start hung on its hardware give up; the rig
    ends stopped); a hook that raises fails its step.

        rig = rigwire.Rig()

        @rig.on_start
        def start(exp_ref):        # "2026-11-26_1_ZM_1"
            ...

        server = rigwire.Server("tcp://0.0.0.0:7400", name="rig-1")
        rig.expose(server)
        server.serve_forever()

    ``on_init`` gets the init data (a dict, or ``None``), ``on_stop`` whether
    to interrupt at once, ``on_cleanup`` nothing; a hook may also take no
    argument at all. An ``async def`` hook runs to its end, as an ``async
    def`` handler does."""

    def __init__(self) -> None:
        self._hooks: Dict[str, Callable[..., Any]] = {}
        self._exposed = False

    def _set(self, step: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        if self._exposed:
            # The server took the hooks as they were: this one would never
            # run, and its step would succeed all the same.
            raise RuntimeError(
                f"{step} registered after rig.expose(server), where it would never run: "
                "register every hook first, then expose the rig"
            )
        _check_hook(step, fn)
        self._hooks[step] = fn
        return fn

    def on_init(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Runs on ``exp.init`` with its data. Registered before ``expose``."""
        return self._set("on_init", fn)

    def on_start(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Runs on ``exp.start`` with the experiment reference. Registered
        before ``expose``."""
        return self._set("on_start", fn)

    def on_stop(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Runs on ``exp.stop`` with whether to interrupt at once. Registered
        before ``expose``."""
        return self._set("on_stop", fn)

    def on_cleanup(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Runs on ``exp.cleanup``. Registered before ``expose``."""
        return self._set("on_cleanup", fn)

    def expose(self, server: Server) -> None:
        """Exposes the lifecycle on ``server`` (before it serves), with the
        hooks registered so far; registering one later raises
        ``RuntimeError``, as it would never run."""
        hooks = {k: _own(server._token, _hook(f)) for k, f in self._hooks.items()}
        server._native.expose_lifecycle(**hooks)
        self._exposed = True
