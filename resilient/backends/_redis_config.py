"""What :class:`~resilient.backends.redis.RedisBackend` accepts, checked at construction.

Two kinds of limits:

- Key parts. Every key of one breaker is ``{prefix}:{{{name}}}:<kind>``: the
  ``{name}`` hash tag keeps them in one Redis Cluster slot (one script may
  touch them all). A brace in the prefix or the name would move or split that
  tag, and would let two (prefix, name) pairs share keys
  (``prefix="a", name="b}:{c"`` and ``prefix="a:{b}", name="c"``), so braces
  are refused. Without them a key parses back to exactly one pair.
- Sizes. The script works in milliseconds with Lua numbers (doubles) and
  hands them to Redis commands, which refuse numbers Lua prints in exponent
  form (``1e+17``): a duration beyond :data:`MAX_SECONDS` would make every
  step fail, silently degrading the breaker forever. A count window is a
  string of ``window`` bytes in Redis, so it is bounded by :data:`MAX_WINDOW`.
"""

from __future__ import annotations

from resilient import _validate as _check
from resilient.backends._base import BreakerConfig

__all__ = ["MAX_SECONDS", "MAX_WINDOW", "check_breaker", "key_part", "seconds"]

MAX_SECONDS = 1e9
"""The longest duration (about 31 years) the shared state can hold exactly."""

MAX_WINDOW = 1_000_000
"""The largest count window kept in Redis (one byte per call)."""


def seconds(param: str, value: object, *, allow_none: bool = False) -> float | None:
    """Return *value* as seconds in (0, :data:`MAX_SECONDS`], or raise naming *param*.

    Args:
        param: The parameter's name, for the error message.
        value: Seconds or a ``timedelta`` (or None when allowed).
        allow_none: Accept None (returned as is).

    Returns:
        The seconds, or None.

    Raises:
        TypeError: *value* is not a duration.
        ValueError: *value* is not in (0, :data:`MAX_SECONDS`].
    """
    found = _check.check_duration(param, value, allow_none=allow_none)
    if found is not None and found > MAX_SECONDS:
        raise ValueError(f"{param} must be at most {MAX_SECONDS:g} seconds with RedisBackend, got {value!r}")
    return found


def key_part(value: object, param: str) -> str:
    """Return *value* (a non-empty str without braces), or raise naming *param*.

    Args:
        value: The prefix or name.
        param: The parameter's name, for the error message.

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
            f"{param} must not contain '{{' or '}}' with RedisBackend (a breaker's keys share the "
            f"hash tag {{name}}, so that they live in one Redis Cluster slot), got {part!r}"
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
