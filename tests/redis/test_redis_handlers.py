"""Event handlers that fail or interrupt while the Redis link reports an outage or a recovery."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis.asyncio
from _helpers import invoke, wait_until_probe_allowed
from _redis_fixture import RedisServer
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from resilient import CircuitBreaker, CircuitState, EventBus, circuit_breaker
from resilient.backends.redis import RedisBackend
from resilient.events import BackendDegraded, BackendRecovered, Event
from resilient.testing import FakeClock

pytestmark = pytest.mark.redis

Build = Callable[..., tuple[CircuitBreaker, RedisBackend]]


@pytest.fixture
async def build(own_server: RedisServer, clock: FakeClock) -> AsyncIterator[Build]:
    """Build breakers named "handlers" on this test's own server, on one bus; reconnects run on ``clock``."""
    made: list[tuple[RedisBackend, redis.asyncio.Redis]] = []

    def make(bus: EventBus, **options: Any) -> tuple[CircuitBreaker, RedisBackend]:
        client = own_server.async_client(retry=Retry(NoBackoff(), 0))
        recovery = options.pop("recovery_timeout", 30.0)
        backend = RedisBackend(client, reconnect_interval=1.0, timeout=0.5, **options)
        made.append((backend, client))
        breaker = circuit_breaker(
            name="handlers",
            failure_threshold=3,
            recovery_timeout=recovery,
            backend=backend,
            clock=clock,
            bus=bus,
        )
        return breaker, backend

    yield make
    for backend, client in made:
        await backend.aclose()
        await client.aclose()


def degraded(backend: RedisBackend) -> bool:
    """Whether *backend* runs on local state now (a call, so mypy does not narrow it)."""
    return backend.degraded


async def wrong_arity() -> None:
    """An async handler that takes no event: calling it with one raises TypeError."""


async def test_failing_handler_on_backend_degraded_is_no_caller_error(
    build: Build, own_server: RedisServer, flavour: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A handler that raises when called on BackendDegraded leaves the outage invisible to the caller."""
    bus = EventBus()
    bus.subscribe(wrong_arity, BackendDegraded)  # type: ignore[arg-type]
    breaker, backend = build(bus)
    assert await invoke(breaker, flavour) == "ok"
    own_server.kill()
    with caplog.at_level(logging.CRITICAL, logger="resilient"):
        assert await invoke(breaker, flavour) == "ok"  # served on local state, not a TypeError
        assert await invoke(breaker, flavour) == "ok"
    assert degraded(backend)


async def test_interrupting_handler_on_backend_degraded_leaves_the_link_degraded(
    build: Build, own_server: RedisServer, flavour: str
) -> None:
    """A KeyboardInterrupt from a BackendDegraded handler propagates; the next call runs on local state."""
    bus = EventBus()
    raised: list[BaseException] = []

    def interrupt(event: Event) -> None:
        if not raised:
            raised.append(KeyboardInterrupt())
            raise raised[0]

    bus.subscribe(interrupt, BackendDegraded)
    breaker, backend = build(bus)
    own_server.kill()
    with pytest.raises(KeyboardInterrupt) as info:
        await invoke(breaker, flavour)
    assert info.value is raised[0]
    assert degraded(backend)
    assert await invoke(breaker, flavour) == "ok"


async def test_interrupting_handler_on_backend_recovered_leaks_no_probe_lease(
    build: Build, own_server: RedisServer, clock: FakeClock, flavour: str
) -> None:
    """A KeyboardInterrupt from BackendRecovered, after Redis granted a probe lease, frees the lease."""
    bus = EventBus()
    raised: list[BaseException] = []

    def interrupt(event: Event) -> None:
        if not raised:
            raised.append(KeyboardInterrupt())
            raise raised[0]

    bus.subscribe(interrupt, BackendRecovered)
    breaker, backend = build(bus, recovery_timeout=0.05)
    peer, peer_backend = build(EventBus(), recovery_timeout=0.05)  # another process sharing the state
    assert await invoke(breaker, flavour) == "ok"
    own_server.kill()  # this process loses Redis...
    assert await invoke(breaker, flavour) == "ok"
    assert degraded(backend)
    own_server.start()  # ...which comes back empty, and the peer opens the shared breaker
    for _ in range(3):
        with pytest.raises(ConnectionError):
            await invoke(peer, flavour, ConnectionError("down"))
    wait_until_probe_allowed(peer_backend)
    clock.advance(1.0)  # this process tries Redis again: its admission is granted the probe
    with pytest.raises(KeyboardInterrupt) as info:
        await invoke(breaker, flavour)
    assert info.value is raised[0]
    assert not degraded(backend)
    for _ in range(100):  # an async release runs in the background: bounded wait for it
        if peer_backend.stats().probes_in_flight == 0:
            break
        await asyncio.sleep(0)
    assert peer_backend.stats().probes_in_flight == 0
    assert await invoke(breaker, flavour) == "ok"
    assert breaker.state is CircuitState.CLOSED
