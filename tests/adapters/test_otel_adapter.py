"""OpenTelemetryAdapter, checked with the SDK's in-memory span exporter and metric reader."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import resilient
import resilient.testing
from resilient import CircuitState
from resilient.adapters.opentelemetry import OpenTelemetryAdapter
from resilient.events import (
    BackendDegraded,
    BackendRecovered,
    BackendStateLost,
    CircuitOpened,
    EventBus,
    TimeoutElapsed,
)
from resilient.testing import FakeClock

Runner = Callable[..., Any]
SECOND = 1_000_000_000


@pytest.fixture
def adapter(
    meter_provider: MeterProvider, tracer_provider: TracerProvider, bus: EventBus
) -> OpenTelemetryAdapter:
    """The adapter on the SDK providers, attached to the test's bus."""
    a = OpenTelemetryAdapter(meter_provider=meter_provider, tracer_provider=tracer_provider)
    a.attach(bus)
    return a


def points(reader: InMemoryMetricReader, name: str) -> list[tuple[dict[str, Any], Any]]:
    """(attributes, value or histogram point) of every data point of metric *name*."""
    data = reader.get_metrics_data()
    out: list[tuple[dict[str, Any], Any]] = []
    if data is None:
        return out
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name == name:
                    for p in metric.data.data_points:
                        out.append((dict(p.attributes or {}), getattr(p, "value", p)))
    return out


def unit(reader: InMemoryMetricReader, name: str) -> str | None:
    """The unit of metric *name*."""
    data = reader.get_metrics_data()
    assert data is not None
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name == name:
                    return metric.unit
    return None


def only_span(exporter: InMemorySpanExporter) -> ReadableSpan:
    """The single finished span."""
    (span,) = exporter.get_finished_spans()
    return span


def offsets(span: ReadableSpan) -> list[tuple[str, float]]:
    """(name, seconds after span start) of each span event."""
    assert span.start_time is not None
    return [(e.name, round((e.timestamp - span.start_time) / SECOND, 6)) for e in span.events]


# --- traces ---------------------------------------------------------------------


def test_one_span_per_call(
    run_guarded: Runner,
    clock: FakeClock,
    bus: EventBus,
    adapter: OpenTelemetryAdapter,
    exporter: InMemorySpanExporter,
) -> None:
    """A call makes one span named after the operation, whatever its retries."""
    run_guarded(2, resilient.retry(attempts=3, backoff=0.1, clock=clock, bus=bus))
    assert [s.name for s in exporter.get_finished_spans()] == ["app.fetch_user"]


def test_retries_visible_in_the_trace(
    run_guarded: Runner,
    clock: FakeClock,
    bus: EventBus,
    adapter: OpenTelemetryAdapter,
    exporter: InMemorySpanExporter,
) -> None:
    """Each attempt and each backoff wait is a span event at its virtual time."""
    run_guarded(2, resilient.retry(attempts=3, backoff=0.25, clock=clock, bus=bus))
    assert offsets(only_span(exporter)) == [
        ("resilient.attempt", 0.0),
        ("resilient.retry_scheduled", 0.0),
        ("resilient.attempt", 0.25),
        ("resilient.retry_scheduled", 0.25),
        ("resilient.attempt", 0.5),
    ]


def test_span_duration_is_the_call_duration(
    run_guarded: Runner,
    clock: FakeClock,
    bus: EventBus,
    adapter: OpenTelemetryAdapter,
    exporter: InMemorySpanExporter,
) -> None:
    """The retroactive span lasts exactly the duration the pipeline measured."""
    run_guarded(1, resilient.retry(attempts=3, backoff=0.75, clock=clock, bus=bus))
    span = only_span(exporter)
    assert span.end_time is not None
    assert span.start_time is not None
    assert span.end_time - span.start_time == round(0.75 * SECOND)


