"""rigwire with ``async def``: the client API of ``rigwire`` for asyncio code.

It runs under ``asyncio.run`` and inside an event loop that is already
running (Jupyter's), needs no other event loop or runtime, and never blocks
the loop. An awaited call holds no thread while it is made or waits: the
connection tells the loop when there is room for it at a peer that stopped
reading, and when its answer (or its deadline, or a lost connection) comes,
so a thousand slow calls in flight cost no threads, and a quick call beside
them keeps its deadline. What still runs on a thread of a pool of the
module's own, with the GIL released: making a lost connection again
(``reconnect=True``, one thread per client), a group's steps, a ping,
connecting. A notify holds none either.
Cancelling the task that awaits a call cancels the call on the wire.

    import rigwire.aio

    async def main():
        async with await rigwire.aio.connect("tcp://127.0.0.1:7400") as rig:
            print(await rig.call("add", 1, 2))
            print(await rig.root.exp.status())
"""

import asyncio
import collections
import concurrent.futures
import functools
import sys
import threading
from typing import Any, AsyncIterator, Callable, Deque, Dict, Iterable, Optional, TypeVar

import rigwire as _rigwire

__all__ = ["connect", "Client", "Group"]

T = TypeVar("T")

# What blocks (the GIL released): reconnecting, a group's steps, pings,
# connecting. More threads than the default executor's few, so
# that many of those can be awaited at once; a call needs none.
_POOL = concurrent.futures.ThreadPoolExecutor(max_workers=256, thread_name_prefix="rigwire-aio")


async def _off_loop(fn: Callable[[], T]) -> T:
    return await asyncio.get_running_loop().run_in_executor(_POOL, fn)


