"""Serve resilient's Prometheus metrics while a flaky workload runs, then scrape them.

Run: ``python examples/prometheus_metrics.py`` (needs ``pip install 'resilient-policies[examples]'``).

It starts prometheus_client's HTTP server on 127.0.0.1 (a free port), runs
about two seconds of calls to a flaky dependency through
``fallback > timeout > retry > circuit_breaker``, fetches its own ``/metrics``
with urllib and prints the ``resilient_*`` samples. No network beyond
localhost; exits 0.
"""

from __future__ import annotations

import asyncio
import random
import time
import urllib.request

try:
    from prometheus_client import CollectorRegistry, start_http_server
except ImportError:  # a plain install; the examples extra brings it
    raise SystemExit(
        "examples/prometheus_metrics.py needs prometheus_client: pip install 'resilient-policies[examples]'"
    ) from None

import resilient
from resilient import backoff
from resilient.adapters.prometheus import PrometheusAdapter

WORKLOAD_SECONDS = 2.0
CONCURRENCY = 8

rng = random.Random(42)  # a reproducible mix of failures and slow answers
breaker = resilient.circuit_breaker(failure_threshold=5, recovery_timeout=0.2, name="inventory")
pool = resilient.bulkhead(4, max_queue=16, name="inventory")


@resilient.fallback(-1)  # -1 means "unknown stock": the page still renders
@resilient.timeout(0.2)  # total budget for the call, retries included
@resilient.retry(attempts=3, backoff=backoff.exponential(initial=0.005, max_delay=0.05), on=ConnectionError)
@breaker
@pool
async def stock_level(sku: str) -> int:
    """A dependency that fails 30 % of the time and is sometimes slow."""
    await asyncio.sleep(0.001)
    roll = rng.random()
    if roll < 0.3:
        raise ConnectionError("inventory service refused the connection")
    if roll < 0.35:
        await asyncio.sleep(0.5)  # slower than the timeout: the call falls back
    return len(sku)


async def client(stop_at: float) -> int:
    """Call stock_level until *stop_at*; return how many calls were made."""
    calls = 0
    while time.monotonic() < stop_at:
        await stock_level(f"sku-{calls}")
        calls += 1
    return calls


async def workload() -> int:
    """Run CONCURRENCY clients for WORKLOAD_SECONDS; return the total number of calls."""
    stop_at = time.monotonic() + WORKLOAD_SECONDS
    counts = await asyncio.gather(*(client(stop_at) for _ in range(CONCURRENCY)))
    return sum(counts)


def main() -> None:
    """Serve, run the workload, scrape and print the resilient samples."""
    registry = CollectorRegistry()
    adapter = PrometheusAdapter(registry)
    adapter.track_bulkhead(pool)
    adapter.track_circuit_breaker(breaker)
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    port = server.server_port
    try:
        with adapter.attach():
            calls = asyncio.run(workload())
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    print(f"{calls} calls in {WORKLOAD_SECONDS:g}s; GET http://127.0.0.1:{port}/metrics says:")
    samples = [
        line
        for line in text.splitlines()
        if line.startswith("resilient_") and "_created" not in line and "_bucket" not in line
    ]
    print("\n".join(samples))
    assert any(line.startswith("resilient_calls_total") for line in samples), "no calls were counted"
    assert any(line.startswith("resilient_retries_total") for line in samples), "no retries were counted"


if __name__ == "__main__":
    main()