def test_span_attributes_of_a_retried_success(
    run_guarded: Runner,
    clock: FakeClock,
    bus: EventBus,
    adapter: OpenTelemetryAdapter,
    exporter: InMemorySpanExporter,
) -> None:
    """The span names the operation (module-qualified), the policies, the attempts and the outcome."""
    run_guarded(1, resilient.retry(attempts=3, backoff=0.1, clock=clock, bus=bus))
    assert dict(only_span(exporter).attributes or {}) == {
        "resilient.operation": "app.fetch_user",
        "code.function.name": "app.fetch_user",
        "resilient.outcome": "success",
        "resilient.retries": 1,
        "resilient.attempts": 2,
        "resilient.policies": ("retry",),
    }


def test_retry_span_event_attributes(
    run_guarded: Runner,
    clock: FakeClock,
    bus: EventBus,
    adapter: OpenTelemetryAdapter,
    exporter: InMemorySpanExporter,
) -> None:
    """A retry span event carries the failed attempt, the wait and the exception type and message."""
    run_guarded(1, resilient.retry(attempts=3, backoff=0.1, name="r", clock=clock, bus=bus))
    event = next(e for e in only_span(exporter).events if e.name == "resilient.retry_scheduled")
    assert dict(event.attributes or {}) == {
        "resilient.policy": "retry",
        "resilient.name": "r",
        "resilient.attempt": 1,
        "resilient.delay": 0.1,
        "exception.type": "ConnectionError",
        "exception.message": "refused",
    }


def test_success_leaves_status_unset(
    run_guarded: Runner,
    clock: FakeClock,
    bus: EventBus,
    adapter: OpenTelemetryAdapter,
    exporter: InMemorySpanExporter,
) -> None:
    """A successful call's span status is UNSET, as the OpenTelemetry spec asks of instrumentation."""
    run_guarded(0, resilient.retry(clock=clock, bus=bus))
    assert only_span(exporter).status.status_code is StatusCode.UNSET


def test_failure_sets_error_status(
    run_guarded: Runner,
    clock: FakeClock,
    bus: EventBus,
    adapter: OpenTelemetryAdapter,
    exporter: InMemorySpanExporter,
) -> None:
    """A failed call's span has status ERROR, error.type and an exception event."""
    run_guarded(9, resilient.retry(attempts=2, backoff=0.1, clock=clock, bus=bus))
    span = only_span(exporter)
    assert (
        span.status.status_code,
        span.status.description,
        (span.attributes or {})["error.type"],
        (span.attributes or {})["resilient.outcome"],
        [e.name for e in span.events][-2:],
    ) == (
        StatusCode.ERROR,
        "ConnectionError: refused",
        "ConnectionError",
        "failure",
        ["resilient.retries_exhausted", "exception"],
    )


def test_fallback_outcome(
    run_guarded: Runner,
    clock: FakeClock,
    bus: EventBus,
    adapter: OpenTelemetryAdapter,
    exporter: InMemorySpanExporter,
) -> None:
    """A failure replaced by a fallback shows outcome "fallback" and a fallback span event."""
    run_guarded(1, resilient.fallback("cached", bus=bus))
    span = only_span(exporter)
    assert ((span.attributes or {})["resilient.outcome"], [e.name for e in span.events]) == (
        "fallback",
        ["resilient.attempt", "resilient.fallback_used"],
    )


def test_breaker_decisions_in_the_span(
    clock: FakeClock, bus: EventBus, adapter: OpenTelemetryAdapter, exporter: InMemorySpanExporter
) -> None:
    """The call that opens a breaker and the call it rejects carry those span events."""
    breaker = resilient.circuit_breaker(failure_threshold=1, name="payments", clock=clock, bus=bus)

    @breaker
    def charge() -> None:
        raise ConnectionError("refused")

    for _ in range(2):
        with pytest.raises((ConnectionError, resilient.CircuitOpenError)):
            charge()
    names = [[e.name for e in s.events if e.name != "exception"] for s in exporter.get_finished_spans()]
    assert names == [
        ["resilient.attempt", "resilient.circuit_opened"],
        ["resilient.attempt", "resilient.circuit_rejected"],
    ]


