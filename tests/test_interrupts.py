"""A KeyboardInterrupt landing anywhere in the library's bookkeeping (issue 10, item 1).

Python raises a signal handler's exception (``KeyboardInterrupt`` on Ctrl-C)
only where the interpreter checks for pending signals: as a Python function
starts, as any call returns, and on a loop's back edge; never between two
plain stores. :class:`Interrupter` reproduces that deterministically: it
traces the library's frames instruction by instruction and raises
``KeyboardInterrupt`` at the n-th such point. Each test runs a scenario once
to count the points, then once per point with the interrupt there, and
checks that the library is left consistent: no lock held, no slot, waiter or
probe permit lost, and later calls from other threads admitted. Every
scenario runs in its own thread and every wait is bounded: a lock left held
fails the test instead of hanging it.
"""

from __future__ import annotations

import asyncio
import dis
import functools
import gc
import logging
import os
import queue
import sys
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from types import CodeType, FrameType
from typing import Any

import pytest

import resilient
from resilient import (
    Bulkhead,
    BulkheadFullError,
    CircuitBreaker,
    CircuitOpenError,
    CircuitState,
    Subscription,
)
from resilient._events import EXPLICIT_ONLY
from resilient.events import BackendRecovered, CallSucceeded, CircuitOpened, Event, RetryScheduled
from resilient.testing import FakeClock, capture_events

LIBRARY_PATH = Path(resilient.__file__).parent
_CALLS = frozenset({"PRECALL", "CALL", "CALL_KW", "CALL_FUNCTION_EX"})
_RETURNS = frozenset(dis.opmap[name] for name in ("RETURN_VALUE", "RETURN_CONST") if name in dis.opmap)


def _region(entries: list[Any], offset: int) -> tuple[int, int] | None:
    for entry in entries:
        if entry.start <= offset < entry.end:
            return entry.target, entry.depth
    return None


class _Points:
    """Where a code object can be interrupted: after each call, at loop back edges, at its start.

    An interrupt after a call is raised where the call returns. That is the
    next instruction, except after ``return f()`` inside ``try`` or ``with``:
    the next instruction there is the inlined clean-up, outside the region
    whose handler the real interrupt reaches, so such a point is raised from
    the profiler as the callee returns instead (see ``Interrupter``).
    """

    __slots__ = ("as_it_returns", "next_to", "resume")

    def __init__(self, code: CodeType, skip_start: bool) -> None:
        instructions = list(dis.get_instructions(code))
        entries: list[Any] = dis.Bytecode(code).exception_entries  # type: ignore[attr-defined]
        #: offset -> the offset whose execution right after it is a point.
        self.next_to: dict[int, int] = {}
        self.as_it_returns: set[int] = set()
        self.resume: set[int] = set()
        for i, ins in enumerate(instructions):
            if ins.opname in _CALLS and ins.opname != "PRECALL" and i + 1 < len(instructions):
                after = instructions[i + 1].offset
                if _region(entries, ins.offset) == _region(entries, after):
                    self.next_to[ins.offset] = after
                else:
                    self.as_it_returns.add(ins.offset)
                    if instructions[i - 1].opname == "PRECALL":
                        self.as_it_returns.add(instructions[i - 1].offset)
            elif ins.opname == "JUMP_BACKWARD":
                self.next_to[ins.offset] = ins.argval
            elif ins.opname == "RESUME" and ins.arg is not None:
                where = ins.arg & 3  # 0: the function starts, 1: after a yield (2, 3: yield from, await)
                if where == 1 or (where == 0 and not skip_start):
                    self.resume.add(ins.offset)


_POINTS: dict[tuple[CodeType, bool], _Points] = {}


