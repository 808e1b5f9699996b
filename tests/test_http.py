"""Tests of ``resilient.http``: parsing Retry-After, the retryable error, retry honouring it."""

from __future__ import annotations

import asyncio
import calendar
import pickle
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import httpx
import pytest
from freezegun import freeze_time
from hypothesis import given
from hypothesis import strategies as st

from resilient import (
    CircuitState,
    FailedResult,
    RateLimitedError,
    ResilientError,
    backoff,
    bulkhead,
    circuit_breaker,
    fallback,
    gate,
    pipeline,
    rate_limiter,
    retry,
    set_testing,
    timeout,
)
from resilient.events import RetriesExhausted
from resilient.http import (
    DEFAULT_CAP,
    RETRYABLE_STATUSES,
    RetryableHTTPError,
    RetryableStatus,
    parse_retry_after,
    raise_for_retryable,
    retry_after_of,
    retryable_status,
)
from resilient.testing import FakeClock, capture_events

DATE = "Wed, 21 Oct 2015 07:28:00 GMT"
DATE_EPOCH = float(calendar.timegm((2015, 10, 21, 7, 28, 0)))


def at(epoch: float) -> Callable[[], float]:
    """A wall clock stopped at *epoch*."""
    return lambda: epoch


# --- parse_retry_after -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("120", 120.0), ("0", 0.0), (" 5 ", 5.0), ("1.5", 1.5), (b"7", 7.0), ("007", 7.0)],
)
def test_delta_seconds_are_read_as_seconds(value: str | bytes, seconds: float) -> None:
    """Delta-seconds (digits, optionally with a fraction; str or bytes) are the wait in seconds."""
    assert parse_retry_after(value) == seconds


@pytest.mark.parametrize(
    "value",
    [None, "", "   ", "-1", "+5", "1e3", "inf", "nan", "1_000", "0x10", "5s", "soon", "1.", ".5", "١٢", 42],
)
def test_missing_or_malformed_values_are_ignored(value: Any) -> None:
    """A missing, negative, signed, exponent, non-ASCII-digit or garbage value is None, never an error."""
    assert parse_retry_after(value) is None


def test_hints_longer_than_the_cap_are_cut_to_it() -> None:
    """A hint beyond cap (default 300 s) returns cap; an absurdly long digit string too."""
    assert (parse_retry_after("1000", cap=60), parse_retry_after("86400"), parse_retry_after("9" * 400)) == (
        60.0,
        DEFAULT_CAP,
        DEFAULT_CAP,
    )


@pytest.mark.parametrize(
    "value",
    [
        DATE,
        "Wednesday, 21-Oct-15 07:28:00 GMT",
        "Wed Oct 21 07:28:00 2015",
        "Wed, 21 Oct 2015 07:28:00 -0000",
    ],
    ids=["imf-fixdate", "rfc850", "asctime", "minus-zero"],
)
def test_http_date_is_seconds_from_now(value: str) -> None:
    """Each HTTP-date format is converted against the injected wall clock (asctime and -0000 as UTC)."""
    assert parse_retry_after(value, now=at(DATE_EPOCH - 30)) == 30.0


def test_http_date_in_the_past_means_now() -> None:
    """A date that has passed asks for no wait at all: 0.0, not None."""
    assert parse_retry_after(DATE, now=at(DATE_EPOCH + 3600)) == 0.0


def test_http_date_far_ahead_is_capped() -> None:
    """A date years away is cut to the cap."""
    assert parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", cap=10, now=at(DATE_EPOCH)) == 10.0


@pytest.mark.parametrize("value", ["Wed, 32 Oct 2015 07:28:00 GMT", "1 2 3", "Wed, 21 Foo 2015 07:28:00 GMT"])
def test_impossible_dates_are_ignored(value: str) -> None:
    """A malformed or impossible date is None."""
    assert parse_retry_after(value, now=at(DATE_EPOCH)) is None


def test_http_date_reads_the_wall_clock_by_default() -> None:
    """Without now=, the wall clock (time.time, looked up at call time) is used: freezegun moves it."""
    with freeze_time("2015-10-21 07:27:00", real_asyncio=True):
        assert parse_retry_after(DATE) == 60.0


