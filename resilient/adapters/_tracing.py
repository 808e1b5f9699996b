"""Spans for :class:`~resilient.adapters.opentelemetry.OpenTelemetryAdapter`.

The bus has no "call started" event: the pipeline reports a call once, at its
end (``CallSucceeded``/``CallFailed``, with the duration). So the span is
made retroactively: at the end, with ``start_time = end - duration``. Events
emitted during the call (retries, timeouts, breaker transitions,
rejections, fallbacks) are buffered per running call — keyed by the
:class:`~resilient.CallContext` that ``current_call()`` returns while the
event is delivered (sync handlers run inline, inside the call) — and become
span events with timestamps placed by their clock readings relative to the
end of the call.

Buffered entries hold only strings and numbers (never the exception, its
traceback or frames). A call that is cancelled emits no end event, so its
entry stays until ``max_pending`` newer calls push it out.
"""

from __future__ import annotations

import dataclasses
import enum
import threading
import time
from collections import OrderedDict
from typing import Any

from resilient._context import CallContext, current_call
from resilient._events import CallFailed, CallSucceeded, Event, FallbackUsed, RetryScheduled
from resilient.adapters._common import event_kind, exception_type

__all__ = ["SpanRecorder", "span_event_attributes"]

_BASE = frozenset({"policy", "name", "operation", "time"})
_NS = 1_000_000_000


def _text(exc: BaseException) -> str:
    """``str(exc)``, or a placeholder when the exception cannot print itself."""
    try:
        return str(exc)
    except Exception:
        return f"<unprintable {type(exc).__name__}>"


def _message(exc: BaseException) -> str:
    text = _text(exc)
    return text if len(text) <= 1000 else text[:997] + "..."


def span_event_attributes(event: Event) -> dict[str, Any]:
    """Return OpenTelemetry attributes for *event* as a span event.

    ``resilient.policy`` and ``resilient.name`` (when set), then each of the
    event's own fields as ``resilient.<field>``; an exception becomes the
    semantic-convention pair ``exception.type`` / ``exception.message``, an
    enum its value, any other non-scalar its repr. ``None`` is left out
    (OpenTelemetry attributes cannot be null).

    Args:
        event: Any event.

    Returns:
        The attributes.
    """
    attrs: dict[str, Any] = {"resilient.policy": event.policy}
    if event.name is not None:
        attrs["resilient.name"] = event.name
    for f in dataclasses.fields(event):
        if f.name in _BASE:
            continue
        value = getattr(event, f.name)
        if value is None:
            continue
        if isinstance(value, BaseException):
            attrs["exception.type"] = exception_type(value)
            attrs["exception.message"] = _message(value)
        elif isinstance(value, enum.Enum):
            attrs[f"resilient.{f.name}"] = value.value
        elif isinstance(value, (bool, int, float, str)):
            attrs[f"resilient.{f.name}"] = value
        else:
            text = repr(value)
            attrs[f"resilient.{f.name}"] = text if len(text) <= 200 else text[:197] + "..."
    return attrs


class _Buffered:
    """What a span needs from one event: its kind, attributes and clock reading."""

    __slots__ = ("attrs", "delay", "kind", "time")

    def __init__(self, event: Event) -> None:
        self.kind = event_kind(type(event))
        self.attrs = span_event_attributes(event)
        self.time = event.time
        # The backoff wait that starts here; the next attempt begins after it.
        self.delay = event.delay if isinstance(event, RetryScheduled) else None


class SpanRecorder:
    """Buffers the events of running calls and turns each finished call into a span.

    Args:
        tracer: An OpenTelemetry tracer.
        trace_api: The ``opentelemetry.trace`` module.
        max_pending: Most calls buffered at once; beyond, the oldest entry
            (typically a cancelled call's) is dropped.
    """

    def __init__(self, tracer: Any, trace_api: Any, max_pending: int) -> None:
        self._tracer = tracer
        self._trace = trace_api
        self._max = max_pending
        self._lock = threading.Lock()
        self._pending: OrderedDict[int, tuple[CallContext, list[_Buffered]]] = OrderedDict()

    @property
    def pending(self) -> int:
        """Calls with buffered events that have not finished (or were cancelled)."""
        return len(self._pending)

    def buffer(self, event: Event) -> None:
        """Keep *event* for the span of the call it happens in (if any).

        Args:
            event: An event emitted during a pipeline call.
        """
        ctx = current_call()
        if ctx is None:
            return  # a policy used as a context manager outside any call: no span to join
        item = _Buffered(event)
        key = id(ctx)
        with self._lock:
            entry = self._pending.get(key)
            if entry is None or entry[0] is not ctx:
                entry = (ctx, [])
                self._pending[key] = entry
                if len(self._pending) > self._max:
                    self._pending.popitem(last=False)
            entry[1].append(item)

    def _take(self, ctx: CallContext | None) -> list[_Buffered]:
        if ctx is None:
            return []
        with self._lock:
            entry = self._pending.get(id(ctx))
            if entry is None or entry[0] is not ctx:
                return []
            del self._pending[id(ctx)]
        return entry[1]

    def finish(self, event: CallSucceeded | CallFailed) -> None:
        """Record the span of the call that *event* ends.

        Args:
            event: The pipeline's end-of-call event.
        """
        ctx = current_call()
        items = self._take(ctx)
        end_ns = time.time_ns()
        start_ns = end_ns - max(0, round(event.duration * _NS))
        failed = isinstance(event, CallFailed)
        fell_back = any(i.kind == event_kind(FallbackUsed) for i in items)
        retries = sum(1 for i in items if i.delay is not None)
        attrs: dict[str, Any] = {
            "resilient.outcome": "failure" if failed else ("fallback" if fell_back else "success"),
            "resilient.retries": retries,
        }
        if event.operation is not None:
            attrs["resilient.operation"] = event.operation
        if event.name is not None:
            attrs["resilient.name"] = event.name
        if ctx is not None:
            attrs["resilient.attempts"] = ctx.attempt
            attrs["resilient.policies"] = [p.kind for p in ctx.pipeline.policies]
        if isinstance(event, CallFailed):
            attrs["error.type"] = exception_type(event.exception)
        name = event.operation or event.name or "resilient.call"
        span = self._tracer.start_span(
            name, kind=self._trace.SpanKind.INTERNAL, attributes=attrs, start_time=start_ns
        )

        def wall(t: float) -> int:
            # Clock readings are relative to the end event's reading; clamp so
            # a policy on another clock cannot place an event outside the span.
            return min(end_ns, max(start_ns, end_ns - round((event.time - t) * _NS)))

        attempt = 1
        span.add_event("resilient.attempt", {"resilient.attempt": attempt}, timestamp=start_ns)
        for item in items:
            span.add_event(f"resilient.{item.kind}", item.attrs, timestamp=wall(item.time))
            if item.delay is not None:
                attempt += 1
                span.add_event(
                    "resilient.attempt",
                    {"resilient.attempt": attempt},
                    timestamp=wall(item.time + item.delay),
                )
        if isinstance(event, CallFailed):
            exc = event.exception
            try:
                span.record_exception(exc, timestamp=end_ns)
            except Exception:  # the SDK formats the exception; it may not print
                span.add_event("exception", {"exception.type": type(exc).__name__}, timestamp=end_ns)
            text = _text(exc)
            description = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, description))
        span.end(end_time=end_ns)
