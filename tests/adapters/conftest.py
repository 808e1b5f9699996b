"""Fixtures shared by the adapter tests: a private bus and guarded functions that fail on cue."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import resilient
from resilient.events import EventBus
from resilient.testing import FakeClock


@pytest.fixture
def bus() -> EventBus:
    """A fresh bus, so adapters under test see only their test's events."""
    return EventBus()


class Flaky:
    """A function that raises ``ConnectionError('refused')`` for its first *failures* calls."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    def step(self) -> str:
        """Count a call; raise while failures remain, else return ``"ok"``."""
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError("refused")
        return "ok"


Runner = Callable[..., Any]


@pytest.fixture(params=["async", "sync"])
def run_guarded(request: pytest.FixtureRequest, clock: FakeClock, bus: EventBus) -> Runner:
    """Run ``app.fetch_user`` (failing *failures* times) behind *policies*, as an async or a sync function.

    Call it as ``run_guarded(failures, *policies)``; it returns the result or
    the raised exception. Policies must be built with ``bus=bus`` and
    ``clock=clock`` by the test.
    """
    is_async = request.param == "async"

    def run(failures: int, *policies: resilient.Policy) -> Any:
        flaky = Flaky(failures)
        pipe = resilient.pipeline(*policies, bus=bus, clock=clock)
        if is_async:

            async def fetch_user() -> str:
                return flaky.step()

            fetch_user.__qualname__ = "fetch_user"
            fetch_user.__module__ = "app"
            guarded_async = pipe(fetch_user)
            try:
                return asyncio.run(guarded_async())
            except Exception as exc:
                return exc

        def fetch_user_sync() -> str:
            return flaky.step()

        fetch_user_sync.__qualname__ = "fetch_user"
        fetch_user_sync.__module__ = "app"
        guarded_sync = pipe(fetch_user_sync)
        try:
            return guarded_sync()
        except Exception as exc:
            return exc

    return run


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    """Collects finished spans."""
    return InMemorySpanExporter()


@pytest.fixture
def tracer_provider(exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    """An SDK tracer provider exporting to the in-memory exporter."""
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider
    provider.shutdown()


@pytest.fixture
def reader() -> InMemoryMetricReader:
    """Collects metrics on demand."""
    return InMemoryMetricReader()


@pytest.fixture
def meter_provider(reader: InMemoryMetricReader) -> Iterator[MeterProvider]:
    """An SDK meter provider read by the in-memory reader."""
    provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    yield provider
    provider.shutdown()