def test_delta_seconds_never_read_the_clock() -> None:
    """Delta-seconds need no clock: the injected one is not called."""

    def now() -> float:
        raise AssertionError("read the clock")

    assert parse_retry_after("3", now=now) == 3.0


@given(st.one_of(st.text(max_size=40), st.binary(max_size=40), st.none()))
def test_any_value_gives_none_or_seconds_within_the_cap(value: str | bytes | None) -> None:
    """Whatever the header holds, the answer is None or a number in [0, cap], never an exception."""
    seconds = parse_retry_after(value, cap=60, now=at(DATE_EPOCH))
    assert seconds is None or 0.0 <= seconds <= 60.0


async def async_now() -> float:
    """A clock that needs awaiting: the parser reads it synchronously."""
    return 0.0


@pytest.mark.parametrize(
    ("kwargs", "error", "param"),
    [
        ({"cap": -1}, ValueError, "cap"),
        ({"cap": float("nan")}, ValueError, "cap"),
        ({"cap": float("inf")}, ValueError, "cap"),
        ({"cap": 10**400}, ValueError, "cap"),
        ({"cap": "5"}, TypeError, "cap"),
        ({"cap": True}, TypeError, "cap"),
        ({"now": 5}, TypeError, "now"),
        ({"now": 10**5000}, TypeError, "now"),
        ({"now": lambda when: 0.0}, TypeError, "now"),  # read for an HTTP-date only: failed then, or ignored
        ({"now": async_now}, TypeError, "now"),
    ],
)
def test_bad_configuration_is_an_error_naming_the_parameter(
    kwargs: dict[str, Any], error: type[Exception], param: str
) -> None:
    """A bad cap or now raises at once (for every helper), naming the parameter."""
    for build in (
        lambda: parse_retry_after("1", **kwargs),
        lambda: retry_after_of(httpx.Response(200), **kwargs),
        lambda: raise_for_retryable(httpx.Response(200), **kwargs),
        lambda: retryable_status(**kwargs),
    ):
        with pytest.raises(error, match=rf"^{param}\b"):
            build()


# --- reading responses -------------------------------------------------------------------