class Interrupter:
    """Raise KeyboardInterrupt at the *at*-th interrupt point in library frames of this thread.

    Instructions are traced (``sys.settrace``) for starts, back edges and
    the return of most calls; ``sys.setprofile`` reports the calls whose
    interrupt must be raised as the callee returns (see :class:`_Points`).

    Args:
        at: Which point (1-based); None only counts them.
        modules: The library files (relative to the package) whose frames
            are interrupted.
        skip_start: Names of library functions whose start is not a point
            (a context manager's ``__exit__``: nothing can protect its first
            instruction, see ``_bulkhead_slots``).
    """

    def __init__(
        self, at: int | None, modules: frozenset[str], skip_start: frozenset[str] = frozenset()
    ) -> None:
        self.at = at
        self.files = frozenset(str(LIBRARY_PATH / m) for m in modules)
        self.skip_start = skip_start
        self.count = 0
        self.where = ""
        self._fired = False

    def __enter__(self) -> Interrupter:
        self._previous = sys.gettrace()
        sys.settrace(self._call)
        sys.setprofile(self._profile)
        return self

    def __exit__(self, *exc: object) -> None:
        sys.setprofile(None)
        sys.settrace(self._previous)

    def _points_of(self, code: CodeType) -> _Points:
        key = (code, code.co_name in self.skip_start)
        points = _POINTS.get(key)
        if points is None:
            points = _POINTS[key] = _Points(*key)
        return points

    def _hit(self, frame: FrameType) -> None:
        self.count += 1
        if self.count == self.at:
            self._fired = True
            self.where = f"{Path(frame.f_code.co_filename).name}:{frame.f_lineno} in {frame.f_code.co_name}"
            raise KeyboardInterrupt(self.where)

    def _call(self, frame: FrameType, event: str, arg: object) -> Any:
        if self._fired or frame.f_code.co_filename not in self.files:
            return None
        points = self._points_of(frame.f_code)
        if frame.f_lasti in points.resume:
            self._hit(frame)  # the frame starts (or resumes after a yield) at its RESUME
        # Python 3.12+ delivers opcode events only if f_trace is set first, and
        # none at all once line events are turned off: leave those on.
        tracer = frame.f_trace = self._tracer(points.next_to, frame.f_lasti)
        frame.f_trace_opcodes = True
        return tracer

    def _tracer(self, next_to: dict[int, int], last: int) -> Callable[[FrameType, str, object], Any]:
        """The local trace function of one frame (its state in closure cells: the fastest)."""
        hit = self._hit

        def step(frame: FrameType, event: str, arg: object) -> Any:
            nonlocal last
            if event == "opcode":
                offset = frame.f_lasti
                if next_to.get(last) == offset and not self._fired:
                    last = offset
                    hit(frame)
                last = offset
            return step

        return step

    def _profile(self, frame: FrameType, event: str, arg: object) -> None:
        if self._fired:
            return
        if event == "c_return":
            caller: FrameType | None = frame
        elif event == "return" and frame.f_code.co_code[frame.f_lasti] in _RETURNS:
            caller = frame.f_back  # a normal return (not a yield, not an exception unwinding)
        else:
            return
        if (
            caller is not None
            and caller.f_code.co_filename in self.files
            and caller.f_lasti in self._points_of(caller.f_code).as_it_returns
        ):
            self._hit(caller)


def in_thread(fn: Callable[[], None], seconds: float = 5) -> bool:
    """Run *fn* in a daemon thread; False if it did not finish in time (a lock left held, say)."""
    t = threading.Thread(target=fn, daemon=True)
    t.start()
    t.join(seconds)
    return not t.is_alive()


class Worker:
    """A thread that runs scenarios one after another (starting a thread per run is slow)."""

    def __init__(self) -> None:
        self.jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self.done: queue.SimpleQueue[bool] = queue.SimpleQueue()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        sys.settrace(None)  # see sweep(): no coverage tracer beside the Interrupter
        while (job := self.jobs.get()) is not None:
            job()
            self.done.put(True)

    def run(self, job: Callable[[], None], seconds: float = 5) -> bool:
        """Run *job* on the worker; False if it did not finish in time (the worker is then lost)."""
        self.jobs.put(job)
        try:
            return self.done.get(timeout=seconds)
        except queue.Empty:
            return False

    def stop(self) -> None:
        """Let the thread end."""
        self.jobs.put(None)


def _trace_every_thread(trace: Any) -> None:
    """Set the trace function of every thread (3.12+) or of this one, and of threads started later."""
    if sys.version_info >= (3, 12):
        threading.settrace_all_threads(trace)
    else:
        sys.settrace(trace)
        threading.settrace(trace)


