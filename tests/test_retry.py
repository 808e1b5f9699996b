"""Tests of ``retry``: the contract of API.md section 3, for async and sync functions alike."""

from __future__ import annotations

import asyncio
import inspect
import math
from collections import defaultdict
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

import resilient
from resilient import (
    BulkheadFullError,
    CircuitOpenError,
    RetryBudget,
    backoff,
    current_call,
    retry,
    set_testing,
    timeout,
)
from resilient.events import EventBus, RetriesExhausted, RetryScheduled
from resilient.testing import FakeClock, capture_events

# --- helpers ---------------------------------------------------------------------


class Script:
    """A function body that plays back *outcomes* (exceptions are raised), the last one forever."""

    def __init__(self, *outcomes: object) -> None:
        self.outcomes = list(outcomes)
        self.calls = 0
        self.attempts: list[int | None] = []
        self.args: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        ctx = current_call()
        self.attempts.append(ctx.attempt if ctx is not None else None)
        self.args.append((args, kwargs))
        outcome = self.outcomes[min(self.calls, len(self.outcomes)) - 1]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


def make_fn(kind: str, script: Script) -> Callable[..., Any]:
    """An async or sync function named ``op`` that runs *script*."""

    async def op(*args: Any, **kwargs: Any) -> Any:
        return script(*args, **kwargs)

    def sync_op(*args: Any, **kwargs: Any) -> Any:
        return script(*args, **kwargs)

    if kind == "sync":
        sync_op.__name__ = sync_op.__qualname__ = op.__qualname__
        return sync_op
    return op


