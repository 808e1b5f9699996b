"""Black-box contract tests for ``circuit_breaker`` and ``bulkhead`` (API.md sections 3 and 9).

Written from the contract only, against the public API: state transitions in
virtual time, seeded cancellation torture, threads released by barriers, and
bad configuration.
"""

from __future__ import annotations

import asyncio
import random
import threading
import tracemalloc
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest

from resilient import (
    Bulkhead,
    BulkheadFullError,
    CircuitBreaker,
    CircuitOpenError,
    CircuitState,
    EventBus,
    Policy,
    bulkhead,
    circuit_breaker,
    pipeline,
    timeout,
)
from resilient.events import (
    BulkheadRejected,
    CircuitClosed,
    CircuitHalfOpened,
    CircuitIsolated,
    CircuitOpened,
    CircuitRejected,
    CircuitStateChanged,
)
from resilient.testing import FakeClock, capture_events

CLOSED, OPEN = CircuitState.CLOSED, CircuitState.OPEN
HALF_OPEN, ISOLATED = CircuitState.HALF_OPEN, CircuitState.ISOLATED
Invoke = Callable[..., Awaitable[str]]


class Boom(Exception):
    """The dependency's failure."""


def boom() -> None:
    """Fail like the dependency."""
    raise Boom


async def settle(rounds: int = 30) -> None:
    """Let every ready task run until the loop is idle (no real waiting)."""
    for _ in range(rounds):
        await asyncio.sleep(0)


def st(br: CircuitBreaker) -> CircuitState:
    """Read the state through a call, so mypy does not narrow it between reads."""
    return br.state


def run_threads(n: int, target: Callable[[int], object]) -> list[BaseException]:
    """Run *target(i)* in *n* threads released together by a barrier; return what they raised."""
    barrier, errors = threading.Barrier(n, timeout=10), list[BaseException]()

    def body(i: int) -> None:
        try:
            barrier.wait()
            target(i)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads)
    return errors


@pytest.fixture(params=["sync", "async"])
def invoke(request: pytest.FixtureRequest, clock: FakeClock) -> Invoke:
    """Run a sync or async function under a policy: it takes *duration* virtual seconds, then raises *exc*."""

    async def run(policy: Policy, exc: BaseException | None = None, duration: float = 0.0) -> str:
        def finish() -> str:
            if exc is not None:
                raise exc
            return "ok"

        def f() -> str:
            clock.advance(duration)
            return finish()

        async def g() -> str:
            await clock.sleep(duration)
            return finish()

        return policy.call(f) if request.param == "sync" else await policy.call(g)

    return run


async def trip(br: CircuitBreaker, invoke: Invoke, n: int = 1) -> None:
    """Record *n* failures."""
    for _ in range(n):
        with pytest.raises(Boom):
            await invoke(br, Boom())


# --- bad configuration ---------------------------------------------------------------

NAN, INF, V, T = float("nan"), float("inf"), ValueError, TypeError
BREAKER_BAD: dict[str, list[tuple[object, type[Exception]]]] = {
    "failure_threshold": [(0, V), (-1, V), (1.5, T), ("5", T), (None, T)],
    "recovery_timeout": [(0, V), (-1.0, V), (NAN, V), (INF, V), ("30", T), (timedelta(0), V)],
    "half_open_max_calls": [(0, V), (1.0, T)],
    "success_threshold": [(0, V), (-2, V)],
    "failure_rate": [(0, V), (1.5, V), (-0.5, V), (NAN, V), ("0.5", T)],
    "window": [(0, V), (2.5, T)],
    "window_seconds": [(0, V), (-1, V), (NAN, V), (INF, V), ("10", T), (timedelta(seconds=-1), V)],
    "minimum_calls": [(0, V)],
    "slow_call_duration": [(0, V), (-1, V), (NAN, V), (INF, V)],
    "slow_call_rate": [(0, V), (1.01, V), (NAN, V)],
    "on": [(KeyboardInterrupt, V), (asyncio.CancelledError, V), ((SystemExit, GeneratorExit), V), ("x", T)],
    "ignore": [(42, T), ((ValueError, 42), T)],
    "name": [(42, T)],
    "clock": [(object(), T)],
    "bus": [(object(), T)],
    "backend": [(object(), T)],
}
BULKHEAD_BAD: dict[str, list[tuple[object, type[Exception]]]] = {
    "max_concurrent": [(0, V), (-1, V), (1.5, T), ("2", T), (None, T)],
    "max_queue": [(-1, V), (0.5, T)],
    "queue_timeout": [(0, V), (-1, V), (NAN, V), (INF, V), ("1", T), (timedelta(0), V)],
    "name": [(7, T)],
    "clock": [(object(), T)],
    "bus": [(object(), T)],
}


