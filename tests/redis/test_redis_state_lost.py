"""State lost to FLUSHALL, a restart or eviction: reported; isolation survives, open periods if asked."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis.asyncio
from _helpers import invoke
from _redis_fixture import RedisServer
from prometheus_client import CollectorRegistry
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

import resilient
from resilient import CircuitBreaker, CircuitOpenError, CircuitState, circuit_breaker
from resilient.adapters.prometheus import PrometheusAdapter
from resilient.backends.redis import RedisBackend
from resilient.events import BackendDegraded, BackendRecovered, BackendStateLost, CircuitOpened
from resilient.testing import FakeClock, capture_events

pytestmark = pytest.mark.redis

Build = Callable[..., CircuitBreaker]


@pytest.fixture
async def build(own_server: RedisServer, clock: FakeClock) -> AsyncIterator[Build]:
    """Build breakers ("process" = one backend and client each) on this test's own server."""
    made: list[tuple[RedisBackend, redis.asyncio.Redis]] = []

    def make(**options: Any) -> CircuitBreaker:
        client = own_server.async_client(retry=Retry(NoBackoff(), 0))
        backend_options = {
            k: options.pop(k) for k in ("key_ttl", "probe_lease", "restore_open") if k in options
        }
        backend = RedisBackend(client, timeout=1.0, **backend_options)
        made.append((backend, client))
        options.setdefault("failure_threshold", 3)
        return circuit_breaker(name="lost", backend=backend, clock=clock, **options)

    yield make
    for backend, client in made:
        await backend.aclose()
        await client.aclose()


def flushall(server: RedisServer) -> None:
    """Empty every database of *server* (its scripts stay)."""
    admin = server.sync_client()
    admin.flushall()
    admin.close()


def evict(server: RedisServer, breaker: CircuitBreaker) -> None:
    """Remove the breaker's keys as maxmemory eviction (allkeys-*) would."""
    admin = server.sync_client()
    admin.unlink(*breaker.backend.keys)  # type: ignore[attr-defined]
    admin.close()


@pytest.fixture(params=["flushall", "eviction"])
def lose(request: pytest.FixtureRequest, own_server: RedisServer) -> Callable[[CircuitBreaker], None]:
    """Make the server lose a breaker's state: FLUSHALL, or its keys evicted."""
    if request.param == "flushall":
        return lambda breaker: flushall(own_server)
    return lambda breaker: evict(own_server, breaker)


def lost_events(events: list[Any]) -> list[tuple[CircuitState, CircuitState]]:
    """(previous, state) of every BackendStateLost, in order."""
    return [(e.previous, e.state) for e in events if isinstance(e, BackendStateLost)]


async def open_it(breaker: CircuitBreaker, flavour: str) -> None:
    """Open *breaker* with three failures."""
    for _ in range(3):
        with pytest.raises(ConnectionError):
            await invoke(breaker, flavour, ConnectionError("down"))
    assert breaker.stats().state is CircuitState.OPEN


async def test_a_lost_open_breaker_is_reported(
    build: Build, lose: Callable[[CircuitBreaker], None], flavour: str
) -> None:
    """By default a lost OPEN state starts CLOSED: the next step reports the loss (OPEN -> CLOSED), once."""
    breaker = build()
    await open_it(breaker, flavour)
    lose(breaker)
    with capture_events() as events:
        assert await invoke(breaker, flavour) == "ok"
        assert await invoke(breaker, flavour) == "ok"
    assert lost_events(events) == [(CircuitState.OPEN, CircuitState.CLOSED)]
    event = next(e for e in events if isinstance(e, BackendStateLost))
    assert (event.policy, event.name, event.operation) == ("circuit_breaker", "lost", None)
    assert "resilient:{lost}" in event.backend


async def test_a_lost_state_is_counted_by_the_prometheus_adapter(
    build: Build, own_server: RedisServer, flavour: str
) -> None:
    """With only the Prometheus adapter listening, a flushed OPEN breaker counts one lost state."""
    registry = CollectorRegistry()
    PrometheusAdapter(registry).attach()
    breaker = build()
    await open_it(breaker, flavour)
    flushall(own_server)
    assert await invoke(breaker, flavour) == "ok"
    assert await invoke(breaker, flavour) == "ok"
    labels = {"policy": "circuit_breaker", "name": "lost"}
    assert registry.get_sample_value("resilient_backend_state_lost_total", labels) == 1.0


