"""Tests of ``Registry``: per-key pipelines, following a key, and all-or-nothing reloads."""

from __future__ import annotations

import asyncio
import gc
import inspect
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import resilient
from resilient import (
    Bulkhead,
    CircuitBreaker,
    CircuitState,
    ConfigError,
    Pipeline,
    Policy,
    Registry,
    TimeoutExceededError,
    circuit_breaker,
    gate,
    pipeline,
    pipeline_of,
    retry,
)
from resilient.events import CircuitOpened, ConfigReloaded, ConfigReloadFailed, EventBus
from resilient.testing import FakeClock, capture_events


async def settle() -> None:
    """Let every ready task run until the loop is idle (no real waiting)."""
    for _ in range(10):
        await asyncio.sleep(0)


BREAKER = {"circuit_breaker": {"failure_threshold": 1, "recovery_timeout": 30}}


@pytest.fixture
def registry(clock: FakeClock) -> Registry:
    """A registry configured per key, with a default for every other key, on the virtual clock."""
    return Registry(
        {
            "*": [{"timeout": 5}, BREAKER],
            "search": [{"retry": {"attempts": 2, "backoff": 0}}],
        },
        name="upstreams",
        clock=clock,
    )


# --- templates ---------------------------------------------------------------------------------


def test_get_builds_once_per_key_and_returns_the_same_pipeline() -> None:
    """The template runs once per key; every get returns that pipeline."""
    built: list[str] = []

    def template(key: str) -> Policy:
        built.append(key)
        return circuit_breaker(name=key)

    reg = Registry(template)
    a = reg.get("a.example")
    assert reg.get("a.example") is a
    reg.get("b.example")
    assert (built, reg.keys()) == (["a.example", "b.example"], ("a.example", "b.example"))


def test_concurrent_gets_build_a_key_once() -> None:
    """Threads racing on a new key all get one pipeline, built once."""
    calls: list[str] = []
    barrier = threading.Barrier(8)

    def template(key: str) -> Policy:
        calls.append(key)
        return retry()

    reg = Registry(template)
    found: list[Pipeline] = []

    def worker() -> None:
        barrier.wait(30)
        found.append(reg.get("shared"))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert (calls, len({id(p) for p in found}), len(found)) == (["shared"], 1, 8)


def test_a_template_policy_becomes_a_pipeline_named_after_the_key() -> None:
    """A bare policy is wrapped in a pipeline named by the key; an unnamed pipeline is renamed."""
    bus, clock = EventBus(), FakeClock()
    breaker = circuit_breaker()
    one = Registry(lambda key: breaker).get("payments")
    unnamed = Registry(lambda key: pipeline(retry(), bus=bus, clock=clock)).get("orders")
    named = pipeline(retry(), name="mine")
    kept = Registry(lambda key: named).get("other")
    assert (one.name, one.policies) == ("payments", (breaker,))
    assert (unnamed.name, unnamed.bus, unnamed.clock) == ("orders", bus, clock)
    assert kept is named


def test_a_template_returning_something_else_is_a_type_error() -> None:
    """A callable template must return a policy."""
    reg = Registry(lambda key: "not a policy")  # type: ignore[arg-type,return-value]
    with pytest.raises(TypeError, match="must return a policy"):
        reg.get("x")
    assert reg.keys() == ()


def test_a_configuration_list_builds_every_key_named_after_it(clock: FakeClock) -> None:
    """A pipeline's configuration is the template of every key; policies carry the key as name."""
    reg = Registry([{"retry": {"attempts": 2}}, BREAKER], clock=clock)
    p = reg.get("api.example.com")
    assert (p.name, [x.name for x in p.policies], p.clock) == (
        "api.example.com",
        ["api.example.com"] * 2,
        clock,
    )
    assert reg.get("db").policies[1] is not p.policies[1]  # a breaker per key


async def test_events_are_labelled_by_the_key(clock: FakeClock) -> None:
    """A breaker built for a key reports the key as its name, so adapters label by key."""
    reg = Registry([BREAKER], clock=clock)

    async def down() -> None:
        raise ConnectionError

    with capture_events(CircuitOpened) as events, pytest.raises(ConnectionError):
        await reg.get("payments").call(down)
    assert [e.name for e in events] == ["payments"]


