"""circuit_breaker under concurrency: cancellation, probes, in-flight calls, threads."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import pytest

from resilient import CircuitBreaker, CircuitOpenError, CircuitState, circuit_breaker, timeout
from resilient.testing import FakeClock


class Boom(Exception):
    """The dependency's failure in these tests."""


def state(breaker: CircuitBreaker) -> CircuitState:
    """Read the breaker's state (a function, so mypy does not narrow it between reads)."""
    return breaker.state


def trip(breaker: CircuitBreaker) -> None:
    """Open *breaker* with failing sync calls."""
    for _ in range(breaker.config.failure_threshold):
        with pytest.raises(Boom):
            breaker.call(_boom)


def _boom() -> None:
    raise Boom


def _ok() -> str:
    return "ok"


def half_open(clock: FakeClock, **config: object) -> CircuitBreaker:
    """A breaker that has opened and whose recovery timeout has just passed."""
    breaker = circuit_breaker(failure_threshold=1, recovery_timeout=10, clock=clock, **config)  # type: ignore[arg-type]
    trip(breaker)
    clock.advance(10)
    return breaker


# --- cancellation ---------------------------------------------------------------------


async def test_cancelled_probe_frees_its_permit(clock: FakeClock) -> None:
    """A cancelled probe leaves the breaker HALF_OPEN and the next caller becomes a probe."""
    breaker = half_open(clock)
    started = asyncio.Event()

    @breaker
    async def probe() -> None:
        started.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(probe())
    await started.wait()
    with pytest.raises(CircuitOpenError):
        breaker.call(_ok)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (state(breaker), breaker.stats().probes_in_flight) == (CircuitState.HALF_OPEN, 0)
    assert breaker.call(_ok) == "ok"


async def test_cancelled_closed_calls_count_nothing(clock: FakeClock) -> None:
    """Cancelling calls in flight on a CLOSED breaker neither counts failures nor resets them."""
    breaker = circuit_breaker(failure_threshold=2, clock=clock)
    with pytest.raises(Boom):
        breaker.call(_boom)
    gate = asyncio.Event()

    @breaker
    async def slow() -> None:
        await gate.wait()

    tasks = [asyncio.create_task(slow()) for _ in range(5)]
    await asyncio.sleep(0)
    for t in tasks:
        t.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, asyncio.CancelledError) for r in results)
    assert (state(breaker), breaker.stats().consecutive_failures) == (CircuitState.CLOSED, 1)


async def test_cancellation_propagates_as_same_object(clock: FakeClock) -> None:
    """A CancelledError raised inside the breaker reaches the caller as the same object."""
    breaker = circuit_breaker(on=BaseException, clock=clock)
    error = asyncio.CancelledError()

    @breaker
    async def cancelled() -> None:
        raise error

    with pytest.raises(asyncio.CancelledError) as info:
        await cancelled()
    assert info.value is error


@pytest.mark.parametrize("make", [KeyboardInterrupt, SystemExit, GeneratorExit])
def test_control_flow_is_neutral_even_with_on_baseexception(
    clock: FakeClock, make: Callable[[], BaseException]
) -> None:
    """KeyboardInterrupt/SystemExit/GeneratorExit in a probe: same object out, permit freed, not counted."""
    breaker = half_open(clock, on=BaseException)
    error = make()

    def interrupted() -> None:
        raise error

    with pytest.raises(BaseException) as info:
        breaker.call(interrupted)
    assert info.value is error
    assert (state(breaker), breaker.stats().probes_in_flight) == (CircuitState.HALF_OPEN, 0)


def test_ignored_probe_frees_its_permit(clock: FakeClock) -> None:
    """A probe raising an ignored exception leaves HALF_OPEN and frees its permit at once."""
    breaker = half_open(clock, ignore=KeyError)

    def ignored() -> None:
        raise KeyError

    with pytest.raises(KeyError):
        breaker.call(ignored)
    assert (state(breaker), breaker.stats().probes_in_flight) == (CircuitState.HALF_OPEN, 0)
    assert breaker.call(_ok) == "ok"


def test_raising_on_predicate_frees_the_probe(clock: FakeClock) -> None:
    """If the `on` predicate itself raises, its error propagates and the probe permit is freed."""

    broken = False

    def predicate(exc: BaseException) -> bool:
        if broken:
            raise RuntimeError("bad predicate")
        return True

    breaker = half_open(clock, on=predicate)
    broken = True
    with pytest.raises(RuntimeError, match="bad predicate") as info:
        breaker.call(_boom)
    assert isinstance(info.value.__context__, Boom)
    assert (state(breaker), breaker.stats().probes_in_flight) == (CircuitState.HALF_OPEN, 0)


