"""The same resilience logic written by hand with the standard library.

These are the baselines ``resilient`` is held to: what a careful engineer
writes in a few lines without a library (a decorator-style closure with a
try/except loop, ``asyncio.timeout``, ``asyncio.Semaphore``, a consecutive-
failure breaker on ``time.monotonic``).
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any


def retry(attempts: int = 3) -> Callable[[Callable[..., Awaitable[Any]]], Callable[..., Awaitable[Any]]]:
    """A retry loop with no wait between attempts (async).

    Args:
        attempts: Total attempts.

    Returns:
        A decorator.
    """

    def deco(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        @functools.wraps(fn)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            for attempt in range(1, attempts + 1):
                try:
                    return await fn(*args, **kwargs)
                except Exception:
                    if attempt == attempts:
                        raise
            raise AssertionError("unreachable")

        return wrapper

    return deco


def retry_sync(attempts: int = 3) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A retry loop with no wait between attempts (sync).

    Args:
        attempts: Total attempts.

    Returns:
        A decorator.
    """

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            for attempt in range(1, attempts + 1):
                try:
                    return fn(*args, **kwargs)
                except Exception:
                    if attempt == attempts:
                        raise
            raise AssertionError("unreachable")

        return wrapper

    return deco


def timeout(seconds: float) -> Callable[[Callable[..., Awaitable[Any]]], Callable[..., Awaitable[Any]]]:
    """``async with asyncio.timeout(seconds)`` around the call.

    Args:
        seconds: The timeout.

    Returns:
        A decorator.
    """

    def deco(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        @functools.wraps(fn)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            async with asyncio.timeout(seconds):
                return await fn(*args, **kwargs)

        return wrapper

    return deco


def fallback(default: Any) -> Callable[[Callable[..., Awaitable[Any]]], Callable[..., Awaitable[Any]]]:
    """Return *default* when the call raises an ``Exception``.

    Args:
        default: The value to return instead.

    Returns:
        A decorator.
    """

    def deco(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        @functools.wraps(fn)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return await fn(*args, **kwargs)
            except Exception:
                return default

        return wrapper

    return deco


def bulkhead(limit: int) -> Callable[[Callable[..., Awaitable[Any]]], Callable[..., Awaitable[Any]]]:
    """``async with asyncio.Semaphore(limit)`` around the call.

    Args:
        limit: Concurrent calls allowed.

    Returns:
        A decorator.
    """
    sem = asyncio.Semaphore(limit)

    def deco(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        @functools.wraps(fn)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            async with sem:
                return await fn(*args, **kwargs)

        return wrapper

    return deco


class OpenError(Exception):
    """The hand-written breaker is open."""


class Breaker:
    """A consecutive-failure circuit breaker on ``time.monotonic``.

    Opens after *threshold* consecutive failures; after *recovery* seconds
    the next call is let through as a probe.

    Args:
        threshold: Consecutive failures that open it.
        recovery: Seconds it stays open.
    """

    def __init__(self, threshold: int = 5, recovery: float = 30.0) -> None:
        self.threshold = threshold
        self.recovery = recovery
        self.failures = 0
        self.opened_at: float | None = None

    def __call__(self, fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        """Decorate an async function.

        Args:
            fn: The function.

        Returns:
            The guarded function.
        """

        @functools.wraps(fn)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            if self.opened_at is not None and time.monotonic() - self.opened_at < self.recovery:
                raise OpenError
            try:
                result = await fn(*args, **kwargs)
            except Exception:
                self.failures += 1
                if self.failures >= self.threshold:
                    self.opened_at = time.monotonic()
                raise
            self.failures = 0
            self.opened_at = None
            return result

        return wrapper

    def sync(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Decorate a sync function.

        Args:
            fn: The function.

        Returns:
            The guarded function.
        """

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if self.opened_at is not None and time.monotonic() - self.opened_at < self.recovery:
                raise OpenError
            try:
                result = fn(*args, **kwargs)
            except Exception:
                self.failures += 1
                if self.failures >= self.threshold:
                    self.opened_at = time.monotonic()
                raise
            self.failures = 0
            self.opened_at = None
            return result

        return wrapper


def hedge(
    delay: float, attempts: int = 2
) -> Callable[[Callable[..., Awaitable[Any]]], Callable[..., Awaitable[Any]]]:
    """A hedge written with ``asyncio.wait``: start another attempt after *delay*; first success wins.

    A failure starts the next attempt at once; the attempts still running
    are cancelled and awaited when the call ends.

    Args:
        delay: Seconds before the next attempt starts.
        attempts: Attempts in all.

    Returns:
        A decorator.
    """

    def deco(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        @functools.wraps(fn)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            pending: set[asyncio.Future[Any]] = {asyncio.ensure_future(fn(*args, **kwargs))}
            started = 1
            last: BaseException | None = None
            try:
                while pending:
                    done, pending = await asyncio.wait(
                        pending,
                        timeout=delay if started < attempts else None,
                        return_when=asyncio.FIRST_COMPLETED,
                    )
                    for task in done:
                        exc = task.exception()
                        if exc is None:
                            return task.result()
                        last = exc
                    if started < attempts:
                        pending.add(asyncio.ensure_future(fn(*args, **kwargs)))
                        started += 1
                assert last is not None
                raise last
            finally:
                for task in pending:
                    task.cancel()
                if pending:
                    await asyncio.wait(pending)

        return wrapper

    return deco


def chaos_fault(
    enabled: Callable[[], bool],
) -> Callable[[Callable[..., Awaitable[Any]]], Callable[..., Awaitable[Any]]]:
    """Fault injection behind a switch read on every call (async).

    Args:
        enabled: The switch.

    Returns:
        A decorator.
    """

    def deco(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        @functools.wraps(fn)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            if enabled():
                raise ConnectionError("injected")
            return await fn(*args, **kwargs)

        return wrapper

    return deco


def chaos_fault_sync(enabled: Callable[[], bool]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Fault injection behind a switch read on every call (sync).

    Args:
        enabled: The switch.

    Returns:
        A decorator.
    """

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if enabled():
                raise ConnectionError("injected")
            return fn(*args, **kwargs)

        return wrapper

    return deco


class RateLimited(Exception):
    """Raised by :func:`rate_limiter` when no permit is free."""


def rate_limiter(
    rate: float, burst: int, *, wait: bool = False
) -> Callable[[Callable[..., Awaitable[Any]]], Callable[..., Awaitable[Any]]]:
    """GCRA on ``time.monotonic`` in a closure: reject beyond the burst, or sleep until the permit.

    One event loop only (no lock), no FIFO guarantee beyond reservation
    order, and a cancelled sleeper keeps its reservation: what a few lines
    buy.

    Args:
        rate: Permits per second.
        burst: Permits at once after an idle period.
        wait: Sleep until the reserved permit instead of raising RateLimited.

    Returns:
        A decorator.
    """
    interval = 1.0 / rate
    limit = burst * interval
    tat = [0.0]
    monotonic = time.monotonic

    def deco(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        @functools.wraps(fn)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            now = monotonic()
            t = tat[0]
            new = (t if t > now else now) + interval
            delay = new - limit - now
            if delay > 0:
                if not wait:
                    raise RateLimited
                tat[0] = new
                await asyncio.sleep(delay)
            else:
                tat[0] = new
            return await fn(*args, **kwargs)

        return wrapper

    return deco
