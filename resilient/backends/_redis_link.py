"""The connection side of :class:`~resilient.backends.redis.RedisBackend`.

A :class:`RedisLink` runs one breaker step as one ``EVALSHA`` of the Lua
script, bounded by a time budget, and tracks whether Redis is reachable:
after a failure it reports "down" once, then lets one caller per reconnect
interval try again, and reports "up" when Redis answers. A failed step
returns None; it never raises (cancellation excepted, which is the caller's).

What is *not* an outage:

- waiting for a turn (see :mod:`._redis_gate`): back-pressure, not latency;
  a pool with no free connection (the application holds them all) only
  makes that one step go without Redis;
- time the event loop spent stalled (busy with other tasks, or blocked):
  the budget is spent in short slices, and a slice that ends late counts
  only the share of it in which the loop ran normally, so mostly time in
  which the loop was free to read Redis's reply is blamed on Redis (but a
  step never waits more than :data:`CEILING` budgets of wall time, so that
  a silent Redis is found however congested the loop);
- news from a step that began before the link last changed status: each
  status change starts a new *era*, and only a step of the current era may
  end it. A reply arriving late from before an outage does not end it, and
  a failure from before a recovery does not start another one: one outage,
  one ``BackendDegraded``/``BackendRecovered`` pair.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
from collections.abc import Callable
from importlib import resources
from typing import Any

from redis.exceptions import NoScriptError

from resilient._clock import Clock
from resilient._events import BackendDegraded, BackendRecovered, EventBus, default_bus
from resilient.backends._redis_clients import async_twin, sync_twin
from resilient.backends._redis_gate import (
    AsyncGate,
    SyncGate,
    async_gate,
    drop_idle,
    drop_idle_async,
    has_free_connection,
    pool_exhausted,
    sync_gate,
)

__all__ = ["SCRIPT", "SCRIPT_SHA", "RedisLink"]

logger = logging.getLogger("resilient")

SCRIPT = resources.files("resilient.backends").joinpath("_redis_breaker.lua").read_text("utf-8")
"""The Lua source of every breaker step (loaded once per server, called by SHA)."""
SCRIPT_SHA = hashlib.sha1(SCRIPT.encode("utf-8")).hexdigest()

SLICES = 5
"""The budget is spent in this many slices (see the module docstring)."""
CEILING = 10
"""However stalled the loop, a step is given up after this many budgets of wall time."""
GRACE = 3
"""Loop iterations a step gets after a stalled slice to read a reply that arrived meanwhile."""


async def _script(client: Any, args: tuple[Any, ...]) -> list[int]:
    """Run the breaker script by hash (loading it once more after a flush) and decode the reply."""
    try:
        reply = await client.evalsha(SCRIPT_SHA, 4, *args)
    except NoScriptError:
        await client.script_load(SCRIPT)
        reply = await client.evalsha(SCRIPT_SHA, 4, *args)
    return [int(n) for n in reply.split()]


class RedisLink:
    """Run script steps on one Redis server, degrading instead of raising.

    Args:
        client: The user's client (either flavour).
        async_client: The asyncio client, or None to build one on first use.
        sync_source: The client the blocking twin is built from (or used as is).
        timeout: Seconds one step may take.
        reconnect_interval: Seconds between attempts while Redis is down.
        on_down: Called once per outage (outside the lock) when Redis stops
            answering, before ``BackendDegraded`` is emitted.
        on_up: Called once per outage when Redis answers again, before
            ``BackendRecovered`` is emitted.
    """

    def __init__(
        self,
        client: Any,
        async_client: Any,
        sync_source: Any,
        timeout: float,
        reconnect_interval: float,
        on_down: Callable[[], object],
        on_up: Callable[[], object],
    ) -> None:
        self.client = client
        self.timeout = timeout
        self.reconnect_interval = reconnect_interval
        self.clock: Clock | None = None
        self._aclient = async_client
        self._sync_source = sync_source
        self._sync: Any = None
        self._on_down = on_down
        self._on_up = on_up
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

    def now(self) -> float:
        """Return the breaker's clock reading (for events and the reconnect interval)."""
        clock = self.clock
        if clock is None:
            raise RuntimeError("RedisBackend used before bind()")
        return clock.monotonic()

    def describe(self) -> str:
        """Return ``"redis host:port/db key-prefix"`` for events and logs."""
        kwargs = getattr(getattr(self.client, "connection_pool", None), "connection_kwargs", {})
        server = kwargs.get("path") or f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}"
        return f"redis {server}/{kwargs.get('db', 0)} {self.label}"

    # --- reachability ------------------------------------------------------------

    def _begin(self) -> int | None:
        """Return the era a step starts in, or None if it must not try Redis.

        While Redis is down, one caller per reconnect interval may try (it
        becomes the prober); the others are told no at once.
        """
        era = self._era  # read first: a step that sees "up" belongs to that era
        until = self.down_until
        if until is None:
            return era
        with self._lock:
            until = self.down_until
            if until is None:
                return self._era
            if self._probing or self.now() < until:
                return None
            self._probing = True
            return self._era

    def _failed(self, exc: BaseException, era: int) -> bool:
        """Note a failed step; True if it started an outage."""
        with self._lock:
            if era != self._era:
                return False  # began before the last change of status: not news
            first = self.down_until is None
            self.down_until = self.now() + self.reconnect_interval
            self._probing = False
            if first:
                self._era += 1
        if not first:
            return False
        self._on_down()
        logger.warning("circuit breaker %r: Redis unavailable, using local state (%r)", self.name, exc)
        bus = self.bus
        if bus.wants(BackendDegraded):
            bus.emit(
                BackendDegraded(
                    policy="circuit_breaker",
                    name=self.name,
                    operation=None,
                    time=self.now(),
                    backend=self.describe(),
                    exception=exc,
                )
            )
        return True

    def _answered(self, era: int) -> bool:
        """Note a reply; True if it ended an outage."""
        if self.down_until is None:
            return False
        with self._lock:
            if era != self._era or self.down_until is None:
                return False  # a late reply from before the outage: not news
            self.down_until = None
            self._probing = False
            self._era += 1
        self._on_up()
        logger.info("circuit breaker %r: Redis answers again, using shared state", self.name)
        bus = self.bus
        if bus.wants(BackendRecovered):
            bus.emit(
                BackendRecovered(
                    policy="circuit_breaker",
                    name=self.name,
                    operation=None,
                    time=self.now(),
                    backend=self.describe(),
                )
            )
        return True

    def forked(self) -> None:
        """Start afresh in a forked child: the parent's turns and locks are not its own."""
        self._lock = threading.Lock()
        self._probing = False
        self._gates = None
        sync = self._sync
        self._sync_gate = None if sync is None else sync_gate(sync)

    def _unanswered(self, era: int) -> None:
        """A step ended without news (interrupted, or no connection for it): free the probe slot."""
        if self.down_until is None:
            return
        with self._lock:
            if era == self._era and self.down_until is not None:
                self._probing = False

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
                reply = client.evalsha(SCRIPT_SHA, 4, *args)
            except NoScriptError:
                client.script_load(SCRIPT)  # a restarted or flushed server: load once more
                reply = client.evalsha(SCRIPT_SHA, 4, *args)
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
        step = asyncio.ensure_future(_script(client, args))
        try:
            done = await self._within_budget(step)
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

    async def _within_budget(self, step: asyncio.Future[list[int]]) -> bool:
        """Wait for *step* for one budget of time in which the loop ran normally."""
        loop = asyncio.get_running_loop()
        budget = self.timeout
        piece = budget / SLICES
        spent = 0.0
        give_up = loop.time() + CEILING * budget
        while True:
            length = min(piece, budget - spent)
            start = loop.time()
            done, _ = await asyncio.wait((step,), timeout=length)
            if done:
                return True
            # Woken late: the loop was stalled or congested (other tasks, a
            # blocking call, a busy host), and the step could not move either.
            # Only the share of the slice in which it could is blamed on Redis.
            now = loop.time()
            elapsed = now - start
            if elapsed <= length:
                spent += length
            else:
                spent += length * length / elapsed
                # A reply that arrived while the loop was stalled is read in
                # the next few iterations: let them run before judging.
                for _ in range(GRACE):
                    await asyncio.sleep(0)
                    if step.done():
                        return True
            if spent >= budget * 0.999 or now >= give_up:
                return False

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
