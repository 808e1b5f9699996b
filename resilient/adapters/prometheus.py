"""Prometheus metrics from the event bus (``prometheus_client``).

::

    from resilient.adapters.prometheus import PrometheusAdapter

    PrometheusAdapter().attach()  # metrics on prometheus_client's default REGISTRY

Metrics (with the default ``namespace="resilient"``); the same names and
labels as :class:`~resilient.adapters.opentelemetry.OpenTelemetryAdapter`
exported to Prometheus (see :mod:`resilient.adapters._vocabulary`):

============================================  =========  ==========================================
name                                          type       labels
============================================  =========  ==========================================
``resilient_calls_total``                     counter    operation, name, outcome
``resilient_call_duration_seconds``           histogram  operation, name, outcome, error_type
``resilient_retries_total``                   counter    operation, name
``resilient_retries_exhausted_total``         counter    operation, name, reason
``resilient_timeouts_total``                  counter    operation, name
``resilient_rejections_total``                counter    operation, name, policy
``resilient_fallbacks_total``                 counter    operation, name
``resilient_hedges_total``                    counter    operation, name, reason
``resilient_chaos_injections_total``          counter    operation, name, kind
``resilient_circuit_transitions_total``       counter    name, state
``resilient_circuit_state``                   gauge      name, state (1 = current)
``resilient_bulkhead_in_use``                 gauge      name (tracked bulkheads)
``resilient_bulkhead_queued``                 gauge      name (tracked bulkheads)
``resilient_bulkhead_max_concurrent``         gauge      name (tracked bulkheads)
``resilient_backend_degraded``                gauge      policy, name (1 = degraded)
``resilient_backend_state_lost_total``        counter    policy, name
============================================  =========  ==========================================

The per-call metrics (the first nine) also carry one label per allow-listed
call attribute (``metric_attributes``). Label values are bounded: the
protected function's module-qualified name, the policy's configured name
(``""`` when unset), fixed vocabularies (outcome, reason, policy kind,
state), the exception *type* of a failed or cancelled call, and the call
attributes you allow. Exception messages never become labels.

The circuit state gauge follows ``CircuitStateChanged`` events, so a breaker
appears once it first changes state; :meth:`PrometheusAdapter.track_circuit_breaker`
reads its state at scrape time instead, without changing it. Bulkhead
occupancy has no events (acquiring a slot is the hot path), so it is read at
scrape time from bulkheads registered with :meth:`PrometheusAdapter.track_bulkhead`.
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
    BackendStateLost,
    CallCancelled,
    CallFailed,
    CallRejected,
    CallSucceeded,
    ChaosInjected,
    CircuitStateChanged,
    Event,
    EventBus,
    FallbackUsed,
    HedgeStarted,
    RetriesExhausted,
    RetryScheduled,
    Subscription,
    TimeoutElapsed,
)
from resilient._numbers import describe as _describe
from resilient._numbers import plain_number as _plain_number
from resilient._state import CircuitState
from resilient.adapters._common import Tracked, attach, breaker_state, exception_type, import_optional
from resilient.adapters._vocabulary import (
    METRIC_EVENTS,
    METRICS,
    attribute_values,
    call_labels,
    check_metric_attributes,
    prometheus_label,
    text_label,
)

__all__ = ["PrometheusAdapter"]

_NAMESPACE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_GAUGES = (
    "resilient.circuit.state",
    "resilient.bulkhead.in_use",
    "resilient.bulkhead.queued",
    "resilient.bulkhead.max_concurrent",
    "resilient.backend.degraded",
)


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

    def _families(self) -> list[Any]:
        gauge = self._prom.metrics_core.GaugeMetricFamily
        return [
            gauge(f"{self._prefix}{m.prom}", m.help, labels=list(m.prom_labels))
            for m in (METRICS[k] for k in _GAUGES)
        ]

    def describe(self) -> Iterator[Any]:
        yield from self._families()

    def collect(self) -> Iterator[Any]:
        state, in_use, queued, capacity, degraded = self._families()
        with self._lock:
            circuits = dict(self.circuits)
            backends = dict(self.backends)
        for name, breaker in self.breakers.items():
            found = breaker_state(breaker)
            if found is not None:
                circuits[name] = found
        # Names are labels: escaped if they are not valid text (see text_label).
        for name, current in sorted(circuits.items()):
            for s in CircuitState:
                state.add_metric([text_label(name), s.value], 1.0 if s is current else 0.0)
        for name, bulkhead in sorted(self.bulkheads.items()):
            label = text_label(name)
            in_use.add_metric([label], float(bulkhead.in_use))
            queued.add_metric([label], float(getattr(bulkhead, "queued", 0)))
            capacity.add_metric([label], float(getattr(bulkhead, "max_concurrent", math.nan)))
        for (policy, name), is_degraded in sorted(backends.items()):
            degraded.add_metric([policy, text_label(name)], 1.0 if is_degraded else 0.0)
        yield from (state, in_use, queued, capacity, degraded)


class _Metrics:
    """One registry's metric objects for one namespace (shared by adapters)."""

    def __init__(
        self,
        prom: Any,
        registry: Any,
        namespace: str,
        buckets: tuple[float, ...] | None,
        attributes: tuple[str, ...],
    ) -> None:
        kw: dict[str, Any] = {"namespace": namespace, "registry": registry}
        extra = tuple(prometheus_label(k) for k in attributes)

        def make(key: str) -> Any:
            m = METRICS[key]
            labels = [*m.prom_labels, *(extra if m.per_call else ())]
            if m.kind == "histogram":
                hist_kw = dict(kw)
                if buckets is not None:
                    hist_kw["buckets"] = buckets
                return prom.Histogram(m.prom, m.help, labels, **hist_kw)
            return prom.Counter(m.prom, m.help, labels, **kw)

        self.calls = make("resilient.calls")
        self.duration = make("resilient.call.duration")
        self.retries = make("resilient.retries")
        self.exhausted = make("resilient.retries_exhausted")
        self.timeouts = make("resilient.timeouts")
        self.rejections = make("resilient.rejections")
        self.fallbacks = make("resilient.fallbacks")
        self.hedges = make("resilient.hedges")
        self.injections = make("resilient.chaos.injections")
        self.transitions = make("resilient.circuit.transitions")
        self.state_lost = make("resilient.backend.state_lost")
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
            found = self._children[key] = metric.labels(*map(text_label, labels))
        return found


