"""Ambient deadlines and the call context: current_call(), remaining(), nesting."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

import resilient
from resilient import CallContext, TimeoutExceededError, current_call, pipeline, remaining, retry, timeout
from resilient.events import TimeoutElapsed
from resilient.testing import FakeClock, capture_events


async def start(coro: Any) -> asyncio.Future[Any]:
    """Start *coro* as a task and let it reach its first suspension."""
    task: asyncio.Future[Any] = asyncio.ensure_future(coro)
    for _ in range(3):
        await asyncio.sleep(0)
    return task


# --- outside any call -------------------------------------------------------------------


def test_current_call_none_outside() -> None:
    """current_call() is None outside any pipeline call."""
    assert current_call() is None


def test_remaining_none_outside() -> None:
    """remaining() is None outside any pipeline call."""
    assert remaining() is None


async def test_remaining_none_outside_in_async_code() -> None:
    """remaining() and current_call() are None in async code outside any pipeline call."""
    assert (remaining(), current_call()) == (None, None)


def test_shortcut_exported() -> None:
    """resilient.remaining and resilient.current_call are the public shortcuts."""
    assert (resilient.remaining, resilient.current_call) == (remaining, current_call)


# --- the call context ---------------------------------------------------------------------


def test_current_call_in_sync_function(clock: FakeClock) -> None:
    """current_call() works in a decorated sync function: operation, attempt, no deadline."""

    @retry(clock=clock)
    def op() -> CallContext | None:
        return current_call()

    ctx = op()
    assert ctx is not None
    assert (ctx.operation, ctx.attempt, ctx.deadline, ctx.remaining()) == (op.__qualname__, 1, None, None)


async def test_current_call_in_async_function(clock: FakeClock) -> None:
    """current_call() in a timeout-guarded async function reports the deadline and remaining time."""
    clock.advance(10)

    @timeout(3, clock=clock)
    async def op() -> tuple[str, int, float | None, float | None, float | None]:
        await clock.sleep(1)
        ctx = current_call()
        assert ctx is not None
        return ctx.operation, ctx.attempt, ctx.deadline, ctx.remaining(), remaining()

    assert await op() == (op.__qualname__, 1, 13.0, 2.0, 2.0)


def test_current_call_reset_after_call(clock: FakeClock) -> None:
    """After the call returns, current_call() is None again."""
    retry(clock=clock).call(lambda: None)
    assert current_call() is None


def test_current_call_reset_after_failure(clock: FakeClock) -> None:
    """After the call raises, current_call() is None again."""
    with pytest.raises(ZeroDivisionError):
        retry(attempts=1, clock=clock).call(lambda: 1 / 0)
    assert current_call() is None


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
async def test_attempt_counts_retries(clock: FakeClock, is_async: bool) -> None:
    """current_call().attempt is 1-based and advances with each retry, sync and async."""
    seen: list[int] = []

    def body() -> str:
        ctx = current_call()
        assert ctx is not None
        seen.append(ctx.attempt)
        if ctx.attempt < 3:
            raise ValueError
        return "ok"

    async def abody() -> str:
        return body()

    r = retry(attempts=3, backoff=0.5, clock=clock)
    result = await r.call(abody) if is_async else r.call(body)
    assert (result, seen) == ("ok", [1, 2, 3])


def test_innermost_call_wins(clock: FakeClock) -> None:
    """A decorated function calling another sees the inner call's context, then its own again."""

    @retry(clock=clock)
    def inner() -> str | None:
        ctx = current_call()
        return None if ctx is None else ctx.operation

    @retry(clock=clock)
    def outer() -> tuple[str | None, str | None, str | None]:
        before = current_call()
        seen_inner = inner()
        after = current_call()
        return (
            None if before is None else before.operation,
            seen_inner,
            None if after is None else after.operation,
        )

    assert outer() == (outer.__qualname__, inner.__qualname__, outer.__qualname__)


def test_call_context_operation_via_call(clock: FakeClock) -> None:
    """policy.call reports the called function's qualified name as the operation."""

    def named() -> str | None:
        ctx = current_call()
        return None if ctx is None else ctx.operation

    assert retry(clock=clock).call(named) == named.__qualname__


def test_call_context_repr(clock: FakeClock) -> None:
    """The call context's repr names the operation and attempt."""
    text = retry(clock=clock).call(lambda: repr(current_call()))
    assert "operation='" in text
    assert "attempt=1" in text


# --- deadlines ------------------------------------------------------------------------------


