"""Tests of ``rate_limiter``: configuration, permits and bursts, rejection, waiting, deadlines, events."""

from __future__ import annotations

import asyncio
import math
import pickle
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resilient import (
    CircuitState,
    RateLimitedError,
    RateLimiter,
    ResilientError,
    backoff,
    circuit_breaker,
    current_call,
    pipeline,
    pipeline_of,
    rate_limiter,
    retry,
    timeout,
)
from resilient.events import CallRejected, EventBus, RateLimited
from resilient.testing import FakeClock, capture_events

Invoke = Callable[..., Awaitable[Any]]


@pytest.fixture(params=["sync", "async"])
def invoke(request: pytest.FixtureRequest) -> Invoke:
    """Run a function returning the clock's time under a limiter, as a sync or an async function."""

    async def run(limiter: RateLimiter, clock: FakeClock) -> float:
        def f() -> float:
            return clock.monotonic()

        async def g() -> float:
            return clock.monotonic()

        return limiter.call(f) if request.param == "sync" else await limiter.call(g)

    return run


async def settle() -> None:
    """Let every ready task run until the loop is idle (no real waiting)."""
    for _ in range(10):
        await asyncio.sleep(0)


async def outcomes(invoke: Invoke, limiter: RateLimiter, clock: FakeClock, n: int) -> list[object]:
    """Make *n* calls one after the other; the admission time of each, or the error it raised."""
    out: list[object] = []
    for _ in range(n):
        try:
            out.append(await invoke(limiter, clock))
        except RateLimitedError as exc:
            out.append(exc)
    return out


# --- configuration -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "param"),
    [
        ((0,), {}, ValueError, "rate"),
        ((-1,), {}, ValueError, "rate"),
        ((math.nan,), {}, ValueError, "rate"),
        ((math.inf,), {}, ValueError, "rate"),
        ((10**400,), {}, ValueError, "rate"),
        (("10",), {}, TypeError, "rate"),
        ((True,), {}, TypeError, "rate"),
        ((None,), {}, TypeError, "rate"),
        ((1,), {"per": 0}, ValueError, "per"),
        ((1,), {"per": -1}, ValueError, "per"),
        ((1,), {"per": math.nan}, ValueError, "per"),
        ((1,), {"per": math.inf}, ValueError, "per"),
        ((1,), {"per": "1"}, TypeError, "per"),
        ((1,), {"per": timedelta(0)}, ValueError, "per"),
        ((1,), {"burst": 0}, ValueError, "burst"),
        ((1,), {"burst": -1}, ValueError, "burst"),
        ((1,), {"burst": 1.5}, TypeError, "burst"),
        ((1,), {"burst": "2"}, TypeError, "burst"),
        ((1,), {"max_wait": -1}, ValueError, "max_wait"),
        ((1,), {"max_wait": math.nan}, ValueError, "max_wait"),
        ((1,), {"max_wait": "1"}, TypeError, "max_wait"),
        ((1,), {"max_wait": None}, TypeError, "max_wait"),
        ((1,), {"backend": object()}, TypeError, "backend"),
        ((1,), {"name": ""}, ValueError, "name"),
        ((1,), {"name": 3}, TypeError, "name"),
        ((1,), {"clock": object()}, TypeError, "clock"),
        ((1,), {"bus": "bus"}, TypeError, "bus"),
        ((1e-300,), {"per": 1e300}, ValueError, "rate"),
        ((1e300,), {"per": 1e-300}, ValueError, "rate"),
        ((1e-10,), {}, ValueError, "rate"),
        ((1,), {"burst": 10**400}, ValueError, "burst"),
        ((1,), {"max_wait": 1e10}, ValueError, "max_wait"),
    ],
)
def test_bad_configuration_names_the_parameter(
    args: tuple[Any, ...], kwargs: dict[str, Any], error: type[Exception], param: str
) -> None:
    """Bad configuration fails at factory call time with an error naming the parameter."""
    with pytest.raises(error, match=param):
        rate_limiter(*args, **kwargs)


@pytest.mark.parametrize(("rate", "burst"), [(0.5, 1), (1, 1), (2.7, 2), (10, 10), (100.0, 100)])
def test_burst_defaults_to_the_floor_of_the_rate(rate: float, burst: int) -> None:
    """Without burst=, a limiter allows max(1, floor(rate)) permits at once."""
    assert rate_limiter(rate).burst == burst


def test_attributes_and_repr() -> None:
    """The configuration is readable back (timedeltas as seconds), and the repr shows it."""
    rl = rate_limiter(5, per=timedelta(minutes=1), burst=2, max_wait=timedelta(seconds=3), name="api")
    assert (rl.rate, rl.per, rl.burst, rl.max_wait, rl.name) == (5.0, 60.0, 2, 3.0, "api")
    assert (rl.queued, rl.available, rl.backend) == (0, 2, None)
    assert repr(rl) == "rate_limiter(5, per=60, burst=2, max_wait=3, name='api')"
    assert rl.kind == "rate_limiter"