def _cases(table: dict[str, list[tuple[object, type[Exception]]]]) -> list[Any]:
    return [pytest.param(p, v, e, id=f"{p}={v!r}") for p, vs in table.items() for v, e in vs]


@pytest.mark.parametrize(("param", "value", "error"), _cases(BREAKER_BAD))
def test_breaker_bad_config_names_the_parameter(param: str, value: object, error: type[Exception]) -> None:
    """Bad circuit_breaker configuration raises at factory time with the parameter named."""
    with pytest.raises(error, match=rf"\b{param}\b"):
        circuit_breaker(**{param: value})  # type: ignore[arg-type]


@pytest.mark.parametrize(("param", "value", "error"), _cases(BULKHEAD_BAD))
def test_bulkhead_bad_config_names_the_parameter(param: str, value: object, error: type[Exception]) -> None:
    """Bad bulkhead configuration raises at factory time with the parameter named."""
    kwargs: dict[str, Any] = {"max_concurrent": 2, param: value}
    with pytest.raises(error, match=rf"\b{param}\b"):
        bulkhead(**kwargs)


def test_configuration_is_keyword_only() -> None:
    """circuit_breaker takes no positional argument and bulkhead only max_concurrent."""
    with pytest.raises(TypeError):
        circuit_breaker(5)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        bulkhead(1, 2)  # type: ignore[call-arg]


# --- circuit breaker: state machine in virtual time ----------------------------------


async def test_consecutive_failures_open_and_rejections_are_fresh(clock: FakeClock, invoke: Invoke) -> None:
    """failure_threshold consecutive failures open it; OPEN rejects with fresh errors, never calling."""
    br = circuit_breaker(failure_threshold=3, recovery_timeout=30, name="db", clock=clock)
    await trip(br, invoke, 2)
    assert await invoke(br) == "ok"  # a success resets the count
    await trip(br, invoke, 2)
    assert (br.name, st(br)) == ("db", CLOSED)
    await trip(br, invoke, 1)
    assert st(br) is OPEN
    clock.advance(12)
    errors = []
    for _ in range(2):
        with pytest.raises(CircuitOpenError) as info:
            await invoke(br, AssertionError("must not be called"))
        errors.append(info.value)
    assert errors[0] is not errors[1]
    assert errors[0].name == "db"
    assert errors[0].retry_after == pytest.approx(18)


@pytest.mark.parametrize(
    ("on", "second", "expected"),
    [
        (Boom, ValueError("other"), CLOSED),
        (Boom, KeyError("ign"), OPEN),
        ((Boom, KeyError), KeyError(), OPEN),
    ],
    ids=["other-exception-is-success", "ignored-is-neutral", "ignore-beats-on"],
)
async def test_classification(
    clock: FakeClock, invoke: Invoke, on: Any, second: Exception, expected: Any
) -> None:
    """Between two failures, a non-matching exception resets the count but an ignored one does not."""
    br = circuit_breaker(failure_threshold=2, on=on, ignore=KeyError, clock=clock)
    await trip(br, invoke)
    with pytest.raises(type(second)):
        await invoke(br, second)
    await trip(br, invoke)
    assert st(br) is expected


NEUTRAL = [BulkheadFullError("inner"), CircuitOpenError("inner", 3.0), KeyboardInterrupt(), SystemExit(3)]
NEUTRAL += [GeneratorExit(), asyncio.CancelledError()]


@pytest.mark.parametrize("exc", NEUTRAL, ids=lambda e: type(e).__name__)
async def test_rejections_and_control_flow_are_neutral(
    clock: FakeClock, invoke: Invoke, exc: BaseException
) -> None:
    """Rejection errors and control flow propagate as the same object, never count, and free probe permits."""
    br = circuit_breaker(failure_threshold=2, recovery_timeout=1, on=BaseException, clock=clock)
    await trip(br, invoke)
    with pytest.raises(type(exc)) as info:
        await invoke(br, exc)
    assert info.value is exc
    await trip(br, invoke)
    assert st(br) is OPEN  # the neutral call did not reset the count
    clock.advance(1)
    for _ in range(3):  # with one probe permit, each neutral probe must free it
        with pytest.raises(type(exc)):
            await invoke(br, exc)
        assert st(br) is HALF_OPEN
    assert await invoke(br) == "ok"
    assert st(br) is CLOSED


