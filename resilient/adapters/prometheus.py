"""Prometheus metrics from the event bus (``prometheus_client``).

::

    from resilient.adapters.prometheus import PrometheusAdapter

    PrometheusAdapter().attach()  # metrics on prometheus_client's default REGISTRY

Metrics (with the default ``namespace="resilient"``):

============================================  =========  ==========================
name                                          type       labels
============================================  =========  ==========================
``resilient_calls_total``                     counter    operation, name, outcome
``resilient_call_duration_seconds``           histogram  operation, name, outcome
``resilient_retries_total``                   counter    operation, name
``resilient_retries_exhausted_total``         counter    operation, name, reason
``resilient_timeouts_total``                  counter    operation, name
``resilient_rejections_total``                counter    operation, name, policy
``resilient_fallbacks_total``                 counter    operation, name
``resilient_circuit_transitions_total``       counter    name, state
``resilient_circuit_state``                   gauge      name, state (1 = current)
``resilient_bulkhead_in_use``                 gauge      name (tracked bulkheads)
``resilient_bulkhead_queued``                 gauge      name (tracked bulkheads)
``resilient_bulkhead_max_concurrent``         gauge      name (tracked bulkheads)
``resilient_backend_degraded``                gauge      policy, name (1 = degraded)
============================================  =========  ==========================

Label values are bounded: the protected function's qualified name, the
policy's configured name (``""`` when unset), and fixed vocabularies
(outcome, reason, policy kind, state). Exception messages and types never
become labels.

The circuit state gauge follows ``CircuitStateChanged`` events, so a breaker
appears once it first changes state; :meth:`PrometheusAdapter.track_circuit_breaker`
reads ``breaker.state`` at scrape time instead. Bulkhead occupancy has no
events (acquiring a slot is the hot path), so it is read at scrape time from
bulkheads registered with :meth:`PrometheusAdapter.track_bulkhead`.
"""

from __future__ import annotations

import math
import re
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from resilient._events import (
    BackendDegraded,
    BackendRecovered,
    CallFailed,
    CallRejected,
    CallSucceeded,
    CircuitStateChanged,
    Event,
    EventBus,
    FallbackUsed,
    RetriesExhausted,
    RetryScheduled,
    Subscription,
    TimeoutElapsed,
)
from resilient._state import CircuitState
from resilient.adapters._common import Tracked, attach, import_optional

__all__ = ["PrometheusAdapter"]

_NAMESPACE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_EVENTS: tuple[type[Event], ...] = (
    CallSucceeded,
    CallFailed,
    RetryScheduled,
    RetriesExhausted,
    TimeoutElapsed,
    CallRejected,
    FallbackUsed,
    CircuitStateChanged,
    BackendDegraded,
    BackendRecovered,
)


def _state(value: object) -> CircuitState | None:
    if isinstance(value, CircuitState):
        return value
    try:
        return CircuitState(getattr(value, "value", value))
    except ValueError:
        return None


class _Collector:
    """The gauges: circuit states, tracked bulkheads, degraded backends, read at scrape time."""

    def __init__(self, prom: Any, prefix: str) -> None:
        self._prom = prom
        self._prefix = prefix
        self._lock = threading.Lock()
        self.circuits: dict[str, CircuitState] = {}
        self.backends: dict[tuple[str, str], bool] = {}
        self.breakers = Tracked("circuit breaker")
        self.bulkheads = Tracked("bulkhead")

    def _families(self) -> tuple[Any, Any, Any, Any, Any]:
        gauge = self._prom.metrics_core.GaugeMetricFamily
        p = self._prefix
        return (
            gauge(
                f"{p}circuit_state",
                "Circuit breaker state (1 for the current state).",
                labels=["name", "state"],
            ),
            gauge(f"{p}bulkhead_in_use", "Calls running inside a tracked bulkhead.", labels=["name"]),
            gauge(f"{p}bulkhead_queued", "Calls waiting for a tracked bulkhead's slot.", labels=["name"]),
            gauge(f"{p}bulkhead_max_concurrent", "A tracked bulkhead's capacity.", labels=["name"]),
            gauge(
                f"{p}backend_degraded",
                "1 while a policy's shared backend is not answering.",
                labels=["policy", "name"],
            ),
        )

    def describe(self) -> Iterator[Any]:
        yield from self._families()

    def collect(self) -> Iterator[Any]:
        state, in_use, queued, capacity, degraded = self._families()
        with self._lock:
            circuits = dict(self.circuits)
            backends = dict(self.backends)
        for name, breaker in self.breakers.items():
            found = _state(breaker.state)
            if found is not None:
                circuits[name] = found
        for name, current in sorted(circuits.items()):
            for s in CircuitState:
                state.add_metric([name, s.value], 1.0 if s is current else 0.0)
        for name, bulkhead in sorted(self.bulkheads.items()):
            in_use.add_metric([name], float(bulkhead.in_use))
            queued.add_metric([name], float(getattr(bulkhead, "queued", 0)))
            capacity.add_metric([name], float(getattr(bulkhead, "max_concurrent", math.nan)))
        for (policy, name), is_degraded in sorted(backends.items()):
            degraded.add_metric([policy, name], 1.0 if is_degraded else 0.0)
        yield from (state, in_use, queued, capacity, degraded)


