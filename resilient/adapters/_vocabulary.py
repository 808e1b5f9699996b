"""The one metric vocabulary both metric adapters implement.

:class:`~resilient.adapters.prometheus.PrometheusAdapter` and
:class:`~resilient.adapters.opentelemetry.OpenTelemetryAdapter` build their
metrics from :data:`METRICS`, so the Prometheus exposition of the first and
the OpenTelemetry-to-Prometheus exposition of the second (the
``opentelemetry-exporter-prometheus`` conversion: dots become underscores,
``_total`` for counters, a unit suffix such as ``_seconds``, annotations such
as ``{call}`` dropped) have the same names, label names and label values.

Metric attribute keys are plain (``operation``, ``name``, ``outcome``...)
rather than ``resilient.``-prefixed: the metric name already carries the
namespace, and a prefix would reach Prometheus as ``resilient_operation``.
``error.type`` is OpenTelemetry's semantic convention (``error_type`` in
Prometheus).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any, cast

from resilient._context import CallContext
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
    FallbackUsed,
    HedgeStarted,
    RetriesExhausted,
    RetryScheduled,
    TimeoutElapsed,
)
from resilient._numbers import describe
from resilient.adapters._common import call_of

__all__ = [
    "METRICS",
    "METRIC_EVENTS",
    "Metric",
    "attribute_values",
    "call_labels",
    "check_metric_attributes",
    "label_value",
    "prometheus_label",
    "text_label",
]


class Metric:
    """One metric of the vocabulary.

    Attributes:
        otel: The OpenTelemetry instrument name (``resilient.calls``).
        prom: The Prometheus name after the namespace, before ``_total``
            (``calls``; ``call_duration_seconds`` for the histogram).
        kind: ``"counter"``, ``"histogram"`` or ``"gauge"``.
        unit: The OpenTelemetry unit (UCUM; ``{call}`` is an annotation).
        labels: The attribute keys, in OpenTelemetry spelling.
        per_call: True if the call's allow-listed attributes are added.
        help: The description.
    """

    __slots__ = ("help", "kind", "labels", "otel", "per_call", "prom", "unit")

    def __init__(
        self,
        otel: str,
        prom: str,
        kind: str,
        unit: str,
        labels: tuple[str, ...],
        help: str,
        *,
        per_call: bool = False,
    ) -> None:
        self.otel = otel
        self.prom = prom
        self.kind = kind
        self.unit = unit
        self.labels = labels
        self.per_call = per_call
        self.help = help

    @property
    def prom_labels(self) -> tuple[str, ...]:
        """The label names in Prometheus spelling (``error.type`` -> ``error_type``)."""
        return tuple(prometheus_label(k) for k in self.labels)


_CALL = ("operation", "name")

METRIC_EVENTS: tuple[type[Event], ...] = (
    CallSucceeded,
    CallFailed,
    CallCancelled,
    RetryScheduled,
    RetriesExhausted,
    TimeoutElapsed,
    CallRejected,
    FallbackUsed,
    HedgeStarted,
    ChaosInjected,
    CircuitStateChanged,
    BackendDegraded,
    BackendRecovered,
    BackendStateLost,
)
"""The events both metric adapters subscribe to (the OpenTelemetry one all of them when it traces)."""

METRICS: dict[str, Metric] = {
    m.otel: m
    for m in (
        Metric(
            "resilient.calls",
            "calls",
            "counter",
            "{call}",
            (*_CALL, "outcome"),
            "Outer pipeline calls, by outcome (success, fallback, failure, cancelled).",
            per_call=True,
        ),
        Metric(
            "resilient.call.duration",
            "call_duration_seconds",
            "histogram",
            "s",
            (*_CALL, "outcome", "error.type"),
            "Duration of outer pipeline calls.",
            per_call=True,
        ),
        Metric(
            "resilient.retries", "retries", "counter", "{retry}", _CALL, "Retries scheduled.", per_call=True
        ),
        Metric(
            "resilient.retries_exhausted",
            "retries_exhausted",
            "counter",
            "{call}",
            (*_CALL, "reason"),
            "Calls on which retry gave up, by reason.",
            per_call=True,
        ),
        Metric(
            "resilient.timeouts",
            "timeouts",
            "counter",
            "{timeout}",
            _CALL,
            "Timeouts that expired.",
            per_call=True,
        ),
        Metric(
            "resilient.rejections",
            "rejections",
            "counter",
            "{call}",
            (*_CALL, "policy"),
            "Calls rejected without running, by rejecting policy.",
            per_call=True,
        ),
        Metric(
            "resilient.fallbacks",
            "fallbacks",
            "counter",
            "{call}",
            _CALL,
            "Failures replaced by a fallback.",
            per_call=True,
        ),
        Metric(
            "resilient.hedges",
            "hedges",
            "counter",
            "{attempt}",
            (*_CALL, "reason"),
            "Hedged attempts started after the first, by reason (delay, failure).",
            per_call=True,
        ),
        Metric(
            "resilient.chaos.injections",
            "chaos_injections",
            "counter",
            "{injection}",
            (*_CALL, "kind"),
            "Faults, latencies and results injected by chaos policies, by kind.",
            per_call=True,
        ),
        Metric(
            "resilient.circuit.transitions",
            "circuit_transitions",
            "counter",
            "{transition}",
            ("name", "state"),
            "Circuit breaker state changes, by new state.",
        ),
        Metric(
            "resilient.circuit.state",
            "circuit_state",
            "gauge",
            "{state}",
            ("name", "state"),
            "Circuit breaker state (1 for the current state, 0 for the others).",
        ),
        Metric(
            "resilient.bulkhead.in_use",
            "bulkhead_in_use",
            "gauge",
            "{call}",
            ("name",),
            "Calls running inside a tracked bulkhead.",
        ),
        Metric(
            "resilient.bulkhead.queued",
            "bulkhead_queued",
            "gauge",
            "{call}",
            ("name",),
            "Calls waiting for a tracked bulkhead's slot.",
        ),
        Metric(
            "resilient.bulkhead.max_concurrent",
            "bulkhead_max_concurrent",
            "gauge",
            "{call}",
            ("name",),
            "A tracked bulkhead's capacity.",
        ),
        Metric(
            "resilient.backend.degraded",
            "backend_degraded",
            "gauge",
            "{backend}",
            ("policy", "name"),
            "1 while a policy's shared backend is not answering.",
        ),
        Metric(
            "resilient.backend.state_lost",
            "backend_state_lost",
            "counter",
            "{loss}",
            ("policy", "name"),
            "Shared states a backend lost (restart, flush, eviction), as noticed by this process.",
        ),
    )
}
"""Every metric, by OpenTelemetry name."""

_NOT_LABEL = re.compile(r"[^a-zA-Z0-9]+")


def prometheus_label(key: str) -> str:
    """Return the Prometheus label name of an attribute key, as the OpenTelemetry exporter writes it.

    Runs of characters other than ASCII letters and digits become one
    ``_`` (``server.address`` -> ``server_address``); a leading digit is
    replaced by ``_``.

    Args:
        key: An attribute key.

    Returns:
        The label name.
    """
    if key and key[0].isdigit():
        key = "_" + key[1:]
    return _NOT_LABEL.sub("_", key)


_RESERVED = frozenset(p for m in METRICS.values() for p in m.prom_labels) | {"le", "quantile"}


def label_value(value: object) -> str:
    """Return an attribute value as a label value, as the OpenTelemetry exporter writes it.

    Args:
        value: A str, bool, int or float (None for a missing attribute).

    Returns:
        The string itself (see :func:`text_label`); ``""`` for None; JSON
        otherwise (``true``, ``3``, ``0.5``), or ``<int of N bits>`` for an
        int too long to print.
    """
    if value is None:
        return ""
    if isinstance(value, str):
        return text_label(value)
    try:
        return json.dumps(value, default=str)
    except ValueError:  # an int of more digits than str() converts: the one value json refuses
        return f"<int of {cast(int, value).bit_length()} bits>"


def text_label(value: str) -> str:
    r"""Return *value* as text every exposition can encode: lone surrogates become ``\udcXX`` escapes.

    A str may hold a lone surrogate (bytes decoded with ``surrogateescape``,
    a ``"\udce9"`` escape in a JSON configuration). As a label it would make
    every later scrape of the whole registry fail to encode.

    Args:
        value: A label value.

    Returns:
        *value* itself when it is valid text (the common case), else escaped.
    """
    if value.isascii():
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value


def check_metric_attributes(param: str, keys: Sequence[str]) -> tuple[str, ...]:
    """Validate the per-call attribute keys allowed on metrics.

    Args:
        param: The parameter name for error messages.
        keys: Attribute keys (``["server.address"]``).

    Returns:
        The keys, as a tuple.

    Raises:
        TypeError: *keys* is not a sequence of str.
        ValueError: A key is empty, repeated, or its label collides with a
            built-in label (``operation``, ``error_type``...) or another key's.
    """
    if isinstance(keys, (str, bytes)) or not isinstance(keys, Sequence):
        raise TypeError(f"{param} must be a sequence of attribute names, got {describe(keys)}")
    seen: dict[str, str] = {}
    for key in keys:
        if not isinstance(key, str):
            raise TypeError(f"{param} must hold attribute names (str), got {describe(key)}")
        label = prometheus_label(key)
        if not key or label.startswith("__") or label == "_":
            raise ValueError(f"{param}: {describe(key, typed=False)} is not a usable attribute name")
        if label in _RESERVED:
            raise ValueError(
                f"{param}: {describe(key, typed=False)} would become the built-in label {label!r}"
            )
        if label in seen:
            raise ValueError(
                f"{param}: {describe(key, typed=False)} and {describe(seen[label], typed=False)} "
                f"would both become the label {label!r}"
            )
        seen[label] = key
    return tuple(keys)


def call_labels(event: Event) -> tuple[str, CallContext | None]:
    """Return the operation label of *event* and the call it belongs to, if any.

    Inside a pipeline call (a sync handler runs inline), an event of that
    call is labelled with the call's module-qualified name
    (:attr:`~resilient.CallContext.full_name`) and carries its context for
    the outcome and the allow-listed attributes. Anything else (a policy
    used as ``async with``) keeps its own ``operation``, ``""`` when unset.

    Args:
        event: Any event.

    Returns:
        ``(operation label, context or None)``.
    """
    ctx = call_of(event)
    if ctx is not None and ctx.operation == event.operation:
        return ctx.full_name, ctx
    return event.operation or "", None


def attribute_values(ctx: CallContext | None, keys: tuple[str, ...]) -> tuple[str, ...]:
    """The label values of the allow-listed *keys* for the call *ctx* (``""`` when missing)."""
    if ctx is None:
        return ("",) * len(keys)
    attributes: Any = ctx.attributes
    return tuple(label_value(attributes.get(k)) for k in keys)
