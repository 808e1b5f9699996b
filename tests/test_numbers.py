"""Numeric configuration: every factory stores plain ints and floats, and refuses values it cannot honour.

Issue 10, item 18: an ``int`` subclass whose comparisons lie passed validation
and was stored as-is (``bulkhead(LyingInt(0))`` admitted everything); huge
values allocated eagerly or raised a bare ``MemoryError``/``OverflowError``,
some only when called. Every numeric parameter of every factory is now
converted to a plain ``int``/``float`` before it is checked and stored, and
fails at construction, naming the parameter, when it cannot be honoured.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resilient import (
    EventBus,
    RetryBudget,
    backoff,
    bulkhead,
    chaos,
    circuit_breaker,
    hedge,
    rate_limiter,
    retry,
    timeout,
)
from resilient.http import retryable_status
from resilient.testing import FakeClock

# --- values that lie -------------------------------------------------------------------


def _false(self: object, other: object) -> bool:
    return False


class LyingInt(int):
    """An int whose comparisons are all False, truthiness True, and conversions a billion."""

    __lt__ = __le__ = __gt__ = __ge__ = __eq__ = __ne__ = _false
    __hash__ = int.__hash__

    def __bool__(self) -> bool:
        return True

    def __index__(self) -> int:
        return 10**9

    def __int__(self) -> int:
        return 10**9

    def __float__(self) -> float:
        return 1e9


class LyingFloat(float):
    """A float whose comparisons are all False and whose conversions say 1e9."""

    __lt__ = __le__ = __gt__ = __ge__ = __eq__ = __ne__ = _false
    __hash__ = float.__hash__

    def __bool__(self) -> bool:
        return True

    def __float__(self) -> float:
        return 1e9

    def __int__(self) -> int:
        return 10**9


class LyingTimedelta(timedelta):
    """A timedelta whose total_seconds() and comparisons lie."""

    __lt__ = __le__ = __gt__ = __ge__ = __eq__ = __ne__ = _false
    __hash__ = timedelta.__hash__

    def total_seconds(self) -> float:
        return 1e9

    def __bool__(self) -> bool:
        return True


# --- the catalogue of numeric parameters ---------------------------------------------------


@dataclass(frozen=True)
class Param:
    """One numeric parameter of one factory: how to pass it and where it is stored."""

    factory: str
    name: str
    kind: str  # "int", "float" or "duration"
    valid: float  # a valid value (an int for "int" parameters)
    build: Callable[[Any], Any]
    stored: Callable[[Any], Any]

    @property
    def id(self) -> str:
        return f"{self.factory}:{self.name}"


def param(factory: Callable[..., Any], name: str, kind: str, valid: float, *args: Any, **extra: Any) -> Param:
    """A keyword parameter of *factory* (positional when *name* is first), read back from ``.name``."""

    def build(value: Any) -> Any:
        return (
            factory(value, *args, **extra) if name in POSITIONAL else factory(*args, **{name: value}, **extra)
        )

    def stored(obj: Any) -> Any:
        return getattr(obj, STORED.get(name, name))

    return Param(getattr(factory, "__name__", str(factory)), name, kind, valid, build, stored)


def breaker_param(name: str, kind: str, valid: float, **extra: Any) -> Param:
    """A circuit_breaker parameter, read back from its config."""
    return Param(
        "circuit_breaker",
        name,
        kind,
        valid,
        lambda v: circuit_breaker(**{name: v}, **extra, clock=FakeClock()),
        lambda b: getattr(b.config, name),
    )


POSITIONAL = {"seconds", "max_concurrent", "delay", "rate"}
STORED = {"delay": "delay_seconds"}
RATE = {"failure_rate": 0.5}

PARAMS: list[Param] = [
    param(retry, "attempts", "int", 3),
    param(retry, "deadline", "duration", 5),
    Param("retry", "backoff", "duration", 2, lambda v: retry(backoff=v), lambda r: r.backoff.delay_seconds),
    param(timeout, "seconds", "duration", 2),
    breaker_param("failure_threshold", "int", 5),
    breaker_param("recovery_timeout", "duration", 30),
    breaker_param("half_open_max_calls", "int", 2),
    breaker_param("success_threshold", "int", 2),
    breaker_param("failure_rate", "float", 0.5),
    breaker_param("window", "int", 20, **RATE),
    breaker_param("window_seconds", "duration", 60, **RATE),
    breaker_param("minimum_calls", "int", 5, **RATE),
    breaker_param("slow_call_duration", "duration", 2, **RATE),
    breaker_param("slow_call_rate", "float", 0.5, **RATE),
    param(bulkhead, "max_concurrent", "int", 2),
    param(bulkhead, "max_queue", "int", 3, 1),
    param(bulkhead, "queue_timeout", "duration", 4, 1),
    param(rate_limiter, "rate", "float", 5, clock=FakeClock()),
    param(rate_limiter, "per", "duration", 2, 1, clock=FakeClock()),
    param(rate_limiter, "burst", "int", 3, 1, clock=FakeClock()),
    param(rate_limiter, "max_wait", "duration", 4, 1, clock=FakeClock()),
    param(RetryBudget, "ratio", "float", 0.5),
    param(RetryBudget, "min_per_second", "float", 3),
    param(RetryBudget, "capacity_calls", "int", 50),
    param(backoff.constant, "delay", "duration", 2),
    param(backoff.constant, "max_delay", "duration", 3, 1),
    param(backoff.linear, "initial", "duration", 2),
    param(backoff.linear, "increment", "duration", 2),
    param(backoff.linear, "max_delay", "duration", 3),
    param(backoff.exponential, "initial", "duration", 2),
    param(backoff.exponential, "multiplier", "float", 3),
    param(backoff.exponential, "max_delay", "duration", 3),
    param(backoff.decorrelated, "initial", "duration", 2),
    param(backoff.decorrelated, "max_delay", "duration", 3),
    param(EventBus, "max_pending", "int", 50),
    # The toolkit of issue 12: hedge, chaos, resilient.http.
    param(hedge, "attempts", "int", 3),
    Param("hedge", "delay", "duration", 2, lambda v: hedge(delay=v), lambda h: h.delay),
    Param(
        "latency",
        "seconds",
        "duration",
        2,
        lambda v: chaos.latency(v, clock=FakeClock()),
        lambda c: c.seconds,
    ),
    Param(
        "chaos",
        "rate",
        "float",
        0.5,
        lambda v: chaos.latency(0, rate=v, seed=1, clock=FakeClock()),
        lambda c: c.rate,
    ),
    Param("retryable_status", "cap", "float", 60, lambda v: retryable_status(cap=v), lambda r: r.cap),
]
IDS = [p.id for p in PARAMS]


def plain_type(kind: str) -> type:
    """The type a parameter of *kind* is stored as."""
    return int if kind == "int" else float


def liars(p: Param) -> list[Any]:
    """Lying stand-ins for *p*'s valid value: each must be stored as the plain valid value."""
    if p.kind == "int":
        return [LyingInt(int(p.valid))]
    values: list[Any] = [LyingFloat(p.valid)]
    if float(p.valid).is_integer():
        values.append(LyingInt(int(p.valid)))
    if p.kind == "duration":
        values.append(LyingTimedelta(seconds=p.valid))
    return values


