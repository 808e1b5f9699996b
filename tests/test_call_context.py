"""How the running call's context is found, shared and forked."""

from __future__ import annotations

import asyncio

import pytest

from resilient import CallContext, current_call, fallback, pipeline, retry, subscribe
from resilient.events import RetryScheduled
from resilient.testing import FakeClock


def _helper() -> CallContext | None:
    return current_call()


async def test_context_is_found_from_functions_the_call_calls(clock: FakeClock) -> None:
    """current_call() works from a helper the protected function calls, not only from the function."""

    @retry(clock=clock)
    async def op() -> CallContext | None:
        return _helper()

    ctx = await op()
    assert ctx is not None
    assert ctx.operation == op.__qualname__


def test_context_is_found_in_sync_code(clock: FakeClock) -> None:
    """current_call() works in a sync protected function and its helpers."""

    @retry(clock=clock)
    def op() -> CallContext | None:
        return _helper()

    ctx = op()
    assert ctx is not None
    assert ctx.attempt == 1


async def test_attempts_are_numbered_when_nobody_observes(clock: FakeClock) -> None:
    """Without subscribers the first attempt's context is shared, yet later attempts see their number."""
    seen: list[int] = []

    @retry(attempts=3, backoff=0, clock=clock)
    async def op() -> str:
        ctx = current_call()
        assert ctx is not None
        seen.append(ctx.attempt)
        if len(seen) < 3:
            raise ConnectionError
        return "ok"

    assert await op() == "ok"
    assert seen[:3] == [1, 2, 3]


async def test_a_retried_call_never_changes_the_shared_context(clock: FakeClock) -> None:
    """A retry forks its own context, so the next call's first attempt is attempt 1 again."""
    firsts: list[int] = []
    failures = iter([True, True, False, False])

    @retry(attempts=3, backoff=0, clock=clock)
    async def op() -> None:
        ctx = current_call()
        assert ctx is not None
        firsts.append(ctx.attempt)
        if next(failures):
            raise ConnectionError

    await op()
    await op()
    assert firsts == [1, 2, 3, 1]


async def test_observed_calls_get_a_context_each(clock: FakeClock) -> None:
    """While a subscriber listens, concurrent calls see distinct contexts."""
    release = asyncio.Event()

    @retry(clock=clock)
    async def op() -> CallContext | None:
        ctx = current_call()
        await release.wait()
        return ctx

    with subscribe(lambda e: None, RetryScheduled):
        tasks = [asyncio.create_task(op()) for _ in range(2)]
        await asyncio.sleep(0)
        release.set()
        a, b = await asyncio.gather(*tasks)
    assert a is not None
    assert b is not None
    assert a is not b
    assert not a.shared


async def test_subscribing_later_takes_effect_on_the_next_call(clock: FakeClock) -> None:
    """A subscription made after a function was first called still sees its events."""
    events: list[object] = []

    @retry(attempts=2, backoff=0, clock=clock)
    async def op(fail: bool) -> None:
        if fail:
            raise ConnectionError

    await op(False)
    with subscribe(events.append, RetryScheduled), pytest.raises(ConnectionError):
        await op(True)
    assert [type(e) for e in events] == [RetryScheduled]


async def test_an_empty_pipeline_still_has_a_context() -> None:
    """A pipeline with no policies runs the call with a context too."""

    async def op() -> CallContext | None:
        return current_call()

    ctx = await pipeline().call(op)
    assert ctx is not None
    assert ctx.operation == op.__qualname__


async def test_retry_does_not_retry_a_swallowed_cancellation(clock: FakeClock) -> None:
    """An attempt that turns its task's cancellation into an ordinary error is not retried."""
    calls = 0
    started = asyncio.Event()

    @retry(attempts=5, backoff=0, clock=clock)
    async def op() -> None:
        nonlocal calls
        calls += 1
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            raise ConnectionError("converted") from None

    task = asyncio.create_task(op())
    await started.wait()
    task.cancel()
    with pytest.raises(ConnectionError):
        await task
    assert calls == 1


async def test_a_method_fallback_handler_receives_self(clock: FakeClock) -> None:
    """Called on an instance, a method's fallback handler gets the instance as its first argument."""

    class Client:
        def __init__(self) -> None:
            self.cache = "cached"

        @fallback(lambda exc, self, key: f"{self.cache}:{key}")
        async def get(self, key: str) -> str:
            raise ConnectionError(key)

    assert await Client().get("k") == "cached:k"