async def test_timeout_in_the_span(
    clock: FakeClock, bus: EventBus, adapter: OpenTelemetryAdapter, exporter: InMemorySpanExporter
) -> None:
    """An expired timeout is a span event at the moment it fired."""

    @resilient.timeout(2.0, clock=clock, bus=bus)
    async def slow() -> None:
        await clock.sleep(10)

    with pytest.raises(TimeoutError):
        await slow()
    assert offsets(only_span(exporter))[:2] == [
        ("resilient.attempt", 0.0),
        ("resilient.timeout_elapsed", 2.0),
    ]


def test_span_is_a_child_of_the_callers_span(
    run_guarded: Runner,
    clock: FakeClock,
    bus: EventBus,
    adapter: OpenTelemetryAdapter,
    exporter: InMemorySpanExporter,
    tracer_provider: TracerProvider,
) -> None:
    """The call's span joins the trace of the span active around the call."""
    tracer = tracer_provider.get_tracer("test")
    with tracer.start_as_current_span("request") as parent:
        run_guarded(0, resilient.retry(clock=clock, bus=bus))
    call = next(s for s in exporter.get_finished_spans() if s.name == "app.fetch_user")
    assert call.parent is not None
    assert (call.parent.span_id, call.context.trace_id) == (
        parent.get_span_context().span_id,
        parent.get_span_context().trace_id,
    )


async def test_concurrent_calls_keep_their_own_events(
    clock: FakeClock, bus: EventBus, adapter: OpenTelemetryAdapter, exporter: InMemorySpanExporter
) -> None:
    """Events of interleaved calls land in the span of the call that emitted them."""
    failures = {"a": 1, "b": 2}

    @resilient.retry(attempts=5, backoff=0.1, clock=clock, bus=bus)
    async def fetch(key: str) -> str:
        await asyncio.sleep(0)
        if failures[key] > 0:
            failures[key] -= 1
            raise ConnectionError(key)
        return key

    await asyncio.gather(fetch("a"), fetch("b"))
    retries = sorted(
        [
            e.attributes["exception.message"]
            for e in s.events
            if e.name == "resilient.retry_scheduled" and e.attributes
        ]
        for s in exporter.get_finished_spans()
    )
    assert retries == [["a"], ["b", "b"]]


def test_nested_pipelines_make_separate_spans(
    clock: FakeClock, bus: EventBus, adapter: OpenTelemetryAdapter, exporter: InMemorySpanExporter
) -> None:
    """An inner guarded call has its own span with its own retries."""
    inner_failures = [ConnectionError("inner")]

    @resilient.retry(attempts=3, backoff=0.1, name="inner", clock=clock, bus=bus)
    def inner() -> str:
        if inner_failures:
            raise inner_failures.pop()
        return "ok"

    @resilient.retry(attempts=3, backoff=0.1, name="outer", clock=clock, bus=bus)
    def outer() -> str:
        return inner()

    outer()
    found = {
        s.name.rsplit(".", 1)[-1]: (s.attributes or {})["resilient.retries"]
        for s in exporter.get_finished_spans()
    }
    assert found == {"inner": 1, "outer": 0}


async def test_event_outside_any_call_makes_no_span(
    clock: FakeClock, bus: EventBus, adapter: OpenTelemetryAdapter, exporter: InMemorySpanExporter
) -> None:
    """A timeout used as a context manager outside any pipeline call records metrics but no span."""
    with pytest.raises(TimeoutError):
        async with resilient.timeout(1.0, clock=clock, bus=bus):
            await clock.sleep(5)
    assert exporter.get_finished_spans() == ()


