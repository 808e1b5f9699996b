"""RedisBackend re-checking a call that waited in an inner queue (``readmit``), on a real redis-server."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis
import redis.asyncio
from _redis_fixture import RedisServer
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from resilient import (
    Bulkhead,
    CircuitBreaker,
    CircuitOpenError,
    CircuitState,
    bulkhead,
    circuit_breaker,
    pipeline,
)
from resilient.backends import Permit
from resilient.backends.redis import RedisBackend
from resilient.testing import FakeClock

pytestmark = pytest.mark.redis


class Steps(redis.asyncio.Redis):
    """An asyncio client that records the breaker steps it runs and can hold one step until a gate opens."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.steps: list[str] = []
        self.hold: str | None = None
        self.entered = asyncio.Event()
        self.gate = asyncio.Event()

    async def evalsha(self, *args: Any) -> Any:
        """Hold the step (named after the SHA, the key count and four keys) if asked; run it; record it."""
        step = args[6]
        step = step.decode() if isinstance(step, bytes) else str(step)
        if step == self.hold:
            self.entered.set()
            await self.gate.wait()
        reply = await super().evalsha(*args)  # (NOSCRIPT on the first step: tried again, recorded once)
        self.steps.append(step)
        return reply


class SyncSteps:
    """Records the threads a backend's blocking steps ran on (wrapping its link's ``run``)."""

    def __init__(self, backend: RedisBackend) -> None:
        self.threads: list[int] = []
        self._run = backend._link.run
        backend._link.run = self  # type: ignore[method-assign]

    def __call__(self, args: tuple[Any, ...], *, bounded: bool = False) -> list[int] | None:
        self.threads.append(threading.get_ident())
        return self._run(args, bounded=bounded)


Build = Callable[..., tuple[CircuitBreaker, RedisBackend]]


@pytest.fixture
async def build(redis_server: RedisServer) -> AsyncIterator[Build]:
    """Build breakers named "readmit" on the shared server: ``build(client=None, **backend_options)``."""
    made: list[RedisBackend] = []
    clients: list[Any] = []

    def make(client: Any = None, **options: Any) -> tuple[CircuitBreaker, RedisBackend]:
        options.setdefault("timeout", 5.0)  # a loaded CI machine is not an outage
        if client is None:
            client = redis_server.async_client()
        clients.append(client)
        backend = RedisBackend(client, **options)
        made.append(backend)
        return circuit_breaker(
            name="readmit", failure_threshold=3, backend=backend, clock=FakeClock()
        ), backend

    yield make
    for backend in made:
        await backend.aclose()
    for client in clients:  # the backends close only the clients they built
        closing = client.aclose() if isinstance(client, redis.asyncio.Redis) else client.close()
        if closing is not None:
            await closing


async def hold_then_queue(
    guarded: Callable[..., Any], bh: Bulkhead, meanwhile: Callable[[], Any]
) -> tuple[asyncio.Task[Any], asyncio.Task[Any], asyncio.Event]:
    """Start a call that holds the bulkhead's only slot and one queued behind it; run *meanwhile*.

    Returns:
        The holder's task, the queued call's task, and the event that lets the holder finish.
    """
    gate = asyncio.Event()

    async def body(held: bool) -> str:
        if held:
            await gate.wait()
        return "ran"

    call = guarded(body)
    holder = asyncio.create_task(call(True))
    while bh.in_use == 0:
        await asyncio.sleep(0)
    queued = asyncio.create_task(call(False))
    while bh.queued == 0:
        await asyncio.sleep(0)
    result = meanwhile()
    if result is not None:
        await result
    return holder, queued, gate