async def test_timeout_inside_breaker_is_a_failure(clock: FakeClock) -> None:
    """A TimeoutExceededError raised inside the breaker counts as an ordinary failure."""
    br = circuit_breaker(failure_threshold=1, clock=clock)
    with pytest.raises(TimeoutError):
        await pipeline(br, timeout(1, clock=clock)).call(clock.sleep, 5)
    assert st(br) is OPEN


async def test_half_open_probes_close_or_reopen_with_fresh_timeout(clock: FakeClock, invoke: Invoke) -> None:
    """success_threshold probe successes close it; a probe failure re-opens it for a full recovery_timeout."""
    br = circuit_breaker(
        failure_threshold=1, recovery_timeout=timedelta(seconds=30), success_threshold=2, clock=clock
    )
    await trip(br, invoke)
    clock.advance(29.99)
    assert st(br) is OPEN
    clock.advance(0.01)
    assert st(br) is HALF_OPEN
    await trip(br, invoke)  # the probe fails at t=30
    with pytest.raises(CircuitOpenError) as info:
        await invoke(br)
    assert info.value.retry_after == pytest.approx(30)
    clock.advance(29.5)
    assert st(br) is OPEN
    clock.advance(0.5)
    assert await invoke(br) == "ok"
    assert st(br) is HALF_OPEN
    assert await invoke(br) == "ok"
    assert st(br) is CLOSED


async def test_isolate_and_reset(clock: FakeClock, invoke: Invoke) -> None:
    """isolate() holds it open past recovery_timeout; reset() closes it and clears the statistics."""
    br = circuit_breaker(failure_threshold=3, recovery_timeout=1, clock=clock)
    await trip(br, invoke, 2)
    br.isolate()
    clock.advance(100)
    assert st(br) is ISOLATED
    with pytest.raises(CircuitOpenError) as info:
        await invoke(br, AssertionError("must not run"))
    assert info.value.retry_after is None
    br.reset()
    await trip(br, invoke, 2)  # the two failures before isolate() were forgotten
    assert st(br) is CLOSED


async def test_events_once_per_transition(clock: FakeClock, invoke: Invoke) -> None:
    """Each transition emits its event exactly once, and every rejection a CircuitRejected."""
    br = circuit_breaker(failure_threshold=1, recovery_timeout=5, name="svc", clock=clock)
    with capture_events(CircuitStateChanged, CircuitRejected) as events:
        await trip(br, invoke)
        for _ in range(2):
            with pytest.raises(CircuitOpenError):
                await invoke(br)
        clock.advance(5)
        assert (st(br), st(br)) == (HALF_OPEN, HALF_OPEN)
        await trip(br, invoke)
        clock.advance(5)
        await invoke(br)
        for action in (br.isolate, br.isolate, br.reset, br.reset):
            action()
    expected = [CircuitOpened, CircuitRejected, CircuitRejected, CircuitHalfOpened, CircuitOpened]
    assert [type(e) for e in events] == [
        *expected,
        CircuitHalfOpened,
        CircuitClosed,
        CircuitIsolated,
        CircuitClosed,
    ]
    changes = [(e.previous, e.state) for e in events if isinstance(e, CircuitStateChanged)]
    assert changes[:3] == [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, OPEN)]
    assert changes[-2:] == [(CLOSED, ISOLATED), (ISOLATED, CLOSED)]
    assert all((e.policy, e.name) == ("circuit_breaker", "svc") for e in events)
    assert [e.retry_after for e in events if isinstance(e, CircuitRejected)] == [5.0, 5.0]


async def test_async_with_form_and_shared_state(clock: FakeClock) -> None:
    """`async with breaker:`, a method, a classmethod and a sync function all share one breaker state."""
    br = circuit_breaker(failure_threshold=4, clock=clock)

    class Api:
        @br
        async def get(self) -> None:
            raise Boom

        @br
        @classmethod
        def make(cls) -> None:
            raise Boom

    with pytest.raises(Boom):
        await Api().get()
    for fn in (Api.make, br(boom)):
        with pytest.raises(Boom):
            fn()
    assert st(br) is CLOSED
    with pytest.raises(Boom):
        async with br:
            raise Boom
    ran = False
    with pytest.raises(CircuitOpenError):
        async with br:
            ran = True
    assert not ran


