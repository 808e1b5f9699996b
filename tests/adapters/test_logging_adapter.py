"""LoggingAdapter: messages, levels, structured fields, and the cheap path when a level is off."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import resilient
from resilient import CircuitState
from resilient.adapters import logging as logging_adapter
from resilient.adapters.logging import DEFAULT_LEVELS, LoggingAdapter, render
from resilient.events import (
    BackendDegraded,
    BackendRecovered,
    BackendStateLost,
    BulkheadRejected,
    CallCancelled,
    CallFailed,
    CallRejected,
    CallStarted,
    CallSucceeded,
    CircuitClosed,
    CircuitOpened,
    CircuitRejected,
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


@pytest.fixture
def logger() -> Iterator[logging.Logger]:
    """A private logger at DEBUG that propagates to caplog."""
    log = logging.getLogger("tests.adapters.logging")
    log.setLevel(logging.DEBUG)
    yield log
    log.setLevel(logging.NOTSET)


MESSAGES = [
    (
        RetryScheduled(policy="retry", **BASE, attempt=1, delay=0.21, exception=REFUSED),
        "retrying fetch_user in 0.21s (attempt 2) after ConnectionError('refused')",
    ),
    (
        RetryScheduled(policy="retry", **BASE, attempt=2, delay=1.0, result=None),
        "retrying fetch_user in 1.00s (attempt 3) after result None",
    ),
    (
        RetriesExhausted(policy="retry", **BASE, attempts=3, exception=REFUSED, reason="attempts"),
        "giving up on fetch_user after 3 attempts (no attempts left): ConnectionError('refused')",
    ),
    (
        RetriesExhausted(policy="retry", **BASE, attempts=1, exception=None, reason="deadline"),
        "giving up on fetch_user after 1 attempt (the next wait would pass the deadline): a retried result",
    ),
    (TimeoutElapsed(policy="timeout", **BASE, seconds=2.5), "fetch_user timed out after 2.5s"),
    (
        CircuitOpened(
            policy="circuit_breaker",
            name="payments",
            operation="charge",
            time=1.0,
            previous=CircuitState.CLOSED,
            state=CircuitState.OPEN,
        ),
        "circuit breaker 'payments' opened (was closed) during charge",
    ),
    (
        CircuitClosed(
            policy="circuit_breaker",
            name=None,
            operation=None,
            time=1.0,
            previous=CircuitState.HALF_OPEN,
            state=CircuitState.CLOSED,
        ),
        "circuit breaker (unnamed) closed (was half_open)",
    ),
    (
        CircuitRejected(
            policy="circuit_breaker", name="payments", operation="charge", time=1.0, retry_after=12.3
        ),
        "circuit breaker 'payments' rejected charge, retry after 12.30s",
    ),
    (
        BulkheadRejected(policy="bulkhead", name="db", operation="query", time=1.0, retry_after=None),
        "bulkhead 'db' rejected query: no free slot",
    ),
    (
        CallRejected(policy="ratelimit", name=None, operation="query", time=1.0, retry_after=None),
        "ratelimit (unnamed) rejected query",
    ),
    (
        FallbackUsed(policy="fallback", **BASE, exception=REFUSED),
        "fallback used for fetch_user after ConnectionError('refused')",
    ),
    (CallSucceeded(policy="pipeline", **BASE, duration=0.25), "fetch_user succeeded in 0.250s"),
    (
        CallFailed(policy="pipeline", **BASE, duration=1.5, exception=REFUSED),
        "fetch_user failed after 1.500s: ConnectionError('refused')",
    ),
    (
        BackendDegraded(
            policy="circuit_breaker",
            name="payments",
            operation=None,
            time=1.0,
            backend="redis",
            exception=None,
        ),
        "circuit_breaker 'payments': backend redis is not answering, using local state",
    ),
    (
        BackendRecovered(
            policy="circuit_breaker", name="payments", operation=None, time=1.0, backend="redis"
        ),
        "circuit_breaker 'payments': backend redis answers again, using shared state",
    ),
    (
        BackendStateLost(
            policy="circuit_breaker",
            name="payments",
            operation=None,
            time=1.0,
            backend="redis",
            previous=CircuitState.ISOLATED,
            state=CircuitState.ISOLATED,
        ),
        "circuit_breaker 'payments': backend redis lost the shared state (was isolated, now isolated)",
    ),
    (Event(policy="custom", name=None, operation=None, time=1.0), "event <custom>"),
]


@pytest.mark.parametrize(
    ("event", "expected"), MESSAGES, ids=lambda v: type(v).__name__ if isinstance(v, Event) else ""
)
def test_message_per_event_kind(event: Event, expected: str) -> None:
    """Each event kind renders as its documented readable message."""
    assert render(event) == expected


LEVELS = [
    (RetryScheduled, logging.WARNING),
    (RetriesExhausted, logging.WARNING),
    (TimeoutElapsed, logging.WARNING),
    (CircuitOpened, logging.WARNING),
    (CircuitClosed, logging.WARNING),
    (CircuitRejected, logging.WARNING),
    (BulkheadRejected, logging.WARNING),
    (FallbackUsed, logging.WARNING),
    (BackendDegraded, logging.WARNING),
    (BackendRecovered, logging.INFO),
    (BackendStateLost, logging.WARNING),
    (CallFailed, logging.INFO),
    (CallSucceeded, logging.DEBUG),
]


@pytest.mark.parametrize(("cls", "level"), LEVELS, ids=lambda v: getattr(v, "__name__", str(v)))
def test_default_levels(cls: type[Event], level: int) -> None:
    """Retries, timeouts, state changes, rejections and fallbacks are WARNING; successes are DEBUG."""
    assert LoggingAdapter().level_of(cls) == level


def test_retry_message_shows_the_configured_total(
    clock: FakeClock, bus: EventBus, caplog: pytest.LogCaptureFixture, logger: logging.Logger
) -> None:
    """A retry logged inside a running pipeline renders "(attempt 2/3)" from the retry's setting."""
    LoggingAdapter(logger).attach(bus)
    flaky = iter([ConnectionError("refused")])

    @resilient.retry(attempts=3, backoff=0.21, clock=clock, bus=bus)
    def fetch_user() -> str:
        exc = next(flaky, None)
        if exc is not None:
            raise exc
        return "ok"

    with caplog.at_level(logging.DEBUG, logger=logger.name):
        assert fetch_user() == "ok"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "retrying test_retry_message_shows_the_configured_total.<locals>.fetch_user in 0.21s "
        "(attempt 2/3) after ConnectionError('refused')"
    ]