@dataclass
class Plain:
    """A response-like object with a plain (case-sensitive) dict of headers."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)


def test_retry_after_of_reads_the_header_of_any_response() -> None:
    """httpx responses and plain objects (either header spelling) give their hint; no header gives None."""
    assert [
        retry_after_of(httpx.Response(429, headers={"retry-after": "3"})),
        retry_after_of(Plain(503, {"Retry-After": "4"})),
        retry_after_of(Plain(503, {"retry-after": "5"})),
        retry_after_of(Plain(503)),
        retry_after_of(object()),
    ] == [3.0, 4.0, 5.0, None, None]


def test_raise_for_retryable_raises_with_status_hint_and_response() -> None:
    """A 429 or 503 raises RetryableHTTPError carrying the status, the parsed hint and the response."""
    for status in (429, 503):
        response = httpx.Response(status, headers={"Retry-After": "2"})
        with pytest.raises(RetryableHTTPError) as info:
            raise_for_retryable(response)
        assert (info.value.status, info.value.retry_after, info.value.response) == (status, 2.0, response)


def test_an_int_enum_status_counts() -> None:
    """A status given as an IntEnum (http.HTTPStatus) is read as its number."""
    from http import HTTPStatus

    assert retryable_status()(Plain(HTTPStatus.SERVICE_UNAVAILABLE)) is True


def test_raise_for_retryable_returns_other_responses_unchanged() -> None:
    """A 200, a 404 and a 500 (not retryable by default) come back as the same object."""
    responses = [httpx.Response(200), httpx.Response(404), Plain(500)]
    assert [raise_for_retryable(r) for r in responses] == responses


def test_statuses_are_configurable() -> None:
    """statuses= replaces the default set: 500 raises, 429 then passes."""
    with pytest.raises(RetryableHTTPError):
        raise_for_retryable(Plain(500), statuses={500, 502})
    assert raise_for_retryable(Plain(429), statuses={500, 502}).status == 429
    assert {429, 503} == RETRYABLE_STATUSES


@pytest.mark.parametrize(
    ("statuses", "error"),
    [
        (set(), ValueError),
        ({99}, ValueError),
        ({600}, ValueError),
        ({"503"}, TypeError),
        (503, TypeError),
        ([[503]], TypeError),  # unhashable: frozenset() raised its own TypeError
        ([10**5000], ValueError),  # too long to repr(): the message raised ValueError
        (10**5000, TypeError),
    ],
    ids=["empty", "99", "600", "str", "int", "unhashable", "huge", "huge-bare"],
)
def test_bad_statuses_are_rejected(statuses: Any, error: type[Exception]) -> None:
    """An empty set, a number outside 100..599, a string, a bare int or a list is a configuration error."""
    with pytest.raises(error, match=r"^statuses\b"):
        retryable_status(statuses)
    with pytest.raises(error, match=r"^statuses\b"):
        raise_for_retryable(Plain(200), statuses=statuses)


def test_a_non_response_is_a_clear_error() -> None:
    """Something without an integer status is a TypeError, not a silent 'not retryable'."""
    with pytest.raises(TypeError, match="not an HTTP response"):
        raise_for_retryable("text")
    with pytest.raises(TypeError, match="not an HTTP response"):
        retryable_status()(None)


def test_retryable_status_predicate_and_hint() -> None:
    """The predicate matches retryable statuses and reads the hint with its own cap and clock."""
    predicate = retryable_status({503}, cap=60, now=at(DATE_EPOCH - 90))
    assert isinstance(predicate, RetryableStatus)
    assert [predicate(Plain(503)), predicate(Plain(429)), predicate(httpx.Response(200))] == [
        True,
        False,
        False,
    ]
    assert predicate.retry_after(Plain(503, {"Retry-After": DATE})) == 60.0
    assert predicate.retry_after(Plain(503, {"Retry-After": "later"})) is None
    assert repr(predicate) == "retryable_status([503], cap=60)"


def test_error_message_pickling_and_family() -> None:
    """The error names status and hint, pickles, and is no ResilientError (it is the server's answer)."""
    error = RetryableHTTPError(503, 1.5)
    assert str(error) == "server answered 503 Service Unavailable; retry after 1.5s"
    assert str(RetryableHTTPError(599)) == "server answered 599"
    copy = pickle.loads(pickle.dumps(error))
    assert (type(copy), copy.status, copy.retry_after, copy.response) == (RetryableHTTPError, 503, 1.5, None)
    assert not isinstance(error, ResilientError)


def test_a_breaker_counts_retryable_answers_as_failures(clock: FakeClock) -> None:
    """Unlike this library's own errors with retry_after, a 503 counts as a failure and opens the breaker."""
    breaker = circuit_breaker(failure_threshold=2, clock=clock)

    @breaker
    def call() -> None:
        raise_for_retryable(Plain(503, {"Retry-After": "1"}))

    for _ in range(2):
        with pytest.raises(RetryableHTTPError):
            call()
    assert breaker.state is CircuitState.OPEN


# --- retry honouring Retry-After through httpx.MockTransport ------------------------------


def scripted(*answers: tuple[int, dict[str, str]]) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    """A MockTransport answering each request with the next (status, headers); the requests it saw."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        status, headers = answers[len(seen)]
        seen.append(request)
        return httpx.Response(status, headers=headers, text=f"answer {len(seen)}")

    return httpx.MockTransport(handler), seen


async def test_retry_waits_what_the_server_asked_async(clock: FakeClock) -> None:
    """An async httpx client under retry waits the 429's Retry-After (not the backoff's 0.1 s), then wins."""
    transport, seen = scripted((429, {"Retry-After": "2"}), (200, {}))

    @retry(on=RetryableHTTPError, backoff=backoff.exponential(initial=0.1, max_delay=5), clock=clock)
    async def get(client: httpx.AsyncClient) -> str:
        return raise_for_retryable(await client.get("https://api.test/items")).text

    async with httpx.AsyncClient(transport=transport) as client:
        assert await get(client) == "answer 2"
    assert (clock.sleeps, len(seen)) == ([2.0], 2)


def test_retry_waits_what_the_server_asked_sync(clock: FakeClock) -> None:
    """A sync httpx client under retry waits an HTTP-date hint, measured on the injected wall clock."""
    transport, seen = scripted((503, {"Retry-After": DATE}), (200, {}))

    @retry(on=RetryableHTTPError, backoff=backoff.exponential(initial=0.1, max_delay=5), clock=clock)
    def get(client: httpx.Client) -> str:
        return raise_for_retryable(client.get("https://api.test/items"), now=at(DATE_EPOCH - 3)).text

    with httpx.Client(transport=transport) as client:
        assert get(client) == "answer 2"
    assert (clock.sleeps, len(seen)) == ([3.0], 2)


async def test_a_hint_beyond_max_delay_gives_up_at_once(clock: FakeClock) -> None:
    """A Retry-After longer than the backoff's max_delay makes retry give up after one request."""
    transport, seen = scripted((429, {"Retry-After": "60"}), (200, {}))

    @retry(on=RetryableHTTPError, backoff=backoff.exponential(max_delay=10), clock=clock)
    async def get(client: httpx.AsyncClient) -> str:
        return raise_for_retryable(await client.get("https://api.test/")).text

    async with httpx.AsyncClient(transport=transport) as client:
        with capture_events(RetriesExhausted) as events, pytest.raises(RetryableHTTPError) as info:
            await get(client)
    assert (info.value.retry_after, len(seen), clock.sleeps) == (60.0, 1, [])
    assert [e.reason for e in events if isinstance(e, RetriesExhausted)] == ["retry_after"]