async def invoke(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call *fn* and await the result if it is awaitable."""
    result = fn(*args, **kwargs)
    if inspect.isawaitable(result):
        result = await result
    return result


async def run(policy: resilient.Retry, kind: str, script: Script, *args: Any, **kwargs: Any) -> Any:
    """Decorate a function running *script* with *policy* and call it once."""
    return await invoke(policy(make_fn(kind, script)), *args, **kwargs)


@pytest.fixture(params=["async", "sync"])
def kind(request: pytest.FixtureRequest) -> str:
    """Run the test against an async and a sync protected function."""
    return str(request.param)


class Boom(Exception):
    """A retryable failure for the tests."""


class Other(Exception):
    """A failure the tests do not retry."""


class Throttled(Exception):
    """A failure carrying a ``retry_after`` hint."""

    def __init__(self, retry_after: object) -> None:
        super().__init__(f"retry after {retry_after!r}")
        self.retry_after = retry_after


def no_jitter(initial: float = 0.1) -> backoff.Exponential:
    """The default strategy without jitter, so waits are exact."""
    return backoff.exponential(initial=initial, multiplier=2, max_delay=10, jitter="none")


# --- attempts and exhaustion -----------------------------------------------------


async def test_gives_up_after_attempts_total_calls(kind: str, clock: FakeClock) -> None:
    """attempts counts every call, the first included."""
    script = Script(Boom())
    with pytest.raises(Boom):
        await run(retry(attempts=4, backoff=0.1, clock=clock), kind, script)
    assert script.calls == 4


async def test_attempts_one_never_retries(kind: str, clock: FakeClock) -> None:
    """attempts=1 calls once and never waits."""
    script = Script(Boom())
    with pytest.raises(Boom):
        await run(retry(attempts=1, clock=clock), kind, script)
    assert (script.calls, clock.sleeps) == (1, [])


async def test_returns_the_first_success(kind: str, clock: FakeClock) -> None:
    """A success after failures is returned and ends the retries."""
    script = Script(Boom(), Boom(), "ok", Boom())
    assert await run(retry(attempts=5, backoff=0.1, clock=clock), kind, script) == "ok"
    assert script.calls == 3


async def test_first_try_success_does_not_wait_or_emit(kind: str, clock: FakeClock) -> None:
    """A call that succeeds at once never sleeps and emits no retry event."""
    with capture_events(RetryScheduled, RetriesExhausted) as events:
        assert await run(retry(clock=clock), kind, Script(42)) == 42
    assert (clock.sleeps, events) == ([], [])


async def test_reraises_the_last_exception_object(kind: str, clock: FakeClock) -> None:
    """On exhaustion the last exception itself is raised, not a copy or wrapper."""
    errors = [Boom(1), Boom(2), Boom(3)]
    with pytest.raises(Boom) as info:
        await run(retry(attempts=3, backoff=0.1, clock=clock), kind, Script(*errors))
    assert info.value is errors[-1]


async def test_reraised_traceback_reaches_the_raising_frame(kind: str, clock: FakeClock) -> None:
    """The re-raised exception's traceback still ends in the frame that raised it."""
    with pytest.raises(Boom) as info:
        await run(retry(attempts=2, backoff=0.1, clock=clock), kind, Script(Boom()))
    frames = [entry.name for entry in info.traceback]
    assert frames[-2:] in (["op", "__call__"], ["sync_op", "__call__"])


async def test_arguments_reach_every_attempt(kind: str, clock: FakeClock) -> None:
    """Positional and keyword arguments are passed unchanged to every attempt."""
    script = Script(Boom(), "ok")
    await run(retry(backoff=0, clock=clock), kind, script, 1, b=2)
    assert script.args == [((1,), {"b": 2}), ((1,), {"b": 2})]


# --- on= -------------------------------------------------------------------------


async def test_non_matching_exception_propagates_at_once(kind: str, clock: FakeClock) -> None:
    """An exception not matching on is raised as the same object after one call, with no event."""
    error = Other()
    script = Script(error)
    with capture_events(RetryScheduled, RetriesExhausted) as events, pytest.raises(Other) as info:
        await run(retry(on=Boom, clock=clock), kind, script)
    assert (info.value, script.calls, events) == (error, 1, [])


async def test_subclass_of_on_is_retried(kind: str, clock: FakeClock) -> None:
    """on=Exception type matches its subclasses."""
    script = Script(KeyError("k"), "ok")
    assert await run(retry(on=LookupError, backoff=0, clock=clock), kind, script) == "ok"


async def test_tuple_on_matches_any_listed_type(kind: str, clock: FakeClock) -> None:
    """on=(A, B) retries both A and B."""
    script = Script(Boom(), Other(), "ok")
    assert await run(retry(on=(Boom, Other), backoff=0, clock=clock), kind, script) == "ok"


async def test_predicate_on_decides_with_the_exception(kind: str, clock: FakeClock) -> None:
    """A predicate on= receives the exception and its answer decides."""
    seen: list[BaseException] = []

    def transient(exc: BaseException) -> bool:
        seen.append(exc)
        return "transient" in str(exc)

    first, final = Boom("transient"), Boom("fatal")
    with pytest.raises(Boom) as info:
        await run(retry(on=transient, backoff=0, clock=clock), kind, Script(first, final))
    assert (info.value, seen) == (final, [first, final])


async def test_on_base_exception_retries_every_exception(kind: str, clock: FakeClock) -> None:
    """on=BaseException is accepted and retries ordinary exceptions."""
    script = Script(Boom(), Other(), "ok")
    assert await run(retry(on=BaseException, backoff=0, clock=clock), kind, script) == "ok"


async def test_exception_group_with_every_leaf_matching_is_retried(kind: str, clock: FakeClock) -> None:
    """An ExceptionGroup whose every leaf matches on is retried (nested groups included)."""
    group = ExceptionGroup("g", [Boom(), ExceptionGroup("inner", [Boom(), Boom()])])
    script = Script(group, "ok")
    assert await run(retry(on=Boom, backoff=0, clock=clock), kind, script) == "ok"


async def test_exception_group_with_one_leaf_not_matching_propagates(kind: str, clock: FakeClock) -> None:
    """An ExceptionGroup with one non-matching leaf is not retried."""
    group = ExceptionGroup("g", [Boom(), ExceptionGroup("inner", [Boom(), Other()])])
    script = Script(group, "ok")
    with pytest.raises(ExceptionGroup) as info:
        await run(retry(on=Boom, backoff=0, clock=clock), kind, script)
    assert (info.value, script.calls) == (group, 1)


async def test_predicate_sees_each_leaf_of_an_exception_group(kind: str, clock: FakeClock) -> None:
    """A predicate on= is asked about every leaf of a group, which matches only if all do."""
    seen: list[BaseException] = []
    leaves = [Boom("a"), Boom("b")]

    def pred(exc: BaseException) -> bool:
        seen.append(exc)
        return True

    script = Script(ExceptionGroup("g", leaves), "ok")
    assert await run(retry(on=pred, backoff=0, clock=clock), kind, script) == "ok"
    assert seen == leaves


async def test_on_exception_group_type_matches_the_group_itself(kind: str, clock: FakeClock) -> None:
    """on=ExceptionGroup retries a group whatever its leaves are."""
    script = Script(ExceptionGroup("g", [Other()]), "ok")
    assert await run(retry(on=ExceptionGroup, backoff=0, clock=clock), kind, script) == "ok"


# --- on_result= ------------------------------------------------------------------


async def test_on_result_retries_while_the_predicate_is_true(kind: str, clock: FakeClock) -> None:
    """on_result returning True retries; the first result it rejects is returned."""
    script = Script(None, None, "done")
    result = await run(retry(on_result=lambda r: r is None, backoff=0, clock=clock), kind, script)
    assert (result, script.calls) == ("done", 3)


async def test_on_result_exhaustion_returns_the_last_result(kind: str, clock: FakeClock) -> None:
    """When on_result still says retry after the last attempt, the last result is returned."""
    last: list[int] = []
    script = Script([], [], last)
    with capture_events(RetriesExhausted) as events:
        result = await run(
            retry(attempts=3, on_result=lambda r: r == [], backoff=0, clock=clock), kind, script
        )
    assert result is last
    assert [(e.attempts, e.exception, e.reason) for e in events] == [(3, None, "attempts")]  # type: ignore[attr-defined]


async def test_on_result_and_on_work_together(kind: str, clock: FakeClock) -> None:
    """Exceptions matching on and results matching on_result are both retried."""
    script = Script(Boom(), "retry-me", "ok")
    policy = retry(attempts=5, on=Boom, on_result=lambda r: r == "retry-me", backoff=0, clock=clock)
    assert (await run(policy, kind, script), script.calls) == ("ok", 3)


# --- backoff= --------------------------------------------------------------------


async def test_strategy_backoff_sets_the_waits(kind: str, clock: FakeClock) -> None:
    """A backoff strategy's delays are the waits between attempts."""
    with pytest.raises(Boom):
        await run(retry(attempts=4, backoff=no_jitter(), clock=clock), kind, Script(Boom()))
    assert clock.sleeps == pytest.approx([0.1, 0.2, 0.4])


@pytest.mark.parametrize(("value", "expected"), [(0.5, 0.5), (2, 2.0), (timedelta(milliseconds=250), 0.25)])
async def test_number_or_timedelta_backoff_is_constant(
    kind: str, clock: FakeClock, value: float | timedelta, expected: float
) -> None:
    """A number or timedelta backoff waits that many seconds before every retry."""
    with pytest.raises(Boom):
        await run(retry(attempts=3, backoff=value, clock=clock), kind, Script(Boom()))
    assert clock.sleeps == [expected, expected]


async def test_zero_backoff_never_sleeps(kind: str, clock: FakeClock) -> None:
    """backoff=0 retries without calling sleep at all."""
    with pytest.raises(Boom):
        await run(retry(attempts=3, backoff=0, clock=clock), kind, Script(Boom()))
    assert clock.sleeps == []


async def test_callable_backoff_gets_attempt_and_exception(kind: str, clock: FakeClock) -> None:
    """A callable backoff is called with (attempt, exception) and its answer is the wait."""
    calls: list[tuple[int, BaseException | None]] = []

    def delays(attempt: int, exc: BaseException | None) -> float:
        calls.append((attempt, exc))
        return attempt * 1.5

    errors = [Boom(1), Boom(2), Boom(3)]
    with pytest.raises(Boom):
        await run(retry(attempts=3, backoff=delays, clock=clock), kind, Script(*errors))
    assert (calls, clock.sleeps) == ([(1, errors[0]), (2, errors[1])], [1.5, 3.0])


async def test_callable_backoff_gets_none_for_a_retried_result(kind: str, clock: FakeClock) -> None:
    """For an on_result retry the callable backoff's exception argument is None."""
    calls: list[BaseException | None] = []

    def delays(attempt: int, exc: BaseException | None) -> float:
        calls.append(exc)
        return 0.0

    await run(retry(on_result=lambda r: r is None, backoff=delays, clock=clock), kind, Script(None, 1))
    assert calls == [None]


async def test_callable_backoff_bad_value_chains_the_retried_exception(kind: str, clock: FakeClock) -> None:
    """A callable backoff returning a negative delay raises ValueError caused by the retried error."""
    error = Boom()
    with pytest.raises(ValueError, match="backoff function") as info:
        await run(retry(backoff=lambda a, e: -1.0, clock=clock), kind, Script(error))
    assert info.value.__cause__ is error


class BrokenStrategy(backoff.Backoff):
    """A custom strategy whose delay() returns whatever it was given."""

    max_delay = 10.0

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def base(self, attempt: int, previous: float | None) -> float:
        """Unused."""
        return 0.0

    def delay(
        self, attempt: int, previous: float | None = None, exception: BaseException | None = None
    ) -> float:
        """Return the configured value unchecked."""
        return self.value


@pytest.mark.parametrize("value", [-1.0, math.nan, math.inf])
async def test_custom_strategy_bad_delay_raises_instead_of_retrying(
    kind: str, clock: FakeClock, value: float
) -> None:
    """A custom strategy returning a negative, NaN or infinite delay raises ValueError caused by the error."""
    error = Boom()
    with pytest.raises(ValueError, match="backoff") as info:
        await run(retry(backoff=BrokenStrategy(value), clock=clock), kind, Script(error))
    assert info.value.__cause__ is error


class BrokenHint(Exception):
    """An exception whose retry_after property raises."""

    @property
    def retry_after(self) -> float:
        """Fail like a buggy property would."""
        raise RuntimeError("broken")


async def test_broken_retry_after_property_is_ignored(kind: str, clock: FakeClock) -> None:
    """A retry_after property that raises is treated as no hint, and the backoff delay is used."""
    assert await run(retry(backoff=0.2, clock=clock), kind, Script(BrokenHint(), "ok")) == "ok"
    assert clock.sleeps == [0.2]


async def test_callable_backoff_error_on_a_result_retry_propagates(kind: str, clock: FakeClock) -> None:
    """A callable backoff that raises during an on_result retry propagates its own error."""
    failure = RuntimeError("backoff bug")

    def delays(attempt: int, exc: BaseException | None) -> float:
        raise failure

    with pytest.raises(RuntimeError) as info:
        await run(retry(on_result=lambda r: True, backoff=delays, clock=clock), kind, Script(1))
    assert info.value is failure


def test_repr_shows_the_configuration() -> None:
    """retry's repr shows attempts, backoff and deadline."""
    text = repr(retry(attempts=4, backoff=1, deadline=5))
    assert text == "retry(attempts=4, backoff=constant(1.0, jitter='none'), deadline=5.0)"


async def test_default_backoff_is_full_jitter_exponential(kind: str, clock: FakeClock) -> None:
    """The default backoff is exponential(0.1, x2, max 10) with full jitter: wait k in [0, 0.1 * 2**(k-1)]."""
    policy = retry(attempts=6, clock=clock)
    assert (policy.backoff.initial, policy.backoff.multiplier) == (0.1, 2.0)  # type: ignore[attr-defined]
    assert (policy.backoff.max_delay, policy.backoff.jitter) == (10.0, "full")
    with pytest.raises(Boom):
        await run(policy, kind, Script(Boom()))
    assert len(clock.sleeps) == 5
    assert all(0.0 <= s <= 0.1 * 2 ** (k - 1) for k, s in enumerate(clock.sleeps, start=1))


# --- retry_after -----------------------------------------------------------------


async def test_retry_after_longer_than_backoff_is_waited(kind: str, clock: FakeClock) -> None:
    """An exception's retry_after above the backoff delay sets the wait."""
    await run(retry(backoff=no_jitter(), clock=clock), kind, Script(Throttled(2.5), "ok"))
    assert clock.sleeps == [2.5]


async def test_backoff_longer_than_retry_after_is_waited(kind: str, clock: FakeClock) -> None:
    """The wait is max(backoff delay, retry_after)."""
    await run(retry(backoff=3.0, clock=clock), kind, Script(Throttled(1), "ok"))
    assert clock.sleeps == [3.0]


async def test_number_backoff_gives_up_on_a_longer_retry_after(kind: str, clock: FakeClock) -> None:
    """A plain-number backoff's max_delay is that number: a longer retry_after gives up at once."""
    script = Script(Throttled(0.5), "ok")
    with capture_events(RetriesExhausted) as events, pytest.raises(Throttled):
        await run(retry(backoff=0.1, clock=clock), kind, script)
    assert (script.calls, clock.sleeps, [e.reason for e in events]) == (1, [], ["retry_after"])  # type: ignore[attr-defined]


async def test_constant_with_a_larger_max_delay_waits_the_retry_after(kind: str, clock: FakeClock) -> None:
    """constant(d, max_delay=m) waits a retry_after up to m."""
    await run(
        retry(backoff=backoff.constant(0.1, max_delay=30), clock=clock), kind, Script(Throttled(20), "ok")
    )
    assert clock.sleeps == [20]


async def test_retry_after_beyond_max_delay_gives_up_at_once(kind: str, clock: FakeClock) -> None:
    """retry_after above the strategy's max_delay gives up without waiting, reason "retry_after"."""
    error = Throttled(60)
    script = Script(error, "ok")
    with capture_events(RetriesExhausted) as events, pytest.raises(Throttled) as info:
        await run(retry(attempts=5, backoff=no_jitter(), clock=clock), kind, script)
    assert (info.value, script.calls, clock.sleeps) == (error, 1, [])
    assert [(e.reason, e.attempts, e.exception) for e in events] == [("retry_after", 1, error)]  # type: ignore[attr-defined]


async def test_retry_after_beyond_the_deadline_gives_up_with_reason_deadline(
    kind: str, clock: FakeClock
) -> None:
    """retry_after within max_delay but past the deadline gives up at once, reason "deadline"."""
    script = Script(Throttled(5), "ok")
    with capture_events(RetriesExhausted) as events, pytest.raises(Throttled):
        await run(retry(backoff=no_jitter(), deadline=2, clock=clock), kind, script)
    assert (script.calls, [e.reason for e in events]) == (1, ["deadline"])  # type: ignore[attr-defined]


async def test_circuit_open_error_retry_after_is_honoured(kind: str, clock: FakeClock) -> None:
    """The library's own CircuitOpenError.retry_after is waited out."""
    await run(retry(backoff=no_jitter(), clock=clock), kind, Script(CircuitOpenError("b", 4.0), "ok"))
    assert clock.sleeps == [4.0]


async def test_bulkhead_full_error_without_retry_after_uses_backoff(kind: str, clock: FakeClock) -> None:
    """A rejection with retry_after=None waits the backoff delay."""
    await run(retry(backoff=no_jitter(), clock=clock), kind, Script(BulkheadFullError("b"), "ok"))
    assert clock.sleeps == pytest.approx([0.1])


@pytest.mark.parametrize("value", [None, "30", True, math.nan, math.inf, -5, [1]])
async def test_unusable_retry_after_is_ignored(kind: str, clock: FakeClock, value: object) -> None:
    """A retry_after that is not a finite number (or is negative) falls back to the backoff delay."""
    await run(retry(backoff=no_jitter(), clock=clock), kind, Script(Throttled(value), "ok"))
    assert clock.sleeps == pytest.approx([0.1])


async def test_callable_backoff_has_no_max_delay_for_retry_after(kind: str, clock: FakeClock) -> None:
    """With a callable backoff any finite retry_after is waited (no max_delay to exceed)."""
    await run(retry(backoff=lambda a, e: 0.1, clock=clock), kind, Script(Throttled(500), "ok"))
    assert clock.sleeps == [500]


# --- deadline= -------------------------------------------------------------------


async def test_deadline_stops_before_a_wait_that_would_end_past_it(kind: str, clock: FakeClock) -> None:
    """Retry gives up instead of starting a wait ending after its deadline (reason "deadline")."""
    script = Script(Boom())
    with capture_events(RetriesExhausted) as events, pytest.raises(Boom):
        await run(retry(attempts=10, backoff=0.4, deadline=1.0, clock=clock), kind, script)
    assert (script.calls, clock.sleeps, clock.monotonic()) == (3, [0.4, 0.4], 0.8)
    assert [(e.reason, e.attempts) for e in events] == [("deadline", 3)]  # type: ignore[attr-defined]


async def test_deadline_counts_the_time_spent_in_attempts(kind: str, clock: FakeClock) -> None:
    """Slow attempts use up the deadline as well as the waits."""
    calls = 0

    def slow() -> None:
        nonlocal calls
        calls += 1
        clock.advance(0.6)
        raise Boom()

    fn: Callable[..., Any] = slow
    if kind == "async":

        async def fn() -> None:
            slow()

    with pytest.raises(Boom):
        await invoke(retry(attempts=10, backoff=0.1, deadline=1.0, clock=clock)(fn))
    assert calls == 2


async def test_wait_ending_exactly_at_the_deadline_is_not_started(kind: str, clock: FakeClock) -> None:
    """A wait ending exactly at the deadline leaves no time for an attempt, so retry gives up."""
    script = Script(Boom())
    with pytest.raises(Boom):
        await run(retry(attempts=10, backoff=0.5, deadline=1.0, clock=clock), kind, script)
    assert script.calls == 2


async def test_deadline_accepts_a_timedelta(kind: str, clock: FakeClock) -> None:
    """deadline accepts a timedelta."""
    script = Script(Boom())
    with pytest.raises(Boom):
        await run(retry(attempts=10, backoff=1, deadline=timedelta(seconds=2.5), clock=clock), kind, script)
    assert script.calls == 3


async def test_ambient_deadline_of_an_enclosing_timeout_is_respected(clock: FakeClock) -> None:
    """Inside timeout(1), retry gives up before a wait past the timeout and raises the last error."""
    script = Script(Boom())
    guarded = timeout(1.0, clock=clock)(
        retry(attempts=10, backoff=0.3, clock=clock)(make_fn("async", script))
    )
    with capture_events(RetriesExhausted) as events, pytest.raises(Boom):
        await guarded()
    assert (script.calls, [e.reason for e in events]) == (4, ["deadline"])  # type: ignore[attr-defined]
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_ambient_deadline_of_async_with_timeout_is_respected(clock: FakeClock) -> None:
    """retry.call inside `async with timeout(...)` respects the block's deadline."""
    script = Script(Boom())
    with pytest.raises(Boom):
        async with timeout(2.0, clock=clock):
            await retry(attempts=10, backoff=0.5, clock=clock).call(make_fn("async", script))
    assert script.calls == 4


async def test_per_attempt_timeout_inside_retry_is_retried(clock: FakeClock) -> None:
    """A timeout inside retry bounds each attempt; its TimeoutExceededError is retried."""
    calls = 0

    async def hangs() -> None:
        nonlocal calls
        calls += 1
        await clock.sleep(100)

    guarded = retry(attempts=3, backoff=0.1, clock=clock)(timeout(1.0, clock=clock)(hangs))
    with pytest.raises(resilient.TimeoutExceededError):
        await guarded()
    assert (calls, asyncio.current_task().cancelling()) == (3, 0)  # type: ignore[union-attr]


# --- per-call state --------------------------------------------------------------


class PerTaskClock(FakeClock):
    """A FakeClock that records each task's sleeps separately."""

    def __init__(self) -> None:
        super().__init__()
        self.by_task: dict[str, list[float]] = defaultdict(list)

    async def sleep(self, seconds: float) -> None:
        """Record the wait under the current task's name, then advance."""
        task = asyncio.current_task()
        assert task is not None
        self.by_task[task.get_name()].append(seconds)
        await super().sleep(seconds)


async def test_concurrent_calls_never_share_a_backoff_sequence() -> None:
    """Four concurrent callers each see 0.1, 0.2, 0.4 (the hyx bug would give 12.8 s)."""
    clock = PerTaskClock()
    policy = retry(attempts=4, backoff=no_jitter(), clock=clock)

    @policy
    async def flaky() -> None:
        await asyncio.sleep(0)  # let the callers interleave
        raise Boom()

    async def caller() -> None:
        with pytest.raises(Boom):
            await flaky()

    async with asyncio.TaskGroup() as tg:
        for i in range(4):
            tg.create_task(caller(), name=f"caller-{i}")
    assert dict(clock.by_task) == {f"caller-{i}": pytest.approx([0.1, 0.2, 0.4]) for i in range(4)}


async def test_successive_calls_restart_the_sequence(kind: str, clock: FakeClock) -> None:
    """Each call starts its backoff from the first delay."""
    guarded = retry(attempts=3, backoff=no_jitter(), clock=clock)(make_fn(kind, Script(Boom())))
    for _ in range(2):
        with pytest.raises(Boom):
            await invoke(guarded)
    assert clock.sleeps == pytest.approx([0.1, 0.2, 0.1, 0.2])


async def test_one_policy_on_two_functions_counts_each_call(kind: str, clock: FakeClock) -> None:
    """A retry object reused on two functions gives each call its own attempt count."""
    policy = retry(attempts=2, backoff=0, clock=clock)
    first, second = Script(Boom()), Script(Boom(), "ok")
    with pytest.raises(Boom):
        await run(policy, kind, first)
    assert await run(policy, kind, second) == "ok"
    assert (first.attempts, second.attempts) == ([1, 2], [1, 2])


# --- events and the call context -------------------------------------------------


async def test_retry_scheduled_events_describe_each_retry(kind: str, clock: FakeClock) -> None:
    """RetryScheduled carries the failed attempt, the wait, the exception and the time."""
    errors = [Boom(1), Boom(2)]
    policy = retry(attempts=3, backoff=no_jitter(), name="fetch", clock=clock)
    with capture_events(RetryScheduled) as events:
        await run(policy, kind, Script(*errors, "ok"))
    expected = [
        RetryScheduled(
            policy="retry", name="fetch", operation=events[0].operation, time=0.0, attempt=1, delay=0.1,
            exception=errors[0], result=None,
        ),
        RetryScheduled(
            policy="retry", name="fetch", operation=events[0].operation, time=0.1, attempt=2, delay=0.2,
            exception=errors[1], result=None,
        ),
    ]  # fmt: skip
    assert events == expected
    assert str(events[0].operation).endswith("make_fn.<locals>.op")


async def test_retry_scheduled_carries_the_retried_result(kind: str, clock: FakeClock) -> None:
    """For an on_result retry, RetryScheduled.result is the result and exception is None."""
    marker = object()
    with capture_events(RetryScheduled) as events:
        await run(retry(on_result=lambda r: r is marker, backoff=0, clock=clock), kind, Script(marker, 1))
    assert [(e.result, e.exception) for e in events] == [(marker, None)]  # type: ignore[attr-defined]


async def test_retries_exhausted_reports_attempts_and_last_exception(kind: str, clock: FakeClock) -> None:
    """RetriesExhausted carries the attempts made, the last exception and reason "attempts"."""
    error = Boom()
    with capture_events(RetriesExhausted) as events, pytest.raises(Boom):
        await run(retry(attempts=3, backoff=0, name="n", clock=clock), kind, Script(Boom(), Boom(), error))
    assert len(events) == 1
    event = events[0]
    assert isinstance(event, RetriesExhausted)
    assert (event.policy, event.name, event.attempts, event.exception, event.reason) == (
        "retry", "n", 3, error, "attempts",
    )  # fmt: skip


async def test_events_go_to_the_policy_bus(kind: str, clock: FakeClock) -> None:
    """With bus=, events reach that bus and not the default one."""
    bus = EventBus()
    mine: list[object] = []
    bus.subscribe(mine.append, RetryScheduled, RetriesExhausted)
    with capture_events(RetryScheduled, RetriesExhausted) as default_events, pytest.raises(Boom):
        await run(retry(attempts=2, backoff=0, clock=clock, bus=bus), kind, Script(Boom()))
    assert ([type(e) for e in mine], default_events) == ([RetryScheduled, RetriesExhausted], [])


async def test_current_call_attempt_counts_up(kind: str, clock: FakeClock) -> None:
    """current_call().attempt is 1, 2, 3 in successive attempts."""
    script = Script(Boom(), Boom(), "ok")
    await run(retry(attempts=3, backoff=0, clock=clock), kind, script)
    assert script.attempts == [1, 2, 3]


# --- test mode -------------------------------------------------------------------


async def test_set_testing_skips_the_waits_but_not_the_attempts(kind: str, clock: FakeClock) -> None:
    """With set_testing(True), retry makes every attempt without waiting."""
    script = Script(Boom())
    with set_testing(True), pytest.raises(Boom):
        await run(retry(attempts=4, backoff=5.0, clock=clock), kind, script)
    assert (script.calls, clock.sleeps, clock.monotonic()) == (4, [], 0.0)


async def test_set_testing_reports_the_planned_delay(kind: str, clock: FakeClock) -> None:
    """In test mode RetryScheduled.delay is the wait a real run would make (the wait itself is skipped)."""
    script = Script(Boom())
    backoff = resilient.backoff.exponential(initial=1.0, jitter="none")
    with set_testing(True), capture_events(RetryScheduled) as events, pytest.raises(Boom):
        await run(retry(attempts=4, backoff=backoff, clock=clock), kind, script)
    assert ([e.delay for e in events], clock.sleeps) == ([1.0, 2.0, 4.0], [])  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("attempts", "cap", "made"), [(1, False, 1), (2, False, 2), (7, False, 7), (2, True, 2), (7, True, 4)]
)
async def test_set_testing_attempts_like_stamina(
    kind: str, clock: FakeClock, attempts: int, cap: bool, made: int
) -> None:
    """set_testing(True, attempts=N): every retry tries N times; with cap=True at most N (stamina's rules)."""
    script = Script(Boom())
    testing = set_testing(True, attempts=attempts, cap=cap)
    with testing, capture_events(RetriesExhausted) as events, pytest.raises(Boom):
        await run(retry(attempts=4, backoff=5.0, clock=clock), kind, script)
    outcome = [(e.attempts, e.reason) for e in events]  # type: ignore[attr-defined]
    assert (script.calls, outcome) == (made, [(made, "attempts")])