async def test_cancelled_async_with_block_is_neutral(clock: FakeClock) -> None:
    """Cancelling a task inside `async with breaker:` frees the probe permit."""
    breaker = half_open(clock)
    inside = asyncio.Event()

    async def block() -> None:
        async with breaker:
            inside.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(block())
    await inside.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert breaker.stats().probes_in_flight == 0


async def test_cancel_count_untouched_by_breaker(clock: FakeClock) -> None:
    """After an outside cancel lands in the breaker, the task's cancelling() count is exactly 1."""
    breaker = circuit_breaker(clock=clock)

    @breaker
    async def wait_forever() -> None:
        await asyncio.Event().wait()

    async def victim() -> int:
        try:
            await wait_forever()
        except asyncio.CancelledError:
            task = asyncio.current_task()
            assert task is not None
            return task.cancelling()
        return -1

    task = asyncio.create_task(victim())
    await asyncio.sleep(0)
    task.cancel()
    assert await task == 1


async def test_timeout_inside_is_a_failure_and_restores_cancelling(clock: FakeClock) -> None:
    """A per-attempt timeout inside the breaker counts as a failure; cancelling() is back to 0."""
    breaker = circuit_breaker(failure_threshold=1, clock=clock)

    @breaker
    @timeout(1, clock=clock)
    async def hang() -> None:
        await clock.sleep(5)

    with pytest.raises(TimeoutError):
        await hang()
    task = asyncio.current_task()
    assert task is not None
    assert (task.cancelling(), state(breaker)) == (0, CircuitState.OPEN)


# --- half-open admission -----------------------------------------------------------------


@pytest.mark.parametrize("max_calls", [1, 3])
async def test_twenty_callers_at_half_open(clock: FakeClock, max_calls: int) -> None:
    """Of 20 callers arriving together at half-open, exactly half_open_max_calls run the function."""
    breaker = half_open(clock, half_open_max_calls=max_calls)
    gate = asyncio.Event()
    ran = []

    @breaker
    async def probe(i: int) -> int:
        ran.append(i)
        await gate.wait()
        return i

    tasks = [asyncio.create_task(probe(i)) for i in range(20)]
    while sum(t.done() for t in tasks) < 20 - max_calls:
        await asyncio.sleep(0)
    gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    rejected = [r for r in results if isinstance(r, CircuitOpenError)]
    assert (len(ran), len(rejected)) == (max_calls, 20 - max_calls)
    assert state(breaker) is CircuitState.CLOSED


async def test_saturated_half_open_rejects_with_zero_retry_after(clock: FakeClock) -> None:
    """A caller refused because every probe slot is taken gets retry_after=0.0."""
    breaker = half_open(clock)
    async with breaker:
        with pytest.raises(CircuitOpenError) as info:
            breaker.call(_ok)
    assert info.value.retry_after == 0.0


async def test_probe_successes_below_threshold_keep_half_open_slots(clock: FakeClock) -> None:
    """With success_threshold=3 and one probe slot, sequential probes each get the slot."""
    breaker = half_open(clock, success_threshold=3)
    for _ in range(2):
        assert breaker.call(_ok) == "ok"
        assert state(breaker) is CircuitState.HALF_OPEN
    assert breaker.call(_ok) == "ok"
    assert state(breaker) is CircuitState.CLOSED


# --- calls in flight across transitions ----------------------------------------------------


async def test_in_flight_failures_do_not_move_open_time(clock: FakeClock) -> None:
    """Calls running when the breaker opened and failing later leave its open time unchanged."""
    breaker = circuit_breaker(failure_threshold=2, recovery_timeout=10, clock=clock)
    gate = asyncio.Event()

    @breaker
    async def slow() -> None:
        await gate.wait()
        raise Boom

    tasks = [asyncio.create_task(slow()) for _ in range(3)]
    await asyncio.sleep(0)
    trip(breaker)
    clock.advance(4)
    gate.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert breaker.stats().retry_after == 6.0


async def test_in_flight_failure_does_not_reopen_half_open(clock: FakeClock) -> None:
    """A call admitted while CLOSED that fails during HALF_OPEN does not re-open the breaker."""
    breaker = circuit_breaker(failure_threshold=1, recovery_timeout=10, clock=clock)
    gate = asyncio.Event()

    @breaker
    async def slow() -> None:
        await gate.wait()
        raise Boom

    task = asyncio.create_task(slow())
    await asyncio.sleep(0)
    trip(breaker)
    clock.advance(10)
    assert state(breaker) is CircuitState.HALF_OPEN
    gate.set()
    with pytest.raises(Boom):
        await task
    assert state(breaker) is CircuitState.HALF_OPEN
    assert (breaker.call(_ok), state(breaker)) == ("ok", CircuitState.CLOSED)


