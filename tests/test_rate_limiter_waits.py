"""A rate limiter's waits reported to the policies around it: a breaker outside a limiter (issue 10, item 12).

The rate limiter's counterpart of ``tests/test_waits.py``: a call admitted by
a CLOSED breaker that then waits for its permit is checked again once it
holds it, its wait is left out of the breaker's slow-call timing, and a call
the breaker rejects then gives its permit back. Every scenario runs with
coroutines and with threads (the ``mode`` fixture), in virtual time that
only the test moves, one interval at a time, once every call waits for it.
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
    CircuitOpenError,
    CircuitState,
    RateLimiter,
    circuit_breaker,
    pipeline,
    rate_limiter,
)
from resilient._pipeline import Policy
from resilient.backends import (
    MemoryBackend,
    Permit,
    RateLimiterBackend,
    RateLimiterConfig,
    Rejection,
    Reservation,
)
from resilient.events import EventBus
from resilient.testing import FakeClock


class Down(Exception):
    """The dead dependency's failure."""


class Stepped(FakeClock):
    """Virtual time that only the test moves; it knows how many calls sleep on it right now.

    A sleeper stops counting as soon as its timer fires, before it runs again.
    """

    def __init__(self) -> None:
        super().__init__()
        self.sleepers = 0
        self._count = threading.Lock()

    def _nap(self, seconds: float, wake: Callable[[], object]) -> tuple[Any, list[bool]]:
        woken = [False]

        def fire() -> None:
            self._wake(woken)
            wake()

        with self._count:
            self.sleepers += 1
        return self.call_later(seconds, fire), woken

    def _wake(self, woken: list[bool]) -> None:
        with self._count:
            if not woken[0]:
                woken[0] = True
                self.sleepers -= 1

    async def sleep(self, seconds: float) -> None:
        """Wait until the test has advanced time by *seconds*."""
        self.sleeps.append(seconds)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def wake() -> None:
            if not fut.done():
                fut.set_result(None)

        handle, woken = self._nap(seconds, wake)
        try:
            await fut
        finally:
            handle.cancel()
            self._wake(woken)

    def sleep_blocking(self, seconds: float) -> None:
        """Block until the test has advanced time by *seconds* (30 s real guard)."""
        self.sleeps.append(seconds)
        event = threading.Event()
        handle, woken = self._nap(seconds, event.set)
        try:
            assert event.wait(30), "nobody advanced the clock"
        finally:
            handle.cancel()
            self._wake(woken)


def wait_until(predicate: Callable[[], bool]) -> None:
    """Yield the CPU until *predicate* holds (the guard only stops a hang)."""
    guard = time.monotonic() + 30
    while not predicate():
        assert time.monotonic() < guard, "condition never became true"
        os.sched_yield()


def idle(clock: Stepped, limiter: RateLimiter, unfinished: int) -> bool:
    """Whether every call left waits for time to pass: asleep on the clock, or queued behind the head."""
    return unfinished == clock.sleepers + max(limiter.queued - 1, 0)


class Mode:
    """Runs *n* calls of one dependency at once through a pipeline, as coroutines or threads.

    The first call takes the free permit and holds it until every other
    call waits for one, so all of them were admitted by the breaker while it
    was CLOSED; then time advances one interval whenever every call left
    waits for it. ``body(i)`` is the dependency, for the i-th call to reach it.
    """

    is_async: ClassVar[bool]

    def __init__(self, clock: Stepped) -> None:
        self.clock = clock

    def sleep(self, seconds: float) -> Any:
        """Spend *seconds* of virtual time in the dependency (awaitable in async mode)."""
        raise NotImplementedError

    def run(self, policy: Policy, limiter: RateLimiter, n: int, body: Callable[[int], Any]) -> list[Any]:
        """Start *n* calls at once and return each one's result or exception."""
        raise NotImplementedError


