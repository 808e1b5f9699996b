"""RedisBackend against a real redis-server: shared state, atomic steps, bounded keys."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis.asyncio
from _helpers import backend_of, evalsha_calls, invoke, make_due, settle, swallow, wait_until_probe_allowed
from _redis_fixture import RedisServer

from resilient import CircuitBreaker, CircuitOpenError, CircuitState, circuit_breaker
from resilient.backends import Outcome, Permit
from resilient.backends.redis import RedisBackend
from resilient.events import CircuitClosed, CircuitOpened
from resilient.testing import FakeClock, capture_events

pytestmark = pytest.mark.redis

Make = Callable[..., CircuitBreaker]


@pytest.fixture
async def make(async_client: redis.asyncio.Redis) -> AsyncIterator[Make]:
    """Build breakers on the shared server: ``make(name, **breaker_and_backend_options)``."""
    built: list[RedisBackend] = []
    backend_keys = {"timeout", "probe_lease", "key_ttl", "min_reporters", "reporter", "prefix", "sync_client"}

    def build(name: str, client: Any = None, **options: Any) -> CircuitBreaker:
        backend_options = {k: options.pop(k) for k in list(options) if k in backend_keys}
        backend_options.setdefault("timeout", 1.0)  # a loaded CI machine is not an outage
        backend = RedisBackend(async_client if client is None else client, **backend_options)
        built.append(backend)
        options.setdefault("failure_threshold", 3)
        options.setdefault("recovery_timeout", 30.0)
        return circuit_breaker(name=name, backend=backend, **options)

    yield build
    for backend in built:
        await backend.aclose()


async def fail(breaker: CircuitBreaker, flavour: str, times: int) -> None:
    """Make *times* failing calls through *breaker*."""
    for _ in range(times):
        with pytest.raises(ConnectionError):
            await invoke(breaker, flavour, ConnectionError("down"))


async def test_closed_success_costs_one_round_trip(
    make: Make, sync_client: redis.Redis, flavour: str
) -> None:
    """Each successful call through a CLOSED shared breaker runs exactly one EVALSHA."""
    breaker = make("one-trip")
    await invoke(breaker, flavour)  # loads the script
    sync_client.config_resetstat()
    for _ in range(20):
        assert await invoke(breaker, flavour) == "ok"
    assert evalsha_calls(sync_client) == 20


async def test_two_backends_share_one_state(make: Make, redis_server: RedisServer, flavour: str) -> None:
    """Failures through one client open the breaker for another client with the same name."""
    first = make("shared")
    other_client = redis_server.async_client()
    second = make("shared", client=other_client)
    await fail(first, flavour, 3)
    with pytest.raises(CircuitOpenError) as info:
        await invoke(second, flavour)
    assert second.state is CircuitState.OPEN
    assert info.value.retry_after is not None
    assert 29 < info.value.retry_after <= 30
    await other_client.aclose()


async def test_names_and_prefixes_keep_states_apart(make: Make) -> None:
    """A breaker with another name or prefix does not see the open state."""
    await fail(make("apart"), "async", 3)
    assert await invoke(make("apart-2"), "async") == "ok"
    assert await invoke(make("apart", prefix="other"), "async") == "ok"


async def test_probe_success_closes_for_everyone(make: Make, flavour: str) -> None:
    """After the recovery timeout a successful probe closes the shared breaker."""
    breaker = make("probe-ok", recovery_timeout=0.05)
    await fail(breaker, flavour, 3)
    wait_until_probe_allowed(backend_of(breaker))
    with capture_events() as events:
        assert await invoke(breaker, flavour) == "ok"
    assert [type(e) for e in events if isinstance(e, CircuitClosed)] == [CircuitClosed]
    assert breaker.state is CircuitState.CLOSED


async def test_probe_failure_reopens(make: Make, flavour: str) -> None:
    """A failed probe re-opens the shared breaker with a fresh recovery timeout."""
    breaker = make("probe-fail", recovery_timeout=0.05)
    await fail(breaker, flavour, 3)
    wait_until_probe_allowed(backend_of(breaker))
    with capture_events() as events:
        await fail(breaker, flavour, 1)
    assert [e.previous for e in events if isinstance(e, CircuitOpened)] == [CircuitState.HALF_OPEN]
    assert backend_of(breaker).stats().state is CircuitState.OPEN


async def test_cancelled_probe_frees_its_lease(make: Make) -> None:
    """A probe cancelled mid-call frees its lease at once; the breaker stays HALF_OPEN."""
    breaker = make("probe-cancel", recovery_timeout=0.05)
    await fail(breaker, "async", 3)
    wait_until_probe_allowed(backend_of(breaker))
    started = asyncio.Event()

    @breaker
    async def hang() -> None:
        started.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(hang())
    await started.wait()
    assert backend_of(breaker).stats().probes_in_flight == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    stats = backend_of(breaker).stats()
    assert (stats.state, stats.probes_in_flight) == (CircuitState.HALF_OPEN, 0)
    assert await invoke(breaker, "async") == "ok"


@pytest.mark.parametrize("control", [KeyboardInterrupt, SystemExit])
def test_control_flow_in_a_sync_probe_frees_its_lease(make: Make, control: type[BaseException]) -> None:
    """KeyboardInterrupt/SystemExit in a probe propagate as the same object and free the lease."""
    breaker = make("probe-control", on=BaseException, recovery_timeout=0.05)

    @breaker
    def broken() -> None:
        raise ConnectionError("down")

    for _ in range(3):
        with pytest.raises(ConnectionError):
            broken()
    wait_until_probe_allowed(backend_of(breaker))
    raised = control()

    @breaker
    def interrupted() -> None:
        raise raised

    with pytest.raises(control) as info:
        interrupted()
    assert info.value is raised
    stats = backend_of(breaker).stats()
    assert (stats.state, stats.probes_in_flight) == (CircuitState.HALF_OPEN, 0)


async def test_lease_of_a_dead_probe_expires(make: Make, sync_client: redis.Redis) -> None:
    """A probe permit never released (its process died) stops blocking probes when its lease ends."""
    breaker = make("probe-dead")
    await fail(breaker, "async", 3)
    backend = backend_of(breaker)
    make_due(sync_client, backend)
    permit = await backend.acquire_async()
    assert isinstance(permit, Permit)
    assert permit.probe  # held forever: the "process" holding it is gone
    with pytest.raises(CircuitOpenError):
        await invoke(breaker, "async")
    # Its lease runs out (server time decides; moved here instead of waited for).
    assert sync_client.zadd(backend.keys[2], {str(permit.token): 0}, xx=True, ch=True) == 1
    assert await invoke(breaker, "async") == "ok"


async def test_calls_in_flight_when_it_opened_do_not_reopen_it(make: Make, sync_client: redis.Redis) -> None:
    """A call admitted before the breaker opened changes nothing when it fails later."""
    breaker = make("in-flight")
    gate = asyncio.Event()

    @breaker
    async def slow_failure() -> None:
        await gate.wait()
        raise ConnectionError("late")

    task = asyncio.create_task(slow_failure())
    await settle()
    await fail(breaker, "async", 3)
    key = backend_of(breaker).keys[0]
    opened = sync_client.hmget(key, "gen", "until")
    gate.set()
    with pytest.raises(ConnectionError):
        await task
    assert sync_client.hmget(key, "gen", "until") == opened


async def test_deferred_success_breaks_a_failure_streak(make: Make, flavour: str) -> None:
    """A success between failures resets the consecutive count even though it is sent later."""
    breaker = make("streak")
    await fail(breaker, flavour, 2)
    await invoke(breaker, flavour)
    await fail(breaker, flavour, 2)
    assert backend_of(breaker).stats().state is CircuitState.CLOSED
    await fail(breaker, flavour, 1)
    assert backend_of(breaker).stats().state is CircuitState.OPEN


async def test_flush_sends_deferred_successes(make: Make, sync_client: redis.Redis) -> None:
    """flush() delivers a deferred success at once."""
    breaker = make("flush")
    await fail(breaker, "sync", 2)
    await invoke(breaker, "sync")
    key = backend_of(breaker).keys[0]
    assert sync_client.hget(key, "cf") == b"2"
    backend_of(breaker).flush()
    assert sync_client.hget(key, "cf") == b"0"


async def test_failure_rate_over_a_bounded_count_window(make: Make, sync_client: redis.Redis) -> None:
    """In rate mode the window is a ring of `window` bytes and opens at the rate."""
    breaker = make("rate", failure_rate=0.5, window=10, minimum_calls=4)
    for _ in range(25):
        await invoke(breaker, "async")
    await fail(breaker, "async", 4)
    assert sync_client.strlen(backend_of(breaker).keys[1]) == 10
    assert backend_of(breaker).stats().failure_rate == 0.4
    await fail(breaker, "async", 1)
    assert backend_of(breaker).stats().state is CircuitState.OPEN


async def test_success_reaching_minimum_calls_opens_once(make: Make) -> None:
    """A deferred success that completes minimum_calls opens the breaker on the next admission, once."""
    breaker = make("min-calls", failure_rate=0.5, window=10, minimum_calls=4)
    await fail(breaker, "async", 3)
    with capture_events() as events:
        await invoke(breaker, "async")
        await invoke(breaker, "async")  # carries the success: 3 of 4 failed
        with pytest.raises(CircuitOpenError):
            await invoke(breaker, "async")
    assert [type(e) for e in events if isinstance(e, CircuitOpened)] == [CircuitOpened]


async def test_time_window_uses_fixed_buckets(make: Make, sync_client: redis.Redis) -> None:
    """A time window keeps a fixed number of buckets however many calls it counts."""
    breaker = make("timed", failure_rate=0.9, window_seconds=60.0, minimum_calls=5)
    for _ in range(30):
        await invoke(breaker, "async")
    await fail(breaker, "async", 30)
    stats = backend_of(breaker).stats()
    assert (stats.calls, stats.failures) == (60, 30)
    assert sync_client.hlen(backend_of(breaker).keys[1]) <= 40


async def test_slow_calls_open_the_shared_breaker(make: Make, clock: FakeClock) -> None:
    """Calls slower than slow_call_duration (on the breaker's clock) open it at the slow rate."""
    breaker = make("slow", slow_call_duration=1.0, slow_call_rate=0.5, minimum_calls=2, clock=clock)

    @breaker
    async def slow() -> str:
        await clock.sleep(2.0)
        return "late"

    assert await slow() == "late"
    assert await slow() == "late"
    assert backend_of(breaker).stats().state is CircuitState.OPEN


async def test_keys_expire_when_unused(make: Make, sync_client: redis.Redis) -> None:
    """Every key written carries a TTL of key_ttl."""
    breaker = make(
        "ttl",
        failure_rate=0.5,
        window=10,
        key_ttl=5.0,
        probe_lease=1.0,
        min_reporters=2,
        recovery_timeout=1.0,
    )
    await fail(breaker, "async", 1)
    ttls = [sync_client.pttl(key) for key in backend_of(breaker).keys[:2]]
    assert all(0 < ttl <= 5000 for ttl in ttls)
    assert 0 < sync_client.pttl(backend_of(breaker).keys[3]) <= 60000


async def test_isolation_is_shared_and_does_not_expire(make: Make, sync_client: redis.Redis) -> None:
    """isolate() holds every process's breaker open without expiry; reset() closes it for all."""
    first, second = make("isolate"), make("isolate")
    first.isolate()
    with pytest.raises(CircuitOpenError) as info:
        await invoke(second, "async")
    assert info.value.retry_after is None
    key = backend_of(first).keys[0]
    assert sync_client.pttl(key) == -1
    await second.reset_async()
    assert first.state is CircuitState.CLOSED
    assert sync_client.pttl(key) > 0


async def test_min_reporters_keeps_one_bad_host_from_opening_it(make: Make) -> None:
    """With min_reporters=2, failures from one process alone never open the shared breaker."""
    bad = make("reporters", min_reporters=2, reporter="host-a")
    other = make("reporters", min_reporters=2, reporter="host-b")
    await fail(bad, "async", 10)
    assert backend_of(bad).stats().state is CircuitState.CLOSED
    await fail(other, "async", 1)
    assert backend_of(bad).stats().state is CircuitState.OPEN


async def test_script_is_reloaded_after_a_flush(make: Make, sync_client: redis.Redis) -> None:
    """A server that lost its scripts (SCRIPT FLUSH, restart) gets the script again on NOSCRIPT."""
    breaker = make("reload")
    await invoke(breaker, "async")
    sync_client.script_flush()
    assert await invoke(breaker, "async") == "ok"
    assert not backend_of(breaker).degraded


async def test_a_sync_client_serves_async_functions(make: Make, sync_client: redis.Redis) -> None:
    """Given only a blocking client, async functions use an asyncio twin of it."""
    breaker = make("sync-only", client=sync_client)
    await fail(breaker, "async", 3)
    assert await breaker.state_async() is CircuitState.OPEN


async def test_direct_steps_report_transitions(make: Make) -> None:
    """record() of a stale permit changes nothing; reset() of a closed breaker reports nothing."""
    breaker = make("direct")
    backend = backend_of(breaker)
    permit = backend.acquire()
    assert isinstance(permit, Permit)
    await fail(breaker, "sync", 3)
    assert backend.record(permit, Outcome.FAILURE) is None
    assert backend.reset() is not None
    assert backend.reset() is None


@pytest.mark.parametrize(
    ("options", "error", "param"),
    [
        ({"timeout": 0}, ValueError, "timeout"),
        ({"timeout": float("nan")}, ValueError, "timeout"),
        ({"reconnect_interval": -1}, ValueError, "reconnect_interval"),
        ({"probe_lease": "10"}, TypeError, "probe_lease"),
        ({"key_ttl": float("inf")}, ValueError, "key_ttl"),
        ({"min_reporters": 0}, ValueError, "min_reporters"),
        ({"min_reporters": 2.5}, TypeError, "min_reporters"),
        ({"reporter_ttl": 0}, ValueError, "reporter_ttl"),
        ({"prefix": ""}, ValueError, "prefix"),
        ({"sync_client": "redis://"}, TypeError, "sync_client"),
    ],
)
def test_bad_configuration_names_the_parameter(
    async_client: redis.asyncio.Redis, options: dict[str, Any], error: type[Exception], param: str
) -> None:
    """Bad settings raise at construction with a message naming the parameter."""
    with pytest.raises(error, match=param):
        RedisBackend(async_client, **options)


def test_client_must_be_a_redis_client() -> None:
    """Anything but a redis client is refused, naming the parameter."""
    with pytest.raises(TypeError, match="client"):
        RedisBackend("redis://localhost")


def test_shared_state_needs_a_name(async_client: redis.asyncio.Redis) -> None:
    """A nameless breaker cannot share state: ValueError at construction."""
    with pytest.raises(ValueError, match="name"):
        circuit_breaker(backend=RedisBackend(async_client))


def test_backend_binds_to_one_breaker(async_client: redis.asyncio.Redis) -> None:
    """Reusing one backend for a breaker with another configuration is refused."""
    backend = RedisBackend(async_client)
    circuit_breaker(name="bound", backend=backend)
    with pytest.raises(ValueError, match="already bound"):
        circuit_breaker(name="bound", failure_threshold=9, backend=backend)


def test_importing_resilient_does_not_import_redis() -> None:
    """`import resilient` and `import resilient.backends` leave redis unimported."""
    code = "import sys, resilient, resilient.backends; assert 'redis' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


async def test_rejection_from_a_shared_open_breaker_calls_nothing(make: Make) -> None:
    """While the shared breaker is OPEN the function is not called."""
    breaker = make("no-call")
    await fail(breaker, "async", 3)
    calls: list[int] = []

    @breaker
    async def work() -> None:
        calls.append(1)

    await swallow(work, CircuitOpenError)
    assert calls == []


def test_threads_at_the_half_open_moment_get_exactly_the_probe_limit(make: Make) -> None:
    """Twenty threads calling a sync function at once at half-open: exactly half_open_max_calls run."""
    breaker = make("threads", recovery_timeout=0.05, half_open_max_calls=2)

    @breaker
    def broken() -> None:
        raise ConnectionError("down")

    for _ in range(3):
        with pytest.raises(ConnectionError):
            broken()
    wait_until_probe_allowed(backend_of(breaker))
    start = threading.Barrier(20)
    decided = threading.Barrier(21)
    release = threading.Event()
    results: list[str] = []

    @breaker
    def probe() -> None:
        results.append("admitted")
        decided.wait()
        release.wait()

    def caller() -> None:
        start.wait()
        try:
            probe()
        except CircuitOpenError:
            results.append("rejected")
            decided.wait()

    threads = [threading.Thread(target=caller) for _ in range(20)]
    for t in threads:
        t.start()
    decided.wait()  # every caller was admitted or rejected
    release.set()
    for t in threads:
        t.join()
    assert (results.count("admitted"), results.count("rejected")) == (2, 18)
    assert breaker.state is CircuitState.CLOSED


async def test_clients_decoding_responses_work(make: Make, redis_server: RedisServer) -> None:
    """A client created with decode_responses=True (str replies) works the same."""
    client = redis_server.async_client(decode_responses=True)
    breaker = make("decoded", client=client)
    await fail(breaker, "async", 3)
    assert await breaker.state_async() is CircuitState.OPEN
    assert breaker.stats().state is CircuitState.OPEN
    await client.aclose()
