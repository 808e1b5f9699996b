"""StructlogAdapter: one event name per kind, flat key-value fields, level-selected methods."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

import resilient
from resilient import CircuitState
from resilient.adapters.structlog import StructlogAdapter, entry
from resilient.events import (
    BulkheadRejected,
    CallFailed,
    CallSucceeded,
    CircuitOpened,
    Event,
    EventBus,
    FallbackUsed,
    RetriesExhausted,
    RetryScheduled,
    TimeoutElapsed,
)
from resilient.testing import FakeClock

Runner = Callable[..., Any]
BASE: dict[str, Any] = {"name": None, "operation": "fetch_user", "time": 1.0}
REFUSED = ConnectionError("refused")


def test_retried_call_entries(run_guarded: Runner, clock: FakeClock, bus: EventBus) -> None:
    """A call that fails once logs a warning "resilient.retry_scheduled" then a debug success."""
    StructlogAdapter().attach(bus)
    with capture_logs() as logs:
        assert run_guarded(1, resilient.retry(attempts=3, backoff=0.5, clock=clock, bus=bus)) == "ok"
    assert logs == [
        {
            "event": "resilient.retry_scheduled",
            "log_level": "warning",
            "policy": "retry",
            "name": None,
            "operation": "fetch_user",
            "attempt": 1,
            "delay": 0.5,
            "error": "ConnectionError('refused')",
            "error_type": "ConnectionError",
            "result": None,
        },
        {
            "event": "resilient.call_succeeded",
            "log_level": "debug",
            "policy": "pipeline",
            "name": None,
            "operation": "fetch_user",
            "duration": 0.5,
        },
    ]


NAMES = [
    (
        RetryScheduled(policy="retry", **BASE, attempt=1, delay=0.1, exception=REFUSED),
        "resilient.retry_scheduled",
    ),
    (
        RetriesExhausted(policy="retry", **BASE, attempts=3, exception=REFUSED, reason="attempts"),
        "resilient.retries_exhausted",
    ),
    (TimeoutElapsed(policy="timeout", **BASE, seconds=1.0), "resilient.timeout_elapsed"),
    (
        CircuitOpened(
            policy="circuit_breaker", **BASE, previous=CircuitState.CLOSED, state=CircuitState.OPEN
        ),
        "resilient.circuit_opened",
    ),
    (BulkheadRejected(policy="bulkhead", **BASE, retry_after=None), "resilient.bulkhead_rejected"),
    (FallbackUsed(policy="fallback", **BASE, exception=REFUSED), "resilient.fallback_used"),
    (CallSucceeded(policy="pipeline", **BASE, duration=0.1), "resilient.call_succeeded"),
    (CallFailed(policy="pipeline", **BASE, duration=0.1, exception=REFUSED), "resilient.call_failed"),
]


@pytest.mark.parametrize(("event", "name"), NAMES, ids=[n for _, n in NAMES])
def test_one_event_name_per_kind(event: Event, name: str) -> None:
    """Each event kind logs under "resilient.<snake_case kind>"."""
    assert entry(event)[0] == name


def test_state_values_are_strings() -> None:
    """Circuit states are logged as their string values."""
    event = CircuitOpened(
        policy="circuit_breaker", **BASE, previous=CircuitState.CLOSED, state=CircuitState.OPEN
    )
    fields = entry(event)[1]
    assert (fields["previous"], fields["state"]) == ("closed", "open")


def test_levels_pick_the_method() -> None:
    """A level override changes the structlog method used."""
    adapter = StructlogAdapter(levels={CallSucceeded: "ERROR"})
    with capture_logs() as logs:
        adapter(CallSucceeded(policy="pipeline", **BASE, duration=0.1))
    assert logs[0]["log_level"] == "error"


def test_given_logger_is_used() -> None:
    """Entries go to the logger passed in, with its bound context."""
    adapter = StructlogAdapter(logger=structlog.get_logger().bind(service="api"))
    with capture_logs() as logs:
        adapter(TimeoutElapsed(policy="timeout", **BASE, seconds=1.0))
    assert (logs[0]["service"], logs[0]["event"]) == ("api", "resilient.timeout_elapsed")


def test_logger_without_methods_is_refused() -> None:
    """An object that is not a logger is refused, naming the parameter."""
    with pytest.raises(TypeError, match="logger"):
        StructlogAdapter(logger=object())


def test_unsubscribe_stops_logging(bus: EventBus) -> None:
    """After unsubscribe() the adapter logs nothing."""
    StructlogAdapter().attach(bus).unsubscribe()
    with capture_logs() as logs:
        bus.emit(TimeoutElapsed(policy="timeout", **BASE, seconds=1.0))
    assert logs == []