async def test_in_flight_success_does_not_close_open(clock: FakeClock) -> None:
    """A call admitted while CLOSED that succeeds after the breaker opened does not close it."""
    breaker = circuit_breaker(failure_threshold=1, clock=clock)
    gate = asyncio.Event()

    @breaker
    async def slow() -> str:
        await gate.wait()
        return "late"

    task = asyncio.create_task(slow())
    await asyncio.sleep(0)
    trip(breaker)
    gate.set()
    assert (await task, state(breaker)) == ("late", CircuitState.OPEN)


async def test_stale_probe_after_reopen_is_ignored(clock: FakeClock) -> None:
    """A probe from a HALF_OPEN period that already ended cannot close the re-opened breaker."""
    breaker = half_open(clock, half_open_max_calls=2)
    gate = asyncio.Event()

    @breaker
    async def slow_ok() -> str:
        await gate.wait()
        return "ok"

    task = asyncio.create_task(slow_ok())
    await asyncio.sleep(0)
    with pytest.raises(Boom):
        breaker.call(_boom)
    gate.set()
    await task
    assert state(breaker) is CircuitState.OPEN


# --- probes across half-open rounds (issue 10, item 10) -------------------------------------


class Probes:
    """Probes of *breaker* that run until released, counting how many run at once."""

    def __init__(self, breaker: CircuitBreaker) -> None:
        self.running = 0
        self.most = 0
        self.gates: list[asyncio.Event] = []

        @breaker
        async def probe(gate: asyncio.Event) -> str:
            self.running += 1
            self.most = max(self.most, self.running)
            try:
                await gate.wait()
            finally:
                self.running -= 1
            return "ok"

        self.probe = probe

    async def start(self) -> tuple[asyncio.Task[str], asyncio.Event]:
        """Start a call; return its task and the gate that lets it finish."""
        gate = asyncio.Event()
        task = asyncio.create_task(self.probe(gate))
        await asyncio.sleep(0)
        return task, gate


async def test_a_probe_from_an_earlier_round_still_holds_its_slot(clock: FakeClock) -> None:
    """A probe still running from the last half-open round counts: the next round admits only the rest."""
    breaker = half_open(clock, half_open_max_calls=2)
    p = Probes(breaker)
    stale, stale_gate = await p.start()
    with pytest.raises(Boom):
        breaker.call(_boom)  # the other probe fails: OPEN again, `stale` still running
    clock.advance(10)
    fresh, fresh_gate = await p.start()  # HALF_OPEN again: one slot left
    with pytest.raises(CircuitOpenError) as info:
        breaker.call(_ok)
    assert info.value.retry_after == 0.0
    assert (p.running, breaker.stats().probes_in_flight) == (2, 2)
    stale_gate.set()
    assert await stale == "ok"  # ends: its slot frees, its success counts for nothing
    assert (state(breaker), breaker.stats().probe_successes) == (CircuitState.HALF_OPEN, 0)
    assert breaker.call(_ok) == "ok"
    fresh_gate.set()
    await fresh
    assert p.most == 2


async def test_a_probe_running_across_a_reset_still_counts(clock: FakeClock) -> None:
    """reset() does not free the slot of a probe still running: the next half-open round waits for it."""
    breaker = half_open(clock)
    p = Probes(breaker)
    stale, gate = await p.start()
    breaker.reset()
    trip(breaker)
    clock.advance(10)
    with pytest.raises(CircuitOpenError):
        breaker.call(_ok)
    assert (state(breaker), p.running) == (CircuitState.HALF_OPEN, 1)
    gate.set()
    await stale
    assert breaker.call(_ok) == "ok"
    assert state(breaker) is CircuitState.CLOSED


@pytest.mark.parametrize("ending", ["failure", "ignored", "cancelled"])
async def test_a_stale_probe_frees_its_slot_however_it_ends(clock: FakeClock, ending: str) -> None:
    """A stale probe that fails, is ignored or is cancelled frees its slot and changes nothing else."""
    breaker = half_open(clock, half_open_max_calls=2, ignore=KeyError)
    gate = asyncio.Event()

    @breaker
    async def stale_probe() -> None:
        await gate.wait()
        if ending == "failure":
            raise Boom
        raise KeyError

    task = asyncio.create_task(stale_probe())
    await asyncio.sleep(0)
    with pytest.raises(Boom):
        breaker.call(_boom)
    clock.advance(10)
    assert state(breaker) is CircuitState.HALF_OPEN
    assert breaker.stats().probes_in_flight == 1
    if ending == "cancelled":
        task.cancel()
    else:
        gate.set()
    await asyncio.gather(task, return_exceptions=True)
    assert (state(breaker), breaker.stats().probes_in_flight) == (CircuitState.HALF_OPEN, 0)


