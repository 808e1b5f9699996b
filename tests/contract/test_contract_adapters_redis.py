"""Black-box contract checks of API.md section 7 (adapters) and the Redis backend (issues 4 and 5)."""

from __future__ import annotations

import asyncio
import logging
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis
import redis.asyncio
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from prometheus_client import CollectorRegistry, generate_latest
from structlog.testing import CapturingLogger, capture_logs

import resilient
from resilient import CircuitOpenError, CircuitState, EventBus, Subscription
from resilient.adapters.logging import LoggingAdapter
from resilient.adapters.opentelemetry import OpenTelemetryAdapter
from resilient.adapters.prometheus import PrometheusAdapter
from resilient.adapters.structlog import StructlogAdapter
from resilient.backends.redis import RedisBackend
from resilient.events import BackendDegraded, BackendRecovered, CircuitOpened, Event, default_bus
from resilient.testing import FakeClock

ADAPTERS = ["logging", "structlog", "prometheus", "opentelemetry"]
# Issue 13: the operation label is the module-qualified name of the guarded function.
OP = f"{__name__}.fetch_user"


class Keep(logging.Handler):
    """Keeps every record."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class Sink:
    """One adapter of *kind* on a private sink, and a count of the retries that sink recorded."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.keep = Keep()
        self.captured = CapturingLogger()
        self.registry = CollectorRegistry()
        self.spans = InMemorySpanExporter()
        self.reader = InMemoryMetricReader()
        self.bus = EventBus()
        if kind == "logging":
            logger = logging.getLogger(f"contract.{id(self)}")
            logger.addHandler(self.keep)
            logger.setLevel(logging.DEBUG)
            logger.propagate = False
            self.adapter: Any = LoggingAdapter(logger)
        elif kind == "structlog":
            self.adapter = StructlogAdapter(logger=self.captured)
        elif kind == "prometheus":
            self.adapter = PrometheusAdapter(self.registry)
        else:
            self.tracer_provider = TracerProvider(shutdown_on_exit=False)
            self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
            meters = MeterProvider(metric_readers=[self.reader], shutdown_on_exit=False)
            self.adapter = OpenTelemetryAdapter(meter_provider=meters, tracer_provider=self.tracer_provider)

    def metrics(self) -> dict[str, list[tuple[dict[str, Any], Any]]]:
        """Return OTel instrument name -> [(attributes, value or count)]."""
        out: dict[str, list[tuple[dict[str, Any], Any]]] = {}
        data = self.reader.get_metrics_data()
        for rm in data.resource_metrics if data else []:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    for point in metric.data.data_points:
                        value = getattr(point, "value", getattr(point, "count", None))
                        out.setdefault(metric.name, []).append((dict(point.attributes or {}), value))
        return out

    def retries(self) -> int:
        """Return how many RetryScheduled events reached the sink."""
        if self.kind == "logging":
            return sum(getattr(r, "resilient_event", "") == "retry_scheduled" for r in self.keep.records)
        if self.kind == "structlog":
            return sum(c.args == ("resilient.retry_scheduled",) for c in self.captured.calls)
        if self.kind == "prometheus":
            value = self.registry.get_sample_value("resilient_retries_total", {"name": "", "operation": OP})
            return int(value or 0)
        return sum(
            [e.name for e in s.events].count("resilient.retry_scheduled")
            for s in self.spans.get_finished_spans()
        )


