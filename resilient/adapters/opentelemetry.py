"""OpenTelemetry metrics and traces from the event bus.

::

    from resilient.adapters.opentelemetry import OpenTelemetryAdapter

    OpenTelemetryAdapter().attach()  # the global meter and tracer providers

Only the OpenTelemetry *API* is used (``pip install 'resilient-policies[otel]'``); the
application configures the SDK and exporters.

Metrics: the vocabulary of :mod:`resilient.adapters._vocabulary`, which the
Prometheus adapter implements too, so that exporting these instruments to
Prometheus (``opentelemetry-exporter-prometheus``) gives the same names and
labels as :class:`~resilient.adapters.prometheus.PrometheusAdapter`:

====================================  ===================  ============  ===================================
instrument                            kind                 unit          attributes
====================================  ===================  ============  ===================================
``resilient.calls``                   counter              {call}        operation, name, outcome
``resilient.call.duration``           histogram            s             operation, name, outcome, error.type
``resilient.retries``                 counter              {retry}       operation, name
``resilient.retries_exhausted``       counter              {call}        operation, name, reason
``resilient.timeouts``                counter              {timeout}     operation, name
``resilient.rejections``              counter              {call}        operation, name, policy
``resilient.fallbacks``               counter              {call}        operation, name
``resilient.hedges``                  counter              {attempt}     operation, name, reason
``resilient.chaos.injections``        counter              {injection}   operation, name, kind
``resilient.circuit.transitions``     counter              {transition}  name, state
``resilient.circuit.state``           observable gauge     {state}       name, state (1 = current)
``resilient.bulkhead.in_use``         observable up-down   {call}        name (tracked bulkheads)
``resilient.bulkhead.queued``         observable up-down   {call}        name (tracked bulkheads)
``resilient.bulkhead.max_concurrent`` observable up-down   {call}        name (tracked bulkheads)
``resilient.backend.degraded``        observable gauge     {backend}     policy, name (1 = degraded)
``resilient.backend.state_lost``      counter              {loss}        policy, name
====================================  ===================  ============  ===================================

Traces: a span per outer pipeline call, opened when the call starts and
current while it runs (see :mod:`resilient.adapters._tracing`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from resilient import __version__
from resilient._events import (
    ALL_EVENTS,
    BackendDegraded,
    BackendRecovered,
    BackendStateLost,
    CallCancelled,
    CallFailed,
    CallRejected,
    CallStarted,
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
from resilient._state import CircuitState
from resilient.adapters._common import Tracked, attach, breaker_state, exception_type, import_optional
from resilient.adapters._tracing import SpanRecorder
from resilient.adapters._vocabulary import METRIC_EVENTS, METRICS, call_labels, check_metric_attributes

__all__ = ["DURATION_BUCKETS", "OpenTelemetryAdapter"]

DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
"""Advisory buckets (seconds) of ``resilient.call.duration``: the HTTP semconv's, and prometheus_client's."""


class OpenTelemetryAdapter:
    """Records metrics and spans through the OpenTelemetry API.

    Args:
        meter_provider: A ``MeterProvider``; None means the global one.
        tracer_provider: A ``TracerProvider``; None means the global one.
        metrics: Record metrics.
        traces: Record a span per outer pipeline call, current while the
            call runs.
        metric_attributes: Call attribute keys (``CallContext.attributes``)
            to add to the per-call metrics, e.g. ``["server.address"]``. Only
            low-cardinality ones: every distinct value is a new series.
            Spans get every call attribute whatever this says.

    Raises:
        ImportError: opentelemetry-api is not installed (``pip install 'resilient-policies[otel]'``).
        TypeError: A flag is not a bool, or *metric_attributes* not a
            sequence of str.
        ValueError: Both *metrics* and *traces* are off, or a
            *metric_attributes* key is unusable or collides with a built-in one.
    """

    def __init__(
        self,
        meter_provider: Any = None,
        tracer_provider: Any = None,
        *,
        metrics: bool = True,
        traces: bool = True,
        metric_attributes: Sequence[str] = (),
    ) -> None:
        import_optional("opentelemetry", "otel", "OpenTelemetryAdapter")
        metrics_api = import_optional("opentelemetry.metrics", "otel", "OpenTelemetryAdapter")
        trace_api = import_optional("opentelemetry.trace", "otel", "OpenTelemetryAdapter")
        context_api = import_optional("opentelemetry.context", "otel", "OpenTelemetryAdapter")
        for param, flag in (("metrics", metrics), ("traces", traces)):
            if not isinstance(flag, bool):
                raise TypeError(f"{param} must be a bool, got {_describe(flag)}")
        if not (metrics or traces):
            raise ValueError("metrics and traces are both False: the adapter would record nothing")
        self.metrics = metrics
        self.traces = traces
        self.metric_attributes = check_metric_attributes("metric_attributes", metric_attributes)
        self._observation = metrics_api.Observation
        self._lock = threading.Lock()
        self._circuits: dict[str, CircuitState] = {}
        self._backends: dict[tuple[str, str], bool] = {}
        self._breakers = Tracked("circuit breaker")
        self._bulkheads = Tracked("bulkhead")
        self._recorder: SpanRecorder | None = None
        if traces:
            tracer = trace_api.get_tracer("resilient", __version__, tracer_provider=tracer_provider)
            self._recorder = SpanRecorder(tracer, trace_api, context_api)
        if metrics:
            self._instruments(metrics_api.get_meter("resilient", __version__, meter_provider=meter_provider))
        self._dispatch: dict[type, Callable[[Any], None]] = {}

    def __repr__(self) -> str:
        return f"OpenTelemetryAdapter(metrics={self.metrics}, traces={self.traces})"

    def _instruments(self, meter: Any) -> None:
        def counter(key: str) -> Any:
            m = METRICS[key]
            return meter.create_counter(m.otel, unit=m.unit, description=m.help)

        def observed(key: str, make: Callable[..., Any], callback: Callable[[Any], Iterator[Any]]) -> None:
            m = METRICS[key]
            make(m.otel, callbacks=[callback], unit=m.unit, description=m.help)

        self._calls = counter("resilient.calls")
        duration = METRICS["resilient.call.duration"]
        self._duration = meter.create_histogram(
            duration.otel,
            unit=duration.unit,
            description=duration.help,
            explicit_bucket_boundaries_advisory=list(DURATION_BUCKETS),
        )
        self._retries = counter("resilient.retries")
        self._exhausted = counter("resilient.retries_exhausted")
        self._timeouts = counter("resilient.timeouts")
        self._rejections = counter("resilient.rejections")
        self._fallbacks = counter("resilient.fallbacks")
        self._hedges = counter("resilient.hedges")
        self._injections = counter("resilient.chaos.injections")
        self._transitions = counter("resilient.circuit.transitions")
        self._state_lost = counter("resilient.backend.state_lost")
        observed("resilient.circuit.state", meter.create_observable_gauge, self._observe_circuits)
        for key, attr in (
            ("resilient.bulkhead.in_use", "in_use"),
            ("resilient.bulkhead.queued", "queued"),
            ("resilient.bulkhead.max_concurrent", "max_concurrent"),
        ):
            observed(key, meter.create_observable_up_down_counter, self._observe_bulkheads(attr))
        observed("resilient.backend.degraded", meter.create_observable_gauge, self._observe_backends)

    def _observe_circuits(self, options: Any) -> Iterator[Any]:
        with self._lock:
            circuits = dict(self._circuits)
        for name, breaker in self._breakers.items():
            state = breaker_state(breaker)
            if state is not None:
                circuits[name] = state
        for name, current in sorted(circuits.items()):
            for s in CircuitState:
                yield self._observation(1 if s is current else 0, {"name": name, "state": s.value})

    def _observe_bulkheads(self, attr: str) -> Callable[[Any], Iterator[Any]]:
        def observe(options: Any) -> Iterator[Any]:
            for name, bulkhead in sorted(self._bulkheads.items()):
                value = getattr(bulkhead, attr, None)
                if isinstance(value, int):
                    yield self._observation(value, {"name": name})

        return observe

    def _observe_backends(self, options: Any) -> Iterator[Any]:
        with self._lock:
            backends = dict(self._backends)
        for (policy, name), degraded in sorted(backends.items()):
            yield self._observation(1 if degraded else 0, {"policy": policy, "name": name})

    def track_bulkhead(self, bulkhead: Any) -> None:
        """Observe *bulkhead*'s ``in_use``, ``queued`` and ``max_concurrent`` at each collection.

        Args:
            bulkhead: A named ``resilient`` bulkhead; held weakly (another one
                tracked under the same name replaces it).

        Raises:
            TypeError: It has no ``in_use`` attribute.
            ValueError: It has no name.
        """
        self._bulkheads.add(bulkhead, ("in_use",))

    def track_circuit_breaker(self, breaker: Any) -> None:
        """Observe *breaker*'s state at each collection, from before its first transition.

        Read with ``peek_state()``: a collection never moves the breaker or
        emits an event.

        Args:
            breaker: A named ``resilient`` circuit breaker; held weakly (a
                rebuilt one tracked under the same name replaces it).

        Raises:
            TypeError: It has no ``state`` attribute.
            ValueError: It has no name.
        """
        self._breakers.add(breaker, ("state",))

    def __call__(self, event: Event) -> None:
        """Record *event* as metrics and on the span of the call it belongs to.

        Args:
            event: Any event; kinds without a metric or span event are ignored.
        """
        cls = type(event)
        handler = self._dispatch.get(cls)
        if handler is None:
            handler = self._resolve(cls)
            self._dispatch[cls] = handler
        handler(event)

    def _resolve(self, cls: type) -> Callable[[Any], None]:
        recorder = self._recorder
        metric: Callable[[Any], None] | None = None
        if self.metrics:
            table: dict[type, Callable[[Any], None]] = {
                CallSucceeded: self._call,
                CallFailed: self._call,
                CallCancelled: self._call,
                RetryScheduled: self._retry,
                RetriesExhausted: self._exhausted_event,
                TimeoutElapsed: self._timeout,
                CallRejected: self._rejected,
                FallbackUsed: self._fallback,
                HedgeStarted: self._hedge,
                ChaosInjected: self._chaos,
                CircuitStateChanged: self._circuit,
                BackendDegraded: self._backend,
                BackendRecovered: self._backend,
                BackendStateLost: self._lost,
            }
            metric = next((table[b] for b in cls.__mro__ if b in table), None)
        span: Callable[[Any], None] | None = None
        if recorder is not None and issubclass(cls, Event):
            if issubclass(cls, CallStarted):
                span = recorder.start
            elif not issubclass(cls, (CallSucceeded, CallFailed, CallCancelled)):
                span = recorder.record  # the call's end closes its span through on_exit
        if metric is None:
            return span or _ignore
        if span is None:
            return metric
        first, second = metric, span

        def both(event: Any) -> None:
            first(event)
            second(event)

        return both

    def _attrs(self, event: Event) -> tuple[dict[str, Any], Any]:
        operation, ctx = call_labels(event)
        attrs: dict[str, Any] = {"operation": operation, "name": event.name or ""}
        keys = self.metric_attributes
        if keys and ctx is not None:
            found = ctx.attributes
            for key in keys:
                value = found.get(key)
                if value is not None:
                    attrs[key] = value
        return attrs, ctx

    def _call(self, ev: CallSucceeded | CallFailed | CallCancelled) -> None:
        attrs, ctx = self._attrs(ev)
        if isinstance(ev, CallSucceeded):
            attrs["outcome"] = "fallback" if ctx is not None and ctx.fallback_used else "success"
            self._calls.add(1, attrs)
            self._duration.record(ev.duration, attrs)
            return
        attrs["outcome"] = "failure" if isinstance(ev, CallFailed) else "cancelled"
        self._calls.add(1, attrs)
        attrs["error.type"] = exception_type(ev.exception)  # on the duration only, as the semconv has it
        self._duration.record(ev.duration, attrs)

    def _retry(self, ev: RetryScheduled) -> None:
        self._retries.add(1, self._attrs(ev)[0])

    def _exhausted_event(self, ev: RetriesExhausted) -> None:
        attrs = self._attrs(ev)[0]
        attrs["reason"] = ev.reason
        self._exhausted.add(1, attrs)

    def _timeout(self, ev: TimeoutElapsed) -> None:
        self._timeouts.add(1, self._attrs(ev)[0])

    def _rejected(self, ev: CallRejected) -> None:
        attrs = self._attrs(ev)[0]
        attrs["policy"] = ev.policy
        self._rejections.add(1, attrs)

    def _fallback(self, ev: FallbackUsed) -> None:
        self._fallbacks.add(1, self._attrs(ev)[0])

    def _hedge(self, ev: HedgeStarted) -> None:
        attrs = self._attrs(ev)[0]
        attrs["reason"] = ev.reason
        self._hedges.add(1, attrs)

    def _chaos(self, ev: ChaosInjected) -> None:
        attrs = self._attrs(ev)[0]
        attrs["kind"] = ev.kind
        self._injections.add(1, attrs)

    def _circuit(self, ev: CircuitStateChanged) -> None:
        self._transitions.add(1, {"name": ev.name or "", "state": ev.state.value})
        with self._lock:
            self._circuits[ev.name or ""] = ev.state

    def _backend(self, ev: Event) -> None:
        with self._lock:
            self._backends[(ev.policy, ev.name or "")] = isinstance(ev, BackendDegraded)

    def _lost(self, ev: BackendStateLost) -> None:
        self._state_lost.add(1, {"policy": ev.policy, "name": ev.name or ""})

    def attach(self, bus: EventBus | None = None) -> Subscription:
        """Start recording the events emitted on *bus*.

        Args:
            bus: The bus (default: ``resilient.events.default_bus``).

        Returns:
            The :class:`~resilient.events.Subscription`; ``unsubscribe()`` stops recording.

        Raises:
            TypeError: *bus* is not an EventBus.
        """
        # Spans want every event (any kind can become a span event); metrics alone need fewer.
        return attach(self, ALL_EVENTS if self.traces else METRIC_EVENTS, bus)


def _ignore(event: Event) -> None:
    return None