async def test_set_testing_attempts_end_with_the_block(kind: str, clock: FakeClock) -> None:
    """Leaving set_testing(True, attempts=1) restores the policies' own attempts (and no test mode)."""
    with set_testing(True, attempts=1):
        pass
    script = Script(Boom(), "ok")
    result = await run(retry(attempts=2, backoff=0.5, clock=clock), kind, script)
    assert (result, clock.sleeps) == ("ok", [0.5])


@pytest.mark.parametrize(
    ("kwargs", "error", "param"),
    [
        ({"attempts": 0}, ValueError, "attempts"),
        ({"attempts": 1.5}, TypeError, "attempts"),
        ({"attempts": True}, TypeError, "attempts"),
        ({"cap": True}, ValueError, "cap"),
        ({"attempts": 2, "cap": 1}, TypeError, "cap"),
    ],
    ids=repr,
)
def test_set_testing_rejects_bad_attempts(kwargs: dict[str, Any], error: type[Exception], param: str) -> None:
    """Bad attempts=/cap= raise naming the parameter, and leave the mode as it was."""
    from resilient._config import is_testing

    with pytest.raises(error, match=param):
        set_testing(True, **kwargs)
    assert not is_testing()


def test_set_testing_off_takes_no_attempts() -> None:
    """attempts= only makes sense with test mode on: set_testing(False, attempts=2) raises naming it."""
    with pytest.raises(ValueError, match="attempts"):
        set_testing(False, attempts=2)


