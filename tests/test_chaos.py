"""resilient.chaos: fault, latency and result injection, switches, rates, events, configuration."""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest

import resilient
from resilient import CallContext, Policy, chaos, current_call, pipeline, retry, timeout
from resilient.events import ChaosInjected, EventBus
from resilient.testing import FakeClock, capture_events


class Target:
    """The protected function, async or sync, counting its calls; runs policies over it."""

    def __init__(self, is_async: bool) -> None:
        self.is_async = is_async
        self.calls = 0
        self.contexts: list[CallContext | None] = []

    def function(self) -> Callable[[], Any]:
        """A fresh function returning "real" (a coroutine function when async)."""
        if self.is_async:

            async def real_async() -> str:
                self.calls += 1
                self.contexts.append(current_call())
                return "real"

            return real_async

        def real_sync() -> str:
            self.calls += 1
            self.contexts.append(current_call())
            return "real"

        return real_sync

    async def run(self, policy: Policy, times: int = 1) -> list[Any]:
        """Call the function under *policy* *times* times; outcomes (results or exceptions) in order."""
        guarded: Any = policy(self.function())
        out: list[Any] = []
        for _ in range(times):
            try:
                value = guarded()
                if self.is_async:
                    value = await value
            except Exception as exc:
                value = exc
            out.append(value)
        return out


@pytest.fixture(params=[True, False], ids=["async", "sync"])
def target(request: pytest.FixtureRequest) -> Target:
    """The protected function in each flavour."""
    return Target(bool(request.param))


class Draws:
    """A random source that returns the given numbers in turn and counts draws."""

    def __init__(self, *values: float) -> None:
        self.values = list(values)
        self.count = 0

    def random(self) -> float:
        """The next value."""
        self.count += 1
        return self.values.pop(0)


# --- what each policy injects -------------------------------------------------------


async def test_fault_raises_a_fresh_exception_instead_of_calling(target: Target, clock: FakeClock) -> None:
    """fault(Type) raises a new Type() on each call, noted as injected, and never calls the function."""
    first, second = await target.run(chaos.fault(ConnectionError, clock=clock), times=2)
    assert type(first) is ConnectionError
    assert type(second) is ConnectionError
    assert first is not second
    assert first.__notes__ == ["injected by resilient.chaos.fault"]
    assert target.calls == 0


async def test_fault_factory_builds_the_exception(target: Target, clock: FakeClock) -> None:
    """A factory's exception is raised, and ChaosInjected carries it."""
    with capture_events() as events:
        [exc] = await target.run(chaos.fault(lambda: TimeoutError("injected"), name="db", clock=clock))
    assert (type(exc), str(exc)) == (TimeoutError, "injected")
    [event] = [e for e in events if isinstance(e, ChaosInjected)]
    assert (event.policy, event.name, event.kind, event.exception, event.seconds) == (
        "chaos",
        "db",
        "fault",
        exc,
        None,
    )


async def test_a_factory_returning_the_same_object_gets_one_note(target: Target, clock: FakeClock) -> None:
    """Re-raising one object does not pile up notes."""
    err = ConnectionError("shared")
    await target.run(chaos.fault(lambda: err, clock=clock), times=3)
    assert err.__notes__ == ["injected by resilient.chaos.fault"]


async def test_latency_waits_on_the_clock_then_calls(target: Target, clock: FakeClock) -> None:
    """latency(s) sleeps s seconds on the policy's clock (blocking for sync), then calls the function."""
    with capture_events() as events:
        assert await target.run(chaos.latency(timedelta(seconds=1.5), clock=clock)) == ["real"]
    assert (clock.monotonic(), clock.sleeps, target.calls) == (1.5, [1.5], 1)
    [event] = [e for e in events if isinstance(e, ChaosInjected)]
    assert (event.kind, event.seconds, event.time) == ("latency", 1.5, 0.0)


async def test_result_answers_without_calling(target: Target, clock: FakeClock) -> None:
    """result(v) returns v itself and never calls the function."""
    value = {"status": "stale"}
    with capture_events() as events:
        assert await target.run(chaos.result(value, clock=clock)) == [value]
    assert target.calls == 0
    assert [e.kind for e in events if isinstance(e, ChaosInjected)] == ["result"]


