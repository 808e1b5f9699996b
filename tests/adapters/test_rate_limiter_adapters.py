"""A rate limiter's rejections through every adapter: RateLimited is a CallRejected that each one shows."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
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
from resilient.adapters.logging import LoggingAdapter
from resilient.adapters.opentelemetry import OpenTelemetryAdapter
from resilient.adapters.prometheus import PrometheusAdapter
from resilient.adapters.structlog import StructlogAdapter
from resilient.events import EventBus
from resilient.testing import FakeClock

Scenario = Callable[[], resilient.RateLimitedError]


@pytest.fixture(params=["async", "sync"])
def rejected(request: pytest.FixtureRequest, clock: FakeClock, bus: EventBus) -> Scenario:
    """Call ``app.fetch_user`` twice behind a limiter of one call per 4 s; return the second call's error."""

    def run() -> resilient.RateLimitedError:
        limiter = resilient.rate_limiter(1, per=4, name="api", clock=clock, bus=bus)

        async def fetch_async() -> str:
            return "ok"

        def fetch_sync() -> str:
            return "ok"

        fn: Any = fetch_async if request.param == "async" else fetch_sync
        fn.__qualname__, fn.__module__ = "fetch_user", "app"
        guarded = resilient.pipeline(limiter, bus=bus, clock=clock)(fn)

        async def twice() -> Any:
            await guarded()
            return await guarded()

        with pytest.raises(resilient.RateLimitedError) as info:
            asyncio.run(twice()) if request.param == "async" else (guarded(), guarded())
        return info.value

    return run


def test_logging_names_the_limiter_and_the_wait(
    rejected: Scenario, bus: EventBus, caplog: pytest.LogCaptureFixture
) -> None:
    """The logging adapter logs a rejection at WARNING, naming the limiter, the call and retry_after."""
    LoggingAdapter("tests.adapters.rate_limiter").attach(bus)
    with caplog.at_level(logging.DEBUG, logger="tests.adapters.rate_limiter"):
        rejected()
    warnings = [(r.getMessage(), r.__dict__["resilient_event"]) for r in caplog.records if r.levelno >= 30]
    assert warnings == [("rate limiter 'api' rejected fetch_user, retry after 4.00s", "rate_limited")]


def test_structlog_entry_carries_the_fields(rejected: Scenario, bus: EventBus) -> None:
    """The structlog adapter emits one resilient.rate_limited warning with policy, name and retry_after."""
    StructlogAdapter().attach(bus)
    with capture_logs() as logs:
        rejected()
    assert [e for e in logs if e["event"] == "resilient.rate_limited"] == [
        {
            "event": "resilient.rate_limited",
            "log_level": "warning",
            "policy": "rate_limiter",
            "name": "api",
            "operation": "fetch_user",
            "retry_after": 4.0,
        }
    ]


def test_prometheus_counts_the_rejection(rejected: Scenario, bus: EventBus) -> None:
    """The Prometheus adapter counts the rejection with policy="rate_limiter"."""
    registry = CollectorRegistry()
    PrometheusAdapter(registry).attach(bus)
    rejected()
    samples = {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for s in family.samples
    }
    labels = frozenset({"operation": "app.fetch_user", "name": "api", "policy": "rate_limiter"}.items())
    assert samples[("resilient_rejections_total", labels)] == 1.0


def test_opentelemetry_counts_and_traces_the_rejection(
    rejected: Scenario,
    bus: EventBus,
    meter_provider: MeterProvider,
    reader: InMemoryMetricReader,
    tracer_provider: TracerProvider,
    exporter: InMemorySpanExporter,
) -> None:
    """The OpenTelemetry adapter counts the rejection by policy and marks the call's span with it."""
    OpenTelemetryAdapter(meter_provider=meter_provider, tracer_provider=tracer_provider).attach(bus)
    rejected()
    data = reader.get_metrics_data()
    assert data is not None
    counted = [
        (dict(p.attributes or {}), getattr(p, "value", None))
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for metric in sm.metrics
        if metric.name == "resilient.rejections"
        for p in metric.data.data_points
    ]
    assert counted == [({"operation": "app.fetch_user", "name": "api", "policy": "rate_limiter"}, 1)]
    span = exporter.get_finished_spans()[-1]
    events = [(e.name, dict(e.attributes or {})) for e in span.events]
    assert ("resilient.rate_limited", {"resilient.retry_after": 4.0}) in [
        (n, {k: v for k, v in a.items() if k == "resilient.retry_after"}) for n, a in events
    ]
