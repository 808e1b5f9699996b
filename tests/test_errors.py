"""Errors: hierarchy, typed attributes, messages, pickling, fresh objects."""

from __future__ import annotations

import asyncio
import copy
import pickle
import typing

import pytest

from resilient import (
    BulkheadFullError,
    CircuitOpenError,
    RateLimitedError,
    ResilientError,
    TimeoutExceededError,
    timeout,
)
from resilient.testing import FakeClock

ERRORS: list[ResilientError] = [
    ResilientError("plain"),
    CircuitOpenError("db", 12.5),
    CircuitOpenError(None, None),
    BulkheadFullError("pool"),
    BulkheadFullError(None),
    RateLimitedError("api", 0.25),
    RateLimitedError(None, None),
    TimeoutExceededError(2.5),
]


@pytest.mark.parametrize("cls", [CircuitOpenError, BulkheadFullError, RateLimitedError, TimeoutExceededError])
def test_hierarchy(cls: type[Exception]) -> None:
    """Every error of the library is a ResilientError, which is an Exception."""
    assert issubclass(cls, ResilientError)
    assert issubclass(ResilientError, Exception)


def test_timeout_error_is_builtin_timeout_error() -> None:
    """TimeoutExceededError is a builtin TimeoutError (and so asyncio.TimeoutError)."""
    assert issubclass(TimeoutExceededError, TimeoutError)
    assert issubclass(TimeoutExceededError, asyncio.TimeoutError)


@pytest.mark.parametrize("cls", [CircuitOpenError, BulkheadFullError, RateLimitedError])
def test_rejections_are_not_timeouts(cls: type[Exception]) -> None:
    """Rejection errors are not TimeoutErrors."""
    assert not issubclass(cls, TimeoutError)


def test_circuit_open_attributes() -> None:
    """CircuitOpenError carries .name and .retry_after."""
    err = CircuitOpenError("db", 12.5)
    assert (err.name, err.retry_after) == ("db", 12.5)


def test_bulkhead_full_attributes() -> None:
    """BulkheadFullError carries .name and a retry_after of None."""
    err = BulkheadFullError("pool")
    assert (err.name, err.retry_after) == ("pool", None)


def test_rate_limited_attributes() -> None:
    """RateLimitedError carries .name and .retry_after (seconds until a permit)."""
    err = RateLimitedError("api", 0.25)
    assert (err.name, err.retry_after) == ("api", 0.25)


def test_timeout_attributes() -> None:
    """TimeoutExceededError carries .seconds."""
    assert TimeoutExceededError(2.5).seconds == 2.5


@pytest.mark.parametrize(
    ("cls", "attr", "expected"),
    [
        (CircuitOpenError, "retry_after", float | None),
        (CircuitOpenError, "name", str | None),
        (BulkheadFullError, "retry_after", float | None),
        (BulkheadFullError, "name", str | None),
        (RateLimitedError, "retry_after", float | None),
        (RateLimitedError, "name", str | None),
        (TimeoutExceededError, "seconds", float),
    ],
)
def test_attributes_typed(cls: type[Exception], attr: str, expected: object) -> None:
    """Error attributes are annotated with the contract's types."""
    assert typing.get_type_hints(cls)[attr] == expected


@pytest.mark.parametrize(
    ("err", "text"),
    [
        (CircuitOpenError("db", 12.5), "circuit 'db' is open; retry after 12.500s"),
        (CircuitOpenError(), "circuit is open"),
        (BulkheadFullError("pool"), "bulkhead 'pool' is full"),
        (RateLimitedError("api", 0.25), "rate limit 'api' exceeded; retry after 0.250s"),
        (RateLimitedError(), "rate limit exceeded"),
        (TimeoutExceededError(2.5), "timed out after 2.5s"),
    ],
    ids=repr,
)
def test_messages(err: Exception, text: str) -> None:
    """Messages name the policy and the relevant number."""
    assert str(err) == text


@pytest.mark.parametrize("err", ERRORS, ids=repr)
def test_picklable(err: ResilientError) -> None:
    """Errors survive pickling with their type, message and attributes."""
    clone = pickle.loads(pickle.dumps(err))
    assert (type(clone), str(clone), vars(clone)) == (type(err), str(err), vars(err))


@pytest.mark.parametrize("err", ERRORS, ids=repr)
def test_copyable(err: ResilientError) -> None:
    """Errors can be copied with their attributes."""
    assert vars(copy.copy(err)) == vars(err)


async def test_timeout_raises_fresh_objects(clock: FakeClock) -> None:
    """Every expiry raises a new TimeoutExceededError whose traceback does not grow."""
    t = timeout(1, clock=clock)
    lengths: list[int] = []
    seen: list[TimeoutExceededError] = []
    for _ in range(3):
        with pytest.raises(TimeoutExceededError) as info:
            await t.call(clock.sleep, 5)
        seen.append(info.value)
        tb, depth = info.value.__traceback__, 0
        while tb is not None:
            depth, tb = depth + 1, tb.tb_next
        lengths.append(depth)
    assert (len({id(e) for e in seen}), len(set(lengths))) == (3, 1)


def test_caught_as_exception() -> None:
    """`except Exception` catches library errors (they are not control flow)."""
    with pytest.raises(Exception):  # noqa: B017
        raise CircuitOpenError("db", 1.0)
