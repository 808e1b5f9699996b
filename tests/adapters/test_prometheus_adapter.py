"""PrometheusAdapter, checked through the exposition text of a real CollectorRegistry."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import resilient
import resilient.testing
from resilient import CircuitOpenError, CircuitState
from resilient.adapters.prometheus import PrometheusAdapter
from resilient.events import BackendDegraded, BackendRecovered, BackendStateLost, EventBus
from resilient.testing import FakeClock

Runner = Callable[..., Any]


@pytest.fixture
def registry() -> CollectorRegistry:
    """A private registry."""
    return CollectorRegistry()


@pytest.fixture
def adapter(registry: CollectorRegistry, bus: EventBus) -> PrometheusAdapter:
    """An adapter on the private registry, attached to the test's bus."""
    a = PrometheusAdapter(registry)
    a.attach(bus)
    return a


def scrape(registry: CollectorRegistry) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Parse ``generate_latest(registry)`` into {(sample name, labels): value}."""
    text = generate_latest(registry).decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def full(fn: Callable[..., Any]) -> str:
    """The operation label of a guarded function: its module-qualified name."""
    return f"{fn.__module__}.{fn.__qualname__}"


def value(registry: CollectorRegistry, metric: str, /, **labels: str) -> float | None:
    """One sample's value from the exposition text, or None if absent."""
    return scrape(registry).get((metric, frozenset(labels.items())))


def test_success_counted(
    run_guarded: Runner,
    clock: FakeClock,
    bus: EventBus,
    adapter: PrometheusAdapter,
    registry: CollectorRegistry,
) -> None:
    """A successful call increments calls_total with outcome="success"."""
    run_guarded(0, resilient.retry(clock=clock, bus=bus))
    assert (
        value(registry, "resilient_calls_total", operation="app.fetch_user", name="", outcome="success")
        == 1.0
    )


def test_failure_counted(
    run_guarded: Runner,
    clock: FakeClock,
    bus: EventBus,
    adapter: PrometheusAdapter,
    registry: CollectorRegistry,
) -> None:
    """A call that raises increments calls_total with outcome="failure"."""
    assert isinstance(
        run_guarded(5, resilient.retry(attempts=2, backoff=0.1, clock=clock, bus=bus)), ConnectionError
    )
    assert (
        value(registry, "resilient_calls_total", operation="app.fetch_user", name="", outcome="failure")
        == 1.0
    )


def test_duration_histogram(
    run_guarded: Runner,
    clock: FakeClock,
    bus: EventBus,
    adapter: PrometheusAdapter,
    registry: CollectorRegistry,
) -> None:
    """The call duration (virtual time spent in backoff) lands in the histogram."""
    run_guarded(2, resilient.retry(attempts=3, backoff=0.2, clock=clock, bus=bus))
    labels = {"operation": "app.fetch_user", "name": "", "outcome": "success", "error_type": ""}
    found: tuple[Any, ...] = (
        value(registry, "resilient_call_duration_seconds_count", **labels),
        value(registry, "resilient_call_duration_seconds_sum", **labels),
        value(registry, "resilient_call_duration_seconds_bucket", le="0.5", **labels),
        value(registry, "resilient_call_duration_seconds_bucket", le="0.25", **labels),
    )
    assert found == (1.0, pytest.approx(0.4), 1.0, 0.0)


def test_retries_and_exhaustion(
    run_guarded: Runner,
    clock: FakeClock,
    bus: EventBus,
    adapter: PrometheusAdapter,
    registry: CollectorRegistry,
) -> None:
    """Each scheduled retry counts once; giving up counts with its reason."""
    run_guarded(5, resilient.retry(attempts=3, backoff=0.1, name="db", clock=clock, bus=bus))
    assert (
        value(registry, "resilient_retries_total", operation="app.fetch_user", name="db"),
        value(
            registry,
            "resilient_retries_exhausted_total",
            operation="app.fetch_user",
            name="db",
            reason="attempts",
        ),
    ) == (2.0, 1.0)


def test_fallback_counted(
    run_guarded: Runner,
    clock: FakeClock,
    bus: EventBus,
    adapter: PrometheusAdapter,
    registry: CollectorRegistry,
) -> None:
    """A failure replaced by a fallback counts in fallbacks_total, and the call with outcome "fallback"."""
    assert run_guarded(1, resilient.fallback("cached", bus=bus)) == "cached"
    assert (
        value(registry, "resilient_fallbacks_total", operation="app.fetch_user", name=""),
        value(registry, "resilient_calls_total", operation="app.fetch_user", name="", outcome="fallback"),
        value(registry, "resilient_calls_total", operation="app.fetch_user", name="", outcome="success"),
    ) == (1.0, 1.0, None)