async def test_a_lost_isolated_breaker_stays_isolated(
    build: Build, lose: Callable[[CircuitBreaker], None], flavour: str
) -> None:
    """Losing the state cannot end an isolation: the next step restores ISOLATED and reports the loss."""
    breaker = build()
    breaker.isolate()
    lose(breaker)
    with capture_events() as events, pytest.raises(CircuitOpenError) as info:
        await invoke(breaker, flavour)
    assert info.value.retry_after is None
    assert breaker.stats().state is CircuitState.ISOLATED
    assert lost_events(events) == [(CircuitState.ISOLATED, CircuitState.ISOLATED)]
    breaker.reset()  # the operator's reset still ends it
    assert await invoke(breaker, flavour) == "ok"


async def test_the_process_that_saw_the_isolation_restores_it_for_all(
    build: Build, own_server: RedisServer
) -> None:
    """After a loss, a process that knew nothing starts CLOSED; one that saw ISOLATED restores it for both."""
    knew, fresh = build(), build()
    knew.isolate()
    flushall(own_server)
    assert await invoke(fresh, "async") == "ok"  # it recreates the state: CLOSED
    with capture_events() as events:
        with pytest.raises(CircuitOpenError):
            await invoke(knew, "async")
        with pytest.raises(CircuitOpenError):
            await invoke(fresh, "async")
    assert lost_events(events) == [(CircuitState.ISOLATED, CircuitState.ISOLATED)]


async def test_a_reset_after_the_restore_is_not_undone(build: Build, own_server: RedisServer) -> None:
    """Once one process restored an isolation and an operator reset it, other processes leave it CLOSED."""
    first, second = build(), build()
    first.isolate()
    assert second.state is CircuitState.ISOLATED  # both saw it isolated
    flushall(own_server)
    with pytest.raises(CircuitOpenError):
        await invoke(first, "async")  # restores it
    await first.reset_async()
    with capture_events() as events:
        assert await invoke(second, "async") == "ok"
    assert second.stats().state is CircuitState.CLOSED
    assert lost_events(events) == [(CircuitState.ISOLATED, CircuitState.CLOSED)]


async def test_a_restart_of_redis_keeps_the_isolation(
    build: Build, own_server: RedisServer, clock: FakeClock, flavour: str
) -> None:
    """Killed and restarted: ISOLATED holds during the outage (locally) and after it (restored)."""
    breaker = build()
    breaker.isolate()
    own_server.kill()
    with capture_events() as events:
        with pytest.raises(CircuitOpenError):
            await invoke(breaker, flavour)  # served locally: still isolated
        own_server.start()
        clock.advance(1.0)
        with pytest.raises(CircuitOpenError):
            await invoke(breaker, flavour)  # back on shared state: restored
    kinds = [type(e) for e in events if isinstance(e, (BackendDegraded, BackendRecovered, BackendStateLost))]
    assert kinds == [BackendDegraded, BackendRecovered, BackendStateLost]
    assert lost_events(events) == [(CircuitState.ISOLATED, CircuitState.ISOLATED)]
    assert breaker.stats().state is CircuitState.ISOLATED


async def test_a_restart_of_redis_loses_an_open_breaker_and_says_so(
    build: Build, own_server: RedisServer, clock: FakeClock
) -> None:
    """Killed and restarted with the breaker OPEN: it comes back CLOSED, with BackendStateLost."""
    breaker = build()
    await open_it(breaker, "async")
    own_server.kill()
    with capture_events() as events:
        assert await invoke(breaker, "async") == "ok"  # local state: it knows nothing of the shared one
        own_server.start()
        clock.advance(1.0)
        for _ in range(3):
            assert await invoke(breaker, "async") == "ok"
    kinds = [type(e) for e in events if isinstance(e, (BackendDegraded, BackendRecovered, BackendStateLost))]
    assert kinds == [BackendDegraded, BackendRecovered, BackendStateLost]
    assert lost_events(events) == [(CircuitState.OPEN, CircuitState.CLOSED)]


async def test_a_lost_open_breaker_is_restored_and_reported(
    build: Build, lose: Callable[[CircuitBreaker], None], flavour: str
) -> None:
    """With restore_open, a lost OPEN state is restored for the rest of its open period, reported once."""
    breaker = build(restore_open=True)
    await open_it(breaker, flavour)
    lose(breaker)
    with capture_events() as events:
        for _ in range(2):
            with pytest.raises(CircuitOpenError) as info:
                await invoke(breaker, flavour)
            assert info.value.retry_after is not None
            assert 0 < info.value.retry_after <= 30.0  # what is left of the open period
    assert breaker.stats().state is CircuitState.OPEN
    assert lost_events(events) == [(CircuitState.OPEN, CircuitState.OPEN)]
    event = next(e for e in events if isinstance(e, BackendStateLost))
    assert (event.policy, event.name, event.operation) == ("circuit_breaker", "lost", None)
    assert "resilient:{lost}" in event.backend
    breaker.reset()  # the operator's reset still ends it
    assert await invoke(breaker, flavour) == "ok"