async def test_raising_event_handlers_change_no_outcome(clock: FakeClock, invoke: Invoke) -> None:
    """Handlers raising on every breaker and bulkhead event change no error, state or slot count."""
    bus = EventBus()
    bus.subscribe(lambda e: 1 / 0)
    br = circuit_breaker(failure_threshold=1, clock=clock, bus=bus)
    bh = bulkhead(1, clock=clock, bus=bus)
    await trip(br, invoke)
    with pytest.raises(CircuitOpenError):
        await invoke(br)
    async with bh:
        with pytest.raises(BulkheadFullError):
            await invoke(bh)
    assert (st(br), bh.in_use) == (OPEN, 0)


# --- circuit breaker: rate windows and slow calls ------------------------------------


@pytest.mark.parametrize(
    ("config", "script", "opens_at"),
    [
        ({"failure_rate": 0.75, "window": 4, "minimum_calls": 4}, "FSSSFFF", 6),  # last four: 0.75, not 4/7
        ({"failure_rate": 0.5, "window": 10, "minimum_calls": 5}, "FFFFF", 4),  # minimum_calls gate
        ({"failure_rate": 0.5, "window_seconds": 10, "minimum_calls": 3}, "SSSS+FFF", 7),  # old calls expire
    ],
    ids=["count-window-slides", "minimum-calls", "time-window-expires"],
)
async def test_failure_rate_windows(
    clock: FakeClock, invoke: Invoke, config: Any, script: str, opens_at: int
) -> None:
    """The rate counts only the window's calls, needs minimum_calls, and opens on reaching the threshold."""
    br = circuit_breaker(**config, clock=clock)
    for i, step in enumerate(script):
        if step == "+":
            clock.advance(15)
        elif step == "F":
            await trip(br, invoke)
        else:
            await invoke(br)
        assert st(br) is (OPEN if i >= opens_at else CLOSED), i


def test_time_window_memory_is_constant(clock: FakeClock) -> None:
    """A time window holds buckets, not one entry per call: 20 000 more calls allocate ~nothing."""
    br = circuit_breaker(failure_rate=1.0, window_seconds=1000, minimum_calls=1, clock=clock)
    for _ in range(500):
        br.call(clock.advance, 0.001)
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for _ in range(20_000):
            br.call(clock.advance, 0.001)
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    growth = sum(s.size_diff for s in after.compare_to(before, "filename"))
    assert growth < 40_000, growth


async def test_slow_call_rate_opens(clock: FakeClock, invoke: Invoke) -> None:
    """Successful but slow calls (virtual time) open it when slow_call_rate is reached."""
    br = circuit_breaker(
        failure_rate=1.0, window=4, minimum_calls=4, slow_call_duration=1, slow_call_rate=0.5, clock=clock
    )
    for duration in (0.5, 2.0, 0.1):
        await invoke(br, duration=duration)
    assert st(br) is CLOSED
    await invoke(br, duration=3.0)
    assert st(br) is OPEN


# --- circuit breaker: concurrency ----------------------------------------------------


def half_open(clock: FakeClock, **config: Any) -> CircuitBreaker:
    """A breaker that opened and whose recovery timeout has just passed."""
    br = circuit_breaker(failure_threshold=1, recovery_timeout=10, clock=clock, **config)
    with pytest.raises(Boom):
        br.call(boom)
    clock.advance(10)
    return br


@pytest.mark.parametrize("probes", [1, 3])
async def test_twenty_async_callers_at_half_open_moment(clock: FakeClock, probes: int) -> None:
    """20 callers arriving at the half-open moment: exactly half_open_max_calls reach the function."""
    br = half_open(clock, half_open_max_calls=probes, success_threshold=probes)
    gate, entered = asyncio.Event(), list[int]()

    async def probe() -> int:
        entered.append(1)
        await gate.wait()
        return 1

    with capture_events(CircuitHalfOpened, CircuitRejected) as events:
        tasks = [asyncio.create_task(br.call(probe)) for _ in range(20)]
        await settle()
        assert len(entered) == probes
        gate.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
    assert results.count(1) == probes
    assert sum(isinstance(r, CircuitOpenError) for r in results) == 20 - probes
    assert [type(e) for e in events].count(CircuitHalfOpened) == 1
    assert [type(e) for e in events].count(CircuitRejected) == 20 - probes
    assert st(br) is CLOSED


@pytest.mark.parametrize("probes", [1, 3])
def test_twenty_threads_at_half_open_moment(clock: FakeClock, probes: int) -> None:
    """20 threads released by a barrier at the half-open moment: exactly half_open_max_calls get in."""
    br = half_open(clock, half_open_max_calls=probes)
    gate, cond = threading.Event(), threading.Condition()
    counts = Counter[str]()

    def count(key: str) -> None:
        with cond:
            counts[key] += 1
            cond.notify_all()

    def probe() -> None:
        count("entered")
        assert gate.wait(10)

    def worker(i: int) -> None:
        try:
            br.call(probe)
        except CircuitOpenError:
            count("rejected")

    def release_when_all_arrived(i: int) -> None:
        with cond:
            assert cond.wait_for(lambda: counts.total() == 20, timeout=10)
        gate.set()

    assert run_threads(21, lambda i: (release_when_all_arrived if i == 20 else worker)(i)) == []
    assert counts["entered"] == probes
    assert st(br) is CLOSED


