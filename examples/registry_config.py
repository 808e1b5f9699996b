"""Pipelines per upstream from a TOML file, a breaker per host, and a live reload.

examples/resilience.toml configures one pipeline for the payment provider
and one for every other host ("*"). The registry builds each host's pipeline
the first time it is asked for it, named after the host (so logs and metrics
say which host), with a circuit breaker of its own: a host that is down
leaves the others alone, and nobody writes a dict of breakers by hand.

Then the file changes and the registry reloads it: the timeout moves, the
breaker's settings do not, so the open breaker of the host that is down stays
open (same object, same state). A broken file is rejected whole, with every
problem and its place, and the old settings stay in force.

Runs in well under a second (test mode: no backoff waits); exits 0.

    python examples/registry_config.py
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import resilient
from resilient import CircuitBreaker, CircuitOpenError, ConfigError, Registry, load_config
from resilient.events import ConfigReloaded, ConfigReloadFailed

CONFIG = Path(__file__).with_name("resilience.toml")

# --8<-- [start:registry]
registry = Registry(load_config(CONFIG), name="upstreams")


@registry("payments")  # follows the key: a reload takes effect for later calls
async def charge(order: int, cents: int) -> str:
    return f"order {order}: charged {cents} cents"


async def fetch(host: str, path: str) -> str:
    """A stand-in for an HTTP GET; down.internal refuses connections."""
    if host == "down.internal":
        raise ConnectionError(f"{host} refused the connection")
    return f"{host}{path}: 200"


async def get(host: str, path: str) -> str:
    """GET through the host's own pipeline (built on first use, then reused)."""
    return await registry.get(host).call(fetch, host, path)


# --8<-- [end:registry]


def breaker_of(host: str) -> CircuitBreaker:
    """The circuit breaker in *host*'s pipeline."""
    (found,) = (p for p in registry.get(host).policies if isinstance(p, CircuitBreaker))
    return found


# --8<-- [start:reload]
def reload_from(path: Path) -> None:
    """What a SIGHUP handler calls: all of the new file, or none of it."""
    try:
        registry.reload(load_config(path))
    except ConfigError as exc:
        print("reload rejected, old settings kept:")
        for problem in exc.errors:
            print("   ", problem)


# --8<-- [end:reload]


def edit(source: Path, target: Path, old: str, new: str) -> Path:
    """Write *source* to *target* with *old* replaced by *new*: someone edits the file."""
    target.write_text(source.read_text().replace(old, new))
    return target


async def main() -> None:
    resilient.subscribe(
        lambda e: print(f"  event: {type(e).__name__} {getattr(e, 'keys', '')}"),
        ConfigReloaded,
        ConfigReloadFailed,
    )
    print(await charge(1, 999))
    print(await get("up.internal", "/health"))
    try:  # three attempts, three failures: this host's breaker opens
        await get("down.internal", "/health")
    except ConnectionError as exc:
        print("down.internal:", exc)
    down = breaker_of("down.internal")
    assert down.state is resilient.CircuitState.OPEN
    assert breaker_of("up.internal").state is resilient.CircuitState.CLOSED  # its own breaker
    assert down.name == "down.internal"  # events and metrics are labelled by host

    with tempfile.TemporaryDirectory() as folder:
        edited = edit(CONFIG, Path(folder, "resilience.toml"), "{ timeout = 2.0 }", "{ timeout = 3.0 }")
        reload_from(edited)
        assert registry.get("down.internal").policies[0].seconds == 3.0  # type: ignore[attr-defined]
        assert breaker_of("down.internal") is down  # unchanged settings: same breaker, still open
        try:
            await get("down.internal", "/health")
        except CircuitOpenError as exc:
            print("down.internal still rejected after the reload:", exc)

        reload_from(edit(edited, edited, "attempts = 2", "attempts = 0"))
        assert registry.get("payments").policies[1].attempts == 2  # type: ignore[attr-defined]
    print(await charge(2, 1500))


if __name__ == "__main__":
    with resilient.set_testing(True):  # skip the backoff waits in this demo
        asyncio.run(main())
