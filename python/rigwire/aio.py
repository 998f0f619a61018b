"""rigwire with ``async def``: the client API of ``rigwire`` for asyncio code.

It runs under ``asyncio.run`` and inside an event loop that is already
running (Jupyter's), needs no other event loop or runtime, and never blocks
the loop: each wait runs on a thread of a pool of its own, with the GIL
released; so does starting a call, which waits while the peer does not read.
Cancelling the task that awaits a call cancels the call on the wire.

    import rigwire.aio

    async def main():
        async with await rigwire.aio.connect("tcp://127.0.0.1:7400") as rig:
            print(await rig.call("add", 1, 2))
            print(await rig.root.exp.status())
"""

import asyncio
import concurrent.futures
from typing import Any, AsyncIterator, Callable, Iterable, Optional, TypeVar

import rigwire as _rigwire

__all__ = ["connect", "Client"]

T = TypeVar("T")

# Waits block a thread each (the GIL released); more threads than the default
# executor's few, so that many calls can be awaited at once.
_POOL = concurrent.futures.ThreadPoolExecutor(max_workers=256, thread_name_prefix="rigwire-aio")


async def _off_loop(fn: Callable[[], T]) -> T:
    return await asyncio.get_running_loop().run_in_executor(_POOL, fn)


async def _start_off_loop(start: Callable[[], T], cancel: Callable[[T], None]) -> T:
    """Starts calls off the loop: starting waits while the peer does not read
    (for room, within the calls' deadline) or while a lost connection is made
    again. If the awaiting task is cancelled meanwhile, what ``start``
    started is cancelled as soon as it has."""
    started = asyncio.get_running_loop().run_in_executor(_POOL, start)
    try:
        return await asyncio.shield(started)
    except asyncio.CancelledError:

        def cancel_when_started(done: "asyncio.Future[T]") -> None:
            if not done.cancelled() and done.exception() is None:
                cancel(done.result())

        started.add_done_callback(cancel_when_started)
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
) -> "Client":
    """``rigwire.connect``, awaited."""
    def dial() -> _rigwire.Client:
        return _rigwire.connect(
            url, name, secret, secret_file, timeout, pin=pin, ca=ca, reconnect=reconnect, max_frame=max_frame
        )

    return Client(await _off_loop(dial))


class Client:
    """A ``rigwire.Client`` whose waits are awaited (from ``rigwire.aio.connect``)."""

    def __init__(self, client: _rigwire.Client):
        self._client = client

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
        start = lambda: self._client.start(method, *args, timeout=timeout, **kwargs)  # noqa: E731
        call = await _start_off_loop(start, _rigwire.Call.cancel)
        try:
            return await _off_loop(call.result)
        except asyncio.CancelledError:
            call.cancel()
            raise

    async def map(
        self, method: str, items: Iterable[Any], *, window: int = 64, timeout: Optional[float] = None
    ) -> AsyncIterator[Any]:
        """``rigwire.Client.map``, awaited: ``async for result in client.map(...)``
        yields the results in order, with up to ``window`` calls in flight
        started in batches. Cancelling the awaiting task, or closing the
        iterator early, cancels the calls in flight."""
        calls = _rigwire._Window(items, window)
        native = self._client._native
        try:
            while True:
                due = calls.due()
                if due:
                    batch = lambda: native.start_batch(method, due, timeout)  # noqa: E731
                    cancel_all = lambda natives: [n.cancel() for n in natives]  # noqa: E731
                    calls.started(await _start_off_loop(batch, cancel_all))
                call = calls.next()
                if call is None:
                    return
                try:
                    yield await _off_loop(call.result)
                except asyncio.CancelledError:
                    call.cancel()
                    raise
        finally:
            calls.cancel()

    async def notify(self, method: str, *args: Any, **kwargs: Any) -> None:
        """Sends a one-way notify."""
        await _off_loop(lambda: self._client.notify(method, *args, **kwargs))

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