def test_max_wait_may_be_unbounded() -> None:
    """max_wait=math.inf is accepted: a call waits for its permit however long that takes."""
    assert rate_limiter(1, max_wait=math.inf).max_wait == math.inf


def test_decorating_keeps_the_policy_in_the_pipeline() -> None:
    """A decorated function's pipeline lists the limiter, and the wrapper keeps its name."""
    rl = rate_limiter(1)

    @rl
    async def fetch() -> None:
        """Fetch."""

    assert pipeline_of(fetch).policies == (rl,)
    assert (fetch.__name__, fetch.__doc__) == ("fetch", "Fetch.")


# --- permits, bursts and rejection ---------------------------------------------------------


async def test_a_burst_runs_at_once_then_calls_are_rejected(invoke: Invoke, clock: FakeClock) -> None:
    """`burst` calls run at once; the next is rejected with the time until a permit, and not run."""
    rl = rate_limiter(10, burst=3, clock=clock, name="api")
    got = await outcomes(invoke, rl, clock, 4)
    assert got[:3] == [0.0, 0.0, 0.0]
    err = got[3]
    assert isinstance(err, RateLimitedError)
    assert isinstance(err, ResilientError)
    assert err.name == "api"
    assert err.retry_after == pytest.approx(0.1)
    assert str(err) == "rate limit 'api' exceeded; retry after 0.100s"
    assert clock.monotonic() == 0.0


async def test_permits_come_back_at_the_sustained_rate(invoke: Invoke, clock: FakeClock) -> None:
    """After a burst, one permit frees every per/rate seconds (and no more)."""
    rl = rate_limiter(4, per=2, burst=2, clock=clock)
    assert await outcomes(invoke, rl, clock, 2) == [0.0, 0.0]
    clock.advance(0.4)
    assert isinstance((await outcomes(invoke, rl, clock, 1))[0], RateLimitedError)
    clock.advance(0.1)
    got = await outcomes(invoke, rl, clock, 2)
    assert got[0] == 0.5
    assert isinstance(got[1], RateLimitedError)


async def test_retry_after_is_exactly_the_time_until_a_permit(invoke: Invoke, clock: FakeClock) -> None:
    """Waiting retry_after seconds after a rejection is enough for the call to be admitted."""
    rl = rate_limiter(3, burst=1, clock=clock)
    await invoke(rl, clock)
    clock.advance(0.1)
    with pytest.raises(RateLimitedError) as info:
        await invoke(rl, clock)
    assert info.value.retry_after is not None
    assert info.value.retry_after == pytest.approx(1 / 3 - 0.1)
    clock.advance(info.value.retry_after)
    assert await invoke(rl, clock) == clock.monotonic()


async def test_an_idle_limiter_refills_only_up_to_the_burst(invoke: Invoke, clock: FakeClock) -> None:
    """A long idle period allows `burst` calls at once, never more."""
    rl = rate_limiter(100, burst=5, clock=clock)
    clock.advance(3600)
    got = await outcomes(invoke, rl, clock, 6)
    assert got[:5] == [3600.0] * 5
    assert isinstance(got[5], RateLimitedError)


async def test_available_counts_the_permits_left(clock: FakeClock) -> None:
    """`available` is the number of calls that could run right now without waiting."""
    rl = rate_limiter(10, burst=4, clock=clock)
    assert rl.available == 4
    async with rl:
        pass
    async with rl:
        pass
    assert rl.available == 2
    clock.advance(0.15)
    assert rl.available == 3


async def test_every_rejection_is_a_fresh_error(invoke: Invoke, clock: FakeClock) -> None:
    """Two rejections raise two distinct exception objects (tracebacks never grow)."""
    rl = rate_limiter(1, clock=clock)
    got = await outcomes(invoke, rl, clock, 3)
    assert isinstance(got[1], RateLimitedError)
    assert isinstance(got[2], RateLimitedError)
    assert got[1] is not got[2]


def test_the_error_pickles_with_its_fields() -> None:
    """RateLimitedError survives pickling (e.g. to a worker process) with name and retry_after."""
    err = pickle.loads(pickle.dumps(RateLimitedError("api", 0.25)))
    assert (type(err), err.name, err.retry_after, str(err)) == (
        RateLimitedError,
        "api",
        0.25,
        "rate limit 'api' exceeded; retry after 0.250s",
    )
    assert str(RateLimitedError()) == "rate limit exceeded"


