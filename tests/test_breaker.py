"""circuit_breaker: the state machine, classification, object API and events."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import pytest

import resilient
from resilient import (
    BulkheadFullError,
    CircuitBreaker,
    CircuitOpenError,
    CircuitState,
    EventBus,
    TimeoutExceededError,
    circuit_breaker,
    retry,
)
from resilient.backoff import linear
from resilient.events import (
    CircuitClosed,
    CircuitHalfOpened,
    CircuitIsolated,
    CircuitOpened,
    CircuitRejected,
    CircuitStateChanged,
    Event,
    TimeoutElapsed,
)
from resilient.testing import FakeClock

Runner = Callable[..., Coroutine[Any, Any, Any]]


class Boom(Exception):
    """The dependency's failure in these tests."""


@pytest.fixture(params=["async", "sync"])
def run(request: pytest.FixtureRequest) -> Runner:
    """Run one call through a breaker, as a coroutine function or a sync function.

    ``await run(breaker, outcome)`` returns *outcome*, or raises it if it is an exception.
    """
    is_async = request.param == "async"

    async def runner(breaker: CircuitBreaker, outcome: object = "ok") -> Any:
        def body() -> object:
            if isinstance(outcome, BaseException):
                raise outcome
            return outcome

        if is_async:

            async def call() -> object:
                return body()

            return await breaker.call(call)
        return breaker.call(body)

    return runner


async def fail(run: Runner, breaker: CircuitBreaker, times: int, exc: type[Exception] = Boom) -> None:
    """Make *times* calls that raise *exc*."""
    for _ in range(times):
        with pytest.raises(exc):
            await run(breaker, exc())


def state(breaker: CircuitBreaker) -> CircuitState:
    """Read the breaker's state (a function, so mypy does not narrow it between reads)."""
    return breaker.state


def transitions(events: list[Event]) -> list[tuple[CircuitState, CircuitState]]:
    """The (previous, state) pairs of the state-change events."""
    return [(e.previous, e.state) for e in events if isinstance(e, CircuitStateChanged)]


async def test_opens_after_consecutive_failures(run: Runner, clock: FakeClock) -> None:
    """failure_threshold consecutive failures open the breaker, one fewer does not."""
    breaker = circuit_breaker(failure_threshold=3, clock=clock)
    await fail(run, breaker, 2)
    assert state(breaker) is CircuitState.CLOSED
    await fail(run, breaker, 1)
    assert state(breaker) is CircuitState.OPEN


async def test_success_resets_consecutive_failures(run: Runner, clock: FakeClock) -> None:
    """A success between failures starts the consecutive count again."""
    breaker = circuit_breaker(failure_threshold=3, clock=clock)
    await fail(run, breaker, 2)
    assert await run(breaker, "fine") == "fine"
    await fail(run, breaker, 2)
    assert state(breaker) is CircuitState.CLOSED


async def test_open_rejects_without_calling(clock: FakeClock) -> None:
    """An open breaker raises CircuitOpenError and never calls the function."""
    breaker = circuit_breaker(failure_threshold=1, recovery_timeout=30, name="db", clock=clock)
    calls = []

    @breaker
    async def query() -> None:
        calls.append(1)
        raise Boom

    with pytest.raises(Boom):
        await query()
    clock.advance(10)
    with pytest.raises(CircuitOpenError) as info:
        await query()
    assert (calls, info.value.name, info.value.retry_after) == ([1], "db", 20.0)


async def test_each_rejection_is_a_fresh_error(run: Runner, clock: FakeClock) -> None:
    """Every rejection raises a new CircuitOpenError object."""
    breaker = circuit_breaker(failure_threshold=1, clock=clock)
    await fail(run, breaker, 1)
    errors = []
    for _ in range(3):
        with pytest.raises(CircuitOpenError) as info:
            await run(breaker)
        errors.append(info.value)
    assert len({id(e) for e in errors}) == 3


async def test_half_open_probe_success_closes(run: Runner, clock: FakeClock) -> None:
    """After recovery_timeout one probe is admitted, and its success closes the breaker."""
    breaker = circuit_breaker(failure_threshold=1, recovery_timeout=5, clock=clock)
    await fail(run, breaker, 1)
    clock.advance(5)
    assert await run(breaker, "back") == "back"
    assert state(breaker) is CircuitState.CLOSED


async def test_probe_failure_reopens_with_fresh_timeout(run: Runner, clock: FakeClock) -> None:
    """A failed probe re-opens the breaker for a whole new recovery_timeout."""
    breaker = circuit_breaker(failure_threshold=1, recovery_timeout=5, clock=clock)
    await fail(run, breaker, 1)
    clock.advance(7)
    await fail(run, breaker, 1)
    with pytest.raises(CircuitOpenError) as info:
        await run(breaker)
    assert (breaker.state, info.value.retry_after) == (CircuitState.OPEN, 5.0)


