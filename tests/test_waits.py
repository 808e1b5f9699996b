"""Queue time reported to the policies around a queue: a breaker outside a bulkhead (issue 10, item 12).

A call admitted by a CLOSED breaker that then waits in an inner bulkhead's
queue is checked again when it leaves the queue, and its slow-call timing
leaves the queue time out. Every scenario runs with coroutines and with
threads (the ``mode`` fixture), in virtual time.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable
from typing import Any, ClassVar

import pytest

from resilient import (
    Bulkhead,
    CircuitOpenError,
    CircuitState,
    bulkhead,
    chaos,
    circuit_breaker,
    pipeline,
)
from resilient._context import CallContext
from resilient._pipeline import Args, AsyncLayer, Kwargs, Policy, SyncLayer
from resilient._waits import WaitReporter
from resilient.backends import BreakerBackend, MemoryBackend, Permit
from resilient.events import CircuitRejected, EventBus
from resilient.testing import FakeClock


class Down(Exception):
    """The dead dependency's failure."""


def wait_until(predicate: Callable[[], bool]) -> None:
    """Yield the CPU until *predicate* holds (the guard only stops a hang)."""
    guard = time.monotonic() + 30
    while not predicate():
        assert time.monotonic() < guard, "condition never became true"
        os.sched_yield()


class Mode:
    """Runs *n* concurrent calls of one dependency through a pipeline, as coroutines or threads.

    The dependency is ``body(i)`` for the i-th call to reach it. The first
    call holds its slot until every other call has joined the bulkhead's
    queue, so all of them were admitted by the breaker while it was CLOSED.
    """

    is_async: ClassVar[bool]

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock

    def sleep(self, seconds: float) -> Any:
        """Spend *seconds* of virtual time in the dependency (awaitable in async mode)."""
        raise NotImplementedError

    def run(self, policy: Policy, bh: Bulkhead, n: int, body: Callable[[int], Any]) -> list[Any]:
        """Start *n* calls at once and return each one's result or exception."""
        raise NotImplementedError


class AsyncMode(Mode):
    """Coroutines on one event loop."""

    is_async = True

    async def sleep(self, seconds: float) -> None:
        await self.clock.sleep(seconds)

    def run(self, policy: Policy, bh: Bulkhead, n: int, body: Callable[[int], Any]) -> list[Any]:
        reached: list[int] = []

        @policy
        async def call() -> Any:
            reached.append(len(reached))
            if len(reached) == 1:
                while bh.queued < n - 1:
                    await asyncio.sleep(0)
            return await body(reached[-1])

        async def main() -> list[Any]:
            return await asyncio.gather(*(call() for _ in range(n)), return_exceptions=True)

        return asyncio.run(main())


class ThreadMode(Mode):
    """One thread per call."""

    is_async = False

    def sleep(self, seconds: float) -> None:
        self.clock.sleep_blocking(seconds)

    def run(self, policy: Policy, bh: Bulkhead, n: int, body: Callable[[int], Any]) -> list[Any]:
        reached: list[int] = []
        results: list[Any] = [None] * n

        @policy
        def call() -> Any:
            reached.append(len(reached))
            if len(reached) == 1:
                wait_until(lambda: bh.queued == n - 1)
            return body(reached[-1])

        def worker(i: int) -> None:
            try:
                results[i] = call()
            except Exception as exc:
                results[i] = exc

        threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
            assert not t.is_alive(), "a call never finished"
        return results


@pytest.fixture(params=[AsyncMode, ThreadMode], ids=["async", "sync"])
def mode(request: pytest.FixtureRequest, clock: FakeClock) -> Mode:
    """Coroutines or threads."""
    cls: type[Mode] = request.param
    return cls(clock)


def failing(mode: Mode, reached: list[int]) -> Callable[[int], Any]:
    """A dead dependency: it takes a second, then fails; it records each call that reached it."""
    if mode.is_async:

        async def body_async(i: int) -> None:
            reached.append(i)
            await mode.sleep(1)
            raise Down

        return body_async

    def body(i: int) -> None:
        reached.append(i)
        mode.sleep(1)
        raise Down

    return body


def healthy(mode: Mode, seconds: float) -> Callable[[int], Any]:
    """A healthy dependency answering in *seconds*."""
    if mode.is_async:

        async def body_async(i: int) -> int:
            await mode.sleep(seconds)
            return i

        return body_async

    def body(i: int) -> int:
        mode.sleep(seconds)
        return i

    return body


