"""A rate limit shared through Redis: the Lua step, round trips, waiting, cancellation, outages, a fleet."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio
from _helpers import attempt, evalsha_calls
from _redis_fixture import RedisServer
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from resilient import (
    CircuitOpenError,
    RateLimitedError,
    RateLimiter,
    circuit_breaker,
    pipeline,
    rate_limiter,
    timeout,
)
from resilient.backends.redis import RedisRateLimiterBackend
from resilient.events import BackendDegraded, BackendRecovered, RateLimited
from resilient.testing import FakeClock, capture_events

pytestmark = pytest.mark.redis

WORKER = str(Path(__file__).with_name("_limiter_worker.py"))
Build = Callable[..., RateLimiter]


@pytest.fixture
async def build(async_client: redis.asyncio.Redis, clock: FakeClock) -> AsyncIterator[Build]:
    """Build limiters sharing the test's server; their waits sleep on ``clock``."""
    made: list[RedisRateLimiterBackend] = []

    def make(rate: float = 10, *, name: str = "api", client: Any = None, **options: Any) -> RateLimiter:
        backend_options = {k: options.pop(k) for k in ("prefix", "local_share", "timeout") if k in options}
        backend_options.setdefault("timeout", 1.0)
        backend = RedisRateLimiterBackend(client or async_client, **backend_options)
        made.append(backend)
        options.setdefault("clock", clock)
        return rate_limiter(rate, name=name, backend=backend, **options)

    yield make
    for backend in made:
        await backend.aclose()