_lock = threading.Lock()
_Key = tuple[str, "tuple[float, ...] | None", tuple[str, ...]]
_shared: weakref.WeakKeyDictionary[Any, dict[_Key, _Metrics]] = weakref.WeakKeyDictionary()


def _metrics_for(
    prom: Any, registry: Any, namespace: str, buckets: tuple[float, ...] | None, attributes: tuple[str, ...]
) -> _Metrics:
    # prometheus_client refuses a second metric of the same name in one
    # registry, so adapters on one registry and namespace share the objects.
    with _lock:
        per_registry = _shared.setdefault(registry, {})
        key = (namespace, buckets, attributes)
        found = per_registry.get(key)
        if found is None:
            for ns, other_buckets, _ in per_registry:
                if ns == namespace:
                    param = "buckets" if other_buckets != buckets else "metric_attributes"
                    raise ValueError(
                        f"{param}: metrics for namespace {_describe(namespace, typed=False)} already exist "
                        f"in this registry with other {param}"
                    )
            found = _Metrics(prom, registry, namespace, buckets, attributes)
            per_registry[key] = found
        return found


def _check_buckets(buckets: Sequence[float] | None) -> tuple[float, ...] | None:
    if buckets is None:
        return None
    if isinstance(buckets, (str, bytes)) or not isinstance(buckets, Sequence):
        raise TypeError(f"buckets must be a sequence of seconds, got {_describe(buckets)}")
    out: list[float] = []
    for b in buckets:
        number = _plain_number(b)  # a subclass's comparisons and __float__ may lie
        if number is None:
            raise TypeError(f"buckets must hold numbers, got {_describe(b)}")
        try:
            f = float(number)
        except OverflowError:  # an int beyond any float
            raise ValueError(f"buckets must hold seconds a float can hold, got {_describe(b)}") from None
        if math.isnan(f) or f <= 0:
            raise ValueError(f"buckets must be > 0, got {f!r}")
        if out and f <= out[-1]:
            raise ValueError(f"buckets must be strictly increasing, got {_describe(buckets, typed=False)}")
        out.append(f)
    if not out:
        raise ValueError("buckets must not be empty")
    return tuple(out)


