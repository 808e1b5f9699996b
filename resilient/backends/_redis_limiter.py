"""One rate limit shared by a fleet, in Redis: :class:`RedisRateLimiterBackend`.

Each call is one ``EVALSHA`` of a small Lua script (GCRA on the server's
clock, see ``_redis_limiter.lua``): one round trip, atomic, whatever the
number of processes. The connection machinery (script loading, time budget,
outage detection and ``BackendDegraded``/``BackendRecovered``) is the
circuit breaker's :class:`~resilient.backends._redis_link.RedisLink`.
"""

from __future__ import annotations

import asyncio
import hashlib
from datetime import timedelta
from importlib import resources
from typing import Any, ClassVar

from resilient import _validate as _check
from resilient._clock import Clock
from resilient._events import EventBus
from resilient._events import default_bus as _default_bus
from resilient.backends import _redis_clients as _clients
from resilient.backends import _redis_config as _cfg
from resilient.backends._limiter_base import RateLimiterBackend, RateLimiterConfig, Reservation
from resilient.backends._redis_link import RedisLink

__all__ = ["RedisRateLimiterBackend"]

_SCRIPT = resources.files("resilient.backends").joinpath("_redis_limiter.lua").read_text("utf-8")
_OWNER = "RedisRateLimiterBackend"


class _LimiterLink(RedisLink):
    """A link running the rate limiter's script (one key) and reporting as a rate limiter."""

    script: ClassVar[str] = _SCRIPT
    script_sha: ClassVar[str] = hashlib.sha1(_SCRIPT.encode("utf-8")).hexdigest()
    numkeys: ClassVar[int] = 1
    policy: ClassVar[str] = "rate_limiter"
    noun: ClassVar[str] = "rate limiter"


def _nothing() -> None:
    """A limiter keeps no state to drop when Redis goes away (its local state is the limiter's)."""


def _seconds(param: str, value: object) -> float:
    seconds = _cfg.seconds(param, value, owner=_OWNER)
    assert seconds is not None
    return seconds