def test_records_for_a_retried_call(
    run_guarded: Runner,
    clock: FakeClock,
    bus: EventBus,
    caplog: pytest.LogCaptureFixture,
    logger: logging.Logger,
) -> None:
    """A call that fails once logs its start (DEBUG), one retry (WARNING) and its success (DEBUG)."""
    LoggingAdapter(logger).attach(bus)
    with caplog.at_level(logging.DEBUG, logger=logger.name):
        assert run_guarded(1, resilient.retry(attempts=3, backoff=0.5, clock=clock, bus=bus)) == "ok"
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.DEBUG, "fetch_user started"),
        (logging.WARNING, "retrying fetch_user in 0.50s (attempt 2/3) after ConnectionError('refused')"),
        (logging.DEBUG, "fetch_user succeeded in 0.500s"),
    ]


def test_structured_fields_in_extra(logger: logging.Logger, caplog: pytest.LogCaptureFixture) -> None:
    """A record carries the event's fields as flat resilient_* attributes."""
    adapter = LoggingAdapter(logger)
    event = RetryScheduled(
        policy="retry", name="r", operation="fetch_user", time=3.0, attempt=1, delay=0.2, exception=REFUSED
    )
    with caplog.at_level(logging.DEBUG, logger=logger.name):
        adapter(event)
    (record,) = caplog.records
    fields = {k: v for k, v in vars(record).items() if k.startswith("resilient_")}
    assert fields == {
        "resilient_event": "retry_scheduled",
        "resilient_policy": "retry",
        "resilient_name": "r",
        "resilient_operation": "fetch_user",
        "resilient_attempt": 1,
        "resilient_delay": 0.2,
        "resilient_exception": "ConnectionError('refused')",
        "resilient_exception_type": "ConnectionError",
        "resilient_result": None,
    }