def test_set_testing_restores_the_previous_attempts(clock: FakeClock) -> None:
    """Nested set_testing blocks restore the enclosing block's attempts, not just its mode."""
    script = Script(Boom())

    @retry(attempts=5, backoff=0, clock=clock)
    def op() -> None:
        script()

    with set_testing(True, attempts=2):
        with set_testing(True, attempts=3):
            pass
        with pytest.raises(Boom):
            op()
    assert script.calls == 2


async def test_set_testing_keeps_the_deadline_decisions(kind: str, clock: FakeClock) -> None:
    """Test mode skips waits, but gives up where a real run would (planned waits count)."""
    script = Script(Boom())
    with set_testing(True), pytest.raises(Boom):
        await run(retry(attempts=10, backoff=2.0, deadline=3.0, clock=clock), kind, script)
    assert script.calls == 2


def test_set_testing_context_manager_restores_the_previous_mode() -> None:
    """set_testing used as a context manager restores the mode that was active before it."""
    from resilient._config import is_testing

    with set_testing(True):
        with set_testing(False):
            assert not is_testing()
        assert is_testing()
    assert not is_testing()


# --- budget ----------------------------------------------------------------------


async def test_empty_budget_gives_up_with_reason_budget(kind: str, clock: FakeClock) -> None:
    """When the budget has no retry left, retry gives up at once with reason "budget"."""
    budget = RetryBudget(ratio=0.1, min_per_second=0, capacity_calls=1, clock=clock)
    script = Script(Boom())
    with capture_events(RetriesExhausted) as events, pytest.raises(Boom):
        await run(retry(attempts=5, backoff=0, budget=budget, clock=clock), kind, script)
    assert (script.calls, [e.reason for e in events]) == (2, ["budget"])  # type: ignore[attr-defined]