async def test_in_flight_calls_do_not_reopen_or_move_open_time(clock: FakeClock) -> None:
    """Calls running when it opened, ending later (even in HALF_OPEN), change neither state nor open time."""
    br = circuit_breaker(failure_threshold=2, recovery_timeout=30, success_threshold=2, clock=clock)
    gates = [asyncio.Event() for _ in range(5)]

    async def job(i: int, fail: bool) -> None:
        await gates[i].wait()
        if fail:
            raise Boom

    tasks = [asyncio.create_task(br.call(job, i, i != 4)) for i in range(5)]
    await settle()
    with capture_events(CircuitOpened) as opened:
        gates[0].set()
        gates[1].set()
        await settle()
        clock.advance(10)
        gates[2].set()  # fails while OPEN
        await settle()
        with pytest.raises(CircuitOpenError) as info:
            await br.call(job, 0, False)
        assert info.value.retry_after == pytest.approx(20)
        clock.advance(20)
        assert st(br) is HALF_OPEN
        gates[3].set()  # a straggler fails in HALF_OPEN
        gates[4].set()  # another succeeds in HALF_OPEN: it is not a probe success
        await settle()
        assert st(br) is HALF_OPEN
        await br.call(job, 0, False)  # a real probe still gets in
        assert st(br) is HALF_OPEN
    assert len(opened) == 1
    await asyncio.gather(*tasks, return_exceptions=True)


def test_closed_breaker_never_serialises_threads() -> None:
    """Eight threads are inside the protected sync function at once (no lock held around it)."""
    br, inside = circuit_breaker(), threading.Barrier(8, timeout=10)
    assert run_threads(8, lambda i: br.call(inside.wait)) == []


@pytest.mark.parametrize("seed", range(5))
async def test_half_open_cancellation_torture(clock: FakeClock, seed: int) -> None:
    """Randomly cancelled or neutral probes never exceed the probe limit and never leak a permit."""
    rng = random.Random(seed)
    br = half_open(clock, half_open_max_calls=3, success_threshold=10_000, ignore=KeyError)
    running, peak = [0], [0]

    async def probe() -> None:
        running[0] += 1
        peak[0] = max(peak[0], running[0])
        try:
            for _ in range(rng.randint(0, 4)):
                await asyncio.sleep(0)
            if rng.random() < 0.3:
                raise KeyError("neutral")
        finally:
            running[0] -= 1

    tasks: list[asyncio.Task[None]] = []
    for _ in range(300):
        tasks.append(asyncio.create_task(br.call(probe)))
        if rng.random() < 0.4:
            rng.choice(tasks).cancel()
        if rng.random() < 0.5:
            await asyncio.sleep(0)
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(
        isinstance(r, (type(None), KeyError, CircuitOpenError, asyncio.CancelledError)) for r in results
    )
    assert (0 < peak[0] <= 3, st(br)) == (True, HALF_OPEN)
    gate = asyncio.Event()
    held = [asyncio.create_task(br.call(gate.wait)) for _ in range(4)]
    await settle()
    assert sum(t.done() for t in held) == 1  # three permits free again; the fourth is rejected
    gate.set()
    await asyncio.gather(*held, return_exceptions=True)


EDGES = {(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, OPEN), (HALF_OPEN, CLOSED)}


def torture_breaker(clock: FakeClock, seen: list[CircuitStateChanged]) -> CircuitBreaker:
    """A breaker that changes state often, recording its state events in *seen*."""
    bus = EventBus()
    bus.subscribe(seen.append, CircuitStateChanged)
    return circuit_breaker(
        failure_threshold=3, recovery_timeout=1, half_open_max_calls=2, success_threshold=2, ignore=KeyError,
        clock=clock, bus=bus,
    )  # fmt: skip


def outcome(kind: str) -> None:
    """Succeed (S), fail (F) or raise an ignored exception (N)."""
    if kind != "S":
        raise Boom if kind == "F" else KeyError(kind)