async def test_async_injection_happens_when_awaited(clock: FakeClock) -> None:
    """Calling a chaos-guarded coroutine function never raises; the fault comes when it is awaited."""

    @chaos.fault(ConnectionError, clock=clock)
    async def op() -> None:
        pass

    coro = op()
    assert inspect.isawaitable(coro)
    with pytest.raises(ConnectionError):
        await coro


# --- when: rate, seed, random, enabled ------------------------------------------------------


async def test_rate_draws_against_the_random_source(target: Target, clock: FakeClock) -> None:
    """A call is injected when the draw is below the rate."""
    draws = Draws(0.1, 0.9, 0.49, 0.5)
    outcomes = await target.run(chaos.result("chaos", rate=0.5, random=draws, clock=clock), times=4)
    assert outcomes == ["chaos", "real", "chaos", "real"]


@pytest.mark.parametrize(("rate", "expected"), [(0.0, "real"), (1.0, "chaos")])
async def test_rates_zero_and_one_never_draw(
    target: Target, clock: FakeClock, rate: float, expected: str
) -> None:
    """rate=0 never injects and rate=1 always does, without drawing."""
    draws = Draws()
    assert (
        await target.run(chaos.result("chaos", rate=rate, random=draws, clock=clock), times=3)
        == [expected] * 3
    )
    assert draws.count == 0


async def test_a_seed_makes_injections_reproducible(target: Target, clock: FakeClock) -> None:
    """Two policies with the same seed inject on the same calls."""
    runs = [
        await target.run(chaos.result("chaos", rate=0.3, seed=1234, clock=clock), times=200) for _ in range(2)
    ]
    assert runs[0] == runs[1]
    assert 0 < runs[0].count("chaos") < 200


async def test_disabled_never_injects(target: Target, clock: FakeClock) -> None:
    """enabled=False calls the function every time and emits nothing."""
    with capture_events() as events:
        assert await target.run(chaos.fault(ValueError, enabled=False, clock=clock), times=3) == ["real"] * 3
    assert [e for e in events if isinstance(e, ChaosInjected)] == []


async def test_a_switch_without_a_signature_is_trusted(target: Target, clock: FakeClock) -> None:
    """A builtin whose signature cannot be read (``bool``: always False) is accepted as the switch."""
    assert await target.run(chaos.result("chaos", enabled=bool, clock=clock)) == ["real"]


def test_never_injecting_adds_no_layer() -> None:
    """A policy that can never inject (disabled, or rate 0) returns the inner layer itself."""

    def inner(ctx: CallContext, fn: Any, args: Any, kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    for policy in (chaos.fault(ValueError, enabled=False), chaos.latency(1, rate=0)):
        assert policy.wrap_async(inner) is inner
        assert policy.wrap_sync(inner) is inner


async def test_enabled_callable_is_read_on_every_call(target: Target, clock: FakeClock) -> None:
    """A zero-argument callable switches chaos on and off at run time, call by call."""
    switch = iter([False, True, "yes", 0, None])
    outcomes = await target.run(chaos.result("chaos", enabled=lambda: next(switch), clock=clock), times=5)
    assert outcomes == ["real", "chaos", "chaos", "real", "real"]


class Undecided:
    """A switch value whose truth cannot be told."""

    def __bool__(self) -> bool:
        raise KeyError("CHAOS")


def broken_switch() -> bool:
    """A switch that raises."""
    raise KeyError("CHAOS")


@pytest.mark.parametrize("switch", [broken_switch, Undecided], ids=["raises", "truth-raises"])
async def test_a_raising_switch_means_disabled_and_is_logged(
    target: Target, clock: FakeClock, caplog: pytest.LogCaptureFixture, switch: Callable[[], object]
) -> None:
    """A switch that raises (or answers with an undecidable value) injects nothing and is logged."""
    with caplog.at_level(logging.ERROR, logger="resilient"):
        assert await target.run(chaos.fault(ValueError, enabled=switch, clock=clock)) == ["real"]
    [record] = caplog.records
    assert "enabled() raised" in record.getMessage()
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], KeyError)


# --- context, composition, cancellation -----------------------------------------------------


@pytest.mark.parametrize(
    "policy",
    [
        chaos.fault(ValueError, enabled=False),
        chaos.fault(ValueError, enabled=lambda: False),
        chaos.latency(0.5, enabled=lambda: True, clock=FakeClock()),
        pipeline(chaos.latency(0.5, rate=0), chaos.result(1, enabled=lambda: False)),
        pipeline(chaos.result(1, enabled=lambda: False), retry()),
    ],
    ids=["disabled", "switched-off", "latency", "two-chaos-layers", "outside-retry"],
)
async def test_current_call_inside_a_chaos_only_pipeline(target: Target, policy: Policy) -> None:
    """current_call() finds the call's context when chaos is the only policy, injecting or not."""
    await target.run(policy)
    [ctx] = target.contexts
    assert ctx is not None
    assert ctx.operation.endswith("real_async" if target.is_async else "real_sync")


