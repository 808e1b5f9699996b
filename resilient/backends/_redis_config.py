"""What the Redis backends accept, checked at construction.

:class:`~resilient.backends.redis.RedisBackend` (breakers) and
:class:`~resilient.backends.redis.RedisRateLimiterBackend` (rate limiters)
share these checks. Two kinds of limits:

- Key parts. Every key of one breaker or limiter is
  ``{prefix}:{{{name}}}:<kind>``: the ``{name}`` hash tag keeps a breaker's
  keys in one Redis Cluster slot (one script may touch them all). A brace in
  the prefix or the name would move or split that tag, and would let two
  (prefix, name) pairs share keys (``prefix="a", name="b}:{c"`` and
  ``prefix="a:{b}", name="c"``), so braces are refused. Without them a key
  parses back to exactly one pair.
- Sizes. The scripts compute with Lua numbers (doubles: integers are exact
  below ``2**53``) and hand them to Redis commands, which refuse numbers Lua
  prints in exponent form (``1e+17``): a duration beyond :data:`MAX_SECONDS`
  would make every step fail, silently degrading the policy forever. A count
  window is a string of ``window`` bytes in Redis, so it is bounded by
  :data:`MAX_WINDOW`. A rate limiter's script works in microseconds on the
  server's clock (about ``1.8e15`` in 2026): with its burst (``burst * per /
  rate``) and its longest wait each at most :data:`MAX_SECONDS` (``1e15``
  us), every number it computes stays below ``now + 3e15``, exact until
  about the year 2160 (see :func:`limiter_microseconds`).
"""

from __future__ import annotations

import math

from resilient import _validate as _check
from resilient._numbers import describe
from resilient.backends._base import BreakerConfig
from resilient.backends._limiter_base import RateLimiterConfig

__all__ = [
    "MAX_MICROSECONDS",
    "MAX_SECONDS",
    "MAX_WINDOW",
    "check_breaker",
    "key_part",
    "limiter_microseconds",
    "seconds",
]

MAX_SECONDS = 1e9
"""The longest duration (about 31 years) the shared state can hold exactly."""

MAX_WINDOW = 1_000_000
"""The largest count window kept in Redis (one byte per call)."""

MAX_MICROSECONDS = 10**15
""":data:`MAX_SECONDS` in microseconds, the rate limiter script's unit."""


def seconds(
    param: str, value: object, *, allow_none: bool = False, owner: str = "RedisBackend"
) -> float | None:
    """Return *value* as seconds in (0, :data:`MAX_SECONDS`], or raise naming *param*.

    Args:
        param: The parameter's name, for the error message.
        value: Seconds or a ``timedelta`` (or None when allowed).
        allow_none: Accept None (returned as is).
        owner: The backend class, for the error message.

    Returns:
        The seconds, or None.

    Raises:
        TypeError: *value* is not a duration.
        ValueError: *value* is not in (0, :data:`MAX_SECONDS`].
    """
    found = _check.check_duration(param, value, allow_none=allow_none)
    if found is not None and found > MAX_SECONDS:
        raise ValueError(
            f"{param} must be at most {MAX_SECONDS:g} seconds with {owner}, got {describe(value)}"
        )
    return found


def key_part(value: object, param: str, *, owner: str = "RedisBackend") -> str:
    """Return *value* (a non-empty str without braces), or raise naming *param*.

    Args:
        value: The prefix or name.
        param: The parameter's name, for the error message.
        owner: The backend class, for the error message.

    Returns:
        The value.

    Raises:
        TypeError: *value* is not a str.
        ValueError: *value* is empty or holds ``{`` or ``}``.
    """
    part = _check.check_name(value, param)
    if part is None:
        raise TypeError(f"{param} must be a str, got None")
    if "{" in part or "}" in part:
        raise ValueError(
            f"{param} must not contain '{{' or '}}' with {owner} (keys are "
            f"'{{prefix}}:{{{{name}}}}:...': a brace would move their Redis Cluster hash tag and let "
            f"two (prefix, name) pairs share keys), got {part!r}"
        )
    return part


def check_breaker(config: BreakerConfig) -> None:
    """Refuse breaker settings the shared state cannot hold, naming the parameter.

    Args:
        config: The breaker's configuration.

    Raises:
        ValueError: A duration beyond :data:`MAX_SECONDS` or a window beyond
            :data:`MAX_WINDOW`.
    """
    seconds("recovery_timeout", config.recovery_timeout)
    seconds("window_seconds", config.window_seconds, allow_none=True)
    if config.uses_window and config.window_seconds is None and config.window > MAX_WINDOW:
        raise ValueError(
            f"window must be at most {MAX_WINDOW} calls with RedisBackend (one byte per call "
            f"in Redis), got {config.window}"
        )


def limiter_microseconds(config: RateLimiterConfig) -> tuple[int, int]:
    """Return a limit as the script's whole microseconds, or refuse one it cannot keep exactly.

    The interval is rounded up (the shared limit is never early). The
    script's largest number is ``now + limit + max_wait + interval``, with
    ``now`` the server's clock in microseconds (``1.8e15`` in 2026) and the
    wait bounded by :data:`MAX_SECONDS` (the backend sends no longer bound):
    a ``limit`` of at most :data:`MAX_MICROSECONDS` keeps it below ``now +
    3e15``, exact in a double (``< 2**53``) until about the year 2160, and
    the key's expiry (in milliseconds) far below the ``1e17`` Lua would
    print in exponent form.

    Args:
        config: The limiter's rate, period and burst.

    Returns:
        ``(interval, limit)``: microseconds between permits, and the burst
        times that (how far ahead of now the schedule may run).

    Raises:
        ValueError: ``burst * per / rate`` (with the rounded-up interval)
            is beyond :data:`MAX_SECONDS`.
    """
    interval = max(1, math.ceil(config.interval * 1e6))
    limit = interval * config.burst
    if limit > MAX_MICROSECONDS:
        burst = config.burst
        shown = f"burst={burst}" if burst.bit_length() <= 64 else f"a burst of {burst.bit_length()} bits"
        ahead = limit / 10**6 if limit.bit_length() < 1000 else math.inf  # int / int: exact, no overflow
        raise ValueError(
            f"burst * per / rate must be at most {MAX_SECONDS:g} seconds with RedisRateLimiterBackend "
            f"(the script keeps whole microseconds in doubles, exact below 2**53), got rate="
            f"{config.rate:g}, per={config.per:g}s, {shown}: {ahead:g}s (a permit every "
            f"{interval}us)"
        )
    return interval, limit