async def test_budget_is_shared_across_calls(kind: str, clock: FakeClock) -> None:
    """Retries spent by one call are not available to the next."""
    budget = RetryBudget(ratio=0.1, min_per_second=0, capacity_calls=1, clock=clock)
    policy = retry(attempts=5, backoff=0, budget=budget, clock=clock)
    first, second = Script(Boom()), Script(Boom())
    for script in (first, second):
        with pytest.raises(Boom):
            await run(policy, kind, script)
    assert (first.calls, second.calls) == (2, 1)


# --- decorating and executing ----------------------------------------------------


async def test_decorated_function_keeps_signature_and_asyncness(kind: str, clock: FakeClock) -> None:
    """The wrapper has the function's signature, name and async-ness."""

    def sync_target(a: int, *, b: str = "x") -> str:
        """Doc."""
        return b * a

    async def async_target(a: int, *, b: str = "x") -> str:
        """Doc."""
        return b * a

    target: Callable[..., Any] = async_target if kind == "async" else sync_target
    wrapped = retry(clock=clock)(target)
    assert inspect.signature(wrapped) == inspect.signature(target)
    assert inspect.iscoroutinefunction(wrapped) == (kind == "async")
    assert (wrapped.__name__, wrapped.__doc__) == (target.__name__, "Doc.")
    assert getattr(wrapped, "__wrapped__", None) is target
    assert await invoke(wrapped, 2, b="y") == "yy"


