"""Redis down, slow or interrupted: the breaker keeps serving on local state and comes back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis.asyncio
import redis.exceptions
from _helpers import invoke, wait_until_probe_allowed
from _redis_fixture import RedisServer
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

import resilient
from resilient import CircuitBreaker, CircuitOpenError, circuit_breaker
from resilient.backends._redis_gate import async_gate
from resilient.backends.redis import RedisBackend
from resilient.events import BackendDegraded, BackendRecovered, CircuitOpened
from resilient.testing import FakeClock, capture_events

pytestmark = pytest.mark.redis

Build = Callable[..., tuple[CircuitBreaker, RedisBackend]]


@pytest.fixture
async def build(own_server: RedisServer, clock: FakeClock) -> AsyncIterator[Build]:
    """Build a breaker on this test's own server; its reconnect interval runs on ``clock``."""
    made: list[tuple[RedisBackend, redis.asyncio.Redis]] = []

    def make(
        client: redis.asyncio.Redis | None = None, **options: Any
    ) -> tuple[CircuitBreaker, RedisBackend]:
        # No client-side retries: a refused connection fails at once instead of backing off.
        client = client or own_server.async_client(retry=Retry(NoBackoff(), 0))
        options.setdefault("timeout", 0.5)
        recovery = options.pop("recovery_timeout", 30.0)
        backend = RedisBackend(client, reconnect_interval=1.0, **options)
        made.append((backend, client))
        breaker = circuit_breaker(
            name="outage", failure_threshold=3, recovery_timeout=recovery, backend=backend, clock=clock
        )
        return breaker, backend

    yield make
    for backend, client in made:
        await backend.aclose()
        await client.aclose()


def degraded(backend: RedisBackend) -> bool:
    """Whether *backend* runs on local state now (a call, so mypy does not narrow it)."""
    return backend.degraded


def backend_events(events: list[Any]) -> list[type]:
    """The BackendDegraded/BackendRecovered events, in order."""
    return [type(e) for e in events if isinstance(e, (BackendDegraded, BackendRecovered))]


async def test_redis_killed_and_restarted(
    build: Build, own_server: RedisServer, clock: FakeClock, flavour: str
) -> None:
    """Killed: calls keep succeeding on local state; restarted: shared state is used again."""
    breaker, backend = build()
    with capture_events() as events:
        assert await invoke(breaker, flavour) == "ok"
        own_server.kill()
        for _ in range(5):
            assert await invoke(breaker, flavour) == "ok"
        assert degraded(backend)
        own_server.start()
        assert await invoke(breaker, flavour) == "ok"
        assert degraded(backend)  # Redis is not tried again before the reconnect interval
        clock.advance(1.0)
        with pytest.raises(ConnectionError):
            await invoke(breaker, flavour, ConnectionError("down"))
        assert not degraded(backend)
    assert backend_events(events) == [BackendDegraded, BackendRecovered]
    event = next(e for e in events if isinstance(e, BackendDegraded))
    assert (event.name, event.policy) == ("outage", "circuit_breaker")
    assert isinstance(event.exception, Exception)
    server = own_server.sync_client()
    assert server.hget(backend.keys[0], "cf") == b"1"
    server.close()


async def test_local_breaker_protects_while_redis_is_down(
    build: Build, own_server: RedisServer, flavour: str
) -> None:
    """While degraded, the local breaker opens on failures and rejects like the shared one."""
    breaker, _ = build()
    own_server.kill()
    with capture_events() as events:
        for _ in range(3):
            with pytest.raises(ConnectionError):
                await invoke(breaker, flavour, ConnectionError("down"))
        with pytest.raises(CircuitOpenError):
            await invoke(breaker, flavour)
    assert [type(e) for e in events if isinstance(e, CircuitOpened)] == [CircuitOpened]
    assert backend_events(events) == [BackendDegraded]


async def test_slow_redis_degrades_within_the_budget(
    build: Build, own_server: RedisServer, clock: FakeClock, flavour: str
) -> None:
    """A paused (slow) Redis costs a call at most the budget, then the call runs on local state."""
    breaker, backend = build(timeout=0.05)
    assert await invoke(breaker, flavour) == "ok"
    admin = own_server.sync_client()
    admin.client_pause(10_000, all=False)  # every write (the script) waits: beyond any budget, however busy
    try:
        with capture_events() as events:
            assert await invoke(breaker, flavour) == "ok"
        assert degraded(backend)
    finally:
        admin.client_unpause()
        admin.close()
    assert backend_events(events) == [BackendDegraded]
    clock.advance(1.0)
    assert await invoke(breaker, flavour) == "ok"
    assert not degraded(backend)


class GatedClient(redis.asyncio.Redis):
    """An asyncio client whose EVALSHA waits until the test opens a gate."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.entered = asyncio.Event()
        self.gate = asyncio.Event()

    async def evalsha(self, *args: Any) -> Any:
        """Wait for the gate, then run the real EVALSHA."""
        self.entered.set()
        await self.gate.wait()
        return await super().evalsha(*args)


async def test_cancellation_during_a_redis_step_propagates(build: Build, own_server: RedisServer) -> None:
    """A caller cancelled while waiting on Redis gets CancelledError; it is no outage."""
    client = GatedClient(host="127.0.0.1", port=own_server.port)
    breaker, backend = build(client=client, timeout=5.0)

    @breaker
    async def work() -> str:
        return "ok"

    task = asyncio.create_task(work())
    await client.entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not degraded(backend)
    client.gate.set()
    assert await work() == "ok"
    assert not degraded(backend)


class LateReplyClient(redis.asyncio.Redis):
    """An asyncio client whose EVALSHA runs on the server, then holds its reply until a gate opens."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.hold = False
        self.entered = asyncio.Event()
        self.gate = asyncio.Event()

    async def evalsha(self, *args: Any) -> Any:
        """Run the real EVALSHA; while holding, wait for the gate before returning its reply."""
        reply = await super().evalsha(*args)
        if self.hold:
            self.entered.set()
            await self.gate.wait()
        return reply


