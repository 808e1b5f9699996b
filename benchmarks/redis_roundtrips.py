"""Round trips and added latency of the Redis circuit breaker backend on loopback.

Starts its own ``redis-server`` on a free loopback port (persistence off) unless
``--url`` names one, then times calls through ``circuit_breaker`` with the
in-memory backend and with :class:`RedisBackend`, for several paths, and
counts the commands the server ran per call (``INFO commandstats``: every
command is one round trip here, the script is loaded once before timing).

    python benchmarks/redis_roundtrips.py [--calls 2000] [--rounds 5] [--url redis://...]

Latency is wall-clock (``perf_counter``) per call, the median over rounds;
"added" is the median minus the in-memory backend's on the same path.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio

from resilient import CircuitOpenError, circuit_breaker
from resilient.backends import BreakerBackend, MemoryBackend
from resilient.backends.redis import RedisBackend

Call = Callable[[], Awaitable[Any]]


def start_server() -> tuple[subprocess.Popen[bytes], int]:
    """Start redis-server on a free loopback port; return the process and port."""
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server not found: install it or pass --url")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    for _ in range(500):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.01)
    client.close()
    return proc, port


# What a client sends; Redis also counts the commands a script runs inside it.
_TOP_LEVEL = (
    "cmdstat_evalsha",
    "cmdstat_evalsha_ro",
    "cmdstat_eval",
    "cmdstat_script",
    "cmdstat_info",
    "cmdstat_ping",
)


def commands_run(admin: redis.Redis) -> tuple[int, int]:
    """Return (round trips, all commands incl. those inside scripts) the server has run."""
    stats: dict[str, Any] = admin.info("commandstats")
    total = sum(int(v["calls"]) for v in stats.values())
    trips = sum(int(stats[k]["calls"]) for k in _TOP_LEVEL if k in stats)
    return trips, total


async def measure(call: Call, calls: int, rounds: int, admin: redis.Redis) -> tuple[float, float, float]:
    """Return (median µs per call, round trips per call, server commands per call) of *call*."""
    for _ in range(50):
        await call()  # warm up: connections open, script loaded
    per_call: list[float] = []
    before = commands_run(admin)
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            await call()
        per_call.append((time.perf_counter() - start) / calls * 1e6)
    after = commands_run(admin)
    n = calls * rounds
    # Each INFO is counted by the next one: subtract the first.
    trips, commands = after[0] - before[0] - 1, after[1] - before[1] - 1
    return statistics.median(per_call), trips / n, commands / n


def scenario(kind: str, make_backend: Callable[[], BreakerBackend], name: str) -> Call:
    """Build the call of one path through a breaker on the given backend."""
    threshold = 1 if kind == "open: rejected" else 10**9
    breaker = circuit_breaker(
        name=name, failure_threshold=threshold, recovery_timeout=3600.0, backend=make_backend()
    )

    @breaker
    async def ok() -> None:
        return None

    @breaker
    async def fails() -> None:
        raise ConnectionError

    @breaker
    def ok_sync() -> None:
        return None

    async def closed_success() -> None:
        await ok()

    async def closed_failure() -> None:
        try:
            await fails()
        except ConnectionError:
            pass

    async def sync_success() -> None:
        ok_sync()

    async def rejected() -> None:
        try:
            await ok()
        except CircuitOpenError:
            pass

    if kind == "open: rejected":
        return rejected
    return {
        "closed: success (async)": closed_success,
        "closed: success (sync)": sync_success,
        "closed: failure (async)": closed_failure,
        "redis down: success (async)": closed_success,
    }[kind]


async def main() -> None:
    """Measure every path with both backends and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--url", default=None)
    args = parser.parse_args()
    logging.getLogger("resilient").setLevel(logging.ERROR)  # the planned outage is not news
    proc, port = (None, 0) if args.url else start_server()
    url = args.url or f"redis://127.0.0.1:{port}/0"
    admin = redis.Redis.from_url(url)
    client = redis.asyncio.Redis.from_url(url)
    rows: list[tuple[str, str, float, float, float, float]] = []
    kinds = [
        "closed: success (async)",
        "closed: success (sync)",
        "closed: failure (async)",
        "open: rejected",
    ]
    try:
        # The floor: one bare round trip of the same client on the same loop.
        ping_us, ping_trips, _ = await measure(client.ping, args.calls, args.rounds, admin)
        rows.append(("reference: PING (async)", "redis", ping_us, 0.0, ping_trips, ping_trips))
        for i, kind in enumerate(kinds):
            memory_call = scenario(kind, MemoryBackend, f"m{i}")
            memory_us, _, _ = await measure(memory_call, args.calls, args.rounds, admin)
            redis_call = scenario(kind, lambda: RedisBackend(client, timeout=1.0), f"bench-{i}")
            redis_us, trips, commands = await measure(redis_call, args.calls, args.rounds, admin)
            rows.append((kind, "memory", memory_us, 0.0, 0.0, 0.0))
            rows.append((kind, "redis", redis_us, redis_us - memory_us, trips, commands))
        if proc is not None:
            # Redis gone: calls run on the local fallback, Redis is retried once a second.
            down = scenario("redis down: success (async)", lambda: RedisBackend(client), "bench-down")
            await down()
            proc.kill()
            proc.wait()
            proc = None
            await down()  # the first failing attempt degrades it
            start = time.perf_counter()
            for _ in range(args.calls):
                await down()
            down_us = (time.perf_counter() - start) / args.calls * 1e6
            memory_us = rows[1][2]
            rows.append(("redis down: success (async)", "redis", down_us, down_us - memory_us, 0.0, 0.0))
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()
        admin.close()
        await client.aclose()
    head = (
        f"{'path':<28} {'backend':<7} {'µs/call':>8} {'added µs':>9} {'round trips':>12} {'redis cmds':>11}"
    )
    print(head)
    print("-" * len(head))
    for kind, backend, us, added, trips, commands in rows:
        print(f"{kind:<28} {backend:<7} {us:>8.1f} {added:>9.1f} {trips:>12.2f} {commands:>11.2f}")
    print("round trips and redis cmds are per call; redis cmds include those run inside the Lua script")


if __name__ == "__main__":
    asyncio.run(main())
