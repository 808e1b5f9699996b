"""Any value for any parameter of the issue 12 toolkit: a clear error at construction, or a policy that works.

Hypothesis throws values of every kind (numbers huge and tiny, NaN,
strings, bytes, containers, functions of every shape, ``async def``s) at
each parameter of ``rate_limiter``, ``hedge``, ``chaos.*``, ``gate``,
``Registry``, ``pipeline_from_config`` and ``resilient.http``. Construction
either succeeds, and the policy then runs a call, or raises ``TypeError`` or
``ValueError`` naming the parameter. Nothing else escapes: no
``OverflowError``, ``MemoryError``, ``RecursionError``, no error raised by
the error message itself. (Numeric parameters are also covered, with lying
subclasses, by ``tests/test_numbers.py``.)
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resilient import (
    ConfigError,
    Policy,
    Registry,
    RetryBudget,
    chaos,
    gate,
    hedge,
    pipeline_from_config,
    rate_limiter,
)
from resilient.http import parse_retry_after, raise_for_retryable, retry_after_of, retryable_status
from resilient.testing import FakeClock


async def coroutine_function(*args: object) -> bool:
    """An ``async def`` where a plain callable belongs."""
    return False


def two_arguments(a: object, b: object) -> bool:
    """A callable of two positional parameters."""
    return False


ANYTHING = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.just(10**5000),  # repr() of it raises ValueError
    st.floats(),
    st.timedeltas(),
    st.text(max_size=8),
    st.binary(max_size=8),
    st.lists(st.integers(min_value=-1000, max_value=1000), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.sampled_from(
        [
            lambda: True,
            lambda x: True,
            two_arguments,
            coroutine_function,
            print,
            object(),
            ConnectionError,
            KeyboardInterrupt,
            ConnectionError("instance"),
            math.inf,
            -0.0,
            5e-324,
            timedelta.max,
        ]
    ),
)


@dataclass(frozen=True)
class Param:
    """One parameter of one factory of the toolkit."""

    name: str
    build: Callable[[Any], Any]

    def __str__(self) -> str:
        return self.name


def run(policy: Any) -> None:
    """Run one call through a freshly built policy (virtual time, nothing waits for real)."""
    if isinstance(policy, Registry):
        message = "the template returned"
        try:
            policy.get("key")
        except KeyError:
            pass  # a mapping without the key or "*": documented
        except TypeError as exc:
            message = str(exc)
        assert "the template returned" in message  # a callable returning no policy: documented
        return
    if not isinstance(policy, Policy):
        return
    clock = getattr(policy, "clock", None)
    if isinstance(clock, FakeClock):
        clock.advance(1)

    async def call() -> str:
        return "ok"

    async def main() -> None:
        try:
            await policy.call(call)
        except (ConnectionError, ValueError, TypeError):
            pass  # an injected fault, or one a user's factory built

    asyncio.run(main())


PARAMS = [
    Param("rate", lambda v: rate_limiter(v, clock=FakeClock())),
    Param("per", lambda v: rate_limiter(1, per=v, clock=FakeClock())),
    Param("burst", lambda v: rate_limiter(1, burst=v, clock=FakeClock())),
    Param("max_wait", lambda v: rate_limiter(1, max_wait=v, clock=FakeClock())),
    Param("attempts", lambda v: hedge(attempts=v, clock=FakeClock())),
    Param("delay", lambda v: hedge(delay=v, clock=FakeClock())),
    Param("on_result", lambda v: hedge(on_result=v, clock=FakeClock())),
    Param("budget", lambda v: hedge(budget=v, clock=FakeClock())),
    Param("fault", lambda v: chaos.fault(v, clock=FakeClock())),
    Param("seconds", lambda v: chaos.latency(v, clock=FakeClock())),
    Param("rate", lambda v: chaos.result(1, rate=v, seed=1, clock=FakeClock())),
    Param("enabled", lambda v: chaos.result(1, enabled=v, clock=FakeClock())),
    Param("seed", lambda v: chaos.result(1, rate=0.5, seed=v, clock=FakeClock())),
    Param("random", lambda v: chaos.result(1, random=v, rate=0.5, clock=FakeClock())),
    Param("cap", lambda v: retryable_status(cap=v)),
    Param("now", lambda v: retryable_status(now=v)),
    Param("statuses", lambda v: retryable_status(v)),
    Param("statuses", lambda v: retryable_status([v])),
    Param("cap", lambda v: parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", cap=v)),
    Param("now", lambda v: retry_after_of(object(), now=v)),
    Param("statuses", lambda v: raise_for_retryable(_Response(), statuses=v)),
    Param("template", lambda v: Registry(v)),
    Param("grace", lambda v: asyncio.run(gate().close(grace=v))),
    Param("unwind", lambda v: asyncio.run(gate().close(unwind=v))),
]


class _Response:
    """A response with no retryable status."""

    status_code = 200
    headers: dict[str, str] = {}


@pytest.mark.parametrize("p", PARAMS, ids=[f"{i}-{p.name}" for i, p in enumerate(PARAMS)])
@settings(max_examples=80, deadline=None)
@given(value=ANYTHING)
def test_any_value_is_a_clear_error_or_a_working_policy(p: Param, value: Any) -> None:
    """Any value gives TypeError/ValueError naming the parameter, or something that runs a call."""
    problems: tuple[str, ...] | None = None
    try:
        built = p.build(value)
    except ConfigError as exc:  # a configuration as template: its problems, each at its place
        problems = exc.errors
    except (TypeError, ValueError) as exc:
        problems = (str(exc),)
        assert p.name in problems[0], problems
    if problems is None:
        run(built)
    else:
        assert problems


CONFIG_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(),
    st.text(max_size=8),
    st.lists(st.integers(min_value=-5, max_value=5), max_size=3),
    st.dictionaries(
        st.sampled_from(["rate", "per", "burst", "max_wait", "x"]), st.integers(-3, 3), max_size=3
    ),
)
KINDS = ["timeout", "retry", "circuit_breaker", "bulkhead", "fallback", "hedge", "rate_limiter", "nope"]


@settings(max_examples=300, deadline=None)
@given(
    entries=st.lists(
        st.one_of(
            st.builds(lambda k, v: {k: v}, st.sampled_from(KINDS), CONFIG_VALUES),
            CONFIG_VALUES,
        ),
        max_size=4,
    )
)
def test_any_configuration_is_a_config_error_or_a_pipeline(entries: list[Any]) -> None:
    """Any list of entries builds a pipeline that runs a call, or raises ConfigError with located problems."""
    problems: tuple[str, ...] = ()
    try:
        built = pipeline_from_config(entries, clock=FakeClock())
    except ConfigError as exc:
        problems = exc.errors
    if problems:
        assert all(e.startswith("[") for e in problems), problems
    else:
        run(built)


def test_a_budget_from_configuration_is_a_retry_budget() -> None:
    """A hedge budget table builds a RetryBudget of its own (a sanity check of the schema above)."""
    (h,) = pipeline_from_config([{"hedge": {"budget": {"ratio": 0.5}}}]).policies
    assert isinstance(getattr(h, "budget", None), RetryBudget)
