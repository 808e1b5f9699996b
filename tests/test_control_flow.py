"""Control flow through retry and fallback: cancellation, interrupts and outer timeouts are never handled."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any

import pytest

from resilient import TimeoutExceededError, fallback, retry, timeout
from resilient.events import FallbackUsed, RetriesExhausted, RetryScheduled
from resilient.testing import FakeClock, capture_events

CONTROL_FLOW: list[Callable[[], BaseException]] = [
    KeyboardInterrupt,
    SystemExit,
    GeneratorExit,
    asyncio.CancelledError,
    lambda: BaseExceptionGroup("g", [KeyboardInterrupt()]),
    lambda: BaseExceptionGroup("g", [ValueError(), asyncio.CancelledError()]),
]
CONTROL_FLOW_IDS = [
    "KeyboardInterrupt",
    "SystemExit",
    "GeneratorExit",
    "CancelledError",
    "group",
    "mixed-group",
]

CATCH_ALL: list[Any] = [
    BaseException,
    Exception,
    lambda exc: True,
    (Exception, BaseException),
    (BaseExceptionGroup, BaseException),
]
CATCH_ALL_IDS = ["BaseException", "Exception", "predicate", "tuple", "group-type"]


class Boom(Exception):
    """An ordinary, retryable failure."""


@pytest.fixture(params=["async", "sync"])
def kind(request: pytest.FixtureRequest) -> str:
    """Run the test against an async and a sync protected function."""
    return str(request.param)


def raiser(kind: str, exc: BaseException, calls: list[int]) -> Callable[..., Any]:
    """An async or sync function that counts its calls and raises *exc*."""

    async def op() -> None:
        calls.append(1)
        raise exc

    def sync_op() -> None:
        calls.append(1)
        raise exc

    return op if kind == "async" else sync_op


async def invoke(fn: Callable[..., Any]) -> Any:
    """Call *fn* and await the result if it is awaitable."""
    result = fn()
    if inspect.isawaitable(result):
        result = await result
    return result


class GateClock:
    """A clock whose sleep blocks until the test opens the gate (no virtual or real time passes)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeping = asyncio.Event()
        self.gate = asyncio.Event()
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        """Return the current time."""
        return self.now

    async def sleep(self, seconds: float) -> None:
        """Signal that a wait started, then wait for the gate."""
        self.sleeps.append(seconds)
        self.sleeping.set()
        await self.gate.wait()
        self.now += seconds


# --- control-flow exceptions raised by the function ------------------------------


@pytest.mark.parametrize("make_exc", CONTROL_FLOW, ids=CONTROL_FLOW_IDS)
@pytest.mark.parametrize("on", CATCH_ALL, ids=CATCH_ALL_IDS)
async def test_retry_never_retries_control_flow(
    kind: str, clock: FakeClock, make_exc: Callable[[], BaseException], on: Any
) -> None:
    """A control-flow exception is raised after one call, as the same object, whatever on= says."""
    exc = make_exc()
    calls: list[int] = []
    guarded = retry(attempts=5, on=on, backoff=0.1, clock=clock)(raiser(kind, exc, calls))
    with capture_events(RetryScheduled, RetriesExhausted) as events, pytest.raises(BaseException) as info:
        await invoke(guarded)
    assert (info.value, len(calls), events, clock.sleeps) == (exc, 1, [], [])


@pytest.mark.parametrize("make_exc", CONTROL_FLOW, ids=CONTROL_FLOW_IDS)
@pytest.mark.parametrize("on", CATCH_ALL, ids=CATCH_ALL_IDS)
async def test_fallback_never_replaces_control_flow(
    kind: str, make_exc: Callable[[], BaseException], on: Any
) -> None:
    """A control-flow exception passes through fallback unchanged and the handler is not called."""
    exc = make_exc()
    calls: list[int] = []
    handled: list[BaseException] = []
    guarded = fallback(lambda e: handled.append(e), on=on)(raiser(kind, exc, calls))
    with capture_events(FallbackUsed) as events, pytest.raises(BaseException) as info:
        await invoke(guarded)
    assert (info.value, handled, events) == (exc, [], [])


@pytest.mark.parametrize("make_exc", CONTROL_FLOW, ids=CONTROL_FLOW_IDS)
async def test_stacked_fallback_and_retry_pass_control_flow_through(
    kind: str, clock: FakeClock, make_exc: Callable[[], BaseException]
) -> None:
    """fallback over retry over the function: a control-flow exception still propagates after one call."""
    exc = make_exc()
    calls: list[int] = []
    fn = raiser(kind, exc, calls)
    guarded = fallback("default", on=BaseException)(retry(on=BaseException, clock=clock)(fn))
    with pytest.raises(BaseException) as info:
        await invoke(guarded)
    assert (info.value, len(calls)) == (exc, 1)