# --- a queued call does not skip a breaker that opened meanwhile -------------------------


def test_queued_calls_do_not_reach_a_dependency_the_breaker_gave_up_on(mode: Mode, clock: FakeClock) -> None:
    """30 calls queue behind a dead dependency: 3 reach it, then the open breaker rejects the other 27."""
    breaker = circuit_breaker(failure_threshold=3, recovery_timeout=60, clock=clock)
    bh = bulkhead(1, max_queue=29, clock=clock)
    reached: list[int] = []
    results = mode.run(pipeline(breaker, bh), bh, 30, failing(mode, reached))
    assert len(reached) == 3
    assert sum(isinstance(r, Down) for r in results) == 3
    assert sum(isinstance(r, CircuitOpenError) for r in results) == 27
    assert breaker.state is CircuitState.OPEN
    assert (bh.in_use, bh.queued) == (0, 0)


def test_a_rejection_on_leaving_the_queue_is_neutral_and_reported(mode: Mode, clock: FakeClock) -> None:
    """Calls rejected on leaving the queue count as nothing, carry retry_after, emit CircuitRejected."""
    bus = EventBus()
    rejected: list[CircuitRejected] = []
    bus.subscribe(rejected.append, CircuitRejected)
    breaker = circuit_breaker(failure_threshold=2, recovery_timeout=60, clock=clock, bus=bus)
    bh = bulkhead(1, max_queue=4, clock=clock)
    results = mode.run(pipeline(breaker, bh), bh, 5, failing(mode, []))
    errors = [r for r in results if isinstance(r, CircuitOpenError)]
    assert len(errors) == len(rejected) == 3
    # Opened at t=2 by the second failure; the others leave the queue at once, 60 s before recovery.
    assert {e.retry_after for e in errors} == {60.0}
    assert breaker.stats().consecutive_failures == 2


def test_a_queued_call_goes_ahead_if_the_breaker_closed_again(mode: Mode, clock: FakeClock) -> None:
    """A call that queued while the breaker was reset (CLOSED again) still reaches the dependency."""
    breaker = circuit_breaker(failure_threshold=1, recovery_timeout=60, clock=clock)
    bh = bulkhead(1, max_queue=1, clock=clock)
    reached: list[int] = []

    def body(i: int) -> Any:
        reached.append(i)
        if i == 0:
            breaker.reset()  # moves the generation on while the other call waits
        return i

    if mode.is_async:

        async def abody(i: int) -> Any:
            return body(i)

        results = mode.run(pipeline(breaker, bh), bh, 2, abody)
    else:
        results = mode.run(pipeline(breaker, bh), bh, 2, body)
    assert sorted(results) == [0, 1]
    assert reached == [0, 1]


def test_a_probe_that_queued_is_rejected_if_another_probe_reopened_the_breaker(
    mode: Mode, clock: FakeClock
) -> None:
    """Two HALF_OPEN probes: the first fails and re-opens the breaker, the one queued behind it never runs."""
    breaker = circuit_breaker(failure_threshold=1, recovery_timeout=10, half_open_max_calls=2, clock=clock)
    with pytest.raises(Down):
        breaker.call(_raise_down)
    clock.advance(10)
    bh = bulkhead(1, max_queue=1, clock=clock)
    reached: list[int] = []
    results = mode.run(pipeline(breaker, bh), bh, 2, failing(mode, reached))
    assert reached == [0]
    assert sorted(type(r).__name__ for r in results) == ["CircuitOpenError", "Down"]
    assert (breaker.state, breaker.stats().probes_in_flight) == (CircuitState.OPEN, 0)


def _raise_down() -> None:
    raise Down


# --- queue time is not dependency time --------------------------------------------------


def test_queue_time_does_not_make_a_healthy_dependency_slow(mode: Mode, clock: FakeClock) -> None:
    """Ten calls of a 1 s dependency queue for up to 9 s: none is slow, the breaker stays CLOSED."""
    breaker = circuit_breaker(
        failure_rate=0.5, slow_call_duration=1.5, slow_call_rate=0.5, minimum_calls=5, window=10, clock=clock
    )
    bh = bulkhead(1, max_queue=9, clock=clock)
    results = mode.run(pipeline(breaker, bh), bh, 10, healthy(mode, 1.0))
    assert sorted(results) == list(range(10))
    stats = breaker.stats()
    assert (stats.state, stats.calls, stats.slow_calls) == (CircuitState.CLOSED, 10, 0)