async def test_timeout_counted(
    clock: FakeClock, bus: EventBus, adapter: PrometheusAdapter, registry: CollectorRegistry
) -> None:
    """An expired timeout increments timeouts_total."""

    @resilient.timeout(1.0, name="t", clock=clock, bus=bus)
    async def slow() -> None:
        await clock.sleep(5)

    with pytest.raises(TimeoutError):
        await slow()
    assert value(registry, "resilient_timeouts_total", operation=full(slow), name="t") == 1.0


def test_circuit_breaker_rejection_and_state(
    clock: FakeClock, bus: EventBus, adapter: PrometheusAdapter, registry: CollectorRegistry
) -> None:
    """An opened breaker shows state open=1 and counts its rejection by policy."""
    breaker = resilient.circuit_breaker(failure_threshold=1, name="payments", clock=clock, bus=bus)

    @breaker
    def charge() -> None:
        raise ConnectionError("refused")

    with pytest.raises(ConnectionError):
        charge()
    with pytest.raises(CircuitOpenError):
        charge()
    op = full(charge)
    assert (
        value(
            registry, "resilient_rejections_total", operation=op, name="payments", policy="circuit_breaker"
        ),
        value(registry, "resilient_circuit_state", name="payments", state="open"),
        value(registry, "resilient_circuit_state", name="payments", state="closed"),
        value(registry, "resilient_circuit_transitions_total", name="payments", state="open"),
    ) == (1.0, 1.0, 0.0, 1.0)


def test_bulkhead_rejection_counted(
    clock: FakeClock, bus: EventBus, adapter: PrometheusAdapter, registry: CollectorRegistry
) -> None:
    """A full bulkhead's rejection counts with policy="bulkhead"."""
    pool = resilient.bulkhead(1, name="db", clock=clock, bus=bus)

    async def scenario() -> None:
        gate = asyncio.Event()

        @pool
        async def query() -> None:
            await gate.wait()

        first = asyncio.create_task(query())
        await asyncio.sleep(0)
        with pytest.raises(resilient.BulkheadFullError):
            await query()
        gate.set()
        await first

    asyncio.run(scenario())
    found = [v for (n, labels), v in scrape(registry).items() if n == "resilient_rejections_total"]
    assert found == [1.0]


def test_tracked_bulkhead_in_use(registry: CollectorRegistry, bus: EventBus) -> None:
    """A tracked bulkhead's in_use, queued and capacity are read at scrape time."""
    adapter = PrometheusAdapter(registry)
    pool = resilient.bulkhead(3, max_queue=5, name="db", bus=bus)
    adapter.track_bulkhead(pool)
    seen: list[tuple[float | None, ...]] = []

    async def scenario() -> None:
        @pool
        async def query() -> None:
            seen.append(
                (
                    value(registry, "resilient_bulkhead_in_use", name="db"),
                    value(registry, "resilient_bulkhead_queued", name="db"),
                    value(registry, "resilient_bulkhead_max_concurrent", name="db"),
                )
            )

        await query()

    asyncio.run(scenario())
    assert seen == [(1.0, 0.0, 3.0)]


def test_tracked_bulkhead_needs_a_name(registry: CollectorRegistry) -> None:
    """An unnamed bulkhead cannot be tracked: its name is the label."""
    with pytest.raises(ValueError, match="name"):
        PrometheusAdapter(registry).track_bulkhead(resilient.bulkhead(1))


def test_tracked_object_without_in_use(registry: CollectorRegistry) -> None:
    """Tracking something that is not a bulkhead fails with TypeError."""
    with pytest.raises(TypeError, match="in_use"):
        PrometheusAdapter(registry).track_bulkhead(object())


def test_retracking_a_name_replaces_the_earlier_bulkhead(registry: CollectorRegistry) -> None:
    """A rebuilt bulkhead tracked under a taken name replaces the old one, alive or not (no GC race)."""
    adapter = PrometheusAdapter(registry)
    first = resilient.bulkhead(1, name="db")
    adapter.track_bulkhead(first)
    rebuilt = resilient.bulkhead(7, name="db")
    adapter.track_bulkhead(rebuilt)  # `first` is still alive
    assert value(registry, "resilient_bulkhead_max_concurrent", name="db") == 7.0