class _Turn:
    """A start's turn to try again: set by the connection's room edge (from
    its thread) or by the start ahead of it in line."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self._loop = loop
        self._ready = loop.create_future()

    def wake(self) -> None:
        if not self._ready.done():
            self._ready.set_result(None)

    def wake_threadsafe(self) -> None:  # on the thread that freed room
        try:
            self._loop.call_soon_threadsafe(self.wake)
        except RuntimeError:
            pass  # the loop has closed: nobody awaits the start any more

    async def wait(self, seconds: Optional[float]) -> None:
        """Until woken, or ``seconds`` (``None``: no limit) pass."""
        try:
            await asyncio.wait_for(asyncio.shield(self._ready), seconds)
        except asyncio.TimeoutError:
            pass
        self._ready = self._loop.create_future()


class _Starts:
    """How one client starts calls and sends notifies with no thread
    waiting. One that finds no room at a peer that does not read (or, for
    a call, as many calls in flight as the peer runs at once) awaits the
    connection's room edge; those waiting form a line, and only the first
    tries again at each edge, then hands its turn on (a thousand waiting
    would each try at every edge). One that finds the connection lost, with
    reconnect on, makes it again on the pool, doing its work there; the
    others await that, then try again. Each keeps the deadline it was made
    with."""

    def __init__(self, native: "_rigwire.NativeClient"):
        self._native = native
        self._line: Deque[_Turn] = collections.deque()
        self._redial: "Optional[asyncio.Future[Any]]" = None

    async def start(self, method: str, payloads: list, timeout: Optional[float]) -> list:
        """The native calls of ``method``, one per payload, all started.
        Cancelling the awaiting task cancels those started."""
        calls: list = []

        def attempt(made: "Optional[_rigwire.Deferred]", wake: Callable[[], None]) -> "Optional[_rigwire.Deferred]":
            started, made = self._native.try_start(method, payloads[len(calls) :], timeout, made, wake)
            calls.extend(started)
            return made

        def redial(left: Optional[float]) -> list:
            return self._native.start_batch(method, payloads[len(calls) :], left)

        def cancel_all(natives: list) -> None:
            for native in natives:
                native.cancel()

        try:
            calls.extend(await self._done(attempt, redial, cancel_all) or [])
            return calls
        except BaseException:
            cancel_all(calls)
            raise

    async def notify(self, method: str, payload: Any) -> None:
        """Sends a notify of ``method``."""

        def attempt(made: "Optional[_rigwire.Deferred]", wake: Callable[[], None]) -> "Optional[_rigwire.Deferred]":
            return self._native.try_notify(method, payload, made, wake)

        await self._done(attempt, lambda _: self._native.notify(method, payload), lambda _: None)

    async def _done(
        self,
        attempt: "Callable[[Optional[_rigwire.Deferred], Callable[[], None]], Optional[_rigwire.Deferred]]",
        redial: Callable[[Optional[float]], Any],
        undo: Callable[[Any], None],
    ) -> Any:
        """Runs ``attempt(made, wake)``, a native try that never waits and
        returns a ``Deferred`` while it has not done all it was asked, until
        it has. The first to find the connection lost does the rest as
        ``redial(seconds_left)`` on the pool, and returns what that returns
        (``undo`` takes it back if the awaiting task was cancelled
        meanwhile); the others await that."""
        turn = _Turn(asyncio.get_running_loop())
        made = None
        now = True
        try:
            while True:
                first = not self._line or self._line[0] is turn
                if now or first or made.seconds_left() == 0:
                    made = attempt(made, turn.wake_threadsafe)
                    if made is None:
                        return None
                    if made.redial:
                        if self._redial is None or self._redial.done():
                            return await self._redialing(redial, made.seconds_left(), undo)
                        await asyncio.wait([self._redial], timeout=made.seconds_left())
                        continue  # `now` is still true: try again
                    if turn not in self._line:
                        self._line.append(turn)
                now = False
                await turn.wait(made.seconds_left())
        finally:
            if turn in self._line:
                first = self._line[0] is turn
                self._line.remove(turn)
                if first and self._line:
                    self._line[0].wake()

    async def _redialing(self, redial: Callable[[Optional[float]], Any], left: Optional[float], undo: Callable[[Any], None]) -> Any:
        """Makes the lost connection again on the pool, by ``redial(left)``."""
        redialed = asyncio.get_running_loop().run_in_executor(_POOL, lambda: redial(left))
        self._redial = redialed
        try:
            return await asyncio.shield(redialed)
        except asyncio.CancelledError:

            def undo_when_done(done: "asyncio.Future[Any]") -> None:
                if not done.cancelled() and done.exception() is None:
                    undo(done.result())

            redialed.add_done_callback(undo_when_done)
            raise


async def _answer(call: "_rigwire.Call") -> Any:
    """The answer of a call in flight, awaited with no thread waiting for it:
    the connection's reader wakes the loop once it is in. Cancelling the
    awaiting task cancels the call on the wire."""
    loop = asyncio.get_running_loop()
    ready = loop.create_future()

    def settle() -> None:
        if not ready.done():
            ready.set_result(None)

    def wake() -> None:  # on the thread that took the answer in
        try:
            loop.call_soon_threadsafe(settle)
        except RuntimeError:
            pass  # the loop has closed: nobody awaits the answer any more

    call._native.on_ready(wake)
    try:
        await ready
    except asyncio.CancelledError:
        call.cancel()
        raise
    return call.result(0)


async def _cancellable(wait: Callable[[], T]) -> T:
    """Runs a blocking group wait off the loop; cancelling the awaiting task
    ends the wait and cancels every rig's call in flight (the wait asks the
    flag set here about every 50 ms)."""
    stop = threading.Event()

    def run() -> list:
        _rigwire._group_go_on.go_on = lambda: not stop.is_set()
        try:
            # In a box the awaiting task empties: the futures and the pool's
            # thread, which let go of it when they will, never hold the
            # answers themselves (a step's unread failures warn as the
            # awaiting line drops them).
            return [wait()]
        finally:
            del _rigwire._group_go_on.go_on

    done = asyncio.get_running_loop().run_in_executor(_POOL, run)
    try:
        result = (await asyncio.shield(done)).pop()
        if isinstance(result, _rigwire.GroupResults):
            # Made on a pool thread: its warning points at the awaiting line.
            result._site = _rigwire._user_site(sys._getframe(1))
        return result
    except asyncio.CancelledError:
        stop.set()
        # What it ends with (rigwire.Cancelled) is nobody's to hear.
        done.add_done_callback(lambda f: f.cancelled() or f.exception())
        raise


async def connect(
    url: str,
    name: str = "python",
    secret: Optional[_rigwire.Secret] = None,
    secret_file: Optional[_rigwire.PathLike] = None,
    timeout: Optional[float] = None,
    *,
    pin: Optional[str] = None,
    ca: Optional[_rigwire.PathLike] = None,
    reconnect: bool = False,
    max_frame: Optional[int] = None,
    expose: Optional[Dict[str, Callable[..., Any]]] = None,
) -> "Client":
    """``rigwire.connect``, awaited. The functions of ``expose``, which the
    peer may call back, run on this event loop (an ``async def`` awaited
    there), so they may touch what the app's tasks touch; their ``caller``
    is a ``rigwire.aio.Client``. The peer waits for them as for any handler,
    so a loop that stays blocked holds its calls up to their deadline."""
    _rigwire._check_address(url, name, "rigwire.aio.connect")
    loop = asyncio.get_running_loop()
    on_loop = {n: _on_loop(f, loop) for n, f in (expose or {}).items()}

    def dial() -> _rigwire.Client:
        return _rigwire.connect(
            url, name, secret, secret_file, timeout, on_loop, pin=pin, ca=ca, reconnect=reconnect, max_frame=max_frame
        )

    return Client(await _off_loop(dial))


def _on_loop(fn: Callable[..., Any], loop: asyncio.AbstractEventLoop) -> Callable[..., Any]:
    """``fn`` as a handler that runs on the app's ``loop``, from the
    handler's thread, which waits for its result. Its ``caller`` is awaited
    there, whether ``fn`` is an ``async def`` or not: it must not block the
    app's loop."""

    @functools.wraps(fn)
    def on_app_loop(*args: Any, **kwargs: Any) -> Any:
        if isinstance(kwargs.get("caller"), _rigwire.Client):
            kwargs["caller"] = Client(kwargs["caller"])
        return fn(*args, **kwargs)

    return _rigwire._on_loop(on_app_loop, lambda: loop)