def test_a_mapping_configures_keys_and_star_the_others(registry: Registry) -> None:
    """Listed keys get their own pipeline; "*" builds every other key."""
    assert [p.kind for p in registry.get("search").policies] == ["retry"]
    assert [p.kind for p in registry.get("anything").policies] == ["timeout", "circuit_breaker"]


def test_without_star_an_unlisted_key_is_unknown() -> None:
    """With no "*" entry, a key the mapping does not list raises KeyError (at get and at decoration)."""
    reg = Registry({"payments": [{"retry": {}}]})
    with pytest.raises(KeyError, match="no pipeline is configured for 'orders'"):
        reg.get("orders")
    with pytest.raises(KeyError, match="orders"):
        reg("orders")


@pytest.mark.parametrize(
    ("key", "error"),
    [
        (3, TypeError),
        (b"k", TypeError),
        ("", ValueError),
        ("*", ValueError),
        ([], TypeError),
        (10**5000, TypeError),
    ],
    ids=["int", "bytes", "empty", "star", "list", "unrepresentable"],
)
def test_a_bad_key_is_refused(registry: Registry, key: Any, error: type[Exception]) -> None:
    """Keys are non-empty strings other than "*"."""
    with pytest.raises(error, match="key"):
        registry.get(key)
    with pytest.raises(error, match="key"):
        registry(key)


def test_a_bad_template_fails_at_construction() -> None:
    """Registry() checks its template: the wrong type, or any invalid configuration (all problems)."""
    with pytest.raises(TypeError, match="template must be"):
        Registry(42)  # type: ignore[arg-type]
    with pytest.raises(ConfigError) as info:
        Registry({"payments": [{"retry": {"attempts": 0}}], "*": [{"timeout": -1}], "": []})
    assert info.value.errors == (
        "payments[0].retry.attempts: must be >= 1, got 0",
        "*[0].timeout.seconds: must be > 0, got -1.0",
        "'': keys must be non-empty strings",
    )
    with pytest.raises(ConfigError, match=r"^invalid configuration: \[0\].timeout.seconds"):
        Registry([{"timeout": 0}])


def test_a_template_that_cannot_take_a_key_fails_at_construction() -> None:
    """A callable template that cannot be called with the key is refused when the registry is built."""
    with pytest.raises(TypeError, match="template"):
        Registry(lambda: retry())  # type: ignore[arg-type,misc]
    with pytest.raises(TypeError, match="template"):
        Registry(lambda host, port: retry())  # type: ignore[arg-type,misc]

    def template(host: str, port: int = 443) -> Policy:
        return retry()

    assert Registry(template).get("h").policies[0].kind == "retry"

    async def async_template(host: str) -> Policy:
        return retry()

    with pytest.raises(TypeError, match="template"):
        Registry(async_template)  # type: ignore[arg-type]


def test_a_template_too_long_to_repr_still_gets_a_clear_error() -> None:
    """A 5,000-digit int (whose repr() raises ValueError) as template or key is reported, not a crash."""
    with pytest.raises(TypeError, match="template must be"):
        Registry(10**5000)  # type: ignore[arg-type]
    with pytest.raises(ConfigError) as info:
        Registry({10**5000: []})  # type: ignore[dict-item]
    assert info.value.errors == ("<unrepresentable int>: keys must be non-empty strings",)
    with pytest.raises(ConfigError, match=r"\[0\]: must be a table with one key.*<unrepresentable int>"):
        Registry([10**5000])


def test_repr_and_template(registry: Registry) -> None:
    """The repr names the registry; template is what was given."""
    config: list[Any] = [{"retry": {}}]
    assert (repr(registry), repr(Registry(config)), Registry(config).template) == (
        "Registry(name='upstreams')",
        "Registry()",
        config,
    )


# --- following a key ------------------------------------------------------------------------


async def test_a_decorated_function_runs_through_the_keys_pipeline(registry: Registry) -> None:
    """@registry(key) keeps the function's identity and runs it through the key's pipeline."""

    @registry("payments")
    async def charge(amount: int, *, currency: str = "EUR") -> str:
        """Charge."""
        return f"{amount} {currency}"

    assert await charge(3, currency="USD") == "3 USD"
    assert pipeline_of(charge) is registry.get("payments")
    assert (charge.__name__, charge.__doc__, inspect.iscoroutinefunction(charge)) == (
        "charge",
        "Charge.",
        True,
    )
    assert str(inspect.signature(charge)) == "(amount: 'int', *, currency: 'str' = 'EUR') -> 'str'"


