"""A FastAPI service that calls other services through resilient policies.

docs/integrations/fastapi.md walks through this file section by section:
the lifespan (adapters attached, one shared httpx client, the event bus
drained at shutdown), a deadline per request handed to httpx, one circuit
breaker per upstream host, and rejections turned into 503/504 answers.

The demo at the bottom runs the app in process through httpx's ASGITransport
against a fake upstream (httpx.MockTransport): nothing leaves the process.
Runs in well under a second; exits 0.

    python examples/fastapi_app.py
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

try:
    import httpx
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse
except ImportError:  # a plain install; the examples extra brings them
    raise SystemExit(
        "examples/fastapi_app.py needs fastapi and httpx: pip install 'resilient-policies[examples]'"
    ) from None

import resilient
from resilient import CircuitBreaker, CircuitOpenError, TimeoutExceededError, circuit_breaker, retry, timeout
from resilient.adapters.logging import LoggingAdapter
from resilient.events import default_bus

# --8<-- [start:deadline]
DEFAULT_HTTP_TIMEOUT = 10.0  # seconds, for a call made outside any `timeout`


def http_timeout() -> float:
    """What is left of the request's deadline, as an httpx timeout.

    ``resilient.remaining()`` is None outside any ``timeout``, and httpx reads
    ``timeout=None`` as "wait forever": never hand it on as it is. (Not
    ``remaining() or DEFAULT``: a spent deadline is ``0.0``, which is falsy.)
    """
    left = resilient.remaining()
    return DEFAULT_HTTP_TIMEOUT if left is None else left


# --8<-- [end:deadline]


# --8<-- [start:breakers]
@functools.cache
def breaker_for(host: str) -> CircuitBreaker:
    """One breaker per upstream host: a host that is down leaves the others alone."""
    return circuit_breaker(name=host, failure_threshold=3, recovery_timeout=30.0)


@retry(attempts=3, on=httpx.TransportError, backoff=0.05)
async def get(client: httpx.AsyncClient, url: str) -> httpx.Response:
    """GET *url* through its host's breaker, within what is left of the deadline."""
    breaker = breaker_for(httpx.URL(url).host)
    return await breaker.call(client.get, url, timeout=http_timeout())


# --8<-- [end:breakers]


def create_app(upstream: httpx.AsyncBaseTransport | None = None, request_timeout: float = 2.0) -> FastAPI:
    """Build the app; *upstream* replaces the network in the demo below."""

    # --8<-- [start:lifespan]
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        subscription = LoggingAdapter().attach()  # policy events -> the "resilient" logger
        async with httpx.AsyncClient(transport=upstream) as client:
            app.state.http = client  # one connection pool for every request
            yield
        subscription.unsubscribe()
        await default_bus.drain()  # let async event handlers finish before exit

    app = FastAPI(lifespan=lifespan)
    # --8<-- [end:lifespan]

    # --8<-- [start:errors]
    @app.exception_handler(CircuitOpenError)
    async def circuit_open(request: Request, exc: CircuitOpenError) -> JSONResponse:
        headers = {} if exc.retry_after is None else {"Retry-After": str(max(1, round(exc.retry_after)))}
        return JSONResponse({"detail": f"{exc.name} is unavailable"}, status_code=503, headers=headers)

    @app.exception_handler(TimeoutExceededError)
    async def timed_out(request: Request, exc: TimeoutExceededError) -> JSONResponse:
        return JSONResponse({"detail": f"no answer within {exc.seconds:g} s"}, status_code=504)

    @app.exception_handler(httpx.TimeoutException)  # httpx gave up just before the deadline
    async def upstream_timed_out(request: Request, exc: httpx.TimeoutException) -> JSONResponse:
        return JSONResponse({"detail": "no answer in time"}, status_code=504)

    @app.exception_handler(httpx.TransportError)
    async def unreachable(request: Request, exc: httpx.TransportError) -> JSONResponse:
        return JSONResponse({"detail": "upstream unreachable"}, status_code=502)

    # --8<-- [end:errors]

    # --8<-- [start:handlers]
    @app.get("/price/{sku}")
    @timeout(request_timeout)  # the whole request: every attempt, every backoff wait
    async def price(sku: str, request: Request) -> dict[str, object]:
        response = await get(request.app.state.http, f"https://prices.internal/{sku}")
        response.raise_for_status()
        return {"sku": sku, "price": response.json()["price"]}

    @app.get("/stock/{sku}")
    @timeout(request_timeout)
    async def stock(sku: str, request: Request) -> dict[str, object]:
        response = await get(request.app.state.http, f"https://stock.internal/{sku}")
        response.raise_for_status()
        return {"sku": sku, "stock": response.json()["stock"]}

    # --8<-- [end:handlers]
    return app


# --8<-- [start:demo]
seen_timeouts: list[float] = []  # the httpx read timeout of each upstream request


async def fake_upstream(request: httpx.Request) -> httpx.Response:
    seen_timeouts.append(request.extensions["timeout"]["read"])
    if request.url.path == "/hangs":
        await asyncio.Event().wait()  # never answers; the request's timeout ends it
    if request.url.host == "prices.internal" and request.url.path == "/broken":
        raise httpx.ConnectError("connection refused", request=request)
    return httpx.Response(200, json={"price": 9.99, "stock": 3})


async def demo() -> None:
    app = create_app(httpx.MockTransport(fake_upstream), request_timeout=0.2)
    async with app.router.lifespan_context(app):  # what uvicorn does at startup and shutdown
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            ok = await client.get("/price/apple")
            assert ok.json() == {"sku": "apple", "price": 9.99}
            assert 0 < seen_timeouts[-1] <= 0.2  # httpx was given what was left of the deadline
            print("GET /price/apple ->", ok.status_code, ok.json())

            hangs = await client.get("/price/hangs")
            assert hangs.status_code == 504
            print("GET /price/hangs ->", hangs.status_code, hangs.json())

            with resilient.set_testing(True):  # skip the backoff waits in this demo
                broken = await client.get("/price/broken")  # 3 attempts fail: the breaker opens
            assert broken.status_code == 502
            assert breaker_for("prices.internal").state is resilient.CircuitState.OPEN
            print("GET /price/broken ->", broken.status_code, broken.json())

            rejected = await client.get("/price/apple")  # rejected at once, upstream untouched
            assert rejected.status_code == 503
            assert rejected.headers["Retry-After"] == "30"
            print("GET /price/apple ->", rejected.status_code, rejected.json())

            other_host = await client.get("/stock/apple")  # another host, another breaker
            assert other_host.json() == {"sku": "apple", "stock": 3}
            print("GET /stock/apple ->", other_host.status_code, other_host.json())


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="  log: %(message)s")
    asyncio.run(demo())
# --8<-- [end:demo]