async def test_retry_retries_injected_faults(target: Target, clock: FakeClock) -> None:
    """An injected fault is an ordinary failure to the policies outside it."""
    draws = Draws(0.0, 0.0, 0.9)
    guarded = pipeline(
        retry(attempts=3, backoff=0, clock=clock), chaos.fault(ConnectionError, rate=0.5, random=draws)
    )
    assert await target.run(guarded) == ["real"]
    assert (target.calls, draws.count) == (1, 3)


async def test_outer_timeout_interrupts_injected_latency(clock: FakeClock) -> None:
    """An enclosing timeout cuts an injected latency short; the function is not called."""
    calls: list[int] = []

    @timeout(1, clock=clock)
    @chaos.latency(5, clock=clock)
    async def op() -> None:
        calls.append(1)

    with pytest.raises(resilient.TimeoutExceededError):
        await op()
    assert (clock.monotonic(), calls) == (1.0, [])


async def test_cancelling_the_caller_during_latency(clock: FakeClock) -> None:
    """A cancellation during an injected latency propagates; the function is not called."""
    calls: list[int] = []

    @chaos.latency(3600)  # the system clock: the task is cancelled before any time passes
    async def op() -> None:
        calls.append(1)

    task = asyncio.ensure_future(op())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert calls == []


def test_threads_share_one_seeded_policy() -> None:
    """Calls from many threads draw from one source: as many injections as the same calls in one thread."""

    def count(threads: int, per_thread: int) -> int:
        policy = chaos.fault(ConnectionError, rate=0.25, seed=99)
        op = policy(lambda: None)
        faults = [0] * threads

        def worker(i: int) -> None:
            for _ in range(per_thread):
                try:
                    op()
                except ConnectionError:
                    faults[i] += 1

        pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        return sum(faults)

    assert count(8, 250) == count(1, 2000)