async def test_call_runs_a_function_under_the_policy(kind: str, clock: FakeClock) -> None:
    """policy.call(fn, *args, **kwargs) retries like the decorator."""
    script = Script(Boom(), "ok")
    result = await invoke(retry(backoff=0, clock=clock).call, make_fn(kind, script), 1, k=2)
    assert (result, script.args) == ("ok", [((1,), {"k": 2})] * 2)


async def test_methods_classmethods_and_staticmethods_are_retried(clock: FakeClock) -> None:
    """retry binds correctly on methods, classmethods and staticmethods."""
    policy = retry(attempts=2, backoff=0, clock=clock)
    script = Script(Boom(), "a", Boom(), "b", Boom(), "c")

    class Service:
        @policy
        async def method(self, x: int) -> tuple[object, int, object]:
            return (self, x, script())

        @policy
        @classmethod
        async def cm(cls, x: int) -> tuple[object, int, object]:
            return (cls, x, script())

        @staticmethod
        @policy
        async def sm(x: int) -> tuple[int, object]:
            return (x, script())

    service = Service()
    assert await service.method(1) == (service, 1, "a")
    assert await Service.cm(2) == (Service, 2, "b")
    assert await service.sm(3) == (3, "c")


async def test_retry_is_not_an_async_context_manager(clock: FakeClock) -> None:
    """`async with retry()` is not supported (a block cannot be re-run): TypeError."""
    with pytest.raises((TypeError, AttributeError)):
        async with retry(clock=clock):  # type: ignore[attr-defined]
            pass


# --- configuration errors --------------------------------------------------------