async def test_success_threshold_needs_several_probes(run: Runner, clock: FakeClock) -> None:
    """With success_threshold=2 the first probe success leaves it HALF_OPEN, the second closes it."""
    breaker = circuit_breaker(failure_threshold=1, recovery_timeout=5, success_threshold=2, clock=clock)
    await fail(run, breaker, 1)
    clock.advance(5)
    await run(breaker)
    assert state(breaker) is CircuitState.HALF_OPEN
    await run(breaker)
    assert state(breaker) is CircuitState.CLOSED


async def test_still_open_just_before_recovery_timeout(run: Runner, clock: FakeClock) -> None:
    """A call a moment before recovery_timeout is rejected with the time left."""
    breaker = circuit_breaker(failure_threshold=1, recovery_timeout=5, clock=clock)
    await fail(run, breaker, 1)
    clock.advance(4.75)
    with pytest.raises(CircuitOpenError) as info:
        await run(breaker)
    assert info.value.retry_after == pytest.approx(0.25)


def test_state_reads_half_open_once_due(clock: FakeClock) -> None:
    """Reading .state after recovery_timeout reports HALF_OPEN and emits CircuitHalfOpened once."""
    bus = EventBus()
    breaker = circuit_breaker(failure_threshold=1, recovery_timeout=5, clock=clock, bus=bus)
    with pytest.raises(Boom):
        breaker.call(_raise_boom)
    clock.advance(5)
    seen: list[Event] = []
    with resilient.subscribe(seen.append, CircuitHalfOpened, bus=bus):
        states = [breaker.state, breaker.state]
    assert (states, len(seen)) == ([CircuitState.HALF_OPEN] * 2, 1)


def _raise_boom() -> None:
    raise Boom


async def test_unmatched_exception_counts_as_success(run: Runner, clock: FakeClock) -> None:
    """An exception not matching `on` is a success: it resets the failure count and propagates."""
    breaker = circuit_breaker(failure_threshold=2, on=Boom, clock=clock)
    await fail(run, breaker, 1)
    await fail(run, breaker, 1, KeyError)
    await fail(run, breaker, 1)
    assert state(breaker) is CircuitState.CLOSED


async def test_ignored_exception_is_neutral(run: Runner, clock: FakeClock) -> None:
    """An `ignore`d exception neither counts as a failure nor resets the count."""
    breaker = circuit_breaker(failure_threshold=2, ignore=KeyError, clock=clock)
    await fail(run, breaker, 1)
    await fail(run, breaker, 3, KeyError)
    assert breaker.stats().consecutive_failures == 1
    await fail(run, breaker, 1)
    assert state(breaker) is CircuitState.OPEN


async def test_on_predicate(run: Runner, clock: FakeClock) -> None:
    """A predicate `on` decides which exceptions are failures."""
    breaker = circuit_breaker(failure_threshold=1, on=lambda e: "fatal" in str(e), clock=clock)
    with pytest.raises(Boom):
        await run(breaker, Boom("harmless"))
    assert state(breaker) is CircuitState.CLOSED
    with pytest.raises(Boom):
        await run(breaker, Boom("fatal"))
    assert state(breaker) is CircuitState.OPEN


@pytest.mark.parametrize(
    "error",
    [CircuitOpenError("inner", 3.0), BulkheadFullError("pool")],
    ids=["CircuitOpenError", "BulkheadFullError"],
)
async def test_rejection_errors_inside_are_neutral(run: Runner, clock: FakeClock, error: Exception) -> None:
    """A rejection error raised inside the breaker neither counts as a failure nor as a success."""
    breaker = circuit_breaker(failure_threshold=2, clock=clock)
    await fail(run, breaker, 1)
    for _ in range(3):
        with pytest.raises(type(error)):
            await run(breaker, error)
    assert (breaker.state, breaker.stats().consecutive_failures) == (CircuitState.CLOSED, 1)


async def test_group_of_rejections_is_neutral(run: Runner, clock: FakeClock) -> None:
    """An ExceptionGroup holding only rejection errors counts as nothing."""
    breaker = circuit_breaker(failure_threshold=1, clock=clock)
    group = ExceptionGroup("fan-out", [CircuitOpenError("a", 1.0), BulkheadFullError("b")])
    with pytest.raises(ExceptionGroup):
        await run(breaker, group)
    assert state(breaker) is CircuitState.CLOSED


async def test_group_with_a_real_failure_counts(run: Runner, clock: FakeClock) -> None:
    """An ExceptionGroup mixing a rejection and a real failure is a failure."""
    breaker = circuit_breaker(failure_threshold=1, clock=clock)
    group = ExceptionGroup("fan-out", [CircuitOpenError("a", 1.0), Boom()])
    with pytest.raises(ExceptionGroup):
        await run(breaker, group)
    assert state(breaker) is CircuitState.OPEN