# --- retry(on_result=retryable_status()): the response itself carries the hint --------------


async def test_result_retry_waits_the_responses_retry_after(clock: FakeClock) -> None:
    """on_result=retryable_status() retries a 429 response and waits its Retry-After; the 200 comes back."""
    transport, seen = scripted((429, {"Retry-After": "2"}), (200, {}))

    @retry(on_result=retryable_status(), backoff=backoff.exponential(initial=0.1, max_delay=5), clock=clock)
    async def get(client: httpx.AsyncClient) -> httpx.Response:
        return await client.get("https://api.test/items")

    async with httpx.AsyncClient(transport=transport) as client:
        response = await get(client)
    assert (response.status_code, clock.sleeps, len(seen)) == (200, [2.0], 2)


def test_result_retry_reads_an_http_date_on_the_predicates_clock(clock: FakeClock) -> None:
    """The predicate's now= converts an HTTP-date hint; a sync client retries after it."""
    transport, _ = scripted((503, {"Retry-After": DATE}), (200, {}))

    @retry(
        on_result=retryable_status(now=at(DATE_EPOCH - 4)),
        backoff=backoff.exponential(max_delay=5),
        clock=clock,
    )
    def get(client: httpx.Client) -> httpx.Response:
        return client.get("https://api.test/")

    with httpx.Client(transport=transport) as client:
        assert get(client).status_code == 200
    assert clock.sleeps == [4.0]


async def test_a_long_result_hint_gives_up_or_caps(clock: FakeClock) -> None:
    """A 60 s hint beyond max_delay=10: by default the 429 comes back at once; with "cap", 10 s is waited."""
    for mode, sleeps, status in (("give_up", [], 429), ("cap", [10.0], 200)):
        transport, _ = scripted((429, {"Retry-After": "60"}), (200, {}))
        policy = retry(
            on_result=retryable_status(),
            backoff=backoff.exponential(max_delay=10),
            long_retry_after=mode,  # type: ignore[arg-type]
            clock=clock,
        )
        clock.sleeps.clear()
        async with httpx.AsyncClient(transport=transport) as client:
            response = await policy.call(client.get, "https://api.test/")
        assert (response.status_code, clock.sleeps) == (status, sleeps)


async def test_a_result_aware_backoff_sees_the_response(clock: FakeClock) -> None:
    """A three-parameter backoff gets the retried response (here: waits longer on a 503 than on a 429)."""
    transport, _ = scripted((503, {}), (429, {}), (200, {}))
    seen: list[int] = []

    def by_status(attempt: int, exc: BaseException | None, result: httpx.Response | None) -> float:
        assert result is not None
        seen.append(result.status_code)
        return 3.0 if result.status_code == 503 else 1.0

    @retry(attempts=3, on_result=retryable_status(), backoff=by_status, clock=clock)
    async def get(client: httpx.AsyncClient) -> httpx.Response:
        return await client.get("https://api.test/")

    async with httpx.AsyncClient(transport=transport) as client:
        assert (await get(client)).status_code == 200
    assert (seen, clock.sleeps) == ([503, 429], [3.0, 1.0])