def test_sync_functions_methods_and_descriptors_follow_a_key() -> None:
    """Sync functions, methods, classmethods and staticmethods follow a key, in either decorator order."""
    reg = Registry([{"retry": {"attempts": 2, "backoff": 0}}])

    class Client:
        @reg("db")
        def query(self, q: str) -> str:
            return f"{q}@{type(self).__name__}"

        @reg("db")
        @classmethod
        def make(cls) -> str:
            return cls.__name__

        @classmethod
        @reg("db")
        def make2(cls) -> str:
            return cls.__name__

        @reg("db")
        @staticmethod
        def ping() -> str:
            return "pong"

    assert (Client().query("q"), Client.make(), Client.make2(), Client.ping()) == (
        "q@Client",
        "Client",
        "Client",
        "pong",
    )
    assert pipeline_of(Client.make) is reg.get("db")


async def test_policies_above_stay_outside_and_below_stay_inside(registry: Registry) -> None:
    """A policy stacked above the registry's decorator wraps the key's pipeline; one below is inside it."""
    g = gate()
    inner = retry(attempts=2)

    @g
    @registry("payments")
    @inner
    async def charge() -> str:
        return "ok"

    key_policies = registry.get("payments").policies
    assert pipeline_of(charge).policies == (g, *key_policies, inner)
    assert pipeline_of(charge).name == "payments"
    assert await charge() == "ok"


def test_following_two_keys_is_refused(registry: Registry) -> None:
    """A function already following a key cannot follow another."""

    @registry("a")
    async def f() -> None:
        pass

    with pytest.raises(TypeError, match="already follows a registry key"):
        registry("b")(f)


def test_a_sync_function_under_a_timeout_is_refused_when_decorated(registry: Registry) -> None:
    """The key's pipeline has a timeout: following it with a sync function is a TypeError at once."""
    with pytest.raises(TypeError, match="cannot guard the sync function"):

        @registry("payments")
        def charge() -> None:
            pass


# --- reload ------------------------------------------------------------------------------------


async def test_reload_moves_later_calls_and_lets_calls_in_flight_finish_on_the_old(
    registry: Registry, clock: FakeClock
) -> None:
    """After a reload, new calls run the new pipeline; a call in flight keeps the old one (its timeout)."""
    release = asyncio.Event()

    @registry("payments")
    async def charge() -> str:
        await release.wait()
        return "charged"

    old_call = asyncio.create_task(charge())
    await settle()
    registry.reload({"*": [{"timeout": 1}, BREAKER]})
    new_call = asyncio.create_task(charge())
    await settle()
    clock.advance(1)  # the new pipeline's 1 s timeout, not the old one's 5 s
    with pytest.raises(TimeoutExceededError):
        await new_call
    assert not old_call.done()
    release.set()
    assert await old_call == "charged"
    assert pipeline_of(charge) is registry.get("payments")
    assert [p.seconds for p in pipeline_of(charge).policies[:1]] == [1.0]  # type: ignore[attr-defined]


async def test_an_unchanged_breaker_keeps_its_state_a_changed_one_starts_closed(registry: Registry) -> None:
    """Reload reuses a breaker whose configuration did not change (still open); a changed one is new."""

    @registry("payments")
    async def charge() -> None:
        raise ConnectionError

    with pytest.raises(ConnectionError):
        await charge()
    breaker = registry.get("payments").policies[1]
    assert isinstance(breaker, CircuitBreaker)
    assert breaker.state is CircuitState.OPEN

    registry.reload({"*": [{"timeout": 9}, BREAKER]})  # the timeout changed, not the breaker
    kept = registry.get("payments").policies[1]
    assert (kept is breaker, kept.state) == (True, CircuitState.OPEN)  # type: ignore[attr-defined]
    with pytest.raises(resilient.CircuitOpenError):
        await charge()

    registry.reload({"*": [{"timeout": 9}, {"circuit_breaker": {"failure_threshold": 2}}]})
    fresh = registry.get("payments").policies[1]
    assert (fresh is breaker, fresh.state) == (False, CircuitState.CLOSED)  # type: ignore[attr-defined]