def sweep(
    modules: frozenset[str],
    make: Callable[[], Any],
    scenario: Callable[[Any], None],
    static: Callable[[Any], str | None],
    functional: Callable[[Any], str | None],
    skip_start: frozenset[str] = frozenset(),
) -> None:
    """Interrupt *scenario* at each of its points in turn; fail listing every point a check objects to.

    The scenario runs on a worker thread; the checks run on this one, so
    they are calls from another thread.

    Args:
        modules: The library files whose frames are interrupted.
        make: Builds a fresh subject (what a scenario uses).
        scenario: Uses the subject, with the interrupter on.
        static: What is wrong with the subject's state afterwards, or None;
            it changes nothing, and is asked again after a garbage
            collection (a permit the interrupted call dropped may sit in a
            reference cycle with its traceback until then).
        functional: Whether later calls are admitted; asked once *static*
            is satisfied, so it never blocks (it may change the subject).
        skip_start: See :class:`Interrupter`.
    """
    # Coverage's tracer is paused meanwhile, in every thread: CPython 3.12.1
    # crashes (a segfault in the async bulkhead sweep) when a trace function
    # stays on in another thread while this one traces opcode events.
    previous_trace, threads_trace = sys.gettrace(), threading.gettrace()
    _trace_every_thread(None)
    worker = Worker()
    # A task that an interrupt ended logs "exception was never retrieved" when it is collected.
    asyncio_logger = logging.getLogger("asyncio")
    asyncio_logger.disabled = True

    def run(at: int | None) -> tuple[Interrupter, str | None]:
        nonlocal worker
        subject = make()
        interrupter = Interrupter(at, modules, skip_start)

        def job() -> None:
            try:
                with interrupter:
                    scenario(subject)
            except KeyboardInterrupt:
                pass

        if not worker.run(job):
            worker = Worker()
            return interrupter, "the scenario hung"
        problem = static(subject)
        for generation in (0, 1, 2):  # the young generations are cheap, and usually enough
            if problem is None:
                break
            gc.collect(generation)
            problem = static(subject)
        return interrupter, problem or functional(subject)

    try:
        # Counted twice: Python 3.12.1 sends opcode events only from the second
        # traced run of a code object on.
        run(None)
        counted, problem = run(None)
        assert problem is None, f"uninterrupted: {problem}"
        assert counted.count > 5, "the scenario never reached the library"
        failures = []
        with warnings.catch_warnings():
            # An interrupt between creating a coroutine and awaiting it leaves it never awaited.
            warnings.simplefilter("ignore", RuntimeWarning)
            for at in range(1, counted.count + 1):
                interrupter, problem = run(at)
                if problem is not None:
                    failures.append(f"interrupted at point {at} ({interrupter.where}): {problem}")
            gc.collect()
    finally:
        worker.stop()
        asyncio_logger.disabled = False
        _trace_every_thread(previous_trace)
        threading.settrace(threads_trace)
    assert not failures, "\n".join(failures)


def no_check(subject: object) -> None:
    """No functional check (the static one says it all)."""


def wait_until(predicate: Callable[[], bool], seconds: float = 2) -> bool:
    """Yield until *predicate* holds; False if it did not within *seconds*."""
    guard = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > guard:
            return False
        os.sched_yield()
    return True


# --- bulkhead ------------------------------------------------------------------------------

BULKHEAD = frozenset({"_bulkhead.py", "_bulkhead_slots.py", "_waits.py"})
BULKHEAD_EXITS = frozenset({"__exit__", "__aexit__"})


def bulkhead_state(bh: Bulkhead) -> str | None:
    """What is wrong with an idle bulkhead: a held lock, a slot or waiter left behind."""
    if not bh._lock.acquire(timeout=1):
        return "its lock is held"
    bh._lock.release()
    if (bh.in_use, bh.queued) != (0, 0):
        return f"in_use={bh.in_use} queued={bh.queued} after every call ended"
    if any(w.state in (1, 2) for w in bh._queue):
        return "a waiter is left in the queue"
    return None


