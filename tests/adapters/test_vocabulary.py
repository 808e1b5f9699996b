"""One metric vocabulary: the Prometheus adapter and OpenTelemetry exported to Prometheus agree."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import resilient
from resilient.adapters.opentelemetry import OpenTelemetryAdapter
from resilient.adapters.prometheus import PrometheusAdapter
from resilient.events import BackendDegraded, BackendStateLost, EventBus
from resilient.testing import FakeClock

Family = tuple[str, frozenset[str]]
Sample = tuple[str, frozenset[tuple[str, str]], float]

# What the OpenTelemetry exporter adds on its own: the instrumentation scope on every series.
EXPORTER_LABELS = frozenset({"otel_scope_name", "otel_scope_version", "otel_scope_schema_url"})


def exposition(registry: CollectorRegistry) -> tuple[dict[str, Family], set[Sample]]:
    """Parse a registry's exposition: family -> (type, label names), and every sample but `_created`."""
    families: dict[str, Family] = {}
    samples: set[Sample] = set()
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        if family.name.endswith("_created") or not family.samples:
            # prometheus_client's creation timestamps (the OTel exporter has none), and
            # families without samples (the OTel exporter leaves out instruments with no data).
            continue
        names: set[str] = set()
        for s in family.samples:
            labels = {k: v for k, v in s.labels.items() if k not in EXPORTER_LABELS}
            names.update(k for k in labels if k != "le")
            samples.add((s.name, frozenset(labels.items()), s.value))
        families[family.name] = (family.type, frozenset(names))
    return families, samples


@pytest.fixture
def both(
    bus: EventBus,
) -> Iterator[tuple[CollectorRegistry, CollectorRegistry, PrometheusAdapter, OpenTelemetryAdapter]]:
    """A PrometheusAdapter and an OpenTelemetryAdapter (metrics, Prometheus exporter) on one bus."""
    native, via_otel = CollectorRegistry(), CollectorRegistry()
    prom = PrometheusAdapter(native, metric_attributes=["server.address"])
    prom.attach(bus)
    provider = MeterProvider(
        metric_readers=[PrometheusMetricReader(disable_target_info=True, registry=via_otel)]
    )
    otel = OpenTelemetryAdapter(meter_provider=provider, traces=False, metric_attributes=["server.address"])
    otel.attach(bus)
    yield native, via_otel, prom, otel
    provider.shutdown()


def workload(bus: EventBus, clock: FakeClock, *adapters: Any) -> tuple[object, ...]:
    """Exercise every metric: outcomes, retries, timeouts, rejections, breakers, bulkheads, backends."""
    breaker = resilient.circuit_breaker(failure_threshold=1, name="payments", clock=clock, bus=bus)
    pool = resilient.bulkhead(1, name="db", clock=clock, bus=bus)
    for adapter in adapters:
        adapter.track_circuit_breaker(breaker)
        adapter.track_bulkhead(pool)
    host = {"server.address": "api.example.com"}

    def guarded(*policies: resilient.Policy) -> Any:
        return resilient.pipeline(*policies, bus=bus, attributes=lambda answers: host)

    async def fetch(answers: list[Any]) -> str:
        answer = answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        if answer == "sleep":
            await clock.sleep(10)  # virtual: a timeout of 1 s on the same clock fires
        elif answer == "hang":
            await asyncio.Event().wait()  # holds a bulkhead slot until cancelled
        return str(answer)

    async def scenario() -> None:
        retrying = guarded(resilient.retry(attempts=2, backoff=0.25, name="r", clock=clock, bus=bus))(fetch)
        await retrying([ConnectionError(), "ok"])  # success after a retry
        with pytest.raises(ConnectionError):
            await retrying([ConnectionError(), ConnectionError()])  # exhausted: failure
        assert await guarded(resilient.fallback("cached", bus=bus))(fetch)([KeyError()]) == "cached"
        with pytest.raises(TimeoutError):
            await guarded(resilient.timeout(1, name="t", clock=clock, bus=bus))(fetch)(["sleep"])
        broken = guarded(breaker)(fetch)
        with pytest.raises(ConnectionError):
            await broken([ConnectionError()])
        with pytest.raises(resilient.CircuitOpenError):
            await broken(["ok"])
        limited = guarded(pool)(fetch)
        holder = asyncio.create_task(limited(["hang"]))
        await asyncio.sleep(0)
        with pytest.raises(resilient.BulkheadFullError):
            await limited(["ok"])
        holder.cancel()  # cancelled: counted with outcome "cancelled"
        with pytest.raises(asyncio.CancelledError):
            await holder

    asyncio.run(scenario())
    bus.emit(
        BackendDegraded(
            policy="circuit_breaker",
            name="payments",
            operation=None,
            time=0.0,
            backend="redis",
            exception=None,
        )
    )
    bus.emit(
        BackendStateLost(
            policy="circuit_breaker",
            name="payments",
            operation=None,
            time=0.0,
            backend="redis",
            previous=resilient.CircuitState.OPEN,
            state=resilient.CircuitState.CLOSED,
        )
    )
    return breaker, pool  # tracked weakly: the caller keeps them alive


