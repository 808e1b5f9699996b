"""How ``rate_limiter`` drives a :class:`RateLimiterBackend` (shared state), with a scripted test double."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from resilient import RateLimitedError, RateLimiter, rate_limiter, timeout
from resilient.backends import RateLimiterBackend, RateLimiterConfig, Reservation
from resilient.events import EventBus, RateLimited
from resilient.testing import FakeClock, capture_events

Invoke = Callable[[RateLimiter], Awaitable[str]]


class Scripted(RateLimiterBackend):
    """A backend answering from a script of reservations (None: unreachable), recording every step."""

    def __init__(self, *answers: Reservation | None, local_share: float = 1.0) -> None:
        self.answers = list(answers)
        self.local_share = local_share
        self.bound: tuple[RateLimiterConfig, Any, str | None, EventBus | None] | None = None
        self.asked: list[float] = []
        self.cancelled: list[Reservation] = []

    def bind(
        self, config: RateLimiterConfig, clock: Any, *, name: str | None = None, bus: EventBus | None = None
    ) -> None:
        self.bound = (config, clock, name, bus)

    def reserve(self, max_wait: float) -> Reservation | None:
        self.asked.append(max_wait)
        return self.answers.pop(0)

    def cancel(self, reservation: Reservation) -> None:
        self.cancelled.append(reservation)


@pytest.fixture(params=["sync", "async"])
def invoke(request: pytest.FixtureRequest) -> Invoke:
    """Run a function under a limiter as a sync or an async function."""

    async def run(limiter: RateLimiter) -> str:
        def f() -> str:
            return "ran"

        async def g() -> str:
            return "ran"

        return limiter.call(f) if request.param == "sync" else await limiter.call(g)

    return run


def test_the_backend_is_bound_to_the_limit_name_clock_and_bus(clock: FakeClock) -> None:
    """Building the limiter binds its backend once, with the validated limit, name, clock and bus."""
    backend, bus = Scripted(), EventBus()
    rl = rate_limiter(10, per=2, burst=4, backend=backend, name="api", clock=clock, bus=bus)
    assert backend.bound == (RateLimiterConfig(rate=10.0, per=2.0, burst=4), clock, "api", bus)
    assert rl.backend is backend
    assert RateLimiterConfig(rate=10.0, per=2.0, burst=4).interval == 0.2


async def test_a_granted_reservation_runs_at_once(invoke: Invoke, clock: FakeClock) -> None:
    """A reservation granted with no delay runs the call without sleeping, asking with max_wait."""
    backend = Scripted(Reservation(True, 0.0))
    rl = rate_limiter(1, max_wait=3, backend=backend, clock=clock)
    assert await invoke(rl) == "ran"
    assert (backend.asked, clock.sleeps) == ([3.0], [])


async def test_a_delayed_reservation_sleeps_on_the_clock(invoke: Invoke, clock: FakeClock) -> None:
    """A reservation granted with a delay sleeps that long on the limiter's clock, then runs."""
    rl = rate_limiter(1, max_wait=3, backend=Scripted(Reservation(True, 1.5)), clock=clock)
    assert await invoke(rl) == "ran"
    assert clock.sleeps == [1.5]


async def test_a_refused_reservation_is_a_rejection(invoke: Invoke, clock: FakeClock) -> None:
    """A refused reservation raises RateLimitedError with its retry_after and emits RateLimited."""
    rl = rate_limiter(1, backend=Scripted(Reservation(False, 0.75)), name="api", clock=clock)
    with capture_events(RateLimited) as events, pytest.raises(RateLimitedError) as info:
        await invoke(rl)
    assert (info.value.name, info.value.retry_after) == ("api", 0.75)
    assert [e.retry_after for e in events if isinstance(e, RateLimited)] == [0.75]


async def test_an_unreachable_backend_falls_back_to_local_state(invoke: Invoke, clock: FakeClock) -> None:
    """While the backend cannot answer, the limiter decides locally with local_share of the limit."""
    rl = rate_limiter(10, backend=Scripted(*[None] * 4, local_share=0.25), clock=clock)
    assert rl.available == 2  # a quarter of the burst of 10, rounded down
    got: list[object] = []
    for _ in range(3):
        try:
            got.append(await invoke(rl))
        except RateLimitedError as exc:
            got.append(exc.retry_after)
    assert got == ["ran", "ran", pytest.approx(0.4)]  # a quarter of the rate: one per 0.4 s


async def test_the_ambient_deadline_shortens_the_wait_asked_for(clock: FakeClock) -> None:
    """Inside a timeout, the backend is asked for a wait that ends short of the deadline."""
    backend = Scripted(*[Reservation(True, 0.0)] * 3)
    rl = rate_limiter(1, max_wait=10, backend=backend, clock=clock)
    async with timeout(2, clock=clock):
        await rl.call(asyncio.sleep, 0)
    async with timeout(20, clock=clock):  # further away than max_wait: max_wait bounds the wait
        await rl.call(asyncio.sleep, 0)
    other = FakeClock()
    async with timeout(1, clock=other):
        other.advance(5)  # the deadline has passed: only a permit free right now will do
        async with rl:
            pass
    assert backend.asked == [pytest.approx(2 - 1e-6), 10.0, 0.0]


async def test_a_cancelled_sleeper_cancels_its_reservation(manual_clock: FakeClock) -> None:
    """A call cancelled while it sleeps toward its permit hands the reservation back to the backend."""
    granted = Reservation(True, 5.0, token="r1")
    backend = Scripted(granted)
    rl = rate_limiter(1, max_wait=10, backend=backend, clock=manual_clock)
    task = asyncio.create_task(rl.call(asyncio.sleep, 0))
    for _ in range(5):
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert backend.cancelled == [granted]


def test_an_interrupted_sync_sleeper_cancels_its_reservation() -> None:
    """A KeyboardInterrupt while a thread sleeps toward its permit propagates and cancels the reservation."""

    class Interrupting(FakeClock):
        def sleep_blocking(self, seconds: float) -> None:
            raise KeyboardInterrupt

    granted = Reservation(True, 5.0)
    backend = Scripted(granted)
    rl = rate_limiter(1, max_wait=10, backend=backend, clock=Interrupting())
    with pytest.raises(KeyboardInterrupt), rl:
        pass
    assert backend.cancelled == [granted]


async def test_the_async_steps_default_to_the_sync_ones() -> None:
    """A backend that implements only the sync steps works from async code."""
    granted = Reservation(True, 0.0)
    backend = Scripted(granted)
    assert await backend.reserve_async(1.0) is granted
    await backend.cancel_async(granted)
    assert backend.cancelled == [granted]
    assert repr(granted) == "Reservation(granted=True, delay=0.0)"