class Client:
    """A ``rigwire.Client`` whose waits are awaited (from ``rigwire.aio.connect``)."""

    def __init__(self, client: _rigwire.Client):
        if not isinstance(client, _rigwire.Client):
            raise TypeError(_rigwire._not_native("await rigwire.aio.connect", client))
        self._client = client
        self._starts = _Starts(client._native)

    @property
    def url(self) -> str:
        """The URL this client dialed."""
        return self._client.url

    @property
    def root(self) -> "_rigwire._Root":
        """Methods as attributes: ``await client.root.add(1, 2)``."""
        return _rigwire._Root(self)

    async def call(self, method: str, *args: Any, timeout: Optional[float] = None, **kwargs: Any) -> Any:
        """Calls ``method`` and returns its result, as ``rigwire.Client.call``.
        Cancelling the awaiting task cancels the call on the wire."""
        (native,) = await self._starts.start(method, [_rigwire.payload(args, kwargs)], timeout)
        return await _answer(_rigwire.Call(native))

    async def map(
        self, method: str, items: Iterable[Any], *, window: int = 64, timeout: Optional[float] = None
    ) -> AsyncIterator[Any]:
        """``rigwire.Client.map``, awaited: ``async for result in client.map(...)``
        yields the results in order, with up to ``window`` calls in flight
        started in batches. Cancelling the awaiting task, or closing the
        iterator early, cancels the calls in flight."""
        calls = _rigwire._Window(items, window)
        try:
            while True:
                due = calls.due()
                if due:
                    calls.started(await self._starts.start(method, due, timeout))
                call = calls.next()
                if call is None:
                    return
                yield await _answer(call)
        finally:
            calls.cancel()

    async def notify(self, method: str, *args: Any, **kwargs: Any) -> None:
        """Sends a one-way notify; at a peer that does not read, it awaits
        room (within the client's default deadline, if it has one)."""
        await self._starts.notify(method, _rigwire.payload(args, kwargs))

    async def ping(self) -> float:
        """The round-trip time of a ping, in seconds."""
        return await _off_loop(self._client.ping)

    async def methods(self) -> list:
        """What the peer exposes."""
        return await self.call("rigwire.methods")

    async def close(self) -> None:
        """Closes the connection with a goodbye."""
        await _off_loop(self._client.close)

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()