async def test_fallback_answers_a_retryable_response() -> None:
    """fallback(on_result=retryable_status(...)) replaces a 503; the handler sees it in a FailedResult."""
    transport, _ = scripted((503, {"Retry-After": "30"}))
    seen: list[int] = []

    def cached(exc: Exception, client: httpx.AsyncClient) -> str:
        assert isinstance(exc, FailedResult)
        assert isinstance(exc.result, httpx.Response)
        seen.append(exc.result.status_code)
        return "cached"

    @fallback(cached, on_result=retryable_status({500, 502, 503, 504}))
    async def get(client: httpx.AsyncClient) -> httpx.Response | str:
        return await client.get("https://api.test/")

    async with httpx.AsyncClient(transport=transport) as client:
        assert await get(client) == "cached"
    assert seen == [503]


# --- a real local server ----------------------------------------------------------------


@dataclass
class FlakyServer:
    """A minimal HTTP/1.1 server on localhost answering from a script, one connection per request."""

    answers: list[tuple[int, dict[str, str]]]
    hits: int = 0
    url: str = ""
    stall: asyncio.Event = field(default_factory=asyncio.Event)
    received: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Read one request, answer it with the next scripted status (stall on 0, hang up on -1), close."""
        try:
            await reader.readuntil(b"\r\n\r\n")
            status, headers = self.answers[min(self.hits, len(self.answers) - 1)]
            self.hits += 1
            self.received.set()
            if status == -1:  # reset: close the connection without an answer
                return
            if status == 0:  # hold the request until the test lets go
                await self.stall.wait()
                status = 200
            body = f"hit {self.hits}".encode()
            head = [f"HTTP/1.1 {status} X", f"Content-Length: {len(body)}", "Connection: close"]
            head += [f"{k}: {v}" for k, v in headers.items()]
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
            await writer.drain()
        finally:
            writer.close()


@pytest.fixture
async def server() -> AsyncIterator[FlakyServer]:
    """A FlakyServer on a free port: 429 (Retry-After: 7) twice, then 200."""
    flaky = FlakyServer([(429, {"Retry-After": "7"}), (429, {"Retry-After": "7"}), (200, {})])
    listener = await asyncio.start_server(flaky.handle, "127.0.0.1", 0)
    flaky.url = f"http://127.0.0.1:{listener.sockets[0].getsockname()[1]}"
    async with listener:
        yield flaky
        flaky.stall.set()
    listener.close()


async def test_httpx_against_a_flaky_server_honours_retry_after(
    server: FlakyServer, clock: FakeClock
) -> None:
    """A real httpx client against a real 429-answering server waits 7 s twice (virtually), then gets 200."""

    @retry(attempts=5, on=RetryableHTTPError, backoff=backoff.exponential(max_delay=10), clock=clock)
    async def get(client: httpx.AsyncClient) -> str:
        return raise_for_retryable(await client.get(server.url)).text

    async with httpx.AsyncClient() as client:
        assert await get(client) == "hit 3"
    assert (clock.sleeps, server.hits) == ([7.0, 7.0], 3)


async def test_aiohttp_against_a_flaky_server_honours_retry_after(
    server: FlakyServer, clock: FakeClock
) -> None:
    """A real aiohttp session against the same server: the helpers read aiohttp's status and headers."""

    @retry(attempts=5, on=RetryableHTTPError, backoff=backoff.exponential(max_delay=10), clock=clock)
    async def get(session: aiohttp.ClientSession) -> str:
        async with session.get(server.url) as response:
            raise_for_retryable(response)
            return await response.text()

    async with aiohttp.ClientSession() as session:
        assert await get(session) == "hit 3"
    assert (clock.sleeps, server.hits) == ([7.0, 7.0], 3)