BAD_CONFIG: list[tuple[dict[str, Any], type[Exception], str]] = [
    ({"attempts": 0}, ValueError, "attempts"),
    ({"attempts": -1}, ValueError, "attempts"),
    ({"attempts": "3"}, TypeError, "attempts"),
    ({"attempts": 3.0}, TypeError, "attempts"),
    ({"attempts": True}, TypeError, "attempts"),
    ({"attempts": None}, TypeError, "attempts"),
    ({"on": KeyboardInterrupt}, ValueError, "on"),
    ({"on": asyncio.CancelledError}, ValueError, "on"),
    ({"on": SystemExit}, ValueError, "on"),
    ({"on": GeneratorExit}, ValueError, "on"),
    ({"on": (ValueError, KeyboardInterrupt)}, ValueError, "on"),
    ({"on": "x"}, TypeError, "on"),
    ({"on": (ValueError, "x")}, TypeError, "on"),
    ({"on": (ValueError, int)}, TypeError, "on"),
    ({"on": ()}, ValueError, "on"),
    ({"on": None}, TypeError, "on"),
    ({"on_result": 3}, TypeError, "on_result"),
    ({"backoff": -1}, ValueError, "backoff"),
    ({"backoff": math.nan}, ValueError, "backoff"),
    ({"backoff": math.inf}, ValueError, "backoff"),
    ({"backoff": timedelta(seconds=-1)}, ValueError, "backoff"),
    ({"backoff": "x"}, TypeError, "backoff"),
    ({"backoff": True}, TypeError, "backoff"),
    ({"deadline": 0}, ValueError, "deadline"),
    ({"deadline": -1}, ValueError, "deadline"),
    ({"deadline": math.nan}, ValueError, "deadline"),
    ({"deadline": math.inf}, ValueError, "deadline"),
    ({"deadline": "1"}, TypeError, "deadline"),
    ({"budget": object()}, TypeError, "budget"),
    ({"name": ""}, ValueError, "name"),
    ({"name": 3}, TypeError, "name"),
    ({"clock": object()}, TypeError, "clock"),
    ({"bus": object()}, TypeError, "bus"),
]


@pytest.mark.parametrize(
    ("config", "error", "param"),
    BAD_CONFIG,
    ids=[f"{next(iter(c))}={next(iter(c.values()))!r}" for c, _, _ in BAD_CONFIG],
)
def test_bad_configuration_fails_at_factory_time_naming_the_parameter(
    config: dict[str, Any], error: type[Exception], param: str
) -> None:
    """Bad configuration raises TypeError/ValueError from retry(...), the message naming the parameter."""
    with pytest.raises(error, match=rf"^{param}\b"):
        retry(**config)


def test_positional_configuration_is_rejected() -> None:
    """Every retry parameter is keyword-only."""
    with pytest.raises(TypeError):
        retry(3)  # type: ignore[call-arg]


def test_on_base_exception_and_exception_group_are_accepted() -> None:
    """on=BaseException and on=BaseExceptionGroup are valid configurations."""
    assert retry(on=BaseException).on is BaseException
    assert retry(on=BaseExceptionGroup).on is BaseExceptionGroup


# --- results: a result-aware backoff, a result's Retry-After, long_retry_after ---------


class Answer:
    """A result that says how long to wait (the way an HTTP response's header does)."""

    def __init__(self, status: int, wait: float | None = None) -> None:
        self.status = status
        self.wait = wait

    def __repr__(self) -> str:
        return f"Answer({self.status})"


class RetryOn503:
    """An on_result predicate with a retry_after(result) method, like resilient.http's."""

    def __init__(self) -> None:
        self.hints: list[object] = []

    def __call__(self, result: Answer) -> bool:
        return result.status == 503

    def retry_after(self, result: Answer) -> float | None:
        self.hints.append(result)
        return result.wait


async def test_three_parameter_backoff_sees_the_result(kind: str, clock: FakeClock) -> None:
    """A callable (attempt, exc, result) gets the retried result (exc None) or the exception (result None)."""
    seen: list[tuple[int, BaseException | None, object]] = []

    def delays(attempt: int, exc: BaseException | None, result: object) -> float:
        seen.append((attempt, exc, result))
        return 1.0 if exc is not None else float(getattr(result, "status", 0)) / 100

    error, busy = Boom(), Answer(503)
    script = Script(busy, error, Answer(200))
    got = await run(
        retry(attempts=3, on=Boom, on_result=lambda r: r.status == 503, backoff=delays, clock=clock),
        kind,
        script,
    )
    assert (got.status, seen, clock.sleeps) == (200, [(1, None, busy), (2, error, None)], [5.03, 1.0])


async def test_two_parameter_backoff_still_gets_none_for_a_result(kind: str, clock: FakeClock) -> None:
    """The historical (attempt, exc_or_none) form is unchanged: None, and no result, on a result retry."""
    seen: list[tuple[Any, ...]] = []

    def delays(*args: Any) -> float:
        seen.append(args)
        return 0.5

    await run(retry(on_result=lambda r: r is None, backoff=delays, clock=clock), kind, Script(None, 1))
    assert (seen, clock.sleeps) == ([(1, None)], [0.5])


def test_which_callables_get_the_result() -> None:
    """Only a third positional parameter without a default selects the (attempt, exc, result) form."""

    def two(attempt: int, exc: BaseException | None) -> float:
        return 0.0

    def three(attempt: int, exc: BaseException | None, result: object) -> float:
        return 0.0

    def defaulted(attempt: int, exc: BaseException | None, scale: float = 2.0) -> float:
        return scale

    def star(*args: Any) -> float:
        return 0.0

    class Method:
        def __call__(self, attempt: int, exc: BaseException | None, result: object) -> float:
            return 0.0

    forms = {
        "two": two,
        "three": three,
        "defaulted": defaulted,
        "star": star,
        "method": Method(),
        "partial": __import__("functools").partial(three, 1),
        "lambda3": lambda a, e, r: 0.0,
        "builtin": max,  # no signature to read: the historical form
    }
    assert {k: backoff.FromCallable(v).takes_result for k, v in forms.items()} == {
        "two": False,
        "three": True,
        "defaulted": False,
        "star": False,
        "method": True,
        "partial": False,
        "lambda3": True,
        "builtin": False,
    }


