"""circuit_breaker: configuration is checked when the factory is called."""

from __future__ import annotations

import asyncio
import math
from datetime import timedelta
from typing import Any

import pytest

from resilient import CircuitState, circuit_breaker
from resilient.backends import BreakerConfig, MemoryBackend
from resilient.testing import FakeClock

BAD: list[tuple[dict[str, Any], type[Exception], str]] = [
    ({"failure_threshold": 0}, ValueError, "failure_threshold"),
    ({"failure_threshold": 2.5}, TypeError, "failure_threshold"),
    ({"failure_threshold": True}, TypeError, "failure_threshold"),
    ({"recovery_timeout": -1}, ValueError, "recovery_timeout"),
    ({"recovery_timeout": 0}, ValueError, "recovery_timeout"),
    ({"recovery_timeout": math.nan}, ValueError, "recovery_timeout"),
    ({"recovery_timeout": math.inf}, ValueError, "recovery_timeout"),
    ({"recovery_timeout": "30"}, TypeError, "recovery_timeout"),
    ({"half_open_max_calls": 0}, ValueError, "half_open_max_calls"),
    ({"success_threshold": "2"}, TypeError, "success_threshold"),
    ({"success_threshold": 0}, ValueError, "success_threshold"),
    ({"failure_rate": 0}, ValueError, "failure_rate"),
    ({"failure_rate": 1.5}, ValueError, "failure_rate"),
    ({"failure_rate": math.nan}, ValueError, "failure_rate"),
    ({"failure_rate": "0.5"}, TypeError, "failure_rate"),
    ({"window": 0}, ValueError, "window"),
    ({"window": 10.0}, TypeError, "window"),
    ({"window_seconds": 0}, ValueError, "window_seconds"),
    ({"window_seconds": math.inf}, ValueError, "window_seconds"),
    ({"minimum_calls": 0}, ValueError, "minimum_calls"),
    ({"slow_call_duration": -0.5}, ValueError, "slow_call_duration"),
    ({"slow_call_rate": 0}, ValueError, "slow_call_rate"),
    ({"slow_call_rate": 2}, ValueError, "slow_call_rate"),
    ({"on": KeyboardInterrupt}, ValueError, "on"),
    ({"on": (ValueError, SystemExit)}, ValueError, "on"),
    ({"on": "ValueError"}, TypeError, "on"),
    ({"on": ()}, ValueError, "on"),
    ({"ignore": asyncio.CancelledError}, ValueError, "ignore"),
    ({"ignore": [KeyError]}, TypeError, "ignore"),
    ({"name": ""}, ValueError, "name"),
    ({"name": 3}, TypeError, "name"),
    ({"clock": object()}, TypeError, "clock"),
    ({"bus": object()}, TypeError, "bus"),
    ({"backend": object()}, TypeError, "backend"),
]


@pytest.mark.parametrize(
    ("kwargs", "error", "param"), BAD, ids=[f"{next(iter(k))}={next(iter(k.values()))!r}" for k, _, _ in BAD]
)
def test_bad_config_names_the_parameter(kwargs: dict[str, Any], error: type[Exception], param: str) -> None:
    """A bad value raises TypeError/ValueError at factory time, naming the parameter."""
    with pytest.raises(error, match=rf"\b{param}\b"):
        circuit_breaker(**kwargs)


def test_positional_arguments_are_refused() -> None:
    """All configuration is keyword-only."""
    with pytest.raises(TypeError):
        circuit_breaker(5)  # type: ignore[call-arg]


def test_defaults_match_the_contract() -> None:
    """The defaults are the documented ones."""
    assert circuit_breaker().config == BreakerConfig(
        failure_threshold=5,
        recovery_timeout=30.0,
        half_open_max_calls=1,
        success_threshold=1,
        failure_rate=None,
        window=100,
        window_seconds=None,
        minimum_calls=10,
        slow_call_duration=None,
        slow_call_rate=1.0,
    )


def test_timedelta_durations_are_accepted(clock: FakeClock) -> None:
    """recovery_timeout, window_seconds and slow_call_duration accept timedelta."""
    breaker = circuit_breaker(
        recovery_timeout=timedelta(minutes=1),
        window_seconds=timedelta(seconds=30),
        slow_call_duration=timedelta(milliseconds=250),
        clock=clock,
    )
    c = breaker.config
    assert (c.recovery_timeout, c.window_seconds, c.slow_call_duration) == (60.0, 30.0, 0.25)


def test_on_baseexception_means_every_exception(clock: FakeClock) -> None:
    """on=BaseException is accepted and counts ordinary exceptions as failures."""
    breaker = circuit_breaker(failure_threshold=1, on=BaseException, clock=clock)

    def fail() -> None:
        raise LookupError

    with pytest.raises(LookupError):
        breaker.call(fail)
    assert breaker.state is CircuitState.OPEN


def test_backend_bound_to_another_config_is_refused(clock: FakeClock) -> None:
    """Reusing one MemoryBackend for breakers with different configurations raises ValueError."""
    backend = MemoryBackend()
    circuit_breaker(failure_threshold=3, backend=backend, clock=clock)
    with pytest.raises(ValueError, match="backend"):
        circuit_breaker(failure_threshold=4, backend=backend, clock=clock)


def test_backend_shared_by_identical_breakers(clock: FakeClock) -> None:
    """Two breakers with one configuration may share a backend, and then share state."""
    backend = MemoryBackend()
    first = circuit_breaker(failure_threshold=1, backend=backend, clock=clock)
    second = circuit_breaker(failure_threshold=1, backend=backend, clock=clock)
    first.isolate()
    assert second.state is CircuitState.ISOLATED