class AsyncMode(Mode):
    """Coroutines on one event loop."""

    is_async = True

    async def sleep(self, seconds: float) -> None:
        await self.clock.sleep(seconds)

    def run(self, policy: Policy, limiter: RateLimiter, n: int, body: Callable[[int], Any]) -> list[Any]:
        reached: list[int] = []
        clock = self.clock

        @policy
        async def call() -> Any:
            reached.append(len(reached))
            if len(reached) == 1:  # the first call waits until every other one waits for a permit
                while limiter.queued < n - 1:
                    await asyncio.sleep(0)
            return await body(reached[-1])

        async def main() -> list[Any]:
            tasks = [asyncio.create_task(call()) for _ in range(n)]
            for _ in range(100_000):  # (a bound, not a wait: each turn yields once)
                await asyncio.sleep(0)
                unfinished = sum(not t.done() for t in tasks)
                if not unfinished:
                    break
                if idle(clock, limiter, unfinished):
                    clock.advance(limiter.per / limiter.rate)
            return list(await asyncio.gather(*tasks, return_exceptions=True))

        return asyncio.run(main())


class ThreadMode(Mode):
    """One thread per call."""

    is_async = False

    def sleep(self, seconds: float) -> None:
        self.clock.sleep_blocking(seconds)

    def run(self, policy: Policy, limiter: RateLimiter, n: int, body: Callable[[int], Any]) -> list[Any]:
        reached: list[int] = []
        results: list[Any] = [None] * n
        done: list[int] = []
        lock = threading.Lock()

        @policy
        def call() -> Any:
            with lock:
                reached.append(len(reached))
                i = reached[-1]
            if i == 0:  # the first call waits until every other one waits for a permit
                wait_until(lambda: limiter.queued == n - 1)
            return body(i)

        def worker(i: int) -> None:
            try:
                results[i] = call()
            except Exception as exc:
                results[i] = exc
            finally:
                done.append(i)

        threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(n)]
        for t in threads:
            t.start()
        guard = time.monotonic() + 30
        while len(done) < n:
            assert time.monotonic() < guard, "the calls never finished"
            if idle(self.clock, limiter, n - len(done)):
                self.clock.advance(limiter.per / limiter.rate)
            else:
                os.sched_yield()
        for t in threads:
            t.join(timeout=30)
        return results


@pytest.fixture
def stepped() -> Stepped:
    """Virtual time moved by the test."""
    return Stepped()


@pytest.fixture(params=[AsyncMode, ThreadMode], ids=["async", "sync"])
def mode(request: pytest.FixtureRequest, stepped: Stepped) -> Mode:
    """Coroutines or threads."""
    cls: type[Mode] = request.param
    return cls(stepped)


def failing(mode: Mode, reached: list[int]) -> Callable[[int], Any]:
    """A dead dependency: it fails at once; it records each call that reached it."""
    if mode.is_async:

        async def body_async(i: int) -> None:
            reached.append(i)
            raise Down

        return body_async

    def body(i: int) -> None:
        reached.append(i)
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


def one_per_second(clock: FakeClock, **options: Any) -> RateLimiter:
    """One call per second, no burst, waits of up to a minute."""
    return rate_limiter(1, per=1, burst=1, max_wait=60, clock=clock, **options)


# --- a call that waited does not skip a breaker that opened meanwhile ------------------------


def test_waiting_calls_do_not_reach_a_dependency_the_breaker_gave_up_on(mode: Mode, stepped: Stepped) -> None:
    """Ten calls wait for permits of a dead dependency: 3 reach it, the open breaker rejects the other 7."""
    breaker = circuit_breaker(failure_threshold=3, recovery_timeout=60, clock=stepped)
    limiter = one_per_second(stepped)
    reached: list[int] = []
    results = mode.run(pipeline(breaker, limiter), limiter, 10, failing(mode, reached))
    assert len(reached) == 3
    assert sum(isinstance(r, Down) for r in results) == 3
    errors = [r for r in results if isinstance(r, CircuitOpenError)]
    assert len(errors) == 7
    # Opened at t=2 by the third failure, for 60 s; the others are rejected from t=3 on.
    assert all(e.retry_after is not None and 0 < e.retry_after <= 59 for e in errors)
    assert breaker.state is CircuitState.OPEN
    assert breaker.stats().consecutive_failures == 3
    assert limiter.queued == 0


def test_a_rejected_call_gives_its_permit_back(mode: Mode, stepped: Stepped) -> None:
    """The permits of the calls the breaker rejects on re-check return: the limiter is idle afterwards."""
    breaker = circuit_breaker(failure_threshold=1, recovery_timeout=60, clock=stepped)
    limiter = one_per_second(stepped)
    results = mode.run(pipeline(breaker, limiter), limiter, 4, failing(mode, []))
    assert sum(isinstance(r, CircuitOpenError) for r in results) == 3
    # One permit spent (t=0, the failure that opened it); each rejected call's permit returns and
    # moves the next one up, so the limiter has a permit again; had they spent theirs, it would
    # have none before t=4.
    assert stepped.monotonic() < 3
    assert limiter.available == 1