async def test_timeout_error_is_a_failure(run: Runner, clock: FakeClock) -> None:
    """TimeoutExceededError raised inside counts as an ordinary failure."""
    breaker = circuit_breaker(failure_threshold=2, clock=clock)
    for _ in range(2):
        with pytest.raises(TimeoutExceededError):
            await run(breaker, TimeoutExceededError(1.0))
    assert state(breaker) is CircuitState.OPEN


async def test_exception_propagates_as_same_object(run: Runner, clock: FakeClock) -> None:
    """The function's exception reaches the caller as the very same object."""
    breaker = circuit_breaker(clock=clock)
    error = Boom("x")
    with pytest.raises(Boom) as info:
        await run(breaker, error)
    assert info.value is error


async def test_isolate_rejects_until_reset(run: Runner, clock: FakeClock) -> None:
    """isolate() rejects every call with retry_after=None, even after recovery_timeout, until reset()."""
    breaker = circuit_breaker(recovery_timeout=1, clock=clock)
    breaker.isolate()
    clock.advance(100)
    with pytest.raises(CircuitOpenError) as info:
        await run(breaker)
    assert (breaker.state, info.value.retry_after) == (CircuitState.ISOLATED, None)
    breaker.reset()
    assert await run(breaker, 1) == 1


async def test_reset_clears_statistics(run: Runner, clock: FakeClock) -> None:
    """reset() forgets earlier failures, so it takes a full threshold to open again."""
    breaker = circuit_breaker(failure_threshold=3, clock=clock)
    await fail(run, breaker, 2)
    breaker.reset()
    await fail(run, breaker, 2)
    assert state(breaker) is CircuitState.CLOSED


async def test_reset_closes_an_open_breaker(run: Runner, clock: FakeClock) -> None:
    """reset() closes an open breaker at once."""
    breaker = circuit_breaker(failure_threshold=1, clock=clock)
    await fail(run, breaker, 1)
    breaker.reset()
    assert (breaker.state, await run(breaker, 2)) == (CircuitState.CLOSED, 2)


async def test_events_once_per_transition(run: Runner, clock: FakeClock) -> None:
    """A full cycle emits Opened, HalfOpened, Opened, HalfOpened, Closed, each exactly once."""
    bus = EventBus()
    breaker = circuit_breaker(failure_threshold=2, recovery_timeout=5, name="svc", clock=clock, bus=bus)
    seen: list[Event] = []
    with resilient.subscribe(seen.append, CircuitStateChanged, bus=bus):
        await fail(run, breaker, 2)
        clock.advance(5)
        await fail(run, breaker, 1)
        clock.advance(5)
        await run(breaker)
        await run(breaker)
    closed, open_, half = CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN
    assert transitions(seen) == [(closed, open_), (open_, half), (half, open_), (open_, half), (half, closed)]
    assert [type(e) for e in seen] == [
        CircuitOpened,
        CircuitHalfOpened,
        CircuitOpened,
        CircuitHalfOpened,
        CircuitClosed,
    ]


async def test_state_event_fields(clock: FakeClock) -> None:
    """State-change events carry the policy kind, name, operation and clock time."""
    bus = EventBus()
    breaker = circuit_breaker(failure_threshold=1, name="svc", clock=clock, bus=bus)

    @breaker
    async def fetch() -> None:
        raise Boom

    clock.advance(42)
    seen: list[Event] = []
    with resilient.subscribe(seen.append, CircuitOpened, bus=bus), pytest.raises(Boom):
        await fetch()
    (event,) = seen
    assert (event.policy, event.name, event.operation, event.time) == (
        "circuit_breaker",
        "svc",
        fetch.__qualname__,
        42.0,
    )


async def test_rejected_event_per_rejection(run: Runner, clock: FakeClock) -> None:
    """Each rejection emits one CircuitRejected carrying retry_after."""
    bus = EventBus()
    breaker = circuit_breaker(failure_threshold=1, recovery_timeout=10, clock=clock, bus=bus)
    await fail(run, breaker, 1)
    seen: list[CircuitRejected] = []
    with resilient.subscribe(seen.append, CircuitRejected, bus=bus):
        for _ in range(2):
            clock.advance(1)
            with pytest.raises(CircuitOpenError):
                await run(breaker)
    assert [(e.policy, e.retry_after) for e in seen] == [("circuit_breaker", 9.0), ("circuit_breaker", 8.0)]


async def test_isolate_and_reset_events(clock: FakeClock) -> None:
    """isolate() emits CircuitIsolated once, reset() emits CircuitClosed once."""
    bus = EventBus()
    breaker = circuit_breaker(clock=clock, bus=bus)
    seen: list[Event] = []
    with resilient.subscribe(seen.append, CircuitStateChanged, bus=bus):
        breaker.isolate()
        breaker.isolate()
        breaker.reset()
        breaker.reset()
    assert [type(e) for e in seen] == [CircuitIsolated, CircuitClosed]
    assert transitions(seen) == [
        (CircuitState.CLOSED, CircuitState.ISOLATED),
        (CircuitState.ISOLATED, CircuitState.CLOSED),
    ]


