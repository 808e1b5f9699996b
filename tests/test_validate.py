"""Tests of the checks and the exception matcher shared by every policy (``resilient._validate``)."""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable
from typing import Any

import pytest

from resilient import CircuitOpenError, CircuitState, circuit_breaker, fallback, retry
from resilient._validate import make_matcher
from resilient.testing import FakeClock

# --- exception groups nested deeper than the recursion limit (issue 10, item 19) --


def nested(leaf: BaseException, depth: int) -> BaseException:
    """Wrap *leaf* in *depth* single-member exception groups."""
    exc = leaf
    for _ in range(depth):
        exc = BaseExceptionGroup("wrapped", [exc])  # an ExceptionGroup when every leaf is an Exception
    return exc


DEEP = sys.getrecursionlimit() + 100
RECURSED = object()


@pytest.fixture(params=["async", "sync"])
def kind(request: pytest.FixtureRequest) -> str:
    """Run the test against an async and a sync protected function."""
    return str(request.param)


def raising(kind: str, exc: BaseException, calls: list[int]) -> Callable[..., Any]:
    """An async or sync function that counts its calls and raises *exc*."""

    async def op() -> str:
        calls.append(1)
        raise exc

    def sync_op() -> str:
        calls.append(1)
        raise exc

    return op if kind == "async" else sync_op


async def invoke(fn: Callable[..., Any]) -> Any:
    """Call *fn*, await the result if it is awaitable; a RecursionError fails the test cleanly.

    (Reporting the RecursionError itself would recurse through the deep group again.)
    """
    try:
        result = fn()
        if inspect.isawaitable(result):
            result = await result
    except RecursionError:
        result = RECURSED
    if result is RECURSED:  # failed outside the except block: no chained RecursionError to report
        pytest.fail("RecursionError while matching a deeply nested exception group", pytrace=False)
    return result


def matches(spec: Any, exc: BaseException) -> bool:
    """Run ``make_matcher("on", spec)`` on *exc*; a RecursionError fails the test cleanly."""
    try:
        return make_matcher("on", spec)(exc)
    except RecursionError:
        pass
    pytest.fail("RecursionError while matching a deeply nested exception group", pytrace=False)


async def test_retry_matches_a_group_nested_past_the_recursion_limit(kind: str, clock: FakeClock) -> None:
    """retry matches a deeply nested group of matching leaves (no RecursionError) and retries it."""
    group = nested(ConnectionError("leaf"), DEEP)
    calls: list[int] = []
    guarded = retry(attempts=3, on=ConnectionError, backoff=0, clock=clock)(raising(kind, group, calls))
    with pytest.raises(ExceptionGroup) as info:
        await invoke(guarded)
    assert info.value is group
    assert len(calls) == 3


async def test_fallback_matches_a_group_nested_past_the_recursion_limit(kind: str) -> None:
    """fallback answers a deeply nested group of matching leaves instead of raising RecursionError."""
    calls: list[int] = []
    guarded = fallback("default", on=ConnectionError)(raising(kind, nested(ConnectionError(), DEEP), calls))
    assert await invoke(guarded) == "default"


async def test_breaker_counts_a_group_nested_past_the_recursion_limit(kind: str, clock: FakeClock) -> None:
    """A breaker classifies a deeply nested group as one failure (and a group of rejections as neutral)."""
    breaker = circuit_breaker(failure_threshold=1, on=ConnectionError, clock=clock)
    calls: list[int] = []
    rejected = breaker(raising(kind, nested(CircuitOpenError("inner", 1.0), DEEP), calls))
    with pytest.raises(ExceptionGroup):
        await invoke(rejected)
    after_rejections = breaker.state  # rejections by an inner policy are neutral
    failing = breaker(raising(kind, nested(ConnectionError(), DEEP), calls))
    with pytest.raises(ExceptionGroup):
        await invoke(failing)
    assert (after_rejections, breaker.state) == (CircuitState.CLOSED, CircuitState.OPEN)


