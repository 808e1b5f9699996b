"""Static typing checks of gate() and Registry: run ``mypy --strict resilient tests/typing``.

Each ``# type: ignore[code]`` marks a line that MUST be an error (``warn_unused_ignores``).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, assert_type

from resilient import (
    Gate,
    GateReport,
    Pipeline,
    Registry,
    circuit_breaker,
    gate,
    load_config,
    pipeline_from_config,
)

g = gate(name="app")
assert_type(g, Gate)

registry = Registry(lambda host: circuit_breaker(name=host))
from_config = Registry([{"timeout": 2}, {"retry": {"attempts": 3}}])
from_file = Registry(load_config("resilience.toml"))
assert_type(registry.get("payments"), Pipeline)
assert_type(pipeline_from_config([{"timeout": 2}], name="x"), Pipeline)
Registry(42)  # type: ignore[arg-type]


@registry("payments")
async def charge(amount: int, *, currency: str = "EUR") -> str:
    """A coroutine function following a key."""
    return f"{amount} {currency}"


@g
@registry("payments")
def refund(amount: int) -> bool:
    """A sync function following a key, under a gate."""
    return amount > 0


charge_as_callable: Callable[[int], Coroutine[Any, Any, str]] = charge
charge_wrong: Callable[[str], Coroutine[Any, Any, str]] = charge  # type: ignore[assignment]


async def uses() -> None:
    """Calls with right and wrong arguments; close() returns the report."""
    assert_type(await charge(1, currency="USD"), str)
    await charge("one")  # type: ignore[arg-type]
    assert_type(refund(2), bool)
    refund()  # type: ignore[call-arg]
    assert_type(await g.close(grace=5), GateReport)
    assert_type((await g.close()).running, int)


class Client:
    """Methods and descriptors keep their types."""

    @registry("db")
    async def query(self, sql: str) -> list[str]:
        """A method."""
        return [sql]

    @registry("db")
    @classmethod
    def make(cls) -> Client:
        """A classmethod."""
        return cls()


async def uses_client() -> None:
    """Bound calls type-check."""
    assert_type(await Client().query("q"), list[str])
    assert_type(Client.make(), Client)
    await Client().query(1)  # type: ignore[arg-type]