def test_threads_never_run_more_probes_than_allowed_across_rounds(clock: FakeClock) -> None:
    """Threads probing through several half-open rounds never run more than half_open_max_calls at once."""
    breaker = half_open(clock, half_open_max_calls=2)
    lock = threading.Lock()
    running = [0]
    most = [0]
    release = threading.Event()

    @breaker
    def probe(fail: bool) -> None:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        try:
            if fail:
                raise Boom
            release.wait(30)
        finally:
            with lock:
                running[0] -= 1

    def call(fail: bool) -> None:
        try:
            probe(fail)
        except (Boom, CircuitOpenError):
            pass

    def settled(t: threading.Thread, before: int) -> Callable[[], bool]:
        # The thread is running its probe, or was rejected and is gone.
        return lambda: running[0] > before or not t.is_alive()

    holders: list[threading.Thread] = []
    for _ in range(5):  # each round: a blocking probe starts, a failing one re-opens the breaker
        t = threading.Thread(target=call, args=(False,), daemon=True)
        holders.append(t)
        before = running[0]
        t.start()
        wait_for(settled(t, before))
        call(True)
        clock.advance(10)
    release.set()
    for t in holders:
        t.join(30)
    assert most[0] == 2


def wait_for(predicate: Callable[[], bool]) -> None:
    """Yield until *predicate* holds (the guard only stops a hang)."""
    guard = time.monotonic() + 30
    while not predicate():
        assert time.monotonic() < guard, "condition never became true"
        time.sleep(0)


# --- threads -----------------------------------------------------------------------------------


def test_closed_breaker_never_serialises_calls(clock: FakeClock) -> None:
    """Two threads are inside the protected function at the same time."""
    breaker = circuit_breaker(clock=clock)
    both_inside = threading.Barrier(2, timeout=10)

    @breaker
    def meet() -> bool:
        both_inside.wait()  # raises BrokenBarrierError if calls were serialised
        return True

    results: list[bool] = []
    threads = [threading.Thread(target=lambda: results.append(meet())) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [True, True]


@pytest.mark.parametrize(
    "config",
    [{}, {"failure_rate": 0.5, "window": 100_000, "minimum_calls": 100_000}],
    ids=["consecutive", "count-window"],
)
def test_threads_lose_no_updates(clock: FakeClock, config: dict[str, object]) -> None:
    """8 threads x 500 failures are all counted, none lost to a race."""
    breaker = circuit_breaker(failure_threshold=100_000, clock=clock, **config)  # type: ignore[arg-type]
    start = threading.Barrier(8)

    def hammer() -> None:
        start.wait()
        for _ in range(500):
            try:
                breaker.call(_boom)
            except Boom:
                pass

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stats = breaker.stats()
    assert (stats.consecutive_failures, state(breaker)) == (4000, CircuitState.CLOSED)
    if config:
        assert (stats.calls, stats.failures) == (4000, 4000)


def test_threads_at_half_open_admit_exact_probes(clock: FakeClock) -> None:
    """Of 8 threads arriving at half-open, exactly half_open_max_calls run the function."""
    breaker = half_open(clock, half_open_max_calls=2)
    release = threading.Event()
    start = threading.Barrier(8)
    ran: list[int] = []
    rejected: list[int] = []
    lock = threading.Lock()

    @breaker
    def probe(i: int) -> None:
        with lock:
            ran.append(i)
        release.wait(10)

    def caller(i: int) -> None:
        start.wait()
        try:
            probe(i)
        except CircuitOpenError:
            with lock:
                rejected.append(i)
            if len(rejected) == 6:
                release.set()

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert (len(ran), len(rejected), state(breaker)) == (2, 6, CircuitState.CLOSED)


def test_threads_open_exactly_once(clock: FakeClock) -> None:
    """Many threads failing at once emit a single CircuitOpened."""
    from resilient import EventBus, subscribe
    from resilient.events import CircuitOpened, Event

    bus = EventBus()
    breaker = circuit_breaker(failure_threshold=3, clock=clock, bus=bus)
    opened: list[Event] = []
    start = threading.Barrier(8)

    def hammer() -> None:
        start.wait()
        for _ in range(50):
            try:
                breaker.call(_boom)
            except (Boom, CircuitOpenError):
                pass

    with subscribe(opened.append, CircuitOpened, bus=bus):
        threads = [threading.Thread(target=hammer) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert len(opened) == 1