async def test_one_limiter_shares_its_permits_between_functions(clock: FakeClock) -> None:
    """A limiter decorating two functions limits their calls together."""
    rl = rate_limiter(1, burst=2, clock=clock)

    @rl
    async def a() -> str:
        return "a"

    @rl
    def b() -> str:
        return "b"

    assert (await a(), b()) == ("a", "b")
    with pytest.raises(RateLimitedError):
        await a()
    with pytest.raises(RateLimitedError):
        b()


@settings(max_examples=200, deadline=None)
@given(
    rate=st.sampled_from([0.5, 1, 3, 7, 10, 100]),
    per=st.sampled_from([0.5, 1, 2]),
    burst=st.integers(min_value=1, max_value=5),
    gaps=st.lists(st.integers(min_value=0, max_value=400), min_size=1, max_size=60),
)
def test_decisions_match_a_token_bucket(rate: float, per: float, burst: int, gaps: list[int]) -> None:
    """Admissions are exactly those of a token bucket of `burst` tokens refilled at rate/per."""
    clock = FakeClock()
    rl = rate_limiter(rate, per=per, burst=burst, clock=clock)
    tokens, last = float(burst), 0.0
    for gap in gaps:
        clock.advance(gap / 1000)
        now = clock.monotonic()
        tokens = min(float(burst), tokens + (now - last) * rate / per)
        last = now
        expected = tokens >= 1 - 1e-9
        try:
            with rl:
                pass
            admitted = True
        except RateLimitedError:
            admitted = False
        assert admitted == expected, f"at {now}: {tokens} tokens"
        if admitted:
            tokens -= 1


# --- waiting (max_wait) --------------------------------------------------------------------


async def test_calls_within_max_wait_wait_their_turn_in_order(clock: FakeClock) -> None:
    """Beyond the burst, calls whose permit is within max_wait wait for it, first come first served."""
    rl = rate_limiter(2, burst=2, max_wait=5, clock=clock)
    order: list[tuple[int, float]] = []

    async def work(i: int) -> None:
        order.append((i, clock.monotonic()))

    await asyncio.gather(*(rl.call(work, i) for i in range(6)))
    assert order == [(0, 0.0), (1, 0.0), (2, 0.5), (3, 1.0), (4, 1.5), (5, 2.0)]
    assert rl.queued == 0


async def test_a_wait_beyond_max_wait_is_rejected_at_once(invoke: Invoke, clock: FakeClock) -> None:
    """A call whose permit is further away than max_wait is rejected without waiting at all."""
    rl = rate_limiter(1, burst=1, max_wait=0.5, clock=clock)
    await invoke(rl, clock)
    with pytest.raises(RateLimitedError) as info:
        await invoke(rl, clock)
    assert info.value.retry_after == 1.0
    assert (clock.monotonic(), clock.sleeps) == (0.0, [])


async def test_a_wait_within_max_wait_sleeps_on_the_clock(invoke: Invoke, clock: FakeClock) -> None:
    """A call whose permit is within max_wait sleeps on the limiter's clock, then runs."""
    rl = rate_limiter(1, burst=1, max_wait=1, clock=clock)
    assert await invoke(rl, clock) == 0.0
    assert await invoke(rl, clock) == 1.0
    assert clock.sleeps == [1.0]


async def test_retry_after_counts_the_calls_queued_ahead(manual_clock: FakeClock) -> None:
    """A rejected call's retry_after is the time until the first permit nobody has reserved."""
    rl = rate_limiter(10, burst=1, max_wait=0.25, clock=manual_clock)

    async def work() -> float:
        return manual_clock.monotonic()

    tasks = [asyncio.create_task(rl.call(work)) for _ in range(3)]
    await asyncio.sleep(0)
    assert rl.queued == 2
    with pytest.raises(RateLimitedError) as info:
        await rl.call(work)
    assert info.value.retry_after == pytest.approx(0.3)
    for _ in range(2):
        manual_clock.advance(0.1 + 1e-9)  # a hair more than 0.1: float sums land either side
        await settle()
    assert await asyncio.gather(*tasks) == [0.0, pytest.approx(0.1), pytest.approx(0.2)]


async def test_the_ambient_deadline_bounds_the_wait(clock: FakeClock) -> None:
    """Inside a timeout, a call whose permit comes at or after the deadline is rejected at once."""
    rl = rate_limiter(1, burst=1, max_wait=10, clock=clock)

    async def work() -> float:
        return clock.monotonic()

    await rl.call(work)
    with pytest.raises(RateLimitedError) as info:
        async with timeout(1, clock=clock):
            await rl.call(work)
    assert (info.value.retry_after, clock.monotonic()) == (1.0, 0.0)
    async with timeout(1.5, clock=clock):
        assert await rl.call(work) == 1.0