# --- queue time is not dependency time --------------------------------------------------------


def test_waiting_for_permits_does_not_make_a_healthy_dependency_slow(mode: Mode, stepped: Stepped) -> None:
    """Ten calls of a 1 s dependency wait up to 9 s for permits: none is slow, the breaker stays CLOSED."""
    breaker = circuit_breaker(
        failure_rate=0.5,
        slow_call_duration=1.5,
        slow_call_rate=0.5,
        minimum_calls=5,
        window=10,
        clock=stepped,
    )
    limiter = one_per_second(stepped)
    results = mode.run(pipeline(breaker, limiter), limiter, 10, healthy(mode, 1.0))
    assert sorted(results) == list(range(10))
    stats = breaker.stats()
    assert (stats.state, stats.calls, stats.slow_calls) == (CircuitState.CLOSED, 10, 0)


def test_a_slow_dependency_behind_a_limiter_is_still_slow(mode: Mode, stepped: Stepped) -> None:
    """Leaving the wait out does not hide real slowness: a 2 s dependency is slow however long it waited."""
    breaker = circuit_breaker(
        failure_rate=0.5, slow_call_duration=1.5, slow_call_rate=0.5, minimum_calls=3, window=3, clock=stepped
    )
    limiter = one_per_second(stepped)
    mode.run(pipeline(breaker, limiter), limiter, 3, healthy(mode, 2.0))
    stats = breaker.stats()
    assert (stats.state, stats.slow_calls) == (CircuitState.OPEN, 3)


# --- only calls that waited are checked again -------------------------------------------------


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


def test_only_calls_that_waited_are_checked_again(mode: Mode, stepped: Stepped) -> None:
    """Of five calls, the four that waited for a permit are checked again; the one with a free one is not."""
    backend = CountingBackend()
    breaker = circuit_breaker(clock=stepped, backend=backend)
    limiter = one_per_second(stepped)
    mode.run(pipeline(breaker, limiter), limiter, 5, healthy(mode, 0.0))
    assert backend.readmits == 4


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_calls_with_free_permits_are_not_checked_again(is_async: bool, clock: FakeClock) -> None:
    """Calls that find a free permit report no wait: the breaker is not asked again."""
    backend = CountingBackend()
    guarded = pipeline(circuit_breaker(clock=clock, backend=backend), rate_limiter(5, burst=5, clock=clock))

    def sync() -> int:
        return 1

    async def async_() -> int:
        return 1

    for _ in range(5):
        assert (asyncio.run(guarded.call(async_)) if is_async else guarded.call(sync)) == 1
    assert backend.readmits == 0


# --- a shared (fleet) limit: its granted waits too ---------------------------------------------


class Granting(RateLimiterBackend):
    """A shared backend that grants every call a permit after *delay* seconds (None: unreachable)."""

    def __init__(self, delay: float | None, on_reserve: Callable[[], object] = lambda: None) -> None:
        self.delay = delay
        self.on_reserve = on_reserve
        self.cancelled: list[Reservation] = []

    def bind(self, config: RateLimiterConfig, clock: Any, *, name: Any = None, bus: Any = None) -> None:
        """Nothing to bind."""

    def reserve(self, max_wait: float) -> Reservation | None:
        """Grant a permit after the delay."""
        self.on_reserve()
        return None if self.delay is None else Reservation(True, self.delay, token="t")

    def cancel(self, reservation: Reservation) -> None:
        """Note the reservation given back."""
        self.cancelled.append(reservation)


@pytest.fixture(params=[False, True], ids=["sync", "async"])
def call_once(request: pytest.FixtureRequest) -> Callable[[Any], Any]:
    """Make one call of a healthy dependency through a policy, sync or async; its result or error."""

    def run(policy: Any) -> Any:
        def sync() -> str:
            return "ran"

        async def async_() -> str:
            return "ran"

        try:
            return asyncio.run(policy.call(async_)) if request.param else policy.call(sync)
        except CircuitOpenError as exc:
            return exc

    return run