def test_sync_latency_in_threads_uses_the_blocking_sleep() -> None:
    """Sync latency waits with the clock's blocking sleep, from any thread."""
    clock = FakeClock()
    op = chaos.latency(0.25, clock=clock)(lambda: None)
    pool = [threading.Thread(target=op) for _ in range(4)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert (clock.sleeps, clock.monotonic()) == ([0.25] * 4, 1.0)


# --- events, identity -----------------------------------------------------------------------


async def test_events_go_to_the_policys_bus(target: Target, clock: FakeClock) -> None:
    """ChaosInjected goes to the policy's own bus, with the operation."""
    bus = EventBus()
    seen: list[ChaosInjected] = []
    bus.subscribe(seen.append, ChaosInjected)
    await target.run(chaos.result(1, bus=bus, clock=clock))
    [event] = seen
    assert event.operation is not None
    assert event.operation.endswith("real_async" if target.is_async else "real_sync")


def test_policies_are_chaos_kind_and_repr() -> None:
    """Every chaos policy has kind "chaos" and a readable repr."""
    flag = [True]
    policies = [
        chaos.fault(ConnectionError),
        chaos.latency(0.5, rate=0.25),
        chaos.result(None, enabled=False),
        chaos.fault(lambda: ValueError(), enabled=flag.pop),
    ]
    assert {p.kind for p in policies} == {"chaos"}
    assert repr(policies[0]) == "chaos.fault(ConnectionError)"
    assert repr(policies[1]) == "chaos.latency(0.5, rate=0.25)"
    assert repr(policies[2]) == "chaos.result(None, enabled=False)"
    assert repr(policies[3]).startswith(
        "chaos.fault(test_policies_are_chaos_kind_and_repr.<locals>.<lambda>, enabled="
    )


# --- configuration ---------------------------------------------------------------------------


class NeedsArgs(Exception):
    """An exception that cannot be built without arguments."""

    def __init__(self, code: int) -> None:
        super().__init__(code)


untyped: Any = chaos  # the bad arguments below are static type errors too


async def async_factory() -> Exception:
    """A fault factory that needs awaiting: its coroutine is no exception."""
    return ConnectionError()


async def async_switch() -> bool:
    """A switch that needs awaiting: chaos reads its switch synchronously."""
    return False


@pytest.mark.parametrize(
    ("build", "error", "words"),
    [
        (lambda: untyped.fault(ConnectionError("x")), TypeError, "factory"),
        (lambda: untyped.fault(int), TypeError, "fault"),
        (lambda: untyped.fault(KeyboardInterrupt), ValueError, "fault"),
        (lambda: untyped.fault(asyncio.CancelledError), ValueError, "fault"),
        (lambda: untyped.fault(NeedsArgs), TypeError, "fault=NeedsArgs"),
        (lambda: untyped.fault("ConnectionError"), TypeError, "fault"),
        (lambda: untyped.fault(10**5000), TypeError, "fault"),  # repr() of it raises ValueError
        # Factories that could never build an exception: they failed every call instead.
        (lambda: untyped.fault(lambda code: ValueError(code)), TypeError, "fault"),
        (lambda: untyped.fault(async_factory), TypeError, "fault"),
        (lambda: untyped.latency(-1), ValueError, "seconds"),
        (lambda: untyped.latency(math.nan), ValueError, "seconds"),
        (lambda: untyped.latency(math.inf), ValueError, "seconds"),
        (lambda: untyped.latency("1"), TypeError, "seconds"),
        (lambda: untyped.result(1, rate=-0.1), ValueError, "rate"),
        (lambda: untyped.result(1, rate=1.5), ValueError, "rate"),
        (lambda: untyped.result(1, rate=math.nan), ValueError, "rate"),
        (lambda: untyped.result(1, rate="0.5"), TypeError, "rate"),
        (lambda: untyped.result(1, rate=True), TypeError, "rate"),
        (lambda: untyped.result(1, enabled="yes"), TypeError, "enabled"),
        (lambda: untyped.result(1, enabled=lambda flag: flag), TypeError, "enabled"),
        (lambda: untyped.result(1, enabled=10**5000), TypeError, "enabled"),
        # Its coroutine is truthy: chaos was always on, and the coroutine never awaited.
        (lambda: untyped.result(1, enabled=async_switch), TypeError, "enabled"),
        (lambda: untyped.result(1, rate=10**400), ValueError, "rate"),
        (lambda: untyped.result(1, seed=1, random=Draws()), TypeError, "seed and random"),
        (lambda: untyped.result(1, random=object()), TypeError, "random"),
        (lambda: untyped.result(1, random=10**5000), TypeError, "random"),
        (lambda: untyped.result(1, seed=1.5j), TypeError, "seed"),
        (lambda: untyped.result(1, seed=[1]), TypeError, "seed"),
        (lambda: untyped.result(1, name=""), ValueError, "name"),
        (lambda: untyped.result(1, clock=object()), TypeError, "clock"),
        (lambda: untyped.result(1, bus=object()), TypeError, "bus"),
    ],
)
def test_bad_configuration_is_rejected_naming_the_parameter(
    build: Callable[[], Any], error: type[Exception], words: str
) -> None:
    """Bad arguments fail when the factory is called, with a message naming the parameter."""
    with pytest.raises(error, match=words):
        build()


@pytest.mark.parametrize(
    ("factory", "words"),
    [(lambda: "not an exception", "not an exception"), (lambda: KeyboardInterrupt(), "control-flow")],
    ids=["not-exception", "control-flow"],
)
async def test_a_bad_factory_fails_clearly_at_call_time(
    target: Target, clock: FakeClock, factory: Callable[[], Any], words: str
) -> None:
    """A factory returning something other than an Exception raises TypeError; the function is not called."""
    [exc] = await target.run(chaos.fault(factory, clock=clock))
    assert isinstance(exc, TypeError)
    assert words in str(exc)
    assert target.calls == 0


def test_module_docstring_example_names_exist() -> None:
    """The classes behind the factories are public in resilient.chaos."""
    assert isinstance(chaos.fault(ValueError), chaos.Fault)
    assert isinstance(chaos.latency(1), chaos.Latency)
    assert isinstance(chaos.result(1), chaos.Result)
    assert all(issubclass(c, chaos.ChaosPolicy) for c in (chaos.Fault, chaos.Latency, chaos.Result))


@pytest.fixture(autouse=True)
def _no_leftover_threads() -> Iterator[None]:
    """Thread tests join their threads."""
    before = threading.active_count()
    yield
    assert threading.active_count() == before
