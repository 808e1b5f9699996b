"""Black-box contract checks of API.md section 7 (adapters) and the Redis backend (issues 4 and 5)."""

from __future__ import annotations

import asyncio
import logging
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis
import redis.asyncio
import structlog
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from prometheus_client import CollectorRegistry, generate_latest
from structlog.testing import capture_logs

import resilient
from resilient import CircuitOpenError, CircuitState, EventBus, Subscription
from resilient.adapters.logging import LoggingAdapter
from resilient.adapters.opentelemetry import OpenTelemetryAdapter
from resilient.adapters.prometheus import PrometheusAdapter
from resilient.adapters.structlog import StructlogAdapter
from resilient.backends.redis import RedisBackend
from resilient.events import BackendDegraded, BackendRecovered, Event, default_bus
from resilient.testing import FakeClock

ADAPTERS = ["logging", "structlog", "prometheus", "opentelemetry"]


def make_adapter(kind: str) -> Any:
    """Build one adapter of *kind* on private sinks."""
    if kind == "logging":
        return LoggingAdapter(logging.getLogger("contract.adapters"))
    if kind == "structlog":
        return StructlogAdapter()
    if kind == "prometheus":
        return PrometheusAdapter(CollectorRegistry())
    return OpenTelemetryAdapter(
        meter_provider=MeterProvider(shutdown_on_exit=False),
        tracer_provider=TracerProvider(shutdown_on_exit=False),
    )


class Flaky:
    """A callable failing with ``ConnectionError('refused')`` for its first *failures* calls."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError("refused")
        return "ok"


def guarded(failures: int, *policies: resilient.Policy, bus: EventBus) -> Any:
    """Return ``fetch_user`` behind *policies*, failing *failures* times."""
    flaky = Flaky(failures)

    async def fetch_user() -> str:
        return await flaky()

    fetch_user.__qualname__ = "fetch_user"
    return resilient.pipeline(*policies, bus=bus)(fetch_user)


def run_quiet(fn: Any) -> Any:
    """Run the coroutine function *fn*; return its result or its exception."""
    try:
        return asyncio.run(fn())
    except Exception as exc:
        return exc


# --- imports -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "module",
    ["resilient", "resilient.adapters", "resilient.adapters.prometheus", "resilient.adapters.opentelemetry"],
)
def test_import_is_lazy(module: str) -> None:
    """Importing resilient (or an adapter module) imports no optional dependency."""
    code = (
        f"import sys, {module}\n"
        "bad = [m for m in ('structlog', 'prometheus_client', 'opentelemetry', 'redis') if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


# --- attach / detach ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", ADAPTERS)
def test_attach_returns_subscription_on_default_bus(kind: str) -> None:
    """attach() with no bus subscribes to the default bus and returns a Subscription."""
    sub = make_adapter(kind).attach()
    assert isinstance(sub, Subscription)
    fn = guarded(1, resilient.retry(attempts=2, backoff=0.0), bus=default_bus)
    with capture_logs() as logs:
        assert asyncio.run(fn()) == "ok"
    sub.unsubscribe()
    if kind == "structlog":
        assert any(e["event"] == "resilient.retry_scheduled" for e in logs)


def test_structlog_detached_logs_nothing() -> None:
    """After leaving the attach() with block, the structlog adapter logs nothing."""
    bus = EventBus()
    with StructlogAdapter().attach(bus):
        pass
    with capture_logs() as logs:
        asyncio.run(guarded(1, resilient.retry(attempts=2, backoff=0.0, bus=bus), bus=bus)())
    assert logs == []


def test_logging_detached_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    """A detached LoggingAdapter writes no record."""
    bus = EventBus()
    sub = LoggingAdapter().attach(bus)
    sub.unsubscribe()
    caplog.set_level(logging.DEBUG, logger="resilient")
    asyncio.run(guarded(1, resilient.retry(attempts=2, backoff=0.0, bus=bus), bus=bus)())
    assert [r for r in caplog.records if r.name == "resilient"] == []


def test_prometheus_detached_counts_nothing() -> None:
    """A detached PrometheusAdapter's counters do not move."""
    registry, bus = CollectorRegistry(), EventBus()
    PrometheusAdapter(registry).attach(bus).unsubscribe()
    asyncio.run(guarded(1, resilient.retry(attempts=2, backoff=0.0, bus=bus), bus=bus)())
    assert "resilient_retries_total{" not in generate_latest(registry).decode()