def test_cancelled_call_ends_its_span(
    clock: FakeClock, bus: EventBus, adapter: OpenTelemetryAdapter, exporter: InMemorySpanExporter
) -> None:
    """A call cancelled in its backoff wait gets a span (its events, outcome "cancelled"); none stays open."""

    @resilient.retry(attempts=5, backoff=1.0, clock=clock, bus=bus)
    async def hang() -> None:
        call = resilient.current_call()
        if call is not None and call.attempt == 1:
            raise ConnectionError("refused")
        await asyncio.Event().wait()

    async def scenario() -> None:
        task = asyncio.create_task(hang())
        for _ in range(3):
            await asyncio.sleep(0)  # through the failed attempt and the virtual backoff
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    span = only_span(exporter)
    assert adapter._recorder is not None
    assert (
        [e.name for e in span.events],
        (span.attributes or {})["resilient.outcome"],
        span.status.status_code,
        adapter._recorder.running,
    ) == (
        ["resilient.attempt", "resilient.retry_scheduled", "resilient.attempt"],
        "cancelled",
        StatusCode.ERROR,
        0,
    )


def test_traces_off(
    run_guarded: Runner,
    clock: FakeClock,
    bus: EventBus,
    meter_provider: MeterProvider,
    tracer_provider: TracerProvider,
    exporter: InMemorySpanExporter,
    reader: InMemoryMetricReader,
) -> None:
    """With traces=False only metrics are recorded."""
    OpenTelemetryAdapter(meter_provider, tracer_provider, traces=False).attach(bus)
    run_guarded(0, resilient.retry(clock=clock, bus=bus))
    assert (exporter.get_finished_spans(), len(points(reader, "resilient.calls"))) == ((), 1)


def test_metrics_off(
    run_guarded: Runner,
    clock: FakeClock,
    bus: EventBus,
    meter_provider: MeterProvider,
    tracer_provider: TracerProvider,
    exporter: InMemorySpanExporter,
    reader: InMemoryMetricReader,
) -> None:
    """With metrics=False only spans are recorded."""
    OpenTelemetryAdapter(meter_provider, tracer_provider, metrics=False).attach(bus)
    run_guarded(0, resilient.retry(clock=clock, bus=bus))
    assert (len(exporter.get_finished_spans()), points(reader, "resilient.calls")) == (1, [])


# --- metrics --------------------------------------------------------------------


def test_calls_counter(
    run_guarded: Runner,
    clock: FakeClock,
    bus: EventBus,
    adapter: OpenTelemetryAdapter,
    reader: InMemoryMetricReader,
) -> None:
    """resilient.calls counts calls by outcome, labelled with the module-qualified operation."""
    run_guarded(0, resilient.retry(clock=clock, bus=bus))
    assert points(reader, "resilient.calls") == [
        ({"operation": "app.fetch_user", "name": "", "outcome": "success"}, 1)
    ]


def test_duration_histogram_in_seconds(
    run_guarded: Runner,
    clock: FakeClock,
    bus: EventBus,
    adapter: OpenTelemetryAdapter,
    reader: InMemoryMetricReader,
) -> None:
    """resilient.call.duration records the call's seconds, unit "s"."""
    run_guarded(1, resilient.retry(attempts=2, backoff=0.3, clock=clock, bus=bus))
    ((attrs, point),) = points(reader, "resilient.call.duration")
    assert (unit(reader, "resilient.call.duration"), attrs["outcome"], point.count, point.sum) == (
        "s",
        "success",
        1,
        pytest.approx(0.3),
    )


def test_retry_counters(
    run_guarded: Runner,
    clock: FakeClock,
    bus: EventBus,
    adapter: OpenTelemetryAdapter,
    reader: InMemoryMetricReader,
) -> None:
    """Retries and exhaustion (with its reason) are counted."""
    run_guarded(9, resilient.retry(attempts=3, backoff=0.1, clock=clock, bus=bus))
    assert (points(reader, "resilient.retries"), points(reader, "resilient.retries_exhausted")) == (
        [({"operation": "app.fetch_user", "name": ""}, 2)],
        [({"operation": "app.fetch_user", "name": "", "reason": "attempts"}, 1)],
    )