def test_an_identical_reload_changes_nothing(registry: Registry) -> None:
    """Reloading the same configuration keeps every pipeline object; the event lists no key."""
    p = registry.get("payments")
    with capture_events(ConfigReloaded) as events:
        registry.reload(registry.template)
    assert registry.get("payments") is p
    assert [(e.policy, e.name, e.keys, e.reused) for e in events] == [  # type: ignore[attr-defined]
        ("registry", "upstreams", (), 2)
    ]


def nested(depth: int) -> list[Any]:
    """A list nested *depth* levels deep (beyond the recursion limit for depth 5,000)."""
    top: list[Any] = []
    inner = top
    for _ in range(depth):
        inner.append([])
        inner = inner[0]
    return top


async def test_a_configuration_deeper_than_the_recursion_limit_builds_and_reloads() -> None:
    """A fallback default nested 5,000 deep builds, reloads unchanged (kept) and changed (rebuilt)."""
    deep = nested(5_000)
    registry = Registry({"api": [{"fallback": deep}]})
    first = registry.get("api")  # compared with a recursive json.dumps: RecursionError
    registry.reload({"api": [{"fallback": deep}]})
    assert registry.get("api") is first
    registry.reload({"api": [{"fallback": nested(4_999)}]})
    assert registry.get("api") is not first


@pytest.mark.parametrize(
    ("before", "after"),
    [(1, True), (1, 1.0), (0, False), ([1], (1,)), ({"a": 1}, {"a": True})],
    ids=["int-bool", "int-float", "zero-false", "list-tuple", "nested"],
)
async def test_a_value_of_another_type_is_a_changed_configuration(before: Any, after: Any) -> None:
    """Values equal to Python but of other types (1, True, 1.0) are a change: the new fallback answers."""
    registry = Registry({"api": [{"fallback": {"default": before}}]})
    first = registry.get("api")
    registry.reload({"api": [{"fallback": {"default": after}}]})

    async def fails() -> Any:
        raise ValueError

    answer = await registry.get("api").call(fails)
    assert (registry.get("api") is first, type(answer), answer) == (False, type(after), after)


async def test_a_configured_rate_limiter_is_per_key_and_kept_across_an_unchanged_reload(
    clock: FakeClock,
) -> None:
    """Each key gets a limiter of its own, named after it; an unchanged one keeps its spent permits."""
    registry = Registry({"*": [{"rate_limiter": {"rate": 1, "burst": 1}}, {"timeout": 5}]}, clock=clock)

    async def work() -> str:
        return "ok"

    a, b = registry.get("a.example"), registry.get("b.example")
    limiter = a.policies[0]
    assert isinstance(limiter, resilient.RateLimiter)
    assert (limiter.name, limiter is not b.policies[0]) == ("a.example", True)
    assert await a.call(work) == "ok"
    assert await b.call(work) == "ok"  # another key, another limit
    registry.reload({"*": [{"rate_limiter": {"rate": 1, "burst": 1}}, {"timeout": 6}]})
    assert registry.get("a.example").policies[0] is limiter
    with pytest.raises(resilient.RateLimitedError):
        await registry.get("a.example").call(work)  # the permit spent before the reload stays spent
    registry.reload({"*": [{"rate_limiter": {"rate": 2, "burst": 1}}, {"timeout": 6}]})
    assert await registry.get("a.example").call(work) == "ok"  # a changed limit starts afresh