async def test_keyboard_interrupt_during_a_blocking_wait_stops_retrying() -> None:
    """Ctrl-C while a sync retry sleeps propagates as is and no further attempt starts."""
    interrupt = KeyboardInterrupt()

    class InterruptedClock(FakeClock):
        def sleep_blocking(self, seconds: float) -> None:
            raise interrupt

    calls: list[int] = []
    guarded = retry(attempts=5, backoff=1, clock=InterruptedClock())(raiser("sync", Boom(), calls))
    with pytest.raises(KeyboardInterrupt) as info:
        guarded()
    assert (info.value, len(calls)) == (interrupt, 1)


# --- cancellation from outside ---------------------------------------------------


async def test_task_cancel_during_an_attempt_stops_retrying(clock: FakeClock) -> None:
    """Cancelling the caller while an attempt runs propagates CancelledError; no retry starts."""
    started = asyncio.Event()
    calls: list[int] = []

    @retry(attempts=5, on=BaseException, backoff=0, clock=clock)
    async def hang() -> None:
        calls.append(1)
        started.set()
        await asyncio.Event().wait()

    with capture_events(RetryScheduled, RetriesExhausted) as events:
        task = asyncio.create_task(hang())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert (len(calls), events) == (1, [])


async def test_task_cancel_during_a_backoff_wait_stops_retrying() -> None:
    """Cancelling the caller during the backoff wait propagates CancelledError; no further attempt."""
    clock = GateClock()
    calls: list[int] = []
    guarded = retry(attempts=5, on=BaseException, backoff=1.0, clock=clock)(raiser("async", Boom(), calls))
    with capture_events(RetriesExhausted) as events:
        task = asyncio.create_task(guarded())
        await clock.sleeping.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        clock.gate.set()
        await asyncio.sleep(0)
    assert (len(calls), clock.sleeps, events) == (1, [1.0], [])


async def test_task_cancel_during_a_real_asyncio_sleep_stops_retrying() -> None:
    """With the system clock, cancelling a 1000 s backoff wait ends the call at once."""
    calls: list[int] = []
    guarded = retry(attempts=5, backoff=1000.0)(raiser("async", Boom(), calls))
    task = asyncio.create_task(guarded())
    while not calls:
        await asyncio.sleep(0)
    await asyncio.sleep(0)  # the failed attempt is now in its backoff wait
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(calls) == 1


async def test_cancelled_error_from_the_clock_is_not_retried(clock: FakeClock) -> None:
    """A CancelledError raised by the wait itself propagates as the same object."""
    cancelled = asyncio.CancelledError()

    class CancellingClock(FakeClock):
        async def sleep(self, seconds: float) -> None:
            raise cancelled

    calls: list[int] = []
    guarded = retry(attempts=5, on=BaseException, backoff=1, clock=CancellingClock())
    with pytest.raises(asyncio.CancelledError) as info:
        await guarded(raiser("async", Boom(), calls))()
    assert (info.value, len(calls)) == (cancelled, 1)


async def test_outer_asyncio_timeout_during_an_attempt(clock: FakeClock) -> None:
    """asyncio.timeout around retry expiring mid-attempt raises TimeoutError; cancelling() is back to 0."""
    calls: list[int] = []

    @retry(attempts=5, on=BaseException, backoff=0, clock=clock)
    async def hang() -> None:
        calls.append(1)
        await asyncio.Event().wait()

    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0):
            await hang()
    task = asyncio.current_task()
    assert task is not None
    assert (len(calls), task.cancelling()) == (1, 0)


async def test_outer_asyncio_timeout_during_a_backoff_wait() -> None:
    """asyncio.timeout expiring while retry waits raises TimeoutError and starts no further attempt."""
    clock = GateClock()
    calls: list[int] = []
    guarded = retry(attempts=5, on=BaseException, backoff=1.0, clock=clock)(raiser("async", Boom(), calls))
    scopes: list[asyncio.Timeout] = []

    async def caller() -> int:
        try:
            async with asyncio.timeout(None) as scope:
                scopes.append(scope)
                await guarded()
        except TimeoutError:
            task = asyncio.current_task()
            assert task is not None
            return task.cancelling()
        raise AssertionError("the timeout did not expire")

    task = asyncio.create_task(caller())
    await clock.sleeping.wait()
    scopes[0].reschedule(asyncio.get_running_loop().time())  # expire now
    assert await task == 0
    clock.gate.set()
    await asyncio.sleep(0)
    assert len(calls) == 1


