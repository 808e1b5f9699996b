"""An aiohttp service that calls other services through resilient policies.

docs/integrations/aiohttp.md walks through this file section by section: a
cleanup context (adapters attached, one shared ClientSession, the event bus
drained at shutdown), a deadline per request handed to aiohttp's client, one
circuit breaker per upstream host, and rejections turned into 503/504 answers
by a middleware.

The demo at the bottom starts the app and a fake upstream with
aiohttp.test_utils on 127.0.0.1 (free ports; nothing leaves localhost).
Runs in well under a second; exits 0.

    python examples/aiohttp_app.py
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

try:
    import aiohttp
    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer
    from yarl import URL
except ImportError:  # a plain install; the examples extra brings it
    raise SystemExit(
        "examples/aiohttp_app.py needs aiohttp: pip install 'resilient-policies[examples]'"
    ) from None

import resilient
from resilient import CircuitBreaker, CircuitOpenError, circuit_breaker, retry, timeout
from resilient.adapters.logging import LoggingAdapter
from resilient.events import default_bus

HTTP = web.AppKey("http", aiohttp.ClientSession)
UPSTREAM = web.AppKey("upstream", str)


# --8<-- [start:deadline]
DEFAULT_HTTP_TIMEOUT = 10.0  # seconds, for a call made outside any `timeout`


def client_timeout() -> aiohttp.ClientTimeout:
    """What is left of the request's deadline, as an aiohttp timeout.

    ``resilient.remaining()`` is None outside any ``timeout``; aiohttp reads
    both None and 0 as "no timeout", so a spent deadline becomes a tiny
    positive one instead.
    """
    left = resilient.remaining()
    return aiohttp.ClientTimeout(total=DEFAULT_HTTP_TIMEOUT if left is None else max(left, 0.001))


# --8<-- [end:deadline]


# --8<-- [start:breakers]
@functools.cache
def breaker_for(origin: str) -> CircuitBreaker:
    """One breaker per upstream (scheme, host and port): one that is down leaves the others alone."""
    return circuit_breaker(name=origin, failure_threshold=3, recovery_timeout=30.0)


@retry(attempts=3, on=aiohttp.ClientConnectionError, backoff=0.05)
async def get_json(session: aiohttp.ClientSession, url: str) -> Any:
    """GET *url* through its host's breaker, within what is left of the deadline."""

    async def fetch() -> Any:
        async with session.get(url, timeout=client_timeout()) as response:
            response.raise_for_status()
            return await response.json()

    return await breaker_for(str(URL(url).origin())).call(fetch)


# --8<-- [end:breakers]


# --8<-- [start:lifespan]
async def http_session(app: web.Application) -> AsyncIterator[None]:
    """Startup and shutdown, as one cleanup context."""
    subscription = LoggingAdapter().attach()  # policy events -> the "resilient" logger
    async with aiohttp.ClientSession() as session:
        app[HTTP] = session  # one connection pool for every request
        yield
    subscription.unsubscribe()
    await default_bus.drain()  # let async event handlers finish before exit


# --8<-- [end:lifespan]


# --8<-- [start:errors]
@web.middleware
async def resilience_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Turn the policies' errors into answers a client can act on."""
    try:
        return await handler(request)
    except CircuitOpenError as exc:
        headers = {} if exc.retry_after is None else {"Retry-After": str(max(1, round(exc.retry_after)))}
        return web.json_response({"detail": f"{exc.name} is unavailable"}, status=503, headers=headers)
    except TimeoutError:  # our `timeout`, or the client's own just before the deadline
        return web.json_response({"detail": "no answer in time"}, status=504)
    except aiohttp.ClientConnectionError:
        return web.json_response({"detail": "upstream unreachable"}, status=502)


# --8<-- [end:errors]


def create_app(upstream: str, request_timeout: float = 2.0) -> web.Application:
    """Build the app; *upstream* is the base URL of the service it calls."""

    # --8<-- [start:handlers]
    @timeout(request_timeout)  # the whole request: every attempt, every backoff wait
    async def price(request: web.Request) -> web.Response:
        sku = request.match_info["sku"]
        data = await get_json(request.app[HTTP], f"{request.app[UPSTREAM]}/price/{sku}")
        return web.json_response({"sku": sku, "price": data["price"]})

    app = web.Application(middlewares=[resilience_errors])
    app[UPSTREAM] = upstream
    app.cleanup_ctx.append(http_session)
    app.router.add_get("/price/{sku}", price)
    # --8<-- [end:handlers]
    return app


# --8<-- [start:demo]
seen_timeouts: list[float] = []  # what the fake upstream was given, per request


async def fake_price(request: web.Request) -> web.Response:
    if request.match_info["sku"] == "hangs":
        await asyncio.Event().wait()  # never answers; the request's timeout ends it
    return web.json_response({"price": 9.99})


async def demo() -> None:
    upstream = TestServer(web.Application())
    upstream.app.router.add_get("/price/{sku}", fake_price)
    async with upstream:
        app = create_app(str(upstream.make_url("")).rstrip("/"), request_timeout=0.2)
        async with TestClient(TestServer(app)) as client:
            ok = await client.get("/price/apple")
            assert await ok.json() == {"sku": "apple", "price": 9.99}
            print("GET /price/apple ->", ok.status, await ok.json())

            hangs = await client.get("/price/hangs")
            assert hangs.status == 504
            print("GET /price/hangs ->", hangs.status, await hangs.json())

    # An upstream that is gone: connections are refused, its breaker opens.
    gone = TestServer(web.Application())
    await gone.start_server()
    origin = str(gone.make_url("").origin())
    await gone.close()
    async with TestClient(TestServer(create_app(origin))) as client:
        with resilient.set_testing(True):  # skip the backoff waits in this demo
            down = await client.get("/price/apple")
        assert down.status == 502
        assert breaker_for(origin).state is resilient.CircuitState.OPEN
        print("GET /price/apple ->", down.status, await down.json())

        rejected = await client.get("/price/apple")  # rejected at once
        assert rejected.status == 503
        assert rejected.headers["Retry-After"] == "30"
        print("GET /price/apple ->", rejected.status, await rejected.json())


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="  log: %(message)s")
    asyncio.run(demo())
# --8<-- [end:demo]
