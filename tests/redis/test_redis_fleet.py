"""Breakers in separate OS processes sharing one state through Redis."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio
from _helpers import wait_until_probe_allowed
from _redis_fixture import RedisServer

from resilient import CircuitOpenError, CircuitState, circuit_breaker
from resilient.backends.redis import RedisBackend

pytestmark = pytest.mark.redis

WORKER = str(Path(__file__).with_name("_worker.py"))
OPEN_CONFIG: dict[str, Any] = {"failure_threshold": 3, "recovery_timeout": 30.0}
PROBE_CONFIG: dict[str, Any] = {"failure_threshold": 3, "recovery_timeout": 0.2, "half_open_max_calls": 3}


def spawn(server: RedisServer, mode: str, name: str, number: int) -> subprocess.Popen[str]:
    """Start a worker process (see _worker.py) talking over pipes."""
    return subprocess.Popen(
        [sys.executable, WORKER, mode, str(server.port), name, str(number)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def line(proc: subprocess.Popen[str]) -> str:
    """Read the worker's next line."""
    assert proc.stdout is not None
    return proc.stdout.readline().strip()


def tell(proc: subprocess.Popen[str], word: str) -> None:
    """Send the worker one line."""
    assert proc.stdin is not None
    proc.stdin.write(word + "\n")
    proc.stdin.flush()


async def test_failures_in_one_process_open_the_breaker_for_another(
    redis_server: RedisServer, async_client: redis.asyncio.Redis, workers: list[subprocess.Popen[str]]
) -> None:
    """Three failures in another process open the breaker this process uses."""
    breaker = circuit_breaker(
        name="fleet-open", backend=RedisBackend(async_client, timeout=1.0), **OPEN_CONFIG
    )
    calls: list[str] = []

    @breaker
    async def charge() -> str:
        calls.append("charge")
        return "ok"

    assert await charge() == "ok"
    proc = spawn(redis_server, "fail", "fleet-open", 3)
    workers.append(proc)
    assert line(proc) == "open"
    assert proc.wait() == 0
    with pytest.raises(CircuitOpenError) as info:
        await charge()
    assert calls == ["charge"]
    assert info.value.retry_after is not None
    assert 25 < info.value.retry_after <= 30
    assert await breaker.state_async() is CircuitState.OPEN


async def test_twenty_callers_in_four_processes_admit_exactly_the_probe_limit(
    redis_server: RedisServer, async_client: redis.asyncio.Redis, workers: list[subprocess.Popen[str]]
) -> None:
    """At the half-open moment 20 callers in 4 processes get exactly half_open_max_calls probes."""
    procs = [spawn(redis_server, "probe", "fleet-probe", 5) for _ in range(4)]
    workers.extend(procs)
    backend = RedisBackend(async_client, timeout=1.0)
    breaker = circuit_breaker(name="fleet-probe", backend=backend, **PROBE_CONFIG)

    @breaker
    async def broken() -> None:
        raise ConnectionError("down")

    for _ in range(3):
        with pytest.raises(ConnectionError):
            await broken()
    assert [line(p) for p in procs] == ["ready"] * 4
    wait_until_probe_allowed(backend)
    for p in procs:
        tell(p, "go")
    decided = [line(p).split() for p in procs]
    assert all(d[0] == "decided" for d in decided)
    admitted = sum(int(d[1]) for d in decided)
    rejected = sum(int(d[2]) for d in decided)
    assert (admitted, rejected) == (3, 17)
    assert backend.stats().probes_in_flight == 3
    for p in procs:
        tell(p, "release")
    assert [line(p) for p in procs] == ["done"] * 4
    assert [p.wait() for p in procs] == [0] * 4
    assert await breaker.state_async() is CircuitState.CLOSED
