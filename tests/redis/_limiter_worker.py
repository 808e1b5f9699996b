"""A separate OS process hammering a rate limit shared through Redis.

Run as ``python _limiter_worker.py PORT NAME RATE BURST MAX_WAIT ATTEMPTS``.
It prints ``ready``, waits for ``go`` on stdin (so the test can start every
process at once without sleeping), makes ATTEMPTS async calls through the
limiter from four concurrent tasks, then prints one line: for each admitted
call, the server time in microseconds its permit was issued for (the
script's clock plus the wait it granted), space-separated.
"""

from __future__ import annotations

import asyncio
import sys

import redis.asyncio

from resilient import RateLimitedError, rate_limiter
from resilient.backends import Reservation
from resilient.backends.redis import RedisRateLimiterBackend


class Recording(RedisRateLimiterBackend):
    """The Redis backend, noting the server time of every permit it is granted."""

    admitted: list[int]

    def _reservation(self, reply: list[int]) -> Reservation:  # type: ignore[override]
        got = super()._reservation(reply)
        if got.granted:
            self.admitted.append(reply[3] + reply[1])  # server time + granted wait
        return got


async def hammer(port: int, name: str, rate: float, burst: int, max_wait: float, attempts: int) -> None:
    """Make *attempts* calls through the shared limit, then print the admissions' server times."""
    client = redis.asyncio.Redis(host="127.0.0.1", port=port)
    backend = Recording(client, timeout=5.0)
    backend.admitted = []
    limiter = rate_limiter(rate, burst=burst, max_wait=max_wait, name=name, backend=backend)

    @limiter
    async def call() -> None:
        pass

    async def task(n: int) -> None:
        for _ in range(n):
            try:
                await call()
            except RateLimitedError:
                pass

    print("ready", flush=True)
    assert (await asyncio.to_thread(sys.stdin.readline)).strip() == "go"
    await asyncio.gather(*(task(attempts // 4) for _ in range(4)))
    assert not backend.degraded, "Redis stopped answering: the counts would not be the fleet's"
    print(" ".join(map(str, backend.admitted)), flush=True)
    await client.aclose()


def main() -> None:
    """Parse the command line and hammer."""
    port, name = int(sys.argv[1]), sys.argv[2]
    rate, burst, max_wait, attempts = (
        float(sys.argv[3]),
        int(sys.argv[4]),
        float(sys.argv[5]),
        int(sys.argv[6]),
    )
    asyncio.run(hammer(port, name, rate, burst, max_wait, attempts))


if __name__ == "__main__":
    main()