async def test_a_defaulted_third_parameter_keeps_its_default(kind: str, clock: FakeClock) -> None:
    """A backoff (attempt, exc, scale=2.0) is called with two arguments, as before, so scale stays 2.0."""

    def delays(attempt: int, exc: BaseException | None, scale: float = 2.0) -> float:
        return scale

    await run(retry(on_result=lambda r: r is None, backoff=delays, clock=clock), kind, Script(None, 1))
    assert clock.sleeps == [2.0]


async def test_a_strategy_overriding_delay_the_old_way_still_works(kind: str, clock: FakeClock) -> None:
    """A Backoff subclass whose delay() takes no result keeps working for result retries."""

    class Fixed(backoff.Backoff):
        max_delay = 10.0

        def base(self, attempt: int, previous: float | None) -> float:
            return 0.0

        def delay(
            self, attempt: int, previous: float | None = None, exception: BaseException | None = None
        ) -> float:
            return 0.25

    await run(retry(on_result=lambda r: r is None, backoff=Fixed(), clock=clock), kind, Script(None, 1))
    assert clock.sleeps == [0.25]


async def test_a_result_hint_from_the_predicate_is_waited(kind: str, clock: FakeClock) -> None:
    """A predicate with retry_after(result) makes a result retry wait max(backoff, hint)."""
    predicate = RetryOn503()
    busy = Answer(503, wait=2.5)
    got = await run(
        retry(on_result=predicate, backoff=no_jitter(), clock=clock), kind, Script(busy, Answer(200))
    )
    assert (got.status, clock.sleeps, predicate.hints) == (200, [2.5], [busy])


@pytest.mark.parametrize("hint", [None, "3", math.nan, -4.0, True])
async def test_an_unusable_result_hint_falls_back_to_the_backoff(
    kind: str, clock: FakeClock, hint: Any
) -> None:
    """A result hint that is not a finite number falls back to the backoff delay (a negative one is 0)."""
    await run(
        retry(on_result=RetryOn503(), backoff=no_jitter(), clock=clock),
        kind,
        Script(Answer(503, wait=hint), Answer(200)),
    )
    assert clock.sleeps == pytest.approx([0.1])


async def test_a_failing_result_hint_is_ignored(kind: str, clock: FakeClock) -> None:
    """A retry_after(result) that raises is treated as no hint: the result is not lost over it."""

    class Broken(RetryOn503):
        def retry_after(self, result: Answer) -> float | None:
            raise KeyError("no header")

    got = await run(
        retry(on_result=Broken(), backoff=no_jitter(), clock=clock), kind, Script(Answer(503), Answer(200))
    )
    assert got.status == 200
    assert clock.sleeps == pytest.approx([0.1])


async def test_a_result_hint_beyond_max_delay_gives_up_with_the_result(kind: str, clock: FakeClock) -> None:
    """A result asking for more than max_delay ends the retries at once; that result is returned."""
    busy = Answer(503, wait=60)
    script = Script(busy, Answer(200))
    with capture_events(RetriesExhausted) as events:
        got = await run(retry(on_result=RetryOn503(), backoff=no_jitter(), clock=clock), kind, script)
    assert (got, script.calls, clock.sleeps) == (busy, 1, [])
    assert [(e.reason, e.exception) for e in events] == [("retry_after", None)]  # type: ignore[attr-defined]


async def test_long_retry_after_cap_waits_max_delay_for_an_exception(kind: str, clock: FakeClock) -> None:
    """With long_retry_after="cap", a hint beyond max_delay waits max_delay and retries."""
    with capture_events(RetryScheduled) as events:
        got = await run(
            retry(backoff=no_jitter(), long_retry_after="cap", clock=clock), kind, Script(Throttled(60), "ok")
        )
    assert (got, clock.sleeps, [e.delay for e in events]) == ("ok", [10.0], [10.0])  # type: ignore[attr-defined]


async def test_long_retry_after_cap_waits_max_delay_for_a_result(kind: str, clock: FakeClock) -> None:
    """With long_retry_after="cap", a result's long hint is capped the same way."""
    got = await run(
        retry(on_result=RetryOn503(), backoff=no_jitter(), long_retry_after="cap", clock=clock),
        kind,
        Script(Answer(503, wait=3600), Answer(200)),
    )
    assert (got.status, clock.sleeps) == (200, [10.0])


async def test_a_capped_wait_still_respects_the_deadline(kind: str, clock: FakeClock) -> None:
    """A capped wait that would end past the deadline gives up (reason "deadline") instead."""
    script = Script(Throttled(60), "ok")
    with capture_events(RetriesExhausted) as events, pytest.raises(Throttled):
        await run(retry(backoff=no_jitter(), long_retry_after="cap", deadline=5, clock=clock), kind, script)
    assert (script.calls, clock.sleeps, [e.reason for e in events]) == (1, [], ["deadline"])  # type: ignore[attr-defined]


async def test_long_retry_after_cap_with_an_uncapped_backoff_waits_the_hint(
    kind: str, clock: FakeClock
) -> None:
    """With no max_delay (a callable backoff) there is nothing to cap: the hint is waited in full."""
    await run(
        retry(backoff=lambda a, e: 0.1, long_retry_after="cap", clock=clock),
        kind,
        Script(Throttled(500), "ok"),
    )
    assert clock.sleeps == [500]


@pytest.mark.parametrize(("value", "error"), [("wait", ValueError), ("GIVE_UP", ValueError), (1, TypeError)])
def test_bad_long_retry_after_fails_at_construction(value: Any, error: type[Exception]) -> None:
    """long_retry_after accepts only "give_up" and "cap", naming the parameter otherwise."""
    with pytest.raises(error, match=r"^long_retry_after\b"):
        retry(long_retry_after=value)


async def test_cancelled_while_waiting_a_result_hint(clock: FakeClock) -> None:
    """A cancellation during the wait a result asked for propagates at once; no further attempt is made."""
    waiting = asyncio.Event()

    class Stalling(FakeClock):
        async def sleep(self, seconds: float) -> None:
            self.sleeps.append(seconds)
            waiting.set()
            await asyncio.Event().wait()

    stalling = Stalling()
    script = Script(Answer(503, wait=4.0), Answer(200))
    task = asyncio.create_task(
        run(
            retry(on_result=RetryOn503(), backoff=no_jitter(), clock=stalling),
            "async",
            script,
        )
    )
    await waiting.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (script.calls, stalling.sleeps) == (1, [4.0])