async def until(condition: Callable[[], bool]) -> None:
    """Run the loop (its I/O included) until *condition* holds; bounded, never sleeping."""
    for _ in range(1_000_000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never became true")


async def test_the_burst_is_admitted_then_calls_are_rejected(build: Build, flavour: str) -> None:
    """The shared limit admits the burst at once, then rejects with the server's time until a permit."""
    rl = build(10, burst=3)
    got = [await attempt(rl, flavour) for _ in range(4)]
    assert got[:3] == ["ok"] * 3
    assert isinstance(got[3], float)
    assert 0.0 < got[3] <= 0.1


async def test_limiters_with_one_name_share_one_limit(build: Build, flavour: str) -> None:
    """Two limiters with the same name (as in two processes) draw on one limit; other names do not."""
    first, second = build(1, burst=2), build(1, burst=2)
    other_name, other_prefix = build(1, burst=2, name="other"), build(1, burst=2, prefix="tenant-b")
    assert [await attempt(first, flavour), await attempt(second, flavour)] == ["ok", "ok"]
    assert isinstance(await attempt(first, flavour), float)
    assert isinstance(await attempt(second, flavour), float)
    assert await attempt(other_name, flavour) == "ok"
    assert await attempt(other_prefix, flavour) == "ok"


async def test_one_call_is_one_round_trip(build: Build, sync_client: redis.Redis, flavour: str) -> None:
    """Every call, admitted or rejected, costs exactly one EVALSHA."""
    rl = build(5, burst=5)
    await attempt(rl, flavour)  # loads the script
    sync_client.config_resetstat()
    for _ in range(10):
        await attempt(rl, flavour)
    assert evalsha_calls(sync_client) == 10


async def test_a_flushed_script_is_loaded_again(build: Build, sync_client: redis.Redis, flavour: str) -> None:
    """After SCRIPT FLUSH (or a restart) the next call loads the script again and is decided."""
    rl = build(5, burst=1)
    assert await attempt(rl, flavour) == "ok"
    sync_client.script_flush()
    assert isinstance(await attempt(rl, flavour), float)


async def test_the_key_is_named_for_the_limit_and_expires(
    build: Build, sync_client: redis.Redis, flavour: str
) -> None:
    """The state is one key, {prefix}:{name}:rate, living only as long as it matters."""
    rl = build(10, burst=2, name="search")
    await attempt(rl, flavour)
    backend = rl.backend
    assert isinstance(backend, RedisRateLimiterBackend)
    assert backend.key == "resilient:{search}:rate"
    assert sync_client.keys() == [b"resilient:{search}:rate"]
    assert 0 < sync_client.pttl(backend.key) <= 1100


async def test_a_permit_within_max_wait_is_waited_for_on_the_clock(
    build: Build, clock: FakeClock, flavour: str
) -> None:
    """A granted wait is slept on the limiter's clock (FakeClock here), then the call runs."""
    rl = build(10, burst=1, max_wait=1)
    assert await attempt(rl, flavour) == "ok"
    assert await attempt(rl, flavour) == "ok"
    assert len(clock.sleeps) == 1
    assert 0.05 < clock.sleeps[0] <= 0.1


async def test_a_wait_beyond_max_wait_is_rejected_without_a_reservation(
    build: Build, sync_client: redis.Redis, flavour: str
) -> None:
    """A call whose permit is beyond max_wait is refused at once and reserves nothing."""
    rl = build(1, burst=1, max_wait=0.5)
    assert await attempt(rl, flavour) == "ok"
    backend = rl.backend
    assert isinstance(backend, RedisRateLimiterBackend)
    before = sync_client.get(backend.key)
    with capture_events(RateLimited) as events:
        got = await attempt(rl, flavour)
    assert isinstance(got, float)
    assert 0.5 < got <= 1.0
    assert sync_client.get(backend.key) == before
    assert len(events) == 1


async def test_the_ambient_deadline_bounds_a_shared_wait(build: Build, clock: FakeClock) -> None:
    """Inside a timeout shorter than the wait, the shared limit refuses at once instead of reserving."""
    rl = build(10, burst=1, max_wait=5)

    async def work() -> str:
        return "ok"

    assert await rl.call(work) == "ok"
    with pytest.raises(RateLimitedError):
        async with timeout(0.05, clock=clock):
            await rl.call(work)
    assert clock.sleeps == []


async def test_a_cancelled_waiter_gives_back_the_latest_reservation(
    build: Build, sync_client: redis.Redis, manual_clock: FakeClock
) -> None:
    """A call cancelled while it sleeps toward the newest permit gives it back: the next caller gets it."""
    rl = build(1, burst=1, max_wait=10, clock=manual_clock)
    backend = rl.backend
    assert isinstance(backend, RedisRateLimiterBackend)

    async def work() -> str:
        return "ok"

    await rl.call(work)
    before = int(sync_client.get(backend.key) or 0)
    waiter = asyncio.create_task(rl.call(work))
    await until(lambda: bool(manual_clock.sleeps))
    assert int(sync_client.get(backend.key) or 0) == before + 1_000_000
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert int(sync_client.get(backend.key) or 0) == before


class Hooked(FakeClock):
    """A fake clock that runs *hook* whenever something sleeps on it."""

    def __init__(self, hook: Callable[[], object]) -> None:
        super().__init__()
        self.hook = hook

    async def sleep(self, seconds: float) -> None:
        """Run the hook, then advance as a FakeClock does."""
        self.hook()
        await super().sleep(seconds)

    def sleep_blocking(self, seconds: float) -> None:
        """Run the hook, then advance as a FakeClock does."""
        self.hook()
        super().sleep_blocking(seconds)


async def test_a_call_a_breaker_rejects_after_its_wait_gives_back_its_reservation(
    build: Build, sync_client: redis.Redis, flavour: str
) -> None:
    """The breaker opens while a call waits for the fleet's permit: rejected, its reservation returns."""
    breaker = circuit_breaker(name="api")
    clock = Hooked(breaker.isolate)
    rl = build(1, burst=1, max_wait=10, clock=clock)
    backend = rl.backend
    assert isinstance(backend, RedisRateLimiterBackend)
    guarded = pipeline(breaker, rl)

    def work_sync() -> str:
        return "ok"

    async def work() -> str:
        return "ok"

    async def call() -> str:
        return guarded.call(work_sync) if flavour == "sync" else await guarded.call(work)

    assert await call() == "ok"  # the free permit: no sleep, no hook
    before = int(sync_client.get(backend.key) or 0)
    with pytest.raises(CircuitOpenError):
        await call()  # reserves the permit a second away, sleeps toward it (the breaker is isolated)
    assert len(clock.sleeps) == 1
    assert int(sync_client.get(backend.key) or 0) == before  # given back: the next caller gets it


async def test_an_earlier_reservation_is_not_given_back(
    build: Build, sync_client: redis.Redis, manual_clock: FakeClock
) -> None:
    """A cancelled waiter with a later reservation behind it leaves its slot unused (never over the limit)."""
    rl = build(1, burst=1, max_wait=10, clock=manual_clock)
    backend = rl.backend
    assert isinstance(backend, RedisRateLimiterBackend)

    async def work() -> str:
        return "ok"

    await rl.call(work)
    first = asyncio.create_task(rl.call(work))
    await until(lambda: len(manual_clock.sleeps) == 1)
    second = asyncio.create_task(rl.call(work))
    await until(lambda: len(manual_clock.sleeps) == 2)
    latest = int(sync_client.get(backend.key) or 0)
    first.cancel()
    await asyncio.gather(first, return_exceptions=True)
    assert int(sync_client.get(backend.key) or 0) == latest  # `second` counts on it: not given back
    second.cancel()
    await asyncio.gather(second, return_exceptions=True)
    assert int(sync_client.get(backend.key) or 0) == latest - 1_000_000  # the latest one is


def test_a_sync_waiter_interrupted_gives_back_its_reservation(sync_client: redis.Redis) -> None:
    """A KeyboardInterrupt while a thread sleeps toward its permit cancels the reservation on the server."""

    class Interrupting(FakeClock):
        def sleep_blocking(self, seconds: float) -> None:
            raise KeyboardInterrupt

    backend = RedisRateLimiterBackend(sync_client, timeout=1.0)
    rl = rate_limiter(1, burst=1, max_wait=10, name="sync-cancel", backend=backend, clock=Interrupting())
    with rl:
        pass
    before = sync_client.get(backend.key)
    with pytest.raises(KeyboardInterrupt), rl:
        pass
    assert sync_client.get(backend.key) == before
    backend.close()


# --- configuration --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "param"),
    [
        ({"local_share": 0}, ValueError, "local_share"),
        ({"local_share": 1.5}, ValueError, "local_share"),
        ({"timeout": 0}, ValueError, "timeout"),
        ({"reconnect_interval": -1}, ValueError, "reconnect_interval"),
        ({"prefix": ""}, ValueError, "prefix"),
        ({"sync_client": object()}, TypeError, "sync_client"),
    ],
)
def test_bad_settings_name_the_parameter(
    sync_client: redis.Redis, kwargs: dict[str, Any], error: type[Exception], param: str
) -> None:
    """Bad backend settings fail at construction with an error naming the parameter."""
    with pytest.raises(error, match=param):
        RedisRateLimiterBackend(sync_client, **kwargs)


