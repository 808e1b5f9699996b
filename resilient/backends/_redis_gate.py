"""Turns at Redis: a few breaker steps in flight per connection pool, the rest wait.

A step holds a connection until its reply arrives. If every concurrent call
ran its step at once, a burst of callers would become a storm of connection
handshakes and script loads (slow enough, on a busy host, to look like an
outage), and a pool's ``max_connections`` would surface as
``MaxConnectionsError``, another false outage. So steps take turns:

- at most ``limit`` steps per pool run at once: the pool's
  ``max_connections``, and for asyncio at most :data:`MAX_IN_FLIGHT` (one
  event loop gains nothing from more; it only congests itself);
- after a cold start or an outage the asyncio gate opens one turn at a time
  (slow start): each step that succeeds while others wait adds a turn, so
  connections are opened one after the other, not all at once.

Waiting for a turn is back-pressure, never counted as Redis latency. The
helpers at the end read and tidy a pool: whether it has a connection to give,
whether an error only says it had none, and closing its idle connections
(dead after a Redis restart).
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections import deque
from typing import Any

import redis.exceptions

__all__ = [
    "MAX_IN_FLIGHT",
    "AsyncGate",
    "SyncGate",
    "async_gate",
    "drop_idle",
    "drop_idle_async",
    "forget_all",
    "has_free_connection",
    "pool_exhausted",
    "sync_gate",
]

MAX_IN_FLIGHT = 16
"""Most steps one event loop runs at once against one connection pool."""

_UNBOUNDED = 1 << 31


def _pool_of(client: Any) -> Any:
    # Clients sharing a pool share its connections, so they share turns. A
    # cluster client has a pool per node: its turns are counted per client.
    return getattr(client, "connection_pool", None) or client


def _pool_size(pool: Any) -> int:
    size = getattr(pool, "max_connections", None)
    return size if isinstance(size, int) and size > 0 else _UNBOUNDED


class AsyncGate:
    """FIFO turns for the steps of one event loop, with slow start.

    Not thread-safe: each event loop has its own gate (see :func:`async_gate`).

    Args:
        limit: Most turns at once.
    """

    __slots__ = ("_waiters", "active", "capacity", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.capacity = 1
        self.active = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    def restart(self) -> None:
        """Open turns one at a time again (the pool's connections are new)."""
        self.capacity = 1

    async def enter(self, timeout: float | None = None) -> bool:
        """Wait for a turn, FIFO, for at most *timeout* seconds (None: as long as it takes).

        Args:
            timeout: Seconds to wait at most, or None.

        Returns:
            True with a turn held (give it back with :meth:`leave`), False
            if none came in time.
        """
        if self.active < self.capacity and not self._waiters:
            self.active += 1
            return True
        turn = asyncio.get_running_loop().create_future()
        self._waiters.append(turn)
        try:
            if timeout is None:
                await turn
            else:
                await asyncio.wait((turn,), timeout=timeout)
        except BaseException:
            self._give_up(turn)
            raise
        if turn.done():
            return True
        self._give_up(turn)
        return False

    def _give_up(self, turn: asyncio.Future[None]) -> None:
        if turn.done() and not turn.cancelled():
            # Handed a turn it will not take (cancelled as it arrived): pass it on.
            self.active -= 1
            self._wake()
            return
        turn.cancel()
        try:
            self._waiters.remove(turn)
        except ValueError:
            pass

    def leave(self, succeeded: bool) -> None:
        """Give a turn back.

        Args:
            succeeded: The step got Redis's answer: while others wait, one
                more turn opens (up to ``limit``).
        """
        self.active -= 1
        if succeeded and self._waiters and self.capacity < self.limit:
            self.capacity += 1
        self._wake()

    def _wake(self) -> None:
        waiters = self._waiters
        while waiters and self.active < self.capacity:
            turn = waiters.popleft()
            if not turn.done():
                self.active += 1
                turn.set_result(None)


class SyncGate:
    """Turns for threads: at most ``limit`` blocking steps at once (the pool's size).

    Args:
        limit: Most turns at once.
    """

    __slots__ = ("_slots",)

    def __init__(self, limit: int) -> None:
        self._slots = threading.BoundedSemaphore(limit)

    def enter(self, timeout: float | None = None) -> bool:
        """Wait for a turn for at most *timeout* seconds (None: as long as it takes).

        Args:
            timeout: Seconds to wait at most, or None.

        Returns:
            True with a turn held (give it back with :meth:`leave`), False
            if none came in time.
        """
        return self._slots.acquire(timeout=timeout)

    def leave(self) -> None:
        """Give a turn back."""
        self._slots.release()


_lock = threading.Lock()
_async_gates: weakref.WeakKeyDictionary[Any, weakref.WeakKeyDictionary[Any, AsyncGate]] = (
    weakref.WeakKeyDictionary()
)
_sync_gates: weakref.WeakKeyDictionary[Any, SyncGate | None] = weakref.WeakKeyDictionary()


def forget_all() -> None:
    """Drop every gate: after ``fork()`` the child has none of its parent's steps in flight."""
    global _lock  # the parent's lock may have been held by one of its threads
    _lock = threading.Lock()
    _async_gates.clear()
    _sync_gates.clear()


def async_gate(client: Any, loop: asyncio.AbstractEventLoop) -> AsyncGate:
    """Return the gate of *client*'s pool in *loop* (made on first use).

    Args:
        client: A ``redis.asyncio`` client.
        loop: The running event loop.

    Returns:
        The gate every backend using that pool in that loop shares.
    """
    pool = _pool_of(client)
    with _lock:
        per_loop = _async_gates.get(pool)
        if per_loop is None:
            per_loop = _async_gates[pool] = weakref.WeakKeyDictionary()
        gate = per_loop.get(loop)
        if gate is None:
            gate = per_loop[loop] = AsyncGate(min(_pool_size(pool), MAX_IN_FLIGHT))
        return gate


def sync_gate(client: Any) -> SyncGate | None:
    """Return the gate of the blocking *client*'s pool, or None if the pool is unbounded.

    Args:
        client: A blocking ``redis`` client.

    Returns:
        The gate every backend using that pool shares, or None.
    """
    pool = _pool_of(client)
    with _lock:
        if pool not in _sync_gates:
            size = _pool_size(pool)
            _sync_gates[pool] = None if size >= _UNBOUNDED else SyncGate(size)
        return _sync_gates[pool]


# redis-py >= 5.1 raises MaxConnectionsError; older versions a plain
# ConnectionError with this text. A BlockingConnectionPool that waited its
# own timeout says "No connection available.".
_POOL_EXHAUSTED = (
    getattr(redis.exceptions, "MaxConnectionsError", redis.exceptions.ConnectionError),
    "Too many connections",
    "No connection available.",
)


def pool_exhausted(exc: BaseException) -> bool:
    """True when *exc* says the client's pool had no free connection (no Redis failure)."""
    return isinstance(exc, _POOL_EXHAUSTED[0]) and (
        type(exc) is not redis.exceptions.ConnectionError or str(exc) in _POOL_EXHAUSTED[1:]
    )


def drop_idle(client: Any) -> None:
    """Close the idle connections of a blocking client's pool (they reconnect when next used)."""
    disconnect = getattr(getattr(client, "connection_pool", None), "disconnect", None)
    if disconnect is not None:
        disconnect(inuse_connections=False)


async def drop_idle_async(client: Any) -> None:
    """Close the idle connections of an asyncio client's pool (they reconnect when next used)."""
    disconnect = getattr(getattr(client, "connection_pool", None), "disconnect", None)
    if disconnect is not None:
        await disconnect(inuse_connections=False)


def has_free_connection(client: Any) -> bool:
    """False when the client's pool is known to have no connection to give right now."""
    can = getattr(getattr(client, "connection_pool", None), "can_get_connection", None)
    return True if can is None else bool(can())