def test_custom_bus_isolated_from_default_bus() -> None:
    """An adapter attached to a custom bus never sees the default bus's events."""
    registry = CollectorRegistry()
    PrometheusAdapter(registry).attach(EventBus())
    asyncio.run(guarded(1, resilient.retry(attempts=2, backoff=0.0), bus=default_bus)())
    assert "resilient_retries_total{" not in generate_latest(registry).decode()


def test_two_adapters_at_once(caplog: pytest.LogCaptureFixture) -> None:
    """Logging and Prometheus adapters on one bus both see the same retry."""
    registry, bus = CollectorRegistry(), EventBus()
    caplog.set_level(logging.WARNING, logger="resilient")
    with LoggingAdapter().attach(bus), PrometheusAdapter(registry).attach(bus):
        asyncio.run(guarded(1, resilient.retry(attempts=3, backoff=0.0, bus=bus), bus=bus)())
    assert any(r.getMessage().startswith("retrying fetch_user") for r in caplog.records)
    assert 'resilient_retries_total{name="",operation="' in generate_latest(registry).decode()


def test_two_prometheus_adapters_same_registry() -> None:
    """Two PrometheusAdapters on one registry never raise 'duplicated timeseries'."""
    registry = CollectorRegistry()
    PrometheusAdapter(registry)
    PrometheusAdapter(registry)


def test_raising_handler_does_not_stop_adapter(caplog: pytest.LogCaptureFixture) -> None:
    """A user handler that raises neither changes the outcome nor stops a later adapter."""
    registry, bus = CollectorRegistry(), EventBus()

    def boom(event: Event) -> None:
        raise RuntimeError("handler bug")

    resilient.subscribe(boom, bus=bus)
    PrometheusAdapter(registry).attach(bus)
    assert asyncio.run(guarded(1, resilient.retry(attempts=2, backoff=0.0, bus=bus), bus=bus)()) == "ok"
    assert "resilient_retries_total{" in generate_latest(registry).decode()
    assert any("handler bug" in r.getMessage() or r.exc_info for r in caplog.records)


def test_broken_adapter_sink_never_changes_outcome() -> None:
    """A structlog logger that raises is contained by the bus: the call still succeeds."""
    bus = EventBus()

    class Broken:
        def __getattr__(self, name: str) -> Any:
            def fail(*args: object, **kwargs: object) -> None:
                raise OSError("disk full")

            return fail

    StructlogAdapter(logger=Broken()).attach(bus)
    seen: list[Event] = []
    resilient.subscribe(seen.append, bus=bus)
    assert asyncio.run(guarded(1, resilient.retry(attempts=2, backoff=0.0, bus=bus), bus=bus)()) == "ok"
    assert seen


# --- logging -----------------------------------------------------------------------------


def resilient_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """Return the records written on the ``resilient`` logger."""
    return [r for r in caplog.records if r.name == "resilient"]


def test_logging_retry_message_exact(caplog: pytest.LogCaptureFixture) -> None:
    """The retry message reads exactly as in issue 4, at WARNING, on the resilient logger."""
    bus = EventBus()
    caplog.set_level(logging.DEBUG, logger="resilient")
    LoggingAdapter().attach(bus)
    fn = guarded(1, resilient.retry(attempts=3, backoff=0.21, clock=FakeClock(), bus=bus), bus=bus)
    asyncio.run(fn())
    (warn,) = [r for r in resilient_records(caplog) if r.levelno == logging.WARNING]
    assert warn.getMessage() == "retrying fetch_user in 0.21s (attempt 2/3) after ConnectionError('refused')"
    assert warn.resilient_attempt == 1  # type: ignore[attr-defined]
    assert warn.resilient_delay == 0.21  # type: ignore[attr-defined]