async def test_async_with_sets_deadline(clock: FakeClock) -> None:
    """Inside `async with timeout(2)` remaining() counts down the 2 seconds."""
    async with timeout(2, clock=clock):
        before = remaining()
        await clock.sleep(0.5)
        after = remaining()
    assert (before, after, remaining()) == (2.0, 1.5, None)


async def test_deadline_reaches_nested_decorated_call(clock: FakeClock) -> None:
    """A decorated function called inside a timeout sees the timeout's deadline."""

    @retry(clock=clock)
    async def inner() -> float | None:
        return remaining()

    @timeout(4, clock=clock)
    async def outer() -> float | None:
        await clock.sleep(1)
        return await inner()

    assert await outer() == 3.0


async def test_deadline_reaches_plain_nested_function(clock: FakeClock) -> None:
    """An undecorated helper called inside a timeout also sees the deadline."""

    async def helper() -> float | None:
        return remaining()

    @timeout(4, clock=clock)
    async def outer() -> float | None:
        return await helper()

    assert await outer() == 4.0


async def test_deadline_reaches_sync_call_inside(clock: FakeClock) -> None:
    """A decorated sync function called inside a timeout sees the deadline through current_call()."""

    @retry(clock=clock)
    def inner() -> tuple[float | None, float | None]:
        ctx = current_call()
        assert ctx is not None
        return ctx.deadline, ctx.remaining()

    @timeout(4, clock=clock)
    async def outer() -> tuple[float | None, float | None]:
        return inner()

    assert await outer() == (4.0, 4.0)


async def test_inner_shorter_timeout_narrows(clock: FakeClock) -> None:
    """An inner timeout shorter than the outer narrows the deadline while it runs."""
    async with timeout(5, clock=clock):
        async with timeout(2, clock=clock):
            inside = remaining()
        after = remaining()
    assert (inside, after) == (2.0, 5.0)


async def test_inner_longer_timeout_does_not_extend(clock: FakeClock) -> None:
    """An inner timeout longer than the outer leaves the outer deadline in force."""
    async with timeout(2, clock=clock), timeout(10, clock=clock):
        assert remaining() == 2.0


async def test_inner_longer_outer_error_reaches_caller(clock: FakeClock) -> None:
    """With an inner timeout longer than the outer, the OUTER's error reaches the caller at its deadline."""

    @timeout(10, clock=clock)
    async def inner() -> None:
        await clock.sleep(60)

    @timeout(2, clock=clock)
    async def outer() -> None:
        await inner()

    with pytest.raises(TimeoutExceededError) as info:
        await outer()
    assert (info.value.seconds, clock.monotonic()) == (2.0, 2.0)


async def test_inner_shorter_inner_error_reaches_outer(clock: FakeClock) -> None:
    """With an inner timeout shorter than the outer, the inner's error reaches the caller."""

    @timeout(1, clock=clock)
    async def inner() -> None:
        await clock.sleep(60)

    @timeout(5, clock=clock)
    async def outer() -> None:
        await inner()

    with pytest.raises(TimeoutExceededError) as info:
        await outer()
    assert (info.value.seconds, clock.monotonic()) == (1.0, 1.0)


async def test_inner_equal_deadline_reports_outer(clock: FakeClock) -> None:
    """An inner timeout ending exactly at the outer deadline lets the outer report."""
    outer_t = timeout(3, clock=clock)

    @timeout(2, clock=clock)
    async def inner() -> None:
        await clock.sleep(60)

    async def body() -> None:
        await clock.sleep(1)
        await inner()

    with pytest.raises(TimeoutExceededError) as info:
        await outer_t.call(body)
    assert info.value.seconds == 3.0


async def test_inner_longer_timeout_caught_inside_outer(clock: FakeClock) -> None:
    """When the outer deadline passes, code between the timeouts never sees an inner timeout error."""
    caught: list[BaseException] = []

    @timeout(10, clock=clock)
    async def inner() -> None:
        await clock.sleep(60)

    @timeout(2, clock=clock)
    async def outer() -> None:
        try:
            await inner()
        except TimeoutExceededError as exc:  # pragma: no cover - must not happen
            caught.append(exc)
        except asyncio.CancelledError:
            raise

    with pytest.raises(TimeoutExceededError):
        await outer()
    assert caught == []