def test_a_slow_dependency_behind_a_queue_is_still_slow(mode: Mode, clock: FakeClock) -> None:
    """Leaving queue time out does not hide real slowness: a 2 s dependency is slow wherever it queued."""
    breaker = circuit_breaker(
        failure_rate=0.5, slow_call_duration=1.5, slow_call_rate=0.5, minimum_calls=3, window=3, clock=clock
    )
    bh = bulkhead(1, max_queue=2, clock=clock)
    mode.run(pipeline(breaker, bh), bh, 3, healthy(mode, 2.0))
    stats = breaker.stats()
    assert (stats.state, stats.slow_calls) == (CircuitState.OPEN, 3)


# --- only calls that waited are checked again ----------------------------------------------


class CountingBackend(MemoryBackend):
    """The default backend, counting how often a call is checked again."""

    def __init__(self) -> None:
        self.readmits = 0
        self._admitted = True
        super().__init__()

    @property
    def waiters_admitted(self) -> bool:
        self.readmits += 1  # the breaker's first question about a call that waited
        return self._admitted

    @waiters_admitted.setter
    def waiters_admitted(self, value: bool) -> None:
        self._admitted = value


def test_only_calls_that_waited_are_checked_again(mode: Mode, clock: FakeClock) -> None:
    """Of five calls, the four that queued are checked again on leaving the queue; the first is not."""
    backend = CountingBackend()
    breaker = circuit_breaker(clock=clock, backend=backend)
    bh = bulkhead(1, max_queue=4, clock=clock)
    mode.run(pipeline(breaker, bh), bh, 5, healthy(mode, 1.0))
    assert backend.readmits == 4


def test_an_uncontended_call_is_not_checked_again(clock: FakeClock) -> None:
    """A call that found a free slot reports no wait."""
    backend = CountingBackend()
    guarded = pipeline(circuit_breaker(clock=clock, backend=backend), bulkhead(1, clock=clock))
    assert guarded.call(lambda: 1) == 1
    assert backend.readmits == 0


class StatsOnly(MemoryBackend):
    """A backend relying on the defaults: no waiters_admitted fast path, readmit() reads stats()."""

    waiters_admitted = property(lambda self: False, lambda self, value: None)
    readmit = BreakerBackend.readmit


class Remote(MemoryBackend):
    """A backend whose steps the breaker treats as I/O (awaited through the *_async defaults)."""

    nonblocking: ClassVar[bool] = False


def test_the_default_readmit_stops_queued_calls_after_the_breaker_opened(
    mode: Mode, clock: FakeClock
) -> None:
    """A backend that relies on the default readmit() (from stats()) rejects queued calls the same way."""
    breaker = circuit_breaker(failure_threshold=3, recovery_timeout=60, clock=clock, backend=StatsOnly())
    bh = bulkhead(1, max_queue=9, clock=clock)
    reached: list[int] = []
    results = mode.run(pipeline(breaker, bh), bh, 10, failing(mode, reached))
    assert len(reached) == 3
    assert sum(isinstance(r, CircuitOpenError) for r in results) == 7


def test_an_io_backend_stops_queued_calls_after_the_breaker_opened(clock: FakeClock) -> None:
    """The breaker's path for backends doing I/O (async steps) rejects queued calls the same way."""
    breaker = circuit_breaker(failure_threshold=3, recovery_timeout=60, clock=clock, backend=Remote())
    bh = bulkhead(1, max_queue=9, clock=clock)
    reached: list[int] = []
    mode = AsyncMode(clock)
    results = mode.run(pipeline(breaker, bh), bh, 10, failing(mode, reached))
    assert len(reached) == 3
    assert sum(isinstance(r, CircuitOpenError) for r in results) == 7


def test_the_default_readmit_goes_ahead_when_nothing_moved(clock: FakeClock) -> None:
    """The default readmit() lets a call go ahead in its own generation, or once CLOSED again."""
    backend = StatsOnly()
    breaker = circuit_breaker(failure_threshold=1, recovery_timeout=10, clock=clock, backend=backend)
    permit = backend.acquire()
    assert isinstance(permit, Permit)
    assert backend.readmit(permit) is None
    breaker.isolate()
    rejection = backend.readmit(permit)
    assert rejection is not None
    assert (rejection.state, rejection.retry_after) == (CircuitState.ISOLATED, None)
    breaker.reset()
    assert backend.readmit(permit) is None