# --- lying subclasses are normalised ---------------------------------------------------------


@pytest.mark.parametrize("p", PARAMS, ids=IDS)
def test_a_lying_subclass_is_stored_as_the_plain_value(p: Param) -> None:
    """An int/float/timedelta subclass with lying comparisons and conversions is stored as a plain number."""
    for value in liars(p):
        stored = p.stored(p.build(value))
        assert (type(stored), stored) == (plain_type(p.kind), p.valid), type(value).__name__


@pytest.mark.parametrize("p", [p for p in PARAMS if p.kind == "int"], ids=lambda p: p.id)
def test_a_lying_negative_int_is_refused(p: Param) -> None:
    """LyingInt(-1) fails the range check, naming the parameter, though it compares 'not less' than all."""
    with pytest.raises(ValueError, match=rf"\b{p.name}\b"):
        p.build(LyingInt(-1))


def test_bulkhead_of_a_lying_zero_is_refused() -> None:
    """The issue's example: bulkhead(LyingInt(0)) raised nothing and admitted every call."""
    with pytest.raises(ValueError, match="max_concurrent"):
        bulkhead(LyingInt(0))


@pytest.mark.parametrize("p", [p for p in PARAMS if p.kind == "duration"], ids=lambda p: p.id)
def test_a_lying_negative_duration_is_refused(p: Param) -> None:
    """A negative LyingFloat or LyingTimedelta duration fails, naming the parameter."""
    for value in (LyingFloat(-1.0), LyingTimedelta(seconds=-1)):
        with pytest.raises(ValueError, match=rf"\b{p.name}\b"):
            p.build(value)