async def test_result_retry_against_a_flaky_server(server: FlakyServer, clock: FakeClock) -> None:
    """on_result=retryable_status() over a real connection: two 7 s waits (virtual), then the 200 response."""

    @retry(attempts=5, on_result=retryable_status(), backoff=backoff.exponential(max_delay=10), clock=clock)
    async def get(client: httpx.AsyncClient) -> httpx.Response:
        return await client.get(server.url)

    async with httpx.AsyncClient() as client:
        response = await get(client)
    assert (response.status_code, response.text, clock.sleeps) == (200, "hit 3", [7.0, 7.0])


async def test_result_retry_with_aiohttp_responses(server: FlakyServer, clock: FakeClock) -> None:
    """retryable_status() reads an aiohttp response's status and headers: each 429 is retried after 7 s."""
    async with aiohttp.ClientSession() as session:

        @retry(
            attempts=5, on_result=retryable_status(), backoff=backoff.exponential(max_delay=10), clock=clock
        )
        async def fetch() -> aiohttp.ClientResponse:
            async with session.get(server.url) as response:
                await response.read()  # the body stays readable after the connection is released
                return response

        response = await fetch()
        assert (response.status, await response.text(), clock.sleeps) == (200, "hit 3", [7.0, 7.0])


async def test_in_test_mode_the_hints_are_not_waited(server: FlakyServer) -> None:
    """With set_testing, retry on the system clock skips the server's waits but still retries."""

    @retry(attempts=5, on=RetryableHTTPError, backoff=backoff.exponential(max_delay=10))
    async def get(client: httpx.AsyncClient) -> str:
        return raise_for_retryable(await client.get(server.url)).text

    with set_testing(True):
        async with httpx.AsyncClient() as client:
            assert await get(client) == "hit 3"
    assert server.hits == 3


async def test_cancelling_a_request_in_flight_is_not_retried(server: FlakyServer, clock: FakeClock) -> None:
    """A caller's cancellation while the server holds the request propagates; no second request is made."""
    server.answers[:] = [(0, {})]

    @retry(attempts=5, on=Exception, backoff=0, clock=clock)
    async def get(client: httpx.AsyncClient) -> str:
        return raise_for_retryable(await client.get(server.url)).text

    async with httpx.AsyncClient() as client:
        task = asyncio.create_task(get(client))
        await server.received.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert (server.hits, clock.sleeps) == (1, [])


async def test_the_whole_pipeline_against_a_flaky_server(clock: FakeClock) -> None:
    """gate > timeout > retry(on_result) > rate_limiter > circuit_breaker > bulkhead over a real server.

    The server answers 429 (Retry-After: 1), hangs up, answers 503 (Retry-After: 2), then 200:
    each hint is waited (virtually), the reset is retried after the backoff, every attempt takes
    a permit, and nothing is left in flight.
    """
    flaky = FlakyServer([(429, {"Retry-After": "1"}), (-1, {}), (503, {"Retry-After": "2"}), (200, {})])
    listener = await asyncio.start_server(flaky.handle, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{listener.sockets[0].getsockname()[1]}"
    g = gate(clock=clock)
    limiter = rate_limiter(2, burst=1, clock=clock)  # a permit every 0.5 s: each wait below refills it
    breaker = circuit_breaker(failure_threshold=3, clock=clock)
    pool = bulkhead(2, clock=clock)

    @pipeline(
        g,
        timeout(30, clock=clock),
        retry(
            attempts=5,
            on=(httpx.TransportError, RateLimitedError),
            on_result=retryable_status(),
            backoff=backoff.constant(0.5, max_delay=10),
            clock=clock,
        ),
        limiter,
        breaker,
        pool,
    )
    async def get(client: httpx.AsyncClient) -> httpx.Response:
        return await client.get(url)

    async with listener, httpx.AsyncClient() as client:
        response = await get(client)
    assert (response.status_code, response.text, flaky.hits) == (200, "hit 4", 4)
    assert clock.sleeps == [1.0, 0.5, 2.0]  # the 429's hint, the backoff after the reset, the 503's hint
    assert (g.in_flight, pool.in_use, limiter.queued, breaker.state) == (0, 0, 0, CircuitState.CLOSED)
    assert limiter.available == 0  # the fourth attempt took the permit the last wait refilled
