"""What all adapters share: lazy optional imports, attach/unsubscribe, contained failures, field rendering."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

import resilient
from resilient import CircuitState
from resilient.adapters import LoggingAdapter, OpenTelemetryAdapter, PrometheusAdapter, StructlogAdapter
from resilient.adapters._common import event_fields, event_kind, exception_type
from resilient.events import (
    CallSucceeded,
    CircuitHalfOpened,
    Event,
    EventBus,
    RetryScheduled,
    TimeoutElapsed,
)
from resilient.testing import FakeClock

OPTIONAL = ("prometheus_client", "opentelemetry", "structlog", "redis")


def test_import_resilient_imports_no_optional_dependency() -> None:
    """Importing resilient, its adapters package and every adapter module loads no optional dependency."""
    code = (
        "import sys, resilient, resilient.adapters, resilient.adapters.logging, "
        "resilient.adapters.structlog, resilient.adapters.prometheus, resilient.adapters.opentelemetry\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {OPTIONAL!r}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


ADAPTERS: list[tuple[Callable[[], Any], tuple[str, ...], str]] = [
    (StructlogAdapter, ("structlog",), "structlog"),
    (PrometheusAdapter, ("prometheus_client",), "prometheus"),
    (OpenTelemetryAdapter, ("opentelemetry", "opentelemetry.metrics", "opentelemetry.trace"), "otel"),
]


@pytest.mark.parametrize(("factory", "modules", "extra"), ADAPTERS, ids=[e for _, _, e in ADAPTERS])
def test_missing_dependency_names_the_extra(
    factory: Callable[[], Any], modules: tuple[str, ...], extra: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without its dependency, an adapter raises ImportError telling which extra to install."""
    for name in modules:
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match=rf"pip install 'resilient-policies\[{extra}\]'"):
        factory()


ALL: list[Callable[[], Any]] = [LoggingAdapter, StructlogAdapter, PrometheusAdapter, OpenTelemetryAdapter]


@pytest.fixture(params=ALL, ids=lambda f: f.__name__)
def any_adapter(request: pytest.FixtureRequest) -> Any:
    """Each adapter, built with its defaults except a private Prometheus registry."""
    if request.param is PrometheusAdapter:
        from prometheus_client import CollectorRegistry

        return PrometheusAdapter(CollectorRegistry())
    return request.param()


def test_attach_subscribes(any_adapter: Any, bus: EventBus) -> None:
    """attach() returns an active subscription on the given bus."""
    sub = any_adapter.attach(bus)
    assert (isinstance(sub, resilient.Subscription), sub.active, bus.wants(RetryScheduled)) == (
        True,
        True,
        True,
    )


def test_unsubscribe_detaches(any_adapter: Any, bus: EventBus) -> None:
    """Unsubscribing leaves the bus without listeners."""
    any_adapter.attach(bus).unsubscribe()
    assert bus.wants(Event) is False


def test_attach_defaults_to_the_default_bus(any_adapter: Any) -> None:
    """attach() with no bus subscribes on resilient.events.default_bus."""
    with any_adapter.attach():
        assert resilient.events.default_bus.wants(RetryScheduled)


def test_attach_rejects_a_non_bus(any_adapter: Any) -> None:
    """A bus that is not an EventBus is refused, naming the parameter."""
    with pytest.raises(TypeError, match="bus"):
        any_adapter.attach(bus="default")


def test_failing_adapter_does_not_change_the_outcome(
    clock: FakeClock, bus: EventBus, caplog: pytest.LogCaptureFixture
) -> None:
    """An adapter whose logger raises is logged by the bus; the call still returns its value."""

    class Broken:
        def __getattr__(self, name: str) -> Callable[..., None]:
            def fail(*args: Any, **kwargs: Any) -> None:
                raise RuntimeError("log sink down")

            return fail

    StructlogAdapter(logger=Broken(), min_level=logging.DEBUG).attach(bus)
    attempts = iter([ConnectionError("refused")])

    @resilient.retry(attempts=3, backoff=0.1, clock=clock, bus=bus)
    def fetch() -> str:
        exc = next(attempts, None)
        if exc is not None:
            raise exc
        return "ok"

    with caplog.at_level(logging.ERROR, logger="resilient"):
        result = fetch()
    assert (result, len(caplog.records) >= 2) == ("ok", True)


async def test_adapters_do_not_swallow_cancellation(bus: EventBus, clock: FakeClock) -> None:
    """With every adapter attached, a cancelled call still raises CancelledError to its awaiter."""
    from prometheus_client import CollectorRegistry

    for adapter in (
        LoggingAdapter(),
        StructlogAdapter(),
        PrometheusAdapter(CollectorRegistry()),
        OpenTelemetryAdapter(),
    ):
        adapter.attach(bus)

    @resilient.fallback("fallback", bus=bus)
    @resilient.retry(attempts=3, clock=clock, bus=bus)
    async def hang() -> None:
        await asyncio.Event().wait()

    task = asyncio.create_task(hang())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.mark.parametrize(
    ("cls", "kind"),
    [(RetryScheduled, "retry_scheduled"), (CircuitHalfOpened, "circuit_half_opened"), (Event, "event")],
)
def test_event_kind(cls: type[Event], kind: str) -> None:
    """An event class's kind is its name in snake_case."""
    assert event_kind(cls) == kind


def test_event_fields_render_exceptions() -> None:
    """An exception becomes its repr plus its type name."""
    event = RetryScheduled(
        policy="retry",
        name=None,
        operation="f",
        time=0.0,
        attempt=1,
        delay=0.5,
        exception=TimeoutError("slow"),
    )
    assert event_fields(event) == {
        "attempt": 1,
        "delay": 0.5,
        "exception": "TimeoutError('slow')",
        "exception_type": "TimeoutError",
        "result": None,
    }


