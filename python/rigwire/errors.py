"""rigwire's exceptions. ``rigwire.Error`` is the base of all of them."""

import concurrent.futures
from typing import Dict, List, Optional


class Error(Exception):
    """Something rigwire could not do; ``str(e)`` says what.

    ``kind`` names the protocol's error kind when the peer reported it
    (``"NoSuchMethod"``, ``"Handler"``, ...), else ``None``; ``detail`` is the
    peer's cause chain or traceback, if it sent one.
    """

    def __init__(self, message: str, kind: Optional[str] = None, detail: Optional[str] = None):
        super().__init__(message)
        self.message = message
        self.kind = kind
        self.detail = detail

    def __repr__(self) -> str:
        # What it says, kind and all: a group's printed failures show this.
        return f"{type(self).__name__}({str(self)!r})"


class RemoteError(Error):
    """The peer answered the call with an error (a handler failed, say)."""

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"


class NoSuchMethod(RemoteError):
    """The peer exposes no method of that name (``client.methods()`` lists them)."""


class Unavailable(RemoteError):
    """A relay has no service of that name, or the service went away; the message names it."""


class InvalidUrl(Error, ValueError):
    """The URL is not one rigwire understands (``tcp://host:port``,
    ``tls://host:port``, ``unix:///path``, ``ws://host:port/path``,
    ``wss://host:port/path``); the message says what is wrong with it.
    Nothing was dialled."""


class InvalidConfig(Error, ValueError):
    """A setting rigwire refuses: a name too long or empty, a secret too
    short, a secret file it cannot read. The message says which and why.
    Nothing was dialled."""


class Busy(Error):
    """Too many calls in flight: here (the output queue is full) or at the peer."""


class TooLarge(Error, ValueError):
    """The call's arguments would exceed the connection's frame limit: the
    smaller of the two sides' ``max_frame`` (16 MiB unless both raise it:
    ``connect(..., max_frame=...)`` and ``Server(..., max_frame=...)``).
    Nothing was sent. A result too large for it reaches the caller as a
    ``RemoteError`` of kind ``"TooLarge"``."""


class DeadlineExceeded(Error, TimeoutError):
    """The call had no answer within its deadline; the peer was told to cancel it."""


class Disconnected(Error, ConnectionError):
    """The connection ended (the peer closed, crashed or went silent) before the answer."""


class ConnectFailed(Error, ConnectionError):
    """The peer could not be reached (nothing listening, no route, timeout)."""


class ListenFailed(Error, OSError):
    """A server could not listen on its URL: the port is taken, the address
    is not this machine's, the socket file's folder is missing; the message
    says which, and what to do. An ``OSError``, as ``socket.bind`` raises."""


class TlsFailed(ConnectFailed):
    """TLS failed: the server's certificate is not the pinned one (both
    fingerprints named), expired or not yet valid (its dates), for another
    name (both names) or from no trusted authority; or one side spoke TLS
    and the other did not (which one, and the URL to use)."""


class Cancelled(Error, concurrent.futures.CancelledError):
    """The call was cancelled (``handle.cancel()``, or Ctrl-C while waiting), so it has no result."""


class GroupError(Error):
    """Some rigs of a group failed (``failed``: rig name to its exception, the
    others' answers kept) or did not answer in time (``missing``)."""

    def __init__(self, message: str, failed: Optional[Dict[str, Error]] = None, missing: Optional[List[str]] = None):
        super().__init__(message)
        self.failed = dict(failed or {})
        self.missing = list(missing or [])


class AuthenticationFailed(Error):
    """The shared secrets differ, or only one side has one."""


class Rejected(Error):
    """The peer refused the connection (full, shutting down, another protocol version)."""


__all__ = [
    "Error",
    "RemoteError",
    "NoSuchMethod",
    "Unavailable",
    "Busy",
    "TooLarge",
    "InvalidUrl",
    "InvalidConfig",
    "DeadlineExceeded",
    "Disconnected",
    "ConnectFailed",
    "ListenFailed",
    "TlsFailed",
    "Cancelled",
    "GroupError",
    "AuthenticationFailed",
    "Rejected",
]
