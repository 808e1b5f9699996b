"""RedisBackend configuration: keys that cannot collide, limits the script can honour, client pairs."""

from __future__ import annotations

from typing import Any

import pytest
import redis.asyncio
import redis.asyncio.sentinel
import redis.sentinel
from hypothesis import given
from hypothesis import strategies as st
from redis.crc import key_slot

import resilient
from resilient import CircuitState, circuit_breaker
from resilient.backends.redis import MAX_SECONDS, MAX_WINDOW, RedisBackend
from resilient.events import BackendDegraded

pytestmark = pytest.mark.redis

# Names and prefixes a user may pick: anything but the hash-tag braces.
label = st.text(min_size=1, max_size=12).filter(lambda s: "{" not in s and "}" not in s)


def keys_of(client: redis.asyncio.Redis, prefix: str, name: str) -> tuple[str, ...]:
    """The keys a breaker named *name* uses under *prefix*."""
    backend = RedisBackend(client, prefix=prefix)
    circuit_breaker(name=name, backend=backend)
    return backend.keys


@pytest.fixture
def offline() -> redis.asyncio.Redis:
    """An asyncio client that is never used to connect (construction-time checks only)."""
    return redis.asyncio.Redis(host="127.0.0.1", port=1)


@pytest.mark.parametrize(
    ("prefix", "name"), [("a", "b}:{c"), ("a:{b}", "c"), ("a", "}"), ("a", "{"), ("{x}", "y")]
)
def test_braces_in_a_name_or_prefix_are_rejected(
    offline: redis.asyncio.Redis, prefix: str, name: str
) -> None:
    """A brace would move or split the hash tag (and let two pairs share keys): ValueError naming it."""
    param = "prefix" if "{" in prefix or "}" in prefix else "name"
    with pytest.raises(ValueError, match=param):
        circuit_breaker(name=name, backend=RedisBackend(offline, prefix=prefix))
    if param == "name":
        with pytest.raises(ValueError, match="name"):
            RedisBackend(offline, name=name)


@pytest.mark.parametrize("value", [1, "yes", None])
def test_restore_open_must_be_a_bool(offline: redis.asyncio.Redis, value: object) -> None:
    """restore_open takes True or False only: a TypeError naming it."""
    with pytest.raises(TypeError, match="restore_open"):
        RedisBackend(offline, restore_open=value)  # type: ignore[arg-type]
    assert RedisBackend(offline, restore_open=True).restore_open is True


@given(prefix=label, name=label)
def test_every_key_of_a_breaker_lives_in_one_cluster_slot(prefix: str, name: str) -> None:
    """For any accepted prefix and name, the four keys hash to one Redis Cluster slot."""
    client = redis.asyncio.Redis(host="127.0.0.1", port=1)
    keys = keys_of(client, prefix, name)
    assert len({key_slot(k.encode()) for k in keys}) == 1


@given(first=st.tuples(label, label), second=st.tuples(label, label))
def test_distinct_prefix_name_pairs_never_share_keys(first: tuple[str, str], second: tuple[str, str]) -> None:
    """Two different (prefix, name) pairs map to disjoint key sets."""
    client = redis.asyncio.Redis(host="127.0.0.1", port=1)
    if first != second:
        assert not set(keys_of(client, *first)) & set(keys_of(client, *second))


@pytest.mark.parametrize(
    ("options", "error", "param"),
    [
        ({"prefix": None}, TypeError, "prefix"),
        ({"prefix": 3}, TypeError, "prefix"),
        ({"key_ttl": 1e14}, ValueError, "key_ttl"),
        ({"probe_lease": 1e14}, ValueError, "probe_lease"),
        ({"reporter_ttl": 1e14}, ValueError, "reporter_ttl"),
        ({"timeout": 1e14}, ValueError, "timeout"),
        ({"reconnect_interval": 1e14}, ValueError, "reconnect_interval"),
    ],
)
def test_settings_beyond_what_redis_can_hold_fail_at_construction(
    offline: redis.asyncio.Redis, options: dict[str, Any], error: type[Exception], param: str
) -> None:
    """A duration the script cannot turn into exact milliseconds raises, naming the parameter."""
    with pytest.raises(error, match=param):
        RedisBackend(offline, **options)


class BrokenRepr:
    """A value whose ``repr()`` raises, as a 5,000-digit int's does."""

    def __repr__(self) -> str:
        raise RuntimeError("no repr for you")