def test_retracking_a_rebuilt_breaker_replaces_it(registry: CollectorRegistry) -> None:
    """Tracking a rebuilt breaker under the old one's name never raises; the new one is reported."""
    adapter = PrometheusAdapter(registry)
    old = resilient.circuit_breaker(name="payments")
    old.isolate()
    adapter.track_circuit_breaker(old)
    rebuilt = resilient.circuit_breaker(name="payments")
    adapter.track_circuit_breaker(rebuilt)  # `old` is still alive
    assert value(registry, "resilient_circuit_state", name="payments", state="closed") == 1.0


def test_scrape_never_moves_a_breaker(registry: CollectorRegistry, clock: FakeClock, bus: EventBus) -> None:
    """Scraping an OPEN breaker past its recovery timeout reports half_open, emits and moves nothing."""
    adapter = PrometheusAdapter(registry)
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
        reported = value(registry, "resilient_circuit_state", name="payments", state="half_open")
    assert (reported, events, breaker.stats().state) == (1.0, [], CircuitState.OPEN)


def test_tracked_bulkhead_is_held_weakly(registry: CollectorRegistry) -> None:
    """A tracked bulkhead that is garbage-collected disappears from the metrics."""
    adapter = PrometheusAdapter(registry)
    pool = resilient.bulkhead(2, name="tmp")
    adapter.track_bulkhead(pool)
    del pool
    gc.collect()
    assert value(registry, "resilient_bulkhead_in_use", name="tmp") is None


def test_tracked_breaker_reports_before_any_transition(registry: CollectorRegistry) -> None:
    """A tracked breaker shows closed=1 before it ever changes state."""
    adapter = PrometheusAdapter(registry)
    breaker = resilient.circuit_breaker(name="payments")
    adapter.track_circuit_breaker(breaker)
    assert value(registry, "resilient_circuit_state", name="payments", state="closed") == 1.0


def test_backend_degraded_gauge(registry: CollectorRegistry, bus: EventBus) -> None:
    """BackendDegraded sets the gauge to 1 and BackendRecovered back to 0."""
    PrometheusAdapter(registry).attach(bus)
    common: dict[str, Any] = {"policy": "circuit_breaker", "name": "p", "operation": None, "time": 0.0}
    common["backend"] = "redis"
    bus.emit(BackendDegraded(**common, exception=None))
    degraded = value(registry, "resilient_backend_degraded", policy="circuit_breaker", name="p")
    bus.emit(BackendRecovered(**common))
    assert (degraded, value(registry, "resilient_backend_degraded", policy="circuit_breaker", name="p")) == (
        1.0,
        0.0,
    )


def test_backend_state_lost_counter(registry: CollectorRegistry, bus: EventBus) -> None:
    """Each BackendStateLost counts once by policy and name; attaching subscribes to it (so it is emitted)."""
    PrometheusAdapter(registry).attach(bus)
    assert bus.wants(BackendStateLost)
    lost = BackendStateLost(
        policy="circuit_breaker",
        name="p",
        operation=None,
        time=0.0,
        backend="redis",
        previous=CircuitState.OPEN,
        state=CircuitState.CLOSED,
    )
    bus.emit(lost)
    bus.emit(lost)
    assert value(registry, "resilient_backend_state_lost_total", policy="circuit_breaker", name="p") == 2.0


def test_exception_messages_never_become_labels(
    run_guarded: Runner,
    clock: FakeClock,
    bus: EventBus,
    adapter: PrometheusAdapter,
    registry: CollectorRegistry,
) -> None:
    """No label value carries an exception's message or type."""
    run_guarded(
        5, resilient.fallback(None, bus=bus), resilient.retry(attempts=2, backoff=0.1, clock=clock, bus=bus)
    )
    text = generate_latest(registry).decode()
    assert ("refused" in text, "ConnectionError" in text) == (False, False)


def test_adapters_share_metrics_on_one_registry(registry: CollectorRegistry, bus: EventBus) -> None:
    """A second adapter on the same registry reuses the metrics instead of raising."""
    PrometheusAdapter(registry).attach(bus)
    PrometheusAdapter(registry)
    bus.emit(
        resilient.events.TimeoutElapsed(policy="timeout", name=None, operation="f", time=0.0, seconds=1.0)
    )
    assert value(registry, "resilient_timeouts_total", operation="f", name="") == 1.0


def test_custom_namespace(registry: CollectorRegistry, bus: EventBus) -> None:
    """The namespace prefixes every metric name."""
    PrometheusAdapter(registry, namespace="myapp").attach(bus)
    bus.emit(
        resilient.events.TimeoutElapsed(policy="timeout", name=None, operation="f", time=0.0, seconds=1.0)
    )
    assert value(registry, "myapp_timeouts_total", operation="f", name="") == 1.0