def test_logging_success_is_debug(caplog: pytest.LogCaptureFixture) -> None:
    """With the logger at DEBUG when attaching, a success is one DEBUG record."""
    bus = EventBus()
    caplog.set_level(logging.DEBUG, logger="resilient")
    LoggingAdapter().attach(bus)
    asyncio.run(guarded(0, resilient.retry(attempts=2, bus=bus), bus=bus)())
    assert [r.levelno for r in resilient_records(caplog)] == [logging.DEBUG]


def test_logging_breaker_open_and_rejection_are_warnings(caplog: pytest.LogCaptureFixture) -> None:
    """A breaker opening and then rejecting logs both at WARNING."""
    bus = EventBus()
    caplog.set_level(logging.DEBUG, logger="resilient")
    LoggingAdapter().attach(bus)
    breaker = resilient.circuit_breaker(failure_threshold=1, name="pay", clock=FakeClock(), bus=bus)
    fn = guarded(5, breaker, bus=bus)
    run_quiet(fn)
    run_quiet(fn)
    kinds = {r.resilient_event: r.levelno for r in resilient_records(caplog)}  # type: ignore[attr-defined]
    assert kinds["circuit_opened"] == logging.WARNING
    assert kinds["circuit_rejected"] == logging.WARNING


def test_logging_levels_configurable_and_given_logger(caplog: pytest.LogCaptureFixture) -> None:
    """A given logger and a custom level per event kind are honoured."""
    from resilient.events import RetryScheduled

    bus = EventBus()
    caplog.set_level(logging.DEBUG, logger="app.res")
    LoggingAdapter(logging.getLogger("app.res"), levels={RetryScheduled: logging.ERROR}).attach(bus)
    asyncio.run(guarded(1, resilient.retry(attempts=2, backoff=0.0, bus=bus), bus=bus)())
    retry_records = [r for r in caplog.records if r.name == "app.res" and r.levelno == logging.ERROR]
    assert len(retry_records) == 1
    assert retry_records[0].getMessage().startswith("retrying fetch_user")


# --- structlog ---------------------------------------------------------------------------


def test_structlog_event_names_and_flat_fields() -> None:
    """Each event kind has its own event name and only flat (scalar) values."""
    bus = EventBus()
    StructlogAdapter().attach(bus)
    clock = FakeClock()
    fn = guarded(
        9,
        resilient.fallback("dflt", bus=bus),
        resilient.retry(attempts=2, backoff=0.5, clock=clock, bus=bus),
        bus=bus,
    )
    with capture_logs() as logs:
        assert asyncio.run(fn()) == "dflt"
    names = [e["event"] for e in logs]
    for expected in ("resilient.retry_scheduled", "resilient.retries_exhausted", "resilient.fallback_used"):
        assert expected in names
    for entry in logs:
        for value in entry.values():
            assert value is None or isinstance(value, str | int | float | bool)


# --- prometheus --------------------------------------------------------------------------


def prom_text(failures: int, *policies: resilient.Policy, bus: EventBus, registry: CollectorRegistry) -> str:
    """Run fetch_user once behind *policies* and return the exposition text."""
    run_quiet(guarded(failures, *policies, bus=bus))
    return generate_latest(registry).decode()


