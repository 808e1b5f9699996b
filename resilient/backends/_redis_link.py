"""The connection side of :class:`~resilient.backends.redis.RedisBackend`.

A :class:`RedisLink` runs one breaker step as one ``EVALSHA`` of the Lua
script, bounded by a time budget, and tracks whether Redis is reachable
(:mod:`._redis_status`). A failed step returns None; it never raises
(cancellation excepted, which is the caller's).

What is *not* an outage:

- waiting for a turn (see :mod:`._redis_gate`): back-pressure, not latency;
  a pool with no free connection (the application holds them all) only
  makes that one step go without Redis;
- time the event loop spent stalled, busy with other tasks or blocked
  (see :mod:`._redis_budget`);
- news from a step that began before the link last changed status (see
  :mod:`._redis_status`).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
import weakref
from collections.abc import Callable
from importlib import resources
from typing import Any, ClassVar

from redis.exceptions import NoScriptError

from resilient._clock import Clock
from resilient._events import EventBus, default_bus
from resilient.backends._redis_budget import within_budget
from resilient.backends._redis_clients import async_twin, sync_twin
from resilient.backends._redis_gate import (
    AsyncGate,
    SyncGate,
    async_gate,
    drop_idle,
    drop_idle_async,
    forget_all,
    has_free_connection,
    pool_exhausted,
    sync_gate,
)
from resilient.backends._redis_status import LinkStatus

__all__ = ["SCRIPT", "SCRIPT_SHA", "RedisLink"]

SCRIPT = resources.files("resilient.backends").joinpath("_redis_breaker.lua").read_text("utf-8")
"""The Lua source of every breaker step (loaded once per server, called by SHA)."""
SCRIPT_SHA = hashlib.sha1(SCRIPT.encode("utf-8")).hexdigest()


async def _script(client: Any, args: tuple[Any, ...], link: RedisLink) -> list[int]:
    """Run the link's script by hash (loading it once more after a flush) and decode the reply."""
    try:
        reply = await client.evalsha(link.script_sha, link.numkeys, *args)
    except NoScriptError:
        await client.script_load(link.script)
        reply = await client.evalsha(link.script_sha, link.numkeys, *args)
    return [int(n) for n in reply.split()]


def _nothing() -> None:
    """Nothing to do when Redis answers again."""


_links: weakref.WeakSet[RedisLink] = weakref.WeakSet()


def _after_fork() -> None:
    # The child has none of its parent's steps in flight: no turn, no lock,
    # no reconnect attempt is its own.
    forget_all()
    for link in list(_links):
        link.forked()


os.register_at_fork(after_in_child=_after_fork)