async def test_a_free_permit_runs_even_past_the_deadline(clock: FakeClock) -> None:
    """A call that needs no wait runs even when the ambient deadline has already passed."""
    rl = rate_limiter(1, clock=clock)
    other = FakeClock()
    async with timeout(1, clock=other):
        other.advance(0.999)  # almost spent; nothing to wait for, so the call still runs
        async with rl:
            pass
    assert rl.available == 0


# --- block forms -----------------------------------------------------------------------------


async def test_async_with_takes_a_permit(clock: FakeClock) -> None:
    """`async with limiter:` takes a permit for the block; leaving it gives nothing back."""
    rl = rate_limiter(1, burst=1, clock=clock)
    async with rl as entered:
        assert entered is rl
    assert rl.available == 0
    with pytest.raises(RateLimitedError):
        async with rl:
            pass


def test_with_takes_a_permit(clock: FakeClock) -> None:
    """`with limiter:` takes a permit for the block, in sync code."""
    rl = rate_limiter(1, burst=1, max_wait=1, clock=clock)
    with rl as entered:
        assert entered is rl
    with rl:
        assert clock.monotonic() == 1.0


# --- events ------------------------------------------------------------------------------------


async def test_a_rejection_emits_rate_limited(invoke: Invoke, clock: FakeClock) -> None:
    """Each rejection emits one RateLimited (a CallRejected) with the retry_after."""
    rl = rate_limiter(2, burst=1, name="api", clock=clock)
    with capture_events() as events:
        await outcomes(invoke, rl, clock, 3)
    rejected = [e for e in events if isinstance(e, CallRejected)]
    assert len(rejected) == 2
    ev = rejected[0]
    assert isinstance(ev, RateLimited)
    assert (ev.policy, ev.name, ev.retry_after, ev.time) == ("rate_limiter", "api", 0.5, 0.0)
    assert ev.operation is not None
    assert ev.operation.endswith(".f") or ev.operation.endswith(".g")


async def test_a_block_rejection_has_no_operation(clock: FakeClock) -> None:
    """A rejection from `async with` reports operation=None, on the limiter's own bus."""
    bus = EventBus()
    seen: list[RateLimited] = []
    bus.subscribe(seen.append, RateLimited)
    rl = rate_limiter(1, clock=clock, bus=bus)
    async with rl:
        pass
    with pytest.raises(RateLimitedError):
        async with rl:
            pass
    assert [(e.operation, e.retry_after) for e in seen] == [(None, 1.0)]


async def test_waiting_emits_nothing(clock: FakeClock) -> None:
    """Calls that wait and run emit no rejection."""
    rl = rate_limiter(1, burst=1, max_wait=5, clock=clock)
    with capture_events(RateLimited) as events:
        for _ in range(3):
            async with rl:
                pass
    assert events == []


# --- composition ---------------------------------------------------------------------------------


async def test_retry_honours_retry_after(clock: FakeClock) -> None:
    """A retry around a limiter waits at least the rejection's retry_after, then gets a permit."""
    rl = rate_limiter(1, per=2, burst=1, clock=clock)
    calls: list[float] = []

    @retry(attempts=2, backoff=backoff.constant(0.1, max_delay=5), clock=clock)
    @rl
    async def work() -> None:
        calls.append(clock.monotonic())

    await work()
    await work()
    assert calls == [0.0, 2.0]
    assert clock.sleeps == [2.0]


async def test_a_breaker_treats_a_rejection_as_neutral(clock: FakeClock) -> None:
    """Rejections of a limiter inside a breaker never open it: the dependency was not called."""
    br = circuit_breaker(failure_threshold=1, clock=clock)
    guarded = pipeline(br, rate_limiter(1, clock=clock))

    async def work() -> None:
        pass

    await guarded.call(work)
    for _ in range(3):
        with pytest.raises(RateLimitedError):
            await guarded.call(work)
    assert br.state is CircuitState.CLOSED


async def test_the_call_context_is_visible_inside(clock: FakeClock) -> None:
    """current_call() inside a limited function names the operation."""
    rl = rate_limiter(1, max_wait=1, clock=clock)

    @rl
    async def work() -> str | None:
        ctx = current_call()
        return None if ctx is None else ctx.operation

    assert (await work()).endswith("work")  # type: ignore[union-attr]
    assert (await work()).endswith("work")  # type: ignore[union-attr]


def test_a_limiter_works_across_event_loops(clock: FakeClock) -> None:
    """A module-level style limiter is not bound to a loop: several asyncio.run() in a row share it."""
    rl = rate_limiter(1, burst=2, max_wait=1, clock=clock)

    async def work() -> float:
        return clock.monotonic()

    assert asyncio.run(rl.call(work)) == 0.0
    assert asyncio.run(rl.call(work)) == 0.0
    assert asyncio.run(rl.call(work)) == 1.0
