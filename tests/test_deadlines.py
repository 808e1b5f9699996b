"""Ambient deadlines and the call context: current_call(), remaining(), nesting."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import resilient
from resilient import CallContext, TimeoutExceededError, current_call, pipeline, remaining, retry, timeout
from resilient.testing import FakeClock


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
