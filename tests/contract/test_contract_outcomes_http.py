"""Black-box contract checks of issue 12 parts 4 (HTTP Retry-After) and 5 (outcomes), clause by clause."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from resilient import (
    FailedResult,
    Outcome,
    TimeoutExceededError,
    backoff,
    fallback,
    gather_outcomes,
    outcome,
    retry,
    timeout,
)
from resilient.events import FallbackUsed, RetriesExhausted
from resilient.http import RetryableHTTPError, parse_retry_after, raise_for_retryable, retryable_status
from resilient.testing import FakeClock, capture_events


def mock(*answers: tuple[int, dict[str, str]]) -> httpx.AsyncClient:
    """An httpx client whose transport plays back *answers*, the last one forever."""
    seen: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        status, headers = answers[min(len(seen), len(answers) - 1)]
        seen.append(status)
        return httpx.Response(status, headers=headers)

    return httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url="https://api.test")


# --- 4. HTTP Retry-After ------------------------------------------------------------------


def test_parse_delta_seconds_and_http_date_capped_bad_values_ignored() -> None:
    """Delta-seconds and HTTP-dates are read, capped, and bad values ignored (None)."""
    now = 1445412480.0  # Wed, 21 Oct 2015 07:28:00 GMT
    assert parse_retry_after("5") == 5.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=lambda: now) == 10.0
    assert parse_retry_after("99999", cap=30) == 30.0
    assert [parse_retry_after(v) for v in ("-1", "soon", "", None)] == [None, None, None, None]


async def test_the_exception_carries_it_and_retry_on_honours_it() -> None:
    """RetryableHTTPError.retry_after is waited through retry(on=...)'s existing retry_after rule."""
    clock = FakeClock()
    async with mock((429, {"Retry-After": "3"}), (200, {})) as client:
        policy = retry(on=RetryableHTTPError, backoff=backoff.exponential(max_delay=10), clock=clock)
        response = await policy.call(checked, client)
    assert (response.status_code, clock.sleeps) == (200, [3.0])


async def checked(client: httpx.AsyncClient) -> httpx.Response:
    """GET / and raise RetryableHTTPError for a 429 or 503."""
    return raise_for_retryable(await client.get("/"))


async def test_on_result_retries_honour_it() -> None:
    """retry(on_result=retryable_status()) waits the response's own Retry-After."""
    clock = FakeClock()
    async with mock((503, {"Retry-After": "4"}), (200, {})) as client:
        policy = retry(on_result=retryable_status(), backoff=backoff.exponential(max_delay=10), clock=clock)
        response = await policy.call(client.get, "/")
    assert (response.status_code, clock.sleeps) == (200, [4.0])


async def test_the_backoff_sees_the_result_not_none() -> None:
    """A result-aware backoff receives the retried response."""
    clock, seen = FakeClock(), []

    def delay(attempt: int, exc: BaseException | None, result: Any) -> float:
        seen.append(result.status_code)
        return 0.5

    async with mock((503, {}), (200, {})) as client:
        await retry(on_result=retryable_status(), backoff=delay, clock=clock).call(client.get, "/")
    assert (seen, clock.sleeps) == ([503], [0.5])


@pytest.mark.parametrize(("mode", "sleeps", "status"), [("give_up", [], 429), ("cap", [10.0], 200)])
async def test_give_up_or_cap_when_a_hint_exceeds_the_cap(
    mode: Any, sleeps: list[float], status: int
) -> None:
    """A hint beyond max_delay gives up at once by default, or waits max_delay with "cap"."""
    clock = FakeClock()
    async with mock((429, {"Retry-After": "120"}), (200, {})) as client:
        policy = retry(
            on_result=retryable_status(),
            backoff=backoff.exponential(max_delay=10),
            long_retry_after=mode,
            clock=clock,
        )
        with capture_events(RetriesExhausted) as events:
            response = await policy.call(client.get, "/")
    assert (response.status_code, clock.sleeps) == (status, sleeps)
    assert [e.reason for e in events if isinstance(e, RetriesExhausted)] == (
        ["retry_after"] if mode == "give_up" else []
    )


async def test_fallback_on_a_result() -> None:
    """fallback(on_result=...) replaces a matching result and reports it as a FailedResult."""
    async with mock((503, {})) as client:
        with capture_events(FallbackUsed) as events:
            got = await fallback("cached", on_result=retryable_status({503})).call(client.get, "/")
    assert got == "cached"
    assert [type(e.exception) for e in events if isinstance(e, FallbackUsed)] == [FailedResult]


async def test_a_cancelled_wait_for_a_hint_is_never_retried() -> None:
    """A cancellation during the wait the server asked for propagates; no further request."""
    waiting, requests = asyncio.Event(), []

    class Blocking(FakeClock):
        async def sleep(self, seconds: float) -> None:
            waiting.set()
            await asyncio.Event().wait()

    async def get() -> httpx.Response:
        requests.append(1)
        return httpx.Response(429, headers={"Retry-After": "2"})

    task = asyncio.create_task(retry(on_result=retryable_status(), clock=Blocking()).call(get))
    await waiting.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert requests == [1]


# --- 5. Outcomes -------------------------------------------------------------------------


async def test_outcome_holds_a_value_or_an_exception() -> None:
    """outcome(aw) gives .ok, .value, .exception and .unwrap()."""

    async def fails() -> int:
        raise KeyError("k")

    good, bad = await outcome(asyncio.sleep(0, result=1)), await outcome(fails())
    assert (good.ok, good.value, good.exception, good.unwrap()) == (True, 1, None, 1)
    assert (bad.ok, bad.value, type(bad.exception)) == (False, None, KeyError)
    with pytest.raises(KeyError):
        bad.unwrap()


@pytest.mark.parametrize("error", [asyncio.CancelledError(), KeyboardInterrupt(), SystemExit()])
async def test_outcome_never_captures_control_flow(error: BaseException) -> None:
    """Cancellation, KeyboardInterrupt and SystemExit propagate as the same object."""

    async def raises() -> None:
        raise error

    with pytest.raises(BaseException) as info:
        await outcome(raises())
    assert info.value is error


async def test_gather_outcomes_one_failure_or_timeout_never_sinks_the_others() -> None:
    """Failures and timeouts are outcomes in order; the other awaitables finish."""
    clock = FakeClock()

    @timeout(1, clock=clock)
    async def hangs() -> None:
        await asyncio.Event().wait()

    async def fails() -> None:
        raise ValueError("x")

    async def slow() -> str:
        await clock.sleep(5)
        return "slow"

    a, b, c = await gather_outcomes(hangs(), fails(), slow())
    assert (type(a.exception), type(b.exception), c) == (TimeoutExceededError, ValueError, Outcome("slow"))


async def test_a_caller_timeout_cancels_and_awaits_every_child() -> None:
    """The caller's own timeout (a cancellation) cancels every child and waits for each before it raises."""
    clock, finished = FakeClock(), []

    async def child(name: str) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.sleep(0)
            finished.append(name)

    async def ticker() -> None:
        await clock.sleep(2)  # moves virtual time past the caller's timeout

    @timeout(1, clock=clock)
    async def caller() -> object:
        return await gather_outcomes(child("a"), child("b"))

    task = asyncio.create_task(caller())
    await asyncio.sleep(0)
    await ticker()
    with pytest.raises(TimeoutExceededError):
        await task
    assert sorted(finished) == ["a", "b"]
    assert asyncio.all_tasks() == {asyncio.current_task()}