def bulkhead_admits(bh: Bulkhead) -> str | None:
    """Whether another thread can take every slot at once (asked once no slot is taken: it never waits)."""

    taken = 0

    def take(n: int) -> None:
        nonlocal taken
        if n:
            with bh:
                taken += 1
                take(n - 1)

    try:
        take(bh.max_concurrent)
    except BulkheadFullError:
        pass
    if taken != bh.max_concurrent:
        return f"another thread could take {taken} of {bh.max_concurrent} slots"
    return None


def make_async_bulkhead() -> Bulkhead:
    """Two slots, a queue of three, a five-second queue timeout, in virtual time."""
    return resilient.bulkhead(2, max_queue=3, queue_timeout=5, clock=FakeClock())


def async_bulkhead_scenario(bh: Bulkhead) -> None:
    """Calls that run, queue, are handed slots, time out, are cancelled, are rejected; also `async with`."""
    clock: FakeClock = bh.clock  # type: ignore[assignment]

    async def main() -> None:
        gate = asyncio.Event()

        async def hold() -> None:
            await gate.wait()

        async def block() -> None:
            async with bh:
                await gate.wait()

        holders = [asyncio.create_task(bh.call(hold)), asyncio.create_task(block())]
        await asyncio.sleep(0)
        expiring = asyncio.create_task(bh.call(hold))  # queued at t=0: times out at t=5
        await asyncio.sleep(0)
        clock.advance(3)
        waiters = [asyncio.create_task(bh.call(hold)), asyncio.create_task(block())]
        await asyncio.sleep(0)
        with pytest.raises(BulkheadFullError):
            await bh.call(hold)
        clock.advance(2.5)
        waiters[1].cancel()
        gate.set()
        await asyncio.gather(*holders, expiring, *waiters, return_exceptions=True)

    asyncio.run(main())


def test_an_interrupt_anywhere_in_an_async_bulkhead_loses_nothing() -> None:
    """Coroutines: an interrupt at any point leaves the lock free, no slot taken, room for every thread."""
    sweep(
        BULKHEAD,
        make_async_bulkhead,
        async_bulkhead_scenario,
        bulkhead_state,
        bulkhead_admits,
        BULKHEAD_EXITS,
    )


def make_sync_bulkhead() -> Bulkhead:
    """One slot, a queue of one."""
    return resilient.bulkhead(1, max_queue=1)


def sync_bulkhead_scenario(bh: Bulkhead) -> None:
    """This thread and a helper thread hand the slot back and forth: each queues while the other holds it."""
    done = threading.Event()

    def until_queued() -> None:
        # The caller holds the slot until the other thread waits for it (or is gone).
        wait_until(lambda: bh._queued == 1 or done.is_set())

    def helper_calls() -> None:
        bh.call(until_queued)
        bh.call(until_queued)

    helper = threading.Thread(target=helper_calls, daemon=True)

    def first() -> None:
        helper.start()
        until_queued()

    try:
        bh.call(first)  # a free slot; on return it goes to the helper's first call, queued
        bh.call(until_queued)  # queues; handed the slot; hands it on to the helper's second call
        with bh:  # queues again, and is handed the slot back
            pass
    finally:
        done.set()
        if helper.ident is not None:
            helper.join(5)


def test_an_interrupt_anywhere_in_a_sync_bulkhead_loses_nothing() -> None:
    """Threads: an interrupt at any point leaves the lock free, no slot taken, no waiter stranded."""
    sweep(
        BULKHEAD, make_sync_bulkhead, sync_bulkhead_scenario, bulkhead_state, bulkhead_admits, BULKHEAD_EXITS
    )


# --- circuit breaker and its in-memory backend ----------------------------------------------

BREAKER = frozenset(
    {"_breaker.py", "_breaker_core.py", "_breaker_stats.py", "backends/memory.py", "backends/_base.py"}
)


class Boom(Exception):
    """A failure of the dependency."""


