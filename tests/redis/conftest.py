"""A real ``redis-server`` for the fleet-state tests.

The server runs on a free loopback port with persistence off. Without the
binary the tests skip with the reason, unless ``RESILIENT_REQUIRE_REDIS=1``
(CI), which turns the skip into a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio
from _redis_fixture import RedisServer, free_port


def _binary() -> str:
    found = shutil.which("redis-server")
    if found is None:
        reason = "redis-server binary not found on PATH (install the Debian package redis-server)"
        if os.environ.get("RESILIENT_REQUIRE_REDIS") == "1":
            pytest.fail(f"RESILIENT_REQUIRE_REDIS=1 but {reason}")
        pytest.skip(reason)
    return found


@pytest.fixture(params=["async", "sync"])
def flavour(request: pytest.FixtureRequest) -> str:
    """Whether the guarded (or rate-limited) function is a coroutine function or a plain one."""
    value: str = request.param
    return value


@pytest.fixture(scope="session")
def redis_binary() -> str:
    """Path of the redis-server binary (skip or fail without one)."""
    return _binary()


@pytest.fixture(scope="session")
def shared_server(redis_binary: str) -> Iterator[RedisServer]:
    """One server for the tests that never stop it."""
    server = RedisServer(redis_binary, free_port())
    server.start()
    yield server
    server.kill()


@pytest.fixture
def redis_server(shared_server: RedisServer) -> RedisServer:
    """The shared server, emptied before each test."""
    client = shared_server.sync_client()
    client.flushall()
    client.close()
    return shared_server


@pytest.fixture
def own_server(redis_binary: str) -> Iterator[RedisServer]:
    """A server of this test's own, which it may kill and restart."""
    server = RedisServer(redis_binary, free_port())
    server.start()
    yield server
    server.kill()


@pytest.fixture
def sync_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A blocking client of the shared server."""
    client = redis_server.sync_client()
    yield client
    client.close()


@pytest.fixture
async def async_client(redis_server: RedisServer) -> AsyncIterator[redis.asyncio.Redis]:
    """An asyncio client of the shared server, closed after the test."""
    client = redis_server.async_client()
    yield client
    await client.aclose()


@pytest.fixture
def workers() -> Iterator[list[subprocess.Popen[str]]]:
    """Worker processes, killed if a test leaves one running."""
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()
