"""How each library under comparison builds each policy.

Every builder returns a no-argument callable guarding the function it is
given, configured as closely as the library allows to the same behaviour:
3 attempts with no wait for retry, 10 s for timeout, a closed consecutive-
failure breaker (threshold 5, 30 s recovery), 50 slots for bulkhead,
a constant for fallback. Peers are imported lazily; a peer that is not
installed (or cannot import) is reported, not skipped silently.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Awaitable, Callable, Coroutine
from datetime import timedelta
from typing import Any, cast

import handwritten as hw

import resilient

AsyncFn = Callable[[], Awaitable[Any]]
CoroFn = Callable[[], Coroutine[Any, Any, Any]]
SyncFn = Callable[[], Any]
AsyncBuilder = Callable[[AsyncFn], AsyncFn]
SyncBuilder = Callable[[SyncFn], SyncFn]

PEERS = (
    "tenacity",
    "stamina",
    "backoff",
    "hyx",
    "circuitbreaker",
    "aiobreaker",
    "purgatory",
    "pybreaker",
    "aiolimiter",
)
"""Peer distributions, in table order."""

LIBS = ("resilient", "stdlib", *PEERS)
"""Table columns: ``resilient``, the hand-written stdlib version, then the peers."""

_modules: dict[str, Any] = {}
import_errors: dict[str, str] = {}


def peer(name: str) -> Any:
    """Import a peer module once; raise ``LookupError`` with the reason if it cannot be."""
    if name in _modules:
        return _modules[name]
    if name in import_errors:
        raise LookupError(import_errors[name])
    try:
        mod = importlib.import_module(name)
    except Exception as exc:  # a peer that fails to import is a result, not a crash
        import_errors[name] = f"import failed: {type(exc).__name__}: {exc}"
        raise LookupError(import_errors[name]) from exc
    if name == "stamina":
        # Like-for-like with resilient's empty bus: no retry instrumentation hooks
        # (stamina would otherwise log/count through structlog/prometheus if installed).
        mod.instrumentation.set_on_retry_hooks([])
    _modules[name] = mod
    return mod


def has_breaker() -> bool:
    """True once ``resilient.circuit_breaker`` exists (it is built in parallel)."""
    return hasattr(resilient, "circuit_breaker")


def res_breaker() -> Any:
    """A closed ``resilient`` breaker with the comparison's settings."""
    return resilient.circuit_breaker(failure_threshold=5, recovery_timeout=30.0)


# --- async builders: scenario -> library -> builder, or a reason string ------------------


def _hyx(sub: str) -> Any:
    peer("hyx")
    return importlib.import_module(f"hyx.{sub}")


async def _hyx_handler(*_: Any, **__: Any) -> int:
    return 0


def _purgatory_breaker(fn: AsyncFn) -> AsyncFn:
    factory = peer("purgatory").AsyncCircuitBreakerFactory(default_threshold=5, default_ttl=30)
    wrapped: AsyncFn = factory("bench")(fn)
    return wrapped


def _res_stack(fn: AsyncFn) -> AsyncFn:
    b = res_breaker() if has_breaker() else None
    stack: list[Any] = [resilient.fallback(0), resilient.timeout(10), resilient.retry(attempts=3, backoff=0)]
    if b is not None:
        stack.append(b)
    stack.append(resilient.bulkhead(50))
    wrapped: AsyncFn = resilient.pipeline(*stack)(fn)
    return wrapped


def _hand_stack(fn: AsyncFn) -> AsyncFn:
    return hw.fallback(0)(hw.timeout(10)(hw.retry(3)(hw.Breaker()(hw.bulkhead(50)(fn)))))


def _hyx_stack(fn: AsyncFn) -> AsyncFn:
    inner = _hyx("bulkhead").bulkhead(50, 50)(fn)
    inner = _hyx("circuitbreaker").consecutive_breaker(Exception, 5, 30, 1)(inner)
    inner = _hyx("retry").retry(on=Exception, attempts=3, backoff=0)(inner)
    inner = _hyx("timeout").timeout(10)(inner)
    wrapped: AsyncFn = _hyx("fallback").fallback(_hyx_handler, on=Exception)(inner)
    return wrapped


_NO_ASYNC = "no async support"
_NO_POLICY = "no such policy"