def breaker_state(breaker: CircuitBreaker) -> str | None:
    """What is wrong with an idle breaker: a held lock, an incoherent state, a probe slot never freed."""
    backend: Any = breaker.backend
    if not backend._lock.acquire(timeout=1):
        return "its backend's lock is held"
    backend._lock.release()
    state = backend._state
    if (backend._closed_permit is None) != (state is not CircuitState.CLOSED):
        return f"{state.name} with closed permit {backend._closed_permit}"
    if backend.waiters_admitted != (state is CircuitState.CLOSED):
        return f"{state.name} with waiters_admitted={backend.waiters_admitted}"
    quiet = backend.quiet_permit
    if quiet is not None and (quiet is not backend._closed_permit or backend._consecutive):
        return f"a quiet permit {quiet} while {state.name} with {backend._consecutive} failures"
    if breaker.stats().probes_in_flight:
        return f"{breaker.stats().probes_in_flight} probes still hold a slot after every call ended"
    return None


def breaker_admits(breaker: CircuitBreaker) -> str | None:
    """Whether a new half-open round admits half_open_max_calls probes at once (from another thread)."""
    breaker.reset()
    clock: FakeClock = breaker.clock  # type: ignore[assignment]
    while breaker.state is CircuitState.CLOSED:
        with pytest.raises(Boom):
            breaker.call(_boom)
    clock.advance(breaker.config.recovery_timeout)
    admitted: list[int] = []

    def probe(n: int) -> None:
        admitted.append(n)
        if n > 1:
            breaker.call(probe, n - 1)  # probes nested: all of them run at once

    probes = breaker.config.half_open_max_calls
    breaker.call(probe, probes)
    if len(admitted) != probes:
        return f"{len(admitted)} of {probes} probes could run at once"
    return None


def _boom() -> None:
    raise Boom


def _ok() -> str:
    """Succeed."""
    return "ok"


def make_breaker() -> CircuitBreaker:
    """Consecutive mode, two probes, in virtual time."""
    return resilient.circuit_breaker(
        failure_threshold=2, recovery_timeout=10, half_open_max_calls=2, clock=FakeClock()
    )


def make_rate_breaker() -> CircuitBreaker:
    """Failure-rate and slow-call modes over a time window, two probes."""
    return resilient.circuit_breaker(
        failure_rate=0.5,
        slow_call_duration=1,
        minimum_calls=2,
        window_seconds=60,
        recovery_timeout=10,
        half_open_max_calls=2,
        success_threshold=2,
        clock=FakeClock(),
    )


def sync_breaker_scenario(breaker: CircuitBreaker) -> None:
    """Successes, failures that open it, rejections, probes across two half-open rounds, isolate, reset."""
    clock: FakeClock = breaker.clock  # type: ignore[assignment]

    def attempt(fn: Callable[[], Any]) -> None:
        try:
            breaker.call(fn)
        except (Boom, CircuitOpenError):
            pass

    attempt(_ok)
    attempt(_boom)
    attempt(_ok)
    attempt(_boom)
    attempt(_boom)
    attempt(_ok)  # rejected while OPEN
    clock.advance(10)

    def outer_probe() -> None:
        attempt(_boom)  # a second probe, nested: it fails and re-opens the breaker
        clock.advance(10)
        attempt(_ok)  # a probe of the next round, while this one (now stale) still runs

    attempt(outer_probe)
    attempt(_ok)
    breaker.stats()
    breaker.isolate()
    breaker.reset()
    with breaker:
        pass


@pytest.mark.parametrize("make", [make_breaker, make_rate_breaker], ids=["consecutive", "rate"])
def test_an_interrupt_anywhere_in_a_sync_breaker_loses_nothing(make: Callable[[], CircuitBreaker]) -> None:
    """An interrupt at any point leaves the backend's lock free, its state coherent, no probe slot taken."""
    sweep(BREAKER, make, sync_breaker_scenario, breaker_state, breaker_admits, frozenset({"__exit__"}))