def test_circuit_state_field_is_its_value(logger: logging.Logger, caplog: pytest.LogCaptureFixture) -> None:
    """Circuit states appear in the record as their string values."""
    event = CircuitOpened(
        policy="circuit_breaker",
        name="p",
        operation=None,
        time=0.0,
        previous=CircuitState.CLOSED,
        state=CircuitState.OPEN,
    )
    with caplog.at_level(logging.DEBUG, logger=logger.name):
        LoggingAdapter(logger)(event)
    (record,) = caplog.records
    assert (record.resilient_previous, record.resilient_state) == ("closed", "open")  # type: ignore[attr-defined]


def test_default_logger_is_resilient() -> None:
    """Without a logger the adapter logs on the "resilient" logger."""
    assert LoggingAdapter().logger is logging.getLogger("resilient")


def test_logger_by_name() -> None:
    """A string names the logger to use."""
    assert LoggingAdapter("my.app").logger is logging.getLogger("my.app")


def test_logger_of_the_wrong_type() -> None:
    """A logger that is neither a Logger nor a name is refused, naming the parameter."""
    with pytest.raises(TypeError, match="logger"):
        LoggingAdapter(logger=42)  # type: ignore[arg-type]


def test_level_override_for_a_base_class_covers_subclasses() -> None:
    """A level set on CallRejected applies to circuit and bulkhead rejections."""
    adapter = LoggingAdapter(levels={CallRejected: logging.ERROR})
    assert (adapter.level_of(CircuitRejected), adapter.level_of(BulkheadRejected)) == (
        logging.ERROR,
        logging.ERROR,
    )


def test_level_override_by_name() -> None:
    """Levels may be given by name, case-insensitively."""
    assert LoggingAdapter(levels={CallSucceeded: "info"}).level_of(CallSucceeded) == logging.INFO


@pytest.mark.parametrize(
    ("levels", "error"),
    [
        ({CallSucceeded: "LOUD"}, ValueError),
        ({CallSucceeded: -1}, ValueError),
        ({CallSucceeded: 1.5}, TypeError),
        ({int: logging.INFO}, TypeError),
        ([(CallSucceeded, 10)], TypeError),
    ],
)
def test_bad_levels_name_the_parameter(levels: object, error: type[Exception]) -> None:
    """Bad level configuration fails at construction with an error naming ``levels``."""
    with pytest.raises(error, match="levels"):
        LoggingAdapter(levels=levels)  # type: ignore[arg-type]


def test_an_async_severity_callable_is_refused() -> None:
    """severity= is asked synchronously for each event: a coroutine function fails at construction."""

    async def severity(event: Event) -> int:
        return logging.ERROR

    with pytest.raises(TypeError, match="severity"):
        LoggingAdapter(severity=severity)  # type: ignore[arg-type]