def test_reload_reports_the_changed_keys_and_what_it_reused(registry: Registry) -> None:
    """ConfigReloaded names the keys whose pipeline changed and counts the policies carried over."""
    registry.get("payments")
    registry.get("search")
    with capture_events(ConfigReloaded) as events:
        registry.reload(
            {"*": [{"timeout": 6}, BREAKER], "search": [{"retry": {"attempts": 2, "backoff": 0}}]}
        )
    assert [(e.keys, e.reused) for e in events] == [(("payments",), 2)]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"*": [{"retry": {"attempts": 0}}]}, "*[0].retry.attempts: must be >= 1, got 0"),
        ({"search": []}, "payments: in use, but the new configuration has no entry for it (nor '*')"),
        ([{"timeout": "5"}], "[0].timeout.seconds: must be a number of seconds"),
    ],
)
async def test_an_invalid_reload_is_rejected_whole(registry: Registry, config: Any, expected: str) -> None:
    """A bad reload raises ConfigError, emits ConfigReloadFailed, and leaves every key as it was."""

    @registry("payments")
    async def charge() -> str:
        return "ok"

    before = registry.get("payments")
    with capture_events(ConfigReloadFailed) as events, pytest.raises(ConfigError) as info:
        registry.reload(config)
    assert info.value.errors[0].startswith(expected), info.value.errors
    assert [(e.errors, e.exception) for e in events] == [(info.value.errors, info.value)]  # type: ignore[attr-defined]
    assert (registry.get("payments"), pipeline_of(charge)) == (before, before)
    assert "search" in registry.template  # type: ignore[operator]
    assert await charge() == "ok"


def test_a_reload_a_sync_follower_cannot_take_is_rejected() -> None:
    """A new pipeline with a timeout, on a key a sync function follows, is rejected naming the function."""
    reg = Registry([{"retry": {"backoff": 0}}])

    @reg("db")
    def query() -> str:
        return "rows"

    with pytest.raises(ConfigError, match=r"db: cannot guard .*query.*timeout\(\) cannot guard"):
        reg.reload([{"timeout": 1}])
    assert (query(), [p.kind for p in pipeline_of(query).policies]) == ("rows", ["retry"])


def test_a_template_raising_during_reload_is_rejected() -> None:
    """A callable template that raises for a key in use rejects the reload, the error chained."""
    reg = Registry(lambda key: retry())
    reg.get("a")

    def broken(key: str) -> Policy:
        raise LookupError(f"no settings for {key}")

    with capture_events(ConfigReloadFailed) as events, pytest.raises(ConfigError) as info:
        reg.reload(broken)
    assert info.value.errors == ("a: the template raised LookupError: no settings for a",)
    assert len(events) == 1
    assert reg.template is not broken


def test_reloading_a_non_template_is_a_type_error_and_an_event() -> None:
    """reload(42) raises TypeError, emits ConfigReloadFailed, and keeps the template."""
    reg = Registry([{"retry": {}}])
    with capture_events(ConfigReloadFailed) as events, pytest.raises(TypeError, match="template must be"):
        reg.reload(42)  # type: ignore[arg-type]
    assert len(events) == 1


async def test_reload_switches_between_a_callable_and_a_configuration(registry: Registry) -> None:
    """A registry moves from configuration to code and back; followers move along."""

    @registry("payments")
    async def charge() -> str:
        return "ok"

    registry.reload(lambda key: pipeline(retry(attempts=7)))
    assert [p.attempts for p in pipeline_of(charge).policies] == [7]  # type: ignore[attr-defined]
    registry.reload([{"retry": {"attempts": 2}}])
    assert [p.attempts for p in pipeline_of(charge).policies] == [2]  # type: ignore[attr-defined]
    assert await charge() == "ok"


def test_a_reload_reaches_classmethods_and_stacked_policies() -> None:
    """Bound forms (classmethod) and policies stacked above run on the new pipeline after a reload."""
    reg = Registry([{"retry": {"attempts": 1}}])
    seen: list[int] = []

    class Repo:
        @reg("db")
        @classmethod
        def load(cls) -> int:
            ctx = resilient.current_call()
            assert ctx is not None
            seen.append(ctx.pipeline.policies[-1].attempts)  # type: ignore[attr-defined]
            return 1

    outer = retry(attempts=1)

    def record() -> None:
        seen.append(pipeline_of(stacked).policies[1].attempts)  # type: ignore[attr-defined]

    stacked = outer(reg("db")(record))
    Repo.load()
    reg.reload([{"retry": {"attempts": 4}}])
    Repo.load()
    stacked()
    assert seen == [1, 4, 4]
    assert pipeline_of(stacked).policies[0] is outer


