"""Deadlines: hand what is left of a ``timeout`` to the client you call.

A ``timeout`` sets an ambient deadline for everything it wraps.
``resilient.remaining(default=...)`` reads it, so an HTTP client can be told
to give up by the same moment (its own, clean timeout instead of a
cancellation), nested timeouts never extend it, and ``retry`` never starts a
wait that would end past it. The default is what the client gets where no
deadline applies: never hand httpx ``None``, which switches its timeout off.
A small server on localhost answers after ``?ms=`` milliseconds. Runs in
about a second; exits 0.

    python examples/deadlines.py
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

try:
    import httpx
except ImportError:  # a plain install; the examples extra brings it
    raise SystemExit(
        "examples/deadlines.py needs httpx: pip install 'resilient-policies[examples]'"
    ) from None

import resilient
from resilient import backoff, retry, timeout
from resilient.events import RetriesExhausted
from resilient.testing import capture_events


class SlowHandler(BaseHTTPRequestHandler):
    """Answers after ``?ms=`` milliseconds with status ``?status=`` (200)."""

    def do_GET(self) -> None:
        query = parse_qs(urlsplit(self.path).query)
        time.sleep(int(query.get("ms", ["0"])[0]) / 1000)
        try:
            self.send_response(int(query.get("status", ["200"])[0]))
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")
        except OSError:
            pass  # the client gave up first

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def slow_server() -> Iterator[str]:
    """Serve SlowHandler on a free localhost port; yield its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), SlowHandler)
    server.block_on_close = False  # do not wait for handlers still sleeping at exit
    threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class ServerBusy(Exception):
    """The server answered 503."""


async def fetch(client: httpx.AsyncClient, ms: int, status: int = 200) -> str:
    """Call the server, giving httpx exactly the time the caller has left."""
    # httpx's own default (5 s) where no deadline applies; never None.
    budget = resilient.remaining(default=5.0)
    label = "no deadline (default 5 s)" if resilient.remaining() is None else f"{budget:.3f}s left"
    print(f"    fetch(ms={ms}) with {label}")
    response = await client.get("/", params={"ms": ms, "status": status}, timeout=budget)
    if response.status_code == 503:
        raise ServerBusy
    return response.text


@timeout(2.0)
async def two_calls(client: httpx.AsyncClient) -> list[str]:
    """Two sequential calls share one 2 s budget: the second gets what is left."""
    return [await fetch(client, 100), await fetch(client, 50)]


@timeout(2.0)
async def nested(client: httpx.AsyncClient) -> str:
    """An inner, longer timeout never extends the outer deadline."""
    async with timeout(5.0):
        left = resilient.remaining()
        assert left is not None
        assert left <= 2.0
        return await fetch(client, 0)


@timeout(0.2)
async def too_slow(client: httpx.AsyncClient) -> str:
    """The server takes 3 s; the budget is 200 ms."""
    return await fetch(client, 3000)


@timeout(1.0)
@retry(attempts=5, on=ServerBusy, backoff=backoff.constant(0.6))
async def busy(client: httpx.AsyncClient) -> str:
    """Retry under a deadline: a wait that would end past it is never started."""
    return await fetch(client, 0, status=503)


async def main() -> None:
    """Show each way the deadline reaches the code and the client."""
    assert resilient.remaining() is None
    with slow_server() as base:
        async with httpx.AsyncClient(base_url=base) as client:
            print("1. no timeout around the call: remaining() is None, httpx gets the default")
            assert await fetch(client, 0) == "ok"

            print("2. one deadline, two calls")
            assert await two_calls(client) == ["ok", "ok"]

            print("3. nested timeout(5.0) inside timeout(2.0)")
            assert await nested(client) == "ok"

            print("4. the server is slower than the budget: the call ends at the deadline")
            try:
                await too_slow(client)
            except (httpx.TimeoutException, resilient.TimeoutExceededError) as exc:
                # httpx's timeout and ours expire at the same moment; either may win.
                print(f"    gave up after 200 ms: {type(exc).__name__}")

            print("5. retry refuses a 600 ms wait when less than 400 ms are left")
            with capture_events(RetriesExhausted) as events:
                try:
                    await busy(client)
                except ServerBusy:
                    pass
            exhausted = [e for e in events if isinstance(e, RetriesExhausted)]
            print(f"    gave up after {exhausted[0].attempts} attempts, reason={exhausted[0].reason!r}")
            assert (exhausted[0].attempts, exhausted[0].reason) == (2, "deadline")


if __name__ == "__main__":
    asyncio.run(main())