async def test_a_queued_call_is_rejected_by_an_async_step_that_leaves_the_loop_running(
    build: Build, redis_server: RedisServer
) -> None:
    """Another process isolates the shared breaker while a call queues: one async round trip rejects it."""
    client = Steps(host="127.0.0.1", port=redis_server.port)
    breaker, backend = build(client)
    blocking = SyncSteps(backend)
    other, _ = build()  # another process sharing the state
    bh = bulkhead(1, max_queue=1)
    holder, queued, release = await hold_then_queue(pipeline(breaker, bh), bh, other.isolate_async)
    client.hold = "readmit"
    release.set()
    entered = asyncio.create_task(client.entered.wait())
    await asyncio.wait({entered, queued}, return_when=asyncio.FIRST_COMPLETED)
    assert entered.done(), "the re-check did not run as an async Redis step"
    # The step is in flight: the loop keeps running other tasks meanwhile.
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        for _ in range(3):
            ticks += 1
            await asyncio.sleep(0)

    await tick()
    assert (ticks, queued.done()) == (3, False)
    client.gate.set()
    results = await asyncio.gather(holder, queued, return_exceptions=True)
    assert results[0] == "ran"
    assert isinstance(results[1], CircuitOpenError)
    assert results[1].retry_after is None  # ISOLATED
    assert client.steps == ["acquire", "acquire", "readmit"]  # one round trip for the re-check
    assert blocking.threads == []  # no blocking client call on the loop's thread


async def test_a_queued_call_goes_ahead_when_the_shared_breaker_did_not_move(build: Build) -> None:
    """Nothing changed in Redis while the call queued: the re-check lets it reach the dependency."""
    breaker, backend = build()
    bh = bulkhead(1, max_queue=1)
    holder, queued, release = await hold_then_queue(pipeline(breaker, bh), bh, lambda: None)
    release.set()
    assert list(await asyncio.gather(holder, queued)) == ["ran", "ran"]
    assert backend.stats().state is CircuitState.CLOSED


async def test_an_open_shared_breaker_reports_when_to_retry(build: Build, sync_client: redis.Redis) -> None:
    """A queued call rejected because the shared breaker opened gets the server's retry_after."""
    breaker, _backend = build()
    other, _ = build()

    async def open_it() -> None:
        for _ in range(3):
            with pytest.raises(ConnectionError):
                await other.call(_fail)

    bh = bulkhead(1, max_queue=1)
    holder, queued, release = await hold_then_queue(pipeline(breaker, bh), bh, open_it)
    release.set()
    results = await asyncio.gather(holder, queued, return_exceptions=True)
    assert results[0] == "ran"
    assert isinstance(results[1], CircuitOpenError)
    assert results[1].retry_after is not None
    assert 0 < results[1].retry_after <= 30.0


async def _fail() -> None:
    raise ConnectionError("down")


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
async def test_an_isolation_redis_lost_still_stops_a_queued_call(
    build: Build, sync_client: redis.Redis, is_async: bool
) -> None:
    """This process saw the breaker ISOLATED, then Redis lost it: the re-check restores it and rejects."""
    _, backend = build()
    permit = await backend.acquire_async()
    assert isinstance(permit, Permit)
    await backend.isolate_async()
    sync_client.flushall()  # a restart without persistence, say: the isolation is gone from Redis
    rejection = await backend.readmit_async(permit) if is_async else backend.readmit(permit)
    assert rejection is not None
    assert (rejection.state, rejection.retry_after) == (CircuitState.ISOLATED, None)
    assert backend.stats().state is CircuitState.ISOLATED  # restored for every process


def test_a_queued_thread_is_rejected_with_one_round_trip(build: Build, sync_client: redis.Redis) -> None:
    """Sync: a thread queued while another process isolates the shared breaker is rejected by one step."""
    breaker, backend = build(sync_client)
    steps = SyncSteps(backend)
    other, _ = build()
    bh = bulkhead(1, max_queue=1)
    holding, release = threading.Event(), threading.Event()
    results: list[Any] = []

    @pipeline(breaker, bh)
    def call(held: bool) -> str:
        if held:
            holding.set()
            assert release.wait(10)
        return "ran"

    def run(held: bool) -> None:
        try:
            results.append(call(held))
        except CircuitOpenError as exc:
            results.append(exc)

    holder = threading.Thread(target=run, args=(True,))
    holder.start()
    assert holding.wait(10)
    queued = threading.Thread(target=run, args=(False,))
    queued.start()
    assert wait_for(lambda: bh.queued == 1)
    other.isolate()
    before = len(steps.threads)
    release.set()
    holder.join(10)
    queued.join(10)
    assert results[0] == "ran"
    assert isinstance(results[1], CircuitOpenError)
    assert len(steps.threads) - before == 1  # the re-check (the holder's success is deferred)