def test_fallback_and_rejection_counters(
    clock: FakeClock, bus: EventBus, adapter: OpenTelemetryAdapter, reader: InMemoryMetricReader
) -> None:
    """Rejections count with the rejecting policy; fallbacks count too."""
    breaker = resilient.circuit_breaker(failure_threshold=1, name="p", clock=clock, bus=bus)

    @resilient.fallback(None, bus=bus)
    @breaker
    def charge() -> None:
        raise ConnectionError("refused")

    charge()
    charge()
    op = f"{__name__}.{charge.__qualname__}"
    assert (points(reader, "resilient.rejections"), points(reader, "resilient.fallbacks")) == (
        [({"operation": op, "name": "p", "policy": "circuit_breaker"}, 1)],
        [({"operation": op, "name": ""}, 2)],
    )


def test_timeout_counter(bus: EventBus, adapter: OpenTelemetryAdapter, reader: InMemoryMetricReader) -> None:
    """resilient.timeouts counts expired timeouts."""
    bus.emit(TimeoutElapsed(policy="timeout", name="t", operation="f", time=0.0, seconds=1.0))
    assert points(reader, "resilient.timeouts") == [({"operation": "f", "name": "t"}, 1)]


def test_circuit_state_gauge(
    bus: EventBus, adapter: OpenTelemetryAdapter, reader: InMemoryMetricReader
) -> None:
    """resilient.circuit.state is 1 for the breaker's current state and 0 for the others."""
    bus.emit(
        CircuitOpened(
            policy="circuit_breaker",
            name="p",
            operation=None,
            time=0.0,
            previous=CircuitState.CLOSED,
            state=CircuitState.OPEN,
        )
    )
    found = {a["state"]: v for a, v in points(reader, "resilient.circuit.state")}
    assert found == {"closed": 0, "open": 1, "half_open": 0, "isolated": 0}


def test_tracked_breaker_state(adapter: OpenTelemetryAdapter, reader: InMemoryMetricReader) -> None:
    """A tracked breaker is observed as closed before any transition."""
    breaker = resilient.circuit_breaker(name="p")
    adapter.track_circuit_breaker(breaker)
    found = {a["state"]: v for a, v in points(reader, "resilient.circuit.state")}
    assert found["closed"] == 1


def test_collection_never_moves_a_breaker(
    adapter: OpenTelemetryAdapter, reader: InMemoryMetricReader, clock: FakeClock, bus: EventBus
) -> None:
    """Collecting an OPEN breaker past its recovery timeout observes half_open, emits and moves nothing."""
    breaker = resilient.circuit_breaker(
        failure_threshold=1, recovery_timeout=10, name="payments", clock=clock, bus=bus
    )
    adapter.track_circuit_breaker(breaker)

    @breaker
    def charge() -> None:
        raise ConnectionError("refused")

    with pytest.raises(ConnectionError):
        charge()
    clock.advance(11)
    with resilient.testing.capture_events(bus=bus) as events:
        found = {a["state"]: v for a, v in points(reader, "resilient.circuit.state")}
    assert (found["half_open"], events, breaker.stats().state) == (1, [], CircuitState.OPEN)


def test_retracking_a_rebuilt_breaker_replaces_it(
    adapter: OpenTelemetryAdapter, reader: InMemoryMetricReader
) -> None:
    """Tracking a rebuilt breaker under the old one's name never raises; the new one is observed."""
    old = resilient.circuit_breaker(name="payments")
    old.isolate()
    adapter.track_circuit_breaker(old)
    rebuilt = resilient.circuit_breaker(name="payments")
    adapter.track_circuit_breaker(rebuilt)  # `old` is still alive
    found = {a["state"]: v for a, v in points(reader, "resilient.circuit.state")}
    assert found["closed"] == 1


def test_tracked_bulkhead_in_use(adapter: OpenTelemetryAdapter, reader: InMemoryMetricReader) -> None:
    """A tracked bulkhead's occupancy is observed while a call holds a slot."""
    pool = resilient.bulkhead(4, name="db")
    adapter.track_bulkhead(pool)
    seen: list[Any] = []

    @pool
    async def query() -> None:
        seen.append(points(reader, "resilient.bulkhead.in_use"))

    asyncio.run(query())
    assert (seen, points(reader, "resilient.bulkhead.max_concurrent")) == (
        [[({"name": "db"}, 1)]],
        [({"name": "db"}, 4)],
    )