def async_breaker_scenario(breaker: CircuitBreaker) -> None:
    """Probes as concurrent tasks across two half-open rounds, cancellation included."""
    clock: FakeClock = breaker.clock  # type: ignore[assignment]

    async def main() -> None:
        gate = asyncio.Event()

        @breaker
        async def slow(fail: bool) -> None:
            await gate.wait()
            if fail:
                raise Boom

        @breaker
        async def now(fail: bool) -> None:
            if fail:
                raise Boom

        for fail in (False, True, True):
            await asyncio.gather(now(fail), return_exceptions=True)
        clock.advance(10)
        stale = asyncio.create_task(slow(False))
        cancelled = asyncio.create_task(slow(False))
        await asyncio.sleep(0)
        cancelled.cancel()
        await asyncio.gather(cancelled, return_exceptions=True)
        await asyncio.gather(now(True), return_exceptions=True)  # a probe fails: OPEN again
        clock.advance(10)
        fresh = asyncio.create_task(slow(False))
        await asyncio.sleep(0)
        gate.set()
        await asyncio.gather(stale, fresh, return_exceptions=True)

    asyncio.run(main())


@pytest.mark.parametrize("make", [make_breaker, make_rate_breaker], ids=["consecutive", "rate"])
def test_an_interrupt_anywhere_in_an_async_breaker_loses_nothing(make: Callable[[], CircuitBreaker]) -> None:
    """Coroutines: an interrupt at any point leaves the breaker coherent and no probe slot taken."""
    sweep(BREAKER, make, async_breaker_scenario, breaker_state, breaker_admits)


# --- a breaker outside a bulkhead: the re-check after a wait --------------------------------


def make_guarded() -> tuple[CircuitBreaker, Bulkhead]:
    """A breaker outside a one-slot bulkhead, in virtual time."""
    clock = FakeClock()
    return (
        resilient.circuit_breaker(failure_threshold=2, recovery_timeout=10, clock=clock),
        resilient.bulkhead(1, max_queue=3, clock=clock),
    )


def guarded_scenario(subject: tuple[CircuitBreaker, Bulkhead]) -> None:
    """Four calls queue behind a dependency that fails: two fail, the breaker opens, two are rejected."""
    breaker, bh = subject
    clock: FakeClock = breaker.clock  # type: ignore[assignment]

    @resilient.pipeline(breaker, bh)
    async def call() -> None:
        await clock.sleep(1)
        raise Boom

    async def main() -> None:
        await asyncio.gather(*(call() for _ in range(4)), return_exceptions=True)

    asyncio.run(main())


def test_an_interrupt_anywhere_in_a_breaker_around_a_bulkhead_loses_nothing() -> None:
    """The re-check of queued calls survives an interrupt anywhere: both policies are left consistent."""
    sweep(
        BULKHEAD | BREAKER,
        make_guarded,
        guarded_scenario,
        lambda s: bulkhead_state(s[1]) or breaker_state(s[0]),
        lambda s: bulkhead_admits(s[1]) or breaker_admits(s[0]),
    )


# --- the event bus: subscribe, unsubscribe, clear -----------------------------------------

BUS = frozenset({"_events.py", "_event_runs.py"})
# Nothing protects the first instruction of a subscription's __enter__/__exit__ (the gap
# of anything returning its own undo, as for set_testing below).
BUS_ENTRY_EXIT = frozenset({"__enter__", "__exit__"})
CHECKED_TYPES = (CallSucceeded, CircuitOpened, BackendRecovered, RetryScheduled)


