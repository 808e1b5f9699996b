"""A healthy Redis under ordinary load is never declared down (default 50 ms budget)."""

from __future__ import annotations

import asyncio
import os
import select
import signal
import threading
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import redis.asyncio
from _redis_fixture import RedisServer

import resilient
from resilient import CircuitBreaker, CircuitOpenError, CircuitState, circuit_breaker
from resilient.backends._redis_gate import AsyncGate, async_gate, sync_gate
from resilient.backends._redis_link import SCRIPT
from resilient.backends.redis import RedisBackend
from resilient.events import BackendDegraded
from resilient.testing import FakeClock

pytestmark = pytest.mark.redis

Build = Callable[..., CircuitBreaker]


@pytest.fixture
async def build(own_server: RedisServer, clock: FakeClock) -> AsyncIterator[Build]:
    """Build breakers on a server of this test's own (cold: no script, no connection yet)."""
    made: list[tuple[RedisBackend, Any]] = []

    def make(client: Any = None, **options: Any) -> CircuitBreaker:
        client = client or own_server.async_client()
        backend = RedisBackend(client, **options)  # the default budget: 50 ms
        made.append((backend, client))
        return circuit_breaker(name="load", backend=backend, clock=clock)

    yield make
    for backend, client in made:
        await backend.aclose()
        if isinstance(client, redis.asyncio.Redis):
            await client.aclose()
        else:
            client.close()


@pytest.fixture
def degradations() -> Iterator[list[BackendDegraded]]:
    """Every BackendDegraded the default bus sees during the test."""
    seen: list[BackendDegraded] = []
    with resilient.subscribe(seen.append, BackendDegraded):
        yield seen


def commands(server: RedisServer) -> dict[str, int]:
    """How often the server ran each command since it started (INFO commandstats)."""
    admin = server.sync_client()
    try:
        stats: dict[str, Any] = admin.info("commandstats")
        return {name.removeprefix("cmdstat_"): int(entry["calls"]) for name, entry in stats.items()}
    finally:
        admin.close()


class SmallPool(redis.ConnectionPool):
    """A blocking pool of the application's own kind."""


async def ok() -> str:
    """Succeed."""
    return "ok"


async def refused() -> None:
    """Fail as a dependency that is down would."""
    raise ConnectionError("refused")


async def test_twenty_callers_at_cold_start_are_no_outage(
    build: Build, own_server: RedisServer, degradations: list[BackendDegraded]
) -> None:
    """Twenty concurrent first calls load the script once, open few connections, and degrade nothing."""
    breaker = build()
    results = await asyncio.gather(*(breaker.call(ok) for _ in range(20)))
    assert results == ["ok"] * 20
    assert degradations == []
    ran = commands(own_server)
    assert ran.get("script|load", ran.get("script", 0)) == 1
    assert own_server.sync_client().info("stats")["total_connections_received"] < 20


async def test_150_concurrent_calls_with_a_small_pool_are_no_outage(
    build: Build, own_server: RedisServer, degradations: list[BackendDegraded]
) -> None:
    """150 concurrent calls through a 10-connection pool wait for turns instead of degrading."""
    client = own_server.async_client(max_connections=10)
    breaker = build(client)
    results = await asyncio.gather(*(breaker.call(ok) for _ in range(150)))
    assert results == ["ok"] * 150
    assert degradations == []
    assert not breaker.backend.degraded  # type: ignore[attr-defined]


async def test_more_concurrent_calls_than_the_default_pool_are_no_outage(
    build: Build, degradations: list[BackendDegraded]
) -> None:
    """Beyond redis-py's default pool (100 connections), calls still share state and degrade nothing."""
    breaker = build()
    await asyncio.gather(*(breaker.call(ok) for _ in range(300)))
    assert degradations == []


async def test_a_pool_exhausted_by_the_application_is_no_outage(
    build: Build, own_server: RedisServer, degradations: list[BackendDegraded]
) -> None:
    """When the application holds every connection of a shared pool, calls are served without an outage."""
    client = own_server.async_client(max_connections=2)
    breaker = build(client)
    assert await breaker.call(ok) == "ok"
    pool: Any = client.connection_pool
    held = [await pool.get_connection(), await pool.get_connection()]
    assert await breaker.call(ok) == "ok"
    for connection in held:
        await pool.release(connection)
    assert await breaker.call(ok) == "ok"
    assert degradations == []
    assert not breaker.backend.degraded  # type: ignore[attr-defined]


async def test_a_stalled_event_loop_is_not_blamed_on_redis(
    build: Build, monkeypatch: pytest.MonkeyPatch, degradations: list[BackendDegraded]
) -> None:
    """A loop stalled for three budgets while a step waits (congestion, a blocking call) is no outage."""
    breaker = build()
    assert await breaker.call(ok) == "ok"  # warm: connection and script
    loop = asyncio.get_running_loop()
    real = loop.time
    stalled = 0.0
    monkeypatch.setattr(loop, "time", lambda: real() + stalled)

    async def stall() -> None:
        # Moves the loop's clock as a 150 ms stall would, without waiting for it.
        nonlocal stalled
        stalled += 0.15

    for _ in range(5):
        hog = asyncio.create_task(stall())
        assert await breaker.call(ok) == "ok"
        await hog
    assert degradations == []