class Flaky:
    """A callable failing with ``ConnectionError('refused')`` for its first *failures* calls."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError("refused")
        return "ok"


def guarded(failures: int, *policies: resilient.Policy, bus: EventBus) -> Any:
    """Return ``fetch_user`` behind *policies*, failing *failures* times."""
    flaky = Flaky(failures)

    async def fetch_user() -> str:
        return await flaky()

    fetch_user.__qualname__ = "fetch_user"
    return resilient.pipeline(*policies, bus=bus)(fetch_user)


def run_quiet(fn: Any) -> Any:
    """Run the coroutine function *fn*; return its result or its exception."""
    try:
        return asyncio.run(fn())
    except Exception as exc:
        return exc


# --- imports -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "module",
    ["resilient", "resilient.adapters", "resilient.adapters.prometheus", "resilient.adapters.opentelemetry"],
)
def test_import_is_lazy(module: str) -> None:
    """Importing resilient (or an adapter module) imports no optional dependency."""
    code = (
        f"import sys, {module}\n"
        "opt = ('structlog', 'prometheus_client', 'opentelemetry', 'redis')\n"
        "bad = [m for m in opt if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


# --- attach / detach ---------------------------------------------------------------------


def retry_once(bus: EventBus) -> None:
    """Run fetch_user failing once behind a retry emitting on *bus* (and the pipeline on *bus*)."""
    assert asyncio.run(guarded(1, resilient.retry(attempts=2, backoff=0.0, bus=bus), bus=bus)()) == "ok"


@pytest.mark.parametrize("kind", ADAPTERS)
def test_attach_default_bus_returns_subscription(kind: str) -> None:
    """attach() with no bus subscribes to the default bus and returns a Subscription."""
    sink = Sink(kind)
    sub = sink.adapter.attach()
    assert isinstance(sub, Subscription)
    retry_once(default_bus)
    assert sink.retries() == 1
    sub.unsubscribe()


@pytest.mark.parametrize("kind", ADAPTERS)
def test_detach_by_unsubscribe_and_with_block(kind: str) -> None:
    """After unsubscribe() or leaving the with block the adapter records nothing more."""
    sink, bus = Sink(kind), EventBus()
    with sink.adapter.attach(bus):
        retry_once(bus)
    retry_once(bus)
    sink.adapter.attach(bus).unsubscribe()
    retry_once(bus)
    assert sink.retries() == 1


@pytest.mark.parametrize("kind", ADAPTERS)
def test_custom_bus_isolated_from_default_bus(kind: str) -> None:
    """An adapter on a custom bus sees that bus only, not the default bus."""
    sink, bus = Sink(kind), EventBus()
    sink.adapter.attach(bus)
    retry_once(default_bus)
    assert sink.retries() == 0
    retry_once(bus)
    assert sink.retries() == 1


def test_all_four_adapters_at_once() -> None:
    """All four adapters on one bus each see the same single retry."""
    sinks, bus = [Sink(k) for k in ADAPTERS], EventBus()
    for sink in sinks:
        sink.adapter.attach(bus)
    retry_once(bus)
    assert [s.retries() for s in sinks] == [1, 1, 1, 1]


def test_two_prometheus_adapters_same_registry() -> None:
    """Two PrometheusAdapters on one registry never raise 'duplicated timeseries'."""
    registry = CollectorRegistry()
    PrometheusAdapter(registry)
    PrometheusAdapter(registry)


def test_raising_handler_does_not_stop_adapter(caplog: pytest.LogCaptureFixture) -> None:
    """A user handler that raises neither changes the outcome nor stops a later adapter."""
    registry, bus = CollectorRegistry(), EventBus()

    def boom(event: Event) -> None:
        raise RuntimeError("handler bug")

    resilient.subscribe(boom, bus=bus)
    PrometheusAdapter(registry).attach(bus)
    assert asyncio.run(guarded(1, resilient.retry(attempts=2, backoff=0.0, bus=bus), bus=bus)()) == "ok"
    assert "resilient_retries_total{" in generate_latest(registry).decode()
    assert any("handler bug" in r.getMessage() or r.exc_info for r in caplog.records)


# --- logging -----------------------------------------------------------------------------


def resilient_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """Return the records written on the ``resilient`` logger."""
    return [r for r in caplog.records if r.name == "resilient"]


def test_logging_retry_message_exact(caplog: pytest.LogCaptureFixture) -> None:
    """The retry message reads exactly as in issue 4, at WARNING, on the resilient logger."""
    bus = EventBus()
    caplog.set_level(logging.DEBUG, logger="resilient")
    LoggingAdapter().attach(bus)
    fn = guarded(1, resilient.retry(attempts=3, backoff=0.21, clock=FakeClock(), bus=bus), bus=bus)
    asyncio.run(fn())
    (warn,) = [r for r in resilient_records(caplog) if r.levelno == logging.WARNING]
    assert warn.getMessage() == "retrying fetch_user in 0.21s (attempt 2/3) after ConnectionError('refused')"
    assert warn.resilient_attempt == 1  # type: ignore[attr-defined]
    assert warn.resilient_delay == 0.21  # type: ignore[attr-defined]


def test_logging_breaker_open_and_rejection_are_warnings(caplog: pytest.LogCaptureFixture) -> None:
    """A breaker opening and then rejecting logs both at WARNING."""
    bus = EventBus()
    caplog.set_level(logging.DEBUG, logger="resilient")
    LoggingAdapter().attach(bus)
    breaker = resilient.circuit_breaker(failure_threshold=1, name="pay", clock=FakeClock(), bus=bus)
    fn = guarded(5, breaker, bus=bus)
    run_quiet(fn)
    run_quiet(fn)
    kinds = {r.resilient_event: r.levelno for r in resilient_records(caplog)}  # type: ignore[attr-defined]
    assert kinds["circuit_opened"] == logging.WARNING
    assert kinds["circuit_rejected"] == logging.WARNING


def test_logging_levels_configurable_and_given_logger(caplog: pytest.LogCaptureFixture) -> None:
    """A given logger and a custom level per event kind are honoured."""
    from resilient.events import RetryScheduled

    bus = EventBus()
    caplog.set_level(logging.DEBUG, logger="app.res")
    LoggingAdapter(logging.getLogger("app.res"), levels={RetryScheduled: logging.ERROR}).attach(bus)
    asyncio.run(guarded(1, resilient.retry(attempts=2, backoff=0.0, bus=bus), bus=bus)())
    retry_records = [r for r in caplog.records if r.name == "app.res" and r.levelno == logging.ERROR]
    assert len(retry_records) == 1
    assert retry_records[0].getMessage().startswith("retrying fetch_user")


# --- structlog ---------------------------------------------------------------------------


def test_structlog_event_names_and_flat_fields() -> None:
    """Each event kind has its own event name and only flat (scalar) values."""
    bus = EventBus()
    StructlogAdapter().attach(bus)
    clock = FakeClock()
    fn = guarded(
        9,
        resilient.fallback("dflt", bus=bus),
        resilient.retry(attempts=2, backoff=0.5, clock=clock, bus=bus),
        bus=bus,
    )
    with capture_logs() as logs:
        assert asyncio.run(fn()) == "dflt"
    names = [e["event"] for e in logs]
    for expected in ("resilient.retry_scheduled", "resilient.retries_exhausted", "resilient.fallback_used"):
        assert expected in names
    for entry in logs:
        for key, value in entry.items():
            if key == "exc_info":
                # Issue 13: exhaustion and failures carry the exception for structlog's
                # processors (format_exc_info / dict_tracebacks render it as text).
                assert isinstance(value, ConnectionError)
                continue
            assert value is None or isinstance(value, str | int | float | bool)


# --- prometheus --------------------------------------------------------------------------


def prom_text(failures: int, *policies: resilient.Policy, bus: EventBus, registry: CollectorRegistry) -> str:
    """Run fetch_user once behind *policies* and return the exposition text."""
    run_quiet(guarded(failures, *policies, bus=bus))
    return generate_latest(registry).decode()


def test_prometheus_calls_retries_duration() -> None:
    """Success/failure counters, retries, exhaustion and the duration histogram appear with names."""
    registry, bus, clock = CollectorRegistry(), EventBus(), FakeClock()
    PrometheusAdapter(registry).attach(bus)
    prom_text(1, resilient.retry(attempts=3, backoff=0.1, clock=clock, bus=bus), bus=bus, registry=registry)
    text = prom_text(
        9, resilient.retry(attempts=2, backoff=0.1, clock=clock, bus=bus), bus=bus, registry=registry
    )
    assert f'resilient_calls_total{{name="",operation="{OP}",outcome="success"}} 1.0' in text
    assert f'resilient_calls_total{{name="",operation="{OP}",outcome="failure"}} 1.0' in text
    assert f'resilient_retries_total{{name="",operation="{OP}"}} 2.0' in text
    assert f'resilient_retries_exhausted_total{{name="",operation="{OP}",reason="attempts"}} 1.0' in text
    assert "resilient_call_duration_seconds_bucket{" in text


def test_prometheus_rejections_fallbacks_timeouts_circuit_state() -> None:
    """Rejections by policy, fallbacks, timeouts and the circuit state gauge are exposed."""
    registry, bus, clock = CollectorRegistry(), EventBus(), FakeClock()
    PrometheusAdapter(registry).attach(bus)
    breaker = resilient.circuit_breaker(failure_threshold=1, name="pay", clock=clock, bus=bus)
    prom_text(5, breaker, bus=bus, registry=registry)
    prom_text(5, resilient.fallback(None, bus=bus), breaker, bus=bus, registry=registry)
    text = generate_latest(registry).decode()
    assert f'resilient_rejections_total{{name="pay",operation="{OP}",policy="circuit_breaker"}} 1.0' in text
    assert f'resilient_fallbacks_total{{name="",operation="{OP}"}} 1.0' in text
    assert 'resilient_circuit_state{name="pay",state="open"} 1.0' in text
    assert 'resilient_circuit_state{name="pay",state="closed"} 0.0' in text


def test_prometheus_labels_never_hold_exception_messages() -> None:
    """An exception message (unbounded) never becomes a label value."""
    registry, bus = CollectorRegistry(), EventBus()
    PrometheusAdapter(registry).attach(bus)
    for i in range(3):

        async def fail(i: int = i) -> None:
            raise ValueError(f"secret-{i}")

        run_quiet(resilient.retry(attempts=2, backoff=0.0, bus=bus)(fail))
    text = generate_latest(registry).decode()
    assert "secret" not in text
    # Issue 13 (OTel semantic conventions): the exception *type* is the error_type label of
    # the duration histogram, and appears nowhere else.
    assert all('error_type="ValueError"' in line for line in text.splitlines() if "ValueError" in line)


def test_prometheus_custom_namespace() -> None:
    """namespace= prefixes every metric name."""
    registry, bus = CollectorRegistry(), EventBus()
    PrometheusAdapter(registry, namespace="shop").attach(bus)
    text = prom_text(0, resilient.retry(bus=bus), bus=bus, registry=registry)
    assert f'shop_calls_total{{name="",operation="{OP}",outcome="success"}} 1.0' in text
    assert "resilient_calls_total" not in text


async def test_prometheus_bulkhead_in_use_gauge() -> None:
    """A tracked bulkhead's in-use gauge shows a running call."""
    registry = CollectorRegistry()
    adapter = PrometheusAdapter(registry)
    pool = resilient.bulkhead(2, name="db")
    adapter.track_bulkhead(pool)
    entered, release = asyncio.Event(), asyncio.Event()

    @pool
    async def work() -> None:
        entered.set()
        await release.wait()

    task = asyncio.create_task(work())
    await entered.wait()
    assert 'resilient_bulkhead_in_use{name="db"} 1.0' in generate_latest(registry).decode()
    release.set()
    await task
    assert 'resilient_bulkhead_in_use{name="db"} 0.0' in generate_latest(registry).decode()