async def test_pipeline_total_and_per_attempt_timeouts(clock: FakeClock) -> None:
    """timeout > retry > timeout: per-attempt expiries are retried until the total deadline ends it."""
    attempts: list[int] = []

    async def slow() -> None:
        ctx = current_call()
        assert ctx is not None
        attempts.append(ctx.attempt)
        await clock.sleep(60)

    p = pipeline(
        timeout(5, clock=clock),
        retry(attempts=10, on=TimeoutError, backoff=0, clock=clock),
        timeout(2, clock=clock),
    )
    with pytest.raises(TimeoutExceededError) as info:
        await p.call(slow)
    assert (info.value.seconds, attempts, clock.monotonic()) == (5.0, [1, 2, 3], 5.0)


async def test_child_task_inherits_deadline(clock: FakeClock) -> None:
    """A task started inside a timeout inherits the ambient deadline."""

    async def child() -> float | None:
        return remaining()

    async with timeout(3, clock=clock):
        await clock.sleep(1)
        assert await asyncio.create_task(child()) == 2.0


async def test_child_task_inherits_the_deadline_but_not_the_call(clock: FakeClock) -> None:
    """A task started inside a call keeps the ambient deadline; the call's context stays with the call."""

    async def child() -> tuple[str | None, float | None]:
        ctx = current_call()
        return (None if ctx is None else ctx.operation), remaining()

    @timeout(3, clock=clock)
    async def op() -> tuple[str | None, float | None]:
        return await asyncio.create_task(child())

    assert await op() == (None, 3.0)


async def test_child_task_timeout_bounded_by_parent_deadline(clock: FakeClock) -> None:
    """A longer timeout in a child task still expires at the deadline inherited from the parent."""

    async def child() -> None:
        async with timeout(10, clock=clock):
            await asyncio.Event().wait()

    async with timeout(2, clock=clock):
        task = asyncio.create_task(child())
    await asyncio.sleep(0)
    # The parent's own timer is gone; only the child's bounded timer can end it.
    clock.advance(2)
    with pytest.raises(TimeoutExceededError):
        await task
    assert clock.monotonic() == 2.0


async def test_child_task_past_deadline_expires_at_once(clock: FakeClock) -> None:
    """A timeout entered in a child task after the inherited deadline passed expires immediately."""
    results: list[str] = []

    async def child() -> None:
        try:
            async with timeout(10, clock=clock):
                await asyncio.Event().wait()
        except TimeoutExceededError:
            results.append("timeout")

    async with timeout(2, clock=clock):
        clock.advance(3)  # the parent's deadline passes while it runs synchronously
        child_task = asyncio.create_task(child())
    await asyncio.wait_for(child_task, 10)
    assert results == ["timeout"]


async def test_deadline_restored_after_timeout_error(clock: FakeClock) -> None:
    """After a timeout expires, the outer deadline is in force again."""
    async with timeout(10, clock=clock):
        with pytest.raises(TimeoutExceededError):
            await timeout(1, clock=clock).call(clock.sleep, 5)
        assert remaining() == 9.0


async def test_concurrent_calls_have_separate_deadlines(clock: FakeClock) -> None:
    """Two concurrent guarded calls each see their own deadline."""
    gate = asyncio.Event()

    async def body() -> float | None:
        await gate.wait()
        return remaining()

    first = await start(timeout(2, clock=clock).call(body))
    second = await start(timeout(5, clock=clock).call(body))
    gate.set()
    assert list(await asyncio.gather(first, second)) == [2.0, 5.0]


async def test_remaining_never_negative(clock: FakeClock) -> None:
    """remaining() is clamped at zero once the deadline has passed."""
    seen: list[float | None] = []

    async def body() -> None:
        clock.advance(5)  # the timer's cancellation waits for the next await
        seen.append(remaining())
        ctx = current_call()
        seen.append(None if ctx is None else ctx.remaining())
        await asyncio.sleep(0)

    with pytest.raises(TimeoutExceededError):
        await timeout(1, clock=clock).call(body)
    assert seen == [0.0, 0.0]


# --- an inner timeout after the outer's cancellation was swallowed (issue 10, item 8) --


async def nested_in_a_pipeline(outer: float, inner: float, clock: FakeClock, body: Any) -> Any:
    """Run *body* under timeout(outer) > timeout(inner), stacked in one pipeline."""
    return await pipeline(timeout(outer, clock=clock), timeout(inner, clock=clock)).call(body)


async def nested_async_with(outer: float, inner: float, clock: FakeClock, body: Any) -> Any:
    """Run *body* inside ``async with timeout(outer):`` and ``async with timeout(inner):``."""
    async with timeout(outer, clock=clock), timeout(inner, clock=clock):
        return await body()