class RedisRateLimiterBackend(RateLimiterBackend):
    """A rate limit in Redis, shared by every limiter with the same name and prefix.

    ::

        import redis.asyncio
        from resilient import rate_limiter
        from resilient.backends.redis import RedisRateLimiterBackend

        search = rate_limiter(100, name="search-api", backend=RedisRateLimiterBackend(redis.asyncio.Redis()))

    A call costs one round trip (``EVALSHA``) whose Lua script decides on
    the server's clock; a call that may wait (``max_wait``) sleeps the wait
    on the limiter's clock, and one cancelled while it sleeps gives its
    permit back if no later reservation depends on it. When Redis does not
    answer within *timeout*, the limiter decides on its local state, with
    *local_share* of the limit, until Redis answers again.

    Args:
        client: A ``redis.asyncio.Redis`` (for async functions) or a
            ``redis.Redis``; the other flavour is built from its connection
            settings when needed. The same client may serve breakers too.
        sync_client: The blocking client for sync functions (default: built
            from *client* with socket timeouts of *timeout* seconds).
        prefix: First part of the key: ``{prefix}:{{{name}}}:rate``. A
            non-empty str without ``{`` or ``}``, like the name.
        name: Key name of the shared limit (default: the limiter's name).
        timeout: Seconds one Redis step may take before the call is decided
            on local state (at most ``MAX_SECONDS``, like *reconnect_interval*).
        reconnect_interval: While degraded, seconds between attempts to
            reach Redis again (time of the limiter's clock).
        local_share: Fraction in (0, 1] of the rate and burst this process
            allows itself while Redis is unreachable. 1.0 (the default)
            keeps each process within the whole limit, so a fleet of N may
            reach N times it during an outage; ``1 / N`` keeps the fleet
            within the limit (and each process well under it).
        bus: Bus for ``BackendDegraded``/``BackendRecovered`` (default: the
            limiter's bus).

    The limit (``burst * per / rate``) and any one wait are at most
    ``MAX_SECONDS`` (10**9 s, about 31 years): the script keeps whole
    microseconds exactly; a call that would wait longer is refused, even
    with ``max_wait=math.inf``.

    Raises:
        TypeError: *client* or *sync_client* is not a redis client (or a
            Sentinel or Cluster client is given without its other flavour),
            or a setting has the wrong type.
        ValueError: A setting is out of range, or the prefix or name holds
            a brace.
    """

    def __init__(
        self,
        client: Any,
        *,
        sync_client: Any = None,
        prefix: str = "resilient",
        name: str | None = None,
        timeout: float | timedelta = 0.05,
        reconnect_interval: float | timedelta = 1.0,
        local_share: float = 1.0,
        bus: EventBus | None = None,
    ) -> None:
        async_client, sync_source = _clients.pair(
            client, sync_client, owner=_OWNER, sync_use="sync functions"
        )
        self.prefix = _cfg.key_part(prefix, "prefix", owner=_OWNER)
        self._explicit_name = None if name is None else _cfg.key_part(name, "name", owner=_OWNER)
        self.local_share = _check.check_fraction("local_share", local_share)
        self._explicit_bus = None if bus is None else _check.check_bus(bus)
        self._link = _LimiterLink(
            client,
            async_client,
            sync_source,
            _seconds("timeout", timeout),
            _seconds("reconnect_interval", reconnect_interval),
            _nothing,
        )
        self.name: str | None = None
        self._config: RateLimiterConfig | None = None
        self._key = b""
        self._interval = b""
        self._limit = b""
        self._cancels: set[asyncio.Future[Any]] = set()

    def __repr__(self) -> str:
        where = "degraded" if self.degraded else "shared"
        return f"<RedisRateLimiterBackend {self.describe()} {where}>"

    def describe(self) -> str:
        """Return a short description: server and key prefix (used in events).

        Returns:
            E.g. ``"redis 127.0.0.1:6379/0 resilient:{search-api}"``.
        """
        return self._link.describe()

    @property
    def degraded(self) -> bool:
        """True while Redis is unreachable and the limiter decides on local state."""
        return self._link.down_until is not None

    @property
    def timeout(self) -> float:
        """Seconds one Redis step may take before the call is decided locally."""
        return self._link.timeout

    @property
    def reconnect_interval(self) -> float:
        """While degraded, seconds between attempts to reach Redis again."""
        return self._link.reconnect_interval

    @property
    def key(self) -> str:
        """The Redis key holding the limit's state (after binding)."""
        return self._key.decode()

    # --- binding ------------------------------------------------------------------

    def bind(
        self,
        config: RateLimiterConfig,
        clock: Clock,
        *,
        name: str | None = None,
        bus: EventBus | None = None,
    ) -> None:
        """Take the limiter's limit and clock; derive the key from its name.

        Args:
            config: The limit (sent with every step: every process sharing
                the key must use the same limit).
            clock: The limiter's clock (times the reconnect interval; the
                shared limit runs on the server's clock).
            name: The limiter's name.
            bus: The limiter's bus.

        Raises:
            ValueError: No name is known, the name holds a brace, the limit
                (``burst * per / rate``) is beyond ``MAX_SECONDS``, or the
                backend is already bound.
        """
        key_name = self._explicit_name
        if key_name is None and name is not None:
            key_name = _cfg.key_part(name, "name", owner=_OWNER)
        if key_name is None:
            raise ValueError(
                "RedisRateLimiterBackend needs a name for the shared limit: "
                "rate_limiter(100, name='search-api', backend=RedisRateLimiterBackend(client))"
            )
        interval, limit = _cfg.limiter_microseconds(config)
        if self._config is not None:
            raise ValueError(
                "RedisRateLimiterBackend is already bound to a limiter; give each limiter its own "
                "(limiters with the same name share one limit)"
            )
        self._config = config
        self.name = key_name
        link = self._link
        link.clock = clock
        link.bus = self._explicit_bus or bus or _default_bus
        link.name = key_name
        link.label = f"{self.prefix}:{{{key_name}}}"
        self._key = f"{link.label}:rate".encode()
        # Whole microseconds, the interval rounded up: the server's sums stay exact, never early.
        self._interval = str(interval).encode()
        self._limit = str(limit).encode()

    # --- steps ----------------------------------------------------------------------

    def _reserve_args(self, max_wait: float) -> tuple[bytes, ...]:
        # No wait beyond MAX_SECONDS, even for max_wait=inf: the TAT then never runs
        # more than limit + MAX_SECONDS ahead, and the script's numbers stay exact.
        us = max_wait * 1e6
        bound = _cfg.MAX_MICROSECONDS if us >= _cfg.MAX_MICROSECONDS else int(us)
        return (self._key, b"reserve", self._interval, self._limit, str(bound).encode())

    def _cancel_args(self, reservation: Reservation) -> tuple[bytes, ...]:
        return (self._key, b"cancel", self._interval, self._limit, str(reservation.token).encode())

    @staticmethod
    def _reservation(reply: list[int]) -> Reservation:
        # reply: granted, wait or retry_after (us), the TAT set (us), server time (us)
        return Reservation(bool(reply[0]), reply[1] / 1e6, reply[2])

    def reserve(self, max_wait: float) -> Reservation | None:
        """Take a permit in one round trip, or learn how long until one.

        Args:
            max_wait: The longest wait the call accepts, in seconds.

        Returns:
            The server's answer, or None when Redis did not answer in time.
        """
        reply = self._link.run(self._reserve_args(max_wait))
        return None if reply is None else self._reservation(reply)

    async def reserve_async(self, max_wait: float) -> Reservation | None:
        """Async :meth:`reserve`.

        Args:
            max_wait: As :meth:`reserve`.

        Returns:
            As :meth:`reserve`.
        """
        reply = await self._link.run_async(self._reserve_args(max_wait))
        return None if reply is None else self._reservation(reply)

    def cancel(self, reservation: Reservation) -> None:
        """Give a granted permit back if it is still the latest reservation.

        Args:
            reservation: What :meth:`reserve` granted.
        """
        self._link.run(self._cancel_args(reservation))

    async def cancel_async(self, reservation: Reservation) -> None:
        """Async :meth:`cancel`; it completes even if the caller is cancelled again.

        Args:
            reservation: What :meth:`reserve_async` granted.
        """
        # Called while a cancellation unwinds: shielded, and held here so the
        # loop does not drop it before it finishes.
        task = asyncio.ensure_future(self._link.run_async(self._cancel_args(reservation)))
        self._cancels.add(task)
        task.add_done_callback(self._cancels.discard)
        await asyncio.shield(task)

    # --- lifecycle ---------------------------------------------------------------------

    def close(self) -> None:
        """Close the blocking client this backend built."""
        self._link.close()

    async def aclose(self) -> None:
        """Close the clients this backend built."""
        await self._link.aclose()