# --- opentelemetry -----------------------------------------------------------------------


@pytest.fixture
def otel() -> Sink:
    """An OpenTelemetryAdapter (metrics and traces) on in-memory SDK exporters, attached to its bus."""
    sink = Sink("opentelemetry")
    sink.adapter.attach(sink.bus)
    return sink


def test_otel_one_span_with_retries_visible(otel: Sink) -> None:
    """A call with two retries is one span whose events show three attempts and two waits."""
    clock = FakeClock()
    fn = guarded(2, resilient.retry(attempts=3, backoff=0.25, clock=clock, bus=otel.bus), bus=otel.bus)
    assert asyncio.run(fn()) == "ok"
    (span,) = otel.spans.get_finished_spans()
    names = [e.name for e in span.events]
    assert names.count("resilient.attempt") == 3
    assert names.count("resilient.retry_scheduled") == 2
    assert span.status.status_code != StatusCode.ERROR


def test_otel_failure_status_and_exhaustion(otel: Sink) -> None:
    """An exhausted call's span has ERROR status and a retries_exhausted event."""
    fn = guarded(9, resilient.retry(attempts=2, backoff=0.0, bus=otel.bus), bus=otel.bus)
    assert isinstance(run_quiet(fn), ConnectionError)
    (span,) = otel.spans.get_finished_spans()
    assert span.status.status_code == StatusCode.ERROR
    assert "resilient.retries_exhausted" in [e.name for e in span.events]