def test_custom_buckets(registry: CollectorRegistry, bus: EventBus) -> None:
    """Custom buckets shape the duration histogram."""
    PrometheusAdapter(registry, buckets=[1.0, 60.0]).attach(bus)
    bus.emit(
        resilient.events.CallSucceeded(policy="pipeline", name=None, operation="f", time=0.0, duration=30.0)
    )
    assert (
        value(
            registry,
            "resilient_call_duration_seconds_bucket",
            operation="f",
            name="",
            outcome="success",
            error_type="",
            le="60.0",
        )
        == 1.0
    )


@pytest.mark.parametrize(
    ("kwargs", "error", "param"),
    [
        ({"namespace": "my-app"}, ValueError, "namespace"),
        ({"namespace": 3}, TypeError, "namespace"),
        ({"registry": object()}, TypeError, "registry"),
        ({"buckets": [2.0, 1.0]}, ValueError, "buckets"),
        ({"buckets": []}, ValueError, "buckets"),
        ({"buckets": ["1"]}, TypeError, "buckets"),
        ({"buckets": [-1.0]}, ValueError, "buckets"),
    ],
)
def test_bad_configuration(kwargs: dict[str, Any], error: type[Exception], param: str) -> None:
    """Bad configuration fails at construction, naming the parameter."""
    kwargs.setdefault("registry", CollectorRegistry())
    with pytest.raises(error, match=param):
        PrometheusAdapter(**kwargs)


def test_other_buckets_for_an_existing_namespace(registry: CollectorRegistry) -> None:
    """Asking the same registry and namespace for other buckets is refused."""
    PrometheusAdapter(registry)
    with pytest.raises(ValueError, match="buckets"):
        PrometheusAdapter(registry, buckets=[1.0])


def test_cancelled_call_counted_as_cancelled(
    clock: FakeClock, bus: EventBus, adapter: PrometheusAdapter, registry: CollectorRegistry
) -> None:
    """A cancelled call propagates CancelledError and counts as "cancelled", never as a failure or retry."""

    @resilient.retry(attempts=3, clock=clock, bus=bus)
    async def hang() -> None:
        await asyncio.Event().wait()

    async def scenario() -> None:
        task = asyncio.create_task(hang())
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    counted = {
        (n, dict(labels).get("outcome"), dict(labels).get("error_type"))
        for (n, labels), _v in scrape(registry).items()
        if n in ("resilient_calls_total", "resilient_retries_total", "resilient_call_duration_seconds_count")
    }
    assert counted == {
        ("resilient_calls_total", "cancelled", None),
        ("resilient_call_duration_seconds_count", "cancelled", "asyncio.exceptions.CancelledError"),
    }


def test_circuit_state_from_events_tracks_latest(registry: CollectorRegistry, bus: EventBus) -> None:
    """The state gauge follows the latest CircuitStateChanged for each breaker name."""
    PrometheusAdapter(registry).attach(bus)
    base: dict[str, Any] = {"policy": "circuit_breaker", "name": "p", "operation": None, "time": 0.0}
    bus.emit(resilient.events.CircuitOpened(**base, previous=CircuitState.CLOSED, state=CircuitState.OPEN))
    bus.emit(
        resilient.events.CircuitHalfOpened(**base, previous=CircuitState.OPEN, state=CircuitState.HALF_OPEN)
    )
    states = {
        s.value: value(registry, "resilient_circuit_state", name="p", state=s.value) for s in CircuitState
    }
    assert states == {"closed": 0.0, "open": 0.0, "half_open": 1.0, "isolated": 0.0}


class Unreadable:
    """A tracked breaker whose state read raises (a shared backend that cannot answer)."""

    name = "broken"

    def peek_state(self) -> CircuitState:
        """Fail like a backend that cannot answer."""
        raise OSError("backend down")

    state = CircuitState.CLOSED