EXPECTED_FAMILIES = {
    "resilient_calls": ("counter", {"operation", "name", "outcome", "server_address"}),
    "resilient_call_duration_seconds": (
        "histogram",
        {"operation", "name", "outcome", "error_type", "server_address"},
    ),
    "resilient_retries": ("counter", {"operation", "name", "server_address"}),
    "resilient_retries_exhausted": ("counter", {"operation", "name", "reason", "server_address"}),
    "resilient_timeouts": ("counter", {"operation", "name", "server_address"}),
    "resilient_rejections": ("counter", {"operation", "name", "policy", "server_address"}),
    "resilient_fallbacks": ("counter", {"operation", "name", "server_address"}),
    "resilient_circuit_transitions": ("counter", {"name", "state"}),
    "resilient_circuit_state": ("gauge", {"name", "state"}),
    "resilient_bulkhead_in_use": ("gauge", {"name"}),
    "resilient_bulkhead_queued": ("gauge", {"name"}),
    "resilient_bulkhead_max_concurrent": ("gauge", {"name"}),
    "resilient_backend_degraded": ("gauge", {"policy", "name"}),
    "resilient_backend_state_lost": ("counter", {"policy", "name"}),
}


def test_both_exports_have_the_same_names_and_labels(bus: EventBus, clock: FakeClock, both: Any) -> None:
    """Every metric family has the same name, type and label names on both paths: the diff is empty."""
    native, via_otel, prom, otel = both
    tracked = workload(bus, clock, prom, otel)
    native_families, _ = exposition(native)
    otel_families, _ = exposition(via_otel)
    del tracked
    diff = set(native_families.items()) ^ set(otel_families.items())
    assert (diff, native_families) == (
        set(),
        {k: (t, frozenset(labels)) for k, (t, labels) in EXPECTED_FAMILIES.items()},
    )


def test_both_exports_have_the_same_samples(bus: EventBus, clock: FakeClock, both: Any) -> None:
    """Beyond names and labels, both paths export the same series with the same values (buckets included)."""
    native, via_otel, prom, otel = both
    tracked = workload(bus, clock, prom, otel)
    _, native_samples = exposition(native)
    _, otel_samples = exposition(via_otel)
    del tracked
    assert native_samples ^ otel_samples == set()


def test_outcomes_in_the_shared_vocabulary(bus: EventBus, clock: FakeClock, both: Any) -> None:
    """Calls count as success, fallback, failure or cancelled; failures and cancellations name their type."""
    native, _, prom, otel = both
    tracked = workload(bus, clock, prom, otel)
    _, samples = exposition(native)
    del tracked
    outcomes = {
        (dict(labels)["outcome"], dict(labels)["error_type"])
        for name, labels, _ in samples
        if name == "resilient_call_duration_seconds_count"
    }
    assert outcomes == {
        ("success", ""),
        ("fallback", ""),
        ("failure", "ConnectionError"),
        ("failure", "resilient.TimeoutExceededError"),
        ("failure", "resilient.CircuitOpenError"),
        ("failure", "resilient.BulkheadFullError"),
        ("cancelled", "asyncio.exceptions.CancelledError"),
    }


def test_operation_label_is_module_qualified(bus: EventBus, clock: FakeClock, both: Any) -> None:
    """The operation label is the module-qualified function name, so same-named functions never collide."""
    native, _, prom, otel = both
    tracked = workload(bus, clock, prom, otel)
    _, samples = exposition(native)
    del tracked
    operations = {dict(labels)["operation"] for name, labels, _ in samples if name == "resilient_calls_total"}
    assert operations == {f"{__name__}.workload.<locals>.fetch"}