async def test_sync_callers_beyond_the_pool_wait_for_a_connection(
    build: Build, own_server: RedisServer, degradations: list[BackendDegraded]
) -> None:
    """Threads beyond the blocking pool's size wait for a connection and all reach Redis: no outage."""
    # A pool RedisBackend cannot copy (like Sentinel's): the client is used as is, two connections.
    pool = SmallPool(host="127.0.0.1", port=own_server.port, max_connections=2)
    breaker = build(sync_client=redis.Redis(connection_pool=pool), timeout=2.0)
    admin = own_server.sync_client()
    admin.script_load(SCRIPT)
    start = threading.Barrier(21)
    results: list[str] = []

    def caller() -> None:
        start.wait()
        results.append(breaker.call(lambda: "ok"))

    threads = [threading.Thread(target=caller) for _ in range(20)]
    for t in threads:
        t.start()
    admin.client_pause(100)  # every step now waits: all twenty want a connection at once
    start.wait()
    for t in threads:
        t.join()
    assert results == ["ok"] * 20
    assert degradations == []
    assert commands(own_server)["evalsha"] == 20  # every call was decided by the shared state
    admin.close()
    pool.disconnect()


@pytest.fixture
async def warp(monkeypatch: pytest.MonkeyPatch) -> Callable[[float], None]:
    """Move the running loop's clock forward (its timers fire) without waiting."""
    loop = asyncio.get_running_loop()
    real = loop.time
    offset = [0.0]
    monkeypatch.setattr(loop, "time", lambda: real() + offset[0])

    def advance(seconds: float) -> None:
        offset[0] += seconds

    return advance


async def settle() -> None:
    """Let every ready task run a few steps."""
    for _ in range(20):
        await asyncio.sleep(0)


def take_every_turn(breaker: CircuitBreaker) -> AsyncGate:
    """Occupy every turn of the breaker's pool in this loop, as slow steps of other calls would."""
    client = breaker.backend._link.async_client()  # type: ignore[attr-defined]
    gate = async_gate(client, asyncio.get_running_loop())
    gate.capacity = gate.active = gate.limit
    return gate


@pytest.mark.parametrize("state", [CircuitState.ISOLATED, CircuitState.OPEN])
async def test_a_call_without_a_turn_is_rejected_as_the_shared_state_says(
    build: Build, degradations: list[BackendDegraded], state: CircuitState, warp: Callable[[float], None]
) -> None:
    """No turn at Redis in time (a busy pool, no outage): an ISOLATED or OPEN breaker still admits nothing."""
    breaker = build()
    if state is CircuitState.ISOLATED:
        await breaker.isolate_async()
    else:
        for _ in range(5):
            with pytest.raises(ConnectionError):
                await breaker.call(refused)
    take_every_turn(breaker)
    calls = asyncio.gather(*(breaker.call(ok) for _ in range(20)), return_exceptions=True)
    await settle()  # all twenty wait for a turn
    warp(0.06)  # longer than the budget: none comes
    outcomes = await calls
    assert all(isinstance(o, CircuitOpenError) for o in outcomes)
    assert degradations == []


async def test_a_failure_admitted_without_a_turn_is_recorded_in_redis(
    build: Build, own_server: RedisServer, degradations: list[BackendDegraded], warp: Callable[[float], None]
) -> None:
    """A CLOSED call admitted without a turn counts in the shared state once a turn frees."""
    breaker = build()
    assert await breaker.call(ok) == "ok"
    gate = take_every_turn(breaker)
    failing = asyncio.create_task(breaker.call(refused))
    await settle()  # it waits for a turn to be admitted
    warp(0.06)  # none comes within the budget: admitted as CLOSED, it fails, then waits to record
    await settle()
    assert not failing.done()
    for _ in range(gate.limit):
        gate.leave(False)
    with pytest.raises(ConnectionError):
        await failing
    admin = own_server.sync_client()
    assert admin.hget(breaker.backend.keys[0], "cf") == b"1"  # type: ignore[attr-defined]
    admin.close()
    assert degradations == []


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_forked_child_does_not_inherit_its_parents_turns(own_server: RedisServer) -> None:
    """A turn its parent held when it forked is not the child's: the child's steps still run."""
    pool = SmallPool(host="127.0.0.1", port=own_server.port, max_connections=1)
    client = redis.asyncio.Redis(host="127.0.0.1", port=own_server.port)
    breaker = circuit_breaker(
        name="forked", backend=RedisBackend(client, sync_client=redis.Redis(connection_pool=pool))
    )
    breaker.reset()
    gate = sync_gate(breaker.backend._link.sync_client())  # type: ignore[attr-defined]
    assert gate is not None
    assert gate.enter(timeout=0)  # the parent's only turn, held (a thread inside a step)
    read, write = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork() with threads (3.12+)
        pid = os.fork()
    if pid == 0:  # the child: reset() waits for a turn without bound
        try:
            breaker.reset()
            os.write(write, b"ok")
        finally:
            os._exit(0)
    os.close(write)
    try:
        ready, _, _ = select.select([read], [], [], 10)
        assert ready, "the forked child is stuck waiting for its parent's turn"
        assert os.read(read, 2) == b"ok"
    finally:
        os.close(read)
        if not ready:
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        gate.leave()
        pool.disconnect()


async def test_a_call_cancelled_while_waiting_for_its_turn_leaks_nothing(
    build: Build, degradations: list[BackendDegraded]
) -> None:
    """Cancelled in the queue for a turn: CancelledError, no outage, and every turn comes back."""
    breaker = build()
    assert await breaker.call(ok) == "ok"
    gate = take_every_turn(breaker)
    waiting = asyncio.create_task(breaker.call(ok))
    await settle()
    assert len(gate._waiters) == 1
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    # Only the release of a probe lease it might have been granted (a no-op) waits now.
    assert len(gate._waiters) == 1
    for _ in range(gate.limit):
        gate.leave(True)
    await asyncio.gather(*breaker.backend._shields)  # type: ignore[attr-defined]  # the release ends
    assert (gate.active, len(gate._waiters)) == (0, 0)
    assert await breaker.call(ok) == "ok"
    assert gate.active == 0
    assert degradations == []