async def test_outer_wait_for_during_a_backoff_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    """asyncio.wait_for expiring while retry waits raises TimeoutError; the attempt is not repeated."""
    loop = asyncio.get_running_loop()
    real_time, skew = loop.time, [0.0]
    # Jump the loop's clock instead of waiting: wait_for's timer becomes due at once.
    monkeypatch.setattr(loop, "time", lambda: real_time() + skew[0])
    clock = GateClock()
    calls: list[int] = []
    guarded = retry(attempts=5, on=BaseException, backoff=1.0, clock=clock)(raiser("async", Boom(), calls))

    async def caller() -> None:
        await asyncio.wait_for(guarded(), timeout=1000)

    task = asyncio.create_task(caller())
    await clock.sleeping.wait()
    skew[0] = 2000.0
    with pytest.raises(TimeoutError):
        await task
    clock.gate.set()
    await asyncio.sleep(0)
    assert len(calls) == 1


async def test_resilient_timeout_around_retry_expiring_mid_attempt(clock: FakeClock) -> None:
    """timeout() outside retry expiring during an attempt raises TimeoutExceededError after one call."""
    calls: list[int] = []

    @timeout(1.0, clock=clock)
    @retry(attempts=5, on=BaseException, backoff=0, clock=clock)
    async def slow() -> None:
        calls.append(1)
        await clock.sleep(5)

    with pytest.raises(TimeoutExceededError):
        await slow()
    task = asyncio.current_task()
    assert task is not None
    assert (len(calls), task.cancelling()) == (1, 0)


# --- fallback with cancellation and timeouts -------------------------------------


async def test_fallback_does_not_replace_an_outer_cancellation(clock: FakeClock) -> None:
    """Cancelling a call guarded by fallback(on=BaseException) propagates CancelledError; no handler."""
    started = asyncio.Event()
    handled: list[BaseException] = []

    @fallback(lambda e: handled.append(e), on=BaseException)
    @retry(on=BaseException, clock=clock)
    async def hang() -> None:
        started.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(hang())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert handled == []


async def test_fallback_replaces_a_timeout_it_encloses(clock: FakeClock) -> None:
    """A TimeoutExceededError from an inner timeout is an ordinary failure: fallback answers it."""
    seen: list[BaseException] = []

    def handler(exc: BaseException) -> str:
        seen.append(exc)
        return "cached"

    @fallback(handler)
    @timeout(1.0, clock=clock)
    async def slow() -> str:
        await clock.sleep(5)
        return "fresh"

    assert await slow() == "cached"
    assert [type(e) for e in seen] == [TimeoutExceededError]
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0


async def test_fallback_does_not_replace_an_outer_asyncio_timeout() -> None:
    """An asyncio.timeout around fallback expires as TimeoutError, not the fallback value."""
    handled: list[BaseException] = []

    def handler(exc: BaseException) -> str:
        handled.append(exc)
        return "default"

    @fallback(handler, on=BaseException)
    async def hang() -> str:
        await asyncio.Event().wait()
        return "never"

    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0):
            await hang()
    assert handled == []


# --- TaskGroups and the task's cancellation count (issue 10, item 7) -------------


async def fail_in_a_taskgroup(exc: BaseException) -> None:
    """Run one child that raises *exc* in a TaskGroup whose body has already finished.

    The child fails while the parent waits in ``TaskGroup.__aexit__``: on
    CPython 3.11 and 3.12 that leaves the parent's ``cancelling()`` at 1.
    """

    async def child() -> None:
        raise exc

    async with asyncio.TaskGroup() as tg:
        tg.create_task(child())


async def converted(eg_form: str) -> None:
    """A TaskGroup failure, raised as *eg_form* says: the group, nested in another group, or converted."""
    if eg_form == "group":
        await fail_in_a_taskgroup(ConnectionError("child"))
    elif eg_form == "nested":
        async with asyncio.TaskGroup():
            await fail_in_a_taskgroup(ConnectionError("child"))
    else:
        try:
            await fail_in_a_taskgroup(ConnectionError("child"))
        except* ConnectionError as eg:
            raise ConnectionError("the fan-out failed") from eg


