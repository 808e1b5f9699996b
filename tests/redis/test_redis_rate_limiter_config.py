"""RedisRateLimiterBackend configuration: the breaker backend's checks, and limits Lua keeps exactly."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import redis.asyncio
import redis.asyncio.sentinel
import redis.sentinel
from _helpers import attempt
from hypothesis import given
from hypothesis import strategies as st

from resilient import rate_limiter
from resilient.backends.redis import MAX_SECONDS, RedisRateLimiterBackend
from resilient.events import BackendDegraded
from resilient.testing import FakeClock, capture_events

pytestmark = pytest.mark.redis

# Names and prefixes a user may pick: anything but the hash-tag braces.
label = st.text(min_size=1, max_size=12).filter(lambda s: "{" not in s and "}" not in s)

MAX_US = 10**15  # MAX_SECONDS in microseconds, the unit of the Lua script


@pytest.fixture
def offline() -> redis.asyncio.Redis:
    """An asyncio client that is never used to connect (construction-time checks only)."""
    return redis.asyncio.Redis(host="127.0.0.1", port=1)


# --- keys ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prefix", "name"), [("a", "b}:{c"), ("a:{b}", "c"), ("a", "}"), ("a", "{"), ("{x}", "y")]
)
def test_braces_in_a_name_or_prefix_are_rejected(
    offline: redis.asyncio.Redis, prefix: str, name: str
) -> None:
    """A brace would move or split the key's hash tag (two pairs could share a key): ValueError naming it."""
    param = "prefix" if "{" in prefix or "}" in prefix else "name"
    with pytest.raises(ValueError, match=param):
        rate_limiter(10, name=name, backend=RedisRateLimiterBackend(offline, prefix=prefix))
    if param == "name":
        with pytest.raises(ValueError, match="name"):
            RedisRateLimiterBackend(offline, name=name)


def key_of(prefix: str, name: str) -> str:
    """The key a limiter named *name* uses under *prefix*."""
    backend = RedisRateLimiterBackend(redis.asyncio.Redis(host="127.0.0.1", port=1), prefix=prefix)
    rate_limiter(10, name=name, backend=backend)
    return backend.key


@given(first=st.tuples(label, label), second=st.tuples(label, label))
def test_distinct_prefix_name_pairs_never_share_a_key(
    first: tuple[str, str], second: tuple[str, str]
) -> None:
    """Two different accepted (prefix, name) pairs map to two different keys."""
    if first != second:
        assert key_of(*first) != key_of(*second)


# --- settings ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error", "param"),
    [
        ({"prefix": None}, TypeError, "prefix"),
        ({"prefix": 3}, TypeError, "prefix"),
        ({"name": 3}, TypeError, "name"),
        ({"timeout": 1e14}, ValueError, "timeout"),
        ({"reconnect_interval": 1e14}, ValueError, "reconnect_interval"),
    ],
)
def test_settings_beyond_what_the_backend_can_hold_fail_at_construction(
    offline: redis.asyncio.Redis, options: dict[str, Any], error: type[Exception], param: str
) -> None:
    """As RedisBackend: a prefix that is not a str, or a duration beyond MAX_SECONDS, raises naming it."""
    with pytest.raises(error, match=param):
        RedisRateLimiterBackend(offline, **options)