@pytest.mark.parametrize("value", [10**5000, BrokenRepr()], ids=["huge-int", "broken-repr"])
@pytest.mark.parametrize("param", ["client", "sync_client", "prefix", "key_ttl"])
def test_an_argument_whose_repr_fails_still_gets_an_error_naming_it(
    offline: redis.asyncio.Redis, param: str, value: object
) -> None:
    """A RedisBackend argument whose repr() raises: a TypeError/ValueError naming it, not the repr's error."""
    kwargs: dict[str, Any] = {"client": offline, param: value}
    with pytest.raises((TypeError, ValueError), match=param):
        RedisBackend(**kwargs)


@pytest.mark.parametrize(
    ("options", "param"),
    [
        ({"recovery_timeout": 1e14}, "recovery_timeout"),
        ({"window_seconds": 1e14, "failure_rate": 0.5}, "window_seconds"),
        ({"window": 10**9, "failure_rate": 0.5}, "window"),
    ],
)
def test_breaker_settings_redis_cannot_hold_fail_at_construction(
    offline: redis.asyncio.Redis, options: dict[str, Any], param: str
) -> None:
    """circuit_breaker(..., backend=RedisBackend(...)) refuses what the shared state cannot hold."""
    with pytest.raises(ValueError, match=param):
        circuit_breaker(name="big", backend=RedisBackend(offline), **options)


async def test_the_largest_accepted_settings_work_on_a_real_server(async_client: redis.asyncio.Redis) -> None:
    """At the limits, the shared breaker still opens and isolates: nothing degrades silently."""
    backend = RedisBackend(
        async_client,
        timeout=MAX_SECONDS,
        key_ttl=MAX_SECONDS,
        probe_lease=MAX_SECONDS,
        reporter_ttl=MAX_SECONDS,
        min_reporters=2,
        reporter="host-a",
    )
    breaker = circuit_breaker(
        name="limits",
        failure_threshold=1,
        failure_rate=1.0,
        minimum_calls=1,
        window=MAX_WINDOW,
        recovery_timeout=MAX_SECONDS,
        backend=backend,
    )
    other = circuit_breaker(
        name="limits-time",
        failure_rate=1.0,
        minimum_calls=1,
        window_seconds=MAX_SECONDS,
        recovery_timeout=MAX_SECONDS,
        backend=RedisBackend(async_client, key_ttl=MAX_SECONDS),
    )

    async def boom() -> None:
        raise ConnectionError("down")

    seen: list[BackendDegraded] = []
    with resilient.subscribe(seen.append, BackendDegraded):
        for b in (breaker, other):
            with pytest.raises(ConnectionError):
                await b.call(boom)
        assert await other.state_async() is CircuitState.OPEN
        await breaker.isolate_async()
        assert await breaker.state_async() is CircuitState.ISOLATED
        assert breaker.state is CircuitState.ISOLATED  # the blocking client, timeout=MAX_SECONDS
    assert seen == []
    await backend.aclose()


def test_an_async_cluster_client_needs_a_sync_client_at_construction() -> None:
    """An asyncio RedisCluster alone cannot serve sync code: TypeError naming sync_client, at once."""
    client = redis.asyncio.RedisCluster(host="127.0.0.1", port=1)
    with pytest.raises(TypeError, match="sync_client"):
        RedisBackend(client)


def sentinel_client(module: Any) -> Any:
    """A client of the primary behind a Sentinel that is never asked (construction only)."""
    return module.Sentinel([("127.0.0.1", 1)]).master_for("primary")


def test_an_async_sentinel_client_needs_a_sync_client_at_construction() -> None:
    """An asyncio Sentinel client alone cannot serve sync code: TypeError naming sync_client."""
    client = sentinel_client(redis.asyncio.sentinel)
    with pytest.raises(TypeError, match="sync_client"):
        RedisBackend(client)
    partner = sentinel_client(redis.sentinel)
    backend = RedisBackend(client, sync_client=partner)  # both flavours given: accepted
    assert backend.prefix == "resilient"


def test_a_sync_sentinel_client_needs_an_async_client_at_construction() -> None:
    """A blocking Sentinel client alone cannot serve async code: TypeError saying what to pass."""
    client = sentinel_client(redis.sentinel)
    with pytest.raises(TypeError, match="sync_client"):
        RedisBackend(client)