def test_dead_followers_are_forgotten() -> None:
    """A function that follows a key and is then dropped is not kept alive by the registry."""
    reg = Registry([{"retry": {}}])

    def make() -> None:
        reg("db")(lambda: None)

    make()
    gc.collect()
    reg("db")(lambda: None)  # registering prunes the dead
    assert len(reg._followers) == 1


# --- cancellation and threads ---------------------------------------------------------------


async def test_a_call_cancelled_after_a_reload_frees_the_old_bulkheads_slot(clock: FakeClock) -> None:
    """A call in flight holds a slot of the old bulkhead; cancelled after the reload, it frees that slot."""
    reg = Registry([{"bulkhead": 1}], clock=clock)

    @reg("db")
    async def query() -> None:
        await asyncio.Event().wait()

    old = reg.get("db").policies[0]
    assert isinstance(old, Bulkhead)
    task = asyncio.create_task(query())
    await settle()
    reg.reload([{"bulkhead": 2}])
    new = reg.get("db").policies[0]
    assert isinstance(new, Bulkhead)
    assert (old.in_use, new.in_use) == (1, 0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (old.in_use, new.in_use) == (0, 0)


async def test_an_unchanged_bulkhead_keeps_counting_across_a_reload(clock: FakeClock) -> None:
    """A bulkhead carried over keeps its slots: the call in flight still counts against the limit."""
    reg = Registry([{"retry": {"attempts": 1}}, {"bulkhead": 1}], clock=clock)

    @reg("db")
    async def query() -> None:
        await asyncio.Event().wait()

    task = asyncio.create_task(query())
    await settle()
    reg.reload([{"retry": {"attempts": 2, "backoff": 0}}, {"bulkhead": 1}])
    with pytest.raises(resilient.BulkheadFullError):
        await query()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.fixture
def hammer() -> Iterator[list[threading.Thread]]:
    """Threads to join at the end of the test."""
    started: list[threading.Thread] = []
    yield started
    for t in started:
        t.join(30)
        assert not t.is_alive()


def test_reloads_racing_sync_calls_in_threads(hammer: list[threading.Thread]) -> None:
    """Threads calling a follower while the main thread reloads: every call runs on one whole pipeline."""
    reg = Registry([{"retry": {"attempts": 1}}])
    stop = threading.Event()
    errors: list[BaseException] = []
    seen: set[int] = set()

    @reg("db")
    def query() -> None:
        ctx = resilient.current_call()
        assert ctx is not None
        (policy,) = ctx.pipeline.policies
        seen.add(policy.attempts)  # type: ignore[attr-defined]

    def worker() -> None:
        try:
            while not stop.is_set():
                query()
        except BaseException as exc:  # pragma: no cover (the failure being tested for)
            errors.append(exc)

    for _ in range(4):
        t = threading.Thread(target=worker)
        hammer.append(t)
        t.start()
    for attempts in range(2, 60):
        reg.reload([{"retry": {"attempts": attempts}}])
    stop.set()
    for t in hammer:
        t.join(30)
    assert errors == []
    assert seen <= set(range(1, 60))
    assert [p.attempts for p in pipeline_of(query).policies] == [59]  # type: ignore[attr-defined]


def test_a_rejected_reload_is_logged_as_an_error(caplog: pytest.LogCaptureFixture) -> None:
    """The logging adapter writes ConfigReloadFailed at ERROR level."""
    from resilient.adapters.logging import LoggingAdapter

    reg = Registry([{"retry": {}}], name="upstreams")
    with LoggingAdapter().attach(), caplog.at_level("DEBUG", logger="resilient"), pytest.raises(ConfigError):
        reg.reload([{"retry": {"attempts": 0}}])
    logged = [(r.levelname, "config_reload_failed" in r.getMessage()) for r in caplog.records]
    assert logged == [("ERROR", True)]


def test_a_template_raising_leaves_the_key_unbuilt_for_the_next_get() -> None:
    """A callable template's exception propagates from get(); a later get builds the key."""
    attempts: list[str] = []

    def flaky(key: str) -> Policy:
        attempts.append(key)
        if len(attempts) == 1:
            raise LookupError("settings not loaded yet")
        return retry()

    reg = Registry(flaky)
    with pytest.raises(LookupError):
        reg.get("db")
    assert reg.keys() == ()
    assert reg.get("db").name == "db"
    assert attempts == ["db", "db"]