def test_a_client_must_be_a_redis_client() -> None:
    """Anything but a redis client is refused at construction."""
    with pytest.raises(TypeError, match="client"):
        RedisRateLimiterBackend(object())


def test_the_shared_limit_needs_a_name(sync_client: redis.Redis) -> None:
    """A limiter without a name cannot share a limit: rate_limiter() says so."""
    with pytest.raises(ValueError, match="name"):
        rate_limiter(10, backend=RedisRateLimiterBackend(sync_client))


def test_a_backend_serves_one_limiter(sync_client: redis.Redis) -> None:
    """Binding one backend to a second limiter fails: limiters share a limit by name, not by object."""
    backend = RedisRateLimiterBackend(sync_client, name="one")
    rate_limiter(10, backend=backend)
    with pytest.raises(ValueError, match="already bound"):
        rate_limiter(10, backend=backend)


def test_attributes_and_repr(sync_client: redis.Redis) -> None:
    """The backend shows its server, key and status; its settings read back."""
    backend = RedisRateLimiterBackend(sync_client, timeout=0.2, reconnect_interval=3, local_share=0.5)
    rate_limiter(10, name="shown", backend=backend)
    port = sync_client.connection_pool.connection_kwargs["port"]
    assert repr(backend) == f"<RedisRateLimiterBackend redis 127.0.0.1:{port}/0 resilient:{{shown}} shared>"
    assert (backend.timeout, backend.reconnect_interval, backend.local_share, backend.degraded) == (
        0.2,
        3.0,
        0.5,
        False,
    )