def test_a_shared_limiters_wait_is_rechecked_and_its_reservation_given_back(
    call_once: Callable[[Any], Any], clock: FakeClock
) -> None:
    """The breaker is isolated while the fleet's permit is awaited: rejected, the reservation goes back."""
    breaker = circuit_breaker(clock=clock)
    backend = Granting(2.0, on_reserve=breaker.isolate)
    limiter = rate_limiter(1, max_wait=5, backend=backend, clock=clock)
    result = call_once(pipeline(breaker, limiter))
    assert isinstance(result, CircuitOpenError)
    assert result.retry_after is None
    assert len(backend.cancelled) == 1
    assert breaker.stats().calls == 0


def test_a_shared_limiters_wait_is_not_slow_call_time(
    call_once: Callable[[Any], Any], clock: FakeClock
) -> None:
    """Two seconds waiting for the fleet's permit are left out of a 1.5 s slow-call threshold."""
    breaker = circuit_breaker(
        failure_rate=1.0, slow_call_duration=1.5, slow_call_rate=1.0, minimum_calls=1, clock=clock
    )
    backend = Granting(2.0)
    limiter = rate_limiter(1, max_wait=5, backend=backend, clock=clock)
    assert call_once(pipeline(breaker, limiter)) == "ran"
    assert (breaker.stats().slow_calls, breaker.state, backend.cancelled) == (0, CircuitState.CLOSED, [])


def test_the_local_fallback_of_a_shared_limiter_reports_its_waits(
    call_once: Callable[[Any], Any], clock: FakeClock
) -> None:
    """Shared state out of reach: a call waiting on the local state is re-checked all the same."""
    breaker = circuit_breaker(clock=clock)
    limiter = rate_limiter(1, burst=1, max_wait=5, backend=Granting(None), clock=clock)
    assert call_once(pipeline(breaker, limiter)) == "ran"  # the local permit
    breaker.isolate()
    breaker.reset()
    backend = limiter.backend
    assert isinstance(backend, Granting)
    backend.on_reserve = breaker.isolate  # isolated once the call is admitted, before its wait
    result = call_once(pipeline(breaker, limiter))
    assert isinstance(result, CircuitOpenError)
    assert clock.monotonic() == 1.0  # it waited a second for its local permit...
    assert limiter.available == 1  # ...which went back (spent, the next would be a second away)


def test_a_context_manager_reports_nothing(clock: FakeClock) -> None:
    """`with limiter:` inside `with breaker:` is no pipeline layer: its wait is not reported."""
    bus = EventBus()
    breaker = circuit_breaker(clock=clock, bus=bus)
    limiter = one_per_second(clock, bus=bus)
    with limiter:
        pass
    with breaker:
        breaker.isolate()
        with limiter:  # waits a second: nothing asks the breaker again
            pass
    assert breaker.state is CircuitState.ISOLATED


class SlowRecheck(MemoryBackend):
    """A breaker backend doing I/O (its steps awaited), whose re-check of a call waits for a gate."""

    nonblocking: ClassVar[bool] = False

    def __init__(self) -> None:
        super().__init__()
        self.entered = asyncio.Event()
        self.gate = asyncio.Event()

    async def readmit_async(self, permit: Permit) -> Rejection | None:
        """Note the re-check began, wait for the gate, then answer."""
        self.entered.set()
        await self.gate.wait()
        return await super().readmit_async(permit)


async def test_a_call_cancelled_while_the_breaker_rechecks_it_gives_its_permit_back(clock: FakeClock) -> None:
    """Cancelled after its wait, while the breaker checks it again: CancelledError, and the permit returns."""
    backend = SlowRecheck()
    breaker = circuit_breaker(clock=clock, backend=backend)
    limiter = rate_limiter(1, burst=1, max_wait=5, clock=clock)
    guarded = pipeline(breaker, limiter)

    async def ok() -> str:
        return "ran"

    assert await guarded.call(ok) == "ran"  # the permit of t=0
    task = asyncio.create_task(guarded.call(ok))  # waits a second for the next, then is re-checked
    for _ in range(100):
        if backend.entered.is_set():
            break
        await asyncio.sleep(0)
    assert backend.entered.is_set()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert clock.monotonic() == 1.0
    assert limiter.available == 1  # its permit went back
    assert (breaker.state, breaker.stats().consecutive_failures) == (CircuitState.CLOSED, 0)  # neutral