RETRY_ASYNC: dict[str, AsyncBuilder | str] = {
    "resilient": lambda fn: resilient.retry(attempts=3, backoff=0)(fn),
    "stdlib": lambda fn: hw.retry(3)(fn),
    "tenacity": lambda fn: peer("tenacity").retry(
        stop=peer("tenacity").stop_after_attempt(3), wait=peer("tenacity").wait_none(), reraise=True
    )(fn),
    "stamina": lambda fn: peer("stamina").retry(
        on=Exception, attempts=3, timeout=None, wait_initial=0, wait_max=0, wait_jitter=0
    )(fn),
    "backoff": lambda fn: peer("backoff").on_exception(
        peer("backoff").constant, Exception, max_tries=3, interval=0, jitter=None
    )(fn),
    "hyx": lambda fn: _hyx("retry").retry(on=Exception, attempts=3, backoff=0)(fn),
}

TIMEOUT_ASYNC: dict[str, AsyncBuilder | str] = {
    # Every target here is a coroutine function; timeout's static type asks for exactly that.
    "resilient": lambda fn: resilient.timeout(10)(cast(CoroFn, fn)),
    "stdlib": lambda fn: hw.timeout(10)(fn),
    "hyx": lambda fn: _hyx("timeout").timeout(10)(fn),
}

BREAKER_ASYNC: dict[str, AsyncBuilder | str] = {
    "resilient": (lambda fn: res_breaker()(fn)) if has_breaker() else "not built yet",
    "stdlib": lambda fn: hw.Breaker()(fn),
    "hyx": lambda fn: _hyx("circuitbreaker").consecutive_breaker(Exception, 5, 30, 1)(fn),
    "circuitbreaker": lambda fn: peer("circuitbreaker").CircuitBreaker(
        failure_threshold=5, recovery_timeout=30
    )(fn),
    "aiobreaker": lambda fn: peer("aiobreaker").CircuitBreaker(
        fail_max=5, timeout_duration=timedelta(seconds=30)
    )(fn),
    "purgatory": _purgatory_breaker,
    "pybreaker": "async needs Tornado",
}

BULKHEAD_ASYNC: dict[str, AsyncBuilder | str] = {
    "resilient": lambda fn: resilient.bulkhead(50)(fn),
    "stdlib": lambda fn: hw.bulkhead(50)(fn),
    "hyx": lambda fn: _hyx("bulkhead").bulkhead(50, 50)(fn),
}

FALLBACK_ASYNC: dict[str, AsyncBuilder | str] = {
    "resilient": lambda fn: resilient.fallback(0)(fn),
    "stdlib": lambda fn: hw.fallback(0)(fn),
    "hyx": lambda fn: _hyx("fallback").fallback(_hyx_handler, on=Exception)(fn),
}

HEDGE_ASYNC: dict[str, AsyncBuilder | str] = {
    # The default 2 s delay is never reached: the first attempt answers at once.
    "resilient": lambda fn: resilient.hedge(delay=2.0)(cast(CoroFn, fn)),
    "stdlib": lambda fn: hw.hedge(2.0)(fn),
}


class _Settings:
    """Where a service keeps its chaos switch: read on every call."""

    chaos = False


SETTINGS = _Settings()


def chaos_off() -> bool:
    """The chaos switch, off."""
    return SETTINGS.chaos


CHAOS_OFF_ASYNC: dict[str, AsyncBuilder | str] = {
    "resilient": lambda fn: resilient.chaos.fault(ConnectionError, enabled=chaos_off)(fn),
    "stdlib": lambda fn: hw.chaos_fault(chaos_off)(fn),
}


def _swallowing(fn: AsyncFn, *errors: type[BaseException]) -> AsyncFn:
    """*fn*, with the given rejection errors caught: a rejected call is a completed call here."""

    async def call() -> Any:
        try:
            return await fn()
        except errors:
            return None

    return call


def _aiolimiter(max_rate: float, time_period: float) -> AsyncBuilder:
    def build(fn: AsyncFn) -> AsyncFn:
        limiter = peer("aiolimiter").AsyncLimiter(max_rate, time_period)

        async def call() -> Any:
            async with limiter:
                return await fn()

        return call

    return build