class _Metrics:
    """One registry's metric objects for one namespace (shared by adapters)."""

    def __init__(self, prom: Any, registry: Any, namespace: str, buckets: tuple[float, ...] | None) -> None:
        kw: dict[str, Any] = {"namespace": namespace, "registry": registry}
        op_name = ["operation", "name"]
        self.calls = prom.Counter("calls", "Outer pipeline calls by outcome.", [*op_name, "outcome"], **kw)
        hist_kw = dict(kw)
        if buckets is not None:
            hist_kw["buckets"] = buckets
        self.duration = prom.Histogram(
            "call_duration_seconds", "Outer pipeline call duration.", [*op_name, "outcome"], **hist_kw
        )
        self.retries = prom.Counter("retries", "Retries scheduled.", op_name, **kw)
        self.exhausted = prom.Counter(
            "retries_exhausted", "Calls on which retry gave up, by reason.", [*op_name, "reason"], **kw
        )
        self.timeouts = prom.Counter("timeouts", "Timeouts that expired.", op_name, **kw)
        self.rejections = prom.Counter(
            "rejections", "Calls rejected without running, by rejecting policy.", [*op_name, "policy"], **kw
        )
        self.fallbacks = prom.Counter("fallbacks", "Failures replaced by a fallback.", op_name, **kw)
        self.transitions = prom.Counter(
            "circuit_transitions", "Circuit breaker state changes, by new state.", ["name", "state"], **kw
        )
        self.collector = _Collector(prom, f"{namespace}_" if namespace else "")
        registry.register(self.collector)
        # labels() costs a lock and a dict build per call (~3x an inc()); the
        # children are cached here, bounded by the label sets, as in the metric.
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}

    def child(self, metric: Any, *labels: str) -> Any:
        """Return ``metric.labels(*labels)``, cached."""
        key = (id(metric), labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found


_lock = threading.Lock()
_shared: weakref.WeakKeyDictionary[Any, dict[tuple[str, tuple[float, ...] | None], _Metrics]] = (
    weakref.WeakKeyDictionary()
)


def _metrics_for(prom: Any, registry: Any, namespace: str, buckets: tuple[float, ...] | None) -> _Metrics:
    # prometheus_client refuses a second metric of the same name in one
    # registry, so adapters on one registry and namespace share the objects.
    with _lock:
        per_registry = _shared.setdefault(registry, {})
        key = (namespace, buckets)
        found = per_registry.get(key)
        if found is None:
            if any(ns == namespace for ns, _ in per_registry):
                raise ValueError(
                    f"buckets: metrics for namespace {namespace!r} already exist in this registry "
                    "with other buckets"
                )
            found = _Metrics(prom, registry, namespace, buckets)
            per_registry[key] = found
        return found


def _check_buckets(buckets: Sequence[float] | None) -> tuple[float, ...] | None:
    if buckets is None:
        return None
    if isinstance(buckets, (str, bytes)) or not isinstance(buckets, Sequence):
        raise TypeError(f"buckets must be a sequence of seconds, got {buckets!r}")
    out: list[float] = []
    for b in buckets:
        if isinstance(b, bool) or not isinstance(b, (int, float)):
            raise TypeError(f"buckets must hold numbers, got {b!r}")
        if math.isnan(b) or b <= 0:
            raise ValueError(f"buckets must be > 0, got {b!r}")
        if out and b <= out[-1]:
            raise ValueError(f"buckets must be strictly increasing, got {list(buckets)!r}")
        out.append(float(b))
    if not out:
        raise ValueError("buckets must not be empty")
    return tuple(out)


class PrometheusAdapter:
    """Counts calls, retries, timeouts, rejections and fallbacks; tracks circuit and bulkhead gauges.

    Adapters built on the same registry and namespace share one set of
    metric objects, so building a second one (or attaching to several buses)
    never raises "duplicated timeseries".

    Args:
        registry: A ``prometheus_client.CollectorRegistry``; None means
            ``prometheus_client.REGISTRY``.
        namespace: Metric name prefix (``resilient`` gives
            ``resilient_calls_total``); ``""`` for none.
        buckets: Histogram buckets in seconds for
            ``<namespace>_call_duration_seconds`` (default: prometheus_client's).

    Raises:
        ImportError: prometheus_client is not installed (``pip install 'resilient-policies[prometheus]'``).
        TypeError: A parameter has the wrong type.
        ValueError: *namespace* is not a valid metric name prefix, *buckets*
            are not increasing positive numbers, or the namespace already
            exists in the registry with other buckets.
    """

    def __init__(
        self, registry: Any = None, namespace: str = "resilient", *, buckets: Sequence[float] | None = None
    ) -> None:
        prom = import_optional("prometheus_client", "prometheus", "PrometheusAdapter")
        if registry is None:
            registry = prom.REGISTRY
        elif not callable(getattr(registry, "register", None)):
            raise TypeError(f"registry must be a prometheus_client CollectorRegistry, got {registry!r}")
        if not isinstance(namespace, str):
            raise TypeError(f"namespace must be a str, got {namespace!r}")
        if namespace and not _NAMESPACE.match(namespace):
            raise ValueError(f"namespace must match [a-zA-Z_:][a-zA-Z0-9_:]*, got {namespace!r}")
        self.registry = registry
        self.namespace = namespace
        self._m = _metrics_for(prom, registry, namespace, _check_buckets(buckets))
        self._dispatch: dict[type, Callable[[Any], None]] = {}
        self._table: dict[type, Callable[[Any], None]] = {
            CallSucceeded: self._succeeded,
            CallFailed: self._failed,
            RetryScheduled: self._retry,
            RetriesExhausted: self._exhausted,
            TimeoutElapsed: self._timeout,
            CallRejected: self._rejected,
            FallbackUsed: self._fallback,
            CircuitStateChanged: self._circuit,
            BackendDegraded: self._backend,
            BackendRecovered: self._backend,
        }

    def __repr__(self) -> str:
        return f"PrometheusAdapter(namespace={self.namespace!r})"

    def track_bulkhead(self, bulkhead: Any) -> None:
        """Report *bulkhead*'s ``in_use``, ``queued`` and ``max_concurrent`` at every scrape.

        Held weakly: a bulkhead that is garbage-collected disappears from the
        metrics.

        Args:
            bulkhead: A named ``resilient`` bulkhead (``bulkhead(10, name="db")``).

        Raises:
            TypeError: It has no ``in_use`` attribute.
            ValueError: It has no name, or another tracked bulkhead has its name.
        """
        self._m.collector.bulkheads.add(bulkhead, ("in_use",))

    def track_circuit_breaker(self, breaker: Any) -> None:
        """Report *breaker*'s ``state`` at every scrape, from before its first transition.

        Args:
            breaker: A named ``resilient`` circuit breaker.

        Raises:
            TypeError: It has no ``state`` attribute.
            ValueError: It has no name, or another tracked breaker has its name.
        """
        self._m.collector.breakers.add(breaker, ("state",))

    def __call__(self, event: Event) -> None:
        """Update the metrics for *event*.

        Args:
            event: Any event; kinds without a metric are ignored.
        """
        cls = type(event)
        handler = self._dispatch.get(cls)
        if handler is None:
            handler = next((self._table[b] for b in cls.__mro__ if b in self._table), _ignore)
            self._dispatch[cls] = handler
        handler(event)

    def _succeeded(self, ev: CallSucceeded) -> None:
        m = self._m
        op, name = ev.operation or "", ev.name or ""
        m.child(m.calls, op, name, "success").inc()
        m.child(m.duration, op, name, "success").observe(ev.duration)

    def _failed(self, ev: CallFailed) -> None:
        m = self._m
        op, name = ev.operation or "", ev.name or ""
        m.child(m.calls, op, name, "failure").inc()
        m.child(m.duration, op, name, "failure").observe(ev.duration)

    def _retry(self, ev: RetryScheduled) -> None:
        m = self._m
        m.child(m.retries, ev.operation or "", ev.name or "").inc()

    def _exhausted(self, ev: RetriesExhausted) -> None:
        m = self._m
        m.child(m.exhausted, ev.operation or "", ev.name or "", ev.reason).inc()

    def _timeout(self, ev: TimeoutElapsed) -> None:
        m = self._m
        m.child(m.timeouts, ev.operation or "", ev.name or "").inc()

    def _rejected(self, ev: CallRejected) -> None:
        m = self._m
        m.child(m.rejections, ev.operation or "", ev.name or "", ev.policy).inc()

    def _fallback(self, ev: FallbackUsed) -> None:
        m = self._m
        m.child(m.fallbacks, ev.operation or "", ev.name or "").inc()

    def _circuit(self, ev: CircuitStateChanged) -> None:
        name = ev.name or ""
        self._m.child(self._m.transitions, name, ev.state.value).inc()
        collector = self._m.collector
        with collector._lock:
            collector.circuits[name] = ev.state

    def _backend(self, ev: Event) -> None:
        collector = self._m.collector
        with collector._lock:
            collector.backends[(ev.policy, ev.name or "")] = isinstance(ev, BackendDegraded)

    def attach(self, bus: EventBus | None = None) -> Subscription:
        """Start counting the events emitted on *bus*.

        Args:
            bus: The bus (default: ``resilient.events.default_bus``).

        Returns:
            The :class:`~resilient.events.Subscription`; ``unsubscribe()`` stops counting.

        Raises:
            TypeError: *bus* is not an EventBus.
        """
        return attach(self, _EVENTS, bus)


def _ignore(event: Event) -> None:
    return None