def test_otel_breaker_decision_rejection_and_fallback(otel: Sink) -> None:
    """Breaker transitions, rejections and fallbacks appear as span events of their calls."""
    breaker = resilient.circuit_breaker(failure_threshold=1, name="pay", clock=FakeClock(), bus=otel.bus)
    fn = guarded(9, resilient.fallback("x", bus=otel.bus), breaker, bus=otel.bus)
    assert run_quiet(fn) == "x"
    assert run_quiet(fn) == "x"
    first, second = otel.spans.get_finished_spans()
    assert {"resilient.circuit_opened", "resilient.fallback_used"} <= {e.name for e in first.events}
    assert {"resilient.circuit_rejected", "resilient.fallback_used"} <= {e.name for e in second.events}


async def test_otel_concurrent_calls_do_not_mix_events(otel: Sink) -> None:
    """Two concurrent retrying calls each get a span with only their own attempts."""
    clock = FakeClock()
    policy = resilient.retry(attempts=4, backoff=0.1, clock=clock, bus=otel.bus)
    a = guarded(1, policy, bus=otel.bus)
    b = guarded(3, policy, bus=otel.bus)
    assert list(await asyncio.gather(a(), b())) == ["ok", "ok"]
    counts = sorted(
        [e.name for e in s.events].count("resilient.attempt") for s in otel.spans.get_finished_spans()
    )
    assert counts == [2, 4]