# --- outages ----------------------------------------------------------------------------


def degraded(backend: RedisRateLimiterBackend) -> bool:
    """Whether *backend* decides on local state now (a call, so mypy does not narrow it)."""
    return backend.degraded


@pytest.fixture
async def outage_limiter(own_server: RedisServer, clock: FakeClock) -> AsyncIterator[RateLimiter]:
    """A limiter (10/s, burst 4, half of it locally) on this test's own server, which it may kill."""
    client = own_server.async_client(retry=Retry(NoBackoff(), 0))
    backend = RedisRateLimiterBackend(client, timeout=0.5, reconnect_interval=1.0, local_share=0.5)
    yield rate_limiter(10, burst=4, name="outage", backend=backend, clock=clock)
    await backend.aclose()
    await client.aclose()


async def test_a_dead_redis_falls_back_to_the_local_share_and_comes_back(
    outage_limiter: RateLimiter, own_server: RedisServer, clock: FakeClock, flavour: str
) -> None:
    """Redis down: calls are decided locally on local_share of the limit; back up: shared again."""
    backend = outage_limiter.backend
    assert isinstance(backend, RedisRateLimiterBackend)
    own_server.kill()
    with capture_events(BackendDegraded, BackendRecovered) as events:
        got = [await attempt(outage_limiter, flavour) for _ in range(3)]
        assert got[:2] == ["ok", "ok"]  # half of the burst of 4
        assert got[2] == pytest.approx(0.2)  # half of the rate: a permit per 0.2 s
        assert degraded(backend)
        own_server.start()
        clock.advance(1.0)  # the reconnect interval
        assert await attempt(outage_limiter, flavour) == "ok"
        assert not degraded(backend)
    assert [(type(e), e.policy, e.name) for e in events] == [
        (BackendDegraded, "rate_limiter", "outage"),
        (BackendRecovered, "rate_limiter", "outage"),
    ]


# --- a fleet of processes -------------------------------------------------------------------


def over_the_limit(times: list[int], interval_us: int, burst: int) -> list[tuple[int, int, int]]:
    """Windows [t_i, t_j] holding more admissions than rate * window + burst: (count, allowed, span_us)."""
    times = sorted(times)
    found = []
    for i in range(len(times)):
        for j in range(i, len(times)):
            span = times[j] - times[i]
            count, allowed = j - i + 1, span // interval_us + burst
            if count > allowed:
                found.append((count, allowed, span))
    return found


def test_four_processes_never_exceed_the_fleet_rate(
    redis_server: RedisServer, workers: list[subprocess.Popen[str]]
) -> None:
    """Four processes hammer one shared limit: no server-time window holds over rate * window + burst."""
    rate, burst = 200, 5
    modes = [0.0, 0.0, 0.02, 0.02]  # two reject at once, two wait up to 20 ms for a permit
    for max_wait in modes:
        args = [str(redis_server.port), "fleet", str(rate), str(burst), str(max_wait), "400"]
        proc = subprocess.Popen(
            [sys.executable, WORKER, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        workers.append(proc)
    for proc in workers:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
    for proc in workers:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    admitted: list[list[int]] = []
    for proc in workers:
        assert proc.stdout is not None
        admitted.append([int(t) for t in proc.stdout.readline().split()])
        assert proc.wait(60) == 0
    times = [t for per_process in admitted for t in per_process]
    assert over_the_limit(times, 1_000_000 // rate, burst) == []
    assert sum(1 for per_process in admitted if per_process) >= 2  # the limit really was shared
    # ...and it kept admitting near its rate, not one burst then nothing (loose: a busy host stalls workers).
    assert len(times) >= rate * (max(times) - min(times)) / 1e6 / 4