@pytest.mark.parametrize("eg_form", ["group", "nested", "converted"])
async def test_a_taskgroup_failure_is_retried(clock: FakeClock, eg_form: str) -> None:
    """A TaskGroup whose children all fail with a matching error is retried, on every CPython version."""
    calls: list[int] = []

    @retry(attempts=3, on=ConnectionError, backoff=0, clock=clock)
    async def fan_out() -> str:
        calls.append(1)
        if len(calls) < 3:
            await converted(eg_form)
        return "ok"

    assert await fan_out() == "ok"
    assert len(calls) == 3


async def test_a_stale_cancellation_count_does_not_stop_later_retries(clock: FakeClock) -> None:
    """A task whose cancelling() is already 1 when the call starts still retries: only an increase counts."""
    task = asyncio.current_task()
    assert task is not None
    task.cancel()
    try:
        await asyncio.sleep(0)
    except asyncio.CancelledError:
        pass  # swallowed without uncancel(): the count stays at 1 for the rest of the task
    assert task.cancelling() == 1
    calls: list[int] = []

    @retry(attempts=3, on=ConnectionError, backoff=0, clock=clock)
    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError
        return "ok"

    try:
        assert await flaky() == "ok"
        assert len(calls) == 3
    finally:
        task.uncancel()


async def test_a_cancellation_turned_into_a_taskgroup_error_is_not_retried(clock: FakeClock) -> None:
    """A cancellation that a TaskGroup child turns into a matching error is not retried."""
    started = asyncio.Event()
    calls: list[int] = []

    async def child() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            raise ConnectionError("cancelled mid-request") from None

    @retry(attempts=5, on=ConnectionError, backoff=0, clock=clock)
    async def fan_out() -> None:
        calls.append(1)
        async with asyncio.TaskGroup() as tg:
            tg.create_task(child())
            await asyncio.Event().wait()

    task = asyncio.create_task(fan_out())
    await started.wait()
    task.cancel()
    with pytest.raises((asyncio.CancelledError, ExceptionGroup)):
        await task
    assert len(calls) == 1


async def test_a_cancellation_after_a_taskgroup_failure_in_the_same_attempt_is_not_retried(
    clock: FakeClock,
) -> None:
    """After a TaskGroup failure, an attempt that turns a real cancellation into an error is not retried."""
    started = asyncio.Event()
    calls: list[int] = []

    @retry(attempts=5, on=ConnectionError, backoff=0, clock=clock)
    async def op() -> None:
        calls.append(1)
        try:
            await fail_in_a_taskgroup(ConnectionError("child"))
        except* ConnectionError:
            pass  # on CPython < 3.13 the group's cancel request stays counted
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            raise ConnectionError("cancelled mid-request") from None

    task = asyncio.create_task(op())
    await started.wait()
    task.cancel()
    with pytest.raises(ConnectionError):
        await task
    assert len(calls) == 1


async def test_a_child_task_counts_its_own_cancellations(clock: FakeClock) -> None:
    """A task started after its parent retried compares its own cancellation count, not its parent's."""
    parent = asyncio.current_task()
    assert parent is not None
    parent.cancel()
    try:
        await asyncio.sleep(0)
    except asyncio.CancelledError:
        pass  # the parent's count stays at 1
    calls: list[str] = []
    started = asyncio.Event()

    @retry(attempts=3, on=ConnectionError, backoff=0, clock=clock)
    async def op(who: str) -> None:
        calls.append(who)
        if who == "parent":
            if calls.count("parent") < 2:
                raise ConnectionError
            return
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            raise ConnectionError("cancelled mid-request") from None

    try:
        await op("parent")  # retried despite the stale count
        child = asyncio.create_task(op("child"))
        await started.wait()
        child.cancel()
        with pytest.raises(ConnectionError):
            await child
    finally:
        parent.uncancel()
    assert calls == ["parent", "parent", "child"]


async def test_a_cancellation_a_taskgroup_turns_into_its_error_is_not_retried(clock: FakeClock) -> None:
    """A cancellation that a TaskGroup waiting for its children turns into its error is not retried."""
    started = asyncio.Event()
    calls: list[int] = []

    async def child() -> None:
        if len(calls) == 1:  # a retried attempt fails at once instead of waiting
            started.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                pass  # swallowed: the error below carries no trace of it
        raise ConnectionError("gave up")

    @retry(attempts=5, on=ConnectionError, backoff=0, clock=clock)
    async def fan_out() -> None:
        calls.append(1)
        async with asyncio.TaskGroup() as tg:
            tg.create_task(child())
        # The body is over: the group waits for its child in __aexit__, where the cancellation lands.

    task = asyncio.create_task(fan_out())
    await started.wait()
    task.cancel()
    with pytest.raises((asyncio.CancelledError, ExceptionGroup)):
        await task
    assert len(calls) == 1
