"""What each adapter does with HedgeStarted and ChaosInjected, and with calls whose attempts are hedged."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

import resilient
from resilient import chaos, current_call, fallback, hedge
from resilient.adapters.logging import DEFAULT_LEVELS, LoggingAdapter, render
from resilient.adapters.opentelemetry import OpenTelemetryAdapter
from resilient.adapters.prometheus import PrometheusAdapter
from resilient.adapters.structlog import StructlogAdapter, entry
from resilient.events import ChaosInjected, Event, EventBus, HedgeStarted
from resilient.testing import FakeClock

BASE: dict[str, Any] = {"name": "search", "operation": "search", "time": 1.0}
REFUSED = ConnectionError("refused")


def guarded(clock: FakeClock, bus: EventBus) -> resilient.Pipeline:
    """A hedge of two simultaneous attempts, the first slowed down by chaos (switched on for attempt 1)."""
    return resilient.pipeline(
        hedge(delay=0, name="search", clock=clock, bus=bus),
        chaos.latency(0.5, enabled=lambda: _attempt() == 1, name="slow", clock=clock, bus=bus),
        bus=bus,
        clock=clock,
    )


def _attempt() -> int:
    ctx = current_call()
    assert ctx is not None
    return ctx.attempt


async def search() -> str:
    """The protected function: answers with its attempt number."""
    return f"attempt {_attempt()}"


search.__module__ = "app"


# --- logging and structlog ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (
            HedgeStarted(policy="hedge", **BASE, attempt=2, reason="delay"),
            "hedge 'search' started attempt 2 of search: no answer within the delay",
        ),
        (
            HedgeStarted(policy="hedge", **BASE, attempt=3, reason="failure"),
            "hedge 'search' started attempt 3 of search: an attempt failed",
        ),
        (
            ChaosInjected(policy="chaos", **BASE, kind="fault", exception=REFUSED),
            "chaos 'search' injected a fault into search: ConnectionError('refused')",
        ),
        (
            ChaosInjected(policy="chaos", **BASE, kind="latency", seconds=0.5),
            "chaos 'search' injected a latency of 0.5s into search",
        ),
        (
            ChaosInjected(policy="chaos", **BASE, kind="result"),
            "chaos 'search' injected a result into search",
        ),
    ],
)
def test_log_messages(event: Event, expected: str) -> None:
    """Each new event has a readable message."""
    assert render(event) == expected


@pytest.mark.parametrize(("cls", "level"), [(HedgeStarted, logging.INFO), (ChaosInjected, logging.WARNING)])
def test_log_levels(cls: type[Event], level: int) -> None:
    """A hedge is INFO (normal operation); an injection is WARNING (an injected fault must say so)."""
    assert LoggingAdapter().level_of(cls) == level
    assert DEFAULT_LEVELS[cls] == level


async def test_logging_adapter_logs_a_hedged_call(
    clock: FakeClock, bus: EventBus, caplog: pytest.LogCaptureFixture
) -> None:
    """A real hedged call logs the injection and the hedge, with flat fields."""
    logger = logging.getLogger("test.hedge_chaos")
    LoggingAdapter(logger).attach(bus)
    with caplog.at_level(logging.INFO, logger=logger.name):
        assert await guarded(clock, bus).call(search) == "attempt 2"
    records = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert (logging.INFO, "hedge 'search' started attempt 2 of search: no answer within the delay") in records
    assert (logging.WARNING, "chaos 'slow' injected a latency of 0.5s into search") in records
    hedged = next(r for r in caplog.records if r.resilient_event == "hedge_started")  # type: ignore[attr-defined]
    assert (hedged.resilient_attempt, hedged.resilient_reason) == (2, "delay")  # type: ignore[attr-defined]


def test_structlog_entries() -> None:
    """structlog gets one event name per kind and the fields flat."""
    assert entry(HedgeStarted(policy="hedge", **BASE, attempt=2, reason="delay")) == (
        "resilient.hedge_started",
        {"policy": "hedge", "name": "search", "operation": "search", "attempt": 2, "reason": "delay"},
    )
    name, fields = entry(ChaosInjected(policy="chaos", **BASE, kind="fault", exception=REFUSED))
    assert (name, fields["kind"], fields["error"], fields["error_type"], fields["seconds"]) == (
        "resilient.chaos_injected",
        "fault",
        "ConnectionError('refused')",
        "ConnectionError",
        None,
    )


async def test_structlog_adapter_levels(clock: FakeClock, bus: EventBus) -> None:
    """Through the adapter, a hedge logs at info and an injection at warning."""
    StructlogAdapter().attach(bus)
    with capture_logs() as logs:
        await guarded(clock, bus).call(search)
    levels = {entry["event"]: entry["log_level"] for entry in logs}
    assert (levels["resilient.hedge_started"], levels["resilient.chaos_injected"]) == ("info", "warning")


# --- Prometheus ----------------------------------------------------------------------------


def sample(registry: CollectorRegistry, metric: str, **labels: str) -> float | None:
    """One sample's value from the exposition text, or None."""
    text = generate_latest(registry).decode()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == metric and s.labels == labels:
                return float(s.value)
    return None