@pytest.mark.parametrize(
    ("kwargs", "error", "param"),
    [
        ({"metrics": False, "traces": False}, ValueError, "metrics and traces"),
        ({"metrics": 1}, TypeError, "metrics"),
        ({"traces": None}, TypeError, "traces"),
    ],
)
def test_bad_configuration(kwargs: dict[str, Any], error: type[Exception], param: str) -> None:
    """Bad configuration fails at construction, naming the parameter."""
    with pytest.raises(error, match=param):
        OpenTelemetryAdapter(**kwargs)


def test_allow_listed_call_attributes_on_metrics(
    clock: FakeClock,
    bus: EventBus,
    meter_provider: MeterProvider,
    tracer_provider: TracerProvider,
    reader: InMemoryMetricReader,
    exporter: InMemorySpanExporter,
) -> None:
    """Only metric_attributes reach the metrics; every call attribute reaches the span."""
    OpenTelemetryAdapter(meter_provider, tracer_provider, metric_attributes=["server.address"]).attach(bus)

    @resilient.pipeline(
        resilient.retry(bus=bus, clock=clock),
        bus=bus,
        attributes=lambda user: {"server.address": "api.example.com", "user.id": user},
    )
    def get(user: str) -> str:
        return "ok"

    get("alice")
    ((attrs, _),) = points(reader, "resilient.calls")
    span_attrs = only_span(exporter).attributes or {}
    assert (attrs.get("server.address"), "user.id" in attrs, span_attrs["user.id"]) == (
        "api.example.com",
        False,
        "alice",
    )


def test_cancelled_call_counted(
    clock: FakeClock, bus: EventBus, adapter: OpenTelemetryAdapter, reader: InMemoryMetricReader
) -> None:
    """A cancelled call is counted with outcome "cancelled"; its duration carries error.type."""

    @resilient.retry(clock=clock, bus=bus)
    async def hang() -> None:
        await asyncio.Event().wait()

    async def scenario() -> None:
        task = asyncio.create_task(hang())
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    ((calls, count),) = points(reader, "resilient.calls")
    ((duration, _),) = points(reader, "resilient.call.duration")
    assert (calls["outcome"], count, duration["error.type"]) == (
        "cancelled",
        1,
        "asyncio.exceptions.CancelledError",
    )


def test_backend_degraded_gauge(
    bus: EventBus, adapter: OpenTelemetryAdapter, reader: InMemoryMetricReader
) -> None:
    """BackendDegraded sets resilient.backend.degraded to 1, BackendRecovered to 0."""
    base: dict[str, Any] = {"policy": "circuit_breaker", "name": "p", "operation": None, "time": 0.0}
    bus.emit(BackendDegraded(**base, backend="redis", exception=None))
    degraded = points(reader, "resilient.backend.degraded")
    bus.emit(BackendRecovered(**base, backend="redis"))
    assert (degraded, points(reader, "resilient.backend.degraded")) == (
        [({"policy": "circuit_breaker", "name": "p"}, 1)],
        [({"policy": "circuit_breaker", "name": "p"}, 0)],
    )


def test_backend_state_lost_counter(
    bus: EventBus, meter_provider: MeterProvider, reader: InMemoryMetricReader
) -> None:
    """Each BackendStateLost adds one to resilient.backend.state_lost; metrics alone subscribe to it."""
    OpenTelemetryAdapter(meter_provider=meter_provider, traces=False).attach(bus)
    assert bus.wants(BackendStateLost)
    lost = BackendStateLost(
        policy="circuit_breaker",
        name="p",
        operation=None,
        time=0.0,
        backend="redis",
        previous=CircuitState.ISOLATED,
        state=CircuitState.ISOLATED,
    )
    bus.emit(lost)
    bus.emit(lost)
    assert points(reader, "resilient.backend.state_lost") == [({"policy": "circuit_breaker", "name": "p"}, 2)]
    assert unit(reader, "resilient.backend.state_lost") == "{loss}"