def wait_for(predicate: Callable[[], bool], seconds: float = 10) -> bool:
    """Yield to other threads until *predicate* holds; False if it did not within *seconds*."""
    guard = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > guard:
            return False
        os.sched_yield()
    return True


# --- Redis down: local state decides ----------------------------------------------------------


@pytest.fixture
async def on_own_server(
    own_server: RedisServer, clock: FakeClock
) -> AsyncIterator[tuple[CircuitBreaker, RedisBackend]]:
    """A breaker on this test's own server (which it may kill), reconnecting on ``clock``."""
    client = own_server.async_client(retry=Retry(NoBackoff(), 0))
    backend = RedisBackend(client, timeout=0.5, reconnect_interval=1.0)
    breaker = circuit_breaker(name="readmit", failure_threshold=3, backend=backend, clock=clock)
    yield breaker, backend
    await backend.aclose()
    await client.aclose()


async def test_redis_down_while_a_call_queued_lets_the_local_breaker_decide(
    on_own_server: tuple[CircuitBreaker, RedisBackend], own_server: RedisServer
) -> None:
    """Redis dies while a call queues; the local breaker opens meanwhile: the re-check rejects it locally."""
    breaker, backend = on_own_server
    bh = bulkhead(1, max_queue=1)

    async def outage() -> None:
        own_server.kill()
        for _ in range(3):  # direct calls fail: the local breaker (Redis is down) opens
            with pytest.raises(ConnectionError):
                await breaker.call(_fail)

    holder, queued, release = await hold_then_queue(pipeline(breaker, bh), bh, outage)
    assert backend.degraded
    release.set()
    results = await asyncio.gather(holder, queued, return_exceptions=True)
    assert results[0] == "ran"
    assert isinstance(results[1], CircuitOpenError)
    assert results[1].retry_after == pytest.approx(30.0)


async def test_redis_dying_during_the_recheck_lets_a_closed_local_breaker_admit(
    on_own_server: tuple[CircuitBreaker, RedisBackend], own_server: RedisServer
) -> None:
    """The re-check itself finds Redis gone: the fresh local breaker (CLOSED) lets the call go ahead."""
    breaker, backend = on_own_server
    bh = bulkhead(1, max_queue=1)
    holder, queued, release = await hold_then_queue(pipeline(breaker, bh), bh, own_server.kill)
    release.set()
    assert list(await asyncio.gather(holder, queued)) == ["ran", "ran"]
    assert backend.degraded


def test_readmit_of_a_locally_admitted_permit_asks_the_local_breaker(
    on_own_server: tuple[CircuitBreaker, RedisBackend], own_server: RedisServer
) -> None:
    """A permit issued while degraded is re-checked by the local breaker, sync and async alike."""
    _breaker, backend = on_own_server
    own_server.kill()
    permit = backend.acquire()
    assert isinstance(permit, Permit)
    assert backend.degraded
    assert backend.readmit(permit) is None
    assert asyncio.run(backend.readmit_async(permit)) is None
    backend._local.isolate()
    for rejection in (backend.readmit(permit), asyncio.run(backend.readmit_async(permit))):
        assert rejection is not None
        assert (rejection.state, rejection.retry_after) == (CircuitState.ISOLATED, None)


async def test_no_turn_in_time_decides_from_the_state_last_seen(
    build: Build, sync_client: redis.Redis
) -> None:
    """Redis up but every connection taken: the re-check decides from the last state this process saw."""
    _breaker, backend = build()
    permit = await backend.acquire_async()
    assert isinstance(permit, Permit)
    await backend.isolate_async()  # seen by this process: its view is ISOLATED now
    # Every connection busy: the step gets no turn, Redis is not down.
    link = backend._link
    turns = link.run_async
    link.run_async = _no_turn  # type: ignore[method-assign]
    rejection = await backend.readmit_async(permit)
    assert rejection is not None
    assert rejection.state is CircuitState.ISOLATED
    assert not backend.degraded
    link.run_async = turns  # type: ignore[method-assign]
    await backend.reset_async()
    link.run_async = _no_turn  # type: ignore[method-assign]
    assert await backend.readmit_async(permit) is None  # CLOSED again, as last seen


async def _no_turn(args: tuple[Any, ...], *, bounded: bool = False) -> None:
    return None
