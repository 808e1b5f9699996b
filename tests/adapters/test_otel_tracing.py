"""OpenTelemetryAdapter spans are live: opened as a call starts, current while it runs, closed at its end."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.instrumentation.httpx import AsyncOpenTelemetryTransport, SyncOpenTelemetryTransport
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import resilient
from resilient.adapters.opentelemetry import OpenTelemetryAdapter
from resilient.events import EventBus
from resilient.testing import FakeClock


@pytest.fixture
def adapter(tracer_provider: TracerProvider, bus: EventBus) -> OpenTelemetryAdapter:
    """A traces-only adapter on the SDK tracer provider, attached to the test's bus."""
    a = OpenTelemetryAdapter(tracer_provider=tracer_provider, metrics=False)
    a.attach(bus)
    return a


def spans(exporter: InMemorySpanExporter) -> dict[str, list[ReadableSpan]]:
    """Finished spans by name."""
    out: dict[str, list[ReadableSpan]] = {}
    for s in exporter.get_finished_spans():
        out.setdefault(s.name, []).append(s)
    return out


def parent_id(span: ReadableSpan) -> int | None:
    """The span id of *span*'s parent, or None for a root."""
    return None if span.parent is None else span.parent.span_id


def span_id(span: ReadableSpan) -> int:
    """The span's own id."""
    found: int = span.context.span_id
    return found


def answer(request: httpx.Request) -> httpx.Response:
    """The mock server: 200 with a tiny JSON body."""
    return httpx.Response(200, json={"name": "alice"})


def full(fn: Callable[..., Any]) -> str:
    """The module-qualified name a guarded function's spans carry."""
    return f"{fn.__module__}.{fn.__qualname__}"


def test_body_and_httpx_spans_are_children_of_the_resilient_span(
    clock: FakeClock,
    bus: EventBus,
    adapter: OpenTelemetryAdapter,
    tracer_provider: TracerProvider,
    exporter: Any,
) -> None:
    """A span made inside the function and an instrumented httpx request are children of the call's span."""
    tracer = tracer_provider.get_tracer("app")
    client = httpx.Client(transport=SyncOpenTelemetryTransport(httpx.MockTransport(answer), tracer_provider))
    failures = [ConnectionError("refused")]

    @resilient.retry(attempts=3, backoff=0.1, clock=clock, bus=bus)
    def fetch_user() -> Any:
        with tracer.start_as_current_span("parse"):
            body = client.get("http://users.test/alice").json()
        if failures:
            raise failures.pop()
        return body

    with tracer.start_as_current_span("request"):
        assert fetch_user() == {"name": "alice"}
    found = spans(exporter)
    (request,), (call,), parses, gets = (
        found["request"],
        found[full(fetch_user)],
        found["parse"],
        found["GET"],
    )
    assert (
        parent_id(call),
        [parent_id(p) for p in parses],
        [parent_id(g) for g in gets],
    ) == (span_id(request), [span_id(call)] * 2, [span_id(p) for p in parses])


async def test_async_httpx_request_is_a_child_of_the_resilient_span(
    bus: EventBus, adapter: OpenTelemetryAdapter, tracer_provider: TracerProvider, exporter: Any
) -> None:
    """An instrumented httpx.AsyncClient request made by a guarded coroutine is a child of its span."""
    transport = AsyncOpenTelemetryTransport(httpx.MockTransport(answer), tracer_provider)
    tracer = tracer_provider.get_tracer("app")

    @resilient.timeout(5, bus=bus)
    async def fetch_user() -> Any:
        async with httpx.AsyncClient(transport=transport) as client:
            return (await client.get("http://users.test/alice")).json()

    with tracer.start_as_current_span("request"):
        assert await fetch_user() == {"name": "alice"}
    found = spans(exporter)
    (request,), (call,), (get,) = found["request"], found[full(fetch_user)], found["GET"]
    assert (parent_id(call), parent_id(get), get.context.trace_id) == (
        span_id(request),
        span_id(call),
        request.context.trace_id,
    )