class PrometheusAdapter:
    """Counts calls, retries, timeouts, rejections, fallbacks, hedges and injections; tracks gauges.

    Adapters built on the same registry and namespace share one set of
    metric objects, so building a second one (or attaching to several buses)
    never raises "duplicated timeseries".

    Args:
        registry: A ``prometheus_client.CollectorRegistry``; None means
            ``prometheus_client.REGISTRY``.
        namespace: Metric name prefix (``resilient`` gives
            ``resilient_calls_total``); ``""`` for none.
        buckets: Histogram buckets in seconds for
            ``<namespace>_call_duration_seconds`` (default: prometheus_client's,
            which are OpenTelemetry's advisory buckets too).
        metric_attributes: Call attribute keys (``CallContext.attributes``,
            from ``pipeline(attributes=...)``) to add as labels of the per-call
            metrics, e.g. ``["server.address"]`` (label ``server_address``;
            ``""`` when a call lacks it). Only low-cardinality attributes
            belong here: every distinct value is a new series. Attributes not
            listed stay on spans and log records.

    Raises:
        ImportError: prometheus_client is not installed (``pip install 'resilient-policies[prometheus]'``).
        TypeError: A parameter has the wrong type.
        ValueError: *namespace* is not a valid metric name prefix, *buckets*
            are not increasing positive numbers, a *metric_attributes* key
            is unusable or collides with a built-in label, or the namespace
            already exists in the registry with other buckets or attributes.
    """

    def __init__(
        self,
        registry: Any = None,
        namespace: str = "resilient",
        *,
        buckets: Sequence[float] | None = None,
        metric_attributes: Sequence[str] = (),
    ) -> None:
        prom = import_optional("prometheus_client", "prometheus", "PrometheusAdapter")
        if registry is None:
            registry = prom.REGISTRY
        elif not callable(getattr(registry, "register", None)):
            raise TypeError(
                f"registry must be a prometheus_client CollectorRegistry, got {_describe(registry)}"
            )
        if not isinstance(namespace, str):
            raise TypeError(f"namespace must be a str, got {_describe(namespace)}")
        if namespace and not _NAMESPACE.match(namespace):
            raise ValueError(f"namespace must match [a-zA-Z_:][a-zA-Z0-9_:]*, got {_describe(namespace)}")
        self.registry = registry
        self.namespace = namespace
        self.metric_attributes = check_metric_attributes("metric_attributes", metric_attributes)
        self._m = _metrics_for(prom, registry, namespace, _check_buckets(buckets), self.metric_attributes)
        self._dispatch: dict[type, Callable[[Any], None]] = {}
        self._table: dict[type, Callable[[Any], None]] = {
            CallSucceeded: self._ended,
            CallFailed: self._ended,
            CallCancelled: self._ended,
            RetryScheduled: self._retry,
            RetriesExhausted: self._exhausted,
            TimeoutElapsed: self._timeout,
            CallRejected: self._rejected,
            FallbackUsed: self._fallback,
            HedgeStarted: self._hedge,
            ChaosInjected: self._chaos,
            CircuitStateChanged: self._circuit,
            BackendDegraded: self._backend,
            BackendRecovered: self._backend,
            BackendStateLost: self._state_lost,
        }

    def __repr__(self) -> str:
        return f"PrometheusAdapter(namespace={self.namespace!r})"

    def track_bulkhead(self, bulkhead: Any) -> None:
        """Report *bulkhead*'s ``in_use``, ``queued`` and ``max_concurrent`` at every scrape.

        Held weakly: a bulkhead that is garbage-collected disappears from the
        metrics. Tracking another bulkhead under the same name replaces it.

        Args:
            bulkhead: A named ``resilient`` bulkhead (``bulkhead(10, name="db")``).

        Raises:
            TypeError: It has no ``in_use`` attribute.
            ValueError: It has no name.
        """
        self._m.collector.bulkheads.add(bulkhead, ("in_use",))

    def track_circuit_breaker(self, breaker: Any) -> None:
        """Report *breaker*'s state at every scrape, from before its first transition.

        The state is read with ``peek_state()``, which never moves the
        breaker: a scrape changes nothing and emits nothing. Held weakly;
        tracking another breaker under the same name (a rebuilt one)
        replaces it.

        Args:
            breaker: A named ``resilient`` circuit breaker.

        Raises:
            TypeError: It has no ``state`` attribute.
            ValueError: It has no name.
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

    def _labels(self, event: Event) -> tuple[str, Any, tuple[str, ...]]:
        operation, ctx = call_labels(event)
        keys = self.metric_attributes
        return operation, ctx, (attribute_values(ctx, keys) if keys else ())

    def _ended(self, ev: CallSucceeded | CallFailed | CallCancelled) -> None:
        m = self._m
        operation, ctx, extra = self._labels(ev)
        name = ev.name or ""
        if isinstance(ev, CallSucceeded):
            outcome = "fallback" if ctx is not None and ctx.fallback_used else "success"
            error = ""
        else:
            outcome = "failure" if isinstance(ev, CallFailed) else "cancelled"
            error = exception_type(ev.exception)
        m.child(m.calls, operation, name, outcome, *extra).inc()
        m.child(m.duration, operation, name, outcome, error, *extra).observe(ev.duration)

    def _retry(self, ev: RetryScheduled) -> None:
        m = self._m
        operation, _, extra = self._labels(ev)
        m.child(m.retries, operation, ev.name or "", *extra).inc()

    def _exhausted(self, ev: RetriesExhausted) -> None:
        m = self._m
        operation, _, extra = self._labels(ev)
        m.child(m.exhausted, operation, ev.name or "", ev.reason, *extra).inc()

    def _timeout(self, ev: TimeoutElapsed) -> None:
        m = self._m
        operation, _, extra = self._labels(ev)
        m.child(m.timeouts, operation, ev.name or "", *extra).inc()

    def _rejected(self, ev: CallRejected) -> None:
        m = self._m
        operation, _, extra = self._labels(ev)
        m.child(m.rejections, operation, ev.name or "", ev.policy, *extra).inc()

    def _fallback(self, ev: FallbackUsed) -> None:
        m = self._m
        operation, _, extra = self._labels(ev)
        m.child(m.fallbacks, operation, ev.name or "", *extra).inc()

    def _hedge(self, ev: HedgeStarted) -> None:
        m = self._m
        operation, _, extra = self._labels(ev)
        m.child(m.hedges, operation, ev.name or "", ev.reason, *extra).inc()

    def _chaos(self, ev: ChaosInjected) -> None:
        m = self._m
        operation, _, extra = self._labels(ev)
        m.child(m.injections, operation, ev.name or "", ev.kind, *extra).inc()

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

    def _state_lost(self, ev: BackendStateLost) -> None:
        self._m.child(self._m.state_lost, ev.policy, ev.name or "").inc()

    def attach(self, bus: EventBus | None = None) -> Subscription:
        """Start counting the events emitted on *bus*.

        Args:
            bus: The bus (default: ``resilient.events.default_bus``).

        Returns:
            The :class:`~resilient.events.Subscription`; ``unsubscribe()`` stops counting.

        Raises:
            TypeError: *bus* is not an EventBus.
        """
        return attach(self, METRIC_EVENTS, bus)


def _ignore(event: Event) -> None:
    return None
