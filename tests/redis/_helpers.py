"""Helpers shared by the Redis backend tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio

from resilient import CircuitBreaker, RateLimitedError, RateLimiter
from resilient.backends.redis import RedisBackend

__all__ = [
    "attempt",
    "backend_of",
    "evalsha_calls",
    "invoke",
    "make_due",
    "settle",
    "swallow",
    "wait_until_probe_allowed",
]


async def invoke(breaker: CircuitBreaker, flavour: str, exc: BaseException | None = None) -> str:
    """Call a sync or async function (per *flavour*) through *breaker*; it raises *exc* if given."""
    if flavour == "async":

        async def work() -> str:
            if exc is not None:
                raise exc
            return "ok"

        return await breaker.call(work)

    def work_sync() -> str:
        if exc is not None:
            raise exc
        return "ok"

    return breaker.call(work_sync)


async def swallow(call: Callable[[], Awaitable[Any]], *types: type[BaseException]) -> None:
    """Await *call*, ignoring the listed exception types."""
    try:
        await call()
    except types:
        pass


def evalsha_calls(client: redis.Redis) -> int:
    """Return how many EVALSHA commands the server ran since its stats were reset."""
    stats: dict[str, Any] = client.info("commandstats")
    entry = stats.get("cmdstat_evalsha")
    return 0 if entry is None else int(entry["calls"])


def wait_until_probe_allowed(backend: RedisBackend) -> None:
    """Wait, bounded, until the shared OPEN breaker may be probed (server time decides)."""
    for _ in range(50):
        retry_after = backend.stats().retry_after
        if retry_after is None or retry_after <= 0:
            return
        # Shared state runs on the Redis server's clock: no virtual time to move.
        time.sleep(retry_after + 0.002)
    raise AssertionError("the shared breaker never became ready to probe")


async def settle() -> None:
    """Let every ready task run one step."""
    for _ in range(5):
        await asyncio.sleep(0)


def make_due(client: redis.Redis, backend: RedisBackend) -> None:
    """Make the shared OPEN breaker due for probing now, without waiting for the server's clock."""
    assert client.hget(backend.keys[0], "st") == b"1", "the shared breaker is not OPEN"
    client.hset(backend.keys[0], "until", 0)


async def attempt(limiter: RateLimiter, flavour: str) -> float | str:
    """One call through *limiter* (sync or async): "ok", or the rejection's retry_after."""

    def work_sync() -> str:
        return "ok"

    async def work() -> str:
        return "ok"

    try:
        return limiter.call(work_sync) if flavour == "sync" else await limiter.call(work)
    except RateLimitedError as exc:
        return -1.0 if exc.retry_after is None else exc.retry_after


def backend_of(breaker: CircuitBreaker) -> RedisBackend:
    """The breaker's RedisBackend."""
    backend = breaker.backend
    assert isinstance(backend, RedisBackend)
    return backend
