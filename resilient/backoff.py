"""Backoff strategies: how long ``retry`` waits before each retry.

A strategy maps the number of the retry (``k = 1`` for the first retry) to a
delay. The base delay is clamped to ``max_delay`` *before* jitter, so a
jittered delay always lies in ``[0, max_delay]``:

- ``jitter="none"``: the clamped delay ``d``;
- ``jitter="full"``: uniform in ``[0, d]`` (AWS "full jitter");
- ``jitter="equal"``: ``d / 2`` plus uniform in ``[0, d / 2]``.

Strategies are stateless: ``retry`` keeps each call's own state (the
previous delay, for :func:`decorrelated`), so concurrent calls never share a
backoff sequence.
"""

from __future__ import annotations

import abc
import inspect
import math
import random
from collections.abc import Callable
from datetime import timedelta
from typing import Any, Literal, TypeAlias

from ._numbers import describe as _describe
from ._numbers import plain_seconds as _plain_seconds
from ._validate import MAX_WAIT as _MAX_WAIT
from ._validate import check_duration as _check_duration
from ._validate import check_number as _check_number

_LOG_FLOAT_MAX = math.log(1.7976931348623157e308)

__all__ = [
    "Backoff",
    "BackoffFunction",
    "Constant",
    "Decorrelated",
    "Exponential",
    "FromCallable",
    "Jitter",
    "Linear",
    "Seconds",
    "constant",
    "decorrelated",
    "exponential",
    "linear",
]

Jitter = Literal["none", "full", "equal"]
Seconds: TypeAlias = "float | timedelta"
BackoffFunction: TypeAlias = (
    "Callable[[int, BaseException | None], Seconds] | Callable[[int, BaseException | None, Any], Seconds]"
)
"""``(attempt, exc_or_none) -> seconds``, or ``(attempt, exc_or_none, result_or_none) -> seconds``."""
_JITTERS = ("none", "full", "equal")


def _check_jitter(value: object) -> Jitter:
    if value not in _JITTERS:
        raise ValueError(f"jitter must be one of 'none', 'full', 'equal', got {_describe(value)}")
    return value  # type: ignore[return-value]


def _max_delay(value: object, *, allow_inf: bool = False) -> float:
    # Every delay a strategy returns is at most max_delay, so bounding it
    # keeps every wait sleepable (see resilient._validate.MAX_WAIT).
    return _check_duration("max_delay", value, allow_zero=True, allow_inf=allow_inf, maximum=_MAX_WAIT) or 0.0


class Backoff(abc.ABC):
    """Base class of backoff strategies.

    Attributes:
        max_delay: The longest delay the strategy returns. ``retry`` gives up
            at once when an exception's ``retry_after`` asks for longer.
    """

    max_delay: float

    def __init__(self, jitter: Jitter = "none", rng: random.Random | None = None) -> None:
        self.jitter: Jitter = _check_jitter(jitter)
        if rng is not None and not isinstance(rng, random.Random):
            raise TypeError(f"rng must be a random.Random, got {_describe(rng)}")
        self._rng = rng

    def _uniform(self, low: float, high: float) -> float:
        r = self._rng.random() if self._rng is not None else random.random()
        return low + (high - low) * r

    @abc.abstractmethod
    def base(self, attempt: int, previous: float | None) -> float:
        """Return the delay before jitter and clamping.

        Args:
            attempt: The retry number, 1 for the first retry.
            previous: The previous delay of this call, or None.

        Returns:
            Seconds, not yet clamped.
        """

    def delay(
        self, attempt: int, previous: float | None = None, exception: BaseException | None = None
    ) -> float:
        """Return the wait before retry number *attempt*, clamped then jittered.

        Args:
            attempt: The retry number, 1 for the first retry.
            previous: The previous delay of this call, or None.
            exception: The exception being retried (unused by the built-in
                strategies; available to subclasses).

        Returns:
            Seconds in ``[0, max_delay]``.
        """
        d = min(self.max_delay, max(0.0, self.base(attempt, previous)))
        if self.jitter == "full":
            return self._uniform(0.0, d)
        if self.jitter == "equal":
            return d / 2 + self._uniform(0.0, d / 2)
        return d

    def _delay_for(
        self, attempt: int, previous: float | None, exception: BaseException | None, result: Any
    ) -> float:
        # What retry calls: the result of an on_result retry goes only to
        # strategies that take it, so subclasses overriding delay() with its
        # historical signature keep working.
        return self.delay(attempt, previous, exception)


