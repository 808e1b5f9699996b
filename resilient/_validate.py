"""Checks run when a factory is called, so bad configuration fails early.

Every error names the parameter it is about.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeAlias

from ._clock import SYSTEM_CLOCK, Clock
from ._events import EventBus, default_bus

__all__ = [
    "Duration",
    "ExceptionSpec",
    "Matcher",
    "check_bus",
    "check_clock",
    "check_duration",
    "check_int",
    "check_name",
    "make_matcher",
]

Duration: TypeAlias = "float | int | timedelta"
ExceptionSpec: TypeAlias = (
    "type[BaseException] | tuple[type[BaseException], ...] | Callable[[BaseException], bool]"
)


def check_duration(
    param: str,
    value: object,
    *,
    allow_zero: bool = False,
    allow_none: bool = False,
    allow_inf: bool = False,
) -> float | None:
    """Return *value* as float seconds, or raise naming *param*."""
    if value is None:
        if allow_none:
            return None
        raise TypeError(f"{param} must be a number of seconds or a timedelta, not None")
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            f"{param} must be a number of seconds or a timedelta, got {type(value).__name__} {value!r}"
        )
    else:
        try:
            seconds = float(value)
        except OverflowError:  # an int beyond any float
            bits = value.bit_length() if isinstance(value, int) else 0
            raise ValueError(f"{param} must be finite, got an integer of {bits} bits") from None
    if math.isnan(seconds):
        raise ValueError(f"{param} must not be NaN")
    if math.isinf(seconds) and not allow_inf:
        raise ValueError(f"{param} must be finite, got {seconds}")
    if seconds < 0 or (seconds == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{param} must be {bound}, got {value!r}")
    return seconds


def check_int(param: str, value: object, *, minimum: int) -> int:
    """Return *value* if it is an int >= *minimum*, or raise naming *param*."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{param} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{param} must be >= {minimum}, got {value}")
    return value


def check_fraction(param: str, value: object) -> float:
    """Return *value* if it is a number in (0, 1], or raise naming *param*."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{param} must be a number in (0, 1], got {type(value).__name__} {value!r}")
    try:
        f = float(value)
    except OverflowError:
        raise ValueError(f"{param} must be in (0, 1], got a huge integer") from None
    if math.isnan(f) or not 0.0 < f <= 1.0:
        raise ValueError(f"{param} must be in (0, 1], got {value!r}")
    return f


def check_name(value: object, param: str = "name") -> str | None:
    """Return *value* if it is None or a non-empty str."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"{param} must be a str or None, got {type(value).__name__} {value!r}")
    if not value:
        raise ValueError(f"{param} must not be empty")
    return value


def check_clock(value: object) -> Clock:
    """Return *value* if it looks like a Clock (default: the system clock)."""
    if value is None:
        return SYSTEM_CLOCK
    if not (callable(getattr(value, "monotonic", None)) and callable(getattr(value, "sleep", None))):
        raise TypeError(f"clock must provide monotonic() and sleep(), got {value!r}")
    if inspect.isbuiltin(getattr(value, "sleep", None)):
        # The `time` module looks like a clock, but its sleep blocks the loop.
        raise TypeError(f"clock.sleep must be a coroutine function (async def), got {value!r}")
    return value  # type: ignore[return-value]


def check_bus(value: object) -> EventBus:
    """Return *value* if it is an EventBus (default: the default bus)."""
    if value is None:
        return default_bus
    if not isinstance(value, EventBus):
        raise TypeError(f"bus must be an EventBus, got {type(value).__name__} {value!r}")
    return value


def _is_control_flow_only(t: type[BaseException]) -> bool:
    return (
        t is not BaseException
        and not issubclass(t, Exception)
        and not (
            # BaseExceptionGroup may hold ordinary exceptions.
            issubclass(t, BaseExceptionGroup) and t is BaseExceptionGroup
        )
    )


Matcher: TypeAlias = Callable[[BaseException], bool]


def make_matcher(param: str, spec: object, *, allow_empty: bool = False) -> Matcher:
    """Build a predicate from an ``on=``-style spec, or raise naming *param*.

    The spec is an exception type, a tuple of them, or a predicate. The
    returned predicate never matches a control-flow exception (anything not
    an ``Exception``), and matches an exception group only when every leaf
    matches (or the group itself is an instance of a listed group type).

    Args:
        param: The parameter's name, for error messages.
        spec: The spec to check.
        allow_empty: Accept an empty tuple (matches nothing).

    Returns:
        The predicate.

    Raises:
        TypeError: *spec* is not a type, a tuple of types or a callable.
        ValueError: *spec* is an empty tuple (unless allowed) or names a type
            that can only match a control-flow exception.
    """
    if isinstance(spec, type):
        types: tuple[type[BaseException], ...] = (spec,)
    elif isinstance(spec, tuple):
        types = spec
        if not types and not allow_empty:
            raise ValueError(f"{param} must name at least one exception type")
    elif callable(spec):
        return _predicate_matcher(param, spec)
    else:
        raise TypeError(f"{param} must be an exception type, a tuple of them, or a predicate, got {spec!r}")
    for t in types:
        if not (isinstance(t, type) and issubclass(t, BaseException)):
            raise TypeError(f"{param} must hold exception types, got {t!r}")
        if _is_control_flow_only(t):
            raise ValueError(
                f"{param}={t.__name__} can only match a control-flow exception, "
                "which resilient never handles (see 'Control-flow exceptions')"
            )
    if not types:
        return _never
    shared = _type_matchers.get(types)
    if shared is not None:
        return shared
    # BaseException means "every Exception": control flow is excluded below.
    norm = tuple(Exception if t is BaseException else t for t in types)
    group_types = tuple(t for t in norm if issubclass(t, BaseExceptionGroup))

    def match(exc: BaseException) -> bool:
        if not isinstance(exc, Exception):
            return False
        if isinstance(exc, BaseExceptionGroup):
            if group_types and isinstance(exc, group_types):
                return True
            return all(match(e) for e in exc.exceptions)
        return isinstance(exc, norm)

    if len(_type_matchers) < _TYPE_MATCHERS_MAX:
        _type_matchers[types] = match
    return match


# A matcher of exception types depends on nothing else, so policies share
# them: most keep the default ``Exception``, and a closure each would cost
# every decorated function about 400 bytes. Bounded, for programs that make
# exception classes at run time.
_type_matchers: dict[tuple[type[BaseException], ...], Matcher] = {}
_TYPE_MATCHERS_MAX = 256


def _never(exc: BaseException) -> bool:
    return False


def _predicate_matcher(param: str, pred: Callable[..., Any]) -> Matcher:
    def match(exc: BaseException) -> bool:
        if not isinstance(exc, Exception):
            return False
        if isinstance(exc, BaseExceptionGroup):
            return all(match(e) for e in exc.exceptions)
        return bool(pred(exc))

    return match