def test_span_encloses_the_body(
    bus: EventBus, adapter: OpenTelemetryAdapter, tracer_provider: TracerProvider, exporter: Any
) -> None:
    """The call's span starts before the first attempt's work and ends after the last."""
    tracer = tracer_provider.get_tracer("app")

    @resilient.retry(bus=bus)
    def fetch_user() -> None:
        with tracer.start_as_current_span("work"):
            pass

    fetch_user()
    found = spans(exporter)
    (call,), (work,) = found[full(fetch_user)], found["work"]
    bounds = (call.start_time, work.start_time, work.end_time, call.end_time)
    assert None not in bounds
    assert list(bounds) == sorted(bounds)  # type: ignore[type-var]


@pytest.mark.parametrize(
    ("raised", "outcome"),
    [(None, "success"), (ConnectionError("refused"), "failure"), (KeyboardInterrupt(), "cancelled")],
)
def test_context_restored_in_every_outcome(
    bus: EventBus,
    adapter: OpenTelemetryAdapter,
    tracer_provider: TracerProvider,
    exporter: Any,
    raised: BaseException | None,
    outcome: str,
) -> None:
    """After a call returns or raises (a BaseException too) the caller's span is current again."""
    tracer = tracer_provider.get_tracer("app")

    @resilient.retry(attempts=1, bus=bus)
    def fetch_user() -> None:
        if raised is not None:
            raise raised

    with tracer.start_as_current_span("request") as request:
        try:
            fetch_user()
        except BaseException as exc:
            caught: BaseException | None = exc
        else:
            caught = None
        current = trace.get_current_span()
    (call,) = spans(exporter)[full(fetch_user)]
    assert (caught is raised, current is request, (call.attributes or {})["resilient.outcome"]) == (
        True,
        True,
        outcome,
    )


async def test_cancelled_call_ends_its_span_as_cancelled(
    bus: EventBus, adapter: OpenTelemetryAdapter, tracer_provider: TracerProvider, exporter: Any
) -> None:
    """A cancelled call's span ends as "cancelled" with an error status; then the caller's span is current."""
    tracer = tracer_provider.get_tracer("app")
    entered = asyncio.Event()
    after: list[object] = []

    @resilient.retry(bus=bus)
    async def fetch_user() -> None:
        entered.set()
        await asyncio.Event().wait()

    async def caller() -> None:
        with tracer.start_as_current_span("request") as request:
            try:
                await fetch_user()
            finally:
                after.append(trace.get_current_span() is request)

    task = asyncio.create_task(caller())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    (call,) = spans(exporter)[full(fetch_user)]
    attrs = call.attributes or {}
    assert (after, attrs["resilient.outcome"], attrs["error.type"], call.status.status_code) == (
        [True],
        "cancelled",
        "asyncio.exceptions.CancelledError",
        StatusCode.ERROR,
    )


def test_nested_calls_nest_their_spans(
    bus: EventBus, adapter: OpenTelemetryAdapter, tracer_provider: TracerProvider, exporter: Any
) -> None:
    """A guarded call made inside another guarded call gets a span that is a child of the outer one."""
    tracer = tracer_provider.get_tracer("app")

    @resilient.retry(bus=bus, name="inner")
    def inner() -> None:
        with tracer.start_as_current_span("query"):
            pass

    @resilient.retry(bus=bus, name="outer")
    def outer() -> None:
        inner()
        inner()

    with tracer.start_as_current_span("request"):
        outer()
    found = spans(exporter)
    (request,), (out,), inners, queries = (
        found["request"],
        found[full(outer)],
        found[full(inner)],
        found["query"],
    )
    assert (parent_id(out), [parent_id(i) for i in inners], [parent_id(q) for q in queries]) == (
        span_id(request),
        [span_id(out)] * 2,
        [span_id(i) for i in inners],
    )


