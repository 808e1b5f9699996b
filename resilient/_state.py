"""The circuit breaker's states."""

from __future__ import annotations

import enum

__all__ = ["CircuitState"]


class CircuitState(enum.Enum):
    """Where a circuit breaker is.

    Attributes:
        CLOSED: Calls flow; failures are counted.
        OPEN: Calls are rejected until the recovery timeout passes.
        HALF_OPEN: A limited number of probe calls test the dependency.
        ISOLATED: Held open by ``isolate()`` until ``reset()``.
    """

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"
    ISOLATED = "isolated"