class Group:
    """``rigwire.Group`` awaited (from ``Group.connect``): each step and call
    runs on every rig as the blocking group does, off the loop. Cancelling
    the awaiting task cancels every rig's call in flight (each rig is told).

        async with await rigwire.aio.Group.connect({"rig-1": url_1, "rig-2": url_2}) as rigs:
            await rigs.init(subject="ZM_1")
            await rigs.start("2026-11-26_1_ZM_1")
    """

    def __init__(self, group: _rigwire.Group):
        self._group = group

    @classmethod
    async def connect(cls, rigs: Dict[str, str], *args: Any, **settings: Any) -> "Group":
        """``rigwire.Group(rigs, ...)``, awaited: the same settings."""
        return cls(await _off_loop(lambda: _rigwire.Group(rigs, *args, **settings)))

    @property
    def names(self) -> list:
        """The rigs' names, in the group's order."""
        return self._group.names

    def rig(self, name: str) -> Client:
        """``rigwire.Group.rig``, awaited: a client of one rig, on the
        group's own connection to it."""
        return Client(self._group.rig(name))

    async def call(self, method: str, *args: Any, timeout: Optional[float] = None, **kwargs: Any) -> _rigwire.GroupResults:
        """``rigwire.Group.call``: every rig at once."""
        return await _cancellable(lambda: self._group.call(method, *args, timeout=timeout, **kwargs))

    async def call_in_order(
        self, method: str, *args: Any, timeout: Optional[float] = None, **kwargs: Any
    ) -> _rigwire.GroupResults:
        """``rigwire.Group.call_in_order``: one rig after another."""
        return await _cancellable(lambda: self._group.call_in_order(method, *args, timeout=timeout, **kwargs))

    async def call_in_reverse(
        self, method: str, *args: Any, timeout: Optional[float] = None, **kwargs: Any
    ) -> _rigwire.GroupResults:
        """``rigwire.Group.call_in_reverse``: one rig after another, last first."""
        return await _cancellable(lambda: self._group.call_in_reverse(method, *args, timeout=timeout, **kwargs))

    async def init(
        self, data: Optional[Dict[str, Any]] = None, *, timeout: Optional[float] = None, **fields: Any
    ) -> _rigwire.GroupResults:
        """``exp.init`` on every rig (``rigwire.Group.init``)."""
        return await _cancellable(lambda: self._group.init(data, timeout=timeout, **fields))

    async def start(self, exp_ref: str, *, timeout: Optional[float] = None) -> _rigwire.GroupResults:
        """``exp.start`` on every rig (``rigwire.Group.start``)."""
        return await _cancellable(lambda: self._group.start(exp_ref, timeout=timeout))

    async def stop(self, immediately: bool = False, *, timeout: Optional[float] = None) -> _rigwire.GroupResults:
        """``exp.stop``, rigs in reverse order (``rigwire.Group.stop``)."""
        return await _cancellable(lambda: self._group.stop(immediately, timeout=timeout))

    async def cleanup(self, *, timeout: Optional[float] = None) -> _rigwire.GroupResults:
        """``exp.cleanup``, rigs in reverse order (``rigwire.Group.cleanup``)."""
        return await _cancellable(lambda: self._group.cleanup(timeout=timeout))

    async def status(self, *, timeout: Optional[float] = None) -> _rigwire.GroupResults:
        """``exp.status`` of every rig."""
        return await _cancellable(lambda: self._group.status(timeout=timeout))

    async def info(self, *, timeout: Optional[float] = None) -> _rigwire.GroupResults:
        """``exp.info`` of every rig."""
        return await _cancellable(lambda: self._group.info(timeout=timeout))

    async def wait_event(self, event: str, timeout: float) -> Dict[str, str]:
        """``rigwire.Group.wait_event``, awaited; cancelling the task ends it."""
        return await _cancellable(lambda: self._group.wait_event(event, timeout))

    async def close(self) -> None:
        """Closes every connection."""
        await _off_loop(self._group.close)

    async def __aenter__(self) -> "Group":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()
