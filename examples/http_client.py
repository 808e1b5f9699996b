"""Protect an httpx client with resilient, against a flaky server on localhost.

The tutorial (docs/tutorial.md) walks through this file section by section.
It starts a small HTTP server in a thread (nothing leaves localhost), then
calls it through the policies, one step at a time, and prints what happened.
Runs in about a second; exits 0.

    python examples/http_client.py
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

try:
    import httpx
except ImportError:  # a plain install; the examples extra brings it
    raise SystemExit(
        "examples/http_client.py needs httpx: pip install 'resilient-policies[examples]'"
    ) from None

import resilient
from resilient import (
    BulkheadFullError,
    CircuitOpenError,
    TimeoutExceededError,
    backoff,
    bulkhead,
    circuit_breaker,
    fallback,
    pipeline,
    retry,
    timeout,
)
from resilient.events import CircuitOpened, Event, RetriesExhausted, RetryScheduled

# --8<-- [start:server]
HITS: Counter[str] = Counter()  # requests seen per path
HITS_LOCK = threading.Lock()


class FlakyHandler(BaseHTTPRequestHandler):
    """Answers like a dependency having a bad day, path by path."""

    def do_GET(self) -> None:
        with HITS_LOCK:
            HITS[self.path] += 1
            n = HITS[self.path]
        if self.path == "/flaky" and n % 3 != 0:  # two 503s, then a 200
            self.reply(503, "busy", retry_after="0.02")
        elif self.path == "/hangs" and n == 1:  # the first request hangs
            time.sleep(2.0)
            self.reply(200, "late")
        elif self.path == "/stuck":  # always hangs
            time.sleep(2.0)
            self.reply(200, "too late")
        elif self.path == "/down":  # always broken
            self.reply(500, "boom")
        elif self.path == "/missing":  # our bug, not theirs
            self.reply(404, "no such thing")
        elif self.path == "/sleepy":  # always slow-ish
            time.sleep(0.05)
            self.reply(200, "yawn")
        else:
            self.reply(200, f"ok {self.path}")

    def reply(self, status: int, body: str, retry_after: str | None = None) -> None:
        data = body.encode()
        try:
            self.send_response(status)
            if retry_after is not None:
                self.send_header("Retry-After", retry_after)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            pass  # the client timed out and hung up: expected here

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep the example's output readable


@contextmanager
def flaky_server() -> Iterator[str]:
    """Serve FlakyHandler on a free localhost port; yield its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), FlakyHandler)
    server.block_on_close = False  # do not wait for handlers still sleeping at exit
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


# --8<-- [end:server]


# --8<-- [start:errors]
class ServerError(Exception):
    """The server answered 5xx: its problem, worth retrying.

    ``retry_after`` comes from the Retry-After header; ``retry`` waits at
    least that long before the next attempt.
    """

    def __init__(self, status: int, retry_after: float | None) -> None:
        super().__init__(f"server answered {status}")
        self.status = status
        self.retry_after = retry_after


def check(response: httpx.Response) -> str:
    """Return the body of a 2xx; raise ServerError for 5xx, HTTPStatusError for 4xx."""
    if response.status_code >= 500:
        header = response.headers.get("Retry-After")
        raise ServerError(response.status_code, float(header) if header else None)
    response.raise_for_status()  # 4xx: a bug on our side, never retried
    return response.text


# --8<-- [end:errors]


# --8<-- [start:retry]
# Connection problems, httpx's own timeouts, 5xx answers and our per-attempt
# timeout are transient. A 404 (HTTPStatusError) is not, so it is never retried.
TRANSIENT = (httpx.TransportError, ServerError, TimeoutExceededError)
QUICK = backoff.exponential(initial=0.01, multiplier=2, max_delay=0.1)


@retry(attempts=4, on=TRANSIENT, backoff=QUICK)
async def get_with_retry(client: httpx.AsyncClient, path: str) -> str:
    return check(await client.get(path))


# --8<-- [end:retry]


# --8<-- [start:timeouts]
@timeout(2.0)  # total: every attempt and every wait together
@retry(attempts=4, on=TRANSIENT, backoff=QUICK)
@timeout(0.3)  # per attempt: a hung request costs 300 ms, not forever
async def get_with_timeouts(client: httpx.AsyncClient, path: str) -> str:
    return check(await client.get(path))


# --8<-- [end:timeouts]


# --8<-- [start:breaker]
# One breaker and one bulkhead per dependency, shared by every endpoint of it.
api_breaker = circuit_breaker(failure_threshold=3, recovery_timeout=30.0, on=TRANSIENT, name="api")
api_bulkhead = bulkhead(2, max_queue=2, name="api")


@retry(attempts=4, on=TRANSIENT, backoff=QUICK)
@api_breaker
@timeout(0.3)
async def get_guarded(client: httpx.AsyncClient, path: str) -> str:
    return check(await client.get(path))


@api_bulkhead
async def get_limited(client: httpx.AsyncClient, path: str) -> str:
    return check(await client.get(path))


# --8<-- [end:breaker]


# --8<-- [start:fallback]
CACHE: dict[str, str] = {}