@pytest.mark.parametrize("seed", range(5))
async def test_breaker_async_torture_event_chain(clock: FakeClock, seed: int) -> None:
    """Random outcomes, cancellations and time jumps: the events form one valid chain ending at .state."""
    rng, seen = random.Random(seed), list[CircuitStateChanged]()
    br = torture_breaker(clock, seen)

    async def work(kind: str) -> None:
        for _ in range(rng.randint(0, 3)):
            await asyncio.sleep(0)
        outcome(kind)

    tasks: list[asyncio.Task[None]] = []
    for _ in range(400):
        tasks.append(asyncio.create_task(br.call(work, rng.choice("SSFFN"))))
        r = rng.random()
        if r < 0.2:
            rng.choice(tasks).cancel()
        elif r < 0.3:
            clock.advance(rng.choice([0.5, 1.0]))
        if rng.random() < 0.5:
            await asyncio.sleep(0)
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(
        isinstance(r, (type(None), Boom, KeyError, CircuitOpenError, asyncio.CancelledError)) for r in results
    )
    final, state = st(br), CLOSED
    for e in seen:
        assert (e.previous, e.state) in EDGES
        assert e.previous is state
        state = e.state
    assert (state, len(seen) > 3) == (final, True)


def test_breaker_thread_torture_events_consistent(clock: FakeClock) -> None:
    """8 threads of random outcomes and time jumps: each transition is emitted once, and they add up."""
    seen = list[CircuitStateChanged]()
    br = torture_breaker(clock, seen)

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(300):
            kind = rng.choice("SSFFNA")
            if kind == "A":
                clock.advance(0.5)
                continue
            try:
                br.call(outcome, kind)
            except (Boom, KeyError, CircuitOpenError):
                pass

    assert run_threads(8, worker) == []
    final = st(br)
    edges = Counter((e.previous, e.state) for e in seen)
    assert set(edges) <= EDGES
    for s in CircuitState:  # a path from CLOSED to the final state: in/out degrees balance
        out = sum(n for (a, _), n in edges.items() if a is s)
        into = sum(n for (_, b), n in edges.items() if b is s)
        assert out - into == (s is CLOSED) - (s is final), s


# --- bulkhead --------------------------------------------------------------------------


class Holder:
    """Calls that hold their slot until released, recording the order they started in."""

    def __init__(self, bh: Bulkhead) -> None:
        self.bh, self.started, self.gates = bh, list[int](), dict[int, asyncio.Event]()

    async def hold(self, i: int) -> int:
        self.started.append(i)
        await self.gates[i].wait()
        return i

    def spawn(self, i: int) -> asyncio.Task[int]:
        self.gates[i] = asyncio.Event()
        return asyncio.create_task(self.bh.call(self.hold, i))

    def release_all(self) -> None:
        for g in self.gates.values():
            g.set()


async def test_bulkhead_full_rejects_without_calling(clock: FakeClock, invoke: Invoke) -> None:
    """Beyond max_concurrent + max_queue, a fresh BulkheadFullError comes at once; the function never runs."""
    bh = bulkhead(1, max_queue=1, name="pool", clock=clock)
    h = Holder(bh)
    tasks = [h.spawn(0), h.spawn(1)]
    await settle()
    assert (bh.in_use, bh.queued, bh.max_concurrent) == (1, 1, 1)
    with capture_events(BulkheadRejected) as events:
        errors = []
        for _ in range(2):
            with pytest.raises(BulkheadFullError) as info:
                await invoke(bh, AssertionError("must not run"))
            errors.append(info.value)
    assert errors[0] is not errors[1]
    assert (errors[0].name, errors[0].retry_after) == ("pool", None)
    assert [(type(e), e.policy, e.name, e.retry_after) for e in events] == [  # type: ignore[attr-defined]
        (BulkheadRejected, "bulkhead", "pool", None)
    ] * 2
    h.release_all()
    assert await asyncio.gather(*tasks) == [0, 1]
    assert (bh.in_use, bh.queued) == (0, 0)


async def test_bulkhead_queue_is_fifo() -> None:
    """Waiters get slots in arrival order."""
    bh = bulkhead(2, max_queue=8)
    h = Holder(bh)
    tasks = [h.spawn(i) for i in range(10)]
    await settle()
    assert (h.started, bh.queued) == ([0, 1], 8)
    for i in range(10):
        h.gates[i].set()
        await settle()
    assert await asyncio.gather(*tasks) == list(range(10))
    assert h.started == list(range(10))