async def test_no_event_built_without_subscribers(
    run: Runner, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no subscriber, a full open/reject/close cycle constructs no event object."""
    import resilient._breaker_core as core

    class Forbidden:
        def __init__(self, **kwargs: object) -> None:
            raise AssertionError("an event was built without a subscriber")

    monkeypatch.setattr(core, "_EVENTS", dict.fromkeys(core._EVENTS, Forbidden))
    monkeypatch.setattr(core, "CircuitRejected", Forbidden)
    bus = EventBus()
    resilient.subscribe(lambda e: None, TimeoutElapsed, bus=bus)  # the bus is not empty
    breaker = circuit_breaker(failure_threshold=1, recovery_timeout=1, clock=clock, bus=bus)
    await fail(run, breaker, 1)
    with pytest.raises(CircuitOpenError):
        await run(breaker)
    clock.advance(1)
    assert await run(breaker, "ok") == "ok"


async def test_one_breaker_shared_by_functions(clock: FakeClock) -> None:
    """Failures of two functions open one shared breaker, which then rejects a third."""
    breaker = circuit_breaker(failure_threshold=2, clock=clock)

    @breaker
    async def read() -> None:
        raise Boom

    @breaker
    def write() -> None:
        raise Boom

    @breaker
    async def ping() -> str:
        return "pong"

    with pytest.raises(Boom):
        await read()
    with pytest.raises(Boom):
        write()
    with pytest.raises(CircuitOpenError):
        await ping()


async def test_async_with_counts_failures(clock: FakeClock) -> None:
    """`async with breaker:` counts a failing block and then refuses to enter."""
    breaker = circuit_breaker(failure_threshold=1, clock=clock)
    entered = []
    with pytest.raises(Boom):
        async with breaker:
            raise Boom
    with pytest.raises(CircuitOpenError):
        async with breaker:
            entered.append(1)
    assert entered == []


def test_sync_with_counts_failures(clock: FakeClock) -> None:
    """`with breaker:` counts a failing block and then refuses to enter."""
    breaker = circuit_breaker(failure_threshold=1, clock=clock)
    entered = []
    with pytest.raises(Boom), breaker:
        raise Boom
    with pytest.raises(CircuitOpenError), breaker:
        entered.append(1)
    assert entered == []


async def test_async_with_probe_success_closes(clock: FakeClock) -> None:
    """A successful `async with` block is a probe success that closes the breaker."""
    breaker = circuit_breaker(failure_threshold=1, recovery_timeout=1, clock=clock)
    with pytest.raises(Boom):
        async with breaker:
            raise Boom
    clock.advance(1)
    async with breaker:
        pass
    assert state(breaker) is CircuitState.CLOSED


async def test_retry_outside_waits_retry_after(clock: FakeClock) -> None:
    """retry around an open breaker waits until its retry_after, then the probe succeeds."""
    breaker = circuit_breaker(failure_threshold=1, recovery_timeout=2, clock=clock)
    answers: list[object] = [Boom(), "ok"]

    @retry(attempts=3, backoff=linear(initial=0.5, increment=0), clock=clock)
    @breaker
    async def fetch() -> object:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert (await fetch(), clock.sleeps) == ("ok", [0.5, 1.5])


async def test_retry_gives_up_when_retry_after_too_long(clock: FakeClock) -> None:
    """retry gives up at once when the breaker's retry_after exceeds its max_delay."""
    breaker = circuit_breaker(failure_threshold=1, recovery_timeout=60, clock=clock)

    @retry(attempts=5, backoff=0.1, clock=clock)
    @breaker
    def fetch() -> None:
        raise Boom

    with pytest.raises(CircuitOpenError):
        fetch()
    assert clock.sleeps == [0.1]


def test_repr_shows_name_and_configuration(clock: FakeClock) -> None:
    """repr names the breaker and its opening rule (and reads no state)."""
    assert repr(circuit_breaker(name="db", clock=clock)) == (
        "circuit_breaker(name='db', failure_threshold=5, recovery_timeout=30.0)"
    )
    assert (
        repr(circuit_breaker(failure_rate=0.5)) == "circuit_breaker(failure_rate=0.5, recovery_timeout=30.0)"
    )


def test_exported_from_package() -> None:
    """circuit_breaker and CircuitBreaker are public names of resilient."""
    assert {"circuit_breaker", "CircuitBreaker"} <= set(resilient.__all__)
    assert isinstance(resilient.circuit_breaker(), resilient.CircuitBreaker)