def _hyx_bucket(rate: float, per: float, burst: float, fn: AsyncFn) -> AsyncFn:
    # hyx's limiter binds the running loop when built: the builders run inside it.
    wrapped: AsyncFn = _hyx("ratelimit").tokenbucket(rate, per, burst)(fn)
    return wrapped


# A limit never reached while measuring: the cost of taking a free permit.
RATE_ASYNC: dict[str, AsyncBuilder | str] = {
    "resilient": lambda fn: resilient.rate_limiter(1e9)(fn),
    "stdlib": lambda fn: hw.rate_limiter(1e9, 10**9)(fn),
    "hyx": lambda fn: _hyx_bucket(1e9, 1, 1e9, fn),
    "aiolimiter": _aiolimiter(1e9, 1),
}

# One permit per hour, spent by the first call: the cost of a rejection.
RATE_REJECTED_ASYNC: dict[str, AsyncBuilder | str] = {
    "resilient": lambda fn: _swallowing(resilient.rate_limiter(1, per=3600)(fn), resilient.RateLimitedError),
    "stdlib": lambda fn: _swallowing(hw.rate_limiter(1 / 3600, 1)(fn), hw.RateLimited),
    "hyx": lambda fn: _swallowing(
        _hyx_bucket(1, 3600, 1, fn), _hyx("ratelimit.exceptions").RateLimitExceeded
    ),
    "aiolimiter": "waits, never rejects",
}

STACK_ASYNC: dict[str, AsyncBuilder | str] = {
    "resilient": _res_stack,
    "stdlib": _hand_stack,
    "hyx": _hyx_stack,
}

# --- sync builders -------------------------------------------------------------------------

RETRY_SYNC: dict[str, SyncBuilder | str] = {
    "resilient": lambda fn: resilient.retry(attempts=3, backoff=0)(fn),
    "stdlib": lambda fn: hw.retry_sync(3)(fn),
    "tenacity": RETRY_ASYNC["tenacity"],
    "stamina": RETRY_ASYNC["stamina"],
    "backoff": RETRY_ASYNC["backoff"],
    "hyx": "async only",
}


def _purgatory_sync(fn: SyncFn) -> SyncFn:
    factory = peer("purgatory").SyncCircuitBreakerFactory(default_threshold=5, default_ttl=30)
    wrapped: SyncFn = factory("bench")(fn)
    return wrapped


BREAKER_SYNC: dict[str, SyncBuilder | str] = {
    "resilient": (lambda fn: res_breaker()(fn)) if has_breaker() else "not built yet",
    "stdlib": lambda fn: hw.Breaker().sync(fn),
    "hyx": "async only",
    "circuitbreaker": BREAKER_ASYNC["circuitbreaker"],
    "aiobreaker": BREAKER_ASYNC["aiobreaker"],
    "purgatory": _purgatory_sync,
    "pybreaker": lambda fn: peer("pybreaker").CircuitBreaker(fail_max=5, reset_timeout=30)(fn),
}


CHAOS_OFF_SYNC: dict[str, SyncBuilder | str] = {
    "resilient": lambda fn: resilient.chaos.fault(ConnectionError, enabled=chaos_off)(fn),
    "stdlib": lambda fn: hw.chaos_fault_sync(chaos_off)(fn),
}


# --- throughput: bulkhead(50) + breaker under 1,000 concurrent tasks ---------------------


def throughput_builders() -> dict[str, AsyncBuilder | str]:
    """Builders guarding a function with a 50-slot bulkhead inside a closed breaker.

    The bulkheads queue without limit (``max_queue`` = the task count) so no
    call is rejected: every library does the same 100,000 calls.
    """
    out: dict[str, AsyncBuilder | str] = {}
    if has_breaker():
        out["resilient"] = lambda fn: resilient.pipeline(
            res_breaker(), resilient.bulkhead(50, max_queue=100_000)
        )(fn)
    else:
        out["resilient"] = lambda fn: resilient.bulkhead(50, max_queue=100_000)(fn)
    out["stdlib"] = lambda fn: hw.Breaker()(hw.bulkhead(50)(fn))
    out["hyx"] = lambda fn: _hyx("circuitbreaker").consecutive_breaker(Exception, 5, 30, 1)(
        _hyx("bulkhead").bulkhead(50, 100_000)(fn)
    )
    return out


async def yield_once() -> int:
    """The function under load: one trip through the event loop."""
    await asyncio.sleep(0)
    return 1