async def test_concurrent_calls_keep_their_own_spans(
    bus: EventBus, adapter: OpenTelemetryAdapter, tracer_provider: TracerProvider, exporter: Any
) -> None:
    """Interleaved calls in two tasks each parent their own body spans."""
    tracer = tracer_provider.get_tracer("app")

    @resilient.timeout(5, bus=bus)
    async def fetch_user(key: str) -> None:
        with tracer.start_as_current_span(f"work-{key}"):
            await asyncio.sleep(0)
            await asyncio.sleep(0)

    await asyncio.gather(fetch_user("a"), fetch_user("b"))
    found = spans(exporter)
    calls = {span_id(c) for c in found[full(fetch_user)]}
    parents = {parent_id(found["work-a"][0]), parent_id(found["work-b"][0])}
    assert (len(calls), parents) == (2, calls)


def test_calls_in_threads_keep_their_own_spans(
    bus: EventBus, adapter: OpenTelemetryAdapter, tracer_provider: TracerProvider, exporter: Any
) -> None:
    """Sync calls running at once in two threads each parent their own body spans."""
    tracer = tracer_provider.get_tracer("app")
    both = threading.Barrier(2)

    @resilient.retry(bus=bus)
    def fetch_user(key: str) -> None:
        with tracer.start_as_current_span(f"work-{key}"):
            both.wait(timeout=5)

    threads = [threading.Thread(target=fetch_user, args=(k,)) for k in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    found = spans(exporter)
    calls = {span_id(c) for c in found[full(fetch_user)]}
    parents = {parent_id(found["work-a"][0]), parent_id(found["work-b"][0])}
    assert (len(calls), parents) == (2, calls)


def test_detaching_mid_call_still_ends_the_span(
    bus: EventBus, tracer_provider: TracerProvider, exporter: Any
) -> None:
    """An adapter unsubscribed while a call runs still ends that call's span and restores the context."""
    tracer = tracer_provider.get_tracer("app")
    subscription = OpenTelemetryAdapter(tracer_provider=tracer_provider, metrics=False).attach(bus)

    @resilient.retry(bus=bus)
    def fetch_user() -> None:
        subscription.unsubscribe()

    with tracer.start_as_current_span("request") as request:
        fetch_user()
        current = trace.get_current_span()
    assert (len(spans(exporter)[full(fetch_user)]), current is request) == (1, True)


def test_attaching_mid_call_changes_nothing_for_that_call(
    bus: EventBus, tracer_provider: TracerProvider, exporter: Any
) -> None:
    """An adapter attached mid-call makes no span for that call (it missed its start); the next has one."""
    tracer = tracer_provider.get_tracer("app")
    adapter = OpenTelemetryAdapter(tracer_provider=tracer_provider, metrics=False)
    failures = [ConnectionError("refused")]

    @resilient.retry(attempts=2, backoff=0.0, bus=bus)
    def fetch_user() -> None:
        if failures:
            adapter.attach(bus)
            raise failures.pop()

    with tracer.start_as_current_span("request") as request:
        fetch_user()
        current = trace.get_current_span()
        first = spans(exporter).get(full(fetch_user), [])
        fetch_user()
    assert (first, len(spans(exporter)[full(fetch_user)]), current is request) == ([], 1, True)


def test_call_attributes_on_the_span(bus: EventBus, adapter: OpenTelemetryAdapter, exporter: Any) -> None:
    """The call's attributes (from attributes= and set_attribute) are span attributes."""

    @resilient.pipeline(resilient.retry(bus=bus), bus=bus, attributes=lambda user: {"user.id": user})
    def fetch_user(user: str) -> None:
        ctx = resilient.current_call()
        assert ctx is not None
        ctx.set_attribute("db.shard", 3)

    fetch_user("alice")
    attrs = spans(exporter)[full(fetch_user)][0].attributes or {}
    assert (attrs["user.id"], attrs["db.shard"], attrs["code.function.name"]) == (
        "alice",
        3,
        full(fetch_user),
    )