@pytest.mark.parametrize(
    ("spec", "leaf", "expected"),
    [
        (ConnectionError, ConnectionError(), True),
        (ConnectionError, ValueError(), False),
        (lambda exc: isinstance(exc, ConnectionError), ConnectionError(), True),
        (lambda exc: isinstance(exc, ConnectionError), ValueError(), False),
    ],
    ids=["type-match", "type-miss", "predicate-match", "predicate-miss"],
)
def test_deep_group_matches_exactly_when_its_leaf_does(
    spec: Any, leaf: BaseException, expected: bool
) -> None:
    """A group nested past the recursion limit matches when, and only when, its leaf matches."""
    assert matches(spec, nested(leaf, DEEP)) is expected


def test_a_wide_and_deep_group_needs_every_leaf_to_match() -> None:
    """One non-matching leaf anywhere in a deep, wide tree of groups stops the match."""
    good = nested(ConnectionError(), DEEP)
    assert matches(ConnectionError, BaseExceptionGroup("top", [good, nested(ConnectionError(), 3)])) is True
    assert matches(ConnectionError, BaseExceptionGroup("top", [good, nested(ValueError(), DEEP)])) is False


def test_a_control_flow_leaf_deep_inside_a_group_never_matches() -> None:
    """A KeyboardInterrupt deep inside a BaseExceptionGroup keeps the whole group from matching."""
    group = BaseExceptionGroup("top", [ConnectionError(), nested(KeyboardInterrupt(), DEEP)])
    assert matches(BaseException, group) is False


def test_a_group_type_in_on_matches_the_group_itself() -> None:
    """An ExceptionGroup type listed in on matches the group, whatever its leaves."""
    assert matches((ExceptionGroup, ConnectionError), nested(ValueError(), DEEP)) is True


# --- a value too long to repr() ------------------------------------------------------------------

HUGE = 10**5000  # repr() raises ValueError: "Exceeds the limit (4300 digits) for integer string conversion"
untyped_retry: Any = retry  # the bad arguments below are static type errors too
untyped_fallback: Any = fallback


@pytest.mark.xfail(
    strict=True,
    reason="_validate.check_name and make_matcher, retry(long_retry_after=) and fallback(on_result=) "
    "put {value!r} in their messages: for a 5,000-digit int the message itself raises ValueError, "
    "naming no parameter (the new modules use _numbers.describe). Found by the qa-toolkit helper; "
    "_validate.py, _retry.py and _fallback.py belong to other helpers.",
)
@pytest.mark.parametrize(
    ("build", "error", "param"),
    [
        (lambda: untyped_retry(name=HUGE), TypeError, "name"),
        (lambda: untyped_retry(on=HUGE), TypeError, "on"),
        (lambda: untyped_retry(long_retry_after=HUGE), TypeError, "long_retry_after"),
        (lambda: untyped_fallback(None, on_result=HUGE), TypeError, "on_result"),
    ],
    ids=["name", "on", "long_retry_after", "on_result"],
)
def test_a_value_too_long_to_repr_still_gets_an_error_naming_the_parameter(
    build: Callable[[], Any], error: type[Exception], param: str
) -> None:
    """A 5,000-digit int where a name, an exception spec or a predicate belongs: a TypeError naming it."""
    with pytest.raises(error, match=param):
        build()


async def async_predicate(value: object) -> bool:
    """A predicate that needs awaiting: policies ask theirs synchronously."""
    return False


@pytest.mark.xfail(
    strict=True,
    reason="An async predicate is accepted by retry(on=, on_result=) and fallback(on_result=): its "
    "coroutine is truthy, so every result (or exception) matches and the coroutine is never awaited. "
    "The toolkit's own predicates refuse one (hedge, chaos, http, Registry). Found by the qa-toolkit "
    "helper; _validate.py, _retry.py and _fallback.py belong to other helpers.",
)
@pytest.mark.parametrize(
    ("build", "param"),
    [
        (lambda: untyped_retry(on_result=async_predicate), "on_result"),
        (lambda: untyped_retry(on=async_predicate), "on"),
        (lambda: untyped_fallback(None, on_result=async_predicate), "on_result"),
    ],
    ids=["retry-on_result", "retry-on", "fallback-on_result"],
)
def test_an_async_predicate_fails_at_construction(build: Callable[[], Any], param: str) -> None:
    """An ``async def`` predicate, which would always match, is a TypeError naming the parameter."""
    with pytest.raises(TypeError, match=param):
        build()
