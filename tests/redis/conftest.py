"""A real ``redis-server`` for the fleet-state tests.

The server runs on a free loopback port with persistence off. Without the
binary the tests skip with the reason, unless ``RESILIENT_REQUIRE_REDIS=1``
(CI), which turns the skip into a failure.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
from collections.abc import AsyncIterator, Iterator

import pytest

redis = pytest.importorskip("redis")
import redis.asyncio  # noqa: E402

STARTUP_SECONDS = 10.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class RedisServer:
    """A ``redis-server`` process that tests can kill and start again on the same port.

    Args:
        binary: Path of ``redis-server``.
        port: Loopback port to listen on.
    """

    def __init__(self, binary: str, port: int) -> None:
        self.binary = binary
        self.port = port
        self.proc: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        """The ``redis://`` URL of the server."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start the server and wait (reading its log, not sleeping) until it accepts connections."""
        proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--loglevel",
                "notice",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.proc = proc
        ready = threading.Event()
        log: list[str] = []

        def watch() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                log.append(line)
                if "Ready to accept connections" in line:
                    ready.set()
            ready.set()  # EOF: the server exited

        threading.Thread(target=watch, daemon=True).start()
        if not ready.wait(STARTUP_SECONDS) or proc.poll() is not None:
            self.kill()
            raise RuntimeError(f"redis-server did not start on port {self.port}:\n{''.join(log)}")

    def kill(self) -> None:
        """Kill the server at once (SIGKILL), as a crash would."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc is not None and proc.stdout is not None:
            proc.stdout.close()
        self.proc = None

    def sync_client(self, **kwargs: object) -> redis.Redis:
        """Return a new blocking client for this server."""
        return redis.Redis(host="127.0.0.1", port=self.port, **kwargs)  # type: ignore[arg-type]

    def async_client(self, **kwargs: object) -> redis.asyncio.Redis:
        """Return a new asyncio client for this server."""
        return redis.asyncio.Redis(host="127.0.0.1", port=self.port, **kwargs)  # type: ignore[arg-type]


def _binary() -> str:
    found = shutil.which("redis-server")
    if found is None:
        reason = "redis-server binary not found on PATH (install the Debian package redis-server)"
        if os.environ.get("RESILIENT_REQUIRE_REDIS") == "1":
            pytest.fail(f"RESILIENT_REQUIRE_REDIS=1 but {reason}")
        pytest.skip(reason)
    return found


@pytest.fixture(scope="session")
def redis_binary() -> str:
    """Path of the redis-server binary (skip or fail without one)."""
    return _binary()


@pytest.fixture(scope="session")
def shared_server(redis_binary: str) -> Iterator[RedisServer]:
    """One server for the tests that never stop it."""
    server = RedisServer(redis_binary, _free_port())
    server.start()
    yield server
    server.kill()


@pytest.fixture
def redis_server(shared_server: RedisServer) -> Iterator[RedisServer]:
    """The shared server, emptied before each test."""
    client = shared_server.sync_client()
    client.flushall()
    client.close()
    yield shared_server


@pytest.fixture
def own_server(redis_binary: str) -> Iterator[RedisServer]:
    """A server of this test's own, which it may kill and restart."""
    server = RedisServer(redis_binary, _free_port())
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
