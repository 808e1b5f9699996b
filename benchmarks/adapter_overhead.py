"""Per-call cost of each observability adapter on the success path, side by side.

A stacked pipeline ``fallback > timeout > retry`` guards a trivial coroutine.
Each variant has its own bus; only the attached adapter differs:

- logging at its default levels on an unconfigured ``resilient`` logger
  (effective level WARNING): ``CallStarted``/``CallSucceeded`` (DEBUG) are not
  even subscribed;
- the same with ``skip_disabled=False``: both are built, then dropped;
- structlog at its defaults (``min_level=INFO``, structlog's default
  configuration): as quiet as logging, nothing printed on success;
- structlog with ``min_level=DEBUG`` on a logger that renders and discards
  (the cost of actually logging every call);
- Prometheus (a counter and a histogram per call, module-qualified labels);
- OpenTelemetry metrics only, then metrics and traces (SDK, no exporter:
  a live span per call, made current while the call runs).

The target: the logging adapter adds at most 25 % to the pipeline's per-call
time, and the default structlog adapter costs no more than it.

Method: every variant is timed in batches of ``--number`` back-to-back awaited
calls inside one event loop (``time.perf_counter_ns``, GC off during a batch);
variants are interleaved and the order rotates every round, so machine drift
hits all alike; we report the minimum and the median over ``--rounds``.

Run: ``python benchmarks/adapter_overhead.py`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from itertools import repeat
from typing import Any

import resilient
from resilient.adapters.logging import LoggingAdapter
from resilient.events import EventBus

AsyncFn = Callable[[], Awaitable[Any]]


async def work() -> int:
    """The protected function: returns at once."""
    return 1


def guarded(bus: EventBus) -> AsyncFn:
    """Return ``work`` behind fallback > timeout > retry, all emitting on *bus*."""
    pipe = resilient.pipeline(
        resilient.fallback(0, bus=bus),
        resilient.timeout(10, bus=bus),
        resilient.retry(attempts=3, bus=bus),
        bus=bus,
    )
    fn: AsyncFn = pipe(work)
    return fn


LOGGING = "pipeline + LoggingAdapter (default levels)"
STRUCTLOG = "pipeline + StructlogAdapter (defaults)"


def variants() -> dict[str, AsyncFn]:
    """Label -> coroutine function to time."""
    out: dict[str, AsyncFn] = {"bare coroutine (reference)": work}
    out["pipeline, no adapter"] = guarded(EventBus())

    log_bus = EventBus()
    LoggingAdapter().attach(log_bus)
    out[LOGGING] = guarded(log_bus)

    eager_bus = EventBus()
    LoggingAdapter(skip_disabled=False).attach(eager_bus)
    out["pipeline + LoggingAdapter (skip_disabled=False)"] = guarded(eager_bus)

    try:
        import structlog

        from resilient.adapters.structlog import StructlogAdapter

        quiet_bus = EventBus()
        StructlogAdapter().attach(quiet_bus)
        out[STRUCTLOG] = guarded(quiet_bus)

        loud_bus = EventBus()
        rendered = structlog.wrap_logger(
            structlog.ReturnLogger(),
            processors=[structlog.processors.TimeStamper(fmt="iso"), structlog.processors.JSONRenderer()],
        )
        StructlogAdapter(logger=rendered, min_level=logging.DEBUG).attach(loud_bus)
        out["pipeline + StructlogAdapter (min_level=DEBUG, JSON rendered)"] = guarded(loud_bus)
    except ImportError:
        pass
    try:
        import prometheus_client

        from resilient.adapters.prometheus import PrometheusAdapter

        prom_bus = EventBus()
        PrometheusAdapter(registry=prometheus_client.CollectorRegistry()).attach(prom_bus)
        out["pipeline + PrometheusAdapter"] = guarded(prom_bus)
    except ImportError:
        pass
    try:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider

        from resilient.adapters.opentelemetry import OpenTelemetryAdapter

        metrics_bus = EventBus()
        OpenTelemetryAdapter(
            meter_provider=MeterProvider(metric_readers=[InMemoryMetricReader()]), traces=False
        ).attach(metrics_bus)
        out["pipeline + OpenTelemetryAdapter (SDK, metrics only)"] = guarded(metrics_bus)

        otel_bus = EventBus()
        OpenTelemetryAdapter(
            meter_provider=MeterProvider(metric_readers=[InMemoryMetricReader()]),
            tracer_provider=TracerProvider(),  # no span processor: spans are built, not exported
        ).attach(otel_bus)
        out["pipeline + OpenTelemetryAdapter (SDK, metrics and traces)"] = guarded(otel_bus)
    except ImportError:
        pass
    return out


async def _batch(fn: AsyncFn, number: int) -> float:
    counter = time.perf_counter_ns
    t0 = counter()
    for _ in repeat(None, number):
        await fn()
    return (counter() - t0) / number


async def measure(fns: dict[str, AsyncFn], number: int, rounds: int) -> dict[str, list[float]]:
    """Time every variant in interleaved, rotated rounds.

    Args:
        fns: Label -> coroutine function.
        number: Calls per batch.
        rounds: Batches per variant.

    Returns:
        Label -> per-call nanoseconds, one sample per round.
    """
    labels = list(fns)
    samples: dict[str, list[float]] = {label: [] for label in labels}
    for label in labels:  # warm-up: per-operation runners, caches
        await _batch(fns[label], max(100, number // 10))
    for r in range(rounds):
        k = r % len(labels)
        for label in labels[k:] + labels[:k]:
            gc.collect()
            gc.disable()
            try:
                samples[label].append(await _batch(fns[label], number))
            finally:
                gc.enable()
            await asyncio.sleep(0)  # let cancelled timer handles be cleaned up
    return samples


def main(argv: list[str] | None = None) -> int:
    """Print the overhead table; exit 1 if the logging adapter misses its target.

    Args:
        argv: Command-line arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--number", type=int, default=5000, help="calls per batch")
    parser.add_argument("--rounds", type=int, default=21, help="batches per variant")
    parser.add_argument("--quick", action="store_true", help="a few small batches (smoke test)")
    args = parser.parse_args(argv)
    number, rounds = (300, 3) if args.quick else (args.number, args.rounds)

    fns = variants()
    samples = asyncio.run(measure(fns, number, rounds))
    base_label = "pipeline, no adapter"
    base_min = min(samples[base_label])
    base_med = statistics.median(samples[base_label])

    print(f"Python {platform.python_version()} on {platform.machine()}; {rounds} rounds x {number} calls")
    print()
    print("| variant | min per call | median per call | vs. no adapter (median) |")
    print("|---|---|---|---|")
    for label, times in samples.items():
        lo, med = min(times), statistics.median(times)
        rel = "-" if label.startswith("bare") else f"{(med / base_med - 1) * 100:+.1f} %"
        print(f"| {label} | {lo:,.0f} ns | {med:,.0f} ns | {rel} |")

    log_med = statistics.median(samples[LOGGING])
    log_min = min(samples[LOGGING])
    over_med = (log_med / base_med - 1) * 100
    over_min = (log_min / base_min - 1) * 100
    print()
    print(f"LoggingAdapter overhead: {over_med:+.1f} % (median), {over_min:+.1f} % (min); target <= +25 %")
    ok = min(over_med, over_min) <= 25.0
    if STRUCTLOG in samples:
        st_med, st_min = statistics.median(samples[STRUCTLOG]), min(samples[STRUCTLOG])
        print(
            f"StructlogAdapter (defaults) vs LoggingAdapter: {(st_med / log_med - 1) * 100:+.1f} % (median), "
            f"{(st_min / log_min - 1) * 100:+.1f} % (min); target: no more (within noise, 10 %)"
        )
        ok = ok and min(st_med / log_med, st_min / log_min) <= 1.10
    if args.quick:
        return 0
    return 0 if ok else 1


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    sys.exit(main())
