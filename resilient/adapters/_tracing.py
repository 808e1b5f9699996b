"""Spans for :class:`~resilient.adapters.opentelemetry.OpenTelemetryAdapter`.

A span is opened when the call starts (``CallStarted``, delivered inline in
the caller's task or thread before the function runs) and made current, so
every span the function creates (an HTTP client's, a database driver's, the
spans of a guarded call nested inside) is its child. The pipeline closes it
through :meth:`~resilient.CallContext.on_exit` when the call ends, however it
ends (success, failure, cancellation, any ``BaseException``), restoring the
caller's context, even if the adapter was detached while the call ran.

The policies' events during the call (retries, timeouts, breaker
transitions, rejections, fallbacks) become span events as they happen, on
the span of the call they belong to (the :class:`~resilient.CallContext`
that ``current_call()`` finds while the event is delivered). Timestamps
come from the policies' clock, relative to the call's start: in production
that is the monotonic clock, and with a ``FakeClock`` a 0.25 s backoff
shows as 0.25 s in the trace.

Attempts and backoff waits are span events rather than child spans (a
documented choice: one span per call keeps traces small, and the function's
own spans stay direct children of the call): ``resilient.attempt`` when an
attempt starts, ``resilient.retry_scheduled`` (with ``resilient.delay``)
when a backoff wait starts.
"""

from __future__ import annotations

import dataclasses
import enum
import time
from typing import Any

from resilient._context import CallContext, current_call
from resilient._events import CallStarted, Event, RetryScheduled
from resilient.adapters._common import call_of, event_kind, exception_type

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


class _Live:
    """One running call's span: where it started, on the wall and on the call's clock."""

    __slots__ = ("ctx", "next_attempt", "retries", "span", "start_ns", "t0", "token")

    def __init__(self, ctx: CallContext, span: Any, token: object, start_ns: int, t0: float) -> None:
        self.ctx = ctx
        self.span = span
        self.token = token
        self.start_ns = start_ns
        self.t0 = t0
        self.retries = 0
        # (wall time the backoff wait ends, attempt number): added once
        # something later happens, or at the end if the wait was not cut short.
        self.next_attempt: tuple[int, int] | None = None

    def wall(self, t: float) -> int:
        """The wall time (ns) of clock reading *t*, never before the span's start."""
        return max(self.start_ns, self.start_ns + round((t - self.t0) * _NS))

    def settle_attempt(self, now_ns: int) -> None:
        """Add the pending ``resilient.attempt`` event if its backoff wait ended by *now_ns*."""
        pending = self.next_attempt
        if pending is not None and pending[0] <= now_ns:
            self.next_attempt = None
            self.span.add_event("resilient.attempt", {"resilient.attempt": pending[1]}, timestamp=pending[0])


class SpanRecorder:
    """Opens a span as each observed call starts, records its events, closes it at the end.

    Args:
        tracer: An OpenTelemetry tracer.
        trace_api: The ``opentelemetry.trace`` module.
        context_api: The ``opentelemetry.context`` module.
    """

    def __init__(self, tracer: Any, trace_api: Any, context_api: Any) -> None:
        self._tracer = tracer
        self._trace = trace_api
        self._context = context_api
        # id(ctx) -> the running call's span; an entry lives exactly as long as its call.
        self._live: dict[int, _Live] = {}

    @property
    def running(self) -> int:
        """Calls whose span is open."""
        return len(self._live)

    def start(self, event: CallStarted) -> None:
        """Open the span of the call *event* starts and make it current for the call.

        Args:
            event: The pipeline's ``CallStarted``, delivered inline.
        """
        ctx = call_of(event)
        if ctx is None or ctx.shared:
            return  # delivered outside its call (an async handler, a hand-made event)
        start_ns = time.time_ns()
        attrs: dict[str, Any] = dict(ctx.attributes)
        attrs["resilient.operation"] = ctx.full_name
        attrs["code.function.name"] = ctx.full_name
        if event.name is not None:
            attrs["resilient.name"] = event.name
        attrs["resilient.policies"] = [p.kind for p in ctx.pipeline.policies]
        span = self._tracer.start_span(
            ctx.full_name, kind=self._trace.SpanKind.INTERNAL, attributes=attrs, start_time=start_ns
        )
        token = self._context.attach(self._trace.set_span_in_context(span))
        live = _Live(ctx, span, token, start_ns, event.time)
        self._live[id(ctx)] = live
        span.add_event("resilient.attempt", {"resilient.attempt": 1}, timestamp=start_ns)
        ctx.on_exit(lambda exc: self._end(live, exc))

    def record(self, event: Event) -> None:
        """Add *event* to the span of the call it happens in (if that call has one).

        Args:
            event: An event emitted during a pipeline call.
        """
        ctx = current_call()
        if ctx is None:
            return  # a policy used as a context manager outside any call: no span to join
        ctx = ctx.origin  # inside a hedged attempt: the call's own context
        live = self._live.get(id(ctx))
        if live is None or live.ctx is not ctx:
            return  # a call that started before this adapter was attached
        at = live.wall(event.time)
        live.settle_attempt(at)
        name = f"resilient.{event_kind(type(event))}"
        live.span.add_event(name, span_event_attributes(event), timestamp=at)
        if isinstance(event, RetryScheduled):
            live.retries += 1
            live.next_attempt = (live.wall(event.time + event.delay), event.attempt + 1)

    def _end(self, live: _Live, exc: BaseException | None) -> None:
        ctx = live.ctx
        self._live.pop(id(ctx), None)
        span = live.span
        end_ns = live.wall(ctx.pipeline.clock.monotonic())
        live.settle_attempt(end_ns)
        attrs: dict[str, Any] = dict(ctx.attributes)
        attrs["resilient.attempts"] = ctx.attempt
        attrs["resilient.retries"] = live.retries
        if exc is None:
            attrs["resilient.outcome"] = "fallback" if ctx.fallback_used else "success"
        elif isinstance(exc, Exception):
            attrs["resilient.outcome"] = "failure"
            attrs["error.type"] = exception_type(exc)
            try:
                span.record_exception(exc, timestamp=end_ns)
            except Exception:  # the SDK formats the exception; it may not print
                span.add_event("exception", {"exception.type": type(exc).__name__}, timestamp=end_ns)
            text = _text(exc)
            description = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, description))
        else:
            # Not a failure of the dependency, but the call did not complete:
            # an UNSET status would show it as a success.
            attrs["resilient.outcome"] = "cancelled"
            attrs["error.type"] = exception_type(exc)
            description = f"cancelled ({type(exc).__name__})"
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, description))
        span.set_attributes(attrs)
        span.end(end_time=end_ns)
        self._context.detach(live.token)
