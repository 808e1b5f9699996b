"""Every adapter attached to one bus at once, under the issue 12 toolkit, async calls and threads alike.

Logging, structlog, Prometheus and OpenTelemetry (metrics and traces) each
see the rate limiter's rejections, hedges, chaos injections, the gate's
close and a registry reload, from coroutines and from a thread; none of
their handlers fails (the bus would log it at ERROR on ``resilient``).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry, generate_latest
from structlog.testing import capture_logs

from resilient import RateLimitedError, Registry, chaos, current_call, fallback, gate, gather_outcomes, hedge
from resilient import rate_limiter as make_limiter
from resilient.adapters.logging import LoggingAdapter
from resilient.adapters.opentelemetry import OpenTelemetryAdapter
from resilient.adapters.prometheus import PrometheusAdapter
from resilient.adapters.structlog import StructlogAdapter
from resilient.events import EventBus
from resilient.testing import FakeClock


class Keep(logging.Handler):
    """Keeps every record."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def resilient_log() -> Any:
    """Every record of the ``resilient`` logger (the logging adapter's, and the bus's handler errors)."""
    keep = Keep()
    logger = logging.getLogger("resilient")
    old = (logger.level, logger.propagate)
    logger.addHandler(keep)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield keep
    logger.removeHandler(keep)
    logger.setLevel(old[0])
    logger.propagate = old[1]


def test_every_adapter_sees_the_toolkit_and_none_fails(
    resilient_log: Keep,
    exporter: InMemorySpanExporter,
    tracer_provider: TracerProvider,
    reader: InMemoryMetricReader,
    meter_provider: MeterProvider,
) -> None:
    """Four adapters on one bus record rejections, hedges, chaos, the close and a reload; no handler fails."""
    bus = EventBus()
    registry = CollectorRegistry()
    LoggingAdapter(skip_disabled=False).attach(bus)
    StructlogAdapter(min_level=logging.DEBUG).attach(bus)
    PrometheusAdapter(registry, metric_attributes=["item"]).attach(bus)
    OpenTelemetryAdapter(meter_provider, tracer_provider, metric_attributes=["item"]).attach(bus)
    clock = FakeClock()
    g = gate(name="svc", clock=clock, bus=bus)
    limiter = make_limiter(100, burst=8, name="api", clock=clock, bus=bus)
    reg = Registry({"*": [{"retry": {"attempts": 2, "backoff": 0}}]}, clock=clock, bus=bus)

    @g
    @fallback("fallback", bus=bus)
    @reg("api")
    @hedge(attempts=2, delay=0, name="replicas", clock=clock, bus=bus)
    @limiter
    @chaos.fault(ConnectionError, rate=0.3, seed=4, name="flaky", clock=clock, bus=bus)
    async def fetch(item: int) -> str:
        ctx = current_call()
        assert ctx is not None
        ctx.set_attribute("item", item % 2)
        await asyncio.sleep(0)
        return f"item {item}"

    @g
    @limiter
    def fetch_sync(item: int) -> str:
        return f"sync {item}"

    sync_results: list[str] = []

    def in_thread() -> None:
        for item in range(10):  # the burst is 8
            try:
                sync_results.append(fetch_sync(item))
            except RateLimitedError:
                sync_results.append("limited")

    async def scenario() -> None:
        outcomes = await gather_outcomes(*(fetch(i) for i in range(8)))
        assert all(o.ok for o in outcomes)  # the fallback answers whatever was rejected or injected
        clock.advance(1)
        thread = threading.Thread(target=in_thread)
        thread.start()
        thread.join()
        reg.reload({"*": [{"retry": {"attempts": 3, "backoff": 0}}]})
        await g.close(grace=1)

    with capture_logs() as entries:
        asyncio.run(scenario())

    assert [r for r in resilient_log.records if r.levelno >= logging.ERROR] == []
    assert sync_results == [f"sync {i}" for i in range(8)] + ["limited", "limited"]
    kinds = {e["event"] for e in entries}
    assert {
        "resilient.rate_limited",
        "resilient.hedge_started",
        "resilient.chaos_injected",
        "resilient.fallback_used",
        "resilient.config_reloaded",
        "resilient.gate_closing",
        "resilient.gate_closed",
    } <= kinds
    messages = {
        r.getMessage().split(" ")[0] + " " + r.getMessage().split(" ")[1] for r in resilient_log.records
    }
    assert {"rate limiter", "hedge 'replicas'", "chaos 'flaky'", "gate_closed svc"} <= messages
    samples = [line for line in generate_latest(registry).decode().splitlines() if not line.startswith("#")]
    for metric, labels in (
        ("resilient_rejections_total", ['name="api"', 'policy="rate_limiter"']),
        ("resilient_hedges_total", ['name="replicas"', 'reason="delay"']),
        ("resilient_chaos_injections_total", ['kind="fault"', 'name="flaky"']),
        ("resilient_calls_total", ['item="1"', 'outcome="success"']),  # an attribute set inside an attempt
        ("resilient_calls_total", ['outcome="fallback"']),
        ("resilient_calls_total", ["fetch_sync", 'outcome="failure"']),
    ):
        assert any(s.startswith(metric + "{") and all(x in s for x in labels) for s in samples), (
            metric,
            labels,
        )
    data = reader.get_metrics_data()
    assert data is not None
    names = {m.name for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
    assert {
        "resilient.rejections",
        "resilient.hedges",
        "resilient.chaos.injections",
        "resilient.calls",
    } <= names
    spans = exporter.get_finished_spans()
    assert len(spans) == 8 + 10  # one per call: the async ones and the thread's
    assert all(s.end_time is not None for s in spans)
