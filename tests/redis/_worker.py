"""A separate OS process sharing a Redis-backed breaker with the test process.

Run as ``python _worker.py MODE PORT NAME``. It talks on stdin/stdout, one
word per line, so the test can line processes up without sleeping:

- ``fail N``: make N failing sync calls through the breaker, print the state.
- ``probe K``: print ``ready``; on ``go`` start K concurrent async callers;
  print ``decided <admitted> <rejected>`` once each was admitted or rejected;
  on ``release`` let the admitted ones succeed; print ``done``.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import redis.asyncio

from resilient import CircuitOpenError, circuit_breaker
from resilient.backends.redis import RedisBackend

# Every process sharing a breaker must configure it the same way (see test_redis_fleet.py).
OPEN_CONFIG: dict[str, Any] = {"failure_threshold": 3, "recovery_timeout": 30.0}
PROBE_CONFIG: dict[str, Any] = {"failure_threshold": 3, "recovery_timeout": 0.2, "half_open_max_calls": 3}


def say(word: str) -> None:
    """Print one line to the test and flush it."""
    print(word, flush=True)


def fail(port: int, name: str, count: int) -> None:
    """Make *count* failing sync calls, then report the shared state."""
    client = redis.Redis(host="127.0.0.1", port=port)
    breaker = circuit_breaker(
        name=name, backend=RedisBackend(client, timeout=1.0), on=ConnectionError, **OPEN_CONFIG
    )

    @breaker
    def call() -> None:
        raise ConnectionError("dependency down")

    for _ in range(count):
        try:
            call()
        except ConnectionError:
            pass
    say(breaker.state.value)


async def probe(port: int, name: str, callers: int) -> None:
    """Wait for ``go``, then race *callers* calls at a half-open breaker."""
    client = redis.asyncio.Redis(host="127.0.0.1", port=port)
    breaker = circuit_breaker(name=name, backend=RedisBackend(client, timeout=1.0), **PROBE_CONFIG)
    release = asyncio.Event()
    decisions: asyncio.Queue[str] = asyncio.Queue()

    @breaker
    async def call() -> None:
        await decisions.put("admitted")
        await release.wait()

    async def caller() -> None:
        try:
            await call()
        except CircuitOpenError:
            await decisions.put("rejected")

    read = sys.stdin.readline
    say("ready")
    assert (await asyncio.to_thread(read)).strip() == "go"
    tasks = [asyncio.create_task(caller()) for _ in range(callers)]
    got = [await decisions.get() for _ in range(callers)]
    say(f"decided {got.count('admitted')} {got.count('rejected')}")
    assert (await asyncio.to_thread(read)).strip() == "release"
    release.set()
    await asyncio.gather(*tasks)
    await client.aclose()
    say("done")


def main() -> None:
    """Dispatch on the command line."""
    mode, port, name, number = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    if mode == "fail":
        fail(port, name, number)
    else:
        asyncio.run(probe(port, name, number))


if __name__ == "__main__":
    main()