@pytest.mark.parametrize(
    ("qt", "ambient"), [(2.0, None), (timedelta(seconds=2), None), (None, 2), (100.0, 2)]
)
async def test_queue_wait_ends_at_queue_timeout_or_ambient_deadline(
    clock: FakeClock, qt: float | timedelta | None, ambient: float | None
) -> None:
    """A waiter gives up after queue_timeout (or the ambient deadline) in virtual time, never running."""
    bh = bulkhead(1, max_queue=1, queue_timeout=qt, clock=clock)
    h = Holder(bh)
    first = h.spawn(0)
    h.gates[1] = asyncio.Event()

    async def wait_in_queue() -> int:
        if ambient is None:
            return await bh.call(h.hold, 1)
        async with timeout(ambient, clock=clock):
            return await bh.call(h.hold, 1)

    second = asyncio.create_task(wait_in_queue())
    await settle()
    clock.advance(1.9)
    await settle()
    assert (second.done(), bh.queued) == (False, 1)
    clock.advance(0.1)
    await settle()
    error = BulkheadFullError if ambient is None else (BulkheadFullError, TimeoutError)
    assert isinstance(second.exception(), error)
    assert (h.started, bh.queued) == ([0], 0)
    h.release_all()
    await first
    assert bh.in_use == 0


async def test_exceptions_and_control_flow_release_the_slot(invoke: Invoke) -> None:
    """A failing call, or one raising KeyboardInterrupt, gives its slot back (same object propagated)."""
    bh, kbi = bulkhead(1), KeyboardInterrupt()
    with pytest.raises(Boom):
        await invoke(bh, Boom())
    with pytest.raises(KeyboardInterrupt) as info:
        await invoke(bh, kbi)
    assert (info.value is kbi, bh.in_use) == (True, 0)
    assert await invoke(bh) == "ok"


async def test_cancel_while_queued_or_running_frees_everything() -> None:
    """Cancelling a queued call and a running one leaves no slot or queue place taken."""
    bh = bulkhead(1, max_queue=1)
    h = Holder(bh)
    running, queued = h.spawn(0), h.spawn(1)
    await settle()
    queued.cancel()
    await settle()
    assert (bh.in_use, bh.queued) == (1, 0)
    running.cancel()
    await settle()
    assert (bh.in_use, bh.queued, h.started) == (0, 0, [0])


async def test_woken_waiter_cancelled_before_it_runs_passes_its_turn() -> None:
    """A waiter handed the slot but cancelled before running passes it on: no lost wake-up."""
    bh, ran = bulkhead(1, max_queue=2), list[int]()

    async def job(i: int) -> None:
        ran.append(i)

    async with bh:
        w1, w2 = asyncio.create_task(bh.call(job, 1)), asyncio.create_task(bh.call(job, 2))
        await settle()
        assert bh.queued == 2
    w1.cancel()  # woken by the exit above, not yet run
    await asyncio.wait_for(asyncio.gather(w1, w2, return_exceptions=True), 10)
    assert (w1.cancelled(), ran, bh.in_use, bh.queued) == (True, [2], 0, 0)


@pytest.mark.parametrize("form", ["call", "async_with"])
@pytest.mark.parametrize("seed", range(5))
async def test_bulkhead_cancellation_torture(clock: FakeClock, seed: int, form: str) -> None:
    """300 tasks, seeded random cancellations, failures, queue timeouts: never over capacity, no leak."""
    rng = random.Random(seed)
    bh = bulkhead(3, max_queue=20, queue_timeout=50, clock=clock)
    running, peak, done = [0], [0], [0]

    async def work() -> None:
        running[0] += 1
        peak[0] = max(peak[0], running[0])
        assert (bh.in_use <= 3, bh.queued <= 20) == (True, True)
        try:
            for _ in range(rng.randint(0, 4)):
                await asyncio.sleep(0)
            if rng.random() < 0.1:
                raise Boom
            done[0] += 1
        finally:
            running[0] -= 1

    async def entered() -> None:
        async with bh:
            await work()

    tasks: list[asyncio.Task[None]] = []
    for _ in range(300):
        tasks.append(asyncio.create_task(bh.call(work) if form == "call" else entered()))
        r = rng.random()
        if r < 0.3:
            rng.choice(tasks).cancel()
        elif r < 0.35:
            clock.advance(rng.choice([1.0, 60.0]))
        if rng.random() < 0.5:
            await asyncio.sleep(0)
    results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 10)
    assert all(isinstance(r, (type(None), Boom, BulkheadFullError, asyncio.CancelledError)) for r in results)
    assert (done[0] > 0, peak[0] <= 3, bh.in_use, bh.queued) == (True, True, 0, 0)
    h = Holder(bh)
    again = [h.spawn(i) for i in range(5)]
    await settle()
    assert (h.started, bh.queued) == ([0, 1, 2], 2)
    h.release_all()
    assert await asyncio.gather(*again) == list(range(5))