class SpoofedInt:
    """Not an int, but claims to be one through ``__class__``."""

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        return int


@pytest.mark.parametrize("p", PARAMS, ids=IDS)
def test_an_object_spoofing_its_class_is_a_type_error(p: Param) -> None:
    """An object whose __class__ says int (isinstance agrees) gets a TypeError naming the parameter."""
    with pytest.raises(TypeError, match=rf"\b{p.name}\b"):
        p.build(SpoofedInt())


# --- values too large to honour fail at construction ----------------------------------------


@pytest.mark.parametrize("window", [10**7, 10**12, 10**20])
def test_a_huge_count_window_fails_at_construction(window: int) -> None:
    """circuit_breaker(window=huge) raises ValueError naming window (it allocated, or raised MemoryError)."""
    with pytest.raises(ValueError, match="window"):
        circuit_breaker(failure_rate=0.5, window=window)


def test_the_largest_count_window_is_accepted() -> None:
    """window=1_000_000 (a megabyte) is the largest count window."""
    assert circuit_breaker(failure_rate=0.5, window=1_000_000).config.window == 1_000_000


@pytest.mark.parametrize("window_seconds", [5e-324, 1e-300, 1e-4])
def test_a_window_too_short_to_bucket_fails_at_construction(window_seconds: float) -> None:
    """A time window under a millisecond raises ValueError naming window_seconds (calls divided by zero)."""
    with pytest.raises(ValueError, match="window_seconds"):
        circuit_breaker(failure_rate=0.5, window_seconds=window_seconds)


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"capacity_calls": 10**400}, "capacity_calls"),
        ({"min_per_second": 10**400}, "min_per_second"),
        ({"ratio": 10**400}, "ratio"),
    ],
    ids=["capacity_calls", "min_per_second", "ratio"],
)
def test_a_huge_budget_value_fails_naming_the_parameter(kwargs: dict[str, Any], param: str) -> None:
    """RetryBudget with an integer beyond any float raises ValueError naming it (not a bare OverflowError)."""
    with pytest.raises(ValueError, match=param):
        RetryBudget(**kwargs)


@pytest.mark.parametrize(
    ("build", "param"),
    [
        (lambda: retry(backoff=1e10), "backoff"),
        (lambda: retry(backoff=timedelta(days=200_000)), "backoff"),
        (lambda: backoff.constant(1e10), "delay"),
        (lambda: backoff.constant(1, max_delay=1e10), "max_delay"),
        (lambda: backoff.linear(max_delay=1e10), "max_delay"),
        (lambda: backoff.exponential(max_delay=1e10), "max_delay"),
        (lambda: backoff.decorrelated(max_delay=1e10), "max_delay"),
        (lambda: backoff.FromCallable(lambda a, e: 1.0, max_delay=1e10), "max_delay"),
        (lambda: chaos.latency(1e10), "seconds"),
        (lambda: chaos.latency(timedelta(days=200_000)), "seconds"),
    ],
    ids=[
        "retry",
        "retry-td",
        "constant",
        "constant-max",
        "linear",
        "exponential",
        "decorrelated",
        "callable",
        "chaos-latency",
        "chaos-latency-td",
    ],
)
def test_a_wait_too_long_to_sleep_fails_at_construction(build: Callable[[], Any], param: str) -> None:
    """A backoff wait beyond 1e9 s fails at construction naming the parameter (sync retry overflowed)."""
    with pytest.raises(ValueError, match=param):
        build()