class Recorder:
    """A sync handler that notes its name in a shared log for every event."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.name = name
        self.log = log

    def __call__(self, event: Event) -> None:
        self.log.append(self.name)


class BusSubject:
    """A bus, the subscriptions its callers got, what sync handlers saw, and a pipeline call on it."""

    def __init__(self) -> None:
        self.bus = resilient.EventBus()
        self.got: list[Subscription] = []
        self.log: list[str] = []
        self.call = resilient.pipeline(resilient.fallback(None, bus=self.bus), bus=self.bus)(_ok)


async def _later(event: Event) -> None:
    """An async handler (subscribed outside a loop: its runs wait for a drain)."""


def make_bus() -> BusSubject:
    """A bus with an async subscription (three runs waiting), and a pipeline that knows nobody observes it."""
    subject = BusSubject()
    subject.call()  # the pipeline now caches "nobody observes these calls"
    subject.got.append(subject.bus.subscribe(_later, BackendRecovered))
    for _ in range(3):
        subject.bus.emit(BackendRecovered(policy="test", name=None, operation=None, time=0.0, backend="b"))
    return subject


def bus_scenario(subject: BusSubject) -> None:
    """Subscriptions made and ended every way: methods, the module function, `with`, capture_events, clear."""
    bus, got, log, call = subject.bus, subject.got, subject.log, subject.call
    got.append(bus.subscribe(Recorder("a", log), CallSucceeded))
    call()
    with bus.subscribe(Recorder("b", log)) as sub:
        got.append(sub)
        call()
    got.append(resilient.subscribe(Recorder("c", log), CallSucceeded, bus=bus))
    with capture_events(CallSucceeded, bus=bus):
        call()
    got[1].unsubscribe()
    got[0].unsubscribe()  # the async one: its waiting runs are forgotten
    got.append(bus.subscribe(Recorder("d", log), CircuitOpened))
    bus.clear()
    call()  # nobody observes the pipeline again
    got.append(bus.subscribe(Recorder("e", log), CallSucceeded))


def listeners(registered: list[Any], cls: type) -> tuple[Any, ...]:
    """Who should hear of an event of *cls* (a catch-all ``Event`` subscription misses explicit-only ones)."""
    if issubclass(cls, EXPLICIT_ONLY):
        return tuple(s for s in registered if any(issubclass(cls, t) and t is not Event for t in s.types))
    return tuple(s for s in registered if issubclass(cls, s.types))


def bus_state(subject: BusSubject) -> str | None:
    """A held lock, a handler nobody can unsubscribe, a stale answer of wants(), runs of a gone handler."""
    bus = subject.bus
    if not bus._lock.acquire(timeout=1):
        return "its lock is held"
    bus._lock.release()
    registered = list(bus._subs)
    held = [s._sub for s in subject.got]
    for sub in registered:
        if not any(sub is h for h in held):
            return f"{sub.handler!r} is registered, but no caller got its Subscription"
    for s in subject.got:
        if s.active != any(s._sub is r for r in registered):
            return f"a Subscription says active={s.active}, registered={not s.active}"
    for cls, cached in list(bus._cache.items()):
        if cached != listeners(registered, cls):
            return f"the cached listeners of {cls.__name__} are stale"
    for cls in CHECKED_TYPES:
        if bus.wants(cls) != bool(listeners(registered, cls)):
            return f"wants({cls.__name__}) disagrees with the subscriptions"
    runs = bus._runs
    if bus.pending != len(runs._homeless) or not all(sub.active for sub, _ in runs._homeless):
        return (
            f"{bus.pending} runs pending, {len(runs._homeless)} waiting, of handlers still subscribed or not"
        )
    return None


def bus_delivers(subject: BusSubject) -> str | None:
    """Whether a pipeline call's CallSucceeded reaches exactly the handlers subscribed to it."""
    subject.log.clear()
    subject.call()
    expected = sorted(
        s.handler.name
        for s in subject.bus._subs
        if isinstance(s.handler, Recorder) and issubclass(CallSucceeded, s.types)
    )
    if sorted(subject.log) != expected:
        return f"a pipeline call reached {sorted(subject.log)}, subscribed: {expected}"
    return None


def test_an_interrupt_anywhere_in_subscribing_leaves_the_bus_coherent() -> None:
    """An interrupt in subscribe/unsubscribe/clear: no handler left registered that nobody can unsubscribe."""
    sweep(BUS, make_bus, bus_scenario, bus_state, bus_delivers, BUS_ENTRY_EXIT)


# --- the test aids --------------------------------------------------------------------------


def make_clock() -> tuple[FakeClock, list[int], list[tuple[int, Any]]]:
    """A fake clock, the list its timers append to, and the timers scheduled (with their handles)."""
    return FakeClock(), [], []


def clock_scenario(subject: tuple[FakeClock, list[int], list[tuple[int, Any]]]) -> None:
    """Timers at 1..6 s, one cancelled, fired by advances and blocking sleeps."""
    clock, fired, scheduled = subject
    for i in range(1, 7):
        scheduled.append((i, clock.call_later(i, functools.partial(fired.append, i))))
    scheduled[2][1].cancel()
    clock.advance(2.5)
    clock.sleep_blocking(1)
    clock.advance(10)