class RedisLink(LinkStatus):
    """Run script steps on one Redis server, degrading instead of raising.

    The class attributes name the script and the policy it serves (the
    breaker's); a subclass for another policy overrides them.

    Args:
        client: The user's client (either flavour).
        async_client: The asyncio client, or None to build one on first use.
        sync_source: The client the blocking twin is built from (or used as is).
        timeout: Seconds one step may take.
        reconnect_interval: Seconds between attempts while Redis is down.
        on_down: Called once per outage (outside the lock) when Redis stops
            answering, before ``BackendDegraded`` is emitted.
        on_up: Called once per outage when Redis answers again, before
            ``BackendRecovered`` is emitted (default: nothing).
    """

    script: ClassVar[str] = SCRIPT
    """The Lua source run by every step."""
    script_sha: ClassVar[str] = SCRIPT_SHA
    numkeys: ClassVar[int] = 4
    """How many of a step's arguments are keys."""
    policy: ClassVar[str] = "circuit_breaker"
    """The ``policy`` of the link's ``BackendDegraded``/``BackendRecovered`` events."""
    noun: ClassVar[str] = "circuit breaker"
    """What the link's log messages call the policy."""

    def __init__(
        self,
        client: Any,
        async_client: Any,
        sync_source: Any,
        timeout: float,
        reconnect_interval: float,
        on_down: Callable[[], object],
        on_up: Callable[[], object] | None = None,
    ) -> None:
        self.client = client
        self.timeout = timeout
        self.reconnect_interval = reconnect_interval
        self.clock: Clock | None = None
        self._aclient = async_client
        self._sync_source = sync_source
        self._sync: Any = None
        self._on_down = on_down
        self._on_up = on_up or _nothing
        self.name: str | None = None
        self.label = "resilient"
        self.bus: EventBus = default_bus
        self._lock = threading.Lock()
        self.down_until: float | None = None
        self._probing = False
        self._era = 0  # bumped by every change of status: down, up
        self._sync_gate: SyncGate | None = None
        self._gates: tuple[Any, AsyncGate] | None = None  # (loop, gate) of the last async step
        # Steps given up on (timed out or their caller cancelled), kept until they end.
        self._abandoned: set[asyncio.Future[list[int]]] = set()
        _links.add(self)

    def describe(self) -> str:
        """Return ``"redis host:port/db key-prefix"`` for events and logs."""
        kwargs = getattr(getattr(self.client, "connection_pool", None), "connection_kwargs", {})
        server = kwargs.get("path") or f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}"
        return f"redis {server}/{kwargs.get('db', 0)} {self.label}"

    def forked(self) -> None:
        """Start afresh in a forked child: the parent's turns and locks are not its own."""
        self._lock = threading.Lock()
        self._probing = False
        self._gates = None
        sync = self._sync
        self._sync_gate = None if sync is None else sync_gate(sync)

    # --- clients -------------------------------------------------------------------

    def sync_client(self) -> Any:
        """The blocking client (built on first use)."""
        client = self._sync
        if client is None:
            with self._lock:
                if self._sync is None:
                    built = sync_twin(self._sync_source, self.timeout)
                    self._sync_gate = sync_gate(built)
                    self._sync = built
                client = self._sync
        return client

    def async_client(self) -> Any:
        """The asyncio client (built on first use when only a sync one was given)."""
        client = self._aclient
        if client is None:
            with self._lock:
                if self._aclient is None:
                    self._aclient = async_twin(self._sync_source)
                client = self._aclient
        return client

    # --- steps -----------------------------------------------------------------------

    def run(self, args: tuple[Any, ...], *, bounded: bool = False) -> list[int] | None:
        """Run the script with the blocking client; None if Redis did not answer.

        Args:
            args: The four keys, then the script's arguments (pre-encoded
                bytes where possible: redis-py passes bytes through as is).
            bounded: Wait for a turn at most one budget (then answer None,
                without declaring an outage); otherwise as long as it takes.

        Returns:
            The script's reply decoded to integers, or None (Redis down,
            slow, or erroring; or no turn in time).
        """
        era = self._begin()
        if era is None:
            return None
        client = self.sync_client()
        gate = self._sync_gate
        if gate is not None:
            try:
                entered = gate.enter(self.timeout if bounded else None)
            except BaseException:
                self._unanswered(era)
                raise
            if not entered:
                self._unanswered(era)
                return None
        try:
            try:
                reply = client.evalsha(self.script_sha, self.numkeys, *args)
            except NoScriptError:
                client.script_load(self.script)  # a restarted or flushed server: load once more
                reply = client.evalsha(self.script_sha, self.numkeys, *args)
            numbers = [int(n) for n in reply.split()]
        except Exception as exc:  # a redis error, OSError, or the socket timeout
            if pool_exhausted(exc):
                self._unanswered(era)  # back-pressure: this step only goes local
            elif self._failed(exc, era):
                drop_idle(client)
            return None
        except BaseException:
            self._unanswered(era)
            raise
        finally:
            if gate is not None:
                gate.leave()
        if self._answered(era):
            drop_idle(client)
        return numbers

    def _async_gate(self) -> AsyncGate:
        loop = asyncio.get_running_loop()
        cached = self._gates
        if cached is not None and cached[0] is loop:
            return cached[1]
        gate = async_gate(self.async_client(), loop)
        self._gates = (loop, gate)
        return gate

    async def run_async(self, args: tuple[Any, ...], *, bounded: bool = False) -> list[int] | None:
        """Run the script with the asyncio client within the budget; None if Redis did not answer.

        Args:
            args: The four keys, then the script's arguments (pre-encoded
                bytes where possible: redis-py passes bytes through as is).
            bounded: Wait for a turn at most one budget (then answer None,
                without declaring an outage); otherwise as long as it takes.

        Returns:
            The script's reply decoded to integers, or None (Redis down,
            slow, or erroring; or no turn in time).
        """
        era = self._begin()
        if era is None:
            return None
        gate = self._async_gate()
        try:
            entered = await gate.enter(self.timeout if bounded else None)
        except BaseException:
            self._unanswered(era)
            raise
        if not entered:
            self._unanswered(era)
            return None
        answered = False
        try:
            answered, numbers = await self._step(era, args)
            if answered and self._answered(era):
                # Connections idle since before the outage may be dead: open
                # new ones, one at a time.
                gate.restart()
                await drop_idle_async(self.async_client())
            return numbers
        finally:
            gate.leave(answered)

    async def _step(self, era: int, args: tuple[Any, ...]) -> tuple[bool, list[int] | None]:
        client = self.async_client()
        if era != self._era or not has_free_connection(client):
            # The link went down while this step waited its turn, or the
            # application holds every connection: local state, no outage.
            self._unanswered(era)
            return False, None
        # The script runs as a task of its own and is waited for with a
        # timeout, instead of cancelling the call in place: redis-py can lose
        # a cancellation while it connects to a server that accepts but never
        # answers, and the caller must not hang on that.
        step = asyncio.ensure_future(_script(client, args, self))
        try:
            done = await within_budget(step, self.timeout)
        except BaseException:
            self._abandon(step)
            self._unanswered(era)  # cancellation belongs to the caller: never swallowed
            raise
        if not done:
            self._abandon(step)
            exc: BaseException = TimeoutError(f"Redis did not answer within {self.timeout:g}s")
        else:
            try:
                return True, step.result()
            except (Exception, asyncio.CancelledError) as error:  # a redis error; its own cancellation
                exc = error
            if pool_exhausted(exc):
                self._unanswered(era)
                return False, None
        if self._failed(exc, era):
            await drop_idle_async(client)  # the next attempt must not reuse a dead connection
        return False, None

    def _abandon(self, step: asyncio.Future[list[int]]) -> None:
        """Cancel a step nobody waits for any more; keep it referenced until it ends."""
        step.cancel()
        self._abandoned.add(step)
        step.add_done_callback(self._forget)

    def _forget(self, step: asyncio.Future[list[int]]) -> None:
        self._abandoned.discard(step)
        if not step.cancelled():
            step.exception()  # retrieved: an abandoned step's failure is not news

    def close(self) -> None:
        """Close the blocking client if this link built it."""
        sync = self._sync
        if sync is not None and sync is not self._sync_source:
            sync.close()
            sync.connection_pool.disconnect()  # a client given a pool leaves it open

    async def aclose(self) -> None:
        """Close the clients this link built."""
        client = self._aclient
        if client is not None and client is not self.client:
            await client.aclose(close_connection_pool=True)
        self.close()