def test_event_fields_cut_long_results() -> None:
    """A large on_result value is cut to a 200-character repr."""
    event = RetryScheduled(
        policy="retry", name=None, operation="f", time=0.0, attempt=1, delay=0.5, result="x" * 1000
    )
    assert len(event_fields(event)["result"]) == 200


def test_event_fields_leave_out_base_fields() -> None:
    """policy, name, operation and time are not repeated among an event's own fields."""
    assert event_fields(TimeoutElapsed(policy="timeout", name="t", operation="f", time=9.0, seconds=1.0)) == {
        "seconds": 1.0
    }


def test_exception_type_is_module_qualified_outside_builtins() -> None:
    """Non-builtin exception types carry their module."""
    assert exception_type(asyncio.InvalidStateError()) == "asyncio.exceptions.InvalidStateError"


def test_state_enum_rendered_as_value() -> None:
    """Enums render as their value."""
    event = CircuitHalfOpened(
        policy="circuit_breaker",
        name="p",
        operation=None,
        time=0.0,
        previous=CircuitState.OPEN,
        state=CircuitState.HALF_OPEN,
    )
    assert event_fields(event) == {"previous": "open", "state": "half_open"}


def test_call_succeeded_fields() -> None:
    """CallSucceeded contributes only its duration."""
    assert event_fields(
        CallSucceeded(policy="pipeline", name=None, operation="f", time=0.0, duration=0.2)
    ) == {"duration": 0.2}


# --- values whose repr() fails ------------------------------------------------------------------

HUGE = 10**5000  # repr() raises ValueError: "Exceeds the limit (4300 digits) for integer string conversion"


class BrokenRepr:
    """A value whose ``repr()`` raises, as a 5,000-digit int's does."""

    def __repr__(self) -> str:
        raise RuntimeError("no repr for you")


untyped: Any = resilient.adapters


# (build(value), the parameter its error must name): every adapter argument checked at construction.
ADAPTER_ARGUMENTS: list[tuple[Callable[[Any], Any], str]] = [
    (lambda v: untyped.LoggingAdapter(v), "logger"),
    (lambda v: untyped.LoggingAdapter(levels=v), "levels"),
    (lambda v: untyped.LoggingAdapter(levels={v: logging.INFO}), "levels"),
    (lambda v: untyped.LoggingAdapter(levels={RetryScheduled: BrokenRepr()}), "levels"),
    (lambda v: untyped.LoggingAdapter(skip_disabled=v), "skip_disabled"),
    (lambda v: untyped.LoggingAdapter(severity=v), "severity"),
    (lambda v: untyped.LoggingAdapter().attach(bus=v), "bus"),
    (lambda v: untyped.StructlogAdapter(v), "logger"),
    (lambda v: untyped.PrometheusAdapter(v), "registry"),
    (lambda v: untyped.PrometheusAdapter(CollectorRegistry(), namespace=v), "namespace"),
    (lambda v: untyped.PrometheusAdapter(CollectorRegistry(), buckets=v), "buckets"),
    (lambda v: untyped.PrometheusAdapter(CollectorRegistry(), buckets=[v]), "buckets"),
    (lambda v: untyped.PrometheusAdapter(CollectorRegistry(), metric_attributes=v), "metric_attributes"),
    (lambda v: untyped.PrometheusAdapter(CollectorRegistry(), metric_attributes=[v]), "metric_attributes"),
    (lambda v: untyped.PrometheusAdapter(CollectorRegistry()).track_bulkhead(v), "bulkhead"),
    (lambda v: untyped.OpenTelemetryAdapter(metrics=v), "metrics"),
    (lambda v: untyped.OpenTelemetryAdapter(traces=v), "traces"),
]
ADAPTER_IDS = [
    "logging-logger",
    "logging-levels",
    "logging-levels-key",
    "logging-levels-value",
    "logging-skip_disabled",
    "logging-severity",
    "logging-attach-bus",
    "structlog-logger",
    "prometheus-registry",
    "prometheus-namespace",
    "prometheus-buckets",
    "prometheus-bucket",
    "prometheus-metric_attributes",
    "prometheus-metric_attribute",
    "prometheus-track_bulkhead",
    "otel-metrics",
    "otel-traces",
]


@pytest.mark.parametrize("value", [HUGE, BrokenRepr()], ids=["huge-int", "broken-repr"])
@pytest.mark.parametrize(("build", "param"), ADAPTER_ARGUMENTS, ids=ADAPTER_IDS)
def test_an_argument_whose_repr_fails_still_gets_an_error_naming_the_parameter(
    build: Callable[[Any], Any], param: str, value: Any
) -> None:
    """An adapter argument whose repr() raises: a TypeError/ValueError naming the parameter."""
    with pytest.raises((TypeError, ValueError), match=param) as info:
        build(value)
    assert "<unrepresentable " in str(info.value)


@pytest.mark.parametrize("result", [HUGE, BrokenRepr()], ids=["huge-int", "broken-repr"])
def test_a_retried_result_whose_repr_fails_is_still_logged(
    result: object, bus: EventBus, caplog: pytest.LogCaptureFixture
) -> None:
    """A RetryScheduled event for a result whose repr() raises is still logged, the result unrepresentable."""
    LoggingAdapter(logging.getLogger("resilient.test.unrepresentable")).attach(bus)
    event = RetryScheduled(
        policy="retry", name=None, operation="f", time=0.0, attempt=1, delay=0.5, result=result
    )
    with caplog.at_level(logging.DEBUG, logger="resilient.test.unrepresentable"):
        bus.emit(event)
    (record,) = [r for r in caplog.records if r.name == "resilient.test.unrepresentable"]
    assert f"<unrepresentable {type(result).__name__}>" in record.getMessage()
