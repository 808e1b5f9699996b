"""Where circuit breaker (and shared rate limiter) state lives.

:class:`MemoryBackend` (the default, one per breaker) keeps it in this
process. A shared backend implements :class:`BreakerBackend`, whose steps
(``acquire``, ``record``, ``release``, ``isolate``, ``reset``, ``state``)
are each one atomic operation on the shared state; see "Writing a backend"
in the circuit breaker docs. A rate limiter keeps its state in process by
default; a :class:`RateLimiterBackend` (Redis) shares one limit by a fleet.
"""

from __future__ import annotations

from ._base import (
    BreakerBackend,
    BreakerConfig,
    BreakerStats,
    Outcome,
    Permit,
    Rejection,
    Transition,
)
from ._limiter_base import RateLimiterBackend, RateLimiterConfig, Reservation
from .memory import MemoryBackend

__all__ = [
    "BreakerBackend",
    "BreakerConfig",
    "BreakerStats",
    "MemoryBackend",
    "Outcome",
    "Permit",
    "RateLimiterBackend",
    "RateLimiterConfig",
    "Rejection",
    "Reservation",
    "Transition",
]

for _name in __all__:
    _obj = globals()[_name]
    if isinstance(_obj, type) and _obj.__module__.startswith("resilient.backends._"):
        _obj.__module__ = __name__
del _name, _obj