async def test_an_open_period_that_ended_is_not_restored(build: Build, own_server: RedisServer) -> None:
    """A state lost after its open period ended starts CLOSED (reported OPEN -> CLOSED): probing was due."""
    breaker = build(recovery_timeout=0.01, probe_lease=0.01, restore_open=True)
    await open_it(breaker, "async")
    admin = own_server.sync_client()
    seconds, micros = admin.time()
    opened = seconds + micros / 1e6
    for _ in range(1_000_000):  # 10 ms of server time: poll, never sleep
        seconds, micros = admin.time()
        if seconds + micros / 1e6 > opened + 0.02:
            break
    admin.close()
    flushall(own_server)
    with capture_events() as events:
        assert await invoke(breaker, "async") == "ok"
    assert breaker.stats().state is CircuitState.CLOSED
    assert lost_events(events) == [(CircuitState.OPEN, CircuitState.CLOSED)]


async def test_the_process_that_saw_it_open_restores_it_for_all(
    build: Build, own_server: RedisServer
) -> None:
    """After a loss, a process that knew nothing starts CLOSED; one that saw OPEN restores it for both."""
    knew, fresh = build(restore_open=True), build(restore_open=True)
    await open_it(knew, "async")
    flushall(own_server)
    assert await invoke(fresh, "async") == "ok"  # it recreates the state: CLOSED
    with capture_events() as events:
        with pytest.raises(CircuitOpenError):
            await invoke(knew, "async")
        with pytest.raises(CircuitOpenError):
            await invoke(fresh, "async")
    assert lost_events(events) == [(CircuitState.OPEN, CircuitState.OPEN)]


async def test_a_reset_after_an_open_restore_is_not_undone(build: Build, own_server: RedisServer) -> None:
    """Once one process restored an open breaker and an operator reset it, other processes leave it CLOSED."""
    first, second = build(restore_open=True), build(restore_open=True)
    await open_it(first, "async")
    assert second.state is CircuitState.OPEN  # both saw it open
    flushall(own_server)
    with pytest.raises(CircuitOpenError):
        await invoke(first, "async")  # restores it
    await first.reset_async()
    with capture_events() as events:
        assert await invoke(second, "async") == "ok"
    assert second.stats().state is CircuitState.CLOSED
    assert lost_events(events) == [(CircuitState.OPEN, CircuitState.CLOSED)]


async def test_a_restart_of_redis_restores_an_open_breaker_and_says_so(
    build: Build, own_server: RedisServer, clock: FakeClock
) -> None:
    """Killed and restarted with the breaker OPEN: admitted locally meanwhile, OPEN once Redis is back."""
    breaker = build(restore_open=True)
    await open_it(breaker, "async")
    own_server.kill()
    with capture_events() as events:
        assert await invoke(breaker, "async") == "ok"  # local state: it knows nothing of the shared one
        own_server.start()
        clock.advance(1.0)
        for _ in range(3):
            with pytest.raises(CircuitOpenError):
                await invoke(breaker, "async")
    kinds = [type(e) for e in events if isinstance(e, (BackendDegraded, BackendRecovered, BackendStateLost))]
    assert kinds == [BackendDegraded, BackendRecovered, BackendStateLost]
    assert lost_events(events) == [(CircuitState.OPEN, CircuitState.OPEN)]


async def test_a_state_that_expired_is_not_reported_as_lost(build: Build, own_server: RedisServer) -> None:
    """Keys that lived out their TTL (an unused breaker) are not a loss: no event."""
    breaker = build(failure_threshold=1, recovery_timeout=0.01, key_ttl=0.05, probe_lease=0.01)
    with capture_events() as events, pytest.raises(ConnectionError):
        await invoke(breaker, "async", ConnectionError("down"))
    assert [type(e) for e in events if isinstance(e, CircuitOpened)] == [CircuitOpened]
    admin = own_server.sync_client()
    state = breaker.backend.keys[0]  # type: ignore[attr-defined]
    for _ in range(1_000_000):  # its TTL is 50 ms of server time: poll, never sleep
        if not admin.exists(state):
            break
    assert not admin.exists(state)
    admin.close()
    with capture_events() as events:
        assert await invoke(breaker, "async") == "ok"
    assert lost_events(events) == []


def test_backend_state_lost_is_public() -> None:
    """BackendStateLost is importable from resilient.events with its fields."""
    event = BackendStateLost(
        policy="circuit_breaker",
        name="payments",
        operation=None,
        time=0.0,
        backend="redis 127.0.0.1:6379/0 resilient:{payments}",
        previous=CircuitState.OPEN,
        state=CircuitState.CLOSED,
    )
    assert isinstance(event, resilient.events.Event)
    assert BackendStateLost.__module__ == "resilient.events"