def test_io_backend_leaves_queue_time_out_of_slow_calls(clock: FakeClock) -> None:
    """With an I/O backend too, the breaker's slow-call timing leaves the queue time out."""
    breaker = circuit_breaker(
        failure_rate=1.0,
        slow_call_duration=1.5,
        slow_call_rate=0.5,
        minimum_calls=1,
        clock=clock,
        backend=Remote(),
    )
    bh = bulkhead(1, max_queue=4, clock=clock)
    AsyncMode(clock).run(pipeline(breaker, bh), bh, 5, healthy(AsyncMode(clock), 1.0))
    assert (breaker.stats().slow_calls, breaker.state) == (0, CircuitState.CLOSED)


async def hold_then_queue(guarded: Policy, bh: Bulkhead, meanwhile: Callable[[], None]) -> list[Any]:
    """One call holds the only slot while another queues; *meanwhile* runs; then the holder ends."""
    gate = asyncio.Event()

    async def body(held: bool) -> str:
        if held:
            await gate.wait()
        return "ran"

    call = guarded(body)
    holder = asyncio.create_task(call(True))
    while bh.in_use == 0:
        await asyncio.sleep(0)
    queued = asyncio.create_task(call(False))
    while bh.queued == 0:
        await asyncio.sleep(0)
    meanwhile()
    gate.set()
    return list(await asyncio.gather(holder, queued, return_exceptions=True))


async def test_a_layer_that_only_sometimes_has_a_frame_does_not_hide_the_breaker(clock: FakeClock) -> None:
    """A chaos layer between them with a frame only while it injects: queued calls are re-checked anyway."""
    injecting = [False]
    breaker = circuit_breaker(clock=clock)
    bh = bulkhead(1, max_queue=1, clock=clock)
    guarded = pipeline(breaker, chaos.latency(0.5, enabled=lambda: injecting[0], clock=clock), bh)
    for on in (False, True, False):
        injecting[0] = on
        breaker.reset()
        results = await hold_then_queue(guarded, bh, breaker.isolate)
        assert results[0] == "ran"
        assert isinstance(results[1], CircuitOpenError), on
    assert (bh.in_use, bh.queued) == (0, 0)


async def test_every_breaker_around_hears_of_the_wait_after_an_async_one(clock: FakeClock) -> None:
    """Outer breaker isolated, inner on an I/O backend: the inner is awaited, then the outer rejects."""
    outer = circuit_breaker(clock=clock)
    inner = circuit_breaker(clock=clock, backend=Remote())
    bh = bulkhead(1, max_queue=1, clock=clock)
    results = await hold_then_queue(pipeline(outer, inner, bh), bh, outer.isolate)
    assert results[0] == "ran"
    assert isinstance(results[1], CircuitOpenError)
    assert results[1].retry_after is None  # the outer (ISOLATED) breaker's rejection
    assert (inner.stats().calls, inner.state) == (0, CircuitState.CLOSED)


async def test_timing_is_corrected_for_every_breaker_around(clock: FakeClock) -> None:
    """Two slow-call breakers around one queue, the inner on an I/O backend: neither counts the queue time."""
    breakers = [
        circuit_breaker(
            failure_rate=1.0, slow_call_duration=1.5, minimum_calls=2, clock=clock, backend=backend
        )
        for backend in (MemoryBackend(), Remote())
    ]
    bh = bulkhead(1, max_queue=1, clock=clock)
    # The queued call waits 5 s; the holder is the one that took them.
    results = await hold_then_queue(pipeline(*breakers, bh), bh, lambda: clock.advance(5))
    assert results == ["ran", "ran"]
    assert [b.stats().slow_calls for b in breakers] == [1, 1]  # the holder's 5 s, not the queued call


def test_a_report_outside_any_pipeline_reaches_nobody() -> None:
    """Reporting a wait from a frame that is not a pipeline layer does nothing, then and later."""
    reporter = WaitReporter()
    assert reporter.report(1.0, None) is None
    assert reporter.report(1.0, None) is None


