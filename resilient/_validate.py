"""Checks run when a factory is called, so bad configuration fails early.

Every error names the parameter it is about.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeAlias

from ._clock import Clock, DefaultClock
from ._events import EventBus, default_bus
from ._numbers import describe, plain_number, plain_seconds

__all__ = [
    "MAX_WAIT",
    "Duration",
    "ExceptionSpec",
    "Matcher",
    "check_bus",
    "check_clock",
    "check_duration",
    "check_fraction",
    "check_int",
    "check_name",
    "check_predicate",
    "every_leaf",
    "make_matcher",
]

Duration: TypeAlias = "float | int | timedelta"
ExceptionSpec: TypeAlias = (
    "type[BaseException] | tuple[type[BaseException], ...] | Callable[[BaseException], bool]"
)


MAX_WAIT = 1e9
"""The longest wait (seconds, about 31.7 years) a backoff may ask for.

A blocking ``time.sleep`` overflows a little beyond 9.2e9 seconds; a round
bound below that keeps every wait sleepable, sync or async, and anything
near it is a configuration mistake anyway.
"""


def _show_int(value: int) -> str:
    # str() of an int beyond 4300 digits raises ValueError: describe it instead.
    return str(value) if value.bit_length() <= 64 else f"an integer of {value.bit_length()} bits"


def check_duration(
    param: str,
    value: object,
    *,
    allow_zero: bool = False,
    allow_none: bool = False,
    allow_inf: bool = False,
    minimum: float | None = None,
    maximum: float | None = None,
) -> float | None:
    """Return *value* as plain float seconds, or raise naming *param*.

    Args:
        param: The parameter's name, for error messages.
        value: A number (``int``/``float``; a subclass is read through the
            base type) or a ``timedelta``, or None.
        allow_zero: Accept 0.
        allow_none: Accept None (returned as is).
        allow_inf: Accept positive infinity (beyond *maximum*).
        minimum: The smallest finite value accepted, if any.
        maximum: The largest finite value accepted, if any.

    Returns:
        Plain float seconds, or None.

    Raises:
        TypeError: *value* is not a number of seconds or a timedelta.
        ValueError: *value* is out of range, NaN or infinite.
    """
    if value is None:
        if allow_none:
            return None
        raise TypeError(f"{param} must be a number of seconds or a timedelta, not None")
    number = plain_seconds(value)
    if number is None:
        raise TypeError(f"{param} must be a number of seconds or a timedelta, got {describe(value)}")
    try:
        seconds = float(number)
    except OverflowError:  # an int beyond any float
        raise ValueError(f"{param} must be finite, got {_show_int(int(number))}") from None
    if math.isnan(seconds):
        raise ValueError(f"{param} must not be NaN")
    if math.isinf(seconds):
        if allow_inf and seconds > 0:
            return seconds
        raise ValueError(f"{param} must be finite, got {seconds}")
    if seconds < 0 or (seconds == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{param} must be {bound}, got {seconds!r}")
    if minimum is not None and seconds < minimum:
        raise ValueError(f"{param} must be at least {minimum:g} seconds, got {seconds!r}")
    if maximum is not None and seconds > maximum:
        raise ValueError(f"{param} must be at most {maximum:g} seconds, got {seconds:g}")
    return seconds


def check_int(param: str, value: object, *, minimum: int, maximum: int | None = None) -> int:
    """Return *value* as a plain int in ``[minimum, maximum]``, or raise naming *param*."""
    number = plain_number(value)
    if number is None or type(number) is float:
        raise TypeError(f"{param} must be an int, got {describe(value)}")
    assert isinstance(number, int)
    if number < minimum:
        raise ValueError(f"{param} must be >= {minimum}, got {_show_int(number)}")
    if maximum is not None and number > maximum:
        raise ValueError(f"{param} must be <= {maximum:_}, got {_show_int(number)}")
    return number


def check_number(param: str, value: object, minimum: float) -> float:
    """Return *value* as a plain finite float >= *minimum*, or raise naming *param*.

    Read through the base type (a subclass's comparisons and ``__float__``
    may lie); an int beyond any float counts as infinite.

    Returns:
        The float.

    Raises:
        TypeError: *value* is not a number.
        ValueError: *value* is NaN, infinite or below *minimum*.
    """
    number = plain_number(value)
    if number is None:
        raise TypeError(f"{param} must be a number, got {describe(value)}")
    try:
        f = float(number)
    except OverflowError:  # an int beyond any float
        f = math.inf
    if not math.isfinite(f) or f < minimum:
        raise ValueError(f"{param} must be a finite number >= {minimum:g}, got {f!r}")
    return f


def check_fraction(param: str, value: object) -> float:
    """Return *value* as a plain float in (0, 1], or raise naming *param*."""
    number = plain_number(value)
    if number is None:
        raise TypeError(f"{param} must be a number in (0, 1], got {describe(value)}")
    try:
        f = float(number)
    except OverflowError:
        raise ValueError(f"{param} must be in (0, 1], got a huge integer") from None
    if math.isnan(f) or not 0.0 < f <= 1.0:
        raise ValueError(f"{param} must be in (0, 1], got {f!r}")
    return f


def check_name(value: object, param: str = "name") -> str | None:
    """Return *value* if it is None or a non-empty str."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"{param} must be a str or None, got {describe(value)}")
    if not value:
        raise ValueError(f"{param} must not be empty")
    # A str subclass may override __repr__, __eq__ or __hash__: keep the plain text.
    return str.__str__(value)


