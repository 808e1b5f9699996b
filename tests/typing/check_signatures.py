"""Static typing checks of the public API: run ``mypy --strict resilient tests/typing``.

Not collected by pytest (the file name does not start with ``test_``). Each
``# type: ignore[code]`` marks a line that MUST be an error: with
``warn_unused_ignores`` (part of ``--strict``) mypy fails if it stops being one.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from datetime import timedelta
from typing import Any, assert_type

import resilient
from resilient import (
    Fallback,
    Pipeline,
    Retry,
    Subscription,
    Timeout,
    TimeoutExceededError,
    fallback,
    pipeline,
    retry,
    subscribe,
    timeout,
)
from resilient.events import Event, RetryScheduled
from resilient.testing import FakeClock, capture_events, reset_policies, set_testing, use_clock

clock = FakeClock()

assert_type(retry(), Retry)
assert_type(timeout(1), Timeout)
assert_type(fallback(None), Fallback[None])
assert_type(pipeline(retry(), timeout(1)), Pipeline)


# --- async functions keep their signature -----------------------------------------


@retry(attempts=2, clock=clock)
async def fetch(x: int) -> str:
    """Async function under retry."""
    return str(x)


fetch_as_callable: Callable[[int], Coroutine[Any, Any, str]] = fetch
fetch_wrong_params: Callable[[str], Coroutine[Any, Any, str]] = fetch  # type: ignore[assignment]
fetch_wrong_result: Callable[[int], Coroutine[Any, Any, int]] = fetch  # type: ignore[assignment]


async def uses_fetch() -> None:
    """Calls with right and wrong arguments."""
    assert_type(await fetch(1), str)
    await fetch("one")  # type: ignore[arg-type]
    await fetch()  # type: ignore[call-arg]
    await fetch(1, 2)  # type: ignore[call-arg]


@timeout(2, clock=clock)
async def timed(x: int, *, label: str = "") -> str:
    """Async function under timeout."""
    return f"{label}{x}"


@fallback("default")
async def rescued(x: int) -> str:
    """Async function under fallback."""
    return str(x)


@pipeline(retry(), timeout(1))
async def piped(x: int) -> str:
    """Async function under a pipeline."""
    return str(x)


@fallback("default")
@timeout(5)
@retry(attempts=3)
async def stacked(x: int) -> str:
    """Async function under stacked decorators."""
    return str(x)


async def uses_async() -> None:
    """Every decorated async function keeps parameters and return type."""
    assert_type(await timed(1, label="a"), str)
    assert_type(await rescued(1), str)
    assert_type(await piped(1), str)
    assert_type(await stacked(1), str)
    await timed(1, label=2)  # type: ignore[arg-type]
    await timed(1, "a")  # type: ignore[call-arg]
    await rescued("1")  # type: ignore[arg-type]
    await piped(None)  # type: ignore[arg-type]
    await stacked(b"1")  # type: ignore[arg-type]


# --- sync functions ---------------------------------------------------------------


@retry(attempts=2)
def parse(text: str) -> int:
    """Sync function under retry."""
    return int(text)


@fallback(0)
@retry()
def parse_or_zero(text: str) -> int:
    """Sync function under stacked decorators."""
    return int(text)


assert_type(parse("1"), int)
assert_type(parse_or_zero("1"), int)
parse(1)  # type: ignore[arg-type]
parse_or_zero(text=1)  # type: ignore[arg-type]


# timeout cannot guard a sync function: a static error as well as a runtime one.
@timeout(1)  # type: ignore[arg-type]
def blocking(x: int) -> int:
    """Sync function: rejected by timeout."""
    return x


# --- .call --------------------------------------------------------------------------


async def uses_call() -> None:
    """policy.call(fn, *args, **kwargs) checks arguments against fn."""

    async def add(a: int, b: int) -> int:
        return a + b

    def sync_add(a: int, b: int) -> int:
        return a + b

    assert_type(await retry().call(add, 1, 2), int)
    assert_type(retry().call(sync_add, 1, 2), int)
    assert_type(await timeout(1).call(add, 1, b=2), int)
    assert_type(await pipeline(retry(), timeout(1)).call(add, 1, 2), int)
    assert_type(fallback(0).call(sync_add, 1, 2), int)
    await retry().call(add, 1, "2")  # type: ignore[call-overload]
    retry().call(sync_add, 1)  # type: ignore[call-overload]
    await timeout(1).call(sync_add, 1, 2)  # type: ignore[arg-type]


# --- methods --------------------------------------------------------------------------


class Client:
    """Methods, classmethods and staticmethods, decorated above and below."""

    @retry()
    async def get(self, path: str) -> bytes:
        """A method."""
        return path.encode()

    @retry()
    @classmethod
    async def build(cls, url: str) -> Client:
        """Decorated above @classmethod."""
        return cls()

    @classmethod
    @retry()
    async def build_below(cls, url: str) -> Client:
        """Decorated below @classmethod."""
        return cls()

    @retry()
    @staticmethod
    def version(major: int) -> str:
        """Decorated above @staticmethod."""
        return str(major)

    @staticmethod
    @retry()
    def version_below(major: int) -> str:
        """Decorated below @staticmethod."""
        return str(major)


async def uses_methods(client: Client) -> None:
    """Bound methods drop self/cls and keep the rest."""
    assert_type(await client.get("/"), bytes)
    assert_type(await Client.build("u"), Client)
    assert_type(await Client.build_below("u"), Client)
    assert_type(Client.version(1), str)
    assert_type(Client.version_below(1), str)
    await client.get(1)  # type: ignore[arg-type]
    await Client.build(1)  # type: ignore[arg-type]
    await Client.build_below(1)  # type: ignore[arg-type]
    Client.version("1")  # type: ignore[arg-type]
    Client.version_below("1")  # type: ignore[arg-type]


# --- context, errors, events, testing aids ------------------------------------------------


async def uses_context() -> None:
    """async with timeout, current_call, remaining and error attributes are typed."""
    async with timeout(1) as t:
        assert_type(t, Timeout)
    assert_type(resilient.remaining(), float | None)
    assert_type(resilient.remaining(default=5.0), float)  # never None: safe to hand to a client
    assert_type(resilient.remaining(default=timedelta(seconds=5)), float)
    resilient.remaining(5.0)  # type: ignore[call-overload]
    with resilient.without_deadline() as nothing:
        assert_type(nothing, None)
    ctx = resilient.current_call()
    if ctx is not None:
        assert_type(ctx.operation, str)
        assert_type(ctx.attempt, int)
        assert_type(ctx.deadline, float | None)
        assert_type(ctx.remaining(), float | None)
        assert_type(ctx.remaining(default=5.0), float)
    try:
        await timed(1)
    except TimeoutExceededError as exc:
        assert_type(exc.seconds, float)
    except resilient.CircuitOpenError as exc:
        assert_type(exc.retry_after, float | None)
        assert_type(exc.name, str | None)


def on_event(event: Event) -> None:
    """A sync handler."""


async def on_event_async(event: RetryScheduled) -> None:
    """An async handler."""


assert_type(subscribe(on_event), Subscription)
assert_type(subscribe(on_event_async, RetryScheduled), Subscription)
assert_type(subscribe(lambda e: None), Subscription)
subscribe(on_event, int)  # type: ignore[arg-type]
with capture_events() as captured:
    assert_type(captured, list[Event])
with set_testing(True):
    pass
with set_testing(True, attempts=1, cap=True):
    pass
set_testing(True, attempts="2")  # type: ignore[arg-type]
with use_clock(FakeClock()) as installed:
    assert_type(installed, FakeClock)
use_clock(None)
use_clock(object())  # type: ignore[type-var]
assert_type(reset_policies(), None)
retry(clock=FakeClock())
retry(clock=object())  # type: ignore[arg-type]
timeout("1")  # type: ignore[arg-type]


# --- circuit breaker and bulkhead ---------------------------------------------------

breaker = resilient.circuit_breaker(name="payments", clock=clock)
pool = resilient.bulkhead(4, max_queue=8)
assert_type(breaker, resilient.CircuitBreaker)
assert_type(pool, resilient.Bulkhead)
assert_type(breaker.state, resilient.CircuitState)
assert_type(pool.in_use, int)


@breaker
@pool
async def charge(amount: int, *, currency: str = "EUR") -> str:
    return f"{amount} {currency}"


@breaker
def charge_sync(amount: int) -> str:
    return str(amount)


async def use_breaker_and_bulkhead() -> None:
    assert_type(await charge(1, currency="USD"), str)
    assert_type(charge_sync(2), str)
    await charge("1")  # type: ignore[arg-type]
    await charge(1, currency=3)  # type: ignore[arg-type]
    charge_sync(2.5)  # type: ignore[arg-type]
    async with breaker, pool:
        pass
    assert_type(await breaker.call(charge, 3), str)
    try:
        await charge(4)
    except resilient.CircuitOpenError as exc:
        assert_type(exc.retry_after, float | None)
        assert_type(exc.name, str | None)
    except resilient.BulkheadFullError as exc:
        assert_type(exc.retry_after, float | None)


# --- call attributes (issue 13) ---------------------------------------------------------


@pipeline(retry(), attributes=lambda url, **_: {"server.address": url.split("/")[2]})
async def fetch_page(url: str, *, retries: int = 0) -> bytes:
    call = resilient.current_call()
    if call is not None:
        call.set_attribute("retries", retries)
        call.set_attribute("tags", ["a"])  # type: ignore[arg-type]
        assert_type(call.full_name, str)
    return b""


async def use_attributes() -> None:
    assert_type(await fetch_page("https://example.com/"), bytes)
    await fetch_page(3)  # type: ignore[arg-type]


pipeline(retry(), attributes=42)  # type: ignore[arg-type]


# --- hedge and chaos -----------------------------------------------------------------

assert_type(resilient.hedge(), resilient.Hedge)
assert_type(resilient.chaos.fault(ConnectionError), resilient.chaos.Fault)
assert_type(resilient.chaos.latency(0.1), resilient.chaos.Latency)
assert_type(resilient.chaos.result(None), resilient.chaos.Result)


@resilient.hedge(delay=0.2, clock=clock)
@resilient.chaos.latency(0.5, rate=0.1, seed=7)
async def search(query: str, *, limit: int = 10) -> list[str]:
    """Async function under hedge and chaos."""
    return [query] * limit


@resilient.chaos.fault(lambda: ConnectionError("injected"), enabled=lambda: False)
def lookup(key: str) -> int:
    """Sync function under chaos."""
    return len(key)


# hedge cannot guard a sync function: a static error as well as a runtime one.
@resilient.hedge()  # type: ignore[arg-type]
def blocking_search(query: str) -> str:
    """Sync function: rejected by hedge."""
    return query


async def use_hedge_and_chaos() -> None:
    """Hedged and chaos-guarded functions keep their signatures."""
    assert_type(await search("q", limit=2), list[str])
    assert_type(lookup("k"), int)
    await search(1)  # type: ignore[arg-type]
    lookup(key=1)  # type: ignore[arg-type]
    assert_type(await resilient.hedge().call(search, "q"), list[str])
    await resilient.hedge().call(lookup, "k")  # type: ignore[arg-type]


resilient.hedge(delay="1")  # type: ignore[arg-type]
resilient.chaos.fault(ConnectionError("instance"))  # type: ignore[arg-type]
resilient.chaos.latency(0.1, seed=1, random=object())  # type: ignore[arg-type]
