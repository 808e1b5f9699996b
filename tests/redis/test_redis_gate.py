"""Turns at Redis: FIFO, slow start, and no turn lost to cancellation or timeouts."""

from __future__ import annotations

import asyncio

import pytest
import redis
import redis.asyncio

from resilient.backends._redis_gate import MAX_IN_FLIGHT, AsyncGate, async_gate, sync_gate


async def settle() -> None:
    """Let every ready task run."""
    for _ in range(5):
        await asyncio.sleep(0)


def waiting(gate: AsyncGate, *order: list[str], name: str) -> asyncio.Task[None]:
    """Start a task that takes a turn on *gate* and records *name* in every list of *order*."""

    async def take() -> None:
        assert await gate.enter()
        for log in order:
            log.append(name)

    return asyncio.create_task(take())


async def test_turns_open_one_at_a_time_as_steps_succeed() -> None:
    """A new gate gives one turn; each success while others wait opens one more, up to the limit."""
    gate = AsyncGate(limit=3)
    assert await gate.enter()
    got: list[str] = []
    tasks = [waiting(gate, got, name=str(i)) for i in range(4)]
    await settle()
    assert got == []
    gate.leave(True)  # capacity 2: two waiters go
    await settle()
    assert got == ["0", "1"]
    gate.leave(True)  # capacity 3 (the limit): two more go
    await settle()
    assert got == ["0", "1", "2", "3"]
    assert (gate.capacity, gate.active) == (3, 3)
    for _ in range(3):
        gate.leave(True)
    await asyncio.gather(*tasks)
    assert (gate.capacity, gate.active) == (3, 0)


async def test_a_failed_step_opens_no_turn_and_restart_starts_over() -> None:
    """A failure frees its turn without growing the gate; restart() goes back to one turn."""
    gate = AsyncGate(limit=4)
    assert await gate.enter()
    got: list[str] = []
    task = waiting(gate, got, name="next")
    await settle()
    gate.leave(False)
    await task
    assert (gate.capacity, gate.active, got) == (1, 1, ["next"])
    gate.capacity = 4
    gate.restart()
    assert gate.capacity == 1


async def test_a_waiter_cancelled_in_the_queue_leaks_no_turn() -> None:
    """A caller cancelled while waiting leaves the queue; the turn goes to the next one."""
    gate = AsyncGate(limit=1)
    assert await gate.enter()
    got: list[str] = []
    first, second = waiting(gate, got, name="first"), waiting(gate, got, name="second")
    await settle()
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    gate.leave(True)
    await second
    assert (got, gate.active) == (["second"], 1)


async def test_a_turn_handed_to_a_cancelled_waiter_is_passed_on() -> None:
    """A waiter cancelled after its turn was handed over (before it ran) passes it on: no lost wake-up."""
    gate = AsyncGate(limit=1)
    assert await gate.enter()
    got: list[str] = []
    first, second = waiting(gate, got, name="first"), waiting(gate, got, name="second")
    await settle()
    gate.leave(True)  # hands the turn to `first`, which has not run yet
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    await second
    assert (got, gate.active) == (["second"], 1)


async def test_a_waiter_whose_time_runs_out_leaves_the_queue() -> None:
    """enter(timeout) without a turn in time answers False and holds nothing."""
    gate = AsyncGate(limit=1)
    assert await gate.enter()
    assert not await gate.enter(timeout=0)
    gate.leave(True)
    assert gate.active == 0
    assert await gate.enter(timeout=0)
    assert gate.active == 1


async def test_gates_are_shared_per_pool_and_loop() -> None:
    """Clients sharing a pool share its gate, at most MAX_IN_FLIGHT turns or the pool's size."""
    loop = asyncio.get_running_loop()
    pool = redis.asyncio.ConnectionPool(host="127.0.0.1", port=1, max_connections=5)
    one, two = redis.asyncio.Redis(connection_pool=pool), redis.asyncio.Redis(connection_pool=pool)
    assert async_gate(one, loop) is async_gate(two, loop)
    assert async_gate(one, loop).limit == 5
    other = redis.asyncio.Redis(host="127.0.0.1", port=1, max_connections=1000)
    assert async_gate(other, loop) is not async_gate(one, loop)
    assert async_gate(other, loop).limit == MAX_IN_FLIGHT


def test_a_blocking_pool_gate_has_the_pool_size() -> None:
    """Threads get as many turns as the pool has connections, and wait (bounded) beyond that."""
    client = redis.Redis(host="127.0.0.1", port=1, max_connections=2)
    gate = sync_gate(client)
    assert gate is not None
    assert sync_gate(client) is gate
    assert gate.enter()
    assert gate.enter()
    assert not gate.enter(timeout=0)
    gate.leave()
    assert gate.enter(timeout=0)