def check_predicate(param: str, value: object, takes: str) -> Callable[[Any], Any]:
    """Return *value* if it is a plain (not ``async``) callable of one argument, or raise naming *param*.

    A policy asks its predicates synchronously: an ``async def`` one returns
    a coroutine, which is truthy, so everything would match (and the
    coroutine is never awaited). One that cannot take the single argument
    would fail only at the first call, deep inside it. A callable without a
    readable signature (some builtins) is trusted.

    Args:
        param: The parameter's name, for error messages.
        value: What the user passed (None is not accepted here).
        takes: What the predicate is given, for the message: ``"(result)"``.

    Returns:
        *value*.

    Raises:
        TypeError: *value* is not callable, is async, or cannot take one argument.
    """
    from ._arity import accepts  # few policies have a predicate: `import resilient` stays lean
    from ._introspect import is_async_callable

    if not callable(value):
        raise TypeError(f"{param} must be a predicate {takes} -> bool, got {describe(value)}")
    if is_async_callable(value):
        raise TypeError(
            f"{param} must be a plain function {takes} -> bool, not async: it is called without "
            f"awaiting, and a coroutine is always true; got {describe(value)}"
        )
    if not accepts(value, 1):
        raise TypeError(f"{param} must be a predicate taking one argument {takes}, got {describe(value)}")
    return value


def check_clock(value: object) -> Clock:
    """Return *value* if it looks like a Clock (None: a new :class:`DefaultClock`)."""
    if value is None:
        return DefaultClock()
    if not (callable(getattr(value, "monotonic", None)) and callable(getattr(value, "sleep", None))):
        raise TypeError(f"clock must provide monotonic() and sleep(), got {describe(value)}")
    if inspect.isbuiltin(getattr(value, "sleep", None)):
        # The `time` module looks like a clock, but its sleep blocks the loop.
        raise TypeError(f"clock.sleep must be a coroutine function (async def), got {describe(value)}")
    return value  # type: ignore[return-value]


def check_bus(value: object) -> EventBus:
    """Return *value* if it is an EventBus (default: the default bus)."""
    if value is None:
        return default_bus
    if not isinstance(value, EventBus):
        raise TypeError(f"bus must be an EventBus, got {describe(value)}")
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
        return _predicate_matcher(param, check_predicate(param, spec, "(exception)"))
    else:
        raise TypeError(
            f"{param} must be an exception type, a tuple of them, or a predicate, got {describe(spec)}"
        )
    for t in types:
        if not (isinstance(t, type) and issubclass(t, BaseException)):
            raise TypeError(f"{param} must hold exception types, got {describe(t)}")
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

    def listed(exc: BaseException) -> bool:
        return isinstance(exc, norm)

    def match(exc: BaseException) -> bool:
        if not isinstance(exc, Exception):
            return False
        if isinstance(exc, BaseExceptionGroup):
            # A listed group type matches the group itself, whatever it holds.
            return every_leaf(exc, listed, group_types)
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


def every_leaf(
    exc: BaseException,
    test: Matcher,
    whole: tuple[type[BaseExceptionGroup[Any]], ...] = (),
) -> bool:
    """Return True if every leaf exception of *exc* passes *test*.

    The one exception-group walk of every policy (``on=``, ``ignore=``, the
    breaker's "only rejections" check). A non-group is its own only leaf. It
    is iterative, depth first and left to right, stopping at the first leaf
    that fails: groups nested deeper than the recursion limit are fine.

    Args:
        exc: The exception (group) to examine.
        test: The predicate each leaf must pass.
        whole: Group types that count as one leaf (tested themselves, not opened).

    Returns:
        Whether every leaf passed (an empty group cannot be built, so never vacuous).
    """
    stack = [exc]
    while stack:
        e = stack.pop()
        if isinstance(e, BaseExceptionGroup) and not (whole and isinstance(e, whole)):
            stack.extend(reversed(e.exceptions))
        elif not test(e):
            return False
    return True


def _never(exc: BaseException) -> bool:
    return False


def _predicate_matcher(param: str, pred: Callable[..., Any]) -> Matcher:
    def leaf(exc: BaseException) -> bool:
        return bool(pred(exc))

    def match(exc: BaseException) -> bool:
        if not isinstance(exc, Exception):
            return False
        if isinstance(exc, BaseExceptionGroup):
            return every_leaf(exc, leaf)
        return bool(pred(exc))

    return match