@pytest.mark.parametrize(
    ("rate", "per", "burst"),
    [
        (1, MAX_SECONDS, 2),  # a permit every MAX_SECONDS: a burst of two runs twice as far ahead
        (2, MAX_SECONDS, 3),  # 5e8 s apart: 1.5e9 s ahead
        (1_000_000, 1, MAX_US + 1),  # one microsecond apart, one too many
        (0.5, 1, MAX_US // 2_000_000 + 1),
        (3, 1, 2_999_994_001),  # 333,334 us apart (rounded up): just over
        (1, 1, 10**300),  # far beyond a double's exact integers
    ],
)
def test_limits_the_script_cannot_keep_exactly_fail_at_construction(
    offline: redis.asyncio.Redis, rate: float, per: float, burst: int
) -> None:
    """burst * per / rate beyond MAX_SECONDS (in the script's whole microseconds) raises, naming them."""
    with pytest.raises(ValueError, match=r"burst \* per / rate"):
        rate_limiter(rate, per=per, burst=burst, name="big", backend=RedisRateLimiterBackend(offline))


@pytest.mark.parametrize(
    ("rate", "per", "burst"),
    [(1, MAX_SECONDS, 1), (1_000_000, 1, MAX_US), (0.5, 1, MAX_US // 2_000_000), (3, 1, 2_999_994_000)],
)
def test_the_largest_limits_are_accepted(
    offline: redis.asyncio.Redis, rate: float, per: float, burst: int
) -> None:
    """Exactly MAX_SECONDS of burst (in whole microseconds) is accepted: the bound is not off by one."""
    limiter = rate_limiter(rate, per=per, burst=burst, name="big", backend=RedisRateLimiterBackend(offline))
    assert limiter.burst == burst


# --- clients -------------------------------------------------------------------------------------


def sentinel_client(module: Any) -> Any:
    """A client of the primary behind a Sentinel that is never asked (construction only)."""
    return module.Sentinel([("127.0.0.1", 1)]).master_for("primary")


def test_an_async_cluster_client_needs_a_sync_client_at_construction() -> None:
    """An asyncio RedisCluster alone cannot serve sync code: TypeError naming sync_client, at once."""
    with pytest.raises(TypeError, match="sync_client"):
        RedisRateLimiterBackend(redis.asyncio.RedisCluster(host="127.0.0.1", port=1))


def test_an_async_sentinel_client_needs_a_sync_client_at_construction() -> None:
    """An asyncio Sentinel client alone cannot serve sync code; with its blocking twin it is accepted."""
    client = sentinel_client(redis.asyncio.sentinel)
    with pytest.raises(TypeError, match="sync_client"):
        RedisRateLimiterBackend(client)
    backend = RedisRateLimiterBackend(client, sync_client=sentinel_client(redis.sentinel))
    assert backend.prefix == "resilient"


def test_a_sync_sentinel_client_needs_an_async_client_at_construction() -> None:
    """A blocking Sentinel client alone cannot serve async code: TypeError saying what to pass."""
    with pytest.raises(TypeError, match="sync_client"):
        RedisRateLimiterBackend(sentinel_client(redis.sentinel))


# --- at the limits, on a real server -----------------------------------------------------------


@pytest.fixture
def backends(async_client: redis.asyncio.Redis) -> Iterator[list[RedisRateLimiterBackend]]:
    """Backends with the largest durations accepted, on the test's server."""
    made: list[RedisRateLimiterBackend] = []
    yield made
    for backend in made:
        backend.close()


def widest(client: Any, made: list[RedisRateLimiterBackend]) -> RedisRateLimiterBackend:
    """A backend with timeout and reconnect_interval at MAX_SECONDS."""
    backend = RedisRateLimiterBackend(client, timeout=MAX_SECONDS, reconnect_interval=MAX_SECONDS)
    made.append(backend)
    return backend


async def test_the_slowest_limit_waits_exactly_and_never_runs_more_than_max_seconds_ahead(
    async_client: redis.asyncio.Redis,
    sync_client: redis.Redis,
    clock: FakeClock,
    flavour: str,
    backends: list[RedisRateLimiterBackend],
) -> None:
    """One permit per MAX_SECONDS: the second call waits it; a third, even with max_wait=inf, is refused."""
    backend = widest(async_client, backends)
    limiter = rate_limiter(
        1, per=MAX_SECONDS, burst=1, max_wait=math.inf, name="slowest", backend=backend, clock=clock
    )
    with capture_events(BackendDegraded) as degraded:
        assert await attempt(limiter, flavour) == "ok"
        assert await attempt(limiter, flavour) == "ok"
        # The TAT is now two intervals ahead: a third wait would be MAX_SECONDS more, which
        # would let the TAT run on past what the script's doubles hold exactly (2**53 us).
        third = await attempt(limiter, flavour)
    assert degraded == []
    assert len(clock.sleeps) == 1
    # Less the server time between the calls (a minute of slack for a loaded machine).
    assert MAX_SECONDS - 60 < clock.sleeps[0] <= MAX_SECONDS
    assert isinstance(third, float)
    assert 2 * MAX_SECONDS - 60 < third <= 2 * MAX_SECONDS
    # The key lives until the TAT (and a second), in whole milliseconds (PX of 2e12: no exponent form).
    assert 2 * MAX_SECONDS * 1000 - 60_000 < sync_client.pttl(backend.key) <= 2 * MAX_SECONDS * 1000 + 1000


@pytest.mark.parametrize(
    ("rate", "per", "burst", "interval_us"),
    [(1, MAX_SECONDS, 1, MAX_US), (1_000_000, 1, MAX_US, 1), (3, 1, 2_999_994_000, 333_334)],
)
async def test_the_largest_limits_keep_exact_microseconds_on_a_real_server(
    async_client: redis.asyncio.Redis,
    sync_client: redis.Redis,
    backends: list[RedisRateLimiterBackend],
    rate: float,
    per: float,
    burst: int,
    interval_us: int,
) -> None:
    """With the whole burst spent, a reservation lands exactly one interval on, and is given back exactly."""
    backend = widest(async_client, backends)
    rate_limiter(rate, per=per, burst=burst, name="edge", backend=backend)
    seconds, micros = sync_client.time()
    spent = seconds * 1_000_000 + micros + interval_us * burst  # the TAT after `burst` calls at once
    sync_client.set(backend.key, str(spent), px=10**12)
    with capture_events(BackendDegraded) as degraded:
        latest = await backend.reserve_async(MAX_SECONDS)
        assert latest is not None
        assert latest.granted
        assert latest.token == spent + interval_us
        assert 0 <= latest.delay <= interval_us / 1e6
        assert int(sync_client.get(backend.key) or 0) == spent + interval_us
        await backend.cancel_async(latest)
    assert degraded == []
    assert int(sync_client.get(backend.key) or 0) == spent