def test_prometheus_calls_retries_duration() -> None:
    """Success/failure counters, retries, exhaustion and the duration histogram appear with names."""
    registry, bus, clock = CollectorRegistry(), EventBus(), FakeClock()
    PrometheusAdapter(registry).attach(bus)
    prom_text(1, resilient.retry(attempts=3, backoff=0.1, clock=clock, bus=bus), bus=bus, registry=registry)
    text = prom_text(
        9, resilient.retry(attempts=2, backoff=0.1, clock=clock, bus=bus), bus=bus, registry=registry
    )
    assert 'resilient_calls_total{name="",operation="fetch_user",outcome="success"} 1.0' in text
    assert 'resilient_calls_total{name="",operation="fetch_user",outcome="failure"} 1.0' in text
    assert 'resilient_retries_total{name="",operation="fetch_user"} 2.0' in text
    assert 'resilient_retries_exhausted_total{name="",operation="fetch_user",reason="attempts"} 1.0' in text
    assert "resilient_call_duration_seconds_bucket{" in text


def test_prometheus_rejections_fallbacks_timeouts_circuit_state() -> None:
    """Rejections by policy, fallbacks, timeouts and the circuit state gauge are exposed."""
    registry, bus, clock = CollectorRegistry(), EventBus(), FakeClock()
    PrometheusAdapter(registry).attach(bus)
    breaker = resilient.circuit_breaker(failure_threshold=1, name="pay", clock=clock, bus=bus)
    prom_text(5, breaker, bus=bus, registry=registry)
    prom_text(5, resilient.fallback(None, bus=bus), breaker, bus=bus, registry=registry)
    text = generate_latest(registry).decode()
    assert (
        'resilient_rejections_total{name="pay",operation="fetch_user",policy="circuit_breaker"} 1.0' in text
    )
    assert 'resilient_fallbacks_total{name="",operation="fetch_user"} 1.0' in text
    assert 'resilient_circuit_state{name="pay",state="open"} 1.0' in text
    assert 'resilient_circuit_state{name="pay",state="closed"} 0.0' in text


def test_prometheus_timeouts_counted() -> None:
    """A timeout that fires moves resilient_timeouts_total."""
    registry, bus, clock = CollectorRegistry(), EventBus(), FakeClock()
    PrometheusAdapter(registry).attach(bus)

    async def slow() -> None:
        await clock.sleep(5)

    run_quiet(resilient.timeout(1, clock=clock, bus=bus, name="t")(slow))
    assert 'resilient_timeouts_total{name="t",operation="' in generate_latest(registry).decode()


def test_prometheus_labels_never_hold_exception_messages() -> None:
    """An exception message (unbounded) never becomes a label value."""
    registry, bus = CollectorRegistry(), EventBus()
    PrometheusAdapter(registry).attach(bus)
    for i in range(3):

        async def fail(i: int = i) -> None:
            raise ValueError(f"secret-{i}")

        run_quiet(resilient.retry(attempts=2, backoff=0.0, bus=bus)(fail))
    text = generate_latest(registry).decode()
    assert "secret" not in text
    assert "ValueError" not in text


def test_prometheus_custom_namespace() -> None:
    """namespace= prefixes every metric name."""
    registry, bus = CollectorRegistry(), EventBus()
    PrometheusAdapter(registry, namespace="shop").attach(bus)
    text = prom_text(0, resilient.retry(bus=bus), bus=bus, registry=registry)
    assert 'shop_calls_total{name="",operation="fetch_user",outcome="success"} 1.0' in text
    assert "resilient_calls_total" not in text


async def test_prometheus_bulkhead_in_use_gauge() -> None:
    """A tracked bulkhead's in-use gauge shows a running call."""
    registry = CollectorRegistry()
    adapter = PrometheusAdapter(registry)
    pool = resilient.bulkhead(2, name="db")
    adapter.track_bulkhead(pool)
    entered, release = asyncio.Event(), asyncio.Event()

    @pool
    async def work() -> None:
        entered.set()
        await release.wait()

    task = asyncio.create_task(work())
    await entered.wait()
    assert 'resilient_bulkhead_in_use{name="db"} 1.0' in generate_latest(registry).decode()
    release.set()
    await task
    assert 'resilient_bulkhead_in_use{name="db"} 0.0' in generate_latest(registry).decode()