class Constant(Backoff):
    """The same delay every time.

    ``max_delay`` defaults to the delay itself, so ``retry`` gives up on a
    ``retry_after`` longer than the delay; pass a larger ``max_delay`` (or
    ``math.inf``) to wait such hints out instead.
    """

    def __init__(
        self,
        delay: Seconds,
        *,
        jitter: Jitter = "none",
        rng: random.Random | None = None,
        max_delay: Seconds | None = None,
    ) -> None:
        super().__init__(jitter, rng)
        self.delay_seconds: float = _check_duration("delay", delay, allow_zero=True, maximum=_MAX_WAIT) or 0.0
        if max_delay is None:
            self.max_delay = self.delay_seconds
        else:
            self.max_delay = _max_delay(max_delay, allow_inf=True)

    def base(self, attempt: int, previous: float | None) -> float:
        """Return the constant delay."""
        return self.delay_seconds

    def __repr__(self) -> str:
        cap = "" if self.max_delay == self.delay_seconds else f", max_delay={self.max_delay!r}"
        return f"constant({self.delay_seconds!r}, jitter={self.jitter!r}{cap})"


class Linear(Backoff):
    """``initial + increment * (k - 1)``, clamped to ``max_delay``."""

    def __init__(
        self,
        *,
        initial: Seconds = 0.1,
        increment: Seconds = 0.1,
        max_delay: Seconds = 10.0,
        jitter: Jitter = "none",
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(jitter, rng)
        self.initial = _check_duration("initial", initial, allow_zero=True) or 0.0
        self.increment = _check_duration("increment", increment, allow_zero=True) or 0.0
        self.max_delay = _max_delay(max_delay)

    def base(self, attempt: int, previous: float | None) -> float:
        """Return ``initial + increment * (attempt - 1)`` (max_delay on overflow)."""
        try:
            return self.initial + self.increment * (attempt - 1)
        except OverflowError:
            # An int retry number too large for a float; the clamp wins anyway.
            return self.max_delay if self.increment > 0 else self.initial

    def __repr__(self) -> str:
        return (
            f"linear(initial={self.initial!r}, increment={self.increment!r}, "
            f"max_delay={self.max_delay!r}, jitter={self.jitter!r})"
        )


class Exponential(Backoff):
    """``initial * multiplier ** (k - 1)``, clamped to ``max_delay``, then jittered."""

    def __init__(
        self,
        *,
        initial: Seconds = 0.1,
        multiplier: float = 2.0,
        max_delay: Seconds = 10.0,
        jitter: Jitter = "full",
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(jitter, rng)
        self.initial = _check_duration("initial", initial, allow_zero=True) or 0.0
        self.multiplier = _check_number("multiplier", multiplier, 1.0)
        self.max_delay = _max_delay(max_delay)

    def base(self, attempt: int, previous: float | None) -> float:
        """Return ``initial * multiplier ** (attempt - 1)`` (max_delay on overflow)."""
        try:
            return self.initial * self.multiplier ** (attempt - 1)
        except OverflowError:
            # The growth does not fit a float. No growth (multiplier 1) or a
            # zero start stays put; otherwise the product may still fit (a
            # subnormal start), so compute it in log space.
            if self.initial == 0 or self.multiplier == 1:
                return self.initial
            try:
                exponent = math.log(self.initial) + (attempt - 1) * math.log(self.multiplier)
            except OverflowError:  # a retry number beyond float range
                return self.max_delay
            if self.max_delay <= 0 or exponent >= min(math.log(self.max_delay), _LOG_FLOAT_MAX):
                return self.max_delay
            return math.exp(exponent)

    def __repr__(self) -> str:
        return (
            f"exponential(initial={self.initial!r}, multiplier={self.multiplier!r}, "
            f"max_delay={self.max_delay!r}, jitter={self.jitter!r})"
        )


class Decorrelated(Backoff):
    """AWS "decorrelated jitter": uniform in ``[initial, previous * 3]``, clamped.

    The jitter is built in, so ``delay`` applies no further jitter.
    """

    def __init__(
        self, *, initial: Seconds = 0.1, max_delay: Seconds = 10.0, rng: random.Random | None = None
    ) -> None:
        super().__init__("none", rng)
        # initial=0 would pin every draw to [0, 0]: the sequence never grows.
        self.initial = _check_duration("initial", initial) or 0.0
        self.max_delay = _max_delay(max_delay)

    def base(self, attempt: int, previous: float | None) -> float:
        """Return a uniform draw in ``[initial, 3 * previous]``."""
        prev = self.initial if previous is None else previous
        high = max(self.initial, prev * 3)
        return self._uniform(self.initial, high)

    def __repr__(self) -> str:
        return f"decorrelated(initial={self.initial!r}, max_delay={self.max_delay!r})"


class FromCallable(Backoff):
    """A user function ``(attempt, exception_or_none) -> seconds``, or one that also takes the result.

    The three-parameter form ``(attempt, exception_or_none, result_or_none)``
    sees the result of an ``on_result`` retry (the two-parameter form gets
    None as the exception there, and no result). It is chosen when the
    function has at least three positional parameters and the third has no
    default; anything else (``*args``, a third parameter with a default, a
    callable without a signature) is called with two arguments, as before.

    ``max_delay`` is infinite unless given; a bad return value raises
    ``ValueError`` chained to the exception being retried.

    Attributes:
        takes_result: True when the function is called with the result too.
    """

    def __init__(self, fn: BackoffFunction, *, max_delay: Seconds = math.inf) -> None:
        super().__init__("none", None)
        if not callable(fn):
            raise TypeError(f"backoff must be callable, got {_describe(fn)}")
        self.takes_result = _takes_result(fn)
        _check_shape(fn, 3 if self.takes_result else 2)
        self.fn = fn
        self.max_delay = _max_delay(max_delay, allow_inf=True)

    def base(self, attempt: int, previous: float | None) -> float:
        """Unused: :meth:`delay` calls the function with the exception."""
        raise NotImplementedError

    def delay(
        self,
        attempt: int,
        previous: float | None = None,
        exception: BaseException | None = None,
        *,
        result: Any = None,
    ) -> float:
        """Call the function and check what it returns.

        Args:
            attempt: The retry number, 1 for the first retry.
            previous: Unused.
            exception: The exception being retried, or None (``on_result``).
            result: The result being retried (``on_result``), or None; passed
                only to a three-parameter function.

        Returns:
            The seconds the function returned (a ``timedelta`` is converted),
            at most ``max_delay``.

        Raises:
            TypeError: It returned something that is not a number or timedelta.
            ValueError: It returned a negative, NaN or infinite number, or
                (with no finite ``max_delay``) more than 1e9 seconds.
        """
        fn: Any = self.fn
        value = fn(attempt, exception, result) if self.takes_result else fn(attempt, exception)
        number = _plain_seconds(value)
        if number is None:
            raise TypeError(
                f"backoff function {_describe(self.fn, typed=False)} returned {_describe(value)}, "
                "not a number of seconds"
            )
        try:
            seconds = float(number)
        except OverflowError:  # an int beyond any float
            seconds = math.inf
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(
                f"backoff function {_describe(self.fn, typed=False)} returned {_describe(value)}; "
                "need a finite number >= 0"
            )
        seconds = min(seconds, self.max_delay)
        if seconds > _MAX_WAIT:
            raise ValueError(
                f"backoff function {_describe(self.fn, typed=False)} returned {seconds!r}; "
                f"a wait is at most {_MAX_WAIT:g} seconds"
            )
        return seconds

    def _delay_for(
        self, attempt: int, previous: float | None, exception: BaseException | None, result: Any
    ) -> float:
        return self.delay(attempt, previous, exception, result=result)

    def __repr__(self) -> str:
        name = getattr(self.fn, "__qualname__", None)
        return f"FromCallable({name if isinstance(name, str) and name else _describe(self.fn, typed=False)})"


def _check_shape(fn: object, nargs: int) -> None:
    """Refuse, now rather than at the first retry, a function ``retry`` could not call for a delay."""
    from ._arity import accepts  # few retries take a function: `import resilient` stays lean
    from ._introspect import is_async_callable

    if is_async_callable(fn):
        raise TypeError(
            "backoff must be a plain function (attempt, exception) -> seconds, not async: "
            f"retry reads the delay without awaiting; got {_describe(fn)}"
        )
    if not accepts(fn, nargs):  # type: ignore[arg-type]
        raise TypeError(
            "backoff must be a function taking (attempt, exception) or (attempt, exception, result), "
            f"got {_describe(fn)}"
        )


def _takes_result(fn: object) -> bool:
    """True if *fn* has a third positional parameter without a default (the result-aware form)."""
    try:
        signature = inspect.signature(fn)  # type: ignore[arg-type]
    except (TypeError, ValueError):  # a builtin or extension callable without one
        return False
    positional = [
        p
        for p in signature.parameters.values()
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    return len(positional) >= 3 and positional[2].default is inspect.Parameter.empty


def constant(
    delay: Seconds,
    *,
    jitter: Jitter = "none",
    rng: random.Random | None = None,
    max_delay: Seconds | None = None,
) -> Constant:
    """Wait *delay* seconds before every retry.

    ``retry(backoff=0.5)`` is ``retry(backoff=constant(0.5))``.

    Args:
        delay: Seconds (>= 0).
        jitter: ``"none"``, ``"full"`` or ``"equal"``.
        rng: A ``random.Random`` for reproducible jitter.
        max_delay: Cap applied before jitter, and the longest ``retry_after``
            that ``retry`` waits before giving up (default: *delay*, so a
            longer hint makes retry give up; ``math.inf`` waits any hint).

    Returns:
        The strategy.

    Raises:
        TypeError: A parameter has the wrong type.
        ValueError: A parameter is negative, NaN or infinite (or out of range).
    """
    return Constant(delay, jitter=jitter, rng=rng, max_delay=max_delay)


def linear(
    *,
    initial: Seconds = 0.1,
    increment: Seconds = 0.1,
    max_delay: Seconds = 10.0,
    jitter: Jitter = "none",
    rng: random.Random | None = None,
) -> Linear:
    """Wait ``initial + increment * (k - 1)`` seconds before retry *k*, at most *max_delay*.

    Args:
        initial: The first delay.
        increment: Added per retry.
        max_delay: The cap, applied before jitter.
        jitter: ``"none"``, ``"full"`` or ``"equal"``.
        rng: A ``random.Random`` for reproducible jitter.

    Returns:
        The strategy.

    Raises:
        TypeError: A parameter has the wrong type.
        ValueError: A parameter is negative, NaN or infinite (or out of range).
    """
    return Linear(initial=initial, increment=increment, max_delay=max_delay, jitter=jitter, rng=rng)


def exponential(
    *,
    initial: Seconds = 0.1,
    multiplier: float = 2.0,
    max_delay: Seconds = 10.0,
    jitter: Jitter = "full",
    rng: random.Random | None = None,
) -> Exponential:
    """Wait ``initial * multiplier ** (k - 1)`` before retry *k*, clamped, then jittered.

    The default of ``retry`` is ``exponential(initial=0.1, multiplier=2,
    max_delay=10, jitter="full")``.

    Args:
        initial: The first base delay.
        multiplier: Growth per retry (>= 1).
        max_delay: The cap, applied before jitter.
        jitter: ``"none"``, ``"full"`` (default) or ``"equal"``.
        rng: A ``random.Random`` for reproducible jitter.

    Returns:
        The strategy.

    Raises:
        TypeError: A parameter has the wrong type.
        ValueError: A parameter is negative, NaN or infinite (or out of range).
    """
    return Exponential(initial=initial, multiplier=multiplier, max_delay=max_delay, jitter=jitter, rng=rng)


def decorrelated(
    *, initial: Seconds = 0.1, max_delay: Seconds = 10.0, rng: random.Random | None = None
) -> Decorrelated:
    """Decorrelated jitter: each delay uniform in ``[initial, 3 * previous]``, at most *max_delay*.

    Args:
        initial: The smallest delay and the first ``previous``.
        max_delay: The cap.
        rng: A ``random.Random`` for reproducible draws.

    Returns:
        The strategy.

    Raises:
        TypeError: A parameter has the wrong type.
        ValueError: A parameter is negative, NaN or infinite (or out of range).
    """
    return Decorrelated(initial=initial, max_delay=max_delay, rng=rng)


def _to_backoff(value: object) -> Backoff:
    """Normalise ``retry(backoff=...)``: a strategy, seconds, or a callable."""
    if value is None:
        return Exponential()
    if isinstance(value, Backoff):
        return value
    if value in (constant, linear, exponential, decorrelated) or (
        isinstance(value, type) and issubclass(value, Backoff)
    ):
        name = getattr(value, "__name__", repr(value))
        raise TypeError(f"backoff={name} must be called: backoff={name}(...) builds the strategy")
    if isinstance(value, bool):
        raise TypeError(f"backoff must be a strategy, seconds or a callable, got {_describe(value)}")
    if isinstance(value, (int, float)) or hasattr(value, "total_seconds"):
        return Constant(_check_duration("backoff", value, allow_zero=True, maximum=_MAX_WAIT) or 0.0)
    if callable(value):
        return FromCallable(value)
    raise TypeError(
        f"backoff must be a resilient.backoff strategy, seconds or a callable, got {_describe(value)}"
    )
