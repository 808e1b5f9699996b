"""Static typing checks of rate_limiter() and stacks of the new policies (``mypy --strict ... tests/typing``).

Each ``# type: ignore[code]`` marks a line that MUST be an error (``warn_unused_ignores``).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, assert_type

from resilient import (
    RateLimitedError,
    RateLimiter,
    Registry,
    chaos,
    fallback,
    gate,
    hedge,
    pipeline,
    rate_limiter,
    timeout,
)
from resilient.http import retryable_status

limiter = rate_limiter(10, burst=3, max_wait=0.5, name="api")
assert_type(limiter, RateLimiter)
assert_type(limiter.available, int)
assert_type(RateLimitedError("api", 0.1).retry_after, float | None)


@limiter
async def fetch(url: str, *, retries: int = 0) -> bytes:
    """A coroutine function under the limiter."""
    return url.encode()


@limiter
def render(template: str, **values: int) -> str:
    """A sync function under the limiter."""
    return template.format(**values)


fetch_as_callable: Callable[[str], Coroutine[Any, Any, bytes]] = fetch
fetch_wrong: Callable[[int], Coroutine[Any, Any, bytes]] = fetch  # type: ignore[assignment]


async def uses() -> None:
    """Calls with right and wrong arguments; the block forms."""
    assert_type(await fetch("u", retries=1), bytes)
    await fetch(b"u")  # type: ignore[arg-type]
    assert_type(render("{a}", a=1), str)
    render("{a}", a="x")  # type: ignore[arg-type]
    assert_type(await limiter.call(fetch, "u"), bytes)
    assert_type(limiter.call(render, "t"), str)
    async with limiter as held:
        assert_type(held, RateLimiter)
    with limiter as held_sync:
        assert_type(held_sync, RateLimiter)


G = gate()
registry = Registry([{"timeout": 2}])


@G
@fallback(b"", on_result=retryable_status())
@registry("api")
@hedge(delay=0.1)
@limiter
@chaos.fault(ConnectionError, rate=0.1)
async def everything(url: str, n: int = 1) -> bytes:
    """Every new policy stacked on one coroutine function."""
    return url.encode() * n


STACK = pipeline(G, timeout(2), hedge(), limiter)


@STACK
async def stacked(url: str) -> bytes:
    """A pipeline of the new policies."""
    return url.encode()


async def uses_everything() -> None:
    """The stacked functions keep their exact signatures."""
    assert_type(await everything("u", 2), bytes)
    await everything(1)  # type: ignore[arg-type]
    assert_type(await stacked("u"), bytes)
    await stacked("u", 2)  # type: ignore[call-arg]


class Client:
    """Methods and descriptors keep their types."""

    @limiter
    async def get(self, path: str) -> list[str]:
        """A method."""
        return [path]

    @limiter
    @classmethod
    def make(cls, name: str) -> Client:
        """A classmethod."""
        return cls()

    @limiter
    @staticmethod
    def ping() -> bool:
        """A staticmethod."""
        return True


async def uses_client() -> None:
    """Bound calls type-check."""
    assert_type(await Client().get("p"), list[str])
    assert_type(Client.make("n"), Client)
    assert_type(Client.ping(), bool)
    await Client().get(1)  # type: ignore[arg-type]
    Client.make()  # type: ignore[call-arg]


rate_limiter("10")  # type: ignore[arg-type]
rate_limiter(10, burst=2.5)  # type: ignore[arg-type]
rate_limiter(10, max_wait=None)  # type: ignore[arg-type]