def test_otel_span_is_child_of_current_span(otel: Sink) -> None:
    """The resilient span is a child of the span current at the call site."""
    tracer = otel.tracer_provider.get_tracer("test")
    fn = guarded(0, resilient.retry(bus=otel.bus), bus=otel.bus)
    with tracer.start_as_current_span("outer") as outer:
        asyncio.run(fn())
    inner = next(s for s in otel.spans.get_finished_spans() if s.name != "outer")
    assert inner.parent is not None
    assert inner.parent.span_id == outer.get_span_context().span_id


class UnprintableError(Exception):
    """An exception whose __str__ raises (e.g. it reads an attribute its __init__ never set)."""

    def __str__(self) -> str:
        raise AttributeError("code")


def test_otel_unprintable_exception_still_traced(otel: Sink) -> None:
    """A retried exception with a raising __str__ still yields a span showing the retries."""

    def boom() -> None:
        raise UnprintableError("x")

    with pytest.raises(UnprintableError):
        resilient.retry(attempts=3, backoff=0.0, bus=otel.bus)(boom)()
    (span,) = otel.spans.get_finished_spans()
    assert [e.name for e in span.events].count("resilient.retry_scheduled") == 2
    assert span.status.status_code == StatusCode.ERROR


def test_unprintable_exception_logged_and_counted() -> None:
    """Logging, structlog and Prometheus still record a retry of an exception whose __str__ raises."""
    sinks, bus = [Sink(k) for k in ADAPTERS[:3]], EventBus()
    for sink in sinks:
        sink.adapter.attach(bus)

    async def fetch_user() -> None:
        raise UnprintableError("x")

    fetch_user.__qualname__ = "fetch_user"
    fn = resilient.pipeline(resilient.retry(attempts=2, backoff=0.0, bus=bus), bus=bus)(fetch_user)
    assert isinstance(run_quiet(fn), UnprintableError)
    assert [s.retries() for s in sinks] == [1, 1, 1]


def test_otel_metrics_counters(otel: Sink) -> None:
    """Calls by outcome, retries and rejections arrive as OTel metrics without messages as attributes."""
    breaker = resilient.circuit_breaker(failure_threshold=1, name="pay", clock=FakeClock(), bus=otel.bus)
    run_quiet(guarded(1, resilient.retry(attempts=2, backoff=0.0, bus=otel.bus), bus=otel.bus))
    run_quiet(guarded(9, breaker, bus=otel.bus))
    run_quiet(guarded(9, breaker, bus=otel.bus))
    m = otel.metrics()
    # Issue 13: one vocabulary with the Prometheus adapter (plain attribute keys).
    outcomes = {a.get("outcome"): v for a, v in m["resilient.calls"]}
    assert outcomes == {"success": 1, "failure": 2}
    assert sum(v for _, v in m["resilient.retries"]) == 1
    assert [(a.get("policy"), v) for a, v in m["resilient.rejections"]] == [("circuit_breaker", 1)]
    assert "resilient.call.duration" in m
    assert "refused" not in repr(m)


# --- redis -------------------------------------------------------------------------------


def free_port() -> int:
    """Return a loopback port nothing listens on (now)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Server:
    """A redis-server on a free port, persistence off, started by reading its log."""

    def __init__(self, port: int | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server binary not found on PATH")
        self.port = port or free_port()
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        ready = threading.Event()

        def watch() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                if "Ready to accept connections" in line:
                    ready.set()
            ready.set()

        threading.Thread(target=watch, daemon=True).start()
        if not ready.wait(10) or self.proc.poll() is not None:
            self.stop()
            pytest.fail(f"redis-server did not start on {self.port}")

    def stop(self) -> None:
        """Kill the server."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    """One redis-server for this module."""
    s = Server()
    yield s
    s.stop()


@pytest.fixture
def port(server: Server) -> int:
    """The server's port, flushed before the test."""
    with redis.Redis(port=server.port) as c:
        c.flushall()
    return server.port