def stale(exc: Exception, client: httpx.AsyncClient, path: str) -> str:
    """The fallback handler gets the failure and the call's own arguments."""
    return CACHE.get(path, f"(unavailable: {type(exc).__name__})")


@fallback(stale, on=(*TRANSIENT, CircuitOpenError, BulkheadFullError))
@retry(attempts=4, on=TRANSIENT, backoff=QUICK)
@api_breaker
@timeout(0.3)
async def get_or_stale(client: httpx.AsyncClient, path: str) -> str:
    body = check(await client.get(path))
    CACHE[path] = body
    return body


# --8<-- [end:fallback]


# --8<-- [start:deadline]
@timeout(0.5)
async def get_within_budget(client: httpx.AsyncClient, path: str) -> str:
    # Hand what is left of the deadline to httpx, so the client gives up
    # (and closes its connection cleanly) by the deadline. The default is
    # httpx's own 5 s, for calls made where no deadline applies: None would
    # switch httpx's timeout off.
    budget = resilient.remaining(default=5.0)
    return check(await client.get(path, timeout=budget))


# --8<-- [end:deadline]


# --8<-- [start:pipeline]
# The recommended order, built once and reused: fallback > timeout (total) >
# retry > circuit_breaker > bulkhead > timeout (per attempt).
protected = pipeline(
    fallback(stale, on=(*TRANSIENT, CircuitOpenError, BulkheadFullError)),
    timeout(2.0),
    retry(attempts=4, on=TRANSIENT, backoff=QUICK),
    circuit_breaker(failure_threshold=5, recovery_timeout=30.0, on=TRANSIENT, name="orders"),
    bulkhead(8, max_queue=16, name="orders"),
    timeout(0.3),
    name="orders",
)


@protected
async def get_order(client: httpx.AsyncClient, order_id: int) -> str:
    return check(await client.get(f"/orders/{order_id}"))


@protected
async def get_order_lines(client: httpx.AsyncClient, order_id: int) -> str:
    return check(await client.get(f"/orders/{order_id}/lines"))


# --8<-- [end:pipeline]


# --8<-- [start:events]
def log_event(event: Event) -> None:
    """A sync subscriber: runs inline, once per event."""
    if isinstance(event, RetryScheduled):
        why = event.exception if event.exception is not None else event.result
        print(f"    retry #{event.attempt} of {event.operation} in {event.delay:.3f}s after {why!r}")
    elif isinstance(event, RetriesExhausted):
        print(f"    gave up on {event.operation} after {event.attempts} attempts ({event.reason})")
    elif isinstance(event, CircuitOpened):
        print(f"    circuit {event.name!r} opened")


# --8<-- [end:events]


# --8<-- [start:main]
async def main() -> None:
    """Run every step against the flaky server and check the outcomes."""
    with flaky_server() as base, resilient.subscribe(log_event):
        async with httpx.AsyncClient(base_url=base) as client:
            print("1. retry: /flaky answers 503 twice, then 200")
            assert await get_with_retry(client, "/flaky") == "ok /flaky"

            print("2. a 404 is not retried")
            try:
                await get_with_retry(client, "/missing")
            except httpx.HTTPStatusError as exc:
                print(f"    raised at once: {exc.response.status_code}")
            assert HITS["/missing"] == 1

            print("3. timeouts: /hangs hangs once; the per-attempt timeout cuts it short")
            assert await get_with_timeouts(client, "/hangs") == "ok /hangs"

            print("4. circuit breaker: /down fails; after 3 failures the breaker opens")
            for _ in range(2):
                try:
                    await get_guarded(client, "/down")
                except CircuitOpenError as exc:
                    print(f"    rejected: {exc}")
            assert api_breaker.state is resilient.CircuitState.OPEN
            assert HITS["/down"] == 3  # the second call never reached the server

            print("5. bulkhead: 10 concurrent calls, 2 run, 2 queue, 6 are rejected at once")
            results = await asyncio.gather(
                *(get_limited(client, "/sleepy") for _ in range(10)), return_exceptions=True
            )
            rejected = sum(isinstance(r, BulkheadFullError) for r in results)
            print(f"    {10 - rejected} served, {rejected} rejected")
            assert rejected == 6

            print("6. fallback: the breaker is open, so the cached (or a default) answer comes back")
            CACHE["/down"] = "yesterday's data"
            assert await get_or_stale(client, "/down") == "yesterday's data"

            print("7. deadlines: the client's own timeout is what is left of ours")
            try:
                await get_within_budget(client, "/stuck")
            except (httpx.TimeoutException, TimeoutExceededError) as exc:
                print(f"    gave up by the deadline: {type(exc).__name__}")
            assert await get_within_budget(client, "/fast") == "ok /fast"

            print("8. the full pipeline, shared by two endpoints")
            print(f"    {await get_order(client, 7)!r}, {await get_order_lines(client, 7)!r}")
            assert resilient.pipeline_of(get_order) is resilient.pipeline_of(get_order_lines)


# --8<-- [end:main]

if __name__ == "__main__":
    asyncio.run(main())
