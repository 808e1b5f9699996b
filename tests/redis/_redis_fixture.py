"""The ``redis-server`` process the fleet-state tests run against."""

from __future__ import annotations

import socket
import subprocess
import threading

import redis.asyncio

__all__ = ["RedisServer", "free_port"]

STARTUP_SECONDS = 10.0


def free_port() -> int:
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