def test_message_not_built_when_level_disabled(
    logger: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the logger above an event's level, the adapter never renders the message."""
    rendered: list[Event] = []

    def spy(event: Event) -> str:
        rendered.append(event)
        return ""

    monkeypatch.setattr(logging_adapter, "render", spy)
    logger.setLevel(logging.WARNING)
    LoggingAdapter(logger)(CallSucceeded(policy="pipeline", **BASE, duration=0.1))
    assert rendered == []


def test_quiet_kinds_are_not_subscribed(logger: logging.Logger, bus: EventBus) -> None:
    """At WARNING, attach() leaves CallSucceeded unsubscribed, so policies never build it."""
    logger.setLevel(logging.WARNING)
    LoggingAdapter(logger).attach(bus)
    assert (bus.wants(CallSucceeded), bus.wants(RetryScheduled)) == (False, True)


def test_every_kind_subscribed_when_all_enabled(logger: logging.Logger) -> None:
    """At DEBUG one subscription covers Event and names the lifecycle-only events."""
    assert LoggingAdapter(logger).wanted_types() == (Event, CallStarted, CallCancelled)


def test_skip_disabled_off_subscribes_everything(logger: logging.Logger, bus: EventBus) -> None:
    """With skip_disabled=False every kind is delivered whatever the level."""
    logger.setLevel(logging.CRITICAL)
    LoggingAdapter(logger, skip_disabled=False).attach(bus)
    assert bus.wants(CallSucceeded)


def test_other_kinds_follow_a_later_level_change(
    logger: logging.Logger, bus: EventBus, caplog: pytest.LogCaptureFixture
) -> None:
    """Kinds off the success path stay subscribed, so a level lowered after attach() applies at once."""
    logger.setLevel(logging.CRITICAL)
    LoggingAdapter(logger).attach(bus)
    logger.setLevel(logging.INFO)
    with caplog.at_level(logging.INFO, logger=logger.name):
        bus.emit(CallFailed(policy="pipeline", **BASE, duration=0.5, exception=REFUSED))
    assert [r.getMessage() for r in caplog.records] == [
        "fetch_user failed after 0.500s: ConnectionError('refused')"
    ]


def test_refresh_picks_up_a_lower_level(logger: logging.Logger, bus: EventBus) -> None:
    """After the logger is lowered to DEBUG, refresh() subscribes CallSucceeded too."""
    logger.setLevel(logging.WARNING)
    adapter = LoggingAdapter(logger)
    adapter.attach(bus)
    logger.setLevel(logging.DEBUG)
    adapter.refresh()
    assert bus.wants(CallSucceeded)


def test_handle_unsubscribes_after_refresh(logger: logging.Logger, bus: EventBus) -> None:
    """The subscription returned by attach() still stops logging after a refresh."""
    logger.setLevel(logging.WARNING)
    adapter = LoggingAdapter(logger)
    sub = adapter.attach(bus)
    logger.setLevel(logging.DEBUG)
    adapter.refresh()
    sub.unsubscribe()
    assert (bus.wants(CallSucceeded), bus.wants(RetryScheduled), sub.active) == (False, False, False)


def test_skip_disabled_must_be_bool() -> None:
    """skip_disabled is checked at construction."""
    with pytest.raises(TypeError, match="skip_disabled"):
        LoggingAdapter(skip_disabled="yes")  # type: ignore[arg-type]


def test_default_levels_cover_every_event() -> None:
    """DEFAULT_LEVELS has a fallback for any event class."""
    assert Event in DEFAULT_LEVELS


def test_failure_and_exhaustion_carry_exc_info(
    run_guarded: Runner,
    clock: FakeClock,
    bus: EventBus,
    logger: logging.Logger,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The records of a failed call and of retry giving up carry the exception (traceback) as exc_info."""
    LoggingAdapter(logger).attach(bus)
    with caplog.at_level(logging.DEBUG, logger=logger.name):
        raised = run_guarded(9, resilient.retry(attempts=2, backoff=0.1, clock=clock, bus=bus))
    with_info = {
        r.resilient_event: (r.exc_info[1] if r.exc_info else None)  # type: ignore[attr-defined]
        for r in caplog.records
    }
    assert with_info == {
        "call_started": None,
        "retry_scheduled": None,
        "retries_exhausted": raised,
        "call_failed": raised,
    }
    assert "Traceback" in caplog.text


def test_call_started_and_succeeded_not_subscribed_when_quiet(logger: logging.Logger, bus: EventBus) -> None:
    """At WARNING neither per-call kind (CallStarted, CallSucceeded) is subscribed: successes cost nothing."""
    logger.setLevel(logging.WARNING)
    LoggingAdapter(logger).attach(bus)
    assert (bus.wants(CallStarted), bus.wants(CallSucceeded), bus.wants(CallCancelled)) == (
        False,
        False,
        True,
    )


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (CallStarted(policy="pipeline", **BASE), "fetch_user started"),
        (
            CallCancelled(policy="pipeline", **BASE, duration=0.25, exception=KeyboardInterrupt()),
            "fetch_user cancelled after 0.250s (KeyboardInterrupt)",
        ),
    ],
    ids=["started", "cancelled"],
)
def test_lifecycle_messages(event: Event, expected: str) -> None:
    """The call lifecycle events have their own messages."""
    assert render(event) == expected


def test_lifecycle_default_levels() -> None:
    """A call start is DEBUG like a success; a cancellation is INFO like a failure."""
    adapter = LoggingAdapter()
    assert (adapter.level_of(CallStarted), adapter.level_of(CallCancelled)) == (logging.DEBUG, logging.INFO)


def test_severity_callable_decides_per_event(
    logger: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    """A severity callable sets the level of one event (by its content); None keeps the configured level."""

    def severity(event: Event) -> int | None:
        if isinstance(event, RetryScheduled) and isinstance(event.exception, TimeoutError):
            return logging.INFO
        return None

    adapter = LoggingAdapter(logger, severity=severity)
    with caplog.at_level(logging.DEBUG, logger=logger.name):
        adapter(RetryScheduled(policy="retry", **BASE, attempt=1, delay=0.1, exception=TimeoutError()))
        adapter(RetryScheduled(policy="retry", **BASE, attempt=1, delay=0.1, exception=REFUSED))
    assert [r.levelno for r in caplog.records] == [logging.INFO, logging.WARNING]


def test_severity_callable_sees_every_kind(logger: logging.Logger, bus: EventBus) -> None:
    """With a severity callable, attach() subscribes every kind: the callable may raise a success's level."""
    logger.setLevel(logging.WARNING)
    LoggingAdapter(logger, severity=lambda e: None).attach(bus)
    assert bus.wants(CallSucceeded)


def test_bad_severity_result_falls_back(logger: logging.Logger, caplog: pytest.LogCaptureFixture) -> None:
    """A severity callable answering junk is logged once per event; the configured level is used."""
    adapter = LoggingAdapter(logger, severity=lambda e: "LOUD")
    with caplog.at_level(logging.DEBUG):
        adapter(TimeoutElapsed(policy="timeout", **BASE, seconds=1.0))
    assert [(r.name, r.levelno) for r in caplog.records] == [
        ("resilient", logging.ERROR),
        (logger.name, logging.WARNING),
    ]


def test_severity_must_be_callable() -> None:
    """A non-callable severity fails at construction, naming the parameter."""
    with pytest.raises(TypeError, match="severity"):
        LoggingAdapter(severity=logging.ERROR)  # type: ignore[arg-type]


def test_call_attributes_on_the_record(
    bus: EventBus, logger: logging.Logger, caplog: pytest.LogCaptureFixture, clock: FakeClock
) -> None:
    """Records of events inside a call carry the call's attributes as resilient_attributes."""
    LoggingAdapter(logger).attach(bus)
    failures = [REFUSED]

    @resilient.pipeline(
        resilient.retry(backoff=0.1, clock=clock, bus=bus),
        bus=bus,
        attributes=lambda user: {"user.tier": "gold"},
    )
    def fetch_user(user: str) -> str:
        if failures:
            raise failures.pop()
        return user

    with caplog.at_level(logging.DEBUG, logger=logger.name):
        fetch_user("alice")
    assert [getattr(r, "resilient_attributes", None) for r in caplog.records] == [
        {"user.tier": "gold"},
        {"user.tier": "gold"},
        {"user.tier": "gold"},
    ]