async def test_probe_lease_granted_to_a_cancelled_admission_is_released(
    build: Build, own_server: RedisServer
) -> None:
    """A caller cancelled after the server granted its probe lease (reply in transit) leaks no lease."""
    client = LateReplyClient(host="127.0.0.1", port=own_server.port)
    breaker, backend = build(client=client, timeout=5.0, recovery_timeout=0.05)

    @breaker
    async def work(fail: bool) -> str:
        if fail:
            raise ConnectionError("down")
        return "ok"

    for _ in range(3):
        with pytest.raises(ConnectionError):
            await work(True)
    wait_until_probe_allowed(backend)
    client.hold = True
    task = asyncio.create_task(work(False))
    await client.entered.wait()
    assert backend.stats().probes_in_flight == 1
    client.hold = False
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for _ in range(100):  # the release runs in the background: bounded wait for it
        if backend.stats().probes_in_flight == 0:
            break
        await asyncio.sleep(0)
    assert backend.stats().probes_in_flight == 0
    assert await work(False) == "ok"


class Scripted(redis.asyncio.Redis):
    """An asyncio client whose EVALSHAs follow ``plan``: "run", "hold" (its reply), "fail", "hold-fail"."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.plan: list[str] = []
        self.entered = asyncio.Event()
        self.gate = asyncio.Event()

    async def evalsha(self, *args: Any) -> Any:
        """Run the next planned action."""
        action = self.plan.pop(0) if self.plan else "run"
        if action.startswith("hold"):
            self.entered.set()
        if action == "hold-fail":
            await self.gate.wait()
        if action.endswith("fail"):
            raise redis.exceptions.ConnectionError("scripted failure")
        reply = await super().evalsha(*args)
        if action == "hold":
            await self.gate.wait()
        return reply


async def ok() -> str:
    """Succeed."""
    return "ok"


def several_steps_at_once(client: redis.asyncio.Redis) -> None:
    """Let this loop run several steps on *client*'s pool at once (as after a warm-up)."""
    async_gate(client, asyncio.get_running_loop()).capacity = 4


async def test_a_late_reply_from_before_an_outage_does_not_end_it(
    build: Build, own_server: RedisServer
) -> None:
    """A step that started before Redis failed and answers afterwards reports no recovery (no flapping)."""
    client = Scripted(host="127.0.0.1", port=own_server.port)
    breaker, backend = build(client=client)
    several_steps_at_once(client)
    client.plan = ["hold", "fail"]
    with capture_events() as events:
        early = asyncio.create_task(breaker.call(ok))
        await client.entered.wait()  # its step ran on the server; the reply is held
        assert await breaker.call(ok) == "ok"  # this step fails: the outage starts
        assert degraded(backend)
        client.gate.set()
        assert await early == "ok"
        assert degraded(backend)
        for _ in range(3):
            assert await breaker.call(ok) == "ok"
    assert backend_events(events) == [BackendDegraded]


async def test_a_late_failure_from_before_a_recovery_does_not_start_an_outage(
    build: Build, own_server: RedisServer, clock: FakeClock
) -> None:
    """A step that started before Redis recovered and fails afterwards starts no second outage."""
    client = Scripted(host="127.0.0.1", port=own_server.port)
    breaker, backend = build(client=client)
    several_steps_at_once(client)
    client.plan = ["hold-fail", "fail"]
    with capture_events() as events:
        early = asyncio.create_task(breaker.call(ok))
        await client.entered.wait()
        assert await breaker.call(ok) == "ok"  # the outage starts
        clock.advance(1.0)
        assert await breaker.call(ok) == "ok"  # the reconnect attempt: Redis answers
        assert not degraded(backend)
        client.gate.set()
        assert await early == "ok"  # its step failed, but it began before the recovery
        assert not degraded(backend)
    assert backend_events(events) == [BackendDegraded, BackendRecovered]


async def test_fifty_callers_through_a_kill_and_restart_see_one_outage(
    build: Build, own_server: RedisServer, clock: FakeClock
) -> None:
    """Fifty tasks calling while Redis is killed and restarted: exactly one Degraded, then one Recovered."""
    breaker, backend = build(timeout=0.05)  # the default budget
    down, up = asyncio.Event(), asyncio.Event()
    seen: list[Any] = []

    def watch(event: Any) -> None:
        seen.append(event)
        (down if isinstance(event, BackendDegraded) else up).set()

    stop = False
    served = 0

    async def caller() -> None:
        nonlocal served
        while not stop:
            assert await breaker.call(ok) == "ok"
            served += 1
            await asyncio.sleep(0)

    with resilient.subscribe(watch, BackendDegraded, BackendRecovered):
        tasks = [asyncio.create_task(caller()) for _ in range(50)]
        while served < 200:
            await asyncio.sleep(0)
        own_server.kill()
        await asyncio.wait_for(down.wait(), 10)
        for _ in range(200):
            await asyncio.sleep(0)  # calls keep being served on local state
        own_server.start()
        clock.advance(1.0)
        await asyncio.wait_for(up.wait(), 10)
        before = served
        while served < before + 200:
            await asyncio.sleep(0)
        stop = True
        await asyncio.gather(*tasks)
    assert [type(e) for e in seen] == [BackendDegraded, BackendRecovered]
    assert not degraded(backend)
