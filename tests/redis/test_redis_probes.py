"""HALF_OPEN probes on shared state: never more than half_open_max_calls running, no lease left behind."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis.asyncio
from _helpers import backend_of, make_due
from _redis_fixture import RedisServer

from resilient import CircuitBreaker, CircuitOpenError, CircuitState, circuit_breaker
from resilient.backends.redis import RedisBackend

pytestmark = pytest.mark.redis

Make = Callable[..., CircuitBreaker]


class HeldRecords(redis.asyncio.Redis):
    """An asyncio client whose ``record`` steps wait, before reaching Redis, while ``hold`` is set."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.hold = False
        self.entered = asyncio.Event()

    async def evalsha(self, *args: Any) -> Any:
        """Hold a record step forever (until cancelled) while ``hold`` is set; run the rest."""
        if self.hold and "record" in args:
            self.entered.set()
            await asyncio.Event().wait()
        return await super().evalsha(*args)


@pytest.fixture
async def make(redis_server: RedisServer) -> AsyncIterator[Make]:
    """Build breakers (failure_threshold=3) on the shared server: ``make(name, client=None, **options)``."""
    made: list[tuple[RedisBackend, redis.asyncio.Redis]] = []

    def build(name: str, client: redis.asyncio.Redis | None = None, **options: Any) -> CircuitBreaker:
        client = client or redis_server.async_client()
        backend = RedisBackend(client, timeout=5.0)  # a loaded machine is no outage here
        made.append((backend, client))
        return circuit_breaker(name=name, failure_threshold=3, backend=backend, **options)

    yield build
    for backend, client in made:
        await backend.aclose()
        await client.aclose()


async def open_and_make_due(breaker: CircuitBreaker, sync_client: redis.Redis) -> None:
    """Open *breaker* with three failures and make it due for probing (no waiting)."""

    @breaker
    async def broken() -> None:
        raise ConnectionError("down")

    for _ in range(3):
        with pytest.raises(ConnectionError):
            await broken()
    make_due(sync_client, backend_of(breaker))


class Probe:
    """A call through a breaker that runs until released, then succeeds or fails."""

    def __init__(self, breaker: CircuitBreaker, *, fail: bool = False) -> None:
        self.running = asyncio.Event()
        self.release = asyncio.Event()
        self.fail = fail

        @breaker
        async def call() -> str:
            self.running.set()
            await self.release.wait()
            if self.fail:
                raise ConnectionError("still down")
            return "ok"

        self.task = asyncio.create_task(call())

    async def admitted(self) -> bool:
        """Wait until the call is running (True) or was rejected (False)."""
        running = asyncio.ensure_future(self.running.wait())
        await asyncio.wait((running, self.task), return_when=asyncio.FIRST_COMPLETED)
        running.cancel()
        if self.running.is_set():
            return True
        with pytest.raises(CircuitOpenError):
            await self.task
        return False


async def test_a_probe_from_an_earlier_half_open_round_still_counts(
    make: Make, sync_client: redis.Redis
) -> None:
    """A probe still running from the last round holds its slot: the next round admits one fewer."""
    breaker = make("rounds", half_open_max_calls=2)
    await open_and_make_due(breaker, sync_client)
    slow = Probe(breaker)
    assert await slow.admitted()
    failing = Probe(breaker, fail=True)
    assert await failing.admitted()
    failing.release.set()
    with pytest.raises(ConnectionError):
        await failing.task  # the round ends: OPEN again, the slow probe still runs
    assert backend_of(breaker).stats().state is CircuitState.OPEN
    make_due(sync_client, backend_of(breaker))
    second_round = [Probe(breaker), Probe(breaker)]
    admitted = [await p.admitted() for p in second_round]
    assert admitted == [True, False]
    assert backend_of(breaker).stats().probes_in_flight == 2  # the slow one and one new one
    slow.release.set()
    assert await slow.task == "ok"  # stale: changes nothing, but frees its slot
    assert backend_of(breaker).stats().probes_in_flight == 1
    for probe in second_round:
        probe.release.set()
    assert await second_round[0].task == "ok"
    assert backend_of(breaker).stats().state is CircuitState.CLOSED


async def test_a_probe_cancelled_while_recording_frees_its_lease_at_once(
    make: Make, redis_server: RedisServer, sync_client: redis.Redis
) -> None:
    """A probe cancelled before its record step reaches Redis frees its slot now, not after probe_lease."""
    client = HeldRecords(host="127.0.0.1", port=redis_server.port)
    breaker = make("record-cancelled", client=client)
    await open_and_make_due(breaker, sync_client)
    probe = Probe(breaker)
    assert await probe.admitted()
    client.hold = True
    probe.release.set()
    await client.entered.wait()  # the probe succeeded; its record step has not reached Redis
    assert backend_of(breaker).stats().probes_in_flight == 1
    probe.task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe.task
    client.hold = False
    for _ in range(200):  # the release runs in the background: a bounded wait, no sleep
        if backend_of(breaker).stats().probes_in_flight == 0:
            break
        await asyncio.sleep(0)
    stats = backend_of(breaker).stats()
    assert (stats.state, stats.probes_in_flight) == (CircuitState.HALF_OPEN, 0)
    assert not backend_of(breaker).degraded
    nxt = Probe(breaker)
    assert await nxt.admitted()
    nxt.release.set()
    assert await nxt.task == "ok"


@pytest.mark.parametrize("control", [KeyboardInterrupt, SystemExit])
def test_a_sync_probe_interrupted_while_recording_frees_its_lease(
    make: Make, sync_client: redis.Redis, monkeypatch: pytest.MonkeyPatch, control: type[BaseException]
) -> None:
    """KeyboardInterrupt/SystemExit inside a sync probe's record step propagates and frees the slot."""
    breaker = make("sync-record-interrupted")

    @breaker
    def broken() -> None:
        raise ConnectionError("down")

    @breaker
    def healthy() -> str:
        return "ok"

    for _ in range(3):
        with pytest.raises(ConnectionError):
            broken()
    make_due(sync_client, backend_of(breaker))
    blocking = backend_of(breaker)._link.sync_client()
    real = blocking.evalsha
    raised = control()

    def interrupted(*args: Any) -> Any:
        if "record" in args:
            raise raised
        return real(*args)

    monkeypatch.setattr(blocking, "evalsha", interrupted)
    with pytest.raises(control) as info:
        healthy()
    assert info.value is raised
    monkeypatch.undo()
    stats = backend_of(breaker).stats()
    assert (stats.state, stats.probes_in_flight) == (CircuitState.HALF_OPEN, 0)
    assert healthy() == "ok"