def clock_state(subject: tuple[FakeClock, list[int], list[tuple[int, Any]]]) -> str | None:
    """A held lock, or a timer fired twice, or never fired (nor cancelled) once time has passed it."""
    clock, fired, scheduled = subject
    if not clock._lock.acquire(timeout=1):
        return "its lock is held"
    clock._lock.release()
    clock.advance(100)
    if len(fired) != len(set(fired)):
        return f"a timer fired twice: {fired}"
    lost = [i for i, handle in scheduled if not handle.cancelled and i not in fired]
    return f"timers never fired: {lost}" if lost else None


def test_an_interrupt_anywhere_in_a_fake_clock_loses_no_timer() -> None:
    """An interrupt in FakeClock's bookkeeping neither loses a timer nor fires one twice."""
    sweep(frozenset({"_fakeclock.py"}), make_clock, clock_scenario, clock_state, no_check)


def mode_off() -> None:
    """Start with test mode off."""
    resilient.set_testing(False)


def config_scenario(_: None) -> None:
    """Test mode switched on and off, directly and as a context manager."""
    with resilient.set_testing(True):
        resilient.set_testing(False)
        resilient.set_testing(True)


def config_state(_: None) -> str | None:
    """A held lock, or test mode left on after the scenario."""
    from resilient._config import _lock, is_testing

    if not _lock.acquire(timeout=1):
        return "its lock is held"
    _lock.release()
    return "test mode left on" if is_testing() else None


def test_an_interrupt_in_the_test_mode_switch_leaves_it_off() -> None:
    """An interrupt inside set_testing() undoes the switch it made.

    Not covered: one landing between set_testing() returning and the block
    starting (as the caller's call returns, or as ``__enter__`` starts), the
    gap of any function that returns its own undo; nor one as ``__exit__``
    starts.
    """
    try:
        sweep(
            frozenset({"_config.py"}),
            mode_off,
            config_scenario,
            config_state,
            no_check,
            frozenset({"__enter__", "__exit__"}),
        )
    finally:
        resilient.set_testing(False)


# --- an interrupt while waiting for the lock --------------------------------------------------


class InterruptedWait:
    """The bulkhead's lock, except that this thread's *n*-th acquire() is interrupted while it waits.

    A blocking ``acquire()`` that a signal interrupts raises without taking
    the lock; the sweeps above cannot produce that (nothing else holds the
    lock there), so this stands in for it.
    """

    def __init__(self, lock: Any, n: int) -> None:
        self.lock = lock
        self.n = n
        self.calls = 0
        self.thread = threading.get_ident()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        if threading.get_ident() == self.thread:
            self.calls += 1
            if self.calls == self.n:
                raise KeyboardInterrupt  # as a signal would, before the lock is taken
        return bool(self.lock.acquire(blocking, timeout))

    def release(self) -> None:
        self.lock.release()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def interrupt_nth_acquire(bh: Bulkhead, n: int) -> None:
    """Make this thread's n-th acquisition of *bh*'s lock raise KeyboardInterrupt (set before any call)."""
    bh._lock = InterruptedWait(bh._lock, n)  # type: ignore[assignment]


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_a_slot_is_given_back_even_if_waiting_for_the_lock_is_interrupted(is_async: bool) -> None:
    """A call whose release is interrupted while waiting for the lock still gives its slot to the waiter."""
    bh = resilient.bulkhead(1, max_queue=1)
    interrupt_nth_acquire(bh, 2)  # the 1st takes the slot, the 2nd would give it back
    ran: list[str] = []

    def queue_behind() -> None:
        wait_until(lambda: bh._queued == 1)

    waiter = threading.Thread(target=lambda: bh.call(lambda: ran.append("waiter")), daemon=True)
    if is_async:

        async def first() -> None:
            waiter.start()
            queue_behind()

        with pytest.raises(KeyboardInterrupt):
            asyncio.run(bh.call(first))
    else:

        def first_sync() -> None:
            waiter.start()
            queue_behind()

        with pytest.raises(KeyboardInterrupt):
            bh.call(first_sync)
    waiter.join(5)
    assert ran == ["waiter"]
    assert bulkhead_state(bh) is None