def test_infinite_max_delay_still_means_wait_any_hint() -> None:
    """constant(d, max_delay=math.inf) is still accepted: it waits any Retry-After a sleep can honour."""
    assert backoff.constant(1, max_delay=math.inf).max_delay == math.inf


class SleepLimitClock(FakeClock):
    """A virtual clock whose blocking sleep overflows beyond what time.sleep accepts, as time.sleep does."""

    def sleep_blocking(self, seconds: float) -> None:
        """Refuse a sleep beyond the C timestamp range; otherwise advance virtual time."""
        if seconds > 9.2e9:
            raise OverflowError("timestamp too large to convert to C _PyTime_t")
        super().sleep_blocking(seconds)


class HugeHint(Exception):
    """Asks to be retried after a billion years."""

    retry_after = 3.2e16


def test_a_retry_after_too_long_to_sleep_gives_up_instead_of_overflowing() -> None:
    """A sync retry waiting 'any hint' gives up on a Retry-After no sleep can honour (no OverflowError)."""
    clock = SleepLimitClock()
    calls: list[int] = []

    @retry(attempts=3, on=HugeHint, backoff=backoff.constant(1, max_delay=math.inf), clock=clock)
    def call() -> None:
        calls.append(1)
        raise HugeHint

    with pytest.raises(HugeHint):
        call()
    assert (len(calls), clock.sleeps) == (1, [])


def test_a_backoff_function_returning_too_long_a_wait_is_a_clear_error() -> None:
    """A backoff callable returning more than 1e9 s raises ValueError chained to the retried error."""
    clock = SleepLimitClock()

    @retry(attempts=3, on=ConnectionError, backoff=lambda attempt, exc: 1e10, clock=clock)
    def call() -> None:
        raise ConnectionError

    with pytest.raises(ValueError, match=r"returned 10000000000\.0") as info:
        call()
    assert (isinstance(info.value.__cause__, ConnectionError), clock.sleeps) == (True, [])


# --- any number at all: a clear error at construction, or plain values that work -----------

NUMBERS = st.one_of(
    st.integers(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(),
    st.floats(min_value=-1e-300, max_value=1e-300),
    st.timedeltas(),
    st.booleans(),
    st.none(),
    st.text(max_size=3),
)
LIES = NUMBERS.filter(lambda v: type(v) in (int, float, timedelta)).map(
    lambda v: (
        LyingTimedelta(seconds=v.total_seconds())
        if isinstance(v, timedelta)
        else (LyingFloat(v) if isinstance(v, float) else LyingInt(v))
    )
)


def exercise(policy: Any) -> None:
    """Use a successfully built object once, the way a call would (no real waiting)."""
    if isinstance(policy, backoff.Backoff):
        for attempt in (1, 2, 10**6):
            delay = policy.delay(attempt, 1.0)
            assert 0.0 <= delay <= policy.max_delay
    elif isinstance(policy, RetryBudget):
        policy.deposit()
        policy.try_withdraw()
        assert policy.balance >= 0
    elif hasattr(policy, "wrap_sync") and policy.supports_sync:
        clock = getattr(policy, "clock", None)
        if isinstance(clock, FakeClock):
            clock.advance(1)

        def ok() -> str:
            return "ok"

        assert policy(ok)() == "ok"


@pytest.mark.parametrize("p", PARAMS, ids=IDS)
@settings(max_examples=60, deadline=None)
@given(value=st.one_of(NUMBERS, LIES))
def test_any_value_fails_clearly_or_is_stored_plain_and_works(p: Param, value: Any) -> None:
    """Any value raises TypeError/ValueError naming the parameter, or is stored as a plain, working number."""
    message: str | None = None
    try:
        policy = p.build(value)
    except (TypeError, ValueError) as exc:
        message = str(exc)
    if message is not None:
        assert p.name in message
        return
    if value is None:
        return  # "not set": the default applies
    assert type(p.stored(policy)) is plain_type(p.kind)
    exercise(policy)
