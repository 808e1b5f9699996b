"""Honour HTTP Retry-After with httpx, against a rate-limiting server on localhost.

docs/http.md walks through this file. A small asyncio HTTP server (nothing
leaves localhost) answers 429 Too Many Requests with a Retry-After header;
the client waits exactly as long as asked, gives up on a hint longer than
its backoff's cap, or waits the cap, and falls back when it gives up.
Runs in about two seconds (it really waits the server's one-second hints);
exits 0.

    python examples/http_retry_after.py
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from http import HTTPStatus

try:
    import httpx
except ImportError:  # a plain install; the examples extra brings it
    raise SystemExit(
        "examples/http_retry_after.py needs httpx: pip install 'resilient-policies[examples]'"
    ) from None

import resilient
from resilient import backoff, fallback, retry
from resilient.events import Event, RetriesExhausted, RetryScheduled
from resilient.http import RetryableHTTPError, raise_for_retryable, retryable_status

# --8<-- [start:server]
HITS: Counter[str] = Counter()


def answer(path: str) -> tuple[int, dict[str, str]]:
    """How the server answers the n-th request for *path*: (status, headers)."""
    HITS[path] += 1
    n = HITS[path]
    if path == "/limited" and n == 1:  # rate-limited once: come back in a second
        return 429, {"Retry-After": "1"}
    if path == "/quota":  # out of quota for an hour
        return 429, {"Retry-After": "3600"}
    if path == "/busy" and n <= 2:  # overloaded twice; the hint is long but the job can wait
        return 503, {"Retry-After": "120"}
    return 200, {}


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """One request per connection: read it, answer it, close."""
    request_line = (await reader.readuntil(b"\r\n\r\n")).split(b"\r\n", 1)[0]
    path = request_line.split()[1].decode()
    status, headers = answer(path)
    body = f"{status} for {path}".encode()
    lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}", f"Content-Length: {len(body)}"]
    lines.append("Connection: close")
    lines += [f"{name}: {value}" for name, value in headers.items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
    await writer.drain()
    writer.close()


@asynccontextmanager
async def rate_limiting_server() -> AsyncIterator[str]:
    """Serve on a free localhost port; yield the base URL."""
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    async with server:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"


# --8<-- [end:server]


# --8<-- [start:exception]
# The exception route: raise for 429/503, and let retry honour the hint the
# exception carries (RetryableHTTPError.retry_after).
@retry(attempts=3, on=(RetryableHTTPError, httpx.TransportError), backoff=backoff.exponential(max_delay=10))
async def get_text(client: httpx.AsyncClient, path: str) -> str:
    response = raise_for_retryable(await client.get(path))
    response.raise_for_status()  # a 4xx other than 429 is our bug: never retried
    return response.text


# --8<-- [end:exception]


# --8<-- [start:result]
# The result route: the response itself is retried, and the predicate tells
# retry how long it asked to wait. A background job that would rather try
# again early than not at all caps long hints at max_delay (here 0.5 s).
@retry(
    attempts=4,
    on_result=retryable_status({429, 503}),
    backoff=backoff.exponential(initial=0.1, max_delay=0.5),
    long_retry_after="cap",
)
async def get_response(client: httpx.AsyncClient, path: str) -> httpx.Response:
    return await client.get(path)


# --8<-- [end:result]


# --8<-- [start:fallback]
# Out of quota: the hint (an hour) is beyond the backoff's cap, so retry gives
# up at once, and the fallback answers with what we had.
def cached(exc: Exception, client: httpx.AsyncClient, path: str) -> str:
    return f"cached {path} ({exc})"


@fallback(cached, on=RetryableHTTPError)
@retry(attempts=3, on=RetryableHTTPError, backoff=backoff.exponential(max_delay=10))
async def get_or_cached(client: httpx.AsyncClient, path: str) -> str:
    return raise_for_retryable(await client.get(path)).text


# --8<-- [end:fallback]


def log_event(event: Event) -> None:
    """Print what retry decided."""
    if isinstance(event, RetryScheduled):
        why = event.exception if event.exception is not None else event.result
        print(f"    retry #{event.attempt} in {event.delay:.2f}s after {why!r}")
    elif isinstance(event, RetriesExhausted):
        print(f"    gave up after {event.attempts} attempt(s): {event.reason}")


async def main() -> None:
    """Run each route against the server and check what happened."""
    async with rate_limiting_server() as base, httpx.AsyncClient(base_url=base) as client:
        with resilient.subscribe(log_event):
            print("1. 429 with Retry-After: 1 -> wait one second, then 200")
            start = time.monotonic()
            assert await get_text(client, "/limited") == "200 for /limited"
            assert time.monotonic() - start >= 1.0
            print("2. the response as the result: 503 asks for 120 s, capped at 0.5 s, twice")
            response = await get_response(client, "/busy")
            assert response.status_code == 200
            print("3. an hour's hint is beyond the cap: give up at once, answer from cache")
            assert (await get_or_cached(client, "/quota")).startswith("cached /quota")
            assert HITS["/quota"] == 1


if __name__ == "__main__":
    asyncio.run(main())