@pytest.fixture(params=[nested_in_a_pipeline, nested_async_with], ids=["pipeline", "async-with"])
def nested(request: pytest.FixtureRequest) -> Any:
    """Each way of nesting a longer timeout inside a shorter one in one task."""
    return request.param


async def test_inner_timeout_still_enforced_after_the_outer_cancellation_is_swallowed(
    nested: Any, clock: FakeClock
) -> None:
    """A body that swallows the outer timeout's cancellation is still stopped by the inner timeout."""
    reached: list[float] = []

    async def body() -> None:
        try:
            await clock.sleep(2)  # the outer timeout fires at t=1
        except asyncio.CancelledError:
            pass  # swallowed
        await clock.sleep(100)
        reached.append(clock.monotonic())

    with pytest.raises(TimeoutExceededError) as info:
        await nested(1, 5, clock, body)
    task = asyncio.current_task()
    assert task is not None
    # Stopped by the inner timer at t=5; the outer, whose deadline passed, reports itself.
    assert (reached, clock.monotonic(), info.value.seconds, task.cancelling()) == ([], 5.0, 1.0, 0)


async def test_asyncio_timeout_enforces_the_inner_scope_the_same_way(monkeypatch: pytest.MonkeyPatch) -> None:
    """The reference: asyncio.timeout's inner scope stops a body that swallowed the outer's cancellation."""
    loop = asyncio.get_running_loop()
    real_time, skew = loop.time, [0.0]
    # Jump the loop's clock instead of waiting: the timers become due at once.
    monkeypatch.setattr(loop, "time", lambda: real_time() + skew[0])
    reached: list[str] = []

    async def body() -> None:
        skew[0] = 1500.0  # past the outer deadline only
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            pass
        skew[0] = 2500.0  # past the inner deadline too
        await asyncio.Event().wait()
        reached.append("end")

    with pytest.raises(TimeoutError):
        async with asyncio.timeout(1000), asyncio.timeout(2000):
            await body()
    assert reached == []


# --- which deadline fired: the error tells the truth (issue 10, item 16) -------------


async def test_inherited_deadline_expiry_reports_the_inherited_seconds(clock: FakeClock) -> None:
    """A child's timeout(10) cut short by the parent's timeout(2) reports 2 s, the deadline that fired."""

    async def child() -> None:
        async with timeout(10, clock=clock):
            await asyncio.Event().wait()

    with capture_events(TimeoutElapsed) as events:
        async with timeout(2, clock=clock):
            task = asyncio.create_task(child())
        await asyncio.sleep(0)
        clock.advance(2)
        with pytest.raises(TimeoutExceededError) as info:
            await task
    assert (info.value.seconds, [e.seconds for e in events if isinstance(e, TimeoutElapsed)]) == (2.0, [2.0])


async def test_own_shorter_timeout_in_a_child_task_reports_its_own_seconds(clock: FakeClock) -> None:
    """A child task's timeout shorter than the inherited deadline reports its own seconds."""

    async def child() -> None:
        async with timeout(1, clock=clock):
            await asyncio.Event().wait()

    async with timeout(2, clock=clock):
        task = asyncio.create_task(child())
    await asyncio.sleep(0)
    clock.advance(1)
    with pytest.raises(TimeoutExceededError) as info:
        await task
    assert info.value.seconds == 1.0


async def test_timeout_entered_after_the_outer_fired_reports_the_outer_seconds(clock: FakeClock) -> None:
    """A timeout entered after the enclosing one fired (and was swallowed) expires at once, as the outer."""

    async def body() -> None:
        try:
            await clock.sleep(5)
        except asyncio.CancelledError:
            pass  # the outer timeout(1) fired and was swallowed
        async with timeout(30, clock=clock):
            await asyncio.Event().wait()

    with pytest.raises(TimeoutExceededError) as info:
        await timeout(1, clock=clock).call(body)
    assert (info.value.seconds, clock.monotonic()) == (1.0, 1.0)


# --- without_deadline(): work outside the ambient deadline (issue 10, item 16) -----


async def test_without_deadline_hides_the_ambient_deadline_inside_only(clock: FakeClock) -> None:
    """Inside without_deadline() remaining() is None; before and after, the enclosing deadline applies."""
    async with timeout(2, clock=clock):
        before = remaining()
        with resilient.without_deadline():
            inside = remaining()
        after = remaining()
    assert (before, inside, after) == (2.0, None, 2.0)