class Proxy:
    """A TCP proxy to Redis that counts client writes (round trips) and can stall replies."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.writes = 0
        self.stalled = False
        self.got_request = asyncio.Event()
        self.server: asyncio.Server | None = None
        self.port = 0
        self.tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Listen on a free loopback port."""
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _pipe(self, r: asyncio.StreamReader, w: asyncio.StreamWriter, upstream: bool) -> None:
        try:
            while data := await r.read(65536):
                if upstream:
                    self.writes += 1
                    self.got_request.set()
                elif self.stalled:
                    continue  # replies are swallowed: a Redis that never answers
                w.write(data)
                await w.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            w.close()

    async def _serve(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        sr, sw = await asyncio.open_connection("127.0.0.1", self.target)
        for coro in (self._pipe(cr, sw, True), self._pipe(sr, cw, False)):
            task = asyncio.create_task(coro)
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def close(self) -> None:
        """Stop listening."""
        assert self.server is not None
        self.server.close()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.server.wait_closed()


@pytest.fixture
async def aclient(port: int) -> AsyncIterator[redis.asyncio.Redis]:
    """An asyncio client of the test server."""
    c = redis.asyncio.Redis(port=port)
    yield c
    await c.aclose()


def shared(client: Any, *, name: str = "payments", bus: EventBus | None = None, **kw: Any) -> Any:
    """Build a breaker with failure_threshold=1 on a RedisBackend."""
    bus = bus or EventBus()
    backend_kw = {k: kw.pop(k) for k in ("prefix", "timeout", "reconnect_interval") if k in kw}
    return resilient.circuit_breaker(
        name=name, failure_threshold=1, backend=RedisBackend(client, **backend_kw), bus=bus, **kw
    )


async def fail() -> None:
    """Raise a failure the breaker counts."""
    raise ConnectionError("refused")


async def ok() -> str:
    """Succeed."""
    return "ok"


async def test_redis_two_breakers_same_name_share_state(aclient: redis.asyncio.Redis) -> None:
    """A failure through one breaker object opens the other one with the same name."""
    a, b = shared(aclient), shared(aclient)
    with pytest.raises(ConnectionError):
        await a.call(fail)
    with pytest.raises(CircuitOpenError):
        await b.call(ok)
    assert await b.state_async() is CircuitState.OPEN


async def test_redis_retry_after_within_recovery_timeout(aclient: redis.asyncio.Redis) -> None:
    """A rejection's retry_after never exceeds recovery_timeout (seconds until half-open)."""
    worst = 0.0
    for i in range(20):
        a = shared(aclient, name=f"svc{i}", recovery_timeout=30.0)
        with pytest.raises(ConnectionError):
            await a.call(fail)
        with pytest.raises(CircuitOpenError) as info:
            await shared(aclient, name=f"svc{i}", recovery_timeout=30.0).call(ok)
        assert info.value.retry_after is not None
        worst = max(worst, info.value.retry_after)
    assert 0 < worst <= 30.0


async def test_redis_prefix_and_name_separate_state(aclient: redis.asyncio.Redis) -> None:
    """Breakers with another prefix or another name do not share the state."""
    a = shared(aclient)
    other_prefix, other_name = shared(aclient, prefix="other"), shared(aclient, name="stock")
    with pytest.raises(ConnectionError):
        await a.call(fail)
    assert await other_prefix.call(ok) == "ok"
    assert await other_name.call(ok) == "ok"


async def test_redis_sync_client_shares_with_async(aclient: redis.asyncio.Redis, port: int) -> None:
    """A sync function behind a breaker on a blocking client is rejected once an async one opened."""
    a = shared(aclient)
    with redis.Redis(port=port) as sync_client:
        b = shared(sync_client)
        with pytest.raises(ConnectionError):
            await a.call(fail)
        with pytest.raises(CircuitOpenError):
            b.call(lambda: "ok")


async def test_redis_isolate_and_reset_are_shared(aclient: redis.asyncio.Redis) -> None:
    """isolate() and reset() on one breaker object are seen by the other."""
    a, b = shared(aclient), shared(aclient)
    await a.isolate_async()
    assert await b.state_async() is CircuitState.ISOLATED
    with pytest.raises(CircuitOpenError):
        await b.call(ok)
    await b.reset_async()
    assert await a.state_async() is CircuitState.CLOSED
    assert await a.call(ok) == "ok"


async def test_redis_half_open_probe_permit_is_global(aclient: redis.asyncio.Redis) -> None:
    """With one probe permit, a probe running through one object blocks a probe through the other."""
    a = shared(aclient, recovery_timeout=0.001)
    b = shared(aclient, recovery_timeout=0.001)
    with pytest.raises(ConnectionError):
        await a.call(fail)
    for _ in range(10_000):  # the server's clock passes 1 ms; poll, never sleep
        if await a.state_async() is CircuitState.HALF_OPEN:
            break
    assert await a.state_async() is CircuitState.HALF_OPEN
    entered, release = asyncio.Event(), asyncio.Event()

    async def probe() -> str:
        entered.set()
        await release.wait()
        return "ok"

    task = asyncio.create_task(a.call(probe))
    await entered.wait()
    with pytest.raises(CircuitOpenError):
        await b.call(ok)
    release.set()
    assert await task == "ok"
    assert await b.state_async() is CircuitState.CLOSED


async def test_redis_closed_success_one_round_trip(port: int) -> None:
    """Once warm, a successful CLOSED call costs at most one round trip."""
    proxy = Proxy(port)
    await proxy.start()
    client = redis.asyncio.Redis(port=proxy.port)
    try:
        breaker = shared(client)
        for _ in range(3):
            await breaker.call(ok)  # warm up: connection handshake, script load
        before = proxy.writes
        for _ in range(10):
            assert await breaker.call(ok) == "ok"
        assert proxy.writes - before <= 10
    finally:
        await client.aclose()
        await proxy.close()


@pytest.mark.parametrize("flavour", ["async", "sync"])
async def test_redis_bad_port_never_raises(flavour: str) -> None:
    """With nothing listening, calls are served, BackendDegraded is emitted once, failures stay local."""
    dead = free_port()
    client: Any = redis.asyncio.Redis(port=dead) if flavour == "async" else redis.Redis(port=dead)
    bus = EventBus()
    seen: list[Event] = []
    resilient.subscribe(seen.append, BackendDegraded, bus=bus)
    breaker = shared(client, bus=bus, clock=FakeClock())
    if flavour == "async":
        assert await breaker.call(ok) == "ok"
        assert await breaker.call(ok) == "ok"
        with pytest.raises(ConnectionError) as raised:
            await breaker.call(fail)
        with pytest.raises(CircuitOpenError):
            await breaker.call(ok)
        await client.aclose()
    else:
        assert breaker.call(lambda: "ok") == "ok"
        assert breaker.call(lambda: "ok") == "ok"
        with pytest.raises(ConnectionError) as raised:
            breaker.call(lambda: (_ for _ in ()).throw(ConnectionError("refused")))
        with pytest.raises(CircuitOpenError):
            breaker.call(lambda: "ok")
        client.close()
    assert not isinstance(raised.value, redis.RedisError)
    assert len(seen) == 1


async def test_redis_recovers_when_server_comes_back() -> None:
    """After an outage, a server on the port plus reconnect_interval brings BackendRecovered."""
    dead = free_port()
    client = redis.asyncio.Redis(port=dead)
    bus, clock = EventBus(), FakeClock()
    seen: list[Event] = []
    resilient.subscribe(seen.append, BackendDegraded, BackendRecovered, bus=bus)
    breaker = shared(client, bus=bus, clock=clock, reconnect_interval=1.0)
    assert await breaker.call(ok) == "ok"
    srv = Server(dead)
    try:
        clock.advance(1.5)
        assert await breaker.call(ok) == "ok"
        assert [type(e) for e in seen] == [BackendDegraded, BackendRecovered]
        with pytest.raises(ConnectionError):
            await breaker.call(fail)
        with redis.Redis(port=dead) as probe:
            assert probe.keys("resilient:*")  # the failure went to the shared state
    finally:
        await client.aclose()
        srv.stop()


async def test_redis_slow_server_bounded_by_budget(port: int) -> None:
    """A Redis that never answers costs at most the budget; the call is served locally."""
    proxy = Proxy(port)
    await proxy.start()
    client = redis.asyncio.Redis(port=proxy.port)
    bus = EventBus()
    seen: list[Event] = []
    resilient.subscribe(seen.append, BackendDegraded, bus=bus)
    try:
        breaker = shared(client, bus=bus, timeout=0.02)
        assert await breaker.call(ok) == "ok"
        proxy.stalled = True
        assert await asyncio.wait_for(breaker.call(ok), 5) == "ok"
        assert len(seen) == 1
    finally:
        await client.aclose()
        await proxy.close()


async def test_redis_cancel_while_waiting_is_not_an_outage(port: int) -> None:
    """A call cancelled while Redis is slow gets CancelledError and the breaker stays shared."""
    proxy = Proxy(port)
    await proxy.start()
    client = redis.asyncio.Redis(port=proxy.port)
    bus = EventBus()
    seen: list[Event] = []
    resilient.subscribe(seen.append, BackendDegraded, bus=bus)
    try:
        breaker = shared(client, bus=bus, timeout=30.0)
        assert await breaker.call(ok) == "ok"
        proxy.stalled = True
        proxy.got_request.clear()
        task = asyncio.create_task(breaker.call(ok))
        await proxy.got_request.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert seen == []
        assert not breaker.backend.degraded
    finally:
        await client.aclose()
        await proxy.close()


async def test_redis_concurrent_failures_open_once(aclient: redis.asyncio.Redis) -> None:
    """Concurrent failures through two objects open the shared breaker once (one CircuitOpened)."""
    bus = EventBus()
    opened: list[Event] = []
    resilient.subscribe(opened.append, CircuitOpened, bus=bus)
    a, b = shared(aclient, bus=bus), shared(aclient, bus=bus)
    await asyncio.gather(*[(a if i % 2 else b).call(fail) for i in range(10)], return_exceptions=True)
    assert len(opened) == 1
    assert await a.state_async() is CircuitState.OPEN


async def test_redis_cancelled_probe_frees_global_permit(aclient: redis.asyncio.Redis) -> None:
    """A probe cancelled through one object frees the fleet's permit: the other object may probe."""
    a = shared(aclient, recovery_timeout=0.001)
    b = shared(aclient, recovery_timeout=0.001)
    with pytest.raises(ConnectionError):
        await a.call(fail)
    for _ in range(10_000):
        if await a.state_async() is CircuitState.HALF_OPEN:
            break
    entered = asyncio.Event()

    async def hang() -> None:
        entered.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(a.call(hang))
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await b.call(ok) == "ok"
    assert await b.state_async() is CircuitState.CLOSED


async def test_redis_script_flush_and_flushall_are_transparent(aclient: redis.asyncio.Redis) -> None:
    """SCRIPT FLUSH and FLUSHALL neither raise into calls nor count as an outage."""
    bus = EventBus()
    seen: list[Event] = []
    resilient.subscribe(seen.append, BackendDegraded, bus=bus)
    breaker = shared(aclient, bus=bus)
    assert await breaker.call(ok) == "ok"
    await aclient.script_flush()
    assert await breaker.call(ok) == "ok"
    with pytest.raises(ConnectionError):
        await breaker.call(fail)
    await aclient.flushall()
    assert await breaker.call(ok) == "ok"
    assert seen == []


async def test_redis_killed_mid_run_never_raises() -> None:
    """A Redis that dies between calls: the next calls are served locally and degrade is reported once."""
    srv = Server()
    client = redis.asyncio.Redis(port=srv.port)
    bus = EventBus()
    seen: list[Event] = []
    resilient.subscribe(seen.append, BackendDegraded, bus=bus)
    try:
        breaker = shared(client, bus=bus, clock=FakeClock())
        assert await breaker.call(ok) == "ok"
        srv.stop()
        for _ in range(3):
            assert await asyncio.wait_for(breaker.call(ok), 5) == "ok"
        assert len(seen) == 1
    finally:
        await client.aclose()
        srv.stop()


def blackhole() -> socket.socket:
    """Return a listening socket that never accepts: connections hang, no reply ever comes."""
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(64)
    return hole


async def test_redis_silent_server_concurrent_calls_bounded() -> None:
    """Rounds of 100 concurrent calls against a Redis that never answers all finish near the budget."""
    hung = 0
    for _ in range(8):
        with blackhole() as hole:
            client = redis.asyncio.Redis(port=hole.getsockname()[1])
            breaker = shared(client, timeout=0.02)
            tasks = [asyncio.create_task(breaker.call(ok)) for _ in range(100)]
            done, pending = await asyncio.wait(tasks, timeout=1.0)  # 50 budgets
            assert all(t.result() == "ok" for t in done)
            hung = len(pending)
            for task in pending:
                task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)  # the closed listener resets them
        await client.aclose()
        if hung:
            break
    assert hung == 0


def test_redis_silent_server_sync_call_bounded() -> None:
    """A sync call with a user's blocking client (no socket timeout) on a silent Redis does not hang."""
    with blackhole() as hole, redis.Redis(port=hole.getsockname()[1]) as client:
        breaker = shared(client, timeout=0.02)
        out: list[object] = []
        worker = threading.Thread(target=lambda: out.append(breaker.call(lambda: "ok")), daemon=True)
        worker.start()
        worker.join(5)
        assert out == ["ok"]
