"""Circuit breaker state shared by a fleet, in Redis.

::

    import redis.asyncio
    from resilient import circuit_breaker
    from resilient.backends.redis import RedisBackend

    payments = circuit_breaker(name="payments", backend=RedisBackend(redis.asyncio.Redis()))

Breakers with the same ``name`` and ``prefix`` share one state, whatever
process or host they run in. Each step (admit, record, release, isolate,
reset) is one Lua script run atomically on the server, with the server's
clock. A CLOSED call that succeeds costs one round trip: its success is sent
with the process's next step. When Redis is down or slower than ``timeout``
the breaker keeps serving on a local in-memory breaker and returns to the
shared state when Redis answers again. See ``docs/fleet.md``.

:class:`RedisRateLimiterBackend` does the same for a ``rate_limiter``: one
limit for the fleet, one round trip per call (``docs/rate_limiter.md``).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import threading
import weakref
from datetime import timedelta
from typing import Any, ClassVar

try:
    import redis  # noqa: F401  (fail here, with the fix, when the extra is missing)
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "resilient.backends.redis needs the redis package: pip install 'resilient-policies[redis]'"
    ) from exc

from resilient import _validate as _check
from resilient._clock import Clock
from resilient._events import EventBus
from resilient._events import default_bus as _default_bus
from resilient._numbers import describe as _describe
from resilient._state import CircuitState
from resilient.backends import _redis_async as _steps
from resilient.backends import _redis_clients as _clients
from resilient.backends import _redis_config as _cfg
from resilient.backends import _redis_protocol as _proto
from resilient.backends._base import (
    BreakerBackend,
    BreakerConfig,
    BreakerStats,
    Outcome,
    Permit,
    Rejection,
    Transition,
)
from resilient.backends._redis_admit import Local as _Local
from resilient.backends._redis_limiter import RedisRateLimiterBackend
from resilient.backends._redis_link import RedisLink as _RedisLink
from resilient.backends._redis_view import View as _View
from resilient.backends.memory import MemoryBackend as _MemoryBackend

__all__ = ["MAX_SECONDS", "MAX_WINDOW", "RedisBackend", "RedisRateLimiterBackend"]

RedisRateLimiterBackend.__module__ = __name__  # its public home

MAX_SECONDS = _cfg.MAX_SECONDS
"""The longest duration (about 31 years) the Redis backends accept, and a rate limiter's
longest burst (``burst * per / rate``) and wait: their scripts cannot hold more exactly."""
MAX_WINDOW = _cfg.MAX_WINDOW
"""The largest count window a RedisBackend accepts (one byte per call in Redis)."""


_instances: weakref.WeakSet[RedisBackend] = weakref.WeakSet()


def _after_fork() -> None:
    # A forked child is another reporter and must not reuse its parent's probe ids.
    for backend in list(_instances):
        backend._forked()


os.register_at_fork(after_in_child=_after_fork)


def _seconds(param: str, value: object) -> float:
    seconds = _cfg.seconds(param, value)
    assert seconds is not None
    return seconds


class RedisBackend(_steps.AsyncSteps, BreakerBackend):
    """Circuit breaker state in Redis, shared by every breaker with the same name and prefix.

    Args:
        client: A ``redis.asyncio.Redis`` (for async functions) or a
            ``redis.Redis``; the other flavour is built from its connection
            settings when needed.
        sync_client: The blocking client for sync functions and for
            ``state``/``isolate()``/``reset()`` (default: built from
            *client* with socket timeouts of *timeout* seconds).
        prefix: First part of every key: ``{prefix}:{{{name}}}:state`` etc.
        name: Key name of the shared state (default: the breaker's name).
        timeout: Seconds one Redis step may take before the breaker gives up
            on Redis for this call and uses its local state.
        reconnect_interval: While degraded, seconds between attempts to
            reach Redis again (time of the breaker's clock).
        probe_lease: Seconds a HALF_OPEN probe permit lives if the process
            holding it dies before releasing it.
        key_ttl: Seconds an unused breaker's keys live (extended to outlive
            the recovery timeout, the probe lease and the windows).
        min_reporters: Distinct reporters (processes) whose failures are
            needed to open the CLOSED breaker (1: any process can open it).
        reporter_ttl: Seconds a reporter's last failure counts toward
            *min_reporters* (default: ``window_seconds``, else 60).
        reporter: This process's reporter id (default: ``host:pid``).
        bus: Bus for ``BackendDegraded``/``BackendRecovered`` (default: the
            breaker's bus).
        restore_open: If Redis loses the state of a breaker this process
            saw OPEN (a restart, ``FLUSHALL``, eviction), restore it for
            what is left of its open period instead of starting CLOSED. An
            ISOLATED breaker is always restored.

    Raises:
        TypeError: *client* or *sync_client* is not a redis client, or a
            setting has the wrong type.
        ValueError: A setting is out of range.
    """

    nonblocking: ClassVar[bool] = False

    def __init__(
        self,
        client: Any,
        *,
        sync_client: Any = None,
        prefix: str = "resilient",
        name: str | None = None,
        timeout: float | timedelta = 0.05,
        reconnect_interval: float | timedelta = 1.0,
        probe_lease: float | timedelta = 10.0,
        key_ttl: float | timedelta = 86400.0,
        min_reporters: int = 1,
        reporter_ttl: float | timedelta | None = None,
        reporter: str | None = None,
        bus: EventBus | None = None,
        restore_open: bool = False,
    ) -> None:
        if not isinstance(restore_open, bool):
            raise TypeError(f"restore_open must be a bool, got {_describe(restore_open)}")
        async_client, sync_client = _clients.pair(client, sync_client)
        self._local = _MemoryBackend()
        self.prefix = _cfg.key_part(prefix, "prefix")
        self._explicit_name = None if name is None else _cfg.key_part(name, "name")
        self._link = _RedisLink(
            client,
            async_client,
            sync_client,
            _seconds("timeout", timeout),
            _seconds("reconnect_interval", reconnect_interval),
            self._went_down,
            self._local.reset,  # fresh again for calls that find no free connection
        )
        self._view = _View(self._link, restore_open=restore_open)
        self.restore_open = restore_open
        self.probe_lease = _seconds("probe_lease", probe_lease)
        self.key_ttl = _seconds("key_ttl", key_ttl)
        self.min_reporters = _check.check_int("min_reporters", min_reporters, minimum=1)
        self.reporter_ttl = _cfg.seconds("reporter_ttl", reporter_ttl, allow_none=True)
        self._explicit_reporter = _check.check_name(reporter, "reporter")
        self.reporter = self._explicit_reporter or _proto.default_reporter()
        self._explicit_bus = None if bus is None else _check.check_bus(bus)
        self.name: str | None = None
        self._lock = threading.Lock()
        self._config: BreakerConfig | None = None
        self._clock: Clock | None = None
        self._key_names: tuple[str, ...] = ()
        self._keys: tuple[bytes, ...] = ()
        self._argv: tuple[bytes, ...] = ()
        self._closed = Permit(-1)
        self._seq = itertools.count(1)
        self._successes = _proto.SuccessTally()
        self._shields: set[asyncio.Future[Any]] = set()
        _instances.add(self)

    def __repr__(self) -> str:
        where = "degraded" if self.degraded else "shared"
        return f"<RedisBackend {self.describe()} {where}>"

    def describe(self) -> str:
        """Return a short description: server and key prefix (used in events).

        Returns:
            E.g. ``"redis 127.0.0.1:6379/0 resilient:{payments}"``.
        """
        return self._link.describe()

    @property
    def degraded(self) -> bool:
        """True while Redis is unreachable and the local breaker decides."""
        return self._link.down_until is not None

    @property
    def timeout(self) -> float:
        """Seconds one Redis step may take before this call uses local state."""
        return self._link.timeout

    @property
    def reconnect_interval(self) -> float:
        """While degraded, seconds between attempts to reach Redis again."""
        return self._link.reconnect_interval

    @property
    def bus(self) -> EventBus:
        """Where ``BackendDegraded``/``BackendRecovered`` go (the breaker's bus once bound)."""
        return self._link.bus

    @property
    def keys(self) -> tuple[str, ...]:
        """The state, window, probe-lease and reporter keys (after binding)."""
        return self._key_names

    # --- binding ---------------------------------------------------------------

    def bind(
        self, config: BreakerConfig, clock: Clock, *, name: str | None = None, bus: EventBus | None = None
    ) -> None:
        """Take the breaker's configuration and clock; derive the keys from its name.

        Args:
            config: The thresholds and windows (sent with every step: every
                process sharing the state must use the same configuration).
            clock: The breaker's clock: times the local fallback and the
                reconnect interval (shared state uses the server's clock).
            name: The breaker's name (the circuit breaker passes it).
            bus: The breaker's bus (the circuit breaker passes it).

        Raises:
            ValueError: No name is known, or the backend is already bound to
                another configuration or name.
        """
        key_name = self._explicit_name
        if key_name is None and name is not None:
            key_name = _cfg.key_part(name, "name")
        if key_name is None:
            raise ValueError(
                "RedisBackend needs a name for the shared state: "
                "circuit_breaker(name='payments', backend=RedisBackend(client))"
            )
        _cfg.check_breaker(config)
        with self._lock:
            if self._config is not None:
                if self._config != config or self.name != key_name:
                    raise ValueError(
                        "RedisBackend is already bound to a breaker with another configuration or "
                        "name; give each breaker its own RedisBackend"
                    )
                return
            self._config = config
            self._clock = clock
            self._link.clock = clock
            self.name = key_name
            self._link.bus = self._explicit_bus or bus or _default_bus
            self._local.bind(config, clock)
            base = f"{self.prefix}:{{{key_name}}}"
            self._link.name, self._link.label = key_name, base
            self._key_names = (f"{base}:state", f"{base}:window", f"{base}:probes", f"{base}:reporters")
            self._keys = _proto.encode(self._key_names)
            self._argv = self._script_config()

    def _script_config(self) -> tuple[bytes, ...]:
        assert self._config is not None
        # Encoded once: a step then encodes only its own few arguments.
        return _proto.encode(
            _proto.script_config(
                self._config,
                probe_lease=self.probe_lease,
                key_ttl=self.key_ttl,
                min_reporters=self.min_reporters,
                reporter_ttl=self.reporter_ttl,
                reporter=self.reporter,
            )
        )

    def _forked(self) -> None:
        self._seq = itertools.count(1)
        if self._explicit_reporter is None:
            self.reporter = _proto.default_reporter()
            if self._config is not None:
                self._argv = self._script_config()

    def _step(self, step: str, extra: tuple[Any, ...], *, bounded: bool = False) -> list[Any] | None:
        view = self._view
        reply = self._link.run((*self._keys, step, *self._argv, *view.hint, *extra), bounded=bounded)
        if reply is not None:
            view.observe(reply)
        return reply

    # --- the steps (sync) ----------------------------------------------------------------

    def acquire(self) -> Permit | Rejection:
        """Admit a call in one round trip (carrying this process's deferred successes).

        Returns:
            A permit or a rejection; from the local breaker while degraded.
        """
        gen, count = self._successes.take()
        seq = next(self._seq)
        try:
            # A call waits for its turn at most one budget (see _without_turn),
            # once this process has seen the shared state to decide by.
            reply = self._step("acquire", (gen, count, seq), bounded=self._view.last is not None)
        except BaseException:
            # Interrupted after the server may have granted a probe lease (a
            # BackendRecovered handler raising KeyboardInterrupt, say): free
            # it, as the async step does. Releasing an id never granted is a no-op.
            self._step("release", (f"{self.reporter}#{seq}",))
            raise
        if reply is None:
            return self._without_turn(gen, count)
        return self._admission(reply, seq)

    def record(self, permit: Permit, outcome: Outcome) -> Transition | None:
        """Record an outcome; a CLOSED fast success is deferred to the next step.

        Args:
            permit: The call's permit.
            outcome: How it ended.

        Returns:
            The transition caused, or None.
        """
        token = permit.token
        if token.__class__ is _Local:
            return self._local.record(token.permit, outcome)
        if outcome is Outcome.SUCCESS and not permit.probe:
            # Cannot open anything by itself: ride along with the next step.
            self._successes.add(permit.generation)
            return None
        try:
            reply = self._step("record", self._record_args(permit, outcome))
        except BaseException:
            if permit.probe:
                # Interrupted (KeyboardInterrupt...) before the outcome landed:
                # free the probe's slot now rather than when its lease ends.
                self._step("release", (token,))
            raise
        return None if reply is None else _proto.transition_of(reply)

    def release(self, permit: Permit) -> None:
        """Free a neutral call's probe lease (CLOSED calls hold nothing).

        Args:
            permit: The call's permit.
        """
        token = permit.token
        if token.__class__ is _Local:
            self._local.release(token.permit)
        elif permit.probe:
            self._step("release", (token,))

    def readmit(self, permit: Permit) -> Rejection | None:
        """Check again, in one round trip, a call that waited in a queue after it was admitted.

        Args:
            permit: The call's permit.

        Returns:
            None if it may go ahead (the shared breaker has not moved on, or
            is CLOSED again), else the rejection. Without an answer from
            Redis, the local breaker decides while Redis is down, and the
            state last seen when Redis gave the step no turn in time.
        """
        token = permit.token
        if token.__class__ is _Local:
            return self._local.readmit(token.permit)
        return self._readmission(permit, self._step("readmit", (permit.generation,), bounded=True))

    def isolate(self) -> Transition | None:
        """Hold the shared breaker open for every process until :meth:`reset`.

        Returns:
            The transition, or None if already ISOLATED (or the local one's while degraded).
        """
        reply = self._step("isolate", _steps.NO_ARGS)
        return self._local.isolate() if reply is None else _proto.transition_of(reply)

    def reset(self) -> Transition | None:
        """Close the shared breaker and clear its statistics.

        Returns:
            The transition, or None if already CLOSED (or the local one's while degraded).
        """
        reply = self._step("reset", _steps.NO_ARGS)
        return self._local.reset() if reply is None else _proto.transition_of(reply)

    def state(self) -> tuple[CircuitState, Transition | None]:
        """Read the shared state, applying a due OPEN -> HALF_OPEN move.

        Returns:
            The state and the transition reading it caused, or None.
        """
        reply = self._step("state", _steps.NO_ARGS)
        return (
            self._local.state() if reply is None else (_proto.STATES[reply[0]], _proto.transition_of(reply))
        )

    def stats(self) -> BreakerStats:
        """Return a snapshot of the shared state (the local one while degraded).

        Returns:
            The snapshot.
        """
        reply = self._step("stats", _steps.NO_ARGS)
        return self._local.stats() if reply is None else _proto.stats_of(reply)

    def flush(self) -> None:
        """Send this process's deferred successes now (e.g. before exiting)."""
        gen, count = self._successes.take()
        if count:
            self._step("flush", (gen, count))

    # --- lifecycle ---------------------------------------------------------------------

    def close(self) -> None:
        """Flush deferred successes and close the blocking client this backend built."""
        self.flush()
        self._link.close()

    async def aclose(self) -> None:
        """Flush deferred successes and close the clients this backend built."""
        await self.flush_async()
        await self._link.aclose()
