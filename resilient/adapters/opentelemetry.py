"""OpenTelemetry metrics and traces from the event bus.

::

    from resilient.adapters.opentelemetry import OpenTelemetryAdapter

    OpenTelemetryAdapter().attach()  # the global meter and tracer providers

Only the OpenTelemetry *API* is used (``pip install 'resilient-policies[otel]'``); the
application configures the SDK and exporters. Metric names follow the
semantic conventions (dotted, units in UCUM, no ``_total``):

=================================  ========================  =======  ==============================
name                               instrument                unit     attributes
=================================  ========================  =======  ==============================
``resilient.calls``                counter                   {call}   operation, name, outcome
``resilient.call.duration``        histogram                 s        operation, name, outcome
``resilient.retries``              counter                   {retry}  operation, name
``resilient.retry.exhaustions``    counter                   {call}   operation, name, reason
``resilient.timeouts``             counter                   {timeout} operation, name
``resilient.rejections``           counter                   {call}   operation, name, policy
``resilient.fallbacks``            counter                   {call}   operation, name
``resilient.circuit.transitions``  counter                   {transition} name, circuit.state
``resilient.circuit.state``        observable gauge          1        name, circuit.state (1 = current)
``resilient.bulkhead.in_use``      observable up-down ctr    {call}   name (tracked bulkheads)
``resilient.bulkhead.queued``      observable up-down ctr    {call}   name (tracked bulkheads)
``resilient.bulkhead.limit``       observable up-down ctr    {call}   name (tracked bulkheads)
=================================  ========================  =======  ==============================

Attribute keys carry the ``resilient.`` prefix (``resilient.operation``,
``resilient.name``, ``resilient.outcome``, ``resilient.reason``,
``resilient.policy``, ``resilient.circuit.state``); an unset name or
operation is left out.

Traces: one span per outer pipeline call (see :mod:`resilient.adapters._tracing`
for how it is built without a start event), named after the operation, with
a span event per attempt, retry (the backoff wait), timeout, breaker
transition, rejection and fallback; a failed call has status ERROR, an
``exception`` event and ``error.type``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

from resilient import __version__
from resilient._events import (
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
from resilient._validate import check_int
from resilient.adapters._common import Tracked, attach, import_optional
from resilient.adapters._tracing import SpanRecorder

__all__ = ["DURATION_BUCKETS", "OpenTelemetryAdapter"]

DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
"""Advisory bucket boundaries (seconds) of ``resilient.call.duration``, as in the HTTP semconv."""

_EVENTS: tuple[type[Event], ...] = (
    CallSucceeded,
    CallFailed,
    RetryScheduled,
    RetriesExhausted,
    TimeoutElapsed,
    CallRejected,
    FallbackUsed,
    CircuitStateChanged,
)


def _attrs(event: Event) -> dict[str, str]:
    out: dict[str, str] = {}
    if event.operation is not None:
        out["resilient.operation"] = event.operation
    if event.name is not None:
        out["resilient.name"] = event.name
    return out


class OpenTelemetryAdapter:
    """Records metrics and spans through the OpenTelemetry API.

    Args:
        meter_provider: A ``MeterProvider``; None means the global one.
        tracer_provider: A ``TracerProvider``; None means the global one.
        metrics: Record metrics.
        traces: Record a span per outer pipeline call.
        max_pending: Most running calls whose events are buffered for their
            span at once (the excess, oldest first, loses its span events).

    Raises:
        ImportError: opentelemetry-api is not installed (``pip install 'resilient-policies[otel]'``).
        TypeError: A flag is not a bool or *max_pending* not an int.
        ValueError: *max_pending* < 1, or both *metrics* and *traces* are off.
    """

    def __init__(
        self,
        meter_provider: Any = None,
        tracer_provider: Any = None,
        *,
        metrics: bool = True,
        traces: bool = True,
        max_pending: int = 10_000,
    ) -> None:
        import_optional("opentelemetry", "otel", "OpenTelemetryAdapter")
        metrics_api = import_optional("opentelemetry.metrics", "otel", "OpenTelemetryAdapter")
        trace_api = import_optional("opentelemetry.trace", "otel", "OpenTelemetryAdapter")
        for param, flag in (("metrics", metrics), ("traces", traces)):
            if not isinstance(flag, bool):
                raise TypeError(f"{param} must be a bool, got {flag!r}")
        if not (metrics or traces):
            raise ValueError("metrics and traces are both False: the adapter would record nothing")
        self.metrics = metrics
        self.traces = traces
        self._observation = metrics_api.Observation
        self._lock = threading.Lock()
        self._circuits: dict[str, CircuitState] = {}
        self._breakers = Tracked("circuit breaker")
        self._bulkheads = Tracked("bulkhead")
        self._recorder: SpanRecorder | None = None
        if traces:
            tracer = trace_api.get_tracer("resilient", __version__, tracer_provider=tracer_provider)
            self._recorder = SpanRecorder(tracer, trace_api, check_int("max_pending", max_pending, minimum=1))
        if metrics:
            self._instruments(metrics_api.get_meter("resilient", __version__, meter_provider=meter_provider))
        self._dispatch: dict[type, Callable[[Any], None]] = {}

    def __repr__(self) -> str:
        return f"OpenTelemetryAdapter(metrics={self.metrics}, traces={self.traces})"

    def _instruments(self, meter: Any) -> None:
        self._calls = meter.create_counter(
            "resilient.calls", unit="{call}", description="Outer pipeline calls."
        )
        self._duration = meter.create_histogram(
            "resilient.call.duration",
            unit="s",
            description="Duration of outer pipeline calls.",
            explicit_bucket_boundaries_advisory=list(DURATION_BUCKETS),
        )
        self._retries = meter.create_counter(
            "resilient.retries", unit="{retry}", description="Retries scheduled."
        )
        self._exhausted = meter.create_counter(
            "resilient.retry.exhaustions", unit="{call}", description="Calls on which retry gave up."
        )
        self._timeouts = meter.create_counter(
            "resilient.timeouts", unit="{timeout}", description="Timeouts that expired."
        )
        self._rejections = meter.create_counter(
            "resilient.rejections", unit="{call}", description="Calls rejected without running."
        )
        self._fallbacks = meter.create_counter(
            "resilient.fallbacks", unit="{call}", description="Failures replaced by a fallback."
        )
        self._transitions = meter.create_counter(
            "resilient.circuit.transitions", unit="{transition}", description="Circuit breaker state changes."
        )
        meter.create_observable_gauge(
            "resilient.circuit.state",
            callbacks=[self._observe_circuits],
            unit="1",
            description="Circuit breaker state: 1 for the current state, 0 for the others.",
        )
        meter.create_observable_up_down_counter(
            "resilient.bulkhead.in_use",
            callbacks=[self._observe_bulkheads("in_use")],
            unit="{call}",
            description="Calls running inside a tracked bulkhead.",
        )
        meter.create_observable_up_down_counter(
            "resilient.bulkhead.queued",
            callbacks=[self._observe_bulkheads("queued")],
            unit="{call}",
            description="Calls waiting for a tracked bulkhead's slot.",
        )
        meter.create_observable_up_down_counter(
            "resilient.bulkhead.limit",
            callbacks=[self._observe_bulkheads("max_concurrent")],
            unit="{call}",
            description="A tracked bulkhead's capacity.",
        )

    def _observe_circuits(self, options: Any) -> Iterator[Any]:
        with self._lock:
            circuits = dict(self._circuits)
        for name, breaker in self._breakers.items():
            state = breaker.state
            if isinstance(state, CircuitState):
                circuits[name] = state
        for name, current in sorted(circuits.items()):
            for s in CircuitState:
                attrs = {"resilient.name": name, "resilient.circuit.state": s.value}
                yield self._observation(1 if s is current else 0, attrs)

    def _observe_bulkheads(self, attr: str) -> Callable[[Any], Iterator[Any]]:
        def observe(options: Any) -> Iterator[Any]:
            for name, bulkhead in sorted(self._bulkheads.items()):
                value = getattr(bulkhead, attr, None)
                if isinstance(value, int):
                    yield self._observation(value, {"resilient.name": name})

        return observe

    def track_bulkhead(self, bulkhead: Any) -> None:
        """Observe *bulkhead*'s ``in_use``, ``queued`` and ``max_concurrent`` at each collection.

        Args:
            bulkhead: A named ``resilient`` bulkhead; held weakly.

        Raises:
            TypeError: It has no ``in_use`` attribute.
            ValueError: It has no name, or another tracked bulkhead has its name.
        """
        self._bulkheads.add(bulkhead, ("in_use",))

    def track_circuit_breaker(self, breaker: Any) -> None:
        """Observe *breaker*'s ``state`` at each collection, from before its first transition.

        Args:
            breaker: A named ``resilient`` circuit breaker; held weakly.

        Raises:
            TypeError: It has no ``state`` attribute.
            ValueError: It has no name, or another tracked breaker has its name.
        """
        self._breakers.add(breaker, ("state",))

    def __call__(self, event: Event) -> None:
        """Record *event* as metrics and (for spans) buffer or finish its call.

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
                RetryScheduled: self._retry,
                RetriesExhausted: self._exhausted_event,
                TimeoutElapsed: self._timeout,
                CallRejected: self._rejected,
                FallbackUsed: self._fallback,
                CircuitStateChanged: self._circuit,
            }
            metric = next((table[b] for b in cls.__mro__ if b in table), None)
        span: Callable[[Any], None] | None = None
        if recorder is not None and issubclass(cls, Event):
            span = recorder.finish if issubclass(cls, (CallSucceeded, CallFailed)) else recorder.buffer
        if metric is None:
            return span or _ignore
        if span is None:
            return metric
        first, second = metric, span

        def both(event: Any) -> None:
            first(event)
            second(event)

        return both

    def _call(self, ev: CallSucceeded | CallFailed) -> None:
        attrs = _attrs(ev)
        attrs["resilient.outcome"] = "failure" if isinstance(ev, CallFailed) else "success"
        self._calls.add(1, attrs)
        self._duration.record(ev.duration, attrs)

    def _retry(self, ev: RetryScheduled) -> None:
        self._retries.add(1, _attrs(ev))

    def _exhausted_event(self, ev: RetriesExhausted) -> None:
        attrs = _attrs(ev)
        attrs["resilient.reason"] = ev.reason
        self._exhausted.add(1, attrs)

    def _timeout(self, ev: TimeoutElapsed) -> None:
        self._timeouts.add(1, _attrs(ev))

    def _rejected(self, ev: CallRejected) -> None:
        attrs = _attrs(ev)
        attrs["resilient.policy"] = ev.policy
        self._rejections.add(1, attrs)

    def _fallback(self, ev: FallbackUsed) -> None:
        self._fallbacks.add(1, _attrs(ev))

    def _circuit(self, ev: CircuitStateChanged) -> None:
        attrs = {"resilient.circuit.state": ev.state.value}
        if ev.name is not None:
            attrs["resilient.name"] = ev.name
        self._transitions.add(1, attrs)
        with self._lock:
            self._circuits[ev.name or ""] = ev.state

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
        return attach(self, (Event,) if self.traces else _EVENTS, bus)


def _ignore(event: Event) -> None:
    return None
