"""StructlogAdapter: one event name per kind, flat key-value fields, level-selected methods."""

from __future__ import annotations

import logging
from collections.abc import Callable, MutableMapping
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

import resilient
from resilient import CircuitState
from resilient.adapters.structlog import StructlogAdapter, entry
from resilient.events import (
    BackendStateLost,
    BulkheadRejected,
    CallFailed,
    CallStarted,
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
    """With min_level=DEBUG a call that fails once logs its start, a retry warning and its success."""
    StructlogAdapter(min_level=logging.DEBUG).attach(bus)
    with capture_logs() as logs:
        assert run_guarded(1, resilient.retry(attempts=3, backoff=0.5, clock=clock, bus=bus)) == "ok"
    assert logs == [
        {
            "event": "resilient.call_started",
            "log_level": "debug",
            "policy": "pipeline",
            "name": None,
            "operation": "fetch_user",
        },
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
    (
        BackendStateLost(
            policy="circuit_breaker",
            **BASE,
            backend="redis",
            previous=CircuitState.OPEN,
            state=CircuitState.CLOSED,
        ),
        "resilient.backend_state_lost",
    ),
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


def test_backend_state_lost_is_a_warning_by_default(bus: EventBus) -> None:
    """A backend that lost the shared state logs a warning with what this process saw and what it is now."""
    StructlogAdapter().attach(bus)
    with capture_logs() as logs:
        bus.emit(
            BackendStateLost(
                policy="circuit_breaker",
                name="payments",
                operation=None,
                time=1.0,
                backend="redis 127.0.0.1:6379/0 resilient:{payments}",
                previous=CircuitState.OPEN,
                state=CircuitState.CLOSED,
            )
        )
    assert logs == [
        {
            "event": "resilient.backend_state_lost",
            "log_level": "warning",
            "policy": "circuit_breaker",
            "name": "payments",
            "operation": None,
            "backend": "redis 127.0.0.1:6379/0 resilient:{payments}",
            "previous": "open",
            "state": "closed",
        }
    ]


def test_levels_pick_the_method() -> None:
    """A level override changes the structlog method used."""
    adapter = StructlogAdapter(levels={CallSucceeded: "ERROR"}, min_level=logging.DEBUG)
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


def test_quiet_on_success_by_default(run_guarded: Runner, clock: FakeClock, bus: EventBus) -> None:
    """By default (min_level INFO) a successful call logs nothing and its events are not even subscribed."""
    StructlogAdapter().attach(bus)
    with capture_logs() as logs:
        assert run_guarded(0, resilient.retry(clock=clock, bus=bus)) == "ok"
    assert (logs, bus.wants(CallStarted), bus.wants(CallSucceeded), bus.wants(RetryScheduled)) == (
        [],
        False,
        False,
        True,
    )


def test_entries_below_min_level_are_dropped() -> None:
    """An event whose level is below min_level is not logged, even when delivered directly."""
    adapter = StructlogAdapter(min_level=logging.ERROR)
    with capture_logs() as logs:
        adapter(TimeoutElapsed(policy="timeout", **BASE, seconds=1.0))
    assert logs == []


def test_failure_and_exhaustion_carry_exc_info(run_guarded: Runner, clock: FakeClock, bus: EventBus) -> None:
    """A failed call's and retry exhaustion's entries carry the exception as exc_info, for the processors."""
    StructlogAdapter().attach(bus)
    with capture_logs() as logs:
        raised = run_guarded(9, resilient.retry(attempts=2, backoff=0.1, clock=clock, bus=bus))
    assert {e["event"]: e.get("exc_info") for e in logs} == {
        "resilient.retry_scheduled": None,
        "resilient.retries_exhausted": raised,
        "resilient.call_failed": raised,
    }


def test_exc_info_rendered_by_structlog() -> None:
    """Through structlog's own processors the exc_info becomes a formatted traceback."""
    try:
        raise REFUSED
    except ConnectionError as exc:
        caught = exc
    out: list[MutableMapping[str, Any]] = []

    def keep(logger: Any, method: str, event_dict: MutableMapping[str, Any]) -> str:
        out.append(event_dict)
        return ""

    logger = structlog.wrap_logger(
        structlog.PrintLogger(), processors=[structlog.processors.format_exc_info, keep]
    )
    StructlogAdapter(logger=logger)(CallFailed(policy="pipeline", **BASE, duration=0.1, exception=caught))
    assert "Traceback" in out[0]["exception"]


async def async_severity(event: object) -> str:
    """A severity callable that needs awaiting."""
    return "ERROR"


def test_severity_callable() -> None:
    """A severity callable picks the method for one event; None keeps the configured level."""
    adapter = StructlogAdapter(severity=lambda e: "ERROR" if e.name == "critical-path" else None)
    with capture_logs() as logs:
        adapter(TimeoutElapsed(policy="timeout", name="critical-path", operation="f", time=0.0, seconds=1.0))
        adapter(TimeoutElapsed(policy="timeout", **BASE, seconds=1.0))
    assert [e["log_level"] for e in logs] == ["error", "warning"]


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"min_level": "LOUD"}, ValueError),
        ({"min_level": 1.5}, TypeError),
        ({"severity": 3}, TypeError),
        ({"severity": async_severity}, TypeError),  # asked synchronously: its coroutine is no level
    ],
)
def test_bad_configuration(kwargs: dict[str, Any], error: type[Exception]) -> None:
    """Bad min_level or severity fails at construction, naming the parameter."""
    with pytest.raises(error, match=next(iter(kwargs))):
        StructlogAdapter(**kwargs)


def test_call_attributes_in_the_entry(bus: EventBus, clock: FakeClock) -> None:
    """Entries of events inside a call carry the call's attributes under "attributes"."""
    StructlogAdapter().attach(bus)

    @resilient.pipeline(
        resilient.retry(attempts=2, backoff=0.1, clock=clock, bus=bus),
        bus=bus,
        attributes=lambda user: {"user.tier": "gold"},
    )
    def fetch_user(user: str) -> str:
        raise REFUSED

    with capture_logs() as logs, pytest.raises(ConnectionError):
        fetch_user("alice")
    assert [e.get("attributes") for e in logs] == [{"user.tier": "gold"}] * 3