def test_unreadable_breaker_does_not_fail_the_scrape(
    registry: CollectorRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    """A breaker whose state cannot be read is left out (and logged); the other gauges are still served."""
    adapter = PrometheusAdapter(registry)
    broken, fine = Unreadable(), resilient.circuit_breaker(name="fine")
    adapter.track_circuit_breaker(broken)
    adapter.track_circuit_breaker(fine)
    assert (
        value(registry, "resilient_circuit_state", name="fine", state="closed"),
        value(registry, "resilient_circuit_state", name="broken", state="closed"),
        "could not read the state" in caplog.text,
    ) == (1.0, None, True)


def test_allow_listed_call_attributes_become_labels(
    clock: FakeClock, bus: EventBus, registry: CollectorRegistry
) -> None:
    """metric_attributes turns those call attributes into labels; other attributes stay off the metrics."""
    PrometheusAdapter(registry, metric_attributes=["server.address", "tier"]).attach(bus)

    @resilient.pipeline(
        resilient.retry(bus=bus, clock=clock),
        bus=bus,
        attributes=lambda url, user: {"server.address": url.split("/")[2], "user.id": user},
    )
    def get(url: str, user: str) -> str:
        return "ok"

    get("https://api.example.com/a", "alice")
    get("https://api.example.com/b", "bob")
    series = [dict(labels) for (n, labels), _ in scrape(registry).items() if n == "resilient_calls_total"]
    assert series == [
        {
            "operation": full(get),
            "name": "",
            "outcome": "success",
            "server_address": "api.example.com",
            "tier": "",
        }
    ]
    assert value(registry, "resilient_calls_total", **series[0]) == 2.0


@pytest.mark.parametrize(
    ("keys", "error", "match"),
    [
        ("server.address", TypeError, "sequence"),
        ([3], TypeError, "str"),
        ([""], ValueError, "usable"),
        (["operation"], ValueError, "built-in"),
        (["error.type"], ValueError, "built-in"),
        (["a.b", "a_b"], ValueError, "both"),
    ],
)
def test_bad_metric_attributes(keys: Any, error: type[Exception], match: str) -> None:
    """Unusable metric_attributes fail at construction, naming the parameter."""
    with pytest.raises(error, match=f"metric_attributes.*{match}"):
        PrometheusAdapter(CollectorRegistry(), metric_attributes=keys)


def test_other_metric_attributes_for_an_existing_namespace(registry: CollectorRegistry) -> None:
    """A second adapter asking for other label attributes in one registry and namespace is refused."""
    PrometheusAdapter(registry, metric_attributes=["tier"])
    with pytest.raises(ValueError, match="metric_attributes"):
        PrometheusAdapter(registry)


# --- label values that are not valid text ----------------------------------------------------

NOT_UTF8 = "caf\udce9"  # bytes decoded with surrogateescape: a lone surrogate, not encodable
SHOWN = "caf\\udce9"  # how it is exposed instead


def test_a_name_that_is_not_utf8_does_not_break_every_later_scrape(
    registry: CollectorRegistry, bus: EventBus, clock: FakeClock
) -> None:
    """A rate limiter named with a lone surrogate (a JSON config can hold one) is exposed escaped."""
    PrometheusAdapter(registry).attach(bus)
    limiter = resilient.rate_limiter(1, name=NOT_UTF8, clock=clock, bus=bus)

    @resilient.pipeline(limiter, bus=bus)
    def lookup() -> str:
        return "ok"

    lookup()
    with pytest.raises(resilient.RateLimitedError):
        lookup()
    labels = {"operation": full(lookup), "name": SHOWN, "policy": "rate_limiter"}
    assert value(registry, "resilient_rejections_total", **labels) == 1.0


def test_a_tracked_bulkhead_named_with_a_lone_surrogate_is_exposed_escaped(
    registry: CollectorRegistry,
) -> None:
    """A tracked bulkhead whose name is not valid UTF-8 is read at scrape time without failing it."""
    adapter = PrometheusAdapter(registry)
    pool = resilient.bulkhead(2, name=NOT_UTF8)
    adapter.track_bulkhead(pool)
    assert value(registry, "resilient_bulkhead_max_concurrent", name=SHOWN) == 2.0


@pytest.mark.parametrize(
    ("attribute", "shown"),
    [(NOT_UTF8, SHOWN), (10**5000, "<int of 16610 bits>"), ("café", "café")],
    ids=["lone-surrogate", "huge-int", "valid-text"],
)
def test_an_allow_listed_attribute_that_cannot_be_a_label_is_shown_instead(
    registry: CollectorRegistry, bus: EventBus, clock: FakeClock, attribute: str | int, shown: str
) -> None:
    """A call attribute that is not valid text (or too long an int to print) is counted, under a stand-in."""
    PrometheusAdapter(registry, metric_attributes=["url.path"]).attach(bus)
    failures = [ConnectionError("refused")]

    @resilient.pipeline(
        resilient.retry(backoff=0, clock=clock, bus=bus), bus=bus, attributes=lambda: {"url.path": attribute}
    )
    def fetch() -> str:
        if failures:
            raise failures.pop()
        return "ok"

    assert fetch() == "ok"
    labels = {"operation": full(fetch), "name": "", "url_path": shown}
    assert value(registry, "resilient_retries_total", **labels) == 1.0
    assert value(registry, "resilient_calls_total", outcome="success", **labels) == 1.0