def test_bulkhead_thread_torture() -> None:
    """16 threads released by a barrier hammer a sync bulkhead: never over capacity, no call lost."""
    bh, lock = bulkhead(2, max_queue=14), threading.Lock()
    stats = Counter[str]()

    def work() -> None:
        with lock:
            stats["running"] += 1
            stats["peak"] = max(stats["peak"], stats["running"])
            stats["calls"] += 1
        sum(range(200))
        with lock:
            stats["running"] -= 1

    def worker(i: int) -> None:
        for _ in range(200):
            bh.call(work)

    assert run_threads(16, worker) == []
    assert (stats["calls"], stats["peak"] <= 2, bh.in_use, bh.queued) == (3200, True, 0, 0)


def test_sync_queue_timeout_counts_from_joining_the_queue() -> None:
    """A thread queued at t=0 (queue_timeout=5) leaves the queue at t=5, even if its timer is armed late."""
    armed, proceed, armed_done = threading.Event(), threading.Event(), threading.Event()

    class RacyClock(FakeClock):
        """Lets the test move time between the call joining the queue and its timer being armed."""

        def call_later(self, delay: float, callback: Callable[[], Any]) -> Any:
            armed.set()
            proceed.wait(10)
            try:
                return super().call_later(delay, callback)
            finally:
                armed_done.set()

    clock = RacyClock()
    bh, hold, out = bulkhead(1, max_queue=1, queue_timeout=5, clock=clock), threading.Event(), list[object]()
    holder = threading.Thread(target=bh.call, args=(hold.wait, 10))
    holder.start()

    def waiter() -> None:
        try:
            out.append(bh.call(lambda: "ran"))
        except BulkheadFullError as e:
            out.append(e)

    queued = threading.Thread(target=waiter)
    queued.start()
    try:
        assert armed.wait(10)
        clock.advance(5)  # the waiter has now been queued for 5 s
        proceed.set()
        assert armed_done.wait(10)
        clock.advance(0)
        assert bh.queued == 0
    finally:
        clock.advance(10)
        queued.join(10)
        hold.set()
        holder.join(10)
    assert isinstance(out[0], BulkheadFullError)


MODULE_BULKHEAD = bulkhead(1, max_queue=10)


@MODULE_BULKHEAD
async def module_job(gate: asyncio.Event) -> int:
    """Hold the module-level bulkhead's slot until *gate* is set."""
    await gate.wait()
    return 1


def test_module_level_bulkhead_survives_several_asyncio_runs() -> None:
    """A module-level bulkhead works across asyncio.run() calls, including runs abandoned with waiters."""

    async def contended(finish: bool) -> int:
        gate = asyncio.Event()
        tasks = [asyncio.create_task(module_job(gate)) for _ in range(5)]
        await settle()
        assert (MODULE_BULKHEAD.in_use, MODULE_BULKHEAD.queued) == (1, 4)
        if not finish:
            return 0  # asyncio.run cancels the holder and the four waiters
        gate.set()
        return sum(await asyncio.gather(*tasks))

    for finish in (True, False, True, False, True):
        assert asyncio.run(contended(finish)) == (5 if finish else 0)
        assert (MODULE_BULKHEAD.in_use, MODULE_BULKHEAD.queued) == (0, 0)


def test_bulkhead_shared_by_several_event_loops() -> None:
    """Four threads, each in asyncio.run, share one bulkhead: capacity holds, cancellations leak nothing."""
    bh, lock = bulkhead(2, max_queue=1000), threading.Lock()
    stats = Counter[str]()

    async def work() -> None:
        with lock:
            stats["running"] += 1
            stats["peak"] = max(stats["peak"], stats["running"])
        try:
            await asyncio.sleep(0)
        finally:
            with lock:
                stats["running"] -= 1
                stats["done"] += 1

    async def main(seed: int) -> None:
        rng = random.Random(seed)
        tasks = [asyncio.create_task(bh.call(work)) for _ in range(150)]
        for _ in range(40):
            await asyncio.sleep(0)
            rng.choice(tasks).cancel()
        for r in await asyncio.gather(*tasks, return_exceptions=True):
            assert isinstance(r, (type(None), asyncio.CancelledError)), r

    assert run_threads(4, lambda i: asyncio.run(main(i))) == []
    assert (stats["peak"] <= 2, stats["done"] > 0, bh.in_use, bh.queued) == (True, True, 0, 0)
