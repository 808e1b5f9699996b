"""The connection side of :class:`~resilient.backends.redis.RedisBackend`.

A :class:`RedisLink` runs one breaker step as one ``EVALSHA`` of the Lua
script, bounded by a time budget, and tracks whether Redis is reachable:
after a failure it reports "down" once, then lets one caller per reconnect
interval try again, and reports "up" when Redis answers. A failed step
returns None; it never raises (cancellation excepted, which is the caller's).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
from collections.abc import Callable
from importlib import resources
from typing import Any, ClassVar

from redis.exceptions import NoScriptError

from resilient._clock import Clock
from resilient._events import BackendDegraded, BackendRecovered, EventBus, default_bus
from resilient.backends._redis_clients import async_twin, sync_twin

__all__ = ["SCRIPT", "SCRIPT_SHA", "RedisLink"]

logger = logging.getLogger("resilient")

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


class RedisLink:
    """Run script steps on one Redis server, degrading instead of raising.

    The class attributes name the script and the policy it serves (the
    breaker's); a subclass for another policy overrides them.

    Args:
        client: The user's client (either flavour).
        async_client: The asyncio client, or None to build one on first use.
        sync_source: The client the blocking twin is built from (or used as is).
        timeout: Seconds one step may take.
        reconnect_interval: Seconds between attempts while Redis is down.
        on_down: Called once (outside the lock) when Redis stops answering,
            before ``BackendDegraded`` is emitted.
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
    ) -> None:
        self.client = client
        self.timeout = timeout
        self.reconnect_interval = reconnect_interval
        self.clock: Clock | None = None
        self._aclient = async_client
        self._sync_source = sync_source
        self._sync: Any = None
        self._on_down = on_down
        self.name: str | None = None
        self.label = "resilient"
        self.bus: EventBus = default_bus
        self._lock = threading.Lock()
        self.down_until: float | None = None
        self._probing = False
        # Steps given up on (timed out or their caller cancelled), kept until they end.
        self._abandoned: set[asyncio.Future[list[int]]] = set()

    def _now(self) -> float:
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

    def _may_try(self) -> bool:
        """While down: let one caller per reconnect interval try Redis."""
        with self._lock:
            until = self.down_until
            if until is None:
                return True
            if self._probing or self._now() < until:
                return False
            self._probing = True
            return True

    def _failed(self, exc: BaseException) -> None:
        with self._lock:
            first = self.down_until is None
            self.down_until = self._now() + self.reconnect_interval
            self._probing = False
        if not first:
            return
        self._on_down()
        logger.warning("%s %r: Redis unavailable, using local state (%r)", self.noun, self.name, exc)
        bus = self.bus
        if bus.wants(BackendDegraded):
            bus.emit(
                BackendDegraded(
                    policy=self.policy,
                    name=self.name,
                    operation=None,
                    time=self._now(),
                    backend=self.describe(),
                    exception=exc,
                )
            )

    def _answered(self) -> None:
        with self._lock:
            if self.down_until is None:
                return
            self.down_until = None
            self._probing = False
        logger.info("%s %r: Redis answers again, using shared state", self.noun, self.name)
        bus = self.bus
        if bus.wants(BackendRecovered):
            bus.emit(
                BackendRecovered(
                    policy=self.policy,
                    name=self.name,
                    operation=None,
                    time=self._now(),
                    backend=self.describe(),
                )
            )

    def _interrupted(self) -> None:
        with self._lock:
            self._probing = False

    # --- clients -------------------------------------------------------------------

    def sync_client(self) -> Any:
        """The blocking client (built on first use)."""
        client = self._sync
        if client is None:
            with self._lock:
                if self._sync is None:
                    self._sync = sync_twin(self._sync_source, self.timeout)
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

    def run(self, args: tuple[Any, ...]) -> list[int] | None:
        """Run the script with the blocking client; None if Redis did not answer.

        Args:
            args: The four keys, then the script's arguments (pre-encoded
                bytes where possible: redis-py passes bytes through as is).

        Returns:
            The script's reply decoded to integers, or None (Redis down,
            slow, or erroring).
        """
        if self.down_until is not None and not self._may_try():
            return None
        client = self.sync_client()
        try:
            try:
                reply = client.evalsha(self.script_sha, self.numkeys, *args)
            except NoScriptError:
                client.script_load(self.script)  # a restarted or flushed server: load once more
                reply = client.evalsha(self.script_sha, self.numkeys, *args)
            numbers = [int(n) for n in reply.split()]
        except Exception as exc:  # a redis error, OSError, or the socket timeout
            self._failed(exc)
            return None
        except BaseException:
            self._interrupted()
            raise
        if self.down_until is not None:
            self._answered()
        return numbers

    async def run_async(self, args: tuple[Any, ...]) -> list[int] | None:
        """Run the script with the asyncio client within the budget; None if Redis did not answer.

        Args:
            args: The four keys, then the script's arguments (pre-encoded
                bytes where possible: redis-py passes bytes through as is).

        Returns:
            The script's reply decoded to integers, or None (Redis down,
            slow, or erroring).
        """
        if self.down_until is not None and not self._may_try():
            return None
        # The script runs as a task of its own and is waited for with a
        # timeout, instead of cancelling the call in place: redis-py can lose
        # a cancellation while it connects to a server that accepts but never
        # answers, and the caller must not hang on that.
        step = asyncio.ensure_future(_script(self.async_client(), args, self))
        try:
            done, _ = await asyncio.wait((step,), timeout=self.timeout)
        except BaseException:
            self._abandon(step)
            self._interrupted()  # cancellation belongs to the caller: never swallowed
            raise
        if not done:
            self._abandon(step)
            self._failed(TimeoutError(f"Redis did not answer within {self.timeout:g}s"))
            return None
        try:
            numbers = step.result()
        except (
            Exception,
            asyncio.CancelledError,
        ) as exc:  # a redis error, OSError; the step's own cancellation
            self._failed(exc)
            return None
        if self.down_until is not None:
            self._answered()
        return numbers

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