def test_a_queue_inside_the_dependency_is_its_own_business(clock: FakeClock) -> None:
    """A bulkhead in a pipeline the protected function calls is another call: its wait is not re-checked."""
    outer = circuit_breaker(clock=clock)
    bh = bulkhead(1, max_queue=1, clock=clock)
    release = threading.Event()

    def hold() -> None:
        with bh:
            release.wait(30)

    @bh
    def inner_dependency() -> str:
        return "inner"

    @outer
    def protected() -> str:
        outer.isolate()  # the outer breaker opens while the call runs...
        return inner_dependency()  # ...and this queues in a pipeline of its own

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    wait_until(lambda: bh.in_use == 1)

    def let_go() -> None:
        wait_until(lambda: bh.queued == 1)
        release.set()

    releaser = threading.Thread(target=let_go, daemon=True)
    releaser.start()
    assert protected() == "inner"
    holder.join(30)
    releaser.join(30)
    assert outer.state is CircuitState.ISOLATED


# --- the mechanism is general: any queueing policy can report --------------------------


class WaitingPolicy(Policy):
    """A minimal queueing policy (think: a rate limiter that waits): every call waits *seconds*."""

    kind: ClassVar[str] = "waiting"

    def __init__(self, seconds: float, clock: FakeClock, before: Callable[[], None] = lambda: None) -> None:
        self.seconds = seconds
        self.before = before
        self.name = None
        self.clock = self.fake = clock
        self.bus = EventBus()

    def wrap_sync(self, inner: SyncLayer) -> SyncLayer:
        clock = self.fake
        seconds = self.seconds
        before = self.before
        reporter = WaitReporter()

        def run(ctx: CallContext, fn: Callable[..., Any], args: Args, kwargs: Kwargs) -> Any:
            before()
            clock.sleep_blocking(seconds)
            reporter.report(seconds, ctx.operation)
            return inner(ctx, fn, args, kwargs)

        return run

    def wrap_async(self, inner: AsyncLayer) -> AsyncLayer:
        clock = self.fake
        seconds = self.seconds
        before = self.before
        reporter = WaitReporter()

        async def run(ctx: CallContext, fn: Callable[..., Any], args: Args, kwargs: Kwargs) -> Any:
            before()
            await clock.sleep(seconds)
            pending = reporter.report(seconds, ctx.operation)
            if pending is not None:
                await pending
            return await inner(ctx, fn, args, kwargs)

        return run


@pytest.fixture(params=[False, True], ids=["sync", "async"])
def run_call(request: pytest.FixtureRequest, clock: FakeClock) -> Callable[[Policy, float, bool], Any]:
    """Run one call through *policy* of a dependency taking *seconds* and failing if *fail*."""

    def sync(policy: Policy, seconds: float, fail: bool) -> Any:
        def body() -> str:
            clock.sleep_blocking(seconds)
            if fail:
                raise Down
            return "ok"

        return policy.call(body)

    def async_(policy: Policy, seconds: float, fail: bool) -> Any:
        async def body() -> str:
            await clock.sleep(seconds)
            if fail:
                raise Down
            return "ok"

        return asyncio.run(policy.call(body))

    return async_ if request.param else sync


def test_another_queueing_policy_reports_its_wait_the_same_way(
    run_call: Callable[[Policy, float, bool], Any], clock: FakeClock
) -> None:
    """A policy that waits 5 s and reports it: the breaker outside leaves the 5 s out of the call's time."""
    breaker = circuit_breaker(
        failure_rate=1.0, slow_call_duration=2, slow_call_rate=1.0, minimum_calls=1, clock=clock
    )
    assert run_call(pipeline(breaker, WaitingPolicy(5, clock)), 1, False) == "ok"
    assert (breaker.stats().slow_calls, breaker.state) == (0, CircuitState.CLOSED)


def test_another_queueing_policy_is_stopped_by_a_breaker_that_opened(
    run_call: Callable[[Policy, float, bool], Any], clock: FakeClock
) -> None:
    """A breaker isolated while the call waits in another queueing policy rejects it before the dependency."""
    breaker = circuit_breaker(clock=clock)
    with pytest.raises(CircuitOpenError) as info:
        run_call(pipeline(breaker, WaitingPolicy(1, clock, before=breaker.isolate)), 1, True)
    assert info.value.retry_after is None
    assert breaker.stats().calls == 0