async def test_task_started_without_deadline_outlives_the_callers_deadline(clock: FakeClock) -> None:
    """A task started inside without_deadline() inherits no deadline: its timeout(10) runs 10 s."""
    seen: list[float | None] = []

    async def background() -> None:
        seen.append(remaining())
        async with timeout(10, clock=clock):
            seen.append(remaining())
            await asyncio.Event().wait()

    async with timeout(2, clock=clock):
        with resilient.without_deadline():
            task = asyncio.create_task(background())
        await asyncio.sleep(0)
    clock.advance(5)  # past the caller's deadline
    await asyncio.sleep(0)
    running = not task.done()
    clock.advance(5)
    with pytest.raises(TimeoutExceededError) as info:
        await task
    assert (seen, running, info.value.seconds) == ([None, 10.0], True, 10.0)


async def test_shielded_work_started_without_deadline_retries_past_the_callers_deadline(
    clock: FakeClock,
) -> None:
    """A shielded task started in without_deadline() keeps retrying after the caller timed out."""
    attempts: list[int] = []

    @retry(attempts=5, on=ConnectionError, backoff=1.0, clock=clock)
    async def save() -> str:
        attempts.append(1)
        if len(attempts) < 4:
            raise ConnectionError
        return "saved"

    @timeout(1.5, clock=clock)
    async def handler() -> str:
        with resilient.without_deadline():
            work = asyncio.create_task(save())
        return await asyncio.shield(work)

    caller = asyncio.create_task(handler())
    with pytest.raises(TimeoutExceededError):
        await caller
    work = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert len(work) == 1
    assert await work[0] == "saved"
    assert len(attempts) == 4  # with the caller's deadline it would have given up after 2


async def test_without_deadline_restores_the_deadline_after_an_error(clock: FakeClock) -> None:
    """An exception leaving the block still restores the enclosing deadline."""
    async with timeout(2, clock=clock):
        with pytest.raises(ValueError), resilient.without_deadline():
            raise ValueError
        assert remaining() == 2.0


def test_without_deadline_outside_any_deadline_is_harmless() -> None:
    """Outside any timeout the block changes nothing: remaining() stays None."""
    with resilient.without_deadline():
        assert remaining() is None
    assert remaining() is None


# --- remaining(default=...): never hand None to a client (issue 10, item 17) -------


def test_remaining_default_outside_any_deadline() -> None:
    """remaining(default=5.0) is 5.0 where no deadline applies (remaining() alone stays None)."""
    assert (remaining(default=5.0), remaining(default=timedelta(seconds=3)), remaining()) == (5.0, 3.0, None)


async def test_remaining_default_is_ignored_under_a_deadline(clock: FakeClock) -> None:
    """Under a deadline remaining(default=...) is the time left, shorter or longer than the default."""
    async with timeout(2, clock=clock):
        assert (remaining(default=5.0), remaining(default=0.5)) == (2.0, 2.0)


async def test_call_context_remaining_takes_a_default(clock: FakeClock) -> None:
    """CallContext.remaining(default=...) behaves like resilient.remaining(default=...)."""

    @retry(attempts=1)
    async def op() -> float:
        ctx = current_call()
        assert ctx is not None
        return ctx.remaining(default=5.0)

    assert await op() == 5.0
    assert await timeout(2, clock=clock).call(op) == 2.0


async def test_remaining_default_never_passes_none_to_httpx() -> None:
    """The documented idiom keeps httpx's own 5 s timeout outside any deadline (None would disable it)."""
    httpx = pytest.importorskip("httpx")
    seen: list[object] = []

    def handler(request: Any) -> Any:
        seen.append(request.extensions["timeout"])
        return httpx.Response(200)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        await client.get("http://api/", timeout=remaining(default=5.0))
    assert seen == [{"connect": 5.0, "read": 5.0, "write": 5.0, "pool": 5.0}]


@pytest.mark.parametrize(
    ("default", "error"),
    [("5", TypeError), (True, TypeError), (float("nan"), ValueError), (-1.0, ValueError)],
    ids=["str", "bool", "nan", "negative"],
)
def test_remaining_bad_default_names_the_parameter(default: Any, error: type[Exception]) -> None:
    """A default that is not seconds >= 0 raises, naming `default`, even where no deadline applies."""
    with pytest.raises(error, match="default"):
        remaining(default=default)