async def test_prometheus_counts_hedges_and_injections(clock: FakeClock, bus: EventBus) -> None:
    """resilient_hedges_total counts by reason, resilient_chaos_injections_total by kind."""
    registry = CollectorRegistry()
    PrometheusAdapter(registry).attach(bus)
    await guarded(clock, bus).call(search)
    op = "app.search"
    assert sample(registry, "resilient_hedges_total", operation=op, name="search", reason="delay") == 1.0
    assert (
        sample(registry, "resilient_chaos_injections_total", operation=op, name="slow", kind="latency") == 1.0
    )


async def test_prometheus_outcome_of_a_hedged_call_answered_by_a_fallback(
    clock: FakeClock, bus: EventBus
) -> None:
    """A fallback inside the winning attempt makes the call's outcome "fallback"."""
    registry = CollectorRegistry()
    PrometheusAdapter(registry).attach(bus)

    @resilient.pipeline(hedge(attempts=1, clock=clock, bus=bus), fallback("cached", bus=bus), bus=bus)
    async def price() -> str:
        raise REFUSED

    assert await price() == "cached"
    op = f"{__name__}.{price.__qualname__}"
    assert sample(registry, "resilient_calls_total", operation=op, name="", outcome="fallback") == 1.0


# --- OpenTelemetry -------------------------------------------------------------------------


def otel_points(reader: InMemoryMetricReader, name: str) -> list[tuple[dict[str, object], object]]:
    """(attributes, value) of every data point of metric *name*."""
    data = reader.get_metrics_data()
    found: list[tuple[dict[str, object], object]] = []
    if data is None:
        return found
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name == name:
                    found.extend(
                        (dict(p.attributes or {}), getattr(p, "value", None)) for p in metric.data.data_points
                    )
    return found


async def test_otel_counts_hedges_and_injections(
    clock: FakeClock, bus: EventBus, meter_provider: MeterProvider, reader: InMemoryMetricReader
) -> None:
    """resilient.hedges and resilient.chaos.injections, with the Prometheus labels."""
    OpenTelemetryAdapter(meter_provider=meter_provider, traces=False).attach(bus)
    await guarded(clock, bus).call(search)
    assert otel_points(reader, "resilient.hedges") == [
        ({"operation": "app.search", "name": "search", "reason": "delay"}, 1)
    ]
    assert otel_points(reader, "resilient.chaos.injections") == [
        ({"operation": "app.search", "name": "slow", "kind": "latency"}, 1)
    ]


async def test_events_inside_hedged_attempts_reach_the_calls_span(
    clock: FakeClock, bus: EventBus, tracer_provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """An event emitted inside an attempt's task (its own context) lands on the call's span."""
    OpenTelemetryAdapter(tracer_provider=tracer_provider, metrics=False).attach(bus)
    await guarded(clock, bus).call(search)
    (span,) = exporter.get_finished_spans()
    assert [e.name for e in span.events if e.name != "resilient.attempt"] == [
        "resilient.hedge_started",
        "resilient.chaos_injected",
    ]


async def test_the_call_keeps_what_the_deciding_attempt_recorded(
    clock: FakeClock, bus: EventBus, tracer_provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """The span shows the winning attempt's number and attributes, not a loser's."""
    OpenTelemetryAdapter(tracer_provider=tracer_provider, metrics=False).attach(bus)
    release = asyncio.Event()

    @hedge(delay=0, clock=clock, bus=bus)
    async def lookup() -> str:
        ctx = current_call()
        assert ctx is not None
        ctx.set_attribute("replica", ctx.attempt)
        if ctx.attempt == 1:
            await release.wait()
        return "ok"

    assert await lookup() == "ok"
    (span,) = exporter.get_finished_spans()
    assert span.attributes is not None
    assert (span.attributes["resilient.attempts"], span.attributes["replica"]) == (2, 2)
